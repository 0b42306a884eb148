//! The gateway's side: requests pushed to the core's lists, answers matched
//! by id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf as _, Bytes};
use redis::AsyncCommands as _;
use tokio::sync::oneshot;

use super::envelope::{Envelope, now_ms};
use super::{ANY_QUEUE, Route, RpcError, shard_queue};
use crate::bus::{Bus, BusMessage, Subscriber};
use crate::metrics::{Counter, Registry};

/// The gateway's side: sends requests and matches answers by id.
pub struct RpcClient {
    connection: redis::aio::ConnectionManager,
    reply_topic: String,
    next_id: AtomicU64,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Bytes>>>>,
    _replies: Arc<dyn Subscriber>,
    sent: Arc<Counter>,
    unanswered: Arc<Counter>,
}

impl RpcClient {
    pub async fn connect(
        url: &str,
        bus: &dyn Bus,
        node: &str,
        metrics: &Registry,
    ) -> Result<Self, RpcError> {
        let client = redis::Client::open(url)?;
        let connection = client.get_connection_manager().await?;
        let reply_topic = format!("rpc-reply.{node}");
        let (replies, mut answers) = bus.subscriber(65_536);
        replies.subscribe(&reply_topic);
        let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Bytes>>>> = Arc::default();
        let routing = pending.clone();
        tokio::spawn(async move {
            while let Some(message) = answers.recv().await {
                let BusMessage::Message { mut payload, .. } = message else {
                    continue;
                };
                if payload.len() < 8 {
                    continue;
                }
                let id = payload.get_u64();
                let waiter = routing
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(payload);
                }
            }
        });
        Ok(Self {
            connection,
            reply_topic,
            next_id: AtomicU64::new(1),
            pending,
            _replies: replies,
            sent: metrics.counter("rpc_requests_sent_total", "Requests sent to the core."),
            unanswered: metrics.counter(
                "rpc_requests_unanswered_total",
                "Requests to the core that timed out or could not be queued.",
            ),
        })
    }

    /// Sends one request and waits for its answer. A request that times out may
    /// still be applied later; callers retry with the same idempotency key.
    pub async fn call(
        &self,
        route: Route,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
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
        let mut connection = self.connection.clone();
        self.sent.inc();
        let pushed: Result<(), _> = connection.lpush(queue, envelope.encode().as_ref()).await;
        let answer = match pushed {
            Ok(()) => tokio::time::timeout(timeout, rx).await,
            Err(e) => {
                self.pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                self.unanswered.inc();
                return Err(e.into());
            }
        };
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        match answer {
            Ok(Ok(bytes)) => Ok(bytes),
            _ => {
                self.unanswered.inc();
                Err(RpcError::Timeout(timeout))
            }
        }
    }
}
