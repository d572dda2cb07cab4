//! [`Config`], the whole file: its defaults (the embedded config the README promises), TOML
//! parsing with errors that name the key, cross-table validation, and the settings derived from it.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::ConfigError;
use super::sections::{
    AdminConfig, AppsConfig, HttpSection, MediaSection, RelaySection, RtmpConfig,
    SharedObjectsSection, TlsSection,
};
use crate::media::MediaConfig;
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
    /// Log filter in `RUST_LOG` syntax (`info`, `debug`, `warn,wasmgate::gateway::reload=info`).
    /// The `RUST_LOG` environment variable wins when set. A reload applies it (in the binary).
    pub log_level: String,
    pub rtmp: RtmpConfig,
    pub media: MediaSection,
    pub http: HttpSection,
    pub tls: TlsSection,
    pub admin: AdminConfig,
    pub apps: AppsConfig,
    pub shared_objects: SharedObjectsSection,
    pub relay: RelaySection,
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
            shared_objects: SharedObjectsSection::default(),
            relay: RelaySection::default(),
        }
    }
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
        if !(100..=5000).contains(&h.hls_part_ms) {
            return bad(
                "http.hls_part_ms",
                format!("{} is outside 100..=5000", h.hls_part_ms),
            );
        }
        if h.hls_segment_ms < h.hls_part_ms || h.hls_segment_ms > 60_000 {
            return bad(
                "http.hls_segment_ms",
                format!(
                    "{} is outside {}..=60000 (at least http.hls_part_ms)",
                    h.hls_segment_ms, h.hls_part_ms
                ),
            );
        }
        if !(3..=100).contains(&h.hls_window_segments) {
            return bad(
                "http.hls_window_segments",
                format!("{} is outside 3..=100", h.hls_window_segments),
            );
        }
        if h.hls_max_window_bytes < 1 << 20 {
            return bad(
                "http.hls_max_window_bytes",
                format!("{} is below 1048576", h.hls_max_window_bytes),
            );
        }
        if h.hls_max_sessions == 0 {
            return bad("http.hls_max_sessions", "must be at least 1".into());
        }
        let min_timeout = (3 * u64::from(h.hls_segment_ms)).div_ceil(1000).max(5);
        if h.hls_session_timeout_secs < min_timeout {
            return bad(
                "http.hls_session_timeout_secs",
                format!(
                    "{} is below {min_timeout} (3 segment lengths, at least 5)",
                    h.hls_session_timeout_secs
                ),
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
        if !(500..=600_000).contains(&self.media.vod_max_lead_ms) {
            return bad(
                "media.vod_max_lead_ms",
                format!("{} is outside 500..=600000", self.media.vod_max_lead_ms),
            );
        }
        if self.media.merge_window_ms > 1000 {
            return bad(
                "media.merge_window_ms",
                format!("{} is above 1000", self.media.merge_window_ms),
            );
        }
        self.rtmp.trusted_proxy_nets()?;
        let a = &self.admin;
        a.allow_nets()?;
        a.trusted_proxy_nets()?;
        if a.max_connections == 0 {
            return bad("admin.max_connections", "must be at least 1".into());
        }
        if a.request_timeout_secs == 0 {
            return bad("admin.request_timeout_secs", "must be at least 1".into());
        }
        if a.auth_failure_window_secs == 0 {
            return bad(
                "admin.auth_failure_window_secs",
                "must be at least 1 (set admin.auth_failures = 0 to turn the lockout off)".into(),
            );
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
        self.shared_objects.validate()?;
        self.relay.validate()?;
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
            record_dir: self.media.record_dir.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::sections::{FailurePolicy, Latency, UnknownApps};

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(Config::from_toml("").unwrap(), Config::default());
    }

    #[test]
    fn shared_objects_section_parses_and_validates() {
        let c = Config::from_toml(
            "[shared_objects]\ndir = \"/var/lib/so\"\nmax_slots = 8\nrequests_per_sec = 5\n",
        )
        .unwrap();
        assert_eq!(c.shared_objects.dir, Path::new("/var/lib/so"));
        let l = c.shared_objects.limits();
        assert_eq!((l.max_slots, l.requests_per_sec), (8, 5));
        assert_eq!(
            l.max_bytes,
            crate::state::shared_objects::SoLimits::default().max_bytes
        );
        for (bad, key) in [
            ("max_slots = 0", "shared_objects.max_slots"),
            ("max_name_len = 256", "shared_objects.max_name_len"),
            ("tick_ms = 5", "shared_objects.tick_ms"),
            ("dir = \"\"", "shared_objects.dir"),
            ("max_slot = 1", "shared_objects"),
        ] {
            let e = Config::from_toml(&format!("[shared_objects]\n{bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(key), "{bad}: {e}");
        }
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
    fn hls_keys_parse_and_validate() {
        let c = Config::from_toml("[http]\nhls_part_ms = 500\nhls_segment_ms = 1000\n").unwrap();
        assert_eq!((c.http.hls_part_ms, c.http.hls_segment_ms), (500, 1000));
        assert!(c.http.hls);
        for (toml, key) in [
            ("hls_part_ms = 50", "http.hls_part_ms"),
            ("hls_segment_ms = 500", "http.hls_segment_ms"),
            ("hls_window_segments = 2", "http.hls_window_segments"),
            ("hls_max_window_bytes = 10", "http.hls_max_window_bytes"),
            ("hls_max_sessions = 0", "http.hls_max_sessions"),
            (
                "hls_session_timeout_secs = 5",
                "http.hls_session_timeout_secs",
            ),
        ] {
            let e = Config::from_toml(&format!("[http]\n{toml}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(key), "{toml}: {e}");
        }
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
        let c =
            Config::from_toml("log_level = \"warn,wasmgate::gateway::reload=debug\"\n").unwrap();
        assert_eq!(c.log_level, "warn,wasmgate::gateway::reload=debug");
        let e = Config::from_toml("log_level = \"wasmgate=loud\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("log_level"), "{e}");
    }
}
