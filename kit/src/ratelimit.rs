//! Rate limits: a token bucket for one holder ([`TokenBucket`]), and limits
//! shared by every process that serves a key ([`RateLimiter`]), such as one
//! user's devices spread over several gateways.
//!
//! [`LocalLimiter`] keeps the buckets in memory (the one-process tier).
//! [`RedisLimiter`] keeps them in Redis as GCRA theoretical arrival times
//! (`sa:rl:<key>`, one number per key, expiring once the bucket is full again),
//! decided by one Lua script on Redis's own clock, so gateways with skewed
//! clocks still share one budget. If Redis cannot answer, the Redis limiter
//! admits: the per-session bucket still bounds each connection, and refusing
//! every user during an outage would be worse than a short overspend.

use std::collections::HashMap;
use std::sync::Mutex;
#[cfg(feature = "redis")]
use std::time::Duration;

#[cfg(feature = "redis")]
use redis::aio::ConnectionManager;
use tokio::time::Instant;

use crate::BoxFuture;

/// A token bucket: `rate` per second sustained, `burst` at once.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: f64::from(rate.max(1)),
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Takes a token, or says how many milliseconds until one is available.
    pub fn take(&mut self) -> Result<(), u64> {
        self.take_n(1)
    }

    /// Takes `cost` tokens (at most the whole burst, so that every cost can
    /// be paid once the bucket is full), or says how many milliseconds until
    /// that many are available.
    pub fn take_n(&mut self, cost: u32) -> Result<(), u64> {
        self.refill();
        let cost = f64::from(cost.max(1)).min(self.burst);
        if self.tokens >= cost {
            self.tokens -= cost;
            Ok(())
        } else {
            Err((((cost - self.tokens) / self.rate) * 1000.0)
                .ceil()
                .max(1.0) as u64)
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
    }

    fn is_full(&mut self) -> bool {
        self.refill();
        self.tokens >= self.burst
    }
}

/// A limit shared by everyone who takes from the same key.
pub trait RateLimiter: Send + Sync + 'static {
    /// Takes `cost` tokens from `key`'s bucket (at most the whole burst), or
    /// says how many milliseconds until that many are available. A costly
    /// request pays more of the same budget than a cheap one.
    fn take_n<'a>(&'a self, key: &'a str, cost: u32) -> BoxFuture<'a, Result<(), u64>>;

    /// Takes one token from `key`'s bucket, or says how many milliseconds
    /// until one is available.
    fn take<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), u64>> {
        self.take_n(key, 1)
    }
}

/// Buckets in memory, one per key; full buckets are forgotten now and then,
/// so the map holds only keys that were busy lately.
pub struct LocalLimiter {
    rate: u32,
    burst: u32,
    buckets: Mutex<(HashMap<String, TokenBucket>, usize)>,
}

impl LocalLimiter {
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate,
            burst,
            buckets: Mutex::new((HashMap::new(), 1_024)),
        }
    }
}

impl RateLimiter for LocalLimiter {
    fn take_n<'a>(&'a self, key: &'a str, cost: u32) -> BoxFuture<'a, Result<(), u64>> {
        let mut guard = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (buckets, prune_at) = &mut *guard;
        if buckets.len() >= *prune_at {
            buckets.retain(|_, b| !b.is_full());
            *prune_at = (buckets.len() * 2).max(1_024);
        }
        let outcome = match buckets.get_mut(key) {
            Some(bucket) => bucket.take_n(cost),
            None => {
                let mut bucket = TokenBucket::new(self.rate, self.burst);
                let outcome = bucket.take_n(cost);
                buckets.insert(key.to_string(), bucket);
                outcome
            }
        };
        Box::pin(async move { outcome })
    }
}

#[cfg(feature = "redis")]
/// GCRA: a key's value is its theoretical arrival time in µs on Redis's clock;
/// a request of cost `c` moves it `c` intervals on. Answers 0 when admitted,
/// else the milliseconds to wait.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allowed_at = tat + cost * interval - burst * interval
if now < allowed_at then
  return math.max(1, math.ceil((allowed_at - now) / 1000))
end
tat = tat + cost * interval
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
return 0
";

/// Buckets in Redis, shared by every process that uses the same Redis.
#[cfg(feature = "redis")]
pub struct RedisLimiter {
    conn: ConnectionManager,
    script: redis::Script,
    interval_us: u64,
    burst: u32,
    timeout: Duration,
}

#[cfg(feature = "redis")]
impl RedisLimiter {
    pub async fn connect(
        url: &str,
        rate: u32,
        burst: u32,
        timeout: Duration,
    ) -> Result<Self, redis::RedisError> {
        let conn = crate::redis_conn::manager(&redis::Client::open(url)?).await?;
        Ok(Self {
            conn,
            script: redis::Script::new(GCRA),
            interval_us: 1_000_000 / u64::from(rate.max(1)),
            burst: burst.max(1),
            timeout,
        })
    }
}

#[cfg(feature = "redis")]
impl RateLimiter for RedisLimiter {
    fn take_n<'a>(&'a self, key: &'a str, cost: u32) -> BoxFuture<'a, Result<(), u64>> {
        Box::pin(async move {
            let mut call = self.script.prepare_invoke();
            call.key(format!("sa:rl:{key}"))
                .arg(self.interval_us)
                .arg(self.burst)
                .arg(cost.clamp(1, self.burst));
            // A try that met a stale connection never reached Redis, or
            // counts a request twice at worst.
            let call = &call;
            let taken = crate::redis_conn::retry_if_stale(&self.conn, |mut c| async move {
                call.invoke_async::<u64>(&mut c).await
            });
            match tokio::time::timeout(self.timeout, taken).await {
                Ok(Ok(0)) => Ok(()),
                Ok(Ok(wait_ms)) => Err(wait_ms),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "shared rate limit unavailable; admitting");
                    Ok(())
                }
                Err(_) => {
                    tracing::warn!("shared rate limit timed out; admitting");
                    Ok(())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_bucket_allows_its_burst_then_its_rate() {
        let mut b = TokenBucket::new(10, 3);
        assert!(b.take().is_ok() && b.take().is_ok() && b.take().is_ok());
        assert_eq!(b.take(), Err(100));
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(b.take().is_ok());
        assert!(b.take().is_err());
    }

    /// Two limiters on one key share one budget; other keys are untouched.
    async fn shared_budget(a: &dyn RateLimiter, b: &dyn RateLimiter) {
        let mut admitted = 0;
        for i in 0..20 {
            let limiter = if i % 2 == 0 { a } else { b };
            if limiter.take("u.1").await.is_ok() {
                admitted += 1;
            }
        }
        // A burst of 5 at 1 per second: the 20 quick takes admit 5, maybe 6.
        assert!((5..=6).contains(&admitted), "admitted {admitted}");
        let wait = a.take("u.1").await.unwrap_err();
        assert!((1..=1_000).contains(&wait), "wait {wait}");
        assert!(b.take("u.2").await.is_ok());
    }

    /// A request of cost 3 pays three of the key's tokens; one costing more
    /// than the burst pays the whole burst.
    async fn costs(limiter: &dyn RateLimiter) {
        assert!(limiter.take_n("u.1", 3).await.is_ok());
        assert!(limiter.take_n("u.1", 3).await.is_ok());
        let wait = limiter.take_n("u.1", 3).await.unwrap_err();
        assert!(
            (2_000..=3_000).contains(&wait),
            "three tokens at 1/s: {wait}"
        );
        assert!(limiter.take_n("u.2", 1_000).await.is_ok());
        assert!(limiter.take("u.2").await.is_err());
    }

    #[tokio::test]
    async fn a_local_limiter_charges_each_request_its_cost() {
        costs(&LocalLimiter::new(1, 6)).await;
    }

    #[tokio::test]
    async fn a_local_limiter_shares_a_key_between_its_callers() {
        let limiter = Arc::new(LocalLimiter::new(1, 5));
        shared_budget(limiter.as_ref(), limiter.as_ref()).await;
    }

    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn redis_limiters_share_a_key_across_processes() {
        let Some(redis) = crate::testkit::RedisServer::start() else {
            return;
        };
        let timeout = Duration::from_secs(2);
        let a = RedisLimiter::connect(&redis.url(), 1, 5, timeout)
            .await
            .unwrap();
        let b = RedisLimiter::connect(&redis.url(), 1, 5, timeout)
            .await
            .unwrap();
        shared_budget(&a, &b).await;
    }

    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn a_redis_limiter_charges_each_request_its_cost() {
        let Some(redis) = crate::testkit::RedisServer::start() else {
            return;
        };
        let limiter = RedisLimiter::connect(&redis.url(), 1, 6, Duration::from_secs(2))
            .await
            .unwrap();
        costs(&limiter).await;
    }

    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn a_redis_limiter_admits_while_redis_is_down() {
        let Some(mut redis) = crate::testkit::RedisServer::start() else {
            return;
        };
        let limiter = RedisLimiter::connect(&redis.url(), 1, 1, Duration::from_millis(500))
            .await
            .unwrap();
        assert!(limiter.take("u.1").await.is_ok());
        assert!(limiter.take("u.1").await.is_err());
        redis.kill();
        assert!(limiter.take("u.1").await.is_ok());
    }
}
