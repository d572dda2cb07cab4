//! The RTMPT tunnel's counters in the admin listener's Prometheus `/metrics`: an ffmpeg
//! `rtmpt://` publish moves sessions, requests and bytes; refused requests count by reason; a
//! client that vanishes without `/close` is counted when its session expires.

mod common;
mod gateway;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use gateway::Gateway;
use wasmgate::config::Config;

/// One HTTP/1.1 request on a fresh connection: (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    s.write_all(&req).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of one series (name with its labels, exactly) in Prometheus text.
fn metric(text: &str, series: &str) -> f64 {
    prometheus_value(text, series).unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

#[test]
fn an_ffmpeg_rtmpt_publish_moves_the_tunnel_counters() {
    ensure_tools();
    let mut c = Config::default();
    c.admin.listen = "127.0.0.1:0".parse().unwrap();
    c.http.session_idle_timeout_secs = 1;
    let gw = Gateway::start_with(c);
    let admin = gw.admin_addr();
    let scrape = || http(admin, "GET", "/metrics", b"").1;

    let before = scrape();
    for series in [
        "wasmgate_tunnel_sessions",
        "wasmgate_tunnel_sessions_opened_total",
        "wasmgate_tunnel_sessions_closed_total",
        "wasmgate_tunnel_sessions_expired_total",
        "wasmgate_tunnel_requests_total",
        "wasmgate_tunnel_bytes_in_total",
        "wasmgate_tunnel_bytes_out_total",
        "wasmgate_tunnel_errors_total{reason=\"out_of_order\"}",
        "wasmgate_tunnel_errors_total{reason=\"session_limit\"}",
    ] {
        assert_eq!(
            metric(&before, series),
            0.0,
            "{series} before any tunnel use"
        );
    }

    let mut publisher = ffmpeg_publish(
        &format!("rtmpt://{}/live/metered", gw.http_addr()),
        &fixture_flv_long(),
    );
    assert!(
        wait_until(Duration::from_secs(10), || gw.publishing() == 1),
        "rtmpt publisher never started: {}",
        publisher.stderr()
    );
    // Media keeps flowing through /send: the request and byte counters keep climbing.
    let mut m = scrape();
    assert!(
        wait_until(Duration::from_secs(10), || {
            m = scrape();
            metric(&m, "wasmgate_tunnel_bytes_in_total") > 100_000.0
        }),
        "tunnel bytes in stayed low:\n{m}"
    );
    assert_eq!(metric(&m, "wasmgate_tunnel_sessions"), 1.0);
    assert_eq!(metric(&m, "wasmgate_tunnel_sessions_opened_total"), 1.0);
    assert!(metric(&m, "wasmgate_tunnel_requests_total") > 10.0);
    // S0+S1+S2 and the connect/publish answers went back in replies.
    assert!(metric(&m, "wasmgate_tunnel_bytes_out_total") > 3073.0);
    let requests = metric(&m, "wasmgate_tunnel_requests_total");
    assert!(wait_until(Duration::from_secs(5), || metric(
        &scrape(),
        "wasmgate_tunnel_requests_total"
    ) > requests));

    // Refusals count by reason, and the publisher is unaffected.
    let http_addr = gw.http_addr();
    let unknown = "/idle/00112233445566778899aabbccddeeff/0";
    assert_eq!(http(http_addr, "POST", unknown, b"\0").0, 404);
    assert_eq!(http(http_addr, "POST", unknown, b"\0").0, 404);
    assert_eq!(http(http_addr, "GET", "/open/1", b"").0, 405);
    assert_eq!(http(http_addr, "POST", "/idle/x/y", b"\0").0, 400);
    let m = scrape();
    assert_eq!(
        metric(
            &m,
            "wasmgate_tunnel_errors_total{reason=\"unknown_session\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(&m, "wasmgate_tunnel_errors_total{reason=\"bad_method\"}"),
        1.0
    );
    assert_eq!(
        metric(&m, "wasmgate_tunnel_errors_total{reason=\"bad_sequence\"}"),
        1.0
    );
    assert!(publisher.is_running(), "{}", publisher.stderr());

    // ffmpeg killed: no /close comes; the idle session expires and is counted.
    publisher.kill();
    let mut m = scrape();
    assert!(
        wait_until(Duration::from_secs(10), || {
            m = scrape();
            metric(&m, "wasmgate_tunnel_sessions_expired_total") == 1.0
        }),
        "the abandoned session never expired:\n{m}"
    );
    assert_eq!(metric(&m, "wasmgate_tunnel_sessions"), 0.0);
    assert_eq!(metric(&m, "wasmgate_tunnel_sessions_closed_total"), 0.0);
}
