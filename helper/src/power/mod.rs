//! Sleep and resume: the operating system's own word that the machine goes to sleep or woke up.
//!
//! - Linux (`linux.rs`): logind's `PrepareForSleep` signal on the system bus. The helper holds a
//!   *delay* inhibitor while awake, so that logind waits for it before suspending; it lets go once
//!   the daemon has acknowledged the coming sleep, and takes a new one after the resume.
//! - Windows (`windows.rs`): the service control manager's power events (`service.rs`).
//! - Linux also notices a resume by the clock gap (`health::SleepWatch`), the fallback when
//!   logind is missing.
//! - Elsewhere (`unsupported.rs`): nothing yet.
//!
//! Every source ends in the same place, the daemon's resume handling. A real resume is usually
//! reported twice (logind's signal, then the clock gap a tick later), so [`ResumeGate`] lets one
//! resume through per [`SAME_RESUME`].
//!
//! No watcher ever blocks the daemon: each runs in its own task, with timeouts on its calls,
//! and the daemon only reads a channel.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::watch;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::{notify, watch};

#[cfg(not(any(target_os = "linux", windows)))]
mod unsupported;
#[cfg(not(any(target_os = "linux", windows)))]
pub use unsupported::watch;

/// Reports of one resume closer together than this are one resume.
pub const SAME_RESUME: Duration = Duration::from_secs(10);

/// What a watcher tells the daemon.
#[derive(Debug)]
pub enum PowerEvent {
    /// The machine is about to sleep. The daemon answers on `ready` when it is between two
    /// system changes (it makes them one at a time), so that sleep never cuts one in half.
    Suspending { ready: oneshot::Sender<()> },
    /// The machine woke up.
    Resumed,
}

/// The events of the platform's watcher, if it has one running.
pub type PowerEvents = mpsc::UnboundedReceiver<PowerEvent>;

/// Lets one resume through, however many sources report it.
#[derive(Debug, Default, Clone)]
pub struct ResumeGate {
    last: Option<Instant>,
}

impl ResumeGate {
    /// A resume reported at `now`: true when it is a new one, to act on.
    pub fn admit(&mut self, now: Instant) -> bool {
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < SAME_RESUME)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

/// The next power event, or never when there is no watcher (or it ended).
pub async fn next(events: &mut Option<PowerEvents>) -> PowerEvent {
    match events {
        Some(rx) => match rx.recv().await {
            Some(event) => event,
            None => {
                *events = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn logind_and_the_clock_gap_reporting_one_resume_are_acted_on_once() {
        let t0 = Instant::now();
        let mut gate = ResumeGate::default();
        assert!(gate.admit(t0), "logind's PrepareForSleep(false)");
        assert!(!gate.admit(t0 + S), "the clock gap a tick later");
        assert!(!gate.admit(t0 + 9 * S));
    }

    #[test]
    fn a_later_resume_is_acted_on_again() {
        let t0 = Instant::now();
        let mut gate = ResumeGate::default();
        assert!(gate.admit(t0));
        assert!(gate.admit(t0 + SAME_RESUME));
        assert!(!gate.admit(t0 + SAME_RESUME + S));
        assert!(gate.admit(t0 + 3 * SAME_RESUME));
    }

    #[tokio::test]
    async fn without_a_watcher_no_event_ever_arrives() {
        let mut none = None;
        let waited = tokio::time::timeout(Duration::from_millis(20), next(&mut none)).await;
        assert!(waited.is_err());
    }

    #[tokio::test]
    async fn a_watcher_that_ended_is_forgotten() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut events = Some(rx);
        tx.send(PowerEvent::Resumed).unwrap();
        drop(tx);
        assert!(matches!(next(&mut events).await, PowerEvent::Resumed));
        let waited = tokio::time::timeout(Duration::from_millis(20), next(&mut events)).await;
        assert!(waited.is_err());
        assert!(events.is_none());
    }
}
