//! Indexes an FLV file: one pass over the tag headers, reading only the first bytes of each
//! body (codec, frame type) and the headers players need; bodies are skipped. A tag that
//! cannot be read ends the index there, with where and why.

use std::io::{Read, Seek, SeekFrom};

use bytes::Bytes;

use super::index::{Damage, Header, Index, Sample, Wrap};
use crate::media::codec::{inspect_audio, inspect_video};
use crate::rtmp::session::MediaKind;

const TAG_HEADER: usize = 11;
/// Largest metadata or sequence header kept in memory; a bigger one is damage.
const MAX_HEADER: usize = 1 << 20;
/// Bytes of a body that say its codec, frame type and packet type.
const PEEK: usize = 5;

/// Indexes the FLV file `r` of `len` bytes; `Err` when it is not an FLV file at all.
pub fn index<R: Read + Seek>(r: &mut R, len: u64) -> Result<Index, Damage> {
    let io = |offset: u64| {
        move |e: std::io::Error| Damage {
            offset,
            why: format!("read failed: {e}"),
        }
    };
    let mut head = [0u8; 13];
    if len < 13 || r.read_exact(&mut head).is_err() || &head[..3] != b"FLV" {
        return Err(Damage {
            offset: 0,
            why: "not an FLV file (no FLV signature)".into(),
        });
    }
    let header_len = u64::from(u32::from_be_bytes([head[5], head[6], head[7], head[8]]));
    if !(9..=len.saturating_sub(4)).contains(&header_len) {
        return Err(Damage {
            offset: 5,
            why: format!("FLV header length {header_len} is impossible"),
        });
    }
    let mut ix = Index::default();
    let (mut video_header, mut audio_header, mut metadata) = (false, false, false);
    // Past the header and the first (zero) previous-tag-size.
    let mut pos = header_len + 4;
    r.seek(SeekFrom::Start(pos)).map_err(io(pos))?;
    let mut base: Option<u32> = None;
    let mut peek = Vec::with_capacity(MAX_HEADER.min(64 * 1024));
    while pos < len {
        let damaged = |why: String| Damage { offset: pos, why };
        if pos + TAG_HEADER as u64 > len {
            ix.damage = Some(damaged("the file ends inside a tag header".into()));
            break;
        }
        let mut h = [0u8; TAG_HEADER];
        r.read_exact(&mut h).map_err(io(pos))?;
        let tag_type = h[0] & 0x1f;
        let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
        let ts = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
        let body_at = pos + TAG_HEADER as u64;
        if body_at + size as u64 > len {
            ix.damage = Some(damaged(format!(
                "a {size}-byte tag runs past the end of the file"
            )));
            break;
        }
        let kind = match tag_type {
            8 => MediaKind::Audio,
            9 => MediaKind::Video,
            18 => MediaKind::Data,
            other => {
                ix.damage = Some(damaged(format!("tag type {other} is not FLV")));
                break;
            }
        };
        if h[0] & 0x20 != 0 {
            ix.damage = Some(damaged("encrypted (filtered) tags are not played".into()));
            break;
        }
        // Script tags and sequence headers may be kept whole; of the rest only the first bytes
        // are read.
        let whole = kind == MediaKind::Data || size <= PEEK + 8;
        let want = if whole { size } else { PEEK };
        if want > MAX_HEADER {
            ix.damage = Some(damaged(format!("a {size}-byte script tag is too large")));
            break;
        }
        peek.resize(want, 0);
        r.read_exact(&mut peek).map_err(io(body_at))?;
        let mut body: &[u8] = &peek;
        let (keyframe, sequence_header) = match kind {
            MediaKind::Video => {
                let i = inspect_video(body);
                (i.keyframe && !i.sequence_header, i.sequence_header)
            }
            MediaKind::Audio => (false, inspect_audio(body).sequence_header),
            MediaKind::Data => (false, false),
        };
        let kept;
        if sequence_header && want < size {
            if size > MAX_HEADER {
                ix.damage = Some(damaged(format!(
                    "a {size}-byte sequence header is too large"
                )));
                break;
            }
            let mut rest = vec![0u8; size - want];
            r.read_exact(&mut rest).map_err(io(body_at))?;
            let mut all = peek.clone();
            all.extend_from_slice(&rest);
            kept = all;
            body = &kept;
        }
        let consumed = body.len();
        // Files cut from a longer stream may not start at 0; players expect them to.
        let time_ms = ts.saturating_sub(*base.get_or_insert(ts));
        let header = match kind {
            MediaKind::Video if sequence_header && !video_header => {
                video_header = true;
                true
            }
            MediaKind::Audio if sequence_header && !audio_header => {
                audio_header = true;
                true
            }
            MediaKind::Data if !metadata && is_metadata(body) => {
                metadata = true;
                true
            }
            _ => false,
        };
        if header {
            ix.headers.push(Header {
                kind,
                body: Bytes::copy_from_slice(body),
            });
        } else if size > 0 {
            ix.samples.push(Sample {
                kind,
                time_ms,
                cts_ms: 0,
                offset: body_at,
                len: size as u32,
                keyframe,
                wrap: Wrap::Flv,
            });
        }
        pos = body_at + size as u64 + 4;
        let skip = (size - consumed) as i64 + 4;
        if pos < len {
            r.seek_relative(skip).map_err(io(body_at))?;
        }
    }
    // Metadata first, then video, then audio: the order players expect.
    ix.headers.sort_by_key(|h| match h.kind {
        MediaKind::Data => 0,
        MediaKind::Video => 1,
        MediaKind::Audio => 2,
    });
    // Interleaving in a file is by time already, but muxers are not always exact.
    ix.samples.sort_by_key(|s| s.time_ms);
    ix.finish();
    Ok(ix)
}

/// Whether a script tag is `onMetaData` (AMF0 string marker, length, name).
fn is_metadata(body: &[u8]) -> bool {
    body.starts_with(&[2, 0, 10]) && body.get(3..13) == Some(b"onMetaData")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn tag(out: &mut Vec<u8>, tag_type: u8, ts: u32, body: &[u8]) {
        out.push(tag_type);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&ts.to_be_bytes()[1..]);
        out.push((ts >> 24) as u8);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(body);
        out.extend_from_slice(&((body.len() + TAG_HEADER) as u32).to_be_bytes());
    }

    /// An FLV file: metadata, AVC and AAC headers, 25 fps video with a keyframe every second
    /// and audio every 23 ms, for `secs` seconds.
    pub fn file(secs: u32) -> Vec<u8> {
        let mut f = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        let mut meta = vec![2, 0, 10];
        meta.extend_from_slice(b"onMetaData");
        meta.extend_from_slice(&[8, 0, 0, 0, 0, 0, 0, 9]);
        tag(&mut f, 18, 0, &meta);
        tag(&mut f, 9, 0, &[0x17, 0, 0, 0, 0, 1, 2]);
        tag(&mut f, 8, 0, &[0xAF, 0, 0x12, 0x10]);
        let (mut v, mut a) = (0u32, 0u32);
        while v < secs * 1000 || a < secs * 1000 {
            if v <= a {
                let key = v % 1000 == 0;
                tag(
                    &mut f,
                    9,
                    v,
                    &[if key { 0x17 } else { 0x27 }, 1, 0, 0, 0, 9, 9],
                );
                v += 40;
            } else {
                tag(&mut f, 8, a, &[0xAF, 1, 7, 7]);
                a += 23;
            }
        }
        f
    }

    fn index_of(f: &[u8]) -> Result<Index, Damage> {
        index(&mut std::io::Cursor::new(f), f.len() as u64)
    }

    #[test]
    fn indexes_headers_samples_and_keyframes() {
        let f = file(5);
        let ix = index_of(&f).unwrap();
        assert_eq!(ix.damage, None);
        let kinds: Vec<_> = ix.headers.iter().map(|h| h.kind).collect();
        assert_eq!(kinds, [MediaKind::Data, MediaKind::Video, MediaKind::Audio]);
        assert_eq!(ix.keyframes.len(), 5);
        assert!(ix.duration_ms >= 4960);
        let s = ix.samples[ix.keyframes[2]];
        assert_eq!((s.time_ms, s.kind), (2000, MediaKind::Video));
        let at = s.offset as usize;
        assert_eq!(f[at..at + s.len as usize], [0x17, 1, 0, 0, 0, 9, 9]);
        assert!(ix.samples.windows(2).all(|w| w[0].time_ms <= w[1].time_ms));
    }

    #[test]
    fn damage_ends_the_index_where_it_starts() {
        let f = file(3);
        let whole = index_of(&f).unwrap().samples.len();
        let cut = &f[..f.len() - 6];
        let ix = index_of(cut).unwrap();
        assert_eq!(ix.samples.len(), whole - 1);
        let d = ix.damage.unwrap();
        assert!(d.why.contains("past the end"), "{d:?}");
        let mut bad = f.clone();
        let at = 13 + 11 + 21 + 4;
        bad[at] = 0x42;
        let d = index_of(&bad).unwrap().damage.unwrap();
        assert_eq!(d.offset, at as u64);
        assert!(index_of(b"not a video file at all").is_err());
    }
}
