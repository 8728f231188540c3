//! The Linux data plane: a tun-rs device with virtio offload (GSO/GRO), one UDP socket driven
//! through quinn-udp (UDP GSO on send, GRO + recvmmsg on receive), and boringtun sessions.
//!
//! Why this shape: the cost of a userspace WireGuard is syscalls and copies, not ChaCha20.
//! With TUN offload the kernel hands us up to 64 KiB TCP super-packets in one read; we split,
//! encrypt each segment into one contiguous buffer, and hand the whole run of equal-sized
//! datagrams to the kernel in one `sendmsg` with `UDP_SEGMENT`. Inbound, one `recvmmsg` brings
//! many (GRO-coalesced) datagrams, and decrypted TCP segments are coalesced again before one
//! TUN write. No allocation happens per packet: every buffer lives as long as its loop.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use boringtun::noise::TunnResult;
use bytes::BytesMut;
use ipnet::IpNet;
use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tun_rs::{AsyncDevice, DeviceBuilder, GROTable, IDEAL_BATCH_SIZE, VIRTIO_NET_HDR_LEN};

use super::peers::{packet_addresses, Peer, PeerTable};
use super::plane::{self, DataPlane};
use super::DataPlaneConfig;

/// WireGuard's data header (16) + Poly1305 tag (16) + up to 15 bytes of padding.
const WG_OVERHEAD: usize = 16 + 16 + 15;
/// The largest packet the TUN can hand us after GSO splitting, and the largest datagram.
const MAX_PACKET: usize = 65535;
/// Where decrypted packets start in a TUN write buffer: room for the virtio header.
const TUN_OFFSET: usize = VIRTIO_NET_HDR_LEN;
/// How often boringtun's timers run (handshake retries, keepalives, rekeying).
const TIMER_TICK: Duration = Duration::from_millis(250);
/// Socket buffers, as wireguard-go sizes them.
const SOCKET_BUFFER: usize = 7 << 20;

struct Io {
    device: AsyncDevice,
    socket: UdpSocket,
    udp: UdpSocketState,
    peers: Arc<PeerTable>,
    /// Signalled whenever a handshake message arrives, so the daemon sees "connected" at once.
    handshakes: Arc<Notify>,
    /// While set, no data packet is forwarded either way (the self-test's simulated drop).
    paused: Arc<AtomicBool>,
    /// The socket is IPv6 dual-stack, so IPv4 endpoints are written as v4-mapped.
    dual_stack: bool,
}

impl DataPlane {
    pub async fn start(cfg: DataPlaneConfig) -> Result<DataPlane> {
        let device = build_device(&cfg)?;
        let dual_stack = cfg.peers.iter().any(|p| p.endpoint.is_ipv6());
        let socket =
            bind_socket(cfg.fwmark, dual_stack).context("creating the encrypted UDP socket")?;
        let udp = UdpSocketState::new((&socket).into()).context("configuring UDP offload")?;
        let peers = Arc::new(PeerTable::new(&cfg.private_key, &cfg.peers));
        let handshakes = Arc::new(Notify::new());
        let paused = Arc::new(AtomicBool::new(false));
        let io = Arc::new(Io {
            device,
            socket,
            udp,
            peers: peers.clone(),
            handshakes: handshakes.clone(),
            paused: paused.clone(),
            dual_stack,
        });
        tracing::info!(
            interface = %cfg.interface,
            mtu = cfg.mtu,
            udp_gso_segments = io.udp.max_gso_segments(),
            udp_gro_segments = io.udp.gro_segments(),
            "data plane up"
        );
        let cancel = CancellationToken::new();
        // Start the handshakes now rather than on the first packet: connect is then one RTT.
        for (peer, init) in plane::initiations(&peers) {
            io.send(peer, &init, None).await;
        }
        let tasks = vec![
            tokio::spawn(outbound(io.clone(), cfg.mtu, cancel.clone())),
            tokio::spawn(inbound(io.clone(), cancel.clone())),
            tokio::spawn(timers(io, cancel.clone())),
        ];
        Ok(DataPlane {
            interface: cfg.interface,
            peers,
            handshakes,
            paused,
            cancel,
            tasks,
        })
    }
}

fn build_device(cfg: &DataPlaneConfig) -> Result<AsyncDevice> {
    let mut builder = DeviceBuilder::new()
        .name(&cfg.interface)
        .mtu(cfg.mtu)
        .offload(true)
        .multi_queue(false);
    let v4: Vec<_> = cfg
        .addresses
        .iter()
        .filter_map(|n| match n {
            IpNet::V4(n) => Some(*n),
            IpNet::V6(_) => None,
        })
        .collect();
    if let Some(first) = v4.first() {
        builder = builder.ipv4(first.addr(), first.prefix_len(), None);
    }
    for net in &cfg.addresses {
        if let IpNet::V6(n) = net {
            builder = builder.ipv6(n.addr(), n.prefix_len());
        }
    }
    let device = builder
        .build_async()
        .with_context(|| format!("creating TUN device {}", cfg.interface))?;
    // The builder takes one IPv4 address; the rest are added to the live device.
    for n in v4.iter().skip(1) {
        device
            .add_address_v4(n.addr(), n.prefix_len())
            .with_context(|| format!("adding {n} to {}", cfg.interface))?;
    }
    Ok(device)
}

fn bind_socket(fwmark: u32, dual_stack: bool) -> io::Result<UdpSocket> {
    let (domain, any): (Domain, SocketAddr) = if dual_stack {
        (Domain::IPV6, "[::]:0".parse().expect("literal"))
    } else {
        (Domain::IPV4, "0.0.0.0:0".parse().expect("literal"))
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if dual_stack {
        socket.set_only_v6(false)?;
    }
    // The mark is what keeps our own encrypted traffic out of the tunnel's routing table.
    socket.set_mark(fwmark)?;
    socket.set_nonblocking(true)?;
    for (force, plain) in [
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
    ] {
        if set_int_opt(&socket, force).is_err() {
            set_int_opt(&socket, plain)?;
        }
    }
    socket.bind(&any.into())?;
    UdpSocket::from_std(socket.into())
}

fn set_int_opt(socket: &Socket, opt: libc::c_int) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let value = SOCKET_BUFFER as libc::c_int;
    // SAFETY: a valid fd, a valid option and a pointer to a live c_int of the given size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Io {
    fn destination(&self, peer: &Peer) -> SocketAddr {
        match (self.dual_stack, peer.endpoint) {
            (true, SocketAddr::V4(v4)) => {
                SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0).into()
            }
            (_, other) => other,
        }
    }

    /// Sends one datagram, or with `segment` a run of equal-sized datagrams in one syscall.
    async fn send(&self, peer: &Peer, contents: &[u8], segment: Option<usize>) {
        let transmit = Transmit {
            destination: self.destination(peer),
            ecn: None,
            contents,
            segment_size: segment.filter(|s| *s < contents.len()),
            src_ip: None,
        };
        loop {
            if self.socket.writable().await.is_err() {
                return;
            }
            match self.socket.try_io(Interest::WRITABLE, || {
                self.udp.try_send((&self.socket).into(), &transmit)
            }) {
                Ok(()) => {
                    peer.tx_bytes
                        .fetch_add(contents.len() as u64, Ordering::Relaxed);
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    // The network is down or the endpoint unreachable: WireGuard's timers retry.
                    tracing::debug!(error = %e, endpoint = %peer.endpoint, "send failed");
                    return;
                }
            }
        }
    }
}

/// A run of encrypted datagrams for one peer, laid end to end for one GSO send.
struct Run {
    peer: Option<usize>,
    segment: usize,
    count: usize,
    len: usize,
    closed: bool,
}

impl Run {
    fn new() -> Run {
        Run {
            peer: None,
            segment: 0,
            count: 0,
            len: 0,
            closed: false,
        }
    }

    /// Can a datagram of `len` bytes for `peer` join this run?
    fn accepts(&self, peer: usize, len: usize, max_segments: usize) -> bool {
        self.peer == Some(peer)
            && !self.closed
            && len <= self.segment
            && self.count < max_segments
            && self.len + len <= MAX_PACKET - 100
    }

    fn push(&mut self, peer: usize, len: usize) {
        if self.peer.is_none() {
            self.peer = Some(peer);
            self.segment = len;
        }
        // A shorter datagram can only be the last of a GSO run.
        self.closed = len < self.segment;
        self.count += 1;
        self.len += len;
    }
}

/// Sends the run that fills the start of `out`.
async fn flush(io: &Io, out: &[u8], run: &Run) {
    if let Some(p) = run.peer {
        let peer = &io.peers.peers()[p];
        io.send(peer, &out[..run.len], Some(run.segment)).await;
    }
}

/// TUN → encrypt → UDP.
async fn outbound(io: Arc<Io>, mtu: u16, cancel: CancellationToken) {
    let mut original = vec![0u8; VIRTIO_NET_HDR_LEN + MAX_PACKET];
    // After GSO splitting no packet is larger than the MTU.
    let mut bufs = vec![vec![0u8; mtu as usize + 64]; IDEAL_BATCH_SIZE];
    let mut sizes = vec![0usize; IDEAL_BATCH_SIZE];
    let slot = (mtu as usize + WG_OVERHEAD).max(256);
    let mut out = vec![0u8; slot * IDEAL_BATCH_SIZE + MAX_PACKET];
    let max_segments = io.udp.max_gso_segments().max(1);
    loop {
        let n = tokio::select! {
            _ = cancel.cancelled() => return,
            r = io.device.recv_multiple(&mut original, &mut bufs, &mut sizes, 0) => match r {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "TUN read failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        if io.paused.load(Ordering::Relaxed) {
            continue;
        }
        let mut run = Run::new();
        for i in 0..n {
            let packet = &bufs[i][..sizes[i]];
            let Some((_, dst)) = packet_addresses(packet) else {
                continue;
            };
            let Some((index, peer)) = io.peers.route(dst) else {
                continue; // No peer accepts this destination: drop, as WireGuard does.
            };
            if out.len() - run.len < packet.len() + WG_OVERHEAD + 148 {
                flush(&io, &out, &run).await;
                run = Run::new();
            }
            let start = run.len;
            let len = match peer.tunn.lock().encapsulate(packet, &mut out[start..]) {
                TunnResult::WriteToNetwork(p) => p.len(),
                TunnResult::Err(e) => {
                    tracing::debug!(error = ?e, "encapsulate failed");
                    continue;
                }
                // Queued until the handshake completes.
                _ => continue,
            };
            if run.count > 0 && !run.accepts(index, len, max_segments) {
                // Send the run so far, then start a new one with this datagram at the front.
                flush(&io, &out, &run).await;
                out.copy_within(start..start + len, 0);
                run = Run::new();
            }
            run.push(index, len);
            if run.closed {
                flush(&io, &out, &run).await;
                run = Run::new();
            }
        }
        flush(&io, &out, &run).await;
    }
}

/// UDP → decrypt → TUN.
async fn inbound(io: Arc<Io>, cancel: CancellationToken) {
    let batch = quinn_udp::BATCH_SIZE.max(1);
    let mut recv = vec![vec![0u8; MAX_PACKET]; batch];
    let mut metas = vec![RecvMeta::default(); batch];
    // Sized per packet below; a buffer that heads a coalesced (GRO) run grows once and keeps it.
    let mut tun_bufs: Vec<BytesMut> = (0..IDEAL_BATCH_SIZE).map(|_| BytesMut::new()).collect();
    let mut gro = GROTable::default();
    let mut replies: Vec<Vec<u8>> = Vec::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = io.socket.readable() => if r.is_err() { return },
        }
        let n = {
            let mut iovs: Vec<IoSliceMut> = recv.iter_mut().map(|b| IoSliceMut::new(b)).collect();
            match io.socket.try_io(Interest::READABLE, || {
                io.udp.recv((&io.socket).into(), &mut iovs, &mut metas)
            }) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "UDP receive failed");
                    continue;
                }
            }
        };
        let mut ready = 0;
        for (meta, buf) in metas[..n].iter().zip(&recv) {
            let from = meta.addr.ip().to_canonical();
            for datagram in buf[..meta.len].chunks(meta.stride.max(1)) {
                let Some((index, peer)) = io.peers.for_datagram(datagram) else {
                    continue;
                };
                peer.rx_bytes
                    .fetch_add(datagram.len() as u64, Ordering::Relaxed);
                let out = &mut tun_bufs[ready];
                // A decrypted packet is never longer than the datagram that carried it.
                out.resize(TUN_OFFSET + datagram.len(), 0);
                {
                    let mut tunn = peer.tunn.lock();
                    match tunn.decapsulate(Some(from), datagram, &mut out[TUN_OFFSET..]) {
                        TunnResult::WriteToTunnelV4(p, src) => {
                            let len = p.len();
                            if io.peers.allows_source(index, IpAddr::V4(src)) {
                                out.truncate(TUN_OFFSET + len);
                                ready += 1;
                            }
                        }
                        TunnResult::WriteToTunnelV6(p, src) => {
                            let len = p.len();
                            if io.peers.allows_source(index, IpAddr::V6(src)) {
                                out.truncate(TUN_OFFSET + len);
                                ready += 1;
                            }
                        }
                        TunnResult::WriteToNetwork(p) => {
                            // A handshake response or cookie; then anything queued meanwhile.
                            replies.push(p.to_vec());
                            let mut scratch = vec![0u8; MAX_PACKET];
                            while let TunnResult::WriteToNetwork(p) =
                                tunn.decapsulate(None, &[], &mut scratch)
                            {
                                replies.push(p.to_vec());
                            }
                        }
                        TunnResult::Done => {}
                        TunnResult::Err(e) => tracing::debug!(error = ?e, "decapsulate failed"),
                    }
                }
                if is_handshake(datagram) {
                    io.handshakes.notify_one();
                }
                for reply in replies.drain(..) {
                    io.send(peer, &reply, None).await;
                }
                if ready == tun_bufs.len() {
                    if !io.paused.load(Ordering::Relaxed) {
                        write_tun(&io, &mut gro, &mut tun_bufs[..ready]).await;
                    }
                    ready = 0;
                }
            }
        }
        if ready > 0 && !io.paused.load(Ordering::Relaxed) {
            write_tun(&io, &mut gro, &mut tun_bufs[..ready]).await;
        }
    }
}

/// Handshake initiation (1) or response (2), by WireGuard's message type.
fn is_handshake(datagram: &[u8]) -> bool {
    matches!(datagram.first(), Some(1 | 2))
}

async fn write_tun(io: &Io, gro: &mut GROTable, bufs: &mut [BytesMut]) {
    if let Err(e) = io.device.send_multiple(gro, bufs, TUN_OFFSET).await {
        tracing::debug!(error = %e, "TUN write failed");
    }
}

/// Handshake retries, keepalives and rekeying, on boringtun's clock.
async fn timers(io: Arc<Io>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(TIMER_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = vec![0u8; MAX_PACKET];
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        for (peer, p) in plane::timer_packets(&io.peers, &mut buf) {
            io.send(peer, &p, None).await;
        }
    }
}
