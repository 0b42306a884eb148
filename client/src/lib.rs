//! The client side of superapp: an async SDK for the chat server. The
//! `superapp-cli` and `superapp-load` binaries built on it live in `tools/`
//! (package `superapp-tools`), so their dependencies stay out of this crate.
//!
//! Accounts and sessions go over the JSON API; chat goes over one WebSocket per
//! device carrying protobuf frames. Push is only a hint, so a client keeps a
//! per-conversation high-water mark and pulls whatever it has not seen.
//!
//! - [`error`]: [`ClientError`], one enum for API refusals, server-side request
//!   errors and local transport/decoding failures.
//! - [`http`]: [`HttpClient`] for register, login, refresh, logout, me and
//!   WebSocket tickets, account security (password, sessions, deletion and
//!   restore, names), presence, groups and invitations into them, the social
//!   graph, profiles and contact matching ([`contact_hash`]), and people
//!   nearby, with the [`Account`], [`Tokens`], [`Ticket`], [`Presence`],
//!   [`Group`], [`GroupJoin`] and [`GroupInvitations`] bodies, and
//!   [`U64AsString`]: u64 ids travel in JSON as strings, because JavaScript
//!   numbers lose precision above 2^53.
//! - [`media`]: uploads from a file by tus in chunks that resume, signed
//!   download links, downloads into a file, and the quota's use.
//! - [`wallet`]: the balance, the payment PIN, top-ups (and the sandbox
//!   provider's checkout), withdrawals, transfers, red packets and the
//!   ledger's history; [`new_idempotency_key`] names a payment for its
//!   retries.
//! - [`ws`]: [`Connection`], a WebSocket session driven by one background task
//!   that matches responses to requests and queues pushed events.
//! - [`calls`]: calls on a [`Connection`] and TURN credentials.
//! - [`sync`]: [`SyncState`], [`catch_up`] and [`accept_live`], the rules that
//!   deliver every message once, in seq order per conversation.
//!
//! The crates a test needs to speak raw WebSocket are re-exported, so callers
//! can use [`connect_raw`](ws::connect_raw) without depending on them.

pub mod calls;
pub mod error;
pub mod http;
pub mod media;
pub mod sync;
pub mod wallet;
pub mod ws;

pub use error::{ClientError, Result};
pub use http::{
    Account, AccountDeletion, ContactMatches, ContactPage, ContactSalt, ContactsVersion,
    FriendRequestSent, FriendRequests, Group, GroupInvitation, GroupInvitations, GroupJoin,
    HttpClient, JoinResult, LocationShared, MyProfile, NearbyPeople, NearbyPerson, Presence,
    PrivacySettings, ProfileUpdate, RealName, RealNameRejection, RealNameStatus, Session, Sessions,
    Ticket, Tokens, U64AsString, UserName, UserNames, UserProfile, contact_hash,
};
pub use media::{LinkRequest, MediaFacts, MediaLink, MediaUsage, Upload, UploadStatus};
pub use sync::{Gap, SyncState, accept_live, catch_up, pull_after};
pub use wallet::{
    NewRedPacket, RedPacket, RedPacketDetails, RedPacketMode, TopUpStarted, WalletEntry,
    WalletHistory, WalletOrder, WalletSummary, WalletTransfer, new_idempotency_key,
};
pub use ws::{Connection, connect_raw, new_client_msg_id};

pub use futures_util;
pub use superapp_proto as proto;
pub use tokio_tungstenite;
