//! Every per-connection and per-process limit, each proved over real sockets against an
//! in-process gateway: at the limit the peer is served, one past it the peer is cut off alone.
//! (The per-player queue bound is covered by `e2e_client::a_stalled_player_is_cut_off_...`.)

mod gateway;
mod raw;

use std::net::SocketAddr;
use std::time::Duration;

use gateway::Gateway;
use raw::{Raw, chunks, chunks_announcing, command, set_chunk_size};
use wasmgate::config::Config;
use wasmgate::rtmp::amf::Amf0Value;

const CLOSE_FAST: Duration = Duration::from_secs(2);

fn gw(f: impl FnOnce(&mut Config)) -> Gateway {
    let mut cfg = Config::default();
    f(&mut cfg);
    cfg.validate().expect("test config is valid");
    Gateway::start_with(cfg)
}

fn assert_closed_fast(raw: &mut Raw, what: &str) {
    let took = raw.closed_within(CLOSE_FAST);
    assert!(
        took.is_some(),
        "{what}: connection still open after {CLOSE_FAST:?}"
    );
}

#[test]
fn defaults_are_safe() {
    let r = Config::default().rtmp;
    assert!(r.handshake_timeout_secs <= 10);
    assert!(r.ping_interval_secs + r.ping_timeout_secs <= 60);
    assert!(r.max_connections_per_ip < r.max_connections);
    assert!(r.max_chunk_streams <= 1024);
    assert!(r.max_message_size <= 1 << 24 && r.max_chunk_size <= 1 << 24);
    assert!(r.amf_max_depth <= 64 && r.amf_max_collection_len <= 1 << 20);
    // Every zero limit is refused, naming its key.
    for key in [
        "max_connections",
        "max_connections_per_ip",
        "max_chunk_streams",
        "max_partial_bytes",
        "amf_max_depth",
        "amf_max_collection_len",
        "handshake_timeout_secs",
        "ping_timeout_secs",
    ] {
        let err = Config::from_toml(&format!("[rtmp]\n{key} = 0\n")).unwrap_err();
        assert!(err.to_string().contains(&format!("rtmp.{key}")), "{err}");
    }
}

#[test]
fn handshake_timeout_closes_half_handshakes_and_connectless_sessions() {
    let g = gw(|c| c.rtmp.handshake_timeout_secs = 1);
    let start = std::time::Instant::now();
    // C0 and half of C1, then nothing.
    let mut half = Raw::tcp(g.addr);
    half.send(&[3u8; 700]);
    // A complete handshake but no `connect`.
    let mut silent = Raw::handshake(g.addr);
    for (raw, what) in [(&mut half, "half handshake"), (&mut silent, "no connect")] {
        raw.closed_within(Duration::from_secs(4))
            .unwrap_or_else(|| panic!("{what}: open"));
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(500) && took < Duration::from_secs(3),
            "{what}: {took:?}"
        );
    }
    // A client that connects in time is not affected by the deadline.
    let mut ok = Raw::connected(g.addr);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(ok.answers_call(3, &[]));
}

#[test]
fn idle_timeout_drops_a_peer_that_ignores_pings_but_not_one_that_answers() {
    let g = gw(|c| {
        c.rtmp.ping_interval_secs = 1;
        c.rtmp.ping_timeout_secs = 1;
    });
    let mut deaf = Raw::connected(g.addr);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut live = rt
        .block_on(wasmgate::client::RtmpClient::connect(
            &g.url("live"),
            vec![],
        ))
        .unwrap();
    // `deaf` never answers (a ping then the timeout: ~2 s of silence); `live` answers pings
    // while it reads.
    let took = deaf
        .closed_within(Duration::from_secs(5))
        .expect("a peer ignoring pings is dropped");
    assert!(took >= Duration::from_millis(1500), "{took:?}");
    rt.block_on(async {
        let _ = live.next_event_timeout(Duration::from_secs(1)).await;
        let r = live.call("getStreamLength", &[]).await.unwrap();
        assert!(r.is_ok());
    });
}

#[test]
fn max_connections_closes_the_extra_connection_on_accept() {
    let g = gw(|c| c.rtmp.max_connections = 3);
    let mut held: Vec<Raw> = (0..3).map(|_| Raw::connected(g.addr)).collect();
    let mut extra = Raw::tcp(g.addr);
    extra.send(&[3u8; 1537]);
    assert_closed_fast(&mut extra, "4th connection");
    assert!(held[0].answers_call(3, &[]));
    // A slot frees when a connection ends.
    held.pop();
    assert!(gateway::wait(Duration::from_secs(2), || g
        .core()
        .clients()
        .len()
        == 2));
    let mut again = Raw::connected(g.addr);
    assert!(again.answers_call(3, &[]));
    assert!(
        g.core()
            .counters()
            .rejected_over_limit
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

/// A TCP connection from `source` (any 127.0.0.0/8 address works on Linux loopback).
fn raw_from(source: &str, to: SocketAddr) -> Raw {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{source}:0").parse().unwrap()).unwrap();
        sock.connect(to).await.unwrap()
    });
    let s = s.into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    s.set_nodelay(true).unwrap();
    Raw { s }
}

#[test]
fn max_connections_per_ip_limits_one_address_and_not_the_others() {
    let g = gw(|c| c.rtmp.max_connections_per_ip = 2);
    let mut a: Vec<Raw> = (0..2)
        .map(|_| Raw::handshake_on(raw_from("127.0.0.2", g.addr)))
        .collect();
    let mut third = raw_from("127.0.0.2", g.addr);
    third.send(&[3u8; 1537]);
    assert_closed_fast(&mut third, "3rd connection from 127.0.0.2");
    // Other addresses still get in, and the first two are untouched.
    let mut b1 = Raw::handshake_on(raw_from("127.0.0.3", g.addr));
    let mut b2 = Raw::handshake_on(raw_from("127.0.0.3", g.addr));
    b1.connect();
    b2.connect();
    a[0].connect();
    a[1].connect();
    assert!(a[1].answers_call(3, &[]));
    // Closing one frees its address's slot.
    drop(a.pop());
    assert!(gateway::wait(Duration::from_secs(2), || g
        .core()
        .clients()
        .len()
        == 3));
    let mut again = Raw::handshake_on(raw_from("127.0.0.2", g.addr));
    again.connect();
    assert!(again.answers_call(3, &[]));
    assert_eq!(
        g.core()
            .counters()
            .rejected_over_ip_limit
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn max_chunk_size_accepted() {
    let g = gw(|c| c.rtmp.max_chunk_size = 4096);
    let mut ok = Raw::connected(g.addr);
    ok.send(&set_chunk_size(4096));
    // A command in one 4096-byte chunk proves the new size is in effect.
    let big = Amf0Value::string("x".repeat(3000));
    ok.send(&command(3, "getStreamLength", 5.0, &[big], 4096));
    assert!(ok.drain(Duration::from_secs(3)) > 0);

    let mut over = Raw::connected(g.addr);
    over.send(&set_chunk_size(4097));
    assert_closed_fast(&mut over, "Set Chunk Size 4097");
    let mut absurd = Raw::connected(g.addr);
    absurd.send(&set_chunk_size(0x7fff_ffff));
    assert_closed_fast(&mut absurd, "Set Chunk Size 2^31-1");
    assert!(ok.answers_call(3, &[]));
}

#[test]
fn max_message_size() {
    let g = gw(|c| c.rtmp.max_message_size = 2048);
    let mut ok = Raw::connected(g.addr);
    // A command of exactly 2048 bytes is served.
    let mut pad =
        2048 - command(3, "getStreamLength", 7.0, &[Amf0Value::string("")], 100_000).len() + 12;
    let msg = loop {
        let m = command(
            3,
            "getStreamLength",
            7.0,
            &[Amf0Value::string("y".repeat(pad))],
            100_000,
        );
        let len = u32::from_be_bytes([0, m[4], m[5], m[6]]);
        if len == 2048 {
            break command(
                3,
                "getStreamLength",
                7.0,
                &[Amf0Value::string("y".repeat(pad))],
                128,
            );
        }
        pad = pad + 2048 - len as usize;
    };
    ok.send(&msg);
    assert!(
        ok.drain(Duration::from_secs(3)) > 0,
        "2048-byte message not answered"
    );

    // A header announcing one byte more is refused at once, before any payload arrives.
    let mut over = Raw::connected(g.addr);
    over.send(&chunks_announcing(4, 9, 1, &[], 2049, 128));
    assert_closed_fast(&mut over, "2049-byte message");
    // The maximum the format allows, too.
    let mut huge = Raw::connected(g.addr);
    huge.send(&chunks_announcing(4, 18, 0, &[], 0xff_ffff, 128));
    assert_closed_fast(&mut huge, "16 MiB message");
    assert!(ok.answers_call(3, &[]));
}

#[test]
fn max_chunk_streams_per_connection() {
    let g = gw(|c| c.rtmp.max_chunk_streams = 4);
    let mut ok = Raw::connected(g.addr); // csid 3
    // csids 4, 300 (2-byte form), 65599 (3-byte form): four chunk streams in all.
    for csid in [4, 300, 65_599] {
        assert!(ok.answers_call(csid, &[]), "csid {csid}");
    }
    ok.send(&command(5, "getStreamLength", 8.0, &[], 128));
    assert_closed_fast(&mut ok, "5th chunk stream");

    // A flood of fresh csids is cut off after the limit, not buffered.
    let mut flood = Raw::connected(g.addr);
    let mut bytes = Vec::new();
    for csid in 64..20_000u32 {
        bytes.extend(chunks(csid, 8, 1, &[0xaf, 1], 128));
    }
    flood.send(&bytes);
    assert_closed_fast(&mut flood, "csid flood");
}

/// `depth` nested objects around a number.
fn nested(depth: usize) -> Amf0Value {
    let mut v = Amf0Value::Number(1.0);
    for _ in 0..depth {
        v = Amf0Value::object([("a", v)]);
    }
    v
}

#[test]
fn amf_nesting_depth_and_collection_sizes() {
    let g = gw(|c| {
        c.rtmp.amf_max_depth = 4;
        c.rtmp.amf_max_collection_len = 8;
    });
    let mut ok = Raw::connected(g.addr);
    assert!(ok.answers_call(3, &[nested(3)]), "depth 3");
    let eight = Amf0Value::StrictArray(vec![Amf0Value::Null; 8]);
    assert!(ok.answers_call(3, &[eight]), "8 entries");

    let mut deep = Raw::connected(g.addr);
    deep.send(&command(3, "getStreamLength", 9.0, &[nested(50)], 128));
    assert_closed_fast(&mut deep, "depth 50");

    let mut wide = Raw::connected(g.addr);
    let nine = Amf0Value::StrictArray(vec![Amf0Value::Null; 9]);
    wide.send(&command(3, "getStreamLength", 9.0, &[nine], 128));
    assert_closed_fast(&mut wide, "9 entries");

    // A strict array claiming 2^32-1 entries in a 20-byte message: refused, not allocated.
    let mut liar = Raw::connected(g.addr);
    let mut payload = wasmgate::rtmp::amf::encode_amf0_all(&[
        Amf0Value::string("getStreamLength"),
        Amf0Value::Number(9.0),
        Amf0Value::Null,
    ]);
    payload.extend_from_slice(&[0x0a, 0xff, 0xff, 0xff, 0xff]);
    liar.send(&chunks(3, 20, 0, &payload, 128));
    assert_closed_fast(&mut liar, "lying array length");
    assert!(ok.answers_call(3, &[]));
}

#[test]
fn max_partial_bytes_bounds_half_received_messages() {
    let g = gw(|c| {
        c.rtmp.max_partial_bytes = 8192;
        c.rtmp.max_message_size = 65_536;
    });
    // Each message announces 6000 bytes and sends one 4096-byte chunk of it.
    let partial = |csid| {
        let mut m = chunks_announcing(csid, 9, 1, &[0x17; 6000], 6000, 4096);
        m.truncate(12 + 4096);
        m
    };
    let mut ok = Raw::connected(g.addr);
    ok.send(&set_chunk_size(4096));
    ok.send(&partial(10));
    ok.send(&partial(11));
    assert!(ok.answers_call(3, &[]), "8192 partial bytes");
    ok.send(&partial(12));
    assert_closed_fast(&mut ok, "12288 partial bytes");
}
