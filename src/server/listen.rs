//! The accept loops of the RTMP and HTTP listeners: admission against the connection limits
//! (total and per source address), then the socket goes to protocol sniffing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::warn;

use super::sniff::{Endpoints, Listener, dispatch};

/// Connections open on the RTMP and HTTP listeners. A counter rather than a semaphore so a
/// reload can move `rtmp.max_connections` either way: lowering it below the number open
/// refuses new connections until enough have left, and never closes anyone.
#[derive(Default)]
struct Slots {
    open: AtomicUsize,
}

/// One connection's place in [`Slots`]; released on drop.
struct Slot(Arc<Slots>);

impl Slots {
    fn try_acquire(self: &Arc<Self>, max: usize) -> Option<Slot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Open connections per source address, for `rtmp.max_connections_per_ip`. One short lock per
/// accept and per close; entries go away with their last connection, so the map is bounded by
/// `max_connections`. The limit is passed per accept, so a reload applies to the next one.
#[derive(Default)]
struct PerIp {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's slot in [`PerIp`]; released on drop.
struct IpSlot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    fn try_acquire(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= max {
            if *n == 0 {
                open.remove(&ip);
            }
            return None;
        }
        *n += 1;
        Some(IpSlot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Admission on the RTMP and HTTP listeners: `rtmp.max_connections` and
/// `rtmp.max_connections_per_ip`, read per accept so a reload applies to the next one.
#[derive(Default)]
pub(crate) struct Admission {
    slots: Arc<Slots>,
    per_ip: Arc<PerIp>,
}

pub(crate) async fn accept_loop(
    listener: TcpListener,
    to: Endpoints,
    admission: Arc<Admission>,
    kind: Listener,
) {
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning, as mini-redis does.
                warn!(error = %e, "accept failed; retrying in 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // The limits in force now: a reload applies to the next accept.
        let limits = to.core.config();
        let (max, max_per_ip) = (
            limits.rtmp.max_connections,
            limits.rtmp.max_connections_per_ip,
        );
        let Some(permit) = admission.slots.try_acquire(max) else {
            to.core
                .counters()
                .rejected_over_limit
                .fetch_add(1, Ordering::Relaxed);
            warn!(%peer, max, "connection limit reached; closing new connection");
            drop(sock);
            continue;
        };
        let Some(slot) = admission.per_ip.try_acquire(peer.ip(), max_per_ip) else {
            to.core
                .counters()
                .rejected_over_ip_limit
                .fetch_add(1, Ordering::Relaxed);
            warn!(%peer, max = max_per_ip, "per-IP connection limit reached; closing new connection");
            drop(sock);
            continue;
        };
        let _ = sock.set_nodelay(true);
        let to = to.clone();
        tokio::spawn(async move {
            dispatch(sock, peer, kind, to).await;
            drop(slot);
            drop(permit);
        });
    }
}
