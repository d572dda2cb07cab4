//! The client side of an RTMP connection as a sans-IO state machine: handshake, `connect`, and
//! then streams, calls and media. It powers the project's own test client and load tool.
//!
//! Same call order as the server [`super::Session`]: [`ClientSession::handle_input`] with
//! received bytes, [`ClientSession::poll_event`] until `None`, [`ClientSession::drain_transmit`]
//! and write. `connect` is sent by itself as soon as the handshake completes.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::amf::{Amf0Value, AmfLimits};
use super::chunk::{ChunkDecoder, ChunkLimits, MessageHeader, RawMessage};
use super::command::Command;
use super::handshake::ClientHandshake;
use super::message::{AckWindow, ControlMessage, UserControlEvent, msg_type};
use super::output::{Output, csid};
use super::session::{SessionError, decode_command};
use super::shared_object::{SoDecodeLimits, SoEncoding, SoMessage, decode_so, encode_so};

/// What to connect to and how.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The connect `app` field: `app` or `app/instance`, optionally with `?query`.
    pub app: String,
    pub tc_url: String,
    /// Extra connect arguments (what `ffmpeg -rtmp_conn` and `rtmpdump -C` send).
    pub connect_args: Vec<Amf0Value>,
    /// 0 (AMF0) or 3 (AMF3 command messages).
    pub object_encoding: f64,
    pub flash_ver: String,
    /// Chunk size announced to the server after connect.
    pub chunk_size: u32,
    /// Window the client acknowledges at until the server announces its own.
    pub window_ack_size: u32,
    /// Send a Flash Player 9 digest handshake (as ffmpeg does) or a plain one (as rtmpdump).
    pub digest_handshake: bool,
    pub chunk_limits: ChunkLimits,
    pub amf_limits: AmfLimits,
}

impl ClientConfig {
    /// Config for `rtmp://host[:port]/app[/instance]`, given the app part and the tcUrl.
    pub fn new(app: impl Into<String>, tc_url: impl Into<String>) -> ClientConfig {
        ClientConfig {
            app: app.into(),
            tc_url: tc_url.into(),
            connect_args: Vec::new(),
            object_encoding: 0.0,
            flash_ver: "LNX 9,0,124,2".to_owned(),
            chunk_size: 4096,
            window_ack_size: 2_500_000,
            digest_handshake: true,
            chunk_limits: ChunkLimits::default(),
            amf_limits: AmfLimits::default(),
        }
    }
}

/// What the client reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// `connect` succeeded; `info` is the `_result` info object (code, objectEncoding, ...).
    Connected {
        properties: Amf0Value,
        info: Amf0Value,
    },
    /// `connect` was refused; `info` carries code, description and, for a redirect, `ex`.
    ConnectRejected { info: Amf0Value },
    /// `_result` of a call (including createStream, whose first value is the stream id).
    Result {
        transaction_id: f64,
        values: Vec<Amf0Value>,
    },
    /// `_error` of a call.
    Error {
        transaction_id: f64,
        values: Vec<Amf0Value>,
    },
    /// `onStatus` on a stream (0 for NetConnection notices).
    Status { stream_id: u32, info: Amf0Value },
    /// Any other command from the server (a server-to-client call such as `onMessage`).
    Call { stream_id: u32, command: Command },
    /// Audio, video or data from a played stream.
    Media {
        stream_id: u32,
        type_id: u8,
        timestamp: u32,
        payload: Bytes,
    },
    /// A remote shared object message (type 19 or 16) from the server.
    SharedObject {
        encoding: SoEncoding,
        message: SoMessage,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshake,
    Connecting,
    Connected,
    Closed,
}

pub struct ClientSession {
    cfg: ClientConfig,
    phase: Phase,
    handshake: ClientHandshake,
    inbuf: BytesMut,
    decoder: ChunkDecoder,
    output: Output,
    events: VecDeque<ClientEvent>,
    next_txn: f64,
    connect_txn: f64,
    /// Bytes received, and the window the server asked us to acknowledge at.
    ack: AckWindow,
    /// Sequence number of the last Acknowledgement the server sent.
    acked_by_peer: u32,
}

impl ClientSession {
    /// Starts the handshake (C0+C1 are queued for transmission at once).
    pub fn new(cfg: ClientConfig) -> ClientSession {
        let mut handshake = ClientHandshake::new(cfg.digest_handshake);
        let mut output = Output::new();
        handshake.start(output.pending_mut());
        output.amf3_commands = cfg.object_encoding == 3.0;
        ClientSession {
            decoder: ChunkDecoder::new(cfg.chunk_limits),
            ack: AckWindow::new(cfg.window_ack_size),
            cfg,
            phase: Phase::Handshake,
            handshake,
            inbuf: BytesMut::with_capacity(8192),
            output,
            events: VecDeque::new(),
            next_txn: 2.0,
            connect_txn: 1.0,
            acked_by_peer: 0,
        }
    }

    pub fn is_connected(&self) -> bool {
        self.phase == Phase::Connected
    }

    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    pub fn bytes_in(&self) -> u64 {
        self.ack.received()
    }

    /// Bytes the server has acknowledged receiving (its last Acknowledgement).
    pub fn acked_by_peer(&self) -> u32 {
        self.acked_by_peer
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    pub fn drain_transmit(&mut self, out: &mut Vec<Bytes>) {
        self.output.drain(out);
    }

    pub fn has_transmit(&self) -> bool {
        self.output.has_pending()
    }

    /// Feeds bytes from the server.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<(), SessionError> {
        if self.phase == Phase::Closed {
            return Ok(());
        }
        self.ack.add(data.len());
        self.inbuf.extend_from_slice(data);
        if self.phase == Phase::Handshake {
            if !self
                .handshake
                .feed(&mut self.inbuf, self.output.pending_mut())?
            {
                return Ok(());
            }
            self.send_connect();
        }
        while let Some(msg) = self.decoder.decode(&mut self.inbuf)? {
            self.handle_message(msg)?;
        }
        if let Some(ack) = self.ack.due() {
            self.output.control(ack);
        }
        Ok(())
    }

    // ---- requests ----

    /// `createStream`; the stream id arrives as the first value of the matching
    /// [`ClientEvent::Result`].
    pub fn create_stream(&mut self) -> f64 {
        self.call("createStream", &[])
    }

    /// Calls a server method (`NetConnection.call`); returns the transaction id.
    pub fn call(&mut self, name: &str, args: &[Amf0Value]) -> f64 {
        let txn = self.next_txn;
        self.next_txn += 1.0;
        let mut values = vec![
            Amf0Value::string(name),
            Amf0Value::Number(txn),
            Amf0Value::Null,
        ];
        values.extend_from_slice(args);
        self.output.command(csid::COMMAND, 0, &values);
        txn
    }

    /// `play(name, start)` on a created stream, and a buffer length as players send it.
    pub fn play(&mut self, stream_id: u32, name: &str, start: f64) {
        self.output.control(ControlMessage::UserControl(
            UserControlEvent::SetBufferLength {
                stream_id,
                buffer_ms: 3000,
            },
        ));
        self.stream_command(
            stream_id,
            "play",
            &[Amf0Value::string(name), Amf0Value::Number(start)],
        );
    }

    /// `publish(name, kind)` on a created stream.
    pub fn publish(&mut self, stream_id: u32, name: &str, kind: &str) {
        self.stream_command(
            stream_id,
            "publish",
            &[Amf0Value::string(name), Amf0Value::string(kind)],
        );
    }

    /// Any NetStream command (`pause`, `receiveVideo`, `closeStream`, ...).
    pub fn stream_command(&mut self, stream_id: u32, name: &str, args: &[Amf0Value]) {
        let mut values = vec![
            Amf0Value::string(name),
            Amf0Value::Number(0.0),
            Amf0Value::Null,
        ];
        values.extend_from_slice(args);
        self.output.command(csid::STREAM_STATUS, stream_id, &values);
    }

    /// `deleteStream(stream_id)`.
    pub fn delete_stream(&mut self, stream_id: u32) {
        let values = [
            Amf0Value::string("deleteStream"),
            Amf0Value::Number(0.0),
            Amf0Value::Null,
            Amf0Value::Number(f64::from(stream_id)),
        ];
        self.output.command(csid::COMMAND, 0, &values);
    }

    /// Sends one audio (8), video (9) or data (18) message on a publishing stream.
    pub fn send_media(&mut self, stream_id: u32, type_id: u8, timestamp: u32, payload: &[u8]) {
        let csid = match type_id {
            msg_type::AUDIO => csid::AUDIO,
            msg_type::VIDEO => csid::VIDEO,
            _ => csid::DATA,
        };
        let header = MessageHeader {
            timestamp,
            type_id,
            stream_id,
        };
        self.output.standalone(csid, &header, payload);
    }

    /// Sends a remote shared object message (Use, Request Change, Send Message, ...) on the
    /// command chunk stream and stream 0, where Flash Player sends them.
    pub fn send_shared_object(&mut self, message: &SoMessage, encoding: SoEncoding) {
        let mut body = Vec::new();
        encode_so(message, encoding, &mut body);
        self.output
            .message(csid::COMMAND, encoding.message_type(), 0, 0, &body);
    }

    /// Replies to a server-to-client call.
    pub fn send_result(&mut self, transaction_id: f64, values: &[Amf0Value]) {
        let mut all = vec![
            Amf0Value::string("_result"),
            Amf0Value::Number(transaction_id),
            Amf0Value::Null,
        ];
        all.extend_from_slice(values);
        self.output.command(csid::COMMAND, 0, &all);
    }

    // ---- input ----

    fn send_connect(&mut self) {
        self.phase = Phase::Connecting;
        let obj = Amf0Value::object([
            ("app", Amf0Value::string(self.cfg.app.clone())),
            ("flashVer", Amf0Value::string(self.cfg.flash_ver.clone())),
            ("tcUrl", Amf0Value::string(self.cfg.tc_url.clone())),
            ("fpad", Amf0Value::Boolean(false)),
            ("capabilities", Amf0Value::Number(15.0)),
            ("audioCodecs", Amf0Value::Number(4071.0)),
            ("videoCodecs", Amf0Value::Number(252.0)),
            ("videoFunction", Amf0Value::Number(1.0)),
            (
                "objectEncoding",
                Amf0Value::Number(self.cfg.object_encoding),
            ),
        ]);
        let mut values = vec![
            Amf0Value::string("connect"),
            Amf0Value::Number(self.connect_txn),
            obj,
        ];
        values.extend(self.cfg.connect_args.iter().cloned());
        self.output.command(csid::COMMAND, 0, &values);
    }

    fn handle_message(&mut self, msg: RawMessage) -> Result<(), SessionError> {
        let type_id = msg.header.type_id;
        if let Some(ctrl) = ControlMessage::parse(type_id, &msg.payload)? {
            match ctrl {
                ControlMessage::SetChunkSize(size) => self.decoder.set_chunk_size(size)?,
                ControlMessage::Abort(id) => self.decoder.abort(id),
                ControlMessage::WindowAckSize(size) => self.ack.set_window(size),
                ControlMessage::Acknowledgement(seq) => self.acked_by_peer = seq,
                ControlMessage::UserControl(UserControlEvent::PingRequest(ts)) => {
                    self.output.control(ControlMessage::UserControl(
                        UserControlEvent::PingResponse(ts),
                    ))
                }
                _ => {}
            }
            return Ok(());
        }
        match type_id {
            msg_type::COMMAND_AMF0 | msg_type::COMMAND_AMF3 => {
                let cmd = decode_command(type_id, &msg.payload, &self.cfg.amf_limits)?;
                self.handle_command(msg.header.stream_id, cmd);
            }
            msg_type::AUDIO | msg_type::VIDEO | msg_type::DATA_AMF0 | msg_type::DATA_AMF3 => {
                self.events.push_back(ClientEvent::Media {
                    stream_id: msg.header.stream_id,
                    type_id,
                    timestamp: msg.header.timestamp,
                    payload: msg.payload,
                });
            }
            msg_type::SHARED_OBJECT_AMF0 | msg_type::SHARED_OBJECT_AMF3 => {
                let encoding = if type_id == msg_type::SHARED_OBJECT_AMF3 {
                    SoEncoding::Amf3
                } else {
                    SoEncoding::Amf0
                };
                let limits = SoDecodeLimits {
                    amf: self.cfg.amf_limits,
                    ..SoDecodeLimits::default()
                };
                let message = decode_so(&msg.payload, encoding, &limits)?;
                self.events
                    .push_back(ClientEvent::SharedObject { encoding, message });
            }
            _ => {}
        }
        Ok(())
    }

    fn handle_command(&mut self, stream_id: u32, cmd: Command) {
        let txn = cmd.transaction_id;
        let mut values = cmd.args.clone();
        match cmd.name.as_str() {
            "_result" | "_error" if self.phase == Phase::Connecting && txn == self.connect_txn => {
                let info = values.pop().unwrap_or(Amf0Value::Null);
                if cmd.name == "_result" {
                    self.phase = Phase::Connected;
                    let size = self.cfg.chunk_size;
                    self.output.set_chunk_size(size);
                    self.events.push_back(ClientEvent::Connected {
                        properties: cmd.command_object,
                        info,
                    });
                } else {
                    self.phase = Phase::Closed;
                    self.events.push_back(ClientEvent::ConnectRejected { info });
                }
            }
            "_result" => {
                self.events.push_back(ClientEvent::Result {
                    transaction_id: txn,
                    values,
                });
            }
            "_error" => {
                self.events.push_back(ClientEvent::Error {
                    transaction_id: txn,
                    values,
                });
            }
            "onStatus" => {
                let info = values.into_iter().next().unwrap_or(Amf0Value::Null);
                self.events
                    .push_back(ClientEvent::Status { stream_id, info });
            }
            _ => self.events.push_back(ClientEvent::Call {
                stream_id,
                command: cmd,
            }),
        }
    }
}
