//! Request routing and handlers of the admin listener: `/api/v1/*` JSON, `/metrics`, and the
//! dashboard at `/`. Every error is a JSON object `{"error": "..."}` with a fitting status.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tracing::{info, warn};

use super::allow::{bearer_matches, effective_client};
use super::apps::AppError;
use super::apps::rfc3339;
use super::lockout::Verdict;
use super::state::AdminState;
use crate::apps::json::amf_to_json;
use crate::gateway::OPERATOR_KICK;
use crate::media::StreamKey;
use crate::media::record::RecordingInfo;
use crate::state::Scope;
use crate::state::shared_objects::SoSummary;

type Resp = Response<Full<Bytes>>;

/// The dashboard page, served from the binary (no CDN).
const DASHBOARD: &str = include_str!("dashboard.html");
/// The OpenAPI 3 description of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// How long `DELETE /clients/{id}` waits for the kicked connection to leave the table.
const KICK_WAIT: Duration = Duration::from_secs(1);

pub(super) async fn handle(state: &AdminState, peer: SocketAddr, req: Request<Incoming>) -> Resp {
    let resp = route(state, peer, &req).await;
    crate::metrics::admin_request(resp.status().as_u16());
    resp
}

/// 429 for a locked-out address, with the seconds left in `Retry-After`.
fn too_many_failures(left: Duration) -> Resp {
    let mut r = error(
        StatusCode::TOO_MANY_REQUESTS,
        "too many requests with a wrong bearer token from this address; retry later",
    );
    let secs = left.as_secs().max(1).to_string();
    if let Ok(v) = HeaderValue::from_str(&secs) {
        r.headers_mut().insert(RETRY_AFTER, v);
    }
    r
}

async fn route(state: &AdminState, peer: SocketAddr, req: &Request<Incoming>) -> Resp {
    // A trusted proxy's forwarded client must be allowed too; nobody else's header counts.
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    // One snapshot per request: a reload in between never mixes old and new rules.
    let auth = state.auth.get();
    let client = match effective_client(peer.ip(), forwarded, &auth.trusted) {
        Some(ip) if auth.allow.contains(ip) => ip,
        other => {
            crate::metrics::admin_denied("proxy");
            if let Some(suppressed) = state.deny_log.admit() {
                warn!(%peer, forwarded_client = ?other, suppressed, "admin request via proxy from outside the allowlist refused");
            }
            return error(StatusCode::FORBIDDEN, "client address not allowed");
        }
    };

    let path = req.uri().path();
    let method = req.method();
    // The dashboard shell carries no data; it asks for the token and sends it with every API
    // call, so it must load without one.
    if path == "/" || path == "/index.html" {
        return match *method {
            Method::GET | Method::HEAD => html(DASHBOARD),
            _ => method_not_allowed(),
        };
    }
    if let Some(token) = &auth.token {
        let now = Instant::now();
        // A locked-out address is refused before its token is compared, so guessing on
        // costs it nothing but the refusals; the stream listeners never see this.
        if let Verdict::Blocked(left) = state.lockout.check(client, now) {
            crate::metrics::admin_denied("rate");
            return too_many_failures(left);
        }
        let presented = req.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
        if !bearer_matches(presented, token) {
            crate::metrics::admin_denied("token");
            let cfg = state.core.config();
            let (limit, window) = (
                cfg.admin.auth_failures,
                Duration::from_secs(cfg.admin.auth_failure_window_secs),
            );
            if state.lockout.failed(client, now, limit, window) {
                warn!(%peer, %client, failures = limit + 1, window_secs = window.as_secs(), "admin address locked out after repeated wrong bearer tokens; answering 429 until the window passes");
                return too_many_failures(window);
            } else if let Some(suppressed) = state.deny_log.admit() {
                warn!(%peer, %client, path, suppressed, "admin request without a valid token refused");
            }
            let mut r = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"wasmgate-admin\""),
            );
            return r;
        }
    }

    if path == "/metrics" {
        return match *method {
            Method::GET => metrics(state),
            _ => method_not_allowed(),
        };
    }
    let Some(rest) = path.strip_prefix("/api/v1/") else {
        return error(StatusCode::NOT_FOUND, &format!("no such endpoint: {path}"));
    };
    let segs: Vec<String> = rest.split('/').map(percent_decode).collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match (method.clone(), segs.as_slice()) {
        (Method::GET, ["openapi.json"]) => json_text(OPENAPI),
        (Method::GET, ["server"]) => ok(server(state)),
        (Method::GET, ["config"]) => ok(config(state)),
        (Method::GET, ["bandwidth"]) => {
            let h = state
                .bandwidth
                .history
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            ok(json!(h.iter().collect::<Vec<_>>()))
        }
        (Method::GET, ["apps"]) => ok(json!(state.apps.list())),
        (Method::GET, ["apps", app]) => match state.apps.get(app) {
            Some(a) => ok(json!(a)),
            None => error(
                StatusCode::NOT_FOUND,
                &format!("no application named {app:?}"),
            ),
        },
        (Method::GET, ["apps", app, instance, "shared-objects"]) => {
            ok(shared_objects(state, app, instance))
        }
        (Method::GET, ["apps", app, instance, "shared-objects", name]) => {
            shared_object(state, app, instance, name)
        }
        (Method::POST, ["apps", app, "reload"]) => match state.apps.reload(app) {
            Ok(a) => {
                info!(app, digest = ?a.module_digest, "app reloaded by operator");
                ok(json!(a))
            }
            Err(e) => app_error(e),
        },
        (Method::POST, ["apps", app, "unload"]) => match state.apps.unload(app) {
            Ok(()) => {
                info!(app, "app unloaded by operator");
                ok(json!({ "unloaded": app }))
            }
            Err(e) => app_error(e),
        },
        // Re-reads the RTMPS/RTMPTS certificate and key, like SIGHUP; live sessions stay.
        (Method::POST, ["tls", "reload"]) => match state.tls.reload() {
            Ok(()) => {
                info!("TLS certificate reloaded by operator");
                ok(json!({ "reloaded": true }))
            }
            Err(e @ crate::tls::TlsError::NotConfigured) => {
                error(StatusCode::CONFLICT, &e.to_string())
            }
            Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
        },
        // Re-reads the config file like SIGHUP: 200 with what was applied and what needs a
        // restart, 400 (nothing applied) when the new file is invalid.
        (Method::POST, ["config", "reload"]) => {
            let reloader = state.reloader.clone();
            match tokio::task::spawn_blocking(move || reloader.reload()).await {
                Ok(Ok(report)) => {
                    info!("configuration reloaded by operator");
                    ok(json!(report))
                }
                Ok(Err(e)) => error(StatusCode::BAD_REQUEST, &e.to_string()),
                Err(e) => error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("reload task failed: {e}"),
                ),
            }
        }
        (Method::GET, ["clients"]) => ok(clients(state, None)),
        (Method::GET, ["clients", id]) => match id.parse::<u64>() {
            Ok(id) => match clients(state, Some(id)) {
                Value::Array(mut v) if !v.is_empty() => ok(v.remove(0)),
                _ => no_client(id),
            },
            Err(_) => bad_id(id),
        },
        (Method::DELETE, ["clients", id]) => match id.parse::<u64>() {
            Ok(id) => kick(state, id).await,
            Err(_) => bad_id(id),
        },
        (Method::GET, ["streams"]) => ok(streams(state)),
        (Method::DELETE, ["streams", app, instance, name]) => {
            delete_stream(state, app, instance, name).await
        }
        (Method::GET, ["recordings"]) => ok(recordings(state)),
        (Method::GET, ["relays"]) => ok(json!(state.core.relay_status())),
        (Method::DELETE, ["recordings", app, instance, name]) => {
            stop_recording(state, app, instance, name)
        }
        (
            _,
            [
                "openapi.json" | "server" | "config" | "apps" | "clients" | "streams"
                | "recordings" | "relays",
                ..,
            ],
        ) => method_not_allowed(),
        _ => error(StatusCode::NOT_FOUND, &format!("no such endpoint: {path}")),
    }
}

fn server(state: &AdminState) -> Value {
    let s = state.core.stats();
    json!({
        "name": "wasmgate",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": s.uptime.as_secs(),
        "started_at": rfc3339(SystemTime::now() - s.uptime),
        "connections": {
            "current": s.clients,
            "total": s.connections_total,
            "rejected_over_limit": s.rejected_over_limit,
            "by_transport": s.by_transport,
        },
        "bytes_in": s.bytes_in,
        "bytes_out": s.bytes_out,
        "bandwidth": {
            "in_bps": state.bandwidth.in_bps.load(Ordering::Relaxed),
            "out_bps": state.bandwidth.out_bps.load(Ordering::Relaxed),
        },
        "streams": s.streams,
        "publishing": s.publishing,
        "players": s.players,
        "listeners": {
            "rtmp": state.core.config().rtmp.listen,
        },
    })
}

fn config(state: &AdminState) -> Value {
    let mut v = serde_json::to_value(&*state.core.config()).unwrap_or(Value::Null);
    // Secrets never leave the process; say that one is set, not what it is.
    if let Some(admin) = v.get_mut("admin").and_then(Value::as_object_mut)
        && admin.get("token").is_some_and(|t| !t.is_null())
    {
        admin.insert("token".into(), json!("<redacted>"));
    }
    v
}

fn clients(state: &AdminState, only: Option<u64>) -> Value {
    let now = SystemTime::now();
    let list = match only {
        Some(id) => state.core.clients().get(id).into_iter().collect(),
        None => state.core.clients().list(),
    };
    Value::Array(
        list.iter()
            .map(|c| {
                let (app, instance) = c.app().unzip();
                json!({
                    "id": c.id,
                    "ip": super::allow::normalise(c.peer.ip()).to_string(),
                    "port": c.peer.port(),
                    "transport": c.transport,
                    "app": app,
                    "instance": instance,
                    "connected_at": rfc3339(c.connected_at),
                    "connected_secs": now.duration_since(c.connected_at).map(|d| d.as_secs()).unwrap_or(0),
                    "bytes_in": c.bytes_in.load(Ordering::Relaxed),
                    "bytes_out": c.bytes_out.load(Ordering::Relaxed),
                })
            })
            .collect(),
    )
}

async fn kick(state: &AdminState, id: u64) -> Resp {
    if !state.core.kick(id, OPERATOR_KICK) {
        return no_client(id);
    }
    info!(client = id, "client kicked by operator");
    let closed = wait_gone(state, id).await;
    ok(json!({ "kicked": id, "closed": closed }))
}

/// Waits up to [`KICK_WAIT`] for client `id` to leave the table; true when it did.
async fn wait_gone(state: &AdminState, id: u64) -> bool {
    let deadline = Instant::now() + KICK_WAIT;
    while state.core.clients().get(id).is_some() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    state.core.clients().get(id).is_none()
}

fn streams(state: &AdminState) -> Value {
    Value::Array(
        state
            .core
            .registry()
            .stats()
            .into_iter()
            .map(|s| {
                json!({
                    "app": s.key.app,
                    "instance": s.key.instance,
                    "name": s.key.name,
                    "path": s.key.to_string(),
                    "publishing": s.publisher.is_some(),
                    "publisher": s.publisher,
                    "players": s.players,
                    "video_codec": s.video_codec,
                    "audio_codec": s.audio_codec,
                    "bitrate_bps": s.bitrate_bps,
                    "fps": s.fps,
                    "bytes": s.bytes,
                })
            })
            .collect(),
    )
}

/// Ends a stream by stopping its source (an RTMP publisher is kicked); its players get
/// `Play.UnpublishNotify`.
async fn delete_stream(state: &AdminState, app: &str, instance: &str, name: &str) -> Resp {
    let key = StreamKey {
        app: app.into(),
        instance: instance.into(),
        name: name.into(),
    };
    let Some(publisher) = state.core.stop_stream(&key, OPERATOR_KICK) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("no live stream {key} (nobody publishes it)"),
        );
    };
    info!(stream = %key, publisher, "stream stopped by operator");
    wait_gone(state, publisher).await;
    ok(json!({ "stopped": key.to_string(), "publisher": publisher }))
}

fn recording_json(r: &RecordingInfo) -> Value {
    json!({
        "app": r.stream.app,
        "instance": r.stream.instance,
        "name": r.stream.name,
        "path": r.stream.to_string(),
        "file": r.file.to_string_lossy(),
        "bytes": r.bytes,
        "duration_ms": r.duration_ms,
        "started_at": rfc3339(r.started_at),
        "origin": r.origin.as_str(),
        "waiting": r.waiting,
    })
}

fn recordings(state: &AdminState) -> Value {
    Value::Array(
        state
            .core
            .recordings()
            .list()
            .iter()
            .map(recording_json)
            .collect(),
    )
}

/// Stops a recording and keeps its file (finished with its index as at a publish's end); the
/// stream and its players go on.
fn stop_recording(state: &AdminState, app: &str, instance: &str, name: &str) -> Resp {
    let key = StreamKey {
        app: app.into(),
        instance: instance.into(),
        name: name.into(),
    };
    match state.core.recordings().stop(&key) {
        Some(r) => {
            info!(stream = %key, file = %r.file.display(), "recording stopped by operator");
            ok(json!({ "stopped": recording_json(&r) }))
        }
        None => error(
            StatusCode::NOT_FOUND,
            &format!("stream {key} is not being recorded"),
        ),
    }
}

fn so_summary_json(s: &SoSummary) -> Value {
    json!({
        "name": s.name,
        "persistent": s.persistent,
        "version": s.version,
        "slots": s.slots,
        "bytes": s.bytes,
        "subscribers": s.subscribers.len(),
        "subscriber_ids": s.subscribers,
        "held_by_app": s.held_by_app,
    })
}

/// The loaded shared objects of `app/instance`, any app (the built-in live app's instances have
/// them too): those clients use and those the instance's Wasm app opened; an unknown app or
/// instance has an empty list.
fn shared_objects(state: &AdminState, app: &str, instance: &str) -> Value {
    let scope = Scope::new(app, instance);
    let list = state.core.shared_objects().with(|so| so.describe(&scope));
    Value::Array(list.iter().map(so_summary_json).collect())
}

/// One shared object: its summary and its slots as `data` (AMF turned into JSON the way the app
/// host hands values to guests). Summary and slots are read under one lock, so they agree.
fn shared_object(state: &AdminState, app: &str, instance: &str, name: &str) -> Resp {
    let scope = Scope::new(app, instance);
    let found = state
        .core
        .shared_objects()
        .with(|so| Some((so.summary(&scope, name)?, so.slots(&scope, name)?)));
    let Some((summary, slots)) = found else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("no shared object {name:?} is loaded in {scope}"),
        );
    };
    let mut v = so_summary_json(&summary);
    let data: serde_json::Map<String, Value> = slots
        .iter()
        .map(|(k, value)| (k.clone(), amf_to_json(value)))
        .collect();
    v["data"] = Value::Object(data);
    ok(v)
}

fn metrics(state: &AdminState) -> Resp {
    super::metrics::refresh(&state.core.stats());
    super::metrics::refresh_shared_objects(&state.core.shared_objects().stats());
    for export in &state.on_scrape {
        export();
    }
    let body = state.prometheus.render();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

fn app_error(e: AppError) -> Resp {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error(status, &e.to_string())
}

fn no_client(id: u64) -> Resp {
    error(
        StatusCode::NOT_FOUND,
        &format!("no client with id {id} is connected"),
    )
}

fn bad_id(id: &str) -> Resp {
    error(
        StatusCode::BAD_REQUEST,
        &format!("client id {id:?} is not a number"),
    )
}

fn method_not_allowed() -> Resp {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint",
    )
}

fn ok(v: Value) -> Resp {
    json_response(StatusCode::OK, v.to_string())
}

fn json_text(text: &'static str) -> Resp {
    json_response(StatusCode::OK, text.to_string())
}

fn error(status: StatusCode, message: &str) -> Resp {
    json_response(
        status,
        json!({ "error": message, "status": status.as_u16() }).to_string(),
    )
}

fn json_response(status: StatusCode, body: String) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn html(text: &'static str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The page loads nothing from elsewhere; keep it that way.
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
        ),
    );
    r
}

/// Decodes `%XX` escapes in one path segment (stream names may hold any character).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("key%3Fx"), "key?x");
        assert_eq!(percent_decode("bad%2"), "bad%2");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn openapi_is_json() {
        let v: Value = serde_json::from_str(OPENAPI).unwrap();
        assert!(v["openapi"].as_str().unwrap().starts_with("3."));
    }
}
