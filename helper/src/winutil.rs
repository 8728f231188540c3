//! Small helpers every Windows backend needs: wide strings and Win32 status codes.

use std::net::IpAddr;

use anyhow::{bail, Result};
use windows_sys::Win32::Networking::WinSock::{AF_INET, AF_INET6, AF_UNSPEC, SOCKADDR_INET};

/// A NUL-terminated UTF-16 copy of `s`, as Win32 wants it.
pub fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// `Ok` for `ERROR_SUCCESS` (0), otherwise an error naming `what` and the code.
pub fn check(rc: u32, what: &str) -> Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        bail!("{what} failed: 0x{rc:08X}")
    }
}

/// An address as IP Helper wants it.
pub fn sockaddr(addr: IpAddr) -> SOCKADDR_INET {
    let mut s = SOCKADDR_INET::default();
    match addr {
        IpAddr::V4(a) => {
            s.Ipv4.sin_family = AF_INET;
            // The octets in network order, as they sit in memory.
            s.Ipv4.sin_addr.S_un.S_addr = u32::from_ne_bytes(a.octets());
        }
        IpAddr::V6(a) => {
            s.Ipv6.sin6_family = AF_INET6;
            s.Ipv6.sin6_addr.u.Byte = a.octets();
        }
    }
    s
}

/// The address in an IP Helper socket address, if it is IPv4 or IPv6.
pub fn ip_of(s: &SOCKADDR_INET) -> Option<IpAddr> {
    // SAFETY: the family says which member is valid; every member starts with it.
    unsafe {
        match s.si_family {
            AF_INET => Some(IpAddr::from(s.Ipv4.sin_addr.S_un.S_addr.to_ne_bytes())),
            AF_INET6 => Some(IpAddr::from(s.Ipv6.sin6_addr.u.Byte)),
            _ => None,
        }
    }
}

/// `{XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX}`, as the registry names interfaces.
pub fn guid_string(guid: u128) -> String {
    let h = format!("{guid:032X}");
    format!(
        "{{{}-{}-{}-{}-{}}}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// An export of a system DLL, looked up at run time (for calls older Windows lack).
pub fn proc_address(dll: &str, name: &str) -> Option<unsafe extern "system" fn() -> isize> {
    use windows_sys::Win32::System::LibraryLoader::{GetProcAddress, LoadLibraryW};
    let dll = wide(dll);
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: NUL-terminated names; system DLLs stay loaded for the process's life.
    unsafe {
        let module = LoadLibraryW(dll.as_ptr());
        if module.is_null() {
            return None;
        }
        GetProcAddress(module, name.as_ptr().cast())
    }
}

/// Whether this process runs under Wine, which exports some calls as stubs that abort.
pub fn under_wine() -> bool {
    proc_address("ntdll.dll", "wine_get_version").is_some()
}

/// One unicast address of an adapter, as IP Helper lists them.
pub struct UnicastAddress {
    pub luid: u64,
    pub address: IpAddr,
    pub prefix_len: u8,
}

/// Every unicast address of every adapter (`GetUnicastIpAddressTable`).
pub fn unicast_addresses() -> Vec<UnicastAddress> {
    use windows_sys::Win32::NetworkManagement::IpHelper::{
        FreeMibTable, GetUnicastIpAddressTable, MIB_UNICASTIPADDRESS_TABLE,
    };
    let mut table: *mut MIB_UNICASTIPADDRESS_TABLE = std::ptr::null_mut();
    // SAFETY: a valid out pointer; the table is freed below.
    if unsafe { GetUnicastIpAddressTable(AF_UNSPEC, &mut table) } != 0 {
        return Vec::new();
    }
    // SAFETY: NumEntries rows follow the header, valid until FreeMibTable.
    let rows = unsafe {
        std::slice::from_raw_parts((*table).Table.as_ptr(), (*table).NumEntries as usize)
    };
    let out = rows
        .iter()
        .filter_map(|r| {
            Some(UnicastAddress {
                // SAFETY: the union's only member is the 64-bit value.
                luid: unsafe { r.InterfaceLuid.Value },
                address: ip_of(&r.Address)?,
                prefix_len: r.OnLinkPrefixLength,
            })
        })
        .collect();
    // SAFETY: the table GetUnicastIpAddressTable allocated.
    unsafe { FreeMibTable(table.cast()) };
    out
}

/// The DNS servers of the adapters that are up, other than loopback and virtual ones (the
/// tunnel's Wintun adapter among them): the system's own resolvers, from before any tunnel.
pub fn physical_dns_servers() -> Vec<IpAddr> {
    use windows_sys::Win32::NetworkManagement::IpHelper::{
        GetAdaptersAddresses, GAA_FLAG_SKIP_ANYCAST, GAA_FLAG_SKIP_MULTICAST,
        GAA_FLAG_SKIP_UNICAST, IF_TYPE_PROP_VIRTUAL, IF_TYPE_SOFTWARE_LOOPBACK,
        IP_ADAPTER_ADDRESSES_LH,
    };
    use windows_sys::Win32::NetworkManagement::Ndis::IfOperStatusUp;
    use windows_sys::Win32::Networking::WinSock::{SOCKADDR_IN, SOCKADDR_IN6};
    let flags = GAA_FLAG_SKIP_UNICAST | GAA_FLAG_SKIP_ANYCAST | GAA_FLAG_SKIP_MULTICAST;
    let mut size: u32 = 16 * 1024;
    let mut buf: Vec<u64> = Vec::new();
    for _ in 0..3 {
        // u64 elements keep the buffer aligned for the structures Windows writes into it.
        buf = vec![0u64; (size as usize).div_ceil(8)];
        // SAFETY: a buffer of `size` bytes; Windows says how much it needs when that is short.
        let rc = unsafe {
            GetAdaptersAddresses(
                AF_UNSPEC as u32,
                flags,
                std::ptr::null(),
                buf.as_mut_ptr().cast(),
                &mut size,
            )
        };
        match rc {
            0 => break,
            // ERROR_BUFFER_OVERFLOW: `size` now holds what is needed.
            111 => continue,
            _ => return Vec::new(),
        }
    }
    let mut out = Vec::new();
    let mut adapter = buf.as_ptr().cast::<IP_ADAPTER_ADDRESSES_LH>();
    while !adapter.is_null() {
        // SAFETY: a list Windows built in `buf`, alive for this loop.
        let a = unsafe { &*adapter };
        let physical = a.OperStatus == IfOperStatusUp
            && a.IfType != IF_TYPE_SOFTWARE_LOOPBACK
            && a.IfType != IF_TYPE_PROP_VIRTUAL;
        let mut server = a.FirstDnsServerAddress;
        while physical && !server.is_null() {
            // SAFETY: as above; each entry's sockaddr is as long as its family says.
            let s = unsafe { &*server };
            let sockaddr = s.Address.lpSockaddr;
            let ip = if sockaddr.is_null() {
                None
            } else {
                // SAFETY: a non-null sockaddr whose family says which structure it is.
                unsafe {
                    match (*sockaddr).sa_family {
                        AF_INET => Some(IpAddr::from(
                            (*sockaddr.cast::<SOCKADDR_IN>())
                                .sin_addr
                                .S_un
                                .S_addr
                                .to_ne_bytes(),
                        )),
                        AF_INET6 => Some(IpAddr::from(
                            (*sockaddr.cast::<SOCKADDR_IN6>()).sin6_addr.u.Byte,
                        )),
                        _ => None,
                    }
                }
            };
            if let Some(ip) = ip.filter(|ip| !ip.is_loopback() && !ip.is_unspecified()) {
                if !out.contains(&ip) {
                    out.push(ip);
                }
            }
            server = s.Next;
        }
        adapter = a.Next;
    }
    out
}

/// One DWORD socket option (`setsockopt`), as Winsock's IP options take them.
pub fn set_dword_option(
    s: &socket2::Socket,
    level: i32,
    opt: i32,
    value: u32,
) -> std::io::Result<()> {
    use std::os::windows::io::AsRawSocket;
    use windows_sys::Win32::Networking::WinSock::{setsockopt, SOCKET};
    // SAFETY: a valid socket, and a pointer to a live DWORD of the given size.
    let rc = unsafe {
        setsockopt(
            s.as_raw_socket() as SOCKET,
            level,
            opt,
            (&value as *const u32).cast(),
            std::mem::size_of::<u32>() as i32,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
