//! No power events here: macOS's IOKit sleep notifications are not wired up, and the clock gap
//! is read on Linux only (`health::suspended_so_far`), so a resume is not noticed as such; the
//! liveness monitor still heals a tunnel that stopped answering.

use super::PowerEvents;
use crate::daemon::Settings;

pub fn watch(_settings: &Settings) -> Option<PowerEvents> {
    None
}
