//! *idle*: N authenticated sessions held with heartbeats; server memory per
//! session (RSS delta / N) and the server CPU spent holding them.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use superapp_client::connect_raw;
use superapp_client::futures_util::StreamExt as _;
use tokio::sync::mpsc;

use crate::procfs::{cpu_secs, rss_kib};
use crate::setup::{Worker, next_line, report, users, wait_for_signal};

#[derive(clap::Args)]
pub struct IdleArgs {
    #[arg(long, default_value_t = 10_000)]
    pub sessions: usize,
    /// Distinct users the sessions belong to (each logs in once).
    #[arg(long, default_value_t = 20)]
    pub users: usize,
    /// Worker processes opening the sessions (at most ~19,000 each).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Seconds to hold the sessions once all are open.
    #[arg(long, default_value_t = 30)]
    pub hold: u64,
    /// The server's process ids (several: the gateways of the Redis tier), to
    /// read their memory and CPU from /proc; figures are summed.
    #[arg(long, value_delimiter = ',', required = true)]
    pub server_pid: Vec<u32>,
    /// Gateways to hold the sessions, comma-separated; worker i uses gateway
    /// i mod n. Default: the server.
    #[arg(long, value_delimiter = ',')]
    pub ws: Vec<String>,
}

fn total(pids: &[u32], read: fn(u32) -> anyhow::Result<u64>) -> anyhow::Result<u64> {
    pids.iter().map(|p| read(*p)).sum()
}

fn total_cpu(pids: &[u32]) -> anyhow::Result<f64> {
    pids.iter().map(|p| cpu_secs(*p)).sum()
}

#[derive(Serialize, Deserialize)]
pub struct IdleJob {
    server: String,
    sessions: usize,
    tokens: Vec<String>,
}

/// The servers' figures across the run, summed over their processes.
struct Measured {
    rss_before: u64,
    /// Seconds until every session was open.
    open_secs: f64,
    rss_open: u64,
    rss_after: u64,
    /// CPU seconds spent during the hold.
    cpu_held: f64,
}

pub async fn run(server: &str, args: IdleArgs) -> anyhow::Result<serde_json::Value> {
    let tokens: Vec<String> = users(server, args.users.max(1))
        .await?
        .into_iter()
        .map(|u| u.token)
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = total(&args.server_pid, rss_kib)?;
    let started = Instant::now();
    let workers = open_sessions(server, &args, &tokens).await?;
    let open_secs = started.elapsed().as_secs_f64();
    // Let allocations settle, then measure across the hold.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_open = total(&args.server_pid, rss_kib)?;
    let cpu_start = total_cpu(&args.server_pid)?;
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    let cpu_held = total_cpu(&args.server_pid)? - cpu_start;
    let rss_after = total(&args.server_pid, rss_kib)?;
    drop(workers);
    Ok(print_report(
        &args,
        &Measured {
            rss_before,
            open_secs,
            rss_open,
            rss_after,
            cpu_held,
        },
    ))
}

/// Shares the sessions among worker processes, worker i on gateway i mod n,
/// and returns them once every session is open.
async fn open_sessions(
    server: &str,
    args: &IdleArgs,
    tokens: &[String],
) -> anyhow::Result<Vec<Worker>> {
    let (tx, mut lines) = mpsc::unbounded_channel();
    let per_worker = args.sessions.div_ceil(args.workers.max(1));
    let mut workers = Vec::new();
    let mut remaining = args.sessions;
    while remaining > 0 {
        let n = per_worker.min(remaining);
        remaining -= n;
        let gateway = match args.ws.len() {
            0 => server.to_string(),
            n => args.ws[workers.len() % n].clone(),
        };
        let job = IdleJob {
            server: gateway,
            sessions: n,
            tokens: tokens.to_vec(),
        };
        workers.push(Worker::with_job("idle-worker", &job, tx.clone())?);
    }
    drop(tx);
    let mut opened = 0;
    for _ in 0..workers.len() {
        let line = next_line(&mut lines).await?;
        opened += line["open"].as_u64().unwrap_or(0) as usize;
    }
    anyhow::ensure!(
        opened == args.sessions,
        "only {opened} of {} sessions opened",
        args.sessions
    );
    Ok(workers)
}

/// Prints the table and returns the JSON result.
fn print_report(args: &IdleArgs, m: &Measured) -> serde_json::Value {
    let Measured {
        rss_before,
        open_secs,
        rss_open,
        rss_after,
        cpu_held,
    } = *m;
    let per_session =
        (rss_after.max(rss_open) as f64 - rss_before as f64) * 1024.0 / args.sessions as f64;
    println!("scenario          idle");
    println!(
        "sessions          {} ({} users, {} worker processes)",
        args.sessions, args.users, args.workers
    );
    println!("opened in         {open_secs:.1} s");
    println!(
        "server RSS        {rss_before} KiB before, {rss_open} KiB open, {rss_after} KiB after {} s",
        args.hold
    );
    println!(
        "per session       {per_session:.0} bytes ({:.2} KiB)",
        per_session / 1024.0
    );
    println!(
        "server CPU held   {cpu_held:.2} s over {} s ({:.1} % of one core)",
        args.hold,
        cpu_held / args.hold.max(1) as f64 * 100.0
    );
    serde_json::json!({
        "scenario": "idle",
        "server_processes": args.server_pid.len(),
        "sessions": args.sessions,
        "users": args.users,
        "workers": args.workers,
        "open_seconds": open_secs,
        "rss_before_kib": rss_before,
        "rss_open_kib": rss_open,
        "rss_after_kib": rss_after,
        "bytes_per_session": per_session,
        "hold_seconds": args.hold,
        "server_cpu_seconds_during_hold": cpu_held,
    })
}

/// Opens the sessions, says how many, and holds them until told or killed.
pub async fn worker(job: IdleJob) -> anyhow::Result<()> {
    let mut handles = Vec::with_capacity(job.sessions);
    let mut in_flight = Vec::new();
    for i in 0..job.sessions {
        let token = job.tokens[i % job.tokens.len()].clone();
        let server = job.server.clone();
        in_flight.push(tokio::spawn(async move {
            // A refused or failed handshake is retried, as a real client would.
            let mut backoff = Duration::from_millis(100);
            let mut attempts = 0;
            loop {
                attempts += 1;
                match connect_raw(&server, Some(&token), None).await {
                    Ok(socket) => return Ok(socket),
                    Err(e) if attempts >= 10 => return Err(e),
                    Err(_) => {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            }
        }));
        // A few connects at a time, so the listen backlog never overflows.
        if in_flight.len() == 64 || i + 1 == job.sessions {
            for pending in in_flight.drain(..) {
                let mut socket = pending.await??;
                // Reading is what answers the server's pings.
                handles.push(tokio::spawn(async move {
                    while socket.next().await.is_some() {}
                }));
            }
        }
    }
    report(&serde_json::json!({ "open": handles.len() }));
    wait_for_signal().await;
    Ok(())
}
