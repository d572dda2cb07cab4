//! What a connection and an app instance tell each other, without the instance's machinery:
//! the client's description, the instance's answers ([`ToConn`]) and a data message's fate.

use super::bindings::wasmgate::app::types;
use crate::rtmp::amf::Amf0Value;

/// A client as the instance sees it.
#[derive(Debug, Clone)]
pub struct ClientMeta {
    pub id: u64,
    pub address: String,
    pub transport: String,
    pub app: String,
    pub instance: String,
    pub query: String,
    pub tc_url: String,
    pub page_url: String,
    pub swf_url: String,
    pub flash_ver: String,
}

impl ClientMeta {
    pub fn to_wit(&self) -> types::ClientInfo {
        types::ClientInfo {
            id: self.id,
            address: self.address.clone(),
            transport: self.transport.clone(),
            app: self.app.clone(),
            instance: self.instance.clone(),
            query: self.query.clone(),
            tc_url: self.tc_url.clone(),
            page_url: self.page_url.clone(),
            swf_url: self.swf_url.clone(),
            flash_ver: self.flash_ver.clone(),
        }
    }
}

/// What happens to a data message.
#[derive(Debug, Clone, PartialEq)]
pub enum DataOutcome {
    Relay,
    Drop,
    /// Relay with these values after the handler name.
    Rewrite(Vec<Amf0Value>),
}

/// Messages from an app instance to one connection.
#[derive(Debug)]
pub enum ToConn {
    ConnectAccept,
    ConnectReject(String),
    ConnectRedirect {
        url: String,
        description: String,
    },
    Publish {
        stream_id: u32,
        result: Result<(), String>,
    },
    Play {
        stream_id: u32,
        result: Result<(), String>,
    },
    /// The answer to a client's call (`_result` / `_error`).
    CallResult {
        txn: f64,
        result: Result<Amf0Value, String>,
    },
    /// A server-to-client call; `call_id` 0 wants no answer.
    Call {
        method: String,
        args: Vec<Amf0Value>,
        call_id: u64,
    },
    Disconnect(String),
    /// The app's answer to [`ToActor::Data`] number `seq`.
    Data {
        seq: u64,
        outcome: DataOutcome,
    },
}
