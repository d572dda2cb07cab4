//! `chat`: a chat room per instance. Client-callable `join(name)`, `say(text)` and `leave()`;
//! every message is pushed to each member with `onMessage(from, text)`.

use std::collections::BTreeMap;

use wasmgate_guest::*;

#[derive(Default)]
struct Chat {
    /// Members by client, with their nickname.
    members: BTreeMap<ClientId, String>,
}

impl Chat {
    fn tell_all(&self, from: &str, text: &str) {
        for &m in self.members.keys() {
            // A member that left between the two calls is simply skipped.
            let _ = call(m, "onMessage", &[json!(from), json!(text)]);
        }
    }
}

impl App for Chat {
    fn on_call(&mut self, client: ClientId, method: &str, args: &[Value]) -> Result<Value, String> {
        match method {
            "join" => {
                let name = args
                    .first()
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty() && n.len() <= 64)
                    .ok_or("join(name): name must be 1 to 64 characters")?
                    .to_owned();
                if self.members.values().any(|n| *n == name) {
                    return Err(format!("The name {name} is taken."));
                }
                self.members.insert(client, name.clone());
                self.tell_all("server", &format!("{name} joined"));
                Ok(json!({ "members": self.members.values().collect::<Vec<_>>() }))
            }
            "say" => {
                let name = self
                    .members
                    .get(&client)
                    .ok_or("Join the room first.")?
                    .clone();
                let text = args.first().and_then(Value::as_str).unwrap_or("");
                if text.len() > 1024 {
                    return Err("Messages are limited to 1024 bytes.".into());
                }
                self.tell_all(&name, text);
                Ok(json!(true))
            }
            "leave" => {
                let name = self.members.remove(&client).ok_or("Not in the room.")?;
                self.tell_all("server", &format!("{name} left"));
                Ok(json!(true))
            }
            "members" => Ok(json!(self.members.values().collect::<Vec<_>>())),
            _ => Err(format!("Method not found ({method}).")),
        }
    }

    fn on_disconnect(&mut self, client: ClientId) {
        if let Some(name) = self.members.remove(&client) {
            self.tell_all("server", &format!("{name} left"));
        }
    }
}

export_app!(Chat);
