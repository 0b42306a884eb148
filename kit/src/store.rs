//! What every room's storage trait shares, whatever the engine behind it.
//!
//! A storage trait speaks the room's terms and fails with [`StoreError`],
//! which names no engine's types: a SQLite, PostgreSQL or ScyllaDB backend
//! implements the same trait honestly, and callers branch on the same
//! variants. A rule the store refuses (a full group, a stale fence) is not a
//! `StoreError` but the room's own outcome.

/// The lease under which a core writes a shard of conversations: the shard,
/// and the fencing number its lease was taken with (numbers only grow). A
/// store that has seen a higher number for the shard refuses the write with
/// [`StoreError::Fenced`], so a core that lost its lease without noticing
/// cannot write behind the new owner's back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    pub shard: u32,
    pub token: u64,
}

/// A storage operation failed for a reason of the engine's, not the caller's.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The engine reported an error (I/O, a constraint the code did not
    /// expect, a lost connection); the operation did not take effect.
    #[error("{engine}: {source}")]
    Backend {
        engine: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The store was shut down, or its writer is gone.
    #[error("the store is closed")]
    Closed,
    /// More writes are waiting than the store accepts, and none left the
    /// queue within its deadline: the operation did not run; retry later.
    #[error("the store has too many writes waiting")]
    Busy,
    /// A write carried a fencing number lower than one the store has already
    /// seen for the same shard: a newer owner holds it, and this writer must
    /// stop (see `docs/architecture.md`, "Fencing").
    #[error("shard {shard} is fenced at {high_water}; this writer holds {fence}")]
    Fenced {
        shard: u32,
        fence: u64,
        high_water: u64,
    },
}

impl StoreError {
    pub fn backend(
        engine: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Backend {
            engine,
            source: source.into(),
        }
    }
}
