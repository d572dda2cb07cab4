//! The tables of the config file, one struct each, with their defaults and the checks that
//! belong to one table alone (address lists, the admin token file).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::ConfigError;
use crate::media::{MediaConfig, RecordMode, TakeoverPolicy};
use crate::rtmp::amf::AmfLimits;
use crate::rtmp::chunk::ChunkLimits;
use crate::state::shared_objects::SoLimits;

/// `[http]`: RTMPT (RTMP tunnelled over HTTP) — the plain HTTP listeners and the tunnel limits,
/// which also apply to RTMPT sniffed on the RTMP listeners.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Addresses serving RTMPT only. `--http` replaces this list. The default `0.0.0.0:80`
    /// is optional: when it cannot be bound the gateway warns and carries on.
    pub listen: Vec<SocketAddr>,
    /// Body of the `/fcs/ident2` reply; unset answers 404 as most servers do.
    pub ident: Option<String>,
    /// How long an idle poll is held waiting for data: `low` (128 ms), `medium` (512 ms) or
    /// `high` (1024 ms) — FMS's latency presets. Longer means fewer requests.
    pub latency: Latency,
    /// Tunnel sessions open at once, over all clients.
    pub max_sessions: usize,
    /// Tunnel sessions one client IP may hold.
    pub max_sessions_per_ip: usize,
    /// Largest request body accepted (413 above).
    pub max_body_bytes: usize,
    /// Most RTMP bytes returned in one reply.
    pub max_reply_bytes: usize,
    /// Bytes buffered per session in each direction; a tunnel player that stops polling fills
    /// this and then skips to the next keyframe like a TCP player.
    pub session_buffer_bytes: usize,
    /// A session that sees no request for this long is closed and freed.
    pub session_idle_timeout_secs: u64,
    /// How long a request that arrived ahead of its sequence number waits for the missing one.
    pub reorder_wait_ms: u64,
    /// Serve the player page on HTTP listeners and the RTMP port: `GET /` lists the live
    /// streams and plays one in the browser (HTTP-FLV, WebSocket-FLV, LL-HLS), with
    /// `/streams.json` and the embedded players under `/player/`. `false` answers 404 there.
    pub player_page: bool,
    /// Serve live streams as LL-HLS (`GET /app[/instance]/stream/index.m3u8`) on the HTTP
    /// listeners and the RTMP port.
    pub hls: bool,
    /// Longest LL-HLS part (`PART-TARGET`), milliseconds (100..=5000).
    pub hls_part_ms: u32,
    /// Shortest HLS segment, milliseconds: a segment ends at the first keyframe after this
    /// (at least `hls_part_ms`, at most 60000).
    pub hls_segment_ms: u32,
    /// Complete segments each stream's window keeps (3..=100).
    pub hls_window_segments: usize,
    /// Bytes one stream's window may hold; older segments are dropped first (at least 1 MiB).
    pub hls_max_window_bytes: usize,
    /// HLS viewer sessions at once, over all streams (503 above).
    pub hls_max_sessions: usize,
    /// A viewer that sends no request for this long is closed; a stream nobody requests for
    /// this long stops being segmented. At least 3 segment lengths.
    pub hls_session_timeout_secs: u64,
}

/// RTMPT idle-poll latency presets, as FMS named them.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Latency {
    Low,
    Medium,
    High,
}

impl Latency {
    /// Longest time an idle poll is held open waiting for data.
    pub fn idle_hold(self) -> Duration {
        Duration::from_millis(match self {
            Latency::Low => 128,
            Latency::Medium => 512,
            Latency::High => 1024,
        })
    }
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            listen: vec![HttpSection::DEFAULT_LISTEN],
            ident: None,
            latency: Latency::Low,
            max_sessions: 10_000,
            max_sessions_per_ip: 64,
            max_body_bytes: 1 << 20,
            max_reply_bytes: 256 * 1024,
            session_buffer_bytes: 1 << 20,
            session_idle_timeout_secs: 30,
            reorder_wait_ms: 2000,
            player_page: true,
            hls: true,
            hls_part_ms: 1000,
            hls_segment_ms: 2000,
            hls_window_segments: 6,
            hls_max_window_bytes: 64 << 20,
            hls_max_sessions: 10_000,
            hls_session_timeout_secs: 20,
        }
    }
}

impl HttpSection {
    /// The embedded default HTTP listener (FMS served RTMPT on 80).
    pub const DEFAULT_LISTEN: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 80);
}

/// `[tls]`: a PEM certificate chain and key enable RTMPS and RTMPTS on every listener.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// PEM certificate chain, leaf first. Re-read on SIGHUP.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1). Re-read on SIGHUP.
    pub key: Option<PathBuf>,
}

/// `[rtmp]`: listeners, protocol parameters and per-connection limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RtmpConfig {
    /// Addresses to accept RTMP on. `--rtmp` replaces this list.
    pub listen: Vec<SocketAddr>,
    /// Chunk size the server writes with (128..=65536).
    pub chunk_size: u32,
    /// Window Acknowledgement Size announced to clients.
    pub window_ack_size: u32,
    /// Set Peer Bandwidth announced to clients.
    pub peer_bandwidth: u32,
    /// Seconds of silence before a client is pinged.
    pub ping_interval_secs: u64,
    /// Seconds a pinged client may stay silent before it is dropped.
    pub ping_timeout_secs: u64,
    /// Seconds a new connection has to complete the handshake and send `connect`.
    pub handshake_timeout_secs: u64,
    /// Seconds a write to a client may stall before the client is dropped.
    pub write_timeout_secs: u64,
    /// Connections served at once; more are closed on accept.
    pub max_connections: usize,
    /// Connections served at once from one IP address; more from that address are closed on
    /// accept, so one host cannot take every slot.
    pub max_connections_per_ip: usize,
    /// Largest message a client may send, in bytes.
    pub max_message_size: u32,
    /// Largest Set Chunk Size a client may ask for.
    pub max_chunk_size: u32,
    /// Chunk stream ids one connection may use.
    pub max_chunk_streams: usize,
    /// Bytes of half-received messages one connection may have buffered in total.
    pub max_partial_bytes: usize,
    /// NetStreams one connection may create.
    pub max_streams_per_connection: u32,
    /// AMF nesting depth accepted in commands and data.
    pub amf_max_depth: usize,
    /// Entries in one AMF object, array or collection.
    pub amf_max_collection_len: usize,
    /// Load balancers and reverse proxies in front of the RTMP and HTTP listeners (CIDR or bare
    /// addresses). From these sources only, a PROXY protocol v1/v2 header at the start of a
    /// connection and, on HTTP requests, `X-Forwarded-For` name the client: its address is then
    /// the one the client table, per-IP limits and app hooks see. Empty: both are ignored.
    pub trusted_proxies: Vec<String>,
}

impl Default for RtmpConfig {
    fn default() -> Self {
        let chunk = ChunkLimits::default();
        let amf = AmfLimits::default();
        RtmpConfig {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 1935))],
            chunk_size: 4096,
            window_ack_size: 2_500_000,
            peer_bandwidth: 2_500_000,
            ping_interval_secs: 15,
            ping_timeout_secs: 15,
            handshake_timeout_secs: 10,
            write_timeout_secs: 30,
            max_connections: 10_000,
            max_connections_per_ip: 2_000,
            max_message_size: chunk.max_message_size,
            max_chunk_size: chunk.max_chunk_size,
            max_chunk_streams: chunk.max_chunk_streams,
            max_partial_bytes: 32 << 20,
            max_streams_per_connection: 16,
            amf_max_depth: amf.max_depth,
            amf_max_collection_len: amf.max_collection_len,
            trusted_proxies: Vec::new(),
        }
    }
}

/// `[media]`: fan-out and cache behaviour.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MediaSection {
    /// Keep the GOP since the last keyframe so late players start at once.
    pub gop_cache: bool,
    pub gop_cache_max_bytes: usize,
    pub gop_cache_max_frames: usize,
    /// Messages buffered per stream for players; a player further behind skips to the next
    /// keyframe.
    pub player_queue: usize,
    /// A player that has to skip more than this many times within `player_skip_window_secs`
    /// is disconnected.
    pub player_max_skips: usize,
    pub player_skip_window_secs: u64,
    /// Players collect media for this many milliseconds and write it in one go; 0 writes
    /// each message as it arrives. Adds up to this much latency, saves most of the CPU.
    pub merge_window_ms: u64,
    /// A second publisher of a live name: `refuse`, `idle` (take over when the current
    /// publisher has sent nothing for `takeover_idle_secs`) or `always`.
    pub takeover: TakeoverPolicy,
    pub takeover_idle_secs: u64,
    /// Which publishes are recorded to FLV: `off`, `all` (every publish) or `manual` (publish
    /// types `record` and `append`).
    pub record: RecordMode,
    /// Where recordings go: `<record_dir>/<app>/<instance>/<name>.flv` (relative to the
    /// working directory unless absolute; created when the first recording starts).
    pub record_dir: PathBuf,
    /// Where `play` finds files: `<vod_dir>/<app>/<instance>/<name>.flv` (or `.mp4`). The
    /// default is the record folder, so what is recorded can be played back by its name.
    pub vod_dir: PathBuf,
    /// Most media a file player is sent ahead of its clock, however large its
    /// `SetBufferLength` (rtmpdump asks for 10 hours).
    pub vod_max_lead_ms: u32,
}

impl Default for MediaSection {
    fn default() -> Self {
        let m = MediaConfig::default();
        MediaSection {
            gop_cache: m.gop_cache,
            gop_cache_max_bytes: m.gop_cache_max_bytes,
            gop_cache_max_frames: m.gop_cache_max_frames,
            player_queue: m.player_queue,
            player_max_skips: 10,
            player_skip_window_secs: 60,
            merge_window_ms: 100,
            takeover: m.takeover,
            takeover_idle_secs: m.takeover_idle.as_secs(),
            record: RecordMode::Off,
            record_dir: PathBuf::from("recordings"),
            vod_dir: PathBuf::from("recordings"),
            vod_max_lead_ms: 10_000,
        }
    }
}

/// `[admin]`: the management listener (JSON API, metrics, dashboard), private by default.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Serve the admin listener at all.
    pub enabled: bool,
    /// Address of the admin listener. `--admin` replaces it.
    pub listen: SocketAddr,
    /// Source networks allowed to connect (CIDR; a bare address means a single host).
    /// Everyone else is closed on accept, before a byte is read. `--admin-allow` replaces it.
    pub allow: Vec<String>,
    /// Reverse proxies whose `X-Forwarded-For` is believed; the forwarded client address must
    /// then be in `allow` too. Empty: the header is ignored.
    pub trusted_proxies: Vec<String>,
    /// Bearer token every request must carry. Prefer `token_file` or the
    /// `WASMGATE_ADMIN_TOKEN` environment variable, which keep it out of `ps` and of this file.
    pub token: Option<String>,
    /// File holding the bearer token (surrounding whitespace is trimmed).
    pub token_file: Option<PathBuf>,
    /// PEM certificate chain; with `tls_key` the listener speaks HTTPS only.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Admin connections served at once; more are closed on accept.
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers, and idle time before a kept-alive
    /// connection is closed.
    pub request_timeout_secs: u64,
    /// Wrong or missing bearer tokens an address may send per `auth_failure_window_secs`;
    /// past that it gets 429 for one window, token unchecked. 0 turns the lockout off.
    pub auth_failures: u32,
    /// The window of `auth_failures`, and how long a lockout lasts.
    pub auth_failure_window_secs: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 1111)),
            allow: vec!["127.0.0.0/8".into(), "::1/128".into()],
            trusted_proxies: Vec::new(),
            token: None,
            token_file: None,
            tls_cert: None,
            tls_key: None,
            max_connections: 64,
            request_timeout_secs: 10,
            auth_failures: 10,
            auth_failure_window_secs: 60,
        }
    }
}

impl RtmpConfig {
    /// `trusted_proxies` as networks; errors name the key and entry.
    pub fn trusted_proxy_nets(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        parse_nets("rtmp.trusted_proxies", &self.trusted_proxies)
    }
}

impl AdminConfig {
    /// The allowlist as networks; errors name the key and entry.
    pub fn allow_nets(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        parse_nets("admin.allow", &self.allow)
    }

    pub fn trusted_proxy_nets(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        parse_nets("admin.trusted_proxies", &self.trusted_proxies)
    }

    /// The bearer token: `token`, else the contents of `token_file`; `None` means no auth.
    pub fn resolve_token(&self) -> Result<Option<String>, ConfigError> {
        if let Some(t) = &self.token {
            return Ok(Some(t.clone()));
        }
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: format!("admin.token_file {}", path.display()),
            source,
        })?;
        let t = text.trim();
        if t.is_empty() {
            return Err(ConfigError::Invalid {
                path: "admin.token_file".into(),
                message: format!("{} is empty", path.display()),
            });
        }
        Ok(Some(t.to_owned()))
    }
}

/// Parses CIDRs or bare addresses (`10.0.0.0/8`, `::1`, `192.0.2.7`).
fn parse_nets(key: &str, entries: &[String]) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    entries
        .iter()
        .map(|e| {
            let e = e.trim();
            e.parse::<ipnet::IpNet>()
                .or_else(|_| e.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map(|n| n.trunc())
                .map_err(|_| ConfigError::Invalid {
                    path: key.into(),
                    message: format!("{e:?} is not a CIDR network or an IP address"),
                })
        })
        .collect()
}

/// What happens to an event when its application fails (trap, deadline, memory cap).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    /// Deny: a connect is rejected with "application error", a publish/play denied.
    #[default]
    Closed,
    /// Allow as if the app had accepted.
    Open,
}

/// How apps without a module (no `DIR/<app>/app.wasm`) are served.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum UnknownApps {
    /// The default live application: anyone may connect, publish and play.
    #[default]
    Live,
    /// Connects are rejected ("No such application.").
    Deny,
}

/// `[apps]`: WebAssembly applications (see README "Applications").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AppsConfig {
    /// The apps folder: `DIR/<app>/app.wasm` + `DIR/<app>/app.toml`. `--apps` sets it. None:
    /// every app is the default live app and no Wasm engine is started.
    pub dir: Option<PathBuf>,
    /// Apps without a module: `live` (default behaviour) or `deny`.
    pub unknown_apps: UnknownApps,
    /// Milliseconds one guest call may run (an app's `[limits] deadline_ms` overrides it).
    pub deadline_ms: u64,
    /// Linear memory one instance may use, in MiB (`[limits] memory_mib` overrides it).
    pub memory_mib: u64,
    /// `closed` (default) or `open` (`[limits] failure_policy` overrides it).
    pub failure_policy: FailurePolicy,
    /// The most any app may set `memory_mib` to; sizes the pooling allocator's slots.
    pub max_memory_mib: u64,
    /// Instances (of all apps) alive at once; also sizes the pooling allocator.
    pub max_instances: u32,
    /// Events queued per instance; more are refused (as a failure of that event).
    pub queue: usize,
    /// Where compiled modules are cached, keyed by module digest and engine. Default:
    /// `<temp dir>/wasmgate-cache`.
    pub cache_dir: Option<PathBuf>,
    /// Watch the apps folder and reload an app when its files change.
    pub watch: bool,
    /// Quiet time after a change before the app is reloaded.
    pub reload_debounce_ms: u64,
    /// Longest wait before a failed instance is recreated (backoff doubles from 100 ms).
    pub restart_backoff_max_ms: u64,
    /// Seconds an instance without clients stays alive before it is stopped.
    pub instance_idle_secs: u64,
}

impl Default for AppsConfig {
    fn default() -> Self {
        AppsConfig {
            dir: None,
            unknown_apps: UnknownApps::Live,
            deadline_ms: 100,
            memory_mib: 64,
            failure_policy: FailurePolicy::Closed,
            max_memory_mib: 512,
            max_instances: 128,
            queue: 1024,
            cache_dir: None,
            watch: true,
            reload_debounce_ms: 200,
            restart_backoff_max_ms: 10_000,
            instance_idle_secs: 60,
        }
    }
}

/// `[shared_objects]`: remote shared objects (see README "Shared objects"): where persistent ones
/// are stored and the bounds of [`SoLimits`], read once at start-up.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SharedObjectsSection {
    /// Where persistent shared objects are kept: `<dir>/<app>/<instance>/<name>.so` (relative
    /// to the working directory unless absolute; created on the first save).
    pub dir: PathBuf,
    /// Slots in one shared object.
    pub max_slots: usize,
    /// Bytes of keys and AMF0 values in one shared object.
    pub max_bytes: usize,
    /// Shared objects loaded at once in one app instance.
    pub max_objects: usize,
    /// Clients using one shared object.
    pub max_subscribers: usize,
    /// Send Message events one shared object holds until the next tick.
    pub max_pending_messages: usize,
    /// Longest shared-object name, in bytes (it is a file name; at most 255).
    pub max_name_len: usize,
    /// Changes, removes and sends one client may make per second, sustained.
    pub requests_per_sec: u32,
    /// Requests one client may make in a burst above `requests_per_sec`.
    pub request_burst: u32,
    /// Milliseconds between deliveries: changes made within one tick reach each subscriber as
    /// one message.
    pub tick_ms: u64,
    /// Shared object messages queued for one client; a client that lets it overflow is
    /// disconnected (logged and counted), since its copies would silently fall out of step.
    pub client_queue: usize,
}

impl Default for SharedObjectsSection {
    fn default() -> Self {
        let l = SoLimits::default();
        SharedObjectsSection {
            dir: PathBuf::from("state/shared-objects"),
            max_slots: l.max_slots,
            max_bytes: l.max_bytes,
            max_objects: l.max_objects,
            max_subscribers: l.max_subscribers,
            max_pending_messages: l.max_pending_messages,
            max_name_len: l.max_name_len,
            requests_per_sec: l.requests_per_sec,
            request_burst: l.request_burst,
            tick_ms: 50,
            client_queue: 256,
        }
    }
}

impl SharedObjectsSection {
    /// The authority's bounds.
    pub fn limits(&self) -> SoLimits {
        SoLimits {
            max_slots: self.max_slots,
            max_bytes: self.max_bytes,
            max_objects: self.max_objects,
            max_subscribers: self.max_subscribers,
            max_pending_messages: self.max_pending_messages,
            max_name_len: self.max_name_len,
            requests_per_sec: self.requests_per_sec,
            request_burst: self.request_burst,
        }
    }

    /// Checks that belong to this table alone; errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| {
            Err(ConfigError::Invalid {
                path: format!("shared_objects.{key}"),
                message,
            })
        };
        for (key, v) in [
            ("max_slots", self.max_slots as u64),
            ("max_bytes", self.max_bytes as u64),
            ("max_objects", self.max_objects as u64),
            ("max_subscribers", self.max_subscribers as u64),
            ("max_pending_messages", self.max_pending_messages as u64),
            ("max_name_len", self.max_name_len as u64),
            ("requests_per_sec", u64::from(self.requests_per_sec)),
            ("request_burst", u64::from(self.request_burst)),
            ("tick_ms", self.tick_ms),
            ("client_queue", self.client_queue as u64),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        // Names become file names under `dir`.
        if self.max_name_len > 255 {
            return bad(
                "max_name_len",
                format!("{} is above 255", self.max_name_len),
            );
        }
        if !(10..=1000).contains(&self.tick_ms) {
            return bad("tick_ms", format!("{} is outside 10..=1000", self.tick_ms));
        }
        if self.dir.as_os_str().is_empty() {
            return bad("dir", "must not be empty".into());
        }
        Ok(())
    }
}

/// `[relay]`: RTMP relays between nodes — `[[relay.push]]` forwards published streams to other
/// servers, `[[relay.pull]]` makes this node an edge that plays streams from origins.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RelaySection {
    /// Longest relay chain: a relay's connect carries its hop count, and a connect with more
    /// hops than this is refused (a loop of relays ends here).
    pub max_hops: u32,
    /// Longest wait for an upstream's TCP/TLS connect, handshake and `connect` reply, and for
    /// its `publish`/`play` to start.
    pub connect_timeout_ms: u64,
    /// First wait before reconnecting to a lost upstream; doubles per failure up to
    /// `backoff_max_ms`.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// CA certificates (PEM) that `rtmps://` upstreams are verified against; unset uses the
    /// system bundle (`/etc/ssl/certs/ca-certificates.crt`).
    pub tls_ca_file: Option<PathBuf>,
    pub push: Vec<PushRule>,
    pub pull: Vec<PullRule>,
}

impl Default for RelaySection {
    fn default() -> Self {
        RelaySection {
            max_hops: 4,
            connect_timeout_ms: 5000,
            backoff_initial_ms: 500,
            backoff_max_ms: 10_000,
            tls_ca_file: None,
            push: Vec::new(),
            pull: Vec::new(),
        }
    }
}

/// `[[relay.push]]`: every stream published on an app matching `app` is forwarded to each
/// target, as `<target>/<stream name>?<the publisher's stream query>`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PushRule {
    /// App name or glob (`live`, `live-*`, `*`).
    pub app: String,
    /// `rtmp://host[:port]/app[/instance]` or `rtmps://...` URLs.
    pub targets: Vec<String>,
}

/// `[[relay.pull]]`: a play of a stream nobody publishes here, on an app matching `app`, plays
/// it from the first origin that answers (one upstream per stream, shared by every player).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PullRule {
    pub app: String,
    /// Origin URLs (`rtmp://host[:port]/app[/instance]`, `rtmps://...`) in failover order.
    pub origins: Vec<String>,
    /// How long the upstream stays after the last local player left.
    #[serde(default = "PullRule::default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// What a publish on this app gets on the edge: `refuse`, or `forward` (published here
    /// and pushed to the origins in failover order).
    #[serde(default)]
    pub mode: EdgePublish,
}

impl PullRule {
    fn default_idle_timeout_ms() -> u64 {
        5000
    }
}

/// What a publish on an edge app gets.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EdgePublish {
    #[default]
    Refuse,
    Forward,
}

/// A relay target or origin: `rtmp[s]://host[:port]/app[/instance][?query]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayUrl {
    pub tls: bool,
    /// `host` as written (a name or an address; `[v6]` keeps its brackets).
    pub host: String,
    pub port: u16,
    /// The connect `app` field: `app` or `app/instance`.
    pub app: String,
    /// A query of the URL itself, sent with the stream name (before the publisher's own).
    pub query: Option<String>,
}

impl RelayUrl {
    pub fn parse(url: &str) -> Result<RelayUrl, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("rtmp://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("rtmps://") {
            (true, r)
        } else {
            return Err(format!("{url:?} is not an rtmp:// or rtmps:// URL"));
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q.to_owned()).filter(|q| !q.is_empty())),
            None => (rest, None),
        };
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| format!("{url:?} names no app (rtmp://host/app)"))?;
        let app = path.trim_matches('/');
        if app.is_empty() || app.split('/').count() > 2 {
            return Err(format!(
                "{url:?}: the path must be app or app/instance, got {path:?}"
            ));
        }
        let default_port = if tls { 443 } else { 1935 };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                if h.contains(':') && !h.starts_with('[') {
                    // A bare IPv6 address without a port.
                    (authority, default_port)
                } else {
                    let port = p
                        .parse::<u16>()
                        .map_err(|_| format!("{url:?}: bad port {p:?}"))?;
                    (h, port)
                }
            }
            _ => (authority, default_port),
        };
        if host.is_empty() {
            return Err(format!("{url:?} names no host"));
        }
        Ok(RelayUrl {
            tls,
            host: host.to_owned(),
            port,
            app: app.to_owned(),
            query,
        })
    }

    /// `host:port`, for connecting.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The URL without its query (tokens stay out of logs and the admin API).
    pub fn display(&self) -> String {
        let scheme = if self.tls { "rtmps" } else { "rtmp" };
        format!("{scheme}://{}:{}/{}", self.host, self.port, self.app)
    }

    /// The stream name sent upstream: `name`, then this URL's query and `query` (the local
    /// client's stream query, carried for tokens), joined with `&`.
    pub fn stream_name(&self, name: &str, query: Option<&str>) -> String {
        let parts: Vec<&str> = [self.query.as_deref(), query]
            .into_iter()
            .flatten()
            .filter(|q| !q.is_empty())
            .collect();
        if parts.is_empty() {
            name.to_owned()
        } else {
            format!("{name}?{}", parts.join("&"))
        }
    }
}

/// Whether `app` matches a rule's pattern: `*` stands for any run of characters.
pub fn app_matches(pattern: &str, app: &str) -> bool {
    let (p, a) = (pattern.as_bytes(), app.as_bytes());
    // Iterative glob with one backtrack point: linear enough for names this short.
    let (mut pi, mut ai, mut star, mut mark) = (0, 0, None, 0);
    while ai < a.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ai;
            pi += 1;
        } else if pi < p.len() && p[pi] == a[ai] {
            pi += 1;
            ai += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ai = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

impl RelaySection {
    /// The pull rule for `app`, the first that matches.
    pub fn pull_rule(&self, app: &str) -> Option<&PullRule> {
        self.pull.iter().find(|r| app_matches(&r.app, app))
    }

    /// Every push target for `app`, over all matching rules, without duplicates.
    pub fn push_targets(&self, app: &str) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for r in self.push.iter().filter(|r| app_matches(&r.app, app)) {
            for t in &r.targets {
                if !v.contains(t) {
                    v.push(t.clone());
                }
            }
        }
        v
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |path: String, message: String| Err(ConfigError::Invalid { path, message });
        if !(1..=32).contains(&self.max_hops) {
            return bad(
                "relay.max_hops".into(),
                format!("{} is outside 1..=32", self.max_hops),
            );
        }
        for (path, v) in [
            ("relay.connect_timeout_ms", self.connect_timeout_ms),
            ("relay.backoff_initial_ms", self.backoff_initial_ms),
        ] {
            if v == 0 {
                return bad(path.into(), "must be at least 1".into());
            }
        }
        if self.backoff_max_ms < self.backoff_initial_ms {
            return bad(
                "relay.backoff_max_ms".into(),
                format!(
                    "{} is below relay.backoff_initial_ms ({})",
                    self.backoff_max_ms, self.backoff_initial_ms
                ),
            );
        }
        let urls = |path: String, list: &[String]| -> Result<(), ConfigError> {
            if list.is_empty() {
                return bad(path, "lists no URL".into());
            }
            for u in list {
                if let Err(message) = RelayUrl::parse(u) {
                    return bad(path, message);
                }
            }
            Ok(())
        };
        for (i, r) in self.push.iter().enumerate() {
            if r.app.is_empty() {
                return bad(format!("relay.push[{i}].app"), "is empty".into());
            }
            urls(format!("relay.push[{i}].targets"), &r.targets)?;
        }
        for (i, r) in self.pull.iter().enumerate() {
            if r.app.is_empty() {
                return bad(format!("relay.pull[{i}].app"), "is empty".into());
            }
            urls(format!("relay.pull[{i}].origins"), &r.origins)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod relay_tests {
    use super::*;

    #[test]
    fn relay_urls() {
        let u = RelayUrl::parse("rtmp://10.0.0.1:1936/live?k=1").unwrap();
        assert_eq!(
            (u.addr(), u.app.as_str(), u.tls),
            ("10.0.0.1:1936".into(), "live", false)
        );
        assert_eq!(u.stream_name("cam", Some("t=2")), "cam?k=1&t=2");
        assert_eq!(u.display(), "rtmp://10.0.0.1:1936/live");
        let u = RelayUrl::parse("rtmps://ingest.example/app/inst").unwrap();
        assert_eq!((u.port, u.app.as_str(), u.tls), (443, "app/inst", true));
        assert_eq!(u.stream_name("cam", None), "cam");
        let u = RelayUrl::parse("rtmp://[::1]:1935/live").unwrap();
        assert_eq!(u.addr(), "[::1]:1935");
        for bad in [
            "http://h/a",
            "rtmp://h",
            "rtmp://h/",
            "rtmp:///a",
            "rtmp://h:x/a",
            "rtmp://h/a/b/c",
        ] {
            assert!(RelayUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn app_globs() {
        assert!(app_matches("live", "live"));
        assert!(!app_matches("live", "live2"));
        assert!(app_matches("live*", "live2"));
        assert!(app_matches("*", "anything"));
        assert!(app_matches("a*c", "abbbc"));
        assert!(!app_matches("a*c", "abbb"));
    }
}
