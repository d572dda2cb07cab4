//! One connection to an upstream RTMP server (a push target or a pull origin) over the
//! project's sans-IO [`ClientSession`]: connect (TCP or TLS), handshake, `connect` with the
//! relay hop count, then `publish` or `play`.
//!
//! Unlike [`crate::client::RtmpClient`] (a test and load-tool client), every await here is
//! either cancel-safe (one socket read, which a relay `select!`s against its stream ring) or
//! bounded by a timeout (writes), so a dead upstream can never hold a relay task forever.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::Transport;
use crate::config::RelayUrl;
use crate::gateway::HOPS_ARG;
use crate::rtmp::SessionError;
use crate::rtmp::amf::Amf0Value;
use crate::rtmp::client::{ClientConfig, ClientEvent, ClientSession};

/// Events kept while a setup step waits for its answer; an upstream that floods us before
/// `publish`/`play` started loses the excess.
const BACKLOG: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(#[from] SessionError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("connection closed by the upstream")]
    Closed,
    #[error("{0} timed out")]
    Timeout(&'static str),
    #[error("connect rejected: {0}")]
    Rejected(String),
    #[error("{0}")]
    Refused(String),
}

/// What a relay connects with.
#[derive(Clone)]
pub struct Dial {
    pub timeout: Duration,
    pub write_timeout: Duration,
    /// The hop count this connection announces (one more than the local stream's).
    pub hops: u32,
    pub tls: Option<tokio_rustls::TlsConnector>,
}

pub struct Upstream {
    io: Box<dyn Transport>,
    session: ClientSession,
    rbuf: Vec<u8>,
    out: Vec<Bytes>,
    backlog: VecDeque<ClientEvent>,
    write_timeout: Duration,
    /// Bytes written to and read from the socket not yet taken by [`Upstream::take_bytes`].
    bytes_out: u64,
    bytes_in: u64,
}

impl Upstream {
    /// Opens the connection and completes `connect` within `dial.timeout`.
    pub async fn connect(url: &RelayUrl, dial: &Dial) -> Result<Upstream, UpstreamError> {
        tokio::time::timeout(dial.timeout, Self::connect_inner(url, dial))
            .await
            .map_err(|_| UpstreamError::Timeout("connect"))?
    }

    async fn connect_inner(url: &RelayUrl, dial: &Dial) -> Result<Upstream, UpstreamError> {
        let tcp = TcpStream::connect(url.addr()).await?;
        tcp.set_nodelay(true)?;
        let io: Box<dyn Transport> = if url.tls {
            let connector = dial
                .tls
                .clone()
                .ok_or_else(|| UpstreamError::Tls("no CA certificates loaded".into()))?;
            let host = url.host.trim_start_matches('[').trim_end_matches(']');
            let name = rustls_pki_types::ServerName::try_from(host.to_owned())
                .map_err(|e| UpstreamError::Tls(format!("{host:?}: {e}")))?;
            Box::new(connector.connect(name, tcp).await?)
        } else {
            Box::new(tcp)
        };
        let scheme = if url.tls { "rtmps" } else { "rtmp" };
        let tc_url = format!("{scheme}://{}/{}", url.addr(), url.app);
        let mut cfg = ClientConfig::new(url.app.clone(), tc_url);
        cfg.flash_ver = format!(
            "FMLE/3.0 (compatible; wasmgate {})",
            env!("CARGO_PKG_VERSION")
        );
        cfg.connect_args = vec![Amf0Value::object([(
            HOPS_ARG,
            Amf0Value::Number(f64::from(dial.hops)),
        )])];
        let mut up = Upstream {
            io,
            session: ClientSession::new(cfg),
            rbuf: vec![0; 64 * 1024],
            out: Vec::new(),
            backlog: VecDeque::new(),
            write_timeout: dial.write_timeout,
            bytes_out: 0,
            bytes_in: 0,
        };
        up.flush().await?;
        loop {
            match up.next_event().await? {
                ClientEvent::Connected { .. } => return Ok(up),
                ClientEvent::ConnectRejected { info } => {
                    let desc = info
                        .get("description")
                        .and_then(|v| v.as_str())
                        .or_else(|| info.get("code").and_then(|v| v.as_str()))
                        .unwrap_or("")
                        .to_owned();
                    return Err(UpstreamError::Rejected(desc));
                }
                _ => {}
            }
        }
    }

    /// (written, read) bytes since the last call, for the relay's counters.
    pub fn take_bytes(&mut self) -> (u64, u64) {
        (
            std::mem::take(&mut self.bytes_out),
            std::mem::take(&mut self.bytes_in),
        )
    }

    pub fn session(&mut self) -> &mut ClientSession {
        &mut self.session
    }

    /// Writes what the session queued, within the write timeout.
    pub async fn flush(&mut self) -> Result<(), UpstreamError> {
        self.session.drain_transmit(&mut self.out);
        if self.out.is_empty() {
            return Ok(());
        }
        let io = &mut self.io;
        let out = &mut self.out;
        let mut n = 0u64;
        let write = async {
            for b in out.drain(..) {
                n += b.len() as u64;
                io.write_all(&b).await?;
            }
            io.flush().await
        };
        tokio::time::timeout(self.write_timeout, write)
            .await
            .map_err(|_| UpstreamError::Timeout("write"))??;
        self.bytes_out += n;
        Ok(())
    }

    /// Reads once from the socket and feeds the session. Cancel-safe: nothing is lost when
    /// the future is dropped before it completes.
    pub async fn read(&mut self) -> Result<(), UpstreamError> {
        let n = self.io.read(&mut self.rbuf).await?;
        if n == 0 {
            return Err(UpstreamError::Closed);
        }
        self.bytes_in += n as u64;
        self.session.handle_input(&self.rbuf[..n])?;
        Ok(())
    }

    /// The next event: kept ones first, then the session's, then what a read brings.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.backlog
            .pop_front()
            .or_else(|| self.session.poll_event())
    }

    async fn next_event(&mut self) -> Result<ClientEvent, UpstreamError> {
        loop {
            if let Some(ev) = self.poll_event() {
                return Ok(ev);
            }
            self.flush().await?;
            self.read().await?;
        }
    }

    /// Waits for the event `pick` accepts (`Some(Ok)`) or fails on (`Some(Err)`), keeping
    /// the others (up to [`BACKLOG`]) for [`Upstream::poll_event`].
    async fn wait<T>(
        &mut self,
        what: &'static str,
        limit: Duration,
        mut pick: impl FnMut(&ClientEvent) -> Option<Result<T, UpstreamError>>,
    ) -> Result<T, UpstreamError> {
        let mut kept = VecDeque::new();
        let found = tokio::time::timeout(limit, async {
            loop {
                let ev = self.next_event().await?;
                if let Some(r) = pick(&ev) {
                    return r;
                }
                if kept.len() < BACKLOG {
                    kept.push_back(ev);
                }
            }
        })
        .await
        .map_err(|_| UpstreamError::Timeout(what));
        kept.append(&mut self.backlog);
        self.backlog = kept;
        found?
    }

    async fn create_stream(&mut self, limit: Duration) -> Result<u32, UpstreamError> {
        let txn = self.session.create_stream();
        self.flush().await?;
        self.wait("createStream", limit, |ev| match ev {
            ClientEvent::Result {
                transaction_id,
                values,
            } if *transaction_id == txn => Some(
                values
                    .first()
                    .and_then(|v| v.as_f64())
                    .map(|id| id as u32)
                    .ok_or_else(|| UpstreamError::Refused("createStream: no stream id".into())),
            ),
            ClientEvent::Error { transaction_id, .. } if *transaction_id == txn => {
                Some(Err(UpstreamError::Refused("createStream refused".into())))
            }
            _ => None,
        })
        .await
    }

    /// `releaseStream`/`FCPublish` (what OBS and ffmpeg send, and some ingests want), then
    /// `publish(name, "live")` until `NetStream.Publish.Start`. Returns the stream id.
    pub async fn publish(&mut self, name: &str, limit: Duration) -> Result<u32, UpstreamError> {
        self.session
            .call("releaseStream", &[Amf0Value::string(name)]);
        self.session.call("FCPublish", &[Amf0Value::string(name)]);
        let id = self.create_stream(limit).await?;
        self.session.publish(id, name, "live");
        self.flush().await?;
        self.wait("publish", limit, |ev| {
            status_of(ev).and_then(|(code, desc)| match code {
                "NetStream.Publish.Start" => Some(Ok(id)),
                c if c.contains("Failed")
                    || c.contains("BadName")
                    || c.contains("Rejected")
                    || c.contains("Denied") =>
                {
                    Some(Err(UpstreamError::Refused(format!("{c}: {desc}"))))
                }
                _ => None,
            })
        })
        .await
    }

    /// `play(name, -1000)` (live only) until `NetStream.Play.Start`. Returns the stream id.
    pub async fn play(&mut self, name: &str, limit: Duration) -> Result<u32, UpstreamError> {
        let id = self.create_stream(limit).await?;
        self.session.play(id, name, -1000.0);
        self.flush().await?;
        self.wait("play", limit, |ev| {
            status_of(ev).and_then(|(code, desc)| match code {
                "NetStream.Play.Start" => Some(Ok(id)),
                c if c.contains("Failed")
                    || c.contains("StreamNotFound")
                    || c.contains("Rejected")
                    || c.contains("Denied") =>
                {
                    Some(Err(UpstreamError::Refused(format!("{c}: {desc}"))))
                }
                _ => None,
            })
        })
        .await
    }
}

/// `(code, description)` of an `onStatus`.
pub fn status_of(ev: &ClientEvent) -> Option<(&str, &str)> {
    match ev {
        ClientEvent::Status { info, .. } => Some((
            info.get("code").and_then(|v| v.as_str()).unwrap_or(""),
            info.get("description")
                .and_then(|v| v.as_str())
                .unwrap_or(""),
        )),
        _ => None,
    }
}

/// The exponential backoff between reconnects: doubles per failure up to a cap, and starts
/// over after a connection that stayed up.
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            next: initial,
        }
    }

    /// The wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// A TLS connector for the config's CA file, when any URL is `rtmps://`; logged once.
pub fn tls_for(ca_file: Option<&std::path::Path>) -> Option<tokio_rustls::TlsConnector> {
    match crate::tls::client_connector(ca_file) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "rtmps:// relays cannot verify servers");
            None
        }
    }
}
