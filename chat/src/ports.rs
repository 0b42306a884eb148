//! What chat needs from other rooms, as small traits the binary wires:
//! [`Directory`] from the account room, [`MediaLibrary`] from the media room.

use std::sync::Arc;

use superapp_kit::BoxFuture;

use crate::model::{Addition, MediaFacts, SendVerdict, UserId, View};

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
    /// The display name and avatar URL of `subject` as `sender` sees them,
    /// when `sender` may share `subject`'s contact card (their own, or a
    /// friend's who does not block them: docs/privacy.md, "Contact
    /// cards"); None when they may not, or `subject` does not take part.
    /// By default nobody's card may be shared.
    fn card(
        &self,
        sender: UserId,
        subject: UserId,
    ) -> BoxFuture<'_, Result<Option<(String, String)>, String>> {
        let _ = (sender, subject);
        Box::pin(async { Ok(None) })
    }
}

/// What chat needs of the media room (the binary wires it).
pub trait MediaLibrary: Send + Sync + 'static {
    /// For each id `user` names, in order: its facts when the user may
    /// reference it (they uploaded it, or were shown a message holding it),
    /// None otherwise.
    fn usable(
        &self,
        user: UserId,
        ids: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<Option<MediaFacts>>, String>>;
    /// A stored message (`referrer`, "m:<conversation id>:<seq>")
    /// references these ids.
    fn attach(&self, ids: Vec<String>, referrer: String) -> BoxFuture<'_, Result<(), String>>;
}
