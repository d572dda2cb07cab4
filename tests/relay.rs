//! RTMP relays end to end: push to nginx-rtmp and to a second gateway (and through a target
//! restart), an edge pulling from nginx-rtmp, nginx-rtmp pulling from a gateway origin, a
//! chain origin -> edge -> edge with 50 players costing one upstream, the hop limit, and
//! edge players resuming after the origin gateway is killed and restarted.

mod common;
mod gateway;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::nginx::Nginx;
use common::*;
use gateway::Gateway;
use wasmgate::client::RtmpClient;
use wasmgate::config::{Config, EdgePublish, PullRule, PushRule};
use wasmgate::gateway::RelayStatus;
use wasmgate::rtmp::amf::Amf0Value;
use wasmgate::rtmp::client::ClientEvent;

fn relay_config() -> Config {
    let mut c = Config::default();
    c.admin.listen = "127.0.0.1:0".parse().unwrap();
    c.relay.backoff_initial_ms = 200;
    c.relay.backoff_max_ms = 1000;
    c.relay.connect_timeout_ms = 3000;
    c
}

fn pull_from(origins: &[String], idle_ms: u64) -> Config {
    let mut c = relay_config();
    c.relay.pull.push(PullRule {
        app: "live".into(),
        origins: origins.to_vec(),
        idle_timeout_ms: idle_ms,
        mode: EdgePublish::Refuse,
    });
    c
}

fn nginx_rtmp(dir: &Path, port: u16, app_extra: &str) -> Nginx {
    let body = format!(
        "rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096; \
         application live {{ live on; {app_extra} }} }} }}\n"
    );
    Nginx::start(dir, &body, &[port])
}

fn relays(gw: &Gateway) -> Vec<RelayStatus> {
    gw.core().relay_status()
}

fn live_relays(gw: &Gateway, kind: &str) -> usize {
    relays(gw)
        .iter()
        .filter(|r| r.kind == kind && r.state == "live")
        .count()
}

/// A plain HTTP/1.1 GET on the admin listener; the body.
fn admin_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("admin connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

fn play_and_check(url: &str, dir: &Path, name: &str) {
    let out = dir.join(name);
    let mut p = ffmpeg_play(url, &out, 3.0);
    let st = p.finish(Duration::from_secs(40));
    assert!(st.success(), "ffmpeg play {url}: {}", p.stderr());
    assert_av_file(&out);
}

#[test]
fn push_to_nginx_and_a_second_gateway_survives_a_target_restart() {
    ensure_tools();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let nginx = nginx_rtmp(dir.path(), port, "");
    let second = Gateway::start();
    let mut c = relay_config();
    c.relay.push.push(PushRule {
        app: "live".into(),
        targets: vec![
            format!("rtmp://127.0.0.1:{port}/live"),
            second.url("live?from=relay"),
        ],
    });
    let gw = Gateway::start_with(c);
    let mut publisher = ffmpeg_publish(&gw.url("live/cam?token=abc"), &fixture_flv_long());
    assert!(
        wait_until(Duration::from_secs(15), || live_relays(&gw, "push") == 2),
        "pushes not live: {:?}\n{}",
        relays(&gw),
        publisher.stderr()
    );
    // The second gateway has the stream (its name and query: cam?from=relay&token=abc).
    assert!(wait_until(Duration::from_secs(5), || second.publishing() == 1));
    play_and_check(
        &format!("rtmp://127.0.0.1:{port}/live/cam"),
        dir.path(),
        "nginx1.flv",
    );
    play_and_check(&second.url("live/cam"), dir.path(), "second.flv");

    // The target dies and comes back on the same port: the push reconnects by itself.
    nginx.stop();
    assert!(
        wait_until(Duration::from_secs(10), || relays(&gw)
            .iter()
            .any(|r| r.url.contains(&port.to_string()) && r.reconnects >= 1)),
        "{:?}",
        relays(&gw)
    );
    let nginx = nginx_rtmp(dir.path(), port, "");
    assert!(
        wait_until(Duration::from_secs(15), || live_relays(&gw, "push") == 2),
        "{:?}\n{}",
        relays(&gw),
        nginx.error_log()
    );
    play_and_check(
        &format!("rtmp://127.0.0.1:{port}/live/cam"),
        dir.path(),
        "nginx2.flv",
    );
    assert!(
        publisher.is_running(),
        "the publisher noticed: {}",
        publisher.stderr()
    );
    assert_eq!(second.publishing(), 1, "the healthy target kept its stream");

    let api = admin_get(gw.admin_addr(), "/api/v1/relays");
    let v: serde_json::Value = serde_json::from_str(&api).expect(&api);
    let list = v.as_array().expect("array");
    assert_eq!(list.len(), 2, "{api}");
    assert!(
        list.iter().all(|r| r["bytes"].as_u64().unwrap() > 100_000
            && r["stream"] == "live/_definst_/cam"
            && !r["url"].as_str().unwrap().contains('?')),
        "{api}"
    );
    let metrics = admin_get(gw.admin_addr(), "/metrics");
    assert!(
        prometheus_value(&metrics, "wasmgate_relay_reconnects_total{kind=\"push\"}")
            .is_some_and(|v| v >= 1.0),
        "{metrics}"
    );
    assert_eq!(
        prometheus_value(&metrics, "wasmgate_relays{kind=\"push\"}"),
        Some(2.0)
    );
    publisher.kill();
    assert!(wait_until(Duration::from_secs(10), || relays(&gw).is_empty()));
    nginx.stop();
}

#[test]
fn edge_pulls_from_nginx_origin_for_ffmpeg_and_rtmpdump() {
    ensure_tools();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _nginx = nginx_rtmp(dir.path(), port, "");
    let mut publisher = ffmpeg_publish(
        &format!("rtmp://127.0.0.1:{port}/live/cam"),
        &fixture_flv_long(),
    );
    std::thread::sleep(Duration::from_secs(1));
    let edge = Gateway::start_with(pull_from(&[format!("rtmp://127.0.0.1:{port}/live")], 500));
    let f_out = dir.path().join("ffmpeg.flv");
    let r_out = dir.path().join("rtmpdump.flv");
    let mut f = ffmpeg_play(&edge.url("live/cam"), &f_out, 3.0);
    let mut r = rtmpdump_play(&edge.url("live/cam"), &r_out, 4);
    assert!(
        f.finish(Duration::from_secs(40)).success(),
        "{}",
        f.stderr()
    );
    r.finish(Duration::from_secs(40));
    assert_av_file(&f_out);
    assert_av_file(&r_out);
    // Publishing on an edge app is refused (mode = "refuse").
    let rt = tokio::runtime::Runtime::new().unwrap();
    let refused = rt.block_on(async {
        let mut c = RtmpClient::connect(&edge.url("live"), vec![])
            .await
            .unwrap();
        c.start_publish("other", Duration::from_secs(5)).await
    });
    assert!(refused.is_err(), "{refused:?}");
    // The last player left: the upstream goes after the idle timeout.
    assert!(
        wait_until(Duration::from_secs(10), || relays(&edge).is_empty()),
        "{:?}",
        relays(&edge)
    );
    publisher.kill();
}

#[test]
fn nginx_pulls_from_a_gateway_origin() {
    ensure_tools();
    let dir = tempfile::tempdir().unwrap();
    let origin = Gateway::start();
    let mut publisher = ffmpeg_publish(&origin.url("live/cam"), &fixture_flv_long());
    assert!(wait_until(Duration::from_secs(10), || origin.publishing() == 1));
    let port = free_port();
    let nginx = nginx_rtmp(
        dir.path(),
        port,
        &format!("pull rtmp://{}/live;", origin.addr),
    );
    let out = dir.path().join("via-nginx.flv");
    let mut p = ffmpeg_play(&format!("rtmp://127.0.0.1:{port}/live/cam"), &out, 3.0);
    assert!(
        p.finish(Duration::from_secs(40)).success(),
        "{}\n{}",
        p.stderr(),
        nginx.error_log()
    );
    assert_av_file(&out);
    publisher.kill();
}

/// Plays `name` on `url` with the project's client until `frames` video frames came.
async fn count_frames(url: String, name: &str, frames: usize) -> Result<usize, String> {
    let mut c = RtmpClient::connect(&url, vec![])
        .await
        .map_err(|e| e.to_string())?;
    c.start_play(name, -1000.0, Duration::from_secs(15))
        .await
        .map_err(|e| e.to_string())?;
    let mut n = 0;
    while n < frames {
        match c.next_event_timeout(Duration::from_secs(15)).await {
            Ok(ClientEvent::Media { type_id: 9, .. }) => n += 1,
            Ok(_) => {}
            Err(e) => return Err(format!("after {n} frames: {e}")),
        }
    }
    Ok(n)
}

#[test]
fn chain_of_edges_fifty_players_one_upstream_and_the_hop_limit() {
    ensure_tools();
    let dir = tempfile::tempdir().unwrap();
    let origin = Gateway::start_with(relay_config());
    let mut publisher = ffmpeg_publish(&origin.url("live/cam"), &fixture_flv_long());
    assert!(wait_until(Duration::from_secs(10), || origin.publishing() == 1));
    let edge1 = Gateway::start_with(pull_from(&[origin.url("live")], 500));
    let edge2 = Gateway::start_with(pull_from(&[edge1.url("live")], 500));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = edge2.url("live");
    let results: Vec<Result<usize, String>> = rt.block_on(async {
        let tasks: Vec<_> = (0..50)
            .map(|_| tokio::spawn(count_frames(url.clone(), "cam", 25)))
            .collect();
        let mut v = Vec::new();
        for t in tasks {
            v.push(t.await.unwrap());
        }
        v
    });
    let bad: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    assert!(bad.is_empty(), "{} players failed: {bad:?}", bad.len());
    // One relay client on the origin besides the publisher, one on the first edge.
    assert_eq!(
        origin.core().clients().len(),
        2,
        "{:?}",
        origin.core().clients().list()
    );
    assert_eq!(edge1.core().clients().len(), 1);
    assert_eq!(relays(&edge1).len(), 1);
    assert_eq!(relays(&edge2).len(), 1);
    // ffmpeg at the end of the chain.
    play_and_check(&edge2.url("live/cam"), dir.path(), "chain.flv");

    // A connect with more hops than relay.max_hops is refused with the reason.
    let err = rt
        .block_on(RtmpClient::connect(
            &origin.url("live"),
            vec![Amf0Value::object([(
                wasmgate::gateway::HOPS_ARG,
                Amf0Value::Number(5.0),
            )])],
        ))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("Relay chain too long"), "{err}");

    // Players gone: both upstreams stop after the idle timeout, edge2's first.
    assert!(
        wait_until(Duration::from_secs(10), || relays(&edge2).is_empty()
            && relays(&edge1).is_empty()),
        "{:?} {:?}",
        relays(&edge2),
        relays(&edge1)
    );
    assert!(wait_until(Duration::from_secs(5), || origin
        .core()
        .clients()
        .len()
        == 1));
    publisher.kill();
}

#[test]
fn edge_players_resume_after_the_origin_restarts() {
    ensure_tools();
    let origin_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let origin = Gateway::start_at(relay_config(), origin_addr);
    let origin_url = format!("rtmp://{origin_addr}/live");
    let mut publisher = ffmpeg_publish(&format!("{origin_url}/cam"), &fixture_flv_long());
    assert!(wait_until(Duration::from_secs(10), || origin.publishing() == 1));
    let edge = Gateway::start_with(pull_from(std::slice::from_ref(&origin_url), 2000));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = edge.url("live");
    let (restarted_tx, restarted_rx) = std::sync::mpsc::channel::<Instant>();
    let player = rt.spawn(async move {
        let mut c = RtmpClient::connect(&url, vec![])
            .await
            .map_err(|e| e.to_string())?;
        c.start_play("cam", -1000.0, Duration::from_secs(15))
            .await
            .map_err(|e| e.to_string())?;
        let (mut before, mut after) = (0usize, 0usize);
        let mut restarted: Option<Instant> = None;
        let mut statuses = Vec::new();
        while after < 50 {
            if restarted.is_none() {
                restarted = restarted_rx.try_recv().ok();
            }
            match c.next_event_timeout(Duration::from_secs(20)).await {
                Ok(ClientEvent::Media { type_id: 9, .. }) => match restarted {
                    Some(_) => after += 1,
                    None => before += 1,
                },
                Ok(ClientEvent::Status { info, .. }) => statuses.push(
                    info.get("code")
                        .and_then(|v| v.as_str())
                        .unwrap_or("")
                        .to_owned(),
                ),
                Ok(_) => {}
                Err(e) => {
                    return Err(format!(
                        "{before} frames before, {after} after: {e}; {statuses:?}"
                    ));
                }
            }
        }
        Ok::<_, String>((before, after, statuses))
    });
    assert!(wait_until(Duration::from_secs(10), || live_relays(
        &edge, "pull"
    ) == 1));
    std::thread::sleep(Duration::from_secs(2));
    // Kill the origin (its publisher goes with it, not before: an unpublish would reach the
    // players as one); bring both back on the same port.
    drop(origin);
    publisher.kill();
    assert!(
        wait_until(Duration::from_secs(10), || relays(&edge)
            .first()
            .is_some_and(|r| r.reconnects >= 1)),
        "{:?}",
        relays(&edge)
    );
    let origin = Gateway::start_at(relay_config(), origin_addr);
    restarted_tx.send(Instant::now()).unwrap();
    let mut publisher = ffmpeg_publish(&format!("{origin_url}/cam"), &fixture_flv_long());
    let (before, after, statuses) = rt
        .block_on(player)
        .unwrap()
        .unwrap_or_else(|e| panic!("edge player: {e}\n{:?}", relays(&edge)));
    assert!(before >= 25 && after >= 50, "{before} {after}");
    assert!(
        !statuses.iter().any(|s| s.contains("Unpublish")),
        "the player saw the outage as an unpublish: {statuses:?}"
    );
    assert_eq!(origin.core().clients().len(), 2);
    publisher.kill();
}
