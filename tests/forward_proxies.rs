//! RTMPT and RTMPTS through the forward proxies clients sit behind: Squid configured like a
//! corporate proxy (HTTP only, ports 80/443/8080), tinyproxy, and a test proxy that buffers,
//! caps, adds `Via`/`X-Forwarded-For`, closes every connection, retries requests and times
//! out slow replies. Each client (ffmpeg, rtmpdump, the project's own client) runs inside a
//! network namespace whose only way out is the proxy; README "Through HTTP proxies" has the
//! table these tests prove.

mod common;
mod gateway;
mod proxies;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use gateway::{Gateway, write_cert};
use proxies::test_proxy::{Behaviour, Stats, TestProxy};
use proxies::{Place, ProxyProc, start_squid, start_tinyproxy};
use wasmgate::config::Config;

/// ffmpeg's RTMPTS through a proxy: the TLS layer reaches the proxy through the `httpproxy`
/// protocol (CONNECT), which the default whitelist of the tunnel's inner layers leaves out.
const RTMPTS_WHITELIST: &str = "rtmpts,ffrtmphttp,https,http,tcp,tls,httpproxy";

fn tls_gateway(dir: &Path, mut config: Config) -> Gateway {
    let (cert, key) = write_cert(dir);
    config.tls.cert = Some(cert);
    config.tls.key = Some(key);
    Gateway::start_with(config)
}

fn with_proxy(cmd: &mut Command, proxy: &str) {
    cmd.env("http_proxy", proxy)
        .env_remove("no_proxy")
        .env_remove("NO_PROXY")
        .env_remove("https_proxy");
}

fn whitelist(url: &str) -> Vec<&'static str> {
    if url.starts_with("rtmpts://") {
        vec!["-protocol_whitelist", RTMPTS_WHITELIST]
    } else {
        vec![]
    }
}

/// ffmpeg publishing `seconds` of the long fixture in real time to `url`, where `place` runs
/// clients, through `proxy` (`http_proxy`).
fn publish_via(place: &Place, proxy: &str, url: &str, seconds: u32) -> Proc {
    ensure_tools();
    let mut cmd = place.command("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "info", "-re", "-i"])
        .arg(fixture_flv_long())
        .args(["-t", &seconds.to_string(), "-c", "copy"])
        .args(whitelist(url))
        .args(["-rw_timeout", "10000000", "-f", "flv", url]);
    with_proxy(&mut cmd, proxy);
    let hard = Duration::from_secs(u64::from(seconds) + 30);
    Proc::spawn("ffmpeg-publish", cmd, vec![(hard, Signal::Kill)])
}

/// ffmpeg playing `seconds` of `url` into `out`, through `proxy`.
fn play_via(place: &Place, proxy: &str, url: &str, out: &Path, seconds: f64) -> Proc {
    ensure_tools();
    let mut cmd = place.command("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "info"])
        .args(whitelist(url))
        .args([
            "-rw_timeout",
            "10000000",
            "-i",
            url,
            "-t",
            &seconds.to_string(),
        ])
        .args(["-c", "copy", "-flush_packets", "1", "-f", "flv", "-y"])
        .arg(out);
    with_proxy(&mut cmd, proxy);
    Proc::spawn(
        "ffmpeg-play",
        cmd,
        vec![(Duration::from_secs(40), Signal::Kill)],
    )
}

/// A publisher and a player, both through `proxy` over `scheme`: the publisher's stream
/// arrives and the player records real audio and video of it.
fn publish_and_play_through(
    dir: &Path,
    gw: &Gateway,
    place: &Place,
    proxy: &str,
    scheme: &str,
) -> PathBuf {
    let url = format!("{scheme}://{}/live/proxied", gw.http_addr());
    let mut publisher = publish_via(place, proxy, &url, 12);
    assert!(
        wait_until(Duration::from_secs(15), || gw.publishing() == 1),
        "{scheme} publisher through {proxy} never started: {}",
        publisher.stderr()
    );
    let out = dir.join(format!("{scheme}.flv"));
    let mut player = play_via(place, proxy, &url, &out, 3.0);
    // Both sessions are of `scheme` (a retried `/open/1` adds an unused one of the same kind).
    assert!(
        wait_until(Duration::from_secs(15), || {
            let t = gw.transports();
            t.len() >= 2 && t.iter().all(|t| *t == scheme)
        }),
        "transports {:?}: {}",
        gw.transports(),
        player.stderr()
    );
    let s = player.finish(Duration::from_secs(45));
    assert!(
        s.success(),
        "{scheme} player through {proxy} failed: {}",
        player.stderr()
    );
    assert_av_file(&out);
    assert!(
        publisher.is_running(),
        "{scheme} publisher through {proxy} dropped: {}",
        publisher.stderr()
    );
    out
}

/// Without the proxy the namespace cannot reach the gateway at all (so the proxy is the only
/// way the media can have come).
fn assert_no_direct_route(place: &Place, gw: &Gateway, dir: &Path) {
    if place.netns.is_none() {
        return;
    }
    let url = format!("rtmpt://{}/live/proxied", gw.http_addr());
    let mut cmd = place.command("ffmpeg");
    cmd.args([
        "-nostdin",
        "-hide_banner",
        "-rw_timeout",
        "3000000",
        "-i",
        &url,
    ])
    .args(["-t", "1", "-c", "copy", "-f", "flv", "-y"])
    .arg(dir.join("direct.flv"))
    .env_remove("http_proxy");
    let mut d = Proc::spawn(
        "ffmpeg-direct",
        cmd,
        vec![(Duration::from_secs(15), Signal::Kill)],
    );
    let s = d.finish(Duration::from_secs(20));
    assert!(
        !s.success(),
        "the namespace reached the gateway without the proxy"
    );
}

fn squid_for(dir: &Path, place: &Place, gw: &Gateway) -> ProxyProc {
    start_squid(
        dir,
        &place.proxy_ip(),
        &place.client_net(),
        gw.http_addr().port(),
    )
}

/// curl through `proxy` from where the clients run; returns its stderr and the HTTP status.
fn curl_via(place: &Place, proxy: &str, args: &[&str]) -> (String, String) {
    let mut cmd = place.command("curl");
    cmd.args([
        "-s",
        "-S",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-m",
        "10",
    ])
    .args(["-x", proxy])
    .args(args);
    let out = run_capture(cmd, Duration::from_secs(15));
    (out.stderr, out.stdout)
}

// ---------------------------------------------------------------------------
// Squid: a corporate proxy that allows HTTP to 80/443/8080 and CONNECT to 443 only
// ---------------------------------------------------------------------------

#[test]
fn squid_carries_rtmpt_publish_and_play_and_refuses_other_ports() {
    ensure_tools();
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start();
    let place = Place::new();
    let squid = squid_for(dir.path(), &place, &gw);
    assert_no_direct_route(&place, &gw, dir.path());
    publish_and_play_through(dir.path(), &gw, &place, &squid.url(), "rtmpt");
    let port = gw.http_addr().port();
    assert!(
        squid.wait_log(
            &format!("POST http://127.0.0.1:{port}/send/"),
            Duration::from_secs(5)
        ),
        "squid never carried the tunnel:\n{}",
        squid.log()
    );
    // The ACLs are real: the gateway's RTMP port is not a Safe_port.
    let (_, code) = curl_via(
        &place,
        &squid.url(),
        &[
            "-X",
            "POST",
            &format!("http://127.0.0.1:{}/open/1", gw.addr.port()),
        ],
    );
    assert_eq!(
        code, "403",
        "squid let plain HTTP reach a port outside Safe_ports"
    );
}

#[test]
fn squid_carries_rtmpts_publish_and_play_over_connect() {
    ensure_tools();
    let dir = tempfile::tempdir().unwrap();
    let gw = tls_gateway(dir.path(), Config::default());
    let place = Place::new();
    let squid = squid_for(dir.path(), &place, &gw);
    publish_and_play_through(dir.path(), &gw, &place, &squid.url(), "rtmpts");
    let port = gw.http_addr().port();
    assert!(
        squid.wait_log(
            &format!("CONNECT 127.0.0.1:{port}"),
            Duration::from_secs(10)
        ),
        "squid never carried the TLS tunnel:\n{}",
        squid.log()
    );
    // CONNECT only to SSL_ports: not to the RTMP port (curl reports the proxy's 403).
    let (err, _) = curl_via(
        &place,
        &squid.url(),
        &[
            "-p",
            "-k",
            &format!("https://127.0.0.1:{}/", gw.addr.port()),
        ],
    );
    assert!(
        err.contains("403"),
        "CONNECT to the RTMP port was not refused: {err}"
    );
}

// ---------------------------------------------------------------------------
// tinyproxy: one request per client connection
// ---------------------------------------------------------------------------

#[test]
fn tinyproxy_carries_rtmpts_publish_and_play_over_connect() {
    ensure_tools();
    let dir = tempfile::tempdir().unwrap();
    let gw = tls_gateway(dir.path(), Config::default());
    let place = Place::new();
    let tp = start_tinyproxy(dir.path(), &place.proxy_ip(), &place.client_net());
    assert_no_direct_route(&place, &gw, dir.path());
    publish_and_play_through(dir.path(), &gw, &place, &tp.url(), "rtmpts");
    let port = gw.http_addr().port();
    assert!(
        tp.log().contains(&format!("CONNECT 127.0.0.1:{port}")),
        "tinyproxy never carried the tunnel:\n{}",
        tp.log()
    );
}

/// tinyproxy 1.11 answers each request and closes the client connection (it sends no
/// `Connection: close`); ffmpeg 5.1's rtmphttp sends every request of a session on its one
/// HTTP connection and never opens another (`ff_http_do_new_request2`), so its second request
/// (`/send/<id>/0`, the RTMP handshake) goes into the closed socket. The `/open/1` request does
/// reach the gateway through the proxy; the session then dies client-side.
#[test]
fn tinyproxy_plain_rtmpt_fails_in_ffmpeg_after_open_because_ffmpeg_never_reconnects() {
    ensure_tools();
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start();
    let place = Place::new();
    let tp = start_tinyproxy(dir.path(), &place.proxy_ip(), &place.client_net());
    let url = format!("rtmpt://{}/live/tiny", gw.http_addr());
    let mut publisher = publish_via(&place, &tp.url(), &url, 3);
    let s = publisher.finish(Duration::from_secs(30));
    let out = dir.path().join("tiny.flv");
    let mut player = play_via(&place, &tp.url(), &url, &out, 2.0);
    let p = player.finish(Duration::from_secs(30));
    for (proc, status) in [(&publisher, s), (&player, p)] {
        assert!(
            !status.success(),
            "{} worked through tinyproxy",
            proc.name()
        );
        assert!(
            proc.stderr()
                .contains("Cannot read RTMP handshake response"),
            "{} failed differently: {}",
            proc.name(),
            proc.stderr()
        );
    }
    let log = tp.log();
    let port = gw.http_addr().port();
    assert!(
        log.contains(&format!("POST http://127.0.0.1:{port}/open/1")),
        "the requests did not reach tinyproxy:\n{log}"
    );
    assert!(
        !log.contains("/send/"),
        "a /send got through tinyproxy:\n{log}"
    );
    assert!(
        gw.server.tunnel.stats().opened >= 2,
        "{:?}",
        gw.server.tunnel.stats()
    );
}

// ---------------------------------------------------------------------------
// rtmpdump (librtmp 2.4): no HTTP proxy support
// ---------------------------------------------------------------------------

/// librtmp connects RTMPT straight to the server (`HTTP_Post` writes on its own socket; the
/// only proxy it knows is SOCKS4 via `--socks`): `http_proxy` is ignored, so from the namespace
/// it cannot connect and the proxy sees nothing.
#[test]
fn rtmpdump_ignores_http_proxy() {
    ensure_tools();
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start();
    let place = Place::new();
    if place.netns.is_none() {
        eprintln!("no namespace: rtmpdump would reach the gateway directly; nothing to show");
        return;
    }
    let squid = squid_for(dir.path(), &place, &gw);
    let _publisher = ffmpeg_publish(&gw.url("live/rd"), &fixture_flv_long());
    assert!(wait_until(Duration::from_secs(10), || gw.publishing() == 1));
    let out = dir.path().join("rd.flv");
    let mut cmd = place.command("rtmpdump");
    cmd.args([
        "-r",
        &format!("rtmpt://{}/live/rd", gw.http_addr()),
        "-v",
        "-m",
        "5",
        "-o",
    ])
    .arg(&out);
    with_proxy(&mut cmd, &squid.url());
    let mut rd = Proc::spawn(
        "rtmpdump",
        cmd,
        vec![(Duration::from_secs(20), Signal::Kill)],
    );
    let s = rd.finish(Duration::from_secs(25));
    assert!(!s.success(), "rtmpdump got through: {}", rd.stderr());
    assert!(
        rd.stderr()
            .contains("RTMP_Connect0, failed to connect socket. 111 (Connection refused)"),
        "rtmpdump failed differently: {}",
        rd.stderr()
    );
    assert_eq!(file_len(&out), 0);
    assert!(!squid.log().contains("/open/1"), "{}", squid.log());
    assert_eq!(gw.server.tunnel.stats().opened, 0);
}

// ---------------------------------------------------------------------------
// The test proxy's misbehaviours
// ---------------------------------------------------------------------------

fn test_proxy(place: &Place, b: Behaviour) -> TestProxy {
    TestProxy::start(&place.proxy_ip(), b)
}

/// Buffers whole bodies both ways, adds `Via` and `X-Forwarded-For`: ffmpeg publishes and
/// plays; with the proxy in `rtmp.trusted_proxies` the gateway names the forwarded client.
#[test]
fn buffering_proxy_adding_via_and_forwarded_for() {
    ensure_tools();
    let dir = tempfile::tempdir().unwrap();
    let place = Place::new();
    let mut config = Config::default();
    // The proxy reaches the gateway from the host's loopback.
    config.rtmp.trusted_proxies = vec!["127.0.0.1".into()];
    let gw = Gateway::start_with(config);
    let proxy = test_proxy(
        &place,
        Behaviour {
            forwarded_for: Some("192.0.2.44".into()),
            ..Behaviour::default()
        },
    );
    publish_and_play_through(dir.path(), &gw, &place, &proxy.url(), "rtmpt");
    let peers: Vec<String> = gw
        .core()
        .clients()
        .list()
        .iter()
        .map(|c| c.peer.ip().to_string())
        .collect();
    // The right-most untrusted X-Forwarded-For entry: the client as the proxy saw it (the
    // namespace's address; without a namespace the client is the trusted 127.0.0.1, so the
    // entry before it). The player has left; the publisher is still on.
    let want = match &place.netns {
        Some(ns) => match ns.host_ip.rsplit_once('.') {
            Some((net, _)) => format!("{net}.2"),
            None => ns.host_ip.clone(),
        },
        None => "192.0.2.44".to_string(),
    };
    assert!(
        !peers.is_empty() && peers.iter().all(|p| *p == want),
        "{peers:?}"
    );
    assert!(Stats::get(&proxy.stats.requests) > 20);
}

/// A proxy that refuses reply bodies over 64 KiB (like Squid's `reply_body_max_size`): with
/// `http.max_reply_bytes` under the cap no reply is ever refused.
#[test]
fn proxy_capping_reply_bodies() {
    ensure_tools();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.http.max_reply_bytes = 32 * 1024;
    let gw = Gateway::start_with(config);
    let place = Place::new();
    let proxy = test_proxy(
        &place,
        Behaviour {
            cap: Some(64 * 1024),
            ..Behaviour::default()
        },
    );
    publish_and_play_through(dir.path(), &gw, &place, &proxy.url(), "rtmpt");
    assert_eq!(Stats::get(&proxy.stats.capped), 0);
    let largest = Stats::get(&proxy.stats.largest_body);
    assert!(largest <= 32 * 1024 + 1, "a reply of {largest} bytes");
}

/// Sends every request twice: the gateway answers the repeated sequence number with the same
/// reply, so neither direction loses or doubles a byte.
#[test]
fn proxy_sending_every_request_twice() {
    ensure_tools();
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start();
    let place = Place::new();
    let proxy = test_proxy(
        &place,
        Behaviour {
            retry: true,
            ..Behaviour::default()
        },
    );
    publish_and_play_through(dir.path(), &gw, &place, &proxy.url(), "rtmpt");
    assert!(Stats::get(&proxy.stats.retries) > 20);
    assert_eq!(Stats::get(&proxy.stats.retry_mismatches), 0);
}

// ---------------------------------------------------------------------------
// The project's own client through proxies ffmpeg cannot use
// ---------------------------------------------------------------------------

use proxies::rtmpt::{self, ClientStats};
use std::net::SocketAddr;
use std::sync::Arc;
use wasmgate::client::RtmpClient;
use wasmgate::rtmp::client::{ClientConfig, ClientEvent};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The project's client on `live`: over RTMPT through `via`, or over TCP.
async fn own_client(
    gw: &Gateway,
    via: Option<SocketAddr>,
) -> (RtmpClient, Option<Arc<ClientStats>>) {
    let cfg = ClientConfig::new("live", format!("rtmp://{}/live", gw.http_addr()));
    let limit = Duration::from_secs(15);
    match via {
        Some(proxy) => {
            let (stream, stats) = rtmpt::connect(proxy, gw.http_addr());
            let c = tokio::time::timeout(limit, RtmpClient::connect_over(stream, cfg))
                .await
                .expect("RTMPT connect through the proxy timed out")
                .expect("RTMPT connect through the proxy");
            (c, Some(stats))
        }
        None => (
            RtmpClient::connect_with(&gw.addr.to_string(), cfg)
                .await
                .expect("RTMP connect"),
            None,
        ),
    }
}

/// A publisher and a player of the project's client, each through `via`: `n` numbered video
/// keyframes sent over ~2 s arrive exactly once and in order. Returns the tunnels' counters.
fn numbered_frames_arrive(gw: &Gateway, via: SocketAddr, n: u32) -> [Arc<ClientStats>; 2] {
    rt().block_on(async {
        let limit = Duration::from_secs(15);
        let (mut publisher, ps) = own_client(gw, Some(via)).await;
        let sid = publisher.start_publish("seq", limit).await.unwrap();
        let (mut player, ls) = own_client(gw, Some(via)).await;
        player.start_play("seq", -1.0, limit).await.unwrap();
        publisher
            .session()
            .send_media(sid, 9, 0, &[0x17, 0, 0, 0, 0, 1, 2, 3]);
        publisher.flush().await.unwrap();
        let send = async {
            for i in 0..n {
                let mut frame = vec![0x17, 1, 0, 0, 0];
                frame.extend_from_slice(&i.to_be_bytes());
                publisher.session().send_media(sid, 9, 40 * (i + 1), &frame);
                publisher.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            publisher
        };
        let receive = async {
            let mut got = Vec::new();
            while got.last() != Some(&(n - 1)) {
                match player.next_event_timeout(limit).await {
                    Ok(ClientEvent::Media {
                        type_id: 9,
                        payload,
                        ..
                    }) if payload.len() == 9 && payload[1] == 1 => {
                        got.push(u32::from_be_bytes([
                            payload[5], payload[6], payload[7], payload[8],
                        ]));
                    }
                    Ok(_) => {}
                    Err(e) => panic!("player stopped after {} frames: {e}", got.len()),
                }
            }
            got
        };
        let (_publisher, got) = tokio::join!(send, receive);
        let want: Vec<u32> = (0..n).collect();
        assert_eq!(got, want, "frames lost, doubled or reordered");
        [ps.unwrap(), ls.unwrap()]
    })
}

/// Closes both connections after every request (`Connection: close`), so every request of a
/// session comes on a new TCP connection: the session is its id, not its connection, and lives
/// on. ffmpeg 5.1 stops at the first `Connection: close` (`ff_http_do_new_request2` returns
/// EOF when the last reply said close), which the second half shows.
#[test]
fn proxy_closing_every_connection() {
    ensure_tools();
    let gw = Gateway::start();
    let place = Place::new();
    let proxy = test_proxy(
        &place,
        Behaviour {
            close_each: true,
            ..Behaviour::default()
        },
    );
    let stats = numbered_frames_arrive(&gw, proxy.addr, 100);
    for s in &stats {
        let (req, conns) = (
            ClientStats::get(&s.requests),
            ClientStats::get(&s.connections),
        );
        assert!(
            req >= 10 && conns >= req,
            "{req} requests on {conns} connections"
        );
    }
    assert!(Stats::get(&proxy.stats.upstream_connections) >= Stats::get(&proxy.stats.requests));
    // ffmpeg through the same proxy.
    let dir = tempfile::tempdir().unwrap();
    let _publisher = ffmpeg_publish(&gw.url("live/ff"), &fixture_flv_long());
    assert!(wait_until(Duration::from_secs(10), || gw.publishing() >= 1));
    let url = format!("rtmpt://{}/live/ff", gw.http_addr());
    let mut p = play_via(&place, &proxy.url(), &url, &dir.path().join("ff.flv"), 2.0);
    let s = p.finish(Duration::from_secs(30));
    assert!(!s.success(), "ffmpeg survived Connection: close");
    assert!(
        p.stderr().contains("Cannot read RTMP handshake response"),
        "ffmpeg failed differently: {}",
        p.stderr()
    );
}

/// The retrying proxy again, with exact accounting: every frame once, in order, both ways.
#[test]
fn proxy_retries_lose_and_double_nothing() {
    let gw = Gateway::start();
    let proxy = TestProxy::start(
        "127.0.0.1",
        Behaviour {
            retry: true,
            ..Behaviour::default()
        },
    );
    numbered_frames_arrive(&gw, proxy.addr, 100);
    assert!(Stats::get(&proxy.stats.retries) > 20);
    assert_eq!(Stats::get(&proxy.stats.retry_mismatches), 0);
}

/// A proxy that gives up on a reply after 300 ms (504, upstream connection dropped) in front
/// of a gateway that holds idle polls 512 ms (`latency = "medium"`): every empty poll times
/// out, the client repeats it, and the gateway answers the repeat with the held poll's reply.
#[test]
fn proxy_timing_out_held_polls() {
    let mut config = Config::default();
    config.http.latency = wasmgate::config::Latency::Medium;
    let gw = Gateway::start_with(config);
    let proxy = TestProxy::start(
        "127.0.0.1",
        Behaviour {
            response_timeout: Some(Duration::from_millis(300)),
            client_idle_timeout: Some(Duration::from_secs(2)),
            ..Behaviour::default()
        },
    );
    let stats = numbered_frames_arrive(&gw, proxy.addr, 60);
    // The first held poll of a session times out; after that the session holds polls for at
    // most half as long as that one lasted, and they come back in time.
    let timed_out = Stats::get(&proxy.stats.timed_out);
    assert!(timed_out > 0, "no poll was held long enough");
    assert!(
        timed_out <= 4,
        "{timed_out} polls timed out: the holds did not adapt"
    );
    assert!(stats.iter().any(|s| ClientStats::get(&s.repeats) > 0));
}

/// The same proxy with the default `latency = "low"` (128 ms holds) and a timeout of a few
/// seconds, as real proxies have: ffmpeg plays, connecting before the stream exists so its
/// first polls are all held, and no request ever times out.
#[test]
fn held_polls_stay_under_a_proxy_timeout() {
    ensure_tools();
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start();
    let place = Place::new();
    let proxy = test_proxy(
        &place,
        Behaviour {
            response_timeout: Some(Duration::from_secs(2)),
            client_idle_timeout: Some(Duration::from_secs(2)),
            ..Behaviour::default()
        },
    );
    let url = format!("rtmpt://{}/live/late", gw.http_addr());
    let out = dir.path().join("late.flv");
    let mut player = play_via(&place, &proxy.url(), &url, &out, 3.0);
    assert!(wait_until(Duration::from_secs(10), || gw.transports() == ["rtmpt"]));
    std::thread::sleep(Duration::from_secs(3));
    let _publisher = ffmpeg_publish(&gw.url("live/late"), &fixture_flv_long());
    let s = player.finish(Duration::from_secs(45));
    assert!(s.success(), "player failed: {}", player.stderr());
    assert_av_file(&out);
    assert_eq!(Stats::get(&proxy.stats.timed_out), 0);
    assert_eq!(
        Stats::get(&proxy.stats.idle_closed),
        0,
        "ffmpeg's connection idled"
    );
}

/// What librtmp does support: a SOCKS4 proxy (`rtmpdump -S host:port`). It works for plain
/// RTMP; for RTMPT librtmp 2.4 sends its SOCKS request through `WriteN`, which for an HTTP
/// protocol wraps it in an RTMPT `POST` (`HTTP_Post`) — the SOCKS proxy never sees a SOCKS
/// request and librtmp reports `SOCKS negotiation failed`.
#[test]
fn rtmpdump_through_socks4_plays_rtmp_but_not_rtmpt() {
    ensure_tools();
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start();
    let place = Place::new();
    let socks = proxies::test_proxy::Socks4::start(&place.proxy_ip());
    let _publisher = ffmpeg_publish(&gw.url("live/socks"), &fixture_flv_long());
    assert!(wait_until(Duration::from_secs(10), || gw.publishing() == 1));
    let run = |url: String, out: &Path| {
        let mut cmd = place.command("rtmpdump");
        cmd.args([
            "-r",
            &url,
            "-v",
            "-m",
            "10",
            "-S",
            &socks.addr.to_string(),
            "-o",
        ])
        .arg(out);
        // rtmpdump ignores -B for live streams: SIGINT after 5 s ends the recording (exit 2).
        let mut rd = Proc::spawn(
            "rtmpdump",
            cmd,
            vec![
                (Duration::from_secs(5), Signal::Int),
                (Duration::from_secs(20), Signal::Kill),
            ],
        );
        rd.finish(Duration::from_secs(25));
        rd.stderr()
    };
    let out = dir.path().join("socks.flv");
    run(format!("rtmp://{}/live/socks", gw.addr), &out);
    assert_av_file(&out);
    assert_eq!(socks.carried.load(std::sync::atomic::Ordering::SeqCst), 1);
    let out_t = dir.path().join("socks-t.flv");
    let err = run(format!("rtmpt://{}/live/socks", gw.http_addr()), &out_t);
    assert!(err.contains("SOCKS negotiation failed"), "{err}");
    assert_eq!(file_len(&out_t), 0);
    assert_eq!(gw.server.tunnel.stats().opened, 0);
}
