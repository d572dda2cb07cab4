//! The HLS state of one gateway: its streams' segmenters and its viewers' sessions. Kept in a
//! table beside the gateway's [`Core`] (found by the core's address, dropped with it), so the
//! HTTP routing needs no new wiring; it could move into `Server` beside the RTMPT `Tunnel`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use hyper::StatusCode;

use super::super::gate::Refused;
use super::muxer::Muxer;
use super::session::Session;
use crate::gateway::Core;
use crate::media::StreamKey;
use crate::media::fmp4::SegmenterConfig;

#[derive(Default)]
pub struct Hls {
    muxers: Mutex<HashMap<StreamKey, Arc<Muxer>>>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

type Table = Vec<(Weak<Core>, Arc<Hls>)>;

static TABLE: Mutex<Table> = Mutex::new(Vec::new());

/// The HLS state of `core`'s gateway.
pub fn of(core: &Arc<Core>) -> Arc<Hls> {
    let mut t = lock(&TABLE);
    t.retain(|(c, _)| c.strong_count() > 0);
    if let Some((_, h)) = t
        .iter()
        .find(|(c, _)| std::ptr::eq(c.as_ptr(), Arc::as_ptr(core)))
    {
        return h.clone();
    }
    let h = Arc::new(Hls::default());
    t.push((Arc::downgrade(core), h.clone()));
    h
}

impl Hls {
    /// The segmenter of live stream `key`, started by this request when there is none.
    pub fn muxer(
        self: &Arc<Self>,
        core: &Arc<Core>,
        key: &StreamKey,
    ) -> Result<Arc<Muxer>, Refused> {
        let mut map = lock(&self.muxers);
        if let Some(m) = map.get(key).filter(|m| !m.is_done()) {
            m.touch();
            return Ok(m.clone());
        }
        if core.registry().publisher_of(key).is_none() {
            return Err((StatusCode::NOT_FOUND, format!("stream {key} is not live")));
        }
        let http = &core.config().http;
        let cfg = SegmenterConfig {
            part_ms: http.hls_part_ms,
            segment_ms: http.hls_segment_ms,
            window: http.hls_window_segments,
            max_window_bytes: http.hls_max_window_bytes,
        };
        let idle = Duration::from_secs(http.hls_session_timeout_secs);
        let hls = Arc::downgrade(self);
        let m = Muxer::start(core, key.clone(), cfg, idle, move |m| {
            if let Some(hls) = hls.upgrade() {
                let mut map = lock(&hls.muxers);
                if map.get(&m.key).is_some_and(|x| Arc::ptr_eq(x, m)) {
                    map.remove(&m.key);
                }
            }
        });
        map.insert(key.clone(), m.clone());
        Ok(m)
    }

    pub fn session(&self, id: &str) -> Option<Arc<Session>> {
        lock(&self.sessions).get(id).cloned()
    }

    /// A session (open, or closed and refusing) of the same viewer: same address, stream and
    /// app query. Players that reload the playlist by its first URL (ffmpeg does) keep one
    /// session this way instead of opening one per reload.
    pub fn same_viewer(&self, key: &StreamKey, ip: IpAddr, query: &str) -> Option<Arc<Session>> {
        lock(&self.sessions)
            .values()
            .filter(|s| s.key == *key && s.ip == ip && s.query == query)
            .find(|s| s.closed().is_none_or(|c| c.refuse_again))
            .cloned()
    }

    /// Adds a session unless `max` are already held (open and tombstones).
    pub fn add_session(&self, s: Arc<Session>, max: usize) -> bool {
        let mut map = lock(&self.sessions);
        if map.len() >= max {
            return false;
        }
        map.insert(s.id.clone(), s);
        true
    }

    pub fn session_count(&self) -> usize {
        lock(&self.sessions).len()
    }

    pub fn forget(&self, s: &Arc<Session>) {
        let mut map = lock(&self.sessions);
        if map.get(&s.id).is_some_and(|x| Arc::ptr_eq(x, s)) {
            map.remove(&s.id);
        }
    }
}
