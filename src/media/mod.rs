//! Live media: the stream registry, fan-out from one source to many sinks, the GOP and
//! sequence-header cache for late joiners, and per-player flow decisions.
//!
//! A publisher's message is encoded into chunk bytes once ([`Frame::encoded`]) and the same
//! `Bytes` go to every player; the per-stream ring ([`tokio::sync::broadcast`]) is the only queue,
//! so a player that falls behind loses messages (and waits for the next keyframe) instead of
//! growing memory, and the publisher never waits on anyone.
//!
//! Seams for what comes next: a [`StreamSource`] feeds a stream (an RTMP publisher today;
//! relays and file loops later), a [`MediaSink`] receives one player's frames through a
//! [`Playback`] (an RTMP session, a recording to FLV, [`record`], HTTP-FLV and the LL-HLS
//! segmenter over [`fmp4`] today).

pub mod codec;
pub mod fmp4;
pub mod player;
pub mod record;
pub mod registry;
pub mod sink;
pub mod source;
pub mod vod;

pub use player::{Admit, Player};
pub use record::RecordMode;
pub use registry::{
    Frame, MediaConfig, MediaItem, PublishError, Publisher, Registry, StreamKey, StreamStats,
    Subscription, TakeoverPolicy,
};
pub use sink::{MediaSink, Playback, TooSlow};
pub use source::StreamSource;
