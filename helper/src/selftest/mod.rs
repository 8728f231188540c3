//! The built-in self-tests: evidence, not reassurance.
//!
//! Both tests capture what actually leaves the host on every interface but loopback and the
//! tunnel while they provoke traffic, and count what they see there:
//! - the **DNS-leak test** resolves fresh random names through the system's own resolver path
//!   (`getaddrinfo`, as every application does); any DNS packet outside the tunnel is a leak;
//! - the **kill-switch test** sends UDP, TCP and ICMP probes bound to each physical interface
//!   and routed normally, then stops the data plane for a few seconds (a simulated tunnel drop)
//!   and probes again; anything but encrypted UDP to the endpoint escaped.
//!
//! Targets and names are options, so the test suite aims them at its own sandbox hosts, and it
//! breaks the configuration on purpose to prove that each test can fail.

#[cfg(target_os = "linux")]
mod bpf;
mod capture;
mod evidence;
#[cfg(any(test, target_os = "macos", windows))]
mod frames;
pub mod gate;
mod packets;
mod probes;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;
use underpass_proto::{
    Event, ResolverRoute, SelfTestKind, SelfTestOptions, SelfTestReport, Verdict,
};

use crate::routes::{PlatformRoutes, RouteManager};
use capture::{physical_interfaces, Capture};

const DEFAULT_DOMAIN: &str = "underpass-leaktest.example";
const DEFAULT_NAMES: u8 = 5;
const DEFAULT_DROP_SECS: u8 = 3;

/// What the tests need to know about the live tunnel.
#[derive(Clone)]
pub struct TunnelView {
    pub interface: String,
    pub endpoints: Vec<SocketAddr>,
    /// Set while the data plane must drop everything (the simulated tunnel drop).
    pub paused: Arc<AtomicBool>,
}

pub struct Context {
    pub tunnel: Option<TunnelView>,
    /// With LAN access off, the gateway is probed too: the LAN must be held as well.
    pub lan_access: bool,
    pub events: broadcast::Sender<Event>,
    /// Whether the kill-switch test may simulate a tunnel drop this time ([`gate`] rations it).
    pub allow_drop: bool,
}

/// Checks the options before anything runs.
pub fn validate(options: &SelfTestOptions) -> Result<(), String> {
    if let Some(d) = &options.domain {
        let ok = !d.is_empty()
            && d.len() <= 200
            && d.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !ok {
            return Err(format!("{d:?} is not a valid domain"));
        }
    }
    if options.names.is_some_and(|n| !(1..=20).contains(&n)) {
        return Err("names must be 1 to 20".into());
    }
    if options.drop_secs.is_some_and(|n| !(1..=10).contains(&n)) {
        return Err("drop_secs must be 1 to 10".into());
    }
    if options.probe_targets.len() > 8 {
        return Err("at most 8 probe targets".into());
    }
    Ok(())
}

/// Runs one test to the end and returns its report.
pub async fn run(
    test: SelfTestKind,
    options: SelfTestOptions,
    ctx: Context,
) -> anyhow::Result<SelfTestReport> {
    let started = Instant::now();
    let skip: Vec<&str> = ctx.tunnel.iter().map(|t| t.interface.as_str()).collect();
    let interfaces = physical_interfaces(&skip);
    let mut report = SelfTestReport {
        test,
        verdict: Verdict::Pass,
        duration_ms: 0,
        captured_on: interfaces.clone(),
        sent: Vec::new(),
        leaks: Vec::new(),
        resolvers: Vec::new(),
        notes: Vec::new(),
    };
    let progress = |step: &str| {
        let _ = ctx.events.send(Event::SelfTestProgress {
            test,
            step: step.to_string(),
        });
    };
    progress(&format!("capturing on {}", interfaces.join(", ")));
    let endpoints: Vec<SocketAddr> = ctx
        .tunnel
        .iter()
        .flat_map(|t| t.endpoints.clone())
        .collect();
    let capture = Capture::start(&interfaces, &endpoints)?;
    // Whatever happens next, the data plane must not stay paused.
    // What this test itself sent: its names (DNS) or its probe targets (kill switch).
    let mut own: Vec<String> = Vec::new();
    let result = match test {
        SelfTestKind::Dns => dns(&options, &ctx, &mut report, &mut own, &progress).await,
        SelfTestKind::KillSwitch => {
            kill_switch(&options, &ctx, &mut report, &mut own, &progress).await
        }
    };
    if let Some(t) = &ctx.tunnel {
        t.paused.store(false, Ordering::SeqCst);
    }
    // Late packets (a TCP retransmission, a reply to a probe) still count.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = capture.stop()?;
    result?;
    let caught: Vec<_> = seen
        .iter()
        .filter_map(|s| match test {
            SelfTestKind::Dns => packets::dns_leak(&s.interface, &s.packet),
            SelfTestKind::KillSwitch => packets::escaped(&s.interface, &s.packet, &endpoints),
        })
        .collect();
    let is_own = |l: &underpass_proto::LeakedPacket| match test {
        SelfTestKind::Dns => l
            .detail
            .as_deref()
            .is_some_and(|n| own.iter().any(|o| o == n.trim_end_matches('.'))),
        SelfTestKind::KillSwitch => {
            let host = l
                .destination
                .parse::<SocketAddr>()
                .map(|a| a.ip())
                .or_else(|_| l.destination.parse::<IpAddr>());
            host.is_ok_and(|h| own.iter().any(|o| *o == h.to_string()))
        }
    };
    let (leaks, notes) = evidence::shape(caught, is_own);
    report.leaks = leaks;
    report.notes.extend(notes);
    report.verdict = if !report.leaks.is_empty() {
        Verdict::Fail
    } else if ctx.tunnel.is_none() && test == SelfTestKind::Dns {
        Verdict::Inconclusive
    } else {
        Verdict::Pass
    };
    report.duration_ms = started.elapsed().as_millis() as u64;
    progress(&format!(
        "done: {:?}, {} leaked packets",
        report.verdict,
        report.leaks.len()
    ));
    Ok(report)
}

fn random_label() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..12)
        .map(|_| {
            let n = rng.random_range(0..36u8);
            (if n < 10 { b'0' + n } else { b'a' + n - 10 }) as char
        })
        .collect()
}

async fn dns(
    options: &SelfTestOptions,
    ctx: &Context,
    report: &mut SelfTestReport,
    own: &mut Vec<String>,
    progress: &impl Fn(&str),
) -> anyhow::Result<()> {
    if ctx.tunnel.is_none() {
        report.notes.push(
            "not connected: this shows where DNS goes now, but the test is meant for a tunnel"
                .into(),
        );
    }
    report.resolvers = resolver_routes(ctx).await;
    let domain = options.domain.as_deref().unwrap_or(DEFAULT_DOMAIN);
    for _ in 0..options.names.unwrap_or(DEFAULT_NAMES) {
        let name = format!("{}.{domain}", random_label());
        own.push(name.clone());
        progress(&format!("resolving {name}"));
        // The answer does not matter (the name need not exist); where the query went does.
        let answer = tokio::time::timeout(
            Duration::from_secs(3),
            tokio::net::lookup_host((name.as_str(), 0)),
        )
        .await;
        let outcome = match answer {
            Ok(Ok(mut addrs)) => match addrs.next() {
                Some(a) => format!("answered {}", a.ip()),
                None => "no address".into(),
            },
            Ok(Err(e)) => format!("no answer ({e})"),
            Err(_) => "no answer within 3 s".into(),
        };
        report.sent.push(format!(
            "resolved {name} through the system resolver: {outcome}"
        ));
    }
    Ok(())
}

/// The resolvers the system is configured with, and where the kernel routes each.
async fn resolver_routes(ctx: &Context) -> Vec<ResolverRoute> {
    let servers: Vec<IpAddr> = match hickory_resolver::system_conf::read_system_conf() {
        Ok((config, _)) => config.name_servers().iter().map(|n| n.ip).collect(),
        Err(_) => Vec::new(),
    };
    let routes = PlatformRoutes::open().await.ok();
    let mut out = Vec::new();
    for server in servers {
        let interface = match &routes {
            Some(r) => r.lookup(server, None).await.map(|l| l.interface),
            None => None,
        };
        let through_tunnel = match (&interface, &ctx.tunnel) {
            (Some(i), Some(t)) => *i == t.interface,
            _ => false,
        };
        if out.iter().all(|r: &ResolverRoute| r.server != server) {
            out.push(ResolverRoute {
                server,
                interface,
                through_tunnel,
            });
        }
    }
    out
}

async fn kill_switch(
    options: &SelfTestOptions,
    ctx: &Context,
    report: &mut SelfTestReport,
    own: &mut Vec<String>,
    progress: &impl Fn(&str),
) -> anyhow::Result<()> {
    let mut targets: Vec<IpAddr> = if options.probe_targets.is_empty() {
        vec!["192.0.2.1".parse()?, "2001:db8::1".parse()?]
    } else {
        options.probe_targets.clone()
    };
    if !ctx.lan_access {
        let gateways = match PlatformRoutes::open().await {
            Ok(routes) => routes.default_gateways().await,
            Err(_) => Vec::new(),
        };
        for gateway in gateways {
            if !targets.contains(&gateway) {
                report.notes.push(format!(
                    "LAN access is off: probing the gateway {gateway} too"
                ));
                targets.push(gateway);
            }
        }
    }
    own.extend(targets.iter().map(IpAddr::to_string));
    let interfaces = report.captured_on.clone();
    let fire_all = |report: &mut SelfTestReport| {
        for target in &targets {
            for interface in &interfaces {
                report.sent.extend(probes::fire(*target, Some(interface)));
            }
            report.sent.extend(probes::fire(*target, None));
        }
    };
    progress("probing around the tunnel");
    tokio::task::block_in_place(|| fire_all(report));
    match &ctx.tunnel {
        Some(_) if !ctx.allow_drop => report.notes.push(format!(
            "the tunnel drop was not simulated: one ran less than {} s ago, and it stops \
             everyone's traffic",
            gate::DROP_EVERY.as_secs()
        )),
        Some(t) => {
            let secs = options.drop_secs.unwrap_or(DEFAULT_DROP_SECS);
            progress(&format!("simulating a tunnel drop for {secs} s"));
            t.paused.store(true, Ordering::SeqCst);
            report.sent.push(format!(
                "data plane stopped for {secs} s (simulated tunnel drop)"
            ));
            let until = Instant::now() + Duration::from_secs(secs.into());
            while Instant::now() < until {
                tokio::task::block_in_place(|| fire_all(report));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            t.paused.store(false, Ordering::SeqCst);
            progress("tunnel restored");
        }
        None => report.notes.push(
            "not connected: only the probes ran; the tunnel-drop simulation needs a tunnel".into(),
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_bounded() {
        assert!(validate(&SelfTestOptions::default()).is_ok());
        let bad_domain = SelfTestOptions {
            domain: Some("a..b".into()),
            ..Default::default()
        };
        assert!(validate(&bad_domain).is_err());
        let too_long = SelfTestOptions {
            drop_secs: Some(60),
            ..Default::default()
        };
        assert!(validate(&too_long).unwrap_err().contains("drop_secs"));
    }

    #[test]
    fn random_labels_are_fresh_dns_labels() {
        let a = random_label();
        assert_eq!(a.len(), 12);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        assert_ne!(a, random_label());
    }
}
