//! SQLite storage helpers: one writer thread per database file with group commit,
//! a small pool of reader connections, and versioned migrations.
//!
//! Why one writer thread: SQLite allows one writer at a time, and a durable commit
//! costs an fsync. The writer drains every job that is waiting, runs them all in
//! one transaction, commits once, and only then answers each caller. Under load
//! many acks share one fsync; an answer always means durable.
//!
//! A job that fails must undo only its own writes. Jobs check their rules before
//! they write, so one fails only on a SQL error, which is rare: the writer runs a
//! batch without savepoints, and only when a job fails rolls the batch back and
//! runs it again with each job in its own savepoint.
//!
//! The writer's queue is bounded ([`WriterQueue`]): a write waits for a free
//! place, and one that finds no place within the queue's deadline is refused
//! with [`StoreError::Busy`] instead of queueing without bound. The callers'
//! memory and latency then stay bounded when writes come faster than the
//! disk takes them, and the refusal tells the client to come back later.

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Histogram;

pub use crate::store::StoreError;

const ENGINE: &str = "sqlite";

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::backend(ENGINE, e)
    }
}

/// What a transaction's work fails with: the caller's refusal (`Abort`),
/// answered as it is, or an engine failure, which fails the job and rolls
/// back its writes. Work checks its rules before its first write, so an
/// abort has written nothing, and the rest of its batch commits as usual.
#[derive(Debug)]
pub enum TxError<E> {
    Abort(E),
    Sqlite(rusqlite::Error),
}

impl<E> From<rusqlite::Error> for TxError<E> {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e)
    }
}

/// Splits work's outcome into the caller's answer and the engine's failure.
fn split<T, E>(outcome: Result<T, TxError<E>>) -> rusqlite::Result<Result<T, E>> {
    match outcome {
        Ok(value) => Ok(Ok(value)),
        Err(TxError::Abort(e)) => Ok(Err(e)),
        Err(TxError::Sqlite(e)) => Err(e),
    }
}

/// A write waiting for the writer thread.
trait Job: Send {
    /// Runs the work (again, if its batch starts over); false when it failed.
    fn run(&mut self, conn: &Connection, in_savepoint: bool) -> bool;
    /// Answers the caller once the batch's transaction committed or failed.
    fn answer(self: Box<Self>, committed: Result<(), String>);
}

struct Write<R, F> {
    work: F,
    outcome: Option<Result<R, rusqlite::Error>>,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<R, F> Job for Write<R, F>
where
    R: Send,
    F: FnMut(&Connection) -> Result<R, rusqlite::Error> + Send,
{
    fn run(&mut self, conn: &Connection, in_savepoint: bool) -> bool {
        let work = &mut self.work;
        let mut guarded = |c: &Connection| unpanicked(|| work(c));
        let outcome = if in_savepoint {
            run_in_savepoint(conn, guarded)
        } else {
            guarded(conn)
        };
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn answer(self: Box<Self>, committed: Result<(), String>) {
        let result = match (self.outcome, committed) {
            (Some(Ok(value)), Ok(())) => Ok(value),
            (Some(Err(e)), _) => Err(e.into()),
            (Some(Ok(_)) | None, Err(e)) => Err(StoreError::backend(ENGINE, e)),
            (None, Ok(())) => Err(StoreError::backend(ENGINE, "the job did not run")),
        };
        let _ = self.reply.send(result);
    }
}

/// Runs a job's work, turning a panic into the job's failure: the batch then
/// starts over with a savepoint per job, so the panicking job undoes only its
/// own writes, its caller gets an error, and the writer thread, which every
/// write of the file needs, goes on.
fn unpanicked<R>(work: impl FnOnce() -> rusqlite::Result<R>) -> rusqlite::Result<R> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|panic| {
        let reason = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(reason, "a storage job panicked; it fails alone");
        // The variant of rusqlite's that carries a message of ours as is.
        Err(rusqlite::Error::ToSqlConversionFailure(
            format!("the storage job panicked: {reason}").into(),
        ))
    })
}

/// Most jobs committed in one transaction. Bounds the latency of the first job
/// of a batch while still sharing one fsync among many.
const MAX_BATCH: usize = 512;
/// Reader connections at most, each with its own page cache. Reads beyond
/// this wait for a free connection instead of opening more: a reconnect storm
/// once opened hundreds, each on its own blocking thread with its own cache.
const MAX_READERS: usize = 8;

/// The bound of a writer's queue: how many writes may wait for the writer,
/// and how long a write waits for a place before it is refused as
/// [`StoreError::Busy`].
#[derive(Debug, Clone, Copy)]
pub struct WriterQueue {
    pub depth: usize,
    pub wait: Duration,
}

impl Default for WriterQueue {
    /// Four full batches wait at most (a full batch commits in milliseconds
    /// on a healthy disk), and a write waits at most two seconds for a
    /// place: a writer that has not taken four batches in two seconds is
    /// stalled, and queueing more would only hold memory and callers longer.
    fn default() -> Self {
        Self {
            depth: 4 * MAX_BATCH,
            wait: Duration::from_secs(2),
        }
    }
}

/// A database file: writes go to the writer thread, reads to pooled connections.
#[derive(Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// The writer thread's queue, bounded; dropping the last handle ends the
    /// thread once it has committed what it holds.
    jobs: mpsc::Sender<Box<dyn Job>>,
    /// How long a write waits for a place in `jobs`.
    wait: Duration,
    readers: Mutex<Vec<Connection>>,
    reader_slots: tokio::sync::Semaphore,
    /// Dropped with the database, which ends the checkpointer thread.
    _checkpointer: std_mpsc::Sender<()>,
}

/// How often the checkpointer copies the WAL back into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

impl Database {
    /// Opens (creating if needed) the file, applies the migrations not yet applied
    /// (`migrations[i]` brings the schema to version `i + 1`), and starts the
    /// writer with the default [`WriterQueue`].
    pub fn open(
        path: &Path,
        migrations: &[&str],
        batch_sizes: Option<Arc<Histogram>>,
    ) -> Result<Self, StoreError> {
        Self::open_with(path, migrations, batch_sizes, WriterQueue::default())
    }

    /// [`open`](Self::open) with the writer's queue bounded by `queue`.
    pub fn open_with(
        path: &Path,
        migrations: &[&str],
        batch_sizes: Option<Arc<Histogram>>,
        queue: WriterQueue,
    ) -> Result<Self, StoreError> {
        create_owner_only(path).map_err(|e| StoreError::backend(ENGINE, e))?;
        let mut conn = open_connection(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // The writer keeps a large page cache (64 MiB) and its savepoint journals
        // in memory, and leaves checkpoints to their own thread: all three were
        // the writer's own cost in the profile of a stream of sends.
        conn.pragma_update(None, "cache_size", -65_536)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        migrate(&mut conn, migrations)?;
        let checkpointer = start_checkpointer(path)?;
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>(queue.depth.max(1));
        let name = format!(
            "sqlite-writer-{}",
            path.file_stem().and_then(|s| s.to_str()).unwrap_or("db")
        );
        std::thread::Builder::new()
            .name(name)
            .spawn(move || writer_loop(conn, rx, batch_sizes))
            .map_err(|e| StoreError::backend(ENGINE, e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                jobs: tx,
                wait: queue.wait,
                readers: Mutex::new(Vec::new()),
                reader_slots: tokio::sync::Semaphore::new(MAX_READERS),
                _checkpointer: checkpointer,
            }),
        })
    }

    /// Runs `f` inside the writer's current transaction and answers once that
    /// transaction is durable. An `Err` from `f` rolls back only `f`'s own
    /// writes. `f` may run twice (the first run rolled back), so it must not
    /// change anything outside the connection. Refused with
    /// [`StoreError::Busy`] when the writer's queue has no place for it
    /// within the queue's deadline; it then has not run.
    pub async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnMut(&Connection) -> Result<R, rusqlite::Error> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel::<Result<R, StoreError>>();
        let job: Box<dyn Job> = Box::new(Write {
            work: f,
            outcome: None,
            reply,
        });
        match tokio::time::timeout(self.inner.wait, self.inner.jobs.send(job)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(StoreError::Closed),
            Err(_) => return Err(StoreError::Busy),
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on a reader connection on the blocking pool. Readers see the last
    /// committed state (WAL snapshot isolation).
    pub async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, rusqlite::Error> + Send + 'static,
    {
        let _slot = self
            .inner
            .reader_slots
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = inner
                .readers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => open_connection(&inner.path)?,
            };
            let result = f(&conn);
            let mut readers = inner.readers.lock().unwrap_or_else(|p| p.into_inner());
            if readers.len() < MAX_READERS {
                readers.push(conn);
            }
            Ok(result?)
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}

impl Database {
    /// [`write`](Self::write) for work that may refuse: an
    /// [`Abort`](TxError::Abort) is answered as `Ok(Err(refusal))`.
    pub async fn transact<T, E, F>(&self, mut f: F) -> Result<Result<T, E>, StoreError>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnMut(&Connection) -> Result<T, TxError<E>> + Send + 'static,
    {
        self.write(move |c| split(f(c))).await
    }

    /// [`read`](Self::read) for work that may refuse.
    pub async fn view<T, E, F>(&self, f: F) -> Result<Result<T, E>, StoreError>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, TxError<E>> + Send + 'static,
    {
        self.read(move |c| split(f(c))).await
    }

    /// [`transact`](Self::transact) as an owned future whose one error is
    /// the caller's (a room's outcome type, which an engine failure
    /// converts into): the shape of a room store's write methods.
    pub fn act<T, E, F>(&self, f: F) -> crate::BoxFuture<'static, Result<T, E>>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnMut(&Connection) -> Result<T, TxError<E>> + Send + 'static,
    {
        let db = self.clone();
        Box::pin(async move { db.transact(f).await? })
    }

    /// [`view`](Self::view) as [`act`](Self::act) is to `transact`.
    pub fn look<T, E, F>(&self, f: F) -> crate::BoxFuture<'static, Result<T, E>>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, TxError<E>> + Send + 'static,
    {
        let db = self.clone();
        Box::pin(async move { db.view(f).await? })
    }
}

/// Runs PASSIVE checkpoints (which never block the writer or readers) until
/// the returned sender is dropped.
fn start_checkpointer(path: &Path) -> Result<std_mpsc::Sender<()>, StoreError> {
    let conn = open_connection(path)?;
    let (tx, rx) = std_mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            while let Err(std_mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(CHECKPOINT_EVERY) {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "checkpoint failed");
                }
            }
        })
        .map_err(|e| StoreError::backend(ENGINE, e))?;
    Ok(tx)
}

/// Creates the database file, if missing, readable and writable by its owner
/// only (0600): it holds messages and password hashes. SQLite gives its WAL
/// and shared-memory files the same mode.
fn create_owner_only(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn open_connection(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    // FULL: a commit is on disk before the writer answers, so an ack survives
    // power loss as well as a crash. Group commit pays for the extra fsync.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Plans that do not depend on bound values. Without this SQLite peeks at
    // a `LIMIT ?` (and, with STAT4, at values compared to indexed columns)
    // while planning, and then prepares the statement again every time that
    // parameter is bound: a cached statement was re-parsed on every run, 38 %
    // of the server's CPU in a reconnect storm.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

fn migrate(conn: &mut Connection, migrations: &[&str]) -> Result<(), rusqlite::Error> {
    let current: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (index, sql) in migrations.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index + 1)?;
        tx.commit()?;
        tracing::info!(db = %conn.path().unwrap_or("?"), version = index + 1, "applied migration");
    }
    Ok(())
}

fn run_in_savepoint<R>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<R, rusqlite::Error>,
) -> Result<R, rusqlite::Error> {
    // Cached statements: parsing them for each job would show in the
    // writer's profile.
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    match f(conn) {
        Ok(value) => {
            conn.prepare_cached("RELEASE job")?.execute([])?;
            Ok(value)
        }
        Err(e) => {
            conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
            conn.prepare_cached("RELEASE job")?.execute([])?;
            Err(e)
        }
    }
}

fn writer_loop(
    conn: Connection,
    mut jobs: mpsc::Receiver<Box<dyn Job>>,
    batch_sizes: Option<Arc<Histogram>>,
) {
    while let Some(first) = jobs.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Some(h) = &batch_sizes {
            h.observe(batch.len() as f64);
        }
        let committed = commit_batch(&conn, batch);
        if let Err(e) = committed {
            tracing::error!(error = %e, "sqlite batch failed");
        }
    }
}

fn commit_batch(conn: &Connection, mut batch: Vec<Box<dyn Job>>) -> Result<(), String> {
    let committed = match attempt(conn, &mut batch, false) {
        Err(Failure::Job) => attempt(conn, &mut batch, true),
        other => other,
    };
    let committed = committed.map_err(|failure| match failure {
        Failure::Transaction(reason) => reason,
        Failure::Job => "a job failed".to_string(),
    });
    for job in batch {
        job.answer(committed.clone());
    }
    committed
}

enum Failure {
    /// A job failed outside a savepoint: the batch was rolled back.
    Job,
    /// The transaction could not begin or commit, or SQLite rolled it back.
    Transaction(String),
}

/// Runs every job in one transaction and commits it. Without savepoints the
/// first failing job rolls the whole batch back; with them it undoes only its
/// own writes and the rest commit.
fn attempt(conn: &Connection, batch: &mut [Box<dyn Job>], savepoints: bool) -> Result<(), Failure> {
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| Failure::Transaction(e.to_string()))?;
    for job in batch.iter_mut() {
        let ok = job.run(conn, savepoints);
        // SQLite rolls back the whole transaction on some errors (I/O, disk
        // full). Later jobs must not run in autocommit mode, committing on their
        // own while their callers are told the batch failed.
        if conn.is_autocommit() {
            return Err(Failure::Transaction(
                "the transaction was rolled back".into(),
            ));
        }
        if !ok && !savepoints {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(Failure::Job);
        }
    }
    conn.execute_batch("COMMIT").map_err(|e| {
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        Failure::Transaction(e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &[&str] = &["CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)"];

    #[tokio::test]
    async fn concurrent_writes_share_transactions_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("t.db"), SCHEMA, None).unwrap();
        let mut tasks = Vec::new();
        for k in 0..200i64 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                db.write(move |c| c.execute("INSERT INTO t VALUES (?1, 'x')", [k]))
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), 1);
        }
        let n: i64 = db
            .read(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)))
            .await
            .unwrap();
        assert_eq!(n, 200);
    }

    #[tokio::test]
    async fn every_connection_commits_durably_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("t.db"), SCHEMA, None).unwrap();
        // synchronous: 2 is FULL, on the writer and on every reader.
        let pragmas = |c: &Connection| -> rusqlite::Result<(i64, String)> {
            Ok((
                c.query_row("PRAGMA synchronous", [], |r| r.get(0))?,
                c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?,
            ))
        };
        let written = db.write(pragmas).await.unwrap();
        let read = db.read(pragmas).await.unwrap();
        assert_eq!(written, (2, "wal".to_string()));
        assert_eq!(read, (2, "wal".to_string()));
    }

    #[tokio::test]
    async fn a_failing_job_rolls_back_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("t.db"), SCHEMA, None).unwrap();
        db.write(|c| c.execute("INSERT INTO t VALUES (1, 'a')", []))
            .await
            .unwrap();
        let dup = db.write(|c| {
            c.execute("INSERT INTO t VALUES (2, 'b')", [])?;
            c.execute("INSERT INTO t VALUES (1, 'again')", [])
        });
        let ok = db.write(|c| c.execute("INSERT INTO t VALUES (3, 'c')", []));
        let (dup, ok) = tokio::join!(dup, ok);
        assert!(dup.is_err());
        assert!(ok.is_ok());
        let keys: Vec<i64> = db
            .read(|c| {
                let mut s = c.prepare("SELECT k FROM t ORDER BY k")?;
                s.query_map([], |r| r.get(0))?.collect()
            })
            .await
            .unwrap();
        assert_eq!(keys, vec![1, 3]);
    }

    #[tokio::test]
    async fn a_batch_started_over_after_a_failure_applies_each_job_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("t.db"), SCHEMA, None).unwrap();
        db.write(|c| c.execute("INSERT INTO t VALUES (0, '0')", []))
            .await
            .unwrap();
        // A slow job holds the writer while the rest queue up as one batch.
        let slow = db.write(|c| {
            std::thread::sleep(std::time::Duration::from_millis(200));
            c.execute("INSERT INTO t VALUES (1, 'slow')", [])
        });
        let bump =
            || db.write(|c| c.execute("UPDATE t SET v = CAST(v AS INTEGER) + 1 WHERE k = 0", []));
        let (slow, before, failing, after) = tokio::join!(
            slow,
            bump(),
            // Writes, then fails: its own write must go, the others' stay.
            db.write(|c| {
                c.execute("INSERT INTO t VALUES (2, 'undone')", [])?;
                c.execute("INSERT INTO t VALUES (1, 'duplicate key')", [])
            }),
            bump(),
        );
        assert!(slow.is_ok() && before.is_ok() && after.is_ok());
        assert!(matches!(failing, Err(StoreError::Backend { .. })));
        let rows: Vec<(i64, String)> = db
            .read(|c| {
                let mut s = c.prepare("SELECT k, v FROM t ORDER BY k")?;
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
            })
            .await
            .unwrap();
        assert_eq!(rows, vec![(0, "2".into()), (1, "slow".into())]);
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("t.db"), SCHEMA, None).unwrap();
        // A slow job holds the writer while the rest queue up as one batch.
        let slow = db.write(|c| {
            std::thread::sleep(std::time::Duration::from_millis(200));
            c.execute("INSERT INTO t VALUES (1, 'slow')", [])
        });
        let (slow, before, panicking, after) = tokio::join!(
            slow,
            db.write(|c| c.execute("INSERT INTO t VALUES (2, 'before')", [])),
            db.write(|c| -> rusqlite::Result<usize> {
                c.execute("INSERT INTO t VALUES (3, 'undone')", [])?;
                panic!("a bug in a job");
            }),
            db.write(|c| c.execute("INSERT INTO t VALUES (4, 'after')", [])),
        );
        assert!(slow.is_ok() && before.is_ok() && after.is_ok());
        let err = panicking.unwrap_err().to_string();
        assert!(err.contains("panicked"), "{err}");
        // The writer still writes.
        db.write(|c| c.execute("INSERT INTO t VALUES (5, 'later')", []))
            .await
            .unwrap();
        let keys: Vec<i64> = db
            .read(|c| {
                let mut s = c.prepare("SELECT k FROM t ORDER BY k")?;
                s.query_map([], |r| r.get(0))?.collect()
            })
            .await
            .unwrap();
        assert_eq!(keys, vec![1, 2, 4, 5]);
    }

    /// Polls a future once, so that it takes its place in the writer's queue
    /// (or starts waiting for one) before the test goes on.
    async fn poll_once<F: std::future::Future + Unpin>(f: &mut F) {
        std::future::poll_fn(|cx| {
            let _ = std::pin::Pin::new(&mut *f).poll(cx);
            std::task::Poll::Ready(())
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_writer_queue_refuses_a_write_as_busy_and_serves_the_waiting_ones() {
        let dir = tempfile::tempdir().unwrap();
        let queue = WriterQueue {
            depth: 2,
            wait: Duration::from_millis(100),
        };
        let db = Database::open_with(&dir.path().join("t.db"), SCHEMA, None, queue).unwrap();
        // A job holds the writer until the test lets it go.
        let (started, running) = std_mpsc::channel::<()>();
        let (release, released) = std_mpsc::channel::<()>();
        let released = Arc::new(Mutex::new(released));
        let mut blocked = Box::pin(db.write(move |c| {
            let _ = started.send(());
            let _ = released.lock().unwrap().recv();
            c.execute("INSERT INTO t VALUES (1, 'blocked')", [])
        }));
        poll_once(&mut blocked).await;
        tokio::task::spawn_blocking(move || running.recv())
            .await
            .unwrap()
            .unwrap();
        // Two writes fill the queue behind it.
        let mut second = Box::pin(db.write(|c| c.execute("INSERT INTO t VALUES (2, 'b')", [])));
        let mut third = Box::pin(db.write(|c| c.execute("INSERT INTO t VALUES (3, 'c')", [])));
        poll_once(&mut second).await;
        poll_once(&mut third).await;
        // One more finds no place within the deadline, and does not run.
        let refused = tokio::time::timeout(
            Duration::from_secs(10),
            db.write(|c| c.execute("INSERT INTO t VALUES (4, 'refused')", [])),
        )
        .await
        .expect("a write is answered within its deadline, not queued behind a stalled writer");
        assert!(matches!(refused, Err(StoreError::Busy)), "{refused:?}");
        release.send(()).unwrap();
        let (blocked, second, third) = tokio::join!(blocked, second, third);
        assert!(blocked.is_ok() && second.is_ok() && third.is_ok());
        db.write(|c| c.execute("INSERT INTO t VALUES (5, 'later')", []))
            .await
            .unwrap();
        let keys: Vec<i64> = db
            .read(|c| {
                let mut s = c.prepare("SELECT k FROM t ORDER BY k")?;
                s.query_map([], |r| r.get(0))?.collect()
            })
            .await
            .unwrap();
        assert_eq!(keys, vec![1, 2, 3, 5]);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_new_database_file_is_its_owner_s_alone() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = Database::open(&path, SCHEMA, None).unwrap();
        db.write(|c| c.execute("INSERT INTO t VALUES (1, 'x')", []))
            .await
            .unwrap();
        for file in [path.clone(), dir.path().join("t.db-wal")] {
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", file.display());
        }
    }

    #[test]
    fn migrations_apply_once_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let v1 = &["CREATE TABLE a (x)"];
        let v2 = &["CREATE TABLE a (x)", "CREATE TABLE b (y)"];
        let mut conn = open_connection(&path).unwrap();
        migrate(&mut conn, v1).unwrap();
        migrate(&mut conn, v2).unwrap();
        migrate(&mut conn, v2).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, 2);
    }
}
