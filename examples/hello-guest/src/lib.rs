//! The smallest useful wasmgate app: greets every client, counts connects in the instance's
//! key-value store, allows publishing only under `live-`, and answers `NetConnection.call("hello")`.

use wasmgate_guest::*;

#[derive(Default)]
struct Hello;

impl App for Hello {
    fn on_connect(&mut self, client: &ClientInfo, _args: &[Value]) -> ConnectDecision {
        let n: u64 = kv::get("connects").and_then(|v| v.parse().ok()).unwrap_or(0) + 1;
        kv::set("connects", &n.to_string());
        info(&format!("client {} from {} is connect #{n}", client.id, client.address));
        ConnectDecision::Accept
    }

    fn on_publish(&mut self, _client: ClientId, stream: &str, _query: &str) -> Access {
        if stream.starts_with("live-") {
            Access::Allow
        } else {
            Access::Deny("Stream names must start with live-.".into())
        }
    }

    fn on_call(&mut self, client: ClientId, method: &str, args: &[Value]) -> Result<Value, String> {
        match method {
            "hello" => Ok(json!({ "greeting": "hello", "you": client, "args": args })),
            _ => Err(format!("Method not found ({method}).")),
        }
    }
}

export_app!(Hello);
