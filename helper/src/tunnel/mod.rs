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
pub use windows::{remove_orphaned_adapters, ADAPTER_GUID};

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
#[cfg(not(any(target_os = "macos", windows)))]
pub fn interface_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}
/// On Windows the tunnel is one adapter with a fixed name and GUID (`windows::ADAPTER_GUID`),
/// so Windows sees the same network every time: a leftover of that name is the last helper's,
/// removed when the service starts (`windows::remove_orphaned_adapters`), never dodged by taking
/// the next name.
#[cfg(windows)]
pub fn interface_exists(_name: &str) -> bool {
    false
}
#[cfg(target_os = "macos")]
pub use macos::interface_exists;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Result;
use ipnet::IpNet;
use tokio::sync::Notify;
use underpass_proto::{Key, PeerStatus};

use crate::health::Sample;
use peers::{PeerSpec, PeerTable, Roaming};

/// The data plane as the daemon drives it: started and stopped, its counters read, a few
/// switches pulled. [`DataPlane`] on every OS; a recording fake in the daemon's unit tests.
#[allow(async_fn_in_trait)]
pub trait Plane: Sized {
    async fn start(config: DataPlaneConfig) -> Result<Self>;
    /// Stops the loops and closes the device; the kernel then removes the link and every
    /// route that pointed at it.
    async fn stop(self);
    fn interface(&self) -> &str;
    /// The counters liveness reads, summed over the peers.
    fn sample(&self) -> Sample;
    /// Each peer as the status shows it, the first one first.
    fn peer_status(&self) -> Vec<PeerStatus>;
    /// Signalled whenever a handshake message arrives, so the daemon sees "connected" at once.
    fn handshakes(&self) -> Arc<Notify>;
    /// While set, no data packet is forwarded either way (the self-test's simulated drop).
    fn pause_switch(&self) -> Arc<AtomicBool>;
    /// Starts a new handshake with every peer now (a liveness probe, or a changed path).
    fn force_handshake(&self);
    /// Offline: send nothing at all, not even handshake initiations, until set back.
    fn set_offline(&self, offline: bool);
    /// How many sends the kernel refused because no path reaches the server.
    fn unreachable_sends(&self) -> u64;
}

/// What the daemon's side holds of a running data plane, on every OS: the peers with their
/// counters, and the switches its loops obey.
pub(crate) struct Controls {
    pub(crate) peers: Arc<PeerTable>,
    pub(crate) handshakes: Arc<Notify>,
    pub(crate) paused: Arc<AtomicBool>,
    pub(crate) offline: Arc<AtomicBool>,
    pub(crate) unreachable: Arc<AtomicU64>,
    pub(crate) force: Arc<Notify>,
}

impl Controls {
    /// Fresh switches for `peers` (Linux hands its loops' own instead, `linux.rs`).
    #[cfg(not(target_os = "linux"))]
    fn new(peers: PeerTable) -> Controls {
        Controls {
            peers: Arc::new(peers),
            handshakes: Arc::default(),
            paused: Arc::default(),
            offline: Arc::default(),
            unreachable: Arc::default(),
            force: Arc::default(),
        }
    }
}

/// One implementation for every OS: each OS file only opens (`DataPlane::open`) and closes
/// (`DataPlane::close`) its device and loops.
impl Plane for DataPlane {
    async fn start(config: DataPlaneConfig) -> Result<Self> {
        DataPlane::open(config).await
    }

    async fn stop(self) {
        self.close().await
    }

    fn interface(&self) -> &str {
        &self.interface
    }

    fn sample(&self) -> Sample {
        self.controls.peers.sample()
    }

    fn peer_status(&self) -> Vec<PeerStatus> {
        self.controls.peers.status()
    }

    fn handshakes(&self) -> Arc<Notify> {
        self.controls.handshakes.clone()
    }

    fn pause_switch(&self) -> Arc<AtomicBool> {
        self.controls.paused.clone()
    }

    fn force_handshake(&self) {
        self.controls.force.notify_one();
    }

    fn set_offline(&self, offline: bool) {
        self.controls.offline.store(offline, Ordering::Relaxed);
    }

    fn unreachable_sends(&self) -> u64 {
        self.controls.unreachable.load(Ordering::Relaxed)
    }
}

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
