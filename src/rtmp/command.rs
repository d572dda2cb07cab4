//! NetConnection/NetStream command shapes: parsing a command message into name, transaction and
//! arguments, the connect request, and the app/instance/stream-name conventions of RTMP URLs.

use super::amf::Amf0Value;

/// A decoded command message (`connect`, `play`, `_result`, a client-callable method, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub name: String,
    pub transaction_id: f64,
    /// Usually `Null` for everything but `connect`.
    pub command_object: Amf0Value,
    pub args: Vec<Amf0Value>,
}

impl Command {
    /// Splits decoded AMF values into a command; `None` when the first value is not a string.
    pub fn from_values(values: Vec<Amf0Value>) -> Option<Command> {
        let mut it = values.into_iter();
        let name = it.next()?.as_str()?.to_owned();
        // Some clients omit the transaction id and object on fire-and-forget calls.
        let transaction_id = it.next().and_then(|v| v.as_f64()).unwrap_or(0.0);
        let command_object = it.next().unwrap_or(Amf0Value::Null);
        Some(Command {
            name,
            transaction_id,
            command_object,
            args: it.collect(),
        })
    }

    /// The n-th argument after the command object.
    pub fn arg(&self, n: usize) -> Option<&Amf0Value> {
        self.args.get(n)
    }
}

/// Where a client connected: `rtmp://host/app[/instance][?query]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPath {
    pub app: String,
    /// `_definst_` when the URL names none, as FMS did.
    pub instance: String,
    /// The query string of the `app` field or the tcUrl, without `?`, kept for auth hooks.
    pub query: Option<String>,
}

pub const DEFAULT_INSTANCE: &str = "_definst_";

impl AppPath {
    /// Parses the connect command's `app` field (ffmpeg and librtmp put `app/instance` there when
    /// the URL has three path segments), taking a query from the tcUrl when the app has none.
    pub fn parse(app_field: &str, tc_url: Option<&str>) -> AppPath {
        let (path, mut query) = split_query(app_field);
        if query.is_none() {
            query = tc_url.and_then(|u| split_query(u).1);
        }
        let path = path.trim_matches('/');
        let (app, instance) = match path.split_once('/') {
            Some((a, i)) if !i.is_empty() => (a, i.trim_end_matches('/')),
            Some((a, _)) => (a, DEFAULT_INSTANCE),
            None => (path, DEFAULT_INSTANCE),
        };
        AppPath {
            app: app.to_owned(),
            instance: instance.to_owned(),
            query: query.map(str::to_owned),
        }
    }
}

/// A stream name as given to `publish`/`play`, with its `?query` split off but kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamName {
    pub name: String,
    pub query: Option<String>,
}

impl StreamName {
    pub fn parse(raw: &str) -> StreamName {
        let (name, query) = split_query(raw);
        StreamName {
            name: name.to_owned(),
            query: query.map(str::to_owned),
        }
    }
}

impl std::fmt::Display for StreamName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

fn split_query(s: &str) -> (&str, Option<&str>) {
    match s.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (s, None),
    }
}

/// The info object of an `onStatus` / `_result` / `_error`.
pub fn status_object(level: &str, code: &str, description: &str) -> Amf0Value {
    Amf0Value::object([
        ("level", Amf0Value::string(level)),
        ("code", Amf0Value::string(code)),
        ("description", Amf0Value::string(description)),
    ])
}

/// The information a client sent with `connect`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectRequest {
    pub transaction_id: f64,
    pub path: AppPath,
    pub tc_url: Option<String>,
    pub flash_ver: Option<String>,
    pub swf_url: Option<String>,
    pub page_url: Option<String>,
    /// 0 (AMF0) or 3 (AMF3); echoed in the `_result`.
    pub object_encoding: f64,
    /// The whole command object, for app hooks.
    pub command_object: Amf0Value,
    /// Extra arguments after the command object (`ffmpeg -rtmp_conn`, `rtmpdump -C`).
    pub args: Vec<Amf0Value>,
}

impl ConnectRequest {
    pub fn from_command(cmd: &Command) -> ConnectRequest {
        let obj = &cmd.command_object;
        let text = |k: &str| obj.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let tc_url = text("tcUrl");
        let app_field = text("app").unwrap_or_default();
        ConnectRequest {
            transaction_id: cmd.transaction_id,
            path: AppPath::parse(&app_field, tc_url.as_deref()),
            flash_ver: text("flashVer").or_else(|| text("flashver")),
            swf_url: text("swfUrl"),
            page_url: text("pageUrl"),
            object_encoding: obj
                .get("objectEncoding")
                .and_then(|v| v.as_f64())
                .unwrap_or(0.0),
            tc_url,
            command_object: obj.clone(),
            args: cmd.args.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_path_forms() {
        let p = AppPath::parse("live", Some("rtmp://h/live"));
        assert_eq!((p.app.as_str(), p.instance.as_str()), ("live", "_definst_"));
        assert_eq!(p.query, None);
        let p = AppPath::parse("live/room1", None);
        assert_eq!((p.app.as_str(), p.instance.as_str()), ("live", "room1"));
        let p = AppPath::parse("live?token=a", None);
        assert_eq!(
            (p.app.as_str(), p.query.as_deref()),
            ("live", Some("token=a"))
        );
        let p = AppPath::parse("live/", Some("rtmp://h:1935/live/?t=1"));
        assert_eq!(p.instance, "_definst_");
        assert_eq!(p.query.as_deref(), Some("t=1"));
    }

    #[test]
    fn stream_names_keep_query() {
        let n = StreamName::parse("key?token=x&y=1");
        assert_eq!(n.name, "key");
        assert_eq!(n.query.as_deref(), Some("token=x&y=1"));
        assert_eq!(StreamName::parse("plain").query, None);
    }

    #[test]
    fn command_from_values() {
        let c = Command::from_values(vec![
            Amf0Value::string("play"),
            Amf0Value::Number(4.0),
            Amf0Value::Null,
            Amf0Value::string("key"),
            Amf0Value::Number(-2.0),
        ])
        .unwrap();
        assert_eq!(c.name, "play");
        assert_eq!(c.transaction_id, 4.0);
        assert_eq!(c.arg(0).and_then(|v| v.as_str()), Some("key"));
        assert!(Command::from_values(vec![Amf0Value::Number(1.0)]).is_none());
    }
}
