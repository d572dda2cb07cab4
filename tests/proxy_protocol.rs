//! Trusted proxies: a PROXY protocol v1/v2 header (hand-made, and curl's `--haproxy-protocol`)
//! or `X-Forwarded-For` from `rtmp.trusted_proxies` names the client for the client table and
//! the per-IP limit; from any other peer the same bytes change nothing, and the admin listener
//! never believes them.

mod common;
mod gateway;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::*;
use gateway::{Gateway, wait};
use tokio::io::AsyncWriteExt;
use wasmgate::client::RtmpClient;
use wasmgate::config::Config;
use wasmgate::rtmp::client::ClientConfig;

fn gateway(trusted: &[&str], per_ip: usize) -> Gateway {
    let mut c = Config::default();
    c.rtmp.trusted_proxies = trusted.iter().map(|s| s.to_string()).collect();
    c.rtmp.max_connections_per_ip = per_ip;
    c.admin.listen = "127.0.0.1:0".parse().unwrap();
    Gateway::start_with(c)
}

/// The v2 block for TCP over IPv4 from `src`.
fn v2_header(src: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(src) = src else {
        panic!("IPv4 only")
    };
    let mut b = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    b.extend_from_slice(&src.ip().octets());
    b.extend_from_slice(&[127, 0, 0, 1]);
    b.extend_from_slice(&src.port().to_be_bytes());
    b.extend_from_slice(&1935u16.to_be_bytes());
    b
}

/// An RTMP client to `live` on `gw` whose connection starts with `header` (kept open while
/// the client lives), and its own address.
fn rtmp_after(
    rt: &tokio::runtime::Runtime,
    gw: &Gateway,
    header: &[u8],
) -> Option<(RtmpClient, SocketAddr)> {
    rt.block_on(async {
        let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let local = s.local_addr().unwrap();
        s.write_all(header).await.unwrap();
        let cfg = ClientConfig::new("live", format!("rtmp://{}/live", gw.addr));
        let c = tokio::time::timeout(Duration::from_secs(10), RtmpClient::connect_over(s, cfg))
            .await
            .ok()?
            .ok()?;
        Some((c, local))
    })
}

/// `curl` reading `url` for up to 20 s with `extra` arguments, its body in `out`.
fn curl_viewer(url: &str, out: &std::path::Path, extra: &[&str]) -> Proc {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-o"])
        .arg(out)
        .args(extra)
        .args(["--max-time", "20", url]);
    Proc::spawn("curl", cmd, vec![(Duration::from_secs(30), Signal::Kill)])
}

/// Where the HTTP-FLV viewers in the client table are from.
fn viewer_peers(gw: &Gateway) -> Vec<SocketAddr> {
    gw.core()
        .clients()
        .list()
        .iter()
        .filter(|c| c.transport == "http-flv")
        .map(|c| c.peer)
        .collect()
}

/// ffmpeg publishing `live/cam` on `gw`, once it is live.
fn publish(gw: &Gateway) -> Proc {
    let p = ffmpeg_publish_with(&gw.url("live/cam"), &fixture_flv_long(), &[]);
    assert!(
        wait(Duration::from_secs(15), || gw.publishing() >= 1),
        "{}",
        p.stderr()
    );
    p
}

fn peers(gw: &Gateway) -> Vec<String> {
    let mut p: Vec<_> = gw
        .core()
        .clients()
        .list()
        .iter()
        .map(|c| c.peer.to_string())
        .collect();
    p.sort();
    p
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn proxy_headers_from_a_trusted_proxy_name_the_client_and_its_per_ip_limit() {
    let gw = gateway(&["127.0.0.1"], 1);
    let rt = runtime();
    let a = rtmp_after(&rt, &gw, b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 1935\r\n")
        .expect("v1 client refused");
    let b = rtmp_after(&rt, &gw, &v2_header("198.51.100.2:40001".parse().unwrap()))
        .expect("v2 client refused");
    // A direct connection from the proxy's own address: no header, the peer itself.
    let (direct, local) = rtmp_after(&rt, &gw, b"").expect("direct client refused");
    assert_eq!(
        peers(&gw),
        [
            local.to_string(),
            "198.51.100.2:40001".to_string(),
            "203.0.113.7:40000".to_string()
        ]
    );
    // One connection per client address: the second from 203.0.113.7 is closed, although
    // all three came from 127.0.0.1.
    let again = rtmp_after(&rt, &gw, b"PROXY TCP4 203.0.113.7 127.0.0.1 40002 1935\r\n");
    assert!(again.is_none(), "the per-IP limit ignored the named client");
    assert!(
        gw.core()
            .counters()
            .rejected_over_ip_limit
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    // A malformed header from a trusted proxy is refused, not guessed at.
    assert!(rtmp_after(&rt, &gw, b"PROXY TCP4 nonsense\r\n").is_none());
    drop((a, b, direct));
}

#[test]
fn curl_through_haproxy_protocol_and_forwarded_for_name_http_flv_viewers() {
    ensure_tools();
    let gw = gateway(&["127.0.0.1"], 100);
    let _publisher = publish(&gw);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{}/live/cam.flv", gw.http_addr());
    let mut viewers = [
        curl_viewer(&url, &dir.path().join("a.flv"), &["--haproxy-protocol"]),
        curl_viewer(
            &url,
            &dir.path().join("b.flv"),
            &["-H", "X-Forwarded-For: 192.0.2.1, 203.0.113.50"],
        ),
    ];
    assert!(
        wait(Duration::from_secs(10), || viewer_peers(&gw).len() == 2),
        "{:?}",
        viewer_peers(&gw)
    );
    let got = viewer_peers(&gw);
    // curl's header names itself (127.0.0.1 with its own port); the right-most forwarded
    // address that is not a trusted proxy is the client, its port unknown.
    assert!(
        got.iter().any(|p| p.ip().is_loopback() && p.port() != 0),
        "{got:?}"
    );
    assert!(got.contains(&"203.0.113.50:0".parse().unwrap()), "{got:?}");
    for v in &mut viewers {
        v.kill();
    }
}

#[test]
fn forwarded_addresses_from_untrusted_peers_change_nothing() {
    ensure_tools();
    for trusted in [&[][..], &["10.0.0.0/8"][..]] {
        let gw = gateway(trusted, 100);
        let rt = runtime();
        // A PROXY line from an untrusted peer is not RTMP: the connection fails.
        let header = b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 1935\r\n";
        assert!(rtmp_after(&rt, &gw, header).is_none());
        let _publisher = publish(&gw);
        let dir = tempfile::tempdir().unwrap();
        let url = format!("http://{}/live/cam.flv", gw.http_addr());
        let mut viewer = curl_viewer(
            &url,
            &dir.path().join("v.flv"),
            &["-H", "X-Forwarded-For: 203.0.113.7"],
        );
        assert!(wait(Duration::from_secs(10), || viewer_peers(&gw).len() == 1));
        let got = viewer_peers(&gw);
        assert!(got[0].ip().is_loopback() && got[0].port() != 0, "{got:?}");
        assert!(
            !gw.core()
                .clients()
                .list()
                .iter()
                .any(|c| c.peer.ip().to_string() == "203.0.113.7"),
            "a spoofed address reached the client table"
        );
        viewer.kill();
    }
    // The admin listener has its own list: rtmp.trusted_proxies never opens it.
    let mut c = Config::default();
    c.rtmp.trusted_proxies = vec!["127.0.0.1".into()];
    c.admin.listen = "127.0.0.1:0".parse().unwrap();
    c.admin.allow = vec!["203.0.113.0/24".into()];
    let gw = Gateway::start_with(c);
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        "X-Forwarded-For: 203.0.113.7",
    ])
    .arg(format!("http://{}/api/v1/streams", gw.admin_addr()));
    let out = run_capture(cmd, Duration::from_secs(15));
    assert_ne!(
        out.stdout.trim(),
        "200",
        "the admin API believed a forwarded address"
    );
}
