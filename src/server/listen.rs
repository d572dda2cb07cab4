//! The accept loops of the RTMP and HTTP listeners: admission against the connection limits
//! (total and per source address, the client a trusted proxy's PROXY header names), then the
//! socket goes to protocol sniffing.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tracing::{info, warn};

use super::proxy_header::{self, Header, V2_MAX};
use super::sniff::{Endpoints, Listener, dispatch};
use crate::config::nets::NetList;

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
        let _ = sock.set_nodelay(true);
        let proxied = !limits.rtmp.trusted_proxies.is_empty()
            && NetList::new(limits.rtmp.trusted_proxy_nets().unwrap_or_default())
                .contains(peer.ip());
        if proxied {
            // The per-IP limit is the named client's, known once its header is read.
            let (to, admission) = (to.clone(), admission.clone());
            let wait = Duration::from_secs(limits.rtmp.handshake_timeout_secs);
            tokio::spawn(async move {
                let mut sock = sock;
                let Some(client) = read_proxy_header(&mut sock, peer, wait).await else {
                    return;
                };
                let Some(slot) = admission.admit_ip(&to, client, max_per_ip) else {
                    return;
                };
                dispatch(sock, client, kind, to).await;
                drop(slot);
                drop(permit);
            });
            continue;
        }
        let Some(slot) = admission.admit_ip(&to, peer, max_per_ip) else {
            continue;
        };
        let to = to.clone();
        tokio::spawn(async move {
            dispatch(sock, peer, kind, to).await;
            drop(slot);
            drop(permit);
        });
    }
}

impl Admission {
    /// A place for one more connection from `peer`'s address, or a logged, counted refusal.
    fn admit_ip(&self, to: &Endpoints, peer: SocketAddr, max: usize) -> Option<IpSlot> {
        let slot = self.per_ip.try_acquire(peer.ip(), max);
        if slot.is_none() {
            to.core
                .counters()
                .rejected_over_ip_limit
                .fetch_add(1, Ordering::Relaxed);
            warn!(%peer, max, "per-IP connection limit reached; closing new connection");
        }
        slot
    }
}

/// Takes a PROXY header off the front of a trusted proxy's connection: the client it names
/// (the proxy itself for `LOCAL`/`UNKNOWN` or no header at all), or `None` after logging why
/// the connection is closed. Peeked first, so only the header's own bytes are consumed.
async fn read_proxy_header(
    sock: &mut TcpStream,
    peer: SocketAddr,
    wait: Duration,
) -> Option<SocketAddr> {
    let mut buf = vec![0u8; V2_MAX];
    let deadline = tokio::time::Instant::now() + wait;
    let found = loop {
        let n = match tokio::time::timeout_at(deadline, sock.peek(&mut buf)).await {
            Ok(Ok(0)) => return None,
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                info!(%peer, error = %e, "proxied connection failed before its first byte");
                return None;
            }
            Err(_) => {
                info!(%peer, "no PROXY header or data within {wait:?}; closing");
                return None;
            }
        };
        match proxy_header::parse(&buf[..n]) {
            Ok(Header::Absent) => return Some(peer),
            Ok(Header::Found { len, source }) => break (len, source),
            // Proxies send the header in one write; the rest is on its way.
            Ok(Header::Incomplete) => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(e) => {
                info!(%peer, error = %e, "bad PROXY header from a trusted proxy; closing");
                return None;
            }
        }
    };
    let (len, source) = found;
    if let Err(e) = sock.read_exact(&mut buf[..len]).await {
        info!(%peer, error = %e, "proxied connection failed in its PROXY header");
        return None;
    }
    Some(source.unwrap_or(peer))
}
