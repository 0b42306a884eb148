//! How many transfers a second the SQLite ledger store takes: `clients`
//! concurrent callers each send keyed transfers (as the service does) from
//! their own wallet, one after another, for a few seconds, through one
//! writer with group commit.
//!
//! `cargo run --release -p superapp-wallet --example ledger_rate [clients] [seconds] [unkeyed]`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use superapp_wallet::SqliteWalletStore;
use superapp_wallet::model::{
    Command, EntryId, IdemKey, Order, OrderId, OrderKind, OrderStatus, OutLimits, Transfer,
    TransferId, TransferStatus, UserId,
};
use superapp_wallet::store::{Request, WalletStore};

const LIMITS: OutLimits = OutLimits {
    day: 0,
    per_operation: 1_000_000,
    daily_amount: i64::MAX,
    daily_count: u32::MAX,
};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let clients: u64 = args.next().map_or(256, |a| a.parse().unwrap());
    let seconds: u64 = args.next().map_or(5, |a| a.parse().unwrap());
    let keyed = args.next().is_none_or(|a| a != "unkeyed");
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn WalletStore> =
        Arc::new(SqliteWalletStore::open(&dir.path().join("wallet.db")).unwrap());
    let ids = Arc::new(AtomicU64::new(1));
    let next = {
        let ids = ids.clone();
        move || ids.fetch_add(1, Ordering::Relaxed)
    };
    for user in 1..=clients {
        let order = Order {
            id: OrderId(next()),
            user: UserId(user),
            kind: OrderKind::PayIn,
            amount: 1_000_000_000,
            status: OrderStatus::Open,
            provider: "sandbox".into(),
            provider_ref: String::new(),
            created_ms: 0,
            updated_ms: 0,
        };
        let id = order.id;
        for command in [
            Command::OpenPayIn { order },
            Command::CreditPayIn {
                order: id,
                amount: 1_000_000_000,
            },
        ] {
            store
                .apply(Request {
                    command,
                    entry: EntryId(next()),
                    key: None,
                    now_ms: 0,
                })
                .await
                .unwrap();
        }
    }
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for user in 1..=clients {
        let (store, done, next) = (store.clone(), done.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let id = next();
                let transfer = Transfer {
                    id: TransferId(id),
                    from: UserId(user),
                    to: UserId(user % clients + 1),
                    amount: 1 + (id % 1_000) as i64,
                    memo: String::new(),
                    status: TransferStatus::Pending,
                    created_ms: 1,
                    expires_ms: 86_400_000,
                    settled_ms: None,
                };
                store
                    .apply(Request {
                        command: Command::SendTransfer {
                            transfer,
                            limits: LIMITS,
                        },
                        entry: EntryId(next()),
                        key: keyed.then(|| IdemKey {
                            user: UserId(user),
                            key: format!("t-{n}"),
                            fingerprint: format!("{user}:{n}"),
                        }),
                        now_ms: 1,
                    })
                    .await
                    .unwrap();
                n += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    let kind = if keyed { "keyed" } else { "unkeyed" };
    println!(
        "{n} {kind} transfers by {clients} clients in {elapsed:.2} s: {:.0} transfers/s",
        n as f64 / elapsed
    );
    store.audit().await.unwrap();
}
