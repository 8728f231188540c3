//! WebKitGTK, tuned for a small local UI.
//!
//! - **Cache model "document viewer"**: no page cache and the smallest memory caches; the UI is
//!   one local page that never navigates, so there is nothing to cache.
//! - **Features the UI never uses are off** (WebGL, WebAudio, media, databases, the offline
//!   cache), so the web process never sets them up.
//! - **Accelerated compositing stays on.** Off (`WEBKIT_DISABLE_COMPOSITING_MODE=1`), the open
//!   window's processes measured 239 MiB PSS instead of 312 (`bench/app-memory.sh`, release
//!   build, Xvfb), but the GUI test's WebDriver session then failed; not shipped until that is
//!   understood. The setting's API (`HardwareAccelerationPolicy::Never`) on the new webview left
//!   the page blank.

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
