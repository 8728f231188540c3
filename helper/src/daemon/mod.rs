//! The actor that owns the tunnel: it feeds the state machine, carries out its effects through
//! the data plane and the routing backend, and publishes status and events.
//!
//! All changes to the system happen in this one task, in order. IPC connections only send it
//! commands and read the published status, so no client can interleave two setups.
//!
//! The actor is here; the session's bring-up (`bringup.rs`), the healing (`healing.rs`), the
//! services beside the tunnel (`services.rs`) and the status snapshot (`snapshot.rs`) are
//! files of their own. It is written against the backends' traits (`platform.rs`), so its unit
//! tests (`tests.rs`) run it whole on recording fakes and simulated time.

mod bringup;
mod healing;
mod platform;
mod services;
mod snapshot;
#[cfg(test)]
mod tests;

pub use platform::{Os, Platform};

use bringup::{DnsTasks, Lookups};

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures::FutureExt;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use underpass_proto::{
    DnsStatus, DoctorOptions, DoctorReport, ErrorBody, ErrorCode, Event, KillSwitchMode,
    ProbeCandidate, ProbeResult, ReconnectReason, ReconnectStatus, SelfTestKind, SelfTestOptions,
    SelfTestReport, SessionPolicy, SessionRequest, Status, TunnelConfig,
};

use crate::dns::{DnsConfig, DnsManager, DnsPaths};
use crate::doctor;
use crate::failover;
use crate::firewall::{self, Firewall, FirewallPolicy, TunnelHole};
use crate::health::{self, Check, Debounce, Liveness, Rung, SleepWatch};
use crate::intent::{Intent, IntentStore};
use crate::policy;
use crate::power::{self, PowerEvent};
use crate::routes::{RouteLookup, RouteManager, RoutePlan};
use crate::selftest;
use crate::state::{Effect, Input, State};
use crate::timing::ConnectSteps;
use crate::tunnel::peers::{PeerSpec, Roaming};
use crate::tunnel::{mtu, probe, DataPlaneConfig, Plane, Resolvers};

const TICK: Duration = Duration::from_millis(100);
/// Counters go to subscribers, and liveness is checked, every this many ticks (a second).
const STATS_EVERY: u32 = (health::MONITOR_EVERY.as_millis() / TICK.as_millis()) as u32;
/// On a resume, a handshake older than this is renewed at once.
const RESUME_HANDSHAKE_AGE: Duration = Duration::from_secs(120);

type Reply = oneshot::Sender<Result<(), ErrorBody>>;

pub enum Command {
    /// The server to use first, and the rest of the user's choice (`failover`).
    Connect(Box<TunnelConfig>, Vec<TunnelConfig>, Reply),
    Disconnect(Reply),
    SetKillSwitch(KillSwitchMode, Reply),
    SetLanAccess(bool, Reply),
    SelfTest(
        u32,
        SelfTestKind,
        SelfTestOptions,
        oneshot::Sender<Result<SelfTestReport, ErrorBody>>,
    ),
    Probe(
        u32,
        Vec<ProbeCandidate>,
        oneshot::Sender<Result<Vec<ProbeResult>, ErrorBody>>,
    ),
    Shutdown(oneshot::Sender<()>),
    // The troubleshooter (helper/src/doctor/).
    Doctor(
        DoctorOptions,
        oneshot::Sender<Result<DoctorReport, ErrorBody>>,
    ),
    SetMtu(u16, Reply),
}

pub struct Settings {
    pub handshake_timeout: Duration,
    pub interface_prefix: String,
    pub state_dir: std::path::PathBuf,
    pub resolv_conf: std::path::PathBuf,
    /// IT's directory: pinned keys and the managed policy (issue 9).
    pub system_dir: std::path::PathBuf,
    /// The bus where logind's sleep signals are followed, instead of the system bus (tests).
    #[cfg(target_os = "linux")]
    pub logind_bus: Option<String>,
}

struct Session<P: Platform> {
    plane: P::Plane,
    routes: P::Routes,
    plan: RoutePlan,
    hole: TunnelHole,
    /// Whether the tunnel sets DNS, and once it is set, how.
    dns_wanted: bool,
    dns: Option<DnsStatus>,
    /// Setting DNS, in a task beside the actor (`bringup.rs`); the session is not connected
    /// until it is done.
    dns_task: Option<bringup::DnsTask>,
    mtu: u16,
    addresses: Vec<ipnet::IpNet>,
    started: Instant,
}

impl<P: Platform> std::fmt::Debug for Session<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("interface", &self.plan.interface)
            .field("endpoint", &self.endpoint())
            .finish_non_exhaustive()
    }
}

impl<P: Platform> Session<P> {
    /// True once nothing is left to do before the session may count as connected.
    fn dns_settled(&self) -> bool {
        self.dns_task.is_none()
    }

    /// The first peer's endpoint, where it roamed to: the server whose path decides online or
    /// offline.
    fn endpoint(&self) -> Option<std::net::SocketAddr> {
        self.plane.peer_status().first().and_then(|p| p.endpoint)
    }
}

/// Now, on the runtime's clock: the real one, or the simulated one of the unit tests.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// What the daemon keeps to notice trouble and pace the healing; see [`crate::health`].
struct Healing {
    /// Watches the session while connected.
    liveness: Option<Liveness>,
    /// Authenticated packets counted when the current reconnect attempt began; more means the
    /// server answers again.
    rx_mark: u64,
    /// The last attempt's error, for the status.
    last_error: Option<String>,
    network: Debounce,
    changes: Option<mpsc::UnboundedReceiver<()>>,
    sleep: SleepWatch,
    /// The path to the server at the last check.
    path: Option<RouteLookup>,
    unreachable: u64,
    /// When the last handshake was forced while healing.
    forced_at: Option<Instant>,
    /// The system's sleep and resume events (`power`), and one resume acted on once.
    power: Option<power::PowerEvents>,
    resumes: power::ResumeGate,
}

pub struct Daemon<P: Platform> {
    settings: Settings,
    /// The tunnel's state, and the session it holds.
    state: State<Session<P>>,
    /// What the user asked for; persisted on every change.
    intent: Intent,
    store: IntentStore,
    firewall: P::Firewall,
    /// The firewall policy in force: `None` while unknown (at start, or after a failure).
    firewall_applied: Option<Option<FirewallPolicy>>,
    /// The resolver's configuration, shared with the task that sets it (`bringup.rs`).
    dns: Arc<tokio::sync::Mutex<P::Dns>>,
    dns_method: &'static str,
    /// The system's own resolvers as last read: while DNS is being set, the backend is busy,
    /// and these are what it had before.
    resolvers: Vec<std::net::IpAddr>,
    dns_tasks: DnsTasks,
    /// The system directory and the bundle rollback counter (`policy.rs`).
    system: policy::System,
    probes: Arc<probe::Prober>,
    self_tests: Arc<selftest::gate::Gate>,
    healing: Healing,
    /// The endpoint lookups of a bring-up in progress, off the actor.
    lookups: Lookups,
    status: watch::Sender<Status>,
    events: broadcast::Sender<Event>,
}

impl<P: Platform> Daemon<P> {
    pub async fn new(
        settings: Settings,
        status: watch::Sender<Status>,
        events: broadcast::Sender<Event>,
    ) -> Result<Daemon<P>> {
        let store = IntentStore::new(&settings.state_dir);
        let dns = P::Dns::new(DnsPaths {
            resolv_conf: settings.resolv_conf.clone(),
            state_dir: settings.state_dir.clone(),
        });
        let changes = match P::Routes::watch_changes() {
            Ok(rx) => Some(rx),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "not watching network changes");
                None
            }
        };
        Ok(Daemon {
            healing: Healing {
                liveness: None,
                rx_mark: 0,
                last_error: None,
                network: Debounce::default(),
                changes,
                sleep: SleepWatch::new(P::suspended_so_far()),
                path: None,
                unreachable: 0,
                forced_at: None,
                power: P::power(&settings),
                resumes: power::ResumeGate::default(),
            },
            firewall: P::Firewall::open().await?,
            system: policy::System::new(&settings.system_dir, &settings.state_dir),
            settings,
            state: State::Disconnected,
            intent: Intent::default(),
            store,
            firewall_applied: None,
            dns_method: dns.method(),
            resolvers: dns.system_resolvers(),
            dns: Arc::new(tokio::sync::Mutex::new(dns)),
            dns_tasks: DnsTasks::default(),
            probes: Arc::default(),
            self_tests: Arc::default(),
            lookups: Lookups::default(),
            status,
            events,
        })
    }

    /// Picks up where the last helper left off: reconnects, keeps blocking, or opens up, as the
    /// persisted intent says. An unreadable intent blocks rather than guess.
    ///
    /// `ready` fires as soon as the kill switch the intent calls for is in force, before a
    /// wanted tunnel's (possibly slow) bring-up.
    async fn reconcile(&mut self, ready: oneshot::Sender<()>) {
        match self.store.load() {
            Ok(Some(intent)) => {
                self.intent = intent;
                // A managed policy installed since may require more than was saved.
                self.hold_to_policy();
            }
            Ok(None) => {}
            Err(e) => {
                let reason = format!("{e:#}. Blocking all traffic until you connect or disconnect");
                tracing::error!("{reason}");
                self.state = State::Error { reason };
            }
        }
        tracing::info!(
            kill_switch = %self.intent.kill_switch,
            reconnect = self.intent.wanted.is_some(),
            "reconciling with the persisted intent"
        );
        if let Some(config) = &self.intent.wanted {
            let profile = config.profile.clone();
            if let Err(e) = self.hold_firewall().await {
                tracing::error!(error = %format!("{e:#}"), "firewall before reconnecting");
            }
            let _ = ready.send(());
            self.feed(Input::ConnectRequested { profile }).await;
        } else {
            if let Err(e) = self.dns.lock().await.restore().await {
                tracing::error!(error = %format!("{e:#}"), "restoring DNS left by an earlier run");
            }
            self.system_resolvers();
            // A failure is logged and shows in the status as an unknown firewall state.
            let _ = self.enforce_firewall(None).await;
            self.publish_state();
            let _ = ready.send(());
        }
    }

    fn save_intent(&self) -> Result<(), ErrorBody> {
        self.store.save(&self.intent).map_err(|e| {
            ErrorBody::new(
                ErrorCode::Internal,
                format!("saving the helper's state: {e:#}"),
            )
        })
    }

    /// True while the user wants a tunnel: the kill switch in `auto` blocks then.
    fn wants_connection(&self) -> bool {
        self.state.wants_connection()
    }

    /// Makes the firewall match the mode, the state and the tunnel (`hole`, or the live
    /// session's). Nothing changes mid-teardown: the next state decides.
    async fn enforce_firewall(&mut self, hole: Option<&TunnelHole>) -> Result<()> {
        if matches!(self.state, State::Disconnecting { .. }) {
            return Ok(());
        }
        let helper_dns = self.helper_dns();
        let hole = hole.or(self.state.session().map(|s| &s.hole));
        let want = firewall::desired(
            self.intent.kill_switch,
            self.wants_connection(),
            hole,
            self.intent.lan_access,
            Some(&helper_dns),
        );
        if self.firewall_applied.as_ref() == Some(&want) {
            return Ok(());
        }
        let result = match &want {
            Some(policy) => self.firewall.apply(policy).await,
            None => self.firewall.remove().await,
        };
        match result {
            Ok(()) => {
                tracing::info!(firewall = ?firewall::state_of(want.as_ref()), "firewall");
                self.firewall_applied = Some(want);
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "firewall");
                self.firewall_applied = None;
                Err(e)
            }
        }
    }

    /// Stops for good: the tunnel goes down, but the user's intent stays, and so does the
    /// kill switch's block when the intent calls for it.
    async fn shutdown(&mut self) {
        self.lookups.cancel();
        let state = std::mem::replace(&mut self.state, State::Disconnected);
        if let Some(session) = state.into_session() {
            self.tear_down(session).await;
        }
        if let Err(e) = self.hold_firewall().await {
            tracing::error!(error = %format!("{e:#}"), "firewall at shutdown");
        }
    }

    /// Makes the firewall what the persisted intent calls for with no tunnel up: blocking when a
    /// tunnel is wanted (or in lockdown), open otherwise. At shutdown, and at start before a
    /// wanted tunnel is brought up again (after a reboot the old table is gone).
    async fn hold_firewall(&mut self) -> Result<()> {
        let helper_dns = self.helper_dns();
        let want = firewall::desired(
            self.intent.kill_switch,
            self.intent.wanted.is_some(),
            None,
            self.intent.lan_access,
            Some(&helper_dns),
        );
        match &want {
            Some(policy) => self.firewall.apply(policy).await?,
            None => self.firewall.remove().await?,
        }
        self.firewall_applied = Some(want);
        Ok(())
    }

    /// Serves commands until shut down. `ready` fires once the persisted intent is reconciled
    /// (the kill switch in force), which the service manager is told before the network starts.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>, ready: oneshot::Sender<()>) {
        self.reconcile(ready).await;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u32 = 0;
        loop {
            let handshakes = self.state.session().map(|s| s.plane.handshakes());
            let changes = self.healing.changes.as_mut();
            let power = &mut self.healing.power;
            let lookups = &mut self.lookups.done;
            let dns_sets = &mut self.dns_tasks.done;
            tokio::select! {
                _ = async {
                    match &handshakes {
                        Some(n) => n.notified().await,
                        None => std::future::pending().await,
                    }
                } => self.on_tick(false).await,
                change = async {
                    match changes {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => match change {
                    Some(()) => self.healing.network.changed(now()),
                    None => self.healing.changes = None,
                },
                event = power::next(power) => self.on_power(event).await,
                Some(resolved) = lookups.recv() => self.on_resolved(resolved).await,
                Some(set) = dns_sets.recv() => self.on_dns_set(set).await,
                command = commands.recv() => match command {
                    Some(Command::Connect(mut config, mut alternatives, reply)) => {
                        if let Err(e) = failover::admit(&mut config, &mut alternatives, &mut self.system, policy::now()) {
                            let _ = reply.send(Err(e));
                            continue;
                        }
                        let profile = config.profile.clone();
                        let previous = self.intent.clone();
                        self.intent.wanted = Some(*config);
                        self.intent.rotation = failover::Rotation::new(alternatives);
                        self.hold_to_policy();
                        // A connect whose intent is not on disk could not be resumed or held
                        // to after a crash: it is refused, never carried out silently.
                        if let Err(e) = self.save_intent() {
                            self.intent = previous;
                            let _ = reply.send(Err(policy::refused_unsaved(e)));
                            continue;
                        }
                        let _ = reply.send(Ok(()));
                        self.feed(Input::ConnectRequested { profile }).await;
                    }
                    Some(Command::Disconnect(reply)) => {
                        self.intent.wanted = None;
                        self.intent.rotation = failover::Rotation::default();
                        let saved = self.save_intent();
                        self.feed(Input::DisconnectRequested).await;
                        let _ = reply.send(saved);
                    }
                    Some(Command::SetKillSwitch(mode, reply)) => {
                        let request = SessionRequest {
                            kill_switch: mode,
                            split_tunnel: false,
                            lan_access: false,
                        };
                        if let Err(e) = self.check_policy(&request) {
                            let _ = reply.send(Err(e));
                            continue;
                        }
                        self.intent.kill_switch = mode;
                        let _ = reply.send(self.apply_setting().await);
                    }
                    Some(Command::SetLanAccess(allow, reply)) => {
                        let request = SessionRequest {
                            kill_switch: KillSwitchMode::Lockdown,
                            split_tunnel: false,
                            lan_access: allow,
                        };
                        if let Err(e) = self.check_policy(&request) {
                            let _ = reply.send(Err(e));
                            continue;
                        }
                        self.intent.lan_access = allow;
                        let _ = reply.send(self.apply_setting().await);
                    }
                    Some(Command::SelfTest(uid, test, options, reply)) => self.self_test(uid, test, options, reply),
                    Some(Command::Probe(uid, candidates, reply)) => self.probe(uid, candidates, reply),
                    Some(Command::Doctor(options, reply)) => self.doctor(options, reply),
                    Some(Command::SetMtu(mtu, reply)) => {
                        let _ = reply.send(self.set_mtu(mtu).await);
                    }
                    Some(Command::Shutdown(reply)) => {
                        self.shutdown().await;
                        let _ = reply.send(());
                        return;
                    }
                    None => {
                        self.shutdown().await;
                        return;
                    }
                },
                _ = tick.tick() => {
                    ticks = ticks.wrapping_add(1);
                    self.on_tick(ticks.is_multiple_of(STATS_EVERY)).await;
                }
            }
        }
    }

    /// The policy of the signed profile the user wants connected, else the machine's.
    fn policy(&self) -> Option<SessionPolicy> {
        self.system.in_force(self.intent.wanted.as_ref())
    }

    /// Refuses a settings change that the policy in force forbids.
    fn check_policy(&mut self, request: &SessionRequest) -> Result<(), ErrorBody> {
        self.system
            .check_setting(self.intent.wanted.as_ref(), request)
    }

    /// Raises the settings to what a newly wanted profile's policy requires: the kill switch to
    /// its minimum, LAN access off when it is not allowed. (Split tunneling against the policy
    /// is refused when the request is validated.)
    fn hold_to_policy(&mut self) {
        let Some(p) = self.policy() else {
            return;
        };
        let min = p.policy.effective_min_kill_switch();
        if self.intent.kill_switch < min {
            tracing::info!(from = %self.intent.kill_switch, to = %min, organization = %p.organization, "kill switch raised by policy");
            self.intent.kill_switch = min;
        }
        if self.intent.lan_access && !p.policy.lan_access_allowed {
            tracing::info!(organization = %p.organization, "LAN access turned off by policy");
            self.intent.lan_access = false;
        }
    }

    /// The helper's own DNS hole (issue 9): its marked sockets to the system's resolvers.
    fn helper_dns(&mut self) -> firewall::HelperDns {
        firewall::HelperDns {
            mark: firewall::HELPER_MARK,
            resolvers: self.system_resolvers(),
        }
    }

    /// The system's own resolvers: read afresh unless DNS is being set right now.
    fn system_resolvers(&mut self) -> Vec<std::net::IpAddr> {
        if let Ok(dns) = self.dns.try_lock() {
            self.resolvers = dns.system_resolvers();
        }
        self.resolvers.clone()
    }

    /// Persists a changed setting and makes the firewall follow it at once.
    async fn apply_setting(&mut self) -> Result<(), ErrorBody> {
        self.save_intent()?;
        let applied = self.enforce_firewall(None).await;
        self.publish_state();
        applied.map_err(|e| ErrorBody::new(ErrorCode::Internal, format!("{e:#}")))
    }

    async fn on_tick(&mut self, publish_stats: bool) {
        let now = now();
        if self.healing.network.due(now) {
            self.on_network_change(now, false).await;
        }
        if publish_stats {
            self.monitor(now).await;
        }
        let Some(session) = self.state.session() else {
            if publish_stats {
                let status = self.snapshot();
                self.status.send_replace(status.clone());
                // Healing without a session still counts its seconds for subscribers.
                if status.reconnect.is_some() {
                    let _ = self.events.send(Event::Statistics {
                        status: Box::new(status),
                    });
                }
            }
            return;
        };
        if matches!(self.state, State::Connecting { .. }) {
            if session.dns_settled() && session.plane.sample().handshake_age.is_some() {
                self.feed(Input::HandshakeCompleted).await;
                return;
            }
            if now.saturating_duration_since(session.started) > self.settings.handshake_timeout {
                let secs = self.settings.handshake_timeout.as_secs();
                let (error, reason) = if session.plane.sample().handshake_age.is_some() {
                    (
                        format!(
                            "the server answered, but setting DNS through {} did not finish \
                             within {secs} s",
                            self.dns_method
                        ),
                        ReconnectReason::SetupFailed,
                    )
                } else {
                    let endpoint = session.endpoint().map_or("?".into(), |e| e.to_string());
                    (
                        format!(
                            "no handshake with {endpoint} within {secs} s: the server did not \
                             answer. Check that it is reachable and that the profile's keys \
                             are current"
                        ),
                        ReconnectReason::ServerNotResponding,
                    )
                };
                self.healing.last_error = Some(error);
                self.lose(reason, now).await;
                return;
            }
        }
        if publish_stats {
            let has_dns = self.state.session().is_some_and(|s| s.dns.is_some());
            // Not while DNS is being set (the backend is busy): the next second.
            let dns = self.dns.try_lock();
            if let (true, Ok(mut dns)) = (has_dns, dns) {
                match dns.reassert().await {
                    Ok(true) => tracing::warn!(
                        file = %self.settings.resolv_conf.display(),
                        "someone rewrote the DNS configuration; put the tunnel's back"
                    ),
                    Ok(false) => {}
                    Err(e) => tracing::error!(error = %format!("{e:#}"), "re-asserting DNS"),
                }
            }
        }
        // Status requests read this snapshot, so it is kept fresh on every tick; subscribers
        // get counters once a second.
        let status = self.snapshot();
        self.status.send_replace(status.clone());
        if publish_stats {
            let _ = self.events.send(Event::Statistics {
                status: Box::new(status),
            });
        }
    }

    /// Runs the machine until it rests, carrying out each effect.
    async fn feed(&mut self, input: Input<Session<P>>) {
        let mut next = Some(input);
        while let Some(input) = next.take() {
            let from = self.state.public();
            let state = std::mem::replace(&mut self.state, State::Disconnected);
            let effect = match state.on(input) {
                Ok((state, effect)) => {
                    self.state = state;
                    effect
                }
                Err((state, input)) => {
                    self.state = state;
                    tracing::debug!(?input, state = ?self.state, "input ignored");
                    if let Input::Up(orphan) = input {
                        // Set up for a state that has moved on: nobody holds it.
                        self.tear_down(orphan).await;
                    }
                    continue;
                }
            };
            if from != self.state.public() {
                tracing::info!(%from, to = %self.state.public(), "state");
            }
            match &self.state {
                State::Connected { session, .. } => {
                    self.healing.last_error = None;
                    self.healing.liveness = Some(Liveness::new(now(), session.plane.sample()));
                }
                State::Disconnected | State::Error { .. } => {
                    self.healing.liveness = None;
                    self.healing.last_error = None;
                }
                _ => {}
            }
            // Bringing a tunnel up applies the kill switch itself, with the endpoint's hole,
            // before the first packet (set_up); a failure there blocks. Not blocking
            // everything first saves one nftables transaction (about 20 ms of every connect);
            // a bring-up that must look a name up first blocks while it does.
            if !matches!(effect, Effect::BringUp) {
                let _ = self.enforce_firewall(None).await;
            }
            self.publish_state();
            match effect {
                Effect::None => {}
                Effect::TearDown(session) => {
                    self.lookups.cancel();
                    if let Some(session) = session {
                        self.tear_down(session).await;
                    }
                    next = Some(Input::TornDown);
                }
                Effect::BringUp => {
                    let Some(config) = self.intent.wanted.clone() else {
                        next = Some(Input::Failed(
                            "internal: no configuration to connect".into(),
                        ));
                        continue;
                    };
                    next = self.start_bring_up(config).await;
                }
            }
        }
    }
}
