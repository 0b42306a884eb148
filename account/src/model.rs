//! The account room's types: users, sessions, tokens. No I/O.

pub use superapp_proto::ids::UserId;

/// A user as stored, with the hash of their password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: UserId,
    pub phone: String,
    pub display_name: String,
    pub password_hash: String,
    pub created_at_ms: i64,
}

/// A session: one refresh-token family, from one log-in on one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: u64,
    pub user_id: UserId,
    pub device_name: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The old token is now spent; the new one stands in its place.
    Rotated(SessionRecord),
    /// The token was already spent: the family is revoked from now on.
    Reused { session_id: u64, user_id: UserId },
    /// Unknown, expired, or of a revoked session.
    Invalid,
}

pub struct NewAccount {
    pub phone: String,
    pub password: String,
    pub display_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub user_id: UserId,
    pub phone: String,
    pub display_name: String,
    pub created_at_ms: i64,
}

impl From<UserRecord> for Profile {
    fn from(u: UserRecord) -> Self {
        Self {
            user_id: u.id,
            phone: u.phone,
            display_name: u.display_name,
            created_at_ms: u.created_at_ms,
        }
    }
}

/// What a log-in or a refresh hands the client.
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub user_id: UserId,
    pub session_id: u64,
    pub access_token: String,
    pub access_expires_at_ms: i64,
    pub refresh_token: String,
    pub refresh_expires_at_ms: i64,
}

pub mod real_name;

pub use real_name::{
    Decision, RealNameRecord, RealNameState, RealNameStatus, RealNameView, Rejection,
};
