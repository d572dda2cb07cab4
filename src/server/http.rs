//! One HTTP connection on an HTTP listener or the sniffed RTMP port: hyper's HTTP/1.1 server,
//! each request routed to browser delivery (`web`, `…/stream.flv`, plain or upgraded to a
//! WebSocket) or to the RTMPT tunnel (everything else). Both are only consumers of requests; neither knows the other.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{Instrument, debug, info_span};

use crate::config::nets::{NetList, effective_client, normalise};
use crate::gateway::Core;
use crate::tunnel::{self, Tunnel};
use crate::web::{self, WebBody};

/// Serves requests on one accepted byte stream (plain or TLS) until the client leaves.
/// `transport` labels the RTMPT sessions it opens (`rtmpt` or `rtmpts`).
pub(super) async fn serve<S>(
    io: S,
    peer: SocketAddr,
    transport: &'static str,
    tunnel: Arc<Tunnel>,
    core: Arc<Core>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = Duration::from_secs(core.config().rtmp.handshake_timeout_secs);
    let span = info_span!("http", %peer, transport);
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (tunnel, core) = (tunnel.clone(), core.clone());
        async move {
            let peer = forwarded_peer(peer, &req, &core);
            let (method, path) = (req.method(), req.uri().path());
            let r = if web::is_flv_request(method, path) || web::is_hls_request(method, path) {
                web::handle(req, peer, &core).await
            } else if web::is_page_request(req.method(), req.uri().path()) {
                web::serve_page(&core, req.uri().path(), req.headers())
            } else {
                tunnel::handle(req, peer, transport, &tunnel, &core)
                    .await
                    .map(|b| WebBody::Full(Some(b)))
            };
            Ok::<_, Infallible>(r)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        // librtmp finds `Content-Length` with a case-sensitive search for "Content-".
        .title_case_headers(true)
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(io), svc)
        // WebSocket-FLV takes the connection over after its `101`.
        .with_upgrades();
    async move {
        if let Err(e) = conn.await {
            debug!(error = %e, "HTTP connection ended with an error");
        }
    }
    .instrument(span)
    .await
}

/// The client a request is from: the peer, or, when the peer is one of `rtmp.trusted_proxies`,
/// the right-most `X-Forwarded-For` address that is not a trusted proxy (its port unknown: 0).
fn forwarded_peer(peer: SocketAddr, req: &Request<Incoming>, core: &Core) -> SocketAddr {
    let config = core.config();
    if config.rtmp.trusted_proxies.is_empty() {
        return peer;
    }
    let trusted = NetList::new(config.rtmp.trusted_proxy_nets().unwrap_or_default());
    if !trusted.contains(peer.ip()) {
        return peer;
    }
    // Several headers are one list, in order.
    let header: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if header.is_empty() {
        return peer;
    }
    match effective_client(peer.ip(), Some(&header.join(",")), &trusted) {
        Some(ip) if ip != normalise(peer.ip()) => SocketAddr::new(ip, 0),
        _ => peer,
    }
}
