//! What chat needs from other rooms, as small traits the binary wires.

use std::sync::Arc;

use superapp_kit::BoxFuture;

use crate::model::{SendVerdict, UserId, View};

/// Answers who exists and what they are called (the account room implements it).
pub trait Directory: Send + Sync + 'static {
    fn user_exists(&self, user: UserId) -> BoxFuture<'_, Result<bool, String>>;
    /// Display names of those of `users` that exist (for member lists and search).
    fn display_names(
        &self,
        users: Vec<UserId>,
    ) -> BoxFuture<'_, Result<Vec<(UserId, String)>, String>>;
    /// What becomes of a one-to-one message from `sender` to `recipient`
    /// (the social graph decides: whom the recipient takes messages from,
    /// blocks, hidden friends). A refusal answers the send
    /// `message_refused` and stores nothing; a withheld message is stored
    /// and acknowledged, and never reaches the recipient.
    fn send_verdict(
        &self,
        sender: UserId,
        recipient: UserId,
    ) -> BoxFuture<'_, Result<SendVerdict, String>>;
    /// What `viewer`'s view of chats leaves out (blocks with their times,
    /// hidden friends), asked for every conversation list and every pull
    /// of a group, so the answer should cost no store read in the common
    /// case. By default nothing.
    fn view(&self, viewer: UserId) -> BoxFuture<'_, Result<Arc<View>, String>> {
        let _ = viewer;
        Box::pin(async { Ok(Arc::default()) })
    }
    /// Whether `inviter` may add each of `invitees` to a group directly,
    /// without their consent: the hook where the social graph decides (only
    /// friends, say, or nobody who has blocked the inviter). A refusal
    /// answers the creation or invitation `not_allowed` and adds nobody.
    /// By default everyone may be added.
    fn may_add_directly(
        &self,
        inviter: UserId,
        invitees: &[UserId],
    ) -> BoxFuture<'_, Result<bool, String>> {
        let _ = (inviter, invitees);
        Box::pin(async { Ok(true) })
    }
}
