//! Bounds of the shared-object authority ([`SoLimits`]) and the per-client change budget.
//! Kept apart so the authority file reads as the protocol rules, not as bookkeeping.

/// What one instance's shared objects may hold and what one client may ask of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoLimits {
    /// Slots in one shared object (default 1024).
    pub max_slots: usize,
    /// Bytes in one shared object (default 1 MiB): the sum over slots of the key (u16 length +
    /// UTF-8) and the AMF0-encoded value, i.e. the data of the Change events that carry it. The
    /// initial-state reply to a Use is at most this plus its headers.
    pub max_bytes: usize,
    /// Shared objects loaded in one instance (default 256), temporary and persistent together.
    pub max_objects: usize,
    /// Subscribers of one shared object (default 1000).
    pub max_subscribers: usize,
    /// Send Message events waiting in one shared object until the next tick (default 128); their
    /// encoded size together is also capped by `max_bytes`.
    pub max_pending_messages: usize,
    /// Longest shared-object name in bytes (default 255, a file name on every filesystem).
    pub max_name_len: usize,
    /// Requests (change, remove, send) one client may make per second, sustained (default 100).
    pub requests_per_sec: u32,
    /// Requests one client may make in a burst (default 500): Flash Player sends every
    /// `setProperty` of a frame in one message, so a client that fills a form sends a burst.
    pub request_burst: u32,
}

impl Default for SoLimits {
    fn default() -> Self {
        SoLimits {
            max_slots: 1024,
            max_bytes: 1 << 20,
            max_objects: 256,
            max_subscribers: 1000,
            max_pending_messages: 128,
            max_name_len: 255,
            requests_per_sec: 100,
            request_burst: 500,
        }
    }
}

/// A token bucket in thousandths of a request, refilled from the caller's clock (sans-IO:
/// `now_ms` is whatever monotonic milliseconds the driver uses).
#[derive(Debug, Clone, Copy)]
pub(super) struct Bucket {
    milli_tokens: u64,
    last_ms: u64,
}

impl Bucket {
    pub(super) fn full(limits: &SoLimits, now_ms: u64) -> Bucket {
        Bucket {
            milli_tokens: u64::from(limits.request_burst) * 1000,
            last_ms: now_ms,
        }
    }

    /// Takes one request's token if there is one. A clock that goes backwards refills nothing.
    pub(super) fn take(&mut self, limits: &SoLimits, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        // `requests_per_sec` tokens per 1000 ms is `requests_per_sec` milli-tokens per ms.
        let refill = elapsed.saturating_mul(u64::from(limits.requests_per_sec));
        let cap = u64::from(limits.request_burst) * 1000;
        self.milli_tokens = self.milli_tokens.saturating_add(refill).min(cap);
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }
}

/// Whether `name` can be a shared-object name, an app or an instance: it becomes a file or folder
/// name under the store's folder, so nothing that could leave it or confuse it is allowed (empty,
/// `.`-first, `..`, `/`, `\`, NUL and other control characters), and it fits `max_len` bytes.
pub fn valid_so_name(name: &str, max_len: usize) -> bool {
    !name.is_empty()
        && name.len() <= max_len
        && !name.starts_with('.')
        && !name.contains("..")
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_from_the_callers_clock() {
        let l = SoLimits {
            requests_per_sec: 10,
            request_burst: 2,
            ..SoLimits::default()
        };
        let mut b = Bucket::full(&l, 1000);
        assert!(b.take(&l, 1000));
        assert!(b.take(&l, 1000));
        assert!(!b.take(&l, 1000));
        assert!(!b.take(&l, 1099)); // 0.99 of a token
        assert!(b.take(&l, 1100));
        assert!(!b.take(&l, 500)); // backwards: nothing
        assert!(b.take(&l, 10_000_000)); // long idle: capped at the burst
        assert!(b.take(&l, 10_000_000));
        assert!(!b.take(&l, 10_000_000));
    }

    #[test]
    fn names() {
        for ok in ["chat", "room-1", "a.b", "_definst_", "Ünï"] {
            assert!(valid_so_name(ok, 255), "{ok}");
        }
        for bad in [
            "", ".", "..", "a/b", "a\\b", "a..b", ".hidden", "a\0", "a\nb", "a\u{7f}",
        ] {
            assert!(!valid_so_name(bad, 255), "{bad:?}");
        }
        assert!(!valid_so_name(&"x".repeat(256), 255));
    }
}
