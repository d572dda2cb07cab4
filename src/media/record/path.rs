//! Where a recording goes: `<record_dir>/<app>/<instance>/<name>.flv`, refusing any name that
//! could leave the folder, and the suffix rule when a recording of that name already exists.

use std::path::{Path, PathBuf};

use super::super::registry::StreamKey;

/// A stream name (or app/instance) that cannot be a file under the record folder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} cannot be recorded: {why}")]
pub struct BadName {
    pub what: &'static str,
    pub value: String,
    pub why: &'static str,
}

/// Longest name part kept as a file name (most filesystems allow 255 bytes).
const MAX_SEGMENT: usize = 200;

fn check_segment(what: &'static str, value: &str, seg: &str) -> Result<(), BadName> {
    let bad = |why| {
        Err(BadName {
            what,
            value: value.to_owned(),
            why,
        })
    };
    if seg.is_empty() {
        return bad("empty path segment");
    }
    if seg == "." || seg == ".." {
        return bad("'.' and '..' segments are not allowed");
    }
    if seg.len() > MAX_SEGMENT {
        return bad("a path segment is longer than 200 bytes");
    }
    if seg.chars().any(|c| c.is_control() || c == '\\' || c == ':') {
        return bad("control characters, '\\' and ':' are not allowed");
    }
    Ok(())
}

/// The file a recording of `key` is written to, before the suffix rule. Stream names may
/// hold `/`-separated subfolders (`show/part1`); app and instance may not.
pub fn record_path(dir: &Path, key: &StreamKey) -> Result<PathBuf, BadName> {
    file_path(dir, key, "flv")
}

/// `<dir>/<app>/<instance>/<name>.<ext>` for `key`, refusing names that would leave `dir`
/// (the rules of [`record_path`]; recordings and the files players ask for alike).
pub fn file_path(dir: &Path, key: &StreamKey, ext: &str) -> Result<PathBuf, BadName> {
    for (what, v) in [("app", &key.app), ("instance", &key.instance)] {
        check_segment(what, v, v)?;
        if v.contains('/') {
            return Err(BadName {
                what,
                value: v.clone(),
                why: "'/' is not allowed",
            });
        }
    }
    let mut path = dir.join(&key.app).join(&key.instance);
    let segments: Vec<&str> = key.name.split('/').collect();
    for seg in &segments {
        check_segment("stream name", &key.name, seg)?;
    }
    let (last, folders) = segments.split_last().unwrap_or((&"", &[]));
    for f in folders {
        path.push(f);
    }
    path.push(format!("{last}.{ext}"));
    Ok(path)
}

/// `path` while it is being written: `<name>.flv.part`, renamed when the recording closes.
pub fn part_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".part");
    PathBuf::from(p)
}

/// A new recording never overwrites: when `<name>.flv` (or its `.part`) exists, it becomes
/// `<name>-<unix seconds>.flv`, then `<name>-<unix seconds>-2.flv`, ...
pub fn unused_path(path: &Path, unix_secs: u64, exists: impl Fn(&Path) -> bool) -> PathBuf {
    let taken = |p: &Path| exists(p) || exists(&part_path(p));
    if !taken(path) {
        return path.to_owned();
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let with = |suffix: String| path.with_file_name(format!("{stem}-{suffix}.flv"));
    let first = with(unix_secs.to_string());
    if !taken(&first) {
        return first;
    }
    let mut n = 2u32;
    loop {
        let p = with(format!("{unix_secs}-{n}"));
        if !taken(&p) || n == u32::MAX {
            return p;
        }
        n += 1;
    }
}

/// [`unused_path`] at the current time, against the filesystem.
pub fn unused_path_now(path: &Path) -> PathBuf {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    unused_path(path, now, |p| p.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(app: &str, instance: &str, name: &str) -> StreamKey {
        StreamKey {
            app: app.into(),
            instance: instance.into(),
            name: name.into(),
        }
    }

    #[test]
    fn names_map_under_the_folder() {
        let d = Path::new("/rec");
        assert_eq!(
            record_path(d, &key("live", "_definst_", "cam1")).unwrap(),
            Path::new("/rec/live/_definst_/cam1.flv")
        );
        assert_eq!(
            record_path(d, &key("live", "i", "show/part1")).unwrap(),
            Path::new("/rec/live/i/show/part1.flv")
        );
    }

    #[test]
    fn escaping_names_are_refused() {
        let d = Path::new("/rec");
        for name in [
            "..",
            "../x",
            "a/../../b",
            "/etc/passwd",
            "a//b",
            "",
            "nul\0byte",
            "tab\there",
            "back\\slash",
            "c:drive",
            "a/",
            ".",
        ] {
            assert!(record_path(d, &key("live", "i", name)).is_err(), "{name:?}");
        }
        assert!(record_path(d, &key("..", "i", "x")).is_err());
        assert!(record_path(d, &key("live", "a/b", "x")).is_err());
        assert!(record_path(d, &key("live", "i", &"x".repeat(201))).is_err());
        let e = record_path(d, &key("live", "i", "../x")).unwrap_err();
        assert!(e.to_string().contains("'..'"), "{e}");
    }

    #[test]
    fn suffix_rule() {
        let p = Path::new("/rec/a/i/cam.flv");
        assert_eq!(unused_path(p, 7, |_| false), p);
        let taken = [
            PathBuf::from("/rec/a/i/cam.flv"),
            PathBuf::from("/rec/a/i/cam-7.flv.part"),
        ];
        assert_eq!(
            unused_path(p, 7, |q| taken.iter().any(|t| t == q)),
            Path::new("/rec/a/i/cam-7-2.flv")
        );
        assert_eq!(
            unused_path(p, 7, |q| q == p),
            Path::new("/rec/a/i/cam-7.flv")
        );
        assert_eq!(part_path(p), Path::new("/rec/a/i/cam.flv.part"));
    }
}
