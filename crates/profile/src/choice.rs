//! The candidates of a user's choice: which servers "the fastest in Sweden" (or anywhere) may
//! be, in what order, and how they are measured. The CLI and the app both call this, so the
//! two cannot drift: the same policy and expiry filter, the same measurement batches (the
//! helper measures at most [`MAX_PROBE_CANDIDATES`] per request), the same ranking.
//!
//! The connect request then carries the ranked candidates (at most [`MAX_CHOICE`]), and the
//! helper moves from one to the next when a server stops answering. A named server is a choice
//! of one. The helper admits every candidate against the verified bundle and the machine's
//! policy itself; the filter here only keeps a client from asking for what would be refused,
//! with the profile's own words.

use underpass_proto::{
    ProbeCandidate, ProbeResult, Request, SessionRequest, MAX_CHOICE, MAX_PROBE_CANDIDATES,
};

use crate::catalog::{Catalog, CatalogServer};
use crate::store::LoadedProfile;

/// The servers of `country` (an ISO code; every server when `None`), and the words for where
/// they are ("in Sweden", "among your profiles").
pub fn servers_in(catalog: &Catalog, country: Option<&str>) -> (Vec<CatalogServer>, String) {
    match country {
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
                .iter()
                .flat_map(|c| c.servers.iter().cloned())
                .collect(),
            "among your profiles".to_string(),
        ),
    }
}

/// The servers that `usable` accepts. None at all is an error that says why: no server
/// `place`, or every one refused (with each reason).
pub fn usable(
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

impl LoadedProfile {
    /// Refuses a session of this profile that its bundle's expiry or policy forbids, in the
    /// profile's words. `now` is seconds since the epoch.
    pub fn check_session(&self, request: &SessionRequest, now: u64) -> Result<(), String> {
        let Some(bundle) = &self.bundle else {
            return Ok(());
        };
        if let (Some(at), Some(text)) = (bundle.expires_at, &bundle.expires) {
            if at <= now {
                return Err(format!(
                    "profile \"{}\" expired on {text}; ask {} for a new one",
                    self.name, bundle.organization
                ));
            }
        }
        let violations = bundle.policy.violations(request);
        if violations.is_empty() {
            return Ok(());
        }
        Err(format!(
            "refusing to connect \"{}\": the policy of {} (serial {}) says {}",
            self.name,
            bundle.organization,
            bundle.serial,
            violations.join("; ")
        ))
    }
}

/// The measurement requests for `candidates` (made by `catalog::probe_candidates`): at most
/// [`MAX_PROBE_CANDIDATES`] each, which the helper runs side by side.
pub fn probe_requests(candidates: &[ProbeCandidate]) -> Vec<Request> {
    candidates
        .chunks(MAX_PROBE_CANDIDATES)
        .map(|chunk| Request::ProbeServers {
            candidates: chunk.to_vec(),
        })
        .collect()
}

/// The order to try `count` measured servers in: those that answered, fastest first, then
/// the silent ones in their given order; at most [`MAX_CHOICE`]. Each entry is the server's
/// index and its round trip. `None` when no server answered at all.
pub fn ranked(results: &[ProbeResult], count: usize) -> Option<Vec<(usize, Option<f64>)>> {
    let mut rtt: Vec<Option<f64>> = vec![None; count];
    for r in results {
        let Some(i) = r.id.parse::<usize>().ok().filter(|&i| i < count) else {
            continue;
        };
        if let Some(ms) = r.rtt_ms.filter(|ms| ms.is_finite()) {
            rtt[i] = Some(rtt[i].map_or(ms, |old: f64| old.min(ms)));
        }
    }
    if rtt.iter().all(Option::is_none) {
        return None;
    }
    let mut order: Vec<(usize, Option<f64>)> = rtt.into_iter().enumerate().collect();
    // Stable: the silent ones keep their given order.
    order.sort_by(|a, b| match (a.1, b.1) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    order.truncate(MAX_CHOICE);
    Some(order)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ProfileName;
    use underpass_proto::Key;

    fn server(profile: &str, country: &str) -> CatalogServer {
        CatalogServer {
            profile: ProfileName::new(profile).unwrap(),
            server: None,
            country: Some(country.into()),
            city: None,
            endpoint: "192.0.2.1:51820".into(),
            public_key: Key([7; 32]),
            organization: None,
        }
    }

    fn result(id: usize, rtt: Option<f64>) -> ProbeResult {
        ProbeResult {
            id: id.to_string(),
            endpoint: None,
            rtt_ms: rtt,
            error: rtt.is_none().then(|| "no answer in 2 s".into()),
        }
    }

    #[test]
    fn the_servers_of_a_country_are_its_own_and_anywhere_is_all() {
        let c = Catalog::build(vec![
            server("se-1", "SE"),
            server("de-1", "DE"),
            server("se-2", "SE"),
        ]);
        let (se, place) = servers_in(&c, Some("se"));
        assert_eq!(place, "in Sweden");
        assert_eq!(se.len(), 2);
        assert!(se.iter().all(|s| s.country.as_deref() == Some("SE")));
        let (all, place) = servers_in(&c, None);
        assert_eq!((all.len(), place.as_str()), (3, "among your profiles"));
        assert!(servers_in(&c, Some("xx")).0.is_empty());
    }

    #[test]
    fn servers_a_policy_forbids_are_left_out_and_none_left_says_why() {
        let forbid_corp = |s: &CatalogServer| {
            if s.profile.as_str() == "corp" {
                Err("the policy of ACME IT says split tunneling is not allowed".to_string())
            } else {
                Ok(())
            }
        };
        let kept = usable(
            vec![server("corp", "SE"), server("se-1", "SE")],
            "in Sweden",
            forbid_corp,
        )
        .unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].profile.as_str(), "se-1");
        let e = usable(vec![server("corp", "SE")], "in Sweden", forbid_corp).unwrap_err();
        assert_eq!(
            e,
            "no server in Sweden can be used now: the policy of ACME IT says split tunneling is not allowed"
        );
        let e = usable(vec![], "in Sweden", forbid_corp).unwrap_err();
        assert_eq!(e, "there is no server in Sweden: import a profile first");
    }

    #[test]
    fn more_candidates_than_one_request_takes_are_measured_in_batches() {
        let c = ProbeCandidate {
            id: "0".into(),
            endpoint: "192.0.2.1:51820".into(),
            public_key: Key([2; 32]),
            private_key: Key([1; 32]),
            preshared_key: None,
        };
        let many = vec![c; MAX_PROBE_CANDIDATES * 2 + 1];
        let sizes: Vec<usize> = probe_requests(&many)
            .iter()
            .map(|r| match r {
                Request::ProbeServers { candidates } => candidates.len(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(sizes, [MAX_PROBE_CANDIDATES, MAX_PROBE_CANDIDATES, 1]);
        assert!(probe_requests(&[]).is_empty());
    }

    #[test]
    fn the_fastest_come_first_then_the_silent_in_their_order() {
        let results = [
            result(0, None),
            result(1, Some(30.0)),
            result(2, Some(10.0)),
            result(3, None),
            result(9, Some(1.0)),
        ];
        assert_eq!(
            ranked(&results, 4).unwrap(),
            [(2, Some(10.0)), (1, Some(30.0)), (0, None), (3, None)]
        );
        assert_eq!(ranked(&[result(0, None)], 1), None);
        let many: Vec<ProbeResult> = (0..40).map(|i| result(i, Some(i as f64))).collect();
        assert_eq!(ranked(&many, 40).unwrap().len(), MAX_CHOICE);
    }

    #[test]
    fn an_expired_or_forbidding_bundle_refuses_the_session_in_its_words() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open_with(dir.path(), crate::Keystore::File).unwrap();
        let text = "[Interface]\nPrivateKey = AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\nAddress = 10.0.0.2/32\n\n[Peer]\nPublicKey = AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=\nAllowedIPs = 0.0.0.0/0\nEndpoint = 192.0.2.1:51820\n";
        let parsed = crate::parse("se-sto-wg-001.conf", text).unwrap();
        let name = ProfileName::new("se-sto-wg-001").unwrap();
        store
            .import(&name, &parsed.config, &crate::ImportOptions::default())
            .unwrap();
        let mut loaded = store.load(&name).unwrap();
        let request = SessionRequest {
            kill_switch: underpass_proto::KillSwitchMode::Off,
            split_tunnel: true,
            lan_access: false,
        };
        // A wg-quick profile has no policy.
        loaded.check_session(&request, 0).unwrap();
        loaded.bundle = Some(crate::BundleInfo {
            organization: "ACME IT".into(),
            description: None,
            serial: 4,
            expires: Some("2030-01-01".into()),
            expires_at: Some(1_000),
            signer: crate::SignerKey::parse(
                &underpass_trust::bundle::signing::keygen(None).unwrap().1,
            )
            .unwrap(),
            trusted_comment: String::new(),
            policy: underpass_proto::Policy {
                min_kill_switch: underpass_proto::KillSwitchMode::Auto,
                split_tunnel_allowed: false,
                lan_access_allowed: false,
                dns_locked: false,
            },
            key_generated_locally: false,
        });
        let e = loaded.check_session(&request, 1_000).unwrap_err();
        assert_eq!(
            e,
            "profile \"se-sto-wg-001\" expired on 2030-01-01; ask ACME IT for a new one"
        );
        let e = loaded.check_session(&request, 999).unwrap_err();
        assert!(
            e.starts_with(
                "refusing to connect \"se-sto-wg-001\": the policy of ACME IT (serial 4) says "
            ),
            "{e}"
        );
    }
}
