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
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use tokio::sync::broadcast::error::RecvError;
use tracing::{info, warn};

use super::super::player::Player;
use super::super::registry::{Frame, Registry, StreamKey};
use super::super::sink::{MediaSink, Playback};
use super::flv::{self, Keyframe, Summary};
use super::path::{part_path, unused_path};
use super::scan;
use crate::rtmp::amf::Amf0Value;
use crate::rtmp::session::MediaKind;

/// Buffer in front of the `.part` file.
const WRITE_CHUNK: usize = 256 * 1024;
/// How often buffered tags are pushed to the file.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// A running recording, owned by whoever started it (the publishing connection): it ends when
/// the publish ends or when this handle is dropped, with what was published until then.
pub struct Recording {
    shared: Arc<Shared>,
}

struct Shared {
    key: StreamKey,
    stop: Notify,
    bytes: AtomicU64,
}

impl Recording {
    pub fn key(&self) -> &StreamKey {
        &self.shared.key
    }

    /// Bytes of media written so far.
    pub fn bytes(&self) -> u64 {
        self.shared.bytes.load(Ordering::Relaxed)
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        self.shared.stop.notify_one();
    }
}

/// Starts recording `key` into `path` (or a free name next to it, see
/// [`unused_path`]). Subscribes before returning, so nothing published after this call is
/// missed; the folder and file are created by the task.
pub fn spawn(registry: &Arc<Registry>, key: StreamKey, path: PathBuf) -> Recording {
    let sub = registry.tap(key.clone());
    let mut sink = FlvSink {
        body_start: flv::HEADER_LEN,
        ..FlvSink::default()
    };
    // Never disconnected for lagging: a recorder that falls behind loses a GOP, not the file.
    let player = Player::new(usize::MAX, Duration::from_secs(1));
    let playback = Playback::start(sub, player, &mut sink);
    let shared = Arc::new(Shared {
        key,
        stop: Notify::new(),
        bytes: AtomicU64::new(0),
    });
    tokio::spawn(run(playback, sink, path, shared.clone()));
    Recording { shared }
}

/// Turns admitted frames into FLV tags with timestamps from 0 and remembers what the final
/// `onMetaData` needs.
#[derive(Default)]
struct FlvSink {
    buf: Vec<u8>,
    /// Bytes before the first media tag in the `.part` file: the header, and the publisher's
    /// `onMetaData` when it came first (so a file a crash leaves still has it).
    body_start: u64,
    /// Tag bytes produced so far (written or in `buf`), i.e. the next tag's offset in the body.
    body_len: u64,
    base: Option<u32>,
    duration_ms: u32,
    keyframes: Vec<Keyframe>,
    has_audio: bool,
    has_video: bool,
    publisher_meta: Vec<(String, Amf0Value)>,
    ended: bool,
    oversized: u64,
}

impl MediaSink for FlvSink {
    fn frame(&mut self, frame: &Arc<Frame>, timestamp: Option<u32>) {
        let ts = timestamp.unwrap_or(frame.timestamp);
        let base = *self.base.get_or_insert(ts);
        let rel = ts.wrapping_sub(base);
        // A header stamped before the first frame is written at 0, not 49 days later.
        let rel = if rel >= 0x8000_0000 { 0 } else { rel };
        let tag_type = match frame.kind {
            MediaKind::Audio => {
                self.has_audio = true;
                flv::TAG_AUDIO
            }
            MediaKind::Video => {
                self.has_video = true;
                if frame.info.keyframe && !frame.info.sequence_header {
                    self.keyframes.push(Keyframe {
                        time_ms: rel,
                        position: self.body_len,
                    });
                }
                flv::TAG_VIDEO
            }
            MediaKind::Data => {
                if let Some(props) = publisher_metadata(frame) {
                    // Kept for the final `onMetaData`, which replaces it.
                    self.publisher_meta = props;
                    if self.body_len == 0
                        && self.body_start == flv::HEADER_LEN
                        && flv::put_tag(&mut self.buf, flv::TAG_SCRIPT, 0, &frame.payload)
                    {
                        self.body_start += flv::tag_len(frame.payload.len());
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
            self.body_len += flv::tag_len(body.len());
            self.duration_ms = self.duration_ms.max(rel);
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

async fn run(mut playback: Playback, mut sink: FlvSink, path: PathBuf, shared: Arc<Shared>) {
    let key = shared.key.clone();
    let path = match choose_path(&path).await {
        Ok(p) => p,
        Err(e) => {
            warn!(stream = %key, path = %path.display(), error = %e, "recording not started");
            return;
        }
    };
    let part = part_path(&path);
    let mut file = match open_part(&part).await {
        Ok(f) => f,
        Err(e) => {
            warn!(stream = %key, path = %part.display(), error = %e, "recording not started");
            return;
        }
    };
    info!(stream = %key, path = %path.display(), "recording");
    let mut failed = None;
    let mut flushed = tokio::time::Instant::now();
    loop {
        let item = tokio::select! {
            item = playback.recv() => item,
            _ = shared.stop.notified() => {
                // What was published before the stop is already on the ring: keep it.
                let _ = playback.drain(usize::MAX, &mut sink);
                if let Err(e) = file.write_all(&sink.buf).await {
                    failed = Some(e);
                }
                sink.buf.clear();
                break;
            }
        };
        match item {
            Err(RecvError::Closed) => break,
            Err(RecvError::Lagged(n)) => {
                warn!(stream = %key, missed = n, "recording fell behind the stream; gap until the next keyframe");
            }
            Ok(_) => {}
        }
        // Never `TooSlow`: the player allows unlimited skips.
        let _ = playback.handle(item, &mut sink);
        let _ = playback.drain(256, &mut sink);
        if !sink.buf.is_empty() {
            if let Err(e) = file.write_all(&sink.buf).await {
                failed = Some(e);
                break;
            }
            shared
                .bytes
                .fetch_add(sink.buf.len() as u64, Ordering::Relaxed);
            sink.buf.clear();
            // At most a second of media sits in the buffer, which is what a crash loses.
            if flushed.elapsed() >= FLUSH_EVERY {
                if let Err(e) = file.flush().await {
                    failed = Some(e);
                    break;
                }
                flushed = tokio::time::Instant::now();
            }
        }
        if sink.ended {
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
    if sink.oversized > 0 {
        warn!(stream = %key, dropped = sink.oversized, "messages over 16 MiB cannot be FLV tags; left out of the recording");
    }
    let (dest, body_len, duration_ms) = (path.clone(), sink.body_len, sink.duration_ms);
    let done = tokio::task::spawn_blocking(move || {
        let summary = Summary {
            publisher: &sink.publisher_meta,
            duration_ms: sink.duration_ms,
            has_audio: sink.has_audio,
            has_video: sink.has_video,
            keyframes: &sink.keyframes,
            body_len: sink.body_len,
        };
        finish(&part, &dest, sink.body_start, &summary)
    })
    .await;
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

async fn choose_path(path: &Path) -> std::io::Result<PathBuf> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || unused_path(&path, now, |p| p.exists()))
        .await
        .map_err(std::io::Error::other)
}

async fn open_part(part: &Path) -> std::io::Result<tokio::io::BufWriter<tokio::fs::File>> {
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(part)
        .await?;
    let mut w = tokio::io::BufWriter::with_capacity(WRITE_CHUNK, file);
    w.write_all(&flv::file_header(true, true)).await?;
    Ok(w)
}

/// Writes `dest` = header + `onMetaData` + the `s.body_len` bytes of tags that start at
/// `body_start` in `part`, then removes `part`. Returns the size of `dest`.
pub(super) fn finish(
    part: &Path,
    dest: &Path,
    body_start: u64,
    s: &Summary<'_>,
) -> std::io::Result<u64> {
    let meta = flv::metadata_tag(s);
    let mut tmp = dest.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut out = std::io::BufWriter::with_capacity(WRITE_CHUNK, std::fs::File::create(&tmp)?);
        out.write_all(&flv::file_header(s.has_audio, s.has_video))?;
        out.write_all(&meta)?;
        let mut input = std::fs::File::open(part)?;
        input.seek(SeekFrom::Start(body_start))?;
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
