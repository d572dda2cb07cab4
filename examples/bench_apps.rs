//! Benchmark of the Wasm application hooks (a script, not a test):
//!   scripts/bench-apps.sh      (builds the guests, then runs this in release mode)
//! Measures the time of a full RTMP connect (handshake + connect + `_result`) to the built-in
//! live app and to an app whose `on_connect` hook runs in Wasm (token-auth), and how many hook
//! calls per second one instance serves (pipelined `NetConnection.call`s to the chat guest),
//! also per CPU-second of this process (client and gateway share it), and how many data
//! messages (`NetStream.send`) per second go from a publisher to a player with and without the
//! chat guest's `on_data` moderation in between. Then, per guest language (the Rust and the
//! JavaScript token-auth, the Python stream-gate with `BENCH_APPS_PYTHON=1`): the cold start of
//! an instance (the first connect to a new instance, which instantiates the component and runs
//! its `start`), the resident memory each instance adds to the process, and the cost of one hook
//! call (pipelined calls of a method the guest does not have, answered `_error` by the guest).

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

/// Resident memory of this process in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
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

    languages();

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

/// Cold start, memory per instance and per-call cost of the same app in each guest language.
fn languages() {
    const INSTANCES: usize = 20;
    const CALLS: usize = 5_000;
    let token = "[settings]\ntokens = [\"t\"]\n";
    // A JS or Python component carries its language's runtime: the README's `[limits]`.
    let js_limits = "[limits]\nmemory_mib = 64\ndeadline_ms = 500\n";
    let mut guests = vec![
        ("Rust token-auth", guest("token-auth"), token.to_owned()),
        (
            "JS token-auth",
            js_guest("token-auth"),
            format!("{token}{js_limits}"),
        ),
    ];
    if std::env::var_os("BENCH_APPS_PYTHON").is_some() {
        let toml = "[settings]\nkeys = [\"k\"]\n[limits]\ndeadline_ms = 1000\nmemory_mib = 128\n";
        guests.push((
            "Python stream-gate",
            python_guest().to_path_buf(),
            toml.into(),
        ));
    }
    for (label, wasm, toml) in guests {
        let apps_dir = tempfile::tempdir().unwrap();
        install_wasm(apps_dir.path(), "app", &wasm, &toml);
        let size = std::fs::metadata(&wasm).map_or(0, |m| m.len());
        let started = Instant::now();
        let gw = gateway_with_apps(apps_dir.path(), |_| {});
        let load = started.elapsed();
        let args = [Amf0Value::string("t")];
        // Warm: a connect to an instance that exists.
        let _ = RtmpClient::connect(gw.addr, "app/warm", &args);
        let mut warm = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            let (_c, r) = RtmpClient::connect(gw.addr, "app/warm", &args);
            warm.push(t.elapsed());
            assert_eq!(r.name, "_result");
        }
        let warm = percentile(&mut warm, 0.5);
        // Cold: each connect creates an instance; clients stay so the instances stay.
        let rss0 = rss_bytes();
        let mut clients = Vec::new();
        let mut cold = Vec::new();
        for i in 0..INSTANCES {
            let t = Instant::now();
            let (c, r) = RtmpClient::connect(gw.addr, &format!("app/cold{i}"), &args);
            cold.push(t.elapsed());
            assert_eq!(r.name, "_result", "{label}: {r:?}");
            clients.push(c);
        }
        let per_instance = rss_bytes().saturating_sub(rss0) / INSTANCES as u64;
        let cold50 = percentile(&mut cold, 0.5);

        let (mut c, _) = RtmpClient::connect(gw.addr, "app/warm", &args);
        let started = Instant::now();
        for w in 0..CALLS / 100 {
            for _ in 0..100 {
                c.call("nope", &[]);
            }
            for _ in 0..100 {
                c.wait_for(Duration::from_secs(10), |m| m.name == "_error")
                    .unwrap_or_else(|| panic!("{label}: call answer in window {w}"));
            }
        }
        let per_call = started.elapsed() / CALLS as u32;
        println!(
            "{label}: component {:.1} MB, load (compile or cache) {:.0} ms; connect p50 warm \
             {:.2} ms, to a new instance {:.1} ms (instantiate + start ~{:.1} ms); {:.1} MiB RSS \
             per instance ({INSTANCES} instances); hook call {:.1} us ({CALLS} pipelined)",
            size as f64 / 1e6,
            load.as_secs_f64() * 1e3,
            warm.as_secs_f64() * 1e3,
            cold50.as_secs_f64() * 1e3,
            cold50.saturating_sub(warm).as_secs_f64() * 1e3,
            per_instance as f64 / (1 << 20) as f64,
            per_call.as_secs_f64() * 1e6,
        );
        drop(clients);
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
