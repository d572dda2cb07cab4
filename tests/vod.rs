//! Playing files: rtmpdump with a start and stop time, ffmpeg seeking, an MP4 made by ffmpeg
//! (moov first and last), pause and resume without a repeated or missing frame, missing,
//! refused and damaged files, getStreamLength, and apps deciding VOD plays.

mod apps;
mod common;
mod gateway;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use gateway::Gateway;
use wasmgate::client::{ClientError, RtmpClient};
use wasmgate::config::Config;
use wasmgate::rtmp::amf::Amf0Value;
use wasmgate::rtmp::client::ClientEvent;

/// A gateway serving files from `vod`; the fixture is `vod/vod/_definst_/clip.flv`.
fn vod_gateway(vod: &Path) -> Gateway {
    let folder = vod.join("vod/_definst_");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(fixture_flv(), folder.join("clip.flv")).unwrap();
    let mut cfg = Config::default();
    cfg.media.vod_dir = vod.to_owned();
    Gateway::start_with(cfg)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `rtmpdump -r URL -A start -B stop -o out` (no `-v`: a recorded stream).
fn rtmpdump_file(url: &str, out: &Path, start: u32, stop: u32) -> Captured {
    let mut cmd = Command::new("rtmpdump");
    cmd.args(["-r", url, "-o"]).arg(out).args([
        "-A",
        &start.to_string(),
        "-B",
        &stop.to_string(),
        "-m",
        "20",
    ]);
    run_capture(cmd, Duration::from_secs(60))
}

fn video(packets: &[Packet]) -> Vec<&Packet> {
    packets
        .iter()
        .filter(|p| p.stream_type == "video")
        .collect()
}

#[test]
fn rtmpdump_gets_the_span_it_asks_for_from_a_keyframe() {
    ensure_tools();
    let vod = tempfile::tempdir().unwrap();
    let gw = vod_gateway(vod.path());
    let out = vod.path().join("span.flv");
    let run = rtmpdump_file(&gw.url("vod/clip"), &out, 5, 10);
    let packets = ffprobe_packets(&out);
    let v = video(&packets);
    assert!(!v.is_empty(), "rtmpdump got no video: {}", run.stderr);
    // The gateway sends the file's own timestamps (as ffmpeg's seek needs them); librtmp adds
    // its `-A` start to every timestamp it writes (`m_read.nResumeTS`), so take it off again.
    let first = v[0].pts_time.unwrap() - 5.0;
    let last = v.last().unwrap().pts_time.unwrap() - 5.0;
    assert!(v[0].keyframe, "the first frame is not a keyframe");
    assert!((4.0..=5.0).contains(&first), "starts at {first}");
    assert!(last - first >= 4.0, "{first}..{last}");
    assert!(last <= 10.1, "ran past the stop time: {last}");
}

#[test]
fn ffmpeg_seeks_in_a_file_with_the_seek_command() {
    ensure_tools();
    let vod = tempfile::tempdir().unwrap();
    let gw = vod_gateway(vod.path());
    let out = vod.path().join("seek.flv");
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "info"])
        .args(["-ss", "8", "-i", &gw.url("vod/clip")])
        .args([
            "-frames:v",
            "30",
            "-c",
            "copy",
            "-copyts",
            "-f",
            "flv",
            "-y",
        ])
        .arg(&out);
    let run = run_capture(cmd, Duration::from_secs(60));
    assert!(run.success(), "ffmpeg failed: {}", run.stderr);
    let packets = ffprobe_packets(&out);
    let v = video(&packets);
    assert!(!v.is_empty(), "no video: {}", run.stderr);
    let first = v[0].pts_time.unwrap();
    assert!((7.0..=8.1).contains(&first), "first frame at {first}");
    let seeks = metric(&gw, "wasmgate_vod_seeks_total");
    assert!(seeks >= 1.0, "the gateway saw no seek");
}

/// The value of an unlabelled metric from the admin listener.
fn metric(gw: &Gateway, name: &str) -> f64 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(gw.admin_addr()).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn make_mp4(dir: &Path, name: &str, faststart: bool) -> PathBuf {
    let out = dir.join(name);
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(fixture_flv())
        .args(["-c", "copy"]);
    if faststart {
        cmd.args(["-movflags", "+faststart"]);
    }
    cmd.arg(&out);
    let run = run_capture(cmd, Duration::from_secs(60));
    assert!(
        run.success(),
        "ffmpeg could not make {name}: {}",
        run.stderr
    );
    out
}

fn assert_monotonic(packets: &[Packet]) {
    for kind in ["video", "audio"] {
        let dts: Vec<f64> = packets
            .iter()
            .filter(|p| p.stream_type == kind)
            .filter_map(|p| p.dts_time)
            .collect();
        assert!(dts.len() > 10, "too few {kind} packets");
        assert!(
            dts.windows(2).all(|w| w[0] <= w[1]),
            "{kind} timestamps go back"
        );
    }
}

#[test]
fn mp4_made_by_ffmpeg_plays_through_rtmpdump_and_ffmpeg() {
    ensure_tools();
    let vod = tempfile::tempdir().unwrap();
    let gw = vod_gateway(vod.path());
    let folder = vod.path().join("vod/_definst_");
    make_mp4(&folder, "tail.mp4", false);
    make_mp4(&folder, "head.mp4", true);
    for (name, url) in [
        ("tail", gw.url("vod/mp4:tail.mp4")),
        ("head", gw.url("vod/mp4:head")),
    ] {
        let out = vod.path().join(format!("{name}-rd.flv"));
        let run = rtmpdump_file(&url, &out, 0, 4);
        let packets = ffprobe_packets(&out);
        assert_monotonic(&packets);
        let v = video(&packets);
        assert!(
            v.last().unwrap().pts_time.unwrap() >= 3.0,
            "{name}: {}",
            run.stderr
        );
        let streams = ffprobe_streams(&out);
        assert!(
            streams.iter().any(|(t, c)| t == "video" && c == "h264"),
            "{name}: {streams:?}"
        );
        assert!(
            streams.iter().any(|(t, c)| t == "audio" && c == "aac"),
            "{name}: {streams:?}"
        );
        let out = vod.path().join(format!("{name}-ff.flv"));
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-nostdin", "-hide_banner", "-loglevel", "info", "-i", &url])
            .args(["-t", "4", "-c", "copy", "-f", "flv", "-y"])
            .arg(&out);
        let run = run_capture(cmd, Duration::from_secs(60));
        assert!(run.success(), "{name}: ffmpeg failed: {}", run.stderr);
        assert_monotonic(&ffprobe_packets(&out));
    }
}

/// Plays `name` with our own client; returns (client, stream id).
async fn play(gw: &Gateway, name: &str, start: f64) -> Result<(RtmpClient, u32), ClientError> {
    let mut c = RtmpClient::connect(&gw.url("vod"), vec![]).await?;
    let id = c.start_play(name, start, Duration::from_secs(10)).await?;
    Ok((c, id))
}

/// Media (type, timestamp) until `until` or the end of the play; the end status if one came.
async fn collect(c: &mut RtmpClient, until: Duration, out: &mut Vec<(u8, u32)>) -> Option<String> {
    let end = tokio::time::Instant::now() + until;
    loop {
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        match c.next_event_timeout(left).await {
            Ok(ClientEvent::Media {
                type_id,
                timestamp,
                payload,
                ..
            }) if type_id == 8 || type_id == 9 => {
                // Sequence headers are sent again at every start and seek; count media only.
                if payload.get(1) != Some(&0) {
                    out.push((type_id, timestamp));
                }
            }
            Ok(ClientEvent::Status { info, .. }) => {
                let code = info.get("code").and_then(|v| v.as_str()).unwrap_or("");
                if code == "NetStream.Play.Stop" || code.ends_with("Failed") {
                    return Some(code.to_owned());
                }
            }
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

#[test]
fn pause_and_resume_repeat_and_skip_nothing() {
    ensure_tools();
    let vod = tempfile::tempdir().unwrap();
    let gw = vod_gateway(vod.path());
    rt().block_on(async {
        let (mut c, id) = play(&gw, "clip", 0.0).await.unwrap();
        let mut got = Vec::new();
        collect(&mut c, Duration::from_secs(2), &mut got).await;
        let at = got.iter().map(|m| m.1).max().unwrap();
        c.session().stream_command(
            id,
            "pause",
            &[Amf0Value::Boolean(true), Amf0Value::Number(1500.0)],
        );
        c.flush().await.unwrap();
        c.wait_status(Duration::from_secs(5), |code| {
            code == "NetStream.Pause.Notify"
        })
        .await
        .unwrap();
        let mut while_paused = Vec::new();
        collect(&mut c, Duration::from_secs(2), &mut while_paused).await;
        // What was on the wire when the pause arrived may still come; nothing after that.
        assert!(
            while_paused.iter().all(|m| m.1 <= at + 3500),
            "sent on while paused"
        );
        got.extend(while_paused);
        c.session().stream_command(
            id,
            "pause",
            &[Amf0Value::Boolean(false), Amf0Value::Number(1500.0)],
        );
        c.flush().await.unwrap();
        let end = collect(&mut c, Duration::from_secs(30), &mut got).await;
        assert_eq!(end.as_deref(), Some("NetStream.Play.Stop"));
        // Every frame of the file, once, in order.
        let file = std::fs::read(fixture_flv()).unwrap();
        let expect = flv_media(&file);
        let mut sorted = got.clone();
        sorted.sort_by_key(|m| (m.1, m.0));
        let mut want = expect.clone();
        want.sort_by_key(|m| (m.1, m.0));
        let missing: Vec<_> = want.iter().filter(|m| !sorted.contains(m)).collect();
        let extra: Vec<_> = sorted.iter().filter(|m| !want.contains(m)).collect();
        assert_eq!(
            sorted.len(),
            want.len(),
            "frames repeated or missing: missing {missing:?}, extra {extra:?}"
        );
        assert_eq!(sorted, want);
    });
}

/// (type, timestamp) of the audio and video tags of an FLV file, sequence headers excluded.
fn flv_media(b: &[u8]) -> Vec<(u8, u32)> {
    let mut out = Vec::new();
    let mut pos = 13;
    while pos + 11 <= b.len() {
        let t = b[pos];
        let size = u32::from_be_bytes([0, b[pos + 1], b[pos + 2], b[pos + 3]]) as usize;
        let ts = u32::from_be_bytes([b[pos + 7], b[pos + 4], b[pos + 5], b[pos + 6]]);
        let body = &b[pos + 11..pos + 11 + size];
        let header = match t {
            9 => body.get(1) == Some(&0),
            8 => body.first().is_some_and(|f| f >> 4 == 10) && body.get(1) == Some(&0),
            _ => true,
        };
        if !header && size > 0 {
            out.push((t, ts));
        }
        pos += 11 + size + 4;
    }
    out
}

#[test]
fn missing_refused_and_damaged_files_get_an_error_and_others_play_on() {
    ensure_tools();
    let vod = tempfile::tempdir().unwrap();
    let gw = vod_gateway(vod.path());
    // Cut mid-tag, as a copy in progress or a full disk leaves it; and not video at all.
    let whole = std::fs::read(fixture_flv()).unwrap();
    let folder = vod.path().join("vod/_definst_");
    std::fs::write(folder.join("bad.flv"), &whole[..whole.len() / 2 + 7]).unwrap();
    std::fs::write(folder.join("junk.flv"), b"this is not a video").unwrap();
    rt().block_on(async {
        let (mut good, _) = play(&gw, "clip", 0.0).await.unwrap();
        for (name, want) in [
            ("mp4:nothing.mp4", "NetStream.Play.StreamNotFound"),
            ("nothing", "NetStream.Play.StreamNotFound"),
            ("../../etc/passwd", "NetStream.Play.StreamNotFound"),
            ("flv:../clip", "NetStream.Play.StreamNotFound"),
            ("junk", "NetStream.Play.Failed"),
        ] {
            let mut c = RtmpClient::connect(&gw.url("vod"), vec![]).await.unwrap();
            let id = c.create_stream().await.unwrap();
            c.session().play(id, name, 0.0);
            c.flush().await.unwrap();
            let info = c
                .wait_status(Duration::from_secs(5), |code| {
                    code.starts_with("NetStream.Play.") && code != "NetStream.Play.Reset"
                })
                .await
                .unwrap();
            let code = info.get("code").and_then(|v| v.as_str()).unwrap_or("");
            assert_eq!(code, want, "{name}: {info:?}");
        }
        let (mut c, _) = play(&gw, "bad", 0.0).await.unwrap();
        let mut got = Vec::new();
        let end = collect(&mut c, Duration::from_secs(30), &mut got).await;
        assert_eq!(end.as_deref(), Some("NetStream.Play.Failed"));
        assert!(!got.is_empty(), "what precedes the damage plays");
        // The other player kept playing through all of that.
        let mut other = Vec::new();
        let end = collect(&mut good, Duration::from_secs(30), &mut other).await;
        assert_eq!(end.as_deref(), Some("NetStream.Play.Stop"));
        // getStreamLength answers the file's length.
        let len = good
            .call("getStreamLength", &[Amf0Value::string("clip")])
            .await
            .unwrap()
            .unwrap();
        let secs = len.first().and_then(|v| v.as_f64()).unwrap();
        assert!((11.0..=12.5).contains(&secs), "length {secs}");
    });
}

#[test]
fn apps_decide_file_plays_through_on_play() {
    ensure_tools();
    let apps_dir = tempfile::tempdir().unwrap();
    let vod = tempfile::tempdir().unwrap();
    let folder = vod.path().join("vod/_definst_");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(fixture_flv(), folder.join("clip.flv")).unwrap();
    apps::install_app(
        apps_dir.path(),
        "vod",
        "token-auth",
        "[settings]\ntokens = [\"ok\"]\nconnect_token = \"optional\"\n",
    );
    let gw = apps::gateway_with_apps(apps_dir.path(), |cfg| {
        cfg.media.vod_dir = vod.path().to_owned();
    });
    rt().block_on(async {
        let mut c = RtmpClient::connect(&gw.url("vod"), vec![]).await.unwrap();
        let id = c.create_stream().await.unwrap();
        c.session().play(id, "clip", 0.0);
        c.flush().await.unwrap();
        let info = c
            .wait_status(Duration::from_secs(10), |code| {
                code.starts_with("NetStream.Play.")
            })
            .await
            .unwrap();
        assert_ne!(
            info.get("code").and_then(|v| v.as_str()),
            Some("NetStream.Play.Start"),
            "played without a token"
        );
        let (mut c, _) = play(&gw, "clip?token=ok", 0.0).await.unwrap();
        let mut got = Vec::new();
        collect(&mut c, Duration::from_secs(2), &mut got).await;
        assert!(!got.is_empty());
    });
}

/// A gateway recording every stream, with `live/dvr` published from the 60 s fixture and
/// about 8 s of it on disk (the recorder flushes every second).
fn recorded_live_stream() -> (tempfile::TempDir, Gateway, Proc) {
    ensure_tools();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.media.record = wasmgate::media::RecordMode::All;
    cfg.media.record_dir = dir.path().join("rec");
    cfg.media.vod_dir = dir.path().join("vod");
    let gw = Gateway::start_with(cfg);
    let publisher = ffmpeg_publish(&gw.url("live/dvr"), &fixture_flv_long());
    let part = dir.path().join("rec/live/_definst_/dvr.flv.part");
    assert!(
        wait_until(Duration::from_secs(20), || file_len(&part) > 0),
        "no recording: {}",
        publisher.stderr()
    );
    std::thread::sleep(Duration::from_secs(9));
    (dir, gw, publisher)
}

#[test]
fn dvr_rewinds_into_the_recording_of_a_live_stream_then_goes_on_live() {
    let (dir, gw, mut publisher) = recorded_live_stream();

    // `-rtmp_live recorded` is play(name, 0): from the start of the recording. -copyts keeps
    // the jump to live as the gateway sends it (ffmpeg would otherwise smooth it away).
    let out = dir.path().join("dvr.flv");
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "info", "-copyts"])
        .args(["-rtmp_live", "recorded", "-i", &gw.url("live/dvr")])
        .args(["-frames:v", "320", "-c", "copy", "-f", "flv", "-y"])
        .arg(&out);
    let run = run_capture(cmd, Duration::from_secs(60));
    publisher.kill();
    assert!(run.success(), "ffmpeg failed: {}", run.stderr);
    let packets = ffprobe_packets(&out);
    let v = video(&packets);
    assert!(v.len() >= 300, "{} video frames: {}", v.len(), run.stderr);
    assert!(
        v[0].keyframe,
        "the rewound play does not start at a keyframe"
    );
    let times: Vec<f64> = v.iter().map(|p| p.dts_time.unwrap()).collect();
    assert!(
        times[0] < 1.0,
        "rewound to {} instead of the start",
        times[0]
    );
    assert!(
        times.windows(2).all(|w| w[1] >= w[0]),
        "timestamps run backwards"
    );
    // The recorded part is contiguous, then one jump forward to the live edge.
    let jumps: Vec<usize> = (1..times.len())
        .filter(|&i| times[i] - times[i - 1] > 1.0)
        .collect();
    assert_eq!(
        jumps.len(),
        1,
        "expected one jump to live: {jumps:?} in {times:?}"
    );
    let at = jumps[0];
    assert!(
        times[at - 1] >= 5.0,
        "the recorded part ended at {}",
        times[at - 1]
    );
    assert!(v[at].keyframe, "live does not begin with a keyframe");
    assert!(v.len() - at >= 50, "only {} live frames", v.len() - at);
}

#[test]
fn rtmpdump_rewinds_a_live_stream_with_a_start_time_then_follows_it_live() {
    let (dir, gw, mut publisher) = recorded_live_stream();

    // With a stop (-B, a duration) inside the recording, the play ends there (README, "DVR").
    let span = dir.path().join("dvr-span.flv");
    let run = rtmpdump_file(&gw.url("live/dvr"), &span, 2, 6);
    let packets = ffprobe_packets(&span);
    let v = video(&packets);
    assert!(!v.is_empty(), "rtmpdump got no video: {}", run.stderr);
    let first = v[0].dts_time.unwrap() - 2.0;
    let last = v.last().unwrap().dts_time.unwrap() - 2.0;
    assert!(
        v[0].keyframe && (0.0..=2.0).contains(&first),
        "starts at {first}"
    );
    assert!((4.0..=6.1).contains(&last), "ends at {last}");

    // `-A 3` without a stop is play(name, 3000): from the keyframe at or before 3 s of the
    // recording, then on live; rtmpdump is stopped after 14 s.
    let out = dir.path().join("dvr-rtmpdump.flv");
    let mut cmd = Command::new("rtmpdump");
    cmd.args(["-r", &gw.url("live/dvr"), "-A", "3", "-m", "20", "-o"])
        .arg(&out);
    let run = run_capture(cmd, Duration::from_secs(14));
    publisher.kill();
    let packets = ffprobe_packets(&out);
    let v = video(&packets);
    assert!(v.len() >= 150, "{} video frames: {}", v.len(), run.stderr);
    // librtmp adds its `-A` start to every timestamp it writes; take it off again.
    let times: Vec<f64> = v.iter().map(|p| p.dts_time.unwrap() - 3.0).collect();
    assert!(
        v[0].keyframe,
        "the rewound play does not start at a keyframe"
    );
    assert!(
        (1.0..=3.0).contains(&times[0]),
        "rewound to {} instead of the keyframe at or before 3 s",
        times[0]
    );
    assert!(
        times.windows(2).all(|w| w[1] >= w[0]),
        "timestamps run backwards"
    );
    let jumps: Vec<usize> = (1..times.len())
        .filter(|&i| times[i] - times[i - 1] > 1.0)
        .collect();
    assert!(
        jumps.len() <= 1,
        "more than one jump: {jumps:?} in {times:?}"
    );
    // The recorded part (at least up to 5 s) then live, on the recording's timeline.
    let live_from = jumps.first().copied().unwrap_or(0);
    if let Some(&at) = jumps.first() {
        assert!(
            times[at - 1] >= 5.0,
            "the recorded part ended at {}",
            times[at - 1]
        );
        assert!(v[at].keyframe, "live does not begin with a keyframe");
    }
    let last = *times.last().unwrap();
    assert!(last >= 12.0, "did not go on live: ended at {last}");
    assert!(
        v.len() - live_from >= 50,
        "only {} frames after the jump",
        v.len() - live_from
    );
}
