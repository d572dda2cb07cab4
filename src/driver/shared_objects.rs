//! A connection's side of remote shared objects: hands the session's shared-object messages to
//! the gateway's [`SoHub`] and writes back what the hub queues for this client.
//!
//! Kept out of `conn.rs` so the loop there needs one event arm and one `select!` arm. The
//! link is made on the first message, so connections that never use a shared object cost
//! nothing; dropping it (the connection ends) releases the client from every shared object.

use tracing::{debug, warn};

use crate::apps::InstanceHandle;
use crate::gateway::{Core, SoLink};
use crate::rtmp::Session;
use crate::rtmp::command::AppPath;
use crate::rtmp::shared_object::{SoEncoding, SoMessage};
use crate::state::Scope;

/// Messages written per wakeup, so a busy shared object cannot starve the connection's reads.
const WRITE_BATCH: usize = 64;

pub(super) struct SoConn {
    link: Option<SoLink>,
    /// What this client last sent with; replies and changes go back in it (FMS answers a type
    /// 16 client with type 16).
    encoding: SoEncoding,
    /// Messages dropped because the authority had this client's queue full.
    dropped: u64,
}

impl Default for SoConn {
    fn default() -> Self {
        SoConn {
            link: None,
            encoding: SoEncoding::Amf0,
            dropped: 0,
        }
    }
}

impl SoConn {
    /// A message from the client, for the authority of its `app/instance` (through the rules
    /// of that instance's app, `rules`, when it has one).
    pub(super) fn on_message(
        &mut self,
        core: &Core,
        app: Option<&AppPath>,
        rules: Option<&InstanceHandle>,
        client: u64,
        encoding: SoEncoding,
        message: SoMessage,
    ) {
        self.encoding = encoding;
        let link = match &mut self.link {
            Some(link) => link,
            None => {
                // The session emits these only once connected, so the app is known.
                let Some(path) = app else {
                    debug!("shared object message without an app dropped");
                    return;
                };
                let scope = Scope::new(&path.app, &path.instance);
                self.link
                    .insert(core.shared_objects().attach(client, scope, rules.cloned()))
            }
        };
        let name = message.name.clone();
        if !link.submit(message) {
            self.dropped += 1;
            // A flooding client would otherwise write a log line per message: log the 1st,
            // 2nd, 4th, 8th... drop.
            if self.dropped.is_power_of_two() {
                warn!(so = %name, dropped = self.dropped, "shared object message dropped: too many waiting for the authority");
            }
        }
    }

    /// Waits for the next message the hub queued for this client (never, without a link);
    /// `None` when the hub cut this client off because its queue overflowed: its copies of the
    /// objects can no longer be kept in step, so the connection must close.
    pub(super) async fn recv(&mut self) -> Option<SoMessage> {
        match &mut self.link {
            Some(link) => link.from_hub.recv().await,
            None => std::future::pending().await,
        }
    }

    /// Queues `first` and what else is waiting (up to a batch) on the session.
    pub(super) fn write(&mut self, session: &mut Session, first: SoMessage) {
        session.send_shared_object(&first, self.encoding);
        let Some(link) = &mut self.link else {
            return;
        };
        for _ in 1..WRITE_BATCH {
            match link.from_hub.try_recv() {
                Ok(m) => session.send_shared_object(&m, self.encoding),
                Err(_) => break,
            }
        }
    }
}
