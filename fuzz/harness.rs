//! Fuzz harness bodies shared by the cargo-fuzz targets in `fuzz_targets/` and the regression
//! test `tests/fuzz_regressions.rs`, so a crash file replays through exactly the fuzzed code.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use wasmgate::config::{Config, HttpSection, Latency};
use wasmgate::media::vod::{ReadError, Reader, VodFile};
use wasmgate::rtmp::amf::{
    AmfLimits, decode_amf0, decode_amf0_all, decode_amf3, decode_amf3_message, encode_amf0,
    encode_amf3,
};
use wasmgate::rtmp::chunk::{ChunkDecoder, ChunkLimits, MAX_CHUNK_HEADER_LEN};
use wasmgate::rtmp::handshake::{HANDSHAKE_SIZE, ServerHandshake};
use wasmgate::rtmp::message::{ControlMessage, msg_type};
use wasmgate::rtmp::shared_object::{SoDecodeLimits, SoEncoding, decode_so, encode_so};
use wasmgate::rtmp::{Event, Session, SessionConfig};
use wasmgate::state::Scope;
use wasmgate::state::shared_objects::{SharedObjects, SoLimits};
use wasmgate::tunnel::request::{
    Cmd, Env, Pulled, ReqError, Route, Step, Ticket, TunnelState, parse_route,
};
use wasmgate::tunnel::session::{POLL_STEPS, PipeError};

/// Splits `data` into pieces whose lengths come from its first four bytes (cycled; 0 means
/// "all the rest"), so the fuzzer explores every read boundary, not only one big read.
fn pieces(data: &[u8]) -> Vec<&[u8]> {
    if data.len() < 4 {
        return vec![data];
    }
    let (sizes, mut rest) = data.split_at(4);
    let mut out = Vec::new();
    let mut i = 0usize;
    while !rest.is_empty() {
        let n = match sizes[i % 4] {
            0 => rest.len(),
            s @ 1..=127 => usize::from(s),
            s => usize::from(s - 127) * 64,
        };
        let (piece, tail) = rest.split_at(n.min(rest.len()));
        out.push(piece);
        rest = tail;
        i += 1;
    }
    out
}

/// Server handshake fed arbitrary bytes in arbitrary pieces: never panics, answers at most
/// S0+S1+S2 once, and leaves every byte after C2 in the input buffer.
pub fn handshake(data: &[u8]) {
    let mut hs = ServerHandshake::new(0);
    let mut input = BytesMut::new();
    let mut out = BytesMut::new();
    let mut fed = 0usize;
    for piece in pieces(data) {
        input.extend_from_slice(piece);
        fed += piece.len();
        match hs.feed(&mut input, &mut out) {
            Ok(true) => {
                assert!(hs.is_done());
                assert_eq!(out.len(), 1 + 2 * HANDSHAKE_SIZE);
                assert_eq!(input.len(), fed - (1 + 2 * HANDSHAKE_SIZE));
            }
            Ok(false) => assert!(out.is_empty() || out.len() == 1 + 2 * HANDSHAKE_SIZE),
            Err(first) => {
                // A failed handshake stays failed with the same error.
                assert_eq!(hs.feed(&mut input, &mut out).unwrap_err(), first);
                return;
            }
        }
    }
}

/// Limits small enough that the fuzzer reaches every limit path.
fn small_chunk_limits() -> ChunkLimits {
    ChunkLimits {
        max_message_size: 64 * 1024,
        max_chunk_size: 1 << 20,
        max_chunk_streams: 8,
    }
}

/// The chunk decoder with Set Chunk Size and Abort applied between messages, as the session
/// applies them: never panics, never holds more than its limits allow, and never keeps more
/// than one chunk of unconsumed input around.
pub fn chunk(data: &[u8]) {
    let limits = small_chunk_limits();
    let mut dec = ChunkDecoder::new(limits);
    let mut buf = BytesMut::new();
    for piece in pieces(data) {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(msg)) => {
                    assert!(msg.payload.len() <= limits.max_message_size as usize);
                    match ControlMessage::parse(msg.header.type_id, &msg.payload) {
                        Ok(Some(ControlMessage::SetChunkSize(size))) => {
                            if dec.set_chunk_size(size).is_err() {
                                return;
                            }
                        }
                        Ok(Some(ControlMessage::Abort(csid))) => dec.abort(csid),
                        Ok(_) => {}
                        Err(_) if msg.header.type_id <= msg_type::SET_PEER_BANDWIDTH => return,
                        Err(_) => {}
                    }
                }
                Ok(None) => {
                    // "Need more" means less than one chunk is buffered.
                    assert!(buf.len() < dec.chunk_size() as usize + MAX_CHUNK_HEADER_LEN);
                    break;
                }
                Err(_) => return,
            }
            assert!(dec.chunk_streams() <= limits.max_chunk_streams);
            assert!(
                dec.pending_bytes() <= limits.max_message_size as usize * limits.max_chunk_streams
            );
        }
    }
}

fn small_amf_limits() -> AmfLimits {
    AmfLimits {
        max_depth: 16,
        max_collection_len: 1024,
        max_nodes: 20_000,
        max_string_len: 64 * 1024,
    }
}

/// AMF0: decoding never panics; what decodes re-encodes to bytes that decode to a value that
/// encodes to the same bytes (byte comparison, so NaN payloads compare fine).
pub fn amf0(data: &[u8]) {
    let limits = small_amf_limits();
    if let Ok((value, used)) = decode_amf0(data, &limits) {
        assert!(used <= data.len());
        let mut once = Vec::new();
        encode_amf0(&value, &mut once);
        let (again, used2) =
            decode_amf0(&once, &AmfLimits::default()).expect("re-encoded AMF0 value decodes");
        assert_eq!(used2, once.len());
        let mut twice = Vec::new();
        encode_amf0(&again, &mut twice);
        assert_eq!(once, twice);
    }
    // The message-level entry points the session uses.
    let _ = decode_amf0_all(data, &limits);
    let _ = decode_amf3_message(data, &limits);
}

/// AMF3: as AMF0 (references, traits, externalizables and all).
pub fn amf3(data: &[u8]) {
    let limits = small_amf_limits();
    if let Ok((value, used)) = decode_amf3(data, &limits) {
        assert!(used <= data.len());
        let mut once = Vec::new();
        encode_amf3(&value, &mut once);
        let (again, used2) =
            decode_amf3(&once, &AmfLimits::default()).expect("re-encoded AMF3 value decodes");
        assert_eq!(used2, once.len());
        let mut twice = Vec::new();
        encode_amf3(&again, &mut twice);
        assert_eq!(once, twice);
    }
}

/// A plain C0+C1 and C2: what every fuzzed session starts with, so the fuzzer spends its time
/// on chunks and commands rather than on the 3073 handshake bytes.
pub fn handshake_prefix() -> Vec<u8> {
    let mut v = vec![3u8];
    v.extend_from_slice(&[0u8; HANDSHAKE_SIZE]);
    v.extend_from_slice(&[0u8; HANDSHAKE_SIZE]);
    v
}

/// The whole server session after a valid handshake, fed arbitrary chunk bytes in arbitrary
/// pieces. The harness plays a permissive app (accepts every connect, publish and play) so the
/// fuzzer reaches the connected states; time advances a little per piece to exercise pings.
pub fn session(data: &[u8]) {
    let cfg = SessionConfig {
        chunk_limits: small_chunk_limits(),
        amf_limits: small_amf_limits(),
        max_partial_bytes: 256 * 1024,
        ..SessionConfig::default()
    };
    let mut now = Instant::now();
    let mut s = Session::new(cfg, now);
    let mut out = Vec::new();
    s.handle_input(&handshake_prefix(), now)
        .expect("valid handshake");
    for piece in pieces(data) {
        now += Duration::from_millis(700);
        if s.handle_input(piece, now).is_err() {
            s.drain_transmit(&mut out);
            return;
        }
        permissive_app(&mut s);
        if s.handle_timeout(now).is_err() {
            return;
        }
        s.drain_transmit(&mut out);
        out.clear();
    }
}

/// Answers every pending event as an app that allows everything would.
fn permissive_app(s: &mut Session) {
    while let Some(ev) = s.poll_event() {
        match ev {
            Event::Connect(_) => s.accept_connect(),
            Event::Publish { stream_id, .. } => s.publish_started(stream_id),
            Event::Play {
                stream_id,
                name,
                reset,
                ..
            } => {
                s.play_started(stream_id, &name.name, reset);
            }
            Event::Call(cmd) => s.send_result(cmd.transaction_id, &[]),
            _ => {}
        }
    }
}

/// Config parsing: never panics; a config that parses and validates serializes back to TOML
/// that parses to the same config.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = Config::from_toml(text) {
        let back = toml::to_string(&cfg).expect("a valid config serializes");
        let again = Config::from_toml(&back).expect("a serialized config parses");
        assert_eq!(cfg, again);
    }
}

/// The RTMP side of one fuzzed tunnel session: the server `Session` that the connection driver
/// would run, fed what `/send` carries; its output waits in `pending` for the next reply.
struct RtmpPipe {
    session: Session,
    now: Instant,
    pending: Vec<u8>,
    /// Every byte pushed, in order: checked against the `/send` bodies the harness processed.
    received: Vec<u8>,
    /// The RTMP session failed; the driver would have closed its end.
    closed: bool,
    /// The next push finds the driver not reading.
    stall: bool,
}

/// Output the driver would hold before it stops reading (then pushes stall).
const PIPE_CAP: usize = 64 * 1024;

impl RtmpPipe {
    fn new(now: Instant) -> RtmpPipe {
        let cfg = SessionConfig {
            chunk_limits: small_chunk_limits(),
            amf_limits: small_amf_limits(),
            max_partial_bytes: 256 * 1024,
            ..SessionConfig::default()
        };
        RtmpPipe {
            session: Session::new(cfg, now),
            now,
            pending: Vec::new(),
            received: Vec::new(),
            closed: false,
            stall: false,
        }
    }

    fn push(&mut self, body: &[u8]) -> Result<(), PipeError> {
        if self.closed {
            return Err(PipeError::Ended);
        }
        if std::mem::take(&mut self.stall) || self.pending.len() > PIPE_CAP {
            return Err(PipeError::Stalled(Duration::from_secs(1)));
        }
        if body.is_empty() {
            return Ok(());
        }
        self.received.extend_from_slice(body);
        self.now += Duration::from_millis(50);
        let ok = self.session.handle_input(body, self.now).is_ok() && {
            permissive_app(&mut self.session);
            self.session.handle_timeout(self.now).is_ok()
        };
        let mut out = Vec::new();
        self.session.drain_transmit(&mut out);
        for b in out {
            self.pending.extend_from_slice(&b);
        }
        // The driver writes what the session said last, then closes.
        self.closed = !ok;
        Ok(())
    }

    /// What `session::pull` does on a real pipe: take what is pending, report a closed end.
    fn pull(&mut self, reply: &mut wasmgate::tunnel::session::ReplyBuf) -> bool {
        let n = reply.extend(&self.pending);
        self.pending.drain(..n);
        self.closed && self.pending.is_empty()
    }
}

/// Deterministic session ids (`000…01`, `000…02`, …) so seeds can address the sessions they
/// open; the fuzzer reaches a real id only by mutating one it was given.
struct FuzzEnv {
    opened: u64,
    now: Instant,
}

impl Env for FuzzEnv {
    type Pipe = RtmpPipe;

    fn session_id(&mut self) -> Option<String> {
        self.opened += 1;
        Some(format!("{:032x}", self.opened))
    }

    fn open_pipe(&mut self) -> RtmpPipe {
        RtmpPipe::new(self.now)
    }
}

/// One parsed request of an `rtmpt` input.
#[derive(Clone, Debug)]
struct HttpReq {
    method: String,
    path: String,
    content_length: Option<Vec<u8>>,
    body: Bytes,
    ip: IpAddr,
}

/// `http.max_body_bytes` of the fuzzed tunnel.
const RTMPT_MAX_BODY: usize = 8192;

/// Control bits in front of every request of an `rtmpt` input.
const ADVANCE_MASK: u8 = 0x07; // × 400 ms of clock before the request; idle sessions expire
const FROM_B: u8 = 0x08; // sent from a second client address
const DEFER: u8 = 0x10; // its exchange stays in flight until the next request is done
const ABANDON: u8 = 0x20; // ... and is then abandoned (the HTTP connection closed) instead
const STALL: u8 = 0x40; // the RTMP side does not take its body
const DEADLINE: u8 = 0x80; // waiting requests time out (409) before it is handled

/// `[control byte][HTTP/1.1 request head][Content-Length body]`, or `None` at the end or when
/// the head is not something hyper would hand to the service.
fn next_request(data: &[u8]) -> Option<(u8, HttpReq, &[u8])> {
    let (&ctrl, rest) = data.split_first()?;
    let end = rest.windows(4).take(4096).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&rest[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let mut line = lines.next()?.splitn(3, ' ');
    let (method, target, _version) = (line.next()?, line.next()?, line.next()?);
    if method.is_empty() || !target.starts_with('/') {
        return None;
    }
    let path = target.split('?').next().unwrap_or("/");
    let mut content_length = None;
    for l in lines {
        let (name, value) = l.split_once(':')?;
        if name.trim().eq_ignore_ascii_case("content-length") {
            content_length = Some(value.trim().as_bytes().to_vec());
        }
    }
    let rest = &rest[end + 4..];
    // A declared length above the limit is refused before the body is read (and the
    // connection closed): the next record follows the head directly.
    let len = content_length
        .as_deref()
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n <= RTMPT_MAX_BODY)
        .unwrap_or(0)
        .min(rest.len());
    let (body, rest) = rest.split_at(len);
    let ip = if ctrl & FROM_B != 0 {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))
    };
    let req = HttpReq {
        method: method.to_owned(),
        path: path.to_owned(),
        content_length,
        body: Bytes::copy_from_slice(body),
        ip,
    };
    Some((ctrl, req, rest))
}

/// The RTMPT tunnel core driven the way the hyper service drives it, with the I/O replaced by
/// an in-memory RTMP session per tunnel session, and with the concurrency the fuzzer chooses
/// (requests held in flight, abandoned, waiting for a gap, timing out). Checks besides "no
/// panic": replies are well formed (polling byte from the ladder, bounded size), a retry gets
/// the reply it got the first time, each session's `/send` bodies reach its RTMP side exactly
/// once and in sequence order, limits hold, and the stats count every request and session.
pub fn rtmpt(data: &[u8]) {
    let cfg = HttpSection {
        ident: Some("wasmgate-fuzz".into()),
        latency: Latency::Low,
        max_sessions: 4,
        max_sessions_per_ip: 3,
        max_body_bytes: RTMPT_MAX_BODY,
        max_reply_bytes: 2048,
        session_idle_timeout_secs: 2,
        ..HttpSection::default()
    };
    let mut h = Rtmpt {
        t: TunnelState::new(cfg.clone()),
        cfg,
        env: FuzzEnv {
            opened: 0,
            now: Instant::now(),
        },
        now_ms: 0,
        answered: 0,
        refused: 0,
        last_seq: HashMap::new(),
        replies: HashMap::new(),
        sent: HashMap::new(),
        waiting: Vec::new(),
    };
    let mut held: Option<(Ticket<RtmpPipe>, HttpReq, bool)> = None;
    let mut rest = data;
    while let Some((ctrl, req, tail)) = next_request(rest) {
        rest = tail;
        h.now_ms += u64::from(ctrl & ADVANCE_MASK) * 400;
        h.env.now += Duration::from_millis(u64::from(ctrl & ADVANCE_MASK) * 400);
        h.t.expire(h.now_ms);
        if ctrl & DEADLINE != 0 {
            for w in std::mem::take(&mut h.waiting) {
                h.answer(&w, Err(seq_refusal(&w)));
            }
        }
        let defer = ctrl & DEFER != 0 && held.is_none();
        if let Some((ticket, req)) = h.submit(req, ctrl & STALL != 0) {
            if defer {
                held = Some((ticket, req, ctrl & ABANDON != 0));
            } else {
                h.carry(ticket, &req);
            }
        }
        h.retry_waiting();
        if !defer && let Some((ticket, req, abandon)) = held.take() {
            h.release(ticket, &req, abandon);
        }
        h.check_invariants();
    }
    if let Some((ticket, req, abandon)) = held.take() {
        h.release(ticket, &req, abandon);
    }
    for w in std::mem::take(&mut h.waiting) {
        h.answer(&w, Err(seq_refusal(&w)));
    }
    h.check_invariants();
}

/// What the server answers a request that waited past `http.reorder_wait_ms`.
fn seq_refusal(req: &HttpReq) -> ReqError {
    let seq = match parse_route(&req.path) {
        Ok(Route::Session { seq, .. }) => seq,
        _ => 0,
    };
    ReqError::OutOfOrder { seq }
}

struct Rtmpt {
    t: TunnelState<RtmpPipe>,
    cfg: HttpSection,
    env: FuzzEnv,
    now_ms: u64,
    answered: u64,
    refused: u64,
    /// Per session: the last sequence number processed.
    last_seq: HashMap<String, u64>,
    /// Per session: the reply to the last processed request, by sequence number.
    replies: HashMap<String, (u64, Bytes)>,
    /// Per session: every `/send` body processed, in order.
    sent: HashMap<String, Vec<u8>>,
    waiting: Vec<HttpReq>,
}

impl Rtmpt {
    /// Routes and begins a request; an exchange comes back for the caller to carry.
    fn submit(&mut self, req: HttpReq, stall: bool) -> Option<(Ticket<RtmpPipe>, HttpReq)> {
        let route = match self
            .t
            .route(&req.method, &req.path, req.content_length.as_deref())
        {
            Ok(r) => r,
            Err(e) => {
                // Refused on the head: the service records it with no body read.
                self.record(0, &Err(e));
                return None;
            }
        };
        let step = self
            .t
            .begin(route, req.body.len(), req.ip, self.now_ms, &mut self.env);
        match step {
            Step::Reply(r) => {
                if let (Ok(body), Route::Session { id, seq, .. }) = (&r, route) {
                    self.processed(id, seq, body);
                }
                self.answer(&req, r);
                None
            }
            Step::Replay(body) => {
                let Route::Session { id, seq, .. } = route else {
                    panic!("a replay for {route:?}");
                };
                let (last, first) = self
                    .replies
                    .get(id)
                    .expect("a replay of an answered request");
                assert_eq!(
                    (*last, first),
                    (seq, &body),
                    "a retry got a different reply"
                );
                self.answer(&req, Ok(body));
                None
            }
            Step::Wait => {
                if self.waiting.len() >= 32 {
                    self.answer(&req, Err(seq_refusal(&req)));
                } else {
                    self.waiting.push(req);
                }
                None
            }
            Step::Exchange(mut ticket) => {
                if let Some(&last) = self.last_seq.get(&ticket.id) {
                    assert_eq!(ticket.seq, last.wrapping_add(1), "processed out of order");
                }
                ticket.pipe.stall = stall;
                Some((ticket, req))
            }
        }
    }

    /// What the service does with a ticket: push a `/send` body, pull the reply, finish.
    fn carry(&mut self, mut ticket: Ticket<RtmpPipe>, req: &HttpReq) {
        let outcome = (|| {
            if ticket.cmd == Cmd::Send {
                ticket.pipe.push(&req.body)?;
                let sent = self.sent.entry(ticket.id.clone()).or_default();
                sent.extend_from_slice(&req.body);
                assert_eq!(&ticket.pipe.received, sent, "bodies delivered out of order");
            }
            let mut reply = ticket.reply_buf();
            let ended = ticket.pipe.pull(&mut reply);
            Ok(Pulled { reply, ended })
        })();
        let (id, seq) = (ticket.id.clone(), ticket.seq);
        let r = self.t.finish(ticket, outcome, self.now_ms);
        if let Ok(body) = &r {
            self.processed(&id, seq, body);
        }
        self.answer(req, r);
    }

    /// A held exchange completes (or its request goes away), then waiters re-check.
    fn release(&mut self, ticket: Ticket<RtmpPipe>, req: &HttpReq, abandon: bool) {
        if abandon {
            // hyper dropped the request future: nothing is answered or counted.
            self.t.abandon(ticket, self.now_ms);
        } else {
            self.carry(ticket, req);
        }
        self.retry_waiting();
    }

    /// Every waiting request re-checks its turn until none makes progress, as the service's
    /// waiters do on each finished request.
    fn retry_waiting(&mut self) {
        loop {
            let before = self.waiting.len();
            for req in std::mem::take(&mut self.waiting) {
                if let Some((ticket, req)) = self.submit(req, false) {
                    self.carry(ticket, &req);
                }
            }
            if self.waiting.len() >= before {
                return;
            }
        }
    }

    fn processed(&mut self, id: &str, seq: u64, body: &Bytes) {
        self.last_seq.insert(id.to_owned(), seq);
        self.replies.insert(id.to_owned(), (seq, body.clone()));
    }

    /// Checks the reply against the route it answers and counts it.
    fn answer(&mut self, req: &HttpReq, r: Result<Bytes, ReqError>) {
        match (&r, parse_route(&req.path)) {
            (Ok(b), Ok(Route::Ident)) => assert_eq!(&b[..], b"wasmgate-fuzz"),
            (Ok(b), Ok(Route::Open)) => {
                assert_eq!(b.len(), 33, "{b:?}");
                assert!(b[..32].iter().all(u8::is_ascii_hexdigit) && b[32] == b'\n');
            }
            (
                Ok(b),
                Ok(Route::Session {
                    cmd: Cmd::Close, ..
                }),
            ) => assert_eq!(&b[..], [0]),
            (Ok(b), Ok(Route::Session { .. })) => {
                assert!(!b.is_empty() && b.len() <= 1 + self.cfg.max_reply_bytes);
                assert!(POLL_STEPS.contains(&b[0]), "polling byte {:#x}", b[0]);
            }
            (Ok(b), Err(_)) => panic!("200 for an unroutable path: {b:?}"),
            (Err(e), _) => assert!([400, 404, 405, 409, 413, 503].contains(&e.status())),
        }
        // Only routed requests get here: the service has read their body.
        self.record(req.body.len(), &r);
    }

    fn record(&mut self, body_len: usize, r: &Result<Bytes, ReqError>) {
        self.answered += 1;
        if r.is_err() {
            self.refused += 1;
        }
        self.t.record(body_len, r);
    }

    fn check_invariants(&self) {
        let s = self.t.stats();
        assert_eq!(s.requests, self.answered);
        assert_eq!(s.refused_total(), self.refused);
        assert!(s.sessions <= self.cfg.max_sessions);
        assert_eq!(s.sessions as u64, s.opened - s.closed - s.expired);
        for ip in [[10, 0, 0, 1], [10, 0, 0, 2]] {
            assert!(self.t.sessions_from(IpAddr::from(ip)) <= self.cfg.max_sessions_per_ip);
        }
    }
}

/// Shared-object message bodies (`[control byte][body]`; bit 0 of the control byte picks type 16
/// over 19). A decoded body re-encodes byte-stably, and fed into the authority with tight limits
/// (as the client named by bits 1-2, at a time from bits 3-7) it never breaks a bound: slots,
/// bytes, objects and subscribers stay within `SoLimits`, and a tick gives each client at most
/// one message per object.
pub fn shared_object(data: &[u8]) {
    let Some((&control, body)) = data.split_first() else {
        return;
    };
    let encoding = if control & 1 == 1 {
        SoEncoding::Amf3
    } else {
        SoEncoding::Amf0
    };
    let limits = SoDecodeLimits {
        max_events: 64,
        max_name_len: 64,
        amf: small_amf_limits(),
    };
    let Ok(msg) = decode_so(body, encoding, &limits) else {
        return;
    };
    let mut once = Vec::new();
    encode_so(&msg, encoding, &mut once);
    let again = decode_so(&once, encoding, &SoDecodeLimits::default())
        .expect("re-encoded shared-object body decodes");
    let mut twice = Vec::new();
    encode_so(&again, encoding, &mut twice);
    assert_eq!(once, twice);

    let so_limits = SoLimits {
        max_slots: 4,
        max_bytes: 256,
        max_objects: 2,
        max_subscribers: 2,
        max_pending_messages: 3,
        max_name_len: 16,
        requests_per_sec: 10,
        request_burst: 5,
    };
    let mut so = SharedObjects::new(so_limits);
    let scope = Scope::new("app", "inst");
    let client = u64::from((control >> 1) & 3);
    let now = u64::from(control >> 3) * 100;
    // The same message from three clients, and once more after a tick, to reach the
    // subscriber limit, rate limit and batching paths.
    for (round, c) in [client, client + 1, client + 2, client]
        .into_iter()
        .enumerate()
    {
        if so.needs_load(&scope, &msg.name, msg.persistent()) {
            let _ = so.restore(&scope, &msg.name, None);
        }
        let handled = so.handle(&scope, c, &msg, now + round as u64 * 50);
        for reply in &handled.replies {
            assert!(reply.events.len() <= so_limits.max_slots + 2);
        }
        let names = so.names(&scope);
        assert!(names.len() <= so_limits.max_objects);
        for name in &names {
            assert!(
                so.slots(&scope, name)
                    .is_some_and(|s| s.len() <= so_limits.max_slots)
            );
            assert!(
                so.bytes(&scope, name)
                    .is_some_and(|b| b <= so_limits.max_bytes)
            );
            assert!(
                so.subscribers(&scope, name)
                    .is_some_and(|s| s.len() <= so_limits.max_subscribers)
            );
        }
        if round == 2 {
            let drained = so.tick();
            let mut seen = std::collections::BTreeSet::new();
            for out in &drained.messages {
                assert!(seen.insert((out.client, out.message.name.clone())));
                assert!(out.message.events.len() <= 2 * so_limits.max_slots + 3 + 8);
            }
        }
    }
    for c in client..client + 3 {
        so.disconnect(c);
    }
    let _ = so.tick();
}

/// A media file's bytes (FLV when they start with `FLV`, MP4 otherwise) through the VOD
/// indexer, then every sample read through a [`Reader`] as a player reads it (fetching each
/// block it lacks): the index is in send order, its keyframes are keyframes, every sample lies
/// inside the file, a seek lands inside the index, and a body is the sample's bytes.
pub fn vod(data: &[u8]) {
    let mp4 = !data.starts_with(b"FLV");
    let Ok(file) = VodFile::from_bytes("fuzz".into(), data.to_vec(), mp4) else {
        return;
    };
    let file = std::sync::Arc::new(file);
    let ix = &file.index;
    assert!(ix.samples.windows(2).all(|w| w[0].time_ms <= w[1].time_ms));
    assert!(ix.keyframes.windows(2).all(|w| w[0] < w[1]));
    for &k in &ix.keyframes {
        assert!(ix.samples[k].keyframe);
    }
    for s in &ix.samples {
        assert!(s.offset + u64::from(s.len) <= data.len() as u64);
        assert!(s.time_ms <= ix.duration_ms);
    }
    for ms in [0, 1, 1000, ix.duration_ms / 2, ix.duration_ms, u32::MAX] {
        assert!(ix.seek(ms) <= ix.samples.len());
    }
    let mut reader = Reader::new(file.clone());
    let mut body = Vec::new();
    for s in ix.samples.iter().take(4096) {
        body.clear();
        let mut fetched = 0;
        loop {
            match reader.body(s, &mut body) {
                Ok(()) => break,
                Err(ReadError::NeedBlock(no)) => {
                    fetched += 1;
                    assert!(fetched <= 64, "the reader asks for blocks forever");
                    let block = file.read_block(no).expect("a block inside the file reads");
                    reader.give(no, block);
                }
                Err(ReadError::Io(e)) => panic!("a sample inside the file fails: {e}"),
            }
        }
        let mut prefix = Vec::new();
        s.prefix(&mut prefix);
        assert_eq!(body.len(), prefix.len() + s.len as usize);
        let at = s.offset as usize;
        assert_eq!(&body[prefix.len()..], &data[at..at + s.len as usize]);
    }
}
