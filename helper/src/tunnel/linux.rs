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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;
use tun_rs::{AsyncDevice, DeviceBuilder, GROTable, IDEAL_BATCH_SIZE, VIRTIO_NET_HDR_LEN};

use super::peers::{answers_us, authenticated, packet_addresses, path_is_gone, Peer, PeerTable};
use super::{Controls, DataPlaneConfig};

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
    udp: Udp,
    peers: Arc<PeerTable>,
    /// Signalled whenever a handshake message arrives, so the daemon sees "connected" at once.
    handshakes: Arc<Notify>,
    /// While set, no data packet is forwarded either way (the self-test's simulated drop).
    paused: Arc<AtomicBool>,
    /// Wakes the timer loop to start a handshake with every peer now.
    force: Arc<Notify>,
}

/// The encrypted side: one UDP socket, driven through quinn-udp.
struct Udp {
    socket: UdpSocket,
    state: UdpSocketState,
    /// The socket is IPv6 dual-stack, so IPv4 endpoints are written as v4-mapped.
    dual_stack: bool,
    /// While set, nothing at all is sent: no route reaches the server (offline).
    offline: Arc<AtomicBool>,
    /// Sends refused with "network unreachable" or "address not available": the path is gone.
    unreachable: Arc<AtomicU64>,
}

pub struct DataPlane {
    pub(super) interface: String,
    pub(super) controls: Controls,
    cancel: CancellationToken,
    /// Fires once the data plane's thread has closed the device and the socket.
    closed: oneshot::Receiver<()>,
}

/// The switches and counters of `io`, for the daemon's side.
fn controls_of(io: &Io) -> Controls {
    Controls {
        peers: io.peers.clone(),
        handshakes: io.handshakes.clone(),
        paused: io.paused.clone(),
        offline: io.udp.offline.clone(),
        unreachable: io.udp.unreachable.clone(),
        force: io.force.clone(),
    }
}

impl DataPlane {
    /// Starts the data plane on a thread of its own with a single-threaded runtime: its three
    /// loops then share one epoll and never wake another worker thread, which on the shared
    /// multi-threaded runtime cost a futex wake and a context switch per batch.
    pub(super) async fn open(cfg: DataPlaneConfig) -> Result<DataPlane> {
        let interface = cfg.interface.clone();
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let (started_tx, started_rx) = oneshot::channel::<Result<Controls>>();
        let (closed_tx, closed) = oneshot::channel();
        std::thread::Builder::new()
            .name("underpass-data".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match runtime {
                    Ok(runtime) => runtime.block_on(async move {
                        let mtu = cfg.mtu;
                        match open(cfg).await {
                            Ok(io) => {
                                let _ = started_tx.send(Ok(controls_of(&io)));
                                run(io, mtu, stop).await;
                            }
                            Err(e) => {
                                let _ = started_tx.send(Err(e));
                            }
                        }
                    }),
                    Err(e) => {
                        let _ =
                            started_tx
                                .send(Err(anyhow::Error::new(e)
                                    .context("starting the data plane's runtime")));
                    }
                }
                // The runtime and with it the device and the socket are gone by now.
                let _ = closed_tx.send(());
            })
            .context("starting the data plane thread")?;
        let controls = started_rx
            .await
            .context("the data plane thread ended while starting")??;
        Ok(DataPlane {
            interface,
            controls,
            cancel,
            closed,
        })
    }

    /// Stops the loops and waits until the device and the socket are closed.
    pub(super) async fn close(self) {
        self.cancel.cancel();
        let _ = self.closed.await;
    }
}

/// Opens the device and the socket, and sends each peer's first handshake initiation at once
/// rather than on the first packet: connect is then one round trip.
async fn open(cfg: DataPlaneConfig) -> Result<Arc<Io>> {
    let device = build_device(&cfg)?;
    let dual_stack = cfg.peers.iter().any(|p| p.endpoint.is_ipv6());
    let socket =
        bind_socket(cfg.fwmark, dual_stack).context("creating the encrypted UDP socket")?;
    let udp = Udp::new(socket, dual_stack).context("configuring UDP offload")?;
    let io = Arc::new(Io {
        device,
        udp,
        peers: Arc::new(PeerTable::new(&cfg.private_key, &cfg.peers, cfg.roaming())),
        handshakes: Arc::new(Notify::new()),
        paused: Arc::new(AtomicBool::new(false)),
        force: Arc::new(Notify::new()),
    });
    tracing::info!(
        interface = %cfg.interface,
        mtu = cfg.mtu,
        udp_gso_segments = io.udp.max_segments(),
        udp_gro_segments = io.udp.state.gro_segments(),
        "data plane up"
    );
    for peer in io.peers.peers() {
        let init = {
            let mut buf = [0u8; 256];
            match peer
                .tunn
                .lock()
                .format_handshake_initiation(&mut buf, false)
            {
                TunnResult::WriteToNetwork(p) => Some(p.to_vec()),
                _ => None,
            }
        };
        if let Some(init) = init {
            io.udp.send(peer, &init, None).await;
        }
    }
    Ok(io)
}

/// The three loops, until cancelled.
async fn run(io: Arc<Io>, mtu: u16, cancel: CancellationToken) {
    tokio::join!(
        outbound(
            &io.device,
            &io.udp,
            &io.peers,
            &io.paused,
            mtu,
            cancel.clone()
        ),
        inbound(io.clone(), cancel.clone()),
        timers(io.clone(), cancel),
    );
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

impl Udp {
    fn new(socket: UdpSocket, dual_stack: bool) -> io::Result<Udp> {
        let state = UdpSocketState::new((&socket).into())?;
        Ok(Udp {
            socket,
            state,
            dual_stack,
            offline: Arc::default(),
            unreachable: Arc::default(),
        })
    }

    /// How many datagrams one GSO send may carry *now*. quinn-udp lowers this to 1 for good
    /// when the kernel refuses a GSO send (`EIO`/`EINVAL`), so it is read for every run.
    fn max_segments(&self) -> usize {
        self.state.max_gso_segments().max(1)
    }

    fn destination(&self, endpoint: SocketAddr) -> SocketAddr {
        match (self.dual_stack, endpoint) {
            (true, SocketAddr::V4(v4)) => {
                SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0).into()
            }
            (_, other) => other,
        }
    }

    /// Sends one datagram, or with `segment` a run of equal-sized datagrams in one syscall.
    async fn send_to(
        &self,
        endpoint: SocketAddr,
        contents: &[u8],
        segment: Option<usize>,
    ) -> io::Result<()> {
        if self.offline.load(Ordering::Relaxed) {
            return Err(io::Error::new(
                io::ErrorKind::NetworkUnreachable,
                "offline: no route reaches the server",
            ));
        }
        let transmit = Transmit {
            destination: self.destination(endpoint),
            ecn: None,
            contents,
            segment_size: segment.filter(|s| *s < contents.len()),
            src_ip: None,
        };
        loop {
            self.socket.writable().await?;
            match self.socket.try_io(Interest::WRITABLE, || {
                self.state.try_send((&self.socket).into(), &transmit)
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    // The daemon takes a vanished path as a network change.
                    if path_is_gone(&e) {
                        self.unreachable.fetch_add(1, Ordering::Relaxed);
                    }
                    return Err(e);
                }
                ok => return ok,
            }
        }
    }

    /// Sends to a peer and counts the bytes. A failure is only logged: the network is down or
    /// the endpoint unreachable, and WireGuard's timers retry.
    async fn send(&self, peer: &Peer, contents: &[u8], segment: Option<usize>) {
        match self.send_to(peer.endpoint(), contents, segment).await {
            Ok(()) => {
                peer.tx_bytes
                    .fetch_add(contents.len() as u64, Ordering::Relaxed);
            }
            Err(e) => tracing::debug!(error = %e, endpoint = %peer.endpoint(), "send failed"),
        }
    }

    /// Sends a run of equal-sized datagrams. When the kernel refuses GSO on this path, quinn-udp
    /// turns it off and fails the send; the run then goes out one datagram at a time, so that
    /// nothing is lost, and every later run is built from single datagrams.
    async fn send_run(&self, peer: &Peer, contents: &[u8], segment: usize) {
        let multi = segment < contents.len();
        match self.send_to(peer.endpoint(), contents, Some(segment)).await {
            Ok(()) => {
                peer.tx_bytes
                    .fetch_add(contents.len() as u64, Ordering::Relaxed);
            }
            Err(e) if multi && self.max_segments() == 1 => {
                tracing::warn!(error = %e, endpoint = %peer.endpoint(),
                    "the kernel refused UDP segmentation offload on this path: sending datagrams one by one");
                for datagram in contents.chunks(segment) {
                    self.send(peer, datagram, None).await;
                }
            }
            Err(e) => tracing::debug!(error = %e, endpoint = %peer.endpoint(), "send failed"),
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
async fn flush(udp: &Udp, peers: &PeerTable, out: &[u8], run: &Run) {
    if let Some(p) = run.peer {
        udp.send_run(&peers.peers()[p], &out[..run.len], run.segment)
            .await;
    }
}

/// Where the outbound path reads plaintext packets: the TUN device, or a script in a test.
trait PacketSource {
    /// Reads one batch: a GSO super-packet is split into `bufs`. Returns how many packets.
    async fn recv_batch(
        &self,
        original: &mut [u8],
        bufs: &mut [Vec<u8>],
        sizes: &mut [usize],
    ) -> io::Result<usize>;
}

impl PacketSource for AsyncDevice {
    async fn recv_batch(
        &self,
        original: &mut [u8],
        bufs: &mut [Vec<u8>],
        sizes: &mut [usize],
    ) -> io::Result<usize> {
        self.recv_multiple(original, bufs, sizes, 0).await
    }
}

/// TUN → encrypt → UDP.
async fn outbound(
    tun: &impl PacketSource,
    udp: &Udp,
    peers: &PeerTable,
    paused: &AtomicBool,
    mtu: u16,
    cancel: CancellationToken,
) {
    let mut original = vec![0u8; VIRTIO_NET_HDR_LEN + MAX_PACKET];
    // After GSO splitting no packet is larger than the MTU.
    let mut bufs = vec![vec![0u8; mtu as usize + 64]; IDEAL_BATCH_SIZE];
    let mut sizes = vec![0usize; IDEAL_BATCH_SIZE];
    let slot = (mtu as usize + WG_OVERHEAD).max(256);
    let mut out = vec![0u8; slot * IDEAL_BATCH_SIZE + MAX_PACKET];
    let mut bad_reads: u64 = 0;
    loop {
        let n = tokio::select! {
            _ = cancel.cancelled() => return,
            r = tun.recv_batch(&mut original, &mut bufs, &mut sizes) => match r {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The device itself failed (closed, or its interface deleted): nothing more
                // will come, and retrying would spin.
                Err(e) if e.raw_os_error().is_some() => {
                    tracing::error!(error = %e, "the TUN device failed: no more outbound traffic");
                    return;
                }
                // tun-rs could not split what the kernel handed over. Only that packet is
                // lost; waiting here would stall every flow behind it.
                Err(e) => {
                    bad_reads += 1;
                    if bad_reads == 1 {
                        tracing::warn!(error = %e, "dropped a packet the TUN read could not split");
                    } else {
                        tracing::debug!(error = %e, bad_reads, "dropped a packet the TUN read could not split");
                    }
                    // Never a hot loop, even if every read fails: other tasks run first.
                    tokio::task::yield_now().await;
                    continue;
                }
            },
        };
        if paused.load(Ordering::Relaxed) {
            continue;
        }
        let mut run = Run::new();
        for i in 0..n {
            let packet = &bufs[i][..sizes[i]];
            let Some((_, dst)) = packet_addresses(packet) else {
                continue;
            };
            let Some((index, peer)) = peers.route(dst) else {
                continue; // No peer accepts this destination: drop, as WireGuard does.
            };
            if out.len() - run.len < packet.len() + WG_OVERHEAD + 148 {
                flush(udp, peers, &out, &run).await;
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
            // The limit is read per datagram: it drops to 1 when a GSO send is refused.
            if run.count > 0 && !run.accepts(index, len, udp.max_segments()) {
                // Send the run so far, then start a new one with this datagram at the front.
                flush(udp, peers, &out, &run).await;
                out.copy_within(start..start + len, 0);
                run = Run::new();
            }
            run.push(index, len);
            if run.closed {
                flush(udp, peers, &out, &run).await;
                run = Run::new();
            }
        }
        flush(udp, peers, &out, &run).await;
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
            r = io.udp.socket.readable() => if r.is_err() { return },
        }
        let n = {
            let mut iovs: Vec<IoSliceMut> = recv.iter_mut().map(|b| IoSliceMut::new(b)).collect();
            let udp = &io.udp;
            match udp.socket.try_io(Interest::READABLE, || {
                udp.state.recv((&udp.socket).into(), &mut iovs, &mut metas)
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
            let from = SocketAddr::new(meta.addr.ip().to_canonical(), meta.addr.port());
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
                    let result =
                        tunn.decapsulate(Some(from.ip()), datagram, &mut out[TUN_OFFSET..]);
                    if authenticated(datagram, &result) {
                        peer.roam(from, io.peers.roaming());
                    }
                    if answers_us(datagram) && !matches!(result, TunnResult::Err(_)) {
                        peer.rx_packets.fetch_add(1, Ordering::Relaxed);
                    }
                    match result {
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
                    io.udp.send(peer, &reply, None).await;
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
        trim(&mut tun_bufs);
    }
}

/// How many TUN buffers may keep the room a GRO run gave them (up to 64 KiB each). A batch
/// of one TCP flow has two or three runs; with no bound, the runs' heads land on ever other
/// buffers of the 128 and each keeps its 64 KiB, 8 MiB in all.
const GROWN_KEPT: usize = 8;
/// A buffer this large has headed a GRO run (one datagram's packet is far smaller).
const GROWN: usize = 4096;

/// Frees the room of grown TUN buffers beyond the first [`GROWN_KEPT`].
fn trim(bufs: &mut [BytesMut]) {
    bufs.iter_mut()
        .filter(|b| b.capacity() > GROWN)
        .skip(GROWN_KEPT)
        .for_each(|b| *b = BytesMut::new());
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
        let forced = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => false,
            _ = io.force.notified() => true,
        };
        for peer in io.peers.peers() {
            if let Some(p) = peer.timer_packet(forced, &mut buf) {
                io.udp.send(peer, &p, None).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::os::fd::AsRawFd;

    use parking_lot::Mutex;
    use tokio::time::Instant;

    use super::super::peers::testing::established;
    use super::super::peers::Roaming;
    use super::*;

    #[test]
    fn only_a_few_tun_buffers_keep_the_room_of_a_gro_run() {
        // Runs headed by ever other buffers, batch after batch: all but GROWN_KEPT give the
        // 64 KiB back, and small buffers keep theirs.
        let mut bufs: Vec<BytesMut> = (0..IDEAL_BATCH_SIZE).map(|_| BytesMut::new()).collect();
        for head in (0..IDEAL_BATCH_SIZE).step_by(3) {
            bufs[head].resize(65_000, 0);
            bufs[head + 1].resize(1500, 0);
            trim(&mut bufs);
        }
        let grown = bufs.iter().filter(|b| b.capacity() > GROWN).count();
        assert_eq!(grown, GROWN_KEPT);
        let kept: usize = bufs.iter().map(|b| b.capacity()).sum();
        assert!(
            kept < GROWN_KEPT * 65_536 + IDEAL_BATCH_SIZE * 2048,
            "{kept} bytes kept"
        );
        assert!(bufs.iter().filter(|b| b.capacity() >= 1500).count() > GROWN_KEPT);
    }

    /// A client table with one peer at `endpoint` whose session is established.
    fn connected_peers(endpoint: SocketAddr) -> PeerTable {
        established(endpoint, Roaming::Free).0
    }

    /// An IPv4 packet of `len` bytes to 198.18.1.2 (only the header fields routing reads).
    fn packet(len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[12..16].copy_from_slice(&[10, 64, 0, 2]);
        p[16..20].copy_from_slice(&[198, 18, 1, 2]);
        p
    }

    /// A TUN device that plays a script of reads, then says so and waits forever.
    struct ScriptedTun {
        script: Mutex<VecDeque<io::Result<Vec<Vec<u8>>>>>,
        /// When each read was asked for, on the (paused) test clock.
        reads: Mutex<Vec<Instant>>,
        done: Notify,
    }

    impl ScriptedTun {
        fn new(script: Vec<io::Result<Vec<Vec<u8>>>>) -> ScriptedTun {
            ScriptedTun {
                script: Mutex::new(script.into()),
                reads: Mutex::new(Vec::new()),
                done: Notify::new(),
            }
        }
    }

    impl PacketSource for ScriptedTun {
        async fn recv_batch(
            &self,
            _original: &mut [u8],
            bufs: &mut [Vec<u8>],
            sizes: &mut [usize],
        ) -> io::Result<usize> {
            self.reads.lock().push(Instant::now());
            let next = self.script.lock().pop_front();
            match next {
                Some(Ok(packets)) => {
                    for (i, p) in packets.iter().enumerate() {
                        bufs[i][..p.len()].copy_from_slice(p);
                        sizes[i] = p.len();
                    }
                    Ok(packets.len())
                }
                Some(Err(e)) => Err(e),
                None => {
                    self.done.notify_one();
                    std::future::pending().await
                }
            }
        }
    }

    /// The data plane's socket on loopback, and a plain socket that receives what it sends.
    /// With `refuse_gso` the kernel refuses every GSO send on it (`SO_NO_CHECK` makes
    /// `UDP_SEGMENT` fail with `EINVAL`), as on a path without segmentation offload.
    fn loopback(refuse_gso: bool) -> (Udp, std::net::UdpSocket) {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.set_nonblocking(true).unwrap();
        if refuse_gso {
            let one: libc::c_int = 1;
            // SAFETY: a valid fd, a valid option and a pointer to a live c_int of that size.
            let rc = unsafe {
                libc::setsockopt(
                    tx.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_NO_CHECK,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, 0, "SO_NO_CHECK: {}", io::Error::last_os_error());
        }
        let udp = Udp::new(UdpSocket::from_std(tx).unwrap(), false).unwrap();
        (udp, rx)
    }

    /// The sizes of the datagrams waiting on `rx`.
    fn received(rx: &std::net::UdpSocket) -> Vec<usize> {
        let mut buf = vec![0u8; MAX_PACKET];
        let mut sizes = Vec::new();
        while let Ok(n) = rx.recv(&mut buf) {
            sizes.push(n);
        }
        sizes
    }

    /// Runs the outbound loop over `tun` until the script is played, then stops it.
    async fn play(tun: &ScriptedTun, udp: &Udp, peers: &PeerTable) {
        let cancel = CancellationToken::new();
        let paused = AtomicBool::new(false);
        let run = outbound(tun, udp, peers, &paused, 1420, cancel.clone());
        tokio::pin!(run);
        tokio::select! {
            _ = &mut run => panic!("the outbound loop ended by itself"),
            _ = tun.done.notified() => {}
        }
        cancel.cancel();
        run.await;
    }

    #[tokio::test]
    async fn a_refused_gso_send_is_resent_one_datagram_at_a_time() {
        let (udp, rx) = loopback(true);
        assert!(
            udp.max_segments() > 1,
            "the kernel offers UDP GSO, so the test starts with multi-datagram runs"
        );
        let peers = connected_peers(rx.local_addr().unwrap());
        // Two reads of 16 equal packets: each would be one GSO run of 16 datagrams.
        let batch = || Ok(vec![packet(600); 16]);
        let tun = ScriptedTun::new(vec![batch(), batch()]);
        play(&tun, &udp, &peers).await;
        assert_eq!(udp.max_segments(), 1, "quinn-udp turned GSO off");
        let sizes = received(&rx);
        assert_eq!(sizes.len(), 32, "every datagram arrived: {sizes:?}");
        assert!(sizes.iter().all(|s| *s == 600 + 32), "{sizes:?}");
        assert_eq!(peers.sample().tx_bytes, 32 * (600 + 32));
    }

    #[tokio::test]
    async fn gso_runs_carry_many_datagrams_in_one_send() {
        let (udp, rx) = loopback(false);
        let peers = connected_peers(rx.local_addr().unwrap());
        let tun = ScriptedTun::new(vec![Ok(vec![packet(600); 16])]);
        play(&tun, &udp, &peers).await;
        assert!(udp.max_segments() > 1);
        assert_eq!(received(&rx), vec![632; 16]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_tun_read_error_does_not_stall_the_packets_behind_it() {
        let (udp, rx) = loopback(false);
        let peers = connected_peers(rx.local_addr().unwrap());
        let tun = ScriptedTun::new(vec![
            Ok(vec![packet(100)]),
            // What tun-rs says about a read it cannot split.
            Err(io::Error::other(
                "length of packet (4) <= VIRTIO_NET_HDR_LEN (10)",
            )),
            Ok(vec![packet(100)]),
        ]);
        play(&tun, &udp, &peers).await;
        assert_eq!(received(&rx).len(), 2, "both good packets went out");
        let reads = tun.reads.lock();
        let waited = reads[2] - reads[1];
        assert!(
            waited < Duration::from_millis(1),
            "the read after the error waited {waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_tun_device_ends_the_outbound_loop() {
        let (udp, rx) = loopback(false);
        let peers = connected_peers(rx.local_addr().unwrap());
        // EBADFD: the interface was deleted under the open device.
        let tun = ScriptedTun::new(vec![Err(io::Error::from_raw_os_error(libc::EBADFD))]);
        let paused = AtomicBool::new(false);
        let run = outbound(&tun, &udp, &peers, &paused, 1420, CancellationToken::new());
        tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .expect("the loop must end on a dead device, not retry it");
        assert_eq!(tun.reads.lock().len(), 1);
    }
}
