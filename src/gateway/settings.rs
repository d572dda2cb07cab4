//! The configuration in force: one immutable snapshot (the config and what the core derives
//! from it) that a reload swaps whole, so no reader ever sees half of an old and a new config.

use std::sync::{Arc, RwLock};

use crate::config::Config;
use crate::rtmp::SessionConfig;

/// What a reload replaces at once. Take one per connection or request, not per message.
#[derive(Debug)]
pub struct Snapshot {
    pub config: Arc<Config>,
    /// Protocol settings for new sessions, derived from `config`.
    pub session: SessionConfig,
}

impl Snapshot {
    pub fn new(config: Config) -> Snapshot {
        Snapshot {
            session: config.session_config(),
            config: Arc::new(config),
        }
    }
}

/// The cell holding the current [`Snapshot`].
pub struct Settings {
    current: RwLock<Arc<Snapshot>>,
}

impl Settings {
    pub fn new(config: Config) -> Settings {
        Settings {
            current: RwLock::new(Arc::new(Snapshot::new(config))),
        }
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn swap(&self, next: Snapshot) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
    }
}
