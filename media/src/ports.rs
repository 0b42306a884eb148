//! What the media room needs from other rooms, as small traits the binary
//! wires.

use superapp_kit::BoxFuture;

use crate::model::UserId;

/// The media ids a message references, each with its file name if the
/// message gives one; None when the viewer may not see the message.
pub type MessageMedia = Option<Vec<(String, Option<String>)>>;

/// Which media a message references, for those who may see it (the chat
/// room implements it; later posts and profiles join it).
pub trait Sight: Send + Sync + 'static {
    /// The media ids, each with its file name if the message gives one,
    /// referenced by message `seq` of `conversation_id` when `viewer` may
    /// see that message; None when they may not (or there is no such
    /// message: the answer does not say which).
    fn message_media(
        &self,
        viewer: UserId,
        conversation_id: &str,
        seq: u64,
    ) -> BoxFuture<'_, Result<MessageMedia, String>>;
    /// The media id of `owner`'s avatar when it is a media object and
    /// `viewer` is shown it (profiles implement it); None otherwise. By
    /// default no profile references media.
    fn profile_media(
        &self,
        viewer: UserId,
        owner: UserId,
    ) -> BoxFuture<'_, Result<Option<String>, String>> {
        let _ = (viewer, owner);
        Box::pin(async { Ok(None) })
    }
}

/// A [`Sight`] that sees no message: links are granted to holders only.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoSight;

impl Sight for NoSight {
    fn message_media(
        &self,
        _viewer: UserId,
        _conversation_id: &str,
        _seq: u64,
    ) -> BoxFuture<'_, Result<MessageMedia, String>> {
        Box::pin(async { Ok(None) })
    }
}
