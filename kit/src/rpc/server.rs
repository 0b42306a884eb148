//! The core's side: consumes the lists it may, answers on the bus, and gives
//! its shard leases up when it stops.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut as _, Bytes, BytesMut};
use redis::AsyncCommands as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::envelope::{Envelope, now_ms};
use super::lease::{Lease, RELEASE_IF_HELD, keep_leases};
use super::{ANY_QUEUE, Handler, RpcError, shard_queue};
use crate::bus::Bus;
use crate::metrics::{Counter, Gauge, Registry};
use crate::store::Fence;

/// Requests taken from a list in one round trip, beyond the first.
const POP_BATCH: usize = 127;

/// The core's side: holds shard leases and answers requests.
pub struct RpcServer {
    url: String,
    node: String,
    lease_ttl: Duration,
    meters: ServerMeters,
}

#[derive(Clone)]
struct ServerMeters {
    answered: Arc<Counter>,
    handed_back: Arc<Counter>,
    expired: Arc<Counter>,
    leases: Arc<Gauge>,
}

impl RpcServer {
    pub fn new(url: &str, node: &str, lease_ttl: Duration, metrics: &Registry) -> Self {
        Self {
            url: url.to_string(),
            node: node.to_string(),
            lease_ttl,
            meters: ServerMeters {
                answered: metrics.counter(
                    "rpc_requests_answered_total",
                    "Requests taken and answered.",
                ),
                handed_back: metrics.counter(
                    "rpc_requests_handed_back_total",
                    "Shard requests pushed back for the shard's owner, never applied here.",
                ),
                expired: metrics.counter(
                    "rpc_requests_expired_total",
                    "Requests dropped because their caller's deadline had passed.",
                ),
                leases: metrics.gauge("rpc_leases_held", "Shard leases this process holds."),
            },
        }
    }

    /// Serves until `shutdown`: keeps leases, consumes the queues it may, and
    /// publishes answers on `bus`. At shutdown it stops taking requests, lets
    /// those in hand finish (for at most a third of the lease TTL), and then
    /// gives its leases up, so a standby or restarted core takes the shards at
    /// once instead of after the TTL.
    pub async fn run(
        self,
        bus: Arc<dyn Bus>,
        handler: Handler,
        shutdown: CancellationToken,
    ) -> Result<(), RpcError> {
        let client = redis::Client::open(self.url.as_str())?;
        let leases: Arc<Mutex<HashMap<u32, Lease>>> = Arc::default();
        let keeper = tokio::spawn(keep_leases(
            client.get_connection_manager().await?,
            self.node.clone(),
            self.lease_ttl,
            leases.clone(),
            self.meters.leases.clone(),
            shutdown.clone(),
        ));
        let mut pusher = client.get_connection_manager().await?;
        // A blocking pop waits up to half a second for its answer: the
        // connection's own response timeout (500 ms by default) must be longer.
        let popper_config =
            redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(5)));
        let mut popper = client
            .get_multiplexed_async_connection_with_config(&popper_config)
            .await?;
        let in_hand = TaskTracker::new();
        while !shutdown.is_cancelled() {
            let mut queues = vec![ANY_QUEUE.to_string()];
            {
                let held = leases.lock().unwrap_or_else(|p| p.into_inner());
                queues.extend(held.keys().map(|s| shard_queue(*s)));
            }
            let popped: Option<(String, Vec<u8>)> = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = popper.brpop(&queues, 0.5) => match r {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::warn!(error = %e, "rpc: pop failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        popper = match client
                            .get_multiplexed_async_connection_with_config(&popper_config)
                            .await
                        {
                            Ok(c) => c,
                            Err(_) => continue,
                        };
                        continue;
                    }
                },
            };
            let Some((queue, first)) = popped else {
                continue;
            };
            // Whatever else waits in the same list comes along, oldest first: one
            // round trip per batch instead of one per request.
            let more: Option<Vec<Vec<u8>>> = redis::cmd("RPOP")
                .arg(&queue)
                .arg(POP_BATCH)
                .query_async(&mut popper)
                .await
                .unwrap_or(None);
            let mut refused = Vec::new();
            for raw in std::iter::once(first).chain(more.into_iter().flatten()) {
                let Some(envelope) = Envelope::decode(Bytes::from(raw.clone())) else {
                    tracing::warn!("rpc: undecodable request dropped");
                    continue;
                };
                if envelope.deadline_ms < now_ms() {
                    self.meters.expired.inc();
                    continue; // the caller has given up; it will retry idempotently
                }
                let Some(shard) = envelope.shard else {
                    let (bus, handler) = (bus.clone(), handler.clone());
                    self.meters.answered.inc();
                    in_hand.spawn(async move { answer(&*bus, &handler, envelope, None).await });
                    continue;
                };
                let lease = leases
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&shard)
                    .copied();
                match lease {
                    Some(lease) if lease.valid_until > Instant::now() && refused.is_empty() => {
                        // Applied concurrently: the store's single writer orders a
                        // conversation's writes and assigns seq; a session waits for
                        // each answer, so its own requests never overtake each other.
                        let (bus, handler) = (bus.clone(), handler.clone());
                        let fence = Some(Fence {
                            shard,
                            token: lease.fence,
                        });
                        self.meters.answered.inc();
                        in_hand
                            .spawn(async move { answer(&*bus, &handler, envelope, fence).await });
                    }
                    // Not ours (any more), or behind one that was not: never
                    // applied here, and kept in order for the shard's owner.
                    _ => {
                        self.meters.handed_back.inc();
                        refused.push(raw);
                    }
                }
            }
            // Back to the end requests are popped from, newest first, so the
            // owner pops them in their original order.
            for raw in refused.into_iter().rev() {
                let _: Result<(), _> = pusher.rpush(&queue, raw).await;
            }
        }
        keeper.abort();
        in_hand.close();
        if tokio::time::timeout(self.lease_ttl / 3, in_hand.wait())
            .await
            .is_err()
        {
            // Still applying: the leases run out by themselves instead.
            tracing::warn!("rpc: requests still in hand at shutdown; leases left to expire");
            return Ok(());
        }
        let release = redis::Script::new(RELEASE_IF_HELD);
        let held: Vec<(u32, Lease)> = leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        for (shard, lease) in held {
            self.meters.leases.dec();
            let _: Result<i64, _> = release
                .key(format!("sa:lease:{shard}"))
                .arg(format!("{}:{}", self.node, lease.fence))
                .invoke_async(&mut pusher)
                .await;
        }
        tracing::info!("rpc: leases released");
        Ok(())
    }
}

async fn answer(bus: &dyn Bus, handler: &Handler, envelope: Envelope, fence: Option<Fence>) {
    let reply = handler(envelope.payload, fence).await;
    let mut framed = BytesMut::with_capacity(8 + reply.len());
    framed.put_u64(envelope.id);
    framed.put_slice(&reply);
    bus.publish(&envelope.reply_to, framed.freeze());
}
