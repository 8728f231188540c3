//! The task-based data plane of macOS and Windows: what the daemon holds of it, and the
//! receive step both loops share. `macos.rs` and `windows.rs` open the device and the socket,
//! start the loops and hand their parts over here. (Linux runs its own batched data plane on a
//! thread of its own, `linux.rs`.)

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use boringtun::noise::TunnResult;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::peers::{answers_us, authenticated, Peer, PeerTable};

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

/// What one datagram from a peer asks for.
pub(super) struct Received {
    /// The length of the decrypted packet at the start of `out`, when it may enter the tunnel.
    pub plain: Option<usize>,
    /// Handshake responses, cookies and packets queued meanwhile, to send back to the peer.
    pub replies: Vec<Vec<u8>>,
    /// A handshake message arrived (the daemon then sees "connected" at once).
    pub handshake: bool,
}

/// Decrypts one datagram that `peer` (at `index` in `peers`) sent from `from` into `out`, and
/// counts it when it proves that the server hears us. A decrypted packet whose source is not in
/// the peer's AllowedIPs is dropped, as WireGuard requires. An authenticated datagram moves the
/// peer's endpoint to its source, as far as the table's roaming allows.
pub(super) fn receive(
    peers: &PeerTable,
    index: usize,
    peer: &Peer,
    from: SocketAddr,
    datagram: &[u8],
    out: &mut [u8],
) -> Received {
    let mut received = Received {
        plain: None,
        replies: Vec::new(),
        handshake: matches!(datagram.first(), Some(1 | 2)),
    };
    let mut tunn = peer.tunn.lock();
    let result = tunn.decapsulate(Some(from.ip().to_canonical()), datagram, out);
    if authenticated(datagram, &result) {
        peer.roam(from, peers.roaming());
    }
    if answers_us(datagram) && !matches!(result, TunnResult::Err(_)) {
        peer.rx_packets.fetch_add(1, Ordering::Relaxed);
    }
    match result {
        TunnResult::WriteToTunnelV4(p, src) if peers.allows_source(index, IpAddr::V4(src)) => {
            received.plain = Some(p.len());
        }
        TunnResult::WriteToTunnelV6(p, src) if peers.allows_source(index, IpAddr::V6(src)) => {
            received.plain = Some(p.len());
        }
        TunnResult::WriteToNetwork(p) => {
            received.replies.push(p.to_vec());
            let mut scratch = vec![0u8; 65535];
            while let TunnResult::WriteToNetwork(p) = tunn.decapsulate(None, &[], &mut scratch) {
                received.replies.push(p.to_vec());
            }
        }
        TunnResult::Err(e) => tracing::debug!(error = ?e, "decapsulate failed"),
        _ => {}
    }
    received
}

/// Waits for the next round of boringtun's timers: true when the daemon forced a handshake,
/// false on a plain tick, `None` once the data plane is cancelled.
pub(super) async fn timer_round(
    tick: &mut tokio::time::Interval,
    force: &Notify,
    cancel: &CancellationToken,
) -> Option<bool> {
    tokio::select! {
        _ = cancel.cancelled() => None,
        _ = tick.tick() => Some(false),
        _ = force.notified() => Some(true),
    }
}
