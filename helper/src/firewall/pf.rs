//! The macOS kill switch as data: the rules of PF anchor `underpass`, decided here and rendered
//! in `pf.conf` syntax, so that they are unit-tested on any OS. `macos.rs` only hands the same
//! rules to the kernel through the `pfctl` crate.
//!
//! The rules mirror the Linux table (`linux.rs`) rule for rule, with three differences that PF
//! forces: every rule is `quick` (PF otherwise lets the *last* match win); the helper's own UDP
//! is matched by its owner (`user root`, the helper's uid), since macOS has no fwmark; and
//! replies pass through PF's state table (`keep state` on every pass rule) instead of a
//! conntrack rule. `block return` is the reject (TCP RST, ICMP unreachable otherwise).

use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

use ipnet::IpNet;

use super::{lan_prefixes, FirewallPolicy, HELPER_DNS_PORT};

/// The anchor Underpass owns in PF's main ruleset. Nothing else of PF is touched.
pub const ANCHOR: &str = "underpass";
const LOOPBACK: &str = "lo0";
const DNS_PORTS: [u16; 2] = [53, 853];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pass,
    /// `block drop`: silently (inbound).
    Drop,
    /// `block return`: TCP RST, ICMP unreachable for the rest, so applications fail at once.
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp6,
}

/// Neighbour discovery and router solicitation/advertisement: IPv6 does not work without them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmp6 {
    RouterSol,
    RouterAdv,
    NeighbrSol,
    NeighbrAdv,
}

const NDP: [Icmp6; 4] = [
    Icmp6::RouterSol,
    Icmp6::RouterAdv,
    Icmp6::NeighbrSol,
    Icmp6::NeighbrAdv,
];

/// One PF filter rule, as much of PF as Underpass needs. Always `quick`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    pub action: Option<Action>,
    pub direction: Option<Direction>,
    pub interface: Option<String>,
    pub proto: Option<Proto>,
    pub from: Option<IpNet>,
    pub from_port: Option<u16>,
    pub to: Option<IpNet>,
    pub to_port: Option<u16>,
    pub icmp6: Option<Icmp6>,
    /// Only packets of sockets owned by this uid.
    pub user: Option<u32>,
}

impl Rule {
    fn new(action: Action, direction: Direction) -> Rule {
        Rule {
            action: Some(action),
            direction: Some(direction),
            ..Rule::default()
        }
    }

    fn on(mut self, interface: &str) -> Rule {
        self.interface = Some(interface.to_string());
        self
    }

    fn proto(mut self, proto: Proto) -> Rule {
        self.proto = Some(proto);
        self
    }

    fn from(mut self, net: Option<IpNet>, port: Option<u16>) -> Rule {
        self.from = net;
        self.from_port = port;
        self
    }

    fn to(mut self, net: Option<IpNet>, port: Option<u16>) -> Rule {
        self.to = net;
        self.to_port = port;
        self
    }

    /// Whether PF keeps state for it: every pass rule does, so replies come back.
    pub fn keeps_state(&self) -> bool {
        self.action == Some(Action::Pass)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.action {
            Some(Action::Pass) | None => "pass",
            Some(Action::Drop) => "block drop",
            Some(Action::Reject) => "block return",
        })?;
        f.write_str(match self.direction {
            Some(Direction::In) => " in",
            Some(Direction::Out) | None => " out",
        })?;
        f.write_str(" quick")?;
        if let Some(i) = &self.interface {
            write!(f, " on {i}")?;
        }
        if self.proto == Some(Proto::Icmp6) {
            f.write_str(" inet6")?;
        }
        match self.proto {
            Some(Proto::Tcp) => f.write_str(" proto tcp")?,
            Some(Proto::Udp) => f.write_str(" proto udp")?,
            Some(Proto::Icmp6) => f.write_str(" proto icmp6")?,
            None => {}
        }
        let any = self.from.is_none()
            && self.from_port.is_none()
            && self.to.is_none()
            && self.to_port.is_none();
        if any {
            f.write_str(" all")?;
        } else {
            for (word, net, port) in [
                ("from", self.from, self.from_port),
                ("to", self.to, self.to_port),
            ] {
                match net {
                    Some(n) => write!(f, " {word} {n}")?,
                    None => write!(f, " {word} any")?,
                }
                if let Some(p) = port {
                    write!(f, " port {p}")?;
                }
            }
        }
        if let Some(t) = self.icmp6 {
            f.write_str(match t {
                Icmp6::RouterSol => " icmp6-type routersol",
                Icmp6::RouterAdv => " icmp6-type routeradv",
                Icmp6::NeighbrSol => " icmp6-type neighbrsol",
                Icmp6::NeighbrAdv => " icmp6-type neighbradv",
            })?;
        }
        if let Some(u) = self.user {
            write!(f, " user {u}")?;
        }
        if self.keeps_state() {
            f.write_str(" keep state")?;
        }
        Ok(())
    }
}

/// The whole anchor for `policy`, in evaluation order; `helper_uid` owns the encrypted UDP,
/// and may also reach `probes` (the servers of a measurement in flight).
pub fn anchor_rules(policy: &FirewallPolicy, helper_uid: u32, probes: &[SocketAddr]) -> Vec<Rule> {
    let mut rules = outbound(policy, helper_uid, probes);
    rules.extend(inbound(policy));
    rules
}

/// The anchor as `pfctl -a underpass -s rules` would list it, one rule a line.
pub fn anchor_text(policy: &FirewallPolicy, helper_uid: u32, probes: &[SocketAddr]) -> String {
    anchor_rules(policy, helper_uid, probes)
        .iter()
        .map(|r| format!("{r}\n"))
        .collect()
}

/// The holes a measurement opens while PF blocks, each until its deadline. PF rules have no
/// timeouts (nftables sets do), so the helper keeps them and reloads the anchor without a hole
/// once it is due. Time is an input.
#[derive(Debug, Default)]
pub struct ProbeHoles {
    open: Vec<(SocketAddr, Instant)>,
}

impl ProbeHoles {
    pub const fn new() -> ProbeHoles {
        ProbeHoles { open: Vec::new() }
    }

    /// Opens `targets` until `until` (a target already open keeps the later deadline).
    pub fn admit(&mut self, targets: &[SocketAddr], until: Instant) {
        for t in targets {
            match self.open.iter_mut().find(|(open, _)| open == t) {
                Some((_, deadline)) => *deadline = (*deadline).max(until),
                None => self.open.push((*t, until)),
            }
        }
    }

    /// Closes every hole due at `now`; true if one closed (the anchor must be reloaded).
    pub fn expire(&mut self, now: Instant) -> bool {
        let before = self.open.len();
        self.open.retain(|(_, deadline)| *deadline > now);
        self.open.len() != before
    }

    pub fn clear(&mut self) {
        self.open.clear();
    }

    pub fn targets(&self) -> Vec<SocketAddr> {
        self.open.iter().map(|(t, _)| *t).collect()
    }
}

/// The helper's own UDP (its uid) to `to`, and nowhere else.
fn helper_udp(helper_uid: u32, to: SocketAddr) -> Rule {
    Rule {
        user: Some(helper_uid),
        ..Rule::new(Action::Pass, Direction::Out)
            .proto(Proto::Udp)
            .to(Some(host(to.ip())), Some(to.port()))
    }
}

fn host(ip: std::net::IpAddr) -> IpNet {
    IpNet::from(ip)
}

/// What passes either way whatever else is blocked: the tunnel, DHCP (v4 and v6), neighbour
/// discovery, and the LAN when allowed.
fn always_allowed(policy: &FirewallPolicy, direction: Direction) -> Vec<Rule> {
    let out = direction == Direction::Out;
    let pass = || Rule::new(Action::Pass, direction);
    let mut rules = Vec::new();
    if let Some(t) = &policy.tunnel {
        rules.push(pass().on(&t.interface));
    }
    // (client port, server port) for DHCPv4 and DHCPv6.
    for (client, server) in [(68, 67), (546, 547)] {
        let (sport, dport) = if out {
            (client, server)
        } else {
            (server, client)
        };
        rules.push(
            pass()
                .proto(Proto::Udp)
                .from(None, Some(sport))
                .to(None, Some(dport)),
        );
    }
    for t in NDP {
        rules.push(Rule {
            icmp6: Some(t),
            ..pass().proto(Proto::Icmp6)
        });
    }
    if policy.allow_lan {
        for n in lan_prefixes() {
            rules.push(if out {
                pass().to(Some(n), None)
            } else {
                pass().from(Some(n), None)
            });
        }
    }
    rules
}

fn outbound(policy: &FirewallPolicy, helper_uid: u32, probes: &[SocketAddr]) -> Vec<Rule> {
    let out = Direction::Out;
    let mut rules = vec![Rule::new(Action::Pass, out).on(LOOPBACK)];
    if let Some(t) = &policy.tunnel {
        // The helper's own encrypted UDP, to the endpoints in use and nowhere else.
        rules.extend(t.endpoints.iter().map(|e| helper_udp(helper_uid, *e)));
        for dns in &t.dns {
            for proto in [Proto::Udp, Proto::Tcp] {
                for port in DNS_PORTS {
                    rules.push(
                        Rule::new(Action::Pass, out)
                            .on(&t.interface)
                            .proto(proto)
                            .to(Some(host(*dns)), Some(port)),
                    );
                }
            }
        }
    }
    // The helper's own lookups of endpoint names (its uid; PF has no marks), to the system's
    // resolvers from before the tunnel, in every state: before the refusal below.
    if let Some(h) = &policy.helper_dns {
        for r in &h.resolvers {
            for proto in [Proto::Udp, Proto::Tcp] {
                rules.push(Rule {
                    user: Some(helper_uid),
                    ..Rule::new(Action::Pass, out)
                        .proto(proto)
                        .to(Some(host(*r)), Some(HELPER_DNS_PORT))
                });
            }
        }
    }
    // DNS to anything but the tunnel's resolvers is refused, through the tunnel or not.
    for proto in [Proto::Udp, Proto::Tcp] {
        for port in DNS_PORTS {
            rules.push(
                Rule::new(Action::Reject, out)
                    .proto(proto)
                    .to(None, Some(port)),
            );
        }
    }
    // A measurement in flight: after the DNS refusal, so a probe never opens a resolver.
    rules.extend(probes.iter().map(|p| helper_udp(helper_uid, *p)));
    rules.extend(always_allowed(policy, out));
    if let Some(t) = &policy.tunnel {
        for n in &t.exclude {
            rules.push(Rule::new(Action::Pass, out).to(Some(*n), None));
        }
    }
    match &policy.tunnel {
        // Split tunnel: only what is routed into the tunnel is held to it.
        Some(t) if !t.is_full() => {
            for n in &t.include {
                rules.push(Rule::new(Action::Reject, out).to(Some(*n), None));
            }
        }
        _ => rules.push(Rule::new(Action::Reject, out)),
    }
    rules
}

fn inbound(policy: &FirewallPolicy) -> Vec<Rule> {
    let inb = Direction::In;
    let mut rules = vec![Rule::new(Action::Pass, inb).on(LOOPBACK)];
    if let Some(t) = &policy.tunnel {
        // The tunnel first, so that its addresses are unreachable from every *other* interface
        // (CVE-2019-14899); PF has no negated interface in the pfctl crate.
        rules.push(Rule::new(Action::Pass, inb).on(&t.interface));
        for a in &t.addresses {
            rules.push(Rule::new(Action::Drop, inb).to(Some(host(a.addr())), None));
        }
    }
    rules.extend(
        always_allowed(policy, inb)
            .into_iter()
            .filter(|r| r.interface.is_none()),
    );
    let split = policy.tunnel.as_ref().is_some_and(|t| !t.is_full());
    if !split {
        rules.push(Rule::new(Action::Drop, inb));
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::{desired, TunnelHole};
    use underpass_proto::KillSwitchMode;

    fn hole(include: &[&str], exclude: &[&str]) -> TunnelHole {
        let nets = |v: &[&str]| v.iter().map(|s| s.parse().unwrap()).collect();
        TunnelHole {
            interface: "utun4".into(),
            endpoints: vec!["192.0.2.10:51820".parse().unwrap()],
            fwmark: 0,
            dns: vec!["10.64.1.1".parse().unwrap()],
            addresses: vec!["10.64.1.2/32".parse().unwrap()],
            include: nets(include),
            exclude: nets(exclude),
        }
    }

    /// Compares with `golden/NAME.pf` next to this file; `UPDATE_GOLDEN=1` rewrites it.
    fn golden(name: &str, text: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/firewall/golden")
            .join(format!("{name}.pf"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
        assert_eq!(text, want, "anchor differs from {}", path.display());
    }

    fn anchor(
        mode: KillSwitchMode,
        wants: bool,
        tunnel: Option<&TunnelHole>,
        lan: bool,
    ) -> Option<String> {
        desired(mode, wants, tunnel, lan, None).map(|p| anchor_text(&p, 0, &[]))
    }

    #[test]
    fn kill_switch_off_installs_no_anchor_at_all() {
        let full = hole(&["0.0.0.0/0", "::/0"], &[]);
        for wants in [false, true] {
            assert_eq!(anchor(KillSwitchMode::Off, wants, Some(&full), true), None);
        }
        assert_eq!(anchor(KillSwitchMode::Auto, false, None, false), None);
    }

    #[test]
    fn auto_while_connecting_and_lockdown_when_disconnected_block_everything() {
        let auto = anchor(KillSwitchMode::Auto, true, None, false).unwrap();
        let lockdown = anchor(KillSwitchMode::Lockdown, false, None, false).unwrap();
        assert_eq!(auto, lockdown);
        golden("blocking", &auto);
    }

    #[test]
    fn blocking_with_lan_access_opens_the_private_ranges_both_ways() {
        golden(
            "blocking-lan",
            &anchor(KillSwitchMode::Lockdown, false, None, true).unwrap(),
        );
    }

    #[test]
    fn full_tunnel_lets_out_only_the_tunnel_and_the_helpers_udp() {
        let full = hole(&["0.0.0.0/0", "::/0"], &[]);
        golden(
            "full-tunnel",
            &anchor(KillSwitchMode::Auto, true, Some(&full), false).unwrap(),
        );
        golden(
            "full-tunnel-lan",
            &anchor(KillSwitchMode::Lockdown, true, Some(&full), true).unwrap(),
        );
    }

    #[test]
    fn split_tunnel_holds_only_its_included_prefixes() {
        let split = hole(&["198.18.1.0/24"], &["198.18.1.2/32"]);
        let text = anchor(KillSwitchMode::Auto, true, Some(&split), false).unwrap();
        golden("split-tunnel", &text);
        let lines: Vec<&str> = text.lines().collect();
        let excluded = lines.iter().position(|l| l.contains("198.18.1.2")).unwrap();
        let included = lines
            .iter()
            .position(|l| l.contains("198.18.1.0/24"))
            .unwrap();
        assert!(excluded < included, "{text}");
        assert!(!text.contains("block return out quick all"), "{text}");
        assert!(!text.contains("block drop in quick all"), "{text}");
    }

    #[test]
    fn the_encrypted_udp_is_open_only_to_the_endpoint_for_the_helpers_uid() {
        let p = desired(
            KillSwitchMode::Auto,
            true,
            Some(&hole(&["0.0.0.0/0"], &[])),
            false,
            None,
        )
        .unwrap();
        let text = anchor_text(&p, 501, &[]);
        assert!(
            text.contains("pass out quick proto udp from any to 192.0.2.10/32 port 51820 user 501"),
            "{text}"
        );
        assert_eq!(text.matches("user ").count(), 1, "{text}");
    }

    #[test]
    fn dns_is_refused_before_the_tunnel_is_accepted() {
        let full = hole(&["0.0.0.0/0"], &[]);
        let text = anchor(KillSwitchMode::Auto, true, Some(&full), false).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let refuse = lines
            .iter()
            .position(|l| l.starts_with("block return out") && l.contains("port 853"))
            .unwrap();
        let tunnel = lines
            .iter()
            .position(|l| *l == "pass out quick on utun4 all keep state")
            .unwrap();
        let tunnel_dns = lines
            .iter()
            .position(|l| l.contains("to 10.64.1.1/32 port 53"))
            .unwrap();
        assert!(tunnel_dns < refuse && refuse < tunnel, "{text}");
    }

    #[test]
    fn a_measurement_while_blocking_opens_the_helpers_udp_to_its_servers_only() {
        let p = desired(KillSwitchMode::Lockdown, false, None, false, None).unwrap();
        let probes: Vec<SocketAddr> = vec![
            "198.51.100.7:51820".parse().unwrap(),
            "[2001:db8::7]:443".parse().unwrap(),
        ];
        let text = anchor_text(&p, 0, &probes);
        golden("blocking-probes", &text);
        assert_eq!(text.matches(" user 0").count(), 2, "{text}");
        let lines: Vec<&str> = text.lines().collect();
        let probe = lines
            .iter()
            .position(|l| l.contains("198.51.100.7"))
            .unwrap();
        let dns_refused = lines.iter().rposition(|l| l.contains("port 853")).unwrap();
        let blocked = lines
            .iter()
            .position(|l| *l == "block return out quick all")
            .unwrap();
        assert!(dns_refused < probe && probe < blocked, "{text}");
        assert_eq!(
            anchor_text(&p, 0, &[]),
            anchor(KillSwitchMode::Lockdown, false, None, false).unwrap()
        );
    }

    #[test]
    fn the_helpers_own_lookups_pass_to_the_system_resolvers_by_its_uid_before_the_dns_refusal() {
        let dns = crate::firewall::HelperDns {
            mark: crate::firewall::HELPER_MARK,
            resolvers: vec!["198.51.100.53".parse().unwrap()],
        };
        let p = desired(KillSwitchMode::Lockdown, false, None, false, Some(&dns)).unwrap();
        let text = anchor_text(&p, 0, &[]);
        golden("blocking-helper-dns", &text);
        let lines: Vec<&str> = text.lines().collect();
        let udp = lines
            .iter()
            .position(|l| *l == "pass out quick proto udp from any to 198.51.100.53/32 port 53 user 0 keep state")
            .expect("the helper's UDP lookups");
        assert!(lines.contains(
            &"pass out quick proto tcp from any to 198.51.100.53/32 port 53 user 0 keep state"
        ));
        let refused = lines
            .iter()
            .position(|l| l.starts_with("block return out") && l.contains("port 53"))
            .unwrap();
        assert!(udp < refused, "{text}");
        assert_eq!(
            text.matches("198.51.100.53").count(),
            2,
            "nothing else to the resolver: {text}"
        );
    }

    #[test]
    fn probe_holes_close_by_themselves_at_their_deadline() {
        let t0 = Instant::now();
        let s = std::time::Duration::from_secs;
        let (a, b): (SocketAddr, SocketAddr) = (
            "198.51.100.7:51820".parse().unwrap(),
            "198.51.100.8:51820".parse().unwrap(),
        );
        let mut holes = ProbeHoles::new();
        holes.admit(&[a], t0 + s(3));
        holes.admit(&[a, b], t0 + s(5));
        holes.admit(&[b], t0 + s(4)); // an earlier deadline never shortens a hole
        assert_eq!(holes.targets(), vec![a, b]);
        assert!(!holes.expire(t0 + s(4)), "nothing is due before 5 s");
        assert!(holes.expire(t0 + s(5)));
        assert!(holes.targets().is_empty());
        holes.admit(&[a], t0 + s(9));
        holes.clear();
        assert!(holes.targets().is_empty());
    }

    #[test]
    fn the_uninstall_script_flushes_this_anchor() {
        let script = include_str!("../../../installers/macos/uninstall.sh");
        assert!(script.contains(&format!("anchor={ANCHOR}\n")), "{script}");
    }
}
