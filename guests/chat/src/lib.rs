//! `chat`: a chat room per instance. Client-callable `join(name)`, `say(text)` and `leave()`;
//! every message is pushed to each member with `onMessage(from, text)`. `ask(name, question)`
//! calls `ask(question)` on that member with a responder; the answer comes back to the asker as
//! `onMessage(name, answer)` (a server-to-client call with a result).
//!
//! The member list is the temporary shared object `members` (nickname -> client id): clients
//! that `SharedObject.getRemote("members", uri, false)` see people join and leave as `onSync`
//! changes, and it outlives a restart of this guest (the gateway keeps it for the instance).
//! Only the app writes it: a client's change to `members` is denied (the client gets its old
//! value back). Other shared objects of the room are the clients' own, moderated like data
//! messages: string values and `SharedObject.send` texts get banned words masked, longer texts
//! than `settings.max_text` are refused.
//!
//! Data messages a publisher sends with its stream (`NetStream.send("onChat", text)`, or the
//! `onTextData` captions ffmpeg publishes from a subtitle track) are moderated on the way to the
//! players: words in `settings.banned` become `***`, texts longer than `settings.max_text`
//! (default 1024 bytes) are dropped.

use std::collections::BTreeMap;

use wasmgate_guest::*;

/// The shared object holding the member list.
const MEMBERS: &str = "members";

#[derive(Default)]
struct Chat {
    /// Questions in flight: call id -> who asked.
    asked: BTreeMap<u64, ClientId>,
    /// Lower-case words to mask in data messages.
    banned: Vec<String>,
    max_text: usize,
}

fn members_so() -> SharedObject {
    so::temporary(MEMBERS)
}

/// Every member, nickname -> client, read from the `members` shared object.
fn members() -> BTreeMap<String, ClientId> {
    let list = members_so();
    let mut out = BTreeMap::new();
    for name in so::keys(&list).unwrap_or_default() {
        // AMF has one number type: the id comes back as a JSON float.
        if let Ok(Some(id)) = so::get(&list, &name)
            && let Some(id) = id.as_f64()
        {
            out.insert(name, id as ClientId);
        }
    }
    out
}

fn name_of(client: ClientId) -> Option<String> {
    members()
        .into_iter()
        .find_map(|(name, id)| (id == client).then_some(name))
}

impl Chat {
    fn tell_all(&self, from: &str, text: &str) {
        for m in members().into_values() {
            // A member that left between the two calls is simply skipped.
            let _ = call(m, "onMessage", &[json!(from), json!(text)]);
        }
    }

    /// `text` moderated: `None` when too long, else with banned words masked.
    fn moderate(&self, text: &str) -> Option<String> {
        (text.len() <= self.max_text).then(|| mask(text, &self.banned))
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
                let list = members_so();
                if so::get(&list, &name)?.is_some() {
                    return Err(format!("The name {name} is taken."));
                }
                if let Some(old) = name_of(client) {
                    so::delete(&list, &old)?;
                }
                so::set(&list, &name, &json!(client))?;
                self.tell_all("server", &format!("{name} joined"));
                Ok(json!({ "members": members().keys().collect::<Vec<_>>() }))
            }
            "say" => {
                let name = name_of(client).ok_or("Join the room first.")?;
                let text = args.first().and_then(Value::as_str).unwrap_or("");
                if text.len() > 1024 {
                    return Err("Messages are limited to 1024 bytes.".into());
                }
                self.tell_all(&name, text);
                Ok(json!(true))
            }
            "leave" => {
                let name = name_of(client).ok_or("Not in the room.")?;
                so::delete(&members_so(), &name)?;
                self.tell_all("server", &format!("{name} left"));
                Ok(json!(true))
            }
            "members" => Ok(json!(members().keys().collect::<Vec<_>>())),
            "ask" => {
                let who = args.first().and_then(Value::as_str).unwrap_or("");
                let question = args.get(1).cloned().unwrap_or(Value::Null);
                let target = *members()
                    .get(who)
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
        let from = name_of(client).unwrap_or_default();
        let text = match (ok, value) {
            (true, Value::String(s)) => s,
            (true, v) => v.to_string(),
            (false, _) => "(no answer)".to_owned(),
        };
        let _ = call(asker, "onMessage", &[json!(from), json!(text)]);
    }

    fn on_disconnect(&mut self, client: ClientId) {
        if let Some(name) = name_of(client)
            && so::delete(&members_so(), &name).unwrap_or(false)
        {
            self.tell_all("server", &format!("{name} left"));
        }
    }

    fn on_so_change(
        &mut self,
        _client: ClientId,
        shared: &SharedObject,
        key: &str,
        value: Option<&Value>,
    ) -> SoChangeDecision {
        if shared.name == MEMBERS {
            return SoChangeDecision::Deny(format!("{MEMBERS} is kept by the server"));
        }
        let Some(Value::String(text)) = value else {
            return SoChangeDecision::Allow;
        };
        match self.moderate(text) {
            None => SoChangeDecision::Deny(format!("{key}: {} bytes of text", text.len())),
            Some(masked) if masked == *text => SoChangeDecision::Allow,
            Some(masked) => so::rewrite(&json!(masked)),
        }
    }

    fn on_so_send(
        &mut self,
        _client: ClientId,
        _shared: &SharedObject,
        handler: &str,
        args: &[Value],
    ) -> DataDecision {
        let mut args = args.to_vec();
        let Some(Value::String(text)) = args.first_mut() else {
            return DataDecision::Relay;
        };
        match self.moderate(text) {
            None => {
                info(&format!("{handler}: {} bytes of text dropped", text.len()));
                DataDecision::Drop
            }
            Some(masked) if masked == *text => DataDecision::Relay,
            Some(masked) => {
                *text = masked;
                rewrite(&args)
            }
        }
    }
}

export_app!(Chat);
