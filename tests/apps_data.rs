//! Incoming data messages through a Wasm app (`guest.on-data`): the `chat` guest moderates
//! what a publisher sends with its stream — captions ffmpeg publishes from a subtitle track and
//! `NetStream.send` messages from the project's client — relaying, rewriting or dropping each,
//! with the publisher's order kept for the players.

mod apps;
mod common;
mod gateway;

use std::process::Command;
use std::time::Duration;

use apps::*;
use common::*;
use wasmgate::client::RtmpClient;
use wasmgate::rtmp::amf::{AmfLimits, decode_amf0_all, encode_amf0_all};
use wasmgate::rtmp::client::ClientEvent;
use wasmgate::rtmp::message::msg_type;

const CHAT_TOML: &str = "[settings]\nbanned = [\"badword\"]\nmax_text = 40\n";

#[test]
fn ffmpeg_captions_are_moderated_on_the_way_to_players() {
    ensure_tools();
    let dir = tempfile::tempdir().unwrap();
    let apps_dir = dir.path().join("apps");
    install_app(&apps_dir, "chat", "chat", CHAT_TOML);
    let gw = gateway_with_apps(&apps_dir, |_| {});

    // An FLV with a text track: ffmpeg publishes each cue as an `onTextData` data message.
    let srt = dir.path().join("cues.srt");
    std::fs::write(
        &srt,
        "1\n00:00:01,000 --> 00:00:01,500\nhello BadWord world\n\n\
         2\n00:00:02,000 --> 00:00:02,500\nsecond line\n\n\
         3\n00:00:03,000 --> 00:00:03,500\nthis caption is far too long for the room's limit\n\n\
         4\n00:00:04,000 --> 00:00:04,500\nlast badword\n\n",
    )
    .unwrap();
    let source = dir.path().join("captioned.flv");
    let made = run_capture(
        {
            let mut c = Command::new("ffmpeg");
            c.args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i"])
                .arg(fixture_flv())
                .arg("-i")
                .arg(&srt)
                .args(["-map", "0", "-map", "1", "-t", "6", "-c", "copy"])
                .args(["-c:s", "text", "-f", "flv"])
                .arg(&source);
            c
        },
        Duration::from_secs(30),
    );
    assert!(made.success(), "making the captioned FLV: {}", made.stderr);

    // The player waits for the stream, so it sees every cue from the first one.
    let url = gw.url("chat/captions");
    let out = dir.path().join("played.flv");
    // `-map 0` keeps the text track (ffmpeg's default mapping would drop it).
    let mut player = Proc::spawn(
        "ffmpeg-play",
        {
            let mut c = Command::new("ffmpeg");
            c.args(["-nostdin", "-hide_banner", "-loglevel", "info"])
                .args([
                    "-rw_timeout",
                    "10000000",
                    "-i",
                    &url,
                    "-map",
                    "0",
                    "-t",
                    "5.8",
                ])
                .args(["-c", "copy", "-flush_packets", "1", "-f", "flv", "-y"])
                .arg(&out);
            c
        },
        vec![(Duration::from_secs(40), Signal::Kill)],
    );
    std::thread::sleep(Duration::from_millis(500));
    let mut publisher = ffmpeg_publish_with(&url, &source, &["-map", "0"]);
    let status = publisher.finish(Duration::from_secs(30));
    assert!(status.success(), "ffmpeg: {}", publisher.stderr());
    let status = player.finish(Duration::from_secs(20));
    assert!(status.success(), "ffmpeg player: {}", player.stderr());

    let cues = run_capture(
        {
            let mut c = Command::new("ffmpeg");
            c.args(["-nostdin", "-hide_banner", "-loglevel", "error", "-i"])
                .arg(&out)
                .args(["-map", "0:s", "-f", "srt", "-"]);
            c
        },
        Duration::from_secs(30),
    );
    assert!(
        cues.success(),
        "reading the played captions: {}",
        cues.stderr
    );
    let texts: Vec<&str> = cues
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("-->") && l.parse::<u32>().is_err())
        .collect();
    assert_eq!(
        texts,
        ["hello *** world", "second line", "last ***"],
        "captions as played:\n{}",
        cues.stdout
    );
    // The media itself went through untouched.
    decodes_cleanly(&out).unwrap();
}

/// A publisher interleaves video and `NetStream.send` messages; the player receives them in
/// the same order, with the app's rewrites applied and the dropped one missing.
#[test]
fn netstream_send_keeps_order_through_the_app() {
    let apps_dir = tempfile::tempdir().unwrap();
    install_app(apps_dir.path(), "chat", "chat", CHAT_TOML);
    let gw = gateway_with_apps(apps_dir.path(), |_| {});
    let url = gw.url("chat/room");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let received = rt.block_on(async move {
        let t = Duration::from_secs(5);
        let mut player = RtmpClient::connect(&url, vec![]).await.unwrap();
        player.start_play("s", -1.0, t).await.unwrap();

        let mut publisher = RtmpClient::connect(&url, vec![]).await.unwrap();
        let sid = publisher.start_publish("s", t).await.unwrap();
        let send = |text: &str| {
            encode_amf0_all(&[
                wasmgate::rtmp::amf::Amf0Value::string("onChat"),
                wasmgate::rtmp::amf::Amf0Value::string(text),
            ])
        };
        let keyframe = [0x17u8, 1, 0, 0, 0, 0xAA];
        let inter = [0x27u8, 1, 0, 0, 0, 0xBB];
        let s = publisher.session();
        s.send_media(sid, msg_type::VIDEO, 0, &keyframe);
        s.send_media(sid, msg_type::DATA_AMF0, 10, &send("one badword here"));
        s.send_media(sid, msg_type::VIDEO, 20, &inter);
        s.send_media(sid, msg_type::DATA_AMF0, 30, &send(&"x".repeat(100)));
        s.send_media(sid, msg_type::DATA_AMF0, 40, &send("clean"));
        s.send_media(sid, msg_type::VIDEO, 60, &inter);
        publisher.flush().await.unwrap();

        let mut got = Vec::new();
        while got.len() < 5 {
            match player.next_event_timeout(t).await {
                Ok(ClientEvent::Media {
                    type_id,
                    timestamp,
                    payload,
                    ..
                }) => {
                    if type_id == msg_type::DATA_AMF0 {
                        let v = decode_amf0_all(&payload, &AmfLimits::default()).unwrap();
                        let text = |i: usize| v.get(i).and_then(|x| x.as_str()).unwrap_or("?");
                        // The player also gets `|RtmpSampleAccess` and status data.
                        if text(0) == "onChat" {
                            got.push((timestamp, format!("onChat({})", text(1))));
                        }
                    } else if type_id == msg_type::VIDEO {
                        got.push((timestamp, "video".to_owned()));
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("player got {got:?}, then {e}"),
            }
        }
        got
    });
    assert_eq!(
        received,
        [
            (0, "video".to_owned()),
            (10, "onChat(one *** here)".to_owned()),
            (20, "video".to_owned()),
            (40, "onChat(clean)".to_owned()),
            (60, "video".to_owned()),
        ]
    );
}
