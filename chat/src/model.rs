//! The chat room's types: ids, messages, conversations as listed, groups and
//! their members. No I/O.

use std::collections::{HashMap, HashSet};

pub use superapp_kit::store::Fence;
pub use superapp_proto::ids::{ConversationId, GroupId, UserId};

/// Where a request came from: the connection (whose own copy of what the
/// request causes is its answer, so events skip it; 0 for none) and, on a
/// core that serves a shard under a lease, that lease's fence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Origin {
    pub connection: u64,
    pub fence: Option<Fence>,
}

/// Whom a message mentions, by name or all at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mentions {
    /// `@all`, which only the owner and admins may use.
    pub all: bool,
    pub users: Vec<UserId>,
}

impl Mentions {
    pub fn is_empty(&self) -> bool {
        !self.all && self.users.is_empty()
    }

    pub fn mentions(&self, user: UserId) -> bool {
        self.all || self.users.contains(&user)
    }
}

/// A one-to-one message to append; the store assigns `seq`.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub conversation: ConversationId,
    pub sender: UserId,
    /// The two members, written with the conversation's first message.
    pub members: [UserId; 2],
    pub client_msg_id: String,
    pub message_id: u64,
    pub server_time_ms: i64,
    /// The encoded `MessageBody`.
    pub body: Vec<u8>,
    /// The writer's lease, checked by the store in the write.
    pub fence: Option<Fence>,
    /// Kept from the recipient for good: stored and shown to the sender,
    /// never delivered to the recipient nor synced by them (they blocked
    /// the sender when it was sent).
    pub withheld: bool,
}

/// A group message to append once the sender's rights are checked.
#[derive(Debug, Clone)]
pub struct NewGroupMessage {
    pub group: GroupId,
    pub sender: UserId,
    pub client_msg_id: String,
    pub message_id: u64,
    pub server_time_ms: i64,
    pub body: Vec<u8>,
    /// As asked; the store keeps only members other than the sender.
    pub mentions: Mentions,
    /// The writer's lease, checked by the store in the write.
    pub fence: Option<Fence>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub conversation: ConversationId,
    pub seq: u64,
    pub message_id: u64,
    pub sender: UserId,
    pub server_time_ms: i64,
    pub client_msg_id: String,
    pub body: Vec<u8>,
    pub mentions: Mentions,
    /// The member this one-to-one message was withheld from.
    pub hidden_from: Option<UserId>,
}

/// The durable outcome of a send: what its ack says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub conversation: ConversationId,
    pub seq: u64,
    pub message_id: u64,
    pub server_time_ms: i64,
    /// The (sender, client_msg_id) was seen before: this is the first ack again.
    pub duplicate: bool,
    /// Of a new message: the mentions as stored.
    pub mentions: Mentions,
}

/// A group as its conversation list entry shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    pub group: GroupId,
    pub name: String,
    pub member_count: u32,
}

/// One conversation in a user's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEntry {
    pub conversation: ConversationId,
    /// The other member of a one-to-one chat; None for a group.
    pub peer: Option<UserId>,
    pub last_seq: u64,
    pub read_seq: u64,
    pub peer_read_seq: u64,
    /// Messages from others above `read_seq`.
    pub unread: u64,
    pub last_activity_ms: i64,
    pub group: Option<GroupSummary>,
    /// An unread message mentions the user or everyone.
    pub mentioned: bool,
}

/// A page of a user's conversation list as they see it, and where the next
/// page starts (None after the last). A page may hold fewer entries than
/// asked for (some were left out of the user's view) and still have a next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxPage {
    pub entries: Vec<InboxEntry>,
    pub next: Option<InboxCursor>,
}

/// Where a page of the conversation list ends: the last entry's activity
/// time and conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxCursor {
    pub last_activity_ms: i64,
    pub conversation: ConversationId,
}

/// A time in which a user blocked a sender: from `from_ms` (included) until
/// `until_ms` (excluded; `i64::MAX` while the block lasts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub from_ms: i64,
    pub until_ms: i64,
}

/// What one user's view of chats leaves out, as the social graph says
/// ([`crate::ports::Directory::view`]): group messages sent while the user
/// blocked their sender, and the one-to-one conversations of the friends
/// the user hides. Empty for most users, and then nothing is filtered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// By sender: the times the user blocked them, now and before.
    pub blocked: HashMap<UserId, Vec<Span>>,
    /// Peers whose one-to-one conversations are left out of the list.
    pub hidden: HashSet<UserId>,
}

impl View {
    pub fn is_empty(&self) -> bool {
        self.blocked.is_empty() && self.hidden.is_empty()
    }
}

/// What becomes of a one-to-one message, as the social graph decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    Delivered,
    /// Stored and shown to the sender; never delivered to the recipient.
    Withheld,
    /// `message_refused`: nothing is stored.
    Refused,
}

/// The social graph's answer for a one-to-one send
/// ([`crate::ports::Directory::send_verdict`]): what becomes of the
/// message, and whether each side hides the other (their live copies are
/// marked `hidden`, to be kept out of the conversation list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendVerdict {
    pub reach: Reach,
    pub recipient_hides: bool,
    pub sender_hides: bool,
}

impl SendVerdict {
    /// Delivered, nobody hiding anybody.
    pub const DELIVERED: Self = Self {
        reach: Reach::Delivered,
        recipient_hides: false,
        sender_hides: false,
    };
}

/// A member's standing in a group, in rank order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Member = 0,
    Admin = 1,
    Owner = 2,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }

    /// The owner and admins run the group; they are not held by mute-all,
    /// slow mode or approval of invitations.
    pub fn is_admin(self) -> bool {
        self >= Self::Admin
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub group: GroupId,
    pub name: String,
    pub avatar: String,
    pub announcement: String,
    pub owner: UserId,
    pub created_ms: i64,
    pub member_count: u32,
    pub mute_all: bool,
    pub slow_mode_secs: u32,
    pub join_approval: bool,
    pub last_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    pub user: UserId,
    pub role: Role,
    pub nickname: String,
    pub joined_ms: i64,
    pub muted_until_ms: i64,
    /// Messages with seq above this are visible to the member.
    pub joined_seq: u64,
    /// When the member last sent (0: never), for slow mode.
    pub last_sent_ms: i64,
}

/// A member as listed: the membership and the display name chat keeps for
/// the user (copied from the account room when they were added to a group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedMember {
    pub member: MemberInfo,
    pub display_name: String,
}

/// Changes to one membership, decided together and written in one write
/// ([`crate::policy::member_change`]); None leaves a part as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberChange {
    /// Admin (true) or plain member (false); the owner decides.
    pub admin: Option<bool>,
    /// Muted until this time (0 unmutes); someone who outranks the member decides.
    pub muted_until_ms: Option<i64>,
    /// The group nickname; only one's own.
    pub nickname: Option<String>,
}

/// How far one user may go with groups: the limits a store applies, with
/// [`crate::policy::room_in_groups`] and [`crate::policy::may_create_group`],
/// inside the write that adds or creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLimits {
    /// Groups one user may be a member of at once.
    pub max_groups_per_user: u32,
    /// Groups one user may create in any 24 hours (dissolved ones count).
    pub max_groups_created_per_day: u32,
}

impl Default for GroupLimits {
    fn default() -> Self {
        Self {
            max_groups_per_user: 2_000,
            max_groups_created_per_day: 50,
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewGroup {
    pub group: GroupId,
    pub name: String,
    pub avatar: String,
    pub owner: UserId,
    /// Added at once.
    pub members: Vec<UserId>,
    /// Asked instead: each gets an invitation from the owner.
    pub asked: Asked,
    pub now_ms: i64,
}

/// How the social graph lets an inviter bring someone into a group (the
/// [`Directory`](crate::Directory) answers it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addition {
    /// Added at once, without being asked.
    Direct,
    /// Sent an invitation, which they accept or decline.
    Invite,
    /// They block the inviter: answered as invited, with nothing stored or
    /// sent, so the block is not revealed.
    Drop,
}

/// Those an addition asks rather than adds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Asked {
    /// Each is sent an invitation from the inviter (refreshing one from
    /// anyone in the group), pending until `expires_ms`.
    pub users: Vec<UserId>,
    /// Answered as invited, but nothing is stored for them: they block the
    /// inviter ([`Addition::Drop`]).
    pub hidden: Vec<UserId>,
    pub expires_ms: i64,
}

/// A pending invitation into a group, as its invitee sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInvitation {
    pub group: GroupId,
    pub group_name: String,
    pub member_count: u32,
    /// Who asked last (an invitation is one per group and invitee).
    pub inviter: UserId,
    /// The inviter's display name as chat keeps it (empty if none is).
    pub inviter_name: String,
    pub invited_ms: i64,
    pub expires_ms: i64,
}

/// Changes to a group's settings; None leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct GroupUpdate {
    pub name: Option<String>,
    pub avatar: Option<String>,
    pub announcement: Option<String>,
    pub mute_all: Option<bool>,
    pub slow_mode_secs: Option<u32>,
    pub join_approval: Option<bool>,
}

/// What an invitation or a join did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Joined {
    /// Now members.
    pub added: Vec<UserId>,
    /// Waiting for an admin's approval.
    pub pending: Vec<UserId>,
    /// Asked to join: they become members (or wait for approval) when they
    /// accept. Includes those answered as invited with nothing sent
    /// ([`Asked::hidden`]).
    pub invited: Vec<UserId>,
}

/// A join waiting for an admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    pub user: UserId,
    /// The member who invited them; None when they came by a link.
    pub inviter: Option<UserId>,
    pub requested_ms: i64,
}

/// How a member left a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The member left of their own accord.
    Left,
    Removed,
}

/// What taking a user whose account is erased out of one group did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Departure {
    pub group: GroupId,
    /// The group's new owner, when the user owned it.
    pub new_owner: Option<UserId>,
    /// The user was its only member: it is dissolved.
    pub dissolved: bool,
}

/// What a stored media object is, as the media room classified it from its
/// content (not from what the uploader declared).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Image,
    Voice,
    Video,
    /// Anything else, including content of the other kinds sent as a file.
    File,
}

/// What chat needs to know of a media object a message references
/// ([`crate::ports::MediaLibrary::usable`]): its kind, checked against the
/// message's kind, and the facts the server writes into the message in
/// place of whatever the client said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaFacts {
    pub kind: MediaKind,
    /// Bytes of the stored object.
    pub size: u64,
    /// Pixels, for an image or a video (0 when unknown or not a picture).
    pub width: u32,
    pub height: u32,
}
