//! The `chat` sample guest with the test RTMP client: client-callable `join`/`say`/`leave`,
//! `_result`/`_error` answers, `onMessage` pushed to every member (server-to-client calls), and
//! instances as separate rooms.

mod apps;
mod common;
mod gateway;

use std::time::Duration;

use apps::*;
use wasmgate::rtmp::amf::Amf0Value;
use wasmgate::rtmp::command::Command;

fn is_msg(from: &str, text: &str) -> impl Fn(&Command) -> bool {
    let (from, text) = (from.to_owned(), text.to_owned());
    move |m| {
        m.name == "onMessage"
            && m.arg(0).and_then(|v| v.as_str()) == Some(&from)
            && m.arg(1).and_then(|v| v.as_str()) == Some(&text)
    }
}

#[test]
fn chat_methods_and_broadcasts() {
    let apps_dir = tempfile::tempdir().unwrap();
    install_app(apps_dir.path(), "chat", "chat", "");
    let gw = gateway_with_apps(apps_dir.path(), |_| {});
    let t = Duration::from_secs(5);

    let (mut a, r) = RtmpClient::connect(gw.addr, "chat/room1", &[]);
    assert_eq!(r.name, "_result");
    let (mut b, _) = RtmpClient::connect(gw.addr, "chat/room1", &[]);
    let (mut other, _) = RtmpClient::connect(gw.addr, "chat/room2", &[]);

    let r = a.call_wait("join", &[Amf0Value::string("alice")]);
    assert_eq!(r.name, "_result", "{r:?}");
    let members = r.arg(0).and_then(|v| v.get("members")).cloned();
    assert_eq!(
        members,
        Some(Amf0Value::StrictArray(vec![Amf0Value::string("alice")]))
    );
    let r = b.call_wait("join", &[Amf0Value::string("bob")]);
    assert_eq!(r.name, "_result");
    assert!(a.wait_for(t, is_msg("server", "bob joined")).is_some());

    let r = b.call_wait("say", &[Amf0Value::string("hello")]);
    assert_eq!(r.name, "_result");
    assert_eq!(r.arg(0), Some(&Amf0Value::Boolean(true)));
    assert!(a.wait_for(t, is_msg("bob", "hello")).is_some());
    assert!(b.wait_for(t, is_msg("bob", "hello")).is_some());

    // A server-to-client call with a result: alice asks bob, bob's `_result` goes back to alice.
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

    // Errors come back as `_error` with the guest's text.
    let r = b.call_wait("join", &[Amf0Value::string("alice")]);
    assert_eq!(r.name, "_error");
    assert_eq!(description(&r), "The name alice is taken.");
    let r = a.call_wait("nope", &[]);
    assert_eq!(r.name, "_error");
    assert_eq!(description(&r), "Method not found (nope).");
    let r = other.call_wait("say", &[Amf0Value::string("x")]);
    assert_eq!(description(&r), "Join the room first.");

    // Another instance is another room: nothing from room1 arrives there.
    assert!(
        other
            .wait_for(Duration::from_millis(300), |m| m.name == "onMessage")
            .is_none()
    );

    // A member that disconnects leaves the room.
    drop(b);
    assert!(a.wait_for(t, is_msg("server", "bob left")).is_some());
    let r = a.call_wait("leave", &[]);
    assert_eq!(r.name, "_result");
    let list = gw.core().apps().list();
    let chat = list.iter().find(|i| i.name == "chat").unwrap();
    assert_eq!(chat.instances, vec!["room1".to_owned(), "room2".to_owned()]);
}

#[test]
fn apps_without_a_module_are_live_or_denied() {
    let apps_dir = tempfile::tempdir().unwrap();
    install_app(apps_dir.path(), "chat", "chat", "");
    let gw = gateway_with_apps(apps_dir.path(), |_| {});
    let (_, r) = RtmpClient::connect(gw.addr, "nosuch", &[]);
    assert_eq!(r.name, "_result", "default: the built-in live app");

    let gw = gateway_with_apps(apps_dir.path(), |c| {
        c.apps.unknown_apps = wasmgate::config::UnknownApps::Deny;
    });
    let (_, r) = RtmpClient::connect(gw.addr, "nosuch", &[]);
    assert_eq!(r.name, "_error");
    assert_eq!(description(&r), "No such application.");
    let (_, r) = RtmpClient::connect(gw.addr, "chat", &[]);
    assert_eq!(r.name, "_result");
}
