//! Reading a recording back: the tags of an FLV file up to the last complete one, with what a
//! finished file's `onMetaData` needs. Used to repair the `.part` files a crash leaves and to
//! continue a finished file (`append`).

use std::io::{BufReader, ErrorKind, Read};
use std::path::Path;

use super::flv::{self, Index, Keyframe};
use crate::media::codec::inspect_video;
use crate::rtmp::amf::{Amf0Value, AmfLimits, decode_amf0_all};

/// What an FLV file holds, as far as it is whole.
#[derive(Debug, Default)]
pub struct Scanned {
    pub index: Index,
    /// Complete tags read.
    pub tags: u64,
    /// Why reading stopped before the end of the file (a cut or corrupt tag), with its offset.
    pub stopped: Option<(u64, &'static str)>,
}

/// Reads `path` tag by tag. Fails only when the file cannot be read or is not an FLV file.
pub fn scan(path: &Path) -> std::io::Result<Scanned> {
    let mut r = BufReader::with_capacity(256 * 1024, std::fs::File::open(path)?);
    let mut head = [0u8; 13];
    r.read_exact(&mut head)?;
    if &head[..3] != b"FLV" {
        return Err(std::io::Error::new(
            ErrorKind::InvalidData,
            "not an FLV file (no FLV signature)",
        ));
    }
    let data_offset = u32::from_be_bytes([head[5], head[6], head[7], head[8]]);
    if data_offset != 9 {
        return Err(std::io::Error::new(
            ErrorKind::InvalidData,
            format!("unexpected FLV header length {data_offset}"),
        ));
    }
    let mut s = Scanned::default();
    s.index.body_start = flv::HEADER_LEN;
    let mut at = flv::HEADER_LEN;
    let mut body = Vec::new();
    loop {
        let mut th = [0u8; flv::TAG_HEADER_LEN];
        match read_full(&mut r, &mut th)? {
            0 => break,
            n if n < th.len() => {
                s.stopped = Some((at, "cut inside a tag header"));
                break;
            }
            _ => {}
        }
        let tag_type = th[0];
        let size = u32::from_be_bytes([0, th[1], th[2], th[3]]) as usize;
        let ts = u32::from_be_bytes([th[7], th[4], th[5], th[6]]);
        if !matches!(tag_type, flv::TAG_AUDIO | flv::TAG_VIDEO | flv::TAG_SCRIPT) {
            s.stopped = Some((at, "unknown tag type"));
            break;
        }
        body.resize(size, 0);
        let mut prev = [0u8; 4];
        if read_full(&mut r, &mut body)? < size || read_full(&mut r, &mut prev)? < 4 {
            s.stopped = Some((at, "cut inside a tag"));
            break;
        }
        if u32::from_be_bytes(prev) as usize != flv::TAG_HEADER_LEN + size {
            s.stopped = Some((at, "tag size and PreviousTagSize disagree"));
            break;
        }
        let len = flv::tag_len(size);
        if s.tags == 0
            && tag_type == flv::TAG_SCRIPT
            && let Some(props) = metadata(&body)
        {
            // A finished file's own summary: replaced when the file is written again.
            s.index.metadata = props;
            s.index.body_start = at + len;
        } else {
            let rel = at - s.index.body_start;
            match tag_type {
                flv::TAG_AUDIO => s.index.has_audio = true,
                flv::TAG_VIDEO => {
                    s.index.has_video = true;
                    let info = inspect_video(&body);
                    if info.keyframe && !info.sequence_header {
                        s.index.keyframes.push(Keyframe {
                            time_ms: ts,
                            position: rel,
                        });
                    }
                }
                _ => {}
            }
            s.index.duration_ms = s.index.duration_ms.max(ts);
            s.index.body_len = rel + len;
        }
        s.tags += 1;
        at += len;
    }
    Ok(s)
}

/// Fills `buf` as far as the file goes; the count read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The properties of an AMF0 `onMetaData` body.
pub fn metadata(body: &[u8]) -> Option<Vec<(String, Amf0Value)>> {
    let values = decode_amf0_all(body, &AmfLimits::default()).ok()?;
    if values.first()?.as_str()? != "onMetaData" {
        return None;
    }
    Some(
        values
            .get(1)
            .and_then(Amf0Value::properties)
            .unwrap_or_default()
            .to_vec(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(tags: &[(u8, u32, &[u8])]) -> Vec<u8> {
        let mut out = flv::file_header(true, true).to_vec();
        for (t, ts, body) in tags {
            assert!(flv::put_tag(&mut out, *t, *ts, body));
        }
        out
    }

    #[test]
    fn reads_to_the_last_whole_tag_and_indexes_keyframes() {
        let meta = {
            let mut b = Vec::new();
            crate::rtmp::amf::encode_amf0(&Amf0Value::string("onMetaData"), &mut b);
            crate::rtmp::amf::encode_amf0(
                &Amf0Value::EcmaArray(vec![("width".into(), Amf0Value::Number(320.0))]),
                &mut b,
            );
            b
        };
        let bytes = file(&[
            (flv::TAG_SCRIPT, 0, &meta),
            (flv::TAG_VIDEO, 0, &[0x17, 0, 0, 0, 0, 1]), // AVC sequence header
            (flv::TAG_VIDEO, 0, &[0x17, 1, 0, 0, 0, 9]), // keyframe
            (flv::TAG_AUDIO, 20, &[0xAF, 1, 5]),
            (flv::TAG_VIDEO, 1000, &[0x17, 1, 0, 0, 0, 8]),
            (flv::TAG_VIDEO, 1040, &[0x27, 1, 0, 0, 0, 7]),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.flv.part");
        // Cut the last tag two bytes into its body.
        let last_tag = bytes.len() - flv::tag_len(6) as usize;
        std::fs::write(&path, &bytes[..last_tag + 13]).unwrap();
        let s = scan(&path).unwrap();
        let meta_len = flv::tag_len(meta.len());
        assert_eq!(s.index.body_start, flv::HEADER_LEN + meta_len);
        assert_eq!(s.index.body_start + s.index.body_len, last_tag as u64);
        assert_eq!(s.tags, 5);
        assert_eq!(s.index.duration_ms, 1000);
        assert!(s.index.has_audio && s.index.has_video);
        assert_eq!(s.index.metadata[0].0, "width");
        let seq = flv::tag_len(6);
        assert_eq!(
            s.index.keyframes,
            [
                Keyframe {
                    time_ms: 0,
                    position: seq
                },
                Keyframe {
                    time_ms: 1000,
                    position: 2 * seq + flv::tag_len(3)
                },
            ]
        );
        assert_eq!(s.stopped, Some((last_tag as u64, "cut inside a tag")));

        std::fs::write(&path, b"GIF89a not a video").unwrap();
        assert!(scan(&path).is_err());
        let mut bad = bytes.clone();
        bad[flv::HEADER_LEN as usize + meta_len as usize] = 0x42;
        std::fs::write(&path, &bad).unwrap();
        let s = scan(&path).unwrap();
        assert_eq!(s.tags, 1);
        assert_eq!(s.stopped.map(|(_, why)| why), Some("unknown tag type"));
    }
}
