//! Which requests are browser delivery, and the `app[/instance]/stream` a path names.

use hyper::Method;

use crate::media::StreamKey;

/// The instance a two-segment path plays from, as for RTMP URLs.
const DEFAULT_INSTANCE: &str = "_definst_";

/// True for `GET`/`HEAD`/`OPTIONS` of a path ending in `.flv`: everything else on an HTTP
/// listener is RTMPT's.
pub fn is_flv_request(method: &Method, path: &str) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) && path.ends_with(".flv")
}

/// `/app/stream.flv` or `/app/instance/stream.flv`, decoded and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPath {
    pub app: String,
    pub instance: String,
    pub stream: String,
}

impl StreamPath {
    pub fn parse(path: &str) -> Result<StreamPath, &'static str> {
        let rest = path
            .strip_prefix('/')
            .and_then(|p| p.strip_suffix(".flv"))
            .ok_or("not a stream path: use /app[/instance]/stream.flv")?;
        let segments: Vec<String> = rest
            .split('/')
            .map(decode)
            .collect::<Option<_>>()
            .ok_or("bad percent-encoding in the path")?;
        if segments.iter().any(|s| !valid_segment(s)) {
            return Err(
                "path segments must be non-empty names without control characters, '/', '\\' or '..'",
            );
        }
        match segments.as_slice() {
            [app, stream] => Ok(StreamPath {
                app: app.clone(),
                instance: DEFAULT_INSTANCE.to_owned(),
                stream: stream.clone(),
            }),
            [app, instance, stream] => Ok(StreamPath {
                app: app.clone(),
                instance: instance.clone(),
                stream: stream.clone(),
            }),
            _ => Err("not a stream path: use /app[/instance]/stream.flv"),
        }
    }

    pub fn key(&self) -> StreamKey {
        StreamKey {
            app: self.app.clone(),
            instance: self.instance.clone(),
            name: self.stream.clone(),
        }
    }
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.len() <= 255
        && !s.chars().any(|c| c.is_control() || c == '/' || c == '\\')
}

/// Percent-decodes one segment; `None` for a bad escape or bytes that are not UTF-8.
fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let p = StreamPath::parse("/live/cam.flv").unwrap();
        assert_eq!(
            (p.app.as_str(), p.instance.as_str(), p.stream.as_str()),
            ("live", "_definst_", "cam")
        );
        let p = StreamPath::parse("/live/room%201/cam.flv").unwrap();
        assert_eq!(p.instance, "room 1");
        for bad in [
            "/cam.flv",
            "/a/b/c/d.flv",
            "/live//cam.flv",
            "/live/../cam.flv",
            "/live/%2e%2e/cam.flv",
            "/live/a%2Fb.flv",
            "/live/%zz.flv",
            "/live/%ff.flv",
            "/live/cam.mp4",
            "live/cam.flv",
        ] {
            assert!(StreamPath::parse(bad).is_err(), "{bad} accepted");
        }
        assert!(is_flv_request(&Method::GET, "/live/cam.flv"));
        assert!(!is_flv_request(&Method::POST, "/live/cam.flv"));
        assert!(!is_flv_request(&Method::GET, "/open/1"));
    }
}
