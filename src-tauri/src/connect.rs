//! Connecting: to a server the user picked, or to the fastest one (anywhere, or in one
//! country) as the helper measures it, by the round trip of a real WireGuard handshake.
//! The Connect screen, the tray, connect-on-launch and `underpass://connect` links all come
//! through [`connect`].

use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use underpass_profile::catalog::probe_candidates;
use underpass_profile::choice;
use underpass_profile::CatalogServer;
use underpass_proto::{ProbeResult, Request, Response};

use crate::core::Core;
use crate::helper;

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
pub async fn connect(state: &Core, target: &Target) -> Result<Connecting, String> {
    let (kill_switch, lan_access) = {
        let view = state.view.lock().unwrap();
        let status = view
            .status
            .as_ref()
            .ok_or("the helper is not reachable; see the message on screen")?;
        (status.kill_switch, status.lan_access)
    };
    let settings = state.settings();
    let config_for = |profile: &str, server: Option<&str>| {
        state
            .profiles
            .tunnel_config(profile, server, &settings, kill_switch, lan_access)
            .map_err(|e| format!("{e:#}"))
    };
    let (chosen, others) = match target {
        Target::Server { profile, server } => (
            Connecting {
                profile: profile.clone(),
                server: server.clone(),
                rtt_ms: None,
                measured: 0,
            },
            Vec::new(),
        ),
        Target::Fastest { country } => {
            fastest_servers(state, country.as_deref(), |s| {
                config_for(s.profile.as_str(), s.server.as_deref()).map(|_| ())
            })
            .await?
        }
    };
    let config = config_for(&chosen.profile, chosen.server.as_deref())?;
    // The rest of the choice, for the helper to move to when a server stops answering.
    let alternatives = others
        .iter()
        .map(|s| config_for(s.profile.as_str(), s.server.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
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
            alternatives,
        },
        helper::REQUEST_TIMEOUT,
    )
    .await
    .map_err(|e| e.to_string())?;
    remember(state, target);
    Ok(chosen)
}

/// Saves `target` as the last one used (for the tray and connect-on-launch).
fn remember(state: &Core, target: &Target) {
    let saved = state.change_settings(|settings| {
        let changed = settings.last_target.as_ref() != Some(target);
        settings.last_target = Some(target.clone());
        Ok(changed)
    });
    if let Err(e) = saved {
        tracing::warn!("could not save the last server: {e}");
    }
}

/// Measures every server in `country` (or every server) that `usable` accepts (its profile
/// has not expired and its policy allows the current settings; `underpass_profile::choice`,
/// shared with the CLI) and ranks them: the fastest, and the rest of the choice in order.
async fn fastest_servers(
    state: &Core,
    country: Option<&str>,
    usable: impl Fn(&CatalogServer) -> Result<(), String>,
) -> Result<(Connecting, Vec<CatalogServer>), String> {
    let catalog = state.profiles.catalog().map_err(|e| format!("{e:#}"))?;
    let (servers, place) = choice::servers_in(&catalog, country);
    let pick = |s: &CatalogServer, rtt_ms, measured| Connecting {
        profile: s.profile.to_string(),
        server: s.server.clone(),
        rtt_ms,
        measured,
    };
    let servers = choice::usable(servers, &place, usable)?;
    if let [only] = servers.as_slice() {
        return Ok((pick(only, None, 0), Vec::new()));
    }
    let store = state.profiles.store().map_err(|e| format!("{e:#}"))?;
    let candidates = probe_candidates(&store, &servers).map_err(|e| e.to_string())?;
    let results = probe_all(state, &candidates).await?;
    let order = choice::ranked(&results, servers.len()).ok_or_else(|| {
        format!(
            "none of the {} servers {place} answered a handshake in time (a kill switch in \
             lockdown with no tunnel up also stops the measurement)",
            servers.len()
        )
    })?;
    let (best, ms) = order[0];
    tracing::info!(
        "fastest server {place}: {} ({:.1} ms of {} measured)",
        servers[best].profile,
        ms.unwrap_or(f64::NAN),
        servers.len()
    );
    let others = order[1..]
        .iter()
        .map(|&(i, _)| servers[i].clone())
        .collect();
    Ok((pick(&servers[best], ms, servers.len()), others))
}

/// Asks the helper to measure `candidates`, in the requests `choice::probe_requests` makes,
/// all at once (each is bounded by the helper's timeout).
async fn probe_all(
    state: &Core,
    candidates: &[underpass_proto::ProbeCandidate],
) -> Result<Vec<ProbeResult>, String> {
    let mut requests = JoinSet::new();
    for request in choice::probe_requests(candidates) {
        let socket = state.options.socket.clone();
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
