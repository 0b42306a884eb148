//! Identity: registration, log-in, tokens and sessions.
//!
//! The room pattern (docs/architecture.md, "The room pattern"):
//!
//! - [`model`]: users, sessions, token pairs.
//! - [`policy`]: what a phone number, a display name and a password must be.
//! - [`service`]: [`Accounts`], the operations the edge calls (register, log in,
//!   refresh, log out, authenticate a token, browser WebSocket tickets).
//! - [`config`]: the `[auth]` section of the configuration.
//! - [`error`]: [`AccountError`], the outcomes callers branch on.
//! - [`store`]: [`AccountStore`], the storage trait, and the SQLite backend.
//! - [`conformance`] (tests, or the `conformance` feature): the contract
//!   every store backend must meet.
//! - [`token`]: short-lived access tokens ([`token::Claims`]) that the core
//!   signs with an Ed25519 key and gateways verify with its public key alone.
//! - [`tickets`]: single-use browser tickets for the WebSocket handshake.
//! - [`live`]: the sessions lately found live, so that a WebSocket request's
//!   liveness check reads no store; a revocation forgets its session.
//! - [`password`]: argon2id with reused memory; [`throttle`]: the failed-login
//!   throttle, per account and per client address.
//!
//! Sessions are refresh-token families: each refresh rotates the token, and a
//! rotated token presented again revokes the whole family (it was stolen or
//! replayed). Logging out revokes the family and tells the gateways to close
//! its WebSockets.

pub mod config;
pub mod error;
pub mod live;
pub mod model;
pub mod password;
pub mod policy;
pub mod service;
pub mod store;
pub mod throttle;
pub mod tickets;
pub mod token;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use error::AccountError;
pub use model::{NewAccount, Profile, TokenPair};
pub use service::Accounts;
pub use store::{AccountStore, SqliteAccountStore};
