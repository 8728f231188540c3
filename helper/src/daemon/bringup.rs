//! The session's bring-up and tear-down: endpoints resolved (off the actor, before any route
//! exists, so no lookup can go through the tunnel it is needed to build), the kill switch's
//! hole, the TUN and the data plane, the MSS clamp, routes and DNS, in that order, and back.

use super::*;

/// How long the DNS of a bring-up given up for a newer request may take to be restored.
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
        let resolvers = Resolvers::helper(self.dns.system_resolvers());
        let done = self.lookups.done_tx.clone();
        let names: Vec<String> = config.peers.iter().map(|p| p.endpoint.clone()).collect();
        let task = tokio::spawn(async move {
            let mut endpoints = Vec::with_capacity(names.len());
            for name in names {
                match P::resolve(name, resolvers.clone()).await {
                    Ok(a) => endpoints.push(a),
                    Err(e) => {
                        let _ = done.send(Resolved {
                            generation,
                            endpoints: Err(e),
                        });
                        return;
                    }
                }
            }
            let _ = done.send(Resolved {
                generation,
                endpoints: Ok(endpoints),
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
        let current = self
            .lookups
            .running
            .as_ref()
            .is_some_and(|r| r.generation == resolved.generation);
        if !current {
            return;
        }
        let Some(Running { config, steps, .. }) = self.lookups.running.take() else {
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
            Err(e) if e.downcast_ref::<Interrupted>().is_some() => {
                tracing::info!("connect interrupted by a newer request");
                None
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
        // Setting DNS may hang (D-Bus): a Connect or Disconnect sent meanwhile wins.
        self.interrupts.borrow_and_update();
        let mut interrupts = self.interrupts.clone();
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
        let dns = if config.dns.is_empty() {
            None
        } else {
            let wanted = DnsConfig {
                servers: config.dns.clone(),
                search: config.dns_search.clone(),
                interface: interface.clone(),
                full_tunnel: plan.full_tunnel_v4 || plan.full_tunnel_v6,
            };
            // The resolver may hang (systemd-resolved behind a wedged D-Bus): a Connect or
            // Disconnect sent meanwhile wins here too.
            let set = tokio::select! {
                set = self.dns.set(&wanted) => set
                    .map_err(|e| e.context(format!("setting DNS through {}", self.dns.method()))),
                _ = interrupts.changed() => Err(Interrupted.into()),
            };
            if let Err(e) = set {
                // Never leave the old resolver silently in place: the connect fails instead.
                // The undo of an interrupted set is bounded: the link goes away with the data
                // plane below, and the resolver's settings for it with the link.
                let limit = if e.downcast_ref::<Interrupted>().is_some() {
                    INTERRUPTED_DNS_UNDO
                } else {
                    Duration::MAX
                };
                if tokio::time::timeout(limit, self.dns.restore())
                    .await
                    .is_err()
                {
                    tracing::warn!(
                        ?limit,
                        "restoring DNS after an interrupted connect: no answer"
                    );
                }
                self.take_down(&mut routes, plane).await;
                return Err(e);
            }
            Some(DnsStatus {
                servers: config.dns.clone(),
                method: self.dns.method().to_string(),
            })
        };
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
            dns,
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
            dns,
            ..
        } = session;
        if dns.is_some() {
            if let Err(e) = self.dns.restore().await {
                tracing::error!(error = %format!("{e:#}"), "restoring DNS");
            }
        }
        self.take_down(&mut routes, plane).await;
        tracing::info!(interface = %plan.interface, "tunnel down");
    }
}

/// A bring-up given up for a newer Connect or a Disconnect, which the daemon handles next.
#[derive(Debug)]
pub(super) struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted by a newer request")
    }
}

impl std::error::Error for Interrupted {}

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
