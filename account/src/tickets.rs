//! Browser tickets: single-use, short-lived, kept in memory (a restart may
//! simply ask for a new one). Issuing and redeeming cost O(1), amortised:
//! tickets expire in the order they were issued (one lifetime for all), so
//! expired ones are dropped from the front of a queue as new ones arrive,
//! never by a scan of every live ticket.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::token::Claims;

#[derive(Default)]
pub struct Tickets {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Ticket hash -> (claims, expiry).
    live: HashMap<String, (Claims, i64)>,
    /// (expiry, hash) in the order issued; a redeemed ticket stays here until
    /// its expiry passes, which bounds the queue by the rate of issue.
    by_expiry: VecDeque<(i64, String)>,
}

impl Tickets {
    /// Keeps a ticket (by its hash) until `expires`, dropping those expired at `now`.
    pub fn issue(&self, hash: String, claims: Claims, expires: i64, now: i64) {
        let mut inner = self.lock();
        while inner.by_expiry.front().is_some_and(|(exp, _)| *exp <= now) {
            if let Some((_, gone)) = inner.by_expiry.pop_front() {
                inner.live.remove(&gone);
            }
        }
        inner.by_expiry.push_back((expires, hash.clone()));
        inner.live.insert(hash, (claims, expires));
    }

    /// Spends a ticket: its claims once, if it has not expired at `now`.
    pub fn redeem(&self, hash: &str, now: i64) -> Option<Claims> {
        match self.lock().live.remove(hash) {
            Some((claims, expires)) if expires > now => Some(claims),
            _ => None,
        }
    }

    /// Tickets kept, live or expired but not yet dropped.
    pub fn len(&self) -> usize {
        self.lock().live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use superapp_proto::ids::UserId;

    use super::*;

    fn claims(n: u64) -> Claims {
        Claims {
            sub: UserId(n),
            sid: n,
            iat: 0,
            exp: i64::MAX,
        }
    }

    #[test]
    fn a_ticket_is_spent_once_and_not_after_it_expires() {
        let tickets = Tickets::default();
        tickets.issue("a".into(), claims(1), 30, 0);
        tickets.issue("b".into(), claims(2), 30, 0);
        assert_eq!(tickets.redeem("a", 10), Some(claims(1)));
        assert_eq!(tickets.redeem("a", 10), None);
        assert_eq!(tickets.redeem("b", 30), None, "expired");
        assert_eq!(tickets.redeem("nope", 0), None);
    }

    #[test]
    fn expired_tickets_are_dropped_as_new_ones_come_without_a_scan() {
        let tickets = Tickets::default();
        for n in 0..10_000 {
            tickets.issue(format!("t{n}"), claims(n), 30, 0);
        }
        assert_eq!(tickets.len(), 10_000);
        // One issue after they expired drops them all, from the queue's front.
        tickets.issue("late".into(), claims(1), 60, 30);
        assert_eq!(tickets.len(), 1);
        assert_eq!(tickets.redeem("late", 31), Some(claims(1)));
        assert!(tickets.is_empty());
    }

    #[test]
    fn two_concurrent_redemptions_of_one_ticket_spend_it_once() {
        for _ in 0..200 {
            let tickets = Arc::new(Tickets::default());
            tickets.issue("t".into(), claims(1), 30, 0);
            let racers: Vec<_> = (0..2)
                .map(|_| {
                    let tickets = tickets.clone();
                    std::thread::spawn(move || tickets.redeem("t", 1))
                })
                .collect();
            let spent = racers
                .into_iter()
                .filter_map(|r| r.join().unwrap_or(None))
                .count();
            assert_eq!(spent, 1);
        }
    }
}
