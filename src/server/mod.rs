//! Listeners and process-wide state: binds the RTMP and HTTP addresses, sniffs what each new
//! connection speaks (RTMP, RTMPT, TLS around either) and hands it to `conn` or the tunnel.

pub mod clients;
pub mod conn;
mod sniff;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::admin::AdminAuth;
use crate::apps::AppManager;
use crate::config::{Config, ConfigError, HttpSection};
use crate::media::Registry;
use crate::rtmp::SessionConfig;
use crate::tls::{TlsError, TlsState};
use crate::tunnel::Tunnel;

/// State every connection shares.
pub struct Shared {
    /// The settings a config reload swaps as one unit; read through [`Shared::config`],
    /// [`Shared::session_config`] and [`Shared::admin_auth`].
    live: RwLock<Arc<Live>>,
    /// Where a reload reads the config from (`--config` plus the command line), if anywhere.
    config_source: OnceLock<crate::reload::ConfigSource>,
    /// One reload at a time (SIGHUP and the admin API may race).
    pub(crate) reload_lock: Mutex<()>,
    /// Connections open on the RTMP and HTTP listeners, for `rtmp.max_connections`.
    slots: Arc<Slots>,
    /// Open connections per source address, for `rtmp.max_connections_per_ip`.
    per_ip: Arc<PerIp>,
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

/// What a reload replaces at once. A connection takes one snapshot when it starts.
pub struct Live {
    pub config: Arc<Config>,
    pub session: SessionConfig,
    pub admin: Arc<AdminAuth>,
}

impl Live {
    /// Derives everything from `config`; fails when the admin token file cannot be read.
    pub fn new(config: Config) -> Result<Live, ConfigError> {
        let admin = if config.admin.enabled {
            AdminAuth::from_config(&config.admin)?
        } else {
            AdminAuth::default()
        };
        Ok(Live {
            session: config.session_config(),
            config: Arc::new(config),
            admin: Arc::new(admin),
        })
    }
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
    /// when a configured TLS certificate or key, or the admin token file, cannot be read.
    pub fn new(config: Config) -> Result<Arc<Shared>, StartError> {
        let registry = Registry::new(config.media_config());
        let apps = AppManager::disabled(config.apps.clone(), registry.clone());
        Shared::with_apps(config, registry, apps)
    }

    pub fn with_apps(
        config: Config,
        registry: Arc<Registry>,
        apps: Arc<AppManager>,
    ) -> Result<Arc<Shared>, StartError> {
        let tls = TlsState::new(config.tls.cert.as_deref(), config.tls.key.as_deref())?;
        let live = Live::new(config).map_err(crate::admin::AdminError::Config)?;
        Ok(Arc::new(Shared {
            tunnel: Arc::new(Tunnel::new(live.config.http.clone())),
            tls,
            slots: Arc::new(Slots::default()),
            per_ip: Arc::new(PerIp::default()),
            live: RwLock::new(Arc::new(live)),
            config_source: OnceLock::new(),
            reload_lock: Mutex::new(()),
            registry,
            apps,
            clients: Arc::new(clients::Clients::default()),
            started_at: std::time::Instant::now(),
            next_conn_id: AtomicU64::new(1),
            stats: Stats::default(),
            shutdown: tokio::sync::watch::channel(false).0,
        }))
    }

    /// Re-reads the TLS certificate and key (SIGHUP, admin API). Live sessions keep theirs.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        self.tls.reload()
    }

    fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The configuration in force now. Take it once per connection or request, not per
    /// message: a reload may replace it at any time.
    pub fn config(&self) -> Arc<Config> {
        self.live().config.clone()
    }

    /// Protocol settings for a new session.
    pub fn session_config(&self) -> SessionConfig {
        self.live().session.clone()
    }

    /// The admin listener's allowlist, trusted proxies and token in force now.
    pub fn admin_auth(&self) -> Arc<AdminAuth> {
        self.live().admin.clone()
    }

    /// Puts a validated config and everything derived from it in service at once (reload).
    /// Infallible on purpose: whatever can fail was done before.
    pub(crate) fn install(&self, live: Live, tls: Option<crate::tls::PreparedTls>) {
        self.registry.set_config(live.config.media_config());
        self.tunnel.set_config(live.config.http.clone());
        if let Some(tls) = tls {
            self.tls.install(tls);
        }
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(live);
    }

    /// Sets where [`Shared::reload_config`] reads from: `--config` plus the command line in
    /// the binary. Only the first call counts.
    pub fn set_config_source(&self, source: crate::reload::ConfigSource) {
        let _ = self.config_source.set(source);
    }

    pub(crate) fn config_source(&self) -> Option<&crate::reload::ConfigSource> {
        self.config_source.get()
    }

    /// Re-reads the config file (SIGHUP, `POST /api/v1/config/reload`) and applies what can
    /// change live; see [`crate::reload`].
    pub fn reload_config(&self) -> Result<crate::reload::ReloadReport, crate::reload::ReloadError> {
        crate::reload::reload(self)
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
        let config = shared.config();
        let mut rtmp_addrs = Vec::new();
        let mut http_addrs = Vec::new();
        let mut tasks = Vec::new();
        if shared.tls.acceptor().is_some() {
            info!("TLS enabled: rtmps:// and rtmpts:// are served on every listener");
        }
        for &addr in &config.http.listen {
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
                Listener::Http,
            )));
        }
        tasks.push(tokio::spawn(crate::tunnel::expiry_loop(
            shared.tunnel.clone(),
        )));
        for &addr in &config.rtmp.listen {
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
                Listener::Rtmp,
            )));
        }
        let mut admin_addr = None;
        if config.admin.enabled {
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

/// Connections open on the RTMP and HTTP listeners. A counter rather than a semaphore so a
/// reload can move `rtmp.max_connections` either way: lowering it below the number open
/// refuses new connections until enough have left, and never closes anyone.
#[derive(Default)]
struct Slots {
    open: AtomicUsize,
}

/// One connection's place in [`Slots`]; released on drop.
struct Slot(Arc<Slots>);

impl Slots {
    fn try_acquire(self: &Arc<Self>, max: usize) -> Option<Slot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Open connections per source address, for `rtmp.max_connections_per_ip`. One short lock per
/// accept and per close; entries go away with their last connection, so the map is bounded by
/// `max_connections`. The limit is passed per accept, so a reload applies to the next one.
#[derive(Default)]
struct PerIp {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's slot in [`PerIp`]; released on drop.
struct IpSlot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    fn try_acquire(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= max {
            if *n == 0 {
                open.remove(&ip);
            }
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

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, kind: Listener) {
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
        // The limits in force now: a reload applies to the next accept.
        let limits = shared.config();
        let (max, max_per_ip) = (
            limits.rtmp.max_connections,
            limits.rtmp.max_connections_per_ip,
        );
        let Some(permit) = shared.slots.try_acquire(max) else {
            shared
                .stats
                .rejected_over_limit
                .fetch_add(1, Ordering::Relaxed);
            warn!(%peer, max, "connection limit reached; closing new connection");
            drop(sock);
            continue;
        };
        let Some(slot) = shared.per_ip.try_acquire(peer.ip(), max_per_ip) else {
            shared
                .stats
                .rejected_over_ip_limit
                .fetch_add(1, Ordering::Relaxed);
            warn!(%peer, max = max_per_ip, "per-IP connection limit reached; closing new connection");
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
