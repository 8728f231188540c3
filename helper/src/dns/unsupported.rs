//! DNS on macOS (SystemConfiguration) and Windows (per-interface DNS): not written yet.

use anyhow::{bail, Result};

use super::{DnsConfig, DnsManager, DnsPaths};

pub struct UnsupportedDns;

impl DnsManager for UnsupportedDns {
    fn new(_paths: DnsPaths) -> Self {
        UnsupportedDns
    }

    fn method(&self) -> &'static str {
        "unsupported"
    }

    async fn set(&mut self, _config: &DnsConfig) -> Result<()> {
        bail!("setting DNS is not supported on this OS yet (Linux only for now)")
    }

    async fn reassert(&mut self) -> Result<bool> {
        Ok(false)
    }

    async fn restore(&mut self) -> Result<()> {
        Ok(())
    }

    fn system_resolvers(&self) -> Vec<std::net::IpAddr> {
        Vec::new()
    }
}
