//! `spawn_app()` and `TestApp`, whose methods are the API.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use superapp::Application;
use superapp::config::Config;
use superapp_client::proto::v1::{GroupEvent, Message, ReadReceipt, SendAck, event};
use superapp_client::{Connection, HttpClient, Tokens};
use superapp_kit::secret::Secret;
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
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().expect("addr");
    config.server.data_dir = dir.path().to_path_buf();
    config.server.shutdown_drain_ms = 100;
    config.redis.tier_key = Some(Secret::new(TIER_KEY.to_string()));
    // Every test user registers from 127.0.0.1; the throttle has tests of its own.
    config.auth.registrations_per_address = 1_000_000;
    adjust(&mut config);
    start(config, dir).await
}

pub async fn start(config: Config, dir: tempfile::TempDir) -> TestApp {
    let app = Application::build(config).await.expect("build");
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

impl TestApp {
    pub async fn user(&self, name: &str) -> User {
        let phone = fresh_phone();
        let account = self
            .http
            .register(&phone, PASSWORD, name)
            .await
            .expect("register");
        let tokens = self.http.login(&phone, PASSWORD).await.expect("login");
        assert_eq!(account.user_id, tokens.user_id);
        User {
            id: account.user_id,
            phone,
            tokens,
        }
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
        None => "",
    }
}

/// A client of the test's Redis, for asking it how things stand.
pub fn admin(redis: &superapp_kit::testkit::RedisServer) -> redis::Client {
    redis::Client::open(redis.url().as_str()).unwrap()
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
