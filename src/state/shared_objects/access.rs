//! What an application's shared-object host calls reach ([`SoAccess`]): the process's one
//! authority, behind whatever owns it (the gateway's hub), so the app host needs no gateway type.

use futures_util::future::BoxFuture;

use super::authority::{SharedObjects, SoRefusal};
use crate::state::store::Scope;

/// The shared objects an app's host calls act on.
pub trait SoAccess: Send + Sync + 'static {
    /// Opens `name` in `scope` for the app ([`SharedObjects::open_for_app`]), loading a
    /// persistent object from the store first when it is not in memory.
    fn open<'a>(
        &'a self,
        scope: &'a Scope,
        name: &'a str,
        persistent: bool,
    ) -> BoxFuture<'a, Result<(), SoRefusal>>;

    /// Runs `f` on the authority under its lock; keep it short (no I/O, no waiting).
    fn update(&self, f: &mut dyn FnMut(&mut SharedObjects));
}
