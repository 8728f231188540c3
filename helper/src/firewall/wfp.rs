//! The Windows kill switch as data: which WFP filters a [`FirewallPolicy`] becomes.
//!
//! Portable and free of system calls, so the whole rule set is unit-tested on Linux with golden
//! tests; `windows.rs` only carries a plan out. All filters live in Underpass's own provider and
//! sublayer, where the highest-weight matching filter decides:
//!
//! | weight | filter                                                    | set       |
//! |--------|-----------------------------------------------------------|-----------|
//! | 15     | permit loopback                                           | base      |
//! | 14     | permit the helper's own UDP to each endpoint (by app id)  | session   |
//! | 14     | permit the helper's own lookups to the system's resolvers | session   |
//! | 13     | permit DHCP, DHCPv6 and NDP                               | base      |
//! | 12     | permit DNS to the tunnel's resolvers, on the tunnel       | session   |
//! | 11     | block DNS (53, 853) everywhere else                       | base      |
//! | 10     | permit the LAN (when allowed)                             | base      |
//! | 9      | permit the tunnel interface (by LUID)                     | session   |
//! | 8      | block the tunnel's own addresses from other interfaces    | session   |
//! | 7      | permit the helper's own UDP to a measurement's servers    | probes    |
//! | 6      | permit the excluded prefixes                              | session   |
//! | 5      | block the included prefixes (split tunnel)                | session   |
//! | 1      | permit the rest (split tunnel)                            | session   |
//! | 0      | block everything                                          | base      |
//!
//! The *base* set does not depend on the tunnel. It is installed persistent and boot-time,
//! so a helper that dies or stops while blocking leaves Windows blocked, even across a reboot
//! until the helper reconciles (as the nftables table outlives the helper on Linux). The
//! *session* set (what the tunnel opens) lives in a dynamic WFP session and vanishes with the
//! helper's engine handle, leaving the base set. The *probes* set opens the servers of a
//! measurement in flight while blocking ([`WfpPlan::probes`]), in a dynamic session of its own
//! that the helper closes once the measurement is due; it ranks below the DNS block, so a probe
//! never opens a resolver.
//!
//! Windows resolves names from several interfaces in parallel (smart multi-homed resolution),
//! so per-interface DNS settings alone leak; the DNS filters close that.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use super::{lan_prefixes, FirewallPolicy, HELPER_DNS_PORT};

/// Where a filter sits: outbound connections or inbound accepts, per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layer {
    ConnectV4,
    ConnectV6,
    AcceptV4,
    AcceptV6,
}

impl Layer {
    pub const ALL: [Layer; 4] = [
        Layer::ConnectV4,
        Layer::ConnectV6,
        Layer::AcceptV4,
        Layer::AcceptV6,
    ];

    pub fn is_v4(self) -> bool {
        matches!(self, Layer::ConnectV4 | Layer::AcceptV4)
    }

    fn name(self) -> &'static str {
        match self {
            Layer::ConnectV4 => "connect-v4",
            Layer::ConnectV6 => "connect-v6",
            Layer::AcceptV4 => "accept-v4",
            Layer::AcceptV6 => "accept-v6",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Permit,
    Block,
}

/// How long a filter lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// In the helper's dynamic session: gone when the helper's engine handle closes.
    Session,
    /// Stored by the Base Filtering Engine: survives the helper and reboots.
    Persistent,
    /// Enforced by the TCP/IP stack at boot, until the Base Filtering Engine starts.
    BootTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    IcmpV6,
}

impl Protocol {
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::IcmpV6 => 58,
        }
    }
}

/// One match condition. Conditions on the same field are alternatives (WFP ORs them); on
/// different fields they must all hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Loopback traffic (`FWP_CONDITION_FLAG_IS_LOOPBACK`).
    Loopback,
    /// Sent by the helper's own executable (its app id).
    HelperApp,
    /// Through the tunnel adapter (its LUID, known once the adapter exists).
    TunnelInterface,
    /// Through any other interface.
    NotTunnelInterface,
    RemoteAddr(IpNet),
    LocalAddr(IpNet),
    RemotePort(u16),
    LocalPort(u16),
    Protocol(Protocol),
    /// ICMP type (WFP keeps it in the local-port field).
    IcmpType(u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub name: &'static str,
    pub lifetime: Lifetime,
    pub layer: Layer,
    pub action: Action,
    pub weight: u8,
    pub conditions: Vec<Condition>,
}

/// Everything to install for one policy. Applying a plan replaces the previous one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WfpPlan {
    pub filters: Vec<Filter>,
}

const DNS_PORTS: [u16; 2] = [53, 853];
/// Router solicitation/advertisement, neighbour solicitation/advertisement, redirect.
const NDP_TYPES: [u8; 5] = [133, 134, 135, 136, 137];

impl WfpPlan {
    /// The filters for `policy`. `None` (kill switch off) installs nothing.
    pub fn new(policy: Option<&FirewallPolicy>) -> WfpPlan {
        let mut plan = WfpPlan::default();
        let Some(policy) = policy else {
            return plan;
        };
        for lifetime in [Lifetime::Persistent, Lifetime::BootTime] {
            plan.base(lifetime, policy.allow_lan);
        }
        // The helper's own lookups of endpoint names, in every state (above the DNS block).
        if let Some(h) = &policy.helper_dns {
            for r in &h.resolvers {
                for proto in [Protocol::Udp, Protocol::Tcp] {
                    plan.helper_to(
                        "permit the helper's lookups",
                        14,
                        proto,
                        SocketAddr::new(*r, HELPER_DNS_PORT),
                    );
                }
            }
        }
        if let Some(hole) = &policy.tunnel {
            for ep in &hole.endpoints {
                plan.helper_to("permit helper to endpoint", 14, Protocol::Udp, *ep);
            }
            let dns: Vec<IpNet> = hole.dns.iter().map(|a| host(*a)).collect();
            for proto in [Protocol::Udp, Protocol::Tcp] {
                let c = vec![
                    Condition::TunnelInterface,
                    Condition::Protocol(proto),
                    Condition::RemotePort(53),
                ];
                plan.per_family(
                    "permit DNS to the tunnel's resolvers",
                    Lifetime::Session,
                    &[Layer::ConnectV4, Layer::ConnectV6],
                    Action::Permit,
                    12,
                    c,
                    &dns,
                    Condition::RemoteAddr,
                );
            }
            plan.push(
                "permit the tunnel",
                Lifetime::Session,
                &Layer::ALL,
                Action::Permit,
                9,
                vec![Condition::TunnelInterface],
            );
            plan.per_family(
                "block the tunnel's addresses from other interfaces",
                Lifetime::Session,
                &[Layer::AcceptV4, Layer::AcceptV6],
                Action::Block,
                8,
                vec![Condition::NotTunnelInterface],
                &hole.addresses.iter().map(IpNet::trunc).collect::<Vec<_>>(),
                Condition::LocalAddr,
            );
            plan.per_family(
                "permit the excluded prefixes",
                Lifetime::Session,
                &Layer::ALL,
                Action::Permit,
                6,
                vec![],
                &hole.exclude,
                Condition::RemoteAddr,
            );
            if !hole.is_full() {
                plan.per_family(
                    "block the included prefixes outside the tunnel",
                    Lifetime::Session,
                    &Layer::ALL,
                    Action::Block,
                    5,
                    vec![],
                    &hole.include,
                    Condition::RemoteAddr,
                );
                plan.push(
                    "permit the rest (split tunnel)",
                    Lifetime::Session,
                    &Layer::ALL,
                    Action::Permit,
                    1,
                    vec![],
                );
            }
        }
        plan
    }

    /// The holes of a measurement while blocking: the helper's own UDP to each of `targets`.
    pub fn probes(targets: &[SocketAddr]) -> WfpPlan {
        let mut plan = WfpPlan::default();
        for t in targets {
            plan.helper_to("permit helper to a measured server", 7, Protocol::Udp, *t);
        }
        plan
    }

    /// The helper's own packets (its app id) of `proto` to `to`, in the session.
    fn helper_to(&mut self, name: &'static str, weight: u8, proto: Protocol, to: SocketAddr) {
        let layer = if to.is_ipv4() {
            Layer::ConnectV4
        } else {
            Layer::ConnectV6
        };
        self.push(
            name,
            Lifetime::Session,
            &[layer],
            Action::Permit,
            weight,
            vec![
                Condition::HelperApp,
                Condition::Protocol(proto),
                Condition::RemoteAddr(host(to.ip())),
                Condition::RemotePort(to.port()),
            ],
        );
    }

    /// What holds without a tunnel: loopback, DHCP, NDP, the LAN if allowed, no DNS, no rest.
    fn base(&mut self, lifetime: Lifetime, allow_lan: bool) {
        self.push(
            "permit loopback",
            lifetime,
            &Layer::ALL,
            Action::Permit,
            15,
            vec![Condition::Loopback],
        );
        let dhcp = [
            (Layer::ConnectV4, 68, 67),
            (Layer::AcceptV4, 68, 67),
            (Layer::ConnectV6, 546, 547),
            (Layer::AcceptV6, 546, 547),
        ];
        for (layer, local, remote) in dhcp {
            self.push(
                "permit DHCP",
                lifetime,
                &[layer],
                Action::Permit,
                13,
                vec![
                    Condition::Protocol(Protocol::Udp),
                    Condition::LocalPort(local),
                    Condition::RemotePort(remote),
                ],
            );
        }
        let mut ndp = vec![Condition::Protocol(Protocol::IcmpV6)];
        ndp.extend(NDP_TYPES.iter().map(|t| Condition::IcmpType(*t)));
        self.push(
            "permit NDP",
            lifetime,
            &[Layer::ConnectV6, Layer::AcceptV6],
            Action::Permit,
            13,
            ndp,
        );
        let dns: Vec<Condition> = DNS_PORTS
            .iter()
            .map(|p| Condition::RemotePort(*p))
            .collect();
        self.push(
            "block DNS outside the tunnel",
            lifetime,
            &[Layer::ConnectV4, Layer::ConnectV6],
            Action::Block,
            11,
            dns,
        );
        if allow_lan {
            self.per_family(
                "permit the LAN",
                lifetime,
                &Layer::ALL,
                Action::Permit,
                10,
                vec![],
                &lan_prefixes(),
                Condition::RemoteAddr,
            );
        }
        self.push(
            "block everything else",
            lifetime,
            &Layer::ALL,
            Action::Block,
            0,
            vec![],
        );
    }

    fn push(
        &mut self,
        name: &'static str,
        lifetime: Lifetime,
        layers: &[Layer],
        action: Action,
        weight: u8,
        conditions: Vec<Condition>,
    ) {
        for layer in layers {
            self.filters.push(Filter {
                name,
                lifetime,
                layer: *layer,
                action,
                weight,
                conditions: conditions.clone(),
            });
        }
    }

    /// One filter per layer whose family has any of `nets`, matching any of them; none when
    /// `nets` has no address of that family.
    #[allow(clippy::too_many_arguments)]
    fn per_family(
        &mut self,
        name: &'static str,
        lifetime: Lifetime,
        layers: &[Layer],
        action: Action,
        weight: u8,
        conditions: Vec<Condition>,
        nets: &[IpNet],
        field: fn(IpNet) -> Condition,
    ) {
        for layer in layers {
            let matching: Vec<Condition> = nets
                .iter()
                .filter(|n| matches!(n, IpNet::V4(_)) == layer.is_v4())
                .map(|n| field(*n))
                .collect();
            if matching.is_empty() {
                continue;
            }
            let mut c = conditions.clone();
            c.extend(matching);
            self.push(name, lifetime, &[*layer], action, weight, c);
        }
    }

    /// The filters of one lifetime.
    pub fn with_lifetime(&self, lifetime: Lifetime) -> impl Iterator<Item = &Filter> {
        self.filters.iter().filter(move |f| f.lifetime == lifetime)
    }

    /// One line per filter, sorted by lifetime, weight (highest first) and layer: what the golden
    /// tests compare and what the helper logs.
    pub fn render(&self) -> String {
        let mut filters: Vec<&Filter> = self.filters.iter().collect();
        filters.sort_by_key(|f| {
            (
                f.lifetime as u8,
                std::cmp::Reverse(f.weight),
                f.layer,
                f.name,
            )
        });
        let mut out = String::new();
        for f in filters {
            let conditions: Vec<String> = f.conditions.iter().map(render_condition).collect();
            out.push_str(&format!(
                "{:?} w{} {} {} [{}] {}\n",
                f.lifetime,
                f.weight,
                f.layer.name(),
                match f.action {
                    Action::Permit => "permit",
                    Action::Block => "block",
                },
                f.name,
                conditions.join(" ")
            ));
        }
        out
    }
}

fn host(addr: IpAddr) -> IpNet {
    IpNet::from(addr)
}

fn render_condition(c: &Condition) -> String {
    match c {
        Condition::Loopback => "loopback".into(),
        Condition::HelperApp => "app=helper".into(),
        Condition::TunnelInterface => "if=tunnel".into(),
        Condition::NotTunnelInterface => "if!=tunnel".into(),
        Condition::RemoteAddr(n) => format!("raddr={n}"),
        Condition::LocalAddr(n) => format!("laddr={n}"),
        Condition::RemotePort(p) => format!("rport={p}"),
        Condition::LocalPort(p) => format!("lport={p}"),
        Condition::Protocol(p) => format!("proto={}", p.number()),
        Condition::IcmpType(t) => format!("icmp={t}"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::TunnelHole;
    use super::*;

    fn hole(include: &[&str], exclude: &[&str]) -> TunnelHole {
        let nets = |v: &[&str]| v.iter().map(|s| s.parse().unwrap()).collect::<Vec<IpNet>>();
        TunnelHole {
            interface: "underpass0".into(),
            endpoints: vec![
                "192.0.2.10:51820".parse().unwrap(),
                "[2001:db8::10]:51821".parse().unwrap(),
            ],
            fwmark: 0,
            dns: vec!["10.64.1.1".parse().unwrap()],
            addresses: vec!["10.64.1.2/32".parse().unwrap()],
            include: nets(include),
            exclude: nets(exclude),
        }
    }

    fn policy(tunnel: Option<TunnelHole>, allow_lan: bool) -> FirewallPolicy {
        FirewallPolicy {
            tunnel,
            allow_lan,
            helper_dns: None,
        }
    }

    /// The base set, as rendered for one lifetime, without the LAN.
    fn base(lifetime: &str) -> String {
        format!(
            "{lifetime} w15 connect-v4 permit [permit loopback] loopback
{lifetime} w15 connect-v6 permit [permit loopback] loopback
{lifetime} w15 accept-v4 permit [permit loopback] loopback
{lifetime} w15 accept-v6 permit [permit loopback] loopback
{lifetime} w13 connect-v4 permit [permit DHCP] proto=17 lport=68 rport=67
{lifetime} w13 connect-v6 permit [permit DHCP] proto=17 lport=546 rport=547
{lifetime} w13 connect-v6 permit [permit NDP] proto=58 icmp=133 icmp=134 icmp=135 icmp=136 icmp=137
{lifetime} w13 accept-v4 permit [permit DHCP] proto=17 lport=68 rport=67
{lifetime} w13 accept-v6 permit [permit DHCP] proto=17 lport=546 rport=547
{lifetime} w13 accept-v6 permit [permit NDP] proto=58 icmp=133 icmp=134 icmp=135 icmp=136 icmp=137
{lifetime} w11 connect-v4 block [block DNS outside the tunnel] rport=53 rport=853
{lifetime} w11 connect-v6 block [block DNS outside the tunnel] rport=53 rport=853
{lifetime} w0 connect-v4 block [block everything else] 
{lifetime} w0 connect-v6 block [block everything else] 
{lifetime} w0 accept-v4 block [block everything else] 
{lifetime} w0 accept-v6 block [block everything else] 
"
        )
    }

    const FULL_TUNNEL_SESSION: &str = "Session w14 connect-v4 permit [permit helper to endpoint] app=helper proto=17 raddr=192.0.2.10/32 rport=51820
Session w14 connect-v6 permit [permit helper to endpoint] app=helper proto=17 raddr=2001:db8::10/128 rport=51821
Session w12 connect-v4 permit [permit DNS to the tunnel's resolvers] if=tunnel proto=17 rport=53 raddr=10.64.1.1/32
Session w12 connect-v4 permit [permit DNS to the tunnel's resolvers] if=tunnel proto=6 rport=53 raddr=10.64.1.1/32
Session w9 connect-v4 permit [permit the tunnel] if=tunnel
Session w9 connect-v6 permit [permit the tunnel] if=tunnel
Session w9 accept-v4 permit [permit the tunnel] if=tunnel
Session w9 accept-v6 permit [permit the tunnel] if=tunnel
Session w8 accept-v4 block [block the tunnel's addresses from other interfaces] if!=tunnel laddr=10.64.1.2/32
";

    #[test]
    fn a_measurement_opens_only_the_helpers_udp_to_its_servers_below_the_dns_block() {
        let plan = WfpPlan::probes(&[
            "198.51.100.7:51820".parse().unwrap(),
            "[2001:db8::7]:443".parse().unwrap(),
        ]);
        assert_eq!(
            plan.render(),
            "Session w7 connect-v4 permit [permit helper to a measured server] app=helper proto=17 raddr=198.51.100.7/32 rport=51820\n\
             Session w7 connect-v6 permit [permit helper to a measured server] app=helper proto=17 raddr=2001:db8::7/128 rport=443\n"
        );
        let dns_block = WfpPlan::new(Some(&policy(None, false)))
            .filters
            .into_iter()
            .find(|f| f.name.contains("DNS") && f.action == Action::Block)
            .expect("the DNS block");
        assert!(plan.filters.iter().all(|f| f.weight < dns_block.weight));
    }

    #[test]
    fn the_helpers_own_lookups_are_permitted_by_app_id_above_the_dns_block_in_every_state() {
        let mut blocking = policy(None, false);
        blocking.helper_dns = Some(crate::firewall::HelperDns {
            mark: crate::firewall::HELPER_MARK,
            resolvers: vec!["198.51.100.53".parse().unwrap()],
        });
        let plan = WfpPlan::new(Some(&blocking));
        let lookups: Vec<String> = plan
            .render()
            .lines()
            .filter(|l| l.contains("lookups"))
            .map(str::to_string)
            .collect();
        assert_eq!(
            lookups,
            vec![
                "Session w14 connect-v4 permit [permit the helper's lookups] app=helper proto=17 raddr=198.51.100.53/32 rport=53",
                "Session w14 connect-v4 permit [permit the helper's lookups] app=helper proto=6 raddr=198.51.100.53/32 rport=53",
            ]
        );
    }

    #[test]
    fn kill_switch_off_installs_no_filter() {
        assert_eq!(WfpPlan::new(None), WfpPlan::default());
    }

    #[test]
    fn blocking_without_a_tunnel_is_the_base_set_persistent_and_at_boot() {
        let plan = WfpPlan::new(Some(&policy(None, false)));
        assert_eq!(
            plan.render(),
            format!("{}{}", base("Persistent"), base("BootTime"))
        );
        assert_eq!(plan.with_lifetime(Lifetime::Session).count(), 0);
    }

    #[test]
    fn full_tunnel_opens_the_helper_the_tunnel_and_its_dns_in_the_session() {
        let plan = WfpPlan::new(Some(&policy(Some(hole(&["0.0.0.0/0"], &[])), false)));
        assert_eq!(
            plan.render(),
            format!(
                "{FULL_TUNNEL_SESSION}{}{}",
                base("Persistent"),
                base("BootTime")
            )
        );
    }

    #[test]
    fn allowing_the_lan_adds_its_prefixes_to_the_base_set_in_both_families() {
        let plan = WfpPlan::new(Some(&policy(None, true)));
        let lan: Vec<String> = plan
            .render()
            .lines()
            .filter(|l| l.starts_with("Persistent") && l.contains("[permit the LAN]"))
            .map(String::from)
            .collect();
        assert_eq!(
            lan,
            [
                "Persistent w10 connect-v4 permit [permit the LAN] raddr=10.0.0.0/8 raddr=172.16.0.0/12 raddr=192.168.0.0/16 raddr=169.254.0.0/16 raddr=224.0.0.0/4 raddr=255.255.255.255/32",
                "Persistent w10 connect-v6 permit [permit the LAN] raddr=fe80::/10 raddr=fc00::/7 raddr=ff00::/8",
                "Persistent w10 accept-v4 permit [permit the LAN] raddr=10.0.0.0/8 raddr=172.16.0.0/12 raddr=192.168.0.0/16 raddr=169.254.0.0/16 raddr=224.0.0.0/4 raddr=255.255.255.255/32",
                "Persistent w10 accept-v6 permit [permit the LAN] raddr=fe80::/10 raddr=fc00::/7 raddr=ff00::/8",
            ]
        );
        // Everything else is the plain base set.
        let without: String = plan
            .render()
            .lines()
            .filter(|l| !l.contains("[permit the LAN]"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            without,
            format!("{}{}", base("Persistent"), base("BootTime"))
        );
    }

    #[test]
    fn the_lan_never_outranks_the_dns_block() {
        let plan = WfpPlan::new(Some(&policy(None, true)));
        let weight = |name: &str| plan.filters.iter().find(|f| f.name == name).unwrap().weight;
        assert!(weight("block DNS outside the tunnel") > weight("permit the LAN"));
        assert!(weight("permit loopback") > weight("block DNS outside the tunnel"));
    }

    #[test]
    fn split_tunnel_blocks_only_its_prefixes_outside_the_tunnel_and_permits_the_rest() {
        let plan = WfpPlan::new(Some(&policy(
            Some(hole(&["198.18.0.0/15"], &["198.18.1.0/24"])),
            false,
        )));
        let session: Vec<String> = plan
            .render()
            .lines()
            .filter(|l| {
                l.starts_with("Session w6")
                    || l.starts_with("Session w5")
                    || l.starts_with("Session w1 ")
            })
            .map(String::from)
            .collect();
        assert_eq!(
            session,
            [
                "Session w6 connect-v4 permit [permit the excluded prefixes] raddr=198.18.1.0/24",
                "Session w6 accept-v4 permit [permit the excluded prefixes] raddr=198.18.1.0/24",
                "Session w5 connect-v4 block [block the included prefixes outside the tunnel] raddr=198.18.0.0/15",
                "Session w5 accept-v4 block [block the included prefixes outside the tunnel] raddr=198.18.0.0/15",
                "Session w1 connect-v4 permit [permit the rest (split tunnel)] ",
                "Session w1 connect-v6 permit [permit the rest (split tunnel)] ",
                "Session w1 accept-v4 permit [permit the rest (split tunnel)] ",
                "Session w1 accept-v6 permit [permit the rest (split tunnel)] ",
            ]
        );
    }

    #[test]
    fn a_full_tunnel_has_no_catch_all_permit() {
        let plan = WfpPlan::new(Some(&policy(Some(hole(&["0.0.0.0/0", "::/0"], &[])), true)));
        assert!(plan
            .filters
            .iter()
            .filter(|f| f.action == Action::Permit)
            .all(|f| !f.conditions.is_empty()));
    }
}
