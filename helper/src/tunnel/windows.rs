//! The Windows data plane: a Wintun adapter (through tun-rs), one UDP socket, boringtun.
//!
//! - The adapter has a fixed GUID ([`ADAPTER_GUID`]), so Windows sees the same network every
//!   time instead of "Network 2, 3, ..." and its DNS registry keys have a known name.
//! - `wintun.dll` is loaded by absolute path from the helper's own directory (Program Files,
//!   where the MSI puts it), never from the search path or a user-writable directory.
//! - An adapter that a crashed helper left behind has the same name: tun-rs re-opens it, or
//!   re-creates it when it is an orphan without a driver.
//! - The endpoint stays out of the tunnel by host routes (`routes/windows.rs`), not a mark.
//!
//! Packets are handled one at a time: Wintun has no segmentation offload to batch on.
//! Never run: Wine has no Wintun driver. It type-checks.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use boringtun::noise::TunnResult;
use ipnet::IpNet;
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tun_rs::{AsyncDevice, DeviceBuilder};

use super::peers::{packet_addresses, path_is_gone, Peer, PeerTable};
use super::plane::{self, DataPlane};
use super::DataPlaneConfig;

/// The tunnel adapter's GUID, the same on every machine and every connect.
pub const ADAPTER_GUID: u128 = 0x8c9a_2f3e_5b71_4d0a_9e64_2c1f_7a0b_3d55;
const MAX_PACKET: usize = 65535;
const TIMER_TICK: Duration = Duration::from_millis(250);

struct Io {
    device: AsyncDevice,
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
}

impl DataPlane {
    pub async fn start(cfg: DataPlaneConfig) -> Result<DataPlane> {
        let device = build_device(&cfg)?;
        let any = if cfg.peers.iter().any(|p| p.endpoint.is_ipv6()) {
            "[::]:0"
        } else {
            "0.0.0.0:0"
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
        });
        for (peer, init) in plane::initiations(&peers) {
            io.send(peer, &init).await;
        }
        let cancel = CancellationToken::new();
        let tasks = vec![
            tokio::spawn(outbound(io.clone(), cancel.clone())),
            tokio::spawn(inbound(io.clone(), cancel.clone())),
            tokio::spawn(timers(io, cancel.clone())),
        ];
        tracing::info!(interface = %cfg.interface, mtu = cfg.mtu, "Wintun data plane up");
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
    let exe = std::env::current_exe().context("finding the helper's own directory")?;
    let dll = exe
        .parent()
        .context("the helper's executable has no directory")?
        .join("wintun.dll");
    let mut builder = DeviceBuilder::new()
        .name(&cfg.interface)
        .description("Underpass")
        .device_guid(ADAPTER_GUID)
        .wintun_file(dll.to_string_lossy().into_owned())
        .mtu(cfg.mtu);
    for net in &cfg.addresses {
        builder = match net {
            IpNet::V4(n) => builder.ipv4(n.addr(), n.prefix_len(), None),
            IpNet::V6(n) => builder.ipv6(n.addr(), n.prefix_len()),
        };
    }
    builder.build_async().with_context(|| {
        format!(
            "creating Wintun adapter {} (with {})",
            cfg.interface,
            dll.display()
        )
    })
}

impl Io {
    async fn send(&self, peer: &Peer, datagram: &[u8]) {
        if self.offline.load(Ordering::Relaxed) {
            return;
        }
        match self.socket.send_to(datagram, peer.endpoint()).await {
            Ok(n) => {
                peer.tx_bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => {
                if path_is_gone(&e) {
                    self.unreachable.fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(error = %e, "UDP send failed")
            }
        }
    }
}

async fn outbound(io: Arc<Io>, cancel: CancellationToken) {
    let mut packet = vec![0u8; MAX_PACKET];
    let mut out = vec![0u8; MAX_PACKET + 64];
    loop {
        let n = tokio::select! {
            _ = cancel.cancelled() => return,
            r = io.device.recv(&mut packet) => match r {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(error = %e, "Wintun read failed");
                    continue;
                }
            },
        };
        if io.paused.load(Ordering::Relaxed) {
            continue;
        }
        let Some((_, dst)) = packet_addresses(&packet[..n]) else {
            continue;
        };
        let Some((_, peer)) = io.peers.route(dst) else {
            continue;
        };
        let datagram = match peer.tunn.lock().encapsulate(&packet[..n], &mut out) {
            TunnResult::WriteToNetwork(d) => Some(d.to_vec()),
            _ => None,
        };
        if let Some(d) = datagram {
            io.send(peer, &d).await;
        }
    }
}

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
        let Some((index, peer)) = io.peers.for_datagram(&datagram[..n]) else {
            continue;
        };
        peer.rx_bytes.fetch_add(n as u64, Ordering::Relaxed);
        let received = plane::receive(&io.peers, index, peer, from, &datagram[..n], &mut out);
        if received.handshake {
            io.handshakes.notify_one();
        }
        for reply in received.replies {
            io.send(peer, &reply).await;
        }
        if let Some(len) = received.plain {
            if !io.paused.load(Ordering::Relaxed) {
                if let Err(e) = io.device.send(&out[..len]).await {
                    tracing::debug!(error = %e, "Wintun write failed");
                }
            }
        }
    }
}

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
