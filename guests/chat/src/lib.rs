//! `chat`: a chat room per instance. Client-callable `join(name)`, `say(text)` and `leave()`;
//! every message is pushed to each member with `onMessage(from, text)`. `ask(name, question)`
//! calls `ask(question)` on that member with a responder; the answer comes back to the asker as
//! `onMessage(name, answer)` (a server-to-client call with a result).
//!
//! Data messages a publisher sends with its stream (`NetStream.send("onChat", text)`, or the
//! `onTextData` captions ffmpeg publishes from a subtitle track) are moderated on the way to the
//! players: words in `settings.banned` become `***`, texts longer than `settings.max_text`
//! (default 1024 bytes) are dropped.

use std::collections::BTreeMap;

use wasmgate_guest::*;

#[derive(Default)]
struct Chat {
    /// Members by client, with their nickname.
    members: BTreeMap<ClientId, String>,
    /// Questions in flight: call id -> who asked.
    asked: BTreeMap<u64, ClientId>,
    /// Lower-case words to mask in data messages.
    banned: Vec<String>,
    max_text: usize,
}

impl Chat {
    fn tell_all(&self, from: &str, text: &str) {
        for &m in self.members.keys() {
            // A member that left between the two calls is simply skipped.
            let _ = call(m, "onMessage", &[json!(from), json!(text)]);
        }
    }
}

/// Masks every banned word (case-insensitive, ASCII) with `***`.
fn mask(text: &str, banned: &[String]) -> String {
    let mut out = text.to_owned();
    for word in banned.iter().filter(|w| !w.is_empty()) {
        let mut from = 0;
        while let Some(at) = out[from..].to_ascii_lowercase().find(word.as_str()) {
            let at = from + at;
            out.replace_range(at..at + word.len(), "***");
            from = at + 3;
        }
    }
    out
}

impl App for Chat {
    fn start(&mut self, _app: &str, _instance: &str, settings: &Value) -> Result<(), String> {
        self.banned = match &settings["banned"] {
            Value::Null => Vec::new(),
            Value::Array(words) => words
                .iter()
                .map(|w| w.as_str().map(str::to_ascii_lowercase))
                .collect::<Option<_>>()
                .ok_or("settings.banned must be a list of words")?,
            _ => return Err("settings.banned must be a list of words".into()),
        };
        self.max_text = match &settings["max_text"] {
            Value::Null => 1024,
            v => v.as_u64().ok_or("settings.max_text must be a number")? as usize,
        };
        Ok(())
    }

    fn on_data(
        &mut self,
        _client: ClientId,
        _stream: &str,
        handler: &str,
        args: &[Value],
    ) -> DataDecision {
        // `NetStream.send("onChat", "text")` or ffmpeg's `onTextData({type, text})`.
        let mut args = args.to_vec();
        let text = match args.first_mut() {
            Some(Value::String(s)) => s,
            Some(Value::Object(o)) => match o.get_mut("text") {
                Some(Value::String(s)) => s,
                _ => return DataDecision::Relay,
            },
            _ => return DataDecision::Relay,
        };
        if text.len() > self.max_text {
            info(&format!("{handler}: {} bytes of text dropped", text.len()));
            return DataDecision::Drop;
        }
        let masked = mask(text, &self.banned);
        if masked == *text {
            return DataDecision::Relay;
        }
        *text = masked;
        rewrite(&args)
    }

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
            "ask" => {
                let who = args.first().and_then(Value::as_str).unwrap_or("");
                let question = args.get(1).cloned().unwrap_or(Value::Null);
                let (&target, _) = self
                    .members
                    .iter()
                    .find(|(_, n)| n.as_str() == who)
                    .ok_or_else(|| format!("No member named {who}."))?;
                if self.asked.len() >= 1000 {
                    return Err("Too many questions in flight.".into());
                }
                let id = call_with_result(target, "ask", &[question])?;
                self.asked.insert(id, client);
                Ok(json!(id))
            }
            _ => Err(format!("Method not found ({method}).")),
        }
    }

    fn on_call_result(&mut self, client: ClientId, call_id: u64, ok: bool, value: Value) {
        let Some(asker) = self.asked.remove(&call_id) else {
            return;
        };
        let from = self.members.get(&client).cloned().unwrap_or_default();
        let text = match (ok, value) {
            (true, Value::String(s)) => s,
            (true, v) => v.to_string(),
            (false, _) => "(no answer)".to_owned(),
        };
        let _ = call(asker, "onMessage", &[json!(from), json!(text)]);
    }

    fn on_disconnect(&mut self, client: ClientId) {
        if let Some(name) = self.members.remove(&client) {
            self.tell_all("server", &format!("{name} left"));
        }
    }
}

export_app!(Chat);
