//! The tray inside the window process, on Windows and macOS (Tauri's tray icon): the same
//! entries as Linux's tray process ([`super::Entries`], [`super::action`]). Never run yet.

use tauri::menu::{Menu, MenuItem, PredefinedMenuItem, Submenu};
use tauri::tray::TrayIconBuilder;
use tauri::{AppHandle, Manager, Wry};
use underpass_proto::Status;

use super::{Action, Entries, FASTEST};
use crate::{desktop, window, AppState};

pub struct TrayItems {
    state: MenuItem<Wry>,
    connect: MenuItem<Wry>,
    countries: Submenu<Wry>,
    disconnect: MenuItem<Wry>,
    rebuilding: std::sync::Mutex<()>,
}

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
    let Some(action) = super::action(id, app.state::<AppState>().tunnel_up()) else {
        return;
    };
    match action {
        Action::Quit => app.exit(0),
        Action::Show => window::show(&app),
        other => {
            tauri::async_runtime::spawn(async move {
                super::act(&app.state::<AppState>(), other).await;
            });
        }
    }
}

/// Shows what the helper reported: the state line and which entries can be used.
pub fn show_status(state: &AppState, status: Option<&Status>) {
    if let Some(items) = state.tray.get() {
        let e = Entries::of(status);
        let _ = items.state.set_text(e.state);
        let _ = items.connect.set_enabled(e.connect);
        let _ = items.countries.set_enabled(e.countries);
        let _ = items.disconnect.set_enabled(e.disconnect);
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
