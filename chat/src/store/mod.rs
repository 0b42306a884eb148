//! The chat room's storage, in the room's terms, shaped as partition key +
//! sort key so that SQLite, ScyllaDB and PostgreSQL implement it alike:
//!
//! | table | partition | sort | notes |
//! |---|---|---|---|
//! | messages | conversation | seq | in ScyllaDB bucketed by `seq / 10_000`; a one-to-one message names the member it is withheld from, if any |
//! | sent | conversation | (sender, client_msg_id) | the idempotency record of each send |
//! | conversations | conversation | | `last_seq`, last activity |
//! | members | conversation | user | read mark, peer; in a group also role, nickname, `joined_seq`, mute, last send; in a one-to-one conversation what was withheld from the member ([`crate::policy::Withheld`]) |
//! | inbox | user | last activity | the conversation list: here a read-time sort of the user's memberships by the conversations' last activity; in ScyllaDB a table of its own |
//! | groups | conversation | | settings, owner, `member_count` (the cap is checked against it) |
//! | mentions | conversation | (user, seq) | `@all` is kept as a mention of everyone; read against the read mark for "you were mentioned" |
//! | join_requests | conversation | user | waiting for an admin when the group asks for approval |
//! | member_names | user | | the display name member lists show and searches match, copied from the account room when the user is added to a group |
//! | group_invitations | invitee | conversation | inviter, time, expiry: one pending invitation per group and invitee, refreshed by the next; ignored once expired, or once the group is dissolved or the inviter has left |
//!
//! Sequencing: a backend assigns `seq = last_seq + 1` inside the write that
//! stores the message, and a conversation has one writer at a time (the
//! SQLite writer thread here; the shard owner in larger tiers), so `seq` is
//! strictly increasing, never reused, and without gaps.
//!
//! Group operations take the acting member and decide with the rules of
//! [`crate::policy`] inside the same write that acts, so two requests can
//! never both pass a check that only one may. Their refusals are
//! [`ChatError`]s; an engine failure is [`ChatError::Store`].
//!
//! Fencing: the writes of a conversation's single writer (appends and read
//! marks) carry the writer's [`Fence`]. A backend keeps, durably, the
//! highest fencing number it has seen per shard, and refuses a write with a
//! lower one with [`StoreError::Fenced`] inside the same write (or as its
//! compare-and-set condition). An equal or higher number passes and raises
//! the mark.
//!
//! [`crate::conformance`] is the behaviour every backend must show.

mod sqlite;

pub use sqlite::SqliteChatStore;
pub use superapp_kit::store::StoreError;

use std::sync::Arc;

use superapp_kit::BoxFuture;

use crate::ChatError;
use crate::model::{
    Appended, Asked, ConversationId, Departure, Fence, GroupId, GroupInfo, GroupInvitation,
    GroupUpdate, InboxCursor, InboxPage, JoinRequest, Joined, MemberChange, MemberInfo, NewGroup,
    NewGroupMessage, NewMessage, Removal, StoredMessage, UserId, View,
};

pub trait ChatStore: Send + Sync + 'static {
    /// Appends with `seq = last_seq + 1`, or returns the first ack of a repeated
    /// (sender, client_msg_id) in the conversation. Creates the conversation on
    /// its first message. Idempotency is per conversation so that the single
    /// writer of a conversation (its shard owner) can decide it alone.
    fn append(&self, message: NewMessage) -> BoxFuture<'_, Result<Appended, StoreError>>;
    /// Messages with seq > `after_seq`, ascending, at most `limit`, each
    /// with the member it was withheld from (the caller filters them with
    /// [`crate::policy::shows`]).
    fn messages_after(
        &self,
        conversation: ConversationId,
        after_seq: u64,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<StoredMessage>, StoreError>>;
    /// A page of the user's conversations by last activity, newest first,
    /// after `cursor`, at most `limit`, as the user sees them through
    /// `view` ([`crate::policy::listed`], [`crate::policy::shows`]): those
    /// left out of the view do not appear (the page may be short and still
    /// have a next), and the last message and unread count are those the
    /// user sees. A user whose view filters nothing, and who was never
    /// withheld a message, is served from the members and conversations
    /// rows alone.
    fn inbox(
        &self,
        user: UserId,
        cursor: Option<InboxCursor>,
        limit: u32,
        view: Arc<View>,
    ) -> BoxFuture<'_, Result<InboxPage, StoreError>>;
    /// The members of a conversation, by user id; empty if it does not exist.
    fn members(
        &self,
        conversation: ConversationId,
    ) -> BoxFuture<'_, Result<Vec<UserId>, StoreError>>;
    /// Moves the user's read mark forward to `seq`, capped at the last seq,
    /// and in a one-to-one conversation at the last message not withheld
    /// from the user ([`crate::policy::last_shown`]); returns the mark after
    /// the move, or None if the user is not a member.
    fn mark_read(
        &self,
        user: UserId,
        conversation: ConversationId,
        seq: u64,
        fence: Option<Fence>,
    ) -> BoxFuture<'_, Result<Option<u64>, StoreError>>;
    /// The highest fencing number accepted for the shard (0 if none): a new
    /// lease must be taken above it.
    fn fence_mark(&self, shard: u32) -> BoxFuture<'_, Result<u64, StoreError>>;
}

/// What a group operation answers: its result, a refusal, or a store failure.
pub type Outcome<T> = BoxFuture<'static, Result<T, ChatError>>;

pub trait GroupStore: Send + Sync + 'static {
    /// Creates the group with its owner and first members, and the
    /// invitations of those it asks.
    fn create_group(&self, group: NewGroup) -> Outcome<GroupInfo>;
    /// The group, or None if it does not exist (or was dissolved).
    fn group(&self, group: GroupId) -> Outcome<Option<GroupInfo>>;
    fn member(&self, group: GroupId, user: UserId) -> Outcome<Option<MemberInfo>>;
    /// Members by user id after `after` (from the first, with None), at
    /// most `limit`, each with the display name kept for them (None when
    /// none is: members added before names were kept). With a non-empty
    /// `query` (as [`crate::policy::member_query`] answers it), only those
    /// [`crate::policy::member_matches`] finds, and those without a kept
    /// name; a search reads the group's rows in one query on a reader and
    /// matches as it reads.
    fn members_page(
        &self,
        group: GroupId,
        after: Option<UserId>,
        limit: u32,
        query: String,
    ) -> Outcome<Vec<(MemberInfo, Option<String>)>>;
    /// Keeps these users' display names for member lists and searches,
    /// replacing those kept before.
    fn remember_names(&self, names: Vec<(UserId, String)>) -> Outcome<()>;
    /// The group's members whose display names are not kept.
    fn unnamed_members(&self, group: GroupId) -> Outcome<Vec<UserId>>;
    /// The groups a user is a member of.
    fn groups_of(&self, user: UserId) -> Outcome<Vec<GroupId>>;
    /// `actor` adds `users`: they join at once, or wait for approval
    /// ([`crate::policy::admission`]); and asks `asked.users`, each of whom
    /// not yet a member gets a pending invitation (replacing one they had
    /// into this group). All in one write: a refusal stores nothing.
    /// Answers who joined, who waits, and who was invited (members left
    /// out, [`Asked::hidden`] included).
    fn invite(
        &self,
        group: GroupId,
        actor: UserId,
        users: Vec<UserId>,
        asked: Asked,
        now_ms: i64,
    ) -> Outcome<Joined>;
    /// `invitee`'s pending invitations at `now_ms`, newest first (at most
    /// 500): unexpired, into groups not dissolved, from inviters still in them.
    fn invitations(&self, invitee: UserId, now_ms: i64) -> Outcome<Vec<GroupInvitation>>;
    /// `invitee` accepts their invitation into `group`: they join as
    /// [`crate::policy::invitation_admission`] decides (at once, or waiting
    /// for approval), within the group's and their own caps (a refusal keeps
    /// the invitation). Answers the inviter and what joining did.
    fn accept_invitation(
        &self,
        group: GroupId,
        invitee: UserId,
        now_ms: i64,
    ) -> Outcome<(UserId, Joined)>;
    /// `invitee` declines their unexpired invitation into `group`.
    fn decline_invitation(&self, group: GroupId, invitee: UserId, now_ms: i64) -> Outcome<()>;
    /// Joins with an invitation link's token (directly, or pending approval).
    fn join_by_token(&self, token: String, user: UserId, now_ms: i64)
    -> Outcome<(GroupId, Joined)>;
    /// An admin approves or rejects a pending join; answers whether it joined.
    fn decide_request(
        &self,
        group: GroupId,
        actor: UserId,
        user: UserId,
        approve: bool,
        now_ms: i64,
    ) -> Outcome<bool>;
    /// Pending joins, oldest first (at most 1,000), for an admin.
    fn requests(&self, group: GroupId, actor: UserId) -> Outcome<Vec<JoinRequest>>;
    /// Removes `user`, or lets them leave when `actor == user` ([`crate::policy::removal`]).
    fn remove_member(&self, group: GroupId, actor: UserId, user: UserId) -> Outcome<Removal>;
    /// Changes a membership's role, mute and nickname in one write, all or
    /// nothing ([`crate::policy::member_change`]); answers it as changed.
    fn update_member(
        &self,
        group: GroupId,
        actor: UserId,
        user: UserId,
        change: MemberChange,
    ) -> Outcome<MemberInfo>;
    fn transfer_owner(&self, group: GroupId, actor: UserId, user: UserId) -> Outcome<()>;
    /// Admins and the owner change settings, all of `update` in one write.
    fn update_group(
        &self,
        group: GroupId,
        actor: UserId,
        update: GroupUpdate,
    ) -> Outcome<GroupInfo>;
    /// The owner dissolves the group; answers who were its members.
    fn dissolve(&self, group: GroupId, actor: UserId) -> Outcome<Vec<UserId>>;
    /// Takes `user`, whose account is being erased, out of every group, in
    /// one write: a group they own goes to [`crate::policy::successor`]
    /// (dissolved when they were alone in it); their join requests, the
    /// invitations waiting for them or sent by them, and the display name
    /// kept for them go. Answers what became of each group;
    /// nothing for a user in no group.
    fn depart(&self, user: UserId) -> Outcome<Vec<Departure>>;
    /// Admins set the group's invitation token (replacing any earlier one).
    fn set_invite_token(
        &self,
        group: GroupId,
        actor: UserId,
        token: String,
        expires_ms: i64,
    ) -> Outcome<()>;
    /// Appends a group message once [`crate::policy::may_send`] allows it;
    /// a repeated client_msg_id gets its first ack, whatever changed since.
    fn append_group(&self, message: NewGroupMessage) -> Outcome<Appended>;
}

/// Everything the chat room keeps: its conversations and its groups.
pub trait ChatStorage: ChatStore + GroupStore {}

impl<T: ChatStore + GroupStore> ChatStorage for T {}
