//! The init segment (`ftyp` + `moov`): one video track (id 1) and/or one AAC track (id 2),
//! empty sample tables and an `mvex` with a `trex` per track, as CMAF asks. Both tracks use
//! the [`TIMESCALE`] of FLV timestamps, milliseconds: nothing finer is known, and one clock
//! for both tracks keeps them in step without rounding.

use bytes::Bytes;
use mp4_atom::esds::{DecoderConfig, DecoderSpecific, EsDescriptor, SLConfig};
use mp4_atom::{
    Audio, Avc1, Codec, Dinf, Dref, DrefEntry, Encode, Esds, FixedPoint, FourCC, Ftyp, Hdlr, Hvc1,
    Mdhd, Mdia, Minf, Moov, Mp4a, Mvex, Mvhd, Smhd, Stbl, Stco, Stsd, Tkhd, Trak, Trex, Url,
    Visual, Vmhd,
};

use super::codec::{AudioConfig, VideoCodec, VideoConfig};
use super::error::Fmp4Error;

/// Ticks per second of both tracks (FLV's millisecond clock).
pub const TIMESCALE: u32 = 1000;
pub const VIDEO_TRACK: u32 = 1;
pub const AUDIO_TRACK: u32 = 2;

fn enc(e: mp4_atom::Error) -> Fmp4Error {
    Fmp4Error::Encode(e.to_string())
}

/// `ftyp` + `moov` for the tracks given (at least one).
pub fn init_segment(
    video: Option<&VideoConfig>,
    audio: Option<&AudioConfig>,
) -> Result<Bytes, Fmp4Error> {
    if video.is_none() && audio.is_none() {
        return Err(Fmp4Error::Unsupported(
            "a stream without audio or video".into(),
        ));
    }
    let ftyp = Ftyp {
        major_brand: FourCC::new(b"iso6"),
        minor_version: 0,
        compatible_brands: [b"iso6", b"cmfc", b"isom", b"mp41"]
            .into_iter()
            .map(FourCC::new)
            .collect(),
    };
    let mut moov = Moov {
        mvhd: Mvhd {
            timescale: TIMESCALE,
            rate: FixedPoint::new(1, 0),
            volume: FixedPoint::new(1, 0),
            next_track_id: AUDIO_TRACK + 1,
            ..Default::default()
        },
        mvex: Some(Mvex::default()),
        ..Default::default()
    };
    let mut mvex = Mvex::default();
    if let Some(v) = video {
        moov.trak.push(video_trak(v));
        mvex.trex.push(trex(VIDEO_TRACK));
    }
    if let Some(a) = audio {
        moov.trak.push(audio_trak(a));
        mvex.trex.push(trex(AUDIO_TRACK));
    }
    moov.mvex = Some(mvex);
    let mut out = Vec::new();
    ftyp.encode(&mut out).map_err(enc)?;
    moov.encode(&mut out).map_err(enc)?;
    Ok(Bytes::from(out))
}

fn trex(track_id: u32) -> Trex {
    Trex {
        track_id,
        default_sample_description_index: 1,
        ..Default::default()
    }
}

fn trak(track_id: u32, handler: &[u8; 4], name: &str, minf: Minf, tkhd: Tkhd) -> Trak {
    Trak {
        tkhd: Tkhd {
            track_id,
            enabled: true,
            in_movie: true,
            ..tkhd
        },
        mdia: Mdia {
            mdhd: Mdhd {
                timescale: TIMESCALE,
                language: "und".into(),
                ..Default::default()
            },
            hdlr: Hdlr {
                handler: FourCC::new(handler),
                name: name.into(),
            },
            minf,
        },
        ..Default::default()
    }
}

fn stbl(codec: Codec) -> Stbl {
    Stbl {
        stsd: Stsd {
            codecs: vec![codec],
        },
        stco: Some(Stco::default()),
        ..Default::default()
    }
}

fn dinf() -> Dinf {
    Dinf {
        dref: Dref {
            entries: vec![DrefEntry::Url(Url::default())],
        },
    }
}

fn video_trak(v: &VideoConfig) -> Trak {
    let visual = Visual {
        data_reference_index: 1,
        width: v.width,
        height: v.height,
        ..Default::default()
    };
    let codec = match &v.codec {
        VideoCodec::Avc(avcc) => Codec::Avc1(Avc1 {
            visual,
            avcc: avcc.clone(),
            ..Default::default()
        }),
        VideoCodec::Hevc(hvcc) => Codec::Hvc1(Hvc1 {
            visual,
            hvcc: hvcc.clone(),
            ..Default::default()
        }),
    };
    let minf = Minf {
        vmhd: Some(Vmhd::default()),
        dinf: dinf(),
        stbl: stbl(codec),
        ..Default::default()
    };
    let tkhd = Tkhd {
        width: FixedPoint::new(v.width, 0),
        height: FixedPoint::new(v.height, 0),
        ..Default::default()
    };
    trak(VIDEO_TRACK, b"vide", "VideoHandler", minf, tkhd)
}

fn audio_trak(a: &AudioConfig) -> Trak {
    let (profile, freq_index, chan_conf) = asc_fields(&a.asc);
    let mp4a = Mp4a {
        audio: Audio {
            data_reference_index: 1,
            channel_count: a.channels,
            sample_size: 16,
            // 16.16 fixed point: rates above 65535 Hz do not fit and are written as 0 (the
            // AudioSpecificConfig carries the real rate).
            sample_rate: FixedPoint::new(u16::try_from(a.sample_rate).unwrap_or(0), 0),
        },
        esds: Esds {
            es_desc: EsDescriptor {
                es_id: AUDIO_TRACK as u16,
                dec_config: DecoderConfig {
                    object_type_indication: 0x40, // MPEG-4 audio
                    stream_type: 5,               // audio stream
                    up_stream: 0,
                    dec_specific: Some(DecoderSpecific {
                        profile,
                        freq_index,
                        chan_conf,
                        raw: a.asc.clone(),
                    }),
                    ..Default::default()
                },
                sl_config: SLConfig::default(),
                ..Default::default()
            },
        },
        btrt: None,
        taic: None,
    };
    let minf = Minf {
        smhd: Some(Smhd::default()),
        dinf: dinf(),
        stbl: stbl(Codec::Mp4a(mp4a)),
        ..Default::default()
    };
    let tkhd = Tkhd {
        volume: FixedPoint::new(1, 0),
        alternate_group: 1,
        ..Default::default()
    };
    trak(AUDIO_TRACK, b"soun", "SoundHandler", minf, tkhd)
}

/// (audioObjectType, samplingFrequencyIndex, channelConfiguration) of a plain 2-byte prefix;
/// informative only, the raw bytes are written.
fn asc_fields(asc: &[u8]) -> (u8, u8, u8) {
    match asc {
        [a, b, ..] => (a >> 3, ((a & 7) << 1) | (b >> 7), (b >> 3) & 0x0f),
        _ => (0, 0, 0),
    }
}
