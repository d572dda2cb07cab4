//! The files one connection plays: each NetStream's [`Cursor`] (when what is due) and
//! [`Reader`] (the bytes), written into the RTMP session, with the statuses FMS sends at the
//! end, on seek and on pause.
//!
//! No disk I/O runs on the connection's task: indexing a file and reading its blocks are
//! blocking-pool jobs whose results come back through [`VodPlays::next_done`]. A player reads
//! the next block ahead while it sends the current one, so a read rarely delays a message.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::media::StreamKey;
use crate::media::vod::{
    Cursor, EncodedKey, End, Library, Next, OpenError, ReadError, Reader, Sample, VodFile,
};
use crate::rtmp::Session;
use crate::rtmp::chunk::{MessageHeader, encode_standalone};
use crate::rtmp::session::{MediaKind, csid};

/// Messages one poll writes at most per stream, so one player cannot hog the task.
const POLL_BATCH: usize = 512;
/// Bytes one poll writes at most per stream before the connection flushes them: what a file
/// player holds in memory besides its blocks, however long the lead it sends at the start.
const POLL_BYTES: usize = 64 * 1024;

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

/// A file play asked for, waiting for its file to be indexed.
pub(super) struct Request {
    /// The name the client asked for, for status messages.
    pub name: String,
    pub key: StreamKey,
    pub path: PathBuf,
    pub source: Source,
    pub start_ms: u32,
    pub duration_ms: Option<u32>,
    pub reset: bool,
}

/// A blocking-pool job that finished.
pub(super) enum Done {
    /// A file indexed for the play `stream_id` asked for: [`VodPlays::opened`] says whether it
    /// is still wanted.
    Opened {
        stream_id: u32,
        ticket: u64,
        request: Box<Request>,
        result: Result<Arc<VodFile>, OpenError>,
    },
    /// A `getStreamLength` answer.
    Length { transaction_id: f64, secs: f64 },
    /// A block read for the play `play`.
    Block {
        play: u64,
        no: u64,
        result: std::io::Result<Arc<[u8]>>,
    },
}

struct VodPlay {
    /// Tells a block read for this play from one for a play that replaced it.
    id: u64,
    /// The name the client asked for, for status messages.
    name: String,
    source: Source,
    cursor: Cursor,
    reader: Reader,
    /// The sample the cursor gave out and is waiting for its block.
    pending: Option<(usize, Sample)>,
    /// Blocks being read for this play (at most the one it waits for and one ahead).
    reading: Vec<u64>,
    body: Vec<u8>,
    bytes: u64,
}

/// The connection's file plays by message stream id.
#[derive(Default)]
pub(super) struct VodPlays {
    map: HashMap<u32, VodPlay>,
    /// When the earliest cursor has something due.
    wake: Option<Instant>,
    /// Plays waiting for their file: stream id -> the ticket of the open that counts.
    opening: HashMap<u32, u64>,
    next_id: u64,
    jobs: JoinSet<Done>,
    tick: Tick,
}

/// Wake-ups on a grid: what falls due within one step goes out in one write, as live
/// fan-out does on its merge window. A file player is sent at least 500 ms ahead, so a step
/// (at most a second, usually 100 ms) is never a stall.
#[derive(Debug, Clone, Copy, Default)]
struct Tick {
    base: Option<Instant>,
    every: Duration,
}

impl Tick {
    fn round_up(&self, at: Instant) -> Instant {
        let Some(base) = self.base else {
            return at;
        };
        let every = self.every.as_nanos();
        if every == 0 {
            return at;
        }
        let since = at.saturating_duration_since(base).as_nanos();
        let steps = since.div_ceil(every);
        base + Duration::from_nanos(u64::try_from(steps * every).unwrap_or(u64::MAX))
    }
}

impl VodPlays {
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Sends what falls due within `every` together (the media merge window).
    pub fn set_tick(&mut self, every: Duration) {
        self.tick.every = every.min(Duration::from_secs(1));
    }

    /// Indexes `request`'s file on the blocking pool; the play starts when
    /// [`VodPlays::opened`] hands it back. A newer play or a stop on the stream voids it.
    pub fn open(&mut self, stream_id: u32, request: Request, library: Arc<Library>) {
        self.remove(stream_id);
        self.next_id += 1;
        let ticket = self.next_id;
        self.opening.insert(stream_id, ticket);
        self.jobs.spawn_blocking(move || {
            let result = library.open(&request.path);
            Done::Opened {
                stream_id,
                ticket,
                request: Box::new(request),
                result,
            }
        });
    }

    /// Answers `getStreamLength` for the file at `path` once it is indexed.
    pub fn length(&mut self, transaction_id: f64, path: PathBuf, library: Arc<Library>) {
        self.jobs.spawn_blocking(move || {
            let secs = library
                .open(&path)
                .map_or(0.0, |f| f64::from(f.index.duration_ms) / 1000.0);
            Done::Length {
                transaction_id,
                secs,
            }
        });
    }

    /// Whether a job is out (the connection waits on [`VodPlays::next_done`] only then).
    pub fn has_jobs(&self) -> bool {
        !self.jobs.is_empty()
    }

    /// The next finished job; pending forever when none is out.
    pub async fn next_done(&mut self) -> Option<Done> {
        match self.jobs.join_next().await {
            None => std::future::pending().await,
            Some(Ok(done)) => Some(done),
            // Only a panic in a job gets here; the play it served waits for nothing more.
            Some(Err(e)) => {
                warn!(error = %e, "a file job failed");
                None
            }
        }
    }

    /// Whether the open with `ticket` is still the one `stream_id` waits for; it no longer
    /// waits either way.
    pub fn opened(&mut self, stream_id: u32, ticket: u64) -> bool {
        if self.opening.get(&stream_id) == Some(&ticket) {
            self.opening.remove(&stream_id);
            return true;
        }
        false
    }

    /// A block read came back: the play that asked holds it and goes on.
    pub fn block_read(
        &mut self,
        session: &mut Session,
        play: u64,
        no: u64,
        result: std::io::Result<Arc<[u8]>>,
        now: Instant,
    ) {
        let Some((&stream_id, p)) = self.map.iter_mut().find(|(_, p)| p.id == play) else {
            return;
        };
        p.reading.retain(|&n| n != no);
        match result {
            Ok(block) => {
                p.reader.give(no, block);
                self.wake = Some(now);
            }
            Err(e)
                if p.pending
                    .is_some_and(|(_, s)| p.reader.file().spans(&s, no)) =>
            {
                p.fail(
                    session,
                    stream_id,
                    p.pending.map_or(0, |(_, s)| s.offset),
                    &e,
                );
                self.map.remove(&stream_id);
            }
            // A read ahead failed: the sample that needs it will ask again and say so.
            Err(_) => {}
        }
    }

    fn read_block(jobs: &mut JoinSet<Done>, p: &mut VodPlay, no: u64) {
        if p.reading.contains(&no) {
            return;
        }
        p.reading.push(no);
        let (file, play) = (p.reader.file().clone(), p.id);
        jobs.spawn_blocking(move || Done::Block {
            play,
            no,
            result: file.read_block(no),
        });
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
        self.tick.base.get_or_insert(now);
        self.next_id += 1;
        self.map.insert(
            stream_id,
            VodPlay {
                id: self.next_id,
                name,
                source,
                cursor,
                reader: Reader::new(file),
                pending: None,
                reading: Vec::new(),
                body: Vec::new(),
                bytes: 0,
            },
        );
        self.wake = Some(now);
    }

    /// Stops the file play on `stream_id` (or voids the open it waits for); its name when it
    /// was playing.
    pub fn remove(&mut self, stream_id: u32) -> Option<String> {
        self.opening.remove(&stream_id);
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
        p.pending = None;
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
        let tick = self.tick;
        let jobs = &mut self.jobs;
        for (&stream_id, p) in self.map.iter_mut() {
            let (mut sent, mut written) = (0, 0);
            loop {
                if sent == POLL_BATCH || written >= POLL_BYTES {
                    wake = Some(now);
                    break;
                }
                if let Some((index, s)) = p.pending {
                    let header = MessageHeader {
                        timestamp: s.time_ms,
                        type_id: s.type_id(),
                        stream_id,
                    };
                    let chunk_size = session.out_chunk_size();
                    let key = EncodedKey {
                        sample: index,
                        stream_id,
                        chunk_size,
                    };
                    let bytes = match p.cursor.file().encoded(&key) {
                        Some(b) => b,
                        None => {
                            let whole = match p.reader.prepare(&s) {
                                Ok(whole) => whole,
                                // Back when the block is read (`block_read`), not on a timer.
                                Err(ReadError::NeedBlock(no)) => {
                                    Self::read_block(jobs, p, no);
                                    break;
                                }
                                Err(ReadError::Io(e)) => {
                                    p.fail(session, stream_id, s.offset, &e);
                                    done.push(stream_id);
                                    break;
                                }
                            };
                            if !whole {
                                p.body.clear();
                                if let Err(e) = p.reader.body(&s, &mut p.body) {
                                    p.fail(session, stream_id, s.offset, &e);
                                    done.push(stream_id);
                                    break;
                                }
                            }
                            let payload = match whole {
                                true => p.reader.slice(&s).unwrap_or_default(),
                                false => &p.body[..],
                            };
                            let chunks = payload.len().div_ceil(chunk_size.max(1) as usize);
                            let mut out = BytesMut::with_capacity(payload.len() + 12 + chunks * 5);
                            encode_standalone(
                                media_csid(s.kind),
                                &header,
                                payload,
                                chunk_size,
                                &mut out,
                            );
                            let b = out.freeze();
                            p.cursor.file().keep_encoded(key, b.clone());
                            if p.body.capacity() > POLL_BYTES {
                                // One big frame should not set what a player holds from then on.
                                p.body = Vec::new();
                            }
                            if let Some(no) = p.reader.read_ahead(&s) {
                                Self::read_block(jobs, p, no);
                            }
                            b
                        }
                    };
                    written += bytes.len();
                    p.bytes += u64::from(s.len);
                    session.send_encoded(bytes);
                    p.pending = None;
                    sent += 1;
                    continue;
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
                        written += h.body.len();
                    }
                    Next::Sample(index, s) => {
                        p.pending = Some((index, *s));
                        continue;
                    }
                    Next::Wait(at) => {
                        let at = tick.round_up(at);
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

    fn fail(&self, session: &mut Session, stream_id: u32, offset: u64, e: &dyn std::fmt::Display) {
        warn!(file = %self.reader_path(), offset, error = %e, "file read failed; play stopped");
        session.play_failed(
            stream_id,
            "NetStream.Play.Failed",
            &format!("The file cannot be read at byte {offset}."),
        );
    }
}

fn media_csid(kind: MediaKind) -> u32 {
    match kind {
        MediaKind::Audio => csid::AUDIO,
        MediaKind::Video => csid::VIDEO,
        MediaKind::Data => csid::DATA,
    }
}
