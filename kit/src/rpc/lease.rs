//! Leases: the shard leases that make one core the single writer of a
//! shard, and the core lease that makes one process the core.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

use super::{RpcError, SHARDS};
use crate::BoxFuture;
use crate::metrics::Gauge;
use crate::redis_conn::{manager, retry_if_stale};

/// How soon the keeper tries again after Redis did not answer: it may be
/// back any moment, and leases it forgot are taken again at once.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Deletes a lease (KEYS[1]) only if this process (ARGV[1]) still holds it.
const RELEASE_IF_HELD: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// A lease this process holds: its fencing number and until when it may act.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lease {
    pub(super) fence: u64,
    pub(super) valid_until: Instant,
}

/// The shard leases this process holds, shared by the keeper that takes and
/// renews them and the server that consumes their shards' lists.
#[derive(Default)]
pub(super) struct ShardLeases {
    held: Mutex<HashMap<u32, Lease>>,
}

impl ShardLeases {
    pub(super) fn get(&self, shard: u32) -> Option<Lease> {
        self.held().get(&shard).copied()
    }

    pub(super) fn shards(&self) -> Vec<u32> {
        self.held().keys().copied().collect()
    }

    /// Gives every lease up, each only if this process still holds it in
    /// Redis.
    pub(super) async fn release_all(
        &self,
        node: &str,
        held_gauge: &Gauge,
        connection: &mut ConnectionManager,
    ) {
        let release = redis::Script::new(RELEASE_IF_HELD);
        let held: Vec<(u32, Lease)> = self.held().drain().collect();
        for (shard, lease) in held {
            held_gauge.dec();
            let _: Result<i64, _> = release
                .key(lease_key(shard))
                .arg(holder(node, lease.fence))
                .invoke_async(connection)
                .await;
        }
        tracing::info!("rpc: leases released");
    }

    fn set(&self, shard: u32, fence: u64, valid_until: Instant) {
        self.held().insert(shard, Lease { fence, valid_until });
    }

    fn remove(&self, shard: u32) {
        self.held().remove(&shard);
    }

    fn held(&self) -> MutexGuard<'_, HashMap<u32, Lease>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Renews held leases and takes free ones. A lease is used only until a third
/// of its TTL before it expires in Redis, so clock drift and pauses up to that
/// margin cannot let two owners act at once.
pub(super) struct ShardLeaseKeeper {
    connection: ConnectionManager,
    node: String,
    ttl: Duration,
    leases: Arc<ShardLeases>,
    held_gauge: Arc<Gauge>,
    renew: redis::Script,
    next_fence: redis::Script,
    floor: FenceFloor,
}

impl ShardLeaseKeeper {
    pub(super) fn new(
        connection: ConnectionManager,
        node: String,
        ttl: Duration,
        leases: Arc<ShardLeases>,
        held_gauge: Arc<Gauge>,
        floor: FenceFloor,
    ) -> Self {
        let renew = redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end",
        );
        Self {
            connection,
            node,
            ttl,
            leases,
            held_gauge,
            renew,
            next_fence: redis::Script::new(NEXT_FENCE),
            floor,
        }
    }

    /// Goes over every shard each quarter TTL until `shutdown`; after a
    /// round in which Redis did not answer, again within [`RETRY_PAUSE`].
    pub(super) async fn run(mut self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let mut answered = true;
            for shard in 0..SHARDS {
                answered = match self.leases.get(shard) {
                    Some(lease) => self.renew(shard, lease).await,
                    None => self.take(shard).await,
                };
                if !answered {
                    break;
                }
            }
            let pause = if answered { self.ttl / 4 } else { RETRY_PAUSE };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Extends a held lease; drops it once Redis says another holds it, or
    /// once it has run out by this process's clock. A lease Redis forgot (it
    /// restarted without persistence) is taken again at once, under a new
    /// fencing number. False when Redis did not answer.
    async fn renew(&mut self, shard: u32, lease: Lease) -> bool {
        let started = Instant::now();
        let (key, holder) = (&lease_key(shard), &holder(&self.node, lease.fence));
        let (script, ttl) = (&self.renew, self.ttl.as_millis() as u64);
        let renewed: Result<i64, _> = retry_if_stale(&self.connection, |mut c| async move {
            script
                .key(key)
                .arg(holder)
                .arg(ttl)
                .invoke_async(&mut c)
                .await
        })
        .await;
        match renewed {
            Ok(1) => {
                self.leases
                    .set(shard, lease.fence, self.valid_until(started));
                true
            }
            Ok(_) => {
                self.lose(shard);
                self.take(shard).await
            }
            Err(_) => {
                if lease.valid_until <= Instant::now() {
                    self.lose(shard);
                }
                false
            }
        }
    }

    fn lose(&mut self, shard: u32) {
        self.leases.remove(shard);
        self.held_gauge.dec();
        tracing::warn!(shard, "rpc: lease lost");
    }

    /// Takes a free lease, under a fencing number higher than any earlier
    /// holder's: higher than Redis's counter, and than the highest number the
    /// store has accepted for the shard (the floor), since a Redis that
    /// restarted without persistence counts from 1 again. False when Redis
    /// did not answer.
    async fn take(&mut self, shard: u32) -> bool {
        let started = Instant::now();
        let Some(floor) = (self.floor)(shard).await else {
            return true; // the store cannot say now; Redis is not at fault
        };
        let fence: Result<u64, _> = self
            .next_fence
            .key(format!("sa:fence:{shard}"))
            .arg(floor)
            .invoke_async(&mut self.connection)
            .await;
        let Ok(fence) = fence else { return false };
        let taken: Result<Option<String>, _> = redis::cmd("SET")
            .arg(lease_key(shard))
            .arg(holder(&self.node, fence))
            .arg("NX")
            .arg("PX")
            .arg(self.ttl.as_millis() as u64)
            .query_async(&mut self.connection)
            .await;
        match taken {
            Ok(Some(_)) => {
                tracing::info!(shard, fence, "rpc: lease taken");
                self.held_gauge.inc();
                self.leases.set(shard, fence, self.valid_until(started));
                true
            }
            Ok(None) => true, // another core holds it
            Err(_) => false,
        }
    }

    fn valid_until(&self, started: Instant) -> Instant {
        started + self.ttl - self.ttl / 3
    }
}

/// The next fencing number of a shard (KEYS[1]): one more than the counter,
/// and at least one more than the floor (ARGV[1]).
const NEXT_FENCE: &str = "local v = redis.call('INCR', KEYS[1]) \
local floor = tonumber(ARGV[1]) \
if v <= floor then v = floor + 1 redis.call('SET', KEYS[1], v) end \
return v";

/// The highest fencing number the store has accepted for a shard (0 if
/// none); None when the store cannot say, and the lease is not taken then.
pub type FenceFloor = Arc<dyn Fn(u32) -> BoxFuture<'static, Option<u64>> + Send + Sync>;

/// A floor for a store that keeps no marks (tests, or a core without one).
pub fn no_floor() -> FenceFloor {
    Arc::new(|_| Box::pin(async { Some(0) }))
}

fn lease_key(shard: u32) -> String {
    format!("sa:lease:{shard}")
}

/// A lease's value in Redis: who holds it, under which fencing number.
fn holder(node: &str, fence: u64) -> String {
    format!("{node}:{fence}")
}

/// The right to be the core: one process at a time holds `sa:core`. A
/// second core started on the same data stands by until the key is free (its
/// holder stopped, or died and the key expired), then takes it and opens the
/// stores, which hold every acknowledged write. A holder that cannot renew the
/// key in time stops itself, so two cores never write at once.
pub struct CoreLease {
    connection: ConnectionManager,
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
        let mut connection = manager(&redis::Client::open(url)?).await?;
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
            let (renew, node, ttl) = (&renew, &self.node, self.ttl.as_millis() as u64);
            let renewed: Result<i64, _> = retry_if_stale(&self.connection, |mut c| async move {
                renew
                    .key(CORE_KEY)
                    .arg(node)
                    .arg(ttl)
                    .invoke_async(&mut c)
                    .await
            })
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use redis::AsyncCommands as _;

    use super::*;
    use crate::BoxFuture;
    use crate::bus::Bus;
    use crate::metrics::Registry;
    use crate::redis_bus::RedisBus;
    use crate::rpc::{Handler, Route, RpcClient, RpcServer};
    use crate::store::Fence;
    use crate::testkit::RedisServer;
    use crate::tier_key::TierKey;

    fn key() -> TierKey {
        TierKey::new(&[7; 32]).unwrap()
    }

    async fn bus(url: &str) -> Arc<dyn Bus> {
        Arc::new(
            RedisBus::connect(url, key(), &Registry::new())
                .await
                .unwrap(),
        )
    }

    /// A connection for the test's own commands, and a bus of the tier.
    async fn admin_and_bus(url: &str) -> (redis::aio::MultiplexedConnection, Arc<dyn Bus>) {
        let client = redis::Client::open(url).unwrap();
        let admin = client.get_multiplexed_async_connection().await.unwrap();
        (admin, bus(url).await)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lease_is_fenced_above_the_store_s_mark_after_redis_forgot_its_counters() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let url = redis.url();
        // A fresh Redis (as after a restart without persistence) counts from 1,
        // but the store has already accepted number 41 for shard 3.
        let floor: FenceFloor =
            Arc::new(|shard| Box::pin(async move { Some(if shard == 3 { 41 } else { 0 }) }));
        let bus = bus(&url).await;
        let handler: Handler = Arc::new(|payload: Bytes, _fence: Option<Fence>| {
            Box::pin(async move { payload }) as BoxFuture<'static, Bytes>
        });
        let shutdown = CancellationToken::new();
        let server = RpcServer::new(
            &url,
            "core-a",
            Duration::from_millis(1_500),
            key(),
            &Registry::new(),
        )
        .with_fence_floor(floor);
        let serving = tokio::spawn(server.run(bus, handler, shutdown.clone()));
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut admin = client.get_multiplexed_async_connection().await.unwrap();
        let mut holders: (Option<String>, Option<String>) = (None, None);
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let three: Option<String> = admin.get("sa:lease:3").await.unwrap();
            let four: Option<String> = admin.get("sa:lease:4").await.unwrap();
            holders = (three, four);
            if holders.0.is_some() && holders.1.is_some() {
                break;
            }
        }
        assert_eq!(holders.0.as_deref(), Some("core-a:42"));
        assert_eq!(holders.1.as_deref(), Some("core-a:1"));
        let counter: u64 = admin.get("sa:fence:3").await.unwrap();
        assert_eq!(counter, 42, "the counter is raised with the lease");
        shutdown.cancel();
        let _ = serving.await;
    }

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
        let bus = bus(&url).await;
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
            key(),
            &Registry::new(),
        );
        tokio::spawn(server.run(bus.clone(), handler, shutdown.clone()));
        let caller = RpcClient::connect(&url, bus.as_ref(), "gw-1", key(), &Registry::new())
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
        let (mut admin, bus) = admin_and_bus(&url).await;
        let handler: Handler = Arc::new(|payload: Bytes, _fence: Option<Fence>| {
            Box::pin(async move { payload }) as BoxFuture<'static, Bytes>
        });
        let shutdown = CancellationToken::new();
        let metrics = Registry::new();
        let server = RpcServer::new(&url, "core-a", Duration::from_secs(30), key(), &metrics);
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_pushed_while_the_core_stops_is_answered_or_left_waiting() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let url = redis.url();
        let (mut admin, bus) = admin_and_bus(&url).await;
        let applied = Arc::new(AtomicUsize::new(0));
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let started_tx = Arc::new(Mutex::new(Some(started_tx)));
        let counter = applied.clone();
        let handler: Handler = Arc::new(move |payload: Bytes, _fence: Option<Fence>| {
            counter.fetch_add(1, Ordering::SeqCst);
            let started = started_tx.lock().unwrap().take();
            Box::pin(async move {
                // The first request is still in hand when the core is told
                // to stop, so the core's connections stay open a while.
                if let Some(started) = started {
                    let _ = started.send(());
                    tokio::time::sleep(Duration::from_millis(800)).await;
                }
                payload
            }) as BoxFuture<'static, Bytes>
        });
        let shutdown = CancellationToken::new();
        let server = RpcServer::new(
            &url,
            "core-a",
            Duration::from_secs(30),
            key(),
            &Registry::new(),
        );
        let running = tokio::spawn(server.run(bus.clone(), handler, shutdown.clone()));
        let caller = Arc::new(
            RpcClient::connect(&url, bus.as_ref(), "gw-1", key(), &Registry::new())
                .await
                .unwrap(),
        );
        let slow = {
            let caller = caller.clone();
            tokio::spawn(async move {
                caller
                    .call(
                        Route::Any,
                        Bytes::from_static(b"slow"),
                        Duration::from_secs(10),
                    )
                    .await
            })
        };
        started.await.unwrap();
        // The core has gone back to waiting on its lists (a blocking pop is
        // in Redis) when it is told to stop; a request arrives just after.
        tokio::time::sleep(Duration::from_millis(50)).await;
        shutdown.cancel();
        let late = caller
            .call(
                Route::Any,
                Bytes::from_static(b"late"),
                Duration::from_secs(2),
            )
            .await;
        running.await.unwrap().unwrap();
        assert_eq!(slow.await.unwrap().unwrap(), Bytes::from_static(b"slow"));
        let waiting: usize = admin.llen("sa:rq:any").await.unwrap();
        match late {
            Ok(answer) => assert_eq!(answer, Bytes::from_static(b"late")),
            // Not taken: it waits for the next core.
            Err(_) => assert_eq!(
                (waiting, applied.load(Ordering::SeqCst)),
                (1, 1),
                "a request taken at shutdown was neither answered nor left in its list"
            ),
        }
    }

    #[tokio::test]
    async fn requests_without_the_tier_key_are_dropped_and_counted() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let url = redis.url();
        let (mut admin, bus) = admin_and_bus(&url).await;
        let applied = Arc::new(AtomicUsize::new(0));
        let counter = applied.clone();
        let handler: Handler = Arc::new(move |payload: Bytes, _fence: Option<Fence>| {
            counter.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move { payload }) as BoxFuture<'static, Bytes>
        });
        let metrics = Registry::new();
        let server = RpcServer::new(&url, "core-a", Duration::from_secs(30), key(), &metrics);
        let shutdown = CancellationToken::new();
        tokio::spawn(server.run(bus.clone(), handler, shutdown.clone()));
        let caller = RpcClient::connect(&url, bus.as_ref(), "gw-1", key(), &Registry::new())
            .await
            .unwrap();
        // Whoever can write to Redis pushes a well-formed request: once
        // without a tag, once sealed with another key.
        let forged = super::super::envelope::Envelope {
            id: 1,
            reply_to: "rpc-reply.gw-1".into(),
            deadline_ms: super::super::envelope::now_ms() + 30_000,
            shard: None,
            payload: Bytes::from_static(b"act as anyone"),
        }
        .encode();
        let other = TierKey::new(&[8; 32]).unwrap();
        for raw in [
            forged.clone(),
            other.seal(crate::tier_key::Domain::Request, "sa:rq", &forged),
        ] {
            let _: () = admin.lpush("sa:rq:any", raw.as_ref()).await.unwrap();
        }
        // The genuine request, behind both in the list, is answered: by then
        // both forgeries have been taken, and neither was applied.
        let answer = caller
            .call(
                Route::Any,
                Bytes::from_static(b"real"),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert_eq!(answer, Bytes::from_static(b"real"));
        assert_eq!(applied.load(Ordering::SeqCst), 1);
        assert!(
            metrics
                .render()
                .contains("rpc_requests_unauthenticated_total 2"),
            "{}",
            metrics.render()
        );
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_list_no_core_serves_keeps_only_its_newest_requests() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let url = redis.url();
        let (mut admin, bus) = admin_and_bus(&url).await;
        // No core runs: every request waits in its list until it times out.
        let caller = RpcClient::connect(&url, bus.as_ref(), "gw-1", key(), &Registry::new())
            .await
            .unwrap()
            .with_max_waiting(3);
        for _ in 0..5 {
            let unanswered = caller
                .call(
                    Route::Shard(2),
                    Bytes::from_static(b"w"),
                    Duration::from_millis(10),
                )
                .await;
            assert!(matches!(unanswered, Err(RpcError::Timeout(_))));
        }
        let waiting: usize = admin.llen("sa:rq:2").await.unwrap();
        assert_eq!(waiting, 3);
    }
}
