//! Indexes an MP4 (ISO BMFF) file: H.264 / H.265 video and AAC audio tracks, as
//! ffmpeg, phones and cameras write them, with `moov` before or after `mdat`.
//!
//! The boxes are decoded by `mp4-atom` (kixelated/mp4-atom: maintained, MIT/Apache, decodes
//! `avcC`, `hvcC` and `esds` and bounds what a box's counts may allocate; Mozilla's `mp4parse`
//! was the other candidate but has no H.265). The sample tables (`stts`, `ctts`, `stss`, `stsc`,
//! `stsz`, `stco`/`co64`) are turned into one list of samples here, bounded by
//! [`MAX_SAMPLES`]. Edit lists are not applied: a B-frame delay or AAC priming shows as a few
//! tens of milliseconds of offset, which players absorb. Fragmented MP4 (`moof`) is not played.

use std::io::{Read, Seek, SeekFrom};

use bytes::Bytes;
use mp4_atom::{Codec, Decode, Encode, Moov, StszSamples, Trak};

use super::index::{Damage, Header, Index, Sample, Wrap};
use crate::rtmp::amf::{Amf0Value, encode_amf0_all};
use crate::rtmp::session::MediaKind;

/// Samples one file may hold (a day of 60 fps video with 48 kHz AAC is about 9.3 million).
pub const MAX_SAMPLES: usize = 16_000_000;

fn damage(offset: u64, why: impl Into<String>) -> Damage {
    Damage {
        offset,
        why: why.into(),
    }
}

/// Largest `moov` read into memory (a day of samples is well under this).
const MAX_MOOV: u64 = 256 << 20;

/// The top-level box `kind` in `r` (`len` bytes): the offset and size of the whole box.
fn find_box<R: Read + Seek>(
    r: &mut R,
    len: u64,
    kind: &[u8; 4],
) -> Result<Option<(u64, u64)>, Damage> {
    let mut pos = 0u64;
    while pos + 8 <= len {
        let io = |e: std::io::Error| damage(pos, format!("read failed: {e}"));
        r.seek(SeekFrom::Start(pos)).map_err(io)?;
        let mut h = [0u8; 16];
        let n = if pos + 16 <= len { 16 } else { 8 };
        r.read_exact(&mut h[..n]).map_err(io)?;
        let size = match u32::from_be_bytes([h[0], h[1], h[2], h[3]]) {
            0 => len - pos,
            1 if n == 16 => {
                u64::from_be_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]])
            }
            1 => return Err(damage(pos, "the file ends inside a box header")),
            n => u64::from(n),
        };
        if size < 8 {
            return Err(damage(pos, format!("box size {size} is impossible")));
        }
        if &h[4..8] == kind {
            if pos.saturating_add(size) > len {
                return Err(damage(
                    pos,
                    format!("the {} box runs past the end of the file", show(kind)),
                ));
            }
            return Ok(Some((pos, size)));
        }
        pos = pos.saturating_add(size);
    }
    Ok(None)
}

fn show(kind: &[u8]) -> String {
    String::from_utf8_lossy(kind).into_owned()
}

/// Indexes the MP4 file `r` of `len` bytes; `Err` when there is nothing playable in it.
pub fn index<R: Read + Seek>(r: &mut R, len: u64) -> Result<Index, Damage> {
    let mut head = [0u8; 8];
    if len < 8
        || r.read_exact(&mut head).is_err()
        || !matches!(&head[4..8], b"ftyp" | b"moov" | b"mdat" | b"free" | b"wide")
    {
        return Err(damage(
            0,
            "not an MP4 file (no ftyp, moov or mdat box first)",
        ));
    }
    let Some((at, size)) = find_box(r, len, b"moov")? else {
        return Err(damage(0, "no moov box (an unfinished or fragmented MP4)"));
    };
    if size > MAX_MOOV {
        return Err(damage(at, format!("a {size}-byte moov box is too large")));
    }
    let mut moov = vec![0u8; size as usize];
    r.seek(SeekFrom::Start(at))
        .and_then(|_| r.read_exact(&mut moov))
        .map_err(|e| damage(at, format!("read failed: {e}")))?;
    let moov = Moov::decode(&mut &moov[..]).map_err(|e| damage(at, format!("moov: {e}")))?;
    let file_len = len;
    let mut ix = Index::default();
    let mut meta: Vec<(String, Amf0Value)> = Vec::new();
    let (mut video, mut audio) = (false, false);
    for trak in &moov.trak {
        let handler: [u8; 4] = trak.mdia.hdlr.handler.into();
        let kind = match &handler {
            b"vide" if !video => MediaKind::Video,
            b"soun" if !audio => MediaKind::Audio,
            // Second video or audio tracks, subtitles, hint and timecode tracks.
            _ => continue,
        };
        let Some(track) = track_setup(trak, kind, &mut meta) else {
            continue;
        };
        let before = ix.samples.len();
        samples(trak, kind, track.wrap, &mut ix.samples, file_len)
            .map_err(|why| damage(at, why))?;
        if ix.samples.len() == before {
            continue;
        }
        match kind {
            MediaKind::Video => video = true,
            _ => audio = true,
        }
        ix.headers.push(Header {
            kind,
            body: Bytes::from(track.header),
        });
    }
    if ix.samples.is_empty() {
        return Err(damage(
            at,
            "no H.264, H.265 or AAC track with samples in the file",
        ));
    }
    ix.samples.sort_by_key(|s| s.time_ms);
    ix.finish();
    meta.insert(
        0,
        (
            "duration".into(),
            Amf0Value::Number(f64::from(ix.duration_ms) / 1000.0),
        ),
    );
    meta.push(("filesize".into(), Amf0Value::Number(file_len as f64)));
    meta.push(("hasVideo".into(), Amf0Value::Boolean(video)));
    meta.push(("hasAudio".into(), Amf0Value::Boolean(audio)));
    ix.headers.insert(
        0,
        Header {
            kind: MediaKind::Data,
            body: Bytes::from(encode_amf0_all(&[
                Amf0Value::string("onMetaData"),
                Amf0Value::EcmaArray(meta),
            ])),
        },
    );
    ix.headers.sort_by_key(|h| match h.kind {
        MediaKind::Data => 0,
        MediaKind::Video => 1,
        MediaKind::Audio => 2,
    });
    Ok(ix)
}

struct Track {
    wrap: Wrap,
    /// The sequence header's RTMP body.
    header: Vec<u8>,
}

/// The track's codec as RTMP carries it; `None` for codecs RTMP players cannot take.
fn track_setup(trak: &Trak, kind: MediaKind, meta: &mut Vec<(String, Amf0Value)>) -> Option<Track> {
    let codec = trak.mdia.minf.stbl.stsd.codecs.first()?;
    let n = |v: f64| Amf0Value::Number(v);
    // A box's body: what follows its 8-byte header once encoded.
    let body = |e: &dyn Fn(&mut Vec<u8>) -> mp4_atom::Result<()>| {
        let mut v = Vec::new();
        e(&mut v).ok()?;
        v.get(8..).map(<[u8]>::to_vec)
    };
    match (kind, codec) {
        (MediaKind::Video, Codec::Avc1(a)) => {
            let record = body(&|v| a.avcc.encode(v))?;
            meta.push(("width".into(), n(a.visual.width.into())));
            meta.push(("height".into(), n(a.visual.height.into())));
            meta.push(("videocodecid".into(), n(7.0)));
            let mut header = vec![0x17, 0, 0, 0, 0];
            header.extend_from_slice(&record);
            Some(Track {
                wrap: Wrap::Avc,
                header,
            })
        }
        (MediaKind::Video, Codec::Hvc1(h)) => {
            Some(hevc(body(&|v| h.hvcc.encode(v))?, &h.visual, meta))
        }
        (MediaKind::Video, Codec::Hev1(h)) => {
            Some(hevc(body(&|v| h.hvcc.encode(v))?, &h.visual, meta))
        }
        (MediaKind::Audio, Codec::Mp4a(a)) => {
            let config = a.esds.es_desc.dec_config.dec_specific.as_ref()?;
            if config.raw.is_empty() {
                return None;
            }
            meta.push(("audiocodecid".into(), n(10.0)));
            meta.push((
                "audiosamplerate".into(),
                n(f64::from(a.audio.sample_rate.integer())),
            ));
            meta.push(("audiochannels".into(), n(a.audio.channel_count.into())));
            // AAC, and the flags FLV always gives AAC: 44 kHz, 16-bit, stereo.
            let mut header = vec![0xAF, 0];
            header.extend_from_slice(&config.raw);
            Some(Track {
                wrap: Wrap::Aac(0xAF),
                header,
            })
        }
        _ => {
            tracing::debug!(codec = ?std::mem::discriminant(codec), "MP4 track with a codec RTMP does not carry; skipped");
            None
        }
    }
}

fn hevc(record: Vec<u8>, visual: &mp4_atom::Visual, meta: &mut Vec<(String, Amf0Value)>) -> Track {
    meta.push(("width".into(), Amf0Value::Number(visual.width.into())));
    meta.push(("height".into(), Amf0Value::Number(visual.height.into())));
    meta.push(("videocodecid".into(), Amf0Value::string("hvc1")));
    // Enhanced RTMP: ex-header, keyframe, PacketTypeSequenceStart, FourCC.
    let mut header = vec![0x90];
    header.extend_from_slice(b"hvc1");
    header.extend_from_slice(&record);
    Track {
        wrap: Wrap::Hevc,
        header,
    }
}

/// Appends the track's samples, in decode order, that lie inside a file of `file_len` bytes.
fn samples(
    trak: &Trak,
    kind: MediaKind,
    wrap: Wrap,
    out: &mut Vec<Sample>,
    file_len: u64,
) -> Result<(), String> {
    let stbl = &trak.mdia.minf.stbl;
    let timescale = u64::from(trak.mdia.mdhd.timescale);
    if timescale == 0 {
        return Err("a track has timescale 0".into());
    }
    let count = match &stbl.stsz.samples {
        StszSamples::Identical { count, .. } => *count as usize,
        StszSamples::Different { sizes } => sizes.len(),
    };
    if out.len().saturating_add(count) > MAX_SAMPLES {
        return Err(format!("more than {MAX_SAMPLES} samples"));
    }
    let size = |i: usize| match &stbl.stsz.samples {
        StszSamples::Identical { size, .. } => *size,
        StszSamples::Different { sizes } => sizes[i],
    };
    let chunks: Vec<u64> = match (&stbl.co64, &stbl.stco) {
        (Some(c), _) => c.entries.clone(),
        (None, Some(c)) => c.entries.iter().map(|&o| u64::from(o)).collect(),
        (None, None) => return Err("a track has no chunk offsets (stco/co64)".into()),
    };
    let mut stts = stbl
        .stts
        .entries
        .iter()
        .flat_map(|e| std::iter::repeat_n(e.sample_delta, e.sample_count as usize));
    let mut ctts = stbl.ctts.iter().flat_map(|c| {
        c.entries
            .iter()
            .flat_map(|e| std::iter::repeat_n(e.sample_offset, e.sample_count as usize))
    });
    let sync: Option<std::collections::HashSet<u32>> = stbl
        .stss
        .as_ref()
        .map(|s| s.entries.iter().copied().collect());
    let ms = |ticks: i128| (ticks * 1000 / i128::from(timescale)) as i64;
    let (mut dts, mut sample) = (0u64, 0usize);
    let stsc = &stbl.stsc.entries;
    'chunks: for (c, &chunk_offset) in chunks.iter().enumerate() {
        let chunk_no = c as u32 + 1;
        let per_chunk = stsc
            .iter()
            .rev()
            .find(|e| e.first_chunk <= chunk_no)
            .map_or(0, |e| e.samples_per_chunk);
        let mut offset = chunk_offset;
        for _ in 0..per_chunk {
            if sample >= count {
                break 'chunks;
            }
            let len = size(sample);
            let cts = ctts.next().unwrap_or(0);
            let keyframe = kind == MediaKind::Video
                && sync
                    .as_ref()
                    .is_none_or(|s| s.contains(&(sample as u32 + 1)));
            let end = offset.saturating_add(u64::from(len));
            if end > file_len {
                // The mdat was cut short (a copy in progress): what is there still plays.
                break 'chunks;
            }
            let time_ms = ms(i128::from(dts));
            if time_ms > i64::from(u32::MAX) {
                return Err("a sample's time is past 49 days".into());
            }
            out.push(Sample {
                kind,
                time_ms: time_ms as u32,
                cts_ms: ms(i128::from(cts)).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
                offset,
                len,
                keyframe,
                wrap,
            });
            dts = dts.saturating_add(u64::from(stts.next().unwrap_or(0)));
            offset = end;
            sample += 1;
        }
    }
    Ok(())
}
