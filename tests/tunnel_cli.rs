//! The tunnel and TLS command line: `--http` adds RTMPT listeners, the embedded default's port
//! 80 is optional (one warning naming the fix), `--tls-cert` needs `--tls-key`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wasmgate"))
}

/// Reads stderr lines until `until` matches one (or 20 s pass); returns the lines read.
fn lines_until(child: &mut Child, until: &str) -> Vec<String> {
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let done = line.contains(until);
        seen.push(line);
        if done {
            break;
        }
    }
    seen
}

#[test]
fn http_flag_adds_an_rtmpt_listener() {
    let mut child = bin()
        .args([
            "--rtmp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let seen = lines_until(&mut child, "wasmgate running");
    let _ = child.kill();
    let _ = child.wait();
    let http = seen
        .iter()
        .find(|l| l.contains("RTMPT (HTTP) listening"))
        .unwrap_or_else(|| panic!("no RTMPT listener line:\n{}", seen.join("\n")));
    assert!(http.contains("addr=127.0.0.1:"), "{http}");
}

#[test]
fn unavailable_default_port_80_warns_once_and_rtmp_still_starts() {
    // Hold port 80 if we can; if we cannot, something else holds it or we lack the privilege:
    // either way the gateway cannot bind it.
    let _hold = std::net::TcpListener::bind("0.0.0.0:80");
    let mut child = bin()
        .args(["--rtmp", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let seen = lines_until(&mut child, "wasmgate running");
    let _ = child.kill();
    let _ = child.wait();
    let text = seen.join("\n");
    let warnings: Vec<_> = seen
        .iter()
        .filter(|l| l.contains("cannot listen for RTMPT"))
        .collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(warnings[0].contains("--http 0.0.0.0:8080"), "{text}");
    assert!(warnings[0].contains("CAP_NET_BIND_SERVICE"), "{text}");
    assert!(text.contains("RTMP listening"), "{text}");
    assert!(text.contains("wasmgate running"), "{text}");
}

#[test]
fn tls_cert_without_key_exits_2() {
    let out = bin().args(["--tls-cert", "/tmp/c.pem"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn unreadable_tls_files_fail_start_naming_the_file() {
    let out = bin()
        .args([
            "--rtmp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ])
        .args(["--tls-cert", "/nonexistent/cert.pem"])
        .args(["--tls-key", "/nonexistent/key.pem"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/cert.pem"), "{err}");
}
