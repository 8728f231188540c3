//! The self-tests' capture on macOS: one BPF device (`/dev/bpfN`) per interface, in immediate
//! mode with a 100 ms read timeout, seeing what the host sends (`BIOCSSEESENT`). BPF does not
//! say which way a frame went, so `frames.rs` keeps only this host's own (by source MAC, or by
//! source address without a link header). Written against XNU's `bpf.h`; it has never run (see
//! the README's "What is verified where").

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

use anyhow::{bail, Context, Result};
use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;

use crate::selftest::frames::{self, Link};

/// `_IOW('B', 119, u_int)`: also deliver what this host sends (XNU's default, set anyway).
const BIOCSSEESENT: libc::c_ulong = 0x8004_4277;
/// The kernel buffer a read drains: room for a burst of full-size frames.
const BUFFER: libc::c_uint = 1 << 20;

pub struct BpfDevice {
    file: File,
    link: Link,
    buf: Vec<u8>,
}

/// Interfaces that are up and running with an IP address, but not loopback and not in `skip`.
pub fn physical_interfaces(skip: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = getifaddrs()
        .map(|all| {
            all.filter(|a| {
                a.flags
                    .contains(InterfaceFlags::IFF_UP | InterfaceFlags::IFF_RUNNING)
                    && !a.flags.contains(InterfaceFlags::IFF_LOOPBACK)
                    && a.address.as_ref().is_some_and(|s| {
                        s.as_sockaddr_in().is_some() || s.as_sockaddr_in6().is_some()
                    })
            })
            .map(|a| a.interface_name)
            .filter(|n| !skip.contains(&n.as_str()))
            .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.dedup();
    names
}

/// The interface's MAC and addresses, as `frames::outgoing_ip` needs them.
fn link_of(interface: &str, dlt: u32) -> Result<Link> {
    let mut link = Link {
        dlt,
        mac: None,
        addresses: Vec::new(),
    };
    for a in getifaddrs()
        .context("listing the interfaces (getifaddrs)")?
        .filter(|a| a.interface_name == interface)
    {
        let Some(s) = a.address else { continue };
        if let Some(l) = s.as_link_addr() {
            link.mac = link.mac.or(l.addr());
        } else if let Some(v4) = s.as_sockaddr_in() {
            link.addresses.push(IpAddr::V4(v4.ip()));
        } else if let Some(v6) = s.as_sockaddr_in6() {
            link.addresses.push(IpAddr::V6(v6.ip()));
        }
    }
    Ok(link)
}

/// The first BPF device no other program holds.
fn free_device() -> Result<File> {
    for i in 0..256 {
        let path = format!("/dev/bpf{i}");
        match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => return Ok(f),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => continue,
            Err(e) => return Err(e).with_context(|| format!("opening {path} (needs root)")),
        }
    }
    bail!("every BPF device (/dev/bpf0..255) is in use")
}

/// One BPF ioctl whose argument is `value`, in or out.
fn ioctl<T>(file: &File, request: libc::c_ulong, value: &mut T, what: &str) -> Result<()> {
    // SAFETY: a valid BPF descriptor; `value` is a live, writable object of the type XNU's
    // bpf.h gives for `request`.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), request, value as *mut T) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("BPF: {what}"));
    }
    Ok(())
}

impl BpfDevice {
    /// A BPF device on `interface`. The tunnel's own UDP to the endpoints is left out in user
    /// space (by the capture loop), before it could count against the cap.
    pub fn bind(interface: &str, _endpoints: &[SocketAddr]) -> Result<BpfDevice> {
        let file = free_device()?;
        let mut len = BUFFER;
        ioctl(&file, libc::BIOCSBLEN, &mut len, "setting the buffer size")?;
        // SAFETY: an all-zero ifreq is valid; the name is set below.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        let name = interface.as_bytes();
        if name.len() >= ifr.ifr_name.len() {
            bail!("interface name {interface:?} is too long");
        }
        for (dst, src) in ifr.ifr_name.iter_mut().zip(name) {
            *dst = *src as libc::c_char;
        }
        ioctl(
            &file,
            libc::BIOCSETIF,
            &mut ifr,
            &format!("attaching to {interface}"),
        )?;
        let mut on: libc::c_uint = 1;
        ioctl(&file, libc::BIOCIMMEDIATE, &mut on, "immediate mode")?;
        let mut on: libc::c_uint = 1;
        ioctl(&file, BIOCSSEESENT, &mut on, "seeing what the host sends")?;
        let mut timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        ioctl(&file, libc::BIOCSRTIMEOUT, &mut timeout, "the read timeout")?;
        let mut dlt: libc::c_uint = 0;
        ioctl(&file, libc::BIOCGDLT, &mut dlt, "reading the link type")?;
        let mut len: libc::c_uint = 0;
        ioctl(&file, libc::BIOCGBLEN, &mut len, "reading the buffer size")?;
        Ok(BpfDevice {
            file,
            link: link_of(interface, dlt)?,
            buf: vec![0u8; len as usize],
        })
    }

    /// Hands `keep` each outgoing IP packet of the next read; nothing after the 100 ms timeout.
    pub fn recv_outgoing(&mut self, keep: &mut dyn FnMut(&[u8])) {
        let Ok(n) = self.file.read(&mut self.buf) else {
            return;
        };
        for frame in frames::records(&self.buf[..n]) {
            if let Some(packet) = frames::outgoing_ip(&self.link, frame) {
                keep(packet);
            }
        }
    }
}
