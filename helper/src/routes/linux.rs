//! Linux routing through rtnetlink: one table for the tunnel's routes, two policy rules per
//! address family, and the `src_valid_mark` sysctl that lets replies to the marked socket pass
//! reverse-path filtering. Nothing here runs `ip`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{anyhow, Context, Result};
use futures::{StreamExt, TryStreamExt};
use ipnet::IpNet;
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteProtocol,
    RouteScope, RouteType,
};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleFlags, RuleMessage};
use rtnetlink::{Handle, IpVersion, RouteMessageBuilder};
use tokio::task::JoinHandle;

use super::{RouteLookup, RouteManager, RoutePlan};

/// Where the search for a free table id and firewall mark starts ("up" in ASCII).
const TABLE_BASE: u32 = 0x7570;
/// `lookup main suppress_prefixlength 0`, then `not fwmark M lookup T`. Both sit just ahead of
/// the main table's own rule (32766).
const PRIORITY_SUPPRESS: u32 = 32760;
const PRIORITY_TUNNEL: u32 = 32761;
const SRC_VALID_MARK: &str = "/proc/sys/net/ipv4/conf/all/src_valid_mark";

enum Undo {
    Rule(RuleMessage),
    Route(RouteMessage),
    Sysctl { path: &'static str, old: String },
}

pub struct LinuxRoutes {
    handle: Handle,
    connection: JoinHandle<()>,
    undo: Vec<Undo>,
}

impl Drop for LinuxRoutes {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl LinuxRoutes {
    async fn ifindex(&self, name: &str) -> Result<u32> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        let link: LinkMessage = links
            .try_next()
            .await
            .with_context(|| format!("looking up interface {name}"))?
            .ok_or_else(|| anyhow!("interface {name} does not exist"))?;
        Ok(link.header.index)
    }

    async fn add_route(&mut self, msg: RouteMessage, what: &str) -> Result<()> {
        self.handle
            .route()
            .add(msg.clone())
            .execute()
            .await
            .with_context(|| format!("adding route {what}"))?;
        self.undo.push(Undo::Route(msg));
        Ok(())
    }

    async fn add_rule(&mut self, mut msg: RuleMessage, what: &str) -> Result<()> {
        let mut req = self.handle.rule().add();
        std::mem::swap(req.message_mut(), &mut msg);
        let sent = req.message_mut().clone();
        req.execute()
            .await
            .with_context(|| format!("adding rule {what}"))?;
        self.undo.push(Undo::Rule(sent));
        Ok(())
    }

    fn set_sysctl(&mut self, path: &'static str, value: &str) -> Result<()> {
        let old = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
        if old.trim() == value {
            return Ok(());
        }
        std::fs::write(path, value).with_context(|| format!("writing {path}"))?;
        self.undo.push(Undo::Sysctl { path, old });
        Ok(())
    }

    async fn install(&mut self, plan: &RoutePlan) -> Result<()> {
        let index = self.ifindex(&plan.interface).await?;
        for net in &plan.include {
            let msg = route_message(*net, plan.table, Some(index));
            self.add_route(msg, &format!("{net} dev {}", plan.interface))
                .await?;
        }
        for net in &plan.exclude {
            let mut msg = route_message(*net, plan.table, None);
            msg.header.kind = RouteType::Throw;
            msg.header.scope = RouteScope::Universe;
            self.add_route(msg, &format!("throw {net} table {}", plan.table))
                .await?;
        }
        for (family_v4, present, full) in [
            (true, plan.has_v4(), plan.full_tunnel_v4),
            (false, plan.has_v6(), plan.full_tunnel_v6),
        ] {
            if !present {
                continue;
            }
            let v = if family_v4 { "-4" } else { "-6" };
            if full {
                let mut rule = rule_message(
                    family_v4,
                    RouteHeader::RT_TABLE_MAIN as u32,
                    PRIORITY_SUPPRESS,
                );
                rule.attributes.push(RuleAttribute::SuppressPrefixLen(0));
                self.add_rule(rule, &format!("{v} lookup main suppress_prefixlength 0"))
                    .await?;
            }
            let mut rule = rule_message(family_v4, plan.table, PRIORITY_TUNNEL);
            rule.attributes.push(RuleAttribute::FwMark(plan.fwmark));
            rule.header.flags |= RuleFlags::Invert;
            self.add_rule(
                rule,
                &format!("{v} not fwmark {:#x} lookup {}", plan.fwmark, plan.table),
            )
            .await?;
        }
        if plan.has_v4() {
            self.set_sysctl(SRC_VALID_MARK, "1")?;
        }
        Ok(())
    }
}

fn rule_message(v4: bool, table: u32, priority: u32) -> RuleMessage {
    let mut msg = RuleMessage::default();
    msg.header.family = if v4 {
        rtnetlink::packet_route::AddressFamily::Inet
    } else {
        rtnetlink::packet_route::AddressFamily::Inet6
    };
    msg.header.action = RuleAction::ToTable;
    if table > 255 {
        msg.header.table = RouteHeader::RT_TABLE_UNSPEC;
        msg.attributes.push(RuleAttribute::Table(table));
    } else {
        msg.header.table = table as u8;
    }
    msg.attributes.push(RuleAttribute::Priority(priority));
    msg
}

fn route_message(net: IpNet, table: u32, oif: Option<u32>) -> RouteMessage {
    let mut msg = match net {
        IpNet::V4(n) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(n.addr(), n.prefix_len())
            .table_id(table)
            .protocol(RouteProtocol::Static)
            .scope(RouteScope::Link)
            .build(),
        IpNet::V6(n) => RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(n.addr(), n.prefix_len())
            .table_id(table)
            .protocol(RouteProtocol::Static)
            .scope(RouteScope::Link)
            .build(),
    };
    if let Some(oif) = oif {
        msg.attributes.push(RouteAttribute::Oif(oif));
    }
    msg
}

fn route_table(msg: &RouteMessage) -> u32 {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(msg.header.table as u32)
}

/// The table of a rule that only underpassd installs (see `install`), if `msg` is one.
fn stale_rule_table(msg: &RuleMessage) -> Option<u32> {
    let priority = msg.attributes.iter().find_map(|a| match a {
        RuleAttribute::Priority(p) => Some(*p),
        _ => None,
    });
    let (table, mark) = rule_table_and_mark(msg);
    let suppress = msg
        .attributes
        .iter()
        .any(|a| matches!(a, RuleAttribute::SuppressPrefixLen(0)));
    let ours = match priority {
        Some(PRIORITY_TUNNEL) => {
            msg.header.flags.contains(RuleFlags::Invert)
                && mark.is_some_and(|m| (TABLE_BASE..TABLE_BASE + 256).contains(&m))
        }
        Some(PRIORITY_SUPPRESS) => suppress && table == RouteHeader::RT_TABLE_MAIN as u32,
        _ => false,
    };
    ours.then_some(table)
}

fn rule_table_and_mark(msg: &RuleMessage) -> (u32, Option<u32>) {
    let mut table = msg.header.table as u32;
    let mut mark = None;
    for a in &msg.attributes {
        match a {
            RuleAttribute::Table(t) => table = *t,
            RuleAttribute::FwMark(m) => mark = Some(*m),
            _ => {}
        }
    }
    (table, mark)
}

impl RouteManager for LinuxRoutes {
    async fn open() -> Result<Self> {
        let (connection, handle, _) =
            rtnetlink::new_connection().context("opening a netlink socket")?;
        Ok(LinuxRoutes {
            handle,
            connection: tokio::spawn(connection),
            undo: Vec::new(),
        })
    }

    async fn remove_stale(&mut self) -> Result<()> {
        let mut tables = std::collections::HashSet::new();
        for family in [IpVersion::V4, IpVersion::V6] {
            let mut stale = Vec::new();
            let mut rules = self.handle.rule().get(family).execute();
            while let Some(r) = rules.try_next().await.context("listing rules")? {
                if let Some(table) = stale_rule_table(&r) {
                    tables.insert(table);
                    stale.push(r);
                }
            }
            for r in stale {
                tracing::warn!(?r.header.family, "removing a policy rule left by an earlier underpassd");
                self.handle
                    .rule()
                    .del(r)
                    .execute()
                    .await
                    .context("deleting a stale policy rule")?;
            }
        }
        for table in tables
            .into_iter()
            .filter(|t| *t != RouteHeader::RT_TABLE_MAIN as u32)
        {
            for query in [
                RouteMessageBuilder::<Ipv4Addr>::new()
                    .table_id(table)
                    .build(),
                RouteMessageBuilder::<Ipv6Addr>::new()
                    .table_id(table)
                    .build(),
            ] {
                let mut stale = Vec::new();
                let mut routes = self.handle.route().get(query).execute();
                while let Some(r) = routes.try_next().await.context("listing routes")? {
                    if route_table(&r) == table {
                        stale.push(r);
                    }
                }
                for r in stale {
                    let _ = self.handle.route().del(r).execute().await;
                }
            }
        }
        Ok(())
    }

    async fn free_table_and_mark(&self) -> Result<(u32, u32)> {
        let mut used_tables = std::collections::HashSet::new();
        let mut used_marks = std::collections::HashSet::new();
        for family in [IpVersion::V4, IpVersion::V6] {
            let mut routes = self
                .handle
                .route()
                .get(match family {
                    IpVersion::V4 => RouteMessageBuilder::<Ipv4Addr>::new().build(),
                    IpVersion::V6 => RouteMessageBuilder::<Ipv6Addr>::new().build(),
                })
                .execute();
            while let Some(r) = routes.try_next().await.context("listing routes")? {
                used_tables.insert(route_table(&r));
            }
            let mut rules = self.handle.rule().get(family).execute();
            while let Some(r) = rules.try_next().await.context("listing rules")? {
                let (table, mark) = rule_table_and_mark(&r);
                used_tables.insert(table);
                used_marks.extend(mark);
            }
        }
        (TABLE_BASE..TABLE_BASE + 256)
            .find(|n| !used_tables.contains(n) && !used_marks.contains(n))
            .map(|n| (n, n))
            .ok_or_else(|| anyhow!("no free routing table near {TABLE_BASE}"))
    }

    async fn apply(&mut self, plan: &RoutePlan) -> Result<()> {
        if let Err(e) = self.install(plan).await {
            if let Err(undo) = self.restore().await {
                tracing::error!(error = %format!("{undo:#}"), "rolling back routes failed");
            }
            return Err(e);
        }
        Ok(())
    }

    async fn restore(&mut self) -> Result<()> {
        let mut first_error = None;
        // Rules first, so that nothing is steered into a table that is being emptied.
        let (rules, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.undo)
            .into_iter()
            .partition(|u| matches!(u, Undo::Rule(_)));
        for undo in rules.into_iter().rev().chain(rest.into_iter().rev()) {
            let result = match undo {
                Undo::Rule(msg) => self
                    .handle
                    .rule()
                    .del(msg)
                    .execute()
                    .await
                    .context("deleting a policy rule"),
                Undo::Route(msg) => match self.handle.route().del(msg).execute().await {
                    // Routes through the TUN vanish with it; that is not a failure.
                    Err(rtnetlink::Error::NetlinkError(e))
                        if e.raw_code() == -libc::ESRCH || e.raw_code() == -libc::ENOENT =>
                    {
                        Ok(())
                    }
                    other => other.context("deleting a route"),
                },
                Undo::Sysctl { path, old } => {
                    std::fs::write(path, old.trim()).with_context(|| format!("restoring {path}"))
                }
            };
            if let Err(e) = result {
                tracing::error!(error = %format!("{e:#}"), "restoring routing state");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn default_gateways(&self) -> Vec<IpAddr> {
        main_table_gateways()
    }

    async fn lookup(&self, dst: IpAddr, fwmark: Option<u32>) -> Option<RouteLookup> {
        let mut query = match dst {
            IpAddr::V4(a) => RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(a, 32)
                .build(),
            IpAddr::V6(a) => RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(a, 128)
                .build(),
        };
        if let Some(mark) = fwmark {
            query.attributes.push(RouteAttribute::Mark(mark));
        }
        let route = self
            .handle
            .route()
            .get(query)
            .execute()
            .try_next()
            .await
            .ok()??;
        let mut found = RouteLookup {
            destination: dst,
            interface: String::new(),
            gateway: None,
            source: None,
            route_mtu: None,
            link_mtu: None,
        };
        let mut oif = None;
        for a in &route.attributes {
            match a {
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::Gateway(g) => found.gateway = route_ip(g),
                RouteAttribute::PrefSource(p) => found.source = route_ip(p),
                RouteAttribute::Metrics(metrics) => {
                    found.route_mtu = metrics.iter().find_map(|m| match m {
                        RouteMetric::Mtu(n) => u16::try_from(*n).ok(),
                        _ => None,
                    })
                }
                _ => {}
            }
        }
        let link = self
            .handle
            .link()
            .get()
            .match_index(oif?)
            .execute()
            .try_next()
            .await
            .ok()??;
        for a in &link.attributes {
            match a {
                LinkAttribute::Mtu(m) => found.link_mtu = u16::try_from(*m).ok(),
                LinkAttribute::IfName(n) => found.interface = n.clone(),
                _ => {}
            }
        }
        Some(found)
    }

    fn watch_changes() -> Result<tokio::sync::mpsc::UnboundedReceiver<()>> {
        use rtnetlink::MulticastGroup as G;
        let (connection, _handle, mut messages) = rtnetlink::new_multicast_connection(&[
            G::Link,
            G::Ipv4Ifaddr,
            G::Ipv6Ifaddr,
            G::Ipv4Route,
            G::Ipv6Route,
        ])
        .context("subscribing to netlink link, address and route changes")?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(connection);
        tokio::spawn(async move {
            while messages.next().await.is_some() {
                if tx.send(()).is_err() {
                    return;
                }
            }
        });
        Ok(rx)
    }
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// The next hops of the main table's default routes, from /proc (which lists the main table).
fn main_table_gateways() -> Vec<IpAddr> {
    let mut out = Vec::new();
    // /proc/net/route: Iface Destination Gateway Flags ..., hex in host (little-endian) order.
    if let Ok(text) = std::fs::read_to_string("/proc/net/route") {
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 2 && f[1] == "00000000" {
                if let Ok(g) = u32::from_str_radix(f[2], 16) {
                    if g != 0 {
                        out.push(IpAddr::V4(Ipv4Addr::from(g.swap_bytes())));
                    }
                }
            }
        }
    }
    // /proc/net/ipv6_route: dest, dest len, src, src len, next hop, ... (hex, network order).
    if let Ok(text) = std::fs::read_to_string("/proc/net/ipv6_route") {
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 4 && f[0] == "0".repeat(32) && f[1] == "00" && f[4] != "0".repeat(32) {
                if let Ok(g) = u128::from_str_radix(f[4], 16) {
                    out.push(IpAddr::V6(Ipv6Addr::from(g)));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateways_are_read_from_the_kernels_tables() {
        // Whatever this machine has, each entry is a real unicast address.
        for g in main_table_gateways() {
            assert!(!g.is_unspecified() && !g.is_multicast(), "{g}");
        }
    }
}
