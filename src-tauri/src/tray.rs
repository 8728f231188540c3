//! The tray icon: the state in one line, Connect (to the last choice), a "Connect to"
//! submenu with the fastest server anywhere and in each country, Disconnect, Show and Quit.
//! On Linux it is a StatusNotifierItem with its menu exported over D-Bus (libayatana-
//! appindicator); the GUI test reads and clicks it there.

use std::sync::atomic::Ordering;

use tauri::menu::{Menu, MenuItem, PredefinedMenuItem, Submenu};
use tauri::tray::TrayIconBuilder;
use tauri::{AppHandle, Manager, Wry};
use underpass_proto::{Request, Status};

use crate::connect::{self, Target};
use crate::{desktop, helper, window, AppState};

pub struct TrayItems {
    state: MenuItem<Wry>,
    connect: MenuItem<Wry>,
    countries: Submenu<Wry>,
    disconnect: MenuItem<Wry>,
    rebuilding: std::sync::Mutex<()>,
}

/// The id of a "Connect to" entry: `fastest:` for anywhere, `fastest:SE` for a country.
const FASTEST: &str = "fastest:";

pub fn build(app: &AppHandle) -> tauri::Result<TrayItems> {
    let state = MenuItem::with_id(app, "state", "Helper not running", false, None::<&str>)?;
    let connect = MenuItem::with_id(app, "connect", "Connect", false, None::<&str>)?;
    let countries = Submenu::with_id(app, "countries", "Connect to", false)?;
    let disconnect = MenuItem::with_id(app, "disconnect", "Disconnect", false, None::<&str>)?;
    let show = MenuItem::with_id(app, "show", "Show Underpass", true, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit", true, None::<&str>)?;
    let sep = PredefinedMenuItem::separator(app)?;
    let menu = Menu::with_items(
        app,
        &[
            &state,
            &sep,
            &connect,
            &countries,
            &disconnect,
            &show,
            &quit,
        ],
    )?;
    let mut builder = TrayIconBuilder::with_id("underpass")
        .tooltip("Underpass")
        .menu(&menu)
        .on_menu_event(|app, event| on_menu(app, event.id().as_ref()));
    if let Some(icon) = app.default_window_icon() {
        builder = builder.icon(icon.clone());
    }
    builder.build(app)?;
    Ok(TrayItems {
        state,
        connect,
        countries,
        disconnect,
        rebuilding: std::sync::Mutex::new(()),
    })
}

fn on_menu(app: &AppHandle, id: &str) {
    let app = app.clone();
    match id {
        "quit" => app.exit(0),
        "show" => window::show(&app),
        // A tray host may deliver clicks on disabled entries: Connect while a tunnel is up
        // does nothing ("Connect to" switches servers on purpose).
        "connect" if !tunnel_up(&app.state::<AppState>()) => spawn_connect(app, None),
        "disconnect" => {
            tauri::async_runtime::spawn(async move {
                let state = app.state::<AppState>();
                state.user_disconnect.store(true, Ordering::SeqCst);
                if let Err(e) = helper::request(
                    &state.options.socket,
                    Request::Disconnect,
                    helper::REQUEST_TIMEOUT,
                )
                .await
                {
                    desktop::notify("Underpass: could not disconnect", &e.to_string());
                }
            });
        }
        other => {
            if let Some(cc) = other.strip_prefix(FASTEST) {
                let country = (!cc.is_empty()).then(|| cc.to_string());
                spawn_connect(app, Some(Target::Fastest { country }));
            }
        }
    }
}

/// Connects to `target`, or to the last choice (the fastest server when there is none).
fn spawn_connect(app: AppHandle, target: Option<Target>) {
    tauri::async_runtime::spawn(async move {
        let state = app.state::<AppState>();
        let target = target.unwrap_or_else(|| {
            state
                .settings
                .lock()
                .unwrap()
                .last_target
                .clone()
                .unwrap_or_default()
        });
        if let Err(e) = connect::connect(&state, &target).await {
            desktop::notify("Underpass: could not connect", &e);
        }
    });
}

fn tunnel_up(state: &AppState) -> bool {
    let view = state.view.lock().unwrap();
    view.status.as_ref().is_some_and(|s| s.state.wants_tunnel())
}

/// Shows what the helper reported: the state line and which entries can be used.
pub fn show_status(state: &AppState, status: Option<&Status>) {
    if let Some(items) = state.tray.get() {
        let _ = items.state.set_text(desktop::tray_label(status));
        let connected = status.is_some_and(|s| s.state.wants_tunnel());
        let _ = items.connect.set_enabled(status.is_some() && !connected);
        let _ = items.countries.set_enabled(status.is_some());
        let _ = items.disconnect.set_enabled(connected);
    }
}

/// Rebuilds the "Connect to" submenu from the catalog (after an import or a delete). Call it
/// from a worker thread (an async command, setup), never from a main-thread callback.
pub fn refresh_countries(app: &AppHandle) {
    let state = app.state::<AppState>();
    let catalog = match state.profiles.catalog() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("tray: no catalog: {e:#}");
            return;
        }
    };
    let Some(items) = state.tray.get() else {
        return;
    };
    // One rebuild at a time (two imports at once); only worker threads take this lock, never
    // the main thread that the menu calls wait for.
    let _one = items.rebuilding.lock().unwrap();
    let menu = &items.countries;
    if let Err(e) = (|| -> tauri::Result<()> {
        for item in menu.items()? {
            menu.remove(&item)?;
        }
        let entries = desktop::tray_countries(&catalog);
        for (id, label) in entries {
            menu.append(&MenuItem::with_id(
                app,
                format!("{FASTEST}{id}"),
                label,
                true,
                None::<&str>,
            )?)?;
        }
        Ok(())
    })() {
        tracing::warn!("tray: could not list the countries: {e}");
    }
}
