//! Account security's rules as pure functions: what a new password must
//! be, and an account's life from deletion asked to erasure: who may sign
//! in, restore, ask again, and take part in the social graph at each step.
//! No I/O. The store calls them inside the write that acts on them.
//!
//! The life of an account:
//!
//! ```text
//! Active --ask (password)--> Deleting{due} --grace ends, the sweep--> Deleted
//!    ^                           |
//!    +-----restore (password)----+   (only while now < due)
//! ```
//!
//! From the moment deletion is asked, the account is deactivated: every
//! session ends, and nobody may message it, befriend it or add it to a
//! group. Its data stays, untouched, until the grace period ends, so that a
//! restore brings everything back; from then on the account counts as
//! deleted even before the sweep erases it.

use crate::AccountError;
use crate::model::Standing;

/// What an erased account is called wherever its name is shown, its chat
/// history with its peers above all. Clients show their own words for it
/// from the `deleted` flag that comes with it.
pub const DELETED_DISPLAY_NAME: &str = "Deleted account";

/// A new password: the rules of registration ([`super::check_rules`]), and
/// not the current one (which the caller has just proven they know).
pub fn check_new_password(current: &str, new: &str) -> Result<(), AccountError> {
    if current == new {
        return Err(AccountError::PasswordUnchanged);
    }
    super::check_rules(new)
}

/// When a deletion asked at `requested_at_ms` falls due.
pub fn deletion_due(requested_at_ms: i64, grace_ms: i64) -> i64 {
    requested_at_ms.saturating_add(grace_ms)
}

/// Whether the owner, their password checked, may sign in: an active
/// account, yes; one being deleted answers when it will be erased (its
/// owner may restore it instead); one past its grace period is deleted.
pub fn may_sign_in(standing: Standing, now_ms: i64) -> Result<(), AccountError> {
    match standing {
        Standing::Active => Ok(()),
        Standing::Deleting { due_at_ms, .. } if now_ms < due_at_ms => {
            Err(AccountError::DeletionPending { due_at_ms })
        }
        Standing::Deleting { .. } | Standing::Deleted { .. } => Err(AccountError::AccountDeleted),
    }
}

/// Whether the owner may ask for the account's deletion: only once.
pub fn may_request_deletion(standing: Standing, now_ms: i64) -> Result<(), AccountError> {
    may_sign_in(standing, now_ms)
}

/// Whether the owner may restore the account: only while its grace period
/// runs.
pub fn may_restore(standing: Standing, now_ms: i64) -> Result<(), AccountError> {
    match standing {
        Standing::Active => Err(AccountError::DeletionNotRequested),
        Standing::Deleting { due_at_ms, .. } if now_ms < due_at_ms => Ok(()),
        Standing::Deleting { .. } | Standing::Deleted { .. } => Err(AccountError::AccountDeleted),
    }
}

/// Whether the sweep erases the account now: its grace period has ended.
pub fn due_for_erasure(standing: Standing, now_ms: i64) -> bool {
    matches!(standing, Standing::Deleting { due_at_ms, .. } if due_at_ms <= now_ms)
}

/// Whether others may message the account's owner, befriend them, or add
/// them to a group: only while the account is active.
pub fn takes_part(standing: Standing) -> bool {
    standing == Standing::Active
}

/// Whether the account's name is shown as the placeholder, with its
/// `deleted` flag: once it is erased.
pub fn shown_deleted(standing: Standing) -> bool {
    matches!(standing, Standing::Deleted { .. })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// An account's life written again, plainly, as the reference the
    /// rules are checked against.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Life {
        Active,
        /// Asked at, erased from.
        Asked(i64, i64),
        Erased,
    }

    impl Life {
        fn standing(self) -> Standing {
            match self {
                Life::Active => Standing::Active,
                Life::Asked(requested_at_ms, due_at_ms) => Standing::Deleting {
                    requested_at_ms,
                    due_at_ms,
                },
                Life::Erased => Standing::Deleted { at_ms: 0 },
            }
        }

        /// The account is gone for its owner and for everyone else.
        fn gone(self, now: i64) -> bool {
            match self {
                Life::Active => false,
                Life::Asked(_, due) => now >= due,
                Life::Erased => true,
            }
        }
    }

    fn life() -> impl Strategy<Value = Life> {
        prop_oneof![
            Just(Life::Active),
            (0i64..1_000, 0i64..1_000).prop_map(|(at, grace)| Life::Asked(at, at + grace)),
            Just(Life::Erased),
        ]
    }

    fn code(r: Result<(), AccountError>) -> &'static str {
        match r {
            Ok(()) => "ok",
            Err(AccountError::DeletionPending { .. }) => "pending",
            Err(AccountError::AccountDeleted) => "deleted",
            Err(AccountError::DeletionNotRequested) => "not_requested",
            Err(_) => "other",
        }
    }

    proptest! {
        #[test]
        fn every_step_of_an_account_s_life_answers_as_the_model_says(
            life in life(), now in 0i64..2_500,
        ) {
            let standing = life.standing();
            let gone = life.gone(now);
            let asked = matches!(life, Life::Asked(..));
            let sign_in = if life == Life::Active {
                "ok"
            } else if gone {
                "deleted"
            } else {
                "pending"
            };
            prop_assert_eq!(code(may_sign_in(standing, now)), sign_in);
            prop_assert_eq!(code(may_request_deletion(standing, now)), sign_in);
            let restore = if life == Life::Active {
                "not_requested"
            } else if gone {
                "deleted"
            } else {
                "ok"
            };
            prop_assert_eq!(code(may_restore(standing, now)), restore);
            prop_assert_eq!(due_for_erasure(standing, now), asked && gone);
            prop_assert_eq!(takes_part(standing), life == Life::Active);
            prop_assert_eq!(shown_deleted(standing), life == Life::Erased);
            // Restoring and erasing never both apply.
            prop_assert!(!(may_restore(standing, now).is_ok() && due_for_erasure(standing, now)));
        }
    }

    #[test]
    fn a_pending_deletion_answers_when_it_falls_due() {
        let standing = Standing::Deleting {
            requested_at_ms: 10,
            due_at_ms: deletion_due(10, 90),
        };
        assert!(matches!(
            may_sign_in(standing, 99),
            Err(AccountError::DeletionPending { due_at_ms: 100 })
        ));
        assert!(matches!(
            may_sign_in(standing, 100),
            Err(AccountError::AccountDeleted)
        ));
        assert_eq!(deletion_due(i64::MAX - 1, 10), i64::MAX);
    }

    #[test]
    fn a_new_password_follows_the_rules_of_registration_and_is_not_the_current_one() {
        assert!(matches!(
            check_new_password("correct horse battery", "correct horse battery"),
            Err(AccountError::PasswordUnchanged)
        ));
        assert!(matches!(
            check_new_password("correct horse battery", "short"),
            Err(AccountError::PasswordTooShort)
        ));
        assert!(matches!(
            check_new_password("correct horse battery", "password"),
            Err(AccountError::PasswordTooCommon)
        ));
        assert!(check_new_password("correct horse battery", "staple of a new kind").is_ok());
    }
}
