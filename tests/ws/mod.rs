#![allow(dead_code)]
//! A WebSocket-FLV test client (tokio-tungstenite, rustls for `wss://`): reads binary messages
//! for a while and splits them into FLV tags. Include with `mod ws;`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// What a WebSocket-FLV viewer got: the binary messages, and the close frame if the server
/// closed the socket before `secs` were up.
pub struct WsRead {
    pub messages: Vec<Vec<u8>>,
    pub close: Option<String>,
}

/// Reads `url` as a WebSocket client (tokio-tungstenite) for at most `secs`; `Err` is the
/// refused handshake's status and body. `on_open` runs once the socket is open.
pub fn ws_read(url: &str, secs: f64, on_open: impl FnOnce()) -> Result<WsRead, (u16, String)> {
    use tokio_tungstenite::tungstenite::Error;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (ws, _) = match tokio_tungstenite::connect_async(url).await {
            Ok(ok) => ok,
            Err(Error::Http(r)) => {
                let body = r.body().clone().unwrap_or_default();
                return Err((
                    r.status().as_u16(),
                    String::from_utf8_lossy(&body).into_owned(),
                ));
            }
            Err(e) => panic!("WebSocket connect to {url} failed: {e}"),
        };
        on_open();
        Ok(read_messages(ws, secs).await)
    })
}

/// Reads `wss://localhost/<path>` on `addr` for `secs`, trusting only the test certificate.
pub fn wss_read(addr: SocketAddr, path: &str, cert: &Path, secs: f64) -> WsRead {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(cert).unwrap())
            .unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .expect("TLS handshake with the gateway");
        let url = format!("wss://localhost:{}/{path}", addr.port());
        let (ws, _) = tokio_tungstenite::client_async(url, tls)
            .await
            .expect("WebSocket upgrade over TLS");
        read_messages(ws, secs).await
    })
}

/// Binary messages until `secs` pass or the server closes.
pub async fn read_messages<S>(mut ws: tokio_tungstenite::WebSocketStream<S>, secs: f64) -> WsRead
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut read = WsRead {
        messages: Vec::new(),
        close: None,
    };
    let deadline = tokio::time::sleep(Duration::from_secs_f64(secs));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            msg = ws.next() => match msg {
                Some(Ok(Message::Binary(b))) => read.messages.push(b.to_vec()),
                Some(Ok(Message::Close(c))) => {
                    read.close = Some(c.map(|c| c.reason.to_string()).unwrap_or_default());
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("WebSocket read failed: {e}"),
                None => {
                    read.close = Some(String::new());
                    break;
                }
            },
        }
    }
    read
}

/// Splits FLV tag messages into (type, timestamp) and checks each message is whole tags.
pub fn tag_heads(messages: &[Vec<u8>]) -> Vec<(u8, u32)> {
    let mut heads = Vec::new();
    for m in messages {
        let mut rest = &m[..];
        while !rest.is_empty() {
            assert!(rest.len() >= 15, "a message splits a tag header");
            let size = u32::from_be_bytes([0, rest[1], rest[2], rest[3]]) as usize;
            let ts = u32::from_be_bytes([rest[7], rest[4], rest[5], rest[6]]);
            assert!(rest.len() >= 11 + size + 4, "a message splits a tag body");
            heads.push((rest[0], ts));
            rest = &rest[11 + size + 4..];
        }
    }
    heads
}
