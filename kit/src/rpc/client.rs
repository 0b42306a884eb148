//! The gateway's side: requests pushed to the core's lists, answers matched
//! by id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};

use super::envelope::{Envelope, decode_answer, now_ms};
use super::{ANY_QUEUE, REQUESTS, Route, RpcError, shard_queue};
use crate::bus::{Bus, BusMessage, Subscriber};
use crate::metrics::{Counter, Registry};
use crate::redis_conn::{manager, retry_if_stale};
use crate::tier_key::{Domain, TierKey};

/// Requests one list holds by default (`redis.max_waiting_requests`).
pub const DEFAULT_MAX_WAITING: usize = 100_000;

/// The gateway's side: sends requests and matches answers by id.
pub struct RpcClient {
    connection: ConnectionManager,
    reply_topic: String,
    key: TierKey,
    max_waiting: usize,
    waiters: Arc<Waiters>,
    _replies: Arc<dyn Subscriber>,
    sent: Arc<Counter>,
    unanswered: Arc<Counter>,
}

impl RpcClient {
    pub async fn connect(
        url: &str,
        bus: &dyn Bus,
        node: &str,
        key: TierKey,
        metrics: &Registry,
    ) -> Result<Self, RpcError> {
        let client = redis::Client::open(url)?;
        let connection = manager(&client).await?;
        let reply_topic = format!("rpc-reply.{node}");
        let (replies, answers) = bus.subscriber(65_536);
        replies.subscribe(&reply_topic);
        let waiters: Arc<Waiters> = Arc::default();
        tokio::spawn(route_answers(answers, waiters.clone()));
        Ok(Self {
            connection,
            reply_topic,
            key,
            max_waiting: DEFAULT_MAX_WAITING,
            waiters,
            _replies: replies,
            sent: metrics.counter("rpc_requests_sent_total", "Requests sent to the core."),
            unanswered: metrics.counter(
                "rpc_requests_unanswered_total",
                "Requests to the core that timed out or could not be queued.",
            ),
        })
    }

    /// Keeps at most `max_waiting` requests in a list (at least one);
    /// beyond, the oldest are dropped. [`DEFAULT_MAX_WAITING`] otherwise.
    pub fn with_max_waiting(mut self, max_waiting: usize) -> Self {
        self.max_waiting = max_waiting.max(1);
        self
    }

    /// Sends one request and waits for its answer. A request that times out may
    /// still be applied later; callers retry with the same idempotency key.
    pub async fn call(
        &self,
        route: Route,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, RpcError> {
        // Random, so nobody on the bus can guess the id of a request in
        // flight, and ids stay distinct across restarts of this process.
        let id = rand::random::<u64>();
        let rx = self.waiters.wait(id);
        let envelope = Envelope {
            id,
            reply_to: self.reply_topic.clone(),
            deadline_ms: now_ms() + timeout.as_millis() as i64,
            shard: match route {
                Route::Shard(s) => Some(s),
                Route::Any => None,
            },
            payload,
        };
        let queue = match route {
            Route::Shard(s) => shard_queue(s),
            Route::Any => ANY_QUEUE.to_string(),
        };
        let sealed = self.key.seal(Domain::Request, REQUESTS, &envelope.encode());
        let (queue, encoded) = (&queue, &sealed);
        self.sent.inc();
        // Pushed again if the first push met a dropped connection; the core
        // applies a request id once, so a push that did arrive is not
        // applied twice.
        // The list keeps its newest `max_waiting`: while no core serves a
        // shard, its list would otherwise grow without bound. The oldest,
        // dropped, were past their callers' patience anyway.
        let keep = self.max_waiting.saturating_sub(1) as isize;
        let pushed: Result<(), _> = retry_if_stale(&self.connection, |mut c| async move {
            redis::pipe()
                .lpush(queue, encoded.as_ref())
                .ignore()
                .ltrim(queue, 0, keep)
                .ignore()
                .query_async(&mut c)
                .await
        })
        .await;
        let answer = match pushed {
            Ok(()) => tokio::time::timeout(timeout, rx).await,
            Err(e) => {
                self.waiters.take(id);
                self.unanswered.inc();
                return Err(e.into());
            }
        };
        self.waiters.take(id);
        match answer {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(_)) => {
                self.unanswered.inc();
                Err(RpcError::AnswerLost)
            }
            Err(_) => {
                self.unanswered.inc();
                Err(RpcError::Timeout(timeout))
            }
        }
    }
}

/// The callers waiting for an answer, by request id.
#[derive(Default)]
struct Waiters(Mutex<HashMap<u64, oneshot::Sender<Bytes>>>);

impl Waiters {
    fn wait(&self, id: u64) -> oneshot::Receiver<Bytes> {
        let (tx, rx) = oneshot::channel();
        self.held().insert(id, tx);
        rx
    }

    fn take(&self, id: u64) -> Option<oneshot::Sender<Bytes>> {
        self.held().remove(&id)
    }

    /// Every caller waiting now is told its answer is lost.
    fn lose_all(&self) {
        self.held().clear();
    }

    fn held(&self) -> MutexGuard<'_, HashMap<u64, oneshot::Sender<Bytes>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Hands each answer on the reply topic to the caller waiting for it; an
/// answer nobody waits for any more is dropped. When the subscription lagged
/// (its connection to Redis was lost), answers may have been published while
/// nobody listened: every caller waiting then is told at once, instead of
/// waiting out its timeout, and retries.
async fn route_answers(mut answers: mpsc::Receiver<BusMessage>, waiters: Arc<Waiters>) {
    while let Some(message) = answers.recv().await {
        let BusMessage::Message { payload, .. } = message else {
            waiters.lose_all();
            continue;
        };
        let Some((id, reply)) = decode_answer(payload) else {
            continue;
        };
        if let Some(waiter) = waiters.take(id) {
            let _ = waiter.send(reply);
        }
    }
}
