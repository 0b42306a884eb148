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
//!
//! - `envelope`: the wire form of a request and of its answer, and their codec.
//! - `client`: [`RpcClient`], the gateway's side.
//! - `server`: [`RpcServer`], the core's side, which answers what it may apply.
//! - `lease`: the shard leases a core keeps, and [`CoreLease`], the right to
//!   be the core at all.

mod client;
// Public only to the fuzz targets (fuzz/), which feed it untrusted bytes.
#[cfg(feature = "fuzzing")]
pub mod envelope;
#[cfg(not(feature = "fuzzing"))]
mod envelope;
mod lease;
mod server;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::BoxFuture;
use crate::store::Fence;

pub use client::{DEFAULT_MAX_WAITING, RpcClient};
pub use lease::{CoreLease, FenceFloor, no_floor};
pub use server::RpcServer;

/// Shards of conversation-ordered requests.
pub const SHARDS: u32 = 16;
const ANY_QUEUE: &str = "sa:rq:any";
/// The name requests are sealed under (`tier_key`), whichever list holds them.
const REQUESTS: &str = "sa:rq";

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
    #[error("the answer may have been lost while the reply subscription reconnected")]
    AnswerLost,
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Ordered with everything else of this shard (a conversation's writes).
    Shard(u32),
    /// Any core may answer (reads, authentication).
    Any,
}

/// Handles one request's payload; `fence` is the shard's lease when the
/// request is shard-ordered, for the store to check (see [`Fence`]).
pub type Handler = Arc<dyn Fn(Bytes, Option<Fence>) -> BoxFuture<'static, Bytes> + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(shard_of("d.1.2"), shard_of("d.1.2"));
        let used: std::collections::HashSet<u32> = (0..200)
            .map(|i| shard_of(&format!("d.{i}.{}", i + 1)))
            .collect();
        assert!(used.len() > SHARDS as usize / 2);
    }
}
