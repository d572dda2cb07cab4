//! Where persistent shared objects live between uses: the [`SoStore`] seam and [`FileSoStore`],
//! one crash-safe AMF0 file per object under `<dir>/<app>/<instance>/<name>.so`.
//!
//! The trait is synchronous on purpose: a save is a handful of file system calls that the caller
//! runs in `tokio::task::spawn_blocking`, off the runtime's threads.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::rtmp::amf::{Amf0Value, AmfLimits, decode_amf0_all, encode_amf0};
use crate::state::store::Scope;

use super::limits::valid_so_name;

/// The first value of every file, so a stray file is never read as slots.
const MAGIC: &str = "wasmgate.so/1";
/// Longest app, instance or object name the file store accepts (one path component).
const MAX_COMPONENT: usize = 255;

/// A persistent object as stored: its version and its slots in key order.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSo {
    pub version: u32,
    pub slots: Vec<(String, Amf0Value)>,
}

#[derive(Debug, thiserror::Error)]
pub enum SoStoreError {
    /// The app, instance or object name could not be a file name under the store's folder.
    #[error("shared object name {0:?} is not allowed in a file store")]
    BadName(String),
    #[error("shared object file {path} is damaged: {why}")]
    Corrupt { path: PathBuf, why: String },
    #[error("shared object file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Persistent shared objects, per [`Scope`] and name. Shared by every instance, so
/// implementations synchronise internally; calls block (run them on a blocking thread).
pub trait SoStore: Send + Sync + 'static {
    /// The stored object, or `None` if it was never saved.
    fn load(&self, scope: &Scope, name: &str) -> Result<Option<StoredSo>, SoStoreError>;
    /// Replaces the stored object; on error the previous one is still what `load` returns.
    fn save(
        &self,
        scope: &Scope,
        name: &str,
        version: u32,
        slots: &[(String, Amf0Value)],
    ) -> Result<(), SoStoreError>;
}

/// One file per object, `<dir>/<app>/<instance>/<name>.so`, AMF0-encoded: the string
/// `"wasmgate.so/1"`, the version as a number, then the slots as an ECMA array.
///
/// A save writes `<name>.so.tmp`, fsyncs it, shifts the older versions up (`<name>.so.1` becomes
/// `.so.2`, and so on; the oldest past `keep` is dropped), hard-links the current `<name>.so` as
/// `<name>.so.1`, renames the temporary file over `<name>.so` and fsyncs the folder. So
/// `<name>.so` is always a whole file, old or new, and `<name>.so.1` … `<name>.so.<keep>` are the
/// `keep` versions before it. `load` reads `<name>.so` and falls back to the backups, newest
/// first, if it is missing or damaged.
pub struct FileSoStore {
    dir: PathBuf,
    keep: usize,
    max_file_bytes: u64,
    limits: AmfLimits,
}

impl FileSoStore {
    /// Backups kept by [`FileSoStore::new`].
    pub const DEFAULT_KEEP: usize = 2;

    /// A store under `dir` keeping [`DEFAULT_KEEP`](Self::DEFAULT_KEEP) older versions and reading
    /// files of at most 4 MiB (four times the default [`SoLimits::max_bytes`](super::SoLimits)).
    pub fn new(dir: impl Into<PathBuf>) -> FileSoStore {
        FileSoStore::with_options(dir, Self::DEFAULT_KEEP, 4 << 20)
    }

    pub fn with_options(dir: impl Into<PathBuf>, keep: usize, max_file_bytes: u64) -> FileSoStore {
        FileSoStore {
            dir: dir.into(),
            keep,
            max_file_bytes,
            limits: AmfLimits::default(),
        }
    }

    /// `<dir>/<app>/<instance>` and the file name `<name>.so`, once every part is a safe name.
    fn paths(&self, scope: &Scope, name: &str) -> Result<(PathBuf, String), SoStoreError> {
        for part in [scope.app.as_str(), scope.instance.as_str(), name] {
            if !valid_so_name(part, MAX_COMPONENT) {
                return Err(SoStoreError::BadName(part.to_owned()));
            }
        }
        Ok((
            self.dir.join(&scope.app).join(&scope.instance),
            format!("{name}.so"),
        ))
    }

    pub(super) fn read(&self, path: &Path) -> Result<Option<StoredSo>, SoStoreError> {
        let io = |source| SoStoreError::Io {
            path: path.to_owned(),
            source,
        };
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let mut bytes = Vec::new();
        // Read one byte past the cap to tell "at the cap" from "over it".
        file.take(self.max_file_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        let corrupt = |why: String| SoStoreError::Corrupt {
            path: path.to_owned(),
            why,
        };
        if bytes.len() as u64 > self.max_file_bytes {
            return Err(corrupt(format!(
                "larger than {} bytes",
                self.max_file_bytes
            )));
        }
        let values = decode_amf0_all(&bytes, &self.limits).map_err(|e| corrupt(e.to_string()))?;
        match values.as_slice() {
            [
                Amf0Value::String(magic),
                Amf0Value::Number(v),
                Amf0Value::EcmaArray(slots),
            ] if magic == MAGIC && v.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(v) => {
                Ok(Some(StoredSo {
                    // Checked above to be a whole number in u32's range.
                    version: *v as u32,
                    slots: slots.clone(),
                }))
            }
            _ => Err(corrupt("not a wasmgate shared object file".to_owned())),
        }
    }
}

fn backup(file: &str, n: usize) -> String {
    format!("{file}.{n}")
}

impl SoStore for FileSoStore {
    fn load(&self, scope: &Scope, name: &str) -> Result<Option<StoredSo>, SoStoreError> {
        let (folder, file) = self.paths(scope, name)?;
        let mut first_error = None;
        let candidates =
            std::iter::once(file.clone()).chain((1..=self.keep).map(|n| backup(&file, n)));
        for candidate in candidates {
            match self.read(&folder.join(candidate)) {
                Ok(Some(stored)) => return Ok(Some(stored)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "shared object file unreadable, trying an older one");
                    first_error.get_or_insert(e);
                }
            }
        }
        // Files exist but none could be read: say so rather than start the object empty.
        first_error.map_or(Ok(None), Err)
    }

    fn save(
        &self,
        scope: &Scope,
        name: &str,
        version: u32,
        slots: &[(String, Amf0Value)],
    ) -> Result<(), SoStoreError> {
        let (folder, file) = self.paths(scope, name)?;
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| SoStoreError::Io { path, source }
        };
        fs::create_dir_all(&folder).map_err(io(&folder))?;
        let mut bytes = Vec::new();
        encode_amf0(&Amf0Value::string(MAGIC), &mut bytes);
        encode_amf0(&Amf0Value::Number(f64::from(version)), &mut bytes);
        encode_amf0(&Amf0Value::EcmaArray(slots.to_vec()), &mut bytes);

        let current = folder.join(&file);
        let tmp = folder.join(format!("{file}.tmp"));
        {
            let mut f = File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&bytes).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        if self.keep > 0 && current.exists() {
            // Oldest first, so no rename replaces a backup that is still to be moved.
            for n in (1..self.keep).rev() {
                let from = folder.join(backup(&file, n));
                if from.exists() {
                    let to = folder.join(backup(&file, n + 1));
                    fs::rename(&from, &to).map_err(io(&from))?;
                }
            }
            let first = folder.join(backup(&file, 1));
            match fs::remove_file(&first) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&first)(e)),
            }
            // A link keeps `<name>.so` in place until the rename below replaces it whole; a
            // file system without hard links gets a copy instead.
            if fs::hard_link(&current, &first).is_err() {
                fs::copy(&current, &first).map_err(io(&first))?;
            }
        }
        fs::rename(&tmp, &current).map_err(io(&current))?;
        // The renames are durable only once the folder itself is on disk.
        File::open(&folder)
            .and_then(|d| d.sync_all())
            .map_err(io(&folder))?;
        Ok(())
    }
}
