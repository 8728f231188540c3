//! The system directory: what IT installs on a machine, and what the helper obeys.
//!
//! ```text
//! /etc/underpass/                  root-owned, not writable by group or others
//!   trusted-keys/*.pub             the organizations' minisign public keys (pinned)
//!   policy.json                    optional: the managed policy the whole machine obeys
//! ```
//!
//! Without `policy.json` the machine is not managed: any user may connect any tunnel, and a
//! signed bundle's policy binds the sessions of that bundle (consumers). With it, the helper
//! holds every session to it, whatever the client sends; a field left out of `policy.json`
//! takes its permissive default, so IT writes down exactly what it forbids.
//!
//! Files that are writable by anyone but their root owner are refused, because whoever can
//! write them decides what the helper trusts. A file that cannot be read is an error naming
//! it (and for `policy.json` the line and column), never "not managed".

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use underpass_proto::{check_text, KillSwitchMode, Policy, SessionPolicy};

use crate::bundle::{find_key, SignerKey};

/// The system directory unless the helper is told otherwise (`--system-dir`).
pub const DEFAULT_SYSTEM_DIR: &str = if cfg!(windows) {
    r"C:\ProgramData\Underpass"
} else {
    "/etc/underpass"
};

/// The pinned keys' directory inside the system directory.
pub const TRUSTED_KEYS: &str = "trusted-keys";
/// The managed policy's file inside the system directory.
pub const POLICY_FILE: &str = "policy.json";

/// The system-wide directory of pinned keys, unless overridden.
pub const DEFAULT_SYSTEM_TRUST_DIR: &str = if cfg!(windows) {
    r"C:\ProgramData\Underpass\trusted-keys"
} else {
    "/etc/underpass/trusted-keys"
};

fn yes() -> bool {
    true
}

/// `policy.json`: what a managed machine requires of every session. Unknown fields are
/// refused, so a rule this build does not know is never silently ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagedPolicy {
    /// Shown to users as "managed by ORGANIZATION".
    pub organization: String,
    /// Every tunnel must come from a bundle signed by a key in `trusted-keys/`.
    #[serde(default)]
    pub require_signed_bundle: bool,
    /// The weakest kill switch anyone may set, connected or not.
    #[serde(default)]
    pub min_kill_switch: KillSwitchMode,
    #[serde(default = "yes")]
    pub split_tunnel_allowed: bool,
    #[serde(default = "yes")]
    pub lan_access_allowed: bool,
    /// DNS only to the tunnel's resolvers as the bundle names them (implies at least `auto`).
    #[serde(default)]
    pub dns_locked: bool,
    /// When set, only servers of signed bundles in these countries (ISO codes) may be used.
    #[serde(default)]
    pub allowed_countries: Option<Vec<String>>,
    /// When set, only these server ids of signed bundles may be used.
    #[serde(default)]
    pub allowed_servers: Option<Vec<String>>,
    /// Admit the user of an active local session who is not in the helper's group (as
    /// polkit's allow_active). `false` leaves only root and the group's members.
    #[serde(default = "yes")]
    pub active_session_admission: bool,
}

impl ManagedPolicy {
    /// The session rules of this policy, as the IPC contract states them.
    pub fn policy(&self) -> Policy {
        Policy {
            min_kill_switch: self.min_kill_switch,
            split_tunnel_allowed: self.split_tunnel_allowed,
            lan_access_allowed: self.lan_access_allowed,
            dns_locked: self.dns_locked,
        }
    }

    /// Restricts servers to the lists, if any, naming the rule a server breaks.
    pub fn check_server(&self, id: &str, country: &str) -> Result<(), String> {
        if let Some(list) = &self.allowed_countries {
            if !list.iter().any(|c| c == country) {
                return Err(format!(
                    "servers in {country} are not allowed (allowed countries: {})",
                    list.join(", ")
                ));
            }
        }
        if let Some(list) = &self.allowed_servers {
            if !list.iter().any(|s| s == id) {
                return Err(format!(
                    "server {id:?} is not allowed (allowed servers: {})",
                    list.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Whether only servers of a signed bundle can satisfy this policy.
    pub fn needs_bundle(&self) -> bool {
        self.require_signed_bundle
            || self.allowed_countries.is_some()
            || self.allowed_servers.is_some()
    }
}

/// The strictest of two policies: the higher kill switch, what both allow, DNS locked if
/// either locks it.
pub fn strictest(a: &Policy, b: &Policy) -> Policy {
    Policy {
        min_kill_switch: a.min_kill_switch.max(b.min_kill_switch),
        split_tunnel_allowed: a.split_tunnel_allowed && b.split_tunnel_allowed,
        lan_access_allowed: a.lan_access_allowed && b.lan_access_allowed,
        dns_locked: a.dns_locked || b.dns_locked,
    }
}

/// Why the system directory cannot be used. Each names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SystemError {
    #[error("{}: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },
    #[error("{}: {reason}; IT's files must be owned by root and writable by nobody else", path.display())]
    Unsafe { path: PathBuf, reason: String },
    #[error("{}: line {line}, column {column}: {reason}", path.display())]
    BadPolicy {
        path: PathBuf,
        line: usize,
        column: usize,
        reason: String,
    },
}

/// The system directory as read now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemDir {
    pub dir: PathBuf,
    /// `policy.json`, when the machine is managed.
    pub managed: Option<ManagedPolicy>,
}

impl SystemDir {
    /// Reads `dir`. A missing directory is an unmanaged machine with no pinned keys.
    pub fn load(dir: &Path) -> Result<SystemDir, SystemError> {
        let unreadable = |path: &Path, e: io::Error| SystemError::Unreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let out = SystemDir {
            dir: dir.to_path_buf(),
            managed: None,
        };
        match fs::metadata(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(unreadable(dir, e)),
            Ok(m) => check_owner(dir, &m)?,
        }
        let keys = dir.join(TRUSTED_KEYS);
        match fs::metadata(&keys) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(unreadable(&keys, e)),
            Ok(m) => check_owner(&keys, &m)?,
        }
        let path = dir.join(POLICY_FILE);
        let text = match fs::read_to_string(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(unreadable(&path, e)),
            Ok(t) => t,
        };
        check_owner(
            &path,
            &fs::metadata(&path).map_err(|e| unreadable(&path, e))?,
        )?;
        let managed: ManagedPolicy =
            serde_json::from_str(&text).map_err(|e| SystemError::BadPolicy {
                path: path.clone(),
                line: e.line(),
                column: e.column(),
                reason: e.to_string(),
            })?;
        let bad = |reason: String| SystemError::BadPolicy {
            path: path.clone(),
            line: 0,
            column: 0,
            reason,
        };
        if managed.organization.trim().is_empty() {
            return Err(bad("\"organization\" must name the organization".into()));
        }
        check_text("organization", &managed.organization).map_err(bad)?;
        for c in managed.allowed_countries.iter().flatten() {
            if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(bad(format!(
                    "allowed_countries: {c:?} is not an upper-case ISO 3166-1 code such as SE"
                )));
            }
        }
        Ok(SystemDir {
            managed: Some(managed),
            ..out
        })
    }

    /// The directory of pinned keys.
    pub fn trusted_keys(&self) -> PathBuf {
        self.dir.join(TRUSTED_KEYS)
    }

    /// The pinned key file that holds `signer`, if any.
    pub fn pinned(&self, signer: &SignerKey) -> Result<Option<PathBuf>, SystemError> {
        let dir = self.trusted_keys();
        find_key(&dir, signer).map_err(|reason| SystemError::Unreadable { path: dir, reason })
    }

    /// The managed policy as a session policy (serial 0: it is not a bundle's).
    pub fn session_policy(&self) -> Option<SessionPolicy> {
        self.managed.as_ref().map(|m| SessionPolicy {
            organization: m.organization.clone(),
            serial: 0,
            policy: m.policy(),
        })
    }

    /// Whether the user of an active local session may use the helper without being in its
    /// group. True unless a managed policy turns it off.
    pub fn active_session_admission(&self) -> bool {
        self.managed
            .as_ref()
            .is_none_or(|m| m.active_session_admission)
    }
}

#[cfg(unix)]
fn check_owner(path: &Path, meta: &fs::Metadata) -> Result<(), SystemError> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let unsafe_because = |reason: String| SystemError::Unsafe {
        path: path.to_path_buf(),
        reason,
    };
    if meta.uid() != 0 && meta.uid() != me {
        return Err(unsafe_because(format!("owned by uid {}", meta.uid())));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_because(format!(
            "writable by group or others (mode {:o})",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_owner(_path: &Path, _meta: &fs::Metadata) -> Result<(), SystemError> {
    // ProgramData's ACL admits only administrators to write there.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(policy: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(POLICY_FILE), policy).unwrap();
        set_mode(&dir.path().join(POLICY_FILE), 0o644);
        dir
    }

    fn set_mode(path: &Path, mode: u32) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        }
        #[cfg(not(unix))]
        let _ = (path, mode);
    }

    #[test]
    fn a_missing_directory_is_an_unmanaged_machine() {
        let dir = tempfile::tempdir().unwrap();
        let s = SystemDir::load(&dir.path().join("none")).unwrap();
        assert_eq!(s.managed, None);
        assert!(s.active_session_admission());
        assert_eq!(s.session_policy(), None);
    }

    #[test]
    fn a_managed_policy_takes_permissive_defaults_for_what_it_leaves_out() {
        let dir = dir_with(r#"{"organization": "ACME IT", "min_kill_switch": "lockdown"}"#);
        let s = SystemDir::load(dir.path()).unwrap();
        let m = s.managed.unwrap();
        assert_eq!(m.min_kill_switch, KillSwitchMode::Lockdown);
        assert!(m.split_tunnel_allowed && m.lan_access_allowed && m.active_session_admission);
        assert!(!m.require_signed_bundle && !m.needs_bundle());
    }

    #[test]
    fn a_broken_policy_names_the_file_and_line() {
        let dir = dir_with("{\n  \"organization\": \"ACME\",\n  \"allow_everything\": true\n}\n");
        let err = SystemDir::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("policy.json: line 3") && err.contains("allow_everything"),
            "{err}"
        );
    }

    #[test]
    fn a_policy_anyone_may_write_is_refused() {
        let dir = dir_with(r#"{"organization": "ACME IT"}"#);
        set_mode(&dir.path().join(POLICY_FILE), 0o666);
        let err = SystemDir::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("writable by group or others"), "{err}");
    }

    #[test]
    fn the_strictest_policy_wins_and_server_lists_name_the_rule() {
        let open = Policy {
            min_kill_switch: KillSwitchMode::Off,
            split_tunnel_allowed: true,
            lan_access_allowed: true,
            dns_locked: false,
        };
        let strict = Policy {
            min_kill_switch: KillSwitchMode::Auto,
            split_tunnel_allowed: false,
            lan_access_allowed: true,
            dns_locked: true,
        };
        assert_eq!(strictest(&open, &strict), strict);
        assert_eq!(strictest(&strict, &open), strict);
        let dir = dir_with(
            r#"{"organization": "ACME IT", "allowed_countries": ["SE"], "active_session_admission": false}"#,
        );
        let s = SystemDir::load(dir.path()).unwrap();
        assert!(!s.active_session_admission());
        let m = s.managed.unwrap();
        assert!(m.needs_bundle());
        m.check_server("se-1", "SE").unwrap();
        assert!(m.check_server("de-1", "DE").unwrap_err().contains("DE"));
    }
}
