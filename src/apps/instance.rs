//! One actor per app instance (`app/instance`): owns the wasmtime `Store`, runs the guest's
//! handlers one event at a time under a deadline and a memory cap, and contains its failures.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};
use wasmtime::Store;

use super::bindings::App;
use super::bindings::wasmgate::app::types::{
    self, Access, ConnectDecision, DataDecision, SoChangeDecision,
};
use super::engine::{EPOCH_TICK, Module, Runtime};
use super::entry::AppEntry;
use super::host::{Client, HostState, InstanceState};
use super::json;
use super::messages::{ClientMeta, DataOutcome, ToConn};
use crate::config::{AppsConfig, FailurePolicy};
use crate::rtmp::amf::Amf0Value;
use crate::rtmp::shared_object::SoEvent;
use crate::state::shared_objects::Ruling;

/// Messages from a connection to its app instance.
pub enum ToActor {
    Connect {
        meta: ClientMeta,
        args: Vec<Amf0Value>,
        tx: mpsc::Sender<ToConn>,
    },
    Disconnect {
        client: u64,
    },
    Publish {
        client: u64,
        stream_id: u32,
        name: String,
        query: String,
    },
    Unpublish {
        client: u64,
        name: String,
    },
    Play {
        client: u64,
        stream_id: u32,
        name: String,
        query: String,
    },
    Stop {
        client: u64,
        name: String,
    },
    Call {
        client: u64,
        txn: f64,
        method: String,
        args: Vec<Amf0Value>,
    },
    CallReply {
        client: u64,
        call_id: u64,
        ok: bool,
        value: Amf0Value,
    },
    /// A data message (`NetStream.send`); answered with [`ToConn::Data`] carrying `seq`.
    Data {
        client: u64,
        seq: u64,
        stream: String,
        handler: String,
        args: Vec<Amf0Value>,
    },
    /// A client's shared-object message: the app rules on each event (`on-so-connect`,
    /// `on-so-change`, `on-so-send`) and `reply` gets one [`Ruling`] per event, in order.
    SharedObject {
        client: u64,
        name: String,
        persistent: bool,
        events: Vec<SoEvent>,
        reply: oneshot::Sender<Vec<Ruling>>,
    },
    Reload(Arc<Module>),
    Shutdown(String),
}

/// The reason text a client sees when its event failed inside the app (fail-closed).
pub const APP_ERROR: &str = "application error";

/// Why a guest call failed.
#[derive(Debug)]
pub enum Fault {
    Deadline,
    Memory,
    Trap(String),
    /// The app's `start` returned an error.
    Start(String),
    /// The instance failed recently and is waiting before it is recreated.
    Backoff,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Deadline => f.write_str("deadline exceeded"),
            Fault::Memory => f.write_str("memory limit exceeded"),
            Fault::Trap(m) => write!(f, "trap: {m}"),
            Fault::Start(m) => write!(f, "start failed: {m}"),
            Fault::Backoff => f.write_str("restarting after a failure"),
        }
    }
}

struct Live {
    store: Store<HostState>,
    app: App,
}

/// Creates a store for `module` holding `st`, instantiates it and runs the guest's `start`.
/// On failure the state is handed back.
pub async fn instantiate(
    runtime: &Runtime,
    module: &Module,
    st: InstanceState,
) -> Result<(Store<HostState>, App), (Fault, InstanceState)> {
    let (app, instance) = (st.app.clone(), st.instance.clone());
    let data = HostState::new(
        st,
        &module.manifest.grants,
        module.limits.memory_bytes,
        module.settings_json.clone(),
    );
    let mut store = Store::new(&runtime.engine, data);
    store.limiter(|s| &mut s.limiter);
    store.epoch_deadline_trap();
    store.set_epoch_deadline(ticks(module.limits.deadline));
    let bindings = match module.pre.instantiate_async(&mut store).await {
        Ok(b) => b,
        Err(e) => {
            let f = classify(&store, e);
            return Err((f, store.into_data().st));
        }
    };
    store.set_epoch_deadline(ticks(module.limits.deadline));
    let settings = module.settings_json.to_string();
    match bindings
        .wasmgate_app_guest()
        .call_start(&mut store, &app, &instance, &settings)
        .await
    {
        Ok(Ok(())) => Ok((store, bindings)),
        Ok(Err(msg)) => Err((Fault::Start(msg), store.into_data().st)),
        Err(e) => {
            let f = classify(&store, e);
            Err((f, store.into_data().st))
        }
    }
}

fn ticks(d: Duration) -> u64 {
    (d.as_millis() as u64).div_ceil(EPOCH_TICK.as_millis() as u64) + 1
}

fn classify(store: &Store<HostState>, e: wasmtime::Error) -> Fault {
    if store.data().limiter.hit {
        return Fault::Memory;
    }
    if let Some(wasmtime::Trap::Interrupt) = e.downcast_ref::<wasmtime::Trap>() {
        return Fault::Deadline;
    }
    Fault::Trap(format!("{e:#}").lines().next().unwrap_or("").to_owned())
}

pub struct Actor {
    runtime: Arc<Runtime>,
    entry: Arc<AppEntry>,
    module: Arc<Module>,
    cfg: AppsConfig,
    rx: mpsc::Receiver<ToActor>,
    live: Option<Live>,
    /// The instance state while no guest is live.
    parked: InstanceState,
    started_once: bool,
    failures: u32,
    retry_at: Option<Instant>,
}

/// Runs a guest export on the live instance (creating it first when needed) under the
/// module's deadline; a failure discards the instance and is returned as a [`Fault`].
macro_rules! guest_call {
    ($self:ident, |$g:ident, $s:ident| $call:expr) => {{
        match $self.ensure_live().await {
            Err(f) => Err(f),
            Ok(()) => {
                let deadline = ticks($self.module.limits.deadline);
                match $self.live.as_mut() {
                    None => Err(Fault::Backoff),
                    Some(live) => {
                        live.store.set_epoch_deadline(deadline);
                        live.store.data_mut().limiter.hit = false;
                        let $g = live.app.wasmgate_app_guest();
                        let $s = &mut live.store;
                        crate::metrics::guest_call(&$self.entry.name);
                        let r = $call.await;
                        live.store.data_mut().st.release_so_locks();
                        match r {
                            Ok(v) => {
                                $self.failures = 0;
                                Ok(v)
                            }
                            Err(e) => Err($self.fail(e)),
                        }
                    }
                }
            }
        }
    }};
}

impl Actor {
    pub fn new(
        runtime: Arc<Runtime>,
        entry: Arc<AppEntry>,
        cfg: AppsConfig,
        rx: mpsc::Receiver<ToActor>,
        st: InstanceState,
    ) -> Actor {
        let module = entry.module();
        Actor {
            runtime,
            entry,
            module,
            cfg,
            rx,
            live: None,
            parked: st,
            started_once: false,
            failures: 0,
            retry_at: None,
        }
    }

    fn st(&mut self) -> &mut InstanceState {
        match self.live.as_mut() {
            Some(l) => &mut l.store.data_mut().st,
            None => &mut self.parked,
        }
    }

    fn policy(&self) -> FailurePolicy {
        self.module.limits.policy
    }

    pub async fn run(mut self) {
        let (app, instance) = (self.parked.app.clone(), self.parked.instance.clone());
        info!(%app, %instance, digest = %short(&self.module.digest), "instance created");
        if let Err(f) = self.ensure_live().await {
            warn!(%app, %instance, fault = %f, "instance did not start; events get the failure policy until it does");
        }
        let idle = Duration::from_secs(self.cfg.instance_idle_secs);
        let mut idle_since = Instant::now();
        loop {
            let next = self.st().next_timer();
            let wake = next
                .map(|(_, due)| tokio::time::Instant::from_std(due))
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            let empty = self.st().clients.is_empty();
            let idle_at = tokio::time::Instant::from_std(idle_since + idle);
            tokio::select! {
                msg = self.rx.recv() => {
                    let Some(msg) = msg else { break };
                    if !self.handle(msg).await {
                        break;
                    }
                    if !self.st().clients.is_empty() {
                        idle_since = Instant::now();
                    }
                }
                _ = tokio::time::sleep_until(wake), if next.is_some() => {
                    if let Some((id, _)) = next
                        && self.st().fire_timer(id, Instant::now())
                    {
                        self.entry.stats.events.fetch_add(1, Ordering::Relaxed);
                        let r = guest_call!(self, |g, s| g.call_on_timer(s, id));
                        if let Err(f) = r {
                            debug!(%app, %instance, timer = id, fault = %f, "timer handler failed");
                        }
                    }
                }
                _ = tokio::time::sleep_until(idle_at), if empty => {
                    info!(%app, %instance, "instance idle; stopping");
                    break;
                }
            }
            if !empty && self.st().clients.is_empty() {
                idle_since = Instant::now();
            }
        }
        self.stop_guest().await;
        self.parked.release_shared_objects();
        // In-process key-value data lives as long as the instance, as it always has. This runs
        // while `rx` is still open, so the manager cannot yet route a new actor to the same
        // scope (an unload forgets this actor first; a reload and connect landing inside this
        // guest's `stop` could then lose what the newer actor wrote before this clear).
        if let Some(store) = self.parked.store.clone()
            && let Err(e) = store.clear_scope(&self.parked.scope).await
        {
            warn!(%app, %instance, error = %e, "instance state not cleared");
        }
        debug!(%app, %instance, "instance stopped");
    }

    /// Calls the guest's `stop` when it is live (errors only logged).
    async fn stop_guest(&mut self) {
        if let Some(mut live) = self.live.take() {
            live.store
                .set_epoch_deadline(ticks(self.module.limits.deadline));
            if let Err(e) = live
                .app
                .wasmgate_app_guest()
                .call_stop(&mut live.store)
                .await
            {
                debug!(error = %e, "stop failed");
            }
            self.parked = live.store.into_data().st;
        }
    }

    /// Makes sure a guest is live, recreating it (with backoff after failures).
    async fn ensure_live(&mut self) -> Result<(), Fault> {
        if self.live.is_some() {
            return Ok(());
        }
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return Err(Fault::Backoff);
        }
        let st = std::mem::take(&mut self.parked);
        match instantiate(&self.runtime, &self.module, st).await {
            Ok((store, app)) => {
                if self.started_once {
                    self.entry.stats.restarts.fetch_add(1, Ordering::Relaxed);
                    info!(app = %self.entry.name, "instance recreated");
                }
                self.started_once = true;
                self.retry_at = None;
                self.live = Some(Live { store, app });
                Ok(())
            }
            Err((f, st)) => {
                self.parked = st;
                self.count(&f);
                self.backoff();
                Err(f)
            }
        }
    }

    fn backoff(&mut self) {
        self.failures = self.failures.saturating_add(1);
        let ms = 100u64
            .saturating_mul(1 << self.failures.min(16).saturating_sub(1))
            .min(self.cfg.restart_backoff_max_ms);
        self.retry_at = Some(Instant::now() + Duration::from_millis(ms));
    }

    fn count(&self, f: &Fault) {
        let s = &self.entry.stats;
        // The Prometheus series (`wasmgate_guest_*_total{app}`) follow the admin API's counters.
        match f {
            Fault::Deadline => crate::metrics::guest_deadline(&self.entry.name),
            Fault::Trap(_) | Fault::Start(_) => crate::metrics::guest_trap(&self.entry.name),
            Fault::Memory | Fault::Backoff => {}
        }
        match f {
            Fault::Deadline => s.deadlines.fetch_add(1, Ordering::Relaxed),
            Fault::Memory => s.memory.fetch_add(1, Ordering::Relaxed),
            Fault::Trap(_) | Fault::Start(_) => s.traps.fetch_add(1, Ordering::Relaxed),
            Fault::Backoff => s.backoff.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// A guest call failed: the instance is discarded (its state kept) and recreated later.
    fn fail(&mut self, e: wasmtime::Error) -> Fault {
        let Some(live) = self.live.take() else {
            return Fault::Trap(format!("{e:#}"));
        };
        let f = classify(&live.store, e);
        self.parked = live.store.into_data().st;
        self.parked.release_so_locks();
        warn!(app = %self.entry.name, instance = %self.parked.instance, fault = %f, "application failed; instance will be recreated");
        self.count(&f);
        // The first recreate is immediate; repeated failures back off.
        if self.failures > 0 {
            self.backoff();
        } else {
            self.failures = 1;
        }
        f
    }

    /// Handles one message; false ends the actor.
    async fn handle(&mut self, msg: ToActor) -> bool {
        if !matches!(msg, ToActor::Reload(_) | ToActor::Shutdown(_)) {
            self.entry.stats.events.fetch_add(1, Ordering::Relaxed);
        }
        match msg {
            ToActor::Connect { meta, args, tx } => {
                let id = meta.id;
                let info = meta.to_wit();
                self.st().clients.insert(
                    id,
                    Client {
                        meta,
                        tx: tx.clone(),
                        pending: true,
                    },
                );
                let args = json::args_to_json(&args);
                let r = guest_call!(self, |g, s| g.call_on_connect(s, &info, &args));
                let open = self.policy() == FailurePolicy::Open;
                let decision = match r {
                    Ok(d) => d,
                    Err(_) if open => ConnectDecision::Accept,
                    Err(_) => ConnectDecision::Reject(APP_ERROR.into()),
                };
                // The guest may already have decided through `host.accept`/`reject`.
                let still_pending = self.st().clients.get(&id).is_some_and(|c| c.pending);
                if !still_pending {
                    return true;
                }
                let msg = match decision {
                    ConnectDecision::Pending => return true,
                    ConnectDecision::Accept => {
                        if let Some(c) = self.st().clients.get_mut(&id) {
                            c.pending = false;
                        }
                        ToConn::ConnectAccept
                    }
                    ConnectDecision::Reject(reason) => {
                        self.st().clients.remove(&id);
                        ToConn::ConnectReject(reason)
                    }
                    ConnectDecision::Redirect(r) => {
                        self.st().clients.remove(&id);
                        ToConn::ConnectRedirect {
                            url: r.url,
                            description: r.description,
                        }
                    }
                };
                let _ = tx.try_send(msg);
            }
            ToActor::Disconnect { client } => {
                if self.st().clients.remove(&client).is_some() {
                    let r = guest_call!(self, |g, s| g.call_on_disconnect(s, client));
                    if let Err(f) = r {
                        debug!(client, fault = %f, "disconnect handler failed");
                    }
                }
            }
            ToActor::Publish {
                client,
                stream_id,
                name,
                query,
            } => {
                let r = guest_call!(self, |g, s| g.call_on_publish(s, client, &name, &query));
                let result = self.access(r);
                self.reply(client, ToConn::Publish { stream_id, result });
            }
            ToActor::Play {
                client,
                stream_id,
                name,
                query,
            } => {
                let r = guest_call!(self, |g, s| g.call_on_play(s, client, &name, &query));
                let result = self.access(r);
                self.reply(client, ToConn::Play { stream_id, result });
            }
            ToActor::Unpublish { client, name } => {
                let _ = guest_call!(self, |g, s| g.call_on_unpublish(s, client, &name));
            }
            ToActor::Stop { client, name } => {
                let _ = guest_call!(self, |g, s| g.call_on_stop(s, client, &name));
            }
            ToActor::Call {
                client,
                txn,
                method,
                args,
            } => {
                let args = json::args_to_json(&args);
                let r = guest_call!(self, |g, s| g.call_on_call(s, client, &method, &args));
                let result = match r {
                    Ok(Ok(text)) => json::parse_value(&text).map_err(|e| {
                        warn!(app = %self.entry.name, %method, error = %e, "bad result from the app");
                        APP_ERROR.to_owned()
                    }),
                    Ok(Err(msg)) => Err(msg),
                    Err(_) => Err(APP_ERROR.to_owned()),
                };
                if txn != 0.0 {
                    self.reply(client, ToConn::CallResult { txn, result });
                }
            }
            ToActor::CallReply {
                client,
                call_id,
                ok,
                value,
            } => {
                let v = json::amf_to_json(&value).to_string();
                let _ = guest_call!(self, |g, s| g
                    .call_on_call_result(s, client, call_id, ok, &v));
            }
            ToActor::Data {
                client,
                seq,
                stream,
                handler,
                args,
            } => {
                let args = json::args_to_json(&args);
                let r = guest_call!(self, |g, s| g
                    .call_on_data(s, client, &stream, &handler, &args));
                let outcome = match r {
                    Ok(DataDecision::Relay) => Ok(DataOutcome::Relay),
                    Ok(DataDecision::Drop) => Ok(DataOutcome::Drop),
                    Ok(DataDecision::Rewrite(text)) => json::parse_args(&text)
                        .map(DataOutcome::Rewrite)
                        .map_err(|e| {
                            warn!(app = %self.entry.name, %handler, error = %e, "bad rewrite from the app; it must be a JSON array");
                        }),
                    Err(_) => Err(()),
                };
                let outcome = outcome.unwrap_or(match self.policy() {
                    FailurePolicy::Open => DataOutcome::Relay,
                    FailurePolicy::Closed => DataOutcome::Drop,
                });
                self.reply(client, ToConn::Data { seq, outcome });
            }
            ToActor::SharedObject {
                client,
                name,
                persistent,
                events,
                reply,
            } => {
                let so = types::SharedObject { name, persistent };
                let mut rulings = Vec::with_capacity(events.len());
                for event in &events {
                    let ruling = self.rule_so(client, &so, event).await;
                    // A denied Use ends the message: the rest would be refused anyway.
                    let stop = matches!((event, &ruling), (SoEvent::Use, Ruling::Deny(_)));
                    rulings.push(ruling);
                    if stop {
                        break;
                    }
                }
                let _ = reply.send(rulings);
            }
            ToActor::Reload(module) => self.reload(module).await,
            ToActor::Shutdown(reason) => {
                for c in self.st().clients.values() {
                    let _ = c.send(ToConn::Disconnect(reason.clone()));
                }
                return false;
            }
        }
        true
    }

    /// The guest's ruling on one event of a client's shared-object message; a failed handler
    /// or a malformed answer gets the failure policy.
    async fn rule_so(&mut self, client: u64, so: &types::SharedObject, event: &SoEvent) -> Ruling {
        let failed = match self.policy() {
            FailurePolicy::Open => Ruling::Allow,
            FailurePolicy::Closed => Ruling::Deny(APP_ERROR.to_owned()),
        };
        match event {
            SoEvent::Use => match guest_call!(self, |g, s| g.call_on_so_connect(s, client, so)) {
                Ok(Access::Allow) => Ruling::Allow,
                Ok(Access::Deny(reason)) => Ruling::Deny(reason),
                Err(_) => failed,
            },
            SoEvent::RequestChange { key, .. } | SoEvent::RequestRemove { key } => {
                let value = match event {
                    SoEvent::RequestChange { value, .. } => {
                        Some(json::amf_to_json(value).to_string())
                    }
                    _ => None,
                };
                let r = guest_call!(self, |g, s| g.call_on_so_change(
                    s,
                    client,
                    so,
                    key,
                    value.as_ref()
                ));
                match r {
                    Ok(SoChangeDecision::Allow) => Ruling::Allow,
                    Ok(SoChangeDecision::Deny(reason)) => Ruling::Deny(reason),
                    Ok(SoChangeDecision::Rewrite(text)) => match json::parse_value(&text) {
                        Ok(value) => Ruling::Rewrite(SoEvent::RequestChange {
                            key: key.clone(),
                            value,
                        }),
                        Err(e) => {
                            warn!(app = %self.entry.name, so = %so.name, %key, error = %e, "bad shared object rewrite from the app");
                            failed
                        }
                    },
                    Err(_) => failed,
                }
            }
            SoEvent::SendMessage { handler, args } => {
                let args = json::args_to_json(args);
                let r = guest_call!(self, |g, s| g
                    .call_on_so_send(s, client, so, handler, &args));
                match r {
                    Ok(DataDecision::Relay) => Ruling::Allow,
                    Ok(DataDecision::Drop) => Ruling::Deny("dropped by the application".into()),
                    Ok(DataDecision::Rewrite(text)) => match json::parse_args(&text) {
                        Ok(args) => Ruling::Rewrite(SoEvent::SendMessage {
                            handler: handler.clone(),
                            args,
                        }),
                        Err(e) => {
                            warn!(app = %self.entry.name, so = %so.name, %handler, error = %e, "bad shared object message rewrite from the app; it must be a JSON array");
                            failed
                        }
                    },
                    Err(_) => failed,
                }
            }
            _ => Ruling::Allow,
        }
    }

    fn access(&self, r: Result<Access, Fault>) -> Result<(), String> {
        match r {
            Ok(Access::Allow) => Ok(()),
            Ok(Access::Deny(reason)) => Err(reason),
            Err(_) if self.policy() == FailurePolicy::Open => Ok(()),
            Err(_) => Err(APP_ERROR.to_owned()),
        }
    }

    fn reply(&mut self, client: u64, msg: ToConn) {
        if let Some(Err(e)) = self.st().clients.get(&client).map(|c| c.send(msg)) {
            debug!(client, error = %e, "reply dropped");
        }
    }

    /// Swaps in a new module: the new guest starts with a copy of the instance state (clients,
    /// not timers, which belong to the old code) and the same key-value scope in the state
    /// store. If it fails to start, the old guest keeps serving (and sees what the failed
    /// `start` wrote, since the store is shared rather than copied).
    async fn reload(&mut self, module: Arc<Module>) {
        let mut st = self.st().clone();
        st.timers.clear();
        match instantiate(&self.runtime, &module, st).await {
            Ok((store, app)) => {
                self.stop_guest().await;
                info!(app = %self.entry.name, instance = %self.parked.instance, digest = %short(&module.digest), "instance now runs the new module");
                self.live = Some(Live { store, app });
                self.module = module;
                self.failures = 0;
                self.retry_at = None;
            }
            Err((f, _)) => {
                warn!(app = %self.entry.name, fault = %f, "new module failed to start; the old one keeps serving");
            }
        }
    }
}

pub fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}
