//! FLV file format (Adobe FLV spec v10.1, annex E): the file header, tags, and the `onMetaData`
//! a finished recording starts with (duration, filesize and a keyframe index players seek by).
//! Pure functions over bytes; the recorder decides what goes where.

use crate::rtmp::amf::{Amf0Value, encode_amf0};

/// `FLV`, version 1, audio + video flags, header length 9, then PreviousTagSize0.
pub const HEADER_LEN: u64 = 13;
/// Tag header (type, size, timestamp, stream id) before the body.
pub const TAG_HEADER_LEN: usize = 11;
/// Largest tag body the 24-bit size field can carry.
pub const MAX_TAG_BODY: usize = 0xFF_FFFF;

pub const TAG_AUDIO: u8 = 8;
pub const TAG_VIDEO: u8 = 9;
pub const TAG_SCRIPT: u8 = 18;

/// The 13 bytes every FLV file starts with.
pub fn file_header(audio: bool, video: bool) -> [u8; 13] {
    let flags = (u8::from(audio) << 2) | u8::from(video);
    [b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0]
}

/// Appends one tag and its PreviousTagSize. False (nothing written) when the body is too large
/// for the format.
pub fn put_tag(out: &mut Vec<u8>, tag_type: u8, timestamp: u32, body: &[u8]) -> bool {
    if body.len() > MAX_TAG_BODY {
        return false;
    }
    let len = body.len() as u32;
    out.reserve(TAG_HEADER_LEN + body.len() + 4);
    out.push(tag_type);
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    // Lower 24 bits, then the upper 8 in the "extended" byte.
    out.extend_from_slice(&timestamp.to_be_bytes()[1..]);
    out.push((timestamp >> 24) as u8);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(body);
    out.extend_from_slice(&(TAG_HEADER_LEN as u32 + len).to_be_bytes());
    true
}

/// The length of a tag (header, body and PreviousTagSize) with a body of `body` bytes.
pub fn tag_len(body: usize) -> u64 {
    (TAG_HEADER_LEN + body + 4) as u64
}

/// Where a keyframe is: its time in milliseconds and the offset of its tag in the file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Keyframe {
    pub time_ms: u32,
    pub position: u64,
}

/// Where the media tags of a file being written or read are, and what its final
/// `onMetaData` says about them. Built as tags are written (the recorder) or read back (scan).
#[derive(Debug, Default)]
pub struct Index {
    /// Offset of the first media tag: after the header and a leading `onMetaData`.
    pub body_start: u64,
    /// Bytes of complete tags from `body_start`.
    pub body_len: u64,
    /// Keyframe positions relative to `body_start`.
    pub keyframes: Vec<Keyframe>,
    pub duration_ms: u32,
    pub has_audio: bool,
    pub has_video: bool,
    /// Properties the publisher sent in its own `onMetaData` (width, codec ids, encoder, ...);
    /// the fields this module writes replace any of the same name.
    pub metadata: Vec<(String, Amf0Value)>,
}

/// The `onMetaData` script tag (with its PreviousTagSize) for a file whose tags follow it.
/// Positions and filesize count the header and this tag: every number is an 8-byte double,
/// so the tag's length does not depend on the values and one trial encoding finds it.
pub fn metadata_tag(s: &Index) -> Vec<u8> {
    let trial = encode_metadata(s, 0, 0);
    let body_start = HEADER_LEN + trial.len() as u64;
    let tag = encode_metadata(s, body_start, body_start + s.body_len);
    debug_assert_eq!(tag.len(), trial.len());
    tag
}

/// Properties this module writes; a publisher's value of the same name is replaced.
const OURS: [&str; 10] = [
    "duration",
    "filesize",
    "hasAudio",
    "hasVideo",
    "hasKeyframes",
    "hasMetadata",
    "canSeekToEnd",
    "keyframes",
    "lastkeyframetimestamp",
    "lastkeyframelocation",
];

fn encode_metadata(s: &Index, body_start: u64, filesize: u64) -> Vec<u8> {
    let secs = |ms: u32| Amf0Value::Number(f64::from(ms) / 1000.0);
    let at = |k: &Keyframe| Amf0Value::Number((body_start + k.position) as f64);
    let mut props: Vec<(String, Amf0Value)> = s
        .metadata
        .iter()
        .filter(|(k, _)| !OURS.contains(&k.as_str()))
        .cloned()
        .collect();
    props.extend([
        ("duration".into(), secs(s.duration_ms)),
        ("filesize".into(), Amf0Value::Number(filesize as f64)),
        ("hasAudio".into(), Amf0Value::Boolean(s.has_audio)),
        ("hasVideo".into(), Amf0Value::Boolean(s.has_video)),
        (
            "hasKeyframes".into(),
            Amf0Value::Boolean(!s.keyframes.is_empty()),
        ),
        ("hasMetadata".into(), Amf0Value::Boolean(true)),
        ("canSeekToEnd".into(), Amf0Value::Boolean(false)),
    ]);
    if let Some(last) = s.keyframes.last() {
        props.push(("lastkeyframetimestamp".into(), secs(last.time_ms)));
        props.push(("lastkeyframelocation".into(), at(last)));
    }
    props.push((
        "keyframes".into(),
        Amf0Value::Object(vec![
            (
                "times".into(),
                Amf0Value::StrictArray(s.keyframes.iter().map(|k| secs(k.time_ms)).collect()),
            ),
            (
                "filepositions".into(),
                Amf0Value::StrictArray(s.keyframes.iter().map(at).collect()),
            ),
        ]),
    ));
    let mut body = Vec::new();
    encode_amf0(&Amf0Value::string("onMetaData"), &mut body);
    encode_amf0(&Amf0Value::EcmaArray(props), &mut body);
    let mut tag = Vec::new();
    if !put_tag(&mut tag, TAG_SCRIPT, 0, &body) {
        // An index too large for one tag (some 900 000 keyframes) is left out rather than
        // writing a broken file; players then seek without it.
        body.clear();
        encode_amf0(&Amf0Value::string("onMetaData"), &mut body);
        encode_amf0(&Amf0Value::EcmaArray(Vec::new()), &mut body);
        put_tag(&mut tag, TAG_SCRIPT, 0, &body);
    }
    tag
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::amf::{AmfLimits, decode_amf0_all};

    #[test]
    fn header_flags() {
        assert_eq!(&file_header(true, true)[..5], b"FLV\x01\x05");
        assert_eq!(file_header(false, true)[4], 1);
        assert_eq!(file_header(true, false)[4], 4);
        assert_eq!(&file_header(true, true)[5..], &[0, 0, 0, 9, 0, 0, 0, 0]);
    }

    #[test]
    fn tag_layout_with_extended_timestamp() {
        let mut out = Vec::new();
        assert!(put_tag(&mut out, TAG_VIDEO, 0x0123_4567, b"abc"));
        assert_eq!(
            out,
            [
                9, 0, 0, 3, 0x23, 0x45, 0x67, 0x01, 0, 0, 0, b'a', b'b', b'c', 0, 0, 0, 14
            ]
        );
        assert_eq!(tag_len(3), out.len() as u64);
        assert!(!put_tag(&mut out, TAG_AUDIO, 0, &vec![0; MAX_TAG_BODY + 1]));
        assert_eq!(out.len(), 18);
    }

    #[test]
    fn metadata_counts_itself_in_positions_and_filesize() {
        let metadata = vec![
            ("width".to_string(), Amf0Value::Number(640.0)),
            ("duration".to_string(), Amf0Value::Number(0.0)),
        ];
        let keyframes = vec![
            Keyframe {
                time_ms: 0,
                position: 0,
            },
            Keyframe {
                time_ms: 2000,
                position: 5000,
            },
        ];
        let s = Index {
            body_start: HEADER_LEN,
            body_len: 9000,
            keyframes,
            duration_ms: 3500,
            has_audio: true,
            has_video: true,
            metadata,
        };
        let tag = metadata_tag(&s);
        let start = HEADER_LEN + tag.len() as u64;
        let body = &tag[TAG_HEADER_LEN..tag.len() - 4];
        let values = decode_amf0_all(body, &AmfLimits::default()).unwrap();
        assert_eq!(values[0].as_str(), Some("onMetaData"));
        let m = &values[1];
        assert_eq!(m.get("width").and_then(Amf0Value::as_f64), Some(640.0));
        assert_eq!(m.get("duration").and_then(Amf0Value::as_f64), Some(3.5));
        assert_eq!(
            m.get("filesize").and_then(Amf0Value::as_f64),
            Some((start + 9000) as f64)
        );
        let kf = m.get("keyframes").unwrap();
        let Some(Amf0Value::StrictArray(pos)) = kf.get("filepositions") else {
            panic!("no filepositions: {kf:?}");
        };
        assert_eq!(pos[1].as_f64(), Some((start + 5000) as f64));
        let Some(Amf0Value::StrictArray(times)) = kf.get("times") else {
            panic!("no times");
        };
        assert_eq!(times[1].as_f64(), Some(2.0));
        // The publisher's `duration` is replaced, not repeated.
        let names: Vec<&str> = m
            .properties()
            .unwrap()
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(names.iter().filter(|n| **n == "duration").count(), 1);
    }
}
