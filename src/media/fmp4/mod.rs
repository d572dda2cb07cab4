//! Fragmented MP4 (CMAF) of live streams, for LL-HLS: the init segment of a stream's H.264 or
//! H.265 and AAC tracks, `moof`+`mdat` fragments of its frames, and the [`Segmenter`] that cuts
//! a stream into parts and segments and keeps a bounded window of them. Sans-IO: FLV bodies
//! and the clock in, shared `Bytes` out; `web::hls` drives it and serves the bytes.
//!
//! The boxes are encoded with `mp4-atom`, already the VOD reader's crate (kixelated/mp4-atom,
//! maintained, MIT/Apache): it encodes `moof`/`traf`/`tfhd`/`tfdt`/`trun` (version 1, signed
//! composition offsets), `mvex`/`trex`, and decodes and re-encodes `avcC`, `hvcC` and `esds`
//! faithfully, so this module only decides what goes in the boxes. Checked on crates.io and
//! not taken: `mp4` 0.14 writes progressive files only (samples, then a final `moov`);
//! `muxide` 0.5 has a fragmented muxer, but it rebuilds `avcC`/`hvcC` from separate parameter
//! sets (dropping the rest of the publisher's record), assumes 4-byte NAL lengths, copies every
//! sample into its own buffer and guesses the last sample's duration, and it would be a second
//! MP4 crate next to `mp4-atom`. Picture sizes come from the SPS ([`sps`]), which no
//! dependency here parses.

pub mod codec;
mod error;
pub mod fragment;
pub mod init;
pub mod segmenter;
mod sps;

pub use codec::{AudioConfig, VideoCodec, VideoConfig};
pub use segmenter::{Lookup, Part, Segment, Segmenter, SegmenterConfig};

pub use error::Fmp4Error;

#[cfg(test)]
mod tests;
