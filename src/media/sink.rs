//! Player sinks: where one player's media goes. An RTMP session is one today; HTTP-FLV, an HLS
//! segmenter and a recorder are more sinks of the same encoded frames.
//!
//! [`Playback`] is the sink-independent half of a player: it holds the registry subscription
//! (the stream's ring and the player's place on it) and the flow decisions of [`Player`], sends
//! the late-join preamble, and turns each ring item into a call on a [`MediaSink`]. A sink only
//! writes frames in its own format; it never sees lag, pause or keyframe gating.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::player::{Admit, Player};
use super::registry::{Frame, MediaItem, PlayerGuard, StreamKey, Subscription};
use crate::rtmp::session::MediaKind;

/// What a player's media is written to.
pub trait MediaSink {
    /// A frame this player receives. `timestamp` is `Some` when it must be written with
    /// another timestamp than the frame's (headers of a late join, see [`Playback::start`]).
    fn frame(&mut self, frame: &Arc<Frame>, timestamp: Option<u32>);

    /// A publisher started on the stream (RTMP: `NetStream.Play.PublishNotify`).
    fn published(&mut self) {}

    /// The publisher left (RTMP: `NetStream.Play.UnpublishNotify`).
    fn unpublished(&mut self) {}
}

/// The player fell behind too often within its skip window and should be disconnected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("player fell behind too often")]
pub struct TooSlow;

/// One player attached to one stream.
pub struct Playback {
    player: Player,
    rx: tokio::sync::broadcast::Receiver<MediaItem>,
    /// Keeps the player counted on its stream until this is dropped.
    guard: PlayerGuard,
}

impl Playback {
    /// Attaches `player` to `sub` and sends the preamble (metadata, sequence headers, the GOP
    /// since the last keyframe) to `sink`.
    pub fn start(sub: Subscription, mut player: Player, sink: &mut impl MediaSink) -> Playback {
        // Headers never carry a later timestamp than the first cached frame, so a late
        // player's clock does not run backwards from the headers to the GOP. Metadata keeps
        // its own (usually 0) timestamp: ffmpeg's FLV reader only takes `onMetaData` at 0 as
        // metadata and turns a later one into a data stream.
        let gop_start = sub
            .preamble
            .iter()
            .find(|f| f.kind != MediaKind::Data && !f.info.sequence_header)
            .map(|f| f.timestamp);
        for f in &sub.preamble {
            if player.admit(f) == Admit::Send {
                let is_header = f.kind == MediaKind::Data || f.info.sequence_header;
                let ts = match gop_start {
                    Some(g) if is_header && f.timestamp > g => Some(g),
                    _ => None,
                };
                sink.frame(f, ts);
            }
        }
        Playback {
            player,
            rx: sub.rx,
            guard: sub.guard,
        }
    }

    pub fn key(&self) -> &StreamKey {
        self.guard.key()
    }

    /// Pause, receiveAudio/receiveVideo.
    pub fn player_mut(&mut self) -> &mut Player {
        &mut self.player
    }

    /// Waits for the next ring item (used when media is written as it arrives).
    pub async fn recv(&mut self) -> Result<MediaItem, RecvError> {
        self.rx.recv().await
    }

    /// Takes up to `max` items that are ready without waiting, so one write carries many
    /// messages.
    pub fn drain(&mut self, max: usize, sink: &mut impl MediaSink) -> Result<(), TooSlow> {
        for _ in 0..max {
            let item = match self.rx.try_recv() {
                Ok(item) => Ok(item),
                Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => break,
            };
            self.handle(item, sink)?;
        }
        Ok(())
    }

    /// Applies one ring item: admitted frames go to `sink`; a lag skips to the next keyframe.
    pub fn handle(
        &mut self,
        item: Result<MediaItem, RecvError>,
        sink: &mut impl MediaSink,
    ) -> Result<(), TooSlow> {
        match item {
            Ok(MediaItem::Frame(f)) => {
                if self.player.admit(&f) == Admit::Send {
                    sink.frame(&f, None);
                }
            }
            Ok(MediaItem::Published) => {
                self.player.restart();
                sink.published();
            }
            Ok(MediaItem::Unpublished) => sink.unpublished(),
            Err(RecvError::Closed) => {}
            Err(RecvError::Lagged(n)) => {
                tracing::debug!(
                    missed = n,
                    "player fell behind; skipping to the next keyframe"
                );
                crate::metrics::player_skip();
                if !self.player.lagged(Instant::now()) {
                    return Err(TooSlow);
                }
            }
        }
        Ok(())
    }
}
