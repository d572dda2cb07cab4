//! `--transport http-flv` and `--transport ws-flv`: the same players as the RTMP mode, reading
//! a live stream as HTTP-FLV (`GET /app/stream.flv`, an endless chunked body) or WebSocket-FLV
//! (the same path upgraded; one binary message per tag), for `scripts/bench-web.sh`.
//!
//! Why it is built this way:
//! - **A tiny client, not an HTTP library.** A player writes one request, checks the status
//!   line (`200`, or `101` for the upgrade) and then only undoes the framing — HTTP/1.1 chunked
//!   transfer coding or WebSocket frame headers — with a byte-level state machine that hands
//!   out borrowed slices of the read buffer. The load tool then costs about what an RTMP byte
//!   counter costs, so it does not skew a server comparison on shared cores.
//! - **Payload bytes, not wire bytes.** The delivered figure is the FLV stream (what a browser
//!   player demuxes); the chunk-size lines or frame headers around it are counted apart
//!   (`wire_mb`), so "received ≈ bitrate × seconds" can be checked against the file.
//! - **Probes parse tags.** A few players run every payload byte through a streaming FLV
//!   reader that keeps only tag headers and the first two data bytes: video timestamps feed
//!   the same drop, stall and lateness figures as RTMP probes, the first video frame must be a
//!   keyframe, and every tag's trailing PreviousTagSize must match its header (whole tags).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{BoxError, PROBE_RESULTS, ProbeStats, Shared, VideoTrack};

/// Longest response head accepted (status line and headers).
const MAX_HEAD: usize = 16 * 1024;
/// Longest wait for the response head.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// The RFC 6455 sample key: the server's answer to it is well known, and nothing here needs a
/// fresh one per connection (the server only checks its form).
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Which browser transport the players use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Web {
    HttpFlv,
    WsFlv,
}

/// Where and what to request: `http://host[:port]/path[?query]` (or `ws://`).
#[derive(Clone, Debug)]
pub struct FlvUrl {
    pub addr: String,
    host: String,
    path: String,
    web: Web,
}

impl FlvUrl {
    /// Parses `http://` (HTTP-FLV) or `ws://` (WebSocket-FLV) URLs; TLS is not supported.
    pub fn parse(url: &str, web: Web) -> Result<FlvUrl, String> {
        let scheme = match web {
            Web::HttpFlv => "http://",
            Web::WsFlv => "ws://",
        };
        let rest = url
            .strip_prefix(scheme)
            .ok_or_else(|| format!("the URL must start with {scheme}"))?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => return Err("the URL has no path (/app/stream.flv)".into()),
        };
        if host.is_empty() {
            return Err("the URL has no host".into());
        }
        let addr = if host
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            host.to_owned()
        } else {
            format!("{host}:80")
        };
        Ok(FlvUrl {
            addr,
            host: host.to_owned(),
            path: path.to_owned(),
            web,
        })
    }

    pub(crate) fn web(&self) -> Web {
        self.web
    }

    pub(crate) fn request(&self) -> String {
        let mut r = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: wasmgate-load\r\nAccept: */*\r\n",
            self.path, self.host
        );
        if self.web == Web::WsFlv {
            r.push_str(
                "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
            );
            r.push_str(&format!("Sec-WebSocket-Key: {WS_KEY}\r\n"));
        }
        r.push_str("\r\n");
        r
    }
}

/// Requests the stream and reads it; byte-counting players never return until the process
/// ends (or the server ends the body).
pub async fn run_player(
    url: &FlvUrl,
    probe: bool,
    shared: &Shared,
    counter: Option<Arc<AtomicU64>>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<Option<()>, BoxError> {
    let mut sock = TcpStream::connect(&url.addr).await?;
    sock.set_nodelay(true)?;
    sock.write_all(url.request().as_bytes()).await?;
    let mut buf = vec![0u8; 256 * 1024];
    let (head_len, have) = tokio::time::timeout(SETUP_TIMEOUT, read_head(&mut sock, &mut buf))
        .await
        .map_err(|_| "no response head within 30 s")??;
    let framing = check_head(&buf[..head_len], url.web)?;
    shared.playing.fetch_add(1, Ordering::Relaxed);
    drop(permit);
    // Body bytes that came with the head.
    buf.copy_within(head_len..have, 0);
    let first = have - head_len;
    if probe {
        probe_loop(sock, buf, first, framing, shared).await
    } else {
        count_loop(
            sock,
            buf,
            first,
            framing,
            shared,
            counter.unwrap_or_default(),
        )
        .await
    }
}

/// Reads until the end of the response head; returns its length and how much was read.
pub(crate) async fn read_head(
    sock: &mut TcpStream,
    buf: &mut [u8],
) -> Result<(usize, usize), BoxError> {
    let mut have = 0;
    loop {
        let n = sock.read(&mut buf[have..MAX_HEAD]).await?;
        if n == 0 {
            return Err("server closed before the response head".into());
        }
        // The terminator may straddle two reads.
        let from = have.saturating_sub(3);
        have += n;
        if let Some(i) = buf[from..have].windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok((from + i + 4, have));
        }
        if have == MAX_HEAD {
            return Err("response head longer than 16 KiB".into());
        }
    }
}

/// The status must be `200` (HTTP-FLV) or `101` with the right accept key (WebSocket-FLV);
/// says how the body is framed.
pub(crate) fn check_head(head: &[u8], web: Web) -> Result<Framing, BoxError> {
    let head = std::str::from_utf8(head).map_err(|_| "response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    let code = status.split(' ').nth(1).unwrap_or("");
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    };
    match web {
        Web::HttpFlv if code == "200" => {
            if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
                Ok(Framing::Chunked(Chunked::default()))
            } else if header("content-length").is_some() {
                Err("a live HTTP-FLV reply has a Content-Length".into())
            } else {
                // Delimited by the end of the connection (HTTP/1.0 style).
                Ok(Framing::Identity)
            }
        }
        Web::WsFlv if code == "101" => match header("sec-websocket-accept") {
            Some(WS_ACCEPT) => Ok(Framing::Ws(WsFrames::default())),
            other => Err(format!("bad Sec-WebSocket-Accept: {other:?}").into()),
        },
        _ => Err(format!("server answered {status:?}").into()),
    }
}

/// Counts payload bytes.
async fn count_loop(
    mut sock: TcpStream,
    mut buf: Vec<u8>,
    mut have: usize,
    mut framing: Framing,
    shared: &Shared,
    counter: Arc<AtomicU64>,
) -> Result<Option<()>, BoxError> {
    loop {
        if have == 0 {
            have = sock.read(&mut buf).await?;
            if have == 0 {
                return Err("server closed the stream".into());
            }
        }
        let mut payload = 0u64;
        let flow = framing.feed(&buf[..have], &mut |p| payload += p.len() as u64)?;
        shared.wire_bytes.fetch_add(have as u64, Ordering::Relaxed);
        shared.bytes.fetch_add(payload, Ordering::Relaxed);
        counter.fetch_add(payload, Ordering::Relaxed);
        have = 0;
        if flow == Flow::End {
            return Err("server ended the stream".into());
        }
    }
}

/// Parses every tag; records frame gaps, stalls, lateness, the first frame's kind and broken
/// tags while the window is open.
async fn probe_loop(
    mut sock: TcpStream,
    mut buf: Vec<u8>,
    mut have: usize,
    mut framing: Framing,
    shared: &Shared,
) -> Result<Option<()>, BoxError> {
    let mut stats = ProbeStats::default();
    let mut track = VideoTrack::default();
    let mut reader = FlvReader::default();
    let result: Result<(), BoxError> = async {
        loop {
            if have == 0 {
                have = sock.read(&mut buf).await?;
                if have == 0 {
                    return Err("server closed the stream".into());
                }
            }
            let now = Instant::now();
            let measuring = shared.measuring.load(Ordering::Relaxed);
            let mut payload = 0u64;
            let mut bad: Option<BoxError> = None;
            let flow = framing.feed(&buf[..have], &mut |p| {
                payload += p.len() as u64;
                let r = reader.feed(p, &mut |tag| {
                    if tag.kind == 9 && !tag.is_sequence_header() {
                        track.frame(
                            &mut stats,
                            tag.timestamp,
                            tag.is_keyframe(),
                            now,
                            measuring,
                            shared.start,
                        );
                    }
                    if measuring && !tag.whole {
                        stats.bad_tags += 1;
                    }
                });
                if let Err(e) = r {
                    bad.get_or_insert(e);
                }
            })?;
            if let Some(e) = bad {
                return Err(e);
            }
            shared.wire_bytes.fetch_add(have as u64, Ordering::Relaxed);
            shared.bytes.fetch_add(payload, Ordering::Relaxed);
            have = 0;
            if flow == Flow::End {
                return Err("server ended the stream".into());
            }
            if !measuring && stats.video_frames > 0 {
                return Ok(());
            }
        }
    }
    .await;
    track.finish(&mut stats);
    PROBE_RESULTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(stats);
    result.map(|_| Some(()))
}

/// Whether the body goes on after a read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    More,
    /// The last chunk or a close frame: the server ended the stream.
    End,
}

/// How the FLV bytes are wrapped on the wire.
pub(crate) enum Framing {
    Identity,
    Chunked(Chunked),
    Ws(WsFrames),
}

impl Framing {
    /// Hands every payload slice of `input` to `out`, in order.
    pub(crate) fn feed<'a>(
        &mut self,
        input: &'a [u8],
        out: &mut impl FnMut(&'a [u8]),
    ) -> Result<Flow, BoxError> {
        match self {
            Framing::Identity => {
                out(input);
                Ok(Flow::More)
            }
            Framing::Chunked(c) => c.feed(input, out),
            Framing::Ws(w) => w.feed(input, out),
        }
    }
}

/// HTTP/1.1 chunked transfer coding (RFC 9112 §7.1), undone a byte at a time in the size lines
/// and a slice at a time in the data.
#[derive(Debug)]
pub(crate) enum Chunked {
    /// In a chunk-size line: the value so far; `ext` once a `;` started an extension.
    Size {
        value: u64,
        digits: u8,
        ext: bool,
    },
    /// After the size line's `\r`.
    SizeLf {
        value: u64,
    },
    Data(u64),
    /// The `\r\n` after the data: how many of its bytes are still to come.
    DataEnd(u8),
    Done,
}

impl Default for Chunked {
    fn default() -> Chunked {
        Chunked::Size {
            value: 0,
            digits: 0,
            ext: false,
        }
    }
}

impl Chunked {
    fn feed<'a>(
        &mut self,
        mut input: &'a [u8],
        out: &mut impl FnMut(&'a [u8]),
    ) -> Result<Flow, BoxError> {
        while let Some(&b) = input.first() {
            match self {
                Chunked::Data(left) => {
                    let n = (*left).min(input.len() as u64) as usize;
                    out(&input[..n]);
                    input = &input[n..];
                    *left -= n as u64;
                    if *left == 0 {
                        *self = Chunked::DataEnd(2);
                    }
                    continue;
                }
                Chunked::Size { value, digits, ext } => match b {
                    b'\r' if *digits == 0 => return Err("empty chunk size".into()),
                    b'\r' => *self = Chunked::SizeLf { value: *value },
                    _ if *ext => {}
                    b';' | b' ' | b'\t' if *digits > 0 => *ext = true,
                    _ => {
                        let d = (b as char).to_digit(16).ok_or("bad chunk size")?;
                        if *digits >= 15 {
                            return Err("chunk size too long".into());
                        }
                        *value = *value * 16 + u64::from(d);
                        *digits += 1;
                    }
                },
                Chunked::SizeLf { value } => {
                    if b != b'\n' {
                        return Err("chunk size line without LF".into());
                    }
                    if *value == 0 {
                        *self = Chunked::Done;
                        return Ok(Flow::End);
                    }
                    *self = Chunked::Data(*value);
                }
                Chunked::DataEnd(left) => {
                    let want = if *left == 2 { b'\r' } else { b'\n' };
                    if b != want {
                        return Err("chunk data not followed by CRLF".into());
                    }
                    *left -= 1;
                    if *left == 0 {
                        *self = Chunked::default();
                    }
                }
                Chunked::Done => return Ok(Flow::End),
            }
            input = &input[1..];
        }
        Ok(if matches!(self, Chunked::Done) {
            Flow::End
        } else {
            Flow::More
        })
    }
}

/// Server-to-client WebSocket frames (RFC 6455 §5.2: never masked): binary and continuation
/// payloads are handed out, a close frame ends the stream, other control frames are skipped
/// (this server sends no pings).
#[derive(Debug, Default)]
pub(crate) struct WsFrames {
    head: [u8; 10],
    have: usize,
    /// Payload bytes left in the current frame, and whether they are media.
    left: u64,
    media: bool,
}

impl WsFrames {
    fn feed<'a>(
        &mut self,
        mut input: &'a [u8],
        out: &mut impl FnMut(&'a [u8]),
    ) -> Result<Flow, BoxError> {
        while !input.is_empty() {
            if self.left > 0 {
                let n = self.left.min(input.len() as u64) as usize;
                if self.media {
                    out(&input[..n]);
                }
                input = &input[n..];
                self.left -= n as u64;
                continue;
            }
            self.head[self.have] = input[0];
            self.have += 1;
            input = &input[1..];
            if self.have < 2 {
                continue;
            }
            if self.head[1] & 0x80 != 0 {
                return Err("the server masked a frame".into());
            }
            let need = match self.head[1] & 0x7f {
                126 => 4,
                127 => 10,
                _ => 2,
            };
            if self.have < need {
                continue;
            }
            let len = match need {
                4 => u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
                10 => u64::from_be_bytes(self.head[2..10].try_into().unwrap_or_default()),
                _ => u64::from(self.head[1] & 0x7f),
            };
            let opcode = self.head[0] & 0x0f;
            if opcode == 8 {
                return Ok(Flow::End);
            }
            self.media = matches!(opcode, 0 | 2);
            self.left = len;
            self.have = 0;
        }
        Ok(Flow::More)
    }
}

/// What a probe needs of one FLV tag.
pub(crate) struct Tag {
    pub(crate) kind: u8,
    timestamp: u32,
    /// The first two data bytes (frame type and codec, AVC packet type).
    first: [u8; 2],
    /// The PreviousTagSize after it matched its header.
    whole: bool,
}

impl Tag {
    fn is_keyframe(&self) -> bool {
        self.first[0] >> 4 == 1
    }

    /// An AVC sequence header (codec 7, packet type 0) is not a frame.
    pub(crate) fn is_sequence_header(&self) -> bool {
        self.first[0] & 0x0f == 7 && self.first[1] == 0
    }
}

/// A streaming FLV reader: the 9-byte file header and PreviousTagSize0, then tags, without
/// buffering tag data.
#[derive(Default)]
pub(crate) struct FlvReader {
    started: bool,
    /// Header bytes gathered so far (file header + size 0, or a tag header).
    head: [u8; 13],
    have: usize,
    /// Data bytes of the current tag still to come, and its first two.
    data_left: u32,
    first: [u8; 2],
    first_have: usize,
    /// The current tag's header fields, once its header is complete.
    tag: Option<(u8, u32, u32)>,
    /// PreviousTagSize bytes gathered.
    trailer: [u8; 4],
    trailer_have: usize,
}

impl FlvReader {
    pub(crate) fn feed(
        &mut self,
        mut input: &[u8],
        out: &mut impl FnMut(Tag),
    ) -> Result<(), BoxError> {
        while !input.is_empty() {
            if !self.started {
                let n = (13 - self.have).min(input.len());
                self.head[self.have..self.have + n].copy_from_slice(&input[..n]);
                self.have += n;
                input = &input[n..];
                if self.have == 13 {
                    if &self.head[..3] != b"FLV" {
                        return Err("body does not start with an FLV header".into());
                    }
                    self.started = true;
                    self.have = 0;
                }
                continue;
            }
            let Some((kind, size, timestamp)) = self.tag else {
                let n = (11 - self.have).min(input.len());
                self.head[self.have..self.have + n].copy_from_slice(&input[..n]);
                self.have += n;
                input = &input[n..];
                if self.have == 11 {
                    let h = &self.head;
                    let size = u32::from_be_bytes([0, h[1], h[2], h[3]]);
                    let ts = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
                    self.tag = Some((h[0] & 0x1f, size, ts));
                    self.data_left = size;
                    self.first_have = 0;
                    self.trailer_have = 0;
                    self.have = 0;
                }
                continue;
            };
            if self.data_left > 0 {
                let n = (self.data_left as usize).min(input.len());
                let take = (2 - self.first_have).min(n);
                self.first[self.first_have..self.first_have + take].copy_from_slice(&input[..take]);
                self.first_have += take;
                self.data_left -= n as u32;
                input = &input[n..];
                continue;
            }
            let n = (4 - self.trailer_have).min(input.len());
            self.trailer[self.trailer_have..self.trailer_have + n].copy_from_slice(&input[..n]);
            self.trailer_have += n;
            input = &input[n..];
            if self.trailer_have == 4 {
                let first = if self.first_have == 2 {
                    self.first
                } else {
                    [0, 0]
                };
                out(Tag {
                    kind,
                    timestamp,
                    first,
                    whole: u32::from_be_bytes(self.trailer) == size + 11,
                });
                self.tag = None;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(f: &mut Framing, parts: &[&[u8]]) -> (Vec<u8>, Flow) {
        let mut got = Vec::new();
        let mut flow = Flow::More;
        for p in parts {
            flow = f.feed(p, &mut |s| got.extend_from_slice(s)).unwrap();
        }
        (got, flow)
    }

    #[test]
    fn chunked_bodies_are_undone_across_any_split() {
        let wire = b"5\r\nhello\r\nA;x=1\r\n0123456789\r\n0\r\n\r\n";
        for cut in 0..wire.len() {
            let mut f = Framing::Chunked(Chunked::default());
            let (got, flow) = collect(&mut f, &[&wire[..cut], &wire[cut..]]);
            assert_eq!(got, b"hello0123456789", "cut at {cut}");
            assert_eq!(flow, Flow::End);
        }
        let mut f = Framing::Chunked(Chunked::default());
        assert!(f.feed(b"zz\r\n", &mut |_| {}).is_err());
    }

    #[test]
    fn websocket_frames_give_binary_payloads() {
        let mut wire = vec![0x82, 3, b'a', b'b', b'c', 0x89, 1, b'p', 0x82, 126, 0, 200];
        wire.extend(std::iter::repeat_n(b'x', 200));
        wire.extend([0x88, 0]);
        for cut in 0..wire.len() {
            let mut f = Framing::Ws(WsFrames::default());
            let (got, flow) = collect(&mut f, &[&wire[..cut], &wire[cut..]]);
            assert_eq!(got.len(), 203, "cut at {cut}");
            assert_eq!(&got[..3], b"abc");
            assert_eq!(flow, Flow::End);
        }
    }

    #[test]
    fn flv_reader_finds_tags_and_checks_their_sizes() {
        let mut flv = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        // A video keyframe (AVC NALU) at 0x01020304 ms, 5 data bytes, then a broken trailer.
        flv.extend([
            9, 0, 0, 5, 0x02, 0x03, 0x04, 0x01, 0, 0, 0, 0x17, 1, 0, 0, 0, 0, 0, 0, 16,
        ]);
        flv.extend([8, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xaf, 0, 0, 0, 11]);
        for cut in 0..flv.len() {
            let mut r = FlvReader::default();
            let mut tags = Vec::new();
            for p in [&flv[..cut], &flv[cut..]] {
                r.feed(p, &mut |t| tags.push(t)).unwrap();
            }
            assert_eq!(tags.len(), 2, "cut at {cut}");
            assert!(tags[0].kind == 9 && tags[0].timestamp == 0x0102_0304 && tags[0].whole);
            assert!(tags[0].is_keyframe() && !tags[0].is_sequence_header());
            assert!(tags[1].kind == 8 && !tags[1].whole);
        }
    }

    #[test]
    fn urls_name_the_socket_and_the_request() {
        let u = FlvUrl::parse("http://127.0.0.1:8080/live/key.flv?token=a", Web::HttpFlv).unwrap();
        assert_eq!(u.addr, "127.0.0.1:8080");
        assert!(
            u.request()
                .starts_with("GET /live/key.flv?token=a HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n")
        );
        let w = FlvUrl::parse("ws://gw/live/key.flv", Web::WsFlv).unwrap();
        assert_eq!(w.addr, "gw:80");
        assert!(w.request().contains("Upgrade: websocket\r\n"));
        assert!(FlvUrl::parse("rtmp://gw/live/key", Web::HttpFlv).is_err());
    }

    #[test]
    fn heads_are_checked() {
        let ok =
            b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(
            check_head(ok, Web::HttpFlv),
            Ok(Framing::Chunked(_))
        ));
        let nf = b"HTTP/1.1 404 Not Found\r\ncontent-length: 5\r\n\r\n";
        assert!(check_head(nf, Web::HttpFlv).is_err());
        let up = format!(
            "HTTP/1.1 101 Switching Protocols\r\nsec-websocket-accept: {WS_ACCEPT}\r\n\r\n"
        );
        assert!(matches!(
            check_head(up.as_bytes(), Web::WsFlv),
            Ok(Framing::Ws(_))
        ));
    }
}
