//! The gateway's configuration: a TOML file where every field has a default, overridden by CLI
//! flags. Unknown keys and bad values are errors that name the key (`rtmp.chunk_size: ...`).
//!
//! `file.rs` is the whole file ([`Config`]: parsing, validation, what the protocol and media
//! layers get from it), `sections.rs` its `[rtmp]`, `[media]`, `[http]`, `[tls]`, `[admin]` and
//! `[apps]` tables, `changes.rs` what a reload may apply ([`key_effect`], [`Config::change_to`]),
//! `error.rs` the error every part returns. `[shared_objects]` and `[relay]` are in `sections.rs` too. This file only declares and re-exports.

mod changes;
mod error;
mod file;
pub mod nets;
mod sections;

pub use changes::{ConfigChange, KeyEffect, key_effect};
pub use error::ConfigError;
pub use file::Config;
pub use sections::{
    AdminConfig, AppsConfig, EdgePublish, FailurePolicy, HttpSection, Latency, MediaSection,
    PullRule, PushRule, RelaySection, RelayUrl, RtmpConfig, SharedObjectsSection, TlsSection,
    UnknownApps, app_matches,
};
