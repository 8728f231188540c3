//! Linux DNS through `/etc/resolv.conf`, rewritten in place.
//!
//! In place, not by rename: the file is often a bind mount (containers, and `ip netns exec`
//! mounting `/etc/netns/NAME/resolv.conf` over it), where renaming over it fails. When the file
//! is systemd-resolved's stub, rewriting it would be wrong, and the D-Bus backend is not written
//! yet: the helper then refuses to connect with DNS rather than leave the old resolver in place.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::{DnsConfig, DnsManager, DnsPaths};

const BACKUP: &str = "resolv.conf.backup";
const STUB: &str = "127.0.0.53";

pub struct ResolvConf {
    paths: DnsPaths,
    /// What we wrote, to notice when someone else rewrites the file.
    written: Option<Vec<u8>>,
}

impl ResolvConf {
    fn backup_path(&self) -> PathBuf {
        self.paths.state_dir.join(BACKUP)
    }

    fn write_in_place(&self, bytes: &[u8]) -> Result<()> {
        let path = &self.paths.resolv_conf;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)
            .with_context(|| format!("opening {} for writing", path.display()))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// The file we install: our servers and search domains, nothing else.
pub fn render(config: &DnsConfig) -> Vec<u8> {
    let mut s = String::from(
        "# Written by underpassd while the VPN tunnel is up.\n\
         # The original is restored on disconnect.\n",
    );
    for server in &config.servers {
        s.push_str(&format!("nameserver {server}\n"));
    }
    if !config.search.is_empty() {
        s.push_str(&format!("search {}\n", config.search.join(" ")));
    }
    s.into_bytes()
}

impl DnsManager for ResolvConf {
    fn new(paths: DnsPaths) -> Self {
        ResolvConf {
            paths,
            written: None,
        }
    }

    fn method(&self) -> &'static str {
        "resolv.conf"
    }

    async fn set(&mut self, config: &DnsConfig) -> Result<()> {
        let path = &self.paths.resolv_conf;
        let current = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let is_stub = String::from_utf8_lossy(&current)
            .lines()
            .any(|l| l.split_whitespace().eq(["nameserver", STUB]));
        if is_stub && self.written.is_none() && !self.backup_path().exists() {
            bail!(
                "{} points at systemd-resolved ({STUB}); setting DNS through systemd-resolved is \
                 not supported yet, so the tunnel's DNS cannot be put in place",
                path.display()
            );
        }
        let backup = self.backup_path();
        if !backup.exists() {
            let mut tmp = tempfile::NamedTempFile::new_in(&self.paths.state_dir)
                .context("creating the resolv.conf backup")?;
            tmp.write_all(&current)?;
            tmp.as_file().sync_all()?;
            tmp.persist(&backup)
                .with_context(|| format!("saving {}", backup.display()))?;
        }
        let bytes = render(config);
        self.write_in_place(&bytes)?;
        self.written = Some(bytes);
        Ok(())
    }

    async fn reassert(&mut self) -> Result<bool> {
        let Some(written) = &self.written else {
            return Ok(false);
        };
        let path = &self.paths.resolv_conf;
        let current = std::fs::read(path).unwrap_or_default();
        if &current == written {
            return Ok(false);
        }
        let bytes = written.clone();
        self.write_in_place(&bytes)?;
        Ok(true)
    }

    async fn restore(&mut self) -> Result<()> {
        self.written = None;
        let backup = self.backup_path();
        let original = match std::fs::read(&backup) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", backup.display())),
        };
        self.write_in_place(&original)?;
        std::fs::remove_file(&backup).with_context(|| format!("removing {}", backup.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(original: &str) -> (tempfile::TempDir, ResolvConf) {
        let dir = tempfile::tempdir().unwrap();
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(&resolv, original).unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let dns = ResolvConf::new(DnsPaths {
            resolv_conf: resolv,
            state_dir: state,
        });
        (dir, dns)
    }

    fn config() -> DnsConfig {
        DnsConfig {
            servers: vec![
                "10.64.1.1".parse().unwrap(),
                "fd00:64:1::1".parse().unwrap(),
            ],
            search: vec!["corp.example".into()],
        }
    }

    #[tokio::test]
    async fn set_then_restore_is_byte_identical() {
        let original = "# ISP\nnameserver 198.51.100.1\noptions edns0 trust-ad\n";
        let (_dir, mut dns) = setup(original);
        dns.set(&config()).await.unwrap();
        let now = std::fs::read_to_string(&dns.paths.resolv_conf).unwrap();
        assert!(
            now.contains("nameserver 10.64.1.1\nnameserver fd00:64:1::1\nsearch corp.example\n")
        );
        assert!(!now.contains("198.51.100.1"));
        dns.restore().await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&dns.paths.resolv_conf).unwrap(),
            original
        );
        assert!(!dns.backup_path().exists());
    }

    #[tokio::test]
    async fn a_crashed_helpers_backup_is_the_original_that_gets_restored() {
        let original = "nameserver 198.51.100.1\n";
        let (_dir, mut first) = setup(original);
        first.set(&config()).await.unwrap();
        // The helper dies here. A new one sets DNS again, then restores.
        let mut second = ResolvConf::new(first.paths.clone());
        second.set(&config()).await.unwrap();
        second.restore().await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&first.paths.resolv_conf).unwrap(),
            original
        );
    }

    #[tokio::test]
    async fn someone_elses_rewrite_is_noticed_and_undone() {
        let (_dir, mut dns) = setup("nameserver 198.51.100.1\n");
        dns.set(&config()).await.unwrap();
        assert!(!dns.reassert().await.unwrap());
        std::fs::write(&dns.paths.resolv_conf, "nameserver 198.51.100.1\n").unwrap();
        assert!(dns.reassert().await.unwrap());
        assert!(std::fs::read_to_string(&dns.paths.resolv_conf)
            .unwrap()
            .contains("10.64.1.1"));
    }

    #[tokio::test]
    async fn the_systemd_resolved_stub_is_refused_not_overwritten() {
        let (_dir, mut dns) = setup("nameserver 127.0.0.53\noptions edns0\n");
        let err = dns.set(&config()).await.unwrap_err();
        assert!(format!("{err:#}").contains("systemd-resolved"));
        assert_eq!(
            std::fs::read_to_string(&dns.paths.resolv_conf).unwrap(),
            "nameserver 127.0.0.53\noptions edns0\n"
        );
    }
}
