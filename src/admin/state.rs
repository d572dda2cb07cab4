//! What the admin listener's handlers share: the gateway core and the other handles it was
//! given, the auth rules in force, the denial log and the bandwidth samples.

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use metrics_exporter_prometheus::PrometheusHandle;

use super::allow::DenyLog;
use super::apps::AppHost;
use super::auth::AuthCell;
use super::lockout::Lockout;
use crate::gateway::{Core, Reloader};
use crate::tls::TlsState;

/// What the admin listener is given by whoever wires the gateway.
pub struct AdminDeps {
    pub core: Arc<Core>,
    /// Answers the `/apps` endpoints.
    pub apps: Arc<dyn AppHost>,
    /// `POST /config/reload`; the admin rules register a hook on it.
    pub reloader: Arc<Reloader>,
    /// `POST /tls/reload` re-reads the RTMPS/RTMPTS certificate.
    pub tls: Arc<TlsState>,
    /// Run before `/metrics` renders, for counters kept outside the core (the tunnel's).
    pub on_scrape: Vec<Box<dyn Fn() + Send + Sync>>,
}

/// Everything request handlers need.
pub(crate) struct AdminState {
    pub(super) core: Arc<Core>,
    pub(super) apps: Arc<dyn AppHost>,
    pub(super) reloader: Arc<Reloader>,
    pub(super) tls: Arc<TlsState>,
    pub(super) on_scrape: Vec<Box<dyn Fn() + Send + Sync>>,
    pub(super) auth: Arc<AuthCell>,
    pub(super) prometheus: &'static PrometheusHandle,
    pub(super) deny_log: DenyLog,
    /// Addresses locked out after too many wrong tokens.
    pub(super) lockout: Lockout,
    pub(super) bandwidth: Bandwidth,
}

/// Bits per second in and out over the last sample interval, written by the sampler task, and
/// the last [`BANDWIDTH_HISTORY`] samples so a freshly opened dashboard can draw its graph.
#[derive(Default)]
pub(super) struct Bandwidth {
    pub(super) in_bps: AtomicU64,
    pub(super) out_bps: AtomicU64,
    pub(super) history: Mutex<VecDeque<BandwidthSample>>,
}

/// Samples kept (one a second).
pub(super) const BANDWIDTH_HISTORY: usize = 120;

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(super) struct BandwidthSample {
    /// Unix time in seconds.
    pub(super) t: u64,
    pub(super) in_bps: u64,
    pub(super) out_bps: u64,
}
