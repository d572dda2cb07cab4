//! `wasmgate-load`: opens N RTMP players against any RTMP server (wasmgate, nginx-rtmp, SRS)
//! and reports what they received, for the fan-out benchmark in `scripts/bench.sh`.
//!
//! Every player does a real handshake, connect, createStream and play with the project's
//! sans-IO client. After `NetStream.Play.Start`, most players only count bytes (and acknowledge
//! them as real players do, which also keeps servers from dropping them as silent); a few
//! "probe" players keep parsing every message to measure dropped frames, stalls and latency.
//! With `--server-pid`, the server's CPU time and memory are sampled over the measured window.
//!
//! `--transport http-flv` / `ws-flv` plays the same way over browser transports instead
//! (`flv.rs`, for `scripts/bench-web.sh`): HTTP-FLV or WebSocket-FLV players, byte counters
//! and tag-parsing probes, reported in the same JSON line.
//!
//! `--chaos` keeps players on several streams at once for `scripts/chaos.sh` (`chaos.rs`):
//! they reconnect after every fault and report each stretch without video in wall-clock time.
//!
//! `--so NAME` switches to the remote shared object load instead (`so.rs`, for
//! `scripts/bench-so.sh`): subscribers of one shared object, writers changing it at a fixed
//! rate, and the delivery of every change measured.

mod chaos;
mod flv;
mod so;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use wasmgate::client::RtmpUrl;
use wasmgate::rtmp::client::{ClientConfig, ClientEvent, ClientSession};

#[derive(Debug, Parser)]
#[command(
    name = "wasmgate-load",
    about = "RTMP fan-out load generator and probe"
)]
struct Args {
    /// Stream to play: rtmp://host[:port]/app[/instance]/stream (with --so:
    /// rtmp://host[:port]/app[/instance], the scope of the shared object). With --chaos:
    /// repeat it; rtmp://, rtmps://, http://…/stream.flv and ws://…/stream.flv URLs, the
    /// players spread over them in turn.
    #[arg(long, required = true)]
    url: Vec<String>,
    /// Byte-counting players (with --so: shared-object subscribers).
    #[arg(long, default_value_t = 100)]
    players: usize,
    /// Fully parsing probe players (measure drops, stalls, latency).
    #[arg(long, default_value_t = 4)]
    probes: usize,
    /// Seconds to wait after every player is playing, before measuring.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Seconds measured.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Players connecting at the same time during ramp-up.
    #[arg(long, default_value_t = 50)]
    ramp_concurrency: usize,
    /// Server processes whose CPU and memory to sample (repeat for nginx master + worker).
    #[arg(long = "server-pid")]
    server_pids: Vec<u32>,
    /// Players only connect (handshake + connect) and stay idle: measures memory per idle
    /// connection instead of fan-out.
    #[arg(long)]
    idle: bool,
    /// `play` start in milliseconds: -1000 the live stream (default), 0 or more a file from
    /// there (video on demand).
    #[arg(long, default_value_t = -1000.0, allow_hyphen_values = true)]
    start: f64,
    /// Label printed with the result.
    #[arg(long, default_value = "")]
    label: String,
    /// How players read the stream: `rtmp` (--url rtmp://…), `http-flv` (--url
    /// http://host:port/app/stream.flv) or `ws-flv` (--url ws://host:port/app/stream.flv).
    #[arg(long, value_enum, default_value_t = Transport::Rtmp)]
    transport: Transport,
    /// Shared-object mode: the --players subscribers Use this remote shared object and
    /// --so-writers connections change it at --so-rate over the --duration window; reports
    /// deliveries, latency and server CPU per delivered change (--probes, --idle and --start
    /// do not apply).
    #[arg(long, value_name = "NAME")]
    so: Option<String>,
    /// Use a persistent shared object (default: temporary).
    #[arg(long, requires = "so")]
    so_persistent: bool,
    /// Writer connections; the rate is split evenly between them.
    #[arg(long, default_value_t = 1, requires = "so")]
    so_writers: usize,
    /// Changes per second, all writers together.
    #[arg(long, default_value_t = 50.0, requires = "so")]
    so_rate: f64,
    /// Keys the writers rotate over (change k sets key k mod this); 1 makes every change in a
    /// tick overwrite the last, which the server coalesces.
    #[arg(long, default_value_t = 64, requires = "so")]
    so_keys: usize,
    /// Chaos mode: --players players over every --url for --duration seconds, reconnecting
    /// after any fault; reports gaps without video longer than --gap-ms (wall-clock ms).
    #[arg(long, conflicts_with = "so")]
    chaos: bool,
    /// A stretch without video longer than this is a gap (--chaos).
    #[arg(long, default_value_t = 2000, requires = "chaos")]
    gap_ms: u64,
    /// Per-player JSON lines: frames, connects, max gap, frames per 10 s (--chaos).
    #[arg(long, requires = "chaos")]
    report: Option<std::path::PathBuf>,
    /// Gaps, one a line: `player stream from_ms to_ms` (--chaos).
    #[arg(long, requires = "chaos")]
    gaps: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Transport {
    Rtmp,
    HttpFlv,
    WsFlv,
}

/// What the players connect to.
enum Target {
    Rtmp(RtmpUrl),
    Flv(flv::FlvUrl),
}

/// Per-probe measurements, reduced when the run ends.
#[derive(Default)]
struct ProbeStats {
    video_frames: u64,
    missing_video: u64,
    stalls: u64,
    /// Arrival time minus media timestamp, in ms, for each video frame in the window.
    lateness: Vec<f64>,
    /// 1 when the probe's first video frame was not a keyframe (a late join must start on one).
    bad_starts: u64,
    /// FLV tags whose PreviousTagSize did not match their header (FLV transports only).
    bad_tags: u64,
}

/// One probe's view of the video track: frame gaps, stalls and lateness, fed frame by frame.
#[derive(Default)]
struct VideoTrack {
    last_ts: Option<u32>,
    /// The smallest timestamp step seen: one frame.
    interval: Option<u32>,
    last_arrival: Option<Instant>,
}

impl VideoTrack {
    /// A video frame (not a sequence header) at media time `timestamp` arrived at `now`.
    fn frame(
        &mut self,
        stats: &mut ProbeStats,
        timestamp: u32,
        keyframe: bool,
        now: Instant,
        measuring: bool,
        start: Instant,
    ) {
        if self.last_ts.is_none() && !keyframe {
            stats.bad_starts = 1;
        }
        if let Some(prev) = self.last_ts {
            let delta = timestamp.wrapping_sub(prev);
            if delta > 0 && delta < 1000 {
                let iv = *self.interval.get_or_insert(delta);
                self.interval = Some(iv.min(delta).max(1));
            }
            if measuring && let Some(iv) = self.interval {
                let missing = (delta + iv / 2) / iv;
                stats.missing_video += u64::from(missing.saturating_sub(1).min(1000));
            }
        }
        self.last_ts = Some(timestamp);
        if measuring {
            stats.video_frames += 1;
            let arrival_ms = now.duration_since(start).as_secs_f64() * 1000.0;
            stats.lateness.push(arrival_ms - f64::from(timestamp));
            if let Some(prev) = self.last_arrival
                && now.duration_since(prev) > Duration::from_secs(1)
            {
                stats.stalls += 1;
            }
        }
        self.last_arrival = Some(now);
    }

    /// Lateness is relative: its minimum is the best-case path through this server.
    fn finish(&self, stats: &mut ProbeStats) {
        if let Some(min) = stats.lateness.iter().cloned().reduce(f64::min) {
            for l in &mut stats.lateness {
                *l -= min;
            }
        }
    }
}

struct Shared {
    /// Media bytes received: RTMP bytes, or the FLV stream inside HTTP chunks / WS frames.
    bytes: AtomicU64,
    /// Bytes read from the sockets by the FLV transports (framing included).
    wire_bytes: AtomicU64,
    playing: AtomicUsize,
    failed: AtomicUsize,
    /// Set once measuring starts; probes only record inside the window.
    measuring: std::sync::atomic::AtomicBool,
    start: Instant,
    /// The `play` start argument every player sends.
    play_start: f64,
}

#[tokio::main]
async fn main() {
    let mut args = Args::parse();
    if args.chaos {
        let code = chaos::run(chaos::ChaosOptions {
            urls: args.url,
            players: args.players,
            duration: args.duration,
            gap_ms: args.gap_ms,
            ramp_concurrency: args.ramp_concurrency,
            report: args.report,
            gaps: args.gaps,
            label: args.label,
        })
        .await;
        std::process::exit(code);
    }
    if args.url.len() != 1 {
        eprintln!("wasmgate-load: one --url (several only with --chaos)");
        std::process::exit(2);
    }
    let url = args.url.remove(0);
    if let Some(name) = args.so {
        let code = so::run(so::SoOptions {
            url,
            name,
            persistent: args.so_persistent,
            subscribers: args.players,
            writers: args.so_writers,
            rate: args.so_rate,
            keys: args.so_keys,
            warmup: args.warmup,
            duration: args.duration,
            ramp_concurrency: args.ramp_concurrency,
            server_pids: args.server_pids,
            label: args.label,
        })
        .await;
        std::process::exit(code);
    }
    let web = match args.transport {
        Transport::Rtmp => None,
        Transport::HttpFlv => Some(flv::Web::HttpFlv),
        Transport::WsFlv => Some(flv::Web::WsFlv),
    };
    let target = match web {
        None => match RtmpUrl::parse(&url) {
            Ok(u) if u.stream.is_some() => Target::Rtmp(u),
            _ => {
                eprintln!("wasmgate-load: --url must be rtmp://host[:port]/app[/instance]/stream");
                std::process::exit(2);
            }
        },
        Some(_) if args.idle || args.start != -1000.0 => {
            eprintln!("wasmgate-load: --idle and --start apply to RTMP players only");
            std::process::exit(2);
        }
        Some(web) => match flv::FlvUrl::parse(&url, web) {
            Ok(u) => Target::Flv(u),
            Err(e) => {
                eprintln!("wasmgate-load: --url: {e}");
                std::process::exit(2);
            }
        },
    };
    let target = Arc::new(target);
    let shared = Arc::new(Shared {
        bytes: AtomicU64::new(0),
        wire_bytes: AtomicU64::new(0),
        playing: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        measuring: false.into(),
        start: Instant::now(),
        play_start: args.start,
    });
    let total = args.players + args.probes;
    let rss_before_kb: u64 = args
        .server_pids
        .iter()
        .filter_map(|&p| status_kb(p, "VmRSS:"))
        .sum();
    let ramp = Arc::new(Semaphore::new(args.ramp_concurrency.max(1)));
    let per_player: Vec<Arc<AtomicU64>> = (0..args.players)
        .map(|_| Arc::new(AtomicU64::new(0)))
        .collect();
    let mut probes = Vec::new();
    for i in 0..total {
        let probe = i < args.probes;
        let (target, shared, ramp, idle) =
            (target.clone(), shared.clone(), ramp.clone(), args.idle);
        let counter = if probe {
            None
        } else {
            Some(per_player[i - args.probes].clone())
        };
        let task = tokio::spawn(async move {
            let permit = ramp.acquire_owned().await.ok();
            let r = match &*target {
                Target::Rtmp(url) => run_player(url, probe, idle, &shared, counter, permit).await,
                Target::Flv(url) => flv::run_player(url, probe, &shared, counter, permit).await,
            };
            if let Err(e) = &r {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                eprintln!("wasmgate-load: player {i}: {e}");
            }
            r.ok().flatten()
        });
        if probe {
            probes.push(task);
        }
    }

    // Ramp-up: wait until every player plays (or failed), bounded.
    let ramp_deadline = Instant::now() + Duration::from_secs(60 + total as u64 / 20);
    while shared.playing.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed) < total
        && Instant::now() < ramp_deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let playing = shared.playing.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;

    let cpu0: Vec<u64> = args
        .server_pids
        .iter()
        .map(|&p| cpu_ticks(p).unwrap_or(0))
        .collect();
    let self0 = cpu_ticks(std::process::id()).unwrap_or(0);
    let bytes0 = shared.bytes.load(Ordering::Relaxed);
    let wire0 = shared.wire_bytes.load(Ordering::Relaxed);
    let per0: Vec<u64> = per_player
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    let t0 = Instant::now();
    shared.measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    shared.measuring.store(false, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    let bytes = shared.bytes.load(Ordering::Relaxed) - bytes0;
    let wire = match &*target {
        Target::Rtmp(_) => bytes,
        Target::Flv(_) => shared.wire_bytes.load(Ordering::Relaxed) - wire0,
    };
    let cpu1: Vec<u64> = args
        .server_pids
        .iter()
        .map(|&p| cpu_ticks(p).unwrap_or(0))
        .collect();
    let self1 = cpu_ticks(std::process::id()).unwrap_or(0);
    let tick_ms = 1000.0 / clock_ticks_per_sec();
    let server_cpu_ms: f64 = cpu1
        .iter()
        .zip(&cpu0)
        .map(|(a, b)| (a - b) as f64 * tick_ms)
        .sum();
    let rss_kb: u64 = args
        .server_pids
        .iter()
        .filter_map(|&p| status_kb(p, "VmRSS:"))
        .sum();
    let hwm_kb: u64 = args
        .server_pids
        .iter()
        .filter_map(|&p| status_kb(p, "VmHWM:"))
        .sum();
    // A player that received under a tenth of the average in the window is starving.
    let per: Vec<u64> = per_player
        .iter()
        .zip(&per0)
        .map(|(c, b)| c.load(Ordering::Relaxed) - b)
        .collect();
    let avg = if per.is_empty() {
        0.0
    } else {
        per.iter().sum::<u64>() as f64 / per.len() as f64
    };
    let starving = per.iter().filter(|&&b| (b as f64) < avg / 10.0).count();
    let min_player = per.iter().copied().min().unwrap_or(0);

    let mut stats = ProbeStats::default();
    // Probes hand in their stats at their next message after the window closed.
    for p in probes {
        let _ = tokio::time::timeout(Duration::from_secs(3), p).await;
    }
    for s in PROBE_RESULTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain(..)
    {
        stats.video_frames += s.video_frames;
        stats.missing_video += s.missing_video;
        stats.stalls += s.stalls;
        stats.bad_starts += s.bad_starts;
        stats.bad_tags += s.bad_tags;
        stats.lateness.extend(s.lateness);
    }
    let (p50, p99) = percentiles(&mut stats.lateness);
    let mb = bytes as f64 / 1e6;
    let drop_pct = if stats.video_frames + stats.missing_video == 0 {
        0.0
    } else {
        100.0 * stats.missing_video as f64 / (stats.video_frames + stats.missing_video) as f64
    };
    println!(
        "{{\"label\":\"{}\",\"players\":{},\"playing\":{},\"failed\":{},\"starving\":{},\"seconds\":{:.2},\"mb\":{:.2},\"mbit_per_player\":{:.3},\"server_cpu_ms\":{:.1},\"cpu_ms_per_mb\":{:.4},\"server_rss_kb\":{},\"server_rss_before_kb\":{},\"server_hwm_kb\":{},\"load_cpu_ms\":{:.1},\"probe_video_frames\":{},\"probe_missing_frames\":{},\"drop_pct\":{:.4},\"stalls\":{},\"lateness_p50_ms\":{:.1},\"lateness_p99_ms\":{:.1},\"transport\":\"{}\",\"wire_mb\":{:.2},\"player_mb_avg\":{:.3},\"player_mb_min\":{:.3},\"probe_bad_starts\":{},\"probe_bad_tags\":{}}}",
        args.label,
        total,
        playing,
        shared.failed.load(Ordering::Relaxed),
        starving,
        elapsed,
        mb,
        if args.players > 0 {
            avg * 8.0 / 1e6 / elapsed
        } else {
            0.0
        },
        server_cpu_ms,
        if mb > 0.0 { server_cpu_ms / mb } else { 0.0 },
        rss_kb,
        rss_before_kb,
        hwm_kb,
        (self1 - self0) as f64 * tick_ms,
        stats.video_frames,
        stats.missing_video,
        drop_pct,
        stats.stalls,
        p50,
        p99,
        match args.transport {
            Transport::Rtmp => "rtmp",
            Transport::HttpFlv => "http-flv",
            Transport::WsFlv => "ws-flv",
        },
        wire as f64 / 1e6,
        avg / 1e6,
        min_player as f64 / 1e6,
        stats.bad_starts,
        stats.bad_tags
    );
}

static PROBE_RESULTS: std::sync::Mutex<Vec<ProbeStats>> = std::sync::Mutex::new(Vec::new());

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Connects and plays; byte-counting players never return until the process ends.
async fn run_player(
    url: &RtmpUrl,
    probe: bool,
    idle: bool,
    shared: &Shared,
    counter: Option<Arc<AtomicU64>>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<Option<()>, BoxError> {
    let mut sock = TcpStream::connect(&url.addr).await?;
    sock.set_nodelay(true)?;
    let mut cfg = ClientConfig::new(url.app.clone(), url.tc_url.clone());
    cfg.digest_handshake = true;
    let mut session = ClientSession::new(cfg);
    let mut buf = vec![0u8; 256 * 1024];
    let mut out = Vec::new();
    let stream = url.stream.clone().unwrap_or_default();
    let mut stream_id = None;
    let mut create_txn = None;
    // Set up the stream with full parsing.
    let mut started = false;
    while !started {
        session.drain_transmit(&mut out);
        for b in out.drain(..) {
            sock.write_all(&b).await?;
        }
        let n = tokio::time::timeout(Duration::from_secs(30), sock.read(&mut buf)).await??;
        if n == 0 {
            return Err("server closed during setup".into());
        }
        session.handle_input(&buf[..n])?;
        // Stop at the start: media that came in the same read (the late-join preamble, its
        // keyframe first) stays queued in the session for the probe.
        while !started && let Some(ev) = session.poll_event() {
            match ev {
                ClientEvent::Connected { .. } if idle => started = true,
                ClientEvent::Connected { .. } => create_txn = Some(session.create_stream()),
                ClientEvent::ConnectRejected { info } => {
                    return Err(format!("connect rejected: {info:?}").into());
                }
                ClientEvent::Result {
                    transaction_id,
                    values,
                } if Some(transaction_id) == create_txn => {
                    let id = values
                        .first()
                        .and_then(|v| v.as_f64())
                        .ok_or("bad createStream result")? as u32;
                    stream_id = Some(id);
                    session.play(id, &stream, shared.play_start);
                }
                ClientEvent::Status { info, .. } => {
                    let code = info.get("code").and_then(|v| v.as_str()).unwrap_or("");
                    if code == "NetStream.Play.Start" {
                        started = true;
                    } else if code.contains("Failed") || code.contains("NotFound") {
                        return Err(format!("play failed: {code}").into());
                    }
                }
                _ => {}
            }
        }
    }
    let _ = stream_id;
    session.drain_transmit(&mut out);
    for b in out.drain(..) {
        sock.write_all(&b).await?;
    }
    shared.playing.fetch_add(1, Ordering::Relaxed);
    drop(permit);
    if probe || idle {
        probe_loop(sock, session, buf, shared).await
    } else {
        count_loop(sock, buf, shared, counter.unwrap_or_default()).await
    }
}

/// Counts bytes; acknowledges every 2.5 MB as real players do.
async fn count_loop(
    mut sock: TcpStream,
    mut buf: Vec<u8>,
    shared: &Shared,
    counter: Arc<AtomicU64>,
) -> Result<Option<()>, BoxError> {
    let mut total: u64 = 0;
    let mut acked: u64 = 0;
    loop {
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            return Err("server closed the stream".into());
        }
        total += n as u64;
        shared.bytes.fetch_add(n as u64, Ordering::Relaxed);
        counter.fetch_add(n as u64, Ordering::Relaxed);
        if total - acked >= 2_500_000 {
            acked = total;
            // Acknowledgement: fmt 0, csid 2, ts 0, length 4, type 3, stream 0.
            let seq = (total as u32).to_be_bytes();
            let msg = [
                2, 0, 0, 0, 0, 0, 4, 3, 0, 0, 0, 0, seq[0], seq[1], seq[2], seq[3],
            ];
            sock.write_all(&msg).await?;
        }
    }
}

/// Parses everything; records frame gaps, stalls and lateness (arrival − media time) while
/// the window is open.
async fn probe_loop(
    mut sock: TcpStream,
    mut session: ClientSession,
    mut buf: Vec<u8>,
    shared: &Shared,
) -> Result<Option<()>, BoxError> {
    let mut stats = ProbeStats::default();
    let mut track = VideoTrack::default();
    let mut out = Vec::new();
    // The first pass takes what setup left queued, before reading.
    let mut queued = true;
    let result: Result<(), BoxError> = async {
        loop {
            if !std::mem::take(&mut queued) {
                let n = sock.read(&mut buf).await?;
                if n == 0 {
                    return Err("server closed the stream".into());
                }
                shared.bytes.fetch_add(n as u64, Ordering::Relaxed);
                session.handle_input(&buf[..n])?;
            }
            let now = Instant::now();
            let measuring = shared.measuring.load(Ordering::Relaxed);
            while let Some(ev) = session.poll_event() {
                if let ClientEvent::Media {
                    type_id: 9,
                    timestamp,
                    payload,
                    ..
                } = ev
                {
                    // Skip sequence headers: they are not frames.
                    if payload.get(1) == Some(&0) && payload.first().is_some_and(|b| b & 0x0f == 7)
                    {
                        continue;
                    }
                    let keyframe = payload.first().is_some_and(|b| b >> 4 == 1);
                    track.frame(
                        &mut stats,
                        timestamp,
                        keyframe,
                        now,
                        measuring,
                        shared.start,
                    );
                }
            }
            session.drain_transmit(&mut out);
            for b in out.drain(..) {
                sock.write_all(&b).await?;
            }
            if !measuring && stats.video_frames > 0 {
                return Ok(());
            }
        }
    }
    .await;
    track.finish(&mut stats);
    PROBE_RESULTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(stats);
    result.map(|_| Some(()))
}

fn percentiles(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (
        percentile(v, 0.5).unwrap_or(0.0),
        percentile(v, 0.99).unwrap_or(0.0),
    )
}

/// The `q` quantile (0..=1, nearest rank) of sorted values.
fn percentile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    let last = sorted.len().checked_sub(1)?;
    sorted.get((last as f64 * q).round() as usize).copied()
}

/// utime + stime of a process (all threads), in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn clock_ticks_per_sec() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}
