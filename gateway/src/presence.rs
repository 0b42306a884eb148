//! Who is online: the devices of a user that hold a session somewhere, and when
//! the user was last seen.
//!
//! A gateway marks each of its sessions online until `now + ttl` when the
//! session opens and again every `ttl / 3` while it lives, and offline when it
//! closes. A gateway that crashes stops refreshing, so its sessions count as
//! offline at most `ttl` after its last refresh. [`LocalPresence`] keeps this in
//! memory for the one-process tier; [`RedisPresence`] keeps it in Redis, where
//! every gateway writes and the core reads:
//!
//! - `sa:pr:<user>`: a sorted set of device keys (`<node>/<connection>`) scored
//!   by the time their mark expires, in ms; the key itself expires with its last
//!   member;
//! - `sa:seen:<user>`: the time of the user's last refresh or disconnect, kept
//!   for [`LAST_SEEN_KEEP`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use redis::aio::ConnectionManager;

use superapp_kit::BoxFuture;
use superapp_kit::clock::SharedClock;
use superapp_kit::redis_conn;
use superapp_proto::UserId;

/// How long a user's last-seen time is kept after they were last online.
pub const LAST_SEEN_KEEP: Duration = Duration::from_secs(90 * 24 * 3600);
/// Refreshes sent to Redis in one pipeline.
const PIPELINE: usize = 512;

/// One session, as presence knows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Device {
    pub user_id: UserId,
    /// Unique across processes: `<node>/<connection>`.
    pub key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Devices online now.
    pub devices: u32,
    /// Now, while online; else the last time a device was seen; None if never
    /// (or longer ago than [`LAST_SEEN_KEEP`]).
    pub last_seen_ms: Option<i64>,
}

pub trait Presence: Send + Sync + 'static {
    /// Marks the devices online until now + ttl.
    fn refresh(&self, devices: Vec<Device>) -> BoxFuture<'_, Result<(), String>>;
    /// The device's session closed.
    fn offline(&self, device: Device) -> BoxFuture<'_, Result<(), String>>;
    fn lookup(&self, user_id: UserId) -> BoxFuture<'_, Result<Seen, String>>;
    /// How long a mark lasts without a refresh.
    fn ttl(&self) -> Duration;
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

#[derive(Default)]
struct LocalState {
    /// user -> device key -> expiry ms.
    online: HashMap<UserId, HashMap<String, i64>>,
    last_seen: HashMap<UserId, i64>,
}

/// Presence of the one-process tier, in memory.
pub struct LocalPresence {
    clock: SharedClock,
    ttl: Duration,
    state: Mutex<LocalState>,
}

impl LocalPresence {
    pub fn new(clock: SharedClock, ttl: Duration) -> Self {
        Self {
            clock,
            ttl,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LocalState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Presence for LocalPresence {
    fn refresh(&self, devices: Vec<Device>) -> BoxFuture<'_, Result<(), String>> {
        let now = self.clock.now_ms();
        let expires = now.saturating_add(ttl_ms(self.ttl));
        let mut state = self.state();
        for d in devices {
            state
                .online
                .entry(d.user_id)
                .or_default()
                .insert(d.key, expires);
            state.last_seen.insert(d.user_id, now);
        }
        Box::pin(async { Ok(()) })
    }

    fn offline(&self, device: Device) -> BoxFuture<'_, Result<(), String>> {
        let now = self.clock.now_ms();
        let mut state = self.state();
        if let Some(devices) = state.online.get_mut(&device.user_id) {
            devices.remove(&device.key);
            if devices.is_empty() {
                state.online.remove(&device.user_id);
            }
        }
        state.last_seen.insert(device.user_id, now);
        Box::pin(async { Ok(()) })
    }

    fn lookup(&self, user_id: UserId) -> BoxFuture<'_, Result<Seen, String>> {
        let now = self.clock.now_ms();
        let mut state = self.state();
        let devices = match state.online.get_mut(&user_id) {
            Some(devices) => {
                devices.retain(|_, expires| *expires > now);
                devices.len() as u32
            }
            None => 0,
        };
        if devices == 0 {
            state.online.remove(&user_id);
        }
        let last_seen_ms = if devices > 0 {
            Some(now)
        } else {
            state.last_seen.get(&user_id).copied()
        };
        Box::pin(async move {
            Ok(Seen {
                devices,
                last_seen_ms,
            })
        })
    }

    fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// Presence of the medium and large tiers, in Redis.
pub struct RedisPresence {
    conn: ConnectionManager,
    clock: SharedClock,
    ttl: Duration,
}

impl RedisPresence {
    pub async fn connect(
        url: &str,
        clock: SharedClock,
        ttl: Duration,
    ) -> Result<Self, redis::RedisError> {
        let conn = redis_conn::manager(&redis::Client::open(url)?).await?;
        Ok(Self { conn, clock, ttl })
    }

    /// Runs `pipe`, once more if the pooled connection was stale: every
    /// presence command sets, removes or reads, so twice is harmless.
    async fn query<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, String> {
        redis_conn::retry_if_stale(
            &self.conn,
            |mut c| async move { pipe.query_async(&mut c).await },
        )
        .await
        .map_err(|e| e.to_string())
    }
}

fn online_key(user_id: UserId) -> String {
    format!("sa:pr:{user_id}")
}

fn seen_key(user_id: UserId) -> String {
    format!("sa:seen:{user_id}")
}

impl Presence for RedisPresence {
    fn refresh(&self, devices: Vec<Device>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let now = self.clock.now_ms();
            let ttl = ttl_ms(self.ttl);
            let keep = ttl_ms(LAST_SEEN_KEEP);
            for chunk in devices.chunks(PIPELINE) {
                let mut pipe = redis::pipe();
                for d in chunk {
                    let key = online_key(d.user_id);
                    pipe.zadd(&key, &d.key, now.saturating_add(ttl))
                        .ignore()
                        .pexpire(&key, ttl)
                        .ignore()
                        .pset_ex(seen_key(d.user_id), now, keep as u64)
                        .ignore();
                }
                self.query::<()>(&pipe).await?;
            }
            Ok(())
        })
    }

    fn offline(&self, device: Device) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let now = self.clock.now_ms();
            let mut pipe = redis::pipe();
            pipe.zrem(online_key(device.user_id), &device.key)
                .ignore()
                .pset_ex(seen_key(device.user_id), now, ttl_ms(LAST_SEEN_KEEP) as u64)
                .ignore();
            self.query(&pipe).await
        })
    }

    fn lookup(&self, user_id: UserId) -> BoxFuture<'_, Result<Seen, String>> {
        Box::pin(async move {
            let now = self.clock.now_ms();
            let key = online_key(user_id);
            // Marks that expired (a crashed gateway's) go first, atomically.
            let mut pipe = redis::pipe();
            pipe.atomic()
                .zrembyscore(&key, "-inf", now)
                .ignore()
                .zcard(&key)
                .get(seen_key(user_id));
            let (devices, seen): (u32, Option<i64>) = self.query(&pipe).await?;
            Ok(Seen {
                devices,
                last_seen_ms: if devices > 0 { Some(now) } else { seen },
            })
        })
    }

    fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// The behaviour every [`Presence`] must show, on a clock the test moves.
#[cfg(test)]
pub(crate) mod contract {
    use std::sync::Arc;

    use super::*;
    use superapp_kit::clock::{Clock as _, ManualClock};

    pub async fn run(presence: &dyn Presence, clock: &ManualClock) {
        let user = UserId(7);
        let phone = Device {
            user_id: user,
            key: "node-a/1".into(),
        };
        let laptop = Device {
            user_id: user,
            key: "node-b/9".into(),
        };
        assert_eq!(
            presence.lookup(user).await.unwrap(),
            Seen {
                devices: 0,
                last_seen_ms: None
            }
        );
        presence
            .refresh(vec![phone.clone(), laptop.clone()])
            .await
            .unwrap();
        let seen = presence.lookup(user).await.unwrap();
        assert_eq!(seen.devices, 2);
        assert_eq!(seen.last_seen_ms, Some(clock.now_ms()));

        // A closed session goes at once.
        clock.advance_ms(1_000);
        presence.offline(laptop).await.unwrap();
        assert_eq!(presence.lookup(user).await.unwrap().devices, 1);

        // A session nobody refreshes (its gateway crashed) expires after the ttl.
        let last_refresh = clock.now_ms();
        presence.refresh(vec![phone]).await.unwrap();
        clock.advance_ms(ttl_ms(presence.ttl()) + 1);
        assert_eq!(
            presence.lookup(user).await.unwrap(),
            Seen {
                devices: 0,
                last_seen_ms: Some(last_refresh)
            }
        );
    }

    #[tokio::test]
    async fn local_presence_meets_the_contract() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let presence = LocalPresence::new(clock.clone(), Duration::from_secs(30));
        run(&presence, &clock).await;
    }

    #[tokio::test]
    async fn redis_presence_meets_the_contract() {
        let Some(redis) = superapp_kit::testkit::RedisServer::start() else {
            return;
        };
        let clock = Arc::new(ManualClock::new(1_000_000));
        let presence = RedisPresence::connect(&redis.url(), clock.clone(), Duration::from_secs(30))
            .await
            .unwrap();
        run(&presence, &clock).await;
    }
}
