//! What the window process and the tray process share, free of Tauri: the options, the
//! profile store, the settings, the last view of the helper, and what a new view means for
//! the user (a notification, the connect at launch). The window's [`crate::AppState`] wraps
//! one; the tray process ([`crate::tray`]) holds one of its own.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use underpass_proto::{Status, TunnelState};

use crate::connect::{self, Target};
use crate::desktop;
use crate::helper::HelperView;
use crate::options::Options;
use crate::profiles::Profiles;
use crate::settings::Settings;

pub struct Core {
    pub options: Options,
    pub profiles: Profiles,
    /// The latest view of the helper, as last reported.
    pub view: Mutex<HelperView>,
    pub retry: Arc<Notify>,
    /// One settings change at a time in this process ([`Core::change_settings`]).
    settings_change: Mutex<()>,
    /// Set once connect-on-launch has been considered (it happens at most once per run).
    launch_connect_done: AtomicBool,
}

impl Core {
    pub fn new(options: Options) -> Core {
        Core {
            view: Mutex::new(HelperView::connecting(&options.socket)),
            retry: Arc::new(Notify::new()),
            profiles: Profiles::new(options.clone()),
            options,
            settings_change: Mutex::new(()),
            launch_connect_done: AtomicBool::new(false),
        }
    }

    pub fn config_dir(&self) -> Result<PathBuf, String> {
        self.options
            .config_dir
            .clone()
            .or_else(underpass_profile::default_config_dir)
            .ok_or_else(|| {
                "cannot tell where your profiles live: set HOME or pass --config-dir".into()
            })
    }

    /// The saved settings, read each time: the window and the tray both change them, so a copy
    /// kept in memory would go stale (and, saved again, undo the other's change). Unreadable:
    /// the defaults, with a warning.
    pub fn settings(&self) -> Settings {
        self.config_dir()
            .and_then(|dir| Settings::load(&dir))
            .unwrap_or_else(|e| {
                tracing::warn!("settings unreadable, using defaults: {e}");
                Settings::default()
            })
    }

    /// Changes the saved settings: reads them as they are now, lets `change` edit them (it
    /// says whether anything changed, or refuses with a sentence), saves them if so, and
    /// returns them.
    pub fn change_settings(
        &self,
        change: impl FnOnce(&mut Settings) -> Result<bool, String>,
    ) -> Result<Settings, String> {
        let _one = self.settings_change.lock().unwrap();
        let mut settings = self.settings();
        if change(&mut settings)? {
            settings.save(&self.config_dir()?)?;
        }
        Ok(settings)
    }

    /// Whether the helper reports a tunnel that is wanted (connected, or healing).
    pub fn tunnel_up(&self) -> bool {
        let view = self.view.lock().unwrap();
        view.status.as_ref().is_some_and(|s| s.state.wants_tunnel())
    }

    /// Takes a new view of the helper. When this process is the one that speaks to the user
    /// (`announce`), it tells them what changed, and the first time the helper answers it
    /// returns what to connect to at launch (if the user asked for that and the helper is
    /// not connected already; a helper that reconnected by itself is left alone).
    pub fn take_view(&self, view: HelperView, announce: bool) -> Option<Target> {
        let prev: Option<Status> =
            std::mem::replace(&mut *self.view.lock().unwrap(), view.clone()).status;
        let next = view.status.as_ref()?;
        if !announce {
            return None;
        }
        let settings = self.settings();
        if settings.notifications {
            if let Some(n) = desktop::notification_for(prev.as_ref(), next) {
                desktop::notify(&n.title, &n.body);
            }
        }
        let first = !self.launch_connect_done.swap(true, Ordering::SeqCst);
        (first && settings.connect_on_launch && next.state == TunnelState::Disconnected)
            .then(|| settings.last_target.unwrap_or_default())
    }

    /// The connect at launch that [`Core::take_view`] asked for.
    pub async fn connect_at_launch(&self, target: Target) {
        tracing::info!("connect on launch: {target:?}");
        self.connect_or_notify(Some(target), "Underpass: could not connect at launch")
            .await;
    }

    /// Connects to `target` (the last choice when `None`), telling the user if it fails:
    /// the tray's Connect entries and connect-on-launch, which have no window to answer in.
    pub async fn connect_or_notify(&self, target: Option<Target>, failed: &str) {
        let target = target.unwrap_or_else(|| self.settings().last_target.unwrap_or_default());
        if let Err(e) = connect::connect(self, &target).await {
            desktop::notify(failed, &e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn core(dir: &std::path::Path) -> Core {
        let config = dir.to_string_lossy().into_owned();
        let args = ["underpass-gui", "--config-dir", config.as_str()].map(OsString::from);
        Core::new(Options::parse(args, |_| None).unwrap())
    }

    #[test]
    fn the_window_and_the_tray_never_undo_each_others_settings() {
        let dir = tempfile::tempdir().unwrap();
        let (window, tray) = (core(dir.path()), core(dir.path()));
        // The window turns connect-on-launch on; the tray, started before, then remembers
        // the server it connected to. Neither change is lost.
        window
            .change_settings(|s| {
                s.connect_on_launch = true;
                Ok(true)
            })
            .unwrap();
        let us = Target::Fastest {
            country: Some("US".into()),
        };
        tray.change_settings(|s| {
            s.last_target = Some(us.clone());
            Ok(true)
        })
        .unwrap();
        let seen = window.settings();
        assert!(seen.connect_on_launch);
        assert_eq!(seen.last_target, Some(us));
        // A change that is refused saves nothing.
        assert!(window.change_settings(|_| Err("no".into())).is_err());
        assert!(tray.settings().connect_on_launch);
    }
}
