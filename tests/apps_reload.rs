//! Hot reload: a change in an app's folder is served within 2 s by new events while a connected
//! publisher and player keep streaming; a module that fails to load leaves the old one serving.

mod apps;
mod common;
mod gateway;

use std::time::{Duration, Instant};

use apps::*;
use common::*;
use wasmgate::rtmp::amf::Amf0Value;

fn accepted(gw: &gateway::Gateway, token: &str) -> bool {
    let (_, r) = RtmpClient::connect(gw.addr, "gate", &[Amf0Value::string(token)]);
    r.name == "_result"
}

#[test]
fn reload_switches_new_events_and_keeps_clients() {
    ensure_tools();
    let apps_dir = tempfile::tempdir().unwrap();
    let a = apps_dir.path();
    install_app(a, "gate", "token-auth", "[settings]\ntokens = [\"one\"]\n");
    let gw = gateway_with_apps(a, |_| {});
    let url = gw.url("gate/s");

    let mut publisher = ffmpeg_publish_with(&url, &fixture_flv_long(), &["-rtmp_conn", "S:one"]);
    std::thread::sleep(Duration::from_millis(1500));
    let out = tempfile::tempdir().unwrap();
    let flv = out.path().join("p.flv");
    let mut player = rtmpdump_play_with(&url, &flv, 8, &["-C", "S:one"]);
    std::thread::sleep(Duration::from_millis(1000));
    assert!(accepted(&gw, "one") && !accepted(&gw, "two"));
    let digest_before = gw.core().apps().list()[0].digest.clone();

    // New settings: reloaded within 2 s.
    write_atomic(
        &a.join("gate").join("app.toml"),
        b"[settings]\ntokens = [\"two\"]\n",
    );
    let changed = Instant::now();
    let mut switched = None;
    while changed.elapsed() < Duration::from_secs(3) {
        if accepted(&gw, "two") {
            switched = Some(changed.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = switched.expect("the new settings were not served");
    assert!(took < Duration::from_secs(2), "reload took {took:?}");
    assert!(!accepted(&gw, "one"));

    // A broken module is refused; the previous one keeps serving.
    write_atomic(&a.join("gate").join("app.wasm"), b"\0asm not really");
    std::thread::sleep(Duration::from_millis(1200));
    assert!(accepted(&gw, "two"));
    let info = gw.core().apps().list()[0].clone();
    assert!(info.load_errors >= 1, "{info:?}");
    assert_eq!(info.digest, digest_before);

    // A different module takes over (chat accepts everyone).
    install_app(a, "gate", "chat", "");
    let changed = Instant::now();
    while !accepted(&gw, "anything") {
        assert!(
            changed.elapsed() < Duration::from_secs(3),
            "chat module not served"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_ne!(gw.core().apps().list()[0].digest, digest_before);

    // The publisher and player connected before all of this never noticed.
    assert!(
        publisher.is_running(),
        "publisher dropped:\n{}",
        publisher.stderr()
    );
    player.finish(Duration::from_secs(30));
    let dur = ffprobe_duration(&flv).unwrap_or(0.0);
    assert!(dur >= 6.0, "player got only {dur} s of media");
    decodes_cleanly(&flv).unwrap();
    publisher.interrupt();
    let _ = publisher.finish(Duration::from_secs(10));
}
