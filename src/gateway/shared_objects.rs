//! The process's one remote-shared-object authority ([`SoHub`]) and its plumbing: a bounded
//! queue to each client, the tick task that delivers changes, and the store's loads and saves.
//!
//! A `Mutex`, not an actor task: every step of [`SharedObjects`] is short and in memory (one
//! client message, or one tick), so a lock costs less than a channel hop per request and lets
//! a connection's Use be answered without waiting for another task's turn. Replies and tick
//! deliveries are pushed into the clients' queues *under* that lock, with `try_send`, so every
//! client receives messages in the authority's order and a slow client never blocks anyone.
//!
//! Store I/O never runs under the lock: loads and saves run in `spawn_blocking`, one at a time
//! behind `store_lock` (an async mutex), so a Use never loads a file an earlier tick is still
//! writing (a tick unloads an unused persistent object in the same step that asks to save it).
//!
//! Each client that uses shared objects gets a small worker task that applies its messages in
//! order (a Use of a persistent object waits for its load there, not in the connection task)
//! and, when the connection drops its [`SoLink`], releases the client everywhere: the release
//! runs after every message the client sent, so a late Use cannot re-subscribe a gone client.
//! A client of a Wasm app waits there, too, for the app's rulings on each message (one
//! round trip to the instance actor), so its order holds and no other client waits.
//!
//! Apps' own host calls reach the hub through [`SoAccess`], which it implements.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use crate::apps::{APP_ERROR, InstanceHandle, ToActor};
use crate::config::{FailurePolicy, SharedObjectsSection};
use crate::rtmp::shared_object::{SoEvent, SoMessage};
use crate::state::Scope;
use crate::state::shared_objects::{
    ClientId, FileSoStore, Ruling, SharedObjects, SoAccess, SoLimits, SoRefusal, SoStore,
};

/// Messages from one client waiting for the authority. Flash Player sends one message per frame
/// at most, so a client this far ahead is flooding; its newest messages are dropped.
const INBOUND_QUEUE: usize = 64;

/// How long a client's shared-object message waits for its app's rulings. The app's own
/// deadline bounds each handler; this bounds a queue of other events ahead of it.
const RULING_TIMEOUT: Duration = Duration::from_secs(10);

/// The gateway's shared objects, every scope (`app/instance`) of every connection.
pub struct SoHub {
    inner: Mutex<Inner>,
    store: Arc<dyn SoStore>,
    /// Held by whoever talks to the store (a load for a Use, a tick's saves).
    store_lock: tokio::sync::Mutex<()>,
    client_queue: usize,
    tick: Duration,
    /// Messages a full client queue made us drop.
    dropped: AtomicU64,
    /// Client messages handed to the authority (applied or refused).
    messages_in: AtomicU64,
    /// Messages queued to clients (replies and tick deliveries).
    messages_out: AtomicU64,
    epoch: Instant,
}

struct Inner {
    authority: SharedObjects,
    /// Each attached client's queue of messages to write.
    links: HashMap<ClientId, mpsc::Sender<SoMessage>>,
}

/// One connection's handle on the hub: dropping it releases the client everywhere.
pub struct SoLink {
    to_hub: mpsc::Sender<SoMessage>,
    /// What the hub sends this client (replies, changes, statuses, messages).
    pub from_hub: mpsc::Receiver<SoMessage>,
}

impl SoLink {
    /// Queues a client message for the authority; false (the message is dropped) when the
    /// client already has [`INBOUND_QUEUE`] waiting.
    pub fn submit(&self, message: SoMessage) -> bool {
        self.to_hub.try_send(message).is_ok()
    }
}

impl SoHub {
    /// A hub with `limits`, `store`, a queue of `client_queue` messages per client and a tick
    /// every `tick`.
    pub fn new(
        limits: SoLimits,
        store: Arc<dyn SoStore>,
        client_queue: usize,
        tick: Duration,
    ) -> SoHub {
        SoHub {
            inner: Mutex::new(Inner {
                authority: SharedObjects::new(limits),
                links: HashMap::new(),
            }),
            store,
            store_lock: tokio::sync::Mutex::new(()),
            client_queue: client_queue.max(1),
            tick,
            dropped: AtomicU64::new(0),
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// The hub `[shared_objects]` describes; its limits and folder are read once, here.
    pub fn from_config(cfg: &SharedObjectsSection) -> SoHub {
        SoHub::new(
            cfg.limits(),
            Arc::new(FileSoStore::new(cfg.dir.clone())),
            cfg.client_queue,
            Duration::from_millis(cfg.tick_ms),
        )
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Messages dropped because a client's queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Clients attached now; a client stays attached until its worker has applied everything it
    /// sent and released it.
    pub fn attached(&self) -> usize {
        self.lock().links.len()
    }

    /// Reads the authority (tests, admin views) under the lock.
    pub fn with<R>(&self, f: impl FnOnce(&SharedObjects) -> R) -> R {
        f(&self.lock().authority)
    }

    /// Attaches `client`, whose shared objects live in `scope`; with `rules`, every Use, change,
    /// remove and Send Message first goes to that app instance's `on-so-*` handlers. Call it
    /// from within the runtime: it spawns the client's worker.
    pub fn attach(
        self: &Arc<Self>,
        client: ClientId,
        scope: Scope,
        rules: Option<InstanceHandle>,
    ) -> SoLink {
        let (out_tx, out_rx) = mpsc::channel(self.client_queue);
        let (in_tx, in_rx) = mpsc::channel(INBOUND_QUEUE);
        self.lock().links.insert(client, out_tx);
        tokio::spawn(self.clone().serve_client(client, scope, rules, in_rx));
        SoLink {
            to_hub: in_tx,
            from_hub: out_rx,
        }
    }

    async fn serve_client(
        self: Arc<Self>,
        client: ClientId,
        scope: Scope,
        rules: Option<InstanceHandle>,
        mut rx: mpsc::Receiver<SoMessage>,
    ) {
        while let Some(message) = rx.recv().await {
            let rulings = match &rules {
                Some(app) => ask_app(app, client, &message).await,
                None => Vec::new(),
            };
            self.apply(&scope, client, &message, &rulings).await;
        }
        let mut inner = self.lock();
        inner.authority.disconnect(client);
        inner.links.remove(&client);
        debug!(client, "shared objects released");
    }

    /// Applies one client message, under the app's `rulings` (none: all allowed); a Use of a
    /// persistent object not in memory loads it first.
    async fn apply(
        &self,
        scope: &Scope,
        client: ClientId,
        message: &SoMessage,
        rulings: &[Ruling],
    ) {
        let uses = message.events.iter().any(|e| matches!(e, SoEvent::Use));
        if !(uses && message.persistent()) {
            let mut inner = self.lock();
            self.handle_locked(&mut inner, scope, client, message, rulings);
            return;
        }
        self.with_loaded(scope, &message.name, |hub, inner| {
            hub.handle_locked(inner, scope, client, message, rulings)
        })
        .await
    }

    /// Runs `f` under the lock once persistent object `name` is in memory (loaded from the
    /// store if it was not; a failed load is logged and leaves it out, so `f` sees it missing).
    /// The store lock is held throughout, so no tick can unload the object in between.
    async fn with_loaded<R>(
        &self,
        scope: &Scope,
        name: &str,
        f: impl FnOnce(&SoHub, &mut Inner) -> R,
    ) -> R {
        let _store = self.store_lock.lock().await;
        if !self.lock().authority.needs_load(scope, name, true) {
            return f(self, &mut self.lock());
        }
        let store = self.store.clone();
        let (s, n) = (scope.clone(), name.to_owned());
        let loaded = tokio::task::spawn_blocking(move || store.load(&s, &n)).await;
        let mut inner = self.lock();
        match loaded {
            Ok(Ok(stored)) => {
                if let Err(refusal) = inner.authority.restore(scope, name, stored) {
                    info!(%scope, so = %name, %refusal, "persistent shared object not loaded");
                }
            }
            // Not restoring refuses the Use (ObjectCreationFailed): starting empty would
            // overwrite the damaged file's backups with nothing on the next save.
            Ok(Err(e)) => {
                warn!(%scope, so = %name, error = %e, "loading persistent shared object failed")
            }
            Err(e) => {
                error!(%scope, so = %name, error = %e, "loading persistent shared object panicked")
            }
        }
        f(self, &mut inner)
    }

    fn handle_locked(
        &self,
        inner: &mut Inner,
        scope: &Scope,
        client: ClientId,
        message: &SoMessage,
        rulings: &[Ruling],
    ) {
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        self.messages_in.fetch_add(1, Ordering::Relaxed);
        let handled = inner
            .authority
            .handle_ruled(scope, client, message, rulings, now_ms);
        if let Some(first) = handled.refused.first() {
            info!(
                client,
                %scope,
                so = %message.name,
                refused = handled.refused.len(),
                first = %first,
                "shared object request refused"
            );
        }
        let mut behind = false;
        for reply in handled.replies {
            behind |= !self.deliver(&inner.links, client, reply);
        }
        if behind {
            SoHub::cut_off(inner, &[client]);
        }
    }

    /// Queues `message` for `client` without waiting: a full queue drops it (logged, counted).
    /// Returns false when the queue was full: the client missed a message and must be cut off
    /// ([`cut_off`](Self::cut_off)).
    fn deliver(
        &self,
        links: &HashMap<ClientId, mpsc::Sender<SoMessage>>,
        client: ClientId,
        message: SoMessage,
    ) -> bool {
        let Some(tx) = links.get(&client) else {
            return true;
        };
        match tx.try_send(message) {
            Ok(()) => {
                self.messages_out.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Full(m)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                warn!(client, so = %m.name, "shared object message dropped: client queue full; disconnecting the client");
                false
            }
            // The connection is closing; its worker will release it.
            Err(mpsc::error::TrySendError::Closed(_)) => true,
        }
    }

    /// A client that missed a message would keep a copy that silently differs from everyone
    /// else's (Flash has no resync short of a new Use): it is released everywhere and its queue
    /// closed, which closes its connection (`driver::shared_objects`).
    fn cut_off(inner: &mut Inner, clients: &[ClientId]) {
        for &client in clients {
            inner.links.remove(&client);
            inner.authority.disconnect(client);
        }
    }

    /// One tick: delivers what changed since the last one and writes persistent objects.
    pub async fn tick_once(&self) {
        let _store = self.store_lock.lock().await;
        let saves = {
            let mut inner = self.lock();
            let drained = inner.authority.tick();
            let mut behind = Vec::new();
            for out in drained.messages {
                if !self.deliver(&inner.links, out.client, out.message) {
                    behind.push(out.client);
                }
            }
            SoHub::cut_off(&mut inner, &behind);
            drained.saves
        };
        if saves.is_empty() {
            return;
        }
        let store = self.store.clone();
        let saved = tokio::task::spawn_blocking(move || {
            for s in &saves {
                if let Err(e) = store.save(&s.scope, &s.name, s.version, &s.slots) {
                    warn!(scope = %s.scope, so = %s.name, error = %e, "saving persistent shared object failed");
                }
            }
        })
        .await;
        if let Err(e) = saved {
            error!(error = %e, "saving shared objects panicked");
        }
    }

    /// Ticks every `tick` for as long as the runtime runs (the server starts it).
    pub async fn run(self: Arc<Self>) {
        let mut interval = tokio::time::interval(self.tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            self.tick_once().await;
        }
    }

    /// The hub's counters and the authority's totals, for `/metrics` (read when it is scraped,
    /// so the request path pays one relaxed add per message and nothing more).
    pub fn stats(&self) -> SoHubStats {
        let totals = self.with(SharedObjects::totals);
        SoHubStats {
            messages_in: self.messages_in.load(Ordering::Relaxed),
            messages_out: self.messages_out.load(Ordering::Relaxed),
            dropped: self.dropped(),
            objects: totals.objects,
            subscriptions: totals.subscriptions,
        }
    }
}

/// What [`SoHub::stats`] reports.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SoHubStats {
    /// Client messages handed to the authority, refused ones included.
    pub messages_in: u64,
    /// Messages queued to clients: Use replies, refusal statuses and tick deliveries.
    pub messages_out: u64,
    /// Messages dropped because a client's queue was full.
    pub dropped: u64,
    /// Shared objects loaded, every scope.
    pub objects: usize,
    /// Subscriptions, every object of every scope.
    pub subscriptions: usize,
}

/// Whether the app rules on this event (the rest are applied without asking).
fn ruled(event: &SoEvent) -> bool {
    matches!(
        event,
        SoEvent::Use
            | SoEvent::RequestChange { .. }
            | SoEvent::RequestRemove { .. }
            | SoEvent::SendMessage { .. }
    )
}

/// The app's rulings on `message`'s events, waited for here so this client's messages stay in
/// order; an app that cannot answer (busy, gone, or slower than [`RULING_TIMEOUT`]) gets its
/// failure policy: open allows everything, closed denies what it would have ruled on.
async fn ask_app(app: &InstanceHandle, client: ClientId, message: &SoMessage) -> Vec<Ruling> {
    if !message.events.iter().any(ruled) {
        return Vec::new();
    }
    let (tx, rx) = oneshot::channel();
    let ask = ToActor::SharedObject {
        client,
        name: message.name.clone(),
        persistent: message.persistent(),
        events: message.events.clone(),
        reply: tx,
    };
    let why = if app.send(ask).is_err() {
        "application busy"
    } else {
        match tokio::time::timeout(RULING_TIMEOUT, rx).await {
            Ok(Ok(rulings)) => return rulings,
            Ok(Err(_)) => "application stopped",
            Err(_) => "application did not answer in time",
        }
    };
    warn!(app = app.app(), client, so = %message.name, policy = ?app.policy(), "{why}; shared object request gets the failure policy");
    match app.policy() {
        FailurePolicy::Open => Vec::new(),
        FailurePolicy::Closed => message
            .events
            .iter()
            .map(|e| {
                if ruled(e) {
                    Ruling::Deny(APP_ERROR.to_owned())
                } else {
                    Ruling::Allow
                }
            })
            .collect(),
    }
}

impl SoAccess for SoHub {
    fn open<'a>(
        &'a self,
        scope: &'a Scope,
        name: &'a str,
        persistent: bool,
    ) -> BoxFuture<'a, Result<(), SoRefusal>> {
        Box::pin(async move {
            if !persistent {
                return self.lock().authority.open_for_app(scope, name, false);
            }
            self.with_loaded(scope, name, |_, inner| {
                inner.authority.open_for_app(scope, name, true)
            })
            .await
        })
    }

    fn update(&self, f: &mut dyn FnMut(&mut SharedObjects)) {
        f(&mut self.lock().authority)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::amf::Amf0Value;
    use crate::state::shared_objects::FileSoStore;

    async fn next(link: &mut SoLink) -> SoMessage {
        tokio::time::timeout(Duration::from_secs(5), link.from_hub.recv())
            .await
            .expect("a message in time")
            .expect("queue open")
    }

    /// A hub whose client queues hold `queue` messages, and clients 1 and 2 of `app/inst`
    /// that have both sent a Use of `so` (the store's folder lives as long as the first value).
    fn two_clients_using_so(
        queue: usize,
    ) -> (tempfile::TempDir, Arc<SoHub>, Scope, SoLink, SoLink) {
        let dir = tempfile::tempdir().unwrap();
        let hub = Arc::new(SoHub::new(
            SoLimits::default(),
            Arc::new(FileSoStore::new(dir.path())),
            queue,
            Duration::from_millis(50),
        ));
        let scope = Scope::new("app", "inst");
        let (a, b) = (
            hub.attach(1, scope.clone(), None),
            hub.attach(2, scope.clone(), None),
        );
        let use_msg = SoMessage::new("so", 0, false, vec![SoEvent::Use]);
        assert!(a.submit(use_msg.clone()) && b.submit(use_msg));
        (dir, hub, scope, a, b)
    }

    #[tokio::test]
    async fn a_full_client_queue_cuts_that_client_off_only_and_a_dropped_link_releases() {
        let (_dir, hub, scope, mut a, mut b) = two_clients_using_so(1);
        next(&mut b).await;
        // `a` never reads: its Use reply fills its queue of one.
        let change = SoEvent::RequestChange {
            key: "k".into(),
            value: Amf0Value::Number(1.0),
        };
        assert!(b.submit(SoMessage::new("so", 1, false, vec![change])));
        let deadline = Instant::now() + Duration::from_secs(5);
        while hub.with(|s| s.version(&scope, "so")) != Some(2) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        hub.tick_once().await;
        assert_eq!(
            next(&mut b).await.events,
            [SoEvent::Success { key: "k".into() }]
        );
        assert_eq!(hub.dropped(), 1, "a's Change had no room");
        // `a` is cut off: released at once, and its queue ends after what it held.
        assert_eq!(hub.attached(), 1);
        assert_eq!(hub.with(|s| s.subscribers(&scope, "so")), Some(vec![2]));
        assert_eq!(next(&mut a).await.events[0], SoEvent::UseSuccess);
        assert!(a.from_hub.recv().await.is_none(), "a's queue is closed");

        // A dropped link releases the client too.
        drop(b);
        let deadline = Instant::now() + Duration::from_secs(5);
        while hub.attached() != 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(hub.attached(), 0);
        assert_eq!(hub.with(|s| s.subscribers(&scope, "so")), None);
    }

    #[tokio::test]
    async fn stats_count_messages_in_and_out_and_the_authoritys_totals() {
        let (_dir, hub, _scope, mut a, mut b) = two_clients_using_so(16);
        next(&mut a).await;
        next(&mut b).await;
        let change = SoEvent::RequestChange {
            key: "k".into(),
            value: Amf0Value::Number(1.0),
        };
        assert!(a.submit(SoMessage::new("so", 1, false, vec![change])));
        let deadline = Instant::now() + Duration::from_secs(5);
        while hub.stats().messages_in != 3 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        hub.tick_once().await;
        next(&mut a).await;
        next(&mut b).await;
        assert_eq!(
            hub.stats(),
            SoHubStats {
                messages_in: 3,
                // Two Use replies, then a Success to `a` and a Change to `b`.
                messages_out: 4,
                dropped: 0,
                objects: 1,
                subscriptions: 2,
            }
        );
    }
}
