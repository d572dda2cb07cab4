//! `token-auth`: connect, publish and play only with a token listed in `settings.tokens`.
//! The token is the first extra connect argument (`ffmpeg -rtmp_conn S:tok`, `rtmpdump -C S:tok`)
//! or `token=` in the connect URL's query or the stream name's query.
//!
//! Settings: `tokens = ["..."]`; `connect_token = "optional"` lets clients connect without a
//! token and present it with the stream name instead (`play("key?token=...")`);
//! `decide_after_ms = N` answers connects `pending` and decides N ms later from a timer, the way
//! an app waiting for an external auth service would (`application.acceptConnection` later).

use std::collections::HashMap;

use wasmgate_guest::*;

#[derive(Default)]
struct TokenAuth {
    tokens: Vec<String>,
    optional_at_connect: bool,
    /// Clients that presented a valid token at connect.
    authorized: HashMap<ClientId, String>,
    decide_after_ms: u32,
    /// Pending connects by timer: (client, verdict), verdict None = accept.
    pending: HashMap<u64, (ClientId, Option<String>)>,
}

impl TokenAuth {
    fn valid(&self, token: &str) -> bool {
        !token.is_empty() && self.tokens.iter().any(|t| t == token)
    }

    fn stream_access(&self, client: ClientId, query: &str) -> Access {
        if self.authorized.contains_key(&client) {
            return Access::Allow;
        }
        match query_param(query, "token") {
            Some(t) if self.valid(&t) => Access::Allow,
            Some(_) => Access::Deny("Invalid token.".into()),
            None => Access::Deny("Missing token.".into()),
        }
    }
}

impl App for TokenAuth {
    fn start(&mut self, app: &str, instance: &str, settings: &Value) -> Result<(), String> {
        let tokens = settings
            .get("tokens")
            .and_then(Value::as_array)
            .ok_or("settings.tokens must be an array of strings")?;
        self.tokens = tokens
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect();
        self.optional_at_connect =
            settings.get("connect_token").and_then(Value::as_str) == Some("optional");
        self.decide_after_ms = settings
            .get("decide_after_ms")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .min(60_000) as u32;
        info(&format!(
            "token-auth started for {app}/{instance} with {} tokens",
            self.tokens.len()
        ));
        Ok(())
    }

    fn on_connect(&mut self, client: &ClientInfo, args: &[Value]) -> ConnectDecision {
        let decision = self.check_connect(client, args);
        if self.decide_after_ms == 0 {
            return decision;
        }
        let verdict = match decision {
            ConnectDecision::Reject(reason) => Some(reason),
            _ => None,
        };
        let timer = set_timeout(self.decide_after_ms);
        self.pending.insert(timer, (client.id, verdict));
        ConnectDecision::Pending
    }

    fn on_timer(&mut self, id: u64) {
        if let Some((client, verdict)) = self.pending.remove(&id) {
            match verdict {
                None => accept(client),
                Some(reason) => reject(client, &reason),
            }
        }
    }

    fn on_disconnect(&mut self, client: ClientId) {
        self.authorized.remove(&client);
        self.pending.retain(|_, (c, _)| *c != client);
    }

    fn on_publish(&mut self, client: ClientId, _stream: &str, query: &str) -> Access {
        self.stream_access(client, query)
    }

    fn on_play(&mut self, client: ClientId, _stream: &str, query: &str) -> Access {
        self.stream_access(client, query)
    }
}

impl TokenAuth {
    fn check_connect(&mut self, client: &ClientInfo, args: &[Value]) -> ConnectDecision {
        let token = args
            .first()
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| query_param(&client.query, "token"));
        match token {
            Some(t) if self.valid(&t) => {
                self.authorized.insert(client.id, t);
                ConnectDecision::Accept
            }
            Some(_) => {
                warn(&format!(
                    "client {} ({}): invalid token",
                    client.id, client.address
                ));
                ConnectDecision::Reject("Invalid token.".into())
            }
            None if self.optional_at_connect => ConnectDecision::Accept,
            None => ConnectDecision::Reject("Missing token.".into()),
        }
    }
}

export_app!(TokenAuth);
