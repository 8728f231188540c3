//! Windows DNS as data: the registry values that point the resolver at the tunnel.
//!
//! Two mechanisms, both keyed by names Underpass owns, so restoring (also after a crash) is
//! deleting what this plan names:
//! - The tunnel adapter's own `Tcpip` / `Tcpip6` interface keys (`NameServer`, `SearchList`),
//!   the registry fallback for `SetInterfaceDnsSettings`. The adapter has a fixed GUID, so a
//!   helper that crashed knows the keys.
//! - An NRPT rule (Name Resolution Policy Table): for a full tunnel a catch-all (`.`) that sends
//!   every name to the tunnel's resolvers whatever the other interfaces say; for a split tunnel
//!   one rule per search domain. It is also written under the Group Policy path when that path
//!   exists, because the DNS client then ignores the local one.
//!
//! Portable and free of system calls, so it is unit-tested on Linux; `windows.rs` writes it.

use super::DnsConfig;

/// Where the local NRPT lives (under HKLM).
pub const NRPT_LOCAL: &str =
    r"SYSTEM\CurrentControlSet\Services\Dnscache\Parameters\DnsPolicyConfig";
/// Where Group Policy's NRPT lives (under HKLM); used only when it exists.
pub const NRPT_POLICY: &str = r"SOFTWARE\Policies\Microsoft\Windows NT\DNSClient\DnsPolicyConfig";
const TCPIP: &str = r"SYSTEM\CurrentControlSet\Services\Tcpip\Parameters\Interfaces";
const TCPIP6: &str = r"SYSTEM\CurrentControlSet\Services\Tcpip6\Parameters\Interfaces";
/// Every NRPT rule Underpass writes starts with this, so cleanup finds all of them.
pub const RULE_PREFIX: &str = "Underpass-";

/// NRPT `ConfigOptions`: the rule names generic DNS servers.
const NRPT_GENERIC_DNS: u32 = 0x8;
const NRPT_VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegData {
    Sz(String),
    MultiSz(Vec<String>),
    Dword(u32),
}

/// One value to set: HKLM\`key`\`name` = `data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegValue {
    pub key: String,
    pub name: &'static str,
    pub data: RegData,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRegistryPlan {
    /// Values on the tunnel adapter's interface keys (removed again on restore).
    pub interface: Vec<RegValue>,
    /// NRPT rules, relative to an NRPT root ([`NRPT_LOCAL`] and maybe [`NRPT_POLICY`]): each
    /// rule is one subkey, deleted whole on restore.
    pub nrpt: Vec<RegValue>,
}

/// The interface keys of the adapter with this GUID (`{...}` form), per family.
pub fn interface_keys(adapter_guid: &str) -> [String; 2] {
    [
        format!(r"{TCPIP}\{adapter_guid}"),
        format!(r"{TCPIP6}\{adapter_guid}"),
    ]
}

impl DnsRegistryPlan {
    pub fn new(config: &DnsConfig, adapter_guid: &str) -> DnsRegistryPlan {
        let [v4_key, v6_key] = interface_keys(adapter_guid);
        let join = |v4: bool| {
            config
                .servers
                .iter()
                .filter(|s| s.is_ipv4() == v4)
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut interface = Vec::new();
        for (key, servers) in [(v4_key, join(true)), (v6_key, join(false))] {
            if servers.is_empty() {
                continue;
            }
            interface.push(RegValue {
                key: key.clone(),
                name: "NameServer",
                data: RegData::Sz(servers),
            });
            if !config.search.is_empty() {
                interface.push(RegValue {
                    key,
                    name: "SearchList",
                    data: RegData::Sz(config.search.join(",")),
                });
            }
        }
        let servers = config
            .servers
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(";");
        let mut nrpt = Vec::new();
        let rules: Vec<(String, String)> = if config.full_tunnel {
            vec![(format!("{RULE_PREFIX}all"), ".".to_string())]
        } else {
            config
                .search
                .iter()
                .map(|d| {
                    let d = d.trim_matches('.').to_ascii_lowercase();
                    (format!("{RULE_PREFIX}{d}"), format!(".{d}"))
                })
                .collect()
        };
        for (rule, name) in rules {
            let value = |name: &'static str, data| RegValue {
                key: rule.clone(),
                name,
                data,
            };
            nrpt.extend([
                value("Version", RegData::Dword(NRPT_VERSION)),
                value("Name", RegData::MultiSz(vec![name])),
                value("ConfigOptions", RegData::Dword(NRPT_GENERIC_DNS)),
                value("GenericDNSServers", RegData::Sz(servers.clone())),
                value("IPSECCARestriction", RegData::Sz(String::new())),
            ]);
        }
        DnsRegistryPlan { interface, nrpt }
    }

    /// The NRPT rule subkeys this plan writes.
    #[cfg(test)]
    pub fn rules(&self) -> Vec<&str> {
        let mut rules: Vec<&str> = self.nrpt.iter().map(|v| v.key.as_str()).collect();
        rules.dedup();
        rules
    }

    /// Whether a subkey of an NRPT root is Underpass's (what cleanup deletes).
    pub fn is_ours(rule: &str) -> bool {
        rule.starts_with(RULE_PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUID: &str = "{8C9A2F3E-5B71-4D0A-9E64-2C1F7A0B3D55}";

    fn config(full_tunnel: bool, servers: &[&str], search: &[&str]) -> DnsConfig {
        DnsConfig {
            servers: servers.iter().map(|s| s.parse().unwrap()).collect(),
            search: search.iter().map(|s| s.to_string()).collect(),
            interface: "underpass0".into(),
            full_tunnel,
        }
    }

    fn render(values: &[RegValue]) -> Vec<String> {
        values
            .iter()
            .map(|v| format!(r"{}\{} = {:?}", v.key, v.name, v.data))
            .collect()
    }

    #[test]
    fn full_tunnel_writes_both_families_and_a_catch_all_nrpt_rule() {
        let plan = DnsRegistryPlan::new(
            &config(
                true,
                &["10.64.1.1", "fd00::1", "10.64.1.2"],
                &["corp.example"],
            ),
            GUID,
        );
        assert_eq!(
            render(&plan.interface),
            [
                r#"SYSTEM\CurrentControlSet\Services\Tcpip\Parameters\Interfaces\{8C9A2F3E-5B71-4D0A-9E64-2C1F7A0B3D55}\NameServer = Sz("10.64.1.1,10.64.1.2")"#,
                r#"SYSTEM\CurrentControlSet\Services\Tcpip\Parameters\Interfaces\{8C9A2F3E-5B71-4D0A-9E64-2C1F7A0B3D55}\SearchList = Sz("corp.example")"#,
                r#"SYSTEM\CurrentControlSet\Services\Tcpip6\Parameters\Interfaces\{8C9A2F3E-5B71-4D0A-9E64-2C1F7A0B3D55}\NameServer = Sz("fd00::1")"#,
                r#"SYSTEM\CurrentControlSet\Services\Tcpip6\Parameters\Interfaces\{8C9A2F3E-5B71-4D0A-9E64-2C1F7A0B3D55}\SearchList = Sz("corp.example")"#,
            ]
        );
        assert_eq!(
            render(&plan.nrpt),
            [
                r#"Underpass-all\Version = Dword(2)"#,
                r#"Underpass-all\Name = MultiSz(["."])"#,
                r#"Underpass-all\ConfigOptions = Dword(8)"#,
                r#"Underpass-all\GenericDNSServers = Sz("10.64.1.1;fd00::1;10.64.1.2")"#,
                r#"Underpass-all\IPSECCARestriction = Sz("")"#,
            ]
        );
        assert_eq!(plan.rules(), ["Underpass-all"]);
    }

    #[test]
    fn split_tunnel_gets_one_nrpt_rule_per_search_domain_and_no_catch_all() {
        let plan = DnsRegistryPlan::new(
            &config(false, &["10.64.1.1"], &["Corp.Example.", "lab.example"]),
            GUID,
        );
        assert_eq!(
            plan.rules(),
            ["Underpass-corp.example", "Underpass-lab.example"]
        );
        let names: Vec<&RegData> = plan
            .nrpt
            .iter()
            .filter(|v| v.name == "Name")
            .map(|v| &v.data)
            .collect();
        assert_eq!(
            names,
            [
                &RegData::MultiSz(vec![".corp.example".into()]),
                &RegData::MultiSz(vec![".lab.example".into()])
            ]
        );
        assert_eq!(plan.interface.len(), 2, "v4 only: no Tcpip6 values");
    }

    #[test]
    fn split_tunnel_without_search_domains_writes_no_nrpt_rule() {
        let plan = DnsRegistryPlan::new(&config(false, &["10.64.1.1"], &[]), GUID);
        assert!(plan.nrpt.is_empty());
        assert_eq!(render(&plan.interface).len(), 1);
    }

    #[test]
    fn only_rules_with_our_prefix_count_as_ours() {
        assert!(DnsRegistryPlan::is_ours("Underpass-all"));
        assert!(!DnsRegistryPlan::is_ours(
            "{F7D4B1A2-0000-0000-0000-000000000000}"
        ));
    }
}
