//! Voice and video call signaling: one-to-one calls and group calls of up
//! to nine in a mesh. The server relays invitations, answers, SDP and ICE
//! candidates between the participants' devices; media flows peer to peer
//! or through TURN, never through this server. docs/protocol.md §2.7 has the
//! frames and sequences, docs/architecture.md §24 where calls live.
//!
//! - [`model`]: a call in flight, its members, what a step does.
//! - [`policy`]: the state machine as pure rules ([`policy::Registry`]),
//!   and the record's fallback text.
//! - [`service`]: [`Calls`], the operations the edge calls: checks,
//!   a step, events on the bus, the relay, the record, the timers.
//! - [`error`]: [`CallError`], the outcomes callers branch on.
//! - [`config`]: the `[calls]` section of the configuration.
//! - [`turn`]: TURN credentials by the TURN REST API convention.
//!
//! Invariants: a user is in at most one call at a time; the first device
//! to accept wins and only it is sent the call's signals; a call ends
//! exactly once, and a one-to-one call's end writes exactly one record
//! (idempotent on `call:<id>`).

pub mod config;
pub mod error;
pub mod model;
pub mod policy;
pub mod service;
pub mod turn;

#[cfg(test)]
mod reference;

pub use config::CallsConfig;
pub use error::CallError;
pub use service::{Calls, ROUTE_KEY, TurnGrant};
