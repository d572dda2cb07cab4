//! RTMPT: RTMP tunnelled over HTTP POSTs (`/open`, `/send`, `/idle`, `/close`), served with
//! hyper. Each tunnel session feeds a byte pipe into the same connection driver as raw TCP.
//!
//! Wire behaviour follows the public clients: ffmpeg's `rtmphttp.c` (buffers writes until it
//! reads, sleeps 50 ms after an empty reply) and librtmp's `HTTP_Post`/`HTTP_read` (busy-polls,
//! requires `HTTP/1.1 200 ` and a `Content-Length` header spelled with capitals).

pub mod session;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{Instrument, debug, info, info_span, trace};

use crate::config::HttpSection;
use crate::server::{Shared, conn};
use session::{Exchange, PipeError, SeqCheck};

/// How long a `/send` reply waits for the session's answer before going out empty. Short, so a
/// publisher (one request per message with ffmpeg) is never slowed, but long enough that a
/// handshake or command answer usually rides on the same reply instead of costing ffmpeg a
/// 50 ms sleep and an extra `/idle`.
const SEND_LINGER: Duration = Duration::from_millis(3);

const FCS: &str = "application/x-fcs";

/// The session table shared by every listener that serves RTMPT.
pub struct Tunnel {
    /// Swapped whole by a config reload; read per request.
    cfg: RwLock<Arc<HttpSection>>,
    table: Mutex<Table>,
    epoch: Instant,
    pub stats: TunnelStats,
}

#[derive(Default)]
struct Table {
    sessions: HashMap<String, Arc<TunnelSession>>,
    per_ip: HashMap<IpAddr, usize>,
}

/// Counters for the admin listener and for tests.
#[derive(Default)]
pub struct TunnelStats {
    pub opened: AtomicU64,
    pub closed: AtomicU64,
    pub expired: AtomicU64,
    pub refused: AtomicU64,
    pub requests: AtomicU64,
}

struct TunnelSession {
    id: String,
    ip: IpAddr,
    /// Milliseconds since the tunnel's epoch of the last request start or end.
    last_seen: AtomicU64,
    exchange: tokio::sync::Mutex<Exchange>,
    /// Signalled whenever a request finishes, so a request that arrived early re-checks.
    progressed: tokio::sync::Notify,
}

/// Why a request failed, mapped to one HTTP status.
#[derive(Debug, thiserror::Error)]
enum ReqError {
    #[error("method {0} not allowed; RTMPT uses POST")]
    Method(Method),
    #[error("no such path")]
    NotFound,
    #[error("unknown or expired session")]
    UnknownSession,
    #[error("bad sequence number {0:?}")]
    BadSeq(String),
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    #[error("body not received completely: {0}")]
    Body(String),
    #[error("sequence {seq} refused: out of order beyond what can be held")]
    OutOfOrder { seq: u64 },
    #[error("too many tunnel sessions ({0})")]
    Full(&'static str),
    #[error("{0}")]
    Pipe(#[from] PipeError),
    #[error("the system random number generator failed; cannot make a session id")]
    NoRandom,
}

impl ReqError {
    fn status(&self) -> StatusCode {
        match self {
            ReqError::Method(_) => StatusCode::METHOD_NOT_ALLOWED,
            ReqError::NotFound | ReqError::UnknownSession => StatusCode::NOT_FOUND,
            ReqError::BadSeq(_) | ReqError::Body(_) => StatusCode::BAD_REQUEST,
            ReqError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ReqError::OutOfOrder { .. } => StatusCode::CONFLICT,
            ReqError::Full(_) | ReqError::NoRandom => StatusCode::SERVICE_UNAVAILABLE,
            ReqError::Pipe(PipeError::Ended) => StatusCode::NOT_FOUND,
            ReqError::Pipe(PipeError::Stalled(_)) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cmd {
    Send,
    Idle,
    Close,
}

impl Tunnel {
    pub fn new(cfg: HttpSection) -> Tunnel {
        Tunnel {
            cfg: RwLock::new(Arc::new(cfg)),
            table: Mutex::new(Table::default()),
            epoch: Instant::now(),
            stats: TunnelStats::default(),
        }
    }

    /// The `[http]` settings in force now.
    pub fn cfg(&self) -> Arc<HttpSection> {
        match self.cfg.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the settings (config reload): new sessions and requests use them; a session's
    /// buffer keeps the size it was opened with.
    pub fn set_config(&self, cfg: HttpSection) {
        let mut g = match self.cfg.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *g = Arc::new(cfg);
    }

    /// Tunnel sessions currently open.
    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Sessions open from one client address (the per-IP limit counts these).
    pub fn sessions_from(&self, ip: IpAddr) -> usize {
        self.lock().per_ip.get(&ip).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        match self.table.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn get(&self, id: &str) -> Option<Arc<TunnelSession>> {
        self.lock().sessions.get(id).cloned()
    }

    fn remove(&self, id: &str) -> bool {
        let mut t = self.lock();
        let Some(s) = t.sessions.remove(id) else {
            return false;
        };
        if let Some(n) = t.per_ip.get_mut(&s.ip) {
            *n -= 1;
            if *n == 0 {
                t.per_ip.remove(&s.ip);
            }
        }
        true
    }

    /// Frees sessions that have seen no request for `session_idle_timeout_secs`. Dropping a
    /// session's pipe ends its connection driver.
    pub fn expire_idle(&self) -> usize {
        let limit = self.cfg().session_idle_timeout_secs * 1000;
        let now = self.now_ms();
        let stale: Vec<String> = self
            .lock()
            .sessions
            .values()
            .filter(|s| now.saturating_sub(s.last_seen.load(Ordering::Relaxed)) > limit)
            .map(|s| s.id.clone())
            .collect();
        let mut n = 0;
        for id in stale {
            if self.remove(&id) {
                info!(session = %id, "RTMPT session expired after {}s without a request", self.cfg().session_idle_timeout_secs);
                self.stats.expired.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        }
        n
    }

    /// `/open`: a new session with an unguessable id, its driver started on the far end.
    fn open(
        &self,
        peer: SocketAddr,
        transport: &'static str,
        shared: &Arc<Shared>,
    ) -> Result<String, ReqError> {
        let id = new_session_id().ok_or(ReqError::NoRandom)?;
        let cfg = self.cfg();
        let (near, far) = tokio::io::duplex(cfg.session_buffer_bytes);
        {
            let mut t = self.lock();
            if t.sessions.len() >= cfg.max_sessions {
                return Err(ReqError::Full("http.max_sessions"));
            }
            let per_ip = t.per_ip.entry(peer.ip()).or_insert(0);
            if *per_ip >= cfg.max_sessions_per_ip {
                return Err(ReqError::Full("http.max_sessions_per_ip"));
            }
            *per_ip += 1;
            t.sessions.insert(
                id.clone(),
                Arc::new(TunnelSession {
                    id: id.clone(),
                    ip: peer.ip(),
                    last_seen: AtomicU64::new(self.now_ms()),
                    exchange: tokio::sync::Mutex::new(Exchange::new(near)),
                    progressed: tokio::sync::Notify::new(),
                }),
            );
        }
        self.stats.opened.fetch_add(1, Ordering::Relaxed);
        info!(session = %id, %peer, transport, "RTMPT session opened");
        let shared = shared.clone();
        tokio::spawn(conn::serve(far, peer, transport, shared));
        Ok(id)
    }

    /// `/send`, `/idle` and `/close` on an existing session, in sequence order.
    async fn exchange(
        &self,
        cmd: Cmd,
        id: &str,
        seq: u64,
        body: Bytes,
        write_limit: Duration,
    ) -> Result<Bytes, ReqError> {
        let sess = self.get(id).ok_or(ReqError::UnknownSession)?;
        sess.last_seen.store(self.now_ms(), Ordering::Relaxed);
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(self.cfg().reorder_wait_ms);
        let mut x = loop {
            let notified = sess.progressed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut x = sess.exchange.lock().await;
            match x.seq.check(seq) {
                SeqCheck::Process => break x,
                SeqCheck::Replay(reply) => {
                    debug!(session = %id, seq, "retried request answered again");
                    return Ok(reply);
                }
                SeqCheck::Refuse => return Err(ReqError::OutOfOrder { seq }),
                SeqCheck::Wait => {
                    drop(x);
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        return Err(ReqError::OutOfOrder { seq });
                    }
                }
            }
        };
        let reply = match cmd {
            Cmd::Close => Bytes::from_static(&[0x00]),
            Cmd::Send | Cmd::Idle => {
                if cmd == Cmd::Send
                    && let Err(e) = x.push(&body, write_limit).await
                {
                    // Either way the session cannot go on: free it (ending its driver) so
                    // the client's next request gets a clean 404.
                    drop(x);
                    self.remove(id);
                    sess.progressed.notify_waiters();
                    info!(session = %id, reason = %e, "RTMPT session dropped");
                    return Err(e.into());
                }
                let hold = if cmd == Cmd::Send {
                    SEND_LINGER
                } else {
                    self.cfg().latency.idle_hold()
                };
                x.pull(self.cfg().max_reply_bytes, hold).await
            }
        };
        x.seq.done(seq, reply.clone());
        trace!(session = %id, ?cmd, seq, body = body.len(), reply = reply.len(), "RTMPT exchange");
        let ended = x.ended;
        drop(x);
        sess.progressed.notify_waiters();
        sess.last_seen.store(self.now_ms(), Ordering::Relaxed);
        if cmd == Cmd::Close {
            if self.remove(id) {
                self.stats.closed.fetch_add(1, Ordering::Relaxed);
                info!(session = %id, "RTMPT session closed by the client");
            }
        } else if ended && reply.len() <= 1 {
            // Everything the session wrote has been delivered; later requests get 404.
            if self.remove(id) {
                self.stats.closed.fetch_add(1, Ordering::Relaxed);
                debug!(session = %id, "RTMPT session ended by the server side");
            }
        }
        Ok(reply)
    }
}

/// 128 random bits, hex: the session id is the only credential a tunnel request carries.
/// `None` when the OS random source fails (then no session is opened: a guessable id would be
/// worse than a refusal).
fn new_session_id() -> Option<String> {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut b = [0u8; 16];
    SystemRandom::new().fill(&mut b).ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Serves RTMPT requests on one accepted byte stream (plain or TLS) until the client leaves.
/// `transport` labels the sessions this connection opens (`rtmpt` or `rtmpts`).
pub async fn serve_http<S>(io: S, peer: SocketAddr, transport: &'static str, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = Duration::from_secs(shared.config().rtmp.handshake_timeout_secs);
    let span = info_span!("http", %peer, transport);
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        async move {
            shared.tunnel.stats.requests.fetch_add(1, Ordering::Relaxed);
            let (method, path) = (req.method().clone(), req.uri().path().to_owned());
            let resp = match handle(req, peer, transport, &shared).await {
                Ok(r) => r,
                Err(e) => {
                    let status = e.status();
                    // Refusals are the peer's fault; the connection's log says which request.
                    info!(%method, path, status = status.as_u16(), reason = %e, "RTMPT request refused");
                    if matches!(e, ReqError::Full(_)) {
                        shared.tunnel.stats.refused.fetch_add(1, Ordering::Relaxed);
                    }
                    error_response(&e)
                }
            };
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        // librtmp finds `Content-Length` with a case-sensitive search for "Content-".
        .title_case_headers(true)
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(io), svc);
    async move {
        if let Err(e) = conn.await {
            debug!(error = %e, "HTTP connection ended with an error");
        }
    }
    .instrument(span)
    .await
}

async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    transport: &'static str,
    shared: &Arc<Shared>,
) -> Result<Response<Full<Bytes>>, ReqError> {
    let tunnel = &shared.tunnel;
    let cfg = tunnel.cfg();
    if req.method() != Method::POST {
        return Err(ReqError::Method(req.method().clone()));
    }
    let (head, body) = req.into_parts();
    let route = parse_route(head.uri.path())?;
    // Refuse an oversized body before reading any of it.
    if let Some(len) = head.headers.get(CONTENT_LENGTH) {
        let len: u64 = len
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| ReqError::Body("unreadable Content-Length".into()))?;
        if len > cfg.max_body_bytes as u64 {
            return Err(ReqError::TooLarge(cfg.max_body_bytes));
        }
    }
    let body_timeout = Duration::from_secs(shared.config().rtmp.handshake_timeout_secs);
    let body = match tokio::time::timeout(
        body_timeout,
        Limited::new(body, cfg.max_body_bytes).collect(),
    )
    .await
    {
        Err(_) => {
            return Err(ReqError::Body(format!(
                "not complete within {body_timeout:?}"
            )));
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(ReqError::TooLarge(cfg.max_body_bytes));
        }
        Ok(Err(e)) => return Err(ReqError::Body(e.to_string())),
        Ok(Ok(c)) => c.to_bytes(),
    };
    match route {
        Route::Ident => match &cfg.ident {
            Some(ident) => Ok(reply(Bytes::from(ident.clone()))),
            None => Err(ReqError::NotFound),
        },
        Route::Open => {
            let id = tunnel.open(peer, transport, shared)?;
            Ok(reply(Bytes::from(format!("{id}\n"))))
        }
        Route::Session { cmd, id, seq } => {
            let write_limit = Duration::from_secs(shared.config().rtmp.write_timeout_secs);
            let out = tunnel.exchange(cmd, id, seq, body, write_limit).await?;
            Ok(reply(out))
        }
    }
}

/// What a request path asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Ident,
    Open,
    Session { cmd: Cmd, id: &'a str, seq: u64 },
}

/// `/fcs/ident2`, `/open/<n>`, `/{send,idle,close}/<id>/<seq>`; anything else is refused
/// before the body is read.
fn parse_route(path: &str) -> Result<Route<'_>, ReqError> {
    let mut parts = path.trim_start_matches('/').split('/');
    let first = parts.next().unwrap_or("");
    let route = match first {
        "fcs" if parts.next() == Some("ident2") => Route::Ident,
        // librtmp and ffmpeg both send `/open/1`; the number carries nothing.
        "open" => {
            parts.next();
            Route::Open
        }
        "send" | "idle" | "close" => {
            let cmd = match first {
                "send" => Cmd::Send,
                "idle" => Cmd::Idle,
                _ => Cmd::Close,
            };
            let id = parts.next().unwrap_or("");
            let seq_text = parts.next().unwrap_or("");
            let seq: u64 = seq_text
                .parse()
                .map_err(|_| ReqError::BadSeq(seq_text.chars().take(32).collect()))?;
            Route::Session { cmd, id, seq }
        }
        _ => return Err(ReqError::NotFound),
    };
    if parts.next().is_some() {
        return Err(ReqError::NotFound);
    }
    Ok(route)
}

fn reply(body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(FCS));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(hyper::header::SERVER, HeaderValue::from_static("wasmgate"));
    r
}

fn error_response(e: &ReqError) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{e}\n"))));
    *r.status_mut() = e.status();
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if matches!(e, ReqError::Method(_)) {
        h.insert(hyper::header::ALLOW, HeaderValue::from_static("POST"));
    }
    if matches!(e, ReqError::TooLarge(_) | ReqError::Body(_)) {
        // The rest of the body is unread: the connection cannot carry another request.
        h.insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// Runs until the server stops: frees idle sessions once a second.
pub async fn expiry_loop(tunnel: Arc<Tunnel>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        tunnel.expire_idle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_128_bit_hex_and_distinct() {
        let a = new_session_id().unwrap();
        let b = new_session_id().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn routes() {
        assert_eq!(parse_route("/fcs/ident2").unwrap(), Route::Ident);
        assert_eq!(parse_route("/open/1").unwrap(), Route::Open);
        assert_eq!(
            parse_route("/idle/abc/7").unwrap(),
            Route::Session {
                cmd: Cmd::Idle,
                id: "abc",
                seq: 7
            }
        );
        assert!(matches!(
            parse_route("/send/abc/x"),
            Err(ReqError::BadSeq(_))
        ));
        assert!(matches!(
            parse_route("/send/abc/-1"),
            Err(ReqError::BadSeq(_))
        ));
        assert!(matches!(
            parse_route("/close/abc/1/2"),
            Err(ReqError::NotFound)
        ));
        assert!(matches!(parse_route("/"), Err(ReqError::NotFound)));
        assert!(matches!(parse_route("/fcs/ident"), Err(ReqError::NotFound)));
    }

    proptest::proptest! {
        #[test]
        fn any_path_parses_or_is_refused_without_panicking(path in "\\PC{0,64}") {
            let _ = parse_route(&path);
        }

        #[test]
        fn session_paths_round_trip(id in "[0-9a-f]{1,32}", seq in proptest::num::u64::ANY) {
            let path = format!("/send/{id}/{seq}");
            let r = parse_route(&path).unwrap();
            proptest::prop_assert_eq!(r, Route::Session { cmd: Cmd::Send, id: &id, seq });
        }
    }

    #[test]
    fn statuses() {
        assert_eq!(ReqError::UnknownSession.status(), 404);
        assert_eq!(ReqError::Method(Method::GET).status(), 405);
        assert_eq!(ReqError::TooLarge(1).status(), 413);
        assert_eq!(ReqError::OutOfOrder { seq: 1 }.status(), 409);
    }
}
