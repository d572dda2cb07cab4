//! The admin API over the real Wasm host: `/api/v1/apps` shows a loaded module's digest, and
//! `POST /api/v1/apps/{app}/reload` loads the module that is now on disk (digest changes).

mod apps;
mod common;
mod gateway;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use apps::*;

/// One HTTP/1.1 request on a fresh connection; returns (status, body).
fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    (status, json)
}

fn digest(v: &serde_json::Value) -> String {
    v["module_digest"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn reload_through_the_admin_api_changes_the_digest() {
    let apps_dir = tempfile::tempdir().unwrap();
    let a = apps_dir.path();
    install_app(a, "gate", "token-auth", "[settings]\ntokens = [\"one\"]\n");
    // No folder watching: only the admin request may load the new module.
    let gw = gateway_with_apps(a, |c| c.apps.watch = false);
    let admin = gw.admin_addr();

    let (status, app) = http(admin, "GET", "/api/v1/apps/gate");
    assert_eq!(status, 200, "{app}");
    assert_eq!(app["kind"], "wasm", "{app}");
    let before = digest(&app);
    assert_eq!(before.len(), 64, "{app}");

    // Deploy another module; nothing changes until the reload request.
    write_atomic(
        &a.join("gate").join("app.wasm"),
        &std::fs::read(guest("chat")).unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(digest(&http(admin, "GET", "/api/v1/apps/gate").1), before);

    let (status, reloaded) = http(admin, "POST", "/api/v1/apps/gate/reload");
    assert_eq!(status, 200, "{reloaded}");
    let after = digest(&reloaded);
    assert_ne!(after, before, "{reloaded}");
    assert_eq!(digest(&http(admin, "GET", "/api/v1/apps/gate").1), after);
    let listed = http(admin, "GET", "/api/v1/apps").1;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|x| digest(x) == after),
        "{listed}"
    );

    let (status, err) = http(admin, "POST", "/api/v1/apps/nosuchapp/reload");
    assert_eq!(status, 404, "{err}");
}
