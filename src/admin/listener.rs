//! The admin listener itself: binds `admin.listen`, closes connections from outside the
//! allowlist before reading a byte, serves HTTP/1.1 (plain or TLS) and samples bandwidth.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, info_span, warn};

use super::allow::{self, DenyLog};
use super::api;
use super::auth::{AdminAuth, AuthCell, AuthReload};
use super::metrics;
use super::state::{AdminDeps, AdminState, BANDWIDTH_HISTORY, Bandwidth, BandwidthSample};
use crate::config::{Config, ConfigError};

/// Why the admin listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin: {0}")]
    Config(#[from] ConfigError),
    #[error("admin TLS: {0}")]
    Tls(String),
    #[error("cannot listen for admin on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running admin listener.
pub struct Admin {
    pub addr: SocketAddr,
    pub tasks: Vec<JoinHandle<()>>,
}

/// Checks the admin rules of `config` (the token file must be readable) without starting.
pub fn check(config: &Config) -> Result<(), AdminError> {
    AdminAuth::for_config(config)?;
    Ok(())
}

/// Binds `admin.listen` and serves it.
pub async fn start(deps: AdminDeps) -> Result<Admin, AdminError> {
    let config = deps.core.config();
    let cfg = &config.admin;
    let auth = Arc::new(AdminAuth::for_config(&config)?);
    let cell = Arc::new(AuthCell(RwLock::new(auth.clone())));
    deps.reloader.add_hook(Arc::new(AuthReload(cell.clone())));
    let state = Arc::new(AdminState {
        prometheus: metrics::install(),
        deny_log: DenyLog::default(),
        lockout: Default::default(),
        bandwidth: Bandwidth::default(),
        apps: deps.apps,
        core: deps.core,
        reloader: deps.reloader,
        tls: deps.tls,
        on_scrape: deps.on_scrape,
        auth: cell,
    });
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
        _ => None,
    };
    let addr = cfg.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| AdminError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| AdminError::Bind { addr, source })?;
    if auth.token.is_none() && !local.ip().is_loopback() {
        warn!(addr = %local, "admin listener is not on loopback and has no token; the allowlist is its only protection");
    }
    info!(addr = %local, allow = ?cfg.allow, auth = auth.token.is_some(), tls = tls.is_some(), "admin listening");
    let tasks = vec![
        tokio::spawn(accept_loop(listener, state.clone(), tls)),
        tokio::spawn(sample_bandwidth(state)),
    ];
    Ok(Admin { addr: local, tasks })
}

/// Loads the PEM certificate chain and key into a rustls acceptor (ring provider, HTTP/1.1).
fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, AdminError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| AdminError::Tls(format!("admin.tls_cert {}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(AdminError::Tls(format!(
            "admin.tls_cert {}: no certificate in the file",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| AdminError::Tls(format!("admin.tls_key {}: {e}", key.display())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| AdminError::Tls(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| AdminError::Tls(format!("admin.tls_cert/tls_key: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<AdminState>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    // admin.max_connections sizes this once (restart-only); the timeout and the allowlist
    // are read per accept so a config reload applies to the next connection.
    let limit = Arc::new(Semaphore::new(state.core.config().admin.max_connections));
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "admin accept failed; retrying in 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // The allowlist decides before a single byte is read. A trusted proxy is let in here;
        // its forwarded client address is judged per request.
        let ip = allow::normalise(peer.ip());
        let auth = state.auth.get();
        if !auth.allow.contains(ip) && !auth.trusted.contains(ip) {
            crate::metrics::admin_denied("allowlist");
            if let Some(suppressed) = state.deny_log.admit() {
                warn!(%peer, suppressed, "admin connection from outside the allowlist closed");
            }
            drop(sock);
            continue;
        }
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            warn!(%peer, "admin connection limit reached; closing");
            continue;
        };
        let timeout = Duration::from_secs(state.core.config().admin.request_timeout_secs);
        let state = state.clone();
        let tls = tls.clone();
        tokio::spawn(
            async move {
                match tls {
                    None => serve_http(sock, peer, state, timeout).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(timeout, acceptor.accept(sock)).await {
                            Ok(Ok(stream)) => serve_http(stream, peer, state, timeout).await,
                            Ok(Err(e)) => debug!(error = %e, "admin TLS handshake failed"),
                            Err(_) => debug!("admin TLS handshake timed out"),
                        }
                    }
                }
                drop(permit);
            }
            .instrument(info_span!("admin", %peer)),
        );
    }
}

/// Serves HTTP/1.1 on one accepted (and allowed) connection, plain or TLS.
async fn serve_http<I>(io: I, peer: SocketAddr, state: Arc<AdminState>, timeout: Duration)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(api::handle(&state, peer, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(io), svc);
    if let Err(e) = conn.await {
        debug!(error = %e, "admin connection ended with an error");
    }
}

/// Samples the byte counters once a second for the current-bandwidth figures.
async fn sample_bandwidth(state: Arc<AdminState>) {
    let stats = state.core.counters();
    let mut last = (
        stats.bytes_in.load(Ordering::Relaxed),
        stats.bytes_out.load(Ordering::Relaxed),
        tokio::time::Instant::now(),
    );
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = tokio::time::Instant::now();
        let (i, o) = (
            stats.bytes_in.load(Ordering::Relaxed),
            stats.bytes_out.load(Ordering::Relaxed),
        );
        let secs = now.duration_since(last.2).as_secs_f64().max(0.001);
        let rate = |a: u64, b: u64| (a.saturating_sub(b) as f64 * 8.0 / secs) as u64;
        let sample = BandwidthSample {
            t: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            in_bps: rate(i, last.0),
            out_bps: rate(o, last.1),
        };
        let bw = &state.bandwidth;
        bw.in_bps.store(sample.in_bps, Ordering::Relaxed);
        bw.out_bps.store(sample.out_bps, Ordering::Relaxed);
        {
            let mut h = bw.history.lock().unwrap_or_else(|p| p.into_inner());
            if h.len() == BANDWIDTH_HISTORY {
                h.pop_front();
            }
            h.push_back(sample);
        }
        last = (i, o, now);
        state.prometheus.run_upkeep();
    }
}
