//! The PostgreSQL backend's tests, each on a fresh database: the
//! conformance suite (the behaviour every backend shares), the SQLite
//! backend's concurrency cases at the same sizes, and what this backend's
//! locks and constraints must hold besides.

use std::sync::Arc;
use std::time::Duration;

use superapp_kit::testkit::{self, PostgresDatabase};

use super::*;
use crate::conformance::{self, Store};

macro_rules! contract {
    ($($name:ident: $case:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let Some((_database, store)) = store().await else {
                return;
            };
            ($case)(Arc::new(store) as Store).await;
        }
    )*};
}

contract! {
    postgres_credits_a_top_up_exactly_once_and_shows_it_in_history: conformance::top_ups;
    postgres_settles_or_reverses_a_withdrawal_once: conformance::withdrawals;
    postgres_writes_nothing_for_a_refusal: conformance::refusals_write_nothing;
    postgres_lets_only_the_recipient_accept_or_decline_a_transfer: conformance::transfers;
    postgres_expires_a_transfer_never_early_and_once: conformance::transfer_expiry;
    postgres_hands_out_a_packet_s_shares_once_each: conformance::packets;
    postgres_keeps_exclusive_and_one_to_one_packets_for_their_person: conformance::packets_for_someone;
    postgres_refunds_a_packet_s_rest_once_and_never_early: conformance::packet_refunds;
    postgres_replays_a_key_and_refuses_its_reuse: conformance::idempotency;
    postgres_applies_a_request_sent_twenty_times_at_once_once: |s| conformance::concurrent_duplicates(s, 20);
    postgres_keeps_the_daily_and_per_operation_limits: conformance::limits;
    postgres_refuses_a_credit_above_the_unverified_cap: conformance::caps;
    postgres_keeps_payment_pins: conformance::pins;
    postgres_remembers_a_nonce_once_and_logs_callbacks: conformance::nonces_and_callbacks;
    postgres_sweeps_only_old_keys_and_nonces: conformance::sweep;
    postgres_lists_due_transfers_and_packets: conformance::due;
    postgres_finds_orders_by_the_provider_s_reference: conformance::provider_refs;
    postgres_audit_sums_match_and_balances_sum_to_zero: conformance::audit;
    postgres_refunds_once_when_eight_refunds_race_grabs: |s| conformance::refunds_race_grabs(s, 8);
    postgres_matches_the_reference_model_over_a_long_run: |s| conformance::model::ledger_matches_the_model(s, 0x1ed6e7, 1_000);
}

/// As the SQLite backend's test: a storm of 12,000 requests waits longer
/// for a connection than a server lets a request wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_users_grabbing_a_hundred_share_packet_take_exactly_its_shares() {
    let Some(database) = testkit::postgres().await else {
        return;
    };
    let store = PostgresWalletStore::connect_with(database.url(), 16, Duration::from_secs(120))
        .await
        .unwrap();
    conformance::grab_storm(Arc::new(store), 100, 10_000, 2_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_runs_every_case_on_fresh_postgres_databases() {
    let Some((first, _)) = store().await else {
        return;
    };
    // Each case's database is kept until the run ends, then dropped.
    let databases = Arc::new(std::sync::Mutex::new(vec![first]));
    conformance::run_all(move || {
        let databases = databases.clone();
        Box::pin(async move {
            let (database, store) = store().await.unwrap();
            databases.lock().unwrap().push(database);
            Arc::new(store) as Store
        })
    })
    .await;
}

async fn store() -> Option<(PostgresDatabase, PostgresWalletStore)> {
    let database = testkit::postgres().await?;
    let store = PostgresWalletStore::connect(database.url(), 16)
        .await
        .unwrap();
    Some((database, store))
}

const NOW: i64 = 1_800_000_000_000;
const HOUR: i64 = 3_600_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_accepted_in_both_directions_at_once_never_deadlock() {
    let Some((_database, store)) = store().await else {
        return;
    };
    let l = conformance::Ledger::new(Arc::new(store));
    l.top_up(1, 100_000, NOW).await;
    l.top_up(2, 100_000, NOW).await;
    // Each accept locks its escrow and both wallets: the same two wallets
    // for every one, which the key order locks alike.
    let mut sent = Vec::new();
    for n in 0..40 {
        let (from, to) = if n % 2 == 0 { (1, 2) } else { (2, 1) };
        sent.push((l.send(from, to, 10 + n, NOW, NOW + HOUR).await, to));
    }
    let accepts = sent.into_iter().map(|(id, to)| {
        let l = l.clone();
        tokio::spawn(async move {
            l.run(
                Command::AcceptTransfer {
                    id,
                    by: UserId(to),
                    cap: None,
                },
                NOW,
            )
            .await
        })
    });
    for accept in accepts.collect::<Vec<_>>() {
        accept.await.unwrap().unwrap();
    }
    assert_eq!(l.wallet(1).await + l.wallet(2).await, 200_000);
    conformance::assert_balanced(&*l.store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_jobs_running_at_once_return_a_transfer_once() {
    let Some((_database, store)) = store().await else {
        return;
    };
    let l = conformance::Ledger::new(Arc::new(store));
    l.top_up(1, 1_000, NOW).await;
    let id = l.send(1, 2, 1_000, NOW, NOW + HOUR).await;
    let expiries = (0..8).map(|_| {
        let l = l.clone();
        tokio::spawn(async move { l.run(Command::ExpireTransfer { id }, NOW + HOUR).await })
    });
    let mut expired = 0;
    for expiry in expiries.collect::<Vec<_>>() {
        match expiry.await.unwrap() {
            Ok(_) => expired += 1,
            Err(WalletError::NothingToDo { .. }) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(expired, 1);
    assert_eq!(l.wallet(1).await, 1_000);
    assert_eq!(l.wallet(2).await, 0);
    conformance::assert_balanced(&*l.store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_refuses_to_change_the_journal_or_take_a_wallet_below_zero() {
    let Some((database, store)) = store().await else {
        return;
    };
    let l = conformance::Ledger::new(Arc::new(store));
    l.top_up(1, 100, NOW).await;
    let db = Postgres::connect(database.url(), 1).await.unwrap();
    for sql in [
        "UPDATE wallet.journal SET amount = amount + 1",
        "DELETE FROM wallet.journal",
        "TRUNCATE wallet.journal",
        "UPDATE wallet.accounts SET balance = -1 WHERE account = 'w:1'",
        "INSERT INTO wallet.journal VALUES (1, 0, 'top_up', 's:topup', 'w:1', 0, 0)",
        "INSERT INTO wallet.journal VALUES (2, 0, 'top_up', 'w:1', 'w:1', 5, 0)",
    ] {
        let tampered = db
            .transact::<(), (), _>(Isolation::ReadCommitted, move |tx| {
                Box::pin(async move {
                    tx.batch_execute(sql).await?;
                    Ok(())
                })
            })
            .await;
        assert!(tampered.is_err(), "{sql}");
    }
    assert_eq!(l.wallet(1).await, 100);
    conformance::assert_balanced(&*l.store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_finds_a_balance_that_drifted_from_its_entries() {
    let Some((database, store)) = store().await else {
        return;
    };
    let l = conformance::Ledger::new(Arc::new(store));
    l.top_up(1, 100, NOW).await;
    let db = Postgres::connect(database.url(), 1).await.unwrap();
    db.transact::<(), (), _>(Isolation::ReadCommitted, |tx| {
        Box::pin(async move {
            tx.batch_execute("UPDATE wallet.accounts SET balance = 90 WHERE account = 'w:1'")
                .await?;
            Ok(())
        })
    })
    .await
    .unwrap()
    .unwrap();
    let audit = l.store.audit().await.unwrap();
    let drifted: Vec<_> = audit
        .accounts
        .iter()
        .filter(|(_, stored, sum)| stored != sum)
        .collect();
    assert_eq!(drifted, vec![&(Account::Wallet(UserId(1)), 90, 100)]);
    assert!(audit.malformed_entries.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_of_a_pin_each_count_and_the_fifth_locks_it() {
    let Some((_database, store)) = store().await else {
        return;
    };
    let record = PinRecord {
        hash: "argon2id hash".into(),
        failures: 0,
        locked_until_ms: 0,
        updated_ms: NOW,
    };
    store.put_pin(UserId(1), record).await.unwrap();
    let store = Arc::new(store);
    let guesses = (0..10).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.reserve_pin_try(UserId(1), NOW, HOUR).await })
    });
    let mut counted = 0;
    for guess in guesses.collect::<Vec<_>>() {
        match guess.await.unwrap() {
            Ok(_) => counted += 1,
            Err(WalletError::PinLocked { until_ms }) => assert_eq!(until_ms, NOW + HOUR),
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(counted, policy::PIN_TRIES);
    let after = store.pin(UserId(1)).await.unwrap().unwrap();
    assert_eq!(after.failures, policy::PIN_TRIES);
    assert_eq!(after.locked_until_ms, NOW + HOUR);
}
