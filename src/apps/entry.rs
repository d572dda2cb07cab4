//! A loaded app as the rest of the module shares it: its current compiled module (swapped on
//! reload) and the counters the admin API reports.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use super::engine::Module;

/// Per-app counters (the admin API shows them).
#[derive(Debug, Default)]
pub struct AppStats {
    pub events: AtomicU64,
    pub traps: AtomicU64,
    pub deadlines: AtomicU64,
    pub memory: AtomicU64,
    pub restarts: AtomicU64,
    /// Events answered by the failure policy while an instance waited to be recreated.
    pub backoff: AtomicU64,
    /// Events refused because the instance's queue was full.
    pub busy: AtomicU64,
    pub reloads: AtomicU64,
    pub load_errors: AtomicU64,
}

/// A loaded app: its current module and counters.
pub struct AppEntry {
    pub name: String,
    pub(super) module: Mutex<Arc<Module>>,
    pub stats: AppStats,
}

impl AppEntry {
    pub(super) fn module(&self) -> Arc<Module> {
        lock(&self.module).clone()
    }
}

/// Locks a mutex, recovering the data from a panicked holder (every critical section here is a
/// plain map or slot update, so the data stays consistent).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
