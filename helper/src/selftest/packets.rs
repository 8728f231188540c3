//! Reading captured packets: which are DNS, which may legitimately leave a sealed host.
//! Pure functions over IP packets, so the rules are unit-tested without capturing anything.

use std::net::{IpAddr, SocketAddr};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use underpass_proto::LeakedPacket;

const DNS_PORTS: [u16; 2] = [53, 853];

/// The parts of an IP packet the self-tests look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub protocol: &'static str,
    pub source: IpAddr,
    pub destination: IpAddr,
    pub source_port: Option<u16>,
    pub destination_port: Option<u16>,
    pub icmp_type: Option<u8>,
    pub payload: Vec<u8>,
}

pub fn summarize(packet: &[u8]) -> Option<Summary> {
    let sliced = SlicedPacket::from_ip(packet).ok()?;
    let (source, destination): (IpAddr, IpAddr) = match &sliced.net {
        Some(NetSlice::Ipv4(ip)) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        Some(NetSlice::Ipv6(ip)) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        _ => return None,
    };
    let mut s = Summary {
        protocol: "ip",
        source,
        destination,
        source_port: None,
        destination_port: None,
        icmp_type: None,
        payload: Vec::new(),
    };
    match &sliced.transport {
        Some(TransportSlice::Udp(u)) => {
            s.protocol = "udp";
            s.source_port = Some(u.source_port());
            s.destination_port = Some(u.destination_port());
            s.payload = u.payload().to_vec();
        }
        Some(TransportSlice::Tcp(t)) => {
            s.protocol = "tcp";
            s.source_port = Some(t.source_port());
            s.destination_port = Some(t.destination_port());
            s.payload = t.payload().to_vec();
        }
        Some(TransportSlice::Icmpv4(i)) => {
            s.protocol = "icmp";
            s.icmp_type = Some(i.type_u8());
        }
        Some(TransportSlice::Icmpv6(i)) => {
            s.protocol = "icmpv6";
            s.icmp_type = Some(i.type_u8());
        }
        None => {}
    }
    Some(s)
}

fn leaked(interface: &str, s: &Summary, detail: Option<String>) -> LeakedPacket {
    let with_port = |ip: IpAddr, port: Option<u16>| match port {
        Some(p) => SocketAddr::new(ip, p).to_string(),
        None => ip.to_string(),
    };
    LeakedPacket {
        interface: interface.to_string(),
        protocol: s.protocol.to_string(),
        source: with_port(s.source, s.source_port),
        destination: with_port(s.destination, s.destination_port),
        detail,
    }
}

/// A DNS query (UDP or TCP to port 53, or DNS over TLS to 853), with the name when readable.
pub fn dns_leak(interface: &str, packet: &[u8]) -> Option<LeakedPacket> {
    let s = summarize(packet)?;
    let port = s.destination_port?;
    if !DNS_PORTS.contains(&port) || !matches!(s.protocol, "udp" | "tcp") {
        return None;
    }
    // DNS over TCP carries a two-byte length first; an empty segment (a SYN) has no name.
    let message = match s.protocol {
        "tcp" if s.payload.len() > 2 => &s.payload[2..],
        _ => &s.payload[..],
    };
    let name = hickory_proto::op::Message::from_vec(message)
        .ok()
        .and_then(|m| m.queries.first().map(|q| q.name().to_string()));
    Some(leaked(interface, &s, name))
}

/// Anything a sealed host sent that it should not have: all but encrypted UDP to an
/// endpoint, DHCP, and IPv6's neighbour discovery and link-local multicast housekeeping.
/// The tunnel's own traffic: UDP to one of its endpoints.
pub fn to_endpoint(s: &Summary, endpoints: &[SocketAddr]) -> bool {
    s.protocol == "udp"
        && endpoints
            .iter()
            .any(|e| e.ip().to_canonical() == s.destination && Some(e.port()) == s.destination_port)
}

pub fn escaped(interface: &str, packet: &[u8], endpoints: &[SocketAddr]) -> Option<LeakedPacket> {
    let s = summarize(packet)?;
    let to_endpoint = to_endpoint(&s, endpoints);
    let dhcp = s.protocol == "udp" && matches!(s.destination_port, Some(67 | 547));
    let ndp = s.protocol == "icmpv6" && matches!(s.icmp_type, Some(133..=137 | 143));
    let link_local_multicast = match s.destination {
        IpAddr::V6(d) => d.segments()[0] == 0xff02,
        IpAddr::V4(_) => false,
    };
    if to_endpoint || dhcp || ndp || link_local_multicast {
        return None;
    }
    Some(leaked(interface, &s, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let builder = PacketBuilder::ipv4(src, dst, 64).udp(sport, dport);
        let mut out = Vec::with_capacity(builder.size(payload.len()));
        builder.write(&mut out, payload).unwrap();
        out
    }

    fn dns_query(name: &str) -> Vec<u8> {
        use hickory_proto::op::{Message, Query};
        use hickory_proto::rr::{Name, RecordType};
        let mut m = Message::query();
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        m.to_vec().unwrap()
    }

    #[test]
    fn a_dns_query_is_reported_with_its_name_and_server() {
        let p = udp(
            [198, 51, 100, 2],
            [198, 51, 100, 1],
            40000,
            53,
            &dns_query("abc.example.test."),
        );
        let leak = dns_leak("eth0", &p).unwrap();
        assert_eq!(leak.destination, "198.51.100.1:53");
        assert_eq!(leak.detail.as_deref(), Some("abc.example.test."));
        assert_eq!(leak.interface, "eth0");
    }

    #[test]
    fn other_udp_is_not_dns() {
        let p = udp([198, 51, 100, 2], [192, 0, 2, 10], 40000, 51820, b"x");
        assert_eq!(dns_leak("eth0", &p), None);
    }

    #[test]
    fn encrypted_udp_to_the_endpoint_may_leave_and_nothing_else() {
        let endpoint: SocketAddr = "192.0.2.10:51820".parse().unwrap();
        let ok = udp([198, 51, 100, 2], [192, 0, 2, 10], 40000, 51820, b"wg");
        assert_eq!(escaped("eth0", &ok, &[endpoint]), None);
        let wrong_port = udp([198, 51, 100, 2], [192, 0, 2, 10], 40000, 443, b"x");
        assert!(escaped("eth0", &wrong_port, &[endpoint]).is_some());
        let probe = udp([198, 51, 100, 2], [192, 0, 2, 1], 40000, 33434, b"probe");
        let leak = escaped("eth0", &probe, &[endpoint]).unwrap();
        assert_eq!(leak.destination, "192.0.2.1:33434");
    }

    #[test]
    fn dhcp_may_leave_a_sealed_host() {
        let p = udp([0, 0, 0, 0], [255, 255, 255, 255], 68, 67, b"dhcp");
        assert_eq!(escaped("eth0", &p, &[]), None);
    }

    #[test]
    fn garbage_is_not_a_packet() {
        assert_eq!(summarize(&[0x45, 0, 0]), None);
        assert_eq!(escaped("eth0", &[], &[]), None);
    }
}
