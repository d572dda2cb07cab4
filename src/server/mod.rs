//! Listeners and process-wide state: binds the configured RTMP addresses, accepts connections
//! within the connection limit and hands each one to the transport-independent driver in `conn`.

pub mod clients;
pub mod conn;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::Config;
use crate::media::Registry;
use crate::rtmp::SessionConfig;

/// State every connection shares.
pub struct Shared {
    pub config: Config,
    pub session_config: SessionConfig,
    pub registry: Arc<Registry>,
    pub clients: Arc<clients::Clients>,
    /// When the process started, for uptime.
    pub started_at: std::time::Instant,
    next_conn_id: AtomicU64,
    pub stats: Stats,
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
    pub fn new(config: Config) -> Arc<Shared> {
        Arc::new(Shared {
            session_config: config.session_config(),
            registry: Registry::new(config.media_config()),
            clients: Arc::new(clients::Clients::default()),
            started_at: std::time::Instant::now(),
            config,
            next_conn_id: AtomicU64::new(1),
            stats: Stats::default(),
        })
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// A started gateway: its bound addresses and a handle to stop it.
pub struct Server {
    pub shared: Arc<Shared>,
    pub rtmp_addrs: Vec<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl Server {
    /// Binds every listener (port 0 picks a free port; see `rtmp_addrs`) and starts accepting.
    pub async fn start(config: Config) -> Result<Server, StartError> {
        let shared = Shared::new(config);
        let limit = Arc::new(Semaphore::new(shared.config.rtmp.max_connections));
        let per_ip = Arc::new(PerIp::new(shared.config.rtmp.max_connections_per_ip));
        let mut rtmp_addrs = Vec::new();
        let mut tasks = Vec::new();
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
                per_ip.clone(),
            )));
        }
        Ok(Server {
            shared,
            rtmp_addrs,
            tasks,
        })
    }

    /// Stops accepting. Connections already open run until their peers leave.
    pub fn stop_accepting(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_accepting();
    }
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
            conn::serve(sock, peer, "rtmp", shared).await;
            drop(slot);
            drop(permit);
        });
    }
}
