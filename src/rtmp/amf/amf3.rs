//! AMF3, the Flash Player 9+ encoding reached from AMF0 through the 0x11 (avmplus) marker.
//! Complete per the AMF3 spec (Jan 2013): U29 integers, reference tables, traits, vectors, dictionary.

use std::rc::Rc;

use super::decoder::{AmfError, AmfLimits, Decoder, MAX_PREALLOC, Traits, truncate_str};

const UNDEFINED: u8 = 0x00;
const NULL: u8 = 0x01;
const FALSE: u8 = 0x02;
const TRUE: u8 = 0x03;
const INTEGER: u8 = 0x04;
const DOUBLE: u8 = 0x05;
const STRING: u8 = 0x06;
const XML_DOCUMENT: u8 = 0x07;
const DATE: u8 = 0x08;
const ARRAY: u8 = 0x09;
const OBJECT: u8 = 0x0A;
const XML: u8 = 0x0B;
const BYTE_ARRAY: u8 = 0x0C;
const VECTOR_INT: u8 = 0x0D;
const VECTOR_UINT: u8 = 0x0E;
const VECTOR_DOUBLE: u8 = 0x0F;
const VECTOR_OBJECT: u8 = 0x10;
const DICTIONARY: u8 = 0x11;

/// Largest integer an AMF3 `Integer` can carry (29-bit two's complement).
pub const INTEGER_MAX: i32 = (1 << 28) - 1;
/// Smallest integer an AMF3 `Integer` can carry (29-bit two's complement).
pub const INTEGER_MIN: i32 = -(1 << 28);
/// Largest length or count the U29 `(n << 1) | 1` headers can express.
const MAX_U29_LEN: usize = (1 << 28) - 1;
/// Largest sealed-member count the object header `(n << 4) | 0b0011` can express.
const MAX_SEALED: usize = (1 << 25) - 1;
const U29_MASK: u32 = 0x1FFF_FFFF;

pub const ARRAY_COLLECTION: &str = "flex.messaging.io.ArrayCollection";
pub const OBJECT_PROXY: &str = "flex.messaging.io.ObjectProxy";

/// The single member name used to hold the wrapped value of a supported externalizable class.
fn externalizable_field(class_name: &str) -> Option<&'static str> {
    match class_name {
        ARRAY_COLLECTION => Some("source"),
        OBJECT_PROXY => Some("object"),
        _ => None,
    }
}

/// One AMF3 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Amf3Value {
    Undefined,
    Null,
    Boolean(bool),
    /// 29-bit signed integer (U29); the encoder writes values outside that range as `Double`.
    Integer(i32),
    Double(f64),
    String(String),
    XmlDocument(String),
    /// Milliseconds since the epoch, UTC.
    Date(f64),
    Array {
        assoc: Vec<(String, Amf3Value)>,
        dense: Vec<Amf3Value>,
    },
    /// Also the form of the supported externalizable classes: [`ARRAY_COLLECTION`] decodes to
    /// `sealed: [("source", inner)]` and [`OBJECT_PROXY`] to `sealed: [("object", inner)]`, with
    /// `dynamic: None`, and the encoder writes exactly that shape back as externalizable. Other
    /// externalizable classes fail with [`AmfError::UnsupportedExternalizable`]: their bytes are
    /// class-specific, so where the value ends cannot be known.
    Object {
        /// "" for an anonymous object.
        class_name: String,
        sealed: Vec<(String, Amf3Value)>,
        /// `Some` when the traits are dynamic.
        dynamic: Option<Vec<(String, Amf3Value)>>,
    },
    Xml(String),
    ByteArray(Vec<u8>),
    VectorInt {
        fixed: bool,
        items: Vec<i32>,
    },
    VectorUint {
        fixed: bool,
        items: Vec<u32>,
    },
    VectorDouble {
        fixed: bool,
        items: Vec<f64>,
    },
    VectorObject {
        fixed: bool,
        type_name: String,
        items: Vec<Amf3Value>,
    },
    Dictionary {
        weak_keys: bool,
        entries: Vec<(Amf3Value, Amf3Value)>,
    },
}

impl Amf3Value {
    /// Text of a `String`, `XmlDocument` or `Xml`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf3Value::String(s) | Amf3Value::XmlDocument(s) | Amf3Value::Xml(s) => Some(s),
            _ => None,
        }
    }

    /// An `Integer` or `Double` as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Amf3Value::Integer(i) => Some(f64::from(*i)),
            Amf3Value::Double(d) => Some(*d),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Amf3Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// First member named `key`: sealed then dynamic members of an `Object`, or the
    /// associative part of an `Array`.
    pub fn get(&self, key: &str) -> Option<&Amf3Value> {
        let find = |pairs: &'_ [(String, Amf3Value)]| -> Option<usize> {
            pairs.iter().position(|(k, _)| k == key)
        };
        match self {
            Amf3Value::Object {
                sealed, dynamic, ..
            } => {
                if let Some(i) = find(sealed) {
                    return sealed.get(i).map(|(_, v)| v);
                }
                let dynamic = dynamic.as_deref()?;
                find(dynamic).and_then(|i| dynamic.get(i)).map(|(_, v)| v)
            }
            Amf3Value::Array { assoc, .. } => {
                find(assoc).and_then(|i| assoc.get(i)).map(|(_, v)| v)
            }
            _ => None,
        }
    }
}

/// Decodes one AMF3 value from the start of `buf`; returns it and the bytes consumed.
pub fn decode_amf3(buf: &[u8], limits: &AmfLimits) -> Result<(Amf3Value, usize), AmfError> {
    let mut decoder = Decoder::new(buf, limits);
    let value = decoder.amf3_value()?;
    Ok((value, decoder.position()))
}

/// Appends one AMF3 value to `out`, with fresh (unused) reference tables.
///
/// The encoder writes everything inline (no string, object or trait references; see
/// [`encode_amf0`](super::encode_amf0)). It drops empty keys from dynamic members and associative
/// array parts, because on the wire the empty string terminates those lists. Lengths and counts above the U29 range (2^28 - 1)
/// are truncated; integers outside the 29-bit signed range are written as doubles.
pub fn encode_amf3(value: &Amf3Value, out: &mut Vec<u8>) {
    match value {
        Amf3Value::Undefined => out.push(UNDEFINED),
        Amf3Value::Null => out.push(NULL),
        Amf3Value::Boolean(b) => out.push(if *b { TRUE } else { FALSE }),
        Amf3Value::Integer(i) => {
            if (INTEGER_MIN..=INTEGER_MAX).contains(i) {
                out.push(INTEGER);
                // Two's complement truncated to 29 bits; the decoder sign-extends bit 28.
                write_u29(out, (*i as u32) & U29_MASK);
            } else {
                out.push(DOUBLE);
                out.extend_from_slice(&f64::from(*i).to_be_bytes());
            }
        }
        Amf3Value::Double(d) => {
            out.push(DOUBLE);
            out.extend_from_slice(&d.to_be_bytes());
        }
        Amf3Value::String(s) => {
            out.push(STRING);
            write_string(out, s);
        }
        Amf3Value::XmlDocument(s) => {
            out.push(XML_DOCUMENT);
            write_string(out, s);
        }
        Amf3Value::Xml(s) => {
            out.push(XML);
            write_string(out, s);
        }
        Amf3Value::Date(millis) => {
            out.push(DATE);
            write_u29(out, 1);
            out.extend_from_slice(&millis.to_be_bytes());
        }
        Amf3Value::Array { assoc, dense } => {
            out.push(ARRAY);
            let count = write_len(out, dense.len());
            write_dynamic_members(out, assoc);
            for item in dense.iter().take(count) {
                encode_amf3(item, out);
            }
        }
        Amf3Value::Object {
            class_name,
            sealed,
            dynamic,
        } => {
            out.push(OBJECT);
            write_object(out, class_name, sealed, dynamic.as_deref());
        }
        Amf3Value::ByteArray(bytes) => {
            out.push(BYTE_ARRAY);
            let len = write_len(out, bytes.len());
            out.extend_from_slice(bytes.get(..len).unwrap_or_default());
        }
        Amf3Value::VectorInt { fixed, items } => {
            out.push(VECTOR_INT);
            let count = write_vector_header(out, items.len(), *fixed);
            for item in items.iter().take(count) {
                out.extend_from_slice(&item.to_be_bytes());
            }
        }
        Amf3Value::VectorUint { fixed, items } => {
            out.push(VECTOR_UINT);
            let count = write_vector_header(out, items.len(), *fixed);
            for item in items.iter().take(count) {
                out.extend_from_slice(&item.to_be_bytes());
            }
        }
        Amf3Value::VectorDouble { fixed, items } => {
            out.push(VECTOR_DOUBLE);
            let count = write_vector_header(out, items.len(), *fixed);
            for item in items.iter().take(count) {
                out.extend_from_slice(&item.to_be_bytes());
            }
        }
        Amf3Value::VectorObject {
            fixed,
            type_name,
            items,
        } => {
            out.push(VECTOR_OBJECT);
            let count = write_vector_header(out, items.len(), *fixed);
            write_string(out, type_name);
            for item in items.iter().take(count) {
                encode_amf3(item, out);
            }
        }
        Amf3Value::Dictionary { weak_keys, entries } => {
            out.push(DICTIONARY);
            let count = write_len(out, entries.len());
            out.push(u8::from(*weak_keys));
            for (key, value) in entries.iter().take(count) {
                encode_amf3(key, out);
                encode_amf3(value, out);
            }
        }
    }
}

fn write_object(
    out: &mut Vec<u8>,
    class_name: &str,
    sealed: &[(String, Amf3Value)],
    dynamic: Option<&[(String, Amf3Value)]>,
) {
    if let Some(field) = externalizable_field(class_name)
        && dynamic.is_none()
        && let [(name, inner)] = sealed
        && name == field
    {
        // U29O-traits-ext: inline object, inline traits, externalizable.
        write_u29(out, 0b0111);
        write_string(out, class_name);
        encode_amf3(inner, out);
        return;
    }
    let count = sealed.len().min(MAX_SEALED);
    let dynamic_bit = if dynamic.is_some() { 0b1000 } else { 0 };
    // U29O-traits: member count, dynamic flag, then 0b011 (inline object, inline traits).
    write_u29(out, ((count as u32) << 4) | dynamic_bit | 0b0011);
    write_string(out, class_name);
    for (name, _) in sealed.iter().take(count) {
        write_string(out, name);
    }
    for (_, value) in sealed.iter().take(count) {
        encode_amf3(value, out);
    }
    if let Some(members) = dynamic {
        write_dynamic_members(out, members);
    }
}

/// Name/value pairs terminated by the empty string; empty names would end the list early.
fn write_dynamic_members(out: &mut Vec<u8>, members: &[(String, Amf3Value)]) {
    for (name, value) in members.iter().filter(|(name, _)| !name.is_empty()) {
        write_string(out, name);
        encode_amf3(value, out);
    }
    write_string(out, "");
}

/// Writes `(len << 1) | 1` for a length capped to the U29 range; returns the capped length.
fn write_len(out: &mut Vec<u8>, len: usize) -> usize {
    let len = len.min(MAX_U29_LEN);
    write_u29(out, ((len as u32) << 1) | 1);
    len
}

fn write_vector_header(out: &mut Vec<u8>, len: usize, fixed: bool) -> usize {
    let len = write_len(out, len);
    out.push(u8::from(fixed));
    len
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    let s = truncate_str(s, MAX_U29_LEN);
    write_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// Variable-length unsigned 29-bit integer: 7 bits per byte with a continuation flag for the
/// first three bytes, all 8 bits of the fourth.
pub(crate) fn write_u29(out: &mut Vec<u8>, value: u32) {
    let v = value & U29_MASK;
    if v < 0x80 {
        out.push(v as u8);
    } else if v < 0x4000 {
        out.extend_from_slice(&[(v >> 7) as u8 | 0x80, (v & 0x7F) as u8]);
    } else if v < 0x20_0000 {
        out.extend_from_slice(&[
            (v >> 14) as u8 | 0x80,
            ((v >> 7) & 0x7F) as u8 | 0x80,
            (v & 0x7F) as u8,
        ]);
    } else {
        out.extend_from_slice(&[
            (v >> 22) as u8 | 0x80,
            ((v >> 15) & 0x7F) as u8 | 0x80,
            ((v >> 8) & 0x7F) as u8 | 0x80,
            v as u8,
        ]);
    }
}

impl<'a> Decoder<'a> {
    fn read_u29(&mut self) -> Result<u32, AmfError> {
        let mut value = 0u32;
        for _ in 0..3 {
            let b = self.read_u8()?;
            if b & 0x80 == 0 {
                return Ok((value << 7) | u32::from(b));
            }
            value = (value << 7) | u32::from(b & 0x7F);
        }
        Ok((value << 8) | u32::from(self.read_u8()?))
    }

    pub(crate) fn amf3_value(&mut self) -> Result<Amf3Value, AmfError> {
        let start = self.position();
        let marker = self.read_u8()?;
        let value = match marker {
            UNDEFINED => Amf3Value::Undefined,
            NULL => Amf3Value::Null,
            FALSE => Amf3Value::Boolean(false),
            TRUE => Amf3Value::Boolean(true),
            INTEGER => {
                let raw = self.read_u29()?;
                // Sign-extend from bit 28.
                Amf3Value::Integer(((raw << 3) as i32) >> 3)
            }
            DOUBLE => Amf3Value::Double(self.read_f64()?),
            STRING => {
                let s = self.amf3_str()?;
                Amf3Value::String(s.to_owned())
            }
            XML_DOCUMENT | DATE | ARRAY | OBJECT | XML | BYTE_ARRAY | VECTOR_INT | VECTOR_UINT
            | VECTOR_DOUBLE | VECTOR_OBJECT | DICTIONARY => {
                return self.amf3_referenceable(marker, start);
            }
            other => return Err(AmfError::UnknownMarker(other)),
        };
        self.charge_node()?;
        Ok(value)
    }

    /// A string (U29S-ref or U29S-value + UTF-8), registered in the string table when inline.
    /// The content is charged as a copy when it comes from the table or from a replay.
    fn amf3_str(&mut self) -> Result<&'a str, AmfError> {
        let header = self.read_u29()?;
        let s = if header & 1 == 0 {
            let s = self.amf3_string_ref(header >> 1)?;
            self.charge_copy(s.len())?;
            s
        } else {
            let s = self.read_str((header >> 1) as usize)?;
            if self.is_replaying() {
                self.charge_copy(s.len())?;
            }
            self.register_amf3_string(s);
            s
        };
        Ok(s)
    }

    /// Types that live in the object table: a U29 whose low bit 0 means "reference".
    fn amf3_referenceable(&mut self, marker: u8, start: usize) -> Result<Amf3Value, AmfError> {
        let header = self.read_u29()?;
        if header & 1 == 0 {
            let target = self.amf3_object_start(header >> 1)?;
            // Copies are charged node by node while they are re-decoded.
            return self.replay(target, Self::amf3_value);
        }
        self.charge_node()?;
        let slot = self.register_amf3_object(start);
        let len = (header >> 1) as usize;
        let value = match marker {
            XML_DOCUMENT => Amf3Value::XmlDocument(self.amf3_inline_text(len)?),
            XML => Amf3Value::Xml(self.amf3_inline_text(len)?),
            // The remaining header bits of a date are unused.
            DATE => Amf3Value::Date(self.read_f64()?),
            BYTE_ARRAY => {
                if len > self.max_collection_len() {
                    return Err(AmfError::CollectionTooLarge(len));
                }
                let bytes = self.read_bytes(len)?;
                if self.is_replaying() {
                    self.charge_copy(len)?;
                }
                Amf3Value::ByteArray(bytes.to_vec())
            }
            ARRAY => self.nested(|d| d.amf3_array(len))?,
            OBJECT => self.nested(|d| d.amf3_object(header))?,
            VECTOR_INT | VECTOR_UINT | VECTOR_DOUBLE | VECTOR_OBJECT => {
                self.nested(|d| d.amf3_vector(marker, len))?
            }
            DICTIONARY => self.nested(|d| d.amf3_dictionary(len))?,
            other => return Err(AmfError::UnknownMarker(other)),
        };
        self.complete_amf3_object(slot);
        Ok(value)
    }

    fn nested(
        &mut self,
        body: impl FnOnce(&mut Self) -> Result<Amf3Value, AmfError>,
    ) -> Result<Amf3Value, AmfError> {
        self.enter()?;
        let value = body(self)?;
        self.leave();
        Ok(value)
    }

    /// XML text: inline only (its references go through the object table, not the string table).
    fn amf3_inline_text(&mut self, len: usize) -> Result<String, AmfError> {
        let s = self.read_str(len)?;
        self.owned(s)
    }

    fn amf3_array(&mut self, dense_len: usize) -> Result<Amf3Value, AmfError> {
        self.check_count(dense_len, 1)?;
        let assoc = self.amf3_dynamic_members()?;
        let mut dense = Vec::with_capacity(dense_len.min(MAX_PREALLOC));
        for _ in 0..dense_len {
            dense.push(self.amf3_value()?);
        }
        Ok(Amf3Value::Array { assoc, dense })
    }

    /// Name/value pairs until the empty name.
    fn amf3_dynamic_members(&mut self) -> Result<Vec<(String, Amf3Value)>, AmfError> {
        let mut members = Vec::new();
        loop {
            let name = self.amf3_str()?;
            if name.is_empty() {
                return Ok(members);
            }
            self.check_growth(members.len())?;
            let value = self.amf3_value()?;
            members.push((name.to_owned(), value));
        }
    }

    fn amf3_traits(&mut self, header: u32) -> Result<Rc<Traits<'a>>, AmfError> {
        if header & 0b10 == 0 {
            // U29O-traits-ref: the names are copied out of the trait table.
            let traits = self.amf3_traits_ref(header >> 2)?;
            let copied = traits
                .members
                .iter()
                .fold(traits.class_name.len(), |n, m| n.saturating_add(m.len()));
            self.charge_copy(copied)?;
            return Ok(traits);
        }
        let traits = if header & 0b100 != 0 {
            // U29O-traits-ext: only the class name follows.
            Traits {
                class_name: self.amf3_str()?,
                members: Vec::new(),
                dynamic: false,
                externalizable: true,
            }
        } else {
            let count = (header >> 4) as usize;
            self.check_count(count, 1)?;
            let class_name = self.amf3_str()?;
            let mut members = Vec::with_capacity(count.min(MAX_PREALLOC));
            for _ in 0..count {
                members.push(self.amf3_str()?);
            }
            Traits {
                class_name,
                members,
                dynamic: header & 0b1000 != 0,
                externalizable: false,
            }
        };
        // Registered before the member values, so nested objects may already refer to it.
        let traits = Rc::new(traits);
        self.register_amf3_traits(Rc::clone(&traits));
        Ok(traits)
    }

    fn amf3_object(&mut self, header: u32) -> Result<Amf3Value, AmfError> {
        let traits = self.amf3_traits(header)?;
        let class_name = traits.class_name.to_owned();
        if traits.externalizable {
            let Some(field) = externalizable_field(&class_name) else {
                // Error values get logged; keep an attacker-chosen name short.
                let shown = truncate_str(&class_name, 256).to_owned();
                return Err(AmfError::UnsupportedExternalizable(shown));
            };
            let inner = self.amf3_value()?;
            return Ok(Amf3Value::Object {
                class_name,
                sealed: vec![(field.to_owned(), inner)],
                dynamic: None,
            });
        }
        self.check_count(traits.members.len(), 1)?;
        let mut sealed = Vec::with_capacity(traits.members.len().min(MAX_PREALLOC));
        for name in &traits.members {
            let value = self.amf3_value()?;
            sealed.push(((*name).to_owned(), value));
        }
        let dynamic = if traits.dynamic {
            Some(self.amf3_dynamic_members()?)
        } else {
            None
        };
        Ok(Amf3Value::Object {
            class_name,
            sealed,
            dynamic,
        })
    }

    fn amf3_vector(&mut self, marker: u8, count: usize) -> Result<Amf3Value, AmfError> {
        let fixed = self.read_u8()? != 0;
        let value = match marker {
            VECTOR_INT => Amf3Value::VectorInt {
                fixed,
                items: self.fixed_items(count, 4, Self::read_i32)?,
            },
            VECTOR_UINT => Amf3Value::VectorUint {
                fixed,
                items: self.fixed_items(count, 4, Self::read_u32)?,
            },
            VECTOR_DOUBLE => Amf3Value::VectorDouble {
                fixed,
                items: self.fixed_items(count, 8, Self::read_f64)?,
            },
            _ => {
                self.check_count(count, 1)?;
                let type_name = self.amf3_str()?.to_owned();
                let mut items = Vec::with_capacity(count.min(MAX_PREALLOC));
                for _ in 0..count {
                    items.push(self.amf3_value()?);
                }
                Amf3Value::VectorObject {
                    fixed,
                    type_name,
                    items,
                }
            }
        };
        Ok(value)
    }

    /// Numeric vector items; each counts as a value against `max_nodes`.
    fn fixed_items<T>(
        &mut self,
        count: usize,
        size: usize,
        read: fn(&mut Self) -> Result<T, AmfError>,
    ) -> Result<Vec<T>, AmfError> {
        self.check_count(count, size)?;
        self.charge_nodes(count)?;
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(read(self)?);
        }
        Ok(items)
    }

    fn amf3_dictionary(&mut self, count: usize) -> Result<Amf3Value, AmfError> {
        let weak_keys = self.read_u8()? != 0;
        self.check_count(count, 2)?;
        let mut entries = Vec::with_capacity(count.min(MAX_PREALLOC));
        for _ in 0..count {
            let key = self.amf3_value()?;
            let value = self.amf3_value()?;
            entries.push((key, value));
        }
        Ok(Amf3Value::Dictionary { weak_keys, entries })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::{Duration, Instant};

    fn limits() -> AmfLimits {
        AmfLimits::default()
    }

    fn enc(value: &Amf3Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_amf3(value, &mut out);
        out
    }

    fn dec(bytes: &[u8]) -> Result<Amf3Value, AmfError> {
        decode_amf3(bytes, &limits()).map(|(v, used)| {
            assert_eq!(used, bytes.len(), "all bytes consumed");
            v
        })
    }

    fn roundtrip(value: Amf3Value) {
        assert_eq!(dec(&enc(&value)), Ok(value));
    }

    /// Test-side inline string: U29 header + bytes, independent of the encoder.
    fn s(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        write_u29(&mut out, ((text.len() as u32) << 1) | 1);
        out.extend_from_slice(text.as_bytes());
        out
    }

    fn int(i: i32) -> Amf3Value {
        Amf3Value::Integer(i)
    }

    fn string(text: &str) -> Amf3Value {
        Amf3Value::String(text.into())
    }

    #[test]
    fn roundtrip_every_marker() {
        roundtrip(Amf3Value::Undefined);
        roundtrip(Amf3Value::Null);
        roundtrip(Amf3Value::Boolean(false));
        roundtrip(Amf3Value::Boolean(true));
        roundtrip(int(0));
        roundtrip(int(INTEGER_MAX));
        roundtrip(int(INTEGER_MIN));
        roundtrip(Amf3Value::Double(-0.5));
        roundtrip(string(""));
        roundtrip(string("ünïcødé"));
        roundtrip(Amf3Value::XmlDocument("<doc/>".into()));
        roundtrip(Amf3Value::Date(1_700_000_000_123.0));
        roundtrip(Amf3Value::Array {
            assoc: vec![("k".into(), Amf3Value::Null)],
            dense: vec![int(1), string("two")],
        });
        roundtrip(Amf3Value::Object {
            class_name: "".into(),
            sealed: vec![],
            dynamic: Some(vec![("a".into(), int(1))]),
        });
        roundtrip(Amf3Value::Object {
            class_name: "com.example.Point".into(),
            sealed: vec![("x".into(), int(1)), ("y".into(), Amf3Value::Double(2.5))],
            dynamic: None,
        });
        roundtrip(Amf3Value::Object {
            class_name: "Mixed".into(),
            sealed: vec![("".into(), int(1))],
            dynamic: Some(vec![]),
        });
        roundtrip(Amf3Value::Xml("<x>1</x>".into()));
        roundtrip(Amf3Value::ByteArray(vec![0, 1, 2, 255]));
        roundtrip(Amf3Value::ByteArray(vec![]));
        roundtrip(Amf3Value::VectorInt {
            fixed: true,
            items: vec![i32::MIN, -1, 0, i32::MAX],
        });
        roundtrip(Amf3Value::VectorUint {
            fixed: false,
            items: vec![0, u32::MAX],
        });
        roundtrip(Amf3Value::VectorDouble {
            fixed: false,
            items: vec![1.5, f64::INFINITY],
        });
        roundtrip(Amf3Value::VectorObject {
            fixed: false,
            type_name: "*".into(),
            items: vec![string("a"), Amf3Value::Null],
        });
        roundtrip(Amf3Value::Dictionary {
            weak_keys: true,
            entries: vec![(string("k"), int(1)), (int(2), Amf3Value::Null)],
        });
    }

    #[test]
    fn u29_integer_vectors() {
        let cases: &[(i32, &[u8])] = &[
            (0, &[0x04, 0x00]),
            (1, &[0x04, 0x01]),
            (0x7F, &[0x04, 0x7F]),
            (0x80, &[0x04, 0x81, 0x00]),
            (0x3FFF, &[0x04, 0xFF, 0x7F]),
            (0x4000, &[0x04, 0x81, 0x80, 0x00]),
            (0x1F_FFFF, &[0x04, 0xFF, 0xFF, 0x7F]),
            (0x20_0000, &[0x04, 0x80, 0xC0, 0x80, 0x00]),
            (INTEGER_MAX, &[0x04, 0xBF, 0xFF, 0xFF, 0xFF]),
            (-1, &[0x04, 0xFF, 0xFF, 0xFF, 0xFF]),
            (INTEGER_MIN, &[0x04, 0xC0, 0x80, 0x80, 0x00]),
        ];
        for &(value, bytes) in cases {
            assert_eq!(enc(&int(value)), bytes, "encoding {value}");
            assert_eq!(dec(bytes), Ok(int(value)), "decoding {value}");
        }
    }

    #[test]
    fn integers_outside_29_bits_become_doubles() {
        for i in [INTEGER_MAX + 1, INTEGER_MIN - 1, i32::MAX, i32::MIN] {
            let bytes = enc(&int(i));
            assert_eq!(bytes[0], 0x05);
            assert_eq!(dec(&bytes), Ok(Amf3Value::Double(f64::from(i))));
        }
    }

    #[test]
    fn known_byte_vectors() {
        assert_eq!(enc(&Amf3Value::Undefined), [0x00]);
        assert_eq!(enc(&Amf3Value::Null), [0x01]);
        assert_eq!(enc(&Amf3Value::Boolean(false)), [0x02]);
        assert_eq!(enc(&Amf3Value::Boolean(true)), [0x03]);
        assert_eq!(
            enc(&Amf3Value::Double(1.0)),
            [0x05, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            enc(&string("hello")),
            [0x06, 0x0B, b'h', b'e', b'l', b'l', b'o']
        );
        assert_eq!(enc(&string("")), [0x06, 0x01]);
        assert_eq!(
            enc(&Amf3Value::Date(0.0)),
            [0x08, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        // Dense array [1, 2]: count 2 -> U29 5, empty assoc terminator.
        assert_eq!(
            enc(&Amf3Value::Array {
                assoc: vec![],
                dense: vec![int(1), int(2)]
            }),
            [0x09, 0x05, 0x01, 0x04, 0x01, 0x04, 0x02]
        );
        // Anonymous dynamic object {a: 1}: traits 0x0B = dynamic, 0 sealed, inline.
        assert_eq!(
            enc(&Amf3Value::Object {
                class_name: "".into(),
                sealed: vec![],
                dynamic: Some(vec![("a".into(), int(1))]),
            }),
            [0x0A, 0x0B, 0x01, 0x03, b'a', 0x04, 0x01, 0x01]
        );
        assert_eq!(
            enc(&Amf3Value::ByteArray(vec![0xDE, 0xAD])),
            [0x0C, 0x05, 0xDE, 0xAD]
        );
        assert_eq!(
            enc(&Amf3Value::VectorInt {
                fixed: false,
                items: vec![1]
            }),
            [0x0D, 0x03, 0x00, 0, 0, 0, 1]
        );
        assert_eq!(
            enc(&Amf3Value::Dictionary {
                weak_keys: false,
                entries: vec![(int(1), Amf3Value::Null)]
            }),
            [0x11, 0x03, 0x00, 0x04, 0x01, 0x01]
        );
    }

    #[test]
    fn string_reference_table() {
        // ["hello", ref 0, "", "a", ref 1]: the empty string takes no slot, so ref 1 is "a".
        let mut bytes = vec![0x09, 0x0B, 0x01];
        bytes.push(0x06);
        bytes.extend(s("hello"));
        bytes.extend([0x06, 0x00, 0x06, 0x01, 0x06]);
        bytes.extend(s("a"));
        bytes.extend([0x06, 0x02]);
        assert_eq!(
            dec(&bytes),
            Ok(Amf3Value::Array {
                assoc: vec![],
                dense: vec![
                    string("hello"),
                    string("hello"),
                    string(""),
                    string("a"),
                    string("a")
                ],
            })
        );
        // Keys share the same table as values.
        let mut bytes = vec![0x09, 0x03];
        bytes.extend(s("key"));
        bytes.extend([0x06, 0x00, 0x01, 0x06, 0x00]);
        assert_eq!(
            dec(&bytes),
            Ok(Amf3Value::Array {
                assoc: vec![("key".into(), string("key"))],
                dense: vec![string("key")],
            })
        );
        assert_eq!(dec(&[0x06, 0x02]), Err(AmfError::BadReference(1)));
    }

    #[test]
    fn object_reference_table() {
        // [ obj{a:1} (index 1), ref 1, date (index 2), ref 2 ]; the outer array is index 0.
        let mut bytes = vec![0x09, 0x09, 0x01];
        bytes.extend([0x0A, 0x0B, 0x01]);
        bytes.extend(s("a"));
        bytes.extend([0x04, 0x01, 0x01]);
        bytes.extend([0x0A, 0x02]);
        bytes.extend([0x08, 0x01, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0]);
        bytes.extend([0x08, 0x04]);
        let obj = Amf3Value::Object {
            class_name: "".into(),
            sealed: vec![],
            dynamic: Some(vec![("a".into(), int(1))]),
        };
        assert_eq!(
            dec(&bytes),
            Ok(Amf3Value::Array {
                assoc: vec![],
                dense: vec![obj.clone(), obj, Amf3Value::Date(1.0), Amf3Value::Date(1.0)],
            })
        );
        // XML and byte arrays live in the object table, not the string table.
        let mut bytes = vec![0x09, 0x07, 0x01, 0x0B];
        bytes.extend(s("<x/>"));
        bytes.extend([0x0B, 0x02, 0x0C, 0x03, 0x7F]);
        assert_eq!(
            dec(&bytes),
            Ok(Amf3Value::Array {
                assoc: vec![],
                dense: vec![
                    Amf3Value::Xml("<x/>".into()),
                    Amf3Value::Xml("<x/>".into()),
                    Amf3Value::ByteArray(vec![0x7F]),
                ],
            })
        );
        assert_eq!(dec(&[0x09, 0x02]), Err(AmfError::BadReference(1)));
    }

    #[test]
    fn trait_reference_table() {
        // [ Foo{x:1}, Foo{x:2} via trait ref 0, Foo{x:3} with inline traits built from string refs ]
        let mut bytes = vec![0x09, 0x07, 0x01];
        bytes.extend([0x0A, 0x13]);
        bytes.extend(s("Foo"));
        bytes.extend(s("x"));
        bytes.extend([0x04, 0x01]);
        bytes.extend([0x0A, 0x01, 0x04, 0x02]);
        bytes.extend([0x0A, 0x13, 0x00, 0x02, 0x04, 0x03]);
        let foo = |x| Amf3Value::Object {
            class_name: "Foo".into(),
            sealed: vec![("x".into(), int(x))],
            dynamic: None,
        };
        assert_eq!(
            dec(&bytes),
            Ok(Amf3Value::Array {
                assoc: vec![],
                dense: vec![foo(1), foo(2), foo(3)],
            })
        );
        // Trait refs keep the dynamic flag: anonymous dynamic traits reused by a second object.
        let mut bytes = vec![0x09, 0x05, 0x01, 0x0A, 0x0B, 0x01];
        bytes.extend(s("a"));
        bytes.extend([0x04, 0x01, 0x01]);
        bytes.extend([0x0A, 0x01, 0x00, 0x04, 0x02, 0x01]);
        let dynamic = |v| Amf3Value::Object {
            class_name: "".into(),
            sealed: vec![],
            dynamic: Some(vec![("a".into(), int(v))]),
        };
        assert_eq!(
            dec(&bytes),
            Ok(Amf3Value::Array {
                assoc: vec![],
                dense: vec![dynamic(1), dynamic(2)],
            })
        );
        assert_eq!(dec(&[0x0A, 0x05]), Err(AmfError::BadReference(1)));
    }

    #[test]
    fn cyclic_references_are_refused() {
        // obj(0) = { a: ref 0 }
        let mut bytes = vec![0x0A, 0x0B, 0x01];
        bytes.extend(s("a"));
        bytes.extend([0x0A, 0x00, 0x01]);
        assert_eq!(dec(&bytes), Err(AmfError::CyclicReference(0)));
        // array(0) = [ ref 0 ]
        assert_eq!(
            dec(&[0x09, 0x03, 0x01, 0x09, 0x00]),
            Err(AmfError::CyclicReference(0))
        );
    }

    #[test]
    fn externalizable_flex_wrappers() {
        let mut bytes = vec![0x0A, 0x07];
        bytes.extend(s(ARRAY_COLLECTION));
        bytes.extend([0x09, 0x05, 0x01, 0x04, 0x01, 0x04, 0x02]);
        let collection = Amf3Value::Object {
            class_name: ARRAY_COLLECTION.into(),
            sealed: vec![(
                "source".into(),
                Amf3Value::Array {
                    assoc: vec![],
                    dense: vec![int(1), int(2)],
                },
            )],
            dynamic: None,
        };
        assert_eq!(dec(&bytes), Ok(collection.clone()));
        assert_eq!(enc(&collection), bytes);

        let proxy = Amf3Value::Object {
            class_name: OBJECT_PROXY.into(),
            sealed: vec![(
                "object".into(),
                Amf3Value::Object {
                    class_name: "".into(),
                    sealed: vec![],
                    dynamic: Some(vec![("k".into(), string("v"))]),
                },
            )],
            dynamic: None,
        };
        let bytes = enc(&proxy);
        assert_eq!(&bytes[..2], &[0x0A, 0x07]);
        roundtrip(proxy);

        // Externalizable traits can be referenced like any other traits.
        let mut bytes = vec![0x09, 0x05, 0x01, 0x0A, 0x07];
        bytes.extend(s(ARRAY_COLLECTION));
        bytes.extend([0x09, 0x01, 0x01, 0x0A, 0x01, 0x09, 0x01, 0x01]);
        let empty = Amf3Value::Object {
            class_name: ARRAY_COLLECTION.into(),
            sealed: vec![(
                "source".into(),
                Amf3Value::Array {
                    assoc: vec![],
                    dense: vec![],
                },
            )],
            dynamic: None,
        };
        assert_eq!(
            dec(&bytes),
            Ok(Amf3Value::Array {
                assoc: vec![],
                dense: vec![empty.clone(), empty],
            })
        );

        let mut bytes = vec![0x0A, 0x07];
        bytes.extend(s("com.example.Custom"));
        bytes.extend([0x01, 0x02, 0x03]);
        assert_eq!(
            dec(&bytes),
            Err(AmfError::UnsupportedExternalizable(
                "com.example.Custom".into()
            ))
        );
    }

    #[test]
    fn wrapper_class_with_other_shape_stays_a_plain_object() {
        let odd = Amf3Value::Object {
            class_name: ARRAY_COLLECTION.into(),
            sealed: vec![("list".into(), Amf3Value::Null)],
            dynamic: None,
        };
        assert_eq!(enc(&odd)[1], 0x13);
        roundtrip(odd);
    }

    #[test]
    fn encoder_drops_empty_dynamic_keys() {
        let value = Amf3Value::Object {
            class_name: "".into(),
            sealed: vec![],
            dynamic: Some(vec![("".into(), int(1)), ("b".into(), int(2))]),
        };
        assert_eq!(
            dec(&enc(&value)),
            Ok(Amf3Value::Object {
                class_name: "".into(),
                sealed: vec![],
                dynamic: Some(vec![("b".into(), int(2))]),
            })
        );
    }

    #[test]
    fn malformed_input() {
        assert_eq!(dec(&[0x12]), Err(AmfError::UnknownMarker(0x12)));
        assert_eq!(dec(&[0x04, 0x80]), Err(AmfError::Truncated));
        assert_eq!(dec(&[0x04, 0xFF, 0xFF, 0xFF]), Err(AmfError::Truncated));
        assert_eq!(dec(&[0x06, 0x05, 0xC3, 0x28]), Err(AmfError::InvalidUtf8));
        assert_eq!(dec(&[0x05, 0x00]), Err(AmfError::Truncated));
        assert_eq!(dec(&[0x08, 0x01, 0x00]), Err(AmfError::Truncated));
        assert_eq!(dec(&[0x0D, 0x03, 0x00, 0x00]), Err(AmfError::Truncated));
        assert_eq!(dec(&[0x09, 0x01]), Err(AmfError::Truncated));
        // Trailing bytes are left for the caller.
        assert_eq!(
            decode_amf3(&[0x01, 0xFF], &limits()),
            Ok((Amf3Value::Null, 1))
        );
    }

    #[test]
    fn huge_declared_lengths_with_tiny_buffers() {
        // U29 0x1FFFFFFF -> length 2^28 - 1.
        let huge = [0xFF, 0xFF, 0xFF, 0xFF];
        let with = |m: u8| {
            let mut b = vec![m];
            b.extend(huge);
            b.push(0);
            b
        };
        assert_eq!(dec(&with(0x06)), Err(AmfError::StringTooLong(MAX_U29_LEN)));
        assert_eq!(dec(&with(0x07)), Err(AmfError::StringTooLong(MAX_U29_LEN)));
        for m in [0x09, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x11] {
            assert_eq!(
                dec(&with(m)),
                Err(AmfError::CollectionTooLarge(MAX_U29_LEN)),
                "marker {m:#x}"
            );
        }
        // Within the collection limit but larger than the buffer.
        assert_eq!(
            dec(&[0x0D, 0x81, 0x01, 0x00, 1, 2]),
            Err(AmfError::Truncated)
        );
        assert_eq!(dec(&[0x09, 0x81, 0x01, 0x01]), Err(AmfError::Truncated));
        assert_eq!(dec(&[0x0C, 0x81, 0x01, 0x01]), Err(AmfError::Truncated));
        // Sealed member count 2^25 - 1 in the traits header.
        assert_eq!(
            dec(&[0x0A, 0xFF, 0xFF, 0xFF, 0xF3, 0x01]),
            Err(AmfError::CollectionTooLarge(MAX_SEALED))
        );
    }

    #[test]
    fn depth_bomb() {
        let t = Instant::now();
        let arrays = [0x09, 0x03, 0x01].repeat(200_000);
        assert_eq!(dec(&arrays), Err(AmfError::DepthExceeded));
        let mut objects = Vec::new();
        for _ in 0..100_000 {
            objects.extend([0x0A, 0x0B, 0x01, 0x03, b'a']);
        }
        assert_eq!(dec(&objects), Err(AmfError::DepthExceeded));
        let dicts = [0x11, 0x03, 0x00, 0x01].repeat(200_000);
        assert_eq!(dec(&dicts), Err(AmfError::DepthExceeded));
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    /// Level 0 is an array of `fan` nulls; level k is an array of `fan` references to level k-1,
    /// all inside one outer array (object index 0), so level k has object index k + 1.
    fn reference_bomb(fan: usize, levels: usize) -> Vec<u8> {
        let mut bytes = vec![0x09];
        write_u29(&mut bytes, (((levels + 1) as u32) << 1) | 1);
        bytes.push(0x01);
        bytes.push(0x09);
        write_u29(&mut bytes, ((fan as u32) << 1) | 1);
        bytes.push(0x01);
        bytes.extend(vec![0x01; fan]);
        for level in 1..=levels {
            bytes.push(0x09);
            write_u29(&mut bytes, ((fan as u32) << 1) | 1);
            bytes.push(0x01);
            for _ in 0..fan {
                bytes.push(0x09);
                write_u29(&mut bytes, (level as u32) << 1);
            }
        }
        bytes
    }

    #[test]
    fn reference_expansion_bomb() {
        let t = Instant::now();
        let bytes = reference_bomb(1000, 5);
        assert!(bytes.len() < 20_000);
        assert_eq!(dec(&bytes), Err(AmfError::TooManyNodes));
        let small = dec(&reference_bomb(2, 2)).unwrap();
        let l0 = Amf3Value::Array {
            assoc: vec![],
            dense: vec![Amf3Value::Null; 2],
        };
        let l1 = Amf3Value::Array {
            assoc: vec![],
            dense: vec![l0.clone(); 2],
        };
        let l2 = Amf3Value::Array {
            assoc: vec![],
            dense: vec![l1.clone(); 2],
        };
        assert_eq!(
            small,
            Amf3Value::Array {
                assoc: vec![],
                dense: vec![l0, l1, l2]
            }
        );
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn string_reference_copy_bomb() {
        // One 1 MB string, then 60 000 one-byte references to it: 60 GB if copied blindly.
        let t = Instant::now();
        let mut bytes = vec![0x09];
        write_u29(&mut bytes, (60_001 << 1) | 1);
        bytes.extend([0x01, 0x06]);
        bytes.extend(s(&"z".repeat(1 << 20)));
        for _ in 0..60_000 {
            bytes.extend([0x06, 0x00]);
        }
        assert_eq!(dec(&bytes), Err(AmfError::ExpansionTooLarge));
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn trait_reference_copy_bomb() {
        // Traits with 60 000 members all named by a reference to one 1 KB string cost 60 MB to
        // materialise: over the copy budget before a single member value is read.
        let mut bytes = vec![0x0A];
        write_u29(&mut bytes, (60_000 << 4) | 0b0011);
        bytes.push(0x01);
        bytes.extend(s(&"m".repeat(1024)));
        bytes.extend(vec![0x00; 60_000 - 1]);
        bytes.extend(vec![0x01; 60_000]);
        assert_eq!(dec(&bytes), Err(AmfError::ExpansionTooLarge));
    }

    #[test]
    fn node_limit_counts_vector_items() {
        let tight = AmfLimits {
            max_nodes: 10,
            ..limits()
        };
        let v = enc(&Amf3Value::VectorInt {
            fixed: false,
            items: vec![0; 20],
        });
        assert_eq!(decode_amf3(&v, &tight), Err(AmfError::TooManyNodes));
        assert!(decode_amf3(&v, &limits()).is_ok());
    }

    #[test]
    fn accessors() {
        assert_eq!(int(3).as_f64(), Some(3.0));
        assert_eq!(Amf3Value::Double(0.5).as_f64(), Some(0.5));
        assert_eq!(Amf3Value::Xml("<a/>".into()).as_str(), Some("<a/>"));
        assert_eq!(Amf3Value::Null.as_bool(), None);
        let obj = Amf3Value::Object {
            class_name: "C".into(),
            sealed: vec![("s".into(), int(1))],
            dynamic: Some(vec![("d".into(), int(2)), ("s".into(), int(3))]),
        };
        assert_eq!(obj.get("s"), Some(&int(1)));
        assert_eq!(obj.get("d"), Some(&int(2)));
        assert_eq!(obj.get("x"), None);
        let arr = Amf3Value::Array {
            assoc: vec![("k".into(), int(4))],
            dense: vec![],
        };
        assert_eq!(arr.get("k"), Some(&int(4)));
    }

    pub(crate) fn arb_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            4 => any::<f64>().prop_filter("NaN never compares equal", |f| !f.is_nan()),
            1 => prop_oneof![
                Just(0.0),
                Just(-0.0),
                Just(f64::INFINITY),
                Just(f64::NEG_INFINITY),
                Just(f64::MIN_POSITIVE),
                Just(f64::MAX),
            ],
        ]
    }

    fn arb_name() -> BoxedStrategy<String> {
        prop_oneof![
            3 => "[a-zA-Z_]{1,8}",
            1 => any::<String>().prop_filter("empty ends the list", |s| !s.is_empty()),
        ]
        .boxed()
    }

    pub(crate) fn arb_amf3() -> impl Strategy<Value = Amf3Value> {
        let leaf = prop_oneof![
            Just(Amf3Value::Undefined),
            Just(Amf3Value::Null),
            any::<bool>().prop_map(Amf3Value::Boolean),
            (INTEGER_MIN..=INTEGER_MAX).prop_map(Amf3Value::Integer),
            arb_f64().prop_map(Amf3Value::Double),
            any::<String>().prop_map(Amf3Value::String),
            "[a-c]{0,2}".prop_map(Amf3Value::String),
            any::<String>().prop_map(Amf3Value::XmlDocument),
            arb_f64().prop_map(Amf3Value::Date),
            any::<String>().prop_map(Amf3Value::Xml),
            proptest::collection::vec(any::<u8>(), 0..16).prop_map(Amf3Value::ByteArray),
            (any::<bool>(), proptest::collection::vec(any::<i32>(), 0..6))
                .prop_map(|(fixed, items)| Amf3Value::VectorInt { fixed, items }),
            (any::<bool>(), proptest::collection::vec(any::<u32>(), 0..6))
                .prop_map(|(fixed, items)| Amf3Value::VectorUint { fixed, items }),
            (any::<bool>(), proptest::collection::vec(arb_f64(), 0..6))
                .prop_map(|(fixed, items)| Amf3Value::VectorDouble { fixed, items }),
        ];
        leaf.prop_recursive(4, 48, 5, |inner| {
            let members = proptest::collection::vec((arb_name(), inner.clone()), 0..4);
            prop_oneof![
                (
                    members.clone(),
                    proptest::collection::vec(inner.clone(), 0..5)
                )
                    .prop_map(|(assoc, dense)| Amf3Value::Array { assoc, dense }),
                (
                    "[a-zA-Z.]{0,12}",
                    proptest::collection::vec((any::<String>(), inner.clone()), 0..4),
                    proptest::option::of(members),
                )
                    .prop_map(|(class_name, sealed, dynamic)| Amf3Value::Object {
                        class_name,
                        sealed,
                        dynamic,
                    }),
                (
                    any::<bool>(),
                    "[a-zA-Z.*]{0,8}",
                    proptest::collection::vec(inner.clone(), 0..4)
                )
                    .prop_map(|(fixed, type_name, items)| {
                        Amf3Value::VectorObject {
                            fixed,
                            type_name,
                            items,
                        }
                    }),
                (
                    any::<bool>(),
                    proptest::collection::vec((inner.clone(), inner.clone()), 0..3)
                )
                    .prop_map(|(weak_keys, entries)| Amf3Value::Dictionary { weak_keys, entries }),
                inner.prop_map(|v| Amf3Value::Object {
                    class_name: ARRAY_COLLECTION.into(),
                    sealed: vec![("source".into(), v)],
                    dynamic: None,
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn prop_roundtrip(value in arb_amf3()) {
            let bytes = enc(&value);
            let (decoded, used) = decode_amf3(&bytes, &limits()).unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(decoded, value);
        }

        #[test]
        fn prop_u29_integer_roundtrip(i in INTEGER_MIN..=INTEGER_MAX) {
            prop_assert_eq!(dec(&enc(&int(i))), Ok(int(i)));
        }
    }
}
