//! The recordings running in the gateway, one per stream at most: who started each (a publish
//! type, a guest, an operator), where it writes and how far it got; stop one by stream.
//!
//! A recording is owned here, not by whoever started it, so a guest, the admin API and the
//! publishing connection all see and stop the same one. It ends by itself when its publish
//! ends; one started before its stream is live waits for the next publish.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::Notify;

use super::super::registry::{Registry, StreamKey};
use super::path::{part_path, unused_path};
use super::recorder::{self, Shared, lock};

pub use super::recorder::Origin;

/// One running recording, as the admin API and guests see it.
#[derive(Debug, Clone)]
pub struct RecordingInfo {
    pub stream: StreamKey,
    /// The file being written: the finished name; the tags go to `<file>.part` until the end.
    pub file: PathBuf,
    /// Bytes written to the file so far (FLV header and tags).
    pub bytes: u64,
    /// Timestamp of the last tag written, from 0.
    pub duration_ms: u64,
    pub started_at: SystemTime,
    pub origin: Origin,
    /// Started before its stream was live, and nothing has been published since.
    pub waiting: bool,
}

/// What a DVR player of a recorded live stream needs: the file growing behind the stream.
#[derive(Debug, Clone)]
pub struct Dvr {
    /// The `.part` file the tags go to (whole up to a second or so before now).
    pub part: PathBuf,
    /// Added (wrapping) to a live frame's timestamp, it gives the file's timeline.
    pub live_to_file: u32,
    /// How much is recorded, from the file's 0.
    pub recorded_ms: u64,
}

/// A second recording of a stream that is already recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stream {stream} is already being recorded to {}", file.display())]
pub struct AlreadyRecording {
    pub stream: StreamKey,
    pub file: PathBuf,
}

fn info(s: &Shared) -> RecordingInfo {
    RecordingInfo {
        stream: s.key.clone(),
        file: lock(&s.file).clone(),
        bytes: s.bytes.load(Ordering::Relaxed),
        duration_ms: s.duration_ms.load(Ordering::Relaxed),
        started_at: s.started_at,
        origin: s.origin,
        waiting: !s.has_media.load(Ordering::Relaxed),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The table of running recordings of one registry's streams.
pub struct Recordings {
    registry: Arc<Registry>,
    map: Mutex<HashMap<StreamKey, Arc<Shared>>>,
}

impl Recordings {
    pub fn new(registry: Arc<Registry>) -> Arc<Recordings> {
        Arc::new(Recordings {
            registry,
            map: Mutex::new(HashMap::new()),
        })
    }

    /// Starts recording `key` into `path` (a new file by the suffix rule, or with `append` the
    /// end of the finished file there). Subscribes before returning, so nothing published
    /// after this call is missed; a stream that is not live is recorded from its next publish.
    pub fn start(
        self: &Arc<Self>,
        key: StreamKey,
        path: PathBuf,
        append: bool,
        origin: Origin,
    ) -> Result<RecordingInfo, AlreadyRecording> {
        let (shared, path) = {
            let mut map = lock(&self.map);
            if let Some(running) = map.get(&key) {
                return Err(AlreadyRecording {
                    stream: key,
                    file: lock(&running.file).clone(),
                });
            }
            let path = if append {
                path
            } else {
                // Files other recordings are about to create count as taken too.
                let running: Vec<PathBuf> = map.values().map(|s| lock(&s.file).clone()).collect();
                unused_path(&path, unix_now(), |p| {
                    p.exists() || running.iter().any(|r| r == p)
                })
            };
            let shared = Arc::new(Shared {
                key: key.clone(),
                stop: Notify::new(),
                origin,
                started_at: SystemTime::now(),
                file: Mutex::new(path.clone()),
                bytes: AtomicU64::new(0),
                duration_ms: AtomicU64::new(0),
                has_media: AtomicBool::new(false),
                live_to_file: AtomicU64::new(u64::MAX),
            });
            map.insert(key.clone(), shared.clone());
            (shared, path)
        };
        let sub = self.registry.tap(key);
        let table = self.clone();
        let task = shared.clone();
        tokio::spawn(async move {
            recorder::run(sub, path, append, task.clone()).await;
            table.remove(&task);
        });
        Ok(info(&shared))
    }

    /// Stops the recording of `key`, keeping what was published until now; `None` when the
    /// stream is not being recorded.
    pub fn stop(&self, key: &StreamKey) -> Option<RecordingInfo> {
        let shared = lock(&self.map).remove(key)?;
        shared.stop.notify_one();
        Some(info(&shared))
    }

    /// Stops the recording of `key` only if it has not written any media yet: one started
    /// for a publish that was then refused.
    pub fn cancel_waiting(&self, key: &StreamKey) {
        let mut map = lock(&self.map);
        if map
            .get(key)
            .is_some_and(|s| !s.has_media.load(Ordering::Relaxed))
            && let Some(shared) = map.remove(key)
        {
            shared.stop.notify_one();
        }
    }

    /// The recording of `key`, if one runs.
    pub fn get(&self, key: &StreamKey) -> Option<RecordingInfo> {
        lock(&self.map).get(key).map(|s| info(s))
    }

    /// The recording of `key` a DVR player can rewind into: one that has written media.
    pub fn dvr(&self, key: &StreamKey) -> Option<Dvr> {
        let map = lock(&self.map);
        let s = map.get(key)?;
        let shift = s.live_to_file.load(Ordering::Relaxed);
        if !s.has_media.load(Ordering::Relaxed) || shift > u64::from(u32::MAX) {
            return None;
        }
        Some(Dvr {
            part: part_path(&lock(&s.file)),
            live_to_file: shift as u32,
            recorded_ms: s.duration_ms.load(Ordering::Relaxed),
        })
    }

    /// Every running recording, by stream.
    pub fn list(&self) -> Vec<RecordingInfo> {
        let mut v: Vec<_> = lock(&self.map).values().map(|s| info(s)).collect();
        v.sort_by(|a, b| a.stream.cmp(&b.stream));
        v
    }

    fn remove(&self, shared: &Arc<Shared>) {
        let mut map = lock(&self.map);
        // A stopped recording may have been replaced by a new one of the same stream already.
        if map.get(&shared.key).is_some_and(|s| Arc::ptr_eq(s, shared)) {
            map.remove(&shared.key);
        }
    }
}
