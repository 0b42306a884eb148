//! The wallet's ledger in PostgreSQL, chosen by configuration alone
//! (`wallet.postgres_url`), on a fresh database of the test server.

use superapp::Application;
use superapp::config::Config;
use superapp_kit::postgres::Postgres;
use superapp_kit::secret::Secret;
use superapp_kit::testkit;

use crate::helpers::spawn_app_with;

#[tokio::test]
async fn a_server_given_a_postgres_url_keeps_its_ledger_there_and_reconciles_it() {
    let Some(database) = testkit::postgres().await else {
        return;
    };
    let url = database.url().to_string();
    let app = spawn_app_with(|config| {
        config.wallet.postgres_url = Some(Secret::new(url.clone()));
        config.wallet.postgres_pool = 4;
    })
    .await;
    assert!(!app.dir.path().join("wallet.db").exists());
    let db = Postgres::connect(database.url(), 1).await.unwrap();
    let version: i32 = db
        .view::<_, (), _>(|tx| {
            Box::pin(async move {
                let row = tx
                    .query_one(
                        "SELECT version FROM schema_versions WHERE component = 'wallet'",
                        &[],
                    )
                    .await?;
                Ok(row.get(0))
            })
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(version, 1);
    let mut config = Config::default();
    config.wallet.postgres_url = Some(Secret::new(url));
    let report = superapp::reconcile_wallet(&config).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.total, 0);
}

#[tokio::test]
async fn an_unreachable_postgres_stops_the_server_naming_the_key_and_not_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.data_dir = dir.path().to_path_buf();
    // Port 1 on the loopback: nothing listens there.
    config.wallet.postgres_url = Some(Secret::new(
        "postgres://superapp:hunter2@127.0.0.1:1/ledger".into(),
    ));
    let Err(e) = Application::build(config).await else {
        panic!("the server started without its ledger");
    };
    let e = format!("{e:#}");
    assert!(e.contains("wallet.postgres_url"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
}
