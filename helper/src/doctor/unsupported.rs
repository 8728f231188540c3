//! The doctor's probes on any other OS: not written. Every probe reports that it did
//! not run, so the layers say "not checked" instead of pretending.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Result};

use super::verdict::{InterfaceFacts, Outcome};

/// How the evidence names the kill switch's rules.
pub const OURS: &str = "the kill switch's filters";

pub async fn interface(name: &str) -> InterfaceFacts {
    InterfaceFacts::absent(name)
}

pub async fn set_mtu(_name: &str, _mtu: u16) -> Result<()> {
    bail!("setting the MTU is not supported on this OS yet")
}

pub fn tunnel_counters(_interface: &str) -> Option<(u64, u64)> {
    None
}

pub async fn ruleset() -> Result<String> {
    bail!("reading the firewall is not supported on this OS yet")
}

pub fn split_ruleset(_text: &str) -> (Option<Vec<String>>, Vec<String>) {
    (None, Vec::new())
}

pub fn udp_probe(_target: SocketAddr, _mark: Option<u32>) -> Outcome {
    Outcome::NotRun
}

pub fn echo(_target: IpAddr, _size: u16, _mark: Option<u32>, _wait: Duration) -> Outcome {
    Outcome::NotRun
}

pub fn dns_query(_server: IpAddr) -> Outcome {
    Outcome::NotRun
}
