//! Capturing what the host sends on its physical interfaces: AF_PACKET sockets on Linux, BPF
//! devices on macOS (`capture/macos.rs`) and `SIO_RCVALL` raw sockets on Windows
//! (`capture/windows.rs`); the last two have never run (see the README).
//!
//! On Linux, `SOCK_DGRAM` packet sockets hand over the network-layer packet with the link
//! header already removed, and tell outgoing packets from incoming ones: exactly what a leak
//! check needs, for Ethernet and non-Ethernet links alike. One thread per interface, stopped by
//! a flag.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{bail, Result};

/// An outgoing IP packet seen on an interface.
pub struct Seen {
    pub interface: String,
    pub packet: Vec<u8>,
}

/// At most this many packets are kept per interface; a test needs far fewer.
const MAX_PACKETS: usize = 10_000;

/// The tunnel's own traffic, which is never kept.
fn to_endpoint(packet: &[u8], endpoints: &[SocketAddr]) -> bool {
    super::packets::summarize(packet).is_some_and(|s| super::packets::to_endpoint(&s, endpoints))
}

pub struct Capture {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<Seen>>>,
}

#[cfg(target_os = "linux")]
use linux::PacketSocket as Source;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
pub use macos::physical_interfaces;
#[cfg(target_os = "macos")]
use macos::BpfDevice as Source;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::physical_interfaces;
#[cfg(windows)]
use windows::RcvAll as Source;

/// Every interface but loopback and the ones named in `skip`.
#[cfg(not(any(target_os = "macos", windows)))]
pub fn physical_interfaces(skip: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "lo" && !skip.contains(&n.as_str()))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

impl Capture {
    /// Captures on `interfaces`, leaving out the tunnel's own encrypted UDP to `endpoints`
    /// before it is kept, so that a busy tunnel can never fill the cap (and hide a leak).
    #[cfg(any(target_os = "linux", target_os = "macos", windows))]
    pub fn start(interfaces: &[String], endpoints: &[SocketAddr]) -> Result<Capture> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for name in interfaces {
            let mut source = Source::bind(name, endpoints)?;
            let stop = stop.clone();
            let name = name.clone();
            let endpoints = endpoints.to_vec();
            threads.push(std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    source.recv_outgoing(&mut |packet: &[u8]| {
                        if seen.len() < MAX_PACKETS && !to_endpoint(packet, &endpoints) {
                            seen.push(Seen {
                                interface: name.clone(),
                                packet: packet.to_vec(),
                            });
                        }
                    });
                }
                seen
            }));
        }
        Ok(Capture { stop, threads })
    }

    #[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
    pub fn start(_interfaces: &[String], _endpoints: &[SocketAddr]) -> Result<Capture> {
        bail!("packet capture for the self-tests is not supported on this OS yet")
    }

    /// Stops capturing and returns everything seen, in no particular order.
    pub fn stop(self) -> Result<Vec<Seen>> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in self.threads {
            match t.join() {
                Ok(seen) => all.extend(seen),
                Err(_) => bail!("a capture thread panicked"),
            }
        }
        Ok(all)
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::net::SocketAddr;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use anyhow::{Context, Result};

    const ETH_P_ALL: u16 = 0x0003;
    const ETH_P_IP: u16 = 0x0800;
    const ETH_P_IPV6: u16 = 0x86DD;
    const PACKET_OUTGOING: u8 = 4;

    pub struct PacketSocket {
        fd: OwnedFd,
        buf: Vec<u8>,
    }

    impl PacketSocket {
        /// A packet socket on `interface` whose kernel filter passes only outgoing packets
        /// and none of the tunnel's own UDP to `endpoints` ([`super::super::bpf`]).
        pub fn bind(interface: &str, endpoints: &[SocketAddr]) -> Result<PacketSocket> {
            let c_name = std::ffi::CString::new(interface)
                .with_context(|| format!("interface name {interface:?}"))?;
            // SAFETY: a valid NUL-terminated string.
            let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
            if index == 0 {
                return Err(io::Error::last_os_error())
                    .with_context(|| format!("looking up interface {interface}"));
            }
            // SAFETY: plain socket(2) call; the result is checked before use.
            let raw = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                    (ETH_P_ALL.to_be()) as libc::c_int,
                )
            };
            if raw < 0 {
                return Err(io::Error::last_os_error())
                    .context("opening a packet socket (needs root)");
            }
            // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            if let Some(program) = super::super::bpf::program(endpoints) {
                let fprog = libc::sock_fprog {
                    len: program.len() as u16,
                    filter: program.as_ptr().cast_mut(),
                };
                // SAFETY: valid fd; `fprog` points at `program`, alive for the call (the
                // kernel copies it).
                let rc = unsafe {
                    libc::setsockopt(
                        fd.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_ATTACH_FILTER,
                        (&fprog as *const libc::sock_fprog).cast(),
                        std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
                    )
                };
                if rc < 0 {
                    return Err(io::Error::last_os_error())
                        .with_context(|| format!("filtering the capture on {interface} (BPF)"));
                }
            }
            // SAFETY: an all-zero sockaddr_ll is valid; the fields that matter are set below.
            let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_protocol = ETH_P_ALL.to_be();
            addr.sll_ifindex = index as i32;
            // SAFETY: `addr` is a live sockaddr_ll and the length matches it.
            let rc = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&addr as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if rc < 0 {
                return Err(io::Error::last_os_error())
                    .with_context(|| format!("capturing on {interface}"));
            }
            let timeout = libc::timeval {
                tv_sec: 0,
                tv_usec: 100_000,
            };
            // SAFETY: valid fd, option and a pointer to a live timeval of the given size.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&timeout as *const libc::timeval).cast(),
                    std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                );
            }
            Ok(PacketSocket {
                fd,
                buf: vec![0u8; 65536],
            })
        }

        /// Hands `keep` the next outgoing IPv4/IPv6 packet; nothing after the 100 ms timeout
        /// (or for anything else: incoming packets, ARP).
        pub fn recv_outgoing(&mut self, keep: &mut dyn FnMut(&[u8])) {
            if let Some(n) = self.recv() {
                keep(&self.buf[..n]);
            }
        }

        fn recv(&mut self) -> Option<usize> {
            let buf = &mut self.buf;
            // SAFETY: an all-zero sockaddr_ll is a valid out-parameter.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: `buf` and `from` are live, writable and as large as the lengths say.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            };
            let protocol = u16::from_be(from.sll_protocol);
            (n > 0
                && from.sll_pkttype == PACKET_OUTGOING
                && (protocol == ETH_P_IP || protocol == ETH_P_IPV6))
                .then_some(n as usize)
        }
    }
}
