//! Probes that try to get past the tunnel: UDP, a TCP SYN and an ICMP echo, optionally bound
//! to one interface (SO_BINDTODEVICE; IP_BOUND_IF on macOS; IP_UNICAST_IF on Windows), the way a misbehaving app or a leaky OS path would send.
//! Whether they are refused locally does not decide anything; the capture does.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// The UDP port of the probes (traceroute's), and the TCP port of the SYN.
const UDP_PORT: u16 = 33434;
const TCP_PORT: u16 = 443;

/// Sends one UDP datagram, one TCP SYN and one ICMP echo to `target`, through `interface`
/// when given. Returns a line per probe saying what the local stack did with it.
pub fn fire(target: IpAddr, interface: Option<&str>) -> Vec<String> {
    let via = interface.map_or(String::from("routed normally"), |i| format!("bound to {i}"));
    let mut sent = Vec::new();
    let domain = if target.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let outcome = |r: std::io::Result<()>| match r {
        Ok(()) => "sent".to_string(),
        Err(e) => format!("refused locally: {e}"),
    };
    let udp = open(domain, Type::DGRAM, Protocol::UDP, interface).and_then(|s| {
        s.send_to(
            b"underpass kill-switch probe",
            &SocketAddr::new(target, UDP_PORT).into(),
        )
        .map(|_| ())
    });
    sent.push(format!(
        "UDP to {target}:{UDP_PORT} ({via}): {}",
        outcome(udp)
    ));
    let tcp = open(domain, Type::STREAM, Protocol::TCP, interface).and_then(|s| {
        s.set_nonblocking(true)?;
        match s.connect(&SocketAddr::new(target, TCP_PORT).into()) {
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
                // Give the SYN a moment on the wire before the socket is closed.
                std::thread::sleep(Duration::from_millis(50));
                Ok(())
            }
            other => other,
        }
    });
    sent.push(format!(
        "TCP SYN to {target}:{TCP_PORT} ({via}): {}",
        outcome(tcp)
    ));
    let (protocol, echo) = if target.is_ipv4() {
        (Protocol::ICMPV4, icmp_echo(8))
    } else {
        (Protocol::ICMPV6, icmp_echo(128))
    };
    let icmp = open(domain, Type::RAW, protocol, interface).and_then(|s| {
        s.send_to(&echo, &SocketAddr::new(target, 0).into())
            .map(|_| ())
    });
    sent.push(format!("ICMP echo to {target} ({via}): {}", outcome(icmp)));
    sent
}

fn open(
    domain: Domain,
    ty: Type,
    protocol: Protocol,
    interface: Option<&str>,
) -> std::io::Result<Socket> {
    let s = Socket::new(domain, ty, Some(protocol))?;
    if let Some(i) = interface {
        bind(&s, domain, i)?;
    }
    Ok(s)
}

#[cfg(target_os = "linux")]
fn bind(s: &Socket, _domain: Domain, interface: &str) -> std::io::Result<()> {
    s.bind_device(Some(interface.as_bytes()))
}

#[cfg(target_os = "macos")]
fn bind(s: &Socket, domain: Domain, interface: &str) -> std::io::Result<()> {
    let index = nix::net::if_::if_nametoindex(interface).map_err(std::io::Error::from)?;
    let index = std::num::NonZeroU32::new(index).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no interface {interface}"),
        )
    })?;
    if domain == Domain::IPV6 {
        s.bind_device_by_index_v6(Some(index))
    } else {
        s.bind_device_by_index_v4(Some(index))
    }
}

/// `IP_UNICAST_IF` / `IPV6_UNICAST_IF`: sends leave through the adapter's index (network
/// byte order for IPv4, host order for IPv6, as Winsock wants them).
#[cfg(windows)]
fn bind(s: &Socket, domain: Domain, interface: &str) -> std::io::Result<()> {
    use windows_sys::Win32::NetworkManagement::IpHelper::ConvertInterfaceLuidToIndex;
    use windows_sys::Win32::NetworkManagement::Ndis::NET_LUID_LH;
    use windows_sys::Win32::Networking::WinSock::{
        IPPROTO_IP, IPPROTO_IPV6, IPV6_UNICAST_IF, IP_UNICAST_IF,
    };
    let luid = crate::firewall::interface_luid(interface)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::NotFound, format!("{e:#}")))?;
    let mut index = 0u32;
    // SAFETY: a valid LUID and out pointer.
    let rc = unsafe { ConvertInterfaceLuidToIndex(&NET_LUID_LH { Value: luid }, &mut index) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc as i32));
    }
    let (level, opt, value) = if domain == Domain::IPV6 {
        (IPPROTO_IPV6, IPV6_UNICAST_IF, index)
    } else {
        (IPPROTO_IP, IP_UNICAST_IF, index.to_be())
    };
    crate::winutil::set_dword_option(s, level, opt, value)
}

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
fn bind(_s: &Socket, _domain: Domain, _interface: &str) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "binding to an interface is not supported on this OS yet",
    ))
}

/// An ICMP (type 8) or ICMPv6 (type 128) echo request. The kernel fills in the ICMPv6
/// checksum; the ICMPv4 one is computed here.
fn icmp_echo(kind: u8) -> Vec<u8> {
    let mut p = vec![kind, 0, 0, 0, 0x55, 0x50, 0, 1];
    p.extend_from_slice(b"underpass probe");
    if kind == 8 {
        let sum = checksum(&p);
        p[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    p
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icmp_echo_checksums_to_zero() {
        let p = icmp_echo(8);
        assert_eq!(checksum(&p), 0);
        assert_eq!(p[0], 8);
    }
}
