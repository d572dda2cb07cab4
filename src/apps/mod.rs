//! WebAssembly applications: the wasmtime host for `wit/app.wit`. The gateway sees "an app that
//! answers events"; everything about engines, stores, limits and reloads stays in this module.
//!
//! Layout: [`AppManager`] (this file) loads `DIR/<app>/` folders, watches them and routes each
//! `app/instance` to an actor (`instance.rs`) that owns the guest; connections talk to actors
//! with bounded queues ([`ToActor`] in, [`ToConn`] out, `messages.rs`), so a slow or broken app
//! never blocks a connection task or any media. `engine.rs` holds every wasmtime setting,
//! `host.rs` what a guest may call, `entry.rs` a loaded module and its counters. Children never
//! import this file: dependencies run mod.rs → instance → engine/host → messages → bindings.

mod bindings;
mod engine;
mod entry;
mod host;
mod instance;
pub mod json;
mod manifest;
mod messages;
mod so_calls;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, mpsc};
use tracing::{error, info, warn};

pub use entry::{AppEntry, AppStats};
pub use instance::{APP_ERROR, ToActor};
pub use messages::{ClientMeta, DataOutcome, ToConn};

use crate::config::{AppsConfig, FailurePolicy, UnknownApps};
use crate::media::Registry;
use crate::media::record::Recordings;
use crate::state::shared_objects::SoAccess;
use crate::state::{MemoryStore, StateStore};
use engine::{Module, Runtime};
use entry::lock;

/// What `list()` reports per app.
#[derive(Debug, Clone)]
pub struct AppInfo {
    pub name: String,
    /// SHA-256 of `app.wasm`, hex.
    pub digest: String,
    pub loaded_at: SystemTime,
    pub instances: Vec<String>,
    pub failure_policy: FailurePolicy,
    pub deadline_ms: u64,
    pub memory_mib: u64,
    pub events: u64,
    pub traps: u64,
    pub deadlines: u64,
    pub memory_faults: u64,
    pub restarts: u64,
    pub reloads: u64,
    pub load_errors: u64,
}

/// Where a connect to `app/instance` goes.
pub enum Route {
    /// No module: the built-in live application.
    Live,
    /// No module and `apps.unknown_apps = "deny"`.
    Deny,
    App(InstanceHandle),
}

/// A connection's link to its instance actor.
#[derive(Clone)]
pub struct InstanceHandle {
    tx: mpsc::Sender<ToActor>,
    entry: Arc<AppEntry>,
}

impl InstanceHandle {
    /// Queues an event; when the instance's queue is full (or the instance is gone) the event
    /// fails and the caller applies [`InstanceHandle::policy`].
    pub fn send(&self, msg: ToActor) -> Result<(), Busy> {
        self.tx.try_send(msg).map_err(|_| {
            self.entry.stats.busy.fetch_add(1, Ordering::Relaxed);
            Busy
        })
    }

    pub fn policy(&self) -> FailurePolicy {
        self.entry.module().limits.policy
    }

    pub fn app(&self) -> &str {
        &self.entry.name
    }

    /// The app's `[media] record` override, read at each publish so a reload applies to the
    /// next one.
    pub fn record_mode(&self) -> Option<crate::media::RecordMode> {
        self.entry.module().limits.record
    }
}

/// The instance could not take an event.
#[derive(Debug)]
pub struct Busy;

type InstanceKey = (String, String);

/// Loads, routes, reloads and unloads apps.
pub struct AppManager {
    cfg: AppsConfig,
    runtime: Option<Arc<Runtime>>,
    registry: Arc<Registry>,
    /// What guests' `record-start` / `record-stop` act on.
    recordings: Arc<Recordings>,
    /// Where every instance's `kv-*` calls go.
    state: Arc<dyn StateStore>,
    /// Where every instance's `so-*` calls go.
    shared_objects: Arc<dyn SoAccess>,
    apps: Mutex<HashMap<String, Arc<AppEntry>>>,
    instances: Mutex<HashMap<InstanceKey, mpsc::Sender<ToActor>>>,
    /// Serialises loads of the same folder (watcher and admin may both ask).
    load_lock: tokio::sync::Mutex<()>,
    watcher: Mutex<Option<notify::RecommendedWatcher>>,
}

impl AppManager {
    /// No apps folder: every app is the live app (or denied), no engine is created.
    pub fn disabled(
        cfg: AppsConfig,
        registry: Arc<Registry>,
        recordings: Arc<Recordings>,
        state: Arc<dyn StateStore>,
        shared_objects: Arc<dyn SoAccess>,
    ) -> Arc<AppManager> {
        Arc::new(AppManager {
            cfg,
            runtime: None,
            registry,
            recordings,
            state,
            shared_objects,
            apps: Mutex::new(HashMap::new()),
            instances: Mutex::new(HashMap::new()),
            load_lock: tokio::sync::Mutex::new(()),
            watcher: Mutex::new(None),
        })
    }

    /// Creates the engine, loads every `DIR/<app>/app.wasm` (a broken app is logged and left
    /// out) and starts watching the folder. Fails only when the engine or folder is unusable.
    pub async fn start(
        cfg: AppsConfig,
        registry: Arc<Registry>,
        recordings: Arc<Recordings>,
        state: Arc<dyn StateStore>,
        shared_objects: Arc<dyn SoAccess>,
    ) -> Result<Arc<AppManager>, String> {
        let Some(dir) = cfg.dir.clone() else {
            return Ok(AppManager::disabled(
                cfg,
                registry,
                recordings,
                state,
                shared_objects,
            ));
        };
        if !dir.is_dir() {
            return Err(format!("apps.dir: {} is not a directory", dir.display()));
        }
        let rt_cfg = cfg.clone();
        let runtime = tokio::task::spawn_blocking(move || Runtime::new(&rt_cfg))
            .await
            .map_err(|e| format!("engine start panicked: {e}"))??;
        let mgr = Arc::new(AppManager {
            runtime: Some(Arc::new(runtime)),
            ..Arc::into_inner(AppManager::disabled(
                cfg,
                registry,
                recordings,
                state,
                shared_objects,
            ))
            .ok_or("unreachable")?
        });
        for app in app_folders(&dir) {
            if let Err(e) = mgr.reload(&app).await {
                error!(%app, error = %e, "app not loaded");
            }
        }
        if mgr.cfg.watch {
            mgr.watch(&dir)?;
        }
        Ok(mgr)
    }

    fn app_dir(&self, app: &str) -> Option<PathBuf> {
        self.cfg.dir.as_ref().map(|d| d.join(app))
    }

    /// Routes a connect; spawns the instance actor on the first connect to `app/instance`.
    pub fn route(&self, app: &str, instance: &str) -> Route {
        let entry = lock(&self.apps).get(app).cloned();
        let (Some(entry), Some(runtime)) = (entry, self.runtime.clone()) else {
            return match self.cfg.unknown_apps {
                UnknownApps::Live => Route::Live,
                UnknownApps::Deny => Route::Deny,
            };
        };
        let key = (app.to_owned(), instance.to_owned());
        let mut instances = lock(&self.instances);
        if let Some(tx) = instances.get(&key).filter(|tx| !tx.is_closed()) {
            return Route::App(InstanceHandle {
                tx: tx.clone(),
                entry,
            });
        }
        if instances.len() >= self.cfg.max_instances as usize {
            instances.retain(|_, tx| !tx.is_closed());
        }
        let (tx, rx) = mpsc::channel(self.cfg.queue);
        if instances.len() < self.cfg.max_instances as usize {
            let st =
                host::InstanceState::new(app, instance, self.registry.clone(), self.state.clone())
                    .with_recordings(self.recordings.clone())
                    .with_shared_objects(self.shared_objects.clone());
            let actor = instance::Actor::new(runtime, entry.clone(), self.cfg.clone(), rx, st);
            tokio::spawn(actor.run());
            instances.insert(key, tx.clone());
        } else {
            warn!(
                app,
                instance,
                max = self.cfg.max_instances,
                "instance limit reached"
            );
            // The receiver is dropped: every event fails with the app's policy.
        }
        Route::App(InstanceHandle { tx, entry })
    }

    /// Every loaded app with its module digest, load time, instances and counters.
    pub fn list(&self) -> Vec<AppInfo> {
        let apps: Vec<Arc<AppEntry>> = lock(&self.apps).values().cloned().collect();
        let instances = lock(&self.instances);
        let mut out: Vec<AppInfo> = apps
            .iter()
            .map(|e| {
                let m = e.module();
                let s = &e.stats;
                let mut inst: Vec<String> = instances
                    .iter()
                    .filter(|((a, _), tx)| *a == e.name && !tx.is_closed())
                    .map(|((_, i), _)| i.clone())
                    .collect();
                inst.sort();
                AppInfo {
                    name: e.name.clone(),
                    digest: m.digest.clone(),
                    loaded_at: m.loaded_at,
                    instances: inst,
                    failure_policy: m.limits.policy,
                    deadline_ms: m.limits.deadline.as_millis() as u64,
                    memory_mib: (m.limits.memory_bytes >> 20) as u64,
                    events: s.events.load(Ordering::Relaxed),
                    traps: s.traps.load(Ordering::Relaxed),
                    deadlines: s.deadlines.load(Ordering::Relaxed),
                    memory_faults: s.memory.load(Ordering::Relaxed),
                    restarts: s.restarts.load(Ordering::Relaxed),
                    reloads: s.reloads.load(Ordering::Relaxed),
                    load_errors: s.load_errors.load(Ordering::Relaxed),
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// (Re)loads `DIR/<app>`: compiles, links and test-starts the module; only then do new
    /// events go to it (running instances swap over, clients stay connected). On any error the
    /// old module keeps serving and the error is returned (and logged by callers).
    pub async fn reload(&self, app: &str) -> Result<AppInfo, String> {
        let runtime = self.runtime.clone().ok_or("no apps folder is configured")?;
        if app.is_empty() || app.contains(['/', '\\']) || app.starts_with('.') {
            return Err(format!("{app:?} is not an app name"));
        }
        let dir = self.app_dir(app).ok_or("no apps folder is configured")?;
        let _guard = self.load_lock.lock().await;
        let result = self.load_checked(&runtime, app, dir).await;
        let module = match result {
            Ok(m) => m,
            Err(e) => {
                if let Some(entry) = lock(&self.apps).get(app) {
                    entry.stats.load_errors.fetch_add(1, Ordering::Relaxed);
                }
                return Err(e);
            }
        };
        let module = Arc::new(module);
        let existing = lock(&self.apps).get(app).cloned();
        match existing {
            Some(entry) => {
                *lock(&entry.module) = module.clone();
                entry.stats.reloads.fetch_add(1, Ordering::Relaxed);
                let actors: Vec<_> = lock(&self.instances)
                    .iter()
                    .filter(|((a, _), _)| a == app)
                    .map(|(_, tx)| tx.clone())
                    .collect();
                for tx in actors {
                    // A full queue gets the swap on the next instance restart instead.
                    let _ = tx.try_send(ToActor::Reload(module.clone()));
                }
                info!(app, digest = %instance::short(&module.digest), "app reloaded");
            }
            None => {
                lock(&self.apps).insert(
                    app.to_owned(),
                    Arc::new(AppEntry {
                        name: app.to_owned(),
                        module: Mutex::new(module.clone()),
                        stats: AppStats::default(),
                    }),
                );
                info!(app, digest = %instance::short(&module.digest), "app loaded");
            }
        }
        self.list()
            .into_iter()
            .find(|i| i.name == app)
            .ok_or_else(|| "app vanished while loading".to_owned())
    }

    /// [`AppManager::reload`] for synchronous callers (the admin API's `AppHost::reload`) on a
    /// multi-threaded tokio runtime: blocks this worker while the module compiles.
    pub fn reload_blocking(&self, app: &str) -> Result<AppInfo, String> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| "reload needs the gateway's runtime".to_owned())?;
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return Err("reload_blocking needs a multi-threaded runtime; use reload".into());
        }
        tokio::task::block_in_place(|| handle.block_on(self.reload(app)))
    }

    async fn load_checked(
        &self,
        runtime: &Arc<Runtime>,
        app: &str,
        dir: PathBuf,
    ) -> Result<Module, String> {
        let (rt, cfg, name) = (runtime.clone(), self.cfg.clone(), app.to_owned());
        let module = tokio::task::spawn_blocking(move || rt.load(&name, &dir, &cfg))
            .await
            .map_err(|e| format!("load panicked: {e}"))?
            .map_err(|e| e.to_string())?;
        // A trial start with an empty instance catches a module that traps or refuses its
        // settings before any client is sent to it. Its state is private and dropped after.
        let probe = host::InstanceState::new(
            app,
            "_probe_",
            self.registry.clone(),
            Arc::new(MemoryStore::default()),
        );
        match instance::instantiate(runtime, &module, probe).await {
            Ok((mut store, bindings)) => {
                let _ = bindings.wasmgate_app_guest().call_stop(&mut store).await;
                Ok(module)
            }
            Err((f, _)) => Err(format!("{app}: the new module does not start: {f}")),
        }
    }

    /// Stops every instance of `app` (their clients are disconnected, as FMS's unload did) and
    /// forgets the module. False when no such app is loaded.
    pub fn unload(&self, app: &str) -> bool {
        let removed = lock(&self.apps).remove(app).is_some();
        let mut instances = lock(&self.instances);
        instances.retain(|(a, _), tx| {
            if a == app {
                let _ = tx.try_send(ToActor::Shutdown("Application unloaded.".into()));
                false
            } else {
                true
            }
        });
        if removed {
            info!(app, "app unloaded");
        }
        removed
    }

    /// Watches the apps folder; changes under `DIR/<app>/` reload that app after a quiet time.
    fn watch(self: &Arc<Self>, dir: &Path) -> Result<(), String> {
        use notify::Watcher;
        let dirty: Arc<Mutex<HashSet<String>>> = Arc::default();
        let wake = Arc::new(Notify::new());
        // Events carry absolute paths: a relative `--apps apps` must be made absolute to match.
        let root = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let (d, w) = (dirty.clone(), wake.clone());
        let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            let Ok(ev) = ev else { return };
            if ev.kind.is_access() {
                return;
            }
            let mut set = lock(&d);
            for p in &ev.paths {
                let Ok(rel) = p.strip_prefix(&root) else {
                    continue;
                };
                // Only the folder itself and the two files that make the app count: a guest
                // writing into a granted directory inside its folder must not reload it.
                let mut parts = rel.components();
                let (first, second) = (parts.next(), parts.next());
                let defines_app = parts.next().is_none()
                    && second
                        .is_none_or(|c| c.as_os_str() == "app.wasm" || c.as_os_str() == "app.toml");
                if let Some(app) = first
                    .filter(|_| defines_app)
                    .and_then(|c| c.as_os_str().to_str())
                    .filter(|a| !a.starts_with('.'))
                {
                    // Bounded by the number of folders in the apps directory.
                    set.insert(app.to_owned());
                }
            }
            drop(set);
            w.notify_one();
        })
        .map_err(|e| format!("apps.watch: cannot watch {}: {e}", dir.display()))?;
        watcher
            .watch(dir, notify::RecursiveMode::Recursive)
            .map_err(|e| format!("apps.watch: cannot watch {}: {e}", dir.display()))?;
        *lock(&self.watcher) = Some(watcher);
        let weak = Arc::downgrade(self);
        let debounce = Duration::from_millis(self.cfg.reload_debounce_ms);
        let root = dir.to_path_buf();
        tokio::spawn(async move {
            loop {
                wake.notified().await;
                // Debounce: wait until the folder has been quiet for `debounce`.
                loop {
                    tokio::select! {
                        _ = wake.notified() => continue,
                        _ = tokio::time::sleep(debounce) => break,
                    }
                }
                let Some(mgr) = weak.upgrade() else { return };
                let apps: Vec<String> = lock(&dirty).drain().collect();
                for app in apps {
                    if root.join(&app).join("app.wasm").is_file() {
                        if let Err(e) = mgr.reload(&app).await {
                            error!(%app, error = %e, "reload failed; the previous module keeps serving");
                        }
                    } else if lock(&mgr.apps).contains_key(&app) {
                        mgr.unload(&app);
                    }
                }
            }
        });
        info!(dir = %dir.display(), "watching the apps folder for changes");
        Ok(())
    }
}

/// Sub-folders of `dir` that hold an `app.wasm`.
fn app_folders(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("app.wasm").is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| !n.starts_with('.'))
        .collect();
    out.sort();
    out
}
