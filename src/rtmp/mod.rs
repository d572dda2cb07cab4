//! The RTMP protocol core: handshake, chunk stream, AMF and the NetConnection/NetStream session.
//! Nothing here touches a socket or a clock: every transport (TCP, RTMPT, TLS) drives the same code.
//!
//! | layer | file | spec |
//! |---|---|---|
//! | handshake (plain + digest) | `handshake.rs` | RTMP spec §5.2, Flash Player 9 digest scheme |
//! | chunk stream | `chunk/` (header, decode, encode) | RTMP spec §5.3 |
//! | control messages | `message.rs` | RTMP spec §5.4, §6.2, §7.1 |
//! | AMF0 / AMF3 | `amf/` | AMF0 spec, AMF3 spec |
//! | NetConnection / NetStream | `session.rs`, `command.rs` | RTMP spec §7.2 |
//! | shared object messages | `shared_object.rs` | RTMP spec §7.1.3 |

pub mod amf;
pub mod chunk;
pub mod client;
pub mod command;
pub mod handshake;
pub mod message;
mod output;
pub mod session;
pub mod shared_object;

pub use session::{Event, Session, SessionConfig, SessionError};
