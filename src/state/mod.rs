//! Application state behind one trait: the key-value data a guest's `kv-*` host calls read and
//! write, per app instance. In-process today ([`MemoryStore`]); a shared store (Redis) is one more
//! [`StateStore`] that `Server::start` hands to the app host instead.
//!
//! The trait is async (boxed futures, so it stays object-safe) because a networked store answers
//! later: the `kv-*` imports are async host calls, and while one waits the guest is suspended, not
//! a thread. Every store bounds what one scope may hold and says so with [`StateError::Full`].
//!
//! Remote shared objects (`shared_objects/`) are state too, with their own authority and store.

mod memory;
pub mod shared_objects;
mod store;

pub use memory::{MAX_KV_BYTES, MAX_KV_KEYS, MemoryStore};
pub use store::{Scope, StateError, StateResult, StateStore};
