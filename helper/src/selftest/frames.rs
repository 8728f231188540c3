//! What the macOS and Windows captures hand over, taken apart without I/O so that it is tested
//! on every OS: the records of one BPF `read(2)` (each a `struct bpf_hdr` and a captured frame,
//! word aligned), and the IP packet inside a frame of the interface's link type, only when this
//! host sent it. BPF devices and `SIO_RCVALL` sockets see both directions and do not say which:
//! an Ethernet frame is ours when its source MAC is the interface's, and a packet without a
//! link header (utun, PPP, Windows' raw sockets) when its source address is one of the
//! interface's addresses.

use std::net::IpAddr;

/// `DLT_NULL`: a 4-byte address family in host order, then the packet (loopback, utun).
pub const DLT_NULL: u32 = 0;
/// `DLT_EN10MB`: Ethernet, and Wi-Fi as macOS presents it.
pub const DLT_EN10MB: u32 = 1;
/// `DLT_RAW`: the packet alone.
pub const DLT_RAW: u32 = 12;

/// BPF_WORDALIGN on Darwin: records start on 4-byte boundaries.
#[cfg(any(test, target_os = "macos"))]
const ALIGN: usize = 4;
/// Where `bh_caplen` and `bh_hdrlen` sit in a `struct bpf_hdr` (after a 32-bit timeval).
#[cfg(any(test, target_os = "macos"))]
const CAPLEN_AT: usize = 8;
#[cfg(any(test, target_os = "macos"))]
const HDRLEN_AT: usize = 16;

/// The captured frames of one BPF read, in order. A truncated or malformed record ends the
/// walk.
#[cfg(any(test, target_os = "macos"))]
pub fn records(buf: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(record) = buf.get(at..) {
        let (Some(caplen), Some(hdrlen)) = (
            record.get(CAPLEN_AT..CAPLEN_AT + 4),
            record.get(HDRLEN_AT..HDRLEN_AT + 2),
        ) else {
            break;
        };
        let caplen = u32::from_ne_bytes(caplen.try_into().expect("4 bytes")) as usize;
        let hdrlen = usize::from(u16::from_ne_bytes(hdrlen.try_into().expect("2 bytes")));
        if hdrlen < HDRLEN_AT + 2 {
            break;
        }
        let Some(frame) = record.get(hdrlen..hdrlen + caplen) else {
            break;
        };
        out.push(frame);
        at += (hdrlen + caplen).div_ceil(ALIGN) * ALIGN;
    }
    out
}

/// The interface a capture runs on, as far as telling our own frames apart needs.
pub struct Link {
    pub dlt: u32,
    pub mac: Option<[u8; 6]>,
    pub addresses: Vec<IpAddr>,
}

/// The IP packet of `frame` if this host sent it, else None (incoming, ARP, other families).
pub fn outgoing_ip<'a>(link: &Link, frame: &'a [u8]) -> Option<&'a [u8]> {
    let packet = match link.dlt {
        DLT_EN10MB => {
            let src: [u8; 6] = frame.get(6..12)?.try_into().ok()?;
            if Some(src) != link.mac {
                return None;
            }
            match frame.get(12..14)? {
                [0x08, 0x00] | [0x86, 0xdd] => frame.get(14..)?,
                _ => return None,
            }
        }
        DLT_NULL => frame.get(4..)?,
        DLT_RAW => frame,
        _ => return None,
    };
    if link.dlt != DLT_EN10MB {
        let source = source_address(packet)?;
        if !link.addresses.contains(&source) {
            return None;
        }
    }
    matches!(packet.first()? >> 4, 4 | 6).then_some(packet)
}

fn source_address(packet: &[u8]) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 => {
            let b: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
            Some(IpAddr::from(b))
        }
        6 => {
            let b: [u8; 16] = packet.get(8..24)?.try_into().ok()?;
            Some(IpAddr::from(b))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(frame: &[u8]) -> Vec<u8> {
        let mut r = vec![0u8; 18];
        r[CAPLEN_AT..CAPLEN_AT + 4].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        r[12..16].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        r[HDRLEN_AT..HDRLEN_AT + 2].copy_from_slice(&18u16.to_ne_bytes());
        r.extend_from_slice(frame);
        while !r.len().is_multiple_of(ALIGN) {
            r.push(0xee);
        }
        r
    }

    fn ipv4(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&[0; 8]);
        p
    }

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

    fn ether(src: [u8; 6], ethertype: [u8; 2], payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&src);
        f.extend_from_slice(&ethertype);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn a_read_splits_into_its_word_aligned_records_and_stops_at_a_truncated_one() {
        let (a, b) = (vec![1u8; 5], vec![2u8; 7]);
        let mut buf = record(&a);
        buf.extend(record(&b));
        assert_eq!(records(&buf), vec![&a[..], &b[..]]);
        buf.extend(&record(&[3u8; 9])[..20]);
        assert_eq!(records(&buf).len(), 2, "the cut record is not returned");
        assert!(records(&[]).is_empty());
        let mut bad = record(&a);
        bad[HDRLEN_AT..HDRLEN_AT + 2].copy_from_slice(&0u16.to_ne_bytes());
        assert!(records(&bad).is_empty(), "a header length of 0 would loop");
    }

    #[test]
    fn an_ethernet_frame_is_ours_only_with_our_source_mac_and_an_ip_ethertype() {
        let link = Link {
            dlt: DLT_EN10MB,
            mac: Some(MAC),
            addresses: vec![],
        };
        let ip = ipv4([192, 0, 2, 2], [198, 51, 100, 1]);
        let ours = ether(MAC, [0x08, 0x00], &ip);
        assert_eq!(outgoing_ip(&link, &ours), Some(&ip[..]));
        let theirs = ether([2, 0, 0, 0, 0, 9], [0x08, 0x00], &ip);
        assert_eq!(outgoing_ip(&link, &theirs), None, "an incoming frame");
        let arp = ether(MAC, [0x08, 0x06], &[0; 28]);
        assert_eq!(outgoing_ip(&link, &arp), None);
        assert_eq!(outgoing_ip(&link, &ours[..10]), None);
    }

    #[test]
    fn without_a_link_header_the_source_address_tells_our_packets() {
        let link = Link {
            dlt: DLT_NULL,
            mac: None,
            addresses: vec!["192.0.2.2".parse().unwrap()],
        };
        let mut ours = 2u32.to_ne_bytes().to_vec();
        ours.extend(ipv4([192, 0, 2, 2], [198, 51, 100, 1]));
        assert!(outgoing_ip(&link, &ours).is_some());
        let mut theirs = 2u32.to_ne_bytes().to_vec();
        theirs.extend(ipv4([198, 51, 100, 1], [192, 0, 2, 2]));
        assert_eq!(outgoing_ip(&link, &theirs), None);
        let raw = Link {
            dlt: DLT_RAW,
            ..link
        };
        let ip = ipv4([192, 0, 2, 2], [198, 51, 100, 1]);
        assert_eq!(outgoing_ip(&raw, &ip), Some(&ip[..]));
        let other = Link {
            dlt: 105, // 802.11 with radio headers: not a link type we take apart
            mac: None,
            addresses: vec![],
        };
        assert_eq!(outgoing_ip(&other, &ip), None);
    }
}
