//! What a reload may apply: which keys take effect live and which wait for a restart, and the
//! diff between the running config and a newly loaded one.

use super::error::ConfigError;
use super::file::Config;

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
    // The shared-object authority and its store are built once with the core.
    "shared_objects.",
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
    "rtmp.trusted_proxies",
    "media.",
    // Read at each publish, play and reconnect: running relays keep the rules they started with.
    "relay.",
    "http.ident",
    "http.latency",
    "http.max_sessions",
    "http.max_sessions_per_ip",
    "http.max_body_bytes",
    "http.max_reply_bytes",
    "http.session_buffer_bytes",
    "http.session_idle_timeout_secs",
    "http.reorder_wait_ms",
    "http.player_page",
    // Read per request and when a stream's segmenter starts (a running one keeps its cuts).
    "http.hls",
    "http.hls_part_ms",
    "http.hls_segment_ms",
    "http.hls_window_segments",
    "http.hls_max_window_bytes",
    "http.hls_max_sessions",
    "http.hls_session_timeout_secs",
    "tls.cert",
    "tls.key",
    "admin.allow",
    "admin.trusted_proxies",
    "admin.token",
    "admin.token_file",
    "admin.request_timeout_secs",
    "admin.auth_failures",
    "admin.auth_failure_window_secs",
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
    use crate::media::TakeoverPolicy;

    #[test]
    fn log_level_reloads_live() {
        assert_eq!(key_effect("log_level"), KeyEffect::Live);
    }

    #[test]
    fn shared_object_keys_need_a_restart() {
        assert_eq!(key_effect("shared_objects.max_slots"), KeyEffect::Restart);
        assert_eq!(key_effect("shared_objects.dir"), KeyEffect::Restart);
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
