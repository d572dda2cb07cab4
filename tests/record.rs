//! Recording live streams to FLV: ffmpeg publishes under `record = "all"`, the project's client
//! publishes with FMS's `record` type under `record = "manual"`; the files are checked with
//! ffprobe and by reading their `onMetaData` keyframe index back.

mod apps;
mod common;
mod gateway;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use gateway::{Gateway, wait};
use wasmgate::client::RtmpClient;
use wasmgate::config::Config;
use wasmgate::media::RecordMode;
use wasmgate::media::record::part_path;
use wasmgate::rtmp::amf::{Amf0Value, AmfLimits, decode_amf0_all};

#[test]
fn the_example_config_records_everything() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/record.toml");
    let cfg = Config::from_file(&path).unwrap();
    assert_eq!(cfg.media.record, RecordMode::All);
    assert_eq!(cfg.media.record_dir, Path::new("recordings"));
    assert_eq!(Config::default().media.record, RecordMode::Off);
}

fn recording_gateway(mode: RecordMode, dir: &Path) -> Gateway {
    let mut cfg = Config::default();
    cfg.media.record = mode;
    cfg.media.record_dir = dir.to_owned();
    Gateway::start_with(cfg)
}

/// Waits until `path` exists and its `.part` is gone (the recording finished).
fn wait_finished(path: &Path) -> bool {
    let part = part_path(path);
    wait(Duration::from_secs(20), || path.exists() && !part.exists())
}

/// The tags of an FLV file: (type, timestamp, offset of the tag, body).
fn flv_tags(bytes: &[u8]) -> Vec<(u8, u32, usize, &[u8])> {
    assert_eq!(&bytes[..3], b"FLV", "not an FLV file");
    let mut tags = Vec::new();
    let mut at = 13;
    while at + 11 <= bytes.len() {
        let size = u32::from_be_bytes([0, bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        let ts = u32::from_be_bytes([bytes[at + 7], bytes[at + 4], bytes[at + 5], bytes[at + 6]]);
        if at + 11 + size + 4 > bytes.len() {
            break;
        }
        tags.push((bytes[at], ts, at, &bytes[at + 11..at + 11 + size]));
        at += 11 + size + 4;
    }
    tags
}

fn numbers(v: Option<&Amf0Value>) -> Vec<f64> {
    match v {
        Some(Amf0Value::StrictArray(items)) => items.iter().filter_map(Amf0Value::as_f64).collect(),
        other => panic!("expected a strict array, got {other:?}"),
    }
}

/// Checks the file's first tag is `onMetaData` with the true file size, a duration near
/// `expect_secs`, and a keyframe index whose every position is a video keyframe tag at the
/// indexed time.
fn check_index(path: &Path, expect_secs: f64) {
    let bytes = std::fs::read(path).unwrap();
    let tags = flv_tags(&bytes);
    let (kind, _, _, body) = tags[0];
    assert_eq!(kind, 18, "first tag is not script data");
    let values = decode_amf0_all(body, &AmfLimits::default()).unwrap();
    assert_eq!(values[0].as_str(), Some("onMetaData"));
    let meta = &values[1];
    let num = |k: &str| meta.get(k).and_then(Amf0Value::as_f64);
    assert_eq!(num("filesize"), Some(bytes.len() as f64), "filesize");
    let duration = num("duration").unwrap();
    assert!(
        (duration - expect_secs).abs() < 1.0,
        "duration {duration}, expected about {expect_secs}"
    );
    // The publisher's own fields are kept.
    assert!(num("width").is_some(), "width missing from {meta:?}");
    let kf = meta.get("keyframes").expect("keyframe index");
    let (times, positions) = (numbers(kf.get("times")), numbers(kf.get("filepositions")));
    assert_eq!(times.len(), positions.len());
    assert!(
        times.len() as f64 >= expect_secs - 1.0,
        "{} keyframes in {expect_secs} s of a 1 s GOP",
        times.len()
    );
    for (t, p) in times.iter().zip(&positions) {
        let tag = tags
            .iter()
            .find(|(_, _, at, _)| *at as f64 == *p)
            .unwrap_or_else(|| panic!("no tag at indexed position {p}"));
        assert_eq!(tag.0, 9, "indexed tag at {p} is not video");
        assert_eq!(tag.3[0] >> 4, 1, "indexed tag at {p} is not a keyframe");
        assert_eq!(
            f64::from(tag.1) / 1000.0,
            *t,
            "indexed time of the tag at {p}"
        );
    }
}

#[test]
fn ffmpeg_publish_is_recorded_with_metadata_and_keyframe_index() {
    ensure_tools();
    let rec = tempfile::tempdir().unwrap();
    let gw = recording_gateway(RecordMode::All, rec.path());
    let mut publisher = ffmpeg_publish(&gw.url("live/cam"), &fixture_flv());
    let path = rec.path().join("live/_definst_/cam.flv");
    let part = part_path(&path);

    // Mid-recording the `.part` file is already a readable FLV (what a crash leaves).
    assert!(
        wait(Duration::from_secs(10), || file_len(&part) > 100_000),
        "no .part file growing at {}",
        part.display()
    );
    std::thread::sleep(Duration::from_millis(1500));
    let snapshot = rec.path().join("snapshot.flv");
    std::fs::copy(&part, &snapshot).unwrap();
    assert_video_packets(&snapshot, 10);

    let status = publisher.finish(Duration::from_secs(40));
    assert!(status.success(), "publisher failed: {}", publisher.stderr());
    assert!(
        wait_finished(&path),
        "recording did not finish: {}",
        path.display()
    );

    let packets = assert_av_file(&path);
    assert!(first_video_is_keyframe(&packets));
    assert_monotonic(&packets);
    let first = packets
        .iter()
        .filter_map(|p| p.dts_time)
        .fold(f64::MAX, f64::min);
    assert!(first < 0.1, "timestamps start at {first}, not 0");
    let d = ffprobe_duration(&path).unwrap();
    assert!((d - 12.0).abs() < 1.0, "ffprobe duration {d}");
    decodes_cleanly(&path).unwrap();
    check_index(&path, 12.0);

    // The next publish of the same name gets a new file; the first one is kept.
    let mut again = ffmpeg_publish_with(&gw.url("live/cam"), &fixture_flv(), &["-t", "3"]);
    assert!(
        again.finish(Duration::from_secs(30)).success(),
        "{}",
        again.stderr()
    );
    let names = wait_for_names(&path.parent().unwrap().to_owned(), 2);
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("cam-") && n.ends_with(".flv")),
        "no suffixed second recording in {names:?}"
    );
    assert_eq!(file_len(&path), std::fs::metadata(&path).unwrap().len());
    check_index(&path, 12.0);
}

/// Finished `.flv` names in `dir` once there are `n` of them (and no `.part`).
fn wait_for_names(dir: &PathBuf, n: usize) -> Vec<String> {
    let list = || -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|r| {
                r.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    wait(Duration::from_secs(20), || {
        let names = list();
        names.iter().filter(|n| n.ends_with(".flv")).count() >= n
            && !names.iter().any(|n| n.ends_with(".part"))
    });
    list()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Publishes the fixture's tags with the given publish type, as fast as the socket takes them.
async fn publish_file(url: &str, name: &str, kind: &str, file: &Path) -> Result<(), String> {
    let mut c = RtmpClient::connect(url, vec![])
        .await
        .map_err(|e| e.to_string())?;
    let id = c.create_stream().await.map_err(|e| e.to_string())?;
    c.session().publish(id, name, kind);
    c.flush().await.map_err(|e| e.to_string())?;
    c.wait_status(Duration::from_secs(5), |code| {
        code == "NetStream.Publish.Start"
    })
    .await
    .map_err(|e| e.to_string())?;
    let bytes = std::fs::read(file).unwrap();
    for (i, (tag, ts, _, body)) in flv_tags(&bytes).into_iter().enumerate() {
        c.session().send_media(id, tag, ts, body);
        if i % 50 == 0 {
            c.flush().await.map_err(|e| e.to_string())?;
        }
    }
    c.flush().await.map_err(|e| e.to_string())?;
    c.session().stream_command(id, "deleteStream", &[]);
    c.flush().await.map_err(|e| e.to_string())?;
    // Give the gateway the last messages before the socket closes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(())
}

#[test]
fn manual_mode_records_only_record_publishes() {
    ensure_tools();
    let rec = tempfile::tempdir().unwrap();
    let gw = recording_gateway(RecordMode::Manual, rec.path());
    let fixture = fixture_flv();
    rt().block_on(async {
        publish_file(&gw.url("live"), "plain", "live", &fixture)
            .await
            .unwrap();
        publish_file(&gw.url("live"), "show/take1", "record", &fixture)
            .await
            .unwrap();
    });
    let path = rec.path().join("live/_definst_/show/take1.flv");
    assert!(wait_finished(&path), "no recording at {}", path.display());
    assert!(!rec.path().join("live/_definst_/plain.flv").exists());
    assert!(!rec.path().join("live/_definst_/plain.flv.part").exists());
    assert_av_file(&path);
    decodes_cleanly(&path).unwrap();
    check_index(&path, 12.0);
}

#[test]
fn names_that_leave_the_record_folder_are_refused() {
    let rec = tempfile::tempdir().unwrap();
    let gw = recording_gateway(RecordMode::All, &rec.path().join("inner"));
    rt().block_on(async {
        for name in ["../escape", "a/../../b", "/abs", "ctl\u{1}x", "a//b"] {
            let mut c = RtmpClient::connect(&gw.url("live"), vec![]).await.unwrap();
            let id = c.create_stream().await.unwrap();
            c.session().publish(id, name, "record");
            c.flush().await.unwrap();
            let info = c
                .wait_status(Duration::from_secs(5), |code| {
                    code.starts_with("NetStream.Publish.")
                })
                .await
                .unwrap();
            assert_eq!(
                info.get("code").and_then(Amf0Value::as_str),
                Some("NetStream.Publish.BadName"),
                "{name:?}: {info:?}"
            );
        }
    });
    assert_eq!(gw.publishing(), 0);
    // Nothing was created outside (or inside) the record folder.
    let left: Vec<_> = std::fs::read_dir(rec.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn an_app_toml_overrides_the_record_mode_for_its_streams() {
    ensure_tools();
    let apps_dir = tempfile::tempdir().unwrap();
    let rec = tempfile::tempdir().unwrap();
    apps::install_app(
        apps_dir.path(),
        "taped",
        "probe",
        "[media]\nrecord = \"all\"\n",
    );
    apps::install_app(apps_dir.path(), "plain", "probe", "");
    let gw = apps::gateway_with_apps(apps_dir.path(), |cfg| {
        cfg.media.record = RecordMode::Off;
        cfg.media.record_dir = rec.path().to_owned();
    });
    let fixture = fixture_flv();
    rt().block_on(async {
        publish_file(&gw.url("taped"), "cam", "live", &fixture)
            .await
            .unwrap();
        publish_file(&gw.url("plain"), "cam", "record", &fixture)
            .await
            .unwrap();
    });
    let path = rec.path().join("taped/_definst_/cam.flv");
    assert!(wait_finished(&path), "no recording at {}", path.display());
    check_index(&path, 12.0);
    // The app without an override keeps the gateway's "off", even for a `record` publish.
    assert!(!rec.path().join("plain").exists());
}

/// One admin request on a fresh connection: (status, JSON body).
fn admin(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap())
}

#[test]
fn a_guest_records_on_publish_and_on_request_and_the_admin_api_lists_and_stops_recordings() {
    ensure_tools();
    let apps_dir = tempfile::tempdir().unwrap();
    let rec = tempfile::tempdir().unwrap();
    apps::install_app(apps_dir.path(), "studio", "recorder", "");
    let gw = apps::gateway_with_apps(apps_dir.path(), |cfg| {
        cfg.media.record = RecordMode::Off;
        cfg.media.record_dir = rec.path().to_owned();
    });
    let folder = rec.path().join("studio/_definst_");

    // `?record=1`: the guest starts the recording in on-publish, before the stream is live,
    // and it holds the publish from its first frame.
    let fixture = fixture_flv();
    rt().block_on(async {
        publish_file(&gw.url("studio"), "show?record=1", "live", &fixture)
            .await
            .unwrap();
        publish_file(&gw.url("studio"), "other", "live", &fixture)
            .await
            .unwrap();
    });
    assert!(wait_finished(&folder.join("show.flv")));
    check_index(&folder.join("show.flv"), 12.0);
    assert!(!folder.join("other.flv").exists());

    // On request, mid-stream, from the stream's last keyframe; stopped by the operator.
    let mut publisher = ffmpeg_publish(&gw.url("studio/cam"), &fixture_flv_long());
    assert!(wait(Duration::from_secs(20), || gw.publishing() == 1));
    let (mut client, _) = apps::RtmpClient::connect(gw.addr, "studio", &[]);
    let ok = client.call_wait(
        "startRecording",
        &[Amf0Value::string("cam"), Amf0Value::string("take1")],
    );
    assert_eq!(ok.name, "_result", "{ok:?}");
    assert_eq!(
        ok.args.first().and_then(|v| v.as_str()),
        Some("studio/_definst_/take1.flv")
    );
    let again = client.call_wait("startRecording", &[Amf0Value::string("cam")]);
    assert_eq!(again.name, "_error", "{again:?}");
    assert!(
        apps::description(&again).contains("already being recorded"),
        "{again:?}"
    );
    std::thread::sleep(Duration::from_secs(3));
    let (status, list) = admin(gw.admin_addr(), "GET", "/api/v1/recordings");
    assert_eq!(status, 200);
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 1, "{list:?}");
    let r = &list[0];
    assert_eq!(r["path"], "studio/_definst_/cam");
    assert_eq!(r["origin"], "guest");
    assert_eq!(r["waiting"], false);
    assert!(r["file"].as_str().unwrap().ends_with("take1.flv"), "{r}");
    assert!(r["bytes"].as_u64().unwrap() > 10_000, "{r}");
    assert!(r["duration_ms"].as_u64().unwrap() >= 1000, "{r}");
    let (status, stopped) = admin(
        gw.admin_addr(),
        "DELETE",
        "/api/v1/recordings/studio/_definst_/cam",
    );
    assert_eq!(status, 200, "{stopped}");
    let take1 = folder.join("take1.flv");
    assert!(wait_finished(&take1));
    let secs = meta_duration(&take1).unwrap();
    assert!((2.0..10.0).contains(&secs), "take1 lasts {secs} s");
    let (status, _) = admin(
        gw.admin_addr(),
        "DELETE",
        "/api/v1/recordings/studio/_definst_/cam",
    );
    assert_eq!(status, 404);
    // The live stream went on; the guest's own stop answers whether one ran.
    assert_eq!(gw.publishing(), 1);
    let ok = client.call_wait("startRecording", &[Amf0Value::string("cam")]);
    assert_eq!(
        ok.args.first().and_then(|v| v.as_str()),
        Some("studio/_definst_/cam.flv")
    );
    std::thread::sleep(Duration::from_secs(2));
    let stop = client.call_wait("stopRecording", &[Amf0Value::string("cam")]);
    assert_eq!(
        stop.args.first(),
        Some(&Amf0Value::Boolean(true)),
        "{stop:?}"
    );
    let stop = client.call_wait("stopRecording", &[Amf0Value::string("cam")]);
    assert_eq!(
        stop.args.first(),
        Some(&Amf0Value::Boolean(false)),
        "{stop:?}"
    );
    assert!(wait_finished(&folder.join("cam.flv")));
    assert!(meta_duration(&folder.join("cam.flv")).unwrap() >= 1.0);
    // A name that would leave the folder is refused to the guest too.
    let bad = client.call_wait(
        "startRecording",
        &[Amf0Value::string("cam"), Amf0Value::string("../x")],
    );
    assert_eq!(bad.name, "_error", "{bad:?}");
    publisher.kill();
}

/// The gateway binary with `record = "all"` into `rec`, its log in `log`.
fn spawn_binary(rec: &Path, port: u16, log: &Path) -> std::process::Child {
    let cfg = rec.with_extension("toml");
    std::fs::write(
        &cfg,
        format!(
            "[media]\nrecord = \"all\"\nrecord_dir = {:?}\n",
            rec.display().to_string()
        ),
    )
    .unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .arg("--config")
        .arg(&cfg)
        .args(["--rtmp", &format!("127.0.0.1:{port}")])
        .args(["--admin", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("wasmgate binary starts");
    assert!(
        wait_for_port(port, Duration::from_secs(10)),
        "gateway did not listen"
    );
    child
}

#[test]
fn sigkill_mid_recording_leaves_a_playable_file_repaired_on_the_next_start() {
    ensure_tools();
    let tmp = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("rec");
    let log = tmp.path().join("gateway.log");
    let port = free_port();
    let mut gw = spawn_binary(&rec, port, &log);
    let mut publisher = ffmpeg_publish(
        &format!("rtmp://127.0.0.1:{port}/live/crash"),
        &fixture_flv_long(),
    );
    let path = rec.join("live/_definst_/crash.flv");
    let part = part_path(&path);
    assert!(
        wait(Duration::from_secs(15), || file_len(&part) > 150_000),
        "no recording growing at {}",
        part.display()
    );
    std::thread::sleep(Duration::from_secs(2));
    gw.kill().unwrap(); // SIGKILL: no unpublish, no finish.
    gw.wait().unwrap();
    publisher.kill();

    // What the crash left reads to its last complete tag.
    let left = tmp.path().join("left.flv");
    std::fs::copy(&part, &left).unwrap();
    let packets = assert_video_packets(&left, 20);
    let last = packets
        .iter()
        .filter_map(|p| p.dts_time)
        .fold(0.0, f64::max);
    assert!(!path.exists());

    // The next start finishes it before accepting anyone.
    let mut gw = spawn_binary(&rec, port, &log);
    assert!(
        path.exists() && !part.exists(),
        "not repaired: {}",
        std::fs::read_to_string(&log).unwrap()
    );
    decodes_cleanly(&path).unwrap();
    check_index(&path, last);
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains("repaired an unfinished recording"),
        "{log_text}"
    );
    gw.kill().unwrap();
    gw.wait().unwrap();
}

#[test]
fn a_cut_part_file_is_truncated_to_its_last_whole_tag() {
    ensure_tools();
    let rec = tempfile::tempdir().unwrap();
    let dir = rec.path().join("live/_definst_");
    std::fs::create_dir_all(&dir).unwrap();
    // ffmpeg's own file (with its onMetaData first), cut in the middle of a tag.
    let bytes = std::fs::read(fixture_flv()).unwrap();
    let cut = bytes.len() * 2 / 3 + 7;
    std::fs::write(dir.join("cut.flv.part"), &bytes[..cut]).unwrap();
    // An existing finished file of the same name is kept: the repair takes a suffixed name.
    std::fs::write(dir.join("cut.flv"), b"keep me").unwrap();
    let _gw = recording_gateway(RecordMode::Off, rec.path());
    let names = wait_for_names(&dir, 2);
    let repaired = names
        .iter()
        .find(|n| n.starts_with("cut-") && n.ends_with(".flv"))
        .unwrap_or_else(|| panic!("no repaired file in {names:?}"));
    assert_eq!(std::fs::read(dir.join("cut.flv")).unwrap(), b"keep me");
    let path = dir.join(repaired);
    let whole_tags = flv_tags(&bytes[..cut]);
    let last_ts = whole_tags.iter().map(|t| t.1).max().unwrap();
    decodes_cleanly(&path).unwrap();
    check_index(&path, f64::from(last_ts) / 1000.0);
    assert!(!dir.join("cut.flv.part").exists());
}

#[test]
fn append_continues_the_finished_file_and_record_starts_a_new_one() {
    ensure_tools();
    let rec = tempfile::tempdir().unwrap();
    let gw = recording_gateway(RecordMode::Manual, rec.path());
    let fixture = fixture_flv();
    let dir = rec.path().join("live/_definst_");
    let path = dir.join("take.flv");
    rt().block_on(async {
        // `append` with nothing to append to starts the file.
        publish_file(&gw.url("live"), "take", "append", &fixture)
            .await
            .unwrap();
    });
    assert!(wait_finished(&path));
    check_index(&path, 12.0);
    rt().block_on(async {
        publish_file(&gw.url("live"), "take", "append", &fixture)
            .await
            .unwrap();
    });
    // Finished again once its summary says 24 s (meanwhile it is back to `.part`).
    assert!(
        wait(Duration::from_secs(20), || meta_duration(&path)
            .is_some_and(|d| d > 20.0)),
        "the appended file was not finished"
    );
    let packets = assert_av_file(&path);
    assert_monotonic(&packets);
    decodes_cleanly(&path).unwrap();
    check_index(&path, 24.0);
    let names = wait_for_names(&dir, 1);
    assert_eq!(names, ["take.flv"], "append made another file");
    // `record` over an existing file keeps it and takes a suffixed name.
    rt().block_on(async {
        publish_file(&gw.url("live"), "take", "record", &fixture)
            .await
            .unwrap();
    });
    let names = wait_for_names(&dir, 2);
    assert!(names.iter().any(|n| n.starts_with("take-")), "{names:?}");
    check_index(&path, 24.0);
}

/// The `duration` of a finished file's `onMetaData`, or None while it is missing or unreadable.
fn meta_duration(path: &Path) -> Option<f64> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() < 13 || &bytes[..3] != b"FLV" {
        return None;
    }
    let tags = flv_tags(&bytes);
    let (_, _, _, body) = tags.first()?;
    let values = decode_amf0_all(body, &AmfLimits::default()).ok()?;
    values.get(1)?.get("duration")?.as_f64()
}
