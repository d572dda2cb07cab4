//! The admin side of remote shared objects over real sockets: two project clients use a
//! temporary and a persistent object of the built-in live app and set slots; the admin API lists
//! them with their versions and subscribers, returns one object's slots as JSON, answers 404 for
//! an unknown object and an empty list for an unknown instance, and `/metrics` counts the
//! messages. The `chat` guest's member list, an object the app holds with nobody subscribed,
//! is listed as held by the app.
//!
//! Only the first test scrapes `/metrics`, in its own binary: the Prometheus recorder is
//! process-wide, so another gateway scraped at the same time could overwrite its figures.

mod apps;
mod common;
mod gateway;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::prometheus_value;
use gateway::{Gateway, wait};
use serde_json::{Value, json};
use wasmgate::client::RtmpClient;
use wasmgate::config::Config;
use wasmgate::rtmp::amf::Amf0Value;
use wasmgate::rtmp::shared_object::{SoEncoding, SoEvent, SoMessage};

const T: Duration = Duration::from_secs(5);
const TOKEN: &str = "so-admin-token";

/// One GET with the bearer token on a fresh connection: (status, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, T).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {raw:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_owned())
}

fn get_json(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = get(addr, path);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path} not JSON ({e}): {body}"))
}

async fn send(client: &mut RtmpClient, name: &str, persistent: bool, events: Vec<SoEvent>) {
    let msg = SoMessage::new(name, 0, persistent, events);
    client
        .send_shared_object(&msg, SoEncoding::Amf0)
        .await
        .unwrap();
}

fn change(key: &str, value: Amf0Value) -> SoEvent {
    SoEvent::RequestChange {
        key: key.to_owned(),
        value,
    }
}

/// Reads shared-object messages until one for `name` is at `version`, as a client following
/// the object would.
async fn until_version(client: &mut RtmpClient, name: &str, version: u32) {
    loop {
        let (_, msg) = client
            .next_shared_object(T)
            .await
            .unwrap_or_else(|e| panic!("{name} never reached version {version}: {e}"));
        if msg.name == name && msg.version == version {
            return;
        }
    }
}

#[test]
fn admin_api_lists_shared_objects_with_slots_subscribers_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config.admin.token = Some(TOKEN.into());
    config.shared_objects.dir = dir.path().to_path_buf();
    let gw = Gateway::start_with(config);
    let admin = gw.admin_addr();
    // A name with a space: the path segment arrives percent-encoded.
    let board = "white board";
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    rt.block_on(async {
        // App `so` is no Wasm app: the built-in live app's instances have shared objects too.
        let mut a = RtmpClient::connect(&gw.url("so/room"), vec![])
            .await
            .unwrap();
        let mut b = RtmpClient::connect(&gw.url("so/room"), vec![])
            .await
            .unwrap();
        for c in [&mut a, &mut b] {
            send(c, board, false, vec![SoEvent::Use]).await;
            until_version(c, board, 1).await;
        }
        send(
            &mut a,
            board,
            false,
            vec![change("title", Amf0Value::string("hi"))],
        )
        .await;
        send(
            &mut b,
            board,
            false,
            vec![change("count", Amf0Value::Number(3.0))],
        )
        .await;
        let user = Amf0Value::object([
            ("name", Amf0Value::string("ann")),
            (
                "tags",
                Amf0Value::StrictArray(vec![Amf0Value::Boolean(true)]),
            ),
        ]);
        send(&mut a, board, false, vec![change("user", user)]).await;
        for c in [&mut a, &mut b] {
            until_version(c, board, 4).await;
        }
        // A persistent object only `a` uses.
        send(&mut a, "notes", true, vec![SoEvent::Use]).await;
        until_version(&mut a, "notes", 1).await;
        send(&mut a, "notes", true, vec![change("n", Amf0Value::Null)]).await;
        until_version(&mut a, "notes", 2).await;

        // Both clients are in so/_definst_; `a` connected first, so it has the lower id.
        let clients = get_json(admin, "/api/v1/clients");
        let ids: Vec<u64> = clients
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["app"] == "so")
            .map(|c| c["id"].as_u64().unwrap())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(ids.len(), 2, "{clients}");

        let list = get_json(admin, "/api/v1/apps/so/_definst_/shared-objects");
        assert_eq!(
            list,
            json!([
                {
                    "name": "notes", "persistent": true, "version": 2, "slots": 1,
                    "bytes": list[0]["bytes"], "subscribers": 1, "subscriber_ids": [ids[0]],
                    "held_by_app": false,
                },
                {
                    "name": board, "persistent": false, "version": 4, "slots": 3,
                    "bytes": list[1]["bytes"], "subscribers": 2, "subscriber_ids": ids,
                    "held_by_app": false,
                },
            ]),
            "{list:#}"
        );
        assert!(list[1]["bytes"].as_u64().unwrap() > 20, "{list}");

        let one = get_json(
            admin,
            "/api/v1/apps/so/_definst_/shared-objects/white%20board",
        );
        assert_eq!(one["name"], board);
        assert_eq!(one["version"], 4);
        assert_eq!(one["subscribers"], 2);
        assert_eq!(
            one["data"],
            json!({
                "count": 3.0,
                "title": "hi",
                "user": { "name": "ann", "tags": [true] },
            }),
            "{one:#}"
        );
        let notes = get_json(admin, "/api/v1/apps/so/_definst_/shared-objects/notes");
        assert_eq!(notes["data"], json!({ "n": null }));

        // Unknown object: 404 naming it. Unknown app or instance: nothing loaded there.
        let (status, body) = get(admin, "/api/v1/apps/so/_definst_/shared-objects/nope%3F");
        assert_eq!(status, 404, "{body}");
        let err: Value = serde_json::from_str(&body).unwrap();
        assert!(
            err["error"].as_str().unwrap().contains("\"nope?\""),
            "{body}"
        );
        assert_eq!(
            get_json(admin, "/api/v1/apps/so/other/shared-objects"),
            json!([])
        );
        assert_eq!(
            get_json(admin, "/api/v1/apps/nope/_definst_/shared-objects"),
            json!([])
        );

        let (status, text) = get(admin, "/metrics");
        assert_eq!(status, 200);
        let m = |s| prometheus_value(&text, s).unwrap_or_else(|| panic!("no {s} in:\n{text}"));
        // Uses 3, changes 4: every client message reached the authority, once.
        assert_eq!(m("wasmgate_shared_object_messages_in_total"), 7.0);
        // Use replies 3, then at least one tick's message to each board subscriber and a
        // Success for `notes` (the board's three changes may share one tick).
        let out = m("wasmgate_shared_object_messages_out_total");
        assert!((6.0..=10.0).contains(&out), "{text}");
        assert_eq!(m("wasmgate_shared_object_dropped_total"), 0.0);
        assert_eq!(m("wasmgate_shared_objects"), 2.0);
        assert_eq!(m("wasmgate_shared_object_subscribers"), 3.0);

        // `b` leaves: it is released from the board, which `a` keeps.
        drop(b);
        let path = "/api/v1/apps/so/_definst_/shared-objects/white%20board";
        assert!(
            wait(T, || get_json(admin, path)["subscriber_ids"]
                == json!([ids[0]])),
            "{}",
            get_json(admin, path)
        );
        drop(a);
        // Nobody left: the temporary object is gone and the persistent one unloaded (saved).
        assert!(wait(T, || get_json(
            admin,
            "/api/v1/apps/so/_definst_/shared-objects"
        ) == json!([])));
        let (status, _) = get(admin, path);
        assert_eq!(status, 404);
    });
}

#[test]
fn an_object_the_chat_guest_holds_is_listed_without_subscribers() {
    let apps_dir = tempfile::tempdir().unwrap();
    apps::install_app(apps_dir.path(), "chat", "chat", "");
    let gw = apps::gateway_with_apps(apps_dir.path(), |c| {
        c.admin.listen = "127.0.0.1:0".parse().unwrap();
        c.admin.token = Some(TOKEN.into());
    });
    let admin = gw.admin_addr();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut alice = RtmpClient::connect(&gw.url("chat/lobby"), vec![])
            .await
            .unwrap();
        let joined = alice
            .call("join", &[Amf0Value::string("alice")])
            .await
            .unwrap();
        assert!(joined.is_ok(), "join answered {joined:?}");
        let id = get_json(admin, "/api/v1/clients")[0]["id"].clone();

        // The guest wrote `members` (nickname -> client id); no client uses it.
        let one = get_json(admin, "/api/v1/apps/chat/_definst_/shared-objects/members");
        assert_eq!(one["held_by_app"], true, "{one:#}");
        assert_eq!(one["persistent"], false);
        assert_eq!(one["subscribers"], 0);
        assert_eq!(one["subscriber_ids"], json!([]));
        assert_eq!(one["slots"], 1);
        assert_eq!(one["data"]["alice"].as_f64(), id.as_f64(), "{one:#}");
        let list = get_json(admin, "/api/v1/apps/chat/_definst_/shared-objects");
        assert_eq!(list.as_array().map(Vec::len), Some(1), "{list:#}");
        assert_eq!(list[0]["name"], "members");
    });
}
