//! The wallet: a double-entry ledger of real money in integer fen, with
//! top-ups and withdrawals through a payment provider, transfers in
//! one-to-one chats, and red packets in chats and groups. No rebates,
//! points or commissions: a plain, audited ledger.
//!
//! The room pattern (docs/architecture.md, "The room pattern"):
//!
//! - [`model`]: accounts, entries, transfers, packets, orders; no I/O.
//! - [`policy`]: the rules as pure functions: every command's verdict
//!   ([`policy::decide`]), limits, the red-packet split, the payment PIN.
//! - [`config`]: the `[wallet]` section of the configuration.
//! - [`error`]: [`WalletError`], the outcomes callers branch on.
//! - [`ports`]: what the room needs from others ([`People`], [`Chats`]).
//! - [`provider`]: [`PaymentProvider`], the payment-provider port, and the
//!   sandbox provider.
//! - [`service`]: [`Wallet`], the operations the edge and the jobs call.
//! - [`store`]: [`WalletStore`], the storage trait, and its backends
//!   ([`SqliteWalletStore`]).
//! - [`rate`]: the raw rate of a store, the ceiling the benchmarks set the
//!   server's figures against.
//! - [`conformance`] (tests, or the `conformance` feature): the behaviour
//!   every store backend must show.
//!
//! Invariants: every movement is one journal entry debiting one account and
//! crediting another by the same amount, so all balances sum to zero;
//! journal rows are never updated or deleted; a wallet never goes below
//! zero; a request with an idempotency key is applied at most once; a red
//! packet's shares sum to its amount; an expired packet's rest and an
//! expired transfer go back exactly once, never early.

pub mod config;
pub mod error;
pub mod model;
pub mod policy;
pub mod ports;
pub mod provider;
pub mod rate;
pub mod service;
pub mod store;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use error::WalletError;
pub use ports::{Chats, People, Person};
pub use provider::sandbox::{SandboxConfig, SandboxError, SandboxProvider};
pub use provider::{
    Callback, CallbackEvent, CallbackHeaders, CallbackRefusal, PayIn, PayInStart, PaymentProvider,
    Payout, ProviderError,
};
pub use service::Wallet;
pub use store::{SqliteWalletStore, WalletStore};
