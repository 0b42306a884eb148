//! What chat needs from other rooms, as small traits the binary wires.

use superapp_kit::BoxFuture;

/// Answers who exists and what they are called (the account room implements it).
pub trait Directory: Send + Sync + 'static {
    fn user_exists(&self, user_id: u64) -> BoxFuture<'_, Result<bool, String>>;
    /// Display names of those of `ids` that exist (for member lists and search).
    fn display_names(&self, ids: Vec<u64>) -> BoxFuture<'_, Result<Vec<(u64, String)>, String>>;
}
