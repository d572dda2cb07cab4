//! Remote shared objects end to end over real sockets with the project client: concurrent
//! changes seen in one order by every subscriber, a late joiner, Send Message, persistence across
//! a gateway restart, the persistence rule, a limit refusal, AMF3 (type 16) framing, a client
//! speaking through the RTMPT tunnel next to one on plain RTMP, one on RTMPS, and the `chat`
//! guest ruling on changes and messages and keeping its member list in a shared object.

mod apps;
mod gateway;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use gateway::{Gateway, wait, write_cert};
use wasmgate::client::{ClientError, RtmpClient};
use wasmgate::config::Config;
use wasmgate::rtmp::amf::Amf0Value;
use wasmgate::rtmp::shared_object::{SoEncoding, SoEvent, SoMessage};
use wasmgate::state::Scope;
use wasmgate::state::shared_objects::{FileSoStore, SoStore};

const T: Duration = Duration::from_secs(5);

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// One client's copy of one shared object, built only from what the server sent it.
struct Peer {
    client: RtmpClient,
    encoding: SoEncoding,
    name: String,
    persistent: bool,
    slots: BTreeMap<String, Amf0Value>,
    /// The value this client last asked for, per key: what a Success confirms.
    asked: BTreeMap<String, Amf0Value>,
    version: u32,
    versions: Vec<u32>,
    messages: Vec<(String, Vec<Amf0Value>)>,
    statuses: Vec<String>,
}

impl Peer {
    async fn connect(gw: &Gateway, name: &str, persistent: bool, encoding: SoEncoding) -> Peer {
        // Two path segments are app + stream name (as librtmp splits them): app `so`,
        // instance `_definst_`, the scope every test here uses.
        let client = RtmpClient::connect(&gw.url("so/room"), vec![])
            .await
            .unwrap();
        Peer::over(client, name, persistent, encoding)
    }

    /// A peer on a connection the caller made (another app, TLS).
    fn over(client: RtmpClient, name: &str, persistent: bool, encoding: SoEncoding) -> Peer {
        Peer {
            client,
            encoding,
            name: name.to_owned(),
            persistent,
            slots: BTreeMap::new(),
            asked: BTreeMap::new(),
            version: 0,
            versions: Vec::new(),
            messages: Vec::new(),
            statuses: Vec::new(),
        }
    }

    async fn send(&mut self, events: Vec<SoEvent>) {
        let msg = SoMessage::new(&self.name, self.version, self.persistent, events);
        self.client
            .send_shared_object(&msg, self.encoding)
            .await
            .unwrap();
    }

    async fn use_so(&mut self) {
        self.send(vec![SoEvent::Use]).await;
    }

    async fn change(&mut self, key: &str, value: Amf0Value) {
        self.asked.insert(key.to_owned(), value.clone());
        self.send(vec![SoEvent::RequestChange {
            key: key.to_owned(),
            value,
        }])
        .await;
    }

    /// Reads one message and applies it; returns its events.
    async fn recv(&mut self, limit: Duration) -> Result<Vec<SoEvent>, ClientError> {
        let (encoding, msg) = self.client.next_shared_object(limit).await?;
        assert_eq!(
            encoding, self.encoding,
            "replies come in the client's framing"
        );
        assert_eq!(msg.name, self.name);
        assert_eq!(msg.persistent(), self.persistent);
        self.version = msg.version;
        self.versions.push(msg.version);
        for ev in &msg.events {
            match ev {
                SoEvent::Clear => self.slots.clear(),
                SoEvent::Change { key, value } => {
                    self.slots.insert(key.clone(), value.clone());
                }
                SoEvent::Success { key } => {
                    let v = self
                        .asked
                        .get(key)
                        .cloned()
                        .expect("Success for a key we set");
                    self.slots.insert(key.clone(), v);
                }
                SoEvent::Remove { key } => {
                    self.slots.remove(key);
                }
                SoEvent::SendMessage { handler, args } => {
                    self.messages.push((handler.clone(), args.clone()))
                }
                SoEvent::Status { code, .. } => self.statuses.push(code.clone()),
                _ => {}
            }
        }
        Ok(msg.events)
    }

    /// Applies messages until this copy is at `version`.
    async fn catch_up(&mut self, version: u32) {
        while self.version != version {
            self.recv(T)
                .await
                .unwrap_or_else(|e| panic!("stuck at version {} of {version}: {e}", self.version));
        }
    }

    /// Applies whatever arrives until 300 ms pass quietly.
    async fn settle(&mut self) {
        while self.recv(Duration::from_millis(300)).await.is_ok() {}
    }

    /// True when nothing arrives within `quiet`.
    async fn silent(&mut self, quiet: Duration) -> bool {
        matches!(
            self.client.next_shared_object(quiet).await,
            Err(ClientError::Timeout(_))
        )
    }
}

fn scope() -> Scope {
    Scope::new("so", "_definst_")
}

fn authority(gw: &Gateway, name: &str) -> (Option<u32>, Vec<(String, Amf0Value)>) {
    gw.core().shared_objects().with(|a| {
        (
            a.version(&scope(), name),
            a.slots(&scope(), name).unwrap_or_default(),
        )
    })
}

#[test]
fn concurrent_changes_one_order_late_joiner_and_send_message() {
    let gw = Gateway::start();
    rt().block_on(async {
        // The third client speaks AMF3 framing (type 16) and must be answered in it.
        let encodings = [SoEncoding::Amf0, SoEncoding::Amf0, SoEncoding::Amf3];
        let mut peers = Vec::new();
        for enc in encodings {
            let mut p = Peer::connect(&gw, "board", false, enc).await;
            p.use_so().await;
            let events = p.recv(T).await.unwrap();
            assert_eq!(events[..2], [SoEvent::UseSuccess, SoEvent::Clear]);
            peers.push(p);
        }

        // The requester gets Success, the others Change.
        peers[0].change("solo", Amf0Value::Number(1.0)).await;
        let events = peers[0].recv(T).await.unwrap();
        assert_eq!(events, [SoEvent::Success { key: "solo".into() }]);
        for p in &mut peers[1..] {
            let events = p.recv(T).await.unwrap();
            assert_eq!(
                events,
                [SoEvent::Change {
                    key: "solo".into(),
                    value: Amf0Value::Number(1.0)
                }]
            );
        }

        // Everyone writes its own keys and one key they all fight over, at the same time.
        for round in 0..10 {
            for (i, p) in peers.iter_mut().enumerate() {
                let v = Amf0Value::Number((i * 100 + round) as f64);
                p.change(&format!("k{i}-{round}"), v.clone()).await;
                p.change("shared", v).await;
            }
        }
        // 3 clients x 10 rounds x 2 changes, all applied (within the default burst), plus solo.
        let final_version = 1 + 1 + 60;
        assert!(
            wait(T, || authority(&gw, "board").0 == Some(final_version)),
            "authority at {:?}",
            authority(&gw, "board").0
        );
        let (_, slots) = authority(&gw, "board");
        let slots: BTreeMap<_, _> = slots.into_iter().collect();
        assert_eq!(slots.len(), 1 + 30 + 1);
        for p in &mut peers {
            p.catch_up(final_version).await;
            assert!(
                p.versions.windows(2).all(|w| w[0] < w[1]),
                "versions not increasing: {:?}",
                p.versions
            );
            assert_eq!(p.slots, slots, "a client's copy differs from the server's");
            assert!(p.statuses.is_empty(), "{:?}", p.statuses);
        }

        // A late joiner gets Use Success, Clear and every slot at the current version.
        let mut late = Peer::connect(&gw, "board", false, SoEncoding::Amf0).await;
        late.use_so().await;
        let events = late.recv(T).await.unwrap();
        assert_eq!(events[..2], [SoEvent::UseSuccess, SoEvent::Clear]);
        assert_eq!(events.len(), 2 + slots.len());
        assert_eq!(late.version, final_version);
        assert_eq!(late.slots, slots);
        peers.push(late);

        // Send Message reaches every subscriber, the sender too (Flash's SharedObject.send).
        peers[1]
            .send(vec![SoEvent::SendMessage {
                handler: "onChat".into(),
                args: vec![Amf0Value::string("hi")],
            }])
            .await;
        for p in &mut peers {
            p.recv(T).await.unwrap();
            assert_eq!(
                p.messages,
                [("onChat".to_owned(), vec![Amf0Value::string("hi")])]
            );
            assert_eq!(
                p.version, final_version,
                "a message does not bump the version"
            );
        }

        // A client that leaves is released: the others keep the object.
        drop(peers.pop());
        assert!(wait(T, || gw
            .core()
            .shared_objects()
            .with(|a| a.subscribers(&scope(), "board").map(|s| s.len()))
            == Some(3)));
    });
}

#[test]
fn persistent_object_survives_a_restart_and_persistence_must_match() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.shared_objects.dir = dir.path().to_path_buf();

    let gw = Gateway::start_with(config.clone());
    rt().block_on(async {
        let mut p = Peer::connect(&gw, "scores", true, SoEncoding::Amf0).await;
        p.use_so().await;
        assert_eq!(
            p.recv(T).await.unwrap(),
            [SoEvent::UseSuccess, SoEvent::Clear]
        );
        p.change("alice", Amf0Value::Number(3.0)).await;
        p.change("bob", Amf0Value::string("x")).await;
        p.catch_up(3).await;

        // The same name as temporary is refused with BadPersistence, and the reverse too.
        let mut wrong = Peer::connect(&gw, "scores", false, SoEncoding::Amf0).await;
        wrong.use_so().await;
        wrong.recv(T).await.unwrap();
        assert_eq!(wrong.statuses, ["SharedObject.BadPersistence"]);
        let mut temp = Peer::connect(&gw, "lobby", false, SoEncoding::Amf0).await;
        temp.use_so().await;
        temp.recv(T).await.unwrap();
        let mut wrong = Peer::connect(&gw, "lobby", true, SoEncoding::Amf0).await;
        wrong.use_so().await;
        wrong.recv(T).await.unwrap();
        assert_eq!(wrong.statuses, ["SharedObject.BadPersistence"]);
        assert_eq!(
            gw.core()
                .shared_objects()
                .with(|a| a.subscribers(&scope(), "lobby").map(|s| s.len())),
            Some(1),
            "a refused Use does not subscribe"
        );
    });
    // Saved at the tick after the change.
    let store = FileSoStore::new(dir.path());
    assert!(
        wait(T, || store
            .load(&scope(), "scores")
            .ok()
            .flatten()
            .is_some_and(|s| s.version == 3)),
        "persistent object never saved"
    );
    drop(gw);

    let gw = Gateway::start_with(config);
    rt().block_on(async {
        let mut p = Peer::connect(&gw, "scores", true, SoEncoding::Amf3).await;
        p.use_so().await;
        let events = p.recv(T).await.unwrap();
        assert_eq!(events[..2], [SoEvent::UseSuccess, SoEvent::Clear]);
        assert_eq!(p.version, 3);
        let want: BTreeMap<_, _> = [
            ("alice".to_owned(), Amf0Value::Number(3.0)),
            ("bob".to_owned(), Amf0Value::string("x")),
        ]
        .into();
        assert_eq!(p.slots, want);
        // And it keeps counting from there.
        p.change("carol", Amf0Value::Boolean(true)).await;
        p.catch_up(4).await;
    });
}

#[test]
fn over_limit_change_gets_a_status_for_that_client_only() {
    let mut config = Config::default();
    config.shared_objects.max_bytes = 1024;
    config.shared_objects.max_slots = 4;
    let gw = Gateway::start_with(config);
    rt().block_on(async {
        let mut a = Peer::connect(&gw, "small", false, SoEncoding::Amf0).await;
        let mut b = Peer::connect(&gw, "small", false, SoEncoding::Amf0).await;
        for p in [&mut a, &mut b] {
            p.use_so().await;
            p.recv(T).await.unwrap();
        }
        a.change("big", Amf0Value::string("x".repeat(2000))).await;
        a.recv(T).await.unwrap();
        assert_eq!(a.statuses, ["SharedObject.LimitExceeded"]);
        assert!(a.slots.is_empty());
        assert!(
            b.silent(Duration::from_millis(400)).await,
            "b heard of a's refusal"
        );
        assert_eq!(authority(&gw, "small"), (Some(1), vec![]));

        // Too many slots: the fifth is refused, the four before it stand.
        for i in 0..5 {
            a.change(&format!("s{i}"), Amf0Value::Number(i as f64))
                .await;
        }
        assert!(wait(T, || authority(&gw, "small").0 == Some(5)));
        b.catch_up(5).await;
        assert_eq!(b.slots.len(), 4);
        assert!(b.statuses.is_empty());
        let mut seen = false;
        while !seen {
            a.recv(T).await.unwrap();
            seen = a.statuses.len() == 2;
        }
        assert_eq!(a.statuses[1], "SharedObject.LimitExceeded");
        assert_eq!(a.slots, b.slots);
        // The refused client is still served.
        b.send(vec![SoEvent::SendMessage {
            handler: "ping".into(),
            args: vec![],
        }])
        .await;
        a.recv(T).await.unwrap();
        assert_eq!(a.messages.len(), 1);
    });
}

/// The project's sans-IO client through raw RTMPT requests on one keep-alive HTTP connection:
/// queued bytes go out in `/send`, otherwise `/idle` polls (as in `tunnel_bad_input.rs`).
struct Tunnel {
    rd: BufReader<TcpStream>,
    wr: TcpStream,
    id: String,
    seq: u64,
    session: wasmgate::rtmp::client::ClientSession,
}

impl Tunnel {
    fn connect(addr: SocketAddr, app: &str) -> Tunnel {
        use wasmgate::rtmp::client::{ClientConfig, ClientSession};
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut t = Tunnel {
            rd: BufReader::new(s.try_clone().unwrap()),
            wr: s,
            id: String::new(),
            seq: 0,
            session: ClientSession::new(ClientConfig::new(app, format!("rtmpt://{addr}/{app}"))),
        };
        let body = t.request("/open/1", b"\0");
        t.id = String::from_utf8(body).unwrap().trim_end().to_owned();
        t
    }

    fn request(&mut self, path: &str, body: &[u8]) -> Vec<u8> {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-fcs\r\n\
             Content-Length: {}\r\nConnection: keep-alive\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        self.wr.write_all(&req).unwrap();
        let mut len = None;
        let mut status = String::new();
        self.rd.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        loop {
            let mut l = String::new();
            self.rd.read_line(&mut l).unwrap();
            let l = l.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().ok();
            }
        }
        let mut body = vec![0; len.expect("content-length")];
        self.rd.read_exact(&mut body).unwrap();
        body
    }

    fn pump(&mut self) {
        let mut out = Vec::new();
        self.session.drain_transmit(&mut out);
        let body: Vec<u8> = out.iter().flat_map(|b| b.iter().copied()).collect();
        let (cmd, body) = if body.is_empty() {
            ("idle", vec![0u8])
        } else {
            ("send", body)
        };
        let reply = self.request(&format!("/{cmd}/{}/{}", self.id, self.seq), &body);
        self.seq += 1;
        // The first byte is the polling interval.
        self.session.handle_input(&reply[1..]).expect("valid RTMP");
    }

    /// The next shared object message (other events are skipped).
    fn next_so(&mut self) -> (SoEncoding, SoMessage) {
        use wasmgate::rtmp::client::ClientEvent;
        for _ in 0..500 {
            while let Some(ev) = self.session.poll_event() {
                if let ClientEvent::SharedObject { encoding, message } = ev {
                    return (encoding, message);
                }
            }
            self.pump();
        }
        panic!("no shared object message through the tunnel");
    }
}

#[test]
fn rtmpt_and_rtmp_clients_share_one_object() {
    let gw = Gateway::start();
    let rt = rt();
    let mut t = Tunnel::connect(gw.http_addr(), "so");
    while !t.session.is_connected() {
        t.pump();
    }
    let mut p = rt.block_on(async {
        let mut p = Peer::connect(&gw, "mixed", false, SoEncoding::Amf0).await;
        p.use_so().await;
        p.recv(T).await.unwrap();
        p
    });
    t.session.send_shared_object(
        &SoMessage::new("mixed", 0, false, vec![SoEvent::Use]),
        SoEncoding::Amf3,
    );
    let (enc, msg) = t.next_so();
    assert_eq!(enc, SoEncoding::Amf3);
    assert_eq!(msg.events, [SoEvent::UseSuccess, SoEvent::Clear]);
    t.session.send_shared_object(
        &SoMessage::new(
            "mixed",
            msg.version,
            false,
            vec![SoEvent::RequestChange {
                key: "via".into(),
                value: Amf0Value::string("rtmpt"),
            }],
        ),
        SoEncoding::Amf3,
    );
    assert_eq!(
        t.next_so().1.events,
        [SoEvent::Success { key: "via".into() }]
    );
    rt.block_on(async {
        p.catch_up(2).await;
        assert_eq!(p.slots.get("via"), Some(&Amf0Value::string("rtmpt")));
        p.change("via", Amf0Value::string("rtmp")).await;
    });
    assert_eq!(
        t.next_so().1.events,
        [SoEvent::Change {
            key: "via".into(),
            value: Amf0Value::string("rtmp")
        }]
    );
    let transports: Vec<_> = gw
        .core()
        .clients()
        .list()
        .iter()
        .map(|c| c.transport)
        .collect();
    assert!(transports.contains(&"rtmpt") && transports.contains(&"rtmp"));
}

/// An RTMPS connection to the gateway's RTMP port, trusting only the certificate at `cert`.
async fn connect_rtmps(gw: &Gateway, cert: &std::path::Path) -> RtmpClient {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(cert).unwrap())
        .unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
        .connect(name, tcp)
        .await
        .expect("TLS handshake with the gateway");
    let cfg = wasmgate::rtmp::client::ClientConfig::new(
        "so",
        format!("rtmps://localhost:{}/so", gw.addr.port()),
    );
    RtmpClient::connect_over(stream, cfg).await.unwrap()
}

#[test]
fn rtmps_and_rtmp_clients_share_one_object() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_cert(dir.path());
    let mut config = Config::default();
    config.tls.cert = Some(cert.clone());
    config.tls.key = Some(key);
    let gw = Gateway::start_with(config);
    rt().block_on(async {
        let mut secure = Peer::over(
            connect_rtmps(&gw, &cert).await,
            "board",
            false,
            SoEncoding::Amf3,
        );
        let mut plain = Peer::connect(&gw, "board", false, SoEncoding::Amf0).await;
        for p in [&mut secure, &mut plain] {
            p.use_so().await;
            p.recv(T).await.unwrap();
        }
        secure.change("via", Amf0Value::string("rtmps")).await;
        plain.catch_up(2).await;
        assert_eq!(plain.slots.get("via"), Some(&Amf0Value::string("rtmps")));
        plain.change("via", Amf0Value::string("rtmp")).await;
        secure.catch_up(3).await;
        assert_eq!(secure.slots.get("via"), Some(&Amf0Value::string("rtmp")));
        assert_eq!(gw.transports(), ["rtmp", "rtmps"]);
    });
}

/// A connection to the `chat` app (instance `_definst_`).
async fn chat_client(gw: &Gateway) -> RtmpClient {
    RtmpClient::connect(&gw.url("chat/lobby"), vec![])
        .await
        .unwrap()
}

#[test]
fn the_chat_guest_owns_its_member_list_and_moderates_changes_and_messages() {
    let apps_dir = tempfile::tempdir().unwrap();
    apps::install_app(
        apps_dir.path(),
        "chat",
        "chat",
        "[settings]\nbanned = [\"badword\"]\nmax_text = 64\n",
    );
    let gw = apps::gateway_with_apps(apps_dir.path(), |_| {});
    let chat = Scope::new("chat", "_definst_");
    rt().block_on(async {
        let mut alice = chat_client(&gw).await;
        let joined = alice
            .call("join", &[Amf0Value::string("alice")])
            .await
            .unwrap();
        assert!(joined.is_ok(), "join answered {joined:?}");

        // The guest wrote its member list into the shared object `members`.
        let mut bob = Peer::over(chat_client(&gw).await, "members", false, SoEncoding::Amf0);
        bob.use_so().await;
        let events = bob.recv(T).await.unwrap();
        assert_eq!(events[..2], [SoEvent::UseSuccess, SoEvent::Clear]);
        assert_eq!(bob.slots.keys().collect::<Vec<_>>(), ["alice"]);
        // A Use between the guest's write and the next tick also gets that tick's Change.
        bob.settle().await;

        // Clients may not write it: denied, and bob's optimistic copy is put back.
        let before = bob.version;
        bob.change("mallory", Amf0Value::Number(1.0)).await;
        let events = bob.recv(T).await.unwrap();
        assert_eq!(
            events,
            [
                SoEvent::Remove {
                    key: "mallory".into()
                },
                SoEvent::Status {
                    code: "SharedObject.NoWriteAccess".into(),
                    level: "error".into()
                }
            ]
        );
        assert_eq!(bob.version, before, "a denied change is no new version");
        assert_eq!(
            gw.core()
                .shared_objects()
                .with(|a| a.keys(&chat, "members")),
            Some(vec!["alice".to_owned()])
        );

        // Other objects are the clients', moderated: a banned word is masked for everyone, the
        // writer included (it gets Change with the app's value, not Success).
        let mut carol = Peer::over(chat_client(&gw).await, "notes", false, SoEncoding::Amf0);
        let mut dave = Peer::over(chat_client(&gw).await, "notes", false, SoEncoding::Amf3);
        for p in [&mut carol, &mut dave] {
            p.use_so().await;
            p.recv(T).await.unwrap();
        }
        carol
            .change("n1", Amf0Value::string("a BadWord here"))
            .await;
        let masked = SoEvent::Change {
            key: "n1".into(),
            value: Amf0Value::string("a *** here"),
        };
        assert_eq!(carol.recv(T).await.unwrap(), std::slice::from_ref(&masked));
        assert_eq!(dave.recv(T).await.unwrap(), [masked]);
        // Too long: denied, carol gets the current value back.
        carol.change("n1", Amf0Value::string("x".repeat(100))).await;
        let events = carol.recv(T).await.unwrap();
        assert_eq!(
            events[0],
            SoEvent::Change {
                key: "n1".into(),
                value: Amf0Value::string("a *** here")
            }
        );
        assert_eq!(carol.statuses, ["SharedObject.NoWriteAccess"]);

        // Send Message: masked on the way, a too-long one dropped.
        carol
            .send(vec![SoEvent::SendMessage {
                handler: "say".into(),
                args: vec![Amf0Value::string("y".repeat(100))],
            }])
            .await;
        carol
            .send(vec![SoEvent::SendMessage {
                handler: "say".into(),
                args: vec![Amf0Value::string("badword!")],
            }])
            .await;
        dave.recv(T).await.unwrap();
        assert_eq!(
            dave.messages,
            [("say".to_owned(), vec![Amf0Value::string("***!")])]
        );
        assert!(dave.silent(Duration::from_millis(300)).await);

        // Leaving removes the member for every subscriber.
        let left = alice.call("leave", &[]).await.unwrap();
        assert!(left.is_ok(), "leave answered {left:?}");
        let events = bob.recv(T).await.unwrap();
        assert_eq!(
            events,
            [SoEvent::Remove {
                key: "alice".into()
            }]
        );
    });
}
