//! The per-user profile store.
//!
//! ```text
//! <config_dir>/profiles/<name>.json   the profile, without secrets (format "version": 2)
//! <config_dir>/store-id               random id naming this store's keyring entries
//! <config_dir>/trusted-keys/*.pub     organization keys this user accepted (see bundle.rs)
//! <config_dir>/keys/<name>.key        only with `--keystore file` (and legacy version 1
//! <config_dir>/keys/<name>.psk        profiles): private and preshared keys, 0600 in 0700
//! ```
//!
//! Private keys live in the OS keyring by default ([`crate::secrets`]); the profile file
//! records which keystore holds them. Profiles written by version 1 kept their keys in
//! `keys/`; [`Store::migrate_legacy_keys`] moves those into the keyring when it is available
//! and deletes the files only after reading the key back.
//!
//! A profile is either a wg-quick import (every peer is used at once, as wg-quick does) or a
//! signed bundle (every peer is one *server*, and a connection uses one of them, under the
//! bundle's policy).
//!
//! Every write is atomic (temp file in the same dir, fsync, rename): a crash leaves the old
//! file or the new one, never half of one. The secret is written before the profile, so a
//! profile that is listed always has its key.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use underpass_proto::{Key, SessionPolicy, SignedBundle, TunnelConfig};

use crate::bundle::{Bundle, KillSwitchMode, Policy, PrivateKeySource, SignerKey};
use crate::location::Location;
use crate::secrets::{self, KeyringError, Keystore, ProfileSecrets};
use crate::wgquick::{covers_everything, Interface, Peer, WgQuickConfig};

/// The profile file format this build writes and reads.
pub const PROFILE_FORMAT_VERSION: u64 = 2;

/// Longest profile name, in characters.
pub const MAX_PROFILE_NAME_LEN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("profile \"{0}\" not found")]
    NotFound(String),
    #[error("a profile named \"{0}\" already exists")]
    AlreadyExists(String),
    #[error(transparent)]
    InvalidName(#[from] NameError),
    #[error("{}: not a valid Underpass profile ({reason}); remove it or import the profile again", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("{}: written by a newer Underpass (profile format version {found}; this one reads version {PROFILE_FORMAT_VERSION}). Upgrade Underpass to use it", path.display())]
    UnsupportedVersion { path: PathBuf, found: u64 },
    #[error("profile \"{name}\" cannot be used: {reason}")]
    Unusable { name: String, reason: String },
    #[error("the private key of profile \"{name}\" is missing ({}); import the profile again", path.display())]
    MissingKey { name: String, path: PathBuf },
    #[error("cannot use the private key of profile \"{name}\": {source}")]
    Keyring { name: String, source: KeyringError },
    #[error("{source}. Underpass keeps private keys in the OS keyring (the Secret Service on Linux, the Keychain on macOS, the Credential Manager on Windows), and none is reachable here: on a desktop, unlock your keyring and try again; on a headless machine, pass --keystore file to keep keys in {} instead (mode 0600: readable by root and by programs running as you)", keys_dir.display())]
    NoKeyring {
        source: KeyringError,
        keys_dir: PathBuf,
    },
    #[error("refused: profile \"{name}\" is installed with serial {installed}; this bundle has serial {offered}, which is older (a rollback)")]
    RolledBack {
        name: String,
        installed: u64,
        offered: u64,
    },
    #[error("profile \"{name}\" serial {serial} is already installed; nothing to do")]
    SameSerial { name: String, serial: u64 },
    #[error("refused: profile \"{name}\" was installed from a bundle signed by {installed}, but this one is signed by {offered}; remove the profile first if the organization changed its key")]
    DifferentSigner {
        name: String,
        installed: SignerKey,
        offered: SignerKey,
    },
    #[error("profile \"{name}\" is a plain wg-quick profile; pass --replace to overwrite it with the signed bundle")]
    NotABundleProfile { name: String },
    #[error("profile \"{name}\" was installed from a signed bundle; its servers and policy come from the organization and cannot be overwritten by a plain file (remove it first)")]
    SignedProfile { name: String },
    #[error("profile \"{name}\" has no server {server:?}; it has: {known}")]
    UnknownServer {
        name: String,
        server: String,
        known: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A valid profile name: 1 to 64 characters of `[A-Za-z0-9._-]`, not starting with `.` or
/// `-` (hidden files; command-line flags), and not a name Windows reserves (`CON`, `NUL`…).
/// It doubles as a file name in the store, which is why it is this strict.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ProfileName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid profile name {name:?}: {reason}")]
pub struct NameError {
    pub name: String,
    pub reason: String,
}

impl ProfileName {
    pub fn new(name: &str) -> Result<ProfileName, NameError> {
        let fail = |reason: &str| {
            Err(NameError {
                name: name.to_string(),
                reason: reason.to_string(),
            })
        };
        if name.is_empty() {
            return fail("it is empty");
        }
        if name.chars().count() > MAX_PROFILE_NAME_LEN {
            return fail("it is longer than 64 characters");
        }
        if !name.chars().all(allowed_char) {
            return fail("use only letters, digits, '.', '_' and '-'");
        }
        if name.starts_with('.') || name.starts_with('-') {
            return fail("it must not start with '.' or '-'");
        }
        let stem = name.split('.').next().unwrap_or(name).to_ascii_uppercase();
        let reserved = matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
            || ((stem.starts_with("COM") || stem.starts_with("LPT"))
                && stem.len() == 4
                && stem.as_bytes()[3].is_ascii_digit());
        if reserved || name.ends_with('.') {
            return fail("Windows cannot store a file by that name");
        }
        Ok(ProfileName(name.to_string()))
    }

    /// The default name for an imported file: its stem with every disallowed character
    /// replaced by `-` (`Mullvad SE 4.conf` → `Mullvad-SE-4`).
    pub fn from_file_name(path: &Path) -> Result<ProfileName, NameError> {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut out = String::new();
        for c in stem.chars() {
            let c = if allowed_char(c) { c } else { '-' };
            if !(c == '-' && out.ends_with('-')) {
                out.push(c);
            }
        }
        let trimmed: String = out
            .trim_start_matches(['.', '-'])
            .chars()
            .take(MAX_PROFILE_NAME_LEN)
            .collect();
        let trimmed = trimmed.trim_end_matches(['-', '.']);
        ProfileName::new(trimmed).map_err(|e| NameError {
            name: stem,
            reason: format!("{}; choose a name for it", e.reason),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn allowed_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

impl FromStr for ProfileName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        ProfileName::new(s)
    }
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ProfileName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Who signed a profile, and what it requires: shown by `underpass profiles` and the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct BundleInfo {
    pub organization: String,
    #[serde(default)]
    pub description: Option<String>,
    pub serial: u64,
    /// As written in the bundle (`YYYY-MM-DDTHH:MM:SSZ`).
    #[serde(default)]
    pub expires: Option<String>,
    #[serde(default)]
    pub expires_at: Option<u64>,
    pub signer: SignerKey,
    pub trusted_comment: String,
    pub policy: Policy,
    /// True when this device generated the private key (the bundle said "generate_locally").
    pub key_generated_locally: bool,
}

/// One server of a profile, as the catalog and `connect --server` see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub id: String,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub city: Option<String>,
}

/// What `underpass profiles` shows, and what the app's profile list needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ProfileSummary {
    pub name: ProfileName,
    /// The file name it was imported from, if known.
    pub source: Option<String>,
    /// The first peer's endpoint.
    pub endpoint: String,
    #[cfg_attr(feature = "ts", ts(as = "Vec<String>"))]
    pub addresses: Vec<IpNet>,
    pub peers: usize,
    pub full_tunnel: bool,
    /// Seconds since the Unix epoch.
    pub imported_at: u64,
    /// Where the server is (wg-quick profiles; a bundle's servers each have their own).
    pub country: Option<String>,
    pub city: Option<String>,
    /// Where the private key lives.
    pub keystore: Keystore,
    /// Set for a profile installed from a signed bundle.
    pub bundle: Option<BundleInfo>,
}

/// A profile read back from the store, keys included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedProfile {
    pub name: ProfileName,
    pub source: Option<String>,
    pub imported_at: u64,
    pub config: WgQuickConfig,
    pub location: Location,
    pub bundle: Option<BundleInfo>,
    /// For a bundle, one entry per peer of `config` (same order); empty otherwise.
    pub servers: Vec<ServerInfo>,
    /// For a bundle, the file as signed: the connect request carries it to the helper.
    pub signed_bundle: Option<String>,
}

impl LoadedProfile {
    /// The connect request for this profile, with default routing. For a bundle, `server`
    /// picks one of its servers (the first when `None`); a wg-quick profile uses every peer.
    pub fn tunnel_config(&self, server: Option<&str>) -> Result<TunnelConfig, StoreError> {
        let mut t = self.config.to_tunnel_config(self.name.as_str());
        if self.bundle.is_none() {
            return match server {
                None => Ok(t),
                Some(s) => Err(StoreError::UnknownServer {
                    name: self.name.to_string(),
                    server: s.to_string(),
                    known: "none (a wg-quick profile uses all its peers at once)".into(),
                }),
            };
        }
        let index = match server {
            None => 0,
            Some(id) => self
                .servers
                .iter()
                .position(|s| s.id == id)
                .ok_or_else(|| StoreError::UnknownServer {
                    name: self.name.to_string(),
                    server: id.to_string(),
                    known: self
                        .servers
                        .iter()
                        .map(|s| s.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?,
        };
        t.peers = vec![t.peers.swap_remove(index)];
        t.signed = self.signed_bundle.as_ref().map(|bundle| SignedBundle {
            bundle: bundle.clone(),
            server: self.servers[index].id.clone(),
        });
        t.policy = self.bundle.as_ref().map(|b| SessionPolicy {
            organization: b.organization.clone(),
            serial: b.serial,
            policy: b.policy,
        });
        Ok(t)
    }

    /// The policy a session must follow: the bundle's, or none.
    pub fn policy(&self) -> Option<&Policy> {
        self.bundle.as_ref().map(|b| &b.policy)
    }

    /// The weakest kill switch this profile allows.
    pub fn min_kill_switch(&self) -> KillSwitchMode {
        self.policy()
            .map(|p| p.effective_min_kill_switch())
            .unwrap_or(KillSwitchMode::Off)
    }
}

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The file the profile came from, kept for display.
    pub source: Option<String>,
    /// Overwrite a profile of the same name instead of refusing.
    pub replace: bool,
    /// Where the server is (inferred from the file name, or given by the user).
    pub location: Location,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub summary: ProfileSummary,
    /// True when a profile of the same name was overwritten.
    pub replaced: bool,
    /// For a bundle update: the serial it replaced.
    pub previous_serial: Option<u64>,
    /// For a bundle with "generate_locally": the public key to hand to IT.
    pub generated_public_key: Option<Key>,
}

/// The on-disk profile. Private on purpose: the file format can evolve (with a version bump)
/// without changing the public types.
#[derive(Serialize, Deserialize)]
struct StoredProfile {
    version: u64,
    name: String,
    source: Option<String>,
    imported_at: u64,
    /// Absent in version 1, whose keys are files in `keys/`.
    #[serde(default)]
    keystore: Option<Keystore>,
    #[serde(default, skip_serializing_if = "Location::is_empty")]
    location: Location,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bundle: Option<BundleInfo>,
    /// The bundle as signed, for the helper to verify (absent before issue 9: re-import).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signed_bundle: Option<String>,
    interface: StoredInterface,
    peers: Vec<StoredPeer>,
}

#[derive(Serialize, Deserialize)]
struct StoredInterface {
    addresses: Vec<IpNet>,
    #[serde(default)]
    dns: Vec<IpAddr>,
    #[serde(default)]
    dns_search: Vec<String>,
    #[serde(default)]
    mtu: Option<u16>,
    #[serde(default)]
    listen_port: Option<u16>,
    #[serde(default)]
    fwmark: Option<u32>,
    #[serde(default)]
    table: Option<String>,
    #[serde(default)]
    save_config: Option<bool>,
}

#[derive(Serialize, Deserialize)]
struct StoredPeer {
    public_key: Key,
    /// The key itself is in the keystore.
    #[serde(default)]
    has_preshared_key: bool,
    allowed_ips: Vec<IpNet>,
    endpoint: String,
    #[serde(default)]
    persistent_keepalive: Option<u16>,
    /// Set for the servers of a bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    server: Option<ServerInfo>,
}

impl StoredProfile {
    fn keystore(&self) -> Keystore {
        self.keystore.unwrap_or(Keystore::File)
    }

    fn summary(&self, name: ProfileName) -> ProfileSummary {
        ProfileSummary {
            name,
            source: self.source.clone(),
            endpoint: self.peers[0].endpoint.clone(),
            addresses: self.interface.addresses.clone(),
            peers: self.peers.len(),
            full_tunnel: covers_everything(self.peers.iter().flat_map(|p| &p.allowed_ips)),
            imported_at: self.imported_at,
            country: self.location.country.clone(),
            city: self.location.city.clone(),
            keystore: self.keystore(),
            bundle: self.bundle.clone(),
        }
    }

    fn config_with_keys(&self, secrets: &ProfileSecrets) -> WgQuickConfig {
        let i = &self.interface;
        WgQuickConfig {
            interface: Interface {
                private_key: secrets.private_key.clone(),
                addresses: i.addresses.clone(),
                dns: i.dns.clone(),
                dns_search: i.dns_search.clone(),
                mtu: i.mtu,
                listen_port: i.listen_port,
                fwmark: i.fwmark,
                table: i.table.clone(),
                save_config: i.save_config,
            },
            peers: self
                .peers
                .iter()
                .map(|p| Peer {
                    public_key: p.public_key.clone(),
                    preshared_key: secrets
                        .preshared_keys
                        .get(&p.public_key.to_base64())
                        .cloned(),
                    allowed_ips: p.allowed_ips.clone(),
                    endpoint: p.endpoint.clone(),
                    persistent_keepalive: p.persistent_keepalive,
                })
                .collect(),
        }
    }

    fn new(
        name: &ProfileName,
        config: &WgQuickConfig,
        source: Option<String>,
        keystore: Keystore,
    ) -> StoredProfile {
        StoredProfile {
            version: PROFILE_FORMAT_VERSION,
            name: name.to_string(),
            source,
            imported_at: now(),
            keystore: Some(keystore),
            location: Location::default(),
            bundle: None,
            signed_bundle: None,
            interface: StoredInterface {
                addresses: config.interface.addresses.clone(),
                dns: config.interface.dns.clone(),
                dns_search: config.interface.dns_search.clone(),
                mtu: config.interface.mtu,
                listen_port: config.interface.listen_port,
                fwmark: config.interface.fwmark,
                table: config.interface.table.clone(),
                save_config: config.interface.save_config,
            },
            peers: config
                .peers
                .iter()
                .map(|p| StoredPeer {
                    public_key: p.public_key.clone(),
                    has_preshared_key: p.preshared_key.is_some(),
                    allowed_ips: p.allowed_ips.clone(),
                    endpoint: p.endpoint.clone(),
                    persistent_keepalive: p.persistent_keepalive,
                    server: None,
                })
                .collect(),
        }
    }
}

fn secrets_of(config: &WgQuickConfig) -> ProfileSecrets {
    ProfileSecrets {
        private_key: config.interface.private_key.clone(),
        preshared_keys: config
            .peers
            .iter()
            .filter_map(|p| Some((p.public_key.to_base64(), p.preshared_key.clone()?)))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One row of [`Store::migrate_legacy_keys`]'s report.
#[derive(Debug)]
pub struct Migration {
    pub name: ProfileName,
    pub result: Result<(), StoreError>,
}

/// The store rooted at one config directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    keystore: Keystore,
}

impl Store {
    /// Opens the store at `config_dir` with keys in the OS keyring.
    pub fn open(config_dir: impl Into<PathBuf>) -> Result<Store, StoreError> {
        Store::open_with(config_dir, Keystore::Keyring)
    }

    /// Opens the store at `config_dir`, creating `profiles/` and `keys/` (0700) if needed.
    /// New keys go to `keystore`; existing profiles keep theirs where they are.
    pub fn open_with(
        config_dir: impl Into<PathBuf>,
        keystore: Keystore,
    ) -> Result<Store, StoreError> {
        let store = Store {
            dir: config_dir.into(),
            keystore,
        };
        for sub in [store.profiles_dir(), store.keys_dir()] {
            fs::create_dir_all(&sub).map_err(io_err(&sub))?;
            restrict_dir(&sub)?;
        }
        restrict_dir(&store.dir)?;
        Ok(store)
    }

    /// Serializes writers: the app and the CLI may change the store at the same moment, and a
    /// serial check followed by a write must not interleave with another. An advisory lock on
    /// `<config dir>/store.lock`, released when the returned file is dropped (or the process
    /// dies, so a kill -9 never leaves it held).
    fn lock(&self) -> Result<fs::File, StoreError> {
        let path = self.dir.join("store.lock");
        let io_err = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err)?;
        file.lock().map_err(io_err)?;
        Ok(file)
    }

    pub fn config_dir(&self) -> &Path {
        &self.dir
    }

    pub fn keystore(&self) -> Keystore {
        self.keystore
    }

    fn profiles_dir(&self) -> PathBuf {
        self.dir.join("profiles")
    }

    fn keys_dir(&self) -> PathBuf {
        self.dir.join("keys")
    }

    /// When a profile was last added, changed or removed: the `profiles/` directory's time,
    /// since every write renames a file into it (`None` when it cannot be read).
    pub fn profiles_modified(&self) -> Option<std::time::SystemTime> {
        fs::metadata(self.profiles_dir()).ok()?.modified().ok()
    }

    /// The directory of organization keys this user accepted.
    pub fn user_trust_dir(&self) -> PathBuf {
        self.dir.join("trusted-keys")
    }

    pub fn profile_path(&self, name: &ProfileName) -> PathBuf {
        self.profiles_dir().join(format!("{name}.json"))
    }

    pub fn key_path(&self, name: &ProfileName) -> PathBuf {
        self.keys_dir().join(format!("{name}.key"))
    }

    fn psk_path(&self, name: &ProfileName) -> PathBuf {
        self.keys_dir().join(format!("{name}.psk"))
    }

    pub fn exists(&self, name: &ProfileName) -> bool {
        self.profile_path(name).symlink_metadata().is_ok()
    }

    /// The keyring user of a profile's entry: `<store id>/<name>`. The id is made on first
    /// use and kept in `store-id`.
    pub fn keyring_user(&self, name: &ProfileName) -> Result<String, StoreError> {
        let path = self.dir.join("store-id");
        let id = match fs::read_to_string(&path) {
            Ok(id) if is_store_id(id.trim()) => id.trim().to_string(),
            Ok(_) => {
                return Err(StoreError::Corrupt {
                    path,
                    reason: "not 32 hex digits".into(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut raw = [0u8; 16];
                getrandom::getrandom(&mut raw)
                    .map_err(|e| io_err(&path)(io::Error::other(e.to_string())))?;
                let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
                write_file_atomic(&path, format!("{id}\n").as_bytes())?;
                id
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        Ok(format!("{id}/{name}"))
    }

    /// Stores `config` as profile `name`. Refuses an existing name unless `opts.replace`,
    /// and never overwrites a signed profile with a plain one. The config must pass
    /// [`TunnelConfig::validate`], so a stored profile can always be sent to the helper.
    pub fn import(
        &self,
        name: &ProfileName,
        config: &WgQuickConfig,
        opts: &ImportOptions,
    ) -> Result<ImportReport, StoreError> {
        let _lock = self.lock()?;
        config
            .to_tunnel_config(name.as_str())
            .validate()
            .map_err(|reason| StoreError::Unusable {
                name: name.to_string(),
                reason,
            })?;
        let previous = self.read_existing(name)?;
        if let Some(prev) = &previous {
            if !opts.replace {
                return Err(StoreError::AlreadyExists(name.to_string()));
            }
            if prev.bundle.is_some() {
                return Err(StoreError::SignedProfile {
                    name: name.to_string(),
                });
            }
        }
        let mut stored = StoredProfile::new(name, config, opts.source.clone(), self.keystore);
        stored.location = opts.location.clone();
        self.write_secrets(name, &secrets_of(config))?;
        self.write_profile(name, &stored)?;
        let replaced = previous.is_some();
        if let Some(prev) = previous {
            self.drop_stale_secrets(name, &prev, self.keystore);
        }
        Ok(ImportReport {
            summary: stored.summary(name.clone()),
            replaced,
            previous_serial: None,
            generated_public_key: None,
        })
    }

    /// Installs a verified, trusted, unexpired bundle. A newer serial from the same signer
    /// replaces the installed profile in place; an older one, or another signer, is refused.
    pub fn import_bundle(
        &self,
        bundle: &Bundle,
        source: Option<String>,
        replace_plain: bool,
    ) -> Result<ImportReport, StoreError> {
        let _lock = self.lock()?;
        let name = &ProfileName::new(&bundle.name)?;
        let unusable = |reason: String| StoreError::Unusable {
            name: name.to_string(),
            reason,
        };
        let previous = self.read_existing(name)?;
        let mut previous_serial = None;
        let mut reuse_key = None;
        if let Some(prev) = &previous {
            match &prev.bundle {
                None if !replace_plain => {
                    return Err(StoreError::NotABundleProfile {
                        name: name.to_string(),
                    })
                }
                None => {}
                Some(info) => {
                    if info.signer != bundle.signer {
                        return Err(StoreError::DifferentSigner {
                            name: name.to_string(),
                            installed: info.signer.clone(),
                            offered: bundle.signer.clone(),
                        });
                    }
                    let offered = bundle.payload.serial;
                    if offered < info.serial {
                        return Err(StoreError::RolledBack {
                            name: name.to_string(),
                            installed: info.serial,
                            offered,
                        });
                    }
                    if offered == info.serial {
                        return Err(StoreError::SameSerial {
                            name: name.to_string(),
                            serial: offered,
                        });
                    }
                    previous_serial = Some(info.serial);
                    if info.key_generated_locally {
                        reuse_key = self.read_secrets(name, prev).ok().map(|s| s.private_key);
                    }
                }
            }
        }
        let (private_key, generated) = match (&bundle.payload.private_key, reuse_key) {
            (PrivateKeySource::Embedded(k), _) => (k.clone(), false),
            (PrivateKeySource::GenerateLocally, Some(k)) => (k, true),
            (PrivateKeySource::GenerateLocally, None) => (generate_private_key()?, true),
        };
        let configs =
            crate::bundle::server_configs(bundle, private_key.clone()).map_err(unusable)?;
        let config = WgQuickConfig {
            interface: configs[0].interface.clone(),
            peers: configs.into_iter().flat_map(|c| c.peers).collect(),
        };
        let p = &bundle.payload;
        let mut stored = StoredProfile::new(name, &config, source, self.keystore);
        for (peer, server) in stored.peers.iter_mut().zip(&p.servers) {
            peer.server = Some(ServerInfo {
                id: server.id.clone(),
                country: Some(server.country.clone()),
                city: Some(server.city.clone()),
            });
        }
        stored.bundle = Some(BundleInfo {
            organization: p.organization.clone(),
            description: p.description.clone(),
            serial: p.serial,
            expires: p.expires.clone(),
            expires_at: bundle.expires_at,
            signer: bundle.signer.clone(),
            trusted_comment: bundle.trusted_comment.clone(),
            policy: p.policy,
            key_generated_locally: generated,
        });
        stored.signed_bundle = Some(String::from_utf8_lossy(&bundle.raw).into_owned());
        self.write_secrets(name, &secrets_of(&config))?;
        self.write_profile(name, &stored)?;
        if let Some(prev) = &previous {
            self.drop_stale_secrets(name, prev, self.keystore);
        }
        Ok(ImportReport {
            summary: stored.summary(name.clone()),
            replaced: previous.is_some(),
            previous_serial,
            generated_public_key: generated.then(|| public_key_of(&private_key)),
        })
    }

    /// Sets or clears where a wg-quick profile's server is. A bundle's servers have the
    /// locations its organization signed, and are not changed here.
    pub fn set_location(&self, name: &ProfileName, location: Location) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        let mut stored = self.read_profile(name)?;
        if stored.bundle.is_some() {
            return Err(StoreError::SignedProfile {
                name: name.to_string(),
            });
        }
        stored.location = location;
        stored.version = PROFILE_FORMAT_VERSION;
        if stored.keystore.is_none() {
            // Version 1 kept keys in files; say so now that the file becomes version 2.
            stored.keystore = Some(Keystore::File);
        }
        self.write_profile(name, &stored)
    }

    /// Every stored profile, sorted by name. A corrupt file is an error naming that file.
    pub fn list(&self) -> Result<Vec<ProfileSummary>, StoreError> {
        Ok(self
            .list_stored()?
            .into_iter()
            .map(|(name, s)| s.summary(name))
            .collect())
    }

    fn list_stored(&self) -> Result<Vec<(ProfileName, StoredProfile)>, StoreError> {
        let dir = self.profiles_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let file_name = entry.file_name();
            // Temp files (".tmpXXXX") and anything else that is not "<valid name>.json".
            let Some(name) = file_name
                .to_str()
                .and_then(|f| f.strip_suffix(".json"))
                .and_then(|stem| ProfileName::new(stem).ok())
            else {
                continue;
            };
            let stored = self.read_profile(&name)?;
            out.push((name, stored));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Every server of every profile, for the catalog: (profile, server, endpoint, bundle).
    pub fn servers(&self) -> Result<Vec<crate::catalog::CatalogServer>, StoreError> {
        let mut out = Vec::new();
        for (name, s) in self.list_stored()? {
            let organization = s.bundle.as_ref().map(|b| b.organization.clone());
            if s.bundle.is_some() {
                for p in &s.peers {
                    let server = p.server.clone().unwrap_or(ServerInfo {
                        id: p.endpoint.clone(),
                        country: None,
                        city: None,
                    });
                    out.push(crate::catalog::CatalogServer {
                        profile: name.clone(),
                        server: Some(server.id),
                        country: server.country,
                        city: server.city,
                        endpoint: p.endpoint.clone(),
                        public_key: p.public_key.clone(),
                        organization: organization.clone(),
                    });
                }
            } else {
                out.push(crate::catalog::CatalogServer {
                    profile: name.clone(),
                    server: None,
                    country: s.location.country.clone(),
                    city: s.location.city.clone(),
                    endpoint: s.peers[0].endpoint.clone(),
                    public_key: s.peers[0].public_key.clone(),
                    organization: None,
                });
            }
        }
        Ok(out)
    }

    /// Reads a profile and its keys.
    pub fn load(&self, name: &ProfileName) -> Result<LoadedProfile, StoreError> {
        let stored = self.read_profile(name)?;
        let secrets = self.read_secrets(name, &stored)?;
        let missing_psk = stored.peers.iter().find(|p| {
            p.has_preshared_key
                && !secrets
                    .preshared_keys
                    .contains_key(&p.public_key.to_base64())
        });
        if let Some(p) = missing_psk {
            return Err(StoreError::Corrupt {
                path: match stored.keystore() {
                    Keystore::File => self.psk_path(name),
                    Keystore::Keyring => self.profile_path(name),
                },
                reason: format!("no preshared key for peer {}", p.public_key.to_base64()),
            });
        }
        let servers = if stored.bundle.is_some() {
            stored
                .peers
                .iter()
                .map(|p| {
                    p.server.clone().unwrap_or(ServerInfo {
                        id: p.endpoint.clone(),
                        country: None,
                        city: None,
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(LoadedProfile {
            name: name.clone(),
            source: stored.source.clone(),
            imported_at: stored.imported_at,
            config: stored.config_with_keys(&secrets),
            location: stored.location.clone(),
            bundle: stored.bundle.clone(),
            signed_bundle: stored.signed_bundle.clone(),
            servers,
        })
    }

    /// Deletes a profile and its keys (from whichever keystore holds them).
    pub fn remove(&self, name: &ProfileName) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        let stored = self.read_existing(name);
        let path = self.profile_path(name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound(name.to_string()))
            }
            Err(e) => return Err(io_err(&path)(e)),
        }
        remove_if_present(&self.key_path(name))?;
        remove_if_present(&self.psk_path(name))?;
        // A corrupt profile file does not say where its key is: try the keyring too.
        let in_keyring = match &stored {
            Ok(Some(s)) => s.keystore() == Keystore::Keyring,
            _ => true,
        };
        if in_keyring {
            let user = self.keyring_user(name)?;
            let result = secrets::keyring_delete(&user);
            if matches!(stored, Ok(Some(_))) {
                result.map_err(|source| StoreError::Keyring {
                    name: name.to_string(),
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// Moves the keys of version-1 profiles (files in `keys/`) into the OS keyring. Each key
    /// is read back from the keyring before its file is deleted. Only for a keyring store.
    pub fn migrate_legacy_keys(&self) -> Result<Vec<Migration>, StoreError> {
        let _lock = self.lock()?;
        if self.keystore != Keystore::Keyring {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for (name, mut stored) in self.list_stored()? {
            if stored.keystore.is_some() {
                continue;
            }
            let result = (|| {
                let secrets = self.read_file_secrets(&name, &stored)?;
                let user = self.keyring_user(&name)?;
                secrets::keyring_store(&user, &secrets).map_err(|source| {
                    StoreError::NoKeyring {
                        source,
                        keys_dir: self.keys_dir(),
                    }
                })?;
                stored.version = PROFILE_FORMAT_VERSION;
                stored.keystore = Some(Keystore::Keyring);
                self.write_profile(&name, &stored)?;
                remove_if_present(&self.key_path(&name))?;
                remove_if_present(&self.psk_path(&name))
            })();
            out.push(Migration { name, result });
        }
        Ok(out)
    }

    fn read_existing(&self, name: &ProfileName) -> Result<Option<StoredProfile>, StoreError> {
        match self.read_profile(name) {
            Ok(s) => Ok(Some(s)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn write_profile(&self, name: &ProfileName, stored: &StoredProfile) -> Result<(), StoreError> {
        let mut json = serde_json::to_vec_pretty(stored).expect("profile serializes");
        json.push(b'\n');
        write_file_atomic(&self.profile_path(name), &json)
    }

    fn write_secrets(
        &self,
        name: &ProfileName,
        secrets: &ProfileSecrets,
    ) -> Result<(), StoreError> {
        match self.keystore {
            Keystore::Keyring => {
                let user = self.keyring_user(name)?;
                secrets::keyring_store(&user, secrets).map_err(|source| StoreError::NoKeyring {
                    source,
                    keys_dir: self.keys_dir(),
                })
            }
            Keystore::File => {
                let key = format!("{}\n", secrets.private_key.to_base64());
                write_file_atomic(&self.key_path(name), key.as_bytes())?;
                let psks: String = secrets
                    .preshared_keys
                    .iter()
                    .map(|(peer, psk)| format!("{peer} {}\n", psk.to_base64()))
                    .collect();
                let psk_path = self.psk_path(name);
                if psks.is_empty() {
                    remove_if_present(&psk_path)
                } else {
                    write_file_atomic(&psk_path, psks.as_bytes())
                }
            }
        }
    }

    /// After a replace that moved the key to another keystore, the old copy goes.
    fn drop_stale_secrets(&self, name: &ProfileName, previous: &StoredProfile, now: Keystore) {
        match (previous.keystore(), now) {
            (Keystore::File, Keystore::Keyring) => {
                let _ = remove_if_present(&self.key_path(name));
                let _ = remove_if_present(&self.psk_path(name));
            }
            (Keystore::Keyring, Keystore::File) => {
                if let Ok(user) = self.keyring_user(name) {
                    let _ = secrets::keyring_delete(&user);
                }
            }
            _ => {}
        }
    }

    fn read_secrets(
        &self,
        name: &ProfileName,
        stored: &StoredProfile,
    ) -> Result<ProfileSecrets, StoreError> {
        match stored.keystore() {
            Keystore::File => self.read_file_secrets(name, stored),
            Keystore::Keyring => {
                let user = self.keyring_user(name)?;
                secrets::keyring_load(&user).map_err(|source| match source {
                    KeyringError::Unavailable(_) => StoreError::NoKeyring {
                        source,
                        keys_dir: self.keys_dir(),
                    },
                    other => StoreError::Keyring {
                        name: name.to_string(),
                        source: other,
                    },
                })
            }
        }
    }

    fn read_file_secrets(
        &self,
        name: &ProfileName,
        stored: &StoredProfile,
    ) -> Result<ProfileSecrets, StoreError> {
        let key_path = self.key_path(name);
        let key_text = match fs::read_to_string(&key_path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::MissingKey {
                    name: name.to_string(),
                    path: key_path,
                })
            }
            Err(e) => return Err(io_err(&key_path)(e)),
        };
        let private_key = Key::from_base64(&key_text).map_err(|e| StoreError::Corrupt {
            path: key_path.clone(),
            reason: format!("the private key is {e}"),
        })?;
        let preshared_keys = if stored.peers.iter().any(|p| p.has_preshared_key) {
            self.read_psks(name)?
                .into_iter()
                .map(|(peer, psk)| (peer.to_base64(), psk))
                .collect()
        } else {
            BTreeMap::new()
        };
        Ok(ProfileSecrets {
            private_key,
            preshared_keys,
        })
    }

    fn read_profile(&self, name: &ProfileName) -> Result<StoredProfile, StoreError> {
        let path = self.profile_path(name);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound(name.to_string()))
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            path: path.clone(),
            reason,
        };
        // Look at the version alone first, so that a newer format is reported as such and
        // not as whatever field it happens to trip over.
        #[derive(Deserialize)]
        struct Probe {
            version: Option<u64>,
        }
        let probe: Probe = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        match probe.version {
            Some(1 | PROFILE_FORMAT_VERSION) => {}
            Some(found) if found > PROFILE_FORMAT_VERSION => {
                return Err(StoreError::UnsupportedVersion { path, found })
            }
            Some(found) => return Err(corrupt(format!("unknown format version {found}"))),
            None => return Err(corrupt("no \"version\" field".into())),
        }
        let mut stored: StoredProfile =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if stored.version == 1 {
            // Version 1 had no keystore field: its keys are files. Never trust one that
            // claims otherwise.
            stored.keystore = None;
        } else if stored.keystore.is_none() {
            return Err(corrupt("no \"keystore\" field".into()));
        }
        if stored.name != name.as_str() {
            return Err(corrupt(format!(
                "it is named {:?}, not {:?} like its file",
                stored.name,
                name.as_str()
            )));
        }
        if stored.peers.is_empty() {
            return Err(corrupt("it has no peer".into()));
        }
        Ok(stored)
    }

    fn read_psks(&self, name: &ProfileName) -> Result<HashMap<Key, Key>, StoreError> {
        let path = self.psk_path(name);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::MissingKey {
                    name: name.to_string(),
                    path,
                })
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let mut out = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let parsed = line.split_once(' ').and_then(|(peer, psk)| {
                Some((Key::from_base64(peer).ok()?, Key::from_base64(psk).ok()?))
            });
            let Some((peer, psk)) = parsed else {
                return Err(StoreError::Corrupt {
                    path,
                    reason: format!("line {} is not \"<peer key> <preshared key>\"", i + 1),
                });
            };
            out.insert(peer, psk);
        }
        Ok(out)
    }
}

fn is_store_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A new WireGuard private key (random, clamped as X25519 requires).
pub fn generate_private_key() -> Result<Key, StoreError> {
    let mut raw = [0u8; 32];
    getrandom::getrandom(&mut raw).map_err(|e| StoreError::Io {
        path: PathBuf::from("(system random source)"),
        source: io::Error::other(e.to_string()),
    })?;
    raw[0] &= 248;
    raw[31] &= 127;
    raw[31] |= 64;
    Ok(Key(raw))
}

/// The WireGuard public key of a private key.
pub fn public_key_of(private_key: &Key) -> Key {
    let secret = x25519_dalek::StaticSecret::from(private_key.0);
    Key(x25519_dalek::PublicKey::from(&secret).to_bytes())
}

/// Writes `bytes` to `path` with [`underpass_durable::write`]: temp file, fsync, rename, fsync
/// of the directory; mode 0600 on Unix.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    underpass_durable::write(path, bytes).map_err(|e| StoreError::Io {
        path: e.path,
        source: io::Error::new(e.source.kind(), format!("{} ({})", e.source, e.step)),
    })
}

fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

#[cfg(unix)]
fn restrict_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))
}

#[cfg(not(unix))]
fn restrict_dir(_dir: &Path) -> Result<(), StoreError> {
    Ok(())
}

/// Where profiles live unless told otherwise: `$XDG_CONFIG_HOME/underpass`, else
/// `$HOME/.config/underpass` (`%APPDATA%\Underpass` on Windows). `None` when the environment
/// names no home at all.
pub fn default_config_dir() -> Option<PathBuf> {
    if cfg!(windows) {
        return std::env::var_os("APPDATA").map(|d| PathBuf::from(d).join("Underpass"));
    }
    config_dir_from(
        std::env::var_os("XDG_CONFIG_HOME"),
        std::env::var_os("HOME"),
    )
}

fn config_dir_from(xdg: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    // The XDG spec says a relative XDG_CONFIG_HOME is invalid and must be ignored.
    let xdg = xdg.map(PathBuf::from).filter(|p| p.is_absolute());
    let home = home.filter(|h| !h.is_empty()).map(PathBuf::from);
    xdg.or_else(|| home.map(|h| h.join(".config")))
        .map(|base| base.join("underpass"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rules() {
        for ok in ["se-sto", "a", "Mullvad_SE.4", &"x".repeat(64)] {
            ProfileName::new(ok).unwrap();
        }
        for (bad, why) in [
            ("", "empty"),
            (".hidden", "start"),
            ("-flag", "start"),
            ("a b", "only letters"),
            ("a/b", "only letters"),
            ("ü", "only letters"),
            (&"x".repeat(65), "longer"),
            ("nul", "Windows"),
            ("COM1.conf", "Windows"),
        ] {
            let err = ProfileName::new(bad).unwrap_err();
            assert!(err.reason.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn file_stems_are_sanitized_into_names() {
        let name = |f: &str| ProfileName::from_file_name(Path::new(f)).map(|n| n.to_string());
        assert_eq!(name("/tmp/se-sto.conf").unwrap(), "se-sto");
        assert_eq!(name("Mullvad SE 4.conf").unwrap(), "Mullvad-SE-4");
        assert_eq!(name(".hidden wg.conf").unwrap(), "hidden-wg");
        assert_eq!(name("München (1).conf").unwrap(), "M-nchen-1");
        assert_eq!(name(&format!("{}.conf", "y".repeat(80))).unwrap().len(), 64);
        assert!(name("ü.conf").unwrap_err().reason.contains("choose a name"));
    }

    #[test]
    fn config_dir_prefers_absolute_xdg_then_home() {
        let d = |x: Option<&str>, h: Option<&str>| {
            config_dir_from(x.map(Into::into), h.map(Into::into))
        };
        assert_eq!(
            d(Some("/x/cfg"), Some("/home/u")),
            Some(PathBuf::from("/x/cfg/underpass"))
        );
        assert_eq!(
            d(Some("relative"), Some("/home/u")),
            Some(PathBuf::from("/home/u/.config/underpass"))
        );
        assert_eq!(
            d(None, Some("/home/u")),
            Some(PathBuf::from("/home/u/.config/underpass"))
        );
        assert_eq!(d(None, None), None);
    }

    #[test]
    fn every_write_and_removal_changes_when_the_profiles_last_changed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), Keystore::File).unwrap();
        let name = ProfileName::new("se-sto").unwrap();
        let mut seen = vec![store.profiles_modified().expect("the directory's time")];
        let mut step = |what: &dyn Fn()| {
            std::thread::sleep(std::time::Duration::from_millis(20)); // past the clock's grain
            what();
            let now = store.profiles_modified().unwrap();
            assert!(now > *seen.last().unwrap());
            seen.push(now);
        };
        step(&|| write_file_atomic(&store.profile_path(&name), b"{}").unwrap());
        step(&|| write_file_atomic(&store.profile_path(&name), b"{ }").unwrap());
        step(&|| fs::remove_file(store.profile_path(&name)).unwrap());
    }

    #[test]
    fn a_second_writer_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let app = Store::open_with(dir.path(), Keystore::File).unwrap();
        let cli = Store::open_with(dir.path(), Keystore::File).unwrap();
        let held = app.lock().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = std::thread::spawn(move || {
            let name = ProfileName::new("nothing-here").unwrap();
            // Any writer takes the lock first; this one then fails, which is fine here.
            let _ = cli.remove(&name);
            tx.send(()).unwrap();
        });
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(300))
                .is_err(),
            "the second writer did not wait for the lock"
        );
        drop(held);
        rx.recv_timeout(std::time::Duration::from_secs(5))
            .expect("the second writer went on once the lock was free");
        writer.join().unwrap();
    }
}
