//! What chat needs from other rooms, as small traits the binary wires.

use superapp_kit::BoxFuture;

use crate::model::UserId;

/// Answers who exists and what they are called (the account room implements it).
pub trait Directory: Send + Sync + 'static {
    fn user_exists(&self, user: UserId) -> BoxFuture<'_, Result<bool, String>>;
    /// Display names of those of `users` that exist (for member lists and search).
    fn display_names(
        &self,
        users: Vec<UserId>,
    ) -> BoxFuture<'_, Result<Vec<(UserId, String)>, String>>;
}
