//! End-to-end live streaming with real clients: ffmpeg publishes, ffmpeg and rtmpdump play,
//! against an in-process gateway on 127.0.0.1:0.

mod common;
mod gateway;

use std::time::Duration;

use common::*;
use gateway::Gateway;

#[test]
fn late_players_ffmpeg_and_rtmpdump_start_on_a_keyframe() {
    ensure_tools();
    let gw = Gateway::start();
    let dir = tempfile::tempdir().unwrap();
    let url = gw.url("live/late");
    let mut publisher = ffmpeg_publish(&url, &fixture_flv_long());
    // Join mid-GOP: the fixture has a keyframe every second.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        publisher.is_running(),
        "publisher died: {}",
        publisher.stderr()
    );

    let ff_out = dir.path().join("ffmpeg.flv");
    let rd_out = dir.path().join("rtmpdump.flv");
    let mut ff = ffmpeg_play(&url, &ff_out, 3.0);
    let mut rd = rtmpdump_play(&url, &rd_out, 4);
    let ff_status = ff.finish(Duration::from_secs(30));
    assert!(ff_status.success(), "ffmpeg play failed: {}", ff.stderr());
    rd.finish(Duration::from_secs(30));

    for out in [&ff_out, &rd_out] {
        let packets = assert_av_file(out);
        assert!(
            first_video_is_keyframe(&packets),
            "{}: first video packet is not a keyframe",
            out.display()
        );
        assert_monotonic(&packets);
    }
    assert!(
        publisher.is_running(),
        "publisher died: {}",
        publisher.stderr()
    );
}

#[test]
fn players_waiting_before_the_publisher_get_publish_notify_and_the_stream() {
    ensure_tools();
    let gw = Gateway::start();
    let dir = tempfile::tempdir().unwrap();
    let url = gw.url("live/early");
    let rd_out = dir.path().join("early.flv");
    let ff_out = dir.path().join("early-ff.flv");
    let mut rd = rtmpdump_play_with(&url, &rd_out, 6, &["-V"]);
    let mut ff = ffmpeg_play(&url, &ff_out, 2.5);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        rd.is_running(),
        "rtmpdump gave up while waiting: {}",
        rd.stderr()
    );
    let _publisher = ffmpeg_publish(&url, &fixture_flv_long());

    let ff_status = ff.finish(Duration::from_secs(30));
    assert!(ff_status.success(), "ffmpeg play failed: {}", ff.stderr());
    rd.finish(Duration::from_secs(30));
    assert_av_file(&ff_out);
    let packets = assert_av_file(&rd_out);
    assert!(first_video_is_keyframe(&packets));
    let log = rd.stderr();
    assert!(
        log.contains("NetStream.Play.PublishNotify"),
        "rtmpdump never saw PublishNotify:\n{log}"
    );
}

#[test]
fn second_publisher_gets_bad_name_and_first_keeps_streaming() {
    ensure_tools();
    let gw = Gateway::start();
    let dir = tempfile::tempdir().unwrap();
    let url = gw.url("live/taken");
    let mut first = ffmpeg_publish(&url, &fixture_flv_long());
    std::thread::sleep(Duration::from_millis(1500));
    let mut second = ffmpeg_publish(&url, &fixture_flv());
    let status = second
        .wait_timeout(Duration::from_secs(15))
        .expect("second publisher should be refused promptly");
    assert!(!status.success());
    let log = second.stderr();
    assert!(
        log.contains("already being published") || log.contains("BadName"),
        "second publisher's stderr does not say why:\n{log}"
    );
    assert!(
        first.is_running(),
        "first publisher died: {}",
        first.stderr()
    );

    let out = dir.path().join("still.flv");
    let mut ff = ffmpeg_play(&url, &out, 2.0);
    assert!(
        ff.finish(Duration::from_secs(30)).success(),
        "{}",
        ff.stderr()
    );
    assert_av_file(&out);
}

#[test]
fn fifty_concurrent_players_all_receive_the_stream() {
    ensure_tools();
    let gw = Gateway::start();
    let dir = tempfile::tempdir().unwrap();
    let url = gw.url("live/many");
    let _publisher = ffmpeg_publish(&url, &fixture_flv_long());
    std::thread::sleep(Duration::from_millis(1000));
    let outs: Vec<_> = (0..50)
        .map(|i| dir.path().join(format!("p{i}.flv")))
        .collect();
    let mut players: Vec<_> = outs.iter().map(|o| rtmpdump_play(&url, o, 5)).collect();
    for p in &mut players {
        p.finish(Duration::from_secs(40));
    }
    let mut short = Vec::new();
    for o in &outs {
        // 5 s of a ~200 kbit/s stream; anything under 20 KB means the player got (almost) nothing.
        if file_len(o) < 20_000 {
            short.push((o.display().to_string(), file_len(o)));
        }
    }
    assert!(short.is_empty(), "players with too little data: {short:?}");
    assert_av_file(&outs[0]);
    assert_av_file(&outs[49]);
}

#[test]
fn vanished_publisher_ends_players_with_unpublish_notify_and_frees_state() {
    ensure_tools();
    let gw = Gateway::start();
    let dir = tempfile::tempdir().unwrap();
    let url = gw.url("live/vanish");
    let mut publisher = ffmpeg_publish(&url, &fixture_flv_long());
    std::thread::sleep(Duration::from_millis(1500));
    let out = dir.path().join("v.flv");
    let mut rd = rtmpdump_play_with(&url, &out, 60, &["-V"]);
    let ff_out = dir.path().join("v-ff.flv");
    let mut ff = ffmpeg_play(&url, &ff_out, 60.0);
    std::thread::sleep(Duration::from_millis(2500));
    publisher.kill(); // SIGKILL: the TCP connection just ends

    assert!(
        rd.wait_timeout(Duration::from_secs(20)).is_some(),
        "rtmpdump kept running after the publisher vanished"
    );
    assert!(
        ff.wait_timeout(Duration::from_secs(20)).is_some(),
        "ffmpeg kept running after the publisher vanished"
    );
    let log = rd.stderr();
    assert!(
        log.contains("NetStream.Play.UnpublishNotify"),
        "no UnpublishNotify in rtmpdump log:\n{log}"
    );
    assert_av_file(&out);
    assert!(
        wait_until(Duration::from_secs(5), || gw
            .core()
            .registry()
            .stream_count()
            == 0),
        "stream state not freed: {:?}",
        gw.core().registry().snapshot()
    );
}

#[test]
fn instances_are_separate_namespaces() {
    ensure_tools();
    let gw = Gateway::start();
    let dir = tempfile::tempdir().unwrap();
    let _publisher = ffmpeg_publish(&gw.url("live/room1/key"), &fixture_flv_long());
    std::thread::sleep(Duration::from_millis(1000));
    let same = dir.path().join("same.flv");
    let mut ff = ffmpeg_play(&gw.url("live/room1/key?token=abc"), &same, 2.0);
    assert!(
        ff.finish(Duration::from_secs(30)).success(),
        "{}",
        ff.stderr()
    );
    assert_av_file(&same);

    let streams = gw.core().registry().snapshot();
    assert!(
        streams.iter().any(|(k, live, _)| k.app == "live"
            && k.instance == "room1"
            && k.name == "key"
            && *live),
        "{streams:?}"
    );
    // The same name in another instance is another (empty) stream: the player just waits.
    let other = dir.path().join("other.flv");
    let mut waiting = ffmpeg_play(&gw.url("live/room2/key"), &other, 2.0);
    std::thread::sleep(Duration::from_millis(2000));
    assert!(
        waiting.is_running(),
        "player of an unpublished stream should wait"
    );
    assert!(file_len(&other) < 1000);
}

#[test]
fn reconnecting_publisher_takes_over_a_half_dead_stream_and_players_keep_playing() {
    ensure_tools();
    let mut cfg = wasmgate::config::Config::default();
    cfg.media.takeover_idle_secs = 1;
    let gw = Gateway::start_with(cfg);
    let dir = tempfile::tempdir().unwrap();
    let url = gw.url("live/takeover");
    let mut old = ffmpeg_publish(&url, &fixture_flv_long());
    std::thread::sleep(Duration::from_millis(1500));
    let out = dir.path().join("across.flv");
    let mut player = ffmpeg_play(&url, &out, 9.0);
    std::thread::sleep(Duration::from_millis(2500));

    // The old publisher freezes: its TCP connection stays open but sends nothing.
    let stop = std::process::Command::new("kill")
        .args(["-STOP", &old.pid().to_string()])
        .status()
        .unwrap();
    assert!(stop.success());
    // While it was active a second publisher would be refused; once idle, it may take over.
    std::thread::sleep(Duration::from_millis(1500));
    let mut new = ffmpeg_publish(&url, &fixture_flv_long());
    std::thread::sleep(Duration::from_millis(1000));
    assert!(new.is_running(), "new publisher refused: {}", new.stderr());
    assert!(
        wait_until(Duration::from_secs(5), || gw.core().clients().len() == 2),
        "the half-dead publisher's connection should have been closed"
    );
    let status = player.finish(Duration::from_secs(40));
    assert!(
        status.success(),
        "player failed across the switch: {}",
        player.stderr()
    );
    let packets = assert_av_file(&out);
    let last = packets
        .iter()
        .filter(|p| p.stream_type == "video")
        .filter_map(|p| p.dts_time)
        .fold(0.0, f64::max);
    assert!(
        last >= 8.0,
        "player stopped at {last} s instead of playing across the switch"
    );
    assert_monotonic(&packets);
    old.kill();
}
