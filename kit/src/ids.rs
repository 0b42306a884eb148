//! 64-bit ids, unique across nodes and roughly ordered by time.
//!
//! Layout: 41 bits of milliseconds since 2026-01-01, 10 bits of node id, 12 bits of
//! sequence within the millisecond. Ids exceed 2^53, so they travel as strings in JSON.

use std::sync::Mutex;

use crate::clock::SharedClock;

const EPOCH_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const NODE_BITS: u32 = 10;
const SEQ_BITS: u32 = 12;

pub struct IdGen {
    node: u64,
    clock: SharedClock,
    /// (last millisecond used, sequence within it). A mutex rather than an atomic
    /// because both must move together; it is never held across an await.
    state: Mutex<(i64, u64)>,
}

impl IdGen {
    pub fn new(node: u16, clock: SharedClock) -> Self {
        Self {
            node: u64::from(node) & ((1 << NODE_BITS) - 1),
            clock,
            state: Mutex::new((0, 0)),
        }
    }

    pub fn next(&self) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = (self.clock.now_ms() - EPOCH_MS).max(0);
        // Never go backwards: if the clock steps back, keep counting in the last
        // millisecond and borrow from the future once the sequence runs out.
        let (mut ms, mut seq) = *state;
        if now > ms {
            ms = now;
            seq = 0;
        } else {
            seq += 1;
            if seq >= 1 << SEQ_BITS {
                ms += 1;
                seq = 0;
            }
        }
        *state = (ms, seq);
        ((ms as u64) << (NODE_BITS + SEQ_BITS)) | (self.node << SEQ_BITS) | seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    #[test]
    fn ids_strictly_increase_even_when_the_clock_stands_still() {
        let ids = IdGen::new(1, Arc::new(ManualClock::new(EPOCH_MS + 5)));
        let mut last = 0;
        for _ in 0..10_000 {
            let id = ids.next();
            assert!(id > last);
            last = id;
        }
    }
}
