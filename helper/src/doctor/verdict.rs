//! The doctor's judgement: recorded facts in, seven layers out. No I/O, so every verdict is
//! unit-tested on recorded inputs; `collect.rs` gathers the facts.
//!
//! A layer whose premise failed is `skipped` and names the layer it depends on, so the first
//! `fail` is where to look: interface, routes, firewall, DNS and MTU each depend on the one
//! before (DNS and MTU both on the firewall), and the control plane depends on the outer path
//! when no handshake ever came back (a server that cannot be reached cannot be judged on its
//! keys).

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use underpass_proto::{
    FirewallState, Key, KillSwitchMode, Layer, LayerId, LayerVerdict, MtuFinding, TunnelState,
};

use crate::routes::RouteLookup;
use crate::tunnel::mtu;

/// WireGuard drops a session whose last handshake is older than this (Reject-After-Time).
pub const HANDSHAKE_STALE_SECS: u64 = 180;

/// What a probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // probes run on Linux only
pub enum Outcome {
    /// A reply, described (`echo reply from 10.64.1.1 in 0.4 ms`).
    Answered(String),
    /// Sent, but nothing came back in time.
    Silent,
    /// The local stack refused to send it (a firewall rule, no route): the error.
    Refused(String),
    NotRun,
}

impl Outcome {
    fn describe(&self) -> String {
        match self {
            Outcome::Answered(s) => s.clone(),
            Outcome::Silent => "no reply".into(),
            Outcome::Refused(e) => format!("refused locally: {e}"),
            Outcome::NotRun => "not run".into(),
        }
    }
}

/// The live tunnel, as the helper set it up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelFacts {
    pub interface: String,
    pub table: u32,
    pub fwmark: u32,
    pub addresses: Vec<IpNet>,
    /// What is routed into the tunnel (empty with `Table = off`).
    pub include: Vec<IpNet>,
    pub exclude: Vec<IpNet>,
    pub no_routes: bool,
    pub dns: Vec<IpAddr>,
    /// The server's address inside the tunnel, where the probes go.
    pub target: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ControlFacts {
    pub state: TunnelState,
    pub error: Option<String>,
    pub profile: Option<String>,
    pub own_public_key: Option<Key>,
    pub server_public_key: Option<Key>,
    pub last_handshake_secs: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OuterFacts {
    pub endpoint: Option<SocketAddr>,
    /// The route for the helper's own (marked) UDP to the endpoint.
    pub route: Option<RouteLookup>,
    /// UDP to a closed port of the endpoint's host: a "port unreachable" proves UDP gets there.
    pub udp: Outcome,
    pub ping: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddress {
    pub local: IpAddr,
    /// The other end of a point-to-point address (`inet A peer B`).
    pub peer: Option<IpAddr>,
    pub prefix_len: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceFacts {
    pub name: String,
    pub exists: bool,
    pub up: bool,
    pub lower_up: bool,
    pub mtu: Option<u16>,
    pub addresses: Vec<InterfaceAddress>,
}

impl InterfaceFacts {
    /// An interface that is not there (yet).
    pub fn absent(name: &str) -> InterfaceFacts {
        InterfaceFacts {
            name: name.to_string(),
            exists: false,
            up: false,
            lower_up: false,
            mtu: None,
            addresses: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteFacts {
    /// The address looked up, and the kernel's answer for ordinary (unmarked) traffic.
    pub test_address: Option<IpAddr>,
    pub test: Option<RouteLookup>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallFacts {
    pub kill_switch: KillSwitchMode,
    pub state: FirewallState,
    /// What the kill switch's rules are called here ("table inet underpass").
    pub ours_name: &'static str,
    /// The kill switch's table as the kernel holds it (rule lines), when it is there.
    pub ours: Option<Vec<String>>,
    /// Rules of other tables that drop or reject traffic, with their counters.
    pub foreign_blocks: Vec<String>,
    /// An echo to the server's tunnel address.
    pub probe: Outcome,
    /// Packets the tunnel device took from the kernel / handed to it during the probe.
    pub tunnel_tx: Option<u64>,
    pub tunnel_rx: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverFacts {
    pub server: IpAddr,
    pub route: Option<RouteLookup>,
    pub query: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsFacts {
    /// `resolv.conf` or `systemd-resolved`, when the helper set DNS.
    pub method: Option<String>,
    pub resolvers: Vec<ResolverFacts>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtuFacts {
    pub current: Option<u16>,
    pub explicit: Option<u16>,
    /// The route toward the endpoint (its MTU is the default's base).
    pub path: Option<RouteLookup>,
    pub inner_v6: bool,
    /// `(size, passed)` for every probe sent, and the largest size that passed.
    pub steps: Vec<(u16, bool)>,
    pub largest: Option<u16>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub control: ControlFacts,
    pub outer: OuterFacts,
    /// `None` when there is no tunnel to look at.
    pub tunnel: Option<TunnelFacts>,
    pub interface: Option<InterfaceFacts>,
    pub routes: RouteFacts,
    pub firewall: FirewallFacts,
    pub dns: DnsFacts,
    pub mtu: MtuFacts,
}

fn layer(
    id: LayerId,
    verdict: LayerVerdict,
    evidence: Vec<String>,
    explanation: impl Into<String>,
    fix: Option<String>,
) -> Layer {
    Layer {
        id,
        verdict,
        depends_on: None,
        evidence,
        explanation: explanation.into(),
        fix,
    }
}

fn skipped(id: LayerId, on: LayerId, evidence: Vec<String>) -> Layer {
    Layer {
        id,
        verdict: LayerVerdict::Skipped,
        depends_on: Some(on),
        evidence,
        explanation: format!("Not checked: it depends on the {on} layer, which did not pass."),
        fix: None,
    }
}

/// Judges one layer on the facts.
type Judge = fn(&Facts) -> Layer;

/// All seven layers, in order.
pub fn diagnose(f: &Facts) -> Vec<Layer> {
    let outer = outer_path(f);
    let control = control_plane(f, &outer);
    let mut layers = vec![control, outer];
    let chain: [(LayerId, LayerId, Judge); 5] = [
        (LayerId::Interface, LayerId::ControlPlane, interface),
        (LayerId::Routes, LayerId::Interface, routes),
        (LayerId::Firewall, LayerId::Routes, firewall),
        (LayerId::Dns, LayerId::Firewall, dns),
        (LayerId::Mtu, LayerId::Firewall, mtu_layer),
    ];
    for (id, on, judge) in chain {
        let premise_ok = layers
            .iter()
            .find(|l| l.id == on)
            .is_some_and(|l| matches!(l.verdict, LayerVerdict::Ok | LayerVerdict::Warn));
        let judged = judge(f);
        layers.push(if premise_ok {
            judged
        } else {
            skipped(id, on, judged.evidence)
        });
    }
    layers
}

fn handshake_fresh(c: &ControlFacts) -> bool {
    c.last_handshake_secs
        .is_some_and(|s| s < HANDSHAKE_STALE_SECS)
}

fn key_evidence(c: &ControlFacts) -> Vec<String> {
    let mut e = Vec::new();
    if let Some(k) = &c.server_public_key {
        e.push(format!(
            "server public key (from the profile): {}",
            k.to_base64()
        ));
    }
    if let Some(k) = &c.own_public_key {
        e.push(format!(
            "your public key (the server must list it): {}",
            k.to_base64()
        ));
    }
    e
}

fn control_plane(f: &Facts, outer: &Layer) -> Layer {
    let c = &f.control;
    let id = LayerId::ControlPlane;
    let mut evidence = vec![format!(
        "state: {}{}",
        c.state,
        c.profile
            .as_ref()
            .map(|p| format!(" (profile {p})"))
            .unwrap_or_default()
    )];
    if let Some(e) = &c.error {
        evidence.push(format!("helper's last error: {e}"));
    }
    match c.last_handshake_secs {
        Some(s) => evidence.push(format!("last handshake {s} s ago")),
        None => evidence.push("no handshake has completed".into()),
    }
    evidence.push(format!(
        "received {} bytes, sent {} bytes",
        c.rx_bytes, c.tx_bytes
    ));
    evidence.extend(key_evidence(c));
    if c.state == TunnelState::Disconnected && c.server_public_key.is_none() {
        return layer(
            id,
            LayerVerdict::Fail,
            evidence,
            "There is no tunnel: Underpass is not connected, so nothing can be checked.",
            Some("Connect first (`underpass connect`), then run the doctor again.".into()),
        );
    }
    if handshake_fresh(c) {
        return layer(
            id,
            LayerVerdict::Ok,
            evidence,
            "The server answered the WireGuard handshake: both sides hold the right keys and \
             the session is current.",
            None,
        );
    }
    if outer.verdict == LayerVerdict::Fail {
        let mut s = skipped(id, LayerId::OuterPath, evidence);
        s.explanation = "Without a handshake the keys cannot be judged: nothing comes back from \
                         the endpoint at all (see outer-path)."
            .into();
        return s;
    }
    if outer.verdict == LayerVerdict::Warn {
        return layer(
            id,
            LayerVerdict::Fail,
            evidence,
            "No handshake has completed, and the doctor's probes could not leave to tell a \
             wrong key from a blocked path (see outer-path).",
            Some(
                "Run the doctor while the tunnel is connecting: `underpass connect --timeout 1`, \
                 then `underpass doctor` (the helper keeps trying for its handshake timeout)."
                    .into(),
            ),
        );
    }
    let stale = c.last_handshake_secs.is_some();
    layer(
        id,
        LayerVerdict::Fail,
        evidence,
        if stale {
            "The last handshake is older than 3 minutes: WireGuard has given up on the session, \
             and the server no longer answers new handshakes although UDP reaches it."
        } else {
            "UDP reaches the server's host, but the server never answers the WireGuard \
             handshake. A WireGuard server stays silent when a handshake is not meant for it: \
             the server's public key in your profile is wrong or out of date, or the server \
             does not know your public key (any more)."
        },
        Some(
            "Ask the VPN's administrator (or your provider's account page) for a current \
             profile: check that the server's public key matches, and that your public key \
             (above) is registered on the server."
                .into(),
        ),
    )
}

fn outer_path(f: &Facts) -> Layer {
    let o = &f.outer;
    let id = LayerId::OuterPath;
    let Some(endpoint) = o.endpoint else {
        return layer(
            id,
            LayerVerdict::Fail,
            vec!["no endpoint: there is no tunnel to reach".into()],
            "There is no server to reach: Underpass is not connected.",
            Some("Connect first (`underpass connect`).".into()),
        );
    };
    let mut evidence = vec![format!("endpoint {endpoint}")];
    match &o.route {
        Some(r) => evidence.push(format!(
            "route for the helper's encrypted UDP: {}",
            r.describe()
        )),
        None => evidence.push(format!("no route to {}", endpoint.ip())),
    }
    evidence.push(format!(
        "UDP probe to {} port {}: {}",
        endpoint.ip(),
        super::UDP_PROBE_PORT,
        o.udp.describe()
    ));
    evidence.push(format!("ping {}: {}", endpoint.ip(), o.ping.describe()));
    let Some(route) = &o.route else {
        return layer(
            id,
            LayerVerdict::Fail,
            evidence,
            "The system has no route to the server's address: this computer is offline, or its \
             network does not reach the internet.",
            Some("Check the network connection (Wi-Fi, cable), then connect again.".into()),
        );
    };
    if f.tunnel
        .as_ref()
        .is_some_and(|t| t.interface == route.interface)
    {
        return layer(
            id,
            LayerVerdict::Fail,
            evidence,
            "The encrypted packets to the server would be routed into the tunnel itself, a loop \
             that carries nothing.",
            Some(
                "Disconnect and connect again; if it persists, another program changed the \
                 policy routing rules (`ip rule`)."
                    .into(),
            ),
        );
    }
    if handshake_fresh(&f.control) {
        return layer(
            id,
            LayerVerdict::Ok,
            evidence,
            format!(
                "Encrypted UDP leaves through {} and answers come back: the recent handshake \
                 proves the path works both ways.",
                route.interface
            ),
            None,
        );
    }
    if let Outcome::Refused(e) = &o.udp {
        return layer(
            id,
            LayerVerdict::Warn,
            evidence,
            format!(
                "The probes could not leave this computer ({e}): with no tunnel up, the kill \
                 switch blocks everything, as it should, so the path cannot be tested now."
            ),
            None,
        );
    }
    if matches!(o.udp, Outcome::Answered(_)) {
        return layer(
            id,
            LayerVerdict::Ok,
            evidence,
            "UDP reaches the server's host: it answered the probe to a closed port. The path is \
             not what stops the tunnel.",
            None,
        );
    }
    let pinged = matches!(o.ping, Outcome::Answered(_));
    layer(
        id,
        LayerVerdict::Fail,
        evidence,
        if pinged {
            format!(
                "The server's host answers ping, but no UDP comes back from it: UDP to {} is \
                 blocked somewhere between you and the server (a hotel, office or mobile network \
                 that allows only web traffic does this).",
                endpoint.ip()
            )
        } else {
            format!(
                "Nothing comes back from {}: neither UDP nor ping. The network drops the \
                 traffic on the way, or the server is down.",
                endpoint.ip()
            )
        },
        Some(format!(
            "Try another network (a phone's hotspot): if it works there, this network blocks \
             UDP port {}; ask its administrator to allow it, or ask your VPN provider for a \
             server on a port that is allowed (such as 443 or 53).",
            endpoint.port()
        )),
    )
}

/// The point-to-point explanation, for the tunnel's first IPv4 address (or its first).
fn point_to_point(addr: &InterfaceAddress, other: Option<IpAddr>) -> String {
    let bits = if addr.local.is_ipv4() { 32 } else { 128 };
    let other_text = other.map(|o| format!(" --> {o}")).unwrap_or_default();
    let mut s = format!(
        "This is a point-to-point link: `inet {}{other_text}`, netmask /{}. {} is your \
         address inside the tunnel: what the server and everything behind it see as you.",
        addr.local, addr.prefix_len, addr.local
    );
    if let Some(o) = other {
        s.push_str(&format!(
            " {o} is the server's end of the link (the tunnel's gateway, often its DNS server \
             too); the doctor's probes go there."
        ));
    }
    if addr.prefix_len == bits {
        s.push_str(&format!(
            " A /{bits} mask is a network of exactly one address, so there is no \"subnet\" and \
             no neighbours: nothing is reached by being on the same network. Every packet goes \
             into the tunnel because a route says so, and the only thing at the other end is \
             the server, which forwards it. That is why a /{bits} needs no subnet, no gateway \
             address and no broadcast address."
        ));
    } else {
        s.push_str(&format!(
            " The /{} prefix puts the server's end on the same small network; routes still \
             decide what enters the tunnel.",
            addr.prefix_len
        ));
    }
    s
}

fn interface(f: &Facts) -> Layer {
    let id = LayerId::Interface;
    let (Some(t), Some(i)) = (&f.tunnel, &f.interface) else {
        return layer(
            id,
            LayerVerdict::Fail,
            vec!["no tunnel interface".into()],
            "There is no tunnel interface.",
            Some("Connect first.".into()),
        );
    };
    let mut evidence = Vec::new();
    if !i.exists {
        evidence.push(format!("{} does not exist", i.name));
        return layer(
            id,
            LayerVerdict::Fail,
            evidence,
            format!("The tunnel's interface {} is gone.", i.name),
            Some("Disconnect and connect again.".into()),
        );
    }
    let flags = [(i.up, "UP"), (i.lower_up, "LOWER_UP")]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(",");
    evidence.push(format!(
        "{}: <{flags}> mtu {}",
        i.name,
        i.mtu.map_or("?".into(), |m| m.to_string())
    ));
    for a in &i.addresses {
        let family = if a.local.is_ipv4() { "inet" } else { "inet6" };
        evidence.push(match a.peer {
            Some(p) => format!("{family} {} peer {p}/{}", a.local, a.prefix_len),
            None => format!("{family} {}/{}", a.local, a.prefix_len),
        });
    }
    let missing: Vec<&IpNet> = t
        .addresses
        .iter()
        .filter(|want| !i.addresses.iter().any(|a| a.local == want.addr()))
        .collect();
    for m in &missing {
        evidence.push(format!("expected address {m} is missing"));
    }
    if !i.up {
        return layer(
            id,
            LayerVerdict::Fail,
            evidence,
            format!(
                "The tunnel's interface {} is down: nothing can enter the tunnel.",
                i.name
            ),
            Some("Disconnect and connect again (something set the interface down).".into()),
        );
    }
    if !missing.is_empty() {
        let list = missing
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        return layer(
            id,
            LayerVerdict::Fail,
            evidence,
            format!(
                "The tunnel's address {list} is no longer on {}: packets into the tunnel have no \
                 source address the server accepts, and answers have nowhere to arrive.",
                i.name
            ),
            Some(format!(
                "Disconnect and connect again to put {list} back on {}; if it disappears again, \
                 another network tool (NetworkManager, a script) is removing it.",
                i.name
            )),
        );
    }
    let first = i
        .addresses
        .iter()
        .find(|a| a.local.is_ipv4())
        .or(i.addresses.first());
    let explanation = match first {
        Some(a) => point_to_point(a, a.peer.or(t.target)),
        None => "The interface has no address.".into(),
    };
    layer(id, LayerVerdict::Ok, evidence, explanation, None)
}

/// An address inside the first routed prefix (its first host), for the route lookup.
pub fn default_test_address(include: &[IpNet]) -> Option<IpAddr> {
    let net = include
        .iter()
        .find(|n| n.addr().is_ipv4())
        .or(include.first())?;
    if net.prefix_len() == 0 {
        // Any public address would do; a documentation one is never actually contacted.
        return Some(if net.addr().is_ipv4() {
            "192.0.2.1".parse().ok()?
        } else {
            "2001:db8::1".parse().ok()?
        });
    }
    net.hosts().next().or(Some(net.addr()))
}

fn routes(f: &Facts) -> Layer {
    let id = LayerId::Routes;
    let Some(t) = &f.tunnel else {
        return layer(id, LayerVerdict::Fail, vec![], "There is no tunnel.", None);
    };
    let mut evidence = vec![format!(
        "tunnel routes in table {}: {}",
        t.table,
        if t.include.is_empty() {
            "none".to_string()
        } else {
            t.include
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    )];
    if !t.exclude.is_empty() {
        evidence.push(format!(
            "excluded: {}",
            t.exclude
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if t.no_routes {
        return layer(
            id,
            LayerVerdict::Ok,
            evidence,
            "The profile says `Table = off`: Underpass installs no routes on purpose, so only \
             what you (or another tool) route into the tunnel enters it.",
            None,
        );
    }
    let Some(addr) = f.routes.test_address else {
        return layer(
            id,
            LayerVerdict::Warn,
            evidence,
            "No address to look up: the tunnel routes nothing.",
            None,
        );
    };
    match &f.routes.test {
        Some(r) => evidence.push(format!("route get {addr}: {}", r.describe())),
        None => evidence.push(format!("route get {addr}: no route")),
    }
    let expected =
        t.include.iter().any(|n| n.contains(&addr)) && !t.exclude.iter().any(|n| n.contains(&addr));
    let through = f
        .routes
        .test
        .as_ref()
        .is_some_and(|r| r.interface == t.interface);
    match (expected, through) {
        (true, true) | (false, false) => layer(
            id,
            LayerVerdict::Ok,
            evidence,
            format!(
                "Traffic for {addr} {} the tunnel, as the profile asks.",
                if expected { "enters" } else { "stays out of" }
            ),
            None,
        ),
        (true, false) => {
            layer(
                id,
                LayerVerdict::Fail,
                evidence,
                format!(
                "Traffic for {addr} should go into the tunnel ({}), but the kernel sends it {}: \
                 the tunnel's route is missing from table {}.",
                t.interface,
                f.routes
                    .test
                    .as_ref()
                    .map_or("nowhere".to_string(), |r| format!("through {}", r.interface)),
                t.table
            ),
                Some(
                    "Disconnect and connect again to reinstall the routes; if they vanish again, \
                 another network tool is rewriting the routing table."
                        .into(),
                ),
            )
        }
        (false, true) => layer(
            id,
            LayerVerdict::Warn,
            evidence,
            format!("{addr} is not meant for the tunnel, but a route sends it there."),
            None,
        ),
    }
}

fn firewall(f: &Facts) -> Layer {
    let id = LayerId::Firewall;
    let w = &f.firewall;
    let mut evidence = vec![format!(
        "kill switch: {}, firewall: {}",
        w.kill_switch,
        match w.state {
            FirewallState::Open => "open (no Underpass rules)",
            FirewallState::TunnelOnly => "tunnel only",
            FirewallState::Blocking => "blocking",
        }
    )];
    match &w.ours {
        Some(rules) => evidence.push(format!(
            "{}: {} rules{}",
            w.ours_name,
            rules.len(),
            rules
                .iter()
                .filter(|r| r.contains("counter") || r.contains("Packets:"))
                .map(|r| format!("; {r}"))
                .collect::<String>()
        )),
        None => evidence.push(format!("{}: absent", w.ours_name)),
    }
    for b in &w.foreign_blocks {
        evidence.push(format!("other rule: {b}"));
    }
    let target = f
        .tunnel
        .as_ref()
        .and_then(|t| t.target)
        .map_or("the server".to_string(), |a| a.to_string());
    evidence.push(format!(
        "echo to {target} through the tunnel: {}",
        w.probe.describe()
    ));
    if let (Some(tx), Some(rx)) = (w.tunnel_tx, w.tunnel_rx) {
        evidence.push(format!(
            "during the probe the tunnel carried {tx} packets out and {rx} in"
        ));
    }
    let others = if w.foreign_blocks.is_empty() {
        String::new()
    } else {
        format!(" (look at: {})", w.foreign_blocks.join("; "))
    };
    if w.kill_switch != KillSwitchMode::Off && w.ours.is_none() {
        return layer(
            id,
            LayerVerdict::Fail,
            evidence,
            "The kill switch is on, but its firewall table is gone: if the tunnel drops, \
             traffic leaves unprotected.",
            Some("Set the kill switch again (`underpass killswitch auto`) or reconnect.".into()),
        );
    }
    match &w.probe {
        Outcome::Refused(e) => {
            return layer(
                id,
                LayerVerdict::Fail,
                evidence,
                format!(
                    "A firewall rule refuses traffic into the tunnel: the system would not even \
                     send an echo to {target} ({e}){others}."
                ),
                Some(
                    "Remove the rule that drops traffic on the tunnel interface (a firewall \
                     tool, a container runtime or a script added it; the rules are listed \
                     above), then run the doctor again."
                        .into(),
                ),
            )
        }
        Outcome::Silent if w.tunnel_tx == Some(0) => {
            return layer(
                id,
                LayerVerdict::Fail,
                evidence,
                format!(
                    "The echo to {target} was sent but never reached the tunnel: a firewall \
                     rule drops it on the way{others}."
                ),
                Some("Remove the rule that drops traffic into the tunnel.".into()),
            )
        }
        Outcome::Silent if w.tunnel_rx.is_some_and(|n| n > 0) => {
            return layer(
                id,
                LayerVerdict::Fail,
                evidence,
                format!(
                    "The answer from {target} came out of the tunnel but never reached the \
                     program that asked: a firewall rule drops incoming tunnel traffic{others}."
                ),
                Some("Remove the rule that drops traffic from the tunnel interface.".into()),
            )
        }
        Outcome::Silent => {
            return layer(
                id,
                LayerVerdict::Warn,
                evidence,
                format!(
                    "The echo went into the tunnel, but {target} did not answer: the server may \
                     not answer pings, so the firewall cannot be judged this way."
                ),
                None,
            )
        }
        _ => {}
    }
    let (verdict, explanation) = if w.kill_switch == KillSwitchMode::Off {
        (
            LayerVerdict::Warn,
            "Traffic passes into the tunnel. The kill switch is off: if the tunnel drops, \
             traffic leaves unprotected.",
        )
    } else {
        (
            LayerVerdict::Ok,
            "Traffic passes into the tunnel and back, and the kill switch holds everything else \
             to it.",
        )
    };
    layer(
        id,
        verdict,
        evidence,
        explanation,
        (w.kill_switch == KillSwitchMode::Off)
            .then(|| "Turn the kill switch on: `underpass killswitch auto`.".into()),
    )
}

fn dns(f: &Facts) -> Layer {
    let id = LayerId::Dns;
    let Some(t) = &f.tunnel else {
        return layer(id, LayerVerdict::Fail, vec![], "There is no tunnel.", None);
    };
    let d = &f.dns;
    let mut evidence = vec![match &d.method {
        Some(m) => format!(
            "the helper points the system at {} ({m})",
            t.dns
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => "the profile names no DNS server: the system keeps its own".into(),
    }];
    for r in &d.resolvers {
        evidence.push(format!(
            "resolver {}: {}; query: {}",
            r.server,
            r.route.as_ref().map_or("no route".to_string(), |l| format!(
                "routed through {}",
                l.interface
            )),
            r.query.describe()
        ));
    }
    if d.resolvers.is_empty() {
        return layer(
            id,
            LayerVerdict::Warn,
            evidence,
            "The system has no resolver configured: names will not resolve.",
            Some("Set `DNS =` in the profile, or configure a resolver.".into()),
        );
    }
    let full = t.include.iter().any(|n| n.prefix_len() == 0);
    let outside: Vec<&ResolverFacts> = d
        .resolvers
        .iter()
        .filter(|r| {
            r.route.as_ref().is_some_and(|l| l.interface != t.interface) && !r.server.is_loopback()
        })
        .collect();
    if full && !outside.is_empty() {
        let r = outside[0];
        let via = r.route.as_ref().map_or("", |l| l.interface.as_str());
        let refused = !t.dns.contains(&r.server) && f.firewall.kill_switch != KillSwitchMode::Off;
        return layer(
            id,
            LayerVerdict::Fail,
            evidence,
            format!(
                "The system asks {} for names, and that resolver is reached through {via}, \
                 outside the tunnel: every name you look up would go to that network instead of \
                 through the VPN{}.",
                r.server,
                if refused {
                    "; the kill switch refuses such queries, so names do not resolve at all"
                } else {
                    ""
                }
            ),
            Some(if t.dns.is_empty() {
                "Add the tunnel's resolver to the profile (`DNS = ...` in [Interface]; your VPN \
                 provider or administrator names it) and reconnect: Underpass then points the \
                 system at it while connected."
                    .into()
            } else {
                "Reconnect so Underpass points the system's resolver at the tunnel's again; \
                 something rewrote it."
                    .into()
            }),
        );
    }
    if let Some(r) = d
        .resolvers
        .iter()
        .find(|r| !matches!(r.query, Outcome::Answered(_)))
    {
        return layer(
            id,
            LayerVerdict::Fail,
            evidence,
            format!(
                "The resolver {} does not answer: names do not resolve.",
                r.server
            ),
            Some(
                "Check the profile's `DNS =` with your VPN provider; the resolver must be \
                 reachable inside the tunnel."
                    .into(),
            ),
        );
    }
    layer(
        id,
        LayerVerdict::Ok,
        evidence,
        "Names are resolved by the tunnel's resolver, through the tunnel.",
        None,
    )
}

/// The path-MTU finding for a client to offer, from the facts.
pub fn mtu_finding(m: &MtuFacts) -> Option<MtuFinding> {
    let current = m.current?;
    let suggested = match (m.explicit, m.largest) {
        (None, Some(l)) if l < current => Some(l),
        _ => None,
    };
    Some(MtuFinding {
        current,
        explicit: m.explicit,
        largest_packet: m.largest,
        suggested,
    })
}

fn mtu_layer(f: &Facts) -> Layer {
    let id = LayerId::Mtu;
    let m = &f.mtu;
    let Some(current) = m.current else {
        return layer(id, LayerVerdict::Fail, vec![], "There is no tunnel.", None);
    };
    let path_mtu = m.path.as_ref().and_then(|p| p.path_mtu());
    let derived = mtu::default_mtu(path_mtu, m.inner_v6);
    let mut evidence = vec![format!("tunnel MTU now: {current}")];
    if let Some(p) = &m.path {
        evidence.push(format!("route toward the endpoint: {}", p.describe()));
    }
    evidence.push(match m.explicit {
        Some(e) => format!("the profile sets MTU = {e}, which always wins"),
        None => format!(
            "derived default: route MTU {} minus {} = {derived}",
            path_mtu.unwrap_or(mtu::DEFAULT_PATH_MTU),
            mtu::OVERHEAD
        ),
    });
    if !m.steps.is_empty() {
        evidence.push(format!(
            "path-MTU probe (echo with DF set through the tunnel): {}",
            m.steps
                .iter()
                .map(|(s, ok)| format!("{s} {}", if *ok { "passed" } else { "lost" }))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let Some(largest) = m.largest else {
        return layer(
            id,
            LayerVerdict::Warn,
            evidence,
            "The path MTU could not be probed (the server does not answer echoes).",
            None,
        );
    };
    evidence.push(format!(
        "largest packet through the tunnel: {largest} bytes, so the MTU that fits is {largest}"
    ));
    if largest >= current {
        return layer(
            id,
            LayerVerdict::Ok,
            evidence,
            format!(
                "Packets of the tunnel's full size ({current} bytes) cross the real path: \
                 large transfers will not stall."
            ),
            None,
        );
    }
    match m.explicit {
        Some(e) => layer(
            id,
            LayerVerdict::Fail,
            evidence,
            format!(
                "The profile sets MTU = {e}, but only packets up to {largest} bytes cross the \
                 path: larger ones vanish, so big transfers stall. The profile's MTU always \
                 wins, so Underpass does not change it."
            ),
            Some(format!(
                "Change `MTU = {e}` to `MTU = {largest}` in the profile (or remove the line so \
                 Underpass derives it), then reconnect."
            )),
        ),
        None => layer(
            id,
            LayerVerdict::Fail,
            evidence,
            format!(
                "Packets larger than {largest} bytes vanish on the way (the network drops them \
                 and the \"fragmentation needed\" messages never arrive), so small requests \
                 work but large transfers stall."
            ),
            Some(format!(
                "Apply the measured MTU: `underpass doctor --apply-mtu` sets the tunnel MTU to \
                 {largest} (the TCP MSS clamp follows)."
            )),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(interface: &str) -> RouteLookup {
        RouteLookup {
            destination: "192.0.2.1".parse().unwrap(),
            interface: interface.into(),
            gateway: None,
            source: None,
            route_mtu: None,
            link_mtu: Some(1500),
        }
    }

    /// A healthy full tunnel, as recorded from the sandbox.
    fn healthy() -> Facts {
        let tunnel = TunnelFacts {
            interface: "underpass0".into(),
            table: 30064,
            fwmark: 30064,
            addresses: vec!["10.64.1.2/32".parse().unwrap()],
            include: vec!["0.0.0.0/0".parse().unwrap()],
            exclude: vec![],
            no_routes: false,
            dns: vec!["10.64.1.1".parse().unwrap()],
            target: Some("10.64.1.1".parse().unwrap()),
        };
        Facts {
            control: ControlFacts {
                state: TunnelState::Connected,
                error: None,
                profile: Some("se-sto-wg-001".into()),
                own_public_key: Some(Key([3; 32])),
                server_public_key: Some(Key([2; 32])),
                last_handshake_secs: Some(4),
                rx_bytes: 1000,
                tx_bytes: 2000,
            },
            outer: OuterFacts {
                endpoint: Some("192.0.2.10:51820".parse().unwrap()),
                route: Some(lookup("eth0")),
                udp: Outcome::NotRun,
                ping: Outcome::NotRun,
            },
            interface: Some(InterfaceFacts {
                name: "underpass0".into(),
                exists: true,
                up: true,
                lower_up: true,
                mtu: Some(1420),
                addresses: vec![InterfaceAddress {
                    local: "10.64.1.2".parse().unwrap(),
                    peer: None,
                    prefix_len: 32,
                }],
            }),
            routes: RouteFacts {
                test_address: Some("192.0.2.1".parse().unwrap()),
                test: Some(lookup("underpass0")),
            },
            firewall: FirewallFacts {
                kill_switch: KillSwitchMode::Auto,
                state: FirewallState::TunnelOnly,
                ours_name: "table inet underpass",
                ours: Some(vec!["oifname \"underpass0\" accept".into()]),
                foreign_blocks: vec![],
                probe: Outcome::Answered("echo reply from 10.64.1.1".into()),
                tunnel_tx: Some(1),
                tunnel_rx: Some(1),
            },
            dns: DnsFacts {
                method: Some("resolv.conf".into()),
                resolvers: vec![ResolverFacts {
                    server: "10.64.1.1".parse().unwrap(),
                    route: Some(lookup("underpass0")),
                    query: Outcome::Answered("answered".into()),
                }],
            },
            mtu: MtuFacts {
                current: Some(1420),
                explicit: None,
                path: Some(lookup("eth0")),
                inner_v6: false,
                steps: vec![(1420, true)],
                largest: Some(1420),
            },
            tunnel: Some(tunnel),
        }
    }

    fn verdicts(f: &Facts) -> Vec<(LayerId, LayerVerdict)> {
        diagnose(f).iter().map(|l| (l.id, l.verdict)).collect()
    }

    fn first_fail(f: &Facts) -> Layer {
        diagnose(f)
            .into_iter()
            .find(|l| l.verdict == LayerVerdict::Fail)
            .expect("a failing layer")
    }

    #[test]
    fn a_healthy_tunnel_is_ok_on_all_seven_layers_in_order() {
        let v = verdicts(&healthy());
        assert_eq!(
            v.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            LayerId::ALL.to_vec()
        );
        assert!(v.iter().all(|(_, v)| *v == LayerVerdict::Ok), "{v:?}");
    }

    #[test]
    fn no_handshake_but_udp_reaches_the_host_blames_the_keys() {
        let mut f = healthy();
        f.control.state = TunnelState::Connecting;
        f.control.last_handshake_secs = None;
        f.outer.udp = Outcome::Answered("port unreachable from 192.0.2.10".into());
        let l = first_fail(&f);
        assert_eq!(l.id, LayerId::ControlPlane);
        assert!(l.fix.unwrap().contains("public key"));
        assert!(l.evidence.iter().any(|e| e.contains("server public key")));
        let v = verdicts(&f);
        assert_eq!(v[1], (LayerId::OuterPath, LayerVerdict::Ok));
        assert_eq!(v[2], (LayerId::Interface, LayerVerdict::Skipped));
    }

    #[test]
    fn no_handshake_and_no_udp_back_blames_the_path_and_skips_the_keys() {
        let mut f = healthy();
        f.control.last_handshake_secs = None;
        f.outer.udp = Outcome::Silent;
        f.outer.ping = Outcome::Answered("echo reply".into());
        let layers = diagnose(&f);
        assert_eq!(layers[0].verdict, LayerVerdict::Skipped);
        assert_eq!(layers[0].depends_on, Some(LayerId::OuterPath));
        let l = first_fail(&f);
        assert_eq!(l.id, LayerId::OuterPath);
        assert!(l.explanation.contains("blocked"), "{}", l.explanation);
        assert!(l.fix.unwrap().contains("UDP port 51820"));
    }

    #[test]
    fn probes_blocked_by_the_kill_switch_after_a_failed_connect_say_so() {
        let mut f = healthy();
        f.control.state = TunnelState::Error;
        f.control.last_handshake_secs = None;
        f.tunnel = None;
        f.outer.udp = Outcome::Refused("Operation not permitted".into());
        let layers = diagnose(&f);
        assert_eq!(layers[1].verdict, LayerVerdict::Warn);
        assert!(layers[1].explanation.contains("kill switch"));
        let l = first_fail(&f);
        assert_eq!(l.id, LayerId::ControlPlane);
        assert!(l.fix.unwrap().contains("while the tunnel is connecting"));
    }

    #[test]
    fn a_removed_tunnel_address_fails_the_interface_layer() {
        let mut f = healthy();
        f.interface.as_mut().unwrap().addresses.clear();
        let l = first_fail(&f);
        assert_eq!(l.id, LayerId::Interface);
        assert!(l
            .evidence
            .iter()
            .any(|e| e.contains("10.64.1.2/32 is missing")));
        assert!(l.fix.unwrap().contains("connect again"));
    }

    #[test]
    fn the_interface_layer_explains_the_point_to_point_link() {
        let l = &diagnose(&healthy())[2];
        assert!(l.explanation.contains("inet 10.64.1.2 --> 10.64.1.1"));
        assert!(l.explanation.contains("netmask /32"));
        assert!(l.explanation.contains("your address"));
        assert!(l.explanation.contains("no \"subnet\""));
    }

    #[test]
    fn a_missing_tunnel_route_fails_the_routes_layer() {
        let mut f = healthy();
        f.routes.test = Some(lookup("eth0"));
        let l = first_fail(&f);
        assert_eq!(l.id, LayerId::Routes);
        assert!(l.explanation.contains("missing from table 30064"));
        assert!(l.evidence.iter().any(|e| e.contains("dev eth0")));
    }

    #[test]
    fn a_refused_echo_fails_the_firewall_layer_and_names_the_rule() {
        let mut f = healthy();
        f.firewall.probe = Outcome::Refused("Operation not permitted".into());
        f.firewall.foreign_blocks =
            vec!["table inet breaker chain out: oifname \"underpass0\" drop".into()];
        let l = first_fail(&f);
        assert_eq!(l.id, LayerId::Firewall);
        assert!(l.explanation.contains("breaker"));
        let v = verdicts(&f);
        assert_eq!(v[5], (LayerId::Dns, LayerVerdict::Skipped));
        assert_eq!(v[6], (LayerId::Mtu, LayerVerdict::Skipped));
    }

    #[test]
    fn a_deleted_kill_switch_table_fails_the_firewall_layer() {
        let mut f = healthy();
        f.firewall.ours = None;
        assert_eq!(first_fail(&f).id, LayerId::Firewall);
        f.firewall.kill_switch = KillSwitchMode::Off;
        assert_eq!(verdicts(&f)[4], (LayerId::Firewall, LayerVerdict::Warn));
    }

    #[test]
    fn a_resolver_outside_the_tunnel_fails_the_dns_layer() {
        let mut f = healthy();
        f.tunnel.as_mut().unwrap().dns.clear();
        f.dns.method = None;
        f.dns.resolvers = vec![ResolverFacts {
            server: "198.51.100.1".parse().unwrap(),
            route: Some(lookup("eth0")),
            query: Outcome::Refused("Connection refused".into()),
        }];
        let l = first_fail(&f);
        assert_eq!(l.id, LayerId::Dns);
        assert!(l.explanation.contains("198.51.100.1") && l.explanation.contains("eth0"));
        assert!(l.fix.unwrap().contains("DNS ="));
    }

    #[test]
    fn a_silent_tunnel_resolver_fails_the_dns_layer() {
        let mut f = healthy();
        f.dns.resolvers[0].query = Outcome::Silent;
        assert_eq!(first_fail(&f).id, LayerId::Dns);
    }

    #[test]
    fn a_path_smaller_than_the_tunnel_fails_the_mtu_layer_and_offers_the_size() {
        let mut f = healthy();
        f.mtu.steps = vec![(998, true), (1209, true), (1315, true), (1368, false)];
        f.mtu.largest = Some(1320);
        let l = first_fail(&f);
        assert_eq!(l.id, LayerId::Mtu);
        assert!(l.fix.unwrap().contains("--apply-mtu"));
        assert_eq!(mtu_finding(&f.mtu).unwrap().suggested, Some(1320));
    }

    #[test]
    fn an_explicit_profile_mtu_wins_and_the_doctor_says_so() {
        let mut f = healthy();
        f.mtu.explicit = Some(1420);
        f.mtu.largest = Some(1320);
        let l = first_fail(&f);
        assert!(l.explanation.contains("always wins"));
        assert!(l.fix.unwrap().contains("MTU = 1320"));
        assert_eq!(mtu_finding(&f.mtu).unwrap().suggested, None);
    }

    #[test]
    fn the_default_is_derived_from_the_route_mtu() {
        let mut f = healthy();
        let mut path = lookup("eth0");
        path.route_mtu = Some(1492);
        f.mtu.path = Some(path);
        let l = &diagnose(&f)[6];
        assert!(
            l.evidence
                .iter()
                .any(|e| e.contains("route MTU 1492 minus 80 = 1412")),
            "{:?}",
            l.evidence
        );
    }

    #[test]
    fn not_connected_fails_first_and_skips_the_rest() {
        let mut f = healthy();
        f.control.state = TunnelState::Disconnected;
        f.control.server_public_key = None;
        f.control.last_handshake_secs = None;
        f.outer.endpoint = None;
        f.tunnel = None;
        let v = verdicts(&f);
        assert_eq!(first_fail(&f).id, LayerId::ControlPlane);
        assert!(first_fail(&f).fix.unwrap().contains("underpass connect"));
        assert!(v[2..].iter().all(|(_, v)| *v == LayerVerdict::Skipped));
    }

    #[test]
    fn test_addresses_fall_inside_the_first_routed_prefix() {
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            default_test_address(&nets),
            Some("10.0.0.1".parse().unwrap())
        );
        let full: Vec<IpNet> = vec!["::/0".parse().unwrap(), "0.0.0.0/0".parse().unwrap()];
        assert_eq!(
            default_test_address(&full),
            Some("192.0.2.1".parse().unwrap())
        );
        assert_eq!(default_test_address(&[]), None);
    }
}
