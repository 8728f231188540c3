//! `underpassd`, the privileged Underpass helper.
//!
//! It is the only part of Underpass that runs as root. It owns the tunnel adapter, the routes
//! and the WireGuard data plane, and it takes orders only from authenticated local clients over
//! the IPC contract in `underpass-proto`: requests are data, validated field by field, and
//! nothing a client sends ever becomes a command line.
//!
//! Layout: `ipc` (listener, peer check, dispatch) → `daemon` (the one task that changes the
//! system, driven by the I/O-free `state` machine, remembering the user's `intent` across
//! crashes) → `tunnel` (data plane), `routes`, `firewall` (the kill switch) and `dns`, each one
//! trait with one file per OS.

// On Windows the OS backends are still stubs that refuse to run, and some shared parts serve
// only Linux (the resolv.conf path, the fwmark, the self-tests' packet capture), so only the
// Linux build is held to dead-code warnings.
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

mod daemon;
mod dns;
mod firewall;
mod intent;
#[cfg(unix)]
mod ipc;
mod logring;
mod routes;
mod selftest;
mod state;
mod tunnel;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use underpass_proto::{Status, DEFAULT_GROUP, DEFAULT_SOCKET};

use daemon::{Command, Daemon, Settings};
use logring::LogRing;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[derive(Parser, Debug)]
#[command(
    name = "underpassd",
    version,
    about = "The privileged Underpass helper"
)]
struct Args {
    /// Where to listen for clients.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Root-only directory for the helper's persistent state.
    #[arg(long, default_value = "/var/lib/underpass")]
    state_dir: PathBuf,
    /// Members of this group may use the helper (besides root).
    #[arg(long, default_value = DEFAULT_GROUP)]
    group: String,
    /// Give up on a connect when no handshake completes within this many seconds.
    #[arg(long, default_value_t = 15)]
    handshake_timeout: u64,
    /// Tunnel interfaces are named PREFIX0, PREFIX1, ...
    #[arg(long, default_value = tunnel::DEFAULT_INTERFACE_PREFIX)]
    interface_prefix: String,
    /// The resolver configuration to point at the tunnel's DNS while connected.
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
}

fn main() -> Result<()> {
    let log = LogRing::default();
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(log.clone()),
        )
        .init();
    let args = Args::parse();
    if args.interface_prefix.is_empty()
        || args.interface_prefix.len() > 12
        || !args
            .interface_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        anyhow::bail!("--interface-prefix must be 1 to 12 letters, digits or dashes");
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run(args, log))
}

async fn run(args: Args, log: LogRing) -> Result<()> {
    prepare_state_dir(&args.state_dir)?;
    let (status_tx, status_rx) = watch::channel(Status::disconnected());
    let (events, _) = broadcast::channel(64);
    let (commands, commands_rx) = mpsc::channel(16);
    let daemon = Daemon::new(
        Settings {
            handshake_timeout: Duration::from_secs(args.handshake_timeout),
            interface_prefix: args.interface_prefix.clone(),
            state_dir: args.state_dir.clone(),
            resolv_conf: args.resolv_conf.clone(),
        },
        status_tx,
        events.clone(),
    )
    .await?;
    let daemon_task = tokio::spawn(daemon.run(commands_rx));
    let server = listen(&args, commands.clone(), status_rx, events, log)?;
    tracing::info!(socket = %args.socket.display(), "underpassd ready");
    wait_for_signal().await?;
    tracing::info!("shutting down");
    server.abort();
    let (tx, rx) = oneshot::channel();
    if commands.send(Command::Shutdown(tx)).await.is_ok() {
        let _ = rx.await;
    }
    let _ = daemon_task.await;
    let _ = std::fs::remove_file(&args.socket);
    Ok(())
}

#[cfg(unix)]
fn listen(
    args: &Args,
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<Status>,
    events: broadcast::Sender<underpass_proto::Event>,
    log: LogRing,
) -> Result<tokio::task::JoinHandle<()>> {
    let authorizer = ipc::peer::Authorizer::new(&args.group);
    let listener = ipc::bind(&args.socket, &authorizer)?;
    let shared = std::sync::Arc::new(ipc::Shared {
        commands,
        status,
        events,
        authorizer,
        log,
    });
    Ok(tokio::spawn(ipc::serve(
        listener,
        shared,
        args.socket.clone(),
    )))
}

#[cfg(not(unix))]
fn listen(
    _args: &Args,
    _commands: mpsc::Sender<Command>,
    _status: watch::Receiver<Status>,
    _events: broadcast::Sender<underpass_proto::Event>,
    _log: LogRing,
) -> Result<tokio::task::JoinHandle<()>> {
    anyhow::bail!("the named-pipe IPC transport is not supported on this OS yet")
}

#[cfg(unix)]
async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signal() -> Result<()> {
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")
}

fn prepare_state_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating state dir {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} root-only", dir.display()))?;
    }
    Ok(())
}
