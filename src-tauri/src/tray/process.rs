//! The tray process, `underpass-tray` (Linux): the tray icon, the helper link, notifications
//! and connect-on-launch, and nothing of the window. It starts the window process on "Show
//! Underpass" and ends it on Quit.
//!
//! - **One per user session**, held by an advisory lock on `$XDG_RUNTIME_DIR/underpass-tray.lock`
//!   (released by the kernel when the process dies, so a crash never leaves it held). A second
//!   one exits at once; the window process looks at the same lock to tell whether a tray runs.
//! - **It speaks for the app**: while it runs, the window leaves notifications and
//!   connect-on-launch to it, so each happens once.
//! - **The menu follows the profile store**: the "Connect to" entries are rebuilt when the
//!   store's `profiles/` directory changes (every import, change or delete renames into it),
//!   looked at every [`CHECK_EVERY`].
//! - **It ends with its session**: on SIGTERM or SIGINT, when the tray service loses the
//!   session bus, or on Quit.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ksni::TrayMethods as _;
use tokio::sync::mpsc;

use super::sni::Icon;
use super::{Action, Entries};
use crate::core::Core;
use crate::helper::{self, Update};
use crate::options::{Options, QUIT_FLAG};
use crate::{desktop, init_logging};

/// How often the tray looks at the profile store and at its own D-Bus service.
const CHECK_EVERY: Duration = Duration::from_secs(2);
/// How long Quit waits for the window process to take the request.
const QUIT_WAIT: Duration = Duration::from_secs(5);
const WINDOW_PROGRAM: &str = "underpass-gui";
const TRAY_PROGRAM: &str = "underpass-tray";

/// The lock that makes the tray one per session.
fn lock_path() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("underpass-tray.lock"),
        // SAFETY: getuid(2) cannot fail.
        None => {
            std::env::temp_dir().join(format!("underpass-tray-{}.lock", unsafe { libc::getuid() }))
        }
    }
}

/// Takes the lock, or `None` when another tray holds it.
fn take_lock() -> std::io::Result<Option<File>> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path())?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Whether a tray process runs in this session.
pub fn running() -> bool {
    matches!(take_lock(), Ok(None))
}

/// A program of the app, beside this one (both are installed together).
fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// `program` with the options this process was given, in a process group of its own (a
/// signal to this one's group, a terminal's Ctrl-C, is not for it).
fn command(program: &str, options: &Options) -> Command {
    use std::os::unix::process::CommandExt as _;
    let mut command = Command::new(sibling(program));
    command
        .args(&options.forward)
        .stdin(Stdio::null())
        .process_group(0);
    command
}

/// Starts `program` (see [`command`]) and reaps it.
fn start(program: &str, options: &Options) -> std::io::Result<()> {
    let mut child = command(program, options).spawn()?;
    std::thread::spawn(move || child.wait());
    Ok(())
}

/// From the window process: starts the tray process unless one runs. Returns whether one
/// runs now (and so speaks for the app).
pub fn ensure(options: &Options) -> bool {
    if running() {
        return true;
    }
    match start(TRAY_PROGRAM, options) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(
                "the tray ({}) did not start: {e}",
                sibling(TRAY_PROGRAM).display()
            );
            false
        }
    }
}

/// When the store's profiles last changed (`None` when it cannot be told).
fn profiles_changed(core: &Core) -> Option<SystemTime> {
    core.profiles.store().ok()?.profiles_modified()
}

/// The tray process's main: runs until Quit, a signal or the loss of the session bus.
pub fn run(options: Options) -> ExitCode {
    let _log_guard = init_logging(options.log_dir.as_deref());
    let _lock = match take_lock() {
        Ok(Some(lock)) => lock,
        Ok(None) => {
            tracing::info!("a tray runs already in this session");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            tracing::error!(
                "the tray's lock {} cannot be taken: {e}",
                lock_path().display()
            );
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("no runtime for the tray: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(Arc::new(Core::new(options))))
}

async fn serve(core: Arc<Core>) -> ExitCode {
    let (clicks, mut click) = mpsc::unbounded_channel();
    let tray = match Icon::new(Entries::of(None), clicks).spawn().await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("no tray icon (is a tray host on the session bus?): {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!("tray started");
    let (updates, mut update) = mpsc::unbounded_channel();
    tokio::spawn(helper::watch(
        core.options.socket.clone(),
        core.retry.clone(),
        move |u| {
            let _ = updates.send(u);
        },
    ));
    let mut signals = Signals::new();
    let mut tick = tokio::time::interval(CHECK_EVERY);
    let mut seen: Option<Option<SystemTime>> = None;
    loop {
        tokio::select! {
            Some(u) = update.recv() => {
                let Update::View(view) = u else { continue };
                let entries = Entries::of(view.status.as_ref());
                let up = view.status.as_ref().is_some_and(|s| s.state.wants_tunnel());
                if let Some(target) = core.take_view(*view, true) {
                    let core = core.clone();
                    tokio::spawn(async move { core.connect_at_launch(target).await });
                }
                tray.update(|t| {
                    t.entries = entries;
                    t.tunnel_up = up;
                }).await;
            }
            Some(action) = click.recv() => match action {
                Action::Show => {
                    if let Err(e) = start(WINDOW_PROGRAM, &core.options) {
                        desktop::notify("Underpass: the window did not open", &e.to_string());
                    }
                }
                Action::Quit => {
                    quit_window(&core.options).await;
                    break;
                }
                other => {
                    let core = core.clone();
                    tokio::spawn(async move { super::act(&core, other).await });
                }
            },
            _ = tick.tick() => {
                if tray.is_closed() {
                    tracing::info!("the tray's D-Bus service ended: the tray ends");
                    break;
                }
                let changed = profiles_changed(&core);
                if seen != Some(changed) {
                    seen = Some(changed);
                    match core.profiles.catalog() {
                        Ok(catalog) => {
                            let countries = desktop::tray_countries(&catalog);
                            tray.update(|t| t.countries = countries).await;
                        }
                        Err(e) => tracing::warn!("tray: no catalog: {e:#}"),
                    }
                }
            }
            signal = signals.next() => {
                tracing::info!("{signal}: the tray ends");
                break;
            }
        }
    }
    tray.shutdown().await;
    ExitCode::SUCCESS
}

/// Asks a running window process to end (through its single-instance hand-over), and waits
/// for that request to be taken, at most [`QUIT_WAIT`].
async fn quit_window(options: &Options) {
    let mut quit = command(WINDOW_PROGRAM, options);
    quit.arg(QUIT_FLAG);
    match tokio::process::Command::from(quit).spawn() {
        Ok(mut child) => {
            if tokio::time::timeout(QUIT_WAIT, child.wait()).await.is_err() {
                tracing::warn!("the window did not take Quit within {QUIT_WAIT:?}");
                let _ = child.kill().await;
            }
        }
        Err(e) => tracing::warn!("Quit could not reach the window: {e}"),
    }
}

/// SIGTERM and SIGINT, as one stream (none when they cannot be watched).
struct Signals(Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>);

impl Signals {
    fn new() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        Signals(
            signal(SignalKind::terminate())
                .ok()
                .zip(signal(SignalKind::interrupt()).ok()),
        )
    }

    async fn next(&mut self) -> &'static str {
        match &mut self.0 {
            Some((term, int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            None => std::future::pending().await,
        }
    }
}
