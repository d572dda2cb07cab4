//! The server side of one RTMP connection as a sans-IO state machine: handshake, chunk stream,
//! flow control, pings and the NetConnection/NetStream commands, turned into [`Event`]s.
//!
//! Call order, for any transport:
//! 1. [`Session::handle_input`] with every byte read from the peer (and `now`);
//! 2. [`Session::poll_event`] until `None`, answering events that need a decision
//!    ([`Session::accept_connect`], [`Session::publish_started`], [`Session::play_started`], ...);
//! 3. [`Session::drain_transmit`] and write those bytes out, in order;
//! 4. at [`Session::poll_timeout`], call [`Session::handle_timeout`].
//!
//! Media for players is queued with [`Session::send_encoded`] (chunks shared between many
//! sessions) or [`Session::send_media`], so command replies and media leave in one ordered stream.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use super::amf::{
    Amf0Value, AmfError, AmfLimits, decode_amf0_all, decode_amf3_message, encode_amf0_all,
    encode_amf3_message,
};
use super::chunk::{ChunkDecoder, ChunkError, ChunkLimits, MessageHeader, RawMessage};
use super::command::{Command, ConnectRequest, StreamName, status_object};
use super::handshake::{HandshakeError, ServerHandshake};
use super::message::{
    AckWindow, ControlMessage, MessageError, UserControlEvent, msg_type, split_aggregate,
};
use super::output::Output;
use super::shared_object::{SoDecodeLimits, SoEncoding, SoError, SoMessage, decode_so, encode_so};

pub use super::output::csid;

/// Per-connection protocol settings and limits.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Chunk size announced to the client right after connect.
    pub out_chunk_size: u32,
    /// Window Acknowledgement Size announced to the client.
    pub window_ack_size: u32,
    /// Set Peer Bandwidth announced to the client.
    pub peer_bandwidth: u32,
    /// Silence after which the client is pinged.
    pub ping_interval: Duration,
    /// How long a pinged client may stay silent before it is dropped.
    pub ping_timeout: Duration,
    pub chunk_limits: ChunkLimits,
    pub amf_limits: AmfLimits,
    /// NetStreams one connection may create.
    pub max_streams: u32,
    /// Messages held while the app decides on a pending connect.
    pub max_pending_messages: usize,
    /// Bytes of half-received messages held across all chunk streams of one connection.
    pub max_partial_bytes: usize,
    /// `fmsVer` reported to clients.
    pub fms_ver: String,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            out_chunk_size: 4096,
            window_ack_size: 2_500_000,
            peer_bandwidth: 2_500_000,
            ping_interval: Duration::from_secs(15),
            ping_timeout: Duration::from_secs(15),
            chunk_limits: ChunkLimits::default(),
            amf_limits: AmfLimits::default(),
            max_streams: 16,
            max_pending_messages: 64,
            max_partial_bytes: 32 << 20,
            fms_ver: "FMS/3,5,7,7009".to_owned(),
        }
    }
}

/// Why a session ended. `is_peer_fault` separates bad or dead peers from our own refusals.
#[derive(Debug, Error)]
pub enum SessionError {
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("chunk stream: {0}")]
    Chunk(#[from] ChunkError),
    #[error("control message: {0}")]
    Message(#[from] MessageError),
    #[error("AMF in {context}: {source}")]
    Amf {
        context: &'static str,
        source: AmfError,
    },
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("peer did not answer a ping within {0:?}")]
    PingTimeout(Duration),
    #[error("too many messages while the connect decision is pending (max {0})")]
    PendingOverflow(usize),
    #[error("{0} bytes of partial messages buffered (max {1})")]
    PartialOverflow(usize, usize),
    /// A type 19/16 body that does not decode. Treated like a bad AMF command: the peer is
    /// broken or hostile, and a half-understood shared-object update cannot be applied.
    #[error("shared object message: {0}")]
    SharedObject(#[from] SoError),
}

/// What a media message carries, as far as routing needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Audio,
    Video,
    /// A data message (AMF0 type 18 or AMF3 type 15), e.g. `onMetaData`.
    Data,
}

/// What the session reports to its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Answer with [`Session::accept_connect`] or [`Session::reject_connect`].
    Connect(ConnectRequest),
    /// Answer with [`Session::publish_started`] or [`Session::publish_rejected`].
    Publish {
        stream_id: u32,
        name: StreamName,
        /// `live`, `record` or `append`.
        kind: String,
    },
    /// The publisher on `stream_id` stopped (FCUnpublish, closeStream or deleteStream).
    Unpublish {
        stream_id: u32,
    },
    /// Answer with [`Session::play_started`] (or `play_failed`).
    Play {
        stream_id: u32,
        name: StreamName,
        /// Milliseconds: -2000 (or -2) live or recorded, any other negative (librtmp's -1000)
        /// live only, >= 0 recorded from there (see README).
        start: f64,
        /// Milliseconds of a recording to play; negative: to the end, 0: one frame.
        duration: f64,
        reset: bool,
    },
    /// `seek(ms)` on a playing stream. Answer with [`Session::seek_notify`].
    Seek {
        stream_id: u32,
        position_ms: f64,
    },
    /// `getStreamLength(name)`: answer with [`Session::send_result`] and the length in seconds.
    StreamLength {
        transaction_id: f64,
        name: String,
    },
    /// Playback on `stream_id` ended (closeStream, deleteStream or a new play replacing it).
    StopPlay {
        stream_id: u32,
    },
    Pause {
        stream_id: u32,
        pause: bool,
        position_ms: f64,
    },
    ReceiveAudio {
        stream_id: u32,
        enabled: bool,
    },
    ReceiveVideo {
        stream_id: u32,
        enabled: bool,
    },
    /// Audio, video or data from a publishing stream; timestamps are absolute (as received).
    Media {
        stream_id: u32,
        kind: MediaKind,
        type_id: u8,
        timestamp: u32,
        payload: Bytes,
    },
    /// A data message that is not stream metadata: `NetStream.send(handler, args...)` on a
    /// stream (`publishing` tells whether this connection publishes it), or an AMF data message
    /// on the connection's stream 0. `values` is the decoded message (handler first) and
    /// `payload` its encoding, ready to relay to players as it is.
    Data {
        stream_id: u32,
        publishing: bool,
        type_id: u8,
        timestamp: u32,
        payload: Bytes,
        values: Vec<Amf0Value>,
    },
    /// A method the session does not handle itself (`NetConnection.call` from the client).
    /// Answer with [`Session::send_result`] or [`Session::send_error`].
    Call(Command),
    /// The client answered a [`Session::send_call`] made with a non-zero transaction id:
    /// `_result` (`ok`) or `_error`, with the first value after the command object.
    CallReply {
        transaction_id: f64,
        ok: bool,
        value: Amf0Value,
    },
    /// A remote shared object message (type 19 or 16) on a connected session. Answer with
    /// [`Session::send_shared_object`] in the same `encoding`.
    SharedObject {
        encoding: SoEncoding,
        message: SoMessage,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshake,
    /// Handshake done, `connect` not yet received.
    AwaitConnect,
    /// `connect` received, app decision pending.
    ConnectPending,
    Connected,
    /// Connect rejected or session closed: input is ignored.
    Closed,
}

#[derive(Debug, Clone, PartialEq)]
enum Role {
    Idle,
    PublishPending(String),
    Publishing(String),
    Playing(String),
}

pub struct Session {
    cfg: SessionConfig,
    phase: Phase,
    handshake: ServerHandshake,
    inbuf: BytesMut,
    decoder: ChunkDecoder,
    output: Output,
    events: VecDeque<Event>,
    /// Messages that arrived while the connect decision was pending.
    held: VecDeque<RawMessage>,
    /// Bytes received, and the window the peer asked us to acknowledge at.
    ack: AckWindow,
    last_input: Instant,
    ping_sent: Option<Instant>,
    epoch: Instant,
    object_encoding: f64,
    connect_txn: f64,
    streams: HashMap<u32, Role>,
    next_stream_id: u32,
    buffer_length_ms: u32,
}

impl Session {
    pub fn new(cfg: SessionConfig, now: Instant) -> Session {
        let decoder = ChunkDecoder::new(cfg.chunk_limits);
        Session {
            phase: Phase::Handshake,
            handshake: ServerHandshake::new(0),
            inbuf: BytesMut::with_capacity(4096),
            decoder,
            output: Output::new(),
            events: VecDeque::new(),
            held: VecDeque::new(),
            ack: AckWindow::new(cfg.window_ack_size),
            last_input: now,
            ping_sent: None,
            epoch: now,
            object_encoding: 0.0,
            connect_txn: 1.0,
            streams: HashMap::new(),
            next_stream_id: 1,
            buffer_length_ms: 0,
            cfg,
        }
    }

    /// True once the client's `connect` has been accepted.
    pub fn is_connected(&self) -> bool {
        self.phase == Phase::Connected
    }

    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Chunk size of everything this session writes after the connect reply.
    pub fn out_chunk_size(&self) -> u32 {
        self.output.chunk_size()
    }

    /// Total bytes received from the peer.
    pub fn bytes_in(&self) -> u64 {
        self.ack.received()
    }

    /// The client's requested buffer length (SetBufferLength), in ms.
    pub fn buffer_length_ms(&self) -> u32 {
        self.buffer_length_ms
    }

    /// Feeds bytes read from the peer. An error means the connection must be closed; bytes queued
    /// before the error (e.g. a rejection) may still be written out first.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) -> Result<(), SessionError> {
        if self.phase == Phase::Closed {
            return Ok(());
        }
        self.last_input = now;
        self.ping_sent = None;
        self.ack.add(data.len());
        self.inbuf.extend_from_slice(data);

        if self.phase == Phase::Handshake {
            if !self
                .handshake
                .feed(&mut self.inbuf, self.output.pending_mut())?
            {
                return Ok(());
            }
            self.phase = Phase::AwaitConnect;
        }
        while let Some(msg) = self.decoder.decode(&mut self.inbuf)? {
            if self.phase == Phase::ConnectPending && !is_control(msg.header.type_id) {
                if self.held.len() >= self.cfg.max_pending_messages {
                    return Err(SessionError::PendingOverflow(self.cfg.max_pending_messages));
                }
                self.held.push_back(msg);
                continue;
            }
            self.handle_message(msg)?;
            if self.phase == Phase::Closed {
                break;
            }
        }
        // Each message is bounded alone, but many chunk streams each holding a large partial
        // message would add up; bound the sum.
        let partial = self.decoder.pending_bytes();
        if partial > self.cfg.max_partial_bytes {
            return Err(SessionError::PartialOverflow(
                partial,
                self.cfg.max_partial_bytes,
            ));
        }
        self.maybe_acknowledge();
        Ok(())
    }

    /// When [`Session::handle_timeout`] wants to be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Closed {
            return None;
        }
        Some(match self.ping_sent {
            Some(sent) => sent + self.cfg.ping_timeout,
            None => self.last_input + self.cfg.ping_interval,
        })
    }

    /// Pings a silent peer; returns an error when a ping went unanswered.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError> {
        if self.phase == Phase::Closed {
            return Ok(());
        }
        match self.ping_sent {
            Some(sent) if now >= sent + self.cfg.ping_timeout => {
                Err(SessionError::PingTimeout(self.cfg.ping_timeout))
            }
            Some(_) => Ok(()),
            None if now >= self.last_input + self.cfg.ping_interval => {
                // Before the handshake completes there is nobody to ping; the transport's
                // handshake timeout covers that phase.
                if self.phase == Phase::Handshake {
                    return Err(SessionError::PingTimeout(self.cfg.ping_interval));
                }
                let ts = self.uptime_ms(now);
                self.send_control(ControlMessage::UserControl(UserControlEvent::PingRequest(
                    ts,
                )));
                self.ping_sent = Some(now);
                Ok(())
            }
            None => Ok(()),
        }
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Moves every pending output buffer into `out`, in order.
    pub fn drain_transmit(&mut self, out: &mut Vec<Bytes>) {
        self.output.drain(out);
    }

    /// True when output is waiting.
    pub fn has_transmit(&self) -> bool {
        self.output.has_pending()
    }

    /// Queues chunk bytes made elsewhere (shared media). They must have been encoded with
    /// [`Session::out_chunk_size`] on a media csid with a fmt-0 first chunk.
    pub fn send_encoded(&mut self, bytes: Bytes) {
        self.output.encoded(bytes);
    }

    /// Encodes one media or data message for this session alone (a player whose stream id or
    /// chunk size differs from the shared encoding, or a per-player preamble).
    pub fn send_media(&mut self, csid: u32, header: &MessageHeader, payload: &[u8]) {
        self.output.standalone(csid, header, payload);
    }

    // ---- decisions on events ----

    /// Accepts the pending `connect`: window, bandwidth, chunk size, then `_result`.
    pub fn accept_connect(&mut self) {
        if self.phase != Phase::ConnectPending {
            return;
        }
        self.send_control(ControlMessage::WindowAckSize(self.cfg.window_ack_size));
        self.send_control(ControlMessage::SetPeerBandwidth {
            size: self.cfg.peer_bandwidth,
            limit_type: 2,
        });
        self.output.set_chunk_size(self.cfg.out_chunk_size);
        self.send_control(ControlMessage::UserControl(UserControlEvent::StreamBegin(
            0,
        )));

        let props = Amf0Value::object([
            ("fmsVer", Amf0Value::string(self.cfg.fms_ver.clone())),
            ("capabilities", Amf0Value::Number(31.0)),
            ("mode", Amf0Value::Number(1.0)),
        ]);
        let mut info = status_object(
            "status",
            "NetConnection.Connect.Success",
            "Connection succeeded.",
        );
        push_prop(
            &mut info,
            "objectEncoding",
            Amf0Value::Number(self.object_encoding),
        );
        push_prop(
            &mut info,
            "data",
            Amf0Value::EcmaArray(vec![("version".into(), Amf0Value::string("3,5,7,7009"))]),
        );
        let txn = self.connect_txn;
        self.send_command(
            0,
            &[
                Amf0Value::string("_result"),
                Amf0Value::Number(txn),
                props,
                info,
            ],
        );
        self.phase = Phase::Connected;

        // Commands that raced the decision are handled now, in arrival order.
        while let Some(msg) = self.held.pop_front() {
            if let Err(e) = self.handle_message(msg) {
                tracing::debug!(error = %e, "held message failed after connect");
                self.phase = Phase::Closed;
                return;
            }
        }
    }

    /// Rejects the pending `connect` with a reason the client shows
    /// (`NetConnection.Connect.Rejected`); the transport closes after flushing.
    pub fn reject_connect(&mut self, description: &str) {
        self.reject_connect_with(description, None);
    }

    /// Rejects with `ex.code = 302` and `ex.redirect = url`, as FMS's `rejectConnection` redirect.
    pub fn redirect_connect(&mut self, url: &str, description: &str) {
        self.reject_connect_with(description, Some(url));
    }

    fn reject_connect_with(&mut self, description: &str, redirect: Option<&str>) {
        if self.phase != Phase::ConnectPending {
            return;
        }
        let mut info = status_object("error", "NetConnection.Connect.Rejected", description);
        if let Some(url) = redirect {
            push_prop(
                &mut info,
                "ex",
                Amf0Value::object([
                    ("code", Amf0Value::Number(302.0)),
                    ("redirect", Amf0Value::string(url)),
                ]),
            );
        }
        let txn = self.connect_txn;
        self.send_command(
            0,
            &[
                Amf0Value::string("_error"),
                Amf0Value::Number(txn),
                Amf0Value::Null,
                info,
            ],
        );
        self.held.clear();
        self.phase = Phase::Closed;
    }

    /// The publish on `stream_id` is live: StreamBegin + `NetStream.Publish.Start`.
    pub fn publish_started(&mut self, stream_id: u32) {
        let Some(Role::PublishPending(name)) = self.streams.get(&stream_id).cloned() else {
            return;
        };
        self.send_control(ControlMessage::UserControl(UserControlEvent::StreamBegin(
            stream_id,
        )));
        self.send_status(
            stream_id,
            "status",
            "NetStream.Publish.Start",
            &format!("{name} is now published."),
        );
        self.streams.insert(stream_id, Role::Publishing(name));
    }

    /// Refuses a publish, e.g. `NetStream.Publish.BadName` when the name is in use.
    pub fn publish_rejected(&mut self, stream_id: u32, code: &str, description: &str) {
        if let Some(role) = self.streams.get_mut(&stream_id) {
            *role = Role::Idle;
        }
        self.send_status(stream_id, "error", code, description);
    }

    /// The play on `stream_id` is set up: StreamBegin, `Play.Reset` (if asked), `Play.Start`,
    /// `|RtmpSampleAccess` and `NetStream.Data.Start`, as FMS sends them.
    pub fn play_started(&mut self, stream_id: u32, name: &str, reset: bool) {
        self.streams
            .insert(stream_id, Role::Playing(name.to_owned()));
        self.send_control(ControlMessage::UserControl(UserControlEvent::StreamBegin(
            stream_id,
        )));
        if reset {
            self.send_status(
                stream_id,
                "status",
                "NetStream.Play.Reset",
                &format!("Playing and resetting {name}."),
            );
        }
        self.send_status(
            stream_id,
            "status",
            "NetStream.Play.Start",
            &format!("Started playing {name}."),
        );
        self.send_data(
            stream_id,
            &[
                Amf0Value::string("|RtmpSampleAccess"),
                Amf0Value::Boolean(true),
                Amf0Value::Boolean(true),
            ],
        );
        self.send_data(
            stream_id,
            &[
                Amf0Value::string("onStatus"),
                Amf0Value::object([("code", Amf0Value::string("NetStream.Data.Start"))]),
            ],
        );
    }

    /// Play refused (e.g. `NetStream.Play.StreamNotFound` or a denied play).
    pub fn play_failed(&mut self, stream_id: u32, code: &str, description: &str) {
        self.streams.insert(stream_id, Role::Idle);
        self.send_status(stream_id, "error", code, description);
    }

    /// A publisher appeared for a waiting player.
    pub fn play_publish_notify(&mut self, stream_id: u32, name: &str) {
        self.send_status(
            stream_id,
            "status",
            "NetStream.Play.PublishNotify",
            &format!("{name} is now published."),
        );
    }

    /// The publisher of a played stream went away.
    pub fn play_unpublish_notify(&mut self, stream_id: u32, name: &str) {
        self.send_status(
            stream_id,
            "status",
            "NetStream.Play.UnpublishNotify",
            &format!("{name} is now unpublished."),
        );
        self.send_control(ControlMessage::UserControl(UserControlEvent::StreamEof(
            stream_id,
        )));
    }

    /// A seek landed at `position_ms`: `Seek.Notify` (ffmpeg drops everything until it), then
    /// `Play.Start` and the sample-access grant again, as FMS sends them.
    pub fn seek_notify(&mut self, stream_id: u32, name: &str, position_ms: u32) {
        self.send_control(ControlMessage::UserControl(UserControlEvent::StreamBegin(
            stream_id,
        )));
        self.send_status(
            stream_id,
            "status",
            "NetStream.Seek.Notify",
            &format!("Seeking {position_ms} (stream ID: {stream_id})."),
        );
        self.send_status(
            stream_id,
            "status",
            "NetStream.Play.Start",
            &format!("Started playing {name}."),
        );
        self.send_data(
            stream_id,
            &[
                Amf0Value::string("|RtmpSampleAccess"),
                Amf0Value::Boolean(true),
                Amf0Value::Boolean(true),
            ],
        );
    }

    /// A recording played to its end (or its `duration`): `onPlayStatus` with
    /// `NetStream.Play.Complete`, StreamEOF, then `NetStream.Play.Stop` (ffmpeg and rtmpdump
    /// end there).
    pub fn play_complete(&mut self, stream_id: u32, name: &str, duration_ms: u32, bytes: u64) {
        self.send_data(
            stream_id,
            &[
                Amf0Value::string("onPlayStatus"),
                Amf0Value::object([
                    ("level", Amf0Value::string("status")),
                    ("code", Amf0Value::string("NetStream.Play.Complete")),
                    (
                        "duration",
                        Amf0Value::Number(f64::from(duration_ms) / 1000.0),
                    ),
                    ("bytes", Amf0Value::Number(bytes as f64)),
                ]),
            ],
        );
        self.send_control(ControlMessage::UserControl(UserControlEvent::StreamEof(
            stream_id,
        )));
        self.send_status(
            stream_id,
            "status",
            "NetStream.Play.Stop",
            &format!("Stopped playing {name}."),
        );
    }

    pub fn pause_notify(&mut self, stream_id: u32, paused: bool, name: &str) {
        let (code, what) = if paused {
            ("NetStream.Pause.Notify", "Pausing")
        } else {
            ("NetStream.Unpause.Notify", "Unpausing")
        };
        self.send_status(stream_id, "status", code, &format!("{what} {name}."));
    }

    /// Replies `_result` to a client call.
    pub fn send_result(&mut self, transaction_id: f64, values: &[Amf0Value]) {
        let mut all = vec![
            Amf0Value::string("_result"),
            Amf0Value::Number(transaction_id),
            Amf0Value::Null,
        ];
        all.extend_from_slice(values);
        self.send_command(0, &all);
    }

    /// Replies `_error` to a client call with a status-shaped info object.
    pub fn send_error(&mut self, transaction_id: f64, code: &str, description: &str) {
        self.send_command(
            0,
            &[
                Amf0Value::string("_error"),
                Amf0Value::Number(transaction_id),
                Amf0Value::Null,
                status_object("error", code, description),
            ],
        );
    }

    /// Calls a method on the client (`Client.call` on the server side).
    pub fn send_call(&mut self, name: &str, transaction_id: f64, args: &[Amf0Value]) {
        let mut all = vec![
            Amf0Value::string(name),
            Amf0Value::Number(transaction_id),
            Amf0Value::Null,
        ];
        all.extend_from_slice(args);
        self.send_command(0, &all);
    }

    /// A shared object message to the client, on the command chunk stream and stream 0 as FMS
    /// sends them (they belong to the NetConnection, not to a NetStream).
    pub fn send_shared_object(&mut self, message: &SoMessage, encoding: SoEncoding) {
        let mut body = Vec::new();
        encode_so(message, encoding, &mut body);
        self.output
            .message(csid::COMMAND, encoding.message_type(), 0, 0, &body);
    }

    /// `onStatus` on a NetStream (or stream 0 for NetConnection-level notices).
    pub fn send_status(&mut self, stream_id: u32, level: &str, code: &str, description: &str) {
        let mut info = status_object(level, code, description);
        push_prop(&mut info, "clientid", Amf0Value::Number(1.0));
        let csid = if stream_id == 0 {
            csid::COMMAND
        } else {
            csid::STREAM_STATUS
        };
        let values = [
            Amf0Value::string("onStatus"),
            Amf0Value::Number(0.0),
            Amf0Value::Null,
            info,
        ];
        self.output.command(csid, stream_id, &values);
    }

    /// Tells the client the connection is closing (`NetConnection.Connect.Closed`).
    pub fn close_notify(&mut self, description: &str) {
        if self.phase == Phase::Connected {
            self.send_status(0, "status", "NetConnection.Connect.Closed", description);
        }
        self.phase = Phase::Closed;
    }

    // ---- input handling ----

    fn handle_message(&mut self, msg: RawMessage) -> Result<(), SessionError> {
        let type_id = msg.header.type_id;
        if let Some(ctrl) = ControlMessage::parse(type_id, &msg.payload)? {
            return self.handle_control(ctrl);
        }
        match type_id {
            msg_type::COMMAND_AMF0 | msg_type::COMMAND_AMF3 => {
                let cmd = decode_command(type_id, &msg.payload, &self.cfg.amf_limits)?;
                if cmd.name == "connect" && self.phase == Phase::AwaitConnect {
                    // Replies use AMF3 command messages when the client sent connect that way.
                    self.output.amf3_commands = type_id == msg_type::COMMAND_AMF3;
                }
                self.handle_command(msg.header.stream_id, cmd)
            }
            msg_type::AUDIO | msg_type::VIDEO | msg_type::DATA_AMF0 | msg_type::DATA_AMF3 => {
                self.handle_media(msg.header, msg.payload)
            }
            msg_type::AGGREGATE => {
                let parts =
                    split_aggregate(msg.header.timestamp, msg.header.stream_id, &msg.payload)?;
                for (header, payload) in parts {
                    if matches!(
                        header.type_id,
                        msg_type::AUDIO | msg_type::VIDEO | msg_type::DATA_AMF0
                    ) {
                        self.handle_media(header, payload)?;
                    }
                }
                Ok(())
            }
            msg_type::SHARED_OBJECT_AMF0 | msg_type::SHARED_OBJECT_AMF3 => {
                self.handle_shared_object(type_id, &msg.payload)
            }
            other => {
                tracing::debug!(type_id = other, "unknown message type ignored");
                Ok(())
            }
        }
    }

    /// Shared objects live in an app instance, so they need a connect first, like commands.
    fn handle_shared_object(&mut self, type_id: u8, payload: &[u8]) -> Result<(), SessionError> {
        if self.phase != Phase::Connected {
            return Err(SessionError::Protocol(
                "shared object message before connect".into(),
            ));
        }
        let encoding = if type_id == msg_type::SHARED_OBJECT_AMF3 {
            SoEncoding::Amf3
        } else {
            SoEncoding::Amf0
        };
        let limits = SoDecodeLimits {
            amf: self.cfg.amf_limits,
            ..SoDecodeLimits::default()
        };
        let message = decode_so(payload, encoding, &limits)?;
        self.events
            .push_back(Event::SharedObject { encoding, message });
        Ok(())
    }

    fn handle_control(&mut self, ctrl: ControlMessage) -> Result<(), SessionError> {
        match ctrl {
            ControlMessage::SetChunkSize(size) => self.decoder.set_chunk_size(size)?,
            ControlMessage::Abort(csid) => self.decoder.abort(csid),
            ControlMessage::Acknowledgement(_) => {}
            ControlMessage::WindowAckSize(size) => {
                // A zero window would mean an ack per byte; treat it as "no acks wanted".
                self.ack.set_window(size);
            }
            ControlMessage::SetPeerBandwidth { .. } => {}
            ControlMessage::UserControl(ev) => match ev {
                UserControlEvent::PingRequest(ts) => self.send_control(
                    ControlMessage::UserControl(UserControlEvent::PingResponse(ts)),
                ),
                UserControlEvent::SetBufferLength { buffer_ms, .. } => {
                    self.buffer_length_ms = buffer_ms
                }
                _ => {}
            },
        }
        Ok(())
    }

    fn handle_media(&mut self, header: MessageHeader, payload: Bytes) -> Result<(), SessionError> {
        let stream_id = header.stream_id;
        let publishing = matches!(self.streams.get(&stream_id), Some(Role::Publishing(_)));
        let kind = match header.type_id {
            msg_type::AUDIO => MediaKind::Audio,
            msg_type::VIDEO => MediaKind::Video,
            _ => return self.handle_data(header, payload, publishing),
        };
        if !publishing {
            // Media before Publish.Start (or after unpublish) has nowhere to go.
            tracing::trace!(
                stream_id,
                "media on a stream that is not publishing dropped"
            );
            return Ok(());
        }
        self.events.push_back(Event::Media {
            stream_id,
            kind,
            type_id: header.type_id,
            timestamp: header.timestamp,
            payload,
        });
        Ok(())
    }

    /// Stream metadata (`onMetaData`) of a publishing stream becomes media: it is stored and
    /// sent to players. Any other data message is an [`Event::Data`] for the caller (an app) to
    /// relay or not. `@setDataFrame` wraps a message to relay without the wrapper (ffmpeg wraps
    /// every data message it publishes this way, OBS its metadata); `@clearDataFrame` is dropped.
    fn handle_data(
        &mut self,
        header: MessageHeader,
        payload: Bytes,
        publishing: bool,
    ) -> Result<(), SessionError> {
        let stream_id = header.stream_id;
        if stream_id != 0 && !self.streams.contains_key(&stream_id) {
            tracing::trace!(stream_id, "data message on an unknown stream dropped");
            return Ok(());
        }
        let amf3 = header.type_id == msg_type::DATA_AMF3;
        let mut values = decode_values(amf3, &payload, &self.cfg.amf_limits, "data message")?;
        let mut payload = payload;
        match values.first().and_then(|v| v.as_str()) {
            Some("@clearDataFrame") => return Ok(()),
            Some("@setDataFrame") => {
                values.remove(0);
                payload = Bytes::from(if amf3 {
                    encode_amf3_message(&values)
                } else {
                    encode_amf0_all(&values)
                });
            }
            _ => {}
        }
        if values.first().and_then(|v| v.as_str()) == Some("onMetaData") {
            if publishing {
                self.events.push_back(Event::Media {
                    stream_id,
                    kind: MediaKind::Data,
                    type_id: header.type_id,
                    timestamp: header.timestamp,
                    payload,
                });
            }
            return Ok(());
        }
        self.events.push_back(Event::Data {
            stream_id,
            publishing,
            type_id: header.type_id,
            timestamp: header.timestamp,
            payload,
            values,
        });
        Ok(())
    }

    fn handle_command(&mut self, msg_stream: u32, cmd: Command) -> Result<(), SessionError> {
        match (self.phase, cmd.name.as_str()) {
            (Phase::AwaitConnect, "connect") => {
                let req = ConnectRequest::from_command(&cmd);
                self.connect_txn = cmd.transaction_id;
                // Only 0 and 3 exist; anything else is answered as AMF0.
                self.object_encoding = if req.object_encoding == 3.0 { 3.0 } else { 0.0 };
                self.phase = Phase::ConnectPending;
                self.events.push_back(Event::Connect(req));
                Ok(())
            }
            (Phase::AwaitConnect, _) => Err(SessionError::Protocol(format!(
                "command `{}` before connect",
                cmd.name
            ))),
            (_, "connect") => Err(SessionError::Protocol(
                "second connect on one connection".into(),
            )),
            (Phase::Connected, _) => self.handle_connected_command(msg_stream, cmd),
            _ => Ok(()),
        }
    }

    fn handle_connected_command(
        &mut self,
        msg_stream: u32,
        cmd: Command,
    ) -> Result<(), SessionError> {
        let txn = cmd.transaction_id;
        let arg_str = |n: usize| cmd.arg(n).and_then(|v| v.as_str()).map(str::to_owned);
        match cmd.name.as_str() {
            "createStream" => {
                if self.streams.len() as u32 >= self.cfg.max_streams {
                    self.send_error(
                        txn,
                        "NetConnection.Call.Failed",
                        &format!("stream limit reached ({})", self.cfg.max_streams),
                    );
                    return Ok(());
                }
                let id = self.allocate_stream_id();
                self.streams.insert(id, Role::Idle);
                self.send_result(txn, &[Amf0Value::Number(id as f64)]);
            }
            // ffmpeg and OBS send these around publish and do not depend on the reply, but
            // several clients log a warning on an `_error`, so they get an empty `_result`.
            "releaseStream" | "FCPublish" | "FCSubscribe" | "FCUnsubscribe" => {
                self.send_result(txn, &[Amf0Value::Undefined]);
            }
            "FCUnpublish" => {
                self.send_result(txn, &[Amf0Value::Undefined]);
                if let Some(name) = arg_str(0) {
                    let base = StreamName::parse(&name).name;
                    let found = self.streams.iter().find_map(|(id, r)| match r {
                        Role::Publishing(n) if StreamName::parse(n).name == base => Some(*id),
                        _ => None,
                    });
                    if let Some(id) = found {
                        self.end_stream_role(id);
                    }
                }
            }
            "publish" => {
                let stream_id = msg_stream;
                let Some(raw) = arg_str(0).filter(|n| !n.is_empty()) else {
                    self.send_status(
                        stream_id,
                        "error",
                        "NetStream.Publish.BadName",
                        "No stream name given.",
                    );
                    return Ok(());
                };
                match self.streams.get(&stream_id) {
                    Some(Role::Idle) => {}
                    Some(_) => {
                        self.send_status(
                            stream_id,
                            "error",
                            "NetStream.Publish.BadName",
                            "This NetStream is already in use.",
                        );
                        return Ok(());
                    }
                    None => {
                        return Err(SessionError::Protocol(format!(
                            "publish on stream {stream_id} that was never created"
                        )));
                    }
                }
                let kind = arg_str(1).unwrap_or_else(|| "live".to_owned());
                self.streams
                    .insert(stream_id, Role::PublishPending(raw.clone()));
                self.events.push_back(Event::Publish {
                    stream_id,
                    name: StreamName::parse(&raw),
                    kind,
                });
            }
            "play" => {
                let stream_id = msg_stream;
                if !self.streams.contains_key(&stream_id) {
                    return Err(SessionError::Protocol(format!(
                        "play on stream {stream_id} that was never created"
                    )));
                }
                let Some(raw) = arg_str(0).filter(|n| !n.is_empty()) else {
                    self.end_stream_role(stream_id);
                    return Ok(());
                };
                let start = cmd.arg(1).and_then(|v| v.as_f64()).unwrap_or(-2.0);
                let duration = cmd.arg(2).and_then(|v| v.as_f64()).unwrap_or(-1.0);
                let reset = cmd.arg(3).and_then(|v| v.as_bool()).unwrap_or(true);
                self.begin_play(stream_id, &raw, start, duration, reset);
            }
            "play2" => {
                let stream_id = msg_stream;
                let params = cmd.arg(0).cloned().unwrap_or(Amf0Value::Null);
                let Some(raw) = params
                    .get("streamName")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
                else {
                    self.send_status(
                        stream_id,
                        "error",
                        "NetStream.Play.Failed",
                        "play2 without streamName.",
                    );
                    return Ok(());
                };
                if !self.streams.contains_key(&stream_id) {
                    return Err(SessionError::Protocol(format!(
                        "play2 on stream {stream_id} that was never created"
                    )));
                }
                let start = params.get("start").and_then(|v| v.as_f64()).unwrap_or(-2.0);
                let duration = params.get("len").and_then(|v| v.as_f64()).unwrap_or(-1.0);
                let reset = params.get("transition").and_then(|v| v.as_str()) == Some("reset");
                self.begin_play(stream_id, &raw, start, duration, reset);
            }
            "pause" | "pauseRaw" => {
                let pause = cmd.arg(0).and_then(|v| v.as_bool()).unwrap_or(true);
                let position_ms = cmd.arg(1).and_then(|v| v.as_f64()).unwrap_or(0.0);
                self.events.push_back(Event::Pause {
                    stream_id: msg_stream,
                    pause,
                    position_ms,
                });
            }
            "receiveAudio" | "receiveVideo" => {
                let enabled = cmd.arg(0).and_then(|v| v.as_bool()).unwrap_or(true);
                self.events.push_back(if cmd.name == "receiveAudio" {
                    Event::ReceiveAudio {
                        stream_id: msg_stream,
                        enabled,
                    }
                } else {
                    Event::ReceiveVideo {
                        stream_id: msg_stream,
                        enabled,
                    }
                });
            }
            "closeStream" => self.end_stream_role(msg_stream),
            "deleteStream" => {
                let id = cmd
                    .arg(0)
                    .and_then(|v| v.as_f64())
                    .map(|f| f as u32)
                    .unwrap_or(msg_stream);
                self.end_stream_role(id);
                self.streams.remove(&id);
            }
            "getStreamLength" => {
                let name = arg_str(0).unwrap_or_default();
                self.events.push_back(Event::StreamLength {
                    transaction_id: txn,
                    name,
                });
            }
            "seek" => {
                let position_ms = cmd.arg(0).and_then(|v| v.as_f64()).unwrap_or(0.0);
                self.events.push_back(Event::Seek {
                    stream_id: msg_stream,
                    position_ms,
                });
            }
            // Replies to our own calls (`send_call` with a transaction id) go to the owner.
            "_result" | "_error" if txn != 0.0 => self.events.push_back(Event::CallReply {
                transaction_id: txn,
                ok: cmd.name == "_result",
                value: cmd.args.first().cloned().unwrap_or(Amf0Value::Null),
            }),
            "_result" | "_error" | "onBWDone" | "onBWCheck" => {}
            _ => self.events.push_back(Event::Call(cmd)),
        }
        Ok(())
    }

    fn begin_play(&mut self, stream_id: u32, raw: &str, start: f64, duration: f64, reset: bool) {
        if matches!(self.streams.get(&stream_id), Some(Role::Playing(_))) {
            self.events.push_back(Event::StopPlay { stream_id });
        } else if !matches!(self.streams.get(&stream_id), Some(Role::Idle)) {
            self.end_stream_role(stream_id);
        }
        self.streams
            .insert(stream_id, Role::Playing(raw.to_owned()));
        self.events.push_back(Event::Play {
            stream_id,
            name: StreamName::parse(raw),
            start,
            duration,
            reset,
        });
    }

    /// Ends publishing or playing on a stream, telling the owner and the client.
    fn end_stream_role(&mut self, stream_id: u32) {
        let Some(role) = self.streams.get_mut(&stream_id) else {
            return;
        };
        match std::mem::replace(role, Role::Idle) {
            Role::Publishing(name) => {
                self.send_status(
                    stream_id,
                    "status",
                    "NetStream.Unpublish.Success",
                    &format!("{name} is now unpublished."),
                );
                self.events.push_back(Event::Unpublish { stream_id });
            }
            Role::PublishPending(_) => self.events.push_back(Event::Unpublish { stream_id }),
            Role::Playing(_) => self.events.push_back(Event::StopPlay { stream_id }),
            Role::Idle => {}
        }
    }

    fn allocate_stream_id(&mut self) -> u32 {
        loop {
            let id = self.next_stream_id;
            self.next_stream_id = self.next_stream_id.wrapping_add(1).max(1);
            if !self.streams.contains_key(&id) {
                return id;
            }
        }
    }

    fn maybe_acknowledge(&mut self) {
        if self.phase == Phase::Handshake {
            return;
        }
        if let Some(ack) = self.ack.due() {
            self.send_control(ack);
        }
    }

    // ---- output helpers ----

    fn uptime_ms(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.epoch).as_millis() as u32
    }

    fn send_control(&mut self, ctrl: ControlMessage) {
        self.output.control(ctrl);
    }

    fn send_command(&mut self, stream_id: u32, values: &[Amf0Value]) {
        self.output.command(csid::COMMAND, stream_id, values);
    }

    fn send_data(&mut self, stream_id: u32, values: &[Amf0Value]) {
        self.output.data(csid::STREAM_STATUS, stream_id, 0, values);
    }
}

/// Decodes the AMF values of a command or data message (AMF3 messages carry a format byte
/// and AMF0 values that may switch to AMF3).
pub(crate) fn decode_values(
    amf3: bool,
    payload: &[u8],
    limits: &AmfLimits,
    context: &'static str,
) -> Result<Vec<Amf0Value>, SessionError> {
    if amf3 {
        decode_amf3_message(payload, limits)
    } else {
        decode_amf0_all(payload, limits)
    }
    .map_err(|source| SessionError::Amf { context, source })
}

/// Decodes a command message (type 20 or 17) into name, transaction and arguments.
pub(crate) fn decode_command(
    type_id: u8,
    payload: &[u8],
    limits: &AmfLimits,
) -> Result<Command, SessionError> {
    let values = decode_values(
        type_id == msg_type::COMMAND_AMF3,
        payload,
        limits,
        "command",
    )?;
    Command::from_values(values)
        .ok_or_else(|| SessionError::Protocol("command message does not start with a name".into()))
}

fn is_control(type_id: u8) -> bool {
    (1..=6).contains(&type_id)
}

fn push_prop(obj: &mut Amf0Value, key: &str, value: Amf0Value) {
    if let Amf0Value::Object(props) = obj {
        props.push((key.to_owned(), value));
    }
}
