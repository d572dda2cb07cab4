//! RTMP chunk stream (spec §5.3): reassembles peer chunks into messages and splits ours into chunks.
//! Sans-IO and bounded by [`ChunkLimits`]; tolerant of the header quirks of ffmpeg, librtmp and FMLE.

use std::collections::HashMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Chunk size both directions start with (spec §5.4.1).
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// Largest chunk size the spec allows: the top bit of Set Chunk Size must be zero.
pub const MAX_SPEC_CHUNK_SIZE: u32 = 0x7FFF_FFFF;
/// Largest message length the 24-bit length field can carry.
pub const MAX_MESSAGE_LENGTH: u32 = 0xFF_FFFF;
/// Chunk stream 2 carries protocol control messages.
pub const CONTROL_CSID: u32 = 2;
/// Smallest chunk stream id a chunk can carry (0 and 1 select the 2- and 3-byte basic headers).
pub const MIN_CSID: u32 = 2;
/// Largest chunk stream id: 64 + 0xFFFF in the 3-byte basic header.
pub const MAX_CSID: u32 = 65_599;
/// Largest chunk header: 3-byte basic header + 11-byte type 0 header + 4-byte extended timestamp.
pub const MAX_CHUNK_HEADER_LEN: usize = 18;

/// A timestamp field of this value means "the real value is in the 4-byte extended timestamp".
const EXTENDED_TIMESTAMP: u32 = 0xFF_FFFF;
/// Message header length for fmt 0, 1, 2, 3.
const MESSAGE_HEADER_LEN: [usize; 4] = [11, 7, 3, 0];

/// The part of a message header that survives chunking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageHeader {
    /// Absolute timestamp in milliseconds; wraps modulo 2^32.
    pub timestamp: u32,
    pub type_id: u8,
    /// Message stream id (little-endian on the wire).
    pub stream_id: u32,
}

/// One reassembled message and the chunk stream it arrived on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    pub csid: u32,
    pub header: MessageHeader,
    pub payload: Bytes,
}

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

/// Parses a basic header: `(fmt, csid, length)`, or `None` when `buf` is too short.
fn parse_basic_header(buf: &[u8]) -> Option<(u8, u32, usize)> {
    let b0 = *buf.first()?;
    let fmt = b0 >> 6;
    match b0 & 0x3F {
        0 => Some((fmt, 64 + u32::from(*buf.get(1)?), 2)),
        1 => {
            let lo = u32::from(*buf.get(1)?);
            let hi = u32::from(*buf.get(2)?);
            Some((fmt, 64 + lo + (hi << 8), 3))
        }
        id => Some((fmt, u32::from(id), 1)),
    }
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

/// What the encoder remembers per chunk stream id (what the peer's decoder will remember).
#[derive(Debug, Clone)]
struct OutStream {
    timestamp: u32,
    /// `Some(d)` only when the last header was fmt 1/2/3 with a non-extended delta `d`. After a
    /// fmt 0 header we never send fmt 3 for a new message: the spec makes its delta the fmt 0
    /// timestamp, which not every decoder implements, and it saves only 3 bytes.
    delta: Option<u32>,
    length: u32,
    type_id: u8,
    stream_id: u32,
}

/// Splits our messages into chunks with header compression.
#[derive(Debug)]
pub struct ChunkEncoder {
    chunk_size: u32,
    streams: HashMap<u32, OutStream>,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkEncoder {
    /// Chunk size 128.
    pub fn new() -> Self {
        ChunkEncoder {
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: HashMap::new(),
        }
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Sets the size used for messages encoded after this call (the caller sends the SetChunkSize
    /// message itself, first). Clamped to 1..=0x7FFF_FFFF.
    pub fn set_chunk_size(&mut self, size: u32) {
        self.chunk_size = size.clamp(1, MAX_SPEC_CHUNK_SIZE);
    }

    /// Forgets the header state of `csid`, so its next message gets a fmt 0 header. Call it when
    /// something else (e.g. [`encode_standalone`]) wrote a message on a chunk stream this encoder
    /// also uses.
    pub fn reset_csid(&mut self, csid: u32) {
        self.streams.remove(&csid);
    }

    /// Encodes one message; uses header compression (fmt 1/2/3) against the previous message on
    /// the same csid where valid. Like ffmpeg's `ff_rtmp_packet_write`, a timestamp going
    /// backwards (or wrapping) or a delta needing the extended field gets a fmt 0 header: SRS reads
    /// an extended fmt 1/2 field as absolute, so deltas there would not decode everywhere.
    ///
    /// `csid` must be in 2..=65599 and `payload` at most 0xFFFFFF bytes: these are caller bugs;
    /// they panic in debug builds and write nothing in release builds.
    pub fn encode(
        &mut self,
        csid: u32,
        header: &MessageHeader,
        payload: &[u8],
        out: &mut BytesMut,
    ) {
        if !valid_output(csid, payload) {
            return;
        }
        let length = payload.len() as u32;
        let (fmt, field) = match self.streams.get(&csid) {
            Some(p) if p.stream_id == header.stream_id && header.timestamp >= p.timestamp => {
                let delta = header.timestamp - p.timestamp;
                if delta >= EXTENDED_TIMESTAMP {
                    (0, header.timestamp)
                } else if p.length != length || p.type_id != header.type_id {
                    (1, delta)
                } else if p.delta == Some(delta) {
                    (3, delta)
                } else {
                    (2, delta)
                }
            }
            _ => (0, header.timestamp),
        };
        write_chunks(fmt, csid, header, field, payload, self.chunk_size, out);
        self.streams.insert(
            csid,
            OutStream {
                timestamp: header.timestamp,
                delta: (fmt != 0).then_some(field),
                length,
                type_id: header.type_id,
                stream_id: header.stream_id,
            },
        );
    }
}

/// Stateless encoding used by the fan-out path: first chunk fmt 0 (absolute timestamp),
/// continuations fmt 3 (with the extended timestamp repeated on them when used, as ffmpeg and
/// librtmp expect). The result can be shared by many connections with the same chunk size as long
/// as the preceding message on this csid was also written by this function (or the connection's
/// [`ChunkEncoder::reset_csid`] is called for it).
///
/// Same caller contract as [`ChunkEncoder::encode`]; `chunk_size` 0 is treated as 1.
pub fn encode_standalone(
    csid: u32,
    header: &MessageHeader,
    payload: &[u8],
    chunk_size: u32,
    out: &mut BytesMut,
) {
    if !valid_output(csid, payload) {
        return;
    }
    let chunk_size = chunk_size.clamp(1, MAX_SPEC_CHUNK_SIZE);
    write_chunks(0, csid, header, header.timestamp, payload, chunk_size, out);
}

fn valid_output(csid: u32, payload: &[u8]) -> bool {
    let ok_csid = (MIN_CSID..=MAX_CSID).contains(&csid);
    let ok_len = payload.len() <= MAX_MESSAGE_LENGTH as usize;
    debug_assert!(ok_csid, "chunk stream id {csid} outside 2..=65599");
    debug_assert!(ok_len, "message of {} bytes exceeds 24 bits", payload.len());
    if !(ok_csid && ok_len) {
        tracing::error!(
            csid,
            len = payload.len(),
            "refusing to encode: bad chunk stream id or message length"
        );
    }
    ok_csid && ok_len
}

fn basic_header_len(csid: u32) -> usize {
    match csid {
        0..=63 => 1,
        64..=319 => 2,
        _ => 3,
    }
}

fn put_basic_header(out: &mut BytesMut, fmt: u8, csid: u32) {
    let f = fmt << 6;
    match csid {
        0..=63 => out.put_u8(f | csid as u8),
        64..=319 => {
            out.put_u8(f);
            out.put_u8((csid - 64) as u8);
        }
        _ => {
            out.put_u8(f | 1);
            out.put_u16_le((csid - 64) as u16);
        }
    }
}

fn put_u24(out: &mut BytesMut, v: u32) {
    out.put_u8((v >> 16) as u8);
    out.put_u8((v >> 8) as u8);
    out.put_u8(v as u8);
}

/// Writes a message as chunks. `field` is the timestamp (fmt 0) or delta (fmt 1/2/3) the header
/// stands for; the encoder only hands fmt 1/2/3 deltas below 0xFFFFFF.
fn write_chunks(
    fmt: u8,
    csid: u32,
    header: &MessageHeader,
    field: u32,
    payload: &[u8],
    chunk_size: u32,
    out: &mut BytesMut,
) {
    let extended = field >= EXTENDED_TIMESTAMP && fmt != 3;
    let ext_len = if extended { 4 } else { 0 };
    let bh = basic_header_len(csid);
    let cs = chunk_size as usize;
    let continuations = payload.len().saturating_sub(1) / cs;
    out.reserve(
        bh + MESSAGE_HEADER_LEN[usize::from(fmt)]
            + ext_len
            + payload.len()
            + continuations * (bh + ext_len),
    );

    put_basic_header(out, fmt, csid);
    if fmt < 3 {
        put_u24(out, field.min(EXTENDED_TIMESTAMP));
    }
    if fmt < 2 {
        put_u24(out, payload.len() as u32);
        out.put_u8(header.type_id);
    }
    if fmt == 0 {
        out.put_u32_le(header.stream_id);
    }
    if extended {
        out.put_u32(field);
    }
    let mut chunks = payload.chunks(cs);
    if let Some(first) = chunks.next() {
        out.put_slice(first);
    }
    for chunk in chunks {
        put_basic_header(out, 3, csid);
        if extended {
            // Repeated on continuations, as ffmpeg, librtmp and (per SRS's notes) Flash/FMLE/FMS
            // write and read it.
            out.put_u32(field);
        }
        out.put_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hdr(timestamp: u32, type_id: u8, stream_id: u32) -> MessageHeader {
        MessageHeader {
            timestamp,
            type_id,
            stream_id,
        }
    }

    fn bh(fmt: u8, csid: u32) -> Vec<u8> {
        let mut b = BytesMut::new();
        put_basic_header(&mut b, fmt, csid);
        b.to_vec()
    }

    fn u24(v: u32) -> [u8; 3] {
        [(v >> 16) as u8, (v >> 8) as u8, v as u8]
    }

    /// Hand-built chunk: basic header + message header fields for `fmt` + optional extended + data.
    /// One positional argument per wire field keeps the fixtures readable as byte layouts.
    #[allow(clippy::too_many_arguments)]
    fn chunk(
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

    fn decode_all(dec: &mut ChunkDecoder, bytes: &[u8]) -> Result<Vec<RawMessage>, ChunkError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = dec.decode(&mut buf)? {
            out.push(m);
        }
        Ok(out)
    }

    fn decode_bytewise(
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

    fn dec() -> ChunkDecoder {
        ChunkDecoder::new(ChunkLimits::default())
    }

    fn payload(n: usize, seed: u8) -> Vec<u8> {
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
    fn chunk_sizes_and_message_sizes_round_trip() {
        for cs in [1u32, 128, 4096] {
            let c = cs as usize;
            let mut sizes = vec![0, 1, 2];
            for k in 1..=3 {
                sizes.extend([k * c - 1, k * c, k * c + 1]);
            }
            for size in sizes {
                let mut enc = ChunkEncoder::new();
                enc.set_chunk_size(cs);
                let mut d = dec();
                d.set_chunk_size(cs).unwrap();
                let data = payload(size, 3);
                let mut out = BytesMut::new();
                enc.encode(5, &hdr(10, 9, 1), &data, &mut out);
                // 1-byte basic header + 11-byte header, one more byte per extra chunk.
                let chunks = size.div_ceil(c).max(1);
                assert_eq!(out.len(), 12 + size + (chunks - 1), "cs {cs} size {size}");
                let msgs = decode_all(&mut d, &out).unwrap();
                assert_eq!(msgs.len(), 1, "cs {cs} size {size}");
                assert_eq!(&msgs[0].payload[..], &data[..]);
                assert_eq!(d.pending_bytes(), 0);
            }
        }
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
    fn extended_timestamp_repeated_on_continuations() {
        // ffmpeg / librtmp / FMS layout.
        let ts = 0x1234_5678;
        let data = payload(300, 2);
        let mut bytes = chunk(0, 6, EXTENDED_TIMESTAMP, 300, 9, 1, Some(ts), &data[..128]);
        bytes.extend(chunk(3, 6, 0, 0, 0, 0, Some(ts), &data[128..256]));
        bytes.extend(chunk(3, 6, 0, 0, 0, 0, Some(ts), &data[256..]));
        for msgs in [
            decode_all(&mut dec(), &bytes).unwrap(),
            decode_bytewise(&mut dec(), &bytes).unwrap(),
        ] {
            assert_eq!(msgs.len(), 1);
            assert_eq!(msgs[0].header.timestamp, ts);
            assert_eq!(&msgs[0].payload[..], &data[..]);
        }
        // Our encoder writes the same bytes.
        let mut out = BytesMut::new();
        ChunkEncoder::new().encode(6, &hdr(ts, 9, 1), &data, &mut out);
        assert_eq!(&out[..], &bytes[..]);
        let mut out = BytesMut::new();
        encode_standalone(6, &hdr(ts, 9, 1), &data, 128, &mut out);
        assert_eq!(&out[..], &bytes[..]);
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
    fn timestamp_wraps() {
        let mut bytes = chunk(0, 4, EXTENDED_TIMESTAMP, 1, 8, 1, Some(0xFFFF_FFF0), b"a");
        bytes.extend(chunk(1, 4, 0x20, 1, 8, 0, None, b"b"));
        bytes.extend(chunk(3, 4, 0, 0, 0, 0, None, b"c"));
        let msgs = decode_all(&mut dec(), &bytes).unwrap();
        let ts: Vec<u32> = msgs.iter().map(|m| m.header.timestamp).collect();
        assert_eq!(ts, vec![0xFFFF_FFF0, 0x10, 0x30]);

        // The encoder falls back to fmt 0 when the timestamp wraps; it still decodes.
        let mut enc = ChunkEncoder::new();
        let mut out = BytesMut::new();
        enc.encode(4, &hdr(0xFFFF_FFF0, 8, 1), b"a", &mut out);
        let second = out.len();
        enc.encode(4, &hdr(0x10, 8, 1), b"b", &mut out);
        assert_eq!(out[second] >> 6, 0);
        let msgs = decode_all(&mut dec(), &out).unwrap();
        assert_eq!(msgs[1].header.timestamp, 0x10);
    }

    #[test]
    fn set_chunk_size_mid_stream() {
        let big = payload(300, 4);
        let mut enc = ChunkEncoder::new();
        let mut out = BytesMut::new();
        enc.encode(3, &hdr(0, 20, 0), &big, &mut out);
        enc.set_chunk_size(4096);
        enc.encode(3, &hdr(0, 20, 0), &big, &mut out);
        let mut d = dec();
        let mut buf = out;
        let first = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(&first.payload[..], &big[..]);
        // Without the Set Chunk Size, the rest would be misread.
        d.set_chunk_size(4096).unwrap();
        let second = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(&second.payload[..], &big[..]);
        assert!(buf.is_empty());
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
    fn empty_messages_complete_immediately() {
        let mut bytes = chunk(0, 4, 1, 0, 18, 1, None, b"");
        bytes.extend(chunk(3, 4, 0, 0, 0, 0, None, b""));
        let msgs = decode_all(&mut dec(), &bytes).unwrap();
        assert_eq!(msgs.len(), 2);
        assert!(msgs.iter().all(|m| m.payload.is_empty()));
        assert_eq!(msgs[1].header.timestamp, 2);
        let mut out = BytesMut::new();
        ChunkEncoder::new().encode(4, &hdr(1, 18, 1), b"", &mut out);
        assert_eq!(out.len(), 12);
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

    #[test]
    fn bytewise_equals_all_at_once() {
        let mut enc = ChunkEncoder::new();
        enc.set_chunk_size(50);
        let mut out = BytesMut::new();
        let mut t = 0u32;
        for i in 0..40u32 {
            t = t.wrapping_add([0, 33, 40, 0x0100_0000][i as usize % 4]);
            let csid = [3, 4, 64, 320][i as usize % 4];
            let size = [0usize, 10, 50, 51, 170][i as usize % 5];
            let data = payload(size, i as u8);
            enc.encode(csid, &hdr(t, 8 + (i % 2) as u8, 1), &data, &mut out);
        }
        encode_standalone(7, &hdr(0x0300_0000, 9, 1), &payload(120, 1), 50, &mut out);
        let mut a = dec();
        a.set_chunk_size(50).unwrap();
        let mut b = dec();
        b.set_chunk_size(50).unwrap();
        let all = decode_all(&mut a, &out).unwrap();
        assert_eq!(all.len(), 41);
        assert_eq!(all, decode_bytewise(&mut b, &out).unwrap());
    }

    #[test]
    fn encoder_header_compression() {
        let mut enc = ChunkEncoder::new();
        let mut out = BytesMut::new();
        let mut fmts = Vec::new();
        let mut push = |enc: &mut ChunkEncoder, h: MessageHeader, len: usize| {
            let at = out.len();
            enc.encode(4, &h, &vec![0u8; len], &mut out);
            fmts.push(out[at] >> 6);
        };
        push(&mut enc, hdr(100, 8, 1), 10); // first: fmt 0
        push(&mut enc, hdr(200, 8, 1), 10); // same len/type, delta 100 == fmt 0 ts: still fmt 2
        push(&mut enc, hdr(300, 8, 1), 10); // same delta: fmt 3
        push(&mut enc, hdr(320, 8, 1), 11); // new length: fmt 1
        push(&mut enc, hdr(340, 9, 1), 11); // new type: fmt 1
        push(&mut enc, hdr(360, 9, 1), 11); // same delta: fmt 3
        push(&mut enc, hdr(350, 9, 1), 11); // backwards: fmt 0
        push(&mut enc, hdr(360, 9, 2), 11); // new stream id: fmt 0
        push(&mut enc, hdr(360 + 0x0100_0000, 9, 2), 11); // extended delta: fmt 0
        push(&mut enc, hdr(370 + 0x0100_0000, 9, 2), 11); // small delta after: fmt 2
        assert_eq!(fmts, vec![0, 2, 3, 1, 1, 3, 0, 0, 0, 2]);
        let msgs = decode_all(&mut dec(), &out).unwrap();
        let ts: Vec<u32> = msgs.iter().map(|m| m.header.timestamp).collect();
        assert_eq!(
            ts,
            vec![
                100,
                200,
                300,
                320,
                340,
                360,
                350,
                360,
                360 + 0x0100_0000,
                370 + 0x0100_0000
            ]
        );
        assert_eq!(msgs[7].header.stream_id, 2);
        // reset_csid forces a full header again.
        let at = out.len();
        enc.reset_csid(4);
        enc.encode(4, &hdr(380 + 0x0100_0000, 9, 2), &[0; 11], &mut out);
        assert_eq!(out[at] >> 6, 0);
    }

    #[test]
    fn standalone_interleaved_with_encoder_output() {
        let mut enc = ChunkEncoder::new();
        enc.set_chunk_size(100);
        let mut out = BytesMut::new();
        let media = payload(250, 3);
        let mut expected = Vec::new();
        for i in 0..6u32 {
            let h = hdr(i * 40, 20, 0);
            enc.encode(3, &h, b"cmd", &mut out);
            expected.push((3, h, b"cmd".to_vec()));
            let h = hdr(i * 40 + 0x00FF_FFF0, 9, 1);
            encode_standalone(6, &h, &media, 100, &mut out);
            expected.push((6, h, media.clone()));
            let h = hdr(i * 23, 8, 1);
            encode_standalone(320, &h, &media[..30], 100, &mut out);
            expected.push((320, h, media[..30].to_vec()));
        }
        let mut d = dec();
        d.set_chunk_size(100).unwrap();
        let got: Vec<_> = decode_all(&mut d, &out)
            .unwrap()
            .into_iter()
            .map(|m| (m.csid, m.header, m.payload.to_vec()))
            .collect();
        assert_eq!(got, expected);
    }

    /// AMF0 string without the type marker.
    fn amf_key(v: &mut Vec<u8>, s: &str) {
        v.extend_from_slice(&(s.len() as u16).to_be_bytes());
        v.extend_from_slice(s.as_bytes());
    }

    fn amf_string(v: &mut Vec<u8>, s: &str) {
        v.push(0x02);
        amf_key(v, s);
    }

    #[test]
    fn ffmpeg_connect_fixture() {
        // The connect command ffmpeg's gen_connect builds for a publisher, written as
        // ff_rtmp_packet_write does on a fresh RTMP_SYSTEM_CHANNEL (csid 3): fmt 0 header with
        // timestamp 0 and stream id 0, 128-byte chunks, 0xC3 continuation markers.
        let mut body = Vec::new();
        amf_string(&mut body, "connect");
        body.push(0x00);
        body.extend_from_slice(&1.0f64.to_be_bytes());
        body.push(0x03);
        amf_key(&mut body, "app");
        amf_string(&mut body, "live");
        amf_key(&mut body, "type");
        amf_string(&mut body, "nonprivate");
        amf_key(&mut body, "flashVer");
        amf_string(&mut body, "FMLE/3.0 (compatible; Lavf61.7.100)");
        amf_key(&mut body, "tcUrl");
        amf_string(&mut body, "rtmp://127.0.0.1:1935/live");
        body.extend_from_slice(&[0x00, 0x00, 0x09]);
        assert!(body.len() > 128 && body.len() <= 256);

        let mut wire = vec![0x03, 0x00, 0x00, 0x00];
        wire.extend_from_slice(&u24(body.len() as u32));
        wire.push(0x14);
        wire.extend_from_slice(&[0, 0, 0, 0]);
        wire.extend_from_slice(&body[..128]);
        wire.push(0xC3);
        wire.extend_from_slice(&body[128..]);

        let msgs = decode_all(&mut dec(), &wire).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].csid, 3);
        assert_eq!(msgs[0].header, hdr(0, 20, 0));
        assert_eq!(&msgs[0].payload[..], &body[..]);
        assert_eq!(decode_bytewise(&mut dec(), &wire).unwrap(), msgs);

        // And our encoder produces the identical bytes.
        let mut out = BytesMut::new();
        ChunkEncoder::new().encode(3, &hdr(0, 20, 0), &body, &mut out);
        assert_eq!(&out[..], &wire[..]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Msg {
            csid: u32,
            dt: u32,
            type_id: u8,
            stream_id: u32,
            len: usize,
            standalone: bool,
        },
        ChunkSize(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        let csid = prop_oneof![
            Just(2u32),
            Just(3),
            Just(63),
            Just(64),
            Just(319),
            Just(320),
            Just(65_599),
            2u32..400,
        ];
        let dt = prop_oneof![
            Just(0u32),
            0u32..100,
            Just(0xFF_FFFF),
            0x00FF_FFF0u32..0x0100_0010,
            any::<u32>(),
        ];
        prop_oneof![
            8 => (csid, dt, prop_oneof![Just(8u8), Just(9), Just(20)], 0u32..3, 0usize..700, any::<bool>())
                .prop_map(|(csid, dt, type_id, stream_id, len, standalone)| Op::Msg {
                    csid, dt, type_id, stream_id, len, standalone
                }),
            1 => prop_oneof![Just(1u32), 2u32..300, Just(128), Just(4096)].prop_map(Op::ChunkSize),
        ]
    }

    proptest! {
        #[test]
        fn prop_round_trip(ops in proptest::collection::vec(op(), 1..40), split in any::<u64>()) {
            let mut enc = ChunkEncoder::new();
            let mut d = dec();
            let mut d2 = dec();
            let mut wire = BytesMut::new();
            let mut stream = BytesMut::new();
            let mut got = Vec::new();
            let mut expected = Vec::new();
            let mut clock: HashMap<u32, u32> = HashMap::new();
            let mut seed = split;
            for (i, op) in ops.iter().enumerate() {
                match op {
                    Op::ChunkSize(cs) => {
                        // The sender changes its size after all it wrote before is read.
                        enc.set_chunk_size(*cs);
                        while let Some(m) = d.decode(&mut wire).unwrap() {
                            got.push(m);
                        }
                        prop_assert!(wire.is_empty());
                        d.set_chunk_size(*cs).unwrap();
                        stream.extend_from_slice(&[0xFF]); // marker for the byte-split replay
                        stream.extend_from_slice(&cs.to_be_bytes());
                    }
                    Op::Msg { csid, dt, type_id, stream_id, len, standalone } => {
                        let t = clock.entry(*csid).or_insert(0);
                        *t = t.wrapping_add(*dt);
                        let h = hdr(*t, *type_id, *stream_id);
                        let data = payload(*len, i as u8);
                        let mut out = BytesMut::new();
                        if *standalone {
                            encode_standalone(*csid, &h, &data, enc.chunk_size(), &mut out);
                            enc.reset_csid(*csid);
                        } else {
                            enc.encode(*csid, &h, &data, &mut out);
                        }
                        stream.extend_from_slice(&[0x00]);
                        stream.extend_from_slice(&(out.len() as u32).to_be_bytes());
                        stream.extend_from_slice(&out);
                        wire.extend_from_slice(&out);
                        expected.push(RawMessage { csid: *csid, header: h, payload: Bytes::from(data) });
                        // Feed in random pieces.
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        if seed >> 60 != 0 {
                            while let Some(m) = d.decode(&mut wire).unwrap() {
                                got.push(m);
                            }
                        }
                    }
                }
            }
            while let Some(m) = d.decode(&mut wire).unwrap() {
                got.push(m);
            }
            prop_assert!(wire.is_empty());
            prop_assert_eq!(d.pending_bytes(), 0);
            prop_assert_eq!(&got, &expected);

            // Replay byte by byte.
            let mut got2 = Vec::new();
            let mut rd = &stream[..];
            let mut buf = BytesMut::new();
            while !rd.is_empty() {
                let tag = rd.get_u8();
                let n = rd.get_u32() as usize;
                if tag == 0xFF {
                    d2.set_chunk_size(n as u32).unwrap();
                    continue;
                }
                for &b in &rd[..n] {
                    buf.put_u8(b);
                    while let Some(m) = d2.decode(&mut buf).unwrap() {
                        got2.push(m);
                    }
                }
                rd.advance(n);
            }
            prop_assert_eq!(&got2, &expected);
        }

        #[test]
        fn prop_arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
            cs in prop_oneof![Just(1u32), 1u32..300],
            piece in 1usize..64,
        ) {
            let mut d = ChunkDecoder::new(ChunkLimits {
                max_message_size: 4096,
                max_chunk_size: 4096,
                max_chunk_streams: 8,
            });
            d.set_chunk_size(cs).unwrap();
            let mut buf = BytesMut::new();
            'outer: for p in bytes.chunks(piece) {
                buf.extend_from_slice(p);
                loop {
                    match d.decode(&mut buf) {
                        Ok(Some(m)) => prop_assert!(m.payload.len() <= 4096),
                        Ok(None) => break,
                        Err(_) => break 'outer,
                    }
                }
            }
            prop_assert!(d.pending_bytes() <= 8 * 4096);
        }

        #[test]
        fn prop_mutated_streams_never_panic(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        ) {
            let mut enc = ChunkEncoder::new();
            enc.set_chunk_size(16);
            let mut out = BytesMut::new();
            for i in 0..10u32 {
                enc.encode(3 + i % 3, &hdr(i * 0x0080_0000, 9, 1), &payload(40, i as u8), &mut out);
            }
            for (at, v) in flips {
                let n = out.len();
                out[at % n] = v;
            }
            let mut d = dec();
            d.set_chunk_size(16).unwrap();
            let _ = decode_all(&mut d, &out);
        }
    }
}
