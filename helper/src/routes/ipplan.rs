//! The Windows route plan as data: which IP Helper forward entries a [`RoutePlan`] becomes.
//!
//! Windows has no firewall mark and no policy routing, so the helper's encrypted UDP cannot be
//! kept out of the tunnel the Linux way. Instead every endpoint gets a host route through the
//! physical default gateway, more specific than anything the tunnel claims, and the default
//! route is claimed as `0.0.0.0/1` + `128.0.0.0/1` (`::/1` + `8000::/1`), which win over the
//! physical `/0` without deleting it. Excluded prefixes go the same way as the endpoints. When
//! the physical default route changes (`NotifyRouteChange2`), the plan is recomputed with the
//! new gateway and the bypass routes are moved.
//!
//! Portable and free of system calls, so it is unit-tested on Linux; `windows.rs` installs it.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::RoutePlan;

/// A physical next hop: the interface (by LUID) and the gateway on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gateway {
    pub luid: u64,
    pub next_hop: IpAddr,
}

/// One row of the system's forwarding table, as far as choosing a gateway needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardRow {
    pub destination: IpNet,
    pub luid: u64,
    pub next_hop: IpAddr,
    /// Route metric plus interface metric: what Windows itself compares.
    pub metric: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextHop {
    Tunnel,
    Physical(Gateway),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub destination: IpNet,
    pub next_hop: NextHop,
}

/// The interface metric given to the tunnel adapter, so that Windows prefers it.
pub const TUNNEL_INTERFACE_METRIC: u32 = 5;

/// The best default route of one family that is not the tunnel's: the physical gateway.
pub fn physical_gateway(
    rows: &[ForwardRow],
    v4: bool,
    tunnel_luid: Option<u64>,
) -> Option<Gateway> {
    rows.iter()
        .filter(|r| r.destination.prefix_len() == 0)
        .filter(|r| matches!(r.destination, IpNet::V4(_)) == v4)
        .filter(|r| Some(r.luid) != tunnel_luid)
        .filter(|r| !r.next_hop.is_unspecified())
        .min_by_key(|r| (r.metric, r.luid))
        .map(|r| Gateway {
            luid: r.luid,
            next_hop: r.next_hop,
        })
}

/// The routes to install: bypass routes (endpoints, then excluded prefixes) through the physical
/// gateway of their family, then the tunnel's routes. An endpoint or exclusion whose family has
/// no physical gateway gets no bypass route: it is unreachable outside the tunnel anyway. Nor
/// does a loopback endpoint (a peer on this machine): Windows' own `127.0.0.0/8` and `::1`
/// routes already outrank the tunnel's halves, and a host route through the gateway would
/// send it off the machine.
pub fn windows_routes(plan: &RoutePlan, v4: Option<Gateway>, v6: Option<Gateway>) -> Vec<Route> {
    let gateway = |net: &IpNet| match net {
        IpNet::V4(_) => v4,
        IpNet::V6(_) => v6,
    };
    let mut routes = Vec::new();
    let mut endpoints: Vec<IpNet> = plan
        .endpoints
        .iter()
        .filter(|a| !a.is_loopback())
        .map(|a| IpNet::from(*a))
        .collect();
    endpoints.sort();
    endpoints.dedup();
    for net in endpoints.iter().chain(plan.exclude.iter()) {
        if let Some(gw) = gateway(net) {
            routes.push(Route {
                destination: *net,
                next_hop: NextHop::Physical(gw),
            });
        }
    }
    for net in &plan.include {
        for half in split_default(*net) {
            routes.push(Route {
                destination: half,
                next_hop: NextHop::Tunnel,
            });
        }
    }
    routes
}

/// `/0` becomes its two `/1` halves; anything else stays as it is.
fn split_default(net: IpNet) -> Vec<IpNet> {
    match net {
        IpNet::V4(n) if n.prefix_len() == 0 => vec![
            IpNet::V4(Ipv4Net::new([0, 0, 0, 0].into(), 1).expect("/1")),
            IpNet::V4(Ipv4Net::new([128, 0, 0, 0].into(), 1).expect("/1")),
        ],
        IpNet::V6(n) if n.prefix_len() == 0 => vec![
            IpNet::V6(Ipv6Net::new(0u128.into(), 1).expect("/1")),
            IpNet::V6(Ipv6Net::new((1u128 << 127).into(), 1).expect("/1")),
        ],
        other => vec![other],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use underpass_proto::TunnelConfig;

    fn plan(allowed: &[&str], exclude: &[&str], endpoints: &[&str]) -> RoutePlan {
        let mut c = TunnelConfig::example();
        c.peers[0].allowed_ips = allowed.iter().map(|s| s.parse().unwrap()).collect();
        c.routing.exclude = exclude.iter().map(|s| s.parse().unwrap()).collect();
        RoutePlan::new(&c, "underpass0", 0, 0)
            .with_endpoints(endpoints.iter().map(|s| s.parse().unwrap()))
    }

    const GW4: Gateway = Gateway {
        luid: 7,
        next_hop: IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 1)),
    };

    fn render(routes: &[Route]) -> Vec<String> {
        routes
            .iter()
            .map(|r| match r.next_hop {
                NextHop::Tunnel => format!("{} tunnel", r.destination),
                NextHop::Physical(g) => {
                    format!("{} via {} luid {}", r.destination, g.next_hop, g.luid)
                }
            })
            .collect()
    }

    #[test]
    fn full_tunnel_claims_both_halves_and_keeps_the_endpoint_on_the_physical_gateway() {
        let routes = windows_routes(
            &plan(&["0.0.0.0/0"], &[], &["192.0.2.10", "192.0.2.10"]),
            Some(GW4),
            None,
        );
        assert_eq!(
            render(&routes),
            [
                "192.0.2.10/32 via 198.51.100.1 luid 7",
                "0.0.0.0/1 tunnel",
                "128.0.0.0/1 tunnel",
            ]
        );
    }

    #[test]
    fn a_loopback_endpoint_gets_no_route_through_the_gateway() {
        let routes = windows_routes(
            &plan(
                &["0.0.0.0/0", "::/0"],
                &[],
                &["127.0.0.1", "::1", "192.0.2.10"],
            ),
            Some(GW4),
            Some(Gateway {
                luid: 7,
                next_hop: "fe80::1".parse().unwrap(),
            }),
        );
        assert_eq!(
            render(&routes),
            [
                "192.0.2.10/32 via 198.51.100.1 luid 7",
                "0.0.0.0/1 tunnel",
                "128.0.0.0/1 tunnel",
                "::/1 tunnel",
                "8000::/1 tunnel",
            ]
        );
    }

    #[test]
    fn v6_default_is_split_too_and_a_v6_endpoint_without_a_v6_gateway_gets_no_bypass() {
        let routes = windows_routes(
            &plan(
                &["0.0.0.0/0", "::/0"],
                &["203.0.113.0/24"],
                &["2001:db8::10", "192.0.2.10"],
            ),
            Some(GW4),
            None,
        );
        assert_eq!(
            render(&routes),
            [
                "192.0.2.10/32 via 198.51.100.1 luid 7",
                "203.0.113.0/24 via 198.51.100.1 luid 7",
                "0.0.0.0/1 tunnel",
                "128.0.0.0/1 tunnel",
                "::/1 tunnel",
                "8000::/1 tunnel",
            ]
        );
    }

    #[test]
    fn split_tunnel_routes_only_its_prefixes() {
        let routes = windows_routes(
            &plan(&["198.18.0.0/15"], &[], &["192.0.2.10"]),
            Some(GW4),
            None,
        );
        assert_eq!(
            render(&routes),
            [
                "192.0.2.10/32 via 198.51.100.1 luid 7",
                "198.18.0.0/15 tunnel"
            ]
        );
    }

    #[test]
    fn the_physical_gateway_is_the_cheapest_default_route_that_is_not_the_tunnel() {
        let row = |dst: &str, luid, hop: &str, metric| ForwardRow {
            destination: dst.parse().unwrap(),
            luid,
            next_hop: hop.parse().unwrap(),
            metric,
        };
        let rows = [
            row("0.0.0.0/0", 1, "0.0.0.0", 1), // on-link (no gateway): skipped
            row("0.0.0.0/0", 99, "10.64.1.1", 2), // the tunnel: skipped
            row("0.0.0.0/0", 7, "198.51.100.1", 35),
            row("0.0.0.0/0", 8, "198.51.100.254", 50),
            row("198.51.100.0/24", 7, "0.0.0.0", 1), // not a default route
            row("::/0", 7, "fe80::1", 40),
        ];
        assert_eq!(physical_gateway(&rows, true, Some(99)), Some(GW4));
        assert_eq!(
            physical_gateway(&rows, false, Some(99)).map(|g| g.next_hop),
            Some("fe80::1".parse().unwrap())
        );
        assert_eq!(physical_gateway(&rows[..2], true, Some(99)), None);
    }
}
