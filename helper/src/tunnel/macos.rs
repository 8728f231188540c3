//! The macOS data plane: a utun through tun-rs, configured point to point (`inet A --> B`,
//! netmask /32, as `ifconfig` shows it), one UDP socket, and boringtun sessions.
//!
//! Simpler than Linux's on purpose: macOS has no TUN offload and no UDP GSO/GRO, so it is one
//! packet per syscall. The encrypted UDP stays out of the tunnel by the endpoint host routes
//! (`routes/macos.rs`), and PF lets it out by its owner (`firewall/pf.rs`).
//! Not verified on a Mac: nothing here has run (see the README).

use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use ipnet::{IpNet, Ipv4Net};
use tun_rs::{AsyncDevice, DeviceBuilder};

use super::plane::{self, DataPlane};
use super::DataPlaneConfig;

/// Whether a network interface of this name exists (utun names are taken by other VPNs too).
pub fn interface_exists(name: &str) -> bool {
    nix::net::if_::if_nametoindex(name).is_ok()
}

/// The far end of a point-to-point utun: the other address of a /31 or wider prefix, or, for a
/// /32 (what VPN servers hand out), the address itself, as the WireGuard app configures it.
pub fn peer_address(local: Ipv4Net) -> Ipv4Addr {
    let a = local.addr();
    if local.prefix_len() >= 32 {
        return a;
    }
    let net = local.network();
    if a == net {
        Ipv4Addr::from(u32::from(net) + 1)
    } else {
        net
    }
}

impl DataPlane {
    pub(super) async fn open(cfg: DataPlaneConfig) -> Result<DataPlane> {
        let device = build_device(&cfg)?;
        plane::start(cfg, device, "utun").await
    }
}

fn build_device(cfg: &DataPlaneConfig) -> Result<AsyncDevice> {
    // tun-rs would add a route for each address's prefix; routes are routes/macos.rs's job.
    let mut builder = DeviceBuilder::new()
        .name(&cfg.interface)
        .mtu(cfg.mtu)
        .associate_route(false);
    let v4: Vec<Ipv4Net> = cfg
        .addresses
        .iter()
        .filter_map(|n| match n {
            IpNet::V4(n) => Some(*n),
            IpNet::V6(_) => None,
        })
        .collect();
    if let Some(first) = v4.first() {
        builder = builder.ipv4(first.addr(), 32u8, Some(peer_address(*first)));
    }
    for net in &cfg.addresses {
        if let IpNet::V6(n) = net {
            builder = builder.ipv6(n.addr(), n.prefix_len());
        }
    }
    let device = builder
        .build_async()
        .with_context(|| format!("creating utun {}", cfg.interface))?;
    for n in v4.iter().skip(1) {
        device
            .add_address_v4(n.addr(), 32u8)
            .with_context(|| format!("adding {n} to {}", cfg.interface))?;
    }
    Ok(device)
}
