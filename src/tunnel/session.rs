//! One RTMPT session: the tunnel end of a bounded in-memory byte pipe whose other end is served
//! by the ordinary connection driver, plus the sequence and polling state of the HTTP side.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// How far ahead of the expected sequence number a request may be and still wait for the gap.
pub const REORDER_WINDOW: u64 = 16;

/// Empty replies in a row before the polling byte steps to the next (longer) interval.
const EMPTY_REPLIES_PER_STEP: u32 = 10;
/// The polling intervals servers announce, shortest first (FMS and Wowza use this ladder).
const POLL_STEPS: [u8; 6] = [0x01, 0x03, 0x05, 0x09, 0x11, 0x21];

/// What a request with a given sequence number should do.
#[derive(Debug, PartialEq, Eq)]
pub enum SeqCheck {
    /// The expected request: process it.
    Process,
    /// A retry of the request just answered: send the same reply again.
    Replay(Bytes),
    /// Ahead of a missing request: wait for it.
    Wait,
    /// Too old or too far ahead: refuse.
    Refuse,
}

/// Sequence bookkeeping, separate from I/O so it can be tested alone.
#[derive(Debug, Default)]
pub struct Sequencer {
    /// The next sequence number to process; set by the first request after open (ffmpeg
    /// starts at 0, librtmp continues the counter it used for `/open/1`).
    expected: Option<u64>,
    last: Option<(u64, Bytes)>,
}

impl Sequencer {
    pub fn check(&mut self, seq: u64) -> SeqCheck {
        let expected = *self.expected.get_or_insert(seq);
        if seq == expected {
            return SeqCheck::Process;
        }
        if let Some((last_seq, reply)) = &self.last
            && *last_seq == seq
        {
            return SeqCheck::Replay(reply.clone());
        }
        if seq > expected && seq - expected <= REORDER_WINDOW {
            SeqCheck::Wait
        } else {
            SeqCheck::Refuse
        }
    }

    /// Records the reply to the request just processed.
    pub fn done(&mut self, seq: u64, reply: Bytes) {
        self.expected = Some(seq.wrapping_add(1));
        self.last = Some((seq, reply));
    }
}

/// The polling byte: 0x01 while data flows, backing off towards 0x21 after runs of empty
/// replies, back to 0x01 as soon as a reply carries data.
#[derive(Debug, Default)]
pub struct Poller {
    empty_in_a_row: u32,
}

impl Poller {
    pub fn next_byte(&mut self, had_data: bool) -> u8 {
        if had_data {
            self.empty_in_a_row = 0;
        } else {
            self.empty_in_a_row = self.empty_in_a_row.saturating_add(1);
        }
        let step = (self.empty_in_a_row / EMPTY_REPLIES_PER_STEP) as usize;
        POLL_STEPS[step.min(POLL_STEPS.len() - 1)]
    }
}

/// Why a request could not be carried through the pipe.
#[derive(Debug, thiserror::Error)]
pub enum PipeError {
    #[error("the RTMP session behind this tunnel has ended")]
    Ended,
    #[error("the RTMP session did not take the request body within {0:?}")]
    Stalled(Duration),
}

/// The HTTP side's state of one session, behind the session's async mutex.
pub struct Exchange {
    pub pipe: DuplexStream,
    pub seq: Sequencer,
    pub poller: Poller,
    /// The driver closed its end; remaining bytes have been returned.
    pub ended: bool,
}

impl Exchange {
    pub fn new(pipe: DuplexStream) -> Exchange {
        Exchange {
            pipe,
            seq: Sequencer::default(),
            poller: Poller::default(),
            ended: false,
        }
    }

    /// Hands the client's bytes to the session, waiting at most `limit` for buffer space.
    pub async fn push(&mut self, body: &[u8], limit: Duration) -> Result<(), PipeError> {
        if body.is_empty() {
            return Ok(());
        }
        match tokio::time::timeout(limit, self.pipe.write_all(body)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => {
                self.ended = true;
                Err(PipeError::Ended)
            }
            Err(_) => Err(PipeError::Stalled(limit)),
        }
    }

    /// Builds a reply: the polling byte, then up to `max` pending bytes. Waits up to `hold`
    /// for the first byte when nothing is pending, then takes whatever else is ready.
    pub async fn pull(&mut self, max: usize, hold: Duration) -> Bytes {
        let mut out = BytesMut::with_capacity(1 + max.min(64 * 1024));
        out.put_u8(0); // polling byte, filled in below
        if !self.ended {
            let mut buf = vec![0u8; max.min(64 * 1024)];
            // The first read may wait (long poll); later ones only take what is ready.
            let first = if hold.is_zero() {
                self.pipe.read(&mut buf).now_or_never()
            } else {
                tokio::time::timeout(hold, self.pipe.read(&mut buf))
                    .await
                    .ok()
            };
            let mut next = first;
            while let Some(r) = next {
                match r {
                    Ok(0) | Err(_) => {
                        self.ended = true;
                        break;
                    }
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                }
                let room = (max + 1).saturating_sub(out.len());
                if room == 0 {
                    break;
                }
                let take = room.min(buf.len());
                next = self.pipe.read(&mut buf[..take]).now_or_never();
            }
        }
        let had_data = out.len() > 1;
        out[0] = self.poller.next_byte(had_data);
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_requests_process_and_retries_replay() {
        let mut s = Sequencer::default();
        assert_eq!(s.check(0), SeqCheck::Process);
        s.done(0, Bytes::from_static(b"\x01a"));
        assert_eq!(s.check(0), SeqCheck::Replay(Bytes::from_static(b"\x01a")));
        assert_eq!(s.check(1), SeqCheck::Process);
        s.done(1, Bytes::from_static(b"\x01b"));
        assert_eq!(s.check(3), SeqCheck::Wait);
        assert_eq!(s.check(2 + REORDER_WINDOW + 1), SeqCheck::Refuse);
        assert_eq!(s.check(0), SeqCheck::Refuse);
    }

    #[test]
    fn first_request_sets_the_baseline() {
        // librtmp's first request after /open/1 carries 2; ffmpeg's carries 0.
        let mut s = Sequencer::default();
        assert_eq!(s.check(2), SeqCheck::Process);
        s.done(2, Bytes::new());
        assert_eq!(s.check(3), SeqCheck::Process);
    }

    #[test]
    fn polling_byte_backs_off_and_resets() {
        let mut p = Poller::default();
        let bytes: Vec<u8> = (0..70).map(|_| p.next_byte(false)).collect();
        assert_eq!(bytes[0], 0x01);
        assert_eq!(bytes[9], 0x03);
        assert_eq!(bytes[19], 0x05);
        assert_eq!(bytes[29], 0x09);
        assert_eq!(bytes[39], 0x11);
        assert_eq!(bytes[49], 0x21);
        assert_eq!(bytes[69], 0x21);
        assert_eq!(p.next_byte(true), 0x01);
        assert_eq!(p.next_byte(false), 0x01);
    }

    #[tokio::test]
    async fn pull_is_bounded_and_reports_the_end() {
        let (near, mut far) = tokio::io::duplex(64 * 1024);
        let mut x = Exchange::new(near);
        far.write_all(&[7u8; 5000]).await.unwrap();
        let r = x.pull(1000, Duration::ZERO).await;
        assert_eq!(r.len(), 1001);
        assert_eq!(r[0], 0x01);
        let r = x.pull(1 << 20, Duration::ZERO).await;
        assert_eq!(r.len(), 4001);
        let r = x.pull(1 << 20, Duration::from_millis(10)).await;
        assert_eq!(&r[..], &[0x01]);
        x.push(b"hello", Duration::from_secs(1)).await.unwrap();
        let mut got = [0u8; 5];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        drop(far);
        let r = x.pull(100, Duration::from_millis(10)).await;
        assert_eq!(r.len(), 1);
        assert!(x.ended);
    }
}
