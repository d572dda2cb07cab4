//! One connection's task: moves bytes between its transport and its sans-IO [`Session`], and
//! turns the session's events into operations on the gateway core and the app instance.
//!
//! A player's media comes straight from the stream rings into the session's output queue
//! (`playback.rs`); everything ready is written with one vectored write.

use std::collections::HashMap;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, info_span, warn};

use super::playback::{Plays, Rebase};
use super::shared_objects::SoConn;
use super::vod::{Done, Request, Source, ThenLive, ToLive, VodPlays};
use crate::apps::{APP_ERROR, ClientMeta, DataOutcome, InstanceHandle, Route, ToActor, ToConn};
use crate::config::{EdgePublish, FailurePolicy};
use crate::gateway::{ClientEntry, Core, HOPS_ARG};
use crate::media::record::{self, Origin};
use crate::media::vod::{FileName, OpenError, VodFile};
use crate::media::{Player, PublishError, Publisher, StreamKey, TooSlow};
use crate::rtmp::amf::{Amf0Value, encode_amf0_all};
use crate::rtmp::command::{AppPath, ConnectRequest, StreamName};
use crate::rtmp::message::msg_type;
use crate::rtmp::session::MediaKind;
use crate::rtmp::{Event, Session, SessionError};

/// Most ring items handled before output is flushed, so one busy stream cannot starve reads.
const MEDIA_BATCH: usize = 256;

/// Messages an app instance may queue for one connection (calls, broadcasts, decisions).
const APP_QUEUE: usize = 256;

/// Client calls awaiting the app's answer, per connection; more are answered `_error` at once.
/// Below `APP_QUEUE`, so answers always fit the connection's queue beside broadcasts.
const MAX_CALLS_IN_FLIGHT: usize = 128;

/// Server-to-client calls awaiting the client's answer, per connection.
const MAX_SERVER_CALLS: usize = 1024;

/// Longest a connection waits for the app's answer to a data message before applying the
/// failure policy; the app normally answers within its deadline, but its queue may be long.
const DATA_HOLD_LIMIT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("{0}")]
    Session(#[from] SessionError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake and connect not completed within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("write stalled for {0:?}")]
    WriteTimeout(Duration),
    #[error("player fell behind too often and was disconnected")]
    TooSlow(#[from] TooSlow),
    #[error("kicked: {0}")]
    Kicked(String),
    #[error("server shutting down")]
    Shutdown,
    #[error("disconnected by the application: {0}")]
    App(String),
    #[error("shared object messages not read: the client's queue overflowed")]
    SharedObjectsBehind,
}

impl ConnError {
    /// Counts why a connection ended in the matching Prometheus series.
    fn record_metric(&self, transport: &'static str) {
        use crate::metrics;
        match self {
            ConnError::Session(SessionError::Handshake(_)) | ConnError::HandshakeTimeout(_) => {
                metrics::handshake_error(transport)
            }
            ConnError::Session(_) => metrics::protocol_error(),
            ConnError::TooSlow(_) | ConnError::SharedObjectsBehind => metrics::player_dropped(),
            ConnError::Kicked(_) => metrics::kicked(),
            ConnError::Io(_)
            | ConnError::WriteTimeout(_)
            | ConnError::Shutdown
            | ConnError::App(_) => {}
        }
    }
}

/// Serves one connection until either side closes it; logs why it ended.
pub async fn serve<S>(io: S, peer: SocketAddr, transport: &'static str, core: Arc<Core>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let id = core.next_conn_id();
    let span = info_span!("conn", id, %peer, transport);
    async move {
        let counters = core.counters();
        counters.connections.fetch_add(1, Ordering::Relaxed);
        counters.connections_total.fetch_add(1, Ordering::Relaxed);
        crate::metrics::connection_opened(transport);
        debug!("accepted");
        let client = core.clients().register(id, peer, transport);
        let mut conn = Conn::new(id, core.clone(), client.entry.clone(), peer, transport);
        let result = conn.run(io).await;
        if let Some(link) = conn.link.take() {
            // The instance also notices a closed queue; this tells it at once.
            let _ = link.send(ToActor::Disconnect { client: id });
        }
        drop(client);
        let (bytes_in, bytes_out) = (conn.session.bytes_in(), conn.bytes_out);
        match result {
            Ok(()) => info!(bytes_in, bytes_out, "closed"),
            Err(e) => {
                e.record_metric(transport);
                info!(bytes_in, bytes_out, reason = %e, "dropped")
            }
        }
        crate::metrics::connection_closed(transport);
        core.counters().connections.fetch_sub(1, Ordering::Relaxed);
    }
    .instrument(span)
    .await
}

/// A data message waiting for the app's answer. The session's later events wait behind it (and
/// the socket is not read meanwhile), so what players receive keeps the publisher's order.
struct DataHold {
    seq: u64,
    stream_id: u32,
    type_id: u8,
    timestamp: u32,
    payload: Bytes,
    handler: String,
    until: tokio::time::Instant,
}

/// `play`'s arguments after the name.
#[derive(Debug, Clone, Copy)]
struct PlayArgs {
    start: f64,
    duration: f64,
    reset: bool,
}

struct Conn {
    id: u64,
    core: Arc<Core>,
    client: Arc<ClientEntry>,
    session: Session,
    app: Option<AppPath>,
    publishers: HashMap<u32, Publisher>,
    plays: Plays,
    vods: VodPlays,
    out: Vec<Bytes>,
    bytes_out: u64,
    peer: SocketAddr,
    transport: &'static str,
    /// The app instance serving this connection, when its app has a module.
    link: Option<InstanceHandle>,
    /// Decisions, calls and broadcasts from the app instance.
    app_rx: Option<mpsc::Receiver<ToConn>>,
    /// The app path of a connect the app has not decided yet.
    connect_pending: Option<AppPath>,
    /// Publishes and plays waiting for the app's decision, by stream id.
    publish_pending: HashMap<u32, (StreamName, String)>,
    play_pending: HashMap<u32, (StreamName, PlayArgs)>,
    /// Our transaction id -> the app's call id, for `_result`/`_error` from the client.
    server_calls: HashMap<u64, u64>,
    next_txn: u64,
    /// Client calls sent to the app and not answered yet.
    calls_in_flight: usize,
    data_hold: Option<DataHold>,
    data_seq: u64,
    /// Remote shared objects this client uses (`shared_objects.rs`).
    so: SoConn,
    /// Relay hops this connection's connect announced (0 for anything but a relay).
    hops: u32,
}

impl Conn {
    fn new(
        id: u64,
        core: Arc<Core>,
        client: Arc<ClientEntry>,
        peer: SocketAddr,
        transport: &'static str,
    ) -> Conn {
        Conn {
            id,
            client,
            session: Session::new(core.session_config(), Instant::now()),
            core,
            app: None,
            publishers: HashMap::new(),
            plays: Plays::default(),
            vods: VodPlays::default(),
            out: Vec::new(),
            bytes_out: 0,
            peer,
            transport,
            link: None,
            app_rx: None,
            connect_pending: None,
            publish_pending: HashMap::new(),
            play_pending: HashMap::new(),
            server_calls: HashMap::new(),
            next_txn: 0,
            calls_in_flight: 0,
            data_hold: None,
            data_seq: 0,
            so: SoConn::default(),
            hops: 0,
        }
    }

    async fn run<S>(&mut self, io: S) -> Result<(), ConnError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let (mut rd, mut wr) = tokio::io::split(io);
        // Players send little (acks, pings): their read buffer stays small; one that fills it
        // (a publisher) gets it doubled up to 64 KiB.
        let mut rbuf = vec![0u8; 4 * 1024];
        let config = self.core.config();
        let cfg = &config.rtmp;
        let handshake_timeout = Duration::from_secs(cfg.handshake_timeout_secs);
        let write_timeout = Duration::from_secs(cfg.write_timeout_secs);
        let handshake_deadline = tokio::time::Instant::now() + handshake_timeout;
        // With a merge window, players do not wake per message: they sleep for the window,
        // then take everything the rings hold and write it at once (fewer wakeups, fewer and
        // larger writes, at the cost of up to one window of latency).
        let merge = Duration::from_millis(config.media.merge_window_ms);
        self.vods.set_tick(merge);
        // Drain ticks fall on common boundaries, so all players of the process wake together
        // and the runtime handles them in one burst instead of one wakeup each.
        let epoch = tokio::time::Instant::from_std(self.core.started_at());
        let next_tick = |now: tokio::time::Instant| {
            let w = merge.as_nanos().max(1);
            let since = now.saturating_duration_since(epoch).as_nanos();
            epoch + Duration::from_nanos(((since / w + 1) * w) as u64)
        };
        let mut next_drain: Option<tokio::time::Instant> = None;
        let mut shutdown = self.core.shutdown_signal();
        if *shutdown.borrow_and_update() {
            return Err(ConnError::Shutdown);
        }
        let mut watch_shutdown = true;
        loop {
            self.flush(&mut wr, write_timeout).await?;
            if self.session.is_closed() {
                return Ok(());
            }
            let mut deadline = self
                .session
                .poll_timeout()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            if !self.session.is_connected() {
                deadline = deadline.min(handshake_deadline);
            }
            let playing = !self.plays.is_empty();
            let drain_at = if playing && !merge.is_zero() {
                *next_drain.get_or_insert_with(|| next_tick(tokio::time::Instant::now()))
            } else {
                next_drain = None;
                deadline
            };
            let vod_jobs = self.vods.has_jobs();
            let vod_playing = !self.vods.is_empty();
            let vod_wake = self.vods.wake().map(tokio::time::Instant::from_std);
            tokio::select! {
                r = rd.read(&mut rbuf), if self.data_hold.is_none() => {
                    let n = r?;
                    if n == 0 {
                        return Ok(());
                    }
                    self.core.counters().bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                    self.client.add_in(n as u64);
                    let res = self.session.handle_input(&rbuf[..n], Instant::now());
                    if n == rbuf.len() && rbuf.len() < 64 * 1024 {
                        rbuf.resize(rbuf.len() * 2, 0);
                    }
                    // Events queued before an error (e.g. the last media) are still handled.
                    self.handle_events()?;
                    if let Err(e) = res {
                        // Flush what the session queued (a rejection, an error status) first.
                        let _ = self.flush(&mut wr, write_timeout).await;
                        return Err(e.into());
                    }
                }
                (stream_id, item) = self.plays.recv_any(), if playing && merge.is_zero() => {
                    self.plays.on_item(&mut self.session, stream_id, item)?;
                    self.plays.drain(&mut self.session, MEDIA_BATCH)?;
                }
                _ = tokio::time::sleep_until(drain_at), if playing && !merge.is_zero() => {
                    // Everything the ring holds; it is bounded by `media.player_queue`.
                    self.plays.drain(&mut self.session, usize::MAX)?;
                    next_drain = Some(next_tick(tokio::time::Instant::now()));
                }
                changed = shutdown.changed(), if watch_shutdown => {
                    // An error means the server itself is gone; stop watching.
                    watch_shutdown = changed.is_ok();
                    if *shutdown.borrow() {
                        self.session.close_notify("Server is shutting down.");
                        let _ = self.flush(&mut wr, write_timeout).await;
                        return Err(ConnError::Shutdown);
                    }
                }
                msg = recv_app(&mut self.app_rx) => match msg {
                    Some(msg) => {
                        if let Err(e) = self.on_app_msg(msg) {
                            let _ = self.flush(&mut wr, write_timeout).await;
                            return Err(e);
                        }
                        // A released data hold lets the events queued behind it through.
                        self.handle_events()?;
                    }
                    None => {
                        // The instance is gone (unloaded or stopped).
                        self.app_rx = None;
                        let policy = self.link.take().map(|l| l.policy());
                        if self.connect_pending.take().is_some() {
                            self.session.reject_connect(APP_ERROR);
                        }
                        if let Some(policy) = policy {
                            self.release_data_hold(policy, "application gone");
                        }
                        self.handle_events()?;
                    }
                },
                Some(done) = self.vods.next_done(), if vod_jobs => {
                    self.on_vod_done(done);
                }
                _ = sleep_until_opt(vod_wake), if vod_playing => {
                    for live in self.vods.poll(&mut self.session, Instant::now()) {
                        self.go_live(live);
                    }
                }
                _ = sleep_until_opt(self.data_hold.as_ref().map(|h| h.until)), if self.data_hold.is_some() => {
                    let policy = self.link.as_ref().map_or(FailurePolicy::Closed, |l| l.policy());
                    self.release_data_hold(policy, "no answer from the application in time");
                    self.handle_events()?;
                }
                msg = self.so.recv() => match msg {
                    Some(msg) => self.so.write(&mut self.session, msg),
                    None => return Err(ConnError::SharedObjectsBehind),
                },
                _ = self.client.kicked() => {
                    let reason = self.client.kick_reason();
                    self.session.close_notify(&reason);
                    let _ = self.flush(&mut wr, write_timeout).await;
                    return Err(ConnError::Kicked(reason));
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if !self.session.is_connected() && tokio::time::Instant::now() >= handshake_deadline {
                        return Err(ConnError::HandshakeTimeout(handshake_timeout));
                    }
                    self.session.handle_timeout(Instant::now())?;
                }
            }
        }
    }

    async fn flush<W: AsyncWrite + Unpin>(
        &mut self,
        wr: &mut W,
        limit: Duration,
    ) -> Result<(), ConnError> {
        if !self.session.has_transmit() {
            return Ok(());
        }
        self.session.drain_transmit(&mut self.out);
        let total: usize = self.out.iter().map(|b| b.len()).sum();
        match tokio::time::timeout(limit, write_all_vectored(wr, &mut self.out)).await {
            Ok(r) => r?,
            Err(_) => return Err(ConnError::WriteTimeout(limit)),
        }
        self.bytes_out += total as u64;
        self.client.add_out(total as u64);
        self.core
            .counters()
            .bytes_out
            .fetch_add(total as u64, Ordering::Relaxed);
        Ok(())
    }

    fn key(&self, name: &StreamName) -> StreamKey {
        let (app, instance) = match &self.app {
            Some(p) => (p.app.clone(), p.instance.clone()),
            None => (String::new(), String::new()),
        };
        StreamKey {
            app,
            instance,
            name: name.name.clone(),
        }
    }

    fn handle_events(&mut self) -> Result<(), ConnError> {
        while self.data_hold.is_none() {
            let Some(ev) = self.session.poll_event() else {
                break;
            };
            match ev {
                Event::Connect(req) => self.on_connect(req),
                Event::Publish {
                    stream_id,
                    name,
                    kind,
                } => match &self.link {
                    Some(link) => {
                        let msg = ToActor::Publish {
                            client: self.id,
                            stream_id,
                            name: name.name.clone(),
                            query: name.query.clone().unwrap_or_default(),
                        };
                        if link.send(msg).is_ok() {
                            self.publish_pending.insert(stream_id, (name, kind));
                        } else if link.policy() == FailurePolicy::Open {
                            self.start_publish(stream_id, name, &kind);
                        } else {
                            self.deny_publish(stream_id, APP_ERROR);
                        }
                    }
                    None => self.start_publish(stream_id, name, &kind),
                },
                Event::Unpublish { stream_id } => {
                    self.publish_pending.remove(&stream_id);
                    if let Some(p) = self.publishers.remove(&stream_id) {
                        info!(stream = %p.key(), "unpublished");
                        if let Some(link) = &self.link {
                            let _ = link.send(ToActor::Unpublish {
                                client: self.id,
                                name: p.key().name.clone(),
                            });
                        }
                    }
                }
                Event::Media {
                    stream_id,
                    kind,
                    type_id,
                    timestamp,
                    payload,
                } => self.push_media(stream_id, kind, type_id, timestamp, payload),
                Event::Data {
                    stream_id,
                    publishing,
                    type_id,
                    timestamp,
                    payload,
                    values,
                } => self.on_data(stream_id, publishing, type_id, timestamp, payload, values),
                Event::Play {
                    stream_id,
                    name,
                    start,
                    duration,
                    reset,
                } => {
                    let args = PlayArgs {
                        start,
                        duration,
                        reset,
                    };
                    match &self.link {
                        Some(link) => {
                            let msg = ToActor::Play {
                                client: self.id,
                                stream_id,
                                name: name.name.clone(),
                                query: name.query.clone().unwrap_or_default(),
                            };
                            if link.send(msg).is_ok() {
                                self.play_pending.insert(stream_id, (name, args));
                            } else if link.policy() == FailurePolicy::Open {
                                self.start_play(stream_id, name, args);
                            } else {
                                self.session.play_failed(
                                    stream_id,
                                    "NetStream.Play.Failed",
                                    APP_ERROR,
                                );
                            }
                        }
                        None => self.start_play(stream_id, name, args),
                    }
                }
                Event::StopPlay { stream_id } => {
                    self.play_pending.remove(&stream_id);
                    let stopped = self
                        .plays
                        .remove(stream_id)
                        .map(|p| p.name)
                        .or_else(|| self.vods.remove(stream_id));
                    if let Some(name) = stopped {
                        debug!(stream = %name, "stopped playing");
                        if let Some(link) = &self.link {
                            let _ = link.send(ToActor::Stop {
                                client: self.id,
                                name,
                            });
                        }
                    }
                }
                Event::Seek {
                    stream_id,
                    position_ms,
                } => {
                    let ms = position_ms.clamp(0.0, f64::from(u32::MAX)) as u32;
                    let now = Instant::now();
                    if !self.vods.seek(&mut self.session, stream_id, ms, now)
                        && let Some(p) = self.plays.get(stream_id)
                    {
                        // A live stream has no past to seek in: say so in the way ffmpeg
                        // waits for, and keep playing from now.
                        let name = p.name.clone();
                        self.session.seek_notify(stream_id, &name, 0);
                    }
                }
                Event::StreamLength {
                    transaction_id,
                    name,
                } => {
                    self.stream_length(transaction_id, &name);
                }
                Event::Pause {
                    stream_id,
                    pause,
                    position_ms,
                } => {
                    if self.vods.pause(
                        &mut self.session,
                        stream_id,
                        pause,
                        position_ms,
                        Instant::now(),
                    ) {
                    } else if let Some(p) = self.plays.get_mut(stream_id) {
                        p.playback.player_mut().set_paused(pause);
                        let name = p.name.clone();
                        self.session.pause_notify(stream_id, pause, &name);
                    }
                }
                Event::ReceiveAudio { stream_id, enabled } => {
                    if let Some(p) = self.plays.get_mut(stream_id) {
                        p.playback.player_mut().audio = enabled;
                    }
                }
                Event::ReceiveVideo { stream_id, enabled } => {
                    if let Some(p) = self.plays.get_mut(stream_id) {
                        p.playback.player_mut().set_video(enabled);
                    }
                }
                Event::CallReply {
                    transaction_id,
                    ok,
                    value,
                } => {
                    let call_id = self.server_calls.remove(&(transaction_id as u64));
                    if let (Some(call_id), Some(link)) = (call_id, &self.link) {
                        let _ = link.send(ToActor::CallReply {
                            client: self.id,
                            call_id,
                            ok,
                            value,
                        });
                    }
                }
                Event::SharedObject { encoding, message } => {
                    let (app, rules) = (self.app.as_ref(), self.link.as_ref());
                    self.so
                        .on_message(&self.core, app, rules, self.id, encoding, message);
                }
                Event::Call(cmd) if self.link.is_some() => {
                    let txn = cmd.transaction_id;
                    if txn != 0.0 && self.calls_in_flight >= MAX_CALLS_IN_FLIGHT {
                        self.session.send_error(
                            txn,
                            "NetConnection.Call.Failed",
                            "Too many calls in flight.",
                        );
                        continue;
                    }
                    let msg = ToActor::Call {
                        client: self.id,
                        txn,
                        method: cmd.name,
                        args: cmd.args,
                    };
                    let sent = self.link.as_ref().map(|l| l.send(msg).is_ok());
                    if txn != 0.0 {
                        if sent == Some(true) {
                            self.calls_in_flight += 1;
                        } else {
                            self.session
                                .send_error(txn, "NetConnection.Call.Failed", APP_ERROR);
                        }
                    }
                }
                Event::Call(cmd) => {
                    debug!(method = %cmd.name, "call to a method no application handles");
                    // Transaction 0 means the client expects no answer.
                    if cmd.transaction_id != 0.0 {
                        self.session.send_error(
                            cmd.transaction_id,
                            "NetConnection.Call.Failed",
                            &format!("Method not found ({}).", cmd.name),
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// Routes a connect: the built-in live app accepts at once; an app with a module decides
    /// asynchronously (its answer arrives as a [`ToConn`]), so this task keeps serving meanwhile.
    fn on_connect(&mut self, req: ConnectRequest) {
        self.hops = relay_hops(&req.args);
        let max_hops = self.core.config().relay.max_hops;
        if self.hops > max_hops {
            warn!(
                hops = self.hops,
                max_hops, "connect rejected: relay chain too long (a relay loop?)"
            );
            self.session.reject_connect(&format!(
                "Relay chain too long: {} hops, the limit is {max_hops} (relay.max_hops).",
                self.hops
            ));
            return;
        }
        match self.core.apps().route(&req.path.app, &req.path.instance) {
            Route::Live => self.accept(req.path),
            Route::Deny => {
                info!(app = %req.path.app, "connect rejected: no such application");
                self.session.reject_connect("No such application.");
            }
            Route::App(link) => {
                let (tx, rx) = mpsc::channel(APP_QUEUE);
                let text = |v: &Option<String>| v.clone().unwrap_or_default();
                let meta = ClientMeta {
                    id: self.id,
                    address: self.peer.to_string(),
                    transport: self.transport.to_owned(),
                    app: req.path.app.clone(),
                    instance: req.path.instance.clone(),
                    query: text(&req.path.query),
                    tc_url: text(&req.tc_url),
                    page_url: text(&req.page_url),
                    swf_url: text(&req.swf_url),
                    flash_ver: text(&req.flash_ver),
                };
                let msg = ToActor::Connect {
                    meta,
                    args: req.args,
                    tx,
                };
                if link.send(msg).is_ok() {
                    self.app_rx = Some(rx);
                    self.connect_pending = Some(req.path);
                    self.link = Some(link);
                } else if link.policy() == FailurePolicy::Open {
                    warn!(
                        app = link.app(),
                        "application busy; connect accepted (fail-open)"
                    );
                    self.accept(req.path);
                } else {
                    warn!(app = link.app(), "application busy; connect rejected");
                    self.session.reject_connect(APP_ERROR);
                }
            }
        }
    }

    fn accept(&mut self, path: AppPath) {
        info!(app = %path.app, instance = %path.instance, "connect accepted");
        self.client.set_app(&path.app, &path.instance);
        self.app = Some(path);
        self.session.accept_connect();
    }

    /// Acts on a message from the app instance.
    fn on_app_msg(&mut self, msg: ToConn) -> Result<(), ConnError> {
        match msg {
            ToConn::ConnectAccept => {
                if let Some(path) = self.connect_pending.take() {
                    self.accept(path);
                }
            }
            ToConn::ConnectReject(reason) => {
                if self.connect_pending.take().is_some() {
                    info!(%reason, "connect rejected by the application");
                    self.session.reject_connect(&reason);
                }
            }
            ToConn::ConnectRedirect { url, description } => {
                if self.connect_pending.take().is_some() {
                    info!(%url, "connect redirected by the application");
                    self.session.redirect_connect(&url, &description);
                }
            }
            ToConn::Publish { stream_id, result } => {
                if let Some((name, kind)) = self.publish_pending.remove(&stream_id) {
                    match result {
                        Ok(()) => self.start_publish(stream_id, name, &kind),
                        Err(reason) => {
                            info!(stream = %name, %reason, "publish denied by the application");
                            // A recording the app armed for this publish has nothing to record.
                            let key = self.key(&name);
                            self.core.recordings().cancel_waiting(&key);
                            self.deny_publish(stream_id, &reason);
                        }
                    }
                }
            }
            ToConn::Play { stream_id, result } => {
                if let Some((name, args)) = self.play_pending.remove(&stream_id) {
                    match result {
                        Ok(()) => self.start_play(stream_id, name, args),
                        Err(reason) => {
                            info!(stream = %name, %reason, "play denied by the application");
                            self.session
                                .play_failed(stream_id, "NetStream.Play.Failed", &reason);
                        }
                    }
                }
            }
            ToConn::CallResult { txn, result } => {
                self.calls_in_flight = self.calls_in_flight.saturating_sub(1);
                match result {
                    Ok(v) => self.session.send_result(txn, &[v]),
                    Err(msg) => self
                        .session
                        .send_error(txn, "NetConnection.Call.Failed", &msg),
                }
            }
            ToConn::Call {
                method,
                args,
                call_id,
            } => {
                if !self.session.is_connected() {
                    return Ok(());
                }
                let mut txn = 0;
                if call_id != 0 && self.server_calls.len() < MAX_SERVER_CALLS {
                    self.next_txn += 1;
                    txn = self.next_txn;
                    self.server_calls.insert(txn, call_id);
                }
                self.session.send_call(&method, txn as f64, &args);
            }
            ToConn::Disconnect(reason) => {
                self.session.close_notify(&reason);
                return Err(ConnError::App(reason));
            }
            ToConn::Data { seq, outcome } => self.finish_data(seq, outcome),
        }
        Ok(())
    }

    fn push_media(
        &mut self,
        stream_id: u32,
        kind: MediaKind,
        type_id: u8,
        timestamp: u32,
        payload: Bytes,
    ) {
        if let Some(p) = self.publishers.get_mut(&stream_id)
            && !p.push(kind, type_id, timestamp, payload)
        {
            // Another connection took this stream over.
            self.publishers.remove(&stream_id);
            self.session.send_status(
                stream_id,
                "error",
                "NetStream.Publish.BadName",
                "The stream was taken over by a new publisher.",
            );
        }
    }

    /// A data message: without an app it goes to the players of a stream this connection
    /// publishes; with one, the app decides (relay, drop, rewrite) and the connection waits.
    fn on_data(
        &mut self,
        stream_id: u32,
        publishing: bool,
        type_id: u8,
        timestamp: u32,
        payload: Bytes,
        mut values: Vec<Amf0Value>,
    ) {
        let Some(link) = &self.link else {
            if publishing {
                self.push_media(stream_id, MediaKind::Data, type_id, timestamp, payload);
            } else {
                debug!(
                    stream_id,
                    "data message on a stream this client does not publish dropped"
                );
            }
            return;
        };
        let stream = match (self.publishers.get(&stream_id), self.plays.get(stream_id)) {
            (Some(p), _) => p.key().name.clone(),
            (None, Some(p)) => p.name.clone(),
            (None, None) => String::new(),
        };
        let handler = match values.first().and_then(|v| v.as_str()) {
            Some(h) => {
                let h = h.to_owned();
                values.remove(0);
                h
            }
            None => String::new(),
        };
        self.data_seq += 1;
        let msg = ToActor::Data {
            client: self.id,
            seq: self.data_seq,
            stream,
            handler: handler.clone(),
            args: values,
        };
        if link.send(msg).is_ok() {
            self.data_hold = Some(DataHold {
                seq: self.data_seq,
                stream_id,
                type_id,
                timestamp,
                payload,
                handler,
                until: tokio::time::Instant::now() + DATA_HOLD_LIMIT,
            });
        } else if link.policy() == FailurePolicy::Open {
            self.push_media(stream_id, MediaKind::Data, type_id, timestamp, payload);
        } else {
            warn!(%handler, "application busy; data message dropped");
        }
    }

    /// Applies the app's answer to the held data message and lets the next events through.
    fn finish_data(&mut self, seq: u64, outcome: DataOutcome) {
        let Some(hold) = self.data_hold.take_if(|h| h.seq == seq) else {
            // The answer came after the hold was released by its time limit.
            return;
        };
        let (type_id, payload) = match outcome {
            DataOutcome::Relay => (hold.type_id, hold.payload),
            DataOutcome::Drop => {
                debug!(handler = %hold.handler, "data message dropped by the application");
                return;
            }
            DataOutcome::Rewrite(args) => {
                let mut values = Vec::with_capacity(args.len() + 1);
                values.push(Amf0Value::string(&hold.handler));
                values.extend(args);
                (msg_type::DATA_AMF0, Bytes::from(encode_amf0_all(&values)))
            }
        };
        self.push_media(
            hold.stream_id,
            MediaKind::Data,
            type_id,
            hold.timestamp,
            payload,
        );
    }

    fn release_data_hold(&mut self, policy: FailurePolicy, why: &str) {
        let Some(hold) = self.data_hold.take() else {
            return;
        };
        warn!(handler = %hold.handler, %why, ?policy, "data message released by the failure policy");
        if policy == FailurePolicy::Open {
            self.push_media(
                hold.stream_id,
                MediaKind::Data,
                hold.type_id,
                hold.timestamp,
                hold.payload,
            );
        }
    }

    fn deny_publish(&mut self, stream_id: u32, reason: &str) {
        self.session
            .publish_rejected(stream_id, "NetStream.Publish.Rejected", reason);
    }

    fn start_publish(&mut self, stream_id: u32, name: StreamName, kind: &str) {
        let key = self.key(&name);
        let config = self.core.config();
        if config
            .relay
            .pull_rule(&key.app)
            .is_some_and(|r| r.mode == EdgePublish::Refuse)
        {
            info!(stream = %key, "publish refused: the app is an edge (relay.pull, mode = \"refuse\")");
            self.session.publish_rejected(
                stream_id,
                "NetStream.Publish.Rejected",
                "This server is an edge for the application; publish to the origin.",
            );
            return;
        }
        let media = &config.media;
        let mode = self
            .link
            .as_ref()
            .and_then(|l| l.record_mode())
            .unwrap_or(media.record);
        let record_to = if record::should_record(mode, kind) {
            match record::record_path(&media.record_dir, &key) {
                Ok(path) => Some(path),
                Err(e) => {
                    warn!(stream = %key, error = %e, "publish refused");
                    self.core.recordings().cancel_waiting(&key);
                    self.session.publish_rejected(
                        stream_id,
                        "NetStream.Publish.BadName",
                        &e.to_string(),
                    );
                    return;
                }
            }
        } else {
            if kind != "live" {
                debug!(kind, ?mode, "not recorded under this record mode");
            }
            None
        };
        match self
            .core
            .registry()
            .publish(key.clone(), self.client.clone())
        {
            Ok((p, displaced)) => {
                let recordings = self.core.recordings();
                if let Some(old) = displaced {
                    info!(stream = %key, displaced = old.id(), "publishing: took the stream over");
                    old.stop("The stream was taken over by a new publisher.");
                    // The new publisher's clock starts over: a new file, not a jump in the old.
                    recordings.stop(&key);
                } else {
                    info!(stream = %key, "publishing");
                }
                self.publishers.insert(stream_id, p);
                self.session.publish_started(stream_id);
                if let Some(relays) = self.core.relays() {
                    relays.published(&key, name.query.as_deref().unwrap_or(""), self.hops);
                }
                if let Some(path) = record_to {
                    let append = kind == "append";
                    if let Err(e) = recordings.start(key.clone(), path, append, Origin::Publish) {
                        // The app started one for this publish already (`record-start`).
                        debug!(stream = %key, error = %e, "publish type recording not started");
                    }
                }
                if recordings.get(&key).is_some() {
                    self.session.send_status(
                        stream_id,
                        "status",
                        "NetStream.Record.Start",
                        &format!("Recording {}.", name.name),
                    );
                }
            }
            Err(PublishError::InUse(_)) => {
                warn!(stream = %key, "publish refused: name in use");
                self.session.publish_rejected(
                    stream_id,
                    "NetStream.Publish.BadName",
                    &format!("Stream {} is already being published.", name.name),
                );
            }
        }
    }

    /// Plays the live stream or a file, by the rules of the README's "Playing files".
    fn start_play(&mut self, stream_id: u32, name: StreamName, args: PlayArgs) {
        let key = self.key(&name);
        self.plays.remove(stream_id);
        self.vods.remove(stream_id);
        let file = FileName::parse(&name.name);
        let live_now = self.core.registry().publisher_of(&key).is_some();
        // ffmpeg and Flash send -2000 (-2 s) for "live or recorded"; some clients send -2.
        let any = args.start == -2000.0 || args.start == -2.0;
        let recorded = file.explicit || args.start >= 0.0 || (any && !live_now);
        if !file.explicit
            && args.start >= 0.0
            && live_now
            && let Some(dvr) = self.core.recordings().dvr(&key)
            && args.start < dvr.recorded_ms as f64
        {
            // DVR: a rewind into the recording of the live stream, then on to live.
            // With a duration it ends there (or at the recording's end), as a file play does.
            let then = (args.duration < 0.0).then(|| ThenLive {
                key: key.clone(),
                live_to_file: dvr.live_to_file,
            });
            let source = Source::Recording { then_live: then };
            return self.start_file(stream_id, &name, &key, dvr.part, args, source);
        }
        if recorded {
            let config = self.core.config();
            match file.find(&config.media.vod_dir, &key) {
                Ok(Some(path)) => {
                    return self.start_file(stream_id, &name, &key, path, args, Source::File);
                }
                Ok(None) if file.explicit || (args.start >= 0.0 && !live_now) => {
                    info!(stream = %key, "play: no such file");
                    self.session.play_failed(
                        stream_id,
                        "NetStream.Play.StreamNotFound",
                        &format!("Failed to play {}; stream not found.", name.name),
                    );
                    return;
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(stream = %key, error = %e, "play refused");
                    self.session.play_failed(
                        stream_id,
                        "NetStream.Play.StreamNotFound",
                        &e.to_string(),
                    );
                    return;
                }
            }
        }
        let sub = self.core.registry().play(key.clone());
        if !sub.live
            && let Some(relays) = self.core.relays()
        {
            // Subscribed first, so a pull relay started here sees this player.
            relays.wanted(&key, name.query.as_deref().unwrap_or(""), self.hops);
        }
        info!(stream = %key, start = args.start, live = sub.live, "playing");
        self.session.play_started(stream_id, &name.name, args.reset);
        let player = self.new_player();
        self.plays
            .start(&mut self.session, stream_id, name.name, sub, player, None);
    }

    fn new_player(&self) -> Player {
        let config = self.core.config();
        let media = &config.media;
        Player::new(
            media.player_max_skips,
            Duration::from_secs(media.player_skip_window_secs),
        )
    }

    /// A DVR play sent the recording: it goes on with the live stream on the file's timeline,
    /// from its next keyframe after what was sent; a stream no longer live completes instead.
    fn go_live(&mut self, live: ToLive) {
        let ToLive {
            stream_id,
            name,
            then,
            from_ms,
        } = live;
        if self.core.registry().publisher_of(&then.key).is_none() {
            info!(stream = %then.key, "rewound play ended with the recording; the stream is no longer live");
            self.session.play_complete(stream_id, &name, from_ms, 0);
            return;
        }
        let sub = self.core.registry().play(then.key.clone());
        let rebase = Rebase {
            add: then.live_to_file,
            from: Some(from_ms),
        };
        let player = self.new_player();
        self.plays.start(
            &mut self.session,
            stream_id,
            name,
            sub,
            player,
            Some(rebase),
        );
    }

    /// Plays the file at `path`: it is indexed on the blocking pool, and the play starts (or
    /// fails) in [`Conn::file_opened`].
    fn start_file(
        &mut self,
        stream_id: u32,
        name: &StreamName,
        key: &StreamKey,
        path: std::path::PathBuf,
        args: PlayArgs,
        source: Source,
    ) {
        let request = Request {
            name: name.name.clone(),
            key: key.clone(),
            path,
            source,
            start_ms: args.start.clamp(0.0, f64::from(u32::MAX)) as u32,
            duration_ms: (args.duration >= 0.0)
                .then(|| args.duration.min(f64::from(u32::MAX)) as u32),
            reset: args.reset,
        };
        self.vods.open(stream_id, request, self.core.vod().clone());
    }

    fn on_vod_done(&mut self, done: Done) {
        match done {
            Done::Opened {
                stream_id,
                ticket,
                request,
                result,
            } => {
                if self.vods.opened(stream_id, ticket) {
                    self.file_opened(stream_id, *request, result);
                }
            }
            Done::Length {
                transaction_id,
                secs,
            } => {
                self.session
                    .send_result(transaction_id, &[Amf0Value::Number(secs)]);
            }
            Done::Block { play, no, result } => {
                self.vods
                    .block_read(&mut self.session, play, no, result, Instant::now());
            }
        }
    }

    fn file_opened(
        &mut self,
        stream_id: u32,
        request: Request,
        result: Result<std::sync::Arc<VodFile>, OpenError>,
    ) {
        let Request {
            name,
            key,
            path,
            source,
            start_ms,
            duration_ms,
            reset,
        } = request;
        let file = match result {
            Ok(f) => f,
            Err(OpenError::NotFound) => {
                self.session.play_failed(
                    stream_id,
                    "NetStream.Play.StreamNotFound",
                    &format!("Failed to play {name}; stream not found."),
                );
                return;
            }
            Err(e) => {
                warn!(stream = %key, file = %path.display(), error = %e, "file cannot be played");
                self.session.play_failed(
                    stream_id,
                    "NetStream.Play.Failed",
                    &format!("Failed to play {name}: the file {e}."),
                );
                return;
            }
        };
        let config = self.core.config();
        let max_lead = config.media.vod_max_lead_ms;
        let lead = self
            .session
            .buffer_length_ms()
            .clamp(500, max_lead.max(500));
        let dvr = matches!(source, Source::Recording { .. });
        info!(stream = %key, file = %path.display(), start_ms, ?duration_ms, lead_ms = lead, dvr, "playing a file");
        self.session.play_started(stream_id, &name, reset);
        self.vods.start(
            stream_id,
            name,
            source,
            file,
            start_ms,
            duration_ms,
            Duration::from_millis(u64::from(lead)),
            Instant::now(),
        );
    }

    /// `getStreamLength`: a file's length in seconds, 0 for a live stream or nothing; a file
    /// nobody plays is indexed on the blocking pool first.
    fn stream_length(&mut self, transaction_id: f64, name: &str) {
        if let Some(secs) = self.vods.length_secs(name) {
            self.session
                .send_result(transaction_id, &[Amf0Value::Number(secs)]);
            return;
        }
        let stream = StreamName::parse(name);
        let key = self.key(&stream);
        let config = self.core.config();
        match FileName::parse(&stream.name).find(&config.media.vod_dir, &key) {
            Ok(Some(path)) => self
                .vods
                .length(transaction_id, path, self.core.vod().clone()),
            _ => self
                .session
                .send_result(transaction_id, &[Amf0Value::Number(0.0)]),
        }
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
/// The relay hop count a connect carries (see [`HOPS_ARG`]); 0 for every other client.
fn relay_hops(args: &[Amf0Value]) -> u32 {
    args.iter()
        .find_map(|a| a.get(HOPS_ARG).and_then(|v| v.as_f64()))
        .map(|h| h.clamp(0.0, f64::from(u32::MAX)) as u32)
        .unwrap_or(0)
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The next message from the app instance, or never when the connection has none.
async fn recv_app(rx: &mut Option<mpsc::Receiver<ToConn>>) -> Option<ToConn> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Writes every buffer with as few vectored writes as the transport allows.
async fn write_all_vectored<W: AsyncWrite + Unpin>(
    wr: &mut W,
    bufs: &mut Vec<Bytes>,
) -> std::io::Result<()> {
    let mut start = 0;
    while start < bufs.len() {
        let slices: Vec<IoSlice<'_>> = bufs[start..]
            .iter()
            .take(64)
            .map(|b| IoSlice::new(b))
            .collect();
        let mut n = wr.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 && start < bufs.len() {
            let len = bufs[start].len();
            if n >= len {
                n -= len;
                start += 1;
            } else {
                bufs[start].advance(n);
                n = 0;
            }
        }
    }
    bufs.clear();
    wr.flush().await
}
