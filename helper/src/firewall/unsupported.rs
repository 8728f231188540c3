//! The kill switch on macOS (PF anchor) and Windows (WFP): not written yet. Every call fails
//! with a clear message; nothing pretends to protect anyone.

use anyhow::{bail, Result};

use super::{Firewall, FirewallPolicy};

pub struct UnsupportedFirewall;

impl Firewall for UnsupportedFirewall {
    async fn open() -> Result<Self> {
        Ok(UnsupportedFirewall)
    }

    async fn apply(&mut self, _policy: &FirewallPolicy) -> Result<()> {
        bail!("the kill switch is not supported on this OS yet (Linux only for now)")
    }

    async fn remove(&mut self) -> Result<()> {
        Ok(())
    }

    async fn clamp_mss(&mut self, _interface: Option<&str>) -> Result<()> {
        Ok(())
    }

    async fn admit_probes(
        &mut self,
        _targets: &[std::net::SocketAddr],
        _ttl: std::time::Duration,
    ) -> Result<()> {
        bail!("the kill switch is not supported on this OS yet (Linux only for now)")
    }
}
