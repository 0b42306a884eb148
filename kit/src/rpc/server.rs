//! The core's side: consumes the lists it may, answers on the bus, and gives
//! its shard leases up when it stops.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::AsyncCommands as _;
use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::envelope::{Envelope, encode_answer, now_ms};
use super::lease::{FenceFloor, ShardLeaseKeeper, ShardLeases, no_floor};
use super::{ANY_QUEUE, Handler, REQUESTS, RpcError, shard_queue};
use crate::bus::Bus;
use crate::metrics::{Counter, Gauge, Registry};
use crate::redis_conn::{manager, retry_if_stale};
use crate::store::Fence;
use crate::tier_key::{Domain, TierKey};

/// Requests taken from a list in one round trip, beyond the first.
const POP_BATCH: usize = 127;

/// The core's side: holds shard leases and answers requests.
pub struct RpcServer {
    url: String,
    node: String,
    key: TierKey,
    lease_ttl: Duration,
    meters: ServerMeters,
    floor: FenceFloor,
}

#[derive(Clone)]
struct ServerMeters {
    answered: Arc<Counter>,
    handed_back: Arc<Counter>,
    expired: Arc<Counter>,
    unauthenticated: Arc<Counter>,
    duplicates: Arc<Counter>,
    leases: Arc<Gauge>,
}

impl RpcServer {
    pub fn new(
        url: &str,
        node: &str,
        lease_ttl: Duration,
        key: TierKey,
        metrics: &Registry,
    ) -> Self {
        Self {
            url: url.to_string(),
            node: node.to_string(),
            key,
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
                unauthenticated: metrics.counter(
                    "rpc_requests_unauthenticated_total",
                    "Requests dropped because their tag did not check under the tier key.",
                ),
                duplicates: metrics.counter(
                    "rpc_requests_duplicate_total",
                    "Requests pushed twice and answered once.",
                ),
                leases: metrics.gauge("rpc_leases_held", "Shard leases this process holds."),
            },
            floor: no_floor(),
        }
    }

    /// Where fencing numbers start from: the highest the store has accepted
    /// per shard, so a number taken after Redis forgot its counters is still
    /// higher than any the store has seen.
    pub fn with_fence_floor(mut self, floor: FenceFloor) -> Self {
        self.floor = floor;
        self
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
        let leases: Arc<ShardLeases> = Arc::default();
        let keeper = ShardLeaseKeeper::new(
            manager(&client).await?,
            self.node.clone(),
            self.lease_ttl,
            leases.clone(),
            self.meters.leases.clone(),
            self.floor.clone(),
        );
        let keeper = tokio::spawn(keeper.run(shutdown.clone()));
        let mut pusher = manager(&client).await?;
        let mut popper = Popper::connect(client).await?;
        let mut dispatcher = Dispatcher {
            bus,
            handler,
            leases,
            in_hand: TaskTracker::new(),
            meters: self.meters.clone(),
            answered: Answered::default(),
            key: self.key.clone(),
        };
        while !shutdown.is_cancelled() {
            let queues = queues_to_consume(&dispatcher.leases);
            let Some((queue, batch)) = popper.take_batch(&queues).await else {
                continue;
            };
            let refused = dispatcher.dispatch_batch(batch);
            hand_back(&pusher, &queue, refused).await;
        }
        keeper.abort();
        self.shut_down(dispatcher, &mut pusher).await;
        Ok(())
    }

    /// Lets the requests in hand finish, for at most a third of the lease
    /// TTL, then gives the shard leases up.
    async fn shut_down(&self, dispatcher: Dispatcher, connection: &mut ConnectionManager) {
        dispatcher.in_hand.close();
        if tokio::time::timeout(self.lease_ttl / 3, dispatcher.in_hand.wait())
            .await
            .is_err()
        {
            // Still applying: the leases run out by themselves instead.
            tracing::warn!("rpc: requests still in hand at shutdown; leases left to expire");
            return;
        }
        dispatcher
            .leases
            .release_all(&self.node, &self.meters.leases, connection)
            .await;
    }
}

/// Every core's list, and the lists of the shards whose lease this process
/// holds.
fn queues_to_consume(leases: &ShardLeases) -> Vec<String> {
    let mut queues = vec![ANY_QUEUE.to_string()];
    queues.extend(leases.shards().into_iter().map(shard_queue));
    queues
}

/// The connection requests are popped on, and how to open it again.
struct Popper {
    client: redis::Client,
    config: redis::AsyncConnectionConfig,
    connection: redis::aio::MultiplexedConnection,
}

impl Popper {
    async fn connect(client: redis::Client) -> Result<Self, RpcError> {
        // A blocking pop waits up to half a second for its answer: the
        // connection's own response timeout (500 ms by default) must be longer.
        let config =
            redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(5)));
        let connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok(Self {
            client,
            config,
            connection,
        })
    }

    /// Waits up to half a second for a request on `queues`, and takes it with
    /// whatever else waits in the same list. `None` when nothing came or the
    /// pop failed.
    ///
    /// Shutdown does not cut the wait short: once the blocking pop is in
    /// Redis, Redis may hand it a request at any moment until it times out,
    /// and a pop dropped here would take that request out of its list with
    /// nobody to apply it (its caller would wait out its whole timeout). So
    /// the run loop stops only between pops, at most half a second late.
    async fn take_batch(&mut self, queues: &[String]) -> Option<(String, Vec<Vec<u8>>)> {
        let popped: Option<(String, Vec<u8>)> = match self.connection.brpop(queues, 0.5).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "rpc: pop failed; retrying");
                self.reconnect().await;
                return None;
            }
        };
        let (queue, first) = popped?;
        // Whatever else waits in the same list comes along, oldest first: one
        // round trip per batch instead of one per request.
        let more: Option<Vec<Vec<u8>>> = redis::cmd("RPOP")
            .arg(&queue)
            .arg(POP_BATCH)
            .query_async(&mut self.connection)
            .await
            .unwrap_or(None);
        let batch = std::iter::once(first)
            .chain(more.into_iter().flatten())
            .collect();
        Some((queue, batch))
    }

    /// Keeps the old connection if a new one cannot be had yet.
    async fn reconnect(&mut self) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Ok(connection) = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
        {
            self.connection = connection;
        }
    }
}

/// What answering a request needs, for the whole of a run.
struct Dispatcher {
    bus: Arc<dyn Bus>,
    handler: Handler,
    leases: Arc<ShardLeases>,
    in_hand: TaskTracker,
    meters: ServerMeters,
    answered: Answered,
    key: TierKey,
}

impl Dispatcher {
    /// Starts answering what this process may apply of one batch, and returns
    /// the rest, in their order, for the shard's owner.
    fn dispatch_batch(&mut self, batch: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        let mut refused = Vec::new();
        for raw in batch {
            if let Some(raw) = self.dispatch(raw, !refused.is_empty()) {
                refused.push(raw);
            }
        }
        refused
    }

    /// Starts answering one request, drops it, or gives it back (`Some`) when
    /// it belongs to a shard this process may not apply now.
    fn dispatch(&mut self, raw: Vec<u8>, behind_refused: bool) -> Option<Vec<u8>> {
        let Some(opened) = self
            .key
            .open(Domain::Request, REQUESTS, Bytes::from(raw.clone()))
        else {
            self.meters.unauthenticated.inc();
            tracing::warn!("rpc: request with a bad tag dropped");
            return None;
        };
        let Some(envelope) = Envelope::decode(opened) else {
            tracing::warn!("rpc: undecodable request dropped");
            return None;
        };
        if envelope.deadline_ms < now_ms() {
            self.meters.expired.inc();
            return None; // the caller has given up; it will retry idempotently
        }
        let Some(shard) = envelope.shard else {
            self.spawn_answer(envelope, None);
            return None;
        };
        match self.leases.get(shard) {
            Some(lease) if lease.valid_until > Instant::now() && !behind_refused => {
                // Applied concurrently: the store's single writer orders a
                // conversation's writes and assigns seq; a session waits for
                // each answer, so its own requests never overtake each other.
                let fence = Some(Fence {
                    shard,
                    token: lease.fence,
                });
                self.spawn_answer(envelope, fence);
                None
            }
            // Not ours (any more), or behind one that was not: never
            // applied here, and kept in order for the shard's owner.
            _ => {
                self.meters.handed_back.inc();
                Some(raw)
            }
        }
    }

    fn spawn_answer(&mut self, envelope: Envelope, fence: Option<Fence>) {
        if !self.answered.first_time(&envelope) {
            self.meters.duplicates.inc();
            return;
        }
        let (bus, handler) = (self.bus.clone(), self.handler.clone());
        self.meters.answered.inc();
        self.in_hand
            .spawn(async move { answer(&*bus, &handler, envelope, fence).await });
    }
}

/// The requests answered lately, each kept until its caller's deadline, so
/// that a request pushed twice (its first push was cut off after reaching
/// Redis, and the gateway pushed it again) is applied once. Request ids are
/// 64 random bits, so the id alone names a request.
#[derive(Default)]
struct Answered {
    ids: HashSet<u64>,
    by_deadline: VecDeque<(i64, u64)>,
}

impl Answered {
    /// False if this request was answered already.
    fn first_time(&mut self, envelope: &Envelope) -> bool {
        let now = now_ms();
        // Deadlines come nearly in order; one later than its successors
        // is forgotten a little late, never early.
        while let Some(&(deadline, id)) = self.by_deadline.front()
            && deadline < now
        {
            self.by_deadline.pop_front();
            self.ids.remove(&id);
        }
        if !self.ids.insert(envelope.id) {
            return false;
        }
        self.by_deadline
            .push_back((envelope.deadline_ms, envelope.id));
        true
    }
}

/// Back to the end requests are popped from, newest first, so the owner pops
/// them in their original order. A push that met a dropped connection is
/// made once more; the owner applies a request once however often it is
/// pushed.
async fn hand_back(connection: &ConnectionManager, queue: &str, refused: Vec<Vec<u8>>) {
    for raw in refused.into_iter().rev() {
        let raw = &raw;
        let _: Result<(), _> =
            retry_if_stale(connection, |mut c| async move { c.rpush(queue, raw).await }).await;
    }
}

async fn answer(bus: &dyn Bus, handler: &Handler, envelope: Envelope, fence: Option<Fence>) {
    let reply = handler(envelope.payload, fence).await;
    bus.publish(&envelope.reply_to, encode_answer(envelope.id, &reply));
}
