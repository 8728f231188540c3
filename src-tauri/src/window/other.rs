//! Windows (WebView2) and macOS (WKWebView): nothing engine-specific is done. Their engines are
//! expected to end a webview's processes with it when the window is destroyed to the tray; that
//! is not measured on those systems yet.

use tauri::WebviewWindow;

pub fn tune(_window: &WebviewWindow) {}

pub fn prepare() {}
