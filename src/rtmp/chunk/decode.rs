//! The chunk decoder: reassembles a peer's chunks into messages, bounded by [`ChunkLimits`] and
//! tolerant of the header quirks of ffmpeg, librtmp and FMLE. Every violation is a [`ChunkError`].

use std::collections::HashMap;

use bytes::{Buf, Bytes, BytesMut};

use super::header::{
    DEFAULT_CHUNK_SIZE, EXTENDED_TIMESTAMP, MAX_SPEC_CHUNK_SIZE, MESSAGE_HEADER_LEN, MessageHeader,
    RawMessage, parse_basic_header,
};

/// Per-connection bounds on what a peer can make the decoder hold.
#[derive(Debug, Clone, Copy)]
pub struct ChunkLimits {
    /// A message header announcing more than this many bytes is an error.
    pub max_message_size: u32,
    /// A peer Set Chunk Size above this is an error (the spec maximum is 0x7FFF_FFFF; 0 is invalid).
    pub max_chunk_size: u32,
    /// Distinct chunk stream ids with state per connection.
    pub max_chunk_streams: usize,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        ChunkLimits {
            max_message_size: 16 * 1024 * 1024,
            max_chunk_size: 16 * 1024 * 1024,
            max_chunk_streams: 64,
        }
    }
}

/// Chunk stream violations. Every one is the peer's fault. The offending chunk is left in the
/// buffer and the stream cannot be resynchronized after it: close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("peer announced a {size}-byte message, over the {max}-byte limit")]
    MessageTooLarge { size: u32, max: u32 },
    #[error("peer sent an invalid chunk size {0} (valid: 1..=2147483647)")]
    ChunkSizeInvalid(u32),
    #[error("peer set chunk size {size}, over the {max}-byte limit")]
    ChunkSizeTooLarge { size: u32, max: u32 },
    #[error("peer used more than {0} chunk streams")]
    TooManyChunkStreams(usize),
    #[error(
        "peer sent a compressed chunk header on chunk stream {0}, which has no previous header"
    )]
    NoPreviousHeader(u32),
}

fn be24(b: &[u8]) -> u32 {
    (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// A message whose first chunks have arrived.
#[derive(Debug)]
struct Partial {
    header: MessageHeader,
    length: u32,
    data: Vec<u8>,
}

/// What the decoder remembers per chunk stream id.
#[derive(Debug)]
struct InStream {
    /// Absolute timestamp of the last message started on this chunk stream.
    timestamp: u32,
    /// What a fmt 3 chunk starting a new message adds to `timestamp`: the last header's timestamp
    /// field, which after a fmt 0 header is the absolute timestamp (spec §5.3.1.2.4; ffmpeg
    /// `rtmp_packet_read_one_chunk` and librtmp `RTMP_ReadPacket` agree).
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// `Some(v)` when the last header's timestamp field was 0xFFFFFF and its extended timestamp `v`.
    extended: Option<u32>,
    partial: Option<Partial>,
}

/// Result of looking at one chunk.
enum Step {
    NeedMore,
    Continue,
    Message(RawMessage),
}

/// Reassembles messages from a peer's chunk stream.
#[derive(Debug)]
pub struct ChunkDecoder {
    limits: ChunkLimits,
    chunk_size: u32,
    streams: HashMap<u32, InStream>,
    /// Bytes held in partially received messages, across chunk streams.
    pending: usize,
}

impl ChunkDecoder {
    pub fn new(limits: ChunkLimits) -> Self {
        ChunkDecoder {
            limits,
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: HashMap::new(),
            pending: 0,
        }
    }

    pub fn limits(&self) -> &ChunkLimits {
        &self.limits
    }

    /// The peer's current chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Bytes held in partially received messages (for a per-connection memory budget).
    pub fn pending_bytes(&self) -> usize {
        self.pending
    }

    /// Chunk stream ids with state.
    pub fn chunk_streams(&self) -> usize {
        self.streams.len()
    }

    /// Peer's Set Chunk Size (validated against limits). Applies to the next chunk, including the
    /// remaining chunks of messages already partly received.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        if size == 0 || size > MAX_SPEC_CHUNK_SIZE {
            return Err(ChunkError::ChunkSizeInvalid(size));
        }
        if size > self.limits.max_chunk_size {
            return Err(ChunkError::ChunkSizeTooLarge {
                size,
                max: self.limits.max_chunk_size,
            });
        }
        self.chunk_size = size;
        Ok(())
    }

    /// Abort message: drop the partially received message on `csid`. The header state stays, so
    /// the next message may still use a compressed header (spec §5.4.2).
    pub fn abort(&mut self, csid: u32) {
        if let Some(partial) = self.streams.get_mut(&csid).and_then(|s| s.partial.take()) {
            self.pending -= partial.data.len();
        }
    }

    /// Consumes whole chunks from `buf` until one full message is assembled (returned) or `buf`
    /// lacks a whole chunk (`Ok(None)`; the partial chunk stays in `buf` untouched, no allocation).
    /// Stops right after each completed message so the caller can apply Set Chunk Size / Abort.
    ///
    /// `buf` must be allowed to grow to `chunk_size() + MAX_CHUNK_HEADER_LEN` bytes.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<RawMessage>, ChunkError> {
        loop {
            match self.decode_chunk(buf)? {
                Step::NeedMore => return Ok(None),
                Step::Continue => {}
                Step::Message(msg) => return Ok(Some(msg)),
            }
        }
    }

    fn decode_chunk(&mut self, buf: &mut BytesMut) -> Result<Step, ChunkError> {
        let Some((fmt, csid, bh_len)) = parse_basic_header(buf) else {
            return Ok(Step::NeedMore);
        };
        let prev = self.streams.get(&csid);
        if prev.is_none() {
            // librtmp's RTMP_SendCtrl always asks for a fmt 1 header on csid 2, so a publisher
            // built on it (OBS ships a librtmp fork) answers our first ping with fmt 1 on a fresh
            // chunk stream. SRS accepts that too; fmt 1 carries everything but the stream id,
            // which is 0 for control messages.
            if fmt >= 2 {
                return Err(ChunkError::NoPreviousHeader(csid));
            }
            if self.streams.len() >= self.limits.max_chunk_streams {
                return Err(ChunkError::TooManyChunkStreams(
                    self.limits.max_chunk_streams,
                ));
            }
        }

        let mh_len = MESSAGE_HEADER_LEN[usize::from(fmt)];
        let mut pos = bh_len + mh_len;
        if buf.len() < pos {
            return Ok(Step::NeedMore);
        }
        let mh = &buf[bh_len..pos];

        // What this chunk leaves in the chunk stream state, when it starts a message.
        struct Start {
            timestamp: u32,
            delta: u32,
            extended: Option<u32>,
            length: u32,
            type_id: u8,
            stream_id: u32,
        }

        let start = if fmt < 3 {
            let field = be24(&mh[0..3]);
            let value = if field == EXTENDED_TIMESTAMP {
                if buf.len() < pos + 4 {
                    return Ok(Step::NeedMore);
                }
                let v = be32(&buf[pos..pos + 4]);
                pos += 4;
                v
            } else {
                field
            };
            let (prev_ts, prev_len, prev_type, prev_sid) = prev
                .map(|s| (s.timestamp, s.length, s.type_id, s.stream_id))
                .unwrap_or((0, 0, 0, 0));
            let (length, type_id) = if fmt <= 1 {
                (be24(&mh[3..6]), mh[6])
            } else {
                (prev_len, prev_type)
            };
            Some(Start {
                timestamp: if fmt == 0 {
                    value
                } else {
                    prev_ts.wrapping_add(value)
                },
                delta: value,
                extended: (field == EXTENDED_TIMESTAMP).then_some(value),
                length,
                type_id,
                stream_id: if fmt == 0 { le32(&mh[7..11]) } else { prev_sid },
            })
        } else {
            // fmt 3: the stream exists (checked above).
            let Some(s) = prev else {
                return Err(ChunkError::NoPreviousHeader(csid));
            };
            if s.partial.is_some() {
                // Continuation. ffmpeg (`ff_rtmp_packet_write`), librtmp (`RTMP_SendPacket`) and
                // FMS repeat the extended timestamp on every continuation chunk; some encoders do
                // not. Like SRS (`read_message_header`), peek: 4 bytes equal to the expected value
                // are the repeated field, anything else is payload. A payload that happens to
                // start with those 4 bytes from an encoder that does not repeat them is misread;
                // no decoder can tell the two apart.
                if let Some(ext) = s.extended {
                    let expect = ext.to_be_bytes();
                    let avail = &buf[pos..];
                    if avail.len() >= 4 {
                        if avail[..4] == expect {
                            pos += 4;
                        }
                    } else if expect.starts_with(avail) {
                        // Cannot tell yet; wait, so byte-at-a-time decoding matches all-at-once.
                        return Ok(Step::NeedMore);
                    }
                }
                None
            } else {
                // A fmt 3 chunk starting a new message repeats the previous delta; after an
                // extended header it carries the 4-byte field, read as the delta (ffmpeg,
                // librtmp). librtmp's RTMP_SendPacket also sends fmt 3 for a repeated absolute
                // timestamp (meaning delta 0); like the spec, ffmpeg and SRS we read the previous
                // delta, so such a message comes out one delta late.
                let delta = match s.extended {
                    Some(_) => {
                        if buf.len() < pos + 4 {
                            return Ok(Step::NeedMore);
                        }
                        let v = be32(&buf[pos..pos + 4]);
                        pos += 4;
                        v
                    }
                    None => s.delta,
                };
                Some(Start {
                    timestamp: s.timestamp.wrapping_add(delta),
                    delta,
                    extended: s.extended.map(|_| delta),
                    length: s.length,
                    type_id: s.type_id,
                    stream_id: s.stream_id,
                })
            }
        };

        // How many payload bytes this chunk carries.
        let remaining = match (&start, prev.and_then(|s| s.partial.as_ref())) {
            (Some(st), _) => {
                if st.length > self.limits.max_message_size {
                    return Err(ChunkError::MessageTooLarge {
                        size: st.length,
                        max: self.limits.max_message_size,
                    });
                }
                st.length
            }
            // A continuation: the partial's length was validated when it started, and it holds
            // fewer bytes than that (it would have completed otherwise).
            (None, Some(p)) => p.length - p.data.len() as u32,
            (None, None) => return Err(ChunkError::NoPreviousHeader(csid)),
        };
        let n = remaining.min(self.chunk_size) as usize;
        if buf.len() < pos + n {
            return Ok(Step::NeedMore);
        }

        // The whole chunk is in `buf`: commit.
        buf.advance(pos);
        let s = self.streams.entry(csid).or_insert_with(|| InStream {
            timestamp: 0,
            delta: 0,
            length: 0,
            type_id: 0,
            stream_id: 0,
            extended: None,
            partial: None,
        });
        if let Some(st) = start {
            if let Some(old) = s.partial.take() {
                // A full header in the middle of a message. librtmp (`RTMP_ReadPacket`) drops the
                // partial message and starts over, SRS closes the connection; we do as librtmp.
                // Logged at debug: a hostile peer could otherwise flood the log chunk by chunk.
                tracing::debug!(
                    csid,
                    fmt,
                    dropped = old.data.len(),
                    "peer started a new message before finishing the previous one on this chunk stream"
                );
                self.pending -= old.data.len();
            }
            s.timestamp = st.timestamp;
            s.delta = st.delta;
            s.extended = st.extended;
            s.length = st.length;
            s.type_id = st.type_id;
            s.stream_id = st.stream_id;
            let header = MessageHeader {
                timestamp: st.timestamp,
                type_id: st.type_id,
                stream_id: st.stream_id,
            };
            if n as u32 == st.length {
                // Single-chunk message (or empty): hand out the bytes without copying.
                return Ok(Step::Message(RawMessage {
                    csid,
                    header,
                    payload: buf.split_to(n).freeze(),
                }));
            }
            let mut data = Vec::with_capacity(n);
            data.extend_from_slice(&buf[..n]);
            buf.advance(n);
            self.pending += n;
            s.partial = Some(Partial {
                header,
                length: st.length,
                data,
            });
            return Ok(Step::Continue);
        }

        let Some(p) = s.partial.as_mut() else {
            return Err(ChunkError::NoPreviousHeader(csid));
        };
        append_bounded(&mut p.data, &buf[..n], p.length as usize);
        buf.advance(n);
        self.pending += n;
        if p.data.len() < p.length as usize {
            return Ok(Step::Continue);
        }
        let Some(done) = s.partial.take() else {
            return Err(ChunkError::NoPreviousHeader(csid));
        };
        self.pending -= done.data.len();
        Ok(Step::Message(RawMessage {
            csid,
            header: done.header,
            payload: Bytes::from(done.data),
        }))
    }
}

/// Appends a chunk, growing capacity geometrically but never past the announced length: memory
/// follows the bytes the peer actually sent, not what its header claims.
fn append_bounded(data: &mut Vec<u8>, chunk: &[u8], total: usize) {
    let need = data.len() + chunk.len();
    if need > data.capacity() {
        let target = need.max(data.len().saturating_mul(2)).min(total).max(need);
        data.reserve_exact(target - data.len());
    }
    data.extend_from_slice(chunk);
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::rtmp::chunk::header::{basic_header_len, put_basic_header};
    use bytes::BufMut;

    pub(crate) fn hdr(timestamp: u32, type_id: u8, stream_id: u32) -> MessageHeader {
        MessageHeader {
            timestamp,
            type_id,
            stream_id,
        }
    }

    pub(crate) fn bh(fmt: u8, csid: u32) -> Vec<u8> {
        let mut b = BytesMut::new();
        put_basic_header(&mut b, fmt, csid);
        b.to_vec()
    }

    pub(crate) fn u24(v: u32) -> [u8; 3] {
        [(v >> 16) as u8, (v >> 8) as u8, v as u8]
    }

    /// Hand-built chunk: basic header + message header fields for `fmt` + optional extended + data.
    /// One positional argument per wire field keeps the fixtures readable as byte layouts.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn chunk(
        fmt: u8,
        csid: u32,
        ts: u32,
        len: u32,
        type_id: u8,
        sid: u32,
        ext: Option<u32>,
        data: &[u8],
    ) -> Vec<u8> {
        let mut v = bh(fmt, csid);
        if fmt < 3 {
            v.extend_from_slice(&u24(ts));
        }
        if fmt < 2 {
            v.extend_from_slice(&u24(len));
            v.push(type_id);
        }
        if fmt == 0 {
            v.extend_from_slice(&sid.to_le_bytes());
        }
        if let Some(e) = ext {
            v.extend_from_slice(&e.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    pub(crate) fn decode_all(
        dec: &mut ChunkDecoder,
        bytes: &[u8],
    ) -> Result<Vec<RawMessage>, ChunkError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = dec.decode(&mut buf)? {
            out.push(m);
        }
        Ok(out)
    }

    pub(crate) fn decode_bytewise(
        dec: &mut ChunkDecoder,
        bytes: &[u8],
    ) -> Result<Vec<RawMessage>, ChunkError> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for &b in bytes {
            buf.put_u8(b);
            while let Some(m) = dec.decode(&mut buf)? {
                out.push(m);
            }
        }
        Ok(out)
    }

    pub(crate) fn dec() -> ChunkDecoder {
        ChunkDecoder::new(ChunkLimits::default())
    }

    pub(crate) fn payload(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn basic_header_boundaries() {
        for (csid, len) in [(2, 1), (63, 1), (64, 2), (319, 2), (320, 3), (65_599, 3)] {
            let b = bh(0, csid);
            assert_eq!(b.len(), len, "csid {csid}");
            assert_eq!(basic_header_len(csid), len);
            assert_eq!(parse_basic_header(&b), Some((0, csid, len)));
            let bytes = chunk(0, csid, 5, 3, 9, 1, None, b"abc");
            let msgs = decode_all(&mut dec(), &bytes).unwrap();
            assert_eq!(msgs.len(), 1);
            assert_eq!(msgs[0].csid, csid);
            assert_eq!(&msgs[0].payload[..], b"abc");
        }
        // csid 64..319 may also arrive in the 3-byte form.
        assert_eq!(parse_basic_header(&[0x01, 0x00, 0x00]), Some((0, 64, 3)));
        assert_eq!(parse_basic_header(&[0xC1, 0xFF, 0x00]), Some((3, 319, 3)));
        assert_eq!(parse_basic_header(&[0x00]), None);
        assert_eq!(parse_basic_header(&[0x01, 0x00]), None);
        assert_eq!(parse_basic_header(&[]), None);
    }

    #[test]
    fn every_header_type() {
        let mut bytes = chunk(0, 4, 1000, 2, 8, 1, None, b"a0");
        bytes.extend(chunk(1, 4, 40, 3, 9, 0, None, b"b11"));
        bytes.extend(chunk(2, 4, 20, 0, 0, 0, None, b"c22"));
        bytes.extend(chunk(3, 4, 0, 0, 0, 0, None, b"d33"));
        let msgs = decode_all(&mut dec(), &bytes).unwrap();
        let got: Vec<_> = msgs
            .iter()
            .map(|m| (m.header.clone(), m.payload.to_vec()))
            .collect();
        assert_eq!(
            got,
            vec![
                (hdr(1000, 8, 1), b"a0".to_vec()),
                (hdr(1040, 9, 1), b"b11".to_vec()),
                (hdr(1060, 9, 1), b"c22".to_vec()),
                (hdr(1080, 9, 1), b"d33".to_vec()),
            ]
        );
    }

    #[test]
    fn fmt3_after_fmt0_uses_fmt0_timestamp_as_delta() {
        // Spec §5.3.1.2.4, ffmpeg and librtmp: the FMLE audio pattern SRS documents.
        let mut bytes = chunk(0, 4, 26, 1, 8, 1, None, b"x");
        bytes.extend(chunk(3, 4, 0, 0, 0, 0, None, b"y"));
        bytes.extend(chunk(3, 4, 0, 0, 0, 0, None, b"z"));
        let msgs = decode_all(&mut dec(), &bytes).unwrap();
        let ts: Vec<u32> = msgs.iter().map(|m| m.header.timestamp).collect();
        assert_eq!(ts, vec![26, 52, 78]);
    }

    #[test]
    fn multi_chunk_message_with_continuations() {
        let data = payload(300, 1);
        let mut bytes = chunk(0, 6, 7, 300, 9, 1, None, &data[..128]);
        bytes.extend(chunk(3, 6, 0, 0, 0, 0, None, &data[128..256]));
        bytes.extend(chunk(3, 6, 0, 0, 0, 0, None, &data[256..]));
        let msgs = decode_all(&mut dec(), &bytes).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].header, hdr(7, 9, 1));
        assert_eq!(&msgs[0].payload[..], &data[..]);
    }

    #[test]
    fn extended_timestamp_fmt0_single_chunk() {
        let ts = 0x0100_0000;
        let bytes = chunk(0, 4, EXTENDED_TIMESTAMP, 2, 8, 1, Some(ts), b"hi");
        let msgs = decode_all(&mut dec(), &bytes).unwrap();
        assert_eq!(msgs[0].header.timestamp, ts);
        assert_eq!(&msgs[0].payload[..], b"hi");
        // Exactly 0xFFFFFF goes in the extended field too.
        let bytes = chunk(0, 4, EXTENDED_TIMESTAMP, 1, 8, 1, Some(0xFF_FFFF), b"h");
        assert_eq!(
            decode_all(&mut dec(), &bytes).unwrap()[0].header.timestamp,
            0xFF_FFFF
        );
    }

    #[test]
    fn extended_timestamp_not_repeated_on_continuations() {
        let ts: u32 = 0x1234_5678;
        let data = payload(300, 2);
        assert_ne!(&data[128..132], &ts.to_be_bytes());
        let mut bytes = chunk(0, 6, EXTENDED_TIMESTAMP, 300, 9, 1, Some(ts), &data[..128]);
        bytes.extend(chunk(3, 6, 0, 0, 0, 0, None, &data[128..256]));
        bytes.extend(chunk(3, 6, 0, 0, 0, 0, None, &data[256..]));
        for msgs in [
            decode_all(&mut dec(), &bytes).unwrap(),
            decode_bytewise(&mut dec(), &bytes).unwrap(),
        ] {
            assert_eq!(msgs.len(), 1);
            assert_eq!(msgs[0].header.timestamp, ts);
            assert_eq!(&msgs[0].payload[..], &data[..]);
        }
    }

    #[test]
    fn short_continuation_without_repeated_extended_timestamp() {
        // A 2-byte last chunk that is not a prefix of the extended value is decided at once.
        let ts = 0x0200_0000;
        let data = payload(130, 9);
        let mut bytes = chunk(0, 6, EXTENDED_TIMESTAMP, 130, 9, 1, Some(ts), &data[..128]);
        bytes.extend(chunk(3, 6, 0, 0, 0, 0, None, &data[128..]));
        let msgs = decode_all(&mut dec(), &bytes).unwrap();
        assert_eq!(&msgs[0].payload[..], &data[..]);
        // One that is a prefix of it cannot be told apart yet: wait for more bytes.
        let mut data = data;
        data[128] = 0x02;
        data[129] = 0x00;
        let mut bytes = chunk(0, 6, EXTENDED_TIMESTAMP, 130, 9, 1, Some(ts), &data[..128]);
        bytes.extend(chunk(3, 6, 0, 0, 0, 0, None, &data[128..]));
        let mut d = dec();
        let mut buf = BytesMut::from(&bytes[..]);
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        assert_eq!(buf.len(), 3);
        // The next chunk's bytes settle it.
        buf.extend_from_slice(&chunk(0, 4, 0, 1, 8, 1, None, b"n"));
        let m = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(&m.payload[..], &data[..]);
        assert_eq!(&d.decode(&mut buf).unwrap().unwrap().payload[..], b"n");
    }

    #[test]
    fn extended_delta_on_fmt1_and_fmt3_new_message() {
        let base = 0x0100_0000;
        let delta = 0x0100_0000;
        let mut bytes = chunk(0, 4, 5, 1, 8, 1, None, b"a");
        bytes.extend(chunk(1, 4, EXTENDED_TIMESTAMP, 1, 8, 0, Some(base), b"b"));
        // fmt 3 starting a new message after an extended header carries the 4 bytes.
        bytes.extend(chunk(3, 4, 0, 0, 0, 0, Some(delta), b"c"));
        // A small fmt 2 delta clears the extended state.
        bytes.extend(chunk(2, 4, 10, 0, 0, 0, None, b"d"));
        bytes.extend(chunk(3, 4, 0, 0, 0, 0, None, b"e"));
        let msgs = decode_all(&mut dec(), &bytes).unwrap();
        let ts: Vec<u32> = msgs.iter().map(|m| m.header.timestamp).collect();
        assert_eq!(
            ts,
            vec![
                5,
                5 + base,
                5 + base + delta,
                15 + base + delta,
                25 + base + delta
            ]
        );
        let payloads: Vec<&[u8]> = msgs.iter().map(|m| &m.payload[..]).collect();
        assert_eq!(payloads, vec![b"a", b"b", b"c", b"d", b"e"]);
    }

    #[test]
    fn set_chunk_size_applies_to_partial_message() {
        let data = payload(300, 5);
        let mut bytes = chunk(0, 6, 0, 300, 9, 1, None, &data[..128]);
        bytes.extend(chunk(0, 4, 0, 1, 8, 1, None, b"a"));
        bytes.extend(chunk(3, 6, 0, 0, 0, 0, None, &data[128..]));
        let mut d = dec();
        let mut buf = BytesMut::from(&bytes[..]);
        assert_eq!(&d.decode(&mut buf).unwrap().unwrap().payload[..], b"a");
        assert_eq!(d.pending_bytes(), 128);
        d.set_chunk_size(1000).unwrap();
        assert_eq!(&d.decode(&mut buf).unwrap().unwrap().payload[..], &data[..]);
        assert_eq!(d.pending_bytes(), 0);
    }

    #[test]
    fn set_chunk_size_validation() {
        let mut d = ChunkDecoder::new(ChunkLimits {
            max_chunk_size: 65_536,
            ..ChunkLimits::default()
        });
        assert_eq!(d.set_chunk_size(0), Err(ChunkError::ChunkSizeInvalid(0)));
        assert_eq!(
            d.set_chunk_size(0x8000_0000),
            Err(ChunkError::ChunkSizeInvalid(0x8000_0000))
        );
        assert_eq!(
            d.set_chunk_size(65_537),
            Err(ChunkError::ChunkSizeTooLarge {
                size: 65_537,
                max: 65_536
            })
        );
        assert_eq!(d.chunk_size(), DEFAULT_CHUNK_SIZE);
        d.set_chunk_size(1).unwrap();
        assert_eq!(d.chunk_size(), 1);
        d.set_chunk_size(65_536).unwrap();
        assert_eq!(d.chunk_size(), 65_536);
    }

    #[test]
    fn abort_drops_partial_message() {
        let data = payload(300, 6);
        let mut bytes = chunk(0, 6, 100, 300, 9, 1, None, &data[..128]);
        bytes.extend(chunk(0, 4, 0, 1, 8, 1, None, b"a"));
        let mut d = dec();
        let mut buf = BytesMut::from(&bytes[..]);
        assert_eq!(&d.decode(&mut buf).unwrap().unwrap().payload[..], b"a");
        assert_eq!(d.pending_bytes(), 128);
        d.abort(6);
        d.abort(77); // unknown csid: nothing to do
        assert_eq!(d.pending_bytes(), 0);
        // After an abort a fmt 3 chunk starts a new message with the old header (delta 100).
        buf.extend_from_slice(&chunk(3, 6, 0, 0, 0, 0, None, &data[..128]));
        buf.extend_from_slice(&chunk(3, 6, 0, 0, 0, 0, None, &data[128..256]));
        buf.extend_from_slice(&chunk(3, 6, 0, 0, 0, 0, None, &data[256..]));
        let m = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(m.header, hdr(200, 9, 1));
        assert_eq!(&m.payload[..], &data[..]);
    }

    #[test]
    fn new_header_mid_message_drops_partial() {
        let data = payload(300, 7);
        let mut bytes = chunk(0, 6, 0, 300, 9, 1, None, &data[..128]);
        bytes.extend(chunk(1, 6, 40, 2, 8, 0, None, b"ok"));
        let mut d = dec();
        let msgs = decode_all(&mut d, &bytes).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].header, hdr(40, 8, 1));
        assert_eq!(&msgs[0].payload[..], b"ok");
        assert_eq!(d.pending_bytes(), 0);
    }

    #[test]
    fn chunk_stream_flood() {
        let mut bytes = Vec::new();
        for csid in 3..3 + 64 {
            bytes.extend(chunk(0, csid, 0, 1, 8, 1, None, b"x"));
        }
        let mut d = dec();
        assert_eq!(decode_all(&mut d, &bytes).unwrap().len(), 64);
        assert_eq!(d.chunk_streams(), 64);
        // Known chunk streams keep working; a 65th is refused.
        assert_eq!(
            decode_all(&mut d, &chunk(3, 3, 0, 0, 0, 0, None, b"y"))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            decode_all(&mut d, &chunk(0, 100, 0, 1, 8, 1, None, b"x")),
            Err(ChunkError::TooManyChunkStreams(64))
        );
    }

    #[test]
    fn oversized_message_is_refused_before_its_payload_arrives() {
        let mut d = ChunkDecoder::new(ChunkLimits {
            max_message_size: 1000,
            ..ChunkLimits::default()
        });
        let bytes = chunk(0, 4, 0, 1001, 9, 1, None, b"");
        assert_eq!(
            decode_all(&mut d, &bytes),
            Err(ChunkError::MessageTooLarge {
                size: 1001,
                max: 1000
            })
        );
        let mut d = ChunkDecoder::new(ChunkLimits {
            max_message_size: 1000,
            ..ChunkLimits::default()
        });
        assert_eq!(
            decode_all(&mut d, &chunk(0, 4, 0, 1000, 9, 1, None, b"")).unwrap(),
            vec![]
        );
    }

    #[test]
    fn compressed_header_on_unknown_chunk_stream() {
        assert_eq!(
            decode_all(&mut dec(), &chunk(2, 5, 0, 0, 0, 0, None, b"")),
            Err(ChunkError::NoPreviousHeader(5))
        );
        assert_eq!(
            decode_all(&mut dec(), &chunk(3, 5, 0, 0, 0, 0, None, b"")),
            Err(ChunkError::NoPreviousHeader(5))
        );
        // librtmp's ping response: fmt 1 on a fresh csid 2 (what SRS documents).
        let ping = [0x00, 0x07, 0x00, 0x00, 0x0d, 0x0f];
        let msgs = decode_all(&mut dec(), &chunk(1, 2, 0, 6, 4, 0, None, &ping)).unwrap();
        assert_eq!(msgs[0].header, hdr(0, 4, 0));
        assert_eq!(&msgs[0].payload[..], &ping);
    }

    #[test]
    fn incomplete_chunk_leaves_buffer_untouched() {
        let data = payload(200, 8);
        let mut bytes = chunk(0, 6, 0, 200, 9, 1, None, &data[..128]);
        bytes.extend(chunk(3, 6, 0, 0, 0, 0, None, &data[128..]));
        for cut in 0..bytes.len() {
            let mut d = dec();
            let mut buf = BytesMut::from(&bytes[..cut]);
            let res = d.decode(&mut buf).unwrap();
            assert_eq!(res, None);
            // Only whole chunks are consumed: the first chunk is 140 bytes.
            let consumed = if cut >= 140 { 140 } else { 0 };
            assert_eq!(&buf[..], &bytes[consumed..cut], "cut {cut}");
        }
    }

    #[test]
    fn single_chunk_payload_is_not_copied() {
        let bytes = chunk(0, 4, 0, 5, 8, 1, None, b"hello");
        let mut buf = BytesMut::from(&bytes[..]);
        let base = buf.as_ptr() as usize;
        let m = dec().decode(&mut buf).unwrap().unwrap();
        assert_eq!(m.payload.as_ptr() as usize, base + 12);
    }
}
