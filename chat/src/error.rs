//! The outcomes of chat operations that callers branch on.

use superapp_kit::sqlite::StoreError;

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
    #[error("a conversation needs another member")]
    InvalidRecipient,
    #[error("no such conversation")]
    UnknownConversation,
    #[error("the cursor is not one this server issued")]
    InvalidCursor,
    #[error("storage failed")]
    Store(#[from] StoreError),
    #[error("a dependency failed: {0}")]
    Dependency(String),
}
