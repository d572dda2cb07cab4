//! The per-session pieces of RTMPT: sequence bookkeeping, the polling-byte back-off, the bounded
//! reply buffer, and the async pipe I/O that carries request bodies to the RTMP driver and back.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How far ahead of the expected sequence number a request may be and still wait for the gap.
pub const REORDER_WINDOW: u64 = 16;

/// Empty replies in a row before the polling byte steps to the next (longer) interval.
const EMPTY_REPLIES_PER_STEP: u32 = 10;
/// The polling intervals servers announce, shortest first (FMS and Wowza use this ladder).
pub const POLL_STEPS: [u8; 6] = [0x01, 0x03, 0x05, 0x09, 0x11, 0x21];

/// What a request with a given sequence number should do.
#[derive(Debug, PartialEq, Eq)]
pub enum SeqCheck {
    /// The expected request: process it, then call [`Sequencer::done`] (or
    /// [`Sequencer::abandon`] if it could not be finished).
    Process,
    /// A retry of the request just answered: send the same reply again.
    Replay(Bytes),
    /// Ahead of a missing request, or a retry of the one being processed: wait for progress.
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
    /// The expected request is being processed right now (its reply is not known yet).
    in_flight: bool,
}

impl Sequencer {
    pub fn check(&mut self, seq: u64) -> SeqCheck {
        let expected = *self.expected.get_or_insert(seq);
        if seq == expected {
            if self.in_flight {
                // A proxy's retry of the request in progress: answer it with the same reply.
                return SeqCheck::Wait;
            }
            self.in_flight = true;
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
        self.in_flight = false;
    }

    /// The request being processed went away unanswered (its HTTP connection closed): the
    /// same sequence number may be processed again.
    pub fn abandon(&mut self) {
        self.in_flight = false;
    }

    /// The sequence number the session waits for, once known.
    pub fn expected(&self) -> Option<u64> {
        self.expected
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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipeError {
    #[error("the RTMP session behind this tunnel has ended")]
    Ended,
    #[error("the RTMP session did not take the request body within {0:?}")]
    Stalled(Duration),
}

/// A reply body under construction: one reserved byte for the polling interval (filled in when
/// the reply is finished, once it is known whether data came), then at most `max` RTMP bytes.
#[derive(Debug)]
pub struct ReplyBuf {
    buf: BytesMut,
    max: usize,
}

impl ReplyBuf {
    pub fn new(max: usize) -> ReplyBuf {
        let mut buf = BytesMut::with_capacity(1 + max.min(64 * 1024));
        buf.put_u8(0);
        ReplyBuf { buf, max }
    }

    /// RTMP bytes that still fit.
    pub fn room(&self) -> usize {
        self.max.saturating_sub(self.data_len())
    }

    /// RTMP bytes held.
    pub fn data_len(&self) -> usize {
        self.buf.len() - 1
    }

    /// Appends as much of `data` as fits; returns how much did.
    pub fn extend(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.room());
        self.buf.extend_from_slice(&data[..n]);
        n
    }

    /// The finished body with `poll_byte` first.
    pub fn finish(mut self, poll_byte: u8) -> Bytes {
        self.buf[0] = poll_byte;
        self.buf.freeze()
    }
}

/// Hands the client's bytes to the session, waiting at most `limit` for buffer space.
pub async fn push<P: AsyncWrite + Unpin>(
    pipe: &mut P,
    body: &[u8],
    limit: Duration,
) -> Result<(), PipeError> {
    if body.is_empty() {
        return Ok(());
    }
    match tokio::time::timeout(limit, pipe.write_all(body)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(PipeError::Ended),
        Err(_) => Err(PipeError::Stalled(limit)),
    }
}

/// Fills `out` with pending bytes from the session. Waits up to `hold` for the first byte when
/// nothing is pending, then takes only what is ready. Returns true when the session's end of the
/// pipe has closed (everything it wrote has been read).
pub async fn pull<P: AsyncRead + Unpin>(pipe: &mut P, out: &mut ReplyBuf, hold: Duration) -> bool {
    let room = out.room();
    if room == 0 {
        return false;
    }
    let mut buf = vec![0u8; room.min(64 * 1024)];
    // The first read may wait (long poll); later ones only take what is ready.
    let first = if hold.is_zero() {
        pipe.read(&mut buf).now_or_never()
    } else {
        tokio::time::timeout(hold, pipe.read(&mut buf)).await.ok()
    };
    let mut next = first;
    while let Some(r) = next {
        match r {
            Ok(0) | Err(_) => return true,
            Ok(n) => {
                out.extend(&buf[..n]);
            }
        }
        let take = out.room().min(buf.len());
        if take == 0 {
            break;
        }
        next = pipe.read(&mut buf[..take]).now_or_never();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
    fn a_retry_of_the_request_in_progress_waits_then_replays() {
        let mut s = Sequencer::default();
        assert_eq!(s.check(5), SeqCheck::Process);
        assert_eq!(s.check(5), SeqCheck::Wait);
        assert_eq!(s.check(6), SeqCheck::Wait);
        s.done(5, Bytes::from_static(b"\x01"));
        assert_eq!(s.check(5), SeqCheck::Replay(Bytes::from_static(b"\x01")));
        assert_eq!(s.check(6), SeqCheck::Process);
        // Its connection went away: the same number may be processed again.
        s.abandon();
        assert_eq!(s.check(6), SeqCheck::Process);
    }

    #[test]
    fn first_request_sets_the_baseline() {
        // librtmp's first request after /open/1 carries 2; ffmpeg's carries 0.
        let mut s = Sequencer::default();
        assert_eq!(s.check(2), SeqCheck::Process);
        s.done(2, Bytes::new());
        assert_eq!(s.check(3), SeqCheck::Process);
    }

    fn reply_for(seq: u64) -> Bytes {
        Bytes::from(seq.to_be_bytes().to_vec())
    }

    /// Arrivals for `base+1 ..= base+n`, each once or twice (a proxy's retry), shuffled.
    fn arrivals() -> impl Strategy<Value = (u64, Vec<u64>)> {
        (
            0..u64::MAX / 2,
            proptest::collection::vec(any::<bool>(), 1..=REORDER_WINDOW as usize + 1),
        )
            .prop_flat_map(|(base, dup)| {
                let mut v = Vec::new();
                for (i, twice) in dup.iter().enumerate() {
                    let seq = base + 1 + i as u64;
                    v.push(seq);
                    if *twice {
                        v.push(seq);
                    }
                }
                (Just(base), Just(v).prop_shuffle())
            })
    }

    proptest! {
        /// Any order of arrival within the window (retries included) processes every sequence
        /// number exactly once, in order; a retry gets the original reply or, once a later
        /// request has been answered, a refusal.
        #[test]
        fn any_permutation_within_the_window_is_delivered_in_order_exactly_once(
            (base, arrivals) in arrivals()
        ) {
            let mut s = Sequencer::default();
            prop_assert_eq!(s.check(base), SeqCheck::Process);
            s.done(base, reply_for(base));
            let mut pending = arrivals.clone();
            let mut delivered: Vec<u64> = Vec::new();
            while !pending.is_empty() {
                // As the server does: every waiter re-checks after each answered request.
                let mut progressed = false;
                let mut i = 0;
                while i < pending.len() {
                    let seq = pending[i];
                    match s.check(seq) {
                        SeqCheck::Wait => {
                            i += 1;
                            continue;
                        }
                        SeqCheck::Process => {
                            prop_assert!(!delivered.contains(&seq), "{} processed twice", seq);
                            delivered.push(seq);
                            s.done(seq, reply_for(seq));
                        }
                        SeqCheck::Replay(r) => prop_assert_eq!(r, reply_for(seq)),
                        SeqCheck::Refuse => prop_assert!(delivered.contains(&seq), "{} refused", seq),
                    }
                    pending.remove(i);
                    progressed = true;
                }
                prop_assert!(progressed, "stuck waiting: {:?}", pending);
            }
            let mut want: Vec<u64> = arrivals.clone();
            want.sort();
            want.dedup();
            prop_assert_eq!(delivered, want);
        }

        /// Beyond the window, and older than the last answered request: refused, and the
        /// session's state is unharmed.
        #[test]
        fn outside_the_window_is_refused(
            base in 1..u64::MAX / 4,
            ahead in REORDER_WINDOW + 1..u64::MAX / 4,
            behind in 1..u64::MAX / 4,
        ) {
            let mut s = Sequencer::default();
            prop_assert_eq!(s.check(base), SeqCheck::Process);
            s.done(base, reply_for(base));
            prop_assert_eq!(s.check(base + ahead), SeqCheck::Refuse);
            prop_assert_eq!(s.check(base.saturating_sub(behind)), SeqCheck::Refuse);
            prop_assert_eq!(s.check(base), SeqCheck::Replay(reply_for(base)));
            prop_assert_eq!(s.check(base + 1), SeqCheck::Process);
        }
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
        let (mut near, mut far) = tokio::io::duplex(64 * 1024);
        far.write_all(&[7u8; 5000]).await.unwrap();
        let mut out = ReplyBuf::new(1000);
        assert!(!pull(&mut near, &mut out, Duration::ZERO).await);
        let r = out.finish(0x01);
        assert_eq!(r.len(), 1001);
        assert_eq!(r[0], 0x01);
        let mut out = ReplyBuf::new(1 << 20);
        assert!(!pull(&mut near, &mut out, Duration::ZERO).await);
        assert_eq!(out.data_len(), 4000);
        let mut out = ReplyBuf::new(1 << 20);
        assert!(!pull(&mut near, &mut out, Duration::from_millis(10)).await);
        assert_eq!(&out.finish(0x03)[..], &[0x03]);
        push(&mut near, b"hello", Duration::from_secs(1))
            .await
            .unwrap();
        let mut got = [0u8; 5];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        drop(far);
        let mut out = ReplyBuf::new(100);
        assert!(pull(&mut near, &mut out, Duration::from_millis(10)).await);
        assert_eq!(out.data_len(), 0);
        assert_eq!(
            push(&mut near, b"x", Duration::from_secs(1)).await,
            Err(PipeError::Ended)
        );
    }
}
