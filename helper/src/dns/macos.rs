//! macOS DNS through the SystemConfiguration dynamic store (`system-configuration`). The plan
//! (which keys, the backup, the restore) is `scplan.rs`; this file reads and writes the store
//! and keeps the backup in the state dir. The daemon calls `reassert` every second, which is
//! how a DHCP renewal or network change that writes the ISP's resolver back gets undone.
//! Not verified on a Mac: nothing here has run (see the README).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use core_foundation::array::CFArray;
use core_foundation::base::{CFType, TCFType};
use core_foundation::dictionary::CFDictionary;
use core_foundation::number::CFNumber;
use core_foundation::propertylist::CFPropertyList;
use core_foundation::string::CFString;
use system_configuration::dynamic_store::{SCDynamicStore, SCDynamicStoreBuilder};

use super::scplan::{self, Backup, Entry, Snapshot, Value, Write};
use super::{DnsConfig, DnsManager, DnsPaths};

const BACKUP: &str = "macos-dns.backup.json";
/// The store patterns whose keys name the services (`State:/Network/Service/ID/...`).
const SERVICE_PATTERNS: [&str; 2] = [
    "State:/Network/Service/[^/]+/(IPv4|IPv6|DNS)",
    "Setup:/Network/Service/[^/]+/DNS",
];

pub struct MacDns {
    backup_path: PathBuf,
    wanted: Option<DnsConfig>,
}

impl MacDns {
    fn store() -> Result<SCDynamicStore> {
        SCDynamicStoreBuilder::new("underpassd")
            .build()
            .ok_or_else(|| anyhow!("opening the SystemConfiguration dynamic store"))
    }

    fn read_backup(&self) -> Result<Option<Backup>> {
        match std::fs::read(&self.backup_path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("reading the DNS backup {}", self.backup_path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.backup_path.display())),
        }
    }

    fn save_backup(&self, backup: &Backup) -> Result<()> {
        let json = serde_json::to_vec_pretty(backup).expect("plain data");
        write_atomically(&self.backup_path, &json)
    }

    /// Backs up what is not backed up yet, then points every service at the tunnel.
    fn set_all(&self, store: &SCDynamicStore, config: &DnsConfig) -> Result<()> {
        let (backup, writes) = scplan::plan_set(&snapshot(store)?, self.read_backup()?, config);
        self.save_backup(&backup)?;
        apply(store, &writes)
    }
}

impl DnsManager for MacDns {
    fn new(paths: DnsPaths) -> Self {
        MacDns {
            backup_path: paths.state_dir.join(BACKUP),
            wanted: None,
        }
    }

    fn method(&self) -> &'static str {
        "SystemConfiguration dynamic store"
    }

    async fn set(&mut self, config: &DnsConfig) -> Result<()> {
        let store = Self::store()?;
        self.set_all(&store, config)?;
        self.wanted = Some(config.clone());
        Ok(())
    }

    async fn reassert(&mut self) -> Result<bool> {
        let Some(config) = &self.wanted else {
            return Ok(false);
        };
        let store = Self::store()?;
        let now = snapshot(&store)?;
        let backup = self.read_backup()?.unwrap_or_default();
        if now.keys().any(|k| !backup.original.contains_key(k)) {
            // A service appeared (a new network): back it up and point it at the tunnel too.
            self.set_all(&store, config)?;
            return Ok(true);
        }
        let writes = scplan::plan_reassert(&now, &backup, config);
        apply(&store, &writes)?;
        Ok(!writes.is_empty())
    }

    fn system_resolvers(&self) -> Vec<std::net::IpAddr> {
        // The services' own servers (from the backup once the tunnel's are written): the helper
        // asks them directly, and the PF anchor admits that by the helper's uid.
        let Ok(store) = Self::store() else {
            return Vec::new();
        };
        match (snapshot(&store), self.read_backup()) {
            (Ok(now), Ok(backup)) => scplan::original_servers(&now, backup.as_ref()),
            _ => Vec::new(),
        }
    }

    async fn restore(&mut self) -> Result<()> {
        self.wanted = None;
        let Some(backup) = self.read_backup()? else {
            return Ok(());
        };
        apply(&Self::store()?, &scplan::plan_restore(&backup))?;
        std::fs::remove_file(&self.backup_path)
            .with_context(|| format!("removing {}", self.backup_path.display()))
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming onto {}", path.display()))
}

/// Both DNS keys of every service, as they are now.
fn snapshot(store: &SCDynamicStore) -> Result<Snapshot> {
    let mut names = Vec::new();
    for pattern in SERVICE_PATTERNS {
        if let Some(keys) = store.get_keys(pattern) {
            names.extend(keys.iter().map(|k| k.to_string()));
        }
    }
    let keys = scplan::dns_keys(&names);
    if keys.is_empty() {
        bail!("the dynamic store lists no network service to set DNS on");
    }
    Ok(keys
        .into_iter()
        .map(|k| {
            let entry = store.get(k.as_str()).and_then(entry_of);
            (k, entry)
        })
        .collect())
}

fn apply(store: &SCDynamicStore, writes: &[Write]) -> Result<()> {
    for w in writes {
        match w {
            Write::Set(key, entry) => {
                if !store.set(key.as_str(), dictionary_of(entry)) {
                    bail!("the dynamic store refused to set {key}");
                }
            }
            Write::Remove(key) => {
                // False when the key is already gone, which is what was wanted.
                store.remove(key.as_str());
            }
        }
    }
    Ok(())
}

fn entry_of(plist: CFPropertyList) -> Option<Entry> {
    let dict = plist.downcast_into::<CFDictionary>()?;
    let (keys, values) = dict.get_keys_and_values();
    let mut entry = Entry::new();
    for (k, v) in keys.into_iter().zip(values) {
        // SAFETY: the dictionary holds these references for as long as `dict` lives.
        let key = unsafe { CFType::wrap_under_get_rule(k) };
        let value = unsafe { CFType::wrap_under_get_rule(v) };
        let Some(key) = key.downcast::<CFString>() else {
            continue;
        };
        if let Some(v) = value_of(&value) {
            entry.insert(key.to_string(), v);
        }
    }
    Some(entry)
}

fn value_of(v: &CFType) -> Option<Value> {
    if let Some(s) = v.downcast::<CFString>() {
        return Some(Value::Text(s.to_string()));
    }
    if let Some(n) = v.downcast::<CFNumber>() {
        return n.to_i64().map(Value::Number);
    }
    let list = v.downcast::<CFArray>()?;
    let items = list
        .iter()
        .filter_map(|item| {
            // SAFETY: an element of a live array.
            let item = unsafe { CFType::wrap_under_get_rule(*item) };
            item.downcast::<CFString>().map(|s| s.to_string())
        })
        .collect();
    Some(Value::List(items))
}

fn dictionary_of(entry: &Entry) -> CFDictionary {
    let pairs: Vec<(CFString, CFType)> = entry
        .iter()
        .map(|(k, v)| {
            let value = match v {
                Value::Text(s) => CFString::new(s).as_CFType(),
                Value::Number(n) => CFNumber::from(*n).as_CFType(),
                Value::List(items) => {
                    let strings: Vec<CFString> = items.iter().map(|s| CFString::new(s)).collect();
                    CFArray::from_CFTypes(&strings).as_CFType()
                }
            };
            (CFString::new(k), value)
        })
        .collect();
    CFDictionary::from_CFType_pairs(&pairs).to_untyped()
}
