//! WebSocket-FLV: the HTTP-FLV path upgraded to a WebSocket, each FLV tag one binary message,
//! for pages behind proxies that buffer chunked responses (mpegts.js's `ws://` loader).
//!
//! The upgrade handshake is checked here and answered by hyper (`101`), so a refusal is an
//! ordinary HTTP status with its reason; the frames are tokio-tungstenite's, a maintained
//! RFC 6455 codec used without its handshake (hyper already owns the HTTP side). Client
//! messages are read only to answer pings and see a close, and are capped at
//! [`MAX_CLIENT_MESSAGE`].

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::header::{
    CONNECTION, HeaderMap, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use hyper::upgrade::OnUpgrade;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::debug;

use super::body::{Tags, WebBody};
use super::gate::Refused;

/// The transport label of WebSocket-FLV viewers (client table, metrics, app hooks).
pub const TRANSPORT: &str = "ws-flv";
/// Largest message or frame a viewer may send (it has nothing to say beyond pings and close).
pub const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Most bytes tungstenite may hold unwritten: one large keyframe tag past its write buffer.
const MAX_WRITE_BUFFER: usize = 32 * 1024 * 1024;

/// True when the request asks for a WebSocket (`Upgrade: websocket`); [`accept_key`] then
/// checks the rest of the handshake.
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
        })
}

/// The `Sec-WebSocket-Accept` value for a valid RFC 6455 upgrade request, or why it is not one.
pub fn accept_key(headers: &HeaderMap) -> Result<String, Refused> {
    let bad = |why: &str| (StatusCode::BAD_REQUEST, why.to_owned());
    let has_token = |name, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(CONNECTION, "upgrade") {
        return Err(bad("WebSocket upgrade without `Connection: Upgrade`"));
    }
    if headers.get(SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return Err(bad("WebSocket upgrade needs `Sec-WebSocket-Version: 13`"));
    }
    let key = headers
        .get(SEC_WEBSOCKET_KEY)
        .map(|v| v.as_bytes())
        .ok_or_else(|| bad("WebSocket upgrade without `Sec-WebSocket-Key`"))?;
    // The key is 16 random bytes in base64: 24 characters.
    if key.len() != 24 {
        return Err(bad("`Sec-WebSocket-Key` is not 16 bytes in base64"));
    }
    Ok(derive_accept_key(key))
}

/// The `101 Switching Protocols` reply that completes the handshake.
pub fn switching(accept: &str) -> Response<WebBody> {
    let mut r = Response::new(WebBody::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(accept) {
        h.insert(SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}

/// Moves the viewer's batches onto the upgraded connection until either side ends: each tag
/// is one binary message, a batch is flushed once. Dropping `rx` tells the viewer task.
pub async fn forward(upgrade: OnUpgrade, mut rx: mpsc::Receiver<Tags>, write_timeout: Duration) {
    let io = match upgrade.await {
        Ok(u) => TokioIo::new(u),
        Err(e) => {
            debug!(error = %e, "WebSocket upgrade never completed");
            return;
        }
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_CLIENT_MESSAGE))
        .max_frame_size(Some(MAX_CLIENT_MESSAGE))
        .max_write_buffer_size(MAX_WRITE_BUFFER);
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    loop {
        tokio::select! {
            batch = rx.recv() => {
                let Some(batch) = batch else {
                    // The viewer task ended (publisher left, kick, app): say so and close.
                    let close = CloseFrame { code: CloseCode::Away, reason: "stream ended".into() };
                    let _ = tokio::time::timeout(write_timeout, ws.send(Message::Close(Some(close)))).await;
                    return;
                };
                match tokio::time::timeout(write_timeout, send_batch(&mut ws, batch)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        debug!(error = %e, "WebSocket write failed");
                        return;
                    }
                    Err(_) => {
                        debug!(?write_timeout, "WebSocket write stalled");
                        return;
                    }
                }
            }
            msg = ws.next() => match msg {
                // Pings are answered by tungstenite with the next write or flush.
                Some(Ok(Message::Close(_))) | None => return,
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    debug!(error = %e, "WebSocket viewer sent something unreadable");
                    return;
                }
            }
        }
    }
}

async fn send_batch<S>(ws: &mut WebSocketStream<S>, batch: Tags) -> Result<(), tungstenite::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    for tag in batch.into_parts() {
        ws.feed(Message::Binary(tag)).await?;
    }
    ws.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn a_valid_handshake_gets_the_rfc_6455_accept_key() {
        // The example in RFC 6455 section 1.3.
        let h = headers(&[
            ("upgrade", "websocket"),
            ("connection", "keep-alive, Upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]);
        assert!(wants_upgrade(&h));
        assert_eq!(accept_key(&h).unwrap(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn incomplete_handshakes_are_refused_with_their_reason() {
        for (pairs, reason) in [
            (
                &[("upgrade", "websocket"), ("sec-websocket-version", "13")][..],
                "Connection: Upgrade",
            ),
            (
                &[("upgrade", "websocket"), ("connection", "upgrade")][..],
                "Version: 13",
            ),
            (
                &[
                    ("upgrade", "websocket"),
                    ("connection", "upgrade"),
                    ("sec-websocket-version", "13"),
                ][..],
                "without `Sec-WebSocket-Key`",
            ),
            (
                &[
                    ("upgrade", "websocket"),
                    ("connection", "upgrade"),
                    ("sec-websocket-version", "13"),
                    ("sec-websocket-key", "short"),
                ][..],
                "16 bytes",
            ),
        ] {
            let (status, why) = accept_key(&headers(pairs)).unwrap_err();
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(why.contains(reason), "{why} lacks {reason}");
        }
        assert!(!wants_upgrade(&headers(&[("upgrade", "h2c")])));
    }
}
