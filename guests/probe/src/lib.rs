//! `probe`: reports what the sandbox lets a guest reach, to prove `[grants]`. Client-callable
//! methods try the environment, files, sockets, clock and randomness and answer what happened.
//!
//! Every method answers `{"ok": value}` or `{"err": "why"}` (an `_result` either way):
//! `env()` all variables; `read(path)` a file's text; `write(path, text)`; `list(path)` the
//! names in a directory; `dial("ip:port")` (not `connect`, an RTMP command) opens a TCP
//! connection and writes `probe\n`; `clock()` milliseconds since the epoch; `random()` a random
//! 64-bit number (as a string).

use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmgate_guest::*;

#[derive(Default)]
struct Probe;

fn arg(args: &[Value], i: usize) -> Result<&str, String> {
    args.get(i)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("argument {} must be a string", i + 1))
}

fn run(method: &str, args: &[Value]) -> Result<Value, String> {
    let io = |e: std::io::Error| e.to_string();
    match method {
        "env" => Ok(Value::Object(
            std::env::vars().map(|(k, v)| (k, Value::from(v))).collect(),
        )),
        "read" => std::fs::read_to_string(arg(args, 0)?)
            .map(Value::from)
            .map_err(io),
        "write" => std::fs::write(arg(args, 0)?, arg(args, 1)?)
            .map(|_| Value::Null)
            .map_err(io),
        "list" => {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(arg(args, 0)?).map_err(io)? {
                names.push(
                    entry
                        .map_err(io)?
                        .file_name()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
            names.sort();
            Ok(json!(names))
        }
        "dial" => {
            let addr = arg(args, 0)?
                .parse()
                .map_err(|e| format!("bad address: {e}"))?;
            let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500))
                .map_err(io)?;
            s.write_all(b"probe\n").map_err(io)?;
            Ok(Value::Null)
        }
        "clock" => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| json!(d.as_millis() as u64))
            .map_err(|e| e.to_string()),
        "random" => {
            // RandomState is seeded from the platform's random source (wasi:random here).
            let mut h = std::hash::RandomState::new().build_hasher();
            h.write_u8(0);
            Ok(json!(h.finish().to_string()))
        }
        _ => Err(format!("Method not found ({method}).")),
    }
}

impl App for Probe {
    fn on_call(
        &mut self,
        _client: ClientId,
        method: &str,
        args: &[Value],
    ) -> Result<Value, String> {
        Ok(match run(method, args) {
            Ok(v) => json!({ "ok": v }),
            Err(e) => json!({ "err": e }),
        })
    }
}

export_app!(Probe);
