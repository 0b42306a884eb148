//! The raw rate of a ledger store: how many keyed transfers a second it
//! applies when called straight, without the service, HTTP or the chat card
//! around each one. The benchmarks set what the server achieves beside this
//! figure, taken from the same kind of store in the same run: it is the
//! ceiling the rest of the path is measured against.
//!
//! `clients` tasks each fund a wallet of their own, then send transfers from
//! it to the next client's wallet one after another, as users waiting for
//! each answer do, until the time is up. Each transfer is the command the
//! service applies for `POST /v1/wallet/transfers` ([`Command::SendTransfer`]),
//! with an idempotency key unless told otherwise. The run ends with the
//! reconciliation of the whole ledger, so a fast store that lost money is
//! not mistaken for a good one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use superapp_kit::clock::{Clock as _, SystemClock};
use superapp_kit::ids::IdGen;

use crate::error::WalletError;
use crate::model::{
    Command, EntryId, Fen, IdemKey, Order, OrderId, OrderKind, OrderStatus, OutLimits, Transfer,
    TransferId, TransferStatus, UserId,
};
use crate::service::{Reconciliation, reconcile};
use crate::store::{Request, WalletStore};

/// What each client's wallet is funded with: more than any run sends.
const FUNDS: Fen = 1_000_000_000;
const DAY_MS: i64 = 86_400_000;

/// One measurement of [`transfer_rate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateRun {
    /// Tasks sending at once, each from its own wallet.
    pub clients: u32,
    /// How long they send.
    pub duration: Duration,
    /// Whether each transfer carries an idempotency key, as every user's
    /// request does (one more row written per transfer).
    pub keyed: bool,
}

/// What a run of [`transfer_rate`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Rate {
    pub transfers: u64,
    pub elapsed: Duration,
    /// The reconciliation of the store after the run (it covers whatever
    /// the store held before as well).
    pub books: Reconciliation,
}

impl Rate {
    /// Transfers applied per second.
    pub fn per_sec(&self) -> f64 {
        self.transfers as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// Measures how many transfers a second `store` applies (see the module's
/// description). The ids of wallets, orders, transfers and entries are
/// fresh ones, so a store that holds other data (a PostgreSQL database
/// measured before) may be measured again.
pub async fn transfer_rate(store: Arc<dyn WalletStore>, run: RateRun) -> Result<Rate, WalletError> {
    let ids = Arc::new(IdGen::new(0, Arc::new(SystemClock)));
    let clients = run.clients.max(1);
    let users: Vec<UserId> = (0..clients).map(|_| UserId(ids.next())).collect();
    for &user in &users {
        fund(&*store, &ids, user).await?;
    }
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + run.duration;
    let mut tasks = Vec::with_capacity(users.len());
    for (index, &from) in users.iter().enumerate() {
        let to = users[(index + 1) % users.len()];
        let (store, ids, done) = (store.clone(), ids.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let now_ms = SystemClock.now_ms();
                let id = ids.next();
                let transfer = Transfer {
                    id: TransferId(id),
                    from,
                    to,
                    amount: 1 + (id % 100) as Fen,
                    memo: String::new(),
                    status: TransferStatus::Pending,
                    created_ms: now_ms,
                    expires_ms: now_ms + DAY_MS,
                    settled_ms: None,
                };
                let limits = OutLimits {
                    day: now_ms.div_euclid(DAY_MS),
                    per_operation: FUNDS,
                    daily_amount: Fen::MAX,
                    daily_count: u32::MAX,
                };
                store
                    .apply(Request {
                        command: Command::SendTransfer { transfer, limits },
                        entry: EntryId(ids.next()),
                        key: run.keyed.then(|| IdemKey {
                            user: from,
                            key: format!("rate-{n}"),
                            fingerprint: format!("{from}:{n}"),
                        }),
                        now_ms,
                    })
                    .await?;
                n += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), WalletError>(())
        }));
    }
    for task in tasks {
        task.await
            .map_err(|e| WalletError::Dependency(format!("a sending task failed: {e}")))??;
    }
    let elapsed = started.elapsed();
    let books = reconcile(&store.audit().await?);
    Ok(Rate {
        transfers: done.load(Ordering::Relaxed),
        elapsed,
        books,
    })
}

/// A paid top-up of [`FUNDS`] into `user`'s wallet, as a provider's
/// callback credits one.
async fn fund(store: &dyn WalletStore, ids: &IdGen, user: UserId) -> Result<(), WalletError> {
    let now_ms = SystemClock.now_ms();
    let order = Order {
        id: OrderId(ids.next()),
        user,
        kind: OrderKind::PayIn,
        amount: FUNDS,
        status: OrderStatus::Open,
        provider: "sandbox".into(),
        provider_ref: String::new(),
        created_ms: now_ms,
        updated_ms: now_ms,
    };
    let id = order.id;
    for command in [
        Command::OpenPayIn { order },
        Command::CreditPayIn {
            order: id,
            amount: FUNDS,
        },
    ] {
        store
            .apply(Request {
                command,
                entry: EntryId(ids.next()),
                key: None,
                now_ms,
            })
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::SqliteWalletStore;

    #[tokio::test]
    async fn a_rate_run_counts_the_transfers_it_applied_and_leaves_sound_books() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn WalletStore> =
            Arc::new(SqliteWalletStore::open(&dir.path().join("wallet.db")).unwrap());
        let run = RateRun {
            clients: 4,
            duration: Duration::from_millis(200),
            keyed: true,
        };
        let rate = transfer_rate(store.clone(), run).await.unwrap();
        assert!(rate.transfers > 0);
        assert!(rate.books.is_clean(), "{:?}", rate.books.mismatches);
        // Four funded wallets, each top-up one entry; every transfer one
        // more, into its own escrow.
        let audit = store.audit().await.unwrap();
        let escrows = audit
            .accounts
            .iter()
            .filter(|(account, ..)| matches!(account, crate::model::Account::TransferEscrow(_)))
            .count() as u64;
        assert_eq!(escrows, rate.transfers);
        assert_eq!(rate.books.wallets + escrows_sum(&audit), 4 * FUNDS);
    }

    fn escrows_sum(audit: &crate::store::Audit) -> Fen {
        audit
            .accounts
            .iter()
            .filter(|(account, ..)| matches!(account, crate::model::Account::TransferEscrow(_)))
            .map(|(_, balance, _)| balance)
            .sum()
    }
}
