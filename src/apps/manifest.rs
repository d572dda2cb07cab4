//! An app's folder: `app.wasm` (the component) and `app.toml`, whose `[settings]` go to the guest
//! as is, whose `[limits]` / `[grants]` set its sandbox and whose `[media]` overrides the
//! gateway's `[media]` defaults for this app. Unknown keys are errors.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

use crate::config::{AppsConfig, FailurePolicy};
use crate::media::RecordMode;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Manifest {
    /// Handed to the guest's `start` as JSON.
    pub settings: toml::Table,
    pub limits: Limits,
    pub grants: Grants,
    pub media: MediaOverrides,
}

/// Overrides of the gateway's `[media]` defaults for this app's streams.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaOverrides {
    /// `off`, `all` or `manual`, as `[media] record`.
    pub record: Option<RecordMode>,
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
    /// Outgoing network through WASI sockets: `false` (none), `true` (everything, with name
    /// lookup) or an allowlist of `ip[/prefix]:port|*` (no name lookup).
    pub network: Network,
    /// Guest stdout/stderr go to the gateway log tagged with the app (else discarded).
    pub stdio: bool,
    /// Directories of the app folder the guest sees (nothing else of the host filesystem).
    pub dirs: Vec<DirGrant>,
}

impl Default for Grants {
    fn default() -> Self {
        Grants {
            env: BTreeMap::new(),
            network: Network::None,
            stdio: true,
            dirs: Vec::new(),
        }
    }
}

/// `[grants] network`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Network {
    #[default]
    None,
    All,
    Allow(Vec<NetRule>),
}

/// One allowlist entry: an address or network, and a port or any (`*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetRule {
    pub net: IpNet,
    pub port: Option<u16>,
}

impl NetRule {
    pub fn parse(text: &str) -> Result<NetRule, String> {
        let bad = |why: &str| {
            format!(
                "{text:?}: {why} (expected ip[/prefix]:port or ip[/prefix]:*, IPv6 in brackets)"
            )
        };
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            rest.split_once("]:").ok_or_else(|| bad("no port"))?
        } else {
            text.rsplit_once(':').ok_or_else(|| bad("no port"))?
        };
        let net = if host.contains('/') {
            host.parse::<IpNet>()
                .map_err(|_| bad("bad network"))?
                .trunc()
        } else {
            IpNet::from(host.parse::<IpAddr>().map_err(|_| bad("bad address"))?)
        };
        let port = match port {
            "*" => None,
            p => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| bad("bad port"))?,
            ),
        };
        Ok(NetRule { net, port })
    }

    pub fn allows(&self, addr: &SocketAddr) -> bool {
        // An IPv4-mapped IPv6 address is the IPv4 address it carries.
        let ip = match addr.ip() {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        self.net.contains(&ip) && self.port.is_none_or(|p| p == addr.port())
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            List(Vec<String>),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected true, false or a list of \"ip[/prefix]:port\"")
        })? {
            Raw::Bool(false) => Ok(Network::None),
            Raw::Bool(true) => Ok(Network::All),
            Raw::List(items) => items
                .iter()
                .map(|t| NetRule::parse(t))
                .collect::<Result<Vec<_>, _>>()
                .map(Network::Allow)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// `[[grants.dirs]]` / `dirs = [{ host = "data", guest = "/data", write = false }]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirGrant {
    /// A folder inside the app folder, relative to it.
    pub host: PathBuf,
    /// Where the guest sees it: an absolute guest path such as `/data`.
    pub guest: String,
    /// Read-only unless true.
    #[serde(default)]
    pub write: bool,
    /// `host` resolved (symlinks followed) at load; always inside the app folder.
    #[serde(skip)]
    pub resolved: PathBuf,
}

impl Grants {
    /// Resolves `dirs` against the app folder `app_dir`, refusing anything that leads outside
    /// it (absolute paths, `..`, symlinks pointing elsewhere) and guest paths that are not
    /// absolute or clash.
    fn resolve(&mut self, app_dir: &Path) -> Result<(), String> {
        let root = app_dir
            .canonicalize()
            .map_err(|e| format!("{}: {e}", app_dir.display()))?;
        let mut seen = std::collections::HashSet::new();
        for (i, d) in self.dirs.iter_mut().enumerate() {
            let key = format!("grants.dirs[{i}]");
            let plain = d
                .host
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
            if d.host.as_os_str().is_empty() || !plain {
                return Err(format!(
                    "{key}.host: {:?} must be a relative path inside the app folder, without `..`",
                    d.host
                ));
            }
            let resolved = root
                .join(&d.host)
                .canonicalize()
                .map_err(|e| format!("{key}.host: {:?}: {e}", d.host))?;
            if !resolved.starts_with(&root) || resolved == root {
                return Err(format!(
                    "{key}.host: {:?} leads outside the app folder (symlink?)",
                    d.host
                ));
            }
            if !resolved.is_dir() {
                return Err(format!("{key}.host: {:?} is not a directory", d.host));
            }
            let guest_ok = d.guest.starts_with('/')
                && !d.guest.split('/').any(|c| c == ".." || c == ".")
                && !d.guest.contains('\0');
            if !guest_ok {
                return Err(format!(
                    "{key}.guest: {:?} must be an absolute guest path like \"/data\", without `.` or `..`",
                    d.guest
                ));
            }
            let guest = d.guest.trim_end_matches('/').to_owned();
            if !seen.insert(guest.clone()) {
                return Err(format!("{key}.guest: {:?} is granted twice", d.guest));
            }
            d.guest = if guest.is_empty() { "/".into() } else { guest };
            d.resolved = resolved;
        }
        Ok(())
    }
}

/// Limits after applying the app's overrides to the `[apps]` defaults.
#[derive(Debug, Clone, Copy)]
pub struct Effective {
    pub deadline: Duration,
    pub memory_bytes: usize,
    pub policy: FailurePolicy,
    /// `[media] record` of `app.toml`; `None` keeps the gateway's.
    pub record: Option<RecordMode>,
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
        let mut m: Manifest = serde_path_to_error::deserialize(de).map_err(|e| {
            format!(
                "{}: {}: {}",
                path.display(),
                e.path(),
                e.inner().message().trim()
            )
        })?;
        m.grants
            .resolve(dir)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(m)
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
            record: self.media.record,
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

    #[test]
    fn media_record_overrides_the_gateway_default() {
        let dir = tempfile::tempdir().unwrap();
        let apps = AppsConfig::default();
        assert_eq!(Manifest::default().effective(&apps).unwrap().record, None);
        std::fs::write(
            dir.path().join("app.toml"),
            "[media]\nrecord = \"manual\"\n",
        )
        .unwrap();
        let m = Manifest::load(dir.path()).unwrap();
        assert_eq!(m.effective(&apps).unwrap().record, Some(RecordMode::Manual));
        for (toml, names) in [
            ("[media]\nrecord = \"sometimes\"\n", "media.record"),
            ("[media]\nrecord_dir = \"/tmp\"\n", "media"),
        ] {
            std::fs::write(dir.path().join("app.toml"), toml).unwrap();
            let e = Manifest::load(dir.path()).unwrap_err();
            assert!(e.contains(names), "{toml}: {e}");
        }
    }
}

#[cfg(test)]
mod grant_tests {
    use super::*;

    fn load(dir: &Path, toml: &str) -> Result<Manifest, String> {
        std::fs::write(dir.join("app.toml"), toml).unwrap();
        Manifest::load(dir)
    }

    #[test]
    fn network_forms() {
        let dir = tempfile::tempdir().unwrap();
        let m = load(dir.path(), "[grants]\nnetwork = true\n").unwrap();
        assert_eq!(m.grants.network, Network::All);
        let m = load(dir.path(), "").unwrap();
        assert_eq!(m.grants.network, Network::None);
        let m = load(
            dir.path(),
            "[grants]\nnetwork = [\"127.0.0.1:9000\", \"10.0.0.0/8:*\", \"[::1]:80\", \"[fd00::/8]:*\"]\n",
        )
        .unwrap();
        let Network::Allow(rules) = &m.grants.network else {
            panic!("{:?}", m.grants.network)
        };
        let allowed = |a: &str| rules.iter().any(|r| r.allows(&a.parse().unwrap()));
        assert!(allowed("127.0.0.1:9000"));
        assert!(!allowed("127.0.0.1:9001"));
        assert!(allowed("10.1.2.3:1"));
        assert!(!allowed("11.0.0.1:1"));
        assert!(allowed("[::1]:80"));
        assert!(allowed("[fd12::1]:5"));
        assert!(allowed("[::ffff:127.0.0.1]:9000"));
        for bad in [
            "\"1.2.3.4\"",
            "\"1.2.3.4:x\"",
            "\"host:80\"",
            "\"1.2.3.4:0\"",
            "1",
        ] {
            let e = load(dir.path(), &format!("[grants]\nnetwork = [{bad}]\n")).unwrap_err();
            assert!(e.contains("grants.network"), "{bad}: {e}");
        }
        let e = load(dir.path(), "[grants]\nnetwork = \"yes\"\n").unwrap_err();
        assert!(e.contains("grants.network"), "{e}");
    }

    #[test]
    fn dirs_stay_inside_the_app_folder() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app");
        std::fs::create_dir_all(app.join("data/sub")).unwrap();
        std::fs::create_dir_all(dir.path().join("outside")).unwrap();
        let m = load(
            &app,
            "[grants]\ndirs = [{ host = \"data\", guest = \"/data/\" }, { host = \"data/sub\", guest = \"/w\", write = true }]\n",
        )
        .unwrap();
        assert_eq!(m.grants.dirs[0].guest, "/data");
        assert!(!m.grants.dirs[0].write);
        assert!(m.grants.dirs[1].write);
        assert_eq!(
            m.grants.dirs[1].resolved,
            app.join("data/sub").canonicalize().unwrap()
        );

        std::os::unix::fs::symlink(dir.path().join("outside"), app.join("link")).unwrap();
        let cases = [
            ("../outside", "/x", "grants.dirs[0].host"),
            ("/tmp", "/x", "grants.dirs[0].host"),
            ("link", "/x", "outside the app folder"),
            ("missing", "/x", "grants.dirs[0].host"),
            (".", "/x", "grants.dirs[0].host"),
            ("app.toml", "/x", "not a directory"),
            ("data", "data", "grants.dirs[0].guest"),
            ("data", "/a/../b", "grants.dirs[0].guest"),
        ];
        for (host, guest, want) in cases {
            let e = load(
                &app,
                &format!("[grants]\ndirs = [{{ host = {host:?}, guest = {guest:?} }}]\n"),
            )
            .unwrap_err();
            assert!(e.contains(want), "{host} {guest}: {e}");
        }
        let e = load(
            &app,
            "[grants]\ndirs = [{ host = \"data\", guest = \"/d\" }, { host = \"data/sub\", guest = \"/d\" }]\n",
        )
        .unwrap_err();
        assert!(e.contains("granted twice"), "{e}");
        let e = load(
            &app,
            "[grants]\ndirs = [{ host = \"data\", guest = \"/d\", mode = \"rw\" }]\n",
        )
        .unwrap_err();
        assert!(e.contains("grants.dirs"), "{e}");
    }
}
