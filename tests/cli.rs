//! The `wasmgate` binary's command line: config errors exit 2 naming the key, `--rtmp` replaces
//! the listeners, the embedded default needs no file.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wasmgate"))
}

fn write_config(text: &str) -> tempfile::NamedTempFile {
    let f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(f.path(), text).unwrap();
    f
}

#[test]
fn unknown_key_exits_2_and_names_it() {
    let cfg = write_config("[rtmp]\nlisten_on = [\"127.0.0.1:0\"]\n");
    let out = bin().arg("--config").arg(cfg.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen_on"), "{err}");
}

#[test]
fn bad_value_exits_2_and_names_the_key() {
    let cfg = write_config("[media]\nplayer_queue = \"lots\"\n");
    let out = bin().arg("--config").arg(cfg.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("media.player_queue"), "{err}");

    let cfg = write_config("[rtmp]\nchunk_size = 64\n");
    let out = bin().arg("--config").arg(cfg.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rtmp.chunk_size"));
}

#[test]
fn missing_config_file_exits_2() {
    let out = bin()
        .args(["--config", "/nonexistent/wasmgate.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bad_cli_address_exits_2() {
    let out = bin().args(["--rtmp", "not-an-address"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn print_config_shows_the_embedded_default() {
    let out = bin().arg("--print-config").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("0.0.0.0:1935"), "{text}");
    assert!(text.contains("chunk_size = 4096"), "{text}");
}

#[test]
fn rtmp_flag_replaces_listeners_and_the_server_accepts() {
    let mut child = bin()
        .args(["--rtmp", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut addr = None;
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if line.contains("RTMP listening") {
            addr = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .map(|a| a.trim_matches('"').to_owned());
            break;
        }
    }
    let addr = addr.expect("no 'RTMP listening addr=...' line");
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    assert!(TcpStream::connect(&addr).is_ok());
    let _ = child.kill();
    let _ = child.wait();
}

/// Starts the binary on 127.0.0.1:0 and returns it with its RTMP address.
fn spawn_gateway(extra: &[&str]) -> (std::process::Child, String) {
    let mut child = bin()
        .args(["--rtmp", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(extra)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(a) = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .filter(|_| line.contains("RTMP listening"))
            {
                let _ = tx.send(a.trim_matches('"').to_owned());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("gateway did not start");
    (child, addr)
}

#[test]
fn sigterm_tells_clients_and_exits_zero() {
    use wasmgate::client::RtmpClient;
    let (mut child, addr) = spawn_gateway(&[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = RtmpClient::connect(&format!("rtmp://{addr}/live"), vec![])
            .await
            .unwrap();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let info = c
            .wait_status(Duration::from_secs(5), |code| {
                code == "NetConnection.Connect.Closed"
            })
            .await;
        assert!(info.is_ok(), "{info:?}");
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        assert!(
            Instant::now() < deadline,
            "gateway did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(0));
}
