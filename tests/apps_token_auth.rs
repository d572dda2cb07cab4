//! The `token-auth` sample guest end to end with ffmpeg and rtmpdump: the right token connects,
//! publishes and plays; a wrong or missing token is rejected with the reason the client shows.

mod apps;
mod common;
mod gateway;

use std::time::{Duration, Instant};

use apps::*;
use common::*;
use wasmgate::rtmp::amf::Amf0Value;

const TOML: &str = "[settings]\ntokens = [\"s3cret\", \"other\"]\n";

#[test]
fn right_token_streams_wrong_token_is_rejected_ffmpeg_rtmpdump() {
    ensure_tools();
    let apps_dir = tempfile::tempdir().unwrap();
    install_app(apps_dir.path(), "secure", "token-auth", TOML);
    let gw = gateway_with_apps(apps_dir.path(), |_| {});
    let out = tempfile::tempdir().unwrap();
    let url = gw.url("secure/cam1");

    let mut publisher = ffmpeg_publish_with(&url, &fixture_flv_long(), &["-rtmp_conn", "S:s3cret"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        publisher.is_running(),
        "publisher with the right token stopped:\n{}",
        publisher.stderr()
    );

    // Right token: ffmpeg and rtmpdump receive the stream.
    let ff_out = out.path().join("ff.flv");
    let mut ff = ffmpeg_play_with(&url, &ff_out, 3.0, &["-rtmp_conn", "S:other"]);
    let rd_out = out.path().join("rd.flv");
    let mut rd = rtmpdump_play_with(&url, &rd_out, 4, &["-C", "S:s3cret"]);

    // Wrong token: ffmpeg's publish is refused and it prints the reason.
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

    // Missing token: rtmpdump is refused; librtmp prints only "rtmp server sent error" unless
    // verbose (-V), where it dumps the `_error` info object with our description.
    let mut bad_rd = rtmpdump_play_with(&url, &out.path().join("bad.flv"), 2, &["-V"]);
    let st = bad_rd.finish(Duration::from_secs(20));
    assert!(!st.success());
    let err = bad_rd.stderr();
    assert!(
        err.contains("Missing token."),
        "rtmpdump stderr lacks the reason:\n{err}"
    );

    finish_players(&mut [(&mut ff, &ff_out), (&mut rd, &rd_out)], 10);
    publisher.interrupt();
    let _ = publisher.finish(Duration::from_secs(10));
}

#[test]
fn token_in_stream_query_and_connect_is_async() {
    let apps_dir = tempfile::tempdir().unwrap();
    install_app(
        apps_dir.path(),
        "q",
        "token-auth",
        "[settings]\ntokens = [\"t1\"]\nconnect_token = \"optional\"\n",
    );
    install_app(apps_dir.path(), "strict", "token-auth", TOML);
    install_app(
        apps_dir.path(),
        "slow",
        "token-auth",
        "[settings]\ntokens = [\"t1\"]\ndecide_after_ms = 400\n",
    );
    let gw = gateway_with_apps(apps_dir.path(), |_| {});

    // Pending connects: the app answers `pending` and decides 400 ms later from a timer
    // (async auth). Both clients wait at the same time; neither blocks the other.
    let started = Instant::now();
    let addr = gw.addr;
    let other =
        std::thread::spawn(move || RtmpClient::connect(addr, "slow", &[Amf0Value::string("t1")]).1);
    let (_, reply) = RtmpClient::connect(gw.addr, "slow", &[Amf0Value::string("bad")]);
    assert_eq!(reply.name, "_error");
    assert_eq!(description(&reply), "Invalid token.");
    let reply = other.join().unwrap();
    assert_eq!(reply.name, "_result");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(2000),
        "{took:?}"
    );

    // Our own client: connect with the token as the first extra argument.
    let (mut c, reply) = RtmpClient::connect(gw.addr, "strict", &[Amf0Value::string("s3cret")]);
    assert_eq!(reply.name, "_result");
    assert!(c.is_open(Duration::from_millis(100)));
    let (_, reply) = RtmpClient::connect(gw.addr, "strict", &[Amf0Value::string("bad")]);
    assert_eq!(reply.name, "_error");
    assert_eq!(description(&reply), "Invalid token.");
    let started = Instant::now();
    let (_, reply) = RtmpClient::connect(gw.addr, "strict?token=other", &[]);
    assert_eq!(
        reply.name, "_result",
        "token in the connect query: {reply:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    // connect_token = optional: the stream name's query carries it (ffmpeg play).
    ensure_tools();
    let out = tempfile::tempdir().unwrap();
    let mut publisher = ffmpeg_publish(&gw.url("q/s?token=t1"), &fixture_flv_long());
    std::thread::sleep(Duration::from_millis(1500));
    assert!(publisher.is_running(), "{}", publisher.stderr());
    let f = out.path().join("q.flv");
    let mut player = ffmpeg_play(&gw.url("q/s?token=t1"), &f, 2.0);
    player.finish(Duration::from_secs(30));
    assert!(
        ffprobe_packets(&f)
            .iter()
            .filter(|p| p.stream_type == "video")
            .count()
            >= 10
    );
    let mut denied = ffmpeg_play(&gw.url("q/s?token=zzz"), &out.path().join("d.flv"), 2.0);
    denied.finish(Duration::from_secs(30));
    assert!(
        denied.stderr().contains("Invalid token."),
        "{}",
        denied.stderr()
    );
    publisher.interrupt();
    let _ = publisher.finish(Duration::from_secs(10));

    let apps = gw.core().apps().list();
    let strict = apps.iter().find(|a| a.name == "strict").unwrap();
    assert_eq!(strict.digest.len(), 64);
    assert!(strict.events >= 3);
    assert_eq!(strict.traps, 0);
}
