//! Browser delivery on the HTTP listeners: live streams as HTTP-FLV (`GET /app[/instance]/
//! stream.flv`) and WebSocket-FLV (the same path upgraded), for players that speak no RTMP, and
//! as LL-HLS (`GET /app[/instance]/stream/index.m3u8`, in `hls/`); the player page (`page.rs`).
//!
//! Each viewer is a client like an RTMP player: it is in the client table (kick, admin list),
//! goes through the app's `on-connect` (transport `http-flv`, the URL's query as the client's
//! query) and `on-play`, and plays through the same [`Playback`](crate::media::Playback) queue,
//! keyframe skip and merge window. `server/http.rs` routes requests here or to the tunnel.

mod body;
mod flv;
mod gate;
mod hls;
mod page;
mod path;
mod ws;

pub use body::{Tags, WebBody};
pub use hls::is_hls_request;
pub use page::{is_page_request, serve as serve_page};
pub use path::{StreamPath, is_flv_request};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tracing::info;

use crate::gateway::Core;

pub use gate::MAX_QUERY;

/// Answers one browser-delivery request (the caller checked [`is_flv_request`] or
/// [`is_hls_request`]).
pub async fn handle(
    mut req: Request<Incoming>,
    peer: SocketAddr,
    core: &Arc<Core>,
) -> Response<WebBody> {
    if is_hls_request(req.method(), req.uri().path()) {
        return hls::handle(req, peer, core).await;
    }
    if req.method() == Method::OPTIONS {
        return gate::preflight();
    }
    let uri = req.uri().clone();
    let query = uri.query().unwrap_or("");
    if query.len() > MAX_QUERY {
        return refuse(
            peer,
            uri.path(),
            StatusCode::URI_TOO_LONG,
            &format!("query longer than {MAX_QUERY} bytes"),
        );
    }
    let path = match StreamPath::parse(uri.path()) {
        Ok(p) => p,
        Err(why) => return refuse(peer, uri.path(), StatusCode::NOT_FOUND, why),
    };
    if ws::wants_upgrade(req.headers()) {
        let accept = match ws::accept_key(req.headers()) {
            Ok(_) if req.method() != Method::GET => {
                return refuse(
                    peer,
                    uri.path(),
                    StatusCode::BAD_REQUEST,
                    "a WebSocket upgrade must be a GET",
                );
            }
            Ok(a) => a,
            Err((status, why)) => return refuse(peer, uri.path(), status, &why),
        };
        let ready = match flv::admit(core, peer, path, query, ws::TRANSPORT).await {
            Ok(r) => r,
            Err((status, why)) => return refuse(peer, uri.path(), status, &why),
        };
        let upgrade = hyper::upgrade::on(&mut req);
        let write_timeout = Duration::from_secs(core.config().rtmp.write_timeout_secs);
        tokio::spawn(ws::forward(upgrade, ready.start(), write_timeout));
        return ws::switching(&accept);
    }
    let head = req.method() == Method::HEAD;
    match flv::play(core, peer, path, query.to_owned(), head).await {
        Ok(r) => r,
        Err((status, why)) => refuse(peer, uri.path(), status, &why),
    }
}

/// A refusal the viewer can read, logged with its reason.
fn refuse(peer: SocketAddr, path: &str, status: StatusCode, why: &str) -> Response<WebBody> {
    info!(%peer, path, status = status.as_u16(), reason = why, "browser request refused");
    let mut r = Response::new(WebBody::full(format!("{why}\n")));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    r
}
