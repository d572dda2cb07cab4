//! One playable file: its index and its bytes, read in 1 MiB blocks that every player at that
//! place shares ([`Reader`]), and the [`Library`] of files being played, each indexed once.

use std::collections::{HashMap, VecDeque};
use std::io::BufReader;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::SystemTime;

use bytes::Bytes;

use super::index::{Damage, Index, Sample};
use super::{flv, mp4};

/// Bytes of a file read at once and shared by the players at that place.
const BLOCK: u64 = 1 << 20;
/// Chunk-encoded samples a file keeps for the players behind the first: about 25 s of a
/// 2.5 Mbit/s stream.
const ENCODED_BYTES: usize = 8 << 20;

/// One sample as one player's session sends it: players whose stream id and chunk size agree
/// send the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EncodedKey {
    pub sample: usize,
    pub stream_id: u32,
    pub chunk_size: u32,
}

/// The last [`ENCODED_BYTES`] of chunk-encoded samples, oldest dropped first.
#[derive(Default)]
struct Encoded {
    map: HashMap<EncodedKey, Bytes>,
    order: VecDeque<EncodedKey>,
    bytes: usize,
}

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
    encoded: Mutex<Encoded>,
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
            encoded: Mutex::default(),
        })
    }

    /// Indexes a file held in memory (tests, the fuzz harness): FLV, or MP4 when `mp4`.
    pub fn from_bytes(path: PathBuf, bytes: Vec<u8>, mp4: bool) -> Result<VodFile, Damage> {
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
            encoded: Mutex::default(),
        })
    }

    /// The sample `key` as another player at that place encoded it, if it is still kept.
    pub fn encoded(&self, key: &EncodedKey) -> Option<Bytes> {
        lock(&self.encoded).map.get(key).cloned()
    }

    /// Keeps `bytes` (the sample `key`, chunk-encoded) for the players behind this one.
    pub fn keep_encoded(&self, key: EncodedKey, bytes: Bytes) {
        let mut e = lock(&self.encoded);
        if bytes.len() > ENCODED_BYTES / 4 || e.map.contains_key(&key) {
            return;
        }
        e.bytes += bytes.len();
        e.map.insert(key, bytes);
        e.order.push_back(key);
        while e.bytes > ENCODED_BYTES {
            let Some(old) = e.order.pop_front() else {
                break;
            };
            if let Some(b) = e.map.remove(&old) {
                e.bytes -= b.len();
            }
        }
    }

    /// The block `no` if a player holds it now.
    fn cached(&self, no: u64) -> Option<Arc<[u8]>> {
        lock(&self.blocks).get(&no).and_then(Weak::upgrade)
    }

    /// The block `no` (bytes `no * BLOCK ..`), read now unless a player holds it already.
    /// Blocking: the connection runs it on the blocking pool ([`Reader::body`] says when).
    pub fn read_block(&self, no: u64) -> std::io::Result<Arc<[u8]>> {
        if let Some(b) = self.cached(no) {
            return Ok(b);
        }
        let start = no * BLOCK;
        if start >= self.len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("block at byte {start} is past the end of the file"),
            ));
        }
        let size = BLOCK.min(self.len - start) as usize;
        let mut buf = vec![0u8; size];
        match &self.source {
            Source::File(f) => f.read_exact_at(&mut buf, start)?,
            Source::Memory(m) => buf.copy_from_slice(&m[start as usize..start as usize + size]),
        }
        let b: Arc<[u8]> = Arc::from(buf);
        let mut blocks = lock(&self.blocks);
        // Another player may have read it meanwhile: share theirs, drop ours.
        if let Some(theirs) = blocks.get(&no).and_then(Weak::upgrade) {
            return Ok(theirs);
        }
        blocks.retain(|_, w| w.strong_count() > 0);
        blocks.insert(no, Arc::downgrade(&b));
        Ok(b)
    }

    /// Whether `s`'s bytes lie (partly) in block `no`.
    pub fn spans(&self, s: &Sample, no: u64) -> bool {
        self.blocks_of(s).contains(&no)
    }

    fn blocks_of(&self, s: &Sample) -> std::ops::RangeInclusive<u64> {
        let end = s.offset + u64::from(s.len.max(1)) - 1;
        s.offset / BLOCK..=end / BLOCK
    }
}

/// Why [`Reader::body`] did not give a body.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Block `0` is not in memory: read it ([`VodFile::read_block`], off the connection's
    /// task), hand it over with [`Reader::give`] and ask again.
    #[error("block {0} not read yet")]
    NeedBlock(u64),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// One player's view of a file's bytes: the blocks it is reading. It never reads the file
/// itself: a block it lacks is a [`ReadError::NeedBlock`] for the caller to fetch, so no
/// disk read runs on a connection's task.
pub struct Reader {
    file: Arc<VodFile>,
    /// The blocks held, oldest first: those the sample being read spans, else at most two.
    held: Vec<(u64, Arc<[u8]>)>,
    /// Blocks of the sample being read.
    want: std::ops::RangeInclusive<u64>,
}

impl Reader {
    pub fn new(file: Arc<VodFile>) -> Reader {
        Reader {
            file,
            held: Vec::with_capacity(2),
            want: 0..=0,
        }
    }

    pub fn file(&self) -> &Arc<VodFile> {
        &self.file
    }

    fn slot(&self, no: u64) -> Option<usize> {
        self.held.iter().position(|h| h.0 == no)
    }

    /// Holds block `no`, read by the caller. Blocks behind the sample being read are let go
    /// (reading moves forward), and of the rest at most two or the sample's span are kept.
    pub fn give(&mut self, no: u64, block: Arc<[u8]>) {
        if self.slot(no).is_some() {
            return;
        }
        self.held.push((no, block));
        let keep = (self.want.end() - self.want.start() + 1).max(2) as usize;
        while self.held.len() > keep {
            let drop = self
                .held
                .iter()
                .position(|h| !self.want.contains(&h.0))
                .unwrap_or(0);
            self.held.remove(drop);
        }
    }

    fn held(&mut self, no: u64) -> Result<&[u8], ReadError> {
        if self.slot(no).is_none() {
            let b = self.file.cached(no).ok_or(ReadError::NeedBlock(no))?;
            self.give(no, b);
        }
        let i = self.slot(no).ok_or(ReadError::NeedBlock(no))?;
        Ok(&self.held[i].1[..])
    }

    /// The block to read ahead while `s` is being sent, so that the next block is in memory
    /// before the cursor reaches it: the one after `s`'s last, once `s` is in its second half.
    pub fn read_ahead(&self, s: &Sample) -> Option<u64> {
        let last = *self.file.blocks_of(s).end();
        let next = last + 1;
        let in_second_half = (s.offset + u64::from(s.len)) % BLOCK >= BLOCK / 2;
        (in_second_half && next * BLOCK < self.file.len && self.slot(next).is_none())
            .then_some(next)
            .filter(|&n| self.file.cached(n).is_none())
    }

    /// Holds every block `s` spans (or says which to read first); true when its RTMP body is
    /// those bytes as they are, in one block ([`Reader::slice`]: no copy; most FLV tags).
    pub fn prepare(&mut self, s: &Sample) -> Result<bool, ReadError> {
        let end = s.offset + u64::from(s.len);
        if end > self.file.len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "a sample at byte {} runs past the end of the file",
                    s.offset
                ),
            )
            .into());
        }
        self.want = self.file.blocks_of(s);
        for no in self.want.clone() {
            self.held(no)?;
        }
        Ok(s.has_no_prefix() && self.want.start() == self.want.end())
    }

    /// `s`'s body in its block, after [`Reader::prepare`] said true.
    pub fn slice(&self, s: &Sample) -> Option<&[u8]> {
        let no = s.offset / BLOCK;
        let block = &self.held[self.slot(no)?].1;
        let from = (s.offset - no * BLOCK) as usize;
        block.get(from..from + s.len as usize)
    }

    /// Appends `s`'s RTMP body (its prefix, then its bytes) to `out`; on an error `out` is
    /// as it was.
    pub fn body(&mut self, s: &Sample, out: &mut Vec<u8>) -> Result<(), ReadError> {
        let end = s.offset + u64::from(s.len);
        self.prepare(s)?;
        let start_len = out.len();
        s.prefix(out);
        let mut at = s.offset;
        while at < end {
            let no = at / BLOCK;
            let block = match self.held(no) {
                Ok(b) => b,
                Err(e) => {
                    out.truncate(start_len);
                    return Err(e);
                }
            };
            let from = (at - no * BLOCK) as usize;
            let to = ((end - no * BLOCK) as usize).min(block.len());
            if from >= to {
                out.truncate(start_len);
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("byte {at} could not be read"),
                )
                .into());
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

    /// What the connection does: fetch each block the reader lacks, then ask again.
    fn read(r: &mut Reader, s: &Sample, out: &mut Vec<u8>) {
        loop {
            match r.body(s, out) {
                Ok(()) => return,
                Err(ReadError::NeedBlock(no)) => {
                    let b = r.file().read_block(no).unwrap();
                    r.give(no, b);
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn a_sample_larger_than_two_blocks_is_read_whole() {
        let mut bytes = flv::tests::file(1)[..13].to_vec();
        let mut big = vec![0x17, 1, 0, 0, 0];
        big.resize(3 * BLOCK as usize + 100, 7);
        flv::tests::tag(&mut bytes, 9, 0, &big);
        let f = Arc::new(VodFile::from_bytes("x.flv".into(), bytes.clone(), false).unwrap());
        let mut r = Reader::new(f.clone());
        let s = f.index.samples[0];
        let mut out = Vec::new();
        read(&mut r, &s, &mut out);
        let at = s.offset as usize;
        assert_eq!(out.len(), s.len as usize);
        assert_eq!(out, &bytes[at..at + s.len as usize]);
    }

    #[test]
    fn encoded_samples_are_shared_until_newer_ones_push_them_out() {
        let f = VodFile::from_bytes("x.flv".into(), flv::tests::file(1), false).unwrap();
        let key = |sample| EncodedKey {
            sample,
            stream_id: 1,
            chunk_size: 4096,
        };
        let mb = Bytes::from(vec![1u8; 1 << 20]);
        f.keep_encoded(key(0), mb.clone());
        assert_eq!(f.encoded(&key(0)), Some(mb.clone()));
        assert_eq!(
            f.encoded(&EncodedKey {
                chunk_size: 128,
                ..key(0)
            }),
            None
        );
        for i in 1..=8 {
            f.keep_encoded(key(i), mb.clone());
        }
        assert_eq!(f.encoded(&key(0)), None, "the oldest goes first");
        assert!(f.encoded(&key(8)).is_some());
        assert!(lock(&f.encoded).bytes <= ENCODED_BYTES);
        f.keep_encoded(key(99), Bytes::from(vec![0u8; ENCODED_BYTES]));
        assert_eq!(
            f.encoded(&key(99)),
            None,
            "one sample may not take the whole budget"
        );
    }

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
            read(&mut a, s, &mut x);
            read(&mut b, s, &mut y);
            let at = s.offset as usize;
            assert_eq!(x, &bytes[at..at + s.len as usize]);
            assert_eq!(x, y);
        }
        assert!(lock(&f.blocks).len() <= 2);
    }
}
