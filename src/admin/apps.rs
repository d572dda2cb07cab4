//! What the admin API knows about applications: a small [`AppHost`] trait the Wasm app host
//! implements, and [`BuiltinApps`], which reports the built-in live app from connected clients.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use crate::gateway::Core;

/// One instance (`app/instance`) of an application.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InstanceInfo {
    pub name: String,
    pub clients: usize,
}

/// An application as `/api/v1/apps` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AppInfo {
    pub name: String,
    /// `live` for the built-in live app, `wasm` for a loaded component.
    pub kind: String,
    pub instances: Vec<InstanceInfo>,
    pub clients: usize,
    /// Hex SHA-256 of the loaded module; `null` for the built-in app.
    pub module_digest: Option<String>,
    /// When the module was (re)loaded, RFC 3339; `null` for the built-in app.
    pub loaded_at: Option<String>,
    /// Guest traps since the module was loaded.
    pub traps: u64,
}

/// Why an app operation failed; maps to the HTTP status of the JSON error.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AppError {
    /// 404: no such app.
    #[error("no application named {0:?}")]
    NotFound(String),
    /// 501: the app exists but cannot do this (e.g. reload the built-in live app).
    #[error("{0}")]
    NotSupported(String),
    /// 500: the operation was attempted and failed (e.g. the new module does not compile).
    #[error("{0}")]
    Failed(String),
}

impl AppError {
    pub fn status(&self) -> u16 {
        match self {
            AppError::NotFound(_) => 404,
            AppError::NotSupported(_) => 501,
            AppError::Failed(_) => 500,
        }
    }
}

/// The application host as the admin API sees it. The Wasm host implements this and is handed
/// to [`crate::admin::start`] instead of [`BuiltinApps`].
pub trait AppHost: Send + Sync {
    fn list(&self) -> Vec<AppInfo>;
    fn get(&self, name: &str) -> Option<AppInfo> {
        self.list().into_iter().find(|a| a.name == name)
    }
    /// Reloads the app's module from disk; returns the app as it is now (new digest).
    fn reload(&self, name: &str) -> Result<AppInfo, AppError>;
    /// Unloads the app: its clients are disconnected and its instances dropped.
    fn unload(&self, name: &str) -> Result<(), AppError>;
}

/// The built-in live app: every app name clients connect to, with no module behind it.
pub struct BuiltinApps {
    core: Arc<Core>,
}

impl BuiltinApps {
    pub fn new(core: Arc<Core>) -> BuiltinApps {
        BuiltinApps { core }
    }
}

impl AppHost for BuiltinApps {
    fn list(&self) -> Vec<AppInfo> {
        let mut apps: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        for c in self.core.clients().list() {
            if let Some((app, instance)) = c.app() {
                *apps.entry(app).or_default().entry(instance).or_default() += 1;
            }
        }
        apps.into_iter()
            .map(|(name, instances)| AppInfo {
                clients: instances.values().sum(),
                instances: instances
                    .into_iter()
                    .map(|(name, clients)| InstanceInfo { name, clients })
                    .collect(),
                name,
                kind: "live".into(),
                module_digest: None,
                loaded_at: None,
                traps: 0,
            })
            .collect()
    }

    fn reload(&self, name: &str) -> Result<AppInfo, AppError> {
        match self.get(name) {
            Some(_) => Err(AppError::NotSupported(format!(
                "{name} is served by the built-in live app, which has no module to reload"
            ))),
            None => Err(AppError::NotFound(name.into())),
        }
    }

    fn unload(&self, name: &str) -> Result<(), AppError> {
        match self.get(name) {
            Some(_) => Err(AppError::NotSupported(format!(
                "{name} is served by the built-in live app, which cannot be unloaded \
                 (kick its clients instead)"
            ))),
            None => Err(AppError::NotFound(name.into())),
        }
    }
}

/// RFC 3339 UTC with seconds, e.g. `2026-11-30T02:15:00Z` (no date crate needed for this).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm), valid for the proleptic Gregorian calendar.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The gateway's real application host: Wasm apps from the apps folder (digest, load time,
/// traps, reload/unload through [`crate::apps::AppManager`]) and, for every other app name
/// clients use, the built-in live app.
pub struct GatewayApps {
    core: Arc<Core>,
    builtin: BuiltinApps,
}

impl GatewayApps {
    pub fn new(core: Arc<Core>) -> GatewayApps {
        GatewayApps {
            builtin: BuiltinApps::new(core.clone()),
            core,
        }
    }

    fn wasm_info(&self, a: crate::apps::AppInfo) -> AppInfo {
        let mut counts: BTreeMap<String, usize> =
            a.instances.iter().map(|i| (i.clone(), 0)).collect();
        for c in self.core.clients().list() {
            if let Some((app, instance)) = c.app()
                && app == a.name
            {
                *counts.entry(instance).or_default() += 1;
            }
        }
        AppInfo {
            clients: counts.values().sum(),
            instances: counts
                .into_iter()
                .map(|(name, clients)| InstanceInfo { name, clients })
                .collect(),
            name: a.name,
            kind: "wasm".into(),
            module_digest: Some(a.digest),
            loaded_at: Some(rfc3339(a.loaded_at)),
            traps: a.traps,
        }
    }
}

impl AppHost for GatewayApps {
    fn list(&self) -> Vec<AppInfo> {
        let wasm: Vec<AppInfo> = self
            .core
            .apps()
            .list()
            .into_iter()
            .map(|a| self.wasm_info(a))
            .collect();
        let mut all: Vec<AppInfo> = self
            .builtin
            .list()
            .into_iter()
            .filter(|b| !wasm.iter().any(|w| w.name == b.name))
            .collect();
        all.extend(wasm);
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    fn reload(&self, name: &str) -> Result<AppInfo, AppError> {
        let known = self.core.apps().list().iter().any(|a| a.name == name);
        match self.core.apps().reload_blocking(name) {
            Ok(info) => Ok(self.wasm_info(info)),
            // A folder that was never loaded and does not load now is "not found" unless
            // clients use it as a live app.
            Err(e) if !known => match self.builtin.get(name) {
                Some(_) => self.builtin.reload(name),
                None => Err(AppError::NotFound(format!("{name} ({e})"))),
            },
            Err(e) => Err(AppError::Failed(e)),
        }
    }

    fn unload(&self, name: &str) -> Result<(), AppError> {
        if self.core.apps().unload(name) {
            Ok(())
        } else {
            self.builtin.unload(name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_006_096);
        assert_eq!(rfc3339(t), "2026-11-30T02:34:56Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }
}
