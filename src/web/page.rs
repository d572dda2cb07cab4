//! The player page on the HTTP listeners: `GET /` lists the live streams and plays one in the
//! browser with the vendored mpegts.js (HTTP-FLV, WebSocket-FLV) or hls.js (LL-HLS), served
//! from the binary under `/player/`; `GET /streams.json` is the list the page polls.
//!
//! Everything is embedded at build time (`assets/player/`, the players copied from npm by
//! `scripts/vendor-player-js.sh`), so the page needs neither a CDN nor files beside the binary.
//! `http.player_page = false` answers 404 on these paths; they are only `GET`/`HEAD`, so the
//! RTMPT tunnel's `POST`s never come here.

use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use hyper::header::{
    ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG,
    HeaderMap, HeaderValue, IF_NONE_MATCH, X_CONTENT_TYPE_OPTIONS,
};
use hyper::{Method, Response, StatusCode};
use serde::Serialize;

use super::body::WebBody;
use super::path::StreamPath;
use crate::gateway::Core;
use crate::media::StreamKey;

/// The instance a two-segment stream path plays from.
const DEFAULT_INSTANCE: &str = "_definst_";

const INDEX_HTML: &str = include_str!("../../assets/player/index.html");

/// The page's own script and the vendored players with their licence texts.
const FILES: &[(&str, &str, &[u8])] = &[
    ("page.js", JS, include_bytes!("../../assets/player/page.js")),
    (
        "mpegts.js",
        JS,
        include_bytes!("../../assets/player/vendor/mpegts.js"),
    ),
    (
        "hls.min.js",
        JS,
        include_bytes!("../../assets/player/vendor/hls.min.js"),
    ),
    (
        "LICENSE.mpegts.js.txt",
        TEXT,
        include_bytes!("../../assets/player/vendor/LICENSE.mpegts.js.txt"),
    ),
    (
        "mpegts.js.LICENSE.txt",
        TEXT,
        include_bytes!("../../assets/player/vendor/mpegts.js.LICENSE.txt"),
    ),
    (
        "LICENSE.hls.js.txt",
        TEXT,
        include_bytes!("../../assets/player/vendor/LICENSE.hls.js.txt"),
    ),
];

const JS: &str = "text/javascript; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
const JSON: &str = "application/json";

/// Scripts under `/player/` are named with their ETag in the page (`?v=`), so a browser may
/// keep them a day without missing an upgrade; the page itself is always revalidated.
const ASSET_CACHE: &str = "public, max-age=86400";

/// Scripts, media and sockets only from the gateway itself (`'self'` covers `ws:`/`wss:` to
/// the same host); `blob:` for MSE sources and hls.js's worker; inline style for the page.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; media-src 'self' blob:; worker-src 'self' blob:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'self'";

/// True for the player page's requests, `GET`/`HEAD` of `/`, `/streams.json` or
/// `/player/...`, whether or not the page is enabled (disabled, they answer 404 here instead of
/// reaching the tunnel).
pub fn is_page_request(method: &Method, path: &str) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
        && (path == "/" || path == "/streams.json" || path.starts_with("/player/"))
}

/// One embedded response body with its content type and validator.
struct Asset {
    body: Bytes,
    content_type: &'static str,
    etag: HeaderValue,
}

impl Asset {
    fn new(body: Bytes, content_type: &'static str) -> Asset {
        let sum = ring::digest::digest(&ring::digest::SHA256, &body);
        let hex: String = sum.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Asset {
            body,
            content_type,
            etag: HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a header value"),
        }
    }

    /// The tag without quotes, for `?v=` in the page.
    fn version(&self) -> &str {
        self.etag.to_str().unwrap_or_default().trim_matches('"')
    }
}

static ASSETS: LazyLock<Vec<(&'static str, Asset)>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|(name, ty, body)| (*name, Asset::new(Bytes::from_static(body), ty)))
        .collect()
});

/// The page with each `{{v:FILE}}` replaced by that file's version.
static INDEX: LazyLock<Asset> = LazyLock::new(|| {
    let mut html = INDEX_HTML.to_owned();
    for (name, asset) in ASSETS.iter() {
        html = html.replace(&format!("{{{{v:{name}}}}}"), asset.version());
    }
    Asset::new(Bytes::from(html), HTML)
});

/// Answers a request [`is_page_request`] accepted.
pub fn serve(core: &Arc<Core>, path: &str, headers: &HeaderMap) -> Response<WebBody> {
    if !core.config().http.player_page {
        return not_found("the player page is turned off (http.player_page = false)");
    }
    match path {
        "/" => {
            let mut r = cached(&INDEX, headers, "no-cache");
            r.headers_mut()
                .insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
            r
        }
        "/streams.json" => streams(core),
        _ => {
            let name = path.strip_prefix("/player/").unwrap_or_default();
            match ASSETS.iter().find(|(n, _)| *n == name) {
                Some((_, asset)) => cached(asset, headers, ASSET_CACHE),
                None => not_found("no such player file"),
            }
        }
    }
}

/// `asset` with its validator, or `304` when the browser's copy is current.
fn cached(asset: &Asset, req: &HeaderMap, cache: &'static str) -> Response<WebBody> {
    let fresh = req
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == asset.etag
        });
    let mut r = if fresh {
        let mut r = Response::new(WebBody::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        Response::new(WebBody::full(asset.body.clone()))
    };
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(ETAG, asset.etag.clone());
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

fn not_found(why: &str) -> Response<WebBody> {
    let mut r = Response::new(WebBody::full(format!("{why}\n")));
    *r.status_mut() = StatusCode::NOT_FOUND;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(TEXT));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// `GET /streams.json`: `{"streams": [...]}`, one entry per live stream a browser can name
/// (its app admitted the publisher; viewers still go through the app's `on-play`).
#[derive(Debug, Serialize, PartialEq)]
struct StreamList {
    streams: Vec<StreamEntry>,
}

/// What a viewer needs to play one stream, and nothing about who publishes or watches it. The
/// URLs are paths on the page's own origin (`ws_flv` over `ws:`/`wss:`).
#[derive(Debug, Serialize, PartialEq)]
struct StreamEntry {
    app: String,
    instance: String,
    name: String,
    video: Option<&'static str>,
    audio: Option<&'static str>,
    http_flv: String,
    ws_flv: String,
    ll_hls: String,
}

fn streams(core: &Arc<Core>) -> Response<WebBody> {
    let streams = core
        .registry()
        .stats()
        .into_iter()
        .filter(|s| s.publisher.is_some())
        .filter_map(|s| entry(&s.key, s.video_codec, s.audio_codec))
        .collect();
    let body = serde_json::to_vec(&StreamList { streams }).expect("plain data serialises");
    let mut r = Response::new(WebBody::full(body));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

/// The entry for `key`, or `None` when its names cannot be spelled as a stream path (a name
/// with `/`, say, which RTMP allows but `/app/instance/stream.flv` cannot carry).
fn entry(
    key: &StreamKey,
    video: Option<&'static str>,
    audio: Option<&'static str>,
) -> Option<StreamEntry> {
    let mut base = format!("/{}", encode(&key.app));
    if key.instance != DEFAULT_INSTANCE {
        base = format!("{base}/{}", encode(&key.instance));
    }
    base = format!("{base}/{}", encode(&key.name));
    let flv = format!("{base}.flv");
    if StreamPath::parse(&flv).ok()?.key() != *key {
        return None;
    }
    Some(StreamEntry {
        app: key.app.clone(),
        instance: key.instance.clone(),
        name: key.name.clone(),
        video,
        audio,
        http_flv: flv.clone(),
        ws_flv: flv,
        ll_hls: format!("{base}/index.m3u8"),
    })
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(app: &str, instance: &str, name: &str) -> StreamKey {
        StreamKey {
            app: app.into(),
            instance: instance.into(),
            name: name.into(),
        }
    }

    #[test]
    fn page_paths_leave_the_tunnel_its_posts() {
        for p in ["/", "/streams.json", "/player/mpegts.js", "/player/nope"] {
            assert!(is_page_request(&Method::GET, p), "{p}");
            assert!(is_page_request(&Method::HEAD, p), "{p}");
            assert!(!is_page_request(&Method::POST, p), "{p}");
        }
        for p in [
            "/open/1",
            "/idle/a/1",
            "/send/a/1",
            "/close/a/1",
            "/fcs/ident2",
        ] {
            assert!(!is_page_request(&Method::POST, p), "{p}");
            assert!(!is_page_request(&Method::GET, p), "{p}");
        }
        assert!(!is_page_request(&Method::GET, "/live/cam.flv"));
    }

    #[test]
    fn entries_spell_paths_the_flv_route_parses_back() {
        let e = entry(&key("live", "_definst_", "cam"), Some("h264"), None).unwrap();
        assert_eq!(e.http_flv, "/live/cam.flv");
        assert_eq!(e.ws_flv, "/live/cam.flv");
        assert_eq!(e.ll_hls, "/live/cam/index.m3u8");
        let e = entry(&key("live", "room 1", "a?b#c"), None, None).unwrap();
        assert_eq!(e.http_flv, "/live/room%201/a%3Fb%23c.flv");
        assert_eq!(e.ll_hls, "/live/room%201/a%3Fb%23c/index.m3u8");
        // Names an HTTP path cannot carry are left out rather than listed unplayable.
        assert!(entry(&key("live", "_definst_", "show/take1"), None, None).is_none());
        assert!(entry(&key("live", "_definst_", ".."), None, None).is_none());
    }

    #[test]
    fn the_page_names_every_script_with_its_version() {
        let html = std::str::from_utf8(&INDEX.body).unwrap();
        assert!(!html.contains("{{"), "unreplaced placeholder");
        for name in ["page.js", "mpegts.js", "hls.min.js"] {
            let (_, a) = ASSETS.iter().find(|(n, _)| *n == name).unwrap();
            assert!(
                html.contains(&format!("/player/{name}?v={}", a.version())),
                "{name}"
            );
        }
    }

    #[test]
    fn a_current_copy_gets_304() {
        let a = &ASSETS[0].1;
        let mut h = HeaderMap::new();
        assert_eq!(cached(a, &h, ASSET_CACHE).status(), StatusCode::OK);
        h.insert(IF_NONE_MATCH, a.etag.clone());
        assert_eq!(
            cached(a, &h, ASSET_CACHE).status(),
            StatusCode::NOT_MODIFIED
        );
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("\"old\", W/\"x\""));
        assert_eq!(cached(a, &h, ASSET_CACHE).status(), StatusCode::OK);
    }
}
