//! What chat needs from other rooms, as small traits the binary wires.

use superapp_kit::BoxFuture;

use crate::model::{Addition, UserId};

/// Answers who exists and what they are called (the account room implements it).
pub trait Directory: Send + Sync + 'static {
    /// Whether `user` exists and takes part: an account deleted, or being
    /// deleted, does not (it takes no message and joins no group).
    fn user_exists(&self, user: UserId) -> BoxFuture<'_, Result<bool, String>>;
    /// Whether `user`'s account is deleted or being deleted: asked only
    /// when [`Directory::user_exists`] said no, so that the refusal says
    /// `user_deleted` rather than that nobody is there.
    fn is_deleted(&self, user: UserId) -> BoxFuture<'_, Result<bool, String>> {
        let _ = user;
        Box::pin(async { Ok(false) })
    }
    /// Display names of those of `users` that exist and take part (for
    /// member lists and search).
    fn display_names(
        &self,
        users: Vec<UserId>,
    ) -> BoxFuture<'_, Result<Vec<(UserId, String)>, String>>;
    /// Whether `recipient` takes a one-to-one message from `sender` (the
    /// social graph decides: blocks, and whom the recipient takes messages
    /// from). A refusal answers the send `message_refused` and stores nothing.
    fn may_message(&self, sender: UserId, recipient: UserId)
    -> BoxFuture<'_, Result<bool, String>>;
    /// How `inviter` may bring each of `invitees` into a group, in their
    /// order, answered for all of them at once (a group may be created with
    /// thousands): the social graph decides whom the inviter adds directly,
    /// whom they only invite, and whose block hides them
    /// ([`Addition::Drop`]). By default everyone is added directly.
    fn group_additions(
        &self,
        inviter: UserId,
        invitees: &[UserId],
    ) -> BoxFuture<'_, Result<Vec<Addition>, String>> {
        let _ = inviter;
        let all = vec![Addition::Direct; invitees.len()];
        Box::pin(async move { Ok(all) })
    }
}
