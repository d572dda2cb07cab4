//! The recordings running in the gateway, one per stream at most: who started each (a publish
//! type, a guest, an operator), where it writes and how far it got; stop one by stream.
//!
//! A recording is owned here, not by whoever started it, so a guest, the admin API and the
//! publishing connection all see and stop the same one. It ends by itself when its publish
//! ends; one started before its stream is live waits for the next publish.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::Notify;

use super::super::registry::{Registry, StreamKey};
use super::flv::Index;
use super::path::unused_path;
use super::recorder;

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

/// A second recording of a stream that is already recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stream {stream} is already being recorded to {}", file.display())]
pub struct AlreadyRecording {
    pub stream: StreamKey,
    pub file: PathBuf,
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
}

impl Shared {
    fn info(&self) -> RecordingInfo {
        RecordingInfo {
            stream: self.key.clone(),
            file: lock(&self.file).clone(),
            bytes: self.bytes.load(Ordering::Relaxed),
            duration_ms: self.duration_ms.load(Ordering::Relaxed),
            started_at: self.started_at,
            origin: self.origin,
            waiting: !self.has_media.load(Ordering::Relaxed),
        }
    }

    /// The file was opened: its final name and what it held already (an append).
    pub fn set_file(&self, path: &Path, index: &Index) {
        *lock(&self.file) = path.to_owned();
        self.store(index);
    }

    /// Tags were written.
    pub fn progress(&self, index: &Index) {
        self.has_media.store(true, Ordering::Relaxed);
        self.store(index);
    }

    fn store(&self, index: &Index) {
        self.bytes
            .store(index.body_start + index.body_len, Ordering::Relaxed);
        self.duration_ms
            .store(u64::from(index.duration_ms), Ordering::Relaxed);
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data behind the lock: a panic elsewhere leaves nothing half-updated that matters.
    m.lock().unwrap_or_else(|p| p.into_inner())
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
        Ok(shared.info())
    }

    /// Stops the recording of `key`, keeping what was published until now; `None` when the
    /// stream is not being recorded.
    pub fn stop(&self, key: &StreamKey) -> Option<RecordingInfo> {
        let shared = lock(&self.map).remove(key)?;
        shared.stop.notify_one();
        Some(shared.info())
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
        lock(&self.map).get(key).map(|s| s.info())
    }

    /// Every running recording, by stream.
    pub fn list(&self) -> Vec<RecordingInfo> {
        let mut v: Vec<_> = lock(&self.map).values().map(|s| s.info()).collect();
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
