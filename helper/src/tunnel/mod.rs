//! The data plane: boringtun sessions, TUN I/O, UDP I/O and timers.
//!
//! `peers` (cryptokey routing) is portable and unit-tested; the I/O shell is one file per OS.

pub mod mtu;
pub mod peers;
pub mod probe;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::DataPlane;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(any(target_os = "macos", windows))]
mod plane;
#[cfg(any(target_os = "macos", windows))]
pub use plane::DataPlane;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::ADAPTER_GUID;

#[cfg(not(any(target_os = "linux", windows, target_os = "macos")))]
mod unsupported;
#[cfg(not(any(target_os = "linux", windows, target_os = "macos")))]
pub use unsupported::DataPlane;

use std::net::SocketAddr;
use std::time::Duration;

/// Tunnel interfaces are named PREFIX0, PREFIX1, ...; on macOS a utun's name is fixed by the
/// kernel as `utunN`, so the prefix must be `utun` there.
pub const DEFAULT_INTERFACE_PREFIX: &str = if cfg!(target_os = "macos") {
    "utun"
} else {
    "underpass"
};

/// Whether a network interface of this name exists (the daemon takes the first free name).
#[cfg(not(target_os = "macos"))]
pub fn interface_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}
#[cfg(target_os = "macos")]
pub use macos::interface_exists;

use anyhow::{anyhow, Context, Result};
use ipnet::IpNet;
use underpass_proto::Key;

use peers::{PeerSpec, Roaming};

/// Everything the data plane needs, with endpoints already resolved.
#[derive(Debug, Clone)]
pub struct DataPlaneConfig {
    pub interface: String,
    pub private_key: Key,
    pub addresses: Vec<IpNet>,
    pub mtu: u16,
    pub peers: Vec<PeerSpec>,
    /// Set on the encrypted UDP socket so that policy routing keeps it out of the tunnel (Linux;
    /// Windows uses host routes instead).
    #[cfg_attr(windows, allow(dead_code))]
    pub fwmark: u32,
    /// Where the endpoints may follow authenticated packets: confined to the kill switch's
    /// endpoints while one is in force (Linux; macOS and Windows always confine, see
    /// [`DataPlaneConfig::roaming`]).
    pub roaming: Roaming,
}

impl DataPlaneConfig {
    /// The roaming the data plane applies. Linux keeps its encrypted UDP out of the tunnel by
    /// its mark, whatever the destination, so only the kill switch limits it. macOS and
    /// Windows keep it out by host routes to the configured endpoints alone: a roam elsewhere
    /// would send it into the tunnel, so it stays among those.
    fn roaming(&self) -> Roaming {
        if cfg!(any(target_os = "macos", windows)) {
            Roaming::Within(self.peers.iter().map(|p| p.endpoint).collect())
        } else {
            self.roaming.clone()
        }
    }
}

const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves `host:port` (or `[v6]:port`) before any route exists, so the lookup cannot go
/// through the tunnel that it is needed to build.
pub async fn resolve_endpoint(endpoint: &str) -> Result<SocketAddr> {
    if let Ok(addr) = endpoint.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(endpoint))
            .await
            .map_err(|_| {
                anyhow!("resolving endpoint {endpoint}: no answer within {RESOLVE_TIMEOUT:?}")
            })?
            .with_context(|| format!("resolving endpoint {endpoint}"))?
            .collect();
    // Prefer IPv4: it works on more networks, and the choice is stable.
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| anyhow!("endpoint {endpoint} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literal_endpoints_need_no_lookup() {
        assert_eq!(
            resolve_endpoint("192.0.2.10:51820").await.unwrap(),
            "192.0.2.10:51820".parse().unwrap()
        );
        assert_eq!(
            resolve_endpoint("[2001:db8::1]:51820").await.unwrap(),
            "[2001:db8::1]:51820".parse().unwrap()
        );
    }

    #[tokio::test]
    async fn hostnames_are_resolved() {
        let addr = resolve_endpoint("localhost:51820").await.unwrap();
        assert!(addr.ip().is_loopback());
        assert_eq!(addr.port(), 51820);
    }

    #[tokio::test]
    async fn an_unresolvable_endpoint_names_itself() {
        let err = resolve_endpoint("no-such-host.invalid:51820")
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("no-such-host.invalid:51820"));
    }
}
