//! A deliberately dumb RTMP peer over a blocking socket, for limit and abuse tests: it builds
//! chunks by hand so a test can send exactly the bytes a limit is about, legal or not.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use wasmgate::rtmp::amf::{Amf0Value, encode_amf0_all};

pub const HS: usize = 1536;

/// Chunks one message with a fmt 0 header then fmt 3 continuations, at `chunk_size`.
pub fn chunks(
    csid: u32,
    type_id: u8,
    stream_id: u32,
    payload: &[u8],
    chunk_size: usize,
) -> Vec<u8> {
    chunks_announcing(
        csid,
        type_id,
        stream_id,
        payload,
        payload.len() as u32,
        chunk_size,
    )
}

/// Like [`chunks`] but the header announces `length` bytes whatever `payload` holds.
pub fn chunks_announcing(
    csid: u32,
    type_id: u8,
    stream_id: u32,
    payload: &[u8],
    length: u32,
    chunk_size: usize,
) -> Vec<u8> {
    let mut out = basic_header(0, csid);
    out.extend_from_slice(&[0, 0, 0]); // timestamp
    out.extend_from_slice(&length.to_be_bytes()[1..]);
    out.push(type_id);
    out.extend_from_slice(&stream_id.to_le_bytes());
    for (i, piece) in payload.chunks(chunk_size).enumerate() {
        if i > 0 {
            out.extend(basic_header(3, csid));
        }
        out.extend_from_slice(piece);
    }
    out
}

/// The 1-, 2- or 3-byte basic header for `csid`.
pub fn basic_header(fmt: u8, csid: u32) -> Vec<u8> {
    match csid {
        2..=63 => vec![fmt << 6 | csid as u8],
        64..=319 => vec![fmt << 6, (csid - 64) as u8],
        _ => {
            let v = csid - 64;
            vec![fmt << 6 | 1, (v & 0xff) as u8, (v >> 8) as u8]
        }
    }
}

/// An AMF0 command message (type 20) on message stream 0.
pub fn command(csid: u32, name: &str, txn: f64, args: &[Amf0Value], chunk_size: usize) -> Vec<u8> {
    let mut values = vec![
        Amf0Value::string(name),
        Amf0Value::Number(txn),
        Amf0Value::Null,
    ];
    values.extend_from_slice(args);
    chunks(csid, 20, 0, &encode_amf0_all(&values), chunk_size)
}

/// Set Chunk Size (type 1) on csid 2.
pub fn set_chunk_size(size: u32) -> Vec<u8> {
    chunks(2, 1, 0, &size.to_be_bytes(), 128)
}

pub struct Raw {
    pub s: TcpStream,
}

impl Raw {
    /// Connects without any handshake.
    pub fn tcp(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).expect("tcp connect");
        s.set_nodelay(true).unwrap();
        Raw { s }
    }

    /// Connects and completes a plain handshake (C2 echoes S1).
    pub fn handshake(addr: SocketAddr) -> Raw {
        Raw::handshake_on(Raw::tcp(addr))
    }

    pub fn handshake_on(mut raw: Raw) -> Raw {
        let mut c0c1 = vec![3u8];
        c0c1.extend_from_slice(&[0u8; HS]);
        raw.s.write_all(&c0c1).unwrap();
        raw.s
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut s0s1s2 = vec![0u8; 1 + 2 * HS];
        raw.s.read_exact(&mut s0s1s2).expect("S0+S1+S2");
        raw.s.write_all(&s0s1s2[1..1 + HS]).unwrap();
        raw
    }

    /// Handshake, then `connect` to app `live`; waits for the server's first answer bytes.
    pub fn connected(addr: SocketAddr) -> Raw {
        let mut raw = Raw::handshake(addr);
        raw.connect();
        raw
    }

    pub fn connect(&mut self) {
        let obj = Amf0Value::object([
            ("app", Amf0Value::string("live")),
            ("tcUrl", Amf0Value::string("rtmp://127.0.0.1/live")),
        ]);
        let payload = encode_amf0_all(&[Amf0Value::string("connect"), Amf0Value::Number(1.0), obj]);
        self.send(&chunks(3, 20, 0, &payload, 128));
        assert!(
            self.drain(Duration::from_secs(3)) > 0,
            "no answer to connect"
        );
    }

    pub fn send(&mut self, bytes: &[u8]) {
        // The server may already have closed on a previous violation; tests look at the
        // read side for that.
        let _ = self.s.write_all(bytes);
    }

    /// Reads whatever arrives within `first` (then 200 ms more of quiet); returns the byte count.
    pub fn drain(&mut self, first: Duration) -> usize {
        let mut total = 0;
        let mut wait = first;
        let mut buf = [0u8; 16384];
        loop {
            self.s.set_read_timeout(Some(wait)).unwrap();
            match self.s.read(&mut buf) {
                Ok(0) => return total,
                Ok(n) => total += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return total;
                }
                Err(_) => return total,
            }
            wait = Duration::from_millis(200);
        }
    }

    /// Sends a `getStreamLength` call on `csid` and says whether any answer came back within
    /// 3 s: the connection is alive and its session still parsing.
    pub fn answers_call(&mut self, csid: u32, args: &[Amf0Value]) -> bool {
        self.drain(Duration::from_millis(50));
        self.send(&command(csid, "getStreamLength", 7.0, args, 128));
        self.drain(Duration::from_secs(3)) > 0
    }

    /// Waits for the server to close; returns how long that took, or None if it was still open
    /// after `limit`. Data the server sends meanwhile is read and dropped.
    pub fn closed_within(&mut self, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        let mut buf = [0u8; 16384];
        loop {
            let left = limit.checked_sub(start.elapsed())?;
            self.s
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.s.read(&mut buf) {
                Ok(0) => return Some(start.elapsed()),
                Ok(_) => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None;
                }
                Err(_) => return Some(start.elapsed()),
            }
        }
    }
}

/// The real `wasmgate` binary on a free 127.0.0.1 port, so its memory, descriptors and log are
/// its own. Killed on drop.
pub struct BinGateway {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    log: tempfile::NamedTempFile,
    _config: tempfile::NamedTempFile,
}

impl BinGateway {
    /// Starts the binary with `config` (TOML; `rtmp.listen` is set here).
    pub fn start(config: &str) -> BinGateway {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let cfg = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::fs::write(cfg.path(), config).unwrap();
        let log = tempfile::Builder::new()
            .prefix("wasmgate-log-")
            .tempfile()
            .unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_wasmgate"))
            .arg("--config")
            .arg(cfg.path())
            .arg("--rtmp")
            .arg(addr.to_string())
            // Keep the fixed default ports (admin 1111, RTMPT 80) free for parallel tests.
            .args(["--admin", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("wasmgate binary starts");
        let gw = BinGateway {
            child,
            addr,
            log,
            _config: cfg,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "gateway did not listen: {}",
                gw.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        gw
    }

    pub fn url(&self, path: &str) -> String {
        format!("rtmp://{}/{}", self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the gateway logged so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.log.path()).unwrap_or_default()).into_owned()
    }

    /// Resident memory in KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    /// Open file descriptors.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Panics the gateway logged (a panic in a connection task does not kill the process, so
    /// the log is where it shows).
    pub fn assert_no_panic(&self) {
        let log = self.log();
        assert!(
            !log.contains("panicked"),
            "gateway panicked: {}",
            log.lines()
                .filter(|l| l.contains("panicked"))
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

impl Drop for BinGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `Name:   123 kB` field of /proc/PID/status.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
