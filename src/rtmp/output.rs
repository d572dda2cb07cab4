//! The outgoing half of an RTMP endpoint, shared by the server [`super::Session`] and the client
//! [`super::client::ClientSession`]: chunk encoding of control, command and data messages, and
//! an ordered queue of buffers that may mix locally encoded bytes with shared media chunks.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::amf::{Amf0Value, encode_amf0_all, encode_amf3_message};
use super::chunk::{ChunkEncoder, MessageHeader, encode_standalone};
use super::message::{ControlMessage, msg_type};

/// Chunk stream ids this crate writes on. Media uses ids that the stateful encoder never
/// touches, because shared media chunks always start with a full (fmt 0) header.
pub mod csid {
    pub const CONTROL: u32 = 2;
    pub const COMMAND: u32 = 3;
    pub const STREAM_STATUS: u32 = 5;
    pub const AUDIO: u32 = 6;
    pub const VIDEO: u32 = 7;
    pub const DATA: u32 = 8;
}

pub(crate) struct Output {
    encoder: ChunkEncoder,
    /// Bytes encoded but not yet moved to `queue`; flushed before any shared `Bytes` is queued
    /// so that output order is the order of calls.
    pending: BytesMut,
    queue: VecDeque<Bytes>,
    /// Commands go out as AMF3 command messages (type 17) instead of AMF0 (type 20).
    pub amf3_commands: bool,
}

impl Output {
    pub fn new() -> Output {
        Output {
            encoder: ChunkEncoder::new(),
            pending: BytesMut::with_capacity(4096),
            queue: VecDeque::new(),
            amf3_commands: false,
        }
    }

    pub fn chunk_size(&self) -> u32 {
        self.encoder.chunk_size()
    }

    /// Sends Set Chunk Size, then encodes everything after it with `size`.
    pub fn set_chunk_size(&mut self, size: u32) {
        self.control(ControlMessage::SetChunkSize(size));
        self.encoder.set_chunk_size(size);
    }

    /// Writable access for producers that append directly (the handshake).
    pub fn pending_mut(&mut self) -> &mut BytesMut {
        &mut self.pending
    }

    pub fn message(
        &mut self,
        csid: u32,
        type_id: u8,
        stream_id: u32,
        timestamp: u32,
        payload: &[u8],
    ) {
        let header = MessageHeader {
            timestamp,
            type_id,
            stream_id,
        };
        self.encoder
            .encode(csid, &header, payload, &mut self.pending);
    }

    pub fn control(&mut self, ctrl: ControlMessage) {
        let payload = ctrl.encode_payload();
        self.message(csid::CONTROL, ctrl.type_id(), 0, 0, &payload);
    }

    pub fn command_type(&self) -> u8 {
        if self.amf3_commands {
            msg_type::COMMAND_AMF3
        } else {
            msg_type::COMMAND_AMF0
        }
    }

    /// A command message (`_result`, `onStatus`, `play`, ...) on `csid`.
    pub fn command(&mut self, csid: u32, stream_id: u32, values: &[Amf0Value]) {
        let payload = if self.amf3_commands {
            encode_amf3_message(values)
        } else {
            encode_amf0_all(values)
        };
        let type_id = self.command_type();
        self.message(csid, type_id, stream_id, 0, &payload);
    }

    /// An AMF0 data message (`|RtmpSampleAccess`, `@setDataFrame`, ...).
    pub fn data(&mut self, csid: u32, stream_id: u32, timestamp: u32, values: &[Amf0Value]) {
        let payload = encode_amf0_all(values);
        self.message(csid, msg_type::DATA_AMF0, stream_id, timestamp, &payload);
    }

    /// A media message encoded on its own (fmt 0 first chunk), for media csids.
    pub fn standalone(&mut self, csid: u32, header: &MessageHeader, payload: &[u8]) {
        let size = self.encoder.chunk_size();
        encode_standalone(csid, header, payload, size, &mut self.pending);
    }

    /// Chunk bytes made elsewhere with this output's chunk size on a media csid.
    pub fn encoded(&mut self, bytes: Bytes) {
        self.flush();
        self.queue.push_back(bytes);
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty() || !self.queue.is_empty()
    }

    /// Moves every pending buffer into `out`, in order.
    pub fn drain(&mut self, out: &mut Vec<Bytes>) {
        self.flush();
        out.extend(self.queue.drain(..));
    }

    fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.queue.push_back(self.pending.split().freeze());
        }
    }
}
