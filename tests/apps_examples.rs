//! The README's "Deploy an app in under five minutes" and "Write one" as a test, so they cannot
//! rot: `examples/apps/*/app.toml` as shipped, `examples/hello-guest` built and deployed, and the
//! walkthrough's ffmpeg / rtmpdump commands.

mod apps;
mod common;
mod gateway;

use std::time::Duration;

use apps::*;
use common::*;
use serde_json::json;
use wasmgate::apps::json::amf_to_json;
use wasmgate::rtmp::amf::Amf0Value;

fn example_toml(app: &str) -> String {
    let path = manifest_dir()
        .join("examples")
        .join("apps")
        .join(app)
        .join("app.toml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn readme_walkthrough_and_hello_guest() {
    ensure_tools();
    // `--apps apps`, as in the walkthrough: a path relative to the working directory (cargo
    // runs tests in the package root).
    let tmp = tempfile::tempdir_in(manifest_dir().join("target")).unwrap();
    let apps_dir = tmp
        .path()
        .strip_prefix(manifest_dir())
        .unwrap()
        .join("apps");
    install_app(&apps_dir, "secure", "token-auth", &example_toml("secure"));
    install_app(&apps_dir, "chat", "chat", &example_toml("chat"));
    let gw = gateway_with_apps(&apps_dir, |_| {});
    let loaded = || {
        let mut v: Vec<String> = gw
            .core()
            .apps()
            .list()
            .into_iter()
            .map(|a| a.name)
            .collect();
        v.sort();
        v
    };
    assert_eq!(loaded(), ["chat", "secure"]);
    // "Write one": copying the module into the running gateway's apps folder deploys it.
    install_app(&apps_dir, "hello", "hello-guest", "");
    assert!(
        wait_until(Duration::from_secs(10), || loaded().len() == 3),
        "hello-guest was not picked up from a relative apps folder: {:?}",
        loaded()
    );
    let out = tempfile::tempdir().unwrap();

    // ffmpeg -re -i in.flv -c copy -f flv -rtmp_conn S:change-me rtmp://127.0.0.1/secure/key
    let url = gw.url("secure/key");
    let mut publisher =
        ffmpeg_publish_with(&url, &fixture_flv_long(), &["-rtmp_conn", "S:change-me"]);
    assert!(
        wait_until(Duration::from_secs(20), || gw.publishing() == 1),
        "the walkthrough's publish did not start:\n{}",
        publisher.stderr()
    );
    // rtmpdump -v -r rtmp://127.0.0.1/secure/key -C S:change-me -o out.flv
    let rd_out = out.path().join("out.flv");
    let mut rd = rtmpdump_play_with(&url, &rd_out, 3, &["-C", "S:change-me"]);
    // A wrong token is refused with the guest's reason, which ffmpeg prints.
    let mut wrong = ffmpeg_publish_with(
        &gw.url("secure/other"),
        &fixture_flv(),
        &["-rtmp_conn", "S:wrong"],
    );
    assert!(!wrong.finish(Duration::from_secs(20)).success());
    assert!(
        wrong.stderr().contains("Invalid token."),
        "{}",
        wrong.stderr()
    );

    // examples/hello-guest: publishing only under `live-`, `hello` answers.
    let mut denied = ffmpeg_publish(&gw.url("hello/cam"), &fixture_flv());
    assert!(!denied.finish(Duration::from_secs(20)).success());
    assert!(
        denied
            .stderr()
            .contains("Stream names must start with live-."),
        "{}",
        denied.stderr()
    );
    let (mut c, reply) = RtmpClient::connect(gw.addr, "hello", &[]);
    assert_eq!(reply.name, "_result");
    let answer = c.call_wait("hello", &[Amf0Value::string("hi")]);
    assert_eq!(answer.name, "_result", "{answer:?}");
    let value = amf_to_json(&answer.args[0]);
    assert_eq!(value["greeting"], "hello");
    assert_eq!(value["args"], json!(["hi"]));

    rd.finish(Duration::from_secs(30));
    assert_video_packets(&rd_out, 10);
    publisher.interrupt();
    let _ = publisher.finish(Duration::from_secs(10));
}
