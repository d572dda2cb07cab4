//! RTMPT protocol edges with a raw HTTP client: framing librtmp depends on, sequence retries
//! and reordering, and bad input (unknown session, wrong method, huge or truncated bodies,
//! garbage after a valid open, limits, expiry) answered with clean HTTP errors while a real
//! ffmpeg player on the same listener keeps playing; and NetConnection calls made by the
//! project's own sans-IO client through the tunnel.

mod common;
mod gateway;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use gateway::Gateway;
use wasmgate::config::Config;

struct Resp {
    status_line: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One keep-alive HTTP connection.
struct Client {
    rd: BufReader<TcpStream>,
    wr: TcpStream,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client {
            rd: BufReader::new(s.try_clone().unwrap()),
            wr: s,
        }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.wr.write_all(bytes).unwrap();
    }

    fn request(&mut self, method: &str, path: &str, body: &[u8]) -> Resp {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-fcs\r\n\
             Content-Length: {}\r\nConnection: keep-alive\r\n\r\n",
            body.len()
        );
        let mut req = head.into_bytes();
        req.extend_from_slice(body);
        self.send_raw(&req);
        self.read_response().expect("a response")
    }

    /// `None` when the server closed the connection.
    fn read_response(&mut self) -> Option<Resp> {
        let mut status_line = String::new();
        if self.rd.read_line(&mut status_line).ok()? == 0 {
            return None;
        }
        let status = status_line.split(' ').nth(1)?.parse().ok()?;
        let mut headers = Vec::new();
        loop {
            let mut l = String::new();
            self.rd.read_line(&mut l).ok()?;
            let l = l.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':')?;
            headers.push((k.to_string(), v.trim().to_string()));
        }
        let mut r = Resp {
            status_line,
            status,
            headers,
            body: Vec::new(),
        };
        let len: usize = r.header("content-length").and_then(|v| v.parse().ok())?;
        r.body = vec![0; len];
        self.rd.read_exact(&mut r.body).ok()?;
        Some(r)
    }

    fn open(&mut self) -> String {
        let r = self.request("POST", "/open/1", b"\0");
        assert_eq!(r.status, 200, "{}", r.status_line);
        let id = String::from_utf8(r.body).unwrap();
        assert!(id.ends_with('\n'));
        id.trim_end().to_string()
    }
}

#[test]
fn bad_requests_get_clean_errors_and_a_tunnel_player_keeps_playing() {
    ensure_tools();
    let gw = Gateway::start();
    let dir = tempfile::tempdir().unwrap();
    let http = gw.http_addr();
    let tunnel = gw.server.tunnel.clone();
    let _publisher = ffmpeg_publish(&gw.url("live/bad"), &fixture_flv_long());
    let out = dir.path().join("player.flv");
    let mut player = ffmpeg_play(&format!("rtmpt://{http}/live/bad"), &out, 4.0);
    assert!(wait_until(Duration::from_secs(10), || tunnel
        .session_count()
        == 1));

    // --- framing librtmp insists on, and a real RTMP handshake through a raw tunnel ---
    let mut c = Client::connect(gw.addr); // RTMPT sniffed on the RTMP port
    let r = c.request("POST", "/open/1", b"\0");
    assert!(
        r.status_line.starts_with("HTTP/1.1 200 "),
        "{}",
        r.status_line
    );
    assert_eq!(r.header("Content-Type"), Some("application/x-fcs"));
    assert!(r.headers.iter().any(|(k, _)| k == "Content-Length"));
    let id = String::from_utf8(r.body).unwrap().trim_end().to_string();
    assert_eq!(id.len(), 32, "128-bit hex id: {id}");
    assert_eq!(tunnel.session_count(), 2);
    let mut c0c1 = vec![3u8];
    c0c1.extend_from_slice(&[0u8; 1536]);
    let r = c.request("POST", &format!("/send/{id}/0"), &c0c1);
    assert_eq!(r.status, 200);
    assert_eq!(r.body[0], 0x01, "polling byte first");
    let mut got = r.body[1..].to_vec();
    let mut seq = 1;
    while got.len() < 1 + 1536 * 2 && seq < 40 {
        let r = c.request("POST", &format!("/idle/{id}/{seq}"), b"\0");
        assert_eq!(r.status, 200);
        got.extend_from_slice(&r.body[1..]);
        seq += 1;
    }
    assert_eq!(got.len(), 1 + 1536 * 2, "S0+S1+S2 through the tunnel");
    assert_eq!(got[0], 3, "S0");
    // A retried request (same seq) gets the same reply again.
    let again1 = c.request("POST", &format!("/idle/{id}/{seq}"), b"\0");
    let again2 = c.request("POST", &format!("/idle/{id}/{seq}"), b"\0");
    assert_eq!(again1.status, 200);
    assert_eq!(again1.body, again2.body);
    seq += 1;

    // --- reordering: seq+1 arrives first and waits for seq ---
    let ahead = std::thread::spawn({
        let id = id.clone();
        move || {
            let mut c2 = Client::connect(http);
            c2.request("POST", &format!("/idle/{id}/{}", seq + 1), b"\0")
                .status
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        c.request("POST", &format!("/idle/{id}/{seq}"), b"\0")
            .status,
        200
    );
    assert_eq!(
        ahead.join().unwrap(),
        200,
        "held request answered after the gap filled"
    );
    seq += 2;
    // Far ahead or long past: refused cleanly, the session is unharmed.
    assert_eq!(
        c.request("POST", &format!("/idle/{id}/{}", seq + 1000), b"\0")
            .status,
        409
    );
    assert_eq!(
        c.request("POST", &format!("/idle/{id}/0"), b"\0").status,
        409
    );
    assert_eq!(
        c.request("POST", &format!("/idle/{id}/{seq}"), b"\0")
            .status,
        200
    );
    seq += 1;

    // --- bad requests ---
    let mut b = Client::connect(http);
    let r = b.request("POST", "/idle/00112233445566778899aabbccddeeff/0", b"\0");
    assert_eq!(r.status, 404, "unknown session");
    assert_eq!(
        b.request("POST", &format!("/idle/{id}/x"), b"\0").status,
        400
    );
    assert_eq!(b.request("POST", "/nope", b"").status, 404);
    assert_eq!(b.request("POST", "/fcs/ident2", b"\0").status, 404);
    let r = b.request("GET", "/open/1", b"");
    assert_eq!(r.status, 405, "wrong method");
    assert_eq!(r.header("Allow"), Some("POST"));
    // A huge Content-Length is refused before any body is read.
    b.send_raw(
        format!("POST /send/{id}/{seq} HTTP/1.1\r\nHost: x\r\nContent-Length: 4000000000\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(b.read_response().unwrap().status, 413);
    assert!(b.read_response().is_none(), "connection closed after 413");
    // A truncated body: the client goes away mid-body.
    let mut t = Client::connect(http);
    t.send_raw(
        format!(
            "POST /send/{id}/{seq} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789"
        )
        .as_bytes(),
    );
    drop(t);
    // Garbage after a valid open on the same connection: 200, then 400 and close.
    let mut g = Client::connect(gw.addr);
    g.send_raw(
        b"POST /open/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n\0\x01\x02garbage\r\n\r\n",
    );
    assert_eq!(g.read_response().unwrap().status, 200);
    if let Some(r) = g.read_response() {
        assert_eq!(r.status, 400);
    }
    assert!(g.read_response().is_none());
    assert_eq!(
        tunnel.session_count(),
        3,
        "player + raw + garbage-open session"
    );

    // The session survived all of that.
    std::thread::sleep(Duration::from_millis(300));
    let r = c.request("POST", &format!("/idle/{id}/{seq}"), b"\0");
    assert_eq!(r.status, 200, "raw session still usable");
    seq += 1;
    let r = c.request("POST", &format!("/close/{id}/{seq}"), b"\0");
    assert_eq!(r.body, [0u8]);
    assert_eq!(
        c.request("POST", &format!("/idle/{id}/{}", seq + 1), b"\0")
            .status,
        404
    );
    assert_eq!(tunnel.session_count(), 2);

    let s = player.finish(Duration::from_secs(30));
    assert!(s.success(), "tunnel player failed: {}", player.stderr());
    assert_video_packets(&out, 10);
    decodes_cleanly(&out).unwrap();
}

#[test]
fn session_limits_ident_and_idle_expiry() {
    let mut config = Config::default();
    config.http.max_sessions_per_ip = 2;
    config.http.session_idle_timeout_secs = 1;
    config.http.ident = Some("wasmgate-test".into());
    config.http.max_body_bytes = 4096;
    let gw = Gateway::start_with(config);
    let tunnel = gw.server.tunnel.clone();
    let mut c = Client::connect(gw.http_addr());
    let r = c.request("POST", "/fcs/ident2", b"\0");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"wasmgate-test"[..]));
    let a = c.open();
    let _b = c.open();
    assert_eq!(
        c.request("POST", "/open/1", b"\0").status,
        503,
        "per-IP limit"
    );
    assert_eq!(tunnel.sessions_from("127.0.0.1".parse().unwrap()), 2);
    // Bodies above http.max_body_bytes are refused.
    assert_eq!(
        c.request("POST", &format!("/send/{a}/0"), &[0u8; 5000])
            .status,
        413
    );
    let mut c = Client::connect(gw.http_addr());
    // Closing one frees a slot.
    assert_eq!(c.request("POST", &format!("/close/{a}/0"), b"\0").body, [0]);
    let _c = c.open();
    // Nobody polls: everything expires and is freed.
    assert!(
        wait_until(Duration::from_secs(5), || tunnel.session_count() == 0),
        "idle sessions were not expired"
    );
    assert_eq!(tunnel.sessions_from("127.0.0.1".parse().unwrap()), 0);
    assert_eq!(
        c.request("POST", &format!("/idle/{a}/1"), b"\0").status,
        404
    );
    assert!(wait_until(Duration::from_secs(5), || gw
        .core()
        .clients()
        .is_empty()));
    c.open();
}

#[test]
fn http_1_0_with_and_without_keep_alive() {
    let gw = Gateway::start();
    // Plain HTTP/1.0: one request, then the server closes.
    let mut c = Client::connect(gw.http_addr());
    c.send_raw(b"POST /open/1 HTTP/1.0\r\nContent-Length: 1\r\n\r\n\0");
    let r = c.read_response().expect("a response");
    assert_eq!(r.status, 200);
    let id = String::from_utf8(r.body).unwrap().trim_end().to_string();
    assert_eq!(id.len(), 32);
    assert!(c.read_response().is_none(), "HTTP/1.0 connection closed");
    // HTTP/1.0 with keep-alive: the connection carries several requests.
    let mut c = Client::connect(gw.http_addr());
    for seq in 0..3 {
        c.send_raw(
            format!(
                "POST /idle/{id}/{seq} HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n\0"
            )
            .as_bytes(),
        );
        let r = c.read_response().expect("keep-alive response");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, [0x01]);
    }
}

#[test]
fn silent_http_connections_are_closed_after_the_handshake_timeout() {
    let mut config = Config::default();
    config.rtmp.handshake_timeout_secs = 1;
    let gw = Gateway::start_with(config);
    // Idle between requests on a keep-alive connection.
    let mut c = Client::connect(gw.http_addr());
    let id = c.open();
    assert_eq!(id.len(), 32);
    std::thread::sleep(Duration::from_millis(1500));
    c.send_raw(format!("POST /idle/{id}/0 HTTP/1.1\r\nContent-Length: 1\r\n\r\n\0").as_bytes());
    assert!(
        c.read_response().is_none(),
        "idle keep-alive connection still open"
    );
    // Half a request line, then nothing.
    let mut h = Client::connect(gw.addr);
    h.send_raw(b"POST /ope");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(h.read_response().is_none() || h.read_response().is_none());
    assert!(wait_until(Duration::from_secs(5), || gw
        .core()
        .counters()
        .connections
        .load(std::sync::atomic::Ordering::Relaxed)
        <= 1));
}

/// The project's sans-IO RTMP client driven through raw RTMPT requests: what it queues goes out
/// in `/send`, otherwise `/idle` polls; reply bytes after the polling byte go back in.
struct TunnelClient {
    http: Client,
    id: String,
    seq: u64,
    session: wasmgate::rtmp::client::ClientSession,
}

impl TunnelClient {
    fn connect(addr: SocketAddr, app: &str) -> TunnelClient {
        use wasmgate::rtmp::client::{ClientConfig, ClientSession};
        let mut http = Client::connect(addr);
        let id = http.open();
        let cfg = ClientConfig::new(app, format!("rtmpt://{addr}/{app}"));
        TunnelClient {
            http,
            id,
            seq: 0,
            session: ClientSession::new(cfg),
        }
    }

    fn pump(&mut self) {
        let mut out = Vec::new();
        self.session.drain_transmit(&mut out);
        let body: Vec<u8> = out.iter().flat_map(|b| b.iter().copied()).collect();
        let (cmd, body) = if body.is_empty() {
            ("idle", vec![0u8])
        } else {
            ("send", body)
        };
        let r = self
            .http
            .request("POST", &format!("/{cmd}/{}/{}", self.id, self.seq), &body);
        assert_eq!(r.status, 200, "{cmd} {}", self.seq);
        self.seq += 1;
        self.session.handle_input(&r.body[1..]).expect("valid RTMP");
    }

    fn next_event(&mut self) -> wasmgate::rtmp::client::ClientEvent {
        for _ in 0..200 {
            if let Some(ev) = self.session.poll_event() {
                return ev;
            }
            self.pump();
        }
        panic!("no event through the tunnel");
    }
}

#[test]
fn calls_work_through_the_tunnel_with_the_projects_own_client() {
    use wasmgate::rtmp::amf::Amf0Value;
    use wasmgate::rtmp::client::ClientEvent;
    let gw = Gateway::start();
    let mut t = TunnelClient::connect(gw.http_addr(), "live");
    let ClientEvent::Connected { info, .. } = t.next_event() else {
        panic!("not connected");
    };
    assert_eq!(
        info.get("code").and_then(|v| v.as_str()),
        Some("NetConnection.Connect.Success")
    );
    assert_eq!(
        gw.core().clients().list()[0].transport,
        "rtmpt",
        "the tunnel session is a client like any other"
    );
    let txn = t.session.call("noSuchMethod", &[Amf0Value::Number(1.0)]);
    match t.next_event() {
        ClientEvent::Error {
            transaction_id,
            values,
        } if transaction_id == txn => {
            let info = values.last().unwrap();
            assert_eq!(
                info.get("code").and_then(|v| v.as_str()),
                Some("NetConnection.Call.Failed")
            );
        }
        other => panic!("expected _error, got {other:?}"),
    }
    let txn = t.session.call("getStreamLength", &[Amf0Value::string("x")]);
    match t.next_event() {
        ClientEvent::Result {
            transaction_id,
            values,
        } if transaction_id == txn => assert_eq!(values, vec![Amf0Value::Number(0.0)]),
        other => panic!("expected _result, got {other:?}"),
    }
    let txn = t.session.create_stream();
    match t.next_event() {
        ClientEvent::Result {
            transaction_id,
            values,
        } if transaction_id == txn => {
            assert!(matches!(values[0], Amf0Value::Number(n) if n >= 1.0))
        }
        other => panic!("expected createStream _result, got {other:?}"),
    }
}
