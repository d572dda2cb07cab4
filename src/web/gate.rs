//! An HTTP viewer through its app's rules, as an RTMP player goes: `on-connect` (transport
//! `http-flv`, the URL's query as the client's query), then `on-play` with the same query.

use std::net::SocketAddr;
use std::time::Duration;

use hyper::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    HeaderValue,
};
use hyper::{Response, StatusCode};
use tokio::sync::mpsc;
use tracing::warn;

use super::body::WebBody;
use super::path::StreamPath;
use crate::apps::{APP_ERROR, ClientMeta, InstanceHandle, Route, ToActor, ToConn};
use crate::config::FailurePolicy;
use crate::gateway::Core;

/// Messages an instance may queue for one HTTP viewer (answers, then calls it cannot take).
const APP_QUEUE: usize = 64;
/// The longest a viewer waits for its app's answers (the app's own deadline bounds each
/// handler; this bounds a queue of other events ahead of them).
const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// The stream id an HTTP viewer's play is known by to the app.
pub const STREAM_ID: u32 = 1;

/// What a refused viewer is told: the status and the app's reason.
pub type Refused = (StatusCode, String);

/// Longest query string accepted on browser-delivery paths (a token and a few parameters fit
/// many times over).
pub const MAX_QUERY: usize = 4096;

/// How `path` is served (live, or through its app), once its app exists and its stream is live.
pub fn live_route(core: &Core, path: &StreamPath) -> Result<Route, Refused> {
    let route = core.apps().route(&path.app, &path.instance);
    if matches!(route, Route::Deny) {
        return Err((
            StatusCode::NOT_FOUND,
            format!("no such application: {}", path.app),
        ));
    }
    let key = path.key();
    if core.registry().publisher_of(&key).is_none() {
        return Err((StatusCode::NOT_FOUND, format!("stream {key} is not live")));
    }
    Ok(route)
}

/// The answer to a CORS preflight: players on other origins may read the streams.
pub fn preflight() -> Response<WebBody> {
    let mut r = Response::new(WebBody::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    h.insert(ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("*"));
    r
}

/// A viewer the app accepted: its queue stays open for a later `disconnect`.
pub struct Admitted {
    pub link: InstanceHandle,
    pub rx: mpsc::Receiver<ToConn>,
}

/// Runs `on-connect` and `on-play` for viewer `id`; a refusal carries the app's reason.
pub async fn admit(
    link: InstanceHandle,
    id: u64,
    peer: SocketAddr,
    transport: &'static str,
    path: &StreamPath,
    query: &str,
) -> Result<Admitted, Refused> {
    let (tx, mut rx) = mpsc::channel(APP_QUEUE);
    let meta = ClientMeta {
        id,
        address: peer.to_string(),
        transport: transport.to_owned(),
        app: path.app.clone(),
        instance: path.instance.clone(),
        query: query.to_owned(),
        tc_url: String::new(),
        page_url: String::new(),
        swf_url: String::new(),
        flash_ver: String::new(),
    };
    let open = link.policy() == FailurePolicy::Open;
    if link
        .send(ToActor::Connect {
            meta,
            args: Vec::new(),
            tx,
        })
        .is_err()
    {
        warn!(
            app = link.app(),
            "application busy; HTTP viewer {}",
            if open {
                "accepted (fail-open)"
            } else {
                "refused"
            }
        );
        return if open {
            Ok(Admitted { link, rx })
        } else {
            Err(unavailable())
        };
    }
    match answer(&mut rx, |m| {
        matches!(
            m,
            ToConn::ConnectAccept | ToConn::ConnectReject(_) | ToConn::ConnectRedirect { .. }
        )
    })
    .await
    {
        Some(ToConn::ConnectAccept) => {}
        Some(ToConn::ConnectReject(reason)) => return Err((StatusCode::FORBIDDEN, reason)),
        Some(ToConn::ConnectRedirect { url, description }) => {
            return Err((
                StatusCode::FORBIDDEN,
                format!("{description} (redirected to {url})"),
            ));
        }
        _ if open => return Ok(Admitted { link, rx }),
        _ => return Err(unavailable()),
    }
    let play = ToActor::Play {
        client: id,
        stream_id: STREAM_ID,
        name: path.stream.clone(),
        query: query.to_owned(),
    };
    if link.send(play).is_err() {
        let _ = link.send(ToActor::Disconnect { client: id });
        return if open {
            Ok(Admitted { link, rx })
        } else {
            Err(unavailable())
        };
    }
    match answer(&mut rx, |m| matches!(m, ToConn::Play { .. })).await {
        Some(ToConn::Play { result: Ok(()), .. }) => Ok(Admitted { link, rx }),
        Some(ToConn::Play {
            result: Err(reason),
            ..
        }) => {
            let _ = link.send(ToActor::Disconnect { client: id });
            Err((StatusCode::FORBIDDEN, reason))
        }
        _ if open => Ok(Admitted { link, rx }),
        _ => {
            let _ = link.send(ToActor::Disconnect { client: id });
            Err(unavailable())
        }
    }
}

fn unavailable() -> Refused {
    (StatusCode::SERVICE_UNAVAILABLE, APP_ERROR.to_owned())
}

/// The first message `wanted` accepts, within [`ANSWER_WAIT`]; others (calls an HTTP viewer
/// cannot take) are skipped. `None` when the app stopped or did not answer.
async fn answer(
    rx: &mut mpsc::Receiver<ToConn>,
    wanted: impl Fn(&ToConn) -> bool,
) -> Option<ToConn> {
    let wait = async {
        while let Some(m) = rx.recv().await {
            if wanted(&m) {
                return Some(m);
            }
        }
        None
    };
    tokio::time::timeout(ANSWER_WAIT, wait).await.ok().flatten()
}
