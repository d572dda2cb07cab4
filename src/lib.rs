//! wasmgate: an RTMP media gateway with HTTP tunnelling, WebAssembly applications and an
//! allowlisted admin listener. The binary in `main.rs` is a thin CLI over [`server::Server`].
//!
//! Dependencies point one way (see `docs/ARCHITECTURE.md`; `tests/architecture.rs` enforces it):
//! `rtmp` ← `media` ← `config` ← `apps` ← `gateway` (the core) ← `driver` ← `tunnel`/`admin`/`web` ←
//! `server` (listeners and wiring). `metrics` and `tls` are leaves anyone may use; `state` (the
//! key-value store apps write through) sits beside `media`.

pub mod admin;
pub mod apps;
pub mod client;
pub mod config;
pub mod driver;
pub mod gateway;
pub mod media;
pub mod metrics;
pub mod relay;
pub mod rtmp;
pub mod server;
pub mod state;
pub mod tls;
pub mod tunnel;
pub mod web;
