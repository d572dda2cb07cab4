//! HTTP-FLV and WebSocket-FLV end to end: ffmpeg plays `http://…/app/stream.flv` and a
//! tokio-tungstenite client reads `ws://…/app/stream.flv` from the HTTP listener and from the RTMP
//! port (sniffed `GET`); curl sees a chunked `video/x-flv` body and readable refusals; an
//! operator kick ends a viewer; the token-auth guest gates viewers by `?token=`.

mod apps;
mod common;
mod gateway;
mod ws;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use gateway::{Gateway, wait, write_cert};
use ws::{tag_heads, ws_read, wss_read};

/// Publishes the long fixture to `path` and waits until the gateway has it.
fn publish(gw: &Gateway, path: &str, extra: &[&str]) -> Proc {
    let p = ffmpeg_publish_with(&gw.url(path), &fixture_flv_long(), extra);
    assert!(
        wait(Duration::from_secs(15), || gw.publishing() >= 1),
        "publisher never started: {}",
        p.stderr()
    );
    // Past the first keyframe, so a viewer's preamble has the sequence headers.
    std::thread::sleep(Duration::from_millis(500));
    p
}

/// `curl -sS -D - URL` for at most `secs`: (exit code, headers and body).
fn curl(url: &str, secs: f64, body: &Path) -> (Option<i32>, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-D", "-", "-o"])
        .arg(body)
        .args(["--max-time", &secs.to_string(), url]);
    let out = run_capture(cmd, Duration::from_secs_f64(secs + 10.0));
    (out.status.and_then(|s| s.code()), out.stdout)
}

/// The ids of `transport` viewers in the client table.
fn viewers(gw: &Gateway, transport: &str) -> Vec<u64> {
    gw.core()
        .clients()
        .list()
        .iter()
        .filter(|c| c.transport == transport)
        .map(|c| c.id)
        .collect()
}

fn http_viewers(gw: &Gateway) -> Vec<u64> {
    viewers(gw, "http-flv")
}

fn ws_viewers(gw: &Gateway) -> Vec<u64> {
    viewers(gw, "ws-flv")
}

fn flv_url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}/{path}")
}

#[test]
fn ffmpeg_plays_http_flv_from_the_http_listener_and_the_rtmp_port() {
    ensure_tools();
    let gw = Gateway::start();
    let dir = tempfile::tempdir().unwrap();
    let mut publisher = publish(&gw, "live/cam", &[]);
    let outs = [
        dir.path().join("http.flv"),
        dir.path().join("rtmp-port.flv"),
    ];
    let mut players = [
        ffmpeg_play(&flv_url(gw.http_addr(), "live/cam.flv"), &outs[0], 3.0),
        ffmpeg_play(&flv_url(gw.addr, "live/_definst_/cam.flv"), &outs[1], 3.0),
    ];
    assert!(
        wait(Duration::from_secs(10), || http_viewers(&gw).len() == 2),
        "viewers in the client table: {:?}",
        http_viewers(&gw)
    );
    for (p, out) in players.iter_mut().zip(&outs) {
        let status = p.finish(Duration::from_secs(40));
        assert!(
            status.success(),
            "ffmpeg failed on {}: {}",
            out.display(),
            p.stderr()
        );
        let packets = assert_av_file(out);
        assert!(first_video_is_keyframe(&packets), "{}", out.display());
        assert_monotonic(&packets);
    }
    assert!(wait(Duration::from_secs(5), || http_viewers(&gw).is_empty()));
    assert!(
        publisher.is_running(),
        "publisher died: {}",
        publisher.stderr()
    );
}

#[test]
fn curl_sees_chunked_flv_refusals_name_their_reason_and_a_kick_ends_a_viewer() {
    ensure_tools();
    let gw = Gateway::start();
    let dir = tempfile::tempdir().unwrap();
    let _publisher = publish(&gw, "live/cam", &[]);
    let body = dir.path().join("body");

    // curl gives up at --max-time (exit 28): the body never ends while the stream is live.
    let (code, head) = curl(&flv_url(gw.http_addr(), "live/cam.flv?x=1"), 2.0, &body);
    assert_eq!(code, Some(28), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 200"), "{head}");
    for h in [
        "content-type: video/x-flv",
        "transfer-encoding: chunked",
        "access-control-allow-origin: *",
    ] {
        assert!(lower.contains(h), "{h} missing from {head}");
    }
    let bytes = std::fs::read(&body).unwrap();
    assert_eq!(&bytes[..4], b"FLV\x01", "not an FLV body");
    assert!(bytes.len() > 50_000, "only {} bytes in 2 s", bytes.len());

    for (path, status, reason) in [
        (
            "live/nope.flv",
            "404",
            "stream live/_definst_/nope is not live",
        ),
        ("live/a/b/c.flv", "404", "not a stream path"),
        ("live/%zz.flv", "404", "bad percent-encoding"),
    ] {
        let (code, head) = curl(&flv_url(gw.http_addr(), path), 5.0, &body);
        assert_eq!(code, Some(0), "{path}: {head}");
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status}")),
            "{path}: {head}"
        );
        let text = std::fs::read_to_string(&body).unwrap();
        assert!(text.contains(reason), "{path}: {text:?}");
    }
    let long = format!("live/cam.flv?{}", "q".repeat(5000));
    let (_, head) = curl(&flv_url(gw.http_addr(), &long), 5.0, &body);
    assert!(head.starts_with("HTTP/1.1 414"), "{head}");
    // Other requests still belong to the tunnel.
    let (_, head) = curl(&flv_url(gw.http_addr(), "open/1"), 5.0, &body);
    assert!(head.starts_with("HTTP/1.1 405"), "{head}");

    // An operator kick ends a viewer's body at once.
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-o"])
        .arg(dir.path().join("kicked"))
        .args(["--max-time", "30", &flv_url(gw.http_addr(), "live/cam.flv")]);
    let mut viewer = Proc::spawn("curl", cmd, vec![(Duration::from_secs(40), Signal::Kill)]);
    assert!(wait(Duration::from_secs(10), || http_viewers(&gw).len() == 1));
    let id = http_viewers(&gw)[0];
    let started = std::time::Instant::now();
    assert!(gw.core().clients().kick(id));
    viewer.finish(Duration::from_secs(20));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the kick did not end the body"
    );
    assert!(wait(Duration::from_secs(5), || http_viewers(&gw).is_empty()));
}

#[test]
fn the_token_auth_guest_gates_http_flv_viewers() {
    ensure_tools();
    let apps_dir = tempfile::tempdir().unwrap();
    apps::install_app(
        apps_dir.path(),
        "secure",
        "token-auth",
        "[settings]\ntokens = [\"s3cret\"]\n",
    );
    let gw = apps::gateway_with_apps(apps_dir.path(), |_| {});
    let dir = tempfile::tempdir().unwrap();
    let _publisher = publish(&gw, "secure/cam", &["-rtmp_conn", "S:s3cret"]);
    let body = dir.path().join("body");

    let (code, head) = curl(&flv_url(gw.http_addr(), "secure/cam.flv"), 5.0, &body);
    assert_eq!(code, Some(0), "{head}");
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let text = std::fs::read_to_string(&body).unwrap();
    assert!(text.contains("Missing token"), "{text:?}");
    let (_, head) = curl(
        &flv_url(gw.http_addr(), "secure/cam.flv?token=nope"),
        5.0,
        &body,
    );
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");

    let ws = |q: &str| {
        ws_read(
            &format!("ws://{}/secure/cam.flv{q}", gw.http_addr()),
            1.0,
            || {},
        )
    };
    let (status, why) = ws("?token=nope").err().expect("a bad token was upgraded");
    assert_eq!(status, 403, "{why}");
    let read = ws("?token=s3cret").expect("the right token was refused");
    assert!(!read.messages.is_empty());

    let out = dir.path().join("ok.flv");
    let mut ok = ffmpeg_play(
        &flv_url(gw.http_addr(), "secure/cam.flv?token=s3cret"),
        &out,
        2.0,
    );
    let status = ok.finish(Duration::from_secs(40));
    assert!(status.success(), "{}", ok.stderr());
    assert_av_file(&out);
}

#[test]
fn a_websocket_client_reads_flv_tags_that_ffprobe_decodes_from_both_ports() {
    ensure_tools();
    let gw = Gateway::start();
    let dir = tempfile::tempdir().unwrap();
    let publisher = publish(&gw, "live/cam", &[]);
    for (n, url) in [
        format!("ws://{}/live/cam.flv", gw.http_addr()),
        format!("ws://{}/live/_definst_/cam.flv?x=1", gw.addr),
    ]
    .iter()
    .enumerate()
    {
        let read = ws_read(url, 3.0, || {
            assert!(wait(Duration::from_secs(5), || ws_viewers(&gw).len() == 1));
        })
        .unwrap_or_else(|e| panic!("{url} refused: {e:?}"));
        assert!(read.close.is_none(), "{url} closed early: {:?}", read.close);
        let (first, tags) = read.messages.split_first().expect("no messages");
        assert_eq!(&first[..4], b"FLV\x01", "{url}: no FLV header first");
        let heads = tag_heads(tags);
        assert!(heads.iter().any(|h| h.0 == 9) && heads.iter().any(|h| h.0 == 8));
        assert!(heads.len() > 100, "{url}: only {} tags in 3 s", heads.len());
        let file = dir.path().join(format!("ws-{n}.flv"));
        std::fs::write(&file, read.messages.concat()).unwrap();
        let packets = assert_av_file(&file);
        assert!(first_video_is_keyframe(&packets), "{url}");
        assert_monotonic(&packets);
        assert!(wait(Duration::from_secs(5), || ws_viewers(&gw).is_empty()));
    }
    drop(publisher);
}

#[test]
fn websocket_refusals_name_their_reason_and_a_kick_closes_the_socket() {
    ensure_tools();
    let gw = Gateway::start();
    let dir = tempfile::tempdir().unwrap();
    let _publisher = publish(&gw, "live/cam", &[]);

    let err = ws_read(
        &format!("ws://{}/live/nope.flv", gw.http_addr()),
        1.0,
        || {},
    )
    .err();
    let (status, body) = err.expect("an unknown stream was upgraded");
    assert_eq!(status, 404);
    assert!(body.contains("is not live"), "{body:?}");

    // An upgrade without its key is a 400 that says what is missing.
    let body = dir.path().join("body");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-D", "-", "-o"]).arg(&body).args([
        "-H",
        "Upgrade: websocket",
        "-H",
        "Connection: Upgrade",
        "-H",
        "Sec-WebSocket-Version: 13",
        &flv_url(gw.http_addr(), "live/cam.flv"),
    ]);
    let out = run_capture(cmd, Duration::from_secs(15));
    assert!(out.stdout.starts_with("HTTP/1.1 400"), "{}", out.stdout);
    let text = std::fs::read_to_string(&body).unwrap();
    assert!(text.contains("Sec-WebSocket-Key"), "{text:?}");

    let url = format!("ws://{}/live/cam.flv", gw.http_addr());
    let started = std::time::Instant::now();
    let read = ws_read(&url, 30.0, || {
        assert!(wait(Duration::from_secs(5), || ws_viewers(&gw).len() == 1));
        assert!(gw.core().clients().kick(ws_viewers(&gw)[0]));
    })
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the kick did not close the socket"
    );
    assert_eq!(read.close.as_deref(), Some("stream ended"));
    assert!(wait(Duration::from_secs(5), || ws_viewers(&gw).is_empty()));
}

#[test]
fn https_and_wss_flv_play_from_a_tls_port() {
    ensure_tools();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_cert(dir.path());
    let mut config = wasmgate::config::Config::default();
    config.tls.cert = Some(cert.clone());
    config.tls.key = Some(key);
    let gw = Gateway::start_with(config);
    let _publisher = publish(&gw, "live/cam", &[]);

    let out = dir.path().join("https.flv");
    let mut p = ffmpeg_play(
        &format!("https://127.0.0.1:{}/live/cam.flv", gw.http_addr().port()),
        &out,
        3.0,
    );
    let read = wss_read(gw.addr, "live/cam.flv", &cert, 3.0);
    assert!(read.close.is_none(), "closed early: {:?}", read.close);
    let (first, tags) = read.messages.split_first().expect("no messages over wss");
    assert_eq!(&first[..4], b"FLV\x01");
    assert!(tag_heads(tags).len() > 100, "too few tags over wss");
    let status = p.finish(Duration::from_secs(40));
    assert!(status.success(), "ffmpeg over https failed: {}", p.stderr());
    let packets = assert_av_file(&out);
    assert!(first_video_is_keyframe(&packets));
}
