//! The whole daemon, driven through its commands against recording fakes (`tests/fakes.rs`) on
//! tokio's paused clock: every timer of the healing and every rung of the ladder, with the
//! times they fire at, the persisted intent reconciled at start, the managed policy, and the
//! order of every change to the system. A simulated minute takes milliseconds.

mod fakes;

use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use underpass_proto::{
    ErrorBody, KillSwitchMode, ReconnectReason, Status, TunnelConfig, TunnelState,
};

use super::{now, Command, Daemon, Settings};
use crate::health;
use crate::intent::{Intent, IntentStore};
use crate::power::PowerEvent;
use fakes::{Answer, FakePlatform, World};

const SECOND: Duration = Duration::from_secs(1);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The tick the daemon samples on; timings below are allowed this much on top of one second.
const SLACK: Duration = Duration::from_millis(1100);
/// What is acted on at the next 100 ms tick rather than the next second.
const TICK_SLACK: Duration = Duration::from_millis(150);

/// Server `n` of the test's choice: `192.0.2.1n:51820`, named `srv-n`.
fn server(n: u8) -> TunnelConfig {
    let mut c = TunnelConfig::example();
    c.profile = format!("srv-{n}");
    c.peers[0].public_key = underpass_proto::Key([10 + n; 32]);
    c.peers[0].endpoint = endpoint(n);
    c.dns = vec!["10.64.0.1".parse().expect("literal")];
    c
}

fn endpoint(n: u8) -> String {
    format!("192.0.2.{}:51820", 10 + n)
}

/// A daemon on fakes, and the handles a client and the test hold.
struct Helper {
    world: World,
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<Status>,
    dir: tempfile::TempDir,
}

impl Helper {
    async fn start() -> Helper {
        Helper::start_with(|_| {}).await
    }

    /// Starts in a world that `set` has changed first (a hanging resolver, no route, ...).
    async fn start_with(set: impl FnOnce(&mut fakes::Inner)) -> Helper {
        Helper::start_in(tempfile::tempdir().expect("a temp dir"), set).await
    }

    /// Starts on `dir`, which may already hold an intent or a system directory, in a world
    /// that `set` has changed first; returns once the persisted intent is reconciled (the
    /// moment the service manager is told "ready").
    async fn start_in(dir: tempfile::TempDir, set: impl FnOnce(&mut fakes::Inner)) -> Helper {
        let world = World::install();
        set(&mut world.inner.lock());
        let state_dir = dir.path().join("state");
        std::fs::create_dir_all(&state_dir).expect("the state dir");
        let settings = Settings {
            handshake_timeout: HANDSHAKE_TIMEOUT,
            interface_prefix: "uptest".into(),
            state_dir,
            resolv_conf: dir.path().join("resolv.conf"),
            system_dir: dir.path().join("etc"),
            #[cfg(target_os = "linux")]
            logind_bus: None,
        };
        let (status_tx, status) = watch::channel(Status::disconnected());
        let (events, _) = broadcast::channel(64);
        let daemon = Daemon::<FakePlatform>::new(settings, status_tx, events)
            .await
            .expect("the daemon starts on fakes");
        let (commands, commands_rx) = mpsc::channel(16);
        let (ready, reconciled) = oneshot::channel();
        tokio::spawn(daemon.run(commands_rx, ready));
        reconciled.await.expect("the daemon reconciles");
        Helper {
            world,
            commands,
            status,
            dir,
        }
    }

    async fn request<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> T {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(command(tx))
            .await
            .expect("the daemon runs");
        rx.await.expect("the daemon answers")
    }

    async fn connect(
        &self,
        c: TunnelConfig,
        alternatives: Vec<TunnelConfig>,
    ) -> Result<(), ErrorBody> {
        self.request(|r| Command::Connect(Box::new(c), alternatives, r))
            .await
    }

    async fn disconnect(&self) -> Result<(), ErrorBody> {
        self.request(Command::Disconnect).await
    }

    fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    fn state(&self) -> TunnelState {
        self.status().state
    }

    /// Lets simulated time run for up to `limit` in steps of 100 ms, with an application's
    /// traffic through the tunnel at each step when `traffic`, until `done` holds. Returns how
    /// long that took, or `None` if it never held.
    async fn run_until(
        &self,
        limit: Duration,
        traffic: bool,
        done: impl Fn(&Status) -> bool,
    ) -> Option<Duration> {
        let start = now();
        while now().duration_since(start) <= limit {
            self.assert_kill_switch_holds();
            if done(&self.status()) {
                return Some(now().duration_since(start));
            }
            if traffic {
                self.world.traffic();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// While a tunnel is wanted, in every state, the kill switch blocks all but the tunnel:
    /// checked at every step of every test.
    fn assert_kill_switch_holds(&self) {
        let status = self.status();
        let wanted = matches!(
            status.state,
            TunnelState::Connecting
                | TunnelState::Connected
                | TunnelState::Reconnecting
                | TunnelState::Offline
        );
        if wanted && status.kill_switch != KillSwitchMode::Off {
            assert!(
                self.world.firewall().is_some(),
                "the kill switch is open while {:?}",
                status.state
            );
        }
    }

    async fn run(&self, d: Duration, traffic: bool) {
        self.run_until(d, traffic, |_| false).await;
    }

    async fn connected(&self, c: TunnelConfig, alternatives: Vec<TunnelConfig>) {
        self.connect(c, alternatives)
            .await
            .expect("connect accepted");
        let took = self
            .run_until(SECOND, false, |s| s.state == TunnelState::Connected)
            .await;
        assert!(took.is_some(), "connected: {:?}", self.status());
    }

    /// Runs with traffic until the tunnel is found dead; returns how long that took.
    async fn until_reconnecting(&self, limit: Duration) -> Duration {
        self.run_until(limit, true, |s| s.state == TunnelState::Reconnecting)
            .await
            .unwrap_or_else(|| panic!("not reconnecting within {limit:?}: {:?}", self.status()))
    }
}

/// Asserts that `what` happened `at`, no earlier than `due` and at most `slack` after it.
fn assert_due(what: &str, at: Duration, due: Duration, slack: Duration) {
    assert!(
        (due..=due + slack).contains(&at),
        "{what} after {at:?}, due after {due:?}"
    );
}

fn is(state: TunnelState) -> impl Fn(&Status) -> bool {
    move |s| s.state == state
}

#[tokio::test(start_paused = true)]
async fn a_connect_opens_the_endpoint_before_the_first_packet_and_a_disconnect_undoes_it_all() {
    let h = Helper::start().await;
    let mark = h.world.len();
    h.connected(server(1), vec![]).await;
    assert_eq!(
        h.world.since(mark),
        [
            format!("firewall: tunnel uptest0 [{}]", endpoint(1)),
            format!("plane: up uptest0 {}", endpoint(1)),
            "mss clamp: uptest0".into(),
            "routes: up uptest0".into(),
            "dns: set [10.64.0.1]".into(),
        ]
    );
    let mark = h.world.len();
    h.disconnect().await.unwrap();
    assert_eq!(h.state(), TunnelState::Disconnected);
    assert_eq!(
        h.world.since(mark),
        [
            "dns: restore",
            "routes: down",
            "plane: down",
            "mss clamp: off",
            "firewall: open",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_server_is_probed_after_5_s_found_dead_12_s_later_and_healed_within_5_s() {
    let h = Helper::start().await;
    h.connected(server(1), vec![]).await;
    h.world.answer(&endpoint(1), Answer::Nothing);
    let t0 = now();
    let noticed = h.until_reconnecting(Duration::from_secs(30)).await;
    let probes = h.world.times_of("plane: handshake");
    let first_probe = probes[0].duration_since(t0);
    assert_due("probed", first_probe, health::TX_WITHOUT_RX, SLACK);
    let after_probe = noticed - first_probe;
    assert_due(
        "found dead (from the first probe)",
        after_probe,
        health::PROBE_TIMEOUT,
        SLACK,
    );
    assert!(noticed <= Duration::from_secs(21), "{noticed:?}");
    let reconnect = h.status().reconnect.expect("reconnect status");
    assert_eq!(reconnect.reason, ReconnectReason::ServerNotResponding);
    assert_eq!(reconnect.attempt, 1);
    assert!(
        h.world.firewall().is_some_and(|p| p.tunnel.is_some()),
        "the kill switch holds the tunnel's rules while healing"
    );

    h.world.answer(&endpoint(1), Answer::All);
    let healed = h
        .run_until(5 * SECOND, true, is(TunnelState::Connected))
        .await;
    assert!(healed.is_some(), "{:?}", h.status());
    assert!(h.status().reconnect.is_none());

    // The count starts again for the next episode.
    h.world.answer(&endpoint(1), Answer::Nothing);
    h.until_reconnecting(Duration::from_secs(30)).await;
    assert_eq!(h.status().reconnect.unwrap().attempt, 1);
}

#[tokio::test(start_paused = true)]
async fn the_ladder_climbs_every_rung_at_min_4_s_times_2_to_the_n_and_15_s_and_never_gives_up() {
    let h = Helper::start().await;
    h.connected(server(1), vec![]).await;
    h.world.answer(&endpoint(1), Answer::Nothing);
    h.until_reconnecting(Duration::from_secs(30)).await;
    let dead = now();
    let mark = h.world.len();
    h.run(Duration::from_secs(80), true).await;
    assert_eq!(h.state(), TunnelState::Reconnecting, "still healing");

    // Rung 1 at once: a handshake on the same socket. Then a fresh session each time (new
    // socket, new lookups; a named server is set up afresh as its own "next server").
    let ups: Vec<Duration> = h
        .world
        .times_of(&format!("plane: up uptest0 {}", endpoint(1)))
        .into_iter()
        .filter(|t| *t > dead)
        .map(|t| t.duration_since(dead))
        .collect();
    let mut expected = Vec::new();
    let mut at = Duration::ZERO;
    for attempt in 0.. {
        at += health::attempt_timeout(attempt);
        if at > Duration::from_secs(80) {
            break;
        }
        expected.push(at);
    }
    assert_eq!(
        expected.iter().map(|d| d.as_secs()).collect::<Vec<_>>(),
        [4, 12, 27, 42, 57, 72],
        "4, 8, then 15 s apart"
    );
    assert_eq!(ups.len(), expected.len(), "{ups:?}");
    for (up, want) in ups.iter().zip(&expected) {
        assert!(
            *up + Duration::from_millis(200) >= *want && *up <= *want + SLACK,
            "a fresh session at {up:?}, due at {want:?}"
        );
    }
    let log = h.world.since(mark);
    let first_rebuild = log.iter().position(|e| e == "plane: down").unwrap();
    assert!(
        log[..first_rebuild].contains(&"plane: handshake".to_string()),
        "the first rung forces a handshake before any rebuild: {log:?}"
    );
    assert!(
        !log.contains(&"firewall: open".to_string()),
        "the kill switch never opened while healing: {log:?}"
    );
    let status = h.status().reconnect.unwrap();
    assert_eq!(status.attempt as usize, expected.len() + 1);

    h.disconnect().await.unwrap();
    assert_eq!(h.state(), TunnelState::Disconnected);
    assert!(h.status().reconnect.is_none());
}

#[tokio::test(start_paused = true)]
async fn the_next_server_comes_from_the_users_choice_and_its_endpoint_is_let_through_first() {
    let h = Helper::start().await;
    h.connected(server(1), vec![server(2)]).await;
    h.world.answer(&endpoint(1), Answer::Nothing);
    h.until_reconnecting(Duration::from_secs(30)).await;
    let mark = h.world.len();
    let took = h
        .run_until(Duration::from_secs(20), true, is(TunnelState::Connected))
        .await;
    assert!(took.is_some(), "{:?}", h.status());
    let log = h.world.since(mark);
    let opened = log
        .iter()
        .position(|e| *e == format!("firewall: tunnel uptest0 [{}]", endpoint(2)))
        .expect("the new endpoint let through");
    let up = log
        .iter()
        .position(|e| *e == format!("plane: up uptest0 {}", endpoint(2)))
        .expect("the next server set up");
    assert!(opened < up, "{log:?}");
    let hole = h.world.firewall().unwrap().tunnel.unwrap();
    assert_eq!(
        hole.endpoints,
        [endpoint(2).parse().unwrap()],
        "only the server in use"
    );
    let in_use = h.status().server_in_use.unwrap();
    assert_eq!(in_use.profile, "srv-2");
    assert_eq!(
        h.status().profile.as_deref(),
        Some("srv-1"),
        "the user's choice"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_tunnel_is_probed_after_120_s_and_stays_up_when_the_server_answers() {
    let h = Helper::start().await;
    h.connected(server(1), vec![]).await;
    let t0 = now();
    h.run(Duration::from_secs(125), false).await;
    let probes = h.world.times_of("plane: handshake");
    assert_eq!(probes.len(), 1, "one probe");
    let at = probes[0].duration_since(t0);
    assert_due("probed (idle)", at, health::IDLE, SLACK);
    assert_eq!(h.state(), TunnelState::Connected);
}

#[tokio::test(start_paused = true)]
async fn a_session_without_a_handshake_for_180_s_has_expired() {
    let h = Helper::start().await;
    h.connected(server(1), vec![]).await;
    h.world.answer(&endpoint(1), Answer::DataOnly);
    let took = h.until_reconnecting(Duration::from_secs(200)).await;
    assert_due("expired", took, health::SESSION_EXPIRY, SLACK);
    assert_eq!(
        h.status().reconnect.unwrap().reason,
        ReconnectReason::SessionExpired
    );
}

#[tokio::test(start_paused = true)]
async fn a_first_handshake_that_never_comes_is_retried_not_an_error() {
    let h = Helper::start().await;
    h.world.answer(&endpoint(1), Answer::Nothing);
    h.connect(server(1), vec![]).await.unwrap();
    let took = h
        .run_until(
            HANDSHAKE_TIMEOUT + 2 * SECOND,
            false,
            is(TunnelState::Reconnecting),
        )
        .await
        .expect("reconnecting");
    assert!(took >= HANDSHAKE_TIMEOUT, "{took:?}");
    let reconnect = h.status().reconnect.unwrap();
    assert!(
        reconnect
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains(&endpoint(1))),
        "{reconnect:?}"
    );
    h.world.answer(&endpoint(1), Answer::All);
    assert!(h
        .run_until(5 * SECOND, false, is(TunnelState::Connected))
        .await
        .is_some());
}

#[tokio::test(start_paused = true)]
async fn without_a_route_it_is_offline_sends_nothing_and_comes_back_with_the_route() {
    let h = Helper::start().await;
    h.connected(server(1), vec![]).await;
    h.world.set_route(None);
    let took = h
        .run_until(Duration::from_millis(2500), true, is(TunnelState::Offline))
        .await
        .expect("offline");
    assert!(took <= health::DEBOUNCE_QUIET + SLACK, "{took:?}");
    let sent = h.world.initiations();
    h.run(Duration::from_secs(30), true).await;
    assert_eq!(h.state(), TunnelState::Offline);
    assert_eq!(
        h.world.initiations(),
        sent,
        "no handshake left while offline"
    );
    assert!(h.world.firewall().is_some_and(|p| p.tunnel.is_some()));
    assert_eq!(
        h.status().reconnect.unwrap().reason,
        ReconnectReason::NoNetwork
    );

    h.world.set_route(Some(("eth0", "198.51.100.1")));
    let back = h
        .run_until(5 * SECOND, true, is(TunnelState::Connected))
        .await;
    assert!(back.is_some_and(|d| d <= 2 * SECOND), "{back:?}");
}

#[tokio::test(start_paused = true)]
async fn network_changes_settle_200_ms_after_the_last_or_2_s_after_the_first() {
    let h = Helper::start().await;
    h.connected(server(1), vec![]).await;
    let before = h.world.inner.lock().lookups.len();
    let t0 = now();
    h.world.set_route(Some(("eth0", "198.51.100.1")));
    h.run(SECOND, false).await;
    let looked: Vec<_> = h.world.inner.lock().lookups[before..].to_vec();
    assert_eq!(looked.len(), 1, "one look for one change");
    let after = looked[0].duration_since(t0);
    assert_due(
        "looked at the route",
        after,
        health::DEBOUNCE_QUIET,
        TICK_SLACK,
    );

    // A burst that never goes quiet is looked at after 2 s anyway.
    let before = h.world.inner.lock().lookups.len();
    let t0 = now();
    for _ in 0..30 {
        let _ = h.world.changes.send(());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = h.world.inner.lock().lookups[before].duration_since(t0);
    assert_due(
        "looked at the route (a burst)",
        first,
        health::DEBOUNCE_MAX,
        TICK_SLACK,
    );
}

#[tokio::test(start_paused = true)]
async fn a_new_path_to_the_server_is_handshaken_at_once() {
    let h = Helper::start().await;
    h.connected(server(1), vec![]).await;
    let t0 = now();
    h.world.set_route(Some(("wlan0", "203.0.113.1")));
    h.run(SECOND, false).await;
    let probes = h.world.times_of("plane: handshake");
    assert_eq!(probes.len(), 1, "{:?}", h.world.entries());
    assert!(probes[0].duration_since(t0) <= Duration::from_millis(400));
    assert_eq!(h.state(), TunnelState::Connected);
}

#[tokio::test(start_paused = true)]
async fn a_resume_told_by_the_clock_gap_or_by_logind_handshakes_and_reasserts_dns_once() {
    let h = Helper::start().await;
    h.connected(server(1), vec![]).await;
    let mark = h.world.len();
    let lookups = h.world.inner.lock().lookups.len();
    h.world.inner.lock().suspended += Duration::from_secs(600);
    h.run(SLACK, false).await;
    // logind reports the same resume a moment later: acted on once.
    let _ = h.world.power.send(PowerEvent::Resumed);
    h.run(SECOND, false).await;
    let log = h.world.since(mark);
    let handshakes = log.iter().filter(|e| *e == "plane: handshake").count();
    assert_eq!(handshakes, 1, "{log:?}");
    let looked = h.world.inner.lock().lookups.len();
    assert_eq!(looked - lookups, 1, "the path looked at once");

    // Going to sleep is acknowledged at once, and the next resume is acted on again.
    let (ready, acked) = oneshot::channel();
    let _ = h.world.power.send(PowerEvent::Suspending { ready });
    tokio::time::timeout(Duration::from_millis(200), acked)
        .await
        .expect("acknowledged within 200 ms")
        .unwrap();
    h.run(Duration::from_secs(30), false).await;
    let mark = h.world.len();
    let lookups = h.world.inner.lock().lookups.len();
    let _ = h.world.power.send(PowerEvent::Resumed);
    h.run(SECOND, false).await;
    let log = h.world.since(mark);
    assert!(log.contains(&"plane: handshake".to_string()), "{log:?}");
    assert_eq!(h.world.inner.lock().lookups.len() - lookups, 1);
}

#[tokio::test(start_paused = true)]
async fn dns_that_hangs_holds_up_neither_a_kill_switch_change_nor_a_disconnect_nor_says_connected()
{
    let h = Helper::start_with(|w| w.dns_hangs = true).await;
    h.connect(server(1), vec![]).await.unwrap();
    h.run(Duration::from_secs(3), false).await;
    assert_eq!(
        h.state(),
        TunnelState::Connecting,
        "the handshake is done, DNS is not: not connected yet"
    );
    let asked = now();
    let changed = h
        .request(|r| Command::SetKillSwitch(KillSwitchMode::Lockdown, r))
        .await;
    assert!(changed.is_ok(), "{changed:?}");
    h.disconnect().await.unwrap();
    assert!(
        now().duration_since(asked) < SECOND,
        "both answered within 1 s"
    );
    assert_eq!(h.state(), TunnelState::Disconnected);
    let log = h.world.entries();
    assert!(
        log.ends_with(&[
            "dns: restore".into(),
            "routes: down".into(),
            "plane: down".into(),
            "mss clamp: off".into(),
            "firewall: block".into(),
        ]),
        "{log:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn dns_that_never_finishes_is_named_as_the_reason_and_healed_like_a_failed_setup() {
    let h = Helper::start_with(|w| w.dns_hangs = true).await;
    h.connect(server(1), vec![]).await.unwrap();
    let took = h
        .run_until(
            HANDSHAKE_TIMEOUT + 2 * SECOND,
            false,
            is(TunnelState::Reconnecting),
        )
        .await;
    assert!(took.is_some_and(|t| t >= HANDSHAKE_TIMEOUT), "{took:?}");
    let reconnect = h.status().reconnect.unwrap();
    assert_eq!(reconnect.reason, ReconnectReason::SetupFailed);
    assert!(
        reconnect
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("setting DNS through fake")),
        "{reconnect:?}"
    );
    h.world.inner.lock().dns_hangs = false;
    let back = h
        .run_until(Duration::from_secs(15), false, is(TunnelState::Connected))
        .await;
    assert!(back.is_some(), "a fresh session sets DNS: {:?}", h.status());
}

#[tokio::test(start_paused = true)]
async fn dns_that_cannot_be_set_takes_the_session_down_and_the_ladder_tries_again() {
    let h = Helper::start_with(|w| w.dns_fails = true).await;
    h.connect(server(1), vec![]).await.unwrap();
    let took = h
        .run_until(SECOND, false, is(TunnelState::Reconnecting))
        .await;
    assert!(took.is_some(), "{:?}", h.status());
    let reconnect = h.status().reconnect.unwrap();
    assert!(
        reconnect
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("setting DNS through fake")),
        "{reconnect:?}"
    );
    let log = h.world.entries();
    assert!(log.contains(&"dns: restore".to_string()), "{log:?}");
    assert!(log.contains(&"plane: down".to_string()), "{log:?}");
    h.world.inner.lock().dns_fails = false;
    let back = h
        .run_until(Duration::from_secs(10), false, is(TunnelState::Connected))
        .await;
    assert!(back.is_some(), "{:?}", h.status());
    assert!(h.status().dns.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_lookup_that_never_answers_holds_up_neither_a_kill_switch_change_nor_a_disconnect() {
    let h = Helper::start_with(|w| {
        w.names.insert("stuck.test".into(), None);
    })
    .await;
    let mut c = server(1);
    c.peers[0].endpoint = "stuck.test:51820".into();
    h.connect(c, vec![]).await.unwrap();
    h.run(Duration::from_secs(3), false).await;
    assert_eq!(h.state(), TunnelState::Connecting);
    let asked = now();
    let changed = h
        .request(|r| Command::SetKillSwitch(KillSwitchMode::Lockdown, r))
        .await;
    assert!(changed.is_ok(), "{changed:?}");
    assert_eq!(h.world.firewall().map(|p| p.tunnel.is_none()), Some(true));
    h.disconnect().await.unwrap();
    assert_eq!(now(), asked, "both answered without waiting on the lookup");
    h.run(Duration::from_secs(20), false).await;
    assert_eq!(h.state(), TunnelState::Disconnected);
    assert!(!h.world.entries().iter().any(|e| e.starts_with("plane: up")));
}

#[tokio::test(start_paused = true)]
async fn a_hostname_that_moves_is_looked_up_again_by_a_fresh_session() {
    let (old, new) = ("192.0.2.31".parse().unwrap(), "192.0.2.32".parse().unwrap());
    let h = Helper::start_with(|w| {
        w.names.insert("vpn.test".into(), Some(old));
    })
    .await;
    let mut c = server(1);
    c.peers[0].endpoint = "vpn.test:51820".into();
    h.connected(c, vec![]).await;
    h.world
        .inner
        .lock()
        .names
        .insert("vpn.test".into(), Some(new));
    h.world.answer("192.0.2.31:51820", Answer::Nothing);
    h.until_reconnecting(Duration::from_secs(30)).await;
    let mark = h.world.len();
    assert!(h
        .run_until(Duration::from_secs(10), true, is(TunnelState::Connected))
        .await
        .is_some());
    let log = h.world.since(mark);
    let opened = log
        .iter()
        .position(|e| e == "firewall: tunnel uptest0 [192.0.2.32:51820]");
    let up = log
        .iter()
        .position(|e| e == "plane: up uptest0 192.0.2.32:51820");
    assert!(opened.is_some() && opened < up, "{log:?}");
    assert_eq!(
        h.status().endpoint,
        Some("192.0.2.32:51820".parse().unwrap())
    );
}

// Reconcile at start.

/// A state dir holding `intent` as a helper before this one saved it.
fn with_intent(intent: &Intent) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    IntentStore::new(&state).save(intent).unwrap();
    dir
}

#[tokio::test(start_paused = true)]
async fn a_wanted_tunnel_is_blocked_first_then_brought_back_after_a_restart() {
    let dir = with_intent(&Intent {
        wanted: Some(server(1)),
        ..Intent::default()
    });
    let h = Helper::start_in(dir, |_| {}).await;
    assert!(h
        .run_until(SECOND, false, is(TunnelState::Connected))
        .await
        .is_some());
    let log = h.world.entries();
    assert_eq!(log[0], "firewall: block", "{log:?}");
    let up = log.iter().position(|e| e.starts_with("plane: up")).unwrap();
    assert!(up > 0);
    assert_eq!(h.status().profile.as_deref(), Some("srv-1"));
}

#[tokio::test(start_paused = true)]
async fn at_boot_without_a_route_it_waits_offline_and_connects_when_one_appears() {
    let dir = with_intent(&Intent {
        wanted: Some(server(1)),
        ..Intent::default()
    });
    let h = Helper::start_in(dir, |w| w.route = None).await;
    assert!(h
        .run_until(SECOND, false, is(TunnelState::Offline))
        .await
        .is_some());
    h.run(Duration::from_secs(20), false).await;
    assert_eq!(h.state(), TunnelState::Offline);
    assert!(!h.world.entries().iter().any(|e| e.starts_with("plane: up")));
    assert!(h.world.firewall().is_some(), "blocked while waiting");
    h.world.set_route(Some(("eth0", "198.51.100.1")));
    assert!(h
        .run_until(2 * SECOND, false, is(TunnelState::Connected))
        .await
        .is_some());
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_intent_blocks_rather_than_guess() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(IntentStore::new(&state).path(), "{ torn").unwrap();
    let h = Helper::start_in(dir, |_| {}).await;
    let status = h.status();
    assert_eq!(status.state, TunnelState::Error);
    assert!(status.error.unwrap().contains("intent.json"));
    assert_eq!(h.world.entries(), ["dns: restore", "firewall: block"]);
}

#[tokio::test(start_paused = true)]
async fn lockdown_with_nothing_wanted_keeps_blocking_after_a_restart() {
    let dir = with_intent(&Intent {
        kill_switch: KillSwitchMode::Lockdown,
        ..Intent::default()
    });
    let h = Helper::start_in(dir, |_| {}).await;
    assert_eq!(h.state(), TunnelState::Disconnected);
    assert_eq!(h.world.entries(), ["dns: restore", "firewall: block"]);
}

#[tokio::test(start_paused = true)]
async fn a_connect_whose_intent_cannot_be_saved_is_refused_and_changes_nothing() {
    let h = Helper::start().await;
    let intent = IntentStore::new(&h.dir.path().join("state")).path();
    std::fs::create_dir_all(intent.join("in-the-way")).unwrap();
    let mark = h.world.len();
    let refused = h.connect(server(1), vec![]).await.unwrap_err();
    assert!(refused.message.contains("saving"), "{refused:?}");
    h.run(SECOND, false).await;
    assert_eq!(h.state(), TunnelState::Disconnected);
    assert!(h.world.since(mark).is_empty());
}

// The managed policy, enforced by the daemon itself.

#[cfg(unix)]
#[tokio::test(start_paused = true)]
async fn a_managed_policy_raises_the_kill_switch_and_refuses_weaker_settings() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let policy = etc.join(underpass_trust::system::POLICY_FILE);
    std::fs::write(
        &policy,
        r#"{"organization": "ACME IT", "min_kill_switch": "lockdown", "lan_access_allowed": false}"#,
    )
    .unwrap();
    std::fs::set_permissions(&etc, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o644)).unwrap();
    let h = Helper::start_in(dir, |_| {}).await;
    h.connected(server(1), vec![]).await;
    assert_eq!(h.status().kill_switch, KillSwitchMode::Lockdown);
    let off = h
        .request(|r| Command::SetKillSwitch(KillSwitchMode::Off, r))
        .await
        .unwrap_err();
    assert!(off.message.contains("ACME IT"), "{off:?}");
    let lan = h
        .request(|r| Command::SetLanAccess(true, r))
        .await
        .unwrap_err();
    assert!(lan.message.contains("ACME IT"), "{lan:?}");
    h.disconnect().await.unwrap();
    assert_eq!(
        h.world.entries().last().map(String::as_str),
        Some("firewall: block"),
        "lockdown holds after the disconnect"
    );
}
