//! The doctor's probes on Linux: the tunnel interface over rtnetlink, the firewall as nftables
//! lists it, and what the packets of `probes.rs` need here (the mark, DF by path-MTU probing).
//! Everything here only looks and sends probes, except [`set_mtu`].

use anyhow::{anyhow, Context, Result};
use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags};
use rtnetlink::LinkUnspec;
use socket2::Socket;

use super::verdict::{InterfaceAddress, InterfaceFacts};

pub use super::probes::{dns_query, echo, udp_probe};

/// How the evidence names the kill switch's rules.
pub const OURS: &str = "table inet underpass";

/// The helper's mark, so the probe takes the path the session's packets take.
pub fn set_mark(s: &Socket, mark: u32) -> std::io::Result<()> {
    s.set_mark(mark)
}

/// DF on every packet, and the kernel refuses sizes above the route MTU instead of fragmenting
/// (`IP_PMTUDISC_PROBE`): what a path-MTU search needs.
pub fn dont_fragment(s: &Socket, v4: bool) -> std::io::Result<()> {
    let (level, opt, probe) = if v4 {
        (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_PROBE,
        )
    } else {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_PROBE,
        )
    };
    super::probes::set_int_option(s, level, opt, probe)
}

/// The tunnel interface as the kernel has it now.
pub async fn interface(name: &str) -> InterfaceFacts {
    let mut facts = InterfaceFacts::absent(name);
    let Ok((connection, handle, _)) = rtnetlink::new_connection() else {
        return facts;
    };
    let task = tokio::spawn(connection);
    if let Ok(Some(link)) = link_named(&handle, name).await {
        facts.exists = true;
        facts.up = link.header.flags.contains(LinkFlags::Up);
        facts.lower_up = link.header.flags.contains(LinkFlags::LowerUp);
        facts.mtu = link.attributes.iter().find_map(|a| match a {
            LinkAttribute::Mtu(m) => u16::try_from(*m).ok(),
            _ => None,
        });
        let mut addrs = handle
            .address()
            .get()
            .set_link_index_filter(link.header.index)
            .execute();
        while let Ok(Some(a)) = addrs.try_next().await {
            let mut local = None;
            let mut address = None;
            for attr in &a.attributes {
                match attr {
                    AddressAttribute::Local(ip) => local = Some(*ip),
                    AddressAttribute::Address(ip) => address = Some(*ip),
                    _ => {}
                }
            }
            // IFA_LOCAL is our end; IFA_ADDRESS differs from it only on a point-to-point link.
            let Some(mine) = local.or(address) else {
                continue;
            };
            facts.addresses.push(InterfaceAddress {
                local: mine,
                peer: address.filter(|p| *p != mine),
                prefix_len: a.header.prefix_len,
            });
        }
    }
    task.abort();
    facts
}

async fn link_named(
    handle: &rtnetlink::Handle,
    name: &str,
) -> Result<Option<rtnetlink::packet_route::link::LinkMessage>, rtnetlink::Error> {
    handle
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
}

/// Sets the interface's MTU (the kernel's MSS clamp, `rt mtu`, follows the route's MTU).
pub async fn set_mtu(name: &str, mtu: u16) -> Result<()> {
    let (connection, handle, _) = rtnetlink::new_connection().context("opening netlink")?;
    let task = tokio::spawn(connection);
    let result = async {
        let link = link_named(&handle, name)
            .await
            .with_context(|| format!("looking up {name}"))?
            .ok_or_else(|| anyhow!("{name} does not exist"))?;
        handle
            .link()
            .set(
                LinkUnspec::new_with_index(link.header.index)
                    .mtu(mtu.into())
                    .build(),
            )
            .execute()
            .await
            .with_context(|| format!("setting the MTU of {name} to {mtu}"))
    }
    .await;
    task.abort();
    result
}

/// Packets the kernel handed the tunnel device (what the helper read: `tx`) and the helper
/// handed back (`rx`), from sysfs.
pub fn tunnel_counters(interface: &str) -> Option<(u64, u64)> {
    let read = |what: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/sys/class/net/{interface}/statistics/{what}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    Some((read("tx_packets")?, read("rx_packets")?))
}

/// The kernel's whole ruleset, as `nft list ruleset` prints it.
pub async fn ruleset() -> Result<String> {
    let out = tokio::process::Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .await
        .context("running nft list ruleset")?;
    if !out.status.success() {
        anyhow::bail!(
            "nft list ruleset: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// From `nft list ruleset`: the rule lines of Underpass's kill-switch table (if present), and
/// every drop or reject rule of any other table, as `table T chain C: RULE`.
pub fn split_ruleset(text: &str) -> (Option<Vec<String>>, Vec<String>) {
    let mut ours: Option<Vec<String>> = None;
    let mut foreign = Vec::new();
    let mut table = String::new();
    let mut chain = String::new();
    for line in text.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("table ") {
            table = rest.trim_end_matches('{').trim().to_string();
            if table == "inet underpass" {
                ours = Some(Vec::new());
            }
            continue;
        }
        if let Some(rest) = l.strip_prefix("chain ") {
            chain = rest.trim_end_matches('{').trim().to_string();
            continue;
        }
        if l.is_empty() || l == "}" || l.starts_with("type ") || l.starts_with("policy ") {
            continue;
        }
        if table == "inet underpass" {
            if let Some(o) = ours.as_mut() {
                o.push(l.to_string());
            }
        } else if table != "inet underpass_mss"
            && (l.contains(" drop") || l.starts_with("drop") || l.contains("reject"))
        {
            foreign.push(format!("table {table} chain {chain}: {l}"));
        }
    }
    (ours, foreign)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ruleset_splits_into_ours_and_other_tables_drop_rules() {
        let text = "table inet underpass {\n\tchain output {\n\t\ttype filter hook output priority filter; policy accept;\n\t\toifname \"lo\" accept\n\t\treject with icmpx admin-prohibited\n\t}\n}\n\
                    table inet underpass_mss {\n\tchain f {\n\t\ttcp flags syn tcp option maxseg size set rt mtu\n\t}\n}\n\
                    table inet breaker {\n\tchain out {\n\t\ttype filter hook output priority -10; policy accept;\n\t\toifname \"up0\" counter packets 3 bytes 252 drop\n\t}\n}\n";
        let (ours, foreign) = split_ruleset(text);
        assert_eq!(ours.unwrap().len(), 2);
        assert_eq!(
            foreign,
            vec!["table inet breaker chain out: oifname \"up0\" counter packets 3 bytes 252 drop"]
        );
        assert_eq!(split_ruleset("").0, None);
    }
}
