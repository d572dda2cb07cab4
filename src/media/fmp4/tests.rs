//! Box layout of the init segment and fragments (decoded back with `mp4-atom`), and the
//! segmenter's cuts, part durations, window bound and blocking-reload answers.

use bytes::Bytes;
use mp4_atom::{Any, Codec, Decode, Moof, TrunSamples};

use super::codec::tests::avc_header;
use super::codec::{self, AudioConfig, VideoCodec, VideoConfig};
use super::fragment::{NON_SYNC, Run, SYNC, Sample, fragment};
use super::init::{AUDIO_TRACK, TIMESCALE, VIDEO_TRACK, init_segment};
use super::segmenter::{Lookup, Segment, Segmenter, SegmenterConfig};

const AAC_HEADER: &[u8] = &[0xaf, 0, 0x12, 0x08];

fn video(key: bool, cts: i32, n: u8) -> Bytes {
    let c = cts.to_be_bytes();
    let mut v = vec![if key { 0x17 } else { 0x27 }, 1, c[1], c[2], c[3]];
    v.extend_from_slice(&[0, 0, 0, 2, if key { 0x65 } else { 0x41 }, n]);
    Bytes::from(v)
}

fn aac(n: u8) -> Bytes {
    Bytes::from(vec![0xaf, 1, 0x21, n])
}

fn boxes(mut b: &[u8]) -> Vec<Any> {
    let mut out = Vec::new();
    while !b.is_empty() {
        out.push(Any::decode(&mut b).expect("a box"));
    }
    out
}

fn configs() -> (VideoConfig, AudioConfig) {
    let codec::VideoPacket::Config(v) = codec::parse_video(&avc_header()).unwrap() else {
        unreachable!()
    };
    let codec::AudioPacket::Config(a) =
        codec::parse_audio(&Bytes::from_static(AAC_HEADER)).unwrap()
    else {
        unreachable!()
    };
    (v, a)
}

#[test]
fn init_segment_has_both_tracks_their_configs_and_mvex() {
    let (v, a) = configs();
    let init = init_segment(Some(&v), Some(&a)).unwrap();
    let b = boxes(&init);
    assert_eq!(b.len(), 2);
    let Any::Ftyp(ftyp) = &b[0] else {
        panic!("ftyp first: {:?}", b[0])
    };
    assert_eq!(ftyp.major_brand, mp4_atom::FourCC::new(b"iso6"));
    let Any::Moov(moov) = &b[1] else {
        panic!("moov second")
    };
    assert_eq!(moov.mvhd.timescale, TIMESCALE);
    let trex: Vec<u32> = moov
        .mvex
        .as_ref()
        .unwrap()
        .trex
        .iter()
        .map(|t| t.track_id)
        .collect();
    assert_eq!(trex, [VIDEO_TRACK, AUDIO_TRACK]);
    let vt = &moov.trak[0];
    assert_eq!(vt.tkhd.track_id, VIDEO_TRACK);
    assert_eq!(
        (vt.tkhd.width.integer(), vt.tkhd.height.integer()),
        (320, 240)
    );
    assert_eq!(vt.mdia.mdhd.timescale, TIMESCALE);
    let Codec::Avc1(avc1) = &vt.mdia.minf.stbl.stsd.codecs[0] else {
        panic!("avc1")
    };
    let VideoCodec::Avc(avcc) = &v.codec else {
        unreachable!()
    };
    assert_eq!(&avc1.avcc, avcc);
    assert_eq!((avc1.visual.width, avc1.visual.height), (320, 240));
    let at = &moov.trak[1];
    assert_eq!(at.mdia.hdlr.handler, mp4_atom::FourCC::new(b"soun"));
    let Codec::Mp4a(mp4a) = &at.mdia.minf.stbl.stsd.codecs[0] else {
        panic!("mp4a")
    };
    let asc = &mp4a
        .esds
        .es_desc
        .dec_config
        .dec_specific
        .as_ref()
        .unwrap()
        .raw;
    assert_eq!(asc.as_slice(), &AAC_HEADER[2..]);
    assert_eq!(mp4a.audio.channel_count, 1);
    assert_eq!(mp4a.audio.sample_rate.integer(), 44100);
    // Audio only, and nothing at all.
    let only = boxes(&init_segment(None, Some(&a)).unwrap());
    let Any::Moov(m) = &only[1] else { panic!() };
    assert_eq!(m.trak.len(), 1);
    assert!(init_segment(None, None).is_err());
}

#[test]
fn fragment_offsets_point_at_each_tracks_samples() {
    let v = [
        Sample {
            dts: 1000,
            duration: 40,
            cts: 80,
            sync: true,
            data: Bytes::from_static(b"KEYFRAME"),
        },
        Sample {
            dts: 1040,
            duration: 40,
            cts: -40,
            sync: false,
            data: Bytes::from_static(b"P1"),
        },
    ];
    let a = [Sample {
        dts: 1005,
        duration: 23,
        cts: 0,
        sync: true,
        data: Bytes::from_static(b"AAC"),
    }];
    let frag = fragment(
        7,
        &[
            Run {
                track_id: VIDEO_TRACK,
                samples: &v,
            },
            Run {
                track_id: AUDIO_TRACK,
                samples: &a,
            },
        ],
    )
    .unwrap()
    .unwrap();
    let moof = Moof::decode(&mut &frag[..]).unwrap();
    assert_eq!(moof.mfhd.sequence_number, 7);
    assert_eq!(moof.traf.len(), 2);
    let mut expected = vec![
        (b"KEYFRAMEP1".as_slice(), 1000u64),
        (b"AAC".as_slice(), 1005),
    ];
    for (traf, (want, dts)) in moof.traf.iter().zip(expected.drain(..)) {
        assert!(traf.tfhd.default_base_is_moof);
        assert_eq!(traf.tfdt.as_ref().unwrap().base_media_decode_time, dts);
        let trun = &traf.trun[0];
        let TrunSamples::Explicit(entries) = &trun.samples else {
            panic!("per-sample entries")
        };
        let off = trun.data_offset.unwrap() as usize;
        let len: u32 = entries.iter().map(|e| e.size.unwrap()).sum();
        assert_eq!(&frag[off..off + len as usize], want);
    }
    let TrunSamples::Explicit(e) = &moof.traf[0].trun[0].samples else {
        unreachable!()
    };
    assert_eq!(e[0].flags, Some(SYNC));
    assert_eq!(e[1].flags, Some(NON_SYNC));
    assert_eq!((e[0].cts, e[1].cts), (Some(80), Some(-40)));
    assert_eq!(e[1].duration, Some(40));
    // The mdat closes the fragment.
    let b = boxes(&frag);
    assert!(matches!(b.last(), Some(Any::Mdat(m)) if m.data.len() == 13));
    assert!(fragment(1, &[]).unwrap().is_none());
}

fn cfg() -> SegmenterConfig {
    SegmenterConfig {
        part_ms: 1000,
        segment_ms: 2000,
        window: 3,
        max_window_bytes: 64 << 20,
    }
}

/// 25 fps video with a keyframe every `gop` frames and 43 AAC frames a second, from `t0` ms
/// for `ms` milliseconds.
fn feed(s: &mut Segmenter, t0: u32, ms: u32, gop: u32) {
    let mut a = t0;
    for i in 0..ms / 40 {
        let t = t0 + i * 40;
        s.push_video(t, &video(i % gop == 0, 0, i as u8), 0);
        while a < t + 40 {
            s.push_audio(a, &aac(a as u8), 0);
            a += 23;
        }
    }
}

fn headers(s: &mut Segmenter) {
    s.push_video(0, &avc_header(), 0);
    s.push_audio(0, &Bytes::from_static(AAC_HEADER), 0);
}

#[test]
fn segments_start_on_keyframes_and_parts_stay_within_the_target() {
    let mut s = Segmenter::new(cfg());
    headers(&mut s);
    // Inter frames before the first keyframe are skipped.
    s.push_video(0, &video(false, 0, 0), 0);
    feed(&mut s, 40, 7_000, 25);
    let segs = s.segments();
    let complete: Vec<&Segment> = segs.iter().filter(|x| x.complete()).collect();
    assert_eq!(complete.len(), 3, "window of 3");
    for seg in &complete {
        assert_eq!(seg.duration_ms, 2000, "cut on the keyframe at 2 s");
        assert_eq!(seg.start_ms % 1000, 40, "starts on a keyframe");
        assert!(!seg.parts.is_empty() || seg.parts_dropped);
    }
    // Parts of the listed segments: 1 s each, the first independent.
    let listed: Vec<&Segment> = segs.iter().filter(|x| !x.parts.is_empty()).collect();
    assert!(listed.len() >= 2);
    for seg in listed.iter().filter(|x| x.complete()) {
        let d: Vec<u32> = seg.parts.iter().map(|p| p.duration_ms).collect();
        assert_eq!(d, [1000, 1000]);
        assert_eq!(d.iter().sum::<u32>(), seg.duration_ms);
        assert!(seg.parts[0].independent);
        assert!(
            seg.parts[1].independent,
            "the 1 s keyframe starts the second part too"
        );
        // The segment is its parts back to back.
        let joined: Vec<u8> = seg.parts.iter().flat_map(|p| p.bytes.to_vec()).collect();
        assert_eq!(seg.bytes.as_deref(), Some(&joined[..]));
    }
    assert_eq!(s.segments().front().unwrap().msn, 0);
    assert!(complete.windows(2).all(|w| w[1].msn == w[0].msn + 1));
    assert_eq!(s.target_secs(), 2);
    // The parts decode as fragments whose audio and video are contiguous in time.
    let mut next: [Option<u64>; 3] = [None; 3];
    for seg in s.segments().iter().filter(|x| !x.parts.is_empty()) {
        for p in &seg.parts {
            let moof = Moof::decode(&mut &p.bytes[..]).unwrap();
            for traf in &moof.traf {
                let id = traf.tfhd.track_id as usize;
                let start = traf.tfdt.as_ref().unwrap().base_media_decode_time;
                if let Some(n) = next[id] {
                    assert_eq!(start, n, "track {id} has a gap");
                }
                let d: u64 = traf.trun[0]
                    .samples
                    .iter()
                    .map(|e| u64::from(e.duration.unwrap()))
                    .sum();
                next[id] = Some(start + d);
            }
        }
    }
    assert!(next[1].is_some() && next[2].is_some());
}

#[test]
fn long_gops_make_long_segments_and_raise_the_target_duration() {
    let mut s = Segmenter::new(SegmenterConfig {
        part_ms: 500,
        ..cfg()
    });
    headers(&mut s);
    feed(&mut s, 0, 12_000, 75); // a keyframe every 3 s
    let d: Vec<u32> = s
        .segments()
        .iter()
        .filter(|x| x.complete())
        .map(|x| x.duration_ms)
        .collect();
    assert!(d.iter().all(|&x| x == 3000), "{d:?}");
    assert_eq!(s.target_secs(), 3);
    for seg in s.segments().iter().filter(|x| !x.parts.is_empty()) {
        assert!(seg.parts.iter().all(|p| p.duration_ms <= 500));
        assert!(seg.parts[0].independent);
        assert!(!seg.parts[1].independent);
    }
}

#[test]
fn no_keyframe_for_long_is_cut_anyway_and_the_window_is_bounded_in_bytes() {
    let mut s = Segmenter::new(SegmenterConfig {
        max_window_bytes: 4000,
        ..cfg()
    });
    headers(&mut s);
    feed(&mut s, 0, 30_000, 100_000); // one keyframe, then never again
    let complete: Vec<&Segment> = s.segments().iter().filter(|x| x.complete()).collect();
    let d: Vec<u32> = complete.iter().map(|x| x.duration_ms).collect();
    assert!(d.iter().all(|&x| x <= 8000 + 40), "{d:?}");
    assert!(!complete.is_empty());
    // Only the newest complete segment survives the byte bound (one is always kept).
    assert!(s.bytes() <= 4000 + complete.last().unwrap().bytes.as_ref().unwrap().len() * 3);
    assert!(s.segments().front().unwrap().msn >= 2);
}

#[test]
fn audio_only_streams_are_cut_by_time() {
    let mut s = Segmenter::new(cfg());
    s.push_audio(0, &Bytes::from_static(AAC_HEADER), 0);
    let mut t = 0;
    while t < 5000 {
        s.push_audio(t, &aac(1), 0);
        t += 23;
    }
    let complete: Vec<&Segment> = s.segments().iter().filter(|x| x.complete()).collect();
    assert_eq!(complete.len(), 2);
    for seg in complete {
        assert!(
            (2000..2030).contains(&seg.duration_ms),
            "{}",
            seg.duration_ms
        );
        assert!(
            seg.parts
                .iter()
                .all(|p| p.duration_ms <= 1000 && p.independent)
        );
    }
}

#[test]
fn a_new_sequence_header_starts_a_new_init_with_a_discontinuity() {
    let mut s = Segmenter::new(cfg());
    headers(&mut s);
    feed(&mut s, 0, 3000, 25);
    assert_eq!(s.init_version(), 1);
    // The same header again changes nothing.
    s.push_video(3000, &avc_header(), 0);
    feed(&mut s, 3000, 1000, 25);
    assert_eq!(s.init_version(), 1);
    assert!(s.segments().iter().all(|x| !x.discontinuity));
    // Another one does.
    let mut other = avc_header().to_vec();
    other[8] = 0x1e; // level 3.0
    s.push_video(4000, &Bytes::from(other), 0);
    feed(&mut s, 4000, 3000, 25);
    assert_eq!(s.init_version(), 2);
    let after: Vec<&Segment> = s.segments().iter().filter(|x| x.init == 2).collect();
    assert!(after[0].discontinuity && after[0].start_ms == 4000);
    assert!(
        s.init(Some(1)).is_some() && s.init(Some(2)).is_some() && s.init(None) == s.init(Some(2))
    );
    // Every segment before it is complete.
    assert!(
        s.segments()
            .iter()
            .filter(|x| x.init == 1)
            .all(|x| x.complete())
    );
}

#[test]
fn blocking_reload_answers() {
    let mut s = Segmenter::new(cfg());
    assert!(!s.reached(0, None) && !s.reached(0, Some(0)));
    assert!(!s.too_far(2, None) && s.too_far(3, None));
    assert_eq!(s.part(0, 0), Lookup::Pending);
    assert_eq!(s.next_part(), (0, 0));
    headers(&mut s);
    feed(&mut s, 0, 2500, 25); // segment 0 done (2 s), segment 1 has no part yet
    assert!(s.reached(0, None) && s.reached(0, Some(1)));
    // 0.2 does not exist: segment 0 ended with 2 parts; it is reached once 1.0 is there.
    assert!(!s.reached(0, Some(2)));
    assert_eq!(s.next_part(), (1, 0));
    assert!(!s.reached(1, Some(0)) && !s.reached(1, None));
    assert_eq!(s.part(1, 0), Lookup::Pending);
    assert_eq!(s.part(1, 1), Lookup::Gone);
    assert!(matches!(s.part(0, 1), Lookup::Ready(_)));
    assert!(matches!(s.segment_bytes(0), Lookup::Ready(_)));
    assert_eq!(s.segment_bytes(1), Lookup::Pending);
    assert_eq!(s.segment_bytes(9), Lookup::Gone);
    // Advance Part Limit 3 (1 s parts): 1.2 may wait, 1.3 is too far; 3 is, 4 is not.
    assert!(!s.too_far(1, Some(2)) && s.too_far(1, Some(3)));
    assert!(!s.too_far(3, Some(0)) && s.too_far(4, None));
    let before = s.changes();
    feed(&mut s, 2520, 1000, 25);
    assert!(s.changes() > before);
    assert!(s.reached(1, Some(0)) && s.reached(0, Some(2)));
    s.finish();
    assert!(s.ended() && s.reached(9, Some(9)));
    assert_eq!(s.part(99, 0), Lookup::Gone);
    // Everything was written: the last segment is complete.
    assert!(s.segments().back().unwrap().complete());
}

#[test]
fn a_lag_ends_the_segment_and_the_next_waits_for_a_keyframe() {
    let mut s = Segmenter::new(cfg());
    headers(&mut s);
    feed(&mut s, 0, 1500, 25);
    s.lagged();
    assert!(s.segments().back().unwrap().complete());
    // Inter frames after the gap are not written.
    s.push_video(3000, &video(false, 0, 1), 0);
    s.push_video(3040, &video(false, 0, 2), 0);
    s.push_video(3080, &video(true, 0, 3), 0);
    s.push_video(3120, &video(false, 0, 4), 0);
    let last = s.segments().back().unwrap();
    assert_eq!((last.msn, last.start_ms, last.complete()), (1, 3080, false));
}

#[test]
fn unsupported_video_is_an_error_and_unsupported_audio_is_left_out() {
    let mut s = Segmenter::new(cfg());
    s.push_audio(0, &Bytes::from_static(&[0x2f, 0xff]), 0);
    assert!(s.audio_unsupported().is_some());
    s.push_video(0, &Bytes::from_static(&[0x14, 0, 0]), 0);
    assert!(s.error().unwrap().contains("codec id 4"), "{:?}", s.error());
    assert!(s.reached(5, None), "requests are answered at once");
}

#[test]
fn wall_clock_follows_the_least_delayed_frame() {
    let mut s = Segmenter::new(cfg());
    headers(&mut s);
    // A cached GOP delivered at once (old frames), then live frames 40 ms apart.
    for i in 0..10u32 {
        s.push_video(i * 40, &video(i == 0, 0, 0), 1_000_000);
    }
    for i in 10..80u32 {
        s.push_video(
            i * 40,
            &video(i % 25 == 0, 0, 0),
            1_000_000 + i64::from(i - 9) * 40,
        );
    }
    let seg = s.segments().front().unwrap();
    assert_eq!(s.wall_clock_ms(seg), Some(1_000_000 - 360));
}
