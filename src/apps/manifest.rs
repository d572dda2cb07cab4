//! An app's folder: `app.wasm` (the component) and `app.toml`, whose `[settings]` go to the guest
//! as is and whose `[limits]` / `[grants]` set its sandbox. Unknown keys are errors.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{AppsConfig, FailurePolicy};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Manifest {
    /// Handed to the guest's `start` as JSON.
    pub settings: toml::Table,
    pub limits: Limits,
    pub grants: Grants,
}

/// Overrides of the `[apps]` defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub deadline_ms: Option<u64>,
    pub memory_mib: Option<u64>,
    pub failure_policy: Option<FailurePolicy>,
}

/// What the sandbox lets the guest reach; nothing by default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Grants {
    /// Environment variables the guest sees (names and values given here, not inherited).
    pub env: BTreeMap<String, String>,
    /// Outgoing network (TCP/UDP sockets and name lookup) through WASI sockets.
    pub network: bool,
    /// Guest stdout/stderr go to the gateway log tagged with the app (else discarded).
    pub stdio: bool,
}

impl Default for Grants {
    fn default() -> Self {
        Grants {
            env: BTreeMap::new(),
            network: false,
            stdio: true,
        }
    }
}

/// Limits after applying the app's overrides to the `[apps]` defaults.
#[derive(Debug, Clone, Copy)]
pub struct Effective {
    pub deadline: Duration,
    pub memory_bytes: usize,
    pub policy: FailurePolicy,
}

impl Manifest {
    /// Reads `dir/app.toml`; a missing file is an empty manifest.
    pub fn load(dir: &Path) -> Result<Manifest, String> {
        let path = dir.join("app.toml");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Manifest::default()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let de = toml::de::Deserializer::parse(&text)
            .map_err(|e| format!("{}: {}", path.display(), e.to_string().trim()))?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            format!(
                "{}: {}: {}",
                path.display(),
                e.path(),
                e.inner().message().trim()
            )
        })
    }

    pub fn effective(&self, apps: &AppsConfig) -> Result<Effective, String> {
        let deadline_ms = self.limits.deadline_ms.unwrap_or(apps.deadline_ms);
        let memory_mib = self.limits.memory_mib.unwrap_or(apps.memory_mib);
        if deadline_ms == 0 {
            return Err("limits.deadline_ms: must be at least 1".into());
        }
        if memory_mib == 0 || memory_mib > apps.max_memory_mib {
            return Err(format!(
                "limits.memory_mib: {memory_mib} is outside 1..={} (apps.max_memory_mib)",
                apps.max_memory_mib
            ));
        }
        Ok(Effective {
            deadline: Duration::from_millis(deadline_ms),
            memory_bytes: (memory_mib as usize) << 20,
            policy: self.limits.failure_policy.unwrap_or(apps.failure_policy),
        })
    }

    pub fn settings_json(&self) -> String {
        serde_json::to_string(&self.settings).unwrap_or_else(|_| "{}".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_bad_keys() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("app.toml"),
            "[settings]\ntokens = [\"a\"]\n[limits]\ndeadline_ms = 20\nfailure_policy = \"open\"\n[grants]\nenv = { A = \"1\" }\n",
        )
        .unwrap();
        let m = Manifest::load(dir.path()).unwrap();
        assert_eq!(m.settings_json(), r#"{"tokens":["a"]}"#);
        let e = m.effective(&AppsConfig::default()).unwrap();
        assert_eq!(e.deadline, Duration::from_millis(20));
        assert_eq!(e.policy, FailurePolicy::Open);
        assert_eq!(m.grants.env.get("A").map(String::as_str), Some("1"));

        std::fs::write(dir.path().join("app.toml"), "[limits]\ndeadline = 1\n").unwrap();
        let e = Manifest::load(dir.path()).unwrap_err();
        assert!(e.contains("limits.deadline"), "{e}");
    }
}
