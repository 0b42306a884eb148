//! Plumbing every room shares. Nothing here knows about a product feature:
//! rooms own their types, rules, configuration sections and tokens.
//!
//! Always built:
//! - [`config`]: loading a typed configuration from defaults, a TOML file and
//!   `SUPERAPP_*` environment variables, with unknown keys refused.
//! - [`bus`]: the publish/subscribe seam every live delivery goes through, with the
//!   in-process implementation of the small tier.
//! - [`store`]: [`store::StoreError`], the engine-neutral failure of every storage
//!   trait, and [`store::Fence`], a shard writer's lease.
//! - [`ids`], [`clock`]: id generation and time, passed as handles, never global.
//! - [`metrics`]: counters, gauges and histograms rendered for Prometheus.
//! - [`ratelimit`]: token buckets, and limits shared across processes.
//! - [`secret`]: a wrapper that never prints its contents.
//!
//! Engine adapters, each behind a feature that a room not using the engine
//! leaves off:
//! - `sqlite`: [`sqlite`], one writer thread per database file with group
//!   commit, a reader pool, and versioned migrations.
//! - `redis`: [`redis_bus`], the Redis pub/sub bus; [`rpc`], requests from
//!   gateways to the core over Redis, with shard leases; the Redis rate limiter;
//!   [`redis_conn`], pooled connections that recover quickly from a restart;
//!   [`tier_key`], the key that authenticates every message the tier's
//!   processes leave for each other in Redis.
//! - `postgres`: [`postgres`], a connection pool, versioned migrations per
//!   component, and transactions at a chosen isolation retried on
//!   serialization failures and deadlocks.
//! - `testkit` (tests only): [`testkit`], real servers (redis-server, a fresh
//!   PostgreSQL database) for the tests of every room.

pub mod bus;
pub mod clock;
pub mod config;
pub mod ids;
pub mod metrics;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod ratelimit;
#[cfg(feature = "redis")]
pub mod redis_bus;
#[cfg(feature = "redis")]
pub mod redis_conn;
#[cfg(feature = "redis")]
pub mod rpc;
pub mod secret;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod store;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
#[cfg(feature = "redis")]
pub mod tier_key;

/// The future a storage trait method returns, so the trait stays usable as a
/// trait object at the seams that vary by tier.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
