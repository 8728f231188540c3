//! The server catalog: every server of every profile, grouped by country, with the display
//! name and flag the country picker shows, and a search over all of it.
//!
//! A wg-quick profile is one server (its first peer's endpoint, at the profile's location);
//! each server of a signed bundle is its own entry. Servers whose country is unknown are
//! grouped last, under [`UNKNOWN_COUNTRY`], so nothing imported goes missing from the list.

use std::collections::HashMap;

use serde::Serialize;
use underpass_proto::{Key, ProbeCandidate};

use crate::location::{country_name, flag};
use crate::store::{LoadedProfile, ProfileName, Store, StoreError};

/// The group name of servers without a known country.
pub const UNKNOWN_COUNTRY: &str = "Unknown location";

/// One server a user can connect to: `underpass connect PROFILE [--server SERVER]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct CatalogServer {
    pub profile: ProfileName,
    /// The bundle's server id; `None` for a wg-quick profile.
    pub server: Option<String>,
    pub country: Option<String>,
    pub city: Option<String>,
    pub endpoint: String,
    pub public_key: Key,
    /// The organization that signed the profile, if any.
    pub organization: Option<String>,
}

/// The servers of one country.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct CatalogCountry {
    /// ISO 3166-1 alpha-2; `None` for the unknown group.
    pub code: Option<String>,
    pub name: String,
    /// Regional-indicator emoji (`🇸🇪`); `None` for the unknown group.
    pub flag: Option<String>,
    pub servers: Vec<CatalogServer>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Catalog {
    pub countries: Vec<CatalogCountry>,
}

impl Catalog {
    /// Groups `servers` by country: countries sorted by display name, the unknown group
    /// last, servers by city, then profile, then server id.
    pub fn build(mut servers: Vec<CatalogServer>) -> Catalog {
        servers.sort_by(|a, b| {
            (&a.city, &a.profile, &a.server).cmp(&(&b.city, &b.profile, &b.server))
        });
        let mut countries: Vec<CatalogCountry> = Vec::new();
        for s in servers {
            let code = s
                .country
                .as_deref()
                .and_then(crate::location::normalize_country)
                .map(str::to_string);
            match countries.iter_mut().find(|c| c.code == code) {
                Some(c) => c.servers.push(s),
                None => countries.push(CatalogCountry {
                    name: code
                        .as_deref()
                        .and_then(country_name)
                        .unwrap_or(UNKNOWN_COUNTRY)
                        .to_string(),
                    flag: code.as_deref().and_then(flag),
                    code,
                    servers: vec![s],
                }),
            }
        }
        countries.sort_by(|a, b| {
            (a.code.is_none(), a.name.as_str()).cmp(&(b.code.is_none(), b.name.as_str()))
        });
        Catalog { countries }
    }

    /// Only the country `code` (case-insensitive; `UK` means `GB`).
    pub fn country(&self, code: &str) -> Catalog {
        let code = crate::location::normalize_country(code);
        Catalog {
            countries: self
                .countries
                .iter()
                .filter(|c| code.is_some() && c.code.as_deref() == code)
                .cloned()
                .collect(),
        }
    }

    /// The servers matching every word of `query`, case-insensitively, against the country
    /// code and name, city, profile, server id, endpoint and organization.
    pub fn search(&self, query: &str) -> Catalog {
        let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
        let countries = self
            .countries
            .iter()
            .filter_map(|c| {
                let servers: Vec<CatalogServer> = c
                    .servers
                    .iter()
                    .filter(|s| {
                        let hay = [
                            c.code.as_deref().unwrap_or(""),
                            &c.name,
                            s.city.as_deref().unwrap_or(""),
                            s.profile.as_str(),
                            s.server.as_deref().unwrap_or(""),
                            &s.endpoint,
                            s.organization.as_deref().unwrap_or(""),
                        ]
                        .join("\n")
                        .to_lowercase();
                        words.iter().all(|w| hay.contains(w.as_str()))
                    })
                    .cloned()
                    .collect();
                (!servers.is_empty()).then(|| CatalogCountry {
                    servers,
                    ..c.clone()
                })
            })
            .collect();
        Catalog { countries }
    }

    pub fn server_count(&self) -> usize {
        self.countries.iter().map(|c| c.servers.len()).sum()
    }
}

/// The handshake probes that measure `servers` (each candidate's id is its index in
/// `servers`), with the private keys read from `store`, each profile once.
pub fn probe_candidates(
    store: &Store,
    servers: &[CatalogServer],
) -> Result<Vec<ProbeCandidate>, StoreError> {
    let mut loaded: HashMap<&ProfileName, LoadedProfile> = HashMap::new();
    let mut out = Vec::with_capacity(servers.len());
    for (i, s) in servers.iter().enumerate() {
        if !loaded.contains_key(&s.profile) {
            loaded.insert(&s.profile, store.load(&s.profile)?);
        }
        let config = &loaded[&s.profile].config;
        let peer = config.peers.iter().find(|p| p.public_key == s.public_key);
        out.push(ProbeCandidate {
            id: i.to_string(),
            endpoint: s.endpoint.clone(),
            public_key: s.public_key.clone(),
            private_key: config.interface.private_key.clone(),
            preshared_key: peer.and_then(|p| p.preshared_key.clone()),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(profile: &str, country: Option<&str>, city: Option<&str>) -> CatalogServer {
        CatalogServer {
            profile: ProfileName::new(profile).unwrap(),
            server: None,
            country: country.map(Into::into),
            city: city.map(Into::into),
            endpoint: "192.0.2.1:51820".into(),
            public_key: Key([7; 32]),
            organization: None,
        }
    }

    #[test]
    fn servers_are_grouped_by_country_with_unknown_last() {
        let c = Catalog::build(vec![
            server("se-2", Some("SE"), Some("Stockholm")),
            server("home", None, None),
            server("de-1", Some("DE"), Some("Frankfurt")),
            server("se-1", Some("SE"), Some("Gothenburg")),
        ]);
        let names: Vec<&str> = c.countries.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Germany", "Sweden", UNKNOWN_COUNTRY]);
        assert_eq!(c.countries[1].flag.as_deref(), Some("🇸🇪"));
        let se: Vec<&str> = c.countries[1]
            .servers
            .iter()
            .map(|s| s.profile.as_str())
            .collect();
        assert_eq!(se, ["se-1", "se-2"], "by city");
        assert_eq!(c.server_count(), 4);
    }

    #[test]
    fn search_matches_every_word_anywhere() {
        let c = Catalog::build(vec![
            server("se-2", Some("SE"), Some("Stockholm")),
            server("de-1", Some("DE"), Some("Frankfurt")),
        ]);
        assert_eq!(c.search("swe").server_count(), 1);
        assert_eq!(c.search("STOCK se").server_count(), 1);
        assert_eq!(c.search("frankfurt sweden").server_count(), 0);
        assert_eq!(c.search("").server_count(), 2);
        assert_eq!(c.country("de").server_count(), 1);
        assert_eq!(c.country("xx").server_count(), 0);
    }

    #[test]
    fn probe_candidates_carry_each_servers_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), crate::Keystore::File).unwrap();
        let text = "[Interface]\nPrivateKey = AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\nAddress = 10.0.0.2/32\n\n[Peer]\nPublicKey = AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=\nPresharedKey = AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=\nAllowedIPs = 0.0.0.0/0\nEndpoint = 192.0.2.1:51820\n";
        let parsed = crate::parse("se-sto-wg-001.conf", text).unwrap();
        let name = ProfileName::new("se-sto-wg-001").unwrap();
        store
            .import(&name, &parsed.config, &crate::ImportOptions::default())
            .unwrap();
        let servers = store.servers().unwrap();
        let c = probe_candidates(&store, &servers).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].id, "0");
        assert_eq!(c[0].endpoint, "192.0.2.1:51820");
        assert_eq!(c[0].private_key, Key([1; 32]));
        assert_eq!(c[0].preshared_key, Some(Key([3; 32])));
    }
}
