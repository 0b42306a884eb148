//! Conversations and messages: sending with idempotent retries,
//! per-conversation sequencing, sync by ranges, read receipts, the
//! conversation list, and groups of up to 6,000 members with roles,
//! invitations (links, and pending invitations of those who must be asked),
//! mutes and slow mode.
//!
//! The room pattern (docs/architecture.md, "The room pattern"):
//!
//! - [`model`]: ids and types, no I/O.
//! - [`policy`]: the rules as pure functions: limits, and who in a group may
//!   do what.
//! - [`service`]: [`Chat`], the operations the edge calls; it validates,
//!   applies policy, calls the store, and publishes events on the bus.
//! - [`config`]: the `[chat]` section of the configuration.
//! - [`calls`]: voice and video call signaling ([`Calls`]), its state
//!   machine, its `[calls]` configuration and TURN credentials.
//! - [`error`]: [`ChatError`], the outcomes callers branch on.
//! - [`ports`]: what chat needs from other rooms ([`Directory`]: does a user
//!   exist, how the social graph lets an inviter bring people into a group,
//!   whose contact card a sender may share; [`MediaLibrary`]: which media a
//!   sender may reference, and what stored messages reference).
//! - [`store`]: [`ChatStore`] and [`GroupStore`], the storage traits, and the
//!   SQLite backend.
//! - [`conformance`] (tests, or the `conformance` feature): the contract
//!   every store backend must meet.
//!
//! Invariants: `seq` per conversation is strictly increasing and never
//! reused; an ack is sent only after the message is durable; a repeated
//! `(sender, client_msg_id)` in a conversation gets its first ack; a group
//! member sees messages from joining on and nothing after leaving.

pub mod calls;
pub mod config;
pub mod error;
pub mod model;
pub mod policy;
pub mod ports;
pub mod service;
pub mod store;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
#[cfg(test)]
mod test_graph;

pub use calls::{CallError, Calls};
pub use error::ChatError;
pub use ports::{Directory, MediaLibrary};
pub use service::Chat;
pub use store::{ChatStorage, ChatStore, GroupStore, SqliteChatStore};
