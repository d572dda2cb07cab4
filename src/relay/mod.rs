//! RTMP relays between nodes: push relays send each local publish to other servers, pull
//! relays make this node an edge that plays streams from an origin for its local players.
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | [`Relays`]: the [`RelayHooks`] the driver calls; one task per relay |
//! | `entry.rs` | the relay table: each relay's status and its registration |
//! | `push.rs` | a push (or an edge's forward): a tap on the stream, published upstream |
//! | `pull.rs` | a pull: one upstream play per stream, published locally as a [`StreamSource`] |
//! | `upstream.rs` | one upstream connection over the sans-IO client; backoff |
//!
//! Every relay is a task of its own with bounded state: a push reads the stream's ring like a
//! player (a slow or dead target skips to the next keyframe, the publisher never waits), a pull
//! is one publisher for any number of local players.
//!
//! [`StreamSource`]: crate::media::StreamSource

mod entry;
mod pull;
mod push;
mod upstream;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tracing::{info, warn};

use crate::config::{Config, EdgePublish, RelayUrl};
use crate::gateway::{Core, RelayHooks, RelayStatus};
use crate::media::StreamKey;
use crate::rtmp::command::DEFAULT_INSTANCE;
use entry::{Entry, Registration, RelayKey, Table, lock};
use upstream::Dial;

/// The relay layer of one gateway.
pub struct Relays {
    core: Weak<Core>,
    table: Arc<Table>,
    /// Built on the first `rtmps://` upstream.
    tls: OnceLock<Option<tokio_rustls::TlsConnector>>,
}

impl Relays {
    /// The relay layer for `core`; plug it in with [`Core::set_relays`].
    pub fn new(core: &Arc<Core>) -> Arc<Relays> {
        Arc::new(Relays {
            core: Arc::downgrade(core),
            table: Arc::default(),
            tls: OnceLock::new(),
        })
    }

    /// Claims `key` for a new relay; `None` when one runs already.
    fn register(
        self: &Arc<Self>,
        core: &Core,
        key: RelayKey,
        first_url: &RelayUrl,
    ) -> Option<Registration> {
        if !lock(&self.table.running).insert(key.clone()) {
            return None;
        }
        let entry = Arc::new(Entry {
            id: core.next_conn_id(),
            kind: key.1,
            stream: key.0.clone(),
            url: Mutex::new(first_url.display()),
            state: Mutex::new("connecting"),
            bytes: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            last_error: Mutex::new(None),
        });
        lock(&self.table.entries).insert(entry.id, entry.clone());
        crate::metrics::relay_gauge(entry.kind, 1.0);
        Some(Registration {
            table: self.table.clone(),
            key,
            entry,
        })
    }

    fn dial(&self, config: &Config, urls: &[RelayUrl], hops: u32) -> Dial {
        let r = &config.relay;
        let tls = if urls.iter().any(|u| u.tls) {
            self.tls
                .get_or_init(|| upstream::tls_for(r.tls_ca_file.as_deref()))
                .clone()
        } else {
            None
        };
        Dial {
            timeout: Duration::from_millis(r.connect_timeout_ms),
            write_timeout: Duration::from_secs(config.rtmp.write_timeout_secs),
            hops,
            tls,
        }
    }

    /// Starts a push of `key` to `urls` (tried in failover order) unless one runs.
    fn start_push(
        self: &Arc<Self>,
        core: &Arc<Core>,
        kind: &'static str,
        key: &StreamKey,
        urls: &[String],
        query: &str,
        hops: u32,
    ) {
        let config = core.config();
        let urls: Vec<RelayUrl> = urls
            .iter()
            .filter_map(|u| RelayUrl::parse(u).ok())
            .map(|u| for_stream(u, key))
            .collect();
        let Some(first) = urls.first() else { return };
        let Some(reg) = self.register(core, (key.clone(), kind, first.display()), first) else {
            return;
        };
        info!(relay = reg.entry.id, kind, stream = %key, url = %first.display(), "relay started");
        let job = push::Push {
            core: core.clone(),
            dial: self.dial(&config, &urls, hops + 1),
            backoff: backoff(&config),
            urls,
            key: key.clone(),
            query: query.to_owned(),
        };
        tokio::spawn(job.run(reg));
    }
}

/// An upstream URL for a stream of a non-default instance: `app` becomes `app/instance`
/// unless the URL names an instance itself.
fn for_stream(mut url: RelayUrl, key: &StreamKey) -> RelayUrl {
    if !url.app.contains('/') && key.instance != DEFAULT_INSTANCE {
        url.app = format!("{}/{}", url.app, key.instance);
    }
    url
}

fn backoff(config: &Config) -> upstream::Backoff {
    upstream::Backoff::new(
        Duration::from_millis(config.relay.backoff_initial_ms),
        Duration::from_millis(config.relay.backoff_max_ms),
    )
}

impl RelayHooks for Arc<Relays> {
    fn published(&self, key: &StreamKey, query: &str, hops: u32) {
        let Some(core) = self.core.upgrade() else {
            return;
        };
        let config = core.config();
        let r = &config.relay;
        let targets = r.push_targets(&key.app);
        let forward = r
            .pull_rule(&key.app)
            .filter(|p| p.mode == EdgePublish::Forward);
        if targets.is_empty() && forward.is_none() {
            return;
        }
        if hops >= r.max_hops {
            warn!(stream = %key, hops, max_hops = r.max_hops, "not relaying: the stream came over the most relay hops allowed (relay.max_hops)");
            return;
        }
        for t in targets {
            self.start_push(&core, "push", key, std::slice::from_ref(&t), query, hops);
        }
        if let Some(rule) = forward {
            self.start_push(&core, "forward", key, &rule.origins, query, hops);
        }
    }

    fn wanted(&self, key: &StreamKey, query: &str, hops: u32) {
        let Some(core) = self.core.upgrade() else {
            return;
        };
        let config = core.config();
        let r = &config.relay;
        let Some(rule) = r.pull_rule(&key.app) else {
            return;
        };
        if hops >= r.max_hops {
            warn!(stream = %key, hops, max_hops = r.max_hops, "not pulling: the player came over the most relay hops allowed (relay.max_hops)");
            return;
        }
        let urls: Vec<RelayUrl> = rule
            .origins
            .iter()
            .filter_map(|u| RelayUrl::parse(u).ok())
            .map(|u| for_stream(u, key))
            .collect();
        let Some(first) = urls.first() else { return };
        let Some(reg) = self.register(&core, (key.clone(), "pull", String::new()), first) else {
            return;
        };
        info!(relay = reg.entry.id, stream = %key, origin = %first.display(), "pull relay started");
        let job = pull::Pull {
            source: Arc::new(pull::PullSource::new(reg.entry.id)),
            core: core.clone(),
            dial: self.dial(&config, &urls, hops + 1),
            backoff: backoff(&config),
            idle: Duration::from_millis(rule.idle_timeout_ms),
            urls,
            key: key.clone(),
            query: query.to_owned(),
        };
        tokio::spawn(job.run(reg));
    }

    fn list(&self) -> Vec<RelayStatus> {
        lock(&self.table.entries)
            .values()
            .map(|e| e.status())
            .collect()
    }
}
