//! Helpers for the Wasm application tests: builds the sample guests in `guests/` once per test
//! process, lays out an apps folder, starts a gateway on it, and a small RTMP client (on the
//! crate's sans-IO handshake/chunk/AMF code) that can call methods and receive server calls.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use wasmgate::config::Config;
use wasmgate::rtmp::amf::{Amf0Value, AmfLimits, decode_amf0_all, encode_amf0_all};
use wasmgate::rtmp::chunk::{ChunkDecoder, ChunkEncoder, ChunkLimits, MessageHeader};
use wasmgate::rtmp::command::Command as RtmpCommand;
use wasmgate::rtmp::handshake::ClientHandshake;
use wasmgate::rtmp::message::ControlMessage;

use crate::gateway::Gateway;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Builds every guest in `guests/` and `examples/hello-guest` (the README's example, so it
/// cannot rot) once per test process (cargo's own lock serialises processes) and returns the
/// folder holding the `.wasm` files. Both share one target folder and release profile, so the
/// example reuses the guests' compiled dependencies.
pub fn guests_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = manifest_dir().join("target").join("guests");
        for manifest in [
            manifest_dir().join("guests").join("Cargo.toml"),
            manifest_dir()
                .join("examples")
                .join("hello-guest")
                .join("Cargo.toml"),
        ] {
            build_guests(&manifest, &target);
        }
        target.join("wasm32-wasip2").join("release")
    })
}

fn build_guests(manifest: &Path, target: &Path) {
    let build = || {
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(manifest)
        .env("CARGO_TARGET_DIR", target)
        // The outer `cargo test` sets these for the host build; the guests are their own.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
        cmd.output().expect("cargo runs")
    };
    let mut out = build();
    if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("wasm32-wasip2") {
        // A fresh machine without the target: add it (as scripts/install-test-deps.sh does).
        let _ = Command::new("rustup")
            .args(["target", "add", "wasm32-wasip2"])
            .status();
        out = build();
    }
    assert!(
        out.status.success(),
        "building {} failed:\n{}",
        manifest.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The built component of guest crate `name` (e.g. `token-auth`).
pub fn guest(name: &str) -> PathBuf {
    guests_dir().join(format!("{}.wasm", name.replace('-', "_")))
}

/// The Python sample guest (`guests/python/stream-gate`) built by `scripts/build-python-guest.sh`
/// (a venv with a pinned componentize-py under `target/`, the build cached by input hash), once
/// per test process. Fails the test, never skips it, when the toolchain cannot be set up.
pub fn python_guest() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        let script = manifest_dir().join("scripts").join("build-python-guest.sh");
        let out = Command::new(&script)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "building the Python guest failed (python3 with venv, PyPI access for \
             componentize-py are needed; scripts/install-test-deps.sh installs python3-venv):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let path = PathBuf::from(stdout.lines().last().unwrap_or("").trim());
        assert!(path.is_file(), "build-python-guest.sh printed {stdout:?}");
        path
    })
}

/// The JavaScript guest `guests/js/<name>` built by `scripts/build-js-guest.sh` (a pinned
/// componentize-js installed with `npm ci` under `target/`, the build cached by input hash), once
/// per test process and name. Fails the test, never skips it, when the toolchain cannot be set up.
pub fn js_guest(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, path)) = built.iter().find(|(n, _)| n == name) {
        return path.clone();
    }
    let script = manifest_dir().join("scripts").join("build-js-guest.sh");
    let dir = manifest_dir().join("guests").join("js").join(name);
    let out = Command::new(&script)
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "building the JS guest {name} failed (node >= 20.19 with npm and npm registry access for \
         componentize-js are needed; scripts/install-test-deps.sh installs node):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = PathBuf::from(stdout.lines().last().unwrap_or("").trim());
    assert!(path.is_file(), "build-js-guest.sh printed {stdout:?}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr).trim_end());
    built.push((name.to_owned(), path.clone()));
    path
}

/// Installs `guest` as `apps/<app>/` with `app.toml` text; writes through a temporary file and
/// a rename, as a deploy should, so the watcher never sees half a module.
pub fn install_app(apps: &Path, app: &str, guest_name: &str, toml: &str) {
    install_wasm(apps, app, &guest(guest_name), toml);
}

/// Installs the component at `wasm` as `apps/<app>/` with `app.toml` text.
pub fn install_wasm(apps: &Path, app: &str, wasm: &Path, toml: &str) {
    let dir = apps.join(app);
    std::fs::create_dir_all(&dir).unwrap();
    write_atomic(&dir.join("app.toml"), toml.as_bytes());
    write_atomic(&dir.join("app.wasm"), &std::fs::read(wasm).unwrap());
}

pub fn write_atomic(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A gateway serving the apps folder `apps` (compile cache under `target/`).
pub fn gateway_with_apps(apps: &Path, tweak: impl FnOnce(&mut Config)) -> Gateway {
    let mut config = Config::default();
    config.apps.dir = Some(apps.to_path_buf());
    config.apps.cache_dir = Some(manifest_dir().join("target").join("wasm-cache"));
    tweak(&mut config);
    Gateway::start_with(config)
}

/// A blocking RTMP client for method calls (not media).
pub struct RtmpClient {
    sock: TcpStream,
    inbuf: BytesMut,
    dec: ChunkDecoder,
    enc: ChunkEncoder,
    next_txn: f64,
    /// Commands received and not yet taken by `wait_for`.
    pub inbox: Vec<RtmpCommand>,
}

impl RtmpClient {
    /// Handshakes and sends `connect` for `app` (`app` or `app/instance`) with `args` after the
    /// command object. Returns the client and the server's answer (`_result` or `_error`).
    pub fn connect(addr: SocketAddr, app: &str, args: &[Amf0Value]) -> (RtmpClient, RtmpCommand) {
        let mut sock = TcpStream::connect(addr).expect("connect");
        sock.set_nodelay(true).unwrap();
        let mut hs = ClientHandshake::new(false);
        let mut out = BytesMut::new();
        hs.start(&mut out);
        sock.write_all(&out).unwrap();
        let mut inbuf = BytesMut::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut out = BytesMut::new();
            let done = hs.feed(&mut inbuf, &mut out).expect("handshake");
            sock.write_all(&out).unwrap();
            if done {
                break;
            }
            assert!(Instant::now() < deadline, "handshake timed out");
            read_some(&mut sock, &mut inbuf, Duration::from_secs(5));
        }
        let mut c = RtmpClient {
            sock,
            inbuf,
            dec: ChunkDecoder::new(ChunkLimits::default()),
            enc: ChunkEncoder::new(),
            next_txn: 1.0,
            inbox: Vec::new(),
        };
        let mut values = vec![
            Amf0Value::string("connect"),
            Amf0Value::Number(1.0),
            Amf0Value::object([
                ("app", Amf0Value::string(app)),
                ("tcUrl", Amf0Value::string(format!("rtmp://{addr}/{app}"))),
                ("flashVer", Amf0Value::string("LNX 9,0,124,2")),
            ]),
        ];
        values.extend_from_slice(args);
        c.send(&values);
        let reply = c
            .wait_for(Duration::from_secs(10), |m| {
                (m.name == "_result" || m.name == "_error") && m.transaction_id == 1.0
            })
            .expect("an answer to connect");
        c.next_txn = 2.0;
        (c, reply)
    }

    fn send(&mut self, values: &[Amf0Value]) {
        let payload = encode_amf0_all(values);
        let mut out = BytesMut::new();
        let header = MessageHeader {
            timestamp: 0,
            type_id: 20,
            stream_id: 0,
        };
        self.enc.encode(3, &header, &payload, &mut out);
        self.sock.write_all(&out).unwrap();
    }

    /// `NetConnection.call(method, responder, args...)`; returns the transaction id.
    pub fn call(&mut self, method: &str, args: &[Amf0Value]) -> f64 {
        let txn = self.next_txn;
        self.next_txn += 1.0;
        let mut v = vec![
            Amf0Value::string(method),
            Amf0Value::Number(txn),
            Amf0Value::Null,
        ];
        v.extend_from_slice(args);
        self.send(&v);
        txn
    }

    /// Calls and waits for the `_result`/`_error`.
    pub fn call_wait(&mut self, method: &str, args: &[Amf0Value]) -> RtmpCommand {
        let txn = self.call(method, args);
        self.wait_for(Duration::from_secs(5), |m| {
            (m.name == "_result" || m.name == "_error") && m.transaction_id == txn
        })
        .unwrap_or_else(|| panic!("no answer to {method}"))
    }

    /// Answers a server call (`Client.call` with a responder).
    pub fn answer(&mut self, txn: f64, value: Amf0Value) {
        self.send(&[
            Amf0Value::string("_result"),
            Amf0Value::Number(txn),
            Amf0Value::Null,
            value,
        ]);
    }

    /// The first received command matching `pred` (taken from the inbox), reading until
    /// `timeout`; None on timeout or when the server closed.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&RtmpCommand) -> bool,
    ) -> Option<RtmpCommand> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.inbox.iter().position(&pred) {
                return Some(self.inbox.remove(i));
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            if !self.read_messages(deadline - now) {
                return self
                    .inbox
                    .iter()
                    .position(&pred)
                    .map(|i| self.inbox.remove(i));
            }
        }
    }

    /// True while the connection is open (reads for up to `wait`).
    pub fn is_open(&mut self, wait: Duration) -> bool {
        self.read_messages(wait)
    }

    /// Reads and decodes what arrives within `wait`; false when the server closed.
    fn read_messages(&mut self, wait: Duration) -> bool {
        if !read_some(&mut self.sock, &mut self.inbuf, wait) {
            return false;
        }
        while let Ok(Some(msg)) = self.dec.decode(&mut self.inbuf) {
            if let Ok(Some(ControlMessage::SetChunkSize(n))) =
                ControlMessage::parse(msg.header.type_id, &msg.payload)
            {
                self.dec.set_chunk_size(n).unwrap();
                continue;
            }
            if msg.header.type_id == 20 {
                let values = decode_amf0_all(&msg.payload, &AmfLimits::default()).unwrap();
                if let Some(cmd) = RtmpCommand::from_values(values) {
                    self.inbox.push(cmd);
                }
            }
        }
        true
    }
}

/// Reads what is available within `wait` into `buf`; false on EOF or a reset.
fn read_some(sock: &mut TcpStream, buf: &mut BytesMut, wait: Duration) -> bool {
    sock.set_read_timeout(Some(wait.max(Duration::from_millis(1))))
        .unwrap();
    let mut tmp = [0u8; 16384];
    match sock.read(&mut tmp) {
        Ok(0) => false,
        Ok(n) => {
            buf.extend_from_slice(&tmp[..n]);
            true
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => true,
        Err(_) => false,
    }
}

/// The `description` of an `_error`/`onStatus` info object (the fourth value).
pub fn description(cmd: &RtmpCommand) -> String {
    cmd.args
        .first()
        .and_then(|v| v.get("description"))
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_owned()
}
