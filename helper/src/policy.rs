//! Which policy a session is held to, decided by the helper alone.
//!
//! A connect request is data from an unprivileged client, so nothing in it that matters for
//! safety is taken on its word. [`admit`] verifies the signed bundle the request carries
//! (signature, pinned key, expiry, rollback), checks that the tunnel is the bundle's, and
//! derives the policy from what it verified and from the machine's managed policy in the
//! system directory (`/etc/underpass/`, see `underpass_trust::system`). The `policy` a client
//! puts in the request is thrown away.
//!
//! The rollback counter (the highest serial accepted per organization, for bundles signed by a
//! pinned key) lives in the helper's state dir, written with `underpass_durable::write`.
//!
//! Every refusal is an [`ErrorBody`] in words the user can act on, and is logged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use underpass_proto::{
    ErrorBody, ErrorCode, ManagedStatus, SessionPolicy, SessionRequest, TunnelConfig,
};
use underpass_trust::system::{strictest, SystemDir, POLICY_FILE};
use underpass_trust::Bundle;

const SERIALS_FILE: &str = "serials.json";
const SERIALS_VERSION: u32 = 1;

/// The system directory and the rollback counter, as the daemon holds them.
pub struct System {
    dir: PathBuf,
    serials: PathBuf,
    /// The system directory as last read (re-read on every connect and settings change, so
    /// IT's changes apply without a restart).
    loaded: Result<SystemDir, String>,
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Serials {
    version: u32,
    /// Organization to the highest serial accepted from it.
    accepted: BTreeMap<String, u64>,
}

fn refuse(reason: String) -> ErrorBody {
    tracing::warn!(%reason, "request refused by policy");
    ErrorBody::new(ErrorCode::InvalidConfig, reason)
}

impl System {
    pub fn new(dir: &Path, state_dir: &Path) -> System {
        let mut s = System {
            dir: dir.to_path_buf(),
            serials: state_dir.join(SERIALS_FILE),
            loaded: Err(String::new()),
        };
        s.reload();
        if let Ok(d) = &s.loaded {
            tracing::info!(
                dir = %d.dir.display(),
                managed_by = d.managed.as_ref().map(|m| m.organization.as_str()),
                active_session_admission = s.active_session_admission(),
                "system directory"
            );
        }
        s
    }

    /// Reads the system directory again. A broken one is logged and refuses every connect.
    pub fn reload(&mut self) {
        self.loaded = SystemDir::load(&self.dir).map_err(|e| e.to_string());
        if let Err(e) = &self.loaded {
            tracing::error!(error = %e, "the system directory cannot be used; refusing connects");
        }
    }

    fn dir(&self) -> Result<&SystemDir, ErrorBody> {
        self.loaded.as_ref().map_err(|e| {
            refuse(format!(
                "the machine's policy cannot be read ({e}); nothing connects until your IT \
                 department fixes it"
            ))
        })
    }

    /// Whether the user of an active local session may use the helper without being in its
    /// group (the admission rule of `ipc::peer`). A broken system directory says no.
    pub fn active_session_admission(&self) -> bool {
        self.loaded
            .as_ref()
            .is_ok_and(SystemDir::active_session_admission)
    }

    /// The policy settings are held to: the wanted tunnel's (already merged with the managed
    /// one by [`admit`]), else the machine's managed policy.
    pub fn in_force(&self, wanted: Option<&TunnelConfig>) -> Option<SessionPolicy> {
        wanted
            .and_then(|c| c.policy.clone())
            .or_else(|| self.loaded.as_ref().ok()?.session_policy())
    }

    /// Refuses a settings change (kill switch, LAN access) that the policy in force forbids.
    pub fn check_setting(
        &mut self,
        wanted: Option<&TunnelConfig>,
        request: &SessionRequest,
    ) -> Result<(), ErrorBody> {
        self.reload();
        let Some(p) = self.in_force(wanted) else {
            return Ok(());
        };
        let violations = p.policy.violations(request);
        if violations.is_empty() {
            return Ok(());
        }
        let whose = if wanted.and_then(|c| c.policy.as_ref()).is_some() {
            format!(
                "the policy of {} (serial {}) says {} while its profile is in use",
                p.organization,
                p.serial,
                violations.join("; ")
            )
        } else {
            format!(
                "this machine is managed by {}, whose policy says {}",
                p.organization,
                violations.join("; ")
            )
        };
        Err(refuse(whose))
    }

    /// What the status shows on a managed machine.
    pub fn managed_status(&self) -> Option<ManagedStatus> {
        let dir = self.loaded.as_ref().ok()?;
        let m = dir.managed.as_ref()?;
        let servers = match (&m.allowed_countries, &m.allowed_servers) {
            (None, None) => None,
            (c, s) => Some(
                [
                    c.as_ref().map(|c| format!("countries {}", c.join(", "))),
                    s.as_ref().map(|s| format!("servers {}", s.join(", "))),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; "),
            ),
        };
        Some(ManagedStatus::describe(
            &m.organization,
            &dir.dir.join(POLICY_FILE).display().to_string(),
            &m.policy(),
            m.require_signed_bundle,
            servers.map(|s| format!("only {s}")),
        ))
    }

    fn load_serials(&self) -> Result<Serials, ErrorBody> {
        let path = &self.serials;
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Serials {
                    version: SERIALS_VERSION,
                    ..Serials::default()
                })
            }
            Err(e) => return Err(refuse(format!("reading {}: {e}", path.display()))),
        };
        serde_json::from_slice::<Serials>(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|s| {
                (s.version == SERIALS_VERSION)
                    .then_some(s)
                    .ok_or_else(|| "an unknown version".to_string())
            })
            .map_err(|e| {
                refuse(format!(
                    "{} (the bundle rollback counter) is unusable: {e}",
                    path.display()
                ))
            })
    }

    fn save_serials(&self, serials: &Serials) -> Result<(), ErrorBody> {
        let json = serde_json::to_vec_pretty(serials).expect("serials serialize");
        underpass_durable::write(&self.serials, &json).map_err(|e| {
            ErrorBody::new(
                ErrorCode::Internal,
                format!("saving the bundle rollback counter: {e}"),
            )
        })
    }
}

/// Seconds since the epoch, for bundle expiry.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The answer to a connect whose intent could not be saved.
pub fn refused_unsaved(e: ErrorBody) -> ErrorBody {
    let reason = format!(
        "the connect was refused: the helper could not record it ({}), so it could neither \
         resume it nor hold the kill switch for it after a restart",
        e.message
    );
    tracing::error!(%reason);
    ErrorBody::new(ErrorCode::Internal, reason)
}

/// Admits a connect request, or says why not. On success `config.policy` is the policy the
/// helper derived, and a pinned bundle's serial is recorded. `now` is seconds since the epoch.
pub fn admit(config: &mut TunnelConfig, system: &mut System, now: u64) -> Result<(), ErrorBody> {
    config
        .validate()
        .map_err(|reason| refuse(format!("invalid connect request: {reason}")))?;
    system.reload();
    let dir = system.dir()?.clone();
    let managed = dir.managed.as_ref();
    let managed_by = |m: &underpass_trust::ManagedPolicy| {
        format!(
            "this machine is managed by {} ({})",
            m.organization,
            dir.dir.join(POLICY_FILE).display()
        )
    };
    // Whatever the client said the policy was, it is decided here.
    config.policy = None;
    let mut record = None;
    let mut derived: Option<SessionPolicy> = None;
    match config.signed.clone() {
        Some(signed) => {
            let bundle = Bundle::open("the connect request's bundle", signed.bundle.as_bytes())
                .map_err(|e| refuse(e.to_string()))?;
            let org = &bundle.payload.organization;
            let pinned = dir
                .pinned(&bundle.signer)
                .map_err(|e| refuse(format!("the machine's pinned keys cannot be read: {e}")))?;
            if let (Some(m), None) = (managed, &pinned) {
                return Err(refuse(format!(
                    "{}: the bundle of {org} is signed by {}, which is not pinned in {}",
                    managed_by(m),
                    bundle.signer,
                    dir.trusted_keys().display()
                )));
            }
            bundle
                .check_expiry("the connect request's bundle", now)
                .map_err(|e| refuse(e.to_string()))?;
            let serial = bundle.payload.serial;
            if pinned.is_some() {
                let last = system.load_serials()?.accepted.get(org).copied();
                if let Some(last) = last.filter(|last| serial < *last) {
                    return Err(refuse(format!(
                        "the bundle of {org} has serial {serial}, older than serial {last} \
                         already accepted on this machine (a rollback); import the current \
                         bundle"
                    )));
                }
                record = Some((org.clone(), serial));
            }
            let index = bundle.server_index(&signed.server).ok_or_else(|| {
                refuse(format!(
                    "the bundle of {org} has no server {:?}",
                    signed.server
                ))
            })?;
            if let Some(m) = managed {
                let server = &bundle.payload.servers[index];
                m.check_server(&server.id, &server.country)
                    .map_err(|e| refuse(format!("{}: {e}", managed_by(m))))?;
            }
            let expected = bundle
                .server_tunnel(index, config.private_key.clone())
                .map_err(|e| refuse(format!("the bundle of {org}: {e}")))?;
            let dns_locked =
                bundle.payload.policy.dns_locked || managed.is_some_and(|m| m.dns_locked);
            check_matches(config, &expected, &bundle, dns_locked)?;
            derived = expected.policy;
        }
        None => {
            if let Some(m) = managed.filter(|m| m.needs_bundle()) {
                return Err(refuse(format!(
                    "{}: every tunnel must come from a profile bundle signed by a key \
                     pinned in {}, and this request carries none; import your \
                     organization's bundle",
                    managed_by(m),
                    dir.trusted_keys().display()
                )));
            }
        }
    }
    // The machine's policy always wins over the bundle's.
    let effective = match (derived, dir.session_policy()) {
        (Some(b), Some(m)) => Some(SessionPolicy {
            organization: m.organization,
            serial: b.serial,
            policy: strictest(&b.policy, &m.policy),
        }),
        (b, m) => b.or(m),
    };
    if let Some(p) = &effective {
        let split = !config.routing.include.is_empty() || !config.routing.exclude.is_empty();
        let violations = p.policy.violations(&SessionRequest {
            kill_switch: underpass_proto::KillSwitchMode::Lockdown,
            split_tunnel: split,
            lan_access: false,
        });
        if !violations.is_empty() {
            return Err(refuse(format!(
                "the policy of {} says {}",
                p.organization,
                violations.join("; ")
            )));
        }
    }
    config.policy = effective;
    if let Some((org, serial)) = record {
        let mut serials = system.load_serials()?;
        if serials.accepted.get(&org) != Some(&serial) {
            serials.accepted.insert(org, serial);
            system.save_serials(&serials)?;
        }
    }
    Ok(())
}

/// The tunnel must be the bundle's: its addresses, that server as the one peer, its DNS when
/// the policy locks DNS, and no `Table = off`. Only the private key (made on the device, or
/// embedded) and the user's split-tunnel lists are the client's.
fn check_matches(
    config: &TunnelConfig,
    expected: &TunnelConfig,
    bundle: &Bundle,
    dns_locked: bool,
) -> Result<(), ErrorBody> {
    let org = &bundle.payload.organization;
    let differs = |what: &str| {
        refuse(format!(
            "the connect request's {what} differs from what the bundle of {org} (serial {}) \
             signed",
            bundle.payload.serial
        ))
    };
    if config.addresses != expected.addresses {
        return Err(differs("interface addresses"));
    }
    if config.mtu != expected.mtu {
        return Err(differs("MTU"));
    }
    if config.peers != expected.peers {
        return Err(differs("server (peer key, endpoint or allowed IPs)"));
    }
    if config.routing.no_routes {
        return Err(differs("routing (Table = off)"));
    }
    if dns_locked && (config.dns != expected.dns || config.dns_search != expected.dns_search) {
        let named = match expected.dns.as_slice() {
            [] => "the bundle names none".to_string(),
            servers => servers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        };
        return Err(refuse(format!(
            "the policy of {org} locks DNS to the tunnel's resolvers ({named}); custom DNS is \
             not allowed"
        )));
    }
    Ok(())
}

// The system dir's ownership checks are Unix permission bits.
#[cfg(all(test, unix))]
mod tests;
