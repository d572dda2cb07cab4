//! The admin dashboard in headless Debian chromium (playwright-core): while ffmpeg publishes,
//! the page shows the live stream and bandwidth, a screenshot is kept in
//! `target/test-artifacts/admin-dashboard.png`, and its reload, kick and stop buttons work.

mod common;
mod gateway;

use std::process::Command;
use std::time::Duration;

use common::*;
use gateway::Gateway;
use wasmgate::config::Config;

/// Installs chromium, node and playwright-core through the project script (idempotent).
fn ensure_dashboard_deps() {
    let script = manifest_dir().join("scripts/install-dashboard-deps.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script);
    let out = run_capture(cmd, Duration::from_secs(900));
    assert!(
        out.success(),
        "{} failed:\n{}\n{}",
        script.display(),
        out.stdout,
        out.stderr
    );
}

#[test]
fn dashboard_in_chromium_shows_a_live_stream_and_its_buttons_work() {
    ensure_tools();
    ensure_dashboard_deps();
    let mut config = Config::default();
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config.admin.token = Some("dash-token".into());
    let gw = Gateway::start_with(config);
    let mut publisher = ffmpeg_publish(&gw.url("live/dash"), &fixture_flv_long());
    let dir = tempfile::tempdir().unwrap();
    let mut player =
        rtmpdump_play_with(&gw.url("live/dash"), &dir.path().join("p.flv"), 60, &["-V"]);

    let artifacts = manifest_dir().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("admin-dashboard.png");
    let _ = std::fs::remove_file(&shot);

    let mut cmd = Command::new("node");
    cmd.arg(manifest_dir().join("tests/dashboard/dashboard.mjs"))
        .arg(format!("http://{}/", gw.admin_addr()))
        .arg("live/_definst_/dash")
        .arg(&shot)
        .arg("dash-token");
    let out = run_capture(cmd, Duration::from_secs(120));
    assert!(
        out.success(),
        "dashboard check failed ({:?}):\n{}\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    let result: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    eprintln!("dashboard: {result:#}");
    let row = result["stream_row"].as_str().unwrap();
    assert!(
        row.contains("live/_definst_/dash") && row.contains("h264"),
        "{row}"
    );
    assert!(
        result["reload_status"]
            .as_str()
            .unwrap()
            .contains("built-in"),
        "{result}"
    );
    assert!(
        result["config_reload_status"]
            .as_str()
            .unwrap_or_default()
            .contains("No config file to reload"),
        "{result}"
    );

    // The kick button ended the rtmpdump player.
    assert!(
        player.wait_timeout(Duration::from_secs(10)).is_some(),
        "rtmpdump kept playing after the dashboard's kick button"
    );
    let png = std::fs::read(&shot).expect("screenshot kept");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);
    // The stop button kicked the publisher.
    assert!(
        publisher.wait_timeout(Duration::from_secs(10)).is_some(),
        "ffmpeg kept publishing after the dashboard's stop button"
    );
}
