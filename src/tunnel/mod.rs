//! RTMPT: RTMP tunnelled over HTTP POSTs (`/open`, `/send`, `/idle`, `/close`), served with
//! hyper. Each tunnel session feeds a byte pipe into the same connection driver as raw TCP
//! ([`crate::driver::serve`]); the tunnel is a transport, not a second server.
//!
//! Every decision is made by the sans-IO core in [`request`] (also driven by the `rtmpt` fuzz
//! target); this file adds only what needs a runtime: reading bodies, waiting for a sequence
//! gap, moving bytes through the pipe, spawning the driver.
//!
//! Wire behaviour follows the public clients: ffmpeg's `rtmphttp.c` (buffers writes until it
//! reads, sleeps 50 ms after an empty reply) and librtmp's `HTTP_Post`/`HTTP_read` (busy-polls,
//! requires `HTTP/1.1 200 ` and a `Content-Length` header spelled with capitals).

pub mod request;
pub mod session;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use tokio::io::DuplexStream;
use tracing::{debug, info, trace};

use crate::config::HttpSection;
use crate::gateway::{Core, Prepared, ReloadHook};
use request::{Cmd, Env, Pulled, Route, Step, Ticket, TunnelState};
pub use request::{Refusal, ReqError, TunnelStats};
use session::PipeError;

const FCS: &str = "application/x-fcs";

/// The session table shared by every listener that serves RTMPT: the sans-IO
/// [`TunnelState`] behind a lock, plus what waiting needs (a clock and a wake-up).
pub struct Tunnel {
    state: Mutex<TunnelState<DuplexStream>>,
    /// Signalled whenever a session request finishes, so a request that arrived early
    /// re-checks its turn.
    progressed: tokio::sync::Notify,
    epoch: Instant,
}

impl Tunnel {
    pub fn new(cfg: HttpSection) -> Tunnel {
        Tunnel {
            state: Mutex::new(TunnelState::new(cfg)),
            progressed: tokio::sync::Notify::new(),
            epoch: Instant::now(),
        }
    }

    /// Replaces the `[http]` settings (config reload): new sessions and requests use them; a
    /// session's buffer keeps the size it was opened with.
    pub fn set_config(&self, cfg: HttpSection) {
        self.lock().set_config(cfg);
    }

    /// Tunnel sessions currently open.
    pub fn session_count(&self) -> usize {
        self.lock().session_count()
    }

    /// Sessions open from one client address (the per-IP limit counts these).
    pub fn sessions_from(&self, ip: IpAddr) -> usize {
        self.lock().sessions_from(ip)
    }

    /// Counters for `/metrics` and tests.
    pub fn stats(&self) -> TunnelStats {
        self.lock().stats()
    }

    /// Copies this tunnel's counters into the metrics recorder (the admin view calls it when
    /// `/metrics` is scraped).
    pub fn export_metrics(&self) {
        use crate::metrics::*;
        use ::metrics::{counter, gauge};
        let t = self.stats();
        gauge!(TUNNEL_SESSIONS).set(t.sessions as f64);
        counter!(TUNNEL_SESSIONS_OPENED).absolute(t.opened);
        counter!(TUNNEL_SESSIONS_CLOSED).absolute(t.closed);
        counter!(TUNNEL_SESSIONS_EXPIRED).absolute(t.expired);
        counter!(TUNNEL_REQUESTS).absolute(t.requests);
        counter!(TUNNEL_BYTES_IN).absolute(t.bytes_in);
        counter!(TUNNEL_BYTES_OUT).absolute(t.bytes_out);
        for reason in Refusal::ALL {
            counter!(TUNNEL_ERRORS, "reason" => reason.label()).absolute(t.refused(reason));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TunnelState<DuplexStream>> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Frees sessions that have seen no request for `session_idle_timeout_secs`. Dropping a
    /// session's pipe ends its connection driver.
    pub fn expire_idle(&self) -> usize {
        let now = self.now_ms();
        self.lock().expire(now)
    }

    /// Runs a routed request with its body to its reply, waiting its turn in sequence order.
    async fn run(
        &self,
        route: Route<'_>,
        body: &Bytes,
        env: &mut ServerEnv<'_>,
        write_limit: Duration,
    ) -> Result<Bytes, ReqError> {
        let reorder_wait = Duration::from_millis(self.lock().config().reorder_wait_ms);
        let deadline = tokio::time::Instant::now() + reorder_wait;
        loop {
            let notified = self.progressed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let step = {
                let now = self.now_ms();
                self.lock()
                    .begin(route, body.len(), env.peer.ip(), now, env)
            };
            match step {
                Step::Reply(r) => {
                    // A close or an ended session changed the sequence: let waiters re-check.
                    self.progressed.notify_waiters();
                    return r;
                }
                Step::Replay(r) => {
                    debug!(?route, "retried request answered again");
                    return Ok(r);
                }
                Step::Wait => {
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        let seq = match route {
                            Route::Session { seq, .. } => seq,
                            _ => 0,
                        };
                        return Err(ReqError::OutOfOrder { seq });
                    }
                }
                Step::Exchange(ticket) => {
                    let mut flight = InFlight {
                        tunnel: self,
                        ticket: Some(ticket),
                    };
                    let outcome = flight.carry(body, write_limit).await;
                    let r = flight.finish(outcome);
                    self.progressed.notify_waiters();
                    return r;
                }
            }
        }
    }
}

/// A ticket in use by a request future. If hyper drops the future (the client's connection
/// closed mid-request), the pipe goes back to its session instead of being dropped with it.
struct InFlight<'a> {
    tunnel: &'a Tunnel,
    ticket: Option<Ticket<DuplexStream>>,
}

impl InFlight<'_> {
    /// `/send` bodies go into the pipe; then whatever the session has pending comes back.
    async fn carry(&mut self, body: &[u8], write_limit: Duration) -> Result<Pulled, PipeError> {
        let Some(t) = self.ticket.as_mut() else {
            return Err(PipeError::Ended);
        };
        if t.cmd == Cmd::Send {
            session::push(&mut t.pipe, body, write_limit).await?;
        }
        let mut reply = t.reply_buf();
        let ended = session::pull(&mut t.pipe, &mut reply, t.hold).await;
        trace!(session = %t.id, cmd = ?t.cmd, seq = t.seq, body = body.len(), reply = reply.data_len(), "RTMPT exchange");
        Ok(Pulled { reply, ended })
    }

    fn finish(&mut self, outcome: Result<Pulled, PipeError>) -> Result<Bytes, ReqError> {
        let Some(t) = self.ticket.take() else {
            return Err(ReqError::UnknownSession);
        };
        let now = self.tunnel.now_ms();
        self.tunnel.lock().finish(t, outcome, now)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            debug!(session = %t.id, seq = t.seq, "RTMPT request abandoned mid-exchange");
            let now = self.tunnel.now_ms();
            self.tunnel.lock().abandon(t, now);
            self.tunnel.progressed.notify_waiters();
        }
    }
}

/// Opens tunnel sessions for one HTTP connection: a bounded in-memory pipe whose far end is
/// served by the ordinary connection driver, labelled with this connection's transport.
struct ServerEnv<'a> {
    peer: SocketAddr,
    transport: &'static str,
    core: &'a Arc<Core>,
}

impl Env for ServerEnv<'_> {
    type Pipe = DuplexStream;

    fn session_id(&mut self) -> Option<String> {
        new_session_id()
    }

    fn open_pipe(&mut self) -> DuplexStream {
        let (near, far) = tokio::io::duplex(self.core.config().http.session_buffer_bytes);
        info!(peer = %self.peer, transport = self.transport, "RTMPT session starting");
        tokio::spawn(crate::driver::serve(
            far,
            self.peer,
            self.transport,
            self.core.clone(),
        ));
        near
    }
}

/// 128 random bits, hex: the session id is the only credential a tunnel request carries.
fn new_session_id() -> Option<String> {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut b = [0u8; 16];
    SystemRandom::new().fill(&mut b).ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// One request: its head checked by the tunnel core, its body read within limits, then run
/// through the core; every outcome is counted and answered.
/// `transport` labels a session it opens; the reply's body is whole.
pub async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    transport: &'static str,
    tunnel: &Tunnel,
    core: &Arc<Core>,
) -> Response<Bytes> {
    let (head, body) = req.into_parts();
    let path = head.uri.path();
    let mut body_len = 0;
    let outcome = async {
        let content_length = head.headers.get(CONTENT_LENGTH).map(|v| v.as_bytes());
        let route = tunnel
            .lock()
            .route(head.method.as_str(), path, content_length)?;
        let body = read_body(body, core).await?;
        body_len = body.len();
        let write_limit = Duration::from_secs(core.config().rtmp.write_timeout_secs);
        let mut env = ServerEnv {
            peer,
            transport,
            core,
        };
        tunnel.run(route, &body, &mut env, write_limit).await
    }
    .await;
    tunnel.lock().record(body_len, &outcome);
    match outcome {
        Ok(body) => reply(body),
        Err(e) => {
            // Refusals are the peer's fault; the connection's log says which request.
            info!(method = %head.method, path, status = e.status(), reason = %e, "RTMPT request refused");
            error_response(&e)
        }
    }
}

/// The whole body, refused above `http.max_body_bytes` or when it does not arrive within the
/// handshake timeout.
async fn read_body(body: Incoming, core: &Core) -> Result<Bytes, ReqError> {
    let config = core.config();
    let max = config.http.max_body_bytes;
    let body_timeout = Duration::from_secs(config.rtmp.handshake_timeout_secs);
    match tokio::time::timeout(body_timeout, Limited::new(body, max).collect()).await {
        Err(_) => Err(ReqError::Body(format!(
            "not complete within {body_timeout:?}"
        ))),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(ReqError::TooLarge(max)),
        Ok(Err(e)) => Err(ReqError::Body(e.to_string())),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

fn reply(body: Bytes) -> Response<Bytes> {
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(FCS));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(hyper::header::SERVER, HeaderValue::from_static("wasmgate"));
    r
}

fn error_response(e: &ReqError) -> Response<Bytes> {
    let mut r = Response::new(Bytes::from(format!("{e}\n")));
    *r.status_mut() = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if matches!(e, ReqError::Method(_)) {
        h.insert(hyper::header::ALLOW, HeaderValue::from_static("POST"));
    }
    if e.closes_connection() {
        h.insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// Keeps a tunnel's `[http]` settings current across config reloads.
pub struct TunnelReload(pub Arc<Tunnel>);

impl ReloadHook for TunnelReload {
    fn name(&self) -> &'static str {
        "tunnel"
    }

    fn prepare(&self, new: &crate::config::Config, _: &[String]) -> Result<Prepared, String> {
        let (tunnel, http) = (self.0.clone(), new.http.clone());
        Ok(Prepared::new(move || tunnel.set_config(http)))
    }
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
}
