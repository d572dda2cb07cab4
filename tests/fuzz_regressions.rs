//! Replays the fuzz seeds and every input the fuzzers ever crashed on through the same harness
//! the cargo-fuzz targets run (`fuzz/harness.rs`), so a fixed crash stays fixed in `cargo test`.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

/// Runs `f` on every file in `fuzz/seeds/<target>/` and `fuzz/regressions/<target>/`; returns
/// how many inputs ran.
fn replay(target: &str, f: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        let mut files: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        files.sort();
        for file in files {
            let data = std::fs::read(&file).unwrap();
            eprintln!("{target}: {}", file.display());
            f(&data);
            n += 1;
        }
    }
    n
}

#[test]
fn handshake_inputs() {
    assert!(replay("handshake", harness::handshake) >= 2);
}

#[test]
fn chunk_inputs() {
    assert!(replay("chunk", harness::chunk) >= 2);
}

#[test]
fn amf0_inputs() {
    assert!(replay("amf0", harness::amf0) >= 3);
}

#[test]
fn amf3_inputs() {
    assert!(replay("amf3", harness::amf3) >= 3);
}

#[test]
fn session_inputs() {
    assert!(replay("session", harness::session) >= 3);
}

#[test]
fn config_inputs() {
    assert!(replay("config", harness::config) >= 2);
}

#[test]
fn rtmpt_inputs() {
    assert!(replay("rtmpt", harness::rtmpt) >= 4);
}

#[test]
fn shared_object_inputs() {
    assert!(replay("shared_object", harness::shared_object) >= 4);
}

#[test]
fn vod_inputs() {
    assert!(replay("vod", harness::vod) >= 4);
    // The whole seed files index, so the harness's checks run on real samples, not only on
    // an early "damaged" return.
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/vod");
    for name in [
        "h264-aac-flv",
        "h264-aac-moov-first.mp4",
        "h264-aac-moov-last.mp4",
        "hevc.mp4",
    ] {
        let data = std::fs::read(seeds.join(name)).unwrap();
        let file =
            wasmgate::media::vod::VodFile::from_bytes(name.into(), data, name.ends_with(".mp4"))
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert!(
            file.index.samples.len() >= 10,
            "{name}: {} samples",
            file.index.samples.len()
        );
        assert!(!file.index.keyframes.is_empty(), "{name}: no keyframe");
    }
}
