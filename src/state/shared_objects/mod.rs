//! Remote shared objects on the server side: the in-memory authority every client's Use, change
//! and send goes through ([`SharedObjects`]), its bounds ([`SoLimits`]) and persistent storage.
//!
//! Sans-IO like `rtmp/`: requests and `now_ms` in, messages and save requests out of
//! [`SharedObjects::tick`]; the wire format is `rtmp::shared_object`. `gateway::shared_objects`
//! owns the wiring: it [`SharedObjects::handle`]s each decoded type 19/16 body, sends the
//! replies, ticks on a timer, and runs [`SoStore`] loads and saves in `spawn_blocking`.

mod access;
mod authority;
mod limits;
mod store;

pub use access::SoAccess;
pub use authority::{
    ClientId, Drained, Handled, LEVEL_ERROR, Outgoing, Ruling, SaveRequest, SharedObjects,
    SoRefusal, UseReply,
};
pub use authority::{SoSummary, SoTotals};
pub use limits::{SoLimits, valid_so_name};
pub use store::{FileSoStore, SoStore, SoStoreError, StoredSo};

#[cfg(test)]
mod tests;
