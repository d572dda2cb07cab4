//! A small HTTP/1.1 forward proxy for the misbehaviours Squid and tinyproxy cannot be made to
//! show on demand: it always buffers whole request and response bodies, and on request caps
//! response bodies, adds `Via` / `X-Forwarded-For`, closes both connections after every
//! request, sends every request upstream twice, and gives up on slow replies (504) and idle
//! client connections. Hand-written (tokio, ~300 lines) because each misbehaviour must be exact
//! and switchable; `CONNECT` is not needed by these tests and is refused.
//!
//! [`read_message`] is shared with the test RTMPT client in [`super::rtmpt`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Request and response heads larger than this are refused.
const MAX_HEAD: usize = 16 * 1024;
/// Bodies larger than this are refused (RTMPT bodies are far smaller).
const MAX_BODY: usize = 8 * 1024 * 1024;

/// What the proxy does besides forwarding.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// Add `Via: 1.1 wgtest` both ways and `X-Forwarded-For: <this value>` upstream.
    pub forwarded_for: Option<String>,
    /// `Connection: close` to the client and upstream after every request: each request comes
    /// in, and goes out, on a new TCP connection.
    pub close_each: bool,
    /// Send every request upstream twice (a new connection when the first was closed) and
    /// answer with the second reply.
    pub retry: bool,
    /// Response bodies above this many bytes are answered `502` instead.
    pub cap: Option<usize>,
    /// An upstream reply not complete within this is abandoned (upstream connection dropped)
    /// and answered `504`.
    pub response_timeout: Option<Duration>,
    /// A client connection with no new request for this long is closed.
    pub client_idle_timeout: Option<Duration>,
}

/// What happened, for the tests' assertions.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub client_connections: AtomicU64,
    pub upstream_connections: AtomicU64,
    /// Second sends of a request (`retry`).
    pub retries: AtomicU64,
    /// Retried session requests whose second reply differed from the first.
    pub retry_mismatches: AtomicU64,
    pub capped: AtomicU64,
    pub timed_out: AtomicU64,
    pub idle_closed: AtomicU64,
    /// Largest response body forwarded.
    pub largest_body: AtomicU64,
}

impl Stats {
    pub fn get(v: &AtomicU64) -> u64 {
        v.load(Ordering::SeqCst)
    }
}

/// A running test proxy; stops with its runtime on drop.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    _rt: tokio::runtime::Runtime,
}

impl TestProxy {
    /// Listens on `ip`:random port.
    pub fn start(ip: &str, behaviour: Behaviour) -> TestProxy {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = rt
            .block_on(TcpListener::bind((ip, 0)))
            .expect("bind test proxy");
        let addr = listener.local_addr().expect("addr");
        let stats = Arc::new(Stats::default());
        let (b, s) = (Arc::new(behaviour), stats.clone());
        rt.spawn(async move {
            while let Ok((sock, peer)) = listener.accept().await {
                s.client_connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve_client(sock, peer, b.clone(), s.clone()));
            }
        });
        TestProxy {
            addr,
            stats,
            _rt: rt,
        }
    }

    /// `http://ip:port`, for `http_proxy`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// One HTTP message: start line, headers in order, whole body.
#[derive(Debug, Clone)]
pub struct Message {
    pub start: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Message {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The status of a response start line.
    pub fn status(&self) -> u16 {
        self.start
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// The peer wants the connection closed after this message.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.to_ascii_lowercase().contains("close"))
            || self.start.starts_with("HTTP/1.0")
            || self.start.ends_with("HTTP/1.0")
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.start.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (k, v) in &self.headers {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
    }
}

/// Reads one message framed by `Content-Length` (absent: no body for a request, until EOF for
/// a response). `Ok(None)` on a clean EOF before the first byte.
pub async fn read_message<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    is_response: bool,
) -> std::io::Result<Option<Message>> {
    use std::io::{Error, ErrorKind};
    let mut lines = Vec::new();
    let mut total = 0;
    loop {
        let mut line = Vec::new();
        let n = r.read_until(b'\n', &mut line).await?;
        if n == 0 {
            if lines.is_empty() && total == 0 {
                return Ok(None);
            }
            return Err(Error::new(ErrorKind::UnexpectedEof, "EOF inside a head"));
        }
        total += n;
        if total > MAX_HEAD {
            return Err(Error::new(ErrorKind::InvalidData, "head too large"));
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        if text.is_empty() {
            if lines.is_empty() {
                continue; // tolerated blank line between messages
            }
            break;
        }
        lines.push(text);
    }
    let start = lines.remove(0);
    let headers: Vec<(String, String)> = lines
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut m = Message {
        start,
        headers,
        body: Vec::new(),
    };
    if m.header("transfer-encoding").is_some() {
        return Err(Error::new(
            ErrorKind::InvalidData,
            "chunked bodies not handled",
        ));
    }
    match m.header("content-length").map(|v| v.parse::<usize>()) {
        Some(Ok(len)) if len <= MAX_BODY => {
            m.body = vec![0; len];
            r.read_exact(&mut m.body).await?;
        }
        Some(_) => return Err(Error::new(ErrorKind::InvalidData, "bad Content-Length")),
        None if is_response => {
            r.take(MAX_BODY as u64).read_to_end(&mut m.body).await?;
        }
        None => {}
    }
    Ok(Some(m))
}

const HOP_BY_HOP: [&str; 4] = ["connection", "proxy-connection", "keep-alive", "te"];

fn simple(status: u16, reason: &str, close: bool) -> Message {
    let body = format!("{status} {reason} (test proxy)\n").into_bytes();
    let mut headers = vec![
        ("Content-Type".into(), "text/plain".into()),
        ("Content-Length".into(), body.len().to_string()),
    ];
    if close {
        headers.push(("Connection".into(), "close".into()));
    }
    Message {
        start: format!("HTTP/1.1 {status} {reason}"),
        headers,
        body,
    }
}

async fn serve_client(sock: TcpStream, peer: SocketAddr, b: Arc<Behaviour>, s: Arc<Stats>) {
    let _ = sock.set_nodelay(true);
    let (rd, mut wr) = sock.into_split();
    let mut rd = BufReader::new(rd);
    let mut upstream: Option<(String, BufReader<TcpStream>)> = None;
    loop {
        let next = read_message(&mut rd, false);
        let req = match b.client_idle_timeout {
            Some(t) => match tokio::time::timeout(t, next).await {
                Ok(r) => r,
                Err(_) => {
                    s.idle_closed.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            },
            None => next.await,
        };
        let Ok(Some(req)) = req else { return };
        s.requests.fetch_add(1, Ordering::SeqCst);
        let client_close = req.closes() || b.close_each;
        let reply = forward(&req, peer, &b, &s, &mut upstream).await;
        let mut reply = reply.unwrap_or_else(|(status, reason)| simple(status, reason, false));
        reply
            .headers
            .retain(|(k, _)| !HOP_BY_HOP.contains(&k.to_ascii_lowercase().as_str()));
        if b.forwarded_for.is_some() {
            reply.headers.push(("Via".into(), "1.1 wgtest".into()));
        }
        if client_close {
            reply.headers.push(("Connection".into(), "close".into()));
        }
        let mut out = Vec::new();
        reply.write_to(&mut out);
        if wr.write_all(&out).await.is_err() || client_close {
            return;
        }
    }
}

/// The upstream reply to `req` (after the retry, when asked), or the status to answer with.
async fn forward(
    req: &Message,
    peer: SocketAddr,
    b: &Behaviour,
    s: &Stats,
    upstream: &mut Option<(String, BufReader<TcpStream>)>,
) -> Result<Message, (u16, &'static str)> {
    let mut parts = req.start.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method == "CONNECT" {
        return Err((405, "CONNECT not supported"));
    }
    let Some(rest) = target.strip_prefix("http://") else {
        return Err((400, "absolute http:// URI expected"));
    };
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut out = Message {
        start: format!("{method} {path} HTTP/1.1"),
        headers: req
            .headers
            .iter()
            .filter(|(k, _)| !HOP_BY_HOP.contains(&k.to_ascii_lowercase().as_str()))
            .cloned()
            .collect(),
        body: req.body.clone(),
    };
    if let Some(xff) = &b.forwarded_for {
        out.headers.push(("Via".into(), "1.1 wgtest".into()));
        out.headers
            .push(("X-Forwarded-For".into(), format!("{xff}, {}", peer.ip())));
    }
    if b.close_each {
        out.headers.push(("Connection".into(), "close".into()));
    }
    let first = exchange(&out, host, b, s, upstream).await?;
    let reply = if b.retry {
        s.retries.fetch_add(1, Ordering::SeqCst);
        let second = exchange(&out, host, b, s, upstream).await?;
        // `/open` makes a new session each time; a repeated `/close` finds its session gone
        // (404), which clients ignore.
        let sessionless = path.starts_with("/open") || path.starts_with("/close");
        if !sessionless && (second.status() != first.status() || second.body != first.body) {
            s.retry_mismatches.fetch_add(1, Ordering::SeqCst);
        }
        second
    } else {
        first
    };
    s.largest_body
        .fetch_max(reply.body.len() as u64, Ordering::SeqCst);
    if let Some(cap) = b.cap
        && reply.body.len() > cap
    {
        s.capped.fetch_add(1, Ordering::SeqCst);
        return Err((502, "reply body over the proxy's cap"));
    }
    Ok(reply)
}

/// One request upstream on the kept connection to `host` (a new one when there is none or it
/// failed before a byte of the reply).
async fn exchange(
    req: &Message,
    host: &str,
    b: &Behaviour,
    s: &Stats,
    upstream: &mut Option<(String, BufReader<TcpStream>)>,
) -> Result<Message, (u16, &'static str)> {
    let mut bytes = Vec::new();
    req.write_to(&mut bytes);
    for attempt in 0..2 {
        if upstream.as_ref().is_none_or(|(h, _)| h != host) {
            let Ok(c) = TcpStream::connect(host).await else {
                return Err((502, "upstream unreachable"));
            };
            let _ = c.set_nodelay(true);
            s.upstream_connections.fetch_add(1, Ordering::SeqCst);
            *upstream = Some((host.to_string(), BufReader::new(c)));
        }
        let Some((_, conn)) = upstream.as_mut() else {
            return Err((502, "no upstream"));
        };
        if conn.get_mut().write_all(&bytes).await.is_err() {
            *upstream = None;
            continue;
        }
        let read = read_message(conn, true);
        let got = match b.response_timeout {
            Some(t) => match tokio::time::timeout(t, read).await {
                Ok(r) => r,
                Err(_) => {
                    // Like a proxy's read timeout: the upstream connection is dropped with
                    // the request still in progress there.
                    s.timed_out.fetch_add(1, Ordering::SeqCst);
                    *upstream = None;
                    return Err((504, "Gateway Timeout"));
                }
            },
            None => read.await,
        };
        match got {
            Ok(Some(m)) => {
                if m.closes() || b.close_each {
                    *upstream = None;
                }
                return Ok(m);
            }
            // A kept connection the server closed meanwhile: once more on a new one.
            Ok(None) if attempt == 0 => *upstream = None,
            _ => {
                *upstream = None;
                return Err((502, "upstream reply broken"));
            }
        }
    }
    Err((502, "upstream failed twice"))
}

/// A SOCKS4 (CONNECT only, no auth) proxy: the only proxy librtmp can use (`rtmpdump -S`).
/// Counts the connections it carried.
pub struct Socks4 {
    pub addr: SocketAddr,
    pub carried: Arc<AtomicU64>,
    _rt: tokio::runtime::Runtime,
}

impl Socks4 {
    pub fn start(ip: &str) -> Socks4 {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = rt
            .block_on(TcpListener::bind((ip, 0)))
            .expect("bind socks proxy");
        let addr = listener.local_addr().expect("addr");
        let carried = Arc::new(AtomicU64::new(0));
        let c = carried.clone();
        rt.spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let c = c.clone();
                tokio::spawn(async move {
                    if let Some(mut up) = socks4_handshake(&sock).await {
                        c.fetch_add(1, Ordering::SeqCst);
                        let mut sock = sock;
                        let _ = tokio::io::copy_bidirectional(&mut sock, &mut up).await;
                    }
                });
            }
        });
        Socks4 {
            addr,
            carried,
            _rt: rt,
        }
    }
}

/// `VN=4 CD=1 DSTPORT DSTIP USERID NUL` → connect → `0 0x5A ...`; `None` on anything else.
async fn socks4_handshake(sock: &TcpStream) -> Option<TcpStream> {
    let mut head = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        sock.readable().await.ok()?;
        match sock.try_read(&mut head[got..]) {
            Ok(0) => return None,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return None,
        }
    }
    if head[0] != 4 || head[1] != 1 {
        return None;
    }
    // The user id, up to its NUL (bounded).
    let mut byte = [0u8; 1];
    for _ in 0..256 {
        sock.readable().await.ok()?;
        match sock.try_read(&mut byte) {
            Ok(0) => return None,
            Ok(_) if byte[0] == 0 => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return None,
        }
    }
    let port = u16::from_be_bytes([head[2], head[3]]);
    let ip = std::net::Ipv4Addr::new(head[4], head[5], head[6], head[7]);
    let up = TcpStream::connect((ip, port)).await;
    let reply = [0, if up.is_ok() { 0x5A } else { 0x5B }, 0, 0, 0, 0, 0, 0];
    sock.writable().await.ok()?;
    sock.try_write(&reply).ok()?;
    up.ok()
}
