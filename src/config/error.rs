//! The one error type of configuration loading: a file that cannot be read, or a key whose
//! value is refused (named by its dotted path).

/// Why a config was not loaded: the file is unreadable, or a value (named by its key) is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}
