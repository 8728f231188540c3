//! Which destinations enter the tunnel, and how the helper's own traffic stays out of it.
//!
//! The plan is computed here, portably and without side effects; each OS file installs it.
//!
//! The scheme is the one wg-quick made standard on Linux, applied to split tunnels too:
//! every tunnel route lives in a table of its own, a rule sends everything that does *not*
//! carry the helper's firewall mark to that table, and the encrypted UDP socket carries the
//! mark. The endpoint can then be any address, even one inside an included prefix, and its
//! packets never loop back into the tunnel. Excluded prefixes are `throw` routes in that table,
//! which hand the lookup back to the main table. In a full tunnel a rule ahead of it consults the
//! main table with `suppress_prefixlength 0`, so the LAN's own routes keep working while the
//! default route is the tunnel's.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use underpass_proto::{RoutingSummary, TunnelConfig};

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::LinuxRoutes as PlatformRoutes;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::IpHelperRoutes as PlatformRoutes;
// Compiled on every OS so its unit tests run on Linux; only Windows applies it.
#[cfg(any(windows, test))]
#[cfg_attr(not(windows), allow(dead_code))]
pub mod ipplan;

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
pub use macos::MacRoutes as PlatformRoutes;
#[cfg(any(target_os = "macos", test))]
mod rtmsg;

#[cfg(not(any(target_os = "linux", windows, target_os = "macos")))]
mod unsupported;
#[cfg(not(any(target_os = "linux", windows, target_os = "macos")))]
pub use unsupported::UnsupportedRoutes as PlatformRoutes;

/// What one OS's routing backend must do.
#[allow(async_fn_in_trait)]
pub trait RouteManager: Sized {
    /// Connects to the OS routing facility.
    async fn open() -> anyhow::Result<Self>;
    /// Removes rules and routes that a helper which died without cleaning up left behind.
    async fn remove_stale(&mut self) -> anyhow::Result<()>;
    /// Picks a policy-routing table and firewall mark that nothing else on the host uses.
    async fn free_table_and_mark(&self) -> anyhow::Result<(u32, u32)>;
    /// Installs the plan. On failure, whatever was installed is removed again.
    async fn apply(&mut self, plan: &RoutePlan) -> anyhow::Result<()>;
    /// Removes everything `apply` installed, leaving the tables and rules as they were.
    async fn restore(&mut self) -> anyhow::Result<()>;
    /// The route the kernel picks for `dst` now (`ip route get`), for packets carrying
    /// `fwmark` when given (the helper's own encrypted UDP), if there is one.
    async fn lookup(&self, dst: IpAddr, fwmark: Option<u32>) -> Option<RouteLookup>;
    /// The next hops of the main table's default routes (v4 and v6), the physical ones, also
    /// while a tunnel is up: the nearest LAN hosts, which a kill switch must also hold.
    async fn default_gateways(&self) -> Vec<IpAddr>;
    /// A notification for every change of links, addresses and routes (IPv4 and IPv6), for the
    /// daemon to debounce and then look up each endpoint's route again (offline when none).
    fn watch_changes() -> anyhow::Result<tokio::sync::mpsc::UnboundedReceiver<()>>;
}

/// One answer of the kernel to "how would a packet to this address leave?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLookup {
    pub destination: IpAddr,
    pub interface: String,
    pub gateway: Option<IpAddr>,
    /// The source address the kernel would pick.
    pub source: Option<IpAddr>,
    /// The route's own MTU (`ip route ... mtu N`, or a learned path MTU), which may be smaller
    /// than the link's.
    pub route_mtu: Option<u16>,
    pub link_mtu: Option<u16>,
}

impl RouteLookup {
    /// Whether packets would leave another way than `other` says: a new interface, gateway or
    /// source address means the server must hear from us at once.
    pub fn same_path(&self, other: &RouteLookup) -> bool {
        (&self.interface, self.gateway, self.source)
            == (&other.interface, other.gateway, other.source)
    }

    /// The MTU toward the destination: the route's when it has one, else its link's.
    pub fn path_mtu(&self) -> Option<u16> {
        self.route_mtu.or(self.link_mtu)
    }

    /// `198.51.100.7 via 198.51.100.1 dev eth0 src 198.51.100.2 route mtu 1492 (link 1500)`.
    pub fn describe(&self) -> String {
        let mut s = self.destination.to_string();
        if let Some(g) = self.gateway {
            s.push_str(&format!(" via {g}"));
        }
        s.push_str(&format!(" dev {}", self.interface));
        if let Some(src) = self.source {
            s.push_str(&format!(" src {src}"));
        }
        match (self.route_mtu, self.link_mtu) {
            (Some(r), Some(l)) => s.push_str(&format!(" route mtu {r} (link {l})")),
            (Some(r), None) => s.push_str(&format!(" route mtu {r}")),
            (None, Some(l)) => s.push_str(&format!(" link mtu {l}")),
            (None, None) => {}
        }
        s
    }
}

/// The routing changes for one tunnel, in OS-independent terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePlan {
    pub interface: String,
    /// Prefixes routed into the tunnel, network-normalized, sorted and without duplicates.
    pub include: Vec<IpNet>,
    /// Prefixes that never enter the tunnel.
    pub exclude: Vec<IpNet>,
    pub full_tunnel_v4: bool,
    pub full_tunnel_v6: bool,
    pub fwmark: u32,
    pub table: u32,
    /// The peers' resolved endpoint addresses, for OSes without a firewall mark (Windows,
    /// macOS), which keep them out of the tunnel with host routes through the physical gateway.
    #[cfg_attr(target_os = "linux", allow(dead_code))]
    pub endpoints: Vec<std::net::IpAddr>,
}

impl RoutePlan {
    /// Includes are the request's split-tunnel list or, when it is empty, every peer's
    /// AllowedIPs. Host bits are cleared (`10.0.0.5/8` means `10.0.0.0/8`).
    pub fn new(config: &TunnelConfig, interface: &str, fwmark: u32, table: u32) -> RoutePlan {
        let normalize = |nets: &mut dyn Iterator<Item = &IpNet>| -> Vec<IpNet> {
            nets.map(IpNet::trunc)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        };
        let include = if config.routing.no_routes {
            Vec::new()
        } else if config.routing.include.is_empty() {
            normalize(&mut config.peers.iter().flat_map(|p| p.allowed_ips.iter()))
        } else {
            normalize(&mut config.routing.include.iter())
        };
        let exclude = normalize(&mut config.routing.exclude.iter());
        let full = |v4: bool| {
            include
                .iter()
                .any(|n| n.prefix_len() == 0 && matches!(n, IpNet::V4(_)) == v4)
        };
        RoutePlan {
            interface: interface.to_string(),
            full_tunnel_v4: full(true),
            full_tunnel_v6: full(false),
            include,
            exclude,
            fwmark,
            table,
            endpoints: Vec::new(),
        }
    }

    /// The plan with the peers' resolved endpoints, which must never be routed into the tunnel.
    pub fn with_endpoints(mut self, endpoints: impl IntoIterator<Item = std::net::IpAddr>) -> Self {
        self.endpoints = endpoints.into_iter().collect();
        self
    }

    // Linux installs per-family rules; Windows routes prefixes as they come.
    #[cfg_attr(windows, allow(dead_code))]
    pub fn has_v4(&self) -> bool {
        self.include.iter().any(|n| matches!(n, IpNet::V4(_)))
    }

    #[cfg_attr(windows, allow(dead_code))]
    pub fn has_v6(&self) -> bool {
        self.include.iter().any(|n| matches!(n, IpNet::V6(_)))
    }

    pub fn summary(&self) -> RoutingSummary {
        RoutingSummary {
            full_tunnel: self.full_tunnel_v4 || self.full_tunnel_v6,
            include: self.include.clone(),
            exclude: self.exclude.clone(),
            fwmark: self.fwmark,
            table: self.table,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(allowed: &[&str], include: &[&str], exclude: &[&str]) -> TunnelConfig {
        let nets = |v: &[&str]| v.iter().map(|s| s.parse().unwrap()).collect::<Vec<IpNet>>();
        let mut c = TunnelConfig::example();
        c.peers[0].allowed_ips = nets(allowed);
        c.routing.include = nets(include);
        c.routing.exclude = nets(exclude);
        c
    }

    #[test]
    fn default_routes_make_a_full_tunnel_in_both_families() {
        let plan = RoutePlan::new(&config(&["0.0.0.0/0", "::/0"], &[], &[]), "up0", 1, 2);
        assert!(plan.full_tunnel_v4 && plan.full_tunnel_v6);
        assert!(plan.has_v4() && plan.has_v6());
    }

    #[test]
    fn v4_only_allowed_ips_install_no_v6_routes() {
        let plan = RoutePlan::new(&config(&["0.0.0.0/0"], &[], &[]), "up0", 1, 2);
        assert!(plan.full_tunnel_v4 && !plan.full_tunnel_v6);
        assert!(!plan.has_v6());
    }

    #[test]
    fn an_include_list_makes_a_split_tunnel_even_when_peers_allow_everything() {
        let plan = RoutePlan::new(
            &config(
                &["0.0.0.0/0", "::/0"],
                &["198.18.1.0/24"],
                &["198.18.1.128/25"],
            ),
            "up0",
            1,
            2,
        );
        assert!(!plan.full_tunnel_v4 && !plan.full_tunnel_v6);
        assert_eq!(
            plan.include,
            vec!["198.18.1.0/24".parse::<IpNet>().unwrap()]
        );
        assert_eq!(
            plan.exclude,
            vec!["198.18.1.128/25".parse::<IpNet>().unwrap()]
        );
        assert!(!plan.summary().full_tunnel);
    }

    #[test]
    fn table_off_installs_no_route_and_no_rule() {
        let mut c = config(&["0.0.0.0/0", "::/0"], &[], &[]);
        c.routing.no_routes = true;
        let plan = RoutePlan::new(&c, "up0", 1, 2);
        assert!(plan.include.is_empty() && !plan.has_v4() && !plan.has_v6());
        assert!(!plan.full_tunnel_v4 && !plan.full_tunnel_v6);
    }

    #[test]
    fn prefixes_are_normalized_and_deduplicated() {
        let plan = RoutePlan::new(
            &config(&["10.1.2.3/8", "10.0.0.0/8", "fd00::1/64"], &[], &[]),
            "up0",
            1,
            2,
        );
        let want: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "fd00::/64".parse().unwrap()];
        assert_eq!(plan.include, want);
    }
}
