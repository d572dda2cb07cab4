//! HLS viewers as clients. HTTP requests are stateless, so a viewer is a session: the first
//! playlist request (without `session=`) goes through the app's `on-connect` (transport
//! `hls`, the URL's query) and `on-play`, gets a client-table entry and a random id, and is
//! redirected to `index.m3u8?session=<id>`; every URI of its playlists carries the id. A task
//! per session watches the kick switch, the app's `disconnect`, the idle timeout and shutdown;
//! when it ends, the app gets `Stop` and `Disconnect`, the entry leaves the table and the
//! metrics count the connection closed. The closed session is kept as a tombstone for one
//! more timeout, so its next request is refused with the reason (a kick, the app) instead of
//! looking unknown.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tracing::info;

use super::super::gate::Admitted;
use crate::apps::{ToActor, ToConn};
use crate::gateway::{ClientEntry, ClientGuard, Core};
use crate::media::StreamKey;

/// Why a session ended, for its later requests.
#[derive(Debug, Clone)]
pub struct Closed {
    pub reason: String,
    /// Ended by the operator or the app: a new session from the same viewer (same address,
    /// stream and query) is refused too until the tombstone expires.
    pub refuse_again: bool,
}

/// The transport label of HLS viewers (client table, metrics, app hooks).
pub const TRANSPORT: &str = "hls";

pub struct Session {
    pub id: String,
    pub key: StreamKey,
    pub ip: IpAddr,
    /// The app's query (what `on-connect` saw).
    pub query: String,
    pub entry: Arc<ClientEntry>,
    last_seen: Mutex<Instant>,
    closed: Mutex<Option<Closed>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A new random session id: 128 bits, hex.
pub fn new_id() -> Option<String> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut b).ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}

impl Session {
    pub fn new(
        id: String,
        key: StreamKey,
        ip: IpAddr,
        query: String,
        entry: Arc<ClientEntry>,
    ) -> Session {
        Session {
            id,
            key,
            ip,
            query,
            entry,
            last_seen: Mutex::new(Instant::now()),
            closed: Mutex::new(None),
        }
    }

    pub fn touch(&self) {
        *lock(&self.last_seen) = Instant::now();
    }

    pub fn closed(&self) -> Option<Closed> {
        lock(&self.closed).clone()
    }

    /// Counts `n` bytes sent to this viewer.
    pub fn sent(&self, core: &Core, n: usize) {
        self.entry.add_out(n as u64);
        core.counters()
            .bytes_out
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Runs the session until it ends, then keeps its tombstone for `timeout`; `forget`
    /// removes it from the table.
    pub async fn run(
        self: Arc<Self>,
        core: Arc<Core>,
        guard: ClientGuard,
        mut admitted: Option<Admitted>,
        timeout: Duration,
        forget: impl FnOnce(&Arc<Session>),
    ) {
        let counters = core.counters();
        counters.connections.fetch_add(1, Ordering::Relaxed);
        counters.connections_total.fetch_add(1, Ordering::Relaxed);
        crate::metrics::connection_opened(TRANSPORT);
        let entry = guard.entry.clone();
        let mut shutdown = core.shutdown_signal();
        let (reason, refuse_again) = loop {
            if *shutdown.borrow_and_update() {
                break ("server shutting down".to_owned(), false);
            }
            let idle_at = *lock(&self.last_seen) + timeout;
            tokio::select! {
                _ = entry.kicked() => {
                    crate::metrics::kicked();
                    break (format!("kicked: {}", entry.kick_reason()), true);
                }
                msg = app_message(&mut admitted) => match msg {
                    Some(ToConn::Disconnect(r)) => {
                        break (format!("disconnected by the application: {r}"), true);
                    }
                    Some(_) => {}
                    // The instance is gone; the viewer stays, as an RTMP player does.
                    None => admitted = None,
                },
                _ = tokio::time::sleep_until(idle_at.into()) => {
                    if lock(&self.last_seen).elapsed() >= timeout {
                        break (format!("no request for {}s", timeout.as_secs()), false);
                    }
                }
                _ = shutdown.changed() => {}
            }
        };
        *lock(&self.closed) = Some(Closed {
            reason: reason.clone(),
            refuse_again,
        });
        if let Some(a) = &admitted {
            let _ = a.link.send(ToActor::Stop {
                client: entry.id,
                name: self.key.name.clone(),
            });
            let _ = a.link.send(ToActor::Disconnect { client: entry.id });
        }
        let bytes_out = entry.bytes_out.load(Ordering::Relaxed);
        drop(guard);
        crate::metrics::connection_closed(TRANSPORT);
        counters.connections.fetch_sub(1, Ordering::Relaxed);
        info!(id = entry.id, stream = %self.key, bytes_out, %reason, "HLS viewer closed");
        if !core.is_shutting_down() {
            let mut shutdown = core.shutdown_signal();
            tokio::select! {
                _ = tokio::time::sleep(timeout) => {}
                _ = shutdown.changed() => {}
            }
        }
        forget(&self);
    }
}

/// The app's next message for this viewer (never, without an app).
async fn app_message(admitted: &mut Option<Admitted>) -> Option<ToConn> {
    match admitted {
        Some(a) => a.rx.recv().await,
        None => std::future::pending().await,
    }
}
