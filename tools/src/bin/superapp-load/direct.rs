//! *direct*: M pairs chatting one-to-one at a target rate, open loop: each
//! sender sends on its schedule whatever the server's latency, and latency is
//! measured from the scheduled time, so a stalled server cannot hide its queue.
//! Reports acked and delivered messages per second and send-to-ack and
//! send-to-delivery percentiles. `--find-max` ramps the rate to the highest one
//! the target sustains, then measures at 50 % and 80 % of it. `--relay` runs the
//! same load against a bare WebSocket relay started alongside (the ceiling).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use superapp_client::Connection;
use superapp_client::proto::v1::{event, message_body};
use tokio::sync::{Mutex, mpsc};

use crate::hist::{Latency, Recorded, Summary, ms};
use crate::setup::{LoadUser, Worker, next_line, report, users};

#[derive(clap::Args, Clone)]
pub struct DirectArgs {
    /// Sender/receiver pairs.
    #[arg(long, default_value_t = 200)]
    pub pairs: usize,
    /// Total messages per second across all pairs (without --find-max).
    #[arg(long, default_value_t = 2_000)]
    pub rate: u64,
    /// Seconds each measured run lasts.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Worker processes sharing the pairs.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Find the highest sustained rate, then measure at 50 % and 80 % of it.
    #[arg(long)]
    pub find_max: bool,
    /// Also run against a bare relay on the same WebSocket stack.
    #[arg(long)]
    pub relay: bool,
    /// The server's process id: also report the CPU it spent in each run.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Gateways for the WebSocket sessions (the Redis tier), comma-separated:
    /// senders use the first, receivers the last, so with two every message
    /// crosses from one gateway to another. Default: the server.
    #[arg(long, value_delimiter = ',')]
    pub ws: Vec<String>,
}

#[derive(Serialize, Deserialize)]
pub struct DirectJob {
    /// Where senders connect.
    url: String,
    /// Where receivers connect.
    receiver_url: String,
    /// (sender, receiver) per pair.
    pairs: Vec<(LoadUser, LoadUser)>,
    rate_per_pair: f64,
    duration_secs: f64,
    /// Wall-clock start, so all workers begin together.
    start_unix_ms: u64,
}

#[derive(Default, Serialize, Deserialize)]
struct WorkerResult {
    scheduled: u64,
    acked: u64,
    delivered: u64,
    errors: u64,
    ack: Recorded,
    delivery: Recorded,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct RunResult {
    pub target_rate: u64,
    pub scheduled: u64,
    pub acked_per_sec: f64,
    pub delivered_per_sec: f64,
    pub errors: u64,
    pub lost: u64,
    pub ack: Summary,
    pub delivery: Summary,
    /// CPU the measured process spent during the run, in cores (1.0 = one core).
    pub target_cpu_cores: Option<f64>,
}

impl RunResult {
    /// Kept up: nearly all acked and delivered, and no queue building up.
    fn sustained(&self) -> bool {
        let target = self.target_rate as f64;
        self.acked_per_sec >= 0.95 * target
            && self.delivered_per_sec >= 0.95 * target
            && self.errors == 0
            && self.ack.p99_us < 200_000
    }
}

/// Where the load goes: the real server (users with tokens) or the relay.
pub struct Target {
    pub name: &'static str,
    pub url: String,
    /// Where receivers connect, when not `url`.
    pub receiver_url: Option<String>,
    pub pairs: Vec<(LoadUser, LoadUser)>,
    /// The process serving this target, when known.
    pub pid: Option<u32>,
}

impl Target {
    pub async fn server(url: &str, pairs: usize, pid: Option<u32>) -> anyhow::Result<Self> {
        let mut all = users(url, pairs * 2).await?.into_iter();
        let mut list = Vec::with_capacity(pairs);
        while let (Some(a), Some(b)) = (all.next(), all.next()) {
            list.push((a, b));
        }
        Ok(Self {
            name: "server",
            url: url.to_string(),
            receiver_url: None,
            pairs: list,
            pid,
        })
    }

    /// The relay knows no accounts: a user's token is its id.
    pub fn relay(url: &str, pairs: usize, pid: Option<u32>) -> Self {
        let user = |id: u64| LoadUser {
            id,
            token: id.to_string(),
        };
        Self {
            name: "relay",
            url: url.to_string(),
            receiver_url: None,
            pairs: (0..pairs as u64)
                .map(|p| (user(2 * p + 1), user(2 * p + 2)))
                .collect(),
            pid,
        }
    }
}

pub async fn run(server: &str, args: DirectArgs) -> anyhow::Result<serde_json::Value> {
    let mut results = serde_json::Map::new();
    let mut first = Target::server(server, args.pairs, args.server_pid).await?;
    if let (Some(sender), Some(receiver)) = (args.ws.first(), args.ws.last()) {
        first.url = sender.clone();
        first.receiver_url = Some(receiver.clone());
    }
    let mut targets = vec![first];
    let relay = if args.relay {
        let (worker, url) = crate::relay::start_child().await?;
        targets.push(Target::relay(&url, args.pairs, Some(worker.pid())));
        Some(worker)
    } else {
        None
    };
    let mut max_rates = Vec::new();
    for target in &targets {
        let runs = if args.find_max {
            let max = find_max(target, &args).await?;
            max_rates.push(max);
            println!("{}: highest sustained rate {max} messages/s", target.name);
            let mut runs = Vec::new();
            for share in [50, 80] {
                let rate = max * share / 100;
                runs.push(measure(target, &args, rate, args.duration as f64).await?);
            }
            runs
        } else {
            vec![measure(target, &args, args.rate, args.duration as f64).await?]
        };
        print_table(target.name, args.pairs, &runs);
        results.insert(target.name.to_string(), serde_json::to_value(&runs)?);
    }
    drop(relay);
    if let [server_max, relay_max] = max_rates[..] {
        let ratio = server_max as f64 / relay_max.max(1) as f64;
        println!(
            "server / relay highest sustained rate: {:.0} %",
            ratio * 100.0
        );
        results.insert("server_to_relay_ratio".into(), serde_json::json!(ratio));
    }
    if args.relay {
        // The storage ceiling in the same run: raw SQLite rows in the server's mode.
        let raw = crate::baseline::run(crate::baseline::BaselineArgs::quick())?;
        results.insert("sqlite_baseline".into(), raw);
    }
    results.insert("scenario".into(), "direct".into());
    results.insert("pairs".into(), args.pairs.into());
    Ok(serde_json::Value::Object(results))
}

/// Doubles the rate until a run fails, then bisects twice.
async fn find_max(target: &Target, args: &DirectArgs) -> anyhow::Result<u64> {
    let probe = (args.duration as f64 / 2.0).max(3.0);
    let (mut good, mut bad) = (0u64, None);
    let mut rate = args.rate.max(100);
    while bad.is_none() {
        let r = measure(target, args, rate, probe).await?;
        eprintln!(
            "  probe {} {rate}/s: acked {:.0}/s delivered {:.0}/s ack p99 {}",
            target.name,
            r.acked_per_sec,
            r.delivered_per_sec,
            ms(r.ack.p99_us)
        );
        if r.sustained() {
            good = rate;
            rate *= 2;
        } else {
            bad = Some(rate);
        }
    }
    let mut bad = bad.unwrap_or(rate);
    for _ in 0..2 {
        let mid = (good + bad) / 2;
        let r = measure(target, args, mid, probe).await?;
        eprintln!(
            "  probe {} {mid}/s: acked {:.0}/s ack p99 {}",
            target.name,
            r.acked_per_sec,
            ms(r.ack.p99_us)
        );
        if r.sustained() {
            good = mid;
        } else {
            bad = mid;
        }
    }
    Ok(good)
}

pub async fn measure(
    target: &Target,
    args: &DirectArgs,
    rate: u64,
    secs: f64,
) -> anyhow::Result<RunResult> {
    let workers = args.workers.clamp(1, target.pairs.len().max(1));
    let per_pair = rate as f64 / target.pairs.len().max(1) as f64;
    let start_unix_ms = now_unix_ms() + 1_500;
    let (tx, mut lines) = mpsc::unbounded_channel();
    let mut running = Vec::new();
    for chunk in target.pairs.chunks(target.pairs.len().div_ceil(workers)) {
        let job = DirectJob {
            url: target.url.clone(),
            receiver_url: target
                .receiver_url
                .clone()
                .unwrap_or_else(|| target.url.clone()),
            pairs: chunk.to_vec(),
            rate_per_pair: per_pair,
            duration_secs: secs,
            start_unix_ms,
        };
        running.push(Worker::with_job("direct-worker", &job, tx.clone())?);
    }
    drop(tx);
    let cpu = match target.pid {
        Some(pid) => {
            let wait = start_unix_ms.saturating_sub(now_unix_ms());
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let before = crate::procfs::cpu_secs(pid)?;
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            Some((crate::procfs::cpu_secs(pid)? - before) / secs)
        }
        None => None,
    };
    let (mut ack, mut delivery) = (Latency::default(), Latency::default());
    let mut total = WorkerResult::default();
    for _ in 0..running.len() {
        let line = next_line(&mut lines).await?;
        let r: WorkerResult = serde_json::from_value(line)?;
        ack.merge(&r.ack);
        delivery.merge(&r.delivery);
        total.scheduled += r.scheduled;
        total.acked += r.acked;
        total.delivered += r.delivered;
        total.errors += r.errors;
    }
    Ok(RunResult {
        target_rate: rate,
        scheduled: total.scheduled,
        acked_per_sec: total.acked as f64 / secs,
        delivered_per_sec: total.delivered as f64 / secs,
        errors: total.errors,
        lost: total.scheduled.saturating_sub(total.delivered),
        ack: ack.summary(),
        delivery: delivery.summary(),
        target_cpu_cores: cpu,
    })
}

fn print_table(name: &str, pairs: usize, runs: &[RunResult]) {
    println!("scenario direct, target {name}, {pairs} pairs");
    println!(
        "{:>8} {:>10} {:>10} {:>7} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>6}",
        "rate/s",
        "acked/s",
        "deliv/s",
        "errors",
        "ack p50",
        "ack p99",
        "ack p99.9",
        "dlv p50",
        "dlv p99",
        "dlv p99.9",
        "CPU"
    );
    for r in runs {
        println!(
            "{:>8} {:>10.0} {:>10.0} {:>7} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>6}",
            r.target_rate,
            r.acked_per_sec,
            r.delivered_per_sec,
            r.errors,
            ms(r.ack.p50_us),
            ms(r.ack.p99_us),
            ms(r.ack.p999_us),
            ms(r.delivery.p50_us),
            ms(r.delivery.p99_us),
            ms(r.delivery.p999_us),
            r.target_cpu_cores
                .map(|c| format!("{:.0}%", c * 100.0))
                .unwrap_or_default()
        );
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Runs this worker's pairs and prints one JSON result line.
pub async fn worker(job: DirectJob) -> anyhow::Result<()> {
    let epoch = Instant::now();
    let ack = Arc::new(Mutex::new(Latency::default()));
    let delivery = Arc::new(Mutex::new(Latency::default()));
    let counters = Arc::new(Counters::default());
    let mut connections = Vec::new();
    for (sender, receiver) in &job.pairs {
        let a = Arc::new(Connection::connect(&job.url, &sender.token).await?);
        let b = Arc::new(Connection::connect(&job.receiver_url, &receiver.token).await?);
        connections.push((a, b, receiver.id));
    }
    let wait = job.start_unix_ms.saturating_sub(now_unix_ms());
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(job.duration_secs);
    let mut tasks = Vec::new();
    for (index, (a, b, to)) in connections.iter().cloned().enumerate() {
        // Receivers record delivery; the sender's own copy is drained.
        tasks.push(tokio::spawn(receive(
            b,
            epoch,
            delivery.clone(),
            counters.clone(),
            end,
        )));
        tasks.push(tokio::spawn(drain(a.clone(), end)));
        let interval = Duration::from_secs_f64(1.0 / job.rate_per_pair.max(0.001));
        // Spread the pairs' first sends across one interval.
        let offset = interval.mul_f64(index as f64 / connections.len() as f64);
        let (ack, counters) = (ack.clone(), counters.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                let scheduled = start + offset + interval.mul_f64(n as f64);
                if scheduled >= end {
                    break;
                }
                tokio::time::sleep_until(scheduled.into()).await;
                counters.scheduled.fetch_add(1, Ordering::Relaxed);
                let (a, ack, counters) = (a.clone(), ack.clone(), counters.clone());
                let text = format!("{}", scheduled.duration_since(epoch).as_nanos());
                let cmid = format!("{index}-{n}-{}", std::process::id());
                tokio::spawn(async move {
                    match a.send_text(to, &cmid, &text).await {
                        Ok(_) => {
                            ack.lock().await.record(scheduled.elapsed());
                            counters.acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            counters.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
                n += 1;
            }
        }));
    }
    // Let the last sends land, then stop counting.
    tokio::time::sleep_until((end + Duration::from_secs(3)).into()).await;
    for t in tasks {
        t.abort();
    }
    let result = WorkerResult {
        scheduled: counters.scheduled.load(Ordering::Relaxed),
        acked: counters.acked.load(Ordering::Relaxed),
        delivered: counters.delivered.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
        ack: ack.lock().await.export(),
        delivery: delivery.lock().await.export(),
    };
    report(&serde_json::to_value(&result)?);
    Ok(())
}

#[derive(Default)]
struct Counters {
    scheduled: AtomicU64,
    acked: AtomicU64,
    delivered: AtomicU64,
    errors: AtomicU64,
}

async fn receive(
    conn: Arc<Connection>,
    epoch: Instant,
    delivery: Arc<Mutex<Latency>>,
    counters: Arc<Counters>,
    end: Instant,
) {
    let stop = end + Duration::from_secs(3);
    while Instant::now() < stop {
        let Some(event) = conn.next_event(Duration::from_millis(200)).await else {
            continue;
        };
        if let Some(event::Kind::Message(m)) = event.kind {
            let sent = m.body.and_then(|b| match b.content {
                Some(message_body::Content::Text(t)) => t.parse::<u64>().ok(),
                _ => None,
            });
            if let Some(nanos) = sent {
                let scheduled = epoch + Duration::from_nanos(nanos);
                delivery.lock().await.record(scheduled.elapsed());
                counters.delivered.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

async fn drain(conn: Arc<Connection>, end: Instant) {
    let stop = end + Duration::from_secs(3);
    while Instant::now() < stop {
        let _ = conn.next_event(Duration::from_millis(200)).await;
    }
}
