//! How many transfers a second the SQLite ledger store takes: `clients`
//! concurrent callers each send keyed transfers (as the service does) from
//! their own wallet, one after another, for a few seconds, through one
//! writer with group commit ([`superapp_wallet::rate`]; `superapp-load
//! wallet` takes the same figure beside the server's).
//!
//! `cargo run --release -p superapp-wallet --example ledger_rate [clients] [seconds] [unkeyed]`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use superapp_wallet::SqliteWalletStore;
use superapp_wallet::rate::{RateRun, transfer_rate};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let clients: u32 = args.next().map_or(256, |a| a.parse().unwrap());
    let seconds: u64 = args.next().map_or(5, |a| a.parse().unwrap());
    let keyed = args.next().is_none_or(|a| a != "unkeyed");
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteWalletStore::open(&dir.path().join("wallet.db")).unwrap());
    let run = RateRun {
        clients,
        duration: Duration::from_secs(seconds),
        keyed,
    };
    let rate = transfer_rate(store, run).await.unwrap();
    let kind = if keyed { "keyed" } else { "unkeyed" };
    println!(
        "{} {kind} transfers by {clients} clients in {:.2} s: {:.0} transfers/s",
        rate.transfers,
        rate.elapsed.as_secs_f64(),
        rate.per_sec()
    );
    assert!(rate.books.is_clean(), "{:?}", rate.books.mismatches);
}
