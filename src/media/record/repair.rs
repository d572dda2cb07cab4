//! Finishing what a stopped gateway left: every `<name>.flv.part` under the record folder is
//! cut to its last whole tag and written as `<name>.flv` with its `onMetaData` and keyframe
//! index, as if its publish had ended. Runs once at start, before any listener accepts.

use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::path::unused_path_now;
use super::recorder::finish;
use super::scan::scan;

/// How deep stream-name subfolders are searched.
const MAX_DEPTH: usize = 16;

/// Repairs every unfinished recording under `dir`; returns how many were written. A missing
/// folder is nothing to do; a file that cannot be repaired is logged and left as it is.
pub fn repair_dir(dir: &Path) -> usize {
    let mut parts = Vec::new();
    collect(dir, 0, &mut parts);
    parts.iter().filter(|p| repair(p)).count()
}

fn collect(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(kind) = e.file_type() else { continue };
        let path = e.path();
        if kind.is_dir() && depth < MAX_DEPTH {
            collect(&path, depth + 1, out);
        } else if kind.is_file() && path.to_string_lossy().ends_with(".flv.part") {
            out.push(path);
        }
    }
}

fn repair(part: &Path) -> bool {
    let text = part.to_string_lossy();
    let dest = PathBuf::from(&text[..text.len() - ".part".len()]);
    // Not `unused_path_now` directly: it counts this very `.part` as taking the name.
    let dest = if dest.exists() {
        unused_path_now(&dest)
    } else {
        dest
    };
    let s = match scan(part) {
        Ok(s) => s,
        Err(e) => {
            warn!(path = %part.display(), error = %e, "unfinished recording cannot be read; left as it is");
            return false;
        }
    };
    if s.index.body_len == 0 {
        info!(path = %part.display(), "unfinished recording holds no media; removed");
        let _ = std::fs::remove_file(part);
        return false;
    }
    match finish(part, &dest, &s.index) {
        Ok(size) => {
            let (cut_at, why) = s
                .stopped
                .unwrap_or((s.index.body_start + s.index.body_len, "end of file"));
            info!(
                path = %dest.display(),
                from = %part.display(),
                bytes = size,
                duration_ms = s.index.duration_ms,
                keyframes = s.index.keyframes.len(),
                cut_at,
                why,
                "repaired an unfinished recording"
            );
            true
        }
        Err(e) => {
            warn!(path = %part.display(), error = %e, "unfinished recording not repaired; left as it is");
            false
        }
    }
}
