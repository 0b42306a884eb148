//! What the wallet needs from other rooms, as small traits the binary
//! wires: [`People`] from the account room, [`Chats`] from chat.

use superapp_kit::BoxFuture;
use superapp_proto::v1::Special;

use crate::model::{GroupId, Place, UserId};

/// What the wallet asks of a user's account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// When the account was created (new accounts have lower limits).
    pub created_ms: i64,
    pub real_name_verified: bool,
    pub display_name: String,
}

/// The account room's answers.
pub trait People: Send + Sync + 'static {
    /// The user, if they exist and take part (not deleted).
    fn person(&self, user: UserId) -> BoxFuture<'_, Result<Option<Person>, String>>;
}

/// A group as the wallet needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupFacts {
    pub members: u32,
    /// Whether the user asked about is a member.
    pub is_member: bool,
    /// Whether that member may post in the group now (not muted, not
    /// silenced by mute-all or slow mode): a red packet is their message.
    pub may_post: bool,
}

/// Chat's answers, and the cards the wallet writes into conversations.
pub trait Chats: Send + Sync + 'static {
    /// Whether `to` takes a message from `from` (the social graph decides,
    /// as for a message). A block is not a refusal: the card is then
    /// stored withheld from the blocker, so a block still looks like
    /// silence, and an unaccepted transfer returns at expiry.
    fn may_message(&self, from: UserId, to: UserId) -> BoxFuture<'_, Result<bool, String>>;
    /// The group's member count and whether `user` is a member; None when
    /// there is no such group.
    fn group(
        &self,
        group: GroupId,
        user: UserId,
    ) -> BoxFuture<'_, Result<Option<GroupFacts>, String>>;
    /// Writes `special` into the conversation of `place` as a message of
    /// `sender`, with `fallback` for clients that do not know its type.
    /// Idempotent on `key`: a repeat stores nothing.
    fn post(
        &self,
        sender: UserId,
        place: Place,
        special: Special,
        fallback: String,
        key: String,
    ) -> BoxFuture<'_, Result<(), String>>;
}
