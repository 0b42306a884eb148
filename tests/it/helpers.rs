//! `spawn_app()` and `TestApp`, whose methods are the API; the `superapp`
//! binary as a child process ([`ServerProcess`]); waiting for the medium
//! tier to be ready in Redis.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prost::Message as _;
use serde_json::Value;
use superapp::Application;
use superapp::config::Config;
use superapp_account::model::{WhoMayAddMe, WhoMayMessage};
use superapp_client::proto::v1::{
    BusEnvelope, ContactEvent, GroupEvent, GroupInvitation, Message, ReadReceipt, SendAck, event,
};
use superapp_client::{Connection, HttpClient, Tokens};
use superapp_kit::bus::{Bus, BusMessage, InProcessBus, SharedBus, Subscriber};
use superapp_kit::clock::{Clock as _, ManualClock, SystemClock};
use superapp_kit::metrics::Registry;
use superapp_kit::redis_bus::RedisBus;
use superapp_kit::secret::Secret;
use superapp_kit::testkit::RedisServer;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub const PASSWORD: &str = "a long and rare passphrase";

pub struct TestApp {
    pub base_url: String,
    pub http: HttpClient,
    pub dir: tempfile::TempDir,
    pub shutdown: CancellationToken,
    pub stopped: tokio::task::JoinHandle<()>,
}

/// A user with a live session.
pub struct User {
    pub id: u64,
    pub phone: String,
    pub tokens: Tokens,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The tier key of every test process that uses Redis (base64 of 32 bytes).
pub const TIER_KEY: &str = "dGhlIHRpZXIga2V5IG9mIHRoZSB0ZXN0IHByb2Nlc3M=";

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(&dir);
    adjust(&mut config);
    start(config, dir).await
}

/// The configuration of a test server with its data in `dir`.
fn test_config(dir: &tempfile::TempDir) -> Config {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().expect("addr");
    config.server.data_dir = dir.path().to_path_buf();
    config.server.shutdown_drain_ms = 100;
    config.redis.tier_key = Some(Secret::new(TIER_KEY.to_string()));
    // Every test user registers from 127.0.0.1; the throttle has tests of its own.
    config.auth.registrations_per_address = 1_000_000;
    // Strangers may message each other and add each other to groups unless
    // a test says otherwise: the social graph's tests (social.rs, cli.rs,
    // invites.rs) run with the shipped defaults, friends only; the rest test
    // other things between users who never met.
    config.social.who_may_message = WhoMayMessage::Anyone;
    config.social.who_may_add_me = WhoMayAddMe::Anyone;
    config
}

/// [`spawn_app_with`] with people nearby on `clock`, which the test moves.
pub async fn spawn_app_on_nearby_clock(
    adjust: impl FnOnce(&mut Config),
    clock: superapp_kit::clock::SharedClock,
) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(&dir);
    adjust(&mut config);
    let app = Application::build_with_nearby_clock(config, clock)
        .await
        .expect("build");
    run(app, dir)
}

/// [`spawn_app_with`] on the data of `dir`, which an earlier server (now
/// stopped) left there.
pub async fn spawn_app_in(dir: tempfile::TempDir, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config(&dir);
    adjust(&mut config);
    start(config, dir).await
}

pub async fn start(config: Config, dir: tempfile::TempDir) -> TestApp {
    let app = Application::build(config).await.expect("build");
    run(app, dir)
}

/// A server whose rooms read the time from `clock`, which the test moves.
pub async fn spawn_app_with_clock(
    adjust: impl FnOnce(&mut Config),
    clock: Arc<ManualClock>,
) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(&dir);
    adjust(&mut config);
    let app = Application::build_with_clock(config, clock)
        .await
        .expect("build");
    run(app, dir)
}

/// A clock that stands still at the system's time until told to move.
pub fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(SystemClock.now_ms()))
}

/// A server whose bus loses the first message `lose` picks on its way to
/// this process's subscribers (the hub, and on a gateway the replies'
/// subscriber): the bus its configuration names, wrapped.
pub async fn spawn_app_losing(
    adjust: impl FnOnce(&mut Config),
    lose: impl Fn(&str, &BusEnvelope) -> bool + Send + Sync + 'static,
) -> (TestApp, Arc<LosingBus>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(&dir);
    adjust(&mut config);
    let inner: SharedBus = match &config.redis.url {
        Some(url) => Arc::new(
            RedisBus::connect(
                url.expose(),
                config.redis.tier_key().expect("tier key"),
                &Registry::new(),
            )
            .await
            .expect("redis bus"),
        ),
        None => Arc::new(InProcessBus::new()),
    };
    let bus = Arc::new(LosingBus {
        inner,
        lose: Arc::new(lose),
        lost: Arc::new(AtomicU64::new(0)),
    });
    let app = Application::build_with_bus(config, bus.clone())
        .await
        .expect("build");
    (run(app, dir), bus)
}

fn run(app: Application, dir: tempfile::TempDir) -> TestApp {
    let base_url = format!("http://{}", app.addr());
    let shutdown = app.shutdown_token();
    let stopped = tokio::spawn(async move {
        app.run().await.expect("run");
    });
    TestApp {
        http: HttpClient::new(base_url.clone()),
        base_url,
        dir,
        shutdown,
        stopped,
    }
}

static PHONES: AtomicU64 = AtomicU64::new(0);

/// A phone number no other test uses.
pub fn fresh_phone() -> String {
    let n = PHONES.fetch_add(1, Ordering::Relaxed) + std::process::id() as u64 * 1000;
    format!("+86139{:08}", n % 100_000_000)
}

/// Registers a user on the server behind `http` and logs them in.
pub async fn register(http: &HttpClient, name: &str) -> User {
    let phone = fresh_phone();
    let account = http
        .register(&phone, PASSWORD, name)
        .await
        .expect("register");
    let tokens = http.login(&phone, PASSWORD).await.expect("login");
    assert_eq!(account.user_id, tokens.user_id);
    User {
        id: account.user_id,
        phone,
        tokens,
    }
}

impl TestApp {
    pub async fn user(&self, name: &str) -> User {
        register(&self.http, name).await
    }

    /// Makes `a` and `b` friends: `a` asks, `b` accepts.
    pub async fn befriend(&self, a: &User, b: &User) {
        let sent = self.http.friend_request(&a.tokens.access_token, b.id, "");
        assert_eq!(sent.await.expect("request").status, "requested");
        (self.http.accept_friend(&b.tokens.access_token, a.id).await).expect("accept");
    }

    /// A session of `user`, answered once it is registered with the user's
    /// groups: a session reads no request before then, so the answer to its
    /// first (a ping) is the signal that live delivery has started.
    pub async fn connect(&self, user: &User) -> Connection {
        let conn = Connection::connect(&self.base_url, &user.tokens.access_token)
            .await
            .expect("connect");
        conn.ping().await.expect("ping");
        conn
    }

    pub async fn metric(&self, name: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.base_url))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body");
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// The first event within `wait` that `pick` takes, skipping the others.
async fn next_picked<T>(
    conn: &Connection,
    wait: Duration,
    pick: impl Fn(event::Kind) -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if let Some(picked) = conn.next_event(left).await?.kind.and_then(&pick) {
            return Some(picked);
        }
    }
}

fn message(kind: event::Kind) -> Option<Message> {
    match kind {
        event::Kind::Message(m) => Some(m),
        _ => None,
    }
}

fn receipt(kind: event::Kind) -> Option<ReadReceipt> {
    match kind {
        event::Kind::ReadReceipt(r) => Some(r),
        _ => None,
    }
}

fn group_event(kind: event::Kind) -> Option<GroupEvent> {
    match kind {
        event::Kind::Group(g) => Some(g),
        _ => None,
    }
}

/// The next group event within a few seconds, skipping other events.
pub async fn next_group_event(conn: &Connection) -> GroupEvent {
    next_picked(conn, Duration::from_secs(5), group_event)
        .await
        .expect("no group event arrived")
}

fn contact_event(kind: event::Kind) -> Option<ContactEvent> {
    match kind {
        event::Kind::Contact(c) => Some(c),
        _ => None,
    }
}

/// The next contact event within a few seconds, skipping other events.
pub async fn next_contact_event(conn: &Connection) -> ContactEvent {
    next_picked(conn, Duration::from_secs(5), contact_event)
        .await
        .expect("no contact event arrived")
}

fn invitation(kind: event::Kind) -> Option<GroupInvitation> {
    match kind {
        event::Kind::GroupInvitation(i) => Some(i),
        _ => None,
    }
}

/// The next group invitation within a few seconds, skipping other events.
pub async fn next_invitation(conn: &Connection) -> GroupInvitation {
    next_picked(conn, Duration::from_secs(5), invitation)
        .await
        .expect("no group invitation arrived")
}

/// The next message event within a few seconds, skipping other events.
pub async fn next_message(conn: &Connection) -> Message {
    next_picked(conn, Duration::from_secs(5), message)
        .await
        .expect("no message event arrived")
}

/// Asserts that the next message `conn` hears is `barrier`'s: a message sent
/// after whatever must not reach `conn`, in a conversation that does. Live
/// delivery keeps the order of sends, so anything sent before the barrier
/// would have come first; no waiting for nothing.
pub async fn next_message_is(conn: &Connection, barrier: &SendAck) {
    let m = next_message(conn).await;
    assert_eq!(
        (m.conversation_id.as_str(), m.seq),
        (barrier.conversation_id.as_str(), barrier.seq),
        "a message arrived before the barrier"
    );
}

/// The next read receipt within a few seconds, skipping other events.
pub async fn next_receipt(conn: &Connection) -> ReadReceipt {
    next_picked(conn, Duration::from_secs(5), receipt)
        .await
        .expect("no read receipt arrived")
}

pub fn text_of(m: &Message) -> &str {
    use superapp_client::proto::v1::message_body::Content;
    match m.body.as_ref().and_then(|b| b.content.as_ref()) {
        Some(Content::Text(t)) => t,
        _ => "",
    }
}

/// The log lines of a child process, as they arrive.
pub type Logs = std::sync::Arc<std::sync::Mutex<String>>;

/// A `superapp serve` child process, its log lines collected. Dropping it
/// kills it, so a failing test leaves no server behind.
pub struct ServerProcess {
    child: Option<Child>,
    pub logs: Logs,
    /// The address from the `listening` log line, sent once.
    address: std::sync::mpsc::Receiver<String>,
}

impl ServerProcess {
    /// Starts the binary with `extra` arguments (a role, a Redis URL; a
    /// `--listen` of its own, else port 0) and `env`, with JSON logs at
    /// `filter`. It returns at once: a standby core logs its address only once
    /// it is the core.
    pub fn spawn(data: &Path, filter: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_superapp"));
        command.arg("serve");
        if !extra.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        let mut child = command
            .arg("--data")
            .arg(data)
            .args(extra)
            .env("SUPERAPP_LOG__FORMAT", "json")
            // Every test user registers from 127.0.0.1.
            .env("SUPERAPP_AUTH__REGISTRATIONS_PER_ADDRESS", "1000000")
            .env("SUPERAPP_REDIS__TIER_KEY", TIER_KEY)
            // As in spawn_app_with: strangers may message each other and
            // add each other to groups.
            .env("SUPERAPP_SOCIAL__WHO_MAY_MESSAGE", "anyone")
            .env("SUPERAPP_SOCIAL__WHO_MAY_ADD_ME", "anyone")
            .env("RUST_LOG", filter)
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn superapp");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, address) = std::sync::mpsc::channel();
        let logs = Logs::default();
        let collected = logs.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                {
                    let mut logs = collected.lock().unwrap();
                    logs.push_str(&line);
                    logs.push('\n');
                }
                if !sent
                    && let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && let Some(addr) = v["fields"]["addr"].as_str()
                {
                    let _ = tx.send(addr.to_string());
                    sent = true;
                }
            }
        });
        Self {
            child: Some(child),
            logs,
            address,
        }
    }

    /// Blocks until the process logs the address it listens on; its base URL.
    pub fn url_blocking(&self, within: Duration) -> String {
        let addr = self
            .address
            .recv_timeout(within)
            .expect("the server logs its address");
        format!("http://{addr}")
    }

    /// Waits until the process logs the address it listens on; its base URL.
    pub async fn url(&self, within: Duration) -> String {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match self.address.try_recv() {
                Ok(addr) => return format!("http://{addr}"),
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
                Err(e) => panic!("the server ended before it listened: {e}"),
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the server did not listen within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until a log line contains `text`.
    pub async fn logged(&self, text: &str, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while !self.logs.lock().unwrap().contains(text) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the server did not log {text:?} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGKILL, and waits for the process to end.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM: the process starts its shutdown.
    pub fn terminate(&self) {
        let pid = self.child.as_ref().expect("running").id();
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill -TERM");
        assert!(sent.success(), "kill -TERM {pid}: {sent}");
    }

    /// Waits at most `within` for the process to end; its exit status.
    pub async fn exited(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + within;
        let child = self.child.as_mut()?;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The process, no longer killed on drop.
    pub fn into_child(mut self) -> Child {
        self.child.take().expect("running")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts the server binary with `extra` arguments (a role, a Redis URL) and
/// waits for its address; its log lines collect in the returned buffer.
pub fn start_server_logging(data: &Path, filter: &str, extra: &[&str]) -> (Child, String, Logs) {
    let server = ServerProcess::spawn(data, filter, extra, &[]);
    let url = server.url_blocking(Duration::from_secs(30));
    let logs = server.logs.clone();
    (server.into_child(), url, logs)
}

/// A client of the test's Redis, for asking it how things stand.
pub fn admin(redis: &RedisServer) -> redis::Client {
    redis::Client::open(redis.url().as_str()).unwrap()
}

/// An admin connection to the tier's Redis.
async fn redis_admin(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    admin(redis)
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Waits until a core holds the lease of every shard, as Redis says.
pub async fn every_shard_leased(redis: &RedisServer) {
    every_shard_leased_in(&admin(redis)).await;
}

/// [`every_shard_leased`], asking through `redis` (a TLS client, say).
pub async fn every_shard_leased_in(redis: &redis::Client) {
    let mut admin = redis.get_multiplexed_async_connection().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let leased: Vec<String> = redis::cmd("KEYS")
            .arg("sa:lease:*")
            .query_async(&mut admin)
            .await
            .unwrap();
        if leased.len() == superapp_kit::rpc::SHARDS as usize {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the core took {} of the shard leases",
            leased.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `gateways` gateways have their reply channels subscribed in
/// Redis, so that the core's first answers reach them.
pub async fn every_gateway_subscribed(redis: &RedisServer, gateways: usize) {
    let mut admin = redis_admin(redis).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let channels: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .arg("sa:rpc-reply.*")
            .query_async(&mut admin)
            .await
            .unwrap();
        if channels.len() >= gateways {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {gateways} gateways subscribed to their replies",
            channels.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `subscribers` processes listen on the bus topic `topic` in
/// Redis (`PUBSUB NUMSUB`): the signal that live delivery through Redis has
/// started for a session or a group.
pub async fn subscribed(redis: &redis::Client, topic: &str, subscribers: usize) {
    let mut admin = redis.get_multiplexed_async_connection().await.unwrap();
    let channel = format!("sa:{topic}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, listening): (String, usize) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query_async(&mut admin)
            .await
            .unwrap();
        if listening >= subscribers {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{listening} of {subscribers} subscribers on {channel}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Any request as `who`, answered with its status and body whatever they are.
pub async fn api(app: &TestApp, who: &User, method: &str, path: &str, body: Value) -> (u16, Value) {
    let body = (!body.is_null()).then_some(&body);
    app.http
        .request_json(method, path, Some(&who.tokens.access_token), body)
        .await
        .unwrap()
}

/// Asserts that a request is refused; answers its code.
pub async fn refused(app: &TestApp, who: &User, method: &str, path: &str, body: Value) -> String {
    let (status, body) = api(app, who, method, path, body).await;
    assert!(status >= 400, "{method} {path} was allowed: {body}");
    body["code"].as_str().unwrap_or_default().to_string()
}

/// The code of a refusal.
pub fn code<T: std::fmt::Debug>(r: Result<T, superapp_client::ClientError>) -> String {
    r.unwrap_err().code().unwrap().to_string()
}

/// Picks, by topic and content, the message a [`LosingBus`] loses.
type Pick = Arc<dyn Fn(&str, &BusEnvelope) -> bool + Send + Sync>;

/// A bus that loses, on its way to the process's subscribers, the first
/// message its `lose` picks: as Redis pub/sub may lose one, with no lag marker.
pub struct LosingBus {
    inner: SharedBus,
    lose: Pick,
    lost: Arc<AtomicU64>,
}

impl LosingBus {
    /// How many messages it lost: 0 or 1.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::SeqCst)
    }
}

impl Bus for LosingBus {
    fn publish(&self, topic: &str, payload: prost::bytes::Bytes) {
        self.inner.publish(topic, payload);
    }

    fn subscriber(&self, capacity: usize) -> (Arc<dyn Subscriber>, mpsc::Receiver<BusMessage>) {
        let (subscriber, mut from_inner) = self.inner.subscriber(capacity);
        let (to_owner, messages) = mpsc::channel(capacity);
        let (lose, lost) = (self.lose.clone(), self.lost.clone());
        tokio::spawn(async move {
            while let Some(message) = from_inner.recv().await {
                if let BusMessage::Message { topic, payload } = &message
                    && let Ok(envelope) = BusEnvelope::decode(payload.clone())
                    && lost.load(Ordering::SeqCst) == 0
                    && lose(topic, &envelope)
                {
                    lost.store(1, Ordering::SeqCst);
                    continue;
                }
                if to_owner.send(message).await.is_err() {
                    return;
                }
            }
        });
        (subscriber, messages)
    }
}
