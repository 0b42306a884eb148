//! The sessions this process has lately found live, so that a request from a
//! session costs a map lookup instead of a store read.
//!
//! Every revocation of a session goes through [`Accounts`](crate::Accounts)
//! (log-out, refresh-token reuse) on the one process that holds the account
//! store, and forgets the session here once the store has it. A read that
//! began before a revocation may still see the session live: it is not
//! remembered when a revocation came in between (a count of revocations is
//! taken before the read and compared after). So a session is never answered
//! live from memory after its revocation returned.
//!
//! What is remembered is dropped all at once every [`WINDOW_MS`], and when
//! [`MAX_REMEMBERED`] sessions are held: memory holds only the sessions used
//! lately, and a session that expired (its absolute lifetime ended) is
//! answered live for at most one window after its expiry.
//!
//! [`KnownUsers`] does the same for the question chat asks on every send,
//! "does this user take part?", forgetting a user at their deletion.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::model::UserId;

/// How long a session found live is answered from memory at most.
pub const WINDOW_MS: i64 = 30_000;
/// Sessions remembered at most (about 32 bytes each).
pub const MAX_REMEMBERED: usize = 1_000_000;

#[derive(Default)]
pub(crate) struct LiveSessions {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Session id -> its user, for sessions found live since `since_ms`.
    known: HashMap<u64, UserId>,
    since_ms: i64,
    /// Revocations made so far (see the module's comment).
    revocations: u64,
}

/// What memory says of a session.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Recall {
    /// Found live lately, of this user.
    Live(UserId),
    /// Not known: read the store, and pass this to [`LiveSessions::remember`].
    Unknown(Ticket),
}

/// Taken before a store read; a revocation since makes its answer unfit to keep.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(crate) struct Ticket(u64);

impl LiveSessions {
    pub(crate) fn recall(&self, session_id: u64, now_ms: i64) -> Recall {
        let mut inner = self.lock();
        if now_ms - inner.since_ms >= WINDOW_MS || now_ms < inner.since_ms {
            inner.known.clear();
            inner.since_ms = now_ms;
        }
        match inner.known.get(&session_id) {
            Some(&user) => Recall::Live(user),
            None => Recall::Unknown(Ticket(inner.revocations)),
        }
    }

    /// Remembers a session the store answered live, unless a revocation
    /// came since `ticket` was taken.
    pub(crate) fn remember(&self, session_id: u64, user: UserId, ticket: Ticket) {
        let mut inner = self.lock();
        if inner.revocations != ticket.0 {
            return;
        }
        if inner.known.len() >= MAX_REMEMBERED {
            inner.known.clear();
        }
        inner.known.insert(session_id, user);
    }

    /// Called once the store has the session revoked.
    pub(crate) fn forget(&self, session_id: u64) {
        let mut inner = self.lock();
        inner.known.remove(&session_id);
        inner.revocations += 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Users remembered as taking part at most (about 16 bytes each) before
/// the memory starts afresh.
pub const MAX_KNOWN_USERS: usize = 1_000_000;

/// The users this process has lately found to take part (to exist, and not
/// be deleted or being deleted): the question chat asks on every send. A
/// deletion asked through [`Accounts`](crate::Accounts) forgets its user
/// once the store has it; as with sessions, a read that began before a
/// deletion is not remembered. A "no" is never remembered: a user may
/// register, or restore their account, a moment later.
#[derive(Default)]
pub(crate) struct KnownUsers {
    inner: Mutex<Known>,
}

#[derive(Default)]
struct Known {
    users: std::collections::HashSet<UserId>,
    /// Deletions asked so far.
    deletions: u64,
}

impl KnownUsers {
    /// Whether `user` is known to take part, or the ticket for a store read.
    pub(crate) fn recall(&self, user: UserId) -> Result<(), Ticket> {
        let inner = self.lock();
        if inner.users.contains(&user) {
            Ok(())
        } else {
            Err(Ticket(inner.deletions))
        }
    }

    /// Remembers a user the store answered as taking part, unless a
    /// deletion came since `ticket` was taken.
    pub(crate) fn remember(&self, user: UserId, ticket: Ticket) {
        let mut inner = self.lock();
        if inner.deletions != ticket.0 {
            return;
        }
        if inner.users.len() >= MAX_KNOWN_USERS {
            inner.users.clear();
        }
        inner.users.insert(user);
    }

    /// Called once the store has the user's deletion asked.
    pub(crate) fn forget(&self, user: UserId) {
        let mut inner = self.lock();
        inner.users.remove(&user);
        inner.deletions += 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANN: UserId = UserId(1);

    fn ticket(live: &LiveSessions, session_id: u64, now_ms: i64) -> Ticket {
        match live.recall(session_id, now_ms) {
            Recall::Unknown(ticket) => ticket,
            known => panic!("expected an unknown session, got {known:?}"),
        }
    }

    #[test]
    fn a_session_found_live_is_answered_from_memory_until_it_is_revoked() {
        let live = LiveSessions::default();
        let t = ticket(&live, 7, 0);
        live.remember(7, ANN, t);
        assert_eq!(live.recall(7, 1), Recall::Live(ANN));

        live.forget(7);
        assert!(matches!(live.recall(7, 2), Recall::Unknown(_)));
    }

    #[test]
    fn a_read_that_began_before_a_revocation_is_not_remembered() {
        let live = LiveSessions::default();
        // The store is read (and answers live) while the session is revoked.
        let t = ticket(&live, 7, 0);
        live.forget(7);
        live.remember(7, ANN, t);
        assert!(matches!(live.recall(7, 1), Recall::Unknown(_)));
    }

    #[test]
    fn what_is_remembered_is_read_again_after_a_window() {
        let live = LiveSessions::default();
        let t = ticket(&live, 7, 0);
        live.remember(7, ANN, t);
        assert_eq!(live.recall(7, WINDOW_MS - 1), Recall::Live(ANN));
        assert!(matches!(live.recall(7, WINDOW_MS), Recall::Unknown(_)));
    }

    #[test]
    fn a_user_known_to_take_part_is_forgotten_at_their_deletion() {
        let known = KnownUsers::default();
        let ticket = known.recall(ANN).unwrap_err();
        known.remember(ANN, ticket);
        assert_eq!(known.recall(ANN), Ok(()));
        known.forget(ANN);
        assert!(known.recall(ANN).is_err());
    }

    #[test]
    fn a_read_that_began_before_a_deletion_is_not_remembered() {
        let known = KnownUsers::default();
        let ticket = known.recall(ANN).unwrap_err();
        known.forget(ANN);
        known.remember(ANN, ticket);
        assert!(known.recall(ANN).is_err());
    }
}
