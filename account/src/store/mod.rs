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
//! Profiles and discovery ([`ProfileStore`]):
//!
//! | table | partition | sort | notes |
//! |---|---|---|---|
//! | profiles | user | | avatar, signature, region, gender, handle and when it was set; no row: none set |
//! | users_by_handle | handle, lower case | | its holder: the uniqueness a Scylla LWT would guard |
//! | users_by_phone_hash | hash of the salt and the number | | its holder: what contact matching finds |
//! | contact_matches | user | hash | when the user first matched it, within the last 24 hours |
//! | phone_index | | | the fingerprint of the salt the hashes were made with |
//!
//! Each write decides with [`crate::policy`] inside itself, as the group
//! rules of the chat room are.
//!
//! People nearby ([`NearbyIndex`]) keeps no row in these files: shared
//! positions live 30 minutes, in memory in one process
//! ([`LocalNearbyIndex`]) or in Redis across the tier ([`RedisNearbyIndex`]):
//!
//! | key | partition | sort | notes |
//! |---|---|---|---|
//! | standing | user | | the shared cell and its expiry, recent moves and queries ([`crate::model::Standing`]) |
//! | positions | (one set) | position | every live shared cell's centre, searched by radius |
//! | expiries | (one set) | expiry | trimmed on every write and search |
//!
//! [`crate::conformance`] is the behaviour every backend must show.

mod nearby;
mod redis_nearby;
mod sqlite;

pub use nearby::LocalNearbyIndex;
pub use redis_nearby::RedisNearbyIndex;
pub use sqlite::SqliteAccountStore;
pub use superapp_kit::store::StoreError;

use std::collections::HashMap;

use superapp_kit::BoxFuture;

use crate::model::{
    Befriended, Cell, ContactChanges, ContactEdit, Decision, Erased, FoundContact, FriendRequest,
    Hit, Lookup, LookupFacts, NearbyFacts, NearbyStanding, Person, Privacy, ProfileChange,
    ProfileRecord, RealNameRecord, Relation, Rotation, SessionInfo, SessionRecord, Standing,
    UserId, UserRecord, ViewFilters,
};
use crate::policy::SocialLimits;
use crate::policy::nearby::NearbyLimits;
use crate::{AccountError, NearbyError, ProfileError, SocialError};

pub trait AccountStore: Send + Sync + 'static {
    /// `Ok(false)` when the phone is taken. `phone_hash` is the number's
    /// contact hash ([`crate::contact_salt::ContactSalt::hash`]), by which
    /// contact matching finds the user: kept in the same write.
    fn create_user(
        &self,
        user: UserRecord,
        phone_hash: String,
    ) -> BoxFuture<'_, Result<bool, StoreError>>;
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
    /// register again), so do its profile, handle (free for others) and
    /// contact hashes, and its row keeps only the id and the placeholder
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
    /// Presence asks the same of a user and a viewer.
    fn message_facts(&self, recipient: UserId, sender: UserId) -> Outcome<(Relation, Privacy)>;
    /// What people nearby asks of each of `others` as `viewer` sees them
    /// ([`crate::policy::nearby::may_see_nearby`]): how the viewer stands
    /// with them (`friends`, `blocks`, `blocked_by`; requests are not read)
    /// and whether their account takes part. Answered for each of `others`
    /// that exists; one read for all of them.
    fn nearby_facts(
        &self,
        viewer: UserId,
        others: Vec<UserId>,
    ) -> BoxFuture<'static, Result<HashMap<UserId, NearbyFacts>, StoreError>>;
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

/// What a profile write or lookup answers: its result, a refusal, or a store failure.
pub type ProfileOutcome<T> = BoxFuture<'static, Result<T, ProfileError>>;

/// Profiles, lookups and contact matching. Lookups answer the facts a
/// decision needs in one read; [`crate::policy::profile::sight`] decides
/// what they show. The handle's rules and the matching budget are applied
/// inside the write that acts on them.
pub trait ProfileStore: Send + Sync + 'static {
    /// The user's profile; None when there is no such user.
    fn profile(&self, user: UserId) -> ProfileOutcome<Option<ProfileRecord>>;
    /// Applies `change` to `user`'s profile at `now_ms`, all of it in one
    /// write or nothing: a new handle as
    /// [`crate::policy::profile::handle_change`] allows (`HandleTooSoon`)
    /// and held by nobody else whatever its case (`HandleTaken`), the old
    /// one freed. Answers the profile as it now is; `UnknownUser` for a
    /// user who does not exist.
    fn update_profile(
        &self,
        user: UserId,
        change: ProfileChange,
        now_ms: i64,
    ) -> ProfileOutcome<ProfileRecord>;
    /// The facts of `viewer`'s lookup of `key`, in one read: the profile
    /// of the user who holds the id, the handle (whatever its case) or the
    /// number, how that user stands with the viewer, and their settings;
    /// None when nobody holds it.
    fn lookup(&self, viewer: UserId, key: Lookup) -> ProfileOutcome<Option<LookupFacts>>;
    /// Contact matching for `viewer` at `now_ms`, in one write: the
    /// `hashes` (distinct) that `viewer` has not matched within
    /// [`crate::policy::profile::MATCH_WINDOW_MS`] are counted against
    /// `per_day` ([`crate::policy::profile::contact_match_budget`];
    /// `TooManyMatches` records nothing) and recorded; answers, for each of
    /// the hashes that is a user's, the hash and that user's facts as
    /// [`lookup`](Self::lookup) gives them.
    fn match_phone_hashes(
        &self,
        viewer: UserId,
        hashes: Vec<String>,
        per_day: u32,
        now_ms: i64,
    ) -> ProfileOutcome<Vec<(String, LookupFacts)>>;
    /// The fingerprint of the salt the index of phone hashes is complete
    /// for; None while it is being built, or before its first build.
    fn phone_index_salt(&self) -> ProfileOutcome<Option<String>>;
    /// Empties the index of phone hashes and forgets its salt, before it is
    /// built again.
    fn clear_phone_index(&self) -> ProfileOutcome<()>;
    /// A page of users by id after `after`, at most `limit`, with their
    /// numbers: what the index is built from.
    fn phones_after(&self, after: UserId, limit: u32) -> ProfileOutcome<Vec<(UserId, String)>>;
    /// Adds (hash, user) entries to the index.
    fn index_phones(&self, entries: Vec<(String, UserId)>) -> ProfileOutcome<()>;
    /// Records that the index is complete for the salt of `fingerprint`.
    fn set_phone_index_salt(&self, fingerprint: String) -> ProfileOutcome<()>;
}

/// People nearby's storage: each user's [`NearbyStanding`] (the cell they share
/// until when, their recent moves and queries) and a geo index of the live
/// cells. A standing changes only as [`crate::policy::nearby`] decides,
/// inside the one step that writes it, so concurrent shares cannot pass a
/// cap only one may; the index always holds exactly the live cells of the
/// standings. Expired positions are never answered, and are removed as
/// writes and searches meet them, never by a scan of everything.
pub trait NearbyIndex: Send + Sync + 'static {
    /// `user` shares `cell` at `now_ms` ([`crate::policy::nearby::share`]):
    /// found there until the standing's expiry. Answers the new standing.
    fn share(
        &self,
        user: UserId,
        cell: Cell,
        now_ms: i64,
        limits: NearbyLimits,
    ) -> BoxFuture<'_, Result<NearbyStanding, NearbyError>>;
    /// `user` looks at `now_ms` ([`crate::policy::nearby::query`]): the
    /// query is counted, and the standing it is centred on answered.
    fn begin_query(
        &self,
        user: UserId,
        now_ms: i64,
        limits: NearbyLimits,
    ) -> BoxFuture<'_, Result<NearbyStanding, NearbyError>>;
    /// `user` stops sharing ([`crate::policy::nearby::clear`]).
    fn clear(&self, user: UserId, now_ms: i64) -> BoxFuture<'_, Result<(), NearbyError>>;
    /// Up to `count` people whose live cell's centre is within `radius_m`
    /// of `centre`'s, nearest first (the distance between centres, then
    /// the user id); fewer only when there are no more.
    fn search(
        &self,
        centre: Cell,
        radius_m: u32,
        count: usize,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<Hit>, StoreError>>;
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
