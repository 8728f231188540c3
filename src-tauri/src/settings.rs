//! The app's own settings (`gui-settings.json` in the config dir, beside the CLI's profiles).
//! The kill switch and LAN access are *not* here: the helper owns and persists them, and the
//! app shows what the helper reports.

use std::fs;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Prefixes routed into the tunnel; empty means a full tunnel.
    pub split_include: Vec<IpNet>,
    /// Prefixes kept out of the tunnel.
    pub split_exclude: Vec<IpNet>,
    /// Desktop notifications on connect, unexpected disconnect, kill-switch block.
    pub notifications: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            split_include: vec![],
            split_exclude: vec![],
            notifications: true,
        }
    }
}

impl Settings {
    pub fn is_split(&self) -> bool {
        !self.split_include.is_empty() || !self.split_exclude.is_empty()
    }

    pub fn path(config_dir: &Path) -> PathBuf {
        config_dir.join("gui-settings.json")
    }

    /// Missing file: defaults. An unreadable one is an error naming it.
    pub fn load(config_dir: &Path) -> Result<Settings, String> {
        let path = Self::path(config_dir);
        match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    pub fn save(&self, config_dir: &Path) -> Result<(), String> {
        fs::create_dir_all(config_dir).map_err(|e| format!("{}: {e}", config_dir.display()))?;
        let json = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        underpass_profile::store::write_file_atomic(&Self::path(config_dir), &json)
            .map_err(|e| e.to_string())
    }
}

/// Parses the prefix lists as typed in the Settings screen: one prefix per line or
/// comma-separated. Every bad entry is named, with its position.
pub fn parse_prefixes(text: &str) -> Result<Vec<IpNet>, String> {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (i, item) in text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
    {
        match item.parse::<IpNet>() {
            Ok(net) if net.trunc() == net => out.push(net),
            Ok(net) => bad.push(format!(
                "entry {}: {item} has host bits set (did you mean {}?)",
                i + 1,
                net.trunc()
            )),
            Err(_) => bad.push(format!(
                "entry {}: {item:?} is not a prefix like 10.0.0.0/8 or fd00::/8",
                i + 1
            )),
        }
    }
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(bad.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_validated_and_every_bad_one_named() {
        assert_eq!(
            parse_prefixes("10.0.0.0/8, fd00::/8\n192.0.2.0/24")
                .unwrap()
                .len(),
            3
        );
        let e = parse_prefixes("10.0.0.0/8, banana, 10.1.2.3/16").unwrap_err();
        assert!(e.contains("entry 2: \"banana\""), "{e}");
        assert!(e.contains("did you mean 10.1.0.0/16"), "{e}");
        assert!(parse_prefixes("  ").unwrap().is_empty());
    }

    #[test]
    fn settings_round_trip_and_default_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Settings::load(dir.path()).unwrap(), Settings::default());
        let s = Settings {
            split_include: vec!["10.0.0.0/8".parse().unwrap()],
            split_exclude: vec![],
            notifications: false,
        };
        s.save(dir.path()).unwrap();
        assert_eq!(Settings::load(dir.path()).unwrap(), s);
    }
}
