//! Requests from gateways to the core over Redis, in the medium tier.
//!
//! A request goes into a Redis list: `sa:rq:<shard>` for conversation-ordered
//! requests (one list per shard of conversations), `sa:rq:any` for everything
//! else. A core process consumes `sa:rq:any` and the shards whose lease it
//! holds (`sa:lease:<shard>`, set with NX and a TTL, renewed while alive; each
//! acquisition takes a new fencing number from `sa:fence:<shard>`). So one core
//! at a time is the single writer of a shard; a core whose lease has run out
//! (by its own clock, with a safety margin) pushes a popped request back for the
//! new owner instead of applying it. Answers travel on the bus topic the
//! request names. Payloads are opaque bytes to this module.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use redis::AsyncCommands as _;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::BoxFuture;
use crate::bus::{Bus, BusMessage, Subscriber};
use crate::clock::{Clock as _, SystemClock};
use crate::metrics::{Counter, Gauge, Registry};
use crate::store::Fence;

/// Deletes a lease (KEYS[1]) only if this process (ARGV[1]) still holds it.
const RELEASE_IF_HELD: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// Shards of conversation-ordered requests.
pub const SHARDS: u32 = 16;
const ANY_QUEUE: &str = "sa:rq:any";
/// Requests taken from a list in one round trip, beyond the first.
const POP_BATCH: usize = 127;

pub fn shard_of(key: &str) -> u32 {
    // FNV-1a: stable across processes and versions, unlike std's hasher.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in key.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % SHARDS
}

fn shard_queue(shard: u32) -> String {
    format!("sa:rq:{shard}")
}

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Ordered with everything else of this shard (a conversation's writes).
    Shard(u32),
    /// Any core may answer (reads, authentication).
    Any,
}

/// The wire form: id, reply topic, deadline, route, payload.
struct Envelope {
    id: u64,
    reply_to: String,
    deadline_ms: i64,
    shard: Option<u32>,
    payload: Bytes,
}

impl Envelope {
    fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(32 + self.reply_to.len() + self.payload.len());
        buf.put_u64(self.id);
        buf.put_u16(self.reply_to.len() as u16);
        buf.put_slice(self.reply_to.as_bytes());
        buf.put_i64(self.deadline_ms);
        buf.put_u32(self.shard.map_or(u32::MAX, |s| s));
        buf.put_slice(&self.payload);
        buf.freeze()
    }

    fn decode(mut bytes: Bytes) -> Option<Self> {
        if bytes.len() < 10 {
            return None;
        }
        let id = bytes.get_u64();
        let len = bytes.get_u16() as usize;
        if bytes.len() < len + 12 {
            return None;
        }
        let reply_to = String::from_utf8(bytes.split_to(len).to_vec()).ok()?;
        let deadline_ms = bytes.get_i64();
        let shard = match bytes.get_u32() {
            u32::MAX => None,
            s => Some(s),
        };
        Some(Self {
            id,
            reply_to,
            deadline_ms,
            shard,
            payload: bytes,
        })
    }
}

fn now_ms() -> i64 {
    SystemClock.now_ms()
}

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

/// Handles one request's payload; `fence` is the shard's lease when the
/// request is shard-ordered, for the store to check (see [`Fence`]).
pub type Handler = Arc<dyn Fn(Bytes, Option<Fence>) -> BoxFuture<'static, Bytes> + Send + Sync>;

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

/// A lease this process holds: its fencing number and until when it may act.
#[derive(Debug, Clone, Copy)]
struct Lease {
    fence: u64,
    valid_until: Instant,
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

/// The right to be the core: one process at a time holds `sa:core`. A
/// second core started on the same data stands by until the key is free (its
/// holder stopped, or died and the key expired), then takes it and opens the
/// stores, which hold every acknowledged write. A holder that cannot renew the
/// key in time stops itself, so two cores never write at once.
pub struct CoreLease {
    connection: redis::aio::ConnectionManager,
    node: String,
    ttl: Duration,
}

const CORE_KEY: &str = "sa:core";

impl CoreLease {
    /// Waits until this process holds the core lease, or `shutdown` fires.
    pub async fn acquire(
        url: &str,
        node: &str,
        ttl: Duration,
        shutdown: &CancellationToken,
    ) -> Result<Option<Self>, RpcError> {
        let mut connection = redis::Client::open(url)?.get_connection_manager().await?;
        let mut announced = false;
        loop {
            let taken: Option<String> = redis::cmd("SET")
                .arg(CORE_KEY)
                .arg(node)
                .arg("NX")
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .query_async(&mut connection)
                .await?;
            if taken.is_some() {
                tracing::info!("rpc: core lease taken");
                return Ok(Some(Self {
                    connection,
                    node: node.to_string(),
                    ttl,
                }));
            }
            if !announced {
                tracing::info!("rpc: another core is active; standing by");
                announced = true;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(None),
                _ = tokio::time::sleep(ttl / 4) => {}
            }
        }
    }

    /// Renews the lease every quarter TTL until `shutdown`. When another core
    /// holds it, or renewals have failed for two thirds of the TTL, fires
    /// `shutdown` (this process must stop writing). Once `stopped` fires,
    /// gives the lease up if it still holds it.
    pub async fn keep(mut self, shutdown: CancellationToken, stopped: CancellationToken) {
        // Renewed if still ours; taken again if gone (a Redis restart without
        // persistence forgets it); lost only if another core holds it.
        let renew = redis::Script::new(
            r"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
",
        );
        let mut valid_until = Instant::now() + self.ttl - self.ttl / 3;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.ttl / 4) => {}
            }
            let started = Instant::now();
            let renewed: Result<i64, _> = renew
                .key(CORE_KEY)
                .arg(&self.node)
                .arg(self.ttl.as_millis() as u64)
                .invoke_async(&mut self.connection)
                .await;
            match renewed {
                Ok(1) => valid_until = started + self.ttl - self.ttl / 3,
                Ok(_) => {
                    tracing::error!("rpc: core lease taken by another core; stopping");
                    shutdown.cancel();
                    return;
                }
                Err(e) if Instant::now() >= valid_until => {
                    tracing::error!(error = %e, "rpc: core lease not renewed in time; stopping");
                    shutdown.cancel();
                    break;
                }
                Err(e) => tracing::warn!(error = %e, "rpc: core lease renewal failed; retrying"),
            }
        }
        // Given up only once the requests in hand are answered and the
        // stores are closed to new work.
        stopped.cancelled().await;
        let release = redis::Script::new(RELEASE_IF_HELD);
        let _: Result<i64, _> = release
            .key(CORE_KEY)
            .arg(&self.node)
            .invoke_async(&mut self.connection)
            .await;
        tracing::info!("rpc: core lease released");
    }
}

async fn answer(bus: &dyn Bus, handler: &Handler, envelope: Envelope, fence: Option<Fence>) {
    let reply = handler(envelope.payload, fence).await;
    let mut framed = BytesMut::with_capacity(8 + reply.len());
    framed.put_u64(envelope.id);
    framed.put_slice(&reply);
    bus.publish(&envelope.reply_to, framed.freeze());
}

/// Renews held leases and takes free ones. A lease is used only until a third
/// of its TTL before it expires in Redis, so clock drift and pauses up to that
/// margin cannot let two owners act at once.
async fn keep_leases(
    mut connection: redis::aio::ConnectionManager,
    node: String,
    ttl: Duration,
    leases: Arc<Mutex<HashMap<u32, Lease>>>,
    held_gauge: Arc<Gauge>,
    shutdown: CancellationToken,
) {
    let renew = redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end",
    );
    let ttl_ms = ttl.as_millis() as u64;
    let margin = ttl / 3;
    while !shutdown.is_cancelled() {
        for shard in 0..SHARDS {
            let key = format!("sa:lease:{shard}");
            let held = leases
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&shard)
                .copied();
            let started = Instant::now();
            match held {
                Some(lease) => {
                    let value = format!("{node}:{}", lease.fence);
                    let renewed: Result<i64, _> = renew
                        .key(&key)
                        .arg(&value)
                        .arg(ttl_ms)
                        .invoke_async(&mut connection)
                        .await;
                    let mut held = leases.lock().unwrap_or_else(|p| p.into_inner());
                    if matches!(renewed, Ok(1)) {
                        held.insert(
                            shard,
                            Lease {
                                fence: lease.fence,
                                valid_until: started + ttl - margin,
                            },
                        );
                    } else if lease.valid_until <= Instant::now() || matches!(renewed, Ok(0)) {
                        held.remove(&shard);
                        held_gauge.dec();
                        tracing::warn!(shard, "rpc: lease lost");
                    }
                }
                None => {
                    let fence: Result<u64, _> =
                        connection.incr(format!("sa:fence:{shard}"), 1).await;
                    let Ok(fence) = fence else { continue };
                    let value = format!("{node}:{fence}");
                    let taken: Result<Option<String>, _> = redis::cmd("SET")
                        .arg(&key)
                        .arg(&value)
                        .arg("NX")
                        .arg("PX")
                        .arg(ttl_ms)
                        .query_async(&mut connection)
                        .await;
                    if matches!(taken, Ok(Some(_))) {
                        tracing::info!(shard, fence, "rpc: lease taken");
                        held_gauge.inc();
                        leases.lock().unwrap_or_else(|p| p.into_inner()).insert(
                            shard,
                            Lease {
                                fence,
                                valid_until: started + ttl - margin,
                            },
                        );
                    }
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(ttl / 4) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_garbage_is_refused() {
        let e = Envelope {
            id: 7,
            reply_to: "rpc-reply.g1".into(),
            deadline_ms: 99,
            shard: Some(3),
            payload: Bytes::from_static(b"hello"),
        };
        let d = Envelope::decode(e.encode()).unwrap();
        assert_eq!(
            (
                d.id,
                d.reply_to.as_str(),
                d.deadline_ms,
                d.shard,
                d.payload.as_ref()
            ),
            (7, "rpc-reply.g1", 99, Some(3), &b"hello"[..])
        );
        assert!(Envelope::decode(Bytes::from_static(b"short")).is_none());
        assert!(
            Envelope::decode(Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 1]))
                .is_none()
        );
    }

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(shard_of("d.1.2"), shard_of("d.1.2"));
        let used: std::collections::HashSet<u32> = (0..200)
            .map(|i| shard_of(&format!("d.{i}.{}", i + 1)))
            .collect();
        assert!(used.len() > SHARDS as usize / 2);
    }
}

#[cfg(test)]
mod lease_tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::redis_bus::RedisBus;
    use crate::testkit::RedisServer;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_core_without_the_lease_never_applies_a_shard_request() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let url = redis.url();
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut admin = client.get_multiplexed_async_connection().await.unwrap();
        // Another core holds every lease.
        for shard in 0..SHARDS {
            let _: () = redis::cmd("SET")
                .arg(format!("sa:lease:{shard}"))
                .arg("other:1")
                .arg("PX")
                .arg(60_000)
                .query_async(&mut admin)
                .await
                .unwrap();
        }
        let bus: Arc<dyn Bus> = Arc::new(RedisBus::connect(&url).await.unwrap());
        let applied = Arc::new(AtomicUsize::new(0));
        let counter = applied.clone();
        let handler: Handler = Arc::new(move |payload: Bytes, fence: Option<Fence>| {
            counter.fetch_add(1, Ordering::SeqCst);
            assert!(fence.is_some());
            Box::pin(async move { payload }) as BoxFuture<'static, Bytes>
        });
        let shutdown = CancellationToken::new();
        let server = RpcServer::new(
            &url,
            "core-a",
            Duration::from_millis(1_500),
            &Registry::new(),
        );
        tokio::spawn(server.run(bus.clone(), handler, shutdown.clone()));
        let caller = RpcClient::connect(&url, bus.as_ref(), "gw-1", &Registry::new())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;

        let refused = caller
            .call(
                Route::Shard(3),
                Bytes::from_static(b"write"),
                Duration::from_millis(1_500),
            )
            .await;
        assert!(matches!(refused, Err(RpcError::Timeout(_))));
        assert_eq!(
            applied.load(Ordering::SeqCst),
            0,
            "applied without the lease"
        );
        let waiting: usize = redis::cmd("LLEN")
            .arg("sa:rq:3")
            .query_async(&mut admin)
            .await
            .unwrap();
        assert_eq!(waiting, 1, "the request waits for the shard's owner");

        // The other core's lease ends; this one takes it and answers.
        let _: () = redis::cmd("DEL")
            .arg("sa:lease:3")
            .query_async(&mut admin)
            .await
            .unwrap();
        let answer = caller
            .call(
                Route::Shard(3),
                Bytes::from_static(b"again"),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(answer, Bytes::from_static(b"again"));
        shutdown.cancel();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_core_gives_its_leases_up_when_it_stops() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let url = redis.url();
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut admin = client.get_multiplexed_async_connection().await.unwrap();
        let bus: Arc<dyn Bus> = Arc::new(RedisBus::connect(&url).await.unwrap());
        let handler: Handler = Arc::new(|payload: Bytes, _fence: Option<Fence>| {
            Box::pin(async move { payload }) as BoxFuture<'static, Bytes>
        });
        let shutdown = CancellationToken::new();
        let metrics = Registry::new();
        let server = RpcServer::new(&url, "core-a", Duration::from_secs(30), &metrics);
        let running = tokio::spawn(server.run(bus, handler, shutdown.clone()));
        let leases = |admin: &mut redis::aio::MultiplexedConnection| {
            let mut admin = admin.clone();
            async move {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg("sa:lease:*")
                    .query_async(&mut admin)
                    .await
                    .unwrap();
                keys.len()
            }
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while leases(&mut admin).await < SHARDS as usize && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(leases(&mut admin).await, SHARDS as usize);
        assert!(metrics.render().contains("rpc_leases_held 16"));
        shutdown.cancel();
        running.await.unwrap().unwrap();
        // Free at once, not after the 30 s TTL.
        assert_eq!(leases(&mut admin).await, 0);
        assert!(metrics.render().contains("rpc_leases_held 0"));
    }
}
