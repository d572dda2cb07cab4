//! The HTTP listener behind Debian's nginx with TLS terminated at nginx, configured with exactly
//! the two blocks of README "Behind nginx": RTMPT, HTTP-FLV, WS-FLV, LL-HLS and the page through it.
//!
//! Only the listen port, the upstream port and the certificate paths are substituted, and the
//! test checks each substitution happened, so the README cannot drift from what is tested.

mod common;
mod gateway;
mod ws;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::nginx::Nginx;
use common::*;
use gateway::{Gateway, wait, write_cert};
use wasmgate::config::Config;

/// The fenced block after `<!-- MARKER` in the README.
fn readme_block(marker: &str) -> String {
    let readme = std::fs::read_to_string(manifest_dir().join("README.md")).expect("README.md");
    let start = readme
        .find(&format!("<!-- {marker}"))
        .unwrap_or_else(|| panic!("README has no <!-- {marker} --> block"));
    let rest = &readme[start..];
    let open = rest.find("```").expect("a fence after the marker");
    let body = &rest[open..];
    let body = &body[body.find('\n').expect("fence line") + 1..];
    let close = body.find("\n```").expect("a closing fence");
    body[..close + 1].to_owned()
}

/// `text` with `from` replaced by `to`; panics when `from` is not there (the README changed).
fn substitute(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the README block no longer has {from:?}:\n{text}"
    );
    text.replace(from, to)
}

struct Site {
    gw: Gateway,
    _nginx: Nginx,
    /// Where clients reach nginx (TLS).
    front: SocketAddr,
    cert: std::path::PathBuf,
    dir: tempfile::TempDir,
}

/// A gateway with the README's config and nginx in front of it with the README's site.
fn site() -> Site {
    ensure_tools();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_cert(dir.path());
    let config = Config::from_toml(&readme_block("reverse-proxy-gateway"))
        .expect("the README's gateway config parses");
    assert_eq!(config.rtmp.trusted_proxies, ["127.0.0.1"]);
    assert_eq!(config.http.listen.len(), 1);
    // The harness moves the HTTP listener to a free loopback port.
    let gw = Gateway::start_with(config);
    let port = free_port();
    let mut site = readme_block("reverse-proxy-nginx");
    site = substitute(
        &site,
        "listen 443 ssl;",
        &format!("listen 127.0.0.1:{port} ssl;"),
    );
    site = substitute(
        &site,
        "server 127.0.0.1:8080;",
        &format!("server {};", gw.http_addr()),
    );
    site = substitute(
        &site,
        "/etc/ssl/wasmgate/fullchain.pem",
        &cert.display().to_string(),
    );
    site = substitute(
        &site,
        "/etc/ssl/wasmgate/privkey.pem",
        &key.display().to_string(),
    );
    let logs = dir.path().join("nginx").join("logs");
    let body = format!(
        "http {{\n{{temp}}\naccess_log {}/access.log;\n{site}}}\n",
        logs.display()
    );
    let nginx = Nginx::start(dir.path(), &body, &[port]);
    Site {
        gw,
        _nginx: nginx,
        front: SocketAddr::from(([127, 0, 0, 1], port)),
        cert,
        dir,
    }
}

impl Site {
    fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://{}/{path}", self.front)
    }

    fn out(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// (transport, address) of every client the gateway has.
    fn clients(&self) -> Vec<(&'static str, std::net::IpAddr)> {
        self.gw
            .core()
            .clients()
            .list()
            .iter()
            .map(|c| (c.transport, c.peer.ip()))
            .collect()
    }

    /// Publishes the long fixture straight to the gateway's RTMP port.
    fn publish_direct(&self, path: &str) -> Proc {
        let p = ffmpeg_publish(&self.gw.url(path), &fixture_flv_long());
        assert!(
            wait(Duration::from_secs(15), || self.gw.publishing() == 1),
            "publisher never started: {}",
            p.stderr()
        );
        // Past the first keyframe, so viewers get the sequence headers at once.
        std::thread::sleep(Duration::from_millis(500));
        p
    }
}

/// `curl -sSk -D -` of `url` for at most `secs`, from `interface` when given; the body goes to `body`.
fn curl(url: &str, interface: Option<&str>, secs: f64, body: &Path) -> Command {
    let mut cmd = Command::new("curl");
    cmd.args(["-sSk", "-D", "-", "-o"])
        .arg(body)
        .args(["--max-time", &secs.to_string()]);
    if let Some(i) = interface {
        cmd.args(["--interface", i]);
    }
    cmd.arg(url);
    cmd
}

#[test]
fn rtmpt_over_tls_at_nginx_publishes_and_plays() {
    let s = site();
    let mut publisher = ffmpeg_publish(&s.url("rtmpts", "live/tunnel"), &fixture_flv_long());
    assert!(
        wait(Duration::from_secs(20), || s.gw.publishing() == 1),
        "rtmpts publish through nginx never started: {}\n{}",
        publisher.stderr(),
        s._nginx.error_log()
    );
    // nginx speaks plain HTTP to the gateway: a tunnel, from nginx's (trusted) forward.
    assert_eq!(s.clients(), [("rtmpt", "127.0.0.1".parse().unwrap())]);
    std::thread::sleep(Duration::from_millis(500));
    let (ff_out, rd_out) = (s.out("ff.flv"), s.out("rd.flv"));
    let mut ff = ffmpeg_play(&s.url("rtmpts", "live/tunnel"), &ff_out, 3.0);
    let mut rd = rtmpdump_play(&s.url("rtmpts", "live/tunnel"), &rd_out, 4);
    let status = ff.finish(Duration::from_secs(40));
    assert!(status.success(), "ffmpeg rtmpts via nginx: {}", ff.stderr());
    let packets = assert_av_file(&ff_out);
    assert!(first_video_is_keyframe(&packets));
    assert_monotonic(&packets);
    rd.finish(Duration::from_secs(40));
    assert_av_file(&rd_out);
    assert!(
        publisher.is_running(),
        "the publisher through nginx stopped: {}",
        publisher.stderr()
    );
}

#[test]
fn http_flv_ws_flv_ll_hls_and_the_page_through_nginx() {
    let s = site();
    let _publisher = s.publish_direct("live/cam");

    let flv = s.out("https.flv");
    let mut http_flv = ffmpeg_play(&s.url("https", "live/cam.flv"), &flv, 3.0);
    let hls = s.out("hls.flv");
    let mut ll_hls = ffmpeg_play(&s.url("https", "live/cam/index.m3u8"), &hls, 3.0);
    // The address a client used to reach nginx is the one the gateway lists.
    let tagged = s.out("tagged.flv");
    let mut tagged_viewer = Proc::spawn(
        "curl-tagged",
        curl(
            &s.url("https", "live/cam.flv"),
            Some("127.0.0.3"),
            6.0,
            &tagged,
        ),
        vec![(Duration::from_secs(20), Signal::Kill)],
    );
    assert!(
        wait(Duration::from_secs(10), || s
            .clients()
            .contains(&("http-flv", "127.0.0.3".parse().unwrap()))),
        "no http-flv viewer from 127.0.0.3: {:?}",
        s.clients()
    );

    let read = ws::wss_read(s.front, "live/cam.flv", &s.cert, 3.0);
    assert!(read.close.is_none(), "closed early: {:?}", read.close);
    let (first, tags) = read.messages.split_first().expect("no messages over wss");
    assert_eq!(&first[..4], b"FLV\x01");
    assert!(ws::tag_heads(tags).len() > 50, "too few tags over wss");

    for (name, p, out) in [
        ("HTTP-FLV", &mut http_flv, &flv),
        ("LL-HLS", &mut ll_hls, &hls),
    ] {
        let status = p.finish(Duration::from_secs(60));
        assert!(status.success(), "{name} via nginx: {}", p.stderr());
        let packets = assert_av_file(out);
        assert!(first_video_is_keyframe(&packets), "{name}");
        assert_monotonic(&packets);
    }
    tagged_viewer.finish(Duration::from_secs(20));
    assert!(file_len(&tagged) > 100_000, "curl via nginx got too little");

    let page = s.out("page.html");
    let out = run_capture(
        curl(&s.url("https", ""), None, 10.0, &page),
        Duration::from_secs(20),
    );
    assert!(out.stdout.starts_with("HTTP/1.1 200"), "{}", out.stdout);
    let html = std::fs::read_to_string(&page).unwrap_or_default();
    assert!(html.contains("<html"), "{html}");
}
