//! The session's bring-up and tear-down: endpoints resolved, the kill switch's hole, the TUN
//! and the data plane, the MSS clamp, routes and DNS, in that order, and back.

use super::*;

impl Daemon {
    pub(super) async fn bring_up(&mut self, config: &TunnelConfig) -> Result<Session> {
        // Lookups may hang on a dead resolver: a Connect or Disconnect sent meanwhile wins.
        let mut steps = ConnectSteps::start();
        self.interrupts.borrow_and_update();
        let mut interrupts = self.interrupts.clone();
        // The helper's own marked lookups, to the system's resolvers: the kill switch admits them.
        let resolvers = Resolvers::helper(self.dns.system_resolvers());
        let peers = tokio::select! {
            peers = resolve_peers(config, &resolvers) => peers?,
            _ = interrupts.changed() => return Err(Interrupted.into()),
        };
        steps.mark("resolve");
        let mut routes = PlatformRoutes::open().await?;
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
        let plane = DataPlane::start(DataPlaneConfig {
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
            plane.stop().await;
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
            if let Err(e) = self.dns.set(&wanted).await {
                // Never leave the old resolver silently in place: the connect fails instead.
                let _ = self.dns.restore().await;
                let _ = routes.restore().await;
                plane.stop().await;
                return Err(e.context(format!("setting DNS through {}", self.dns.method())));
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
            started: Instant::now(),
        })
    }

    pub(super) async fn tear_down(&mut self) {
        if let Some(mut s) = self.session.take() {
            if s.dns.is_some() {
                if let Err(e) = self.dns.restore().await {
                    tracing::error!(error = %format!("{e:#}"), "restoring DNS");
                }
            }
            if let Err(e) = s.routes.restore().await {
                tracing::error!(error = %format!("{e:#}"), "restoring routes");
            }
            s.plane.stop().await;
            if let Err(e) = self.firewall.clamp_mss(None).await {
                tracing::warn!(error = %format!("{e:#}"), "removing the TCP MSS clamp");
            }
            tracing::info!(interface = %s.plan.interface, "tunnel down");
        }
    }
}

/// Every peer with its endpoint resolved (before any route exists, so no lookup can go through
/// the tunnel it is needed to build).
async fn resolve_peers(config: &TunnelConfig, resolvers: &Resolvers) -> Result<Vec<PeerSpec>> {
    let mut peers = Vec::with_capacity(config.peers.len());
    for p in &config.peers {
        peers.push(PeerSpec {
            public_key: p.public_key.clone(),
            preshared_key: p.preshared_key.clone(),
            endpoint: resolve_endpoint(&p.endpoint, resolvers).await?,
            allowed_ips: p.allowed_ips.clone(),
            persistent_keepalive: p.persistent_keepalive,
        });
    }
    Ok(peers)
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
