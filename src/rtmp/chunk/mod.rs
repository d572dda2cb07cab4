//! RTMP chunk stream (spec §5.3): reassembles peer chunks into messages and splits ours into chunks.
//! Sans-IO and bounded by [`ChunkLimits`]; tolerant of the header quirks of ffmpeg, librtmp and FMLE.
//!
//! `header.rs` is the wire format both directions share, `decode.rs` the decoder and its tests on
//! hand-built chunks, `encode.rs` the encoder; the round-trip tests and property tests, which need
//! both, are here. This file only declares and re-exports, so the three never import it.

mod decode;
mod encode;
mod header;

pub use decode::{ChunkDecoder, ChunkError, ChunkLimits};
pub use encode::{ChunkEncoder, encode_standalone};
pub use header::{
    CONTROL_CSID, DEFAULT_CHUNK_SIZE, MAX_CHUNK_HEADER_LEN, MAX_CSID, MAX_MESSAGE_LENGTH,
    MAX_SPEC_CHUNK_SIZE, MIN_CSID, MessageHeader, RawMessage,
};

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::decode::tests::*;
    use super::header::EXTENDED_TIMESTAMP;
    use super::*;
    use bytes::{Buf, BufMut, Bytes, BytesMut};
    use proptest::prelude::*;

    #[test]
    fn chunk_sizes_and_message_sizes_round_trip() {
        for cs in [1u32, 128, 4096] {
            let c = cs as usize;
            let mut sizes = vec![0, 1, 2];
            for k in 1..=3 {
                sizes.extend([k * c - 1, k * c, k * c + 1]);
            }
            for size in sizes {
                let mut enc = ChunkEncoder::new();
                enc.set_chunk_size(cs);
                let mut d = dec();
                d.set_chunk_size(cs).unwrap();
                let data = payload(size, 3);
                let mut out = BytesMut::new();
                enc.encode(5, &hdr(10, 9, 1), &data, &mut out);
                // 1-byte basic header + 11-byte header, one more byte per extra chunk.
                let chunks = size.div_ceil(c).max(1);
                assert_eq!(out.len(), 12 + size + (chunks - 1), "cs {cs} size {size}");
                let msgs = decode_all(&mut d, &out).unwrap();
                assert_eq!(msgs.len(), 1, "cs {cs} size {size}");
                assert_eq!(&msgs[0].payload[..], &data[..]);
                assert_eq!(d.pending_bytes(), 0);
            }
        }
    }

    #[test]
    fn extended_timestamp_repeated_on_continuations() {
        // ffmpeg / librtmp / FMS layout.
        let ts = 0x1234_5678;
        let data = payload(300, 2);
        let mut bytes = chunk(0, 6, EXTENDED_TIMESTAMP, 300, 9, 1, Some(ts), &data[..128]);
        bytes.extend(chunk(3, 6, 0, 0, 0, 0, Some(ts), &data[128..256]));
        bytes.extend(chunk(3, 6, 0, 0, 0, 0, Some(ts), &data[256..]));
        for msgs in [
            decode_all(&mut dec(), &bytes).unwrap(),
            decode_bytewise(&mut dec(), &bytes).unwrap(),
        ] {
            assert_eq!(msgs.len(), 1);
            assert_eq!(msgs[0].header.timestamp, ts);
            assert_eq!(&msgs[0].payload[..], &data[..]);
        }
        // Our encoder writes the same bytes.
        let mut out = BytesMut::new();
        ChunkEncoder::new().encode(6, &hdr(ts, 9, 1), &data, &mut out);
        assert_eq!(&out[..], &bytes[..]);
        let mut out = BytesMut::new();
        encode_standalone(6, &hdr(ts, 9, 1), &data, 128, &mut out);
        assert_eq!(&out[..], &bytes[..]);
    }

    #[test]
    fn timestamp_wraps() {
        let mut bytes = chunk(0, 4, EXTENDED_TIMESTAMP, 1, 8, 1, Some(0xFFFF_FFF0), b"a");
        bytes.extend(chunk(1, 4, 0x20, 1, 8, 0, None, b"b"));
        bytes.extend(chunk(3, 4, 0, 0, 0, 0, None, b"c"));
        let msgs = decode_all(&mut dec(), &bytes).unwrap();
        let ts: Vec<u32> = msgs.iter().map(|m| m.header.timestamp).collect();
        assert_eq!(ts, vec![0xFFFF_FFF0, 0x10, 0x30]);

        // The encoder falls back to fmt 0 when the timestamp wraps; it still decodes.
        let mut enc = ChunkEncoder::new();
        let mut out = BytesMut::new();
        enc.encode(4, &hdr(0xFFFF_FFF0, 8, 1), b"a", &mut out);
        let second = out.len();
        enc.encode(4, &hdr(0x10, 8, 1), b"b", &mut out);
        assert_eq!(out[second] >> 6, 0);
        let msgs = decode_all(&mut dec(), &out).unwrap();
        assert_eq!(msgs[1].header.timestamp, 0x10);
    }

    #[test]
    fn set_chunk_size_mid_stream() {
        let big = payload(300, 4);
        let mut enc = ChunkEncoder::new();
        let mut out = BytesMut::new();
        enc.encode(3, &hdr(0, 20, 0), &big, &mut out);
        enc.set_chunk_size(4096);
        enc.encode(3, &hdr(0, 20, 0), &big, &mut out);
        let mut d = dec();
        let mut buf = out;
        let first = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(&first.payload[..], &big[..]);
        // Without the Set Chunk Size, the rest would be misread.
        d.set_chunk_size(4096).unwrap();
        let second = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(&second.payload[..], &big[..]);
        assert!(buf.is_empty());
    }

    #[test]
    fn empty_messages_complete_immediately() {
        let mut bytes = chunk(0, 4, 1, 0, 18, 1, None, b"");
        bytes.extend(chunk(3, 4, 0, 0, 0, 0, None, b""));
        let msgs = decode_all(&mut dec(), &bytes).unwrap();
        assert_eq!(msgs.len(), 2);
        assert!(msgs.iter().all(|m| m.payload.is_empty()));
        assert_eq!(msgs[1].header.timestamp, 2);
        let mut out = BytesMut::new();
        ChunkEncoder::new().encode(4, &hdr(1, 18, 1), b"", &mut out);
        assert_eq!(out.len(), 12);
    }

    #[test]
    fn bytewise_equals_all_at_once() {
        let mut enc = ChunkEncoder::new();
        enc.set_chunk_size(50);
        let mut out = BytesMut::new();
        let mut t = 0u32;
        for i in 0..40u32 {
            t = t.wrapping_add([0, 33, 40, 0x0100_0000][i as usize % 4]);
            let csid = [3, 4, 64, 320][i as usize % 4];
            let size = [0usize, 10, 50, 51, 170][i as usize % 5];
            let data = payload(size, i as u8);
            enc.encode(csid, &hdr(t, 8 + (i % 2) as u8, 1), &data, &mut out);
        }
        encode_standalone(7, &hdr(0x0300_0000, 9, 1), &payload(120, 1), 50, &mut out);
        let mut a = dec();
        a.set_chunk_size(50).unwrap();
        let mut b = dec();
        b.set_chunk_size(50).unwrap();
        let all = decode_all(&mut a, &out).unwrap();
        assert_eq!(all.len(), 41);
        assert_eq!(all, decode_bytewise(&mut b, &out).unwrap());
    }

    #[test]
    fn encoder_header_compression() {
        let mut enc = ChunkEncoder::new();
        let mut out = BytesMut::new();
        let mut fmts = Vec::new();
        let mut push = |enc: &mut ChunkEncoder, h: MessageHeader, len: usize| {
            let at = out.len();
            enc.encode(4, &h, &vec![0u8; len], &mut out);
            fmts.push(out[at] >> 6);
        };
        push(&mut enc, hdr(100, 8, 1), 10); // first: fmt 0
        push(&mut enc, hdr(200, 8, 1), 10); // same len/type, delta 100 == fmt 0 ts: still fmt 2
        push(&mut enc, hdr(300, 8, 1), 10); // same delta: fmt 3
        push(&mut enc, hdr(320, 8, 1), 11); // new length: fmt 1
        push(&mut enc, hdr(340, 9, 1), 11); // new type: fmt 1
        push(&mut enc, hdr(360, 9, 1), 11); // same delta: fmt 3
        push(&mut enc, hdr(350, 9, 1), 11); // backwards: fmt 0
        push(&mut enc, hdr(360, 9, 2), 11); // new stream id: fmt 0
        push(&mut enc, hdr(360 + 0x0100_0000, 9, 2), 11); // extended delta: fmt 0
        push(&mut enc, hdr(370 + 0x0100_0000, 9, 2), 11); // small delta after: fmt 2
        assert_eq!(fmts, vec![0, 2, 3, 1, 1, 3, 0, 0, 0, 2]);
        let msgs = decode_all(&mut dec(), &out).unwrap();
        let ts: Vec<u32> = msgs.iter().map(|m| m.header.timestamp).collect();
        assert_eq!(
            ts,
            vec![
                100,
                200,
                300,
                320,
                340,
                360,
                350,
                360,
                360 + 0x0100_0000,
                370 + 0x0100_0000
            ]
        );
        assert_eq!(msgs[7].header.stream_id, 2);
        // reset_csid forces a full header again.
        let at = out.len();
        enc.reset_csid(4);
        enc.encode(4, &hdr(380 + 0x0100_0000, 9, 2), &[0; 11], &mut out);
        assert_eq!(out[at] >> 6, 0);
    }

    #[test]
    fn standalone_interleaved_with_encoder_output() {
        let mut enc = ChunkEncoder::new();
        enc.set_chunk_size(100);
        let mut out = BytesMut::new();
        let media = payload(250, 3);
        let mut expected = Vec::new();
        for i in 0..6u32 {
            let h = hdr(i * 40, 20, 0);
            enc.encode(3, &h, b"cmd", &mut out);
            expected.push((3, h, b"cmd".to_vec()));
            let h = hdr(i * 40 + 0x00FF_FFF0, 9, 1);
            encode_standalone(6, &h, &media, 100, &mut out);
            expected.push((6, h, media.clone()));
            let h = hdr(i * 23, 8, 1);
            encode_standalone(320, &h, &media[..30], 100, &mut out);
            expected.push((320, h, media[..30].to_vec()));
        }
        let mut d = dec();
        d.set_chunk_size(100).unwrap();
        let got: Vec<_> = decode_all(&mut d, &out)
            .unwrap()
            .into_iter()
            .map(|m| (m.csid, m.header, m.payload.to_vec()))
            .collect();
        assert_eq!(got, expected);
    }

    /// AMF0 string without the type marker.
    fn amf_key(v: &mut Vec<u8>, s: &str) {
        v.extend_from_slice(&(s.len() as u16).to_be_bytes());
        v.extend_from_slice(s.as_bytes());
    }

    fn amf_string(v: &mut Vec<u8>, s: &str) {
        v.push(0x02);
        amf_key(v, s);
    }

    #[test]
    fn ffmpeg_connect_fixture() {
        // The connect command ffmpeg's gen_connect builds for a publisher, written as
        // ff_rtmp_packet_write does on a fresh RTMP_SYSTEM_CHANNEL (csid 3): fmt 0 header with
        // timestamp 0 and stream id 0, 128-byte chunks, 0xC3 continuation markers.
        let mut body = Vec::new();
        amf_string(&mut body, "connect");
        body.push(0x00);
        body.extend_from_slice(&1.0f64.to_be_bytes());
        body.push(0x03);
        amf_key(&mut body, "app");
        amf_string(&mut body, "live");
        amf_key(&mut body, "type");
        amf_string(&mut body, "nonprivate");
        amf_key(&mut body, "flashVer");
        amf_string(&mut body, "FMLE/3.0 (compatible; Lavf61.7.100)");
        amf_key(&mut body, "tcUrl");
        amf_string(&mut body, "rtmp://127.0.0.1:1935/live");
        body.extend_from_slice(&[0x00, 0x00, 0x09]);
        assert!(body.len() > 128 && body.len() <= 256);

        let mut wire = vec![0x03, 0x00, 0x00, 0x00];
        wire.extend_from_slice(&u24(body.len() as u32));
        wire.push(0x14);
        wire.extend_from_slice(&[0, 0, 0, 0]);
        wire.extend_from_slice(&body[..128]);
        wire.push(0xC3);
        wire.extend_from_slice(&body[128..]);

        let msgs = decode_all(&mut dec(), &wire).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].csid, 3);
        assert_eq!(msgs[0].header, hdr(0, 20, 0));
        assert_eq!(&msgs[0].payload[..], &body[..]);
        assert_eq!(decode_bytewise(&mut dec(), &wire).unwrap(), msgs);

        // And our encoder produces the identical bytes.
        let mut out = BytesMut::new();
        ChunkEncoder::new().encode(3, &hdr(0, 20, 0), &body, &mut out);
        assert_eq!(&out[..], &wire[..]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Msg {
            csid: u32,
            dt: u32,
            type_id: u8,
            stream_id: u32,
            len: usize,
            standalone: bool,
        },
        ChunkSize(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        let csid = prop_oneof![
            Just(2u32),
            Just(3),
            Just(63),
            Just(64),
            Just(319),
            Just(320),
            Just(65_599),
            2u32..400,
        ];
        let dt = prop_oneof![
            Just(0u32),
            0u32..100,
            Just(0xFF_FFFF),
            0x00FF_FFF0u32..0x0100_0010,
            any::<u32>(),
        ];
        prop_oneof![
            8 => (csid, dt, prop_oneof![Just(8u8), Just(9), Just(20)], 0u32..3, 0usize..700, any::<bool>())
                .prop_map(|(csid, dt, type_id, stream_id, len, standalone)| Op::Msg {
                    csid, dt, type_id, stream_id, len, standalone
                }),
            1 => prop_oneof![Just(1u32), 2u32..300, Just(128), Just(4096)].prop_map(Op::ChunkSize),
        ]
    }

    proptest! {
        #[test]
        fn prop_round_trip(ops in proptest::collection::vec(op(), 1..40), split in any::<u64>()) {
            let mut enc = ChunkEncoder::new();
            let mut d = dec();
            let mut d2 = dec();
            let mut wire = BytesMut::new();
            let mut stream = BytesMut::new();
            let mut got = Vec::new();
            let mut expected = Vec::new();
            let mut clock: HashMap<u32, u32> = HashMap::new();
            let mut seed = split;
            for (i, op) in ops.iter().enumerate() {
                match op {
                    Op::ChunkSize(cs) => {
                        // The sender changes its size after all it wrote before is read.
                        enc.set_chunk_size(*cs);
                        while let Some(m) = d.decode(&mut wire).unwrap() {
                            got.push(m);
                        }
                        prop_assert!(wire.is_empty());
                        d.set_chunk_size(*cs).unwrap();
                        stream.extend_from_slice(&[0xFF]); // marker for the byte-split replay
                        stream.extend_from_slice(&cs.to_be_bytes());
                    }
                    Op::Msg { csid, dt, type_id, stream_id, len, standalone } => {
                        let t = clock.entry(*csid).or_insert(0);
                        *t = t.wrapping_add(*dt);
                        let h = hdr(*t, *type_id, *stream_id);
                        let data = payload(*len, i as u8);
                        let mut out = BytesMut::new();
                        if *standalone {
                            encode_standalone(*csid, &h, &data, enc.chunk_size(), &mut out);
                            enc.reset_csid(*csid);
                        } else {
                            enc.encode(*csid, &h, &data, &mut out);
                        }
                        stream.extend_from_slice(&[0x00]);
                        stream.extend_from_slice(&(out.len() as u32).to_be_bytes());
                        stream.extend_from_slice(&out);
                        wire.extend_from_slice(&out);
                        expected.push(RawMessage { csid: *csid, header: h, payload: Bytes::from(data) });
                        // Feed in random pieces.
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        if seed >> 60 != 0 {
                            while let Some(m) = d.decode(&mut wire).unwrap() {
                                got.push(m);
                            }
                        }
                    }
                }
            }
            while let Some(m) = d.decode(&mut wire).unwrap() {
                got.push(m);
            }
            prop_assert!(wire.is_empty());
            prop_assert_eq!(d.pending_bytes(), 0);
            prop_assert_eq!(&got, &expected);

            // Replay byte by byte.
            let mut got2 = Vec::new();
            let mut rd = &stream[..];
            let mut buf = BytesMut::new();
            while !rd.is_empty() {
                let tag = rd.get_u8();
                let n = rd.get_u32() as usize;
                if tag == 0xFF {
                    d2.set_chunk_size(n as u32).unwrap();
                    continue;
                }
                for &b in &rd[..n] {
                    buf.put_u8(b);
                    while let Some(m) = d2.decode(&mut buf).unwrap() {
                        got2.push(m);
                    }
                }
                rd.advance(n);
            }
            prop_assert_eq!(&got2, &expected);
        }

        #[test]
        fn prop_arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
            cs in prop_oneof![Just(1u32), 1u32..300],
            piece in 1usize..64,
        ) {
            let mut d = ChunkDecoder::new(ChunkLimits {
                max_message_size: 4096,
                max_chunk_size: 4096,
                max_chunk_streams: 8,
            });
            d.set_chunk_size(cs).unwrap();
            let mut buf = BytesMut::new();
            'outer: for p in bytes.chunks(piece) {
                buf.extend_from_slice(p);
                loop {
                    match d.decode(&mut buf) {
                        Ok(Some(m)) => prop_assert!(m.payload.len() <= 4096),
                        Ok(None) => break,
                        Err(_) => break 'outer,
                    }
                }
            }
            prop_assert!(d.pending_bytes() <= 8 * 4096);
        }

        #[test]
        fn prop_mutated_streams_never_panic(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        ) {
            let mut enc = ChunkEncoder::new();
            enc.set_chunk_size(16);
            let mut out = BytesMut::new();
            for i in 0..10u32 {
                enc.encode(3 + i % 3, &hdr(i * 0x0080_0000, 9, 1), &payload(40, i as u8), &mut out);
            }
            for (at, v) in flips {
                let n = out.len();
                out[at % n] = v;
            }
            let mut d = dec();
            d.set_chunk_size(16).unwrap();
            let _ = decode_all(&mut d, &out);
        }
    }
}
