//! PostgreSQL storage helpers: a pool of connections, versioned migrations
//! per component, and transactions at a chosen isolation that are run again
//! when the server answers a serialization failure or a deadlock.
//!
//! PostgreSQL resolves conflicting transactions by failing one of them
//! (SQLSTATE 40001 under REPEATABLE READ and SERIALIZABLE, 40P01 when it
//! breaks a deadlock), and expects the client to run that transaction again
//! from its start. [`Postgres::transact`] does so a bounded number of times
//! with a small jittered backoff, then answers [`StoreError::Busy`]. The work
//! is a closure that may run more than once, so it must not change anything
//! outside the transaction.
//!
//! A room's refusal (its own outcome, decided inside the transaction) is
//! [`PgTxError::Abort`]: the transaction rolls back and the refusal is
//! answered as it is, never retried.
//!
//! No TLS: the pool connects in plain text, and a URL asking for TLS
//! (`sslmode=require`) is refused when the pool is built (see
//! docs/operations.md, "PostgreSQL").

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;

pub use crate::store::StoreError;
/// A transaction handed to work: `tokio_postgres::Transaction` (through
/// `Deref`) with `prepare_cached`, which keeps each connection's prepared
/// statements.
pub use deadpool_postgres::Transaction;
/// The driver, for backends' row access and parameter types; a room's
/// storage trait never names it.
pub use tokio_postgres;

const ENGINE: &str = "postgres";

/// Times [`Postgres::transact`] runs work whose transaction keeps failing on
/// serialization failures or deadlocks before it answers
/// [`StoreError::Busy`]. Each retry waits longer, so ten span about a second
/// of contention, past which the caller is better told to come back later.
const MAX_ATTEMPTS: u32 = 10;
/// The first retry's wait at most; it doubles with each further retry.
const FIRST_BACKOFF: Duration = Duration::from_millis(2);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(200);
/// How long work waits for a free pooled connection before it is refused
/// as [`StoreError::Busy`] (unless [`Postgres::connect_with`] says
/// otherwise); and how long opening one may take.
const POOL_WAIT: Duration = Duration::from_secs(5);
/// All migrations of every component run under this one advisory lock (its
/// value spells "sa-migr"), so processes that start at once apply each
/// migration once, in order.
const MIGRATION_LOCK: i64 = 0x0073_612d_6d69_6772;

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::backend(ENGINE, describe(&e))
    }
}

impl From<PoolError> for StoreError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Timeout(_) => StoreError::Busy,
            PoolError::Closed => StoreError::Closed,
            PoolError::Backend(e) => e.into(),
            other => StoreError::backend(ENGINE, other.to_string()),
        }
    }
}

/// The driver's error with its cause: its own `Display` says only "db
/// error". A server error gives its message and SQLSTATE, never its DETAIL,
/// which quotes the row's values.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        ),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// What a transaction's work fails with: the caller's refusal (`Abort`),
/// answered as it is after the transaction rolls back, or the engine's
/// error, which is retried when it is a serialization failure or a
/// deadlock and fails the operation otherwise.
#[derive(Debug)]
pub enum PgTxError<E> {
    /// The room's refusal, decided inside the transaction.
    Abort(E),
    /// The engine's error, from a statement of the work.
    Postgres(tokio_postgres::Error),
}

impl<E> From<tokio_postgres::Error> for PgTxError<E> {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Postgres(e)
    }
}

/// The isolation a transaction runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Each statement sees what was committed before it started; row locks
    /// (`SELECT ... FOR UPDATE`) order the writers.
    ReadCommitted,
    /// One snapshot for the whole transaction; a write to a row changed
    /// since the snapshot fails with a serialization failure (retried).
    RepeatableRead,
    /// As if the transactions ran one at a time; any anomaly fails one of
    /// them with a serialization failure (retried).
    Serializable,
}

impl From<Isolation> for tokio_postgres::IsolationLevel {
    fn from(isolation: Isolation) -> Self {
        match isolation {
            Isolation::ReadCommitted => Self::ReadCommitted,
            Isolation::RepeatableRead => Self::RepeatableRead,
            Isolation::Serializable => Self::Serializable,
        }
    }
}

/// The future work returns, borrowing the transaction it was handed.
pub type TxFuture<'a, T, E> = crate::BoxFuture<'a, Result<T, PgTxError<E>>>;

/// A PostgreSQL database reached through a pool of connections; clones share
/// the pool.
#[derive(Clone)]
pub struct Postgres {
    pool: Pool,
}

impl std::fmt::Debug for Postgres {
    // The pool's configuration holds the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("max_size", &self.pool.status().max_size)
            .finish_non_exhaustive()
    }
}

impl Postgres {
    /// Builds a pool of at most `pool_size` connections to the database at
    /// `url` (`postgres://user:password@host:port/dbname?options`, or
    /// libpq's `key=value` form) and opens one connection, so that a wrong
    /// URL, password or host fails here rather than at the first request.
    /// A URL asking for TLS (`sslmode=require`) is refused: this build
    /// connects in plain text.
    pub async fn connect(url: &str, pool_size: u32) -> Result<Self, StoreError> {
        Self::connect_with(url, pool_size, POOL_WAIT).await
    }

    /// [`connect`](Self::connect) with work waiting at most `wait` for a
    /// free connection before it is refused as [`StoreError::Busy`].
    pub async fn connect_with(
        url: &str,
        pool_size: u32,
        wait: Duration,
    ) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            let hint = if url.contains("sslmode=verify") {
                "; sslmode verify-ca and verify-full are not supported: this build connects without TLS"
            } else {
                ""
            };
            StoreError::backend(ENGINE, format!("the PostgreSQL URL does not parse: {}{hint}", describe(&e)))
        })?;
        match config.get_ssl_mode() {
            SslMode::Disable | SslMode::Prefer => {}
            _ => {
                return Err(StoreError::backend(
                    ENGINE,
                    "the PostgreSQL URL asks for TLS (sslmode=require), which this build does not \
                     speak: use sslmode=disable or prefer, and reach the server over a private \
                     network, a unix socket or a TLS tunnel (docs/operations.md, \"PostgreSQL\")",
                ));
            }
        }
        if config.get_application_name().is_none() {
            config.application_name("superapp");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(POOL_WAIT);
        }
        // Fast recycling trusts the driver's view of a connection: one the
        // server closed is seen as closed and replaced. A connection that
        // died silently fails the next transaction's first statement, which
        // `transact` runs again on another connection.
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1) as usize)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(wait))
            .create_timeout(Some(POOL_WAIT))
            .recycle_timeout(Some(POOL_WAIT))
            .build()
            .map_err(|e| StoreError::backend(ENGINE, e.to_string()))?;
        drop(pool.get().await?);
        Ok(Self { pool })
    }

    /// Applies the migrations of `component` not yet applied:
    /// `migrations[i]` brings its schema to version `i + 1`. Each runs in a
    /// transaction of its own together with the recorded version, under one
    /// advisory lock, so processes that start at once apply each exactly
    /// once. Components (rooms) sharing a database keep separate versions.
    pub async fn migrate(&self, component: &str, migrations: &[&str]) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        loop {
            let tx = client.transaction().await?;
            // Held until this transaction ends; taken before the version
            // table is created, which two processes must not do at once.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_versions (
                    component TEXT PRIMARY KEY,
                    version INTEGER NOT NULL
                )",
            )
            .await?;
            let current: i32 = tx
                .query_opt(
                    "SELECT version FROM schema_versions WHERE component = $1",
                    &[&component],
                )
                .await?
                .map(|row| row.try_get(0))
                .transpose()?
                .unwrap_or(0);
            let Some(sql) = usize::try_from(current)
                .ok()
                .and_then(|applied| migrations.get(applied))
            else {
                tx.commit().await?;
                return Ok(());
            };
            tx.batch_execute(sql).await?;
            let version = current + 1;
            tx.execute(
                "INSERT INTO schema_versions (component, version) VALUES ($1, $2)
                 ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version",
                &[&component, &version],
            )
            .await?;
            tx.commit().await?;
            tracing::info!(component, version, "applied migration");
        }
    }

    /// Runs `work` in a transaction at `isolation` and commits it. A
    /// serialization failure or deadlock (from the work or the commit) rolls
    /// back and runs the work again, after a jittered backoff, up to a
    /// bounded number of times; then the answer is [`StoreError::Busy`]. An
    /// [`Abort`](PgTxError::Abort) rolls back and is answered as
    /// `Ok(Err(refusal))`; any other error rolls back and fails.
    ///
    /// The work is written as
    /// `|tx| Box::pin(async move { ... })`, owning clones of what it needs:
    /// it may run several times.
    pub async fn transact<T, E, F>(
        &self,
        isolation: Isolation,
        work: F,
    ) -> Result<Result<T, E>, StoreError>
    where
        T: Send,
        E: Send,
        F: for<'a> FnMut(&'a Transaction<'a>) -> TxFuture<'a, T, E> + Send,
    {
        self.run(isolation, false, work).await
    }

    /// Runs `work` in a read-only REPEATABLE READ transaction: every
    /// statement sees the same snapshot, and a read-only transaction never
    /// fails on a conflict.
    pub async fn view<T, E, F>(&self, work: F) -> Result<Result<T, E>, StoreError>
    where
        T: Send,
        E: Send,
        F: for<'a> FnMut(&'a Transaction<'a>) -> TxFuture<'a, T, E> + Send,
    {
        self.run(Isolation::RepeatableRead, true, work).await
    }

    /// [`transact`](Self::transact) as an owned future whose one error is
    /// the caller's (a room's outcome type, which an engine failure
    /// converts into): the shape of a room store's write methods.
    pub fn act<T, E, F>(
        &self,
        isolation: Isolation,
        work: F,
    ) -> crate::BoxFuture<'static, Result<T, E>>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: for<'a> FnMut(&'a Transaction<'a>) -> TxFuture<'a, T, E> + Send + 'static,
    {
        let db = self.clone();
        Box::pin(async move { db.transact(isolation, work).await? })
    }

    /// [`view`](Self::view) as [`act`](Self::act) is to `transact`.
    pub fn look<T, E, F>(&self, work: F) -> crate::BoxFuture<'static, Result<T, E>>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: for<'a> FnMut(&'a Transaction<'a>) -> TxFuture<'a, T, E> + Send + 'static,
    {
        let db = self.clone();
        Box::pin(async move { db.view(work).await? })
    }

    async fn run<T, E, F>(
        &self,
        isolation: Isolation,
        read_only: bool,
        mut work: F,
    ) -> Result<Result<T, E>, StoreError>
    where
        F: for<'a> FnMut(&'a Transaction<'a>) -> TxFuture<'a, T, E> + Send,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut client = self.pool.get().await?;
            let tx = match client
                .build_transaction()
                .isolation_level(isolation.into())
                .read_only(read_only)
                .start()
                .await
            {
                Ok(tx) => tx,
                // A pooled connection that died while idle: nothing ran, so
                // another connection may start over.
                Err(e) if e.is_closed() && attempt < MAX_ATTEMPTS => continue,
                Err(e) => return Err(e.into()),
            };
            let failed = match work(&tx).await {
                Ok(value) => match tx.commit().await {
                    Ok(()) => return Ok(Ok(value)),
                    Err(e) => e,
                },
                Err(PgTxError::Abort(refusal)) => {
                    // The refusal stands whether or not the rollback is
                    // heard: nothing was committed.
                    if let Err(e) = tx.rollback().await {
                        tracing::warn!(error = %describe(&e), "rolling back a refused transaction failed");
                    }
                    return Ok(Err(refusal));
                }
                Err(PgTxError::Postgres(e)) => {
                    // A failed rollback leaves the connection closed, and the
                    // pool does not hand it out again.
                    let _ = tx.rollback().await;
                    e
                }
            };
            if !retryable(&failed) {
                return Err(failed.into());
            }
            if attempt >= MAX_ATTEMPTS {
                tracing::warn!(attempts = attempt, error = %describe(&failed), "transaction kept conflicting");
                return Err(StoreError::Busy);
            }
            drop(client);
            tokio::time::sleep(backoff(attempt)).await;
        }
    }
}

/// A failure after which the transaction, run again from its start, may
/// succeed, and which left nothing committed.
fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(code) if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// The wait before attempt `attempt + 1`: uniform in `[0, cap]`, where the
/// cap doubles from [`FIRST_BACKOFF`] up to [`MAX_BACKOFF`]. The jitter
/// keeps transactions that failed together from meeting again.
fn backoff(attempt: u32) -> Duration {
    let cap = FIRST_BACKOFF
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    cap.mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::testkit;

    async fn database() -> Option<(testkit::PostgresDatabase, Postgres)> {
        let database = testkit::postgres().await?;
        let db = Postgres::connect(database.url(), 8).await.unwrap();
        Some((database, db))
    }

    async fn count(db: &Postgres, sql: &'static str) -> i64 {
        db.view::<_, (), _>(move |tx| {
            Box::pin(async move { Ok(tx.query_one(sql, &[]).await?.get(0)) })
        })
        .await
        .unwrap()
        .unwrap()
    }

    #[tokio::test]
    async fn migrations_apply_once_in_order_and_each_component_keeps_its_own_version() {
        let Some((_database, db)) = database().await else {
            return;
        };
        let v1: &[&str] = &["CREATE TABLE a (x BIGINT)"];
        let v2: &[&str] = &["CREATE TABLE a (x BIGINT)", "CREATE TABLE b (y BIGINT)"];
        db.migrate("one", v1).await.unwrap();
        db.migrate("one", v2).await.unwrap();
        db.migrate("one", v2).await.unwrap();
        db.migrate("two", &["CREATE TABLE c (z BIGINT)"])
            .await
            .unwrap();
        let versions: Vec<(String, i32)> = db
            .view::<_, (), _>(|tx| {
                Box::pin(async move {
                    let rows = tx
                        .query(
                            "SELECT component, version FROM schema_versions ORDER BY component",
                            &[],
                        )
                        .await?;
                    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
                })
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(versions, vec![("one".into(), 2), ("two".into(), 1)]);
    }

    #[tokio::test]
    async fn processes_starting_at_once_apply_each_migration_exactly_once() {
        let Some((database, _)) = database().await else {
            return;
        };
        // Without IF NOT EXISTS: a second run of either would fail.
        let migrations: &'static [&'static str] = &[
            "CREATE TABLE a (x BIGINT)",
            "CREATE TABLE b (y BIGINT); INSERT INTO b VALUES (1)",
        ];
        let mut starts = Vec::new();
        for _ in 0..4 {
            let url = database.url().to_string();
            starts.push(tokio::spawn(async move {
                let db = Postgres::connect(&url, 2).await?;
                db.migrate("room", migrations).await?;
                Ok::<_, StoreError>(db)
            }));
        }
        let mut handles = Vec::new();
        for start in starts {
            handles.push(start.await.unwrap().unwrap());
        }
        assert_eq!(count(&handles[0], "SELECT count(*) FROM b").await, 1);
    }

    #[tokio::test]
    async fn a_refusal_is_answered_once_and_its_writes_roll_back() {
        let Some((_database, db)) = database().await else {
            return;
        };
        db.migrate("t", &["CREATE TABLE t (k BIGINT PRIMARY KEY)"])
            .await
            .unwrap();
        let runs = Arc::new(AtomicU32::new(0));
        let seen = runs.clone();
        let answer = db
            .transact(Isolation::Serializable, move |tx| {
                let runs = seen.clone();
                Box::pin(async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tx.execute("INSERT INTO t VALUES (1)", &[]).await?;
                    Err::<(), _>(PgTxError::Abort("insufficient funds"))
                })
            })
            .await
            .unwrap();
        assert_eq!(answer, Err("insufficient funds"));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(count(&db, "SELECT count(*) FROM t").await, 0);
    }

    #[tokio::test]
    async fn concurrent_serializable_increments_are_retried_until_every_one_lands() {
        let Some((_database, db)) = database().await else {
            return;
        };
        db.migrate(
            "t",
            &["CREATE TABLE counter (k INT PRIMARY KEY, n BIGINT NOT NULL); INSERT INTO counter VALUES (1, 0)"],
        )
        .await
        .unwrap();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                db.transact::<_, (), _>(Isolation::Serializable, |tx| {
                    Box::pin(async move {
                        let n: i64 = tx
                            .query_one("SELECT n FROM counter WHERE k = 1", &[])
                            .await?
                            .get(0);
                        tx.execute("UPDATE counter SET n = $1 WHERE k = 1", &[&(n + 1)])
                            .await?;
                        Ok(())
                    })
                })
                .await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap().unwrap();
        }
        assert_eq!(count(&db, "SELECT n FROM counter WHERE k = 1").await, 8);
    }

    #[tokio::test]
    async fn a_deadlock_fails_one_transaction_which_runs_again_and_both_commit() {
        let Some((_database, db)) = database().await else {
            return;
        };
        db.migrate(
            "t",
            &["CREATE TABLE acct (k INT PRIMARY KEY, n BIGINT NOT NULL); INSERT INTO acct VALUES (1, 0), (2, 0)"],
        )
        .await
        .unwrap();
        // Each first attempt locks its first row, waits until the other has
        // too, then asks for the other's row: a deadlock the server breaks.
        let both_locked = Arc::new(tokio::sync::Barrier::new(2));
        let runs = Arc::new(AtomicU32::new(0));
        let transfer = |first: i32, second: i32| {
            let db = db.clone();
            let both_locked = both_locked.clone();
            let runs = runs.clone();
            async move {
                let attempts = AtomicU32::new(0);
                db.transact::<_, (), _>(Isolation::ReadCommitted, move |tx| {
                    let both_locked = both_locked.clone();
                    let first_attempt = attempts.fetch_add(1, Ordering::SeqCst) == 0;
                    runs.fetch_add(1, Ordering::SeqCst);
                    Box::pin(async move {
                        tx.execute("UPDATE acct SET n = n + 1 WHERE k = $1", &[&first])
                            .await?;
                        if first_attempt {
                            both_locked.wait().await;
                        }
                        tx.execute("UPDATE acct SET n = n + 1 WHERE k = $1", &[&second])
                            .await?;
                        Ok(())
                    })
                })
                .await
            }
        };
        let (a, b) = tokio::join!(transfer(1, 2), transfer(2, 1));
        a.unwrap().unwrap();
        b.unwrap().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(count(&db, "SELECT sum(n)::BIGINT FROM acct").await, 4);
    }

    #[tokio::test]
    async fn work_that_always_conflicts_is_run_a_bounded_number_of_times_then_busy() {
        let Some((_database, db)) = database().await else {
            return;
        };
        let runs = Arc::new(AtomicU32::new(0));
        let seen = runs.clone();
        let answer = db
            .transact::<(), (), _>(Isolation::Serializable, move |tx| {
                seen.fetch_add(1, Ordering::SeqCst);
                Box::pin(async move {
                    tx.batch_execute(
                        "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = 'serialization_failure'; END $$",
                    )
                    .await?;
                    Ok(())
                })
            })
            .await;
        assert!(matches!(answer, Err(StoreError::Busy)), "{answer:?}");
        assert_eq!(runs.load(Ordering::SeqCst), MAX_ATTEMPTS);
    }

    #[tokio::test]
    async fn an_engine_error_fails_once_naming_postgres_and_the_cause() {
        let Some((_database, db)) = database().await else {
            return;
        };
        let runs = Arc::new(AtomicU32::new(0));
        let seen = runs.clone();
        let answer = db
            .transact::<(), (), _>(Isolation::ReadCommitted, move |tx| {
                seen.fetch_add(1, Ordering::SeqCst);
                Box::pin(async move {
                    tx.execute("INSERT INTO missing VALUES (1)", &[]).await?;
                    Ok(())
                })
            })
            .await;
        let Err(
            e @ StoreError::Backend {
                engine: "postgres", ..
            },
        ) = answer
        else {
            panic!("{answer:?}")
        };
        assert!(e.to_string().contains("42P01"), "{e}");
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_read_only_view_refuses_writes() {
        let Some((_database, db)) = database().await else {
            return;
        };
        db.migrate("t", &["CREATE TABLE t (k BIGINT PRIMARY KEY)"])
            .await
            .unwrap();
        let answer = db
            .view::<(), (), _>(|tx| {
                Box::pin(async move {
                    tx.execute("INSERT INTO t VALUES (1)", &[]).await?;
                    Ok(())
                })
            })
            .await;
        assert!(answer.is_err(), "{answer:?}");
        assert_eq!(count(&db, "SELECT count(*) FROM t").await, 0);
    }

    #[tokio::test]
    async fn a_url_asking_for_tls_is_refused_with_the_reason() {
        let err = Postgres::connect("postgres://u:hunter2@127.0.0.1:1/db?sslmode=require", 1)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sslmode=require") && err.contains("TLS"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        let err = Postgres::connect("postgres://u:hunter2@127.0.0.1:1/db?sslmode=verify-full", 1)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("verify-full are not supported"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[tokio::test]
    async fn an_unreachable_server_fails_at_connect() {
        // Port 1 on the loopback: nothing listens there.
        let answer = Postgres::connect("postgres://u:p@127.0.0.1:1/db", 1).await;
        assert!(
            matches!(
                answer,
                Err(StoreError::Backend {
                    engine: "postgres",
                    ..
                })
            ),
            "{answer:?}"
        );
    }

    #[test]
    fn backoff_stays_within_its_growing_cap() {
        for attempt in 1..=MAX_ATTEMPTS {
            let cap = FIRST_BACKOFF
                .saturating_mul(1 << (attempt - 1))
                .min(MAX_BACKOFF);
            for _ in 0..100 {
                assert!(backoff(attempt) <= cap);
            }
        }
    }
}
