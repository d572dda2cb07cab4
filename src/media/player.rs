//! Per-player delivery decisions: which frames a player receives (keyframe gating after a join,
//! a lag skip or an unpause; receiveAudio/receiveVideo; pause) and when it is hopelessly behind.

use std::time::{Duration, Instant};

use super::registry::Frame;
use crate::rtmp::session::MediaKind;

/// What to do with one frame for one player.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Send,
    Skip,
}

/// The delivery state of one playing NetStream.
#[derive(Debug)]
pub struct Player {
    /// Video inter-frames (and audio, when the stream has video) are held back until a keyframe.
    need_keyframe: bool,
    pub audio: bool,
    pub video: bool,
    pub paused: bool,
    skips: Vec<Instant>,
    max_skips: usize,
    skip_window: Duration,
}

impl Player {
    /// `max_skips` lag skips within `skip_window` mark the player as hopeless.
    pub fn new(max_skips: usize, skip_window: Duration) -> Player {
        Player {
            need_keyframe: true,
            audio: true,
            video: true,
            paused: false,
            skips: Vec::new(),
            max_skips,
            skip_window,
        }
    }

    pub fn admit(&mut self, frame: &Frame) -> Admit {
        if self.paused {
            return Admit::Skip;
        }
        let ok = match frame.kind {
            MediaKind::Data => true,
            MediaKind::Video if !self.video => false,
            MediaKind::Audio if !self.audio => false,
            _ if frame.info.sequence_header => true,
            MediaKind::Video => {
                if frame.info.keyframe {
                    self.need_keyframe = false;
                }
                !self.need_keyframe
            }
            MediaKind::Audio => !(self.need_keyframe && frame.stream_has_video),
        };
        if ok { Admit::Send } else { Admit::Skip }
    }

    /// The player missed messages: resume at the next keyframe. Returns false when it has
    /// skipped too often recently and should be disconnected.
    pub fn lagged(&mut self, now: Instant) -> bool {
        self.need_keyframe = true;
        self.skips
            .retain(|t| now.duration_since(*t) < self.skip_window);
        self.skips.push(now);
        self.skips.len() <= self.max_skips
    }

    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
        if !paused {
            // Resuming mid-GOP would show garbage until the next keyframe anyway.
            self.need_keyframe = true;
        }
    }

    pub fn set_video(&mut self, on: bool) {
        if on && !self.video {
            self.need_keyframe = true;
        }
        self.video = on;
    }

    /// A new publisher started: its first frames are headers and a keyframe.
    pub fn restart(&mut self) {
        self.need_keyframe = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec::FrameInfo;
    use bytes::Bytes;

    fn frame(kind: MediaKind, keyframe: bool, has_video: bool) -> Frame {
        Frame {
            kind,
            type_id: 9,
            timestamp: 0,
            payload: Bytes::new(),
            info: FrameInfo {
                keyframe,
                sequence_header: false,
            },
            stream_has_video: has_video,
            encoded: Bytes::new(),
            encoded_chunk_size: 4096,
            flv: Default::default(),
        }
    }

    #[test]
    fn waits_for_keyframe_then_sends_everything() {
        let mut p = Player::new(3, Duration::from_secs(60));
        assert_eq!(p.admit(&frame(MediaKind::Video, false, true)), Admit::Skip);
        assert_eq!(p.admit(&frame(MediaKind::Audio, false, true)), Admit::Skip);
        assert_eq!(p.admit(&frame(MediaKind::Video, true, true)), Admit::Send);
        assert_eq!(p.admit(&frame(MediaKind::Video, false, true)), Admit::Send);
        assert_eq!(p.admit(&frame(MediaKind::Audio, false, true)), Admit::Send);
    }

    #[test]
    fn audio_only_streams_flow_at_once() {
        let mut p = Player::new(3, Duration::from_secs(60));
        assert_eq!(p.admit(&frame(MediaKind::Audio, false, false)), Admit::Send);
    }

    #[test]
    fn hopeless_after_too_many_skips() {
        let mut p = Player::new(2, Duration::from_secs(60));
        let now = Instant::now();
        assert!(p.lagged(now));
        assert!(p.lagged(now));
        assert!(!p.lagged(now));
        assert_eq!(p.admit(&frame(MediaKind::Video, false, true)), Admit::Skip);
    }

    #[test]
    fn receive_video_off_and_on_waits_for_key() {
        let mut p = Player::new(3, Duration::from_secs(60));
        p.admit(&frame(MediaKind::Video, true, true));
        p.set_video(false);
        assert_eq!(p.admit(&frame(MediaKind::Video, true, true)), Admit::Skip);
        assert_eq!(p.admit(&frame(MediaKind::Audio, false, true)), Admit::Send);
        p.set_video(true);
        assert_eq!(p.admit(&frame(MediaKind::Video, false, true)), Admit::Skip);
        assert_eq!(p.admit(&frame(MediaKind::Video, true, true)), Admit::Send);
    }
}
