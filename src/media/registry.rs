//! The stream registry: one entry per `app/instance/name`, holding the publisher slot, the cached
//! metadata, sequence headers and current GOP, and the broadcast ring players read from.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::sync::broadcast;

use super::codec::{FrameInfo, audio_codec_name, inspect_audio, inspect_video, video_codec_name};
use super::source::StreamSource;
use crate::rtmp::chunk::{MessageHeader, encode_standalone};
use crate::rtmp::session::{MediaKind, csid};

/// The message stream id the shared encoding is made for; every mainstream client's first
/// `createStream` gets 1, so nearly every player uses the shared bytes as they are.
pub const SHARED_STREAM_ID: u32 = 1;

/// Fan-out and cache settings.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Chunk size of the shared encoding; equals the chunk size sessions announce.
    pub chunk_size: u32,
    /// Messages the per-stream ring holds; a player further behind skips to the next keyframe.
    pub player_queue: usize,
    /// Keep the GOP since the last keyframe for late joiners.
    pub gop_cache: bool,
    /// Bytes of payload the GOP cache may hold before it is dropped until the next keyframe.
    pub gop_cache_max_bytes: usize,
    pub gop_cache_max_frames: usize,
    /// What a second publisher of a live name gets.
    pub takeover: TakeoverPolicy,
    /// For [`TakeoverPolicy::Idle`]: how long the current publisher must have sent nothing.
    pub takeover_idle: std::time::Duration,
    /// Where recordings go (`[media] record_dir`).
    pub record_dir: std::path::PathBuf,
}

/// Whether a new publisher may take a stream name over from the current one (a publisher that
/// reconnected from a new network while its old connection is half-dead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TakeoverPolicy {
    /// Never: the newcomer gets `NetStream.Publish.BadName`.
    Refuse,
    /// Only when the current publisher has sent nothing for `takeover_idle`.
    Idle,
    /// Always: the newest publisher wins.
    Always,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            chunk_size: 4096,
            player_queue: 1024,
            gop_cache: true,
            gop_cache_max_bytes: 16 << 20,
            gop_cache_max_frames: 4096,
            takeover: TakeoverPolicy::Idle,
            takeover_idle: std::time::Duration::from_secs(5),
            record_dir: std::path::PathBuf::from("recordings"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    pub app: String,
    pub instance: String,
    pub name: String,
}

impl std::fmt::Display for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.app, self.instance, self.name)
    }
}

/// One published message, on the stream's timeline, with its shared chunk encoding.
#[derive(Debug)]
pub struct Frame {
    pub kind: MediaKind,
    pub type_id: u8,
    pub timestamp: u32,
    pub payload: Bytes,
    pub info: FrameInfo,
    /// Whether the stream had shown video when this frame arrived (audio-only streams must not
    /// make players wait for a keyframe that never comes).
    pub stream_has_video: bool,
    /// Chunks for [`SHARED_STREAM_ID`] at `encoded_chunk_size`, fmt 0 first chunk.
    pub encoded: Bytes,
    /// The [`MediaConfig::chunk_size`] in force when the frame was ingested. A config reload
    /// can change it while older frames sit in the GOP cache, so a player compares its own
    /// chunk size with this, not with the registry's current setting.
    pub encoded_chunk_size: u32,
    /// This frame as an FLV tag at its own timestamp, made by the first HTTP-FLV player that
    /// needs it and shared by the rest (RTMP-only streams never pay for it).
    pub flv: OnceLock<Bytes>,
}

impl Frame {
    /// The FLV tag (header, body, PreviousTagSize) for this frame at its own timestamp, made
    /// once; `None` for a body FLV cannot carry (over 16 MiB).
    pub fn flv_tag(&self) -> Option<Bytes> {
        let tag = self
            .flv
            .get_or_init(|| self.flv_tag_at(self.timestamp).unwrap_or_default());
        (!tag.is_empty()).then(|| tag.clone())
    }

    /// The FLV tag at another timestamp (a late join's headers), made for one player.
    pub fn flv_tag_at(&self, timestamp: u32) -> Option<Bytes> {
        use super::record::flv;
        let tag_type = match self.kind {
            MediaKind::Audio => flv::TAG_AUDIO,
            MediaKind::Video => flv::TAG_VIDEO,
            MediaKind::Data => flv::TAG_SCRIPT,
        };
        // An AMF3 data message (type 15) carries a format byte FLV script tags do not have.
        let body: &[u8] = if self.type_id == 15 {
            self.payload.get(1..).unwrap_or_default()
        } else {
            &self.payload
        };
        let mut out = Vec::new();
        flv::put_tag(&mut out, tag_type, timestamp, body).then(|| Bytes::from(out))
    }

    pub fn csid(&self) -> u32 {
        match self.kind {
            MediaKind::Audio => csid::AUDIO,
            MediaKind::Video => csid::VIDEO,
            MediaKind::Data => csid::DATA,
        }
    }

    pub fn header(&self, stream_id: u32, timestamp: u32) -> MessageHeader {
        MessageHeader {
            timestamp,
            type_id: self.type_id,
            stream_id,
        }
    }
}

/// What flows through a stream's ring.
#[derive(Debug, Clone)]
pub enum MediaItem {
    Frame(Arc<Frame>),
    /// A publisher started (players waiting get `Play.PublishNotify`).
    Published,
    /// The publisher left (players get `Play.UnpublishNotify`).
    Unpublished,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PublishError {
    #[error("stream {0} is already being published")]
    InUse(String),
}

struct Stream {
    key: StreamKey,
    tx: broadcast::Sender<MediaItem>,
    state: Mutex<StreamState>,
}

#[derive(Default)]
struct StreamState {
    /// The current publisher (an RTMP connection today).
    publisher: Option<Arc<dyn StreamSource>>,
    /// Bumped by every publish, so a displaced publisher's handle knows it no longer owns
    /// the stream.
    publisher_epoch: u64,
    /// When the current publisher last sent a message.
    last_ingest: Option<std::time::Instant>,
    players: usize,
    metadata: Option<Arc<Frame>>,
    video_header: Option<Arc<Frame>>,
    audio_header: Option<Arc<Frame>>,
    gop: Vec<Arc<Frame>>,
    gop_bytes: usize,
    /// Set when the GOP outgrew its bounds; cleared at the next keyframe.
    gop_overflow: bool,
    has_video: bool,
    /// Highest timestamp sent on the stream's timeline, so a new publisher continues after it.
    last_ts: u32,
    last_video_ts: u32,
    last_audio_ts: u32,
    /// Codec names seen in the current publisher's stream (`h264`, `aac`, `av01`, ...).
    video_codec: Option<&'static str>,
    audio_codec: Option<&'static str>,
    /// Payload bytes and video frames of the current publisher, for the admin API.
    bytes: u64,
    video_frames: u64,
    rate: RateWindow,
}

/// Bitrate and frame rate over roughly the last second, updated as frames arrive (under the
/// stream lock the publisher already holds, so it costs no extra synchronisation).
#[derive(Default)]
struct RateWindow {
    start: Option<Instant>,
    bytes: u64,
    frames: u64,
    /// Last completed window: bits per second, video frames per second, when it ended.
    bitrate_bps: u64,
    fps: f64,
    updated: Option<Instant>,
}

impl RateWindow {
    const SPAN: Duration = Duration::from_secs(1);

    fn add(&mut self, now: Instant, bytes: usize, video_frame: bool) {
        let start = *self.start.get_or_insert(now);
        self.bytes += bytes as u64;
        self.frames += u64::from(video_frame);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= Self::SPAN {
            let secs = elapsed.as_secs_f64();
            self.bitrate_bps = (self.bytes as f64 * 8.0 / secs) as u64;
            self.fps = self.frames as f64 / secs;
            self.updated = Some(now);
            self.start = Some(now);
            self.bytes = 0;
            self.frames = 0;
        }
    }

    /// (bitrate, fps), zero once the stream has been silent for a few seconds.
    fn current(&self, now: Instant) -> (u64, f64) {
        match self.updated {
            Some(t) if now.saturating_duration_since(t) < 3 * Self::SPAN => {
                (self.bitrate_bps, (self.fps * 100.0).round() / 100.0)
            }
            _ => (0, 0.0),
        }
    }
}

/// What the admin API reports about one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamStats {
    pub key: StreamKey,
    /// Connection id of the publisher, if one is live.
    pub publisher: Option<u64>,
    pub players: usize,
    pub video_codec: Option<&'static str>,
    pub audio_codec: Option<&'static str>,
    /// Payload bits per second over the last second.
    pub bitrate_bps: u64,
    /// Video frames per second over the last second.
    pub fps: f64,
    /// Payload bytes since the current publisher started.
    pub bytes: u64,
}

/// All live streams of the gateway.
pub struct Registry {
    /// Swapped whole by a config reload; read once per new stream, publish or player.
    cfg: RwLock<Arc<MediaConfig>>,
    streams: Mutex<HashMap<StreamKey, Arc<Stream>>>,
    /// Messages ingested from all publishers since start.
    messages_in: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a registry lock leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    pub fn new(cfg: MediaConfig) -> Arc<Registry> {
        Arc::new(Registry {
            cfg: RwLock::new(Arc::new(cfg)),
            streams: Mutex::new(HashMap::new()),
            messages_in: AtomicU64::new(0),
        })
    }

    /// The settings in force now.
    pub fn config(&self) -> Arc<MediaConfig> {
        match self.cfg.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the settings (config reload). Streams already open keep their queue size;
    /// publishes that begin from now on use the new chunk size (and the other settings), and
    /// sessions that still write the old size get a private encoding (`Conn::send_frame`).
    pub fn set_config(&self, cfg: MediaConfig) {
        let mut g = match self.cfg.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *g = Arc::new(cfg);
    }

    fn entry(&self, key: &StreamKey) -> Arc<Stream> {
        let mut map = lock(&self.streams);
        map.entry(key.clone())
            .or_insert_with(|| {
                let (tx, _) = broadcast::channel(self.config().player_queue.max(16));
                Arc::new(Stream {
                    key: key.clone(),
                    tx,
                    state: Mutex::new(StreamState::default()),
                })
            })
            .clone()
    }

    /// Number of streams with a publisher or a waiting player.
    pub fn stream_count(&self) -> usize {
        lock(&self.streams).len()
    }

    /// (key, publishing, players) for every known stream.
    pub fn snapshot(&self) -> Vec<(StreamKey, bool, usize)> {
        let map = lock(&self.streams);
        let mut v: Vec<_> = map
            .values()
            .map(|s| {
                let st = lock(&s.state);
                (s.key.clone(), st.publisher.is_some(), st.players)
            })
            .collect();
        v.sort();
        v
    }

    /// Messages ingested from all publishers since start.
    pub fn messages_in(&self) -> u64 {
        self.messages_in.load(Ordering::Relaxed)
    }

    /// Per-stream statistics, sorted by key.
    pub fn stats(&self) -> Vec<StreamStats> {
        let now = Instant::now();
        let streams: Vec<Arc<Stream>> = lock(&self.streams).values().cloned().collect();
        let mut v: Vec<_> = streams
            .iter()
            .map(|s| {
                let st = lock(&s.state);
                let (bitrate_bps, fps) = st.rate.current(now);
                StreamStats {
                    key: s.key.clone(),
                    publisher: st.publisher.as_ref().map(|p| p.id()),
                    players: st.players,
                    video_codec: st.video_codec,
                    audio_codec: st.audio_codec,
                    bitrate_bps,
                    fps,
                    bytes: st.bytes,
                }
            })
            .collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }

    /// Players attached to `key` now (0 for an unknown stream).
    pub fn players(&self, key: &StreamKey) -> usize {
        let stream = lock(&self.streams).get(key).cloned();
        stream.map_or(0, |s| lock(&s.state).players)
    }

    /// The source publishing `key`, if any.
    pub fn publisher_of(&self, key: &StreamKey) -> Option<Arc<dyn StreamSource>> {
        let stream = lock(&self.streams).get(key).cloned()?;
        lock(&stream.state).publisher.clone()
    }

    /// Claims the publisher slot of `key` for `source`. With a takeover the displaced source
    /// comes back too, so the caller can stop it; players stay attached and continue on the
    /// new publisher's keyframe.
    #[allow(clippy::type_complexity)]
    pub fn publish(
        self: &Arc<Self>,
        key: StreamKey,
        source: Arc<dyn StreamSource>,
    ) -> Result<(Publisher, Option<Arc<dyn StreamSource>>), PublishError> {
        let stream = self.entry(&key);
        let (epoch, displaced) = {
            let mut st = lock(&stream.state);
            let displaced = st.publisher.take();
            if displaced.is_some() {
                let idle_for = st.last_ingest.map(|t| t.elapsed());
                let cfg = self.config();
                let allowed = match cfg.takeover {
                    TakeoverPolicy::Refuse => false,
                    TakeoverPolicy::Always => true,
                    TakeoverPolicy::Idle => idle_for.is_some_and(|d| d >= cfg.takeover_idle),
                };
                if !allowed {
                    st.publisher = displaced;
                    drop(st);
                    self.collect(&stream);
                    return Err(PublishError::InUse(key.to_string()));
                }
                // The old publisher's codecs may differ: late players must not get its headers.
                st.clear_caches();
            }
            st.publisher = Some(source);
            st.publisher_epoch += 1;
            // A new publisher counts as active from the moment it publishes.
            st.last_ingest = Some(std::time::Instant::now());
            st.has_video = false;
            st.video_codec = None;
            st.audio_codec = None;
            st.bytes = 0;
            st.video_frames = 0;
            st.rate = RateWindow::default();
            let _ = stream.tx.send(MediaItem::Published);
            (st.publisher_epoch, displaced)
        };
        let publisher = Publisher {
            registry: self.clone(),
            stream,
            offset: None,
            epoch,
            cfg: self.config(),
        };
        Ok((publisher, displaced))
    }

    /// Joins `key` as a player. A stream with no publisher yet is created and waited on.
    pub fn play(self: &Arc<Self>, key: StreamKey) -> Subscription {
        self.subscribe(key, true)
    }

    /// Like [`Registry::play`] for a sink that is not a viewer (a recording): not counted in
    /// the stream's players, and it does not keep an unpublished stream alive.
    pub fn tap(self: &Arc<Self>, key: StreamKey) -> Subscription {
        self.subscribe(key, false)
    }

    fn subscribe(self: &Arc<Self>, key: StreamKey, counted: bool) -> Subscription {
        let stream = self.entry(&key);
        let mut st = lock(&stream.state);
        if counted {
            st.players += 1;
        }
        // Snapshot and subscribe under the same lock the publisher takes, so the player sees
        // neither a gap nor a duplicate between the cached preamble and the live ring.
        let live = st.publisher.is_some();
        let mut preamble: Vec<Arc<Frame>> = Vec::new();
        if live {
            preamble.extend(st.metadata.iter().cloned());
            preamble.extend(st.video_header.iter().cloned());
            preamble.extend(st.audio_header.iter().cloned());
            if !st.gop_overflow {
                preamble.extend(st.gop.iter().cloned());
            }
        }
        let rx = stream.tx.subscribe();
        drop(st);
        Subscription {
            live,
            preamble,
            rx,
            guard: PlayerGuard {
                registry: self.clone(),
                stream,
                counted,
            },
        }
    }

    /// Drops the stream entry when nobody publishes or plays it any more.
    fn collect(&self, stream: &Arc<Stream>) {
        let mut map = lock(&self.streams);
        let st = lock(&stream.state);
        if st.publisher.is_none() && st.players == 0 {
            // Only remove the entry if it is still this stream (a new one may have replaced it).
            if map.get(&stream.key).is_some_and(|s| Arc::ptr_eq(s, stream)) {
                map.remove(&stream.key);
            }
        }
    }
}

/// A player's view of a stream: what to send first, then the live ring.
pub struct Subscription {
    /// A publisher was live when the player joined.
    pub live: bool,
    /// Metadata, sequence headers and the GOP since the last keyframe, in that order.
    pub preamble: Vec<Arc<Frame>>,
    pub rx: broadcast::Receiver<MediaItem>,
    pub guard: PlayerGuard,
}

/// Keeps a player counted on its stream; dropping it leaves the stream.
pub struct PlayerGuard {
    registry: Arc<Registry>,
    stream: Arc<Stream>,
    /// Counted in the stream's players (see [`Registry::tap`]).
    counted: bool,
}

impl PlayerGuard {
    pub fn key(&self) -> &StreamKey {
        &self.stream.key
    }
}

impl Drop for PlayerGuard {
    fn drop(&mut self) {
        if self.counted {
            let mut st = lock(&self.stream.state);
            st.players = st.players.saturating_sub(1);
        }
        self.registry.collect(&self.stream);
    }
}

/// The publishing side of a stream; dropping it unpublishes.
pub struct Publisher {
    registry: Arc<Registry>,
    stream: Arc<Stream>,
    /// Added to incoming timestamps so the stream's timeline continues across publishers.
    offset: Option<u32>,
    /// Which publish of the stream this handle is (see `StreamState::publisher_epoch`).
    epoch: u64,
    /// The settings when the publish began: read once here, not per message; a config reload
    /// applies to the next publish.
    cfg: Arc<MediaConfig>,
}

impl Publisher {
    pub fn key(&self) -> &StreamKey {
        &self.stream.key
    }

    /// Number of players currently attached.
    pub fn players(&self) -> usize {
        lock(&self.stream.state).players
    }

    /// Ingests one message: timestamps onto the stream timeline, encodes it once, updates the
    /// caches and hands it to every player. Returns false when another publisher has taken
    /// the stream over (the message is dropped).
    pub fn push(&mut self, kind: MediaKind, type_id: u8, timestamp: u32, payload: Bytes) -> bool {
        let cfg = &*self.cfg;
        let info = match kind {
            MediaKind::Video => inspect_video(&payload),
            MediaKind::Audio => inspect_audio(&payload),
            MediaKind::Data => FrameInfo::default(),
        };
        let mut st = lock(&self.stream.state);
        if st.publisher_epoch != self.epoch {
            return false;
        }
        let now = Instant::now();
        st.last_ingest = Some(now);
        let offset = *self
            .offset
            .get_or_insert_with(|| st.last_ts.wrapping_sub(timestamp));
        let mut ts = timestamp.wrapping_add(offset);
        let last_track = match kind {
            MediaKind::Video => st.last_video_ts,
            MediaKind::Audio => st.last_audio_ts,
            MediaKind::Data => st.last_ts,
        };
        if ts_before(ts, last_track) {
            let back = last_track.wrapping_sub(ts);
            if back > 1000 {
                // The encoder restarted its clock: shift the rest of the stream forward.
                self.offset = Some(offset.wrapping_add(back));
            }
            ts = last_track;
        }
        match kind {
            MediaKind::Video => {
                st.last_video_ts = ts;
                st.has_video = true;
            }
            MediaKind::Audio => st.last_audio_ts = ts,
            MediaKind::Data => {}
        }
        if ts_before(st.last_ts, ts) {
            st.last_ts = ts;
        }
        self.registry.messages_in.fetch_add(1, Ordering::Relaxed);
        let is_video_frame = kind == MediaKind::Video && !info.sequence_header;
        st.bytes += payload.len() as u64;
        st.video_frames += u64::from(is_video_frame);
        st.rate.add(now, payload.len(), is_video_frame);
        match kind {
            MediaKind::Video if info.sequence_header || st.video_codec.is_none() => {
                st.video_codec = video_codec_name(&payload).or(st.video_codec);
            }
            MediaKind::Audio if info.sequence_header || st.audio_codec.is_none() => {
                st.audio_codec = audio_codec_name(&payload).or(st.audio_codec);
            }
            _ => {}
        }

        let mut encoded = BytesMut::with_capacity(payload.len() + 16 + payload.len() / 128);
        let csid = match kind {
            MediaKind::Audio => csid::AUDIO,
            MediaKind::Video => csid::VIDEO,
            MediaKind::Data => csid::DATA,
        };
        let header = MessageHeader {
            timestamp: ts,
            type_id,
            stream_id: SHARED_STREAM_ID,
        };
        encode_standalone(csid, &header, &payload, cfg.chunk_size, &mut encoded);
        let frame = Arc::new(Frame {
            kind,
            type_id,
            timestamp: ts,
            info,
            stream_has_video: st.has_video,
            encoded: encoded.freeze(),
            encoded_chunk_size: cfg.chunk_size,
            payload,
            flv: OnceLock::new(),
        });

        if kind == MediaKind::Data && is_metadata(&frame.payload) {
            st.metadata = Some(frame.clone());
        } else if frame.info.sequence_header {
            match kind {
                MediaKind::Video => st.video_header = Some(frame.clone()),
                _ => st.audio_header = Some(frame.clone()),
            }
        } else if cfg.gop_cache && kind != MediaKind::Data {
            if frame.info.keyframe {
                st.gop.clear();
                st.gop_bytes = 0;
                st.gop_overflow = false;
            }
            if !st.gop.is_empty() || frame.info.keyframe {
                if st.gop.len() >= cfg.gop_cache_max_frames
                    || st.gop_bytes + frame.payload.len() > cfg.gop_cache_max_bytes
                {
                    st.gop.clear();
                    st.gop_bytes = 0;
                    st.gop_overflow = true;
                } else if !st.gop_overflow {
                    st.gop_bytes += frame.payload.len();
                    st.gop.push(frame.clone());
                }
            }
        }
        // No receivers is not an error: the stream just has no players right now.
        let _ = self.stream.tx.send(MediaItem::Frame(frame));
        true
    }
}

impl StreamState {
    fn clear_caches(&mut self) {
        self.metadata = None;
        self.video_header = None;
        self.audio_header = None;
        self.gop.clear();
        self.gop_bytes = 0;
        self.gop_overflow = false;
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        {
            let mut st = lock(&self.stream.state);
            // A displaced publisher leaves the stream to its successor.
            if st.publisher_epoch == self.epoch {
                st.publisher = None;
                st.last_ingest = None;
                st.clear_caches();
                let _ = self.stream.tx.send(MediaItem::Unpublished);
            }
        }
        self.registry.collect(&self.stream);
    }
}

/// `a` is earlier than `b` on a wrapping 32-bit millisecond clock.
fn ts_before(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000_0000
}

/// `onMetaData` as the first AMF0 string of a data message.
fn is_metadata(payload: &[u8]) -> bool {
    const NAME: &[u8] = b"onMetaData";
    // AMF0 string marker, u16 length, bytes; an AMF3 data message has a leading 0x00 first.
    let p = if payload.first() == Some(&0) {
        &payload[1..]
    } else {
        payload
    };
    p.len() >= 3 + NAME.len()
        && p[0] == 0x02
        && u16::from_be_bytes([p[1], p[2]]) as usize == NAME.len()
        && &p[3..3 + NAME.len()] == NAME
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that only has an id (the registry never calls `stop` itself).
    struct TestSource(u64);

    impl StreamSource for TestSource {
        fn id(&self) -> u64 {
            self.0
        }
        fn kind(&self) -> &'static str {
            "test"
        }
        fn stop(&self, _reason: &str) {}
    }

    fn src(id: u64) -> Arc<dyn StreamSource> {
        Arc::new(TestSource(id))
    }

    fn key(n: &str) -> StreamKey {
        StreamKey {
            app: "live".into(),
            instance: "_definst_".into(),
            name: n.into(),
        }
    }

    fn video(key: bool) -> Bytes {
        Bytes::from(vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0, 0xaa])
    }

    #[test]
    fn second_publisher_is_refused_and_slot_frees() {
        let reg = Registry::new(MediaConfig::default());
        let p = reg.publish(key("a"), src(1)).unwrap().0;
        assert!(matches!(
            reg.publish(key("a"), src(2)),
            Err(PublishError::InUse(_))
        ));
        drop(p);
        assert_eq!(reg.stream_count(), 0);
        let _p = reg.publish(key("a"), src(2)).unwrap().0;
    }

    #[test]
    fn takeover_policies() {
        let mut cfg = MediaConfig {
            takeover: TakeoverPolicy::Refuse,
            ..MediaConfig::default()
        };
        let reg = Registry::new(cfg.clone());
        let _p = reg.publish(key("r"), src(1)).unwrap().0;
        assert!(reg.publish(key("r"), src(2)).is_err());

        cfg.takeover = TakeoverPolicy::Idle;
        cfg.takeover_idle = std::time::Duration::from_millis(50);
        let reg = Registry::new(cfg.clone());
        let mut sub = reg.play(key("i"));
        let mut old = reg.publish(key("i"), src(1)).unwrap().0;
        assert!(old.push(MediaKind::Video, 9, 0, video(true)));
        assert!(
            reg.publish(key("i"), src(2)).is_err(),
            "an active publisher keeps its stream"
        );
        std::thread::sleep(std::time::Duration::from_millis(80));
        let (mut new, displaced) = reg.publish(key("i"), src(2)).unwrap();
        assert_eq!(displaced.map(|s| s.id()), Some(1));
        assert!(
            !old.push(MediaKind::Video, 9, 40, video(false)),
            "displaced publisher is refused"
        );
        drop(old);
        assert!(new.push(MediaKind::Video, 9, 0, video(true)));
        // The player saw Published twice and never Unpublished.
        let mut items = Vec::new();
        while let Ok(item) = sub.rx.try_recv() {
            items.push(match item {
                MediaItem::Published => "pub",
                MediaItem::Unpublished => "unpub",
                MediaItem::Frame(_) => "frame",
            });
        }
        assert_eq!(items, vec!["pub", "frame", "pub", "frame"]);

        cfg.takeover = TakeoverPolicy::Always;
        let reg = Registry::new(cfg);
        let _old = reg.publish(key("a"), src(1)).unwrap().0;
        assert_eq!(
            reg.publish(key("a"), src(2)).unwrap().1.map(|s| s.id()),
            Some(1)
        );
    }

    /// AVC and AAC sequence headers at timestamp 0.
    fn push_headers(p: &mut Publisher) {
        p.push(
            MediaKind::Video,
            9,
            0,
            Bytes::from_static(&[0x17, 0, 0, 0, 0, 1]),
        );
        p.push(
            MediaKind::Audio,
            8,
            0,
            Bytes::from_static(&[0xaf, 0, 0x12, 0x10]),
        );
    }

    #[test]
    fn late_player_gets_headers_and_gop_from_keyframe() {
        let reg = Registry::new(MediaConfig::default());
        let mut p = reg.publish(key("a"), src(1)).unwrap().0;
        push_headers(&mut p);
        p.push(MediaKind::Video, 9, 0, video(true));
        p.push(MediaKind::Video, 9, 40, video(false));
        p.push(MediaKind::Video, 9, 80, video(true));
        p.push(MediaKind::Audio, 8, 90, Bytes::from_static(&[0xaf, 1, 1]));
        p.push(MediaKind::Video, 9, 120, video(false));
        let sub = reg.play(key("a"));
        assert!(sub.live);
        let kinds: Vec<_> = sub.preamble.iter().map(|f| (f.kind, f.timestamp)).collect();
        assert_eq!(
            kinds,
            vec![
                (MediaKind::Video, 0),
                (MediaKind::Audio, 0),
                (MediaKind::Video, 80),
                (MediaKind::Audio, 90),
                (MediaKind::Video, 120)
            ]
        );
        assert!(sub.preamble[2].info.keyframe);
    }

    #[test]
    fn waiting_player_sees_publish_and_unpublish() {
        let reg = Registry::new(MediaConfig::default());
        let mut sub = reg.play(key("w"));
        assert!(!sub.live);
        let p = reg.publish(key("w"), src(1)).unwrap().0;
        assert!(matches!(sub.rx.try_recv(), Ok(MediaItem::Published)));
        drop(p);
        assert!(matches!(sub.rx.try_recv(), Ok(MediaItem::Unpublished)));
        assert_eq!(reg.stream_count(), 1);
        drop(sub);
        assert_eq!(reg.stream_count(), 0);
    }

    #[test]
    fn timeline_continues_across_publishers_and_is_monotonic() {
        let reg = Registry::new(MediaConfig::default());
        let mut sub = reg.play(key("t"));
        let mut p = reg.publish(key("t"), src(1)).unwrap().0;
        p.push(MediaKind::Video, 9, 5000, video(true));
        p.push(MediaKind::Video, 9, 5040, video(false));
        // clock reset inside one publisher
        p.push(MediaKind::Video, 9, 0, video(false));
        p.push(MediaKind::Video, 9, 40, video(false));
        drop(p);
        let mut p = reg.publish(key("t"), src(2)).unwrap().0;
        p.push(MediaKind::Video, 9, 0, video(true));
        let mut last = 0;
        while let Ok(item) = sub.rx.try_recv() {
            if let MediaItem::Frame(f) = item {
                assert!(f.timestamp >= last, "{} after {}", f.timestamp, last);
                last = f.timestamp;
            }
        }
        assert!(last >= 80);
    }

    #[test]
    fn gop_cache_is_bounded() {
        let cfg = MediaConfig {
            gop_cache_max_frames: 3,
            ..MediaConfig::default()
        };
        let reg = Registry::new(cfg);
        let mut p = reg.publish(key("g"), src(1)).unwrap().0;
        p.push(MediaKind::Video, 9, 0, video(true));
        for i in 1..10 {
            p.push(MediaKind::Video, 9, i * 40, video(false));
        }
        assert!(reg.play(key("g")).preamble.is_empty());
        p.push(MediaKind::Video, 9, 400, video(true));
        assert_eq!(reg.play(key("g")).preamble.len(), 1);
    }

    #[test]
    fn stats_report_publisher_players_codecs_and_rates() {
        let reg = Registry::new(MediaConfig::default());
        let mut p = reg.publish(key("s"), src(7)).unwrap().0;
        let _sub = reg.play(key("s"));
        push_headers(&mut p);
        // Two windows' worth of 25 fps video of 1000-byte frames, pushed at a fake pace by
        // backdating the window start.
        for i in 0..25 {
            p.push(MediaKind::Video, 9, i * 40, Bytes::from(vec![0x27; 1000]));
        }
        lock(&p.stream.state).rate.start = Some(Instant::now() - Duration::from_secs(1));
        p.push(MediaKind::Video, 9, 1000, Bytes::from(vec![0x17; 1000]));
        let s = &reg.stats()[0];
        assert_eq!(s.publisher, Some(7));
        assert_eq!(s.players, 1);
        assert_eq!(s.video_codec, Some("h264"));
        assert_eq!(s.audio_codec, Some("aac"));
        assert!(s.fps > 20.0 && s.fps <= 26.5, "{s:?}");
        assert!(s.bitrate_bps > 150_000, "{s:?}");
        assert_eq!(reg.messages_in(), 28);
        assert_eq!(reg.publisher_of(&key("s")).map(|s| s.id()), Some(7));
        drop(p);
        assert!(reg.publisher_of(&key("s")).is_none());
    }

    #[test]
    fn metadata_detection() {
        let mut v = vec![0x02, 0x00, 10];
        v.extend_from_slice(b"onMetaData");
        v.push(0x03);
        assert!(is_metadata(&v));
        assert!(!is_metadata(b"\x02\x00\x03abc"));
    }
}
