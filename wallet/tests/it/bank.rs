//! The bank test, after TigerBeetle's and Jepsen's, on SQLite and on
//! PostgreSQL: 1,000 wallets, 50,000
//! random transfers applied by 64 concurrent clients in a child process,
//! 10 % of them retried with the same key (half of those at the same time
//! as the first try), the process killed with SIGKILL three times and
//! started again on the same store. After each kill, and at the end, the
//! ledger must hold: the balances sum to zero and each matches its entries,
//! no wallet is below zero, every transfer the clients were told of is
//! there (accepted), and no key was applied twice.
//!
//! The child is this test binary again: [`bank_worker_process`] is its
//! body, which does nothing unless `WALLET_BANK_WORKER` names its work.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use superapp_kit::clock::SystemClock;
use superapp_kit::ids::IdGen;
use superapp_wallet::WalletStore;
use superapp_wallet::error::WalletError;
use superapp_wallet::model::{
    Account, Command, EntryId, IdemKey, Order, OrderId, OrderKind, OrderStatus, OutLimits,
    Transfer, TransferId, TransferStatus, UserId,
};
use superapp_wallet::store::{PostgresWalletStore, Request, SqliteWalletStore};

const WALLETS: u64 = 1_000;
const TRANSFERS: u64 = 50_000;
const OPENING_BALANCE: i64 = 10_000;
const KILLS: u32 = 3;
const CLIENTS: usize = 64;
const SEED: u64 = 0x6261_6e6b;

/// One planned transfer: deterministic from its index, so every run of the
/// worker plans the same ones with the same keys.
#[derive(Debug, Clone, Copy)]
struct Planned {
    index: u64,
    from: u64,
    to: u64,
    amount: i64,
}

fn plan() -> Vec<Planned> {
    let mut rng = StdRng::seed_from_u64(SEED);
    (0..TRANSFERS)
        .map(|index| {
            let from = rng.random_range(1..=WALLETS);
            let mut to = rng.random_range(1..=WALLETS);
            if to == from {
                to = to % WALLETS + 1;
            }
            Planned {
                index,
                from,
                to,
                amount: rng.random_range(1..=2_000),
            }
        })
        .collect()
}

/// 10 % of the transfers are retried with the same key: the first half of
/// those at once with the first try, the second half after it answered.
fn retry(index: u64) -> Option<bool> {
    match index % 20 {
        0 => Some(true),
        10 => Some(false),
        _ => None,
    }
}

fn key(planned: &Planned) -> String {
    format!("bank-{}", planned.index)
}

fn limits() -> OutLimits {
    OutLimits {
        day: 0,
        per_operation: i64::MAX,
        daily_amount: i64::MAX,
        daily_count: u32::MAX,
    }
}

struct Worker {
    store: Arc<dyn WalletStore>,
    ids: IdGen,
}

impl Worker {
    async fn apply(
        &self,
        command: Command,
        key: Option<IdemKey>,
    ) -> Result<superapp_wallet::model::Applied, WalletError> {
        self.store
            .apply(Request {
                command,
                entry: EntryId(self.ids.next()),
                key,
                now_ms: now_ms(),
            })
            .await
    }

    /// Opens each wallet with a paid top-up (again on a restart: a paid
    /// order is not credited twice).
    async fn fund(&self) {
        for user in 1..=WALLETS {
            let order = Order {
                id: OrderId(user),
                user: UserId(user),
                kind: OrderKind::PayIn,
                amount: OPENING_BALANCE,
                status: OrderStatus::Open,
                provider: "bank-test".into(),
                provider_ref: String::new(),
                created_ms: now_ms(),
                updated_ms: now_ms(),
            };
            match self.apply(Command::OpenPayIn { order }, None).await {
                Ok(_)
                | Err(WalletError::Invalid {
                    code: "duplicate_order",
                    ..
                }) => {}
                Err(e) => panic!("opening a top-up: {e}"),
            }
            let credit = Command::CreditPayIn {
                order: OrderId(user),
                amount: OPENING_BALANCE,
            };
            match self.apply(credit, None).await {
                Ok(_) | Err(WalletError::OrderClosed { .. }) => {}
                Err(e) => panic!("crediting a top-up: {e}"),
            }
        }
    }

    /// Sends and accepts one transfer, each step under its own key, and
    /// answers the transfer (None when refused for want of money).
    async fn transfer(&self, planned: &Planned) -> Option<TransferId> {
        let key = key(planned);
        let sent = self
            .apply(
                Command::SendTransfer {
                    transfer: Transfer {
                        id: TransferId(self.ids.next()),
                        from: UserId(planned.from),
                        to: UserId(planned.to),
                        amount: planned.amount,
                        memo: String::new(),
                        status: TransferStatus::Pending,
                        created_ms: now_ms(),
                        expires_ms: now_ms() + 86_400_000,
                        settled_ms: None,
                    },
                    limits: limits(),
                },
                Some(IdemKey {
                    user: UserId(planned.from),
                    key: key.clone(),
                    fingerprint: format!("{}:{}", planned.to, planned.amount),
                }),
            )
            .await;
        let id = match sent {
            Ok(applied) => applied.transfer.expect("a sent transfer").id,
            Err(WalletError::InsufficientFunds) => return None,
            Err(e) => panic!("sending {key}: {e}"),
        };
        let accepted = self
            .apply(
                Command::AcceptTransfer {
                    id,
                    by: UserId(planned.to),
                    cap: None,
                },
                Some(IdemKey {
                    user: UserId(planned.to),
                    key: format!("{key}-accept"),
                    fingerprint: id.to_string(),
                }),
            )
            .await;
        match accepted {
            Ok(_) => Some(id),
            Err(e) => panic!("accepting {key}: {e}"),
        }
    }
}

fn now_ms() -> i64 {
    use superapp_kit::clock::Clock as _;
    SystemClock.now_ms()
}

/// Where the ledger is: `sqlite:<path>` or `postgres:<url>`.
async fn open(store: &str) -> Arc<dyn WalletStore> {
    match store.split_once(':') {
        Some(("sqlite", path)) => {
            Arc::new(SqliteWalletStore::open(Path::new(path)).expect("opening the SQLite store"))
        }
        Some(("postgres", url)) => Arc::new(
            PostgresWalletStore::connect(url, 16)
                .await
                .expect("opening the PostgreSQL store"),
        ),
        _ => panic!("not a store: {store}"),
    }
}

/// The worker: plans the transfers, applies them with `CLIENTS`
/// concurrent clients, and appends each answer to the acknowledgement log
/// (`<index> <transfer id or "refused">`) once it has it, a line per write.
#[test]
fn bank_worker_process() {
    let Ok(spec) = std::env::var("WALLET_BANK_WORKER") else {
        return;
    };
    let (store, acks, node) = {
        let mut parts = spec.split('|');
        (
            parts.next().unwrap().to_string(),
            PathBuf::from(parts.next().unwrap()),
            parts.next().unwrap().parse::<u16>().unwrap(),
        )
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let worker = Arc::new(Worker {
            store: open(&store).await,
            ids: IdGen::new(node, Arc::new(SystemClock)),
        });
        worker.fund().await;
        let log = Arc::new(std::sync::Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&acks)
                .unwrap(),
        ));
        let planned = Arc::new(plan());
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut clients = tokio::task::JoinSet::new();
        for _ in 0..CLIENTS {
            let (worker, log, planned, next) =
                (worker.clone(), log.clone(), planned.clone(), next.clone());
            clients.spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(p) = planned.get(i).copied() else {
                        return;
                    };
                    let answer = match retry(p.index) {
                        Some(true) => {
                            let (a, b) = tokio::join!(worker.transfer(&p), worker.transfer(&p));
                            // A refusal stores nothing, so its twin may pass
                            // a moment later, once money came in; two that
                            // pass are one transfer.
                            if let (Some(a), Some(b)) = (a, b) {
                                assert_eq!(a, b, "a concurrent retry answers the first's transfer");
                            }
                            a.or(b)
                        }
                        Some(false) => {
                            let a = worker.transfer(&p).await;
                            let b = worker.transfer(&p).await;
                            if a.is_some() {
                                assert_eq!(a, b, "a retry answers the first's transfer");
                            }
                            b
                        }
                        None => worker.transfer(&p).await,
                    };
                    let line = match answer {
                        Some(id) => format!("{} {id}\n", p.index),
                        None => format!("{} refused\n", p.index),
                    };
                    log.lock().unwrap().write_all(line.as_bytes()).unwrap();
                }
            });
        }
        while let Some(done) = clients.join_next().await {
            done.unwrap();
        }
    });
}

/// What the clients were told, from the log: each index's transfer (the
/// last line of a torn write is dropped).
fn acknowledged(acks: &Path) -> HashMap<u64, Vec<Option<TransferId>>> {
    let text = std::fs::read_to_string(acks).unwrap_or_default();
    let mut told: HashMap<u64, Vec<Option<TransferId>>> = HashMap::new();
    for line in text.lines() {
        let Some((index, answer)) = line.split_once(' ') else {
            continue;
        };
        let (Ok(index), answer) = (index.parse::<u64>(), answer) else {
            continue;
        };
        let answer = match answer {
            "refused" => None,
            id => match id.parse::<u64>() {
                Ok(id) => Some(TransferId(id)),
                Err(_) => continue,
            },
        };
        told.entry(index).or_default().push(answer);
    }
    told
}

struct Checked {
    acknowledged: usize,
    transfers: usize,
}

/// Every check of the ledger the bank test makes, on the store as the
/// killed worker left it.
async fn check(store: &str, acks: &Path) -> Checked {
    let store = open(store).await;
    let audit = store.audit().await.unwrap();
    let report = superapp_wallet::service::reconcile(&audit);
    assert!(report.is_clean(), "{:?}", report.mismatches);
    assert_eq!(report.total, 0, "the balances sum to zero");
    let wallets: i64 = audit
        .accounts
        .iter()
        .filter(|(a, ..)| matches!(a, Account::Wallet(_)))
        .map(|(_, balance, _)| *balance)
        .sum();
    let escrow: i64 = audit
        .accounts
        .iter()
        .filter(|(a, ..)| matches!(a, Account::TransferEscrow(_)))
        .map(|(_, balance, _)| *balance)
        .sum();
    let funded = audit
        .orders
        .iter()
        .filter(|(o, _)| o.status == OrderStatus::Paid)
        .count() as i64;
    assert_eq!(
        wallets + escrow,
        funded * OPENING_BALANCE,
        "the money in wallets and escrow is what came in"
    );
    let transfers: HashSet<TransferId> = audit
        .accounts
        .iter()
        .filter_map(|(a, ..)| match a {
            Account::TransferEscrow(id) => Some(*id),
            _ => None,
        })
        .collect();
    let told = acknowledged(acks);
    let mut acknowledged = 0;
    let mut by_key: HashSet<TransferId> = HashSet::new();
    for (index, answers) in &told {
        let ids: HashSet<TransferId> = answers.iter().flatten().copied().collect();
        assert!(
            ids.len() <= 1,
            "transfer {index}'s key made {} transfers",
            ids.len()
        );
        for id in ids {
            acknowledged += 1;
            by_key.insert(id);
            let transfer = store.transfer(id).await.unwrap();
            let transfer =
                transfer.unwrap_or_else(|| panic!("acknowledged transfer {index} is missing"));
            assert_eq!(transfer.status, TransferStatus::Accepted);
        }
    }
    // Every transfer in the ledger belongs to one planned key: no key made
    // a second transfer that the log did not see.
    let planned = plan();
    let keyed: HashMap<(u64, u64, i64), usize> = planned.iter().fold(HashMap::new(), |mut m, p| {
        *m.entry((p.from, p.to, p.amount)).or_default() += 1;
        m
    });
    let mut made: HashMap<(u64, u64, i64), usize> = HashMap::new();
    for id in &transfers {
        let t = store.transfer(*id).await.unwrap().unwrap();
        *made.entry((t.from.0, t.to.0, t.amount)).or_default() += 1;
    }
    for (parameters, count) in &made {
        assert!(
            count <= keyed.get(parameters).unwrap_or(&0),
            "more transfers of {parameters:?} than keys planned for them"
        );
    }
    Checked {
        acknowledged,
        transfers: transfers.len(),
    }
}

fn spawn_worker(store: &str, acks: &Path, node: u16) -> Child {
    Process::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "bank::bank_worker_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            "WALLET_BANK_WORKER",
            format!("{store}|{}|{node}", acks.display()),
        )
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bank_keeps_its_books_on_sqlite_through_concurrent_retries_and_kills() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("wallet.db").display());
    bank("SQLite", &store, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bank_keeps_its_books_on_postgresql_through_concurrent_retries_and_kills() {
    let Some(database) = superapp_kit::testkit::postgres().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    bank(
        "PostgreSQL",
        &format!("postgres:{}", database.url()),
        dir.path(),
    )
    .await;
}

/// The bank test on the ledger `store`, with its acknowledgement log in `dir`.
async fn bank(engine: &str, store: &str, dir: &Path) {
    let acks = dir.join("acks.log");
    let mut kills = 0;
    let mut rng = StdRng::seed_from_u64(SEED);
    for run in 0..=KILLS {
        let mut worker = spawn_worker(store, &acks, u16::try_from(run + 1).unwrap());
        if run < KILLS {
            // Kill once the clients are well into the plan: after a third
            // more of it was acknowledged, and a random moment on.
            let before = acknowledged(&acks).len();
            let target = (before + usize::try_from(TRANSFERS / 4).unwrap())
                .min(usize::try_from(TRANSFERS).unwrap() - 1);
            while acknowledged(&acks).len() < target {
                if let Some(status) = worker.try_wait().unwrap() {
                    panic!("the worker ended before it was killed: {status}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
            worker.kill().unwrap();
            worker.wait().unwrap();
            kills += 1;
        } else {
            let status = worker.wait().unwrap();
            assert!(status.success(), "the last run finished the plan: {status}");
        }
        let checked = check(store, &acks).await;
        println!(
            "bank test on {engine}, after run {} ({kills} kills so far): {} transfers acknowledged, {} in the ledger, books balanced",
            run + 1,
            checked.acknowledged,
            checked.transfers
        );
    }
    let told = acknowledged(&acks);
    assert_eq!(
        told.len() as u64,
        TRANSFERS,
        "every planned transfer was answered"
    );
    let retried = (0..TRANSFERS).filter(|i| retry(*i).is_some()).count();
    let refused = told
        .values()
        .filter(|answers| answers.last().is_some_and(Option::is_none))
        .count();
    println!(
        "bank test on {engine}: {WALLETS} wallets, {TRANSFERS} transfers ({retried} retried with their key, half of them concurrently), {refused} refused for want of money, {kills} kills with SIGKILL"
    );
    assert_eq!(kills, KILLS);
}
