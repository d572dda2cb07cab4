//! RTMPT end to end with real clients: ffmpeg publishes over `rtmpt://` to the RTMP port, ffmpeg
//! and rtmpdump play over `rtmpt://` from an HTTP port, and mixed RTMP/RTMPT publish and play.

mod common;
mod gateway;

use std::time::Duration;

use common::*;
use gateway::Gateway;

#[test]
fn ffmpeg_publishes_rtmpt_on_the_rtmp_port_and_ffmpeg_and_rtmpdump_play_rtmpt_from_the_http_port() {
    ensure_tools();
    let gw = Gateway::start();
    let dir = tempfile::tempdir().unwrap();
    let mut publisher = ffmpeg_publish(
        &format!("rtmpt://{}/live/tun", gw.addr),
        &fixture_flv_long(),
    );
    assert!(
        wait_until(Duration::from_secs(10), || gw.transports() == ["rtmpt"]
            && gw.publishing() == 1),
        "publisher over rtmpt never started: {}",
        publisher.stderr()
    );
    let url = format!("rtmpt://{}/live/tun", gw.http_addr());
    let ff_out = dir.path().join("ff.flv");
    let rd_out = dir.path().join("rd.flv");
    let mut ff = ffmpeg_play(&url, &ff_out, 3.0);
    let mut rd = rtmpdump_play(&url, &rd_out, 4);
    assert!(
        wait_until(Duration::from_secs(10), || gw.transports().len() == 3),
        "players did not connect: {:?}",
        gw.transports()
    );
    assert_eq!(gw.transports(), ["rtmpt", "rtmpt", "rtmpt"]);
    let status = ff.finish(Duration::from_secs(30));
    assert!(
        status.success(),
        "ffmpeg rtmpt play failed: {}",
        ff.stderr()
    );
    rd.finish(Duration::from_secs(30));
    assert_av_file(&ff_out);
    assert_av_file(&rd_out);
    assert!(
        publisher.is_running(),
        "publisher died: {}",
        publisher.stderr()
    );
    // ffmpeg's player closed its tunnel with /close: the session table shrinks.
    let tunnel = &gw.server.tunnel;
    assert!(wait_until(Duration::from_secs(10), || tunnel
        .session_count()
        <= 2));
}

#[test]
fn mixed_publish_rtmp_play_rtmpt_and_publish_rtmpt_play_rtmp() {
    ensure_tools();
    let gw = Gateway::start();
    let dir = tempfile::tempdir().unwrap();
    // RTMP in, RTMPT (sniffed on the RTMP port) out.
    let _p1 = ffmpeg_publish(&gw.url("live/a"), &fixture_flv_long());
    // RTMPT in (HTTP port), RTMP out.
    let _p2 = ffmpeg_publish(
        &format!("rtmpt://{}/live/b", gw.http_addr()),
        &fixture_flv_long(),
    );
    assert!(wait_until(Duration::from_secs(10), || gw.publishing() == 2));
    let out_a = dir.path().join("a.flv");
    let out_b = dir.path().join("b.flv");
    let mut pa = ffmpeg_play(&format!("rtmpt://{}/live/a", gw.addr), &out_a, 3.0);
    let mut pb = rtmpdump_play(&gw.url("live/b"), &out_b, 4);
    let s = pa.finish(Duration::from_secs(30));
    assert!(s.success(), "rtmpt player failed: {}", pa.stderr());
    pb.finish(Duration::from_secs(30));
    assert_av_file(&out_a);
    assert_av_file(&out_b);
}

#[test]
fn a_stalled_rtmpt_player_skips_to_the_next_keyframe_like_a_tcp_player() {
    ensure_tools();
    let mut config = wasmgate::config::Config::default();
    // Small buffers so a short stall overflows both the tunnel pipe and the player queue.
    config.http.session_buffer_bytes = 4096;
    config.media.player_queue = 32;
    let gw = Gateway::start_with(config);
    let dir = tempfile::tempdir().unwrap();
    let _publisher = ffmpeg_publish(&gw.url("live/stall"), &fixture_flv_long());
    assert!(wait_until(Duration::from_secs(10), || gw.publishing() == 1));
    let out = dir.path().join("stalled.flv");
    let mut player = ffmpeg_play(&format!("rtmpt://{}/live/stall", gw.http_addr()), &out, 8.0);
    assert!(wait_until(Duration::from_secs(10), || file_len(&out) > 50_000));
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &player.pid().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} failed");
    };
    // The player stops polling for 4 s: nothing is read from its tunnel meanwhile.
    signal("-STOP");
    std::thread::sleep(Duration::from_secs(4));
    signal("-CONT");
    let s = player.finish(Duration::from_secs(40));
    assert!(s.success(), "stalled player failed: {}", player.stderr());
    assert_av_file(&out);
    // It resumed at a keyframe, seconds later in the stream, instead of catching up on
    // everything it missed through an unbounded buffer.
    let packets = ffprobe_packets(&out);
    let video: Vec<_> = packets
        .iter()
        .filter(|p| p.stream_type == "video" && p.dts_time.is_some())
        .collect();
    let jump = video
        .windows(2)
        .find(|w| w[1].dts_time.unwrap() - w[0].dts_time.unwrap() > 1.0)
        .expect("no skip in the video timestamps");
    assert!(jump[1].keyframe, "playback resumed on a non-keyframe");
}
