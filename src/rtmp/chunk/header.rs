//! The chunk header format both directions share (spec §5.3.1): limits of the fields, the
//! basic header's three forms, message header lengths and the extended timestamp marker.

use bytes::{BufMut, Bytes, BytesMut};

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
pub(super) const EXTENDED_TIMESTAMP: u32 = 0xFF_FFFF;
/// Message header length for fmt 0, 1, 2, 3.
pub(super) const MESSAGE_HEADER_LEN: [usize; 4] = [11, 7, 3, 0];

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

/// Parses a basic header: `(fmt, csid, length)`, or `None` when `buf` is too short.
pub(super) fn parse_basic_header(buf: &[u8]) -> Option<(u8, u32, usize)> {
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

pub(super) fn basic_header_len(csid: u32) -> usize {
    match csid {
        0..=63 => 1,
        64..=319 => 2,
        _ => 3,
    }
}

pub(super) fn put_basic_header(out: &mut BytesMut, fmt: u8, csid: u32) {
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

pub(super) fn put_u24(out: &mut BytesMut, v: u32) {
    out.put_u8((v >> 16) as u8);
    out.put_u8((v >> 8) as u8);
    out.put_u8(v as u8);
}
