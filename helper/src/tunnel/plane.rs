//! What the daemon holds of a running data plane, the same on every OS that has one: the
//! per-OS files (`linux.rs`, `macos.rs`) start the loops and hand over their parts here.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use boringtun::noise::{errors::WireGuardError, TunnResult};
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

/// What boringtun's timers (handshake retries, keepalives, rekeying) want sent now.
pub(super) fn timer_packets<'a>(
    peers: &'a PeerTable,
    buf: &mut [u8],
) -> Vec<(&'a Arc<Peer>, Vec<u8>)> {
    peers
        .peers()
        .iter()
        .filter_map(|peer| match peer.tunn.lock().update_timers(buf) {
            TunnResult::WriteToNetwork(p) => Some((peer, p.to_vec())),
            TunnResult::Err(WireGuardError::ConnectionExpired) => None,
            TunnResult::Err(e) => {
                tracing::debug!(error = ?e, "timer error");
                None
            }
            _ => None,
        })
        .collect()
}
