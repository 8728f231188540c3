//! The actor that owns the tunnel: it feeds the state machine, carries out its effects through
//! the data plane and the routing backend, and publishes status and events.
//!
//! All changes to the system happen in this one task, in order. IPC connections only send it
//! commands and read the published status, so no client can interleave two setups.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures::FutureExt;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use underpass_proto::{
    DnsStatus, DoctorOptions, DoctorReport, ErrorBody, ErrorCode, Event, KillSwitchMode,
    PeerStatus, ProbeCandidate, ProbeResult, ReconnectReason, ReconnectStatus, SelfTestKind,
    SelfTestOptions, SelfTestReport, SessionPolicy, SessionRequest, Status, TunnelConfig,
};

use crate::dns::{DnsConfig, DnsManager, DnsPaths, PlatformDns};
use crate::doctor;
use crate::failover;
use crate::firewall::{self, Firewall, FirewallPolicy, PlatformFirewall, TunnelHole};
use crate::health::{self, Check, Debounce, Liveness, Rung, Sample, SleepWatch};
use crate::intent::{Intent, IntentStore};
use crate::policy;
use crate::power::{self, PowerEvent};
use crate::routes::{PlatformRoutes, RouteLookup, RouteManager, RoutePlan};
use crate::selftest;
use crate::state::{Effect, Input, State};
use crate::timing::ConnectSteps;
use crate::tunnel::peers::{PeerSpec, Roaming};
use crate::tunnel::{mtu, probe, resolve_endpoint, DataPlane, DataPlaneConfig, Resolvers};

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

struct Session {
    plane: DataPlane,
    routes: PlatformRoutes,
    plan: RoutePlan,
    hole: TunnelHole,
    dns: Option<DnsStatus>,
    mtu: u16,
    addresses: Vec<ipnet::IpNet>,
    started: Instant,
}

impl Session {
    /// The counters liveness reads, summed over the peers.
    fn sample(&self) -> Sample {
        let peers = self.plane.peers().peers();
        Sample {
            rx_packets: peers
                .iter()
                .map(|p| p.rx_packets.load(std::sync::atomic::Ordering::Relaxed))
                .sum(),
            tx_bytes: peers
                .iter()
                .map(|p| p.tx_bytes.load(std::sync::atomic::Ordering::Relaxed))
                .sum(),
            handshake_age: peers.iter().filter_map(|p| p.last_handshake()).min(),
        }
    }

    /// The first peer's endpoint, where it roamed to: the server whose path decides online or
    /// offline.
    fn endpoint(&self) -> Option<std::net::SocketAddr> {
        self.plane.peers().peers().first().map(|p| p.endpoint())
    }
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

pub struct Daemon {
    settings: Settings,
    state: State,
    /// What the user asked for; persisted on every change.
    intent: Intent,
    store: IntentStore,
    session: Option<Session>,
    firewall: PlatformFirewall,
    /// The firewall policy in force: `None` while unknown (at start, or after a failure).
    firewall_applied: Option<Option<FirewallPolicy>>,
    dns: PlatformDns,
    /// The system directory and the bundle rollback counter (`policy.rs`).
    system: policy::System,
    probes: Arc<probe::Prober>,
    self_tests: Arc<selftest::gate::Gate>,
    healing: Healing,
    /// Counts Connects and Disconnects as clients send them (ahead of the command queue).
    interrupts: watch::Receiver<u64>,
    status: watch::Sender<Status>,
    events: broadcast::Sender<Event>,
}

impl Daemon {
    pub async fn new(
        settings: Settings,
        status: watch::Sender<Status>,
        events: broadcast::Sender<Event>,
        interrupts: watch::Receiver<u64>,
    ) -> Result<Daemon> {
        let store = IntentStore::new(&settings.state_dir);
        let dns = PlatformDns::new(DnsPaths {
            resolv_conf: settings.resolv_conf.clone(),
            state_dir: settings.state_dir.clone(),
        });
        let changes = match PlatformRoutes::watch_changes() {
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
                sleep: SleepWatch::new(health::suspended_so_far()),
                path: None,
                unreachable: 0,
                forced_at: None,
                power: power::watch(&settings),
                resumes: power::ResumeGate::default(),
            },
            firewall: PlatformFirewall::open().await?,
            system: policy::System::new(&settings.system_dir, &settings.state_dir),
            settings,
            state: State::Disconnected,
            intent: Intent::default(),
            store,
            session: None,
            firewall_applied: None,
            dns,
            probes: Arc::default(),
            self_tests: Arc::default(),
            interrupts,
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
            if let Err(e) = self.dns.restore().await {
                tracing::error!(error = %format!("{e:#}"), "restoring DNS left by an earlier run");
            }
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
        let hole = hole.or(self.session.as_ref().map(|s| &s.hole));
        let want = firewall::desired(
            self.intent.kill_switch,
            self.wants_connection(),
            hole,
            self.intent.lan_access,
            Some(&self.helper_dns()),
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
        self.tear_down().await;
        if let Err(e) = self.hold_firewall().await {
            tracing::error!(error = %format!("{e:#}"), "firewall at shutdown");
        }
    }

    /// Makes the firewall what the persisted intent calls for with no tunnel up: blocking when a
    /// tunnel is wanted (or in lockdown), open otherwise. At shutdown, and at start before a
    /// wanted tunnel is brought up again (after a reboot the old table is gone).
    async fn hold_firewall(&mut self) -> Result<()> {
        let want = firewall::desired(
            self.intent.kill_switch,
            self.intent.wanted.is_some(),
            None,
            self.intent.lan_access,
            Some(&self.helper_dns()),
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
            let handshakes = self.session.as_ref().map(|s| s.plane.handshakes());
            let changes = self.healing.changes.as_mut();
            let power = &mut self.healing.power;
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
                    Some(()) => self.healing.network.changed(Instant::now()),
                    None => self.healing.changes = None,
                },
                event = power::next(power) => self.on_power(event).await,
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

    /// Starts a self-test in its own task (it takes seconds; the daemon keeps serving), with a
    /// view of the tunnel as it is now; the gate runs one at a time and budgets them.
    fn self_test(
        &self,
        uid: u32,
        test: SelfTestKind,
        options: SelfTestOptions,
        reply: oneshot::Sender<Result<SelfTestReport, ErrorBody>>,
    ) {
        if let Err(reason) = selftest::validate(&options) {
            let _ = reply.send(Err(ErrorBody::new(ErrorCode::InvalidConfig, reason)));
            return;
        }
        let tunnel = self.session.as_ref().map(|s| selftest::TunnelView {
            interface: s.plane.interface().to_string(),
            endpoints: s.hole.endpoints.clone(),
            paused: s.plane.pause_switch(),
        });
        let (lan_access, events) = (self.intent.lan_access, self.events.clone());
        let run = |allow_drop| {
            let ctx = selftest::Context {
                tunnel,
                lan_access,
                events,
                allow_drop,
            };
            selftest::run(test, options.clone(), ctx)
                .map(|r| {
                    r.map_err(|e| {
                        ErrorBody::new(
                            ErrorCode::Internal,
                            format!("self-test failed to run: {e:#}"),
                        )
                    })
                })
                .boxed()
        };
        match self
            .self_tests
            .admit(uid, test, &options, Instant::now(), run)
        {
            Ok(admitted) => {
                tokio::spawn(async move {
                    let _ = reply.send(admitted.outcome().await);
                });
            }
            Err(busy) => {
                let _ = reply.send(Err(busy));
            }
        }
    }

    /// Runs the troubleshooter in its own task, on the status and configuration as they are now.
    fn doctor(
        &self,
        options: DoctorOptions,
        reply: oneshot::Sender<Result<DoctorReport, ErrorBody>>,
    ) {
        if let Err(reason) = doctor::validate(&options) {
            let _ = reply.send(Err(ErrorBody::new(ErrorCode::InvalidConfig, reason)));
            return;
        }
        let ctx = doctor::Context {
            status: self.snapshot(),
            config: self.intent.wanted.clone(),
            resolv_conf: self.settings.resolv_conf.clone(),
        };
        tokio::spawn(async move {
            let result = doctor::run(ctx, options).await.map_err(|e| {
                ErrorBody::new(
                    ErrorCode::Internal,
                    format!("the doctor failed to run: {e:#}"),
                )
            });
            let _ = reply.send(result);
        });
    }

    /// Applies an MTU the doctor measured to the live tunnel. The profile's own `MTU =` wins,
    /// and the data plane's buffers are sized for the MTU it started with, so only lowering is
    /// allowed (a reconnect derives it afresh).
    async fn set_mtu(&mut self, mtu: u16) -> Result<(), ErrorBody> {
        let invalid = |m: String| Err(ErrorBody::new(ErrorCode::InvalidConfig, m));
        if let Some(explicit) = self.intent.wanted.as_ref().and_then(|c| c.mtu) {
            return invalid(format!(
                "the profile sets MTU = {explicit}, which always wins; change it in the profile"
            ));
        }
        let Some(session) = self.session.as_mut() else {
            return invalid("there is no tunnel".into());
        };
        let floor = mtu::floor(session.addresses.iter().any(|a| a.addr().is_ipv6()));
        if !(floor..=session.mtu).contains(&mtu) {
            return invalid(format!(
                "the MTU can be set between {floor} and the current {}; reconnect to derive it afresh",
                session.mtu
            ));
        }
        doctor::set_mtu(session.plane.interface(), mtu)
            .await
            .map_err(|e| ErrorBody::new(ErrorCode::Internal, format!("{e:#}")))?;
        tracing::info!(from = session.mtu, to = mtu, "tunnel MTU set");
        session.mtu = mtu;
        self.publish_state();
        Ok(())
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

    /// Measures servers in their own task, held to the kill switch (`tunnel::probe`).
    fn probe(
        &self,
        uid: u32,
        candidates: Vec<ProbeCandidate>,
        reply: oneshot::Sender<Result<Vec<ProbeResult>, ErrorBody>>,
    ) {
        let route = match &self.session {
            Some(s) => probe::Route::Tunnel(s.hole.clone()),
            // An unknown firewall state counts as blocking: admit, or fail clearly.
            None => probe::Route::Direct {
                blocking: !matches!(self.firewall_applied, Some(None)),
                via: Resolvers::helper(self.dns.system_resolvers()),
            },
        };
        let prober = self.probes.clone();
        tokio::spawn(async move {
            let _ = reply.send(prober.measure(uid, candidates, route).await);
        });
    }

    /// The helper's own DNS hole (issue 9): its marked sockets to the system's resolvers.
    fn helper_dns(&self) -> firewall::HelperDns {
        firewall::HelperDns {
            mark: firewall::HELPER_MARK,
            resolvers: self.dns.system_resolvers(),
        }
    }

    /// Persists a changed setting and makes the firewall follow it at once.
    async fn apply_setting(&mut self) -> Result<(), ErrorBody> {
        self.save_intent()?;
        let applied = self.enforce_firewall(None).await;
        self.publish_state();
        applied.map_err(|e| ErrorBody::new(ErrorCode::Internal, format!("{e:#}")))
    }

    async fn on_tick(&mut self, publish_stats: bool) {
        let now = Instant::now();
        if self.healing.network.due(now) {
            self.on_network_change(now, false).await;
        }
        if publish_stats {
            self.monitor(now).await;
        }
        let Some(session) = &self.session else {
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
            let shaken = session
                .plane
                .peers()
                .peers()
                .iter()
                .any(|p| p.last_handshake().is_some());
            if shaken {
                self.feed(Input::HandshakeCompleted).await;
                return;
            }
            if session.started.elapsed() > self.settings.handshake_timeout {
                let endpoint = session.plane.peers().peers()[0].endpoint();
                self.healing.last_error = Some(format!(
                    "no handshake with {endpoint} within {} s: the server did not answer. \
                     Check that it is reachable and that the profile's keys are current",
                    self.settings.handshake_timeout.as_secs()
                ));
                self.lose(ReconnectReason::ServerNotResponding, now).await;
                return;
            }
        }
        if publish_stats {
            let has_dns = self.session.as_ref().is_some_and(|s| s.dns.is_some());
            if has_dns {
                match self.dns.reassert().await {
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

    /// Once a second: sleep detection, liveness while connected, the ladder while healing.
    async fn monitor(&mut self, now: Instant) {
        if self.healing.sleep.resumed(health::suspended_so_far()) {
            tracing::info!("resumed from sleep (the clock jumped)");
            self.on_resume(now).await;
        }
        let Some(session) = &self.session else {
            return self.climb_if_due(now).await;
        };
        let unreachable = session.plane.unreachable_sends();
        if unreachable > self.healing.unreachable {
            // The kernel refused a send for want of a path: look at the routes again now.
            self.healing.unreachable = unreachable;
            self.healing.network.changed(now);
        }
        let sample = session.sample();
        match self.state {
            State::Connected { .. } => {
                let liveness = self
                    .healing
                    .liveness
                    .get_or_insert_with(|| Liveness::new(now, sample));
                match liveness.observe(now, sample) {
                    Check::Fine => {}
                    Check::Probe => {
                        tracing::info!(
                            "no answer from the server lately: probing with a handshake"
                        );
                        session.plane.force_handshake();
                    }
                    Check::Dead(reason) => {
                        tracing::warn!(reason = reason.describe(), "the tunnel is dead");
                        self.healing.last_error = None;
                        self.lose(reason, now).await;
                    }
                }
            }
            State::Reconnecting { .. } if sample.rx_packets > self.healing.rx_mark => {
                tracing::info!("the server answers again");
                self.feed(Input::HandshakeCompleted).await;
            }
            _ => self.climb_if_due(now).await,
        }
    }

    /// The tunnel stopped working: start healing it, first rung at once.
    async fn lose(&mut self, reason: ReconnectReason, now: Instant) {
        self.feed(Input::Lost { reason, now }).await;
        if matches!(self.state, State::Reconnecting { .. }) {
            self.climb(Rung::ForceHandshake, 0).await;
        }
    }

    /// Runs the next rung of the ladder once the current attempt has had its time.
    async fn climb_if_due(&mut self, now: Instant) {
        let State::Reconnecting { ladder, .. } = &mut self.state else {
            return;
        };
        if let Some(rung) = ladder.on_tick(now) {
            let attempt = ladder.attempt;
            self.climb(rung, attempt).await;
            return;
        }
        // Between rungs, ask again every few seconds (WireGuard itself waits 5 s between
        // handshake retries): the server is then back in use within moments of answering.
        if let Some(s) = &self.session {
            let due = self
                .healing
                .forced_at
                .is_none_or(|t| now.duration_since(t) >= health::RETRY_HANDSHAKE_EVERY);
            if due {
                self.healing.forced_at = Some(now);
                s.plane.force_handshake();
            }
        }
    }

    async fn climb(&mut self, rung: Rung, attempt: u32) {
        tracing::info!(
            attempt = attempt + 1,
            action = rung.describe(),
            "reconnecting"
        );
        match (rung, &self.session) {
            (Rung::ForceHandshake, Some(s)) => {
                self.healing.rx_mark = s.sample().rx_packets;
                self.healing.forced_at = Some(Instant::now());
                s.plane.force_handshake();
            }
            // The next server of the user's choice (a named server is set up afresh), or a
            // new socket to the same one.
            _ => {
                self.next_server(rung);
                self.rebuild().await
            }
        }
        self.publish_state();
    }

    /// On the `NextServer` rung, makes the next server of the choice the wanted one (held to
    /// its policy, persisted); `rebuild` then sets it up, its endpoint in the kill switch
    /// before its first packet.
    fn next_server(&mut self, rung: Rung) {
        let Some(current) = self.intent.wanted.as_mut() else {
            return;
        };
        if !self.intent.rotation.on_rung(rung, current) {
            return;
        }
        let now_in_use = self.intent.rotation.in_use(current);
        tracing::info!(profile = %now_in_use.profile, server = ?now_in_use.server, endpoint = %now_in_use.endpoint, position = now_in_use.position, of = now_in_use.of, "moving to the next server of the choice");
        self.hold_to_policy();
        if let Err(e) = self.save_intent() {
            tracing::error!(error = %e, "saving the server in use");
        }
    }

    /// A fresh session for the wanted tunnel (new socket, new source port, fresh endpoint
    /// lookups) while the kill switch holds: the old session's rules stay until the new ones
    /// replace them.
    async fn rebuild(&mut self) {
        self.tear_down().await;
        let Some(config) = self.intent.wanted.clone() else {
            return;
        };
        match self.bring_up(&config).await {
            Ok(session) => {
                // The last error stays until the server answers: a session set up is not yet
                // a tunnel that works.
                self.healing.rx_mark = 0;
                self.session = Some(session);
            }
            Err(e) if e.downcast_ref::<Interrupted>().is_some() => {
                tracing::info!("reconnect attempt interrupted by a newer request");
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "reconnect attempt failed");
                let offline = e.downcast_ref::<NoRoute>().is_some();
                self.healing.last_error = Some(format!("{e:#}"));
                let _ = self.enforce_firewall(None).await;
                if offline {
                    self.feed(Input::NoRoute {
                        now: Instant::now(),
                    })
                    .await;
                }
            }
        }
    }

    /// The system is about to sleep, or woke up (`power`).
    async fn on_power(&mut self, event: PowerEvent) {
        match event {
            // The actor makes one system change at a time, so here it is between two: sleep
            // cuts none in half, and the intent on disk is current (saved on every change).
            PowerEvent::Suspending { ready } => {
                tracing::info!(state = %self.state.public(), "the machine is going to sleep");
                let _ = ready.send(());
            }
            PowerEvent::Resumed => {
                tracing::info!("resumed from sleep (the system says so)");
                self.on_resume(Instant::now()).await;
            }
        }
    }

    /// The machine woke up (however many sources say so, acted on once): probe the server at
    /// once with a handshake (its session may have expired while the clock that dates it stood
    /// still), look at the network as after a change, and put the tunnel's DNS back, which
    /// other daemons rewrite on wake.
    async fn on_resume(&mut self, now: Instant) {
        if !self.healing.resumes.admit(now) {
            return;
        }
        if let (Some(s), State::Connected { .. }) = (&self.session, &self.state) {
            s.plane.force_handshake();
        }
        self.on_network_change(now, true).await;
        if let Err(e) = self.dns.reassert().await {
            tracing::error!(error = %format!("{e:#}"), "re-asserting DNS after a resume");
        }
    }

    /// Links, addresses or routes changed (debounced), or the machine woke up: is the server
    /// still reachable, and by the same path?
    async fn on_network_change(&mut self, now: Instant, resumed: bool) {
        let reason = if resumed {
            ReconnectReason::ResumedFromSleep
        } else {
            ReconnectReason::NetworkChanged
        };
        let Some(session) = &self.session else {
            // Nothing to look at: if the helper waits or heals, try again at once.
            match self.state {
                State::Offline { .. } => {
                    self.feed(Input::RouteBack { now }).await;
                    self.climb(Rung::NewSocket, 0).await;
                }
                State::Reconnecting { ref mut ladder, .. } => {
                    ladder.reset(now, reason);
                    self.climb(Rung::NewSocket, 0).await;
                }
                _ => {}
            }
            return;
        };
        let Some(endpoint) = session.endpoint() else {
            return;
        };
        let path = session
            .routes
            .lookup(endpoint.ip(), Some(session.plan.fwmark))
            .await;
        let changed = match (&path, &self.healing.path) {
            (Some(a), Some(b)) => !a.same_path(b),
            (a, b) => a.is_some() != b.is_some(),
        };
        self.healing.path = path.clone();
        let online = path.is_some();
        session.plane.set_offline(!online);
        match (online, &mut self.state) {
            (
                false,
                State::Connecting { .. } | State::Connected { .. } | State::Reconnecting { .. },
            ) => {
                tracing::warn!(%endpoint, "no route reaches the server: offline");
                self.feed(Input::NoRoute { now }).await;
            }
            (true, State::Offline { .. }) => {
                tracing::info!(%endpoint, ?path, "a route to the server is back");
                self.feed(Input::RouteBack { now }).await;
                self.climb(Rung::ForceHandshake, 0).await;
            }
            (true, State::Connected { .. }) if changed || resumed => {
                tracing::info!(%endpoint, ?path, resumed, "the path to the server changed: handshaking at once");
                let stale = session
                    .sample()
                    .handshake_age
                    .is_none_or(|age| !resumed || age > RESUME_HANDSHAKE_AGE);
                if stale || changed {
                    session.plane.force_handshake();
                }
                if let Some(l) = &mut self.healing.liveness {
                    l.kick(now);
                }
            }
            (true, State::Reconnecting { ladder, .. }) if changed || resumed => {
                ladder.reset(now, reason);
                self.climb(Rung::ForceHandshake, 0).await;
            }
            _ => {}
        }
    }

    /// Runs the machine until it rests, carrying out each effect.
    async fn feed(&mut self, input: Input) {
        let mut next = Some(input);
        while let Some(input) = next.take() {
            let Some((state, effect)) = self.state.on(input.clone()) else {
                tracing::debug!(?input, state = ?self.state, "input ignored");
                continue;
            };
            tracing::info!(from = %self.state.public(), to = %state.public(), "state");
            self.state = state;
            match &self.state {
                State::Connected { .. } => {
                    let now = Instant::now();
                    self.healing.last_error = None;
                    self.healing.liveness = self
                        .session
                        .as_ref()
                        .map(|s| Liveness::new(now, s.sample()));
                }
                State::Disconnected | State::Error { .. } => {
                    self.healing.liveness = None;
                    self.healing.last_error = None;
                }
                _ => {}
            }
            // Bringing a tunnel up applies the kill switch itself, with the endpoint's hole,
            // before the first packet (bring_up); a failure there lands in Error, which
            // blocks. Not blocking everything first saves one nftables transaction (about
            // 20 ms of every connect) and lets a hostname endpoint resolve in auto mode.
            if effect != Effect::BringUp {
                let _ = self.enforce_firewall(None).await;
            }
            self.publish_state();
            match effect {
                Effect::None => {}
                Effect::TearDown => {
                    self.tear_down().await;
                    next = Some(Input::TornDown);
                }
                Effect::BringUp => {
                    let Some(config) = self.intent.wanted.clone() else {
                        next = Some(Input::Failed(
                            "internal: no configuration to connect".into(),
                        ));
                        continue;
                    };
                    match self.bring_up(&config).await {
                        Ok(session) => self.session = Some(session),
                        Err(e) if e.downcast_ref::<Interrupted>().is_some() => {
                            tracing::info!("connect interrupted by a newer request");
                        }
                        Err(e) => {
                            // Whatever failed here (a lookup, the network, the system) may work
                            // on the next attempt; the kill switch blocks meanwhile.
                            tracing::warn!(error = %format!("{e:#}"), "connect failed");
                            let now = Instant::now();
                            next = Some(if e.downcast_ref::<NoRoute>().is_some() {
                                Input::NoRoute { now }
                            } else {
                                Input::Lost {
                                    reason: ReconnectReason::SetupFailed,
                                    now,
                                }
                            });
                            self.healing.last_error = Some(format!("{e:#}"));
                        }
                    }
                }
            }
        }
    }

    fn publish_state(&self) {
        let status = self.snapshot();
        self.status.send_replace(status.clone());
        let _ = self.events.send(Event::State {
            status: Box::new(status),
        });
    }

    fn snapshot(&self) -> Status {
        let mut status = Status::disconnected();
        status.state = self.state.public();
        status.profile = self.state.profile().map(str::to_string);
        status.error = self.state.error().map(str::to_string);
        status.kill_switch = self.intent.kill_switch;
        status.lan_access = self.intent.lan_access;
        status.policy = self.policy();
        status.managed = self.system.managed_status();
        status.reconnect = self.reconnect_status();
        status.server_in_use = self
            .intent
            .wanted
            .as_ref()
            .filter(|_| self.wants_connection())
            .map(|c| self.intent.rotation.in_use(c));
        status.firewall =
            firewall::state_of(self.firewall_applied.as_ref().and_then(Option::as_ref));
        if let Some(s) = &self.session {
            status.dns = s.dns.clone();
            let peers = s.plane.peers();
            let (rx, tx) = peers.totals();
            status.interface = Some(s.plane.interface().to_string());
            status.addresses = s.addresses.clone();
            status.rx_bytes = rx;
            status.tx_bytes = tx;
            status.mtu = Some(s.mtu);
            status.routing = Some(s.plan.summary());
            status.peers = peers
                .peers()
                .iter()
                .map(|p| PeerStatus {
                    public_key: p.public_key.clone(),
                    endpoint: Some(p.endpoint()),
                    allowed_ips: p.allowed_ips.clone(),
                    rx_bytes: p.rx_bytes.load(std::sync::atomic::Ordering::Relaxed),
                    tx_bytes: p.tx_bytes.load(std::sync::atomic::Ordering::Relaxed),
                    last_handshake_secs: p.last_handshake().map(|d| d.as_secs()),
                })
                .collect();
            status.endpoint = status.peers.first().and_then(|p| p.endpoint);
            status.last_handshake_secs = status
                .peers
                .iter()
                .filter_map(|p| p.last_handshake_secs)
                .min();
        }
        status
    }

    fn reconnect_status(&self) -> Option<ReconnectStatus> {
        let last_answer_secs = self
            .healing
            .liveness
            .as_ref()
            .map(|l| l.last_answer().elapsed().as_secs());
        let last_error = self.healing.last_error.clone();
        match &self.state {
            State::Reconnecting { ladder, .. } => Some(ReconnectStatus {
                reason: ladder.reason,
                attempt: ladder.attempt.saturating_add(1),
                since_secs: ladder.since.elapsed().as_secs(),
                last_answer_secs,
                action: ladder.rung().describe().to_string(),
                last_error,
            }),
            State::Offline { since, .. } => Some(ReconnectStatus {
                reason: ReconnectReason::NoNetwork,
                attempt: 0,
                since_secs: since.elapsed().as_secs(),
                last_answer_secs,
                action: "waiting for a network that reaches the server".to_string(),
                last_error,
            }),
            _ => None,
        }
    }

    async fn bring_up(&mut self, config: &TunnelConfig) -> Result<Session> {
        // Lookups may hang on a dead resolver: a Connect or Disconnect sent meanwhile wins.
        let mut steps = ConnectSteps::start();
        self.interrupts.borrow_and_update();
        let mut interrupts = self.interrupts.clone();
        // The helper's own marked lookups, to the system's resolvers: the kill switch admits them.
        let resolvers = Resolvers::helper(self.dns.system_resolvers());
        let peers = tokio::select! {
            peers = resolve_peers(config, &resolvers) => peers?,
            _ = interrupts.changed() => return Err(Interrupted.into()),
        };
        steps.mark("resolve");
        let mut routes = PlatformRoutes::open().await?;
        routes.remove_stale().await?;
        let (table, fwmark) = routes.free_table_and_mark().await?;
        // Offline (at boot before the network, or after it went away): wait for a route rather
        // than send into nothing.
        let first = peers[0].endpoint;
        let Some(path) = routes.lookup(first.ip(), Some(fwmark)).await else {
            return Err(NoRoute(first).into());
        };
        let mtu = match config.mtu {
            Some(m) => m,
            None => {
                let inner_v6 = config.addresses.iter().any(|a| a.addr().is_ipv6());
                mtu::default_mtu(path.path_mtu(), inner_v6)
            }
        };
        self.healing.path = Some(path);
        let interface = free_interface_name(&self.settings.interface_prefix)?;
        let plan = RoutePlan::new(config, &interface, fwmark, table)
            .with_endpoints(peers.iter().map(|p| p.endpoint.ip()));
        let hole = TunnelHole {
            interface: interface.clone(),
            endpoints: peers.iter().map(|p| p.endpoint).collect(),
            fwmark,
            dns: config.dns.clone(),
            addresses: config.addresses.clone(),
            include: plan.include.clone(),
            exclude: plan.exclude.clone(),
        };
        steps.mark("route_lookup");
        // The endpoint must be open in the kill switch before the first handshake goes out.
        self.enforce_firewall(Some(&hole)).await?;
        steps.mark("firewall");
        let plane = DataPlane::start(DataPlaneConfig {
            interface: interface.clone(),
            private_key: config.private_key.clone(),
            addresses: config.addresses.clone(),
            mtu,
            peers,
            fwmark,
            // Roaming never widens the kill switch's endpoints (tunnel/peers.rs).
            roaming: Roaming::under(self.firewall_applied.as_ref().and_then(Option::as_ref)),
        })
        .await?;
        steps.mark("data_plane");
        // The rest overlaps the handshake in flight. The clamp is in place before any route
        // sends TCP into the tunnel.
        if let Err(e) = self.firewall.clamp_mss(Some(&interface)).await {
            tracing::warn!(error = %format!("{e:#}"), "TCP MSS clamp");
        }
        steps.mark("mss_clamp");
        if let Err(e) = routes.apply(&plan).await {
            plane.stop().await;
            return Err(e);
        }
        steps.mark("routes");
        let dns = if config.dns.is_empty() {
            None
        } else {
            let wanted = DnsConfig {
                servers: config.dns.clone(),
                search: config.dns_search.clone(),
                interface: interface.clone(),
                full_tunnel: plan.full_tunnel_v4 || plan.full_tunnel_v6,
            };
            if let Err(e) = self.dns.set(&wanted).await {
                // Never leave the old resolver silently in place: the connect fails instead.
                let _ = self.dns.restore().await;
                let _ = routes.restore().await;
                plane.stop().await;
                return Err(e.context(format!("setting DNS through {}", self.dns.method())));
            }
            Some(DnsStatus {
                servers: config.dns.clone(),
                method: self.dns.method().to_string(),
            })
        };
        steps.mark("dns");
        tracing::info!(
            %interface, mtu, table, fwmark,
            full_tunnel = plan.full_tunnel_v4 || plan.full_tunnel_v6,
            steps = %steps,
            "tunnel routes installed"
        );
        Ok(Session {
            plane,
            routes,
            plan,
            hole,
            dns,
            mtu,
            addresses: config.addresses.clone(),
            started: Instant::now(),
        })
    }

    async fn tear_down(&mut self) {
        if let Some(mut s) = self.session.take() {
            if s.dns.is_some() {
                if let Err(e) = self.dns.restore().await {
                    tracing::error!(error = %format!("{e:#}"), "restoring DNS");
                }
            }
            if let Err(e) = s.routes.restore().await {
                tracing::error!(error = %format!("{e:#}"), "restoring routes");
            }
            s.plane.stop().await;
            if let Err(e) = self.firewall.clamp_mss(None).await {
                tracing::warn!(error = %format!("{e:#}"), "removing the TCP MSS clamp");
            }
            tracing::info!(interface = %s.plan.interface, "tunnel down");
        }
    }
}

/// Every peer with its endpoint resolved (before any route exists, so no lookup can go through
/// the tunnel it is needed to build).
async fn resolve_peers(config: &TunnelConfig, resolvers: &Resolvers) -> Result<Vec<PeerSpec>> {
    let mut peers = Vec::with_capacity(config.peers.len());
    for p in &config.peers {
        peers.push(PeerSpec {
            public_key: p.public_key.clone(),
            preshared_key: p.preshared_key.clone(),
            endpoint: resolve_endpoint(&p.endpoint, resolvers).await?,
            allowed_ips: p.allowed_ips.clone(),
            persistent_keepalive: p.persistent_keepalive,
        });
    }
    Ok(peers)
}

/// A bring-up given up for a newer Connect or a Disconnect, which the daemon handles next.
#[derive(Debug)]
struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted by a newer request")
    }
}

impl std::error::Error for Interrupted {}

/// No route reaches the server: the helper is offline, not failing.
#[derive(Debug)]
struct NoRoute(std::net::SocketAddr);

impl std::fmt::Display for NoRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no route reaches the server {}", self.0)
    }
}

impl std::error::Error for NoRoute {}

/// The first `<prefix>N` that no existing interface uses.
fn free_interface_name(prefix: &str) -> Result<String> {
    for n in 0..100 {
        let name = format!("{prefix}{n}");
        if !crate::tunnel::interface_exists(&name) {
            return Ok(name);
        }
    }
    bail!("no free interface name {prefix}0..{prefix}99")
}
