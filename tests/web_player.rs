//! The player page (`GET /` on the HTTP listeners): the page, its scripts and `/streams.json`
//! are served with their types and validators, `http.player_page = false` answers 404 there
//! while RTMPT keeps working, and headless Debian chromium (playwright-core,
//! `tests/dashboard/player.mjs`) plays a live ffmpeg stream on the page over each browser
//! transport, its video clock advancing and frames decoded, with a screenshot in
//! `target/test-artifacts/web-player-<transport>.png`.
//!
//! Glass-to-glass latency: the published video carries the publisher's wall clock twice, as
//! text (ffmpeg `drawtext`, for people) and as a strip of 40 black/white blocks across the top
//! (`geq`, for machines: sync bits, Unix ms mod 2^32, a nibble checksum). The page draws every
//! displayed frame to a canvas, reads the strip back and subtracts it from `Date.now()`; the
//! test prints p50/p90/max per transport. Same machine, same clock: no offset to correct.

mod common;
mod gateway;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use gateway::{Gateway, wait};
use wasmgate::config::Config;

/// The transports the page offers that the gateway serves.
const TRANSPORTS: &[&str] = &["http-flv", "ws-flv", "ll-hls"];

/// The client-table transport of a viewer playing over `transport`, where it has one.
fn client_label(transport: &str) -> Option<&'static str> {
    match transport {
        "http-flv" => Some("http-flv"),
        "ws-flv" => Some("ws-flv"),
        "ll-hls" => Some("hls"),
        _ => None,
    }
}

/// Seconds of playback watched per transport once the video plays.
const WATCH_SECS: u32 = 8;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf";

/// `geq` luma of the clock strip at pixel `X` of a frame whose time `T` is the wall clock in
/// seconds (the pts was set to `RTCTIME`): the layout `assets/player/page.js` decodes. White =
/// 1: blocks 0-3 are 1010, 4-35 the Unix time in ms mod 2^32 (most significant bit first),
/// 36-39 the sum of its eight nibbles mod 16; `ld(0)` is the value, `ld(1)` the block. The
/// README's ffmpeg command reads the same file.
const STRIP_LUMA: &str = include_str!("player-clock-strip.expr");

/// ffmpeg publishing a live test picture (640x360, 25 fps, H.264 main, a keyframe every
/// second, zerolatency) and a sine (AAC) to `url`, the wall clock burned in as text and as the
/// clock strip, until killed (at most five minutes).
fn publish_clock(url: &str) -> Proc {
    ensure_tools();
    let graph = format!(
        "[0:v]format=yuv420p,settb=AVTB,setpts=RTCTIME,split[m][s];\
         [s]crop=iw:iw/40:0:0,geq=lum='{strip}':cb=128:cr=128[strip];\
         [m][strip]overlay=0:0,\
         drawtext=fontfile={FONT}:text='%{{localtime\\:%T}}.%{{eif\\:mod(t*1000\\,1000)\\:d\\:3}}':\
         x=16:y=40:fontsize=40:fontcolor=white:box=1:boxcolor=black@0.6,\
         setpts=N/FRAME_RATE/TB[v]",
        strip = STRIP_LUMA.trim()
    );
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "warning"])
        .args(["-re", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25"])
        .args([
            "-re",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100",
        ])
        .args(["-filter_complex", &graph, "-map", "[v]", "-map", "1:a"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-tune",
            "zerolatency",
        ])
        .args(["-profile:v", "main", "-pix_fmt", "yuv420p", "-b:v", "1500k"])
        .args(["-g", "25", "-keyint_min", "25", "-sc_threshold", "0"])
        .args(["-c:a", "aac", "-b:a", "64k"])
        .args(["-f", "flv", url]);
    Proc::spawn(
        "ffmpeg-clock",
        cmd,
        vec![(Duration::from_secs(300), Signal::Kill)],
    )
}

/// `curl -sS -D - -o BODY [-H HEADER] [-X METHOD] URL`: (exit code, response head).
fn curl(url: &str, body: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-D", "-", "-o"])
        .arg(body)
        .args(["--max-time", "5"])
        .args(extra)
        .arg(url);
    let out = run_capture(cmd, Duration::from_secs(15));
    (out.status.and_then(|s| s.code()), out.stdout)
}

/// The value of header `name` in `head` (case-insensitive name).
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

fn status(head: &str) -> &str {
    head.split_whitespace().nth(1).unwrap_or("")
}

#[test]
fn page_scripts_and_stream_list_are_served_and_player_page_false_is_404() {
    ensure_tools();
    let gw = Gateway::start();
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    let base = format!("http://{}", gw.http_addr());
    let mut publishers = [
        ffmpeg_publish(&gw.url("live/cam"), &fixture_flv_long()),
        ffmpeg_publish(&gw.url("live/room1/cam2"), &fixture_flv_long()),
    ];
    assert!(
        wait(Duration::from_secs(15), || gw.publishing() == 2),
        "publishers never started: {}",
        publishers[0].stderr()
    );

    // The page names its scripts with their versions; both answer with types and validators.
    let (code, head) = curl(&format!("{base}/"), &body, &[]);
    assert_eq!((code, status(&head)), (Some(0), "200"), "{head}");
    assert_eq!(
        header(&head, "content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(header(&head, "cache-control").as_deref(), Some("no-cache"));
    assert!(header(&head, "content-security-policy").is_some(), "{head}");
    let html = std::fs::read_to_string(&body).unwrap();
    for script in ["mpegts.js", "hls.min.js", "page.js"] {
        let at = html
            .find(&format!("/player/{script}?v="))
            .unwrap_or_else(|| panic!("page does not load {script}: {html}"));
        let src = &html[at..html[at..].find('"').map(|e| at + e).unwrap()];
        let (code, head) = curl(&format!("{base}{src}"), &body, &[]);
        assert_eq!((code, status(&head)), (Some(0), "200"), "{src}: {head}");
        assert_eq!(
            header(&head, "content-type").as_deref(),
            Some("text/javascript; charset=utf-8"),
            "{src}"
        );
        assert_eq!(
            header(&head, "cache-control").as_deref(),
            Some("public, max-age=86400")
        );
        assert_eq!(
            header(&head, "x-content-type-options").as_deref(),
            Some("nosniff")
        );
        let etag = header(&head, "etag").expect("an ETag");
        // `?v=` is the ETag, so a new build's page asks for new scripts.
        assert!(src.ends_with(etag.trim_matches('"')), "{src} vs {etag}");
        let js = std::fs::read(&body).unwrap();
        assert!(js.len() > 1000, "{src}: {} bytes", js.len());
        let (_, head) = curl(
            &format!("{base}{src}"),
            &body,
            &["-H", &format!("If-None-Match: {etag}")],
        );
        assert_eq!(status(&head), "304", "{src}: {head}");
    }
    let expected = [
        (
            "mpegts.js",
            include_bytes!("../assets/player/vendor/mpegts.js").len(),
        ),
        (
            "hls.min.js",
            include_bytes!("../assets/player/vendor/hls.min.js").len(),
        ),
    ];
    for (file, len) in expected {
        curl(&format!("{base}/player/{file}"), &body, &[]);
        assert_eq!(
            std::fs::metadata(&body).unwrap().len() as usize,
            len,
            "{file}"
        );
    }
    let (_, head) = curl(&format!("{base}/player/LICENSE.hls.js.txt"), &body, &[]);
    assert_eq!(
        header(&head, "content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert!(
        std::fs::read_to_string(&body)
            .unwrap()
            .contains("Apache License")
    );
    let (_, head) = curl(&format!("{base}/player/nope.js"), &body, &[]);
    assert_eq!(status(&head), "404", "{head}");

    // The list: what a viewer plays, no addresses; its URLs play.
    let (_, head) = curl(&format!("{base}/streams.json"), &body, &[]);
    assert_eq!(status(&head), "200", "{head}");
    assert_eq!(
        header(&head, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(header(&head, "cache-control").as_deref(), Some("no-store"));
    let text = std::fs::read_to_string(&body).unwrap();
    assert!(!text.contains("127.0.0.1"), "addresses in the list: {text}");
    let list: serde_json::Value = serde_json::from_str(&text).unwrap();
    let streams = list["streams"].as_array().expect("a streams array");
    assert_eq!(streams.len(), 2, "{text}");
    let cam = serde_json::json!({
        "app": "live", "instance": "_definst_", "name": "cam", "video": "h264", "audio": "aac",
        "http_flv": "/live/cam.flv", "ws_flv": "/live/cam.flv",
        "ll_hls": "/live/cam/index.m3u8",
    });
    let cam2 = serde_json::json!({
        "app": "live", "instance": "room1", "name": "cam2", "video": "h264", "audio": "aac",
        "http_flv": "/live/room1/cam2.flv", "ws_flv": "/live/room1/cam2.flv",
        "ll_hls": "/live/room1/cam2/index.m3u8",
    });
    assert_eq!(streams[0], cam, "{text}");
    assert_eq!(streams[1], cam2, "{text}");
    for s in streams {
        let url = format!("{base}{}", s["http_flv"].as_str().unwrap());
        let (_, head) = curl(&url, &body, &["--max-time", "1"]);
        assert_eq!(status(&head), "200", "{url}: {head}");
        assert_eq!(std::fs::read(&body).unwrap()[..4], *b"FLV\x01", "{url}");
    }
    // RTMPT's requests are not the page's.
    let (_, head) = curl(&format!("{base}/open/1"), &body, &["-X", "POST"]);
    assert_eq!(status(&head), "200", "RTMPT open: {head}");

    // Turned off: 404 on the page's paths, the tunnel and HTTP-FLV untouched.
    let mut config = Config::default();
    config.http.player_page = false;
    let off = Gateway::start_with(config);
    let off_base = format!("http://{}", off.http_addr());
    let _publisher = ffmpeg_publish(&off.url("live/cam"), &fixture_flv_long());
    assert!(wait(Duration::from_secs(15), || off.publishing() == 1));
    for path in ["/", "/streams.json", "/player/mpegts.js", "/player/page.js"] {
        let (code, head) = curl(&format!("{off_base}{path}"), &body, &[]);
        assert_eq!((code, status(&head)), (Some(0), "404"), "{path}: {head}");
        let text = std::fs::read_to_string(&body).unwrap();
        assert!(text.contains("http.player_page = false"), "{path}: {text}");
    }
    let (_, head) = curl(&format!("{off_base}/open/1"), &body, &["-X", "POST"]);
    assert_eq!(status(&head), "200", "RTMPT open with the page off: {head}");
    std::thread::sleep(Duration::from_millis(500));
    let (_, head) = curl(
        &format!("{off_base}/live/cam.flv"),
        &body,
        &["--max-time", "1"],
    );
    assert_eq!(status(&head), "200", "HTTP-FLV with the page off: {head}");
    for p in &mut publishers {
        assert!(p.is_running(), "publisher died: {}", p.stderr());
    }
}

#[test]
fn chromium_plays_live_streams_on_the_page_and_measures_glass_to_glass_latency() {
    ensure_tools();
    ensure_dashboard_deps();
    let gw = Gateway::start();
    let mut publisher = publish_clock(&gw.url("live/clock"));
    assert!(
        wait(Duration::from_secs(20), || gw.publishing() == 1),
        "the clock publisher never started: {}",
        publisher.stderr()
    );
    let artifacts = manifest_dir().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();

    let mut figures = Vec::new();
    for transport in TRANSPORTS {
        let shot = artifacts.join(format!("web-player-{transport}.png"));
        let _ = std::fs::remove_file(&shot);
        let mut cmd = Command::new("node");
        cmd.arg(manifest_dir().join("tests/dashboard/player.mjs"))
            .arg(format!("http://{}/", gw.http_addr()))
            .arg("live/_definst_/clock")
            .arg(transport)
            .arg(&shot)
            .arg(WATCH_SECS.to_string());
        let browser = std::thread::spawn(move || run_capture(cmd, Duration::from_secs(120)));
        // The page's viewer is in the client table under the transport it picked.
        let label = client_label(transport);
        let mut seen = label.is_none();
        while !browser.is_finished() {
            seen |= label.is_some_and(|l| gw.transports().contains(&l));
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = browser.join().unwrap();
        let result: serde_json::Value =
            serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| {
                panic!(
                    "{transport}: no JSON from player.mjs ({e}, {:?}):\n{}\n{}",
                    out.status, out.stdout, out.stderr
                )
            });
        eprintln!("{transport}: {result:#}");
        assert!(
            out.success(),
            "{transport}: the page did not play ({:?}): {result:#}\n{}\n{}",
            out.status,
            out.stderr,
            publisher.stderr()
        );
        assert!(
            seen,
            "{transport}: no {label:?} viewer in the client table while the page played"
        );
        let (start, end) = (&result["start"], &result["end"]);
        let num = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
        let advanced = num(&end["current_time"]) - num(&start["current_time"]);
        let decoded = num(&end["frames"]) - num(&start["frames"]);
        // The clock runs near real time (liveSync may play up to 1.2x to catch up).
        let watched = (num(&end["at"]) - num(&start["at"])) / 1000.0;
        assert!(
            advanced > watched * 0.6 && advanced < watched * 1.5,
            "{transport}: currentTime advanced {advanced:.2} s in {watched:.2} s: {result:#}"
        );
        // 25 fps: most frames of the interval decoded.
        assert!(
            decoded > watched * 25.0 * 0.6,
            "{transport}: {decoded} frames decoded in {watched:.2} s: {result:#}"
        );
        assert_eq!(
            (end["width"].as_u64(), end["height"].as_u64()),
            (Some(640), Some(360))
        );
        let png = std::fs::read(&shot).expect("screenshot kept");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);

        let lat = &result["latency_ms"];
        let count = lat["count"].as_u64().unwrap_or(0);
        assert!(
            count as f64 > watched * 25.0 * 0.5,
            "{transport}: the clock strip was read on {count} frames: {result:#}"
        );
        let (p50, max) = (num(&lat["p50"]), num(&lat["max"]));
        assert!(
            num(&lat["min"]) > 0.0 && max < 30_000.0,
            "{transport}: implausible glass-to-glass latency: {lat}"
        );
        figures.push((transport, count, p50, num(&lat["p90"]), max));
    }
    eprintln!("glass-to-glass latency (ffmpeg clock strip -> gateway -> chromium canvas):");
    for (transport, count, p50, p90, max) in &figures {
        eprintln!(
            "  {transport:9} p50 {p50:5.0} ms  p90 {p90:5.0} ms  max {max:5.0} ms  ({count} frames)"
        );
    }
    assert!(
        publisher.is_running(),
        "publisher died: {}",
        publisher.stderr()
    );
}
