//! RTMP message types: typed protocol control (types 1,2,3,5,6, spec §5.4) and user control
//! (type 4, spec §6.2 / §7.1.7) messages, plus splitting aggregate messages (type 22).

use bytes::Bytes;

use super::chunk::MessageHeader;

/// Message type ids.
pub mod msg_type {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const ABORT: u8 = 2;
    pub const ACK: u8 = 3;
    pub const USER_CONTROL: u8 = 4;
    pub const WINDOW_ACK_SIZE: u8 = 5;
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const DATA_AMF3: u8 = 15;
    pub const SHARED_OBJECT_AMF3: u8 = 16;
    pub const COMMAND_AMF3: u8 = 17;
    pub const DATA_AMF0: u8 = 18;
    pub const SHARED_OBJECT_AMF0: u8 = 19;
    pub const COMMAND_AMF0: u8 = 20;
    pub const AGGREGATE: u8 = 22;
}

/// User control event types (spec §7.1.7; 26/27 and 31/32 are the undocumented SWF verification
/// and buffer events FMS sends, decoded as [`UserControlEvent::Unknown`]).
pub mod user_control_event {
    pub const STREAM_BEGIN: u16 = 0;
    pub const STREAM_EOF: u16 = 1;
    pub const STREAM_DRY: u16 = 2;
    pub const SET_BUFFER_LENGTH: u16 = 3;
    pub const STREAM_IS_RECORDED: u16 = 4;
    pub const PING_REQUEST: u16 = 6;
    pub const PING_RESPONSE: u16 = 7;
    pub const SWF_VERIFY_REQUEST: u16 = 26;
    pub const SWF_VERIFY_RESPONSE: u16 = 27;
    pub const BUFFER_EMPTY: u16 = 31;
    pub const BUFFER_READY: u16 = 32;
}

/// Set Peer Bandwidth limit types (spec §5.4.5).
pub mod peer_bandwidth_limit {
    pub const HARD: u8 = 0;
    pub const SOFT: u8 = 1;
    pub const DYNAMIC: u8 = 2;
}

/// Most sub-messages [`split_aggregate`] accepts in one aggregate; real ones carry a few hundred
/// at most, and this bounds the index built from a hostile 16 MiB payload.
pub const MAX_AGGREGATE_PARTS: usize = 8192;

/// Length of an FLV tag header inside an aggregate message.
const TAG_HEADER_LEN: usize = 11;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlMessage {
    /// New chunk size for the sender's chunks; values with the top bit set are passed through for
    /// [`super::chunk::ChunkDecoder::set_chunk_size`] to refuse.
    SetChunkSize(u32),
    /// Chunk stream id whose partial message to drop.
    Abort(u32),
    /// Sequence number: bytes received so far.
    Acknowledgement(u32),
    WindowAckSize(u32),
    SetPeerBandwidth {
        size: u32,
        limit_type: u8,
    },
    UserControl(UserControlEvent),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserControlEvent {
    StreamBegin(u32),
    StreamEof(u32),
    StreamDry(u32),
    SetBufferLength {
        stream_id: u32,
        buffer_ms: u32,
    },
    StreamIsRecorded(u32),
    /// Server's timestamp, to be echoed in a [`UserControlEvent::PingResponse`].
    PingRequest(u32),
    PingResponse(u32),
    Unknown {
        event_type: u16,
        data: Bytes,
    },
}

impl UserControlEvent {
    pub fn event_type(&self) -> u16 {
        use user_control_event as e;
        match self {
            UserControlEvent::StreamBegin(_) => e::STREAM_BEGIN,
            UserControlEvent::StreamEof(_) => e::STREAM_EOF,
            UserControlEvent::StreamDry(_) => e::STREAM_DRY,
            UserControlEvent::SetBufferLength { .. } => e::SET_BUFFER_LENGTH,
            UserControlEvent::StreamIsRecorded(_) => e::STREAM_IS_RECORDED,
            UserControlEvent::PingRequest(_) => e::PING_REQUEST,
            UserControlEvent::PingResponse(_) => e::PING_RESPONSE,
            UserControlEvent::Unknown { event_type, .. } => *event_type,
        }
    }
}

/// Malformed messages. Every one is the peer's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("peer sent a type {type_id} control message of {got} bytes; it needs {needed}")]
    Truncated {
        type_id: u8,
        needed: usize,
        got: usize,
    },
    #[error("peer sent user control event {event_type} with {got} data bytes; it needs {needed}")]
    UserControlTruncated {
        event_type: u16,
        needed: usize,
        got: usize,
    },
    #[error("peer sent an aggregate message truncated at byte {offset}")]
    AggregateTruncated { offset: usize },
    #[error("peer sent an aggregate message of more than {0} sub-messages")]
    AggregateTooManyParts(usize),
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be24(b: &[u8]) -> u32 {
    (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2])
}

/// The first 4 bytes as a big-endian u32. Longer payloads are accepted: the spec gives these
/// messages fixed sizes, and extra bytes carry nothing we could use.
fn u32_of(type_id: u8, payload: &[u8]) -> Result<u32, MessageError> {
    if payload.len() < 4 {
        return Err(MessageError::Truncated {
            type_id,
            needed: 4,
            got: payload.len(),
        });
    }
    Ok(be32(payload))
}

/// Counts the bytes received on a connection and says when an Acknowledgement is due: each time
/// another window (the peer's Window Acknowledgement Size) has arrived since the last one. A zero
/// window means the peer wants none. Both the server and the client session use it.
#[derive(Debug, Clone, Copy)]
pub struct AckWindow {
    received: u64,
    acked_at: u64,
    window: u32,
}

impl AckWindow {
    pub fn new(window: u32) -> AckWindow {
        AckWindow {
            received: 0,
            acked_at: 0,
            window,
        }
    }

    pub fn set_window(&mut self, window: u32) {
        self.window = window;
    }

    pub fn add(&mut self, n: usize) {
        self.received += n as u64;
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The Acknowledgement to send now, if a window has filled since the last one. Its sequence
    /// number is the byte count so far, modulo 2^32 as the field is 32-bit.
    pub fn due(&mut self) -> Option<ControlMessage> {
        if self.window == 0 || self.received - self.acked_at < u64::from(self.window) {
            return None;
        }
        self.acked_at = self.received;
        Some(ControlMessage::Acknowledgement(self.received as u32))
    }
}

impl ControlMessage {
    /// Parses a control message of type 1..=6 (None for other types); malformed payloads → error.
    pub fn parse(type_id: u8, payload: &[u8]) -> Result<Option<ControlMessage>, MessageError> {
        let msg = match type_id {
            msg_type::SET_CHUNK_SIZE => ControlMessage::SetChunkSize(u32_of(type_id, payload)?),
            msg_type::ABORT => ControlMessage::Abort(u32_of(type_id, payload)?),
            msg_type::ACK => ControlMessage::Acknowledgement(u32_of(type_id, payload)?),
            msg_type::WINDOW_ACK_SIZE => ControlMessage::WindowAckSize(u32_of(type_id, payload)?),
            msg_type::SET_PEER_BANDWIDTH => ControlMessage::SetPeerBandwidth {
                size: u32_of(type_id, payload)?,
                // ffmpeg's handle_set_peer_bw reads only the 4-byte size, so accept peers that
                // leave out the limit type; "dynamic" then changes nothing about a hard limit.
                limit_type: payload
                    .get(4)
                    .copied()
                    .unwrap_or(peer_bandwidth_limit::DYNAMIC),
            },
            msg_type::USER_CONTROL => ControlMessage::UserControl(parse_user_control(payload)?),
            _ => return Ok(None),
        };
        Ok(Some(msg))
    }

    pub fn type_id(&self) -> u8 {
        match self {
            ControlMessage::SetChunkSize(_) => msg_type::SET_CHUNK_SIZE,
            ControlMessage::Abort(_) => msg_type::ABORT,
            ControlMessage::Acknowledgement(_) => msg_type::ACK,
            ControlMessage::WindowAckSize(_) => msg_type::WINDOW_ACK_SIZE,
            ControlMessage::SetPeerBandwidth { .. } => msg_type::SET_PEER_BANDWIDTH,
            ControlMessage::UserControl(_) => msg_type::USER_CONTROL,
        }
    }

    /// The message payload. Set Chunk Size has its top bit cleared (spec §5.4.1). Send these on
    /// chunk stream 2, message stream 0.
    pub fn encode_payload(&self) -> Vec<u8> {
        match self {
            ControlMessage::SetChunkSize(v) => (v & 0x7FFF_FFFF).to_be_bytes().to_vec(),
            ControlMessage::Abort(v)
            | ControlMessage::Acknowledgement(v)
            | ControlMessage::WindowAckSize(v) => v.to_be_bytes().to_vec(),
            ControlMessage::SetPeerBandwidth { size, limit_type } => {
                let mut out = size.to_be_bytes().to_vec();
                out.push(*limit_type);
                out
            }
            ControlMessage::UserControl(ev) => {
                let mut out = ev.event_type().to_be_bytes().to_vec();
                match ev {
                    UserControlEvent::StreamBegin(v)
                    | UserControlEvent::StreamEof(v)
                    | UserControlEvent::StreamDry(v)
                    | UserControlEvent::StreamIsRecorded(v)
                    | UserControlEvent::PingRequest(v)
                    | UserControlEvent::PingResponse(v) => out.extend_from_slice(&v.to_be_bytes()),
                    UserControlEvent::SetBufferLength {
                        stream_id,
                        buffer_ms,
                    } => {
                        out.extend_from_slice(&stream_id.to_be_bytes());
                        out.extend_from_slice(&buffer_ms.to_be_bytes());
                    }
                    UserControlEvent::Unknown { data, .. } => out.extend_from_slice(data),
                }
                out
            }
        }
    }
}

fn parse_user_control(payload: &[u8]) -> Result<UserControlEvent, MessageError> {
    use user_control_event as e;
    if payload.len() < 2 {
        return Err(MessageError::Truncated {
            type_id: msg_type::USER_CONTROL,
            needed: 2,
            got: payload.len(),
        });
    }
    let event_type = u16::from_be_bytes([payload[0], payload[1]]);
    let data = &payload[2..];
    let need = |needed: usize| {
        if data.len() < needed {
            Err(MessageError::UserControlTruncated {
                event_type,
                needed,
                got: data.len(),
            })
        } else {
            Ok(())
        }
    };
    let ev = match event_type {
        e::STREAM_BEGIN
        | e::STREAM_EOF
        | e::STREAM_DRY
        | e::STREAM_IS_RECORDED
        | e::PING_REQUEST
        | e::PING_RESPONSE => {
            need(4)?;
            let v = be32(data);
            match event_type {
                e::STREAM_BEGIN => UserControlEvent::StreamBegin(v),
                e::STREAM_EOF => UserControlEvent::StreamEof(v),
                e::STREAM_DRY => UserControlEvent::StreamDry(v),
                e::STREAM_IS_RECORDED => UserControlEvent::StreamIsRecorded(v),
                e::PING_REQUEST => UserControlEvent::PingRequest(v),
                _ => UserControlEvent::PingResponse(v),
            }
        }
        e::SET_BUFFER_LENGTH => {
            need(8)?;
            UserControlEvent::SetBufferLength {
                stream_id: be32(data),
                buffer_ms: be32(&data[4..]),
            }
        }
        _ => UserControlEvent::Unknown {
            event_type,
            data: Bytes::copy_from_slice(data),
        },
    };
    Ok(ev)
}

/// Splits an aggregate message (type 22) into its sub-messages (FLV-tag layout: type, 24-bit size,
/// 24-bit ts + 8-bit ext, 24-bit stream id, payload, 32-bit back pointer), with sub-message
/// timestamps rebased so the first equals `aggregate_timestamp` (as FMS/nginx-rtmp do).
///
/// Follows nginx-rtmp's `ngx_rtmp_aggregate_message_handler`: sub-messages take the aggregate's
/// `stream_id` (the tags' own field is usually 0), the back pointer is not checked, and a missing
/// or short back pointer after the last tag is tolerated. Payloads are slices of `payload`.
pub fn split_aggregate(
    aggregate_timestamp: u32,
    stream_id: u32,
    payload: &Bytes,
) -> Result<Vec<(MessageHeader, Bytes)>, MessageError> {
    let data = &payload[..];
    let mut parts = Vec::new();
    let mut pos = 0usize;
    let mut base: Option<u32> = None;
    while pos < data.len() {
        if parts.len() == MAX_AGGREGATE_PARTS {
            return Err(MessageError::AggregateTooManyParts(MAX_AGGREGATE_PARTS));
        }
        let Some(tag) = data.get(pos..pos + TAG_HEADER_LEN) else {
            return Err(MessageError::AggregateTruncated { offset: pos });
        };
        let type_id = tag[0];
        let size = be24(&tag[1..4]) as usize;
        let ts = be24(&tag[4..7]) | (u32::from(tag[7]) << 24);
        let body_start = pos + TAG_HEADER_LEN;
        let body_end = body_start + size;
        if body_end > data.len() {
            return Err(MessageError::AggregateTruncated { offset: pos });
        }
        let first = *base.get_or_insert(ts);
        parts.push((
            MessageHeader {
                timestamp: aggregate_timestamp.wrapping_add(ts.wrapping_sub(first)),
                type_id,
                stream_id,
            },
            payload.slice(body_start..body_end),
        ));
        // Back pointer (11 + size); nginx-rtmp stops quietly when it is cut short.
        pos = body_end.saturating_add(4);
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ack_window_is_due_once_per_filled_window() {
        let mut a = AckWindow::new(100);
        a.add(99);
        assert_eq!(a.due(), None);
        a.add(1);
        assert_eq!(a.due(), Some(ControlMessage::Acknowledgement(100)));
        assert_eq!(a.due(), None, "once per window");
        a.add(150);
        assert_eq!(a.due(), Some(ControlMessage::Acknowledgement(250)));
        a.set_window(0);
        a.add(1000);
        assert_eq!(a.due(), None, "a zero window wants no acks");
        assert_eq!(a.received(), 1250);
    }

    fn round_trip(msg: ControlMessage) {
        let payload = msg.encode_payload();
        assert_eq!(
            ControlMessage::parse(msg.type_id(), &payload),
            Ok(Some(msg.clone())),
            "{msg:?}"
        );
    }

    #[test]
    fn control_messages_round_trip() {
        round_trip(ControlMessage::SetChunkSize(4096));
        round_trip(ControlMessage::SetChunkSize(0x7FFF_FFFF));
        round_trip(ControlMessage::Abort(6));
        round_trip(ControlMessage::Acknowledgement(0xDEAD_BEEF));
        round_trip(ControlMessage::WindowAckSize(2_500_000));
        for limit_type in [0, 1, 2] {
            round_trip(ControlMessage::SetPeerBandwidth {
                size: 2_500_000,
                limit_type,
            });
        }
        for ev in [
            UserControlEvent::StreamBegin(1),
            UserControlEvent::StreamEof(1),
            UserControlEvent::StreamDry(2),
            UserControlEvent::SetBufferLength {
                stream_id: 1,
                buffer_ms: 3000,
            },
            UserControlEvent::StreamIsRecorded(1),
            UserControlEvent::PingRequest(123_456),
            UserControlEvent::PingResponse(123_456),
            UserControlEvent::Unknown {
                event_type: user_control_event::BUFFER_EMPTY,
                data: Bytes::from_static(&[0, 0, 0, 1]),
            },
            UserControlEvent::Unknown {
                event_type: 99,
                data: Bytes::new(),
            },
        ] {
            round_trip(ControlMessage::UserControl(ev));
        }
    }

    #[test]
    fn wire_layouts() {
        assert_eq!(
            ControlMessage::SetChunkSize(0xFFFF_FFFF).encode_payload(),
            vec![0x7F, 0xFF, 0xFF, 0xFF]
        );
        assert_eq!(
            ControlMessage::SetPeerBandwidth {
                size: 5_000_000,
                limit_type: peer_bandwidth_limit::DYNAMIC
            }
            .encode_payload(),
            vec![0x00, 0x4C, 0x4B, 0x40, 0x02]
        );
        assert_eq!(
            ControlMessage::UserControl(UserControlEvent::StreamBegin(1)).encode_payload(),
            vec![0, 0, 0, 0, 0, 1]
        );
        assert_eq!(
            ControlMessage::UserControl(UserControlEvent::SetBufferLength {
                stream_id: 1,
                buffer_ms: 3000
            })
            .encode_payload(),
            vec![0, 3, 0, 0, 0, 1, 0, 0, 0x0B, 0xB8]
        );
        // librtmp's ping response as SRS documents it.
        assert_eq!(
            ControlMessage::parse(4, &[0x00, 0x07, 0x00, 0x00, 0x0d, 0x0f]),
            Ok(Some(ControlMessage::UserControl(
                UserControlEvent::PingResponse(0x0d0f)
            )))
        );
    }

    #[test]
    fn parse_edge_cases() {
        for t in [8u8, 9, 18, 20, 22, 0, 7, 255] {
            assert_eq!(ControlMessage::parse(t, &[1, 2, 3, 4]), Ok(None));
        }
        for t in 1u8..=6 {
            assert!(matches!(
                ControlMessage::parse(t, &[0, 0, 1]),
                Err(MessageError::Truncated { .. } | MessageError::UserControlTruncated { .. })
            ));
        }
        assert_eq!(
            ControlMessage::parse(4, &[0, 3, 0, 0, 0, 1, 0, 0]),
            Err(MessageError::UserControlTruncated {
                event_type: 3,
                needed: 8,
                got: 6
            })
        );
        assert_eq!(
            ControlMessage::parse(4, &[0]),
            Err(MessageError::Truncated {
                type_id: 4,
                needed: 2,
                got: 1
            })
        );
        // 4-byte Set Peer Bandwidth (ffmpeg accepts it) and trailing bytes are tolerated.
        assert_eq!(
            ControlMessage::parse(6, &[0, 0, 0x10, 0]),
            Ok(Some(ControlMessage::SetPeerBandwidth {
                size: 4096,
                limit_type: peer_bandwidth_limit::DYNAMIC
            }))
        );
        assert_eq!(
            ControlMessage::parse(1, &[0, 0, 0x10, 0, 9]),
            Ok(Some(ControlMessage::SetChunkSize(4096)))
        );
        // A set top bit is passed through for the chunk decoder to refuse.
        assert_eq!(
            ControlMessage::parse(1, &[0x80, 0, 0, 1]),
            Ok(Some(ControlMessage::SetChunkSize(0x8000_0001)))
        );
    }

    fn tag(out: &mut Vec<u8>, type_id: u8, ts: u32, sid: u32, body: &[u8], back: bool) {
        let size = body.len() as u32;
        out.push(type_id);
        out.extend_from_slice(&size.to_be_bytes()[1..]);
        out.extend_from_slice(&ts.to_be_bytes()[1..]);
        out.push((ts >> 24) as u8);
        out.extend_from_slice(&sid.to_be_bytes()[1..]);
        out.extend_from_slice(body);
        if back {
            out.extend_from_slice(&(11 + size).to_be_bytes());
        }
    }

    #[test]
    fn aggregate_split_rebases_timestamps() {
        let mut agg = Vec::new();
        tag(&mut agg, 9, 0x0100_0010, 0, b"video-1", true);
        tag(&mut agg, 8, 0x0100_0020, 0, b"audio", true);
        tag(&mut agg, 9, 0x0100_0050, 0, b"", true);
        tag(&mut agg, 9, 0x0100_0060, 0, b"video-2", false); // no final back pointer
        let agg = Bytes::from(agg);
        let parts = split_aggregate(1000, 1, &agg).unwrap();
        let got: Vec<_> = parts
            .iter()
            .map(|(h, p)| (h.timestamp, h.type_id, h.stream_id, p.to_vec()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1000, 9, 1, b"video-1".to_vec()),
                (1016, 8, 1, b"audio".to_vec()),
                (1064, 9, 1, b"".to_vec()),
                (1080, 9, 1, b"video-2".to_vec()),
            ]
        );
        // Sub-payloads are slices of the aggregate.
        let base = agg.as_ptr() as usize;
        assert_eq!(parts[0].1.as_ptr() as usize, base + 11);
        // Rebasing wraps modulo 2^32.
        let parts = split_aggregate(0xFFFF_FFF0, 1, &agg).unwrap();
        assert_eq!(parts[3].0.timestamp, 0x40);
        // Empty aggregate: nothing.
        assert_eq!(split_aggregate(0, 1, &Bytes::new()).unwrap(), vec![]);
    }

    #[test]
    fn aggregate_truncation() {
        let mut agg = Vec::new();
        tag(&mut agg, 9, 10, 0, b"abcdef", true);
        let full = agg.clone();
        // Cut inside the second tag's header or body: error; cut in the back pointer: tolerated.
        tag(&mut agg, 9, 20, 0, b"xyz", true);
        for cut in full.len() + 1..agg.len() - 4 {
            let b = Bytes::copy_from_slice(&agg[..cut]);
            assert_eq!(
                split_aggregate(0, 1, &b),
                Err(MessageError::AggregateTruncated { offset: full.len() }),
                "cut {cut}"
            );
        }
        for cut in agg.len() - 4..=agg.len() {
            let b = Bytes::copy_from_slice(&agg[..cut]);
            assert_eq!(split_aggregate(0, 1, &b).unwrap().len(), 2);
        }
        assert_eq!(
            split_aggregate(0, 1, &Bytes::from_static(&[9, 0, 0, 1])),
            Err(MessageError::AggregateTruncated { offset: 0 })
        );
    }

    #[test]
    fn aggregate_part_limit() {
        let mut agg = Vec::new();
        for i in 0..=MAX_AGGREGATE_PARTS as u32 {
            tag(&mut agg, 8, i, 0, b"", true);
        }
        assert_eq!(
            split_aggregate(0, 1, &Bytes::from(agg)),
            Err(MessageError::AggregateTooManyParts(MAX_AGGREGATE_PARTS))
        );
    }

    proptest! {
        #[test]
        fn prop_parse_never_panics(t in any::<u8>(), payload in proptest::collection::vec(any::<u8>(), 0..16)) {
            if let Ok(Some(msg)) = ControlMessage::parse(t, &payload) {
                prop_assert_eq!(msg.type_id(), t);
            }
        }

        #[test]
        fn prop_aggregate_never_panics(ts in any::<u32>(), payload in proptest::collection::vec(any::<u8>(), 0..512)) {
            let payload = Bytes::from(payload);
            if let Ok(parts) = split_aggregate(ts, 1, &payload) {
                let total: usize = parts.iter().map(|(_, p)| p.len() + 11).sum();
                prop_assert!(total <= payload.len());
            }
        }

        #[test]
        fn prop_aggregate_round_trip(tags in proptest::collection::vec((any::<u8>(), any::<u32>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..20), base in any::<u32>()) {
            let mut agg = Vec::new();
            for (t, ts, body) in &tags {
                tag(&mut agg, *t, *ts, 0, body, true);
            }
            let parts = split_aggregate(base, 7, &Bytes::from(agg)).unwrap();
            prop_assert_eq!(parts.len(), tags.len());
            for ((h, p), (t, ts, body)) in parts.iter().zip(&tags) {
                prop_assert_eq!(h.type_id, *t);
                prop_assert_eq!(h.stream_id, 7);
                prop_assert_eq!(h.timestamp, base.wrapping_add(ts.wrapping_sub(tags[0].1)));
                prop_assert_eq!(&p[..], &body[..]);
            }
        }
    }
}
