//! Identity and the social graph: registration, log-in, tokens and
//! sessions, real-name verification; friends, friend requests, blocks and
//! privacy settings.
//!
//! The room pattern (docs/architecture.md, "The room pattern"):
//!
//! - [`model`]: users, sessions, token pairs; real-name records and views.
//! - [`policy`]: what a phone number, a display name and a password must be;
//!   [`policy::real_name`]: the resident identity number (GB 11643), legal
//!   names, masking, and who may submit how often.
//! - [`service`]: [`Accounts`], the operations the edge calls (register, log in,
//!   refresh, log out, authenticate a token, browser WebSocket tickets; change
//!   the password, list and end sessions, delete and restore the account),
//!   [`RealNames`] (submit, status, and `is_verified` for other rooms), and
//!   [`Erasure`], the sweep that erases accounts whose grace period ended.
//! - [`social`]: [`Social`], the social graph's operations (friend requests,
//!   contacts, hidden friends, their change feed and search, blocks, who may
//!   message whom, and how someone may be brought into a group: added,
//!   invited, or not at all). [`answers`]: its memory of recent "what
//!   becomes of S's message to R?" answers; [`views`]: of each user's view
//!   filters (blocks with their times, hidden friends) that chat asks for.
//! - [`ports`]: [`ports::VerificationProvider`], what real-name verification
//!   needs from outside; [`sandbox`]: the sandbox provider shipped;
//!   [`ports::Departures`], what other rooms do when an account is erased.
//! - [`config`]: the `[auth]`, `[account]`, `[social]` and `[real_name]`
//!   sections of the configuration.
//! - [`error`]: [`AccountError`], the outcomes callers branch on.
//! - [`store`]: [`AccountStore`], [`SocialStore`] and [`RealNameStore`], the
//!   storage traits, and the SQLite backend.
//! - [`conformance`] (tests, or the `conformance` feature): the contract
//!   every store backend must meet.
//! - [`token`]: short-lived access tokens ([`token::Claims`]) that the core
//!   signs with an Ed25519 key and gateways verify with its public key alone.
//! - [`tickets`]: single-use browser tickets for the WebSocket handshake.
//! - [`live`]: the sessions lately found live, so that a WebSocket request's
//!   liveness check reads no store; a revocation forgets its session.
//! - [`password`]: argon2id with reused memory; [`throttle`]: the failed-login
//!   throttle, per account and per client address.
//! - [`seal`]: the real-name key: ID numbers and legal names sealed with
//!   XChaCha20-Poly1305, numbers found by a keyed hash; [`key_file`]: the
//!   owner-only key files of the data dir.
//!
//! Sessions are refresh-token families: each refresh rotates the token, and a
//! rotated token presented again revokes the whole family (it was stolen or
//! replayed). Logging out revokes the family and tells the gateways to close
//! its WebSockets; so do a password change (every other session) and a
//! deletion (every session).
//!
//! An account whose deletion is asked is deactivated at once and erased
//! after its grace period: its id stays, named by a placeholder, so that
//! its peers' history still names it; nothing else of it does.
//!
//! An ID number is never stored in the clear, logged, or answered whole: it
//! is sealed at rest, shown only masked, and its `Debug` forms are masked. A verified
//! user stays verified; one ID number verifies one account.

pub mod answers;
pub mod config;
pub mod error;
pub mod key_file;
pub mod live;
pub mod model;
pub mod password;
pub mod policy;
pub mod ports;
pub mod sandbox;
pub mod seal;
pub mod service;
pub mod social;
pub mod store;
pub mod throttle;
pub mod tickets;
pub mod token;
pub mod views;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use error::{AccountError, SocialError};
pub use model::{NewAccount, Profile, TokenPair};
pub use service::{Accounts, Erasure, RealNames};
pub use social::Social;
pub use store::{AccountStore, RealNameStore, SocialStore, SqliteAccountStore};
