//! The Prometheus exporter behind `/metrics`: the process-wide recorder, and the copy of the
//! core's stats snapshot and the shared-object hub's counters into it at scrape time (names
//! and recording live in `crate::metrics`).

use std::sync::OnceLock;

use metrics::{counter, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::gateway::StatsSnapshot;
use crate::gateway::shared_objects::SoHubStats;
use crate::metrics::{
    BYTES_IN, BYTES_OUT, CONNECTIONS_REJECTED, MESSAGES_IN, PLAYERS, SHARED_OBJECTS, SO_DROPPED,
    SO_MESSAGES_IN, SO_MESSAGES_OUT, SO_SUBSCRIBERS, STREAMS, STREAMS_PUBLISHING, UPTIME,
};

/// Installs the process-wide recorder once and returns its render handle. Later calls (several
/// gateways in one test process) share it.
pub fn install() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first (an embedding program's); then
        // our series stay empty but nothing breaks.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        crate::metrics::describe();
        handle
    })
}

/// Copies the core's hot-path counters and registry gauges into the recorder.
pub fn refresh(s: &StatsSnapshot) {
    counter!(BYTES_IN).absolute(s.bytes_in);
    counter!(BYTES_OUT).absolute(s.bytes_out);
    counter!(CONNECTIONS_REJECTED).absolute(s.rejected_over_limit);
    counter!(MESSAGES_IN).absolute(s.messages_in);
    gauge!(STREAMS).set(s.streams as f64);
    gauge!(STREAMS_PUBLISHING).set(s.publishing as f64);
    gauge!(PLAYERS).set(s.players as f64);
    gauge!(UPTIME).set(s.uptime.as_secs_f64());
}

/// Copies the shared-object hub's counters (atomics on its request path) and totals.
pub fn refresh_shared_objects(s: &SoHubStats) {
    counter!(SO_MESSAGES_IN).absolute(s.messages_in);
    counter!(SO_MESSAGES_OUT).absolute(s.messages_out);
    counter!(SO_DROPPED).absolute(s.dropped);
    gauge!(SHARED_OBJECTS).set(s.objects as f64);
    gauge!(SO_SUBSCRIBERS).set(s.subscriptions as f64);
}
