//! What a playable file is to a player: its messages in send order (where each one's bytes lie
//! in the file and how they become an RTMP body), the headers a player needs first, and the
//! video keyframes seeks land on. Built once per file by `flv.rs` or `mp4.rs`.

use bytes::Bytes;

use crate::rtmp::session::MediaKind;

/// How a sample's bytes in the file become an RTMP message body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrap {
    /// The file holds the body as it is (an FLV tag's).
    Flv,
    /// H.264 NAL units (MP4): the FLV video header `[frame | 7][1][composition time]` first.
    Avc,
    /// H.265 NAL units (MP4): the enhanced-RTMP header `[0x80 | frame][1]'hvc1'[composition
    /// time]` first (what ffmpeg 6.1+, OBS 29+ and SRS read).
    Hevc,
    /// A raw AAC frame (MP4): `[sound format byte][1]` first.
    Aac(u8),
}

/// One message of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub kind: MediaKind,
    /// Decode time on the file's timeline.
    pub time_ms: u32,
    /// Presentation minus decode time (B-frames); only `Avc` / `Hevc` carry it.
    pub cts_ms: i32,
    pub offset: u64,
    pub len: u32,
    /// A video keyframe (not a sequence header): where a seek may land.
    pub keyframe: bool,
    pub wrap: Wrap,
}

impl Sample {
    /// The RTMP message type: audio 8, video 9, AMF0 data 18.
    pub fn type_id(&self) -> u8 {
        match self.kind {
            MediaKind::Audio => 8,
            MediaKind::Video => 9,
            MediaKind::Data => 18,
        }
    }

    /// Whether the RTMP body is the file's bytes alone (FLV tags).
    pub fn has_no_prefix(&self) -> bool {
        matches!(self.wrap, Wrap::Flv)
    }

    /// Appends what goes in front of the file's bytes in the RTMP body (nothing for FLV).
    pub fn prefix(&self, out: &mut Vec<u8>) {
        let cts = self.cts_ms.clamp(-(1 << 23), (1 << 23) - 1) as u32;
        let cts = [(cts >> 16) as u8, (cts >> 8) as u8, cts as u8];
        match self.wrap {
            Wrap::Flv => {}
            Wrap::Avc => {
                out.push(if self.keyframe { 0x17 } else { 0x27 });
                out.push(1);
                out.extend_from_slice(&cts);
            }
            Wrap::Hevc => {
                out.push(0x80 | if self.keyframe { 0x10 } else { 0x20 } | 1);
                out.extend_from_slice(b"hvc1");
                out.extend_from_slice(&cts);
            }
            Wrap::Aac(first) => {
                out.push(first);
                out.push(1);
            }
        }
    }
}

/// A message every player gets before the media (and again after a seek): metadata and
/// sequence headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub kind: MediaKind,
    pub body: Bytes,
}

impl Header {
    pub fn type_id(&self) -> u8 {
        match self.kind {
            MediaKind::Audio => 8,
            MediaKind::Video => 9,
            MediaKind::Data => 18,
        }
    }
}

/// Where a file stops being readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Byte offset of the first byte that could not be read.
    pub offset: u64,
    pub why: String,
}

/// A playable file.
#[derive(Debug, Default)]
pub struct Index {
    /// In send order: by decode time, ties in file order.
    pub samples: Vec<Sample>,
    /// `onMetaData` first, then the video and audio sequence headers.
    pub headers: Vec<Header>,
    /// Sample indices of the video keyframes, in time order.
    pub keyframes: Vec<usize>,
    /// The last sample's time (0 for an empty file).
    pub duration_ms: u32,
    /// Set when the file is damaged after the samples listed (they still play).
    pub damage: Option<Damage>,
}

impl Index {
    /// Where playing from `ms` starts: the last keyframe at or before it, the file's start when
    /// there is none, or for audio-only files the first sample at or after `ms`.
    pub fn seek(&self, ms: u32) -> usize {
        if !self.keyframes.is_empty() {
            let after = self
                .keyframes
                .partition_point(|&i| self.samples[i].time_ms <= ms);
            // Before the first keyframe: from the start (audio often leads the video).
            return after.checked_sub(1).map_or(0, |k| self.keyframes[k]);
        }
        self.samples.partition_point(|s| s.time_ms < ms)
    }

    /// Fills `keyframes` and `duration_ms` from `samples`.
    pub fn finish(&mut self) {
        self.keyframes = self
            .samples
            .iter()
            .enumerate()
            .filter(|(_, s)| s.keyframe)
            .map(|(i, _)| i)
            .collect();
        self.duration_ms = self.samples.iter().map(|s| s.time_ms).max().unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(kind: MediaKind, time_ms: u32, keyframe: bool) -> Sample {
        Sample {
            kind,
            time_ms,
            cts_ms: 0,
            offset: 0,
            len: 0,
            keyframe,
            wrap: Wrap::Flv,
        }
    }

    #[test]
    fn seek_lands_on_the_keyframe_at_or_before() {
        let mut ix = Index::default();
        for t in (0..10_000).step_by(40) {
            ix.samples.push(sample(MediaKind::Video, t, t % 2000 == 0));
            ix.samples.push(sample(MediaKind::Audio, t + 10, false));
        }
        ix.finish();
        assert_eq!(ix.duration_ms, 9970);
        let at = |ms| ix.samples[ix.seek(ms)].time_ms;
        assert_eq!(at(0), 0);
        assert_eq!(at(1999), 0);
        assert_eq!(at(2000), 2000);
        assert_eq!(at(5000), 4000);
        assert_eq!(at(99_999), 8000);
    }

    #[test]
    fn audio_only_seeks_to_the_first_sample_at_or_after() {
        let mut ix = Index::default();
        for t in (0..1000).step_by(23) {
            ix.samples.push(sample(MediaKind::Audio, t, false));
        }
        ix.finish();
        assert_eq!(ix.samples[ix.seek(100)].time_ms, 115);
        assert_eq!(ix.seek(5000), ix.samples.len());
    }

    #[test]
    fn mp4_samples_get_their_flv_headers() {
        let mut s = Sample {
            kind: MediaKind::Video,
            time_ms: 0,
            cts_ms: 80,
            offset: 1,
            len: 2,
            keyframe: true,
            wrap: Wrap::Avc,
        };
        let prefix = |s: &Sample| {
            let mut out = Vec::new();
            s.prefix(&mut out);
            out
        };
        assert_eq!(prefix(&s), [0x17, 1, 0, 0, 80]);
        s.wrap = Wrap::Hevc;
        s.keyframe = false;
        assert_eq!(prefix(&s), [0xA1, b'h', b'v', b'c', b'1', 0, 0, 80]);
        s.cts_ms = -40;
        assert_eq!(prefix(&s)[5..], [0xFF, 0xFF, 0xD8]);
        s.wrap = Wrap::Aac(0xAF);
        assert_eq!(prefix(&s), [0xAF, 1]);
        s.wrap = Wrap::Flv;
        assert!(prefix(&s).is_empty());
    }
}
