//! What the daemon holds of the macOS data plane (`macos.rs` starts the loops and hands over
//! its parts here).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use boringtun::noise::TunnResult;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::peers::{Peer, PeerTable};

pub struct DataPlane {
    pub(super) interface: String,
    pub(super) peers: Arc<PeerTable>,
    /// Signalled whenever a handshake message arrives, so the daemon sees "connected" at once.
    pub(super) handshakes: Arc<Notify>,
    /// While set, no data packet is forwarded either way (the self-test's simulated drop).
    pub(super) paused: Arc<AtomicBool>,
    /// While set, nothing at all is sent: no route reaches the server (offline).
    pub(super) offline: Arc<AtomicBool>,
    /// Sends refused because no path reaches the server.
    pub(super) unreachable: Arc<AtomicU64>,
    /// Wakes the timer loop to start a handshake with every peer now.
    pub(super) force: Arc<Notify>,
    pub(super) cancel: CancellationToken,
    pub(super) tasks: Vec<JoinHandle<()>>,
}

impl DataPlane {
    pub fn interface(&self) -> &str {
        &self.interface
    }

    pub fn peers(&self) -> &PeerTable {
        &self.peers
    }

    pub fn handshakes(&self) -> Arc<Notify> {
        self.handshakes.clone()
    }

    pub fn pause_switch(&self) -> Arc<AtomicBool> {
        self.paused.clone()
    }

    /// Starts a new handshake with every peer now (a liveness probe, or a changed path).
    pub fn force_handshake(&self) {
        self.force.notify_one();
    }

    /// Offline: send nothing at all, not even handshake initiations, until set back.
    pub fn set_offline(&self, offline: bool) {
        self.offline.store(offline, Ordering::Relaxed);
    }

    /// How many sends failed because no path reaches the server.
    pub fn unreachable_sends(&self) -> u64 {
        self.unreachable.load(Ordering::Relaxed)
    }

    /// Stops the loops and closes the device; the kernel then removes the link and every
    /// route that pointed at it.
    pub async fn stop(self) {
        self.cancel.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// A handshake initiation for every peer, to send at once: connect is then one round trip.
pub(super) fn initiations(peers: &PeerTable) -> Vec<(&Arc<Peer>, Vec<u8>)> {
    let mut buf = [0u8; 256];
    peers
        .peers()
        .iter()
        .filter_map(|peer| {
            match peer
                .tunn
                .lock()
                .format_handshake_initiation(&mut buf, false)
            {
                TunnResult::WriteToNetwork(p) => Some((peer, p.to_vec())),
                _ => None,
            }
        })
        .collect()
}
