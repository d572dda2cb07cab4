//! The Python sample guest (`guests/python/stream-gate`, componentize-py) end to end: built by the
//! harness, deployed into an apps folder, gating ffmpeg publishes and answering our own client.

mod apps;
mod common;
mod gateway;

use std::time::{Duration, Instant};

use apps::*;
use common::*;
use serde_json::{Value, json};
use wasmgate::apps::json::amf_to_json;
use wasmgate::client::{ClientError, RtmpClient as OwnClient};
use wasmgate::rtmp::amf::Amf0Value;
use wasmgate::rtmp::shared_object::{SoEncoding, SoEvent, SoMessage};

// CPython's start-up inside the guest takes a few hundred ms: the README's advice for such apps.
const TOML: &str = r#"
[settings]
keys = ["cam1"]
greeting = "hi from app.toml"

[limits]
deadline_ms = 1000
memory_mib = 128
"#;

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
fn python_guest_gates_publish_and_serves_calls() {
    ensure_tools();
    let t0 = Instant::now();
    let wasm = python_guest();
    let built = t0.elapsed();
    let apps_dir = tempfile::tempdir().unwrap();
    install_wasm(apps_dir.path(), "gate", wasm, TOML);
    let t1 = Instant::now();
    // Loads (compiles, or takes from target/wasm-cache) the 18 MB component before listening.
    let gw = gateway_with_apps(apps_dir.path(), |_| {});
    eprintln!(
        "python guest: build {built:?}, gateway start with the app loaded {:?}",
        t1.elapsed()
    );
    let out = tempfile::tempdir().unwrap();
    let url = gw.url("gate/cam1");

    // An allowed key publishes; ffmpeg and rtmpdump receive the stream.
    let mut publisher = ffmpeg_publish(&url, &fixture_flv_long());
    assert!(
        wait_until(Duration::from_secs(20), || gw.publishing() == 1),
        "publisher of an allowed key never started:\n{}",
        publisher.stderr()
    );
    let ff_out = out.path().join("ff.flv");
    let mut ff = ffmpeg_play(&url, &ff_out, 3.0);
    let rd_out = out.path().join("rd.flv");
    let mut rd = rtmpdump_play(&url, &rd_out, 4);

    // An unknown key is refused with the guest's reason, which ffmpeg prints.
    let mut denied = ffmpeg_publish(&gw.url("gate/nope"), &fixture_flv());
    let st = denied.finish(Duration::from_secs(30));
    assert!(!st.success(), "publish of an unknown key succeeded");
    let err = denied.stderr();
    assert!(
        err.contains("Unknown stream key nope."),
        "ffmpeg stderr lacks the guest's reason:\n{err}"
    );

    // The rest of the contract from Python, through the project's own client.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = OwnClient::connect(&format!("rtmp://{}/gate", gw.addr), vec![])
            .await
            .expect("connect to the Python app");
        let echoed = call(
            &mut c,
            "echo",
            &[
                Amf0Value::Number(1.5),
                Amf0Value::string("two"),
                Amf0Value::object([("three", Amf0Value::Boolean(true))]),
            ],
        )
        .await;
        assert_eq!(echoed, Ok(json!([1.5, "two", {"three": true}])));

        // host.settings(): the [settings] table as JSON.
        let settings = call(&mut c, "settings", &[]).await.unwrap();
        assert_eq!(
            settings,
            json!({"keys": ["cam1"], "greeting": "hi from app.toml"})
        );

        // The key-value store: set, read back, list, delete.
        let kv = |k: &str, v: &str| [Amf0Value::string(k), Amf0Value::string(v)];
        assert_eq!(
            call(&mut c, "remember", &kv("color", "blue")).await,
            Ok(Value::Null)
        );
        let key = [Amf0Value::string("color")];
        assert_eq!(call(&mut c, "recall", &key).await, Ok(json!("blue")));
        let keys = call(&mut c, "keys", &[]).await.unwrap();
        assert_eq!(keys, json!(["color", "connects"]));
        call(&mut c, "forget", &key).await.unwrap();
        assert_eq!(call(&mut c, "recall", &key).await, Ok(Value::Null));

        // on_connect counts connects in the store: one more client, one more.
        let before = call(&mut c, "count", &[]).await.unwrap().as_f64().unwrap();
        // At least the publisher and us (the players and the refused publisher may race).
        assert!(before >= 2.0, "{before}");
        let mut second = OwnClient::connect(&format!("rtmp://{}/gate", gw.addr), vec![])
            .await
            .expect("second client");
        assert_eq!(
            call(&mut second, "count", &[]).await,
            Ok(json!(before + 1.0))
        );

        // host.get-client and host.streams.
        let me = call(&mut c, "whoami", &[]).await.unwrap();
        assert_eq!(me["app"], "gate");
        assert_eq!(me["transport"], "rtmp");
        assert!(
            me["address"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{me}"
        );
        let streams = call(&mut c, "streams", &[]).await.unwrap();
        let cam1 = streams
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "cam1")
            .unwrap_or_else(|| panic!("cam1 missing from {streams}"));
        assert_eq!(cam1["publishing"], true);

        // Shared objects from Python: the guest writes a slot, a client using the object sees
        // it, and the guest's rule denies clients' writes to `admin.*` keys.
        let slot = [
            Amf0Value::string("py"),
            Amf0Value::string("admin.motd"),
            Amf0Value::string("hello"),
        ];
        assert_eq!(call(&mut c, "so_set", &slot).await, Ok(Value::Null));
        assert_eq!(call(&mut c, "so_get", &slot[..2]).await, Ok(json!("hello")));
        assert_eq!(
            call(&mut c, "so_keys", &slot[..1]).await,
            Ok(json!(["admin.motd"]))
        );
        let so_msg = |events| SoMessage::new("py", 0, false, events);
        let change = |key: &str| SoEvent::RequestChange {
            key: key.into(),
            value: Amf0Value::string("mine"),
        };
        let t = Duration::from_secs(10);
        c.send_shared_object(&so_msg(vec![SoEvent::Use]), SoEncoding::Amf0)
            .await
            .unwrap();
        let (_, reply) = c.next_shared_object(t).await.unwrap();
        assert!(reply.events.contains(&SoEvent::Change {
            key: "admin.motd".into(),
            value: Amf0Value::string("hello")
        }));
        c.send_shared_object(
            &so_msg(vec![change("admin.motd"), change("nick")]),
            SoEncoding::Amf0,
        )
        .await
        .unwrap();
        let mut events = Vec::new();
        while !events.iter().any(|e| matches!(e, SoEvent::Status { .. })) {
            events.extend(c.next_shared_object(t).await.unwrap().1.events);
        }
        assert!(
            events.contains(&SoEvent::Success { key: "nick".into() }),
            "{events:?}"
        );
        assert!(events.contains(&SoEvent::Change {
            key: "admin.motd".into(),
            value: Amf0Value::string("hello")
        }));
        assert!(events.contains(&SoEvent::Status {
            code: "SharedObject.NoWriteAccess".into(),
            level: "error".into()
        }));

        // An unknown method is `_error` with the guest's text.
        assert_eq!(
            call(&mut c, "nope", &[]).await,
            Err("Method not found (nope).".into())
        );

        // A publish of an unknown key from our client is refused too, with the same reason.
        let sid = c.create_stream().await.unwrap();
        c.session().publish(sid, "other", "live");
        c.flush().await.unwrap();
        let refused = c
            .wait_status(Duration::from_secs(10), |code| {
                code.starts_with("NetStream.Publish.")
            })
            .await;
        let info = match refused {
            Ok(info) => info,
            Err(ClientError::Timeout(d)) => panic!("no onStatus for a refused publish in {d:?}"),
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            info.get("code").and_then(|v| v.as_str()),
            Some("NetStream.Publish.Rejected"),
            "{info:?}"
        );
        assert_eq!(
            info.get("description").and_then(|v| v.as_str()),
            Some("Unknown stream key other.")
        );
    });

    finish_players(&mut [(&mut ff, &ff_out), (&mut rd, &rd_out)], 10);
    publisher.interrupt();
    let _ = publisher.finish(Duration::from_secs(10));
}
