//! The connection driver: one task per RTMP connection, over any byte stream. TCP, the RTMPT
//! tunnel's pipes and TLS streams are all handed to [`serve`]; none of them is a second server.
//!
//! | file | job |
//! |---|---|
//! | `conn.rs` | the task's loop (read, write, timers, shutdown, kick) and the session's events: connect, publish, play, calls, data, app decisions |
//! | `playback.rs` | the NetStreams a connection plays live: [`crate::media::Playback`] with the session as the sink |
//! | `shared_objects.rs` | the connection's remote shared objects: its messages to the gateway's authority, the authority's messages back |
//! | `vod.rs` | the NetStreams a connection plays from files: [`crate::media::vod::Cursor`] pacing, seek, pause, end statuses |

mod conn;
mod playback;
mod shared_objects;
mod vod;

pub use conn::serve;
