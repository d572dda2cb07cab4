//! Listeners and wiring: builds the gateway core, binds the RTMP and HTTP addresses, starts
//! the tunnel, TLS and the admin listener around the core, and connects their reload hooks.
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | [`Server`]: start (what is built, in which order), stop, graceful shutdown |
//! | `listen.rs` | accept loops and connection admission (total and per-IP limits) |
//! | `sniff.rs` | tells RTMP, RTMPT and TLS apart and hands each to the driver or the tunnel |

mod http;
mod listen;
mod proxy_header;
mod sniff;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::admin::{AdminDeps, AppHost, GatewayApps};
use crate::apps::AppManager;
use crate::config::{Config, HttpSection};
use crate::gateway::{Core, Prepared, ReloadHook, Reloader, SoHub};
use crate::media::Registry;
use crate::media::record::Recordings;
use crate::state::MemoryStore;
use crate::tls::{PreparedTls, TlsError, TlsState};
use crate::tunnel::{Tunnel, TunnelReload};
use listen::{Admission, accept_loop};
use sniff::{Endpoints, Listener};

/// A started gateway: its parts, its bound addresses and a handle to stop it.
pub struct Server {
    /// The gateway core: streams, clients, apps, config snapshot, counters.
    pub core: Arc<Core>,
    /// Re-reads the config (SIGHUP, the admin API); set its source with
    /// [`Reloader::set_source`].
    pub reloader: Arc<Reloader>,
    /// RTMPT sessions, shared by every listener that serves the tunnel.
    pub tunnel: Arc<Tunnel>,
    /// The RTMPS/RTMPTS certificate when one is configured.
    pub tls: Arc<TlsState>,
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

/// Re-reads the RTMPS/RTMPTS certificate and key on every reload; live sessions keep theirs.
struct TlsReload(Arc<TlsState>);

impl ReloadHook for TlsReload {
    fn name(&self) -> &'static str {
        "TLS"
    }

    fn prepare(&self, new: &Config, _: &[String]) -> Result<Prepared, String> {
        let prepared = PreparedTls::load(new.tls.cert.as_deref(), new.tls.key.as_deref())
            .map_err(|e| e.to_string())?;
        let reloaded = prepared.is_enabled();
        let tls = self.0.clone();
        let mut p = Prepared::new(move || tls.install(prepared));
        p.reloaded = reloaded;
        Ok(p)
    }

    fn refresh(&self) -> Result<bool, String> {
        match self.0.reload() {
            Ok(()) => Ok(true),
            Err(TlsError::NotConfigured) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Server {
    /// Binds every listener (port 0 picks a free port; see `rtmp_addrs`) and starts accepting.
    pub async fn start(config: Config) -> Result<Server, StartError> {
        Server::start_with_apps(config, |core| Arc::new(GatewayApps::new(core.clone()))).await
    }

    /// Like [`Server::start`], with another application host behind the admin API's `/apps`
    /// endpoints (tests use [`crate::admin::BuiltinApps`] to see only the built-in live app).
    pub async fn start_with_apps(
        config: Config,
        apps: impl FnOnce(&Arc<Core>) -> Arc<dyn AppHost>,
    ) -> Result<Server, StartError> {
        // Before anything records a metric (the app host counts guest calls).
        crate::admin::metrics::install();
        // What can fail on bad files fails before anything is bound.
        let tls = Arc::new(TlsState::new(
            config.tls.cert.as_deref(),
            config.tls.key.as_deref(),
        )?);
        crate::admin::check(&config)?;
        let registry = Registry::new(config.media_config());
        // Recordings a killed gateway left unfinished are finished before anything can publish.
        let record_dir = config.media.record_dir.clone();
        if let Err(e) =
            tokio::task::spawn_blocking(move || crate::media::record::repair_dir(&record_dir)).await
        {
            tracing::error!(error = %e, "repairing unfinished recordings panicked");
        }
        // In-process state today; a shared store (Redis) is another `StateStore` handed in here.
        let state = Arc::new(MemoryStore::default());
        let recordings = Recordings::new(registry.clone());
        let shared_objects = Arc::new(SoHub::from_config(&config.shared_objects));
        let manager = AppManager::start(
            config.apps.clone(),
            registry.clone(),
            recordings.clone(),
            state,
            shared_objects.clone(),
        )
        .await
        .map_err(StartError::Apps)?;
        let tunnel = Arc::new(Tunnel::new(config.http.clone()));
        let core = Core::new(config, registry, recordings, manager, shared_objects);
        core.set_relays(Arc::new(crate::relay::Relays::new(&core)));
        // Not in `tasks`: it keeps delivering and saving while connections close at shutdown
        // (`shutdown` ticks once more at the end); it ends with the runtime.
        tokio::spawn(core.shared_objects().clone().run());
        let reloader = Reloader::new(core.clone());
        reloader.add_hook(Arc::new(TunnelReload(tunnel.clone())));
        reloader.add_hook(Arc::new(TlsReload(tls.clone())));

        let config = core.config();
        let to = Endpoints {
            core: core.clone(),
            tunnel: tunnel.clone(),
            tls: tls.clone(),
        };
        let admission = Arc::new(Admission::default());
        let mut rtmp_addrs = Vec::new();
        let mut http_addrs = Vec::new();
        let mut tasks = Vec::new();
        if tls.acceptor().is_some() {
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
                to.clone(),
                admission.clone(),
                Listener::Http,
            )));
        }
        tasks.push(tokio::spawn(crate::tunnel::expiry_loop(tunnel.clone())));
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
                to.clone(),
                admission.clone(),
                Listener::Rtmp,
            )));
        }
        let mut admin_addr = None;
        if config.admin.enabled {
            let scrape_tunnel = tunnel.clone();
            let admin = crate::admin::start(AdminDeps {
                apps: apps(&core),
                core: core.clone(),
                reloader: reloader.clone(),
                tls: tls.clone(),
                on_scrape: vec![Box::new(move || scrape_tunnel.export_metrics())],
            })
            .await?;
            admin_addr = Some(admin.addr);
            tasks.extend(admin.tasks);
        }
        Ok(Server {
            core,
            reloader,
            tunnel,
            tls,
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
        self.core.begin_shutdown();
        let deadline = tokio::time::Instant::now() + grace;
        while self.core.open_connections() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Changes of the last clients, and persistent objects they left, reach the store once
        // their shared-object workers have released them.
        let so = self.core.shared_objects();
        while so.attached() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        so.tick_once().await;
        self.core.open_connections()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_accepting();
    }
}
