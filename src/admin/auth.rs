//! Who may use the admin listener right now: the allowlist, trusted proxies and bearer token
//! built from `[admin]`, swapped whole by a config reload through [`AuthReload`].

use std::sync::{Arc, RwLock};

use super::allow::NetList;
use crate::config::{Config, ConfigError};
use crate::gateway::{Prepared, ReloadHook};

/// Who may use the admin listener: the allowlist, trusted proxies and token, checked on every
/// accept and request. Built from `[admin]` at start and swapped whole by a config reload.
#[derive(Debug, Default)]
pub struct AdminAuth {
    pub(super) allow: NetList,
    pub(super) trusted: NetList,
    pub(super) token: Option<String>,
}

impl AdminAuth {
    /// Parses the networks and resolves the token (reads `token_file`); errors name the key.
    pub fn from_config(cfg: &crate::config::AdminConfig) -> Result<AdminAuth, ConfigError> {
        Ok(AdminAuth {
            allow: NetList::new(cfg.allow_nets()?),
            trusted: NetList::new(cfg.trusted_proxy_nets()?),
            token: cfg.resolve_token()?,
        })
    }

    /// Whether this and `other` would admit different requests (same lists and token: no).
    pub fn token_differs(&self, other: &AdminAuth) -> bool {
        self.token != other.token
    }

    /// The rules for `config` (empty when the admin listener is disabled).
    pub(super) fn for_config(config: &Config) -> Result<AdminAuth, ConfigError> {
        if config.admin.enabled {
            AdminAuth::from_config(&config.admin)
        } else {
            Ok(AdminAuth::default())
        }
    }
}

/// The admin rules in force; a config reload swaps them whole (see [`AuthReload`]).
#[derive(Default)]
pub(super) struct AuthCell(pub(super) RwLock<Arc<AdminAuth>>);

impl AuthCell {
    pub(super) fn get(&self) -> Arc<AdminAuth> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, auth: AdminAuth) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(auth);
    }
}

/// Re-reads the allowlist, trusted proxies and token (file) on every config reload; an
/// unreadable token file refuses the reload.
pub(super) struct AuthReload(pub(super) Arc<AuthCell>);

impl ReloadHook for AuthReload {
    fn name(&self) -> &'static str {
        "admin"
    }

    fn prepare(&self, new: &Config, applied: &[String]) -> Result<Prepared, String> {
        let auth = AdminAuth::for_config(new).map_err(|e| e.to_string())?;
        let mut extra = Vec::new();
        // Same key, new file contents: the token changed all the same.
        if auth.token_differs(&self.0.get())
            && !applied.iter().any(|k| k.starts_with("admin.token"))
        {
            extra.push("admin.token_file".to_owned());
        }
        let cell = self.0.clone();
        let mut p = Prepared::new(move || cell.set(auth));
        p.applied = extra;
        Ok(p)
    }
}
