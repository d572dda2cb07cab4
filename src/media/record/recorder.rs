//! One recording: a task that plays a live stream into `<name>.flv.part` through the same
//! [`Playback`] a player uses, then, when the publish ends, writes the finished `<name>.flv`.
//!
//! The stream's ring is the only queue: the publisher never waits for the disk, and a
//! recorder that falls behind skips to the next keyframe like a slow player (logged, a gap in
//! the file). Tags go to the `.part` file as they arrive, so a gateway killed mid-recording
//! leaves an FLV that reads to its last complete tag. Closing writes `onMetaData` (duration,
//! filesize, keyframe index) first, which FLV players need at the start, so the tags are
//! copied once behind it into `<name>.flv.tmp`, synced and renamed over `<name>.flv`.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use tokio::sync::broadcast::error::RecvError;
use tracing::{info, warn};

use super::super::player::Player;
use super::super::registry::{Frame, StreamKey, Subscription};
use super::super::sink::{MediaSink, Playback};
use super::flv::{self, Index, Keyframe};
use super::path::part_path;
use super::scan;
use crate::rtmp::amf::Amf0Value;
use crate::rtmp::session::MediaKind;

/// Buffer in front of the `.part` file.
const WRITE_CHUNK: usize = 256 * 1024;
/// How often buffered tags are pushed to the file.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Who asked for a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The `[media] record` mode with the publisher's publish type.
    Publish,
    /// A guest's `record-start`.
    Guest,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Publish => "publish",
            Origin::Guest => "guest",
        }
    }
}

/// What a recorder task shares with the table and whoever stops it.
pub(super) struct Shared {
    pub key: StreamKey,
    pub stop: Notify,
    pub origin: Origin,
    pub started_at: SystemTime,
    /// The finished file's name; set by the task once the suffix rule chose it.
    pub file: Mutex<PathBuf>,
    pub bytes: AtomicU64,
    pub duration_ms: AtomicU64,
    /// Whether this recording has written media (an appended file's old tags do not count).
    pub has_media: AtomicBool,
    /// Added to a live timestamp to give the file's (DVR players continue on it); `u64::MAX`
    /// until the first frame fixed it.
    pub live_to_file: AtomicU64,
}

impl Shared {
    /// The file was opened: its final name and what it held already (an append).
    pub fn set_file(&self, path: &Path, index: &Index) {
        *lock(&self.file) = path.to_owned();
        self.store(index);
    }

    /// Tags were written; `live_to_file` maps live timestamps onto the file's.
    pub fn progress(&self, index: &Index, live_to_file: Option<u32>) {
        self.has_media.store(true, Ordering::Relaxed);
        if let Some(shift) = live_to_file {
            self.live_to_file.store(u64::from(shift), Ordering::Relaxed);
        }
        self.store(index);
    }

    fn store(&self, index: &Index) {
        self.bytes
            .store(index.body_start + index.body_len, Ordering::Relaxed);
        self.duration_ms
            .store(u64::from(index.duration_ms), Ordering::Relaxed);
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data behind the lock: a panic elsewhere leaves nothing half-updated that matters.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Turns admitted frames into FLV tags with timestamps from 0 and remembers what the final
/// `onMetaData` needs.
#[derive(Default)]
struct FlvSink {
    buf: Vec<u8>,
    /// The `.part` file's layout so far; `body_start` passes the publisher's `onMetaData` when
    /// it came first and was written there (so a file a crash leaves still has it).
    index: Index,
    base: Option<u32>,
    /// Added to every timestamp: where an appended recording continues the file's timeline.
    offset: u32,
    ended: bool,
    oversized: u64,
}

impl FlvSink {
    /// What turns a live timestamp into this file's, once the first frame set the base.
    fn live_to_file(&self) -> Option<u32> {
        self.base.map(|b| self.offset.wrapping_sub(b))
    }
}

impl MediaSink for FlvSink {
    fn frame(&mut self, frame: &Arc<Frame>, timestamp: Option<u32>) {
        let ts = timestamp.unwrap_or(frame.timestamp);
        let base = *self.base.get_or_insert(ts);
        let rel = ts.wrapping_sub(base);
        // A header stamped before the first frame is written at 0, not 49 days later.
        let rel = if rel >= 0x8000_0000 { 0 } else { rel };
        let rel = rel.saturating_add(self.offset);
        let tag_type = match frame.kind {
            MediaKind::Audio => {
                self.index.has_audio = true;
                flv::TAG_AUDIO
            }
            MediaKind::Video => {
                self.index.has_video = true;
                if frame.info.keyframe && !frame.info.sequence_header {
                    self.index.keyframes.push(Keyframe {
                        time_ms: rel,
                        position: self.index.body_len,
                    });
                }
                flv::TAG_VIDEO
            }
            MediaKind::Data => {
                if let Some(props) = publisher_metadata(frame) {
                    // Kept for the final `onMetaData`, which replaces it.
                    self.index.metadata = props;
                    if self.index.body_len == 0
                        && self.index.body_start == flv::HEADER_LEN
                        && flv::put_tag(&mut self.buf, flv::TAG_SCRIPT, 0, &frame.payload)
                    {
                        self.index.body_start += flv::tag_len(frame.payload.len());
                    }
                    return;
                }
                flv::TAG_SCRIPT
            }
        };
        // An AMF3 data message (type 15) carries a format byte FLV script tags do not have.
        let body: &[u8] = if frame.type_id == 15 {
            frame.payload.get(1..).unwrap_or_default()
        } else {
            &frame.payload
        };
        if flv::put_tag(&mut self.buf, tag_type, rel, body) {
            self.index.body_len += flv::tag_len(body.len());
            self.index.duration_ms = self.index.duration_ms.max(rel);
        } else {
            self.oversized += 1;
        }
    }

    fn unpublished(&mut self) {
        self.ended = true;
    }
}

/// The properties of an AMF0 `onMetaData` message.
fn publisher_metadata(frame: &Frame) -> Option<Vec<(String, Amf0Value)>> {
    if frame.type_id != 18 {
        return None;
    }
    scan::metadata(&frame.payload)
}

/// Records `sub` into `path` (already past the suffix rule), or with `append` onto the end of
/// the finished file there, until the publish ends or `shared.stop` is notified.
pub(super) async fn run(sub: Subscription, path: PathBuf, append: bool, shared: Arc<Shared>) {
    let key = shared.key.clone();
    let wanted = path.clone();
    let opened = tokio::task::spawn_blocking(move || open(&wanted, append))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    let (path, mut sink, file) = match opened {
        Ok(o) => o,
        Err(e) => {
            warn!(stream = %key, path = %path.display(), error = %e, "recording not started");
            return;
        }
    };
    let part = part_path(&path);
    shared.set_file(&path, &sink.index);
    let mut file =
        tokio::io::BufWriter::with_capacity(WRITE_CHUNK, tokio::fs::File::from_std(file));
    if sink.offset > 0 {
        info!(stream = %key, path = %path.display(), from_ms = sink.offset, "recording, appended");
    } else {
        info!(stream = %key, path = %path.display(), "recording");
    }
    // Never disconnected for lagging: a recorder that falls behind loses a GOP, not the file.
    let player = Player::new(usize::MAX, Duration::from_secs(1));
    let mut playback = Playback::start(sub, player, &mut sink);
    let mut failed = None;
    let mut flushed = tokio::time::Instant::now();
    loop {
        // Never `TooSlow` below: the player allows unlimited skips.
        let stopped = tokio::select! {
            item = playback.recv() => {
                match &item {
                    Err(RecvError::Closed) => break,
                    Err(RecvError::Lagged(n)) => {
                        warn!(stream = %key, missed = n, "recording fell behind the stream; gap until the next keyframe");
                    }
                    Ok(_) => {}
                }
                let _ = playback.handle(item, &mut sink);
                let _ = playback.drain(256, &mut sink);
                false
            }
            _ = shared.stop.notified() => {
                // What was published before the stop is already on the ring: keep it.
                let _ = playback.drain(usize::MAX, &mut sink);
                true
            }
        };
        if !sink.buf.is_empty() {
            if let Err(e) = file.write_all(&sink.buf).await {
                failed = Some(e);
                break;
            }
            sink.buf.clear();
            shared.progress(&sink.index, sink.live_to_file());
            // At most a second of media sits in the buffer, which is what a crash loses.
            if flushed.elapsed() >= FLUSH_EVERY {
                if let Err(e) = file.flush().await {
                    failed = Some(e);
                    break;
                }
                flushed = tokio::time::Instant::now();
            }
        }
        if sink.ended || stopped {
            break;
        }
    }
    drop(playback);
    if failed.is_none()
        && let Err(e) = file.flush().await
    {
        failed = Some(e);
    }
    drop(file);
    if let Some(e) = failed {
        // The `.part` file keeps what was written; the stream and its players go on.
        warn!(stream = %key, path = %part.display(), error = %e, "recording stopped: write failed");
        return;
    }
    if sink.index.body_len == 0 {
        // Started for a publish that never came (or sent nothing): no file is better than an
        // empty one.
        let _ = tokio::fs::remove_file(&part).await;
        info!(stream = %key, path = %path.display(), "recording stopped before any media; no file written");
        return;
    }
    if sink.oversized > 0 {
        warn!(stream = %key, dropped = sink.oversized, "messages over 16 MiB cannot be FLV tags; left out of the recording");
    }
    let (dest, body_len, duration_ms) = (path.clone(), sink.index.body_len, sink.index.duration_ms);
    let done = tokio::task::spawn_blocking(move || finish(&part, &dest, &sink.index)).await;
    match done {
        Ok(Ok(size)) => info!(
            stream = %key,
            path = %path.display(),
            bytes = size,
            media_bytes = body_len,
            duration_ms,
            "recording finished"
        ),
        Ok(Err(e)) => {
            warn!(stream = %key, path = %path.display(), error = %e, "recording not finished; its .part file is kept")
        }
        Err(e) => warn!(stream = %key, error = %e, "recording finish panicked"),
    }
}

/// Creates the folder and the `.part` file, and says where the tags go next. A new file gets
/// the FLV header; an appended one is the finished file moved back to `.part`, cut to its last
/// whole tag, with what its `onMetaData` will need carried on.
fn open(path: &Path, append: bool) -> std::io::Result<(PathBuf, FlvSink, std::fs::File)> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut sink = FlvSink::default();
    sink.index.body_start = flv::HEADER_LEN;
    let part = part_path(path);
    if append && path.exists() && !part.exists() {
        std::fs::rename(path, &part)?;
        let s = match scan::scan(&part) {
            Ok(s) => s,
            Err(e) => {
                // Not a file this can continue: put it back untouched.
                let _ = std::fs::rename(&part, path);
                return Err(e);
            }
        };
        let mut file = std::fs::OpenOptions::new().write(true).open(&part)?;
        file.set_len(s.index.body_start + s.index.body_len)?;
        file.seek(SeekFrom::End(0))?;
        // One millisecond after the last tag, so the timeline never steps back.
        if s.index.body_len > 0 {
            sink.offset = s.index.duration_ms.saturating_add(1);
        }
        sink.index = s.index;
        return Ok((path.to_owned(), sink, file));
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(part_path(path))?;
    file.write_all(&flv::file_header(true, true))?;
    Ok((path.to_owned(), sink, file))
}

/// Writes `dest` = header + `onMetaData` + the `s.body_len` bytes of tags that start at
/// `s.body_start` in `part`, then removes `part`. Returns the size of `dest`.
pub(super) fn finish(part: &Path, dest: &Path, s: &Index) -> std::io::Result<u64> {
    let meta = flv::metadata_tag(s);
    let mut tmp = dest.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut out = std::io::BufWriter::with_capacity(WRITE_CHUNK, std::fs::File::create(&tmp)?);
        out.write_all(&flv::file_header(s.has_audio, s.has_video))?;
        out.write_all(&meta)?;
        let mut input = std::fs::File::open(part)?;
        input.seek(SeekFrom::Start(s.body_start))?;
        let copied = std::io::copy(&mut input.take(s.body_len), &mut out)?;
        if copied != s.body_len {
            return Err(std::io::Error::other(format!(
                "{} holds {copied} bytes of tags, {} were written",
                part.display(),
                s.body_len
            )));
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(file.metadata()?.len())
    })();
    match result {
        Ok(size) => {
            std::fs::rename(&tmp, dest)?;
            std::fs::remove_file(part)?;
            Ok(size)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}
