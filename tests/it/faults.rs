//! The fault matrix: clients stream messages while Redis, a gateway or the
//! core fails, or the server is told to stop; afterwards every conversation is
//! read back through the API and the sends are counted: attempted,
//! acknowledged, lost (acknowledged but not stored at the acknowledged seq),
//! duplicated (one `client_msg_id` stored more than once), and stored without
//! an acknowledgement (allowed: the client gave up before the answer came).
//!
//! A client here is impatient: after an error it retries the same
//! `client_msg_id` every 100 ms, reconnecting (to the next gateway) when its
//! socket ended, but 3 s after its first attempt it gives up on that message
//! and goes on with the next. Every server is the `superapp` binary as a child
//! process; the medium tier meets in a real `redis-server`.
//!
//! Each scenario runs small in the suite and asserts nothing acknowledged is
//! lost and nothing is stored twice. `fault_matrix` runs them all larger, with
//! the operator's default lease and timeouts, and prints the table:
//! `cargo test -p superapp --test it fault_matrix -- --ignored --nocapture`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use superapp_client::{Connection, HttpClient};
use superapp_kit::testkit::RedisServer;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::helpers::{ServerProcess, User, every_gateway_subscribed, every_shard_leased, register};

/// How long a client retries one message before it gives up on it.
const GIVE_UP: Duration = Duration::from_secs(3);
/// The pause between two attempts at one message.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// The longest wait for a process to start, a standby to take over, the
/// senders to be acknowledged again, or a process to exit.
const PATIENCE: Duration = Duration::from_secs(60);
/// How long Redis stays down when it is restarted.
const REDIS_DOWN: Duration = Duration::from_millis(500);
/// The server's shutdown deadline: `server.shutdown_drain_ms` (500 ms by
/// default) for sessions to drain, plus the 3 s grace `Application::run`
/// gives HTTP requests and sessions' last frames (`SHUTDOWN_GRACE`).
const SHUTDOWN_DEADLINE: Duration = Duration::from_millis(500 + 3_000);

/// A core's shutdown deadline (docs/architecture.md §7): the server's, plus
/// the request server's last blocking pop (half a second) and the requests in
/// hand, for at most a third of the lease TTL.
fn core_shutdown_deadline(scale: Scale) -> Duration {
    let ttl = Duration::from_millis(scale.lease_ttl_ms.unwrap_or(10_000));
    SHUTDOWN_DEADLINE + Duration::from_millis(500) + ttl / 3
}

/// Every sender is one user on one address: the per-session and per-user
/// rate limits are raised so that they do not refuse the stream.
const LOAD_ENV: &[(&str, &str)] = &[
    ("SUPERAPP_GATEWAY__RATE_PER_SEC", "100000"),
    ("SUPERAPP_GATEWAY__RATE_BURST", "100000"),
    ("SUPERAPP_GATEWAY__USER_RATE_PER_SEC", "100000"),
];

#[derive(Clone, Copy)]
struct Scale {
    /// Pairs of senders: users 2k and 2k + 1 write to each other.
    pairs: usize,
    /// Messages acknowledged before the fault.
    before: u64,
    /// Messages acknowledged after every sender was acknowledged again.
    after: u64,
    /// The cores' `redis.lease_ttl_ms`; `None` keeps the default (10 s).
    lease_ttl_ms: Option<u64>,
    /// The gateways' `redis.request_timeout_ms`; `None` keeps the default (10 s).
    request_timeout_ms: Option<u64>,
}

/// A scenario in the test suite: a few seconds, with a short lease and
/// request timeout so that a crashed core's shards and the requests it took
/// down with it come back within about 2 s.
const SMALL: Scale = Scale {
    pairs: 3,
    before: 150,
    after: 150,
    lease_ttl_ms: Some(2_000),
    request_timeout_ms: Some(2_000),
};

/// A scenario of the matrix, with the operator's default lease and request
/// timeout (10 s each).
const LARGE: Scale = Scale {
    pairs: 10,
    before: 3_000,
    after: 3_000,
    lease_ttl_ms: None,
    request_timeout_ms: None,
};

#[derive(Debug, Default)]
struct Counts {
    /// Messages (distinct `client_msg_id`s) the clients tried to send.
    attempted: usize,
    acknowledged: usize,
    /// Acknowledged, but not stored at the acknowledged seq.
    lost: usize,
    /// `client_msg_id`s stored more than once.
    duplicated: usize,
    /// Stored, though the client gave up before an acknowledgement.
    unacknowledged_stored: usize,
}

#[derive(Debug)]
struct Row {
    scenario: &'static str,
    counts: Counts,
    /// The longest any sender went without an acknowledgement across the
    /// fault: from its last one before the outage to its first after.
    recovery: Duration,
    /// From SIGTERM until the process exited.
    shutdown: Option<Duration>,
}

impl Row {
    fn header() -> &'static str {
        "| scenario | attempted | acknowledged | lost | duplicated | stored, not acknowledged | recovery | shutdown |\n\
         |---|---|---|---|---|---|---|---|"
    }

    fn assert_nothing_lost_or_duplicated(&self) {
        let c = &self.counts;
        assert_eq!((c.lost, c.duplicated), (0, 0), "{self}");
    }
}

impl std::fmt::Display for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.counts;
        let shutdown = self
            .shutdown
            .map_or("-".to_string(), |d| format!("{:.2} s", d.as_secs_f64()));
        write!(
            f,
            "| {} | {} | {} | {} | {} | {} | {:.2} s | {} |",
            self.scenario,
            c.attempted,
            c.acknowledged,
            c.lost,
            c.duplicated,
            c.unacknowledged_stored,
            self.recovery.as_secs_f64(),
            shutdown
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_during_a_stream_of_sends_loses_and_duplicates_nothing() {
    if let Some(row) = redis_restarted(SMALL).await {
        println!("{row}");
        row.assert_nothing_lost_or_duplicated();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_during_a_stream_loses_and_duplicates_nothing() {
    if let Some(row) = gateway_killed(SMALL).await {
        println!("{row}");
        row.assert_nothing_lost_or_duplicated();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_killed_during_a_stream_hands_over_to_its_standby_losing_nothing() {
    if let Some(row) = core_killed(SMALL).await {
        println!("{row}");
        row.assert_nothing_lost_or_duplicated();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_burst_loses_no_acknowledged_message_and_exits_in_time() {
    let row = sigterm_during_a_burst(SMALL).await;
    println!("{row}");
    row.assert_nothing_lost_or_duplicated();
    let shutdown = row.shutdown.unwrap();
    assert!(
        shutdown < SHUTDOWN_DEADLINE,
        "the server took {shutdown:?} to exit after SIGTERM"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_the_core_during_a_burst_hands_over_to_its_standby_in_time() {
    if let Some(row) = core_terminated(SMALL).await {
        println!("{row}");
        row.assert_nothing_lost_or_duplicated();
        let shutdown = row.shutdown.unwrap();
        assert!(
            shutdown < core_shutdown_deadline(SMALL),
            "the core took {shutdown:?} to exit after SIGTERM"
        );
    }
}

/// Not a test of its own: every scenario at a larger scale, with the
/// operator's default lease and request timeout, printed as a table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the fault matrix; prints a table (about a minute)"]
async fn fault_matrix() {
    let rows = [
        redis_restarted(LARGE).await.expect("redis-server"),
        gateway_killed(LARGE).await.expect("redis-server"),
        core_killed(LARGE).await.expect("redis-server"),
        core_terminated(LARGE).await.expect("redis-server"),
        sigterm_during_a_burst(LARGE).await,
    ];
    println!(
        "\n{} pairs of senders; each gives up on a message 3 s after its first attempt\n",
        LARGE.pairs
    );
    println!("{}", Row::header());
    for row in &rows {
        println!("{row}");
    }
    println!();
}

async fn redis_restarted(scale: Scale) -> Option<Row> {
    let mut tier = Tier::start(scale, 2, false).await?;
    let users = tier.users(scale).await;
    let stream = Stream::start(tier.gateway_urls(), &users, "redis");
    stream.acknowledged_at_least(scale.before).await;
    stream.fault();
    tier.redis.kill();
    tokio::time::sleep(REDIS_DOWN).await;
    tokio::task::block_in_place(|| tier.redis.restart());
    stream.served_again().await;
    stream.more(scale.after).await;
    let (sent, recovery) = stream.finish().await;
    Some(Row {
        scenario: "Redis restarted (down 0.5 s), core and 2 gateways",
        counts: audit(&tier.core_url, &users, &sent).await,
        recovery,
        shutdown: None,
    })
}

async fn gateway_killed(scale: Scale) -> Option<Row> {
    let mut tier = Tier::start(scale, 2, false).await?;
    let users = tier.users(scale).await;
    // Half the senders start on each gateway; those of the first move over.
    let stream = Stream::start(tier.gateway_urls(), &users, "gateway");
    stream.acknowledged_at_least(scale.before).await;
    stream.fault();
    tier.gateways[0].0.kill(); // SIGKILL
    stream.served_again().await;
    stream.more(scale.after).await;
    let (sent, recovery) = stream.finish().await;
    Some(Row {
        scenario: "a gateway SIGKILLed, its clients move to the other",
        counts: audit(&tier.core_url, &users, &sent).await,
        recovery,
        shutdown: None,
    })
}

async fn core_killed(scale: Scale) -> Option<Row> {
    let mut tier = Tier::start(scale, 2, true).await?;
    let users = tier.users(scale).await;
    let stream = Stream::start(tier.gateway_urls(), &users, "core");
    stream.acknowledged_at_least(scale.before).await;
    stream.fault();
    tier.core.kill(); // SIGKILL: its leases are left to expire
    let standby = tier.standby.take().expect("a standby");
    let standby_url = standby.url(PATIENCE).await;
    stream.served_again().await;
    stream.more(scale.after).await;
    let (sent, recovery) = stream.finish().await;
    let counts = audit(&standby_url, &users, &sent).await;
    drop(standby);
    Some(Row {
        scenario: "the core SIGKILLed, a standby takes over",
        counts,
        recovery,
        shutdown: None,
    })
}

async fn core_terminated(scale: Scale) -> Option<Row> {
    let mut tier = Tier::start(scale, 2, true).await?;
    let users = tier.users(scale).await;
    let stream = Stream::start(tier.gateway_urls(), &users, "core-term");
    stream.acknowledged_at_least(scale.before).await;
    let fault = stream.fault();
    tier.core.terminate();
    let status = tier
        .core
        .exited(PATIENCE)
        .await
        .expect("the core exits after SIGTERM");
    let shutdown = fault.elapsed();
    assert!(status.success(), "exit after SIGTERM: {status}");
    let standby = tier.standby.take().expect("a standby");
    let standby_url = standby.url(PATIENCE).await;
    stream.served_again().await;
    stream.more(scale.after).await;
    let (sent, recovery) = stream.finish().await;
    let counts = audit(&standby_url, &users, &sent).await;
    drop(standby);
    Some(Row {
        scenario: "SIGTERM to the core during a burst, a standby takes over",
        counts,
        recovery,
        shutdown: Some(shutdown),
    })
}

/// The small tier: one process, told to stop during a burst, then started
/// again on the same data and port.
async fn sigterm_during_a_burst(scale: Scale) -> Row {
    let data = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::spawn(data.path(), "info", &[], LOAD_ENV);
    let url = server.url(PATIENCE).await;
    let users = users_at(&url, scale).await;
    let stream = Stream::start(vec![url.clone()], &users, "sigterm");
    stream.acknowledged_at_least(scale.before).await;
    let fault = stream.fault();
    server.terminate();
    let status = server
        .exited(PATIENCE)
        .await
        .expect("the server exits after SIGTERM");
    let shutdown = fault.elapsed();
    assert!(status.success(), "exit after SIGTERM: {status}");
    // The drain served some sends after the signal: the senders must now be
    // served by the new process.
    stream.serving_since(Instant::now());
    let listen = url.trim_start_matches("http://").to_string();
    let again = ServerProcess::spawn(data.path(), "info", &["--listen", &listen], LOAD_ENV);
    assert_eq!(again.url(PATIENCE).await, url);
    stream.served_again().await;
    stream.more(scale.after).await;
    let (sent, recovery) = stream.finish().await;
    Row {
        scenario: "SIGTERM to the server (one process) during a burst, restarted",
        counts: audit(&url, &users, &sent).await,
        recovery,
        shutdown: Some(shutdown),
    }
}

/// The medium tier as child processes: a core (and, if asked, a standby on
/// the same data dir, waiting for the core lease) and gateways, on a Redis of
/// their own.
struct Tier {
    redis: RedisServer,
    core: ServerProcess,
    core_url: String,
    standby: Option<ServerProcess>,
    gateways: Vec<(ServerProcess, String)>,
    _data: tempfile::TempDir,
}

impl Tier {
    async fn start(scale: Scale, gateways: usize, standby: bool) -> Option<Self> {
        let redis = RedisServer::start()?;
        let data = tempfile::tempdir().unwrap();
        let url = redis.url();
        let ttl = scale.lease_ttl_ms.map(|ttl| ttl.to_string());
        let timeout = scale.request_timeout_ms.map(|ms| ms.to_string());
        let mut env = LOAD_ENV.to_vec();
        if let Some(ttl) = &ttl {
            env.push(("SUPERAPP_REDIS__LEASE_TTL_MS", ttl));
        }
        if let Some(timeout) = &timeout {
            env.push(("SUPERAPP_REDIS__REQUEST_TIMEOUT_MS", timeout));
        }
        let core_args = ["--role", "core", "--redis", url.as_str()];
        let core = ServerProcess::spawn(data.path(), "info", &core_args, &env);
        let core_url = core.url(PATIENCE).await;
        let standby = if standby {
            let standby = ServerProcess::spawn(data.path(), "info", &core_args, &env);
            standby
                .logged("another core is active; standing by", PATIENCE)
                .await;
            Some(standby)
        } else {
            None
        };
        let mut list = Vec::new();
        for _ in 0..gateways {
            // A gateway keeps nothing on disk.
            let args = ["--role", "gateway", "--redis", url.as_str()];
            let gateway = ServerProcess::spawn(data.path(), "info", &args, &env);
            let gateway_url = gateway.url(PATIENCE).await;
            list.push((gateway, gateway_url));
        }
        every_shard_leased(&redis).await;
        every_gateway_subscribed(&redis, gateways).await;
        Some(Self {
            redis,
            core,
            core_url,
            standby,
            gateways: list,
            _data: data,
        })
    }

    fn gateway_urls(&self) -> Vec<String> {
        self.gateways.iter().map(|(_, url)| url.clone()).collect()
    }

    async fn users(&self, scale: Scale) -> Vec<User> {
        users_at(&self.core_url, scale).await
    }
}

/// Two users for each pair of senders, registered at `url`.
async fn users_at(url: &str, scale: Scale) -> Vec<User> {
    let http = HttpClient::new(url.to_string());
    let mut users = Vec::new();
    for i in 0..scale.pairs * 2 {
        users.push(register(&http, &format!("U{i}")).await);
    }
    users
}

/// The senders at work, and what the scenario watches of them.
struct Stream {
    stop: CancellationToken,
    progress: Arc<Progress>,
    senders: Vec<tokio::task::JoinHandle<Sent>>,
    fault: Mutex<Option<Instant>>,
}

#[derive(Default)]
struct Progress {
    acknowledged: AtomicU64,
    /// Attempts begun from this moment on count as served again.
    since: Mutex<Option<Instant>>,
    /// Per sender: when an attempt it began after `since` was first
    /// acknowledged.
    back: Mutex<Vec<Option<Instant>>>,
}

/// What one sender tried and what it was told.
#[derive(Default)]
struct Sent {
    attempted: Vec<String>,
    /// (conversation, seq, client_msg_id) of every acknowledgement.
    acknowledged: Vec<(String, u64, String)>,
    /// When each acknowledgement came, in order.
    acknowledged_at: Vec<Instant>,
}

impl Stream {
    /// User `i` sends to user `i ^ 1` through `urls[i % urls.len()]`, moving
    /// to the next URL when one refuses it, until the stream is finished.
    fn start(urls: Vec<String>, users: &[User], tag: &str) -> Self {
        let stop = CancellationToken::new();
        let progress = Arc::new(Progress {
            back: Mutex::new(vec![None; users.len()]),
            ..Progress::default()
        });
        let senders = users
            .iter()
            .enumerate()
            .map(|(i, user)| {
                let sender = Sender {
                    index: i,
                    which: i % urls.len(),
                    urls: urls.clone(),
                    token: user.tokens.access_token.clone(),
                    to: users[i ^ 1].id,
                    prefix: format!("{tag}-{}-c{i}", std::process::id()),
                    progress: progress.clone(),
                    stop: stop.clone(),
                };
                tokio::spawn(sender.run())
            })
            .collect();
        Self {
            stop,
            progress,
            senders,
            fault: Mutex::new(None),
        }
    }

    async fn acknowledged_at_least(&self, n: u64) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let acknowledged = self.progress.acknowledged.load(Ordering::Relaxed);
            if acknowledged >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{acknowledged} of {n} messages acknowledged"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for `n` more acknowledgements.
    async fn more(&self, n: u64) {
        let now = self.progress.acknowledged.load(Ordering::Relaxed);
        self.acknowledged_at_least(now + n).await;
    }

    /// Marks the moment of the fault, which the caller then causes.
    fn fault(&self) -> Instant {
        let now = Instant::now();
        *self.fault.lock().unwrap() = Some(now);
        self.serving_since(now);
        now
    }

    /// From `mark` on, [`served_again`](Self::served_again) counts only
    /// attempts begun after it.
    fn serving_since(&self, mark: Instant) {
        *self.progress.since.lock().unwrap() = Some(mark);
        self.progress.back.lock().unwrap().fill(None);
    }

    /// Waits until every sender had an attempt acknowledged that it began
    /// after the mark.
    async fn served_again(&self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            {
                let back = self.progress.back.lock().unwrap();
                if back.iter().all(Option::is_some) {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "senders not acknowledged again: {:?}",
                    back.iter()
                        .enumerate()
                        .filter(|(_, b)| b.is_none())
                        .map(|(i, _)| i)
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the senders after the message each has in hand; what they sent,
    /// and the longest any of them waited across the fault between two
    /// acknowledgements.
    async fn finish(self) -> (Vec<Sent>, Duration) {
        self.stop.cancel();
        let fault = self.fault.lock().unwrap().expect("a fault");
        let mut sent = Vec::new();
        let mut recovery = Duration::ZERO;
        for sender in self.senders {
            let one = sender.await.unwrap();
            for pair in one.acknowledged_at.windows(2) {
                if pair[1] > fault {
                    recovery = recovery.max(pair[1] - pair[0]);
                }
            }
            sent.push(one);
        }
        (sent, recovery)
    }
}

struct Sender {
    index: usize,
    urls: Vec<String>,
    /// The URL it uses now.
    which: usize,
    token: String,
    to: u64,
    /// Of its `client_msg_id`s, unique to the run.
    prefix: String,
    progress: Arc<Progress>,
    stop: CancellationToken,
}

impl Sender {
    async fn run(mut self) -> Sent {
        let mut sent = Sent::default();
        let mut conn: Option<Connection> = None;
        for n in 0.. {
            if self.stop.is_cancelled() {
                break;
            }
            let cmid = format!("{}-{n}", self.prefix);
            sent.attempted.push(cmid.clone());
            let give_up = Instant::now() + GIVE_UP;
            loop {
                let began = Instant::now();
                if conn.as_ref().is_none_or(Connection::is_closed) {
                    conn = self.connect(give_up).await;
                }
                let Some(open) = &conn else { break };
                match tokio::time::timeout_at(give_up, open.send_text(self.to, &cmid, &cmid)).await
                {
                    Ok(Ok(ack)) => {
                        self.acknowledged(began);
                        sent.acknowledged.push((ack.conversation_id, ack.seq, cmid));
                        sent.acknowledged_at.push(Instant::now());
                        break;
                    }
                    Ok(Err(_)) if Instant::now() + RETRY_PAUSE < give_up => {
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                    _ => break,
                }
            }
        }
        sent
    }

    /// Opens a session, moving to the next URL after each refusal, until
    /// `give_up`.
    async fn connect(&mut self, give_up: Instant) -> Option<Connection> {
        loop {
            let url = &self.urls[self.which];
            match tokio::time::timeout_at(give_up, Connection::connect(url, &self.token)).await {
                Ok(Ok(conn)) => return Some(conn),
                Ok(Err(_)) if Instant::now() + RETRY_PAUSE < give_up => {
                    self.which = (self.which + 1) % self.urls.len();
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                _ => return None,
            }
        }
    }

    fn acknowledged(&self, began: Instant) {
        self.progress.acknowledged.fetch_add(1, Ordering::Relaxed);
        let since = *self.progress.since.lock().unwrap();
        if since.is_some_and(|since| began >= since) {
            let mut back = self.progress.back.lock().unwrap();
            back[self.index].get_or_insert_with(Instant::now);
        }
    }
}

/// Reads every conversation back through the API at `url` and counts.
async fn audit(url: &str, users: &[User], sent: &[Sent]) -> Counts {
    // client_msg_id -> every (conversation, seq) it is stored at.
    let mut stored: HashMap<String, Vec<(String, u64)>> = HashMap::new();
    for pair in users.chunks(2) {
        let (a, b) = (pair[0].id, pair[1].id);
        let conversation = format!("d.{}.{}", a.min(b), a.max(b));
        for (seq, cmid) in pull_all(url, &pair[0], &conversation).await {
            stored
                .entry(cmid)
                .or_default()
                .push((conversation.clone(), seq));
        }
    }
    let acknowledged: Vec<_> = sent.iter().flat_map(|s| &s.acknowledged).collect();
    let acknowledged_ids: HashSet<&str> = acknowledged
        .iter()
        .map(|(_, _, cmid)| cmid.as_str())
        .collect();
    let attempted: Vec<&String> = sent.iter().flat_map(|s| &s.attempted).collect();
    Counts {
        attempted: attempted.len(),
        acknowledged: acknowledged.len(),
        lost: acknowledged
            .iter()
            .filter(|(conversation, seq, cmid)| {
                !stored
                    .get(cmid)
                    .is_some_and(|at| at.contains(&(conversation.clone(), *seq)))
            })
            .count(),
        duplicated: stored.values().filter(|at| at.len() > 1).count(),
        unacknowledged_stored: attempted
            .iter()
            .filter(|cmid| {
                !acknowledged_ids.contains(cmid.as_str()) && stored.contains_key(cmid.as_str())
            })
            .count(),
    }
}

/// Every (seq, client_msg_id) of a conversation, pulled page by page.
async fn pull_all(url: &str, member: &User, conversation: &str) -> Vec<(u64, String)> {
    let deadline = Instant::now() + PATIENCE;
    let conn = loop {
        match Connection::connect(url, &member.tokens.access_token).await {
            Ok(conn) => break conn,
            Err(e) => assert!(Instant::now() < deadline, "no session for the audit: {e}"),
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    };
    let (mut messages, mut after) = (Vec::new(), 0);
    loop {
        let page = match conn.pull(conversation, after, 500).await {
            Ok(page) => page,
            Err(e) => {
                assert!(Instant::now() < deadline, "pull {conversation}: {e}");
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        for m in &page.messages {
            after = after.max(m.seq);
            messages.push((m.seq, m.client_msg_id.clone()));
        }
        if !page.has_more {
            return messages;
        }
    }
}
