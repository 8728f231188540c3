//! Linux DNS: through systemd-resolved when /etc/resolv.conf is its stub, otherwise by rewriting
//! /etc/resolv.conf in place.
//!
//! [`LinuxDns`] picks one at each `set`, by looking at the configured resolv.conf: a
//! `nameserver 127.0.0.53` line, or a symlink into /run/systemd/resolve/, means systemd-resolved
//! owns the resolver, and the tunnel's DNS goes on the tunnel's link over D-Bus (`resolved.rs`).
//! Rewriting the stub instead would be wrong. Anything else is rewritten by [`ResolvConf`].
//!
//! In place, not by rename: the file is often a bind mount (containers, and `ip netns exec`
//! mounting `/etc/netns/NAME/resolv.conf` over it), where renaming over it fails.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::resolved::Resolved;
use super::{DnsConfig, DnsManager, DnsPaths};

const BACKUP: &str = "resolv.conf.backup";
const STUB: &str = "127.0.0.53";
const RESOLVED_RUN_DIR: &str = "/run/systemd/resolve";

/// Whether `path` is systemd-resolved's: a symlink into /run/systemd/resolve/ (stub-resolv.conf,
/// or resolv.conf in its "uplink" mode), or a file whose resolver is the stub at 127.0.0.53.
pub fn is_resolved_stub(path: &Path) -> bool {
    if let Ok(target) = std::fs::read_link(path) {
        let target = path.parent().unwrap_or(Path::new("/")).join(target);
        // Lexically, so that a dangling link (resolved not running) still counts.
        let mut normal = PathBuf::new();
        for c in target.components() {
            match c {
                Component::ParentDir => {
                    normal.pop();
                }
                Component::CurDir => {}
                c => normal.push(c),
            }
        }
        if normal.starts_with(RESOLVED_RUN_DIR) {
            return true;
        }
    }
    std::fs::read(path).is_ok_and(|bytes| {
        String::from_utf8_lossy(&bytes)
            .lines()
            .any(|l| l.split_whitespace().eq(["nameserver", STUB]))
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    ResolvConf,
    Resolved,
}

/// The Linux [`DnsManager`]: systemd-resolved or resolv.conf, picked at each `set`.
pub struct LinuxDns {
    resolv_conf_path: PathBuf,
    resolv_conf: ResolvConf,
    resolved: Resolved,
    /// What the last `set` picked (kept after `restore`, so an error can name it).
    picked: Backend,
}

impl LinuxDns {
    /// `resolved_bus`: None for the system bus (`DBUS_SYSTEM_BUS_ADDRESS` is honoured), or the
    /// D-Bus address where a test's stand-in for systemd-resolved listens.
    pub fn with_resolved_bus(paths: DnsPaths, resolved_bus: Option<String>) -> LinuxDns {
        LinuxDns {
            resolv_conf_path: paths.resolv_conf.clone(),
            resolved: Resolved::new(paths.state_dir.clone(), resolved_bus),
            resolv_conf: ResolvConf::new(paths),
            picked: Backend::ResolvConf,
        }
    }
}

impl DnsManager for LinuxDns {
    fn new(paths: DnsPaths) -> Self {
        LinuxDns::with_resolved_bus(paths, None)
    }

    fn method(&self) -> &'static str {
        match self.picked {
            Backend::ResolvConf => self.resolv_conf.method(),
            Backend::Resolved => "systemd-resolved",
        }
    }

    async fn set(&mut self, config: &DnsConfig) -> Result<()> {
        self.picked = if is_resolved_stub(&self.resolv_conf_path) {
            Backend::Resolved
        } else {
            Backend::ResolvConf
        };
        match self.picked {
            Backend::ResolvConf => self.resolv_conf.set(config).await,
            Backend::Resolved => self.resolved.set(config).await,
        }
    }

    async fn reassert(&mut self) -> Result<bool> {
        match self.picked {
            Backend::ResolvConf => self.resolv_conf.reassert().await,
            Backend::Resolved => self.resolved.reassert().await,
        }
    }

    /// Both: after a crash either may have been left behind (they do nothing when they have
    /// nothing to undo, and the resolv.conf backup is handled exactly as before).
    async fn restore(&mut self) -> Result<()> {
        let file = self.resolv_conf.restore().await;
        let link = self
            .resolved
            .restore()
            .await
            .context("restoring DNS through systemd-resolved");
        match (file, link) {
            (Err(a), Err(b)) => Err(a.context(format!("and {b:#}"))),
            (file, link) => file.and(link),
        }
    }

    /// Behind systemd-resolved's stub, its upstream servers (it lists them in
    /// /run/systemd/resolve/resolv.conf); otherwise the resolv.conf as it was before the tunnel
    /// (the backup while one exists). Loopback resolvers are local and need no hole.
    fn system_resolvers(&self) -> Vec<std::net::IpAddr> {
        if is_resolved_stub(&self.resolv_conf_path) {
            let upstream = Path::new(RESOLVED_RUN_DIR).join("resolv.conf");
            return nameservers(&std::fs::read_to_string(upstream).unwrap_or_default());
        }
        self.resolv_conf.system_resolvers()
    }
}

/// The `nameserver` addresses of a resolv.conf, without loopback ones.
pub fn nameservers(text: &str) -> Vec<std::net::IpAddr> {
    text.lines()
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            ["nameserver", addr, ..] => addr.split('%').next()?.parse().ok(),
            _ => None,
        })
        .filter(|a: &std::net::IpAddr| !a.is_loopback())
        .collect()
}

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
        if is_resolved_stub(path) && self.written.is_none() && !self.backup_path().exists() {
            // LinuxDns sends this case to systemd-resolved; never overwrite its stub.
            bail!(
                "{} is systemd-resolved's stub ({STUB}): DNS goes through systemd-resolved \
                 there, not into this file",
                path.display()
            );
        }
        let backup = self.backup_path();
        if !backup.exists() {
            underpass_durable::write(&backup, &current).context("saving the resolv.conf backup")?;
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

    /// The backup while one exists (the file then holds the tunnel's), else the file.
    fn system_resolvers(&self) -> Vec<std::net::IpAddr> {
        let backup = self.backup_path();
        let file = if backup.exists() {
            backup
        } else {
            self.paths.resolv_conf.clone()
        };
        nameservers(&std::fs::read_to_string(file).unwrap_or_default())
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
            interface: "lo".into(),
            full_tunnel: true,
        }
    }

    #[test]
    fn nameservers_are_read_without_loopback_or_comments() {
        let text = "# nameserver 203.0.113.9\nnameserver 198.51.100.1\nnameserver 127.0.0.53\n\
                    nameserver fe80::1%eth0\noptions edns0\n";
        let want: Vec<std::net::IpAddr> =
            vec!["198.51.100.1".parse().unwrap(), "fe80::1".parse().unwrap()];
        assert_eq!(nameservers(text), want);
    }

    #[tokio::test]
    async fn the_system_resolvers_are_the_originals_while_the_tunnels_are_in_place() {
        let (dir, _) = setup("nameserver 198.51.100.1\n");
        let paths = DnsPaths {
            resolv_conf: dir.path().join("resolv.conf"),
            state_dir: dir.path().join("state"),
        };
        let mut dns = LinuxDns::new(paths);
        dns.set(&config()).await.unwrap();
        let want: Vec<std::net::IpAddr> = vec!["198.51.100.1".parse().unwrap()];
        assert_eq!(dns.system_resolvers(), want);
        dns.restore().await.unwrap();
        assert_eq!(dns.system_resolvers(), want);
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

    #[test]
    fn resolveds_stub_is_recognised_by_content_or_by_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "nameserver 198.51.100.1\n").unwrap();
        assert!(!is_resolved_stub(&plain));
        let stub = dir.path().join("stub");
        std::fs::write(&stub, "# resolved\nnameserver 127.0.0.53\noptions edns0\n").unwrap();
        assert!(is_resolved_stub(&stub));
        // As on Debian and Ubuntu; the target need not exist (resolved not running).
        let absolute = dir.path().join("absolute");
        std::os::unix::fs::symlink("/run/systemd/resolve/stub-resolv.conf", &absolute).unwrap();
        assert!(is_resolved_stub(&absolute));
        let etc = dir.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        let relative = etc.join("resolv.conf");
        let up = "../".repeat(dir.path().components().count() + 3);
        std::os::unix::fs::symlink(format!("{up}run/systemd/resolve/resolv.conf"), &relative)
            .unwrap();
        assert!(is_resolved_stub(&relative));
        let elsewhere = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&plain, &elsewhere).unwrap();
        assert!(!is_resolved_stub(&elsewhere));
        assert!(!is_resolved_stub(&dir.path().join("missing")));
    }

    #[tokio::test]
    async fn a_plain_resolv_conf_is_still_rewritten_and_restored() {
        let original = "nameserver 198.51.100.1\n";
        let (dir, _) = setup(original);
        // A bus that does not exist: resolv.conf must not need it.
        let mut dns = LinuxDns::with_resolved_bus(
            DnsPaths {
                resolv_conf: dir.path().join("resolv.conf"),
                state_dir: dir.path().join("state"),
            },
            Some(format!("unix:path={}", dir.path().join("no-bus").display())),
        );
        dns.set(&config()).await.unwrap();
        assert_eq!(dns.method(), "resolv.conf");
        assert!(std::fs::read_to_string(dir.path().join("resolv.conf"))
            .unwrap()
            .contains("nameserver 10.64.1.1"));
        assert!(!dns.reassert().await.unwrap());
        dns.restore().await.unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("resolv.conf")).unwrap(),
            original
        );
    }

    #[tokio::test]
    async fn resolveds_stub_goes_to_resolved_and_its_failure_names_it() {
        let stub = "nameserver 127.0.0.53\noptions edns0\n";
        let (dir, _) = setup(stub);
        let bus = dir.path().join("no-bus");
        let mut dns = LinuxDns::with_resolved_bus(
            DnsPaths {
                resolv_conf: dir.path().join("resolv.conf"),
                state_dir: dir.path().join("state"),
            },
            Some(format!("unix:path={}", bus.display())),
        );
        let err = format!("{:#}", dns.set(&config()).await.unwrap_err());
        assert!(err.contains("connecting to the D-Bus system bus"), "{err}");
        assert!(err.contains(&bus.display().to_string()), "{err}");
        // The daemon restores after a failed set (ignoring the result: with no bus, reverting the
        // link fails too), then names the method in its error.
        let err = format!("{:#}", dns.restore().await.unwrap_err());
        assert!(
            err.contains("restoring DNS through systemd-resolved"),
            "{err}"
        );
        assert_eq!(dns.method(), "systemd-resolved");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("resolv.conf")).unwrap(),
            stub
        );
        assert!(!dir.path().join("state").join("resolv.conf.backup").exists());
    }
}
