//! The troubleshooter: walks the tunnel's seven layers (control plane, outer path, interface,
//! routes, firewall, DNS, MTU) and says for each what it saw, what that means and what to do.
//!
//! `collect` gathers facts (status, route lookups, the interface, the firewall's rules,
//! probes), `verdict` judges them without I/O, and each OS file sends the probes. The
//! path-MTU probe is part of it: echoes with DF set through the tunnel to the server's tunnel
//! address, in a binary search (`tunnel::mtu::Search`).

pub mod verdict;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as net;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
use macos as net;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as net;
#[cfg(any(test, target_os = "macos"))]
mod pf_text;
#[cfg(any(target_os = "linux", target_os = "macos", windows))]
mod probes;

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
mod unsupported;
#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
use unsupported as net;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use underpass_proto::{DoctorOptions, DoctorReport, Key, Status, TunnelConfig};

use crate::routes::{PlatformRoutes, RouteManager};
use crate::tunnel::mtu;
use verdict::{
    ControlFacts, DnsFacts, Facts, FirewallFacts, MtuFacts, Outcome, OuterFacts, ResolverFacts,
    RouteFacts, TunnelFacts,
};

/// The traceroute port: closed on any sane server, so UDP there draws "port unreachable".
pub const UDP_PROBE_PORT: u16 = 33434;
/// How long one path-MTU echo waits for its reply (each size is tried twice before it counts
/// as lost).
const PMTU_WAIT: Duration = Duration::from_millis(600);
const ECHO_WAIT: Duration = Duration::from_millis(1500);
/// The firewall probe's echo: small enough for any path.
const SMALL_ECHO: u16 = 84;

/// What the daemon knows: its published status, the configuration the user wants, and where
/// the system's resolver configuration lives.
pub struct Context {
    pub status: Status,
    pub config: Option<TunnelConfig>,
    pub resolv_conf: PathBuf,
}

/// Sets the live tunnel's MTU.
pub async fn set_mtu(interface: &str, mtu: u16) -> Result<()> {
    net::set_mtu(interface, mtu).await
}

/// Checks the options before anything runs.
pub fn validate(options: &DoctorOptions) -> Result<(), String> {
    for a in options.target.iter().chain(options.test_address.iter()) {
        if a.is_unspecified() || a.is_multicast() {
            return Err(format!("{a} cannot be probed"));
        }
    }
    Ok(())
}

/// Walks the seven layers and returns the report.
pub async fn run(ctx: Context, options: DoctorOptions) -> Result<DoctorReport> {
    let facts = collect(&ctx, &options).await;
    Ok(DoctorReport {
        layers: verdict::diagnose(&facts),
        mtu: verdict::mtu_finding(&facts.mtu),
    })
}

fn public_key(private: &Key) -> Key {
    let secret = boringtun::x25519::StaticSecret::from(private.0);
    Key(boringtun::x25519::PublicKey::from(&secret).to_bytes())
}

/// The server's tunnel address when nobody says: the interface's peer address, else the
/// tunnel's first DNS server, else the `.1` beside our own IPv4 address (a common convention).
fn guess_target(status: &Status, config: Option<&TunnelConfig>) -> Option<IpAddr> {
    if let Some(dns) = config.and_then(|c| c.dns.first()) {
        return Some(*dns);
    }
    status.addresses.iter().find_map(|a| match a.addr() {
        IpAddr::V4(v4) => {
            let mut o = v4.octets();
            (o[3] != 1).then(|| {
                o[3] = 1;
                IpAddr::from(o)
            })
        }
        IpAddr::V6(_) => None,
    })
}

fn resolvers(path: &std::path::Path) -> Vec<IpAddr> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            if let Some(a) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
    }
    out
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

async fn collect(ctx: &Context, options: &DoctorOptions) -> Facts {
    let status = &ctx.status;
    let config = ctx.config.as_ref();
    let routes = PlatformRoutes::open().await.ok();
    let lookup = |dst: IpAddr, mark: Option<u32>| {
        let routes = routes.as_ref();
        async move {
            match routes {
                Some(r) => r.lookup(dst, mark).await,
                None => None,
            }
        }
    };
    let live = status.state.wants_tunnel() && status.interface.is_some();
    let mark = status.routing.as_ref().map(|r| r.fwmark).filter(|_| live);

    let control = ControlFacts {
        state: status.state,
        error: status.error.clone(),
        profile: status.profile.clone().or(config.map(|c| c.profile.clone())),
        own_public_key: config.map(|c| public_key(&c.private_key)),
        server_public_key: config.and_then(|c| c.peers.first().map(|p| p.public_key.clone())),
        last_handshake_secs: status.last_handshake_secs,
        rx_bytes: status.rx_bytes,
        tx_bytes: status.tx_bytes,
    };

    let endpoint: Option<SocketAddr> = status.endpoint.or_else(|| {
        config
            .and_then(|c| c.peers.first())
            .and_then(|p| p.endpoint.parse().ok())
    });
    let fresh = verdict_fresh(&control);
    let mut outer = OuterFacts {
        endpoint,
        route: None,
        udp: Outcome::NotRun,
        ping: Outcome::NotRun,
    };
    if let Some(ep) = endpoint {
        outer.route = lookup(ep.ip(), mark).await;
        if !fresh {
            let target = SocketAddr::new(ep.ip(), UDP_PROBE_PORT);
            // The kill switch admits the helper's marked UDP only to the session's endpoint
            // port and to probes in flight: this one is put in the probe sets for a moment.
            // Without a kill switch there is nothing to open, and the probe just goes.
            admit_probe(target).await;
            outer.udp = blocking(move || net::udp_probe(target, mark))
                .await
                .unwrap_or(Outcome::NotRun);
            outer.ping = blocking(move || net::echo(ep.ip(), SMALL_ECHO, mark, ECHO_WAIT))
                .await
                .unwrap_or(Outcome::NotRun);
        }
    }

    let tunnel = match (&status.interface, &status.routing) {
        (Some(interface), Some(routing)) if live => Some(TunnelFacts {
            interface: interface.clone(),
            table: routing.table,
            fwmark: routing.fwmark,
            addresses: status.addresses.clone(),
            include: routing.include.clone(),
            exclude: routing.exclude.clone(),
            no_routes: config.is_some_and(|c| c.routing.no_routes),
            dns: status
                .dns
                .as_ref()
                .map(|d| d.servers.clone())
                .unwrap_or_default(),
            target: options.target.or_else(|| guess_target(status, config)),
        }),
        _ => None,
    };

    let interface = match &tunnel {
        Some(t) => {
            let mut i = net::interface(&t.interface).await;
            // Name the server's end when the kernel does not (a Linux TUN is often `A/32`).
            if options.target.is_some() {
                for a in &mut i.addresses {
                    a.peer = a
                        .peer
                        .or(options.target.filter(|t| t.is_ipv4() == a.local.is_ipv4()));
                }
            }
            Some(i)
        }
        None => None,
    };

    let test_address = options.test_address.or_else(|| {
        tunnel
            .as_ref()
            .and_then(|t| verdict::default_test_address(&t.include))
    });
    let routes_facts = RouteFacts {
        test_address,
        test: match test_address {
            Some(a) if tunnel.is_some() => lookup(a, None).await,
            _ => None,
        },
    };

    let (ours, foreign_blocks) = match net::ruleset().await {
        Ok(text) => net::split_ruleset(&text),
        Err(e) => (None, vec![format!("the ruleset could not be read: {e:#}")]),
    };
    let mut firewall = FirewallFacts {
        kill_switch: status.kill_switch,
        state: status.firewall,
        ours_name: net::OURS,
        ours,
        foreign_blocks,
        probe: Outcome::NotRun,
        tunnel_tx: None,
        tunnel_rx: None,
    };
    let target = tunnel.as_ref().and_then(|t| t.target);
    if let (Some(t), Some(target)) = (&tunnel, target) {
        let before = net::tunnel_counters(&t.interface);
        firewall.probe = blocking(move || net::echo(target, SMALL_ECHO, None, ECHO_WAIT))
            .await
            .unwrap_or(Outcome::NotRun);
        if let (Some(b), Some(a)) = (before, net::tunnel_counters(&t.interface)) {
            firewall.tunnel_tx = Some(a.0.saturating_sub(b.0));
            firewall.tunnel_rx = Some(a.1.saturating_sub(b.1));
        }
    }

    let mut dns = DnsFacts {
        method: status.dns.as_ref().map(|d| d.method.clone()),
        resolvers: Vec::new(),
    };
    if tunnel.is_some() {
        for server in resolvers(&ctx.resolv_conf) {
            dns.resolvers.push(ResolverFacts {
                server,
                route: lookup(server, None).await,
                query: blocking(move || net::dns_query(server))
                    .await
                    .unwrap_or(Outcome::NotRun),
            });
        }
    }

    let mut mtu_facts = MtuFacts {
        current: status.mtu.filter(|_| live),
        explicit: config.and_then(|c| c.mtu),
        path: match endpoint {
            Some(ep) => lookup(ep.ip(), mark).await,
            None => None,
        },
        inner_v6: status.addresses.iter().any(|a| a.addr().is_ipv6()),
        steps: Vec::new(),
        largest: None,
    };
    if let (Some(current), Some(target), true) = (
        mtu_facts.current,
        target,
        matches!(firewall.probe, Outcome::Answered(_)),
    ) {
        let (steps, largest) = blocking(move || probe_path_mtu(target, current))
            .await
            .unwrap_or_default();
        mtu_facts.steps = steps;
        mtu_facts.largest = largest;
    }

    Facts {
        control,
        outer,
        tunnel,
        interface,
        routes: routes_facts,
        firewall,
        dns,
        mtu: mtu_facts,
    }
}

fn verdict_fresh(c: &ControlFacts) -> bool {
    c.last_handshake_secs
        .is_some_and(|s| s < verdict::HANDSHAKE_STALE_SECS)
}

/// Binary search between the floor and the tunnel's MTU with DF-set echoes through the tunnel.
/// Each size gets two tries, so one lost packet does not shrink the answer.
fn probe_path_mtu(target: IpAddr, current: u16) -> (Vec<(u16, bool)>, Option<u16>) {
    let mut search = mtu::Search::new(mtu::floor(target.is_ipv6()), current);
    let mut steps = Vec::new();
    // Try the current size first: on a healthy path that is the only probe.
    let mut next = Some(current);
    while let Some(size) = next {
        let passed = (0..2).any(|_| {
            matches!(
                net::echo(target, size, None, PMTU_WAIT),
                Outcome::Answered(_)
            )
        });
        steps.push((size, passed));
        search.record(size, passed);
        next = search.next();
    }
    (steps, Some(search.largest()))
}

/// Opens the kill switch for one probe in flight (a few seconds), where it blocks.
async fn admit_probe(target: SocketAddr) {
    use crate::firewall::{Firewall, PlatformFirewall};
    let admitted = async {
        PlatformFirewall::open()
            .await?
            .admit_probes(&[target], Duration::from_secs(3))
            .await
    };
    if let Err(e) = admitted.await {
        tracing::debug!(error = %format!("{e:#}"), %target, "probe not admitted by the kill switch");
    }
}
