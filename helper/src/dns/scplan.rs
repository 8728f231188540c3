//! macOS DNS as data: which SystemConfiguration dynamic-store keys to write, what to back up
//! first, and how to put it all back. Portable and unit-tested; `macos.rs` reads and writes
//! the store.
//!
//! Every network service has a DNS key in the dynamic store, `State:/Network/Service/ID/DNS`
//! (what DHCP and the system set) and `Setup:/Network/Service/ID/DNS` (what the user set in
//! System Settings, which wins). macOS builds its resolver from them, so the tunnel's servers
//! go into `ServerAddresses` of both keys of *every* service: whichever service is primary,
//! and whenever it changes, the answer is the tunnel. The original values are backed up in the
//! helper's state dir before the first write; a backup left by a crashed helper is the true
//! original and is kept, and restore writes it back (or removes a key that did not exist).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::DnsConfig;

pub const SERVER_ADDRESSES: &str = "ServerAddresses";
pub const SEARCH_DOMAINS: &str = "SearchDomains";

/// One value in a DNS dictionary, as much of a property list as DNS dictionaries hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    Text(String),
    List(Vec<String>),
    Number(i64),
}

/// A DNS dictionary of the store.
pub type Entry = BTreeMap<String, Value>;

/// The store's DNS keys as read: `None` for a key that does not exist.
pub type Snapshot = BTreeMap<String, Option<Entry>>;

/// What was there before Underpass wrote, per key; saved before the first write.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Backup {
    pub original: Snapshot,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Set(String, Entry),
    Remove(String),
}

/// The resolvers the system had before the tunnel: every service's `ServerAddresses`, from the
/// backup where Underpass wrote over them, else as they are now. Loopback ones are left out
/// (the helper asks servers directly, and a local stub would only forward into the tunnel).
pub fn original_servers(current: &Snapshot, backup: Option<&Backup>) -> Vec<std::net::IpAddr> {
    let mut out = Vec::new();
    for (key, now) in current {
        let entry = match backup.and_then(|b| b.original.get(key)) {
            Some(original) => original.as_ref(),
            None => now.as_ref(),
        };
        let Some(Value::List(servers)) = entry.and_then(|e| e.get(SERVER_ADDRESSES)) else {
            continue;
        };
        for ip in servers
            .iter()
            .filter_map(|s| s.parse::<std::net::IpAddr>().ok())
        {
            if !ip.is_loopback() && !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
    out
}

/// Both DNS keys of every service that any of `keys` names, sorted and without duplicates.
pub fn dns_keys(keys: &[String]) -> Vec<String> {
    let mut out: Vec<String> = keys
        .iter()
        .filter_map(|k| {
            let rest = k
                .strip_prefix("State:/Network/Service/")
                .or_else(|| k.strip_prefix("Setup:/Network/Service/"))?;
            let id = rest.split('/').next().filter(|id| !id.is_empty())?;
            Some(id.to_string())
        })
        .flat_map(|id| {
            [
                format!("State:/Network/Service/{id}/DNS"),
                format!("Setup:/Network/Service/{id}/DNS"),
            ]
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The entry that points a key at the tunnel: the original's other fields, our servers, and our
/// search domains when the tunnel has any.
fn wanted_entry(original: Option<&Entry>, config: &DnsConfig) -> Entry {
    let mut e = original.cloned().unwrap_or_default();
    e.insert(
        SERVER_ADDRESSES.into(),
        Value::List(config.servers.iter().map(|s| s.to_string()).collect()),
    );
    if !config.search.is_empty() {
        e.insert(SEARCH_DOMAINS.into(), Value::List(config.search.clone()));
    }
    e
}

/// What `set` does: the backup to save (the earlier one extended with keys it lacks, or a new
/// one), then the writes.
pub fn plan_set(
    current: &Snapshot,
    earlier: Option<Backup>,
    config: &DnsConfig,
) -> (Backup, Vec<Write>) {
    let mut backup = earlier.unwrap_or_default();
    for (key, value) in current {
        backup
            .original
            .entry(key.clone())
            .or_insert_with(|| value.clone());
    }
    let writes = current
        .keys()
        .map(|key| {
            let original = backup.original.get(key).and_then(Option::as_ref);
            Write::Set(key.clone(), wanted_entry(original, config))
        })
        .collect();
    (backup, writes)
}

/// The writes that put the tunnel's DNS back where the system replaced it (DHCP renewals,
/// network changes, a new service): nothing when everything is still ours. A key that appeared
/// since `set` gets added to the backup by the caller through [`plan_set`].
pub fn plan_reassert(current: &Snapshot, backup: &Backup, config: &DnsConfig) -> Vec<Write> {
    current
        .iter()
        .filter_map(|(key, now)| {
            let original = backup.original.get(key).and_then(Option::as_ref);
            let want = wanted_entry(original, config);
            let ours = now.as_ref().is_some_and(|e| {
                e.get(SERVER_ADDRESSES) == want.get(SERVER_ADDRESSES)
                    && (config.search.is_empty()
                        || e.get(SEARCH_DOMAINS) == want.get(SEARCH_DOMAINS))
            });
            (!ours).then(|| Write::Set(key.clone(), want))
        })
        .collect()
}

/// What `restore` does: every backed-up key as it was, removed when it did not exist.
pub fn plan_restore(backup: &Backup) -> Vec<Write> {
    backup
        .original
        .iter()
        .map(|(key, original)| match original {
            Some(e) => Write::Set(key.clone(), e.clone()),
            None => Write::Remove(key.clone()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_servers_come_from_the_backup_where_underpass_wrote() {
        let entry = |servers: &[&str]| {
            let mut e = Entry::new();
            e.insert(
                SERVER_ADDRESSES.into(),
                Value::List(servers.iter().map(|s| s.to_string()).collect()),
            );
            Some(e)
        };
        let wifi = "State:/Network/Service/A/DNS".to_string();
        let eth = "State:/Network/Service/B/DNS".to_string();
        let current: Snapshot = [
            (wifi.clone(), entry(&["10.64.1.1"])),
            (eth.clone(), entry(&["192.0.2.53", "127.0.0.1"])),
        ]
        .into_iter()
        .collect();
        let backup = Backup {
            original: [(wifi, entry(&["198.51.100.53"]))].into_iter().collect(),
        };
        let ips = |v: &[&str]| {
            v.iter()
                .map(|s| s.parse().unwrap())
                .collect::<Vec<std::net::IpAddr>>()
        };
        assert_eq!(
            original_servers(&current, Some(&backup)),
            ips(&["198.51.100.53", "192.0.2.53"])
        );
        assert_eq!(
            original_servers(&current, None),
            ips(&["10.64.1.1", "192.0.2.53"])
        );
    }

    const STATE: &str = "State:/Network/Service/A1/DNS";
    const SETUP: &str = "Setup:/Network/Service/A1/DNS";

    fn config() -> DnsConfig {
        DnsConfig {
            servers: vec!["10.64.0.1".parse().unwrap(), "fd00::1".parse().unwrap()],
            search: vec![],
            interface: "utun4".into(),
            full_tunnel: true,
        }
    }

    fn dhcp() -> Entry {
        Entry::from([
            (
                SERVER_ADDRESSES.to_string(),
                Value::List(vec!["198.51.100.53".into()]),
            ),
            ("DomainName".to_string(), Value::Text("lan.example".into())),
        ])
    }

    fn snapshot() -> Snapshot {
        Snapshot::from([(STATE.to_string(), Some(dhcp())), (SETUP.to_string(), None)])
    }

    fn servers(e: &Entry) -> &Value {
        &e[SERVER_ADDRESSES]
    }

    #[test]
    fn both_dns_keys_of_every_service_are_targeted() {
        let keys = dns_keys(&[
            "State:/Network/Service/A1/IPv4".into(),
            "State:/Network/Service/A1/DNS".into(),
            "Setup:/Network/Service/B2/DNS".into(),
            "State:/Network/Global/IPv4".into(),
        ]);
        assert_eq!(
            keys,
            [
                "Setup:/Network/Service/A1/DNS",
                "Setup:/Network/Service/B2/DNS",
                "State:/Network/Service/A1/DNS",
                "State:/Network/Service/B2/DNS",
            ]
        );
    }

    #[test]
    fn set_backs_up_the_originals_and_points_every_key_at_the_tunnel() {
        let (backup, writes) = plan_set(&snapshot(), None, &config());
        assert_eq!(backup.original, snapshot());
        assert_eq!(writes.len(), 2);
        for w in &writes {
            let Write::Set(_, e) = w else { panic!("{w:?}") };
            assert_eq!(
                servers(e),
                &Value::List(vec!["10.64.0.1".into(), "fd00::1".into()])
            );
        }
        let Write::Set(key, e) = &writes[1] else {
            unreachable!()
        };
        assert_eq!(key, STATE);
        assert_eq!(
            e["DomainName"],
            Value::Text("lan.example".into()),
            "other fields kept"
        );
    }

    #[test]
    fn a_backup_left_by_a_crashed_helper_stays_the_original() {
        let (first, writes) = plan_set(&snapshot(), None, &config());
        // The store as the crashed helper left it: ours everywhere.
        let ours: Snapshot = writes
            .into_iter()
            .map(|w| match w {
                Write::Set(k, e) => (k, Some(e)),
                Write::Remove(k) => (k, None),
            })
            .collect();
        let (second, _) = plan_set(&ours, Some(first.clone()), &config());
        assert_eq!(second, first);
        assert_eq!(
            plan_restore(&second),
            vec![
                Write::Remove(SETUP.into()),
                Write::Set(STATE.into(), dhcp())
            ]
        );
    }

    #[test]
    fn restore_puts_back_what_was_there_and_removes_what_was_not() {
        let (backup, _) = plan_set(&snapshot(), None, &config());
        let json = serde_json::to_string(&backup).unwrap();
        let reread: Backup = serde_json::from_str(&json).unwrap();
        assert_eq!(
            plan_restore(&reread),
            vec![
                Write::Remove(SETUP.into()),
                Write::Set(STATE.into(), dhcp())
            ]
        );
    }

    #[test]
    fn reassert_rewrites_only_what_the_system_overwrote() {
        let (backup, writes) = plan_set(&snapshot(), None, &config());
        let mut now: Snapshot = writes
            .into_iter()
            .map(|w| match w {
                Write::Set(k, e) => (k, Some(e)),
                Write::Remove(k) => (k, None),
            })
            .collect();
        assert!(plan_reassert(&now, &backup, &config()).is_empty());
        // A DHCP renewal writes the ISP's resolver back.
        now.insert(STATE.into(), Some(dhcp()));
        let again = plan_reassert(&now, &backup, &config());
        assert_eq!(again.len(), 1);
        assert!(matches!(&again[0], Write::Set(k, _) if k == STATE));
    }

    #[test]
    fn search_domains_are_set_only_when_the_tunnel_has_some() {
        let mut c = config();
        let (_, writes) = plan_set(&snapshot(), None, &c);
        assert!(writes
            .iter()
            .all(|w| matches!(w, Write::Set(_, e) if !e.contains_key(SEARCH_DOMAINS))));
        c.search = vec!["corp.example".into()];
        let (_, writes) = plan_set(&snapshot(), None, &c);
        assert!(writes.iter().all(|w| matches!(w, Write::Set(_, e)
            if e[SEARCH_DOMAINS] == Value::List(vec!["corp.example".into()]))));
    }
}
