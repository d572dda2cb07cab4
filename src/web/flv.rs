//! HTTP-FLV and WebSocket-FLV: one live stream as an endless run of FLV tags. A task per viewer
//! moves its [`Playback`] into batches for a response body or a WebSocket (`ws.rs`): tags made
//! once per frame ([`Frame::flv_tag`]) are shared by every viewer, batched per merge window.
//!
//! A viewer that stops reading fills its small body queue; its task then stops draining the
//! stream's ring, which lags, so it skips to the next keyframe like an RTMP player and, when it
//! keeps falling behind (or one write waits past `rtmp.write_timeout_secs`), it is dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::Response;
use hyper::header::{ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use tokio::sync::mpsc;
use tracing::{Instrument, info, info_span};

use super::body::{Tags, WebBody};
use super::gate::{self, Admitted, Refused};
use super::path::StreamPath;
use crate::apps::{Route, ToActor, ToConn};
use crate::gateway::{ClientGuard, Core};
use crate::media::record::flv::file_header;
use crate::media::registry::Frame;
use crate::media::{MediaSink, Playback, Player, StreamKey, Subscription};
use crate::rtmp::session::MediaKind;

/// The transport label of HTTP-FLV viewers (client table, metrics, app hooks).
pub const TRANSPORT: &str = "http-flv";
/// Batches waiting for the viewer's socket: a reader this far behind makes the ring lag.
const BODY_QUEUE: usize = 4;
/// Ring items taken per wake-up, as for RTMP players.
const DRAIN_MAX: usize = 256;

/// A viewer the app admitted, ready to be started on a response body or a WebSocket.
pub struct Ready {
    viewer: Viewer,
    key: StreamKey,
    player: Player,
}

/// Admits a viewer of `path` over `transport` (`http-flv` or `ws-flv`), or says why not: the
/// stream must be live and the app (if any) must accept the connect and the play.
pub async fn admit(
    core: &Arc<Core>,
    peer: SocketAddr,
    path: StreamPath,
    query: &str,
    transport: &'static str,
) -> Result<Ready, Refused> {
    let key = path.key();
    let route = gate::live_route(core, &path)?;
    let id = core.next_conn_id();
    let client = core.clients().register(id, peer, transport);
    client.entry.set_app(&path.app, &path.instance);
    let admitted = match route {
        Route::App(link) => Some(gate::admit(link, id, peer, transport, &path, query).await?),
        Route::Live | Route::Deny => None,
    };
    let config = core.config();
    let player = Player::new(
        config.media.player_max_skips,
        Duration::from_secs(config.media.player_skip_window_secs),
    );
    let viewer = Viewer {
        core: core.clone(),
        client,
        admitted,
        stream: path.stream.clone(),
        transport,
        merge: Duration::from_millis(config.media.merge_window_ms),
        write_timeout: Duration::from_secs(config.rtmp.write_timeout_secs),
    };
    info!(id, %peer, stream = %key, transport, query_len = query.len(), "FLV viewer admitted");
    Ok(Ready {
        viewer,
        key,
        player,
    })
}

impl Ready {
    /// Starts the viewer's task; its batches of tags arrive on the receiver, which the viewer
    /// leaves by dropping.
    pub fn start(self) -> mpsc::Receiver<Tags> {
        let (tx, rx) = mpsc::channel(BODY_QUEUE);
        let sub = self.viewer.core.registry().play(self.key);
        let v = &self.viewer;
        let span =
            info_span!("flv", id = v.client.entry.id, transport = v.transport, stream = %v.stream);
        tokio::spawn(self.viewer.run(sub, self.player, tx).instrument(span));
        rx
    }

    /// Lets the viewer go without playing (a `HEAD`, an upgrade that never came).
    pub fn cancel(self) {
        if let Some(a) = &self.viewer.admitted {
            leave(a, self.viewer.client.entry.id, &self.viewer.stream);
        }
    }
}

/// The headers of an HTTP-FLV reply.
fn flv_response(body: WebBody) -> Response<WebBody> {
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("video/x-flv"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    r
}

/// Serves `path` as an endless HTTP-FLV body (headers only for a `HEAD`), or says why not.
pub async fn play(
    core: &Arc<Core>,
    peer: SocketAddr,
    path: StreamPath,
    query: String,
    head: bool,
) -> Result<Response<WebBody>, Refused> {
    let ready = admit(core, peer, path, &query, TRANSPORT).await?;
    if head {
        ready.cancel();
        return Ok(flv_response(WebBody::empty()));
    }
    Ok(flv_response(WebBody::Stream(ready.start())))
}

/// Tells the app the viewer is gone (the play, then the client).
fn leave(a: &Admitted, id: u64, stream: &str) {
    let _ = a.link.send(ToActor::Stop {
        client: id,
        name: stream.to_owned(),
    });
    let _ = a.link.send(ToActor::Disconnect { client: id });
}

struct Viewer {
    core: Arc<Core>,
    /// Keeps the viewer in the client table until it leaves.
    client: ClientGuard,
    admitted: Option<Admitted>,
    stream: String,
    transport: &'static str,
    merge: Duration,
    write_timeout: Duration,
}

/// FLV tags for one viewer's next write.
struct FlvSink {
    tags: Tags,
    /// The publisher left: the body ends (players reconnect to a new publish).
    ended: bool,
    oversized: u64,
}

impl MediaSink for FlvSink {
    fn frame(&mut self, f: &Arc<Frame>, timestamp: Option<u32>) {
        let tag = match timestamp {
            None => f.flv_tag(),
            Some(ts) => f.flv_tag_at(ts),
        };
        match tag {
            Some(t) => self.tags.push(t),
            None => self.oversized += 1,
        }
    }

    fn unpublished(&mut self) {
        self.ended = true;
    }
}

/// The FLV file header, with the audio and video flags of what the stream carries so far
/// (both when nothing is known yet: a demuxer then simply finds no packets of one kind).
fn header(sub: &Subscription) -> bytes::Bytes {
    let has = |k: MediaKind| sub.preamble.iter().any(|f| f.kind == k);
    let (audio, video) = (has(MediaKind::Audio), has(MediaKind::Video));
    let (audio, video) = if audio || video {
        (audio, video)
    } else {
        (true, true)
    };
    bytes::Bytes::copy_from_slice(&file_header(audio, video))
}

impl Viewer {
    async fn run(mut self, sub: Subscription, player: Player, tx: mpsc::Sender<Tags>) {
        let core = self.core.clone();
        let counters = core.counters();
        counters.connections.fetch_add(1, Ordering::Relaxed);
        counters.connections_total.fetch_add(1, Ordering::Relaxed);
        crate::metrics::connection_opened(self.transport);
        let mut sink = FlvSink {
            tags: Tags::default(),
            ended: false,
            oversized: 0,
        };
        sink.tags.push(header(&sub));
        let mut playback = Playback::start(sub, player, &mut sink);
        let reason = self.pump(&mut playback, &mut sink, &tx).await;
        if let Some(a) = &self.admitted {
            leave(a, self.client.entry.id, &self.stream);
        }
        let bytes_out = self.client.entry.bytes_out.load(Ordering::Relaxed);
        info!(bytes_out, oversized = sink.oversized, %reason, "FLV viewer closed");
        crate::metrics::connection_closed(self.transport);
        counters.connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Moves media into the body until the viewer, the stream, the app or the operator ends it.
    async fn pump(
        &mut self,
        playback: &mut Playback,
        sink: &mut FlvSink,
        tx: &mpsc::Sender<Tags>,
    ) -> String {
        let entry = self.client.entry.clone();
        let mut shutdown = self.core.shutdown_signal();
        if *shutdown.borrow_and_update() {
            return "server shutting down".into();
        }
        loop {
            if !sink.tags.is_empty() {
                let batch = std::mem::take(&mut sink.tags);
                let n = batch.len() as u64;
                match tokio::time::timeout(self.write_timeout, tx.send(batch)).await {
                    Err(_) => return format!("write stalled for {:?}", self.write_timeout),
                    Ok(Err(_)) => return "viewer left".into(),
                    Ok(Ok(())) => {
                        entry.add_out(n);
                        self.core
                            .counters()
                            .bytes_out
                            .fetch_add(n, Ordering::Relaxed);
                    }
                }
            }
            if sink.ended {
                return "publisher left".into();
            }
            tokio::select! {
                item = playback.recv() => {
                    if playback.handle(item, sink).is_err() {
                        crate::metrics::player_dropped();
                        return "viewer fell behind too often".into();
                    }
                    if !self.merge.is_zero() {
                        // The rest of the window's frames go out with this one.
                        tokio::time::sleep(self.merge).await;
                    }
                    if playback.drain(DRAIN_MAX, sink).is_err() {
                        crate::metrics::player_dropped();
                        return "viewer fell behind too often".into();
                    }
                }
                _ = entry.kicked() => {
                    crate::metrics::kicked();
                    return format!("kicked: {}", entry.kick_reason());
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return "server shutting down".into();
                    }
                }
                msg = app_message(&mut self.admitted) => match msg {
                    Some(ToConn::Disconnect(reason)) => return format!("disconnected by the application: {reason}"),
                    Some(_) => {}
                    // The instance is gone; the viewer stays, as an RTMP player does.
                    None => self.admitted = None,
                },
                _ = tx.closed() => return "viewer left".into(),
            }
        }
    }
}

/// The app's next message for this viewer (never, without an app).
async fn app_message(admitted: &mut Option<Admitted>) -> Option<ToConn> {
    match admitted {
        Some(a) => a.rx.recv().await,
        None => std::future::pending().await,
    }
}
