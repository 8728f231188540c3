use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::Key;

/// What a client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Must be the first message on a connection.
    Hello { protocol: u32, client: String },
    /// A request; the helper answers with a [`ServerMessage::Response`] carrying the same `id`.
    Request { id: u64, request: Request },
}

/// What the helper sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerMessage {
    Hello {
        protocol: u32,
        helper_version: String,
    },
    Response {
        id: u64,
        result: Result<Response, ErrorBody>,
    },
    Event {
        event: Event,
    },
    /// The connection is about to be closed by the helper, for this reason.
    Fatal {
        error: ErrorBody,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The current [`Status`].
    Status,
    /// Start pushing [`Event`]s on this connection.
    Subscribe,
    /// Bring the tunnel up (replacing any current one). Answered as soon as the request is
    /// accepted; progress arrives as events.
    Connect {
        config: Box<TunnelConfig>,
        /// The other servers of the user's choice, in the order to move to them when `config`'s
        /// server stops answering (issue 8; see [`validate_choice`]). Empty for a named server.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        alternatives: Vec<TunnelConfig>,
    },
    /// Tear the tunnel down.
    Disconnect,
    /// Change the kill switch. Persisted by the helper; takes effect at once.
    SetKillSwitch { mode: KillSwitchMode },
    /// Allow or forbid the local network (LAN) while the kill switch blocks.
    SetLanAccess { allow: bool },
    /// Measure candidate servers by the round trip of a real WireGuard handshake, in parallel
    /// and bounded by a timeout. Answered with [`Response::Probed`].
    ProbeServers { candidates: Vec<ProbeCandidate> },
    /// Run a built-in self-test. Progress arrives as [`Event::SelfTestProgress`] (after
    /// [`Request::Subscribe`]); the answer is [`Response::SelfTest`].
    SelfTest {
        test: SelfTestKind,
        #[serde(default)]
        options: SelfTestOptions,
    },
    /// The helper's newest log lines (at most [`MAX_LOG_BYTES`]), for a diagnostics report.
    RecentLogs,
    /// Walk the seven layers of the tunnel (see [`DoctorReport`]). Answered with
    /// [`Response::Doctor`].
    Doctor {
        #[serde(default)]
        options: DoctorOptions,
    },
    /// Set the live tunnel's MTU (the TCP MSS clamp follows the route MTU). Refused when the
    /// profile sets `MTU =` itself: that always wins.
    SetMtu { mtu: u16 },
}

/// One server to measure: where it is, and the keys a handshake with it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeCandidate {
    /// The caller's name for it (profile, or profile/server).
    pub id: String,
    pub endpoint: String,
    pub public_key: Key,
    pub private_key: Key,
    #[serde(default)]
    pub preshared_key: Option<Key>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub id: String,
    pub endpoint: Option<SocketAddr>,
    /// Handshake initiation to response, when the server answered in time.
    pub rtt_ms: Option<f64>,
    /// Why there is no round trip (no answer in time, no address, ...).
    pub error: Option<String>,
}

/// The most log text [`Response::Logs`] carries, so that it fits in one frame.
pub const MAX_LOG_BYTES: usize = 128 * 1024;

/// At most this many servers are measured in one request.
pub const MAX_PROBE_CANDIDATES: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum SelfTestKind {
    /// Resolve fresh random names through the system resolver while capturing on every
    /// non-tunnel interface: any DNS packet seen there is a leak.
    Dns,
    /// Send probes that try to bypass the tunnel, and simulate a tunnel drop, while capturing
    /// on every non-tunnel interface: anything but encrypted traffic to the endpoint escaped.
    KillSwitch,
}

/// Where the self-tests aim. The defaults are documentation addresses and a reserved domain,
/// which no one answers; tests point them at hosts of their own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfTestOptions {
    /// Names are `<random>.<domain>`; default `leaktest.underpass.invalid`.
    #[serde(default)]
    pub domain: Option<String>,
    /// How many names the DNS test resolves (1..=20, default 5).
    #[serde(default)]
    pub names: Option<u8>,
    /// Probe destinations for the kill-switch test (default 192.0.2.1 and 2001:db8::1).
    #[serde(default)]
    pub probe_targets: Vec<IpAddr>,
    /// How long the simulated tunnel drop lasts, in seconds (1..=10, default 3).
    #[serde(default)]
    pub drop_secs: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum Verdict {
    Pass,
    Fail,
    /// The test could not run as asked (no tunnel for the DNS test, say); see `notes`.
    Inconclusive,
}

/// The evidence of one self-test: what it sent, where it listened, what it saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SelfTestReport {
    pub test: SelfTestKind,
    pub verdict: Verdict,
    pub duration_ms: u64,
    /// The interfaces the capture listened on (all but loopback and the tunnel).
    pub captured_on: Vec<String>,
    /// What the test sent: names resolved, probes fired, the drop simulated.
    pub sent: Vec<String>,
    /// Every packet that counts against the verdict.
    pub leaks: Vec<LeakedPacket>,
    /// The DNS test: the resolvers the system is configured with, and their routes.
    pub resolvers: Vec<ResolverRoute>,
    /// Anything a reader should know (for example why the test was inconclusive).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct LeakedPacket {
    pub interface: String,
    /// `udp`, `tcp`, `icmp`, `icmpv6` or the EtherType.
    pub protocol: String,
    pub source: String,
    pub destination: String,
    /// For DNS, the query name when it could be read.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ResolverRoute {
    pub server: IpAddr,
    /// The interface the kernel routes queries to this server through.
    pub interface: Option<String>,
    pub through_tunnel: bool,
}

// ---- The troubleshooter (`underpass doctor`) ----

/// Where the doctor aims. The defaults come from the tunnel; tests point them at their hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoctorOptions {
    /// The server's address inside the tunnel, for the firewall and path-MTU probes
    /// [default: the tunnel's peer address, else its first DNS server inside the tunnel].
    #[serde(default)]
    pub target: Option<IpAddr>,
    /// An address whose route is looked up to show what enters the tunnel [default: one inside
    /// the first routed prefix].
    #[serde(default)]
    pub test_address: Option<IpAddr>,
}

/// The seven layers, in the order the doctor walks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum LayerId {
    ControlPlane,
    OuterPath,
    Interface,
    Routes,
    Firewall,
    Dns,
    Mtu,
}

impl LayerId {
    pub const ALL: [LayerId; 7] = [
        LayerId::ControlPlane,
        LayerId::OuterPath,
        LayerId::Interface,
        LayerId::Routes,
        LayerId::Firewall,
        LayerId::Dns,
        LayerId::Mtu,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LayerId::ControlPlane => "control-plane",
            LayerId::OuterPath => "outer-path",
            LayerId::Interface => "interface",
            LayerId::Routes => "routes",
            LayerId::Firewall => "firewall",
            LayerId::Dns => "dns",
            LayerId::Mtu => "mtu",
        }
    }

    /// The question the layer answers, for people.
    pub fn question(self) -> &'static str {
        match self {
            LayerId::ControlPlane => {
                "Is the control plane healthy: peer authenticated, keys current?"
            }
            LayerId::OuterPath => "Do packets reach the endpoint over the real network?",
            LayerId::Interface => "Is the virtual interface up and addressed correctly?",
            LayerId::Routes => "Are the expected routes present?",
            LayerId::Firewall => "Do the firewall rules allow the tunnel's traffic?",
            LayerId::Dns => "Is DNS aligned with the routing?",
            LayerId::Mtu => "Is the MTU small enough for the real path?",
        }
    }
}

impl std::fmt::Display for LayerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum LayerVerdict {
    Ok,
    Warn,
    Fail,
    /// Not judged, because the layer it depends on (`depends_on`) failed.
    Skipped,
}

/// One layer's finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Layer {
    pub id: LayerId,
    pub verdict: LayerVerdict,
    /// For `skipped`: the layer whose failure keeps this one from being judged.
    #[serde(default)]
    pub depends_on: Option<LayerId>,
    /// What was looked at or measured, one fact per line.
    pub evidence: Vec<String>,
    /// What it means, in plain words.
    pub explanation: String,
    /// What to do about it (`None` when there is nothing to do).
    pub fix: Option<String>,
}

/// What the path-MTU probe found, so a client can offer to apply it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct MtuFinding {
    /// The tunnel's MTU now.
    pub current: u16,
    /// The profile's own `MTU =`, which always wins.
    pub explicit: Option<u16>,
    /// The largest packet that crossed the tunnel, when the probe ran.
    pub largest_packet: Option<u16>,
    /// The MTU to apply, when it differs from `current` and the profile sets none.
    pub suggested: Option<u16>,
}

/// `underpass doctor --json` prints exactly this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct DoctorReport {
    /// All seven, in [`LayerId::ALL`] order.
    pub layers: Vec<Layer>,
    #[serde(default)]
    pub mtu: Option<MtuFinding>,
}

impl DoctorReport {
    pub fn first_failure(&self) -> Option<&Layer> {
        self.layers.iter().find(|l| l.verdict == LayerVerdict::Fail)
    }
}

/// When the firewall blocks traffic that does not go through the tunnel.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum KillSwitchMode {
    /// Never.
    Off,
    /// Whenever the user wants to be connected and the tunnel is not up: while connecting,
    /// after an error, and after the helper died.
    #[default]
    Auto,
    /// Always, even when disconnected, until the user turns it off.
    Lockdown,
}

impl std::fmt::Display for KillSwitchMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KillSwitchMode::Off => "off",
            KillSwitchMode::Auto => "auto",
            KillSwitchMode::Lockdown => "lockdown",
        })
    }
}

impl std::str::FromStr for KillSwitchMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(KillSwitchMode::Off),
            "auto" => Ok(KillSwitchMode::Auto),
            "lockdown" => Ok(KillSwitchMode::Lockdown),
            _ => Err(format!(
                "{s:?} is not a kill-switch mode: use off, auto or lockdown"
            )),
        }
    }
}

/// What an organization requires of every session of a signed profile. The client checks it
/// before asking; the helper holds the whole session to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Policy {
    /// The weakest kill-switch mode the user may choose.
    pub min_kill_switch: KillSwitchMode,
    /// May the user route only some prefixes through the tunnel (or exclude some)?
    pub split_tunnel_allowed: bool,
    /// May the local network be reached outside the tunnel?
    pub lan_access_allowed: bool,
    /// Must all DNS go to the tunnel's resolvers? Underpass locks DNS with the kill switch,
    /// so this also requires at least `auto`.
    pub dns_locked: bool,
}

/// What a user asks for in a session; checked against a [`Policy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRequest {
    pub kill_switch: KillSwitchMode,
    pub split_tunnel: bool,
    pub lan_access: bool,
}

impl Policy {
    /// The weakest kill switch this policy accepts (`dns_locked` needs the kill switch on).
    pub fn effective_min_kill_switch(&self) -> KillSwitchMode {
        if self.dns_locked {
            self.min_kill_switch.max(KillSwitchMode::Auto)
        } else {
            self.min_kill_switch
        }
    }

    /// Every way `request` breaks the policy, in words a user can act on. Empty means allowed.
    pub fn violations(&self, request: &SessionRequest) -> Vec<String> {
        let mut out = Vec::new();
        let min = self.effective_min_kill_switch();
        if request.kill_switch < min {
            out.push(format!(
                "the kill switch must be at least \"{min}\" (asked for \"{}\")",
                request.kill_switch
            ));
        }
        if request.split_tunnel && !self.split_tunnel_allowed {
            out.push("split tunneling (--include/--exclude) is not allowed".into());
        }
        if request.lan_access && !self.lan_access_allowed {
            out.push("local network access is not allowed".into());
        }
        out
    }
}

/// The policy a connect request carries, with who set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SessionPolicy {
    pub organization: String,
    pub serial: u64,
    pub policy: Policy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    Status {
        status: Box<Status>,
    },
    Subscribed,
    Accepted,
    SelfTest {
        report: Box<SelfTestReport>,
    },
    Probed {
        results: Vec<ProbeResult>,
    },
    /// The helper's newest log lines, oldest first.
    Logs {
        lines: Vec<String>,
    },
    Doctor {
        report: Box<DoctorReport>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// The tunnel state changed.
    State { status: Box<Status> },
    /// Periodic counters while a tunnel exists.
    Statistics { status: Box<Status> },
    /// A self-test moved on to its next step.
    SelfTestProgress { test: SelfTestKind, step: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame was not a message of this protocol.
    Malformed,
    /// The frame was larger than [`crate::MAX_FRAME_LEN`].
    FrameTooLarge,
    /// Client and helper speak different protocol versions.
    VersionMismatch,
    /// The peer is neither root nor in the helper's group.
    PermissionDenied,
    /// The request was well-formed but its content is not acceptable.
    InvalidConfig,
    /// The helper tried and the system refused.
    Internal,
    /// The first message was not a hello, or the client was too slow to send it.
    Handshake,
    // Issue 9 (bounded clients):
    /// Too many requests of this kind from this user for now, or the one allowed at a time is
    /// already running: the message says when to try again.
    Busy,
}

/// The tunnel's state machine, as seen from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum TunnelState {
    Disconnected,
    Connecting,
    Connected,
    /// The tunnel stopped answering (or the network changed); the helper is healing it while
    /// the kill switch holds. See [`Status::reconnect`].
    Reconnecting,
    /// No route reaches the server: the helper waits for the network, sending nothing.
    Offline,
    Disconnecting,
    /// Only for what retrying cannot fix (an invalid configuration, a policy refusal).
    Error,
}

impl TunnelState {
    /// True in the states where the user wants a tunnel and the helper holds or heals one.
    pub fn wants_tunnel(self) -> bool {
        matches!(
            self,
            TunnelState::Connecting
                | TunnelState::Connected
                | TunnelState::Reconnecting
                | TunnelState::Offline
        )
    }
}

impl std::fmt::Display for TunnelState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TunnelState::Disconnected => "disconnected",
            TunnelState::Connecting => "connecting",
            TunnelState::Connected => "connected",
            TunnelState::Reconnecting => "reconnecting",
            TunnelState::Offline => "offline",
            TunnelState::Disconnecting => "disconnecting",
            TunnelState::Error => "error",
        })
    }
}

/// Everything a client can see about the tunnel. `underpass status --json` prints exactly this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Status {
    pub state: TunnelState,
    pub profile: Option<String>,
    pub interface: Option<String>,
    #[cfg_attr(feature = "ts", ts(as = "Vec<String>"))]
    pub addresses: Vec<IpNet>,
    /// The endpoint of the first peer (the server), as resolved.
    pub endpoint: Option<SocketAddr>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Seconds since the most recent handshake with any peer.
    pub last_handshake_secs: Option<u64>,
    /// Why the tunnel is in [`TunnelState::Error`], in words a user can act on.
    pub error: Option<String>,
    pub mtu: Option<u16>,
    /// Routing mode actually installed.
    pub routing: Option<RoutingSummary>,
    pub peers: Vec<PeerStatus>,
    pub kill_switch: KillSwitchMode,
    pub lan_access: bool,
    /// What the firewall does right now.
    pub firewall: FirewallState,
    /// The resolvers the system is pointed at while connected, and how.
    pub dns: Option<DnsStatus>,
    /// The policy of the signed profile the user wants connected, if any.
    pub policy: Option<SessionPolicy>,
    // ---- issue 9 ----
    /// Set when the machine obeys a managed policy: who manages it and what is locked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub managed: Option<ManagedStatus>,
    /// While reconnecting or offline: why, which attempt, and for how long.
    #[serde(default)]
    pub reconnect: Option<ReconnectStatus>,
    /// Which server of the user's choice is in use (issue 8).
    #[serde(default)]
    pub server_in_use: Option<ServerInUse>,
}

/// What the helper is doing to heal the tunnel, for [`TunnelState::Reconnecting`] and
/// [`TunnelState::Offline`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ReconnectStatus {
    pub reason: ReconnectReason,
    /// 1 for the first attempt; reset when the tunnel works again or the network comes back.
    pub attempt: u32,
    /// Seconds since the tunnel stopped working (since it entered this episode).
    pub since_secs: u64,
    /// Seconds since the server last answered, if it ever did in this session.
    pub last_answer_secs: Option<u64>,
    /// What the current attempt does, in words ("forcing a handshake", "new socket", ...).
    pub action: String,
    /// The last attempt's failure, if it failed with an error rather than silence.
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum ReconnectReason {
    /// The server stopped answering (counters and probes say so).
    ServerNotResponding,
    /// Links, addresses or routes changed.
    NetworkChanged,
    /// The machine woke from sleep.
    ResumedFromSleep,
    /// No handshake for longer than a WireGuard session may live.
    SessionExpired,
    /// Setting the tunnel up failed; retrying.
    SetupFailed,
    /// No route reaches the server.
    NoNetwork,
}

impl ReconnectReason {
    /// The reason in plain words, for people.
    pub fn describe(self) -> &'static str {
        match self {
            ReconnectReason::ServerNotResponding => "the server is not responding",
            ReconnectReason::NetworkChanged => "the network changed",
            ReconnectReason::ResumedFromSleep => "the computer woke from sleep",
            ReconnectReason::SessionExpired => "the session with the server expired",
            ReconnectReason::SetupFailed => "setting up the tunnel failed",
            ReconnectReason::NoNetwork => "no network reaches the server",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum FirewallState {
    /// No Underpass rules: traffic flows as the system routes it.
    Open,
    /// Only traffic through the tunnel (and to its endpoint) may leave.
    TunnelOnly,
    /// Nothing but loopback, DHCP/NDP (and the LAN, when allowed) may leave.
    Blocking,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct DnsStatus {
    pub servers: Vec<IpAddr>,
    /// `resolv.conf` (rewritten in place) or `systemd-resolved`.
    pub method: String,
}

impl Status {
    pub fn disconnected() -> Self {
        Status {
            state: TunnelState::Disconnected,
            profile: None,
            interface: None,
            addresses: Vec::new(),
            endpoint: None,
            rx_bytes: 0,
            tx_bytes: 0,
            last_handshake_secs: None,
            error: None,
            mtu: None,
            routing: None,
            peers: Vec::new(),
            kill_switch: KillSwitchMode::default(),
            lan_access: false,
            firewall: FirewallState::Open,
            dns: None,
            policy: None,
            managed: None,
            reconnect: None,
            server_in_use: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct PeerStatus {
    pub public_key: Key,
    pub endpoint: Option<SocketAddr>,
    #[cfg_attr(feature = "ts", ts(as = "Vec<String>"))]
    pub allowed_ips: Vec<IpNet>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub last_handshake_secs: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct RoutingSummary {
    /// True when a default route (v4 or v6) goes through the tunnel.
    pub full_tunnel: bool,
    /// Prefixes routed into the tunnel.
    #[cfg_attr(feature = "ts", ts(as = "Vec<String>"))]
    pub include: Vec<IpNet>,
    /// Prefixes carved back out of the tunnel.
    #[cfg_attr(feature = "ts", ts(as = "Vec<String>"))]
    pub exclude: Vec<IpNet>,
    /// Firewall mark on the helper's own encrypted UDP, and the policy-routing table.
    pub fwmark: u32,
    pub table: u32,
}

/// A complete tunnel description, as the client hands it to the helper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelConfig {
    /// The profile's display name (shown in status).
    pub profile: String,
    pub private_key: Key,
    pub addresses: Vec<IpNet>,
    #[serde(default)]
    pub dns: Vec<IpAddr>,
    /// Search domains; in a split tunnel, only these names are resolved through the tunnel.
    #[serde(default)]
    pub dns_search: Vec<String>,
    /// Inner MTU; `None` lets the helper derive it from the route MTU toward the endpoint, minus
    /// 80 (the outer IPv6 + UDP + WireGuard headers).
    #[serde(default)]
    pub mtu: Option<u16>,
    pub peers: Vec<PeerConfig>,
    #[serde(default)]
    pub routing: RoutingConfig,
    /// A signed profile's policy; the helper enforces it for as long as the session lasts.
    #[serde(default)]
    pub policy: Option<SessionPolicy>,
    // ---- issue 9: the helper derives the policy itself ----
    /// The signed bundle this tunnel comes from, as signed. The helper verifies it against
    /// its pinned keys and derives `policy` from it (and from the machine's managed policy);
    /// the `policy` a client sends is never trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed: Option<SignedBundle>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub public_key: Key,
    #[serde(default)]
    pub preshared_key: Option<Key>,
    /// `host:port`, `a.b.c.d:port` or `[v6]:port`. Hostnames are resolved by the helper before
    /// any route goes up.
    pub endpoint: String,
    pub allowed_ips: Vec<IpNet>,
    #[serde(default)]
    pub persistent_keepalive: Option<u16>,
}

/// Which destinations enter the tunnel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// Prefixes to route into the tunnel. Empty means "every peer's AllowedIPs" (wg-quick's
    /// behaviour). A list makes a split tunnel.
    #[serde(default)]
    pub include: Vec<IpNet>,
    /// Prefixes that never enter the tunnel, even when an include covers them.
    #[serde(default)]
    pub exclude: Vec<IpNet>,
    /// wg-quick's `Table = off`: bring the tunnel up but install no routes at all (the user, or
    /// another tool, decides what goes into it).
    #[serde(default)]
    pub no_routes: bool,
}

/// Limits that keep one request from exhausting the helper.
pub const MAX_PEERS: usize = 64;
pub const MAX_PREFIXES: usize = 1024;
pub const MAX_NAME_LEN: usize = 128;
pub const MIN_MTU: u16 = 576;
pub const MIN_MTU_V6: u16 = 1280;
pub const MAX_MTU: u16 = 9000;

impl TunnelConfig {
    /// A small valid description: profile `example`, address 10.64.1.2/32, one peer at
    /// 192.0.2.10:51820 with AllowedIPs 0.0.0.0/0 (a full IPv4 tunnel), fixed dummy keys. For
    /// documentation and tests, which change the fields they are about.
    pub fn example() -> TunnelConfig {
        TunnelConfig {
            profile: "example".into(),
            private_key: Key([1; 32]),
            addresses: vec!["10.64.1.2/32".parse().expect("literal prefix")],
            dns: Vec::new(),
            dns_search: Vec::new(),
            mtu: None,
            peers: vec![PeerConfig {
                public_key: Key([2; 32]),
                preshared_key: None,
                endpoint: "192.0.2.10:51820".into(),
                allowed_ips: vec!["0.0.0.0/0".parse().expect("literal prefix")],
                persistent_keepalive: None,
            }],
            routing: RoutingConfig::default(),
            policy: None,
            signed: None,
        }
    }

    /// Checks everything that can be checked without touching the system. The helper calls
    /// this on every connect request; clients may call it to fail early.
    pub fn validate(&self) -> Result<(), String> {
        if self.profile.is_empty() || self.profile.len() > MAX_NAME_LEN {
            return Err(format!(
                "profile name must be 1 to {MAX_NAME_LEN} bytes long"
            ));
        }
        check_text("profile", &self.profile)?;
        if self.private_key.is_zero() {
            return Err("private key is all zeroes".into());
        }
        if self.addresses.is_empty() {
            return Err("the interface needs at least one address".into());
        }
        if self.peers.is_empty() {
            return Err("the profile has no peer".into());
        }
        if self.peers.len() > MAX_PEERS {
            return Err(format!("at most {MAX_PEERS} peers are supported"));
        }
        if self.dns.len() > 16 || self.dns_search.len() > 16 {
            return Err("at most 16 DNS servers and 16 search domains".into());
        }
        for d in &self.dns_search {
            let valid = !d.is_empty()
                && d.len() <= 253
                && d.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            if !valid {
                return Err(format!("{d:?} is not a valid search domain"));
            }
        }
        let prefixes = self.addresses.len()
            + self.routing.include.len()
            + self.routing.exclude.len()
            + self
                .peers
                .iter()
                .map(|p| p.allowed_ips.len())
                .sum::<usize>();
        if self.routing.no_routes
            && (!self.routing.include.is_empty() || !self.routing.exclude.is_empty())
        {
            return Err(
                "a profile without routes (Table = off) takes no include or exclude".into(),
            );
        }
        if let Some(p) = &self.policy {
            let split = !self.routing.include.is_empty() || !self.routing.exclude.is_empty();
            if split && !p.policy.split_tunnel_allowed {
                return Err(format!(
                    "the policy of {} (serial {}) does not allow split tunneling",
                    p.organization, p.serial
                ));
            }
        }
        if prefixes > MAX_PREFIXES {
            return Err(format!("at most {MAX_PREFIXES} prefixes in one request"));
        }
        for a in &self.addresses {
            if a.addr().is_unspecified() || a.addr().is_multicast() || a.addr().is_loopback() {
                return Err(format!("{a} cannot be an interface address"));
            }
        }
        self.validate_fields()?;
        if let Some(mtu) = self.mtu {
            let min = if self.addresses.iter().any(|a| a.addr().is_ipv6()) {
                MIN_MTU_V6
            } else {
                MIN_MTU
            };
            if !(min..=MAX_MTU).contains(&mtu) {
                return Err(format!("MTU {mtu} is outside {min}..={MAX_MTU}"));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, p) in self.peers.iter().enumerate() {
            if !seen.insert(p.public_key.clone()) {
                return Err(format!("peer {} repeats a public key", i + 1));
            }
            if p.public_key.is_zero() {
                return Err(format!("peer {} has an all-zero public key", i + 1));
            }
            if p.endpoint.is_empty()
                || p.endpoint.len() > 255
                || p.endpoint.chars().any(char::is_whitespace)
            {
                return Err(format!("peer {} has an invalid endpoint", i + 1));
            }
            if p.endpoint
                .rsplit_once(':')
                .and_then(|(_, port)| port.parse::<u16>().ok())
                .is_none()
            {
                return Err(format!(
                    "peer {}: endpoint {:?} has no port (write host:port or [v6]:port)",
                    i + 1,
                    p.endpoint
                ));
            }
        }
        Ok(())
    }
}

// ---- issue 9: signed bundles in the connect request, and the managed machine's status ----

/// A signed `.underpass` bundle and which of its servers a connect uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedBundle {
    /// The bundle file's text, byte for byte as signed.
    pub bundle: String,
    /// The id of the server (one of the bundle's `servers`).
    pub server: String,
}

/// What a managed machine's policy locks, for the CLI and the app to show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ManagedStatus {
    pub organization: String,
    /// The file the policy comes from (`/etc/underpass/policy.json`).
    pub source: String,
    /// One entry per locked setting, with the reason in words.
    pub locked: Vec<LockedSetting>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct LockedSetting {
    /// `kill_switch`, `split_tunnel`, `lan_access`, `dns`, `servers` or `profiles`.
    pub setting: String,
    pub reason: String,
}

impl ManagedStatus {
    /// The locks of a managed policy, described.
    pub fn describe(
        organization: &str,
        source: &str,
        policy: &Policy,
        signed_only: bool,
        servers: Option<String>,
    ) -> ManagedStatus {
        let mut locked = Vec::new();
        let mut lock = |setting: &str, reason: String| {
            locked.push(LockedSetting {
                setting: setting.into(),
                reason,
            })
        };
        let min = policy.effective_min_kill_switch();
        if min > KillSwitchMode::Off {
            lock("kill_switch", format!("at least \"{min}\""));
        }
        if !policy.split_tunnel_allowed {
            lock("split_tunnel", "not allowed".into());
        }
        if !policy.lan_access_allowed {
            lock("lan_access", "not allowed".into());
        }
        if policy.dns_locked {
            lock("dns", "only the tunnel's resolvers".into());
        }
        if signed_only {
            lock(
                "profiles",
                "only profiles signed by a key your organization installed".into(),
            );
        }
        if let Some(servers) = servers {
            lock("servers", servers);
        }
        ManagedStatus {
            organization: organization.into(),
            source: source.into(),
            locked,
        }
    }
}

// ---- issue 8: the user's choice of servers in the connect request ----

/// At most this many servers in one connect request's choice (`config` and its alternatives):
/// enough for "the fastest in a country" ranked, and small enough to fit one frame with a
/// signed bundle each.
pub const MAX_CHOICE: usize = 16;

/// Which server of the user's choice the tunnel uses (or is trying).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ServerInUse {
    /// The profile of the server.
    pub profile: String,
    /// For a signed bundle, the server's id in it.
    pub server: Option<String>,
    pub endpoint: String,
    /// 1-based position of the server in the choice, in the order the client sent it.
    pub position: u32,
    /// How many servers the choice holds (1 for a named server).
    pub of: u32,
}

/// Checks a connect request's whole choice: `config` as [`TunnelConfig::validate`] does, and
/// each alternative the same way with its errors prefixed `alternatives[i]: `; at most
/// [`MAX_CHOICE`] servers in all, and none twice (the same first peer key and endpoint).
pub fn validate_choice(config: &TunnelConfig, alternatives: &[TunnelConfig]) -> Result<(), String> {
    config.validate()?;
    if alternatives.len() >= MAX_CHOICE {
        return Err(format!(
            "alternatives: {} servers in one choice, at most {MAX_CHOICE} are allowed",
            alternatives.len() + 1
        ));
    }
    let server = |c: &TunnelConfig| {
        c.peers
            .first()
            .map(|p| (p.public_key.clone(), p.endpoint.clone()))
    };
    let mut seen = vec![server(config)];
    for (i, a) in alternatives.iter().enumerate() {
        a.validate()
            .map_err(|reason| format!("alternatives[{i}]: {reason}"))?;
        let this = server(a);
        if seen.contains(&this) {
            return Err(format!(
                "alternatives[{i}]: repeats a server already in the choice ({})",
                a.peers[0].endpoint
            ));
        }
        seen.push(this);
    }
    Ok(())
}

// ---- Connect-field rules (issue 9): each error names the field it is about. ----

/// Unicode format characters (general category Cf) and the bidi controls: invisible, and able
/// to make a name read differently from what it is (U+202E turns `gpj.exe` into `exe.jpg`).
pub fn is_format_or_bidi(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x0890..=0x0891 | 0x08E2
        | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F
        | 0xFEFF | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F)
}

/// Refuses control, format and bidi characters in a name a user will read.
pub fn check_text(field: &str, text: &str) -> Result<(), String> {
    match text
        .chars()
        .find(|c| c.is_control() || is_format_or_bidi(*c))
    {
        Some(c) => Err(format!(
            "{field}: contains the invisible character U+{:04X} (control, format or bidi); \
             names must read as what they are",
            c as u32
        )),
        None => Ok(()),
    }
}

/// The shortest interface prefixes accepted: a shorter one installs a connected route over a
/// large part of the Internet (`/1` is half of it), which can swallow the endpoint's route.
pub const MIN_INTERFACE_PREFIX_V4: u8 = 8;
pub const MIN_INTERFACE_PREFIX_V6: u8 = 16;

impl TunnelConfig {
    /// Whether traffic to `ip` enters the tunnel: inside a peer's AllowedIPs and in no
    /// excluded prefix, and either on the interface's own subnet or routed (inside the
    /// included prefixes when there are any; nothing is routed with `no_routes`).
    pub fn routes_into_tunnel(&self, ip: IpAddr) -> bool {
        let allowed = self
            .peers
            .iter()
            .any(|p| p.allowed_ips.iter().any(|n| n.contains(&ip)));
        let excluded = self.routing.exclude.iter().any(|n| n.contains(&ip));
        let on_link = self.addresses.iter().any(|a| a.trunc().contains(&ip));
        let routed = !self.routing.no_routes
            && (self.routing.include.is_empty()
                || self.routing.include.iter().any(|n| n.contains(&ip)));
        allowed && !excluded && (on_link || routed)
    }

    /// In a split tunnel, routes the profile's own resolvers into the tunnel too (a host
    /// prefix each, when a peer's AllowedIPs cover it and no exclude does): without that, a
    /// split tunnel's DNS would go around it. Returns the prefixes added.
    pub fn include_resolvers(&mut self) -> Vec<IpNet> {
        if self.routing.include.is_empty() || self.routing.no_routes {
            return Vec::new();
        }
        let mut added = Vec::new();
        for d in self.dns.clone() {
            let allowed = self
                .peers
                .iter()
                .any(|p| p.allowed_ips.iter().any(|n| n.contains(&d)));
            let excluded = self.routing.exclude.iter().any(|n| n.contains(&d));
            if allowed && !excluded && !self.routes_into_tunnel(d) {
                let host = IpNet::from(d);
                self.routing.include.push(host);
                added.push(host);
            }
        }
        added
    }

    /// The rules added for issue 9: DNS servers, interface prefixes, endpoints.
    fn validate_fields(&self) -> Result<(), String> {
        for (i, d) in self.dns.iter().enumerate() {
            let kind = if d.is_loopback() {
                Some("a loopback address")
            } else if d.is_multicast() {
                Some("a multicast address")
            } else if d.is_unspecified() {
                Some("the unspecified address")
            } else {
                None
            };
            if let Some(kind) = kind {
                return Err(format!(
                    "dns[{i}]: {d} is {kind}; a tunnel's resolver must be a host reached \
                     through the tunnel"
                ));
            }
            if !self.routes_into_tunnel(*d) {
                return Err(format!(
                    "dns[{i}]: {d} is not routed into the tunnel (outside every peer's \
                     AllowedIPs, excluded, or not included), so queries to it would leave in \
                     the clear"
                ));
            }
        }
        for (i, a) in self.addresses.iter().enumerate() {
            let min = match a {
                IpNet::V4(_) => MIN_INTERFACE_PREFIX_V4,
                IpNet::V6(_) => MIN_INTERFACE_PREFIX_V6,
            };
            if a.prefix_len() < min {
                return Err(format!(
                    "addresses[{i}]: {a} is too wide (shorter than /{min}): its subnet route \
                     would capture a large part of the Internet, the endpoint's route with it"
                ));
            }
            for (j, p) in self.peers.iter().enumerate() {
                if let Ok(ep) = p.endpoint.parse::<SocketAddr>() {
                    if a.trunc().contains(&ep.ip()) {
                        return Err(format!(
                            "addresses[{i}]: the subnet of {a} contains peers[{j}].endpoint \
                             {}; its route would send the encrypted traffic into the tunnel \
                             itself",
                            ep.ip()
                        ));
                    }
                }
            }
        }
        for (j, p) in self.peers.iter().enumerate() {
            check_endpoint(&format!("peers[{j}].endpoint"), &p.endpoint)?;
        }
        Ok(())
    }
}

/// An endpoint must name a real remote port: not 0, and (when literal) not a loopback,
/// multicast, broadcast or unspecified address.
pub fn check_endpoint(field: &str, endpoint: &str) -> Result<(), String> {
    check_text(field, endpoint)?;
    let port = endpoint
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse::<u16>().ok());
    if port == Some(0) {
        return Err(format!(
            "{field}: {endpoint:?} has port 0, which no server listens on"
        ));
    }
    if let Ok(addr) = endpoint.parse::<SocketAddr>() {
        check_endpoint_ip(field, addr.ip())?;
    }
    Ok(())
}

/// The address rules of [`check_endpoint`], also for a resolved host name.
pub fn check_endpoint_ip(field: &str, ip: IpAddr) -> Result<(), String> {
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    let kind = if ip.is_loopback() {
        "a loopback address"
    } else if ip.is_multicast() || broadcast {
        "a multicast or broadcast address"
    } else if ip.is_unspecified() {
        "the unspecified address"
    } else {
        return Ok(());
    };
    Err(format!("{field}: {ip} is {kind}, not a server"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example, dual-stack, with DNS and a search domain.
    pub(crate) fn sample_config() -> TunnelConfig {
        let mut c = TunnelConfig::example();
        c.profile = "se-sto-1".into();
        c.addresses.push("fd00:64:1::2/128".parse().unwrap());
        c.dns = vec!["10.64.1.1".parse().unwrap()];
        c.dns_search = vec!["corp.example".into()];
        c.peers[0].allowed_ips.push("::/0".parse().unwrap());
        c.peers[0].persistent_keepalive = Some(25);
        c
    }

    #[test]
    fn policy_names_each_violation_and_dns_lock_needs_the_kill_switch() {
        let p = Policy {
            min_kill_switch: KillSwitchMode::Off,
            split_tunnel_allowed: false,
            lan_access_allowed: false,
            dns_locked: true,
        };
        assert_eq!(p.effective_min_kill_switch(), KillSwitchMode::Auto);
        let v = p.violations(&SessionRequest {
            kill_switch: KillSwitchMode::Off,
            split_tunnel: true,
            lan_access: true,
        });
        assert_eq!(v.len(), 3, "{v:?}");
        assert!(p
            .violations(&SessionRequest {
                kill_switch: KillSwitchMode::Lockdown,
                split_tunnel: false,
                lan_access: false,
            })
            .is_empty());
        let mut c = sample_config();
        c.policy = Some(SessionPolicy {
            organization: "ACME IT".into(),
            serial: 3,
            policy: p,
        });
        c.routing.exclude = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(c.validate().unwrap_err().contains("ACME IT"));
    }

    #[test]
    fn sample_config_is_valid() {
        TunnelConfig::example().validate().unwrap();
        sample_config().validate().unwrap();
    }

    #[test]
    fn connect_request_round_trips_as_json() {
        let msg = ClientMessage::Request {
            id: 7,
            request: Request::Connect {
                config: Box::new(sample_config()),
                alternatives: Vec::new(),
            },
        };
        let json = serde_json::to_string(&msg).unwrap();
        assert_eq!(serde_json::from_str::<ClientMessage>(&json).unwrap(), msg);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let json = r#"{"type":"hello","protocol":1,"client":"x","run":"rm -rf /"}"#;
        assert!(serde_json::from_str::<ClientMessage>(json).is_err());
    }

    #[test]
    fn status_json_has_the_documented_fields() {
        let v = serde_json::to_value(Status::disconnected()).unwrap();
        for field in [
            "state",
            "profile",
            "interface",
            "addresses",
            "endpoint",
            "rx_bytes",
            "tx_bytes",
            "last_handshake_secs",
            "error",
        ] {
            assert!(v.get(field).is_some(), "missing {field}");
        }
        assert_eq!(v["state"], "disconnected");
    }

    #[test]
    fn validation_names_the_problem() {
        let mut c = sample_config();
        c.peers[0].endpoint = "192.0.2.10".into();
        assert!(c.validate().unwrap_err().contains("no port"));
        let mut c = sample_config();
        c.mtu = Some(1000);
        assert!(c.validate().unwrap_err().contains("MTU 1000"));
        let mut c = sample_config();
        c.peers.push(c.peers[0].clone());
        assert!(c.validate().unwrap_err().contains("repeats"));
        let mut c = sample_config();
        c.addresses.clear();
        assert!(c.validate().is_err());
        let mut c = sample_config();
        c.dns_search = vec!["evil\nnameserver 1.2.3.4".into()];
        assert!(c.validate().unwrap_err().contains("search domain"));
    }

    // ---- Connect-field rules (issue 9) ----

    fn refused(c: &TunnelConfig, field: &str) {
        let err = c.validate().unwrap_err();
        assert!(
            err.starts_with(field),
            "expected an error about {field}, got: {err}"
        );
    }

    #[test]
    fn a_loopback_dns_server_is_refused() {
        let mut c = sample_config();
        c.dns = vec!["127.0.0.53".parse().unwrap()];
        refused(&c, "dns[0]: 127.0.0.53 is a loopback");
    }

    #[test]
    fn a_multicast_dns_server_is_refused() {
        let mut c = sample_config();
        c.dns.push("ff02::fb".parse().unwrap());
        refused(&c, "dns[1]: ff02::fb is a multicast");
    }

    #[test]
    fn an_unspecified_dns_server_is_refused() {
        let mut c = sample_config();
        c.dns = vec!["0.0.0.0".parse().unwrap()];
        refused(&c, "dns[0]: 0.0.0.0 is the unspecified");
    }

    #[test]
    fn a_dns_server_outside_the_tunnel_is_refused() {
        let mut c = sample_config();
        c.routing.include = vec!["10.0.0.0/8".parse().unwrap()];
        c.dns = vec!["198.51.100.53".parse().unwrap()];
        refused(&c, "dns[0]: 198.51.100.53 is not routed into the tunnel");
        // The profile's own resolver joins a split tunnel's include list (and then passes).
        assert_eq!(
            c.include_resolvers(),
            ["198.51.100.53/32".parse::<IpNet>().unwrap()]
        );
        c.validate().unwrap();
        let mut c = sample_config();
        c.routing.exclude = vec!["10.64.0.0/16".parse().unwrap()];
        refused(&c, "dns[0]: 10.64.1.1 is not routed");
        let mut c = sample_config();
        c.peers[0].allowed_ips = vec!["10.9.0.0/16".parse().unwrap()];
        refused(&c, "dns[0]: 10.64.1.1 is not routed");
        // On the interface's own subnet, a resolver is reached through the tunnel without routes.
        let mut c = sample_config();
        c.routing.no_routes = true;
        c.addresses[0] = "10.64.1.2/24".parse().unwrap();
        c.validate().unwrap();
    }

    #[test]
    fn an_interface_prefix_that_swallows_the_internet_is_refused() {
        let mut c = sample_config();
        c.addresses[0] = "10.64.1.2/1".parse().unwrap();
        refused(&c, "addresses[0]: 10.64.1.2/1 is too wide");
        let mut c = sample_config();
        c.addresses[1] = "fd00:64:1::2/8".parse().unwrap();
        refused(&c, "addresses[1]: fd00:64:1::2/8 is too wide");
    }

    #[test]
    fn an_interface_subnet_holding_the_endpoint_is_refused() {
        let mut c = sample_config();
        c.addresses[0] = "192.0.2.2/24".parse().unwrap();
        c.dns.clear();
        refused(
            &c,
            "addresses[0]: the subnet of 192.0.2.2/24 contains peers[0].endpoint",
        );
    }

    #[test]
    fn endpoint_port_zero_is_refused() {
        let mut c = sample_config();
        c.peers[0].endpoint = "192.0.2.10:0".into();
        refused(&c, "peers[0].endpoint: \"192.0.2.10:0\" has port 0");
        c.peers[0].endpoint = "vpn.example.com:0".into();
        refused(&c, "peers[0].endpoint");
    }

    #[test]
    fn loopback_multicast_and_unspecified_endpoints_are_refused() {
        for (endpoint, kind) in [
            ("127.0.0.1:51820", "loopback"),
            ("[::1]:51820", "loopback"),
            ("224.0.0.1:51820", "multicast"),
            ("255.255.255.255:51820", "broadcast"),
            ("[ff02::1]:51820", "multicast"),
            ("0.0.0.0:51820", "unspecified"),
        ] {
            let mut c = sample_config();
            c.peers[0].endpoint = endpoint.into();
            let err = c.validate().unwrap_err();
            assert!(
                err.starts_with("peers[0].endpoint") && err.contains(kind),
                "{endpoint}: {err}"
            );
        }
    }

    #[test]
    fn names_with_bidi_or_format_characters_are_refused() {
        for name in [
            "corp\u{202E}gpj.exe",
            "zero\u{200B}width",
            "bom\u{FEFF}",
            "iso\u{2066}late",
        ] {
            let mut c = sample_config();
            c.profile = name.into();
            refused(&c, "profile: contains the invisible character");
        }
        let mut c = sample_config();
        c.profile = "Büro-Zürich 東京".into();
        c.validate().unwrap();
        let mut c = sample_config();
        c.peers[0].endpoint = "vpn\u{200D}.example.com:51820".into();
        refused(
            &c,
            "peers[0].endpoint: contains the invisible character U+200D",
        );
    }

    // ---- issue 8: the choice ----

    fn other_server(n: u8) -> TunnelConfig {
        let mut c = sample_config();
        c.profile = format!("se-sto-{n}");
        c.peers[0].public_key = Key([10 + n; 32]);
        c.peers[0].endpoint = format!("192.0.2.{}:51820", 20 + n);
        c
    }

    #[test]
    fn a_connect_without_alternatives_keeps_its_old_shape() {
        let json = serde_json::to_value(Request::Connect {
            config: Box::new(sample_config()),
            alternatives: Vec::new(),
        })
        .unwrap();
        assert!(json.get("alternatives").is_none(), "{json}");
        let back: Request = serde_json::from_value(json).unwrap();
        assert!(matches!(back, Request::Connect { alternatives, .. } if alternatives.is_empty()));
    }

    #[test]
    fn every_alternative_is_validated_with_its_field_named() {
        let ok = [other_server(1), other_server(2)];
        validate_choice(&sample_config(), &ok).unwrap();
        let mut bad = ok.clone();
        bad[1].peers[0].endpoint = "127.0.0.1:51820".into();
        let err = validate_choice(&sample_config(), &bad).unwrap_err();
        assert!(
            err.starts_with("alternatives[1]: peers[0].endpoint: 127.0.0.1 is a loopback"),
            "{err}"
        );
        let mut bad = ok.clone();
        bad[0].dns = vec!["127.0.0.53".parse().unwrap()];
        let err = validate_choice(&sample_config(), &bad).unwrap_err();
        assert!(err.starts_with("alternatives[0]: dns[0]"), "{err}");
    }

    #[test]
    fn a_choice_is_bounded_and_repeats_no_server() {
        let many: Vec<TunnelConfig> = (1..MAX_CHOICE as u8).map(other_server).collect();
        validate_choice(&sample_config(), &many).unwrap();
        let too_many: Vec<TunnelConfig> = (1..=MAX_CHOICE as u8).map(other_server).collect();
        let err = validate_choice(&sample_config(), &too_many).unwrap_err();
        assert!(err.starts_with("alternatives: 17 servers"), "{err}");
        let err = validate_choice(&sample_config(), &[sample_config()]).unwrap_err();
        assert!(
            err.starts_with("alternatives[0]: repeats a server"),
            "{err}"
        );
    }
}
