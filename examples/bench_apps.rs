//! Benchmark of the Wasm application hooks (a script, not a test):
//!   scripts/bench-apps.sh      (builds the guests, then runs this in release mode)
//! Measures the time of a full RTMP connect (handshake + connect + `_result`) to the built-in
//! live app and to an app whose `on_connect` hook runs in Wasm (token-auth), and how many hook
//! calls per second one instance serves (pipelined `NetConnection.call`s to the chat guest),
//! also per CPU-second of this process (client and gateway share it), and how many data
//! messages (`NetStream.send`) per second go from a publisher to a player with and without the
//! chat guest's `on_data` moderation in between.

#[path = "../tests/apps/mod.rs"]
mod apps;
#[path = "../tests/gateway/mod.rs"]
mod gateway;

use std::time::{Duration, Instant};

use apps::*;
use wasmgate::rtmp::amf::{Amf0Value, AmfLimits, decode_amf0_all, encode_amf0_all};
use wasmgate::rtmp::client::ClientEvent;
use wasmgate::rtmp::message::msg_type;

fn cpu_secs() -> f64 {
    // utime + stime of this process, in clock ticks (100 Hz on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(300);
    let apps_dir = tempfile::tempdir().unwrap();
    install_app(
        apps_dir.path(),
        "hooked",
        "token-auth",
        "[settings]\ntokens = [\"t\"]\n",
    );
    install_app(apps_dir.path(), "chat", "chat", "");
    let gw = gateway_with_apps(apps_dir.path(), |_| {});
    // Warm up both paths (the first connect creates the instance).
    let _ = RtmpClient::connect(gw.addr, "hooked", &[Amf0Value::string("t")]);
    let _ = RtmpClient::connect(gw.addr, "live", &[]);

    for (label, app, args) in [
        ("no hook (live app)", "live", vec![]),
        (
            "Wasm on_connect hook",
            "hooked",
            vec![Amf0Value::string("t")],
        ),
    ] {
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let started = Instant::now();
            let (_c, r) = RtmpClient::connect(gw.addr, app, &args);
            times.push(started.elapsed());
            assert_eq!(r.name, "_result");
        }
        let mean = times.iter().sum::<Duration>() / n as u32;
        println!(
            "connect, {label}: mean {:.3} ms, p50 {:.3} ms, p99 {:.3} ms ({n} connects)",
            mean.as_secs_f64() * 1e3,
            percentile(&mut times, 0.5).as_secs_f64() * 1e3,
            percentile(&mut times, 0.99).as_secs_f64() * 1e3,
        );
    }

    let (mut c, _) = RtmpClient::connect(gw.addr, "chat/bench", &[]);
    let window = 100;
    let rounds = 100;
    let cpu0 = cpu_secs();
    let started = Instant::now();
    for _ in 0..rounds {
        for _ in 0..window {
            c.call("members", &[]);
        }
        let mut got = 0;
        while got < window {
            c.wait_for(Duration::from_secs(10), |m| m.name == "_result")
                .expect("call result");
            got += 1;
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    let calls = (window * rounds) as f64;
    println!(
        "hook calls (chat.members, pipelined): {:.0}/s wall, {:.0} per CPU-second of the process ({calls} calls, {cpu:.2} CPU-s)",
        calls / wall,
        calls / cpu.max(0.01)
    );

    // Players written per message (no merge window), so the figure is the hook's, not the tick's.
    let gw = gateway_with_apps(apps_dir.path(), |c| c.media.merge_window_ms = 0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (label, app) in [
        ("no app (live)", "live"),
        ("chat on_data hook", "chat/data"),
    ] {
        let url = format!("rtmp://{}/{app}", gw.addr);
        let (count, wall) = rt.block_on(data_messages(&url, 50_000));
        println!(
            "data messages publisher -> player, {label}: {:.0}/s ({count} messages in {:.2} s)",
            count as f64 / wall,
            wall
        );
    }
}

/// Publishes `n` `onChat` data messages and counts them arriving at a player.
async fn data_messages(url: &str, n: usize) -> (usize, f64) {
    use wasmgate::client::RtmpClient;
    let t = Duration::from_secs(10);
    let mut player = RtmpClient::connect(url, vec![]).await.unwrap();
    player.start_play("d", -1.0, t).await.unwrap();
    let mut publisher = RtmpClient::connect(url, vec![]).await.unwrap();
    let sid = publisher.start_publish("d", t).await.unwrap();
    let msg = encode_amf0_all(&[Amf0Value::string("onChat"), Amf0Value::string("hello")]);
    // In windows well below the player's queue (`media.player_queue`), which a flood would
    // overrun: a lagging player skips ahead by design.
    const WINDOW: usize = 250;
    let started = Instant::now();
    let mut got = 0;
    for w in 0..n.div_ceil(WINDOW) {
        for i in w * WINDOW..((w + 1) * WINDOW).min(n) {
            publisher
                .session()
                .send_media(sid, msg_type::DATA_AMF0, i as u32, &msg);
        }
        publisher.flush().await.unwrap();
        let want = ((w + 1) * WINDOW).min(n);
        while got < want {
            match player.next_event_timeout(t).await {
                Ok(ClientEvent::Media {
                    type_id, payload, ..
                }) if type_id == msg_type::DATA_AMF0 => {
                    let v = decode_amf0_all(&payload, &AmfLimits::default()).unwrap_or_default();
                    if v.first().and_then(|x| x.as_str()) == Some("onChat") {
                        got += 1;
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("player: {e} after {got} messages"),
            }
        }
    }
    (got, started.elapsed().as_secs_f64())
}
