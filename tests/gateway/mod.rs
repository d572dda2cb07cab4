//! Starts an in-process gateway on 127.0.0.1:0 with its own runtime, for end-to-end tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use wasmgate::config::Config;
use wasmgate::gateway::Core;
use wasmgate::server::Server;

pub struct Gateway {
    pub addr: SocketAddr,
    pub server: Server,
    // Dropped last: the server's tasks run on it.
    _rt: tokio::runtime::Runtime,
}

impl Gateway {
    pub fn start() -> Gateway {
        Gateway::start_with(Config::default())
    }

    pub fn start_with(config: Config) -> Gateway {
        Gateway::start_at(config, "127.0.0.1:0".parse().unwrap())
    }

    /// Like [`Gateway::start_with`] with RTMP on `rtmp` (a gateway restarted on its port).
    pub fn start_at(mut config: Config, rtmp: SocketAddr) -> Gateway {
        // Logs go to the test's captured output, shown when a test fails.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .with_test_writer()
            .try_init();
        config.rtmp.listen = vec![rtmp];
        // Every configured HTTP (RTMPT) listener moves to a free loopback port too.
        for a in &mut config.http.listen {
            *a = "127.0.0.1:0".parse().unwrap();
        }
        // Tests run in parallel (and next to other checkouts): never take the fixed 1111.
        if config.admin.listen.port() == 1111 {
            config.admin.listen.set_port(0);
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let server = rt.block_on(Server::start(config)).expect("gateway starts");
        Gateway {
            addr: server.rtmp_addrs[0],
            server,
            _rt: rt,
        }
    }

    /// `rtmp://127.0.0.1:PORT/PATH`
    pub fn url(&self, path: &str) -> String {
        format!("rtmp://{}/{}", self.addr, path)
    }

    /// The first RTMPT-only HTTP listener.
    pub fn http_addr(&self) -> SocketAddr {
        self.server.http_addrs[0]
    }

    /// The admin listener's address (tests bind it on port 0).
    pub fn admin_addr(&self) -> SocketAddr {
        self.server.admin_addr.expect("admin listener enabled")
    }

    /// Streams that currently have a publisher.
    pub fn publishing(&self) -> usize {
        self.core()
            .registry()
            .snapshot()
            .iter()
            .filter(|(_, publishing, _)| *publishing)
            .count()
    }

    /// The transports of the connected clients, sorted.
    pub fn transports(&self) -> Vec<&'static str> {
        let mut t: Vec<_> = self
            .core()
            .clients()
            .list()
            .iter()
            .map(|c| c.transport)
            .collect();
        t.sort();
        t
    }

    /// The gateway core (streams, clients, apps, config, counters).
    pub fn core(&self) -> &Arc<Core> {
        &self.server.core
    }
}

/// Polls `f` every 20 ms until it is true or `timeout` passes.
pub fn wait(timeout: std::time::Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    f()
}

/// Writes a fresh self-signed certificate for 127.0.0.1/localhost into `dir` as `cert.pem` and
/// `key.pem`, for `[tls]` or `[admin] tls_*`.
pub fn write_cert(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("rcgen");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key)
}
