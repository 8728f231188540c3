//! Pointing the system resolver at the tunnel's DNS while connected, and putting it back.
//!
//! One trait, one file per OS. The original configuration is backed up in the helper's state
//! dir *before* anything is changed, so it can be restored byte for byte on disconnect, and at
//! the next start after a crash.

use std::net::IpAddr;
use std::path::PathBuf;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
mod resolved;
#[cfg(target_os = "linux")]
pub use linux::LinuxDns as PlatformDns;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::{remove_leftovers, WindowsDns as PlatformDns};
// Compiled on every OS so its unit tests run on Linux; only Windows applies it.
#[cfg(any(windows, test))]
#[cfg_attr(not(windows), allow(dead_code))]
pub mod winplan;

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
pub use macos::MacDns as PlatformDns;
#[cfg(any(target_os = "macos", test))]
mod scplan;

#[cfg(not(any(target_os = "linux", windows, target_os = "macos")))]
mod unsupported;
#[cfg(not(any(target_os = "linux", windows, target_os = "macos")))]
pub use unsupported::UnsupportedDns as PlatformDns;

/// Where things are, so tests can point the helper at their own files.
/// (Windows keeps everything under names it owns in the registry and needs neither.)
#[derive(Debug, Clone)]
#[cfg_attr(windows, allow(dead_code))]
pub struct DnsPaths {
    pub resolv_conf: PathBuf,
    pub state_dir: PathBuf,
}

/// What the tunnel wants the resolver to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    pub servers: Vec<IpAddr>,
    pub search: Vec<String>,
    /// The tunnel interface, for resolvers configured per link (systemd-resolved).
    pub interface: String,
    /// Whether all traffic goes through the tunnel: then every name is resolved through it too.
    /// A split tunnel sends only its search domains' names there (split DNS) where the resolver
    /// can (systemd-resolved); resolv.conf has one resolver for everything either way.
    pub full_tunnel: bool,
}

#[allow(async_fn_in_trait)]
pub trait DnsManager: Sized {
    fn new(paths: DnsPaths) -> Self;
    /// How the resolver is set, for the status and for error messages.
    fn method(&self) -> &'static str;
    /// Backs up the current configuration (unless a backup from an earlier run exists, which
    /// is then the true original) and installs `config`. It may wait on another daemon
    /// (systemd-resolved over D-Bus), so the helper runs it in a task beside its actor.
    fn set(
        &mut self,
        config: &DnsConfig,
    ) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;
    /// Checks that our configuration is still in place and rewrites it if someone changed it.
    /// True when it had to.
    async fn reassert(&mut self) -> anyhow::Result<bool>;
    /// Puts the original back, if a backup exists (also one left by a crashed helper).
    async fn restore(&mut self) -> anyhow::Result<()>;
    /// The system's own resolvers, as they were before any tunnel changed DNS: where the
    /// helper's endpoint lookups go, and, in a split tunnel, names outside its domains.
    fn system_resolvers(&self) -> Vec<std::net::IpAddr>;
}
