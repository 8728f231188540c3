//! The per-user profile store.
//!
//! ```text
//! <config_dir>/profiles/<name>.json   the profile, without secrets (format "version": 1)
//! <config_dir>/keys/<name>.key        the base64 private key (0600, in a 0700 dir)
//! <config_dir>/keys/<name>.psk        preshared keys, one "<peer public key> <psk>" a line;
//!                                     only when some peer has one
//! ```
//!
//! Secrets live apart from the profile so that the profile can be shown, copied or attached
//! to a bug report without leaking a key, and so the app can later move them into the OS
//! keyring without changing the profile format.
//!
//! Every write is atomic (temp file in the same dir, fsync, rename): a crash leaves the old
//! file or the new one, never half of one. The key is written before the profile, so a
//! profile that is listed always has its key (unless someone deletes it by hand).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use underpass_proto::{Key, TunnelConfig};

use crate::wgquick::{covers_everything, Interface, Peer, WgQuickConfig};

/// The profile file format this build writes and reads.
pub const PROFILE_FORMAT_VERSION: u64 = 1;

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

/// What `underpass profiles` shows, and what the app's profile list needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProfileSummary {
    pub name: ProfileName,
    /// The file name it was imported from, if known.
    pub source: Option<String>,
    /// The first peer's endpoint.
    pub endpoint: String,
    pub addresses: Vec<IpNet>,
    pub peers: usize,
    pub full_tunnel: bool,
    /// Seconds since the Unix epoch.
    pub imported_at: u64,
}

/// A profile read back from the store, keys included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedProfile {
    pub name: ProfileName,
    pub source: Option<String>,
    pub imported_at: u64,
    pub config: WgQuickConfig,
}

impl LoadedProfile {
    /// The connect request for this profile, with default routing.
    pub fn tunnel_config(&self) -> TunnelConfig {
        self.config.to_tunnel_config(self.name.as_str())
    }
}

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The file the profile came from, kept for display.
    pub source: Option<String>,
    /// Overwrite a profile of the same name instead of refusing.
    pub replace: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub summary: ProfileSummary,
    /// True when a profile of the same name was overwritten.
    pub replaced: bool,
}

/// The on-disk profile. Private on purpose: the file format can evolve (with a version bump)
/// without changing the public types.
#[derive(Serialize, Deserialize)]
struct StoredProfile {
    version: u64,
    name: String,
    source: Option<String>,
    imported_at: u64,
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
    /// The key itself is in `keys/<name>.psk`.
    #[serde(default)]
    has_preshared_key: bool,
    allowed_ips: Vec<IpNet>,
    endpoint: String,
    #[serde(default)]
    persistent_keepalive: Option<u16>,
}

impl StoredProfile {
    fn summary(&self, name: ProfileName) -> ProfileSummary {
        ProfileSummary {
            name,
            source: self.source.clone(),
            endpoint: self.peers[0].endpoint.clone(),
            addresses: self.interface.addresses.clone(),
            peers: self.peers.len(),
            full_tunnel: covers_everything(self.peers.iter().flat_map(|p| &p.allowed_ips)),
            imported_at: self.imported_at,
        }
    }

    fn config_with_keys(&self, private_key: Key, psks: &HashMap<Key, Key>) -> WgQuickConfig {
        let i = &self.interface;
        WgQuickConfig {
            interface: Interface {
                private_key,
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
                    preshared_key: psks.get(&p.public_key).cloned(),
                    allowed_ips: p.allowed_ips.clone(),
                    endpoint: p.endpoint.clone(),
                    persistent_keepalive: p.persistent_keepalive,
                })
                .collect(),
        }
    }
}

/// The store rooted at one config directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens the store at `config_dir`, creating `profiles/` and `keys/` (0700) if needed.
    pub fn open(config_dir: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let store = Store {
            dir: config_dir.into(),
        };
        for sub in [store.profiles_dir(), store.keys_dir()] {
            fs::create_dir_all(&sub).map_err(io_err(&sub))?;
            restrict_dir(&sub)?;
        }
        Ok(store)
    }

    pub fn config_dir(&self) -> &Path {
        &self.dir
    }

    fn profiles_dir(&self) -> PathBuf {
        self.dir.join("profiles")
    }

    fn keys_dir(&self) -> PathBuf {
        self.dir.join("keys")
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

    /// Stores `config` as profile `name`. Refuses an existing name unless `opts.replace`.
    /// The config must pass [`TunnelConfig::validate`], so a stored profile can always be
    /// sent to the helper.
    pub fn import(
        &self,
        name: &ProfileName,
        config: &WgQuickConfig,
        opts: &ImportOptions,
    ) -> Result<ImportReport, StoreError> {
        config
            .to_tunnel_config(name.as_str())
            .validate()
            .map_err(|reason| StoreError::Unusable {
                name: name.to_string(),
                reason,
            })?;
        let replaced = self.exists(name);
        if replaced && !opts.replace {
            return Err(StoreError::AlreadyExists(name.to_string()));
        }
        let imported_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let stored = StoredProfile {
            version: PROFILE_FORMAT_VERSION,
            name: name.to_string(),
            source: opts.source.clone(),
            imported_at,
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
                })
                .collect(),
        };

        let key = format!("{}\n", config.interface.private_key.to_base64());
        write_atomic(&self.key_path(name), key.as_bytes(), true)?;
        let psks: String = config
            .peers
            .iter()
            .filter_map(|p| {
                let psk = p.preshared_key.as_ref()?;
                Some(format!(
                    "{} {}\n",
                    p.public_key.to_base64(),
                    psk.to_base64()
                ))
            })
            .collect();
        let psk_path = self.psk_path(name);
        if psks.is_empty() {
            remove_if_present(&psk_path)?;
        } else {
            write_atomic(&psk_path, psks.as_bytes(), true)?;
        }
        let mut json = serde_json::to_vec_pretty(&stored).expect("profile serializes");
        json.push(b'\n');
        write_atomic(&self.profile_path(name), &json, false)?;

        Ok(ImportReport {
            summary: stored.summary(name.clone()),
            replaced,
        })
    }

    /// Every stored profile, sorted by name. A corrupt file is an error naming that file.
    pub fn list(&self) -> Result<Vec<ProfileSummary>, StoreError> {
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
            out.push(stored.summary(name));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Reads a profile and its keys.
    pub fn load(&self, name: &ProfileName) -> Result<LoadedProfile, StoreError> {
        let stored = self.read_profile(name)?;
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
        let psks = if stored.peers.iter().any(|p| p.has_preshared_key) {
            self.read_psks(name)?
        } else {
            HashMap::new()
        };
        let psk_path = self.psk_path(name);
        for p in stored.peers.iter().filter(|p| p.has_preshared_key) {
            if !psks.contains_key(&p.public_key) {
                return Err(StoreError::Corrupt {
                    path: psk_path,
                    reason: format!("no preshared key for peer {}", p.public_key.to_base64()),
                });
            }
        }
        Ok(LoadedProfile {
            name: name.clone(),
            source: stored.source.clone(),
            imported_at: stored.imported_at,
            config: stored.config_with_keys(private_key, &psks),
        })
    }

    /// Deletes a profile and its keys.
    pub fn remove(&self, name: &ProfileName) -> Result<(), StoreError> {
        let path = self.profile_path(name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound(name.to_string()))
            }
            Err(e) => return Err(io_err(&path)(e)),
        }
        remove_if_present(&self.key_path(name))?;
        remove_if_present(&self.psk_path(name))
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
            Some(PROFILE_FORMAT_VERSION) => {}
            Some(found) if found > PROFILE_FORMAT_VERSION => {
                return Err(StoreError::UnsupportedVersion { path, found })
            }
            Some(found) => return Err(corrupt(format!("unknown format version {found}"))),
            None => return Err(corrupt("no \"version\" field".into())),
        }
        let stored: StoredProfile =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
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

/// Writes `bytes` to `path` atomically: a temp file in the same directory, fsync, rename,
/// then fsync of the directory so the rename itself survives a crash.
fn write_atomic(path: &Path, bytes: &[u8], secret: bool) -> Result<(), StoreError> {
    let dir = path.parent().expect("store paths have a parent");
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err(dir))?;
    // tempfile already creates files as 0600 on Unix; say so explicitly for the secrets.
    if secret {
        restrict_file(tmp.as_file(), tmp.path())?;
    }
    tmp.write_all(bytes).map_err(io_err(tmp.path()))?;
    tmp.as_file().sync_all().map_err(io_err(path))?;
    tmp.persist(path).map_err(|e| io_err(path)(e.error))?;
    sync_dir(dir)
}

fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

#[cfg(unix)]
fn restrict_file(file: &fs::File, path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(io_err(path))
}

#[cfg(not(unix))]
fn restrict_file(_file: &fs::File, _path: &Path) -> Result<(), StoreError> {
    // The per-user profile directory's ACL already restricts access on Windows.
    Ok(())
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

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), StoreError> {
    // Windows cannot open a directory as a file; its rename is durable once it returns.
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
}
