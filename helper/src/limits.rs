//! Per-user budgets (issue 9) for the requests that cost the helper something (server probes,
//! self-tests): a token bucket per uid, with time as an input so it is tested without waiting.
//!
//! The table of users is bounded by the users allowed to connect; a bucket that has refilled
//! completely carries no information and is dropped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// At most `per_uid` held at once by one user (event subscriptions); a slot is given back
/// when its guard drops, however the connection ends.
#[derive(Debug)]
pub struct Slots {
    per_uid: usize,
    used: Mutex<HashMap<u32, usize>>,
}

pub struct Slot {
    slots: Arc<Slots>,
    uid: u32,
}

impl Slots {
    pub fn new(per_uid: usize) -> Arc<Slots> {
        Arc::new(Slots {
            per_uid,
            used: Mutex::new(HashMap::new()),
        })
    }

    pub fn take(self: &Arc<Self>, uid: u32) -> Option<Slot> {
        let mut used = self.used.lock();
        let n = used.entry(uid).or_default();
        if *n >= self.per_uid {
            return None;
        }
        *n += 1;
        Some(Slot {
            slots: self.clone(),
            uid,
        })
    }

    pub fn per_uid(&self) -> usize {
        self.per_uid
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut used = self.slots.used.lock();
        if let Some(n) = used.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                used.remove(&self.uid);
            }
        }
    }
}

/// `burst` requests at once, then one every `every`.
#[derive(Debug)]
pub struct PerUid {
    burst: u32,
    every: Duration,
    buckets: HashMap<u32, (f64, Instant)>,
}

impl PerUid {
    pub fn new(burst: u32, every: Duration) -> PerUid {
        PerUid {
            burst,
            every,
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `uid`, or says how long until one is there.
    pub fn take(&mut self, uid: u32, now: Instant) -> Result<(), Duration> {
        let (burst, every) = (f64::from(self.burst), self.every.as_secs_f64());
        self.buckets.retain(|_, (tokens, at)| {
            *tokens + now.saturating_duration_since(*at).as_secs_f64() / every < burst
        });
        let (tokens, at) = self.buckets.entry(uid).or_insert((burst, now));
        let available =
            (*tokens + now.saturating_duration_since(*at).as_secs_f64() / every).min(burst);
        if available < 1.0 {
            return Err(Duration::from_secs_f64((1.0 - available) * every));
        }
        *tokens = available - 1.0;
        *at = now;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_one_per_interval_and_users_do_not_share() {
        let mut limit = PerUid::new(3, Duration::from_secs(2));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limit.take(1000, t0).is_ok());
        }
        let wait = limit.take(1000, t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(2));
        assert!(
            limit.take(1001, t0).is_ok(),
            "another user has their own budget"
        );
        assert!(limit.take(1000, t0 + Duration::from_secs(1)).is_err());
        assert!(limit.take(1000, t0 + Duration::from_secs(2)).is_ok());
    }

    #[test]
    fn a_user_holds_at_most_its_slots_and_gets_them_back() {
        let slots = Slots::new(2);
        let a = slots.take(1000).unwrap();
        let _b = slots.take(1000).unwrap();
        assert!(slots.take(1000).is_none());
        assert!(slots.take(1001).is_some(), "per user");
        drop(a);
        assert!(slots.take(1000).is_some());
    }

    #[test]
    fn refilled_buckets_are_forgotten() {
        let mut limit = PerUid::new(2, Duration::from_millis(10));
        let t0 = Instant::now();
        for uid in 0..1000 {
            limit.take(uid, t0).unwrap();
        }
        limit.take(5, t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(limit.buckets.len(), 1);
    }
}
