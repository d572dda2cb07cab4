//! The state seam itself: [`StateStore`], the [`Scope`] it is keyed by and its errors.
//! Kept apart from `mod.rs` so stores import it without importing the module that lists them.

use futures_util::future::BoxFuture;

/// Whose state: one application instance (`app/instance`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    pub app: String,
    pub instance: String,
}

impl Scope {
    pub fn new(app: &str, instance: &str) -> Scope {
        Scope {
            app: app.to_owned(),
            instance: instance.to_owned(),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.app, self.instance)
    }
}

/// Why a state operation did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The write would take the scope past the store's bounds; nothing was changed.
    #[error("state store full for this instance ({0})")]
    Full(String),
    /// The store could not be reached or answered with an error; nothing is known to have changed.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
}

pub type StateResult<T> = Result<T, StateError>;

/// Key-value state per [`Scope`]. Implementations are shared by every instance actor
/// (`Arc<dyn StateStore>`), so they synchronise internally.
pub trait StateStore: Send + Sync + 'static {
    /// A short name for logs and the admin API (`"memory"`, later `"redis"`).
    fn kind(&self) -> &'static str;

    fn get<'a>(
        &'a self,
        scope: &'a Scope,
        key: &'a str,
    ) -> BoxFuture<'a, StateResult<Option<String>>>;

    /// Inserts or replaces; refused whole with [`StateError::Full`] past the store's bounds.
    fn set<'a>(
        &'a self,
        scope: &'a Scope,
        key: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, StateResult<()>>;

    /// Removes a key; a missing key is not an error.
    fn delete<'a>(&'a self, scope: &'a Scope, key: &'a str) -> BoxFuture<'a, StateResult<()>>;

    /// Every key of the scope, sorted.
    fn keys<'a>(&'a self, scope: &'a Scope) -> BoxFuture<'a, StateResult<Vec<String>>>;

    /// Forgets the whole scope (an instance that ends takes its in-process state with it).
    fn clear_scope<'a>(&'a self, scope: &'a Scope) -> BoxFuture<'a, StateResult<()>>;
}
