//! The embedded backend of [`WalletStore`]: one SQLite file, written by its
//! single writer thread with group commit (kit's [`Database`]).
//!
//! Why this is safe without row locks: every write of the file runs on the
//! one writer thread, one job after another, so a command's four steps
//! ([`crate::policy`]) see no other command between them. Concurrent
//! requests are serialized by the writer's queue; many of them share one
//! transaction and one fsync, and each is answered only once that
//! transaction is durable.
//!
//! Storage choices:
//!
//! - Account keys are their stable spellings (`w:<user>`, `t:<transfer>`,
//!   ...); ids are SQLite integers holding the u64's bits (ids minted here
//!   are below 2^63, so they also sort as numbers).
//! - The journal is append-only: triggers refuse an update or a delete, a
//!   check refuses an amount below 1 fen or an entry that debits and credits
//!   one account, and a check on `accounts` refuses a balance below zero for
//!   every account but top-up clearing. A bug in a caller then fails its
//!   own job instead of writing a wrong ledger.
//! - History reads two indexes, `journal (debit, id)` and
//!   `journal (credit, id)`, each in entry order.
//! - A packet's shares are a BLOB of little-endian i64s in their own table,
//!   written once: a grab updates the small `packets` row, not the shares.
//! - A provider reference names one order (a unique index): a second order
//!   with the same reference fails as an engine error rather than letting a
//!   callback credit the wrong order.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension as _, Row, params};
use superapp_kit::sqlite::{Database, TxError, WriterQueue};

use super::{
    Audit, CallbackLog, Outcome, Request, StoreError, WalletStore, decode_applied, encode_applied,
};
use crate::error::WalletError;
use crate::model::{
    Account, Applied, Balance, DailyOut, Entry, EntryId, Fen, Grab, GroupId, Order, OrderId,
    OrderKind, OrderStatus, Packet, PacketId, PacketMode, PacketStatus, PinRecord, Place, Reason,
    Transfer, TransferId, TransferStatus, UserId,
};
use crate::policy::{self, Needs, Records};

const MIGRATIONS: &[&str] = &["
CREATE TABLE accounts (
    account TEXT PRIMARY KEY,
    balance INTEGER NOT NULL,
    CHECK (balance >= 0 OR account = 's:topup')
) WITHOUT ROWID;
CREATE TABLE journal (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    reason TEXT NOT NULL,
    debit TEXT NOT NULL,
    credit TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    reference INTEGER NOT NULL,
    CHECK (debit <> credit)
);
CREATE INDEX journal_by_debit ON journal (debit, id);
CREATE INDEX journal_by_credit ON journal (credit, id);
CREATE TRIGGER journal_never_updated BEFORE UPDATE ON journal
BEGIN SELECT RAISE(ABORT, 'journal entries are never updated'); END;
CREATE TRIGGER journal_never_deleted BEFORE DELETE ON journal
BEGIN SELECT RAISE(ABORT, 'journal entries are never deleted'); END;
CREATE TABLE transfers (
    id INTEGER PRIMARY KEY,
    from_user INTEGER NOT NULL,
    to_user INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    memo TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    settled_ms INTEGER
);
CREATE INDEX transfers_due ON transfers (expires_ms) WHERE status = 'pending';
CREATE TABLE packets (
    id INTEGER PRIMARY KEY,
    sender INTEGER NOT NULL,
    place TEXT NOT NULL,
    place_id INTEGER NOT NULL,
    mode TEXT NOT NULL,
    amount INTEGER NOT NULL,
    exclusive_to INTEGER,
    greeting TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    claimed INTEGER NOT NULL,
    claimed_amount INTEGER NOT NULL,
    status TEXT NOT NULL,
    best_user INTEGER,
    best_amount INTEGER,
    refunded INTEGER NOT NULL
);
CREATE INDEX packets_due ON packets (expires_ms) WHERE status = 'open';
CREATE TABLE packet_shares (
    packet INTEGER PRIMARY KEY,
    shares BLOB NOT NULL
);
CREATE TABLE grabs (
    packet INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    share_index INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (packet, user_id)
) WITHOUT ROWID;
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    amount INTEGER NOT NULL,
    status TEXT NOT NULL,
    provider TEXT NOT NULL,
    provider_ref TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX orders_by_ref ON orders (provider_ref) WHERE provider_ref <> '';
CREATE TABLE daily (
    user_id INTEGER NOT NULL,
    day INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (user_id, day)
) WITHOUT ROWID;
CREATE TABLE idempotency (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL,
    idem_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    applied TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX idempotency_by_key ON idempotency (user_id, idem_key);
CREATE INDEX idempotency_by_age ON idempotency (created_ms);
CREATE TABLE pins (
    user_id INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    failures INTEGER NOT NULL,
    locked_until_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE nonces (
    nonce TEXT PRIMARY KEY,
    seen_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX nonces_by_age ON nonces (seen_ms);
CREATE TABLE callbacks (
    id INTEGER PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    nonce TEXT NOT NULL,
    verdict TEXT NOT NULL,
    order_id INTEGER,
    body_sha256 TEXT NOT NULL
);
CREATE INDEX callbacks_by_time ON callbacks (received_ms, id);
"];

/// Rows one job of [`WalletStore::sweep`] deletes at most.
const SWEEP_CHUNK: usize = 2_000;

/// The wallet's store in one SQLite file.
pub struct SqliteWalletStore {
    db: Database,
}

impl SqliteWalletStore {
    /// Opens (creating and migrating if needed) the file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, WriterQueue::default())
    }

    /// [`open`](Self::open) with the writer's queue bounded by `queue`.
    pub fn open_with(path: &Path, queue: WriterQueue) -> Result<Self, StoreError> {
        Ok(Self {
            db: Database::open_with(path, MIGRATIONS, None, queue)?,
        })
    }
}

type Tx<T> = Result<T, TxError<WalletError>>;

fn conversion(index: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(index, Type::Text, Box::new(e))
}

/// A stored value that is not one this code writes.
#[derive(Debug, thiserror::Error)]
#[error("unexpected stored value: {0}")]
struct Unexpected(String);

fn unexpected(index: usize, what: impl Into<String>) -> rusqlite::Error {
    conversion(index, Unexpected(what.into()))
}

/// A u64 id as SQLite's integer: the same 64 bits, read back by [`id`].
fn int(v: u64) -> i64 {
    v as i64
}

/// An id stored by [`int`].
fn id(r: &Row<'_>, index: usize) -> rusqlite::Result<u64> {
    r.get::<_, i64>(index).map(|v| v as u64)
}

fn count(r: &Row<'_>, index: usize) -> rusqlite::Result<u32> {
    let v: i64 = r.get(index)?;
    u32::try_from(v).map_err(|e| conversion(index, e))
}

fn account(r: &Row<'_>, index: usize) -> rusqlite::Result<Account> {
    let key: String = r.get(index)?;
    key.parse().map_err(|e| conversion(index, e))
}

fn reason(r: &Row<'_>, index: usize) -> rusqlite::Result<Reason> {
    let s: String = r.get(index)?;
    s.parse().map_err(|e| conversion(index, e))
}

fn transfer_status(r: &Row<'_>, index: usize) -> rusqlite::Result<TransferStatus> {
    let s: String = r.get(index)?;
    [
        TransferStatus::Pending,
        TransferStatus::Accepted,
        TransferStatus::Declined,
        TransferStatus::Expired,
    ]
    .into_iter()
    .find(|t| t.as_str() == s)
    .ok_or_else(|| unexpected(index, s))
}

fn packet_status(r: &Row<'_>, index: usize) -> rusqlite::Result<PacketStatus> {
    let s: String = r.get(index)?;
    [
        PacketStatus::Open,
        PacketStatus::Finished,
        PacketStatus::Refunded,
    ]
    .into_iter()
    .find(|t| t.as_str() == s)
    .ok_or_else(|| unexpected(index, s))
}

fn packet_mode(r: &Row<'_>, index: usize) -> rusqlite::Result<PacketMode> {
    let s: String = r.get(index)?;
    [PacketMode::Lucky, PacketMode::Equal, PacketMode::Exclusive]
        .into_iter()
        .find(|t| t.as_str() == s)
        .ok_or_else(|| unexpected(index, s))
}

fn order_kind_str(kind: OrderKind) -> &'static str {
    match kind {
        OrderKind::PayIn => "pay_in",
        OrderKind::Payout => "payout",
    }
}

fn order_kind(r: &Row<'_>, index: usize) -> rusqlite::Result<OrderKind> {
    let s: String = r.get(index)?;
    [OrderKind::PayIn, OrderKind::Payout]
        .into_iter()
        .find(|k| order_kind_str(*k) == s)
        .ok_or_else(|| unexpected(index, s))
}

fn order_status(r: &Row<'_>, index: usize) -> rusqlite::Result<OrderStatus> {
    let s: String = r.get(index)?;
    [
        OrderStatus::Open,
        OrderStatus::Paid,
        OrderStatus::Failed,
        OrderStatus::Settled,
        OrderStatus::Reversed,
    ]
    .into_iter()
    .find(|t| t.as_str() == s)
    .ok_or_else(|| unexpected(index, s))
}

/// Shares as little-endian i64s, eight bytes each.
fn encode_shares(shares: &[Fen]) -> Vec<u8> {
    shares.iter().flat_map(|s| s.to_le_bytes()).collect()
}

fn decode_shares(r: &Row<'_>, index: usize) -> rusqlite::Result<Vec<Fen>> {
    let bytes: Vec<u8> = r.get(index)?;
    if !bytes.len().is_multiple_of(8) {
        return Err(unexpected(index, "shares are not whole i64s"));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| {
            let mut le = [0u8; 8];
            le.copy_from_slice(c);
            Fen::from_le_bytes(le)
        })
        .collect())
}

// Column lists are macros, so that every statement is one literal
// (`concat!`): formatting a statement's text on every call, only to find
// it in the statement cache, showed in the writer's profile.
macro_rules! entry_columns {
    () => {
        "id, at_ms, reason, debit, credit, amount, reference"
    };
}

fn entry_row(r: &Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        id: EntryId(id(r, 0)?),
        at_ms: r.get(1)?,
        reason: reason(r, 2)?,
        debit: account(r, 3)?,
        credit: account(r, 4)?,
        amount: r.get(5)?,
        reference: id(r, 6)?,
    })
}

macro_rules! transfer_columns {
    () => {
        "id, from_user, to_user, amount, memo, status, created_ms, expires_ms, settled_ms"
    };
}

fn transfer_row(r: &Row<'_>) -> rusqlite::Result<Transfer> {
    Ok(Transfer {
        id: TransferId(id(r, 0)?),
        from: UserId(id(r, 1)?),
        to: UserId(id(r, 2)?),
        amount: r.get(3)?,
        memo: r.get(4)?,
        status: transfer_status(r, 5)?,
        created_ms: r.get(6)?,
        expires_ms: r.get(7)?,
        settled_ms: r.get(8)?,
    })
}

macro_rules! packet_columns {
    () => {
        "p.id, p.sender, p.place, p.place_id, p.mode, p.amount, \
     p.exclusive_to, p.greeting, p.created_ms, p.expires_ms, p.claimed, p.claimed_amount, \
     p.status, p.best_user, p.best_amount, p.refunded, s.shares"
    };
}

fn packet_row(r: &Row<'_>) -> rusqlite::Result<Packet> {
    let place: String = r.get(2)?;
    let place_id = id(r, 3)?;
    let place = match place.as_str() {
        "direct" => Place::Direct(UserId(place_id)),
        "group" => Place::Group(GroupId(place_id)),
        _ => return Err(unexpected(2, place)),
    };
    let exclusive_to: Option<i64> = r.get(6)?;
    let best_user: Option<i64> = r.get(13)?;
    let best_amount: Option<Fen> = r.get(14)?;
    Ok(Packet {
        id: PacketId(id(r, 0)?),
        sender: UserId(id(r, 1)?),
        place,
        mode: packet_mode(r, 4)?,
        amount: r.get(5)?,
        shares: decode_shares(r, 16)?,
        exclusive_to: exclusive_to.map(|u| UserId(u as u64)),
        greeting: r.get(7)?,
        created_ms: r.get(8)?,
        expires_ms: r.get(9)?,
        claimed: count(r, 10)?,
        claimed_amount: r.get(11)?,
        status: packet_status(r, 12)?,
        best: best_user
            .zip(best_amount)
            .map(|(u, a)| (UserId(u as u64), a)),
        refunded: r.get(15)?,
    })
}

fn place_columns(place: Place) -> (&'static str, i64) {
    match place {
        Place::Direct(user) => ("direct", int(user.0)),
        Place::Group(group) => ("group", int(group.0)),
    }
}

macro_rules! grab_columns {
    () => {
        "packet, user_id, amount, share_index, at_ms"
    };
}

fn grab_row(r: &Row<'_>) -> rusqlite::Result<Grab> {
    Ok(Grab {
        packet: PacketId(id(r, 0)?),
        user: UserId(id(r, 1)?),
        amount: r.get(2)?,
        index: count(r, 3)?,
        at_ms: r.get(4)?,
    })
}

macro_rules! order_columns {
    () => {
        "id, user_id, kind, amount, status, provider, provider_ref, created_ms, updated_ms"
    };
}

fn order_row(r: &Row<'_>) -> rusqlite::Result<Order> {
    Ok(Order {
        id: OrderId(id(r, 0)?),
        user: UserId(id(r, 1)?),
        kind: order_kind(r, 2)?,
        amount: r.get(3)?,
        status: order_status(r, 4)?,
        provider: r.get(5)?,
        provider_ref: r.get(6)?,
        created_ms: r.get(7)?,
        updated_ms: r.get(8)?,
    })
}

fn read_transfer(c: &Connection, transfer: TransferId) -> rusqlite::Result<Option<Transfer>> {
    c.prepare_cached(concat!(
        "SELECT ",
        transfer_columns!(),
        " FROM transfers WHERE id = ?1"
    ))?
    .query_row([int(transfer.0)], transfer_row)
    .optional()
}

fn read_packet(c: &Connection, packet: PacketId) -> rusqlite::Result<Option<Packet>> {
    c.prepare_cached(concat!(
        "SELECT ",
        packet_columns!(),
        " FROM packets p JOIN packet_shares s ON s.packet = p.id
         WHERE p.id = ?1"
    ))?
    .query_row([int(packet.0)], packet_row)
    .optional()
}

fn read_grab(c: &Connection, packet: PacketId, user: UserId) -> rusqlite::Result<Option<Grab>> {
    c.prepare_cached(concat!(
        "SELECT ",
        grab_columns!(),
        " FROM grabs WHERE packet = ?1 AND user_id = ?2"
    ))?
    .query_row(params![int(packet.0), int(user.0)], grab_row)
    .optional()
}

fn read_order(c: &Connection, order: OrderId) -> rusqlite::Result<Option<Order>> {
    c.prepare_cached(concat!(
        "SELECT ",
        order_columns!(),
        " FROM orders WHERE id = ?1"
    ))?
    .query_row([int(order.0)], order_row)
    .optional()
}

fn read_pin(c: &Connection, user: UserId) -> rusqlite::Result<Option<PinRecord>> {
    c.prepare_cached(
        "SELECT hash, failures, locked_until_ms, updated_ms FROM pins WHERE user_id = ?1",
    )?
    .query_row([int(user.0)], |r| {
        Ok(PinRecord {
            hash: r.get(0)?,
            failures: count(r, 1)?,
            locked_until_ms: r.get(2)?,
            updated_ms: r.get(3)?,
        })
    })
    .optional()
}

fn write_pin(c: &Connection, user: UserId, record: &PinRecord) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO pins (user_id, hash, failures, locked_until_ms, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (user_id) DO UPDATE SET hash = excluded.hash,
             failures = excluded.failures, locked_until_ms = excluded.locked_until_ms,
             updated_ms = excluded.updated_ms",
    )?
    .execute(params![
        int(user.0),
        record.hash,
        record.failures,
        record.locked_until_ms,
        record.updated_ms
    ])?;
    Ok(())
}

fn read_daily(c: &Connection, user: UserId, day: i64) -> rusqlite::Result<Option<DailyOut>> {
    c.prepare_cached("SELECT amount, count FROM daily WHERE user_id = ?1 AND day = ?2")?
        .query_row(params![int(user.0), day], |r| {
            Ok(DailyOut {
                user,
                day,
                amount: r.get(0)?,
                count: count(r, 1)?,
            })
        })
        .optional()
}

fn read_balance(c: &Connection, account: Account) -> rusqlite::Result<Option<Fen>> {
    c.prepare_cached("SELECT balance FROM accounts WHERE account = ?1")?
        .query_row([account.to_string()], |r| r.get(0))
        .optional()
}

/// Step 1 of [`crate::policy`]: the records the command names.
fn read_records(c: &Connection, needs: &Needs) -> rusqlite::Result<Records> {
    Ok(Records {
        transfer: match needs.transfer {
            Some(t) => read_transfer(c, t)?,
            None => None,
        },
        packet: match needs.packet {
            Some(p) => read_packet(c, p)?,
            None => None,
        },
        grab: match needs.grab {
            Some((p, u)) => read_grab(c, p, u)?,
            None => None,
        },
        order: match needs.order {
            Some(o) => read_order(c, o)?,
            None => None,
        },
        daily: match needs.daily {
            Some((u, day)) => read_daily(c, u, day)?,
            None => None,
        },
    })
}

/// Step 2: the balances of the accounts the command touches (an account
/// that never moved has no row, and [`policy::decide`] takes it as 0).
fn read_balances(c: &Connection, accounts: &[Account]) -> rusqlite::Result<Vec<Balance>> {
    let mut balances = Vec::with_capacity(accounts.len());
    for &account in accounts {
        if let Some(balance) = read_balance(c, account)? {
            balances.push(Balance { account, balance });
        }
    }
    Ok(balances)
}

/// The whole of [`WalletStore::apply`], in one writer job. Every refusal
/// comes before the first write, so an [`TxError::Abort`] has written
/// nothing; a failure after it is an engine error, which rolls the job back.
fn apply(c: &Connection, request: &Request) -> Tx<Applied> {
    if let Some(key) = &request.key {
        let seen: Option<(String, String)> = c
            .prepare_cached(
                "SELECT fingerprint, applied FROM idempotency WHERE user_id = ?1 AND idem_key = ?2",
            )?
            .query_row(params![int(key.user.0), key.key], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        if let Some((fingerprint, stored)) = seen {
            if fingerprint != key.fingerprint {
                return Err(TxError::Abort(WalletError::IdempotencyKeyReused));
            }
            let mut first = decode_applied(&stored).map_err(|e| TxError::Abort(e.into()))?;
            first.replayed = true;
            return Ok(first);
        }
    }
    let command = &request.command;
    let records = read_records(c, &policy::needs(command))?;
    let balances = read_balances(c, &policy::accounts(command, &records))?;
    let applied = policy::decide(command, &records, &balances, request.entry, request.now_ms)
        .map_err(TxError::Abort)?;
    let stored = match &request.key {
        Some(_) => Some(encode_applied(&applied).map_err(|e| TxError::Abort(e.into()))?),
        None => None,
    };
    write_applied(c, &records, &applied)?;
    if let (Some(key), Some(stored)) = (&request.key, stored) {
        c.prepare_cached(
            "INSERT INTO idempotency (user_id, idem_key, fingerprint, applied, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            int(key.user.0),
            key.key,
            key.fingerprint,
            stored,
            request.now_ms
        ])?;
    }
    Ok(applied)
}

/// Step 4: what [`policy::decide`] answered. A record the command read is
/// updated in the columns a command changes; one it did not find is new.
fn write_applied(c: &Connection, records: &Records, applied: &Applied) -> rusqlite::Result<()> {
    if let Some(e) = &applied.entry {
        c.prepare_cached(concat!(
            "INSERT INTO journal (",
            entry_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        ))?
        .execute(params![
            int(e.id.0),
            e.at_ms,
            e.reason.as_str(),
            e.debit.to_string(),
            e.credit.to_string(),
            e.amount,
            int(e.reference),
        ])?;
    }
    for b in &applied.balances {
        c.prepare_cached(
            "INSERT INTO accounts (account, balance) VALUES (?1, ?2)
             ON CONFLICT (account) DO UPDATE SET balance = excluded.balance",
        )?
        .execute(params![b.account.to_string(), b.balance])?;
    }
    if let Some(t) = &applied.transfer {
        if records.transfer.is_some() {
            c.prepare_cached("UPDATE transfers SET status = ?2, settled_ms = ?3 WHERE id = ?1")?
                .execute(params![int(t.id.0), t.status.as_str(), t.settled_ms])?;
        } else {
            c.prepare_cached(concat!(
                "INSERT INTO transfers (",
                transfer_columns!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ))?
            .execute(params![
                int(t.id.0),
                int(t.from.0),
                int(t.to.0),
                t.amount,
                t.memo,
                t.status.as_str(),
                t.created_ms,
                t.expires_ms,
                t.settled_ms,
            ])?;
        }
    }
    if let Some(p) = &applied.packet {
        let (best_user, best_amount) = match p.best {
            Some((user, amount)) => (Some(int(user.0)), Some(amount)),
            None => (None, None),
        };
        if records.packet.is_some() {
            c.prepare_cached(
                "UPDATE packets SET claimed = ?2, claimed_amount = ?3, status = ?4,
                     best_user = ?5, best_amount = ?6, refunded = ?7
                 WHERE id = ?1",
            )?
            .execute(params![
                int(p.id.0),
                p.claimed,
                p.claimed_amount,
                p.status.as_str(),
                best_user,
                best_amount,
                p.refunded,
            ])?;
        } else {
            let (place, place_id) = place_columns(p.place);
            c.prepare_cached(
                "INSERT INTO packets (id, sender, place, place_id, mode, amount, exclusive_to,
                     greeting, created_ms, expires_ms, claimed, claimed_amount, status,
                     best_user, best_amount, refunded)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            )?
            .execute(params![
                int(p.id.0),
                int(p.sender.0),
                place,
                place_id,
                p.mode.as_str(),
                p.amount,
                p.exclusive_to.map(|u| int(u.0)),
                p.greeting,
                p.created_ms,
                p.expires_ms,
                p.claimed,
                p.claimed_amount,
                p.status.as_str(),
                best_user,
                best_amount,
                p.refunded,
            ])?;
            c.prepare_cached("INSERT INTO packet_shares (packet, shares) VALUES (?1, ?2)")?
                .execute(params![int(p.id.0), encode_shares(&p.shares)])?;
        }
    }
    if let Some(g) = &applied.grab {
        c.prepare_cached(concat!(
            "INSERT INTO grabs (",
            grab_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5)"
        ))?
        .execute(params![
            int(g.packet.0),
            int(g.user.0),
            g.amount,
            g.index,
            g.at_ms
        ])?;
    }
    if let Some(o) = &applied.order {
        if records.order.is_some() {
            c.prepare_cached("UPDATE orders SET status = ?2, updated_ms = ?3 WHERE id = ?1")?
                .execute(params![int(o.id.0), o.status.as_str(), o.updated_ms])?;
        } else {
            c.prepare_cached(concat!(
                "INSERT INTO orders (",
                order_columns!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ))?
            .execute(params![
                int(o.id.0),
                int(o.user.0),
                order_kind_str(o.kind),
                o.amount,
                o.status.as_str(),
                o.provider,
                o.provider_ref,
                o.created_ms,
                o.updated_ms,
            ])?;
        }
    }
    if let Some(d) = &applied.daily {
        c.prepare_cached(
            "INSERT INTO daily (user_id, day, amount, count) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user_id, day) DO UPDATE SET amount = excluded.amount, count = excluded.count",
        )?
        .execute(params![int(d.user.0), d.day, d.amount, d.count])?;
    }
    Ok(())
}

/// What [`WalletStore::audit`] compares, read in one snapshot.
fn audit(c: &Connection) -> rusqlite::Result<Audit> {
    let tx = c.unchecked_transaction()?;
    let mut stored: BTreeMap<String, Fen> = BTreeMap::new();
    {
        let mut s = tx.prepare_cached("SELECT account, balance FROM accounts")?;
        let rows = s.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Fen>(1)?)))?;
        for row in rows {
            let (key, balance) = row?;
            stored.insert(key, balance);
        }
    }
    // Credits less debits, per account key; i128 so that no sum of i64
    // amounts can overflow.
    let mut sums: BTreeMap<String, i128> = BTreeMap::new();
    for (sql, sign) in [
        ("SELECT credit, amount FROM journal", 1i128),
        ("SELECT debit, amount FROM journal", -1i128),
    ] {
        let mut s = tx.prepare_cached(sql)?;
        let rows = s.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Fen>(1)?)))?;
        for row in rows {
            let (key, amount) = row?;
            *sums.entry(key).or_default() += sign * i128::from(amount);
        }
    }
    let mut accounts = Vec::new();
    let mut unknown_keys = Vec::new();
    let keys: std::collections::BTreeSet<&String> = stored.keys().chain(sums.keys()).collect();
    for key in keys {
        let Ok(account) = key.parse::<Account>() else {
            unknown_keys.push(key.clone());
            continue;
        };
        let sum = sums.get(key).copied().unwrap_or(0);
        let sum = Fen::try_from(sum).unwrap_or(if sum < 0 { Fen::MIN } else { Fen::MAX });
        accounts.push((account, stored.get(key).copied().unwrap_or(0), sum));
    }
    accounts.sort_by_key(|(a, _, _)| *a);

    let mut malformed: Vec<EntryId> = {
        let mut s = tx.prepare_cached(
            "SELECT id FROM journal
             WHERE amount <= 0
                OR debit NOT IN (SELECT account FROM accounts)
                OR credit NOT IN (SELECT account FROM accounts)",
        )?;
        s.query_map([], |r| Ok(EntryId(id(r, 0)?)))?
            .collect::<rusqlite::Result<_>>()?
    };
    for key in &unknown_keys {
        let mut s = tx.prepare_cached("SELECT id FROM journal WHERE debit = ?1 OR credit = ?1")?;
        for e in s.query_map([key], |r| Ok(EntryId(id(r, 0)?)))? {
            malformed.push(e?);
        }
    }
    malformed.sort();
    malformed.dedup();

    let mut by_order: HashMap<u64, Vec<(Reason, Fen)>> = HashMap::new();
    {
        let mut s = tx.prepare_cached(
            "SELECT reference, reason, sum(amount) FROM journal
             WHERE reason IN ('top_up', 'withdrawal', 'payout_settled', 'payout_reversed')
             GROUP BY reference, reason",
        )?;
        let rows = s.query_map([], |r| Ok((id(r, 0)?, reason(r, 1)?, r.get::<_, Fen>(2)?)))?;
        for row in rows {
            let (reference, reason, sum) = row?;
            by_order.entry(reference).or_default().push((reason, sum));
        }
    }
    let mut orders = Vec::new();
    {
        let mut s = tx.prepare_cached(concat!(
            "SELECT ",
            order_columns!(),
            " FROM orders ORDER BY id"
        ))?;
        for order in s.query_map([], order_row)? {
            let order = order?;
            let mut sums = by_order.remove(&order.id.0).unwrap_or_default();
            sums.sort_by_key(|(reason, _)| Reason::ALL.iter().position(|r| r == reason));
            orders.push((order, sums));
        }
    }
    Ok(Audit {
        accounts,
        orders,
        malformed_entries: malformed,
    })
}

impl WalletStore for SqliteWalletStore {
    fn apply(&self, request: Request) -> Outcome<Applied> {
        self.db.act(move |c| apply(c, &request))
    }

    fn balance(&self, account: Account) -> Outcome<Fen> {
        self.db
            .look(move |c| -> Tx<Fen> { Ok(read_balance(c, account)?.unwrap_or(0)) })
    }

    fn history(
        &self,
        account: Account,
        before: Option<EntryId>,
        limit: u32,
    ) -> Outcome<Vec<Entry>> {
        self.db.look(move |c| -> Tx<Vec<Entry>> {
            // Each side walks its own index newest first and stops at the
            // limit; the two pages merge into one.
            let sql = concat!(
                "SELECT ",
                entry_columns!(),
                " FROM (
                     SELECT * FROM (SELECT ",
                entry_columns!(),
                " FROM journal
                         WHERE debit = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3)
                     UNION ALL
                     SELECT * FROM (SELECT ",
                entry_columns!(),
                " FROM journal
                         WHERE credit = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3)
                 ) ORDER BY id DESC LIMIT ?3"
            );
            let before = before.map_or(i64::MAX, |e| int(e.0));
            let mut s = c.prepare_cached(sql)?;
            let entries = s
                .query_map(params![account.to_string(), before, limit], entry_row)?
                .collect::<rusqlite::Result<_>>()?;
            Ok(entries)
        })
    }

    fn entry(&self, entry: EntryId) -> Outcome<Option<Entry>> {
        self.db.look(move |c| -> Tx<Option<Entry>> {
            Ok(c.prepare_cached(concat!(
                "SELECT ",
                entry_columns!(),
                " FROM journal WHERE id = ?1"
            ))?
            .query_row([int(entry.0)], entry_row)
            .optional()?)
        })
    }

    fn transfer(&self, transfer: TransferId) -> Outcome<Option<Transfer>> {
        self.db
            .look(move |c| -> Tx<Option<Transfer>> { Ok(read_transfer(c, transfer)?) })
    }

    fn packet(&self, packet: PacketId) -> Outcome<Option<(Packet, Vec<Grab>)>> {
        self.db.look(move |c| -> Tx<Option<(Packet, Vec<Grab>)>> {
            // One snapshot: the grabs agree with the packet's count.
            let tx = c.unchecked_transaction()?;
            let Some(p) = read_packet(&tx, packet)? else {
                return Ok(None);
            };
            let grabs = tx
                .prepare_cached(concat!(
                    "SELECT ",
                    grab_columns!(),
                    " FROM grabs WHERE packet = ?1 ORDER BY share_index"
                ))?
                .query_map([int(packet.0)], grab_row)?
                .collect::<rusqlite::Result<_>>()?;
            Ok(Some((p, grabs)))
        })
    }

    fn order(&self, order: OrderId) -> Outcome<Option<Order>> {
        self.db
            .look(move |c| -> Tx<Option<Order>> { Ok(read_order(c, order)?) })
    }

    fn order_by_ref(&self, provider_ref: String) -> Outcome<Option<Order>> {
        self.db.look(move |c| -> Tx<Option<Order>> {
            // An order the provider has not taken yet has an empty
            // reference, which names nothing.
            if provider_ref.is_empty() {
                return Ok(None);
            }
            Ok(c.prepare_cached(concat!(
                "SELECT ",
                order_columns!(),
                " FROM orders WHERE provider_ref = ?1 AND provider_ref <> ''"
            ))?
            .query_row([provider_ref], order_row)
            .optional()?)
        })
    }

    fn set_provider_ref(
        &self,
        order: OrderId,
        provider: String,
        provider_ref: String,
    ) -> Outcome<()> {
        self.db.act(move |c| -> Tx<()> {
            let changed = c
                .prepare_cached("UPDATE orders SET provider = ?2, provider_ref = ?3 WHERE id = ?1")?
                .execute(params![int(order.0), provider, provider_ref])?;
            if changed == 0 {
                return Err(TxError::Abort(WalletError::OrderNotFound));
            }
            Ok(())
        })
    }

    fn due_transfers(&self, now_ms: i64, limit: u32) -> Outcome<Vec<TransferId>> {
        self.db.look(move |c| -> Tx<Vec<TransferId>> {
            let mut s = c.prepare_cached(
                "SELECT id FROM transfers WHERE status = 'pending' AND expires_ms <= ?1
                 ORDER BY expires_ms, id LIMIT ?2",
            )?;
            let ids = s
                .query_map(params![now_ms, limit], |r| Ok(TransferId(id(r, 0)?)))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(ids)
        })
    }

    fn due_packets(&self, now_ms: i64, limit: u32) -> Outcome<Vec<PacketId>> {
        self.db.look(move |c| -> Tx<Vec<PacketId>> {
            let mut s = c.prepare_cached(
                "SELECT id FROM packets WHERE status = 'open' AND expires_ms <= ?1
                 ORDER BY expires_ms, id LIMIT ?2",
            )?;
            let ids = s
                .query_map(params![now_ms, limit], |r| Ok(PacketId(id(r, 0)?)))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(ids)
        })
    }

    fn daily(&self, user: UserId, day: i64) -> Outcome<Option<DailyOut>> {
        self.db
            .look(move |c| -> Tx<Option<DailyOut>> { Ok(read_daily(c, user, day)?) })
    }

    fn pin(&self, user: UserId) -> Outcome<Option<PinRecord>> {
        self.db
            .look(move |c| -> Tx<Option<PinRecord>> { Ok(read_pin(c, user)?) })
    }

    fn put_pin(&self, user: UserId, record: PinRecord) -> Outcome<()> {
        self.db.act(move |c| -> Tx<()> {
            write_pin(c, user, &record)?;
            Ok(())
        })
    }

    fn reserve_pin_try(&self, user: UserId, now_ms: i64, lock_ms: i64) -> Outcome<PinRecord> {
        self.db.act(move |c| -> Tx<PinRecord> {
            let record = read_pin(c, user)?.ok_or(TxError::Abort(WalletError::PinNotSet))?;
            let counted = policy::pin_reserve(&record, now_ms, lock_ms).map_err(TxError::Abort)?;
            write_pin(c, user, &counted)?;
            Ok(counted)
        })
    }

    fn remember_nonce(&self, nonce: String, now_ms: i64) -> Outcome<bool> {
        self.db.act(move |c| -> Tx<bool> {
            let added = c
                .prepare_cached(
                    "INSERT INTO nonces (nonce, seen_ms) VALUES (?1, ?2)
                     ON CONFLICT (nonce) DO NOTHING",
                )?
                .execute(params![nonce, now_ms])?;
            Ok(added == 1)
        })
    }

    fn log_callback(&self, log: CallbackLog) -> Outcome<()> {
        self.db.act(move |c| -> Tx<()> {
            c.prepare_cached(
                "INSERT INTO callbacks (received_ms, nonce, verdict, order_id, body_sha256)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                log.received_ms,
                log.nonce,
                log.verdict,
                log.order.map(|o| int(o.0)),
                log.body_sha256
            ])?;
            Ok(())
        })
    }

    fn callbacks(&self, limit: u32) -> Outcome<Vec<CallbackLog>> {
        self.db.look(move |c| -> Tx<Vec<CallbackLog>> {
            let mut s = c.prepare_cached(
                "SELECT received_ms, nonce, verdict, order_id, body_sha256 FROM callbacks
                 ORDER BY received_ms DESC, id DESC LIMIT ?1",
            )?;
            let logs = s
                .query_map([limit], |r| {
                    let order: Option<i64> = r.get(3)?;
                    Ok(CallbackLog {
                        received_ms: r.get(0)?,
                        nonce: r.get(1)?,
                        verdict: r.get(2)?,
                        order: order.map(|o| OrderId(o as u64)),
                        body_sha256: r.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(logs)
        })
    }

    fn sweep(&self, now_ms: i64, keep_ms: i64) -> Outcome<u64> {
        let db = self.db.clone();
        Box::pin(async move {
            let cutoff = now_ms.saturating_sub(keep_ms);
            let mut swept = 0u64;
            // In chunks, each its own job: a day's backlog of keys must not
            // hold the writer, which every payment waits for, in one job.
            for sql in [
                "DELETE FROM idempotency WHERE id IN
                     (SELECT id FROM idempotency WHERE created_ms < ?1 LIMIT ?2)",
                "DELETE FROM nonces WHERE nonce IN
                     (SELECT nonce FROM nonces WHERE seen_ms < ?1 LIMIT ?2)",
            ] {
                loop {
                    let gone = db
                        .write(move |c| {
                            c.prepare_cached(sql)?.execute(params![cutoff, SWEEP_CHUNK])
                        })
                        .await?;
                    swept += gone as u64;
                    if gone < SWEEP_CHUNK {
                        break;
                    }
                }
            }
            Ok(swept)
        })
    }

    fn audit(&self) -> Outcome<Audit> {
        self.db.look(move |c| -> Tx<Audit> { Ok(audit(c)?) })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::time::Duration;

    use proptest::prelude::*;
    use std::collections::HashMap;

    use super::*;
    use crate::conformance::{self, Store};

    fn open(dir: &tempfile::TempDir) -> Store {
        Arc::new(SqliteWalletStore::open(&dir.path().join("wallet.db")).unwrap())
    }

    /// A store whose writer queue holds a storm of requests at once, as a
    /// server's default queue does not need to.
    fn open_roomy(dir: &tempfile::TempDir) -> Store {
        let queue = WriterQueue {
            depth: 1 << 15,
            wait: Duration::from_secs(60),
        };
        Arc::new(SqliteWalletStore::open_with(&dir.path().join("wallet.db"), queue).unwrap())
    }

    macro_rules! contract {
        ($($name:ident: $case:expr;)*) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let dir = tempfile::tempdir().unwrap();
                ($case)(open(&dir)).await;
            }
        )*};
    }

    contract! {
        sqlite_credits_a_top_up_exactly_once_and_shows_it_in_history: conformance::top_ups;
        sqlite_settles_or_reverses_a_withdrawal_once: conformance::withdrawals;
        sqlite_writes_nothing_for_a_refusal: conformance::refusals_write_nothing;
        sqlite_lets_only_the_recipient_accept_or_decline_a_transfer: conformance::transfers;
        sqlite_expires_a_transfer_never_early_and_once: conformance::transfer_expiry;
        sqlite_hands_out_a_packet_s_shares_once_each: conformance::packets;
        sqlite_keeps_exclusive_and_one_to_one_packets_for_their_person: conformance::packets_for_someone;
        sqlite_refunds_a_packet_s_rest_once_and_never_early: conformance::packet_refunds;
        sqlite_replays_a_key_and_refuses_its_reuse: conformance::idempotency;
        sqlite_applies_a_request_sent_twenty_times_at_once_once: |s| conformance::concurrent_duplicates(s, 20);
        sqlite_keeps_the_daily_and_per_operation_limits: conformance::limits;
        sqlite_refuses_a_credit_above_the_unverified_cap: conformance::caps;
        sqlite_keeps_payment_pins: conformance::pins;
        sqlite_remembers_a_nonce_once_and_logs_callbacks: conformance::nonces_and_callbacks;
        sqlite_sweeps_only_old_keys_and_nonces: conformance::sweep;
        sqlite_lists_due_transfers_and_packets: conformance::due;
        sqlite_finds_orders_by_the_provider_s_reference: conformance::provider_refs;
        sqlite_audit_sums_match_and_balances_sum_to_zero: conformance::audit;
        sqlite_refunds_once_when_eight_refunds_race_grabs: |s| conformance::refunds_race_grabs(s, 8);
        sqlite_matches_the_reference_model_over_a_long_run: |s| conformance::model::ledger_matches_the_model(s, 0x1ed6e7, 1_000);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ten_thousand_users_grabbing_a_hundred_share_packet_take_exactly_its_shares() {
        let dir = tempfile::tempdir().unwrap();
        conformance::grab_storm(open_roomy(&dir), 100, 10_000, 2_000).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_all_runs_every_case_on_fresh_stores() {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let files = Arc::new(std::sync::atomic::AtomicU32::new(0));
        conformance::run_all(move || {
            let n = files.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = dir.path().join(format!("wallet-{n}.db"));
            Box::pin(async move { Arc::new(SqliteWalletStore::open(&path).unwrap()) as Store })
        })
        .await;
    }

    #[test]
    fn journal_rows_are_never_updated_or_deleted_and_wallets_never_go_below_zero() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteWalletStore::open(&dir.path().join("wallet.db")).unwrap();
            let l = conformance::Ledger::new(Arc::new(
                SqliteWalletStore::open(&dir.path().join("wallet.db")).unwrap(),
            ));
            l.top_up(1, 100, 0).await;
            let tamper = |sql: &'static str| store.db.write(move |c| c.execute(sql, []));
            for sql in [
                "UPDATE journal SET amount = amount + 1",
                "DELETE FROM journal",
                "UPDATE accounts SET balance = -1 WHERE account = 'w:1'",
                "INSERT INTO journal VALUES (1, 0, 'top_up', 's:topup', 'w:1', 0, 0)",
                "INSERT INTO journal VALUES (2, 0, 'top_up', 'w:1', 'w:1', 5, 0)",
            ] {
                assert!(tamper(sql).await.is_err(), "{sql}");
            }
            assert_eq!(l.wallet(1).await, 100);
            conformance::assert_balanced(&*l.store).await;
        });
    }

    #[test]
    fn the_audit_finds_a_balance_that_drifted_from_its_entries() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteWalletStore::open(&dir.path().join("wallet.db")).unwrap();
            let l = conformance::Ledger::new(Arc::new(
                SqliteWalletStore::open(&dir.path().join("wallet.db")).unwrap(),
            ));
            l.top_up(1, 100, 0).await;
            store
                .db
                .write(|c| c.execute("UPDATE accounts SET balance = 90 WHERE account = 'w:1'", []))
                .await
                .unwrap();
            let audit = store.audit().await.unwrap();
            let drifted: Vec<_> = audit
                .accounts
                .iter()
                .filter(|(_, stored, sum)| stored != sum)
                .collect();
            assert_eq!(drifted, vec![&(Account::Wallet(UserId(1)), 90, 100)]);
            assert!(audit.malformed_entries.is_empty());
        });
    }

    #[test]
    fn the_ledger_matches_the_reference_model_over_random_runs() {
        // Each run is a vector of numbers, one step each (Op::decode): a
        // failing run shrinks to the fewest and simplest steps.
        let runs = prop::collection::vec(any::<u64>(), 1..300);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let totals = std::sync::Mutex::new((0usize, 0usize, HashMap::<&str, u32>::new()));
        proptest::test_runner::TestRunner::new(proptest::test_runner::Config::with_cases(64))
            .run(&runs, |ops| {
                let seen = rt.block_on(async {
                    let dir = tempfile::tempdir().unwrap();
                    conformance::model::run_ops(open(&dir), &ops).await
                });
                let mut totals = totals.lock().unwrap();
                totals.0 += 1;
                totals.1 += ops.len();
                for (outcome, n) in seen {
                    *totals.2.entry(outcome).or_default() += n;
                }
                Ok(())
            })
            .unwrap();
        let (runs, steps, outcomes) = totals.into_inner().unwrap();
        let mut outcomes: Vec<_> = outcomes.into_iter().collect();
        outcomes.sort();
        println!("model: {runs} runs, {steps} steps, outcomes {outcomes:?}");
    }
}
