//! `spawn_app()` and `TestApp`, whose methods are the API.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prost::Message as _;
use superapp::Application;
use superapp::config::Config;
use superapp_client::proto::v1::{BusEnvelope, GroupEvent, Message, ReadReceipt, event};
use superapp_client::{Connection, HttpClient, Tokens};
use superapp_kit::bus::{Bus, BusMessage, InProcessBus, SharedBus, Subscriber};
use superapp_kit::metrics::Registry;
use superapp_kit::redis_bus::RedisBus;
use superapp_kit::secret::Secret;
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
    run(app, dir)
}

/// A server whose bus loses the first message `lose` picks on its way to
/// this process's subscribers (the hub, and on a gateway the replies'
/// subscriber): the bus its configuration names, wrapped.
pub async fn spawn_app_losing(
    adjust: impl FnOnce(&mut Config),
    lose: impl Fn(&str, &BusEnvelope) -> bool + Send + Sync + 'static,
) -> (TestApp, Arc<LosingBus>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().expect("addr");
    config.server.data_dir = dir.path().to_path_buf();
    config.server.shutdown_drain_ms = 100;
    config.redis.tier_key = Some(Secret::new(TIER_KEY.to_string()));
    config.auth.registrations_per_address = 1_000_000;
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

    pub async fn connect(&self, user: &User) -> Connection {
        Connection::connect(&self.base_url, &user.tokens.access_token)
            .await
            .expect("connect")
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

/// How long a test waits to be sure an event does not come.
const QUIET: Duration = Duration::from_millis(300);

/// The next message event within a few seconds, skipping other events.
pub async fn next_message(conn: &Connection) -> Message {
    next_picked(conn, Duration::from_secs(5), message)
        .await
        .expect("no message event arrived")
}

/// Asserts that no message event arrives for a while (other events are skipped).
pub async fn no_message(conn: &Connection) {
    if let Some(m) = next_picked(conn, QUIET, message).await {
        panic!("unexpected message {} #{}", m.conversation_id, m.seq);
    }
}

/// The next read receipt within a few seconds, skipping other events.
pub async fn next_receipt(conn: &Connection) -> ReadReceipt {
    next_picked(conn, Duration::from_secs(5), receipt)
        .await
        .expect("no read receipt arrived")
}

/// Asserts that no read receipt arrives for a while.
pub async fn no_receipt(conn: &Connection) {
    if let Some(r) = next_picked(conn, QUIET, receipt).await {
        panic!("unexpected receipt {r:?}");
    }
}

pub fn text_of(m: &Message) -> &str {
    use superapp_client::proto::v1::message_body::Content;
    match m.body.as_ref().and_then(|b| b.content.as_ref()) {
        Some(Content::Text(t)) => t,
        None => "",
    }
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
