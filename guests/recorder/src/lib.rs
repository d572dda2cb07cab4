//! `recorder`: an app that decides what is recorded, as an FMS `main.asc` calling
//! `Stream.record()` would. A publish whose stream name carries `?record=1` (or every publish,
//! with `[settings] record_every_publish = true`) is recorded from its first frame; clients
//! start and stop recordings of live streams with `NetConnection.call`:
//!
//! - `startRecording(stream, name?)` answers the file's path under the record folder;
//! - `stopRecording(stream)` answers whether a recording was running.

use wasmgate_guest::*;

#[derive(Default)]
struct Recorder {
    every_publish: bool,
}

fn arg(args: &[Value], i: usize) -> Option<&str> {
    args.get(i).and_then(Value::as_str)
}

impl App for Recorder {
    fn start(&mut self, _app: &str, _instance: &str, settings: &Value) -> Result<(), String> {
        self.every_publish = match settings.get("record_every_publish") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => return Err(format!("record_every_publish must be true or false, not {other}")),
        };
        Ok(())
    }

    fn on_publish(&mut self, _client: ClientId, stream: &str, query: &str) -> Access {
        if self.every_publish || query_param(query, "record").as_deref() == Some("1") {
            // The stream is not live yet: the recording starts with this publish.
            match record_start(stream, "") {
                Ok(file) => info(&format!("recording {stream} to {file}")),
                Err(e) => warn(&format!("cannot record {stream}: {e}")),
            }
        }
        Access::Allow
    }

    fn on_call(&mut self, _client: ClientId, method: &str, args: &[Value]) -> Result<Value, String> {
        match method {
            "startRecording" => {
                let stream = arg(args, 0).ok_or("startRecording(stream, name?)")?;
                record_start(stream, arg(args, 1).unwrap_or("")).map(Value::from)
            }
            "stopRecording" => {
                let stream = arg(args, 0).ok_or("stopRecording(stream)")?;
                Ok(Value::Bool(record_stop(stream)))
            }
            _ => Err(format!("Method not found ({method}).")),
        }
    }
}

export_app!(Recorder);
