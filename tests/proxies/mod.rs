//! Forward proxies for the client side of RTMPT: a network namespace whose only way out is a
//! proxy, Debian's tinyproxy and Squid started by the test in a temp directory, and (in
//! [`test_proxy`]) a small proxy that misbehaves on purpose in the ways real ones do.
//!
//! Included by `tests/forward_proxies.rs` only; tinyproxy and squid come from
//! `scripts/install-test-deps.sh` through [`ensure_tools`].
#![allow(dead_code)]

pub mod rtmpt;
pub mod test_proxy;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{Proc, Signal, ensure_tools, free_port, wait_until, which};

/// A network namespace joined to the host by one veth pair: the host side is the only address
/// the namespace can reach (its own 127.0.0.1 is not the host's). Removed on drop.
pub struct Netns {
    pub name: String,
    /// The host's address on the veth pair: proxies listen here.
    pub host_ip: String,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Netns {
    /// `None` when this machine does not let us create one (not root, no `ip`).
    pub fn create() -> Option<Netns> {
        // Tests of one binary run in parallel: the pid alone is not unique.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        let tag = format!("{}{k}", pid % 100_000);
        let name = format!("wgt{tag}");
        let (h, n) = (format!("wg{tag}h"), format!("wg{tag}n"));
        // 10.(200+k).x.1/24: distinct per test in this process, and per process by pid.
        let net = format!("10.{}.{}", 200 + (k % 50), pid % 250 + 1);
        let host_ip = format!("{net}.1");
        let ns = Netns {
            name: name.clone(),
            host_ip: host_ip.clone(),
        };
        let ok = ip(&["netns", "add", &name])
            && ip(&["link", "add", &h, "type", "veth", "peer", "name", &n])
            && ip(&["link", "set", &n, "netns", &name])
            && ip(&["addr", "add", &format!("{host_ip}/24"), "dev", &h])
            && ip(&["link", "set", &h, "up"])
            && ip(&[
                "netns",
                "exec",
                &name,
                "ip",
                "addr",
                "add",
                &format!("{net}.2/24"),
                "dev",
                &n,
            ])
            && ip(&["netns", "exec", &name, "ip", "link", "set", &n, "up"])
            && ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        if !ok {
            let _ = ip(&["link", "del", &h]);
            return None; // dropping `ns` deletes the namespace
        }
        Some(ns)
    }

    /// `program` run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end and with it the host end.
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Where a client runs: inside a namespace whose only way out is the proxy, or (where no
/// namespace can be made) on the host with the proxy on 127.0.0.1.
pub struct Place {
    pub netns: Option<Netns>,
}

impl Place {
    pub fn new() -> Place {
        let netns = Netns::create();
        if netns.is_none() {
            eprintln!("cannot create a network namespace here; clients use the proxy without one");
        }
        Place { netns }
    }

    /// The address proxies listen on (the host end of the veth pair, or 127.0.0.1).
    pub fn proxy_ip(&self) -> String {
        match &self.netns {
            Some(ns) => ns.host_ip.clone(),
            None => "127.0.0.1".into(),
        }
    }

    /// The client network a proxy must allow (CIDR).
    pub fn client_net(&self) -> String {
        match &self.netns {
            Some(ns) => format!("{}/24", ns.host_ip),
            None => "127.0.0.1/32".into(),
        }
    }

    /// `program` where the clients run.
    pub fn command(&self, program: &str) -> Command {
        match &self.netns {
            Some(ns) => ns.command(program),
            None => Command::new(program),
        }
    }
}

/// A proxy process started by a test, with its log.
pub struct ProxyProc {
    pub proc: Proc,
    /// `ip:port` clients use.
    pub addr: String,
    pub log: PathBuf,
}

impl ProxyProc {
    /// `http://ip:port`, for `http_proxy`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `limit` for the log to contain `needle` (Squid writes a transaction's line
    /// when it ends).
    pub fn wait_log(&self, needle: &str, limit: Duration) -> bool {
        wait_until(limit, || self.log().contains(needle))
    }

    fn wait_listening(&self) {
        let addr = self.addr.clone();
        assert!(
            wait_until(Duration::from_secs(15), || std::net::TcpStream::connect(
                addr.as_str()
            )
            .is_ok()),
            "{} did not start listening on {}: {}\n{}",
            self.proc.name(),
            self.addr,
            self.proc.stderr(),
            self.log()
        );
    }
}

/// tinyproxy 1.11 (Debian) on `listen`, allowing `allow`, logging every request.
pub fn start_tinyproxy(dir: &Path, listen: &str, allow: &str) -> ProxyProc {
    ensure_tools();
    let bin = which("tinyproxy").expect("tinyproxy is installed");
    let port = free_port();
    let log = dir.join("tinyproxy.log");
    let conf = dir.join("tinyproxy.conf");
    std::fs::write(
        &conf,
        format!(
            "Port {port}\nListen {listen}\nAllow {allow}\nTimeout 60\nMaxClients 20\n\
             LogFile \"{}\"\nLogLevel Info\n",
            log.display()
        ),
    )
    .expect("write tinyproxy.conf");
    let mut cmd = Command::new(bin);
    cmd.arg("-d").arg("-c").arg(&conf);
    let proc = Proc::spawn(
        "tinyproxy",
        cmd,
        vec![(Duration::from_secs(120), Signal::Kill)],
    );
    let p = ProxyProc {
        proc,
        addr: format!("{listen}:{port}"),
        log,
    };
    p.wait_listening();
    p
}

/// Squid 5 (Debian) configured like a restrictive corporate proxy: plain HTTP only to
/// `Safe_ports`, `CONNECT` only to `SSL_ports`, clients only from `allow`, no cache.
///
/// The ports a corporate Squid allows are 80, 443 and 8080; the gateway under test cannot bind
/// those on a shared machine with tests running in parallel, so its one random HTTP port
/// `gateway_port` is added to both lists as the stand-in for "the gateway on 80/443/8080".
/// Every other port (the gateway's RTMP port included) stays refused, which the tests check.
pub fn start_squid(dir: &Path, listen: &str, allow: &str, gateway_port: u16) -> ProxyProc {
    ensure_tools();
    let bin = which("squid").expect("squid is installed");
    let port = free_port();
    let sq = dir.join("squid");
    std::fs::create_dir_all(&sq).expect("squid dir");
    // Squid started as root drops to `cache_effective_user` (Debian: `proxy`), which must be
    // able to reach and write its log and pid files in the temp dir.
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    let _ = std::fs::set_permissions(&sq, std::fs::Permissions::from_mode(0o777));
    let d = sq.display();
    let user = if is_root() {
        "cache_effective_user proxy\n"
    } else {
        ""
    };
    let conf = format!(
        "http_port {listen}:{port}\n\
         acl SSL_ports port 443 {gateway_port}\n\
         acl Safe_ports port 80 443 8080 {gateway_port}\n\
         acl CONNECT method CONNECT\n\
         acl clients src {allow}\n\
         http_access deny !Safe_ports\n\
         http_access deny CONNECT !SSL_ports\n\
         http_access allow clients\n\
         http_access deny all\n\
         cache deny all\n\
         pid_filename {d}/squid.pid\n\
         access_log stdio:{d}/access.log\n\
         cache_log {d}/cache.log\n\
         cache_store_log none\n\
         coredump_dir {d}\n\
         pinger_enable off\n\
         shutdown_lifetime 0 seconds\n\
         {user}"
    );
    let path = sq.join("squid.conf");
    std::fs::write(&path, conf).expect("write squid.conf");
    let mut cmd = Command::new(bin);
    // -N: foreground, no master/kid processes; killing this one process ends Squid.
    cmd.arg("-N").arg("-f").arg(&path);
    let proc = Proc::spawn("squid", cmd, vec![(Duration::from_secs(180), Signal::Kill)]);
    let p = ProxyProc {
        proc,
        addr: format!("{listen}:{port}"),
        log: sq.join("access.log"),
    };
    p.wait_listening();
    p
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
