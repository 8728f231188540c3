//! Where a profile's private key and preshared keys live: the OS keyring, or (opt-in) files.
//!
//! - [`Keystore::Keyring`]: the Secret Service on Linux, the Keychain on macOS, the Credential
//!   Manager on Windows, through the `keyring` crate. One entry per profile, service
//!   `underpass`, user `<store id>/<profile>`, holding a small JSON document with the private
//!   key and any preshared keys. The store id (a random value kept in the store directory)
//!   keeps two stores of one user (say, a test's and the real one) from sharing entries.
//! - [`Keystore::File`]: `keys/<name>.key` and `keys/<name>.psk`, mode 0600 in a 0700
//!   directory. Only when the user asks for it (`--keystore file`): a headless server has no
//!   secret service, and files are readable by root and by anything running as the user.
//!
//! `keyring` 3.x silently uses an in-memory mock when no store feature is enabled; the
//! crate's Cargo.toml enables one per OS, and the keyring test reads a secret back from a
//! second process to prove it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use underpass_proto::Key;

/// Which store holds private keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum Keystore {
    /// The OS keyring (the default).
    Keyring,
    /// Files of mode 0600 next to the profiles (explicit opt-in).
    File,
}

impl std::fmt::Display for Keystore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Keystore::Keyring => "keyring",
            Keystore::File => "file",
        })
    }
}

impl std::str::FromStr for Keystore {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "keyring" => Ok(Keystore::Keyring),
            "file" => Ok(Keystore::File),
            _ => Err(format!(
                "{s:?} is not a keystore: use \"keyring\" or \"file\""
            )),
        }
    }
}

/// The secrets of one profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileSecrets {
    pub private_key: Key,
    /// Peer public key (base64) to preshared key.
    #[serde(default)]
    pub preshared_keys: BTreeMap<String, Key>,
}

/// Why the keyring could not be used, in the keyring's own words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// No secret service, a locked keyring, or no access to it.
    #[error("the OS keyring is not available ({0})")]
    Unavailable(String),
    /// The entry does not exist.
    #[error("the OS keyring has no entry {0:?}")]
    Missing(String),
    /// The entry exists but does not hold what Underpass wrote.
    #[error("the OS keyring entry {entry:?} is not an Underpass key ({reason})")]
    Corrupt { entry: String, reason: String },
}

/// The keyring service name of every Underpass entry.
pub const KEYRING_SERVICE: &str = "underpass";

#[cfg(any(target_os = "linux", target_os = "macos", windows))]
mod os {
    use super::*;

    fn entry(user: &str) -> Result<keyring::Entry, KeyringError> {
        keyring::Entry::new(KEYRING_SERVICE, user).map_err(|e| unavailable(user, e))
    }

    fn unavailable(user: &str, e: keyring::Error) -> KeyringError {
        match e {
            keyring::Error::NoEntry => KeyringError::Missing(user.to_string()),
            other => KeyringError::Unavailable(other.to_string()),
        }
    }

    pub fn set(user: &str, secret: &str) -> Result<(), KeyringError> {
        entry(user)?
            .set_password(secret)
            .map_err(|e| unavailable(user, e))
    }

    pub fn get(user: &str) -> Result<String, KeyringError> {
        entry(user)?
            .get_password()
            .map_err(|e| unavailable(user, e))
    }

    pub fn delete(user: &str) -> Result<(), KeyringError> {
        match entry(user)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(unavailable(user, e)),
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
mod os {
    use super::*;
    const WHY: &str = "Underpass knows no OS keyring on this system";
    pub fn set(_: &str, _: &str) -> Result<(), KeyringError> {
        Err(KeyringError::Unavailable(WHY.into()))
    }
    pub fn get(_: &str) -> Result<String, KeyringError> {
        Err(KeyringError::Unavailable(WHY.into()))
    }
    pub fn delete(_: &str) -> Result<(), KeyringError> {
        Err(KeyringError::Unavailable(WHY.into()))
    }
}

/// Stores `secrets` under keyring user `user`, then reads them back: a keyring that accepts
/// a write and forgets it (a mock, a session-only collection) is caught here, not at connect.
pub fn keyring_store(user: &str, secrets: &ProfileSecrets) -> Result<(), KeyringError> {
    let text = serde_json::to_string(secrets).expect("secrets serialize");
    os::set(user, &text)?;
    match keyring_load(user) {
        Ok(back) if &back == secrets => Ok(()),
        Ok(_) => Err(KeyringError::Unavailable(
            "it returned something else than was just stored".into(),
        )),
        Err(e) => Err(e),
    }
}

pub fn keyring_load(user: &str) -> Result<ProfileSecrets, KeyringError> {
    let text = os::get(user)?;
    serde_json::from_str(&text).map_err(|e| KeyringError::Corrupt {
        entry: user.to_string(),
        reason: e.to_string(),
    })
}

pub fn keyring_delete(user: &str) -> Result<(), KeyringError> {
    os::delete(user)
}
