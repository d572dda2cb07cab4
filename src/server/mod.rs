//! Listeners and process-wide state: binds the RTMP and HTTP addresses, sniffs what each new
//! connection speaks (RTMP, RTMPT, TLS around either) and hands it to `conn` or the tunnel.

pub mod clients;
pub mod conn;
mod sniff;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::apps::AppManager;
use crate::config::{Config, HttpSection};
use crate::media::Registry;
use crate::rtmp::SessionConfig;
use crate::tls::{TlsError, TlsState};
use crate::tunnel::Tunnel;

/// State every connection shares.
pub struct Shared {
    pub config: Config,
    pub session_config: SessionConfig,
    pub registry: Arc<Registry>,
    pub clients: Arc<clients::Clients>,
    /// Wasm applications (`list`/`reload`/`unload` for the admin API).
    pub apps: Arc<AppManager>,
    /// When the process started, for uptime.
    pub started_at: std::time::Instant,
    next_conn_id: AtomicU64,
    pub stats: Stats,
    /// RTMPT sessions, shared by every listener that serves the tunnel.
    pub tunnel: Arc<Tunnel>,
    /// The TLS acceptor for RTMPS/RTMPTS when a certificate is configured.
    pub tls: TlsState,
    /// Flips to true when the server shuts down; every connection watches it.
    shutdown: tokio::sync::watch::Sender<bool>,
}

/// Process-wide counters (the admin listener will expose these).
#[derive(Default)]
pub struct Stats {
    pub connections: AtomicUsize,
    pub connections_total: AtomicU64,
    pub rejected_over_limit: AtomicU64,
    pub rejected_over_ip_limit: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

impl Shared {
    /// Shared state without Wasm apps (every app is served by the built-in live app). Fails
    /// only when a configured TLS certificate or key cannot be loaded.
    pub fn new(config: Config) -> Result<Arc<Shared>, TlsError> {
        let registry = Registry::new(config.media_config());
        let apps = AppManager::disabled(config.apps.clone(), registry.clone());
        Shared::with_apps(config, registry, apps)
    }

    pub fn with_apps(
        config: Config,
        registry: Arc<Registry>,
        apps: Arc<AppManager>,
    ) -> Result<Arc<Shared>, TlsError> {
        let tls = TlsState::new(config.tls.cert.as_deref(), config.tls.key.as_deref())?;
        Ok(Arc::new(Shared {
            tunnel: Arc::new(Tunnel::new(config.http.clone())),
            tls,
            session_config: config.session_config(),
            registry,
            apps,
            clients: Arc::new(clients::Clients::default()),
            started_at: std::time::Instant::now(),
            config,
            next_conn_id: AtomicU64::new(1),
            stats: Stats::default(),
            shutdown: tokio::sync::watch::channel(false).0,
        }))
    }

    /// Re-reads the TLS certificate and key (SIGHUP, admin API). Live sessions keep theirs.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        self.tls.reload()
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A receiver that sees `true` once shutdown began.
    pub fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}

/// A started gateway: its bound addresses and a handle to stop it.
pub struct Server {
    pub shared: Arc<Shared>,
    pub rtmp_addrs: Vec<SocketAddr>,
    /// Bound RTMPT-only HTTP listeners (the optional default :80 is absent when it failed).
    pub http_addrs: Vec<SocketAddr>,
    /// The admin listener's bound address, when `admin.enabled`.
    pub admin_addr: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Tls(#[from] TlsError),
    #[error("{0}")]
    Admin(#[from] crate::admin::AdminError),
    #[error("{0}")]
    Apps(String),
}

impl Server {
    /// Binds every listener (port 0 picks a free port; see `rtmp_addrs`) and starts accepting.
    pub async fn start(config: Config) -> Result<Server, StartError> {
        Server::start_with_apps(config, |shared| {
            Arc::new(crate::admin::GatewayApps::new(shared.clone()))
        })
        .await
    }

    /// Like [`Server::start`], with another application host behind the admin API's `/apps`
    /// endpoints (tests use [`crate::admin::BuiltinApps`] to see only the built-in live app).
    pub async fn start_with_apps(
        config: Config,
        apps: impl FnOnce(&Arc<Shared>) -> Arc<dyn crate::admin::AppHost>,
    ) -> Result<Server, StartError> {
        crate::metrics::install();
        let registry = Registry::new(config.media_config());
        let manager = AppManager::start(config.apps.clone(), registry.clone())
            .await
            .map_err(StartError::Apps)?;
        let shared = Shared::with_apps(config, registry, manager)?;
        let limit = Arc::new(Semaphore::new(shared.config.rtmp.max_connections));
        let per_ip = Arc::new(PerIp::new(shared.config.rtmp.max_connections_per_ip));
        let mut rtmp_addrs = Vec::new();
        let mut http_addrs = Vec::new();
        let mut tasks = Vec::new();
        if shared.tls.acceptor().is_some() {
            info!("TLS enabled: rtmps:// and rtmpts:// are served on every listener");
        }
        for &addr in &shared.config.http.listen {
            let listener = match TcpListener::bind(addr).await {
                Ok(l) => l,
                // FMS served RTMPT on 80, so the embedded default asks for it; an unprivileged
                // process (or a busy port) must not stop RTMP from starting.
                Err(e) if addr == HttpSection::DEFAULT_LISTEN => {
                    warn!(
                        %addr,
                        error = %e,
                        "cannot listen for RTMPT on {addr}; RTMPT stays available on the RTMP port. \
                         Fix: pass --http 0.0.0.0:8080 (or set http.listen), or grant the binary \
                         CAP_NET_BIND_SERVICE (setcap cap_net_bind_service=+ep wasmgate)"
                    );
                    continue;
                }
                Err(source) => return Err(StartError::Bind { addr, source }),
            };
            let local = listener
                .local_addr()
                .map_err(|source| StartError::Bind { addr, source })?;
            info!(addr = %local, "RTMPT (HTTP) listening");
            http_addrs.push(local);
            tasks.push(tokio::spawn(accept_loop(
                listener,
                shared.clone(),
                limit.clone(),
                Listener::Http,
                per_ip.clone(),
            )));
        }
        tasks.push(tokio::spawn(crate::tunnel::expiry_loop(
            shared.tunnel.clone(),
        )));
        for &addr in &shared.config.rtmp.listen {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })?;
            let local = listener
                .local_addr()
                .map_err(|source| StartError::Bind { addr, source })?;
            info!(addr = %local, "RTMP listening");
            rtmp_addrs.push(local);
            tasks.push(tokio::spawn(accept_loop(
                listener,
                shared.clone(),
                limit.clone(),
                Listener::Rtmp,
                per_ip.clone(),
            )));
        }
        let mut admin_addr = None;
        if shared.config.admin.enabled {
            let admin = crate::admin::start(shared.clone(), apps(&shared)).await?;
            admin_addr = Some(admin.addr);
            tasks.extend(admin.tasks);
        }
        Ok(Server {
            shared,
            rtmp_addrs,
            http_addrs,
            admin_addr,
            tasks,
        })
    }

    /// Stops accepting. Connections already open run until their peers leave.
    pub fn stop_accepting(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }

    /// Graceful shutdown: stop accepting, tell every client (`NetConnection.Connect.Closed`),
    /// and wait up to `grace` for connections to finish. Returns how many were still open.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.stop_accepting();
        self.shared.shutdown.send_replace(true);
        let deadline = tokio::time::Instant::now() + grace;
        while self.shared.stats.connections.load(Ordering::Relaxed) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.shared.stats.connections.load(Ordering::Relaxed)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_accepting();
    }
}

/// What a listener serves: the RTMP port sniffs every protocol, an HTTP port only RTMPT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Listener {
    Rtmp,
    Http,
}

/// Open connections per source address, for `rtmp.max_connections_per_ip`. One short lock per
/// accept and per close; entries go away with their last connection, so the map is bounded by
/// `max_connections`.
struct PerIp {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's slot in [`PerIp`]; released on drop.
struct IpSlot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    fn new(max: usize) -> PerIp {
        PerIp {
            max,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    kind: Listener,
    per_ip: Arc<PerIp>,
) {
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning, as mini-redis does.
                warn!(error = %e, "accept failed; retrying in 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            shared
                .stats
                .rejected_over_limit
                .fetch_add(1, Ordering::Relaxed);
            warn!(%peer, max = shared.config.rtmp.max_connections, "connection limit reached; closing new connection");
            drop(sock);
            continue;
        };
        let Some(slot) = per_ip.try_acquire(peer.ip()) else {
            shared
                .stats
                .rejected_over_ip_limit
                .fetch_add(1, Ordering::Relaxed);
            warn!(%peer, max = per_ip.max, "per-IP connection limit reached; closing new connection");
            drop(sock);
            continue;
        };
        let _ = sock.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            sniff::dispatch(sock, peer, kind, shared).await;
            drop(slot);
            drop(permit);
        });
    }
}
