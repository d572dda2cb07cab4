//! A push relay: sends one local stream to an upstream server as a publisher, reconnecting
//! with backoff, for as long as the stream is published here.
//!
//! It reads the stream as a tap (a player that is not counted): the registry's ring is its
//! only queue, so a target slower than the stream makes it skip to the next keyframe as a
//! slow player does, and writes have a timeout, so a dead target costs a reconnect, never
//! the publisher's or the players' time. Each connection starts with the stream's preamble
//! (metadata, sequence headers, the current GOP), as a late player does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::RelayUrl;
use crate::gateway::Core;
use crate::media::registry::Frame;
use crate::media::{MediaSink, Playback, Player, StreamKey};
use crate::rtmp::client::{ClientEvent, ClientSession};
use crate::rtmp::message::msg_type;
use crate::rtmp::session::MediaKind;

use super::entry::{Entry, Registration};
use super::upstream::{Backoff, Dial, Upstream, UpstreamError, status_of};

/// Ring items handled before output is written.
const BATCH: usize = 256;

/// A connection that stayed up this long starts the backoff over.
const STABLE: Duration = Duration::from_secs(10);

pub(super) struct Push {
    pub core: Arc<Core>,
    pub dial: Dial,
    pub backoff: Backoff,
    /// Tried in order, the next one after each failure (an edge's forward lists origins).
    pub urls: Vec<RelayUrl>,
    pub key: StreamKey,
    pub query: String,
}

/// Why one connection ended without an error.
enum Ended {
    /// The local publisher left: push again if another one took its place.
    Unpublished,
}

impl Push {
    pub async fn run(mut self, reg: Registration) {
        let entry = reg.entry.clone();
        let mut idx = 0;
        loop {
            if self.core.registry().publisher_of(&self.key).is_none()
                || self.core.is_shutting_down()
            {
                break;
            }
            let url = self.urls[idx % self.urls.len()].clone();
            entry.set_url(&url);
            entry.set_state("connecting");
            let started = Instant::now();
            match self.connection(&url, &entry).await {
                Ok(Ended::Unpublished) => {
                    self.backoff.reset();
                    continue;
                }
                Err(e) => entry.failed(e.to_string()),
            }
            if started.elapsed() >= STABLE {
                self.backoff.reset();
            }
            idx += 1;
            entry.set_state("backoff");
            tokio::time::sleep(self.backoff.next_delay()).await;
        }
        entry.set_state("stopped");
        drop(reg);
    }

    /// One upstream connection: connect, publish, then the stream until it ends or fails.
    async fn connection(&self, url: &RelayUrl, entry: &Entry) -> Result<Ended, UpstreamError> {
        let mut up = Upstream::connect(url, &self.dial).await?;
        let name = url.stream_name(&self.key.name, Some(&self.query));
        let result = self.stream(&mut up, &name, entry).await;
        entry.add_bytes(up.take_bytes().0);
        result
    }

    async fn stream(
        &self,
        up: &mut Upstream,
        name: &str,
        entry: &Entry,
    ) -> Result<Ended, UpstreamError> {
        let stream_id = up.publish(name, self.dial.timeout).await?;
        let sub = self.core.registry().tap(self.key.clone());
        if !sub.live {
            return Ok(Ended::Unpublished);
        }
        entry.set_state("live");
        tracing::info!(relay = entry.id, stream = %self.key, url = %url_of(entry), "relay live");
        let config = self.core.config();
        // A target that lags this often is reconnected, which starts it at a keyframe again.
        let player = Player::new(
            config.media.player_max_skips,
            Duration::from_secs(config.media.player_skip_window_secs),
        );
        let mut sink = PushSink {
            session: up.session(),
            stream_id,
            ended: false,
        };
        let mut playback = Playback::start(sub, player, &mut sink);
        let mut shutdown = self.core.shutdown_signal();
        loop {
            up.flush().await?;
            entry.add_bytes(up.take_bytes().0);
            tokio::select! {
                item = playback.recv() => {
                    let mut sink = PushSink { session: up.session(), stream_id, ended: false };
                    let closed = matches!(item, Err(tokio::sync::broadcast::error::RecvError::Closed));
                    playback
                        .handle(item, &mut sink)
                        .and_then(|()| playback.drain(BATCH, &mut sink))
                        .map_err(|e| UpstreamError::Refused(format!("target too slow: {e}")))?;
                    if sink.ended || closed {
                        up.flush().await?;
                        return Ok(Ended::Unpublished);
                    }
                }
                r = up.read() => {
                    r?;
                    while let Some(ev) = up.poll_event() {
                        if let Some((code, desc)) = status_of(&ev)
                            && (code.contains("Failed") || code.contains("Rejected") || code.contains("BadName") || code == "NetStream.Unpublish.Success")
                        {
                            return Err(UpstreamError::Refused(format!("{code}: {desc}")));
                        }
                        if let ClientEvent::Call { command, .. } = &ev {
                            tracing::debug!(name = %command.name, "call from a push target ignored");
                        }
                    }
                }
                _ = shutdown.changed() => return Ok(Ended::Unpublished),
            }
        }
    }
}

fn url_of(entry: &Entry) -> String {
    super::entry::lock(&entry.url).clone()
}

/// Writes a tap's frames as a publisher's messages on the upstream session.
struct PushSink<'a> {
    session: &'a mut ClientSession,
    stream_id: u32,
    ended: bool,
}

/// `@setDataFrame` as an AMF0 string: stream metadata is published wrapped in it, as
/// ffmpeg and OBS do, so ingests that only store wrapped metadata (nginx-rtmp among them)
/// keep it for their own late players.
const SET_DATA_FRAME: &[u8] = b"\x02\x00\x0d@setDataFrame";

impl MediaSink for PushSink<'_> {
    fn frame(&mut self, frame: &Arc<Frame>, timestamp: Option<u32>) {
        let ts = timestamp.unwrap_or(frame.timestamp);
        if frame.kind == MediaKind::Data && frame.type_id == msg_type::DATA_AMF0 {
            let mut body = Vec::with_capacity(SET_DATA_FRAME.len() + frame.payload.len());
            body.extend_from_slice(SET_DATA_FRAME);
            body.extend_from_slice(&frame.payload);
            self.session
                .send_media(self.stream_id, frame.type_id, ts, &body);
        } else {
            self.session
                .send_media(self.stream_id, frame.type_id, ts, &frame.payload);
        }
    }

    fn unpublished(&mut self) {
        self.ended = true;
    }
}
