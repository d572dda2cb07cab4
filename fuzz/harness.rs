//! Fuzz harness bodies shared by the cargo-fuzz targets in `fuzz_targets/` and the regression
//! test `tests/fuzz_regressions.rs`, so a crash file replays through exactly the fuzzed code.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use wasmgate::config::Config;
use wasmgate::rtmp::amf::{
    AmfLimits, decode_amf0, decode_amf0_all, decode_amf3, decode_amf3_message, encode_amf0,
    encode_amf3,
};
use wasmgate::rtmp::chunk::{ChunkDecoder, ChunkLimits, MAX_CHUNK_HEADER_LEN};
use wasmgate::rtmp::handshake::{HANDSHAKE_SIZE, ServerHandshake};
use wasmgate::rtmp::message::{ControlMessage, msg_type};
use wasmgate::rtmp::{Event, Session, SessionConfig};

/// Splits `data` into pieces whose lengths come from its first four bytes (cycled; 0 means
/// "all the rest"), so the fuzzer explores every read boundary, not only one big read.
fn pieces(data: &[u8]) -> Vec<&[u8]> {
    if data.len() < 4 {
        return vec![data];
    }
    let (sizes, mut rest) = data.split_at(4);
    let mut out = Vec::new();
    let mut i = 0usize;
    while !rest.is_empty() {
        let n = match sizes[i % 4] {
            0 => rest.len(),
            s @ 1..=127 => usize::from(s),
            s => usize::from(s - 127) * 64,
        };
        let (piece, tail) = rest.split_at(n.min(rest.len()));
        out.push(piece);
        rest = tail;
        i += 1;
    }
    out
}

/// Server handshake fed arbitrary bytes in arbitrary pieces: never panics, answers at most
/// S0+S1+S2 once, and leaves every byte after C2 in the input buffer.
pub fn handshake(data: &[u8]) {
    let mut hs = ServerHandshake::new(0);
    let mut input = BytesMut::new();
    let mut out = BytesMut::new();
    let mut fed = 0usize;
    for piece in pieces(data) {
        input.extend_from_slice(piece);
        fed += piece.len();
        match hs.feed(&mut input, &mut out) {
            Ok(true) => {
                assert!(hs.is_done());
                assert_eq!(out.len(), 1 + 2 * HANDSHAKE_SIZE);
                assert_eq!(input.len(), fed - (1 + 2 * HANDSHAKE_SIZE));
            }
            Ok(false) => assert!(out.is_empty() || out.len() == 1 + 2 * HANDSHAKE_SIZE),
            Err(first) => {
                // A failed handshake stays failed with the same error.
                assert_eq!(hs.feed(&mut input, &mut out).unwrap_err(), first);
                return;
            }
        }
    }
}

/// Limits small enough that the fuzzer reaches every limit path.
fn small_chunk_limits() -> ChunkLimits {
    ChunkLimits {
        max_message_size: 64 * 1024,
        max_chunk_size: 1 << 20,
        max_chunk_streams: 8,
    }
}

/// The chunk decoder with Set Chunk Size and Abort applied between messages, as the session
/// applies them: never panics, never holds more than its limits allow, and never keeps more
/// than one chunk of unconsumed input around.
pub fn chunk(data: &[u8]) {
    let limits = small_chunk_limits();
    let mut dec = ChunkDecoder::new(limits);
    let mut buf = BytesMut::new();
    for piece in pieces(data) {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(msg)) => {
                    assert!(msg.payload.len() <= limits.max_message_size as usize);
                    match ControlMessage::parse(msg.header.type_id, &msg.payload) {
                        Ok(Some(ControlMessage::SetChunkSize(size))) => {
                            if dec.set_chunk_size(size).is_err() {
                                return;
                            }
                        }
                        Ok(Some(ControlMessage::Abort(csid))) => dec.abort(csid),
                        Ok(_) => {}
                        Err(_) if msg.header.type_id <= msg_type::SET_PEER_BANDWIDTH => return,
                        Err(_) => {}
                    }
                }
                Ok(None) => {
                    // "Need more" means less than one chunk is buffered.
                    assert!(buf.len() < dec.chunk_size() as usize + MAX_CHUNK_HEADER_LEN);
                    break;
                }
                Err(_) => return,
            }
            assert!(dec.chunk_streams() <= limits.max_chunk_streams);
            assert!(
                dec.pending_bytes() <= limits.max_message_size as usize * limits.max_chunk_streams
            );
        }
    }
}

fn small_amf_limits() -> AmfLimits {
    AmfLimits {
        max_depth: 16,
        max_collection_len: 1024,
        max_nodes: 20_000,
        max_string_len: 64 * 1024,
    }
}

/// AMF0: decoding never panics; what decodes re-encodes to bytes that decode to a value that
/// encodes to the same bytes (byte comparison, so NaN payloads compare fine).
pub fn amf0(data: &[u8]) {
    let limits = small_amf_limits();
    if let Ok((value, used)) = decode_amf0(data, &limits) {
        assert!(used <= data.len());
        let mut once = Vec::new();
        encode_amf0(&value, &mut once);
        let (again, used2) =
            decode_amf0(&once, &AmfLimits::default()).expect("re-encoded AMF0 value decodes");
        assert_eq!(used2, once.len());
        let mut twice = Vec::new();
        encode_amf0(&again, &mut twice);
        assert_eq!(once, twice);
    }
    // The message-level entry points the session uses.
    let _ = decode_amf0_all(data, &limits);
    let _ = decode_amf3_message(data, &limits);
}

/// AMF3: as AMF0 (references, traits, externalizables and all).
pub fn amf3(data: &[u8]) {
    let limits = small_amf_limits();
    if let Ok((value, used)) = decode_amf3(data, &limits) {
        assert!(used <= data.len());
        let mut once = Vec::new();
        encode_amf3(&value, &mut once);
        let (again, used2) =
            decode_amf3(&once, &AmfLimits::default()).expect("re-encoded AMF3 value decodes");
        assert_eq!(used2, once.len());
        let mut twice = Vec::new();
        encode_amf3(&again, &mut twice);
        assert_eq!(once, twice);
    }
}

/// A plain C0+C1 and C2: what every fuzzed session starts with, so the fuzzer spends its time
/// on chunks and commands rather than on the 3073 handshake bytes.
pub fn handshake_prefix() -> Vec<u8> {
    let mut v = vec![3u8];
    v.extend_from_slice(&[0u8; HANDSHAKE_SIZE]);
    v.extend_from_slice(&[0u8; HANDSHAKE_SIZE]);
    v
}

/// The whole server session after a valid handshake, fed arbitrary chunk bytes in arbitrary
/// pieces. The harness plays a permissive app (accepts every connect, publish and play) so the
/// fuzzer reaches the connected states; time advances a little per piece to exercise pings.
pub fn session(data: &[u8]) {
    let cfg = SessionConfig {
        chunk_limits: small_chunk_limits(),
        amf_limits: small_amf_limits(),
        max_partial_bytes: 256 * 1024,
        ..SessionConfig::default()
    };
    let mut now = Instant::now();
    let mut s = Session::new(cfg, now);
    let mut out = Vec::new();
    s.handle_input(&handshake_prefix(), now)
        .expect("valid handshake");
    for piece in pieces(data) {
        now += Duration::from_millis(700);
        if s.handle_input(piece, now).is_err() {
            s.drain_transmit(&mut out);
            return;
        }
        while let Some(ev) = s.poll_event() {
            match ev {
                Event::Connect(_) => s.accept_connect(),
                Event::Publish { stream_id, .. } => s.publish_started(stream_id),
                Event::Play {
                    stream_id,
                    name,
                    reset,
                    ..
                } => {
                    s.play_started(stream_id, &name.name, reset);
                }
                Event::Call(cmd) => s.send_result(cmd.transaction_id, &[]),
                _ => {}
            }
        }
        if s.handle_timeout(now).is_err() {
            return;
        }
        s.drain_transmit(&mut out);
        out.clear();
    }
}

/// Config parsing: never panics; a config that parses and validates serializes back to TOML
/// that parses to the same config.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = Config::from_toml(text) {
        let back = toml::to_string(&cfg).expect("a valid config serializes");
        let again = Config::from_toml(&back).expect("a serialized config parses");
        assert_eq!(cfg, again);
    }
}
