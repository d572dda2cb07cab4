//! Every wasmtime decision in one place: engine configuration (component model, async, epoch
//! interruption, pooling allocator), linking (WASI p2 + the `host` interface), compiling with an
//! on-disk cache of precompiled artifacts, and the epoch ticker that enforces call deadlines.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use tracing::{debug, info, warn};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config as WtConfig, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::{App, AppPre};
use super::host::HostState;
use super::manifest::{Effective, Manifest};
use crate::config::AppsConfig;

/// How often the epoch advances; deadlines are rounded up to this.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// A compiled, linked app module ready to instantiate.
pub struct Module {
    pub app: String,
    /// SHA-256 of `app.wasm`, hex.
    pub digest: String,
    pub loaded_at: SystemTime,
    pub pre: AppPre<HostState>,
    pub settings_json: Arc<str>,
    pub limits: Effective,
    pub manifest: Manifest,
}

/// The engine and linker shared by every app.
pub struct Runtime {
    pub engine: Engine,
    linker: Linker<HostState>,
    cache_dir: PathBuf,
    stop_ticker: Arc<AtomicBool>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Manifest(String),
    #[error("cannot compile {path}: {message}")]
    Compile { path: String, message: String },
    #[error("{path} does not fit the wasmgate:app world: {message}")]
    Link { path: String, message: String },
}

impl Runtime {
    pub fn new(cfg: &AppsConfig) -> Result<Runtime, String> {
        let mut wc = WtConfig::new();
        wc.wasm_component_model(true);
        wc.epoch_interruption(true);
        let max_memory = (cfg.max_memory_mib as usize) << 20;
        let mut pool = PoolingAllocationConfig::default();
        // A Rust wasip2 component holds a few core instances (the program and its adapters).
        pool.total_component_instances(cfg.max_instances + 2);
        pool.total_core_instances((cfg.max_instances + 2) * 8);
        pool.total_memories((cfg.max_instances + 2) * 2);
        pool.total_tables((cfg.max_instances + 2) * 8);
        pool.total_stacks(cfg.max_instances + 2);
        pool.max_memories_per_component(4);
        pool.max_memory_size(max_memory);
        wc.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        // Memories never move in the pool: reserve the largest cap plus guard pages per slot.
        wc.memory_reservation(max_memory as u64);
        wc.memory_guard_size(64 << 10);
        let engine =
            Engine::new(&wc).map_err(|e| format!("cannot start the Wasm engine: {e:#}"))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| format!("cannot link WASI: {e:#}"))?;
        App::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| format!("cannot link the host interface: {e:#}"))?;

        let cache_dir = cfg
            .cache_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("wasmgate-cache"));
        if let Err(e) = std::fs::create_dir_all(&cache_dir) {
            warn!(dir = %cache_dir.display(), error = %e, "compile cache unavailable; compiling every load");
        }

        // A plain thread, not a task: a guest spinning on a runtime worker must not be able to
        // starve the clock that interrupts it.
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let (e, stop) = (engine.clone(), stop_ticker.clone());
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    e.increment_epoch();
                }
            })
            .map_err(|e| format!("cannot start the epoch thread: {e}"))?;
        Ok(Runtime {
            engine,
            linker,
            cache_dir,
            stop_ticker,
        })
    }

    /// Loads `dir` (`app.wasm` + `app.toml`): blocking (compiles), run it off the runtime.
    pub fn load(&self, app: &str, dir: &Path, cfg: &AppsConfig) -> Result<Module, LoadError> {
        let manifest = Manifest::load(dir).map_err(LoadError::Manifest)?;
        let limits = manifest.effective(cfg).map_err(LoadError::Manifest)?;
        let path = dir.join("app.wasm");
        let bytes = std::fs::read(&path).map_err(|source| LoadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let digest = hex(ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref());
        let component = self.compile_cached(&path, &bytes, &digest)?;
        let link = |e: wasmtime::Error| LoadError::Link {
            path: path.display().to_string(),
            message: format!("{e:#}"),
        };
        let pre = self.linker.instantiate_pre(&component).map_err(link)?;
        let pre = AppPre::new(pre).map_err(link)?;
        Ok(Module {
            app: app.to_owned(),
            digest,
            loaded_at: SystemTime::now(),
            pre,
            settings_json: manifest.settings_json().into(),
            limits,
            manifest,
        })
    }

    /// Compiles once per module and engine: the artifact is kept under
    /// `cache_dir/<sha256>-<engine hash>.cwasm`.
    fn compile_cached(
        &self,
        path: &Path,
        bytes: &[u8],
        digest: &str,
    ) -> Result<Component, LoadError> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        env!("CARGO_PKG_VERSION").hash(&mut h);
        let file = self
            .cache_dir
            .join(format!("{digest}-{:016x}.cwasm", h.finish()));
        if file.exists() {
            // SAFETY: wasmtime requires `unsafe` here because a crafted artifact is native code.
            // The cache holds only files this process family wrote with `Engine::precompile_component`
            // under a name bound to the module's SHA-256 and this engine's compatibility hash;
            // wasmtime also checks the header for a matching engine configuration.
            match unsafe { Component::deserialize_file(&self.engine, &file) } {
                Ok(c) => {
                    debug!(file = %file.display(), "compiled module taken from the cache");
                    return Ok(c);
                }
                Err(e) => {
                    warn!(file = %file.display(), error = %e, "cached artifact unusable; recompiling")
                }
            }
        }
        let started = std::time::Instant::now();
        let compiled = self
            .engine
            .precompile_component(bytes)
            .map_err(|e| LoadError::Compile {
                path: path.display().to_string(),
                message: format!("{e:#}"),
            })?;
        info!(module = %path.display(), ms = started.elapsed().as_millis() as u64, "module compiled");
        // Written to a temporary name and renamed, so a concurrent reader never sees half a file.
        let tmp = file.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, &compiled)
            .and_then(|_| std::fs::rename(&tmp, &file))
            .is_err()
        {
            let _ = std::fs::remove_file(&tmp);
            warn!(file = %file.display(), "cannot write the compile cache");
        }
        // SAFETY: `compiled` was produced just now by `precompile_component` on this engine.
        unsafe { Component::deserialize(&self.engine, &compiled) }.map_err(|e| LoadError::Compile {
            path: path.display().to_string(),
            message: format!("{e:#}"),
        })
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
