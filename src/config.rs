//! The gateway's configuration: a TOML file where every field has a default, overridden by CLI
//! flags. Unknown keys and bad values are errors that name the key (`rtmp.chunk_size: ...`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::media::{MediaConfig, TakeoverPolicy};
use crate::rtmp::SessionConfig;
use crate::rtmp::amf::AmfLimits;
use crate::rtmp::chunk::ChunkLimits;

/// The whole configuration. `Config::default()` is the embedded default the README promises:
/// RTMP on 0.0.0.0:1935, every app a live app open to everyone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Seconds a SIGTERM/SIGINT shutdown waits for connections to close before exiting.
    pub shutdown_timeout_secs: u64,
    /// Log filter in `RUST_LOG` syntax (`info`, `debug`, `warn,wasmgate::reload=info`). The
    /// `RUST_LOG` environment variable wins when set. A reload applies it (in the binary).
    pub log_level: String,
    pub rtmp: RtmpConfig,
    pub media: MediaSection,
    pub http: HttpSection,
    pub tls: TlsSection,
    pub admin: AdminConfig,
    pub apps: AppsConfig,
}

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

impl Default for Config {
    fn default() -> Self {
        Config {
            shutdown_timeout_secs: 10,
            log_level: "info".into(),
            rtmp: RtmpConfig::default(),
            media: MediaSection::default(),
            http: HttpSection::default(),
            tls: TlsSection::default(),
            admin: AdminConfig::default(),
            apps: AppsConfig::default(),
        }
    }
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
        }
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

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Config {
    /// Parses TOML text; errors name the offending key.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let de = toml::de::Deserializer::parse(text).map_err(|e| ConfigError::Invalid {
            path: "config".into(),
            message: e.to_string(),
        })?;
        let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            ConfigError::Invalid {
                path: if path == "." { "config".into() } else { path },
                message: e.into_inner().message().trim().to_string(),
            }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_toml(&text)
    }

    /// Range checks that types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let r = &self.rtmp;
        let bad = |path: &str, message: String| {
            Err(ConfigError::Invalid {
                path: path.into(),
                message,
            })
        };
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            return bad(
                "log_level",
                format!("{:?} is not a log filter: {e}", self.log_level),
            );
        }
        if !(128..=65536).contains(&r.chunk_size) {
            return bad(
                "rtmp.chunk_size",
                format!("{} is outside 128..=65536", r.chunk_size),
            );
        }
        if r.max_chunk_size < 128 || r.max_chunk_size > 0x7fff_ffff {
            return bad(
                "rtmp.max_chunk_size",
                format!("{} is outside 128..=2147483647", r.max_chunk_size),
            );
        }
        if r.max_message_size < 1024 {
            return bad(
                "rtmp.max_message_size",
                format!("{} is below 1024", r.max_message_size),
            );
        }
        for (path, v) in [
            ("rtmp.ping_interval_secs", r.ping_interval_secs),
            ("rtmp.ping_timeout_secs", r.ping_timeout_secs),
            ("rtmp.handshake_timeout_secs", r.handshake_timeout_secs),
            ("rtmp.write_timeout_secs", r.write_timeout_secs),
            (
                "media.player_skip_window_secs",
                self.media.player_skip_window_secs,
            ),
        ] {
            if v == 0 {
                return bad(path, "must be at least 1".into());
            }
        }
        for (path, v) in [
            ("rtmp.max_connections", r.max_connections),
            ("rtmp.max_connections_per_ip", r.max_connections_per_ip),
            ("rtmp.max_chunk_streams", r.max_chunk_streams),
            ("rtmp.max_partial_bytes", r.max_partial_bytes),
            ("rtmp.amf_max_depth", r.amf_max_depth),
            ("rtmp.amf_max_collection_len", r.amf_max_collection_len),
            ("media.player_queue", self.media.player_queue),
        ] {
            if v == 0 {
                return bad(path, "must be at least 1".into());
            }
        }
        let h = &self.http;
        for (path, v) in [
            ("http.max_sessions", h.max_sessions),
            ("http.max_sessions_per_ip", h.max_sessions_per_ip),
            ("http.max_body_bytes", h.max_body_bytes),
            ("http.max_reply_bytes", h.max_reply_bytes),
            ("http.session_buffer_bytes", h.session_buffer_bytes),
        ] {
            if v == 0 {
                return bad(path, "must be at least 1".into());
            }
        }
        if h.session_idle_timeout_secs == 0 {
            return bad(
                "http.session_idle_timeout_secs",
                "must be at least 1".into(),
            );
        }
        if h.session_buffer_bytes < 4096 {
            return bad(
                "http.session_buffer_bytes",
                format!("{} is below 4096", h.session_buffer_bytes),
            );
        }
        if let Some(ident) = &h.ident
            && ident.len() > 4096
        {
            return bad("http.ident", "longer than 4096 bytes".into());
        }
        match (&self.tls.cert, &self.tls.key) {
            (Some(_), None) => return bad("tls.key", "tls.cert is set but tls.key is not".into()),
            (None, Some(_)) => return bad("tls.cert", "tls.key is set but tls.cert is not".into()),
            _ => {}
        }
        if self.media.merge_window_ms > 1000 {
            return bad(
                "media.merge_window_ms",
                format!("{} is above 1000", self.media.merge_window_ms),
            );
        }
        let a = &self.admin;
        a.allow_nets()?;
        a.trusted_proxy_nets()?;
        if a.max_connections == 0 {
            return bad("admin.max_connections", "must be at least 1".into());
        }
        if a.request_timeout_secs == 0 {
            return bad("admin.request_timeout_secs", "must be at least 1".into());
        }
        if a.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return bad(
                "admin.token",
                "must not be empty (omit it to disable auth)".into(),
            );
        }
        if a.tls_cert.is_some() != a.tls_key.is_some() {
            let key = if a.tls_cert.is_some() {
                "admin.tls_key"
            } else {
                "admin.tls_cert"
            };
            return bad(key, "tls_cert and tls_key must be given together".into());
        }
        let a = &self.apps;
        for (path, v) in [
            ("apps.deadline_ms", a.deadline_ms),
            ("apps.memory_mib", a.memory_mib),
            ("apps.max_memory_mib", a.max_memory_mib),
            ("apps.max_instances", u64::from(a.max_instances)),
            ("apps.queue", a.queue as u64),
            ("apps.restart_backoff_max_ms", a.restart_backoff_max_ms),
            ("apps.instance_idle_secs", a.instance_idle_secs),
        ] {
            if v == 0 {
                return bad(path, "must be at least 1".into());
            }
        }
        if a.memory_mib > a.max_memory_mib {
            return bad(
                "apps.memory_mib",
                format!(
                    "{} is above apps.max_memory_mib ({})",
                    a.memory_mib, a.max_memory_mib
                ),
            );
        }
        if a.max_memory_mib > 4096 {
            return bad(
                "apps.max_memory_mib",
                format!("{} is above 4096 (a 32-bit memory)", a.max_memory_mib),
            );
        }
        if r.max_streams_per_connection == 0 {
            return bad(
                "rtmp.max_streams_per_connection",
                "must be at least 1".into(),
            );
        }
        Ok(())
    }

    pub fn session_config(&self) -> SessionConfig {
        let r = &self.rtmp;
        SessionConfig {
            out_chunk_size: r.chunk_size,
            window_ack_size: r.window_ack_size,
            peer_bandwidth: r.peer_bandwidth,
            ping_interval: Duration::from_secs(r.ping_interval_secs),
            ping_timeout: Duration::from_secs(r.ping_timeout_secs),
            chunk_limits: ChunkLimits {
                max_message_size: r.max_message_size,
                max_chunk_size: r.max_chunk_size,
                max_chunk_streams: r.max_chunk_streams,
            },
            amf_limits: AmfLimits {
                max_depth: r.amf_max_depth,
                max_collection_len: r.amf_max_collection_len,
                ..AmfLimits::default()
            },
            max_streams: r.max_streams_per_connection,
            max_partial_bytes: r.max_partial_bytes,
            ..SessionConfig::default()
        }
    }

    pub fn media_config(&self) -> MediaConfig {
        MediaConfig {
            chunk_size: self.rtmp.chunk_size,
            player_queue: self.media.player_queue,
            gop_cache: self.media.gop_cache,
            gop_cache_max_bytes: self.media.gop_cache_max_bytes,
            gop_cache_max_frames: self.media.gop_cache_max_frames,
            takeover: self.media.takeover,
            takeover_idle: Duration::from_secs(self.media.takeover_idle_secs),
        }
    }
}

/// When a changed key takes effect on a reload (SIGHUP or `POST /api/v1/config/reload`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEffect {
    /// Applied at once: new connections, sessions and streams use the new value; those
    /// already running may keep the one they started with.
    Live,
    /// Read only at start-up (a bound socket, the Wasm engine's pools): the process keeps
    /// the old value until it is restarted.
    Restart,
}

/// Keys read only at start-up. Everything else in [`LIVE_KEYS`] is applied by a reload; a key
/// in neither list (a new field nobody classified yet) is treated as restart-only, and the
/// `every_key_is_classified` test fails until it is listed.
const RESTART_KEYS: &[&str] = &[
    "rtmp.listen",
    "http.listen",
    "admin.enabled",
    "admin.listen",
    "admin.tls_cert",
    "admin.tls_key",
    "admin.max_connections",
    // The Wasm engine, its pooling allocator, the watcher and the instances' limits are all
    // set up once by `AppManager::start`.
    "apps.",
];

/// Keys a reload applies to the running process (see README "Configuration").
const LIVE_KEYS: &[&str] = &[
    "shutdown_timeout_secs",
    "log_level",
    "rtmp.chunk_size",
    "rtmp.window_ack_size",
    "rtmp.peer_bandwidth",
    "rtmp.ping_interval_secs",
    "rtmp.ping_timeout_secs",
    "rtmp.handshake_timeout_secs",
    "rtmp.write_timeout_secs",
    "rtmp.max_connections",
    "rtmp.max_connections_per_ip",
    "rtmp.max_message_size",
    "rtmp.max_chunk_size",
    "rtmp.max_chunk_streams",
    "rtmp.max_partial_bytes",
    "rtmp.max_streams_per_connection",
    "rtmp.amf_max_depth",
    "rtmp.amf_max_collection_len",
    "media.",
    "http.ident",
    "http.latency",
    "http.max_sessions",
    "http.max_sessions_per_ip",
    "http.max_body_bytes",
    "http.max_reply_bytes",
    "http.session_buffer_bytes",
    "http.session_idle_timeout_secs",
    "http.reorder_wait_ms",
    "tls.cert",
    "tls.key",
    "admin.allow",
    "admin.trusted_proxies",
    "admin.token",
    "admin.token_file",
    "admin.request_timeout_secs",
];

fn listed(list: &[&str], key: &str) -> bool {
    list.iter()
        .any(|k| key == *k || (k.ends_with('.') && key.starts_with(k)))
}

/// Whether a reload can apply `key` (a dotted path such as `rtmp.max_connections`).
pub fn key_effect(key: &str) -> KeyEffect {
    if listed(LIVE_KEYS, key) && !listed(RESTART_KEYS, key) {
        KeyEffect::Live
    } else {
        KeyEffect::Restart
    }
}

/// Every leaf of a serialised config as (dotted key, value); arrays are one leaf.
fn leaves(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&key, child, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

fn to_json(c: &Config) -> Result<serde_json::Value, ConfigError> {
    serde_json::to_value(c).map_err(|e| ConfigError::Invalid {
        path: "config".into(),
        message: e.to_string(),
    })
}

/// The outcome of comparing a running config with a newly loaded one.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigChange {
    /// What the process runs on after the reload: the new config with every restart-only key
    /// put back to its running value, so the running state and the reported config agree.
    pub effective: Config,
    /// Changed keys a reload applies, sorted.
    pub applied: Vec<String>,
    /// Changed keys that keep their old value until a restart, sorted.
    pub needs_restart: Vec<String>,
}

impl Config {
    /// Dotted keys whose values differ between `self` and `new`, sorted.
    pub fn changed_keys(&self, new: &Config) -> Vec<String> {
        let (Ok(a), Ok(b)) = (to_json(self), to_json(new)) else {
            return Vec::new();
        };
        let (mut old, mut new) = (Vec::new(), Vec::new());
        leaves("", &a, &mut old);
        leaves("", &b, &mut new);
        let old: std::collections::BTreeMap<_, _> = old.into_iter().collect();
        let mut changed: Vec<String> = new
            .into_iter()
            .filter(|(k, v)| old.get(k) != Some(v))
            .map(|(k, _)| k)
            .collect();
        changed.sort();
        changed
    }

    /// Splits the difference to `new` into live and restart-only keys and builds the config to
    /// run on. The result is validated again: a live key may be checked against a
    /// restart-only one that kept its old value (`apps.memory_mib` against `max_memory_mib`).
    pub fn change_to(&self, new: &Config) -> Result<ConfigChange, ConfigError> {
        let changed = self.changed_keys(new);
        let (applied, needs_restart): (Vec<String>, Vec<String>) = changed
            .into_iter()
            .partition(|k| key_effect(k) == KeyEffect::Live);
        let mut effective = to_json(new)?;
        if !needs_restart.is_empty() {
            let running = to_json(self)?;
            for key in &needs_restart {
                let pointer = format!("/{}", key.replace('.', "/"));
                if let (Some(slot), Some(old)) =
                    (effective.pointer_mut(&pointer), running.pointer(&pointer))
                {
                    *slot = old.clone();
                }
            }
        }
        let effective: Config =
            serde_json::from_value(effective).map_err(|e| ConfigError::Invalid {
                path: "config".into(),
                message: e.to_string(),
            })?;
        effective.validate()?;
        Ok(ConfigChange {
            effective,
            applied,
            needs_restart,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(Config::from_toml("").unwrap(), Config::default());
    }

    #[test]
    fn fields_parse() {
        let c = Config::from_toml(
            "[rtmp]\nlisten = [\"127.0.0.1:19350\"]\nchunk_size = 8192\n[media]\ngop_cache = false\n",
        )
        .unwrap();
        assert_eq!(c.rtmp.listen, vec!["127.0.0.1:19350".parse().unwrap()]);
        assert_eq!(c.rtmp.chunk_size, 8192);
        assert!(!c.media.gop_cache);
    }

    #[test]
    fn tunnel_and_tls_keys_parse_and_validate() {
        let c = Config::from_toml(
            "[http]\nlisten = []\nlatency = \"high\"\nident = \"x\"\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
        )
        .unwrap();
        assert!(c.http.listen.is_empty());
        assert_eq!(c.http.latency, Latency::High);
        assert_eq!(c.tls.cert.as_deref(), Some(Path::new("c.pem")));
        let e = Config::from_toml("[http]\nlatency = \"fast\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("http.latency"), "{e}");
        let e = Config::from_toml("[tls]\ncert = \"c.pem\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("tls.key"), "{e}");
        let e = Config::from_toml("[http]\nmax_body_bytes = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("http.max_body_bytes"), "{e}");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::from_toml("[rtmp]\nchunk_sise = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("chunk_sise"), "{e}");
        let e = Config::from_toml("bogus = 1\n").unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn admin_keys_parse_and_are_checked() {
        let c = Config::from_toml(
            "[admin]\nlisten = \"127.0.0.1:0\"\nallow = [\"10.0.0.0/8\", \"::1\", \"192.0.2.7\"]\n",
        )
        .unwrap();
        let nets = c.admin.allow_nets().unwrap();
        assert_eq!(nets.len(), 3);
        assert!(nets[2].contains(&"192.0.2.7".parse::<std::net::IpAddr>().unwrap()));
        let e = Config::from_toml("[admin]\nallow = [\"10.0.0.0/33\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("admin.allow"), "{e}");
        let e = Config::from_toml("[admin]\ntrusted_proxies = [\"proxy\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("admin.trusted_proxies"), "{e}");
        let e = Config::from_toml("[admin]\ntls_cert = \"/x.pem\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("admin.tls_key"), "{e}");
        let e = Config::from_toml("[admin]\nlisten = \"nope\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("admin.listen"), "{e}");
    }

    #[test]
    fn token_file_is_read_and_trimmed() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), "  s3cret\n").unwrap();
        let a = AdminConfig {
            token_file: Some(f.path().to_path_buf()),
            ..AdminConfig::default()
        };
        assert_eq!(a.resolve_token().unwrap().as_deref(), Some("s3cret"));
        assert_eq!(AdminConfig::default().resolve_token().unwrap(), None);
    }

    #[test]
    fn apps_section() {
        let c = Config::from_toml(
            "[apps]\ndir = \"/srv/apps\"\ndeadline_ms = 50\nfailure_policy = \"open\"\nunknown_apps = \"deny\"\n",
        )
        .unwrap();
        assert_eq!(c.apps.dir.as_deref(), Some(Path::new("/srv/apps")));
        assert_eq!(c.apps.deadline_ms, 50);
        assert_eq!(c.apps.failure_policy, FailurePolicy::Open);
        assert_eq!(c.apps.unknown_apps, UnknownApps::Deny);
        let e = Config::from_toml("[apps]\nfailure_policy = \"maybe\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("apps.failure_policy"), "{e}");
        let e = Config::from_toml("[apps]\ndeadline_ms = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("apps.deadline_ms"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = Config::from_toml("[rtmp]\nlisten = [\"nope\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("rtmp.listen"), "{e}");
        let e = Config::from_toml("[rtmp]\nchunk_size = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("rtmp.chunk_size"), "{e}");
        let e = Config::from_toml("[media]\ntakeover = \"sometimes\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("media.takeover"), "{e}");
        let e = Config::from_toml("[rtmp]\nchunk_size = \"big\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("rtmp.chunk_size"), "{e}");
    }
    #[test]
    fn log_level_is_a_filter() {
        let c = Config::from_toml("log_level = \"warn,wasmgate::reload=debug\"\n").unwrap();
        assert_eq!(c.log_level, "warn,wasmgate::reload=debug");
        let e = Config::from_toml("log_level = \"wasmgate=loud\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("log_level"), "{e}");
        assert_eq!(key_effect("log_level"), KeyEffect::Live);
    }

    #[test]
    fn every_key_is_classified() {
        let mut keys = Vec::new();
        leaves("", &to_json(&Config::default()).unwrap(), &mut keys);
        assert!(keys.len() > 50, "{keys:?}");
        for (k, _) in keys {
            assert!(
                listed(LIVE_KEYS, &k) || listed(RESTART_KEYS, &k),
                "{k} is in neither LIVE_KEYS nor RESTART_KEYS"
            );
        }
        assert_eq!(key_effect("rtmp.max_connections"), KeyEffect::Live);
        assert_eq!(key_effect("media.takeover"), KeyEffect::Live);
        assert_eq!(key_effect("rtmp.listen"), KeyEffect::Restart);
        assert_eq!(key_effect("apps.max_instances"), KeyEffect::Restart);
        assert_eq!(key_effect("no.such.key"), KeyEffect::Restart);
    }

    #[test]
    fn unchanged_config_has_no_changes() {
        let c = Config::default();
        assert!(c.changed_keys(&c.clone()).is_empty());
        let ch = c.change_to(&c).unwrap();
        assert!(ch.applied.is_empty() && ch.needs_restart.is_empty());
        assert_eq!(ch.effective, c);
    }

    #[test]
    fn change_splits_live_and_restart_keys() {
        let old = Config::default();
        let new = Config::from_toml(
            "shutdown_timeout_secs = 3
             [rtmp]
listen = [\"127.0.0.1:1\"]
max_connections = 2
             [admin]
allow = [\"10.0.0.0/8\"]
token = \"t\"
listen = \"127.0.0.1:2\"
             [apps]
max_instances = 7
[media]
takeover = \"always\"
",
        )
        .unwrap();
        let ch = old.change_to(&new).unwrap();
        assert_eq!(
            ch.applied,
            [
                "admin.allow",
                "admin.token",
                "media.takeover",
                "rtmp.max_connections",
                "shutdown_timeout_secs"
            ]
        );
        assert_eq!(
            ch.needs_restart,
            ["admin.listen", "apps.max_instances", "rtmp.listen"]
        );
        // Live values are taken, restart-only ones keep the running value.
        let e = &ch.effective;
        assert_eq!(e.rtmp.max_connections, 2);
        assert_eq!(e.admin.token.as_deref(), Some("t"));
        assert_eq!(e.media.takeover, TakeoverPolicy::Always);
        assert_eq!(e.rtmp.listen, old.rtmp.listen);
        assert_eq!(e.admin.listen, old.admin.listen);
        assert_eq!(e.apps.max_instances, old.apps.max_instances);
        // Nothing left to apply once the effective config runs, except the restart keys.
        assert_eq!(e.changed_keys(&new), ch.needs_restart);
    }

    #[test]
    fn option_keys_and_lists_compare_as_leaves() {
        let old = Config::default();
        let mut new = old.clone();
        new.tls.cert = Some("c.pem".into());
        new.tls.key = Some("k.pem".into());
        new.admin.allow.push("192.0.2.0/24".into());
        assert_eq!(
            old.changed_keys(&new),
            ["admin.allow", "tls.cert", "tls.key"]
        );
        // And back: Some -> None is a change too.
        assert_eq!(
            new.changed_keys(&old),
            ["admin.allow", "tls.cert", "tls.key"]
        );
    }

    #[test]
    fn effective_config_is_validated_again() {
        // memory_mib is restart-only like max_memory_mib, so this is accepted as a whole...
        let old = Config::default();
        let mut new = old.clone();
        new.apps.max_memory_mib = 1024;
        new.apps.memory_mib = 1000;
        let ch = old.change_to(&new).unwrap();
        assert_eq!(ch.needs_restart, ["apps.max_memory_mib", "apps.memory_mib"]);
        assert_eq!(ch.effective.apps, old.apps);
        // ...and an invalid new config never gets this far: `validate` names the key.
        new.rtmp.chunk_size = 1;
        let e = new.validate().unwrap_err().to_string();
        assert!(e.starts_with("rtmp.chunk_size"), "{e}");
    }
}
