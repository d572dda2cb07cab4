//! One player's position in a file and its clock: which message is due next and when, with
//! seek, pause and the `duration` limit. No I/O: the connection asks what to send now and
//! when to ask again (sans-IO, like the RTMP session).
//!
//! Pacing: the player's clock runs from the position it started (or seeked, or unpaused) at,
//! in real time; a message is sent once its time is within `lead` of that clock, so the
//! client holds about `lead` of media (its `SetBufferLength`, bounded) and the socket never
//! gets the whole file at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::file::VodFile;
use super::index::{Header, Sample};

/// What to send next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next<'a> {
    /// A header (metadata, sequence header), stamped `time_ms`.
    Header(&'a Header, u32),
    /// A sample and its place in the index (what the shared encodings are keyed by).
    Sample(usize, &'a Sample),
    /// Nothing is due before this instant.
    Wait(Instant),
    /// Paused: nothing until [`Cursor::resume`].
    Paused,
    /// Everything up to the end (or the `duration` limit) was sent and played out.
    End(End),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The file or the requested duration is over (`NetStream.Play.Complete`).
    Complete,
    /// The file is damaged where the samples end ([`VodFile::index`]'s `damage`).
    Damaged,
}

/// A player's cursor in one file.
pub struct Cursor {
    file: Arc<VodFile>,
    next: usize,
    /// Headers still to send before `next` (all of them after a start or seek).
    headers: usize,
    /// Wall time at which the player's clock reads `anchor_ms`.
    anchor: Instant,
    anchor_ms: u32,
    lead: Duration,
    /// Nothing after this file time is sent (`duration`).
    end_ms: Option<u32>,
    paused_at_ms: Option<u32>,
    last_sent_ms: u32,
    ended: bool,
}

impl Cursor {
    /// Plays `file` from the keyframe at or before `start_ms`; with `duration_ms`, up to
    /// `start_ms + duration_ms` (0: the one keyframe).
    pub fn new(
        file: Arc<VodFile>,
        start_ms: u32,
        duration_ms: Option<u32>,
        lead: Duration,
        now: Instant,
    ) -> Cursor {
        let mut c = Cursor {
            file,
            next: 0,
            headers: 0,
            anchor: now,
            anchor_ms: 0,
            lead,
            end_ms: None,
            paused_at_ms: None,
            last_sent_ms: 0,
            ended: false,
        };
        c.seek(start_ms, now);
        c.end_ms = duration_ms.map(|d| {
            if d == 0 {
                c.anchor_ms
            } else {
                start_ms.saturating_add(d)
            }
        });
        c
    }

    pub fn file(&self) -> &Arc<VodFile> {
        &self.file
    }

    /// Moves to the keyframe at or before `ms` and sends the headers again; returns the
    /// time it landed on.
    pub fn seek(&mut self, ms: u32, now: Instant) -> u32 {
        let ix = &self.file.index;
        self.next = ix.seek(ms);
        self.headers = ix.headers.len();
        self.anchor_ms = ix
            .samples
            .get(self.next)
            .map_or(ix.duration_ms, |s| s.time_ms);
        self.anchor = now;
        self.last_sent_ms = self.anchor_ms;
        self.ended = false;
        if self.paused_at_ms.is_some() {
            self.paused_at_ms = Some(self.anchor_ms);
        }
        self.anchor_ms
    }

    /// The client paused; returns the file time it is at.
    pub fn pause(&mut self, now: Instant) -> u32 {
        let at = self.clock(now).min(self.last_sent_ms);
        self.paused_at_ms.get_or_insert(at);
        at
    }

    /// The client unpaused at `position_ms` (what it reports; trusted only inside what it
    /// was sent): sending continues from the first message not sent, so nothing repeats
    /// and nothing is skipped.
    pub fn resume(&mut self, position_ms: Option<u32>, now: Instant) {
        let Some(paused) = self.paused_at_ms.take() else {
            return;
        };
        let at = position_ms
            .filter(|p| (self.anchor_ms..=self.last_sent_ms).contains(p))
            .unwrap_or(paused);
        self.anchor_ms = at;
        self.anchor = now;
    }

    /// Every message of the file was sent (a `duration` limit not reached yet) and the client
    /// is not paused: where a DVR play goes on with the live stream.
    pub fn sent_all(&self) -> bool {
        let ix = &self.file.index;
        self.headers == 0
            && self.paused_at_ms.is_none()
            && self.next >= ix.samples.len()
            && self.end_ms.is_none_or(|end| end > self.last_sent_ms)
    }

    /// The latest file time sent.
    pub fn last_sent_ms(&self) -> u32 {
        self.last_sent_ms
    }

    pub fn is_paused(&self) -> bool {
        self.paused_at_ms.is_some()
    }

    /// The player's clock (file time it is playing now).
    fn clock(&self, now: Instant) -> u32 {
        let played = now.saturating_duration_since(self.anchor).as_millis();
        self.anchor_ms
            .saturating_add(u32::try_from(played).unwrap_or(u32::MAX))
    }

    /// What to send now. Call until it answers `Wait`, `Paused` or `End`.
    pub fn next(&mut self, now: Instant) -> Next<'_> {
        if self.ended {
            return Next::Paused;
        }
        let ix = &self.file.index;
        if self.headers > 0 {
            let h = &ix.headers[ix.headers.len() - self.headers];
            self.headers -= 1;
            return Next::Header(h, self.anchor_ms);
        }
        if self.paused_at_ms.is_some() {
            return Next::Paused;
        }
        let sample = ix
            .samples
            .get(self.next)
            .filter(|s| self.end_ms.is_none_or(|end| s.time_ms <= end));
        let Some(s) = sample else {
            // All sent: end once the player has played it, so a Flash client's buffer is
            // not cut short by the status message.
            let done_at = self.last_sent_ms;
            if self.clock(now) < done_at {
                let wait = u64::from(done_at - self.clock(now));
                return Next::Wait(now + Duration::from_millis(wait));
            }
            self.ended = true;
            let damaged =
                self.end_ms.is_none_or(|end| end >= ix.duration_ms) && ix.damage.is_some();
            return Next::End(if damaged { End::Damaged } else { End::Complete });
        };
        let horizon = self.clock(now).saturating_add(self.lead_ms());
        if s.time_ms > horizon {
            let wait = u64::from(s.time_ms - horizon);
            return Next::Wait(now + Duration::from_millis(wait));
        }
        self.next += 1;
        self.last_sent_ms = self.last_sent_ms.max(s.time_ms);
        Next::Sample(self.next - 1, s)
    }

    fn lead_ms(&self) -> u32 {
        u32::try_from(self.lead.as_millis()).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::super::flv;
    use super::*;
    use crate::rtmp::session::MediaKind;

    fn file(secs: u32) -> Arc<VodFile> {
        let bytes = flv::tests::file(secs);
        Arc::new(VodFile::from_bytes("t.flv".into(), bytes, false).unwrap())
    }

    /// Everything due at `now`: (kind, time) of the samples, and what stopped it.
    fn drain(c: &mut Cursor, now: Instant) -> (Vec<(MediaKind, u32)>, String) {
        let mut out = Vec::new();
        loop {
            match c.next(now) {
                Next::Header(..) => {}
                Next::Sample(_, s) => out.push((s.kind, s.time_ms)),
                other => return (out, format!("{other:?}")),
            }
        }
    }

    #[test]
    fn sends_a_lead_then_keeps_pace_and_completes_after_the_last_frame_played() {
        let t0 = Instant::now();
        let mut c = Cursor::new(file(10), 0, None, Duration::from_secs(2), t0);
        let (first, stop) = drain(&mut c, t0);
        assert!(stop.starts_with("Wait"), "{stop}");
        assert_eq!(first.first().map(|s| s.1), Some(0));
        assert!(first.iter().all(|s| s.1 <= 2000));
        assert!(first.last().unwrap().1 >= 1960);
        let (more, _) = drain(&mut c, t0 + Duration::from_secs(3));
        assert!(more.iter().all(|s| s.1 > 2000 && s.1 <= 5000));
        let (_, stop) = drain(&mut c, t0 + Duration::from_secs(9));
        assert!(stop.starts_with("Wait"), "not played out yet: {stop}");
        let (_, stop) = drain(&mut c, t0 + Duration::from_secs(11));
        assert_eq!(stop, "End(Complete)");
    }

    #[test]
    fn start_and_duration_cut_the_file_at_keyframes() {
        let t0 = Instant::now();
        let mut c = Cursor::new(file(10), 5500, Some(2000), Duration::from_secs(30), t0);
        let (sent, _) = drain(&mut c, t0);
        assert_eq!(sent.first(), Some(&(MediaKind::Video, 5000)));
        assert!(
            sent.iter().all(|s| (5000..=7500).contains(&s.1)),
            "{sent:?}"
        );
        let (_, stop) = drain(&mut c, t0 + Duration::from_secs(3));
        assert_eq!(stop, "End(Complete)");
    }

    #[test]
    fn seek_resends_headers_from_the_keyframe_before() {
        let t0 = Instant::now();
        let mut c = Cursor::new(file(10), 0, None, Duration::from_millis(500), t0);
        drain(&mut c, t0);
        assert_eq!(c.seek(8300, t0), 8000);
        assert!(matches!(c.next(t0), Next::Header(_, 8000)));
        let (sent, _) = drain(&mut c, t0);
        assert_eq!(sent.first(), Some(&(MediaKind::Video, 8000)));
        assert!(sent.iter().all(|s| s.1 <= 8500));
    }

    #[test]
    fn pause_and_resume_neither_repeat_nor_skip() {
        let t0 = Instant::now();
        let mut c = Cursor::new(file(6), 0, None, Duration::from_secs(1), t0);
        let (mut all, _) = drain(&mut c, t0);
        let t1 = t0 + Duration::from_millis(1500);
        all.extend(drain(&mut c, t1).0);
        assert_eq!(c.pause(t1), 1500);
        let (none, stop) = drain(&mut c, t1 + Duration::from_secs(30));
        assert!(none.is_empty());
        assert_eq!(stop, "Paused");
        let t2 = t1 + Duration::from_secs(60);
        c.resume(Some(1400), t2);
        for s in 1..=10 {
            all.extend(drain(&mut c, t2 + Duration::from_secs(s)).0);
        }
        let expect: Vec<_> = c
            .file()
            .index
            .samples
            .iter()
            .map(|s| (s.kind, s.time_ms))
            .collect();
        assert_eq!(all, expect);
    }

    #[test]
    fn sent_all_once_the_last_message_is_out_and_not_while_paused() {
        let t0 = Instant::now();
        let mut c = Cursor::new(file(3), 0, None, Duration::from_secs(10), t0);
        assert!(!c.sent_all(), "headers still to send");
        let (sent, stop) = drain(&mut c, t0);
        assert!(stop.starts_with("Wait"), "{stop}");
        assert!(c.sent_all());
        assert_eq!(c.last_sent_ms(), sent.iter().map(|s| s.1).max().unwrap());
        c.pause(t0);
        assert!(!c.sent_all());
    }
}
