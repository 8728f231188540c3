//! What the user asked the helper for, persisted so that a crash or reboot cannot change it:
//! the kill-switch mode, LAN access, and the tunnel the user wants up (if any).
//!
//! The file lives in the root-only state dir and is replaced with `underpass_durable::write`
//! (temporary file, fsync, rename, fsync of the directory), so a helper killed mid-write leaves
//! either the old intent or the new one, never a torn file.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use underpass_proto::{KillSwitchMode, TunnelConfig};

use crate::failover::Rotation;

const VERSION: u32 = 1;
const FILE: &str = "intent.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intent {
    pub version: u32,
    pub kill_switch: KillSwitchMode,
    pub lan_access: bool,
    /// The tunnel the user wants up; `None` after an explicit disconnect.
    pub wanted: Option<TunnelConfig>,
    /// The rest of the user's choice of servers, after `wanted` (issue 8).
    #[serde(default, skip_serializing_if = "is_single")]
    pub rotation: Rotation,
}

fn is_single(r: &Rotation) -> bool {
    r.next.is_empty()
}

impl Default for Intent {
    fn default() -> Self {
        Intent {
            version: VERSION,
            kill_switch: KillSwitchMode::default(),
            lan_access: false,
            wanted: None,
            rotation: Rotation::default(),
        }
    }
}

pub struct IntentStore {
    dir: PathBuf,
}

impl IntentStore {
    pub fn new(dir: &Path) -> IntentStore {
        IntentStore { dir: dir.into() }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// The saved intent; `None` when there is none yet. A file that cannot be read is an error,
    /// which the caller must treat as "block", never as "nothing was wanted".
    pub fn load(&self) -> Result<Option<Intent>> {
        let path = self.path();
        // The intent holds the wanted tunnel's private key: wipe every copy made here.
        let bytes = match std::fs::read(&path) {
            Ok(b) => zeroize::Zeroizing::new(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let intent: Intent = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is corrupt", path.display()))?;
        if intent.version != VERSION {
            bail!(
                "{} has version {}, this helper understands {VERSION}",
                path.display(),
                intent.version
            );
        }
        Ok(Some(intent))
    }

    pub fn save(&self, intent: &Intent) -> Result<()> {
        let mut json = zeroize::Zeroizing::new(
            serde_json::to_vec_pretty(intent).context("serializing the intent")?,
        );
        json.push(b'\n');
        underpass_durable::write(&self.path(), &json)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intent_survives_a_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = IntentStore::new(dir.path());
        assert_eq!(store.load().unwrap(), None);
        let intent = Intent {
            kill_switch: KillSwitchMode::Lockdown,
            lan_access: true,
            ..Intent::default()
        };
        store.save(&intent).unwrap();
        assert_eq!(store.load().unwrap(), Some(intent));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary files left behind");
    }

    #[test]
    fn a_torn_intent_file_is_an_error_not_an_empty_intent() {
        let dir = tempfile::tempdir().unwrap();
        let store = IntentStore::new(dir.path());
        std::fs::write(store.path(), b"{\"version\":1,\"kill_sw").unwrap();
        let err = store.load().unwrap_err();
        assert!(format!("{err:#}").contains("corrupt"), "{err:#}");
    }

    #[test]
    fn a_future_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = IntentStore::new(dir.path());
        let intent = Intent {
            version: 9,
            ..Intent::default()
        };
        std::fs::write(store.path(), serde_json::to_vec(&intent).unwrap()).unwrap();
        assert!(format!("{:#}", store.load().unwrap_err()).contains("version 9"));
    }
}
