//! The wallet's background work, which the binary runs on a timer, safe
//! when every core node runs it at once:
//! expiry of transfers and red packets (each applied as a command whose
//! rule refuses it before its time and after its first success, so the
//! money goes back exactly once, never early), and the sweep of old
//! idempotency keys and callback nonces.

use super::Wallet;
use crate::error::WalletError;
use crate::model::Command;

/// Expired transfers and packets taken per pass and kind.
const BATCH: u32 = 256;

impl Wallet {
    /// One pass of the expiry job: returns every expired transfer and the
    /// rest of every expired packet to its sender. Answers how many it
    /// settled (another node's pass may have settled some of those due).
    pub async fn expire_due(&self) -> Result<u32, WalletError> {
        let now = self.clock.now_ms();
        let mut settled = 0;
        for id in self.store.due_transfers(now, BATCH).await? {
            match self.apply(Command::ExpireTransfer { id }, None).await {
                Ok(applied) => {
                    settled += 1;
                    self.tell_balances(&applied);
                    if let Some(transfer) = &applied.transfer {
                        self.cards().transfer(transfer, transfer.from).await?;
                    }
                }
                Err(WalletError::NothingToDo { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        for id in self.store.due_packets(now, BATCH).await? {
            match self.apply(Command::RefundPacket { id }, None).await {
                Ok(applied) => {
                    settled += 1;
                    self.tell_balances(&applied);
                    if let Some(packet) = &applied.packet {
                        self.cards().refunded(packet);
                    }
                }
                Err(WalletError::NothingToDo { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(settled)
    }

    /// Deletes idempotency keys and callback nonces older than
    /// `key_retention_secs`; answers how many went.
    pub async fn sweep_keys(&self) -> Result<u64, WalletError> {
        let keep =
            i64::try_from(self.config.key_retention_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        self.store.sweep(self.clock.now_ms(), keep).await
    }
}
