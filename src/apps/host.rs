//! The host side of `wit/app.wit`: what a guest may call (`host` interface), the per-instance
//! state those calls act on, and the sandbox around it (WASI context, memory limiter, log pipes).

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tracing::{debug, error, info, trace, warn};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

use super::bindings::wasmgate::app::{host, types};
use super::json;
use super::manifest::{Grants, Network};
use super::messages::{ClientMeta, ToConn};
use crate::media::record::{Origin, Recordings, record_path};
use crate::media::{Registry, StreamKey};
use crate::state::shared_objects::SoAccess;
use crate::state::{Scope, StateStore};

/// Bounds on what one instance may hold through host calls (key-value bounds are the store's).
const MAX_TIMERS: usize = 1024;
/// Largest JSON a guest may send to a client in one call.
pub const MAX_CALL_JSON: usize = 64 * 1024;
const MIN_TIMER: Duration = Duration::from_millis(10);

#[derive(Clone)]
pub struct Client {
    pub meta: ClientMeta,
    pub tx: mpsc::Sender<ToConn>,
    /// Connect not decided yet (the guest answered `pending`).
    pub pending: bool,
}

impl Client {
    /// Queues a message for the connection; a full queue drops it (the connection is stuck).
    pub fn send(&self, msg: ToConn) -> Result<(), String> {
        self.tx.try_send(msg).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => "client queue full".to_owned(),
            mpsc::error::TrySendError::Closed(_) => "client is gone".to_owned(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Timer {
    pub due: Instant,
    pub every: Option<Duration>,
}

/// Everything an instance keeps across guest restarts and reloads.
#[derive(Clone, Default)]
pub struct InstanceState {
    pub app: String,
    pub instance: String,
    pub clients: BTreeMap<u64, Client>,
    /// Where `kv-*` reads and writes, under `scope`. Shared with every other instance, so a
    /// clone of this state (a reload's trial start) sees the same data rather than a copy.
    pub store: Option<Arc<dyn StateStore>>,
    pub scope: Scope,
    pub timers: HashMap<u64, Timer>,
    next_timer: u64,
    next_call: u64,
    pub registry: Option<Arc<Registry>>,
    /// Where `record-start` / `record-stop` act; none in a trial start.
    pub recordings: Option<Arc<Recordings>>,
    /// Where `so-*` calls act (shared with clients' shared objects, like `store`).
    pub shared_objects: Option<Arc<dyn SoAccess>>,
    /// Shared-object locks the running handler took and has not released, as (name, persistent).
    pub so_locks: Vec<(String, bool)>,
}

impl InstanceState {
    pub fn new(
        app: &str,
        instance: &str,
        registry: Arc<Registry>,
        store: Arc<dyn StateStore>,
    ) -> InstanceState {
        InstanceState {
            app: app.to_owned(),
            instance: instance.to_owned(),
            registry: Some(registry),
            store: Some(store),
            scope: Scope::new(app, instance),
            ..InstanceState::default()
        }
    }

    pub fn with_recordings(mut self, recordings: Arc<Recordings>) -> InstanceState {
        self.recordings = Some(recordings);
        self
    }

    pub fn with_shared_objects(mut self, shared_objects: Arc<dyn SoAccess>) -> InstanceState {
        self.shared_objects = Some(shared_objects);
        self
    }

    /// The earliest timer, if any.
    pub fn next_timer(&self) -> Option<(u64, Instant)> {
        self.timers
            .iter()
            .min_by_key(|(_, t)| t.due)
            .map(|(id, t)| (*id, t.due))
    }

    /// Marks a timer fired: rescheduled when repeating, else removed. False when it is gone.
    pub fn fire_timer(&mut self, id: u64, now: Instant) -> bool {
        match self.timers.get_mut(&id) {
            Some(t) => {
                match t.every {
                    Some(every) => t.due = now + every,
                    None => {
                        self.timers.remove(&id);
                    }
                }
                true
            }
            None => false,
        }
    }
}

/// Caps an instance's linear memory; remembers a refusal so a failure can be named.
pub struct MemLimiter {
    pub cap: usize,
    pub hit: bool,
}

impl wasmtime::ResourceLimiter for MemLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The `Store` data of one instance.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: MemLimiter,
    pub st: InstanceState,
    pub settings: Arc<str>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl HostState {
    pub fn new(st: InstanceState, grants: &Grants, memory: usize, settings: Arc<str>) -> HostState {
        let mut b = WasiCtx::builder();
        // No inherited environment, no host filesystem, no sockets; only what `[grants]` lists.
        for (k, v) in &grants.env {
            b.env(k, v);
        }
        for d in &grants.dirs {
            let perms = if d.write {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            // Checked when the manifest was loaded; a folder removed since is left out (the
            // guest then finds no such directory) rather than failing the instance.
            if let Err(e) = b.preopened_dir(&d.resolved, &d.guest, perms) {
                warn!(app = %st.app, dir = %d.resolved.display(), error = %e, "granted directory unavailable");
            }
        }
        match &grants.network {
            Network::None => {}
            Network::All => {
                b.allow_tcp(true).allow_udp(true).allow_ip_name_lookup(true);
                b.inherit_network();
            }
            Network::Allow(rules) => {
                let rules = Arc::new(rules.clone());
                b.allow_tcp(true).allow_udp(true);
                b.socket_addr_check(move |addr, usage| {
                    let ok = match usage {
                        // Outgoing traffic goes only to listed addresses.
                        SocketAddrUse::TcpConnect | SocketAddrUse::UdpSend => {
                            rules.iter().any(|r| r.allows(&addr))
                        }
                        // Replies on a socket the guest opened towards a listed address.
                        SocketAddrUse::UdpReceive => rules.iter().any(|r| r.allows(&addr)),
                        // The implicit (or explicit) bind to an ephemeral local port that a
                        // connect or send needs; no listening on a chosen port.
                        SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => addr.port() == 0,
                        SocketAddrUse::TcpListen | SocketAddrUse::TcpAccept => false,
                    };
                    Box::pin(async move { ok })
                });
            }
        }
        if grants.stdio {
            let tag = format!("{}/{}", st.app, st.instance);
            b.stdout(GuestLog {
                tag: tag.clone(),
                stream: "stdout",
            });
            b.stderr(GuestLog {
                tag,
                stream: "stderr",
            });
        }
        HostState {
            wasi: b.build(),
            table: ResourceTable::new(),
            limiter: MemLimiter {
                cap: memory,
                hit: false,
            },
            st,
            settings,
        }
    }

    /// A stream of this instance.
    fn stream_key(&self, name: &str) -> StreamKey {
        StreamKey {
            app: self.st.app.clone(),
            instance: self.st.instance.clone(),
            name: name.to_owned(),
        }
    }

    fn client(&self, id: u64) -> Option<&Client> {
        self.st.clients.get(&id)
    }

    /// Settles a pending connect; false when the client is unknown or already decided.
    fn decide(&mut self, id: u64, msg: ToConn, keep: bool) {
        let Some(c) = self.st.clients.get_mut(&id) else {
            debug!(client = id, "decision for an unknown client ignored");
            return;
        };
        if !c.pending {
            debug!(
                client = id,
                "decision for a connect already decided ignored"
            );
            return;
        }
        c.pending = false;
        let _ = c.send(msg);
        if !keep {
            self.st.clients.remove(&id);
        }
    }
}

impl types::Host for HostState {}

impl host::Host for HostState {
    fn log(&mut self, level: types::Level, message: String) {
        let (app, inst) = (&self.st.app, &self.st.instance);
        let msg = truncate(&message, 4096);
        match level {
            types::Level::Trace => trace!(app = %app, instance = %inst, "{msg}"),
            types::Level::Debug => debug!(app = %app, instance = %inst, "{msg}"),
            types::Level::Info => info!(app = %app, instance = %inst, "{msg}"),
            types::Level::Warn => warn!(app = %app, instance = %inst, "{msg}"),
            types::Level::Error => error!(app = %app, instance = %inst, "{msg}"),
        }
    }

    fn settings(&mut self) -> String {
        self.settings.to_string()
    }

    fn accept(&mut self, client: u64) {
        self.decide(client, ToConn::ConnectAccept, true);
    }

    fn reject(&mut self, client: u64, description: String) {
        self.decide(client, ToConn::ConnectReject(description), false);
    }

    fn redirect(&mut self, client: u64, url: String, description: String) {
        self.decide(client, ToConn::ConnectRedirect { url, description }, false);
    }

    fn call_client(
        &mut self,
        client: u64,
        method: String,
        args: String,
        want_result: bool,
    ) -> Result<u64, String> {
        if args.len() > MAX_CALL_JSON {
            return Err(format!("arguments larger than {MAX_CALL_JSON} bytes"));
        }
        let args = json::parse_args(&args).map_err(|e| e.to_string())?;
        let call_id = if want_result {
            self.st.next_call += 1;
            self.st.next_call
        } else {
            0
        };
        let c = self.client(client).ok_or("client is gone")?;
        if c.pending {
            return Err("client is not connected yet".into());
        }
        c.send(ToConn::Call {
            method,
            args,
            call_id,
        })?;
        Ok(call_id)
    }

    fn broadcast(&mut self, method: String, args: String) {
        if args.len() > MAX_CALL_JSON {
            warn!(app = %self.st.app, "broadcast arguments too large; dropped");
            return;
        }
        let args = match json::parse_args(&args) {
            Ok(a) => a,
            Err(e) => {
                warn!(app = %self.st.app, error = %e, "broadcast dropped");
                return;
            }
        };
        for c in self.st.clients.values().filter(|c| !c.pending) {
            let _ = c.send(ToConn::Call {
                method: method.clone(),
                args: args.clone(),
                call_id: 0,
            });
        }
    }

    fn disconnect(&mut self, client: u64, reason: String) {
        if let Some(c) = self.client(client) {
            let _ = c.send(ToConn::Disconnect(reason));
        }
    }

    fn set_timer(&mut self, delay_ms: u32, repeat: bool) -> u64 {
        if self.st.timers.len() >= MAX_TIMERS {
            warn!(app = %self.st.app, max = MAX_TIMERS, "timer limit reached; timer not set");
            return 0;
        }
        let d = Duration::from_millis(delay_ms.into()).max(MIN_TIMER);
        self.st.next_timer += 1;
        let id = self.st.next_timer;
        self.st.timers.insert(
            id,
            Timer {
                due: Instant::now() + d,
                every: repeat.then_some(d),
            },
        );
        id
    }

    fn clear_timer(&mut self, id: u64) {
        self.st.timers.remove(&id);
    }

    // The WIT calls cannot fail, so a store error is logged and the call does what an empty or
    // full store would: nothing read, nothing written. The guest keeps running.
    async fn kv_get(&mut self, key: String) -> Option<String> {
        let store = self.st.store.clone()?;
        match store.get(&self.st.scope, &key).await {
            Ok(v) => v,
            Err(e) => {
                warn!(app = %self.st.app, instance = %self.st.instance, error = %e, "kv-get failed");
                None
            }
        }
    }

    async fn kv_set(&mut self, key: String, value: String) {
        let Some(store) = self.st.store.clone() else {
            return;
        };
        if let Err(e) = store.set(&self.st.scope, &key, &value).await {
            warn!(app = %self.st.app, instance = %self.st.instance, error = %e, "kv-set ignored");
        }
    }

    async fn kv_delete(&mut self, key: String) {
        let Some(store) = self.st.store.clone() else {
            return;
        };
        if let Err(e) = store.delete(&self.st.scope, &key).await {
            warn!(app = %self.st.app, instance = %self.st.instance, error = %e, "kv-delete failed");
        }
    }

    async fn kv_keys(&mut self) -> Vec<String> {
        let Some(store) = self.st.store.clone() else {
            return Vec::new();
        };
        match store.keys(&self.st.scope).await {
            Ok(k) => k,
            Err(e) => {
                warn!(app = %self.st.app, instance = %self.st.instance, error = %e, "kv-keys failed");
                Vec::new()
            }
        }
    }

    fn clients(&mut self) -> Vec<u64> {
        self.st
            .clients
            .values()
            .filter(|c| !c.pending)
            .map(|c| c.meta.id)
            .collect()
    }

    fn get_client(&mut self, client: u64) -> Option<types::ClientInfo> {
        self.client(client).map(|c| c.meta.to_wit())
    }

    fn streams(&mut self) -> Vec<types::StreamInfo> {
        let Some(reg) = &self.st.registry else {
            return Vec::new();
        };
        reg.snapshot()
            .into_iter()
            .filter(|(k, _, _)| k.app == self.st.app && k.instance == self.st.instance)
            .map(|(k, publishing, players)| types::StreamInfo {
                name: k.name,
                publishing,
                players: players as u32,
            })
            .collect()
    }

    fn record_start(&mut self, stream: String, name: String) -> Result<String, String> {
        let (Some(reg), Some(recordings)) = (&self.st.registry, &self.st.recordings) else {
            return Err("recording is not available in a trial start".to_owned());
        };
        let key = self.stream_key(&stream);
        let file_key = StreamKey {
            name: if name.is_empty() { stream } else { name },
            ..key.clone()
        };
        let dir = reg.config().record_dir.clone();
        let path = record_path(&dir, &file_key).map_err(|e| e.to_string())?;
        let info = recordings
            .start(key, path, false, Origin::Guest)
            .map_err(|e| e.to_string())?;
        info!(app = %self.st.app, stream = %info.stream, file = %info.file.display(), "recording started by the app");
        // The guest sees where under the record folder, not the host's absolute path.
        Ok(info
            .file
            .strip_prefix(&dir)
            .unwrap_or(&info.file)
            .to_string_lossy()
            .into_owned())
    }

    async fn so_get(
        &mut self,
        so: types::SharedObject,
        key: String,
    ) -> Result<Option<String>, String> {
        self.so_get_call(so, key).await
    }

    async fn so_set(
        &mut self,
        so: types::SharedObject,
        key: String,
        value: String,
    ) -> Result<(), String> {
        self.so_set_call(so, key, value).await
    }

    async fn so_delete(&mut self, so: types::SharedObject, key: String) -> Result<bool, String> {
        self.so_delete_call(so, key).await
    }

    async fn so_send(
        &mut self,
        so: types::SharedObject,
        handler: String,
        args: String,
    ) -> Result<(), String> {
        self.so_send_call(so, handler, args).await
    }

    async fn so_keys(&mut self, so: types::SharedObject) -> Result<Vec<String>, String> {
        self.so_keys_call(so).await
    }

    async fn so_lock(&mut self, so: types::SharedObject) -> Result<(), String> {
        self.so_lock_call(so).await
    }

    async fn so_unlock(&mut self, so: types::SharedObject) -> Result<(), String> {
        self.so_unlock_call(so).await
    }

    fn record_stop(&mut self, stream: String) -> bool {
        let Some(recordings) = &self.st.recordings else {
            return false;
        };
        let key = self.stream_key(&stream);
        match recordings.stop(&key) {
            Some(info) => {
                info!(app = %self.st.app, stream = %key, file = %info.file.display(), "recording stopped by the app");
                true
            }
            None => false,
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Guest stdout/stderr: each line goes to the log tagged with `app/instance`.
struct GuestLog {
    tag: String,
    stream: &'static str,
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineLogger {
            tag: self.tag.clone(),
            stream: self.stream,
            line: Vec::new(),
        })
    }
}

struct LineLogger {
    tag: String,
    stream: &'static str,
    line: Vec<u8>,
}

impl LineLogger {
    fn emit(&mut self) {
        if !self.line.is_empty() {
            let text = String::from_utf8_lossy(&self.line);
            info!(app = %self.tag, stream = self.stream, "{}", text.trim_end());
            self.line.clear();
        }
    }
}

impl AsyncWrite for LineLogger {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        for &b in buf {
            if b == b'\n' {
                self.emit();
            } else {
                self.line.push(b);
                // Bounded: a guest writing without newlines is logged in 4 KiB pieces.
                if self.line.len() >= 4096 {
                    self.emit();
                }
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.emit();
        Poll::Ready(Ok(()))
    }
}
