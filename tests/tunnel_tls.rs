//! RTMPS and RTMPTS with a self-signed certificate generated at test time (rcgen), played by
//! ffmpeg on the RTMP port and on an HTTP port; certificate reload without dropping sessions.
//! RTMPTS through HTTP proxies is in `tests/forward_proxies.rs`.

mod common;
mod gateway;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use gateway::{Gateway, write_cert};
use wasmgate::config::Config;

fn tls_gateway(dir: &Path) -> Gateway {
    let (cert, key) = write_cert(dir);
    let mut config = Config::default();
    config.tls.cert = Some(cert);
    config.tls.key = Some(key);
    Gateway::start_with(config)
}

fn admin_post(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn rtmps_publish_and_rtmps_rtmpts_players_on_both_ports_survive_a_certificate_reload() {
    ensure_tools();
    let dir = tempfile::tempdir().unwrap();
    let gw = tls_gateway(dir.path());
    // ffmpeg 5.1 does not verify certificates unless -tls_verify 1: self-signed is accepted.
    let mut publisher = ffmpeg_publish(
        &format!("rtmps://{}/live/secure", gw.addr),
        &fixture_flv_long(),
    );
    assert!(
        wait_until(Duration::from_secs(10), || gw.publishing() == 1),
        "rtmps publisher never started: {}",
        publisher.stderr()
    );
    assert_eq!(gw.transports(), ["rtmps"]);
    let outs: Vec<PathBuf> = (0..3)
        .map(|i| dir.path().join(format!("p{i}.flv")))
        .collect();
    let mut players = [
        ffmpeg_play(&format!("rtmps://{}/live/secure", gw.addr), &outs[0], 3.0),
        ffmpeg_play(&format!("rtmpts://{}/live/secure", gw.addr), &outs[1], 3.0),
        ffmpeg_play(
            &format!("rtmpts://{}/live/secure", gw.http_addr()),
            &outs[2],
            3.0,
        ),
    ];
    // librtmp (rtmpdump) speaks both too, through GnuTLS.
    let rd_outs = [dir.path().join("rd-s.flv"), dir.path().join("rd-ts.flv")];
    let mut rd = [
        rtmpdump_play(&format!("rtmps://{}/live/secure", gw.addr), &rd_outs[0], 4),
        rtmpdump_play(
            &format!("rtmpts://{}/live/secure", gw.http_addr()),
            &rd_outs[1],
            4,
        ),
    ];
    assert!(
        wait_until(Duration::from_secs(10), || gw.transports().len() == 6),
        "players did not all connect: {:?}",
        gw.transports()
    );
    assert_eq!(
        gw.transports(),
        ["rtmps", "rtmps", "rtmps", "rtmpts", "rtmpts", "rtmpts"]
    );
    // A new certificate mid-stream: running sessions keep going, new ones get the new one.
    write_cert(dir.path());
    gw.server.tls.reload().expect("reload");
    // The same through the admin API.
    let answer = admin_post(gw.admin_addr(), "/api/v1/tls/reload");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"reloaded\":true"), "{answer}");
    for (p, out) in players.iter_mut().zip(&outs) {
        let s = p.finish(Duration::from_secs(30));
        assert!(s.success(), "player failed: {}", p.stderr());
        assert_av_file(out);
    }
    for (p, out) in rd.iter_mut().zip(&rd_outs) {
        p.finish(Duration::from_secs(30));
        assert_av_file(out);
    }
    let after = dir.path().join("after.flv");
    let mut p = ffmpeg_play(&format!("rtmps://{}/live/secure", gw.addr), &after, 2.0);
    let s = p.finish(Duration::from_secs(30));
    assert!(s.success(), "player after reload failed: {}", p.stderr());
    assert_av_file(&after);
    assert!(
        publisher.is_running(),
        "publisher dropped by the reload: {}",
        publisher.stderr()
    );
}

#[test]
fn tls_without_a_certificate_is_closed_and_rtmp_still_works() {
    ensure_tools();
    let gw = Gateway::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.flv");
    let mut p = ffmpeg_play(&format!("rtmps://{}/live/none", gw.addr), &out, 1.0);
    let s = p.finish(Duration::from_secs(30));
    assert!(!s.success(), "rtmps without a certificate should fail");
    let _publisher = ffmpeg_publish(&gw.url("live/none"), &fixture_flv_long());
    assert!(wait_until(Duration::from_secs(10), || gw.publishing() == 1));
    let answer = admin_post(gw.admin_addr(), "/api/v1/tls/reload");
    assert!(answer.starts_with("HTTP/1.1 409"), "{answer}");
}
