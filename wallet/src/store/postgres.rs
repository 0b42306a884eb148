//! The wallet's PostgreSQL backend, for the medium and large tiers: the
//! SQLite backend's tables and checks, in the schema `wallet`, on kit's
//! [`Postgres`] pool. Ids are 63-bit ([`superapp_kit::ids`]) and stored as
//! BIGINT (the cast is lossless both ways, and keeps their order); amounts
//! are BIGINT fen; account keys are their one spelling (`w:<user>`, ...).
//!
//! # Isolation and locks, per operation
//!
//! [`WalletStore::apply`] runs at READ COMMITTED with explicit row locks,
//! not at SERIALIZABLE: the hot path is many requests on the same rows (a
//! grab storm on one packet), which locks queue one behind another, where
//! serializable snapshots would fail all but one of each round and run
//! them again. Inside one transaction, in this order:
//!
//! 1. **The idempotency key is claimed first**: the key row is inserted with
//!    no result yet (`INSERT ... ON CONFLICT DO NOTHING`). A concurrent
//!    duplicate's insert waits on the key until this transaction ends:
//!    after a commit it finds the row and answers the stored result
//!    (`replayed`), so the request applies once; after a rollback (a
//!    refusal, which must not burn the key) its insert goes through and it
//!    runs the request itself. A key found with another fingerprint is
//!    [`WalletError::IdempotencyKeyReused`].
//! 2. **The records of [`policy::needs`] are read `FOR UPDATE`** (the
//!    transfer, packet or order row; the user's daily row, created at zero
//!    first so that there is a row to lock). Two grabs of one packet, or an
//!    accept racing the expiry job, queue on the record's row. A user's grab
//!    row is read after the packet's lock is held, so a second grab by the
//!    same user sees the first.
//! 3. **The balances of [`policy::accounts`] are locked in one fixed order**:
//!    one upsert creates the missing rows at zero and locks the others, row
//!    by row in the order of the keys sorted bytewise, so two commands
//!    touching the same accounts lock them in the same order and never wait
//!    for each other in a cycle.
//!    Every command locks its records (one kind of row each, besides the
//!    daily row) before any balance, so no cycle spans both either.
//! 4. [`policy::decide`], then the writes, sent together (pipelined on the
//!    connection): the journal entry, the balances, the records, and the
//!    key's result. A refusal rolls all of it back, key claim included.
//!
//! A serialization failure or deadlock, should one happen anyway, rolls
//! back and runs the whole transaction again ([`Postgres::transact`]);
//! after ten tries the answer is busy.
//!
//! The journal is append-only in the database too: a trigger refuses any
//! UPDATE or DELETE of its rows.
//!
//! Reads run in read-only REPEATABLE READ transactions ([`Postgres::view`]),
//! so a packet and its grabs, or the audit's sums, come from one snapshot.
//! `reserve_pin_try` reads the PIN's row `FOR UPDATE` before it counts the
//! try, so concurrent guesses queue and each counts. The other writes (the
//! PIN, nonces, the callback log, provider references, the sweep) are
//! single statements at READ COMMITTED: `remember_nonce` is one insert
//! whose conflict answers "seen before".
//!
//! The pool's size is `wallet.postgres_pool`; each operation holds one
//! connection for its one transaction.

use futures_util::future::try_join_all;
use superapp_kit::postgres::tokio_postgres::Row;
use superapp_kit::postgres::tokio_postgres::types::ToSql;
use superapp_kit::postgres::{Isolation, PgTxError, Postgres, Transaction};

use super::{
    Audit, CallbackLog, Outcome, Request, StoreError, WalletStore, decode_applied, encode_applied,
};
use crate::WalletError;
use crate::model::{
    Account, Applied, Balance, Command, DailyOut, Entry, EntryId, Fen, Grab, GroupId, IdemKey,
    Order, OrderId, OrderKind, OrderStatus, Packet, PacketId, PacketMode, PacketStatus, PinRecord,
    Place, Reason, Transfer, TransferId, TransferStatus, UserId,
};
use crate::policy::{self, Records};

const ENGINE: &str = "postgres";

const MIGRATIONS: &[&str] = &[r#"
CREATE SCHEMA wallet;
CREATE TABLE wallet.accounts (
    account TEXT COLLATE "C" PRIMARY KEY,
    balance BIGINT NOT NULL,
    CHECK (balance >= 0 OR account = 's:topup')
);
CREATE TABLE wallet.journal (
    id BIGINT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    reason TEXT NOT NULL,
    debit TEXT COLLATE "C" NOT NULL,
    credit TEXT COLLATE "C" NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    reference BIGINT NOT NULL,
    CHECK (debit <> credit)
);
CREATE INDEX journal_by_debit ON wallet.journal (debit, id);
CREATE INDEX journal_by_credit ON wallet.journal (credit, id);
CREATE INDEX journal_by_reference ON wallet.journal (reference);
CREATE FUNCTION wallet.journal_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'journal rows are never updated or deleted';
END
$$;
CREATE TRIGGER journal_is_append_only BEFORE UPDATE OR DELETE ON wallet.journal
    FOR EACH ROW EXECUTE FUNCTION wallet.journal_is_append_only();
CREATE TRIGGER journal_is_never_truncated BEFORE TRUNCATE ON wallet.journal
    FOR EACH STATEMENT EXECUTE FUNCTION wallet.journal_is_append_only();
CREATE TABLE wallet.transfers (
    id BIGINT PRIMARY KEY,
    from_user BIGINT NOT NULL,
    to_user BIGINT NOT NULL,
    amount BIGINT NOT NULL,
    memo TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    settled_ms BIGINT
);
CREATE INDEX transfers_pending_by_expiry ON wallet.transfers (expires_ms)
    WHERE status = 'pending';
CREATE TABLE wallet.packets (
    id BIGINT PRIMARY KEY,
    sender BIGINT NOT NULL,
    place TEXT NOT NULL,
    place_id BIGINT NOT NULL,
    mode TEXT NOT NULL,
    amount BIGINT NOT NULL,
    exclusive_to BIGINT,
    greeting TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    claimed INTEGER NOT NULL,
    claimed_amount BIGINT NOT NULL,
    status TEXT NOT NULL,
    best_user BIGINT,
    best_amount BIGINT,
    refunded BIGINT NOT NULL
);
CREATE INDEX packets_open_by_expiry ON wallet.packets (expires_ms) WHERE status = 'open';
CREATE TABLE wallet.packet_shares (
    packet BIGINT PRIMARY KEY,
    shares BIGINT[] NOT NULL
);
CREATE TABLE wallet.grabs (
    packet BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    amount BIGINT NOT NULL,
    share_index INTEGER NOT NULL,
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (packet, user_id),
    UNIQUE (packet, share_index)
);
CREATE TABLE wallet.orders (
    id BIGINT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    kind TEXT NOT NULL,
    amount BIGINT NOT NULL,
    status TEXT NOT NULL,
    provider TEXT NOT NULL,
    provider_ref TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE UNIQUE INDEX orders_by_ref ON wallet.orders (provider_ref) WHERE provider_ref <> '';
CREATE TABLE wallet.daily (
    user_id BIGINT NOT NULL,
    day BIGINT NOT NULL,
    amount BIGINT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (user_id, day)
);
CREATE TABLE wallet.idempotency (
    user_id BIGINT NOT NULL,
    idem_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    -- NULL only inside the transaction that claimed the key.
    applied TEXT,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (user_id, idem_key)
);
CREATE INDEX idempotency_by_age ON wallet.idempotency (created_ms);
CREATE TABLE wallet.pins (
    user_id BIGINT PRIMARY KEY,
    hash TEXT NOT NULL,
    failures INTEGER NOT NULL,
    locked_until_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE TABLE wallet.nonces (
    nonce TEXT PRIMARY KEY,
    seen_ms BIGINT NOT NULL
);
CREATE INDEX nonces_by_age ON wallet.nonces (seen_ms);
CREATE TABLE wallet.callbacks (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_ms BIGINT NOT NULL,
    nonce TEXT NOT NULL,
    verdict TEXT NOT NULL,
    order_id BIGINT,
    body_sha256 TEXT NOT NULL
);
CREATE INDEX callbacks_by_time ON wallet.callbacks (received_ms, id);
"#];

/// The wallet's store on PostgreSQL (see the module's documentation for
/// the isolation and locks of each operation).
#[derive(Clone, Debug)]
pub struct PostgresWalletStore {
    db: Postgres,
}

impl PostgresWalletStore {
    /// Connects to the database at `url` with a pool of at most
    /// `pool_size` connections, and applies the wallet's migrations.
    pub async fn connect(url: &str, pool_size: u32) -> Result<Self, StoreError> {
        Self::open(Postgres::connect(url, pool_size).await?).await
    }

    /// [`connect`](Self::connect) with an operation waiting at most `wait`
    /// for a free connection before it is answered as busy.
    pub async fn connect_with(
        url: &str,
        pool_size: u32,
        wait: std::time::Duration,
    ) -> Result<Self, StoreError> {
        Self::open(Postgres::connect_with(url, pool_size, wait).await?).await
    }

    /// The store on an existing pool (shared with other rooms), after
    /// applying the wallet's migrations.
    pub async fn open(db: Postgres) -> Result<Self, StoreError> {
        db.migrate("wallet", MIGRATIONS).await?;
        Ok(Self { db })
    }

    /// A read in one snapshot, as an owned future.
    fn read<T, F>(&self, read: F) -> Outcome<T>
    where
        T: Send + 'static,
        F: for<'a> Fn(&'a Transaction<'a>) -> Tx<'a, T> + Send + 'static,
    {
        self.db.look(read)
    }

    /// A write at READ COMMITTED, as an owned future.
    fn write<T, F>(&self, write: F) -> Outcome<T>
    where
        T: Send + 'static,
        F: for<'a> Fn(&'a Transaction<'a>) -> Tx<'a, T> + Send + 'static,
    {
        self.db.act(Isolation::ReadCommitted, write)
    }
}

/// What work in a transaction answers.
type Tx<'a, T> = superapp_kit::postgres::TxFuture<'a, T, WalletError>;
type TxResult<T> = Result<T, PgTxError<WalletError>>;

/// A stored value this code cannot read back: the transaction fails.
fn corrupt(what: &str) -> PgTxError<WalletError> {
    PgTxError::Abort(WalletError::Store(StoreError::backend(
        ENGINE,
        format!("unreadable {what} in the wallet's tables"),
    )))
}

fn store_error(e: StoreError) -> PgTxError<WalletError> {
    PgTxError::Abort(WalletError::Store(e))
}

/// An id or user as BIGINT: ids are below 2^63 (kit's ids), and the cast
/// is lossless both ways for any value.
fn db(id: u64) -> i64 {
    id as i64
}

fn id(value: i64) -> u64 {
    value as u64
}

fn count(value: i32) -> TxResult<u32> {
    u32::try_from(value).map_err(|_| corrupt("count"))
}

fn count_db(value: u32) -> TxResult<i32> {
    i32::try_from(value).map_err(|_| corrupt("count"))
}

fn account(key: &str) -> TxResult<Account> {
    key.parse().map_err(|_| corrupt("account key"))
}

fn reason(name: &str) -> TxResult<Reason> {
    name.parse().map_err(|_| corrupt("reason"))
}

fn transfer_status(name: &str) -> TxResult<TransferStatus> {
    [
        TransferStatus::Pending,
        TransferStatus::Accepted,
        TransferStatus::Declined,
        TransferStatus::Expired,
    ]
    .into_iter()
    .find(|s| s.as_str() == name)
    .ok_or_else(|| corrupt("transfer status"))
}

fn packet_mode(name: &str) -> TxResult<PacketMode> {
    [PacketMode::Lucky, PacketMode::Equal, PacketMode::Exclusive]
        .into_iter()
        .find(|m| m.as_str() == name)
        .ok_or_else(|| corrupt("packet mode"))
}

fn packet_status(name: &str) -> TxResult<PacketStatus> {
    [
        PacketStatus::Open,
        PacketStatus::Finished,
        PacketStatus::Refunded,
    ]
    .into_iter()
    .find(|s| s.as_str() == name)
    .ok_or_else(|| corrupt("packet status"))
}

fn order_kind_str(kind: OrderKind) -> &'static str {
    match kind {
        OrderKind::PayIn => "pay_in",
        OrderKind::Payout => "payout",
    }
}

fn order_kind(name: &str) -> TxResult<OrderKind> {
    [OrderKind::PayIn, OrderKind::Payout]
        .into_iter()
        .find(|k| order_kind_str(*k) == name)
        .ok_or_else(|| corrupt("order kind"))
}

fn order_status(name: &str) -> TxResult<OrderStatus> {
    [
        OrderStatus::Open,
        OrderStatus::Paid,
        OrderStatus::Failed,
        OrderStatus::Settled,
        OrderStatus::Reversed,
    ]
    .into_iter()
    .find(|s| s.as_str() == name)
    .ok_or_else(|| corrupt("order status"))
}

// Column lists are macros, so that every statement is one literal
// (`concat!`), as in the SQLite backend: no statement's text is formatted
// on each call only to be found in the connection's statement cache.
macro_rules! entry_columns {
    () => {
        "id, at_ms, reason, debit, credit, amount, reference"
    };
}

fn entry_from(row: &Row) -> TxResult<Entry> {
    Ok(Entry {
        id: EntryId(id(row.try_get(0)?)),
        at_ms: row.try_get(1)?,
        reason: reason(row.try_get(2)?)?,
        debit: account(row.try_get(3)?)?,
        credit: account(row.try_get(4)?)?,
        amount: row.try_get(5)?,
        reference: id(row.try_get(6)?),
    })
}

macro_rules! transfer_columns {
    () => {
        "id, from_user, to_user, amount, memo, status, created_ms, expires_ms, settled_ms"
    };
}

fn transfer_from(row: &Row) -> TxResult<Transfer> {
    Ok(Transfer {
        id: TransferId(id(row.try_get(0)?)),
        from: UserId(id(row.try_get(1)?)),
        to: UserId(id(row.try_get(2)?)),
        amount: row.try_get(3)?,
        memo: row.try_get(4)?,
        status: transfer_status(row.try_get(5)?)?,
        created_ms: row.try_get(6)?,
        expires_ms: row.try_get(7)?,
        settled_ms: row.try_get(8)?,
    })
}

macro_rules! packet_columns {
    () => {
        "p.id, p.sender, p.place, p.place_id, p.mode, p.amount, \
     s.shares, p.exclusive_to, p.greeting, p.created_ms, p.expires_ms, p.claimed, \
     p.claimed_amount, p.status, p.best_user, p.best_amount, p.refunded"
    };
}
/// The packets and their shares, as `packet_columns!` names them.
macro_rules! packets {
    () => {
        "wallet.packets AS p JOIN wallet.packet_shares AS s ON s.packet = p.id"
    };
}

fn packet_from(row: &Row) -> TxResult<Packet> {
    let place_id = id(row.try_get(3)?);
    let place = match row.try_get::<_, &str>(2)? {
        "direct" => Place::Direct(UserId(place_id)),
        "group" => Place::Group(GroupId(place_id)),
        _ => return Err(corrupt("packet place")),
    };
    let best_user: Option<i64> = row.try_get(14)?;
    let best_amount: Option<Fen> = row.try_get(15)?;
    Ok(Packet {
        id: PacketId(id(row.try_get(0)?)),
        sender: UserId(id(row.try_get(1)?)),
        place,
        mode: packet_mode(row.try_get(4)?)?,
        amount: row.try_get(5)?,
        shares: row.try_get(6)?,
        exclusive_to: row.try_get::<_, Option<i64>>(7)?.map(|u| UserId(id(u))),
        greeting: row.try_get(8)?,
        created_ms: row.try_get(9)?,
        expires_ms: row.try_get(10)?,
        claimed: count(row.try_get(11)?)?,
        claimed_amount: row.try_get(12)?,
        status: packet_status(row.try_get(13)?)?,
        best: best_user.zip(best_amount).map(|(u, a)| (UserId(id(u)), a)),
        refunded: row.try_get(16)?,
    })
}

fn place_db(place: Place) -> (&'static str, i64) {
    match place {
        Place::Direct(user) => ("direct", db(user.0)),
        Place::Group(group) => ("group", db(group.0)),
    }
}

macro_rules! grab_columns {
    () => {
        "packet, user_id, amount, share_index, at_ms"
    };
}

fn grab_from(row: &Row) -> TxResult<Grab> {
    Ok(Grab {
        packet: PacketId(id(row.try_get(0)?)),
        user: UserId(id(row.try_get(1)?)),
        amount: row.try_get(2)?,
        index: count(row.try_get(3)?)?,
        at_ms: row.try_get(4)?,
    })
}

macro_rules! order_columns {
    () => {
        "id, user_id, kind, amount, status, provider, provider_ref, created_ms, updated_ms"
    };
}

fn order_from(row: &Row) -> TxResult<Order> {
    Ok(Order {
        id: OrderId(id(row.try_get(0)?)),
        user: UserId(id(row.try_get(1)?)),
        kind: order_kind(row.try_get(2)?)?,
        amount: row.try_get(3)?,
        status: order_status(row.try_get(4)?)?,
        provider: row.try_get(5)?,
        provider_ref: row.try_get(6)?,
        created_ms: row.try_get(7)?,
        updated_ms: row.try_get(8)?,
    })
}

/// Runs one statement, prepared once per connection.
async fn execute(tx: &Transaction<'_>, sql: &str, params: &[&(dyn ToSql + Sync)]) -> TxResult<u64> {
    let statement = tx.prepare_cached(sql).await?;
    Ok(tx.execute(&statement, params).await?)
}

async fn query(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> TxResult<Vec<Row>> {
    let statement = tx.prepare_cached(sql).await?;
    Ok(tx.query(&statement, params).await?)
}

async fn query_opt(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> TxResult<Option<Row>> {
    let statement = tx.prepare_cached(sql).await?;
    Ok(tx.query_opt(&statement, params).await?)
}

/// Times a claim of a key is tried when the row it conflicted with is gone
/// before it could be read (swept in between).
const CLAIM_TRIES: usize = 3;

/// Claims `key` for this transaction (step 1 of `apply`): None when this
/// transaction now holds it; the stored result when a request with the key
/// committed before.
async fn claim(tx: &Transaction<'_>, key: &IdemKey, now_ms: i64) -> TxResult<Option<Applied>> {
    let user = db(key.user.0);
    for _ in 0..CLAIM_TRIES {
        let claimed = execute(
            tx,
            "INSERT INTO wallet.idempotency (user_id, idem_key, fingerprint, applied, created_ms)
             VALUES ($1, $2, $3, NULL, $4) ON CONFLICT DO NOTHING",
            &[&user, &key.key, &key.fingerprint, &now_ms],
        )
        .await?;
        if claimed == 1 {
            return Ok(None);
        }
        // A new statement sees what committed while the insert waited.
        let Some(row) = query_opt(
            tx,
            "SELECT fingerprint, applied FROM wallet.idempotency
             WHERE user_id = $1 AND idem_key = $2",
            &[&user, &key.key],
        )
        .await?
        else {
            continue;
        };
        if row.try_get::<_, &str>(0)? != key.fingerprint {
            return Err(PgTxError::Abort(WalletError::IdempotencyKeyReused));
        }
        let stored: Option<&str> = row.try_get(1)?;
        let mut applied = decode_applied(stored.ok_or_else(|| corrupt("idempotency record"))?)
            .map_err(store_error)?;
        applied.replayed = true;
        return Ok(Some(applied));
    }
    Err(store_error(StoreError::Busy))
}

/// Step 2 of `apply`: the records the command names, locked.
async fn records(tx: &Transaction<'_>, command: &Command) -> TxResult<Records> {
    let needs = policy::needs(command);
    let mut records = Records::default();
    if let Some(transfer) = needs.transfer {
        let sql = concat!(
            "SELECT ",
            transfer_columns!(),
            " FROM wallet.transfers WHERE id = $1 FOR UPDATE"
        );
        if let Some(row) = query_opt(tx, sql, &[&db(transfer.0)]).await? {
            records.transfer = Some(transfer_from(&row)?);
        }
    }
    if let Some(packet) = needs.packet {
        let sql = concat!(
            "SELECT ",
            packet_columns!(),
            " FROM ",
            packets!(),
            " WHERE p.id = $1 FOR UPDATE OF p"
        );
        if let Some(row) = query_opt(tx, sql, &[&db(packet.0)]).await? {
            records.packet = Some(packet_from(&row)?);
        }
    }
    if let Some((packet, user)) = needs.grab {
        // After the packet's lock: every grab of the packet holds it.
        let sql = concat!(
            "SELECT ",
            grab_columns!(),
            " FROM wallet.grabs WHERE packet = $1 AND user_id = $2"
        );
        if let Some(row) = query_opt(tx, sql, &[&db(packet.0), &db(user.0)]).await? {
            records.grab = Some(grab_from(&row)?);
        }
    }
    if let Some(order) = needs.order {
        let sql = concat!(
            "SELECT ",
            order_columns!(),
            " FROM wallet.orders WHERE id = $1 FOR UPDATE"
        );
        if let Some(row) = query_opt(tx, sql, &[&db(order.0)]).await? {
            records.order = Some(order_from(&row)?);
        }
    }
    if let Some((user, day)) = needs.daily {
        // A row to lock even on the user's first payment of the day: two
        // first payments then queue here instead of both reading nothing.
        // A refusal rolls the zero row back with the rest.
        execute(
            tx,
            "INSERT INTO wallet.daily (user_id, day, amount, count) VALUES ($1, $2, 0, 0)
             ON CONFLICT DO NOTHING",
            &[&db(user.0), &day],
        )
        .await?;
        let row = query_opt(
            tx,
            "SELECT amount, count FROM wallet.daily WHERE user_id = $1 AND day = $2 FOR UPDATE",
            &[&db(user.0), &day],
        )
        .await?
        .ok_or_else(|| corrupt("daily row"))?;
        let (amount, count) = (row.try_get::<_, Fen>(0)?, count(row.try_get(1)?)?);
        records.daily = (count > 0 || amount > 0).then_some(DailyOut {
            user,
            day,
            amount,
            count,
        });
    }
    Ok(records)
}

/// Step 3 of `apply`: the balances of `accounts`, locked in bytewise order
/// of their keys, created at zero when missing.
async fn balances(tx: &Transaction<'_>, accounts: &[Account]) -> TxResult<Vec<Balance>> {
    if accounts.is_empty() {
        return Ok(Vec::new());
    }
    let mut keys: Vec<String> = accounts.iter().map(Account::to_string).collect();
    keys.sort();
    // One statement creates the missing rows at zero and locks the others
    // (an upsert locks the row it updates, here to its own balance), row by
    // row in the array's order, and answers every balance.
    let rows = query(
        tx,
        "INSERT INTO wallet.accounts AS a (account, balance)
         SELECT key, 0 FROM unnest($1::text[]) WITH ORDINALITY AS k(key, n) ORDER BY n
         ON CONFLICT (account) DO UPDATE SET balance = a.balance
         RETURNING a.account, a.balance",
        &[&keys],
    )
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Balance {
                account: account(row.try_get(0)?)?,
                balance: row.try_get(1)?,
            })
        })
        .collect()
}

/// Step 4 of `apply`: everything `applied` says to write, and the key's
/// result, sent together; each write owns its parameters.
async fn write(tx: &Transaction<'_>, request: &Request, applied: &Applied) -> TxResult<()> {
    let mut writes: Vec<superapp_kit::BoxFuture<'_, TxResult<u64>>> = Vec::new();
    if let Some(e) = applied.entry.clone() {
        writes.push(Box::pin(async move {
            execute(
                tx,
                "INSERT INTO wallet.journal (id, at_ms, reason, debit, credit, amount, reference)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &db(e.id.0),
                    &e.at_ms,
                    &e.reason.as_str(),
                    &e.debit.to_string(),
                    &e.credit.to_string(),
                    &e.amount,
                    &db(e.reference),
                ],
            )
            .await
        }));
    }
    if !applied.balances.is_empty() {
        let keys: Vec<String> = applied
            .balances
            .iter()
            .map(|b| b.account.to_string())
            .collect();
        let amounts: Vec<Fen> = applied.balances.iter().map(|b| b.balance).collect();
        writes.push(Box::pin(async move {
            execute(
                tx,
                "UPDATE wallet.accounts AS a SET balance = v.balance
                 FROM unnest($1::text[], $2::bigint[]) AS v(account, balance)
                 WHERE a.account = v.account",
                &[&keys, &amounts],
            )
            .await
        }));
    }
    if let Some(t) = applied.transfer.clone() {
        writes.push(Box::pin(async move {
            execute(
                tx,
                "INSERT INTO wallet.transfers
                     (id, from_user, to_user, amount, memo, status, created_ms, expires_ms, settled_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status,
                     settled_ms = EXCLUDED.settled_ms",
                &[
                    &db(t.id.0),
                    &db(t.from.0),
                    &db(t.to.0),
                    &t.amount,
                    &t.memo,
                    &t.status.as_str(),
                    &t.created_ms,
                    &t.expires_ms,
                    &t.settled_ms,
                ],
            )
            .await
        }));
    }
    if let Some(p) = applied.packet.clone() {
        let claimed = count_db(p.claimed)?;
        writes.push(Box::pin(async move {
            let (place_kind, place_id) = place_db(p.place);
            execute(
                tx,
                "INSERT INTO wallet.packets
                     (id, sender, place, place_id, mode, amount, exclusive_to, greeting,
                      created_ms, expires_ms, claimed, claimed_amount, status, best_user,
                      best_amount, refunded)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
                 ON CONFLICT (id) DO UPDATE SET claimed = EXCLUDED.claimed,
                     claimed_amount = EXCLUDED.claimed_amount, status = EXCLUDED.status,
                     best_user = EXCLUDED.best_user, best_amount = EXCLUDED.best_amount,
                     refunded = EXCLUDED.refunded",
                &[
                    &db(p.id.0),
                    &db(p.sender.0),
                    &place_kind,
                    &place_id,
                    &p.mode.as_str(),
                    &p.amount,
                    &p.exclusive_to.map(|u| db(u.0)),
                    &p.greeting,
                    &p.created_ms,
                    &p.expires_ms,
                    &claimed,
                    &p.claimed_amount,
                    &p.status.as_str(),
                    &p.best.map(|(u, _)| db(u.0)),
                    &p.best.map(|(_, a)| a),
                    &p.refunded,
                ],
            )
            .await
        }));
    }
    // Written once, with the packet: a grab updates the small packet row.
    if let (Command::SendPacket { .. }, Some(p)) = (&request.command, applied.packet.clone()) {
        writes.push(Box::pin(async move {
            execute(
                tx,
                "INSERT INTO wallet.packet_shares (packet, shares) VALUES ($1, $2)",
                &[&db(p.id.0), &p.shares],
            )
            .await
        }));
    }
    if let Some(g) = applied.grab.clone() {
        let index = count_db(g.index)?;
        writes.push(Box::pin(async move {
            execute(
                tx,
                "INSERT INTO wallet.grabs (packet, user_id, amount, share_index, at_ms)
                 VALUES ($1, $2, $3, $4, $5)",
                &[&db(g.packet.0), &db(g.user.0), &g.amount, &index, &g.at_ms],
            )
            .await
        }));
    }
    if let Some(o) = applied.order.clone() {
        writes.push(Box::pin(async move {
            execute(
                tx,
                "INSERT INTO wallet.orders
                     (id, user_id, kind, amount, status, provider, provider_ref, created_ms,
                      updated_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status,
                     updated_ms = EXCLUDED.updated_ms",
                &[
                    &db(o.id.0),
                    &db(o.user.0),
                    &order_kind_str(o.kind),
                    &o.amount,
                    &o.status.as_str(),
                    &o.provider,
                    &o.provider_ref,
                    &o.created_ms,
                    &o.updated_ms,
                ],
            )
            .await
        }));
    }
    if let Some(d) = applied.daily {
        let daily_count = count_db(d.count)?;
        writes.push(Box::pin(async move {
            execute(
                tx,
                "INSERT INTO wallet.daily (user_id, day, amount, count) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (user_id, day) DO UPDATE SET amount = EXCLUDED.amount,
                     count = EXCLUDED.count",
                &[&db(d.user.0), &d.day, &d.amount, &daily_count],
            )
            .await
        }));
    }
    if let Some(key) = request.key.clone() {
        let stored = encode_applied(applied).map_err(store_error)?;
        writes.push(Box::pin(async move {
            execute(
                tx,
                "UPDATE wallet.idempotency SET applied = $3 WHERE user_id = $1 AND idem_key = $2",
                &[&db(key.user.0), &key.key, &stored],
            )
            .await
        }));
    }
    try_join_all(writes).await?;
    Ok(())
}

/// [`WalletStore::apply`] inside its transaction.
async fn apply(tx: &Transaction<'_>, request: &Request) -> TxResult<Applied> {
    if let Some(key) = &request.key
        && let Some(replayed) = claim(tx, key, request.now_ms).await?
    {
        return Ok(replayed);
    }
    let records = records(tx, &request.command).await?;
    let accounts = policy::accounts(&request.command, &records);
    let balances = balances(tx, &accounts).await?;
    let applied = policy::decide(
        &request.command,
        &records,
        &balances,
        request.entry,
        request.now_ms,
    )
    .map_err(PgTxError::Abort)?;
    write(tx, request, &applied).await?;
    Ok(applied)
}

impl WalletStore for PostgresWalletStore {
    fn apply(&self, request: Request) -> Outcome<Applied> {
        self.db.act(Isolation::ReadCommitted, move |tx| {
            let request = request.clone();
            Box::pin(async move { apply(tx, &request).await })
        })
    }

    fn balance(&self, account: Account) -> Outcome<Fen> {
        let key = account.to_string();
        self.read(move |tx| {
            let key = key.clone();
            Box::pin(async move {
                let row = query_opt(
                    tx,
                    "SELECT balance FROM wallet.accounts WHERE account = $1",
                    &[&key],
                )
                .await?;
                Ok(row.map(|r| r.try_get(0)).transpose()?.unwrap_or(0))
            })
        })
    }

    fn history(
        &self,
        account: Account,
        before: Option<EntryId>,
        limit: u32,
    ) -> Outcome<Vec<Entry>> {
        let key = account.to_string();
        let before = before.map_or(i64::MAX, |e| db(e.0));
        let limit = i64::from(limit);
        self.read(move |tx| {
            let key = key.clone();
            Box::pin(async move {
                // Each index walked newest first, then merged: no entry has
                // one account on both sides.
                let sql = concat!(
                    "SELECT ",
                    entry_columns!(),
                    " FROM (
                         (SELECT ",
                    entry_columns!(),
                    " FROM wallet.journal WHERE debit = $1 AND id < $2
                          ORDER BY id DESC LIMIT $3)
                         UNION ALL
                         (SELECT ",
                    entry_columns!(),
                    " FROM wallet.journal WHERE credit = $1 AND id < $2
                          ORDER BY id DESC LIMIT $3)
                     ) AS entries ORDER BY id DESC LIMIT $3"
                );
                query(tx, sql, &[&key, &before, &limit])
                    .await?
                    .iter()
                    .map(entry_from)
                    .collect()
            })
        })
    }

    fn entry(&self, entry: EntryId) -> Outcome<Option<Entry>> {
        self.read(move |tx| {
            Box::pin(async move {
                let sql = concat!(
                    "SELECT ",
                    entry_columns!(),
                    " FROM wallet.journal WHERE id = $1"
                );
                query_opt(tx, sql, &[&db(entry.0)])
                    .await?
                    .as_ref()
                    .map(entry_from)
                    .transpose()
            })
        })
    }

    fn transfer(&self, transfer: TransferId) -> Outcome<Option<Transfer>> {
        self.read(move |tx| {
            Box::pin(async move {
                let sql = concat!(
                    "SELECT ",
                    transfer_columns!(),
                    " FROM wallet.transfers WHERE id = $1"
                );
                query_opt(tx, sql, &[&db(transfer.0)])
                    .await?
                    .as_ref()
                    .map(transfer_from)
                    .transpose()
            })
        })
    }

    fn packet(&self, packet: PacketId) -> Outcome<Option<(Packet, Vec<Grab>)>> {
        self.read(move |tx| {
            Box::pin(async move {
                let sql = concat!(
                    "SELECT ",
                    packet_columns!(),
                    " FROM ",
                    packets!(),
                    " WHERE p.id = $1"
                );
                let Some(row) = query_opt(tx, sql, &[&db(packet.0)]).await? else {
                    return Ok(None);
                };
                let sql = concat!(
                    "SELECT ",
                    grab_columns!(),
                    " FROM wallet.grabs WHERE packet = $1 ORDER BY share_index"
                );
                let grabs = query(tx, sql, &[&db(packet.0)])
                    .await?
                    .iter()
                    .map(grab_from)
                    .collect::<TxResult<Vec<_>>>()?;
                Ok(Some((packet_from(&row)?, grabs)))
            })
        })
    }

    fn order(&self, order: OrderId) -> Outcome<Option<Order>> {
        self.read(move |tx| {
            Box::pin(async move {
                let sql = concat!(
                    "SELECT ",
                    order_columns!(),
                    " FROM wallet.orders WHERE id = $1"
                );
                query_opt(tx, sql, &[&db(order.0)])
                    .await?
                    .as_ref()
                    .map(order_from)
                    .transpose()
            })
        })
    }

    fn order_by_ref(&self, provider_ref: String) -> Outcome<Option<Order>> {
        self.read(move |tx| {
            let provider_ref = provider_ref.clone();
            Box::pin(async move {
                let sql = concat!(
                    "SELECT ",
                    order_columns!(),
                    " FROM wallet.orders
                     WHERE provider_ref = $1 AND provider_ref <> '' ORDER BY id LIMIT 1"
                );
                query_opt(tx, sql, &[&provider_ref])
                    .await?
                    .as_ref()
                    .map(order_from)
                    .transpose()
            })
        })
    }

    fn set_provider_ref(
        &self,
        order: OrderId,
        provider: String,
        provider_ref: String,
    ) -> Outcome<()> {
        self.write(move |tx| {
            let (provider, provider_ref) = (provider.clone(), provider_ref.clone());
            Box::pin(async move {
                let changed = execute(
                    tx,
                    "UPDATE wallet.orders SET provider = $2, provider_ref = $3 WHERE id = $1",
                    &[&db(order.0), &provider, &provider_ref],
                )
                .await?;
                if changed == 0 {
                    return Err(PgTxError::Abort(WalletError::OrderNotFound));
                }
                Ok(())
            })
        })
    }

    fn due_transfers(&self, now_ms: i64, limit: u32) -> Outcome<Vec<TransferId>> {
        let limit = i64::from(limit);
        self.read(move |tx| {
            Box::pin(async move {
                query(
                    tx,
                    "SELECT id FROM wallet.transfers WHERE status = 'pending' AND expires_ms <= $1
                     ORDER BY expires_ms, id LIMIT $2",
                    &[&now_ms, &limit],
                )
                .await?
                .iter()
                .map(|row| Ok(TransferId(id(row.try_get(0)?))))
                .collect()
            })
        })
    }

    fn due_packets(&self, now_ms: i64, limit: u32) -> Outcome<Vec<PacketId>> {
        let limit = i64::from(limit);
        self.read(move |tx| {
            Box::pin(async move {
                query(
                    tx,
                    "SELECT id FROM wallet.packets WHERE status = 'open' AND expires_ms <= $1
                     ORDER BY expires_ms, id LIMIT $2",
                    &[&now_ms, &limit],
                )
                .await?
                .iter()
                .map(|row| Ok(PacketId(id(row.try_get(0)?))))
                .collect()
            })
        })
    }

    fn pin(&self, user: UserId) -> Outcome<Option<PinRecord>> {
        self.read(move |tx| Box::pin(read_pin(tx, user, false)))
    }

    fn daily(&self, user: UserId, day: i64) -> Outcome<Option<DailyOut>> {
        self.read(move |tx| {
            Box::pin(async move {
                let row = query_opt(
                    tx,
                    "SELECT amount, count FROM wallet.daily WHERE user_id = $1 AND day = $2",
                    &[&db(user.0), &day],
                )
                .await?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let (amount, count) = (row.try_get::<_, Fen>(0)?, count(row.try_get(1)?)?);
                Ok((count > 0 || amount > 0).then_some(DailyOut {
                    user,
                    day,
                    amount,
                    count,
                }))
            })
        })
    }

    fn reserve_pin_try(&self, user: UserId, now_ms: i64, lock_ms: i64) -> Outcome<PinRecord> {
        self.write(move |tx| {
            Box::pin(async move {
                // Concurrent guesses queue on the row, so each counts.
                let record = read_pin(tx, user, true)
                    .await?
                    .ok_or(PgTxError::Abort(WalletError::PinNotSet))?;
                let counted =
                    policy::pin_reserve(&record, now_ms, lock_ms).map_err(PgTxError::Abort)?;
                write_pin(tx, user, &counted).await?;
                Ok(counted)
            })
        })
    }

    fn put_pin(&self, user: UserId, record: PinRecord) -> Outcome<()> {
        self.write(move |tx| {
            let record = record.clone();
            Box::pin(async move { write_pin(tx, user, &record).await })
        })
    }

    fn remember_nonce(&self, nonce: String, now_ms: i64) -> Outcome<bool> {
        self.write(move |tx| {
            let nonce = nonce.clone();
            Box::pin(async move {
                let inserted = execute(
                    tx,
                    "INSERT INTO wallet.nonces (nonce, seen_ms) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&nonce, &now_ms],
                )
                .await?;
                Ok(inserted == 1)
            })
        })
    }

    fn log_callback(&self, log: CallbackLog) -> Outcome<()> {
        self.write(move |tx| {
            let log = log.clone();
            Box::pin(async move {
                execute(
                    tx,
                    "INSERT INTO wallet.callbacks (received_ms, nonce, verdict, order_id, body_sha256)
                     VALUES ($1, $2, $3, $4, $5)",
                    &[
                        &log.received_ms,
                        &log.nonce,
                        &log.verdict,
                        &log.order.map(|o| db(o.0)),
                        &log.body_sha256,
                    ],
                )
                .await?;
                Ok(())
            })
        })
    }

    fn callbacks(&self, limit: u32) -> Outcome<Vec<CallbackLog>> {
        let limit = i64::from(limit);
        self.read(move |tx| {
            Box::pin(async move {
                query(
                    tx,
                    "SELECT received_ms, nonce, verdict, order_id, body_sha256 FROM wallet.callbacks
                     ORDER BY received_ms DESC, id DESC LIMIT $1",
                    &[&limit],
                )
                .await?
                .iter()
                .map(|row| {
                    Ok(CallbackLog {
                        received_ms: row.try_get(0)?,
                        nonce: row.try_get(1)?,
                        verdict: row.try_get(2)?,
                        order: row.try_get::<_, Option<i64>>(3)?.map(|o| OrderId(id(o))),
                        body_sha256: row.try_get(4)?,
                    })
                })
                .collect()
            })
        })
    }

    fn sweep(&self, now_ms: i64, keep_ms: i64) -> Outcome<u64> {
        let cutoff = now_ms.saturating_sub(keep_ms);
        self.write(move |tx| {
            Box::pin(async move {
                let keys = execute(
                    tx,
                    "DELETE FROM wallet.idempotency WHERE created_ms < $1",
                    &[&cutoff],
                )
                .await?;
                let nonces = execute(
                    tx,
                    "DELETE FROM wallet.nonces WHERE seen_ms < $1",
                    &[&cutoff],
                )
                .await?;
                Ok(keys + nonces)
            })
        })
    }

    fn audit(&self) -> Outcome<Audit> {
        self.read(|tx| Box::pin(audit(tx)))
    }
}

/// The user's PIN record, its row locked when `lock`.
async fn read_pin(tx: &Transaction<'_>, user: UserId, lock: bool) -> TxResult<Option<PinRecord>> {
    let sql = if !lock {
        "SELECT hash, failures, locked_until_ms, updated_ms FROM wallet.pins WHERE user_id = $1"
    } else {
        "SELECT hash, failures, locked_until_ms, updated_ms FROM wallet.pins WHERE user_id = $1
         FOR UPDATE"
    };
    let Some(row) = query_opt(tx, sql, &[&db(user.0)]).await? else {
        return Ok(None);
    };
    Ok(Some(PinRecord {
        hash: row.try_get(0)?,
        failures: count(row.try_get(1)?)?,
        locked_until_ms: row.try_get(2)?,
        updated_ms: row.try_get(3)?,
    }))
}

async fn write_pin(tx: &Transaction<'_>, user: UserId, record: &PinRecord) -> TxResult<()> {
    execute(
        tx,
        "INSERT INTO wallet.pins (user_id, hash, failures, locked_until_ms, updated_ms)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (user_id) DO UPDATE SET hash = EXCLUDED.hash,
             failures = EXCLUDED.failures, locked_until_ms = EXCLUDED.locked_until_ms,
             updated_ms = EXCLUDED.updated_ms",
        &[
            &db(user.0),
            &record.hash,
            &count_db(record.failures)?,
            &record.locked_until_ms,
            &record.updated_ms,
        ],
    )
    .await?;
    Ok(())
}

/// [`WalletStore::audit`] in one snapshot, as the SQLite backend answers
/// it: every account that has a balance row or an entry, in account order;
/// each order's sums in the order of [`Reason::ALL`]; entries naming an
/// account without a row, or a key that is no account, as malformed.
async fn audit(tx: &Transaction<'_>) -> TxResult<Audit> {
    // Sums as NUMERIC, clamped into BIGINT: no sum of amounts overflows.
    let rows = query(
        tx,
        "WITH sums AS (
             SELECT account, sum(amount) AS total FROM (
                 SELECT credit AS account, amount FROM wallet.journal
                 UNION ALL
                 SELECT debit, -amount FROM wallet.journal
             ) AS moves GROUP BY account
         )
         SELECT COALESCE(a.account, s.account), COALESCE(a.balance, 0),
                LEAST(GREATEST(COALESCE(s.total, 0), -9223372036854775808),
                      9223372036854775807)::BIGINT
         FROM wallet.accounts AS a FULL JOIN sums AS s ON s.account = a.account",
        &[],
    )
    .await?;
    let mut accounts = Vec::new();
    let mut unknown_keys = Vec::new();
    for row in &rows {
        let key: String = row.try_get(0)?;
        match key.parse::<Account>() {
            Ok(account) => accounts.push((account, row.try_get(1)?, row.try_get(2)?)),
            Err(_) => unknown_keys.push(key),
        }
    }
    accounts.sort_by_key(|(account, _, _)| *account);
    let mut malformed_entries = query(
        tx,
        "SELECT j.id FROM wallet.journal AS j
         WHERE j.amount <= 0
            OR NOT EXISTS (SELECT 1 FROM wallet.accounts AS a WHERE a.account = j.debit)
            OR NOT EXISTS (SELECT 1 FROM wallet.accounts AS a WHERE a.account = j.credit)
            OR j.debit = ANY($1) OR j.credit = ANY($1)",
        &[&unknown_keys],
    )
    .await?
    .iter()
    .map(|row| Ok(EntryId(id(row.try_get(0)?))))
    .collect::<TxResult<Vec<_>>>()?;
    malformed_entries.sort();
    let sql = concat!(
        "SELECT ",
        order_columns!(),
        " FROM wallet.orders ORDER BY id"
    );
    let mut orders = query(tx, sql, &[])
        .await?
        .iter()
        .map(|row| Ok((order_from(row)?, Vec::new())))
        .collect::<TxResult<Vec<(Order, Vec<(Reason, Fen)>)>>>()?;
    let sums = query(
        tx,
        "SELECT reference, reason, sum(amount)::BIGINT FROM wallet.journal
         WHERE reason IN ('top_up', 'withdrawal', 'payout_settled', 'payout_reversed')
         GROUP BY reference, reason",
        &[],
    )
    .await?;
    for row in &sums {
        let order = OrderId(id(row.try_get(0)?));
        let sum = (reason(row.try_get(1)?)?, row.try_get(2)?);
        if let Ok(at) = orders.binary_search_by_key(&order, |(o, _)| o.id) {
            orders[at].1.push(sum);
        }
    }
    for (_, sums) in &mut orders {
        sums.sort_by_key(|(reason, _)| Reason::ALL.iter().position(|r| r == reason));
    }
    Ok(Audit {
        accounts,
        orders,
        malformed_entries,
    })
}

#[cfg(test)]
mod tests;
