//! [`Views`]: each user's [`ViewFilters`] (whom they block and blocked, with
//! when, and the friends they hide) read lately, kept so that a pull or a
//! conversation list costs no social-graph read.
//!
//! As with [`crate::answers`], every write that changes a user's filters
//! (a block, an unblock, hiding or unhiding, a new friendship) goes through
//! the one process that holds the social store and forgets that user's
//! filters before and after it writes; a read that a write overtook is not
//! kept. Users who filter nothing share one empty value.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::model::{UserId, ViewFilters};

/// Users whose filters are remembered at most; past it the memory starts afresh.
const MAX_VIEWS: usize = 1_000_000;

#[derive(Default)]
pub struct Views {
    /// Writes begun or ended so far.
    writes: AtomicU64,
    known: Mutex<HashMap<UserId, Arc<ViewFilters>>>,
}

/// The one value of every user who filters nothing.
fn empty() -> Arc<ViewFilters> {
    static EMPTY: OnceLock<Arc<ViewFilters>> = OnceLock::new();
    EMPTY.get_or_init(Arc::default).clone()
}

impl Views {
    pub fn get(&self, user: UserId) -> Option<Arc<ViewFilters>> {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.get(&user).cloned()
    }

    /// The mark to pass to [`remember`](Self::remember): taken before the read.
    pub fn mark(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Keeps filters read since `mark`, unless a write came between; answers
    /// them as shared.
    pub fn remember(&self, mark: u64, user: UserId, filters: ViewFilters) -> Arc<ViewFilters> {
        let filters = if filters.is_empty() {
            empty()
        } else {
            Arc::new(filters)
        };
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        // Compared under the lock `forget` takes, as in `Answers`.
        if self.writes.load(Ordering::SeqCst) == mark {
            if known.len() >= MAX_VIEWS {
                known.clear();
            }
            known.insert(user, filters.clone());
        }
        filters
    }

    /// Forgets the filters of `users`: a write about them begins or has ended.
    pub fn forget(&self, users: &[UserId]) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        self.writes.fetch_add(1, Ordering::SeqCst);
        for user in users {
            known.remove(user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANN: UserId = UserId(1);

    fn hiding(user: u64) -> ViewFilters {
        ViewFilters {
            blocks: Vec::new(),
            hidden: vec![UserId(user)],
        }
    }

    #[test]
    fn filters_are_kept_until_a_write_about_their_user() {
        let views = Views::default();
        views.remember(views.mark(), ANN, hiding(2));
        assert_eq!(views.get(ANN).as_deref(), Some(&hiding(2)));
        views.forget(&[UserId(9)]);
        assert!(views.get(ANN).is_some(), "another user's write");
        views.forget(&[ANN]);
        assert_eq!(views.get(ANN), None);
    }

    #[test]
    fn filters_read_across_a_write_are_answered_but_not_kept() {
        let views = Views::default();
        let mark = views.mark();
        views.forget(&[UserId(9)]);
        assert_eq!(*views.remember(mark, ANN, hiding(2)), hiding(2));
        assert_eq!(views.get(ANN), None);
    }

    #[test]
    fn everyone_who_filters_nothing_shares_one_value() {
        let views = Views::default();
        let a = views.remember(views.mark(), ANN, ViewFilters::default());
        let b = views.remember(views.mark(), UserId(2), ViewFilters::default());
        assert!(Arc::ptr_eq(&a, &b));
    }
}
