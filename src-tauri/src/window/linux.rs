//! WebKitGTK: tuned for a small local UI, and its processes ended with the window.
//!
//! - **Cache model "document viewer"**: no page cache and the smallest memory caches; the UI is
//!   one local page that never navigates, so there is nothing to cache.
//! - **Features the UI never uses are off** (WebGL, WebAudio, media, databases, the offline
//!   cache), so the web process never sets them up.
//! - **The network process is ended once the window is gone.** WebKit ends the page's web
//!   process with its webview, but keeps the network process as long as the web context lives,
//!   and Tauri keeps that context for the app's lifetime on Linux (tauri#14626). The UI loads
//!   only from the app itself, so that process holds nothing worth keeping; WebKit starts a new
//!   one with the next window.

use std::time::Duration;

use tauri::WebviewWindow;
use webkit2gtk::{CacheModel, SettingsExt as _, WebContextExt as _, WebViewExt};

/// WebKit's helper processes, by the name they run as.
const WEB_PROCESS: &str = "WebKitWebProcess";
const NETWORK_PROCESS: &str = "WebKitNetworkProcess";

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

pub fn release() {
    std::thread::spawn(|| {
        let me = std::process::id();
        // The web process ends with its webview, within a moment.
        for _ in 0..60 {
            let left = to_end(me, &processes());
            if let Some(pids) = left {
                for pid in pids {
                    // SAFETY: plain kill(2) on a child process of ours.
                    if unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) } != 0 {
                        tracing::warn!(
                            "WebKit's network process {pid} not ended: {}",
                            std::io::Error::last_os_error()
                        );
                    }
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Give the heap the webview used back to the system.
        // SAFETY: malloc_trim only walks glibc's own arenas.
        unsafe { libc::malloc_trim(0) };
    });
}

/// A process: its id, its parent's, and the file name it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Proc {
    pid: u32,
    ppid: u32,
    name: String,
}

/// The network processes of ours to end, once no web process of ours is left (`None` while
/// one is: it still needs its network process).
fn to_end(me: u32, procs: &[Proc]) -> Option<Vec<u32>> {
    let ours = || procs.iter().filter(|p| p.ppid == me);
    if ours().any(|p| p.name == WEB_PROCESS) {
        return None;
    }
    Some(
        ours()
            .filter(|p| p.name == NETWORK_PROCESS)
            .map(|p| p.pid)
            .collect(),
    )
}

/// Every process in /proc (those that vanish while it is read are skipped).
fn processes() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        parse(pid, &stat, &cmdline)
    })
    .collect()
}

/// A process from its /proc/PID/stat (the parent is the second field after the ")" that ends
/// the command name, which may hold spaces) and cmdline (NUL-separated; the program first).
fn parse(pid: u32, stat: &str, cmdline: &[u8]) -> Option<Proc> {
    let after = &stat[stat.rfind(')')? + 1..];
    let ppid = after.split_whitespace().nth(1)?.parse().ok()?;
    let program = cmdline.split(|b| *b == 0).next()?;
    let name = String::from_utf8_lossy(program)
        .rsplit('/')
        .next()?
        .to_string();
    Some(Proc { pid, ppid, name })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: u32, ppid: u32, name: &str) -> Proc {
        Proc {
            pid,
            ppid,
            name: name.into(),
        }
    }

    #[test]
    fn the_network_process_is_ended_only_once_no_web_process_is_left() {
        let net = p(11, 10, NETWORK_PROCESS);
        let web = p(12, 10, WEB_PROCESS);
        assert_eq!(to_end(10, &[net.clone(), web]), None);
        assert_eq!(to_end(10, &[net]), Some(vec![11]));
    }

    #[test]
    fn only_our_own_webkit_processes_are_ended() {
        let others = [p(21, 20, NETWORK_PROCESS), p(22, 20, WEB_PROCESS)];
        assert_eq!(to_end(10, &others), Some(vec![]));
        let mine = [p(11, 10, "bwrap"), p(12, 10, NETWORK_PROCESS)];
        assert_eq!(to_end(10, &mine), Some(vec![12]));
    }

    #[test]
    fn proc_entries_parse_with_spaces_and_parens_in_the_name() {
        let stat = "4242 (Web (Content) x) S 4200 4242 4200 0 -1";
        let cmd = b"/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/WebKitNetworkProcess\x007\x0031\x00";
        assert_eq!(parse(4242, stat, cmd), Some(p(4242, 4200, NETWORK_PROCESS)));
        assert_eq!(parse(1, "garbage", b""), None);
    }
}
