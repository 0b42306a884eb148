//! [`RedisNearbyIndex`]: people nearby in Redis, shared by every process of
//! the tier. Three kinds of key, all under the hash tag `{nb}` so that each
//! script's keys sit in one slot of a Redis Cluster:
//!
//! - `sa:{nb}:u:<user>`: the user's [`NearbyStanding`] as JSON, expiring when
//!   [`nearby::forget_at`] says it stops mattering;
//! - `sa:{nb}:geo`: a GEO set of every live cell's centre, member the user id;
//! - `sa:{nb}:exp`: a sorted set of the same members scored by when their
//!   position expires, in ms. GEO members have no lifetime of their own:
//!   every write and every search first removes up to [`TRIM`] expired
//!   members from both sets, in the same script, and a search answers none
//!   whose expiry has passed.
//!
//! A standing changes by compare-and-set: the standing is read, the
//! [`crate::policy::nearby`] function decides in Rust, and one script writes
//! the new standing (and the GEO set) only if the stored standing is still
//! the one read; otherwise it is read and decided again. So the rules are
//! written once, and two concurrent shares cannot both pass a cap that only
//! one may.

use redis::aio::ConnectionManager;
use superapp_kit::BoxFuture;
use superapp_kit::redis_conn;

use super::nearby::{nearest_first, rings};
use super::{NearbyIndex, StoreError};
use crate::NearbyError;
use crate::model::{Cell, Hit, NearbyStanding, UserId};
use crate::policy::nearby::{self, NearbyLimits};

const POSITIONS: &str = "sa:{nb}:geo";
const EXPIRIES: &str = "sa:{nb}:exp";
/// Expired members removed by one write or search.
const TRIM: usize = 256;
/// Compare-and-set attempts before a write gives up as busy: only the
/// user's own concurrent requests contend for their standing.
const ATTEMPTS: usize = 16;
/// More people fetched than a search asks for, so that one round usually
/// tells that nothing left out could be nearer.
const FETCH_MARGIN: usize = 16;
/// A search fetches at most this many positions from Redis in one round.
const MAX_FETCH: usize = 100_000;
/// Redis measures with its own Earth radius (6,372,797.56 m, 0.03 % more
/// than ours) from positions kept as 52-bit geohashes (within about a metre):
/// a search asks Redis for a little more than its radius, then measures
/// again between cell centres.
const REACH_FACTOR: f64 = 1.001;
const REACH_SLACK_M: f64 = 5.0;
/// Positions Redis orders within this many metres of each other may be in
/// either order; nothing closer to the cut than this is taken as settled.
const ORDER_SLACK_M: f64 = 4.0;

/// Replaces a standing if it is still the one read; changes the GEO set
/// as told; trims expired members. KEYS: standing, positions, expiries.
/// ARGV: the standing read ('' for none), the new one ('' to delete it),
/// its lifetime in ms, the member, `put` / `del` / `keep`, longitude,
/// latitude, expiry (ms), now (ms), the trim limit. Answers 1 when
/// written, 0 when the standing had changed.
const WRITE: &str = r"
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then
  return 0
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
if ARGV[5] == 'put' then
  redis.call('GEOADD', KEYS[2], ARGV[6], ARGV[7], ARGV[4])
  redis.call('ZADD', KEYS[3], ARGV[8], ARGV[4])
elseif ARGV[5] == 'del' then
  redis.call('ZREM', KEYS[2], ARGV[4])
  redis.call('ZREM', KEYS[3], ARGV[4])
end
local old = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[9], 'LIMIT', 0, tonumber(ARGV[10]))
if #old > 0 then
  redis.call('ZREM', KEYS[2], unpack(old))
  redis.call('ZREM', KEYS[3], unpack(old))
end
return 1
";

/// Trims expired members, then searches. KEYS: positions, expiries. ARGV:
/// now (ms), longitude, latitude, radius (m), count, the trim limit.
/// Answers every member found, nearest first as Redis measures, each as
/// {member, longitude, latitude, 1 if live else 0}.
const SEARCH: &str = r"
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[6]))
if #old > 0 then
  redis.call('ZREM', KEYS[1], unpack(old))
  redis.call('ZREM', KEYS[2], unpack(old))
end
local found = redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', ARGV[2], ARGV[3],
  'BYRADIUS', ARGV[4], 'm', 'ASC', 'COUNT', ARGV[5], 'WITHCOORD')
local now = tonumber(ARGV[1])
local answer = {}
for i, hit in ipairs(found) do
  local expires = redis.call('ZSCORE', KEYS[2], hit[1])
  local live = 0
  if expires and tonumber(expires) > now then
    live = 1
  end
  answer[i] = {hit[1], hit[2][1], hit[2][2], live}
end
return answer
";

fn standing_key(user: UserId) -> String {
    format!("sa:{{nb}}:u:{user}")
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::backend("redis", e)
}

/// What a write does to the GEO set.
enum Place {
    /// The standing's live cell goes in (or stays, with its new expiry).
    Put,
    /// The user's position goes.
    Remove,
    /// The GEO set is not touched.
    Keep,
}

/// People nearby in Redis, shared by every process of the tier.
pub struct RedisNearbyIndex {
    conn: ConnectionManager,
    write: redis::Script,
    search: redis::Script,
}

impl RedisNearbyIndex {
    pub async fn connect(url: &str) -> Result<Self, redis::RedisError> {
        let conn = redis_conn::manager(&redis::Client::open(url)?).await?;
        Ok(Self {
            conn,
            write: redis::Script::new(WRITE),
            search: redis::Script::new(SEARCH),
        })
    }

    /// Reads `user`'s standing, lets `decide` make the next one, and writes
    /// it if nobody wrote in between (else reads again). Answers what
    /// `decide` answered.
    async fn update<T>(
        &self,
        user: UserId,
        now_ms: i64,
        place: Place,
        decide: impl Fn(&NearbyStanding) -> Result<(NearbyStanding, T), NearbyError>,
    ) -> Result<T, NearbyError> {
        let key = standing_key(user);
        for _ in 0..ATTEMPTS {
            let read: Option<String> = redis_conn::retry_if_stale(&self.conn, |mut c| {
                let key = key.clone();
                async move { redis::cmd("GET").arg(key).query_async(&mut c).await }
            })
            .await
            .map_err(|e| NearbyError::Index(backend(e)))?;
            let read = read.unwrap_or_default();
            // A standing that does not read (written by something else) is
            // none; the compare-and-set still compares the bytes read.
            let current: NearbyStanding = serde_json::from_str(&read).unwrap_or_default();
            let (next, answer) = decide(&current)?;
            let forget_in = nearby::forget_at(&next).saturating_sub(now_ms);
            let encoded = if forget_in > 0 {
                serde_json::to_string(&next).map_err(|e| NearbyError::Index(backend(e)))?
            } else {
                String::new()
            };
            let (op, (lat, lon)) = match (&place, next.live_cell(now_ms)) {
                (Place::Put, Some(cell)) => ("put", nearby::centre(cell)),
                (Place::Put | Place::Remove, _) => ("del", (0.0, 0.0)),
                (Place::Keep, _) => ("keep", (0.0, 0.0)),
            };
            let mut call = self.write.prepare_invoke();
            call.key(&key)
                .key(POSITIONS)
                .key(EXPIRIES)
                .arg(&read)
                .arg(&encoded)
                .arg(forget_in.max(1))
                .arg(user.0)
                .arg(op)
                .arg(lon)
                .arg(lat)
                .arg(next.expires_ms)
                .arg(now_ms)
                .arg(TRIM);
            let call = &call;
            let written: i64 = redis_conn::retry_if_stale(&self.conn, |mut c| async move {
                call.invoke_async(&mut c).await
            })
            .await
            .map_err(|e| NearbyError::Index(backend(e)))?;
            if written == 1 {
                return Ok(answer);
            }
        }
        Err(NearbyError::Index(StoreError::Busy))
    }

    /// One round of a search: every member Redis finds within `reach_m` of
    /// `at`, at most `fetch`, as (user, cell, live).
    async fn fetch(
        &self,
        at: (f64, f64),
        reach_m: f64,
        fetch: usize,
        now_ms: i64,
    ) -> Result<Vec<(UserId, Cell, bool)>, StoreError> {
        let mut call = self.search.prepare_invoke();
        call.key(POSITIONS)
            .key(EXPIRIES)
            .arg(now_ms)
            .arg(at.1)
            .arg(at.0)
            .arg(reach_m)
            .arg(fetch)
            .arg(TRIM);
        let call = &call;
        let found: Vec<(String, String, String, i64)> =
            redis_conn::retry_if_stale(&self.conn, |mut c| async move {
                call.invoke_async(&mut c).await
            })
            .await
            .map_err(backend)?;
        Ok(found
            .into_iter()
            .filter_map(|(member, lon, lat, live)| {
                let user = UserId(member.parse().ok()?);
                let cell = nearby::snap(lat.parse().ok()?, lon.parse().ok()?);
                Some((user, cell, live == 1))
            })
            .collect())
    }
}

impl NearbyIndex for RedisNearbyIndex {
    fn share(
        &self,
        user: UserId,
        cell: Cell,
        now_ms: i64,
        limits: NearbyLimits,
    ) -> BoxFuture<'_, Result<NearbyStanding, NearbyError>> {
        Box::pin(self.update(user, now_ms, Place::Put, move |current| {
            let next = nearby::share(current, cell, now_ms, limits)?;
            Ok((next.clone(), next))
        }))
    }

    fn begin_query(
        &self,
        user: UserId,
        now_ms: i64,
        limits: NearbyLimits,
    ) -> BoxFuture<'_, Result<NearbyStanding, NearbyError>> {
        Box::pin(self.update(user, now_ms, Place::Keep, move |current| {
            let (_, next) = nearby::query(current, now_ms, limits)?;
            Ok((next.clone(), next))
        }))
    }

    fn clear(&self, user: UserId, now_ms: i64) -> BoxFuture<'_, Result<(), NearbyError>> {
        Box::pin(self.update(user, now_ms, Place::Remove, move |current| {
            Ok((nearby::clear(current, now_ms), ()))
        }))
    }

    fn search(
        &self,
        centre: Cell,
        radius_m: u32,
        count: usize,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<Hit>, StoreError>> {
        Box::pin(async move {
            if count == 0 {
                return Ok(Vec::new());
            }
            // Redis measures every member in the geohash boxes around the
            // circle, however few it answers: growing rings keep a search
            // where people are many to a small circle.
            let mut hits = Vec::new();
            for ring in rings(radius_m) {
                hits = self.search_within(centre, ring, count, now_ms).await?;
                if hits.len() >= count {
                    break;
                }
            }
            Ok(hits)
        })
    }
}

impl RedisNearbyIndex {
    /// [`NearbyIndex::search`] within one radius.
    async fn search_within(
        &self,
        centre: Cell,
        radius_m: u32,
        count: usize,
        now_ms: i64,
    ) -> Result<Vec<Hit>, StoreError> {
        {
            let at = nearby::centre(centre);
            let radius = f64::from(radius_m);
            let reach = radius * REACH_FACTOR + REACH_SLACK_M;
            let mut fetch = count.saturating_add(FETCH_MARGIN).min(MAX_FETCH);
            loop {
                let found = self.fetch(at, reach, fetch, now_ms).await?;
                let truncated = found.len() >= fetch;
                let farthest = found
                    .iter()
                    .map(|&(_, cell, _)| nearby::distance_m(centre, cell))
                    .fold(0.0, f64::max);
                let mut hits: Vec<Hit> = found
                    .into_iter()
                    .filter(|&(_, _, live)| live)
                    .map(|(user, cell, _)| Hit {
                        user,
                        cell,
                        distance_m: nearby::distance_m(centre, cell),
                    })
                    .filter(|hit| hit.distance_m <= radius)
                    .collect();
                nearest_first(&mut hits, count);
                // Redis stopped at `fetch`: what it left out is no nearer
                // than the farthest it answered, give or take its rounding.
                // The answer stands when that is beyond the last kept (or
                // the radius, when fewer than `count` were kept).
                let cut = if hits.len() >= count {
                    hits.last().map_or(radius, |h| h.distance_m)
                } else {
                    radius
                };
                if !truncated || farthest > cut + ORDER_SLACK_M || fetch >= MAX_FETCH {
                    return Ok(hits);
                }
                fetch = fetch.saturating_mul(4).min(MAX_FETCH);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use superapp_kit::testkit::RedisServer;

    use super::*;
    use crate::conformance::nearby as contract;

    async fn index(redis: &RedisServer) -> RedisNearbyIndex {
        RedisNearbyIndex::connect(&redis.url()).await.unwrap()
    }

    #[tokio::test]
    async fn the_redis_index_meets_the_nearby_contract() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        contract::nearby_index(&index(&redis).await).await;
    }

    #[tokio::test]
    async fn racing_moves_in_redis_pass_the_cap_no_further() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        contract::concurrent_moves(&index(&redis).await).await;
    }

    #[tokio::test]
    async fn the_redis_index_answers_as_the_model_over_a_random_walk() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        contract::nearby_matches_the_model(&index(&redis).await, 1).await;
    }

    #[tokio::test]
    async fn two_processes_share_one_index_and_keep_no_exact_position() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let (one, two) = (index(&redis).await, index(&redis).await);
        let limits = NearbyLimits::default();
        let now = 1_800_000_000_000;
        let exact = (31.230_416, 121.473_701);
        let cell = nearby::snap(exact.0, exact.1);
        one.share(UserId(1), cell, now, limits).await.unwrap();
        let hits = two.search(cell, 100, 10, now).await.unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!((hits[0].user, hits[0].cell), (UserId(1), cell));
        // What Redis holds is the cell's centre, not the position shared.
        let mut admin = redis::Client::open(redis.url()).unwrap();
        let kept: Vec<Option<(f64, f64)>> = redis::cmd("GEOPOS")
            .arg(POSITIONS)
            .arg(1)
            .query(&mut admin)
            .unwrap();
        let (lon, lat) = kept[0].unwrap();
        let centre = nearby::centre(cell);
        assert!(nearby::distance_between((lat, lon), centre) < 1.0);
        assert!(nearby::distance_between((lat, lon), exact) > 1.0);
        two.clear(UserId(1), now).await.unwrap();
        assert!(one.search(cell, 100, 10, now).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn expired_members_leave_redis_as_writes_and_searches_meet_them() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let index = index(&redis).await;
        let limits = NearbyLimits::default();
        let now = 1_800_000_000_000;
        let here = nearby::snap(30.6, 104.0);
        for user in 1..=600 {
            index.share(UserId(user), here, now, limits).await.unwrap();
        }
        let mut admin = redis::Client::open(redis.url()).unwrap();
        let mut held =
            |key: &str| -> usize { redis::cmd("ZCARD").arg(key).query(&mut admin).unwrap() };
        assert_eq!((held(POSITIONS), held(EXPIRIES)), (600, 600));
        let later = now + limits.ttl_ms;
        // However many expired, a search (one radius, no rings) answers none of them.
        assert!(index.search(here, 100, 10, later).await.unwrap().is_empty());
        assert_eq!(held(POSITIONS), 600 - 2 * TRIM);
        index.search(here, 100, 10, later).await.unwrap();
        assert_eq!((held(POSITIONS), held(EXPIRIES)), (0, 0));
    }
}
