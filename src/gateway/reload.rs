//! Applies a re-read configuration to a running gateway (SIGHUP, `POST /api/v1/config/reload`):
//! the new config is validated whole, live keys are swapped in at once, restart-only keys named.
//!
//! Order matters: everything that can fail (reading and validating the file, then every
//! [`ReloadHook`]'s preparation: the admin token file, the TLS certificate) happens before
//! anything is installed, so a bad file leaves the running configuration untouched. Then the
//! core's snapshot is swapped and each hook commits what it prepared. Hooks are how layers above
//! the core (listeners, TLS, the tunnel, the admin view) keep derived state current without the
//! core knowing them. See `config::key_effect` for which keys are live.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;
use tracing::{error, info, warn};

use super::hub::Core;
use crate::config::{Config, ConfigError};

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
    /// A hook could not prepare (an unreadable certificate or token file); the message names it.
    #[error("{message}")]
    Hook { hook: &'static str, message: String },
}

/// What a hook prepared from a new config, applied only when every hook prepared.
pub struct Prepared {
    /// Puts the prepared state in service; must not fail.
    pub commit: Box<dyn FnOnce() + Send>,
    /// Keys applied beyond what the config diff shows (a token file whose contents changed).
    pub applied: Vec<String>,
    /// The hook re-read files of its own (certificates): reported as reloaded.
    pub reloaded: bool,
}

impl Prepared {
    /// Commits `commit` and reports nothing else.
    pub fn new(commit: impl FnOnce() + Send + 'static) -> Prepared {
        Prepared {
            commit: Box::new(commit),
            applied: Vec::new(),
            reloaded: false,
        }
    }
}

/// State derived from the config outside the core, kept current by reloads.
pub trait ReloadHook: Send + Sync {
    /// Names the hook in logs and errors (`TLS`, `admin`, `tunnel`).
    fn name(&self) -> &'static str;

    /// Derives this hook's state from `new` without putting it in service; an error refuses the
    /// whole reload. `applied` holds the changed live keys the config diff found.
    fn prepare(&self, new: &Config, applied: &[String]) -> Result<Prepared, String>;

    /// A reload without a config file (started without `--config`): re-read whatever files
    /// the hook has. Returns whether it reloaded anything; the default has nothing to re-read.
    fn refresh(&self) -> Result<bool, String> {
        Ok(false)
    }
}

/// Reloads one gateway: where the config comes from, the hooks, one reload at a time.
pub struct Reloader {
    core: Arc<Core>,
    source: OnceLock<ConfigSource>,
    hooks: Mutex<Vec<Arc<dyn ReloadHook>>>,
    /// SIGHUP and the admin API may race.
    one_at_a_time: Mutex<()>,
}

/// The report field for the TLS hook's reload (kept under this name in the admin API).
const TLS_HOOK: &str = "TLS";

impl Reloader {
    pub fn new(core: Arc<Core>) -> Arc<Reloader> {
        Arc::new(Reloader {
            core,
            source: OnceLock::new(),
            hooks: Mutex::new(Vec::new()),
            one_at_a_time: Mutex::new(()),
        })
    }

    /// Sets where [`Reloader::reload`] reads from: `--config` plus the command line in the
    /// binary. Only the first call counts.
    pub fn set_source(&self, source: ConfigSource) {
        let _ = self.source.set(source);
    }

    /// Adds state to keep current; hooks prepare and commit in the order they were added.
    pub fn add_hook(&self, hook: Arc<dyn ReloadHook>) {
        self.lock_hooks().push(hook);
    }

    fn lock_hooks(&self) -> std::sync::MutexGuard<'_, Vec<Arc<dyn ReloadHook>>> {
        self.hooks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Re-reads the configuration and applies it; see the module docs.
    pub fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let _one = self.one_at_a_time.lock().unwrap_or_else(|p| p.into_inner());
        let hooks = self.lock_hooks().clone();
        let Some(source) = self.source.get() else {
            return refresh_only(&hooks);
        };
        let file = source.path().display().to_string();
        info!(%file, "reloading configuration");
        let result = apply(&self.core, &hooks, source);
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
}

/// Without a config file only the hooks' own files are re-read.
fn refresh_only(hooks: &[Arc<dyn ReloadHook>]) -> Result<ReloadReport, ReloadError> {
    let mut reloaded = Vec::new();
    for h in hooks {
        match h.refresh() {
            Ok(true) => reloaded.push(h.name()),
            Ok(false) => {}
            Err(message) => {
                return Err(ReloadError::Hook {
                    hook: h.name(),
                    message,
                });
            }
        }
    }
    if reloaded.is_empty() {
        info!("no config file to reload (started without --config); TLS is not configured");
    } else {
        info!("no config file to reload; {} reloaded", reloaded.join(", "));
    }
    Ok(ReloadReport {
        config_file: None,
        applied: Vec::new(),
        needs_restart: Vec::new(),
        tls_reloaded: reloaded.contains(&TLS_HOOK),
    })
}

fn apply(
    core: &Core,
    hooks: &[Arc<dyn ReloadHook>],
    source: &ConfigSource,
) -> Result<ReloadReport, ReloadError> {
    let new = (source.load)()?;
    // The loader is the caller's; check the result here too rather than trust it.
    new.validate()?;
    let running = core.config();
    let change = running.change_to(&new)?;
    let mut prepared = Vec::with_capacity(hooks.len());
    for h in hooks {
        let p = h
            .prepare(&change.effective, &change.applied)
            .map_err(|message| ReloadError::Hook {
                hook: h.name(),
                message,
            })?;
        prepared.push((h.name(), p));
    }
    let mut applied = change.applied;
    let mut tls_reloaded = false;
    for (name, p) in &prepared {
        for key in &p.applied {
            if !applied.contains(key) {
                applied.push(key.clone());
            }
        }
        tls_reloaded |= p.reloaded && *name == TLS_HOOK;
    }
    applied.sort();

    let config = change.effective;
    core.install(config.clone());
    for (_, p) in prepared {
        (p.commit)();
    }
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
