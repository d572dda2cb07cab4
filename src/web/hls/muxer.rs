//! One segmenter per live stream, shared by all its HLS viewers: a task on a `Registry::tap`
//! subscription (not counted as a player) feeds the stream's frames to a
//! [`Segmenter`](crate::media::fmp4::Segmenter); requests read its window under a short lock
//! and wait for the next part on a `watch` channel bumped at every change (no polling).
//! It stops when the publisher leaves, when nobody has asked for the stream for
//! `http.hls_session_timeout_secs`, or at shutdown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tracing::{Instrument, info, info_span};

use crate::gateway::Core;
use crate::media::fmp4::{Segmenter, SegmenterConfig};
use crate::media::registry::Frame;
use crate::media::{MediaSink, Playback, Player, StreamKey};
use crate::rtmp::session::MediaKind;

/// Ring items taken per wake-up, as for players.
const DRAIN_MAX: usize = 256;

pub struct Muxer {
    pub key: StreamKey,
    seg: Mutex<Segmenter>,
    changes: watch::Sender<u64>,
    last_request: Mutex<Instant>,
    done: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Muxer {
    /// Subscribes to `key` and starts segmenting it; `on_end` runs when the task ends.
    pub fn start(
        core: &Arc<Core>,
        key: StreamKey,
        cfg: SegmenterConfig,
        idle: Duration,
        on_end: impl FnOnce(&Arc<Muxer>) + Send + 'static,
    ) -> Arc<Muxer> {
        let muxer = Arc::new(Muxer {
            key: key.clone(),
            seg: Mutex::new(Segmenter::new(cfg)),
            changes: watch::channel(0).0,
            last_request: Mutex::new(Instant::now()),
            done: AtomicBool::new(false),
        });
        let config = core.config();
        let player = Player::new(
            config.media.player_max_skips,
            Duration::from_secs(config.media.player_skip_window_secs),
        );
        let sub = core.registry().tap(key.clone());
        // Not a child of the request that started it: it outlives that request.
        let span = info_span!(parent: None, "hls-muxer", stream = %key);
        let m = muxer.clone();
        let core = core.clone();
        tokio::spawn(
            async move {
                let reason = m.run(&core, sub, player, idle).await;
                {
                    let mut seg = lock(&m.seg);
                    seg.finish();
                    let _ = m.changes.send_replace(seg.changes());
                }
                m.done.store(true, Ordering::Release);
                info!(%reason, "HLS segmenter stopped");
                on_end(&m);
            }
            .instrument(span),
        );
        muxer
    }

    /// The segmenter stopped (the stream ended or went unrequested).
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// A request came for this stream: it stays segmented.
    pub fn touch(&self) {
        *lock(&self.last_request) = Instant::now();
    }

    /// Reads the window.
    pub fn with<R>(&self, f: impl FnOnce(&Segmenter) -> R) -> R {
        f(&lock(&self.seg))
    }

    /// Waits until `ready` holds or `deadline` passes; whether it holds.
    pub async fn wait_until(&self, deadline: Instant, ready: impl Fn(&Segmenter) -> bool) -> bool {
        let mut rx = self.changes.subscribe();
        loop {
            if self.with(&ready) {
                return true;
            }
            let changed = tokio::time::timeout_at(deadline.into(), rx.changed()).await;
            match changed {
                Ok(Ok(())) => {}
                // Timed out, or the muxer is gone: answer from what there is.
                _ => return self.with(&ready),
            }
        }
    }

    async fn run(
        &self,
        core: &Arc<Core>,
        sub: crate::media::Subscription,
        player: Player,
        idle: Duration,
    ) -> String {
        if !sub.live {
            return "stream is not live".into();
        }
        let mut sink = SegmentSink {
            muxer: self,
            ended: false,
        };
        let mut playback = Playback::start(sub, player, &mut sink);
        self.publish();
        let mut shutdown = core.shutdown_signal();
        if *shutdown.borrow_and_update() {
            return "server shutting down".into();
        }
        loop {
            let idle_at = *lock(&self.last_request) + idle;
            tokio::select! {
                item = playback.recv() => {
                    match &item {
                        Err(RecvError::Closed) => return "stream closed".into(),
                        Err(RecvError::Lagged(_)) => lock(&self.seg).lagged(),
                        Ok(_) => {}
                    }
                    if playback.handle(item, &mut sink).is_err()
                        || playback.drain(DRAIN_MAX, &mut sink).is_err()
                    {
                        return "segmenter fell behind too often".into();
                    }
                    self.publish();
                    if sink.ended {
                        return "publisher left".into();
                    }
                }
                _ = tokio::time::sleep_until(idle_at.into()) => {
                    if lock(&self.last_request).elapsed() >= idle {
                        return format!("no HLS request for {idle:?}");
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return "server shutting down".into();
                    }
                }
            }
        }
    }

    fn publish(&self) {
        let n = lock(&self.seg).changes();
        self.changes.send_if_modified(|v| {
            let changed = *v != n;
            *v = n;
            changed
        });
    }
}

/// Hands each frame to the segmenter.
struct SegmentSink<'a> {
    muxer: &'a Muxer,
    ended: bool,
}

impl MediaSink for SegmentSink<'_> {
    fn frame(&mut self, f: &Arc<Frame>, timestamp: Option<u32>) {
        let ts = timestamp.unwrap_or(f.timestamp);
        let mut seg = lock(&self.muxer.seg);
        match f.kind {
            MediaKind::Video => seg.push_video(ts, &f.payload, unix_ms()),
            MediaKind::Audio => seg.push_audio(ts, &f.payload, unix_ms()),
            MediaKind::Data => {}
        }
    }

    fn published(&mut self) {
        lock(&self.muxer.seg).restarted();
    }

    fn unpublished(&mut self) {
        self.ended = true;
    }
}
