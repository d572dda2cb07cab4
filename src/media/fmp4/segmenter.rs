//! Cuts one live stream into LL-HLS parts and segments, sans-IO: FLV frames (and the wall
//! clock) in, shared `Bytes` out, a bounded window kept.
//!
//! - A **segment** starts on a video keyframe and ends at the first keyframe at least
//!   `segment_ms` after its start (audio-only streams: after `segment_ms` of audio). A stream
//!   whose keyframes are further apart than `4 × segment_ms` is cut there anyway so memory
//!   stays bounded; such a segment does not start with a keyframe (its first part is not
//!   `INDEPENDENT`).
//! - A **part** is one `moof`+`mdat` fragment of every track's samples. It is closed before
//!   the sample that would make it longer than `part_ms`, so a part is at most `part_ms`
//!   (one frame longer than that only when a single frame is). A segment's bytes are its
//!   parts back to back, concatenated once when it completes.
//! - Each track's last sample is held until the next one arrives: its duration is the
//!   difference of their decode times. Parts are therefore published one frame late (40 ms at
//!   25 fps), never with a guessed duration (except the very last sample of a publish).
//! - A new sequence header that differs from the one in force (a publisher that restarts its
//!   encoder with other settings, or a takeover by another publisher) ends the segment; the
//!   next one starts at the next keyframe with a new init segment and is marked as a
//!   discontinuity. A lagging ring (frames lost) ends the segment too, and the next starts at a
//!   keyframe. Repeated identical headers (OBS and ffmpeg resend them) change nothing.
//! - The window holds `window` complete segments plus the open one, and never more than
//!   `max_window_bytes` (old segments go first). Parts are kept for the open segment and the
//!   last [`PART_SEGMENTS`] complete ones, which is what a playlist lists them for.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::codec::{AudioConfig, AudioPacket, VideoConfig, VideoPacket, parse_audio, parse_video};
use super::error::Fmp4Error;
use super::fragment::{Run, Sample, fragment};
use super::init::{AUDIO_TRACK, VIDEO_TRACK, init_segment};

/// Complete segments whose parts stay listed (the spec asks for parts in the last three
/// target durations at least; two segments of at least one target duration each, plus the
/// open one, cover that).
pub const PART_SEGMENTS: usize = 2;

/// How a stream is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmenterConfig {
    /// Longest part, milliseconds (`PART-TARGET`).
    pub part_ms: u32,
    /// Shortest segment; it ends at the first keyframe after this.
    pub segment_ms: u32,
    /// Complete segments kept.
    pub window: usize,
    /// Bytes of segments and parts kept at most (old segments are dropped first).
    pub max_window_bytes: usize,
}

/// One part of a segment.
#[derive(Debug, Clone)]
pub struct Part {
    pub duration_ms: u32,
    /// Starts with a keyframe (a player may start here).
    pub independent: bool,
    pub bytes: Bytes,
}

/// One segment of the window; the last one may still be open.
#[derive(Debug, Clone)]
pub struct Segment {
    pub msn: u64,
    /// The init segment version its fragments need.
    pub init: u32,
    /// The stream's timeline breaks before this segment (`EXT-X-DISCONTINUITY`).
    pub discontinuity: bool,
    /// Decode time of its first sample, milliseconds on the stream's timeline.
    pub start_ms: u64,
    /// Sum of its parts' durations.
    pub duration_ms: u32,
    /// Empty once the segment is older than the listed parts.
    pub parts: Vec<Part>,
    pub parts_dropped: bool,
    /// The whole segment, once complete.
    pub bytes: Option<Bytes>,
}

impl Segment {
    pub fn complete(&self) -> bool {
        self.bytes.is_some()
    }
}

/// Where a requested part or segment stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Ready(Bytes),
    /// The next one: it will exist soon (a blocking request waits for it).
    Pending,
    /// Too old, or never going to exist.
    Gone,
}

/// The segmenter of one stream.
pub struct Segmenter {
    cfg: SegmenterConfig,
    video: Option<VideoConfig>,
    audio: Option<AudioConfig>,
    /// The header bodies in force, to tell a real change from a resend.
    video_header: Option<Bytes>,
    audio_header: Option<Bytes>,
    /// Audio the segmenter cannot carry (not AAC) is left out.
    audio_unsupported: Option<String>,
    /// Set when the stream cannot be served at all (its video is not H.264/H.265).
    error: Option<String>,
    inits: VecDeque<(u32, Bytes)>,
    init_version: u32,
    need_init: bool,
    /// No segment is open: the next keyframe starts one.
    waiting_key: bool,
    discontinuity_next: bool,
    held_video: Option<Sample>,
    held_audio: Option<Sample>,
    next_video_dts: u64,
    next_audio_dts: u64,
    last_video_duration: u32,
    last_audio_duration: u32,
    part_video: Vec<Sample>,
    part_audio: Vec<Sample>,
    part_start: u64,
    segment_start: u64,
    segments: VecDeque<Segment>,
    next_msn: u64,
    fragment_seq: u32,
    discontinuity_seq: u64,
    /// Unix milliseconds minus stream milliseconds: the wall clock of the timeline.
    pdt_base: Option<i64>,
    pdt_frozen: bool,
    clock: Option<(u32, u64)>,
    target_secs: u32,
    ended: bool,
    bytes: usize,
    changes: u64,
}

impl Segmenter {
    pub fn new(cfg: SegmenterConfig) -> Segmenter {
        Segmenter {
            cfg,
            video: None,
            audio: None,
            video_header: None,
            audio_header: None,
            audio_unsupported: None,
            error: None,
            inits: VecDeque::new(),
            init_version: 0,
            need_init: true,
            waiting_key: true,
            discontinuity_next: false,
            held_video: None,
            held_audio: None,
            next_video_dts: 0,
            next_audio_dts: 0,
            last_video_duration: 40,
            last_audio_duration: 23,
            part_video: Vec::new(),
            part_audio: Vec::new(),
            part_start: 0,
            segment_start: 0,
            segments: VecDeque::new(),
            next_msn: 0,
            fragment_seq: 1,
            discontinuity_seq: 0,
            pdt_base: None,
            pdt_frozen: false,
            clock: None,
            target_secs: cfg.segment_ms.div_ceil(1000).max(1),
            ended: false,
            bytes: 0,
            changes: 0,
        }
    }

    pub fn config(&self) -> &SegmenterConfig {
        &self.cfg
    }

    /// Bumped by every change a playlist shows (a part, a segment, the end).
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Why this stream cannot be served, if it cannot.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Why the audio is left out, if it is.
    pub fn audio_unsupported(&self) -> Option<&str> {
        self.audio_unsupported.as_deref()
    }

    pub fn ended(&self) -> bool {
        self.ended
    }

    /// `EXT-X-TARGETDURATION`: the configured segment length, or the longest segment seen.
    pub fn target_secs(&self) -> u32 {
        self.target_secs
    }

    pub fn discontinuity_seq(&self) -> u64 {
        self.discontinuity_seq
    }

    pub fn segments(&self) -> &VecDeque<Segment> {
        &self.segments
    }

    /// Unix milliseconds of a segment's start (`EXT-X-PROGRAM-DATE-TIME`).
    pub fn wall_clock_ms(&self, seg: &Segment) -> Option<i64> {
        self.pdt_base
            .map(|b| b.saturating_add(i64::try_from(seg.start_ms).unwrap_or(i64::MAX)))
    }

    /// Bytes held (segments, parts, init segments).
    pub fn bytes(&self) -> usize {
        self.bytes + self.inits.iter().map(|(_, b)| b.len()).sum::<usize>()
    }

    /// Init segment `version`, or the newest one for `None`.
    pub fn init(&self, version: Option<u32>) -> Option<Bytes> {
        let v = version.unwrap_or(self.init_version);
        self.inits
            .iter()
            .find(|(n, _)| *n == v)
            .map(|(_, b)| b.clone())
    }

    pub fn init_version(&self) -> u32 {
        self.init_version
    }

    /// The part a preload hint names: the open segment's next part, or the first part of the
    /// segment the next keyframe starts.
    pub fn next_part(&self) -> (u64, u32) {
        match self.segments.back() {
            Some(s) if !s.complete() => (s.msn, s.parts.len() as u32),
            _ => (self.next_msn, 0),
        }
    }

    fn segment(&self, msn: u64) -> Option<&Segment> {
        let first = self.segments.front()?.msn;
        self.segments
            .get(usize::try_from(msn.checked_sub(first)?).ok()?)
    }

    fn first_msn(&self) -> u64 {
        self.segments.front().map_or(self.next_msn, |s| s.msn)
    }

    /// Blocking reload: whether the playlist already has segment `msn` (complete), or with
    /// `part`, part `part` of segment `msn` or anything later.
    pub fn reached(&self, msn: u64, part: Option<u32>) -> bool {
        if self.ended || self.error.is_some() || msn < self.first_msn() {
            return true;
        }
        let Some(s) = self.segment(msn) else {
            return false;
        };
        match part {
            None => s.complete(),
            Some(p) if (p as usize) < s.parts.len() || s.parts_dropped => true,
            Some(_) if s.complete() => self.segment(msn + 1).is_some_and(|n| !n.parts.is_empty()),
            Some(_) => false,
        }
    }

    /// A blocking request for something further ahead than the spec lets a client wait for:
    /// a segment more than two past the newest, or a part of the open segment more than the
    /// Advance Part Limit past its newest part.
    pub fn too_far(&self, msn: u64, part: Option<u32>) -> bool {
        let newest = self.next_msn.saturating_sub(1);
        if msn > newest.saturating_add(2) {
            return true;
        }
        // Advance Part Limit: 3 parts, or 3 seconds of parts when parts are shorter than 1 s.
        let limit = if self.cfg.part_ms < 1000 {
            3000u32.div_ceil(self.cfg.part_ms.max(1))
        } else {
            3
        };
        match (self.segments.back(), part) {
            (Some(s), Some(p)) if s.msn == msn && !s.complete() => {
                u64::from(p) >= s.parts.len() as u64 + u64::from(limit)
            }
            _ => false,
        }
    }

    /// Part `p` of segment `msn`.
    pub fn part(&self, msn: u64, p: u32) -> Lookup {
        match self.segment(msn) {
            Some(s) => match s.parts.get(p as usize) {
                Some(part) => Lookup::Ready(part.bytes.clone()),
                None if !s.complete() && !self.ended && p as usize == s.parts.len() => {
                    Lookup::Pending
                }
                None => Lookup::Gone,
            },
            None if msn == self.next_msn && p == 0 && !self.ended && self.error.is_none() => {
                Lookup::Pending
            }
            None => Lookup::Gone,
        }
    }

    /// Segment `msn`, whole.
    pub fn segment_bytes(&self, msn: u64) -> Lookup {
        match self.segment(msn) {
            Some(s) => match &s.bytes {
                Some(b) => Lookup::Ready(b.clone()),
                None if !self.ended => Lookup::Pending,
                None => Lookup::Gone,
            },
            None => Lookup::Gone,
        }
    }

    /// The stream's millisecond clock extended past the 32-bit wrap.
    fn extend(&mut self, ts: u32) -> u64 {
        match self.clock {
            None => {
                self.clock = Some((ts, u64::from(ts)));
                u64::from(ts)
            }
            Some((raw, ext)) => {
                let d = i64::from(ts.wrapping_sub(raw) as i32);
                let e = (ext as i64).saturating_add(d).max(0) as u64;
                if d > 0 {
                    self.clock = Some((ts, e));
                }
                e
            }
        }
    }

    fn note_wall_clock(&mut self, dts: u64, now_ms: i64) {
        if !self.pdt_frozen {
            let base = now_ms.saturating_sub(i64::try_from(dts).unwrap_or(i64::MAX));
            // The frame that arrived with the least delay tells the clock best (a late
            // joiner's first frames are the cached GOP, seconds old).
            self.pdt_base = Some(self.pdt_base.map_or(base, |b| b.min(base)));
        }
    }

    /// A video message (an FLV video tag body) at `ts` on the stream's timeline.
    pub fn push_video(&mut self, ts: u32, body: &Bytes, now_ms: i64) {
        if self.error.is_some() || self.ended {
            return;
        }
        match parse_video(body) {
            Ok(VideoPacket::Config(c)) => {
                if self.video_header.as_ref() != Some(body) {
                    self.video_header = Some(body.clone());
                    self.config_changed();
                    self.video = Some(c);
                }
            }
            Ok(VideoPacket::Frame {
                data,
                cts,
                keyframe,
            }) => {
                if self.video.is_none() {
                    return; // a frame before its decoder configuration
                }
                let dts = self.extend(ts).max(self.next_video_dts);
                self.note_wall_clock(dts, now_ms);
                if let Some(mut prev) = self.held_video.take() {
                    prev.duration = u32::try_from(dts - prev.dts).unwrap_or(u32::MAX);
                    self.last_video_duration = prev.duration;
                    self.place_video(prev);
                }
                self.next_video_dts = dts + 1;
                self.held_video = Some(Sample {
                    dts,
                    duration: 0,
                    cts,
                    sync: keyframe,
                    data,
                });
            }
            Ok(VideoPacket::Skip) => {}
            Err(Fmp4Error::Unsupported(why)) => {
                self.flush();
                self.error = Some(why);
                self.changes += 1;
            }
            Err(_) => {} // a damaged frame is left out; the next keyframe repairs the picture
        }
    }

    /// An audio message (an FLV audio tag body) at `ts` on the stream's timeline.
    pub fn push_audio(&mut self, ts: u32, body: &Bytes, now_ms: i64) {
        if self.error.is_some() || self.ended {
            return;
        }
        match parse_audio(body) {
            Ok(AudioPacket::Config(c)) => {
                if self.audio_header.as_ref() != Some(body) {
                    self.audio_header = Some(body.clone());
                    self.config_changed();
                    self.audio = Some(c);
                }
            }
            Ok(AudioPacket::Frame(data)) => {
                if self.audio.is_none() {
                    return;
                }
                let dts = self.extend(ts).max(self.next_audio_dts);
                self.note_wall_clock(dts, now_ms);
                if let Some(mut prev) = self.held_audio.take() {
                    prev.duration = u32::try_from(dts - prev.dts).unwrap_or(u32::MAX);
                    self.last_audio_duration = prev.duration;
                    self.place_audio(prev);
                }
                self.next_audio_dts = dts + 1;
                self.held_audio = Some(Sample {
                    dts,
                    duration: 0,
                    cts: 0,
                    sync: true,
                    data,
                });
            }
            Err(Fmp4Error::Unsupported(why)) => {
                if self.audio_unsupported.is_none() {
                    self.audio_unsupported = Some(why);
                }
            }
            Err(_) => {}
        }
    }

    /// The ring lagged (frames were lost): the segment ends, the next starts at a keyframe.
    pub fn lagged(&mut self) {
        self.flush();
    }

    /// Another publisher took the stream over: a discontinuity.
    pub fn restarted(&mut self) {
        self.flush();
        self.discontinuity_next = !self.segments.is_empty();
    }

    /// The publisher left: everything held is written and the playlist ends.
    pub fn finish(&mut self) {
        if !self.ended {
            self.flush();
            self.ended = true;
            self.changes += 1;
        }
    }

    fn config_changed(&mut self) {
        let started = !self.segments.is_empty() || self.init_version > 0;
        self.flush();
        self.need_init = true;
        if started {
            self.discontinuity_next = !self.segments.is_empty();
        }
    }

    /// Writes the held samples, closes the open part and segment; the next keyframe starts
    /// the next segment.
    fn flush(&mut self) {
        if let Some(mut v) = self.held_video.take() {
            v.duration = self.last_video_duration.max(1);
            self.place_video(v);
        }
        if let Some(mut a) = self.held_audio.take() {
            a.duration = self.last_audio_duration.max(1);
            self.place_audio(a);
        }
        if !self.waiting_key {
            let end = self
                .part_video
                .iter()
                .chain(&self.part_audio)
                .map(|s| s.dts + u64::from(s.duration))
                .max()
                .unwrap_or(self.part_start);
            self.close_part(end, true);
            self.close_segment();
        }
        self.waiting_key = true;
    }

    fn has_video(&self) -> bool {
        self.video.is_some()
    }

    fn place_video(&mut self, s: Sample) {
        if self.waiting_key {
            if !s.sync || !self.start_segment(s.dts) {
                return;
            }
        } else {
            self.maybe_cut(&s);
        }
        self.part_video.push(s);
    }

    fn place_audio(&mut self, s: Sample) {
        if self.has_video() {
            if self.waiting_key || s.dts < self.segment_start {
                return; // before the first keyframe of the segment
            }
            // Video stalled while audio goes on: keep parts (and memory) bounded.
            let max_segment = u64::from(self.cfg.segment_ms) * 4;
            if s.dts - self.segment_start >= max_segment {
                self.cut(s.dts, true);
            } else if s.dts.saturating_sub(self.part_start) > 3 * u64::from(self.cfg.part_ms) {
                self.cut(s.dts, false);
            }
        } else if self.waiting_key {
            if !self.start_segment(s.dts) {
                return;
            }
        } else {
            self.maybe_cut(&s);
        }
        self.part_audio.push(s);
    }

    /// Closes the part (and on a keyframe past the segment length, the segment) before `s`,
    /// the first sample of the track that drives the cuts.
    fn maybe_cut(&mut self, s: &Sample) {
        let in_segment = s.dts.saturating_sub(self.segment_start);
        let part_has_media = if self.has_video() {
            !self.part_video.is_empty()
        } else {
            !self.part_audio.is_empty()
        };
        let segment_ms = u64::from(self.cfg.segment_ms);
        // A keyframe past the segment length ends it; so does the length bound without one.
        if (s.sync && in_segment >= segment_ms) || in_segment >= segment_ms * 4 {
            self.cut(s.dts, true);
        } else if part_has_media
            && (s.dts + u64::from(s.duration)).saturating_sub(self.part_start)
                > u64::from(self.cfg.part_ms)
        {
            self.cut(s.dts, false);
        }
    }

    fn cut(&mut self, at: u64, new_segment: bool) {
        self.close_part(at, false);
        if new_segment {
            self.close_segment();
            self.start_segment(at);
        }
    }

    /// Opens segment `next_msn` at `at` (with a new init segment first when the tracks
    /// changed). False when no init segment can be made.
    fn start_segment(&mut self, at: u64) -> bool {
        if self.need_init {
            match init_segment(self.video.as_ref(), self.audio.as_ref()) {
                Ok(b) => {
                    self.init_version += 1;
                    self.inits.push_back((self.init_version, b));
                    self.need_init = false;
                }
                Err(e) => {
                    self.error = Some(e.to_string());
                    self.changes += 1;
                    return false;
                }
            }
        }
        self.segments.push_back(Segment {
            msn: self.next_msn,
            init: self.init_version,
            discontinuity: std::mem::take(&mut self.discontinuity_next),
            start_ms: at,
            duration_ms: 0,
            parts: Vec::new(),
            parts_dropped: false,
            bytes: None,
        });
        self.next_msn += 1;
        self.segment_start = at;
        self.part_start = at;
        self.waiting_key = false;
        true
    }

    /// Makes a part of what was placed before `at` (all of it when `all`).
    fn close_part(&mut self, at: u64, all: bool) {
        let video = std::mem::take(&mut self.part_video);
        let audio = if self.has_video() && !all {
            let (before, after): (Vec<_>, Vec<_>) = std::mem::take(&mut self.part_audio)
                .into_iter()
                .partition(|s| s.dts < at);
            self.part_audio = after;
            before
        } else {
            std::mem::take(&mut self.part_audio)
        };
        let independent = match video.first() {
            Some(v) => v.sync,
            None => !self.has_video(),
        };
        let runs = [
            Run {
                track_id: VIDEO_TRACK,
                samples: &video,
            },
            Run {
                track_id: AUDIO_TRACK,
                samples: &audio,
            },
        ];
        let bytes = match fragment(self.fragment_seq, &runs) {
            Ok(Some(b)) => b,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "HLS part left out");
                return;
            }
        };
        self.fragment_seq = self.fragment_seq.wrapping_add(1);
        let duration_ms = u32::try_from(at.saturating_sub(self.part_start)).unwrap_or(u32::MAX);
        self.part_start = at;
        if let Some(seg) = self.segments.back_mut().filter(|s| !s.complete()) {
            self.bytes += bytes.len();
            seg.parts.push(Part {
                duration_ms,
                independent,
                bytes,
            });
            self.changes += 1;
        }
    }

    fn close_segment(&mut self) {
        let Some(seg) = self.segments.back_mut().filter(|s| !s.complete()) else {
            return;
        };
        if seg.parts.is_empty() {
            // Nothing was cut into it: its number goes to the next segment.
            let seg = self.segments.pop_back();
            self.next_msn -= 1;
            self.discontinuity_next |= seg.is_some_and(|s| s.discontinuity);
            return;
        }
        seg.duration_ms = seg.parts.iter().map(|p| p.duration_ms).sum();
        let mut whole = BytesMut::with_capacity(seg.parts.iter().map(|p| p.bytes.len()).sum());
        for p in &seg.parts {
            whole.extend_from_slice(&p.bytes);
        }
        self.bytes += whole.len();
        seg.bytes = Some(whole.freeze());
        let secs = (seg.duration_ms + 500) / 1000;
        self.target_secs = self.target_secs.max(secs);
        self.pdt_frozen = true;
        self.changes += 1;
        self.trim();
    }

    fn trim(&mut self) {
        let size = |s: &Segment| {
            s.bytes.as_ref().map_or(0, |b| b.len())
                + s.parts.iter().map(|p| p.bytes.len()).sum::<usize>()
        };
        let mut complete = self.segments.iter().filter(|s| s.complete()).count();
        while complete > 0
            && (complete > self.cfg.window
                || (self.bytes > self.cfg.max_window_bytes && complete > 1))
        {
            let Some(old) = self.segments.pop_front() else {
                break;
            };
            self.bytes -= size(&old);
            if old.discontinuity {
                self.discontinuity_seq += 1;
            }
            complete -= 1;
        }
        let keep_parts_from = complete.saturating_sub(PART_SEGMENTS);
        for s in self
            .segments
            .iter_mut()
            .filter(|s| s.complete())
            .take(keep_parts_from)
        {
            if !s.parts.is_empty() {
                self.bytes -= s.parts.iter().map(|p| p.bytes.len()).sum::<usize>();
                s.parts = Vec::new();
                s.parts_dropped = true;
            }
        }
        let oldest_init = self.segments.front().map_or(self.init_version, |s| s.init);
        self.inits
            .retain(|(v, _)| *v >= oldest_init || *v == self.init_version);
    }
}
