//! The tunnel's MTU: the default derived from the path, and the path-MTU probe's search.
//!
//! Both are pure. The default is the MTU of the *route* toward the endpoint (a PPPoE line's
//! 1492, a learned path MTU) rather than only the link's, minus 80: the outer IPv6 (40) + UDP
//! (8) + WireGuard (32) headers, as wg-quick does, so the tunnel survives when the endpoint is
//! reached over IPv6 too. The probe's binary search lives here so that it is tested without a
//! network; `pmtu.rs` in the doctor sends the packets.

use underpass_proto::{MIN_MTU, MIN_MTU_V6};

/// Outer IPv6 + UDP + WireGuard data headers.
pub const OVERHEAD: u16 = 80;
/// When no route MTU is known.
pub const DEFAULT_PATH_MTU: u16 = 1500;

/// The smallest MTU the tunnel may have: IPv6 inside needs 1280.
pub fn floor(inner_v6: bool) -> u16 {
    if inner_v6 {
        MIN_MTU_V6
    } else {
        MIN_MTU
    }
}

/// The tunnel MTU for a path whose route MTU toward the endpoint is `path_mtu`.
pub fn default_mtu(path_mtu: Option<u16>, inner_v6: bool) -> u16 {
    path_mtu
        .unwrap_or(DEFAULT_PATH_MTU)
        .saturating_sub(OVERHEAD)
        .max(floor(inner_v6))
}

/// A binary search for the largest packet that crosses the tunnel, between `low` (assumed to
/// pass; the floor) and `high` (the tunnel's current MTU: nothing larger can be sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    /// The largest size seen to pass (or the floor).
    passed: u16,
    /// The smallest size seen to fail, minus one: the largest still possible.
    possible: u16,
}

impl Search {
    pub fn new(low: u16, high: u16) -> Search {
        Search {
            passed: low.min(high),
            possible: high,
        }
    }

    /// The next size to try, or `None` when the answer is known.
    pub fn next(&self) -> Option<u16> {
        if self.passed >= self.possible {
            return None;
        }
        // Round up, so that a gap of one still makes progress.
        Some(self.passed + (self.possible - self.passed).div_ceil(2))
    }

    pub fn record(&mut self, size: u16, passed: bool) {
        if passed {
            self.passed = self.passed.max(size);
        } else {
            self.possible = self.possible.min(size.saturating_sub(1));
        }
    }

    /// The largest size known to pass.
    pub fn largest(&self) -> u16 {
        self.passed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_the_route_mtu_minus_80() {
        assert_eq!(default_mtu(Some(1500), false), 1420);
        // A PPPoE-like route: 1412, whose outer v4 packets (1472) fit in 1492.
        assert_eq!(default_mtu(Some(1492), false), 1412);
        assert_eq!(default_mtu(None, false), 1420);
    }

    #[test]
    fn the_default_never_goes_below_what_ipv6_inside_needs() {
        assert_eq!(default_mtu(Some(1300), true), 1280);
        assert_eq!(default_mtu(Some(600), false), 576);
    }

    /// Runs the search against a path that passes every size up to `limit`.
    fn search(low: u16, high: u16, limit: u16) -> (u16, usize) {
        let mut s = Search::new(low, high);
        let mut steps = 0;
        while let Some(size) = s.next() {
            s.record(size, size <= limit);
            steps += 1;
            assert!(steps < 20, "the search does not converge");
        }
        (s.largest(), steps)
    }

    #[test]
    fn the_search_finds_the_largest_size_that_passes() {
        assert_eq!(search(576, 1420, 1320).0, 1320);
        assert_eq!(search(1280, 1420, 1281).0, 1281);
        // Everything passes: the current MTU is the answer.
        assert_eq!(search(576, 1420, 9000).0, 1420);
        // Nothing above the floor passes: the floor.
        assert_eq!(search(576, 1420, 0).0, 576);
        // About log2(844) steps.
        assert!(search(576, 1420, 1000).1 <= 11);
    }
}
