//! Config reload on a running gateway: SIGHUP to the real binary and `POST
//! /api/v1/config/reload`, while ffmpeg publishes and rtmpdump plays. New limits, tokens and
//! allowlists apply to new connections, players keep playing, restart-only keys are named, and
//! an invalid file changes nothing.

mod common;
mod gateway;
mod raw;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use gateway::Gateway;
use raw::Raw;
use serde_json::Value;
use wasmgate::config::Config;
use wasmgate::gateway::ConfigSource;

/// One HTTP/1.1 exchange with the admin listener: (status, body). `None` when the server
/// closed without answering (the allowlist does that).
fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Length: 0\r\n\r\n"
    );
    let _ = s.write_all(req.as_bytes());
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// The `wasmgate` binary started with `--config FILE` and flags that move every listener to a
/// free loopback port; its log goes to a file the test reads. Killed on drop.
struct Bin {
    child: Child,
    rtmp: SocketAddr,
    admin: SocketAddr,
    config: PathBuf,
    log: tempfile::NamedTempFile,
    _dir: tempfile::TempDir,
}

impl Bin {
    fn start(config: &str) -> Bin {
        Bin::start_logging(config, Some("info"))
    }

    /// With `rust_log` None the config's `log_level` decides what is logged.
    fn start_logging(config: &str, rust_log: Option<&str>) -> Bin {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wasmgate.toml");
        std::fs::write(&path, config).unwrap();
        let rtmp: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let log = tempfile::Builder::new()
            .prefix("wasmgate-reload-")
            .tempfile()
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasmgate"));
        match rust_log {
            Some(filter) => cmd.env("RUST_LOG", filter),
            None => cmd.env_remove("RUST_LOG"),
        };
        let child = cmd
            .arg("--config")
            .arg(&path)
            .args(["--rtmp", &rtmp.to_string()])
            .args(["--admin", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .env_remove("WASMGATE_ADMIN_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("wasmgate binary starts");
        let mut bin = Bin {
            child,
            rtmp,
            admin: rtmp,
            config: path,
            log,
            _dir: dir,
        };
        let mut admin = None;
        assert!(
            wait_until(Duration::from_secs(10), || {
                admin = bin.log().lines().find_map(|l| {
                    let rest = l.split("admin listening addr=").nth(1)?;
                    rest.split_whitespace().next()?.parse().ok()
                });
                admin.is_some() && TcpStream::connect(rtmp).is_ok()
            }),
            "gateway did not start: {}",
            bin.log()
        );
        bin.admin = admin.unwrap();
        bin
    }

    fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.log.path()).unwrap_or_default()).into_owned()
    }

    fn url(&self, path: &str) -> String {
        format!("rtmp://{}/{}", self.rtmp, path)
    }

    fn write_config(&self, text: &str) {
        // Write then rename, as editors and config management do, so a reload never reads a
        // half-written file.
        let tmp = self.config.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
    }

    /// Sends SIGHUP and waits for the reload's outcome line (`reloaded` or `refused`).
    fn sighup(&self) {
        let count = |log: &str| {
            log.matches("configuration reloaded").count()
                + log.matches("config reload refused").count()
        };
        let before = count(&self.log());
        let ok = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -HUP failed");
        assert!(
            wait_until(Duration::from_secs(5), || count(&self.log()) > before),
            "no reload after SIGHUP: {}",
            self.log()
        );
    }
}

impl Drop for Bin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_text(max_connections: usize, token: &str, extra: &str) -> String {
    format!("[rtmp]\nmax_connections = {max_connections}\n[admin]\ntoken = \"{token}\"\n{extra}")
}

/// The binary end to end: a player that spans three reloads (SIGHUP with new limits, the admin
/// endpoint, an invalid file) keeps receiving a clean stream while the new settings govern new
/// connections.
#[test]
fn sighup_and_admin_reload_apply_live_keys_and_keep_players() {
    ensure_tools();
    let gw = Bin::start(&config_text(50, "old", ""));
    let dir = tempfile::tempdir().unwrap();
    let url = gw.url("live/reload");
    let mut publisher = ffmpeg_publish(&url, &fixture_flv_long());
    let kept = dir.path().join("kept.flv");
    // rtmpdump records until interrupted below.
    let mut player = rtmpdump_play(&url, &kept, 60);
    assert!(
        wait_until(Duration::from_secs(15), || file_len(&kept) > 20_000),
        "player got no media: {}\n{}",
        player.stderr(),
        gw.log()
    );

    // Two connections open, the limit goes to 2; a new token, a smaller chunk size, a shorter
    // merge window, and a restart-only key.
    let reloaded = config_text(
        2,
        "new",
        "[apps]\nmax_instances = 7\n[media]\nmerge_window_ms = 50\n",
    );
    let reloaded = reloaded.replacen("[rtmp]\n", "[rtmp]\nchunk_size = 1024\n", 1);
    gw.write_config(&reloaded);
    // The probe above may still be counted for a moment.
    assert!(wait_until(Duration::from_secs(3), || {
        http(gw.admin, "GET", "/api/v1/server", Some("old"))
            .map(|(_, b)| json(&b)["connections"]["current"] == 2)
            .unwrap_or(false)
    }));
    gw.sighup();
    let log = gw.log();
    assert!(
        log.contains("apps.max_instances changed: needs a restart, still using 128"),
        "no restart warning: {log}"
    );
    for key in [
        "rtmp.max_connections",
        "rtmp.chunk_size",
        "admin.token",
        "media.merge_window_ms",
    ] {
        assert!(
            log.contains(&format!("config reload: {key} applied")),
            "{key} not applied: {log}"
        );
    }
    // The new limit holds for a new connection: accepted by the kernel, closed at once.
    let mut refused = Raw::tcp(gw.rtmp);
    assert!(
        refused.closed_within(Duration::from_secs(3)).is_some(),
        "a third connection was served with rtmp.max_connections = 2"
    );
    // The token changed for the next request.
    assert_eq!(
        http(gw.admin, "GET", "/api/v1/server", Some("old"))
            .unwrap()
            .0,
        401
    );
    let (status, body) = http(gw.admin, "GET", "/api/v1/config", Some("new")).unwrap();
    assert_eq!(status, 200, "{body}");
    let cfg = json(&body);
    assert_eq!(cfg["rtmp"]["max_connections"], 2);
    assert_eq!(cfg["rtmp"]["chunk_size"], 1024);
    // Restart-only keys keep their running value; the command line still wins over the file.
    assert_eq!(cfg["apps"]["max_instances"], 128);
    assert_eq!(cfg["rtmp"]["listen"][0], gw.rtmp.to_string());
    // The player from before the reload keeps receiving.
    let before = file_len(&kept);
    assert!(
        wait_until(Duration::from_secs(5), || file_len(&kept) > before + 20_000),
        "the running player stalled after the reload ({before} bytes)"
    );

    // The admin endpoint: same code path, JSON report.
    gw.write_config(&reloaded.replace("max_connections = 2", "max_connections = 50"));
    let (status, body) = http(gw.admin, "POST", "/api/v1/config/reload", Some("new")).unwrap();
    assert_eq!(status, 200, "{body}");
    let report = json(&body);
    assert_eq!(
        report["applied"],
        serde_json::json!(["rtmp.max_connections"])
    );
    assert_eq!(
        report["needs_restart"],
        serde_json::json!(["apps.max_instances"])
    );
    assert_eq!(report["config_file"], gw.config.display().to_string());
    assert_eq!(report["tls_reloaded"], false);

    // A new player now gets in, on the new chunk size, although the GOP cache holds frames
    // encoded at the old one.
    let late = dir.path().join("late.flv");
    let mut late_player = ffmpeg_play(&url, &late, 3.0);
    late_player.finish(Duration::from_secs(20));
    let packets = assert_av_file(&late);
    assert!(first_video_is_keyframe(&packets));

    // An invalid file: 400 naming the key, nothing applied.
    // (It also drops the token and lowers the limit, so a half-applied reload would show.)
    gw.write_config("[rtmp]\nchunk_size = 1\nmax_connections = 1\n");
    let (status, body) = http(gw.admin, "POST", "/api/v1/config/reload", Some("new")).unwrap();
    assert_eq!(status, 400, "{body}");
    let msg = json(&body)["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(msg.starts_with("rtmp.chunk_size"), "{msg}");
    gw.sighup();
    assert!(
        gw.log().contains("rtmp.chunk_size: 1 is outside"),
        "{}",
        gw.log()
    );
    let (status, body) = http(gw.admin, "GET", "/api/v1/config", Some("new")).unwrap();
    assert_eq!(status, 200, "the old token stopped working: {body}");
    assert_eq!(json(&body)["rtmp"]["max_connections"], 50);
    let mut fresh = Raw::connected(gw.rtmp);
    assert!(fresh.answers_call(3, &[]), "a new connection was refused");

    let (_, metrics) = http(gw.admin, "GET", "/metrics", Some("new")).unwrap();
    for line in [
        "wasmgate_config_reloads_total{result=\"applied\"} 2",
        "wasmgate_config_reloads_total{result=\"refused\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }

    player.interrupt();
    player.finish(Duration::from_secs(10));
    publisher.kill();
    let packets = assert_av_file(&kept);
    assert_monotonic(&packets);
    let log = gw.log();
    assert!(!log.contains("panicked"), "{log}");
}

/// The in-process gateway with a config source like the binary's: the file, with the same
/// overrides applied at start and on every reload (as the command-line flags are).
fn in_process_with_file(path: &Path) -> Gateway {
    fn overrides(c: &mut Config) {
        c.rtmp.listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.admin.listen = "127.0.0.1:0".parse().unwrap();
        c.http.listen = Vec::new();
    }
    let mut c = Config::from_file(path).unwrap();
    overrides(&mut c);
    let gw = Gateway::start_with(c);
    let p = path.to_path_buf();
    gw.server
        .reloader
        .set_source(ConfigSource::new(p.clone(), move || {
            let mut c = Config::from_file(&p)?;
            overrides(&mut c);
            c.validate()?;
            Ok(c)
        }));
    gw
}

/// Per-IP limit, admin allowlist and token file, changed under an open connection.
#[test]
fn per_ip_limit_allowlist_and_token_file_change_live() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "first\n").unwrap();
    let path = dir.path().join("gw.toml");
    let text = |per_ip: usize, allow: &str| {
        format!(
            "[rtmp]\nmax_connections_per_ip = {per_ip}\n[admin]\nallow = [\"{allow}\"]\ntoken_file = \"{}\"\n",
            token_file.display()
        )
    };
    std::fs::write(&path, text(10, "127.0.0.0/8")).unwrap();
    let gw = in_process_with_file(&path);
    let admin = gw.admin_addr();
    let mut first = Raw::connected(gw.addr);

    std::fs::write(&path, text(1, "127.0.0.0/8")).unwrap();
    std::fs::write(&token_file, "second\n").unwrap();
    let report = gw.server.reloader.reload().expect("valid config reloads");
    assert_eq!(
        report.applied,
        ["admin.token_file", "rtmp.max_connections_per_ip"]
    );
    assert!(report.needs_restart.is_empty(), "{report:?}");
    // The open connection stays; a second one from the same address is closed.
    assert!(
        first.answers_call(3, &[]),
        "the open connection was dropped"
    );
    let mut second = Raw::tcp(gw.addr);
    assert!(second.closed_within(Duration::from_secs(3)).is_some());
    // The token file was read again.
    assert_eq!(
        http(admin, "GET", "/api/v1/server", Some("first"))
            .unwrap()
            .0,
        401
    );
    assert_eq!(
        http(admin, "GET", "/api/v1/server", Some("second"))
            .unwrap()
            .0,
        200
    );

    // An unreadable token file refuses the whole reload: the per-IP limit stays 1.
    std::fs::write(&path, text(10, "127.0.0.0/8")).unwrap();
    std::fs::remove_file(&token_file).unwrap();
    let e = gw.server.reloader.reload().unwrap_err().to_string();
    assert!(e.contains("admin.token_file"), "{e}");
    assert!(
        Raw::tcp(gw.addr)
            .closed_within(Duration::from_secs(3))
            .is_some()
    );
    assert_eq!(
        http(admin, "GET", "/api/v1/server", Some("second"))
            .unwrap()
            .0,
        200
    );

    // Loopback leaves the allowlist: the admin listener closes on accept from now on.
    std::fs::write(&token_file, "second\n").unwrap();
    std::fs::write(&path, text(10, "192.0.2.0/24")).unwrap();
    let report = gw.server.reloader.reload().unwrap();
    assert_eq!(
        report.applied,
        ["admin.allow", "rtmp.max_connections_per_ip"]
    );
    assert_eq!(http(admin, "GET", "/api/v1/server", Some("second")), None);
    let mut third = Raw::connected(gw.addr);
    assert!(third.answers_call(3, &[]));
    assert!(first.answers_call(3, &[]));
}

/// Without a config file the reload only re-reads TLS, and says so.
#[test]
fn without_a_config_file_only_tls_reloads() {
    let mut c = Config::default();
    c.admin.listen = "127.0.0.1:0".parse().unwrap();
    let gw = Gateway::start_with(c);
    let (status, body) = http(gw.admin_addr(), "POST", "/api/v1/config/reload", None).unwrap();
    assert_eq!(status, 200, "{body}");
    let r = json(&body);
    assert_eq!(r["config_file"], Value::Null);
    assert_eq!(r["applied"], serde_json::json!([]));
    assert_eq!(r["tls_reloaded"], false);
    // GET is not a reload.
    let (status, _) = http(gw.admin_addr(), "GET", "/api/v1/config/reload", None).unwrap();
    assert_eq!(status, 405);
}

/// `tls.cert`/`tls.key` are live: a reload turns RTMPS on for the next handshake (ffmpeg
/// publishes over it), and certificate files that do not load refuse the whole reload.
#[test]
fn tls_turned_on_by_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    std::fs::write(&path, "").unwrap();
    let gw = in_process_with_file(&path);
    assert!(gw.server.tls.acceptor().is_none());

    let (cert, key) = gateway::write_cert(dir.path());
    let tls = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    );
    std::fs::write(&path, &tls).unwrap();
    let report = gw.server.reloader.reload().unwrap();
    assert_eq!(report.applied, ["tls.cert", "tls.key"]);
    assert!(report.tls_reloaded);
    let url = format!("rtmps://{}/live/tls", gw.addr);
    let mut publisher = ffmpeg_publish_with(&url, &fixture_flv(), &["-t", "2"]);
    let status = publisher.finish(Duration::from_secs(30));
    assert!(
        status.success(),
        "rtmps publish failed: {}",
        publisher.stderr()
    );

    // A certificate that does not parse: refused, naming the file; TLS stays on, and the
    // other change in the same file is not applied either.
    std::fs::write(&cert, "not a certificate").unwrap();
    std::fs::write(&path, format!("{tls}[rtmp]\nmax_connections = 3\n")).unwrap();
    let e = gw.server.reloader.reload().unwrap_err().to_string();
    assert!(e.contains("cert.pem"), "{e}");
    assert!(gw.server.tls.acceptor().is_some());
    assert_eq!(gw.core().config().rtmp.max_connections, 10_000);
}

/// `log_level` is live in the binary: connection logs appear once a reload lowers the filter
/// from `warn` to `info` (RUST_LOG unset, so the file decides).
#[test]
fn sighup_changes_the_log_filter() {
    let quiet = "log_level = \"warn,wasmgate::admin=info,wasmgate::gateway::reload=info\"\n";
    let gw = Bin::start_logging(quiet, None);
    let mut c = Raw::connected(gw.rtmp);
    assert!(c.answers_call(3, &[]));
    assert!(!gw.log().contains("connect accepted"), "{}", gw.log());

    gw.write_config("log_level = \"info\"\n");
    gw.sighup();
    assert!(
        gw.log().contains("config reload: log_level applied"),
        "{}",
        gw.log()
    );
    let mut c = Raw::connected(gw.rtmp);
    assert!(c.answers_call(3, &[]));
    assert!(
        wait_until(Duration::from_secs(3), || gw
            .log()
            .contains("connect accepted")),
        "info lines still filtered after the reload: {}",
        gw.log()
    );
    // A filter that does not parse is refused like any bad value, naming the key.
    gw.write_config("log_level = \"wasmgate=loud\"\n");
    gw.sighup();
    assert!(gw.log().contains("log_level: "), "{}", gw.log());
}

/// RTMPT limits are live: lowering `http.max_sessions_per_ip` refuses the next `/open` (503)
/// while the session already open keeps working.
#[test]
fn rtmpt_session_limit_changes_live() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    std::fs::write(&path, "[http]\nmax_sessions_per_ip = 64\n").unwrap();
    let gw = in_process_with_file(&path);
    // RTMPT is served on the RTMP port too (sniffed).
    let (status, id) = http(gw.addr, "POST", "/open/1", None).unwrap();
    assert_eq!(status, 200, "{id}");
    let id = id.trim().to_string();

    std::fs::write(&path, "[http]\nmax_sessions_per_ip = 1\n").unwrap();
    let report = gw.server.reloader.reload().unwrap();
    assert_eq!(report.applied, ["http.max_sessions_per_ip"]);
    let (status, body) = http(gw.addr, "POST", "/open/1", None).unwrap();
    assert_eq!(status, 503, "{body}");
    // The open session still answers its polls.
    let (status, _) = http(gw.addr, "POST", &format!("/idle/{id}/0"), None).unwrap();
    assert_eq!(status, 200);
}
