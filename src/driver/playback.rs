//! The streams one connection plays: each NetStream's [`Playback`] with the RTMP session as its
//! [`MediaSink`], so a player's media goes from the stream ring straight into the session.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;

use crate::media::registry::SHARED_STREAM_ID;
use crate::media::{Frame, MediaItem, MediaSink, Playback, Player, Subscription, TooSlow};
use crate::rtmp::Session;
use crate::rtmp::session::MediaKind;

/// Live frames moved onto another timeline: a DVR play that sent a recording up to file time
/// `from` goes on live with `live + add`, and nothing that would run the client's clock back.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rebase {
    pub add: u32,
    /// Until a video keyframe at or after it (or, without video, any frame) passes: frames
    /// before it are dropped, headers are stamped with it.
    pub from: Option<u32>,
}

impl Rebase {
    /// The timestamp to write `f` with, or `None` to drop it.
    fn apply(&mut self, f: &Frame, ts: u32) -> Option<u32> {
        let ts = ts.wrapping_add(self.add);
        let Some(from) = self.from else {
            return Some(ts);
        };
        let at_or_after = ts.wrapping_sub(from) < 0x8000_0000;
        if f.info.sequence_header || f.kind == MediaKind::Data {
            // The decoder needs the headers (and players the metadata), stamped no earlier
            // than what was sent.
            return Some(if at_or_after { ts } else { from });
        }
        if !at_or_after {
            return None;
        }
        match f.kind {
            MediaKind::Video if !f.info.keyframe => None,
            MediaKind::Video => {
                self.from = None;
                Some(ts)
            }
            _ => Some(ts),
        }
    }
}

/// An RTMP session as the sink of one playing NetStream.
struct RtmpSink<'a> {
    session: &'a mut Session,
    stream_id: u32,
    name: &'a str,
    rebase: Option<&'a mut Rebase>,
}

impl MediaSink for RtmpSink<'_> {
    /// The shared chunk bytes when they fit this session (same stream id and chunk size),
    /// otherwise a private encoding.
    fn frame(&mut self, f: &Arc<Frame>, timestamp: Option<u32>) {
        if let Some(r) = self.rebase.as_deref_mut() {
            if let Some(ts) = r.apply(f, timestamp.unwrap_or(f.timestamp)) {
                let header = f.header(self.stream_id, ts);
                self.session.send_media(f.csid(), &header, &f.payload);
            }
            return;
        }
        let shared_fits = self.stream_id == SHARED_STREAM_ID
            && self.session.out_chunk_size() == f.encoded_chunk_size;
        match timestamp {
            None if shared_fits => self.session.send_encoded(f.encoded.clone()),
            _ => {
                let header = f.header(self.stream_id, timestamp.unwrap_or(f.timestamp));
                self.session.send_media(f.csid(), &header, &f.payload);
            }
        }
    }

    fn published(&mut self) {
        self.session.play_publish_notify(self.stream_id, self.name);
    }

    fn unpublished(&mut self) {
        self.session
            .play_unpublish_notify(self.stream_id, self.name);
    }
}

/// One playing NetStream.
pub(super) struct Playing {
    /// The name the client asked for (without its query), for status messages.
    pub name: String,
    pub playback: Playback,
    /// A DVR play gone live: its frames keep the recording's timeline.
    rebase: Option<Rebase>,
}

/// The connection's playing NetStreams by message stream id.
#[derive(Default)]
pub(super) struct Plays {
    map: HashMap<u32, Playing>,
}

impl Plays {
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get_mut(&mut self, stream_id: u32) -> Option<&mut Playing> {
        self.map.get_mut(&stream_id)
    }

    pub fn get(&self, stream_id: u32) -> Option<&Playing> {
        self.map.get(&stream_id)
    }

    pub fn remove(&mut self, stream_id: u32) -> Option<Playing> {
        self.map.remove(&stream_id)
    }

    /// Starts `name` on `stream_id`: the late-join preamble is queued on `session` at once.
    /// With `rebase`, frames are written on that timeline (a DVR play going live).
    pub fn start(
        &mut self,
        session: &mut Session,
        stream_id: u32,
        name: String,
        sub: Subscription,
        player: Player,
        mut rebase: Option<Rebase>,
    ) {
        let mut sink = RtmpSink {
            session,
            stream_id,
            name: &name,
            rebase: rebase.as_mut(),
        };
        let playback = Playback::start(sub, player, &mut sink);
        self.map.insert(
            stream_id,
            Playing {
                name,
                playback,
                rebase,
            },
        );
    }

    /// Applies one ring item of `stream_id`.
    pub fn on_item(
        &mut self,
        session: &mut Session,
        stream_id: u32,
        item: Result<MediaItem, RecvError>,
    ) -> Result<(), TooSlow> {
        let Some(p) = self.map.get_mut(&stream_id) else {
            return Ok(());
        };
        let mut sink = RtmpSink {
            session,
            stream_id,
            name: &p.name,
            rebase: p.rebase.as_mut(),
        };
        p.playback.handle(item, &mut sink)
    }

    /// Takes up to `max` ready items of every stream without waiting, so one write carries
    /// many messages.
    pub fn drain(&mut self, session: &mut Session, max: usize) -> Result<(), TooSlow> {
        for (&stream_id, p) in self.map.iter_mut() {
            let mut sink = RtmpSink {
                session: &mut *session,
                stream_id,
                name: &p.name,
                rebase: p.rebase.as_mut(),
            };
            p.playback.drain(max, &mut sink)?;
        }
        Ok(())
    }

    /// The next item from any played stream (used when media is written as it arrives).
    pub async fn recv_any(&mut self) -> (u32, Result<MediaItem, RecvError>) {
        let futs = self
            .map
            .iter_mut()
            .map(|(&id, p)| Box::pin(async move { (id, p.playback.recv().await) }));
        futures_util::future::select_all(futs).await.0
    }
}
