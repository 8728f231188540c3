//! The Linux kill switch: one nftables table, `inet underpass`, built with the `nftables`
//! crate's typed JSON schema and handed to libnftables in-process (`libnftables`) as one
//! transaction, so every change replaces the whole table atomically and no half-built rule
//! set is ever live.
//!
//! Output: loopback; the helper's own (marked) UDP; DNS only to the tunnel's
//! resolvers through the tunnel; the tunnel; DHCP and neighbour discovery; the LAN when
//! allowed; everything else is *rejected* so that applications fail at once.
//! Input: replies, the tunnel, DHCP/NDP, the LAN when allowed; the tunnel's own address is
//! unreachable from any other interface (CVE-2019-14899); everything else is dropped.

mod libnftables;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use ipnet::IpNet;
use nftables::batch::Batch;
use nftables::expr::{
    Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix, RTKey, SetItem,
    TcpOption, CT, RT,
};
use nftables::schema::{Chain, NfListObject, Rule, Table};
use nftables::stmt::{Mangle, Match, Operator, Reject, RejectType, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook, RejectCode};

use libnftables::Libnftables;
use parking_lot::Mutex;

use super::{lan_prefixes, Firewall, FirewallPolicy};

pub const TABLE: &str = "underpass";
const DNS_PORTS: [u32; 2] = [53, 853];

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
        for (name, hook) in [("output", NfHook::Output), ("input", NfHook::Input)] {
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
        rules.push(marked_udp_rule(t.fwmark));
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
    // DNS to anything but the tunnel's resolvers is refused, through the tunnel or not.
    for l4 in ["udp", "tcp"] {
        rules.push(vec![dns_ports(l4), reject()]);
    }
    rules.extend(always_allowed(policy, Direction::Out));
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

/// The helper's own UDP: the tunnel to its endpoint and handshake probes of other servers.
/// Only a process with CAP_NET_ADMIN can set the mark, so nothing else gets through here.
fn marked_udp_rule(fwmark: u32) -> Vec<Statement<'static>> {
    vec![
        is(meta(MetaKey::Mark), Expression::Number(fwmark)),
        is(meta(MetaKey::L4proto), text("udp")),
        accept(),
    ]
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
    rules.push(vec![
        Statement::Match(Match {
            left: Expression::Named(NamedExpression::CT(CT {
                key: "state".into(),
                family: None,
                dir: None,
            })),
            right: Expression::List(vec![text("established"), text("related")]),
            op: Operator::IN,
        }),
        accept(),
    ]);
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
    fn tunnel_policy_opens_only_the_helpers_marked_udp() {
        let rules = output_rules(&policy(true, false));
        let ep = json(vec![rules[1].clone()]);
        assert!(
            ep.contains("\"mark\"") && ep.contains("30064") && ep.contains("\"udp\""),
            "{ep}"
        );
        assert!(!json(output_rules(&policy(false, false))).contains("30064"));
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
