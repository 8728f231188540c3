//! The app's own settings (`gui-settings.json` in the config dir, beside the CLI's profiles).
//! The kill switch and LAN access are *not* here: the helper owns and persists them, and the
//! app shows what the helper reports.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::connect::Target;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Settings {
    /// Prefixes routed into the tunnel; empty means a full tunnel.
    #[cfg_attr(test, ts(as = "Vec<String>"))]
    pub split_include: Vec<IpNet>,
    /// Prefixes kept out of the tunnel.
    #[cfg_attr(test, ts(as = "Vec<String>"))]
    pub split_exclude: Vec<IpNet>,
    /// Desktop notifications on connect, unexpected disconnect, kill-switch block and a
    /// failed self-test.
    pub notifications: bool,
    /// Resolvers to use instead of the profile's; empty means the profile's. They are
    /// reached through the tunnel like the profile's, and a policy with `dns_locked` refuses
    /// them.
    pub custom_dns: Vec<IpAddr>,
    /// Connect to [`Settings::last_target`] when the app starts.
    pub connect_on_launch: bool,
    /// Start the app (in the tray) when the user logs in. The OS's autostart entry is the
    /// truth: `get_settings` reports the entry, `save_settings` writes or removes it; the value
    /// kept in the file only records the last choice.
    pub launch_at_login: bool,
    /// What Connect, the tray and connect-on-launch use: the last server or "fastest" chosen.
    pub last_target: Option<Target>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            split_include: vec![],
            split_exclude: vec![],
            notifications: true,
            custom_dns: vec![],
            connect_on_launch: false,
            launch_at_login: false,
            last_target: None,
        }
    }
}

/// The Settings screen's form, as typed: lists are text, validated here.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SettingsForm {
    pub include: String,
    pub exclude: String,
    pub custom_dns: String,
    pub notifications: bool,
    pub connect_on_launch: bool,
    pub launch_at_login: bool,
}

impl SettingsForm {
    /// The settings this form makes, keeping what the form does not show from `current`.
    /// Every bad entry of every list is named.
    pub fn apply(&self, current: &Settings) -> Result<Settings, String> {
        let include = parse_prefixes(&self.include).map_err(|e| format!("Include: {e}"));
        let exclude = parse_prefixes(&self.exclude).map_err(|e| format!("Exclude: {e}"));
        let dns = parse_addresses(&self.custom_dns).map_err(|e| format!("DNS: {e}"));
        let errors: Vec<String> = [
            include.as_ref().err(),
            exclude.as_ref().err(),
            dns.as_ref().err(),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        Ok(Settings {
            split_include: include?,
            split_exclude: exclude?,
            custom_dns: dns?,
            notifications: self.notifications,
            connect_on_launch: self.connect_on_launch,
            launch_at_login: self.launch_at_login,
            last_target: current.last_target.clone(),
        })
    }
}

impl Settings {
    pub fn is_split(&self) -> bool {
        !self.split_include.is_empty() || !self.split_exclude.is_empty()
    }

    /// Forgets `profile` as the last server used (it was deleted); true when it was.
    pub fn forget_profile(&mut self, profile: &str) -> bool {
        let was =
            matches!(&self.last_target, Some(Target::Server { profile: p, .. }) if p == profile);
        if was {
            self.last_target = None;
        }
        was
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
    for (i, item) in split_list(text).enumerate() {
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

/// Parses a list of resolver addresses, one per line or comma-separated.
pub fn parse_addresses(text: &str) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (i, item) in split_list(text).enumerate() {
        match item.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() || ip.is_multicast() => bad.push(format!(
                "entry {}: {item} cannot be a resolver's address",
                i + 1
            )),
            Ok(ip) => out.push(ip),
            Err(_) => bad.push(format!(
                "entry {}: {item:?} is not an address like 10.64.0.1 or fd00::53",
                i + 1
            )),
        }
    }
    if out.len() > 8 {
        bad.push(format!("{} resolvers; at most 8", out.len()));
    }
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(bad.join("; "))
    }
}

fn split_list(text: &str) -> impl Iterator<Item = &str> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
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
            notifications: false,
            custom_dns: vec!["10.64.0.1".parse().unwrap()],
            connect_on_launch: true,
            last_target: Some(Target::Fastest {
                country: Some("SE".into()),
            }),
            ..Settings::default()
        };
        s.save(dir.path()).unwrap();
        assert_eq!(Settings::load(dir.path()).unwrap(), s);
    }

    #[test]
    fn the_form_names_every_bad_entry_of_every_list_and_keeps_the_last_target() {
        let current = Settings {
            last_target: Some(Target::Server {
                profile: "se".into(),
                server: None,
            }),
            ..Settings::default()
        };
        let form = SettingsForm {
            include: "10.0.0.0/8".into(),
            exclude: "".into(),
            custom_dns: "10.64.0.1, fd00::53".into(),
            notifications: true,
            connect_on_launch: true,
            launch_at_login: false,
        };
        let s = form.apply(&current).unwrap();
        assert_eq!(s.custom_dns.len(), 2);
        assert_eq!(s.last_target, current.last_target);
        let bad = SettingsForm {
            include: "banana".into(),
            custom_dns: "10.64.0.1, 0.0.0.0, dns.example".into(),
            ..form
        };
        let e = bad.apply(&current).unwrap_err();
        assert!(e.contains("Include: entry 1: \"banana\""), "{e}");
        assert!(e.contains("DNS: entry 2: 0.0.0.0 cannot be"), "{e}");
        assert!(
            e.contains("entry 3: \"dns.example\" is not an address"),
            "{e}"
        );
    }

    #[test]
    fn an_older_settings_file_loads_with_defaults_for_new_fields() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            Settings::path(dir.path()),
            r#"{"split_include":[],"split_exclude":[],"notifications":false}"#,
        )
        .unwrap();
        let s = Settings::load(dir.path()).unwrap();
        assert!(!s.notifications);
        assert_eq!(s.last_target, None);
        assert!(!s.connect_on_launch);
    }

    #[test]
    fn a_deleted_profile_is_forgotten_as_the_last_server_and_nothing_else_is() {
        let mut s = Settings {
            last_target: Some(Target::Server {
                profile: "se".into(),
                server: None,
            }),
            ..Settings::default()
        };
        assert!(!s.forget_profile("de"));
        assert!(s.last_target.is_some());
        assert!(s.forget_profile("se"));
        assert_eq!(s.last_target, None);
        let mut fastest = Settings {
            last_target: Some(Target::default()),
            ..Settings::default()
        };
        assert!(!fastest.forget_profile("se"));
    }
}
