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

// Some shared parts serve only Linux (the resolv.conf path, the fwmark, the self-tests' packet
// capture), so the Linux and Windows builds are held to dead-code warnings and macOS is not.
#![cfg_attr(target_os = "macos", allow(dead_code))]

mod daemon;
mod dns;
mod doctor;
mod failover;
mod firewall;
mod health;
mod intent;
mod ipc;
mod limits;
mod logring;
mod policy;
mod power;
mod routes;
mod selftest;
#[cfg(windows)]
mod service;
mod state;
mod timing;
mod tunnel;
#[cfg(windows)]
mod winutil;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use underpass_proto::{Status, DEFAULT_GROUP, DEFAULT_SOCKET};

use daemon::{Command, Daemon, Os, Settings};
use logring::LogRing;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[derive(Parser, Debug, Clone)]
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
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Members of this group may use the helper (besides root).
    #[arg(long, default_value = DEFAULT_GROUP)]
    group: String,
    /// Admit only root and the group, not the user of the active local login session (for
    /// machines whose policy wants group membership for everyone).
    #[arg(long)]
    no_active_session: bool,
    /// Give up on a connect when no handshake completes within this many seconds.
    #[arg(long, default_value_t = 15)]
    handshake_timeout: u64,
    /// Tunnel interfaces are named PREFIX0, PREFIX1, ...
    #[arg(long, default_value = tunnel::DEFAULT_INTERFACE_PREFIX)]
    interface_prefix: String,
    /// The resolver configuration to point at the tunnel's DNS while connected.
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// Run under the Windows service control manager (how the MSI installs it).
    #[cfg(windows)]
    #[arg(long)]
    service: bool,
    /// Remove everything Underpass leaves on the system (WFP filters, sublayer and provider,
    /// NRPT rules, the state dir), then exit: the uninstaller runs this.
    #[cfg(windows)]
    #[arg(long)]
    uninstall_cleanup: bool,
    /// IT's root-owned directory: pinned organization keys (trusted-keys/*.pub) and the
    /// optional managed policy (policy.json) the whole machine obeys.
    #[arg(long, default_value = underpass_trust::system::DEFAULT_SYSTEM_DIR)]
    system_dir: PathBuf,
    /// Follow logind's sleep signals (PrepareForSleep) on this D-Bus address instead of the
    /// system bus. For tests with a stand-in on a private bus.
    #[cfg(target_os = "linux")]
    #[arg(long, value_name = "ADDRESS")]
    logind_bus: Option<String>,
}

#[cfg(unix)]
const DEFAULT_STATE_DIR: &str = "/var/lib/underpass";
#[cfg(windows)]
const DEFAULT_STATE_DIR: &str = r"C:\ProgramData\Underpass\state";

fn main() -> Result<()> {
    abort_on_panic();
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
    #[cfg(windows)]
    {
        if args.uninstall_cleanup {
            return service::uninstall_cleanup(&args.state_dir);
        }
        if args.service {
            return service::run(args, log);
        }
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run(args, log, notify_ready, wait_for_signal()))
}

/// A panic anywhere ends the process, after the usual message: a helper whose actor or
/// listener died would go on answering but no longer act, and the service manager would never
/// restart it. Restarted, the helper reconciles from its persisted intent, closed (the kill
/// switch's table outlives the process). Unit tests do not run `main`, so they unwind as usual.
fn abort_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        std::process::abort();
    }));
}

/// Runs the helper until `stop` completes (a signal, or the service control manager).
/// `announce_ready` tells the service manager (systemd, the SCM) that the helper is up.
async fn run(
    args: Args,
    log: LogRing,
    announce_ready: impl FnOnce(),
    stop: impl std::future::Future<Output = Result<()>>,
) -> Result<()> {
    prepare_state_dir(&args.state_dir)?;
    // Windows: the pipe is claimed first, as its first instance, so a second helper stops here,
    // before it could remove the adapter of the one already running; then the adapter a crashed
    // helper left goes, before a reconnect wants the GUID.
    #[cfg(windows)]
    let pipe = ipc::bind(&args.socket)?;
    #[cfg(windows)]
    match tunnel::remove_orphaned_adapters() {
        Ok(0) => {}
        Ok(n) => tracing::info!(adapters = n, "removed the adapters an earlier helper left"),
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "removing orphaned adapters"),
    }
    let (status_tx, status_rx) = watch::channel(Status::disconnected());
    let (events, _) = broadcast::channel(64);
    let (commands, commands_rx) = mpsc::channel(16);
    let daemon = Daemon::<Os>::new(
        Settings {
            handshake_timeout: Duration::from_secs(args.handshake_timeout),
            interface_prefix: args.interface_prefix.clone(),
            state_dir: args.state_dir.clone(),
            resolv_conf: args.resolv_conf.clone(),
            system_dir: args.system_dir.clone(),
            #[cfg(target_os = "linux")]
            logind_bus: args.logind_bus.clone(),
        },
        status_tx,
        events.clone(),
    )
    .await?;
    let (ready, reconciled) = oneshot::channel();
    let daemon_task = tokio::spawn(daemon.run(commands_rx, ready));
    // The kill switch of a lockdown or a wanted tunnel is in force before anyone is told that
    // the helper is up (a wanted tunnel then comes up in the background): with Type=notify,
    // systemd holds network-pre.target until then.
    let _ = reconciled.await;
    #[cfg(unix)]
    let server = listen(&args, commands.clone(), status_rx, events, log)?;
    #[cfg(windows)]
    let server = listen(pipe, &args, commands.clone(), status_rx, events, log);
    tracing::info!(socket = %args.socket.display(), "underpassd ready");
    announce_ready();
    stop.await?;
    tracing::info!("shutting down");
    server.abort();
    let (tx, rx) = oneshot::channel();
    if commands.send(Command::Shutdown(tx)).await.is_ok() {
        let _ = rx.await;
    }
    let _ = daemon_task.await;
    #[cfg(unix)]
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
    // The user of the active local session is admitted without the group unless the flag or
    // the machine's managed policy says no (read at start; a broken system dir says no).
    let managed_allows = underpass_trust::system::SystemDir::load(&args.system_dir)
        .is_ok_and(|s| s.active_session_admission());
    let authorizer =
        ipc::peer::Authorizer::new(&args.group, !args.no_active_session && managed_allows);
    let listener = ipc::bind(&args.socket, &authorizer)?;
    let shared = std::sync::Arc::new(ipc::Shared {
        commands,
        status,
        events,
        authorizer,
        log,
        subscriptions: ipc::subscription_slots(),
    });
    Ok(tokio::spawn(ipc::serve(
        listener,
        shared,
        args.socket.clone(),
    )))
}

#[cfg(windows)]
fn listen(
    server: tokio::net::windows::named_pipe::NamedPipeServer,
    args: &Args,
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<Status>,
    events: broadcast::Sender<underpass_proto::Event>,
    log: LogRing,
) -> tokio::task::JoinHandle<()> {
    let shared = std::sync::Arc::new(ipc::Shared {
        commands,
        status,
        events,
        log,
        subscriptions: ipc::subscription_slots(),
    });
    tokio::spawn(ipc::serve(server, shared, args.socket.clone()))
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

/// Tells systemd (`Type=notify`) that the helper is ready; nothing without $NOTIFY_SOCKET.
#[cfg(target_os = "linux")]
fn notify_ready() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let sent = (|| -> std::io::Result<()> {
        let addr = match path.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
            None => SocketAddr::from_pathname(&path)?,
        };
        UnixDatagram::unbound()?.send_to_addr(b"READY=1", &addr)?;
        Ok(())
    })();
    if let Err(e) = sent {
        tracing::warn!(error = %e, socket = %path, "could not tell systemd that the helper is ready");
    }
}

#[cfg(not(target_os = "linux"))]
fn notify_ready() {}

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
