//! The doctor's probes on macOS: the tunnel interface from `getifaddrs` (flags, addresses with
//! the point-to-point peer, the link's `if_data`), the kill switch as `pfctl` lists it, and what
//! the packets of `probes.rs` need here (DF by `IP_DONTFRAG`; no mark, since PF knows the
//! helper by its uid). Written against XNU's headers; it has never run (see the README).

use std::ffi::CStr;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use anyhow::{Context, Result};
use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;
use socket2::{Domain, Socket, Type};

use super::verdict::{InterfaceAddress, InterfaceFacts};

pub use super::pf_text::split_ruleset;
pub use super::probes::{dns_query, echo, udp_probe};

/// How the evidence names the kill switch's rules.
pub const OURS: &str = "PF anchor underpass";

/// `_IOW('i', 52, struct ifreq)`.
const SIOCSIFMTU: libc::c_ulong = 0x8020_6934;
/// `IPV6_DONTFRAG` of netinet6/in6.h.
const IPV6_DONTFRAG: libc::c_int = 62;

/// The head of XNU's `struct if_data` (net/if_var.h) that `getifaddrs` hands over with an
/// AF_LINK entry; only these leading fields are read.
#[repr(C)]
struct IfDataHead {
    kind: [u8; 8],
    mtu: u32,
    metric: u32,
    baudrate: u32,
    ipackets: u32,
    ierrors: u32,
    opackets: u32,
}

/// The link's MTU and its packets in and out, from the AF_LINK entry of `getifaddrs`.
fn link_data(name: &str) -> Option<(u32, u32, u32)> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: a valid out pointer; the list is freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return None;
    }
    let mut found = None;
    let mut p = head;
    while !p.is_null() {
        // SAFETY: `p` walks the list getifaddrs returned, which stays valid until freed.
        let a = unsafe { &*p };
        // SAFETY: a non-null ifa_addr points at a sockaddr, ifa_name at a C string, and an
        // AF_LINK entry's ifa_data at its struct if_data.
        unsafe {
            if !a.ifa_addr.is_null()
                && i32::from((*a.ifa_addr).sa_family) == libc::AF_LINK
                && !a.ifa_data.is_null()
                && CStr::from_ptr(a.ifa_name).to_bytes() == name.as_bytes()
            {
                let d = &*(a.ifa_data as *const IfDataHead);
                found = Some((d.mtu, d.ipackets, d.opackets));
            }
        }
        p = a.ifa_next;
    }
    // SAFETY: the list from getifaddrs, freed once.
    unsafe { libc::freeifaddrs(head) };
    found
}

/// The tunnel interface as the kernel has it now.
pub async fn interface(name: &str) -> InterfaceFacts {
    let mut facts = InterfaceFacts::absent(name);
    let Ok(all) = getifaddrs() else {
        return facts;
    };
    for a in all.filter(|a| a.interface_name == name) {
        facts.exists = true;
        facts.up = a.flags.contains(InterfaceFlags::IFF_UP);
        facts.lower_up = a.flags.contains(InterfaceFlags::IFF_RUNNING);
        let ip = |s: &nix::sys::socket::SockaddrStorage| -> Option<IpAddr> {
            s.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        };
        let Some(local) = a.address.as_ref().and_then(ip) else {
            continue;
        };
        let prefix_len = a.netmask.as_ref().and_then(ip).map_or(0, |m| match m {
            IpAddr::V4(m) => u32::from(m).count_ones() as u8,
            IpAddr::V6(m) => u128::from(m).count_ones() as u8,
        });
        let peer = a
            .flags
            .contains(InterfaceFlags::IFF_POINTOPOINT)
            .then(|| a.destination.as_ref().and_then(ip))
            .flatten()
            .filter(|p| *p != local);
        facts.addresses.push(InterfaceAddress {
            local,
            peer,
            prefix_len,
        });
    }
    if facts.exists {
        facts.mtu = link_data(name).and_then(|(mtu, _, _)| u16::try_from(mtu).ok());
    }
    facts
}

/// Sets the interface's MTU (`SIOCSIFMTU`).
pub async fn set_mtu(name: &str, mtu: u16) -> Result<()> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, None).context("opening a socket")?;
    // SAFETY: an all-zero ifreq is valid; name and MTU are set below.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    anyhow::ensure!(
        bytes.len() < ifr.ifr_name.len(),
        "interface name {name:?} is too long"
    );
    for (dst, src) in ifr.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_mtu = libc::c_int::from(mtu);
    // SAFETY: a valid socket and a live ifreq, as SIOCSIFMTU takes.
    if unsafe { libc::ioctl(s.as_raw_fd(), SIOCSIFMTU, &mut ifr) } < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("setting the MTU of {name} to {mtu}"));
    }
    Ok(())
}

/// Packets the interface sent (what the helper read: `tx`) and received (`rx`).
pub fn tunnel_counters(interface: &str) -> Option<(u64, u64)> {
    link_data(interface).map(|(_, rx, tx)| (u64::from(tx), u64::from(rx)))
}

/// Our anchor's rules and PF's main ruleset, with counters, as `pfctl -v` lists them, in the
/// sections `split_ruleset` reads.
pub async fn ruleset() -> Result<String> {
    let mut text = String::new();
    for (section, args) in [
        ("anchor", &["-a", "underpass", "-v", "-s", "rules"][..]),
        ("main", &["-v", "-s", "rules"][..]),
    ] {
        let out = tokio::process::Command::new("/sbin/pfctl")
            .args(args)
            .output()
            .await
            .context("running pfctl")?;
        if !out.status.success() && section == "main" {
            anyhow::bail!(
                "pfctl -s rules: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        text.push_str(&format!(
            "## {section}\n{}",
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    Ok(text)
}

/// The helper needs no mark on macOS: PF admits its packets by the helper's uid.
pub fn set_mark(_s: &Socket, _mark: u32) -> std::io::Result<()> {
    Ok(())
}

/// DF on every packet (`IP_DONTFRAG` / `IPV6_DONTFRAG`): a size above the path MTU is refused
/// or lost, never fragmented.
pub fn dont_fragment(s: &Socket, v4: bool) -> std::io::Result<()> {
    let (level, opt) = if v4 {
        (libc::IPPROTO_IP, libc::IP_DONTFRAG)
    } else {
        (libc::IPPROTO_IPV6, IPV6_DONTFRAG)
    };
    let on: libc::c_int = 1;
    super::probes::set_int_option(s, level, opt, on)
}
