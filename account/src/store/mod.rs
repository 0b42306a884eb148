//! The account room's storage, in its own terms. Each table is a partition
//! key with at most a sort key, so ScyllaDB and PostgreSQL backends map onto
//! it directly: users by id, user ids by phone (the uniqueness a Scylla LWT
//! would guard), sessions by id, refresh tokens by hash; for real-name
//! verification ([`RealNameStore`]), a user's latest submission by user id,
//! the holder of an ID number by the number's keyed hash (another
//! uniqueness), and a user's recent submissions by user id and attempt.
//!
//! The social graph ([`SocialStore`]), in the same terms:
//!
//! | table | partition | sort | notes |
//! |---|---|---|---|
//! | friend_requests | recipient | sender | greeting, time sent; gone when answered, ignored after 7 days |
//! | requests_sent | sender | time sent | for the daily cap |
//! | contacts | owner | friend | remark, tags, since, a removed mark, a hidden mark, the owner's version at its last change; each friendship is two rows |
//! | contacts by version | owner | version | the change feed ("changes since V"); in ScyllaDB a table of its own |
//! | contact_heads | owner | | the list's version and its number of friends |
//! | blocks | owner | blocked | since when |
//! | block_spans | owner | (until, blocked) | past blocks with their times, at most [`crate::policy::MAX_BLOCK_SPANS`] an owner: the group messages sent during one stay out of the owner's view |
//! | privacy | user | | settings; no row is the server's defaults |
//!
//! Account security adds to `sessions` a last-active time and an index by
//! user (a user's sessions, a Scylla table of its own), and to `users`
//! the deletion's request and due times and the erasure's time; the
//! deletions due are found by due time (in ScyllaDB a table partitioned by
//! due day). Erasing reads the blocks and friend requests naming the user
//! by the other side, by indexes here (`blocks_by_blocked`,
//! `friend_requests_by_sender`), reverse tables there.
//!
//! Each write decides with [`crate::policy`] inside itself, as the group
//! rules of the chat room are.
//!
//! [`crate::conformance`] is the behaviour every backend must show.

mod sqlite;

pub use sqlite::SqliteAccountStore;
pub use superapp_kit::store::StoreError;

use superapp_kit::BoxFuture;

use crate::model::{
    Befriended, ContactChanges, ContactEdit, Decision, Erased, FoundContact, FriendRequest, Person,
    Privacy, RealNameRecord, Relation, Rotation, SessionInfo, SessionRecord, Standing, UserId,
    UserRecord, ViewFilters,
};
use crate::policy::SocialLimits;
use crate::{AccountError, SocialError};

pub trait AccountStore: Send + Sync + 'static {
    /// `Ok(false)` when the phone is taken.
    fn create_user(&self, user: UserRecord) -> BoxFuture<'_, Result<bool, StoreError>>;
    fn user_by_phone(&self, phone: &str) -> BoxFuture<'_, Result<Option<UserRecord>, StoreError>>;
    fn user(&self, id: UserId) -> BoxFuture<'_, Result<Option<UserRecord>, StoreError>>;
    /// Display names of those of `ids` that exist and take part
    /// ([`crate::policy::security::takes_part`]: not deleted, nor being
    /// deleted).
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

    // ---- Account security: each write decides with
    // [`crate::policy::security`] inside itself, and a refusal writes nothing.

    /// Where the account stands; None for no such user.
    fn standing(&self, user: UserId) -> BoxFuture<'_, Result<Option<Standing>, StoreError>>;
    /// Names of those of `ids` that exist, deleted accounts included (their
    /// name the placeholder, `deleted` set), for anyone who shows a history.
    fn people(&self, ids: Vec<UserId>) -> BoxFuture<'_, Result<Vec<Person>, StoreError>>;
    /// The user's live sessions at `now_ms` (neither revoked nor expired),
    /// the most recently active first, at most 200. A log-in and each
    /// refresh make a session active ([`AccountStore::rotate_refresh`]
    /// records the time).
    fn sessions(
        &self,
        user: UserId,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<SessionInfo>, StoreError>>;
    /// Revokes `session_id` if it is a live session of `user`; false, with
    /// nothing changed, for any other (unknown, another user's, ended).
    fn revoke_user_session(
        &self,
        user: UserId,
        session_id: u64,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<bool, StoreError>>;
    /// In one write, when `keep` is a live session of `user` (else
    /// `SessionRevoked`): the new password hash; every other session of the
    /// user revoked; `keep`'s refresh tokens replaced by `refresh_hash`, so
    /// that an earlier one answers invalid (not reused). Answers `keep` and
    /// the sessions revoked.
    fn change_password(
        &self,
        user: UserId,
        password_hash: String,
        keep: u64,
        refresh_hash: String,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<(SessionRecord, Vec<u64>), AccountError>>;
    /// Asks for the account's deletion at `now_ms`, due at `due_at_ms`
    /// ([`crate::policy::security::may_request_deletion`]), and revokes all
    /// its sessions; answers them.
    fn request_deletion(
        &self,
        user: UserId,
        now_ms: i64,
        due_at_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<u64>, AccountError>>;
    /// Withdraws the deletion ([`crate::policy::security::may_restore`]):
    /// the account is as it was.
    fn cancel_deletion(&self, user: UserId, now_ms: i64)
    -> BoxFuture<'_, Result<(), AccountError>>;
    /// Accounts whose grace period has ended by `now_ms` and that are not
    /// erased yet, the earliest due first, at most `limit`.
    fn deletions_due(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<UserId>, StoreError>>;
    /// Erases the account, when its grace period has ended
    /// ([`crate::policy::security::due_for_erasure`]), in one write: its
    /// friendships end (each friend's list gets a removal under its next
    /// version), its friend requests, blocks either way, privacy settings,
    /// real-name records, sessions and phone number go (the phone may
    /// register again), and its row keeps only the id and the placeholder
    /// name. Answers None, changing nothing, for an account not due
    /// (restored, erased already, unknown): so any number of sweeps may
    /// run at once.
    fn erase(&self, user: UserId, now_ms: i64)
    -> BoxFuture<'_, Result<Option<Erased>, StoreError>>;
}

/// What a social-graph write answers: its result, a refusal, or a store failure.
pub type Outcome<T> = BoxFuture<'static, Result<T, SocialError>>;

pub trait SocialStore: Send + Sync + 'static {
    /// How `owner` stands with `other` at `now_ms` (requests expire).
    fn relation(&self, owner: UserId, other: UserId, now_ms: i64) -> Outcome<Relation>;
    /// Sends `request` as [`crate::policy::friend_request`] decides: stored,
    /// befriending at once (the other asked first), or dropped.
    fn send_request(&self, request: FriendRequest, limits: SocialLimits) -> Outcome<Befriended>;
    /// `owner` accepts `from`'s request ([`crate::policy::accept`]); answers
    /// `Befriended::Friends`.
    fn accept(
        &self,
        owner: UserId,
        from: UserId,
        now_ms: i64,
        limits: SocialLimits,
    ) -> Outcome<Befriended>;
    /// `owner` declines `from`'s request.
    fn decline(&self, owner: UserId, from: UserId, now_ms: i64) -> Outcome<()>;
    /// Requests waiting for `owner`, newest first (at most 500).
    fn requests(&self, owner: UserId, now_ms: i64) -> Outcome<Vec<FriendRequest>>;
    /// Ends a friendship on both sides; answers (owner's, friend's) versions.
    fn remove_friend(&self, owner: UserId, friend: UserId) -> Outcome<(u64, u64)>;
    /// Changes the owner's remark, tags and hidden mark of a friend as
    /// [`crate::policy::may_edit_contact`] allows (None leaves a part as it
    /// is); answers the owner's version.
    fn set_contact(&self, owner: UserId, friend: UserId, edit: ContactEdit) -> Outcome<u64>;
    /// The owner's contact list's changes after version `since`, oldest
    /// first, at most `limit`, each as [`crate::policy::as_change`] shows it
    /// (from 0: the [`crate::policy::listed`] friends alone).
    fn contact_changes(&self, owner: UserId, since: u64, limit: u32) -> Outcome<ContactChanges>;
    /// The owner's contacts that `query` (as [`crate::policy::contact_query`]
    /// answers it) finds ([`crate::policy::contact_matches`]), by display
    /// name, at most [`crate::policy::MAX_FOUND`].
    fn search_contacts(&self, owner: UserId, query: String) -> Outcome<Vec<FoundContact>>;
    /// `owner` blocks `other` (again is no change); requests between them go.
    fn block(&self, owner: UserId, other: UserId, now_ms: i64) -> Outcome<()>;
    /// `owner` no longer blocks `other`; the block is kept as a past span
    /// ending at `now_ms`.
    fn unblock(&self, owner: UserId, other: UserId, now_ms: i64) -> Outcome<()>;
    /// What `owner`'s view of chats leaves out: their blocks, current and
    /// past (the last [`crate::policy::MAX_BLOCK_SPANS`]), and whom they hide.
    fn view_filters(&self, owner: UserId) -> Outcome<ViewFilters>;
    /// Whom `owner` blocks, most recent first (at most [`crate::policy::MAX_BLOCKS`]).
    fn blocked(&self, owner: UserId) -> Outcome<Vec<UserId>>;
    fn privacy(&self, user: UserId) -> Outcome<Privacy>;
    fn set_privacy(&self, user: UserId, privacy: Privacy) -> Outcome<()>;
    /// What decides whether `sender` may message `recipient`: how the
    /// recipient stands with the sender, and the recipient's settings; one read.
    fn message_facts(&self, recipient: UserId, sender: UserId) -> Outcome<(Relation, Privacy)>;
    /// What decides how `inviter` may bring each of `invitees` into a group:
    /// how each invitee stands with the inviter, and the invitee's settings,
    /// in the invitees' order; one read for all of them (a group may be
    /// created with thousands).
    fn addition_facts(
        &self,
        inviter: UserId,
        invitees: Vec<UserId>,
    ) -> Outcome<Vec<(Relation, Privacy)>>;
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
