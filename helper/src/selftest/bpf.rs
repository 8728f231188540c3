//! The kernel-side filter of the self-tests' packet sockets (classic BPF, `SO_ATTACH_FILTER`):
//! only outgoing packets pass, and never the tunnel's own encrypted UDP to its endpoints, so a
//! busy tunnel can neither fill the capture's cap (a false PASS) nor cost a copy per packet.
//!
//! The program works on what a `SOCK_DGRAM` packet socket sees: the IP header at offset 0.

use std::net::{IpAddr, SocketAddr};

use libc::{
    sock_filter, BPF_ABS, BPF_ALU, BPF_B, BPF_H, BPF_IND, BPF_JA, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD,
    BPF_LDX, BPF_MSH, BPF_RET, BPF_RSH, BPF_W, SKF_AD_OFF, SKF_AD_PKTTYPE,
};

const PACKET_OUTGOING: u32 = 4;
const UDP: u32 = 17;
/// Jump offsets are 8 bits: this many endpoints always fit (each costs at most 10 steps).
pub const MAX_ENDPOINTS: usize = 16;

#[derive(Clone, Copy)]
enum To {
    Fall,
    Skip(u8),
    V6,
    Accept,
    Drop,
}

struct Step {
    code: u32,
    k: u32,
    jt: To,
    jf: To,
}

fn stmt(code: u32, k: u32) -> Step {
    Step {
        code,
        k,
        jt: To::Fall,
        jf: To::Fall,
    }
}

fn jeq(k: u32, jt: To, jf: To) -> Step {
    Step {
        code: BPF_JMP | BPF_JEQ | BPF_K,
        k,
        jt,
        jf,
    }
}

/// The program, or None when there are too many endpoints to encode (the capture then keeps
/// filtering in user space only).
pub fn program(endpoints: &[SocketAddr]) -> Option<Vec<sock_filter>> {
    if endpoints.len() > MAX_ENDPOINTS {
        return None;
    }
    let load = |size: u32, at: u32| stmt(BPF_LD | size | BPF_ABS, at);
    let mut steps = vec![
        load(BPF_W, (SKF_AD_OFF + SKF_AD_PKTTYPE) as u32),
        jeq(PACKET_OUTGOING, To::Fall, To::Drop),
        load(BPF_B, 0),
        stmt(BPF_ALU | BPF_RSH | BPF_K, 4),
        jeq(4, To::Fall, To::V6),
        load(BPF_B, 9),
        jeq(UDP, To::Fall, To::Accept),
        stmt(BPF_LDX | BPF_B | BPF_MSH, 0),
    ];
    let canonical = |e: &SocketAddr| (e.ip().to_canonical(), u32::from(e.port()));
    for (ip, port) in endpoints.iter().map(canonical) {
        if let IpAddr::V4(v4) = ip {
            steps.push(load(BPF_W, 16));
            steps.push(jeq(u32::from(v4), To::Fall, To::Skip(2)));
            steps.push(stmt(BPF_LD | BPF_H | BPF_IND, 2));
            steps.push(jeq(port, To::Drop, To::Fall));
        }
    }
    steps.push(stmt(BPF_JMP | BPF_JA, 0));
    let ja_accept = steps.len() - 1;
    let v6 = steps.len();
    steps.push(jeq(6, To::Fall, To::Accept));
    steps.push(load(BPF_B, 6));
    steps.push(jeq(UDP, To::Fall, To::Accept));
    for (ip, port) in endpoints.iter().map(canonical) {
        if let IpAddr::V6(v6) = ip {
            let octets = v6.octets();
            for (i, word) in octets.chunks(4).enumerate() {
                let word = u32::from_be_bytes(word.try_into().expect("4 bytes"));
                steps.push(load(BPF_W, 24 + 4 * i as u32));
                steps.push(jeq(word, To::Fall, To::Skip(8 - 2 * i as u8)));
            }
            steps.push(load(BPF_H, 42));
            steps.push(jeq(port, To::Drop, To::Fall));
        }
    }
    let accept = steps.len();
    steps.push(stmt(BPF_RET | BPF_K, 0x40000));
    let drop = steps.len();
    steps.push(stmt(BPF_RET | BPF_K, 0));
    steps[ja_accept].k = (accept - ja_accept - 1) as u32;
    let offset = |i: usize, to: To| -> u8 {
        let target = match to {
            To::Fall => return 0,
            To::Skip(n) => return n,
            To::V6 => v6,
            To::Accept => accept,
            To::Drop => drop,
        };
        (target - i - 1) as u8
    };
    Some(
        steps
            .iter()
            .enumerate()
            .map(|(i, s)| sock_filter {
                code: s.code as u16,
                jt: offset(i, s.jt),
                jf: offset(i, s.jf),
                k: s.k,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    /// Runs `prog` the way the kernel does, for the instructions it uses.
    fn run(prog: &[sock_filter], packet: &[u8], pkttype: u32) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let byte = |at: usize| u32::from(packet[at]);
        loop {
            let f = prog[pc];
            let code = u32::from(f.code);
            pc += 1;
            match code {
                c if c == BPF_LD | BPF_W | BPF_ABS => {
                    a = if f.k == (SKF_AD_OFF + SKF_AD_PKTTYPE) as u32 {
                        pkttype
                    } else {
                        let k = f.k as usize;
                        u32::from_be_bytes(packet[k..k + 4].try_into().unwrap())
                    }
                }
                c if c == BPF_LD | BPF_H | BPF_ABS => {
                    a = byte(f.k as usize) << 8 | byte(f.k as usize + 1)
                }
                c if c == BPF_LD | BPF_B | BPF_ABS => a = byte(f.k as usize),
                c if c == BPF_LD | BPF_H | BPF_IND => {
                    let k = x as usize + f.k as usize;
                    a = byte(k) << 8 | byte(k + 1)
                }
                c if c == BPF_LDX | BPF_B | BPF_MSH => x = 4 * (byte(f.k as usize) & 0xf),
                c if c == BPF_ALU | BPF_RSH | BPF_K => a >>= f.k,
                c if c == BPF_JMP | BPF_JA => pc += f.k as usize,
                c if c == BPF_JMP | BPF_JEQ | BPF_K => {
                    pc += usize::from(if a == f.k { f.jt } else { f.jf })
                }
                c if c == BPF_RET | BPF_K => return f.k,
                other => panic!("unexpected instruction {other:#x}"),
            }
        }
    }

    fn udp4(dst: [u8; 4], port: u16) -> Vec<u8> {
        let b = PacketBuilder::ipv4([198, 51, 100, 2], dst, 64).udp(40000, port);
        let mut out = Vec::new();
        b.write(&mut out, &[0; 32]).unwrap();
        out
    }

    fn udp6(dst: [u8; 16], port: u16) -> Vec<u8> {
        let b = PacketBuilder::ipv6(
            [0x20, 1, 0xd, 0xb8, 0, 0xc, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            dst,
            64,
        )
        .udp(40000, port);
        let mut out = Vec::new();
        b.write(&mut out, &[0; 32]).unwrap();
        out
    }

    #[test]
    fn the_tunnels_own_udp_and_incoming_packets_are_dropped_in_the_kernel_and_the_rest_kept() {
        let v6: std::net::Ipv6Addr = "2001:db8:1::2".parse().unwrap();
        let endpoints: Vec<SocketAddr> = vec![
            "192.0.2.10:51820".parse().unwrap(),
            "[2001:db8:1::2]:51820".parse().unwrap(),
            "[::ffff:203.0.113.5]:4500".parse().unwrap(),
        ];
        let prog = program(&endpoints).unwrap();
        let out = |p: &[u8]| run(&prog, p, PACKET_OUTGOING) > 0;
        assert!(!out(&udp4([192, 0, 2, 10], 51820)), "tunnel UDP, v4");
        assert!(!out(&udp6(v6.octets(), 51820)), "tunnel UDP, v6");
        assert!(!out(&udp4([203, 0, 113, 5], 4500)), "a v4-mapped endpoint");
        assert!(
            out(&udp4([192, 0, 2, 10], 53)),
            "another port on the endpoint"
        );
        assert!(out(&udp4([192, 0, 2, 11], 51820)), "another host");
        assert!(out(&udp6(
            "2001:db8:1::3"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
            51820
        )));
        let tcp = {
            let b =
                PacketBuilder::ipv4([198, 51, 100, 2], [192, 0, 2, 10], 64).tcp(1, 51820, 0, 100);
            let mut v = Vec::new();
            b.write(&mut v, &[]).unwrap();
            v
        };
        assert!(out(&tcp), "TCP to the endpoint is no tunnel traffic");
        assert_eq!(
            run(&prog, &udp4([198, 18, 1, 2], 9), 0),
            0,
            "incoming: dropped"
        );
        assert!(program(&vec![endpoints[0]; MAX_ENDPOINTS + 1]).is_none());
        let full = program(&vec![endpoints[1]; MAX_ENDPOINTS]).unwrap();
        assert!(run(&full, &udp4([192, 0, 2, 10], 51820), PACKET_OUTGOING) > 0);
        assert_eq!(run(&full, &udp6(v6.octets(), 51820), PACKET_OUTGOING), 0);
    }
}
