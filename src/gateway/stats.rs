//! Process-wide counters kept on the hot path (plain atomics), and the snapshot of them and of
//! the registry and client table that the admin API and `/metrics` render.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::Duration;

/// Counters the listeners and connection drivers bump as things happen.
#[derive(Default)]
pub struct Counters {
    /// Connections being served now (the shutdown grace period waits for zero).
    pub connections: AtomicUsize,
    pub connections_total: AtomicU64,
    pub rejected_over_limit: AtomicU64,
    pub rejected_over_ip_limit: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

/// The gateway at one moment, for views (admin API, metrics, dashboard).
#[derive(Debug, Clone, PartialEq)]
pub struct StatsSnapshot {
    pub uptime: Duration,
    /// Clients in the table (connected, possibly not yet past `connect`).
    pub clients: usize,
    /// Clients by transport label; every label of [`crate::metrics::TRANSPORTS`] is present.
    pub by_transport: BTreeMap<&'static str, usize>,
    pub connections_total: u64,
    pub rejected_over_limit: u64,
    pub rejected_over_ip_limit: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Media messages ingested from all sources since start.
    pub messages_in: u64,
    /// Streams with a publisher or a waiting player.
    pub streams: usize,
    pub publishing: usize,
    pub players: usize,
}
