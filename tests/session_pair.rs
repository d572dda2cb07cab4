//! Protocol logic with no sockets: the server `Session` and the client `ClientSession` driven
//! against each other in memory with a fake clock (the quinn-proto style of test).

use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmgate::rtmp::amf::{Amf0Value, encode_amf0_all};
use wasmgate::rtmp::client::{ClientConfig, ClientEvent, ClientSession};
use wasmgate::rtmp::message::msg_type;
use wasmgate::rtmp::session::MediaKind;
use wasmgate::rtmp::{Event, Session, SessionConfig, SessionError};

struct Pair {
    server: Session,
    client: ClientSession,
    now: Instant,
    server_events: Vec<Event>,
    client_events: Vec<ClientEvent>,
    /// Accept every connect automatically.
    auto_accept: bool,
}

impl Pair {
    fn new(cfg: SessionConfig, client_cfg: ClientConfig) -> Pair {
        let now = Instant::now();
        Pair {
            server: Session::new(cfg, now),
            client: ClientSession::new(client_cfg),
            now,
            server_events: Vec::new(),
            client_events: Vec::new(),
            auto_accept: true,
        }
    }

    fn default() -> Pair {
        Pair::new(
            SessionConfig::default(),
            ClientConfig::new("live", "rtmp://localhost/live"),
        )
    }

    fn connected() -> Pair {
        let mut p = Pair::default();
        p.pump().unwrap();
        assert!(p.client.is_connected(), "{:?}", p.client_events);
        p.client_events.clear();
        p.server_events.clear();
        p
    }

    /// Moves bytes both ways until both sides are quiet.
    fn pump(&mut self) -> Result<(), SessionError> {
        for _ in 0..100 {
            let mut moved = false;
            let mut bufs = Vec::new();
            self.client.drain_transmit(&mut bufs);
            for b in bufs.drain(..) {
                moved = true;
                self.server.handle_input(&b, self.now)?;
            }
            while let Some(ev) = self.server.poll_event() {
                if self.auto_accept && matches!(ev, Event::Connect(_)) {
                    self.server.accept_connect();
                }
                self.server_events.push(ev);
            }
            self.server.drain_transmit(&mut bufs);
            for b in bufs.drain(..) {
                moved = true;
                self.client.handle_input(&b)?;
            }
            while let Some(ev) = self.client.poll_event() {
                self.client_events.push(ev);
            }
            if !moved {
                return Ok(());
            }
        }
        panic!("pair never went quiet");
    }

    fn statuses(&self) -> Vec<String> {
        self.client_events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Status { info, .. } => {
                    info.get("code").and_then(|v| v.as_str()).map(str::to_owned)
                }
                _ => None,
            })
            .collect()
    }

    fn create_stream(&mut self) -> u32 {
        let txn = self.client.create_stream();
        self.pump().unwrap();
        let id = self.client_events.iter().find_map(|e| match e {
            ClientEvent::Result {
                transaction_id,
                values,
            } if *transaction_id == txn => values.first().and_then(|v| v.as_f64()),
            _ => None,
        });
        id.expect("createStream result") as u32
    }
}

#[test]
fn connect_result_carries_fms_fields_and_object_encoding() {
    let mut p = Pair::default();
    p.pump().unwrap();
    let Some(Event::Connect(req)) = p.server_events.first() else {
        panic!("{:?}", p.server_events)
    };
    assert_eq!(req.path.app, "live");
    assert_eq!(req.path.instance, "_definst_");
    let Some(ClientEvent::Connected { properties, info }) = p.client_events.first() else {
        panic!("{:?}", p.client_events)
    };
    assert!(properties.get("fmsVer").and_then(|v| v.as_str()).is_some());
    assert_eq!(
        properties.get("capabilities").and_then(|v| v.as_f64()),
        Some(31.0)
    );
    assert_eq!(
        info.get("code").and_then(|v| v.as_str()),
        Some("NetConnection.Connect.Success")
    );
    assert_eq!(
        info.get("objectEncoding").and_then(|v| v.as_f64()),
        Some(0.0)
    );
    assert_eq!(p.server.out_chunk_size(), 4096);
}

#[test]
fn amf3_connect_is_answered_in_amf3_with_encoding_echoed() {
    let mut cfg = ClientConfig::new("live/room", "rtmp://localhost/live/room");
    cfg.object_encoding = 3.0;
    let mut p = Pair::new(SessionConfig::default(), cfg);
    p.pump().unwrap();
    let Some(ClientEvent::Connected { info, .. }) = p.client_events.first() else {
        panic!("{:?}", p.client_events)
    };
    assert_eq!(
        info.get("objectEncoding").and_then(|v| v.as_f64()),
        Some(3.0)
    );
    let Some(Event::Connect(req)) = p.server_events.first() else {
        panic!()
    };
    assert_eq!(req.path.instance, "room");
    assert_eq!(req.object_encoding, 3.0);
}

#[test]
fn connect_args_and_query_reach_the_app_layer() {
    let mut cfg = ClientConfig::new("live?token=t1", "rtmp://localhost/live?token=t1");
    cfg.connect_args = vec![Amf0Value::string("secret"), Amf0Value::Number(7.0)];
    let mut p = Pair::new(SessionConfig::default(), cfg);
    p.pump().unwrap();
    let Some(Event::Connect(req)) = p.server_events.first() else {
        panic!()
    };
    assert_eq!(req.path.query.as_deref(), Some("token=t1"));
    assert_eq!(
        req.args,
        vec![Amf0Value::string("secret"), Amf0Value::Number(7.0)]
    );
}

#[test]
fn rejected_and_redirected_connects() {
    let mut p = Pair::default();
    p.auto_accept = false;
    p.pump().unwrap();
    p.server.reject_connect("bad token");
    p.pump().unwrap();
    let Some(ClientEvent::ConnectRejected { info }) = p.client_events.first() else {
        panic!("{:?}", p.client_events)
    };
    assert_eq!(
        info.get("code").and_then(|v| v.as_str()),
        Some("NetConnection.Connect.Rejected")
    );
    assert_eq!(
        info.get("description").and_then(|v| v.as_str()),
        Some("bad token")
    );
    assert!(p.server.is_closed());

    let mut p = Pair::default();
    p.auto_accept = false;
    p.pump().unwrap();
    p.server.redirect_connect("rtmp://other/live", "moved");
    p.pump().unwrap();
    let Some(ClientEvent::ConnectRejected { info }) = p.client_events.first() else {
        panic!()
    };
    let ex = info.get("ex").expect("ex object");
    assert_eq!(ex.get("code").and_then(|v| v.as_f64()), Some(302.0));
    assert_eq!(
        ex.get("redirect").and_then(|v| v.as_str()),
        Some("rtmp://other/live")
    );
}

#[test]
fn pending_connect_holds_later_commands_until_accepted() {
    let mut p = Pair::default();
    p.auto_accept = false;
    p.pump().unwrap();
    assert!(matches!(p.server_events.first(), Some(Event::Connect(_))));
    // Time passes while the app decides; nothing is answered yet.
    assert!(!p.client.is_connected());
    p.server.accept_connect();
    p.pump().unwrap();
    assert!(p.client.is_connected());
}

#[test]
fn publish_media_and_metadata_flow_as_events() {
    let mut p = Pair::connected();
    let id = p.create_stream();
    assert_eq!(id, 1);
    p.client.publish(id, "key?token=a", "live");
    p.pump().unwrap();
    let Some(Event::Publish {
        stream_id,
        name,
        kind,
    }) = p.server_events.last().cloned()
    else {
        panic!("{:?}", p.server_events)
    };
    assert_eq!(
        (stream_id, name.name.as_str(), kind.as_str()),
        (1, "key", "live")
    );
    assert_eq!(name.query.as_deref(), Some("token=a"));
    p.server.publish_started(1);
    p.pump().unwrap();
    assert_eq!(p.statuses(), vec!["NetStream.Publish.Start"]);

    let meta = encode_amf0_all(&[
        Amf0Value::string("@setDataFrame"),
        Amf0Value::string("onMetaData"),
        Amf0Value::EcmaArray(vec![("width".into(), Amf0Value::Number(320.0))]),
    ]);
    p.client.send_media(1, msg_type::DATA_AMF0, 0, &meta);
    // A timestamp past 0xFFFFFF exercises extended timestamps on every chunk.
    let big = vec![0x17u8; 10_000];
    p.client.send_media(1, msg_type::VIDEO, 0x0123_4567, &big);
    p.server_events.clear();
    p.pump().unwrap();
    let media: Vec<_> = p
        .server_events
        .iter()
        .filter_map(|e| match e {
            Event::Media {
                kind,
                timestamp,
                payload,
                ..
            } => Some((*kind, *timestamp, payload.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(media.len(), 2);
    assert_eq!(media[0].0, MediaKind::Data);
    let expected = encode_amf0_all(&[
        Amf0Value::string("onMetaData"),
        Amf0Value::EcmaArray(vec![("width".into(), Amf0Value::Number(320.0))]),
    ]);
    assert_eq!(
        media[0].2,
        Bytes::from(expected),
        "@setDataFrame is stripped"
    );
    assert_eq!((media[1].0, media[1].1), (MediaKind::Video, 0x0123_4567));
    assert_eq!(media[1].2.len(), 10_000);
}

/// `NetStream.send` data (also ffmpeg's `@setDataFrame`-wrapped kind) is an `Event::Data` with
/// the wrapper removed, on a publishing stream, a playing one or the connection's stream 0;
/// metadata stays media and `@clearDataFrame` disappears.
#[test]
fn data_messages_are_events_apart_from_metadata() {
    let mut p = Pair::connected();
    let id = p.create_stream();
    p.client.publish(id, "key", "live");
    p.pump().unwrap();
    p.server.publish_started(id);
    p.pump().unwrap();
    let chat = |wrapped: bool| {
        let mut v = vec![Amf0Value::string("onChat"), Amf0Value::string("hi")];
        if wrapped {
            v.insert(0, Amf0Value::string("@setDataFrame"));
        }
        encode_amf0_all(&v)
    };
    let meta = encode_amf0_all(&[
        Amf0Value::string("onMetaData"),
        Amf0Value::EcmaArray(vec![]),
    ]);
    p.client
        .send_media(id, msg_type::DATA_AMF0, 5, &chat(false));
    p.client.send_media(id, msg_type::DATA_AMF0, 6, &chat(true));
    p.client.send_media(id, msg_type::DATA_AMF0, 7, &meta);
    p.client.send_media(
        id,
        msg_type::DATA_AMF0,
        8,
        &encode_amf0_all(&[Amf0Value::string("@clearDataFrame")]),
    );
    p.client.send_media(0, msg_type::DATA_AMF0, 9, &chat(false));
    // A stream that was never created: dropped without an event.
    p.client
        .send_media(7, msg_type::DATA_AMF0, 10, &chat(false));
    p.server_events.clear();
    p.pump().unwrap();
    let got: Vec<String> = p
        .server_events
        .iter()
        .map(|e| match e {
            Event::Data {
                stream_id,
                publishing,
                timestamp,
                payload,
                values,
                ..
            } => {
                assert_eq!(payload, &Bytes::from(chat(false)), "wrapper removed");
                assert_eq!(values[0].as_str(), Some("onChat"));
                format!("data {stream_id} {publishing} {timestamp}")
            }
            Event::Media {
                kind, timestamp, ..
            } => format!("media {kind:?} {timestamp}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        got,
        [
            "data 1 true 5",
            "data 1 true 6",
            "media Data 7",
            "data 0 false 9"
        ]
    );
}

#[test]
fn publish_and_play_statuses_in_fms_order() {
    let mut p = Pair::connected();
    let id = p.create_stream();
    p.client.play(id, "show", -2.0);
    p.pump().unwrap();
    let Some(Event::Play { start, reset, .. }) = p.server_events.last().cloned() else {
        panic!("{:?}", p.server_events)
    };
    assert_eq!((start, reset), (-2.0, true));
    p.server.play_started(id, "show", true);
    p.server.play_publish_notify(id, "show");
    p.server.play_unpublish_notify(id, "show");
    p.pump().unwrap();
    assert_eq!(
        p.statuses(),
        vec![
            "NetStream.Play.Reset",
            "NetStream.Play.Start",
            "NetStream.Play.PublishNotify",
            "NetStream.Play.UnpublishNotify"
        ]
    );
    // |RtmpSampleAccess and NetStream.Data.Start arrive as data messages.
    let data = p
        .client_events
        .iter()
        .filter(|e| matches!(e, ClientEvent::Media { type_id: 18, .. }))
        .count();
    assert_eq!(data, 2);

    p.client.stream_command(
        id,
        "pause",
        &[Amf0Value::Boolean(true), Amf0Value::Number(0.0)],
    );
    p.client
        .stream_command(id, "receiveVideo", &[Amf0Value::Boolean(false)]);
    p.server_events.clear();
    p.pump().unwrap();
    assert!(matches!(
        p.server_events[0],
        Event::Pause { pause: true, .. }
    ));
    assert!(matches!(
        p.server_events[1],
        Event::ReceiveVideo { enabled: false, .. }
    ));
    p.client.delete_stream(id);
    p.server_events.clear();
    p.pump().unwrap();
    assert!(matches!(p.server_events[0], Event::StopPlay { stream_id } if stream_id == id));
}

#[test]
fn unpublish_by_fcunpublish_or_delete_stream() {
    let mut p = Pair::connected();
    let id = p.create_stream();
    p.client.publish(id, "k", "live");
    p.pump().unwrap();
    p.server.publish_started(id);
    p.client.call("FCUnpublish", &[Amf0Value::string("k")]);
    p.server_events.clear();
    p.pump().unwrap();
    assert!(matches!(p.server_events[0], Event::Unpublish { stream_id } if stream_id == id));
    assert!(
        p.statuses()
            .contains(&"NetStream.Unpublish.Success".to_owned())
    );
    // Deleting the now idle stream reports nothing more.
    p.client.delete_stream(id);
    p.server_events.clear();
    p.pump().unwrap();
    assert!(p.server_events.is_empty(), "{:?}", p.server_events);
}

#[test]
fn unknown_methods_become_calls_and_get_answers() {
    let mut p = Pair::connected();
    let txn = p.client.call("whoami", &[Amf0Value::Number(1.0)]);
    p.pump().unwrap();
    let Some(Event::Call(cmd)) = p.server_events.last().cloned() else {
        panic!("{:?}", p.server_events)
    };
    assert_eq!((cmd.name.as_str(), cmd.transaction_id), ("whoami", txn));
    p.server.send_error(
        txn,
        "NetConnection.Call.Failed",
        "Method not found (whoami).",
    );
    // getStreamLength is the gateway's to answer (it knows the files): an event, then a result.
    let txn2 = p.client.call("getStreamLength", &[Amf0Value::string("x")]);
    p.server_events.clear();
    p.pump().unwrap();
    assert!(
        p.server_events.iter().any(|e| matches!(e, Event::StreamLength { transaction_id, name } if *transaction_id == txn2 && name == "x")),
        "{:?}",
        p.server_events
    );
    p.server.send_result(txn2, &[Amf0Value::Number(0.0)]);
    p.pump().unwrap();
    assert!(
        p.client_events.iter().any(
            |e| matches!(e, ClientEvent::Error { transaction_id, .. } if *transaction_id == txn)
        )
    );
    assert!(p.client_events.iter().any(|e| matches!(e, ClientEvent::Result { transaction_id, values } if *transaction_id == txn2 && values[0] == Amf0Value::Number(0.0))));
}

#[test]
fn server_pings_silent_clients_and_drops_dead_ones() {
    let mut p = Pair::connected();
    let t0 = p.now;
    let interval = SessionConfig::default().ping_interval;
    assert!(p.server.poll_timeout().unwrap() <= t0 + interval);
    p.server.handle_timeout(t0 + interval).unwrap();
    // The client answers the ping, which counts as input.
    p.now = t0 + interval + Duration::from_millis(10);
    p.pump().unwrap();
    p.server.handle_timeout(t0 + interval * 2).unwrap();

    // A client that never answers is dropped after the ping timeout.
    let mut p = Pair::connected();
    let t0 = p.now;
    p.server.handle_timeout(t0 + interval).unwrap();
    let timeout = SessionConfig::default().ping_timeout;
    let err = p
        .server
        .handle_timeout(t0 + interval + timeout)
        .unwrap_err();
    assert!(matches!(err, SessionError::PingTimeout(_)), "{err}");
}

#[test]
fn acknowledgements_are_sent_when_the_window_fills() {
    let cfg = SessionConfig {
        window_ack_size: 10_000,
        ..SessionConfig::default()
    };
    let mut client_cfg = ClientConfig::new("live", "rtmp://localhost/live");
    client_cfg.window_ack_size = 10_000;
    let mut p = Pair::new(cfg, client_cfg);
    p.pump().unwrap();
    let id = p.create_stream();
    p.client.publish(id, "ack", "live");
    p.pump().unwrap();
    p.server.publish_started(id);
    for i in 0..10 {
        p.client
            .send_media(id, msg_type::AUDIO, i * 20, &[0xaf; 3000]);
    }
    p.pump().unwrap();
    assert!(p.server.bytes_in() > 30_000);
    // The window is 10 000 bytes, so the last acknowledgement is within one window of the total.
    let acked = u64::from(p.client.acked_by_peer());
    assert!(
        acked >= p.server.bytes_in() - 10_000 && acked <= p.server.bytes_in(),
        "acked {acked}"
    );
}

#[test]
fn bad_peers_get_clear_errors() {
    let now = Instant::now();
    let mut s = Session::new(SessionConfig::default(), now);
    let mut rtmpe = vec![0x06u8];
    rtmpe.extend_from_slice(&[0u8; 1536]);
    let err = s.handle_input(&rtmpe, now).unwrap_err();
    assert!(err.to_string().contains("RTMPE"), "{err}");

    // A command other than connect right after the handshake is a protocol violation.
    let mut s = Session::new(SessionConfig::default(), now);
    let mut hs = wasmgate::rtmp::handshake::ClientHandshake::new(false);
    let mut out = bytes::BytesMut::new();
    hs.start(&mut out);
    s.handle_input(&out, now).unwrap();
    let mut server_out = Vec::new();
    s.drain_transmit(&mut server_out);
    let mut input = bytes::BytesMut::new();
    for b in server_out {
        input.extend_from_slice(&b);
    }
    let mut c2 = bytes::BytesMut::new();
    assert!(hs.feed(&mut input, &mut c2).unwrap());
    let mut enc = wasmgate::rtmp::chunk::ChunkEncoder::new();
    let payload = encode_amf0_all(&[
        Amf0Value::string("play"),
        Amf0Value::Number(0.0),
        Amf0Value::Null,
    ]);
    let header = wasmgate::rtmp::chunk::MessageHeader {
        timestamp: 0,
        type_id: msg_type::COMMAND_AMF0,
        stream_id: 0,
    };
    enc.encode(3, &header, &payload, &mut c2);
    let err = s.handle_input(&c2, now).unwrap_err();
    assert!(err.to_string().contains("before connect"), "{err}");
}

#[test]
fn shared_object_messages_both_ways_in_their_framing() {
    use wasmgate::rtmp::shared_object::{SoEncoding, SoEvent, SoMessage};
    let mut p = Pair::connected();
    for encoding in [SoEncoding::Amf0, SoEncoding::Amf3] {
        let msg = SoMessage::new(
            "chat",
            0,
            true,
            vec![
                SoEvent::Use,
                SoEvent::RequestChange {
                    key: "k".into(),
                    value: Amf0Value::Number(1.0),
                },
            ],
        );
        p.client.send_shared_object(&msg, encoding);
        p.pump().unwrap();
        assert_eq!(
            p.server_events.pop(),
            Some(Event::SharedObject {
                encoding,
                message: msg
            })
        );
        let reply = SoMessage::new("chat", 2, true, vec![SoEvent::UseSuccess, SoEvent::Clear]);
        p.server.send_shared_object(&reply, encoding);
        p.pump().unwrap();
        assert_eq!(
            p.client_events.pop(),
            Some(ClientEvent::SharedObject {
                encoding,
                message: reply
            })
        );
    }
}

#[test]
fn a_shared_object_body_that_does_not_decode_ends_the_session() {
    let mut p = Pair::connected();
    // A name length pointing past the end of the body.
    p.client
        .send_media(0, msg_type::SHARED_OBJECT_AMF0, 0, &[0x00, 0x09, b'x']);
    let err = p.pump().unwrap_err();
    assert!(matches!(err, SessionError::SharedObject(_)), "{err}");
    assert!(
        err.to_string().starts_with("shared object message:"),
        "{err}"
    );
}
