//! The publish/subscribe seam. Every live delivery goes through a [`Bus`]; the
//! small tier uses [`InProcessBus`], the medium and large tiers a Redis one.
//!
//! Delivery is at most once, as with Redis pub/sub: a subscriber whose queue is
//! full loses the message and is told so by a [`BusMessage::Lagged`] marker, so it can
//! ask its sessions to resync. Recovery is always the client's pull by `seq`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use tokio::sync::mpsc;

#[derive(Debug, Clone)]
pub enum BusMessage {
    Message {
        topic: Arc<str>,
        payload: Bytes,
    },
    /// Messages were dropped for this subscriber; its state may be stale.
    Lagged,
}

/// A publish/subscribe transport. Publishing never waits for subscribers.
pub trait Bus: Send + Sync + 'static {
    fn publish(&self, topic: &str, payload: Bytes);
    /// Opens a subscriber whose messages arrive on the returned receiver, which
    /// holds at most `capacity` undelivered messages.
    fn subscriber(&self, capacity: usize) -> (Arc<dyn Subscriber>, mpsc::Receiver<BusMessage>);
}

/// The control half of a subscription: which topics it receives.
pub trait Subscriber: Send + Sync + 'static {
    fn subscribe(&self, topic: &str);
    fn unsubscribe(&self, topic: &str);
}

pub type SharedBus = Arc<dyn Bus>;

/// The bus of a single process: topics map to subscriber queues in memory.
#[derive(Default)]
pub struct InProcessBus {
    inner: Arc<Registry>,
}

#[derive(Default)]
struct Registry {
    next_id: AtomicU64,
    topics: RwLock<HashMap<Arc<str>, HashSet<u64>>>,
    queues: RwLock<HashMap<u64, Queue>>,
}

struct Queue {
    tx: mpsc::Sender<BusMessage>,
    /// Set when a message was dropped; cleared once the Lagged marker is queued.
    lagged: std::sync::atomic::AtomicBool,
}

/// The receiver of a subscriber queue is gone.
#[derive(Debug)]
pub(crate) struct Gone;

/// Queues without waiting, for every bus: a full queue drops the message and
/// marks the subscriber lagged, and the [`BusMessage::Lagged`] marker goes ahead
/// of the next message that fits. Offering the marker itself only marks.
pub(crate) fn offer(
    tx: &mpsc::Sender<BusMessage>,
    lagged: &std::sync::atomic::AtomicBool,
    message: BusMessage,
) -> Result<(), Gone> {
    use mpsc::error::TrySendError;
    if matches!(message, BusMessage::Lagged) {
        lagged.store(true, Ordering::Release);
    }
    if lagged.load(Ordering::Acquire) {
        match tx.try_send(BusMessage::Lagged) {
            Ok(()) => lagged.store(false, Ordering::Release),
            Err(TrySendError::Full(_)) => return Ok(()),
            Err(TrySendError::Closed(_)) => return Err(Gone),
        }
    }
    if matches!(message, BusMessage::Lagged) {
        return Ok(());
    }
    match tx.try_send(message) {
        Ok(()) => Ok(()),
        Err(TrySendError::Full(_)) => {
            lagged.store(true, Ordering::Release);
            Ok(())
        }
        Err(TrySendError::Closed(_)) => Err(Gone),
    }
}

impl InProcessBus {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Bus for InProcessBus {
    fn publish(&self, topic: &str, payload: Bytes) {
        let topics = self.inner.topics.read().unwrap_or_else(|p| p.into_inner());
        let Some((name, ids)) = topics.get_key_value(topic) else {
            return;
        };
        let queues = self.inner.queues.read().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            let Some(queue) = queues.get(id) else {
                continue;
            };
            let message = BusMessage::Message {
                topic: name.clone(),
                payload: payload.clone(),
            };
            // A gone receiver is removed when its subscriber handle drops.
            let _ = offer(&queue.tx, &queue.lagged, message);
        }
    }

    fn subscriber(&self, capacity: usize) -> (Arc<dyn Subscriber>, mpsc::Receiver<BusMessage>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.inner
            .queues
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                id,
                Queue {
                    tx,
                    lagged: Default::default(),
                },
            );
        let handle = InProcessSubscriber {
            id,
            registry: self.inner.clone(),
        };
        (Arc::new(handle), rx)
    }
}

struct InProcessSubscriber {
    id: u64,
    registry: Arc<Registry>,
}

impl Subscriber for InProcessSubscriber {
    fn subscribe(&self, topic: &str) {
        let mut topics = self
            .registry
            .topics
            .write()
            .unwrap_or_else(|p| p.into_inner());
        match topics.get_mut(topic) {
            Some(ids) => {
                ids.insert(self.id);
            }
            None => {
                topics.insert(Arc::from(topic), HashSet::from([self.id]));
            }
        }
    }

    fn unsubscribe(&self, topic: &str) {
        let mut topics = self
            .registry
            .topics
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(ids) = topics.get_mut(topic) {
            ids.remove(&self.id);
            if ids.is_empty() {
                topics.remove(topic);
            }
        }
    }
}

impl Drop for InProcessSubscriber {
    fn drop(&mut self) {
        let mut topics = self
            .registry
            .topics
            .write()
            .unwrap_or_else(|p| p.into_inner());
        topics.retain(|_, ids| {
            ids.remove(&self.id);
            !ids.is_empty()
        });
        drop(topics);
        self.registry
            .queues
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// The behaviour every [`Bus`] must show; run against each implementation.
#[cfg(test)]
pub(crate) mod contract {
    use std::time::Duration;

    use super::*;

    /// Subscriptions take effect asynchronously on a networked bus.
    pub async fn settle() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    pub async fn next(rx: &mut mpsc::Receiver<BusMessage>) -> (String, Bytes) {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(BusMessage::Message { topic, payload })) => (topic.to_string(), payload),
            other => panic!("expected a message, got {other:?}"),
        }
    }

    pub async fn run(bus: &dyn Bus) {
        let (a, mut a_rx) = bus.subscriber(256);
        let (b, mut b_rx) = bus.subscriber(256);
        a.subscribe("t.1");
        b.subscribe("t.1");
        b.subscribe("t.2");
        settle().await;
        bus.publish("t.1", Bytes::from_static(b"one"));
        bus.publish("t.2", Bytes::from_static(b"two"));
        bus.publish("t.3", Bytes::from_static(b"nobody"));
        assert_eq!(
            next(&mut a_rx).await,
            ("t.1".into(), Bytes::from_static(b"one"))
        );
        assert_eq!(
            next(&mut b_rx).await,
            ("t.1".into(), Bytes::from_static(b"one"))
        );
        assert_eq!(
            next(&mut b_rx).await,
            ("t.2".into(), Bytes::from_static(b"two"))
        );

        // Unsubscribing stops delivery to that subscriber only.
        a.unsubscribe("t.1");
        settle().await;
        bus.publish("t.1", Bytes::from_static(b"after"));
        assert_eq!(
            next(&mut b_rx).await,
            ("t.1".into(), Bytes::from_static(b"after"))
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(200), a_rx.recv())
                .await
                .is_err()
        );

        // One topic's messages arrive in the order they were published.
        for i in 0..100u32 {
            bus.publish("t.2", Bytes::from(i.to_string()));
        }
        for i in 0..100u32 {
            assert_eq!(next(&mut b_rx).await.1, Bytes::from(i.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_in_process_bus_meets_the_bus_contract() {
        contract::run(&InProcessBus::new()).await;
    }

    fn payload_of(m: BusMessage) -> Bytes {
        match m {
            BusMessage::Message { payload, .. } => payload,
            BusMessage::Lagged => panic!("unexpected lag"),
        }
    }

    #[tokio::test]
    async fn a_subscriber_receives_only_its_topics() {
        let bus = InProcessBus::new();
        let (sub, mut rx) = bus.subscriber(8);
        sub.subscribe("u.1");
        bus.publish("u.2", Bytes::from_static(b"no"));
        bus.publish("u.1", Bytes::from_static(b"yes"));
        assert_eq!(payload_of(rx.recv().await.unwrap()), "yes");
        sub.unsubscribe("u.1");
        bus.publish("u.1", Bytes::from_static(b"gone"));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_full_subscriber_is_told_it_lagged() {
        let bus = InProcessBus::new();
        let (sub, mut rx) = bus.subscriber(1);
        sub.subscribe("t");
        bus.publish("t", Bytes::from_static(b"1"));
        bus.publish("t", Bytes::from_static(b"2")); // dropped
        assert_eq!(payload_of(rx.recv().await.unwrap()), "1");
        bus.publish("t", Bytes::from_static(b"3"));
        assert!(matches!(rx.recv().await.unwrap(), BusMessage::Lagged));
    }
}
