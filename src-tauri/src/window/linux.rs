//! WebKitGTK, tuned for a small local UI.
//!
//! - **Cache model "document viewer"**: no page cache and the smallest memory caches; the UI is
//!   one local page that never navigates, so there is nothing to cache.
//! - **Features the UI never uses are off** (WebGL, WebAudio, media, databases, the offline
//!   cache), so the web process never sets them up.
//! - **No accelerated compositing** ([`prepare`]): the page is a few panels and a plot redrawn
//!   once a second, which WebKit paints in software without the GL compositor's buffers and
//!   threads. Measured with `bench/app-memory.sh` (release build, Xvfb): the open window's
//!   processes 312 MiB PSS with it, 240 MiB without, and the window ready 80 ms sooner (again
//!   on another machine: 314 -> 238 MiB, reopening 1232 -> 976 ms). It is WebKitGTK's
//!   environment variable, set before WebKit starts: the setting's API
//!   (`HardwareAccelerationPolicy::Never`), applied to the new webview, left the page blank.
//!   Without it, WebKitWebDriver's screenshot waits for a paint that a page that does not change
//!   never makes, so the GUI test takes its pictures from the X server instead.

use tauri::WebviewWindow;
use webkit2gtk::{CacheModel, SettingsExt as _, WebContextExt as _, WebViewExt};

pub fn tune(window: &WebviewWindow) {
    let done = window.with_webview(|webview| {
        let view = webview.inner();
        if let Some(context) = view.context() {
            context.set_cache_model(CacheModel::DocumentViewer);
        }
        if let Some(settings) = WebViewExt::settings(&view) {
            settings.set_enable_page_cache(false);
            settings.set_enable_webgl(false);
            settings.set_enable_webaudio(false);
            settings.set_enable_media(false);
            settings.set_enable_media_stream(false);
            settings.set_enable_mediasource(false);
            settings.set_enable_encrypted_media(false);
            settings.set_enable_html5_database(false);
            settings.set_enable_offline_web_application_cache(false);
        }
    });
    if let Err(e) = done {
        tracing::warn!("WebKit settings not applied: {e}");
    }
}

/// WebKitGTK's switch for accelerated compositing, read when its processes start.
const NO_COMPOSITING: &str = "WEBKIT_DISABLE_COMPOSITING_MODE";

/// Before anything else runs (no other thread yet): turns accelerated compositing off,
/// unless the environment already says what to do.
pub fn prepare() {
    if std::env::var_os(NO_COMPOSITING).is_none() {
        std::env::set_var(NO_COMPOSITING, "1");
    }
}
