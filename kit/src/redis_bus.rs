//! The bus of the medium and large tiers: Redis pub/sub, one channel per topic
//! (`sa:<topic>`).
//!
//! Publishing never waits: messages go to a publisher task that pipelines them
//! over one auto-reconnecting connection (a batch that meets a stale connection
//! is sent once more on the fresh one), and a full queue or an unreachable
//! Redis drops them (at most once, as Redis pub/sub itself). Each subscriber owns one
//! pub/sub connection; when it is lost the subscriber reconnects with backoff,
//! subscribes again to every topic it holds, and queues a
//! [`BusMessage::Lagged`] so its owner tells its sessions to resync.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::mpsc;

use crate::bus::{Bus, BusMessage, Gone, Subscriber, offer};
use crate::metrics::{Counter, Registry};
use crate::redis_conn::retry_if_stale;
use crate::tier_key::{Domain, TierKey};

const CHANNEL_PREFIX: &str = "sa:";
/// Messages waiting for the publisher task; beyond this they are dropped.
const PUBLISH_QUEUE: usize = 65_536;
/// Most PUBLISH commands sent in one pipeline.
const PUBLISH_BATCH: usize = 256;
/// A lost subscriber connection is tried again at most this far apart, so
/// a restarted Redis has every subscription back within about half a second.
const MAX_BACKOFF: Duration = Duration::from_millis(500);

pub struct RedisBus {
    client: redis::Client,
    publish: mpsc::Sender<(String, Bytes)>,
    key: TierKey,
    unauthenticated: Arc<Counter>,
    /// Messages dropped before Redis had them; their subscribers are not
    /// told (no lag marker), so this count is the only trace.
    dropped: Arc<Counter>,
}

impl RedisBus {
    /// Connects the publisher; fails if Redis cannot be reached now. Every
    /// message is sealed with `key` and opened with it by subscribers; one
    /// that does not open is dropped and counted.
    pub async fn connect(url: &str, key: TierKey, metrics: &Registry) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let connection = crate::redis_conn::manager(&client).await?;
        let (publish, queue) = mpsc::channel(PUBLISH_QUEUE);
        let dropped = metrics.counter(
            "bus_publish_dropped_total",
            "Bus messages dropped before Redis had them: the publish queue was full, or Redis did not take the batch.",
        );
        tokio::spawn(publisher(connection, queue, dropped.clone()));
        let unauthenticated = metrics.counter(
            "bus_unauthenticated_total",
            "Bus messages dropped because their tag did not check under the tier key.",
        );
        Ok(Self {
            client,
            publish,
            key,
            unauthenticated,
            dropped,
        })
    }
}

impl Bus for RedisBus {
    fn publish(&self, topic: &str, payload: Bytes) {
        let channel = format!("{CHANNEL_PREFIX}{topic}");
        let sealed = self.key.seal(Domain::Bus, &channel, &payload);
        if self.publish.try_send((channel, sealed)).is_err() {
            self.dropped.inc();
            tracing::warn!("bus publish queue full; message dropped");
        }
    }

    fn subscriber(&self, capacity: usize) -> (Arc<dyn Subscriber>, mpsc::Receiver<BusMessage>) {
        let (control, commands) = mpsc::unbounded_channel();
        let (out, messages) = mpsc::channel(capacity.max(1));
        let opener = Opener {
            key: self.key.clone(),
            unauthenticated: self.unauthenticated.clone(),
        };
        tokio::spawn(SubscriberTask::new(self.client.clone(), commands, out, opener).run());
        (Arc::new(RedisSubscriber { control }), messages)
    }
}

enum Control {
    Subscribe(String),
    Unsubscribe(String),
}

struct RedisSubscriber {
    control: mpsc::UnboundedSender<Control>,
}

impl Subscriber for RedisSubscriber {
    fn subscribe(&self, topic: &str) {
        let _ = self.control.send(Control::Subscribe(topic.to_string()));
    }

    fn unsubscribe(&self, topic: &str) {
        let _ = self.control.send(Control::Unsubscribe(topic.to_string()));
    }
}

async fn publisher(
    connection: redis::aio::ConnectionManager,
    mut queue: mpsc::Receiver<(String, Bytes)>,
    dropped: Arc<Counter>,
) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while queue.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let messages = batch.len() as u64;
        let mut pipe = redis::pipe();
        for (channel, payload) in batch.drain(..) {
            pipe.cmd("PUBLISH")
                .arg(channel)
                .arg(payload.as_ref())
                .ignore();
        }
        // Sent once more if the connection turned out stale (Redis
        // restarted): a batch cut off in flight may then arrive twice, and
        // every receiver drops what it already holds.
        let pipe = &pipe;
        let sent = retry_if_stale(&connection, |mut c| async move {
            pipe.query_async::<()>(&mut c).await
        })
        .await;
        if let Err(e) = sent {
            // Redis is down; the connection manager keeps reconnecting.
            dropped.add(messages);
            tracing::warn!(error = %e, messages, "bus publish failed; messages dropped");
        }
    }
}

/// Opens what arrives: a message whose tag does not check under the tier's
/// key was not written by a process of the tier, and is dropped.
struct Opener {
    key: TierKey,
    unauthenticated: Arc<Counter>,
}

/// Keeps one pub/sub connection subscribed to `topics` until the subscriber
/// handle is dropped.
struct SubscriberTask {
    client: redis::Client,
    commands: mpsc::UnboundedReceiver<Control>,
    out: mpsc::Sender<BusMessage>,
    topics: HashSet<String>,
    lagged: AtomicBool,
    opener: Opener,
}

impl SubscriberTask {
    fn new(
        client: redis::Client,
        commands: mpsc::UnboundedReceiver<Control>,
        out: mpsc::Sender<BusMessage>,
        opener: Opener,
    ) -> Self {
        Self {
            client,
            commands,
            out,
            topics: HashSet::new(),
            lagged: AtomicBool::new(false),
            opener,
        }
    }

    async fn run(mut self) {
        let mut connected_before = false;
        let mut backoff = Duration::from_millis(50);
        loop {
            // Commands that arrived while disconnected only change the set.
            while let Ok(command) = self.commands.try_recv() {
                apply(&mut self.topics, command);
            }
            if self.commands.is_closed() {
                return;
            }
            let (mut sink, stream) = match self.client.get_async_pubsub().await {
                Ok(pubsub) => pubsub.split(),
                Err(e) => {
                    tracing::warn!(error = %e, ?backoff, "bus subscriber cannot reach redis; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            let healthy = self.resubscribe(&mut sink).await;
            if healthy && connected_before {
                tracing::info!(
                    topics = self.topics.len(),
                    "bus subscriber reconnected and resubscribed"
                );
                // Whatever was published while we were away is lost to us.
                if offer(&self.out, &self.lagged, BusMessage::Lagged).is_err() {
                    return;
                }
            }
            connected_before = true;
            backoff = Duration::from_millis(50);
            if healthy && self.serve(sink, stream).await.is_err() {
                return;
            }
            tracing::warn!("bus subscriber lost redis; reconnecting");
            tokio::time::sleep(backoff).await;
        }
    }

    /// Subscribes a new connection to every topic held; `false` if it failed.
    async fn resubscribe(&self, sink: &mut PubSubSink) -> bool {
        for topic in &self.topics {
            if sink
                .subscribe(format!("{CHANNEL_PREFIX}{topic}"))
                .await
                .is_err()
            {
                return false;
            }
        }
        true
    }

    /// Follows commands and forwards messages until the connection is lost
    /// (`Ok`) or the owner is gone.
    async fn serve(&mut self, mut sink: PubSubSink, mut stream: PubSubStream) -> Result<(), Gone> {
        loop {
            tokio::select! {
                command = self.commands.recv() => {
                    let Some(command) = command else { return Err(Gone) };
                    if self.follow(&mut sink, command).await.is_err() {
                        return Ok(());
                    }
                }
                message = stream.next() => {
                    let Some(message) = message else { return Ok(()) };
                    self.forward(&message)?;
                }
            }
        }
    }

    /// Applies one command to the set of topics and to the connection.
    async fn follow(&mut self, sink: &mut PubSubSink, command: Control) -> redis::RedisResult<()> {
        let (channel, subscribe) = match &command {
            Control::Subscribe(t) => (format!("{CHANNEL_PREFIX}{t}"), !self.topics.contains(t)),
            Control::Unsubscribe(t) => (format!("{CHANNEL_PREFIX}{t}"), false),
        };
        let was_member = matches!(&command, Control::Unsubscribe(t) if self.topics.contains(t));
        apply(&mut self.topics, command);
        if subscribe {
            sink.subscribe(channel).await
        } else if was_member {
            sink.unsubscribe(channel).await
        } else {
            Ok(())
        }
    }

    fn forward(&self, message: &redis::Msg) -> Result<(), Gone> {
        let channel = message.get_channel_name();
        let Some(topic) = channel.strip_prefix(CHANNEL_PREFIX) else {
            return Ok(());
        };
        let sealed = Bytes::copy_from_slice(message.get_payload_bytes());
        let Some(payload) = self.opener.key.open(Domain::Bus, channel, sealed) else {
            self.opener.unauthenticated.inc();
            tracing::warn!(topic, "bus message with a bad tag dropped");
            return Ok(());
        };
        let message = BusMessage::Message {
            topic: Arc::from(topic),
            payload,
        };
        offer(&self.out, &self.lagged, message)
    }
}

fn apply(topics: &mut HashSet<String>, command: Control) {
    match command {
        Control::Subscribe(t) => {
            topics.insert(t);
        }
        Control::Unsubscribe(t) => {
            topics.remove(&t);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::bus::contract;
    use crate::testkit::RedisServer;

    fn test_key() -> TierKey {
        TierKey::new(&[7; 32]).unwrap()
    }

    #[tokio::test]
    async fn the_redis_bus_meets_the_bus_contract() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let bus = RedisBus::connect(&redis.url(), test_key(), &Registry::new())
            .await
            .unwrap();
        contract::run(&bus).await;
    }

    #[tokio::test]
    async fn a_subscriber_survives_a_redis_restart_and_is_told_it_lagged() {
        let Some(mut redis) = RedisServer::start() else {
            return;
        };
        let bus = RedisBus::connect(&redis.url(), test_key(), &Registry::new())
            .await
            .unwrap();
        let (sub, mut rx) = bus.subscriber(64);
        sub.subscribe("u.1");
        contract::settle().await;
        bus.publish("u.1", Bytes::from_static(b"before"));
        assert_eq!(
            contract::next(&mut rx).await.1,
            Bytes::from_static(b"before")
        );

        for _ in 0..3 {
            redis.kill();
            tokio::time::sleep(Duration::from_millis(300)).await;
            redis.restart();
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                Ok(Some(BusMessage::Lagged)) => {}
                other => panic!("expected the lag marker after a reconnect, got {other:?}"),
            }
            // Subscribed again: a message published now arrives. The publisher's
            // own connection may need a moment to come back, so keep trying.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                bus.publish("u.1", Bytes::from_static(b"after"));
                match tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
                    Ok(Some(BusMessage::Message { payload, .. })) => {
                        assert_eq!(payload, Bytes::from_static(b"after"));
                        break;
                    }
                    _ => assert!(
                        tokio::time::Instant::now() < deadline,
                        "no delivery after restart"
                    ),
                }
            }
            // Drain duplicates of the probe.
            while let Ok(Some(_)) =
                tokio::time::timeout(Duration::from_millis(300), rx.recv()).await
            {}
        }
    }

    #[tokio::test]
    async fn a_message_published_while_redis_is_down_is_counted_as_dropped() {
        let Some(mut redis) = RedisServer::start() else {
            return;
        };
        let metrics = Registry::new();
        let bus = RedisBus::connect(&redis.url(), test_key(), &metrics)
            .await
            .unwrap();
        redis.kill();
        bus.publish("u.1", Bytes::from_static(b"lost"));
        let dropped = metrics.counter("bus_publish_dropped_total", "");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while dropped.get() == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the lost message was not counted"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(dropped.get(), 1);
    }

    #[tokio::test]
    async fn messages_without_the_tier_key_are_dropped_and_counted() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let metrics = Registry::new();
        let bus = RedisBus::connect(&redis.url(), test_key(), &metrics)
            .await
            .unwrap();
        let (sub, mut rx) = bus.subscriber(64);
        sub.subscribe("u.1");
        contract::settle().await;
        let client = redis::Client::open(redis.url()).unwrap();
        let mut admin = client.get_multiplexed_async_connection().await.unwrap();
        // A forged revocation, untagged, then one sealed with another key or
        // for another channel.
        let other = TierKey::new(&[8; 32]).unwrap();
        for forged in [
            Bytes::from_static(b"revoke"),
            other.seal(Domain::Bus, "sa:u.1", b"revoke"),
            test_key().seal(Domain::Bus, "sa:u.2", b"revoke"),
        ] {
            let _: () = redis::cmd("PUBLISH")
                .arg("sa:u.1")
                .arg(forged.as_ref())
                .query_async(&mut admin)
                .await
                .unwrap();
        }
        // The genuine message, published after them, is the first to arrive.
        bus.publish("u.1", Bytes::from_static(b"genuine"));
        assert_eq!(
            contract::next(&mut rx).await.1,
            Bytes::from_static(b"genuine")
        );
        assert!(
            metrics.render().contains("bus_unauthenticated_total 3"),
            "{}",
            metrics.render()
        );
    }
}
