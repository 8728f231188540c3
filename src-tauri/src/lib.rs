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
//!   tests ([`helper`], [`profiles`], [`settings`], [`desktop`]).
//! - **Strict webview**: a CSP without inline scripts or styles, and a capability that lists
//!   exactly the app's commands plus event listening and the file dialog.
//! - **Desktop extras degrade**: no tray host, no notification server or no session bus
//!   must never stop the app.

pub mod commands;
pub mod desktop;
pub mod helper;
pub mod options;
pub mod profiles;
pub mod settings;

#[cfg(test)]
mod contract;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::{AppHandle, Emitter, Manager, WindowEvent};
use tokio::sync::Notify;
use underpass_proto::{Request, Status, TunnelState};

use crate::helper::{HelperView, Update};
use crate::options::Options;
use crate::profiles::Profiles;
use crate::settings::Settings;

/// Everything the commands share.
pub struct AppState {
    pub options: Options,
    pub profiles: Profiles,
    /// The latest view of the helper, as last reported.
    pub view: Mutex<HelperView>,
    pub retry: Arc<Notify>,
    /// Set when this app asked for a disconnect, so the drop is not "unexpected".
    pub user_disconnect: AtomicBool,
    pub settings: Mutex<Settings>,
    /// The last server connected to from this app (the tray's "Connect" uses it).
    pub last_choice: Mutex<Option<(String, Option<String>)>>,
    tray: Mutex<Option<TrayItems>>,
}

struct TrayItems {
    state: MenuItem<tauri::Wry>,
    connect: MenuItem<tauri::Wry>,
    disconnect: MenuItem<tauri::Wry>,
}

impl AppState {
    pub fn config_dir(&self) -> Result<PathBuf, String> {
        self.options
            .config_dir
            .clone()
            .or_else(underpass_profile::default_config_dir)
            .ok_or_else(|| {
                "cannot tell where your profiles live: set HOME or pass --config-dir".into()
            })
    }
}

/// Sends a connect request for `profile` (and a bundle's `server`) with the saved settings.
pub async fn connect_to(
    state: &AppState,
    profile: &str,
    server: Option<&str>,
) -> Result<(), String> {
    let (kill_switch, lan_access) = {
        let view = state.view.lock().unwrap();
        let status = view
            .status
            .as_ref()
            .ok_or("the helper is not reachable; see the message on screen")?;
        (status.kill_switch, status.lan_access)
    };
    let settings = state.settings.lock().unwrap().clone();
    let config = state
        .profiles
        .tunnel_config(profile, server, &settings, kill_switch, lan_access)
        .map_err(|e| format!("{e:#}"))?;
    state.user_disconnect.store(false, Ordering::SeqCst);
    *state.last_choice.lock().unwrap() = Some((profile.to_string(), server.map(str::to_string)));
    helper::request(
        &state.options.socket,
        Request::Connect {
            config: Box::new(config),
        },
        helper::REQUEST_TIMEOUT,
    )
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

fn notify(title: &str, body: &str) {
    let (title, body) = (title.to_string(), body.to_string());
    // notify-rust blocks on D-Bus; without a notification server it errors, which is fine.
    tauri::async_runtime::spawn_blocking(move || {
        if let Err(e) = notify_rust::Notification::new()
            .appname("Underpass")
            .summary(&title)
            .body(&body)
            .show()
        {
            tracing::info!("notification not shown ({e}): {title}");
        }
    });
}

/// Handles one watcher update: remember it, tell the webview, the tray and the user.
fn on_update(app: &AppHandle, update: Update) {
    let state = app.state::<AppState>();
    match update {
        Update::Progress(p) => {
            let _ = app.emit("selftest-progress", p);
        }
        Update::View(view) => {
            let prev: Option<Status> = {
                let mut current = state.view.lock().unwrap();
                let prev = current.status.clone();
                *current = (*view).clone();
                prev
            };
            if let Some(next) = &view.status {
                let user = state.user_disconnect.load(Ordering::SeqCst);
                if state.settings.lock().unwrap().notifications {
                    if let Some(n) = desktop::notification_for(prev.as_ref(), next, user) {
                        notify(&n.title, &n.body);
                    }
                }
            }
            update_tray(&state, view.status.as_ref());
            let _ = app.emit("helper-view", *view);
        }
    }
}

fn update_tray(state: &AppState, status: Option<&Status>) {
    if let Some(items) = state.tray.lock().unwrap().as_ref() {
        let _ = items.state.set_text(desktop::tray_label(status));
        let up = status.map(|s| s.state);
        let connected = matches!(up, Some(TunnelState::Connected | TunnelState::Connecting));
        let _ = items.connect.set_enabled(status.is_some() && !connected);
        let _ = items.disconnect.set_enabled(connected);
    }
}

fn show_main(app: &AppHandle) {
    if let Some(w) = app.get_webview_window("main") {
        let _ = w.show();
        let _ = w.unminimize();
        let _ = w.set_focus();
    }
}

fn build_tray(app: &AppHandle) -> tauri::Result<TrayItems> {
    let state = MenuItem::with_id(app, "state", "Helper not running", false, None::<&str>)?;
    let connect = MenuItem::with_id(app, "connect", "Connect", false, None::<&str>)?;
    let disconnect = MenuItem::with_id(app, "disconnect", "Disconnect", false, None::<&str>)?;
    let show = MenuItem::with_id(app, "show", "Show Underpass", true, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit", true, None::<&str>)?;
    let sep = PredefinedMenuItem::separator(app)?;
    let menu = Menu::with_items(app, &[&state, &sep, &connect, &disconnect, &show, &quit])?;
    let mut builder = TrayIconBuilder::with_id("underpass")
        .tooltip("Underpass")
        .menu(&menu)
        .on_menu_event(|app, event| {
            let app = app.clone();
            match event.id().as_ref() {
                "quit" => app.exit(0),
                "show" => show_main(&app),
                "connect" => {
                    tauri::async_runtime::spawn(async move {
                        let state = app.state::<AppState>();
                        let choice = state.last_choice.lock().unwrap().clone();
                        let choice = match choice {
                            Some(c) => Some(c),
                            None => state.profiles.catalog().ok().and_then(|c| {
                                c.countries
                                    .first()?
                                    .servers
                                    .first()
                                    .map(|s| (s.profile.to_string(), s.server.clone()))
                            }),
                        };
                        let result = match choice {
                            Some((p, s)) => connect_to(&state, &p, s.as_deref()).await,
                            None => Err("import a profile first".into()),
                        };
                        if let Err(e) = result {
                            notify("Underpass: could not connect", &e);
                        }
                    });
                }
                "disconnect" => {
                    tauri::async_runtime::spawn(async move {
                        let state = app.state::<AppState>();
                        state.user_disconnect.store(true, Ordering::SeqCst);
                        let _ = helper::request(
                            &state.options.socket,
                            Request::Disconnect,
                            helper::REQUEST_TIMEOUT,
                        )
                        .await;
                    });
                }
                _ => {}
            }
        });
    if let Some(icon) = app.default_window_icon() {
        builder = builder.icon(icon.clone());
    }
    builder.build(app)?;
    Ok(TrayItems {
        state,
        connect,
        disconnect,
    })
}

/// Starts the app. Blocks until it quits.
pub fn run(options: Options) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "underpass_gui=info".into()),
        )
        .try_init();
    let profiles = Profiles::new(options.clone());
    let settings = options
        .config_dir
        .clone()
        .or_else(underpass_profile::default_config_dir)
        .map(|dir| {
            Settings::load(&dir).unwrap_or_else(|e| {
                tracing::warn!("settings unreadable, using defaults: {e}");
                Settings::default()
            })
        })
        .unwrap_or_default();
    let state = AppState {
        view: Mutex::new(HelperView::connecting(&options.socket)),
        retry: Arc::new(Notify::new()),
        options,
        profiles,
        user_disconnect: AtomicBool::new(false),
        settings: Mutex::new(settings),
        last_choice: Mutex::new(None),
        tray: Mutex::new(None),
    };
    tauri::Builder::default()
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
            show_main(app);
        }))
        .plugin(tauri_plugin_dialog::init())
        .manage(state)
        .invoke_handler(tauri::generate_handler![
            commands::helper_view,
            commands::retry_helper,
            commands::list_profiles,
            commands::server_catalog,
            commands::import_paths,
            commands::delete_profile,
            commands::connect,
            commands::disconnect,
            commands::set_kill_switch,
            commands::set_lan_access,
            commands::get_settings,
            commands::save_settings,
            commands::self_test,
        ])
        .setup(|app| {
            let handle = app.handle().clone();
            match build_tray(&handle) {
                Ok(items) => *app.state::<AppState>().tray.lock().unwrap() = Some(items),
                Err(e) => tracing::warn!("no tray icon: {e}"),
            }
            let (socket, retry) = {
                let s = app.state::<AppState>();
                (s.options.socket.clone(), s.retry.clone())
            };
            let h = handle.clone();
            tauri::async_runtime::spawn(helper::watch(socket, retry, move |u| on_update(&h, u)));
            Ok(())
        })
        .on_window_event(|window, event| {
            // Close to the tray when there is one; otherwise closing quits.
            if let WindowEvent::CloseRequested { api, .. } = event {
                let has_tray = window.state::<AppState>().tray.lock().unwrap().is_some();
                if has_tray && window.label() == "main" {
                    api.prevent_close();
                    let _ = window.hide();
                }
            }
        })
        .run(tauri::generate_context!())
        .expect("error while running the Underpass app");
}
