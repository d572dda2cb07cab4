//! wasmgate: an RTMP media gateway with HTTP tunnelling, WebAssembly applications and an
//! allowlisted admin listener. The binary in `main.rs` is a thin CLI over [`server::Server`].

pub mod client;
pub mod config;
pub mod media;
pub mod rtmp;
pub mod server;
pub mod tls;
pub mod tunnel;
