//! Self-tests are expensive (seconds of capture, a paused tunnel), so a member may not run them
//! at will (issue 9): one runs at a time, and a second caller asking for the same test joins
//! the running one while a different one is told the helper is busy; each user may start only
//! a few per minute; and the simulated tunnel drop, which stops everyone's traffic, happens at
//! most once per [`DROP_EVERY`], the kill-switch test otherwise running without it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};
use parking_lot::Mutex;
use underpass_proto::{ErrorBody, ErrorCode, SelfTestKind, SelfTestOptions, SelfTestReport};

use crate::limits::PerUid;

/// Self-tests a user may start: a burst, then one every [`REFILL`].
const BURST: u32 = 8;
const REFILL: Duration = Duration::from_secs(15);
/// The shortest time between two simulated tunnel drops.
pub const DROP_EVERY: Duration = Duration::from_secs(60);

pub type Outcome = Result<SelfTestReport, ErrorBody>;
type Running = Shared<BoxFuture<'static, Outcome>>;

#[derive(Default)]
pub struct Gate {
    inner: Mutex<Inner>,
}

struct Inner {
    running: Option<(SelfTestKind, SelfTestOptions, Running)>,
    budget: PerUid,
    last_drop: Option<Instant>,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            running: None,
            budget: PerUid::new(BURST, REFILL),
            last_drop: None,
        }
    }
}

/// What a caller gets: the run to await (its own or the one it joined).
pub enum Admission {
    Start(Running),
    Join(Running),
}

impl Gate {
    /// Admits `uid`'s request, starting `start(allow_drop)` when nothing runs. `start` gets
    /// whether the simulated drop may happen this time.
    pub fn admit(
        self: &Arc<Self>,
        uid: u32,
        test: SelfTestKind,
        options: &SelfTestOptions,
        now: Instant,
        start: impl FnOnce(bool) -> BoxFuture<'static, Outcome>,
    ) -> Result<Admission, ErrorBody> {
        let mut inner = self.inner.lock();
        if let Some((kind, opts, run)) = &inner.running {
            if run.peek().is_none() {
                if *kind == test && opts == options {
                    return Ok(Admission::Join(run.clone()));
                }
                return Err(ErrorBody::new(
                    ErrorCode::Busy,
                    format!("a {kind:?} self-test is running; try again when it is done"),
                ));
            }
        }
        if let Err(wait) = inner.budget.take(uid, now) {
            return Err(ErrorBody::new(
                ErrorCode::Busy,
                format!(
                    "too many self-tests from uid {uid}; try again in {} s",
                    wait.as_secs().max(1)
                ),
            ));
        }
        let allow_drop = test == SelfTestKind::KillSwitch
            && inner
                .last_drop
                .is_none_or(|at| now.saturating_duration_since(at) >= DROP_EVERY);
        if allow_drop {
            inner.last_drop = Some(now);
        }
        let run = start(allow_drop).shared();
        inner.running = Some((test, options.clone(), run.clone()));
        Ok(Admission::Start(run))
    }
}

impl Admission {
    pub async fn outcome(self) -> Outcome {
        match self {
            Admission::Start(r) | Admission::Join(r) => r.await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> SelfTestReport {
        SelfTestReport {
            test: SelfTestKind::Dns,
            verdict: underpass_proto::Verdict::Pass,
            duration_ms: 1,
            captured_on: vec![],
            sent: vec![],
            leaks: vec![],
            resolvers: vec![],
            notes: vec![],
        }
    }

    #[tokio::test]
    async fn a_second_caller_joins_the_same_test_and_another_test_is_busy() {
        let gate = Arc::new(Gate::default());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let now = Instant::now();
        let opts = SelfTestOptions::default();
        let first = gate
            .admit(1000, SelfTestKind::Dns, &opts, now, |_| {
                async move {
                    let _ = rx.await;
                    Ok(report())
                }
                .boxed()
            })
            .unwrap();
        let second = gate
            .admit(1001, SelfTestKind::Dns, &opts, now, |_| unreachable!())
            .unwrap();
        assert!(matches!(second, Admission::Join(_)));
        let other = gate.admit(
            1001,
            SelfTestKind::KillSwitch,
            &opts,
            now,
            |_| unreachable!(),
        );
        assert_eq!(other.err().unwrap().code, ErrorCode::Busy);
        tx.send(()).unwrap();
        assert!(first.outcome().await.is_ok());
        assert!(second.outcome().await.is_ok());
    }

    #[tokio::test]
    async fn starts_are_budgeted_per_user_and_the_drop_is_rationed() {
        let gate = Arc::new(Gate::default());
        let now = Instant::now();
        let opts = SelfTestOptions::default();
        let mut drops = Vec::new();
        for _ in 0..BURST {
            let a = gate
                .admit(1000, SelfTestKind::KillSwitch, &opts, now, |drop| {
                    drops.push(drop);
                    async { Ok(report()) }.boxed()
                })
                .unwrap();
            a.outcome().await.unwrap();
        }
        assert!(drops[0], "the first may drop the tunnel");
        assert!(
            drops[1..].iter().all(|d| !d),
            "then none for a minute: {drops:?}"
        );
        let over = gate.admit(1000, SelfTestKind::Dns, &opts, now, |_| unreachable!());
        assert_eq!(over.err().unwrap().code, ErrorCode::Busy);
        let later = now + DROP_EVERY;
        let mut dropped = false;
        gate.admit(1001, SelfTestKind::KillSwitch, &opts, later, |d| {
            dropped = d;
            async { Ok(report()) }.boxed()
        })
        .unwrap()
        .outcome()
        .await
        .unwrap();
        assert!(dropped, "a minute later the drop is allowed again");
    }
}
