//! The wallet's background work, safe when every core node runs it at once:
//! expiry of transfers and red packets (each applied as a command whose
//! rule refuses it before its time and after its first success, so the
//! money goes back exactly once, never early), and the sweep of old
//! idempotency keys and callback nonces.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Wallet;
use crate::error::WalletError;
use crate::model::Command;

/// Expired transfers and packets taken per pass and kind.
const BATCH: u32 = 256;
/// How often old keys and nonces are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(3_600);

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

    /// Runs the expiry job every `expiry_scan_ms` and the sweep every hour
    /// until `shutdown`.
    pub fn spawn_jobs(self: &Arc<Self>, tracker: &TaskTracker, shutdown: CancellationToken) {
        let wallet = self.clone();
        let every = Duration::from_millis(self.config.expiry_scan_ms);
        tracker.spawn(async move {
            let mut expiry = tokio::time::interval(every);
            expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut sweep = tokio::time::interval(SWEEP_EVERY);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = expiry.tick() => {
                        if let Err(e) = wallet.expire_due().await {
                            tracing::warn!(error = %e, "the wallet's expiry pass failed; it runs again");
                        }
                    }
                    _ = sweep.tick() => {
                        let keep = i64::try_from(wallet.config.key_retention_secs * 1000).unwrap_or(i64::MAX);
                        match wallet.store.sweep(wallet.clock.now_ms(), keep).await {
                            Ok(swept) => tracing::debug!(swept, "swept old idempotency keys and nonces"),
                            Err(e) => tracing::warn!(error = %e, "the wallet's sweep failed; it runs again"),
                        }
                    }
                }
            }
        });
    }
}
