//! RTMP handshake (C0/C1/C2 and S0/S1/S2) as sans-IO state machines: bytes in, bytes out.
//! Server and client sides, in the plain form and the Flash Player 9 "digest" form.

use std::fmt;

use bytes::{Buf, BufMut, BytesMut};
use ring::hmac;
use tracing::{debug, warn};

/// Size of C1, C2, S1 and S2.
pub const HANDSHAKE_SIZE: usize = 1536;

/// C0/S0 value for plain (unencrypted) RTMP.
const RTMP_PLAIN: u8 = 0x03;
const DIGEST_LEN: usize = 32;
/// Bytes of C2/S2 covered by the trailing signature in the digest form.
const SIGNED_LEN: usize = HANDSHAKE_SIZE - DIGEST_LEN;

/// The 32 constant bytes that follow the readable part of both Adobe keys.
const KEY_TAIL: [u8; DIGEST_LEN] = [
    0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E, 0x57,
    0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80, 0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE,
];
/// Key for the digest inside C1 (the readable part only, 30 bytes).
const PLAYER_KEY_NAME: &[u8] = b"Genuine Adobe Flash Player 001";
/// Key for the digest inside S1 (the readable part only, 36 bytes).
const SERVER_KEY_NAME: &[u8] = b"Genuine Adobe Flash Media Server 001";
/// Full 62-byte player key: derives the key that signs C2.
const PLAYER_KEY: [u8; 62] = join_key(PLAYER_KEY_NAME);
/// Full 68-byte server key: derives the key that signs S2.
const SERVER_KEY: [u8; 68] = join_key(SERVER_KEY_NAME);

/// Version we put in a digest S1. ffmpeg only checks S1's digest when the first byte is >= 3
/// and librtmp only when it is non-zero, so any FMS-looking version works; this is FMS 13.
const SERVER_VERSION: [u8; 4] = [0x0d, 0x0e, 0x0a, 0x0d];
/// Version ffmpeg's client puts in its digest C1 ("9.0.124.2 on Linux").
const CLIENT_VERSION: [u8; 4] = [9, 0, 124, 2];

type Packet = [u8; HANDSHAKE_SIZE];

const fn join_key<const N: usize>(name: &[u8]) -> [u8; N] {
    // Evaluated at compile time only: a length mistake is a build error, not a runtime panic.
    let mut out = [0u8; N];
    let mut i = 0;
    while i < name.len() {
        out[i] = name[i];
        i += 1;
    }
    let mut j = 0;
    while j < KEY_TAIL.len() {
        out[name.len() + j] = KEY_TAIL[j];
        j += 1;
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// C0 was 0x06 or 0x08: RTMPE (encrypted RTMP), which we do not serve.
    #[error(
        "client requested RTMPE (encrypted RTMP, C0=0x{0:02x}), which is not supported; use rtmps:// instead"
    )]
    Encrypted(u8),
    #[error("unsupported RTMP version byte 0x{0:02x} in C0")]
    UnsupportedVersion(u8),
    /// Client side: S0 announced RTMPE although we asked for plain RTMP.
    #[error("server answered with RTMPE (encrypted RTMP, S0=0x{0:02x}), which is not supported")]
    ServerEncrypted(u8),
    /// Client side: S0 carried a version byte other than 0x03.
    #[error("server answered with unsupported RTMP version byte 0x{0:02x} in S0")]
    ServerUnsupportedVersion(u8),
    /// Client side: S1 carried a valid digest but S2 was not signed with our C1 digest.
    #[error("server's S2 signature does not match our C1 digest")]
    ServerSignatureMismatch,
    /// Client side: `feed` was called before `start` sent C0+C1.
    #[error("client handshake fed before start(): C0+C1 have not been sent")]
    NotStarted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeKind {
    Simple,
    /// 0: digest offset computed from bytes 8..12, digest in 12..772;
    /// 1: digest offset computed from bytes 772..776, digest in 776..1536.
    Digest {
        scheme: u8,
    },
}

// ---------------------------------------------------------------------------------------------
// Digest helpers
// ---------------------------------------------------------------------------------------------

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    for part in parts {
        ctx.update(part);
    }
    let tag = ctx.sign();
    let mut out = [0u8; DIGEST_LEN];
    out.iter_mut()
        .zip(tag.as_ref())
        .for_each(|(dst, src)| *dst = *src);
    out
}

/// Where the 32-byte digest sits: the four bytes at the scheme's base, summed, pick one of 728
/// positions right after them. Both ffmpeg and librtmp agree on these numbers.
fn digest_offset(packet: &Packet, scheme: u8) -> usize {
    let base = if scheme == 0 { 8 } else { 772 };
    let sum: usize = packet
        .iter()
        .skip(base)
        .take(4)
        .map(|&b| usize::from(b))
        .sum();
    base + 4 + sum % 728
}

fn read_digest(packet: &Packet, pos: usize) -> [u8; DIGEST_LEN] {
    let mut out = [0u8; DIGEST_LEN];
    if let Some(src) = packet.get(pos..pos + DIGEST_LEN) {
        out.copy_from_slice(src);
    }
    out
}

/// HMAC of the whole packet except the 32 bytes at `pos` (where the digest itself lives).
fn packet_digest(packet: &Packet, pos: usize, key: &[u8]) -> [u8; DIGEST_LEN] {
    let head = packet.get(..pos).unwrap_or(&[]);
    let tail = packet.get(pos + DIGEST_LEN..).unwrap_or(&[]);
    hmac_sha256(key, &[head, tail])
}

/// Tries `schemes` in order; returns the first scheme whose digest validates, with the digest.
fn find_digest(packet: &Packet, key: &[u8], schemes: [u8; 2]) -> Option<(u8, [u8; DIGEST_LEN])> {
    schemes.into_iter().find_map(|scheme| {
        let pos = digest_offset(packet, scheme);
        let found = read_digest(packet, pos);
        (packet_digest(packet, pos, key) == found).then_some((scheme, found))
    })
}

/// Writes the packet's digest in place for `scheme` and returns it.
fn imprint_digest(packet: &mut Packet, scheme: u8, key: &[u8]) -> [u8; DIGEST_LEN] {
    let pos = digest_offset(packet, scheme);
    let digest = packet_digest(packet, pos, key);
    if let Some(slot) = packet.get_mut(pos..pos + DIGEST_LEN) {
        slot.copy_from_slice(&digest);
    }
    digest
}

/// Signature closing a digest-form C2/S2: HMAC(HMAC(full key, peer's digest), packet[..1504]).
fn response_signature(
    packet: &Packet,
    peer_digest: &[u8; DIGEST_LEN],
    full_key: &[u8],
) -> [u8; DIGEST_LEN] {
    let derived = hmac_sha256(full_key, &[peer_digest]);
    hmac_sha256(&derived, &[packet.get(..SIGNED_LEN).unwrap_or(&[])])
}

fn sign_response(packet: &mut Packet, peer_digest: &[u8; DIGEST_LEN], full_key: &[u8]) {
    let signature = response_signature(packet, peer_digest, full_key);
    if let Some(slot) = packet.get_mut(SIGNED_LEN..) {
        slot.copy_from_slice(&signature);
    }
}

fn has_signature(packet: &Packet, peer_digest: &[u8; DIGEST_LEN], full_key: &[u8]) -> bool {
    let expected = response_signature(packet, peer_digest, full_key);
    packet.get(SIGNED_LEN..) == Some(&expected[..])
}

// ---------------------------------------------------------------------------------------------
// Packet helpers
// ---------------------------------------------------------------------------------------------

fn fill_random(buf: &mut [u8]) {
    use ring::rand::SecureRandom;
    if ring::rand::SystemRandom::new().fill(buf).is_ok() {
        return;
    }
    // The handshake's random bytes are not secret (the keys are public); they only need to
    // differ between connections, so a per-process randomly keyed SipHash is good enough.
    warn!("system RNG unavailable; filling RTMP handshake bytes from a hashed counter");
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    for (i, chunk) in buf.chunks_mut(8).enumerate() {
        let mut hasher = state.build_hasher();
        hasher.write_usize(i);
        let word = hasher.finish().to_le_bytes();
        chunk.iter_mut().zip(word).for_each(|(dst, src)| *dst = src);
    }
}

/// A C1/S1/C2/S2 with the given time and version fields and random bytes after them.
fn new_packet(time: u32, version: [u8; 4]) -> Packet {
    let mut packet = [0u8; HANDSHAKE_SIZE];
    if let Some(rest) = packet.get_mut(8..) {
        fill_random(rest);
    }
    write_header(&mut packet, time, version);
    packet
}

fn random_packet() -> Packet {
    let mut packet = [0u8; HANDSHAKE_SIZE];
    fill_random(&mut packet);
    packet
}

fn write_header(packet: &mut Packet, time: u32, version: [u8; 4]) {
    if let Some(slot) = packet.get_mut(0..4) {
        slot.copy_from_slice(&time.to_be_bytes());
    }
    if let Some(slot) = packet.get_mut(4..8) {
        slot.copy_from_slice(&version);
    }
}

fn version_of(packet: &Packet) -> [u8; 4] {
    let mut version = [0u8; 4];
    if let Some(src) = packet.get(4..8) {
        version.copy_from_slice(src);
    }
    version
}

fn read_packet(input: &[u8], at: usize) -> Option<Packet> {
    input.get(at..at + HANDSHAKE_SIZE)?.try_into().ok()
}

/// Compares everything after the time and version fields: echoes differ in those fields
/// between implementations (ffmpeg zeroes the second one, old librtmp put its uptime there).
fn random_part_matches(a: &Packet, b: &Packet) -> bool {
    a.get(8..) == b.get(8..)
}

fn put_packet(out: &mut BytesMut, packet: &Packet) {
    out.put_slice(packet);
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

enum ServerState {
    AwaitC0C1,
    AwaitC2(Box<ServerSent>),
    Done,
    Failed(HandshakeError),
}

struct ServerSent {
    s1: Packet,
    /// The digest inside our S1, when we answered in the digest form.
    s1_digest: Option<[u8; DIGEST_LEN]>,
}

/// Server side: reads C0+C1, answers S0+S1+S2, then reads C2.
pub struct ServerHandshake {
    epoch: u32,
    state: ServerState,
    kind: Option<HandshakeKind>,
    client_version: Option<[u8; 4]>,
    c2_matched: Option<bool>,
}

impl fmt::Debug for ServerHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            ServerState::AwaitC0C1 => "AwaitC0C1",
            ServerState::AwaitC2(_) => "AwaitC2",
            ServerState::Done => "Done",
            ServerState::Failed(_) => "Failed",
        };
        f.debug_struct("ServerHandshake")
            .field("epoch", &self.epoch)
            .field("state", &state)
            .field("kind", &self.kind)
            .field("client_version", &self.client_version)
            .field("c2_matched", &self.c2_matched)
            .finish()
    }
}

impl ServerHandshake {
    /// `epoch` is the server's uptime-ms written into S1's time field.
    pub fn new(epoch: u32) -> Self {
        Self {
            epoch,
            state: ServerState::AwaitC0C1,
            kind: None,
            client_version: None,
            c2_matched: None,
        }
    }

    /// Consumes what it needs from `input` (leaving any bytes after C2 untouched — they are the first chunks),
    /// appends S0+S1+S2 to `out` once C0+C1 have arrived, and returns Ok(true) once C2 has been consumed.
    /// Returns Ok(false) while it needs more bytes. Never blocks, never panics on any input.
    ///
    /// After an error every further call returns the same error; after completion every further
    /// call returns Ok(true) without touching `input`.
    pub fn feed(
        &mut self,
        input: &mut BytesMut,
        out: &mut BytesMut,
    ) -> Result<bool, HandshakeError> {
        if let ServerState::AwaitC0C1 = self.state {
            let Some(&c0) = input.first() else {
                return Ok(false);
            };
            // Judge C0 as soon as it arrives: an RTMPE client or a stray HTTP request is told
            // off without waiting for 1536 more bytes that may never come.
            if let Err(err) = check_c0(c0) {
                self.state = ServerState::Failed(err.clone());
                return Err(err);
            }
            let Some(c1) = read_packet(input, 1) else {
                return Ok(false);
            };
            input.advance(1 + HANDSHAKE_SIZE);
            let sent = self.answer_c1(&c1, out);
            self.state = ServerState::AwaitC2(Box::new(sent));
        }

        match &self.state {
            ServerState::AwaitC0C1 => Ok(false),
            ServerState::AwaitC2(sent) => {
                let Some(c2) = read_packet(input, 0) else {
                    return Ok(false);
                };
                input.advance(HANDSHAKE_SIZE);
                let matched = c2_matches(sent, &c2);
                // Many real clients send junk C2 (and ffmpeg's publisher answers a digest S1
                // with a plain echo), so a mismatch is only worth a debug line.
                debug!(matched, "RTMP handshake: C2 received");
                self.c2_matched = Some(matched);
                self.state = ServerState::Done;
                Ok(true)
            }
            ServerState::Done => Ok(true),
            ServerState::Failed(err) => Err(err.clone()),
        }
    }

    /// The form negotiated with the client; `None` until C1 has been read.
    pub fn kind(&self) -> Option<HandshakeKind> {
        self.kind
    }

    /// The version field of the client's C1 (e.g. `[9, 0, 124, 2]` for ffmpeg); `None` until C1 has been read.
    pub fn client_version(&self) -> Option<[u8; 4]> {
        self.client_version
    }

    /// Whether C2 echoed S1 or carried a valid digest signature; `None` until C2 has been read.
    /// Informational only: the handshake never fails on C2.
    pub fn c2_matched(&self) -> Option<bool> {
        self.c2_matched
    }

    /// True once C2 has been consumed.
    pub fn is_done(&self) -> bool {
        matches!(self.state, ServerState::Done)
    }

    fn answer_c1(&mut self, c1: &Packet, out: &mut BytesMut) -> ServerSent {
        let version = version_of(c1);
        self.client_version = Some(version);

        // A zero version means a pre-FP9 client that expects the plain form. Otherwise look for
        // the client digest, scheme 1 first as librtmp's server and nginx-rtmp do.
        let client_digest = if version == [0; 4] {
            None
        } else {
            let found = find_digest(c1, PLAYER_KEY_NAME, [1, 0]);
            if found.is_none() {
                debug!(
                    ?version,
                    "RTMP handshake: C1 has a version but no valid digest; answering in the plain form"
                );
            }
            found
        };

        let (s1, s2, s1_digest) = match client_digest {
            Some((scheme, client_digest)) => {
                self.kind = Some(HandshakeKind::Digest { scheme });
                let mut s1 = new_packet(self.epoch, SERVER_VERSION);
                // Same scheme as the client's: ffmpeg and librtmp try both, older peers only theirs.
                let s1_digest = imprint_digest(&mut s1, scheme, SERVER_KEY_NAME);
                let mut s2 = random_packet();
                sign_response(&mut s2, &client_digest, &SERVER_KEY);
                (s1, s2, Some(s1_digest))
            }
            None => {
                self.kind = Some(HandshakeKind::Simple);
                // The version field must stay zero: it is what tells ffmpeg (first byte < 3)
                // and librtmp (first byte 0) not to look for a digest in S1.
                let s1 = new_packet(self.epoch, [0; 4]);
                // S2 is C1 unchanged. librtmp's client compares all 1536 bytes of S2 with its
                // C1 (and warns on any difference), so we do not rewrite the time2 field.
                (s1, *c1, None)
            }
        };
        debug!(kind = ?self.kind, ?version, "RTMP handshake: answering C1");

        out.reserve(1 + 2 * HANDSHAKE_SIZE);
        out.put_u8(RTMP_PLAIN);
        put_packet(out, &s1);
        put_packet(out, &s2);
        ServerSent { s1, s1_digest }
    }
}

fn check_c0(c0: u8) -> Result<(), HandshakeError> {
    match c0 {
        RTMP_PLAIN => Ok(()),
        0x06 | 0x08 => Err(HandshakeError::Encrypted(c0)),
        other => Err(HandshakeError::UnsupportedVersion(other)),
    }
}

fn c2_matches(sent: &ServerSent, c2: &Packet) -> bool {
    let signed = sent
        .s1_digest
        .is_some_and(|digest| has_signature(c2, &digest, &PLAYER_KEY));
    signed || random_part_matches(c2, &sent.s1)
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

enum ClientState {
    Idle,
    AwaitS0S1(Box<ClientSent>),
    AwaitS2(Box<ClientAwaitS2>),
    Done,
    Failed(HandshakeError),
}

struct ClientSent {
    c1: Packet,
    c1_digest: Option<[u8; DIGEST_LEN]>,
}

struct ClientAwaitS2 {
    c1: Packet,
    /// Our C1 digest, when the server proved itself with a digest S1 and must sign S2 with it.
    verify_with: Option<[u8; DIGEST_LEN]>,
}

/// Client side: sends C0+C1, reads S0+S1 (answering C2 straight away), then reads S2.
pub struct ClientHandshake {
    /// `None`: plain C1; `Some(scheme)`: digest C1 in that scheme.
    scheme: Option<u8>,
    state: ClientState,
    kind: Option<HandshakeKind>,
    server_version: Option<[u8; 4]>,
}

impl fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            ClientState::Idle => "Idle",
            ClientState::AwaitS0S1(_) => "AwaitS0S1",
            ClientState::AwaitS2(_) => "AwaitS2",
            ClientState::Done => "Done",
            ClientState::Failed(_) => "Failed",
        };
        f.debug_struct("ClientHandshake")
            .field("scheme", &self.scheme)
            .field("state", &state)
            .field("kind", &self.kind)
            .field("server_version", &self.server_version)
            .finish()
    }
}

impl ClientHandshake {
    /// `digest`: send a Flash-Player-9 style digest C1 (as ffmpeg does) or a plain one.
    ///
    /// The digest C1 uses scheme 0 (digest position from bytes 8..12), which is what ffmpeg
    /// and librtmp 2.4 send for unencrypted RTMP.
    pub fn new(digest: bool) -> Self {
        Self::with_scheme(digest.then_some(0))
    }

    /// A digest client using `scheme` (0, or anything else for scheme 1 — the layout RTMPE
    /// clients and older librtmp builds use).
    pub fn with_digest_scheme(scheme: u8) -> Self {
        Self::with_scheme(Some(if scheme == 0 { 0 } else { 1 }))
    }

    fn with_scheme(scheme: Option<u8>) -> Self {
        Self {
            scheme,
            state: ClientState::Idle,
            kind: None,
            server_version: None,
        }
    }

    /// Appends C0+C1 to `out`. Call once, first.
    pub fn start(&mut self, out: &mut BytesMut) {
        if !matches!(self.state, ClientState::Idle) {
            debug!("RTMP handshake: start() called again; ignored");
            return;
        }
        // Time 0 as ffmpeg sends; the version field tells the server which form we speak.
        let (c1, c1_digest) = match self.scheme {
            Some(scheme) => {
                let mut c1 = new_packet(0, CLIENT_VERSION);
                let digest = imprint_digest(&mut c1, scheme, PLAYER_KEY_NAME);
                (c1, Some(digest))
            }
            None => (new_packet(0, [0; 4]), None),
        };
        out.reserve(1 + HANDSHAKE_SIZE);
        out.put_u8(RTMP_PLAIN);
        put_packet(out, &c1);
        self.state = ClientState::AwaitS0S1(Box::new(ClientSent { c1, c1_digest }));
    }

    /// Consumes S0+S1+S2, appends C2 to `out`, returns Ok(true) when done; bytes after S2 stay in `input`.
    ///
    /// C2 is appended as soon as S1 has arrived (as librtmp does), before S2. After an error
    /// every further call returns the same error.
    pub fn feed(
        &mut self,
        input: &mut BytesMut,
        out: &mut BytesMut,
    ) -> Result<bool, HandshakeError> {
        if let ClientState::AwaitS0S1(sent) = &self.state {
            let Some(&s0) = input.first() else {
                return Ok(false);
            };
            let s0_check = match s0 {
                RTMP_PLAIN => Ok(()),
                0x06 | 0x08 => Err(HandshakeError::ServerEncrypted(s0)),
                other => Err(HandshakeError::ServerUnsupportedVersion(other)),
            };
            if let Err(err) = s0_check {
                self.state = ClientState::Failed(err.clone());
                return Err(err);
            }
            let Some(s1) = read_packet(input, 1) else {
                return Ok(false);
            };
            input.advance(1 + HANDSHAKE_SIZE);
            let (c2, awaiting, kind) = answer_s1(sent, &s1);
            self.kind = Some(kind);
            self.server_version = Some(version_of(&s1));
            out.reserve(HANDSHAKE_SIZE);
            put_packet(out, &c2);
            self.state = ClientState::AwaitS2(Box::new(awaiting));
        }

        match &self.state {
            ClientState::Idle => Err(HandshakeError::NotStarted),
            ClientState::AwaitS0S1(_) => Ok(false),
            ClientState::AwaitS2(awaiting) => {
                let Some(s2) = read_packet(input, 0) else {
                    return Ok(false);
                };
                input.advance(HANDSHAKE_SIZE);
                match awaiting.verify_with {
                    Some(c1_digest) => {
                        // Same check as ffmpeg's and librtmp's clients: a server that signed
                        // S1 must also sign S2 with our digest, or it is not what it claims.
                        if !has_signature(&s2, &c1_digest, &SERVER_KEY) {
                            let err = HandshakeError::ServerSignatureMismatch;
                            self.state = ClientState::Failed(err.clone());
                            return Err(err);
                        }
                    }
                    None => {
                        let echoed = random_part_matches(&s2, &awaiting.c1);
                        // librtmp only warns here too; servers differ on what they echo.
                        debug!(echoed, "RTMP handshake: plain S2 received");
                    }
                }
                self.state = ClientState::Done;
                Ok(true)
            }
            ClientState::Done => Ok(true),
            ClientState::Failed(err) => Err(err.clone()),
        }
    }

    /// The form the server answered in; `None` until S1 has been read.
    pub fn kind(&self) -> Option<HandshakeKind> {
        self.kind
    }

    /// The version field of the server's S1; `None` until S1 has been read.
    pub fn server_version(&self) -> Option<[u8; 4]> {
        self.server_version
    }

    /// True once S2 has been consumed.
    pub fn is_done(&self) -> bool {
        matches!(self.state, ClientState::Done)
    }
}

fn answer_s1(sent: &ClientSent, s1: &Packet) -> (Packet, ClientAwaitS2, HandshakeKind) {
    let version = version_of(s1);
    let server_digest = match sent.c1_digest {
        Some(c1_digest) if version != [0; 4] => {
            // Scheme 1 first, then 0, as ffmpeg's client does; librtmp tries its own first.
            let found = find_digest(s1, SERVER_KEY_NAME, [1, 0]);
            if found.is_none() {
                // ffmpeg's player would abort here; we fall back to the plain echo, which
                // is what a server without the digest scheme expects.
                debug!(
                    ?version,
                    "RTMP handshake: S1 has a version but no valid digest; answering in the plain form"
                );
            }
            found.map(|(scheme, digest)| (scheme, digest, c1_digest))
        }
        _ => None,
    };

    match server_digest {
        Some((scheme, s1_digest, c1_digest)) => {
            let mut c2 = random_packet();
            sign_response(&mut c2, &s1_digest, &PLAYER_KEY);
            debug!(
                scheme,
                ?version,
                "RTMP handshake: server answered in the digest form"
            );
            let awaiting = ClientAwaitS2 {
                c1: sent.c1,
                verify_with: Some(c1_digest),
            };
            (c2, awaiting, HandshakeKind::Digest { scheme })
        }
        None => {
            debug!(
                ?version,
                "RTMP handshake: server answered in the plain form"
            );
            // C2 is S1 unchanged: ffmpeg's listen mode checks S1's time and random bytes,
            // librtmp's server compares all 1536 bytes.
            let awaiting = ClientAwaitS2 {
                c1: sent.c1,
                verify_with: None,
            };
            (*s1, awaiting, HandshakeKind::Simple)
        }
    }
}
