//! What chat needs from other rooms, as small traits the binary wires.

use superapp_kit::BoxFuture;

/// Answers whether a user exists (the account room implements it).
pub trait Directory: Send + Sync + 'static {
    fn user_exists(&self, user_id: u64) -> BoxFuture<'_, Result<bool, String>>;
}
