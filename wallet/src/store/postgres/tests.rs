//! The PostgreSQL backend's own tests: what its locks and key claims must
//! hold under concurrency, each on a fresh database. The behaviour every
//! backend shares is the conformance suite's.

use std::collections::HashSet;
use std::sync::Arc;

use superapp_kit::testkit::{self, PostgresDatabase};

use super::*;
use crate::model::OutLimits;

async fn store() -> Option<(PostgresDatabase, PostgresWalletStore)> {
    let database = testkit::postgres().await?;
    let store = PostgresWalletStore::connect(database.url(), 16)
        .await
        .unwrap();
    Some((database, store))
}

const NOW: i64 = 1_800_000_000_000;
const HOUR: i64 = 3_600_000;

fn limits() -> OutLimits {
    OutLimits {
        day: NOW / 86_400_000,
        per_operation: 1_000_000_000,
        daily_amount: 1_000_000_000,
        daily_count: 100_000,
    }
}

fn request(command: Command, entry: u64) -> Request {
    Request {
        command,
        entry: EntryId(entry),
        key: None,
        now_ms: NOW,
    }
}

/// Credits `amount` to `user` through a paid pay-in (order and entry `id`).
async fn top_up(store: &PostgresWalletStore, user: u64, amount: Fen, id: u64) {
    let order = Order {
        id: OrderId(id),
        user: UserId(user),
        kind: OrderKind::PayIn,
        amount,
        status: OrderStatus::Open,
        provider: "sandbox".into(),
        provider_ref: String::new(),
        created_ms: NOW,
        updated_ms: NOW,
    };
    store
        .apply(request(Command::OpenPayIn { order }, id))
        .await
        .unwrap();
    store
        .apply(request(
            Command::CreditPayIn {
                order: OrderId(id),
                amount,
            },
            id,
        ))
        .await
        .unwrap();
}

fn send_transfer(id: u64, from: u64, to: u64, amount: Fen) -> Command {
    Command::SendTransfer {
        transfer: Transfer {
            id: TransferId(id),
            from: UserId(from),
            to: UserId(to),
            amount,
            memo: String::new(),
            status: TransferStatus::Pending,
            created_ms: NOW,
            expires_ms: NOW + HOUR,
            settled_ms: None,
        },
        limits: limits(),
    }
}

async fn wallet(store: &PostgresWalletStore, user: u64) -> Fen {
    store.balance(Account::Wallet(UserId(user))).await.unwrap()
}

/// Every account's stored balance is the sum of its entries, all sum to
/// zero, and no entry is malformed.
async fn assert_balanced(store: &PostgresWalletStore) {
    let audit = store.audit().await.unwrap();
    for (account, stored, summed) in &audit.accounts {
        assert_eq!(stored, summed, "{account}");
    }
    assert_eq!(audit.accounts.iter().map(|(_, b, _)| b).sum::<Fen>(), 0);
    assert!(audit.malformed_entries.is_empty());
}

#[tokio::test]
async fn a_transfer_moves_money_once_and_both_histories_list_it() {
    let Some((_database, store)) = store().await else {
        return;
    };
    top_up(&store, 1, 10_000, 1).await;
    let sent = store
        .apply(request(send_transfer(10, 1, 2, 2_500), 11))
        .await
        .unwrap();
    assert_eq!(sent.balance_of(Account::Wallet(UserId(1))), Some(7_500));
    let accepted = store
        .apply(request(
            Command::AcceptTransfer {
                id: TransferId(10),
                by: UserId(2),
                cap: None,
            },
            12,
        ))
        .await
        .unwrap();
    assert_eq!(
        accepted.transfer.map(|t| t.status),
        Some(TransferStatus::Accepted)
    );
    assert_eq!(wallet(&store, 1).await, 7_500);
    assert_eq!(wallet(&store, 2).await, 2_500);
    let again = store
        .apply(request(
            Command::AcceptTransfer {
                id: TransferId(10),
                by: UserId(2),
                cap: None,
            },
            13,
        ))
        .await;
    assert!(
        matches!(again, Err(WalletError::TransferClosed { .. })),
        "{again:?}"
    );
    let history: Vec<Reason> = store
        .history(Account::Wallet(UserId(1)), None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.reason)
        .collect();
    assert_eq!(history, vec![Reason::TransferSent, Reason::TopUp]);
    let older = store
        .history(Account::Wallet(UserId(1)), Some(EntryId(11)), 10)
        .await
        .unwrap();
    assert_eq!(older.len(), 1);
    assert_eq!(
        store
            .history(Account::Wallet(UserId(2)), None, 10)
            .await
            .unwrap()[0]
            .reason,
        Reason::TransferAccepted
    );
    assert_balanced(&store).await;
}

#[tokio::test]
async fn concurrent_duplicates_of_one_key_apply_once_and_answer_the_same_entry() {
    let Some((_database, store)) = store().await else {
        return;
    };
    top_up(&store, 1, 10_000, 1).await;
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for attempt in 0..20u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .apply(Request {
                    // Each duplicate carries ids of its own, as a retried
                    // request does; the first one's are the answer.
                    command: send_transfer(100 + attempt, 1, 2, 1_000),
                    entry: EntryId(200 + attempt),
                    key: Some(IdemKey {
                        user: UserId(1),
                        key: "pay-once".into(),
                        fingerprint: "to 2: 1000".into(),
                    }),
                    now_ms: NOW,
                })
                .await
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap().unwrap());
    }
    assert_eq!(answers.iter().filter(|a| !a.replayed).count(), 1);
    let entries: HashSet<_> = answers
        .iter()
        .map(|a| a.entry.clone().unwrap().id)
        .collect();
    assert_eq!(entries.len(), 1);
    assert_eq!(wallet(&store, 1).await, 9_000);
    assert_balanced(&store).await;
}

#[tokio::test]
async fn a_refused_request_leaves_its_key_free_and_another_fingerprint_is_refused() {
    let Some((_database, store)) = store().await else {
        return;
    };
    let keyed = |fingerprint: &str| Request {
        command: send_transfer(10, 1, 2, 1_000),
        entry: EntryId(11),
        key: Some(IdemKey {
            user: UserId(1),
            key: "k".into(),
            fingerprint: fingerprint.into(),
        }),
        now_ms: NOW,
    };
    let refused = store.apply(keyed("a")).await;
    assert!(
        matches!(refused, Err(WalletError::InsufficientFunds)),
        "{refused:?}"
    );
    top_up(&store, 1, 1_000, 1).await;
    let applied = store.apply(keyed("a")).await.unwrap();
    assert!(!applied.replayed);
    let replayed = store.apply(keyed("a")).await.unwrap();
    assert!(replayed.replayed);
    assert_eq!(replayed.entry, applied.entry);
    let reused = store.apply(keyed("b")).await;
    assert!(
        matches!(reused, Err(WalletError::IdempotencyKeyReused)),
        "{reused:?}"
    );
    assert_eq!(wallet(&store, 1).await, 0);
}

#[tokio::test]
async fn a_grab_storm_hands_out_each_share_once_and_empties_the_escrow() {
    let Some((_database, store)) = store().await else {
        return;
    };
    let amount = 10_000;
    top_up(&store, 1, amount, 1).await;
    let shares = policy::split(amount, 100, PacketMode::Lucky, amount, &mut rand::rng());
    let packet = Packet {
        id: PacketId(50),
        sender: UserId(1),
        place: Place::Group(GroupId(7)),
        mode: PacketMode::Lucky,
        amount,
        shares,
        exclusive_to: None,
        greeting: String::new(),
        created_ms: NOW,
        expires_ms: NOW + HOUR,
        claimed: 0,
        claimed_amount: 0,
        status: PacketStatus::Open,
        best: None,
        refunded: 0,
    };
    store
        .apply(request(
            Command::SendPacket {
                packet,
                limits: limits(),
            },
            2,
        ))
        .await
        .unwrap();
    // 800 members grab, 200 of them twice.
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for n in 0..1_000u64 {
        let user = 1_000 + n % 800;
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let answer = store
                .apply(request(
                    Command::GrabPacket {
                        id: PacketId(50),
                        user: UserId(user),
                        cap: None,
                    },
                    10_000 + n,
                ))
                .await;
            (user, answer)
        }));
    }
    let mut winners = HashSet::new();
    let mut total = 0;
    for task in tasks {
        let (user, answer) = task.await.unwrap();
        match answer {
            Ok(applied) => {
                assert!(winners.insert(user), "user {user} grabbed twice");
                total += applied.grab.unwrap().amount;
            }
            Err(WalletError::PacketFinished | WalletError::AlreadyGrabbed) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    println!("grab storm: 1000 requests, {} grabs", winners.len());
    assert_eq!(winners.len(), 100);
    assert_eq!(total, amount);
    let (packet, grabs) = store.packet(PacketId(50)).await.unwrap().unwrap();
    assert_eq!(packet.status, PacketStatus::Finished);
    assert_eq!(grabs.len(), 100);
    assert_eq!(
        store
            .balance(Account::PacketEscrow(PacketId(50)))
            .await
            .unwrap(),
        0
    );
    assert_balanced(&store).await;
}

#[tokio::test]
async fn transfers_accepted_in_both_directions_at_once_never_deadlock() {
    let Some((_database, store)) = store().await else {
        return;
    };
    top_up(&store, 1, 100_000, 1).await;
    top_up(&store, 2, 100_000, 2).await;
    for n in 0..40u64 {
        let (from, to) = if n % 2 == 0 { (1, 2) } else { (2, 1) };
        store
            .apply(request(
                send_transfer(100 + n, from, to, 10 + n as Fen),
                200 + n,
            ))
            .await
            .unwrap();
    }
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for n in 0..40u64 {
        let to = if n % 2 == 0 { 2 } else { 1 };
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .apply(request(
                    Command::AcceptTransfer {
                        id: TransferId(100 + n),
                        by: UserId(to),
                        cap: None,
                    },
                    300 + n,
                ))
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(wallet(&store, 1).await + wallet(&store, 2).await, 200_000);
    assert_balanced(&store).await;
}

#[tokio::test]
async fn expiry_jobs_running_at_once_return_a_transfer_once() {
    let Some((_database, store)) = store().await else {
        return;
    };
    top_up(&store, 1, 1_000, 1).await;
    store
        .apply(request(send_transfer(10, 1, 2, 1_000), 2))
        .await
        .unwrap();
    let expiries: Vec<_> = (0..8)
        .map(|n| {
            store.apply(Request {
                command: Command::ExpireTransfer { id: TransferId(10) },
                entry: EntryId(3 + n),
                key: None,
                now_ms: NOW + HOUR,
            })
        })
        .collect();
    let answers = futures_util::future::join_all(expiries).await;
    assert_eq!(answers.iter().filter(|a| a.is_ok()).count(), 1);
    for answer in &answers {
        assert!(
            matches!(answer, Ok(_) | Err(WalletError::NothingToDo { .. })),
            "{answer:?}"
        );
    }
    assert_eq!(wallet(&store, 1).await, 1_000);
    assert_eq!(wallet(&store, 2).await, 0);
    assert_balanced(&store).await;
}

#[tokio::test]
async fn the_journal_refuses_to_change_a_written_entry() {
    let Some((database, store)) = store().await else {
        return;
    };
    top_up(&store, 1, 1_000, 1).await;
    let db = Postgres::connect(database.url(), 1).await.unwrap();
    for sql in [
        "UPDATE wallet.journal SET amount = 1",
        "DELETE FROM wallet.journal",
        "TRUNCATE wallet.journal",
    ] {
        let answer = db
            .transact::<(), (), _>(Isolation::ReadCommitted, move |tx| {
                Box::pin(async move {
                    tx.batch_execute(sql).await?;
                    Ok(())
                })
            })
            .await;
        let Err(e) = answer else {
            panic!("{sql} went through")
        };
        assert!(e.to_string().contains("never updated or deleted"), "{e}");
    }
    assert_eq!(wallet(&store, 1).await, 1_000);
}

#[tokio::test]
async fn nonces_are_remembered_once_and_the_sweep_forgets_only_old_keys_and_nonces() {
    let Some((_database, store)) = store().await else {
        return;
    };
    assert!(
        store
            .remember_nonce("n1".into(), NOW - 10 * HOUR)
            .await
            .unwrap()
    );
    assert!(!store.remember_nonce("n1".into(), NOW).await.unwrap());
    assert!(store.remember_nonce("n2".into(), NOW).await.unwrap());
    top_up(&store, 1, 1_000, 1).await;
    let keyed = |key: &str, now_ms, transfer| Request {
        command: send_transfer(transfer, 1, 2, 10),
        entry: EntryId(transfer),
        key: Some(IdemKey {
            user: UserId(1),
            key: key.into(),
            fingerprint: "f".into(),
        }),
        now_ms,
    };
    store
        .apply(keyed("old", NOW - 10 * HOUR, 10))
        .await
        .unwrap();
    store.apply(keyed("new", NOW, 11)).await.unwrap();
    assert_eq!(store.sweep(NOW, 5 * HOUR).await.unwrap(), 2);
    assert!(store.remember_nonce("n1".into(), NOW).await.unwrap());
    assert!(!store.remember_nonce("n2".into(), NOW).await.unwrap());
    assert!(store.apply(keyed("new", NOW, 12)).await.unwrap().replayed);
    assert!(!store.apply(keyed("old", NOW, 13)).await.unwrap().replayed);
}
