//! The `wasmgate` command: parses the CLI, loads the config (embedded default when none is
//! given), starts the listeners and runs until SIGINT/SIGTERM.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;
use wasmgate::config::{Config, ConfigError};
use wasmgate::gateway::ConfigSource;
use wasmgate::server::Server;

/// RTMP media gateway: live publish/play on 1935, Wasm apps, HTTP tunnelling, admin on 1111.
#[derive(Debug, Clone, Parser)]
#[command(name = "wasmgate", version, about)]
struct Cli {
    /// TOML configuration file; every field has a default (see README "Configuration").
    /// Re-read on SIGHUP (flags given here are applied on top again).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// RTMP listen address; repeat for several. Replaces the config's `rtmp.listen`.
    #[arg(long = "rtmp", value_name = "ADDR")]
    rtmp: Vec<SocketAddr>,
    /// RTMPT (HTTP tunnel) listen address; repeat for several. Replaces the config's
    /// `http.listen` (default 0.0.0.0:80, skipped with a warning when it cannot be bound).
    #[arg(long = "http", value_name = "ADDR")]
    http: Vec<SocketAddr>,
    /// PEM certificate chain enabling rtmps:// and rtmpts:// on every listener (with --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert. Both files are re-read on SIGHUP.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Admin listener address (JSON API, /metrics, dashboard). Replaces `admin.listen`.
    #[arg(long = "admin", value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// Turn the admin listener off.
    #[arg(long, conflicts_with = "admin")]
    no_admin: bool,
    /// Network allowed to reach the admin listener (CIDR or address); repeat for several.
    /// Replaces `admin.allow`.
    #[arg(long = "admin-allow", value_name = "CIDR")]
    admin_allow: Vec<String>,
    /// Bearer token for the admin API. Visible in `ps`: prefer --admin-token-file or the
    /// WASMGATE_ADMIN_TOKEN environment variable.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "WASMGATE_ADMIN_TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,
    /// File holding the admin bearer token (wins over --admin-token and the variable).
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// Apps folder: `DIR/<app>/app.wasm` + `app.toml`. Replaces the config's `apps.dir`.
    #[arg(long = "apps", value_name = "DIR")]
    apps: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = match effective_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wasmgate: config error: {e}");
            return ExitCode::from(2);
        }
    };
    // An unreadable token file is a configuration error too, found before anything starts.
    if config.admin.enabled
        && !cli.print_config
        && let Err(e) = config.admin.resolve_token()
    {
        eprintln!("wasmgate: config error: {e}");
        return ExitCode::from(2);
    }
    if cli.print_config {
        // Never print the secret itself.
        if config.admin.token.is_some() {
            config.admin.token = Some("<redacted>".into());
        }
        match toml::to_string_pretty(&config) {
            Ok(text) => {
                print!("{text}");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("wasmgate: cannot print config: {e}");
                return ExitCode::FAILURE;
            }
        }
    }

    let log = Logging::init(&config.log_level);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wasmgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let server = match Server::start(config).await {
            Ok(s) => s,
            Err(e) => {
                error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        info!(version = env!("CARGO_PKG_VERSION"), "wasmgate running");
        if let Some(path) = cli.config.clone() {
            // A reload goes through the same merge as start-up, flags on top of the file.
            let cli = cli.clone();
            let source = ConfigSource::new(path, move || effective_config(&cli)).on_apply(
                move |config, applied| {
                    if applied.iter().any(|k| k == "log_level") {
                        log.apply(&config.log_level);
                    }
                },
            );
            server.reloader.set_source(source);
        }
        spawn_reload_on_sighup(server.reloader.clone());
        wait_for_signal().await;
        // Read now, not at start: a reload may have changed it.
        let grace = Duration::from_secs(server.core.config().shutdown_timeout_secs);
        info!(?grace, "shutting down: no new connections, telling clients");
        let left = server.shutdown(grace).await;
        if left > 0 {
            info!(left, "grace period over; closing the remaining connections");
        } else {
            info!("all connections closed");
        }
        ExitCode::SUCCESS
    })
}

/// The log filter: `RUST_LOG` when set, else the config's `log_level`, behind a reload handle
/// so a config reload can change it without restarting.
struct Logging {
    handle: tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>,
    /// `RUST_LOG` was set: it wins over the file, now and on reload.
    from_env: bool,
}

impl Logging {
    fn init(config_level: &str) -> Logging {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let env = std::env::var(EnvFilter::DEFAULT_ENV)
            .ok()
            .filter(|v| !v.trim().is_empty());
        let from_env = env.as_deref().and_then(|v| EnvFilter::try_new(v).ok());
        let from_file = from_env.is_none();
        // `log_level` was validated with the config; "info" is only a last resort.
        let filter = from_env
            .or_else(|| EnvFilter::try_new(config_level).ok())
            .unwrap_or_else(|| EnvFilter::new("info"));
        let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
        tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .init();
        if env.is_some() && from_file {
            warn!("RUST_LOG is not a valid log filter; using log_level {config_level:?}");
        }
        Logging {
            handle,
            from_env: !from_file,
        }
    }

    /// A reload changed `log_level`.
    fn apply(&self, level: &str) {
        if self.from_env {
            warn!("log_level changed to {level:?}, but RUST_LOG is set and wins");
            return;
        }
        match EnvFilter::try_new(level) {
            Ok(filter) => match self.handle.reload(filter) {
                Ok(()) => info!("log filter is now {level:?}"),
                Err(e) => error!("cannot change the log filter: {e}"),
            },
            Err(e) => error!("log_level {level:?}: {e}"),
        }
    }
}

/// The configuration the process runs on: the `--config` file (or the embedded default) with
/// the command-line flags on top, validated. Start-up and every reload go through here.
fn effective_config(cli: &Cli) -> Result<Config, ConfigError> {
    let mut config = match &cli.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if !cli.rtmp.is_empty() {
        config.rtmp.listen = cli.rtmp.clone();
    }
    if let Some(dir) = &cli.apps {
        config.apps.dir = Some(dir.clone());
    }
    if !cli.http.is_empty() {
        config.http.listen = cli.http.clone();
    }
    if cli.tls_cert.is_some() {
        config.tls.cert = cli.tls_cert.clone();
        config.tls.key = cli.tls_key.clone();
    }
    if let Some(addr) = cli.admin {
        config.admin.listen = addr;
        config.admin.enabled = true;
    }
    if cli.no_admin {
        config.admin.enabled = false;
    }
    if !cli.admin_allow.is_empty() {
        config.admin.allow = cli.admin_allow.clone();
    }
    if let Some(t) = &cli.admin_token {
        config.admin.token = Some(t.clone());
        config.admin.token_file = None;
    }
    if let Some(f) = &cli.admin_token_file {
        config.admin.token_file = Some(f.clone());
        config.admin.token = None;
    }
    // Flags go through the same checks as the file, so a bad --admin-allow names its key.
    config.validate()?;
    Ok(config)
}

/// SIGHUP re-reads the config file (applying what can change live) and the TLS certificate
/// and key; sessions already running are untouched. A bad file changes nothing.
fn spawn_reload_on_sighup(reloader: std::sync::Arc<wasmgate::gateway::Reloader>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                info!("SIGHUP: reloading the configuration and TLS certificate");
                let reloader = reloader.clone();
                // File reads and certificate parsing block; keep them off the workers.
                // Errors were logged by the reload itself, naming the key.
                if let Err(e) = tokio::task::spawn_blocking(move || reloader.reload()).await {
                    error!("config reload task failed: {e}");
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = reloader;
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
