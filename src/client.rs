//! The project's own RTMP client over TCP: a thin tokio driver around the sans-IO
//! [`ClientSession`], used by tests (calls, server-to-client calls) and the load tool.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::rtmp::SessionError;
use crate::rtmp::amf::Amf0Value;
use crate::rtmp::client::{ClientConfig, ClientEvent, ClientSession};
use crate::rtmp::shared_object::{SoEncoding, SoMessage};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bad RTMP URL {0:?}: expected rtmp://host[:port]/app[/instance][/stream]")]
    BadUrl(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(#[from] SessionError),
    #[error("connection closed by the server")]
    Closed,
    #[error("connect rejected: {0}")]
    Rejected(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("unexpected reply: {0}")]
    Unexpected(String),
}

/// The parts of an `rtmp://` URL, split the way ffmpeg and librtmp split them: with three or
/// more path segments the first two are `app/instance`, otherwise the first is the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpUrl {
    /// `host:port` (port 1935 when absent).
    pub addr: String,
    pub app: String,
    pub tc_url: String,
    /// Stream name with its query, if the URL has one.
    pub stream: Option<String>,
}

impl RtmpUrl {
    pub fn parse(url: &str) -> Result<RtmpUrl, ClientError> {
        let bad = || ClientError::BadUrl(url.to_owned());
        let rest = url.strip_prefix("rtmp://").ok_or_else(bad)?;
        let (host, path) = rest.split_once('/').ok_or_else(bad)?;
        if host.is_empty() || path.is_empty() {
            return Err(bad());
        }
        let addr = if host.contains(':') && !host.ends_with(']') {
            host.to_owned()
        } else {
            format!("{host}:1935")
        };
        let segments: Vec<&str> = path.splitn(3, '/').collect();
        let (app, stream) = match segments.as_slice() {
            [app] => (app.to_string(), None),
            [app, stream] => (app.to_string(), Some(stream.to_string())),
            [app, inst, stream] => (format!("{app}/{inst}"), Some(stream.to_string())),
            _ => return Err(bad()),
        };
        Ok(RtmpUrl {
            tc_url: format!("rtmp://{host}/{app}"),
            addr,
            app,
            stream: stream.filter(|s| !s.is_empty()),
        })
    }
}

/// A byte stream an [`RtmpClient`] can speak over: TCP, or TLS over TCP for `rtmps://`.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// A connected RTMP client.
pub struct RtmpClient {
    socket: Box<dyn Transport>,
    session: ClientSession,
    rbuf: Vec<u8>,
    out: Vec<Bytes>,
    /// Events read while waiting for something else, handed out by `next_event` first.
    backlog: std::collections::VecDeque<ClientEvent>,
}

impl RtmpClient {
    /// Connects to `url` (`rtmp://host[:port]/app[/instance]`), performs the handshake and
    /// `connect` with `args` as extra connect arguments; fails with the server's description
    /// when the connect is rejected.
    pub async fn connect(url: &str, args: Vec<Amf0Value>) -> Result<RtmpClient, ClientError> {
        let u = RtmpUrl::parse(url)?;
        let mut cfg = ClientConfig::new(u.app, u.tc_url);
        cfg.connect_args = args;
        Self::connect_with(&u.addr, cfg).await
    }

    pub async fn connect_with(addr: &str, cfg: ClientConfig) -> Result<RtmpClient, ClientError> {
        let socket = TcpStream::connect(addr).await?;
        socket.set_nodelay(true)?;
        Self::connect_over(socket, cfg).await
    }

    /// Handshake and `connect` over a stream the caller opened (a TLS stream for RTMPS).
    pub async fn connect_over(
        socket: impl Transport + 'static,
        cfg: ClientConfig,
    ) -> Result<RtmpClient, ClientError> {
        let mut client = RtmpClient {
            socket: Box::new(socket),
            session: ClientSession::new(cfg),
            rbuf: vec![0; 64 * 1024],
            out: Vec::new(),
            backlog: Default::default(),
        };
        loop {
            match client.read_event().await? {
                ClientEvent::Connected { .. } => return Ok(client),
                ClientEvent::ConnectRejected { info } => {
                    let desc = info
                        .get("description")
                        .and_then(|v| v.as_str())
                        .unwrap_or("")
                        .to_owned();
                    return Err(ClientError::Rejected(desc));
                }
                other => client.backlog.push_back(other),
            }
        }
    }

    /// The sans-IO session, for requests not wrapped here; call [`RtmpClient::flush`] after.
    pub fn session(&mut self) -> &mut ClientSession {
        &mut self.session
    }

    /// Writes everything the session has queued.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        self.session.drain_transmit(&mut self.out);
        for b in self.out.drain(..) {
            self.socket.write_all(&b).await?;
        }
        Ok(())
    }

    /// The next event from the server.
    pub async fn next_event(&mut self) -> Result<ClientEvent, ClientError> {
        if let Some(ev) = self.backlog.pop_front() {
            return Ok(ev);
        }
        self.read_event().await
    }

    /// The next event within `limit`.
    pub async fn next_event_timeout(
        &mut self,
        limit: Duration,
    ) -> Result<ClientEvent, ClientError> {
        tokio::time::timeout(limit, self.next_event())
            .await
            .map_err(|_| ClientError::Timeout(limit))?
    }

    async fn read_event(&mut self) -> Result<ClientEvent, ClientError> {
        loop {
            self.flush().await?;
            if let Some(ev) = self.session.poll_event() {
                return Ok(ev);
            }
            let n = self.socket.read(&mut self.rbuf).await?;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            self.session.handle_input(&self.rbuf[..n])?;
        }
    }

    /// Calls a server method and waits for its `_result` (Ok) or `_error` (Err with the
    /// values); other events that arrive meanwhile are kept for `next_event`.
    pub async fn call(
        &mut self,
        name: &str,
        args: &[Amf0Value],
    ) -> Result<Result<Vec<Amf0Value>, Vec<Amf0Value>>, ClientError> {
        let txn = self.session.call(name, args);
        self.flush().await?;
        loop {
            match self.read_event().await? {
                ClientEvent::Result {
                    transaction_id,
                    values,
                } if transaction_id == txn => return Ok(Ok(values)),
                ClientEvent::Error {
                    transaction_id,
                    values,
                } if transaction_id == txn => return Ok(Err(values)),
                other => self.backlog.push_back(other),
            }
        }
    }

    /// `createStream`, returning the new stream id.
    pub async fn create_stream(&mut self) -> Result<u32, ClientError> {
        match self.call("createStream", &[]).await? {
            Ok(values) => values
                .first()
                .and_then(|v| v.as_f64())
                .map(|id| id as u32)
                .ok_or_else(|| ClientError::Unexpected(format!("createStream result {values:?}"))),
            Err(values) => Err(ClientError::Unexpected(format!(
                "createStream failed: {values:?}"
            ))),
        }
    }

    /// `createStream` and `play(name, start)`, then waits up to `limit` for
    /// `NetStream.Play.Start`. Returns the stream id.
    pub async fn start_play(
        &mut self,
        name: &str,
        start: f64,
        limit: Duration,
    ) -> Result<u32, ClientError> {
        let id = self.create_stream().await?;
        self.session().play(id, name, start);
        self.flush().await?;
        self.wait_status(limit, |c| c == "NetStream.Play.Start")
            .await?;
        Ok(id)
    }

    /// `createStream` and a `live` `publish(name)`, then waits up to `limit` for
    /// `NetStream.Publish.Start`. Returns the stream id.
    pub async fn start_publish(&mut self, name: &str, limit: Duration) -> Result<u32, ClientError> {
        let id = self.create_stream().await?;
        self.session().publish(id, name, "live");
        self.flush().await?;
        self.wait_status(limit, |c| c == "NetStream.Publish.Start")
            .await?;
        Ok(id)
    }

    /// Sends one remote shared object message and flushes it.
    pub async fn send_shared_object(
        &mut self,
        message: &SoMessage,
        encoding: SoEncoding,
    ) -> Result<(), ClientError> {
        self.session.send_shared_object(message, encoding);
        self.flush().await
    }

    /// Waits up to `limit` for the next shared object message, keeping other events.
    pub async fn next_shared_object(
        &mut self,
        limit: Duration,
    ) -> Result<(SoEncoding, SoMessage), ClientError> {
        let wait = async {
            let mut kept = Vec::new();
            let found = loop {
                let ev = match self.backlog.pop_front() {
                    Some(ev) => ev,
                    None => self.read_event().await?,
                };
                match ev {
                    ClientEvent::SharedObject { encoding, message } => break (encoding, message),
                    other => kept.push(other),
                }
            };
            for ev in kept.into_iter().rev() {
                self.backlog.push_front(ev);
            }
            Ok::<_, ClientError>(found)
        };
        tokio::time::timeout(limit, wait)
            .await
            .map_err(|_| ClientError::Timeout(limit))?
    }

    /// Waits for an `onStatus` whose code satisfies `pred`, keeping other events.
    pub async fn wait_status(
        &mut self,
        limit: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Result<Amf0Value, ClientError> {
        let wait = async {
            let mut kept = Vec::new();
            let found = loop {
                let ev = match self.backlog.pop_front() {
                    Some(ev) => ev,
                    None => self.read_event().await?,
                };
                if let ClientEvent::Status { info, .. } = &ev
                    && pred(info.get("code").and_then(|v| v.as_str()).unwrap_or(""))
                {
                    break info.clone();
                }
                kept.push(ev);
            };
            for ev in kept.into_iter().rev() {
                self.backlog.push_front(ev);
            }
            Ok::<_, ClientError>(found)
        };
        tokio::time::timeout(limit, wait)
            .await
            .map_err(|_| ClientError::Timeout(limit))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_forms() {
        let u = RtmpUrl::parse("rtmp://127.0.0.1:1936/live/key").unwrap();
        assert_eq!(
            (u.addr.as_str(), u.app.as_str()),
            ("127.0.0.1:1936", "live")
        );
        assert_eq!(u.stream.as_deref(), Some("key"));
        assert_eq!(u.tc_url, "rtmp://127.0.0.1:1936/live");
        let u = RtmpUrl::parse("rtmp://h/app/inst/stream?t=1").unwrap();
        assert_eq!((u.addr.as_str(), u.app.as_str()), ("h:1935", "app/inst"));
        assert_eq!(u.stream.as_deref(), Some("stream?t=1"));
        let u = RtmpUrl::parse("rtmp://h/chat").unwrap();
        assert_eq!(u.stream, None);
        assert!(RtmpUrl::parse("http://h/a").is_err());
        assert!(RtmpUrl::parse("rtmp://h").is_err());
    }
}
