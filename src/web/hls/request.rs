//! What an HLS request names: the stream (`/app[/instance]/stream/`, checked like HTTP-FLV
//! paths), the file (playlist, init segment, segment, part) and the query (`session`,
//! `_HLS_msn`, `_HLS_part`; the rest is the app's query, `?token=` included).

use hyper::Method;

use super::super::path::StreamPath;

/// A file of a stream's HLS directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// `index.m3u8`
    Playlist,
    /// `init-<version>.mp4`, or `init.mp4` for the newest.
    Init(Option<u32>),
    /// `seg-<msn>.m4s`
    Segment(u64),
    /// `part-<msn>.<index>.m4s`
    Part(u64, u32),
}

fn number<T: std::str::FromStr>(s: &str) -> Option<T> {
    (!s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

impl Resource {
    fn parse(file: &str) -> Option<Resource> {
        if file == "index.m3u8" {
            return Some(Resource::Playlist);
        }
        if file == "init.mp4" {
            return Some(Resource::Init(None));
        }
        if let Some(v) = file
            .strip_prefix("init-")
            .and_then(|f| f.strip_suffix(".mp4"))
        {
            return number(v).map(|v| Resource::Init(Some(v)));
        }
        if let Some(n) = file
            .strip_prefix("seg-")
            .and_then(|f| f.strip_suffix(".m4s"))
        {
            return number(n).map(Resource::Segment);
        }
        let rest = file.strip_prefix("part-")?.strip_suffix(".m4s")?;
        let (msn, part) = rest.split_once('.')?;
        Some(Resource::Part(number(msn)?, number(part)?))
    }
}

/// True for `GET`/`HEAD`/`OPTIONS` of a path whose last segment is an HLS file name.
pub fn is_hls_request(method: &Method, path: &str) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        && path
            .rsplit_once('/')
            .is_some_and(|(_, file)| Resource::parse(file).is_some())
}

/// The stream and the file a path names.
pub fn parse_path(path: &str) -> Result<(StreamPath, Resource), &'static str> {
    let usage = "not a stream path: use /app[/instance]/stream/index.m3u8";
    let (dir, file) = path.rsplit_once('/').ok_or(usage)?;
    let resource = Resource::parse(file).ok_or(usage)?;
    // The stream directory is checked exactly as an HTTP-FLV path is.
    let stream = StreamPath::parse(&format!("{dir}.flv")).map_err(|e| {
        if e.starts_with("not a stream path") {
            usage
        } else {
            e
        }
    })?;
    Ok((stream, resource))
}

/// The query of an HLS request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub session: Option<String>,
    pub msn: Option<u64>,
    pub part: Option<u32>,
    /// Everything else, in order: what the app's hooks see as the client's query.
    pub app: String,
}

/// Longest session id accepted (ids are 32 hex digits).
const MAX_SESSION: usize = 64;

/// Splits the query; `Err` (a 400 with the reason) for a bad `_HLS_*` value or session id.
pub fn parse_query(q: &str) -> Result<Query, String> {
    let mut out = Query::default();
    let mut app = Vec::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "session" => {
                if v.is_empty()
                    || v.len() > MAX_SESSION
                    || !v.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    return Err("session must be the hex id the gateway handed out".into());
                }
                out.session = Some(v.to_ascii_lowercase());
            }
            "_HLS_msn" => {
                out.msn = Some(number(v).ok_or_else(|| format!("_HLS_msn={v} is not a number"))?)
            }
            "_HLS_part" => {
                out.part = Some(number(v).ok_or_else(|| format!("_HLS_part={v} is not a number"))?)
            }
            // Delta updates are not offered (no CAN-SKIP-UNTIL): a full playlist answers.
            "_HLS_skip" => {}
            _ => app.push(pair),
        }
    }
    if out.part.is_some() && out.msn.is_none() {
        return Err("_HLS_part needs _HLS_msn".into());
    }
    out.app = app.join("&");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_paths() {
        let (p, r) = parse_path("/live/cam/index.m3u8").unwrap();
        assert_eq!(
            (p.app.as_str(), p.instance.as_str(), p.stream.as_str()),
            ("live", "_definst_", "cam")
        );
        assert_eq!(r, Resource::Playlist);
        let (p, r) = parse_path("/live/room%201/cam/part-12.3.m4s").unwrap();
        assert_eq!((p.instance.as_str(), r), ("room 1", Resource::Part(12, 3)));
        assert_eq!(
            parse_path("/a/b/seg-7.m4s").unwrap().1,
            Resource::Segment(7)
        );
        assert_eq!(
            parse_path("/a/b/init-2.mp4").unwrap().1,
            Resource::Init(Some(2))
        );
        assert_eq!(parse_path("/a/b/init.mp4").unwrap().1, Resource::Init(None));
        for bad in [
            "/cam/index.m3u8",
            "/a/b/c/d/index.m3u8",
            "/live/../index.m3u8",
            "/live/%2e%2e/index.m3u8",
            "/live//index.m3u8",
            "/live/a%2Fb/index.m3u8",
            "/live/%zz/index.m3u8",
            "/live/cam/seg-x.m4s",
            "/live/cam/seg-+1.m4s",
            "/live/cam/part-1.m4s",
            "/live/cam/seg-99999999999999999999999.m4s",
            "/live/cam/other.m3u8",
        ] {
            assert!(parse_path(bad).is_err(), "{bad} accepted");
        }
        assert!(
            parse_path("/cam/index.m3u8")
                .unwrap_err()
                .contains("index.m3u8")
        );
        assert!(is_hls_request(&Method::GET, "/live/cam/index.m3u8"));
        assert!(is_hls_request(&Method::HEAD, "/live/cam/part-1.0.m4s"));
        assert!(!is_hls_request(&Method::POST, "/live/cam/index.m3u8"));
        assert!(!is_hls_request(&Method::GET, "/live/cam.flv"));
        assert!(!is_hls_request(&Method::GET, "/open/1"));
        assert!(!is_hls_request(&Method::GET, "/fcs/ident2"));
    }

    #[test]
    fn queries() {
        let q = parse_query("token=abc&_HLS_msn=5&_HLS_part=2&x=1&_HLS_skip=YES").unwrap();
        assert_eq!(
            (q.msn, q.part, q.app.as_str()),
            (Some(5), Some(2), "token=abc&x=1")
        );
        let q = parse_query("session=ABCDEF0123&_HLS_msn=0").unwrap();
        assert_eq!(q.session.as_deref(), Some("abcdef0123"));
        assert_eq!(q.app, "");
        for bad in [
            "_HLS_msn=-1",
            "_HLS_msn=1e3",
            "_HLS_msn=",
            "_HLS_part=1",
            "_HLS_msn=1&_HLS_part=x",
            "session=",
            "session=zz",
        ] {
            assert!(parse_query(bad).is_err(), "{bad} accepted");
        }
        assert!(parse_query(&format!("session={}", "a".repeat(65))).is_err());
    }
}
