//! The chunk encoder: splits our messages into chunks, with header compression per chunk stream
//! ([`ChunkEncoder`]) or without state for bytes many connections share ([`encode_standalone`]).

use std::collections::HashMap;

use bytes::{BufMut, BytesMut};

use super::header::{
    DEFAULT_CHUNK_SIZE, EXTENDED_TIMESTAMP, MAX_CSID, MAX_MESSAGE_LENGTH, MAX_SPEC_CHUNK_SIZE,
    MESSAGE_HEADER_LEN, MIN_CSID, MessageHeader, basic_header_len, put_basic_header, put_u24,
};

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
