//! Just enough codec inspection of FLV-style audio/video payloads to route them: keyframes,
//! sequence headers (AVC, HEVC, AAC, Enhanced RTMP FourCC codecs). Payloads are never modified.

/// What the fan-out needs to know about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameInfo {
    /// A video frame a decoder can start from.
    pub keyframe: bool,
    /// Decoder configuration (AVCDecoderConfigurationRecord, AudioSpecificConfig, ...) that a
    /// late player must receive before frames.
    pub sequence_header: bool,
}

/// Inspects the first bytes of an FLV video tag body.
pub fn inspect_video(payload: &[u8]) -> FrameInfo {
    let Some(&b0) = payload.first() else {
        return FrameInfo::default();
    };
    if b0 & 0x80 != 0 {
        // Enhanced RTMP: IsExHeader bit, 3-bit frame type, 4-bit packet type, then a FourCC.
        let frame_type = (b0 >> 4) & 0x07;
        let packet_type = b0 & 0x0f;
        // PacketTypeSequenceStart = 0, PacketTypeMPEG2TSSequenceStart = 5.
        let sequence_header = packet_type == 0 || packet_type == 5;
        // Frame type 5 is a command frame, not a picture; packet type 2 is SequenceEnd, 4 Metadata.
        let keyframe = frame_type == 1 && matches!(packet_type, 1 | 3);
        return FrameInfo {
            keyframe,
            sequence_header,
        };
    }
    let frame_type = b0 >> 4;
    let codec_id = b0 & 0x0f;
    // AVC (7) and the widely used non-standard HEVC id (12) carry an AVCPacketType byte.
    if codec_id == 7 || codec_id == 12 {
        let packet_type = payload.get(1).copied().unwrap_or(1);
        return FrameInfo {
            keyframe: frame_type == 1 && packet_type == 1,
            sequence_header: packet_type == 0,
        };
    }
    FrameInfo {
        keyframe: frame_type == 1,
        sequence_header: false,
    }
}

/// Inspects the first bytes of an FLV audio tag body.
pub fn inspect_audio(payload: &[u8]) -> FrameInfo {
    let Some(&b0) = payload.first() else {
        return FrameInfo::default();
    };
    let format = b0 >> 4;
    let sequence_header = match format {
        // AAC: AACPacketType 0 is the AudioSpecificConfig.
        10 => payload.get(1) == Some(&0),
        // Enhanced RTMP audio (ExHeader): packet type 0 is SequenceStart.
        9 => b0 & 0x0f == 0,
        _ => false,
    };
    FrameInfo {
        keyframe: false,
        sequence_header,
    }
}

/// A short codec name for an FLV video tag body: legacy codec ids or the Enhanced RTMP FourCC.
pub fn video_codec_name(payload: &[u8]) -> Option<&'static str> {
    let b0 = *payload.first()?;
    if b0 & 0x80 != 0 {
        return Some(match payload.get(1..5)? {
            b"avc1" => "h264",
            b"hvc1" => "h265",
            b"av01" => "av1",
            b"vp09" => "vp9",
            b"vp08" => "vp8",
            _ => "other",
        });
    }
    Some(match b0 & 0x0f {
        2 => "h263",
        3 => "screen",
        4 => "vp6",
        5 => "vp6a",
        6 => "screen2",
        7 => "h264",
        12 => "h265",
        _ => "other",
    })
}

/// A short codec name for an FLV audio tag body (legacy sound format or Enhanced RTMP FourCC).
pub fn audio_codec_name(payload: &[u8]) -> Option<&'static str> {
    let b0 = *payload.first()?;
    Some(match b0 >> 4 {
        0 | 3 => "pcm",
        1 => "adpcm",
        2 | 14 => "mp3",
        4..=6 => "nellymoser",
        7 => "g711a",
        8 => "g711u",
        9 => match payload.get(1..5)? {
            b"Opus" => "opus",
            b"fLaC" => "flac",
            b"ac-3" => "ac3",
            b"ec-3" => "eac3",
            b".mp3" => "mp3",
            b"mp4a" => "aac",
            _ => "other",
        },
        10 => "aac",
        11 => "speex",
        _ => "other",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_names() {
        assert_eq!(video_codec_name(&[0x17, 0]), Some("h264"));
        assert_eq!(
            video_codec_name(&[0x90, b'a', b'v', b'0', b'1']),
            Some("av1")
        );
        assert_eq!(video_codec_name(&[]), None);
        assert_eq!(audio_codec_name(&[0xaf, 0]), Some("aac"));
        assert_eq!(
            audio_codec_name(&[0x90, b'O', b'p', b'u', b's']),
            Some("opus")
        );
        assert_eq!(audio_codec_name(&[0x2f]), Some("mp3"));
    }

    #[test]
    fn avc() {
        assert_eq!(
            inspect_video(&[0x17, 0x00, 0, 0, 0]),
            FrameInfo {
                keyframe: false,
                sequence_header: true
            }
        );
        assert_eq!(
            inspect_video(&[0x17, 0x01, 0, 0, 0]),
            FrameInfo {
                keyframe: true,
                sequence_header: false
            }
        );
        assert_eq!(inspect_video(&[0x27, 0x01, 0, 0, 0]), FrameInfo::default());
        assert_eq!(inspect_video(&[]), FrameInfo::default());
    }

    #[test]
    fn enhanced_rtmp() {
        // keyframe | SequenceStart, 'hvc1'
        let seq = [0x80 | 0x10, b'h', b'v', b'c', b'1'];
        assert!(inspect_video(&seq).sequence_header);
        // keyframe | CodedFramesX, 'av01'
        let key = [0x80 | 0x10 | 3, b'a', b'v', b'0', b'1'];
        assert!(inspect_video(&key).keyframe);
        // inter frame | CodedFrames, 'vp09'
        let inter = [0x80 | 0x20 | 1, b'v', b'p', b'0', b'9'];
        assert_eq!(inspect_video(&inter), FrameInfo::default());
    }

    #[test]
    fn aac() {
        assert!(inspect_audio(&[0xaf, 0x00, 0x12, 0x10]).sequence_header);
        assert!(!inspect_audio(&[0xaf, 0x01, 0x21]).sequence_header);
        assert!(!inspect_audio(&[0x2f, 0x00]).sequence_header);
    }
}
