//! The admin dashboard in headless Debian chromium (playwright-core): while ffmpeg publishes and
//! a project client uses a shared object, the page shows the live stream, bandwidth and the
//! shared object (with its slots), a screenshot is kept in
//! `target/test-artifacts/admin-dashboard.png`, and its reload, kick and stop buttons work.

mod common;
mod gateway;

use std::process::Command;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use common::*;
use gateway::Gateway;
use wasmgate::client::RtmpClient;
use wasmgate::config::Config;
use wasmgate::rtmp::amf::Amf0Value;
use wasmgate::rtmp::shared_object::{SoEncoding, SoEvent, SoMessage};

/// The shared object the page must show: `live/_definst_/board`.
const SO_NAME: &str = "board";

/// A client on its own thread that uses the temporary shared object [`SO_NAME`] on `url`'s app,
/// sets two slots (version 3), and stays connected, reading what the server sends, until `stop`
/// is sent or dropped. Returns once the slots are applied.
fn so_client(url: String) -> (JoinHandle<()>, tokio::sync::oneshot::Sender<()>) {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut c = RtmpClient::connect(&url, vec![]).await.unwrap();
            let changes = vec![
                SoEvent::Use,
                SoEvent::RequestChange {
                    key: "topic".into(),
                    value: Amf0Value::string("dashboards"),
                },
                SoEvent::RequestChange {
                    key: "seats".into(),
                    value: Amf0Value::Number(12.0),
                },
            ];
            let msg = SoMessage::new(SO_NAME, 0, false, changes);
            c.send_shared_object(&msg, SoEncoding::Amf0).await.unwrap();
            loop {
                let (_, m) = c.next_shared_object(Duration::from_secs(5)).await.unwrap();
                if m.version == 3 {
                    break;
                }
            }
            ready_tx.send(()).unwrap();
            tokio::select! {
                _ = stop_rx => {}
                _ = async { while c.next_event().await.is_ok() {} } => {}
            }
        });
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the shared-object client set its slots");
    (handle, stop_tx)
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
    // Same app and instance as the stream: the live app's instances have shared objects too.
    let (so_thread, so_stop) = so_client(gw.url("live/dash"));

    let artifacts = manifest_dir().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("admin-dashboard.png");
    let _ = std::fs::remove_file(&shot);

    let mut cmd = Command::new("node");
    cmd.arg(manifest_dir().join("tests/dashboard/dashboard.mjs"))
        .arg(format!("http://{}/", gw.admin_addr()))
        .arg("live/_definst_/dash")
        .arg(&shot)
        .arg("dash-token")
        .arg(format!("live/_definst_/{SO_NAME}"));
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
    // app/instance, name, persistent, version, slots, subscribers (count and ids), button.
    let cells: Vec<&str> = result["so_cells"]
        .as_array()
        .unwrap_or_else(|| panic!("no shared-object row: {result}"))
        .iter()
        .map(|c| c.as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        cells[..5],
        ["live/_definst_", SO_NAME, "no", "3", "2"],
        "{result}"
    );
    assert!(cells[5].starts_with("1 (client "), "{result}");
    let data = result["so_data"].as_str().unwrap_or_default();
    assert!(
        data.contains("\"topic\": \"dashboards\"") && data.contains("\"seats\": 12"),
        "{data}"
    );
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
    // The shared-object client was left alone by the kick.
    assert!(
        !so_thread.is_finished(),
        "the shared-object client was cut off"
    );
    let _ = so_stop.send(());
    so_thread.join().unwrap();
}
