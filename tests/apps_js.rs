//! The JavaScript guests (`guests/js/`, componentize-js) end to end: built by the harness,
//! deployed into an apps folder; token-auth gates ffmpeg and rtmpdump with its reasons, chat
//! answers calls, pushes messages, runs timers and keeps its member list in a shared object.

mod apps;
mod common;
mod gateway;

use std::time::{Duration, Instant};

use apps::*;
use common::*;
use serde_json::{Value, json};
use wasmgate::apps::json::amf_to_json;
use wasmgate::client::RtmpClient as OwnClient;
use wasmgate::rtmp::amf::Amf0Value;
use wasmgate::rtmp::command::Command;
use wasmgate::rtmp::shared_object::{SoEncoding, SoEvent, SoMessage};

// A JS component carries the SpiderMonkey engine: the README's `[limits]` for such apps (the
// default 100 ms deadline also holds for these small apps, but a first call after a restart
// and larger apps want headroom).
const LIMITS: &str = "[limits]\nmemory_mib = 64\ndeadline_ms = 500\n";

/// One call through the project's client: the JSON of the `_result` value, or the `_error`
/// description.
async fn call(c: &mut OwnClient, method: &str, args: &[Amf0Value]) -> Result<Value, String> {
    let answer = tokio::time::timeout(Duration::from_secs(10), c.call(method, args))
        .await
        .unwrap_or_else(|_| panic!("no answer to {method} within 10 s"))
        .unwrap_or_else(|e| panic!("{method}: {e}"));
    match answer {
        Ok(values) => Ok(values.first().map(amf_to_json).unwrap_or(Value::Null)),
        Err(values) => Err(values
            .first()
            .and_then(|v| v.get("description"))
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned()),
    }
}

#[test]
fn js_token_auth_gates_ffmpeg_and_rtmpdump_with_its_reasons() {
    ensure_tools();
    let t0 = Instant::now();
    let wasm = js_guest("token-auth");
    let built = t0.elapsed();
    let apps_dir = tempfile::tempdir().unwrap();
    let settings = "[settings]\ntokens = [\"s3cret\", \"other\"]\n";
    install_wasm(
        apps_dir.path(),
        "secure",
        &wasm,
        &format!("{settings}{LIMITS}"),
    );
    install_wasm(
        apps_dir.path(),
        "slow",
        &wasm,
        &format!("{settings}decide_after_ms = 400\n{LIMITS}"),
    );
    let t1 = Instant::now();
    let gw = gateway_with_apps(apps_dir.path(), |_| {});
    eprintln!(
        "js token-auth: build {built:?}, gateway start with two apps loaded {:?}",
        t1.elapsed()
    );
    let out = tempfile::tempdir().unwrap();
    let url = gw.url("secure/cam1");

    // Right token: ffmpeg publishes, ffmpeg and rtmpdump receive the stream.
    let mut publisher = ffmpeg_publish_with(&url, &fixture_flv_long(), &["-rtmp_conn", "S:s3cret"]);
    assert!(
        wait_until(Duration::from_secs(20), || gw.publishing() == 1),
        "publisher with the right token never started:\n{}",
        publisher.stderr()
    );
    let ff_out = out.path().join("ff.flv");
    let mut ff = ffmpeg_play_with(&url, &ff_out, 3.0, &["-rtmp_conn", "S:other"]);
    let rd_out = out.path().join("rd.flv");
    let mut rd = rtmpdump_play_with(&url, &rd_out, 4, &["-C", "S:s3cret"]);

    // Wrong token: ffmpeg's publish is refused and it prints the guest's reason.
    let mut bad_pub = ffmpeg_publish_with(
        &gw.url("secure/cam2"),
        &fixture_flv(),
        &["-rtmp_conn", "S:nope"],
    );
    let st = bad_pub.finish(Duration::from_secs(20));
    assert!(!st.success(), "publish with a wrong token succeeded");
    let err = bad_pub.stderr();
    assert!(
        err.contains("Invalid token."),
        "ffmpeg stderr lacks the reason:\n{err}"
    );
    // Missing token: rtmpdump -V dumps the `_error` info object with the description.
    let mut bad_rd = rtmpdump_play_with(&url, &out.path().join("bad.flv"), 2, &["-V"]);
    assert!(!bad_rd.finish(Duration::from_secs(20)).success());
    let err = bad_rd.stderr();
    assert!(
        err.contains("Missing token."),
        "rtmpdump stderr lacks the reason:\n{err}"
    );

    // Pending connects decided by the guest's timer 400 ms later, both waiting at once.
    let started = Instant::now();
    let addr = gw.addr;
    let other = std::thread::spawn(move || {
        RtmpClient::connect(addr, "slow", &[Amf0Value::string("s3cret")]).1
    });
    let (_, reply) = RtmpClient::connect(gw.addr, "slow", &[Amf0Value::string("bad")]);
    assert_eq!(reply.name, "_error");
    assert_eq!(description(&reply), "Invalid token.");
    assert_eq!(other.join().unwrap().name, "_result");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );

    // Calls, results and the key-value store through the project's client; the token is in
    // the connect URL's query this time.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = OwnClient::connect(&format!("rtmp://{}/secure?token=other", gw.addr), vec![])
            .await
            .expect("connect with the token in the query");
        let me = call(&mut c, "whoami", &[]).await.unwrap();
        assert_eq!(me["app"], "secure");
        assert_eq!(me["query"], "token=other");
        assert!(me["id"].as_f64().unwrap() >= 1.0, "{me}");
        let kv = [Amf0Value::string("color"), Amf0Value::string("blue")];
        assert_eq!(call(&mut c, "remember", &kv).await, Ok(Value::Null));
        assert_eq!(call(&mut c, "recall", &kv[..1]).await, Ok(json!("blue")));
        assert_eq!(
            call(&mut c, "remember", &kv[..1]).await,
            Err("remember(key, value) takes two strings".into())
        );
        // Every connect so far was counted in the store (the publishers, players, refused ones).
        let connects = call(&mut c, "connects", &[]).await.unwrap();
        assert!(connects.as_f64().unwrap() >= 5.0, "{connects}");
        assert_eq!(
            call(&mut c, "nope", &[]).await,
            Err("Method not found (nope).".into())
        );
    });

    finish_players(&mut [(&mut ff, &ff_out), (&mut rd, &rd_out)], 10);
    publisher.interrupt();
    let _ = publisher.finish(Duration::from_secs(10));
    let apps = gw.core().apps().list();
    let secure = apps.iter().find(|a| a.name == "secure").unwrap();
    assert_eq!(secure.traps, 0);
}

fn is_msg(from: &str, text: &str) -> impl Fn(&Command) -> bool {
    let (from, text) = (from.to_owned(), text.to_owned());
    move |m| {
        m.name == "onMessage"
            && m.arg(0).and_then(|v| v.as_str()) == Some(&from)
            && m.arg(1).and_then(|v| v.as_str()) == Some(&text)
    }
}

#[test]
fn js_chat_calls_broadcasts_timers_and_shared_objects() {
    let wasm = js_guest("chat");
    let apps_dir = tempfile::tempdir().unwrap();
    install_wasm(
        apps_dir.path(),
        "chat",
        &wasm,
        &format!("[settings]\nbanned = [\"badword\"]\nmax_text = 64\n{LIMITS}"),
    );
    let gw = gateway_with_apps(apps_dir.path(), |_| {});
    let t = Duration::from_secs(5);

    let (mut a, r) = RtmpClient::connect(gw.addr, "chat/room1", &[]);
    assert_eq!(r.name, "_result");
    let (mut b, _) = RtmpClient::connect(gw.addr, "chat/room1", &[]);
    let (mut other, _) = RtmpClient::connect(gw.addr, "chat/room2", &[]);

    let r = a.call_wait("join", &[Amf0Value::string("alice")]);
    assert_eq!(r.name, "_result", "{r:?}");
    assert_eq!(
        r.arg(0).and_then(|v| v.get("members")).cloned(),
        Some(Amf0Value::StrictArray(vec![Amf0Value::string("alice")]))
    );
    assert_eq!(
        b.call_wait("join", &[Amf0Value::string("bob")]).name,
        "_result"
    );
    assert!(a.wait_for(t, is_msg("server", "bob joined")).is_some());
    let r = b.call_wait("say", &[Amf0Value::string("hello")]);
    assert_eq!(r.arg(0), Some(&Amf0Value::Boolean(true)));
    assert!(a.wait_for(t, is_msg("bob", "hello")).is_some());
    assert!(b.wait_for(t, is_msg("bob", "hello")).is_some());

    // A server-to-client call with a result: alice asks bob, bob's answer goes to alice.
    let r = a.call_wait(
        "ask",
        &[Amf0Value::string("bob"), Amf0Value::string("answer?")],
    );
    assert_eq!(r.name, "_result", "{r:?}");
    let q = b
        .wait_for(t, |m| m.name == "ask")
        .expect("bob gets the question");
    assert_ne!(q.transaction_id, 0.0, "the server wants an answer");
    assert_eq!(q.arg(0).and_then(|v| v.as_str()), Some("answer?"));
    b.answer(q.transaction_id, Amf0Value::string("42"));
    assert!(a.wait_for(t, is_msg("bob", "42")).is_some());

    // Broadcast reaches every client of the instance, members or not, and no other room.
    let (mut lurker, _) = RtmpClient::connect(gw.addr, "chat/room1", &[]);
    a.call_wait("announce", &[Amf0Value::string("closing soon")]);
    for c in [&mut a, &mut b, &mut lurker] {
        let m = c
            .wait_for(t, |m| m.name == "onAnnounce")
            .expect("onAnnounce");
        assert_eq!(m.arg(0).and_then(|v| v.as_str()), Some("closing soon"));
    }
    // A timer: the reminder arrives after its delay, not before.
    let asked = Instant::now();
    let r = b.call_wait(
        "remind",
        &[Amf0Value::Number(300.0), Amf0Value::string("tea")],
    );
    assert_eq!(r.name, "_result", "{r:?}");
    assert!(b.wait_for(t, is_msg("server", "tea")).is_some());
    assert!(
        asked.elapsed() >= Duration::from_millis(300),
        "{:?}",
        asked.elapsed()
    );

    // Errors are `_error` with the guest's text.
    assert_eq!(
        description(&b.call_wait("join", &[Amf0Value::string("alice")])),
        "The name alice is taken."
    );
    assert_eq!(
        description(&a.call_wait("nope", &[])),
        "Method not found (nope)."
    );
    assert_eq!(
        description(&other.call_wait("say", &[Amf0Value::string("x")])),
        "Join the room first."
    );
    assert!(
        other
            .wait_for(Duration::from_millis(300), |m| m.name == "onMessage"
                || m.name == "onAnnounce")
            .is_none()
    );

    // Shared objects through the project's client: the member list the guest keeps, which
    // clients may not write, and a moderated object of the clients'.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Three path segments: app `chat`, instance `room1` (the last is a stream name).
        let mut c = OwnClient::connect(&format!("rtmp://{}/chat/room1/x", gw.addr), vec![])
            .await
            .expect("connect to the JS chat");
        let members = |events| SoMessage::new("members", 0, false, events);
        c.send_shared_object(&members(vec![SoEvent::Use]), SoEncoding::Amf0)
            .await
            .unwrap();
        // UseSuccess and Clear first, the slots with them or in the next message.
        let has = |events: &[SoEvent], name: &str| {
            events
                .iter()
                .any(|e| matches!(e, SoEvent::Change { key, .. } if key == name))
        };
        let mut events = Vec::new();
        while !(has(&events, "alice") && has(&events, "bob")) {
            let (_, reply) = c
                .next_shared_object(t)
                .await
                .unwrap_or_else(|e| panic!("members incomplete after {events:?}: {e}"));
            events.extend(reply.events);
        }
        let change = |key: &str, value: &str| SoEvent::RequestChange {
            key: key.into(),
            value: Amf0Value::string(value),
        };
        c.send_shared_object(&members(vec![change("mallory", "1")]), SoEncoding::Amf0)
            .await
            .unwrap();
        let mut events = Vec::new();
        while !events.iter().any(|e| matches!(e, SoEvent::Status { .. })) {
            events.extend(c.next_shared_object(t).await.unwrap().1.events);
        }
        assert!(
            events.contains(&SoEvent::Status {
                code: "SharedObject.NoWriteAccess".into(),
                level: "error".into()
            }),
            "{events:?}"
        );

        let notes = |events| SoMessage::new("notes", 0, false, events);
        c.send_shared_object(&notes(vec![SoEvent::Use]), SoEncoding::Amf0)
            .await
            .unwrap();
        c.next_shared_object(t).await.unwrap();
        c.send_shared_object(
            &notes(vec![change("n1", "a BadWord here")]),
            SoEncoding::Amf0,
        )
        .await
        .unwrap();
        let (_, reply) = c.next_shared_object(t).await.unwrap();
        assert!(
            reply.events.contains(&SoEvent::Change {
                key: "n1".into(),
                value: Amf0Value::string("a *** here")
            }),
            "{:?}",
            reply.events
        );
        // The guest reads the member list back from the same object.
        assert_eq!(
            call(&mut c, "members", &[]).await,
            Ok(json!(["alice", "bob"]))
        );
    });

    // A member that disconnects leaves the room (and the shared object).
    drop(b);
    assert!(a.wait_for(t, is_msg("server", "bob left")).is_some());
    assert_eq!(a.call_wait("leave", &[]).name, "_result");
    let list = gw.core().apps().list();
    let chat = list.iter().find(|i| i.name == "chat").unwrap();
    assert_eq!(chat.instances, vec!["room1".to_owned(), "room2".to_owned()]);
    assert_eq!(chat.traps, 0);
}
