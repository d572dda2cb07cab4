//! A pull relay: an edge plays one stream from an origin and publishes it locally, for every
//! local player of that name at once; it ends when the last player has been gone for the
//! rule's idle timeout.
//!
//! When the origin is lost the local stream stays published (players keep their connection
//! and see the picture stall), the relay reconnects with backoff, trying the next origin of
//! the rule each time, and the stream resumes at the first keyframe from the new upstream.
//! An origin whose publisher leaves (`Play.UnpublishNotify`) unpublishes the local stream too.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;
use tracing::info;

use crate::config::RelayUrl;
use crate::gateway::Core;
use crate::media::codec::{inspect_audio, inspect_video};
use crate::media::{Publisher, StreamKey, StreamSource};
use crate::rtmp::client::ClientEvent;
use crate::rtmp::message::msg_type;
use crate::rtmp::session::MediaKind;

use super::entry::{Entry, Registration};
use super::upstream::{Backoff, Dial, Upstream, UpstreamError, status_of};

/// A connection that stayed up this long starts the backoff over.
const STABLE: Duration = Duration::from_secs(10);

/// How often the relay looks at its local player count.
const IDLE_CHECK: Duration = Duration::from_millis(250);

/// The relay as the local stream's source: the admin API names it, a takeover stops it.
pub(super) struct PullSource {
    id: u64,
    stopped: AtomicBool,
    wake: Notify,
}

impl PullSource {
    pub fn new(id: u64) -> PullSource {
        PullSource {
            id,
            stopped: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }
}

impl StreamSource for PullSource {
    fn id(&self) -> u64 {
        self.id
    }

    fn kind(&self) -> &'static str {
        "relay"
    }

    fn stop(&self, reason: &str) {
        info!(relay = self.id, reason, "pull relay stopped");
        self.stopped.store(true, Ordering::Relaxed);
        // `notify_one` keeps a permit when the task is not waiting at this moment.
        self.wake.notify_one();
    }
}

pub(super) struct Pull {
    pub source: Arc<PullSource>,
    pub core: Arc<Core>,
    pub dial: Dial,
    pub backoff: Backoff,
    pub idle: Duration,
    /// Origins in failover order.
    pub urls: Vec<RelayUrl>,
    pub key: StreamKey,
    pub query: String,
}

/// The relay is done (idle, stopped, taken over, or the name is published locally).
struct Done;

/// What survives reconnects: the local publisher and whether the stream has video.
#[derive(Default)]
struct Local {
    publisher: Option<Publisher>,
    has_video: bool,
    /// Since when no local player is attached.
    idle_since: Option<Instant>,
}

impl Pull {
    pub async fn run(mut self, reg: Registration) {
        let entry = reg.entry.clone();
        let mut local = Local::default();
        let mut idx = 0;
        loop {
            if self.source.is_stopped() || self.idle_expired(&mut local) {
                break;
            }
            let url = self.urls[idx % self.urls.len()].clone();
            entry.set_url(&url);
            entry.set_state("connecting");
            let started = Instant::now();
            match self.connection(&url, &entry, &mut local).await {
                Ok(Done) => break,
                Err(e) => entry.failed(e.to_string()),
            }
            if started.elapsed() >= STABLE {
                self.backoff.reset();
            }
            idx += 1;
            entry.set_state("backoff");
            let until = tokio::time::Instant::now() + self.backoff.next_delay();
            // Idle and stop are watched during the wait too.
            while tokio::time::Instant::now() < until {
                let step = until.min(tokio::time::Instant::now() + IDLE_CHECK);
                tokio::select! {
                    _ = tokio::time::sleep_until(step) => {}
                    _ = self.source.wake.notified() => {}
                }
                if self.source.is_stopped() || self.idle_expired(&mut local) {
                    break;
                }
            }
        }
        entry.set_state("stopped");
        // Local players get `Play.UnpublishNotify` when the publisher goes.
        drop(local);
        drop(reg);
    }

    /// No local player for the idle timeout.
    fn idle_expired(&self, local: &mut Local) -> bool {
        if self.core.registry().players(&self.key) > 0 {
            local.idle_since = None;
            return false;
        }
        let since = *local.idle_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= self.idle {
            info!(stream = %self.key, "pull relay idle: no local player left");
            return true;
        }
        false
    }

    async fn connection(
        &self,
        url: &RelayUrl,
        entry: &Entry,
        local: &mut Local,
    ) -> Result<Done, UpstreamError> {
        let mut up = Upstream::connect(url, &self.dial).await?;
        let result = self.stream(&mut up, url, entry, local).await;
        entry.add_bytes(up.take_bytes().1);
        result
    }

    async fn stream(
        &self,
        up: &mut Upstream,
        url: &RelayUrl,
        entry: &Entry,
        local: &mut Local,
    ) -> Result<Done, UpstreamError> {
        let name = url.stream_name(&self.key.name, Some(&self.query));
        up.play(&name, self.dial.timeout).await?;
        entry.set_state("live");
        info!(relay = entry.id, stream = %self.key, origin = %url.display(), "pull relay playing from the origin");
        // After a reconnect, players continue at the new upstream's first keyframe.
        let mut need_key = local.has_video;
        let mut tick = tokio::time::interval(IDLE_CHECK);
        let mut shutdown = self.core.shutdown_signal();
        loop {
            while let Some(ev) = up.poll_event() {
                let done = match ev {
                    ClientEvent::Media {
                        type_id,
                        timestamp,
                        payload,
                        ..
                    } => self.media(local, &mut need_key, type_id, timestamp, payload)?,
                    ClientEvent::Status { .. } => {
                        let (code, desc) = status_of(&ev).unwrap_or_default();
                        match code {
                            "NetStream.Play.UnpublishNotify" if local.publisher.is_some() => {
                                local.publisher = None;
                                info!(stream = %self.key, "the origin's publisher left; unpublished here too");
                            }
                            "NetStream.Play.Stop" | "NetStream.Play.Complete" => {
                                return Err(UpstreamError::Refused(format!("{code}: {desc}")));
                            }
                            _ => {}
                        }
                        false
                    }
                    _ => false,
                };
                if done {
                    return Ok(Done);
                }
            }
            up.flush().await?;
            entry.add_bytes(up.take_bytes().1);
            tokio::select! {
                r = up.read() => r?,
                _ = tick.tick() => {
                    if self.idle_expired(local) {
                        return Ok(Done);
                    }
                }
                _ = self.source.wake.notified() => {}
                _ = shutdown.changed() => return Ok(Done),
            }
            if self.source.is_stopped() {
                return Ok(Done);
            }
        }
    }

    /// One message from the origin into the local stream; `Ok(true)` ends the relay.
    fn media(
        &self,
        local: &mut Local,
        need_key: &mut bool,
        type_id: u8,
        timestamp: u32,
        payload: Bytes,
    ) -> Result<bool, UpstreamError> {
        let (kind, payload) = match type_id {
            msg_type::AUDIO => (MediaKind::Audio, payload),
            msg_type::VIDEO => (MediaKind::Video, payload),
            msg_type::DATA_AMF0 | msg_type::DATA_AMF3 => match data_payload(type_id, payload) {
                Some(p) => (MediaKind::Data, p),
                None => return Ok(false),
            },
            _ => return Ok(false),
        };
        if *need_key {
            let header = match kind {
                MediaKind::Video => {
                    let info = inspect_video(&payload);
                    if info.keyframe && !info.sequence_header {
                        *need_key = false;
                    }
                    info.sequence_header
                }
                MediaKind::Audio => inspect_audio(&payload).sequence_header,
                MediaKind::Data => true,
            };
            if *need_key && !header {
                return Ok(false);
            }
        }
        if local.publisher.is_none() {
            let registry = self.core.registry();
            if let Some(other) = registry.publisher_of(&self.key) {
                info!(stream = %self.key, publisher = other.id(), "pull relay ends: the stream is published here");
                return Ok(true);
            }
            match registry.publish(self.key.clone(), self.source.clone()) {
                Ok((p, displaced)) => {
                    if let Some(d) = displaced {
                        d.stop("The stream is relayed from the origin.");
                    }
                    local.publisher = Some(p);
                }
                Err(e) => {
                    info!(stream = %self.key, error = %e, "pull relay ends");
                    return Ok(true);
                }
            }
        }
        if kind == MediaKind::Video {
            local.has_video = true;
        }
        let Some(p) = local.publisher.as_mut() else {
            return Ok(true);
        };
        // False: a local publisher took the stream over.
        Ok(!p.push(kind, type_id, timestamp, payload))
    }
}

/// A data message as the local stream stores it: `@setDataFrame` unwrapped (some origins
/// send metadata wrapped), `|RtmpSampleAccess` (nginx-rtmp's per-player notice) dropped.
fn data_payload(type_id: u8, payload: Bytes) -> Option<Bytes> {
    const WRAP: &[u8] = b"\x02\x00\x0d@setDataFrame";
    const SAMPLE_ACCESS: &[u8] = b"\x02\x00\x11|RtmpSampleAccess";
    if type_id != msg_type::DATA_AMF0 {
        return Some(payload);
    }
    if payload.starts_with(SAMPLE_ACCESS) {
        return None;
    }
    if payload.starts_with(WRAP) {
        return Some(payload.slice(WRAP.len()..));
    }
    Some(payload)
}
