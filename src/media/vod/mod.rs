//! Video on demand: FLV and MP4 files under `[media] vod_dir` played to RTMP players, each from
//! its own position (`cursor.rs`: pacing, seek, pause, `duration`), sharing one index and the
//! file's bytes.
//!
//! A file is indexed once (`flv.rs`, `mp4.rs`) and kept while anyone plays it ([`Library`], `file.rs`).
//! Its bytes are read in 1 MiB blocks with one positional read each, shared through the file's
//! block table by every player at that place in the file, so the file is read once per player
//! position, not once per message; a player holds at most the two blocks it is reading. What
//! a player sends is chunk-encoded once and kept (the last 8 MiB, per file) for the players
//! behind it with the same stream id and chunk size, as live fan-out encodes once. Block
//! reads are not memory maps on purpose: a file truncated under a mapping would kill the
//! process with SIGBUS, a truncated read is only that player's error.

mod cursor;
mod file;
mod flv;
mod index;
mod mp4;

use std::path::{Path, PathBuf};

pub use cursor::{Cursor, End, Next};
pub use file::{EncodedKey, Library, OpenError, ReadError, Reader, VodFile};
pub use index::{Damage, Header, Index, Sample, Wrap};

use super::record::{BadName, file_path};
use super::registry::StreamKey;

/// A play name as FMS and Wowza spell file names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName {
    /// The stream name without prefix and extension, for paths.
    pub stem: String,
    /// Extensions to try, in order (`flv`, then `mp4` for a bare name).
    pub extensions: Vec<&'static str>,
    /// Named with `mp4:` or `flv:`: a file or nothing, never the live stream.
    pub explicit: bool,
}

const MP4_EXTENSIONS: [&str; 4] = ["mp4", "f4v", "m4v", "mov"];

impl FileName {
    /// `mp4:clip.mp4` / `mp4:clip` (-> `clip.mp4`), `flv:clip` / `flv:clip.flv`, or a bare
    /// `clip` (`clip.flv`, else `clip.mp4`; a bare `clip.mp4` is that file).
    pub fn parse(name: &str) -> FileName {
        let split_ext = |n: &str| -> Option<(String, &'static str)> {
            let (stem, ext) = n.rsplit_once('.')?;
            let ext = ext.to_ascii_lowercase();
            let known = MP4_EXTENSIONS
                .iter()
                .chain(["flv"].iter())
                .find(|e| **e == ext)?;
            (!stem.is_empty() && !stem.ends_with('/')).then(|| (stem.to_owned(), *known))
        };
        if let Some(rest) = name.strip_prefix("mp4:") {
            return match split_ext(rest) {
                Some((stem, ext)) if ext != "flv" => FileName {
                    stem,
                    extensions: vec![ext],
                    explicit: true,
                },
                _ => FileName {
                    stem: rest.to_owned(),
                    extensions: vec!["mp4"],
                    explicit: true,
                },
            };
        }
        if let Some(rest) = name.strip_prefix("flv:") {
            let stem = match split_ext(rest) {
                Some((stem, "flv")) => stem,
                _ => rest.to_owned(),
            };
            return FileName {
                stem,
                extensions: vec!["flv"],
                explicit: true,
            };
        }
        match split_ext(name) {
            Some((stem, ext)) => FileName {
                stem,
                extensions: vec![ext],
                explicit: false,
            },
            None => FileName {
                stem: name.to_owned(),
                extensions: vec!["flv", "mp4"],
                explicit: false,
            },
        }
    }

    /// The first of this name's files that exists under `dir` for `key`'s app and instance;
    /// `Ok(None)` when none does, `Err` for a name that would leave the folder.
    pub fn find(&self, dir: &Path, key: &StreamKey) -> Result<Option<PathBuf>, BadName> {
        let key = StreamKey {
            name: self.stem.clone(),
            ..key.clone()
        };
        for ext in &self.extensions {
            let p = file_path(dir, &key, ext)?;
            if p.is_file() {
                return Ok(Some(p));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_fms_spells_them() {
        let p = FileName::parse;
        assert_eq!(p("mp4:clip.mp4").extensions, ["mp4"]);
        assert_eq!(p("mp4:clip.mp4").stem, "clip");
        assert_eq!(p("mp4:clip").stem, "clip");
        assert_eq!(p("mp4:clip.f4v").extensions, ["f4v"]);
        assert!(p("mp4:clip").explicit);
        assert_eq!(p("flv:show/take.flv").stem, "show/take");
        assert_eq!(p("flv:show/take").extensions, ["flv"]);
        assert_eq!(p("clip").extensions, ["flv", "mp4"]);
        assert!(!p("clip").explicit);
        assert_eq!(p("clip.MP4").extensions, ["mp4"]);
        assert_eq!(p("v1.2").stem, "v1.2");
    }
}
