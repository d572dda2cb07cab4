//! LL-HLS end to end: ffmpeg publishes H.264/AAC over RTMP; ffmpeg and ffprobe play
//! `http://…/live/<key>/index.m3u8` from the HTTP listener and from the RTMP port (sniffed
//! `GET`); curl checks blocking playlist reload and blocking part requests, the refusals and
//! their reasons; the admin API lists the viewer with transport `hls` and a kick through it
//! ends the session; the token-auth guest gates viewers by `?token=`.

mod apps;
mod common;
mod gateway;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use gateway::{Gateway, wait};

/// Publishes the long fixture (H.264 25 fps, 1 s GOP, AAC) to `path`.
fn publish(gw: &Gateway, path: &str, extra: &[&str]) -> Proc {
    let p = ffmpeg_publish_with(&gw.url(path), &fixture_flv_long(), extra);
    assert!(
        wait(Duration::from_secs(15), || gw.publishing() >= 1),
        "publisher never started: {}",
        p.stderr()
    );
    std::thread::sleep(Duration::from_millis(500));
    p
}

/// What curl saw: exit code, status line and headers, body, seconds taken.
struct Got {
    code: Option<i32>,
    head: String,
    body: Vec<u8>,
    secs: f64,
}

impl Got {
    fn status(&self) -> u16 {
        self.head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

fn curl(url: &str, extra: &[&str], dir: &Path) -> Got {
    let body = dir.join(format!("body-{}", std::process::id()));
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-D", "-", "-o"])
        .arg(&body)
        .args(["--max-time", "30"])
        .args(extra)
        .arg(url);
    let started = Instant::now();
    let out = run_capture(cmd, Duration::from_secs(40));
    let secs = started.elapsed().as_secs_f64();
    Got {
        code: out.status.and_then(|s| s.code()),
        head: out.stdout,
        body: std::fs::read(&body).unwrap_or_default(),
        secs,
    }
}

fn hls_url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}/{path}")
}

fn hls_clients(gw: &Gateway) -> Vec<u64> {
    gw.core()
        .clients()
        .list()
        .iter()
        .filter(|c| c.transport == "hls")
        .map(|c| c.id)
        .collect()
}

/// Opens a session: the `302` to `index.m3u8?session=…`, and the id.
fn session(addr: SocketAddr, path_and_query: &str, dir: &Path) -> String {
    let g = curl(&hls_url(addr, path_and_query), &[], dir);
    assert_eq!(g.status(), 302, "{}{}", g.head, g.text());
    let loc = g.header("location").expect("a Location");
    assert!(loc.starts_with("index.m3u8?session="), "{loc}");
    loc.trim_start_matches("index.m3u8?session=").to_owned()
}

/// (msn, part) of the playlist's `EXT-X-PRELOAD-HINT`.
fn preload_hint(playlist: &str) -> (u64, u32) {
    let line = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-"))
        .unwrap_or_else(|| panic!("no preload hint in\n{playlist}"));
    let name = line.split("part-").nth(1).unwrap();
    let (msn, rest) = name.split_once('.').unwrap();
    let part = rest.split('.').next().unwrap();
    (msn.parse().unwrap(), part.parse().unwrap())
}

/// Unix ms of the end of part `part` of segment `msn`: its segment's PROGRAM-DATE-TIME plus
/// the durations of the parts before it and its own.
fn part_end_wall_ms(playlist: &str, msn: u64, part: u32) -> Option<f64> {
    let mut pdt: Option<f64> = None;
    let mut elapsed = 0.0;
    for l in playlist.lines() {
        if let Some(t) = l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            pdt = Some(parse_rfc3339_ms(t));
            elapsed = 0.0;
        } else if let Some(p) = l.strip_prefix("#EXT-X-PART:DURATION=") {
            let d: f64 = p.split(',').next()?.parse().ok()?;
            elapsed += d * 1000.0;
            if l.contains(&format!("part-{msn}.{part}.m4s")) {
                return Some(pdt? + elapsed);
            }
        }
    }
    None
}

/// `2026-01-02T03:04:05.678Z` as unix milliseconds.
fn parse_rfc3339_ms(t: &str) -> f64 {
    let n = |a: usize, b: usize| -> i64 { t[a..b].parse().unwrap() };
    let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
    // Days from civil (H. Hinnant), the inverse of the gateway's formatting.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + n(11, 13) * 3600 + n(14, 16) * 60 + n(17, 19);
    secs as f64 * 1000.0 + t[20..23].parse::<f64>().unwrap()
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

/// ffprobe on a URL: `(codec_type, codec_name)` of its streams.
fn ffprobe_url(url: &str) -> Vec<(String, String)> {
    let mut cmd = Command::new("ffprobe");
    cmd.args([
        "-v",
        "error",
        "-show_entries",
        "stream=codec_type,codec_name",
    ])
    .args(["-of", "csv=p=0", url]);
    let out = run_capture(cmd, Duration::from_secs(60));
    assert!(out.success(), "ffprobe {url}: {}", out.stderr);
    out.stdout
        .lines()
        .filter_map(|l| {
            let (name, kind) = l.split_once(',')?;
            Some((kind.trim().to_owned(), name.trim().to_owned()))
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[test]
fn ffmpeg_and_ffprobe_play_ll_hls_from_the_http_listener_and_the_rtmp_port() {
    ensure_tools();
    let gw = Gateway::start();
    let dir = tempfile::tempdir().unwrap();
    let mut publisher = publish(&gw, "live/cam", &[]);

    let streams = ffprobe_url(&hls_url(gw.http_addr(), "live/cam/index.m3u8?probe=1"));
    assert_eq!(
        streams,
        [
            ("audio".to_owned(), "aac".to_owned()),
            ("video".to_owned(), "h264".to_owned())
        ]
    );

    // Distinct queries: two viewers from one address are two sessions.
    let outs = [
        dir.path().join("http.flv"),
        dir.path().join("rtmp-port.flv"),
    ];
    let mut players = [
        ffmpeg_play(
            &hls_url(gw.http_addr(), "live/cam/index.m3u8?v=1"),
            &outs[0],
            6.0,
        ),
        ffmpeg_play(
            &hls_url(gw.addr, "live/_definst_/cam/index.m3u8?v=2"),
            &outs[1],
            6.0,
        ),
    ];
    assert!(
        wait(Duration::from_secs(15), || hls_clients(&gw).len() >= 3),
        "HLS viewers in the client table: {:?}",
        hls_clients(&gw)
    );
    for (p, out) in players.iter_mut().zip(&outs) {
        let status = p.finish(Duration::from_secs(60));
        assert!(
            status.success(),
            "ffmpeg failed on {}: {}",
            out.display(),
            p.stderr()
        );
        let packets = assert_av_file(out);
        assert!(first_video_is_keyframe(&packets), "{}", out.display());
        assert_monotonic(&packets);
        let video = packets.iter().filter(|p| p.stream_type == "video").count();
        // 6 s of 25 fps video, give or take a frame at each end.
        assert!(
            (140..=160).contains(&video),
            "{}: {video} video frames",
            out.display()
        );
        let mut kinds = ffprobe_streams(out);
        kinds.sort();
        kinds.dedup();
        assert_eq!(
            kinds,
            [
                ("audio".to_owned(), "aac".to_owned()),
                ("video".to_owned(), "h264".to_owned())
            ]
        );
    }
    assert!(
        publisher.is_running(),
        "publisher died: {}",
        publisher.stderr()
    );
}

#[test]
fn blocking_reload_parts_refusals_admin_list_and_kick() {
    ensure_tools();
    let gw = Gateway::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let _publisher = publish(&gw, "live/cam", &[]);
    let addr = gw.http_addr();

    let id = session(addr, "live/cam/index.m3u8?x=1", d);
    let base =
        |file: &str, extra: &str| hls_url(addr, &format!("live/cam/{file}?session={id}{extra}"));
    let first = curl(&base("index.m3u8", ""), &[], d);
    assert_eq!(first.status(), 200, "{}", first.text());
    assert_eq!(
        first.header("content-type").as_deref(),
        Some("application/vnd.apple.mpegurl")
    );
    let text = first.text();
    for tag in [
        "#EXT-X-VERSION:9",
        "#EXT-X-TARGETDURATION:2",
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=3.000",
        "#EXT-X-PART-INF:PART-TARGET=1.000",
        "#EXT-X-MAP:URI=\"init-1.mp4?session=",
        "#EXT-X-PROGRAM-DATE-TIME:",
        "#EXTINF:2.000,\nseg-0.m4s?session=",
    ] {
        assert!(text.contains(tag), "{tag} missing from\n{text}");
    }
    // The init segment and a segment are fMP4.
    let init = curl(&base("init-1.mp4", ""), &[], d);
    assert_eq!((init.status(), &init.body[4..8]), (200, b"ftyp".as_slice()));
    let seg = curl(&base("seg-0.m4s", ""), &[], d);
    assert_eq!((seg.status(), &seg.body[4..8]), (200, b"moof".as_slice()));
    // Init + segment is a file ffprobe reads: H.264 and AAC, frames in it.
    let file = d.join("seg0.mp4");
    std::fs::write(&file, [init.body.clone(), seg.body.clone()].concat()).unwrap();
    assert_eq!(ffprobe_streams(&file).len(), 2);
    decodes_cleanly(&file).unwrap();
    assert!(
        ffprobe_packets(&file)
            .iter()
            .filter(|p| p.stream_type == "video")
            .count()
            >= 45
    );

    // Blocking reload: ask for the part the preload hint names; the answer waits for it and
    // lists it. Ten times in a row, timing how soon after its media ends each part is served.
    let mut waited = Vec::new();
    let mut delays = Vec::new();
    let (mut msn, mut part) = preload_hint(&text);
    for _ in 0..10 {
        let g = curl(
            &base("index.m3u8", &format!("&_HLS_msn={msn}&_HLS_part={part}")),
            &[],
            d,
        );
        let served = now_ms();
        assert_eq!(g.status(), 200, "{}", g.text());
        let t = g.text();
        assert!(
            t.contains(&format!("part-{msn}.{part}.m4s?session={id}")),
            "{t}"
        );
        waited.push(g.secs);
        let end = part_end_wall_ms(&t, msn, part).expect("the part and its wall clock");
        delays.push(served - end);
        (msn, part) = preload_hint(&t);
    }
    waited.sort_by(f64::total_cmp);
    delays.sort_by(f64::total_cmp);
    eprintln!("blocking reload waits (s): {waited:.3?}");
    eprintln!(
        "part served after its media end (ms): {delays:.0?}; p50 {:.0}",
        delays[5]
    );
    // 1 s parts: a reload for the next part waits about a part, not a poll interval.
    assert!(waited[5] > 0.3 && waited[9] < 3.0, "{waited:?}");
    // The part is served within half a second of its last frame's end (one frame held back
    // for its duration, ffmpeg's own buffering), never before its media ended.
    assert!(delays[5] < 500.0 && delays[0] > -100.0, "{delays:?}");

    // A blocking part request: the hinted part arrives when it is cut.
    let p = curl(&base(&format!("part-{msn}.{part}.m4s"), ""), &[], d);
    assert_eq!(p.status(), 200, "{}", p.text());
    assert_eq!(p.header("content-type").as_deref(), Some("video/mp4"));
    assert_eq!(&p.body[4..8], b"moof");
    assert!(p.secs > 0.2, "the hinted part did not wait: {}", p.secs);

    // Refusals with their reasons.
    for (url, status, reason) in [
        (
            hls_url(addr, "live/nope/index.m3u8"),
            404,
            "stream live/_definst_/nope is not live",
        ),
        (
            hls_url(addr, "live/../cam/index.m3u8"),
            404,
            "path segments",
        ),
        (
            hls_url(addr, "live/%zz/index.m3u8"),
            404,
            "bad percent-encoding",
        ),
        (
            hls_url(addr, "a/b/c/d/index.m3u8"),
            404,
            "not a stream path",
        ),
        (hls_url(addr, "live/cam/seg-0.m4s"), 403, "no session"),
        (
            hls_url(addr, "live/cam/index.m3u8?session=00ff"),
            403,
            "unknown or expired HLS session",
        ),
        (
            base("index.m3u8", &format!("&_HLS_msn={}", msn + 5)),
            400,
            "too far ahead",
        ),
        (
            base("index.m3u8", "&_HLS_msn=x"),
            400,
            "_HLS_msn=x is not a number",
        ),
        (
            base("index.m3u8", "&_HLS_part=1"),
            400,
            "_HLS_part needs _HLS_msn",
        ),
        (
            base("seg-0.m4s", "").replace("live/cam", "live/other"),
            403,
            "another stream",
        ),
        (base("part-0.0.m4s", ""), 404, "not in the window"),
        (
            format!("{}&{}", base("index.m3u8", ""), "q".repeat(5000)),
            414,
            "query longer",
        ),
    ] {
        let g = curl(&url, &["--path-as-is"], d);
        assert_eq!(g.code, Some(0), "{url}");
        assert_eq!(g.status(), status, "{url}: {}", g.text());
        assert!(g.text().contains(reason), "{url}: {:?}", g.text());
    }
    // RTMPT still owns everything else.
    assert_eq!(curl(&hls_url(addr, "open/1"), &[], d).status(), 405);

    // The viewer is a client: in the admin API with transport hls; a kick there ends it.
    let admin = format!("http://{}/api/v1/clients", gw.admin_addr());
    let list = curl(&admin, &[], d);
    assert_eq!(list.status(), 200, "{}", list.text());
    let clients: serde_json::Value = serde_json::from_slice(&list.body).unwrap();
    let ours: Vec<u64> = clients
        .as_array()
        .or_else(|| clients["clients"].as_array())
        .expect("a list of clients")
        .iter()
        .filter(|c| c["transport"] == "hls")
        .map(|c| c["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ours, hls_clients(&gw));
    assert_eq!(ours.len(), 1, "{}", list.text());
    // Counted in the connection metrics under its transport (the recorder is global to the
    // test process, which runs other gateways at the same time: presence, not exact values).
    let metrics = curl(&format!("http://{}/metrics", gw.admin_addr()), &[], d).text();
    let value = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{")) && l.contains("transport=\"hls\""))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    assert!(value("wasmgate_connections") >= Some(1.0), "{metrics}");
    assert!(
        value("wasmgate_connections_total") >= Some(1.0),
        "{metrics}"
    );
    let kick = curl(&format!("{admin}/{}", ours[0]), &["-X", "DELETE"], d);
    assert!(kick.status() < 300, "{}{}", kick.head, kick.text());
    assert!(wait(Duration::from_secs(5), || hls_clients(&gw).is_empty()));
    let after = curl(&base("index.m3u8", ""), &[], d);
    assert_eq!(after.status(), 403, "{}", after.text());
    assert!(after.text().contains("kicked"), "{}", after.text());
    // A new session from the same viewer is refused too, for a while.
    let again = curl(&hls_url(addr, "live/cam/index.m3u8?x=1"), &[], d);
    assert_eq!(again.status(), 403, "{}", again.text());
    // Another viewer is not.
    assert!(!session(addr, "live/cam/index.m3u8?x=2", d).is_empty());
}

#[test]
fn the_token_auth_guest_gates_hls_viewers() {
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
    let d = dir.path();
    let _publisher = publish(&gw, "secure/cam", &["-rtmp_conn", "S:s3cret"]);
    let addr = gw.http_addr();

    let g = curl(&hls_url(addr, "secure/cam/index.m3u8"), &[], d);
    assert_eq!(g.status(), 403, "{}", g.text());
    assert!(g.text().contains("Missing token"), "{}", g.text());
    let g = curl(&hls_url(addr, "secure/cam/index.m3u8?token=nope"), &[], d);
    assert_eq!(g.status(), 403, "{}", g.text());
    assert!(
        hls_clients(&gw).is_empty(),
        "a refused viewer left an entry"
    );

    let out = d.join("ok.flv");
    let mut ok = ffmpeg_play(
        &hls_url(addr, "secure/cam/index.m3u8?token=s3cret"),
        &out,
        3.0,
    );
    let status = ok.finish(Duration::from_secs(60));
    assert!(status.success(), "{}", ok.stderr());
    assert_av_file(&out);
    assert_eq!(hls_clients(&gw).len(), 1);
}
