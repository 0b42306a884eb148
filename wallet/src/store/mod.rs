//! The wallet's storage, in the room's terms, shaped as partition key + sort
//! key so that SQLite and PostgreSQL (and ScyllaDB, were money ever put
//! there) implement it alike:
//!
//! | table | partition | sort | notes |
//! |---|---|---|---|
//! | accounts | account key | | the balance, kept equal to the sum of the account's entries |
//! | journal | entry | | every movement: reason, debit, credit, amount, reference; never updated or deleted; by account and entry for history |
//! | transfers | transfer | | status, parties, amount, expiry; by expiry while pending, for the expiry job |
//! | packets | packet | | shares (drawn at sending), grabs so far, status, expiry; by expiry while open |
//! | grabs | packet | user | one row per grab: a second is refused by the key |
//! | orders | order | | top-ups and withdrawals with the provider |
//! | daily | user | day | outgoing amount and count, for the daily limits |
//! | idempotency | user | key | the fingerprint and the first result, kept at least 24 hours |
//! | pins | user | | the payment PIN's hash, wrong tries, lock |
//! | nonces | nonce | | provider callbacks seen, for replay refusal |
//! | callbacks | received | | every provider callback and what became of it (the audit trail) |
//!
//! [`WalletStore::apply`] runs a [`Command`] as [`crate::policy`] describes,
//! in one transaction with its idempotency record. [`crate::conformance`] is
//! the behaviour every backend must show.

#[cfg(feature = "postgres")]
mod postgres;
mod sqlite;

#[cfg(feature = "postgres")]
pub use postgres::PostgresWalletStore;
pub use sqlite::SqliteWalletStore;
pub use superapp_kit::store::StoreError;

use serde::{Deserialize, Serialize};
use superapp_kit::BoxFuture;

use crate::error::WalletError;
use crate::model::{
    Account, Applied, Command, DailyOut, Entry, EntryId, Fen, Grab, IdemKey, Order, OrderId,
    Packet, PacketId, PinRecord, Transfer, TransferId, UserId,
};

/// What a store operation answers: its result, a refusal, or a failure.
pub type Outcome<T> = BoxFuture<'static, Result<T, WalletError>>;

/// One command to apply.
#[derive(Debug, Clone)]
pub struct Request {
    pub command: Command,
    /// The id of the entry it writes, if it writes one.
    pub entry: EntryId,
    /// The client's idempotency key, for the requests of users.
    pub key: Option<IdemKey>,
    pub now_ms: i64,
}

/// A provider callback as received, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackLog {
    pub received_ms: i64,
    pub nonce: String,
    /// "applied", "duplicate", or the refusal's code.
    pub verdict: String,
    pub order: Option<OrderId>,
    /// The body's SHA-256, hex: the body itself may hold personal data.
    pub body_sha256: String,
}

/// What the reconciliation compares.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Audit {
    /// Every account with its stored balance and the sum of its entries
    /// (credits less debits).
    pub accounts: Vec<(Account, Fen, Fen)>,
    /// Every order with the sum of its entries by reason (for a paid
    /// pay-in, one top-up of its amount; for a settled payout, a
    /// withdrawal and a settlement).
    pub orders: Vec<(Order, Vec<(crate::model::Reason, Fen)>)>,
    /// Entries whose debit or credit account is missing from `accounts`,
    /// or whose amount is not above zero.
    pub malformed_entries: Vec<EntryId>,
}

pub trait WalletStore: Send + Sync + 'static {
    /// Applies `request.command` in one transaction: the records of
    /// [`crate::policy::needs`], the balances of [`crate::policy::accounts`],
    /// [`crate::policy::decide`], then its writes. With a key: a key seen
    /// with the same fingerprint answers the first result (`replayed`) and
    /// changes nothing; with another fingerprint,
    /// [`WalletError::IdempotencyKeyReused`]. A refusal writes nothing,
    /// not even the key (a retry after topping up may then succeed).
    /// Concurrent requests with one key apply once: the others answer the
    /// first's result.
    fn apply(&self, request: Request) -> Outcome<Applied>;

    /// The account's balance (0 when it never moved).
    fn balance(&self, account: Account) -> Outcome<Fen>;
    /// Entries that debit or credit `account`, newest first, older than
    /// `before` when given, at most `limit`.
    fn history(&self, account: Account, before: Option<EntryId>, limit: u32)
    -> Outcome<Vec<Entry>>;
    fn entry(&self, id: EntryId) -> Outcome<Option<Entry>>;
    /// What `user` sent out on `day` (None: nothing yet).
    fn daily(&self, user: UserId, day: i64) -> Outcome<Option<DailyOut>>;
    fn transfer(&self, id: TransferId) -> Outcome<Option<Transfer>>;
    /// The packet and its grabs, in grab order.
    fn packet(&self, id: PacketId) -> Outcome<Option<(Packet, Vec<Grab>)>>;
    fn order(&self, id: OrderId) -> Outcome<Option<Order>>;
    /// The order the provider knows by `provider_ref`.
    fn order_by_ref(&self, provider_ref: String) -> Outcome<Option<Order>>;
    /// Records the provider's reference of an order.
    fn set_provider_ref(&self, id: OrderId, provider: String, provider_ref: String) -> Outcome<()>;
    /// Pending transfers whose expiry is at or before `now_ms`, at most `limit`.
    fn due_transfers(&self, now_ms: i64, limit: u32) -> Outcome<Vec<TransferId>>;
    /// Open packets whose expiry is at or before `now_ms`, at most `limit`.
    fn due_packets(&self, now_ms: i64, limit: u32) -> Outcome<Vec<PacketId>>;

    fn pin(&self, user: UserId) -> Outcome<Option<PinRecord>>;
    /// Sets the PIN's record as given (a new PIN, or the wrong tries
    /// cleared after a right one).
    fn put_pin(&self, user: UserId, record: PinRecord) -> Outcome<()>;
    /// Counts a try as wrong before it is checked
    /// ([`crate::policy::pin_reserve`], decided inside the write), and
    /// answers the record after it: so concurrent guesses cannot pass the
    /// lock, however many arrive at once. A right try then clears the count
    /// with [`WalletStore::put_pin`]. Refused with [`WalletError::PinNotSet`]
    /// or [`WalletError::PinLocked`].
    fn reserve_pin_try(&self, user: UserId, now_ms: i64, lock_ms: i64) -> Outcome<PinRecord>;

    /// Records a callback nonce; false (and nothing written) when it was
    /// seen before.
    fn remember_nonce(&self, nonce: String, now_ms: i64) -> Outcome<bool>;
    fn log_callback(&self, log: CallbackLog) -> Outcome<()>;
    /// The callback log, newest first, at most `limit`.
    fn callbacks(&self, limit: u32) -> Outcome<Vec<CallbackLog>>;

    /// Deletes idempotency records and nonces older than `keep_ms` before
    /// `now_ms`; answers how many rows went.
    fn sweep(&self, now_ms: i64, keep_ms: i64) -> Outcome<u64>;
    /// Everything the reconciliation compares.
    fn audit(&self) -> Outcome<Audit>;
}

/// How a backend keeps a result for its idempotency key: JSON, so a stored
/// result is readable in an incident.
pub fn encode_applied(applied: &Applied) -> Result<String, StoreError> {
    serde_json::to_string(applied).map_err(|e| StoreError::backend("wallet", e))
}

pub fn decode_applied(stored: &str) -> Result<Applied, StoreError> {
    serde_json::from_str(stored).map_err(|e| StoreError::backend("wallet", e))
}
