//! The admin listener (FMS's port 1111): HTTP/1.1 with a CIDR allowlist checked on accept,
//! optional bearer token, the JSON API under `/api/v1`, Prometheus `/metrics` and the dashboard.
//!
//! Call order: [`start`] binds and spawns the accept loop and the bandwidth sampler; every
//! accepted socket is judged by its source address before hyper reads a byte from it.

//!
//! | file | job |
//! |---|---|
//! | `listener.rs` | binds, judges each accept by its address, serves HTTP/1.1 (plain or TLS) |
//! | `auth.rs` | the allowlist, trusted proxies and token in force; kept current by a reload hook |
//! | `lockout.rs` | 429 for an address after too many wrong tokens |
//! | `allow.rs` | CIDR lists, `X-Forwarded-For`, constant-time token checks, denial logs |
//! | `api.rs` | routes and handlers; reads the gateway core through its API only |
//! | `apps.rs` | what `/apps` shows (the Wasm host and the built-in live app) |
//! | `metrics.rs` | the Prometheus exporter behind `/metrics` |
//! | `state.rs` | what handlers share |

pub mod allow;
mod api;
pub mod apps;
pub mod auth;
pub mod listener;
mod lockout;
pub mod metrics;
mod state;

pub use apps::{AppError, AppHost, AppInfo, BuiltinApps, GatewayApps};
pub use auth::AdminAuth;
pub use listener::{Admin, AdminError, check, start};
pub use state::AdminDeps;
