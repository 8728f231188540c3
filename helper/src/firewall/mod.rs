//! The kill switch: a firewall that lets nothing leave except through the tunnel.
//!
//! What to allow is decided here, portably, as a [`FirewallPolicy`]; each OS file turns it into
//! its own firewall (Linux: one nftables table, `inet underpass`, replaced atomically; macOS: PF
//! anchor `underpass`, whose rules `pf.rs` decides). The rules outlive the helper on purpose:
//! if it dies, the host stays blocked until it comes back and reconciles.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use underpass_proto::{FirewallState, KillSwitchMode};

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::Nftables as PlatformFirewall;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::{interface_luid, listing, purge_all, Wfp as PlatformFirewall};
// Compiled on every OS so its unit tests run on Linux; only Windows applies it.
#[cfg(any(windows, test))]
#[cfg_attr(not(windows), allow(dead_code))]
pub mod wfp;

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
pub use macos::PfFirewall as PlatformFirewall;
#[cfg(any(target_os = "macos", test))]
mod pf;

#[cfg(not(any(target_os = "linux", windows, target_os = "macos")))]
mod unsupported;
#[cfg(not(any(target_os = "linux", windows, target_os = "macos")))]
pub use unsupported::UnsupportedFirewall as PlatformFirewall;

/// What one OS's firewall backend must do.
#[allow(async_fn_in_trait)]
pub trait Firewall: Sized {
    async fn open() -> anyhow::Result<Self>;
    /// Replaces whatever Underpass had installed with `policy`, in one atomic step.
    async fn apply(&mut self, policy: &FirewallPolicy) -> anyhow::Result<()>;
    /// Removes Underpass's rules entirely, also ones an earlier helper left (traffic then
    /// flows as the system routes it).
    async fn remove(&mut self) -> anyhow::Result<()>;
    /// Clamps the TCP MSS of connections through the tunnel interface to its route MTU (for
    /// forwarded traffic; the host's own TCP already uses the tunnel MTU), or stops clamping.
    /// Independent of the kill switch: it lives as long as the tunnel.
    async fn clamp_mss(&mut self, interface: Option<&str>) -> anyhow::Result<()>;
    /// Opens the hole for a measurement in flight: UDP carrying [`HELPER_MARK`] may reach
    /// `targets` for `ttl`, then the kernel closes it by itself. Fails when no kill switch is
    /// installed (then nothing needs opening).
    async fn admit_probes(&mut self, targets: &[SocketAddr], ttl: Duration) -> anyhow::Result<()>;
}

/// The mark on the helper's own sockets that are not a session's encrypted UDP: server
/// probes while no tunnel is up, and (issue 8) its lookups of endpoint names. Outside the
/// range the routing backend picks session marks from ("up" = 0x7570 ..+256), so a packet with
/// it never counts as a session's own traffic. Only CAP_NET_ADMIN can set a mark.
pub const HELPER_MARK: u32 = 0x7570_0d05;

/// The DNS the helper itself may send outside the tunnel: from sockets with `mark`, to the
/// system's own resolvers (the ones it had before the tunnel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperDns {
    pub mark: u32,
    pub resolvers: Vec<IpAddr>,
}

/// The tunnel that a kill switch lets through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelHole {
    pub interface: String,
    /// The helper's own encrypted UDP: these destinations, from sockets with this mark.
    pub endpoints: Vec<SocketAddr>,
    pub fwmark: u32,
    /// The tunnel's resolvers: the only DNS servers anything may reach.
    pub dns: Vec<IpAddr>,
    /// The tunnel's own addresses, which must never be reached from another interface.
    pub addresses: Vec<IpNet>,
    /// What is routed into the tunnel. With a default route (full tunnel) nothing else may
    /// leave; in a split tunnel only these prefixes are held to the tunnel.
    pub include: Vec<IpNet>,
    /// Prefixes the user carved out of the tunnel: they may leave directly.
    pub exclude: Vec<IpNet>,
}

impl TunnelHole {
    /// A full tunnel claims all traffic, in both families: a v4-only default route still means
    /// "everything through the tunnel", so IPv6 is blocked, not leaked.
    pub fn is_full(&self) -> bool {
        self.include.iter().any(|n| n.prefix_len() == 0)
    }

    /// Whether traffic to `addr` (from an unmarked socket) enters the tunnel: included and not
    /// carved out. The most specific prefix wins, as in the routing table.
    pub fn routes_into_tunnel(&self, addr: IpAddr) -> bool {
        let best = |nets: &[IpNet]| {
            nets.iter()
                .filter(|n| n.contains(&addr))
                .map(IpNet::prefix_len)
                .max()
        };
        match (best(&self.include), best(&self.exclude)) {
            (Some(i), Some(e)) => i > e,
            (Some(_), None) => true,
            _ => false,
        }
    }
}

/// Everything a firewall backend needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallPolicy {
    /// `None`: block everything but loopback, DHCP and neighbour discovery (and the LAN).
    pub tunnel: Option<TunnelHole>,
    pub allow_lan: bool,
    /// DNS the helper's own marked sockets may send to the system's resolvers, in every state
    /// (blocked, connecting, connected). In a split tunnel those resolvers are also open to
    /// everyone when they lie outside the tunnel: that is how names outside the tunnel's
    /// domains resolve (systemd-resolved's per-link split DNS).
    pub helper_dns: Option<HelperDns>,
}

impl FirewallPolicy {
    /// The system resolvers a split tunnel resolves its outside names through: those not routed
    /// into the tunnel. Empty for a full tunnel and while blocked.
    #[cfg_attr(windows, allow(dead_code))] // WFP admits the helper by app id instead
    pub fn outside_resolvers(&self) -> Vec<IpAddr> {
        let (Some(t), Some(dns)) = (&self.tunnel, &self.helper_dns) else {
            return Vec::new();
        };
        if t.is_full() {
            return Vec::new();
        }
        dns.resolvers
            .iter()
            .filter(|r| !t.routes_into_tunnel(**r))
            .copied()
            .collect()
    }
}

/// The private, link-local and multicast ranges that "local network access" opens.
pub fn lan_prefixes() -> Vec<IpNet> {
    [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "224.0.0.0/4",
        "255.255.255.255/32",
        "fe80::/10",
        "fc00::/7",
        "ff00::/8",
    ]
    .iter()
    .map(|s| s.parse().expect("literal prefix"))
    .collect()
}

/// What the firewall must look like, given the mode, whether the user wants to be connected,
/// and the tunnel if one is being built or is up. This is the whole kill-switch rule.
pub fn desired(
    mode: KillSwitchMode,
    wants_connection: bool,
    tunnel: Option<&TunnelHole>,
    allow_lan: bool,
    helper_dns: Option<&HelperDns>,
) -> Option<FirewallPolicy> {
    let block = match mode {
        KillSwitchMode::Off => false,
        KillSwitchMode::Auto => wants_connection,
        KillSwitchMode::Lockdown => true,
    };
    block.then(|| FirewallPolicy {
        tunnel: tunnel.cloned(),
        allow_lan,
        helper_dns: helper_dns.cloned(),
    })
}

/// The public description of a policy (or its absence).
pub fn state_of(policy: Option<&FirewallPolicy>) -> FirewallState {
    match policy {
        None => FirewallState::Open,
        Some(FirewallPolicy {
            tunnel: Some(_), ..
        }) => FirewallState::TunnelOnly,
        Some(FirewallPolicy { tunnel: None, .. }) => FirewallState::Blocking,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hole() -> TunnelHole {
        TunnelHole {
            interface: "underpass0".into(),
            endpoints: vec!["192.0.2.10:51820".parse().unwrap()],
            fwmark: 0x7570,
            dns: vec!["10.64.1.1".parse().unwrap()],
            addresses: vec!["10.64.1.2/32".parse().unwrap()],
            include: vec!["0.0.0.0/0".parse().unwrap()],
            exclude: vec![],
        }
    }

    #[test]
    fn a_v4_default_route_is_a_full_tunnel_and_a_prefix_list_is_not() {
        assert!(hole().is_full());
        let split = TunnelHole {
            include: vec!["198.18.1.0/24".parse().unwrap()],
            ..hole()
        };
        assert!(!split.is_full());
    }

    #[test]
    fn off_never_blocks() {
        for wants in [false, true] {
            assert_eq!(
                desired(KillSwitchMode::Off, wants, Some(&hole()), false, None),
                None
            );
        }
    }

    #[test]
    fn auto_blocks_only_while_a_connection_is_wanted() {
        assert_eq!(
            desired(KillSwitchMode::Auto, false, None, false, None),
            None
        );
        let p = desired(KillSwitchMode::Auto, true, None, false, None).unwrap();
        assert_eq!(
            state_of(Some(&p)),
            FirewallState::Blocking,
            "wanted but no tunnel: block"
        );
        let p = desired(KillSwitchMode::Auto, true, Some(&hole()), true, None).unwrap();
        assert_eq!(state_of(Some(&p)), FirewallState::TunnelOnly);
        assert!(p.allow_lan);
    }

    #[test]
    fn lockdown_blocks_even_when_disconnected() {
        let p = desired(KillSwitchMode::Lockdown, false, None, false, None).unwrap();
        assert_eq!(state_of(Some(&p)), FirewallState::Blocking);
    }

    #[test]
    fn the_most_specific_prefix_decides_whether_an_address_enters_the_tunnel() {
        let split = TunnelHole {
            include: vec!["198.18.0.0/16".parse().unwrap()],
            exclude: vec!["198.18.1.0/24".parse().unwrap()],
            ..hole()
        };
        let into = |a: &str| split.routes_into_tunnel(a.parse().unwrap());
        assert!(into("198.18.2.1"));
        assert!(!into("198.18.1.1"), "carved out");
        assert!(!into("198.51.100.1"), "not included");
        assert!(hole().routes_into_tunnel("203.0.113.5".parse().unwrap()));
    }

    #[test]
    fn only_a_split_tunnel_opens_the_system_resolvers_outside_it_to_everyone() {
        let dns = HelperDns {
            mark: HELPER_MARK,
            resolvers: vec![
                "198.51.100.1".parse().unwrap(),
                "198.18.1.53".parse().unwrap(),
            ],
        };
        let split = TunnelHole {
            include: vec![
                "198.18.1.0/24".parse().unwrap(),
                "10.64.1.0/24".parse().unwrap(),
            ],
            ..hole()
        };
        let policy = |t: Option<TunnelHole>| {
            desired(
                KillSwitchMode::Lockdown,
                true,
                t.as_ref(),
                false,
                Some(&dns),
            )
            .unwrap()
        };
        assert_eq!(
            policy(Some(split)).outside_resolvers(),
            vec!["198.51.100.1".parse::<IpAddr>().unwrap()],
            "the resolver inside the tunnel's prefixes is reached through it"
        );
        assert!(policy(Some(hole())).outside_resolvers().is_empty());
        assert!(policy(None).outside_resolvers().is_empty());
    }

    #[test]
    fn lan_prefixes_cover_private_and_link_local_ranges_in_both_families() {
        let lan = lan_prefixes();
        let covered = |a: &str| {
            let a: IpAddr = a.parse().unwrap();
            lan.iter().any(|n| n.contains(&a))
        };
        assert!(covered("192.168.1.10") && covered("10.1.2.3") && covered("fe80::1"));
        assert!(!covered("198.51.100.1") && !covered("2001:db8::1"));
    }
}
