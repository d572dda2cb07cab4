//! Recording live streams to FLV files. A recording is one more sink of a stream's frames
//! (`recorder.rs`, fed through [`Playback`](super::Playback) like a player), listed and
//! stopped through [`Recordings`] (`recordings.rs`); `flv.rs` is the file format, `path.rs` where files go and which names are refused, `scan.rs` reads a file
//! back tag by tag and `repair.rs` finishes the `.part` files a killed gateway left.
//!
//! Which publishes record is the `[media] record` mode with the client's publish type, as
//! Flash Media Server spelled them ([`should_record`]).

pub mod flv;
mod path;
mod recorder;
mod recordings;
mod repair;
mod scan;

pub use path::{BadName, file_path, part_path, record_path, unused_path};
pub use recordings::{AlreadyRecording, Dvr, Origin, RecordingInfo, Recordings};
pub use repair::repair_dir;

/// `[media] record`: which publishes are written to files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordMode {
    /// Nothing is recorded, whatever the publish type.
    #[default]
    Off,
    /// Every publish is recorded, `live` ones included.
    All,
    /// Only publishes of type `record` or `append`.
    Manual,
}

/// Whether a publish of type `kind` (`live`, `record`, `append`) is recorded under `mode`.
pub fn should_record(mode: RecordMode, kind: &str) -> bool {
    match mode {
        RecordMode::Off => false,
        RecordMode::All => true,
        RecordMode::Manual => matches!(kind, "record" | "append"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_types_against_modes() {
        for kind in ["live", "record", "append"] {
            assert!(!should_record(RecordMode::Off, kind));
            assert!(should_record(RecordMode::All, kind));
        }
        assert!(!should_record(RecordMode::Manual, "live"));
        assert!(should_record(RecordMode::Manual, "record"));
        assert!(should_record(RecordMode::Manual, "append"));
    }
}
