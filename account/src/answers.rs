//! [`Answers`]: the answers of "what becomes of S's message to R?" the
//! social graph gave lately, kept so that a one-to-one send costs no store
//! read.
//!
//! Every write that could change an answer (friends made or ended, a block,
//! a setting) goes through the one process that holds the social store, and
//! forgets the answers of the users it touches, before and after it writes;
//! a read that began before such a write is not remembered (a count of
//! writes is compared before and after it). So an answer remembered is the
//! store's answer now.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::{SendVerdict, UserId};

/// Answers remembered at most; past it the memory starts afresh.
const MAX_ANSWERS: usize = 1_000_000;

#[derive(Default)]
pub struct Answers {
    /// Writes begun or ended so far.
    writes: AtomicU64,
    /// By recipient, then sender: what becomes of the sender's messages to
    /// the recipient. Keyed by recipient because a recipient's setting
    /// changes every answer about them; an answer also says whether the
    /// sender hides the recipient, so a write about either forgets it
    /// (every social write forgets both users it touches).
    known: Mutex<Known>,
}

#[derive(Default)]
struct Known {
    by_recipient: HashMap<UserId, HashMap<UserId, SendVerdict>>,
    count: usize,
}

impl Answers {
    pub fn get(&self, sender: UserId, recipient: UserId) -> Option<SendVerdict> {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.by_recipient.get(&recipient)?.get(&sender).copied()
    }

    /// The mark to pass to [`remember`](Self::remember): taken before the read.
    pub fn mark(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Keeps an answer read since `mark`, unless a write came between.
    pub fn remember(&self, mark: u64, sender: UserId, recipient: UserId, answer: SendVerdict) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        // Compared under the lock `forget` takes, so a write's forgetting
        // comes wholly before this or wholly after.
        if self.writes.load(Ordering::SeqCst) != mark {
            return;
        }
        if known.count >= MAX_ANSWERS {
            *known = Known::default();
        }
        let answers = known.by_recipient.entry(recipient).or_default();
        if answers.insert(sender, answer).is_none() {
            known.count += 1;
        }
    }

    /// Forgets every answer about `users` as recipients: a write about
    /// them begins or has ended.
    pub fn forget(&self, users: &[UserId]) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        self.writes.fetch_add(1, Ordering::SeqCst);
        for user in users {
            if let Some(gone) = known.by_recipient.remove(user) {
                known.count -= gone.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Reach;

    const ANN: UserId = UserId(1);
    const BO: UserId = UserId(2);
    const YES: SendVerdict = SendVerdict {
        reach: Reach::Delivered,
        recipient_hides: false,
        sender_hides: false,
    };

    #[test]
    fn an_answer_is_kept_until_a_write_about_its_recipient() {
        let answers = Answers::default();
        answers.remember(answers.mark(), ANN, BO, YES);
        assert_eq!(answers.get(ANN, BO), Some(YES));
        answers.forget(&[ANN]);
        assert_eq!(answers.get(ANN, BO), Some(YES), "Ann as recipient only");
        answers.forget(&[BO]);
        assert_eq!(answers.get(ANN, BO), None);
    }

    #[test]
    fn an_answer_read_across_a_write_is_not_kept() {
        let answers = Answers::default();
        let mark = answers.mark();
        answers.forget(&[UserId(9)]);
        answers.remember(mark, ANN, BO, YES);
        assert_eq!(answers.get(ANN, BO), None);
    }
}
