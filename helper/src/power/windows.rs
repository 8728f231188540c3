//! Sleep and resume on Windows: the service control manager's power events, which `service.rs`
//! receives (`SERVICE_CONTROL_POWEREVENT`) and hands on with [`notify`]. Windows has no delay
//! lock to hold: the suspend is reported and the handler returns at once.
//!
//! Type-checked here (`x86_64-pc-windows-gnu`); not run on Windows.

use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::{PowerEvent, PowerEvents};
use crate::daemon::Settings;

static EVENTS: Mutex<Option<mpsc::UnboundedSender<PowerEvent>>> = Mutex::new(None);

/// The channel [`notify`] feeds from now on.
pub fn watch(_settings: &Settings) -> Option<PowerEvents> {
    let (tx, rx) = mpsc::unbounded_channel();
    *EVENTS.lock() = Some(tx);
    Some(rx)
}

/// Hands a power event to the daemon, if it runs (from the service control handler's thread).
pub fn notify(event: PowerEvent) {
    if let Some(tx) = EVENTS.lock().as_ref() {
        let _ = tx.send(event);
    }
}
