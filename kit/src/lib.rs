//! Plumbing every room shares. Nothing here knows about a product feature.
//!
//! - [`config`]: the one typed configuration, loaded from defaults, a TOML file and
//!   `SUPERAPP_*` environment variables.
//! - [`bus`]: the publish/subscribe seam every live delivery goes through, with the
//!   in-process implementation of the small tier.
//! - [`sqlite`]: one writer thread per database file with group commit, a reader pool,
//!   and versioned migrations.
//! - [`store`]: [`store::StoreError`], the engine-neutral failure of every storage trait.
//! - [`token`]: signed, short-lived access tokens.
//! - [`redis_bus`]: the Redis pub/sub bus of the medium and large tiers.
//! - [`rpc`]: requests from gateways to the core over Redis, with shard leases.
//! - [`ids`], [`clock`]: id generation and time, passed as handles, never global.
//! - [`metrics`]: counters, gauges and histograms rendered for Prometheus.
//! - [`presence`]: which devices of a user are online, and when they were last seen.
//! - [`ratelimit`]: token buckets, and limits shared across processes.
//! - [`testkit`]: real servers (redis-server) for the tests of every room.
//! - [`secret`]: a wrapper that never prints its contents.

pub mod bus;
pub mod clock;
pub mod config;
pub mod ids;
pub mod metrics;
pub mod presence;
pub mod ratelimit;
pub mod redis_bus;
pub mod rpc;
pub mod secret;
pub mod sqlite;
pub mod store;
pub mod testkit;
pub mod token;

/// The future a storage trait method returns, so the trait stays usable as a
/// trait object at the seams that vary by tier.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
