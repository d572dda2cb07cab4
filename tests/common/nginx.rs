//! nginx started by a test (reverse proxy, or nginx-rtmp as relay origin/target): its own prefix,
//! config, pid file, logs and temp dirs in a temp directory, in the foreground, killed on drop.
//!
//! Debian's nginx-light and libnginx-mod-rtmp come from `scripts/install-test-deps.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{Proc, Signal, ensure_tools, wait_until};

/// The nginx-rtmp module as Debian installs it.
pub const RTMP_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

/// A running nginx.
pub struct Nginx {
    pub proc: Proc,
    pub dir: PathBuf,
}

impl Nginx {
    /// Starts nginx with `body` (its `http { }` and/or `rtmp { }` blocks) after the
    /// boilerplate: foreground, one worker, logs in `dir`, and the RTMP module loaded when
    /// `body` has an `rtmp` block. `ports` are the ports `body` listens on; returns once
    /// each accepts connections. In the `http` block, `{temp}` is replaced by the temp dirs'
    /// directives (the Debian build's default paths live under /var/lib/nginx).
    pub fn start(dir: &Path, body: &str, ports: &[u16]) -> Nginx {
        ensure_tools();
        let dir = dir.join("nginx");
        std::fs::create_dir_all(dir.join("logs")).expect("nginx dir");
        let d = dir.display();
        let temp = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
            .iter()
            .map(|t| format!("{t}_temp_path {d}/{t}_temp;"))
            .collect::<Vec<_>>()
            .join("\n    ");
        let module = if body.contains("rtmp {") {
            format!("load_module {RTMP_MODULE};\n")
        } else {
            String::new()
        };
        let conf = format!(
            "{module}daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/logs/error.log info;\nevents {{ worker_connections 1024; }}\n{}",
            body.replace("{temp}", &temp)
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, &conf).expect("write nginx.conf");
        let mut cmd = Command::new(super::which("nginx").expect("nginx is installed"));
        cmd.arg("-p").arg(&dir).arg("-c").arg(&path);
        let proc = Proc::spawn("nginx", cmd, vec![(Duration::from_secs(600), Signal::Kill)]);
        let nginx = Nginx { proc, dir };
        for &port in ports {
            assert!(
                super::wait_for_port(port, Duration::from_secs(10)),
                "nginx is not listening on {port}: {}\n{}\nconfig:\n{conf}",
                nginx.proc.stderr(),
                nginx.error_log()
            );
        }
        nginx
    }

    /// The error log so far (nginx reports config and upstream problems there).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("logs/error.log")).unwrap_or_default()
    }

    /// Stops nginx and waits until it is gone, so a restart can bind the same ports.
    pub fn stop(mut self) {
        self.terminate();
    }

    /// SIGTERM, which makes the master stop its workers too (a SIGKILLed master leaves its
    /// worker running, serving the old connections and holding the ports); SIGKILL after 5 s.
    fn terminate(&mut self) {
        self.proc.signal(Signal::Term);
        if !wait_until(Duration::from_secs(5), || !self.proc.is_running()) {
            self.proc.kill();
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.terminate();
    }
}
