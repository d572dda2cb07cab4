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
    let gw = Gateway::start();
    rt().block_on(async {
        let mut publisher = RtmpClient::connect(&gw.url("live"), vec![]).await.unwrap();
        let pid = publisher.create_stream().await.unwrap();
        publisher.session().publish(pid, "own", "live");
        publisher.flush().await.unwrap();
        publisher
            .wait_status(Duration::from_secs(5), |c| c == "NetStream.Publish.Start")
            .await
            .unwrap();

        let mut player = RtmpClient::connect(&gw.url("live"), vec![]).await.unwrap();
        let sid = player.create_stream().await.unwrap();
        player.session().play(sid, "own", -1.0);
        player.flush().await.unwrap();
        player
            .wait_status(Duration::from_secs(5), |c| c == "NetStream.Play.Start")
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
        let clients = gw.shared().clients.list();
        assert_eq!(clients.len(), 1);
        assert_eq!(clients[0].transport, "rtmp");
        assert_eq!(clients[0].app(), Some(("live".into(), "kick".into())));
        assert!(gw.shared().clients.kick(clients[0].id));
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
        .shared()
        .clients
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
