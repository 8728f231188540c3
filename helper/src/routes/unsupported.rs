//! Routing on macOS and Windows: not written yet (they will get `macos.rs` and `windows.rs`).
//! Every call fails with a clear message; nothing pretends to work.

use std::net::IpAddr;

use anyhow::{bail, Result};

use super::{RouteLookup, RouteManager, RoutePlan};

pub struct UnsupportedRoutes;

impl RouteManager for UnsupportedRoutes {
    async fn open() -> Result<Self> {
        bail!("routing is not supported on this OS yet (Linux only for now)")
    }

    async fn remove_stale(&mut self) -> Result<()> {
        Ok(())
    }

    async fn free_table_and_mark(&self) -> Result<(u32, u32)> {
        bail!("routing is not supported on this OS yet")
    }

    async fn apply(&mut self, _plan: &RoutePlan) -> Result<()> {
        bail!("routing is not supported on this OS yet")
    }

    async fn restore(&mut self) -> Result<()> {
        Ok(())
    }

    async fn default_gateways(&self) -> Vec<IpAddr> {
        Vec::new()
    }

    async fn lookup(&self, _dst: IpAddr, _fwmark: Option<u32>) -> Option<RouteLookup> {
        None
    }

    fn watch_changes() -> Result<tokio::sync::mpsc::UnboundedReceiver<()>> {
        bail!("watching the network is not supported on this OS yet")
    }
}
