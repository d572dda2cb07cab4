//! The media playlist of one stream's window, per RFC 8216bis (LL-HLS): parts of the recent
//! segments, a preload hint for the next part, blocking reload advertised, the wall clock of
//! each segment. Clients without low-latency support read the same text and use the
//! `EXTINF` segments only.

use std::fmt::Write;

use crate::media::fmp4::Segmenter;

/// `1234` ms as `1.234`.
fn secs(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Unix milliseconds as an RFC 3339 UTC time with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

/// The playlist; every URI gets `suffix` (the viewer's `?session=…`).
pub fn render(s: &Segmenter, suffix: &str) -> String {
    let part_ms = u64::from(s.config().part_ms);
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:{}\n\
         #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={}\n\
         #EXT-X-PART-INF:PART-TARGET={}\n#EXT-X-MEDIA-SEQUENCE:{}\n",
        s.target_secs(),
        secs(3 * part_ms),
        secs(part_ms),
        s.segments().front().map_or(s.next_part().0, |x| x.msn),
    );
    if s.discontinuity_seq() > 0 {
        let _ = writeln!(
            out,
            "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
            s.discontinuity_seq()
        );
    }
    let mut map = None;
    for seg in s.segments() {
        // An open segment without a part yet has nothing to list.
        if !seg.complete() && seg.parts.is_empty() {
            continue;
        }
        if seg.discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if map != Some(seg.init) {
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"init-{}.mp4{suffix}\"", seg.init);
            map = Some(seg.init);
        }
        if let Some(ms) = s.wall_clock_ms(seg) {
            let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", rfc3339(ms));
        }
        for (i, p) in seg.parts.iter().enumerate() {
            let _ = writeln!(
                out,
                "#EXT-X-PART:DURATION={},URI=\"part-{}.{i}.m4s{suffix}\"{}",
                secs(u64::from(p.duration_ms)),
                seg.msn,
                if p.independent {
                    ",INDEPENDENT=YES"
                } else {
                    ""
                }
            );
        }
        if seg.complete() {
            let _ = write!(
                out,
                "#EXTINF:{},\nseg-{}.m4s{suffix}\n",
                secs(u64::from(seg.duration_ms)),
                seg.msn
            );
        }
    }
    if s.ended() {
        out.push_str("#EXT-X-ENDLIST\n");
    } else {
        let (msn, part) = s.next_part();
        let _ = writeln!(
            out,
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-{msn}.{part}.m4s{suffix}\""
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::media::fmp4::SegmenterConfig;

    #[test]
    fn wall_clock_format() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_767_225_599_999), "2025-12-31T23:59:59.999Z");
    }

    fn avc_header() -> Bytes {
        let sps: &[u8] = &[
            0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
            0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0xa4, 0x80,
        ];
        let mut v = vec![
            0x17,
            0,
            0,
            0,
            0,
            1,
            0x42,
            0xc0,
            0x0d,
            0xff,
            0xe1,
            0,
            sps.len() as u8,
        ];
        v.extend_from_slice(sps);
        v.extend_from_slice(&[1, 0, 4, 0x68, 0xcb, 0x83, 0xcb]);
        Bytes::from(v)
    }

    #[test]
    fn ll_hls_playlist_text() {
        let mut s = Segmenter::new(SegmenterConfig {
            part_ms: 1000,
            segment_ms: 2000,
            window: 3,
            max_window_bytes: 1 << 30,
        });
        s.push_video(0, &avc_header(), 1_700_000_000_000);
        for i in 0..90u32 {
            let key = i % 25 == 0;
            let body = Bytes::from(vec![
                if key { 0x17 } else { 0x27 },
                1,
                0,
                0,
                0,
                0,
                0,
                0,
                1,
                5,
            ]);
            s.push_video(i * 40, &body, 1_700_000_000_000 + i64::from(i) * 40);
        }
        let text = render(&s, "?session=ab");
        let expected = "#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=3.000
#EXT-X-PART-INF:PART-TARGET=1.000
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-MAP:URI=\"init-1.mp4?session=ab\"
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z
#EXT-X-PART:DURATION=1.000,URI=\"part-0.0.m4s?session=ab\",INDEPENDENT=YES
#EXT-X-PART:DURATION=1.000,URI=\"part-0.1.m4s?session=ab\",INDEPENDENT=YES
#EXTINF:2.000,
seg-0.m4s?session=ab
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:22.000Z
#EXT-X-PART:DURATION=1.000,URI=\"part-1.0.m4s?session=ab\",INDEPENDENT=YES
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-1.1.m4s?session=ab\"
";
        assert_eq!(text, expected);
        s.finish();
        let text = render(&s, "");
        assert!(
            text.ends_with("#EXTINF:1.600,\nseg-1.m4s\n#EXT-X-ENDLIST\n"),
            "{text}"
        );
        assert!(!text.contains("PRELOAD-HINT"));
    }
}
