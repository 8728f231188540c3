//! Noticing that a tunnel died, and the rhythm of healing it, free of I/O.
//!
//! WireGuard never says that a tunnel is dead: a silent server looks exactly like an idle one.
//! So the helper reads each session's counters once a second and decides here, from the counters
//! and the time it is handed, whether to probe, whether the tunnel is dead, which rung of the
//! reconnect ladder comes next and when, and when a burst of network changes has settled. Time is
//! an input everywhere (`now`), so every timer below is unit-tested with simulated time.
//!
//! The numbers are Mullvad's where they have held up on millions of machines (probe after 5 s
//! of sending without an answer or 120 s of silence; dead when no handshake happened for 180 s,
//! the longest a WireGuard session may live), with one made shorter where it is safe: dead 12 s
//! after the first probe instead of 15 s. The probe is a forced handshake and WireGuard retries
//! it every 5 s, so 12 s still gives three tries (at 0, 5 and 10 s) and 2 s for the last one's
//! answer; a server that answers none of three handshakes is not coming back within the
//! attempt anyway. Under traffic a dead server is then noticed within 18 s (5 + 1 + 12).

use std::time::{Duration, Instant};

use underpass_proto::ReconnectReason;

/// How often the daemon samples the counters.
pub const MONITOR_EVERY: Duration = Duration::from_secs(1);
/// Sending without an answer for this long starts a probe.
pub const TX_WITHOUT_RX: Duration = Duration::from_secs(5);
/// Nothing moving for this long starts a probe (an idle tunnel must still be alive).
pub const IDLE: Duration = Duration::from_secs(120);
/// No answer for this long after the first probe: dead.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(12);
/// WireGuard's REJECT_AFTER_TIME: a session older than this cannot carry data.
pub const SESSION_EXPIRY: Duration = Duration::from_secs(180);
/// A resume from sleep shows as CLOCK_BOOTTIME running ahead of CLOCK_MONOTONIC by this much.
pub const RESUME_GAP: Duration = Duration::from_secs(3);
/// While healing, a new handshake is asked for this often between the ladder's rungs.
pub const RETRY_HANDSHAKE_EVERY: Duration = Duration::from_secs(2);
/// Network changes come in bursts: act once nothing changed for `DEBOUNCE_QUIET`, or at the
/// latest `DEBOUNCE_MAX` after the first change of the burst.
pub const DEBOUNCE_QUIET: Duration = Duration::from_millis(200);
pub const DEBOUNCE_MAX: Duration = Duration::from_secs(2);

/// One reading of a session's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sample {
    /// Authenticated packets received from the server (data, keepalives, handshake responses).
    pub rx_packets: u64,
    /// Bytes sent to the server.
    pub tx_bytes: u64,
    /// Time since the last completed handshake, if any.
    pub handshake_age: Option<Duration>,
}

/// What the liveness monitor asks for after a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Fine,
    /// Send something the server must answer (a forced handshake), now.
    Probe,
    Dead(ReconnectReason),
}

/// Watches one live session.
#[derive(Debug, Clone)]
pub struct Liveness {
    last: Sample,
    last_rx_at: Instant,
    last_activity_at: Instant,
    /// When the first packet sent after the last answer went out.
    unanswered_since: Option<Instant>,
    probing_since: Option<Instant>,
}

impl Liveness {
    /// A session that was just seen alive (its handshake completed) at `now`.
    pub fn new(now: Instant, first: Sample) -> Liveness {
        Liveness {
            last: first,
            last_rx_at: now,
            last_activity_at: now,
            unanswered_since: None,
            probing_since: None,
        }
    }

    /// When the server last answered.
    pub fn last_answer(&self) -> Instant {
        self.last_rx_at
    }

    /// Probe now, whatever the counters say: after a network change or a resume.
    pub fn kick(&mut self, now: Instant) -> Check {
        if self.probing_since.is_none() {
            self.probing_since = Some(now);
        }
        Check::Probe
    }

    pub fn observe(&mut self, now: Instant, sample: Sample) -> Check {
        let answered = sample.rx_packets > self.last.rx_packets;
        let sent = sample.tx_bytes > self.last.tx_bytes;
        self.last = sample;
        if answered {
            self.last_rx_at = now;
            self.last_activity_at = now;
            self.unanswered_since = None;
            self.probing_since = None;
        } else if sent {
            self.last_activity_at = now;
            self.unanswered_since.get_or_insert(now);
        }
        if sample
            .handshake_age
            .is_some_and(|age| age >= SESSION_EXPIRY)
        {
            return Check::Dead(ReconnectReason::SessionExpired);
        }
        if let Some(since) = self.probing_since {
            if now.duration_since(since) >= PROBE_TIMEOUT {
                return Check::Dead(ReconnectReason::ServerNotResponding);
            }
            return Check::Fine;
        }
        let stalled = self
            .unanswered_since
            .is_some_and(|t| now.duration_since(t) >= TX_WITHOUT_RX);
        let idle = now.duration_since(self.last_activity_at) >= IDLE;
        if stalled || idle {
            self.probing_since = Some(now);
            return Check::Probe;
        }
        Check::Fine
    }
}

/// One step of the reconnect ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rung {
    /// A new handshake on the same socket.
    ForceHandshake,
    /// A new socket (new source port, so a new NAT mapping) and fresh endpoint lookups.
    NewSocket,
    /// The next server of the user's choice (the same one when the choice is one server).
    NextServer,
}

impl Rung {
    pub fn describe(self) -> &'static str {
        match self {
            Rung::ForceHandshake => "forcing a new handshake",
            Rung::NewSocket => "opening a new socket and looking the server up again",
            Rung::NextServer => "trying the next server",
        }
    }
}

/// The rung of attempt `n` (0-based): a handshake, then a new socket, then alternately the next
/// server and a new socket, forever.
pub fn rung(attempt: u32) -> Rung {
    match attempt {
        0 => Rung::ForceHandshake,
        1 => Rung::NewSocket,
        n if n % 2 == 0 => Rung::NextServer,
        _ => Rung::NewSocket,
    }
}

/// How long attempt `n` (0-based) may take before the next one starts: min(4 s × 2ⁿ, 15 s).
pub fn attempt_timeout(attempt: u32) -> Duration {
    let base = Duration::from_secs(4);
    let cap = Duration::from_secs(15);
    base.checked_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX))
        .map_or(cap, |d| d.min(cap))
}

/// One episode of healing: from the moment the tunnel was found dead until it works again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ladder {
    pub reason: ReconnectReason,
    pub since: Instant,
    /// 0-based index of the attempt in progress.
    pub attempt: u32,
    deadline: Instant,
}

impl Ladder {
    /// Starts an episode; the first rung runs at once.
    pub fn start(now: Instant, reason: ReconnectReason) -> (Ladder, Rung) {
        let ladder = Ladder {
            reason,
            since: now,
            attempt: 0,
            deadline: now + attempt_timeout(0),
        };
        (ladder, rung(0))
    }

    /// The current attempt's rung.
    pub fn rung(&self) -> Rung {
        rung(self.attempt)
    }

    /// The next rung, once the current attempt has had its time.
    pub fn on_tick(&mut self, now: Instant) -> Option<Rung> {
        if now < self.deadline {
            return None;
        }
        self.attempt = self.attempt.saturating_add(1);
        self.deadline = now + attempt_timeout(self.attempt);
        Some(self.rung())
    }

    /// The network came back: count again from the first attempt.
    pub fn reset(&mut self, now: Instant, reason: ReconnectReason) -> Rung {
        *self = Ladder::start(now, reason).0;
        self.rung()
    }
}

/// Coalesces bursts of network-change notifications.
#[derive(Debug, Clone, Default)]
pub struct Debounce {
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Debounce {
    pub fn changed(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// When the burst in progress settles, if one is in progress.
    pub fn deadline(&self) -> Option<Instant> {
        let (first, last) = (self.first?, self.last?);
        Some((last + DEBOUNCE_QUIET).min(first + DEBOUNCE_MAX))
    }

    /// True once, when the burst has settled.
    pub fn due(&mut self, now: Instant) -> bool {
        match self.deadline() {
            Some(d) if now >= d => {
                *self = Debounce::default();
                true
            }
            _ => false,
        }
    }
}

/// Tells a resume from sleep by CLOCK_BOOTTIME (which counts suspended time) pulling ahead of
/// CLOCK_MONOTONIC (which does not).
#[derive(Debug, Clone)]
pub struct SleepWatch {
    gap: Duration,
}

impl SleepWatch {
    pub fn new(gap: Duration) -> SleepWatch {
        SleepWatch { gap }
    }

    /// Feeds the current BOOTTIME − MONOTONIC gap; true when the machine slept since last time.
    pub fn resumed(&mut self, gap: Duration) -> bool {
        let slept = gap.saturating_sub(self.gap) > RESUME_GAP;
        self.gap = gap;
        slept
    }
}

/// How long the machine has been suspended since boot: the gap between a clock that runs
/// through sleep and one that stops (Linux: CLOCK_BOOTTIME − CLOCK_MONOTONIC; macOS:
/// CLOCK_MONOTONIC_RAW − CLOCK_UPTIME_RAW, as Apple documents them).
#[cfg(any(target_os = "linux", target_os = "macos"))]
pub fn suspended_so_far() -> Duration {
    let read = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid clock id and a pointer to a live timespec.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    };
    #[cfg(target_os = "linux")]
    let (through_sleep, awake) = (libc::CLOCK_BOOTTIME, libc::CLOCK_MONOTONIC);
    #[cfg(target_os = "macos")]
    let (through_sleep, awake) = (libc::CLOCK_MONOTONIC_RAW, libc::CLOCK_UPTIME_RAW);
    read(through_sleep).saturating_sub(read(awake))
}

/// Windows reports suspends through its power events instead.
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub fn suspended_so_far() -> Duration {
    Duration::ZERO
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn sample(rx: u64, tx: u64) -> Sample {
        Sample {
            rx_packets: rx,
            tx_bytes: tx,
            handshake_age: Some(Duration::from_secs(10)),
        }
    }

    /// Feeds one sample a second and returns the first non-fine check with its second.
    fn run(
        live: &mut Liveness,
        t0: Instant,
        secs: u64,
        f: impl Fn(u64) -> Sample,
    ) -> Option<(u64, Check)> {
        (1..=secs).find_map(|s| match live.observe(t0 + S * s as u32, f(s)) {
            Check::Fine => None,
            c => Some((s, c)),
        })
    }

    #[test]
    fn a_tunnel_that_answers_is_fine() {
        let t0 = Instant::now();
        let mut live = Liveness::new(t0, sample(0, 0));
        assert_eq!(run(&mut live, t0, 300, |s| sample(s, s * 100)), None);
    }

    #[test]
    fn sending_without_answers_probes_after_5_s_and_is_dead_12_s_later() {
        let t0 = Instant::now();
        let mut live = Liveness::new(t0, sample(10, 0));
        // The server goes silent at once; the user keeps sending.
        let f = |s: u64| sample(10, s * 100);
        assert_eq!(run(&mut live, t0, 100, f), Some((6, Check::Probe)));
        assert_eq!(
            run(&mut live, t0 + S * 6, 100, |s| f(s + 6)),
            Some((12, Check::Dead(ReconnectReason::ServerNotResponding)))
        );
    }

    #[test]
    fn dead_within_18_s_of_the_server_going_silent_under_traffic() {
        let t0 = Instant::now();
        let mut live = Liveness::new(t0, sample(1, 0));
        let dead_at = (1..=60u32).find(|s| {
            matches!(
                live.observe(t0 + S * *s, sample(1, *s as u64 * 100)),
                Check::Dead(_)
            )
        });
        assert!(dead_at.is_some_and(|s| s <= 18), "{dead_at:?}");
    }

    #[test]
    fn an_answer_to_the_probe_cancels_it() {
        let t0 = Instant::now();
        let mut live = Liveness::new(t0, sample(10, 0));
        for s in 1..=6u32 {
            live.observe(t0 + S * s, sample(10, s as u64 * 100));
        }
        // The forced handshake is answered at second 8: no death at 21.
        let f = |s: u64| sample(if s >= 8 { 11 + s } else { 10 }, s * 100);
        assert_eq!(run(&mut live, t0 + S * 6, 60, |s| f(s + 6)), None);
    }

    #[test]
    fn an_idle_tunnel_is_probed_after_120_s() {
        let t0 = Instant::now();
        let mut live = Liveness::new(t0, sample(3, 300));
        assert_eq!(
            run(&mut live, t0, 200, |_| sample(3, 300)),
            Some((120, Check::Probe))
        );
    }

    #[test]
    fn a_session_without_handshake_for_180_s_has_expired() {
        let t0 = Instant::now();
        let mut live = Liveness::new(t0, sample(0, 0));
        let f = |s: u64| Sample {
            rx_packets: s,
            tx_bytes: s,
            handshake_age: Some(Duration::from_secs(100 + s)),
        };
        assert_eq!(
            run(&mut live, t0, 200, f),
            Some((80, Check::Dead(ReconnectReason::SessionExpired)))
        );
    }

    #[test]
    fn a_kick_probes_at_once_and_times_out_like_any_probe() {
        let t0 = Instant::now();
        let mut live = Liveness::new(t0, sample(5, 5));
        assert_eq!(live.kick(t0), Check::Probe);
        assert_eq!(
            run(&mut live, t0, 30, |_| sample(5, 5)),
            Some((12, Check::Dead(ReconnectReason::ServerNotResponding)))
        );
    }

    #[test]
    fn the_ladder_climbs_handshake_socket_server_and_never_stops() {
        let rungs: Vec<Rung> = (0..6).map(rung).collect();
        assert_eq!(
            rungs,
            vec![
                Rung::ForceHandshake,
                Rung::NewSocket,
                Rung::NextServer,
                Rung::NewSocket,
                Rung::NextServer,
                Rung::NewSocket
            ]
        );
        assert_eq!(rung(u32::MAX - 1), Rung::NextServer);
    }

    #[test]
    fn attempt_timeouts_double_from_4_s_up_to_15_s() {
        let secs: Vec<u64> = (0..5).map(|n| attempt_timeout(n).as_secs()).collect();
        assert_eq!(secs, vec![4, 8, 15, 15, 15]);
        assert_eq!(attempt_timeout(40), Duration::from_secs(15));
        assert_eq!(attempt_timeout(u32::MAX), Duration::from_secs(15));
    }

    #[test]
    fn the_ladder_moves_on_only_when_an_attempt_timed_out() {
        let t0 = Instant::now();
        let (mut ladder, first) = Ladder::start(t0, ReconnectReason::ServerNotResponding);
        assert_eq!(first, Rung::ForceHandshake);
        assert_eq!(ladder.on_tick(t0 + S * 3), None);
        assert_eq!(ladder.on_tick(t0 + S * 4), Some(Rung::NewSocket));
        assert_eq!(ladder.on_tick(t0 + S * 11), None);
        assert_eq!(ladder.on_tick(t0 + S * 12), Some(Rung::NextServer));
        assert_eq!(ladder.attempt, 2);
        // The third attempt has 15 s.
        assert_eq!(ladder.on_tick(t0 + S * 26), None);
        // The network comes back: the count starts again.
        assert_eq!(
            ladder.reset(t0 + S * 13, ReconnectReason::NetworkChanged),
            Rung::ForceHandshake
        );
        assert_eq!(ladder.attempt, 0);
        assert_eq!(ladder.since, t0 + S * 13);
    }

    #[test]
    fn a_burst_of_changes_settles_after_200_ms_of_quiet() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut d = Debounce::default();
        assert!(!d.due(t0));
        d.changed(t0);
        d.changed(t0 + ms(150));
        assert!(!d.due(t0 + ms(300)));
        assert!(d.due(t0 + ms(350)));
        assert!(!d.due(t0 + ms(400)), "fires once");
    }

    #[test]
    fn a_storm_of_changes_is_acted_on_after_2_s_at_the_latest() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut d = Debounce::default();
        let mut fired = None;
        for i in 0..40u64 {
            let now = t0 + ms(i * 100);
            d.changed(now);
            if d.due(now) {
                fired = Some(i * 100);
                break;
            }
        }
        assert_eq!(fired, Some(2000));
    }

    #[test]
    fn a_jump_of_boottime_over_monotonic_is_a_resume() {
        let mut w = SleepWatch::new(Duration::from_secs(100));
        assert!(!w.resumed(Duration::from_secs(100)));
        assert!(
            !w.resumed(Duration::from_millis(102_500)),
            "2.5 s is jitter"
        );
        assert!(w.resumed(Duration::from_secs(140)));
        assert!(!w.resumed(Duration::from_secs(140)));
    }

    #[test]
    fn the_suspend_clock_reads() {
        // BOOTTIME never runs behind MONOTONIC.
        let a = suspended_so_far();
        assert!(suspended_so_far() >= a.saturating_sub(Duration::from_millis(1)));
    }
}
