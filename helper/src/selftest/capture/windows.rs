//! The self-tests' capture on Windows: a raw socket per address of each adapter, switched to
//! `SIO_RCVALL`, which hands over every IP packet through that address, both ways. This host's
//! own are told apart by their source address (`frames.rs`). No driver (Npcap) is needed. It has
//! never run, not even under Wine (see the README).

use std::net::{IpAddr, SocketAddr};
use std::os::windows::io::AsRawSocket;
use std::time::Duration;

use anyhow::{Context, Result};
use socket2::{Domain, Protocol, Socket, Type};
use windows_sys::Win32::NetworkManagement::IpHelper::{
    ConvertInterfaceLuidToAlias, GetIfEntry2, IF_TYPE_SOFTWARE_LOOPBACK, MIB_IF_ROW2,
};
use windows_sys::Win32::NetworkManagement::Ndis::{IfOperStatusUp, NET_LUID_LH};
use windows_sys::Win32::Networking::WinSock::{WSAIoctl, RCVALL_ON, SIO_RCVALL, SOCKET};

use crate::firewall::interface_luid;
use crate::selftest::frames::{self, Link, DLT_RAW};
use crate::winutil::unicast_addresses;

pub struct RcvAll {
    sockets: Vec<Socket>,
    link: Link,
    buf: Vec<u8>,
}

fn alias(luid: u64) -> Option<String> {
    let mut name = [0u16; 257];
    // SAFETY: a valid LUID and a buffer of the given length.
    let rc = unsafe {
        ConvertInterfaceLuidToAlias(&NET_LUID_LH { Value: luid }, name.as_mut_ptr(), name.len())
    };
    let end = name.iter().position(|c| *c == 0).unwrap_or(name.len());
    (rc == 0).then(|| String::from_utf16_lossy(&name[..end]))
}

fn is_physical_and_up(luid: u64) -> bool {
    let mut row = MIB_IF_ROW2 {
        InterfaceLuid: NET_LUID_LH { Value: luid },
        ..Default::default()
    };
    // SAFETY: a row with its LUID set, as GetIfEntry2 takes.
    (unsafe { GetIfEntry2(&mut row) } == 0)
        && row.Type != IF_TYPE_SOFTWARE_LOOPBACK
        && row.OperStatus == IfOperStatusUp
}

/// Adapters that are up with an IP address, but not loopback and not in `skip`.
pub fn physical_interfaces(skip: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = unicast_addresses()
        .into_iter()
        .filter(|a| is_physical_and_up(a.luid))
        .filter_map(|a| alias(a.luid))
        .filter(|n| !skip.contains(&n.as_str()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// A raw socket on `address` that receives every packet through it.
fn receive_all(address: IpAddr) -> Result<Socket> {
    let domain = if address.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::RAW, Some(Protocol::from(0)))
        .context("opening a raw socket (needs an administrator)")?;
    s.bind(&SocketAddr::new(address, 0).into())
        .with_context(|| format!("binding the capture to {address}"))?;
    s.set_read_timeout(Some(Duration::from_millis(50)))?;
    let on: u32 = RCVALL_ON as u32;
    let mut returned = 0u32;
    // SAFETY: a valid socket; the in buffer is a live DWORD; no out buffer or overlap.
    let rc = unsafe {
        WSAIoctl(
            s.as_raw_socket() as SOCKET,
            SIO_RCVALL,
            (&on as *const u32).cast(),
            std::mem::size_of::<u32>() as u32,
            std::ptr::null_mut(),
            0,
            &mut returned,
            std::ptr::null_mut(),
            None,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("receiving every packet through {address} (SIO_RCVALL)"));
    }
    Ok(s)
}

impl RcvAll {
    /// The capture on `interface`: a socket per address. The tunnel's own UDP to the endpoints
    /// is left out in user space (by the capture loop), before it could count against the cap.
    pub fn bind(interface: &str, _endpoints: &[SocketAddr]) -> Result<RcvAll> {
        let luid = interface_luid(interface)?;
        let addresses: Vec<IpAddr> = unicast_addresses()
            .into_iter()
            .filter(|a| a.luid == luid)
            .map(|a| a.address)
            .collect();
        let sockets = addresses
            .iter()
            .map(|a| receive_all(*a))
            .collect::<Result<Vec<_>>>()?;
        Ok(RcvAll {
            sockets,
            link: Link {
                dlt: DLT_RAW,
                mac: None,
                addresses,
            },
            buf: vec![0u8; 65536],
        })
    }

    /// Hands `keep` each outgoing packet that arrives within the sockets' timeouts.
    pub fn recv_outgoing(&mut self, keep: &mut dyn FnMut(&[u8])) {
        if self.sockets.is_empty() {
            std::thread::sleep(Duration::from_millis(100));
        }
        for s in &self.sockets {
            // SAFETY: `buf` is plain bytes; recv writes at most its length and says how much.
            let uninit = unsafe {
                std::slice::from_raw_parts_mut(
                    self.buf.as_mut_ptr().cast::<std::mem::MaybeUninit<u8>>(),
                    self.buf.len(),
                )
            };
            if let Ok(n) = s.recv(uninit) {
                if let Some(packet) = frames::outgoing_ip(&self.link, &self.buf[..n]) {
                    keep(packet);
                }
            }
        }
    }
}
