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
    use std::hash::{BuildHasher, Hasher};
    if ring::rand::SystemRandom::new().fill(buf).is_ok() {
        return;
    }
    // The handshake's random bytes are not secret (the keys are public); they only need to
    // differ between connections, so a per-process randomly keyed SipHash is good enough.
    warn!("system RNG unavailable; filling RTMP handshake bytes from a hashed counter");
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
    ///
    /// # Errors
    /// [`HandshakeError::Encrypted`] for C0 = 0x06/0x08 and [`HandshakeError::UnsupportedVersion`]
    /// for any other C0 but 0x03, as soon as the first byte arrives. C1 and C2 never cause one.
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
    ///
    /// # Errors
    /// [`HandshakeError::NotStarted`] before [`start`](Self::start);
    /// [`HandshakeError::ServerEncrypted`] / [`HandshakeError::ServerUnsupportedVersion`] for an
    /// S0 other than 0x03; [`HandshakeError::ServerSignatureMismatch`] when a server that signed
    /// S1 did not sign S2 with our C1 digest.
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // -----------------------------------------------------------------------------------------
    // Independent reference: the peers' checks re-implemented from their descriptions
    // (ffmpeg libavformat/rtmpproto.c rtmp_handshake / rtmp_validate_digest /
    // rtmp_server_handshake, librtmp handshake.h HandShake / SHandShake), with a hand-rolled
    // HMAC over ring's plain SHA-256 so nothing is shared with the code under test.
    // -----------------------------------------------------------------------------------------

    const REF_TAIL: [u8; 32] = [
        0xf0, 0xee, 0xc2, 0x4a, 0x80, 0x68, 0xbe, 0xe8, 0x2e, 0x00, 0xd0, 0xd1, 0x02, 0x9e, 0x7e,
        0x57, 0x6e, 0xec, 0x5d, 0x2d, 0x29, 0x80, 0x6f, 0xab, 0x93, 0xb8, 0xe6, 0x36, 0xcf, 0xeb,
        0x31, 0xae,
    ];
    const REF_FP_OPEN: &[u8; 30] = b"Genuine Adobe Flash Player 001";
    const REF_FMS_OPEN: &[u8; 36] = b"Genuine Adobe Flash Media Server 001";

    fn ref_fp_full() -> Vec<u8> {
        [&REF_FP_OPEN[..], &REF_TAIL[..]].concat()
    }

    fn ref_fms_full() -> Vec<u8> {
        [&REF_FMS_OPEN[..], &REF_TAIL[..]].concat()
    }

    /// RFC 2104 HMAC-SHA256 written out the way ff_rtmp_calc_digest does it.
    fn ref_hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
        use ring::digest::{Context, SHA256, digest};
        let mut block = [0u8; 64];
        if key.len() > 64 {
            block[..32].copy_from_slice(digest(&SHA256, key).as_ref());
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let mut inner = Context::new(&SHA256);
        inner.update(&block.map(|b| b ^ 0x36));
        inner.update(data);
        let inner = inner.finish();
        let mut outer = Context::new(&SHA256);
        outer.update(&block.map(|b| b ^ 0x5c));
        outer.update(inner.as_ref());
        outer.finish().as_ref().try_into().unwrap()
    }

    /// ff_rtmp_calc_digest: HMAC over `src`, skipping the 32 bytes at `gap` when given.
    fn ff_calc_digest(src: &[u8], gap: Option<usize>, key: &[u8]) -> [u8; 32] {
        match gap {
            None => ref_hmac(key, src),
            Some(gap) => ref_hmac(key, &[&src[..gap], &src[gap + 32..]].concat()),
        }
    }

    /// ff_rtmp_calc_digest_pos (librtmp's GetDigestOffset1/2 are the same with fixed numbers).
    fn ff_calc_digest_pos(buf: &[u8], off: usize, mod_val: usize, add_val: usize) -> usize {
        buf[off..off + 4].iter().map(|&b| b as usize).sum::<usize>() % mod_val + add_val
    }

    /// rtmp_validate_digest: 0 when the server digest does not validate at `off`.
    fn ff_validate_digest(s1: &[u8], off: usize) -> usize {
        let pos = ff_calc_digest_pos(s1, off, 728, off + 4);
        if ff_calc_digest(s1, Some(pos), REF_FMS_OPEN) == s1[pos..pos + 32] {
            pos
        } else {
            0
        }
    }

    /// Deterministic filler for fixtures (xorshift64*).
    fn fixture_bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect()
    }

    /// C0+C1 built the way ffmpeg's rtmp_handshake builds it for plain RTMP: time 0,
    /// version 9.0.124.2, pseudo-random filler, digest at ff_calc_digest_pos(buf, 8, 728, 12)
    /// keyed with the 30-byte player key.
    fn ffmpeg_c0c1(seed: u64) -> Vec<u8> {
        let mut c1 = fixture_bytes(seed, HANDSHAKE_SIZE);
        c1[..8].copy_from_slice(&[0, 0, 0, 0, 9, 0, 124, 2]);
        let pos = ff_calc_digest_pos(&c1, 8, 728, 12);
        let d = ff_calc_digest(&c1, Some(pos), REF_FP_OPEN);
        c1[pos..pos + 32].copy_from_slice(&d);
        [&[3u8][..], &c1[..]].concat()
    }

    /// C0+C1 as librtmp's HandShake builds it with FP9HandShake on: `offalg` 0 with version
    /// 10.0.45.2 (librtmp 2.4, plain RTMP), 1 with version 128.0.3.2 (the FP10 layout).
    fn librtmp_c0c1(offalg: u8, uptime: u32, seed: u64) -> Vec<u8> {
        let mut c1 = fixture_bytes(seed, HANDSHAKE_SIZE);
        c1[..4].copy_from_slice(&uptime.to_be_bytes());
        let pos = if offalg == 0 {
            c1[4..8].copy_from_slice(&[10, 0, 45, 2]);
            ff_calc_digest_pos(&c1, 8, 728, 12)
        } else {
            c1[4..8].copy_from_slice(&[128, 0, 3, 2]);
            ff_calc_digest_pos(&c1, 772, 728, 776)
        };
        let d = ff_calc_digest(&c1, Some(pos), REF_FP_OPEN);
        c1[pos..pos + 32].copy_from_slice(&d);
        [&[3u8][..], &c1[..]].concat()
    }

    /// ffmpeg's client after reading S0+S1+S2 (`reply`, 3073 bytes). `is_input` is true for a
    /// player (the only case in which ffmpeg checks the digests). Returns the C2 it sends.
    fn ffmpeg_client(c0c1: &[u8], reply: &[u8], is_input: bool) -> Result<Vec<u8>, &'static str> {
        let c1 = &c0c1[1..];
        let s1 = &reply[1..1 + HANDSHAKE_SIZE];
        let s2 = &reply[1 + HANDSHAKE_SIZE..1 + 2 * HANDSHAKE_SIZE];
        if !(is_input && reply[5] >= 3) {
            return Ok(s1.to_vec());
        }
        let mut server_pos = ff_validate_digest(s1, 772);
        if server_pos == 0 {
            server_pos = ff_validate_digest(s1, 8);
            if server_pos == 0 {
                return Err("Server response validating failed");
            }
        }
        let client_pos = ff_calc_digest_pos(c1, 8, 728, 12);
        let digest = ff_calc_digest(&c1[client_pos..client_pos + 32], None, &ref_fms_full());
        let signature = ff_calc_digest(&s2[..1504], None, &digest);
        if signature != s2[1504..] {
            return Err("Signature mismatch");
        }
        let mut c2 = fixture_bytes(99, HANDSHAKE_SIZE);
        let digest = ff_calc_digest(&s1[server_pos..server_pos + 32], None, &ref_fp_full());
        let signature = ff_calc_digest(&c2[..1504], None, &digest);
        c2[1504..].copy_from_slice(&signature);
        Ok(c2)
    }

    /// librtmp's HandShake (client) after sending `c0c1` (FP9 when C1 has a version).
    /// Returns the C2 it sends and the warnings it logs; Err where it gives up.
    fn librtmp_client(
        c0c1: &[u8],
        reply: &[u8],
        offalg: u8,
    ) -> Result<(Vec<u8>, Vec<&'static str>), &'static str> {
        let c1 = &c0c1[1..];
        let s1 = &reply[1..1 + HANDSHAKE_SIZE];
        let s2 = &reply[1 + HANDSHAKE_SIZE..1 + 2 * HANDSHAKE_SIZE];
        let mut warnings = Vec::new();
        if reply[0] != c0c1[0] {
            warnings.push("Type mismatch");
        }
        let fp9 = c1[4] != 0 && !(reply[0] == 3 && s1[4] == 0);
        if !fp9 {
            if s2 != c1 {
                warnings.push("client signature does not match!");
            }
            return Ok((s1.to_vec(), warnings));
        }
        let offset = |buf: &[u8], alg: u8| {
            if alg == 0 {
                ff_calc_digest_pos(buf, 8, 728, 12)
            } else {
                ff_calc_digest_pos(buf, 772, 728, 776)
            }
        };
        let verify = |pos: usize| ff_calc_digest(s1, Some(pos), REF_FMS_OPEN) == s1[pos..pos + 32];
        let mut server_pos = offset(s1, offalg);
        if !verify(server_pos) {
            warnings.push("Trying different position for server digest!");
            server_pos = offset(s1, offalg ^ 1);
            if !verify(server_pos) {
                return Err("Couldn't verify the server digest");
            }
        }
        let mut c2 = fixture_bytes(7, HANDSHAKE_SIZE);
        let key = ref_hmac(&ref_fp_full(), &s1[server_pos..server_pos + 32]);
        let signature = ref_hmac(&key, &c2[..1504]);
        c2[1504..].copy_from_slice(&signature);

        let client_pos = offset(c1, offalg);
        let key = ref_hmac(&ref_fms_full(), &c1[client_pos..client_pos + 32]);
        if ref_hmac(&key, &s2[..1504]) != s2[1504..] {
            return Err("Server not genuine Adobe!");
        }
        Ok((c2, warnings))
    }

    /// librtmp 2.4's SHandShake (server) up to sending S0+S1+S2.
    struct LibrtmpServer {
        s1: Vec<u8>,
        /// Digest position in S1 when it answered FP9.
        s1_pos: Option<usize>,
        warnings: Vec<&'static str>,
    }

    fn librtmp_server(c0c1: &[u8]) -> Result<(Vec<u8>, LibrtmpServer), &'static str> {
        if c0c1[0] != 3 {
            return Err("Unknown version");
        }
        let c1 = &c0c1[1..];
        let fp9 = c1[4] != 0;
        let mut s1 = fixture_bytes(31, HANDSHAKE_SIZE);
        s1[..4].copy_from_slice(&777u32.to_be_bytes());
        let mut warnings = Vec::new();
        if !fp9 {
            s1[4..8].copy_from_slice(&[0; 4]);
            let reply = [&[3u8][..], &s1[..], c1].concat();
            let server = LibrtmpServer {
                s1,
                s1_pos: None,
                warnings,
            };
            return Ok((reply, server));
        }
        s1[4..8].copy_from_slice(&[3, 5, 1, 1]);
        let s1_pos = ff_calc_digest_pos(&s1, 8, 728, 12);
        let d = ff_calc_digest(&s1, Some(s1_pos), REF_FMS_OPEN);
        s1[s1_pos..s1_pos + 32].copy_from_slice(&d);

        let verify = |pos: usize| ff_calc_digest(c1, Some(pos), REF_FP_OPEN) == c1[pos..pos + 32];
        let mut client_pos = ff_calc_digest_pos(c1, 8, 728, 12);
        if !verify(client_pos) {
            warnings.push("Trying different position for client digest!");
            client_pos = ff_calc_digest_pos(c1, 772, 728, 776);
            if !verify(client_pos) {
                return Err("Couldn't verify the client digest");
            }
        }
        // librtmp signs S2 in place over the received C1.
        let mut s2 = c1.to_vec();
        let key = ref_hmac(&ref_fms_full(), &c1[client_pos..client_pos + 32]);
        let signature = ref_hmac(&key, &s2[..1504]);
        s2[1504..].copy_from_slice(&signature);
        let reply = [&[3u8][..], &s1[..], &s2[..]].concat();
        let server = LibrtmpServer {
            s1,
            s1_pos: Some(s1_pos),
            warnings,
        };
        Ok((reply, server))
    }

    fn librtmp_server_check_c2(server: &mut LibrtmpServer, c2: &[u8]) -> Result<(), &'static str> {
        match server.s1_pos {
            Some(pos) => {
                let key = ref_hmac(&ref_fp_full(), &server.s1[pos..pos + 32]);
                if ref_hmac(&key, &c2[..1504]) != c2[1504..] {
                    return Err("Client not genuine Adobe!");
                }
            }
            None => {
                if c2 != server.s1 {
                    server.warnings.push("client signature does not match!");
                }
            }
        }
        Ok(())
    }

    /// ffmpeg's rtmp_server_handshake (listen mode): S1 = C1's epoch, 0, random;
    /// S2 = C1's epoch, 0, C1's random. Returns the reply and S1.
    fn ffmpeg_listen_reply(c0c1: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let c1 = &c0c1[1..];
        let mut s1 = fixture_bytes(5, HANDSHAKE_SIZE);
        s1[..4].copy_from_slice(&c1[..4]);
        s1[4..8].copy_from_slice(&[0; 4]);
        let mut s2 = c1.to_vec();
        s2[4..8].copy_from_slice(&[0; 4]);
        ([&[3u8][..], &s1[..], &s2[..]].concat(), s1)
    }

    /// The warnings ffmpeg's listen mode logs for a C2.
    fn ffmpeg_listen_c2_warnings(s1: &[u8], c2: &[u8]) -> Vec<&'static str> {
        let mut warnings = Vec::new();
        if c2[..4] != s1[..4] {
            warnings.push("Erroneous C2 Message epoch does not match up with C1 epoch");
        }
        if c2[8..] != s1[8..] {
            warnings.push("Erroneous C2 Message random does not match up");
        }
        warnings
    }

    // -----------------------------------------------------------------------------------------
    // Drivers
    // -----------------------------------------------------------------------------------------

    /// Feeds `bytes` to a fresh server in one go; returns the server, what it wrote, and what is left in its input.
    fn server_feed_all(
        bytes: &[u8],
    ) -> (
        ServerHandshake,
        Result<bool, HandshakeError>,
        BytesMut,
        BytesMut,
    ) {
        let mut server = ServerHandshake::new(4242);
        let mut input = BytesMut::from(bytes);
        let mut out = BytesMut::new();
        let result = server.feed(&mut input, &mut out);
        (server, result, out, input)
    }

    /// Runs a client and a server against each other, moving at most `chunk` bytes per step
    /// each way. Each side sends its trailer right after finishing (the first chunks).
    /// Returns what is left in each side's input when both are done.
    fn run_pair(
        server: &mut ServerHandshake,
        client: &mut ClientHandshake,
        chunk: usize,
        to_server_trailer: &[u8],
        to_client_trailer: &[u8],
    ) -> (BytesMut, BytesMut) {
        let mut c2s = BytesMut::new();
        let mut s2c = BytesMut::new();
        let mut server_in = BytesMut::new();
        let mut client_in = BytesMut::new();
        client.start(&mut c2s);
        let (mut server_done, mut client_done) = (false, false);
        for _ in 0..100_000 {
            let n = chunk.min(c2s.len());
            server_in.extend_from_slice(&c2s.split_to(n));
            if !server_done && server.feed(&mut server_in, &mut s2c).unwrap() {
                server_done = true;
                s2c.extend_from_slice(to_client_trailer);
            }
            let n = chunk.min(s2c.len());
            client_in.extend_from_slice(&s2c.split_to(n));
            if !client_done && client.feed(&mut client_in, &mut c2s).unwrap() {
                client_done = true;
                c2s.extend_from_slice(to_server_trailer);
            }
            if server_done && client_done && c2s.is_empty() && s2c.is_empty() {
                return (server_in, client_in);
            }
        }
        panic!("handshake did not finish");
    }

    fn pair(client: ClientHandshake, chunk: usize) -> (ServerHandshake, ClientHandshake) {
        let mut server = ServerHandshake::new(1000);
        let mut client = client;
        let (server_left, client_left) =
            run_pair(&mut server, &mut client, chunk, b"connect", b"ack");
        assert_eq!(&server_left[..], b"connect");
        assert_eq!(&client_left[..], b"ack");
        assert!(server.is_done() && client.is_done());
        (server, client)
    }

    // -----------------------------------------------------------------------------------------
    // Server <-> client pairs
    // -----------------------------------------------------------------------------------------

    #[test]
    fn plain_pair_all_at_once_and_byte_by_byte() {
        for chunk in [usize::MAX, 1, 7, 1000] {
            let (server, client) = pair(ClientHandshake::new(false), chunk);
            assert_eq!(server.kind(), Some(HandshakeKind::Simple));
            assert_eq!(client.kind(), Some(HandshakeKind::Simple));
            assert_eq!(server.client_version(), Some([0; 4]));
            assert_eq!(client.server_version(), Some([0; 4]));
            assert_eq!(server.c2_matched(), Some(true));
        }
    }

    #[test]
    fn digest_pair_scheme_0() {
        for chunk in [usize::MAX, 1, 513] {
            let (server, client) = pair(ClientHandshake::new(true), chunk);
            assert_eq!(server.kind(), Some(HandshakeKind::Digest { scheme: 0 }));
            assert_eq!(client.kind(), Some(HandshakeKind::Digest { scheme: 0 }));
            assert_eq!(server.client_version(), Some(CLIENT_VERSION));
            assert_eq!(client.server_version(), Some(SERVER_VERSION));
            assert_eq!(server.c2_matched(), Some(true));
        }
    }

    #[test]
    fn digest_pair_scheme_1() {
        for chunk in [usize::MAX, 1, 1536] {
            let (server, client) = pair(ClientHandshake::with_digest_scheme(1), chunk);
            assert_eq!(server.kind(), Some(HandshakeKind::Digest { scheme: 1 }));
            assert_eq!(client.kind(), Some(HandshakeKind::Digest { scheme: 1 }));
            assert_eq!(server.c2_matched(), Some(true));
        }
    }

    #[test]
    fn corrupted_c1_digest_falls_back_to_plain() {
        let mut client = ClientHandshake::new(true);
        let mut c0c1 = BytesMut::new();
        client.start(&mut c0c1);
        // Flip one byte inside the digest itself.
        let mut c1: Packet = c0c1[1..].try_into().unwrap();
        let pos = digest_offset(&c1, 0);
        c1[pos] ^= 0xff;
        c0c1[1..].copy_from_slice(&c1);

        let mut server = ServerHandshake::new(5);
        let mut reply = BytesMut::new();
        assert_eq!(server.feed(&mut c0c1, &mut reply), Ok(false));
        assert_eq!(server.kind(), Some(HandshakeKind::Simple));
        assert_eq!(&reply[5..9], &[0; 4], "plain S1 keeps a zero version");
        // S2 echoes the (corrupted) C1 exactly.
        assert_eq!(&reply[1 + HANDSHAKE_SIZE..], &c1[..]);

        let mut c2 = BytesMut::new();
        assert_eq!(client.feed(&mut reply, &mut c2), Ok(true));
        assert_eq!(client.kind(), Some(HandshakeKind::Simple));
        c2.extend_from_slice(b"tail");
        assert_eq!(server.feed(&mut c2, &mut BytesMut::new()), Ok(true));
        assert_eq!(server.c2_matched(), Some(true));
        assert_eq!(&c2[..], b"tail");
    }

    #[test]
    fn server_output_shape() {
        let (server, result, out, left) = server_feed_all(&ffmpeg_c0c1(1));
        assert_eq!(result, Ok(false));
        assert!(left.is_empty());
        assert_eq!(out.len(), 1 + 2 * HANDSHAKE_SIZE);
        assert_eq!(out[0], 3);
        assert_eq!(&out[1..5], &4242u32.to_be_bytes(), "S1 time is our epoch");
        assert_eq!(&out[5..9], &SERVER_VERSION);
        assert!(!server.is_done());

        let mut plain = vec![3u8];
        plain.extend_from_slice(&[0; 8]);
        plain.extend(fixture_bytes(3, HANDSHAKE_SIZE - 8));
        let (_, _, out, _) = server_feed_all(&plain);
        assert_eq!(&out[1..5], &4242u32.to_be_bytes());
        assert_eq!(&out[5..9], &[0; 4]);
        assert_eq!(
            &out[1 + HANDSHAKE_SIZE..],
            &plain[1..],
            "plain S2 is C1 unchanged"
        );
    }

    #[test]
    fn server_waits_for_whole_c1_and_c2() {
        let c0c1 = ffmpeg_c0c1(2);
        let mut server = ServerHandshake::new(0);
        let mut input = BytesMut::from(&c0c1[..HANDSHAKE_SIZE]);
        let mut out = BytesMut::new();
        assert_eq!(server.feed(&mut input, &mut out), Ok(false));
        assert!(out.is_empty(), "nothing is sent before C1 is complete");
        assert_eq!(
            input.len(),
            HANDSHAKE_SIZE,
            "partial C0+C1 is left in place"
        );
        assert_eq!(server.kind(), None);
        input.extend_from_slice(&c0c1[HANDSHAKE_SIZE..]);
        assert_eq!(server.feed(&mut input, &mut out), Ok(false));
        assert_eq!(out.len(), 1 + 2 * HANDSHAKE_SIZE);
        input.extend_from_slice(&[0u8; HANDSHAKE_SIZE - 1]);
        assert_eq!(server.feed(&mut input, &mut out), Ok(false));
        assert_eq!(input.len(), HANDSHAKE_SIZE - 1);
        input.extend_from_slice(&[0, 0x02, 0xAA]);
        assert_eq!(server.feed(&mut input, &mut out), Ok(true));
        assert_eq!(&input[..], &[0x02, 0xAA]);
        // Done is sticky and consumes nothing more.
        assert_eq!(server.feed(&mut input, &mut out), Ok(true));
        assert_eq!(&input[..], &[0x02, 0xAA]);
        assert_eq!(out.len(), 1 + 2 * HANDSHAKE_SIZE);
    }

    #[test]
    fn junk_c2_never_fails() {
        let c0c1 = ffmpeg_c0c1(3);
        let mut bytes = c0c1.clone();
        bytes.extend(fixture_bytes(4, HANDSHAKE_SIZE));
        let (server, result, _, left) = server_feed_all(&bytes);
        assert_eq!(result, Ok(true));
        assert!(left.is_empty());
        assert_eq!(server.c2_matched(), Some(false));

        let mut plain = vec![3u8; 1 + HANDSHAKE_SIZE];
        plain[5..9].copy_from_slice(&[0; 4]);
        plain.extend([0u8; HANDSHAKE_SIZE]);
        let (server, result, _, _) = server_feed_all(&plain);
        assert_eq!(result, Ok(true));
        assert_eq!(server.kind(), Some(HandshakeKind::Simple));
        assert_eq!(server.c2_matched(), Some(false));
    }

    // -----------------------------------------------------------------------------------------
    // C0 / S0 validation
    // -----------------------------------------------------------------------------------------

    #[test]
    fn c0_rtmpe_and_unknown_versions_are_rejected_at_once() {
        for (c0, expected) in [
            (0x06, HandshakeError::Encrypted(0x06)),
            (0x08, HandshakeError::Encrypted(0x08)),
            (0x07, HandshakeError::UnsupportedVersion(0x07)),
            (b'G', HandshakeError::UnsupportedVersion(b'G')),
            (0x00, HandshakeError::UnsupportedVersion(0x00)),
        ] {
            let mut server = ServerHandshake::new(0);
            let mut input = BytesMut::from(&[c0][..]);
            let mut out = BytesMut::new();
            assert_eq!(server.feed(&mut input, &mut out), Err(expected.clone()));
            input.extend_from_slice(&[0u8; 4000]);
            assert_eq!(
                server.feed(&mut input, &mut out),
                Err(expected),
                "errors are sticky"
            );
            assert!(out.is_empty());
        }
        let msg = HandshakeError::Encrypted(6).to_string();
        assert!(msg.contains("C0=0x06") && msg.contains("rtmps://"), "{msg}");
        assert_eq!(
            HandshakeError::UnsupportedVersion(7).to_string(),
            "unsupported RTMP version byte 0x07 in C0"
        );
    }

    #[test]
    fn client_rejects_bad_s0() {
        for (s0, expected) in [
            (0x06, HandshakeError::ServerEncrypted(0x06)),
            (0x07, HandshakeError::ServerUnsupportedVersion(0x07)),
        ] {
            let mut client = ClientHandshake::new(true);
            client.start(&mut BytesMut::new());
            let mut input = BytesMut::from(&[s0][..]);
            assert_eq!(
                client.feed(&mut input, &mut BytesMut::new()),
                Err(expected.clone())
            );
            assert_eq!(client.feed(&mut input, &mut BytesMut::new()), Err(expected));
        }
    }

    #[test]
    fn client_needs_start_and_starts_once() {
        let mut client = ClientHandshake::new(false);
        let mut input = BytesMut::from(&[3u8][..]);
        assert_eq!(
            client.feed(&mut input, &mut BytesMut::new()),
            Err(HandshakeError::NotStarted)
        );
        let mut out = BytesMut::new();
        client.start(&mut out);
        client.start(&mut out);
        assert_eq!(out.len(), 1 + HANDSHAKE_SIZE);
        assert_eq!(out[0], 3);
        assert_eq!(&out[1..9], &[0; 8], "plain C1: time 0, zero version");
    }

    // -----------------------------------------------------------------------------------------
    // Client behaviour against odd servers
    // -----------------------------------------------------------------------------------------

    #[test]
    fn client_sends_c2_after_s1_and_keeps_bytes_after_s2() {
        let mut client = ClientHandshake::new(true);
        let mut c0c1 = BytesMut::new();
        client.start(&mut c0c1);
        let mut server = ServerHandshake::new(9);
        let mut reply = BytesMut::new();
        server.feed(&mut c0c1, &mut reply).unwrap();
        let mut input = reply.split_to(1 + HANDSHAKE_SIZE);
        let mut c2 = BytesMut::new();
        assert_eq!(client.feed(&mut input, &mut c2), Ok(false));
        assert_eq!(c2.len(), HANDSHAKE_SIZE, "C2 goes out before S2 arrives");
        reply.extend_from_slice(&[0x02, 0x00]);
        assert_eq!(client.feed(&mut reply, &mut c2), Ok(true));
        assert_eq!(&reply[..], &[0x02, 0x00]);
        assert_eq!(c2.len(), HANDSHAKE_SIZE);
        assert_eq!(server.feed(&mut c2, &mut BytesMut::new()), Ok(true));
        assert_eq!(server.c2_matched(), Some(true));
    }

    #[test]
    fn client_rejects_bad_s2_signature() {
        let mut client = ClientHandshake::new(true);
        let mut c0c1 = BytesMut::new();
        client.start(&mut c0c1);
        let (mut reply, _) = librtmp_server(&c0c1).unwrap();
        let last = reply.len() - 1;
        reply[last] ^= 1;
        let mut input = BytesMut::from(&reply[..]);
        let err = HandshakeError::ServerSignatureMismatch;
        assert_eq!(
            client.feed(&mut input, &mut BytesMut::new()),
            Err(err.clone())
        );
        assert_eq!(client.kind(), Some(HandshakeKind::Digest { scheme: 0 }));
        assert_eq!(client.feed(&mut input, &mut BytesMut::new()), Err(err));
    }

    #[test]
    fn client_falls_back_when_s1_has_version_but_no_digest() {
        let mut client = ClientHandshake::new(true);
        let mut c0c1 = BytesMut::new();
        client.start(&mut c0c1);
        let mut s1 = fixture_bytes(11, HANDSHAKE_SIZE);
        s1[4..8].copy_from_slice(&[4, 0, 0, 1]);
        let reply = [&[3u8][..], &s1[..], &c0c1[1..]].concat();
        let mut input = BytesMut::from(&reply[..]);
        let mut c2 = BytesMut::new();
        assert_eq!(client.feed(&mut input, &mut c2), Ok(true));
        assert_eq!(client.kind(), Some(HandshakeKind::Simple));
        assert_eq!(&c2[..], &s1[..], "plain C2 echoes S1");
    }

    #[test]
    fn plain_client_echoes_even_a_digest_s1() {
        let mut client = ClientHandshake::new(false);
        let mut c0c1 = BytesMut::new();
        client.start(&mut c0c1);
        // A server that always signs S1: a plain client has no digest to check it against.
        let mut s1: Packet = fixture_bytes(12, HANDSHAKE_SIZE).try_into().unwrap();
        s1[4..8].copy_from_slice(&SERVER_VERSION);
        imprint_digest(&mut s1, 0, SERVER_KEY_NAME);
        let reply = [&[3u8][..], &s1[..], &c0c1[1..]].concat();
        let mut c2 = BytesMut::new();
        assert_eq!(
            client.feed(&mut BytesMut::from(&reply[..]), &mut c2),
            Ok(true)
        );
        assert_eq!(client.kind(), Some(HandshakeKind::Simple));
        assert_eq!(&c2[..], &s1[..]);
    }

    // -----------------------------------------------------------------------------------------
    // Captured-style fixtures checked by the re-implemented peers
    // -----------------------------------------------------------------------------------------

    /// C0+C1 captured from `ffmpeg -i rtmp://…` (ffmpeg 5.1, Debian 12). ffmpeg seeds its
    /// generator with a constant, so every ffmpeg sends these very bytes.
    const FFMPEG_5_1_C0C1_HEX: &str = concat!(
        "030000000009007c02f778551eceab8e1e362f07c5868a70b266d40220e5086118a22e3697d5fc2b6329c22ee7c7c9b0",
        "b5b345dfa8398fea3bc879208a1068425aa1174cb57258cfebe24da42ec4ff9da19c7b406f18c95bfdd04ee48b6f8332",
        "14a47b8bf68eb05254e25ae9a9a8b496c5496f6e9cd7c68cb6bcc84169e67f3e372ffe186da8513862c5afdeb5a1218a",
        "860baccdd869b253dbab8a0efb59a48c442099875e55b74fd07a1b69af303e099873cb77e2d9e2c4741eb1f506a7f0b2",
        "962af91f5051c890a320994f4c8b36a01fa9c0f15f4b7cf7b6c3817da60918611d3b02ff7cc94038937537d3382e416b",
        "d57577834df9caf748352150ce92d0dbb40e871fc364e18b7e3569e39876c1ae0cb79ff6d7ab32f9f011869c8da4191e",
        "f46d3c1bc6b72d83812f2243d1752a412632d66a2075f5d302f45cdf2b98b802b79805dc4837d84eded1cc42cba7eec3",
        "137bf86dd0b2d7f624d521a3ff655bcf0df4101341d230e94651628e45a7abf8183101ce981e5e86a6faec5c79aa7ec7",
        "181ea459ed966e0c932a6f9e4bf554ab7b1c905cde054ed40d2fb89bbfc65752e58cfde4f2a04dc3ad1e5ef4fc64d57b",
        "071c14146a451f6a043156d2880f5957d78dfd3ff2b880f624ac70f27094f37734eaf1924f66ac3d648ae232930544a4",
        "420b65eed4696f7f50fe05fc948516650bfb9b65f953d848e3456965d0d76b627a84e35e9ddabd8b43f0fadaee458cdf",
        "59ebd773922e0ae507d5e64092e90ec67ed8439e8f221c753a9f9216f1cb85b5107bc7cc7c4fb2c3eed1afc709b192f5",
        "0de69c1ffca5650efb523b5fab5997cac4b7ef5af2bf5973e6293bae1fc1da499be5515077de4ddb3f7fbcd741711c62",
        "b7d803b8d054cf578182714d1c445bd692ba1b839a09e7266fc85daa8fad433dabbd206cde1ea571770c6bfa7956c266",
        "ee8435eb01caa6f583c0d83c33eefcf3f97db917bdb299f8a89fb8860ab1cd644c1e82cce1323a9eb79d25f5dc570b70",
        "b40bb20061743353d0536ecdabd82f2277756228cb54fe6932c4c9bd130d2bfc700bf5d85da6946e96f82e0afd8e9c20",
        "cfeabf9a6a189bb17bbef539d1d9e73ee966fcb5d6bdbf98444de865be1605e34087b34cdf04e3aff55bd4137c522d2e",
        "3c7bf2634db326b22a474db7f8a0952ab3510de555396c18a378a8390b73bff7772fb2760fa5786a3b0459c45a1d1b0d",
        "ff4cbbb65da0ed34f32116c3c2cc2b95825111bcfbb246c1505aa00c970d06d76cc950ce368b220db20487cba02bb1fc",
        "54b36567b42913d6b885062cd7795601d31a4a8e6d56467fa5c52162676fd526122513c3e47f2e6d9d6a19c4f8795431",
        "a94ced039221d27ac68a7a770e9305252271459b71d05505c4977b70e96851208bacdcdf7e682b3848840880f1fec2a3",
        "2fb1406862bc83cad89adf729f3ba6ffd3fe808e8403e7c6a0f6dcda3211898f6f16505b078cc78b80db600ded2f200f",
        "25ff5dcb31d32cbe2056b8bdc31091631abbd2ac28d61fe32480ec5035bbf35f173393f0d59a21d2300b2db4b59eaa63",
        "ffe0f93d65dc028516905f22a9c7dff387c4eb78c6300e7ebbb2a6663cfbe5a9977caf5764ba3f0aba57db4e6051e0ae",
        "c6e05b1bdaa649a97875edbc40bcc4214bb7fef72730d4368acbd3e10ab4c7642a1c53f93ca26db9c766555be26fdff0",
        "e2a721425b95762b0b776fd3e3eb17313d53129c9f34003c99a5196a8c6aacb6d64b51dd98b27c5b59a70bd941a1ba03",
        "00fb744cfc499d997e6d93392d28a767d116dfbc2cb9eb40540d11eb304ad9322386fdc597d55d3d1c67bc54df35479a",
        "fb19ea2cd204dd331efb49c1e172f6bb89fbf58207dcae6c12f8a7598bef1e872c0c35f22b4c29df10f9bb1add3aeb88",
        "7ab5fb38c036b88346f761c42f295dfe0b437dfb4f30a71276ab7d409ce424963f9ebb4f1f47e52b18786f279b5a8722",
        "6f66981dd6d0ad11f49af31055ff69710fda3457c4b7852db2e3936d0778bf879f1734ad3a24ffb1ae9584760b9cb045",
        "2a53ba0962ffe2f605af52830bd211a5488894cc0b052255048711cd198510a9e943bf8b839198455fbd41073005d303",
        "990b88d9b63656d43cfec8ed83748f4b0f0fc5120216794b22a054e5bc58abd8c41096070884393453ce509694afbeab",
        "e0",
    );

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn serve_ffmpeg_player(c0c1: &[u8]) {
        let (mut server, result, reply, _) = server_feed_all(c0c1);
        assert_eq!(result, Ok(false));
        assert_eq!(server.kind(), Some(HandshakeKind::Digest { scheme: 0 }));
        assert_eq!(server.client_version(), Some([9, 0, 124, 2]));
        assert!(
            reply[5] >= 3,
            "ffmpeg only checks digests when S1's version starts at 3 or more"
        );
        let c2 = ffmpeg_client(c0c1, &reply, true).expect("ffmpeg player accepts S1/S2");
        let mut input = BytesMut::from(&c2[..]);
        assert_eq!(server.feed(&mut input, &mut BytesMut::new()), Ok(true));
        assert_eq!(
            server.c2_matched(),
            Some(true),
            "ffmpeg's C2 signature validates"
        );

        // ffmpeg publishing (is_input = 0) skips the checks and echoes S1.
        let (mut server, _, reply, _) = server_feed_all(c0c1);
        let c2 = ffmpeg_client(c0c1, &reply, false).unwrap();
        assert_eq!(
            server.feed(&mut BytesMut::from(&c2[..]), &mut BytesMut::new()),
            Ok(true)
        );
        assert_eq!(server.c2_matched(), Some(true));
    }

    #[test]
    fn captured_ffmpeg_c1_is_served_in_digest_form() {
        let c0c1 = unhex(FFMPEG_5_1_C0C1_HEX);
        assert_eq!(c0c1.len(), 1 + HANDSHAKE_SIZE);
        // Sanity: the capture has ffmpeg's shape.
        assert_eq!(ff_calc_digest_pos(&c0c1[1..], 8, 728, 12), 494);
        serve_ffmpeg_player(&c0c1);
    }

    #[test]
    fn constructed_ffmpeg_c1_is_served_in_digest_form() {
        for seed in 1..20 {
            serve_ffmpeg_player(&ffmpeg_c0c1(seed));
        }
    }

    #[test]
    fn ffmpeg_rejects_a_tampered_reply() {
        // The reference must be able to fail, or the tests above prove nothing.
        let c0c1 = ffmpeg_c0c1(77);
        let (_, _, reply, _) = server_feed_all(&c0c1);
        let mut bad_s2 = reply.to_vec();
        bad_s2[1 + HANDSHAKE_SIZE + 3] ^= 1;
        assert_eq!(
            ffmpeg_client(&c0c1, &bad_s2, true),
            Err("Signature mismatch")
        );
        let mut bad_s1 = reply.to_vec();
        bad_s1[100] ^= 1;
        bad_s1[900] ^= 1;
        assert_eq!(
            ffmpeg_client(&c0c1, &bad_s1, true),
            Err("Server response validating failed")
        );
    }

    #[test]
    fn librtmp_clients_accept_our_server() {
        for (offalg, scheme) in [(0u8, 0u8), (1, 1)] {
            for seed in 1..8 {
                let c0c1 = librtmp_c0c1(offalg, 123_456 + seed as u32, seed);
                let (mut server, _, reply, _) = server_feed_all(&c0c1);
                assert_eq!(server.kind(), Some(HandshakeKind::Digest { scheme }));
                let (c2, warnings) = librtmp_client(&c0c1, &reply, offalg).unwrap();
                assert!(warnings.is_empty(), "{warnings:?}");
                assert_eq!(
                    server.feed(&mut BytesMut::from(&c2[..]), &mut BytesMut::new()),
                    Ok(true)
                );
                assert_eq!(server.c2_matched(), Some(true));
            }
        }
    }

    #[test]
    fn librtmp_plain_client_sees_an_exact_echo() {
        let mut c0c1 = vec![3u8, 0, 0, 1, 0, 0, 0, 0, 0];
        c0c1.extend(fixture_bytes(8, HANDSHAKE_SIZE - 8));
        let (mut server, _, reply, _) = server_feed_all(&c0c1);
        let (c2, warnings) = librtmp_client(&c0c1, &reply, 0).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            server.feed(&mut BytesMut::from(&c2[..]), &mut BytesMut::new()),
            Ok(true)
        );
        assert_eq!(server.c2_matched(), Some(true));
    }

    #[test]
    fn our_client_passes_librtmp_server() {
        for client in [
            ClientHandshake::new(true),
            ClientHandshake::with_digest_scheme(1),
            ClientHandshake::new(false),
        ] {
            let mut client = client;
            let mut c0c1 = BytesMut::new();
            client.start(&mut c0c1);
            let (reply, mut server) = librtmp_server(&c0c1).expect("librtmp verifies our C1");
            let mut input = BytesMut::from(&reply[..]);
            let mut c2 = BytesMut::new();
            assert_eq!(client.feed(&mut input, &mut c2), Ok(true));
            librtmp_server_check_c2(&mut server, &c2).expect("librtmp verifies our C2");
            if server.s1_pos.is_some() {
                // librtmp's S1 digest is always in scheme 0.
                assert_eq!(client.kind(), Some(HandshakeKind::Digest { scheme: 0 }));
                assert_eq!(client.server_version(), Some([3, 5, 1, 1]));
            } else {
                assert_eq!(client.kind(), Some(HandshakeKind::Simple));
                assert!(server.warnings.is_empty(), "{:?}", server.warnings);
            }
        }
    }

    #[test]
    fn our_client_passes_ffmpeg_listen_mode() {
        for digest in [true, false] {
            let mut client = ClientHandshake::new(digest);
            let mut c0c1 = BytesMut::new();
            client.start(&mut c0c1);
            let (reply, s1) = ffmpeg_listen_reply(&c0c1);
            let mut c2 = BytesMut::new();
            assert_eq!(
                client.feed(&mut BytesMut::from(&reply[..]), &mut c2),
                Ok(true)
            );
            assert_eq!(client.kind(), Some(HandshakeKind::Simple));
            assert_eq!(ffmpeg_listen_c2_warnings(&s1, &c2), Vec::<&str>::new());
        }
    }

    #[test]
    fn our_digest_c1_matches_ffmpeg_layout() {
        let mut client = ClientHandshake::new(true);
        let mut out = BytesMut::new();
        client.start(&mut out);
        assert_eq!(&out[..9], &[3, 0, 0, 0, 0, 9, 0, 124, 2]);
        let c1 = &out[1..];
        let pos = ff_calc_digest_pos(c1, 8, 728, 12);
        assert_eq!(
            ff_calc_digest(c1, Some(pos), REF_FP_OPEN),
            c1[pos..pos + 32]
        );
    }

    #[test]
    fn keys_match_the_published_constants() {
        assert_eq!(&PLAYER_KEY[..], &ref_fp_full()[..]);
        assert_eq!(&SERVER_KEY[..], &ref_fms_full()[..]);
        assert_eq!(PLAYER_KEY_NAME.len(), 30);
        assert_eq!(SERVER_KEY_NAME.len(), 36);
    }

    // -----------------------------------------------------------------------------------------
    // Property tests
    // -----------------------------------------------------------------------------------------

    fn arbitrary_stream() -> impl Strategy<Value = Vec<u8>> {
        (
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..5000),
        )
            .prop_map(|(plain, mut v)| {
                if plain && !v.is_empty() {
                    v[0] = 3;
                }
                v
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn server_never_panics(bytes in arbitrary_stream(), chunk in 1usize..2000) {
            let mut server = ServerHandshake::new(1);
            let mut input = BytesMut::new();
            let mut out = BytesMut::new();
            let mut fed = 0;
            for piece in bytes.chunks(chunk) {
                input.extend_from_slice(piece);
                fed += piece.len();
                match server.feed(&mut input, &mut out) {
                    Ok(true) => {
                        prop_assert_eq!(fed - input.len(), 1 + 2 * HANDSHAKE_SIZE);
                    }
                    Ok(false) => prop_assert!(input.len() < 1 + 2 * HANDSHAKE_SIZE),
                    Err(_) => {
                        prop_assert_ne!(bytes[0], 3);
                        break;
                    }
                }
            }
        }

        #[test]
        fn client_never_panics(bytes in arbitrary_stream(), chunk in 1usize..2000, digest in any::<bool>()) {
            let mut client = ClientHandshake::new(digest);
            client.start(&mut BytesMut::new());
            let mut input = BytesMut::new();
            let mut out = BytesMut::new();
            for piece in bytes.chunks(chunk) {
                input.extend_from_slice(piece);
                if client.feed(&mut input, &mut out).is_err() {
                    break;
                }
            }
        }

        #[test]
        fn server_completes_on_any_c1_and_c2(
            c1 in proptest::collection::vec(any::<u8>(), HANDSHAKE_SIZE),
            c2 in proptest::collection::vec(any::<u8>(), HANDSHAKE_SIZE),
            trailer in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let bytes = [&[3u8][..], &c1, &c2, &trailer].concat();
            let (server, result, out, left) = server_feed_all(&bytes);
            prop_assert_eq!(result, Ok(true));
            prop_assert_eq!(out.len(), 1 + 2 * HANDSHAKE_SIZE);
            prop_assert_eq!(&left[..], &trailer[..]);
            prop_assert!(server.kind().is_some());
        }

        #[test]
        fn pairs_complete_under_any_chunking(chunk in 1usize..4000, mode in 0u8..3) {
            let client = match mode {
                0 => ClientHandshake::new(false),
                1 => ClientHandshake::new(true),
                _ => ClientHandshake::with_digest_scheme(1),
            };
            let (server, client) = pair(client, chunk);
            prop_assert_eq!(server.kind(), client.kind());
            prop_assert_eq!(server.c2_matched(), Some(true));
        }
    }
}
