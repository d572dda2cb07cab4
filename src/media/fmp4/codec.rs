//! FLV audio/video tag bodies (classic and Enhanced RTMP) as fMP4 tracks and samples: the
//! decoder configuration of a sequence header, and the bytes, composition offset and sync
//! flag of a coded frame. The NAL units in an FLV body are already length-prefixed (the
//! `avcC`/`hvcC` form), so a sample is a slice of the body, never a copy.

use bytes::Bytes;
use mp4_atom::{Atom, Avcc, Hvcc};

use super::error::Fmp4Error;
use super::sps::{h264_size, h265_size};

/// A video track's decoder configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoCodec {
    Avc(Avcc),
    Hevc(Hvcc),
}

/// What the init segment says about the video track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoConfig {
    pub codec: VideoCodec,
    /// Cropped picture size from the SPS (0 when the SPS could not be read).
    pub width: u16,
    pub height: u16,
}

/// What the init segment says about the AAC track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioConfig {
    /// The AudioSpecificConfig, as the publisher sent it.
    pub asc: Vec<u8>,
    pub sample_rate: u32,
    pub channels: u16,
}

/// One FLV video body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoPacket {
    Config(VideoConfig),
    /// A coded picture: length-prefixed NAL units, presentation minus decode time in ms.
    Frame {
        data: Bytes,
        cts: i32,
        keyframe: bool,
    },
    /// Nothing to mux: end of sequence, metadata, command frames.
    Skip,
}

/// One FLV audio body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioPacket {
    Config(AudioConfig),
    /// A raw AAC frame.
    Frame(Bytes),
}

fn cts24(b: &[u8]) -> i32 {
    // A signed 24-bit big-endian value.
    (((u32::from(b[0]) << 24) | (u32::from(b[1]) << 16) | (u32::from(b[2]) << 8)) as i32) >> 8
}

fn unsupported(what: &str) -> Fmp4Error {
    Fmp4Error::Unsupported(what.to_owned())
}

/// Reads an FLV video tag body: H.264 (codec id 7, or Enhanced RTMP `avc1`) and H.265 (the
/// common codec id 12, or Enhanced RTMP `hvc1`).
pub fn parse_video(body: &Bytes) -> Result<VideoPacket, Fmp4Error> {
    let Some(&b0) = body.first() else {
        return Ok(VideoPacket::Skip);
    };
    let short = || Fmp4Error::Malformed("video body too short".into());
    if b0 & 0x80 != 0 {
        // Enhanced RTMP: [1 | frame type:3 | packet type:4] FourCC ...
        let frame_type = (b0 >> 4) & 0x07;
        let packet_type = b0 & 0x0f;
        let fourcc = body.get(1..5).ok_or_else(short)?;
        let hevc = match fourcc {
            b"avc1" => false,
            b"hvc1" => true,
            other => {
                return Err(unsupported(&format!(
                    "video codec {} (only H.264 and H.265)",
                    String::from_utf8_lossy(other)
                )));
            }
        };
        if frame_type == 5 {
            return Ok(VideoPacket::Skip); // a command frame, not a picture
        }
        return match packet_type {
            0 => config(hevc, &body[5..]).map(VideoPacket::Config),
            1 => {
                let cts = cts24(body.get(5..8).ok_or_else(short)?);
                Ok(VideoPacket::Frame {
                    data: body.slice(8..),
                    cts,
                    keyframe: frame_type == 1,
                })
            }
            3 => Ok(VideoPacket::Frame {
                data: body.slice(5..),
                cts: 0,
                keyframe: frame_type == 1,
            }),
            _ => Ok(VideoPacket::Skip),
        };
    }
    let hevc = match b0 & 0x0f {
        7 => false,
        12 => true,
        id => {
            return Err(unsupported(&format!(
                "FLV video codec id {id} (only H.264 and H.265)"
            )));
        }
    };
    if b0 >> 4 == 5 {
        return Ok(VideoPacket::Skip);
    }
    let head = body.get(..5).ok_or_else(short)?;
    match head[1] {
        0 => config(hevc, &body[5..]).map(VideoPacket::Config),
        1 => Ok(VideoPacket::Frame {
            data: body.slice(5..),
            cts: cts24(&head[2..5]),
            keyframe: b0 >> 4 == 1,
        }),
        _ => Ok(VideoPacket::Skip),
    }
}

fn config(hevc: bool, record: &[u8]) -> Result<VideoConfig, Fmp4Error> {
    let bad = |e: mp4_atom::Error| Fmp4Error::Malformed(format!("decoder configuration: {e}"));
    let (codec, size) = if hevc {
        let h = Hvcc::decode_body(&mut &record[..]).map_err(bad)?;
        let size = h
            .arrays
            .iter()
            .filter(|a| a.nal_unit_type == 33)
            .flat_map(|a| a.nalus.first())
            .next()
            .and_then(|sps| h265_size(sps));
        (VideoCodec::Hevc(h), size)
    } else {
        let a = Avcc::decode_body(&mut &record[..]).map_err(bad)?;
        let size = a
            .sequence_parameter_sets
            .first()
            .and_then(|sps| h264_size(sps));
        (VideoCodec::Avc(a), size)
    };
    let (w, h) = size.unwrap_or((0, 0));
    Ok(VideoConfig {
        codec,
        width: u16::try_from(w).unwrap_or(0),
        height: u16::try_from(h).unwrap_or(0),
    })
}

const AAC_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Reads an FLV audio tag body: AAC only (sound format 10).
pub fn parse_audio(body: &Bytes) -> Result<AudioPacket, Fmp4Error> {
    let Some(&b0) = body.first() else {
        return Err(Fmp4Error::Malformed("empty audio body".into()));
    };
    if b0 >> 4 != 10 {
        return Err(unsupported("audio codec (only AAC)"));
    }
    match body.get(1) {
        Some(0) => audio_config(&body[2..]).map(AudioPacket::Config),
        Some(1) => Ok(AudioPacket::Frame(body.slice(2..))),
        _ => Err(Fmp4Error::Malformed("bad AACPacketType".into())),
    }
}

fn audio_config(asc: &[u8]) -> Result<AudioConfig, Fmp4Error> {
    let bad = || Fmp4Error::Malformed("AudioSpecificConfig too short".into());
    if asc.len() < 2 {
        return Err(bad());
    }
    let b0 = asc[0];
    // audioObjectType:5 (31 escapes to 6 more bits), samplingFrequencyIndex:4, channels:4.
    let mut bit = 5;
    if b0 >> 3 == 31 {
        bit += 6;
    }
    let read = |at: usize, n: usize| -> Option<u32> {
        let mut v = 0u32;
        for i in at..at + n {
            let byte = *asc.get(i / 8)?;
            v = (v << 1) | u32::from((byte >> (7 - i % 8)) & 1);
        }
        Some(v)
    };
    let index = read(bit, 4).ok_or_else(bad)?;
    bit += 4;
    let sample_rate = if index == 15 {
        let r = read(bit, 24).ok_or_else(bad)?;
        bit += 24;
        r
    } else {
        *AAC_RATES
            .get(index as usize)
            .ok_or_else(|| Fmp4Error::Malformed(format!("sampling frequency index {index}")))?
    };
    let channels = read(bit, 4).ok_or_else(bad)? as u16;
    Ok(AudioConfig {
        asc: asc.to_vec(),
        sample_rate,
        // Channel configuration 0 means "in the program config element": say stereo.
        channels: if channels == 0 { 2 } else { channels },
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An FLV AVC sequence header body for 320x240 baseline (x264's SPS and PPS).
    pub fn avc_header() -> Bytes {
        let sps: &[u8] = &[
            0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
            0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0xa4, 0x80,
        ];
        let pps: &[u8] = &[0x68, 0xcb, 0x83, 0xcb, 0x20];
        let mut v = vec![0x17, 0, 0, 0, 0, 1, 0x42, 0xc0, 0x0d, 0xff, 0xe1];
        v.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        v.extend_from_slice(sps);
        v.push(1);
        v.extend_from_slice(&(pps.len() as u16).to_be_bytes());
        v.extend_from_slice(pps);
        Bytes::from(v)
    }

    #[test]
    fn avc_header_and_frames() {
        let VideoPacket::Config(c) = parse_video(&avc_header()).unwrap() else {
            panic!("not a config");
        };
        assert_eq!((c.width, c.height), (320, 240));
        assert!(matches!(c.codec, VideoCodec::Avc(ref a) if a.length_size == 4));
        let frame = Bytes::from_static(&[0x27, 1, 0xff, 0xff, 0xd8, 0, 0, 0, 1, 0x41]);
        assert_eq!(
            parse_video(&frame).unwrap(),
            VideoPacket::Frame {
                data: frame.slice(5..),
                cts: -40,
                keyframe: false
            }
        );
        let key = Bytes::from_static(&[0x17, 1, 0, 0, 80, 0, 0, 0, 1, 0x65]);
        assert!(matches!(
            parse_video(&key).unwrap(),
            VideoPacket::Frame {
                cts: 80,
                keyframe: true,
                ..
            }
        ));
        assert_eq!(
            parse_video(&Bytes::from_static(&[0x17, 2, 0, 0, 0])).unwrap(),
            VideoPacket::Skip
        );
        assert!(parse_video(&Bytes::from_static(&[0x17, 1])).is_err());
        assert!(matches!(
            parse_video(&Bytes::from_static(&[0x22, 0])),
            Err(Fmp4Error::Unsupported(_))
        ));
    }

    #[test]
    fn enhanced_rtmp_hevc() {
        // CodedFrames (cts follows the FourCC) and CodedFramesX (no cts).
        let f = Bytes::from_static(&[0x91, b'h', b'v', b'c', b'1', 0, 0, 40, 0, 0, 0, 2, 0x26, 1]);
        assert!(matches!(
            parse_video(&f).unwrap(),
            VideoPacket::Frame { cts: 40, keyframe: true, ref data } if data.len() == 6
        ));
        let x = Bytes::from_static(&[0xa3, b'h', b'v', b'c', b'1', 0, 0, 0, 2, 0x02, 1]);
        assert!(matches!(
            parse_video(&x).unwrap(),
            VideoPacket::Frame { cts: 0, keyframe: false, ref data } if data.len() == 6
        ));
        let av1 = Bytes::from_static(&[0x91, b'a', b'v', b'0', b'1', 0, 0, 0]);
        assert!(matches!(parse_video(&av1), Err(Fmp4Error::Unsupported(_))));
        // A SequenceStart with a real hvcC record from mp4-atom's encoder.
        let hvcc = Hvcc {
            configuration_version: 1,
            general_profile_idc: 1,
            general_level_idc: 90,
            chroma_format_idc: 1,
            length_size_minus_one: 3,
            ..Default::default()
        };
        let mut rec = Vec::new();
        hvcc.encode_body(&mut rec).unwrap();
        let mut body = vec![0x90, b'h', b'v', b'c', b'1'];
        body.extend_from_slice(&rec);
        let VideoPacket::Config(c) = parse_video(&Bytes::from(body)).unwrap() else {
            panic!("not a config")
        };
        assert_eq!(c.codec, VideoCodec::Hevc(hvcc));
    }

    #[test]
    fn aac() {
        // AAC-LC, 44.1 kHz, mono.
        let AudioPacket::Config(c) =
            parse_audio(&Bytes::from_static(&[0xaf, 0, 0x12, 0x08])).unwrap()
        else {
            panic!("not a config")
        };
        assert_eq!((c.sample_rate, c.channels, c.asc.len()), (44100, 1, 2));
        // HE-AAC signalled explicitly: 48 kHz stereo core.
        let AudioPacket::Config(c) = parse_audio(&Bytes::from_static(&[
            0xaf, 0, 0x11, 0x90, 0x56, 0xe5, 0x00,
        ]))
        .unwrap() else {
            panic!("not a config")
        };
        assert_eq!((c.sample_rate, c.channels), (48000, 2));
        assert_eq!(
            parse_audio(&Bytes::from_static(&[0xaf, 1, 9, 9])).unwrap(),
            AudioPacket::Frame(Bytes::from_static(&[9, 9]))
        );
        assert!(parse_audio(&Bytes::from_static(&[0x2f, 0])).is_err());
        assert!(parse_audio(&Bytes::from_static(&[0xaf, 0, 0x17])).is_err());
    }
}
