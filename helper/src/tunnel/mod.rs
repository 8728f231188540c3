//! The data plane: boringtun sessions, TUN I/O, UDP I/O and timers.
//!
//! `peers` (cryptokey routing) is portable and unit-tested; the I/O shell is one file per OS.

pub mod peers;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::DataPlane;

#[cfg(not(target_os = "linux"))]
mod unsupported;
#[cfg(not(target_os = "linux"))]
pub use unsupported::DataPlane;

use ipnet::IpNet;
use underpass_proto::Key;

use peers::PeerSpec;

/// Everything the data plane needs, with endpoints already resolved.
#[derive(Debug, Clone)]
pub struct DataPlaneConfig {
    pub interface: String,
    pub private_key: Key,
    pub addresses: Vec<IpNet>,
    pub mtu: u16,
    pub peers: Vec<PeerSpec>,
    /// Set on the encrypted UDP socket so that policy routing keeps it out of the tunnel.
    pub fwmark: u32,
}
