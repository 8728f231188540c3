//! The task-based data plane of macOS and Windows: what the daemon holds of it, and its three
//! loops (the device to UDP, UDP to the device, boringtun's timers), one packet at a time.
//! `macos.rs` and `windows.rs` only open their device (utun, Wintun) and call [`start`].
//! (Linux runs its own batched data plane on a thread of its own, `linux.rs`.)

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use boringtun::noise::TunnResult;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tun_rs::AsyncDevice;

use super::peers::{answers_us, authenticated, packet_addresses, path_is_gone, Peer, PeerTable};
use super::{Controls, DataPlaneConfig};

const MAX_PACKET: usize = 65535;
const TIMER_TICK: Duration = Duration::from_millis(250);

pub struct DataPlane {
    pub(super) interface: String,
    pub(super) controls: Controls,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl DataPlane {
    /// Stops the loops; the device and the socket close with the last of them.
    pub(super) async fn close(self) {
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

/// Starts the loops on `device` (named `device_kind` in logs: "utun", "Wintun") and one UDP
/// socket: dual-stack (IPv4 endpoints as v4-mapped addresses) when any endpoint is IPv6.
pub(super) async fn start(
    cfg: DataPlaneConfig,
    device: AsyncDevice,
    device_kind: &'static str,
) -> Result<DataPlane> {
    let dual_stack = cfg.peers.iter().any(|p| p.endpoint.is_ipv6());
    let socket = udp_socket(dual_stack).context("creating the encrypted UDP socket")?;
    let controls = Controls::new(PeerTable::new(&cfg.private_key, &cfg.peers, cfg.roaming()));
    let io = Arc::new(Io {
        device,
        device_kind,
        socket,
        peers: controls.peers.clone(),
        handshakes: controls.handshakes.clone(),
        paused: controls.paused.clone(),
        offline: controls.offline.clone(),
        unreachable: controls.unreachable.clone(),
        force: controls.force.clone(),
        dual_stack,
    });
    tracing::info!(interface = %cfg.interface, mtu = cfg.mtu, "data plane up");
    let cancel = CancellationToken::new();
    for (peer, init) in initiations(&controls.peers) {
        io.send(peer, &init).await;
    }
    let tasks = vec![
        tokio::spawn(outbound(io.clone(), cancel.clone())),
        tokio::spawn(inbound(io.clone(), cancel.clone())),
        tokio::spawn(timers(io, cancel.clone())),
    ];
    Ok(DataPlane {
        interface: cfg.interface,
        controls,
        cancel,
        tasks,
    })
}

/// An unbound UDP socket on any port; a dual-stack one also reaches IPv4 (Windows' sockets
/// are IPv6-only unless told otherwise).
fn udp_socket(dual_stack: bool) -> std::io::Result<UdpSocket> {
    let (domain, any): (Domain, SocketAddr) = if dual_stack {
        (Domain::IPV6, (Ipv6Addr::UNSPECIFIED, 0).into())
    } else {
        (Domain::IPV4, (Ipv4Addr::UNSPECIFIED, 0).into())
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if dual_stack {
        s.set_only_v6(false)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&any.into())?;
    UdpSocket::from_std(s.into())
}

/// What the loops share.
struct Io {
    device: AsyncDevice,
    device_kind: &'static str,
    socket: UdpSocket,
    peers: Arc<PeerTable>,
    handshakes: Arc<Notify>,
    paused: Arc<AtomicBool>,
    /// While set, nothing at all is sent: no route reaches the server (offline).
    offline: Arc<AtomicBool>,
    /// Sends refused because no path reaches the server.
    unreachable: Arc<AtomicU64>,
    /// Wakes the timer loop to start a handshake with every peer now.
    force: Arc<Notify>,
    /// The socket is IPv6 and reaches IPv4 endpoints as v4-mapped addresses.
    dual_stack: bool,
}

impl Io {
    async fn send(&self, peer: &Peer, contents: &[u8]) {
        if self.offline.load(Ordering::Relaxed) {
            return;
        }
        let to = match (self.dual_stack, peer.endpoint()) {
            (true, SocketAddr::V4(v4)) => {
                SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0).into()
            }
            (_, other) => other,
        };
        match self.socket.send_to(contents, to).await {
            Ok(_) => {
                peer.tx_bytes
                    .fetch_add(contents.len() as u64, Ordering::Relaxed);
            }
            // The network is down or the endpoint unreachable: WireGuard's timers retry, and
            // the daemon takes a vanished path as a network change.
            Err(e) => {
                if path_is_gone(&e) {
                    self.unreachable.fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(error = %e, endpoint = %peer.endpoint(), "send failed")
            }
        }
    }
}

/// The device → encrypt → UDP.
async fn outbound(io: Arc<Io>, cancel: CancellationToken) {
    let mut packet = vec![0u8; MAX_PACKET];
    // Room for the packet and WireGuard's header and tag.
    let mut out = vec![0u8; MAX_PACKET + 64];
    loop {
        let n = tokio::select! {
            _ = cancel.cancelled() => return,
            r = io.device.recv(&mut packet) => match r {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, device = io.device_kind, "tunnel device read failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        if io.paused.load(Ordering::Relaxed) {
            continue;
        }
        let packet = &packet[..n];
        let Some((_, dst)) = packet_addresses(packet) else {
            continue;
        };
        let Some((_, peer)) = io.peers.route(dst) else {
            continue; // No peer accepts this destination: drop, as WireGuard does.
        };
        let datagram = match peer.tunn.lock().encapsulate(packet, &mut out) {
            TunnResult::WriteToNetwork(p) => p.to_vec(),
            _ => continue, // Queued until the handshake completes, or an error.
        };
        io.send(peer, &datagram).await;
    }
}

/// UDP → decrypt → the device.
async fn inbound(io: Arc<Io>, cancel: CancellationToken) {
    let mut datagram = vec![0u8; MAX_PACKET];
    let mut out = vec![0u8; MAX_PACKET];
    loop {
        let (n, from) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = io.socket.recv_from(&mut datagram) => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "UDP receive failed");
                    continue;
                }
            },
        };
        let datagram = &datagram[..n];
        let Some((index, peer)) = io.peers.for_datagram(datagram) else {
            continue;
        };
        peer.rx_bytes.fetch_add(n as u64, Ordering::Relaxed);
        let received = receive(&io.peers, index, peer, from, datagram, &mut out);
        if received.handshake {
            io.handshakes.notify_one();
        }
        for reply in received.replies {
            io.send(peer, &reply).await;
        }
        if let Some(len) = received.plain {
            if !io.paused.load(Ordering::Relaxed) {
                if let Err(e) = io.device.send(&out[..len]).await {
                    tracing::debug!(error = %e, device = io.device_kind, "tunnel device write failed");
                }
            }
        }
    }
}

/// Handshake retries, keepalives and rekeying, on boringtun's clock.
async fn timers(io: Arc<Io>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(TIMER_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = vec![0u8; MAX_PACKET];
    loop {
        let Some(forced) = timer_round(&mut tick, &io.force, &cancel).await else {
            return;
        };
        for peer in io.peers.peers() {
            if let Some(p) = peer.timer_packet(forced, &mut buf) {
                io.send(peer, &p).await;
            }
        }
    }
}
