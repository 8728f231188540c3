//! The doctor's probes on Windows: the tunnel adapter from IP Helper (`GetIfEntry2`, its
//! unicast addresses, `SetIpInterfaceEntry` for the MTU), the kill switch as Underpass's WFP
//! provider holds it, and what the packets of `probes.rs` need here (DF by
//! `IP_DONTFRAGMENT`; no mark, since WFP knows the helper by its app id). It has never run:
//! Wine lacks most of IP Helper and all of WFP (see the README).

use anyhow::{Context, Result};
use socket2::Socket;
use windows_sys::Win32::NetworkManagement::IpHelper::*;
use windows_sys::Win32::NetworkManagement::Ndis::{
    IfOperStatusUp, NET_IF_ADMIN_STATUS_UP, NET_LUID_LH,
};
use windows_sys::Win32::Networking::WinSock::{
    AF_INET, AF_INET6, IPPROTO_IP, IPPROTO_IPV6, IPV6_DONTFRAG, IP_DONTFRAGMENT,
};

use super::verdict::{InterfaceAddress, InterfaceFacts};
use crate::firewall::interface_luid;
use crate::winutil::{check, unicast_addresses};

pub use super::probes::{dns_query, echo, udp_probe};

/// How the evidence names the kill switch's rules.
pub const OURS: &str = "WFP provider Underpass";

fn if_row(luid: u64) -> Option<MIB_IF_ROW2> {
    let mut row = MIB_IF_ROW2 {
        InterfaceLuid: NET_LUID_LH { Value: luid },
        ..Default::default()
    };
    // SAFETY: a row with its LUID set, as GetIfEntry2 takes.
    (unsafe { GetIfEntry2(&mut row) } == 0).then_some(row)
}

/// The tunnel adapter as Windows has it now. Wintun is not point to point: no peer address.
pub async fn interface(name: &str) -> InterfaceFacts {
    let mut facts = InterfaceFacts::absent(name);
    let Ok(luid) = interface_luid(name) else {
        return facts;
    };
    let Some(row) = if_row(luid) else {
        return facts;
    };
    facts.exists = true;
    facts.up = row.AdminStatus == NET_IF_ADMIN_STATUS_UP;
    facts.lower_up = row.OperStatus == IfOperStatusUp;
    facts.mtu = u16::try_from(row.Mtu).ok();
    facts.addresses = unicast_addresses()
        .into_iter()
        .filter(|a| a.luid == luid)
        .map(|a| InterfaceAddress {
            local: a.address,
            peer: None,
            prefix_len: a.prefix_len,
        })
        .collect();
    facts
}

/// Sets the adapter's IP MTU for both families (the one a family is not enabled on is left).
pub async fn set_mtu(name: &str, mtu: u16) -> Result<()> {
    let luid = interface_luid(name)?;
    for family in [AF_INET, AF_INET6] {
        let mut row = MIB_IPINTERFACE_ROW::default();
        // SAFETY: initializes the row's defaults.
        unsafe { InitializeIpInterfaceEntry(&mut row) };
        row.Family = family;
        row.InterfaceLuid = NET_LUID_LH { Value: luid };
        // SAFETY: family and LUID set.
        if unsafe { GetIpInterfaceEntry(&mut row) } != 0 {
            continue;
        }
        row.NlMtu = u32::from(mtu);
        // IPv4 rows must not carry a site prefix length.
        row.SitePrefixLength = 0;
        // SAFETY: a row read back from GetIpInterfaceEntry.
        check(
            unsafe { SetIpInterfaceEntry(&mut row) },
            "setting the tunnel's MTU (SetIpInterfaceEntry)",
        )
        .with_context(|| format!("{name} to {mtu}"))?;
    }
    Ok(())
}

/// Packets the adapter sent (what the helper read: `tx`) and received (`rx`).
pub fn tunnel_counters(interface: &str) -> Option<(u64, u64)> {
    let row = if_row(interface_luid(interface).ok()?)?;
    Some((
        row.OutUcastPkts + row.OutNUcastPkts,
        row.InUcastPkts + row.InNUcastPkts,
    ))
}

/// Underpass's WFP filters, one a line.
pub async fn ruleset() -> Result<String> {
    tokio::task::spawn_blocking(crate::firewall::listing)
        .await
        .context("listing the WFP filters")?
        .map(|lines| lines.join("\n"))
}

/// Every line is one of ours; other providers' filters are not read.
pub fn split_ruleset(text: &str) -> (Option<Vec<String>>, Vec<String>) {
    let ours: Vec<String> = text.lines().map(str::to_string).collect();
    ((!ours.is_empty()).then_some(ours), Vec::new())
}

/// The helper needs no mark on Windows: WFP admits its packets by the helper's app id.
pub fn set_mark(_s: &Socket, _mark: u32) -> std::io::Result<()> {
    Ok(())
}

/// DF on every packet (`IP_DONTFRAGMENT` / `IPV6_DONTFRAG`).
pub fn dont_fragment(s: &Socket, v4: bool) -> std::io::Result<()> {
    let (level, opt) = if v4 {
        (IPPROTO_IP, IP_DONTFRAGMENT)
    } else {
        (IPPROTO_IPV6, IPV6_DONTFRAG)
    };
    let on: u32 = 1;
    crate::winutil::set_dword_option(s, level, opt, on)
}
