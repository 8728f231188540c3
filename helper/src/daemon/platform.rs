//! What the daemon changes and watches on the machine, as types: the operating system's own
//! backends ([`Os`]), or the recording fakes that its unit tests drive with simulated time
//! (`daemon/tests.rs`). The daemon is written once against [`Platform`].

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;

use crate::dns::{DnsManager, PlatformDns};
use crate::firewall::{Firewall, PlatformFirewall};
use crate::health;
use crate::power::{self, PowerEvents};
use crate::routes::{PlatformRoutes, RouteManager};
use crate::tunnel::{resolve_endpoint, DataPlane, Plane, Resolvers};

use super::Settings;

pub trait Platform: 'static {
    type Firewall: Firewall;
    type Dns: DnsManager + Send + 'static;
    type Routes: RouteManager;
    type Plane: Plane;
    /// How long the machine has slept since boot (CLOCK_BOOTTIME − CLOCK_MONOTONIC): a jump
    /// is a resume.
    fn suspended_so_far() -> Duration;
    /// The system's sleep and resume events, where it has a source of them.
    fn power(settings: &Settings) -> Option<PowerEvents>;
    /// Looks an endpoint (`host:port`, or a literal address) up through `via`, in a task of
    /// its own beside the actor.
    fn resolve(
        endpoint: String,
        via: Resolvers,
    ) -> impl Future<Output = Result<SocketAddr>> + Send + 'static;
}

/// The machine the helper runs on.
pub struct Os;

impl Platform for Os {
    type Firewall = PlatformFirewall;
    type Dns = PlatformDns;
    type Routes = PlatformRoutes;
    type Plane = DataPlane;

    fn suspended_so_far() -> Duration {
        health::suspended_so_far()
    }

    fn power(settings: &Settings) -> Option<PowerEvents> {
        power::watch(settings)
    }

    async fn resolve(endpoint: String, via: Resolvers) -> Result<SocketAddr> {
        resolve_endpoint(&endpoint, &via).await
    }
}
