//! Per-address lockout after repeated bearer-token failures on the admin listener: past
//! `admin.auth_failures` failures inside `admin.auth_failure_window_secs`, the address gets 429.
//!
//! A fixed window per address rather than a token bucket: an operator reads the rule as "N wrong
//! tokens per minute", and the lockout lasts one window from the failure that crossed the limit.
//! The table is bounded; when full, expired entries go first, then the oldest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at once. The allowlist can be wide; an address needs one failure to get
/// an entry, so this bounds the memory a spray of addresses can take.
const MAX_ADDRESSES: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Entry {
    window_start: Instant,
    failures: u32,
    blocked_until: Option<Instant>,
}

/// What the lockout says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Go on and check the token.
    Check,
    /// Refuse with 429 without looking at the token; retry after this long.
    Blocked(Duration),
}

/// The failure table shared by every admin connection.
#[derive(Default)]
pub(super) struct Lockout {
    table: Mutex<HashMap<IpAddr, Entry>>,
}

impl Lockout {
    /// Whether `ip` is locked out now.
    pub(super) fn check(&self, ip: IpAddr, now: Instant) -> Verdict {
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        match table.get(&ip).and_then(|e| e.blocked_until) {
            Some(until) if until > now => Verdict::Blocked(until - now),
            _ => Verdict::Check,
        }
    }

    /// Counts a wrong or missing token from `ip`. Returns `true` when this failure starts a
    /// lockout: the caller answers it with 429 already and logs once, not every refused
    /// request after it.
    /// `limit == 0` turns the lockout off.
    pub(super) fn failed(&self, ip: IpAddr, now: Instant, limit: u32, window: Duration) -> bool {
        if limit == 0 {
            return false;
        }
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if !table.contains_key(&ip) && table.len() >= MAX_ADDRESSES {
            evict(&mut table, now, window);
        }
        let e = table.entry(ip).or_insert(Entry {
            window_start: now,
            failures: 0,
            blocked_until: None,
        });
        if e.blocked_until.is_some_and(|u| u > now) {
            // Refused unchecked already; nothing to count.
            return false;
        }
        if now.duration_since(e.window_start) >= window {
            *e = Entry {
                window_start: now,
                failures: 0,
                blocked_until: None,
            };
        }
        e.failures = e.failures.saturating_add(1);
        if e.failures > limit {
            e.blocked_until = Some(now + window);
            // The next window starts when the lockout ends, so the address gets `limit`
            // fresh tries afterwards, not one.
            e.window_start = now + window;
            e.failures = 0;
            return true;
        }
        false
    }

    /// Addresses in the table (for tests and the bound).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Drops entries whose window and lockout are over; if none are, the one whose window started
/// first.
fn evict(table: &mut HashMap<IpAddr, Entry>, now: Instant, window: Duration) {
    let before = table.len();
    table.retain(|_, e| {
        e.blocked_until.is_some_and(|u| u > now) || now.duration_since(e.window_start) < window
    });
    if table.len() < before {
        return;
    }
    if let Some(oldest) = table
        .iter()
        .filter(|(_, e)| e.blocked_until.is_none_or(|u| u <= now))
        .min_by_key(|(_, e)| e.window_start)
        .or_else(|| table.iter().min_by_key(|(_, e)| e.window_start))
        .map(|(ip, _)| *ip)
    {
        table.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(60);

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn locks_out_after_the_limit_for_one_window() {
        let l = Lockout::default();
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(!l.failed(ip(1), t0 + Duration::from_secs(i), 3, W));
            assert_eq!(l.check(ip(1), t0 + Duration::from_secs(i)), Verdict::Check);
        }
        let t = t0 + Duration::from_secs(10);
        assert!(l.failed(ip(1), t, 3, W), "the fourth failure locks out");
        assert_eq!(l.check(ip(1), t), Verdict::Blocked(W));
        // Another address is not affected.
        assert_eq!(l.check(ip(2), t), Verdict::Check);
        // Failures while blocked do not restart the lockout or log again.
        assert!(!l.failed(ip(1), t + Duration::from_secs(5), 3, W));
        assert_eq!(
            l.check(ip(1), t + Duration::from_secs(30)),
            Verdict::Blocked(Duration::from_secs(30))
        );
        // After the window: checked again, with `limit` fresh tries.
        let after = t + W;
        assert_eq!(l.check(ip(1), after), Verdict::Check);
        for i in 0..3 {
            assert!(!l.failed(ip(1), after + Duration::from_secs(i), 3, W));
        }
        assert!(l.failed(ip(1), after + Duration::from_secs(4), 3, W));
    }

    #[test]
    fn failures_spread_over_windows_never_lock_out() {
        let l = Lockout::default();
        let t0 = Instant::now();
        for i in 0..10u64 {
            let t = t0 + W * i as u32;
            assert!(!l.failed(ip(1), t, 2, W));
            assert!(!l.failed(ip(1), t + Duration::from_secs(1), 2, W));
            assert_eq!(l.check(ip(1), t + Duration::from_secs(1)), Verdict::Check);
        }
    }

    #[test]
    fn zero_limit_disables() {
        let l = Lockout::default();
        let t0 = Instant::now();
        for _ in 0..100 {
            assert!(!l.failed(ip(1), t0, 0, W));
        }
        assert_eq!(l.check(ip(1), t0), Verdict::Check);
        assert_eq!(l.len(), 0);
    }

    #[test]
    fn the_table_is_bounded_and_keeps_locked_addresses() {
        let l = Lockout::default();
        let t0 = Instant::now();
        assert!(!l.failed(ip(0), t0, 1, W));
        assert!(l.failed(ip(0), t0, 1, W));
        for n in 1..(MAX_ADDRESSES as u32 + 500) {
            l.failed(ip(n), t0 + Duration::from_millis(n as u64), 1, W);
        }
        assert!(l.len() <= MAX_ADDRESSES);
        assert!(
            matches!(
                l.check(ip(0), t0 + Duration::from_secs(1)),
                Verdict::Blocked(_)
            ),
            "a locked-out address is not evicted by a spray of others"
        );
    }
}
