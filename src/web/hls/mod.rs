//! LL-HLS with fMP4/CMAF on the HTTP listeners and the RTMP port:
//!
//! ```text
//! GET /app[/instance]/stream/index.m3u8     media playlist (302 to ?session=<id> first)
//!     .../init-<v>.mp4 (init.mp4: newest)    init segment (ftyp + moov)
//!     .../seg-<msn>.m4s                      segment (its parts back to back)
//!     .../part-<msn>.<n>.m4s                 LL-HLS part (one moof + mdat)
//! ```
//!
//! One segmenter per live stream ([`muxer`], on `media::fmp4::Segmenter`), started by the first
//! request for the stream and shared by every viewer: each part is made once and served as
//! shared `Bytes`. Each viewer is a session ([`session`]): a client to the app (`on-connect`
//! with transport `hls` and the URL's query, then `on-play`, so `?token=` gates it as for
//! RTMP), in the client table, kickable, counted in the metrics. Every request after the first
//! carries the session; media requests without a valid one are refused.
//!
//! Blocking playlist reload (RFC 8216bis 6.2.5.2): `_HLS_msn=M[&_HLS_part=P]` waits until the
//! playlist holds segment M (or part P of segment M, or anything later); a request more than
//! two segments, or more than the Advance Part Limit of parts, ahead is `400`; one not
//! satisfied within three target durations is `503`. A request for the part the preload hint
//! names (or the open segment) waits the same way. `_HLS_skip` is ignored (delta updates are
//! not offered). A plain playlist request waits, as long, for the first complete segment of a
//! stream that just started segmenting, so plain HLS clients never see an empty playlist.

mod muxer;
mod playlist;
mod request;
mod session;
mod state;

pub use request::is_hls_request;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{
    ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, CONTENT_TYPE, HeaderValue, LOCATION,
};
use hyper::{Method, Request, Response, StatusCode};
use tracing::{Instrument, info, info_span};

use super::body::WebBody;
use super::gate::{self, Refused};
use super::path::StreamPath;
use crate::apps::{Route, ToActor};
use crate::gateway::Core;
use crate::media::fmp4::Lookup;
use gate::MAX_QUERY;
use muxer::Muxer;
use request::{Query, Resource};
use session::Session;
use state::Hls;

pub use session::TRANSPORT;

/// Answers one HLS request (the caller checked [`is_hls_request`]).
pub async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    core: &Arc<Core>,
) -> Response<WebBody> {
    if req.method() == Method::OPTIONS {
        return gate::preflight();
    }
    let uri = req.uri();
    let path = uri.path();
    let query = uri.query().unwrap_or("");
    if query.len() > MAX_QUERY {
        let why = format!("query longer than {MAX_QUERY} bytes");
        return refuse(peer, path, (StatusCode::URI_TOO_LONG, why));
    }
    if !core.config().http.hls {
        return refuse(
            peer,
            path,
            (StatusCode::NOT_FOUND, "HLS is turned off (http.hls)".into()),
        );
    }
    let (stream, resource) = match request::parse_path(path) {
        Ok(p) => p,
        Err(why) => return refuse(peer, path, (StatusCode::NOT_FOUND, why.into())),
    };
    let q = match request::parse_query(query) {
        Ok(q) => q,
        Err(why) => return refuse(peer, path, (StatusCode::BAD_REQUEST, why)),
    };
    let hls = state::of(core);
    let answer = match (&q.session, resource) {
        (None, Resource::Playlist) => open(&hls, core, peer, &stream, &q).await,
        (None, _) => Err((
            StatusCode::FORBIDDEN,
            "no session: load index.m3u8 first and use the URIs it lists".into(),
        )),
        (Some(id), _) => serve(&hls, core, id, &stream, resource, &q).await,
    };
    match answer {
        Ok(r) => r,
        Err(refused) => refuse(peer, path, refused),
    }
}

/// A new viewer: through the app, into the client table, redirected to its session.
async fn open(
    hls: &Arc<Hls>,
    core: &Arc<Core>,
    peer: SocketAddr,
    path: &StreamPath,
    q: &Query,
) -> Result<Response<WebBody>, Refused> {
    let key = path.key();
    let route = gate::live_route(core, path)?;
    if let Some(s) = hls.same_viewer(&key, peer.ip(), &q.app) {
        return match s.closed() {
            Some(c) => Err((StatusCode::FORBIDDEN, c.reason)),
            None => Ok(redirect(&s.id, q)),
        };
    }
    let http = core.config().http.clone();
    if hls.session_count() >= http.hls_max_sessions {
        return Err(too_many(http.hls_max_sessions));
    }
    let session_id = session::new_id().ok_or((
        StatusCode::SERVICE_UNAVAILABLE,
        "no randomness for a session id".to_owned(),
    ))?;
    let id = core.next_conn_id();
    let guard = core.clients().register(id, peer, TRANSPORT);
    guard.entry.set_app(&path.app, &path.instance);
    let admitted = match route {
        Route::App(link) => Some(gate::admit(link, id, peer, TRANSPORT, path, &q.app).await?),
        Route::Live | Route::Deny => None,
    };
    let leave = |a: &Option<gate::Admitted>| {
        if let Some(a) = a {
            let _ = a.link.send(ToActor::Stop {
                client: id,
                name: path.stream.clone(),
            });
            let _ = a.link.send(ToActor::Disconnect { client: id });
        }
    };
    if let Err(e) = hls.muxer(core, &key) {
        leave(&admitted);
        return Err(e);
    }
    let s = Arc::new(Session::new(
        session_id,
        key.clone(),
        peer.ip(),
        q.app.clone(),
        guard.entry.clone(),
    ));
    if !hls.add_session(s.clone(), http.hls_max_sessions) {
        leave(&admitted);
        return Err(too_many(http.hls_max_sessions));
    }
    info!(id, %peer, stream = %key, query_len = q.app.len(), "HLS viewer admitted");
    let timeout = Duration::from_secs(http.hls_session_timeout_secs);
    let table = Arc::downgrade(hls);
    let span = info_span!(parent: None, "hls", id, %peer, stream = %key);
    let task = s
        .clone()
        .run(core.clone(), guard, admitted, timeout, move |s| {
            if let Some(t) = table.upgrade() {
                t.forget(s);
            }
        });
    tokio::spawn(task.instrument(span));
    Ok(redirect(&s.id, q))
}

fn too_many(max: usize) -> Refused {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("too many HLS viewers (http.hls_max_sessions = {max})"),
    )
}

/// `302` to the playlist with the session (blocking-reload parameters kept).
fn redirect(id: &str, q: &Query) -> Response<WebBody> {
    let mut to = format!("index.m3u8?session={id}");
    if let Some(m) = q.msn {
        to.push_str(&format!("&_HLS_msn={m}"));
    }
    if let Some(p) = q.part {
        to.push_str(&format!("&_HLS_part={p}"));
    }
    let mut r = Response::new(WebBody::empty());
    *r.status_mut() = StatusCode::FOUND;
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&to) {
        h.insert(LOCATION, v);
    }
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    r
}

/// A request of an admitted viewer.
async fn serve(
    hls: &Arc<Hls>,
    core: &Arc<Core>,
    id: &str,
    path: &StreamPath,
    resource: Resource,
    q: &Query,
) -> Result<Response<WebBody>, Refused> {
    let s = hls.session(id).ok_or((
        StatusCode::FORBIDDEN,
        "unknown or expired HLS session: load index.m3u8 without session= for a new one".to_owned(),
    ))?;
    if let Some(c) = s.closed() {
        return Err((StatusCode::FORBIDDEN, c.reason));
    }
    let key = path.key();
    if s.key != key {
        return Err((
            StatusCode::FORBIDDEN,
            "this session plays another stream".into(),
        ));
    }
    s.touch();
    let m = hls.muxer(core, &key)?;
    if let Some(e) = m.with(|x| x.error().map(str::to_owned)) {
        return Err((
            StatusCode::NOT_FOUND,
            format!("stream {key} cannot be served as HLS: {e}"),
        ));
    }
    // Three target durations, as the spec bounds a blocking request.
    let deadline = Instant::now() + Duration::from_secs(3 * u64::from(m.with(|x| x.target_secs())));
    let r = match resource {
        Resource::Playlist => playlist(&m, id, q, deadline).await,
        Resource::Init(v) => {
            m.wait_until(deadline, |x| x.init(v).is_some() || x.ended())
                .await;
            match m.with(|x| x.init(v)) {
                Some(b) => Ok(media(b)),
                None => Err((StatusCode::NOT_FOUND, "no such init segment".into())),
            }
        }
        Resource::Segment(msn) => {
            fetch(
                &m,
                deadline,
                |x| x.segment_bytes(msn),
                format!("segment {msn}"),
            )
            .await
        }
        Resource::Part(msn, n) => {
            fetch(&m, deadline, |x| x.part(msn, n), format!("part {msn}.{n}")).await
        }
    }?;
    s.touch();
    m.touch();
    if let Some(n) = body_len(&r) {
        s.sent(core, n);
    }
    Ok(r)
}

fn body_len(r: &Response<WebBody>) -> Option<usize> {
    match r.body() {
        WebBody::Full(Some(b)) => Some(b.len()),
        _ => None,
    }
}

async fn playlist(
    m: &Muxer,
    id: &str,
    q: &Query,
    deadline: Instant,
) -> Result<Response<WebBody>, Refused> {
    if let Some(msn) = q.msn {
        if m.with(|x| x.too_far(msn, q.part)) {
            return Err((
                StatusCode::BAD_REQUEST,
                format!(
                    "_HLS_msn={msn}{} is too far ahead of the playlist",
                    q.part
                        .map(|p| format!("&_HLS_part={p}"))
                        .unwrap_or_default()
                ),
            ));
        }
        if !m.wait_until(deadline, |x| x.reached(msn, q.part)).await {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                "the requested segment or part did not arrive within three target durations".into(),
            ));
        }
    } else {
        let has_segment = |x: &crate::media::fmp4::Segmenter| {
            x.ended() || x.segments().iter().any(|s| s.complete())
        };
        // A stream that just started segmenting: wait for its first segment (a keyframe
        // interval may pass before the first one ends, so give it a segment length more).
        let first = deadline + Duration::from_millis(u64::from(m.with(|x| x.config().segment_ms)));
        if !m.wait_until(first, has_segment).await {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                "no complete segment yet: is the stream sending keyframes?".into(),
            ));
        }
    }
    let text = m.with(|x| playlist::render(x, &format!("?session={id}")));
    let mut r = Response::new(WebBody::full(text));
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.apple.mpegurl"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    Ok(r)
}

/// A part or segment; the one coming next is waited for.
async fn fetch(
    m: &Muxer,
    deadline: Instant,
    find: impl Fn(&crate::media::fmp4::Segmenter) -> Lookup,
    what: String,
) -> Result<Response<WebBody>, Refused> {
    m.wait_until(deadline, |x| find(x) != Lookup::Pending).await;
    match m.with(&find) {
        Lookup::Ready(b) => Ok(media(b)),
        Lookup::Pending => Err((
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{what} did not arrive within three target durations"),
        )),
        Lookup::Gone => Err((
            StatusCode::NOT_FOUND,
            format!("{what} is not in the window"),
        )),
    }
}

fn media(b: Bytes) -> Response<WebBody> {
    let mut r = Response::new(WebBody::full(b));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    // Immutable once made; the session in the URI keeps it private to one viewer.
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=60"),
    );
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    r
}

/// A refusal the viewer can read, logged with its reason.
fn refuse(peer: SocketAddr, path: &str, (status, why): Refused) -> Response<WebBody> {
    info!(%peer, path, status = status.as_u16(), reason = %why, "HLS request refused");
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
