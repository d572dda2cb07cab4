//! One fragment: `moof` (`mfhd`, a `traf` per track with `tfhd` (default-base-is-moof),
//! `tfdt` and one `trun` with each sample's duration, size, flags and composition offset)
//! followed by the `mdat` holding the tracks' samples in the same order. An LL-HLS part is
//! one fragment; a segment is its parts back to back.

use bytes::{BufMut, Bytes, BytesMut};
use mp4_atom::{Encode, Mfhd, Moof, Tfdt, Tfhd, Traf, Trun, TrunEntry, TrunSamples};

use super::error::Fmp4Error;

/// `sample_depends_on = 2` (an I picture, or any audio frame).
pub const SYNC: u32 = 0x0200_0000;
/// `sample_depends_on = 1`, `sample_is_non_sync_sample`.
pub const NON_SYNC: u32 = 0x0101_0000;

/// One sample of one track, on the track's [`TIMESCALE`](super::init::TIMESCALE) clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub dts: u64,
    pub duration: u32,
    /// Presentation minus decode time (B-frames).
    pub cts: i32,
    pub sync: bool,
    pub data: Bytes,
}

/// A track's samples in one fragment (decode order, contiguous).
pub struct Run<'a> {
    pub track_id: u32,
    pub samples: &'a [Sample],
}

/// `moof` + `mdat` for `runs` (empty runs are left out); `None` when there is no sample.
pub fn fragment(sequence: u32, runs: &[Run<'_>]) -> Result<Option<Bytes>, Fmp4Error> {
    let runs: Vec<&Run<'_>> = runs.iter().filter(|r| !r.samples.is_empty()).collect();
    if runs.is_empty() {
        return Ok(None);
    }
    let mut moof = Moof {
        mfhd: Mfhd {
            sequence_number: sequence,
        },
        traf: runs
            .iter()
            .map(|r| Traf {
                tfhd: Tfhd {
                    track_id: r.track_id,
                    default_base_is_moof: true,
                    ..Default::default()
                },
                tfdt: Some(Tfdt {
                    base_media_decode_time: r.samples[0].dts,
                }),
                trun: vec![Trun {
                    data_offset: Some(0),
                    samples: TrunSamples::Explicit(
                        r.samples
                            .iter()
                            .map(|s| TrunEntry {
                                duration: Some(s.duration),
                                size: Some(s.data.len() as u32),
                                flags: Some(if s.sync { SYNC } else { NON_SYNC }),
                                cts: Some(i64::from(s.cts)),
                            })
                            .collect(),
                    ),
                }],
                ..Default::default()
            })
            .collect(),
    };
    let enc = |e: mp4_atom::Error| Fmp4Error::Encode(e.to_string());
    // The data offsets are fixed-width fields: measure once, then write the real offsets.
    let mut probe = Vec::new();
    moof.encode(&mut probe).map_err(enc)?;
    let data_len: usize = runs
        .iter()
        .flat_map(|r| r.samples.iter())
        .map(|s| s.data.len())
        .sum();
    let mut offset = probe.len() + 8;
    for (traf, run) in moof.traf.iter_mut().zip(&runs) {
        traf.trun[0].data_offset = Some(
            i32::try_from(offset)
                .map_err(|_| Fmp4Error::Encode("fragment larger than 2 GiB".into()))?,
        );
        offset += run.samples.iter().map(|s| s.data.len()).sum::<usize>();
    }
    let mut head = Vec::with_capacity(probe.len());
    moof.encode(&mut head).map_err(enc)?;
    debug_assert_eq!(head.len(), probe.len());
    let mdat_len = u32::try_from(data_len + 8)
        .map_err(|_| Fmp4Error::Encode("fragment larger than 4 GiB".into()))?;
    let mut out = BytesMut::with_capacity(head.len() + 8 + data_len);
    out.extend_from_slice(&head);
    out.put_u32(mdat_len);
    out.extend_from_slice(b"mdat");
    for s in runs.iter().flat_map(|r| r.samples.iter()) {
        out.extend_from_slice(&s.data);
    }
    Ok(Some(out.freeze()))
}
