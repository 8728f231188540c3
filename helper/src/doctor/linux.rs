//! The doctor's probes on Linux: the tunnel interface over rtnetlink, the firewall as nftables
//! lists it, and the packets (UDP to a closed port, ICMP echoes with DF set, a DNS query).
//! Everything here only looks and sends probes, except [`set_mtu`].

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags};
use rtnetlink::LinkUnspec;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::verdict::{InterfaceAddress, InterfaceFacts, Outcome};

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

fn socket(
    target: IpAddr,
    ty: Type,
    protocol: Protocol,
    mark: Option<u32>,
) -> std::io::Result<Socket> {
    let domain = if target.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, ty, Some(protocol))?;
    if let Some(m) = mark {
        s.set_mark(m)?;
    }
    Ok(s)
}

fn outcome_of(e: std::io::Error) -> Outcome {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Outcome::Silent,
        _ => Outcome::Refused(e.to_string()),
    }
}

/// UDP to a closed port of `target`: "port unreachable" proves that UDP reaches the host.
pub fn udp_probe(target: SocketAddr, mark: Option<u32>) -> Outcome {
    let run = || -> std::io::Result<Outcome> {
        let s = socket(target.ip(), Type::DGRAM, Protocol::UDP, mark)?;
        s.connect(&target.into())?;
        s.set_read_timeout(Some(Duration::from_millis(1500)))?;
        let started = Instant::now();
        for _ in 0..2 {
            s.send(b"underpass doctor: outer-path probe")?;
            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 64];
            match s.recv(&mut buf) {
                Ok(_) => return Ok(Outcome::Answered(format!("a UDP reply from {target}"))),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Ok(Outcome::Answered(format!(
                        "port unreachable from {} after {:.1} ms: UDP reaches the host",
                        target.ip(),
                        started.elapsed().as_secs_f64() * 1000.0
                    )))
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Outcome::Silent)
    };
    run().unwrap_or_else(outcome_of)
}

/// One ICMP echo of `size` bytes in all (IP header included) to `target` with DF set (the
/// kernel refuses sizes above the route MTU), waiting `wait` for the matching reply.
pub fn echo(target: IpAddr, size: u16, mark: Option<u32>, wait: Duration) -> Outcome {
    let run = || -> std::io::Result<Outcome> {
        let (protocol, request, reply, ip_header) = if target.is_ipv4() {
            (Protocol::ICMPV4, 8u8, 0u8, 20usize)
        } else {
            (Protocol::ICMPV6, 128, 129, 40)
        };
        let s = socket(target, Type::RAW, protocol, mark)?;
        use std::os::fd::AsRawFd;
        let (level, opt, probe) = if target.is_ipv4() {
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
        // SAFETY: a valid fd, and a pointer to a live c_int of the given size.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                level,
                opt,
                (&probe as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let payload = (size as usize).saturating_sub(ip_header + 8).max(8);
        let id: u16 = rand::random();
        let seq: u16 = rand::random();
        let mut packet = vec![0u8; 8 + payload];
        packet[0] = request;
        packet[4..6].copy_from_slice(&id.to_be_bytes());
        packet[6..8].copy_from_slice(&seq.to_be_bytes());
        if target.is_ipv4() {
            let sum = checksum(&packet);
            packet[2..4].copy_from_slice(&sum.to_be_bytes());
        } // The kernel fills in the ICMPv6 checksum.
        let started = Instant::now();
        s.send_to(&packet, &SockAddr::from(SocketAddr::new(target, 0)))?;
        let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 65536];
        while started.elapsed() < wait {
            s.set_read_timeout(Some(
                wait.saturating_sub(started.elapsed())
                    .max(Duration::from_millis(1)),
            ))?;
            let (n, from) = match s.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) => return Err(e),
            };
            // SAFETY: recv_from initialized the first n bytes.
            let data: Vec<u8> = buf[..n]
                .iter()
                .map(|b| unsafe { b.assume_init() })
                .collect();
            // Raw IPv4 sockets deliver the IP header; ICMPv6 ones do not.
            let icmp = if target.is_ipv4() {
                let ihl = usize::from(data.first().map_or(5, |b| b & 0x0f)) * 4;
                data.get(ihl..).unwrap_or(&[])
            } else {
                &data[..]
            };
            let from_target = from.as_socket().is_some_and(|a| a.ip() == target);
            if from_target
                && icmp.len() >= 8
                && icmp[0] == reply
                && icmp[4..6] == id.to_be_bytes()
                && icmp[6..8] == seq.to_be_bytes()
            {
                return Ok(Outcome::Answered(format!(
                    "echo reply from {target} ({size} bytes) in {:.1} ms",
                    started.elapsed().as_secs_f64() * 1000.0
                )));
            }
        }
        Ok(Outcome::Silent)
    };
    run().unwrap_or_else(outcome_of)
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A DNS query for the root's NS records: any answer at all shows the resolver is reachable.
pub fn dns_query(server: IpAddr) -> Outcome {
    let run = || -> std::io::Result<Outcome> {
        let target = SocketAddr::new(server, 53);
        let s = socket(server, Type::DGRAM, Protocol::UDP, None)?;
        s.connect(&target.into())?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let id: u16 = rand::random();
        let mut q = id.to_be_bytes().to_vec();
        // Recursion desired, one question: ". IN NS".
        q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1]);
        let started = Instant::now();
        s.send(&q)?;
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 512];
        let n = s.recv(&mut buf)?;
        // SAFETY: recv initialized the first n bytes.
        let head: Vec<u8> = buf[..n.min(4)]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        if head.len() >= 2 && head[..2] == id.to_be_bytes() {
            Ok(Outcome::Answered(format!(
                "answered in {:.1} ms",
                started.elapsed().as_secs_f64() * 1000.0
            )))
        } else {
            Ok(Outcome::Silent)
        }
    };
    run().unwrap_or_else(outcome_of)
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

    #[test]
    fn icmp_checksums_verify() {
        let mut p = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1, b'a', b'b', b'c'];
        let sum = checksum(&p);
        p[2..4].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(checksum(&p), 0);
    }
}
