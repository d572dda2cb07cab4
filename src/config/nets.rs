//! Source networks (allowlists, trusted proxies) and the client address a forwarded request is
//! judged by; shared by the admin listener and the RTMP/HTTP listeners.

use std::net::IpAddr;

use ipnet::IpNet;

/// IPv4-mapped IPv6 (`::ffff:10.0.0.1`, what a dual-stack `[::]` listener reports for IPv4
/// peers) becomes the IPv4 address, so `10.0.0.0/8` matches it.
pub fn normalise(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// A set of networks; an address matches if any network contains it.
#[derive(Debug, Clone, Default)]
pub struct NetList(Vec<IpNet>);

impl NetList {
    pub fn new(nets: Vec<IpNet>) -> NetList {
        NetList(nets)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = normalise(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The client address a request is judged by: the peer itself, or, when the peer is a trusted
/// proxy, the right-most `X-Forwarded-For` entry that is not itself a trusted proxy (entries to
/// its left were written by the client and prove nothing).
pub fn effective_client(
    peer: IpAddr,
    forwarded_for: Option<&str>,
    trusted: &NetList,
) -> Option<IpAddr> {
    let peer = normalise(peer);
    if !trusted.contains(peer) {
        return Some(peer);
    }
    let header = forwarded_for?;
    for part in header.rsplit(',') {
        let ip: IpAddr = part.trim().parse().ok()?;
        let ip = normalise(ip);
        if !trusted.contains(ip) {
            return Some(ip);
        }
    }
    None
}
