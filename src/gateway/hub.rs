//! The gateway core: the state every connection shares and the operations on it (streams,
//! clients, kick, stop a stream, a stats snapshot, shutdown). Transports and views call it.
//!
//! It is a bundle of parts with one job each, all reachable from here: [`Settings`] (the config
//! snapshot), [`Registry`] (streams), [`Clients`] (who is connected), [`AppManager`] (Wasm
//! apps), [`SoHub`] (remote shared objects), [`Counters`] (hot-path counters) and the shutdown
//! signal. It knows nothing of
//! sockets, HTTP, TLS or the admin API; those hold an `Arc<Core>`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tokio::sync::watch;

use super::clients::Clients;
use super::relays::{RelayHooks, RelayStatus};
use super::settings::{Settings, Snapshot};
use super::shared_objects::SoHub;
use super::stats::{Counters, StatsSnapshot};
use crate::apps::AppManager;
use crate::config::Config;
use crate::media::record::Recordings;
use crate::media::vod::Library;
use crate::media::{Registry, StreamKey};
use crate::rtmp::SessionConfig;

/// The reason a client is given when an operator ends it or its stream.
pub const OPERATOR_KICK: &str = "Kicked by the server operator.";

/// The shared state of one gateway.
pub struct Core {
    settings: Settings,
    registry: Arc<Registry>,
    recordings: Arc<Recordings>,
    /// The files being played, indexed once each.
    vod: Arc<Library>,
    clients: Arc<Clients>,
    apps: Arc<AppManager>,
    /// Every instance's shared objects; its limits and folder are read once, here.
    shared_objects: Arc<SoHub>,
    counters: Counters,
    started_at: Instant,
    next_conn_id: AtomicU64,
    /// Flips to true when the gateway shuts down; every connection watches it.
    shutdown: watch::Sender<bool>,
    /// Push and pull relays, set once by the server after the core is built.
    relays: OnceLock<Arc<dyn RelayHooks>>,
}

impl Core {
    /// A core serving `config`, with `recordings` and `apps` built over the same `registry`,
    /// and `shared_objects` (from [`SoHub::from_config`]) the one `apps` was given.
    pub fn new(
        config: Config,
        registry: Arc<Registry>,
        recordings: Arc<Recordings>,
        apps: Arc<AppManager>,
        shared_objects: Arc<SoHub>,
    ) -> Arc<Core> {
        Arc::new(Core {
            shared_objects,
            settings: Settings::new(config),
            registry,
            recordings,
            vod: Arc::default(),
            clients: Arc::new(Clients::default()),
            apps,
            counters: Counters::default(),
            started_at: Instant::now(),
            next_conn_id: AtomicU64::new(1),
            shutdown: watch::channel(false).0,
            relays: OnceLock::new(),
        })
    }

    /// The configuration in force now. Take it once per connection or request, not per
    /// message: a reload may replace it at any time.
    pub fn config(&self) -> Arc<Config> {
        self.settings.snapshot().config.clone()
    }

    /// Protocol settings for a new session.
    pub fn session_config(&self) -> SessionConfig {
        self.settings.snapshot().session.clone()
    }

    /// Puts a validated config in service (the reload's last step; see [`super::reload`]).
    pub(crate) fn install(&self, config: Config) {
        self.registry.set_config(config.media_config());
        self.settings.swap(Snapshot::new(config));
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The files players play, shared by all of them.
    pub fn vod(&self) -> &Arc<Library> {
        &self.vod
    }

    /// The recordings running now.
    pub fn recordings(&self) -> &Arc<Recordings> {
        &self.recordings
    }

    pub fn clients(&self) -> &Arc<Clients> {
        &self.clients
    }

    /// Remote shared objects of every instance (the server runs its tick task).
    pub fn shared_objects(&self) -> &Arc<SoHub> {
        &self.shared_objects
    }

    pub fn apps(&self) -> &Arc<AppManager> {
        &self.apps
    }

    /// Plugs the relay layer in (once; later calls are ignored).
    pub fn set_relays(&self, hooks: Arc<dyn RelayHooks>) {
        let _ = self.relays.set(hooks);
    }

    /// The relay layer, when the server plugged one in.
    pub fn relays(&self) -> Option<&Arc<dyn RelayHooks>> {
        self.relays.get()
    }

    /// Every relay's status (empty without a relay layer).
    pub fn relay_status(&self) -> Vec<RelayStatus> {
        self.relays.get().map(|r| r.list()).unwrap_or_default()
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// When the gateway started: uptime, and the epoch players' drain ticks align to.
    pub fn started_at(&self) -> Instant {
        self.started_at
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Asks client `id` to close with `reason`; false when no such client is connected.
    pub fn kick(&self, id: u64, reason: &str) -> bool {
        match self.clients.get(id) {
            Some(c) => {
                c.kick_because(reason);
                true
            }
            None => false,
        }
    }

    /// Ends a live stream by stopping its source (an RTMP publisher is kicked with `reason`);
    /// its players get `Play.UnpublishNotify`. Returns the source's id, `None` when nobody
    /// publishes `key`.
    pub fn stop_stream(&self, key: &StreamKey, reason: &str) -> Option<u64> {
        let source = self.registry.publisher_of(key)?;
        source.stop(reason);
        Some(source.id())
    }

    /// Counters, clients and streams at this moment.
    pub fn stats(&self) -> StatsSnapshot {
        let mut by_transport: BTreeMap<&'static str, usize> =
            crate::metrics::TRANSPORTS.iter().map(|t| (*t, 0)).collect();
        let clients = self.clients.list();
        for c in &clients {
            *by_transport.entry(c.transport).or_default() += 1;
        }
        let streams = self.registry.stats();
        let c = &self.counters;
        StatsSnapshot {
            uptime: self.started_at.elapsed(),
            clients: clients.len(),
            by_transport,
            connections_total: c.connections_total.load(Ordering::Relaxed),
            rejected_over_limit: c.rejected_over_limit.load(Ordering::Relaxed),
            rejected_over_ip_limit: c.rejected_over_ip_limit.load(Ordering::Relaxed),
            bytes_in: c.bytes_in.load(Ordering::Relaxed),
            bytes_out: c.bytes_out.load(Ordering::Relaxed),
            messages_in: self.registry.messages_in(),
            streams: streams.len(),
            publishing: streams.iter().filter(|s| s.publisher.is_some()).count(),
            players: streams.iter().map(|s| s.players).sum(),
        }
    }

    /// A receiver that sees `true` once shutdown began.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Tells every connection to say goodbye (`NetConnection.Connect.Closed`) and close.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Connections being served now.
    pub fn open_connections(&self) -> usize {
        self.counters.connections.load(Ordering::Relaxed)
    }
}
