//! DNS on Windows: `SetInterfaceDnsSettings` on the tunnel adapter (the registry's `Tcpip`
//! interface keys where that call is missing), an NRPT rule, and a resolver-cache flush.
//!
//! What gets written is decided by [`super::winplan`]. Everything written lives under names
//! Underpass owns (the adapter's fixed GUID, NRPT rules named `Underpass-*`), so `restore`
//! needs no backup: it deletes what is ours, also after a crash. The NRPT and Tcpip writers and
//! their cleanup run under Wine in `npm test`; `SetInterfaceDnsSettings` has never run (Wine
//! lacks it).

use std::io;

use anyhow::{Context, Result};
use winreg::enums::{HKEY_LOCAL_MACHINE, KEY_READ, KEY_WRITE};
use winreg::RegKey;

use super::winplan::{interface_keys, DnsRegistryPlan, RegData, RegValue, NRPT_LOCAL, NRPT_POLICY};
use super::{DnsConfig, DnsManager, DnsPaths};
use crate::tunnel::ADAPTER_GUID;
use crate::winutil::{guid_string, proc_address, wide};

pub struct WindowsDns {
    applied: Option<DnsRegistryPlan>,
    method: &'static str,
}

impl DnsManager for WindowsDns {
    fn new(_paths: DnsPaths) -> Self {
        WindowsDns {
            applied: None,
            method: "NRPT + interface DNS",
        }
    }

    fn method(&self) -> &'static str {
        self.method
    }

    async fn set(&mut self, config: &DnsConfig) -> Result<()> {
        let guid = guid_string(ADAPTER_GUID);
        let plan = DnsRegistryPlan::new(config, &guid);
        let hklm = RegKey::predef(HKEY_LOCAL_MACHINE);
        if set_interface_dns(config)? {
            self.method = "SetInterfaceDnsSettings + NRPT";
        } else {
            write_values(&hklm, "", &plan.interface)?;
            self.method = "Tcpip registry + NRPT";
        }
        for root in nrpt_roots(&hklm) {
            write_values(&hklm, root, &plan.nrpt)?;
        }
        flush_cache();
        self.applied = Some(plan);
        Ok(())
    }

    async fn reassert(&mut self) -> Result<bool> {
        let Some(plan) = &self.applied else {
            return Ok(false);
        };
        let hklm = RegKey::predef(HKEY_LOCAL_MACHINE);
        let mut rewrote = false;
        for root in nrpt_roots(&hklm) {
            if !values_present(&hklm, root, &plan.nrpt) {
                write_values(&hklm, root, &plan.nrpt)?;
                rewrote = true;
            }
        }
        if rewrote {
            flush_cache();
        }
        Ok(rewrote)
    }

    fn system_resolvers(&self) -> Vec<std::net::IpAddr> {
        // The physical adapters' own servers (the tunnel's sit on its virtual adapter): the
        // helper asks them directly, and WFP admits that by the helper's app id.
        crate::winutil::physical_dns_servers()
    }

    async fn restore(&mut self) -> Result<()> {
        let hklm = RegKey::predef(HKEY_LOCAL_MACHINE);
        remove_ours(&hklm, &guid_string(ADAPTER_GUID))?;
        flush_cache();
        self.applied = None;
        Ok(())
    }
}

/// Deletes Underpass's NRPT rules and adapter DNS values (for the uninstaller).
pub fn remove_leftovers() -> Result<()> {
    remove_ours(
        &RegKey::predef(HKEY_LOCAL_MACHINE),
        &guid_string(ADAPTER_GUID),
    )
}

/// The NRPT roots to write: the local one always, Group Policy's when it exists (the DNS
/// client then reads only that one).
fn nrpt_roots(hklm: &RegKey) -> Vec<&'static str> {
    let mut roots = vec![NRPT_LOCAL];
    if hklm.open_subkey_with_flags(NRPT_POLICY, KEY_READ).is_ok() {
        roots.push(NRPT_POLICY);
    }
    roots
}

/// Writes each value under `base\key` (`base` may be empty).
pub fn write_values(hive: &RegKey, base: &str, values: &[RegValue]) -> Result<()> {
    for v in values {
        let path = join(base, &v.key);
        let (key, _) = hive
            .create_subkey(&path)
            .with_context(|| format!(r"creating registry key HKLM\{path}"))?;
        match &v.data {
            RegData::Sz(s) => key.set_value(v.name, s),
            RegData::MultiSz(list) => key.set_value(v.name, list),
            RegData::Dword(d) => key.set_value(v.name, d),
        }
        .with_context(|| format!(r"setting HKLM\{path}\{}", v.name))?;
    }
    Ok(())
}

fn values_present(hive: &RegKey, base: &str, values: &[RegValue]) -> bool {
    values.iter().all(|v| {
        let Ok(key) = hive.open_subkey_with_flags(join(base, &v.key), KEY_READ) else {
            return false;
        };
        match &v.data {
            RegData::Sz(s) => key.get_value::<String, _>(v.name).is_ok_and(|x| &x == s),
            RegData::MultiSz(l) => key
                .get_value::<Vec<String>, _>(v.name)
                .is_ok_and(|x| &x == l),
            RegData::Dword(d) => key.get_value::<u32, _>(v.name).is_ok_and(|x| x == *d),
        }
    })
}

/// Deletes every NRPT rule of ours under both roots and our adapter's DNS values.
pub fn remove_ours(hive: &RegKey, adapter_guid: &str) -> Result<()> {
    for root in [NRPT_LOCAL, NRPT_POLICY] {
        let Ok(key) = hive.open_subkey_with_flags(root, KEY_READ | KEY_WRITE) else {
            continue;
        };
        let ours: Vec<String> = key
            .enum_keys()
            .filter_map(|k| k.ok())
            .filter(|k| DnsRegistryPlan::is_ours(k))
            .collect();
        for rule in ours {
            key.delete_subkey_all(&rule)
                .with_context(|| format!(r"deleting NRPT rule HKLM\{root}\{rule}"))?;
        }
    }
    for path in interface_keys(adapter_guid) {
        let Ok(key) = hive.open_subkey_with_flags(&path, KEY_READ | KEY_WRITE) else {
            continue;
        };
        for name in ["NameServer", "SearchList"] {
            match key.delete_value(name) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!(r"deleting HKLM\{path}\{name}"))
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!(r"{base}\{key}")
    }
}

/// `SetInterfaceDnsSettings` (Windows 10 2004 and later), looked up at run time so the helper
/// still loads where it is missing. False when it is missing (then the registry is used).
fn set_interface_dns(config: &DnsConfig) -> Result<bool> {
    use windows_sys::core::GUID;
    use windows_sys::Win32::NetworkManagement::IpHelper::{
        DNS_INTERFACE_SETTINGS, DNS_INTERFACE_SETTINGS_VERSION1, DNS_SETTING_IPV6,
        DNS_SETTING_NAMESERVER, DNS_SETTING_SEARCHLIST,
    };
    type SetDns = unsafe extern "system" fn(GUID, *const DNS_INTERFACE_SETTINGS) -> u32;
    if crate::winutil::under_wine() {
        // Wine exports it as a stub that aborts the process when called.
        return Ok(false);
    }
    let Some(f) = proc_address("iphlpapi.dll", "SetInterfaceDnsSettings") else {
        return Ok(false);
    };
    // SAFETY: the export has this signature (iphlpapi.h).
    let set: SetDns = unsafe { std::mem::transmute(f) };
    let search = config.search.join(",");
    for v6 in [false, true] {
        let servers: Vec<String> = config
            .servers
            .iter()
            .filter(|s| s.is_ipv6() == v6)
            .map(|s| s.to_string())
            .collect();
        if servers.is_empty() {
            continue;
        }
        let mut servers = wide(&servers.join(","));
        let mut search = wide(&search);
        let mut flags = (DNS_SETTING_NAMESERVER | DNS_SETTING_SEARCHLIST) as u64;
        if v6 {
            flags |= DNS_SETTING_IPV6 as u64;
        }
        let settings = DNS_INTERFACE_SETTINGS {
            Version: DNS_INTERFACE_SETTINGS_VERSION1,
            Flags: flags,
            NameServer: servers.as_mut_ptr(),
            SearchList: search.as_mut_ptr(),
            ..Default::default()
        };
        // SAFETY: `settings` and its strings live across the call.
        let rc = unsafe { set(GUID::from_u128(ADAPTER_GUID), &settings) };
        crate::winutil::check(rc, "setting the tunnel's DNS (SetInterfaceDnsSettings)")?;
    }
    Ok(true)
}

/// Empties the resolver cache, so answers from before the tunnel are not served from it.
fn flush_cache() {
    type Flush = unsafe extern "system" fn() -> i32;
    if let Some(f) = proc_address("dnsapi.dll", "DnsFlushResolverCache") {
        // SAFETY: the (undocumented, long-stable) export takes nothing and returns a BOOL.
        let flush: Flush = unsafe { std::mem::transmute(f) };
        // SAFETY: as above.
        if unsafe { flush() } == 0 {
            tracing::warn!("flushing the DNS resolver cache failed");
        }
    }
}

#[cfg(test)]
mod tests {
    //! These run under Wine in `npm test` (scripts/wine-test.sh), against Wine's registry.
    use super::*;

    const GUID: &str = "{8C9A2F3E-5B71-4D0A-9E64-2C1F7A0B3D55}";

    fn config(full: bool) -> DnsConfig {
        DnsConfig {
            servers: vec!["10.64.1.1".parse().unwrap(), "fd00::1".parse().unwrap()],
            search: vec!["corp.example".into()],
            interface: "underpass0".into(),
            full_tunnel: full,
        }
    }

    #[test]
    fn nrpt_and_tcpip_values_are_written_read_back_and_removed_without_leftovers() {
        let hklm = RegKey::predef(HKEY_LOCAL_MACHINE);
        let plan = DnsRegistryPlan::new(&config(true), GUID);
        write_values(&hklm, "", &plan.interface).unwrap();
        write_values(&hklm, NRPT_LOCAL, &plan.nrpt).unwrap();
        assert!(values_present(&hklm, "", &plan.interface));
        assert!(values_present(&hklm, NRPT_LOCAL, &plan.nrpt));
        let rule = hklm
            .open_subkey(format!(r"{NRPT_LOCAL}\Underpass-all"))
            .unwrap();
        assert_eq!(rule.get_value::<Vec<String>, _>("Name").unwrap(), ["."]);
        assert_eq!(
            rule.get_value::<String, _>("GenericDNSServers").unwrap(),
            "10.64.1.1;fd00::1"
        );
        remove_ours(&hklm, GUID).unwrap();
        assert!(hklm
            .open_subkey(format!(r"{NRPT_LOCAL}\Underpass-all"))
            .is_err());
        for path in interface_keys(GUID) {
            let key = hklm.open_subkey(&path).unwrap();
            assert!(key.get_value::<String, _>("NameServer").is_err(), "{path}");
        }
    }

    #[test]
    fn cleanup_leaves_other_nrpt_rules_alone_and_covers_the_policy_path() {
        let hklm = RegKey::predef(HKEY_LOCAL_MACHINE);
        let (other, _) = hklm
            .create_subkey(format!(
                r"{NRPT_LOCAL}\{{0F0F0F0F-1111-2222-3333-444455556666}}"
            ))
            .unwrap();
        other.set_value("Version", &2u32).unwrap();
        let plan = DnsRegistryPlan::new(&config(false), GUID);
        hklm.create_subkey(NRPT_POLICY).unwrap();
        assert_eq!(nrpt_roots(&hklm), [NRPT_LOCAL, NRPT_POLICY]);
        write_values(&hklm, NRPT_POLICY, &plan.nrpt).unwrap();
        assert!(values_present(&hklm, NRPT_POLICY, &plan.nrpt));
        remove_ours(&hklm, GUID).unwrap();
        assert!(!values_present(&hklm, NRPT_POLICY, &plan.nrpt));
        assert!(hklm
            .open_subkey(format!(
                r"{NRPT_LOCAL}\{{0F0F0F0F-1111-2222-3333-444455556666}}"
            ))
            .is_ok());
        hklm.delete_subkey_all(format!(
            r"{NRPT_LOCAL}\{{0F0F0F0F-1111-2222-3333-444455556666}}"
        ))
        .unwrap();
        hklm.delete_subkey_all(NRPT_POLICY).unwrap();
    }
}
