//! The in-process [`StateStore`]: one sorted map per scope behind a mutex, with the per-instance
//! bounds the `kv-*` host calls have always had (1 MiB of keys and values, 10 000 keys).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use futures_util::future::{BoxFuture, ready};

use super::store::{Scope, StateError, StateResult, StateStore};

/// Most bytes (keys plus values) one scope may hold.
pub const MAX_KV_BYTES: usize = 1 << 20;
/// Most keys one scope may hold.
pub const MAX_KV_KEYS: usize = 10_000;

#[derive(Default)]
struct Table {
    entries: BTreeMap<String, String>,
    bytes: usize,
}

/// State kept in this process, lost when it exits. Each call holds the lock for one map
/// operation only, so instances never wait on each other for long.
pub struct MemoryStore {
    scopes: Mutex<HashMap<Scope, Table>>,
    max_bytes: usize,
    max_keys: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::with_limits(MAX_KV_BYTES, MAX_KV_KEYS)
    }
}

impl MemoryStore {
    pub fn with_limits(max_bytes: usize, max_keys: usize) -> MemoryStore {
        MemoryStore {
            scopes: Mutex::new(HashMap::new()),
            max_bytes,
            max_keys,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Scope, Table>> {
        // Every critical section is one map update, so a panicked holder left it consistent.
        self.scopes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get_now(&self, scope: &Scope, key: &str) -> Option<String> {
        self.lock()
            .get(scope)
            .and_then(|t| t.entries.get(key).cloned())
    }

    fn set_now(&self, scope: &Scope, key: &str, value: &str) -> StateResult<()> {
        let mut scopes = self.lock();
        let table = match scopes.get_mut(scope) {
            Some(t) => t,
            None => scopes.entry(scope.clone()).or_default(),
        };
        let old = table
            .entries
            .get(key)
            .map(|v| key.len() + v.len())
            .unwrap_or(0);
        let new_total = table.bytes - old + key.len() + value.len();
        if new_total > self.max_bytes {
            return Err(StateError::Full(format!(
                "{new_total} bytes of keys and values, limit {}",
                self.max_bytes
            )));
        }
        if !table.entries.contains_key(key) && table.entries.len() >= self.max_keys {
            return Err(StateError::Full(format!("limit of {} keys", self.max_keys)));
        }
        table.bytes = new_total;
        table.entries.insert(key.to_owned(), value.to_owned());
        Ok(())
    }

    fn delete_now(&self, scope: &Scope, key: &str) {
        let mut scopes = self.lock();
        if let Some(t) = scopes.get_mut(scope) {
            if let Some(v) = t.entries.remove(key) {
                t.bytes -= key.len() + v.len();
            }
            if t.entries.is_empty() {
                scopes.remove(scope);
            }
        }
    }

    fn keys_now(&self, scope: &Scope) -> Vec<String> {
        self.lock()
            .get(scope)
            .map(|t| t.entries.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// How many scopes hold data (for tests and diagnostics).
    pub fn scopes(&self) -> usize {
        self.lock().len()
    }
}

impl StateStore for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn get<'a>(
        &'a self,
        scope: &'a Scope,
        key: &'a str,
    ) -> BoxFuture<'a, StateResult<Option<String>>> {
        Box::pin(ready(Ok(self.get_now(scope, key))))
    }

    fn set<'a>(
        &'a self,
        scope: &'a Scope,
        key: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, StateResult<()>> {
        Box::pin(ready(self.set_now(scope, key, value)))
    }

    fn delete<'a>(&'a self, scope: &'a Scope, key: &'a str) -> BoxFuture<'a, StateResult<()>> {
        self.delete_now(scope, key);
        Box::pin(ready(Ok(())))
    }

    fn keys<'a>(&'a self, scope: &'a Scope) -> BoxFuture<'a, StateResult<Vec<String>>> {
        Box::pin(ready(Ok(self.keys_now(scope))))
    }

    fn clear_scope<'a>(&'a self, scope: &'a Scope) -> BoxFuture<'a, StateResult<()>> {
        self.lock().remove(scope);
        Box::pin(ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    fn now<T>(f: BoxFuture<'_, T>) -> T {
        f.now_or_never().expect("the memory store answers at once")
    }

    #[test]
    fn scopes_are_separate() {
        let s = MemoryStore::default();
        let (a, b) = (Scope::new("chat", "room1"), Scope::new("chat", "room2"));
        now(s.set(&a, "k", "1")).unwrap();
        now(s.set(&b, "k", "2")).unwrap();
        assert_eq!(now(s.get(&a, "k")).unwrap().as_deref(), Some("1"));
        assert_eq!(now(s.get(&b, "k")).unwrap().as_deref(), Some("2"));
        now(s.clear_scope(&a)).unwrap();
        assert_eq!(now(s.get(&a, "k")).unwrap(), None);
        assert_eq!(now(s.get(&b, "k")).unwrap().as_deref(), Some("2"));
        assert_eq!(s.scopes(), 1);
    }

    #[test]
    fn keys_are_sorted_and_delete_frees_the_scope() {
        let s = MemoryStore::default();
        let a = Scope::new("app", "_definst_");
        for k in ["b", "a", "c"] {
            now(s.set(&a, k, "v")).unwrap();
        }
        assert_eq!(now(s.keys(&a)).unwrap(), ["a", "b", "c"]);
        for k in ["a", "b", "c", "missing"] {
            now(s.delete(&a, k)).unwrap();
        }
        assert!(now(s.keys(&a)).unwrap().is_empty());
        assert_eq!(s.scopes(), 0);
    }

    #[test]
    fn byte_bound_counts_replacements_and_refuses_whole() {
        let s = MemoryStore::with_limits(10, 100);
        let a = Scope::new("a", "i");
        now(s.set(&a, "k", "123456789")).unwrap(); // 10 bytes
        assert!(matches!(now(s.set(&a, "x", "")), Err(StateError::Full(_))));
        // Replacing frees the old value's bytes first.
        now(s.set(&a, "k", "abc")).unwrap();
        now(s.set(&a, "x", "yz")).unwrap();
        assert_eq!(now(s.get(&a, "k")).unwrap().as_deref(), Some("abc"));
        let err = now(s.set(&a, "k", "0123456789")).unwrap_err();
        assert!(err.to_string().contains("limit 10"), "{err}");
        assert_eq!(now(s.get(&a, "k")).unwrap().as_deref(), Some("abc"));
    }

    #[test]
    fn key_bound_allows_overwrites() {
        let s = MemoryStore::with_limits(1 << 20, 2);
        let a = Scope::new("a", "i");
        now(s.set(&a, "k1", "v")).unwrap();
        now(s.set(&a, "k2", "v")).unwrap();
        assert!(matches!(
            now(s.set(&a, "k3", "v")),
            Err(StateError::Full(_))
        ));
        now(s.set(&a, "k2", "w")).unwrap();
        // An empty key with an empty value takes no bytes but still a key slot.
        assert!(matches!(now(s.set(&a, "", "")), Err(StateError::Full(_))));
    }
}
