//! The user's choice of servers, and moving within it: rung 3 of the reconnect ladder
//! (`health::Rung::NextServer`), free of I/O.
//!
//! A connect request carries the choice: the server to use first (`config`) and the others of
//! the same choice (`alternatives`), in the order the client ranked them (measured for "the
//! fastest in Sweden", as given otherwise). A named server is a choice of one, so its "next
//! server" is itself, set up afresh. Every candidate is admitted exactly like a single-server
//! connect (`policy::admit`: its signed bundle verified, the machine's policy applied), so no
//! member can slip an unpermitted server in as an alternative; one refused candidate refuses the
//! whole request, naming it.
//!
//! The wanted tunnel stays `Intent::wanted` (what everything else reads); the [`Rotation`] holds
//! the rest of the choice in the order to move to it, and is persisted with the intent, so a
//! restarted helper resumes on the server it had moved to and keeps the rest of the choice.

use serde::{Deserialize, Serialize};
use underpass_proto::{validate_choice, ErrorBody, ErrorCode, ServerInUse, TunnelConfig};

use crate::health::Rung;
use crate::policy;

/// The rest of the user's choice, after the server in use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    /// The other servers, in the order to move to them (wrapping back to the first).
    pub next: Vec<TunnelConfig>,
    /// 0-based position of the server in use in the choice as the client sent it.
    pub position: usize,
}

impl Rotation {
    /// A fresh choice: its first server in use, `alternatives` to come.
    pub fn new(alternatives: Vec<TunnelConfig>) -> Rotation {
        Rotation {
            next: alternatives,
            position: 0,
        }
    }

    /// The number of servers in the choice.
    pub fn len(&self) -> usize {
        self.next.len() + 1
    }

    /// Moves `current` on to the next server of the choice, wrapping. False, and nothing
    /// changes, when the choice is one server.
    pub fn advance(&mut self, current: &mut TunnelConfig) -> bool {
        if self.next.is_empty() {
            return false;
        }
        let next = self.next.remove(0);
        self.next.push(std::mem::replace(current, next));
        self.position = (self.position + 1) % self.len();
        true
    }

    /// What a rung of the ladder does to the choice: only `NextServer` moves on.
    pub fn on_rung(&mut self, rung: Rung, current: &mut TunnelConfig) -> bool {
        rung == Rung::NextServer && self.advance(current)
    }

    /// The status line of the server in use.
    pub fn in_use(&self, current: &TunnelConfig) -> ServerInUse {
        ServerInUse {
            profile: current.profile.clone(),
            server: current.signed.as_ref().map(|s| s.server.clone()),
            endpoint: current
                .peers
                .first()
                .map(|p| p.endpoint.clone())
                .unwrap_or_default(),
            position: u32::try_from(self.position + 1).unwrap_or(u32::MAX),
            of: u32::try_from(self.len()).unwrap_or(u32::MAX),
        }
    }
}

/// Admits a connect request's whole choice, or says why not: the bounds and fields of every
/// candidate first (`validate_choice`), then each through the helper's policy admission. On
/// success every candidate's `policy` is the one the helper derived.
pub fn admit(
    config: &mut TunnelConfig,
    alternatives: &mut [TunnelConfig],
    system: &mut policy::System,
    now: u64,
) -> Result<(), ErrorBody> {
    validate_choice(config, alternatives).map_err(|reason| {
        tracing::warn!(%reason, "connect request refused");
        ErrorBody::new(
            ErrorCode::InvalidConfig,
            format!("invalid connect request: {reason}"),
        )
    })?;
    policy::admit(config, system, now)?;
    for (i, candidate) in alternatives.iter_mut().enumerate() {
        policy::admit(candidate, system, now)
            .map_err(|e| ErrorBody::new(e.code, format!("alternatives[{i}]: {}", e.message)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use underpass_proto::{Key, ReconnectReason};

    use super::*;
    use crate::health::Ladder;

    fn server(name: &str, n: u8) -> TunnelConfig {
        let mut c = TunnelConfig::example();
        c.profile = name.into();
        c.peers[0].public_key = Key([10 + n; 32]);
        c.peers[0].endpoint = format!("192.0.2.{}:51820", 10 + n);
        c
    }

    /// Runs the ladder for `secs` simulated seconds from a dead tunnel, applying each rung to
    /// the choice, and returns (second, attempt, profile) for every rung that ran.
    fn heal(
        current: &mut TunnelConfig,
        rotation: &mut Rotation,
        secs: u64,
    ) -> Vec<(u64, u32, String)> {
        let t0 = Instant::now();
        let (mut ladder, first) = Ladder::start(t0, ReconnectReason::ServerNotResponding);
        rotation.on_rung(first, current);
        let mut ran = vec![(0, 0, current.profile.clone())];
        for s in 1..=secs {
            if let Some(rung) = ladder.on_tick(t0 + Duration::from_secs(s)) {
                rotation.on_rung(rung, current);
                ran.push((s, ladder.attempt, current.profile.clone()));
            }
        }
        ran
    }

    #[test]
    fn a_dead_server_gives_way_to_the_next_of_the_choice_on_the_third_attempt() {
        let mut current = server("se-1", 1);
        let mut rotation = Rotation::new(vec![server("se-2", 2), server("se-3", 3)]);
        let ran = heal(&mut current, &mut rotation, 12);
        // A forced handshake at 0 s (4 s), a new socket at 4 s (8 s), then the next server.
        assert_eq!(
            ran,
            [
                (0, 0, "se-1".to_string()),
                (4, 1, "se-1".to_string()),
                (12, 2, "se-2".to_string()),
            ]
        );
        assert_eq!(rotation.in_use(&current).position, 2);
        assert_eq!(rotation.in_use(&current).of, 3);
        assert_eq!(rotation.in_use(&current).endpoint, "192.0.2.12:51820");
    }

    #[test]
    fn the_choice_wraps_around_in_the_order_it_was_given() {
        let mut current = server("se-1", 1);
        let mut rotation = Rotation::new(vec![server("se-2", 2), server("se-3", 3)]);
        let ran = heal(&mut current, &mut rotation, 120);
        let servers: Vec<&str> = ran
            .iter()
            .filter(|(_, attempt, _)| *attempt >= 2 && attempt % 2 == 0)
            .map(|(_, _, p)| p.as_str())
            .collect();
        assert_eq!(servers[..4], ["se-2", "se-3", "se-1", "se-2"]);
        // Between the moves, a new socket keeps the server it moved to.
        assert!(ran.windows(2).all(|w| w[1].1 % 2 == 0 || w[1].2 == w[0].2));
        // Each attempt of the ladder had its time: min(4 s × 2ⁿ, 15 s).
        assert_eq!(ran[3].0, 27);
    }

    #[test]
    fn a_named_server_stays_that_server() {
        let mut current = server("home", 1);
        let mut rotation = Rotation::new(Vec::new());
        let ran = heal(&mut current, &mut rotation, 120);
        assert!(ran.len() > 5);
        assert!(ran.iter().all(|(_, _, p)| p == "home"));
        assert_eq!(rotation.in_use(&current).of, 1);
    }

    #[test]
    fn the_rotation_survives_the_intent_file() {
        let mut current = server("se-1", 1);
        let mut rotation = Rotation::new(vec![server("se-2", 2)]);
        assert!(rotation.advance(&mut current));
        let json = serde_json::to_string(&rotation).unwrap();
        let back: Rotation = serde_json::from_str(&json).unwrap();
        assert_eq!(back, rotation);
        assert_eq!(back.next[0].profile, "se-1");
    }
}
