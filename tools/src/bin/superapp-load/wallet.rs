//! *wallet*: transfers per second with their latency, and red-packet grabs per
//! second on one hot packet and across many, each exact, against a running
//! server; beside them, the raw rate of the same store (the ceiling), taken
//! in this process in the same run.
//!
//! The server runs with the wallet's limits opened up, since one user here
//! pays far faster than the velocity and daily limits let a person:
//!
//! ```sh
//! SUPERAPP_SERVER__MAX_CONNECTIONS_PER_ADDRESS=100000 SUPERAPP_AUTH__REGISTRATIONS_PER_ADDRESS=1000000 \
//!     SUPERAPP_GATEWAY__USER_RATE_PER_SEC=100000 \
//!     SUPERAPP_WALLET__VELOCITY_BURST=1000000 SUPERAPP_WALLET__VELOCITY_PER_SEC=1000000 \
//!     SUPERAPP_WALLET__DAILY_OUT_COUNT=1000000 SUPERAPP_WALLET__PACKET_MAX_COUNT=6000 \
//!     SUPERAPP_WALLET__UNVERIFIED_BALANCE_FEN=100000000 \
//!     target/release/superapp serve --listen 127.0.0.1:18400 --data /tmp/wallet-bench/data &
//! target/release/superapp-load --server http://127.0.0.1:18400 --json wallet.json wallet \
//!     --rates 5000,10000,20000 --server-pid $!
//! ```
//!
//! 1. Set-up: `--users` users befriended in pairs, a group of `--group`
//!    members (the first user owns it), a payment PIN for each user who
//!    pays, and each wallet funded with what the run will spend through a
//!    real top-up at the sandbox provider (opened, paid at its checkout,
//!    waited for until the provider's callback credited it).
//! 2. The ceiling: [`superapp_wallet::rate`] on a SQLite store opened as the
//!    server opens its own, in a temporary directory: `--ceiling-clients`
//!    tasks applying keyed transfers straight to the store.
//! 3. Transfers, open loop, at each of `--rates` for `--secs`: each from a
//!    random pair of friends, in a random direction, with an idempotency key
//!    and the PIN, through the SDK over keep-alive connections. Before each
//!    run every payer pays its friend 1 fen, a few at a time, so the run
//!    starts with each PIN verified lately, as a person's is after the
//!    first payment (see [`verify_pins`]). Latency
//!    counts from the scheduled time, so a server that falls behind cannot
//!    hide its queue; at most `--max-in-flight` requests are out at once
//!    and the rest wait, their wait counted.
//! 4. One hot packet: a red packet of one share per member, grabbed by
//!    every member at once, and by `--duplicates` of them a second time
//!    (half with a new key, which must be refused; half repeating their
//!    key, which must answer the same share). Grabs per second are the
//!    successful grabs over the time from the first request to the last
//!    answer. Exact: every member got one share, and the packet's grabs
//!    sum to its amount.
//! 5. Many packets: `--packets` packets of `--shares` shares each, grabbed
//!    at once by the members, each grabbing its packets one after another.
//!    Exact in the same way, packet by packet.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::Rng as _;
use rand::seq::SliceRandom as _;
use serde::Serialize;
use superapp_client::wallet::OrderStatus;
use superapp_client::wallet::{NewRedPacket, PacketGrabbed, RedPacketMode, RedPacketStatus};
use superapp_client::{ClientError, HttpClient, new_idempotency_key};
use superapp_wallet::rate::{RateRun, transfer_rate};
use superapp_wallet::{SqliteWalletStore, WalletStore};
use tokio::sync::{Semaphore, watch};

use crate::hist::{Latency, Summary, ms};
use crate::setup::{LoadUser, befriend, users};

#[derive(clap::Args)]
pub struct WalletArgs {
    /// Users who send transfers, befriended in pairs (an odd one out sits
    /// the transfers out).
    #[arg(long, default_value_t = 1_000)]
    pub users: usize,
    /// Transfers per second offered, one open-loop run at each.
    #[arg(long, value_delimiter = ',', default_value = "5000,10000,20000")]
    pub rates: Vec<u64>,
    /// Seconds each transfer run lasts.
    #[arg(long, default_value_t = 10)]
    pub secs: u64,
    /// Transfer requests out at once, at most.
    #[arg(long, default_value_t = 2_000)]
    pub max_in_flight: usize,
    /// Members of the red packets' group, its owner included (2 to 6000;
    /// the server's `wallet.packet_max_count` must allow as many shares).
    #[arg(long, default_value_t = 1_000)]
    pub group: usize,
    /// Members who grab the hot packet a second time.
    #[arg(long, default_value_t = 100)]
    pub duplicates: usize,
    /// Packets of the many-packets run.
    #[arg(long, default_value_t = 100)]
    pub packets: usize,
    /// Shares of each of those packets (at most the group's members).
    #[arg(long, default_value_t = 10)]
    pub shares: usize,
    /// Tasks applying transfers to the store for the ceiling.
    #[arg(long, default_value_t = 256)]
    pub ceiling_clients: u32,
    /// Seconds the ceiling is measured.
    #[arg(long, default_value_t = 5)]
    pub ceiling_secs: u64,
    /// The server's process id: also report the CPU it spent in each
    /// transfer run.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

/// The payment PIN of every user of the benchmark (neither one digit six
/// times nor a run, which the server refuses).
const PIN: &str = "285714";
/// Transfers move 1 to this many fen.
const MAX_TRANSFER_FEN: i64 = 9;
/// A red packet holds this many fen per share (the default limits allow a
/// 6000-share packet of it).
const FEN_PER_SHARE: i64 = 3;
/// Set-up calls in flight at once (registrations go 8 at a time in
/// [`users`]; these cost the server far less).
const SETUP_CONCURRENCY: usize = 32;
/// First payments (each verifying a PIN with argon2id) in flight at once,
/// as registrations are in [`users`].
const PIN_CONCURRENCY: usize = 8;
/// How long a top-up may take to be credited.
const PAY_WAIT: Duration = Duration::from_secs(60);

/// The run's people: pairs of friends who send transfers, and the group.
struct People {
    pairs: Vec<(LoadUser, LoadUser)>,
    /// Every member, the owner first.
    members: Vec<LoadUser>,
    group_id: u64,
}

pub async fn run(server: &str, args: WalletArgs) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(args.users >= 2, "--users is at least 2");
    anyhow::ensure!(
        (2..=6_000).contains(&args.group),
        "--group is 2 to 6000 members"
    );
    anyhow::ensure!(
        (1..=args.group).contains(&args.shares),
        "--shares is 1 to the group's members"
    );
    anyhow::ensure!(
        args.secs >= 1 && !args.rates.is_empty(),
        "--secs and --rates"
    );
    anyhow::ensure!(
        args.rates.iter().all(|&r| r >= 1),
        "each rate is at least 1"
    );
    let http = HttpClient::new(server);
    let people = set_up(server, &http, &args).await?;

    println!(
        "ceiling: {} tasks applying keyed transfers to a SQLite store for {} s...",
        args.ceiling_clients, args.ceiling_secs
    );
    let ceiling = vec![sqlite_ceiling(&args).await?];

    let mut transfers = Vec::new();
    for &rate in &args.rates {
        verify_pins(&http, &people.pairs).await?;
        println!("transfers at {rate}/s for {} s...", args.secs);
        transfers.push(transfer_run(&http, &people.pairs, rate, &args).await?);
    }
    println!(
        "one packet of {} shares, grabbed by every member at once...",
        people.members.len()
    );
    let hot = hot_packet(&http, &people, args.duplicates).await?;
    println!(
        "{} packets of {} shares, grabbed at once...",
        args.packets, args.shares
    );
    let many = many_packets(&http, &people, args.packets, args.shares).await?;

    print_tables(&people, &args, &ceiling, &transfers, &hot, &many);
    Ok(serde_json::json!({
        "scenario": "wallet",
        "users": people.pairs.len() * 2,
        "group": people.members.len(),
        "secs": args.secs,
        "ceiling": ceiling,
        "transfers": transfers,
        "hot_packet": hot,
        "many_packets": many,
    }))
}

async fn set_up(server: &str, http: &HttpClient, args: &WalletArgs) -> anyhow::Result<People> {
    let count = args.users.max(args.group);
    println!("registering {count} users...");
    let everyone = users(server, count).await?;
    let pairs: Vec<(LoadUser, LoadUser)> = everyone[..args.users]
        .chunks_exact(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect();
    println!("making {} pairs of friends...", pairs.len());
    befriend(http, &pairs).await?;

    let members = everyone[..args.group].to_vec();
    println!("a group of {} members...", members.len());
    let owner = &members[0];
    let group = retrying(|| http.create_group(&owner.token, "wallet benchmark", &[])).await?;
    let ids: Vec<u64> = members[1..].iter().map(|m| m.id).collect();
    // A request body holds at most 64 KiB.
    for batch in ids.chunks(1_000) {
        retrying(|| http.add_group_members(&owner.token, group.group_id, batch)).await?;
    }

    // What each payer spends: its share of every transfer run, with room
    // for the random draw of senders; the owner also sends the packets.
    let offered: u64 = args.rates.iter().map(|r| r * args.secs).sum();
    let payers = pairs.len() * 2;
    let mean = offered as f64 / payers as f64;
    let warm_ups = args.rates.len() as u64;
    let transfers =
        ((mean + 6.0 * mean.sqrt() + 10.0).ceil() as i64) * MAX_TRANSFER_FEN + warm_ups as i64;
    let packets = FEN_PER_SHARE * (members.len() + args.packets * args.shares) as i64;
    let mut needs: Vec<(LoadUser, i64, u64)> = pairs
        .iter()
        .flat_map(|(a, b)| [a, b])
        .map(|u| (u.clone(), transfers, mean.ceil() as u64 + warm_ups))
        .collect();
    if let Some(first) = needs.iter_mut().find(|(u, ..)| u.id == owner.id) {
        first.1 += packets;
        first.2 += 1 + args.packets as u64;
    } else {
        needs.push((owner.clone(), packets, 1 + args.packets as u64));
    }
    println!(
        "payment PINs and a top-up for {} wallets (up to {} fen each)...",
        needs.len(),
        transfers + packets
    );
    fund(http, needs).await?;
    Ok(People {
        pairs,
        members,
        group_id: group.group_id,
    })
}

/// Sets each payer's PIN (unless an earlier run did) and tops the wallet up
/// to what it will spend, checking first that the server's limits let it
/// hold that and make that many payments today.
async fn fund(http: &HttpClient, needs: Vec<(LoadUser, i64, u64)>) -> anyhow::Result<()> {
    let permits = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let mut tasks = Vec::new();
    for (user, need, payments) in needs {
        let (http, permits) = (http.clone(), permits.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let token = user.token.as_str();
            let wallet = retrying(|| http.wallet(token)).await?;
            if let Some(cap) = wallet.unverified_cap_fen {
                // Grabs credit a little more on top.
                anyhow::ensure!(
                    need + 100_000 <= cap,
                    "a wallet holds at most {cap} fen without a verified real name and this run \
                     needs {need} fen in one: start the server with \
                     SUPERAPP_WALLET__UNVERIFIED_BALANCE_FEN=100000000"
                );
            }
            let left =
                u64::from(wallet.limits.daily_count).saturating_sub(wallet.sent_today.into());
            anyhow::ensure!(
                payments * 2 <= left,
                "a wallet may make {left} more payments today and this run makes up to {} in one: \
                 start the server with SUPERAPP_WALLET__DAILY_OUT_COUNT=1000000",
                payments * 2
            );
            if !wallet.pin_set {
                retrying(|| http.set_wallet_pin(token, PIN, None)).await?;
            }
            let missing = need - wallet.balance_fen;
            if missing > 0 {
                top_up(&http, token, missing).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// Has every payer pay its friend 1 fen, a few at a time, so that the server
/// holds each one's payment PIN as verified lately (for five minutes) when a
/// run starts. The first payment of a user verifies the PIN with argon2id,
/// tens of milliseconds of a core and 19 MiB each; a run that began with a
/// thousand of them at once would measure those (and the server, which
/// does not bound how many run at once, could run out of memory), not the
/// payments that follow, as a person's do.
async fn verify_pins(http: &HttpClient, pairs: &[(LoadUser, LoadUser)]) -> anyhow::Result<()> {
    let payments = pairs.iter().flat_map(|(a, b)| [(a, b), (b, a)]);
    let payments: Vec<(LoadUser, u64)> = payments.map(|(from, to)| (from.clone(), to.id)).collect();
    for batch in payments.chunks(PIN_CONCURRENCY) {
        let mut pending = Vec::new();
        for (from, to) in batch {
            let (http, token, to) = (http.clone(), from.token.clone(), *to);
            pending.push(tokio::spawn(async move {
                let key = new_idempotency_key();
                retrying(|| http.send_transfer(&token, to, 1, "", PIN, &key)).await
            }));
        }
        for p in pending {
            p.await?.context("a payment to have the PIN verified")?;
        }
    }
    Ok(())
}

/// A top-up of `amount` fen, paid at the sandbox provider's checkout, and
/// waited for until the provider's callback has credited it.
async fn top_up(http: &HttpClient, token: &str, amount: i64) -> anyhow::Result<()> {
    let key = new_idempotency_key();
    let started = retrying(|| http.top_up(token, amount, &key)).await?;
    retrying(|| http.sandbox_pay(&started.pay_url, true)).await?;
    let deadline = Instant::now() + PAY_WAIT;
    loop {
        let order = retrying(|| http.wallet_order(token, started.order.order_id)).await?;
        match order.status {
            OrderStatus::Paid => return Ok(()),
            OrderStatus::Open if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            status => anyhow::bail!(
                "top-up {} is {status:?} after {PAY_WAIT:?}",
                started.order.order_id
            ),
        }
    }
}

/// A set-up call, again after a refusal for rate or a busy server.
async fn retrying<T, F>(mut call: impl FnMut() -> F) -> Result<T, ClientError>
where
    F: Future<Output = Result<T, ClientError>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Err(e) if attempt < 20 && retryable(&e) => {
                let wait = e.retry_after_ms().unwrap_or(100).clamp(10, 2_000);
                tokio::time::sleep(Duration::from_millis(wait)).await;
                attempt += 1;
            }
            done => return done,
        }
    }
}

fn retryable(e: &ClientError) -> bool {
    match e {
        ClientError::Http(_) => true,
        ClientError::Api { status, .. } => *status == 429 || *status == 503,
        _ => false,
    }
}

/// The stable code of a failed call, or what kind of local failure it was.
fn code_of(e: &ClientError) -> String {
    match e {
        ClientError::Http(e) if e.is_timeout() => "timeout".into(),
        ClientError::Http(_) => "transport".into(),
        ClientError::Timeout(_) => "timeout".into(),
        ClientError::Decode(_) => "decode".into(),
        e => e.code().unwrap_or("other").to_string(),
    }
}

/// The store alone: what the server's ledger could take at most.
#[derive(Debug, Serialize)]
struct Ceiling {
    store: &'static str,
    clients: u32,
    secs: f64,
    transfers: u64,
    transfers_per_sec: f64,
    /// The reconciliation of the store after the run found nothing wrong.
    books_sound: bool,
}

async fn sqlite_ceiling(args: &WalletArgs) -> anyhow::Result<Ceiling> {
    let dir = tempfile::tempdir()?;
    // The server's own open call for its `wallet.db`.
    let store: Arc<dyn WalletStore> = Arc::new(
        SqliteWalletStore::open(&dir.path().join("wallet.db")).context("opening wallet.db")?,
    );
    ceiling("sqlite", store, args).await
}

async fn ceiling(
    name: &'static str,
    store: Arc<dyn WalletStore>,
    args: &WalletArgs,
) -> anyhow::Result<Ceiling> {
    let run = RateRun {
        clients: args.ceiling_clients,
        duration: Duration::from_secs(args.ceiling_secs),
        keyed: true,
    };
    let rate = transfer_rate(store, run).await?;
    Ok(Ceiling {
        store: name,
        clients: run.clients,
        secs: rate.elapsed.as_secs_f64(),
        transfers: rate.transfers,
        transfers_per_sec: rate.per_sec(),
        books_sound: rate.books.is_clean(),
    })
}

/// One open-loop transfer run.
#[derive(Debug, Serialize)]
struct TransferRun {
    target_rate: u64,
    /// Requests scheduled.
    offered: u64,
    /// Transfers the server accepted.
    ok: u64,
    /// Accepted transfers over the time from the first scheduled request to
    /// the last answer (at least the run's length).
    achieved_per_sec: f64,
    /// Refusals and failures by code.
    errors: BTreeMap<String, u64>,
    /// Requests still unanswered when the run gave up waiting.
    unanswered: u64,
    /// Accepted transfers, from the scheduled time to the answer.
    latency: Summary,
    /// CPU the server spent during the run, in cores (1.0 = one core).
    server_cpu_cores: Option<f64>,
    /// CPU this load generator spent during the run, in cores.
    load_cpu_cores: Option<f64>,
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    answered: AtomicU64,
    /// When the last answer came, in µs after the run's start.
    last_us: AtomicU64,
    latency: Mutex<Latency>,
    errors: Mutex<BTreeMap<String, u64>>,
}

async fn transfer_run(
    http: &HttpClient,
    pairs: &[(LoadUser, LoadUser)],
    rate: u64,
    args: &WalletArgs,
) -> anyhow::Result<TransferRun> {
    let offered = rate * args.secs;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let permits = Arc::new(Semaphore::new(args.max_in_flight.max(1)));
    let tally = Arc::new(Tally::default());
    let pairs: Arc<[(LoadUser, LoadUser)]> = pairs.into();
    let cpu_before = cpu(args.server_pid)?;
    let start = Instant::now() + Duration::from_millis(100);
    let mut rng = rand::rng();
    for n in 0..offered {
        let scheduled = start + interval.mul_f64(n as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let pair = rng.random_range(0..pairs.len());
        let forward = rng.random_bool(0.5);
        let amount = rng.random_range(1..=MAX_TRANSFER_FEN);
        // Taken here, in order, so that once the schedule is done every
        // request holds or has held a permit; a request that waits for one
        // still counts its latency from its scheduled time.
        let permit = permits.clone().acquire_owned().await?;
        let (http, tally, pairs) = (http.clone(), tally.clone(), pairs.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let (a, b) = &pairs[pair];
            let (from, to) = if forward { (a, b) } else { (b, a) };
            let key = new_idempotency_key();
            let sent = http
                .send_transfer(&from.token, to.id, amount, "", PIN, &key)
                .await;
            let now = Instant::now();
            match sent {
                Ok(_) => {
                    lock(&tally.latency).record(now.duration_since(scheduled));
                    tally.ok.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => *lock(&tally.errors).entry(code_of(&e)).or_default() += 1,
            }
            let at = now.saturating_duration_since(start).as_micros() as u64;
            tally.last_us.fetch_max(at, Ordering::Relaxed);
            tally.answered.fetch_add(1, Ordering::Relaxed);
        });
    }
    // The last answers; a request still out after this counts as unanswered.
    let grace = Duration::from_secs(30);
    let _ = tokio::time::timeout(
        grace,
        permits.acquire_many(args.max_in_flight.max(1) as u32),
    )
    .await;
    let measured = start.elapsed().as_secs_f64();
    let cpu_after = cpu(args.server_pid)?;
    let busy = |i: usize| match (&cpu_before, &cpu_after) {
        (Some(before), Some(after)) => Some((after[i] - before[i]) / measured),
        _ => None,
    };
    let ok = tally.ok.load(Ordering::Relaxed);
    let until_last = tally.last_us.load(Ordering::Relaxed) as f64 / 1e6;
    let result = TransferRun {
        target_rate: rate,
        offered,
        ok,
        achieved_per_sec: ok as f64 / until_last.max(args.secs as f64),
        errors: lock(&tally.errors).clone(),
        unanswered: offered.saturating_sub(tally.answered.load(Ordering::Relaxed)),
        latency: lock(&tally.latency).summary(),
        server_cpu_cores: busy(0),
        load_cpu_cores: busy(1),
    };
    Ok(result)
}

/// CPU seconds so far of the server (when its pid is known) and of this
/// process.
fn cpu(server: Option<u32>) -> anyhow::Result<Option<[f64; 2]>> {
    match server {
        Some(pid) => Ok(Some([
            crate::procfs::cpu_secs(pid)?,
            crate::procfs::cpu_secs(std::process::id())?,
        ])),
        None => Ok(None),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// A grab run and what its exactness checks found.
#[derive(Debug, Serialize)]
struct GrabRun {
    packets: usize,
    shares_each: usize,
    /// Grab requests sent, duplicates included.
    requests: usize,
    /// Distinct successful grabs (a repeated key's answer is not another).
    grabs: u64,
    /// From the first request to the last answer.
    wall_ms: f64,
    grabs_per_sec: f64,
    /// Every request's time to its answer.
    latency: Summary,
    /// Answers other than a share, by code (the expected refusals of
    /// duplicates included).
    refusals: BTreeMap<String, u64>,
    /// Every check passed: each share taken once, each grabber once per
    /// packet, the grabs summing to each packet's amount.
    exact: bool,
    /// What failed, if anything (at most 20).
    problems: Vec<String>,
}

/// One grab request and its answer.
struct Attempt {
    member: usize,
    packet: u64,
    key: String,
    started: Instant,
    answered: Instant,
    answer: Result<PacketGrabbed, ClientError>,
}

async fn send_packet(
    http: &HttpClient,
    owner: &LoadUser,
    group_id: u64,
    count: usize,
) -> anyhow::Result<(u64, i64)> {
    let amount = FEN_PER_SHARE * count as i64;
    let packet = NewRedPacket {
        group_id: Some(group_id),
        to_user: None,
        amount_fen: amount,
        count: u32::try_from(count)?,
        mode: RedPacketMode::Lucky,
        exclusive_to: None,
        greeting: "wallet benchmark".into(),
        pin: PIN.into(),
    };
    let key = new_idempotency_key();
    let sent = retrying(|| http.send_red_packet(&owner.token, &packet, &key))
        .await
        .context("sending a red packet (is SUPERAPP_WALLET__PACKET_MAX_COUNT at least the group's members?)")?;
    Ok((sent.packet_id, amount))
}

/// Opens a keep-alive connection per member, as the clients of people
/// holding the app open have, so the grabs measure grabbing rather than TCP
/// handshakes.
async fn warm(http: &HttpClient, members: &[&LoadUser]) -> anyhow::Result<()> {
    let calls = members.iter().map(|m| {
        let (http, token) = (http.clone(), m.token.clone());
        tokio::spawn(async move { retrying(|| http.wallet(&token)).await })
    });
    let calls: Vec<_> = calls.collect();
    for call in calls {
        call.await??;
    }
    Ok(())
}

async fn hot_packet(
    http: &HttpClient,
    people: &People,
    duplicates: usize,
) -> anyhow::Result<GrabRun> {
    let members = &people.members;
    let (packet, amount) = send_packet(http, &members[0], people.group_id, members.len()).await?;
    warm(http, &members.iter().collect::<Vec<_>>()).await?;
    // Every member's grab, then the duplicates: the even ones with a new
    // key, the odd ones repeating their first key.
    let keys: Vec<String> = members.iter().map(|_| new_idempotency_key()).collect();
    let mut requests: Vec<(usize, String)> = keys.iter().cloned().enumerate().collect();
    for (member, first) in keys.iter().enumerate().take(duplicates) {
        let key = if member % 2 == 0 {
            new_idempotency_key()
        } else {
            first.clone()
        };
        requests.push((member, key));
    }
    let plans: Vec<Vec<(u64, String)>> = requests
        .iter()
        .map(|(_, key)| vec![(packet, key.clone())])
        .collect();
    let who: Vec<usize> = requests.iter().map(|(member, _)| *member).collect();
    let attempts = grab_all(http, members, &who, plans).await?;

    let mut check = Check::default();
    let expected: Vec<Vec<usize>> = vec![(0..members.len()).collect()];
    check
        .packets(
            http,
            &members[0],
            members,
            &[(packet, amount)],
            &expected,
            &attempts,
        )
        .await?;
    Ok(check.into_run(1, members.len(), &attempts))
}

async fn many_packets(
    http: &HttpClient,
    people: &People,
    packets: usize,
    shares: usize,
) -> anyhow::Result<GrabRun> {
    let members = &people.members;
    let owner = &members[0];
    let mut sent = Vec::with_capacity(packets);
    for _ in 0..packets {
        sent.push(send_packet(http, owner, people.group_id, shares).await?);
    }
    // Packet p goes to `shares` consecutive members, round the group, so
    // the grabs are spread over every member; each grabs its packets in
    // an order of its own.
    let mut expected: Vec<Vec<usize>> = Vec::with_capacity(packets);
    let mut plans: Vec<Vec<(u64, String)>> = vec![Vec::new(); members.len()];
    for (p, &(packet, _)) in sent.iter().enumerate() {
        let grabbers: Vec<usize> = (0..shares)
            .map(|i| (p * shares + i) % members.len())
            .collect();
        for &member in &grabbers {
            plans[member].push((packet, new_idempotency_key()));
        }
        expected.push(grabbers);
    }
    let mut rng = rand::rng();
    for plan in &mut plans {
        plan.shuffle(&mut rng);
    }
    let who: Vec<usize> = (0..members.len())
        .filter(|&member| !plans[member].is_empty())
        .collect();
    plans.retain(|plan| !plan.is_empty());
    let busy: Vec<&LoadUser> = who.iter().map(|&m| &members[m]).collect();
    warm(http, &busy).await?;
    let attempts = grab_all(http, members, &who, plans).await?;
    let mut check = Check::default();
    check
        .packets(http, owner, members, &sent, &expected, &attempts)
        .await?;
    Ok(check.into_run(packets, shares, &attempts))
}

/// Starts one task per `who[i]`, all released at once, each grabbing the
/// packets of `plans[i]` one after another.
async fn grab_all(
    http: &HttpClient,
    members: &[LoadUser],
    who: &[usize],
    plans: Vec<Vec<(u64, String)>>,
) -> anyhow::Result<Vec<Attempt>> {
    let (go, gate) = watch::channel(false);
    let mut tasks = Vec::with_capacity(who.len());
    for (&member, plan) in who.iter().zip(plans) {
        let (http, token, mut gate) = (http.clone(), members[member].token.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _ = gate.wait_for(|open| *open).await;
            let mut attempts = Vec::with_capacity(plan.len());
            for (packet, key) in plan {
                let started = Instant::now();
                let answer = http.grab_red_packet(&token, packet, &key).await;
                attempts.push(Attempt {
                    member,
                    packet,
                    key,
                    started,
                    answered: Instant::now(),
                    answer,
                });
            }
            attempts
        }));
    }
    go.send(true)?;
    let mut attempts = Vec::new();
    for task in tasks {
        attempts.extend(task.await?);
    }
    Ok(attempts)
}

#[derive(Default)]
struct Check {
    problems: Vec<String>,
    failed: usize,
}

impl Check {
    fn problem(&mut self, text: String) {
        self.failed += 1;
        if self.problems.len() < 20 {
            self.problems.push(text);
        }
    }

    /// Checks each packet against its expected grabbers (indices into
    /// `members`), the answers they were given, and the packet as the
    /// server holds it.
    async fn packets(
        &mut self,
        http: &HttpClient,
        owner: &LoadUser,
        members: &[LoadUser],
        packets: &[(u64, i64)],
        expected: &[Vec<usize>],
        attempts: &[Attempt],
    ) -> anyhow::Result<()> {
        // Per (packet, member): the distinct shares answered, the distinct
        // keys asked with, and the refusals as a grab already made. Of a
        // member's keys exactly one wins; each other key is refused, and a
        // repeated key is answered the winner's share again.
        let mut answered: HashMap<(u64, usize), Vec<&PacketGrabbed>> = HashMap::new();
        let mut keys: HashMap<(u64, usize), HashSet<&str>> = HashMap::new();
        let mut refused: HashMap<(u64, usize), usize> = HashMap::new();
        for attempt in attempts {
            let at = (attempt.packet, attempt.member);
            keys.entry(at).or_default().insert(&attempt.key);
            match &attempt.answer {
                Ok(grab) => {
                    let shares = answered.entry(at).or_default();
                    if !shares.iter().any(|s| s.grab == grab.grab) {
                        shares.push(grab);
                    }
                }
                Err(e) if e.code() == Some("already_grabbed") => {
                    *refused.entry(at).or_default() += 1;
                }
                Err(e) => self.problem(format!(
                    "member {} grabbing packet {}: {e}",
                    attempt.member, attempt.packet
                )),
            }
        }
        for (at, keys) in &keys {
            let refusals = refused.get(at).copied().unwrap_or(0);
            if refusals != keys.len() - 1 {
                self.problem(format!(
                    "packet {}: member {} asked with {} keys and was refused {refusals} times",
                    at.0,
                    at.1,
                    keys.len()
                ));
            }
        }
        for (&(packet, amount), grabbers) in packets.iter().zip(expected) {
            let details = retrying(|| http.red_packet(&owner.token, packet)).await?;
            let p = &details.packet;
            let claimed = u32::try_from(grabbers.len())?;
            if p.status != RedPacketStatus::Finished || p.claimed != claimed {
                self.problem(format!(
                    "packet {packet}: {:?} with {} of {claimed} shares taken",
                    p.status, p.claimed
                ));
            }
            let sum: i64 = details.grabs.iter().map(|g| g.amount_fen).sum();
            if sum != amount || p.claimed_fen != amount || p.amount_fen != amount {
                self.problem(format!(
                    "packet {packet} of {amount} fen: grabs sum to {sum}, {} claimed",
                    p.claimed_fen
                ));
            }
            let indices: HashSet<u32> = details.grabs.iter().map(|g| g.index).collect();
            if details.grabs.len() != grabbers.len() || indices.len() != grabbers.len() {
                self.problem(format!(
                    "packet {packet}: {} grabs over {} distinct shares, {} expected",
                    details.grabs.len(),
                    indices.len(),
                    grabbers.len()
                ));
            }
            let recorded: HashMap<u64, _> = details.grabs.iter().map(|g| (g.user_id, g)).collect();
            for &member in grabbers {
                let shares = answered.remove(&(packet, member)).unwrap_or_default();
                let [share] = shares[..] else {
                    self.problem(format!(
                        "packet {packet}: member {member} was answered {} shares",
                        shares.len()
                    ));
                    continue;
                };
                if recorded.get(&members[member].id) != Some(&&share.grab) {
                    self.problem(format!(
                        "packet {packet}: member {member}'s answered share is not the one recorded"
                    ));
                }
            }
        }
        for ((packet, member), _) in answered {
            self.problem(format!(
                "packet {packet}: member {member} got a share it was not to grab"
            ));
        }
        Ok(())
    }

    fn into_run(self, packets: usize, shares_each: usize, attempts: &[Attempt]) -> GrabRun {
        let mut latency = Latency::default();
        let mut refusals = BTreeMap::new();
        let mut grabs = HashSet::new();
        for a in attempts {
            latency.record(a.answered.duration_since(a.started));
            match &a.answer {
                Ok(grab) => {
                    grabs.insert((a.packet, grab.grab.user_id));
                }
                Err(e) => *refusals.entry(code_of(e)).or_insert(0) += 1,
            }
        }
        let first = attempts.iter().map(|a| a.started).min();
        let last = attempts.iter().map(|a| a.answered).max();
        let wall = match (first, last) {
            (Some(first), Some(last)) => last.duration_since(first),
            _ => Duration::ZERO,
        };
        let grabs = grabs.len() as u64;
        let mut problems = self.problems;
        if self.failed > problems.len() {
            problems.push(format!("and {} more", self.failed - problems.len()));
        }
        GrabRun {
            packets,
            shares_each,
            requests: attempts.len(),
            grabs,
            wall_ms: wall.as_secs_f64() * 1e3,
            grabs_per_sec: grabs as f64 / wall.as_secs_f64().max(1e-9),
            latency: latency.summary(),
            refusals,
            exact: self.failed == 0,
            problems,
        }
    }
}

fn print_tables(
    people: &People,
    args: &WalletArgs,
    ceiling: &[Ceiling],
    transfers: &[TransferRun],
    hot: &GrabRun,
    many: &GrabRun,
) {
    println!(
        "scenario wallet: {} users in {} pairs, a group of {}",
        people.pairs.len() * 2,
        people.pairs.len(),
        people.members.len()
    );
    println!("ceiling: the store alone, keyed transfers");
    println!(
        "{:>8} {:>8} {:>12} {:>14} {:>6}",
        "store", "tasks", "transfers", "transfers/s", "books"
    );
    for c in ceiling {
        println!(
            "{:>8} {:>8} {:>12} {:>14.0} {:>6}",
            c.store,
            c.clients,
            c.transfers,
            c.transfers_per_sec,
            if c.books_sound { "sound" } else { "WRONG" }
        );
    }
    let best = ceiling.first().map_or(0.0, |c| c.transfers_per_sec);
    println!("transfers over HTTP, {} s each, open loop", args.secs);
    println!(
        "{:>8} {:>11} {:>9} {:>10} {:>10} {:>10} {:>11} {:>6} {:>6}  errors",
        "rate/s", "achieved/s", "of ceil.", "p50", "p99", "p99.9", "unanswered", "server", "load"
    );
    for r in transfers {
        let errors: Vec<String> = r.errors.iter().map(|(c, n)| format!("{c} {n}")).collect();
        let cores = |c: Option<f64>| c.map(|c| format!("{:.0}%", c * 100.0)).unwrap_or_default();
        println!(
            "{:>8} {:>11.0} {:>8.0}% {:>10} {:>10} {:>10} {:>11} {:>6} {:>6}  {}",
            r.target_rate,
            r.achieved_per_sec,
            100.0 * r.achieved_per_sec / best.max(1.0),
            ms(r.latency.p50_us),
            ms(r.latency.p99_us),
            ms(r.latency.p999_us),
            r.unanswered,
            cores(r.server_cpu_cores),
            cores(r.load_cpu_cores),
            if errors.is_empty() {
                "none".into()
            } else {
                errors.join(", ")
            }
        );
    }
    println!("red-packet grabs");
    println!(
        "{:>16} {:>9} {:>7} {:>10} {:>9} {:>10} {:>10}  exact",
        "run", "requests", "grabs", "wall", "grabs/s", "p50", "p99"
    );
    for (name, g) in [
        ("one hot packet".to_string(), hot),
        (format!("{} x {}", many.packets, many.shares_each), many),
    ] {
        println!(
            "{:>16} {:>9} {:>7} {:>10} {:>9.0} {:>10} {:>10}  {}",
            name,
            g.requests,
            g.grabs,
            format!("{:.1} ms", g.wall_ms),
            g.grabs_per_sec,
            ms(g.latency.p50_us),
            ms(g.latency.p99_us),
            if g.exact {
                "yes".to_string()
            } else {
                format!("NO: {}", g.problems.join("; "))
            }
        );
    }
}
