//! The streams one connection plays: each NetStream's [`Playback`] with the RTMP session as its
//! [`MediaSink`], so a player's media goes from the stream ring straight into the session.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;

use crate::media::registry::SHARED_STREAM_ID;
use crate::media::{Frame, MediaItem, MediaSink, Playback, Player, Subscription, TooSlow};
use crate::rtmp::Session;

/// An RTMP session as the sink of one playing NetStream.
struct RtmpSink<'a> {
    session: &'a mut Session,
    stream_id: u32,
    name: &'a str,
}

impl MediaSink for RtmpSink<'_> {
    /// The shared chunk bytes when they fit this session (same stream id and chunk size),
    /// otherwise a private encoding.
    fn frame(&mut self, f: &Arc<Frame>, timestamp: Option<u32>) {
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
    pub fn start(
        &mut self,
        session: &mut Session,
        stream_id: u32,
        name: String,
        sub: Subscription,
        player: Player,
    ) {
        let mut sink = RtmpSink {
            session,
            stream_id,
            name: &name,
        };
        let playback = Playback::start(sub, player, &mut sink);
        self.map.insert(stream_id, Playing { name, playback });
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
