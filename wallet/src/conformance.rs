//! The behaviour every [`WalletStore`] backend must show, through the trait
//! alone. SQLite runs it in this crate's tests, each case on a fresh file;
//! another backend runs it by enabling the `conformance` feature and
//! calling these functions (or [`run_all`]) on fresh, empty stores of its
//! own. Every case ends with [`assert_balanced`]: each account's stored
//! balance equals the sum of its entries, all balances sum to zero, no
//! wallet is below zero, and no entry is malformed.
//!
//! - [`top_ups`]: a pay-in credited exactly once, a wrong amount refused,
//!   a failed pay-in, history and its pages.
//! - [`withdrawals`]: a withdrawal settled or reversed, each once.
//! - [`refusals_write_nothing`]: too little money changes nothing at all,
//!   not even the day's count.
//! - [`transfers`]: send, accept, decline; only the recipient acts; never
//!   after expiry.
//! - [`transfer_expiry`]: never early, exactly once, and listed as due.
//! - [`packets`]: grabs in share order, one per user, the luckiest, the end.
//! - [`packets_for_someone`]: exclusive and one-to-one packets.
//! - [`packet_refunds`]: the rest returned once, never early; a finished
//!   packet has nothing to return.
//! - [`idempotency`]: replays, reuse with other parameters, refusals that
//!   do not burn their key, keys per user.
//! - [`concurrent_duplicates`]: one key sent many times at once applies
//!   once.
//! - [`limits`]: per-operation, daily amount and daily count limits.
//! - [`caps`]: the balance cap of users without a verified real name.
//! - [`pins`], [`nonces_and_callbacks`], [`sweep`]: the small records.
//! - [`due`]: the expiry job's lists.
//! - [`provider_refs`]: orders found by the provider's reference.
//! - [`audit`]: the reconciliation's sums after a mixed day.
//! - [`grab_storm`]: many concurrent grabs of one packet, duplicates among
//!   them: exactly its shares are taken, each by one user.
//! - [`refunds_race_grabs`]: refunds and expiries sent many times at once,
//!   racing grabs: one refund, exact sums.
//! - [`model`]: random command sequences against a reference model.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod model;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::SeedableRng as _;
use rand::rngs::StdRng;
use superapp_kit::BoxFuture;

use crate::error::WalletError;
use crate::model::{
    Account, Applied, Command, DailyOut, Entry, EntryId, Fen, Grab, GroupId, IdemKey, Order,
    OrderId, OrderKind, OrderStatus, OutLimits, Packet, PacketId, PacketMode, PacketStatus,
    PinRecord, Place, Reason, Transfer, TransferId, TransferStatus, UserId,
};
use crate::policy;
use crate::store::{CallbackLog, Request, WalletStore};

/// A store under test.
pub type Store = Arc<dyn WalletStore>;

/// One case of the suite, run on a fresh store.
pub type Case = fn(Store) -> BoxFuture<'static, ()>;

/// Every case with its name, in the order [`run_all`] runs them. The
/// concurrency cases run at the sizes a CI machine takes in seconds.
pub const CASES: &[(&str, Case)] = &[
    ("top_ups", |s| Box::pin(top_ups(s))),
    ("withdrawals", |s| Box::pin(withdrawals(s))),
    ("refusals_write_nothing", |s| {
        Box::pin(refusals_write_nothing(s))
    }),
    ("transfers", |s| Box::pin(transfers(s))),
    ("transfer_expiry", |s| Box::pin(transfer_expiry(s))),
    ("packets", |s| Box::pin(packets(s))),
    ("packets_for_someone", |s| Box::pin(packets_for_someone(s))),
    ("packet_refunds", |s| Box::pin(packet_refunds(s))),
    ("idempotency", |s| Box::pin(idempotency(s))),
    ("concurrent_duplicates", |s| {
        Box::pin(concurrent_duplicates(s, 20))
    }),
    ("limits", |s| Box::pin(limits(s))),
    ("caps", |s| Box::pin(caps(s))),
    ("pins", |s| Box::pin(pins(s))),
    ("nonces_and_callbacks", |s| {
        Box::pin(nonces_and_callbacks(s))
    }),
    ("sweep", |s| Box::pin(sweep(s))),
    ("due", |s| Box::pin(due(s))),
    ("provider_refs", |s| Box::pin(provider_refs(s))),
    ("audit", |s| Box::pin(audit(s))),
    ("grab_storm", |s| Box::pin(grab_storm(s, 100, 1_000, 200))),
    ("refunds_race_grabs", |s| Box::pin(refunds_race_grabs(s, 8))),
    ("model", |s| {
        Box::pin(model::ledger_matches_the_model(s, 0x1ed6e7, 300))
    }),
];

/// Runs every case of [`CASES`], each on a store `make` gives (fresh and
/// empty), and prints how many ran.
pub async fn run_all(make: impl Fn() -> BoxFuture<'static, Store>) {
    for (name, case) in CASES {
        case(make().await).await;
        println!("wallet conformance: {name} passed");
    }
    println!("wallet conformance: {} cases passed", CASES.len());
}

/// Limits no case reaches unless it means to.
pub const WIDE: OutLimits = OutLimits {
    day: 0,
    per_operation: 1_000_000_000,
    daily_amount: 1_000_000_000_000,
    daily_count: 1_000_000,
};

/// Asserts that `result` is the refusal `pattern`.
macro_rules! refused {
    ($result:expr, $pattern:pat) => {{
        let result = $result;
        assert!(
            matches!(result, Err($pattern)),
            "expected {}, got {result:?}",
            stringify!($pattern)
        );
    }};
}

/// A store with a counter for the ids a service would mint.
pub struct Ledger {
    pub store: Store,
    ids: Arc<AtomicU64>,
}

impl Clone for Ledger {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            ids: self.ids.clone(),
        }
    }
}

impl Ledger {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            ids: Arc::new(AtomicU64::new(1_000)),
        }
    }

    /// A fresh id, greater than every one before.
    pub fn id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Applies `command` without a key, with a fresh entry id.
    pub async fn run(&self, command: Command, now_ms: i64) -> Result<Applied, WalletError> {
        self.store
            .apply(Request {
                command,
                entry: EntryId(self.id()),
                key: None,
                now_ms,
            })
            .await
    }

    /// Applies `command` with `user`'s idempotency key.
    pub async fn keyed(
        &self,
        command: Command,
        user: u64,
        key: &str,
        fingerprint: &str,
        now_ms: i64,
    ) -> Result<Applied, WalletError> {
        self.store
            .apply(Request {
                command,
                entry: EntryId(self.id()),
                key: Some(IdemKey {
                    user: UserId(user),
                    key: key.into(),
                    fingerprint: fingerprint.into(),
                }),
                now_ms,
            })
            .await
    }

    pub async fn balance(&self, account: Account) -> Fen {
        self.store.balance(account).await.unwrap()
    }

    pub async fn wallet(&self, user: u64) -> Fen {
        self.balance(Account::Wallet(UserId(user))).await
    }

    /// A paid top-up of `amount` into `user`'s wallet.
    pub async fn top_up(&self, user: u64, amount: Fen, now_ms: i64) -> OrderId {
        let order = order(self.id(), user, OrderKind::PayIn, amount, now_ms);
        let id = order.id;
        self.run(Command::OpenPayIn { order }, now_ms)
            .await
            .unwrap();
        self.run(Command::CreditPayIn { order: id, amount }, now_ms)
            .await
            .unwrap();
        id
    }

    /// Sends a transfer, which must pass.
    pub async fn send(
        &self,
        from: u64,
        to: u64,
        amount: Fen,
        now_ms: i64,
        expires_ms: i64,
    ) -> TransferId {
        let t = transfer(self.id(), from, to, amount, now_ms, expires_ms);
        let id = t.id;
        self.run(
            Command::SendTransfer {
                transfer: t,
                limits: WIDE,
            },
            now_ms,
        )
        .await
        .unwrap();
        id
    }

    /// Sends a packet, which must pass.
    pub async fn send_packet(&self, packet: Packet) -> PacketId {
        let id = packet.id;
        let now = packet.created_ms;
        self.run(
            Command::SendPacket {
                packet,
                limits: WIDE,
            },
            now,
        )
        .await
        .unwrap();
        id
    }

    pub async fn grab(&self, id: PacketId, user: u64, now_ms: i64) -> Result<Applied, WalletError> {
        self.run(
            Command::GrabPacket {
                id,
                user: UserId(user),
                cap: None,
            },
            now_ms,
        )
        .await
    }
}

pub fn order(id: u64, user: u64, kind: OrderKind, amount: Fen, now_ms: i64) -> Order {
    Order {
        id: OrderId(id),
        user: UserId(user),
        kind,
        amount,
        status: OrderStatus::Open,
        provider: "sandbox".into(),
        provider_ref: String::new(),
        created_ms: now_ms,
        updated_ms: now_ms,
    }
}

pub fn transfer(
    id: u64,
    from: u64,
    to: u64,
    amount: Fen,
    now_ms: i64,
    expires_ms: i64,
) -> Transfer {
    Transfer {
        id: TransferId(id),
        from: UserId(from),
        to: UserId(to),
        amount,
        memo: "lunch".into(),
        status: TransferStatus::Pending,
        created_ms: now_ms,
        expires_ms,
        settled_ms: None,
    }
}

/// A packet of `shares` in `place`, open from `now_ms` to `expires_ms`.
pub fn packet(
    id: u64,
    sender: u64,
    place: Place,
    shares: Vec<Fen>,
    now_ms: i64,
    expires_ms: i64,
) -> Packet {
    Packet {
        id: PacketId(id),
        sender: UserId(sender),
        place,
        mode: PacketMode::Lucky,
        amount: shares.iter().sum(),
        shares,
        exclusive_to: None,
        greeting: "恭喜发财".into(),
        created_ms: now_ms,
        expires_ms,
        claimed: 0,
        claimed_amount: 0,
        status: PacketStatus::Open,
        best: None,
        refunded: 0,
    }
}

const GROUP: Place = Place::Group(GroupId(9));

fn wallet(user: u64) -> Account {
    Account::Wallet(UserId(user))
}

/// The reconciliation holds: every account's stored balance is the sum of
/// its entries, the balances sum to zero, no account but top-up clearing
/// is below zero, no entry is malformed, and every closed order's entries
/// are what its status says.
pub async fn assert_balanced(store: &dyn WalletStore) {
    let audit = store.audit().await.unwrap();
    assert!(
        audit.malformed_entries.is_empty(),
        "{:?}",
        audit.malformed_entries
    );
    let mut total: i128 = 0;
    for &(account, stored, sum) in &audit.accounts {
        assert_eq!(stored, sum, "{account}: stored {stored}, entries {sum}");
        assert!(
            stored >= 0 || account.may_go_negative(),
            "{account} is at {stored}"
        );
        assert_eq!(store.balance(account).await.unwrap(), stored, "{account}");
        total += i128::from(stored);
    }
    assert_eq!(total, 0, "the balances sum to zero");
    for (order, sums) in &audit.orders {
        let expected: Vec<(Reason, Fen)> = match (order.kind, order.status) {
            (_, OrderStatus::Open) if order.kind == OrderKind::Payout => {
                vec![(Reason::Withdrawal, order.amount)]
            }
            (_, OrderStatus::Open | OrderStatus::Failed) => vec![],
            (_, OrderStatus::Paid) => vec![(Reason::TopUp, order.amount)],
            (_, OrderStatus::Settled) => vec![
                (Reason::Withdrawal, order.amount),
                (Reason::PayoutSettled, order.amount),
            ],
            (_, OrderStatus::Reversed) => vec![
                (Reason::Withdrawal, order.amount),
                (Reason::PayoutReversed, order.amount),
            ],
        };
        let mut sums = sums.clone();
        sums.sort_by_key(|(r, _)| Reason::ALL.iter().position(|x| x == r));
        assert_eq!(sums, expected, "{order:?}");
    }
}

pub async fn top_ups(store: Store) {
    let l = Ledger::new(store.clone());
    let now = 1_000;
    let o = order(l.id(), 1, OrderKind::PayIn, 500, now);
    let opened = l
        .run(Command::OpenPayIn { order: o.clone() }, now)
        .await
        .unwrap();
    assert_eq!(opened.order.as_ref(), Some(&o));
    assert!(opened.entry.is_none() && opened.balances.is_empty() && !opened.replayed);
    assert_eq!(store.order(o.id).await.unwrap(), Some(o.clone()));
    refused!(
        l.run(Command::OpenPayIn { order: o.clone() }, now).await,
        WalletError::Invalid {
            code: "duplicate_order",
            ..
        }
    );
    let zero = order(l.id(), 1, OrderKind::PayIn, 0, now);
    refused!(
        l.run(
            Command::OpenPayIn {
                order: zero.clone()
            },
            now
        )
        .await,
        WalletError::InvalidAmount { .. }
    );
    assert_eq!(store.order(zero.id).await.unwrap(), None);

    // The provider's amount must be the order's.
    refused!(
        l.run(
            Command::CreditPayIn {
                order: o.id,
                amount: 499
            },
            now
        )
        .await,
        WalletError::InvalidAmount { .. }
    );
    assert_eq!(l.wallet(1).await, 0);
    assert_eq!(
        store.order(o.id).await.unwrap().unwrap().status,
        OrderStatus::Open
    );

    let credited = l
        .run(
            Command::CreditPayIn {
                order: o.id,
                amount: 500,
            },
            now + 1,
        )
        .await
        .unwrap();
    let entry = credited.entry.clone().unwrap();
    assert_eq!(
        (
            entry.reason,
            entry.debit,
            entry.credit,
            entry.amount,
            entry.reference,
            entry.at_ms
        ),
        (
            Reason::TopUp,
            Account::TopUpClearing,
            wallet(1),
            500,
            o.id.0,
            now + 1
        )
    );
    assert_eq!(credited.balance_of(wallet(1)), Some(500));
    assert_eq!(credited.balance_of(Account::TopUpClearing), Some(-500));
    let paid = credited.order.clone().unwrap();
    assert_eq!((paid.status, paid.updated_ms), (OrderStatus::Paid, now + 1));
    assert_eq!(store.order(o.id).await.unwrap(), Some(paid));

    // However often the provider says so, a pay-in is credited once.
    for _ in 0..3 {
        refused!(
            l.run(
                Command::CreditPayIn {
                    order: o.id,
                    amount: 500
                },
                now + 2
            )
            .await,
            WalletError::OrderClosed { status: "paid" }
        );
    }
    refused!(
        l.run(Command::FailPayIn { order: o.id }, now + 2).await,
        WalletError::OrderClosed { status: "paid" }
    );
    assert_eq!(l.wallet(1).await, 500);
    assert_eq!(l.balance(Account::TopUpClearing).await, -500);
    assert_eq!(store.entry(entry.id).await.unwrap(), Some(entry.clone()));
    assert_eq!(store.entry(EntryId(1)).await.unwrap(), None);

    // History: newest first, paged by entry.
    let second = l.top_up(1, 300, now + 10).await;
    let history = store.history(wallet(1), None, 10).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1], entry);
    assert_eq!((history[0].reference, history[0].amount), (second.0, 300));
    assert_eq!(
        store.history(wallet(1), None, 1).await.unwrap(),
        vec![history[0].clone()]
    );
    assert_eq!(
        store
            .history(wallet(1), Some(history[0].id), 10)
            .await
            .unwrap(),
        vec![entry.clone()]
    );
    assert!(
        store
            .history(wallet(1), Some(entry.id), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .history(Account::TopUpClearing, None, 10)
            .await
            .unwrap(),
        history
    );
    assert!(store.history(wallet(2), None, 10).await.unwrap().is_empty());

    // A failed pay-in credits nothing, then or later.
    let failed = order(l.id(), 1, OrderKind::PayIn, 700, now);
    l.run(
        Command::OpenPayIn {
            order: failed.clone(),
        },
        now,
    )
    .await
    .unwrap();
    let applied = l
        .run(Command::FailPayIn { order: failed.id }, now + 5)
        .await
        .unwrap();
    assert!(applied.entry.is_none());
    assert_eq!(applied.order.unwrap().status, OrderStatus::Failed);
    refused!(
        l.run(
            Command::CreditPayIn {
                order: failed.id,
                amount: 700
            },
            now + 6
        )
        .await,
        WalletError::OrderClosed { status: "failed" }
    );
    refused!(
        l.run(Command::FailPayIn { order: failed.id }, now + 6)
            .await,
        WalletError::OrderClosed { status: "failed" }
    );
    refused!(
        l.run(
            Command::CreditPayIn {
                order: OrderId(1),
                amount: 1
            },
            now
        )
        .await,
        WalletError::OrderNotFound
    );
    assert_eq!(l.wallet(1).await, 800);
    assert_balanced(&*store).await;
}

pub async fn withdrawals(store: Store) {
    let l = Ledger::new(store.clone());
    let now = 1_000;
    let top_up = l.top_up(1, 1_000, now).await;
    let first = order(l.id(), 1, OrderKind::Payout, 300, now);
    let applied = l
        .run(
            Command::Withdraw {
                order: first.clone(),
                limits: WIDE,
            },
            now,
        )
        .await
        .unwrap();
    let entry = applied.entry.unwrap();
    assert_eq!(
        (entry.reason, entry.debit, entry.credit, entry.amount),
        (Reason::Withdrawal, wallet(1), Account::PayoutClearing, 300)
    );
    assert_eq!(
        applied.daily,
        Some(DailyOut {
            user: UserId(1),
            day: 0,
            amount: 300,
            count: 1
        })
    );
    assert_eq!(l.wallet(1).await, 700);
    assert_eq!(l.balance(Account::PayoutClearing).await, 300);
    refused!(
        l.run(
            Command::Withdraw {
                order: first.clone(),
                limits: WIDE
            },
            now
        )
        .await,
        WalletError::Invalid {
            code: "duplicate_order",
            ..
        }
    );
    // A payout is not a pay-in, nor the other way round.
    refused!(
        l.run(
            Command::CreditPayIn {
                order: first.id,
                amount: 300
            },
            now
        )
        .await,
        WalletError::OrderNotFound
    );
    refused!(
        l.run(Command::ReversePayout { order: top_up }, now).await,
        WalletError::OrderNotFound
    );
    refused!(
        l.run(
            Command::SettlePayout {
                order: first.id,
                amount: 299
            },
            now
        )
        .await,
        WalletError::InvalidAmount { .. }
    );
    let settled = l
        .run(
            Command::SettlePayout {
                order: first.id,
                amount: 300,
            },
            now + 1,
        )
        .await
        .unwrap();
    let entry = settled.entry.unwrap();
    assert_eq!(
        (entry.reason, entry.debit, entry.credit, entry.amount),
        (
            Reason::PayoutSettled,
            Account::PayoutClearing,
            Account::TopUpClearing,
            300
        )
    );
    assert_eq!(settled.order.unwrap().status, OrderStatus::Settled);
    assert_eq!(l.balance(Account::PayoutClearing).await, 0);
    assert_eq!(l.balance(Account::TopUpClearing).await, -700);
    refused!(
        l.run(
            Command::SettlePayout {
                order: first.id,
                amount: 300
            },
            now + 2
        )
        .await,
        WalletError::OrderClosed { status: "settled" }
    );
    refused!(
        l.run(Command::ReversePayout { order: first.id }, now + 2)
            .await,
        WalletError::OrderClosed { status: "settled" }
    );

    let second = order(l.id(), 1, OrderKind::Payout, 200, now);
    l.run(
        Command::Withdraw {
            order: second.clone(),
            limits: WIDE,
        },
        now,
    )
    .await
    .unwrap();
    assert_eq!(l.wallet(1).await, 500);
    let reversed = l
        .run(Command::ReversePayout { order: second.id }, now + 3)
        .await
        .unwrap();
    let entry = reversed.entry.unwrap();
    assert_eq!(
        (entry.reason, entry.debit, entry.credit, entry.amount),
        (
            Reason::PayoutReversed,
            Account::PayoutClearing,
            wallet(1),
            200
        )
    );
    assert_eq!(reversed.order.unwrap().status, OrderStatus::Reversed);
    refused!(
        l.run(Command::ReversePayout { order: second.id }, now + 4)
            .await,
        WalletError::OrderClosed { status: "reversed" }
    );
    refused!(
        l.run(
            Command::SettlePayout {
                order: second.id,
                amount: 200
            },
            now + 4
        )
        .await,
        WalletError::OrderClosed { status: "reversed" }
    );
    assert_eq!(l.wallet(1).await, 700);
    assert_eq!(l.balance(Account::PayoutClearing).await, 0);
    assert_eq!(
        store.order(second.id).await.unwrap().unwrap().status,
        OrderStatus::Reversed
    );
    assert_balanced(&*store).await;
}

pub async fn refusals_write_nothing(store: Store) {
    let l = Ledger::new(store.clone());
    let now = 1_000;
    l.top_up(1, 100, now).await;
    let before = store.audit().await.unwrap();
    let history = store.history(wallet(1), None, 10).await.unwrap();

    let t = transfer(l.id(), 1, 2, 101, now, now + 1_000);
    refused!(
        l.run(
            Command::SendTransfer {
                transfer: t.clone(),
                limits: WIDE
            },
            now
        )
        .await,
        WalletError::InsufficientFunds
    );
    assert_eq!(store.transfer(t.id).await.unwrap(), None);
    let p = packet(l.id(), 1, GROUP, vec![60, 41], now, now + 1_000);
    refused!(
        l.run(
            Command::SendPacket {
                packet: p.clone(),
                limits: WIDE
            },
            now
        )
        .await,
        WalletError::InsufficientFunds
    );
    assert_eq!(store.packet(p.id).await.unwrap(), None);
    let o = order(l.id(), 1, OrderKind::Payout, 101, now);
    refused!(
        l.run(
            Command::Withdraw {
                order: o.clone(),
                limits: WIDE
            },
            now
        )
        .await,
        WalletError::InsufficientFunds
    );
    assert_eq!(store.order(o.id).await.unwrap(), None);
    // Someone who never had money has none to send.
    refused!(
        l.run(
            Command::SendTransfer {
                transfer: transfer(l.id(), 3, 1, 1, now, now + 1_000),
                limits: WIDE
            },
            now
        )
        .await,
        WalletError::InsufficientFunds
    );
    assert_eq!(store.audit().await.unwrap(), before);
    assert_eq!(store.history(wallet(1), None, 10).await.unwrap(), history);
    assert!(store.history(wallet(3), None, 10).await.unwrap().is_empty());

    // The refusals did not count against the day: the first send that
    // passes is the day's first.
    let all = l
        .run(
            Command::SendTransfer {
                transfer: transfer(l.id(), 1, 2, 100, now, now + 1_000),
                limits: WIDE,
            },
            now,
        )
        .await
        .unwrap();
    assert_eq!(all.daily.map(|d| (d.amount, d.count)), Some((100, 1)));
    assert_eq!(l.wallet(1).await, 0);
    refused!(
        l.run(
            Command::SendTransfer {
                transfer: transfer(l.id(), 1, 2, 1, now, now + 1_000),
                limits: WIDE
            },
            now
        )
        .await,
        WalletError::InsufficientFunds
    );
    assert_eq!(l.wallet(1).await, 0);
    assert_balanced(&*store).await;
}

pub async fn transfers(store: Store) {
    let l = Ledger::new(store.clone());
    let now = 1_000;
    l.top_up(1, 1_000, now).await;
    let t = transfer(l.id(), 1, 2, 300, now, now + 1_000);
    let sent = l
        .run(
            Command::SendTransfer {
                transfer: t.clone(),
                limits: WIDE,
            },
            now,
        )
        .await
        .unwrap();
    assert_eq!(sent.transfer.as_ref(), Some(&t));
    let entry = sent.entry.unwrap();
    assert_eq!(
        (
            entry.reason,
            entry.debit,
            entry.credit,
            entry.amount,
            entry.reference
        ),
        (
            Reason::TransferSent,
            wallet(1),
            Account::TransferEscrow(t.id),
            300,
            t.id.0
        )
    );
    assert_eq!(store.transfer(t.id).await.unwrap(), Some(t.clone()));
    assert_eq!(l.wallet(1).await, 700);
    assert_eq!(l.balance(Account::TransferEscrow(t.id)).await, 300);
    refused!(
        l.run(
            Command::SendTransfer {
                transfer: t.clone(),
                limits: WIDE
            },
            now
        )
        .await,
        WalletError::Invalid {
            code: "duplicate_transfer",
            ..
        }
    );

    // Only the recipient accepts or declines; to anyone else there is no
    // such transfer.
    for by in [1, 3] {
        refused!(
            l.run(
                Command::AcceptTransfer {
                    id: t.id,
                    by: UserId(by),
                    cap: None
                },
                now + 1
            )
            .await,
            WalletError::TransferNotFound
        );
        refused!(
            l.run(
                Command::DeclineTransfer {
                    id: t.id,
                    by: UserId(by)
                },
                now + 1
            )
            .await,
            WalletError::TransferNotFound
        );
    }
    let accepted = l
        .run(
            Command::AcceptTransfer {
                id: t.id,
                by: UserId(2),
                cap: None,
            },
            now + 2,
        )
        .await
        .unwrap();
    let entry = accepted.entry.unwrap();
    assert_eq!(
        (entry.reason, entry.debit, entry.credit, entry.amount),
        (
            Reason::TransferAccepted,
            Account::TransferEscrow(t.id),
            wallet(2),
            300
        )
    );
    let done = accepted.transfer.unwrap();
    assert_eq!(
        (done.status, done.settled_ms),
        (TransferStatus::Accepted, Some(now + 2))
    );
    assert_eq!(store.transfer(t.id).await.unwrap(), Some(done));
    assert_eq!(l.wallet(2).await, 300);
    assert_eq!(l.balance(Account::TransferEscrow(t.id)).await, 0);
    refused!(
        l.run(
            Command::AcceptTransfer {
                id: t.id,
                by: UserId(2),
                cap: None
            },
            now + 3
        )
        .await,
        WalletError::TransferClosed {
            status: TransferStatus::Accepted
        }
    );
    refused!(
        l.run(
            Command::DeclineTransfer {
                id: t.id,
                by: UserId(2)
            },
            now + 3
        )
        .await,
        WalletError::TransferClosed {
            status: TransferStatus::Accepted
        }
    );
    refused!(
        l.run(Command::ExpireTransfer { id: t.id }, now + 5_000)
            .await,
        WalletError::NothingToDo { .. }
    );

    let declined = l.send(1, 2, 200, now, now + 1_000).await;
    assert_eq!(l.wallet(1).await, 500);
    let applied = l
        .run(
            Command::DeclineTransfer {
                id: declined,
                by: UserId(2),
            },
            now + 4,
        )
        .await
        .unwrap();
    let entry = applied.entry.unwrap();
    assert_eq!(
        (entry.reason, entry.credit, entry.amount),
        (Reason::TransferDeclined, wallet(1), 200)
    );
    assert_eq!(
        store.transfer(declined).await.unwrap().unwrap().status,
        TransferStatus::Declined
    );
    assert_eq!(l.wallet(1).await, 700);

    refused!(
        l.run(
            Command::SendTransfer {
                transfer: transfer(l.id(), 1, 1, 10, now, now + 1_000),
                limits: WIDE
            },
            now
        )
        .await,
        WalletError::ToSelf
    );
    refused!(
        l.run(
            Command::SendTransfer {
                transfer: transfer(l.id(), 1, 2, 0, now, now + 1_000),
                limits: WIDE
            },
            now
        )
        .await,
        WalletError::InvalidAmount { .. }
    );
    // Once its time is up, a transfer can only go back.
    let late = l.send(1, 2, 100, now, now + 10).await;
    refused!(
        l.run(
            Command::AcceptTransfer {
                id: late,
                by: UserId(2),
                cap: None
            },
            now + 10
        )
        .await,
        WalletError::TransferClosed {
            status: TransferStatus::Expired
        }
    );
    assert_eq!(
        store.transfer(late).await.unwrap().unwrap().status,
        TransferStatus::Pending
    );
    refused!(
        l.run(
            Command::AcceptTransfer {
                id: TransferId(1),
                by: UserId(2),
                cap: None
            },
            now
        )
        .await,
        WalletError::TransferNotFound
    );
    assert_eq!(store.transfer(TransferId(1)).await.unwrap(), None);
    assert_eq!(l.wallet(1).await, 600);
    assert_eq!(l.wallet(2).await, 300);
    assert_balanced(&*store).await;
}

pub async fn transfer_expiry(store: Store) {
    let l = Ledger::new(store.clone());
    let (now, expires) = (1_000, 2_000);
    l.top_up(1, 1_000, now).await;
    let t = l.send(1, 2, 400, now, expires).await;
    assert!(
        store
            .due_transfers(expires - 1, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.due_transfers(expires, 10).await.unwrap(), vec![t]);
    // Never early: a millisecond before, nothing moves.
    refused!(
        l.run(Command::ExpireTransfer { id: t }, expires - 1).await,
        WalletError::NothingToDo { .. }
    );
    assert_eq!(l.wallet(1).await, 600);
    let expired = l
        .run(Command::ExpireTransfer { id: t }, expires)
        .await
        .unwrap();
    let entry = expired.entry.unwrap();
    assert_eq!(
        (entry.reason, entry.debit, entry.credit, entry.amount),
        (
            Reason::TransferExpired,
            Account::TransferEscrow(t),
            wallet(1),
            400
        )
    );
    let t_now = store.transfer(t).await.unwrap().unwrap();
    assert_eq!(
        (t_now.status, t_now.settled_ms),
        (TransferStatus::Expired, Some(expires))
    );
    // Exactly once, however often the job comes back.
    for later in [expires, expires + 1, expires + 100_000] {
        refused!(
            l.run(Command::ExpireTransfer { id: t }, later).await,
            WalletError::NothingToDo { .. }
        );
    }
    assert_eq!(l.wallet(1).await, 1_000);
    assert!(store.due_transfers(i64::MAX, 10).await.unwrap().is_empty());
    refused!(
        l.run(
            Command::AcceptTransfer {
                id: t,
                by: UserId(2),
                cap: None
            },
            expires + 1
        )
        .await,
        WalletError::TransferClosed {
            status: TransferStatus::Expired
        }
    );
    refused!(
        l.run(Command::ExpireTransfer { id: TransferId(1) }, expires)
            .await,
        WalletError::TransferNotFound
    );
    assert_eq!(
        store
            .history(Account::TransferEscrow(t), None, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_balanced(&*store).await;
}

pub async fn packets(store: Store) {
    let l = Ledger::new(store.clone());
    let (now, expires) = (1_000, 100_000);
    l.top_up(1, 1_000, now).await;
    let p = packet(l.id(), 1, GROUP, vec![30, 50, 20], now, expires);
    let sent = l
        .run(
            Command::SendPacket {
                packet: p.clone(),
                limits: WIDE,
            },
            now,
        )
        .await
        .unwrap();
    assert_eq!(sent.packet.as_ref(), Some(&p));
    let entry = sent.entry.unwrap();
    assert_eq!(
        (
            entry.reason,
            entry.debit,
            entry.credit,
            entry.amount,
            entry.reference
        ),
        (
            Reason::PacketSent,
            wallet(1),
            Account::PacketEscrow(p.id),
            100,
            p.id.0
        )
    );
    assert_eq!(store.packet(p.id).await.unwrap(), Some((p.clone(), vec![])));
    assert_eq!(l.wallet(1).await, 900);
    refused!(
        l.run(
            Command::SendPacket {
                packet: p.clone(),
                limits: WIDE
            },
            now
        )
        .await,
        WalletError::Invalid {
            code: "duplicate_packet",
            ..
        }
    );

    let first = l.grab(p.id, 2, now + 1).await.unwrap();
    assert_eq!(
        first.grab,
        Some(Grab {
            packet: p.id,
            user: UserId(2),
            amount: 30,
            index: 0,
            at_ms: now + 1
        })
    );
    let entry = first.entry.unwrap();
    assert_eq!(
        (entry.reason, entry.debit, entry.credit, entry.amount),
        (
            Reason::PacketGrabbed,
            Account::PacketEscrow(p.id),
            wallet(2),
            30
        )
    );
    assert_eq!(first.packet.as_ref().unwrap().best, Some((UserId(2), 30)));
    refused!(l.grab(p.id, 2, now + 2).await, WalletError::AlreadyGrabbed);
    let second = l.grab(p.id, 3, now + 3).await.unwrap();
    assert_eq!(
        second.grab.as_ref().map(|g| (g.amount, g.index)),
        Some((50, 1))
    );
    // The sender may open their own group packet too.
    let last = l.grab(p.id, 1, now + 4).await.unwrap();
    let finished = last.packet.unwrap();
    assert_eq!(
        (
            finished.status,
            finished.claimed,
            finished.claimed_amount,
            finished.best
        ),
        (PacketStatus::Finished, 3, 100, Some((UserId(3), 50)))
    );
    refused!(l.grab(p.id, 4, now + 5).await, WalletError::PacketFinished);
    refused!(l.grab(p.id, 2, now + 5).await, WalletError::AlreadyGrabbed);
    let (stored, grabs) = store.packet(p.id).await.unwrap().unwrap();
    assert_eq!(stored, finished);
    let order: Vec<(u64, Fen, u32)> = grabs
        .iter()
        .map(|g| (g.user.0, g.amount, g.index))
        .collect();
    assert_eq!(order, vec![(2, 30, 0), (3, 50, 1), (1, 20, 2)]);
    assert_eq!(l.balance(Account::PacketEscrow(p.id)).await, 0);
    assert_eq!(
        (l.wallet(1).await, l.wallet(2).await, l.wallet(3).await),
        (920, 30, 50)
    );

    // Among equal shares the earliest grab is the luckiest.
    let tie = packet(l.id(), 1, GROUP, vec![40, 40, 20], now, expires);
    let tie = l.send_packet(tie).await;
    l.grab(tie, 5, now + 1).await.unwrap();
    let applied = l.grab(tie, 6, now + 2).await.unwrap();
    assert_eq!(applied.packet.unwrap().best, Some((UserId(5), 40)));

    // Drawn shares must be whole: at least 1 fen each, summing to the amount.
    for shares in [vec![], vec![100, 0], vec![101, -1]] {
        let mut bad = packet(l.id(), 1, GROUP, shares, now, expires);
        bad.amount = 100;
        refused!(
            l.run(
                Command::SendPacket {
                    packet: bad,
                    limits: WIDE
                },
                now
            )
            .await,
            WalletError::InvalidAmount { .. }
        );
    }
    let mut short = packet(l.id(), 1, GROUP, vec![30, 50], now, expires);
    short.amount = 100;
    refused!(
        l.run(
            Command::SendPacket {
                packet: short.clone(),
                limits: WIDE
            },
            now
        )
        .await,
        WalletError::InvalidAmount { .. }
    );
    assert_eq!(store.packet(short.id).await.unwrap(), None);
    refused!(
        l.grab(PacketId(1), 2, now).await,
        WalletError::PacketNotFound
    );
    assert_balanced(&*store).await;
}

pub async fn packets_for_someone(store: Store) {
    let l = Ledger::new(store.clone());
    let (now, expires) = (1_000, 100_000);
    l.top_up(1, 1_000, now).await;
    let mut exclusive = packet(l.id(), 1, GROUP, vec![100], now, expires);
    exclusive.mode = PacketMode::Exclusive;
    exclusive.exclusive_to = Some(UserId(3));
    let exclusive = l.send_packet(exclusive).await;
    for other in [1, 2, 4] {
        refused!(
            l.grab(exclusive, other, now + 1).await,
            WalletError::NotForYou
        );
    }
    let applied = l.grab(exclusive, 3, now + 1).await.unwrap();
    assert_eq!(applied.grab.unwrap().amount, 100);
    // Refused as not theirs even once it is finished: it never was.
    refused!(l.grab(exclusive, 2, now + 2).await, WalletError::NotForYou);

    let direct = packet(l.id(), 1, Place::Direct(UserId(2)), vec![50], now, expires);
    let direct = l.send_packet(direct).await;
    for other in [1, 3] {
        refused!(l.grab(direct, other, now + 1).await, WalletError::NotForYou);
    }
    l.grab(direct, 2, now + 1).await.unwrap();
    assert_eq!(
        (l.wallet(1).await, l.wallet(2).await, l.wallet(3).await),
        (850, 50, 100)
    );
    let (p, grabs) = store.packet(direct).await.unwrap().unwrap();
    assert_eq!(p.place, Place::Direct(UserId(2)));
    assert_eq!(grabs.len(), 1);
    assert_balanced(&*store).await;
}

pub async fn packet_refunds(store: Store) {
    let l = Ledger::new(store.clone());
    let (now, expires) = (1_000, 2_000);
    l.top_up(1, 1_000, now).await;
    let mut p = packet(l.id(), 1, GROUP, vec![34, 33, 33], now, expires);
    p.mode = PacketMode::Equal;
    let p = l.send_packet(p).await;
    l.grab(p, 2, now + 500).await.unwrap();
    // Never early.
    refused!(
        l.run(Command::RefundPacket { id: p }, expires - 1).await,
        WalletError::NothingToDo { .. }
    );
    assert!(store.due_packets(expires - 1, 10).await.unwrap().is_empty());
    assert_eq!(store.due_packets(expires, 10).await.unwrap(), vec![p]);
    // At its expiry nobody opens it any more.
    refused!(l.grab(p, 3, expires).await, WalletError::PacketExpired);
    let refunded = l
        .run(Command::RefundPacket { id: p }, expires)
        .await
        .unwrap();
    let entry = refunded.entry.unwrap();
    assert_eq!(
        (entry.reason, entry.debit, entry.credit, entry.amount),
        (
            Reason::PacketRefunded,
            Account::PacketEscrow(p),
            wallet(1),
            66
        )
    );
    let closed = refunded.packet.unwrap();
    assert_eq!(
        (closed.status, closed.refunded, closed.claimed_amount),
        (PacketStatus::Refunded, 66, 34)
    );
    assert_eq!(store.packet(p).await.unwrap().unwrap().0, closed);
    // Exactly once.
    for later in [expires, expires + 1, expires + 1_000_000] {
        refused!(
            l.run(Command::RefundPacket { id: p }, later).await,
            WalletError::NothingToDo { .. }
        );
    }
    refused!(l.grab(p, 3, expires + 1).await, WalletError::PacketExpired);
    refused!(l.grab(p, 3, now + 600).await, WalletError::PacketExpired);
    assert!(store.due_packets(i64::MAX, 10).await.unwrap().is_empty());
    assert_eq!(l.wallet(1).await, 966);
    assert_eq!(l.balance(Account::PacketEscrow(p)).await, 0);

    // A finished packet has nothing to return.
    let done = l
        .send_packet(packet(l.id(), 1, GROUP, vec![10], now, expires))
        .await;
    l.grab(done, 2, now + 1).await.unwrap();
    assert!(store.due_packets(i64::MAX, 10).await.unwrap().is_empty());
    refused!(
        l.run(Command::RefundPacket { id: done }, expires + 1).await,
        WalletError::NothingToDo { .. }
    );
    refused!(
        l.run(Command::RefundPacket { id: PacketId(1) }, expires)
            .await,
        WalletError::PacketNotFound
    );
    let refunds = store
        .history(wallet(1), None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.reason == Reason::PacketRefunded)
        .count();
    assert_eq!(refunds, 1);
    assert_eq!(l.wallet(1).await, 956);
    assert_balanced(&*store).await;
}

pub async fn idempotency(store: Store) {
    let l = Ledger::new(store.clone());
    let now = 1_000;
    l.top_up(1, 1_000, now).await;
    let send = |l: &Ledger, amount: Fen| Command::SendTransfer {
        transfer: transfer(l.id(), 1, 2, amount, now, now + 10_000),
        limits: WIDE,
    };
    let first = l.keyed(send(&l, 100), 1, "k1", "A", now).await.unwrap();
    assert!(!first.replayed);
    // A retry mints new ids, as a service would; the first result answers.
    for _ in 0..3 {
        let again = l.keyed(send(&l, 100), 1, "k1", "A", now + 1).await.unwrap();
        assert!(again.replayed);
        assert_eq!(
            Applied {
                replayed: false,
                ..again.clone()
            },
            first
        );
    }
    assert_eq!(l.wallet(1).await, 900);
    assert_eq!(store.history(wallet(1), None, 10).await.unwrap().len(), 2);
    refused!(
        l.keyed(send(&l, 101), 1, "k1", "B", now).await,
        WalletError::IdempotencyKeyReused
    );
    // Another user's key of the same spelling is theirs alone.
    let theirs = l
        .keyed(
            Command::OpenPayIn {
                order: order(l.id(), 2, OrderKind::PayIn, 50, now),
            },
            2,
            "k1",
            "A",
            now,
        )
        .await
        .unwrap();
    assert!(!theirs.replayed && theirs.order.is_some());

    // A refusal does not burn its key: after a top-up the same request passes.
    refused!(
        l.keyed(send(&l, 5_000), 1, "k2", "C", now).await,
        WalletError::InsufficientFunds
    );
    refused!(
        l.keyed(send(&l, 5_000), 1, "k2", "C", now).await,
        WalletError::InsufficientFunds
    );
    l.top_up(1, 5_000, now).await;
    let passed = l.keyed(send(&l, 5_000), 1, "k2", "C", now).await.unwrap();
    assert!(!passed.replayed);
    assert_eq!(l.wallet(1).await, 900);

    // A replay answers the first result even when the ledger moved on, and
    // even when the command would now be refused.
    let t = first.transfer.clone().unwrap();
    l.run(
        Command::AcceptTransfer {
            id: t.id,
            by: UserId(2),
            cap: None,
        },
        now + 2,
    )
    .await
    .unwrap();
    let again = l.keyed(send(&l, 100), 1, "k1", "A", now + 3).await.unwrap();
    assert_eq!(again.transfer, Some(t));
    assert!(again.replayed);

    // Grabs replay their share.
    let p = l
        .send_packet(packet(l.id(), 1, GROUP, vec![7, 3], now, now + 10_000))
        .await;
    let grab = |user: u64| Command::GrabPacket {
        id: p,
        user: UserId(user),
        cap: None,
    };
    let grabbed = l.keyed(grab(3), 3, "g", "P", now).await.unwrap();
    let replayed = l.keyed(grab(3), 3, "g", "P", now).await.unwrap();
    assert_eq!(replayed.grab, grabbed.grab);
    assert_eq!(replayed.packet, grabbed.packet);
    assert!(replayed.replayed);
    assert_eq!(l.wallet(3).await, 7);
    assert_eq!(store.packet(p).await.unwrap().unwrap().1.len(), 1);
    assert_balanced(&*store).await;
}

/// `tasks` copies of one keyed request sent at once apply once; every copy
/// answers the same entry.
pub async fn concurrent_duplicates(store: Store, tasks: usize) {
    let l = Ledger::new(store.clone());
    let now = 1_000;
    l.top_up(1, 1_000, now).await;
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let l = l.clone();
        handles.push(tokio::spawn(async move {
            let command = Command::SendTransfer {
                transfer: transfer(l.id(), 1, 2, 100, now, now + 10_000),
                limits: WIDE,
            };
            l.keyed(command, 1, "same", "F", now).await
        }));
    }
    let mut results = Vec::new();
    for h in handles {
        results.push(h.await.unwrap().unwrap());
    }
    assert_eq!(results.iter().filter(|a| !a.replayed).count(), 1);
    let entry = results[0].entry.clone().unwrap();
    assert!(results.iter().all(|a| a.entry.as_ref() == Some(&entry)));
    assert_eq!(l.wallet(1).await, 900);
    let sent: Vec<Entry> = store
        .history(wallet(1), None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.reason == Reason::TransferSent)
        .collect();
    assert_eq!(sent, vec![entry]);
    assert_balanced(&*store).await;
}

pub async fn limits(store: Store) {
    let l = Ledger::new(store.clone());
    let now = 1_000;
    l.top_up(1, 100_000, now).await;
    l.top_up(2, 100_000, now).await;
    let day5 = OutLimits {
        day: 5,
        per_operation: 1_000,
        daily_amount: 2_500,
        daily_count: 3,
    };
    let send = |l: &Ledger, from: u64, amount: Fen, limits: OutLimits| Command::SendTransfer {
        transfer: transfer(l.id(), from, 9, amount, now, now + 10_000),
        limits,
    };
    refused!(
        l.run(send(&l, 1, 1_001, day5), now).await,
        WalletError::OverOperationLimit { max: 1_000 }
    );
    let a = l.run(send(&l, 1, 1_000, day5), now).await.unwrap();
    assert_eq!(
        a.daily,
        Some(DailyOut {
            user: UserId(1),
            day: 5,
            amount: 1_000,
            count: 1
        })
    );
    let b = l
        .run(
            Command::SendPacket {
                packet: packet(l.id(), 1, GROUP, vec![600, 400], now, now + 10_000),
                limits: day5,
            },
            now,
        )
        .await
        .unwrap();
    assert_eq!(b.daily.map(|d| (d.amount, d.count)), Some((2_000, 2)));
    let withdraw = |l: &Ledger, amount: Fen| Command::Withdraw {
        order: order(l.id(), 1, OrderKind::Payout, amount, now),
        limits: day5,
    };
    refused!(
        l.run(withdraw(&l, 600), now).await,
        WalletError::OverDailyLimit { max: 2_500 }
    );
    let c = l.run(withdraw(&l, 500), now).await.unwrap();
    assert_eq!(c.daily.map(|d| (d.amount, d.count)), Some((2_500, 3)));
    refused!(
        l.run(send(&l, 1, 1, day5), now).await,
        WalletError::OverDailyCount { max: 3 }
    );
    // Another user's day is their own; the next day starts afresh.
    let other = l.run(send(&l, 2, 1_000, day5), now).await.unwrap();
    assert_eq!(other.daily.map(|d| (d.user, d.count)), Some((UserId(2), 1)));
    let day6 = OutLimits { day: 6, ..day5 };
    let next = l.run(send(&l, 1, 1_000, day6), now).await.unwrap();
    assert_eq!(
        next.daily,
        Some(DailyOut {
            user: UserId(1),
            day: 6,
            amount: 1_000,
            count: 1
        })
    );
    assert_eq!(l.wallet(1).await, 100_000 - 1_000 - 1_000 - 500 - 1_000);
    assert_balanced(&*store).await;
}

pub async fn caps(store: Store) {
    let l = Ledger::new(store.clone());
    let now = 1_000;
    l.top_up(1, 1_000, now).await;
    let t = l.send(1, 2, 300, now, now + 10_000).await;
    let accept = |cap| Command::AcceptTransfer {
        id: t,
        by: UserId(2),
        cap,
    };
    refused!(
        l.run(accept(Some(299)), now).await,
        WalletError::RealNameRequired
    );
    assert_eq!(
        store.transfer(t).await.unwrap().unwrap().status,
        TransferStatus::Pending
    );
    assert_eq!(l.wallet(2).await, 0);
    assert_eq!(l.balance(Account::TransferEscrow(t)).await, 300);
    // Exactly the cap is allowed.
    l.run(accept(Some(300)), now).await.unwrap();
    assert_eq!(l.wallet(2).await, 300);

    let p = l
        .send_packet(packet(l.id(), 1, GROUP, vec![100, 100], now, now + 10_000))
        .await;
    let grab = |user: u64, cap| Command::GrabPacket {
        id: p,
        user: UserId(user),
        cap,
    };
    refused!(
        l.run(grab(2, Some(399)), now).await,
        WalletError::RealNameRequired
    );
    let (unchanged, grabs) = store.packet(p).await.unwrap().unwrap();
    assert_eq!((unchanged.claimed, grabs.len()), (0, 0));
    assert_eq!(l.wallet(2).await, 300);
    l.run(grab(2, None), now).await.unwrap();
    l.run(grab(3, Some(100)), now).await.unwrap();
    assert_eq!((l.wallet(2).await, l.wallet(3).await), (400, 100));
    assert_balanced(&*store).await;
}

pub async fn pins(store: Store) {
    assert_eq!(store.pin(UserId(1)).await.unwrap(), None);
    let record = PinRecord {
        hash: "$argon2id$v=19$x".into(),
        failures: 0,
        locked_until_ms: 0,
        updated_ms: 10,
    };
    store.put_pin(UserId(1), record.clone()).await.unwrap();
    assert_eq!(store.pin(UserId(1)).await.unwrap(), Some(record.clone()));
    let tried = PinRecord {
        failures: 5,
        locked_until_ms: 99_999,
        updated_ms: 20,
        ..record.clone()
    };
    store.put_pin(UserId(1), tried.clone()).await.unwrap();
    assert_eq!(store.pin(UserId(1)).await.unwrap(), Some(tried));
    assert_eq!(store.pin(UserId(2)).await.unwrap(), None);
}

pub async fn nonces_and_callbacks(store: Store) {
    assert!(store.remember_nonce("n1".into(), 1_000).await.unwrap());
    assert!(!store.remember_nonce("n1".into(), 1_001).await.unwrap());
    assert!(!store.remember_nonce("n1".into(), 999).await.unwrap());
    assert!(store.remember_nonce("n2".into(), 1_000).await.unwrap());
    assert!(store.callbacks(10).await.unwrap().is_empty());
    let log = |received_ms: i64, nonce: &str, verdict: &str| CallbackLog {
        received_ms,
        nonce: nonce.into(),
        verdict: verdict.into(),
        order: Some(OrderId(received_ms as u64)),
        body_sha256: "ab".repeat(32),
    };
    store.log_callback(log(1, "a", "applied")).await.unwrap();
    store.log_callback(log(3, "b", "duplicate")).await.unwrap();
    store
        .log_callback(CallbackLog {
            order: None,
            ..log(2, "c", "bad_signature")
        })
        .await
        .unwrap();
    let logs = store.callbacks(10).await.unwrap();
    let nonces: Vec<&str> = logs.iter().map(|l| l.nonce.as_str()).collect();
    assert_eq!(nonces, vec!["b", "c", "a"]);
    assert_eq!(logs[0], log(3, "b", "duplicate"));
    assert_eq!(logs[1].order, None);
    assert_eq!(store.callbacks(2).await.unwrap(), logs[..2].to_vec());
}

pub async fn sweep(store: Store) {
    let l = Ledger::new(store.clone());
    let keep = 1_000;
    let open = |l: &Ledger, now: i64| Command::OpenPayIn {
        order: order(l.id(), 1, OrderKind::PayIn, 10, now),
    };
    let old = l.keyed(open(&l, 0), 1, "old", "A", 0).await.unwrap();
    l.keyed(open(&l, 4_500), 1, "edge", "A", 4_500)
        .await
        .unwrap();
    l.keyed(open(&l, 5_000), 1, "new", "A", 5_000)
        .await
        .unwrap();
    assert!(store.remember_nonce("old".into(), 0).await.unwrap());
    assert!(store.remember_nonce("edge".into(), 4_500).await.unwrap());
    assert!(store.remember_nonce("new".into(), 5_000).await.unwrap());
    store
        .log_callback(CallbackLog {
            received_ms: 0,
            nonce: "old".into(),
            verdict: "applied".into(),
            order: None,
            body_sha256: String::new(),
        })
        .await
        .unwrap();
    let audit = store.audit().await.unwrap();

    // Older than `keep` goes; exactly `keep` old stays.
    assert_eq!(store.sweep(5_500, keep).await.unwrap(), 2);
    assert_eq!(store.sweep(5_500, keep).await.unwrap(), 0);
    assert!(store.remember_nonce("old".into(), 5_500).await.unwrap());
    assert!(!store.remember_nonce("edge".into(), 5_500).await.unwrap());
    assert!(!store.remember_nonce("new".into(), 5_500).await.unwrap());
    let fresh = l
        .keyed(open(&l, 5_500), 1, "old", "B", 5_500)
        .await
        .unwrap();
    assert!(!fresh.replayed);
    refused!(
        l.keyed(open(&l, 5_500), 1, "edge", "B", 5_500).await,
        WalletError::IdempotencyKeyReused
    );
    refused!(
        l.keyed(open(&l, 5_500), 1, "new", "B", 5_500).await,
        WalletError::IdempotencyKeyReused
    );
    // Nothing else is swept: orders, the ledger, the callback log.
    let order = old.order.unwrap();
    assert_eq!(store.order(order.id).await.unwrap(), Some(order));
    assert_eq!(store.callbacks(10).await.unwrap().len(), 1);
    let after = store.audit().await.unwrap();
    assert_eq!(after.accounts, audit.accounts);
    assert_eq!(after.orders.len(), audit.orders.len() + 1);
}

pub async fn due(store: Store) {
    let l = Ledger::new(store.clone());
    let now = 0;
    l.top_up(1, 10_000, now).await;
    let t100 = l.send(1, 2, 10, now, 100).await;
    let t200 = l.send(1, 2, 10, now, 200).await;
    let t300 = l.send(1, 2, 10, now, 300).await;
    let sorted = |mut v: Vec<u64>| {
        v.sort_unstable();
        v
    };
    let ids = |v: Vec<TransferId>| sorted(v.into_iter().map(|t| t.0).collect());
    assert_eq!(
        ids(store.due_transfers(250, 10).await.unwrap()),
        vec![t100.0, t200.0]
    );
    let two = ids(store.due_transfers(1_000, 2).await.unwrap());
    assert_eq!(two.len(), 2);
    assert!(two.iter().all(|t| [t100.0, t200.0, t300.0].contains(t)));
    // Settled transfers are not due.
    l.run(
        Command::AcceptTransfer {
            id: t100,
            by: UserId(2),
            cap: None,
        },
        50,
    )
    .await
    .unwrap();
    assert_eq!(
        ids(store.due_transfers(250, 10).await.unwrap()),
        vec![t200.0]
    );

    let p100 = l
        .send_packet(packet(l.id(), 1, GROUP, vec![5, 5], now, 100))
        .await;
    let p200 = l
        .send_packet(packet(l.id(), 1, GROUP, vec![5, 5], now, 200))
        .await;
    let p300 = l
        .send_packet(packet(l.id(), 1, GROUP, vec![5], now, 300))
        .await;
    let pids = |v: Vec<PacketId>| sorted(v.into_iter().map(|p| p.0).collect());
    assert_eq!(
        pids(store.due_packets(250, 10).await.unwrap()),
        vec![p100.0, p200.0]
    );
    assert_eq!(store.due_packets(1_000, 1).await.unwrap().len(), 1);
    // A packet grabbed in part is still due; a finished one is not.
    l.grab(p200, 3, 10).await.unwrap();
    l.grab(p300, 3, 10).await.unwrap();
    assert_eq!(
        pids(store.due_packets(1_000, 10).await.unwrap()),
        vec![p100.0, p200.0]
    );
    assert!(store.due_packets(99, 10).await.unwrap().is_empty());
    assert_balanced(&*store).await;
}

pub async fn provider_refs(store: Store) {
    let l = Ledger::new(store.clone());
    let now = 1_000;
    let o = order(l.id(), 1, OrderKind::PayIn, 500, now);
    let other = order(l.id(), 2, OrderKind::PayIn, 70, now);
    l.run(Command::OpenPayIn { order: o.clone() }, now)
        .await
        .unwrap();
    l.run(
        Command::OpenPayIn {
            order: other.clone(),
        },
        now,
    )
    .await
    .unwrap();
    assert_eq!(store.order_by_ref("ref-1".into()).await.unwrap(), None);
    assert_eq!(store.order_by_ref(String::new()).await.unwrap(), None);
    store
        .set_provider_ref(o.id, "sandbox".into(), "ref-1".into())
        .await
        .unwrap();
    let found = store.order_by_ref("ref-1".into()).await.unwrap().unwrap();
    assert_eq!(
        (
            found.id,
            found.provider.as_str(),
            found.provider_ref.as_str()
        ),
        (o.id, "sandbox", "ref-1")
    );
    assert_eq!(store.order(o.id).await.unwrap(), Some(found));
    assert_eq!(store.order_by_ref(String::new()).await.unwrap(), None);
    refused!(
        store
            .set_provider_ref(OrderId(1), "sandbox".into(), "ref-9".into())
            .await,
        WalletError::OrderNotFound
    );
    // Crediting keeps the reference.
    l.run(
        Command::CreditPayIn {
            order: o.id,
            amount: 500,
        },
        now + 1,
    )
    .await
    .unwrap();
    let paid = store.order_by_ref("ref-1".into()).await.unwrap().unwrap();
    assert_eq!(
        (paid.status, paid.provider_ref.as_str()),
        (OrderStatus::Paid, "ref-1")
    );
    assert_eq!(store.order(other.id).await.unwrap(), Some(other));
}

pub async fn audit(store: Store) {
    let l = Ledger::new(store.clone());
    let now = 1_000;
    l.top_up(1, 5_000, now).await;
    l.top_up(2, 3_000, now).await;
    let open = order(l.id(), 3, OrderKind::PayIn, 100, now);
    l.run(Command::OpenPayIn { order: open }, now)
        .await
        .unwrap();
    let t = l.send(1, 2, 700, now, now + 100).await;
    l.run(
        Command::AcceptTransfer {
            id: t,
            by: UserId(2),
            cap: None,
        },
        now + 1,
    )
    .await
    .unwrap();
    l.send(2, 1, 300, now, now + 100).await;
    let p = l
        .send_packet(packet(
            l.id(),
            2,
            GROUP,
            vec![100, 200, 300],
            now,
            now + 100,
        ))
        .await;
    l.grab(p, 1, now + 1).await.unwrap();
    let w = order(l.id(), 1, OrderKind::Payout, 1_000, now);
    let wid = w.id;
    l.run(
        Command::Withdraw {
            order: w,
            limits: WIDE,
        },
        now,
    )
    .await
    .unwrap();
    l.run(
        Command::SettlePayout {
            order: wid,
            amount: 1_000,
        },
        now + 2,
    )
    .await
    .unwrap();
    let open_payout = order(l.id(), 2, OrderKind::Payout, 50, now);
    l.run(
        Command::Withdraw {
            order: open_payout,
            limits: WIDE,
        },
        now,
    )
    .await
    .unwrap();

    let audit = store.audit().await.unwrap();
    let stored: BTreeMap<Account, Fen> = audit.accounts.iter().map(|&(a, s, _)| (a, s)).collect();
    assert_eq!(stored.get(&wallet(1)), Some(&(5_000 - 700 + 100 - 1_000)));
    assert_eq!(
        stored.get(&wallet(2)),
        Some(&(3_000 + 700 - 300 - 600 - 50))
    );
    assert_eq!(stored.get(&Account::TransferEscrow(t)), Some(&0));
    assert_eq!(stored.get(&Account::PacketEscrow(p)), Some(&500));
    assert_eq!(stored.get(&Account::TopUpClearing), Some(&(-8_000 + 1_000)));
    assert_eq!(stored.get(&Account::PayoutClearing), Some(&50));
    assert!(!stored.contains_key(&wallet(3)) || stored[&wallet(3)] == 0);
    assert_eq!(audit.orders.len(), 5);
    let statuses: BTreeSet<&str> = audit
        .orders
        .iter()
        .map(|(o, _)| o.status.as_str())
        .collect();
    assert_eq!(statuses, BTreeSet::from(["open", "paid", "settled"]));
    assert_balanced(&*store).await;
}

/// `users` users grab one packet of `shares` shares at once, `repeats` of
/// them a second time: exactly `shares` grabs pass, no user twice, and the
/// shares taken sum to the amount.
pub async fn grab_storm(store: Store, shares: u32, users: u64, repeats: u64) {
    assert!(u64::from(shares) <= users);
    let l = Ledger::new(store.clone());
    let now = 1_000;
    let sender = users + 1;
    let amount = Fen::from(shares) * 100;
    l.top_up(sender, amount, now).await;
    let drawn = policy::split(
        amount,
        shares,
        PacketMode::Lucky,
        amount,
        &mut StdRng::seed_from_u64(u64::from(shares)),
    );
    let p = l
        .send_packet(packet(l.id(), sender, GROUP, drawn, now, now + 86_400_000))
        .await;
    let mut handles = Vec::new();
    let grabbers = (1..=users).chain((0..repeats).map(|i| 1 + (i * 7_919) % users));
    for user in grabbers {
        let l = l.clone();
        handles.push(tokio::spawn(async move {
            (user, l.grab(p, user, now + 1).await)
        }));
    }
    let mut taken: BTreeMap<u64, Fen> = BTreeMap::new();
    for h in handles {
        let (user, result) = h.await.unwrap();
        match result {
            Ok(applied) => {
                let grab = applied.grab.unwrap();
                assert_eq!(grab.user, UserId(user));
                assert!(
                    taken.insert(user, grab.amount).is_none(),
                    "{user} grabbed twice"
                );
            }
            Err(WalletError::AlreadyGrabbed | WalletError::PacketFinished) => {}
            Err(e) => panic!("grab by {user}: {e:?}"),
        }
    }
    assert_eq!(taken.len(), shares as usize);
    assert_eq!(taken.values().sum::<Fen>(), amount);
    let (finished, grabs) = store.packet(p).await.unwrap().unwrap();
    assert_eq!(
        (finished.status, finished.claimed, finished.claimed_amount),
        (PacketStatus::Finished, shares, amount)
    );
    let recorded: BTreeMap<u64, Fen> = grabs.iter().map(|g| (g.user.0, g.amount)).collect();
    assert_eq!(recorded, taken);
    let indexes: Vec<u32> = grabs.iter().map(|g| g.index).collect();
    assert_eq!(indexes, (0..shares).collect::<Vec<_>>());
    let best = grabs.iter().map(|g| g.amount).max();
    assert_eq!(finished.best.map(|(_, a)| a), best);
    assert_eq!(l.balance(Account::PacketEscrow(p)).await, 0);
    for (&user, &share) in &taken {
        assert_eq!(l.wallet(user).await, share);
    }
    println!(
        "grab storm: {} grabs of a {shares}-share packet, {} passed",
        users + repeats,
        taken.len()
    );
    assert_balanced(&*store).await;
}

/// `racers` refunds of one expired packet and `racers` expiries of one
/// transfer, all at once and racing grabs sent just before the expiry:
/// one refund, one expiry, and every fen accounted for.
pub async fn refunds_race_grabs(store: Store, racers: usize) {
    let l = Ledger::new(store.clone());
    let (now, expires) = (1_000, 5_000);
    l.top_up(1, 1_000, now).await;
    let mut p = packet(l.id(), 1, GROUP, vec![10; 10], now, expires);
    p.mode = PacketMode::Equal;
    let p = l.send_packet(p).await;
    let t = l.send(1, 2, 100, now, expires).await;
    assert_eq!(l.wallet(1).await, 800);
    let mut handles = Vec::new();
    for i in 0..racers.max(10) {
        if i < racers {
            let l2 = l.clone();
            handles.push(tokio::spawn(async move {
                (
                    "refund",
                    l2.run(Command::RefundPacket { id: p }, expires).await,
                )
            }));
            let l2 = l.clone();
            handles.push(tokio::spawn(async move {
                (
                    "expire",
                    l2.run(Command::ExpireTransfer { id: t }, expires).await,
                )
            }));
        }
        let l2 = l.clone();
        let user = 10 + i as u64;
        handles.push(tokio::spawn(async move {
            ("grab", l2.grab(p, user, expires - 1).await)
        }));
    }
    let (mut refunds, mut expiries, mut grabbed) = (Vec::new(), 0, 0);
    for h in handles {
        match h.await.unwrap() {
            ("refund", Ok(a)) => refunds.push(a.packet.unwrap().refunded),
            ("expire", Ok(_)) => expiries += 1,
            ("grab", Ok(a)) => grabbed += a.grab.unwrap().amount,
            ("refund" | "expire", Err(WalletError::NothingToDo { .. })) => {}
            ("grab", Err(WalletError::PacketExpired | WalletError::PacketFinished)) => {}
            (what, other) => panic!("{what}: {other:?}"),
        }
    }
    let (closed, grabs) = store.packet(p).await.unwrap().unwrap();
    if closed.status == PacketStatus::Finished {
        // Every grab came before the refunds: nothing was left to return.
        assert!(refunds.is_empty());
    } else {
        assert_eq!(refunds.len(), 1, "{refunds:?}");
        assert_eq!(closed.refunded, refunds[0]);
    }
    assert_eq!(expiries, 1);
    assert_eq!(grabbed + closed.refunded, 100);
    assert_eq!(grabs.iter().map(|g| g.amount).sum::<Fen>(), grabbed);
    let refund_entries = store
        .history(Account::PacketEscrow(p), None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.reason == Reason::PacketRefunded)
        .count();
    assert_eq!(refund_entries, usize::from(closed.refunded > 0));
    assert_eq!(l.wallet(1).await, 800 + closed.refunded + 100);
    assert_eq!(l.balance(Account::PacketEscrow(p)).await, 0);
    assert_eq!(l.balance(Account::TransferEscrow(t)).await, 0);
    assert_balanced(&*store).await;
}
