//! The error of fMP4 writing.

/// Why a stream (or one of its frames) cannot be written as fMP4.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fmp4Error {
    /// A codec fMP4 here does not carry (only H.264, H.265 and AAC).
    #[error("unsupported for HLS: {0}")]
    Unsupported(String),
    /// A body that does not parse as its codec says.
    #[error("malformed media: {0}")]
    Malformed(String),
    #[error("fMP4 encoding failed: {0}")]
    Encode(String),
}
