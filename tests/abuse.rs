//! The abuse test: while ffmpeg publishes and ffmpeg plays through the real `wasmgate` binary,
//! attacker threads send garbage, broken handshakes, absurd Set Chunk Size, csid floods, deep
//! and malformed AMF, oversized HTTP and hold hundreds of idle sockets. The player must keep
//! receiving decodable media, the gateway's memory must stay bounded and its log panic-free.

mod common;
mod raw;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use raw::{BinGateway, Raw, chunks, chunks_announcing, set_chunk_size};
use wasmgate::rtmp::amf::{Amf0Value, encode_amf0_all};

const ATTACK: Duration = Duration::from_secs(12);
const IDLE_SOCKETS: usize = 300;
/// Peak gateway RSS allowed during the attack. Each attacker connection may hold at most
/// `max_partial_bytes` (4 MiB here) of half-received messages; a few dozen are open at once.
const RSS_CAP_KIB: u64 = 96 * 1024;

/// xorshift: reproducible garbage without a dependency.
struct Noise(u64);
impl Noise {
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0 as u8
            })
            .collect()
    }
}

/// One attack: does its thing to a fresh connection, then waits (briefly) for the close.
type Attack = fn(SocketAddr, &mut Noise, u64);

fn garbage(addr: SocketAddr, noise: &mut Noise, _: u64) {
    let mut r = Raw::tcp(addr);
    r.send(&noise.bytes(64 * 1024));
    r.closed_within(Duration::from_secs(2));
}

fn broken_handshake(addr: SocketAddr, noise: &mut Noise, i: u64) {
    let mut r = Raw::tcp(addr);
    match i % 6 {
        // C0 and part of C1, then hang up.
        0 => {
            r.send(&[3]);
            r.send(&noise.bytes(700));
            return;
        }
        // RTMPE, and an unknown version.
        1 => r.send(&[6; 1537]),
        2 => r.send(&[0xff; 1537]),
        // An oversized, malformed HTTP request (RTMPT-style) on the RTMP port.
        3 => {
            let mut req = b"POST /open/1 HTTP/1.1\r\nHost: x\r\nX-Junk: ".to_vec();
            req.extend(std::iter::repeat_n(b'a', 256 * 1024));
            r.send(&req);
        }
        // Valid C0+C1, garbage C2 then garbage chunks.
        4 => {
            let mut c = vec![3u8];
            c.extend(noise.bytes(1536 * 2 + 4096));
            r.send(&c);
        }
        // C0+C1, read S0S1S2, leave.
        _ => {
            let _ = Raw::handshake_on(r);
            return;
        }
    }
    r.closed_within(Duration::from_secs(2));
}

fn absurd_chunk_size(addr: SocketAddr, noise: &mut Noise, i: u64) {
    let mut r = Raw::connected(addr);
    match i % 4 {
        0 => r.send(&set_chunk_size(0)),
        1 => r.send(&set_chunk_size(0x7fff_ffff)),
        2 => r.send(&set_chunk_size(0xffff_ffff)),
        // Legal but hostile: 1-byte chunks of a message announcing 16 MiB.
        _ => {
            r.send(&set_chunk_size(1));
            let body = noise.bytes(20_000);
            r.send(&chunks_announcing(4, 9, 1, &body, 0xff_ffff, 1));
        }
    }
    r.closed_within(Duration::from_secs(2));
}

fn csid_flood(addr: SocketAddr, _: &mut Noise, i: u64) {
    let mut r = Raw::connected(addr);
    let mut bytes = Vec::new();
    let base = 64 + (i as u32 % 1000);
    for csid in base..base + 5000 {
        // Each starts a message it never finishes: state per csid, and partial bytes.
        bytes.extend(chunks_announcing(csid, 8, 1, &[0xaf; 100], 100_000, 128));
    }
    r.send(&bytes);
    r.closed_within(Duration::from_secs(2));
}

fn bad_amf(addr: SocketAddr, noise: &mut Noise, i: u64) {
    let mut r = Raw::connected(addr);
    let mut payload = encode_amf0_all(&[
        Amf0Value::string("getStreamLength"),
        Amf0Value::Number(3.0),
        Amf0Value::Null,
    ]);
    let type_id = match i % 6 {
        // 100 000 nested objects.
        0 => {
            for _ in 0..100_000 {
                payload.extend_from_slice(&[0x03, 0x00, 0x01, b'a']);
            }
            20
        }
        // Strict array claiming 4 billion entries.
        1 => {
            payload.extend_from_slice(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x05]);
            20
        }
        // Long string whose length runs past the message.
        2 => {
            payload.extend_from_slice(&[0x0c, 0x7f, 0xff, 0xff, 0xff, b'x']);
            20
        }
        // AMF3 command: deep avmplus arrays and dangling references.
        3 => {
            let mut p = vec![0u8];
            p.extend(encode_amf0_all(&[
                Amf0Value::string("getStreamLength"),
                Amf0Value::Number(3.0),
            ]));
            p.push(0x11);
            for _ in 0..50_000 {
                p.extend_from_slice(&[0x09, 0x03, 0x01]);
            }
            p.extend_from_slice(&[0x11, 0x0a, 0x7e]);
            payload = p;
            17
        }
        // Unknown markers and random tails, as data messages.
        4 => {
            payload.extend(noise.bytes(3000));
            18
        }
        _ => {
            payload.extend_from_slice(&[0x0f, 0x10, 0x0d, 0x0e]);
            payload.extend(noise.bytes(500));
            20
        }
    };
    r.send(&chunks(3, type_id, 0, &payload, 128));
    r.closed_within(Duration::from_secs(2));
}

/// Half-sends big messages on a few chunk streams: memory the gateway must bound.
fn partial_hog(addr: SocketAddr, noise: &mut Noise, _: u64) {
    let mut r = Raw::connected(addr);
    r.send(&set_chunk_size(65_536));
    let body = noise.bytes(1 << 20);
    for csid in 10..20 {
        let mut m = chunks_announcing(csid, 9, 1, &body, 8 << 20, 65_536);
        m.truncate(1 << 20);
        r.send(&m);
    }
    r.closed_within(Duration::from_secs(2));
}

#[test]
fn gateway_keeps_streaming_under_abuse() {
    ensure_tools();
    let gw = BinGateway::start("[rtmp]\nhandshake_timeout_secs = 5\nmax_partial_bytes = 4194304\n");
    let dir = tempfile::tempdir().unwrap();
    let url = gw.url("live/abuse");
    let mut publisher = ffmpeg_publish(&url, &fixture_flv_long());
    thread::sleep(Duration::from_millis(1500));
    let out = dir.path().join("player.flv");
    let mut player = ffmpeg_play(&url, &out, 20.0);
    assert!(
        wait_until(Duration::from_secs(10), || file_len(&out) > 10_000),
        "player got nothing before the attack: {}",
        player.stderr()
    );
    let rss_before = gw.rss_kib();
    let fds_before = gw.fds();

    let stop = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(AtomicU64::new(0));
    let attacks: [(&str, Attack); 6] = [
        ("garbage", garbage),
        ("broken_handshake", broken_handshake),
        ("absurd_chunk_size", absurd_chunk_size),
        ("csid_flood", csid_flood),
        ("bad_amf", bad_amf),
        ("partial_hog", partial_hog),
    ];
    let addr = gw.addr;
    let workers: Vec<_> = attacks
        .iter()
        .enumerate()
        .map(|(n, &(name, attack))| {
            let stop = stop.clone();
            let attempts = attempts.clone();
            thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    let mut noise = Noise(0x9e37_79b9_7f4a_7c15 ^ n as u64);
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        attack(addr, &mut noise, i);
                        i += 1;
                        attempts.fetch_add(1, Ordering::Relaxed);
                        thread::sleep(Duration::from_millis(10));
                    }
                })
                .unwrap()
        })
        .collect();
    // Hundreds of sockets that connect and say nothing (some send half a C0+C1).
    let mut idle: Vec<TcpStream> = (0..IDLE_SOCKETS)
        .map(|i| {
            let mut s = TcpStream::connect(addr).unwrap();
            if i % 3 == 0 {
                let _ = s.write_all(&[3; 100]);
            }
            s
        })
        .collect();

    // The player keeps receiving throughout; memory stays under the cap.
    let start = Instant::now();
    let mut last_len = file_len(&out);
    let mut rss_peak = rss_before;
    while start.elapsed() < ATTACK {
        thread::sleep(Duration::from_secs(2));
        let len = file_len(&out);
        assert!(
            len > last_len,
            "player stalled at {len} bytes after {:?} of abuse; player: {}",
            start.elapsed(),
            player.stderr()
        );
        last_len = len;
        rss_peak = rss_peak.max(gw.rss_kib());
        assert!(rss_peak < RSS_CAP_KIB, "gateway RSS {rss_peak} KiB");
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("attacker thread");
    }
    // The idle sockets were closed by the handshake timeout, not left open.
    for s in &mut idle {
        let mut r = Raw {
            s: s.try_clone().unwrap(),
        };
        assert!(
            r.closed_within(Duration::from_secs(6)).is_some(),
            "an idle socket is still open"
        );
    }
    drop(idle);

    let status = player.finish(Duration::from_secs(40));
    assert!(status.success(), "player failed: {}", player.stderr());
    let packets = assert_video_packets(&out, 20 * 25 * 8 / 10);
    let video = packets.iter().filter(|p| p.stream_type == "video").count();
    if let Err(e) = decodes_cleanly(&out) {
        panic!("player output does not decode cleanly: {e}");
    }
    assert!(
        publisher.is_running(),
        "publisher died: {}",
        publisher.stderr()
    );

    // Attack connections are all gone: descriptors back near where they started.
    assert!(
        wait_until(Duration::from_secs(5), || gw.fds() <= fds_before + 5),
        "gateway fds {} (before the attack {fds_before})",
        gw.fds()
    );
    let rss_after = gw.rss_kib();
    gw.assert_no_panic();
    eprintln!(
        "abuse: {} attack connections + {IDLE_SOCKETS} idle sockets in {ATTACK:?}; gateway RSS \
         {rss_before} KiB before, {rss_peak} KiB peak, {rss_after} KiB after; fds {fds_before} \
         before, {} after; player got {video} video packets",
        attempts.load(Ordering::Relaxed),
        gw.fds()
    );
    publisher.kill();
}
