//! The doctor's packets, the same on Linux, macOS and Windows: UDP to a closed port, ICMP echoes with
//! DF set, a DNS query. What differs per OS (the socket mark, how DF is asked for) is in the OS
//! file (`net`).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::net;
use super::verdict::Outcome;

/// One integer socket option (`setsockopt` with a C int), for the OS files' DF settings.
#[cfg(unix)]
pub fn set_int_option(
    s: &Socket,
    level: libc::c_int,
    opt: libc::c_int,
    value: libc::c_int,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid fd, and a pointer to a live c_int of the given size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            opt,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
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
        net::set_mark(&s, m)?;
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
                // Windows reports "port unreachable" on a UDP socket as a reset.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
                    ) =>
                {
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
        net::dont_fragment(&s, target.is_ipv4())?;
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
    fn icmp_checksums_verify() {
        let mut p = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1, b'a', b'b', b'c'];
        let sum = checksum(&p);
        p[2..4].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(checksum(&p), 0);
    }
}
