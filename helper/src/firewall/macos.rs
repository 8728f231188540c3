//! The macOS kill switch: PF anchor `underpass`, through `/dev/pf` with the `pfctl` crate.
//! Which rules is decided in `pf.rs` (tested on Linux); this file only hands them to PF.
//!
//! - The anchor is replaced in one PF transaction, then every PF state is flushed, so that a
//!   connection opened before the change cannot outlive it.
//! - PF is enabled with a *reference* (DIOCSTARTREF): another program's `pfctl -d` cannot
//!   switch it off under us, and releasing the reference (DIOCSTOPREF) leaves PF as the other
//!   holders want it. The token and whether PF ran before are kept in a file under /var/run
//!   (gone at reboot, like the token), so a helper restarted after a crash releases the old one.
//! - PF's own ruleset, and other programs' anchors, are never touched.
//! - A measurement while PF blocks (`admit_probes`) reloads the anchor with a pass rule per
//!   server for the helper's uid, and again without it once due: PF rules have no timeouts.
//! - Not verified on a Mac: nothing here has run (see the README).

use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ipnet::IpNet;
use pfctl::{AnchorKind, FilterRuleAction, FilterRuleBuilder, Interface, PfCtl};
use serde::{Deserialize, Serialize};

use super::pf::{self, Action, Direction, Icmp6, ProbeHoles, Proto, ANCHOR};
use super::{Firewall, FirewallPolicy};

const TOKEN_FILE: &str = "/var/run/underpassd.pf.json";

/// What the helper holds of PF between runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Hold {
    token: u64,
    /// PF ran before we took our reference: it must run after we let go of it.
    was_enabled: bool,
}

/// `struct pfioc_remove_token` of XNU's pfvar.h.
#[repr(C)]
struct RemoveToken {
    token_value: u64,
    refcount: u64,
}

nix::ioctl_read!(pf_start_ref, b'D', 8, u64);
nix::ioctl_readwrite!(pf_stop_ref, b'D', 9, RemoveToken);

pub struct PfFirewall {
    pf: PfCtl,
    hold: Option<Hold>,
}

/// What the anchor holds, shared by every handle in the helper (a measurement opens its own):
/// the policy last applied, and the holes of measurements in flight.
struct Loaded {
    policy: Option<FirewallPolicy>,
    probes: ProbeHoles,
}

static LOADED: Mutex<Loaded> = Mutex::new(Loaded {
    policy: None,
    probes: ProbeHoles::new(),
});

fn loaded() -> MutexGuard<'static, Loaded> {
    LOADED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Replaces the anchor's rules with what `loaded` calls for (nothing without a policy).
fn load(pf: &mut PfCtl, loaded: &Loaded) -> Result<()> {
    let Some(policy) = &loaded.policy else {
        return Ok(());
    };
    let uid = nix::unistd::geteuid().as_raw();
    let rules = pf::anchor_rules(policy, uid, &loaded.probes.targets())
        .iter()
        .map(to_pfctl)
        .collect::<Result<Vec<_>>>()?;
    pf.try_add_anchor(ANCHOR, AnchorKind::Filter)
        .with_context(|| format!("adding PF anchor {ANCHOR} to the main ruleset"))?;
    let mut change = pfctl::AnchorChange::new();
    change.set_filter_rules(rules);
    pf.set_rules(ANCHOR, change)
        .with_context(|| format!("loading the rules of PF anchor {ANCHOR}"))
}

/// Reloads the anchor without the measurement holes that are due.
fn close_due_probes() -> Result<()> {
    let mut state = loaded();
    if state.probes.expire(Instant::now()) && state.policy.is_some() {
        let mut pf = PfCtl::new().context("opening /dev/pf")?;
        load(&mut pf, &state)?;
    }
    Ok(())
}

impl PfFirewall {
    fn take_reference(&mut self) -> Result<()> {
        if self.hold.is_some() {
            return Ok(());
        }
        let was_enabled = self.pf.is_enabled().context("reading PF's status")?;
        let dev = pf_device()?;
        let mut token = 0u64;
        // SAFETY: a valid /dev/pf descriptor and a live u64 for the kernel to fill in.
        unsafe { pf_start_ref(dev.as_raw_fd(), &mut token) }
            .context("enabling PF with a reference (DIOCSTARTREF)")?;
        let hold = Hold { token, was_enabled };
        let json = serde_json::to_vec(&hold).expect("plain struct");
        write_atomically(Path::new(TOKEN_FILE), &json)?;
        self.hold = Some(hold);
        Ok(())
    }

    fn release_reference(&mut self) -> Result<()> {
        let Some(hold) = self.hold.take() else {
            return Ok(());
        };
        let dev = pf_device()?;
        let mut remove = RemoveToken {
            token_value: hold.token,
            refcount: 0,
        };
        // SAFETY: a valid /dev/pf descriptor and a live pfioc_remove_token.
        if let Err(e) = unsafe { pf_stop_ref(dev.as_raw_fd(), &mut remove) } {
            // ENOENT: the token died with a reboot or a PF reset; nothing to release.
            if e != nix::errno::Errno::ENOENT {
                return Err(e).context("releasing our PF reference (DIOCSTOPREF)");
            }
        }
        if hold.was_enabled {
            self.pf
                .try_enable()
                .context("leaving PF enabled, as it was before")?;
        }
        let _ = std::fs::remove_file(TOKEN_FILE);
        Ok(())
    }

    fn flush_states(&mut self) -> Result<()> {
        self.pf
            .clear_interface_states(Interface::Any)
            .map(|_| ())
            .context("flushing PF states after the policy changed")
    }
}

impl Firewall for PfFirewall {
    async fn open() -> Result<Self> {
        let pf = PfCtl::new().context("opening /dev/pf")?;
        // A token left by a helper that died: ours now, released on remove.
        let hold = std::fs::read(TOKEN_FILE)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        Ok(PfFirewall { pf, hold })
    }

    async fn apply(&mut self, policy: &FirewallPolicy) -> Result<()> {
        {
            let mut state = loaded();
            state.policy = Some(policy.clone());
            state.probes.expire(Instant::now());
            load(&mut self.pf, &state)?;
        }
        self.take_reference()?;
        self.flush_states()
    }

    async fn remove(&mut self) -> Result<()> {
        {
            let mut state = loaded();
            state.policy = None;
            state.probes.clear();
        }
        self.pf
            .flush_rules(ANCHOR, pfctl::RulesetKind::Filter)
            .or_else(|e| match e.kind() {
                pfctl::ErrorKind::AnchorDoesNotExist => Ok(()),
                _ => Err(e),
            })
            .with_context(|| format!("flushing PF anchor {ANCHOR}"))?;
        self.pf
            .try_remove_anchor(ANCHOR, AnchorKind::Filter)
            .with_context(|| format!("removing PF anchor {ANCHOR}"))?;
        self.release_reference()?;
        self.flush_states()
    }

    async fn clamp_mss(&mut self, _interface: Option<&str>) -> Result<()> {
        // The host's own TCP uses the utun MTU; macOS does not forward by default, and PF's
        // `scrub max-mss` would need a scrub anchor of its own. Not done on macOS.
        Ok(())
    }

    async fn admit_probes(&mut self, targets: &[SocketAddr], ttl: Duration) -> Result<()> {
        {
            let mut state = loaded();
            anyhow::ensure!(
                state.policy.is_some(),
                "no kill switch is installed, so nothing needs opening"
            );
            state.probes.admit(targets, Instant::now() + ttl);
            // No state flush: only pass rules are added, and no connection predates them.
            load(&mut self.pf, &state)?;
        }
        tokio::spawn(async move {
            tokio::time::sleep(ttl).await;
            if let Err(e) = close_due_probes() {
                tracing::warn!(error = %format!("{e:#}"), "closing the measurement's PF holes");
            }
        });
        Ok(())
    }
}

fn pf_device() -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/pf")
        .context("opening /dev/pf")
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming onto {}", path.display()))
}

fn net(n: &IpNet) -> pfctl::Ip {
    pfctl::Ip::from(
        pfctl::ipnetwork::IpNetwork::new(n.addr(), n.prefix_len()).expect("a valid prefix"),
    )
}

fn endpoint(n: Option<IpNet>, port: Option<u16>) -> pfctl::Endpoint {
    let ip = n.as_ref().map_or(pfctl::Ip::Any, net);
    let port = port.map_or(pfctl::Port::Any, pfctl::Port::from);
    pfctl::Endpoint::new(ip, port)
}

/// One rule of `pf.rs` as the `pfctl` crate builds it.
fn to_pfctl(rule: &pf::Rule) -> Result<pfctl::FilterRule> {
    let mut b = FilterRuleBuilder::default();
    b.action(match rule.action {
        Some(Action::Pass) | None => FilterRuleAction::Pass,
        Some(Action::Drop) => FilterRuleAction::Drop(pfctl::DropAction::Drop),
        Some(Action::Reject) => FilterRuleAction::Drop(pfctl::DropAction::Return),
    })
    .direction(match rule.direction {
        Some(Direction::In) => pfctl::Direction::In,
        Some(Direction::Out) | None => pfctl::Direction::Out,
    })
    .quick(true)
    .from(endpoint(rule.from, rule.from_port))
    .to(endpoint(rule.to, rule.to_port));
    if rule.keeps_state() {
        b.keep_state(pfctl::StatePolicy::Keep);
    }
    if let Some(i) = &rule.interface {
        b.interface(Interface::from(i));
    }
    if let Some(p) = rule.proto {
        b.proto(match p {
            Proto::Tcp => pfctl::Proto::Tcp,
            Proto::Udp => pfctl::Proto::Udp,
            Proto::Icmp6 => pfctl::Proto::IcmpV6,
        });
        if p == Proto::Icmp6 {
            b.af(pfctl::AddrFamily::Ipv6);
        }
    }
    if let Some(t) = rule.icmp6 {
        b.icmp_type(Some(pfctl::IcmpType::Icmp6(match t {
            Icmp6::RouterSol => pfctl::Icmp6Type::RouterSol,
            Icmp6::RouterAdv => pfctl::Icmp6Type::RouterAdv,
            Icmp6::NeighbrSol => pfctl::Icmp6Type::NeighbrSol,
            Icmp6::NeighbrAdv => pfctl::Icmp6Type::NeighbrAdv,
        })));
    }
    if let Some(u) = rule.user {
        b.user(pfctl::Uid::from(u));
    }
    b.build()
        .with_context(|| format!("building PF rule `{rule}`"))
}
