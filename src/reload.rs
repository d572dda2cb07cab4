//! Applies a re-read configuration to a running gateway (SIGHUP, `POST /api/v1/config/reload`):
//! the new config is validated whole, live keys are swapped in at once, restart-only keys named.
//!
//! Order matters: everything that can fail (reading and validating the file, the admin token
//! file, the TLS certificate) happens before anything is installed, so a bad file leaves the
//! running configuration untouched. See `config::key_effect` for which keys are live.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tracing::{error, info, warn};

use crate::config::{Config, ConfigError};
use crate::server::{Live, Shared};
use crate::tls::{PreparedTls, TlsError};

type Loader = dyn Fn() -> Result<Config, ConfigError> + Send + Sync;
type Hook = dyn Fn(&Config, &[String]) + Send + Sync;

/// Where a reload reads the configuration: a file, through the same function that built the
/// start-up config, so command-line overrides are applied on top again.
pub struct ConfigSource {
    path: PathBuf,
    load: Box<Loader>,
    on_apply: Option<Box<Hook>>,
}

impl ConfigSource {
    /// `load` reads `path` and applies whatever the process applied at start-up.
    pub fn new(
        path: PathBuf,
        load: impl Fn() -> Result<Config, ConfigError> + Send + Sync + 'static,
    ) -> ConfigSource {
        ConfigSource {
            path,
            load: Box::new(load),
            on_apply: None,
        }
    }

    /// Runs `hook` with the new config and the applied keys after each successful reload,
    /// for what lives outside the server (the binary's log filter).
    pub fn on_apply(mut self, hook: impl Fn(&Config, &[String]) + Send + Sync + 'static) -> Self {
        self.on_apply = Some(Box::new(hook));
        self
    }

    /// The file alone, without overrides.
    pub fn file(path: PathBuf) -> ConfigSource {
        let p = path.clone();
        ConfigSource::new(path, move || Config::from_file(&p))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What a reload did; the admin API returns it as JSON.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReloadReport {
    /// The file read; `None` when the gateway runs without `--config` (only TLS reloads).
    pub config_file: Option<PathBuf>,
    /// Changed keys now in force (sorted, dotted: `rtmp.max_connections`).
    pub applied: Vec<String>,
    /// Changed keys that keep their running value until a restart.
    pub needs_restart: Vec<String>,
    /// Whether a TLS certificate and key were (re)loaded.
    pub tls_reloaded: bool,
}

/// Why a reload was refused; nothing was applied.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Tls(#[from] TlsError),
}

/// Re-reads the configuration and applies it; see the module docs. One reload runs at a time.
pub fn reload(shared: &Shared) -> Result<ReloadReport, ReloadError> {
    let _one_at_a_time = shared.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
    let Some(source) = shared.config_source() else {
        let tls_reloaded = match shared.reload_tls() {
            Ok(()) => true,
            Err(TlsError::NotConfigured) => false,
            Err(e) => return Err(e.into()),
        };
        if tls_reloaded {
            info!("no config file to reload; TLS reloaded");
        } else {
            info!("no config file to reload (started without --config); TLS is not configured");
        }
        return Ok(ReloadReport {
            config_file: None,
            applied: Vec::new(),
            needs_restart: Vec::new(),
            tls_reloaded,
        });
    };
    let file = source.path().display().to_string();
    info!(%file, "reloading configuration");
    let result = apply(shared, source);
    crate::metrics::config_reload(result.is_ok());
    match result {
        Ok(report) => {
            info!(
                %file,
                applied = report.applied.len(),
                needs_restart = report.needs_restart.len(),
                tls = report.tls_reloaded,
                "configuration reloaded"
            );
            Ok(report)
        }
        Err(e) => {
            error!(%file, "config reload refused, the running configuration stays in force: {e}");
            Err(e)
        }
    }
}

fn apply(shared: &Shared, source: &ConfigSource) -> Result<ReloadReport, ReloadError> {
    let new = (source.load)()?;
    // The loader is the caller's; check the result here too rather than trust it.
    new.validate()?;
    let running = shared.config();
    let change = running.change_to(&new)?;
    // Resolves the admin token (re-reading `token_file`, like the certificate below).
    let live = Live::new(change.effective)?;
    let tls = PreparedTls::load(
        live.config.tls.cert.as_deref(),
        live.config.tls.key.as_deref(),
    )?;
    let tls_reloaded = tls.is_enabled();
    let mut applied = change.applied;
    // Same key, new file contents: the token changed all the same.
    if live.admin.token_differs(&shared.admin_auth())
        && !applied.iter().any(|k| k.starts_with("admin.token"))
    {
        applied.push("admin.token_file".into());
        applied.sort();
    }

    let config = live.config.clone();
    shared.install(live, Some(tls));
    if let Some(hook) = &source.on_apply {
        hook(&config, &applied);
    }

    for key in &applied {
        info!(key = %key, "config reload: {key} applied");
    }
    let running = serde_json::to_value(&*running).unwrap_or_default();
    for key in &change.needs_restart {
        let value = running
            .pointer(&format!("/{}", key.replace('.', "/")))
            .map(|v| v.to_string())
            .unwrap_or_default();
        if key.ends_with("listen") {
            warn!(key = %key, "{key} changed: needs a restart, still listening on {value}");
        } else {
            warn!(key = %key, "{key} changed: needs a restart, still using {value}");
        }
    }
    Ok(ReloadReport {
        config_file: Some(source.path().to_path_buf()),
        applied,
        needs_restart: change.needs_restart,
        tls_reloaded,
    })
}
