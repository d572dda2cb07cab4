//! The wasmgate guest SDK: the generated bindings of `wit/app.wit` plus an FMS-like [`App`] trait,
//! so a Rust application reads like a `main.asc` (`export_app!(MyApp)` and a few handlers).
//!
//! AMF values arrive and leave as [`Value`] (JSON): the host converts AMF <-> JSON at the
//! boundary, because WIT has no recursive types and JSON is what every guest language speaks.

pub use serde_json::{self, Value, json};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "app",
        pub_export_macro: true,
        export_macro_name: "__export_wasmgate_app",
        default_bindings_module: "wasmgate_guest::bindings",
    });
}

use bindings::wasmgate::app::host as h;
pub use bindings::wasmgate::app::types::{
    Access, ClientId, ClientInfo, ConnectDecision, DataDecision, Level, Redirect, SharedObject,
    SoChangeDecision, StreamInfo,
};

/// An application. Every handler has a default: connects, publishes and plays are allowed,
/// unknown methods answer `_error` "Method not found". One value lives per instance.
#[allow(unused_variables)]
pub trait App: Default + 'static {
    /// The instance starts; `settings` is the app's `[settings]` table.
    fn start(&mut self, app: &str, instance: &str, settings: &Value) -> Result<(), String> {
        Ok(())
    }
    fn stop(&mut self) {}
    /// `args` are the extra connect arguments (`ffmpeg -rtmp_conn`, `rtmpdump -C`).
    fn on_connect(&mut self, client: &ClientInfo, args: &[Value]) -> ConnectDecision {
        ConnectDecision::Accept
    }
    fn on_disconnect(&mut self, client: ClientId) {}
    fn on_publish(&mut self, client: ClientId, stream: &str, query: &str) -> Access {
        Access::Allow
    }
    fn on_unpublish(&mut self, client: ClientId, stream: &str) {}
    fn on_play(&mut self, client: ClientId, stream: &str, query: &str) -> Access {
        Access::Allow
    }
    fn on_stop(&mut self, client: ClientId, stream: &str) {}
    /// `NetConnection.call(method, responder, args...)`: Ok is sent as `_result`, Err as `_error`.
    fn on_call(&mut self, client: ClientId, method: &str, args: &[Value]) -> Result<Value, String> {
        Err(format!("Method not found ({method})."))
    }
    /// The client answered a [`call_with_result`].
    fn on_call_result(&mut self, client: ClientId, call_id: u64, ok: bool, value: Value) {}
    fn on_timer(&mut self, id: u64) {}
    /// A data message (`NetStream.send(handler, args...)`); `stream` is empty for one sent on
    /// the connection. Return [`DataDecision::Relay`], [`DataDecision::Drop`] or [`rewrite`].
    fn on_data(
        &mut self,
        client: ClientId,
        stream: &str,
        handler: &str,
        args: &[Value],
    ) -> DataDecision {
        DataDecision::Relay
    }
    /// A client asks to use shared object `so` (`SharedObject.connect`); denied, it gets
    /// `SharedObject.NoReadAccess`.
    fn on_so_connect(&mut self, client: ClientId, so: &SharedObject) -> Access {
        Access::Allow
    }
    /// A subscribed client sets `key` to `value`, or deletes it (`value` is `None`). Return
    /// [`SoChangeDecision::Allow`], [`SoChangeDecision::Deny`] (the client gets its old value
    /// back) or [`so::rewrite`].
    fn on_so_change(
        &mut self,
        client: ClientId,
        so: &SharedObject,
        key: &str,
        value: Option<&Value>,
    ) -> SoChangeDecision {
        SoChangeDecision::Allow
    }
    /// A subscribed client's `SharedObject.send(handler, args...)`: relay, drop or [`rewrite`].
    fn on_so_send(
        &mut self,
        client: ClientId,
        so: &SharedObject,
        handler: &str,
        args: &[Value],
    ) -> DataDecision {
        DataDecision::Relay
    }
}

/// Relays a data message with new arguments (the handler name stays).
pub fn rewrite(args: &[Value]) -> DataDecision {
    DataDecision::Rewrite(Value::from(args.to_vec()).to_string())
}

/// Exports an [`App`] type as the component's `guest` interface.
#[macro_export]
macro_rules! export_app {
    ($app:ty) => {
        const _: () = {
            use $crate::bindings::exports::wasmgate::app::guest::Guest;
            use $crate::{App, Value};
            struct Export;
            ::std::thread_local! {
                static STATE: ::std::cell::RefCell<Option<$app>> =
                    const { ::std::cell::RefCell::new(None) };
            }
            fn with<R>(f: impl FnOnce(&mut $app) -> R) -> R {
                STATE.with(|s| f(s.borrow_mut().get_or_insert_with(Default::default)))
            }
            impl Guest for Export {
                fn start(app: String, instance: String, settings: String) -> Result<(), String> {
                    let settings = $crate::parse(&settings);
                    with(|a| a.start(&app, &instance, &settings))
                }
                fn stop() {
                    with(|a| a.stop())
                }
                fn on_connect(client: $crate::ClientInfo, args: String) -> $crate::ConnectDecision {
                    let args = $crate::parse_list(&args);
                    with(|a| a.on_connect(&client, &args))
                }
                fn on_disconnect(client: u64) {
                    with(|a| a.on_disconnect(client))
                }
                fn on_publish(client: u64, stream: String, query: String) -> $crate::Access {
                    with(|a| a.on_publish(client, &stream, &query))
                }
                fn on_unpublish(client: u64, stream: String) {
                    with(|a| a.on_unpublish(client, &stream))
                }
                fn on_play(client: u64, stream: String, query: String) -> $crate::Access {
                    with(|a| a.on_play(client, &stream, &query))
                }
                fn on_stop(client: u64, stream: String) {
                    with(|a| a.on_stop(client, &stream))
                }
                fn on_call(client: u64, method: String, args: String) -> Result<String, String> {
                    let args = $crate::parse_list(&args);
                    with(|a| a.on_call(client, &method, &args)).map(|v| v.to_string())
                }
                fn on_call_result(client: u64, call_id: u64, ok: bool, value: String) {
                    let value: Value = $crate::parse(&value);
                    with(|a| a.on_call_result(client, call_id, ok, value))
                }
                fn on_timer(id: u64) {
                    with(|a| a.on_timer(id))
                }
                fn on_data(
                    client: u64,
                    stream: String,
                    handler: String,
                    args: String,
                ) -> $crate::DataDecision {
                    let args = $crate::parse_list(&args);
                    with(|a| a.on_data(client, &stream, &handler, &args))
                }
                fn on_so_connect(client: u64, so: $crate::SharedObject) -> $crate::Access {
                    with(|a| a.on_so_connect(client, &so))
                }
                fn on_so_change(
                    client: u64,
                    so: $crate::SharedObject,
                    key: String,
                    value: Option<String>,
                ) -> $crate::SoChangeDecision {
                    let value = value.map(|v| $crate::parse(&v));
                    with(|a| a.on_so_change(client, &so, &key, value.as_ref()))
                }
                fn on_so_send(
                    client: u64,
                    so: $crate::SharedObject,
                    handler: String,
                    args: String,
                ) -> $crate::DataDecision {
                    let args = $crate::parse_list(&args);
                    with(|a| a.on_so_send(client, &so, &handler, &args))
                }
            }
    $crate::bindings::__export_wasmgate_app!(Export with_types_in $crate::bindings);
        };
    };
}

#[doc(hidden)]
pub fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

#[doc(hidden)]
pub fn parse_list(text: &str) -> Vec<Value> {
    match parse(text) {
        Value::Array(v) => v,
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

// ---- host calls, named after their FMS counterparts ----

pub fn trace(msg: &str) {
    h::log(Level::Trace, msg)
}
pub fn debug(msg: &str) {
    h::log(Level::Debug, msg)
}
pub fn info(msg: &str) {
    h::log(Level::Info, msg)
}
pub fn warn(msg: &str) {
    h::log(Level::Warn, msg)
}
pub fn error(msg: &str) {
    h::log(Level::Error, msg)
}

/// The app's `[settings]` table.
pub fn settings() -> Value {
    parse(&h::settings())
}

/// `application.acceptConnection` for a connect left [`ConnectDecision::Pending`].
pub fn accept(client: ClientId) {
    h::accept(client)
}
/// `application.rejectConnection`: `description` is what the client sees.
pub fn reject(client: ClientId, description: &str) {
    h::reject(client, description)
}
/// Rejects with `ex.code = 302`, `ex.redirect = url`.
pub fn redirect(client: ClientId, url: &str, description: &str) {
    h::redirect(client, url, description)
}

/// `Client.call(method, null, args...)`: no answer is expected.
pub fn call(client: ClientId, method: &str, args: &[Value]) -> Result<(), String> {
    h::call_client(
        client,
        method,
        &Value::from(args.to_vec()).to_string(),
        false,
    )
    .map(|_| ())
}
/// `Client.call(method, responder, args...)`: the answer arrives in [`App::on_call_result`]
/// with the returned id.
pub fn call_with_result(client: ClientId, method: &str, args: &[Value]) -> Result<u64, String> {
    h::call_client(
        client,
        method,
        &Value::from(args.to_vec()).to_string(),
        true,
    )
}
/// `application.broadcastMsg(method, args...)` to every client of the instance.
pub fn broadcast(method: &str, args: &[Value]) {
    h::broadcast(method, &Value::from(args.to_vec()).to_string())
}
/// `application.disconnect(client)`.
pub fn disconnect(client: ClientId, reason: &str) {
    h::disconnect(client, reason)
}

/// `setTimeout`: [`App::on_timer`] gets the id once, after `ms`.
pub fn set_timeout(ms: u32) -> u64 {
    h::set_timer(ms, false)
}
/// `setInterval`: [`App::on_timer`] gets the id every `ms`.
pub fn set_interval(ms: u32) -> u64 {
    h::set_timer(ms, true)
}
pub fn clear_timer(id: u64) {
    h::clear_timer(id)
}

/// The instance's key-value store (kept across guest restarts and reloads).
pub mod kv {
    use super::h;
    pub fn get(key: &str) -> Option<String> {
        h::kv_get(key)
    }
    pub fn set(key: &str, value: &str) {
        h::kv_set(key, value)
    }
    pub fn delete(key: &str) {
        h::kv_delete(key)
    }
    pub fn keys() -> Vec<String> {
        h::kv_keys()
    }
}

/// The instance's remote shared objects (FMS's server-side `SharedObject`). The first call
/// naming an object opens it: a temporary one is created, a persistent one loaded; it stays
/// while the instance runs. Changes reach subscribers at the gateway's next tick.
pub mod so {
    use super::{SharedObject, SoChangeDecision, Value, h};

    /// `SharedObject.get(name, false)`.
    pub fn temporary(name: &str) -> SharedObject {
        SharedObject {
            name: name.to_owned(),
            persistent: false,
        }
    }
    /// `SharedObject.get(name, true)`: kept by the gateway across restarts.
    pub fn persistent(name: &str) -> SharedObject {
        SharedObject {
            name: name.to_owned(),
            persistent: true,
        }
    }
    pub fn get(so: &SharedObject, key: &str) -> Result<Option<Value>, String> {
        Ok(h::so_get(so, key)?.map(|v| super::parse(&v)))
    }
    pub fn set(so: &SharedObject, key: &str, value: &Value) -> Result<(), String> {
        h::so_set(so, key, &value.to_string())
    }
    /// True when the slot was there.
    pub fn delete(so: &SharedObject, key: &str) -> Result<bool, String> {
        h::so_delete(so, key)
    }
    /// `handler(args...)` to every subscriber.
    pub fn send(so: &SharedObject, handler: &str, args: &[Value]) -> Result<(), String> {
        h::so_send(so, handler, &Value::from(args.to_vec()).to_string())
    }
    pub fn keys(so: &SharedObject) -> Result<Vec<String>, String> {
        h::so_keys(so)
    }
    /// Holds changes back until [`unlock`] and makes them one version; a lock still held when
    /// the handler returns is released then.
    pub fn lock(so: &SharedObject) -> Result<(), String> {
        h::so_lock(so)
    }
    pub fn unlock(so: &SharedObject) -> Result<(), String> {
        h::so_unlock(so)
    }
    /// Applies a client's change with this value instead of the one it sent.
    pub fn rewrite(value: &Value) -> SoChangeDecision {
        SoChangeDecision::Rewrite(value.to_string())
    }
}

pub fn clients() -> Vec<ClientId> {
    h::clients()
}
pub fn client_info(client: ClientId) -> Option<ClientInfo> {
    h::get_client(client)
}
pub fn streams() -> Vec<StreamInfo> {
    h::streams()
}

/// Records `stream` of this instance to `<name>.flv` (`""`: the stream's name) under the
/// gateway's record folder; a stream that is not live yet is recorded from its next publish.
/// Returns the file's path under the record folder.
pub fn record_start(stream: &str, name: &str) -> Result<String, String> {
    h::record_start(stream, name)
}
/// Stops the recording of `stream`; false when none ran.
pub fn record_stop(stream: &str) -> bool {
    h::record_stop(stream)
}

/// The value of `key` in a URL query (`a=1&token=x`), percent-decoded.
pub fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
