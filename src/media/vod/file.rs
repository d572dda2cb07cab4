//! One playable file: its index and its bytes, read in 1 MiB blocks that every player at that
//! place shares ([`Reader`]), and the [`Library`] of files being played, each indexed once.

use std::collections::HashMap;
use std::io::BufReader;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::SystemTime;

use super::index::{Damage, Index, Sample};
use super::{flv, mp4};

/// Bytes of a file read at once and shared by the players at that place.
const BLOCK: u64 = 1 << 20;

/// Why a file cannot be played.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("no such file")]
    NotFound,
    #[error("cannot read it: {0}")]
    Io(std::io::Error),
    #[error("damaged at byte {}: {}", .0.offset, .0.why)]
    Damaged(Damage),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

enum Source {
    File(std::fs::File),
    #[cfg(test)]
    Memory(Vec<u8>),
}

/// One indexed file.
pub struct VodFile {
    pub path: PathBuf,
    pub index: Index,
    source: Source,
    len: u64,
    /// (length, modification time) when indexed: a replaced file is indexed again.
    identity: (u64, Option<SystemTime>),
    blocks: Mutex<HashMap<u64, Weak<[u8]>>>,
}

impl std::fmt::Debug for VodFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VodFile")
            .field("path", &self.path)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl VodFile {
    /// Opens and indexes `path` (FLV or MP4, told apart by their first bytes). Blocking.
    pub fn open(path: &Path) -> Result<VodFile, OpenError> {
        let file = std::fs::File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => OpenError::NotFound,
            _ => OpenError::Io(e),
        })?;
        let meta = file.metadata().map_err(OpenError::Io)?;
        if !meta.is_file() {
            return Err(OpenError::NotFound);
        }
        let len = meta.len();
        let mut magic = [0u8; 3];
        let is_flv = file.read_exact_at(&mut magic, 0).is_ok() && &magic == b"FLV";
        let mut r = BufReader::with_capacity(64 * 1024, &file);
        let index = if is_flv {
            flv::index(&mut r, len)
        } else {
            mp4::index(&mut r, len)
        }
        .map_err(OpenError::Damaged)?;
        Ok(VodFile {
            path: path.to_owned(),
            index,
            source: Source::File(file),
            len,
            identity: (len, meta.modified().ok()),
            blocks: Mutex::new(HashMap::new()),
        })
    }

    #[cfg(test)]
    pub(crate) fn from_bytes(path: PathBuf, bytes: Vec<u8>, mp4: bool) -> Result<VodFile, Damage> {
        let len = bytes.len() as u64;
        let mut c = std::io::Cursor::new(&bytes[..]);
        let index = if mp4 {
            mp4::index(&mut c, len)?
        } else {
            flv::index(&mut c, len)?
        };
        Ok(VodFile {
            path,
            index,
            source: Source::Memory(bytes),
            len,
            identity: (len, None),
            blocks: Mutex::new(HashMap::new()),
        })
    }

    /// The block `no` (bytes `no * BLOCK ..`), read now unless a player holds it already.
    fn block(&self, no: u64) -> std::io::Result<Arc<[u8]>> {
        if let Some(b) = lock(&self.blocks).get(&no).and_then(Weak::upgrade) {
            return Ok(b);
        }
        let start = no * BLOCK;
        let size = BLOCK.min(self.len.saturating_sub(start)) as usize;
        let mut buf = vec![0u8; size];
        match &self.source {
            Source::File(f) => f.read_exact_at(&mut buf, start)?,
            #[cfg(test)]
            Source::Memory(m) => buf.copy_from_slice(&m[start as usize..start as usize + size]),
        }
        let b: Arc<[u8]> = Arc::from(buf);
        let mut blocks = lock(&self.blocks);
        blocks.retain(|_, w| w.strong_count() > 0);
        blocks.insert(no, Arc::downgrade(&b));
        Ok(b)
    }
}

/// One player's view of a file's bytes: the blocks it is reading.
pub struct Reader {
    file: Arc<VodFile>,
    held: [Option<(u64, Arc<[u8]>)>; 2],
}

impl Reader {
    pub fn new(file: Arc<VodFile>) -> Reader {
        Reader {
            file,
            held: [None, None],
        }
    }

    fn held(&mut self, no: u64) -> std::io::Result<&[u8]> {
        if let Some(i) = self
            .held
            .iter()
            .position(|h| h.as_ref().is_some_and(|h| h.0 == no))
        {
            return Ok(self.held[i].as_ref().map_or(&[][..], |h| &h.1[..]));
        }
        let b = self.file.block(no)?;
        // Keep the newer of the two held blocks; reading moves forward.
        self.held.swap(0, 1);
        self.held[1] = Some((no, b));
        Ok(self.held[1].as_ref().map_or(&[][..], |h| &h.1[..]))
    }

    /// Appends `s`'s RTMP body (its prefix, then its bytes) to `out`.
    pub fn body(&mut self, s: &Sample, out: &mut Vec<u8>) -> std::io::Result<()> {
        s.prefix(out);
        let end = s.offset + u64::from(s.len);
        if end > self.file.len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "a sample at byte {} runs past the end of the file",
                    s.offset
                ),
            ));
        }
        let mut at = s.offset;
        while at < end {
            let no = at / BLOCK;
            let block = self.held(no)?;
            let from = (at - no * BLOCK) as usize;
            let to = ((end - no * BLOCK) as usize).min(block.len());
            if from >= to {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("byte {at} could not be read"),
                ));
            }
            out.extend_from_slice(&block[from..to]);
            at = no * BLOCK + to as u64;
        }
        Ok(())
    }
}

/// The files being played, each indexed once while anyone plays it.
#[derive(Default)]
pub struct Library {
    files: Mutex<HashMap<PathBuf, Weak<VodFile>>>,
}

impl Library {
    /// The indexed file at `path`: the one players share when it has not changed on disk,
    /// otherwise opened and indexed now (blocking).
    pub fn open(&self, path: &Path) -> Result<Arc<VodFile>, OpenError> {
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => OpenError::NotFound,
            _ => OpenError::Io(e),
        })?;
        let identity = (meta.len(), meta.modified().ok());
        if let Some(f) = lock(&self.files).get(path).and_then(Weak::upgrade)
            && f.identity == identity
        {
            return Ok(f);
        }
        let f = Arc::new(VodFile::open(path)?);
        let mut files = lock(&self.files);
        files.retain(|_, w| w.strong_count() > 0);
        files.insert(path.to_owned(), Arc::downgrade(&f));
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_share_blocks_and_cross_their_edges() {
        let mut bytes = flv::tests::file(1);
        // Pad so that samples lie across a block edge.
        let mut big = bytes[..13].to_vec();
        let mut meta_pad = vec![2, 0, 3];
        meta_pad.extend_from_slice(b"pad");
        meta_pad.resize(BLOCK as usize - 30, 5);
        flv::tests::tag(&mut big, 18, 0, &meta_pad);
        big.extend_from_slice(&bytes[13..]);
        bytes = big;
        let f = Arc::new(VodFile::from_bytes("x.flv".into(), bytes.clone(), false).unwrap());
        let (mut a, mut b) = (Reader::new(f.clone()), Reader::new(f.clone()));
        for s in f
            .index
            .samples
            .iter()
            .filter(|s| s.kind != crate::rtmp::session::MediaKind::Data)
        {
            let (mut x, mut y) = (Vec::new(), Vec::new());
            a.body(s, &mut x).unwrap();
            b.body(s, &mut y).unwrap();
            let at = s.offset as usize;
            assert_eq!(x, &bytes[at..at + s.len as usize]);
            assert_eq!(x, y);
        }
        assert!(lock(&f.blocks).len() <= 2);
    }
}
