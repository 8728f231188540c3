//! Windows (WebView2) and macOS (WKWebView): the window is destroyed and rebuilt the same way,
//! and nothing engine-specific is done. Their engines are expected to end a webview's processes
//! with it; that is not measured on those systems yet.

use tauri::WebviewWindow;

pub fn tune(_window: &WebviewWindow) {}

pub fn release() {}
