//! The session's bring-up and tear-down: endpoints resolved (before any route exists, so no
//! lookup can go through the tunnel it is needed to build), the kill switch's hole, the TUN and
//! the data plane, the MSS clamp, routes and DNS, in that order, and back. The two steps that
//! wait on others, the lookups and the DNS set, run in tasks beside the actor.

use super::*;

/// How long the DNS of a session torn down while its DNS was still being set may take to be
/// restored.
const INTERRUPTED_DNS_UNDO: Duration = Duration::from_millis(500);

/// The endpoint lookups of the bring-up in progress, which run in a task of their own: a slow
/// or dead resolver never holds up the actor, and a newer Connect, a Disconnect or the next
/// rung of the ladder simply drops them.
pub(super) struct Lookups {
    generation: u64,
    running: Option<Running>,
    done_tx: mpsc::UnboundedSender<Resolved>,
    pub(super) done: mpsc::UnboundedReceiver<Resolved>,
}

struct Running {
    generation: u64,
    config: TunnelConfig,
    steps: ConnectSteps,
    task: tokio::task::JoinHandle<()>,
}

/// The outcome of one bring-up's lookups: each peer's endpoint, in order.
pub(super) struct Resolved {
    generation: u64,
    endpoints: Result<Vec<std::net::SocketAddr>>,
}

impl Default for Lookups {
    fn default() -> Self {
        let (done_tx, done) = mpsc::unbounded_channel();
        Lookups {
            generation: 0,
            running: None,
            done_tx,
            done,
        }
    }
}

impl Lookups {
    /// Gives up the lookups in progress, if any.
    pub(super) fn cancel(&mut self) {
        if let Some(r) = self.running.take() {
            r.task.abort();
        }
    }
}

impl<P: Platform> Daemon<P> {
    /// Starts bringing `config` up. Literal endpoints are set up at once; names are looked up
    /// off the actor while the kill switch blocks (the helper's own lookups pass), and
    /// [`Daemon::on_resolved`] carries on. Any bring-up still in progress gives way. Returns the
    /// input the state machine takes next, if any.
    pub(super) async fn start_bring_up(
        &mut self,
        config: TunnelConfig,
    ) -> Option<Input<Session<P>>> {
        self.lookups.cancel();
        self.lookups.generation += 1;
        let generation = self.lookups.generation;
        let steps = ConnectSteps::start();
        let literal: Option<Vec<std::net::SocketAddr>> = config
            .peers
            .iter()
            .map(|p| p.endpoint.parse().ok())
            .collect();
        if let Some(endpoints) = literal {
            return self.finish_bring_up(&config, Ok(endpoints), steps).await;
        }
        let _ = self.enforce_firewall(None).await;
        // The helper's own marked lookups, to the system's resolvers: the kill switch admits them.
        let resolvers = Resolvers::helper(self.system_resolvers());
        let done = self.lookups.done_tx.clone();
        let names: Vec<String> = config.peers.iter().map(|p| p.endpoint.clone()).collect();
        // Every peer's name at once; the first failure is the bring-up's.
        let task = tokio::spawn(async move {
            let lookups = names.into_iter().map(|n| P::resolve(n, resolvers.clone()));
            let endpoints = futures::future::try_join_all(lookups).await;
            let _ = done.send(Resolved {
                generation,
                endpoints,
            });
        });
        self.lookups.running = Some(Running {
            generation,
            config,
            steps,
            task,
        });
        None
    }

    /// The lookups of a bring-up ended: set the session up (or heal, or wait offline).
    pub(super) async fn on_resolved(&mut self, resolved: Resolved) {
        // Lookups given up for a newer bring-up may still report: only the current one counts.
        let current = |r: &mut Running| r.generation == resolved.generation;
        let Some(Running { config, steps, .. }) = self.lookups.running.take_if(current) else {
            return;
        };
        if let Some(input) = self
            .finish_bring_up(&config, resolved.endpoints, steps)
            .await
        {
            self.feed(input).await;
        }
    }

    /// Sets the session up on its endpoints, and says what the state machine takes next: the
    /// session, or why there is none (offline, or a failure the ladder retries).
    async fn finish_bring_up(
        &mut self,
        config: &TunnelConfig,
        endpoints: Result<Vec<std::net::SocketAddr>>,
        mut steps: ConnectSteps,
    ) -> Option<Input<Session<P>>> {
        let result = match endpoints {
            Ok(endpoints) => {
                steps.mark("resolve");
                let peers = config
                    .peers
                    .iter()
                    .zip(endpoints)
                    .map(|(p, endpoint)| PeerSpec {
                        public_key: p.public_key.clone(),
                        preshared_key: p.preshared_key.clone(),
                        endpoint,
                        allowed_ips: p.allowed_ips.clone(),
                        persistent_keepalive: p.persistent_keepalive,
                    })
                    .collect();
                self.set_up(config, peers, steps).await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(session) => {
                // The last error stays until the server answers: a session set up is not yet
                // a tunnel that works.
                self.healing.rx_mark = 0;
                Some(Input::Up(session))
            }
            Err(e) => {
                // Whatever failed here (a lookup, the network, the system) may work on the next
                // attempt; the kill switch blocks meanwhile.
                tracing::warn!(error = %format!("{e:#}"), "connect failed");
                self.healing.last_error = Some(format!("{e:#}"));
                let _ = self.enforce_firewall(None).await;
                let now = now();
                Some(if e.downcast_ref::<NoRoute>().is_some() {
                    Input::NoRoute { now }
                } else {
                    Input::Lost {
                        reason: ReconnectReason::SetupFailed,
                        now,
                    }
                })
            }
        }
    }

    /// Sets the session up once its endpoints are known: the kill switch's hole, the TUN and
    /// the data plane, the MSS clamp, routes and DNS.
    async fn set_up(
        &mut self,
        config: &TunnelConfig,
        peers: Vec<PeerSpec>,
        mut steps: ConnectSteps,
    ) -> Result<Session<P>> {
        let mut routes = P::Routes::open().await?;
        routes.remove_stale().await?;
        let (table, fwmark) = routes.free_table_and_mark().await?;
        // Offline (at boot before the network, or after it went away): wait for a route rather
        // than send into nothing.
        let first = peers[0].endpoint;
        let Some(path) = routes.lookup(first.ip(), Some(fwmark)).await else {
            return Err(NoRoute(first).into());
        };
        let mtu = match config.mtu {
            Some(m) => m,
            None => {
                let inner_v6 = config.addresses.iter().any(|a| a.addr().is_ipv6());
                mtu::default_mtu(path.path_mtu(), inner_v6)
            }
        };
        self.healing.path = Some(path);
        let interface = free_interface_name(&self.settings.interface_prefix)?;
        let plan = RoutePlan::new(config, &interface, fwmark, table)
            .with_endpoints(peers.iter().map(|p| p.endpoint.ip()));
        let hole = TunnelHole {
            interface: interface.clone(),
            endpoints: peers.iter().map(|p| p.endpoint).collect(),
            fwmark,
            dns: config.dns.clone(),
            addresses: config.addresses.clone(),
            include: plan.include.clone(),
            exclude: plan.exclude.clone(),
        };
        steps.mark("route_lookup");
        // The endpoint must be open in the kill switch before the first handshake goes out.
        self.enforce_firewall(Some(&hole)).await?;
        steps.mark("firewall");
        let plane = P::Plane::start(DataPlaneConfig {
            interface: interface.clone(),
            private_key: config.private_key.clone(),
            addresses: config.addresses.clone(),
            mtu,
            peers,
            fwmark,
            // Roaming never widens the kill switch's endpoints (tunnel/peers.rs).
            roaming: Roaming::under(self.firewall_applied.as_ref().and_then(Option::as_ref)),
        })
        .await?;
        steps.mark("data_plane");
        // The rest overlaps the handshake in flight. The clamp is in place before any route
        // sends TCP into the tunnel.
        if let Err(e) = self.firewall.clamp_mss(Some(&interface)).await {
            tracing::warn!(error = %format!("{e:#}"), "TCP MSS clamp");
        }
        steps.mark("mss_clamp");
        if let Err(e) = routes.apply(&plan).await {
            self.take_down(&mut routes, plane).await;
            return Err(e);
        }
        steps.mark("routes");
        // DNS is set in a task beside the actor: it may wait on systemd-resolved's D-Bus,
        // and nothing else waits for it. The session counts as connected once it is done.
        let dns_task = (!config.dns.is_empty()).then(|| {
            self.start_dns(DnsConfig {
                servers: config.dns.clone(),
                search: config.dns_search.clone(),
                interface: interface.clone(),
                full_tunnel: plan.full_tunnel_v4 || plan.full_tunnel_v6,
            })
        });
        steps.mark("dns");
        tracing::info!(
            %interface, mtu, table, fwmark,
            full_tunnel = plan.full_tunnel_v4 || plan.full_tunnel_v6,
            steps = %steps,
            "tunnel routes installed"
        );
        Ok(Session {
            plane,
            routes,
            plan,
            hole,
            dns_wanted: dns_task.is_some(),
            dns: None,
            dns_task,
            mtu,
            addresses: config.addresses.clone(),
            started: now(),
        })
    }

    /// Takes back the routes, the data plane and the MSS clamp: of a session torn down, or of a
    /// bring-up that failed after starting the data plane.
    async fn take_down(&mut self, routes: &mut P::Routes, plane: P::Plane) {
        if let Err(e) = routes.restore().await {
            tracing::error!(error = %format!("{e:#}"), "restoring routes");
        }
        plane.stop().await;
        if let Err(e) = self.firewall.clamp_mss(None).await {
            tracing::warn!(error = %format!("{e:#}"), "removing the TCP MSS clamp");
        }
    }

    pub(super) async fn tear_down(&mut self, session: Session<P>) {
        let Session {
            plane,
            mut routes,
            plan,
            dns_wanted,
            dns_task,
            ..
        } = session;
        if dns_wanted {
            // A set still in progress is given up; its undo is bounded, since the link goes
            // away with the data plane below, and the resolver's settings for it with the link.
            let limit = match dns_task {
                Some(t) => {
                    t.task.abort();
                    let _ = t.task.await;
                    INTERRUPTED_DNS_UNDO
                }
                None => Duration::MAX,
            };
            let dns = self.dns.clone();
            match tokio::time::timeout(limit, async { dns.lock().await.restore().await }).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"), "restoring DNS"),
                Err(_) => {
                    tracing::warn!(?limit, "restoring DNS after an unfinished set: no answer")
                }
            }
            self.system_resolvers();
        }
        self.take_down(&mut routes, plane).await;
        tracing::info!(interface = %plan.interface, "tunnel down");
    }

    /// Sets DNS in a task of its own; [`Daemon::on_dns_set`] hears how it went.
    fn start_dns(&mut self, wanted: DnsConfig) -> DnsTask {
        self.dns_tasks.generation += 1;
        let generation = self.dns_tasks.generation;
        let servers = wanted.servers.clone();
        let dns = self.dns.clone();
        let done = self.dns_tasks.done_tx.clone();
        let task = tokio::spawn(async move {
            let mut dns = dns.lock_owned().await;
            let result = dns.set(&wanted).await;
            let _ = done.send(DnsSet { generation, result });
        });
        DnsTask {
            generation,
            servers,
            task,
        }
    }

    /// A session's DNS is set, or could not be: then the session goes (the old resolver is
    /// never left silently in place) and the ladder tries again.
    pub(super) async fn on_dns_set(&mut self, set: DnsSet) {
        let method = self.dns_method;
        let Some(session) = self.state.session_mut() else {
            return;
        };
        let Some(task) = session.dns_task.take_if(|t| t.generation == set.generation) else {
            return;
        };
        match set.result {
            Ok(()) => {
                session.dns = Some(DnsStatus {
                    servers: task.servers,
                    method: method.to_string(),
                });
                tracing::info!(method, "DNS set");
                self.system_resolvers();
                // Connected now, if the handshake is done too.
                self.on_tick(false).await;
            }
            Err(e) => {
                let e = e.context(format!("setting DNS through {method}"));
                tracing::warn!(error = %format!("{e:#}"), "connect failed");
                self.healing.last_error = Some(format!("{e:#}"));
                if let Some(session) = self.state.take_session() {
                    self.tear_down(session).await;
                }
                let _ = self.enforce_firewall(None).await;
                self.feed(Input::Lost {
                    reason: ReconnectReason::SetupFailed,
                    now: now(),
                })
                .await;
            }
        }
    }
}

/// Sessions' DNS sets in progress, and their outcomes.
pub(super) struct DnsTasks {
    generation: u64,
    done_tx: mpsc::UnboundedSender<DnsSet>,
    pub(super) done: mpsc::UnboundedReceiver<DnsSet>,
}

impl Default for DnsTasks {
    fn default() -> Self {
        let (done_tx, done) = mpsc::unbounded_channel();
        DnsTasks {
            generation: 0,
            done_tx,
            done,
        }
    }
}

/// One session's DNS being set.
pub(super) struct DnsTask {
    generation: u64,
    servers: Vec<std::net::IpAddr>,
    task: tokio::task::JoinHandle<()>,
}

/// How setting one session's DNS went.
pub(super) struct DnsSet {
    generation: u64,
    result: Result<()>,
}

/// No route reaches the server: the helper is offline, not failing.
#[derive(Debug)]
pub(super) struct NoRoute(pub(super) std::net::SocketAddr);

impl std::fmt::Display for NoRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no route reaches the server {}", self.0)
    }
}

impl std::error::Error for NoRoute {}

/// The first `<prefix>N` that no existing interface uses.
fn free_interface_name(prefix: &str) -> Result<String> {
    for n in 0..100 {
        let name = format!("{prefix}{n}");
        if !crate::tunnel::interface_exists(&name) {
            return Ok(name);
        }
    }
    bail!("no free interface name {prefix}0..{prefix}99")
}
