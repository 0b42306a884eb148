//! Account security's types: where an account stands in its life, a session
//! as its owner lists it, what erasing an account changed, and a name as
//! anyone may look it up. No I/O.

use super::UserId;

/// Where an account stands. An account lives until its owner asks to delete
/// it; it is then deactivated for a grace period in which its owner may
/// restore it, and erased when the period ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Standing {
    Active,
    /// Deletion asked for at `requested_at_ms`; erased from `due_at_ms` on,
    /// restorable until then.
    Deleting {
        requested_at_ms: i64,
        due_at_ms: i64,
    },
    /// Erased at `at_ms`: what is left is the id and a placeholder name.
    Deleted {
        at_ms: i64,
    },
}

/// A live session (a device signed in) as its owner lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: u64,
    pub device_name: String,
    pub created_at_ms: i64,
    /// The last log-in or refresh of the session: a device in use refreshes
    /// at least once per access-token lifetime.
    pub last_active_at_ms: i64,
    pub expires_at_ms: i64,
}

/// What erasing an account changed in the social graph: each former friend
/// with their contact-list version after the friendship's removal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Erased {
    pub friends: Vec<(UserId, u64)>,
}

/// A user's name as anyone signed in may look it up: for an erased account
/// the placeholder [`crate::policy::security::DELETED_DISPLAY_NAME`], with
/// `deleted` set so that clients can show their own words for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub id: UserId,
    pub display_name: String,
    pub deleted: bool,
}
