//! The `[wallet]` section of the configuration: its keys, defaults and
//! checks. Amounts are in fen (1/100 yuan).

use serde::{Deserialize, Serialize};
use superapp_kit::config::ConfigError;
use superapp_kit::secret::Secret;

use crate::model::{Fen, OutLimits};
use crate::policy::PacketLimits;

const YUAN: Fen = 100;
const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WalletConfig {
    /// PostgreSQL holds the ledger when set (`postgres://user:pass@host/db`);
    /// unset, a SQLite file in the data dir. Never printed.
    pub postgres_url: Option<Secret<String>>,
    /// Connections in the PostgreSQL pool (1 to 256).
    pub postgres_pool: u32,
    /// Largest transfer, red packet or withdrawal, in fen.
    pub per_operation_fen: Fen,
    /// Most money out of one wallet per day, in fen.
    pub daily_out_fen: Fen,
    /// Most outgoing payments of one wallet per day.
    pub daily_out_count: u32,
    /// An account younger than this many days has the lower limits below.
    pub new_account_days: u32,
    /// Largest single payment of a new account, in fen.
    pub new_account_per_operation_fen: Fen,
    /// Most money out of a new account's wallet per day, in fen.
    pub new_account_daily_out_fen: Fen,
    /// Outgoing payments one wallet may make in a burst (velocity limit);
    /// refilled at `velocity_per_sec`. One more is refused with `too_fast`.
    pub velocity_burst: u32,
    /// Outgoing payments per second one wallet may sustain.
    pub velocity_per_sec: u32,
    /// Without a verified real name, a wallet holds at most this, in fen:
    /// a credit beyond it (an accepted transfer, a grab, a top-up) is
    /// refused with `real_name_required`. Withdrawals always need one.
    pub unverified_balance_fen: Fen,
    /// Largest red packet, in fen.
    pub packet_max_fen: Fen,
    /// Largest share of a red packet, in fen.
    pub share_max_fen: Fen,
    /// Most shares of one red packet (and never more than the group's
    /// members).
    pub packet_max_count: u32,
    /// How long a transfer waits for its recipient, and a red packet for
    /// its grabbers, in seconds, before the rest returns to the sender.
    pub expiry_secs: u64,
    /// How long payment-PIN tries stay locked after the fifth wrong one in
    /// a row, in seconds.
    pub pin_lock_secs: u64,
    /// How long idempotency keys and callback nonces are kept, in seconds
    /// (at least 86400: a retry within a day is always recognised).
    pub key_retention_secs: u64,
    /// How often the expiry job looks for expired transfers and packets, in
    /// milliseconds (100 to 60000): a refund comes at most this late.
    pub expiry_scan_ms: u64,
    /// The wallet's day for the daily limits: minutes east of UTC (480 is
    /// China Standard Time).
    pub day_offset_minutes: i32,
    /// The payment provider. Only `sandbox` exists: a simulated provider
    /// that behaves like a real one (docs/architecture.md, "Payment
    /// providers and the sandbox").
    pub provider: String,
    /// The key provider callbacks are signed with. Unset: a key file in the
    /// data dir, created on first start. Never printed.
    pub provider_secret: Option<Secret<String>>,
    /// How far a callback's timestamp may be from now, in seconds.
    pub callback_window_secs: u64,
    /// Where the provider sends callbacks; unset: this server's own
    /// `/v1/wallet/callback` on its bound address.
    pub callback_url: Option<String>,
    /// The sandbox pays a withdrawal out after this many milliseconds.
    pub sandbox_payout_delay_ms: u64,
    /// How many times the sandbox delivers each callback (real providers
    /// deliver some twice; a paid order is credited once however often).
    pub sandbox_deliveries: u32,
}

impl Default for WalletConfig {
    fn default() -> Self {
        Self {
            postgres_url: None,
            postgres_pool: 16,
            per_operation_fen: 50_000 * YUAN,
            daily_out_fen: 200_000 * YUAN,
            daily_out_count: 500,
            new_account_days: 7,
            new_account_per_operation_fen: 2_000 * YUAN,
            new_account_daily_out_fen: 5_000 * YUAN,
            velocity_burst: 20,
            velocity_per_sec: 1,
            unverified_balance_fen: 1_000 * YUAN,
            packet_max_fen: 200 * YUAN,
            share_max_fen: 200 * YUAN,
            packet_max_count: 100,
            expiry_secs: 86_400,
            pin_lock_secs: 3 * 3_600,
            key_retention_secs: 2 * 86_400,
            expiry_scan_ms: 1_000,
            day_offset_minutes: 480,
            provider: "sandbox".into(),
            provider_secret: None,
            callback_window_secs: 300,
            callback_url: None,
            sandbox_payout_delay_ms: 1_000,
            sandbox_deliveries: 1,
        }
    }
}

impl WalletConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive: [(&'static str, Fen); 8] = [
            ("wallet.per_operation_fen", self.per_operation_fen),
            ("wallet.daily_out_fen", self.daily_out_fen),
            (
                "wallet.new_account_per_operation_fen",
                self.new_account_per_operation_fen,
            ),
            (
                "wallet.new_account_daily_out_fen",
                self.new_account_daily_out_fen,
            ),
            ("wallet.unverified_balance_fen", self.unverified_balance_fen),
            ("wallet.packet_max_fen", self.packet_max_fen),
            ("wallet.share_max_fen", self.share_max_fen),
            ("wallet.daily_out_count", Fen::from(self.daily_out_count)),
        ];
        for (key, value) in positive {
            if value < 1 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        let ranges: [(&'static str, u64, u64, u64); 8] = [
            (
                "wallet.sandbox_deliveries",
                u64::from(self.sandbox_deliveries),
                1,
                10,
            ),
            (
                "wallet.postgres_pool",
                u64::from(self.postgres_pool),
                1,
                256,
            ),
            (
                "wallet.packet_max_count",
                u64::from(self.packet_max_count),
                1,
                6_000,
            ),
            ("wallet.expiry_secs", self.expiry_secs, 1, 30 * 86_400),
            ("wallet.pin_lock_secs", self.pin_lock_secs, 1, 30 * 86_400),
            (
                "wallet.key_retention_secs",
                self.key_retention_secs,
                86_400,
                365 * 86_400,
            ),
            ("wallet.expiry_scan_ms", self.expiry_scan_ms, 100, 60_000),
            (
                "wallet.callback_window_secs",
                self.callback_window_secs,
                10,
                86_400,
            ),
        ];
        for (key, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return Err(ConfigError::invalid(key, format!("must be {min} to {max}")));
            }
        }
        if self.velocity_burst == 0 || self.velocity_per_sec == 0 {
            return Err(ConfigError::invalid(
                "wallet.velocity_burst",
                "the velocity limits must be at least 1",
            ));
        }
        if !(-720..=840).contains(&self.day_offset_minutes) {
            return Err(ConfigError::invalid(
                "wallet.day_offset_minutes",
                "must be -720 to 840",
            ));
        }
        if self.provider != "sandbox" {
            return Err(ConfigError::invalid(
                "wallet.provider",
                "the only provider is \"sandbox\"",
            ));
        }
        Ok(())
    }

    /// The outgoing limits of an account created at `created_ms`, at `now_ms`.
    pub fn out_limits(&self, created_ms: i64, now_ms: i64) -> OutLimits {
        let young = now_ms - created_ms < i64::from(self.new_account_days) * DAY_MS;
        let (per_operation, daily_amount) = if young {
            (
                self.new_account_per_operation_fen
                    .min(self.per_operation_fen),
                self.new_account_daily_out_fen.min(self.daily_out_fen),
            )
        } else {
            (self.per_operation_fen, self.daily_out_fen)
        };
        OutLimits {
            day: self.day_of(now_ms),
            per_operation,
            daily_amount,
            daily_count: self.daily_out_count,
        }
    }

    /// Days since 1970-01-01 in the wallet's time zone.
    pub fn day_of(&self, now_ms: i64) -> i64 {
        (now_ms + i64::from(self.day_offset_minutes) * 60_000).div_euclid(DAY_MS)
    }

    pub fn packet_limits(&self) -> PacketLimits {
        PacketLimits {
            per_packet: self.packet_max_fen,
            per_share: self.share_max_fen,
            max_count: self.packet_max_count,
        }
    }
}
