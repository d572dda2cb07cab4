#![allow(dead_code)]
//! Shared helpers for wasmgate's end-to-end tests (include with `mod common;`).
//!
//! The helpers drive the external tools `ffmpeg`, `ffprobe` and `rtmpdump`
//! (installed by `scripts/install-test-deps.sh`) and only use std + `tempfile`.
//! Every process they start is bounded in time: it either ends by itself, is
//! signalled by a watchdog thread after a deadline, or is killed when its
//! [`Proc`] is dropped (also while a failing test unwinds).
//!
//! Client behaviour worth knowing (ffmpeg 5.1 / rtmpdump 2.4, checked against nginx-rtmp):
//! - ffmpeg play probes the input first: its output file appears ~2.5 s after connecting
//!   (then it catches up on the buffered packets, so `-t N` still ends after ~N s).
//! - A rejected publish prints `[rtmp @ 0x...] Server error: <description>` (the
//!   onStatus `description`, or `code` if there is none) and
//!   `<url>: Operation not permitted`, and exits 1.
//! - ffmpeg players exit at once (status 0) on onStatus `NetStream.Play.Stop` or
//!   `NetStream.Play.UnpublishNotify`; a bare StreamEOF user-control message is ignored
//!   and they only give up after ~2 x `-rw_timeout` ("Input/output error", still exit 0).
//! - rtmpdump live recordings exit 2 ("Download may be incomplete") whether stopped by
//!   a signal, by `NetStream.Play.Stop` or by the `-m` idle timeout; 3 = cannot connect.
//!   Its FLV keeps the server's timestamps (no rebasing to 0), unlike ffmpeg's output.
//! - ffmpeg exits 255 after SIGINT ("Exiting normally, received signal 2.").

pub mod nginx;

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// Tools the e2e tests need on PATH.
pub const REQUIRED_TOOLS: [&str; 7] = [
    "ffmpeg",
    "ffprobe",
    "rtmpdump",
    "curl",
    "tinyproxy",
    "squid",
    "nginx",
];

/// Seconds without any data before an ffmpeg RTMP connection gives up (`-rw_timeout`).
pub const RW_TIMEOUT_SECS: u64 = 10;

/// Seconds without any data before rtmpdump gives up (`-m`).
pub const RTMPDUMP_IDLE_TIMEOUT_SECS: u32 = 10;

/// A POSIX signal the helpers can send to a child process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT: ffmpeg finishes its output cleanly (exit code 255), rtmpdump closes its FLV (exit code 2).
    Int,
    /// SIGTERM.
    Term,
    /// SIGKILL.
    Kill,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Int => "INT",
            Signal::Term => "TERM",
            Signal::Kill => "KILL",
        }
    }
}

/// Sends `sig` to `pid` through the shell's `kill` builtin (std has no
/// portable signal API besides SIGKILL, and this keeps the crate free of `unsafe`).
fn send_signal(pid: u32, sig: Signal) {
    let _ = Command::new("sh")
        .args(["-c", &format!("kill -{} {pid}", sig.name())])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

// ---------------------------------------------------------------------------
// Paths, tools, locks
// ---------------------------------------------------------------------------

/// The crate root (`CARGO_MANIFEST_DIR`).
pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/test-fixtures` under the crate root (created on demand).
pub fn fixtures_dir() -> PathBuf {
    let dir = manifest_dir().join("target").join("test-fixtures");
    fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create fixture dir {}: {e}", dir.display()));
    dir
}

/// Full path of `tool` if an executable with that name is on PATH, or in /usr/sbin or /sbin
/// (where Debian puts nginx and squid, often not on a non-root PATH).
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(tool))
        .find(|p| {
            fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

fn missing_tools() -> Vec<&'static str> {
    let mut missing: Vec<&'static str> = REQUIRED_TOOLS
        .iter()
        .copied()
        .filter(|t| which(t).is_none())
        .collect();
    if !Path::new(nginx::RTMP_MODULE).is_file() {
        missing.push(nginx::RTMP_MODULE);
    }
    missing
}

/// Makes sure the tools of [`REQUIRED_TOOLS`] and the nginx-rtmp module are installed, running `scripts/install-test-deps.sh` (once per process, serialised across processes) if not; panics if they are still missing.
pub fn ensure_tools() {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = RESULT.get_or_init(|| {
        if missing_tools().is_empty() {
            return Ok(());
        }
        // Several test binaries may get here at once: one installs, the others wait.
        let _lock = FileLock::acquire(
            &fixtures_dir().join(".install-test-deps.lock"),
            Duration::from_secs(900),
            Duration::from_secs(900),
        );
        if missing_tools().is_empty() {
            return Ok(());
        }
        let script = manifest_dir().join("scripts").join("install-test-deps.sh");
        eprintln!(
            "[common] missing {:?}; running {}",
            missing_tools(),
            script.display()
        );
        let mut cmd = Command::new("bash");
        cmd.arg(&script);
        let out = run_capture(cmd, Duration::from_secs(900));
        eprintln!("{}{}", out.stdout, out.stderr);
        let still = missing_tools();
        if still.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "required test tools {still:?} are not on PATH and {} did not install them \
                 (exit: {:?}). Run it by hand (needs root or sudo + apt-get).\n--- stdout ---\n{}\n--- stderr ---\n{}",
                script.display(),
                out.status,
                out.stdout,
                out.stderr
            ))
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Installs what the browser tests drive (Debian's chromium, node, playwright-core in
/// `tests/dashboard/node_modules`, fonts) through `scripts/install-dashboard-deps.sh`, which is
/// idempotent and serialised with flock; panics with its output if it fails.
pub fn ensure_dashboard_deps() {
    let script = manifest_dir().join("scripts/install-dashboard-deps.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script);
    let out = run_capture(cmd, Duration::from_secs(900));
    assert!(
        out.success(),
        "{} failed:\n{}\n{}",
        script.display(),
        out.stdout,
        out.stderr
    );
}

/// Cross-process lock: a file created with `create_new` holding the owner's pid.
///
/// A lock whose owner process is gone, or which is older than `stale_after`,
/// is broken. Breaking can race (two waiters may both proceed); every user of
/// this lock is safe under that race (fixtures are renamed into place
/// atomically, apt has its own lock), the lock only avoids duplicate work.
struct FileLock {
    path: PathBuf,
}

impl FileLock {
    fn acquire(path: &Path, wait: Duration, stale_after: Duration) -> FileLock {
        let deadline = Instant::now() + wait;
        loop {
            match OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut f) => {
                    let _ = writeln!(f, "{}", std::process::id());
                    return FileLock {
                        path: path.to_path_buf(),
                    };
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    if Self::is_stale(path, stale_after) {
                        let _ = fs::remove_file(path);
                        continue;
                    }
                    if Instant::now() >= deadline {
                        panic!(
                            "timed out after {wait:?} waiting for lock {} (delete it if no test is running)",
                            path.display()
                        );
                    }
                    thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("cannot create lock file {}: {e}", path.display()),
            }
        }
    }

    fn is_stale(path: &Path, stale_after: Duration) -> bool {
        let age = fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or_default();
        if age > stale_after {
            return true;
        }
        match fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            // Owner died without cleaning up (e.g. test binary killed).
            Some(pid) => !Path::new(&format!("/proc/{pid}")).exists(),
            // Owner is between create_new and writing its pid; give it a moment.
            None => age > Duration::from_secs(5),
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// 12 s H.264 (baseline, yuv420p, 320x240, 25 fps, 1 s GOP, no B-frames) + AAC (44.1 kHz mono sine) FLV, generated once and cached at `target/test-fixtures/av-12s.flv`.
pub fn fixture_flv() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| generate_fixture("av-12s.flv", 12))
        .clone()
}

/// Same as [`fixture_flv`] but 60 s long (`target/test-fixtures/av-60s.flv`), for publishers that must last.
pub fn fixture_flv_long() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| generate_fixture("av-60s.flv", 60))
        .clone()
}

fn generate_fixture(name: &str, seconds: u32) -> PathBuf {
    ensure_tools();
    let dir = fixtures_dir();
    let path = dir.join(name);
    if file_len(&path) > 0 {
        return path;
    }
    let _lock = FileLock::acquire(
        &dir.join(format!(".{name}.lock")),
        Duration::from_secs(180),
        Duration::from_secs(180),
    );
    if file_len(&path) > 0 {
        return path; // another process generated it while we waited
    }
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-t", &seconds.to_string(), "-map", "0:v:0", "-map", "1:a:0"])
        .args([
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-preset",
            "veryfast",
        ])
        .args(["-pix_fmt", "yuv420p", "-g", "25", "-keyint_min", "25"])
        .args(["-sc_threshold", "0", "-bf", "0"])
        .args(["-c:a", "aac", "-b:a", "64k", "-ar", "44100", "-ac", "1"])
        .args(["-f", "flv"])
        .arg(&tmp);
    let out = run_capture(cmd, Duration::from_secs(180));
    if !out.success() || file_len(&tmp) == 0 {
        let _ = fs::remove_file(&tmp);
        panic!(
            "generating fixture {} failed (exit {:?}):\n{}",
            path.display(),
            out.status,
            out.stderr
        );
    }
    fs::rename(&tmp, &path).unwrap_or_else(|e| {
        let _ = fs::remove_file(&tmp);
        panic!("renaming fixture into {} failed: {e}", path.display())
    });
    path
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

struct Watchdog {
    done: Mutex<bool>,
    cv: Condvar,
    fired: AtomicBool,
}

impl Watchdog {
    fn lock(&self) -> MutexGuard<'_, bool> {
        self.done.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A spawned child process that is killed (SIGKILL) on Drop; stderr goes to a temp file.
pub struct Proc {
    name: String,
    cmdline: String,
    child: Child,
    stderr_file: tempfile::NamedTempFile,
    watchdog: Arc<Watchdog>,
}

impl Proc {
    /// Spawns `cmd` (stdin/stdout null, stderr captured); the watchdog sends each `(after, signal)` in turn unless the process has exited.
    pub fn spawn(name: &str, mut cmd: Command, deadlines: Vec<(Duration, Signal)>) -> Proc {
        let cmdline = format!("{cmd:?}");
        let stderr_file = tempfile::Builder::new()
            .prefix(&format!("{name}-stderr-"))
            .tempfile()
            .expect("cannot create temp file for stderr");
        let stderr = stderr_file
            .reopen()
            .expect("cannot reopen stderr temp file");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {name} ({cmdline}): {e}"));
        let watchdog = Arc::new(Watchdog {
            done: Mutex::new(false),
            cv: Condvar::new(),
            fired: AtomicBool::new(false),
        });
        let pid = child.id();
        let wd = Arc::clone(&watchdog);
        thread::Builder::new()
            .name(format!("{name}-watchdog"))
            .spawn(move || {
                let start = Instant::now();
                let mut done = wd.lock();
                for (after, sig) in deadlines {
                    loop {
                        if *done {
                            return;
                        }
                        let elapsed = start.elapsed();
                        if elapsed >= after {
                            break;
                        }
                        done = wd
                            .cv
                            .wait_timeout(done, after - elapsed)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                    // Still holding the lock: the child cannot be reaped concurrently,
                    // so `pid` still names our (possibly zombie) child.
                    wd.fired.store(true, Ordering::SeqCst);
                    send_signal(pid, sig);
                }
            })
            .expect("cannot spawn watchdog thread");
        Proc {
            name: name.to_string(),
            cmdline,
            child,
            stderr_file,
            watchdog,
        }
    }

    /// OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Short name given at spawn ("ffmpeg-publish", ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The command line, for diagnostics.
    pub fn cmdline(&self) -> &str {
        &self.cmdline
    }

    /// Everything the process wrote to stderr so far (lossy UTF-8, `\r` progress updates turned into `\n`).
    pub fn stderr(&self) -> String {
        let bytes = fs::read(self.stderr_file.path()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).replace('\r', "\n")
    }

    /// Exit status if the process has exited, without blocking.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        let mut done = self.watchdog.lock();
        match self.child.try_wait() {
            Ok(Some(status)) => {
                *done = true;
                self.watchdog.cv.notify_all();
                Some(status)
            }
            _ => None,
        }
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Waits up to `d` for the process to exit; `None` if it is still running.
    pub fn wait_timeout(&mut self, d: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + d;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `d` for exit and returns the status; panics with the stderr if it is still running.
    pub fn finish(&mut self, d: Duration) -> ExitStatus {
        match self.wait_timeout(d) {
            Some(status) => status,
            None => {
                self.kill();
                panic!(
                    "{} (pid {}) still running after {d:?}; killed it.\ncommand: {}\n--- stderr ---\n{}",
                    self.name,
                    self.pid(),
                    self.cmdline,
                    self.stderr()
                );
            }
        }
    }

    /// Sends `sig` if the process has not exited yet.
    pub fn signal(&mut self, sig: Signal) {
        // Holding the lock and checking try_wait() first guarantees the pid still
        // names our child (not yet reaped, so it cannot have been reused).
        let watchdog = Arc::clone(&self.watchdog);
        let mut done = watchdog.lock();
        match self.child.try_wait() {
            Ok(None) if !*done => send_signal(self.child.id(), sig),
            Ok(Some(_)) => {
                // Reaped just now: tell the watchdog the pid is no longer ours.
                *done = true;
                watchdog.cv.notify_all();
            }
            _ => {}
        }
    }

    /// Sends SIGINT (ffmpeg then finishes its output file cleanly; rtmpdump closes its FLV).
    pub fn interrupt(&mut self) {
        self.signal(Signal::Int);
    }

    /// SIGINT, wait up to `grace`, then SIGKILL; returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.interrupt();
        if let Some(status) = self.wait_timeout(grace) {
            return Some(status);
        }
        self.kill();
        self.try_status()
    }

    /// SIGKILL the process (if still running) and reap it.
    pub fn kill(&mut self) {
        let mut done = self.watchdog.lock();
        *done = true;
        self.watchdog.cv.notify_all();
        drop(done);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// True if the watchdog had to signal the process because it overran its deadline.
    pub fn timed_out(&self) -> bool {
        self.watchdog.fired.load(Ordering::SeqCst)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let was_running = self.try_status().is_none();
        self.kill();
        if thread::panicking() {
            // Help debug the failing test: show what the tool said.
            let err = self.stderr();
            let tail_start = err.len().saturating_sub(4000);
            let tail_start = (tail_start..err.len())
                .find(|i| err.is_char_boundary(*i))
                .unwrap_or(err.len());
            eprintln!(
                "--- {} (pid {}, {}) stderr tail ---\ncommand: {}\n{}\n--- end {} ---",
                self.name,
                self.pid(),
                if was_running {
                    "killed on drop"
                } else {
                    "had exited"
                },
                self.cmdline,
                &err[tail_start..],
                self.name
            );
        }
    }
}

/// Output of [`run_capture`].
pub struct Captured {
    /// `None` if the command had to be killed after its timeout.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Captured {
    /// Exited by itself with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// Runs `cmd` to completion (killed after `timeout`) capturing stdout and stderr.
pub fn run_capture(mut cmd: Command, timeout: Duration) -> Captured {
    let out = tempfile::tempfile().expect("cannot create temp file");
    let err = tempfile::tempfile().expect("cannot create temp file");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone().expect("dup")))
        .stderr(Stdio::from(err.try_clone().expect("dup")));
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let read = |mut f: fs::File| {
        use std::io::{Read, Seek, SeekFrom};
        let mut buf = Vec::new();
        let _ = f.seek(SeekFrom::Start(0));
        let _ = f.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    };
    Captured {
        status,
        stdout: read(out),
        stderr: read(err),
    }
}

// ---------------------------------------------------------------------------
// ffmpeg / rtmpdump clients
// ---------------------------------------------------------------------------

/// Publishes `file` in real time: `ffmpeg -hide_banner -loglevel info -re -i FILE -c copy -f flv URL`.
pub fn ffmpeg_publish(url: &str, file: &Path) -> Proc {
    ffmpeg_publish_with(url, file, &[])
}

/// Like [`ffmpeg_publish`] with `extra_args` as output options (after `-c copy -rw_timeout 10000000`, e.g. `["-t", "5"]`, `["-an"]`).
pub fn ffmpeg_publish_with(url: &str, file: &Path, extra_args: &[&str]) -> Proc {
    ensure_tools();
    let media_secs = ffprobe_duration(file).unwrap_or(120.0);
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "info", "-re", "-i"])
        .arg(file)
        .args(["-c", "copy"])
        .args(["-rw_timeout", &(RW_TIMEOUT_SECS * 1_000_000).to_string()])
        .args(extra_args)
        .args(["-f", "flv", url]);
    let hard = Duration::from_secs_f64(media_secs + 30.0);
    Proc::spawn("ffmpeg-publish", cmd, vec![(hard, Signal::Kill)])
}

/// Plays `url` for `seconds` of media into the FLV `out`: `ffmpeg -hide_banner -rw_timeout 10000000 -i URL -t SECONDS -c copy -flush_packets 1 -f flv -y OUT`.
pub fn ffmpeg_play(url: &str, out: &Path, seconds: f64) -> Proc {
    ffmpeg_play_with(url, out, seconds, &[])
}

/// Like [`ffmpeg_play`] with `extra_input_args` before `-i` (e.g. `["-rtmp_live", "live"]`; a later `-rw_timeout` overrides ours).
pub fn ffmpeg_play_with(url: &str, out: &Path, seconds: f64, extra_input_args: &[&str]) -> Proc {
    ensure_tools();
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "info"])
        .args(["-rw_timeout", &(RW_TIMEOUT_SECS * 1_000_000).to_string()])
        .args(extra_input_args)
        .args(["-i", url, "-t", &seconds.to_string()])
        // -flush_packets 1: without it ffmpeg 5.1 keeps the whole FLV in its
        // output buffer until exit, so tests could not watch the file grow.
        .args(["-c", "copy", "-flush_packets", "1", "-f", "flv", "-y"])
        .arg(out);
    // -t ends it once media flows, -rw_timeout when nothing flows; the watchdog
    // covers a server that trickles data forever.
    let soft = Duration::from_secs_f64(seconds + RW_TIMEOUT_SECS as f64 + 20.0);
    Proc::spawn(
        "ffmpeg-play",
        cmd,
        vec![
            (soft, Signal::Int),
            (soft + Duration::from_secs(5), Signal::Kill),
        ],
    )
}

/// Records `url` live into `out` with `rtmpdump -r URL -v -o OUT -B SECONDS -m 10`, stopped by SIGINT after `seconds` (+1 s) of wall time (SIGKILL 15 s later).
pub fn rtmpdump_play(url: &str, out: &Path, seconds: u32) -> Proc {
    rtmpdump_play_with(url, out, seconds, &[])
}

/// Like [`rtmpdump_play`] with `extra_args` appended (e.g. `["-V"]` for verbose logs, `["-y", "name"]`).
pub fn rtmpdump_play_with(url: &str, out: &Path, seconds: u32, extra_args: &[&str]) -> Proc {
    ensure_tools();
    let mut cmd = Command::new("rtmpdump");
    cmd.args(["-r", url, "-v", "-o"])
        .arg(out)
        .args(["-B", &seconds.to_string()])
        .args(["-m", &RTMPDUMP_IDLE_TIMEOUT_SECS.to_string()])
        .args(extra_args);
    // rtmpdump's -B is only a request to the server (play `duration` argument):
    // live servers such as nginx-rtmp ignore it, so the watchdog ends the
    // recording with SIGINT, after which rtmpdump closes a valid FLV (exit 2).
    let soft = Duration::from_secs(u64::from(seconds) + 1);
    Proc::spawn(
        "rtmpdump",
        cmd,
        vec![
            (soft, Signal::Int),
            (soft + Duration::from_secs(15), Signal::Kill),
        ],
    )
}

// ---------------------------------------------------------------------------
// ffprobe / verification
// ---------------------------------------------------------------------------

/// One demuxed packet as reported by ffprobe.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// "video" or "audio" (or whatever ffprobe reports, e.g. "data").
    pub stream_type: String,
    pub pts_time: Option<f64>,
    pub dts_time: Option<f64>,
    pub keyframe: bool,
    pub size: usize,
}

fn parse_compact_line(line: &str) -> Vec<(&str, &str)> {
    line.split('|')
        .filter_map(|field| field.split_once('='))
        .collect()
}

fn parse_time(v: &str) -> Option<f64> {
    v.trim().parse::<f64>().ok()
}

fn ffprobe(args: &[&str], file: &Path) -> String {
    ensure_tools();
    assert!(file.exists(), "ffprobe: {} does not exist", file.display());
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error"]).args(args).arg(file);
    let out = run_capture(cmd, Duration::from_secs(60));
    if !out.success() {
        panic!(
            "ffprobe {args:?} {} failed (exit {:?}):\n{}",
            file.display(),
            out.status,
            out.stderr
        );
    }
    out.stdout
}

/// All packets of `file` in file order (`ffprobe -show_entries packet=...`); panics if ffprobe fails.
pub fn ffprobe_packets(file: &Path) -> Vec<Packet> {
    let out = ffprobe(
        &[
            "-show_entries",
            "packet=codec_type,pts_time,dts_time,flags,size",
            "-of",
            "compact=p=0",
        ],
        file,
    );
    out.lines()
        .filter(|l| l.contains("codec_type="))
        .map(|line| {
            let mut p = Packet {
                stream_type: String::new(),
                pts_time: None,
                dts_time: None,
                keyframe: false,
                size: 0,
            };
            for (k, v) in parse_compact_line(line) {
                match k {
                    "codec_type" => p.stream_type = v.to_string(),
                    "pts_time" => p.pts_time = parse_time(v),
                    "dts_time" => p.dts_time = parse_time(v),
                    "flags" => p.keyframe = v.contains('K'),
                    "size" => p.size = v.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
            p
        })
        .collect()
}

/// `(codec_type, codec_name)` of every stream of `file`, e.g. `("video", "h264")`, `("audio", "aac")`.
pub fn ffprobe_streams(file: &Path) -> Vec<(String, String)> {
    let out = ffprobe(
        &[
            "-show_entries",
            "stream=codec_type,codec_name",
            "-of",
            "compact=p=0",
        ],
        file,
    );
    out.lines()
        .filter(|l| l.contains("codec_type="))
        .map(|line| {
            let fields = parse_compact_line(line);
            let get = |key: &str| {
                fields
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_default()
            };
            (get("codec_type"), get("codec_name"))
        })
        .collect()
}

/// Container duration in seconds as reported by ffprobe, if known.
pub fn ffprobe_duration(file: &Path) -> Option<f64> {
    let out = ffprobe(
        &["-show_entries", "format=duration", "-of", "csv=p=0"],
        file,
    );
    out.lines().next().and_then(parse_time)
}

/// Decodes every frame of `file` (`ffmpeg -v error -i FILE -f null -`); `Err(stderr)` if ffmpeg failed or reported any error.
pub fn decodes_cleanly(file: &Path) -> Result<(), String> {
    ensure_tools();
    if file_len(file) == 0 {
        return Err(format!("{} is missing or empty", file.display()));
    }
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"]);
    let out = run_capture(cmd, Duration::from_secs(120));
    if out.success() && out.stderr.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("exit {:?}: {}", out.status, out.stderr))
    }
}

// ---------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------

/// Polls `f` every 50 ms until it returns true (→ true) or `timeout` passes (→ false).
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Size of `p` in bytes, 0 if it does not exist.
pub fn file_len(p: impl AsRef<Path>) -> u64 {
    fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// A currently free TCP port on 127.0.0.1 (bind to :0 and release; tiny reuse race).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind 127.0.0.1:0")
}

/// Waits up to `timeout` until something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_until(timeout, || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    })
}

/// Asserts `path` holds at least 10 video and 10 audio packets that decode cleanly; returns them.
pub fn assert_av_file(path: &Path) -> Vec<Packet> {
    let packets = assert_video_packets(path, 10);
    let audio = packets.iter().filter(|p| p.stream_type == "audio").count();
    assert!(
        audio >= 10,
        "{}: only {audio} audio packets",
        path.display()
    );
    if let Err(e) = decodes_cleanly(path) {
        panic!("{} does not decode cleanly: {e}", path.display());
    }
    packets
}

/// True when the first video packet is a keyframe.
pub fn first_video_is_keyframe(packets: &[Packet]) -> bool {
    packets
        .iter()
        .find(|p| p.stream_type == "video")
        .is_some_and(|p| p.keyframe)
}

/// Asserts video and audio dts never go backwards.
/// Asserts that `path` holds at least `min` video packets; returns all its packets.
pub fn assert_video_packets(path: &Path, min: usize) -> Vec<Packet> {
    let packets = ffprobe_packets(path);
    let video = packets.iter().filter(|p| p.stream_type == "video").count();
    assert!(
        video >= min,
        "{}: only {video} video packets",
        path.display()
    );
    packets
}

/// Waits (up to 40 s each) for players to exit, then checks each one's file holds at least
/// `min` video packets.
pub fn finish_players(players: &mut [(&mut Proc, &Path)], min: usize) {
    for (p, _) in players.iter_mut() {
        p.finish(Duration::from_secs(40));
    }
    for (_, out) in players.iter() {
        assert_video_packets(out, min);
    }
}

pub fn assert_monotonic(packets: &[Packet]) {
    for kind in ["video", "audio"] {
        let mut last = f64::MIN;
        for p in packets.iter().filter(|p| p.stream_type == kind) {
            if let Some(t) = p.dts_time {
                assert!(t >= last, "{kind} dts went back from {last} to {t}");
                last = t;
            }
        }
    }
}

/// The value of one series (its name with its labels, exactly) in Prometheus text.
pub fn prometheus_value(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}
