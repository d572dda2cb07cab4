//! The files one connection plays: each NetStream's [`Cursor`] (when what is due) and
//! [`Reader`] (the bytes), written into the RTMP session, with the statuses FMS sends at the
//! end, on seek and on pause.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::media::StreamKey;
use crate::media::vod::{Cursor, End, Next, Reader, VodFile};
use crate::rtmp::Session;
use crate::rtmp::chunk::MessageHeader;
use crate::rtmp::session::{MediaKind, csid};

/// Messages one poll writes at most per stream, so one player cannot hog the task.
const POLL_BATCH: usize = 512;

/// Where a DVR play goes once the recorded part is sent: the live stream it rewound, with
/// live timestamps moved onto the file's timeline.
#[derive(Debug, Clone)]
pub(super) struct ThenLive {
    pub key: StreamKey,
    pub live_to_file: u32,
}

/// What a file play reads.
pub(super) enum Source {
    /// A finished file.
    File,
    /// A recording still being written (DVR): what its index stopped at is the write edge,
    /// not damage; with `then_live` the play goes on live after it.
    Recording { then_live: Option<ThenLive> },
}

/// A DVR play that sent everything recorded when it began: the connection goes on with the
/// live stream on the same NetStream.
pub(super) struct ToLive {
    pub stream_id: u32,
    pub name: String,
    pub then: ThenLive,
    /// The latest file time sent: live frames before it are not sent again.
    pub from_ms: u32,
}

struct VodPlay {
    /// The name the client asked for, for status messages.
    name: String,
    source: Source,
    cursor: Cursor,
    reader: Reader,
    body: Vec<u8>,
    bytes: u64,
}

/// The connection's file plays by message stream id.
#[derive(Default)]
pub(super) struct VodPlays {
    map: HashMap<u32, VodPlay>,
    /// When the earliest cursor has something due.
    wake: Option<Instant>,
}

impl VodPlays {
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Starts `file` on `stream_id` from `start_ms` for `duration_ms` (the session has sent
    /// `Play.Start` already); what is due goes out at the next [`VodPlays::poll`].
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &mut self,
        stream_id: u32,
        name: String,
        source: Source,
        file: Arc<VodFile>,
        start_ms: u32,
        duration_ms: Option<u32>,
        lead: Duration,
        now: Instant,
    ) {
        let cursor = Cursor::new(file.clone(), start_ms, duration_ms, lead, now);
        crate::metrics::vod_play();
        self.map.insert(
            stream_id,
            VodPlay {
                name,
                source,
                cursor,
                reader: Reader::new(file),
                body: Vec::new(),
                bytes: 0,
            },
        );
        self.wake = Some(now);
    }

    /// Stops the file play on `stream_id`; its name when there was one.
    pub fn remove(&mut self, stream_id: u32) -> Option<String> {
        self.map.remove(&stream_id).map(|p| p.name)
    }

    /// The next instant something is due, if any.
    pub fn wake(&self) -> Option<Instant> {
        self.wake
    }

    /// Seeks `stream_id`; false when it plays no file.
    pub fn seek(&mut self, session: &mut Session, stream_id: u32, ms: u32, now: Instant) -> bool {
        let Some(p) = self.map.get_mut(&stream_id) else {
            return false;
        };
        let at = p.cursor.seek(ms, now);
        crate::metrics::vod_seek();
        info!(stream = %p.name, asked_ms = ms, at_ms = at, "seek");
        session.seek_notify(stream_id, &p.name, at);
        self.wake = Some(now);
        true
    }

    /// Pauses or unpauses `stream_id`; false when it plays no file.
    pub fn pause(
        &mut self,
        session: &mut Session,
        stream_id: u32,
        pause: bool,
        position_ms: f64,
        now: Instant,
    ) -> bool {
        let Some(p) = self.map.get_mut(&stream_id) else {
            return false;
        };
        if pause {
            p.cursor.pause(now);
        } else {
            let pos = (position_ms.is_finite() && position_ms >= 0.0)
                .then(|| position_ms.min(f64::from(u32::MAX)) as u32);
            p.cursor.resume(pos, now);
            self.wake = Some(now);
        }
        session.pause_notify(stream_id, pause, &p.name);
        true
    }

    /// Writes everything due into `session`, ends finished plays with their statuses, and
    /// sets when to come back; returns the DVR plays that go on live now.
    #[must_use]
    pub fn poll(&mut self, session: &mut Session, now: Instant) -> Vec<ToLive> {
        let mut wake: Option<Instant> = None;
        let mut done = Vec::new();
        let mut to_live = Vec::new();
        for (&stream_id, p) in self.map.iter_mut() {
            let mut sent = 0;
            loop {
                if sent == POLL_BATCH {
                    wake = Some(now);
                    break;
                }
                if let Source::Recording {
                    then_live: Some(then),
                } = &p.source
                    && p.cursor.sent_all()
                {
                    // The client still holds up to a buffer of the recording: live frames
                    // queue behind it, so the picture does not stall at the jump.
                    info!(stream = %p.name, bytes = p.bytes, at_ms = p.cursor.last_sent_ms(), "rewound play reached the recording's end; going on live");
                    to_live.push(ToLive {
                        stream_id,
                        name: p.name.clone(),
                        then: then.clone(),
                        from_ms: p.cursor.last_sent_ms(),
                    });
                    done.push(stream_id);
                    break;
                }
                match p.cursor.next(now) {
                    Next::Header(h, ts) => {
                        let header = MessageHeader {
                            timestamp: ts,
                            type_id: h.type_id(),
                            stream_id,
                        };
                        session.send_media(media_csid(h.kind), &header, &h.body);
                        p.bytes += h.body.len() as u64;
                    }
                    Next::Sample(s) => {
                        let s = *s;
                        p.body.clear();
                        if let Err(e) = p.reader.body(&s, &mut p.body) {
                            warn!(file = %p.reader_path(), offset = s.offset, error = %e, "file read failed; play stopped");
                            session.play_failed(
                                stream_id,
                                "NetStream.Play.Failed",
                                &format!("The file cannot be read at byte {}.", s.offset),
                            );
                            done.push(stream_id);
                            break;
                        }
                        let header = MessageHeader {
                            timestamp: s.time_ms,
                            type_id: s.type_id(),
                            stream_id,
                        };
                        session.send_media(media_csid(s.kind), &header, &p.body);
                        p.bytes += p.body.len() as u64;
                    }
                    Next::Wait(at) => {
                        wake = Some(wake.map_or(at, |w| w.min(at)));
                        break;
                    }
                    Next::Paused => break,
                    Next::End(End::Complete) | Next::End(End::Damaged)
                        if matches!(p.source, Source::Recording { .. }) =>
                    {
                        let ix = &p.cursor.file().index;
                        info!(stream = %p.name, bytes = p.bytes, "rewound play reached the end asked for");
                        session.play_complete(stream_id, &p.name, ix.duration_ms, p.bytes);
                        done.push(stream_id);
                        break;
                    }
                    Next::End(End::Complete) => {
                        let ix = &p.cursor.file().index;
                        info!(stream = %p.name, bytes = p.bytes, "file played to the end");
                        session.play_complete(stream_id, &p.name, ix.duration_ms, p.bytes);
                        done.push(stream_id);
                        break;
                    }
                    Next::End(End::Damaged) => {
                        let file = p.cursor.file();
                        let (offset, why) = file
                            .index
                            .damage
                            .as_ref()
                            .map_or((0, ""), |d| (d.offset, d.why.as_str()));
                        warn!(file = %file.path.display(), offset, why, "damaged file: played up to the damage");
                        session.play_failed(
                            stream_id,
                            "NetStream.Play.Failed",
                            &format!("The file is damaged at byte {offset}: {why}."),
                        );
                        done.push(stream_id);
                        break;
                    }
                }
                sent += 1;
            }
        }
        for id in done {
            self.map.remove(&id);
        }
        self.wake = wake;
        to_live
    }

    /// Length in seconds of the file `stream_id` plays.
    pub fn length_secs(&self, name: &str) -> Option<f64> {
        self.map
            .values()
            .find(|p| p.name == name)
            .map(|p| f64::from(p.cursor.file().index.duration_ms) / 1000.0)
    }
}

impl VodPlay {
    fn reader_path(&self) -> String {
        self.cursor.file().path.display().to_string()
    }
}

fn media_csid(kind: MediaKind) -> u32 {
    match kind {
        MediaKind::Audio => csid::AUDIO,
        MediaKind::Video => csid::VIDEO,
        MediaKind::Data => csid::DATA,
    }
}
