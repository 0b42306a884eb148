//! Conversations and messages: sending with idempotent retries, per-conversation
//! sequencing, sync by ranges, read receipts, and the conversation list.
//!
//! - [`service`]: [`Chat`], the operations the gateway calls; it validates, asks
//!   the store to append, and publishes events on the bus.
//! - [`store`]: [`ChatStore`], the room's storage trait, and its SQLite backend.
//! - [`groups`]: group lifecycle, roles, moderation and invitations, as more
//!   operations of [`Chat`]; [`group_store`]: [`GroupStore`], their storage,
//!   where every rule is checked inside the transaction that acts on it.
//! - [`ports`]: what chat needs from other rooms ([`Directory`]: does a user exist).
//!
//! Sequencing: the store assigns `seq = last_seq + 1` inside the same transaction
//! that writes the message, and a conversation has one writer at a time (the
//! SQLite writer thread here; the shard owner in larger tiers). So `seq` is
//! strictly increasing, never reused, and in this tier has no gaps.

pub mod error;
pub mod group_store;
pub mod groups;
pub mod ports;
pub mod service;
pub mod store;

pub use error::ChatError;
pub use group_store::GroupStore;
pub use ports::Directory;
pub use service::{Chat, ConversationId};
pub use store::{ChatStorage, ChatStore, SqliteChatStore};
