//! The response body of every HTTP listener request: a whole reply (RTMPT, errors) or a live
//! stream of FLV tags fed by a player task, as [`Tags`]: several shared `Bytes` written with one
//! vectored write, so a tag made once for all viewers is never copied per viewer.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

/// Buffers sent as one body frame.
#[derive(Debug, Default)]
pub struct Tags {
    parts: VecDeque<Bytes>,
    len: usize,
}

impl Tags {
    pub fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.len += b.len();
            self.parts.push_back(b);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The buffers, in order (a WebSocket sends each as its own message).
    pub fn into_parts(self) -> impl Iterator<Item = Bytes> {
        self.parts.into_iter()
    }
}

impl From<Bytes> for Tags {
    fn from(b: Bytes) -> Tags {
        let mut t = Tags::default();
        t.push(b);
        t
    }
}

impl Buf for Tags {
    fn remaining(&self) -> usize {
        self.len
    }

    fn chunk(&self) -> &[u8] {
        self.parts.front().map_or(&[], |b| b.as_ref())
    }

    fn advance(&mut self, mut cnt: usize) {
        while cnt > 0 {
            let Some(front) = self.parts.front_mut() else {
                return;
            };
            let n = cnt.min(front.len());
            front.advance(n);
            self.len -= n;
            cnt -= n;
            if front.is_empty() {
                self.parts.pop_front();
            }
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, part) in dst.iter_mut().zip(self.parts.iter()) {
            *slot = IoSlice::new(part);
            n += 1;
        }
        n
    }
}

/// A reply body: all of it at once, or batches of tags until the feeding task ends.
pub enum WebBody {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Tags>),
}

impl WebBody {
    pub fn empty() -> WebBody {
        WebBody::Full(None)
    }

    pub fn full(b: impl Into<Bytes>) -> WebBody {
        WebBody::Full(Some(b.into()))
    }
}

impl Body for WebBody {
    type Data = Tags;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Tags>, Infallible>>> {
        match &mut *self {
            WebBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(Tags::from(b))))),
            WebBody::Stream(rx) => rx.poll_recv(cx).map(|t| t.map(|t| Ok(Frame::data(t)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, WebBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            WebBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            WebBody::Stream(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_one_buffer_of_many_parts() {
        let mut t = Tags::default();
        t.push(Bytes::from_static(b"abc"));
        t.push(Bytes::new());
        t.push(Bytes::from_static(b"de"));
        assert_eq!(t.remaining(), 5);
        let mut slices = [IoSlice::new(&[]); 4];
        assert_eq!(t.chunks_vectored(&mut slices), 2);
        t.advance(4);
        assert_eq!(t.chunk(), b"e");
        t.advance(1);
        assert!(t.is_empty() && t.chunk().is_empty());
    }
}
