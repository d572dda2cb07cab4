//! Who may reach the admin listener: the CIDR allowlist checked on accept, trusted reverse
//! proxies for `X-Forwarded-For`, constant-time token checks, and rate-limited denial logs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use subtle::ConstantTimeEq;

pub use crate::config::nets::{NetList, effective_client, normalise};

/// Compares a presented `Authorization` header with the expected token in constant time (per
/// length: the token's length is not treated as secret).
pub fn bearer_matches(header: Option<&[u8]>, token: &str) -> bool {
    let Some(h) = header else { return false };
    let Some(presented) = h.strip_prefix(b"Bearer ") else {
        return false;
    };
    presented.ct_eq(token.as_bytes()).into()
}

/// At most one denial log line per second; the lines in between are counted and reported with
/// the next one, so a scan of the admin port cannot flood the log.
pub struct DenyLog {
    epoch: Instant,
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl Default for DenyLog {
    fn default() -> Self {
        DenyLog {
            epoch: Instant::now(),
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }
}

impl DenyLog {
    /// Returns `Some(suppressed_since_last)` when this denial may be logged.
    pub fn admit(&self) -> Option<u64> {
        let now = self.epoch.elapsed().as_millis() as u64;
        let next = self.next_ms.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_ms
                .compare_exchange(next, now + 1000, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn nets(v: &[&str]) -> NetList {
        NetList::new(v.iter().map(|s| s.parse().unwrap()).collect())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn mapped_ipv6_matches_ipv4_networks() {
        let l = nets(&["127.0.0.1/32", "::1/128"]);
        assert!(l.contains(ip("127.0.0.1")));
        assert!(l.contains(ip("::ffff:127.0.0.1")));
        assert!(l.contains(ip("::1")));
        assert!(!l.contains(ip("127.0.0.2")));
        assert!(!l.contains(ip("::ffff:127.0.0.2")));
        assert!(!l.contains(ip("::2")));
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let trusted = nets(&["10.0.0.0/8"]);
        // Not a proxy: the header is ignored.
        assert_eq!(
            effective_client(ip("192.0.2.1"), Some("127.0.0.1"), &trusted),
            Some(ip("192.0.2.1"))
        );
        // Proxy chain: right-most untrusted entry wins, a spoofed left entry is ignored.
        assert_eq!(
            effective_client(
                ip("10.0.0.5"),
                Some("127.0.0.1, 198.51.100.7, 10.0.0.9"),
                &trusted
            ),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(effective_client(ip("10.0.0.5"), None, &trusted), None);
        assert_eq!(
            effective_client(ip("10.0.0.5"), Some("garbage"), &trusted),
            None
        );
    }

    #[test]
    fn bearer_compare() {
        assert!(bearer_matches(Some(b"Bearer s3cret"), "s3cret"));
        assert!(!bearer_matches(Some(b"Bearer s3cre"), "s3cret"));
        assert!(!bearer_matches(Some(b"Bearer s3cretX"), "s3cret"));
        assert!(!bearer_matches(Some(b"Basic s3cret"), "s3cret"));
        assert!(!bearer_matches(None, "s3cret"));
    }

    #[test]
    fn deny_log_is_rate_limited() {
        let d = DenyLog::default();
        assert_eq!(d.admit(), Some(0));
        assert_eq!(d.admit(), None);
        assert_eq!(d.admit(), None);
        d.next_ms.store(0, Ordering::Relaxed);
        assert_eq!(d.admit(), Some(2));
    }
}
