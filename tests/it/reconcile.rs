//! `superapp wallet reconcile`: a sound ledger reconciles (exit 0); one
//! whose balance was changed behind the ledger's back does not (exit 1).

use std::process::Command;
use std::sync::Arc;

use superapp_kit::clock::SystemClock;
use superapp_kit::ids::IdGen;
use superapp_wallet::WalletStore;
use superapp_wallet::model::{
    Command as Money, EntryId, Order, OrderId, OrderKind, OrderStatus, UserId,
};
use superapp_wallet::store::{Request, SqliteWalletStore};

fn reconcile(data: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_superapp"))
        .args(["wallet", "reconcile", "--data"])
        .arg(data)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn the_reconciliation_command_passes_sound_books_and_fails_tampered_ones() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteWalletStore::open(&dir.path().join("wallet.db")).unwrap();
        let ids = IdGen::new(1, Arc::new(SystemClock));
        let order = Order {
            id: OrderId(1),
            user: UserId(7),
            kind: OrderKind::PayIn,
            amount: 1_234,
            status: OrderStatus::Open,
            provider: "sandbox".into(),
            provider_ref: String::new(),
            created_ms: 0,
            updated_ms: 0,
        };
        for command in [
            Money::OpenPayIn { order },
            Money::CreditPayIn {
                order: OrderId(1),
                amount: 1_234,
            },
        ] {
            store
                .apply(Request {
                    command,
                    entry: EntryId(ids.next()),
                    key: None,
                    now_ms: 0,
                })
                .await
                .unwrap();
        }
    }
    let (clean, printed) = reconcile(dir.path());
    assert!(clean, "{printed}");
    assert!(printed.contains("the ledger reconciles"), "{printed}");

    let db = rusqlite::Connection::open(dir.path().join("wallet.db")).unwrap();
    db.execute(
        "UPDATE accounts SET balance = 2000 WHERE account = 'w:7'",
        [],
    )
    .unwrap();
    let (clean, printed) = reconcile(dir.path());
    assert!(!clean, "a tampered balance fails the reconciliation");
    assert!(printed.contains("MISMATCH w:7"), "{printed}");
}
