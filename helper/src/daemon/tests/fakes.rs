//! Recording fakes of the firewall, DNS, routes and data plane, and the world they share: which
//! servers answer, whether a route reaches them, and a log of every change the daemon made, in
//! order. Nothing here touches the machine.
//!
//! The backends' traits build their values themselves (`Firewall::open()`, `DnsManager::new`),
//! so the fakes find the test's world in a thread-local: a paused tokio test runs every task on
//! its one thread.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};
use underpass_proto::PeerStatus;

use crate::daemon::{Platform, Settings};
use crate::dns::{DnsConfig, DnsManager, DnsPaths};
use crate::firewall::{Firewall, FirewallPolicy};
use crate::health::Sample;
use crate::power::{PowerEvent, PowerEvents};
use crate::routes::{RouteLookup, RouteManager, RoutePlan};
use crate::tunnel::{DataPlaneConfig, Plane, Resolvers};

/// How a server treats what reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Handshakes and data.
    All,
    /// Data, but no handshake ever again (its session runs out).
    DataOnly,
    /// Nothing: dead, or its UDP dropped on the way.
    Nothing,
}

pub struct Inner {
    /// Every change the daemon made, in order, with the simulated time it was made at.
    pub log: Vec<(Instant, String)>,
    /// Servers not listed answer everything.
    pub servers: HashMap<SocketAddr, Answer>,
    /// The route to every server: `None` is offline.
    pub route: Option<(String, IpAddr)>,
    /// When the daemon looked up a route.
    pub lookups: Vec<Instant>,
    /// The kill switch in force: `None` is open.
    pub firewall: Option<FirewallPolicy>,
    /// `DnsManager::set` never returns (a resolver that hangs on D-Bus).
    pub dns_hangs: bool,
    /// `DnsManager::set` fails.
    pub dns_fails: bool,
    /// CLOCK_BOOTTIME − CLOCK_MONOTONIC.
    pub suspended: Duration,
    /// The running data plane, if any.
    pub wire: Option<Arc<Wire>>,
    /// What endpoint names resolve to; `None` is a resolver that never answers.
    pub names: HashMap<String, Option<IpAddr>>,
    changes: Option<mpsc::UnboundedReceiver<()>>,
    power: Option<PowerEvents>,
}

/// The world of one test, and the test's handles on it.
#[derive(Clone)]
pub struct World {
    pub inner: Arc<Mutex<Inner>>,
    pub changes: mpsc::UnboundedSender<()>,
    pub power: mpsc::UnboundedSender<PowerEvent>,
}

thread_local! {
    static WORLD: RefCell<Option<World>> = const { RefCell::new(None) };
}

fn world() -> World {
    WORLD.with(|w| w.borrow().clone().expect("a fake world is installed"))
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl World {
    /// A new world, where every server answers and a route reaches them, installed for the
    /// fakes of this thread.
    pub fn install() -> World {
        let (changes, changes_rx) = mpsc::unbounded_channel();
        let (power, power_rx) = mpsc::unbounded_channel();
        let w = World {
            inner: Arc::new(Mutex::new(Inner {
                log: Vec::new(),
                servers: HashMap::new(),
                route: Some(("eth0".into(), "198.51.100.1".parse().expect("literal"))),
                lookups: Vec::new(),
                firewall: None,
                dns_hangs: false,
                dns_fails: false,
                suspended: Duration::ZERO,
                wire: None,
                names: HashMap::new(),
                changes: Some(changes_rx),
                power: Some(power_rx),
            })),
            changes,
            power,
        };
        WORLD.with(|cell| *cell.borrow_mut() = Some(w.clone()));
        w
    }

    fn record(&self, entry: impl Into<String>) {
        self.inner.lock().log.push((now(), entry.into()));
    }

    /// The log's entries, without their times.
    pub fn entries(&self) -> Vec<String> {
        self.inner
            .lock()
            .log
            .iter()
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// The entries logged since `mark` (a length of the log taken earlier).
    pub fn since(&self, mark: usize) -> Vec<String> {
        self.entries().split_off(mark)
    }

    pub fn len(&self) -> usize {
        self.inner.lock().log.len()
    }

    /// The times of the entries equal to `entry`.
    pub fn times_of(&self, entry: &str) -> Vec<Instant> {
        let inner = self.inner.lock();
        inner
            .log
            .iter()
            .filter(|(_, e)| e == entry)
            .map(|(t, _)| *t)
            .collect()
    }

    pub fn answer(&self, server: &str, answer: Answer) {
        let server = server.parse().expect("a socket address");
        self.inner.lock().servers.insert(server, answer);
    }

    /// Moves the route to the servers (`None`: no route at all) and tells the daemon, as
    /// rtnetlink would.
    pub fn set_route(&self, route: Option<(&str, &str)>) {
        self.inner.lock().route =
            route.map(|(dev, gw)| (dev.to_string(), gw.parse().expect("an address")));
        let _ = self.changes.send(());
    }

    pub fn firewall(&self) -> Option<FirewallPolicy> {
        self.inner.lock().firewall.clone()
    }

    /// One round of traffic through the tunnel, as an application sending would make it.
    pub fn traffic(&self) {
        let (wire, servers) = {
            let inner = self.inner.lock();
            (inner.wire.clone(), inner.servers.clone())
        };
        if let Some(wire) = wire {
            wire.carry(&servers);
        }
    }

    /// Handshake initiations the running data plane has sent.
    pub fn initiations(&self) -> u64 {
        let wire = self.inner.lock().wire.clone();
        wire.map_or(0, |w| w.state.lock().initiations)
    }

    fn answer_of(&self, server: SocketAddr) -> Answer {
        self.inner
            .lock()
            .servers
            .get(&server)
            .copied()
            .unwrap_or(Answer::All)
    }
}

/// A running fake data plane: one peer, its counters and its last handshake.
pub struct Wire {
    pub endpoint: SocketAddr,
    state: Mutex<WireState>,
    handshakes: Arc<Notify>,
    paused: Arc<AtomicBool>,
}

#[derive(Default)]
struct WireState {
    rx_packets: u64,
    tx_bytes: u64,
    last_handshake: Option<Instant>,
    offline: bool,
    /// Handshake initiations that left.
    initiations: u64,
}

impl Wire {
    /// A handshake initiation goes out, unless offline; the server may answer it at once.
    fn initiate(&self, answer: Answer) {
        let mut s = self.state.lock();
        if s.offline {
            return;
        }
        s.tx_bytes += 148;
        s.initiations += 1;
        if answer == Answer::All {
            s.last_handshake = Some(now());
            s.rx_packets += 1;
            self.handshakes.notify_one();
        }
    }

    fn carry(&self, servers: &HashMap<SocketAddr, Answer>) {
        let answer = servers.get(&self.endpoint).copied().unwrap_or(Answer::All);
        let mut s = self.state.lock();
        if s.offline {
            return;
        }
        s.tx_bytes += 1400;
        if answer != Answer::Nothing {
            s.rx_packets += 1;
        }
        // WireGuard renews a session under traffic after two minutes.
        let old = s
            .last_handshake
            .is_none_or(|t| now().duration_since(t) >= Duration::from_secs(120));
        if old && answer == Answer::All {
            s.last_handshake = Some(now());
            s.rx_packets += 1;
        }
    }
}

pub struct FakePlatform;

impl Platform for FakePlatform {
    type Firewall = FakeFirewall;
    type Dns = FakeDns;
    type Routes = FakeRoutes;
    type Plane = FakePlane;

    fn suspended_so_far() -> Duration {
        world().inner.lock().suspended
    }

    fn power(_settings: &Settings) -> Option<PowerEvents> {
        world().inner.lock().power.take()
    }

    async fn resolve(endpoint: String, _via: Resolvers) -> Result<SocketAddr> {
        if let Ok(literal) = endpoint.parse() {
            return Ok(literal);
        }
        let (host, port) = endpoint.rsplit_once(':').expect("host:port");
        let port: u16 = port.parse()?;
        let answer = world().inner.lock().names.get(host).copied();
        match answer {
            Some(Some(ip)) => Ok(SocketAddr::new(ip, port)),
            Some(None) => std::future::pending().await,
            None => bail!("{host}: no such name"),
        }
    }
}

pub struct FakeFirewall(World);

/// How the log names a firewall policy: `block`, or `tunnel IFACE [ENDPOINTS]`, and `+lan`.
pub fn describe(policy: &FirewallPolicy) -> String {
    let mut s = match &policy.tunnel {
        Some(h) => format!("firewall: tunnel {} {:?}", h.interface, h.endpoints),
        None => "firewall: block".to_string(),
    };
    if policy.allow_lan {
        s.push_str(" +lan");
    }
    s
}

impl Firewall for FakeFirewall {
    async fn open() -> Result<Self> {
        Ok(FakeFirewall(world()))
    }

    async fn apply(&mut self, policy: &FirewallPolicy) -> Result<()> {
        self.0.record(describe(policy));
        self.0.inner.lock().firewall = Some(policy.clone());
        Ok(())
    }

    async fn remove(&mut self) -> Result<()> {
        self.0.record("firewall: open");
        self.0.inner.lock().firewall = None;
        Ok(())
    }

    async fn clamp_mss(&mut self, interface: Option<&str>) -> Result<()> {
        self.0
            .record(format!("mss clamp: {}", interface.unwrap_or("off")));
        Ok(())
    }

    async fn admit_probes(&mut self, _targets: &[SocketAddr], _ttl: Duration) -> Result<()> {
        Ok(())
    }
}

pub struct FakeDns(World);

impl DnsManager for FakeDns {
    fn new(_paths: DnsPaths) -> Self {
        FakeDns(world())
    }

    fn method(&self) -> &'static str {
        "fake"
    }

    async fn set(&mut self, config: &DnsConfig) -> Result<()> {
        self.0.record(format!("dns: set {:?}", config.servers));
        let (hangs, fails) = {
            let inner = self.0.inner.lock();
            (inner.dns_hangs, inner.dns_fails)
        };
        if hangs {
            std::future::pending::<()>().await;
        }
        if fails {
            bail!("the resolver refused");
        }
        Ok(())
    }

    async fn reassert(&mut self) -> Result<bool> {
        self.0.record("dns: reassert");
        Ok(false)
    }

    async fn restore(&mut self) -> Result<()> {
        self.0.record("dns: restore");
        Ok(())
    }

    fn system_resolvers(&self) -> Vec<IpAddr> {
        vec!["192.0.2.53".parse().expect("literal")]
    }
}

pub struct FakeRoutes(World);

impl RouteManager for FakeRoutes {
    async fn open() -> Result<Self> {
        Ok(FakeRoutes(world()))
    }

    async fn remove_stale(&mut self) -> Result<()> {
        Ok(())
    }

    async fn free_table_and_mark(&self) -> Result<(u32, u32)> {
        Ok((51820, 0x7570_0001))
    }

    async fn apply(&mut self, plan: &RoutePlan) -> Result<()> {
        self.0.record(format!("routes: up {}", plan.interface));
        Ok(())
    }

    async fn restore(&mut self) -> Result<()> {
        self.0.record("routes: down");
        Ok(())
    }

    async fn lookup(&self, dst: IpAddr, _fwmark: Option<u32>) -> Option<RouteLookup> {
        let mut inner = self.0.inner.lock();
        inner.lookups.push(now());
        let (interface, gateway) = inner.route.clone()?;
        Some(RouteLookup {
            destination: dst,
            interface,
            gateway: Some(gateway),
            source: Some("198.51.100.2".parse().expect("literal")),
            route_mtu: None,
            link_mtu: Some(1500),
        })
    }

    async fn default_gateways(&self) -> Vec<IpAddr> {
        Vec::new()
    }

    fn watch_changes() -> Result<mpsc::UnboundedReceiver<()>> {
        match world().inner.lock().changes.take() {
            Some(rx) => Ok(rx),
            None => bail!("the fake world's change watch is taken"),
        }
    }
}

pub struct FakePlane {
    world: World,
    interface: String,
    wire: Arc<Wire>,
}

impl Plane for FakePlane {
    async fn start(config: DataPlaneConfig) -> Result<Self> {
        let world = world();
        let endpoint = config.peers[0].endpoint;
        world.record(format!("plane: up {} {endpoint}", config.interface));
        let wire = Arc::new(Wire {
            endpoint,
            state: Mutex::default(),
            handshakes: Arc::default(),
            paused: Arc::default(),
        });
        world.inner.lock().wire = Some(wire.clone());
        // The first initiation goes out at once, as the real data plane sends it.
        wire.initiate(world.answer_of(endpoint));
        Ok(FakePlane {
            world,
            interface: config.interface,
            wire,
        })
    }

    async fn stop(self) {
        self.world.record("plane: down");
        self.world.inner.lock().wire = None;
    }

    fn interface(&self) -> &str {
        &self.interface
    }

    fn sample(&self) -> Sample {
        let s = self.wire.state.lock();
        Sample {
            rx_packets: s.rx_packets,
            tx_bytes: s.tx_bytes,
            handshake_age: s.last_handshake.map(|t| now().duration_since(t)),
        }
    }

    fn peer_status(&self) -> Vec<PeerStatus> {
        let sample = self.sample();
        vec![PeerStatus {
            public_key: underpass_proto::Key([2; 32]),
            endpoint: Some(self.wire.endpoint),
            allowed_ips: Vec::new(),
            rx_bytes: sample.rx_packets * 100,
            tx_bytes: sample.tx_bytes,
            last_handshake_secs: sample.handshake_age.map(|d| d.as_secs()),
        }]
    }

    fn handshakes(&self) -> Arc<Notify> {
        self.wire.handshakes.clone()
    }

    fn pause_switch(&self) -> Arc<AtomicBool> {
        self.wire.paused.clone()
    }

    fn force_handshake(&self) {
        self.world.record("plane: handshake");
        self.wire.initiate(self.world.answer_of(self.wire.endpoint));
    }

    fn set_offline(&self, offline: bool) {
        let mut s = self.wire.state.lock();
        if s.offline != offline {
            s.offline = offline;
            drop(s);
            self.world.record(if offline {
                "plane: offline"
            } else {
                "plane: online"
            });
        }
    }

    fn unreachable_sends(&self) -> u64 {
        0
    }
}
