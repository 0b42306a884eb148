//! Identity: registration, log-in, tokens and sessions.
//!
//! - [`service`]: [`Accounts`], the operations the edge calls (register, log in,
//!   refresh, log out, authenticate a token, browser WebSocket tickets).
//! - [`password`]: the password rules (length, the common-password list) and argon2id.
//! - [`store`]: [`AccountStore`], the room's storage trait, and its SQLite backend.
//! - [`throttle`]: the failed-login throttle, per account and per client address.
//!
//! Sessions are refresh-token families: each refresh rotates the token, and a
//! rotated token presented again revokes the whole family (it was stolen or
//! replayed). Logging out revokes the family and tells the gateways to close
//! its WebSockets.

pub mod error;
pub mod password;
pub mod service;
pub mod store;
pub mod throttle;

pub use error::AccountError;
pub use service::{Accounts, NewAccount, Profile, TokenPair};
pub use store::{AccountStore, SqliteAccountStore};
