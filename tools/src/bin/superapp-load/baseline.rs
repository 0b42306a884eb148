//! The storage ceiling: raw SQLite inserts of message-shaped rows, in the same
//! mode the server uses (WAL, synchronous=FULL), committed one row at a time
//! and in batches. Compare with the server's persisted-message rate.

use std::time::Instant;

use rusqlite::{Connection, params};

#[derive(clap::Args)]
pub struct BaselineArgs {
    /// Rows to insert in batches.
    #[arg(long, default_value_t = 200_000)]
    pub rows: u64,
    /// Rows per transaction for the batched run (the server commits up to 512).
    #[arg(long, default_value_t = 512)]
    pub batch: u64,
    /// Rows for the one-row-per-commit run.
    #[arg(long, default_value_t = 2_000)]
    pub single_rows: u64,
    /// Directory for the database file (a temporary one by default).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
}

impl BaselineArgs {
    /// A short run for printing beside another scenario.
    pub fn quick() -> Self {
        Self {
            rows: 50_000,
            batch: 512,
            single_rows: 500,
            dir: None,
        }
    }
}

pub fn run(args: BaselineArgs) -> anyhow::Result<serde_json::Value> {
    let temp = tempfile::tempdir_in(args.dir.clone().unwrap_or_else(std::env::temp_dir))?;
    let conn = Connection::open(temp.path().join("baseline.db"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE messages (conversation_id TEXT NOT NULL, seq INTEGER NOT NULL,
         sender INTEGER NOT NULL, body BLOB NOT NULL, PRIMARY KEY (conversation_id, seq)) WITHOUT ROWID",
    )?;
    let body = vec![b'x'; 64];
    let mut seq = 0u64;
    let mut insert = |conn: &Connection, n: u64| -> anyhow::Result<()> {
        let tx = conn.unchecked_transaction()?;
        {
            let mut stmt = tx.prepare_cached("INSERT INTO messages VALUES (?1, ?2, ?3, ?4)")?;
            for _ in 0..n {
                seq += 1;
                stmt.execute(params![
                    format!("d.{}.{}", seq % 1000, seq % 1000 + 1),
                    seq as i64,
                    7,
                    body
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    };
    let started = Instant::now();
    for _ in 0..args.single_rows {
        insert(&conn, 1)?;
    }
    let single = args.single_rows as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut left = args.rows;
    while left > 0 {
        let n = left.min(args.batch.max(1));
        insert(&conn, n)?;
        left -= n;
    }
    let batched = args.rows as f64 / started.elapsed().as_secs_f64();
    println!("scenario          sqlite baseline (WAL, synchronous=FULL)");
    println!(
        "one row a commit  {single:.0} rows/s ({} rows)",
        args.single_rows
    );
    println!(
        "{:<17} {batched:.0} rows/s ({} rows)",
        format!("{} rows a commit", args.batch),
        args.rows
    );
    Ok(serde_json::json!({
        "scenario": "sqlite_baseline",
        "single_row_commits_per_sec": single,
        "batched_rows_per_sec": batched,
        "batch": args.batch,
        "rows": args.rows,
    }))
}
