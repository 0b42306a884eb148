//! The outcomes of chat operations that callers branch on.

use superapp_kit::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("the message has no content")]
    EmptyBody,
    #[error("text messages are at most {max} bytes")]
    BodyTooLarge { max: usize },
    #[error("client_msg_id is 1 to 64 bytes")]
    InvalidClientMsgId,
    #[error("no such user")]
    UnknownRecipient,
    /// The user's account is deleted, or being deleted: they take no
    /// message and join no group.
    #[error("this user's account is deleted")]
    UserDeleted,
    /// The recipient takes no message from the sender: they take only
    /// friends' messages, or they block the sender (the error does not say
    /// which).
    #[error("the recipient does not take messages from you")]
    MessageRefused,
    #[error("a conversation needs another member")]
    InvalidRecipient,
    #[error("no such conversation")]
    UnknownConversation,
    #[error("the cursor is not one this server issued")]
    InvalidCursor,
    #[error("no such group")]
    UnknownGroup,
    #[error("you are not a member of this group")]
    NotMember,
    #[error("your role in this group does not allow that")]
    NotAllowed,
    #[error("a group holds at most {max} members")]
    GroupFull { max: u32 },
    /// Adding would put a user (the caller, or someone added) in more
    /// groups than one may be in; nobody was added.
    #[error("a user may be in at most {max} groups")]
    TooManyGroups { max: u32 },
    /// The caller created as many groups as one may in 24 hours.
    #[error("at most {max} new groups a day")]
    TooManyGroupsCreated { max: u32, retry_after_ms: u64 },
    #[error("a group has at most {max} admins")]
    TooManyAdmins { max: u32 },
    #[error("that user is not a member of this group")]
    UnknownMember,
    #[error("you are muted in this group until {until_ms}")]
    Muted { until_ms: i64 },
    #[error("only admins may speak while the group is muted")]
    GroupMuted,
    #[error("slow mode: wait before sending again")]
    SlowMode { retry_after_ms: u64 },
    #[error("only the owner and admins may mention everyone")]
    MentionAllNotAllowed,
    #[error("a message mentions at most {max} members")]
    TooManyMentions { max: usize },
    #[error("the owner must transfer ownership before leaving (or dissolve the group)")]
    OwnerMustTransfer,
    #[error("the invitation is invalid or expired")]
    InvalidInvite,
    #[error("no such join request")]
    UnknownRequest,
    /// The caller has no pending invitation into the group: never invited,
    /// already answered, expired, or withdrawn (the group was dissolved, or
    /// the inviter is no longer in it).
    #[error("no such group invitation, or it expired or was withdrawn")]
    UnknownInvitation,
    /// A kind only the server writes (`special`) sent by a client.
    #[error("only the server writes this kind of message")]
    KindNotAllowed,
    /// A media id the sender may not reference: they did not upload it and
    /// were never shown a message holding it (or it does not exist, alike).
    #[error("you may not send that media")]
    MediaRefused,
    /// A media object of another kind than the message's place for it
    /// (an image's id naming a video, a poster that is not an image).
    #[error("the media is not of the kind the message says")]
    MediaKindMismatch,
    /// A contact card of someone the sender may not share: not themself,
    /// not a friend, or a friend who blocks them (alike).
    #[error("you may not share that contact card")]
    CardRefused,
    /// A field out of bounds; `code` names which (`invalid_group_name`, ...).
    #[error("{reason}")]
    Invalid {
        code: &'static str,
        reason: &'static str,
    },
    #[error("storage failed")]
    Store(#[from] StoreError),
    #[error("a dependency failed: {0}")]
    Dependency(String),
}
