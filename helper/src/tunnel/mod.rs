//! The data plane: boringtun sessions, TUN I/O, UDP I/O and timers.
//!
//! `peers` (cryptokey routing) is portable and unit-tested; the I/O shell is one file per OS.

pub mod mtu;
pub mod peers;
pub mod probe;
pub mod resolve;

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

pub use resolve::{resolve_endpoint, Resolvers};

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

/// Sets the firewall mark on one of the helper's sockets (Linux; needs CAP_NET_ADMIN). Other
/// OSes have no mark: their firewalls admit the helper by identity, so this does nothing there.
#[cfg(target_os = "linux")]
pub(crate) fn set_mark(socket: &socket2::Socket, mark: u32) -> std::io::Result<()> {
    socket.set_mark(mark)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn set_mark(_socket: &socket2::Socket, _mark: u32) -> std::io::Result<()> {
    Ok(())
}
