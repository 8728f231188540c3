//! macOS routing through one `PF_ROUTE` socket (`nix`): the messages and the plan are
//! `rtmsg.rs` (tested on Linux); this file writes them, matches the kernel's replies by
//! sequence number, and watches the same socket for network changes. When the physical
//! default gateway moves (another Wi-Fi, a cable plugged in), the endpoint host routes and the
//! exclusions are pointed at the new one, so the encrypted UDP still cannot enter the tunnel.
//! The routes added are also listed in /var/run (gone at reboot, like the routes), so a helper
//! restarted after a crash removes its predecessor's. Not verified on a Mac (see the README).

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::errno::Errno;
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use parking_lot::Mutex;
use tokio::io::unix::AsyncFd;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

use super::rtmsg::{self, Gateway, Gateways, Link, Message, Route, RTF_GATEWAY};
use super::{RouteLookup, RouteManager, RoutePlan};

const STATE_FILE: &str = "/var/run/underpassd.routes.json";
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// Network changes come in bursts (link, address, routes): act once they settle.
const SETTLE: Duration = Duration::from_millis(500);

struct RouteSocket {
    fd: AsyncFd<OwnedFd>,
    seq: AtomicI32,
    pending: Mutex<HashMap<i32, oneshot::Sender<Message>>>,
    /// The tunnel's interface index, so our own routes do not count as network changes.
    tunnel_index: Mutex<u16>,
    changed: Notify,
}

impl RouteSocket {
    fn open() -> Result<RouteSocket> {
        let fd = socket(AddressFamily::Route, SockType::Raw, SockFlag::empty(), None)
            .context("opening a PF_ROUTE socket")?;
        nix::fcntl::fcntl(
            fd.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .context("making the routing socket non-blocking")?;
        // SAFETY: the AsyncFd takes the OwnedFd, so the descriptor lives exactly as long as the
        // registration and nothing else closes it.
        let fd = unsafe { AsyncFd::register(fd) }
            .map_err(|e| anyhow!("registering the routing socket: {e}"))?;
        Ok(RouteSocket {
            fd,
            seq: AtomicI32::new(1),
            pending: Mutex::new(HashMap::new()),
            tunnel_index: Mutex::new(0),
            changed: Notify::new(),
        })
    }

    fn next_seq(&self) -> i32 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Writes one message and waits for the kernel's answer to it.
    async fn request(&self, msg: Message) -> Result<Message> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(msg.seq, tx);
        let bytes = msg.encode();
        let written = nix::unistd::write(self.fd.get_ref(), &bytes);
        if let Err(e) = written {
            self.pending.lock().remove(&msg.seq);
            return Err(e.into());
        }
        let reply = tokio::time::timeout(REPLY_TIMEOUT, rx).await;
        self.pending.lock().remove(&msg.seq);
        let reply = reply
            .map_err(|_| anyhow!("no answer on the routing socket within {REPLY_TIMEOUT:?}"))?
            .map_err(|_| anyhow!("the routing socket closed"))?;
        if reply.errno != 0 {
            return Err(Errno::from_raw(reply.errno).into());
        }
        Ok(reply)
    }

    /// Reads the socket forever: replies go to their requests, network changes wake the healer.
    async fn read_loop(self: Arc<Self>) {
        let pid = std::process::id() as i32;
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok(mut ready) = self.fd.readable().await else {
                return;
            };
            let n = match ready.try_io(|fd| {
                nix::unistd::read(fd.get_ref().as_raw_fd(), &mut buf).map_err(std::io::Error::from)
            }) {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "routing socket read failed");
                    continue;
                }
                Err(_would_block) => continue,
            };
            let msg = &buf[..n];
            if let Ok(m) = Message::parse(msg) {
                if m.pid == pid {
                    if let Some(tx) = self.pending.lock().remove(&m.seq) {
                        let _ = tx.send(m);
                    }
                    continue;
                }
            }
            if rtmsg::is_network_change(msg, *self.tunnel_index.lock()) {
                self.changed.notify_one();
            }
        }
    }

    async fn default_gateways(&self) -> Gateways {
        let mut g = Gateways::default();
        for v4 in [true, false] {
            let reply = self.request(rtmsg::get_default(v4, self.next_seq())).await;
            let gateway = match reply {
                Ok(Message {
                    flags,
                    gateway: Some(Gateway::Ip(ip)),
                    ..
                }) if flags & RTF_GATEWAY != 0 => Some(ip),
                _ => None,
            };
            if v4 {
                g.v4 = gateway;
            } else {
                g.v6 = gateway;
            }
        }
        g
    }

    async fn add(&self, route: &Route) -> Result<()> {
        self.request(route.add(self.next_seq()))
            .await
            .map(|_| ())
            .with_context(|| format!("adding route {} via {:?}", route.dst, route.via))
    }

    async fn delete(&self, route: &Route) -> Result<()> {
        match self.request(route.delete(self.next_seq())).await {
            Ok(_) => Ok(()),
            // Gone already: with its interface, or by someone else's hand.
            Err(e) if e.downcast_ref::<Errno>() == Some(&Errno::ESRCH) => Ok(()),
            Err(e) => Err(e.context(format!("deleting route {}", route.dst))),
        }
    }
}

/// What is installed, and what it was computed from (to recompute it when the network moves).
struct Installed {
    plan: RoutePlan,
    tunnel: Link,
    routes: Vec<Route>,
}

pub struct MacRoutes {
    socket: Arc<RouteSocket>,
    installed: Arc<tokio::sync::Mutex<Option<Installed>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for MacRoutes {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn save(routes: &[Route]) -> Result<()> {
    let json = serde_json::to_vec(routes).expect("plain data");
    let tmp = format!("{STATE_FILE}.tmp");
    std::fs::write(&tmp, json).with_context(|| format!("writing {tmp}"))?;
    std::fs::rename(&tmp, STATE_FILE).with_context(|| format!("renaming onto {STATE_FILE}"))
}

/// Moves the endpoint and exclusion routes to the current gateway after a network change.
async fn heal(socket: Arc<RouteSocket>, installed: Arc<tokio::sync::Mutex<Option<Installed>>>) {
    loop {
        socket.changed.notified().await;
        tokio::time::sleep(SETTLE).await;
        let mut guard = installed.lock().await;
        let Some(now) = guard.as_mut() else {
            continue;
        };
        let gateways = socket.default_gateways().await;
        let wanted = rtmsg::macos_routes(&now.plan, &now.tunnel, &now.plan.endpoints, gateways);
        if wanted == now.routes {
            continue;
        }
        tracing::info!(
            ?gateways,
            "the network changed: re-pointing the routes around the tunnel"
        );
        for r in now.routes.iter().filter(|r| !wanted.contains(r)) {
            if let Err(e) = socket.delete(r).await {
                tracing::warn!(error = %format!("{e:#}"), "network change");
            }
        }
        for r in wanted.iter().filter(|r| !now.routes.contains(r)) {
            if let Err(e) = socket.add(r).await {
                tracing::warn!(error = %format!("{e:#}"), "network change");
            }
        }
        now.routes = wanted;
        if let Err(e) = save(&now.routes) {
            tracing::warn!(error = %format!("{e:#}"), "network change");
        }
    }
}

impl RouteManager for MacRoutes {
    async fn open() -> Result<Self> {
        let socket = Arc::new(RouteSocket::open()?);
        let installed = Arc::new(tokio::sync::Mutex::new(None));
        let tasks = vec![
            tokio::spawn(socket.clone().read_loop()),
            tokio::spawn(heal(socket.clone(), installed.clone())),
        ];
        Ok(MacRoutes {
            socket,
            installed,
            tasks,
        })
    }

    async fn remove_stale(&mut self) -> Result<()> {
        let Ok(bytes) = std::fs::read(STATE_FILE) else {
            return Ok(());
        };
        let stale: Vec<Route> = serde_json::from_slice(&bytes)
            .with_context(|| format!("reading the stale route list {STATE_FILE}"))?;
        for r in stale.iter().rev() {
            self.socket.delete(r).await?;
        }
        std::fs::remove_file(STATE_FILE).with_context(|| format!("removing {STATE_FILE}"))
    }

    async fn free_table_and_mark(&self) -> Result<(u32, u32)> {
        // No policy routing or marks on macOS: the endpoint host routes do their job.
        Ok((0, 0))
    }

    async fn apply(&mut self, plan: &RoutePlan) -> Result<()> {
        let index = nix::net::if_::if_nametoindex(plan.interface.as_str())
            .with_context(|| format!("looking up interface {}", plan.interface))?;
        let tunnel = Link {
            index: u16::try_from(index).context("interface index out of range")?,
            name: plan.interface.clone(),
        };
        *self.socket.tunnel_index.lock() = tunnel.index;
        let gateways = self.socket.default_gateways().await;
        if gateways.v4.is_none() && gateways.v6.is_none() && !plan.endpoints.is_empty() {
            bail!("no default gateway: the endpoint cannot be routed around the tunnel");
        }
        let routes = rtmsg::macos_routes(plan, &tunnel, &plan.endpoints, gateways);
        let mut added = Vec::new();
        for r in &routes {
            if let Err(e) = self.socket.add(r).await {
                for done in added.iter().rev() {
                    let _ = self.socket.delete(done).await;
                }
                return Err(e);
            }
            added.push(r.clone());
        }
        save(&routes)?;
        *self.installed.lock().await = Some(Installed {
            plan: plan.clone(),
            tunnel,
            routes,
        });
        Ok(())
    }

    async fn restore(&mut self) -> Result<()> {
        let Some(installed) = self.installed.lock().await.take() else {
            return Ok(());
        };
        for r in installed.routes.iter().rev() {
            self.socket.delete(r).await?;
        }
        let _ = std::fs::remove_file(STATE_FILE);
        Ok(())
    }

    async fn default_gateways(&self) -> Vec<IpAddr> {
        let g = self.socket.default_gateways().await;
        g.v4.into_iter().chain(g.v6).collect()
    }

    async fn lookup(&self, dst: IpAddr, _fwmark: Option<u32>) -> Option<RouteLookup> {
        // No marks on macOS: the helper's own traffic follows the host routes to endpoints.
        let reply = self
            .socket
            .request(rtmsg::get_route_to(dst, self.socket.next_seq()))
            .await
            .ok()?;
        Some(RouteLookup {
            destination: dst,
            interface: reply.ifp.map(|l| l.name).unwrap_or_default(),
            gateway: match reply.gateway {
                Some(Gateway::Ip(ip)) if reply.flags & RTF_GATEWAY != 0 => Some(ip),
                _ => None,
            },
            source: None,
            route_mtu: u16::try_from(reply.mtu).ok().filter(|m| *m > 0),
            link_mtu: None,
        })
    }

    fn watch_changes() -> Result<tokio::sync::mpsc::UnboundedReceiver<()>> {
        // A routing socket of its own that only listens: every change of links, addresses or
        // default routes (rtmsg::is_network_change) is one notification.
        let socket = Arc::new(RouteSocket::open()?);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(socket.clone().read_loop());
        tokio::spawn(async move {
            loop {
                socket.changed.notified().await;
                if tx.send(()).is_err() {
                    return;
                }
            }
        });
        Ok(rx)
    }
}
