//! The kill switch: a firewall that lets nothing leave except through the tunnel.
//!
//! What to allow is decided here, portably, as a [`FirewallPolicy`]; each OS file turns it into
//! its own firewall (Linux: one nftables table, `inet underpass`, replaced atomically; macOS: PF
//! anchor `underpass`, whose rules `pf.rs` decides). The rules outlive the helper on purpose:
//! if it dies, the host stays blocked until it comes back and reconciles.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use underpass_proto::{FirewallState, KillSwitchMode};

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::Nftables as PlatformFirewall;

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
pub use macos::PfFirewall as PlatformFirewall;
#[cfg(any(target_os = "macos", test))]
mod pf;

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
mod unsupported;
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
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
}

/// Everything a firewall backend needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallPolicy {
    /// `None`: block everything but loopback, DHCP and neighbour discovery (and the LAN).
    pub tunnel: Option<TunnelHole>,
    pub allow_lan: bool,
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
) -> Option<FirewallPolicy> {
    let block = match mode {
        KillSwitchMode::Off => false,
        KillSwitchMode::Auto => wants_connection,
        KillSwitchMode::Lockdown => true,
    };
    block.then(|| FirewallPolicy {
        tunnel: tunnel.cloned(),
        allow_lan,
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
                desired(KillSwitchMode::Off, wants, Some(&hole()), false),
                None
            );
        }
    }

    #[test]
    fn auto_blocks_only_while_a_connection_is_wanted() {
        assert_eq!(desired(KillSwitchMode::Auto, false, None, false), None);
        let p = desired(KillSwitchMode::Auto, true, None, false).unwrap();
        assert_eq!(
            state_of(Some(&p)),
            FirewallState::Blocking,
            "wanted but no tunnel: block"
        );
        let p = desired(KillSwitchMode::Auto, true, Some(&hole()), true).unwrap();
        assert_eq!(state_of(Some(&p)), FirewallState::TunnelOnly);
        assert!(p.allow_lan);
    }

    #[test]
    fn lockdown_blocks_even_when_disconnected() {
        let p = desired(KillSwitchMode::Lockdown, false, None, false).unwrap();
        assert_eq!(state_of(Some(&p)), FirewallState::Blocking);
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
