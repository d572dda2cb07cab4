//! The gateway's metric names and named recording functions that the connection driver, the
//! tunnel and the app host call: a facade over the `metrics` crate that imports nothing else.
//!
//! The exporter (the Prometheus recorder and `/metrics`) is the admin view's
//! (`admin/metrics.rs`). Counters that already live in atomics on the hot path (bytes,
//! connection totals, shared-object messages) or in the RTMPT tunnel's own stats are copied into
//! the recorder when `/metrics` is scraped, so reading and writing media costs no extra map
//! lookup. Everything else is recorded where it happens.

use metrics::{counter, describe_counter, describe_gauge, gauge};

/// Transport labels a connection can carry.
pub const TRANSPORTS: [&str; 4] = ["rtmp", "rtmpt", "rtmps", "rtmpts"];

pub const CONNECTIONS: &str = "wasmgate_connections";
pub const CONNECTIONS_TOTAL: &str = "wasmgate_connections_total";
pub const CONNECTIONS_REJECTED: &str = "wasmgate_connections_rejected_total";
pub const BYTES_IN: &str = "wasmgate_bytes_in_total";
pub const BYTES_OUT: &str = "wasmgate_bytes_out_total";
pub const STREAMS: &str = "wasmgate_streams";
pub const STREAMS_PUBLISHING: &str = "wasmgate_streams_publishing";
pub const PLAYERS: &str = "wasmgate_players";
pub const MESSAGES_IN: &str = "wasmgate_media_messages_in_total";
pub const PLAYER_SKIPS: &str = "wasmgate_player_skips_total";
pub const PLAYER_DROPS: &str = "wasmgate_player_drops_total";
pub const HANDSHAKE_ERRORS: &str = "wasmgate_handshake_errors_total";
pub const PROTOCOL_ERRORS: &str = "wasmgate_protocol_errors_total";
pub const KICKS: &str = "wasmgate_kicks_total";
pub const TUNNEL_ERRORS: &str = "wasmgate_tunnel_errors_total";
pub const TUNNEL_SESSIONS: &str = "wasmgate_tunnel_sessions";
pub const TUNNEL_SESSIONS_OPENED: &str = "wasmgate_tunnel_sessions_opened_total";
pub const TUNNEL_SESSIONS_CLOSED: &str = "wasmgate_tunnel_sessions_closed_total";
pub const TUNNEL_SESSIONS_EXPIRED: &str = "wasmgate_tunnel_sessions_expired_total";
pub const TUNNEL_REQUESTS: &str = "wasmgate_tunnel_requests_total";
pub const TUNNEL_BYTES_IN: &str = "wasmgate_tunnel_bytes_in_total";
pub const TUNNEL_BYTES_OUT: &str = "wasmgate_tunnel_bytes_out_total";
pub const GUEST_CALLS: &str = "wasmgate_guest_calls_total";
pub const GUEST_TRAPS: &str = "wasmgate_guest_traps_total";
pub const GUEST_DEADLINES: &str = "wasmgate_guest_deadline_hits_total";
pub const ADMIN_DENIED: &str = "wasmgate_admin_denied_total";
pub const ADMIN_REQUESTS: &str = "wasmgate_admin_requests_total";
pub const VOD_PLAYS: &str = "wasmgate_vod_plays_total";
pub const VOD_SEEKS: &str = "wasmgate_vod_seeks_total";
pub const UPTIME: &str = "wasmgate_uptime_seconds";
pub const CONFIG_RELOADS: &str = "wasmgate_config_reloads_total";
pub const SO_MESSAGES_IN: &str = "wasmgate_shared_object_messages_in_total";
pub const SO_MESSAGES_OUT: &str = "wasmgate_shared_object_messages_out_total";
pub const SO_DROPPED: &str = "wasmgate_shared_object_dropped_total";
pub const SHARED_OBJECTS: &str = "wasmgate_shared_objects";
pub const SO_SUBSCRIBERS: &str = "wasmgate_shared_object_subscribers";
pub const RELAYS: &str = "wasmgate_relays";
pub const RELAY_BYTES: &str = "wasmgate_relay_bytes_total";
pub const RELAY_RECONNECTS: &str = "wasmgate_relay_reconnects_total";

/// Relay kinds (see `gateway::RelayStatus::kind`).
pub const RELAY_KINDS: [&str; 3] = ["push", "pull", "forward"];

/// Describes every series and registers the error series at zero, so dashboards and alerts
/// see them before the first event. Called once, by whoever installs the recorder.
pub fn describe() {
    describe_gauge!(CONNECTIONS, "Open client connections by transport.");
    describe_counter!(
        CONNECTIONS_TOTAL,
        "Client connections accepted by transport."
    );
    describe_counter!(
        CONNECTIONS_REJECTED,
        "Client connections closed on accept because the connection limit was reached."
    );
    describe_counter!(BYTES_IN, "Bytes read from clients.");
    describe_counter!(BYTES_OUT, "Bytes written to clients.");
    describe_gauge!(STREAMS, "Streams with a publisher or a waiting player.");
    describe_gauge!(STREAMS_PUBLISHING, "Streams with a live publisher.");
    describe_gauge!(PLAYERS, "Players attached to streams.");
    describe_counter!(
        MESSAGES_IN,
        "Audio, video and data messages ingested from publishers."
    );
    describe_counter!(
        PLAYER_SKIPS,
        "Times a lagging player skipped ahead to the next keyframe (dropped messages)."
    );
    describe_counter!(
        PLAYER_DROPS,
        "Players disconnected for falling behind too often."
    );
    describe_counter!(
        HANDSHAKE_ERRORS,
        "Connections that failed the RTMP handshake or timed out in it."
    );
    describe_counter!(
        PROTOCOL_ERRORS,
        "Connections dropped for a protocol violation after the handshake."
    );
    describe_counter!(KICKS, "Clients kicked by an operator.");
    describe_counter!(VOD_PLAYS, "Plays of a file (video on demand) started.");
    describe_counter!(VOD_SEEKS, "Seeks in files being played.");
    describe_counter!(
        TUNNEL_ERRORS,
        "RTMPT requests refused, by reason (unknown_session, out_of_order, too_large, ...)."
    );
    describe_gauge!(TUNNEL_SESSIONS, "RTMPT tunnel sessions open.");
    describe_counter!(TUNNEL_SESSIONS_OPENED, "RTMPT tunnel sessions opened.");
    describe_counter!(
        TUNNEL_SESSIONS_CLOSED,
        "RTMPT tunnel sessions ended by /close, by the RTMP side or by a failed pipe."
    );
    describe_counter!(
        TUNNEL_SESSIONS_EXPIRED,
        "RTMPT tunnel sessions freed after http.session_idle_timeout_secs without a request."
    );
    describe_counter!(
        TUNNEL_REQUESTS,
        "RTMPT requests answered, refusals included."
    );
    describe_counter!(TUNNEL_BYTES_IN, "RTMPT request body bytes received.");
    describe_counter!(
        TUNNEL_BYTES_OUT,
        "RTMPT reply body bytes sent (successful requests)."
    );
    describe_counter!(GUEST_CALLS, "Calls into Wasm application guests.");
    describe_counter!(GUEST_TRAPS, "Wasm guest calls that trapped.");
    describe_counter!(
        GUEST_DEADLINES,
        "Wasm guest calls stopped at their deadline."
    );
    describe_counter!(
        ADMIN_DENIED,
        "Admin requests or connections refused, by reason."
    );
    describe_counter!(
        ADMIN_REQUESTS,
        "Admin API requests served, by status class."
    );
    describe_counter!(
        CONFIG_RELOADS,
        "Config reloads (SIGHUP, admin API), applied or refused."
    );
    describe_counter!(
        SO_MESSAGES_IN,
        "Shared-object messages from clients handled by the authority, refused requests included."
    );
    describe_counter!(
        SO_MESSAGES_OUT,
        "Shared-object messages queued to clients (Use replies, statuses, changes)."
    );
    describe_counter!(
        SO_DROPPED,
        "Shared-object messages dropped because a client's queue was full."
    );
    describe_gauge!(SHARED_OBJECTS, "Shared objects loaded, every app instance.");
    describe_gauge!(
        SO_SUBSCRIBERS,
        "Shared-object subscriptions (a client using two objects counts twice)."
    );
    describe_gauge!(UPTIME, "Seconds since the gateway started.");
    describe_gauge!(RELAYS, "Relays running, by kind (push, pull, forward).");
    describe_counter!(
        RELAY_BYTES,
        "Bytes relays wrote to push targets or read from origins, by kind."
    );
    describe_counter!(
        RELAY_RECONNECTS,
        "Relay upstream connections that failed or were lost, by kind."
    );
    for k in RELAY_KINDS {
        gauge!(RELAYS, "kind" => k).set(0.0);
        counter!(RELAY_BYTES, "kind" => k).absolute(0);
        counter!(RELAY_RECONNECTS, "kind" => k).absolute(0);
    }
    // Register the error series at zero so dashboards and alerts see them before the first event.
    for t in TRANSPORTS {
        counter!(HANDSHAKE_ERRORS, "transport" => t).absolute(0);
        gauge!(CONNECTIONS, "transport" => t).set(0.0);
    }
    for reason in ["allowlist", "token", "proxy", "rate"] {
        counter!(ADMIN_DENIED, "reason" => reason).absolute(0);
    }
    for result in ["applied", "refused"] {
        counter!(CONFIG_RELOADS, "result" => result).absolute(0);
    }
    for name in [
        MESSAGES_IN,
        PLAYER_SKIPS,
        PLAYER_DROPS,
        PROTOCOL_ERRORS,
        KICKS,
        VOD_PLAYS,
        VOD_SEEKS,
        GUEST_CALLS,
        GUEST_TRAPS,
        GUEST_DEADLINES,
        SO_MESSAGES_IN,
        SO_MESSAGES_OUT,
        SO_DROPPED,
    ] {
        counter!(name).absolute(0);
    }
    for name in [SHARED_OBJECTS, SO_SUBSCRIBERS] {
        gauge!(name).set(0.0);
    }
}

/// A client connection opened on `transport`.
pub fn connection_opened(transport: &'static str) {
    gauge!(CONNECTIONS, "transport" => transport).increment(1.0);
    counter!(CONNECTIONS_TOTAL, "transport" => transport).increment(1);
}

pub fn connection_closed(transport: &'static str) {
    gauge!(CONNECTIONS, "transport" => transport).decrement(1.0);
}

pub fn handshake_error(transport: &'static str) {
    counter!(HANDSHAKE_ERRORS, "transport" => transport).increment(1);
}

pub fn protocol_error() {
    counter!(PROTOCOL_ERRORS).increment(1);
}

/// A relay of `kind` started (`delta` 1) or stopped (-1).
pub fn relay_gauge(kind: &'static str, delta: f64) {
    gauge!(RELAYS, "kind" => kind).increment(delta);
}

pub fn relay_bytes(kind: &'static str, n: u64) {
    counter!(RELAY_BYTES, "kind" => kind).increment(n);
}

pub fn relay_reconnect(kind: &'static str) {
    counter!(RELAY_RECONNECTS, "kind" => kind).increment(1);
}

pub fn player_skip() {
    counter!(PLAYER_SKIPS).increment(1);
}

pub fn player_dropped() {
    counter!(PLAYER_DROPS).increment(1);
}

pub fn vod_play() {
    counter!(VOD_PLAYS).increment(1);
}

pub fn vod_seek() {
    counter!(VOD_SEEKS).increment(1);
}

pub fn kicked() {
    counter!(KICKS).increment(1);
}

/// For the Wasm app host: one guest call into `app`.
pub fn guest_call(app: &str) {
    counter!(GUEST_CALLS, "app" => app.to_owned()).increment(1);
}

/// For the Wasm app host: a guest call into `app` trapped.
pub fn guest_trap(app: &str) {
    counter!(GUEST_TRAPS, "app" => app.to_owned()).increment(1);
}

/// For the Wasm app host: a guest call into `app` hit its deadline.
pub fn guest_deadline(app: &str) {
    counter!(GUEST_DEADLINES, "app" => app.to_owned()).increment(1);
}

/// An admin connection or request refused: `allowlist`, `token` or `proxy`.
pub fn admin_denied(reason: &'static str) {
    counter!(ADMIN_DENIED, "reason" => reason).increment(1);
}

/// A config reload (SIGHUP or admin API) that was applied or refused.
pub fn config_reload(applied: bool) {
    let result = if applied { "applied" } else { "refused" };
    counter!(CONFIG_RELOADS, "result" => result).increment(1);
}

pub fn admin_request(status: u16) {
    let class = match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    counter!(ADMIN_REQUESTS, "class" => class).increment(1);
}
