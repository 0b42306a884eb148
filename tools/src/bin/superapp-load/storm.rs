//! *reconnect storm*: N sessions, each synced, are dropped at once and
//! reconnect with random jitter; each catches up (lists its conversations and
//! pulls what it lacks). Reports the time until every one has resynced, how
//! long each session's connect and catch-up took, and the server's peak memory
//! during the storm.

use std::time::{Duration, Instant};

use rand::Rng as _;
use serde::{Deserialize, Serialize};
use superapp_client::{ClientError, Connection, SyncState, catch_up};
use tokio::sync::mpsc;

use crate::hist::{Latency, Recorded};
use crate::procfs::{peak_rss_kib, rss_kib};
use crate::setup::{LoadUser, Worker, next_line, report, users, wait_for_signal};

#[derive(clap::Args)]
pub struct StormArgs {
    #[arg(long, default_value_t = 10_000)]
    pub sessions: usize,
    /// Distinct users; each has a few conversations to resync.
    #[arg(long, default_value_t = 500)]
    pub users: usize,
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Each session waits a random time up to this before reconnecting.
    #[arg(long, default_value_t = 2_000)]
    pub jitter_ms: u64,
    #[arg(long)]
    pub server_pid: u32,
}

#[derive(Serialize, Deserialize)]
pub struct StormJob {
    server: String,
    tokens: Vec<String>,
    jitter_ms: u64,
}

#[derive(Default, Serialize, Deserialize)]
struct StormResult {
    resynced: u64,
    retries: u64,
    last_ms: f64,
    /// Per resynced session: the WebSocket handshake (with the server's session
    /// start), then the catch-up (list and pulls), of the attempt that worked.
    connect: Recorded,
    catch_up: Recorded,
}

/// The storm as the coordinator saw it.
struct Storm {
    /// Every worker's counts, summed.
    total: StormResult,
    connect: Latency,
    caught_up: Latency,
    /// Seconds from the drop until the last worker reported.
    elapsed: f64,
    rss_before: u64,
    /// The highest RSS sampled during the storm.
    peak: u64,
    /// The process's own high-water mark afterwards.
    hwm: u64,
}

pub async fn run(server: &str, args: StormArgs) -> anyhow::Result<serde_json::Value> {
    let people = users(server, args.users.max(2)).await?;
    seed_conversations(server, &people).await?;
    let (tx, mut lines) = mpsc::unbounded_channel();
    let mut workers = start_workers(server, &args, &people, tx)?;
    for _ in 0..workers.len() {
        next_line(&mut lines).await?;
    }
    let storm = drop_and_resync(&mut workers, &mut lines, args.server_pid).await?;
    Ok(print_report(&args, &storm))
}

/// Each user writes to the next, so everyone has two conversations to sync.
async fn seed_conversations(server: &str, people: &[LoadUser]) -> anyhow::Result<()> {
    for (i, user) in people.iter().enumerate() {
        let next = &people[(i + 1) % people.len()];
        let conn = Connection::connect(server, &user.token).await?;
        conn.send_text(
            next.id,
            &format!("storm-{}-{i}", std::process::id()),
            "before the storm",
        )
        .await?;
        conn.close().await;
    }
    Ok(())
}

/// Shares the sessions among worker processes, the users round-robin.
fn start_workers(
    server: &str,
    args: &StormArgs,
    people: &[LoadUser],
    tx: mpsc::UnboundedSender<serde_json::Value>,
) -> anyhow::Result<Vec<Worker>> {
    let mut workers = Vec::new();
    let per_worker = args.sessions.div_ceil(args.workers.max(1));
    let mut assigned = 0;
    while assigned < args.sessions {
        let n = per_worker.min(args.sessions - assigned);
        let tokens = (assigned..assigned + n)
            .map(|s| people[s % people.len()].token.clone())
            .collect();
        assigned += n;
        let job = StormJob {
            server: server.to_string(),
            tokens,
            jitter_ms: args.jitter_ms,
        };
        workers.push(Worker::with_job("storm-worker", &job, tx.clone())?);
    }
    Ok(workers)
}

/// The measured phase: every worker drops its sessions at once; the server's
/// memory is sampled until each has reported its resync.
async fn drop_and_resync(
    workers: &mut [Worker],
    lines: &mut mpsc::UnboundedReceiver<serde_json::Value>,
    server_pid: u32,
) -> anyhow::Result<Storm> {
    let rss_before = rss_kib(server_pid)?;
    let started = Instant::now();
    for w in workers.iter_mut() {
        w.tell("drop")?;
    }
    let mut peak = rss_before;
    let mut total = StormResult::default();
    let (mut connect, mut caught_up) = (Latency::default(), Latency::default());
    let mut done = 0;
    while done < workers.len() {
        tokio::select! {
            line = lines.recv() => {
                let r: StormResult = serde_json::from_value(line.ok_or_else(|| anyhow::anyhow!("a worker died"))?)?;
                total.resynced += r.resynced;
                total.retries += r.retries;
                total.last_ms = total.last_ms.max(r.last_ms);
                connect.merge(&r.connect);
                caught_up.merge(&r.catch_up);
                done += 1;
            }
            _ = tokio::time::sleep(Duration::from_millis(50)) => {
                peak = peak.max(rss_kib(server_pid)?);
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let hwm = peak_rss_kib(server_pid)?;
    Ok(Storm {
        total,
        connect,
        caught_up,
        elapsed,
        rss_before,
        peak,
        hwm,
    })
}

/// Prints the table and returns the JSON result.
fn print_report(args: &StormArgs, storm: &Storm) -> serde_json::Value {
    let Storm {
        total,
        elapsed,
        rss_before,
        peak,
        hwm,
        ..
    } = storm;
    println!("scenario          reconnect storm");
    println!(
        "sessions          {} ({} users, {} workers, jitter {} ms)",
        args.sessions, args.users, args.workers, args.jitter_ms
    );
    println!(
        "resynced          {} ({} retries after rate limits or errors)",
        total.resynced, total.retries
    );
    println!(
        "all resynced in   {:.2} s after the drop (slowest session {:.0} ms)",
        elapsed, total.last_ms
    );
    let (connect, caught_up) = (storm.connect.summary(), storm.caught_up.summary());
    for (name, s) in [("connect", connect), ("catch-up", caught_up)] {
        println!(
            "{name:<17} p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            s.p50_us as f64 / 1000.0,
            s.p99_us as f64 / 1000.0,
            s.max_us as f64 / 1000.0
        );
    }
    println!(
        "server RSS        {rss_before} KiB before, {peak} KiB peak sampled (process high-water mark {hwm} KiB)"
    );
    serde_json::json!({
        "scenario": "storm",
        "sessions": args.sessions,
        "users": args.users,
        "jitter_ms": args.jitter_ms,
        "resynced": total.resynced,
        "retries": total.retries,
        "seconds_until_all_resynced": elapsed,
        "connect": connect,
        "catch_up": caught_up,
        "rss_before_kib": rss_before,
        "rss_peak_kib": peak,
        "rss_high_water_mark_kib": hwm,
    })
}

pub async fn worker(job: StormJob) -> anyhow::Result<()> {
    let mut sessions = Vec::with_capacity(job.tokens.len());
    for chunk in job.tokens.chunks(64) {
        let opened = chunk.iter().map(|token| {
            let (server, token) = (job.server.clone(), token.clone());
            tokio::spawn(async move { resync(&server, &token, &mut 0).await })
        });
        for task in opened.collect::<Vec<_>>() {
            sessions.push(task.await??.0);
        }
    }
    report(&serde_json::json!({ "ready": sessions.len() }));
    wait_for_signal().await;
    let dropped = Instant::now();
    drop(sessions);
    let tasks: Vec<_> = job
        .tokens
        .iter()
        .map(|token| {
            let (server, token, jitter) = (job.server.clone(), token.clone(), job.jitter_ms);
            tokio::spawn(async move {
                let wait = rand::rng().random_range(0..=jitter);
                tokio::time::sleep(Duration::from_millis(wait)).await;
                let mut retries = 0;
                let resynced = resync(&server, &token, &mut retries).await;
                (resynced.ok(), retries, dropped.elapsed())
            })
        })
        .collect();
    let mut result = StormResult::default();
    let (mut connect, mut caught_up) = (Latency::default(), Latency::default());
    for task in tasks {
        let (resynced, retries, took) = task.await?;
        if let Some((_conn, connect_took, catch_up_took)) = resynced {
            result.resynced += 1;
            connect.record(connect_took);
            caught_up.record(catch_up_took);
        }
        result.retries += retries;
        result.last_ms = result.last_ms.max(took.as_secs_f64() * 1000.0);
    }
    result.connect = connect.export();
    result.catch_up = caught_up.export();
    report(&serde_json::to_value(&result)?);
    Ok(())
}

/// Connects and catches up from nothing, retrying after refusals; returns
/// the connection and how long the working attempt's connect and catch-up took.
async fn resync(
    server: &str,
    token: &str,
    retries: &mut u64,
) -> anyhow::Result<(Connection, Duration, Duration)> {
    let mut backoff = Duration::from_millis(50);
    loop {
        let attempt = async {
            let started = Instant::now();
            let conn = Connection::connect(server, token).await?;
            let connected = Instant::now();
            catch_up(&conn, &mut SyncState::new()).await?;
            Ok::<_, ClientError>((conn, connected - started, connected.elapsed()))
        };
        match attempt.await {
            Ok(resynced) => return Ok(resynced),
            Err(e) if *retries < 20 => {
                *retries += 1;
                let wait = e
                    .retry_after_ms()
                    .map(Duration::from_millis)
                    .unwrap_or(backoff);
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e.into()),
        }
    }
}
