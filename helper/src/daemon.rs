//! The actor that owns the tunnel: it feeds the state machine, carries out its effects through
//! the data plane and the routing backend, and publishes status and events.
//!
//! All changes to the system happen in this one task, in order. IPC connections only send it
//! commands and read the published status, so no client can interleave two setups.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use anyhow::{bail, Result};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use underpass_proto::{
    DnsStatus, ErrorBody, ErrorCode, Event, Key, KillSwitchMode, PeerStatus, ProbeCandidate,
    ProbeResult, SelfTestKind, SelfTestOptions, SelfTestReport, SessionPolicy, SessionRequest,
    Status, TunnelConfig, MAX_PROBE_CANDIDATES,
};

use crate::dns::{DnsConfig, DnsManager, DnsPaths, PlatformDns};
use crate::firewall::{self, Firewall, FirewallPolicy, PlatformFirewall, TunnelHole};
use crate::intent::{Intent, IntentStore};
use crate::routes::{PlatformRoutes, RouteManager, RoutePlan};
use crate::selftest;
use crate::state::{AfterTeardown, Effect, Input, State};
use crate::tunnel::peers::PeerSpec;
use crate::tunnel::{probe, resolve_endpoint, DataPlane, DataPlaneConfig};

/// Outer IPv4 + UDP + WireGuard headers, and the same over IPv6.
const OVERHEAD_V4: u16 = 60;
const OVERHEAD_V6: u16 = 80;
const DEFAULT_LINK_MTU: u16 = 1500;
const TICK: Duration = Duration::from_millis(100);
const STATS_EVERY: u32 = 10;

type Reply = oneshot::Sender<Result<(), ErrorBody>>;

pub enum Command {
    Connect(Box<TunnelConfig>, Reply),
    Disconnect(Reply),
    SetKillSwitch(KillSwitchMode, Reply),
    SetLanAccess(bool, Reply),
    SelfTest(
        SelfTestKind,
        SelfTestOptions,
        oneshot::Sender<Result<SelfTestReport, ErrorBody>>,
    ),
    Probe(
        Vec<ProbeCandidate>,
        oneshot::Sender<Result<Vec<ProbeResult>, ErrorBody>>,
    ),
    Shutdown(oneshot::Sender<()>),
}

/// How long one probe waits for a handshake response, and how long its result is reused.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const PROBE_CACHE: Duration = Duration::from_secs(30);
type ProbeCache = Arc<Mutex<HashMap<(String, Key), (ProbeResult, Instant)>>>;

pub struct Settings {
    pub handshake_timeout: Duration,
    pub interface_prefix: String,
    pub state_dir: std::path::PathBuf,
    pub resolv_conf: std::path::PathBuf,
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
    probes: ProbeCache,
    status: watch::Sender<Status>,
    events: broadcast::Sender<Event>,
}

impl Daemon {
    pub async fn new(
        settings: Settings,
        status: watch::Sender<Status>,
        events: broadcast::Sender<Event>,
    ) -> Result<Daemon> {
        let store = IntentStore::new(&settings.state_dir);
        let dns = PlatformDns::new(DnsPaths {
            resolv_conf: settings.resolv_conf.clone(),
            state_dir: settings.state_dir.clone(),
        });
        Ok(Daemon {
            firewall: PlatformFirewall::open().await?,
            settings,
            state: State::Disconnected,
            intent: Intent::default(),
            store,
            session: None,
            firewall_applied: None,
            dns,
            probes: ProbeCache::default(),
            status,
            events,
        })
    }

    /// Picks up where the last helper left off: reconnects, keeps blocking, or opens up, as the
    /// persisted intent says. An unreadable intent blocks rather than guess.
    async fn reconcile(&mut self) {
        match self.store.load() {
            Ok(Some(intent)) => self.intent = intent,
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
            self.feed(Input::ConnectRequested { profile }).await;
        } else {
            if let Err(e) = self.dns.restore().await {
                tracing::error!(error = %format!("{e:#}"), "restoring DNS left by an earlier run");
            }
            // A failure is logged and shows in the status as an unknown firewall state.
            let _ = self.enforce_firewall(None).await;
            self.publish_state();
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
        match &self.state {
            State::Connecting { .. } | State::Connected { .. } | State::Error { .. } => true,
            State::Disconnecting { then } => !matches!(then, AfterTeardown::Idle),
            State::Disconnected => false,
        }
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
        let want = firewall::desired(
            self.intent.kill_switch,
            self.intent.wanted.is_some(),
            None,
            self.intent.lan_access,
        );
        let result = match &want {
            Some(policy) => self.firewall.apply(policy).await,
            None => self.firewall.remove().await,
        };
        if let Err(e) = result {
            tracing::error!(error = %format!("{e:#}"), "firewall at shutdown");
        }
    }

    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        self.reconcile().await;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u32 = 0;
        loop {
            let handshakes = self.session.as_ref().map(|s| s.plane.handshakes());
            tokio::select! {
                _ = async {
                    match &handshakes {
                        Some(n) => n.notified().await,
                        None => std::future::pending().await,
                    }
                } => self.on_tick(false).await,
                command = commands.recv() => match command {
                    Some(Command::Connect(config, reply)) => {
                        if let Err(reason) = config.validate() {
                            let _ = reply.send(Err(ErrorBody::new(ErrorCode::InvalidConfig, reason)));
                            continue;
                        }
                        let profile = config.profile.clone();
                        self.intent.wanted = Some(*config);
                        self.hold_to_policy();
                        let saved = self.save_intent();
                        let _ = reply.send(saved);
                        self.feed(Input::ConnectRequested { profile }).await;
                    }
                    Some(Command::Disconnect(reply)) => {
                        self.intent.wanted = None;
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
                    Some(Command::SelfTest(test, options, reply)) => self.self_test(test, options, reply),
                    Some(Command::Probe(candidates, reply)) => self.probe(candidates, reply),
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
    /// view of the tunnel as it is now.
    fn self_test(
        &self,
        test: SelfTestKind,
        options: SelfTestOptions,
        reply: oneshot::Sender<Result<SelfTestReport, ErrorBody>>,
    ) {
        if let Err(reason) = selftest::validate(&options) {
            let _ = reply.send(Err(ErrorBody::new(ErrorCode::InvalidConfig, reason)));
            return;
        }
        let ctx = selftest::Context {
            tunnel: self.session.as_ref().map(|s| selftest::TunnelView {
                interface: s.plane.interface().to_string(),
                endpoints: s.hole.endpoints.clone(),
                paused: s.plane.pause_switch(),
            }),
            lan_access: self.intent.lan_access,
            events: self.events.clone(),
        };
        tokio::spawn(async move {
            let result = selftest::run(test, options, ctx).await.map_err(|e| {
                ErrorBody::new(
                    ErrorCode::Internal,
                    format!("self-test failed to run: {e:#}"),
                )
            });
            let _ = reply.send(result);
        });
    }

    /// The policy of the signed profile the user wants connected, if any.
    fn policy(&self) -> Option<&SessionPolicy> {
        self.intent.wanted.as_ref().and_then(|c| c.policy.as_ref())
    }

    /// Refuses a settings change that the wanted profile's policy forbids.
    fn check_policy(&self, request: &SessionRequest) -> Result<(), ErrorBody> {
        let Some(p) = self.policy() else {
            return Ok(());
        };
        let violations = p.policy.violations(request);
        if violations.is_empty() {
            return Ok(());
        }
        Err(ErrorBody::new(
            ErrorCode::InvalidConfig,
            format!(
                "the policy of {} (serial {}) says {} while its profile is in use; disconnect first",
                p.organization,
                p.serial,
                violations.join("; ")
            ),
        ))
    }

    /// Raises the settings to what a newly wanted profile's policy requires: the kill switch to
    /// its minimum, LAN access off when it is not allowed. (Split tunneling against the policy
    /// is refused when the request is validated.)
    fn hold_to_policy(&mut self) {
        let Some(p) = self.policy().cloned() else {
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

    /// Measures servers in their own task; results younger than [`PROBE_CACHE`] are reused.
    fn probe(
        &self,
        candidates: Vec<ProbeCandidate>,
        reply: oneshot::Sender<Result<Vec<ProbeResult>, ErrorBody>>,
    ) {
        if candidates.len() > MAX_PROBE_CANDIDATES {
            let _ = reply.send(Err(ErrorBody::new(
                ErrorCode::InvalidConfig,
                format!("at most {MAX_PROBE_CANDIDATES} servers per probe"),
            )));
            return;
        }
        let fwmark = self.session.as_ref().map(|s| s.plan.fwmark);
        let cache = self.probes.clone();
        tokio::spawn(async move {
            let key = |c: &ProbeCandidate| (c.endpoint.clone(), c.public_key.clone());
            let cached = |c: &ProbeCandidate| {
                let cache = cache.lock();
                cache
                    .get(&key(c))
                    .filter(|(_, at)| at.elapsed() < PROBE_CACHE)
                    .map(|(r, _)| ProbeResult {
                        id: c.id.clone(),
                        ..r.clone()
                    })
            };
            let fresh: Vec<ProbeCandidate> = candidates
                .iter()
                .filter(|c| cached(c).is_none())
                .cloned()
                .collect();
            let measured = probe::probe_all(fresh.clone(), fwmark, PROBE_TIMEOUT).await;
            {
                let mut cache = cache.lock();
                for (c, r) in fresh.iter().zip(&measured) {
                    cache.insert(key(c), (r.clone(), Instant::now()));
                }
            }
            let results = candidates
                .iter()
                .map(|c| {
                    cached(c).unwrap_or_else(|| ProbeResult {
                        id: c.id.clone(),
                        endpoint: None,
                        rtt_ms: None,
                        error: Some("not measured".into()),
                    })
                })
                .collect();
            let _ = reply.send(Ok(results));
        });
    }

    /// Persists a changed setting and makes the firewall follow it at once.
    async fn apply_setting(&mut self) -> Result<(), ErrorBody> {
        self.save_intent()?;
        let applied = self.enforce_firewall(None).await;
        self.publish_state();
        applied.map_err(|e| ErrorBody::new(ErrorCode::Internal, format!("{e:#}")))
    }

    async fn on_tick(&mut self, publish_stats: bool) {
        let Some(session) = &self.session else {
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
                let endpoint = session.plane.peers().peers()[0].endpoint;
                let reason = format!(
                    "no handshake with {endpoint} within {} s: the server did not answer. \
                     Check that it is reachable and that the profile's keys are current",
                    self.settings.handshake_timeout.as_secs()
                );
                self.feed(Input::Failed(reason)).await;
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
                        Err(e) => {
                            tracing::warn!(error = %format!("{e:#}"), "connect failed");
                            next = Some(Input::Failed(format!("{e:#}")));
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
        status.policy = self.policy().cloned();
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
                    endpoint: Some(p.endpoint),
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

    async fn bring_up(&mut self, config: &TunnelConfig) -> Result<Session> {
        let mut peers = Vec::with_capacity(config.peers.len());
        for p in &config.peers {
            peers.push(PeerSpec {
                public_key: p.public_key.clone(),
                preshared_key: p.preshared_key.clone(),
                endpoint: resolve_endpoint(&p.endpoint).await?,
                allowed_ips: p.allowed_ips.clone(),
                persistent_keepalive: p.persistent_keepalive,
            });
        }
        let mut routes = PlatformRoutes::open().await?;
        routes.remove_stale().await?;
        let (table, fwmark) = routes.free_table_and_mark().await?;
        let mtu = match config.mtu {
            Some(m) => m,
            None => {
                let first = peers[0].endpoint;
                let link = routes
                    .egress_mtu(first.ip())
                    .await
                    .unwrap_or(DEFAULT_LINK_MTU);
                let overhead = if peers.iter().any(|p| p.endpoint.is_ipv6()) {
                    OVERHEAD_V6
                } else {
                    OVERHEAD_V4
                };
                let floor = if config.addresses.iter().any(|a| a.addr().is_ipv6()) {
                    underpass_proto::MIN_MTU_V6
                } else {
                    underpass_proto::MIN_MTU
                };
                link.saturating_sub(overhead).max(floor)
            }
        };
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
        // The endpoint must be open in the kill switch before the first handshake goes out.
        self.enforce_firewall(Some(&hole)).await?;
        if let Err(e) = self.firewall.clamp_mss(Some(&interface)).await {
            tracing::warn!(error = %format!("{e:#}"), "TCP MSS clamp");
        }
        let plane = DataPlane::start(DataPlaneConfig {
            interface: interface.clone(),
            private_key: config.private_key.clone(),
            addresses: config.addresses.clone(),
            mtu,
            peers,
            fwmark,
        })
        .await?;
        if let Err(e) = routes.apply(&plan).await {
            plane.stop().await;
            return Err(e);
        }
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
        tracing::info!(
            %interface, mtu, table, fwmark,
            full_tunnel = plan.full_tunnel_v4 || plan.full_tunnel_v6,
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
