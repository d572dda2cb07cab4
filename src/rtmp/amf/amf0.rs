//! AMF0, the value encoding of RTMP command (type 20) and data (type 18) messages.
//! Also frames RTMP AMF3 messages (types 17 and 15): a format byte, then AMF0 values that may switch to AMF3.

use super::amf3::{Amf3Value, encode_amf3};
use super::decoder::{AmfError, AmfLimits, Decoder, MAX_PREALLOC, truncate_str};

const NUMBER: u8 = 0x00;
const BOOLEAN: u8 = 0x01;
const STRING: u8 = 0x02;
const OBJECT: u8 = 0x03;
const MOVIECLIP: u8 = 0x04;
const NULL: u8 = 0x05;
const UNDEFINED: u8 = 0x06;
const REFERENCE: u8 = 0x07;
const ECMA_ARRAY: u8 = 0x08;
const OBJECT_END: u8 = 0x09;
const STRICT_ARRAY: u8 = 0x0A;
const DATE: u8 = 0x0B;
const LONG_STRING: u8 = 0x0C;
const UNSUPPORTED: u8 = 0x0D;
const RECORDSET: u8 = 0x0E;
const XML_DOCUMENT: u8 = 0x0F;
const TYPED_OBJECT: u8 = 0x10;
const AVMPLUS: u8 = 0x11;

/// The format byte that starts the payload of RTMP message types 17 and 15.
const AMF3_MESSAGE_FORMAT: u8 = 0x00;

/// One AMF0 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Amf0Value {
    Number(f64),
    Boolean(bool),
    /// Encoded as 0x02, or as 0x0C (long string) when longer than 0xFFFF bytes; both decode here.
    String(String),
    /// Anonymous object with ordered properties.
    Object(Vec<(String, Amf0Value)>),
    Null,
    Undefined,
    /// Associative array (0x08); the wire count is a hint, entries are read until object-end.
    EcmaArray(Vec<(String, Amf0Value)>),
    StrictArray(Vec<Amf0Value>),
    /// Milliseconds since the epoch (UTC) and the timezone field (the spec says it should be 0).
    Date {
        millis: f64,
        timezone: i16,
    },
    XmlDocument(String),
    TypedObject {
        class_name: String,
        properties: Vec<(String, Amf0Value)>,
    },
    Unsupported,
    /// Marker 0x11: the value is encoded in AMF3.
    Avmplus(Amf3Value),
}

impl Amf0Value {
    /// Text of a `String` or `XmlDocument`, also through `Avmplus` (String, XmlDocument, Xml).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf0Value::String(s) | Amf0Value::XmlDocument(s) => Some(s),
            Amf0Value::Avmplus(v) => v.as_str(),
            _ => None,
        }
    }

    /// A `Number`, also through `Avmplus` (Integer or Double).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Amf0Value::Number(n) => Some(*n),
            Amf0Value::Avmplus(v) => v.as_f64(),
            _ => None,
        }
    }

    /// A `Boolean`, also through `Avmplus`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Amf0Value::Boolean(b) => Some(*b),
            Amf0Value::Avmplus(v) => v.as_bool(),
            _ => None,
        }
    }

    /// Properties of an `Object`, `EcmaArray` or `TypedObject`.
    pub fn properties(&self) -> Option<&[(String, Amf0Value)]> {
        match self {
            Amf0Value::Object(p)
            | Amf0Value::EcmaArray(p)
            | Amf0Value::TypedObject { properties: p, .. } => Some(p),
            _ => None,
        }
    }

    /// First property named `key` of an `Object`, `EcmaArray` or `TypedObject`.
    pub fn get(&self, key: &str) -> Option<&Amf0Value> {
        self.properties()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Builds an anonymous `Object` from ordered pairs.
    pub fn object<'a>(pairs: impl IntoIterator<Item = (&'a str, Amf0Value)>) -> Amf0Value {
        Amf0Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    pub fn string(s: impl Into<String>) -> Amf0Value {
        Amf0Value::String(s.into())
    }
}

/// Decodes one AMF0 value from the start of `buf`; returns it and the bytes consumed.
pub fn decode_amf0(buf: &[u8], limits: &AmfLimits) -> Result<(Amf0Value, usize), AmfError> {
    let mut decoder = Decoder::new(buf, limits);
    let value = decoder.amf0_value()?;
    Ok((value, decoder.position()))
}

/// Decodes consecutive AMF0 values until `buf` is exhausted (one reference table for the whole buffer, as in an RTMP command message).
///
/// All `0x11` (avmplus) values of the buffer share one AMF3 context, so a later one may refer to
/// strings, objects or traits of an earlier one (as Red5 and FluorineFx decode a message body).
/// References are returned as copies; a reference to an object that is still being decoded
/// (a cyclic graph) is refused with [`AmfError::CyclicReference`].
///
/// Decoder leniency, chosen to match what real encoders produce and what ffmpeg accepts:
/// * The ECMA-array count is only a capacity hint; entries are read until the object-end, as
///   ffmpeg's FLV metadata parser does, because several encoders write a wrong count.
/// * A missing object-end at the very end of the buffer ends the object (also a bare `00 00`
///   key without the `09`): ffmpeg's AMF skipper treats reads past the end as zero, i.e. as the
///   end marker, and some encoders drop the trailer of the last object of a message.
/// * An empty key followed by anything other than `09` is an ordinary property named "".
/// * Booleans: any non-zero byte is `true`.
///
/// Movieclip (0x04) and recordset (0x0E) are reserved by the spec and refused; `09` where a value
/// is expected is refused; unknown markers are refused.
pub fn decode_amf0_all(buf: &[u8], limits: &AmfLimits) -> Result<Vec<Amf0Value>, AmfError> {
    let mut decoder = Decoder::new(buf, limits);
    let mut values = Vec::new();
    while decoder.remaining() > 0 {
        values.push(decoder.amf0_value()?);
    }
    Ok(values)
}

/// Decodes the payload of an RTMP AMF3 command (type 17) or AMF3 data (type 15) message.
///
/// The payload is a format byte `0x00` followed by AMF0 values, any of which may be `0x11` +
/// one AMF3 value. librtmp and Red5 skip the first byte unconditionally; here it is skipped
/// only when it is `0x00`. Any other first byte means the sender left the format byte out
/// (seen from some non-Flash clients), and the payload is decoded from its first byte. The
/// one ambiguous case, no format byte and a first value that is an AMF0 number, does not occur
/// in practice: commands and data messages start with a string (the command or handler name).
pub fn decode_amf3_message(payload: &[u8], limits: &AmfLimits) -> Result<Vec<Amf0Value>, AmfError> {
    let body = match payload.split_first() {
        Some((&AMF3_MESSAGE_FORMAT, rest)) => rest,
        _ => payload,
    };
    decode_amf0_all(body, limits)
}

/// Encodes the payload of an RTMP AMF3 message (type 17 or 15): `0x00`, then the AMF0 values.
pub fn encode_amf3_message(values: &[Amf0Value]) -> Vec<u8> {
    let mut out = vec![AMF3_MESSAGE_FORMAT];
    for value in values {
        encode_amf0(value, &mut out);
    }
    out
}

/// Encodes consecutive AMF0 values (an RTMP command or data message body).
pub fn encode_amf0_all(values: &[Amf0Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for value in values {
        encode_amf0(value, &mut out);
    }
    out
}

/// Appends one AMF0 value to `out`.
///
/// Never writes references (AMF0 `0x07`, AMF3 string/object/trait references): peers disagree
/// on whether AMF3 tables are reset per avmplus value or shared by the message, and inline-only
/// output decodes identically under both readings.
///
/// Fields that cannot hold the data are truncated rather than corrupting the stream: object
/// keys and class names longer than 0xFFFF bytes (u16 length), and long strings / XML over
/// 4 GiB (u32 length), are cut at a character boundary.
pub fn encode_amf0(value: &Amf0Value, out: &mut Vec<u8>) {
    match value {
        Amf0Value::Number(n) => {
            out.push(NUMBER);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Amf0Value::Boolean(b) => out.extend_from_slice(&[BOOLEAN, u8::from(*b)]),
        Amf0Value::String(s) => {
            if s.len() <= usize::from(u16::MAX) {
                out.push(STRING);
                write_utf8(out, s);
            } else {
                out.push(LONG_STRING);
                write_utf8_long(out, s);
            }
        }
        Amf0Value::Object(props) => {
            out.push(OBJECT);
            write_properties(out, props);
        }
        Amf0Value::Null => out.push(NULL),
        Amf0Value::Undefined => out.push(UNDEFINED),
        Amf0Value::EcmaArray(props) => {
            out.push(ECMA_ARRAY);
            out.extend_from_slice(&len_u32(props.len()).to_be_bytes());
            write_properties(out, props);
        }
        Amf0Value::StrictArray(items) => {
            out.push(STRICT_ARRAY);
            let count = len_u32(items.len());
            out.extend_from_slice(&count.to_be_bytes());
            for item in items.iter().take(count as usize) {
                encode_amf0(item, out);
            }
        }
        Amf0Value::Date { millis, timezone } => {
            out.push(DATE);
            out.extend_from_slice(&millis.to_be_bytes());
            out.extend_from_slice(&timezone.to_be_bytes());
        }
        Amf0Value::XmlDocument(s) => {
            out.push(XML_DOCUMENT);
            write_utf8_long(out, s);
        }
        Amf0Value::TypedObject {
            class_name,
            properties,
        } => {
            out.push(TYPED_OBJECT);
            write_utf8(out, class_name);
            write_properties(out, properties);
        }
        Amf0Value::Unsupported => out.push(UNSUPPORTED),
        Amf0Value::Avmplus(v) => {
            out.push(AVMPLUS);
            encode_amf3(v, out);
        }
    }
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

fn write_utf8(out: &mut Vec<u8>, s: &str) {
    let s = truncate_str(s, usize::from(u16::MAX));
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_utf8_long(out: &mut Vec<u8>, s: &str) {
    let s = truncate_str(s, u32::MAX as usize);
    out.extend_from_slice(&len_u32(s.len()).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_properties(out: &mut Vec<u8>, props: &[(String, Amf0Value)]) {
    for (key, value) in props {
        write_utf8(out, key);
        encode_amf0(value, out);
    }
    out.extend_from_slice(&[0x00, 0x00, OBJECT_END]);
}

impl Decoder<'_> {
    pub(crate) fn amf0_value(&mut self) -> Result<Amf0Value, AmfError> {
        let start = self.position();
        let marker = self.read_u8()?;
        if marker == REFERENCE {
            let index = self.read_u16()?;
            let target = self.amf0_object_start(u32::from(index))?;
            // The copy is charged node by node while it is re-decoded.
            return self.replay(target, Self::amf0_value);
        }
        self.charge_node()?;
        let value = match marker {
            NUMBER => Amf0Value::Number(self.read_f64()?),
            BOOLEAN => Amf0Value::Boolean(self.read_u8()? != 0),
            STRING => {
                let len = usize::from(self.read_u16()?);
                Amf0Value::String(self.amf0_string(len)?)
            }
            LONG_STRING => {
                let len = self.read_u32()? as usize;
                Amf0Value::String(self.amf0_string(len)?)
            }
            XML_DOCUMENT => {
                let len = self.read_u32()? as usize;
                Amf0Value::XmlDocument(self.amf0_string(len)?)
            }
            NULL => Amf0Value::Null,
            UNDEFINED => Amf0Value::Undefined,
            UNSUPPORTED => Amf0Value::Unsupported,
            DATE => Amf0Value::Date {
                millis: self.read_f64()?,
                timezone: self.read_i16()?,
            },
            OBJECT => Amf0Value::Object(self.amf0_complex(start, Self::amf0_properties)?),
            ECMA_ARRAY => {
                // The count is an untrusted hint: not even used to preallocate, since an empty
                // array claiming 2^32 entries would otherwise pin that capacity in the output.
                let _hint = self.read_u32()?;
                Amf0Value::EcmaArray(self.amf0_complex(start, Self::amf0_properties)?)
            }
            TYPED_OBJECT => {
                let len = usize::from(self.read_u16()?);
                let class_name = self.amf0_string(len)?;
                let properties = self.amf0_complex(start, Self::amf0_properties)?;
                Amf0Value::TypedObject {
                    class_name,
                    properties,
                }
            }
            STRICT_ARRAY => {
                let count = self.read_u32()? as usize;
                self.check_count(count, 1)?;
                Amf0Value::StrictArray(self.amf0_complex(start, |d| {
                    let mut items = Vec::with_capacity(count.min(MAX_PREALLOC));
                    for _ in 0..count {
                        items.push(d.amf0_value()?);
                    }
                    Ok(items)
                })?)
            }
            AVMPLUS => Amf0Value::Avmplus(self.amf3_value()?),
            MOVIECLIP | RECORDSET => return Err(AmfError::UnsupportedMarker(marker)),
            OBJECT_END => return Err(AmfError::UnexpectedObjectEnd),
            other => return Err(AmfError::UnknownMarker(other)),
        };
        Ok(value)
    }

    fn amf0_string(&mut self, len: usize) -> Result<String, AmfError> {
        let s = self.read_str(len)?;
        self.owned(s)
    }

    /// Decodes the body of a referenceable value: one nesting level, registered in the
    /// reference table before its children (so they get later indices) and marked complete after.
    fn amf0_complex<T>(
        &mut self,
        start: usize,
        body: impl FnOnce(&mut Self) -> Result<T, AmfError>,
    ) -> Result<T, AmfError> {
        self.enter()?;
        let slot = self.register_amf0_object(start);
        let value = body(self)?;
        self.complete_amf0_object(slot);
        self.leave();
        Ok(value)
    }

    /// Properties until the empty key + object-end. Grown on demand: nothing on the wire says
    /// how many there are (the ECMA count is only a hint).
    fn amf0_properties(&mut self) -> Result<Vec<(String, Amf0Value)>, AmfError> {
        let mut props = Vec::new();
        loop {
            match self.remaining() {
                // Missing object-end at the end of the buffer: accept (see module docs).
                0 => break,
                1 if self.peek_u8() == Some(0) => {
                    self.read_u8()?;
                    break;
                }
                _ => {}
            }
            let key_len = usize::from(self.read_u16()?);
            if key_len == 0 {
                match self.peek_u8() {
                    None => break,
                    Some(OBJECT_END) => {
                        self.read_u8()?;
                        break;
                    }
                    // Not an end marker: a property whose name is the empty string.
                    Some(_) => {}
                }
            }
            self.check_growth(props.len())?;
            let key = self.amf0_string(key_len)?;
            let value = self.amf0_value()?;
            props.push((key, value));
        }
        Ok(props)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rtmp::amf::amf3::tests::{arb_amf3, arb_f64};
    use proptest::prelude::*;
    use std::time::{Duration, Instant};

    fn limits() -> AmfLimits {
        AmfLimits::default()
    }

    fn roundtrip(value: Amf0Value) {
        let bytes = encode_amf0_all(std::slice::from_ref(&value));
        let decoded = decode_amf0_all(&bytes, &limits()).expect("decodes");
        assert_eq!(decoded, vec![value]);
        let (single, used) = decode_amf0(&bytes, &limits()).expect("decodes");
        assert_eq!(used, bytes.len());
        assert_eq!(single, decoded[0]);
    }

    /// Test-side byte builder, independent of the encoder under test.
    #[derive(Default)]
    struct Bytes(Vec<u8>);

    impl Bytes {
        fn raw(mut self, b: &[u8]) -> Self {
            self.0.extend_from_slice(b);
            self
        }
        fn key(self, k: &str) -> Self {
            let len = (k.len() as u16).to_be_bytes();
            self.raw(&len).raw(k.as_bytes())
        }
        fn string(self, s: &str) -> Self {
            self.raw(&[0x02]).key(s)
        }
        fn number(self, n: f64) -> Self {
            self.raw(&[0x00]).raw(&n.to_be_bytes())
        }
        fn boolean(self, b: bool) -> Self {
            self.raw(&[0x01, b as u8])
        }
        fn end(self) -> Self {
            self.raw(&[0x00, 0x00, 0x09])
        }
    }

    #[test]
    fn roundtrip_every_marker() {
        roundtrip(Amf0Value::Number(1.5));
        roundtrip(Amf0Value::Number(f64::NEG_INFINITY));
        roundtrip(Amf0Value::Boolean(true));
        roundtrip(Amf0Value::Boolean(false));
        roundtrip(Amf0Value::string(""));
        roundtrip(Amf0Value::string("héllo wörld"));
        roundtrip(Amf0Value::object([
            ("a", Amf0Value::Null),
            ("", Amf0Value::Undefined),
        ]));
        roundtrip(Amf0Value::Object(vec![]));
        roundtrip(Amf0Value::Null);
        roundtrip(Amf0Value::Undefined);
        roundtrip(Amf0Value::EcmaArray(vec![
            ("duration".into(), Amf0Value::Number(0.0)),
            ("encoder".into(), Amf0Value::string("Lavf")),
        ]));
        roundtrip(Amf0Value::StrictArray(vec![
            Amf0Value::Number(1.0),
            Amf0Value::StrictArray(vec![]),
        ]));
        roundtrip(Amf0Value::Date {
            millis: 1_700_000_000_000.0,
            timezone: -60,
        });
        roundtrip(Amf0Value::XmlDocument("<a b=\"c\"/>".into()));
        roundtrip(Amf0Value::TypedObject {
            class_name: "com.example.Foo".into(),
            properties: vec![("x".into(), Amf0Value::Number(2.0))],
        });
        roundtrip(Amf0Value::Unsupported);
        roundtrip(Amf0Value::Avmplus(Amf3Value::String("x".into())));
        roundtrip(Amf0Value::Avmplus(Amf3Value::Array {
            assoc: vec![],
            dense: vec![Amf3Value::Integer(-5)],
        }));
    }

    #[test]
    fn long_string_uses_0x0c() {
        let s = "x".repeat(70_000);
        let bytes = encode_amf0_all(&[Amf0Value::string(s.clone())]);
        assert_eq!(&bytes[..5], &[0x0C, 0x00, 0x01, 0x11, 0x70]);
        assert_eq!(bytes.len(), 5 + 70_000);
        roundtrip(Amf0Value::string(s));
        // Exactly 0xFFFF bytes still fits a short string.
        let bytes = encode_amf0_all(&[Amf0Value::string("y".repeat(0xFFFF))]);
        assert_eq!(&bytes[..3], &[0x02, 0xFF, 0xFF]);
        // A short string sent as 0x0C decodes to the same value.
        assert_eq!(
            decode_amf0_all(&[0x0C, 0, 0, 0, 2, b'h', b'i'], &limits()),
            Ok(vec![Amf0Value::string("hi")])
        );
    }

    #[test]
    fn nan_keeps_its_bits() {
        let nan = f64::from_bits(0x7FF8_0000_0000_0001);
        let bytes = encode_amf0_all(&[Amf0Value::Number(nan)]);
        match decode_amf0_all(&bytes, &limits()).unwrap().as_slice() {
            [Amf0Value::Number(n)] => assert_eq!(n.to_bits(), nan.to_bits()),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn known_primitive_bytes() {
        let bytes = encode_amf0_all(&[Amf0Value::string("connect"), Amf0Value::Number(1.0)]);
        assert_eq!(
            bytes,
            [
                0x02, 0x00, 0x07, b'c', b'o', b'n', b'n', b'e', b'c', b't', 0x00, 0x3F, 0xF0, 0, 0,
                0, 0, 0, 0
            ]
        );
        assert_eq!(encode_amf0_all(&[Amf0Value::Boolean(true)]), [0x01, 0x01]);
        assert_eq!(encode_amf0_all(&[Amf0Value::Null]), [0x05]);
        assert_eq!(
            encode_amf0_all(&[Amf0Value::Object(vec![])]),
            [0x03, 0x00, 0x00, 0x09]
        );
        assert_eq!(
            encode_amf0_all(&[Amf0Value::Date {
                millis: 0.0,
                timezone: 0
            }]),
            [0x0B, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        // Any non-zero byte is true.
        assert_eq!(
            decode_amf0_all(&[0x01, 0x7F], &limits()),
            Ok(vec![Amf0Value::Boolean(true)])
        );
    }

    fn ffmpeg_connect_bytes() -> Vec<u8> {
        Bytes::default()
            .string("connect")
            .number(1.0)
            .raw(&[0x03])
            .key("app")
            .string("live")
            .key("flashVer")
            .string("LNX 9,0,124,2")
            .key("tcUrl")
            .string("rtmp://127.0.0.1:1935/live")
            .key("fpad")
            .boolean(false)
            .key("capabilities")
            .number(15.0)
            .key("audioCodecs")
            .number(4071.0)
            .key("videoCodecs")
            .number(252.0)
            .key("videoFunction")
            .number(1.0)
            .key("objectEncoding")
            .number(0.0)
            .end()
            .0
    }

    fn ffmpeg_connect_values() -> Vec<Amf0Value> {
        vec![
            Amf0Value::string("connect"),
            Amf0Value::Number(1.0),
            Amf0Value::object([
                ("app", Amf0Value::string("live")),
                ("flashVer", Amf0Value::string("LNX 9,0,124,2")),
                ("tcUrl", Amf0Value::string("rtmp://127.0.0.1:1935/live")),
                ("fpad", Amf0Value::Boolean(false)),
                ("capabilities", Amf0Value::Number(15.0)),
                ("audioCodecs", Amf0Value::Number(4071.0)),
                ("videoCodecs", Amf0Value::Number(252.0)),
                ("videoFunction", Amf0Value::Number(1.0)),
                ("objectEncoding", Amf0Value::Number(0.0)),
            ]),
        ]
    }

    #[test]
    fn ffmpeg_connect_command() {
        let bytes = ffmpeg_connect_bytes();
        // Spot-check the hand-built framing: "connect", then 1.0, then the object marker.
        assert_eq!(&bytes[..3], &[0x02, 0x00, 0x07]);
        assert_eq!(&bytes[10..12], &[0x00, 0x3F]);
        assert_eq!(bytes[19], 0x03);
        assert_eq!(&bytes[bytes.len() - 3..], &[0, 0, 9]);

        let values = decode_amf0_all(&bytes, &limits()).unwrap();
        assert_eq!(values, ffmpeg_connect_values());
        assert_eq!(values[0].as_str(), Some("connect"));
        assert_eq!(values[1].as_f64(), Some(1.0));
        let obj = &values[2];
        assert_eq!(obj.get("app").and_then(Amf0Value::as_str), Some("live"));
        assert_eq!(
            obj.get("tcUrl").and_then(Amf0Value::as_str),
            Some("rtmp://127.0.0.1:1935/live")
        );
        assert_eq!(obj.get("fpad").and_then(Amf0Value::as_bool), Some(false));
        assert_eq!(
            obj.get("objectEncoding").and_then(Amf0Value::as_f64),
            Some(0.0)
        );
        assert_eq!(obj.get("missing"), None);
        assert_eq!(encode_amf0_all(&values), bytes);
    }

    #[test]
    fn accessors() {
        let v = Amf0Value::Avmplus(Amf3Value::Integer(7));
        assert_eq!(v.as_f64(), Some(7.0));
        assert_eq!(
            Amf0Value::Avmplus(Amf3Value::String("s".into())).as_str(),
            Some("s")
        );
        assert_eq!(
            Amf0Value::Avmplus(Amf3Value::Boolean(true)).as_bool(),
            Some(true)
        );
        assert_eq!(Amf0Value::XmlDocument("<x/>".into()).as_str(), Some("<x/>"));
        assert_eq!(Amf0Value::Null.as_str(), None);
        assert_eq!(Amf0Value::Null.as_f64(), None);
        assert_eq!(Amf0Value::Number(1.0).as_bool(), None);
        let dup = Amf0Value::EcmaArray(vec![
            ("k".into(), Amf0Value::Number(1.0)),
            ("k".into(), Amf0Value::Number(2.0)),
        ]);
        assert_eq!(dup.get("k"), Some(&Amf0Value::Number(1.0)));
        let typed = Amf0Value::TypedObject {
            class_name: "C".into(),
            properties: vec![("p".into(), Amf0Value::Null)],
        };
        assert_eq!(typed.get("p"), Some(&Amf0Value::Null));
        assert_eq!(Amf0Value::StrictArray(vec![]).get("p"), None);
        assert_eq!(Amf0Value::string(String::from("a")), Amf0Value::string("a"));
    }

    #[test]
    fn references_resolve_to_copies() {
        // [obj {a: 1}, ref 0] -- a top-level object, then a reference to it.
        let bytes = Bytes::default()
            .raw(&[0x03])
            .key("a")
            .number(1.0)
            .end()
            .raw(&[0x07, 0x00, 0x00])
            .0;
        let values = decode_amf0_all(&bytes, &limits()).unwrap();
        let obj = Amf0Value::object([("a", Amf0Value::Number(1.0))]);
        assert_eq!(values, vec![obj.clone(), obj]);
    }

    #[test]
    fn reference_indices_follow_decode_order() {
        // outer(0) = { inner(1) = [ ecma(2) {} ], t(3) = typed {} , r: ref 1, s: ref 2, u: ref 3 }
        let bytes = Bytes::default()
            .raw(&[0x03])
            .key("inner")
            .raw(&[0x0A, 0, 0, 0, 1])
            .raw(&[0x08, 0, 0, 0, 0])
            .end()
            .key("t")
            .raw(&[0x10])
            .key("T")
            .end()
            .key("r")
            .raw(&[0x07, 0, 1])
            .key("s")
            .raw(&[0x07, 0, 2])
            .key("u")
            .raw(&[0x07, 0, 3])
            .end()
            .0;
        let v = decode_amf0_all(&bytes, &limits()).unwrap();
        let inner = Amf0Value::StrictArray(vec![Amf0Value::EcmaArray(vec![])]);
        let t = Amf0Value::TypedObject {
            class_name: "T".into(),
            properties: vec![],
        };
        assert_eq!(v[0].get("r"), Some(&inner));
        assert_eq!(v[0].get("s"), Some(&Amf0Value::EcmaArray(vec![])));
        assert_eq!(v[0].get("u"), Some(&t));
    }

    #[test]
    fn bad_and_cyclic_references() {
        assert_eq!(
            decode_amf0_all(&[0x07, 0x00, 0x00], &limits()),
            Err(AmfError::BadReference(0))
        );
        // { self: ref 0 } -- the object refers to itself while being decoded.
        let bytes = Bytes::default()
            .raw(&[0x03])
            .key("self")
            .raw(&[0x07, 0, 0])
            .end()
            .0;
        assert_eq!(
            decode_amf0_all(&bytes, &limits()),
            Err(AmfError::CyclicReference(0))
        );
        assert_eq!(
            decode_amf0_all(&[0x07, 0x00], &limits()),
            Err(AmfError::Truncated)
        );
    }

    #[test]
    fn lenient_object_end() {
        let expected = vec![Amf0Value::object([("a", Amf0Value::Null)])];
        // Trailer missing entirely at the end of the buffer.
        let bytes = Bytes::default().raw(&[0x03]).key("a").raw(&[0x05]).0;
        assert_eq!(decode_amf0_all(&bytes, &limits()), Ok(expected.clone()));
        // Empty key present but the 0x09 is missing.
        let bytes = Bytes::default()
            .raw(&[0x03])
            .key("a")
            .raw(&[0x05, 0x00, 0x00])
            .0;
        assert_eq!(decode_amf0_all(&bytes, &limits()), Ok(expected.clone()));
        // Only the first byte of the empty key.
        let bytes = Bytes::default().raw(&[0x03]).key("a").raw(&[0x05, 0x00]).0;
        assert_eq!(decode_amf0_all(&bytes, &limits()), Ok(expected));
        // But a stray non-zero byte is still truncation.
        let bytes = Bytes::default().raw(&[0x03]).key("a").raw(&[0x05, 0x01]).0;
        assert_eq!(decode_amf0_all(&bytes, &limits()), Err(AmfError::Truncated));
        // A key without a value is truncation.
        let bytes = Bytes::default().raw(&[0x03]).key("a").0;
        assert_eq!(decode_amf0_all(&bytes, &limits()), Err(AmfError::Truncated));
    }

    #[test]
    fn ecma_count_is_only_a_hint() {
        // Count says 0 but two entries follow (seen in the wild), and a huge count with one entry.
        for count in [0u32, 2, 0xFFFF_FFFF] {
            let bytes = Bytes::default()
                .raw(&[0x08])
                .raw(&count.to_be_bytes())
                .key("a")
                .number(1.0)
                .key("b")
                .boolean(true)
                .end()
                .0;
            assert_eq!(
                decode_amf0_all(&bytes, &limits()),
                Ok(vec![Amf0Value::EcmaArray(vec![
                    ("a".into(), Amf0Value::Number(1.0)),
                    ("b".into(), Amf0Value::Boolean(true)),
                ])])
            );
        }
    }

    #[test]
    fn bogus_ecma_count_does_not_pin_memory() {
        // An empty ECMA array claiming 2^32 - 1 entries, followed by plenty of bytes, and
        // referenced 1000 times: every copy must stay as small as the real (empty) content.
        let mut b = Bytes::default()
            .raw(&[0x08, 0xFF, 0xFF, 0xFF, 0xFF])
            .end()
            .raw(&[0x0A])
            .raw(&1000u32.to_be_bytes());
        for _ in 0..1000 {
            b = b.raw(&[0x07, 0x00, 0x00]);
        }
        let values = decode_amf0_all(&b.0, &limits()).unwrap();
        let Amf0Value::StrictArray(copies) = &values[1] else {
            panic!("expected strict array");
        };
        for v in std::iter::once(&values[0]).chain(copies) {
            let Amf0Value::EcmaArray(props) = v else {
                panic!("expected ECMA array, got {v:?}");
            };
            assert_eq!(props.capacity(), 0);
        }
    }

    #[test]
    fn onmetadata_data_message() {
        let bytes = Bytes::default()
            .string("@setDataFrame")
            .string("onMetaData")
            .raw(&[0x08, 0, 0, 0, 3])
            .key("width")
            .number(1280.0)
            .key("height")
            .number(720.0)
            .key("encoder")
            .string("obs-output module (libobs version 30.0.0)")
            .end()
            .0;
        let values = decode_amf0_all(&bytes, &limits()).unwrap();
        assert_eq!(values.len(), 3);
        assert_eq!(
            values[2].get("width").and_then(Amf0Value::as_f64),
            Some(1280.0)
        );
        assert_eq!(encode_amf0_all(&values), bytes);
    }

    #[test]
    fn refused_markers() {
        for m in [0x04u8, 0x0E] {
            assert_eq!(
                decode_amf0_all(&[m], &limits()),
                Err(AmfError::UnsupportedMarker(m))
            );
        }
        assert_eq!(
            decode_amf0_all(&[0x09], &limits()),
            Err(AmfError::UnexpectedObjectEnd)
        );
        for m in [0x12u8, 0x7F, 0xFF] {
            assert_eq!(
                decode_amf0_all(&[m], &limits()),
                Err(AmfError::UnknownMarker(m))
            );
        }
        assert_eq!(
            decode_amf0_all(&[0x02, 0x00, 0x02, 0xC3, 0x28], &limits()),
            Err(AmfError::InvalidUtf8)
        );
        assert_eq!(
            decode_amf0_all(&[0x00, 0x3F, 0xF0], &limits()),
            Err(AmfError::Truncated)
        );
        assert_eq!(
            decode_amf0_all(&[0x0B, 0, 0, 0, 0, 0, 0, 0, 0, 0], &limits()),
            Err(AmfError::Truncated)
        );
    }

    #[test]
    fn huge_declared_lengths_with_tiny_buffers() {
        let l = limits();
        assert_eq!(
            decode_amf0_all(&[0x0C, 0xFF, 0xFF, 0xFF, 0xFF, b'a'], &l),
            Err(AmfError::StringTooLong(0xFFFF_FFFF))
        );
        assert_eq!(
            decode_amf0_all(&[0x0F, 0x7F, 0xFF, 0xFF, 0xFF], &l),
            Err(AmfError::StringTooLong(0x7FFF_FFFF))
        );
        assert_eq!(
            decode_amf0_all(&[0x0C, 0x00, 0x10, 0x00, 0x00, b'a'], &l),
            Err(AmfError::Truncated)
        );
        assert_eq!(
            decode_amf0_all(&[0x02, 0xFF, 0xFF, b'a'], &l),
            Err(AmfError::Truncated)
        );
        assert_eq!(
            decode_amf0_all(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x05], &l),
            Err(AmfError::CollectionTooLarge(0xFFFF_FFFF))
        );
        assert_eq!(
            decode_amf0_all(&[0x0A, 0x00, 0x00, 0xFF, 0xFF, 0x05], &l),
            Err(AmfError::Truncated)
        );
        let tight = AmfLimits {
            max_string_len: 3,
            ..l
        };
        assert_eq!(
            decode_amf0_all(&[0x02, 0x00, 0x04, b'a', b'b', b'c', b'd'], &tight),
            Err(AmfError::StringTooLong(4))
        );
    }

    #[test]
    fn collection_limit_on_terminated_objects() {
        let tight = AmfLimits {
            max_collection_len: 2,
            ..limits()
        };
        let mut b = Bytes::default().raw(&[0x03]);
        for k in ["a", "b", "c"] {
            b = b.key(k).raw(&[0x05]);
        }
        let bytes = b.end().0;
        assert_eq!(
            decode_amf0_all(&bytes, &tight),
            Err(AmfError::CollectionTooLarge(3))
        );
        assert!(decode_amf0_all(&bytes, &limits()).is_ok());
    }

    #[test]
    fn depth_bomb() {
        let t = Instant::now();
        let bytes: Vec<u8> = [0x0A, 0, 0, 0, 1].repeat(200_000);
        assert_eq!(
            decode_amf0_all(&bytes, &limits()),
            Err(AmfError::DepthExceeded)
        );
        let objects: Vec<u8> = [0x03, 0x00, 0x01, b'a'].repeat(200_000);
        assert_eq!(
            decode_amf0_all(&objects, &limits()),
            Err(AmfError::DepthExceeded)
        );
        // Through the AMF3 switch: avmplus + nested AMF3 arrays.
        let mut mixed = vec![0x0A, 0, 0, 0, 1, 0x11];
        mixed.extend([0x09, 0x03, 0x01].repeat(200_000));
        assert_eq!(
            decode_amf0_all(&mixed, &limits()),
            Err(AmfError::DepthExceeded)
        );
        assert!(t.elapsed() < Duration::from_secs(5));
        // Exactly max_depth levels are fine.
        let mut ok = [0x0A, 0, 0, 0, 1].repeat(31);
        ok.extend([0x0A, 0, 0, 0, 0]);
        assert!(decode_amf0_all(&ok, &limits()).is_ok());
        let mut too_deep = [0x0A, 0, 0, 0, 1].repeat(32);
        too_deep.extend([0x0A, 0, 0, 0, 0]);
        assert_eq!(
            decode_amf0_all(&too_deep, &limits()),
            Err(AmfError::DepthExceeded)
        );
    }

    /// Level 0 is a strict array of `fan` nulls; level k is a strict array of `fan` references
    /// to level k-1. Decoded naively that is fan^(levels+1) values from a few KB.
    fn reference_bomb(fan: u32, levels: u16) -> Vec<u8> {
        let mut b = Bytes::default().raw(&[0x0A]).raw(&fan.to_be_bytes());
        for _ in 0..fan {
            b = b.raw(&[0x05]);
        }
        for level in 1..=levels {
            b = b.raw(&[0x0A]).raw(&fan.to_be_bytes());
            let target = (level - 1).to_be_bytes();
            for _ in 0..fan {
                b = b.raw(&[0x07]).raw(&target);
            }
        }
        b.0
    }

    #[test]
    fn reference_expansion_bomb() {
        let t = Instant::now();
        let bytes = reference_bomb(1000, 6);
        assert!(bytes.len() < 20_000);
        assert_eq!(
            decode_amf0_all(&bytes, &limits()),
            Err(AmfError::TooManyNodes)
        );
        // Small expansions are fine and produce exact copies.
        let small = decode_amf0_all(&reference_bomb(3, 2), &limits()).unwrap();
        let l0 = Amf0Value::StrictArray(vec![Amf0Value::Null; 3]);
        let l1 = Amf0Value::StrictArray(vec![l0.clone(); 3]);
        let l2 = Amf0Value::StrictArray(vec![l1.clone(); 3]);
        assert_eq!(small, vec![l0, l1, l2]);
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn string_copy_bomb() {
        // obj(0) = { s: <60 KB long string> }, then a strict array of 65 000 references to it:
        // few nodes, but ~3.9 GB of copied text if references were expanded blindly.
        let t = Instant::now();
        let mut b = Bytes::default()
            .raw(&[0x03])
            .key("s")
            .raw(&[0x0C])
            .raw(&60_000u32.to_be_bytes())
            .raw(&vec![b'a'; 60_000])
            .end()
            .raw(&[0x0A])
            .raw(&65_000u32.to_be_bytes());
        for _ in 0..65_000 {
            b = b.raw(&[0x07, 0, 0]);
        }
        assert_eq!(
            decode_amf0_all(&b.0, &limits()),
            Err(AmfError::ExpansionTooLarge)
        );
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn amf3_message_with_format_byte() {
        let mut payload = vec![0x00];
        payload.extend(ffmpeg_connect_bytes());
        assert_eq!(
            decode_amf3_message(&payload, &limits()),
            Ok(ffmpeg_connect_values())
        );
        assert_eq!(encode_amf3_message(&ffmpeg_connect_values()), payload);
        assert_eq!(decode_amf3_message(&[0x00], &limits()), Ok(vec![]));
    }

    #[test]
    fn amf3_message_without_format_byte() {
        assert_eq!(
            decode_amf3_message(&ffmpeg_connect_bytes(), &limits()),
            Ok(ffmpeg_connect_values())
        );
        let avm = [0x11, 0x06, 0x05, b'h', b'i'];
        assert_eq!(
            decode_amf3_message(&avm, &limits()),
            Ok(vec![Amf0Value::Avmplus(Amf3Value::String("hi".into()))])
        );
    }

    #[test]
    fn amf3_message_from_flash_player() {
        // Type-17 "connect" as an objectEncoding=3 client sends it: format byte, AMF0 name and
        // transaction id, then the command object switched to AMF3 (dynamic anonymous object).
        let mut payload = vec![0x00];
        payload.extend(Bytes::default().string("connect").number(1.0).0);
        payload.extend([0x11, 0x0A, 0x0B, 0x01]); // avmplus, object, dynamic traits, class ""
        payload.extend([0x07, b'a', b'p', b'p', 0x06, 0x09, b'l', b'i', b'v', b'e']);
        payload.extend([0x1D, b'o', b'b', b'j', b'e', b'c', b't']);
        payload.extend(b"Encoding");
        payload.extend([0x04, 0x03, 0x01]); // objectEncoding = 3, end of dynamic members
        // A second avmplus value shares the message's AMF3 string table: 0x06 0x02 is "live".
        payload.extend([0x11, 0x06, 0x02]);
        let values = decode_amf3_message(&payload, &limits()).unwrap();
        assert_eq!(values.len(), 4);
        assert_eq!(values[0].as_str(), Some("connect"));
        let Amf0Value::Avmplus(obj) = &values[2] else {
            panic!("expected avmplus, got {:?}", values[2]);
        };
        assert_eq!(obj.get("app").and_then(Amf3Value::as_str), Some("live"));
        assert_eq!(obj.get("objectEncoding"), Some(&Amf3Value::Integer(3)));
        assert_eq!(values[3].as_str(), Some("live"));
        // Our own encoding of the same values decodes back identically.
        let again = decode_amf3_message(&encode_amf3_message(&values), &limits()).unwrap();
        assert_eq!(again, values);
    }

    #[test]
    fn encoder_truncates_oversized_keys() {
        let long_key = "k".repeat(70_000);
        let value = Amf0Value::Object(vec![(long_key, Amf0Value::Null)]);
        let bytes = encode_amf0_all(&[value]);
        let decoded = decode_amf0_all(&bytes, &limits()).unwrap();
        let props = decoded[0].properties().unwrap();
        assert_eq!(props[0].0.len(), 0xFFFF);
    }

    pub(crate) fn arb_key() -> BoxedStrategy<String> {
        prop_oneof![
            3 => "[a-zA-Z]{1,10}",
            1 => any::<String>(),
        ]
        .boxed()
    }

    pub(crate) fn arb_amf0() -> impl Strategy<Value = Amf0Value> {
        let leaf = prop_oneof![
            arb_f64().prop_map(Amf0Value::Number),
            any::<bool>().prop_map(Amf0Value::Boolean),
            any::<String>().prop_map(Amf0Value::String),
            Just(Amf0Value::Null),
            Just(Amf0Value::Undefined),
            (arb_f64(), any::<i16>())
                .prop_map(|(millis, timezone)| Amf0Value::Date { millis, timezone }),
            any::<String>().prop_map(Amf0Value::XmlDocument),
            Just(Amf0Value::Unsupported),
            arb_amf3().prop_map(Amf0Value::Avmplus),
        ];
        leaf.prop_recursive(4, 48, 5, |inner| {
            let props = proptest::collection::vec((arb_key(), inner.clone()), 0..5);
            prop_oneof![
                props.clone().prop_map(Amf0Value::Object),
                props.clone().prop_map(Amf0Value::EcmaArray),
                proptest::collection::vec(inner, 0..5).prop_map(Amf0Value::StrictArray),
                (any::<String>(), props).prop_map(|(class_name, properties)| {
                    Amf0Value::TypedObject {
                        class_name,
                        properties,
                    }
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn prop_roundtrip(values in proptest::collection::vec(arb_amf0(), 0..4)) {
            let bytes = encode_amf0_all(&values);
            prop_assert_eq!(&decode_amf0_all(&bytes, &limits()).unwrap(), &values);
            let message = encode_amf3_message(&values);
            prop_assert_eq!(&decode_amf3_message(&message, &limits()).unwrap(), &values);
        }
    }
}
