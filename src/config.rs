//! The gateway's configuration: a TOML file where every field has a default, overridden by CLI
//! flags. Unknown keys and bad values are errors that name the key (`rtmp.chunk_size: ...`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::media::MediaConfig;
use crate::rtmp::SessionConfig;
use crate::rtmp::amf::AmfLimits;
use crate::rtmp::chunk::ChunkLimits;

/// The whole configuration. `Config::default()` is the embedded default the README promises:
/// RTMP on 0.0.0.0:1935, every app a live app open to everyone.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub rtmp: RtmpConfig,
    pub media: MediaSection,
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
        if self.media.merge_window_ms > 1000 {
            return bad(
                "media.merge_window_ms",
                format!("{} is above 1000", self.media.merge_window_ms),
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
        }
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
    fn unknown_key_is_named() {
        let e = Config::from_toml("[rtmp]\nchunk_sise = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("chunk_sise"), "{e}");
        let e = Config::from_toml("bogus = 1\n").unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
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
        let e = Config::from_toml("[rtmp]\nchunk_size = \"big\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("rtmp.chunk_size"), "{e}");
    }
}
