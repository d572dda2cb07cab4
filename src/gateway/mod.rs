//! The gateway core: the state every connection shares (config snapshot, streams, clients,
//! apps, counters) and the operations on it, below every transport, listener and view.
//!
//! | part | file | job |
//! |---|---|---|
//! | [`Core`] | `hub.rs` | owns the parts below; kick, stop a stream, stats, shutdown |
//! | [`Settings`] | `settings.rs` | the config snapshot a reload swaps whole |
//! | [`Clients`] | `clients.rs` | who is connected, byte counters, the kick switch |
//! | [`SoHub`] | `shared_objects.rs` | the shared-object authority, client queues, tick, store |
//! | [`Counters`], [`StatsSnapshot`] | `stats.rs` | hot-path counters and what views render |
//! | [`Reloader`] | `reload.rs` | re-reads the config, runs [`ReloadHook`]s, swaps the snapshot |
//! | [`RelayHooks`] | `relays.rs` | where publishes and plays reach RTMP relays; their status |
//!
//! Layers above plug in without the core importing them: a transport drives connections with
//! an `Arc<Core>`, a view reads [`Core::stats`], and state derived from the config outside the
//! core (TLS, the tunnel, the admin allowlist) registers a [`ReloadHook`].

pub mod clients;
pub mod hub;
pub mod relays;
pub mod reload;
pub mod settings;
pub mod shared_objects;
pub mod stats;

pub use clients::{ClientEntry, ClientGuard, Clients};
pub use hub::{Core, OPERATOR_KICK};
pub use relays::{HOPS_ARG, RelayHooks, RelayStatus};
pub use reload::{ConfigSource, Prepared, ReloadError, ReloadHook, ReloadReport, Reloader};
pub use settings::{Settings, Snapshot};
pub use shared_objects::{SoHub, SoLink};
pub use stats::{Counters, StatsSnapshot};
