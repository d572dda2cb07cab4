//! The table of connected clients: who is connected over which transport to which app, with
//! live byte counters and a kick switch. The admin API reads it; connections keep it current.
//!
//! A client that publishes is the stream's [`StreamSource`]: stopping the source kicks it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::Notify;

use crate::media::StreamSource;

/// One connected client, shared between its connection task and readers of the table.
#[derive(Debug)]
pub struct ClientEntry {
    pub id: u64,
    pub peer: SocketAddr,
    /// `rtmp`, `rtmpt`, `rtmps`, `rtmpts`.
    pub transport: &'static str,
    pub connected_at: SystemTime,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    app: Mutex<Option<(String, String)>>,
    kick: Notify,
    kick_reason: Mutex<Option<String>>,
}

impl ClientEntry {
    /// `(app, instance)` once the client's connect was accepted.
    pub fn app(&self) -> Option<(String, String)> {
        self.app.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_app(&self, app: &str, instance: &str) {
        *self.app.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((app.to_owned(), instance.to_owned()));
    }

    /// Asks the connection to close (it does so at its next loop turn, within milliseconds).
    pub fn kick(&self) {
        self.kick_because("Kicked by the server operator.");
    }

    /// Like [`ClientEntry::kick`], with the reason the client and the log are given.
    pub fn kick_because(&self, reason: &str) {
        *self.kick_reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.to_owned());
        self.kick.notify_one();
    }

    /// Why the client was kicked.
    pub fn kick_reason(&self) -> String {
        self.kick_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default()
    }

    /// Resolves when [`ClientEntry::kick`] was called.
    pub async fn kicked(&self) {
        self.kick.notified().await
    }
}

/// All connected clients by id.
#[derive(Default)]
pub struct Clients {
    map: Mutex<HashMap<u64, Arc<ClientEntry>>>,
}

/// Removes the client from the table when its connection ends.
pub struct ClientGuard {
    clients: Arc<Clients>,
    pub entry: Arc<ClientEntry>,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.clients.lock().remove(&self.entry.id);
    }
}

impl Clients {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<ClientEntry>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn register(
        self: &Arc<Self>,
        id: u64,
        peer: SocketAddr,
        transport: &'static str,
    ) -> ClientGuard {
        let entry = Arc::new(ClientEntry {
            id,
            peer,
            transport,
            connected_at: SystemTime::now(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            app: Mutex::new(None),
            kick: Notify::new(),
            kick_reason: Mutex::new(None),
        });
        self.lock().insert(id, entry.clone());
        ClientGuard {
            clients: self.clone(),
            entry,
        }
    }

    pub fn get(&self, id: u64) -> Option<Arc<ClientEntry>> {
        self.lock().get(&id).cloned()
    }

    /// Every client, ordered by id.
    pub fn list(&self) -> Vec<Arc<ClientEntry>> {
        let mut v: Vec<_> = self.lock().values().cloned().collect();
        v.sort_by_key(|c| c.id);
        v
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Kicks a client by id; false when no such client is connected.
    pub fn kick(&self, id: u64) -> bool {
        match self.get(id) {
            Some(c) => {
                c.kick();
                true
            }
            None => false,
        }
    }
}

impl ClientEntry {
    pub fn add_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_out(&self, n: u64) {
        self.bytes_out.fetch_add(n, Ordering::Relaxed);
    }
}

/// An RTMP publisher is its connection: stopping the stream (a takeover, an operator's
/// `DELETE /streams/...`) closes the connection with the reason, which drops its publisher.
impl StreamSource for ClientEntry {
    fn id(&self) -> u64 {
        self.id
    }

    fn kind(&self) -> &'static str {
        "rtmp"
    }

    fn stop(&self, reason: &str) {
        self.kick_because(reason);
    }
}
