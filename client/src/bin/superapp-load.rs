//! `superapp-load`: benchmarks against a running server, over the real protocol.
//!
//! `superapp-load idle --sessions N` registers a few users, logs each in once,
//! and opens N authenticated WebSocket sessions split over worker processes (a
//! process here holds at most about 20,000 descriptors). It reads the server's
//! resident memory from /proc before and after, holds the sessions through
//! heartbeats, and reports memory per session and the server CPU spent holding
//! them. It prints a table for people and writes JSON for tools.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use superapp_client::futures_util::StreamExt as _;
use superapp_client::{HttpClient, connect_raw};

#[derive(Parser)]
#[command(about = "Load generator and benchmarks for superapp")]
struct Cli {
    /// Base URL of the server.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
    server: String,
    #[command(subcommand)]
    command: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Hold N idle authenticated sessions; report server memory per session.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        sessions: usize,
        /// Distinct users the sessions belong to (each logs in once).
        #[arg(long, default_value_t = 20)]
        users: usize,
        /// Worker processes opening the sessions.
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Seconds to hold the sessions once all are open.
        #[arg(long, default_value_t = 30)]
        hold: u64,
        /// The server's process id, to read its memory and CPU from /proc.
        #[arg(long)]
        server_pid: u32,
        /// Where to write the JSON result.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
    /// Internal: one worker process of `idle`.
    #[command(hide = true)]
    IdleWorker {
        #[arg(long)]
        sessions: usize,
        #[arg(long)]
        hold: u64,
        /// Access tokens, comma-separated; sessions use them round-robin.
        #[arg(long)]
        tokens: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Scenario::Idle {
            sessions,
            users,
            workers,
            hold,
            server_pid,
            json,
        } => runtime.block_on(idle(
            &cli.server,
            sessions,
            users,
            workers,
            hold,
            server_pid,
            json,
        )),
        Scenario::IdleWorker {
            sessions,
            hold,
            tokens,
        } => runtime.block_on(idle_worker(&cli.server, sessions, hold, &tokens)),
    }
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// User plus system CPU time of a process, in seconds.
fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').context("bad stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

async fn idle(
    server: &str,
    sessions: usize,
    users: usize,
    workers: usize,
    hold: u64,
    server_pid: u32,
    json: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let http = HttpClient::new(server);
    let password = "load generator passphrase";
    let run = std::process::id();
    let mut tokens = Vec::new();
    for u in 0..users.max(1) {
        let phone = format!("+1555{:04}{:04}", run % 10_000, u);
        // Registering again after an earlier run is fine: log in either way.
        let _ = http.register(&phone, password, &format!("load {u}")).await;
        tokens.push(http.login(&phone, password).await?.access_token);
    }
    let tokens = tokens.join(",");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = rss_kib(server_pid)?;

    let exe = std::env::current_exe()?;
    let per_worker = sessions.div_ceil(workers.max(1));
    let started = Instant::now();
    let mut children = Vec::new();
    let mut remaining = sessions;
    while remaining > 0 {
        let n = per_worker.min(remaining);
        remaining -= n;
        let child = Command::new(&exe)
            .args(["--server", server, "idle-worker", "--sessions"])
            .arg(n.to_string())
            .args(["--hold", &(hold + 600).to_string(), "--tokens", &tokens])
            .stdout(Stdio::piped())
            .spawn()?;
        children.push(child);
    }
    let mut opened = 0;
    for child in &mut children {
        let stdout = child.stdout.take().context("worker stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        opened += line
            .trim()
            .strip_prefix("open ")
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0);
    }
    let open_secs = started.elapsed().as_secs_f64();
    if opened < sessions {
        for c in &mut children {
            let _ = c.kill();
        }
        bail!("only {opened} of {sessions} sessions opened");
    }
    // Let allocations settle, then measure across the hold.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_open = rss_kib(server_pid)?;
    let cpu_start = cpu_secs(server_pid)?;
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let cpu_held = cpu_secs(server_pid)? - cpu_start;
    let rss_after = rss_kib(server_pid)?;
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }

    let per_session =
        (rss_after.max(rss_open) as f64 - rss_before as f64) * 1024.0 / sessions as f64;
    let cpu_per_sec = cpu_held / hold.max(1) as f64;
    println!("scenario          idle");
    println!("sessions          {sessions} ({users} users, {workers} worker processes)");
    println!("opened in         {open_secs:.1} s");
    println!(
        "server RSS        {rss_before} KiB before, {rss_open} KiB open, {rss_after} KiB after {hold} s"
    );
    println!(
        "per session       {:.0} bytes ({:.2} KiB)",
        per_session,
        per_session / 1024.0
    );
    println!(
        "server CPU held   {cpu_held:.2} s over {hold} s ({:.1} % of one core)",
        cpu_per_sec * 100.0
    );
    let result = serde_json::json!({
        "scenario": "idle",
        "sessions": sessions,
        "users": users,
        "workers": workers,
        "open_seconds": open_secs,
        "rss_before_kib": rss_before,
        "rss_open_kib": rss_open,
        "rss_after_kib": rss_after,
        "bytes_per_session": per_session,
        "hold_seconds": hold,
        "server_cpu_seconds_during_hold": cpu_held,
    });
    if let Some(path) = json {
        std::fs::write(path, serde_json::to_string_pretty(&result)?)?;
    }
    Ok(())
}

async fn idle_worker(server: &str, sessions: usize, hold: u64, tokens: &str) -> anyhow::Result<()> {
    let tokens: Vec<&str> = tokens.split(',').collect();
    let mut handles = Vec::with_capacity(sessions);
    // A few connects at a time, so the listen backlog never overflows.
    let mut in_flight = Vec::new();
    for i in 0..sessions {
        let token = tokens[i % tokens.len()].to_string();
        let server = server.to_string();
        in_flight.push(tokio::spawn(async move {
            connect_raw(&server, Some(&token), None).await
        }));
        if in_flight.len() == 64 || i + 1 == sessions {
            for pending in in_flight.drain(..) {
                let mut socket = pending.await??;
                // Reading is what answers the server's pings.
                handles.push(tokio::spawn(async move {
                    while socket.next().await.is_some() {}
                }));
            }
        }
    }
    println!("open {}", handles.len());
    std::io::stdout().flush()?;
    tokio::time::sleep(Duration::from_secs(hold)).await;
    Ok(())
}
