//! The macOS data plane: a utun through tun-rs, configured point to point (`inet A --> B`,
//! netmask /32, as `ifconfig` shows it), one UDP socket, and boringtun sessions.
//!
//! Simpler than Linux's on purpose: macOS has no TUN offload and no UDP GSO/GRO, so it is one
//! packet per syscall. The encrypted UDP stays out of the tunnel by the endpoint host routes
//! (`routes/macos.rs`), and PF lets it out by its owner (`firewall/pf.rs`).
//! Not verified on a Mac: nothing here has run (see the README).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV6};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use boringtun::noise::TunnResult;
use ipnet::{IpNet, Ipv4Net};
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tun_rs::{AsyncDevice, DeviceBuilder};

use super::peers::{packet_addresses, path_is_gone, Peer, PeerTable};
use super::plane::{self, DataPlane};
use super::DataPlaneConfig;

const MAX_PACKET: usize = 65535;
const TIMER_TICK: Duration = Duration::from_millis(250);

/// Whether a network interface of this name exists (utun names are taken by other VPNs too).
pub fn interface_exists(name: &str) -> bool {
    nix::net::if_::if_nametoindex(name).is_ok()
}

/// The far end of a point-to-point utun: the other address of a /31 or wider prefix, or, for a
/// /32 (what VPN servers hand out), the address itself, as the WireGuard app configures it.
pub fn peer_address(local: Ipv4Net) -> Ipv4Addr {
    let a = local.addr();
    if local.prefix_len() >= 32 {
        return a;
    }
    let net = local.network();
    if a == net {
        Ipv4Addr::from(u32::from(net) + 1)
    } else {
        net
    }
}

struct Io {
    device: AsyncDevice,
    socket: UdpSocket,
    peers: Arc<PeerTable>,
    handshakes: Arc<Notify>,
    paused: Arc<AtomicBool>,
    offline: Arc<AtomicBool>,
    unreachable: Arc<AtomicU64>,
    force: Arc<Notify>,
    dual_stack: bool,
}

impl DataPlane {
    pub async fn start(cfg: DataPlaneConfig) -> Result<DataPlane> {
        let device = build_device(&cfg)?;
        let dual_stack = cfg.peers.iter().any(|p| p.endpoint.is_ipv6());
        let any: SocketAddr = if dual_stack {
            "[::]:0".parse().expect("literal")
        } else {
            "0.0.0.0:0".parse().expect("literal")
        };
        let socket = UdpSocket::bind(any)
            .await
            .context("creating the encrypted UDP socket")?;
        let peers = Arc::new(PeerTable::new(&cfg.private_key, &cfg.peers, cfg.roaming()));
        let handshakes = Arc::new(Notify::new());
        let paused = Arc::new(AtomicBool::new(false));
        let offline = Arc::new(AtomicBool::new(false));
        let unreachable = Arc::new(AtomicU64::new(0));
        let force = Arc::new(Notify::new());
        let io = Arc::new(Io {
            device,
            socket,
            peers: peers.clone(),
            handshakes: handshakes.clone(),
            paused: paused.clone(),
            offline: offline.clone(),
            unreachable: unreachable.clone(),
            force: force.clone(),
            dual_stack,
        });
        tracing::info!(interface = %cfg.interface, mtu = cfg.mtu, "data plane up");
        let cancel = CancellationToken::new();
        for (peer, init) in plane::initiations(&peers) {
            io.send(peer, &init).await;
        }
        let tasks = vec![
            tokio::spawn(outbound(io.clone(), cancel.clone())),
            tokio::spawn(inbound(io.clone(), cancel.clone())),
            tokio::spawn(timers(io, cancel.clone())),
        ];
        Ok(DataPlane {
            interface: cfg.interface,
            peers,
            handshakes,
            paused,
            offline,
            unreachable,
            force,
            cancel,
            tasks,
        })
    }
}

fn build_device(cfg: &DataPlaneConfig) -> Result<AsyncDevice> {
    // tun-rs would add a route for each address's prefix; routes are routes/macos.rs's job.
    let mut builder = DeviceBuilder::new()
        .name(&cfg.interface)
        .mtu(cfg.mtu)
        .associate_route(false);
    let v4: Vec<Ipv4Net> = cfg
        .addresses
        .iter()
        .filter_map(|n| match n {
            IpNet::V4(n) => Some(*n),
            IpNet::V6(_) => None,
        })
        .collect();
    if let Some(first) = v4.first() {
        builder = builder.ipv4(first.addr(), 32u8, Some(peer_address(*first)));
    }
    for net in &cfg.addresses {
        if let IpNet::V6(n) = net {
            builder = builder.ipv6(n.addr(), n.prefix_len());
        }
    }
    let device = builder
        .build_async()
        .with_context(|| format!("creating utun {}", cfg.interface))?;
    for n in v4.iter().skip(1) {
        device
            .add_address_v4(n.addr(), 32u8)
            .with_context(|| format!("adding {n} to {}", cfg.interface))?;
    }
    Ok(device)
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

/// utun → encrypt → UDP.
async fn outbound(io: Arc<Io>, cancel: CancellationToken) {
    let mut packet = vec![0u8; MAX_PACKET];
    let mut out = vec![0u8; MAX_PACKET];
    loop {
        let n = tokio::select! {
            _ = cancel.cancelled() => return,
            r = io.device.recv(&mut packet) => match r {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "utun read failed");
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

/// UDP → decrypt → utun.
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
        let received = plane::receive(&io.peers, index, peer, from, datagram, &mut out);
        if received.handshake {
            io.handshakes.notify_one();
        }
        for reply in received.replies {
            io.send(peer, &reply).await;
        }
        if let Some(len) = received.plain {
            if !io.paused.load(Ordering::Relaxed) {
                if let Err(e) = io.device.send(&out[..len]).await {
                    tracing::debug!(error = %e, "utun write failed");
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
        let Some(forced) = plane::timer_round(&mut tick, &io.force, &cancel).await else {
            return;
        };
        for peer in io.peers.peers() {
            if let Some(p) = peer.timer_packet(forced, &mut buf) {
                io.send(peer, &p).await;
            }
        }
    }
}
