//! The wire protocol: client frames, server frames and bus messages, generated
//! from the `.proto` files beside this crate (see docs/protocol.md).
//!
//! - [`v1`]: `ClientFrame`, `ServerFrame`, events, and the bus envelope.
//! - [`ids`]: [`UserId`], [`GroupId`] and [`ConversationId`], with their wire spellings.

pub mod ids;

pub use ids::{ConversationId, GroupId, Topic, UserId};

/// Protocol version 1, WebSocket subprotocol [`SUBPROTOCOL`].
pub mod v1 {
    #![allow(clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/superapp.v1.rs"));
}

/// The WebSocket subprotocol name a client offers and the server selects.
pub const SUBPROTOCOL: &str = "superapp.v1";

pub use prost::Message;
