//! The admin listener over real sockets: the allowlist cuts off other source addresses before a
//! byte is read (IPv4, IPv6, IPv4-mapped), bearer tokens, and the JSON API, kick and metrics
//! while ffmpeg publishes and rtmpdump plays.

mod common;
mod gateway;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::*;
use gateway::Gateway;
use serde_json::Value;
use socket2::{Domain, Socket, Type};
use wasmgate::config::Config;

/// What one HTTP/1.1 exchange produced.
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One request on a fresh connection, optionally from a chosen source address. `Err` when the
/// server closed the connection without answering.
fn request(
    addr: SocketAddr,
    from: Option<IpAddr>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Reply> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if let Some(ip) = from {
        sock.bind(&SocketAddr::new(ip, 0).into())?;
    }
    sock.connect_timeout(&addr.into(), Duration::from_secs(5))?;
    let mut s: std::net::TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    // A refused peer may already have reset the connection; the read below reports it.
    let _ = s.write_all(req.as_bytes());
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("no HTTP response: {text:?}"),
        ));
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok(Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}

fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, None, "GET", path, &[]).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

fn call(addr: SocketAddr, method: &str, path: &str) -> Reply {
    request(addr, None, method, path, &[]).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

fn with_admin(f: impl FnOnce(&mut Config)) -> Gateway {
    let mut c = Config::default();
    c.admin.listen = "127.0.0.1:0".parse().unwrap();
    f(&mut c);
    Gateway::start_with(c)
}

#[test]
fn allowlist_cuts_off_other_sources_before_reading_a_byte() {
    let only_1 = with_admin(|c| c.admin.allow = vec!["127.0.0.1/32".into()]);
    let a = only_1.admin_addr();
    let r = request(a, ip("127.0.0.1"), "GET", "/api/v1/server", &[]).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let cut = request(a, ip("127.0.0.2"), "GET", "/api/v1/server", &[]);
    assert!(cut.is_err(), "127.0.0.2 got an answer: {cut:?}");
    let m = get(a, "/metrics").body;
    assert!(
        prometheus_value(&m, "wasmgate_admin_denied_total{reason=\"allowlist\"}").unwrap_or(0.0)
            >= 1.0,
        "{m}"
    );

    let only_2 = with_admin(|c| c.admin.allow = vec!["127.0.0.2/32".into()]);
    let b = only_2.admin_addr();
    let r = request(b, ip("127.0.0.2"), "GET", "/api/v1/server", &[]).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(request(b, ip("127.0.0.1"), "GET", "/api/v1/server", &[]).is_err());
}

#[test]
fn ipv6_loopback_and_ipv4_mapped_peers() {
    // ::1 against the default allowlist (loopback, IPv4 and IPv6).
    let v6 = with_admin(|c| c.admin.listen = "[::1]:0".parse().unwrap());
    let r = request(v6.admin_addr(), None, "GET", "/api/v1/server", &[]).unwrap();
    assert_eq!(r.status, 200);

    // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d; the IPv4 entry still matches,
    // and ::1 is not in this list.
    let dual = with_admin(|c| {
        c.admin.listen = "[::]:0".parse().unwrap();
        c.admin.allow = vec!["127.0.0.1/32".into()];
    });
    let port = dual.admin_addr().port();
    let v4: SocketAddr = ([127, 0, 0, 1], port).into();
    let r = request(v4, None, "GET", "/api/v1/clients", &[]).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    assert!(request(v6, None, "GET", "/api/v1/clients", &[]).is_err());
}

#[test]
fn token_missing_or_wrong_gets_401() {
    let gw = with_admin(|c| {
        c.admin.token = Some("s3cret-token".into());
        // This test sends ten wrong tokens on purpose; the lockout has its own test.
        c.admin.auth_failures = 100;
    });
    let a = gw.admin_addr();
    for path in ["/api/v1/server", "/api/v1/clients", "/metrics"] {
        let r = request(a, None, "GET", path, &[]).unwrap();
        assert_eq!(r.status, 401, "{path}: {}", r.body);
        assert!(r.json()["error"].as_str().unwrap().contains("token"));
        let r = request(a, None, "GET", path, &[("Authorization", "Bearer wrong")]).unwrap();
        assert_eq!(r.status, 401, "{path}");
        let r = request(a, None, "GET", path, &[("Authorization", "s3cret-token")]).unwrap();
        assert_eq!(r.status, 401, "{path}: a bare token is not a bearer token");
        let r = request(
            a,
            None,
            "GET",
            path,
            &[("Authorization", "Bearer s3cret-token")],
        )
        .unwrap();
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }
    let r = request(
        a,
        None,
        "DELETE",
        "/api/v1/clients/1",
        &[("Authorization", "Bearer nope")],
    )
    .unwrap();
    assert_eq!(
        r.status, 401,
        "a kick without the token must not get through"
    );
    // The dashboard shell holds no data and asks for the token itself.
    assert_eq!(get(a, "/").status, 200);
    // The secret is never shown.
    let cfg = request(
        a,
        None,
        "GET",
        "/api/v1/config",
        &[("Authorization", "Bearer s3cret-token")],
    )
    .unwrap();
    assert!(!cfg.body.contains("s3cret-token"), "{}", cfg.body);
    assert_eq!(cfg.json()["admin"]["token"], "<redacted>");
}

#[test]
fn a_wrong_token_flood_is_locked_out_per_address_while_streams_go_on() {
    ensure_tools();
    let gw = with_admin(|c| {
        c.admin.token = Some("s3cret-token".into());
        c.admin.auth_failures = 5;
        c.admin.auth_failure_window_secs = 3;
    });
    let a = gw.admin_addr();
    let _publisher = ffmpeg_publish(&gw.url("live/flood"), &fixture_flv_long());
    assert!(wait_until(Duration::from_secs(10), || gw.publishing() == 1));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("during.flv");
    let mut player = rtmpdump_play(&gw.url("live/flood"), &out, 4);
    let good = [("Authorization", "Bearer s3cret-token")];
    let bad = [("Authorization", "Bearer guess")];
    let from = |who: &str, headers: &[(&str, &str)]| {
        request(a, ip(who), "GET", "/api/v1/streams", headers).unwrap()
    };
    for i in 0..5 {
        assert_eq!(from("127.0.0.2", &bad).status, 401, "failure {i}");
    }
    let locked = from("127.0.0.2", &bad);
    assert_eq!(locked.status, 429, "{}", locked.body);
    assert!(locked.json()["error"].as_str().unwrap().contains("retry"));
    let retry: u64 = locked
        .head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("retry-after").then_some(v)
        })
        .unwrap_or_else(|| panic!("no Retry-After: {}", locked.head))
        .trim()
        .parse()
        .unwrap();
    assert!((1..=3).contains(&retry), "Retry-After {retry}");
    // Locked out means the token is not even looked at: the right one is refused too.
    assert_eq!(from("127.0.0.2", &good).status, 429);
    // A flood from the locked address changes nothing for anyone else.
    for _ in 0..200 {
        assert_eq!(from("127.0.0.2", &bad).status, 429);
    }
    assert_eq!(from("127.0.0.1", &good).status, 200);
    assert_eq!(from("127.0.0.1", &[]).status, 401);
    let m = request(a, None, "GET", "/metrics", &good).unwrap().body;
    assert!(
        prometheus_value(&m, "wasmgate_admin_denied_total{reason=\"rate\"}").unwrap_or(0.0)
            >= 201.0,
        "{m}"
    );
    // The stream path never noticed.
    player.finish(Duration::from_secs(30));
    assert_av_file(&out);
    // After the window the address may try again.
    assert!(
        wait_until(Duration::from_secs(6), || from("127.0.0.2", &good).status
            == 200),
        "127.0.0.2 still locked out after the window"
    );
}

#[test]
fn forwarded_for_is_only_believed_from_trusted_proxies() {
    // 127.0.0.1 is a trusted proxy but not itself allowed: only its forwarded client counts.
    let gw = with_admin(|c| {
        c.admin.allow = vec!["192.0.2.0/24".into()];
        c.admin.trusted_proxies = vec!["127.0.0.1".into()];
    });
    let a = gw.admin_addr();
    let fwd = |v: &str| {
        request(a, None, "GET", "/api/v1/server", &[("X-Forwarded-For", v)])
            .unwrap()
            .status
    };
    assert_eq!(fwd("192.0.2.10"), 200);
    assert_eq!(fwd("192.0.2.10, 198.51.100.1"), 403);
    assert_eq!(get(a, "/api/v1/server").status, 403);
    // Not a trusted proxy: cut off on accept whatever it claims.
    assert!(
        request(
            a,
            ip("127.0.0.3"),
            "GET",
            "/api/v1/server",
            &[("X-Forwarded-For", "192.0.2.10")]
        )
        .is_err()
    );
}

#[test]
fn errors_are_json_and_openapi_lists_every_route() {
    let gw = with_admin(|_| {});
    let a = gw.admin_addr();
    for (method, path, status) in [
        ("GET", "/api/v1/nope", 404),
        ("GET", "/nope", 404),
        ("PUT", "/api/v1/server", 405),
        ("GET", "/api/v1/clients/abc", 400),
        ("GET", "/api/v1/clients/999999", 404),
        ("DELETE", "/api/v1/clients/999999", 404),
        ("GET", "/api/v1/apps/nope", 404),
        ("POST", "/api/v1/apps/nope/reload", 404),
        ("POST", "/api/v1/apps/nope/unload", 404),
        ("DELETE", "/api/v1/streams/live/_definst_/nope", 404),
        ("DELETE", "/api/v1/recordings/live/_definst_/nope", 404),
        ("POST", "/api/v1/recordings", 405),
        (
            "GET",
            "/api/v1/apps/live/_definst_/shared-objects/nope",
            404,
        ),
        ("POST", "/api/v1/apps/live/_definst_/shared-objects", 405),
    ] {
        let r = call(a, method, path);
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        assert!(
            r.json()["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{method} {path}: {}",
            r.body
        );
    }

    let doc = get(a, "/api/v1/openapi.json").json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (method, route) in [
        ("get", "/api/v1/server"),
        ("get", "/api/v1/bandwidth"),
        ("get", "/api/v1/apps"),
        ("get", "/api/v1/apps/{app}"),
        ("post", "/api/v1/apps/{app}/reload"),
        ("post", "/api/v1/apps/{app}/unload"),
        ("get", "/api/v1/apps/{app}/{instance}/shared-objects"),
        ("get", "/api/v1/apps/{app}/{instance}/shared-objects/{name}"),
        ("get", "/api/v1/clients"),
        ("get", "/api/v1/clients/{id}"),
        ("delete", "/api/v1/clients/{id}"),
        ("get", "/api/v1/streams"),
        ("delete", "/api/v1/streams/{app}/{instance}/{name}"),
        ("get", "/api/v1/recordings"),
        ("delete", "/api/v1/recordings/{app}/{instance}/{name}"),
        ("get", "/api/v1/config"),
        ("get", "/api/v1/openapi.json"),
        ("get", "/metrics"),
        ("get", "/"),
    ] {
        assert!(
            paths.get(route).and_then(|p| p.get(method)).is_some(),
            "openapi.json lacks {method} {route}"
        );
    }
    // ...and every documented route is served (no "no such endpoint").
    for (route, ops) in paths {
        let concrete = route
            .replace("{app}", "live")
            .replace("{instance}", "_definst_")
            .replace("{name}", "x")
            .replace("{id}", "1");
        for method in ops.as_object().unwrap().keys() {
            let r = call(a, &method.to_uppercase(), &concrete);
            assert!(
                !r.body.contains("no such endpoint") && r.status != 405,
                "{method} {concrete}: {} {}",
                r.status,
                r.body
            );
        }
    }
}

#[test]
fn live_stream_shows_in_the_api_and_a_kicked_player_ends() {
    ensure_tools();
    let gw = with_admin(|_| {});
    let a = gw.admin_addr();
    let dir = tempfile::tempdir().unwrap();
    let url = gw.url("live/adm");
    let mut publisher = ffmpeg_publish(&url, &fixture_flv_long());
    let out = dir.path().join("p.flv");
    let mut player = rtmpdump_play_with(&url, &out, 60, &["-V"]);

    // Streams: publisher, player, codecs from the sequence headers, bitrate and fps.
    let mut last = Value::Null;
    let ready = wait_until(Duration::from_secs(15), || {
        last = get(a, "/api/v1/streams").json();
        last.as_array().is_some_and(|v| {
            v.iter().any(|s| {
                s["path"] == "live/_definst_/adm"
                    && s["publishing"] == true
                    && s["players"] == 1
                    && s["video_codec"] == "h264"
                    && s["audio_codec"] == "aac"
                    && s["bitrate_bps"].as_u64().unwrap_or(0) > 50_000
                    && s["fps"].as_f64().unwrap_or(0.0) > 5.0
            })
        })
    });
    assert!(ready, "stream never looked live: {last:#}");

    let clients = get(a, "/api/v1/clients").json();
    let clients = clients.as_array().unwrap();
    assert_eq!(clients.len(), 2, "{clients:#?}");
    for c in clients {
        for key in [
            "id",
            "ip",
            "transport",
            "app",
            "instance",
            "connected_at",
            "bytes_in",
            "bytes_out",
        ] {
            assert!(!c[key].is_null(), "client lacks {key}: {c}");
        }
        assert_eq!(c["ip"], "127.0.0.1");
        assert_eq!(c["transport"], "rtmp");
        assert_eq!(c["app"], "live");
        assert_eq!(c["instance"], "_definst_");
    }
    let stream = last
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "adm")
        .unwrap()
        .clone();
    let publisher_id = stream["publisher"].as_u64().unwrap();
    let player_id = clients
        .iter()
        .map(|c| c["id"].as_u64().unwrap())
        .find(|&id| id != publisher_id)
        .unwrap();

    let server = get(a, "/api/v1/server").json();
    assert_eq!(server["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        server["connections"]["by_transport"]["rtmp"], 2,
        "{server:#}"
    );
    assert_eq!(server["connections"]["by_transport"]["rtmpt"], 0);
    assert!(server["bytes_in"].as_u64().unwrap() > 10_000, "{server:#}");
    assert!(server["bytes_out"].as_u64().unwrap() > 10_000, "{server:#}");
    assert!(
        wait_until(
            Duration::from_secs(5),
            || get(a, "/api/v1/server").json()["bandwidth"]["in_bps"]
                .as_u64()
                .unwrap_or(0)
                > 0
        ),
        "bandwidth stays 0"
    );
    let history = get(a, "/api/v1/bandwidth").json();
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["in_bps"].as_u64().unwrap_or(0) > 0 && s["t"].as_u64().unwrap_or(0) > 0),
        "{history}"
    );

    // Apps: the built-in live app, seen from connected clients.
    let apps = get(a, "/api/v1/apps").json();
    assert_eq!(apps[0]["name"], "live", "{apps:#}");
    assert_eq!(apps[0]["kind"], "live");
    assert_eq!(apps[0]["clients"], 2);
    assert_eq!(apps[0]["instances"][0]["name"], "_definst_");
    assert_eq!(get(a, "/api/v1/apps/live").status, 200);
    let r = call(a, "POST", "/api/v1/apps/live/reload");
    assert_eq!(r.status, 501, "{}", r.body);
    assert!(r.json()["error"].as_str().unwrap().contains("built-in"));

    // Metrics through the Prometheus exporter.
    let m = get(a, "/metrics").body;
    for series in [
        "wasmgate_connections{transport=\"rtmp\"}",
        "wasmgate_connections_total{transport=\"rtmp\"}",
        "wasmgate_bytes_in_total",
        "wasmgate_bytes_out_total",
        "wasmgate_streams",
        "wasmgate_media_messages_in_total",
        "wasmgate_player_skips_total",
        "wasmgate_handshake_errors_total{transport=\"rtmp\"}",
        "wasmgate_tunnel_errors_total{reason=\"unknown_session\"}",
        "wasmgate_guest_calls_total",
        "wasmgate_guest_traps_total",
        "wasmgate_guest_deadline_hits_total",
        "wasmgate_admin_denied_total{reason=\"allowlist\"}",
    ] {
        assert!(
            prometheus_value(&m, series).is_some(),
            "no {series} in:\n{m}"
        );
    }
    assert!(prometheus_value(&m, "wasmgate_media_messages_in_total").unwrap() > 10.0);
    assert!(prometheus_value(&m, "wasmgate_streams").unwrap() >= 1.0);

    // Kick the playing rtmpdump: it ends, its client entry goes, the publisher stays.
    let r = call(a, "DELETE", &format!("/api/v1/clients/{player_id}"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["closed"], true, "{}", r.body);
    assert!(
        player.wait_timeout(Duration::from_secs(10)).is_some(),
        "rtmpdump kept running after the kick"
    );
    assert!(publisher.is_running(), "{}", publisher.stderr());
    assert_eq!(
        get(a, "/api/v1/clients").json().as_array().unwrap().len(),
        1
    );
    assert!(
        file_len(&out) > 10_000,
        "player got no media before the kick"
    );

    // Stop the stream: the publisher is disconnected.
    let r = call(a, "DELETE", "/api/v1/streams/live/_definst_/adm");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        publisher.wait_timeout(Duration::from_secs(10)).is_some(),
        "ffmpeg kept publishing after DELETE /streams"
    );
    assert!(wait_until(Duration::from_secs(5), || get(
        a,
        "/api/v1/streams"
    )
    .json()
    .as_array()
    .unwrap()
    .is_empty()));
    let m = get(a, "/metrics").body;
    assert!(
        prometheus_value(&m, "wasmgate_kicks_total").unwrap() >= 2.0,
        "{m}"
    );
}

#[test]
fn tls_when_a_certificate_is_configured() {
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = gateway::write_cert(dir.path());
    let gw = with_admin(|c| {
        c.admin.tls_cert = Some(cert_path.clone());
        c.admin.tls_key = Some(key_path.clone());
        c.admin.token = Some("tls-token".into());
    });
    let a = gw.admin_addr();

    let mut roots = rustls::RootCertStore::empty();
    let der =
        <rustls_pki_types::CertificateDer as rustls_pki_types::pem::PemObject>::from_pem_file(
            &cert_path,
        )
        .unwrap();
    roots.add(der).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let sock = std::net::TcpStream::connect(a).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(
        b"GET /api/v1/server HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer tls-token\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut raw = Vec::new();
    // rustls reports the peer's close without close_notify as an error after the data.
    let _ = tls.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(text.contains("\"version\""), "{text}");

    // Plain HTTP on the TLS listener gets no HTTP answer.
    assert!(request(a, None, "GET", "/api/v1/server", &[]).is_err());
}
