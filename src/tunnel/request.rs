//! The sans-IO core of RTMPT: turns one HTTP request (method, path, Content-Length, body) into a
//! reply or into an exchange on a session's pipe. The hyper service and the fuzz target drive it.
//!
//! Call order per request: [`TunnelState::route`] on the head (before reading the body), then
//! [`TunnelState::begin`] with the body. `begin` answers at once ([`Step::Reply`],
//! [`Step::Replay`]), asks the caller to wait for another request to finish and call `begin`
//! again ([`Step::Wait`]), or hands out the session's pipe in a [`Ticket`]: the caller carries the
//! body through it, fills a [`ReplyBuf`] with what the RTMP side has pending, and returns both
//! through [`TunnelState::finish`] (or [`TunnelState::abandon`] if the request went away).
//! [`TunnelState::record`] counts the final outcome; [`TunnelState::expire`] frees idle
//! sessions. No clock, randomness or task spawning is done here: [`Env`] and `now_ms` bring them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use tracing::{debug, info};

use super::session::{PipeError, Poller, ReplyBuf, SeqCheck, Sequencer};
use crate::config::HttpSection;

/// How long a `/send` reply waits for the session's answer before going out empty. Short, so a
/// publisher (one request per message with ffmpeg) is never slowed, but long enough that a
/// handshake or command answer usually rides on the same reply instead of costing ffmpeg a
/// 50 ms sleep and an extra `/idle`.
pub const SEND_LINGER: Duration = Duration::from_millis(3);

/// The shortest an idle poll is held once a proxy has been seen giving up on held polls.
pub const MIN_HOLD: Duration = Duration::from_millis(20);

/// A session command in the path.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Cmd {
    Send,
    Idle,
    Close,
}

/// What a request path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    Ident,
    Open,
    Session { cmd: Cmd, id: &'a str, seq: u64 },
}

/// Why a request was refused, mapped to one HTTP status and one metrics label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReqError {
    #[error("method {0} not allowed; RTMPT uses POST")]
    Method(String),
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

/// Refusal reasons, as counted in [`TunnelStats`] and labelled in `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    BadMethod,
    NotFound,
    UnknownSession,
    BadSequence,
    TooLarge,
    BadBody,
    OutOfOrder,
    Full,
    SessionEnded,
    Stalled,
    NoRandom,
}

impl Refusal {
    pub const ALL: [Refusal; 11] = [
        Refusal::BadMethod,
        Refusal::NotFound,
        Refusal::UnknownSession,
        Refusal::BadSequence,
        Refusal::TooLarge,
        Refusal::BadBody,
        Refusal::OutOfOrder,
        Refusal::Full,
        Refusal::SessionEnded,
        Refusal::Stalled,
        Refusal::NoRandom,
    ];

    /// The `reason` label in `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::BadMethod => "bad_method",
            Refusal::NotFound => "not_found",
            Refusal::UnknownSession => "unknown_session",
            Refusal::BadSequence => "bad_sequence",
            Refusal::TooLarge => "too_large",
            Refusal::BadBody => "bad_body",
            Refusal::OutOfOrder => "out_of_order",
            Refusal::Full => "session_limit",
            Refusal::SessionEnded => "session_ended",
            Refusal::Stalled => "session_stalled",
            Refusal::NoRandom => "no_random",
        }
    }
}

impl ReqError {
    pub fn status(&self) -> u16 {
        match self {
            ReqError::Method(_) => 405,
            ReqError::NotFound | ReqError::UnknownSession => 404,
            ReqError::BadSeq(_) | ReqError::Body(_) => 400,
            ReqError::TooLarge(_) => 413,
            ReqError::OutOfOrder { .. } => 409,
            ReqError::Full(_) | ReqError::NoRandom => 503,
            ReqError::Pipe(PipeError::Ended) => 404,
            ReqError::Pipe(PipeError::Stalled(_)) => 503,
        }
    }

    pub fn reason(&self) -> Refusal {
        match self {
            ReqError::Method(_) => Refusal::BadMethod,
            ReqError::NotFound => Refusal::NotFound,
            ReqError::UnknownSession => Refusal::UnknownSession,
            ReqError::BadSeq(_) => Refusal::BadSequence,
            ReqError::TooLarge(_) => Refusal::TooLarge,
            ReqError::Body(_) => Refusal::BadBody,
            ReqError::OutOfOrder { .. } => Refusal::OutOfOrder,
            ReqError::Full(_) => Refusal::Full,
            ReqError::Pipe(PipeError::Ended) => Refusal::SessionEnded,
            ReqError::Pipe(PipeError::Stalled(_)) => Refusal::Stalled,
            ReqError::NoRandom => Refusal::NoRandom,
        }
    }

    /// The rest of the body may be unread: the connection cannot carry another request.
    pub fn closes_connection(&self) -> bool {
        matches!(self, ReqError::TooLarge(_) | ReqError::Body(_))
    }
}

/// `/fcs/ident2`, `/open/<n>`, `/{send,idle,close}/<id>/<seq>`; anything else is refused
/// before the body is read.
pub fn parse_route(path: &str) -> Result<Route<'_>, ReqError> {
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

/// What the tunnel needs from its surroundings to open a session.
pub trait Env {
    /// The byte pipe to the RTMP session behind a tunnel session.
    type Pipe;
    /// An unguessable session id; `None` when no randomness is available (then no session is
    /// opened: a guessable id would be worse than a refusal).
    fn session_id(&mut self) -> Option<String>;
    /// A pipe whose far end serves a new RTMP session.
    fn open_pipe(&mut self) -> Self::Pipe;
}

/// Counters for `/metrics` and tests; [`TunnelState::stats`] takes a snapshot.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TunnelStats {
    /// Sessions open now.
    pub sessions: usize,
    pub opened: u64,
    /// Sessions ended by `/close`, by the RTMP side, or by a failed pipe.
    pub closed: u64,
    /// Sessions freed after `http.session_idle_timeout_secs` without a request.
    pub expired: u64,
    /// Requests answered (refusals included).
    pub requests: u64,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Reply body bytes of successful requests.
    pub bytes_out: u64,
    refused: [u64; Refusal::ALL.len()],
}

impl TunnelStats {
    pub fn refused(&self, reason: Refusal) -> u64 {
        self.refused[reason as usize]
    }

    pub fn refused_total(&self) -> u64 {
        self.refused.iter().sum()
    }
}

/// One tunnel session: its sequence and polling state, and its pipe while no request holds it.
struct Slot<P> {
    ip: IpAddr,
    /// Milliseconds (caller's clock) of the last request start or end.
    last_seen: u64,
    seq: Sequencer,
    /// The command of the request answered last: a retry repeats it.
    last_cmd: Option<Cmd>,
    poller: Poller,
    /// Set when an idle poll went away while held (a proxy's read timeout shorter than the
    /// hold): later polls of this session are held at most this long.
    hold_cap: Option<Duration>,
    /// The RTMP side closed its end and everything it wrote has been returned.
    ended: bool,
    /// `None` while a [`Ticket`] holds it.
    pipe: Option<P>,
}

/// What [`TunnelState::begin`] decided.
#[derive(Debug)]
pub enum Step<P> {
    /// Answer now: 200 with this body, or the error.
    Reply(Result<Bytes, ReqError>),
    /// A retry of the request answered last: the same 200 body again.
    Replay(Bytes),
    /// The request is ahead of a missing one (or retries the one in progress): call `begin`
    /// again after another request of the session finishes; refuse with
    /// [`ReqError::OutOfOrder`] when `http.reorder_wait_ms` runs out first.
    Wait,
    /// The expected `/send` or `/idle`: carry it through the pipe, then [`TunnelState::finish`].
    Exchange(Ticket<P>),
}

/// The right to use a session's pipe for one request, handed out in sequence order.
#[derive(Debug)]
pub struct Ticket<P> {
    pub id: String,
    pub cmd: Cmd,
    pub seq: u64,
    pub pipe: P,
    /// How long to wait for the first reply byte when nothing is pending.
    pub hold: Duration,
    max_reply: usize,
    /// When the exchange started (caller's clock), to tell how long it was held if abandoned.
    started_ms: u64,
}

impl<P> Ticket<P> {
    /// An empty reply body sized by `http.max_reply_bytes`.
    pub fn reply_buf(&self) -> ReplyBuf {
        ReplyBuf::new(self.max_reply)
    }
}

/// How carrying a ticket's request went.
#[derive(Debug)]
pub struct Pulled {
    /// RTMP bytes for the client.
    pub reply: ReplyBuf,
    /// The RTMP side's end of the pipe closed (after everything in `reply`).
    pub ended: bool,
}

/// Every tunnel session, with the limits of `[http]`.
pub struct TunnelState<P> {
    cfg: HttpSection,
    sessions: HashMap<String, Slot<P>>,
    per_ip: HashMap<IpAddr, usize>,
    stats: TunnelStats,
}

impl<P> TunnelState<P> {
    pub fn new(cfg: HttpSection) -> TunnelState<P> {
        TunnelState {
            cfg,
            sessions: HashMap::new(),
            per_ip: HashMap::new(),
            stats: TunnelStats::default(),
        }
    }

    pub fn config(&self) -> &HttpSection {
        &self.cfg
    }

    pub fn set_config(&mut self, cfg: HttpSection) {
        self.cfg = cfg;
    }

    /// Tunnel sessions currently open.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Sessions open from one client address (the per-IP limit counts these).
    pub fn sessions_from(&self, ip: IpAddr) -> usize {
        self.per_ip.get(&ip).copied().unwrap_or(0)
    }

    pub fn stats(&self) -> TunnelStats {
        TunnelStats {
            sessions: self.sessions.len(),
            ..self.stats
        }
    }

    /// Checks a request head before its body is read: method, path and a declared
    /// Content-Length above `http.max_body_bytes`.
    pub fn route<'a>(
        &self,
        method: &str,
        path: &'a str,
        content_length: Option<&[u8]>,
    ) -> Result<Route<'a>, ReqError> {
        if method != "POST" {
            return Err(ReqError::Method(method.chars().take(16).collect()));
        }
        let route = parse_route(path)?;
        if let Some(len) = content_length {
            let len: u64 = std::str::from_utf8(len)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| ReqError::Body("unreadable Content-Length".into()))?;
            if len > self.cfg.max_body_bytes as u64 {
                return Err(ReqError::TooLarge(self.cfg.max_body_bytes));
            }
        }
        Ok(route)
    }

    /// Starts a routed request whose body has been read.
    pub fn begin<E: Env<Pipe = P>>(
        &mut self,
        route: Route<'_>,
        body_len: usize,
        ip: IpAddr,
        now_ms: u64,
        env: &mut E,
    ) -> Step<P> {
        if body_len > self.cfg.max_body_bytes {
            return Step::Reply(Err(ReqError::TooLarge(self.cfg.max_body_bytes)));
        }
        let (cmd, id, seq) = match route {
            Route::Ident => {
                return Step::Reply(match &self.cfg.ident {
                    Some(ident) => Ok(Bytes::from(ident.clone())),
                    None => Err(ReqError::NotFound),
                });
            }
            Route::Open => {
                return Step::Reply(
                    self.open(ip, now_ms, env)
                        .map(|id| Bytes::from(format!("{id}\n"))),
                );
            }
            Route::Session { cmd, id, seq } => (cmd, id, seq),
        };
        let mut hold = self.cfg.latency.idle_hold();
        let max_reply = self.cfg.max_reply_bytes;
        let Some(slot) = self.sessions.get_mut(id) else {
            return Step::Reply(Err(ReqError::UnknownSession));
        };
        slot.last_seen = now_ms;
        match slot.seq.check(seq) {
            SeqCheck::Process => {}
            // Found by the `rtmpt` fuzz target: a `/close` carrying the number of the
            // `/send` just answered got the send's reply. A retry repeats its request.
            SeqCheck::Replay(reply) if slot.last_cmd == Some(cmd) => return Step::Replay(reply),
            SeqCheck::Replay(_) => return Step::Reply(Err(ReqError::OutOfOrder { seq })),
            SeqCheck::Wait => return Step::Wait,
            SeqCheck::Refuse => return Step::Reply(Err(ReqError::OutOfOrder { seq })),
        }
        if cmd == Cmd::Close {
            let reply = Bytes::from_static(&[0x00]);
            slot.seq.done(seq, reply.clone());
            if self.remove(id) {
                self.stats.closed += 1;
                info!(session = %id, "RTMPT session closed by the client");
            }
            return Step::Reply(Ok(reply));
        }
        if slot.ended {
            // The RTMP side is gone and its last bytes went out: nothing to carry.
            if cmd == Cmd::Send && body_len > 0 {
                self.remove(id);
                self.stats.closed += 1;
                return Step::Reply(Err(PipeError::Ended.into()));
            }
            let reply = ReplyBuf::new(0).finish(slot.poller.next_byte(false));
            slot.seq.done(seq, reply.clone());
            if self.remove(id) {
                self.stats.closed += 1;
                debug!(session = %id, "RTMPT session ended by the server side");
            }
            return Step::Reply(Ok(reply));
        }
        if let Some(cap) = slot.hold_cap {
            hold = hold.min(cap);
        }
        let Some(pipe) = slot.pipe.take() else {
            // Unreachable while the sequencer admits one request at a time; waiting is the
            // safe answer if it ever were reached.
            slot.seq.abandon();
            return Step::Wait;
        };
        Step::Exchange(Ticket {
            id: id.to_owned(),
            cmd,
            seq,
            pipe,
            hold: if cmd == Cmd::Send { SEND_LINGER } else { hold },
            max_reply,
            started_ms: now_ms,
        })
    }

    /// Completes a ticket: the reply body (polling byte first) or, when the pipe failed, the
    /// error after which the session is gone.
    pub fn finish(
        &mut self,
        ticket: Ticket<P>,
        outcome: Result<Pulled, PipeError>,
        now_ms: u64,
    ) -> Result<Bytes, ReqError> {
        let id = ticket.id.as_str();
        let Some(slot) = self.sessions.get_mut(id) else {
            // Expired while the request was in progress; dropping the pipe ends its driver.
            return Err(ReqError::UnknownSession);
        };
        let pulled = match outcome {
            Ok(p) => p,
            Err(e) => {
                // Either way the session cannot go on: free it (ending its driver) so the
                // client's next request gets a clean 404.
                if self.remove(id) {
                    self.stats.closed += 1;
                }
                info!(session = %id, reason = %e, "RTMPT session dropped");
                return Err(e.into());
            }
        };
        let had_data = pulled.reply.data_len() > 0;
        let reply = pulled.reply.finish(slot.poller.next_byte(had_data));
        slot.seq.done(ticket.seq, reply.clone());
        slot.last_cmd = Some(ticket.cmd);
        slot.pipe = Some(ticket.pipe);
        slot.last_seen = now_ms;
        slot.ended |= pulled.ended;
        if slot.ended && !had_data {
            // Everything the session wrote has been delivered; later requests get 404.
            if self.remove(id) {
                self.stats.closed += 1;
                debug!(session = %id, "RTMPT session ended by the server side");
            }
        }
        Ok(reply)
    }

    /// The request holding `ticket` went away unanswered: the session takes its pipe back and
    /// the same sequence number may be processed again.
    ///
    /// An idle poll that goes away while still held is what a forward proxy with a read
    /// timeout shorter than the hold does (it answers the client 504 and drops the upstream
    /// connection); holding the repeat just as long would time out again, forever. So the
    /// session's later polls are held at most half as long as this one lasted (at least
    /// [`MIN_HOLD`]): they are answered, empty if need be, before the proxy gives up.
    pub fn abandon(&mut self, ticket: Ticket<P>, now_ms: u64) {
        if let Some(slot) = self.sessions.get_mut(&ticket.id) {
            slot.seq.abandon();
            slot.pipe = Some(ticket.pipe);
            let held = Duration::from_millis(now_ms.saturating_sub(ticket.started_ms));
            if ticket.cmd == Cmd::Idle && held < ticket.hold {
                let cap = (held / 2).max(MIN_HOLD);
                if slot.hold_cap.is_none_or(|c| cap < c) {
                    info!(session = %ticket.id, held_ms = held.as_millis() as u64, cap_ms = cap.as_millis() as u64,
                        "RTMPT poll given up while held (a proxy timeout?); holding shorter");
                    slot.hold_cap = Some(cap);
                }
            }
        }
    }

    /// Counts one answered request: `body_len` bytes in, and its outcome.
    pub fn record(&mut self, body_len: usize, outcome: &Result<Bytes, ReqError>) {
        self.stats.requests += 1;
        self.stats.bytes_in += body_len as u64;
        match outcome {
            Ok(body) => self.stats.bytes_out += body.len() as u64,
            Err(e) => self.stats.refused[e.reason() as usize] += 1,
        }
    }

    /// Frees sessions that have seen no request for `session_idle_timeout_secs`; dropping a
    /// session's pipe ends its connection driver. Returns how many went.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let limit = self.cfg.session_idle_timeout_secs.saturating_mul(1000);
        let stale: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| now_ms.saturating_sub(s.last_seen) > limit)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &stale {
            self.remove(id);
            self.stats.expired += 1;
            info!(session = %id, "RTMPT session expired after {}s without a request", self.cfg.session_idle_timeout_secs);
        }
        stale.len()
    }

    /// `/open`: a new session with an unguessable id, its RTMP side started by `env`.
    fn open<E: Env<Pipe = P>>(
        &mut self,
        ip: IpAddr,
        now_ms: u64,
        env: &mut E,
    ) -> Result<String, ReqError> {
        if self.sessions.len() >= self.cfg.max_sessions {
            return Err(ReqError::Full("http.max_sessions"));
        }
        if self.sessions_from(ip) >= self.cfg.max_sessions_per_ip {
            return Err(ReqError::Full("http.max_sessions_per_ip"));
        }
        let id = env.session_id().ok_or(ReqError::NoRandom)?;
        if self.sessions.contains_key(&id) {
            // Only a broken random source repeats 128 bits; refuse rather than share a session.
            return Err(ReqError::NoRandom);
        }
        let pipe = env.open_pipe();
        *self.per_ip.entry(ip).or_insert(0) += 1;
        self.sessions.insert(
            id.clone(),
            Slot {
                ip,
                last_seen: now_ms,
                seq: Sequencer::default(),
                last_cmd: None,
                poller: Poller::default(),
                hold_cap: None,
                ended: false,
                pipe: Some(pipe),
            },
        );
        self.stats.opened += 1;
        info!(session = %id, "RTMPT session opened");
        Ok(id)
    }

    fn remove(&mut self, id: &str) -> bool {
        let Some(s) = self.sessions.remove(id) else {
            return false;
        };
        if let Some(n) = self.per_ip.get_mut(&s.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&s.ip);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Latency;

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
    fn statuses_and_reasons() {
        assert_eq!(ReqError::UnknownSession.status(), 404);
        assert_eq!(ReqError::Method("GET".into()).status(), 405);
        assert_eq!(ReqError::TooLarge(1).status(), 413);
        assert_eq!(ReqError::OutOfOrder { seq: 1 }.status(), 409);
        assert_eq!(ReqError::Full("x").reason().label(), "session_limit");
        let labels: std::collections::HashSet<_> = Refusal::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), Refusal::ALL.len());
        for (i, r) in Refusal::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "ALL is in declaration order");
        }
    }

    /// A pipe that records what it was given and has `pending` bytes for the client.
    #[derive(Debug, Default)]
    struct Mem {
        got: Vec<u8>,
        pending: Vec<u8>,
    }

    struct TestEnv(u32);

    impl Env for TestEnv {
        type Pipe = Mem;
        fn session_id(&mut self) -> Option<String> {
            self.0 += 1;
            Some(format!("{:032x}", self.0))
        }
        fn open_pipe(&mut self) -> Mem {
            Mem::default()
        }
    }

    fn cfg() -> HttpSection {
        HttpSection {
            max_sessions: 3,
            max_sessions_per_ip: 2,
            max_body_bytes: 100,
            max_reply_bytes: 4,
            session_idle_timeout_secs: 1,
            latency: Latency::Medium,
            ..HttpSection::default()
        }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

    fn open(t: &mut TunnelState<Mem>, env: &mut TestEnv, ip: IpAddr) -> Result<String, ReqError> {
        match t.begin(Route::Open, 1, ip, 0, env) {
            Step::Reply(r) => r.map(|b| String::from_utf8(b.to_vec()).unwrap().trim().into()),
            other => panic!("{other:?}"),
        }
    }

    /// A tunnel with one session opened from `A`: the state, its environment, the session id.
    fn opened() -> (TunnelState<Mem>, TestEnv, String) {
        let mut t = TunnelState::<Mem>::new(cfg());
        let mut env = TestEnv(0);
        let a = open(&mut t, &mut env, A).unwrap();
        (t, env, a)
    }

    fn idle(id: &str, seq: u64) -> Route<'_> {
        Route::Session {
            cmd: Cmd::Idle,
            id,
            seq,
        }
    }

    /// One request carried synchronously through a `Mem` pipe.
    fn exchange(t: &mut TunnelState<Mem>, cmd: Cmd, id: &str, seq: u64, body: &[u8]) -> Step<Mem> {
        let route = Route::Session { cmd, id, seq };
        match t.begin(route, body.len(), A, 0, &mut TestEnv(0)) {
            Step::Exchange(mut tk) => {
                if cmd == Cmd::Send {
                    tk.pipe.got.extend_from_slice(body);
                }
                let mut reply = tk.reply_buf();
                let n = reply.extend(&tk.pipe.pending);
                tk.pipe.pending.drain(..n);
                Step::Reply(t.finish(
                    tk,
                    Ok(Pulled {
                        reply,
                        ended: false,
                    }),
                    0,
                ))
            }
            other => other,
        }
    }

    #[test]
    fn heads_are_checked_before_the_body() {
        let t = TunnelState::<Mem>::new(cfg());
        assert_eq!(
            t.route("GET", "/open/1", None),
            Err(ReqError::Method("GET".into()))
        );
        assert_eq!(t.route("POST", "/x", None), Err(ReqError::NotFound));
        assert_eq!(
            t.route("POST", "/open/1", Some(b"101")),
            Err(ReqError::TooLarge(100))
        );
        assert!(matches!(
            t.route("POST", "/open/1", Some(b"-1")),
            Err(ReqError::Body(_))
        ));
        assert_eq!(t.route("POST", "/open/1", Some(b" 100 ")), Ok(Route::Open));
    }

    #[test]
    fn limits_exchanges_replies_and_close() {
        let (mut t, mut env, a) = opened();
        assert_eq!(a.len(), 32);
        open(&mut t, &mut env, A).unwrap();
        assert_eq!(
            open(&mut t, &mut env, A),
            Err(ReqError::Full("http.max_sessions_per_ip"))
        );
        open(&mut t, &mut env, B).unwrap();
        assert_eq!(
            open(&mut t, &mut env, B),
            Err(ReqError::Full("http.max_sessions"))
        );
        assert_eq!(t.sessions_from(A), 2);

        // The body reaches the pipe; the reply is the polling byte and at most 4 pending bytes.
        t.sessions
            .get_mut(&a)
            .unwrap()
            .pipe
            .as_mut()
            .unwrap()
            .pending = b"abcdef".to_vec();
        let Step::Reply(Ok(r)) = exchange(&mut t, Cmd::Send, &a, 0, b"C0C1") else {
            panic!()
        };
        assert_eq!(&r[..], b"\x01abcd");
        assert_eq!(t.sessions[&a].pipe.as_ref().unwrap().got, b"C0C1");
        // A retry replays; the gap waits; far ahead is refused.
        assert!(matches!(exchange(&mut t, Cmd::Send, &a, 0, b"C0C1"), Step::Replay(x) if x == r));
        assert_eq!(t.sessions[&a].pipe.as_ref().unwrap().got, b"C0C1");
        assert!(matches!(
            exchange(&mut t, Cmd::Idle, &a, 2, b"\0"),
            Step::Wait
        ));
        assert!(matches!(
            exchange(&mut t, Cmd::Idle, &a, 99, b"\0"),
            Step::Reply(Err(ReqError::OutOfOrder { seq: 99 }))
        ));
        let Step::Reply(Ok(r)) = exchange(&mut t, Cmd::Idle, &a, 1, b"\0") else {
            panic!()
        };
        assert_eq!(&r[..], b"\x01ef");
        assert!(matches!(
            exchange(&mut t, Cmd::Idle, &a, 2, &[0; 101]),
            Step::Reply(Err(ReqError::TooLarge(100)))
        ));
        assert!(
            matches!(exchange(&mut t, Cmd::Close, &a, 2, b"\0"), Step::Reply(Ok(b)) if b[..] == [0])
        );
        assert!(matches!(
            exchange(&mut t, Cmd::Idle, &a, 3, b"\0"),
            Step::Reply(Err(ReqError::UnknownSession))
        ));
        let s = t.stats();
        assert_eq!((s.sessions, s.opened, s.closed), (2, 3, 1));
        assert_eq!(t.sessions_from(A), 1);
    }

    #[test]
    fn a_retry_repeats_its_command() {
        // Regression (fuzz/regressions/rtmpt/close-reusing-a-send-seq): `/close/<id>/0` after
        // `/send/<id>/0` was answered with the send's reply instead of being refused.
        let (mut t, _, a) = opened();
        t.sessions
            .get_mut(&a)
            .unwrap()
            .pipe
            .as_mut()
            .unwrap()
            .pending = b"S0".to_vec();
        let Step::Reply(Ok(r)) = exchange(&mut t, Cmd::Send, &a, 0, b"C0") else {
            panic!()
        };
        assert!(matches!(
            exchange(&mut t, Cmd::Close, &a, 0, b"\0"),
            Step::Reply(Err(ReqError::OutOfOrder { seq: 0 }))
        ));
        assert!(matches!(
            exchange(&mut t, Cmd::Idle, &a, 0, b"\0"),
            Step::Reply(Err(ReqError::OutOfOrder { seq: 0 }))
        ));
        assert!(matches!(exchange(&mut t, Cmd::Send, &a, 0, b"C0"), Step::Replay(x) if x == r));
        assert_eq!(t.session_count(), 1);
        assert!(
            matches!(exchange(&mut t, Cmd::Close, &a, 1, b"\0"), Step::Reply(Ok(b)) if b[..] == [0])
        );
    }

    #[test]
    fn in_flight_requests_hold_the_pipe_and_can_be_abandoned() {
        let (mut t, mut env, a) = opened();
        let route = idle(&a, 0);
        let Step::Exchange(tk) = t.begin(route, 1, A, 0, &mut env) else {
            panic!()
        };
        assert_eq!(tk.hold, Duration::from_millis(512));
        // A retry of it waits; the pipe is out.
        assert!(matches!(t.begin(route, 1, A, 0, &mut env), Step::Wait));
        t.abandon(tk, 0);
        let Step::Exchange(tk) = t.begin(route, 1, A, 0, &mut env) else {
            panic!("an abandoned request can be processed again")
        };
        // The pipe failed: the session is gone.
        assert_eq!(
            t.finish(tk, Err(PipeError::Stalled(Duration::from_secs(1))), 0),
            Err(ReqError::Pipe(PipeError::Stalled(Duration::from_secs(1))))
        );
        assert_eq!(t.session_count(), 0);
        assert_eq!(t.sessions_from(A), 0);
    }

    #[test]
    fn a_poll_given_up_while_held_shortens_later_holds() {
        // A proxy with a 300 ms read timeout in front of 512 ms holds: its upstream connection
        // goes away at 300 ms, and the repeat must be answered before 300 ms.
        let (mut t, mut env, a) = opened();
        let Step::Exchange(tk) = t.begin(idle(&a, 0), 1, A, 1000, &mut env) else {
            panic!()
        };
        assert_eq!(tk.hold, Duration::from_millis(512));
        t.abandon(tk, 1300);
        let Step::Exchange(tk) = t.begin(idle(&a, 0), 1, A, 1320, &mut env) else {
            panic!()
        };
        assert_eq!(tk.hold, Duration::from_millis(150));
        // Answered in time: the cap stays; a later, longer-lived abandonment does not raise it.
        let reply = tk.reply_buf();
        t.finish(
            tk,
            Ok(Pulled {
                reply,
                ended: false,
            }),
            1470,
        )
        .unwrap();
        let Step::Exchange(tk) = t.begin(idle(&a, 1), 1, A, 1500, &mut env) else {
            panic!()
        };
        assert_eq!(tk.hold, Duration::from_millis(150));
        t.abandon(tk, 1520);
        let Step::Exchange(tk) = t.begin(idle(&a, 1), 1, A, 1530, &mut env) else {
            panic!()
        };
        assert_eq!(tk.hold, MIN_HOLD, "never below MIN_HOLD");
        // A /send lingers as before, and a poll answered after its full hold changes nothing.
        let reply = tk.reply_buf();
        t.finish(
            tk,
            Ok(Pulled {
                reply,
                ended: false,
            }),
            1550,
        )
        .unwrap();
        let route = Route::Session {
            cmd: Cmd::Send,
            id: &a,
            seq: 2,
        };
        let Step::Exchange(tk) = t.begin(route, 1, A, 1600, &mut env) else {
            panic!()
        };
        assert_eq!(tk.hold, SEND_LINGER);
        t.abandon(tk, 1700);
        // Other sessions keep the configured hold.
        let b = open(&mut t, &mut env, B).unwrap();
        let Step::Exchange(tk) = t.begin(idle(&b, 0), 1, B, 1800, &mut env) else {
            panic!()
        };
        assert_eq!(tk.hold, Duration::from_millis(512));
    }

    #[test]
    fn the_rtmp_side_ending_closes_the_session_after_its_last_bytes() {
        let (mut t, mut env, a) = opened();
        let route = idle(&a, 0);
        let Step::Exchange(tk) = t.begin(route, 1, A, 0, &mut env) else {
            panic!()
        };
        let mut reply = tk.reply_buf();
        reply.extend(b"bye");
        let r = t.finish(tk, Ok(Pulled { reply, ended: true }), 0);
        assert_eq!(&r.unwrap()[..], b"\x01bye");
        assert_eq!(t.session_count(), 1, "kept until an empty reply");
        let route = idle(&a, 1);
        assert!(matches!(t.begin(route, 1, A, 0, &mut env), Step::Reply(Ok(b)) if b.len() == 1));
        assert_eq!(t.session_count(), 0);
    }

    #[test]
    fn idle_sessions_expire_and_stats_count_outcomes() {
        let (mut t, _, _) = opened();
        assert_eq!(t.expire(1000), 0);
        assert_eq!(t.expire(1001), 1);
        assert_eq!(t.sessions_from(A), 0);
        t.record(5, &Ok(Bytes::from_static(b"abc")));
        t.record(7, &Err(ReqError::UnknownSession));
        let s = t.stats();
        assert_eq!(
            (s.expired, s.requests, s.bytes_in, s.bytes_out),
            (1, 2, 12, 3)
        );
        assert_eq!(s.refused(Refusal::UnknownSession), 1);
        assert_eq!(s.refused_total(), 1);
    }
}
