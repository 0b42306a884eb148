//! Attempts per key within a sliding window: the failed-login throttles (per
//! account, per client address) and the registration throttle (per client
//! address). Kept in process memory in the small tier.
//!
//! An attempt is reserved before the work it guards (a password hash), under
//! the same lock as the check, so concurrent attempts cannot all pass one
//! check; an attempt that turns out not to count is given back.
//!
//! Every operation is amortised O(1): keys are queued in the order they were
//! first seen, and each touch drops from the front of the queue the keys whose
//! window has passed, never by a scan of the map. At most [`MAX_KEYS`] keys
//! are kept; beyond, the oldest key is forgotten, as if its window had passed.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Keys kept at most per throttle: about 100 bytes each with its times.
pub const MAX_KEYS: usize = 100_000;

pub struct Throttle {
    limit: usize,
    window_ms: i64,
    max_keys: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    keys: HashMap<String, Entry>,
    /// (time seen, key, generation) in the order keys were created. An entry
    /// whose generation no longer matches its key's is stale (the key was
    /// cleared and created again) and is skipped when it reaches the front.
    order: VecDeque<(i64, String, u64)>,
    next_generation: u64,
}

struct Entry {
    /// Attempt times, oldest first, at most `limit` of them.
    times: VecDeque<i64>,
    generation: u64,
}

impl Throttle {
    pub fn new(limit: u32, window_ms: i64) -> Self {
        Self::with_capacity(limit, window_ms, MAX_KEYS)
    }

    fn with_capacity(limit: u32, window_ms: i64, max_keys: usize) -> Self {
        Self {
            limit: limit as usize,
            window_ms,
            max_keys,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// `Some(ms to wait)` when the key has used up its attempts.
    pub fn check(&self, key: &str, now_ms: i64) -> Option<u64> {
        let mut inner = self.lock();
        self.expire(&mut inner, now_ms);
        self.wait(&inner, key, now_ms)
    }

    /// Checks and, when the key may go on, counts this attempt under the same
    /// lock, so concurrent attempts cannot all pass one check. An attempt
    /// that should not count is then given back with [`Self::give_back`], or
    /// all of them with [`Self::clear`].
    pub fn check_and_record(&self, key: &str, now_ms: i64) -> Option<u64> {
        let mut inner = self.lock();
        self.expire(&mut inner, now_ms);
        let wait = self.wait(&inner, key, now_ms);
        if wait.is_none() {
            self.push(&mut inner, key, now_ms);
        }
        wait
    }

    pub fn record_failure(&self, key: &str, now_ms: i64) {
        let mut inner = self.lock();
        self.expire(&mut inner, now_ms);
        self.push(&mut inner, key, now_ms);
    }

    /// Gives back the key's latest attempt: it did not count after all.
    pub fn give_back(&self, key: &str) {
        let mut inner = self.lock();
        if let Some(entry) = inner.keys.get_mut(key) {
            entry.times.pop_back();
            if entry.times.is_empty() {
                inner.keys.remove(key);
            }
        }
    }

    pub fn clear(&self, key: &str) {
        self.lock().keys.remove(key);
    }

    /// Keys kept.
    pub fn len(&self) -> usize {
        self.lock().keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn wait(&self, inner: &Inner, key: &str, now_ms: i64) -> Option<u64> {
        let entry = inner.keys.get(key)?;
        let horizon = now_ms - self.window_ms;
        let live = entry.times.iter().filter(|t| **t > horizon).count();
        if live < self.limit {
            return None;
        }
        // The oldest live attempt leaves the window first.
        let oldest = entry.times.iter().find(|t| **t > horizon).copied()?;
        Some((oldest + self.window_ms - now_ms).max(1) as u64)
    }

    fn push(&self, inner: &mut Inner, key: &str, now_ms: i64) {
        if !inner.keys.contains_key(key) {
            let generation = inner.next_generation;
            inner.next_generation += 1;
            inner.order.push_back((now_ms, key.to_string(), generation));
            inner.keys.insert(
                key.to_string(),
                Entry {
                    times: VecDeque::new(),
                    generation,
                },
            );
        }
        if let Some(entry) = inner.keys.get_mut(key) {
            entry.times.push_back(now_ms);
            while entry.times.len() > self.limit {
                entry.times.pop_front();
            }
        }
        while inner.keys.len() > self.max_keys {
            let Some((_, oldest, generation)) = inner.order.pop_front() else {
                break;
            };
            if inner.keys.get(&oldest).map(|e| e.generation) == Some(generation) {
                inner.keys.remove(&oldest);
            }
        }
    }

    /// Drops the keys at the front of the queue whose attempts have all left
    /// the window. A key still in use goes to the back, stamped with its
    /// latest attempt, so each is looked at about once per window.
    fn expire(&self, inner: &mut Inner, now_ms: i64) {
        let horizon = now_ms - self.window_ms;
        while inner
            .order
            .front()
            .is_some_and(|(seen, _, _)| *seen <= horizon)
        {
            let Some((_, key, generation)) = inner.order.pop_front() else {
                break;
            };
            let latest = match inner.keys.get(&key) {
                Some(entry) if entry.generation == generation => entry.times.back().copied(),
                _ => continue,
            };
            match latest {
                Some(latest) if latest > horizon => {
                    inner.order.push_back((latest, key, generation));
                }
                _ => {
                    inner.keys.remove(&key);
                }
            }
        }
        // Stale entries (keys cleared or given back) are bounded too.
        while inner.order.len() > 2 * self.max_keys {
            let Some((_, key, generation)) = inner.order.pop_front() else {
                break;
            };
            if inner.keys.get(&key).map(|e| e.generation) == Some(generation) {
                inner.keys.remove(&key);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
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

    #[test]
    fn an_attempt_given_back_no_longer_counts() {
        let t = Throttle::new(2, 1_000);
        assert_eq!(t.check_and_record("k", 0), None);
        assert_eq!(t.check_and_record("k", 1), None);
        assert!(t.check("k", 2).is_some());
        t.give_back("k");
        assert_eq!(t.check_and_record("k", 3), None);
        assert!(t.check("k", 4).is_some());
    }

    #[test]
    fn keys_whose_window_passed_are_dropped_as_time_goes_on() {
        let t = Throttle::new(5, 1_000);
        for i in 0..1_000 {
            t.record_failure(&format!("k{i}"), i);
        }
        t.record_failure("late", 1_500);
        // k0 to k500 have left the window; k501 to k999 and "late" stay.
        assert_eq!(t.len(), 500);
        t.record_failure("later", 3_000);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_key_in_use_outlives_the_window_of_its_first_attempt() {
        let t = Throttle::new(2, 1_000);
        t.record_failure("k", 0);
        t.record_failure("k", 900);
        t.record_failure("other", 1_200);
        assert_eq!(t.check("k", 1_200), None);
        t.record_failure("k", 1_300);
        assert!(
            t.check("k", 1_400).is_some(),
            "900 and 1300 are in the window"
        );
    }

    #[test]
    fn a_spray_of_keys_keeps_at_most_the_cap_and_forgets_the_oldest() {
        let t = Throttle::with_capacity(1, 1_000_000, 100);
        for i in 0..1_000 {
            t.record_failure(&format!("k{i}"), 0);
        }
        assert_eq!(t.len(), 100);
        assert_eq!(t.check("k0", 1), None, "the oldest was forgotten");
        assert!(t.check("k999", 1).is_some());
    }

    /// A spray of keys that all stay inside the window: the map stays at its
    /// cap, each attempt dropping the oldest key from the queue's front
    /// rather than scanning the map for expired ones.
    #[test]
    fn a_spray_past_the_cap_keeps_the_map_at_the_cap() {
        let t = Throttle::new(5, 3_600_000);
        for i in 0..MAX_KEYS + 50_000 {
            t.check_and_record(&format!("+86139{i:08}"), i as i64 / 1_000);
        }
        assert_eq!(t.len(), MAX_KEYS);
    }
}
