//! Connecting: to a server the user picked, or to the fastest one (anywhere, or in one
//! country) as the helper measures it, by the round trip of a real WireGuard handshake.
//! The Connect screen, the tray, connect-on-launch and `underpass://connect` links all come
//! through [`connect`].

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use underpass_profile::catalog::{fastest, probe_candidates};
use underpass_profile::CatalogServer;
use underpass_proto::{ProbeResult, Request, Response, MAX_PROBE_CANDIDATES};

use crate::helper;
use crate::AppState;

/// What to connect to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum Target {
    /// The server that answers a handshake fastest: among all servers, or in one country
    /// (ISO code).
    Fastest { country: Option<String> },
    /// One server: a profile, and for a signed bundle one of its servers.
    Server {
        profile: String,
        server: Option<String>,
    },
}

impl Default for Target {
    fn default() -> Self {
        Target::Fastest { country: None }
    }
}

/// Where a connect request went.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Connecting {
    pub profile: String,
    pub server: Option<String>,
    /// The measured handshake round trip, when the server was chosen by measuring.
    pub rtt_ms: Option<f64>,
    /// How many servers were measured (0: none, the server was given or the only one).
    pub measured: usize,
}

/// Sends the connect request for `target` with the saved settings and, once the helper has
/// taken it, remembers `target` as the one Connect uses next time.
pub async fn connect(state: &AppState, target: &Target) -> Result<Connecting, String> {
    let (kill_switch, lan_access) = {
        let view = state.view.lock().unwrap();
        let status = view
            .status
            .as_ref()
            .ok_or("the helper is not reachable; see the message on screen")?;
        (status.kill_switch, status.lan_access)
    };
    let settings = state.settings.lock().unwrap().clone();
    let config_for = |profile: &str, server: Option<&str>| {
        state
            .profiles
            .tunnel_config(profile, server, &settings, kill_switch, lan_access)
            .map_err(|e| format!("{e:#}"))
    };
    let chosen = match target {
        Target::Server { profile, server } => Connecting {
            profile: profile.clone(),
            server: server.clone(),
            rtt_ms: None,
            measured: 0,
        },
        Target::Fastest { country } => {
            fastest_server(state, country.as_deref(), |s| {
                config_for(s.profile.as_str(), s.server.as_deref()).map(|_| ())
            })
            .await?
        }
    };
    let config = config_for(&chosen.profile, chosen.server.as_deref())?;
    state.user_disconnect.store(false, Ordering::SeqCst);
    tracing::info!(
        "connecting to {}{} (chosen as {target:?})",
        chosen.profile,
        chosen
            .server
            .as_deref()
            .map(|s| format!(" server {s}"))
            .unwrap_or_default()
    );
    helper::request(
        &state.options.socket,
        Request::Connect {
            config: Box::new(config),
        },
        helper::REQUEST_TIMEOUT,
    )
    .await
    .map_err(|e| e.to_string())?;
    remember(state, target);
    Ok(chosen)
}

/// Saves `target` as the last one used (for the tray and connect-on-launch).
fn remember(state: &AppState, target: &Target) {
    let mut settings = state.settings.lock().unwrap();
    if settings.last_target.as_ref() == Some(target) {
        return;
    }
    settings.last_target = Some(target.clone());
    if let Err(e) = state.config_dir().and_then(|dir| settings.save(&dir)) {
        tracing::warn!("could not save the last server: {e}");
    }
}

/// Measures every server in `country` (or every server) that `usable` accepts (its profile
/// has not expired and its policy allows the current settings) and picks the fastest.
async fn fastest_server(
    state: &AppState,
    country: Option<&str>,
    usable: impl Fn(&CatalogServer) -> Result<(), String>,
) -> Result<Connecting, String> {
    let catalog = state.profiles.catalog().map_err(|e| format!("{e:#}"))?;
    let (servers, place): (Vec<CatalogServer>, String) = match country {
        Some(cc) => {
            let c = catalog.country(cc);
            let name = c
                .countries
                .first()
                .map(|c| c.name.clone())
                .unwrap_or_else(|| cc.to_ascii_uppercase());
            (
                c.countries.into_iter().flat_map(|c| c.servers).collect(),
                format!("in {name}"),
            )
        }
        None => (
            catalog
                .countries
                .into_iter()
                .flat_map(|c| c.servers)
                .collect(),
            "among your profiles".to_string(),
        ),
    };
    let pick = |s: &CatalogServer, rtt_ms, measured| Connecting {
        profile: s.profile.to_string(),
        server: s.server.clone(),
        rtt_ms,
        measured,
    };
    let servers = usable_servers(servers, &place, usable)?;
    if let [only] = servers.as_slice() {
        return Ok(pick(only, None, 0));
    }
    let store = state.profiles.store().map_err(|e| format!("{e:#}"))?;
    let candidates = probe_candidates(&store, &servers).map_err(|e| e.to_string())?;
    let results = probe_all(state, candidates).await?;
    let (i, ms) = fastest(&results, servers.len()).ok_or_else(|| {
        format!(
            "none of the {} servers {place} answered a handshake in time (a kill switch in \
             lockdown with no tunnel up also stops the measurement)",
            servers.len()
        )
    })?;
    tracing::info!(
        "fastest server {place}: {} ({ms:.1} ms of {} measured)",
        servers[i].profile,
        servers.len()
    );
    Ok(pick(&servers[i], Some(ms), servers.len()))
}

/// The servers worth measuring: those `usable` accepts. None at all is an error that says
/// why: no server `place`, or every one refused (with each reason).
fn usable_servers(
    servers: Vec<CatalogServer>,
    place: &str,
    usable: impl Fn(&CatalogServer) -> Result<(), String>,
) -> Result<Vec<CatalogServer>, String> {
    if servers.is_empty() {
        return Err(format!(
            "there is no server {place}: import a profile first"
        ));
    }
    let mut refused = Vec::new();
    let kept: Vec<CatalogServer> = servers
        .into_iter()
        .filter(|s| match usable(s) {
            Ok(()) => true,
            Err(why) => {
                tracing::info!("not measuring {}: {why}", s.profile);
                refused.push(why);
                false
            }
        })
        .collect();
    if kept.is_empty() {
        return Err(format!(
            "no server {place} can be used now: {}",
            refused.join("; ")
        ));
    }
    Ok(kept)
}

/// Asks the helper to measure `candidates`, in requests of at most
/// [`MAX_PROBE_CANDIDATES`] that run at once (each is bounded by the helper's timeout).
async fn probe_all(
    state: &AppState,
    candidates: Vec<underpass_proto::ProbeCandidate>,
) -> Result<Vec<ProbeResult>, String> {
    let mut requests = JoinSet::new();
    for chunk in candidates.chunks(MAX_PROBE_CANDIDATES) {
        let socket = state.options.socket.clone();
        let request = Request::ProbeServers {
            candidates: chunk.to_vec(),
        };
        requests
            .spawn(async move { helper::request(&socket, request, helper::REQUEST_TIMEOUT).await });
    }
    let mut results = Vec::with_capacity(candidates.len());
    while let Some(done) = requests.join_next().await {
        match done
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
        {
            Response::Probed { results: r } => results.extend(r),
            other => return Err(format!("the helper answered {other:?} to a probe")),
        }
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use underpass_profile::ProfileName;

    fn server(profile: &str) -> CatalogServer {
        CatalogServer {
            profile: ProfileName::new(profile).unwrap(),
            server: None,
            country: Some("SE".into()),
            city: None,
            endpoint: "192.0.2.1:51820".into(),
            public_key: underpass_proto::Key([7; 32]),
            organization: None,
        }
    }

    #[test]
    fn servers_a_policy_forbids_are_not_measured_and_none_left_says_why() {
        let forbid_corp = |s: &CatalogServer| {
            if s.profile.as_str() == "corp" {
                Err("the policy of ACME IT says split tunneling is not allowed".to_string())
            } else {
                Ok(())
            }
        };
        let kept = usable_servers(
            vec![server("corp"), server("se-1")],
            "in Sweden",
            forbid_corp,
        )
        .unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].profile.as_str(), "se-1");
        let e = usable_servers(vec![server("corp")], "in Sweden", forbid_corp).unwrap_err();
        assert_eq!(
            e,
            "no server in Sweden can be used now: the policy of ACME IT says split tunneling is not allowed"
        );
        let e = usable_servers(vec![], "in Sweden", forbid_corp).unwrap_err();
        assert_eq!(e, "there is no server in Sweden: import a profile first");
    }
}
