//! Live media: the stream registry, fan-out from one publisher to many players, the GOP and
//! sequence-header cache for late joiners, and per-player flow decisions.
//!
//! A publisher's message is encoded into chunk bytes once ([`Frame::encoded`]) and the same
//! `Bytes` go to every player; the per-stream ring ([`tokio::sync::broadcast`]) is the only queue,
//! so a player that falls behind loses messages (and waits for the next keyframe) instead of
//! growing memory, and the publisher never waits on anyone.

pub mod codec;
pub mod player;
pub mod registry;

pub use player::{Admit, Player};
pub use registry::{
    Frame, MediaConfig, MediaItem, PublishError, Publisher, Registry, StreamKey, StreamStats,
    Subscription, TakeoverPolicy,
};
