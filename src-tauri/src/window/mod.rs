//! The main window's lifecycle: the window (and its webview) exists only while it is shown.
//!
//! A VPN client lives in the tray, and a webview there would cost hundreds of MiB for nothing.
//! On Linux the window process ends when its window closes, and the tray is another process
//! ([`crate::tray`]); on Windows and macOS closing destroys the window and the app keeps its
//! tray, the helper link ([`crate::helper::watch`]) and notifications, all in Rust. Showing it
//! builds a new window from `tauri.conf.json` (where `create: false` keeps Tauri from building
//! one at start); the front end asks for the current state as it starts and reports when it
//! has rendered it ([`Lifecycle::ready`]), which is logged as "window ready" with the time it
//! took and the state line it shows (the GUI test and `bench/app-memory.sh` read it).
//!
//! What the webview engine needs on each OS is in one file per OS: on Linux, WebKitGTK is
//! tuned for a small local UI.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as engine;
#[cfg(not(target_os = "linux"))]
mod other;
#[cfg(not(target_os = "linux"))]
use other as engine;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tauri::{AppHandle, Manager, WebviewWindow, WebviewWindowBuilder};

/// Prepares the webview engine; call it first in `main`, before any other thread exists.
pub fn prepare() {
    engine::prepare();
}

/// The main window's label (in `tauri.conf.json` and the capability).
pub const MAIN: &str = "main";

/// When the window being built was asked for, until its front end reports it is ready.
#[derive(Default)]
pub struct Lifecycle {
    opening: Mutex<Option<Instant>>,
}

impl Lifecycle {
    fn opening(&self, now: Instant) {
        *self.opening.lock().unwrap() = Some(now);
    }

    /// The front end has rendered the helper's state: how long that took since the window
    /// was asked for (once per window; `None` for a page that was only reloaded).
    pub fn ready(&self, now: Instant) -> Option<Duration> {
        self.opening
            .lock()
            .unwrap()
            .take()
            .map(|t| now.saturating_duration_since(t))
    }
}

/// Shows the main window, building it (and its webview) when there is none.
pub fn show(app: &AppHandle) {
    if let Some(w) = app.get_webview_window(MAIN) {
        let _ = w.show();
        let _ = w.unminimize();
        let _ = w.set_focus();
        return;
    }
    app.state::<Lifecycle>().opening(Instant::now());
    match build(app) {
        Ok(w) => {
            // Built hidden, so the window-state plugin has restored its size before it maps.
            let _ = w.show();
            let _ = w.set_focus();
        }
        Err(e) => tracing::warn!("the window could not be built: {e}"),
    }
}

fn build(app: &AppHandle) -> tauri::Result<WebviewWindow> {
    let config = app
        .config()
        .app
        .windows
        .iter()
        .find(|w| w.label == MAIN)
        .ok_or(tauri::Error::WindowNotFound)?
        .clone();
    let window = WebviewWindowBuilder::from_config(app, &config)?.build()?;
    engine::tune(&window);
    Ok(window)
}

/// The front end reports it has rendered the helper's state, `shown` (its state line).
pub fn ready(app: &AppHandle, shown: &str) {
    if let Some(took) = app.state::<Lifecycle>().ready(Instant::now()) {
        // Only the first line of what the page says, and not much of it: it is logged.
        let shown: String = shown
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(120)
            .collect();
        tracing::info!(
            "window ready: the helper's state shown {} ms after the window was asked for: {shown:?}",
            took.as_millis()
        );
    }
}

/// The main window is gone.
pub fn destroyed(app: &AppHandle) {
    app.state::<Lifecycle>().opening.lock().unwrap().take();
}

/// Whether the app keeps running when its last window closed: with a tray of its own (and a
/// host to show it) it lives on in the tray; without one it quits (on Linux the tray is
/// another process, so the window process always does). An explicit exit (Quit) always quits.
pub fn keep_running(exit_code: Option<i32>, resident_tray: bool) -> bool {
    exit_code.is_none() && resident_tray
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_reports_the_time_since_the_window_was_asked_for_once() {
        let l = Lifecycle::default();
        let t0 = Instant::now();
        l.opening(t0);
        assert_eq!(
            l.ready(t0 + Duration::from_millis(120)),
            Some(Duration::from_millis(120))
        );
        assert_eq!(l.ready(t0 + Duration::from_millis(300)), None, "a reload");
    }

    #[test]
    fn closing_the_last_window_keeps_the_app_in_the_tray_only_with_a_tray_of_its_own() {
        assert!(keep_running(None, true));
        assert!(!keep_running(None, false), "no tray: closing quits");
        assert!(!keep_running(Some(0), true), "Quit quits");
    }
}
