//! Protocol sniffing on accepted sockets: the first byte tells RTMP (0x03; 0x06 RTMPE is refused
//! by the session) from RTMPT (an HTTP method's letter) from TLS (0x16), and inside TLS again.
//! Each is then only a transport: its bytes go to the connection driver or the tunnel.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tracing::{Instrument, info, info_span};

use crate::driver;
use crate::gateway::Core;
use crate::tls::TlsState;
use crate::tunnel::Tunnel;

/// What a listener serves: the RTMP port sniffs every protocol, an HTTP port only RTMPT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Listener {
    Rtmp,
    Http,
}

/// What a sniffed connection may be handed to.
#[derive(Clone)]
pub(crate) struct Endpoints {
    pub core: Arc<Core>,
    pub tunnel: Arc<Tunnel>,
    pub tls: Arc<TlsState>,
}

/// What the first byte of a stream says it speaks.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Proto {
    Rtmp,
    Http,
    Tls,
}

fn classify(first: u8) -> Proto {
    match first {
        0x16 => Proto::Tls,
        // Every HTTP method starts with an upper-case letter (POST from RTMPT clients).
        b'A'..=b'Z' => Proto::Http,
        // 0x03 plain RTMP; anything else (0x06 RTMPE, junk) gets the session's clear refusal.
        _ => Proto::Rtmp,
    }
}

/// Serves one accepted socket with whatever protocol it speaks.
pub(super) async fn dispatch(sock: TcpStream, peer: SocketAddr, kind: Listener, to: Endpoints) {
    let wait = Duration::from_secs(to.core.config().rtmp.handshake_timeout_secs);
    let mut first = [0u8; 1];
    let span = info_span!("accept", %peer);
    let proto = match tokio::time::timeout(wait, sock.peek(&mut first)).await {
        Ok(Ok(1)) => classify(first[0]),
        Ok(Ok(_)) => return, // closed before sending anything
        Ok(Err(e)) => {
            span.in_scope(|| info!(error = %e, "connection failed before its first byte"));
            return;
        }
        Err(_) => {
            span.in_scope(|| info!("no data within {wait:?} of accepting; closing"));
            return;
        }
    };
    match (proto, kind) {
        (Proto::Rtmp, Listener::Rtmp) => driver::serve(sock, peer, "rtmp", to.core).await,
        (Proto::Http, _) => {
            super::http::serve(QuickAck(sock), peer, "rtmpt", to.tunnel, to.core).await
        }
        (Proto::Tls, _) => {
            serve_tls(QuickAck(sock), peer, kind, to, wait)
                .instrument(span)
                .await
        }
        (Proto::Rtmp, Listener::Http) => span.in_scope(|| {
            info!(
                first = first[0],
                "first byte is neither HTTP nor TLS on an RTMPT-only listener; closing (use the RTMP port for rtmp://)"
            )
        }),
    }
}

async fn serve_tls(
    sock: QuickAck,
    peer: SocketAddr,
    kind: Listener,
    to: Endpoints,
    wait: Duration,
) {
    let Some(acceptor) = to.tls.acceptor() else {
        info!(
            "TLS ClientHello received but no certificate is configured (--tls-cert/--tls-key); closing"
        );
        return;
    };
    let mut tls = match tokio::time::timeout(wait, acceptor.accept(sock)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            info!(error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            info!("TLS handshake not completed within {wait:?}");
            return;
        }
    };
    // TLS streams cannot be peeked: read the first plaintext bytes and put them back in front.
    let mut buf = vec![0u8; 4096];
    let n = match tokio::time::timeout(wait, tls.read(&mut buf)).await {
        Ok(Ok(0)) => return,
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            info!(error = %e, "TLS connection failed before its first byte");
            return;
        }
        Err(_) => {
            info!("no data within {wait:?} of the TLS handshake; closing");
            return;
        }
    };
    buf.truncate(n);
    let proto = classify(buf[0]);
    let io = Prefixed {
        prefix: Bytes::from(buf),
        inner: tls,
    };
    match (proto, kind) {
        (Proto::Http, _) => super::http::serve(io, peer, "rtmpts", to.tunnel, to.core).await,
        (Proto::Rtmp, Listener::Rtmp) => driver::serve(io, peer, "rtmps", to.core).await,
        (Proto::Tls, _) | (Proto::Rtmp, Listener::Http) => {
            info!("TLS payload is neither RTMP nor HTTP; closing")
        }
    }
}

/// A TCP stream that acknowledges every read at once. RTMPT clients (ffmpeg) send a request's
/// headers and body in two writes with Nagle on: the body waits for the ACK of the headers,
/// which a delayed ACK holds back 40 ms — per request, i.e. per poll. Linux clears quick-ack
/// mode by itself, so it is re-armed after each read.
pub(super) struct QuickAck(pub TcpStream);

impl QuickAck {
    fn rearm(&self) {
        #[cfg(target_os = "linux")]
        {
            let _ = socket2::SockRef::from(&self.0).set_tcp_quickack(true);
        }
    }
}

impl AsyncRead for QuickAck {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.0).poll_read(cx, buf);
        if r.is_ready() {
            self.rearm();
        }
        r
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// A stream whose first bytes were already read: they are returned again before the rest.
struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.has_remaining() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes() {
        assert_eq!(classify(0x03), Proto::Rtmp);
        assert_eq!(classify(0x06), Proto::Rtmp);
        assert_eq!(classify(b'P'), Proto::Http);
        assert_eq!(classify(b'G'), Proto::Http);
        assert_eq!(classify(0x16), Proto::Tls);
    }

    #[tokio::test]
    async fn prefixed_replays_then_reads_on() {
        let (mut a, b) = tokio::io::duplex(64);
        let mut p = Prefixed {
            prefix: Bytes::from_static(b"PO"),
            inner: b,
        };
        tokio::io::AsyncWriteExt::write_all(&mut a, b"ST /")
            .await
            .unwrap();
        let mut got = [0u8; 6];
        p.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"POST /");
    }
}
