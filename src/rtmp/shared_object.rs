//! Remote shared object messages (RTMP types 19 and 16): sans-IO decode and encode of the body.
//! The authority that applies them lives in `state::shared_objects`; this file only knows bytes.
//!
//! Layout (Adobe RTMP spec §7.1.3 "Shared Object Message"; checked against Red5's
//! `RTMPProtocolDecoder.decodeSharedObject` / `RTMPProtocolEncoder.doEncodeSharedObject`):
//!
//! ```text
//! name      u16 length + UTF-8 (no AMF marker)
//! version   u32
//! flags     8 bytes: u32 persistence (2 = persistent, 0 = temporary), u32 reserved (0)
//! events*   type u8, data length u32 (excluding these 5 bytes), data
//! ```
//!
//! | type | event | data |
//! |---|---|---|
//! | 1 | Use | none |
//! | 2 | Release | none |
//! | 3 | Request Change | key (u16 string) + one AMF0 value |
//! | 4 | Change | key + one AMF0 value |
//! | 5 | Success | key |
//! | 6 | Send Message | AMF0 values: handler name (a full AMF0 string, marker included), then args |
//! | 7 | Status | code (u16 string), then level (u16 string) |
//! | 8 | Clear | none |
//! | 9 | Remove | key |
//! | 10 | Request Remove | key |
//! | 11 | Use Success | none |
//!
//! The Status order is Red5's (`encodeSharedObject` writes the event value, the code such as
//! `SharedObject.BadPersistence`, then the key, the level `"error"`; its decoder reads them back in
//! that order). Red5 only calls a flag word of exactly 2 persistent; [`SoFlags::persistent`] does
//! the same, and the raw 8 bytes are kept so any decoded body encodes back byte for byte.
//!
//! Type 16 ("AMF3 shared object") is one format byte, then the type-19 body. We accept format 0
//! only, with AMF0 values that may switch to AMF3 through marker 0x11 (`Amf0Value::Avmplus`), as
//! Red5's decoder does. Red5 differs in two ways we do not follow: it also accepts format 3 (name
//! read as an AMF3 string), and for an AMF3 connection its encoder writes values as bare AMF3
//! without the 0x11 marker, which cannot be told apart from AMF0 in general. We always encode
//! AMF0 (with 0x11 only where a value is `Avmplus`).
//!
//! Decoding is strict: an event's data must be consumed exactly (no trailing bytes, no data on the
//! events that carry none), unknown event types are errors (Red5 silently drops the rest of the
//! message), and the AMF budgets of [`SoDecodeLimits::amf`] apply to the whole message, not to each
//! value, so a message of many events cannot multiply them.
//!
//! Third-party captures: none. Tried for real shared-object bytes: PyPI `rtmplite3` (installs,
//! no shared objects), `rtmpy` 0.1.1 (Python 2 / Twisted, does not build on Python 3.11),
//! `pyrtmp` (does not build; no shared objects), npm `node-media-server` (no shared objects),
//! Debian `rtmpdump`/`librtmp`/`flvstreamer`/`libnginx-mod-rtmp` (no shared objects), Red5
//! (Java; its Maven dependencies are not reachable here). The byte layouts in the tests are
//! hand-written from the spec and Red5's codec.

use super::amf::{Amf0Value, AmfError, AmfLimits, decode_amf0, encode_amf0};
use super::message::msg_type;

/// Event type bytes (spec §7.1.3 table; Red5 `SharedObjectTypeMapping`).
pub mod event_type {
    pub const USE: u8 = 1;
    pub const RELEASE: u8 = 2;
    pub const REQUEST_CHANGE: u8 = 3;
    pub const CHANGE: u8 = 4;
    pub const SUCCESS: u8 = 5;
    pub const SEND_MESSAGE: u8 = 6;
    pub const STATUS: u8 = 7;
    pub const CLEAR: u8 = 8;
    pub const REMOVE: u8 = 9;
    pub const REQUEST_REMOVE: u8 = 10;
    pub const USE_SUCCESS: u8 = 11;
}

/// The format byte that starts a type-16 body (Red5 writes 0 and calls it "unknown (not AMF version)").
const AMF3_FORMAT: u8 = 0;
/// Bytes before an event's data: type u8 + length u32.
pub const EVENT_HEADER_LEN: usize = 5;
/// Persistence word Flash Player and Red5 use for a persistent shared object.
const PERSISTENT_WORD: u32 = 2;

/// Which message type carries the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoEncoding {
    /// Type 19.
    Amf0,
    /// Type 16: a format byte (0), then the same body.
    Amf3,
}

impl SoEncoding {
    pub fn from_message_type(type_id: u8) -> Option<SoEncoding> {
        match type_id {
            msg_type::SHARED_OBJECT_AMF0 => Some(SoEncoding::Amf0),
            msg_type::SHARED_OBJECT_AMF3 => Some(SoEncoding::Amf3),
            _ => None,
        }
    }

    pub fn message_type(self) -> u8 {
        match self {
            SoEncoding::Amf0 => msg_type::SHARED_OBJECT_AMF0,
            SoEncoding::Amf3 => msg_type::SHARED_OBJECT_AMF3,
        }
    }
}

/// The 8 flag bytes, kept raw so a decoded body re-encodes exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SoFlags(pub [u8; 8]);

impl SoFlags {
    pub const TEMPORARY: SoFlags = SoFlags([0; 8]);
    pub const PERSISTENT: SoFlags = SoFlags([0, 0, 0, 2, 0, 0, 0, 0]);

    pub fn from_persistent(persistent: bool) -> SoFlags {
        if persistent {
            SoFlags::PERSISTENT
        } else {
            SoFlags::TEMPORARY
        }
    }

    /// Red5's rule: the first big-endian u32 is exactly 2.
    pub fn persistent(self) -> bool {
        let [a, b, c, d, ..] = self.0;
        u32::from_be_bytes([a, b, c, d]) == PERSISTENT_WORD
    }
}

/// One event of a shared-object message.
#[derive(Debug, Clone, PartialEq)]
pub enum SoEvent {
    /// Client → server: subscribe (connect) to the shared object.
    Use,
    /// Client → server: unsubscribe.
    Release,
    /// Client → server: set a slot.
    RequestChange { key: String, value: Amf0Value },
    /// Server → client: a slot's value (someone else's change, or initial state).
    Change { key: String, value: Amf0Value },
    /// Server → client: your request for this slot was applied.
    Success { key: String },
    /// Both ways: call `handler(args…)` on every subscriber.
    SendMessage {
        handler: String,
        args: Vec<Amf0Value>,
    },
    /// Server → client: an error or warning, e.g. `("SharedObject.BadPersistence", "error")`.
    Status { code: String, level: String },
    /// Server → client: drop your copy of every slot.
    Clear,
    /// Server → client: a slot was removed.
    Remove { key: String },
    /// Client → server: remove a slot.
    RequestRemove { key: String },
    /// Server → client: the Use was accepted.
    UseSuccess,
}

impl SoEvent {
    pub fn type_byte(&self) -> u8 {
        use event_type::*;
        match self {
            SoEvent::Use => USE,
            SoEvent::Release => RELEASE,
            SoEvent::RequestChange { .. } => REQUEST_CHANGE,
            SoEvent::Change { .. } => CHANGE,
            SoEvent::Success { .. } => SUCCESS,
            SoEvent::SendMessage { .. } => SEND_MESSAGE,
            SoEvent::Status { .. } => STATUS,
            SoEvent::Clear => CLEAR,
            SoEvent::Remove { .. } => REMOVE,
            SoEvent::RequestRemove { .. } => REQUEST_REMOVE,
            SoEvent::UseSuccess => USE_SUCCESS,
        }
    }

    /// Bytes this event takes in a body, header included.
    pub fn encoded_len(&self) -> usize {
        let mut out = Vec::new();
        encode_event(self, &mut out);
        out.len()
    }
}

/// One shared-object message body.
#[derive(Debug, Clone, PartialEq)]
pub struct SoMessage {
    pub name: String,
    pub version: u32,
    pub flags: SoFlags,
    pub events: Vec<SoEvent>,
}

impl SoMessage {
    pub fn new(name: &str, version: u32, persistent: bool, events: Vec<SoEvent>) -> SoMessage {
        SoMessage {
            name: name.to_owned(),
            version,
            flags: SoFlags::from_persistent(persistent),
            events,
        }
    }

    pub fn persistent(&self) -> bool {
        self.flags.persistent()
    }
}

/// Bounds for decoding one body from a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoDecodeLimits {
    /// Most events in one message (default 1024). Flash Player batches every `setProperty` of a
    /// frame into one message, so a few hundred is plausible from a busy client.
    pub max_events: usize,
    /// Longest shared-object name in bytes (default 1024).
    pub max_name_len: usize,
    /// AMF budgets for all the values of one message together (default [`AmfLimits::default`]):
    /// each value is decoded with what the values before it left, so `max_nodes` and
    /// `max_string_len` bound the whole message as they bound one command.
    pub amf: AmfLimits,
}

impl Default for SoDecodeLimits {
    fn default() -> Self {
        SoDecodeLimits {
            max_events: 1024,
            max_name_len: 1024,
            amf: AmfLimits::default(),
        }
    }
}

/// Why a body could not be decoded. All of these are the peer's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SoError {
    #[error("shared object message is truncated")]
    Truncated,
    #[error("shared object message has unknown format byte {0} (type 16 accepts 0 only)")]
    UnknownFormat(u8),
    #[error("unknown shared object event type {0}")]
    BadEventType(u8),
    #[error("shared object {what} is {len}, over the limit of {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("shared object event type {event} has {extra} bytes after its data")]
    TrailingData { event: u8, extra: usize },
    #[error("shared object string is not valid UTF-8")]
    BadUtf8,
    #[error("shared object send-message handler name is not an AMF0 string")]
    BadHandler,
    #[error("shared object value: {0}")]
    Amf(#[from] AmfError),
}

/// Decodes a type-19 (`Amf0`) or type-16 (`Amf3`) body.
pub fn decode_so(
    body: &[u8],
    encoding: SoEncoding,
    limits: &SoDecodeLimits,
) -> Result<SoMessage, SoError> {
    let mut r = Reader { buf: body };
    if encoding == SoEncoding::Amf3 {
        match r.u8()? {
            AMF3_FORMAT => {}
            other => return Err(SoError::UnknownFormat(other)),
        }
    }
    let name = r.string(limits.max_name_len, "name length")?;
    let version = r.u32()?;
    let flags = SoFlags(r.take(8)?.try_into().map_err(|_| SoError::Truncated)?);
    let mut budget = Budget {
        limits: limits.amf,
        nodes_left: limits.amf.max_nodes,
        bytes_left: limits.amf.max_string_len,
    };
    let mut events = Vec::new();
    while !r.buf.is_empty() {
        if events.len() == limits.max_events {
            return Err(SoError::TooLong {
                what: "event count",
                len: events.len() + 1,
                max: limits.max_events,
            });
        }
        let kind = r.u8()?;
        let len = r.u32()?;
        let data = r.take(usize::try_from(len).map_err(|_| SoError::Truncated)?)?;
        events.push(decode_event(kind, data, &mut budget)?);
    }
    Ok(SoMessage {
        name,
        version,
        flags,
        events,
    })
}

/// Appends the body of `msg` for `encoding` to `out`.
///
/// Strings longer than their u16 length field are cut at a character boundary (the AMF0 encoder
/// does the same), so the output is always well formed.
pub fn encode_so(msg: &SoMessage, encoding: SoEncoding, out: &mut Vec<u8>) {
    if encoding == SoEncoding::Amf3 {
        out.push(AMF3_FORMAT);
    }
    put_string(&msg.name, out);
    out.extend_from_slice(&msg.version.to_be_bytes());
    out.extend_from_slice(&msg.flags.0);
    for event in &msg.events {
        encode_event(event, out);
    }
}

/// Bytes the header of `name` takes in a type-19 body (name, version, flags).
pub fn header_len(name: &str) -> usize {
    2 + clip(name).len() + 4 + 8
}

/// Appends one event (type, length, data) to `out`.
pub fn encode_event(event: &SoEvent, out: &mut Vec<u8>) {
    out.push(event.type_byte());
    let len_at = out.len();
    out.extend_from_slice(&[0; 4]);
    match event {
        SoEvent::Use | SoEvent::Release | SoEvent::Clear | SoEvent::UseSuccess => {}
        SoEvent::RequestChange { key, value } | SoEvent::Change { key, value } => {
            put_string(key, out);
            encode_amf0(value, out);
        }
        SoEvent::Success { key } | SoEvent::Remove { key } | SoEvent::RequestRemove { key } => {
            put_string(key, out)
        }
        SoEvent::SendMessage { handler, args } => {
            encode_amf0(&Amf0Value::String(handler.clone()), out);
            for arg in args {
                encode_amf0(arg, out);
            }
        }
        SoEvent::Status { code, level } => {
            put_string(code, out);
            put_string(level, out);
        }
    }
    // Event data over 4 GiB cannot be framed; the AMF encoder already caps each string at that.
    let len = u32::try_from(out.len() - len_at - 4).unwrap_or(u32::MAX);
    out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
}

/// The AMF budget left for the rest of one message.
struct Budget {
    limits: AmfLimits,
    nodes_left: usize,
    bytes_left: usize,
}

impl Budget {
    /// Decodes the first value of `data` under what earlier values left; returns it and its
    /// length. Its encoded size bounds both its node count and its string bytes from above
    /// (references are never re-encoded), so that is what it spends.
    fn one(&mut self, data: &[u8]) -> Result<(Amf0Value, usize), SoError> {
        let limits = AmfLimits {
            max_nodes: self.nodes_left,
            max_string_len: self.bytes_left,
            ..self.limits
        };
        let (value, used) = decode_amf0(data, &limits)?;
        let mut scratch = Vec::new();
        encode_amf0(&value, &mut scratch);
        self.nodes_left = self.nodes_left.saturating_sub(scratch.len());
        self.bytes_left = self.bytes_left.saturating_sub(scratch.len());
        Ok((value, used))
    }
}

fn decode_event(kind: u8, data: &[u8], budget: &mut Budget) -> Result<SoEvent, SoError> {
    use event_type::*;
    let mut r = Reader { buf: data };
    // Keys are u16-length strings, so 65 535 bytes is their only bound.
    let max_key = usize::from(u16::MAX);
    let event = match kind {
        USE => SoEvent::Use,
        RELEASE => SoEvent::Release,
        CLEAR => SoEvent::Clear,
        USE_SUCCESS => SoEvent::UseSuccess,
        REQUEST_CHANGE | CHANGE => {
            let key = r.string(max_key, "key length")?;
            let (value, used) = budget.one(r.buf)?;
            r.take(used)?;
            if kind == CHANGE {
                SoEvent::Change { key, value }
            } else {
                SoEvent::RequestChange { key, value }
            }
        }
        SUCCESS | REMOVE | REQUEST_REMOVE => {
            let key = r.string(max_key, "key length")?;
            match kind {
                SUCCESS => SoEvent::Success { key },
                REMOVE => SoEvent::Remove { key },
                _ => SoEvent::RequestRemove { key },
            }
        }
        SEND_MESSAGE => {
            let (handler, used) = budget.one(r.buf)?;
            r.take(used)?;
            let Amf0Value::String(handler) = handler else {
                return Err(SoError::BadHandler);
            };
            let mut args = Vec::new();
            while !r.buf.is_empty() {
                let (arg, used) = budget.one(r.buf)?;
                r.take(used)?;
                args.push(arg);
            }
            SoEvent::SendMessage { handler, args }
        }
        STATUS => {
            let code = r.string(max_key, "status code length")?;
            let level = r.string(max_key, "status level length")?;
            SoEvent::Status { code, level }
        }
        other => return Err(SoError::BadEventType(other)),
    };
    if !r.buf.is_empty() {
        return Err(SoError::TrailingData {
            event: kind,
            extra: r.buf.len(),
        });
    }
    Ok(event)
}

/// A cursor that never reads past its slice.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SoError> {
        if n > self.buf.len() {
            return Err(SoError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, SoError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, SoError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, SoError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self, max: usize, what: &'static str) -> Result<String, SoError> {
        let len = usize::from(self.u16()?);
        if len > max {
            return Err(SoError::TooLong { what, len, max });
        }
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| SoError::BadUtf8)
    }
}

/// `s` cut to at most 65 535 bytes at a character boundary.
fn clip(s: &str) -> &str {
    let max = usize::from(u16::MAX);
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn put_string(s: &str, out: &mut Vec<u8>) {
    let s = clip(s);
    // `clip` keeps the length within u16.
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::amf::amf0::tests::{arb_amf0, arb_key};
    use proptest::prelude::*;

    /// Header of a type-19 body for `name`, version 7, flags per Red5's encoder
    /// (`out.putInt(persistent ? 2 : 0); out.putInt(0)`).
    fn header(name: &str, persistent: bool) -> Vec<u8> {
        let mut b = vec![0, name.len() as u8];
        b.extend_from_slice(name.as_bytes());
        b.extend_from_slice(&[0, 0, 0, 7]);
        b.extend_from_slice(&[0, 0, 0, if persistent { 2 } else { 0 }, 0, 0, 0, 0]);
        b
    }

    fn body(persistent: bool, events: &[u8]) -> Vec<u8> {
        let mut b = header("chat", persistent);
        b.extend_from_slice(events);
        b
    }

    /// Decodes `bytes`, checks it equals `event` alone, and that encoding gives `bytes` back.
    fn check(events: &[u8], expect: Vec<SoEvent>) {
        let bytes = body(false, events);
        let msg = decode_so(&bytes, SoEncoding::Amf0, &SoDecodeLimits::default()).unwrap();
        assert_eq!(msg, SoMessage::new("chat", 7, false, expect));
        let mut out = Vec::new();
        encode_so(&msg, SoEncoding::Amf0, &mut out);
        assert_eq!(out, bytes);
    }

    fn key(k: &str) -> String {
        k.to_owned()
    }

    // Spec §7.1.3: Use, Release, Clear and Use Success carry no data (Red5 writes `putInt(0)`).
    #[test]
    fn events_without_data() {
        check(&[1, 0, 0, 0, 0], vec![SoEvent::Use]);
        check(&[2, 0, 0, 0, 0], vec![SoEvent::Release]);
        check(&[8, 0, 0, 0, 0], vec![SoEvent::Clear]);
        check(&[11, 0, 0, 0, 0], vec![SoEvent::UseSuccess]);
    }

    // Request Change / Change: u16 key, then an AMF0 value with its marker (Red5
    // `output.putString(key); Serializer.serialize(output, value)`).
    #[test]
    fn change_events() {
        let data = [
            3, 0, 0, 0, 14, 0, 1, b'x', 0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0, 0x01, 0x01,
        ];
        // Data of 14 bytes holds the key, a number and a boolean: one value too many.
        let bytes = body(false, &data);
        assert_eq!(
            decode_so(&bytes, SoEncoding::Amf0, &SoDecodeLimits::default()),
            Err(SoError::TrailingData { event: 3, extra: 2 })
        );

        check(
            &[
                3, 0, 0, 0, 12, 0, 1, b'x', 0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0,
            ],
            vec![SoEvent::RequestChange {
                key: key("x"),
                value: Amf0Value::Number(1.0),
            }],
        );
        check(
            &[4, 0, 0, 0, 8, 0, 2, b'h', b'i', 0x02, 0, 1, b'a'],
            vec![SoEvent::Change {
                key: key("hi"),
                value: Amf0Value::string("a"),
            }],
        );
    }

    // Success, Remove, Request Remove: the key only.
    #[test]
    fn key_events() {
        check(
            &[5, 0, 0, 0, 3, 0, 1, b'k'],
            vec![SoEvent::Success { key: key("k") }],
        );
        check(
            &[9, 0, 0, 0, 3, 0, 1, b'k'],
            vec![SoEvent::Remove { key: key("k") }],
        );
        check(
            &[10, 0, 0, 0, 3, 0, 1, b'k'],
            vec![SoEvent::RequestRemove { key: key("k") }],
        );
    }

    // Send Message: the handler as a full AMF0 string (marker 0x02 included; Red5's decoder notes
    // it), then each argument as an AMF0 value.
    #[test]
    fn send_message() {
        check(
            &[6, 0, 0, 0, 7, 0x02, 0, 4, b'p', b'i', b'n', b'g'],
            vec![SoEvent::SendMessage {
                handler: key("ping"),
                args: vec![],
            }],
        );
        check(
            &[
                6, 0, 0, 0, 12, 0x02, 0, 3, b'm', b's', b'g', 0x02, 0, 2, b'h', b'i', 0x05,
            ],
            vec![SoEvent::SendMessage {
                handler: key("msg"),
                args: vec![Amf0Value::string("hi"), Amf0Value::Null],
            }],
        );
        let not_string = body(false, &[6, 0, 0, 0, 1, 0x05]);
        assert_eq!(
            decode_so(&not_string, SoEncoding::Amf0, &SoDecodeLimits::default()),
            Err(SoError::BadHandler)
        );
    }

    // Status: code then level, both u16 strings without markers (Red5 `encodeSharedObject`
    // writes `putString(message); putString(status)` for the event ("error", code)).
    #[test]
    fn status() {
        let mut data = vec![7, 0, 0, 0, 37, 0, 28];
        data.extend_from_slice(b"SharedObject.BadPersistence!");
        data.extend_from_slice(&[0, 5]);
        data.extend_from_slice(b"error");
        check(
            &data,
            vec![SoEvent::Status {
                code: key("SharedObject.BadPersistence!"),
                level: key("error"),
            }],
        );
    }

    #[test]
    fn several_events_and_flags() {
        let events = [1, 0, 0, 0, 0, 8, 0, 0, 0, 0, 5, 0, 0, 0, 3, 0, 1, b'k'];
        let bytes = body(true, &events);
        let msg = decode_so(&bytes, SoEncoding::Amf0, &SoDecodeLimits::default()).unwrap();
        assert!(msg.persistent());
        assert_eq!(msg.events.len(), 3);
        // Odd flag bytes are kept and written back.
        let mut odd = bytes.clone();
        odd[2 + 4 + 4..2 + 4 + 12].copy_from_slice(&[0, 0, 0, 1, 9, 9, 9, 9]);
        let msg = decode_so(&odd, SoEncoding::Amf0, &SoDecodeLimits::default()).unwrap();
        assert!(!msg.persistent());
        let mut out = Vec::new();
        encode_so(&msg, SoEncoding::Amf0, &mut out);
        assert_eq!(out, odd);
    }

    #[test]
    fn amf3_framing() {
        let mut bytes = vec![0];
        bytes.extend(body(false, &[1, 0, 0, 0, 0]));
        let msg = decode_so(&bytes, SoEncoding::Amf3, &SoDecodeLimits::default()).unwrap();
        assert_eq!(msg.events, vec![SoEvent::Use]);
        let mut out = Vec::new();
        encode_so(&msg, SoEncoding::Amf3, &mut out);
        assert_eq!(out, bytes);
        bytes[0] = 3;
        assert_eq!(
            decode_so(&bytes, SoEncoding::Amf3, &SoDecodeLimits::default()),
            Err(SoError::UnknownFormat(3))
        );
        // An AMF3 value behind marker 0x11 (AMF3 integer 5).
        let data = [3, 0, 0, 0, 6, 0, 1, b'n', 0x11, 0x04, 0x05];
        let mut bytes = vec![0];
        bytes.extend(body(false, &data));
        let msg = decode_so(&bytes, SoEncoding::Amf3, &SoDecodeLimits::default()).unwrap();
        assert_eq!(
            msg.events,
            vec![SoEvent::RequestChange {
                key: key("n"),
                value: Amf0Value::Avmplus(crate::rtmp::amf::Amf3Value::Integer(5)),
            }]
        );
        assert_eq!(SoEncoding::from_message_type(16), Some(SoEncoding::Amf3));
        assert_eq!(SoEncoding::Amf0.message_type(), 19);
    }

    #[test]
    fn errors() {
        let l = SoDecodeLimits::default();
        let d = |b: &[u8]| decode_so(&body(false, b), SoEncoding::Amf0, &l);
        assert_eq!(d(&[12, 0, 0, 0, 0]), Err(SoError::BadEventType(12)));
        assert_eq!(d(&[0, 0, 0, 0, 0]), Err(SoError::BadEventType(0)));
        assert_eq!(
            d(&[1, 0, 0, 0, 1, 0]),
            Err(SoError::TrailingData { event: 1, extra: 1 })
        );
        assert_eq!(d(&[1, 0, 0, 0, 9]), Err(SoError::Truncated));
        assert_eq!(d(&[1, 0, 0]), Err(SoError::Truncated));
        assert_eq!(d(&[5, 0, 0, 0, 3, 0, 1, 0xFF]), Err(SoError::BadUtf8));
        assert_eq!(
            d(&[4, 0, 0, 0, 3, 0, 1, b'k']),
            Err(SoError::Amf(AmfError::Truncated))
        );
        assert_eq!(
            decode_so(&[0, 4, b'a'], SoEncoding::Amf0, &l),
            Err(SoError::Truncated)
        );
        assert_eq!(
            decode_so(&[], SoEncoding::Amf3, &l),
            Err(SoError::Truncated)
        );
        let tight = SoDecodeLimits {
            max_events: 2,
            max_name_len: 3,
            amf: AmfLimits::default(),
        };
        assert!(matches!(
            decode_so(&body(false, &[]), SoEncoding::Amf0, &tight),
            Err(SoError::TooLong {
                what: "name length",
                len: 4,
                max: 3
            })
        ));
        let tight = SoDecodeLimits {
            max_name_len: 10,
            ..tight
        };
        let three = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0];
        assert!(matches!(
            decode_so(&body(false, &three), SoEncoding::Amf0, &tight),
            Err(SoError::TooLong {
                what: "event count",
                ..
            })
        ));
    }

    /// The AMF budget is per message: two values that fit one by one do not fit together (each
    /// spends its encoded size, 9 bytes for a number).
    #[test]
    fn amf_budget_spans_the_message() {
        let change = [
            3, 0, 0, 0, 12, 0, 1, b'x', 0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0,
        ];
        let limits = SoDecodeLimits {
            amf: AmfLimits {
                max_nodes: 9,
                ..AmfLimits::default()
            },
            ..SoDecodeLimits::default()
        };
        assert!(decode_so(&body(false, &change), SoEncoding::Amf0, &limits).is_ok());
        let twice = [change, change].concat();
        assert_eq!(
            decode_so(&body(false, &twice), SoEncoding::Amf0, &limits),
            Err(SoError::Amf(AmfError::TooManyNodes))
        );
    }

    /// The fuzz seeds (`fuzz/seeds/shared_object/`, `[control byte][body]`, bit 0 = type 16) are
    /// valid bodies, so the fuzzer starts past the decoder.
    #[test]
    fn fuzz_seeds_decode() {
        let seeds: [&[u8]; 5] = [
            include_bytes!("../../fuzz/seeds/shared_object/use-change-send"),
            include_bytes!("../../fuzz/seeds/shared_object/persistent-use-remove"),
            include_bytes!("../../fuzz/seeds/shared_object/amf3-use-avmplus"),
            include_bytes!("../../fuzz/seeds/shared_object/many-slots"),
            include_bytes!("../../fuzz/seeds/shared_object/server-events"),
        ];
        for seed in seeds {
            let enc = if seed[0] & 1 == 1 {
                SoEncoding::Amf3
            } else {
                SoEncoding::Amf0
            };
            let msg = decode_so(&seed[1..], enc, &SoDecodeLimits::default()).unwrap();
            let mut out = Vec::new();
            encode_so(&msg, enc, &mut out);
            assert_eq!(out, &seed[1..]);
        }
    }

    pub(crate) fn arb_event() -> impl Strategy<Value = SoEvent> {
        prop_oneof![
            Just(SoEvent::Use),
            Just(SoEvent::Release),
            Just(SoEvent::Clear),
            Just(SoEvent::UseSuccess),
            (arb_key(), arb_amf0()).prop_map(|(key, value)| SoEvent::RequestChange { key, value }),
            (arb_key(), arb_amf0()).prop_map(|(key, value)| SoEvent::Change { key, value }),
            arb_key().prop_map(|key| SoEvent::Success { key }),
            arb_key().prop_map(|key| SoEvent::Remove { key }),
            arb_key().prop_map(|key| SoEvent::RequestRemove { key }),
            (arb_key(), proptest::collection::vec(arb_amf0(), 0..3))
                .prop_map(|(handler, args)| SoEvent::SendMessage { handler, args }),
            (arb_key(), arb_key()).prop_map(|(code, level)| SoEvent::Status { code, level }),
        ]
    }

    fn arb_message() -> impl Strategy<Value = SoMessage> {
        (
            arb_key(),
            any::<u32>(),
            any::<[u8; 8]>(),
            proptest::collection::vec(arb_event(), 0..6),
        )
            .prop_map(|(name, version, flags, events)| SoMessage {
                name,
                version,
                flags: SoFlags(flags),
                events,
            })
    }

    proptest! {
        #[test]
        fn prop_roundtrip(msg in arb_message(), amf3 in any::<bool>()) {
            let enc = if amf3 { SoEncoding::Amf3 } else { SoEncoding::Amf0 };
            let mut bytes = Vec::new();
            encode_so(&msg, enc, &mut bytes);
            let back = decode_so(&bytes, enc, &SoDecodeLimits::default()).unwrap();
            prop_assert_eq!(&back, &msg);
            let mut again = Vec::new();
            encode_so(&back, enc, &mut again);
            prop_assert_eq!(again, bytes);
            let events: usize = msg.events.iter().map(SoEvent::encoded_len).sum();
            prop_assert_eq!(header_len(&msg.name) + events + usize::from(amf3), back_len(&msg, enc));
        }

        #[test]
        fn mutated_never_panics(
            msg in arb_message(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = Vec::new();
            encode_so(&msg, SoEncoding::Amf0, &mut bytes);
            for (at, b) in flips {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            let end = cut.index(bytes.len() + 1);
            for enc in [SoEncoding::Amf0, SoEncoding::Amf3] {
                if let Ok(m) = decode_so(&bytes[..end], enc, &SoDecodeLimits::default()) {
                    let mut once = Vec::new();
                    encode_so(&m, enc, &mut once);
                    let m2 = decode_so(&once, enc, &SoDecodeLimits::default()).unwrap();
                    let mut twice = Vec::new();
                    encode_so(&m2, enc, &mut twice);
                    prop_assert_eq!(once, twice);
                }
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_so(&bytes, SoEncoding::Amf0, &SoDecodeLimits::default());
            let _ = decode_so(&bytes, SoEncoding::Amf3, &SoDecodeLimits::default());
        }
    }

    fn back_len(msg: &SoMessage, enc: SoEncoding) -> usize {
        let mut out = Vec::new();
        encode_so(msg, enc, &mut out);
        out.len()
    }
}
