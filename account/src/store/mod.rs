//! The account room's storage, in its own terms. Each table is a partition
//! key with at most a sort key, so ScyllaDB and PostgreSQL backends map onto
//! it directly: users by id, user ids by phone (the uniqueness a Scylla LWT
//! would guard), sessions by id, refresh tokens by hash.
//!
//! [`crate::conformance`] is the behaviour every backend must show.

mod sqlite;

pub use sqlite::SqliteAccountStore;
pub use superapp_kit::store::StoreError;

use superapp_kit::BoxFuture;

use crate::model::{Rotation, SessionRecord, UserId, UserRecord};

pub trait AccountStore: Send + Sync + 'static {
    /// `Ok(false)` when the phone is taken.
    fn create_user(&self, user: UserRecord) -> BoxFuture<'_, Result<bool, StoreError>>;
    fn user_by_phone(&self, phone: &str) -> BoxFuture<'_, Result<Option<UserRecord>, StoreError>>;
    fn user(&self, id: UserId) -> BoxFuture<'_, Result<Option<UserRecord>, StoreError>>;
    /// Display names of those of `ids` that exist.
    fn display_names(
        &self,
        ids: Vec<UserId>,
    ) -> BoxFuture<'_, Result<Vec<(UserId, String)>, StoreError>>;
    /// Stores a new session with its first refresh token (by hash).
    fn create_session(
        &self,
        session: SessionRecord,
        refresh_hash: String,
    ) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Spends `old_hash` and issues `new_hash` in one step; two concurrent uses of
    /// one token cannot both rotate.
    fn rotate_refresh(
        &self,
        old_hash: String,
        new_hash: String,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<Rotation, StoreError>>;
    /// The session's user, when the session exists, is not revoked and not expired.
    fn active_session(
        &self,
        session_id: u64,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<Option<UserId>, StoreError>>;
    fn revoke_session(&self, session_id: u64, now_ms: i64)
    -> BoxFuture<'_, Result<(), StoreError>>;
}
