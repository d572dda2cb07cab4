//! A relay's row in the relay table: its live status (shared by its task and the admin API)
//! and the registration that takes it out of the table when the task ends.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::{info, warn};

use crate::config::RelayUrl;
use crate::gateway::RelayStatus;
use crate::media::StreamKey;

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One relay's live status, shared between its task and the admin API.
pub(super) struct Entry {
    pub(super) id: u64,
    pub(super) kind: &'static str,
    pub(super) stream: StreamKey,
    pub(super) url: Mutex<String>,
    pub(super) state: Mutex<&'static str>,
    pub(super) bytes: AtomicU64,
    pub(super) reconnects: AtomicU64,
    pub(super) last_error: Mutex<Option<String>>,
}

impl Entry {
    pub(super) fn set_state(&self, state: &'static str) {
        *lock(&self.state) = state;
    }

    pub(super) fn set_url(&self, url: &RelayUrl) {
        *lock(&self.url) = url.display();
    }

    pub(super) fn add_bytes(&self, n: u64) {
        if n > 0 {
            self.bytes.fetch_add(n, Ordering::Relaxed);
            crate::metrics::relay_bytes(self.kind, n);
        }
    }

    /// A connection failed or was lost: counted, and its reason kept for the admin API.
    pub(super) fn failed(&self, error: String) {
        warn!(relay = self.id, kind = self.kind, stream = %self.stream, url = %lock(&self.url), %error, "relay upstream failed; reconnecting");
        self.reconnects.fetch_add(1, Ordering::Relaxed);
        crate::metrics::relay_reconnect(self.kind);
        *lock(&self.last_error) = Some(error);
    }

    pub(super) fn status(&self) -> RelayStatus {
        RelayStatus {
            id: self.id,
            kind: self.kind,
            stream: self.stream.to_string(),
            url: lock(&self.url).clone(),
            state: *lock(&self.state),
            bytes: self.bytes.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            last_error: lock(&self.last_error).clone(),
        }
    }
}

/// What identifies a running relay: pushes by stream and first URL, pulls by stream.
pub(super) type RelayKey = (StreamKey, &'static str, String);

/// Every running relay, by id, and the keys that are taken.
#[derive(Default)]
pub(super) struct Table {
    pub(super) entries: Mutex<BTreeMap<u64, Arc<Entry>>>,
    pub(super) running: Mutex<HashSet<RelayKey>>,
}

/// Takes a finished relay out of the table and the running set.
pub(super) struct Registration {
    pub(super) table: Arc<Table>,
    pub(super) key: RelayKey,
    pub(super) entry: Arc<Entry>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.table.entries).remove(&self.entry.id);
        lock(&self.table.running).remove(&self.key);
        crate::metrics::relay_gauge(self.entry.kind, -1.0);
        info!(relay = self.entry.id, kind = self.entry.kind, stream = %self.entry.stream, "relay stopped");
    }
}
