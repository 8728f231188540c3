//! The Underpass desktop app (Tauri 2). It is an unprivileged front end, like the CLI: it
//! reaches `underpassd` only through `underpass_proto::client::Client`, and keeps profiles in
//! the CLI's store (`underpass_profile`, used unchanged).
//!
//! Design decisions:
//! - **The helper is the source of truth.** A watcher task ([`helper::watch`]) subscribes to
//!   the helper and forwards every reported status to the webview as `helper-view`; the UI
//!   renders only that, and shows "no helper" (never a stale state) when the link is down.
//!   It retries by itself, so the app recovers when the helper comes back.
//! - **Commands stay thin** ([`commands`]); the logic lives in plain modules with their own
//!   tests ([`helper`], [`profiles`], [`settings`], [`desktop`], [`doctor`]).
//! - **Strict webview**: a CSP without inline scripts or styles, and a capability that lists
//!   exactly the app's commands plus event listening and the file dialog.
//! - **Desktop extras degrade**: no tray host, no notification server or no session bus
//!   must never stop the app.
//! - **One instance.** A second `underpass-gui` (a desktop launcher, an `underpass://` link,
//!   a double-clicked `.underpass` file) hands its arguments to the first and exits; the
//!   first shows its window and opens them ([`links`]).
//! - **No webview in the tray.** The window exists only while it is shown ([`window`]):
//!   everything that must work in the tray (the helper link, the tray menu, notifications,
//!   connect on launch) lives in Rust, never in the front end. On Linux the tray is a process
//!   of its own with no toolkit or webview ([`tray`]), and the window process ends with its
//!   window; what both need is [`core::Core`].

pub mod commands;
pub mod connect;
pub mod core;
pub mod desktop;
pub mod doctor;
pub mod helper;
pub mod links;
pub mod options;
pub mod profiles;
pub mod report;
pub mod settings;
pub mod tray;
pub mod window;

#[cfg(test)]
mod contract;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tauri::{AppHandle, Emitter, Manager, RunEvent, WindowEvent};
use tauri_plugin_window_state::{AppHandleExt as _, StateFlags};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;
use underpass_proto::{DoctorReport, SelfTestReport};

use crate::core::Core;
use crate::helper::Update;
use crate::links::OpenRequest;
use crate::options::Options;

/// What the window remembers between runs (not whether it is shown: that follows
/// `--hidden` and the tray).
const WINDOW_STATE: StateFlags = StateFlags::SIZE
    .union(StateFlags::POSITION)
    .union(StateFlags::MAXIMIZED);

/// Everything the commands share: the [`Core`] the tray process has too, and what only the
/// window process holds.
pub struct AppState {
    core: Arc<Core>,
    /// Links and files to open that the webview has not taken yet.
    pub pending_open: Mutex<Vec<OpenRequest>>,
    /// The last report of each self-test run in this session (for the diagnostics report).
    pub self_tests: Mutex<Vec<SelfTestReport>>,
    /// The last troubleshooter report of this session (for the diagnostics report).
    pub doctor: Mutex<Option<DoctorReport>>,
    /// Whether this process tells the user about changes and connects at launch; not while a
    /// tray process does (Linux).
    announce: bool,
    /// The tray icon's menu, once built (Windows, macOS). Never behind a lock: changing a
    /// menu item waits for the main thread, which must never wait for a lock a worker holds.
    #[cfg(not(target_os = "linux"))]
    tray: std::sync::OnceLock<tray::in_app::TrayItems>,
    /// Whether the window process keeps a tray of its own with a host to show it. Without one,
    /// closing the window quits (on Linux the tray is another process, so it always does).
    resident_tray: AtomicBool,
}

impl std::ops::Deref for AppState {
    type Target = Core;

    fn deref(&self) -> &Core {
        &self.core
    }
}

/// Handles one watcher update: remember it, tell the webview, the tray and the user.
fn on_update(app: &AppHandle, update: Update) {
    let state = app.state::<AppState>();
    match update {
        Update::Progress(p) => {
            let _ = app.emit("selftest-progress", p);
        }
        Update::View(view) => {
            if let Some(target) = state.take_view((*view).clone(), state.announce) {
                let core = state.core.clone();
                tauri::async_runtime::spawn(async move { core.connect_at_launch(target).await });
            }
            #[cfg(not(target_os = "linux"))]
            tray::in_app::show_status(&state, view.status.as_ref());
            let _ = app.emit("helper-view", *view);
        }
    }
}

/// The profile store changed: the tray's "Connect to" follows. (On Linux the tray process
/// sees the store change by itself.)
pub(crate) fn profiles_changed(app: &AppHandle) {
    #[cfg(not(target_os = "linux"))]
    tray::in_app::refresh_countries(app);
    #[cfg(target_os = "linux")]
    let _ = app;
}

/// Queues what a command line asks to open, and tells the webview to take it.
fn open_items(app: &AppHandle, items: &[String], cwd: &Path) {
    if items.is_empty() {
        return;
    }
    let state = app.state::<AppState>();
    let inbox = match state.config_dir() {
        Ok(dir) => dir.join(links::INBOX),
        Err(e) => {
            // Never the items themselves: a link can be long and is the user's business.
            tracing::warn!("cannot open {} item(s): {e}", items.len());
            return;
        }
    };
    let requests = links::requests(items, cwd, &inbox);
    state.pending_open.lock().unwrap().extend(requests);
    let _ = app.emit("open-requests", ());
}

/// Logs to stderr and, when there is a log dir, to a file a day (the diagnostics report reads
/// them). The guard must live as long as the app.
pub(crate) fn init_logging(
    log_dir: Option<&Path>,
) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| "underpass_gui=info".into())
    };
    let file = log_dir.and_then(|dir| {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("underpass-gui: no log file in {}: {e}", dir.display());
            return None;
        }
        tracing_appender::rolling::Builder::new()
            .rotation(tracing_appender::rolling::Rotation::DAILY)
            .filename_prefix(report::LOG_PREFIX)
            .max_log_files(report::LOG_FILES_KEPT)
            .build(dir)
            .map_err(|e| eprintln!("underpass-gui: no log file in {}: {e}", dir.display()))
            .ok()
    });
    let (file_layer, guard) = match file {
        Some(appender) => {
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(writer)
                .with_filter(filter());
            (Some(layer), Some(guard))
        }
        None => (None, None),
    };
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_filter(filter()))
        .with(file_layer)
        .try_init();
    guard
}

/// Starts the app. Blocks until it quits.
pub fn run(options: Options) {
    let _log_guard = init_logging(options.log_dir.as_deref());
    // To quit, only the hand-over to the running app matters (see the setup below).
    let tray_host = !options.quit && tauri::async_runtime::block_on(desktop::tray_host_present());
    if !tray_host && !options.quit {
        tracing::info!("no tray host on the session bus: the window stays reachable");
    }
    // On Linux the tray is a process of its own: start it unless it runs.
    #[cfg(target_os = "linux")]
    let tray_process = tray_host && tray::process::ensure(&options);
    #[cfg(not(target_os = "linux"))]
    let tray_process = false;
    if options.hidden && tray_process {
        // At login: the tray is all there is to start, with no window and no webview.
        tracing::info!("started {}: the tray holds the app", options::HIDDEN_FLAG);
        return;
    }
    let state = AppState {
        core: Arc::new(Core::new(options)),
        pending_open: Mutex::new(Vec::new()),
        self_tests: Mutex::new(Vec::new()),
        doctor: Mutex::new(None),
        announce: !tray_process,
        #[cfg(not(target_os = "linux"))]
        tray: std::sync::OnceLock::new(),
        resident_tray: AtomicBool::new(false),
    };
    tauri::Builder::default()
        .plugin(tauri_plugin_single_instance::init(|app, args, cwd| {
            // A second instance: its arguments are ours to act on (program name first).
            let args: Vec<String> = args.into_iter().skip(1).collect();
            if Options::asks_to_quit(&args) {
                app.exit(0);
                return;
            }
            let items = Options::items_to_open(args);
            window::show(app);
            open_items(app, &items, Path::new(&cwd));
        }))
        .plugin(tauri_plugin_dialog::init())
        .plugin(
            tauri_plugin_autostart::Builder::new()
                .app_name("underpass")
                .args([options::HIDDEN_FLAG])
                .build(),
        )
        .plugin(
            tauri_plugin_window_state::Builder::default()
                .with_state_flags(WINDOW_STATE)
                .build(),
        )
        .manage(state)
        .manage(window::Lifecycle::default())
        .invoke_handler(tauri::generate_handler![
            commands::helper_view,
            commands::retry_helper,
            commands::list_profiles,
            commands::server_catalog,
            commands::import_paths,
            commands::delete_profile,
            commands::public_key,
            commands::save_public_key,
            commands::connect,
            commands::disconnect,
            commands::set_kill_switch,
            commands::set_lan_access,
            commands::get_settings,
            commands::save_settings,
            commands::self_test,
            commands::take_open_requests,
            commands::export_report,
            commands::run_doctor,
            commands::apply_mtu,
            commands::window_ready,
        ])
        .setup(move |app| {
            let handle = app.handle().clone();
            if app.state::<AppState>().options.quit {
                // No app was running to hand the request to: there is nothing to end.
                handle.exit(0);
                return Ok(());
            }
            #[cfg(not(target_os = "linux"))]
            {
                let state = app.state::<AppState>();
                match tray::in_app::build(&handle) {
                    Ok(items) => {
                        let _ = state.tray.set(items);
                        state.resident_tray.store(tray_host, Ordering::SeqCst);
                    }
                    Err(e) => tracing::warn!("no tray icon: {e}"),
                }
                tray::in_app::refresh_countries(&handle);
            }
            let (socket, retry, hidden, items) = {
                let s = app.state::<AppState>();
                (
                    s.options.socket.clone(),
                    s.retry.clone(),
                    s.options.hidden,
                    s.options.open.clone(),
                )
            };
            // No window is built at start (tauri.conf.json: `create: false`), so that
            // `--hidden` (autostart) has no webview at all; everything else shows it.
            if !hidden || !app.state::<AppState>().resident_tray.load(Ordering::SeqCst) {
                window::show(&handle);
            }
            if let Ok(dir) = app.state::<AppState>().config_dir() {
                links::clear_inbox(&dir.join(links::INBOX));
            }
            let cwd = std::env::current_dir().unwrap_or_default();
            open_items(&handle, &items, &cwd);
            let h = handle.clone();
            tauri::async_runtime::spawn(helper::watch(socket, retry, move |u| on_update(&h, u)));
            Ok(())
        })
        .on_window_event(|w, event| {
            if w.label() != window::MAIN {
                return;
            }
            match event {
                // Closing destroys the window and its webview; the app stays in the tray
                // when there is one (see the exit request below), and quits otherwise.
                WindowEvent::CloseRequested { .. } => {
                    // Remember the size now: the session may end without the app exiting.
                    if let Err(e) = w.app_handle().save_window_state(WINDOW_STATE) {
                        tracing::warn!("window size not saved: {e}");
                    }
                }
                WindowEvent::Destroyed => window::destroyed(w.app_handle()),
                _ => {}
            }
        })
        .build(tauri::generate_context!())
        .expect("error while building the Underpass app")
        .run(|app, event| {
            if let RunEvent::ExitRequested { code, api, .. } = event {
                let resident = app.state::<AppState>().resident_tray.load(Ordering::SeqCst);
                if window::keep_running(code, resident) {
                    api.prevent_exit();
                }
            }
        });
}
