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

// ---- The social graph ----------------------------------------------------

/// Who may send a user one-to-one messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhoMayMessage {
    /// Only friends (the default, as in WeChat).
    Friends,
    /// Anyone who is not blocked.
    Anyone,
}

/// Who may add a user to a group without asking them first; anyone else's
/// addition becomes an invitation the user accepts or declines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhoMayAddMe {
    /// Anyone who is not blocked (as Telegram's "everybody").
    Anyone,
    /// Friends (the default, as in WeChat, where only friends pull you in).
    Friends,
    /// Nobody: everyone, friends included, invites.
    Invite,
}

/// A user's privacy settings; None is the server's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Privacy {
    pub who_may_message: Option<WhoMayMessage>,
    pub who_may_add_me: Option<WhoMayAddMe>,
}

/// A request to be friends, waiting for `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FriendRequest {
    pub from: UserId,
    pub to: UserId,
    pub greeting: String,
    pub sent_ms: i64,
}

/// One entry of a user's contact list, as its change feed carries it: a
/// friend, or (with `removed`) the mark that one is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub friend: UserId,
    /// The owner's alias for the friend.
    pub remark: String,
    /// The owner's tags for the friend, each 1 to 16 characters.
    pub tags: Vec<String>,
    pub since_ms: i64,
    pub removed: bool,
    /// The owner hides this friend ("private mode"): left out of the
    /// contact list and of the conversation list, found by exact search
    /// only. The mark is the owner's and outlives a removal; a new
    /// friendship starts unhidden.
    pub hidden: bool,
    /// The owner's contact-list version at this entry's last change.
    pub version: u64,
}

/// A change to the owner's entry for a friend; None leaves a part as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactEdit {
    pub remark: Option<String>,
    pub tags: Option<Vec<String>>,
    pub hidden: Option<bool>,
}

/// A contact found by a search, with the display name it was matched on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundContact {
    pub contact: Contact,
    pub display_name: String,
}

/// How two users stand, as one of them (`owner`) sees the other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Relation {
    pub friends: bool,
    /// The owner blocks the other.
    pub blocks: bool,
    /// The other blocks the owner.
    pub blocked_by: bool,
    /// The other has asked the owner to be friends.
    pub requested_by: bool,
    /// The owner hides the other (a hidden friend, or one hidden before the
    /// friendship ended).
    pub hides: bool,
    /// The other hides the owner.
    pub hidden_by: bool,
}

/// What becomes of a one-to-one message, as the recipient stands with the
/// sender ([`crate::policy::reach`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Stored and delivered.
    Delivered,
    /// Stored and shown to the sender as sent, never delivered to nor
    /// synced by the recipient, who blocks the sender: the sender cannot
    /// tell a block from silence.
    Withheld,
    /// Refused (`message_refused`) and stored nowhere: the recipient takes
    /// friends' messages only and the sender is not one.
    Refused,
}

/// The social graph's answer for a one-to-one send: what becomes of the
/// message, and whether each side keeps the conversation out of their
/// conversation list (their live copies are marked so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendVerdict {
    pub reach: Reach,
    pub recipient_hides: bool,
    pub sender_hides: bool,
}

/// A time during which a user blocked another: from `from_ms`, until
/// `until_ms` (None: still blocked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSpan {
    pub user: UserId,
    pub from_ms: i64,
    pub until_ms: Option<i64>,
}

/// What a user's own view of chats leaves out: group messages sent while
/// they blocked the sender (current blocks and past ones), and the
/// one-to-one conversations of the friends they hide.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewFilters {
    pub blocks: Vec<BlockSpan>,
    pub hidden: Vec<UserId>,
}

impl ViewFilters {
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty() && self.hidden.is_empty()
    }

    /// Whom the user blocks now.
    pub fn blocked_now(&self) -> impl Iterator<Item = UserId> + '_ {
        self.blocks
            .iter()
            .filter(|s| s.until_ms.is_none())
            .map(|s| s.user)
    }
}

/// What sending a friend request, or accepting one, came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Befriended {
    /// The request waits for the other.
    Requested,
    /// The other blocks the sender: nothing was stored, and the sender is
    /// answered as for `Requested`, so the block is not revealed.
    Dropped,
    /// They are friends now (an accepted request, or two crossed ones);
    /// each side's contact-list version after it.
    Friends {
        requester_version: u64,
        accepter_version: u64,
    },
}

/// A page of a contact list's changes since a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactChanges {
    pub changes: Vec<Contact>,
    /// The list's version now; a client asks again from the last change's
    /// version while `more` is set, and holds this one after.
    pub version: u64,
    pub more: bool,
}
pub mod real_name;
pub mod security;

pub use real_name::{
    Decision, RealNameRecord, RealNameState, RealNameStatus, RealNameView, Rejection,
};
pub use security::{Erased, Person, SessionInfo, Standing};
