//! The admin flags of the `wasmgate` binary: `--admin`, `--admin-allow`, `--admin-token-file`,
//! `WASMGATE_ADMIN_TOKEN`, secrets kept out of `--print-config`, bad values exit 2 naming the key.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wasmgate"))
}

/// Kills the gateway when the test ends, also on panic.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary and returns the admin address from its `admin listening addr=...` line.
fn start(args: &[&str], env: &[(&str, &str)]) -> (Running, String) {
    let mut cmd = bin();
    cmd.args(["--rtmp", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env_remove("WASMGATE_ADMIN_TOKEN")
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let running = Running(child);
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if line.contains("admin listening") {
            let addr = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .map(|a| a.trim_matches('"').to_owned())
                .unwrap();
            // Keep draining stderr so the gateway never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            return (running, addr);
        }
    }
    panic!("no 'admin listening addr=...' line");
}

fn status(addr: &str, auth: Option<&str>) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = auth
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET /api/v1/server HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn token_from_file_and_from_environment() {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), "file-token\n").unwrap();
    let path = f.path().to_str().unwrap();
    let (_gw, addr) = start(&["--admin-token-file", path], &[]);
    assert_eq!(status(&addr, None), 401);
    assert_eq!(status(&addr, Some("wrong")), 401);
    assert_eq!(status(&addr, Some("file-token")), 200);

    let (_gw, addr) = start(&[], &[("WASMGATE_ADMIN_TOKEN", "env-token")]);
    assert_eq!(status(&addr, None), 401);
    assert_eq!(status(&addr, Some("env-token")), 200);

    let (_gw, addr) = start(&[], &[]);
    assert_eq!(status(&addr, None), 200, "no token configured: no auth");
}

#[test]
fn print_config_shows_admin_and_hides_the_token() {
    let out = bin()
        .args(["--print-config", "--admin-allow", "10.0.0.0/8"])
        .env("WASMGATE_ADMIN_TOKEN", "very-secret")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("[admin]"), "{text}");
    assert!(text.contains("listen = \"127.0.0.1:1111\""), "{text}");
    assert!(text.contains("\"10.0.0.0/8\""), "{text}");
    assert!(!text.contains("very-secret"), "{text}");
}

#[test]
fn bad_admin_flags_exit_2_naming_the_key() {
    let out = bin()
        .args(["--admin-allow", "10.0.0.0/99"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin.allow"));
    let out = bin().args(["--admin", "nowhere"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = bin()
        .args([
            "--admin-token-file",
            "/nonexistent/token",
            "--rtmp",
            "127.0.0.1:0",
        ])
        .args(["--admin", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("admin.token_file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
