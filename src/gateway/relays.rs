//! The seam between connections and RTMP relays: the driver tells [`RelayHooks`] about local
//! publishes and plays, and views read [`RelayStatus`]; the relay layer above implements it.
//!
//! The core holds the hooks as a trait object so it never imports the relay layer (which
//! needs the RTMP client, a layer above the core).

use crate::media::StreamKey;

/// What a relay is doing now, for the admin API, metrics and the dashboard.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RelayStatus {
    pub id: u64,
    /// `push` (a published stream sent to a target), `pull` (an edge playing from an origin)
    /// or `forward` (a publish on an edge sent to the origin).
    pub kind: &'static str,
    /// `app/instance/name` of the local stream.
    pub stream: String,
    /// The upstream URL in use, without its query (tokens stay private).
    pub url: String,
    /// `connecting`, `live`, `backoff` or `stopped`.
    pub state: &'static str,
    /// Bytes written to (push) or read from (pull) the upstream, over every connection.
    pub bytes: u64,
    pub reconnects: u64,
    pub last_error: Option<String>,
}

/// What the relay layer does when local streams start.
pub trait RelayHooks: Send + Sync {
    /// A local publisher of `key` went live; `query` is its stream query, `hops` the relay
    /// hops of its connection (0 for an encoder). Starts the push relays its app has.
    fn published(&self, key: &StreamKey, query: &str, hops: u32);

    /// A local player wants `key`, which nobody publishes here; starts the pull relay its
    /// app has (one per stream, shared with every later player).
    fn wanted(&self, key: &StreamKey, query: &str, hops: u32);

    /// Every relay, ordered by id.
    fn list(&self) -> Vec<RelayStatus>;
}

/// The connect argument that carries a relay's hop count: an AMF0 object
/// `{ wasmgateRelayHops: N }` after the command object, which other servers ignore.
pub const HOPS_ARG: &str = "wasmgateRelayHops";
