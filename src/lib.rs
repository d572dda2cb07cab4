//! wasmgate: an RTMP media gateway with HTTP tunnelling, WebAssembly applications and an
//! allowlisted admin listener. The binary in `main.rs` is a thin CLI over [`server::Server`].

pub mod admin;
pub mod apps;
pub mod client;
pub mod config;
pub mod media;
pub mod metrics;
pub mod reload;
pub mod rtmp;
pub mod server;
pub mod tls;
pub mod tunnel;
