//! RTMPS and RTMPTS with a self-signed certificate generated at test time (rcgen), played by
//! ffmpeg on the RTMP port and on an HTTP port; certificate reload without dropping sessions;
//! and a player whose only way out is an HTTP proxy (tinyproxy, inside a network namespace
//! when this machine lets us create one).

mod common;
mod gateway;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use gateway::{Gateway, write_cert};
use wasmgate::config::Config;

fn tls_gateway(dir: &Path) -> Gateway {
    let (cert, key) = write_cert(dir);
    let mut config = Config::default();
    config.tls.cert = Some(cert);
    config.tls.key = Some(key);
    Gateway::start_with(config)
}

fn admin_post(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn rtmps_publish_and_rtmps_rtmpts_players_on_both_ports_survive_a_certificate_reload() {
    ensure_tools();
    let dir = tempfile::tempdir().unwrap();
    let gw = tls_gateway(dir.path());
    // ffmpeg 5.1 does not verify certificates unless -tls_verify 1: self-signed is accepted.
    let mut publisher = ffmpeg_publish(
        &format!("rtmps://{}/live/secure", gw.addr),
        &fixture_flv_long(),
    );
    assert!(
        wait_until(Duration::from_secs(10), || gw.publishing() == 1),
        "rtmps publisher never started: {}",
        publisher.stderr()
    );
    assert_eq!(gw.transports(), ["rtmps"]);
    let outs: Vec<PathBuf> = (0..3)
        .map(|i| dir.path().join(format!("p{i}.flv")))
        .collect();
    let mut players = [
        ffmpeg_play(&format!("rtmps://{}/live/secure", gw.addr), &outs[0], 3.0),
        ffmpeg_play(&format!("rtmpts://{}/live/secure", gw.addr), &outs[1], 3.0),
        ffmpeg_play(
            &format!("rtmpts://{}/live/secure", gw.http_addr()),
            &outs[2],
            3.0,
        ),
    ];
    // librtmp (rtmpdump) speaks both too, through GnuTLS.
    let rd_outs = [dir.path().join("rd-s.flv"), dir.path().join("rd-ts.flv")];
    let mut rd = [
        rtmpdump_play(&format!("rtmps://{}/live/secure", gw.addr), &rd_outs[0], 4),
        rtmpdump_play(
            &format!("rtmpts://{}/live/secure", gw.http_addr()),
            &rd_outs[1],
            4,
        ),
    ];
    assert!(
        wait_until(Duration::from_secs(10), || gw.transports().len() == 6),
        "players did not all connect: {:?}",
        gw.transports()
    );
    assert_eq!(
        gw.transports(),
        ["rtmps", "rtmps", "rtmps", "rtmpts", "rtmpts", "rtmpts"]
    );
    // A new certificate mid-stream: running sessions keep going, new ones get the new one.
    write_cert(dir.path());
    gw.server.tls.reload().expect("reload");
    // The same through the admin API.
    let answer = admin_post(gw.admin_addr(), "/api/v1/tls/reload");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"reloaded\":true"), "{answer}");
    for (p, out) in players.iter_mut().zip(&outs) {
        let s = p.finish(Duration::from_secs(30));
        assert!(s.success(), "player failed: {}", p.stderr());
        assert_av_file(out);
    }
    for (p, out) in rd.iter_mut().zip(&rd_outs) {
        p.finish(Duration::from_secs(30));
        assert_av_file(out);
    }
    let after = dir.path().join("after.flv");
    let mut p = ffmpeg_play(&format!("rtmps://{}/live/secure", gw.addr), &after, 2.0);
    let s = p.finish(Duration::from_secs(30));
    assert!(s.success(), "player after reload failed: {}", p.stderr());
    assert_av_file(&after);
    assert!(
        publisher.is_running(),
        "publisher dropped by the reload: {}",
        publisher.stderr()
    );
}

#[test]
fn tls_without_a_certificate_is_closed_and_rtmp_still_works() {
    ensure_tools();
    let gw = Gateway::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.flv");
    let mut p = ffmpeg_play(&format!("rtmps://{}/live/none", gw.addr), &out, 1.0);
    let s = p.finish(Duration::from_secs(30));
    assert!(!s.success(), "rtmps without a certificate should fail");
    let _publisher = ffmpeg_publish(&gw.url("live/none"), &fixture_flv_long());
    assert!(wait_until(Duration::from_secs(10), || gw.publishing() == 1));
    let answer = admin_post(gw.admin_addr(), "/api/v1/tls/reload");
    assert!(answer.starts_with("HTTP/1.1 409"), "{answer}");
}
// ---------------------------------------------------------------------------
// Through an HTTP proxy
// ---------------------------------------------------------------------------

fn ensure_tinyproxy() -> PathBuf {
    if let Some(p) = which("tinyproxy") {
        return p;
    }
    let script = manifest_dir().join("scripts/install-test-deps.sh");
    let status = Command::new(&script)
        .status()
        .expect("run install-test-deps.sh");
    assert!(status.success(), "install-test-deps.sh failed");
    which("tinyproxy").expect("tinyproxy still missing after install-test-deps.sh")
}

/// A network namespace joined to the host by one veth pair: the host side is the only address
/// the namespace can reach. Removed on drop.
struct Netns {
    name: String,
    host_ip: String,
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
    fn create() -> Option<Netns> {
        let pid = std::process::id();
        let name = format!("wgt{pid}");
        let (h, n) = (
            format!("wg{}h", pid % 1_000_000),
            format!("wg{}n", pid % 1_000_000),
        );
        let net = format!("10.213.{}", pid % 250 + 1);
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

    fn command(&self, program: &str) -> Command {
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

fn start_tinyproxy(dir: &Path, listen: &str, allow: &str) -> (Proc, u16, PathBuf) {
    let bin = ensure_tinyproxy();
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
    .unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-d").arg("-c").arg(&conf);
    let proc = Proc::spawn(
        "tinyproxy",
        cmd,
        vec![(Duration::from_secs(120), Signal::Kill)],
    );
    (proc, port, log)
}

fn ffmpeg_play_cmd(mut cmd: Command, url: &str, out: &Path, seconds: f64) -> Command {
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "info"])
        // The tunnel's inner http/tls layers only go through a proxy when it is whitelisted.
        .args([
            "-protocol_whitelist",
            "rtmpts,ffrtmphttp,https,http,tcp,tls,httpproxy",
        ])
        .args([
            "-rw_timeout",
            "10000000",
            "-i",
            url,
            "-t",
            &seconds.to_string(),
        ])
        .args(["-c", "copy", "-flush_packets", "1", "-f", "flv", "-y"])
        .arg(out);
    cmd
}

#[test]
fn a_player_that_can_only_reach_an_http_proxy_gets_the_stream() {
    ensure_tools();
    let dir = tempfile::tempdir().unwrap();
    let gw = tls_gateway(dir.path());
    let _publisher = ffmpeg_publish(&gw.url("live/proxied"), &fixture_flv_long());
    assert!(wait_until(Duration::from_secs(10), || gw.publishing() == 1));
    // The gateway listens on the host's 127.0.0.1; inside the namespace 127.0.0.1 is the
    // namespace's own loopback, so only the proxy (in the host namespace) can reach it.
    // rtmpts: ffmpeg tunnels TLS through the proxy with CONNECT, keeping one connection for
    // all requests. Plain rtmpt through tinyproxy cannot work with ffmpeg 5.1: tinyproxy
    // closes the client connection after every request without saying so, and ffmpeg's
    // rtmphttp never reconnects (see README "Through HTTP proxies").
    let url = format!("rtmpts://{}/live/proxied", gw.http_addr());
    let out = dir.path().join("proxied.flv");
    let netns = Netns::create();
    if netns.is_none() {
        eprintln!("cannot create a network namespace here; the player uses the proxy without one");
    }
    let (listen, allow) = match &netns {
        Some(ns) => (ns.host_ip.clone(), format!("{}/24", ns.host_ip)),
        None => ("127.0.0.1".to_string(), "127.0.0.1".to_string()),
    };
    let (proxy, port, log) = start_tinyproxy(dir.path(), &listen, &allow);
    let proxy_addr = format!("{listen}:{port}");
    assert!(
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect(
            proxy_addr.as_str()
        )
        .is_ok()),
        "tinyproxy did not start: {}",
        proxy.stderr()
    );
    let base = match &netns {
        Some(ns) => ns.command("ffmpeg"),
        None => Command::new("ffmpeg"),
    };
    if let Some(ns) = &netns {
        // Without the proxy the namespace cannot reach the gateway at all.
        let direct = ns.command("ffmpeg");
        let direct = ffmpeg_play_cmd(direct, &url, &dir.path().join("direct.flv"), 1.0);
        let mut d = Proc::spawn(
            "ffmpeg-direct",
            direct,
            vec![(Duration::from_secs(20), Signal::Kill)],
        );
        let s = d.finish(Duration::from_secs(25));
        assert!(
            !s.success(),
            "the namespace reached the gateway without the proxy"
        );
    }
    let mut cmd = ffmpeg_play_cmd(base, &url, &out, 3.0);
    cmd.env("http_proxy", format!("http://{proxy_addr}"))
        .env_remove("no_proxy")
        .env_remove("NO_PROXY");
    let mut player = Proc::spawn(
        "ffmpeg-proxied",
        cmd,
        vec![(Duration::from_secs(40), Signal::Kill)],
    );
    let s = player.finish(Duration::from_secs(45));
    assert!(
        s.success(),
        "proxied rtmpts player failed: {}",
        player.stderr()
    );
    assert_av_file(&out);
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    let gw_port = gw.http_addr().port();
    assert!(
        log.contains(&format!("CONNECT 127.0.0.1:{gw_port}")),
        "tinyproxy never carried the tunnel:\n{log}"
    );
}
