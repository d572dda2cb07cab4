//! `--so NAME`: the remote shared object load, for `scripts/bench-so.sh`. N subscriber
//! connections Use one shared object, W writer connections (subscribed too, as the server only
//! lets subscribers write) send Request Change events at a fixed total rate over the measured
//! window, and every subscriber checks every Change it receives.
//!
//! Why it is built this way:
//! - **Latency without clock sync.** Writers and subscribers live in this one process, so each
//!   change's value carries its send time in microseconds since one shared `Instant`; a
//!   subscriber subtracts it from its own reading of that `Instant` when the bytes arrive.
//! - **Nothing coalesces on purpose.** The server sends a key changed twice within one tick once,
//!   with its last value (FMS semantics). The writers rotate over `--so-keys` keys (64 by default:
//!   at 50 changes/s a key is reused every 1.28 s, far more than a tick), so every change is
//!   expected at every subscriber and anything short of that is counted as missing, not
//!   silently explained away. `--so-keys 1` shows coalescing.
//! - **Exact accounting.** A change is `{run, seq, sent_us}`; a subscriber marks `seq` in a
//!   bitmap, so a loss, a duplicate and a reorder are told apart, and values left in a
//!   persistent object by an earlier run (another `run`) are ignored.
//! - **Cheap subscribers.** They read into a small buffer, decode with the project's sans-IO
//!   client and touch one uncontended mutex per read; the tool's own CPU is reported next to
//!   the server's, so a reader can tell when the load tool, not the server, was the limit.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use wasmgate::client::RtmpUrl;
use wasmgate::rtmp::amf::Amf0Value;
use wasmgate::rtmp::client::{ClientConfig, ClientEvent, ClientSession};
use wasmgate::rtmp::shared_object::{SoEncoding, SoEvent, SoMessage};

use crate::{BoxError, clock_ticks_per_sec, cpu_ticks, percentile, status_kb};

/// How long after the last change the subscribers may take to receive it before the rest is
/// counted as missing: many ticks, so only a real loss or a stuck connection ends up there.
const DRAIN_LIMIT: Duration = Duration::from_secs(3);
/// Per-client request budget of the server's default `[shared_objects] requests_per_sec`.
const DEFAULT_REQUESTS_PER_SEC: f64 = 100.0;
/// Longest wait for one read while connecting and subscribing.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// What the SO mode needs from the command line.
pub struct SoOptions {
    pub url: String,
    pub name: String,
    pub persistent: bool,
    pub subscribers: usize,
    pub writers: usize,
    pub rate: f64,
    pub keys: usize,
    pub warmup: u64,
    pub duration: u64,
    pub ramp_concurrency: usize,
    pub server_pids: Vec<u32>,
    pub label: String,
}

/// Where to connect: the socket address and the connect `app` (`app` or `app/instance`).
struct Target {
    addr: String,
    app: String,
    tc_url: String,
}

impl Target {
    /// `rtmp://host[:port]/app[/instance]`. The URL parser reads a second segment as a stream
    /// name (as librtmp does); here there is no stream, so it is the instance.
    fn parse(url: &str) -> Option<Target> {
        let u = RtmpUrl::parse(url).ok()?;
        let (app, tc_url) = match u.stream {
            None => (u.app, u.tc_url),
            Some(instance) if !u.app.contains('/') && !instance.contains('/') => (
                format!("{}/{instance}", u.app),
                format!("{}/{instance}", u.tc_url),
            ),
            Some(_) => return None,
        };
        Some(Target {
            addr: u.addr,
            app,
            tc_url,
        })
    }
}

/// One subscriber's record of the window, handed over under a mutex locked once per read.
struct SubStats {
    /// Bit `seq` set: change `seq` arrived.
    seen: Vec<u64>,
    /// `(seq, latency in µs)` of every first arrival.
    samples: Vec<(u32, u32)>,
    duplicates: u64,
    /// Shared-object messages that carried at least one change of this run.
    messages: u64,
}

struct Shared {
    base: Instant,
    run: f64,
    subscribed: AtomicUsize,
    failed: AtomicUsize,
    /// First arrivals, over every subscriber: the drain waits for `sent × subscribed`.
    delivered: AtomicU64,
    sent: AtomicU64,
    /// Status events (refusals such as `SharedObject.RateLimited`) writers received.
    refused: AtomicU64,
    /// Largest lateness of a send against its schedule, in µs (the writer fell behind).
    send_lag_max_us: AtomicU64,
    /// Writers stop reading the socket once this is set (the process then exits).
    done: AtomicBool,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.base.elapsed().as_micros() as u64
    }
}

/// Runs the SO load and prints one JSON line; returns the process exit code.
pub async fn run(opts: SoOptions) -> i32 {
    let Some(target) = Target::parse(&opts.url) else {
        eprintln!("wasmgate-load: with --so, --url must be rtmp://host[:port]/app[/instance]");
        return 2;
    };
    if opts.rate <= 0.0 || !opts.rate.is_finite() || opts.keys == 0 || opts.writers == 0 {
        eprintln!(
            "wasmgate-load: --so-rate must be positive, --so-keys and --so-writers at least 1"
        );
        return 2;
    }
    let per_writer = opts.rate / opts.writers as f64;
    if per_writer > DEFAULT_REQUESTS_PER_SEC {
        eprintln!(
            "wasmgate-load: {per_writer:.0} changes/s per writer is above the server's default \
             [shared_objects] requests_per_sec ({DEFAULT_REQUESTS_PER_SEC}): add --so-writers or raise it"
        );
    }
    let total_changes = (opts.rate * opts.duration as f64).round().max(1.0) as u64;
    let target = Arc::new(target);
    let shared = Arc::new(Shared {
        base: Instant::now(),
        run: f64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos() ^ d.as_secs() as u32)
                .unwrap_or(1),
        ),
        subscribed: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        delivered: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        send_lag_max_us: AtomicU64::new(0),
        done: AtomicBool::new(false),
    });
    let rss_before_kb = rss_kb(&opts.server_pids, "VmRSS:");
    let ramp = Arc::new(Semaphore::new(opts.ramp_concurrency.max(1)));
    let name: Arc<str> = opts.name.as_str().into();

    let mut stats = Vec::with_capacity(opts.subscribers);
    for i in 0..opts.subscribers {
        let s = Arc::new(Mutex::new(SubStats {
            seen: vec![0; total_changes.div_ceil(64) as usize],
            samples: Vec::new(),
            duplicates: 0,
            messages: 0,
        }));
        stats.push(s.clone());
        let (target, shared, ramp, name) =
            (target.clone(), shared.clone(), ramp.clone(), name.clone());
        let persistent = opts.persistent;
        tokio::spawn(async move {
            let permit = ramp.acquire_owned().await.ok();
            if let Err(e) = subscriber(
                &target,
                &name,
                persistent,
                &shared,
                &s,
                total_changes,
                permit,
            )
            .await
            {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                eprintln!("wasmgate-load: subscriber {i}: {e}");
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60 + opts.subscribers as u64 / 20);
    let ramped = |sh: &Shared| {
        sh.subscribed.load(Ordering::Relaxed) + sh.failed.load(Ordering::Relaxed)
            >= opts.subscribers
    };
    while !ramped(&shared) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let subscribed = shared.subscribed.load(Ordering::Relaxed);

    // Writers subscribe after the subscribers, then wait for the window to open.
    let failed_before_writers = shared.failed.load(Ordering::Relaxed);
    let (start_tx, start_rx) = watch::channel(None::<Instant>);
    let writers_ready = Arc::new(AtomicUsize::new(0));
    for w in 0..opts.writers {
        let (target, shared, name, ready) = (
            target.clone(),
            shared.clone(),
            name.clone(),
            writers_ready.clone(),
        );
        let plan = Plan {
            first: w as u64,
            step: opts.writers as u64,
            total: total_changes,
            rate: opts.rate,
            keys: opts.keys as u64,
        };
        let (persistent, start) = (opts.persistent, start_rx.clone());
        tokio::spawn(async move {
            if let Err(e) = writer(&target, &name, persistent, &shared, plan, &ready, start).await {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                eprintln!("wasmgate-load: writer {w}: {e}");
            }
        });
    }
    let writers_deadline = Instant::now() + Duration::from_secs(30);
    while writers_ready.load(Ordering::Relaxed) < opts.writers
        && shared.failed.load(Ordering::Relaxed) == failed_before_writers
        && Instant::now() < writers_deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let writers = writers_ready.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(opts.warmup)).await;

    // The window: from the first change until every delivery arrived (or the drain limit).
    let cpu0 = cpu_sum(&opts.server_pids);
    let self0 = cpu_ticks(std::process::id()).unwrap_or(0);
    let t0 = Instant::now();
    let _ = start_tx.send(Some(t0));
    let send_end = t0 + Duration::from_secs(opts.duration);
    tokio::time::sleep_until(send_end.into()).await;
    let drain_until = Instant::now() + DRAIN_LIMIT;
    loop {
        let sent = shared.sent.load(Ordering::Relaxed);
        let all_sent = sent >= total_changes || writers == 0;
        let expected = sent * subscribed as u64;
        let delivered = shared.delivered.load(Ordering::Relaxed);
        if (all_sent && delivered >= expected) || Instant::now() >= drain_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_sum(&opts.server_pids);
    let self1 = cpu_ticks(std::process::id()).unwrap_or(0);
    shared.done.store(true, Ordering::Relaxed);
    let tick_ms = 1000.0 / clock_ticks_per_sec();
    let server_cpu_ms = cpu1.saturating_sub(cpu0) as f64 * tick_ms;
    let load_cpu_ms = self1.saturating_sub(self0) as f64 * tick_ms;

    let sent = shared.sent.load(Ordering::Relaxed);
    let mut latencies: Vec<u32> = Vec::new();
    let mut first = vec![u32::MAX; total_changes as usize];
    let mut last = vec![0u32; total_changes as usize];
    let (mut delivered, mut duplicates, mut messages) = (0u64, 0u64, 0u64);
    for s in &stats {
        let s = s.lock().unwrap_or_else(|p| p.into_inner());
        delivered += s.samples.len() as u64;
        duplicates += s.duplicates;
        messages += s.messages;
        for &(seq, lat) in &s.samples {
            latencies.push(lat);
            let i = seq as usize;
            first[i] = first[i].min(lat);
            last[i] = last[i].max(lat);
        }
    }
    // Per change: the last subscriber's latency minus the first's (the fan-out's spread).
    let mut spreads: Vec<u32> = first
        .iter()
        .zip(&last)
        .filter(|(f, _)| **f != u32::MAX)
        .map(|(f, l)| l - f)
        .collect();
    latencies.sort_unstable();
    spreads.sort_unstable();
    let ms = |v: &[u32], q: f64| percentile(v, q).map_or(0.0, |us| f64::from(us) / 1000.0);
    let expected = sent * subscribed as u64;
    let per_change = |cpu_ms: f64| {
        if delivered > 0 {
            cpu_ms * 1000.0 / delivered as f64
        } else {
            0.0
        }
    };
    println!(
        "{{\"label\":\"{}\",\"mode\":\"so\",\"subscribers\":{},\"subscribed\":{},\"writers\":{},\"failed\":{},\"rate\":{},\"keys\":{},\"seconds\":{:.2},\"changes_sent\":{},\"changes_refused\":{},\"send_lag_max_ms\":{:.1},\"expected\":{},\"delivered\":{},\"missing\":{},\"duplicates\":{},\"so_messages\":{},\"changes_per_message\":{:.2},\"latency_p50_ms\":{:.1},\"latency_p99_ms\":{:.1},\"latency_max_ms\":{:.1},\"spread_p50_ms\":{:.1},\"spread_p99_ms\":{:.1},\"server_cpu_ms\":{:.1},\"server_cpu_pct\":{:.1},\"cpu_us_per_change\":{:.2},\"server_rss_kb\":{},\"server_rss_before_kb\":{},\"server_hwm_kb\":{},\"load_cpu_ms\":{:.1},\"load_cpu_pct\":{:.1},\"load_us_per_change\":{:.2}}}",
        opts.label,
        opts.subscribers,
        subscribed,
        writers,
        shared.failed.load(Ordering::Relaxed),
        opts.rate,
        opts.keys,
        elapsed,
        sent,
        shared.refused.load(Ordering::Relaxed),
        shared.send_lag_max_us.load(Ordering::Relaxed) as f64 / 1000.0,
        expected,
        delivered,
        expected.saturating_sub(delivered),
        duplicates,
        messages,
        if messages > 0 {
            delivered as f64 / messages as f64
        } else {
            0.0
        },
        ms(&latencies, 0.5),
        ms(&latencies, 0.99),
        latencies.last().map_or(0.0, |&us| f64::from(us) / 1000.0),
        ms(&spreads, 0.5),
        ms(&spreads, 0.99),
        server_cpu_ms,
        server_cpu_ms / (elapsed * 10.0),
        per_change(server_cpu_ms),
        rss_kb(&opts.server_pids, "VmRSS:"),
        rss_before_kb,
        rss_kb(&opts.server_pids, "VmHWM:"),
        load_cpu_ms,
        load_cpu_ms / (elapsed * 10.0),
        per_change(load_cpu_ms),
    );
    0
}

fn cpu_sum(pids: &[u32]) -> u64 {
    pids.iter().map(|&p| cpu_ticks(p).unwrap_or(0)).sum()
}

fn rss_kb(pids: &[u32], key: &str) -> u64 {
    pids.iter().filter_map(|&p| status_kb(p, key)).sum()
}

/// Which changes one writer sends: `first`, `first + step`, ... below `total`, change `k` at
/// `k / rate` seconds into the window, on key `k % keys`.
#[derive(Clone, Copy)]
struct Plan {
    first: u64,
    step: u64,
    total: u64,
    rate: f64,
    keys: u64,
}

/// A connected session with no stream: handshake and `connect` done.
struct Conn {
    sock: TcpStream,
    session: ClientSession,
    buf: Vec<u8>,
    out: Vec<Bytes>,
}

impl Conn {
    async fn open(target: &Target) -> Result<Conn, BoxError> {
        let sock = TcpStream::connect(&target.addr).await?;
        sock.set_nodelay(true)?;
        let cfg = ClientConfig::new(target.app.clone(), target.tc_url.clone());
        let mut conn = Conn {
            sock,
            session: ClientSession::new(cfg),
            buf: vec![0; 16 * 1024],
            out: Vec::new(),
        };
        loop {
            conn.flush().await?;
            for ev in conn.read_events(Some(SETUP_TIMEOUT)).await? {
                match ev {
                    ClientEvent::Connected { .. } => return Ok(conn),
                    ClientEvent::ConnectRejected { info } => {
                        return Err(format!("connect rejected: {info:?}").into());
                    }
                    _ => {}
                }
            }
        }
    }

    async fn flush(&mut self) -> Result<(), BoxError> {
        if self.session.has_transmit() {
            self.session.drain_transmit(&mut self.out);
            for b in self.out.drain(..) {
                self.sock.write_all(&b).await?;
            }
        }
        Ok(())
    }

    /// Reads once (within `limit`, if any) and returns the events those bytes completed.
    /// Cancel-safe (it only reads), so a writer can `select!` on it; flush separately.
    async fn read_events(&mut self, limit: Option<Duration>) -> Result<Vec<ClientEvent>, BoxError> {
        let n = match limit {
            Some(limit) => tokio::time::timeout(limit, self.sock.read(&mut self.buf)).await??,
            None => self.sock.read(&mut self.buf).await?,
        };
        if n == 0 {
            return Err("server closed the connection".into());
        }
        self.session.handle_input(&self.buf[..n])?;
        Ok(std::iter::from_fn(|| self.session.poll_event()).collect())
    }

    /// Sends a Use of `name` and waits for Use Success; a Status (a refusal) is an error.
    async fn use_so(&mut self, name: &str, persistent: bool) -> Result<(), BoxError> {
        let msg = SoMessage::new(name, 0, persistent, vec![SoEvent::Use]);
        self.session.send_shared_object(&msg, SoEncoding::Amf0);
        loop {
            self.flush().await?;
            for ev in self.read_events(Some(SETUP_TIMEOUT)).await? {
                let ClientEvent::SharedObject { message, .. } = ev else {
                    continue;
                };
                for e in &message.events {
                    match e {
                        SoEvent::UseSuccess => return Ok(()),
                        SoEvent::Status { code, .. } => {
                            return Err(format!("Use of {name:?} refused: {code}").into());
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

async fn subscriber(
    target: &Target,
    name: &str,
    persistent: bool,
    shared: &Shared,
    stats: &Mutex<SubStats>,
    total: u64,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<(), BoxError> {
    let mut conn = Conn::open(target).await?;
    conn.use_so(name, persistent).await?;
    shared.subscribed.fetch_add(1, Ordering::Relaxed);
    drop(permit);
    let Conn {
        mut sock,
        mut session,
        mut buf,
        mut out,
    } = conn;
    loop {
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            return Err("server closed the connection".into());
        }
        let now = shared.now_us();
        session.handle_input(&buf[..n])?;
        let mut firsts = 0;
        while let Some(ev) = session.poll_event() {
            let ClientEvent::SharedObject { message, .. } = ev else {
                continue;
            };
            let mut s = stats.lock().unwrap_or_else(|p| p.into_inner());
            let mut counted = false;
            for e in &message.events {
                let SoEvent::Change { value, .. } = e else {
                    continue;
                };
                let Some((seq, sent_us)) = decode_change(value, shared.run, total) else {
                    continue;
                };
                counted = true;
                let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
                match s.seen.get_mut(word) {
                    Some(w) if *w & bit != 0 => s.duplicates += 1,
                    Some(w) => {
                        *w |= bit;
                        let lat = now.saturating_sub(sent_us).min(u64::from(u32::MAX)) as u32;
                        s.samples.push((seq as u32, lat));
                        firsts += 1;
                    }
                    None => {}
                }
            }
            if counted {
                s.messages += 1;
            }
        }
        if firsts > 0 {
            shared.delivered.fetch_add(firsts, Ordering::Relaxed);
        }
        if session.has_transmit() {
            session.drain_transmit(&mut out);
            for b in out.drain(..) {
                sock.write_all(&b).await?;
            }
        }
    }
}

/// `{run, seq, sent_us}` of this run with `seq` below `total`, else `None`.
fn decode_change(value: &Amf0Value, run: f64, total: u64) -> Option<(u64, u64)> {
    let (mut r, mut seq, mut sent) = (None, None, None);
    for (k, v) in value.properties()? {
        match k.as_str() {
            "run" => r = v.as_f64(),
            "seq" => seq = v.as_f64(),
            "sent_us" => sent = v.as_f64(),
            _ => {}
        }
    }
    if r? != run {
        return None;
    }
    let (seq, sent) = (seq?, sent?);
    (seq >= 0.0 && seq < total as f64 && sent >= 0.0).then_some((seq as u64, sent as u64))
}

async fn writer(
    target: &Target,
    name: &str,
    persistent: bool,
    shared: &Shared,
    plan: Plan,
    ready: &AtomicUsize,
    mut start: watch::Receiver<Option<Instant>>,
) -> Result<(), BoxError> {
    let mut conn = Conn::open(target).await?;
    conn.use_so(name, persistent).await?;
    ready.fetch_add(1, Ordering::Relaxed);
    let t0 = loop {
        tokio::select! {
            r = start.changed() => {
                r?;
                if let Some(t0) = *start.borrow() {
                    break t0;
                }
            }
            evs = conn.read_events(None) => count_refusals(shared, &evs?),
        }
        conn.flush().await?;
    };
    let mut k = plan.first;
    while !shared.done.load(Ordering::Relaxed) {
        let due = (k < plan.total).then(|| t0 + Duration::from_secs_f64(k as f64 / plan.rate));
        tokio::select! {
            evs = conn.read_events(None) => count_refusals(shared, &evs?),
            _ = sleep_until_opt(due) => {
                let now = shared.now_us();
                if let Some(due) = due {
                    let lag = Instant::now().saturating_duration_since(due).as_micros() as u64;
                    shared.send_lag_max_us.fetch_max(lag, Ordering::Relaxed);
                }
                let value = Amf0Value::object([
                    ("run", Amf0Value::Number(shared.run)),
                    ("seq", Amf0Value::Number(k as f64)),
                    ("sent_us", Amf0Value::Number(now as f64)),
                ]);
                let change = SoEvent::RequestChange {
                    key: format!("k{}", k % plan.keys),
                    value,
                };
                let msg = SoMessage::new(name, 0, persistent, vec![change]);
                conn.session.send_shared_object(&msg, SoEncoding::Amf0);
                shared.sent.fetch_add(1, Ordering::Relaxed);
                k += plan.step;
            }
        }
        // Outside the select: a write is not cancel-safe.
        conn.flush().await?;
    }
    Ok(())
}

fn count_refusals(shared: &Shared, events: &[ClientEvent]) {
    for ev in events {
        if let ClientEvent::SharedObject { message, .. } = ev {
            for e in &message.events {
                if let SoEvent::Status { code, .. } = e
                    && shared.refused.fetch_add(1, Ordering::Relaxed) == 0
                {
                    eprintln!("wasmgate-load: a change was refused: {code}");
                }
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
