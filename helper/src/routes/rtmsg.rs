//! macOS routing-socket (`PF_ROUTE`) messages as bytes, and the macOS route plan as data.
//! Both are portable and unit-tested on Linux; `macos.rs` writes and reads them on the socket.
//!
//! Layouts are XNU's `<net/route.h>`: a 92-byte `rt_msghdr` (with its `rt_metrics`), then the
//! socket addresses named by `rtm_addrs`, in bit order, each padded to 4 bytes. The kernel may
//! send a netmask shortened to its significant bytes (even `sa_len` 0); parsing accepts that.
//! On macOS the header size and field offsets are checked against `libc` at compile time.
//!
//! The plan follows wg-quick on macOS: a full tunnel is two half routes (`0.0.0.0/1`,
//! `128.0.0.0/1`, and `::/1`, `8000::/1`) into the utun, which beat the default route without
//! replacing it; each endpoint gets a host route through the physical gateway, so the
//! encrypted UDP can never loop into the tunnel; excluded prefixes go through that gateway too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::RoutePlan;

pub const RTM_VERSION: u8 = 5;
pub const RTM_ADD: u8 = 0x1;
pub const RTM_DELETE: u8 = 0x2;
pub const RTM_CHANGE: u8 = 0x3;
pub const RTM_GET: u8 = 0x4;
pub const RTM_NEWADDR: u8 = 0xc;
pub const RTM_DELADDR: u8 = 0xd;
pub const RTM_IFINFO: u8 = 0xe;

pub const RTF_UP: i32 = 0x1;
pub const RTF_GATEWAY: i32 = 0x2;
pub const RTF_HOST: i32 = 0x4;
pub const RTF_STATIC: i32 = 0x800;

pub const RTA_DST: i32 = 0x1;
pub const RTA_GATEWAY: i32 = 0x2;
pub const RTA_NETMASK: i32 = 0x4;
pub const RTA_IFP: i32 = 0x10;
/// Every address slot that can follow the header, in order (RTA_DST .. RTA_BRD).
const RTAX_MAX: u32 = 8;

const AF_INET: u8 = 2;
const AF_LINK: u8 = 18;
const AF_INET6: u8 = 30;

/// `sizeof(struct rt_msghdr)` on macOS.
pub const HEADER_LEN: usize = 92;
const OFF_MSGLEN: usize = 0;
const OFF_VERSION: usize = 2;
const OFF_TYPE: usize = 3;
const OFF_INDEX: usize = 4;
const OFF_FLAGS: usize = 8;
const OFF_ADDRS: usize = 12;
const OFF_PID: usize = 16;
const OFF_SEQ: usize = 20;
const OFF_ERRNO: usize = 24;
/// `rtm_rmx.rmx_mtu`.
const OFF_MTU: usize = 40;
const SOCKADDR_IN_LEN: u8 = 16;
const SOCKADDR_IN6_LEN: u8 = 28;
const SOCKADDR_DL_LEN: u8 = 20;

#[cfg(target_os = "macos")]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<libc::rt_msghdr>() == HEADER_LEN);
    assert!(offset_of!(libc::rt_msghdr, rtm_msglen) == OFF_MSGLEN);
    assert!(offset_of!(libc::rt_msghdr, rtm_version) == OFF_VERSION);
    assert!(offset_of!(libc::rt_msghdr, rtm_type) == OFF_TYPE);
    assert!(offset_of!(libc::rt_msghdr, rtm_index) == OFF_INDEX);
    assert!(offset_of!(libc::rt_msghdr, rtm_flags) == OFF_FLAGS);
    assert!(offset_of!(libc::rt_msghdr, rtm_addrs) == OFF_ADDRS);
    assert!(offset_of!(libc::rt_msghdr, rtm_pid) == OFF_PID);
    assert!(offset_of!(libc::rt_msghdr, rtm_seq) == OFF_SEQ);
    assert!(offset_of!(libc::rt_msghdr, rtm_errno) == OFF_ERRNO);
    assert!(offset_of!(libc::rt_msghdr, rtm_rmx) + 4 == OFF_MTU);
    assert!(size_of::<libc::sockaddr_in>() == SOCKADDR_IN_LEN as usize);
    assert!(size_of::<libc::sockaddr_in6>() == SOCKADDR_IN6_LEN as usize);
    assert!(size_of::<libc::sockaddr_dl>() == SOCKADDR_DL_LEN as usize);
    assert!(libc::AF_INET as u8 == AF_INET && libc::AF_INET6 as u8 == AF_INET6);
    assert!(libc::AF_LINK as u8 == AF_LINK && libc::RTM_VERSION as u8 == RTM_VERSION);
    assert!(libc::RTM_ADD as u8 == RTM_ADD && libc::RTM_GET as u8 == RTM_GET);
    assert!(libc::RTM_IFINFO as u8 == RTM_IFINFO && libc::RTM_NEWADDR as u8 == RTM_NEWADDR);
    assert!(libc::RTF_STATIC == RTF_STATIC && libc::RTA_IFP == RTA_IFP);
};

/// A link-layer address as routes use it: the interface's index (and name, when known).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub index: u16,
    pub name: String,
}

/// What a route's gateway slot holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Gateway {
    Ip(IpAddr),
    Link(Link),
}

/// One routing-socket message about a route.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub kind: u8,
    pub flags: i32,
    /// `rtm_index`: the interface of an interface-scoped route, or of the reply.
    pub index: u16,
    pub pid: i32,
    pub seq: i32,
    pub errno: i32,
    pub mtu: u32,
    pub dst: Option<IpAddr>,
    pub gateway: Option<Gateway>,
    pub netmask: Option<IpAddr>,
    /// Asked for in a request (an empty link address), named in the reply.
    pub ifp: Option<Link>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("routing message of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("routing message says it is {said} bytes but {got} arrived")]
    Length { said: usize, got: usize },
    #[error("routing message version {0}, expected {RTM_VERSION}")]
    Version(u8),
    #[error("routing message type {0:#x} is not about a route")]
    NotRoute(u8),
    #[error("socket address {slot} runs past the end of the message")]
    Truncated { slot: u32 },
}

fn roundup(len: usize) -> usize {
    if len == 0 {
        4
    } else {
        (len + 3) & !3
    }
}

fn sockaddr_ip(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => {
            let mut b = vec![0u8; SOCKADDR_IN_LEN as usize];
            b[0] = SOCKADDR_IN_LEN;
            b[1] = AF_INET;
            b[4..8].copy_from_slice(&v4.octets());
            b
        }
        IpAddr::V6(v6) => {
            let mut b = vec![0u8; SOCKADDR_IN6_LEN as usize];
            b[0] = SOCKADDR_IN6_LEN;
            b[1] = AF_INET6;
            b[8..24].copy_from_slice(&v6.octets());
            b
        }
    }
}

fn sockaddr_dl(link: &Link) -> Vec<u8> {
    let name = link.name.as_bytes();
    let len = (8 + name.len()).max(SOCKADDR_DL_LEN as usize);
    let mut b = vec![0u8; len];
    b[0] = len as u8;
    b[1] = AF_LINK;
    b[2..4].copy_from_slice(&link.index.to_ne_bytes());
    b[5] = name.len() as u8;
    b[8..8 + name.len()].copy_from_slice(name);
    b
}

impl Message {
    /// The message as the kernel reads it from the socket.
    pub fn encode(&self) -> Vec<u8> {
        let mut addrs = 0;
        let mut tail = Vec::new();
        let mut put = |bit: i32, sa: Vec<u8>| {
            addrs |= bit;
            let padded = roundup(sa.len());
            tail.extend_from_slice(&sa);
            tail.resize(tail.len() + padded - sa.len(), 0);
        };
        if let Some(d) = self.dst {
            put(RTA_DST, sockaddr_ip(d));
        }
        match &self.gateway {
            Some(Gateway::Ip(g)) => put(RTA_GATEWAY, sockaddr_ip(*g)),
            Some(Gateway::Link(l)) => put(RTA_GATEWAY, sockaddr_dl(l)),
            None => {}
        }
        if let Some(m) = self.netmask {
            put(RTA_NETMASK, sockaddr_ip(m));
        }
        if let Some(l) = &self.ifp {
            put(RTA_IFP, sockaddr_dl(l));
        }
        let mut b = vec![0u8; HEADER_LEN];
        let total = HEADER_LEN + tail.len();
        b[OFF_MSGLEN..OFF_MSGLEN + 2].copy_from_slice(&(total as u16).to_ne_bytes());
        b[OFF_VERSION] = RTM_VERSION;
        b[OFF_TYPE] = self.kind;
        b[OFF_INDEX..OFF_INDEX + 2].copy_from_slice(&self.index.to_ne_bytes());
        b[OFF_FLAGS..OFF_FLAGS + 4].copy_from_slice(&self.flags.to_ne_bytes());
        b[OFF_ADDRS..OFF_ADDRS + 4].copy_from_slice(&addrs.to_ne_bytes());
        b[OFF_PID..OFF_PID + 4].copy_from_slice(&self.pid.to_ne_bytes());
        b[OFF_SEQ..OFF_SEQ + 4].copy_from_slice(&self.seq.to_ne_bytes());
        b[OFF_ERRNO..OFF_ERRNO + 4].copy_from_slice(&self.errno.to_ne_bytes());
        b[OFF_MTU..OFF_MTU + 4].copy_from_slice(&self.mtu.to_ne_bytes());
        b.extend_from_slice(&tail);
        b
    }

    /// A route message from the socket. Interface and address messages (`RTM_IFINFO`, ...)
    /// have other headers: [`kind_of`] tells them apart first.
    pub fn parse(buf: &[u8]) -> Result<Message, ParseError> {
        if buf.len() < HEADER_LEN {
            return Err(ParseError::Short(buf.len()));
        }
        let u16_at = |o: usize| u16::from_ne_bytes([buf[o], buf[o + 1]]);
        let i32_at = |o: usize| i32::from_ne_bytes(buf[o..o + 4].try_into().expect("4 bytes"));
        let said = u16_at(OFF_MSGLEN) as usize;
        if said > buf.len() || said < HEADER_LEN {
            return Err(ParseError::Length {
                said,
                got: buf.len(),
            });
        }
        if buf[OFF_VERSION] != RTM_VERSION {
            return Err(ParseError::Version(buf[OFF_VERSION]));
        }
        let kind = buf[OFF_TYPE];
        if !matches!(kind, RTM_ADD..=0xb) {
            return Err(ParseError::NotRoute(kind));
        }
        let mut m = Message {
            kind,
            index: u16_at(OFF_INDEX),
            flags: i32_at(OFF_FLAGS),
            pid: i32_at(OFF_PID),
            seq: i32_at(OFF_SEQ),
            errno: i32_at(OFF_ERRNO),
            mtu: i32_at(OFF_MTU) as u32,
            ..Message::default()
        };
        let addrs = i32_at(OFF_ADDRS);
        let mut at = HEADER_LEN;
        let mut dst_family = AF_INET;
        for slot in 0..RTAX_MAX {
            let bit = 1 << slot;
            if addrs & bit == 0 {
                continue;
            }
            let len = *buf.get(at).ok_or(ParseError::Truncated { slot })? as usize;
            let space = roundup(len);
            if at + len > said {
                return Err(ParseError::Truncated { slot });
            }
            let sa = &buf[at..at + len];
            match bit {
                RTA_DST => {
                    m.dst = ip_of(sa);
                    dst_family = sa.get(1).copied().unwrap_or(AF_INET);
                }
                RTA_GATEWAY => {
                    m.gateway = match sa.get(1) {
                        Some(&AF_LINK) => link_of(sa).map(Gateway::Link),
                        _ => ip_of(sa).map(Gateway::Ip),
                    }
                }
                RTA_NETMASK => m.netmask = Some(mask_of(sa, dst_family)),
                RTA_IFP => m.ifp = link_of(sa),
                _ => {}
            }
            at += space;
        }
        Ok(m)
    }
}

/// The `rtm_type` of any message on a routing socket (all of them start alike).
pub fn kind_of(buf: &[u8]) -> Option<u8> {
    (buf.len() >= 4 && buf[OFF_VERSION] == RTM_VERSION).then(|| buf[OFF_TYPE])
}

fn ip_of(sa: &[u8]) -> Option<IpAddr> {
    match *sa.get(1)? {
        AF_INET if sa.len() >= 8 => {
            Some(Ipv4Addr::from(<[u8; 4]>::try_from(&sa[4..8]).ok()?).into())
        }
        AF_INET6 if sa.len() >= 24 => {
            Some(Ipv6Addr::from(<[u8; 16]>::try_from(&sa[8..24]).ok()?).into())
        }
        _ => None,
    }
}

/// A netmask, possibly shortened by the kernel to its significant bytes.
fn mask_of(sa: &[u8], family: u8) -> IpAddr {
    let (start, width) = if family == AF_INET6 { (8, 16) } else { (4, 4) };
    let mut bytes = [0u8; 16];
    for (i, b) in sa.iter().skip(start).take(width).enumerate() {
        bytes[i] = *b;
    }
    if family == AF_INET6 {
        Ipv6Addr::from(bytes).into()
    } else {
        Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).into()
    }
}

fn link_of(sa: &[u8]) -> Option<Link> {
    if sa.len() < 8 {
        return None;
    }
    let nlen = sa[5] as usize;
    let name = sa.get(8..8 + nlen)?;
    Some(Link {
        index: u16::from_ne_bytes([sa[2], sa[3]]),
        name: String::from_utf8_lossy(name).into_owned(),
    })
}

/// Where a planned route sends its traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Via {
    /// Into the tunnel (or another interface), with no next hop.
    Interface(Link),
    /// Through a gateway: the physical network's, for what must not enter the tunnel.
    Gateway(IpAddr),
}

/// One route the helper adds, and deletes again when done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    pub via: Via,
}

impl Route {
    fn message(&self, kind: u8, seq: i32) -> Message {
        let host = self.dst.prefix_len() == self.dst.max_prefix_len();
        let mut flags = RTF_UP | RTF_STATIC;
        if host {
            flags |= RTF_HOST;
        }
        let gateway = match &self.via {
            Via::Interface(l) => Gateway::Link(l.clone()),
            Via::Gateway(g) => {
                flags |= RTF_GATEWAY;
                Gateway::Ip(*g)
            }
        };
        Message {
            kind,
            flags,
            seq,
            dst: Some(self.dst.network()),
            gateway: Some(gateway),
            netmask: (!host).then(|| self.dst.netmask()),
            ..Message::default()
        }
    }

    pub fn add(&self, seq: i32) -> Message {
        self.message(RTM_ADD, seq)
    }

    pub fn delete(&self, seq: i32) -> Message {
        self.message(RTM_DELETE, seq)
    }
}

/// `RTM_GET` for the default route of one family: the physical network's gateway, which the
/// tunnel's half routes leave in place.
pub fn get_default(v4: bool, seq: i32) -> Message {
    let any: IpAddr = if v4 {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    Message {
        kind: RTM_GET,
        flags: RTF_UP | RTF_GATEWAY,
        seq,
        dst: Some(any),
        netmask: Some(any),
        ifp: Some(Link {
            index: 0,
            name: String::new(),
        }),
        ..Message::default()
    }
}

/// `RTM_GET` for the route the kernel would use to reach `dst`, asking for its interface.
pub fn get_route_to(dst: IpAddr, seq: i32) -> Message {
    Message {
        kind: RTM_GET,
        flags: RTF_UP | RTF_HOST,
        seq,
        dst: Some(dst),
        ifp: Some(Link {
            index: 0,
            name: String::new(),
        }),
        ..Message::default()
    }
}

/// The physical network's default gateways, as found before the tunnel's routes go in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Gateways {
    pub v4: Option<IpAddr>,
    pub v6: Option<IpAddr>,
}

impl Gateways {
    fn for_family(&self, net: &IpNet) -> Option<IpAddr> {
        match net {
            IpNet::V4(_) => self.v4,
            IpNet::V6(_) => self.v6,
        }
    }
}

fn half_routes(v4: bool) -> [IpNet; 2] {
    let parse = |s: &str| s.parse().expect("literal prefix");
    if v4 {
        [parse("0.0.0.0/1"), parse("128.0.0.0/1")]
    } else {
        [parse("::/1"), parse("8000::/1")]
    }
}

/// Every route for `plan` on macOS, in the order to add them (endpoint host routes first, so
/// the handshake never enters the tunnel), given the tunnel's link, the endpoints and the
/// physical gateways. An endpoint or excluded prefix of a family without a gateway gets no
/// route: it then follows the system's own routes, which the half routes leave alone only if
/// they are more specific, and the kill switch still holds.
pub fn macos_routes(
    plan: &RoutePlan,
    tunnel: &Link,
    endpoints: &[IpAddr],
    gateways: Gateways,
) -> Vec<Route> {
    let mut routes = Vec::new();
    let via_gateway = |dst: IpNet| {
        gateways.for_family(&dst).map(|g| Route {
            dst,
            via: Via::Gateway(g),
        })
    };
    let mut seen = std::collections::BTreeSet::new();
    for e in endpoints {
        if seen.insert(*e) {
            routes.extend(via_gateway(IpNet::from(*e)));
        }
    }
    routes.extend(plan.exclude.iter().copied().filter_map(via_gateway));
    for net in &plan.include {
        let into = |dst: IpNet| Route {
            dst,
            via: Via::Interface(tunnel.clone()),
        };
        if net.prefix_len() == 0 {
            routes.extend(half_routes(matches!(net, IpNet::V4(_))).map(into));
        } else {
            routes.push(into(*net));
        }
    }
    routes
}

/// Whether a message on the routing socket means the network under the tunnel changed: a
/// default route (not ours) came, went or moved, or an interface or address changed.
pub fn is_network_change(buf: &[u8], tunnel_index: u16) -> bool {
    match kind_of(buf) {
        Some(RTM_IFINFO | RTM_NEWADDR | RTM_DELADDR) => true,
        Some(RTM_ADD | RTM_DELETE | RTM_CHANGE) => Message::parse(buf).is_ok_and(|m| {
            let default = m.dst.is_some_and(|d| d.is_unspecified())
                && m.netmask.is_none_or(|n| n.is_unspecified());
            default && m.index != tunnel_index
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use underpass_proto::TunnelConfig;

    fn utun() -> Link {
        Link {
            index: 17,
            name: "utun4".into(),
        }
    }

    fn plan(include: &[&str], exclude: &[&str]) -> RoutePlan {
        let nets = |v: &[&str]| v.iter().map(|s| s.parse().unwrap()).collect::<Vec<IpNet>>();
        let mut c = TunnelConfig::example();
        c.peers[0].allowed_ips = nets(include);
        c.routing.exclude = nets(exclude);
        RoutePlan::new(&c, "utun4", 0, 0)
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn adding_a_half_route_into_the_utun_encodes_as_route_h_lays_it_out() {
        let r = Route {
            dst: "128.0.0.0/1".parse().unwrap(),
            via: Via::Interface(utun()),
        };
        let b = r.add(7).encode();
        assert_eq!(b.len(), HEADER_LEN + 16 + 20 + 16);
        // msglen 144, version 5, RTM_ADD, index 0, flags UP|STATIC, addrs DST|GATEWAY|NETMASK.
        assert_eq!(
            hex(&b[..16]),
            "900005010000000001080000".to_string() + "07000000"
        );
        assert_eq!(hex(&b[20..24]), "07000000", "seq");
        assert_eq!(hex(&b[92..108]), "10020000800000000000000000000000", "dst");
        assert_eq!(
            hex(&b[108..128]),
            "14121100000500007574756e3400000000000000",
            "gateway: AF_LINK, index 17, name utun4"
        );
        assert_eq!(
            hex(&b[128..144]),
            "10020000800000000000000000000000",
            "mask"
        );
    }

    #[test]
    fn a_host_route_via_a_gateway_has_no_netmask_and_the_gateway_flag() {
        let r = Route {
            dst: "192.0.2.10/32".parse().unwrap(),
            via: Via::Gateway("198.51.100.1".parse().unwrap()),
        };
        let m = r.delete(9);
        assert_eq!(m.flags, RTF_UP | RTF_STATIC | RTF_HOST | RTF_GATEWAY);
        assert_eq!(m.netmask, None);
        let b = m.encode();
        assert_eq!(b[OFF_TYPE], RTM_DELETE);
        assert_eq!(hex(&b[OFF_ADDRS..OFF_ADDRS + 4]), "03000000");
        assert_eq!(Message::parse(&b).unwrap(), m);
    }

    #[test]
    fn every_message_survives_a_round_trip() {
        let v6 = Route {
            dst: "8000::/1".parse().unwrap(),
            via: Via::Interface(utun()),
        };
        for m in [
            v6.add(1),
            get_default(true, 2),
            get_default(false, 3),
            get_route_to("2001:db8::1".parse().unwrap(), 4),
        ] {
            assert_eq!(Message::parse(&m.encode()).unwrap(), m, "{m:?}");
        }
    }

    #[test]
    fn a_reply_with_a_shortened_netmask_and_its_interface_parses() {
        let mut b = Message {
            kind: RTM_GET,
            flags: RTF_UP | RTF_GATEWAY,
            index: 4,
            pid: 321,
            seq: 5,
            mtu: 1500,
            dst: Some("0.0.0.0".parse().unwrap()),
            gateway: Some(Gateway::Ip("198.51.100.1".parse().unwrap())),
            ..Message::default()
        }
        .encode();
        // The kernel's netmask for a default route: sa_len 0, taking 4 bytes.
        b.extend_from_slice(&[0, 0, 0, 0]);
        b.extend_from_slice(&sockaddr_dl(&Link {
            index: 4,
            name: "en0".into(),
        }));
        let addrs = RTA_DST | RTA_GATEWAY | RTA_NETMASK | RTA_IFP;
        b[OFF_ADDRS..OFF_ADDRS + 4].copy_from_slice(&addrs.to_ne_bytes());
        let len = b.len() as u16;
        b[..2].copy_from_slice(&len.to_ne_bytes());
        let m = Message::parse(&b).unwrap();
        assert_eq!(m.netmask, Some("0.0.0.0".parse().unwrap()));
        assert_eq!(m.ifp.unwrap().name, "en0");
        assert_eq!(m.mtu, 1500);
        assert_eq!(
            m.gateway,
            Some(Gateway::Ip("198.51.100.1".parse().unwrap()))
        );
    }

    #[test]
    fn garbage_is_refused_with_the_reason() {
        assert_eq!(Message::parse(&[0; 10]), Err(ParseError::Short(10)));
        let mut b = get_default(true, 1).encode();
        b[OFF_VERSION] = 4;
        assert_eq!(Message::parse(&b), Err(ParseError::Version(4)));
        let mut b = get_default(true, 1).encode();
        let n = b.len();
        b.truncate(n - 8);
        assert!(matches!(Message::parse(&b), Err(ParseError::Length { .. })));
        let mut b = get_default(true, 1).encode();
        b[OFF_TYPE] = RTM_IFINFO;
        assert_eq!(Message::parse(&b), Err(ParseError::NotRoute(RTM_IFINFO)));
    }

    #[test]
    fn a_full_tunnel_is_half_routes_and_the_endpoint_goes_around_it() {
        let gw = Gateways {
            v4: Some("198.51.100.1".parse().unwrap()),
            v6: None,
        };
        let endpoints = [
            "192.0.2.10".parse().unwrap(),
            "2001:db8::10".parse().unwrap(),
        ];
        let routes = macos_routes(&plan(&["0.0.0.0/0", "::/0"], &[]), &utun(), &endpoints, gw);
        let text: Vec<String> = routes
            .iter()
            .map(|r| match &r.via {
                Via::Gateway(g) => format!("{} via {g}", r.dst),
                Via::Interface(l) => format!("{} dev {}", r.dst, l.name),
            })
            .collect();
        assert_eq!(
            text,
            [
                "192.0.2.10/32 via 198.51.100.1",
                "0.0.0.0/1 dev utun4",
                "128.0.0.0/1 dev utun4",
                "::/1 dev utun4",
                "8000::/1 dev utun4",
            ],
            "no v6 gateway: the v6 endpoint gets no host route"
        );
    }

    #[test]
    fn a_split_tunnel_routes_its_prefixes_and_sends_exclusions_to_the_gateway() {
        let gw = Gateways {
            v4: Some("198.51.100.1".parse().unwrap()),
            v6: None,
        };
        let ep = ["192.0.2.10".parse().unwrap(), "192.0.2.10".parse().unwrap()];
        let routes = macos_routes(
            &plan(&["198.18.0.0/15"], &["198.18.1.0/24"]),
            &utun(),
            &ep,
            gw,
        );
        assert_eq!(routes.len(), 3, "{routes:?}");
        assert_eq!(routes[1].dst, "198.18.1.0/24".parse::<IpNet>().unwrap());
        assert_eq!(routes[1].via, Via::Gateway("198.51.100.1".parse().unwrap()));
        assert_eq!(routes[2].via, Via::Interface(utun()));
    }

    #[test]
    fn only_default_route_and_link_changes_count_as_network_changes() {
        let moved = Message {
            kind: RTM_CHANGE,
            index: 4,
            dst: Some("0.0.0.0".parse().unwrap()),
            netmask: Some("0.0.0.0".parse().unwrap()),
            gateway: Some(Gateway::Ip("198.51.100.254".parse().unwrap())),
            ..Message::default()
        };
        assert!(is_network_change(&moved.encode(), 17));
        let ours = Message {
            index: 17,
            ..moved.clone()
        };
        assert!(!is_network_change(&ours.encode(), 17));
        let half = Route {
            dst: "0.0.0.0/1".parse().unwrap(),
            via: Via::Interface(utun()),
        };
        assert!(!is_network_change(&half.add(1).encode(), 17));
        let mut ifinfo = vec![0u8; 112];
        ifinfo[OFF_VERSION] = RTM_VERSION;
        ifinfo[OFF_TYPE] = RTM_IFINFO;
        assert!(is_network_change(&ifinfo, 17));
    }
}
