//! The Windows data plane: a Wintun adapter (through tun-rs), one UDP socket, boringtun.
//!
//! - The adapter has a fixed GUID ([`ADAPTER_GUID`]), so Windows sees the same network every
//!   time instead of "Network 2, 3, ..." and its DNS registry keys have a known name.
//! - `wintun.dll` is loaded by absolute path from the helper's own directory (Program Files,
//!   where the MSI puts it), never from the search path or a user-writable directory.
//! - It is always the one adapter `underpass0` (`tunnel::interface_exists`). One a crashed
//!   helper left behind has that name: tun-rs opens it again, or removes and re-creates it when
//!   its device is in a problem state; and Wintun (0.14) removes adapters whose owning process
//!   has exited whenever an adapter is created. So orphans go at the next connect.
//! - The endpoint stays out of the tunnel by host routes (`routes/windows.rs`), not a mark.
//!
//! Packets are handled one at a time: Wintun has no segmentation offload to batch on.
//! Never run: Wine has no Wintun driver. It type-checks.

use anyhow::{Context, Result};
use ipnet::IpNet;
use tun_rs::{AsyncDevice, DeviceBuilder};

use super::plane::{self, DataPlane};
use super::DataPlaneConfig;

/// The tunnel adapter's GUID, the same on every machine and every connect.
pub const ADAPTER_GUID: u128 = 0x8c9a_2f3e_5b71_4d0a_9e64_2c1f_7a0b_3d55;

impl DataPlane {
    pub(super) async fn open(cfg: DataPlaneConfig) -> Result<DataPlane> {
        let device = build_device(&cfg)?;
        plane::start(cfg, device, "Wintun").await
    }
}

fn build_device(cfg: &DataPlaneConfig) -> Result<AsyncDevice> {
    let exe = std::env::current_exe().context("finding the helper's own directory")?;
    let dll = exe
        .parent()
        .context("the helper's executable has no directory")?
        .join("wintun.dll");
    let mut builder = DeviceBuilder::new()
        .name(&cfg.interface)
        .description("Underpass")
        .device_guid(ADAPTER_GUID)
        .wintun_file(dll.to_string_lossy().into_owned())
        .mtu(cfg.mtu);
    for net in &cfg.addresses {
        builder = match net {
            IpNet::V4(n) => builder.ipv4(n.addr(), n.prefix_len(), None),
            IpNet::V6(n) => builder.ipv6(n.addr(), n.prefix_len()),
        };
    }
    builder.build_async().with_context(|| {
        format!(
            "creating Wintun adapter {} (with {})",
            cfg.interface,
            dll.display()
        )
    })
}
