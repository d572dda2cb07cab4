//! `--chaos`: players for `scripts/chaos.sh` that stay on their stream whatever happens and
//! record, per player, every stretch without video longer than `--gap-ms`, in wall-clock time.
//!
//! Why it is built this way:
//! - **Every player parses.** A gap is "no video frame arrived", not "no bytes": pings and
//!   status messages keep flowing while a publisher is down, so bytes would hide a starved
//!   player. RTMP/RTMPS players run the sans-IO client over each read; HTTP-FLV and
//!   WebSocket-FLV players run the FLV tag reader of `flv.rs`.
//! - **Players never give up.** A refused connect, an ended HTTP-FLV body (what the gateway
//!   does when a publisher leaves) or a dropped socket is counted and retried after
//!   `RETRY`; the time until the next frame is simply part of the gap. RTMP players stay
//!   attached across a publisher's restart (`UnpublishNotify`, then `PublishNotify`).
//! - **Wall-clock milliseconds.** Gaps are written as Unix-epoch ms so the script can lay them
//!   over the publisher-down windows it logged with `date +%s%3N`.
//! - **RTMPS without verification.** The run uses a throw-away self-signed certificate; what is
//!   measured is delivery, not PKI (ffmpeg and rtmpdump do not verify by default either).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use wasmgate::client::RtmpUrl;
use wasmgate::rtmp::client::{ClientConfig, ClientEvent, ClientSession};

use crate::BoxError;
use crate::flv::{FlvUrl, Web};

/// Wait before a player reconnects.
const RETRY: Duration = Duration::from_millis(500);
/// Longest wait for a connect, createStream or HTTP response head.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Gaps kept per player (a player flapping for ten minutes must not grow without end).
const MAX_GAPS: usize = 1000;
/// Distinct error texts counted; more are folded into "other".
const MAX_ERROR_KINDS: usize = 64;
/// Frames are counted in buckets of this many seconds ("frames over time" in the report).
const BUCKET_SECS: u64 = 10;

pub struct ChaosOptions {
    pub urls: Vec<String>,
    pub players: usize,
    pub duration: u64,
    pub gap_ms: u64,
    pub ramp_concurrency: usize,
    pub report: Option<PathBuf>,
    pub gaps: Option<PathBuf>,
    pub label: String,
}

/// Where one player reads from.
#[derive(Clone)]
enum Source {
    Rtmp { url: RtmpUrl, tls: bool },
    Flv(FlvUrl),
}

impl Source {
    /// `rtmp://`, `rtmps://`, `http://` (HTTP-FLV) or `ws://` (WebSocket-FLV).
    fn parse(url: &str) -> Result<(Source, &'static str), String> {
        if let Some(rest) = url.strip_prefix("rtmps://") {
            let mut u = RtmpUrl::parse(&format!("rtmp://{rest}")).map_err(|e| e.to_string())?;
            u.tc_url = u.tc_url.replacen("rtmp://", "rtmps://", 1);
            u.stream.as_ref().ok_or("the URL names no stream")?;
            Ok((Source::Rtmp { url: u, tls: true }, "rtmps"))
        } else if url.starts_with("rtmp://") {
            let u = RtmpUrl::parse(url).map_err(|e| e.to_string())?;
            u.stream.as_ref().ok_or("the URL names no stream")?;
            Ok((Source::Rtmp { url: u, tls: false }, "rtmp"))
        } else if url.starts_with("http://") {
            Ok((Source::Flv(FlvUrl::parse(url, Web::HttpFlv)?), "http-flv"))
        } else if url.starts_with("ws://") {
            Ok((Source::Flv(FlvUrl::parse(url, Web::WsFlv)?), "ws-flv"))
        } else {
            Err("expected rtmp://, rtmps://, http:// or ws://".into())
        }
    }
}

/// The stream a URL plays: its last path segment without `.flv` and query.
fn stream_name(url: &str) -> String {
    let path = url.split('?').next().unwrap_or(url);
    let last = path.rsplit('/').next().unwrap_or(path);
    last.strip_suffix(".flv").unwrap_or(last).to_owned()
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What one player saw, updated frame by frame.
struct PlayerLog {
    stream: String,
    transport: &'static str,
    gap_ms: u64,
    started_ms: u64,
    /// The last video frame (or the start, before the first one).
    since_ms: u64,
    frames: u64,
    connects: u64,
    failures: u64,
    max_gap_ms: u64,
    gaps: Vec<(u64, u64)>,
    gaps_dropped: u64,
    buckets: Vec<u64>,
    last_error: String,
}

impl PlayerLog {
    fn frame(&mut self, now_ms: u64) {
        self.note_gap(now_ms);
        self.since_ms = now_ms;
        self.frames += 1;
        let bucket = (now_ms.saturating_sub(self.started_ms) / 1000 / BUCKET_SECS) as usize;
        // Bounded: the run's length decides the bucket count, checked in `run`.
        if bucket < self.buckets.len() {
            self.buckets[bucket] += 1;
        }
    }

    fn note_gap(&mut self, now_ms: u64) {
        let gap = now_ms.saturating_sub(self.since_ms);
        self.max_gap_ms = self.max_gap_ms.max(gap);
        if gap > self.gap_ms {
            if self.gaps.len() < MAX_GAPS {
                self.gaps.push((self.since_ms, now_ms));
            } else {
                self.gaps_dropped += 1;
            }
        }
    }
}

type Log = Arc<Mutex<PlayerLog>>;

fn lock(log: &Log) -> std::sync::MutexGuard<'_, PlayerLog> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

/// Error texts across all players, counted (bounded by `MAX_ERROR_KINDS`).
type Errors = Arc<Mutex<BTreeMap<String, u64>>>;

pub async fn run(opts: ChaosOptions) -> i32 {
    let mut sources = Vec::new();
    for url in &opts.urls {
        match Source::parse(url) {
            Ok((s, transport)) => sources.push((s, transport, stream_name(url))),
            Err(e) => {
                eprintln!("wasmgate-load: --url {url}: {e}");
                return 2;
            }
        }
    }
    if sources.is_empty() {
        eprintln!("wasmgate-load: --chaos needs at least one --url");
        return 2;
    }
    let tls = match tls_connector() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("wasmgate-load: TLS setup: {e}");
            return 1;
        }
    };
    let buckets = (opts.duration / BUCKET_SECS + 2) as usize;
    let errors: Errors = Default::default();
    let ramp = Arc::new(Semaphore::new(opts.ramp_concurrency.max(1)));
    let mut logs = Vec::with_capacity(opts.players);
    for i in 0..opts.players {
        let (source, transport, stream) = sources[i % sources.len()].clone();
        let now = epoch_ms();
        let log: Log = Arc::new(Mutex::new(PlayerLog {
            stream,
            transport,
            gap_ms: opts.gap_ms,
            started_ms: now,
            since_ms: now,
            frames: 0,
            connects: 0,
            failures: 0,
            max_gap_ms: 0,
            gaps: Vec::new(),
            gaps_dropped: 0,
            buckets: vec![0; buckets],
            last_error: String::new(),
        }));
        logs.push(log.clone());
        let (ramp, errors, tls) = (ramp.clone(), errors.clone(), tls.clone());
        tokio::spawn(async move {
            // Only the first connect is ramped: reconnects after a fault come as they come.
            let mut permit = ramp.acquire_owned().await.ok();
            {
                // The first gap is counted from the first connect, not from the queue.
                let mut l = lock(&log);
                l.started_ms = epoch_ms();
                l.since_ms = l.started_ms;
            }
            loop {
                lock(&log).connects += 1;
                let r = match &source {
                    Source::Rtmp { url, tls: false } => match TcpStream::connect(&url.addr).await {
                        Ok(s) => {
                            let _ = s.set_nodelay(true);
                            play_rtmp(s, url, &log, &mut permit).await
                        }
                        Err(e) => Err(e.into()),
                    },
                    Source::Rtmp { url, tls: true } => match connect_tls(&tls, &url.addr).await {
                        Ok(s) => play_rtmp(s, url, &log, &mut permit).await,
                        Err(e) => Err(e),
                    },
                    Source::Flv(url) => play_flv(url, &log, &mut permit).await,
                };
                permit = None;
                let e = match r {
                    Ok(()) => "stream ended".to_owned(),
                    Err(e) => e.to_string(),
                };
                {
                    let mut l = lock(&log);
                    l.failures += 1;
                    l.last_error = e.clone();
                }
                count_error(&errors, &e);
                tokio::time::sleep(RETRY).await;
            }
        });
    }

    tokio::time::sleep(Duration::from_secs(opts.duration)).await;
    let end = epoch_ms();
    report(&opts, &logs, &errors, end)
}

fn count_error(errors: &Errors, e: &str) {
    // Long numbers (ids, sizes) would make every text distinct; status codes stay.
    let mut kind = String::with_capacity(e.len());
    let mut run = 0;
    for c in e.chars() {
        run = if c.is_ascii_digit() { run + 1 } else { 0 };
        match run {
            0..=3 => kind.push(c),
            4 => {
                kind.truncate(kind.len() - 3);
                kind.push('N');
            }
            _ => {}
        }
    }
    let mut map = errors.lock().unwrap_or_else(|e| e.into_inner());
    let key = if map.len() < MAX_ERROR_KINDS || map.contains_key(&kind) {
        kind
    } else {
        "other".to_owned()
    };
    *map.entry(key).or_default() += 1;
}

/// Writes the per-player report and the gaps, prints the summary line; 0 unless a file failed.
fn report(opts: &ChaosOptions, logs: &[Log], errors: &Errors, end: u64) -> i32 {
    let mut lines = Vec::with_capacity(logs.len());
    let mut gaps = String::new();
    let (mut frames, mut connects, mut failures, mut never) = (0u64, 0u64, 0u64, 0usize);
    let mut max_gaps = Vec::with_capacity(logs.len());
    for (i, log) in logs.iter().enumerate() {
        let mut l = lock(log);
        // The stretch from the last frame to the end counts too.
        l.note_gap(end);
        frames += l.frames;
        connects += l.connects;
        failures += l.failures;
        if l.frames == 0 {
            never += 1;
        }
        max_gaps.push(l.max_gap_ms);
        let player = format!("load-{i}-{}", l.transport);
        for (from, to) in &l.gaps {
            gaps.push_str(&format!("{player} {} {from} {to}\n", l.stream));
        }
        lines.push(
            serde_json::json!({
                "player": player,
                "stream": l.stream,
                "transport": l.transport,
                "frames": l.frames,
                "connects": l.connects,
                "failures": l.failures,
                "max_gap_ms": l.max_gap_ms,
                "gaps": l.gaps.len() as u64 + l.gaps_dropped,
                "frames_per_10s": l.buckets,
                "last_error": l.last_error,
            })
            .to_string(),
        );
    }
    max_gaps.sort_unstable();
    let pct = |q: f64| crate::percentile(&max_gaps, q).unwrap_or(0);
    let errors = errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
    println!(
        "{}",
        serde_json::json!({
            "label": opts.label,
            "mode": "chaos",
            "players": logs.len(),
            "frames": frames,
            "connects": connects,
            "failures": failures,
            "never_played": never,
            "max_gap_ms_p50": pct(0.5),
            "max_gap_ms_p99": pct(0.99),
            "max_gap_ms_max": pct(1.0),
            "errors": errors,
        })
    );
    let mut code = 0;
    if let Some(path) = &opts.report {
        let mut text = lines.join("\n");
        text.push('\n');
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("wasmgate-load: writing {}: {e}", path.display());
            code = 1;
        }
    }
    if let Some(path) = &opts.gaps {
        let r = std::fs::File::create(path).and_then(|mut f| f.write_all(gaps.as_bytes()));
        if let Err(e) = r {
            eprintln!("wasmgate-load: writing {}: {e}", path.display());
            code = 1;
        }
    }
    code
}

/// Handshake, connect, createStream and play, then every video frame noted until the
/// connection ends.
async fn play_rtmp<S: AsyncRead + AsyncWrite + Unpin>(
    mut sock: S,
    url: &RtmpUrl,
    log: &Log,
    permit: &mut Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<(), BoxError> {
    let mut cfg = ClientConfig::new(url.app.clone(), url.tc_url.clone());
    cfg.digest_handshake = true;
    let mut session = ClientSession::new(cfg);
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    let stream = url.stream.clone().unwrap_or_default();
    let mut create_txn = None;
    let mut playing = false;
    loop {
        session.drain_transmit(&mut out);
        for b in out.drain(..) {
            sock.write_all(&b).await?;
        }
        let n = if playing {
            sock.read(&mut buf).await?
        } else {
            tokio::time::timeout(SETUP_TIMEOUT, sock.read(&mut buf))
                .await
                .map_err(|_| "no play start within 30 s")??
        };
        if n == 0 {
            return Err("server closed the connection".into());
        }
        session.handle_input(&buf[..n])?;
        let now = epoch_ms();
        let mut frames = 0u32;
        while let Some(ev) = session.poll_event() {
            match ev {
                ClientEvent::Media {
                    type_id: 9,
                    payload,
                    ..
                } => {
                    // AVC sequence headers are not frames.
                    let seq_header = payload.first().is_some_and(|b| b & 0x0f == 7)
                        && payload.get(1) == Some(&0);
                    if !seq_header {
                        frames += 1;
                    }
                }
                ClientEvent::Connected { .. } => create_txn = Some(session.create_stream()),
                ClientEvent::ConnectRejected { info } => {
                    let why = info.get("description").and_then(|v| v.as_str());
                    return Err(format!("connect rejected: {}", why.unwrap_or("")).into());
                }
                ClientEvent::Result {
                    transaction_id,
                    values,
                } if Some(transaction_id) == create_txn => {
                    let id = values
                        .first()
                        .and_then(|v| v.as_f64())
                        .ok_or("bad createStream result")? as u32;
                    session.play(id, &stream, -1000.0);
                }
                ClientEvent::Status { info, .. } => {
                    let code = info.get("code").and_then(|v| v.as_str()).unwrap_or("");
                    if code == "NetStream.Play.Start" {
                        playing = true;
                        permit.take();
                    } else if code.contains("Failed") || code.contains("Rejected") {
                        return Err(format!("status {code}").into());
                    }
                }
                _ => {}
            }
        }
        if frames > 0 {
            let mut l = lock(log);
            for _ in 0..frames {
                l.frame(now);
            }
        }
    }
}

/// Requests the stream over HTTP-FLV or WebSocket-FLV and notes every video frame until the
/// body ends.
async fn play_flv(
    url: &FlvUrl,
    log: &Log,
    permit: &mut Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<(), BoxError> {
    let mut sock = TcpStream::connect(&url.addr).await?;
    sock.set_nodelay(true)?;
    sock.write_all(url.request().as_bytes()).await?;
    let mut buf = vec![0u8; 64 * 1024];
    let (head_len, have) =
        tokio::time::timeout(SETUP_TIMEOUT, crate::flv::read_head(&mut sock, &mut buf))
            .await
            .map_err(|_| "no response head within 30 s")??;
    let mut framing = crate::flv::check_head(&buf[..head_len], url.web())?;
    permit.take();
    buf.copy_within(head_len..have, 0);
    let mut have = have - head_len;
    let mut reader = crate::flv::FlvReader::default();
    loop {
        if have == 0 {
            have = sock.read(&mut buf).await?;
            if have == 0 {
                return Err("server closed the stream".into());
            }
        }
        let mut frames = 0u32;
        let mut bad: Option<BoxError> = None;
        let flow = framing.feed(&buf[..have], &mut |p| {
            let r = reader.feed(p, &mut |tag| {
                if tag.kind == 9 && !tag.is_sequence_header() {
                    frames += 1;
                }
            });
            if let Err(e) = r {
                bad.get_or_insert(e);
            }
        })?;
        if let Some(e) = bad {
            return Err(e);
        }
        have = 0;
        if frames > 0 {
            let now = epoch_ms();
            let mut l = lock(log);
            for _ in 0..frames {
                l.frame(now);
            }
        }
        if flow == crate::flv::Flow::End {
            return Ok(());
        }
    }
}

fn tls_connector() -> Result<tokio_rustls::TlsConnector, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
}

async fn connect_tls(
    tls: &tokio_rustls::TlsConnector,
    addr: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, BoxError> {
    let sock = TcpStream::connect(addr).await?;
    sock.set_nodelay(true)?;
    let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())?;
    Ok(tokio::time::timeout(SETUP_TIMEOUT, tls.connect(name, sock))
        .await
        .map_err(|_| "TLS handshake timed out")??)
}

/// Accepts any server certificate (see the module doc), still checking the handshake
/// signatures so the TLS session itself is sound.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_transport_and_stream() {
        let (s, t) = Source::parse("rtmps://127.0.0.1:1935/live/s2").unwrap();
        assert_eq!(t, "rtmps");
        match s {
            Source::Rtmp { url, tls } => {
                assert!(tls);
                assert_eq!(url.tc_url, "rtmps://127.0.0.1:1935/live");
                assert_eq!(url.addr, "127.0.0.1:1935");
            }
            Source::Flv(_) => panic!("rtmps is RTMP"),
        }
        assert_eq!(Source::parse("ws://h:8/live/s1.flv").unwrap().1, "ws-flv");
        assert!(Source::parse("rtmpt://h/live/s").is_err());
        assert_eq!(stream_name("http://h:8/live/s3.flv?x=1"), "s3");
        assert_eq!(stream_name("rtmp://h/live/s0"), "s0");
    }

    #[test]
    fn gaps_are_stretches_without_frames() {
        let mut l = PlayerLog {
            stream: "s".into(),
            transport: "rtmp",
            gap_ms: 2000,
            started_ms: 10_000,
            since_ms: 10_000,
            frames: 0,
            connects: 1,
            failures: 0,
            max_gap_ms: 0,
            gaps: Vec::new(),
            gaps_dropped: 0,
            buckets: vec![0; 3],
            last_error: String::new(),
        };
        l.frame(10_500);
        l.frame(11_000);
        l.frame(15_000); // 4 s without video
        l.note_gap(25_000); // and 10 s to the end
        assert_eq!(l.gaps, vec![(11_000, 15_000), (15_000, 25_000)]);
        assert_eq!(l.max_gap_ms, 10_000);
        assert_eq!(l.buckets, vec![3, 0, 0]);
    }
}
