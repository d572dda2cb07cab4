//! A test RTMPT client transport that does what ffmpeg 5.1's `rtmphttp` does not: it goes
//! through an HTTP proxy with a new TCP connection whenever the proxy closed the last one, and
//! repeats a request with the same sequence number after a broken connection or a `502`/`504`.
//! The project's own [`wasmgate::client::RtmpClient`] runs over the byte stream it returns.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio::net::TcpStream;

use super::test_proxy::read_message;

/// Attempts per request before the tunnel gives up.
const ATTEMPTS: u32 = 10;

#[derive(Debug, Default)]
pub struct ClientStats {
    /// Requests answered 200.
    pub requests: AtomicU64,
    /// TCP connections opened to the proxy.
    pub connections: AtomicU64,
    /// Requests sent again with the same sequence number.
    pub repeats: AtomicU64,
}

impl ClientStats {
    pub fn get(v: &AtomicU64) -> u64 {
        v.load(Ordering::SeqCst)
    }
}

struct Http {
    proxy: SocketAddr,
    gateway: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
    stats: Arc<ClientStats>,
}

impl Http {
    /// POSTs `body` to `path` on the gateway through the proxy; the reply body.
    async fn post(&mut self, path: &str, body: &[u8]) -> Result<Vec<u8>, String> {
        let gw = self.gateway;
        let mut req = format!(
            "POST http://{gw}{path} HTTP/1.1\r\nHost: {gw}\r\nContent-Type: application/x-fcs\r\n\
             User-Agent: Shockwave Flash\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                self.stats.repeats.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if self.conn.is_none() {
                let c = TcpStream::connect(self.proxy)
                    .await
                    .map_err(|e| format!("proxy unreachable: {e}"))?;
                let _ = c.set_nodelay(true);
                self.stats.connections.fetch_add(1, Ordering::SeqCst);
                self.conn = Some(BufReader::new(c));
            }
            let Some(conn) = self.conn.as_mut() else {
                continue;
            };
            if let Err(e) = conn.get_mut().write_all(&req).await {
                last = format!("write: {e}");
                self.conn = None;
                continue;
            }
            let reply =
                tokio::time::timeout(Duration::from_secs(10), read_message(conn, true)).await;
            let m = match reply {
                Ok(Ok(Some(m))) => m,
                other => {
                    last = format!("{path}: no reply ({other:?})");
                    self.conn = None;
                    continue;
                }
            };
            if m.closes() {
                self.conn = None;
            }
            match m.status() {
                200 => {
                    self.stats.requests.fetch_add(1, Ordering::SeqCst);
                    return Ok(m.body);
                }
                // The proxy's own failures: the same request again (the gateway answers a
                // repeated sequence number with the reply it already gave).
                502..=504 => last = format!("{path}: {}", m.start),
                _ => {
                    return Err(format!(
                        "{path}: {} {}",
                        m.start,
                        String::from_utf8_lossy(&m.body)
                    ));
                }
            }
        }
        Err(format!("{path}: gave up after {ATTEMPTS} attempts: {last}"))
    }
}

/// Opens an RTMPT session to `gateway` through the plain-HTTP proxy `proxy` and returns the
/// RTMP byte stream (call inside a tokio runtime). The tunnel task ends, sending `/close`, when
/// the stream is dropped; an error on the way ends it too (the stream then reads EOF).
pub fn connect(proxy: SocketAddr, gateway: SocketAddr) -> (DuplexStream, Arc<ClientStats>) {
    let (mine, theirs) = tokio::io::duplex(1 << 20);
    let stats = Arc::new(ClientStats::default());
    let mut http = Http {
        proxy,
        gateway,
        conn: None,
        stats: stats.clone(),
    };
    tokio::spawn(async move {
        if let Err(e) = run(&mut http, theirs).await {
            eprintln!("[test rtmpt client] {e}");
        }
    });
    (mine, stats)
}

async fn run(http: &mut Http, pipe: DuplexStream) -> Result<(), String> {
    let id = http.post("/open/1", &[0]).await?;
    let id = String::from_utf8_lossy(&id).trim().to_string();
    let (mut rd, mut wr) = tokio::io::split(pipe);
    let mut buf = vec![0u8; 64 * 1024];
    let mut seq = 0u64;
    let mut delay = Duration::ZERO;
    loop {
        // Outgoing bytes go in a /send; with none (after a short wait) it is an /idle poll.
        let n = match tokio::time::timeout(delay, rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => n,
            Err(_) => 0,
        };
        let reply = if n > 0 {
            http.post(&format!("/send/{id}/{seq}"), &buf[..n]).await?
        } else {
            http.post(&format!("/idle/{id}/{seq}"), &[0]).await?
        };
        seq += 1;
        let Some((_poll, data)) = reply.split_first() else {
            return Err("empty reply without a polling byte".into());
        };
        if wr.write_all(data).await.is_err() {
            break;
        }
        delay = if data.is_empty() && n == 0 {
            Duration::from_millis(20)
        } else {
            Duration::ZERO
        };
    }
    http.post(&format!("/close/{id}/{seq}"), &[0])
        .await
        .map(|_| ())
}
