//! The AMF decoding session shared by both formats: limits, errors, the cursor and the reference tables.
//! AMF0 and AMF3 decoders are `impl Decoder` blocks in their own files; this file knows neither format.

use std::rc::Rc;

/// Bounds applied while decoding untrusted AMF data.
///
/// Besides the four fields there is one derived budget: the string and byte-array content copied
/// out of reference tables (AMF3 string and trait references, and every resolved object
/// reference) may total at most `max_string_len` bytes per decode call, else
/// [`AmfError::ExpansionTooLarge`]. Counting nodes alone would let a few thousand one-byte
/// references to one long string allocate gigabytes.
///
/// The decoder recurses once per nesting level, so keep `max_depth` modest (the default is 32);
/// the encoders recurse over caller-built trees the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmfLimits {
    /// Maximum nesting of objects/arrays/vectors/dictionaries (default 32), also for reference copies.
    pub max_depth: usize,
    /// Maximum entries in one object, array, vector or dictionary, and maximum byte-array length (default 65 536).
    pub max_collection_len: usize,
    /// Maximum total values produced by one decode call, including copies made for references (default 1 000 000).
    pub max_nodes: usize,
    /// Maximum length of one string in bytes (default 16 MiB); also the budget for content copied by references.
    pub max_string_len: usize,
}

impl Default for AmfLimits {
    fn default() -> Self {
        Self {
            max_depth: 32,
            max_collection_len: 65_536,
            max_nodes: 1_000_000,
            max_string_len: 16 * 1024 * 1024,
        }
    }
}

/// Why AMF data could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmfError {
    #[error("AMF data is truncated: a value or a declared length runs past the end of the buffer")]
    Truncated,
    #[error("unknown AMF type marker 0x{0:02x}")]
    UnknownMarker(u8),
    #[error("AMF0 type marker 0x{0:02x} (movieclip or recordset) is reserved and not supported")]
    UnsupportedMarker(u8),
    #[error("AMF0 object-end marker (0x09) found where a value was expected")]
    UnexpectedObjectEnd,
    #[error("AMF data is nested deeper than the configured max_depth")]
    DepthExceeded,
    #[error("AMF data expands to more values than the configured max_nodes")]
    TooManyNodes,
    #[error("AMF collection with {0} entries exceeds the configured max_collection_len")]
    CollectionTooLarge(usize),
    #[error("AMF string of {0} bytes exceeds the configured max_string_len")]
    StringTooLong(usize),
    #[error("AMF reference index {0} is not in its reference table")]
    BadReference(u32),
    #[error(
        "AMF reference index {0} points to a value still being decoded (cyclic graphs are not supported)"
    )]
    CyclicReference(u32),
    #[error("AMF references copy more content than the configured max_string_len allows")]
    ExpansionTooLarge,
    #[error("AMF string is not valid UTF-8")]
    InvalidUtf8,
    #[error("AMF3 externalizable class {0:?} is not supported")]
    UnsupportedExternalizable(String),
}

/// Cap on any up-front `Vec::with_capacity`: declared counts are already checked against the
/// remaining input, but an element is much larger in memory than its smallest encoding.
pub(super) const MAX_PREALLOC: usize = 4096;

/// Where a referenceable complex value starts, and whether it has been fully decoded yet.
#[derive(Debug, Clone, Copy)]
struct RefSlot {
    start: usize,
    complete: bool,
}

/// One decoding session over one buffer: cursor, budgets and the reference tables of both formats.
///
/// A session owns one AMF0 reference table and one AMF3 context (string, object and trait
/// tables); the AMF3 context is shared by every `0x11` (avmplus) value of the buffer, as Red5 and
/// FluorineFx do for a message body.
///
/// References are materialised as copies, because [`Amf0Value`] / [`Amf3Value`] are plain trees.
/// The tables therefore store only byte offsets (and, for AMF3 strings and traits, `&str` slices
/// of the input): resolving an object reference re-decodes the referenced bytes in "replay"
/// mode, which registers nothing new. Table memory stays linear in the input, and every value a
/// replay produces is charged again against `max_nodes`, `max_depth` and the copy budget, so
/// reference bombs ("billion laughs") fail fast instead of allocating.
pub(crate) struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    limits: AmfLimits,
    depth: usize,
    nodes: usize,
    copied: usize,
    /// > 0 while re-decoding a referenced value: nothing is registered, all content is charged.
    replaying: usize,
    amf0_objects: Vec<RefSlot>,
    amf3_strings: Vec<&'a str>,
    amf3_objects: Vec<RefSlot>,
    amf3_traits: Vec<Rc<Traits<'a>>>,
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(buf: &'a [u8], limits: &AmfLimits) -> Self {
        Self {
            buf,
            pos: 0,
            limits: *limits,
            depth: 0,
            nodes: 0,
            copied: 0,
            replaying: 0,
            amf0_objects: Vec::new(),
            amf3_strings: Vec::new(),
            amf3_objects: Vec::new(),
            amf3_traits: Vec::new(),
        }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn peek_u8(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    pub(crate) fn read_bytes(&mut self, n: usize) -> Result<&'a [u8], AmfError> {
        let end = self.pos.checked_add(n).ok_or(AmfError::Truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(AmfError::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn read_array<const N: usize>(&mut self) -> Result<[u8; N], AmfError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.read_bytes(N)?);
        Ok(out)
    }

    pub(crate) fn read_u8(&mut self) -> Result<u8, AmfError> {
        let b = self.peek_u8().ok_or(AmfError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn read_u16(&mut self) -> Result<u16, AmfError> {
        self.read_array().map(u16::from_be_bytes)
    }

    pub(crate) fn read_i16(&mut self) -> Result<i16, AmfError> {
        self.read_array().map(i16::from_be_bytes)
    }

    pub(crate) fn read_u32(&mut self) -> Result<u32, AmfError> {
        self.read_array().map(u32::from_be_bytes)
    }

    pub(crate) fn read_i32(&mut self) -> Result<i32, AmfError> {
        self.read_array().map(i32::from_be_bytes)
    }

    pub(crate) fn read_f64(&mut self) -> Result<f64, AmfError> {
        self.read_array().map(f64::from_be_bytes)
    }

    /// Reads `len` bytes of UTF-8, checking the string limit before touching the buffer.
    pub(crate) fn read_str(&mut self, len: usize) -> Result<&'a str, AmfError> {
        if len > self.limits.max_string_len {
            return Err(AmfError::StringTooLong(len));
        }
        std::str::from_utf8(self.read_bytes(len)?).map_err(|_| AmfError::InvalidUtf8)
    }

    /// Turns inline string content into an owned `String`, charging it when it is a copy.
    pub(crate) fn owned(&mut self, s: &str) -> Result<String, AmfError> {
        if self.replaying > 0 {
            self.charge_copy(s.len())?;
        }
        Ok(s.to_owned())
    }

    pub(crate) fn charge_node(&mut self) -> Result<(), AmfError> {
        self.charge_nodes(1)
    }

    pub(crate) fn charge_nodes(&mut self, n: usize) -> Result<(), AmfError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > self.limits.max_nodes {
            return Err(AmfError::TooManyNodes);
        }
        Ok(())
    }

    /// Charges content bytes duplicated out of a reference table (see [`AmfLimits`]).
    pub(crate) fn charge_copy(&mut self, bytes: usize) -> Result<(), AmfError> {
        self.copied = self.copied.saturating_add(bytes);
        if self.copied > self.limits.max_string_len {
            return Err(AmfError::ExpansionTooLarge);
        }
        Ok(())
    }

    pub(crate) fn is_replaying(&self) -> bool {
        self.replaying > 0
    }

    pub(crate) fn max_collection_len(&self) -> usize {
        self.limits.max_collection_len
    }

    pub(crate) fn enter(&mut self) -> Result<(), AmfError> {
        if self.depth >= self.limits.max_depth {
            return Err(AmfError::DepthExceeded);
        }
        self.depth += 1;
        Ok(())
    }

    pub(crate) fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Validates a declared element count before anything is allocated for it: against the
    /// collection limit, and against the bytes left (each element needs `min_bytes_each`).
    pub(crate) fn check_count(&self, count: usize, min_bytes_each: usize) -> Result<(), AmfError> {
        if count > self.limits.max_collection_len {
            return Err(AmfError::CollectionTooLarge(count));
        }
        if count.saturating_mul(min_bytes_each) > self.remaining() {
            return Err(AmfError::Truncated);
        }
        Ok(())
    }

    /// Errors when one more entry would exceed the collection limit (for end-marker terminated lists).
    pub(crate) fn check_growth(&self, current_len: usize) -> Result<(), AmfError> {
        if current_len >= self.limits.max_collection_len {
            return Err(AmfError::CollectionTooLarge(current_len.saturating_add(1)));
        }
        Ok(())
    }

    /// Re-decodes the value starting at `start` (a resolved reference), then restores the cursor.
    pub(crate) fn replay<T>(
        &mut self,
        start: usize,
        decode: impl FnOnce(&mut Self) -> Result<T, AmfError>,
    ) -> Result<T, AmfError> {
        let saved = self.pos;
        self.pos = start;
        self.replaying += 1;
        let result = decode(self);
        self.replaying -= 1;
        self.pos = saved;
        result
    }

    pub(crate) fn register_amf0_object(&mut self, start: usize) -> Option<usize> {
        register(&mut self.amf0_objects, start, self.replaying)
    }

    pub(crate) fn complete_amf0_object(&mut self, slot: Option<usize>) {
        complete(&mut self.amf0_objects, slot);
    }

    pub(crate) fn amf0_object_start(&self, index: u32) -> Result<usize, AmfError> {
        lookup(&self.amf0_objects, index)
    }

    pub(crate) fn register_amf3_object(&mut self, start: usize) -> Option<usize> {
        register(&mut self.amf3_objects, start, self.replaying)
    }

    pub(crate) fn complete_amf3_object(&mut self, slot: Option<usize>) {
        complete(&mut self.amf3_objects, slot);
    }

    pub(crate) fn amf3_object_start(&self, index: u32) -> Result<usize, AmfError> {
        lookup(&self.amf3_objects, index)
    }

    pub(crate) fn amf3_string_ref(&self, index: u32) -> Result<&'a str, AmfError> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.amf3_strings.get(i))
            .copied()
            .ok_or(AmfError::BadReference(index))
    }

    pub(crate) fn register_amf3_string(&mut self, s: &'a str) {
        // The AMF3 spec never sends the empty string by reference, so it takes no table slot.
        if !s.is_empty() && self.replaying == 0 {
            self.amf3_strings.push(s);
        }
    }

    pub(crate) fn amf3_traits_ref(&self, index: u32) -> Result<Rc<Traits<'a>>, AmfError> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.amf3_traits.get(i))
            .cloned()
            .ok_or(AmfError::BadReference(index))
    }

    pub(crate) fn register_amf3_traits(&mut self, traits: Rc<Traits<'a>>) {
        if self.replaying == 0 {
            self.amf3_traits.push(traits);
        }
    }
}

fn register(table: &mut Vec<RefSlot>, start: usize, replaying: usize) -> Option<usize> {
    if replaying > 0 {
        // Everything inside a replayed region was registered when it was first decoded.
        return None;
    }
    table.push(RefSlot {
        start,
        complete: false,
    });
    Some(table.len() - 1)
}

fn complete(table: &mut [RefSlot], slot: Option<usize>) {
    if let Some(slot) = slot.and_then(|i| table.get_mut(i)) {
        slot.complete = true;
    }
}

fn lookup(table: &[RefSlot], index: u32) -> Result<usize, AmfError> {
    let slot = usize::try_from(index)
        .ok()
        .and_then(|i| table.get(i))
        .ok_or(AmfError::BadReference(index))?;
    if !slot.complete {
        return Err(AmfError::CyclicReference(index));
    }
    Ok(slot.start)
}

/// Longest prefix of `s` that fits in `max` bytes without splitting a character.
pub(crate) fn truncate_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// An object's class description, shared by later objects through trait references.
#[derive(Debug)]
pub(crate) struct Traits<'a> {
    pub(super) class_name: &'a str,
    pub(super) members: Vec<&'a str>,
    pub(super) dynamic: bool,
    pub(super) externalizable: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits() {
        let l = AmfLimits::default();
        assert_eq!(l.max_depth, 32);
        assert_eq!(l.max_collection_len, 65_536);
        assert_eq!(l.max_nodes, 1_000_000);
        assert_eq!(l.max_string_len, 16 * 1024 * 1024);
    }

    #[test]
    fn error_messages_are_descriptive() {
        assert_eq!(
            AmfError::UnknownMarker(0x12).to_string(),
            "unknown AMF type marker 0x12"
        );
        assert!(AmfError::CollectionTooLarge(7).to_string().contains('7'));
        assert!(
            AmfError::UnsupportedExternalizable("a.B".into())
                .to_string()
                .contains("a.B")
        );
    }

    #[test]
    fn truncate_str_respects_char_boundaries() {
        assert_eq!(truncate_str("héllo", 2), "h");
        assert_eq!(truncate_str("héllo", 3), "hé");
        assert_eq!(truncate_str("abc", 10), "abc");
        assert_eq!(truncate_str("€", 0), "");
    }
}
