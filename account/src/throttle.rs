//! The failed-login throttle: at most `limit` failures per key within a window.
//! Kept in process memory in the small tier (shared through Redis in larger ones).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

pub struct Throttle {
    limit: usize,
    window_ms: i64,
    /// Failure times per key, oldest first. Pruned on every touch; keys with no
    /// recent failures are removed so the map does not grow without bound.
    failures: Mutex<HashMap<String, VecDeque<i64>>>,
}

impl Throttle {
    pub fn new(limit: u32, window_ms: i64) -> Self {
        Self {
            limit: limit as usize,
            window_ms,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(ms to wait)` when the key has used up its failures.
    pub fn check(&self, key: &str, now_ms: i64) -> Option<u64> {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        self.wait_in(&mut failures, key, now_ms)
    }

    /// Checks and, when the key may go on, counts this attempt as a failure
    /// under the same lock, so concurrent attempts cannot all pass one check.
    /// A success then [`clear`](Self::clear)s the key.
    pub fn check_and_record(&self, key: &str, now_ms: i64) -> Option<u64> {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let wait = self.wait_in(&mut failures, key, now_ms);
        if wait.is_none() {
            self.push(&mut failures, key, now_ms);
        }
        wait
    }

    fn wait_in(
        &self,
        failures: &mut HashMap<String, VecDeque<i64>>,
        key: &str,
        now_ms: i64,
    ) -> Option<u64> {
        let times = failures.get_mut(key)?;
        while times.front().is_some_and(|t| *t <= now_ms - self.window_ms) {
            times.pop_front();
        }
        if times.is_empty() {
            failures.remove(key);
            return None;
        }
        if times.len() >= self.limit {
            let oldest = times.front().copied().unwrap_or(now_ms);
            return Some((oldest + self.window_ms - now_ms).max(1) as u64);
        }
        None
    }

    pub fn record_failure(&self, key: &str, now_ms: i64) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        self.push(&mut failures, key, now_ms);
    }

    fn push(&self, failures: &mut HashMap<String, VecDeque<i64>>, key: &str, now_ms: i64) {
        if failures.len() > 100_000 {
            // Under a spray of distinct keys, drop entries whose window has passed.
            let horizon = now_ms - self.window_ms;
            failures.retain(|_, t| t.back().is_some_and(|last| *last > horizon));
        }
        let times = failures.entry(key.to_string()).or_default();
        times.push_back(now_ms);
        while times.len() > self.limit {
            times.pop_front();
        }
    }

    pub fn clear(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_held_back_after_its_limit_until_the_window_passes() {
        let t = Throttle::new(3, 1_000);
        for now in [0, 10, 20] {
            assert_eq!(t.check("k", now), None);
            t.record_failure("k", now);
        }
        assert_eq!(t.check("k", 30), Some(970));
        assert_eq!(t.check("other", 30), None);
        assert_eq!(t.check("k", 1_001), None);
    }

    #[test]
    fn checking_and_recording_lets_exactly_the_limit_through() {
        let t = Throttle::new(3, 1_000);
        let passed = (0..10)
            .filter(|_| t.check_and_record("k", 0).is_none())
            .count();
        assert_eq!(passed, 3);
    }

    #[test]
    fn a_success_clears_the_count() {
        let t = Throttle::new(1, 1_000);
        t.record_failure("k", 0);
        assert!(t.check("k", 1).is_some());
        t.clear("k");
        assert_eq!(t.check("k", 1), None);
    }
}
