//! `[grants]` proven with the `probe` guest: without grants a guest has no environment, no
//! filesystem and no sockets; `env`, `dirs` (read-only or writable) and `network` (all, or an
//! allowlist) open exactly what they name. Clock and randomness are always there.

mod apps;
mod common;
mod gateway;

use std::io::{ErrorKind, Read};
use std::net::TcpListener;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apps::*;
use serde_json::{Value, json};
use wasmgate::apps::json::amf_to_json;
use wasmgate::rtmp::amf::Amf0Value;

/// Calls a probe method; `{"ok": v}` or `{"err": text}`.
fn probe(c: &mut RtmpClient, method: &str, args: &[&str]) -> Value {
    let args: Vec<Amf0Value> = args.iter().map(|a| Amf0Value::string(*a)).collect();
    let reply = c.call_wait(method, &args);
    assert_eq!(reply.name, "_result", "{method}: {reply:?}");
    amf_to_json(&reply.args[0])
}

fn is_err(v: &Value) -> bool {
    v.get("err").is_some_and(Value::is_string)
}

/// A loopback listener and a check of whether anyone connected to it.
struct Listener(TcpListener);

impl Listener {
    fn open() -> Listener {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        Listener(l)
    }

    fn addr(&self) -> String {
        self.0.local_addr().unwrap().to_string()
    }

    /// What the first connection sent, or None when nobody connected within `wait`.
    fn accepted(&self, wait: Duration) -> Option<String> {
        let end = std::time::Instant::now() + wait;
        loop {
            match self.0.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let mut buf = [0u8; 64];
                    let n = s.read(&mut buf).unwrap_or(0);
                    return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if std::time::Instant::now() >= end {
                        return None;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }
}

fn connect(gw: &gateway::Gateway, app: &str) -> RtmpClient {
    let (c, reply) = RtmpClient::connect(gw.addr, app, &[]);
    assert_eq!(reply.name, "_result", "connect to {app}: {reply:?}");
    c
}

#[test]
fn no_grants_means_no_env_files_or_network() {
    let apps_dir = tempfile::tempdir().unwrap();
    install_app(apps_dir.path(), "bare", "probe", "");
    // A file next to the module: the guest must not see it either.
    std::fs::write(apps_dir.path().join("bare/secret.txt"), "s3cret").unwrap();
    let gw = gateway_with_apps(apps_dir.path(), |_| {});
    let mut c = connect(&gw, "bare");

    assert_eq!(probe(&mut c, "env", &[]), json!({"ok": {}}));
    for path in ["/etc/passwd", "secret.txt", "/secret.txt", "app.toml"] {
        let v = probe(&mut c, "read", &[path]);
        assert!(is_err(&v), "read {path}: {v}");
    }
    for path in ["/", "."] {
        let v = probe(&mut c, "list", &[path]);
        assert!(is_err(&v), "list {path}: {v}");
    }
    let v = probe(&mut c, "write", &["/tmp/probe.txt", "x"]);
    assert!(is_err(&v), "{v}");

    let listener = Listener::open();
    let v = probe(&mut c, "dial", &[&listener.addr()]);
    assert!(is_err(&v), "connect without a network grant: {v}");
    assert_eq!(listener.accepted(Duration::from_millis(300)), None);

    // Clock and randomness need no grant.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64;
    let clock = probe(&mut c, "clock", &[])["ok"].as_f64().unwrap();
    assert!((clock - now).abs() < 60_000.0, "{clock} vs {now}");
    let r1 = probe(&mut c, "random", &[]);
    let r2 = probe(&mut c, "random", &[]);
    assert!(r1["ok"].is_string() && r1 != r2, "{r1} {r2}");
}

#[test]
fn env_grant_shows_only_the_listed_variables() {
    let apps_dir = tempfile::tempdir().unwrap();
    install_app(
        apps_dir.path(),
        "env",
        "probe",
        "[grants]\nenv = { GREETING = \"hi\", MODE = \"test\" }\n",
    );
    let gw = gateway_with_apps(apps_dir.path(), |_| {});
    let mut c = connect(&gw, "env");
    // Not PATH, HOME or anything else of the gateway's own environment.
    assert_eq!(
        probe(&mut c, "env", &[]),
        json!({"ok": {"GREETING": "hi", "MODE": "test"}})
    );
}

#[test]
fn dirs_grant_read_only_and_writable() {
    let apps_dir = tempfile::tempdir().unwrap();
    let app = apps_dir.path().join("files");
    std::fs::create_dir_all(app.join("media")).unwrap();
    std::fs::create_dir_all(app.join("state")).unwrap();
    std::fs::write(app.join("media/hello.txt"), "hello from the host").unwrap();
    install_app(
        apps_dir.path(),
        "files",
        "probe",
        r#"[grants]
dirs = [
  { host = "media", guest = "/media" },
  { host = "state", guest = "/state", write = true },
]
"#,
    );
    let gw = gateway_with_apps(apps_dir.path(), |_| {});
    let mut c = connect(&gw, "files");

    assert_eq!(
        probe(&mut c, "read", &["/media/hello.txt"]),
        json!({"ok": "hello from the host"})
    );
    assert_eq!(
        probe(&mut c, "list", &["/media"]),
        json!({"ok": ["hello.txt"]})
    );
    // Read-only: no new file, no overwrite.
    let v = probe(&mut c, "write", &["/media/new.txt", "x"]);
    assert!(is_err(&v), "{v}");
    let v = probe(&mut c, "write", &["/media/hello.txt", "x"]);
    assert!(is_err(&v), "{v}");
    assert!(!app.join("media/new.txt").exists());
    assert_eq!(
        std::fs::read_to_string(app.join("media/hello.txt")).unwrap(),
        "hello from the host"
    );
    // Nothing outside the granted folders, not even through `..`.
    for path in ["/media/../app.toml", "/state/../../bare", "/etc/passwd"] {
        let v = probe(&mut c, "read", &[path]);
        assert!(is_err(&v), "read {path}: {v}");
    }

    // Writable: the file lands in the app's folder on the host.
    assert_eq!(
        probe(&mut c, "write", &["/state/counter.txt", "41"]),
        json!({"ok": null})
    );
    assert_eq!(
        std::fs::read_to_string(app.join("state/counter.txt")).unwrap(),
        "41"
    );
    assert_eq!(
        probe(&mut c, "read", &["/state/counter.txt"]),
        json!({"ok": "41"})
    );
    // A guest writing into its own folder does not make the watcher reload the app.
    std::thread::sleep(Duration::from_millis(600));
    let info = gw
        .core()
        .apps()
        .list()
        .into_iter()
        .find(|a| a.name == "files")
        .unwrap();
    assert_eq!(info.reloads, 0, "a guest's write reloaded its app");
    assert!(c.is_open(Duration::from_millis(50)));
}

#[test]
fn network_grant_all_and_allowlist() {
    let open = Listener::open();
    let listed = Listener::open();
    let unlisted = Listener::open();
    let apps_dir = tempfile::tempdir().unwrap();
    install_app(
        apps_dir.path(),
        "net",
        "probe",
        "[grants]\nnetwork = true\n",
    );
    install_app(
        apps_dir.path(),
        "some",
        "probe",
        &format!("[grants]\nnetwork = [{:?}]\n", listed.addr()),
    );
    let gw = gateway_with_apps(apps_dir.path(), |_| {});

    let mut c = connect(&gw, "net");
    assert_eq!(probe(&mut c, "dial", &[&open.addr()]), json!({"ok": null}));
    assert_eq!(
        open.accepted(Duration::from_secs(5)).as_deref(),
        Some("probe\n")
    );

    let mut c = connect(&gw, "some");
    assert_eq!(
        probe(&mut c, "dial", &[&listed.addr()]),
        json!({"ok": null})
    );
    assert_eq!(
        listed.accepted(Duration::from_secs(5)).as_deref(),
        Some("probe\n")
    );
    let v = probe(&mut c, "dial", &[&unlisted.addr()]);
    assert!(
        is_err(&v),
        "connect to an address not on the allowlist: {v}"
    );
    assert_eq!(unlisted.accepted(Duration::from_millis(300)), None);
}

#[test]
fn bad_grants_refuse_the_app() {
    let apps_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(apps_dir.path().join("outside")).unwrap();
    install_app(
        apps_dir.path(),
        "escape",
        "probe",
        "[grants]\ndirs = [{ host = \"../outside\", guest = \"/o\" }]\n",
    );
    let gw = gateway_with_apps(apps_dir.path(), |c| {
        c.apps.unknown_apps = wasmgate::config::UnknownApps::Deny
    });
    // Not loaded: the app is unknown, so its connect is refused.
    assert!(gw.core().apps().list().iter().all(|a| a.name != "escape"));
    let (_, reply) = RtmpClient::connect(gw.addr, "escape", &[]);
    assert_eq!(reply.name, "_error", "{reply:?}");
}
