//! Real-socket tests with the project's own client and raw sockets: calls, kicks, refused
//! encrypted handshakes, handshake timeouts and garbage input.

mod gateway;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use gateway::Gateway;
use wasmgate::client::{ClientError, RtmpClient};
use wasmgate::config::Config;
use wasmgate::rtmp::amf::Amf0Value;
use wasmgate::rtmp::client::ClientEvent;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Reads until EOF or error; returns how long it took.
fn time_until_closed(mut s: TcpStream, limit: Duration) -> Duration {
    s.set_read_timeout(Some(limit)).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("connection still open after {limit:?}")
            }
            Err(_) => return start.elapsed(),
        }
    }
}

#[test]
fn unknown_method_gets_call_failed_and_stream_length_is_zero() {
    let gw = Gateway::start();
    rt().block_on(async {
        let mut c = RtmpClient::connect(&gw.url("live"), vec![]).await.unwrap();
        let err = c
            .call("noSuchMethod", &[Amf0Value::Number(1.0)])
            .await
            .unwrap()
            .unwrap_err();
        let info = err.last().unwrap();
        assert_eq!(
            info.get("code").and_then(|v| v.as_str()),
            Some("NetConnection.Call.Failed")
        );
        assert!(
            info.get("description")
                .and_then(|v| v.as_str())
                .unwrap()
                .contains("noSuchMethod")
        );
        let ok = c
            .call("getStreamLength", &[Amf0Value::string("x")])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ok, vec![Amf0Value::Number(0.0)]);
    });
}

#[test]
fn own_client_plays_what_it_publishes() {
    publish_play_roundtrip(&Gateway::start());
}

#[test]
fn own_client_plays_with_immediate_writes() {
    // merge_window_ms = 0: media is written as it arrives instead of in merged batches.
    let mut cfg = Config::default();
    cfg.media.merge_window_ms = 0;
    publish_play_roundtrip(&Gateway::start_with(cfg));
}

fn publish_play_roundtrip(gw: &Gateway) {
    rt().block_on(async {
        let mut publisher = RtmpClient::connect(&gw.url("live"), vec![]).await.unwrap();
        let pid = publisher
            .start_publish("own", Duration::from_secs(5))
            .await
            .unwrap();

        let mut player = RtmpClient::connect(&gw.url("live"), vec![]).await.unwrap();
        player
            .start_play("own", -1.0, Duration::from_secs(5))
            .await
            .unwrap();

        // AVC sequence header, a keyframe, an inter frame.
        publisher
            .session()
            .send_media(pid, 9, 0, &[0x17, 0, 0, 0, 0, 1, 2, 3]);
        publisher
            .session()
            .send_media(pid, 9, 40, &[0x17, 1, 0, 0, 0, 9, 9]);
        publisher
            .session()
            .send_media(pid, 9, 80, &[0x27, 1, 0, 0, 0, 8]);
        publisher.flush().await.unwrap();
        let mut got = Vec::new();
        while got.len() < 3 {
            let ev = player.next_event_timeout(Duration::from_secs(5)).await;
            if let ClientEvent::Media {
                type_id: 9,
                timestamp,
                payload,
                ..
            } = ev.unwrap()
            {
                got.push((timestamp, payload[0]));
            }
        }
        assert_eq!(got, vec![(0, 0x17), (40, 0x17), (80, 0x27)]);

        // Publisher leaves: the player is told.
        drop(publisher);
        player
            .wait_status(Duration::from_secs(5), |c| {
                c == "NetStream.Play.UnpublishNotify"
            })
            .await
            .unwrap();
    });
}

#[test]
fn kicked_client_is_disconnected_within_a_second() {
    let gw = Gateway::start();
    rt().block_on(async {
        let mut c = RtmpClient::connect(&gw.url("live/kick/_"), vec![])
            .await
            .unwrap();
        let clients = gw.core().clients().list();
        assert_eq!(clients.len(), 1);
        assert_eq!(clients[0].transport, "rtmp");
        assert_eq!(clients[0].app(), Some(("live".into(), "kick".into())));
        assert!(gw.core().clients().kick(clients[0].id));
        let start = Instant::now();
        let status = c
            .wait_status(Duration::from_secs(2), |code| {
                code == "NetConnection.Connect.Closed"
            })
            .await;
        assert!(status.is_ok(), "{status:?}");
        let end = c.next_event_timeout(Duration::from_secs(2)).await;
        assert!(
            matches!(end, Err(ClientError::Closed) | Err(ClientError::Io(_))),
            "{end:?}"
        );
        assert!(start.elapsed() < Duration::from_secs(1));
    });
    assert!(gateway::wait(Duration::from_secs(2), || gw
        .core()
        .clients()
        .is_empty()));
}

#[test]
fn rtmpe_is_refused_and_closed_at_once() {
    let gw = Gateway::start();
    let mut s = TcpStream::connect(gw.addr).unwrap();
    let mut c0c1 = vec![0x06u8];
    c0c1.extend_from_slice(&[7u8; 1536]);
    s.write_all(&c0c1).unwrap();
    assert!(time_until_closed(s, Duration::from_secs(5)) < Duration::from_secs(2));
}

#[test]
fn silent_sockets_are_closed_after_the_handshake_timeout() {
    let mut cfg = Config::default();
    cfg.rtmp.handshake_timeout_secs = 1;
    let gw = Gateway::start_with(cfg);
    let s = TcpStream::connect(gw.addr).unwrap();
    let took = time_until_closed(s, Duration::from_secs(5));
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[test]
fn garbage_after_handshake_closes_only_that_connection() {
    let gw = Gateway::start();
    rt().block_on(async {
        let mut good = RtmpClient::connect(&gw.url("live"), vec![]).await.unwrap();
        // A client that completes a plain handshake and then asks for a chunk size of 0.
        let mut s = TcpStream::connect(gw.addr).unwrap();
        let mut c0c1 = vec![3u8];
        c0c1.extend_from_slice(&[0u8; 1536]);
        s.write_all(&c0c1).unwrap();
        let mut s0s1s2 = vec![0u8; 1 + 1536 * 2];
        s.read_exact(&mut s0s1s2).unwrap();
        s.write_all(&s0s1s2[1..1537]).unwrap(); // C2 = echo of S1
        // fmt 0, csid 2, ts 0, length 4, type 1 (Set Chunk Size), stream 0, size 0.
        s.write_all(&[2, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 0])
            .unwrap();
        assert!(time_until_closed(s, Duration::from_secs(5)) < Duration::from_secs(2));
        // The well-behaved client is unaffected.
        let ok = good
            .call("getStreamLength", &[Amf0Value::string("x")])
            .await
            .unwrap();
        assert!(ok.is_ok());
    });
}

#[test]
fn enhanced_rtmp_fourcc_video_passes_through_untouched_to_late_players() {
    let gw = Gateway::start();
    rt().block_on(async {
        let mut publisher = RtmpClient::connect(&gw.url("live"), vec![]).await.unwrap();
        let pid = publisher
            .start_publish("ertmp", Duration::from_secs(5))
            .await
            .unwrap();
        // Enhanced RTMP: ExHeader bit | frame type << 4 | packet type, then the FourCC.
        let mut seq_start = vec![0x80 | 0x10, b'h', b'v', b'c', b'1'];
        seq_start.extend_from_slice(&[1, 2, 3, 4, 5]);
        let mut key = vec![0x80 | 0x10 | 3, b'h', b'v', b'c', b'1'];
        key.extend_from_slice(&[9; 300]);
        let mut inter = vec![0x80 | 0x20 | 3, b'h', b'v', b'c', b'1'];
        inter.extend_from_slice(&[7; 100]);
        let mut av1_key = vec![0x80 | 0x10 | 1, b'a', b'v', b'0', b'1'];
        av1_key.extend_from_slice(&[5; 50]);
        publisher.session().send_media(pid, 9, 0, &seq_start);
        publisher.session().send_media(pid, 9, 33, &key);
        publisher.session().send_media(pid, 9, 66, &inter);
        publisher.flush().await.unwrap();
        // Make sure the gateway has ingested them before the late player joins.
        publisher
            .call("getStreamLength", &[])
            .await
            .unwrap()
            .unwrap();

        let mut player = RtmpClient::connect(&gw.url("live"), vec![]).await.unwrap();
        player
            .start_play("ertmp", -2.0, Duration::from_secs(5))
            .await
            .unwrap();
        publisher.session().send_media(pid, 9, 99, &av1_key);
        publisher.flush().await.unwrap();
        let mut got = Vec::new();
        while got.len() < 4 {
            let ev = player.next_event_timeout(Duration::from_secs(5)).await;
            if let ClientEvent::Media {
                type_id: 9,
                payload,
                ..
            } = ev.unwrap()
            {
                got.push(payload.to_vec());
            }
        }
        assert_eq!(got, vec![seq_start, key, inter, av1_key]);
    });
}

#[test]
fn a_stalled_player_is_cut_off_while_others_keep_streaming() {
    let mut cfg = Config::default();
    cfg.rtmp.write_timeout_secs = 2;
    cfg.media.player_queue = 64;
    let gw = Gateway::start_with(cfg);
    let runtime = rt();
    let (_stalled, _publisher, _good) = runtime.block_on(async {
        let mut publisher = RtmpClient::connect(&gw.url("live"), vec![]).await.unwrap();
        let pid = publisher
            .start_publish("slow", Duration::from_secs(5))
            .await
            .unwrap();

        let mut stalled = RtmpClient::connect(&gw.url("live"), vec![]).await.unwrap();
        let sid = stalled.create_stream().await.unwrap();
        stalled.session().play(sid, "slow", -1.0);
        stalled.flush().await.unwrap();
        let mut good = RtmpClient::connect(&gw.url("live"), vec![]).await.unwrap();
        good.start_play("slow", -1.0, Duration::from_secs(5))
            .await
            .unwrap();
        // The stalled player never reads again. Publish ~40 MB: far more than socket buffers.
        let frame = vec![0x27u8; 200_000];
        let key = {
            let mut k = vec![0x17u8; 200_000];
            k[1] = 1;
            k
        };
        let mut received = 0usize;
        for i in 0..200u32 {
            let payload = if i % 25 == 0 { &key } else { &frame };
            publisher.session().send_media(pid, 9, i * 40, payload);
            publisher.flush().await.unwrap();
            // The good player drains what it can without blocking the publisher for long.
            while let Ok(Ok(ev)) =
                tokio::time::timeout(Duration::from_millis(1), good.next_event()).await
            {
                if let ClientEvent::Media { payload, .. } = ev {
                    received += payload.len();
                }
            }
        }
        // The publisher was never blocked: all 200 frames went out; the good player got most.
        let deadline = Instant::now() + Duration::from_secs(10);
        while received < 30_000_000 && Instant::now() < deadline {
            if let Ok(Ok(ClientEvent::Media { payload, .. })) =
                tokio::time::timeout(Duration::from_millis(200), good.next_event()).await
            {
                received += payload.len();
            }
        }
        assert!(
            received >= 30_000_000,
            "good player got only {received} bytes"
        );
        (stalled, publisher, good)
    });
    // The stalled player still holds its socket open, but the gateway cut it off (write
    // timeout or lag bound); the publisher and the good player remain.
    assert!(
        gateway::wait(Duration::from_secs(10), || gw.core().clients().len() == 2),
        "clients: {}",
        gw.core().clients().len()
    );
}
