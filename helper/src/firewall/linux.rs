//! The Linux kill switch: one nftables table, `inet underpass`, built with the `nftables`
//! crate's typed JSON schema and handed to libnftables in-process (`libnftables`) as one
//! transaction, so every change replaces the whole table atomically and no half-built rule
//! set is ever live.
//!
//! Output: loopback; the helper's own (marked) UDP, only to the session's endpoints and to the
//! candidates of a measurement in flight (sets `probes4`/`probes6`, whose elements time out);
//! the helper's own (marked) DNS to the system's resolvers; DNS only to the tunnel's resolvers
//! through the tunnel (and, in a split tunnel, to the system's resolvers outside it); the
//! tunnel; DHCP and neighbour discovery; the LAN when allowed; everything else is *rejected* so
//! that applications fail at once.
//! Forward (containers, VMs, routed namespaces): the same rules as output for what the host
//! routes on behalf of others, minus the helper's holes: into the tunnel, replies out of it,
//! the LAN when allowed, DNS only to the tunnel's resolvers; the rest is rejected, so nothing
//! forwarded leaves on a physical link while blocked, nor in the clear while connected.
//! Input: replies, the tunnel, DHCP/NDP, the LAN when allowed; the tunnel's own address is
//! unreachable from any other interface (CVE-2019-14899); everything else is dropped.

mod libnftables;

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use ipnet::IpNet;
use nftables::batch::Batch;
use nftables::expr::Elem;
use nftables::expr::{
    Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix, RTKey, SetItem,
    TcpOption, CT, RT,
};
use nftables::schema::{
    Chain, Element, NfListObject, Rule, Set, SetFlag, SetType, SetTypeValue, Table,
};
use nftables::stmt::{Mangle, Match, Operator, Reject, RejectType, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook, RejectCode};

use libnftables::Libnftables;
use parking_lot::Mutex;

use super::{
    lan_prefixes, Firewall, FirewallPolicy, HelperDns, TunnelHole, HELPER_DNS_PORT, HELPER_MARK,
};

pub const TABLE: &str = "underpass";
const DNS_PORTS: [u32; 2] = [53, 853];
/// The measurement sets: (name, element type, the address's payload family).
const PROBE_SETS: [(&str, SetType, &str); 2] = [
    ("probes4", SetType::Ipv4Addr, "ip"),
    ("probes6", SetType::Ipv6Addr, "ip6"),
];
/// More candidates than any measurement may have in flight at once, so a flood cannot grow
/// the kernel's memory either.
const PROBE_SET_SIZE: u32 = 1024;

pub struct Nftables {
    nft: Arc<Mutex<Libnftables>>,
}

impl Nftables {
    /// Runs `batch` as one transaction, off the async threads (it is a blocking netlink call).
    async fn run(&self, batch: Batch<'_>) -> Result<()> {
        let json = serde_json::to_string(&batch.to_nftables()).context("encoding nftables JSON")?;
        let nft = self.nft.clone();
        tokio::task::spawn_blocking(move || nft.lock().run(&json))
            .await
            .context("the nftables call did not finish")?
    }
}

impl Firewall for Nftables {
    async fn open() -> Result<Self> {
        Ok(Nftables {
            nft: Arc::new(Mutex::new(Libnftables::open()?)),
        })
    }

    async fn apply(&mut self, policy: &FirewallPolicy) -> Result<()> {
        let mut batch = Batch::new();
        // Add-then-delete makes the delete safe when the table is absent; all of it is one
        // transaction, so the old table is replaced, never missing.
        batch.add(NfListObject::Table(table()));
        batch.delete(NfListObject::Table(table()));
        batch.add(NfListObject::Table(table()));
        for (name, set_type, _) in PROBE_SETS {
            batch.add(NfListObject::Set(Box::new(Set {
                family: NfFamily::INet,
                table: TABLE.into(),
                name: name.into(),
                set_type: SetTypeValue::Concatenated(Cow::Owned(vec![
                    set_type,
                    SetType::InetService,
                ])),
                flags: Some(HashSet::from([SetFlag::Timeout])),
                size: Some(PROBE_SET_SIZE),
                ..Set::default()
            })));
        }
        for (name, hook) in [
            ("output", NfHook::Output),
            ("input", NfHook::Input),
            ("forward", NfHook::Forward),
        ] {
            batch.add(NfListObject::Chain(Chain {
                family: NfFamily::INet,
                table: TABLE.into(),
                name: name.into(),
                _type: Some(NfChainType::Filter),
                hook: Some(hook),
                prio: Some(0),
                policy: Some(NfChainPolicy::Accept),
                ..Chain::default()
            }));
        }
        for stmts in output_rules(policy) {
            batch.add(rule("output", stmts));
        }
        for stmts in input_rules(policy) {
            batch.add(rule("input", stmts));
        }
        for stmts in forward_rules(policy) {
            batch.add(rule("forward", stmts));
        }
        self.run(batch)
            .await
            .context("installing the nftables table inet underpass")
    }

    async fn clamp_mss(&mut self, interface: Option<&str>) -> Result<()> {
        let batch = match interface {
            Some(i) => mss_batch(i),
            None => {
                let table = Table {
                    family: NfFamily::INet,
                    name: MSS_TABLE.into(),
                    ..Table::default()
                };
                let mut b = Batch::new();
                b.add(NfListObject::Table(table.clone()));
                b.delete(NfListObject::Table(table));
                b
            }
        };
        self.run(batch)
            .await
            .context("setting the TCP MSS clamp (nftables table inet underpass_mss)")
    }

    async fn admit_probes(&mut self, targets: &[SocketAddr], ttl: Duration) -> Result<()> {
        let timeout = ttl.as_secs().max(1) as u32;
        let mut batch = Batch::new();
        for (name, _, family) in PROBE_SETS {
            let elem: Vec<Expression<'static>> = targets
                .iter()
                .filter(|t| family_of(t.ip()) == family)
                .map(|t| {
                    Expression::Named(NamedExpression::Elem(Elem {
                        val: Box::new(Expression::Named(NamedExpression::Concat(vec![
                            text(t.ip().to_string()),
                            Expression::Number(u32::from(t.port())),
                        ]))),
                        timeout: Some(timeout),
                        ..Elem::default()
                    }))
                })
                .collect();
            if !elem.is_empty() {
                batch.add(NfListObject::Element(Element {
                    family: NfFamily::INet,
                    table: TABLE.into(),
                    name: name.into(),
                    elem: Cow::Owned(elem),
                }));
            }
        }
        self.run(batch)
            .await
            .context("admitting a measurement's servers to the kill switch (sets probes4/probes6)")
    }

    async fn remove(&mut self) -> Result<()> {
        let mut batch = Batch::new();
        batch.add(NfListObject::Table(table()));
        batch.delete(NfListObject::Table(table()));
        self.run(batch)
            .await
            .context("removing the nftables table inet underpass")
    }
}

/// The MSS clamp's own table, so it is there whether or not the kill switch is.
pub const MSS_TABLE: &str = "underpass_mss";

/// `tcp flags syn tcp option maxseg size set rt mtu`, for SYNs leaving or entering `interface`.
fn mss_batch(interface: &str) -> Batch<'static> {
    let mut batch = Batch::new();
    let table = Table {
        family: NfFamily::INet,
        name: MSS_TABLE.into(),
        ..Table::default()
    };
    batch.add(NfListObject::Table(table.clone()));
    batch.delete(NfListObject::Table(table.clone()));
    batch.add(NfListObject::Table(table));
    batch.add(NfListObject::Chain(Chain {
        family: NfFamily::INet,
        table: MSS_TABLE.into(),
        name: "forward".into(),
        _type: Some(NfChainType::Filter),
        hook: Some(NfHook::Forward),
        prio: Some(-150),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    }));
    for key in [MetaKey::Oifname, MetaKey::Iifname] {
        batch.add(NfListObject::Rule(Rule {
            family: NfFamily::INet,
            table: MSS_TABLE.into(),
            chain: "forward".into(),
            expr: Cow::Owned(vec![
                is(meta(key), text(interface)),
                Statement::Match(Match {
                    left: field("tcp", "flags"),
                    right: text("syn"),
                    op: Operator::IN,
                }),
                Statement::Mangle(Mangle {
                    key: Expression::Named(NamedExpression::TcpOption(TcpOption {
                        name: "maxseg".into(),
                        field: Some("size".into()),
                    })),
                    value: Expression::Named(NamedExpression::RT(RT {
                        key: RTKey::MTU,
                        family: None,
                    })),
                }),
            ]),
            ..Rule::default()
        }));
    }
    batch
}

fn table() -> Table<'static> {
    Table {
        family: NfFamily::INet,
        name: TABLE.into(),
        ..Table::default()
    }
}

fn rule(chain: &'static str, stmts: Vec<Statement<'static>>) -> NfListObject<'static> {
    NfListObject::Rule(Rule {
        family: NfFamily::INet,
        table: TABLE.into(),
        chain: chain.into(),
        expr: Cow::Owned(stmts),
        ..Rule::default()
    })
}

fn is(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

fn is_not(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::NEQ,
    })
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn field(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: field.into(),
        },
    )))
}

fn text(s: impl Into<String>) -> Expression<'static> {
    Expression::String(Cow::Owned(s.into()))
}

fn set(items: Vec<Expression<'static>>) -> Expression<'static> {
    Expression::Named(NamedExpression::Set(
        items.into_iter().map(SetItem::Element).collect(),
    ))
}

fn net(n: &IpNet) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(text(n.network().to_string())),
        len: n.prefix_len() as u32,
    }))
}

fn family_of(addr: IpAddr) -> &'static str {
    if addr.is_ipv4() {
        "ip"
    } else {
        "ip6"
    }
}

fn accept() -> Statement<'static> {
    Statement::Accept(None)
}

/// `udp dport {53, 853}` and the same for TCP.
fn dns_ports(l4: &'static str) -> Statement<'static> {
    is(
        field(l4, "dport"),
        set(DNS_PORTS.iter().map(|p| Expression::Number(*p)).collect()),
    )
}

/// Neighbour discovery and router solicitation/advertisement: IPv6 does not work without them.
fn ndp() -> Statement<'static> {
    is(
        field("icmpv6", "type"),
        set([
            "nd-router-solicit",
            "nd-router-advert",
            "nd-neighbor-solicit",
            "nd-neighbor-advert",
        ]
        .into_iter()
        .map(text)
        .collect()),
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Out,
    In,
}

/// What passes in either direction whatever else is blocked: the tunnel itself, DHCP (v4 and
/// v6), neighbour discovery, and the LAN when allowed. Output rules match the far end by
/// destination and the client's ports; input rules mirror them.
fn always_allowed(policy: &FirewallPolicy, direction: Direction) -> Vec<Vec<Statement<'static>>> {
    let out = direction == Direction::Out;
    let (interface, far_end) = if out {
        (MetaKey::Oifname, "daddr")
    } else {
        (MetaKey::Iifname, "saddr")
    };
    let mut rules = Vec::new();
    if let Some(t) = &policy.tunnel {
        rules.push(vec![is(meta(interface), text(&t.interface)), accept()]);
    }
    // (client port, server port) for DHCPv4 and DHCPv6.
    for (client, server) in [(68, 67), (546, 547)] {
        let (sport, dport) = if out {
            (client, server)
        } else {
            (server, client)
        };
        rules.push(vec![
            is(field("udp", "sport"), Expression::Number(sport)),
            is(field("udp", "dport"), Expression::Number(dport)),
            accept(),
        ]);
    }
    rules.push(vec![ndp(), accept()]);
    if policy.allow_lan {
        for n in lan_prefixes() {
            rules.push(vec![
                is(field(family_of(n.addr()), far_end), net(&n)),
                accept(),
            ]);
        }
    }
    rules
}

fn output_rules(policy: &FirewallPolicy) -> Vec<Vec<Statement<'static>>> {
    let mut rules = vec![vec![is(meta(MetaKey::Oifname), text("lo")), accept()]];
    if let Some(t) = &policy.tunnel {
        rules.extend(endpoint_rules(t));
    }
    rules.extend(measurement_rules(policy.tunnel.as_ref().map(|t| t.fwmark)));
    if let Some(dns) = &policy.helper_dns {
        rules.extend(helper_dns_rules(dns));
    }
    for r in policy.outside_resolvers() {
        for l4 in ["udp", "tcp"] {
            rules.push(vec![
                is(field(family_of(r), "daddr"), text(r.to_string())),
                dns_ports(l4),
                accept(),
            ]);
        }
    }
    rules.extend(dns_rules(policy));
    rules.extend(always_allowed(policy, Direction::Out));
    rules.extend(final_rules(policy));
    rules
}

/// The session's encrypted UDP: from sockets with its mark, to its endpoints and nowhere else.
/// Only a process with CAP_NET_ADMIN can set the mark, so nothing else gets through here.
fn endpoint_rules(t: &TunnelHole) -> Vec<Vec<Statement<'static>>> {
    t.endpoints
        .iter()
        .map(|ep| {
            vec![
                is(meta(MetaKey::Mark), Expression::Number(t.fwmark)),
                is(
                    field(family_of(ep.ip()), "daddr"),
                    text(ep.ip().to_string()),
                ),
                is(
                    field("udp", "dport"),
                    Expression::Number(u32::from(ep.port())),
                ),
                accept(),
            ]
        })
        .collect()
}

/// A measurement in flight: UDP with the helper's mark to the (address, port) pairs the helper
/// put in the probe sets, each for a few seconds; while a session exists, also from sockets with
/// the session's mark (the doctor's outer-path probe, which must take the physical path).
fn measurement_rules(session_mark: Option<u32>) -> Vec<Vec<Statement<'static>>> {
    let marks = std::iter::once(HELPER_MARK).chain(session_mark);
    marks
        .flat_map(|mark| {
            PROBE_SETS.iter().map(move |(name, _, family)| {
                vec![
                    is(meta(MetaKey::Mark), Expression::Number(mark)),
                    is(
                        Expression::Named(NamedExpression::Concat(vec![
                            field(family, "daddr"),
                            field("udp", "dport"),
                        ])),
                        text(format!("@{name}")),
                    ),
                    accept(),
                ]
            })
        })
        .collect()
}

/// The helper's own lookups (endpoint names, `tunnel/resolve.rs`): plain DNS (port 53 only)
/// from its marked sockets to the system's resolvers, on whatever interface routing picks.
fn helper_dns_rules(dns: &HelperDns) -> Vec<Vec<Statement<'static>>> {
    let mut rules = Vec::new();
    for r in &dns.resolvers {
        for l4 in ["udp", "tcp"] {
            rules.push(vec![
                is(meta(MetaKey::Mark), Expression::Number(dns.mark)),
                is(field(family_of(*r), "daddr"), text(r.to_string())),
                is(
                    field(l4, "dport"),
                    Expression::Number(u32::from(HELPER_DNS_PORT)),
                ),
                accept(),
            ]);
        }
    }
    rules
}

/// DNS to the tunnel's resolvers through the tunnel; DNS to anything else is refused, through
/// the tunnel or not.
fn dns_rules(policy: &FirewallPolicy) -> Vec<Vec<Statement<'static>>> {
    let mut rules = Vec::new();
    if let Some(t) = &policy.tunnel {
        for dns in &t.dns {
            for l4 in ["udp", "tcp"] {
                rules.push(vec![
                    is(meta(MetaKey::Oifname), text(&t.interface)),
                    is(field(family_of(*dns), "daddr"), text(dns.to_string())),
                    dns_ports(l4),
                    accept(),
                ]);
            }
        }
    }
    for l4 in ["udp", "tcp"] {
        rules.push(vec![dns_ports(l4), reject()]);
    }
    rules
}

/// What leaves directly (excluded prefixes, and in a split tunnel everything not included);
/// the rest is refused: TCP with a reset, anything else with "administratively prohibited".
fn final_rules(policy: &FirewallPolicy) -> Vec<Vec<Statement<'static>>> {
    let mut rules = Vec::new();
    let tcp_reset = || {
        vec![
            is(meta(MetaKey::L4proto), text("tcp")),
            Statement::Reject(Some(Reject::new(Some(RejectType::TCPReset), None))),
        ]
    };
    let to = |n: &IpNet| is(field(family_of(n.addr()), "daddr"), net(n));
    if let Some(t) = &policy.tunnel {
        for n in &t.exclude {
            rules.push(vec![to(n), accept()]);
        }
    }
    match &policy.tunnel {
        // Split tunnel: only what is routed into the tunnel is held to it.
        Some(t) if !t.is_full() => {
            for n in &t.include {
                let mut tcp = vec![to(n)];
                tcp.extend(tcp_reset());
                rules.push(tcp);
                rules.push(vec![to(n), reject()]);
            }
        }
        _ => {
            rules.push(tcp_reset());
            rules.push(vec![reject()]);
        }
    }
    rules
}

/// What the host routes for others (containers, VMs, namespaces), held to the host's rules:
/// into the tunnel, replies out of it, the LAN when allowed, and what a split tunnel leaves
/// out; DNS only to the tunnel's resolvers. Nothing here is the helper's, so none of its holes
/// (marked UDP, its own DNS) apply.
fn forward_rules(policy: &FirewallPolicy) -> Vec<Vec<Statement<'static>>> {
    let mut rules = dns_rules(policy);
    if let Some(t) = &policy.tunnel {
        rules.push(vec![
            is(meta(MetaKey::Oifname), text(&t.interface)),
            accept(),
        ]);
        rules.push(vec![
            is(meta(MetaKey::Iifname), text(&t.interface)),
            established(),
            accept(),
        ]);
    }
    if policy.allow_lan {
        for n in lan_prefixes() {
            rules.push(vec![
                is(field(family_of(n.addr()), "daddr"), net(&n)),
                accept(),
            ]);
        }
    }
    rules.extend(final_rules(policy));
    rules
}

fn established() -> Statement<'static> {
    Statement::Match(Match {
        left: Expression::Named(NamedExpression::CT(CT {
            key: "state".into(),
            family: None,
            dir: None,
        })),
        right: Expression::List(vec![text("established"), text("related")]),
        op: Operator::IN,
    })
}

fn reject() -> Statement<'static> {
    Statement::Reject(Some(Reject::new(
        Some(RejectType::ICMPX),
        Some(RejectCode::AdminProhibited),
    )))
}

fn input_rules(policy: &FirewallPolicy) -> Vec<Vec<Statement<'static>>> {
    let mut rules = vec![vec![is(meta(MetaKey::Iifname), text("lo")), accept()]];
    if let Some(t) = &policy.tunnel {
        for a in &t.addresses {
            rules.push(vec![
                is_not(meta(MetaKey::Iifname), text(&t.interface)),
                is(
                    field(family_of(a.addr()), "daddr"),
                    text(a.addr().to_string()),
                ),
                Statement::Drop(None),
            ]);
        }
    }
    rules.push(vec![established(), accept()]);
    rules.extend(always_allowed(policy, Direction::In));
    let split = policy.tunnel.as_ref().is_some_and(|t| !t.is_full());
    if !split {
        rules.push(vec![Statement::Drop(None)]);
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::TunnelHole;

    fn policy(tunnel: bool, allow_lan: bool) -> FirewallPolicy {
        FirewallPolicy {
            tunnel: tunnel.then(|| TunnelHole {
                interface: "underpass0".into(),
                endpoints: vec!["192.0.2.10:51820".parse().unwrap()],
                fwmark: 0x7570,
                dns: vec!["10.64.1.1".parse().unwrap()],
                addresses: vec!["10.64.1.2/32".parse().unwrap()],
                include: vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()],
                exclude: vec![],
            }),
            allow_lan,
            helper_dns: None,
        }
    }

    #[test]
    fn mss_is_clamped_to_the_route_mtu_both_ways_through_the_tunnel() {
        let json = serde_json::to_string(&mss_batch("underpass0").to_nftables()).unwrap();
        assert!(
            json.contains(r#""tcp option":{"name":"maxseg","field":"size"}"#),
            "{json}"
        );
        assert!(json.contains(r#""rt":{"key":"mtu"}"#), "{json}");
        assert!(json.contains("oifname") && json.contains("iifname"));
    }

    #[test]
    fn a_split_tunnel_holds_only_its_included_prefixes() {
        let mut p = policy(true, false);
        let t = p.tunnel.as_mut().unwrap();
        t.include = vec!["198.18.1.0/24".parse().unwrap()];
        t.exclude = vec!["198.18.1.2/32".parse().unwrap()];
        let rules = output_rules(&p);
        let last = json(vec![rules.last().unwrap().clone()]);
        assert!(
            last.contains("198.18.1.0") && last.contains("reject"),
            "{last}"
        );
        let all = json(rules);
        let accept_excluded = all.find("198.18.1.2").unwrap();
        let reject_included = all.find("198.18.1.0").unwrap();
        assert!(accept_excluded < reject_included);
        assert!(!json(input_rules(&p)).ends_with(r#"[{"drop":null}]]"#));
    }

    fn json(rules: Vec<Vec<Statement<'static>>>) -> String {
        serde_json::to_string(&rules).unwrap()
    }

    #[test]
    fn blocking_policy_lets_nothing_but_loopback_dhcp_and_ndp_out() {
        let out = json(output_rules(&policy(false, false)));
        assert!(!out.contains("underpass0") && !out.contains("192.0.2.10"));
        assert!(out.contains("\"lo\"") && out.contains("nd-neighbor-solicit"));
        assert!(
            out.ends_with(r#"{"reject":{"type":"icmpx","expr":"admin-prohibited"}}]]"#),
            "{out}"
        );
    }

    #[test]
    fn marked_udp_reaches_only_the_sessions_endpoints_and_measurements_in_flight() {
        let rules = output_rules(&policy(true, false));
        let marked: Vec<String> = rules
            .iter()
            .map(|r| json(vec![r.clone()]))
            .filter(|r| r.contains(r#""meta":{"key":"mark"}"#))
            .collect();
        assert_eq!(marked.len(), 5, "{marked:#?}");
        assert!(
            marked[0].contains("30064")
                && marked[0].contains("192.0.2.10")
                && marked[0].contains("51820"),
            "{}",
            marked[0]
        );
        // The helper's mark, then the session's (the doctor's outer-path probe), to the sets.
        let sets = ["@probes4", "@probes6", "@probes4", "@probes6"];
        let marks = [HELPER_MARK, HELPER_MARK, 30064, 30064];
        for ((m, set), mark) in marked[1..].iter().zip(sets).zip(marks) {
            assert!(
                m.contains(&mark.to_string()) && m.contains(set) && m.contains("concat"),
                "{m}"
            );
        }
        let blocked = json(output_rules(&policy(false, false)));
        assert!(!blocked.contains("30064") && blocked.contains("@probes4"));
    }

    #[test]
    fn the_probe_sets_time_out_and_are_bounded() {
        let set = |name: &str, set_type: SetType| Set {
            family: NfFamily::INet,
            table: TABLE.into(),
            name: name.to_string().into(),
            set_type: SetTypeValue::Concatenated(Cow::Owned(vec![set_type, SetType::InetService])),
            flags: Some(HashSet::from([SetFlag::Timeout])),
            size: Some(PROBE_SET_SIZE),
            ..Set::default()
        };
        let json = serde_json::to_string(&set("probes4", SetType::Ipv4Addr)).unwrap();
        assert!(
            json.contains(r#""type":["ipv4_addr","inet_service"]"#) && json.contains("timeout"),
            "{json}"
        );
    }

    #[test]
    fn forwarded_traffic_is_held_to_the_tunnel_and_gets_none_of_the_helpers_holes() {
        let blocked = json(forward_rules(&policy(false, false)));
        assert!(
            !blocked.contains("accept"),
            "blocked forwards nothing: {blocked}"
        );
        assert!(
            blocked.ends_with(r#"{"reject":{"type":"icmpx","expr":"admin-prohibited"}}]]"#),
            "{blocked}"
        );
        let connected = forward_rules(&policy(true, false));
        let all = json(connected.clone());
        assert!(!all.contains(r#""meta":{"key":"mark"}"#), "{all}");
        let into_tunnel = all
            .find(r#"[{"match":{"left":{"meta":{"key":"oifname"}},"right":"underpass0","op":"=="}},{"accept":null}]"#)
            .expect("into the tunnel");
        let dns_reject = all.find("853").unwrap();
        assert!(
            dns_reject < into_tunnel,
            "DNS is held to the tunnel's resolvers first"
        );
        assert!(json(vec![connected.last().unwrap().clone()]).contains("reject"));
        assert!(json(forward_rules(&policy(true, true))).contains("192.168.0.0"));
    }

    #[test]
    fn the_helpers_dns_is_marked_and_a_split_tunnel_reaches_outside_resolvers() {
        let dns = HelperDns {
            mark: HELPER_MARK,
            resolvers: vec!["198.51.100.1".parse().unwrap()],
        };
        let blocked = FirewallPolicy {
            helper_dns: Some(dns.clone()),
            ..policy(false, false)
        };
        let rules = output_rules(&blocked);
        let text = |r: &Vec<Statement<'static>>| json(vec![r.clone()]);
        let to_resolver: Vec<String> = rules
            .iter()
            .map(text)
            .filter(|r| r.contains("198.51.100.1"))
            .collect();
        assert_eq!(to_resolver.len(), 2, "udp and tcp: {to_resolver:#?}");
        assert!(to_resolver
            .iter()
            .all(|r| r.contains(&HELPER_MARK.to_string())));
        assert!(
            to_resolver
                .iter()
                .all(|r| r.contains(r#""right":53"#) && !r.contains("853")),
            "port 53 only: {to_resolver:#?}"
        );
        let mut split = policy(true, false);
        split.tunnel.as_mut().unwrap().include = vec!["198.18.1.0/24".parse().unwrap()];
        split.helper_dns = Some(dns);
        let open: Vec<String> = output_rules(&split)
            .iter()
            .map(text)
            .filter(|r| r.contains("198.51.100.1") && !r.contains(r#""key":"mark""#))
            .collect();
        assert_eq!(
            open.len(),
            2,
            "anyone's DNS to it in a split tunnel: {open:#?}"
        );
        let all = json(output_rules(&split));
        assert!(all.find("198.51.100.1").unwrap() < all.find("853").unwrap());
        assert!(!json(forward_rules(&split)).contains("198.51.100.1"));
    }

    #[test]
    fn dns_is_refused_before_the_tunnel_is_accepted() {
        let rules = output_rules(&policy(true, false));
        let text = |i: usize| json(vec![rules[i].clone()]);
        let dns_reject = (0..rules.len())
            .find(|i| text(*i).contains("853") && text(*i).contains("reject"))
            .unwrap();
        let tunnel_accept = (0..rules.len())
            .find(|i| {
                let t = text(*i);
                t.contains("underpass0") && !t.contains("853") && t.contains("accept")
            })
            .unwrap();
        assert!(dns_reject < tunnel_accept);
    }

    #[test]
    fn lan_rules_appear_only_when_allowed() {
        assert!(!json(output_rules(&policy(true, false))).contains("192.168.0.0"));
        assert!(json(output_rules(&policy(true, true))).contains("192.168.0.0"));
        assert!(json(input_rules(&policy(true, true))).contains("fe80::"));
    }

    #[test]
    fn the_tunnel_address_is_unreachable_from_other_interfaces() {
        let input = json(input_rules(&policy(true, false)));
        assert!(
            input.contains(r#"{"left":{"meta":{"key":"iifname"}},"right":"underpass0","op":"!="}"#),
            "{input}"
        );
    }
}
