//! The account room's storage, in its own terms. Each table is a partition
//! key with at most a sort key, so ScyllaDB and PostgreSQL backends map onto
//! it directly: users by id, user ids by phone (the uniqueness a Scylla LWT
//! would guard), sessions by id, refresh tokens by hash; for real-name
//! verification ([`RealNameStore`]), a user's latest submission by user id,
//! the holder of an ID number by the number's keyed hash (another
//! uniqueness), and a user's recent submissions by user id and attempt.
//!
//! [`crate::conformance`] is the behaviour every backend must show.

mod sqlite;

pub use sqlite::SqliteAccountStore;
pub use superapp_kit::store::StoreError;

use superapp_kit::BoxFuture;

use crate::AccountError;
use crate::model::{Decision, RealNameRecord, Rotation, SessionRecord, UserId, UserRecord};

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

/// Real-name verification's storage. Each rule that depends on what is
/// stored is applied inside the one write that acts on it, with the
/// functions of [`crate::policy::real_name`], so concurrent submissions
/// cannot both pass a check that only one may.
pub trait RealNameStore: Send + Sync + 'static {
    /// The user's latest submission, if any.
    fn real_name(&self, user: UserId) -> BoxFuture<'_, Result<Option<RealNameRecord>, StoreError>>;

    /// Records `submission` (pending, submitted at its `submitted_at_ms`)
    /// as its user's latest, in one step, checking in this order:
    /// `may_submit` on the user's current record (`AlreadyVerified`,
    /// `VerificationPending`); `submission_allowed` over the user's
    /// submissions within the window, at most `limit` (`TooManySubmissions`);
    /// then, the submission now counted, `may_claim` on the holder of its
    /// number hash (`IdNumberTaken`). A refusal of the first two writes
    /// nothing; `IdNumberTaken` writes only the count, so guessing whose
    /// number is held costs submissions.
    fn submit_real_name(
        &self,
        submission: RealNameRecord,
        limit: u32,
    ) -> BoxFuture<'_, Result<(), AccountError>>;

    /// Records `decision` on `user`'s attempt `attempt_id` at `at_ms`, if
    /// that attempt is still pending (`may_decide`); a rejection frees its
    /// number for other accounts. The record as it now is, or None when
    /// the attempt was not pending (decided already, or replaced).
    fn decide_real_name(
        &self,
        user: UserId,
        attempt_id: u64,
        decision: Decision,
        at_ms: i64,
    ) -> BoxFuture<'_, Result<Option<RealNameRecord>, StoreError>>;
}
