//! The wallet's API (`/v1/wallet/...`): the balance and limits, the payment
//! PIN, top-ups and withdrawals through the payment provider, transfers in
//! one-to-one chats, red packets, and the history of the ledger.
//!
//! Amounts are integer fen (1/100 yuan), JSON numbers named `*_fen`; ids
//! and users travel as strings. Every request that moves money carries an
//! `Idempotency-Key` header; the payment PIN travels in the body only, and
//! the bodies that hold one never print it.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_with::serde_as;

use crate::U64AsString;

/// Outgoing limits as they apply to the caller today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WalletLimits {
    /// Largest single transfer, red packet or withdrawal.
    pub per_operation_fen: i64,
    /// Most money out per day.
    pub daily_amount_fen: i64,
    /// Most outgoing payments per day.
    pub daily_count: u32,
}

/// `GET /v1/wallet`: the caller's wallet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WalletSummary {
    pub balance_fen: i64,
    /// Whether a payment PIN is set (payments need one).
    pub pin_set: bool,
    /// While the PIN is locked after wrong tries: until when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_locked_until_ms: Option<i64>,
    pub real_name_verified: bool,
    pub limits: WalletLimits,
    /// Money out today, against `limits.daily_amount_fen`.
    pub spent_today_fen: i64,
    /// Outgoing payments today, against `limits.daily_count`.
    pub sent_today: u32,
    /// Without a verified real name, the most the wallet may hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unverified_cap_fen: Option<i64>,
}

/// `PUT /v1/wallet/pin`: sets the payment PIN (6 digits); changing one
/// needs the current one. `Debug` hides both.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetPin {
    pub pin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_pin: Option<String>,
}

impl fmt::Debug for SetPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetPin")
            .field("pin", &"<redacted>")
            .field(
                "current_pin",
                &self.current_pin.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// `POST /v1/wallet/top-ups`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewTopUp {
    pub amount_fen: i64,
}

/// A top-up (`pay_in`) or withdrawal (`payout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OrderKind {
    PayIn,
    Payout,
}

/// Where an order with the payment provider stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// A top-up waiting for the payer, or a withdrawal asked of the provider.
    Open,
    /// A top-up paid and credited.
    Paid,
    /// A top-up the payer did not pay.
    Failed,
    /// A withdrawal paid out.
    Settled,
    /// A withdrawal the provider could not pay: the money went back.
    Reversed,
}

/// A top-up or withdrawal.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WalletOrder {
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub order_id: u64,
    pub kind: OrderKind,
    pub amount_fen: i64,
    pub status: OrderStatus,
    /// The payment provider's name (`sandbox`).
    pub provider: String,
    /// The provider's reference for the order, once it took it.
    pub provider_ref: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// A top-up opened: pay it at `pay_url` (the provider's checkout); the
/// order turns `paid` when the provider says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopUpStarted {
    pub order: WalletOrder,
    pub pay_url: String,
}

/// `POST /v1/wallet/withdrawals`: to the bank card the provider holds.
/// `Debug` hides the PIN.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewWithdrawal {
    pub amount_fen: i64,
    pub pin: String,
}

impl fmt::Debug for NewWithdrawal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewWithdrawal")
            .field("amount_fen", &self.amount_fen)
            .field("pin", &"<redacted>")
            .finish()
    }
}

/// `POST /v1/wallet/transfers`: money to a user, shown in your chat with
/// them, held until they accept or decline it (or it expires and comes
/// back). `Debug` hides the PIN.
#[serde_as]
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewTransfer {
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub to_user: u64,
    pub amount_fen: i64,
    #[serde(default)]
    pub memo: String,
    pub pin: String,
}

impl fmt::Debug for NewTransfer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewTransfer")
            .field("to_user", &self.to_user)
            .field("amount_fen", &self.amount_fen)
            .field("memo", &self.memo)
            .field("pin", &"<redacted>")
            .finish()
    }
}

/// Where a transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TransferStatus {
    /// Held, waiting for the recipient.
    Pending,
    Accepted,
    Declined,
    /// Not accepted in time: back with the sender.
    Expired,
}

/// A transfer, as its sender and recipient see it.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WalletTransfer {
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub transfer_id: u64,
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub from_user: u64,
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub to_user: u64,
    pub amount_fen: i64,
    pub memo: String,
    pub status: TransferStatus,
    pub created_ms: i64,
    /// When a pending transfer goes back to its sender.
    pub expires_ms: i64,
    /// When it stopped being pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_ms: Option<i64>,
}

/// How a red packet's amount is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RedPacketMode {
    /// Random shares, each at least 1 fen.
    Lucky,
    /// Equal shares, differing by at most 1 fen.
    Equal,
    /// One share, for one named member of a group.
    Exclusive,
}

/// Where a red packet stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RedPacketStatus {
    /// Shares left to grab.
    Open,
    /// Every share was grabbed.
    Finished,
    /// Expired with shares left, whose sum went back to the sender.
    Refunded,
}

/// `POST /v1/wallet/packets`: a red packet into a group (`group_id`) or a
/// one-to-one chat (`to_user`, one share). `Debug` hides the PIN.
#[serde_as]
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewRedPacket {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde_as(as = "Option<U64AsString>")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub group_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde_as(as = "Option<U64AsString>")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub to_user: Option<u64>,
    pub amount_fen: i64,
    /// How many shares (1 for a one-to-one chat and for `exclusive`).
    pub count: u32,
    pub mode: RedPacketMode,
    /// `exclusive`: the one member who may open it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde_as(as = "Option<U64AsString>")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub exclusive_to: Option<u64>,
    #[serde(default)]
    pub greeting: String,
    pub pin: String,
}

impl fmt::Debug for NewRedPacket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewRedPacket")
            .field("group_id", &self.group_id)
            .field("to_user", &self.to_user)
            .field("amount_fen", &self.amount_fen)
            .field("count", &self.count)
            .field("mode", &self.mode)
            .field("exclusive_to", &self.exclusive_to)
            .field("greeting", &self.greeting)
            .field("pin", &"<redacted>")
            .finish()
    }
}

/// A red packet. The shares not yet grabbed are never shown.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RedPacket {
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub packet_id: u64,
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub sender: u64,
    /// The group it was sent to (absent for a one-to-one chat's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde_as(as = "Option<U64AsString>")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub group_id: Option<u64>,
    /// The peer of the one-to-one chat it was sent in (absent for a group's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde_as(as = "Option<U64AsString>")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub to_user: Option<u64>,
    pub mode: RedPacketMode,
    pub amount_fen: i64,
    pub count: u32,
    /// Shares grabbed so far, and their sum.
    pub claimed: u32,
    pub claimed_fen: i64,
    pub status: RedPacketStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde_as(as = "Option<U64AsString>")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub exclusive_to: Option<u64>,
    pub greeting: String,
    pub created_ms: i64,
    /// When the rest goes back to the sender.
    pub expires_ms: i64,
    /// What went back to the sender at expiry.
    pub refunded_fen: i64,
}

/// One grab of a red packet.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PacketGrab {
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub user_id: u64,
    pub amount_fen: i64,
    /// Which share: 0 for the first grab.
    pub index: u32,
    pub at_ms: i64,
}

/// `POST /v1/wallet/packets/{packet_id}/grab`: your share, and the packet
/// after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PacketGrabbed {
    pub grab: PacketGrab,
    pub packet: RedPacket,
}

/// `GET /v1/wallet/packets/{packet_id}`: the packet, its grabs in order,
/// and once every share is taken, the luckiest grabber.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RedPacketDetails {
    pub packet: RedPacket,
    pub grabs: Vec<PacketGrab>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde_as(as = "Option<U64AsString>")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub luckiest: Option<u64>,
}

/// Why money moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EntryReason {
    TopUp,
    Withdrawal,
    PayoutSettled,
    PayoutReversed,
    TransferSent,
    TransferAccepted,
    TransferDeclined,
    TransferExpired,
    PacketSent,
    PacketGrabbed,
    PacketRefunded,
}

/// One movement of money in or out of the caller's wallet.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WalletEntry {
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub entry_id: u64,
    pub at_ms: i64,
    pub reason: EntryReason,
    /// As the wallet saw it: above zero in, below zero out.
    pub amount_fen: i64,
    /// The transfer, red packet or order it belongs to (by `reason`).
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub reference_id: u64,
}

/// `GET /v1/wallet/history`: a page of entries, newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct HistoryQuery {
    /// The `next` of the page before; absent for the newest page.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", param(value_type = Option<String>))]
    pub before: Option<u64>,
    /// At most this many (default 50, at most 100).
    #[serde(default)]
    pub limit: Option<u32>,
}

#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WalletHistory {
    pub entries: Vec<WalletEntry>,
    /// `before` of the next (older) page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde_as(as = "Option<U64AsString>")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub next: Option<u64>,
}

/// `GET /v1/wallet/entries/{entry_id}`: an entry and what it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WalletEntryDetails {
    pub entry: WalletEntry,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<WalletTransfer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packet: Option<RedPacket>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<WalletOrder>,
}

/// `POST /v1/wallet/sandbox/pay/{provider_ref}`: the sandbox provider's
/// checkout: the payer paid (or the payment failed).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SandboxPay {
    pub paid: bool,
}

/// The answer to a provider's callback that was applied, or was one seen
/// before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CallbackReceived {
    pub received: bool,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn debug_output_of_a_body_with_a_pin_never_shows_the_pin() {
        let shown = [
            format!(
                "{:?}",
                SetPin {
                    pin: "135790".into(),
                    current_pin: Some("246801".into()),
                }
            ),
            format!(
                "{:?}",
                NewWithdrawal {
                    amount_fen: 1,
                    pin: "135790".into(),
                }
            ),
            format!(
                "{:?}",
                NewTransfer {
                    to_user: 1,
                    amount_fen: 1,
                    memo: String::new(),
                    pin: "135790".into(),
                }
            ),
            format!(
                "{:?}",
                NewRedPacket {
                    group_id: Some(1),
                    to_user: None,
                    amount_fen: 1,
                    count: 1,
                    mode: RedPacketMode::Lucky,
                    exclusive_to: None,
                    greeting: String::new(),
                    pin: "135790".into(),
                }
            ),
        ];
        for shown in shown {
            assert!(
                !shown.contains("135790") && !shown.contains("246801"),
                "{shown}"
            );
        }
    }

    #[test]
    fn a_transfer_has_its_ids_as_strings_its_amount_as_a_number_and_a_snake_case_status() {
        let transfer = WalletTransfer {
            transfer_id: u64::MAX,
            from_user: 1,
            to_user: 2,
            amount_fen: 1_000,
            memo: "lunch".into(),
            status: TransferStatus::Pending,
            created_ms: 1,
            expires_ms: 2,
            settled_ms: None,
        };
        let json = serde_json::to_value(&transfer).unwrap();
        assert_eq!(json["transfer_id"], "18446744073709551615");
        assert_eq!(json["from_user"], "1");
        assert_eq!(json["amount_fen"], 1_000);
        assert_eq!(json["status"], "pending");
        assert!(json.get("settled_ms").is_none());
        assert_eq!(
            serde_json::from_value::<WalletTransfer>(json).unwrap(),
            transfer
        );
    }

    #[test]
    fn a_red_packet_names_its_group_or_its_peer_and_its_mode_in_snake_case() {
        let body: NewRedPacket = serde_json::from_str(
            r#"{"group_id":"7","amount_fen":500,"count":3,"mode":"lucky","pin":"135790"}"#,
        )
        .unwrap();
        assert_eq!(
            (body.group_id, body.to_user, body.mode),
            (Some(7), None, RedPacketMode::Lucky)
        );
        assert!(body.greeting.is_empty());
        let unknown = r#"{"to_user":"7","amount_fen":1,"count":1,"mode":"huge","pin":"1"}"#;
        assert!(serde_json::from_str::<NewRedPacket>(unknown).is_err());
    }

    #[test]
    fn the_history_cursor_is_a_string_and_absent_on_the_last_page() {
        let page = WalletHistory {
            entries: vec![],
            next: Some(12),
        };
        assert_eq!(
            serde_json::to_value(&page).unwrap()["next"],
            serde_json::json!("12")
        );
        let last = WalletHistory {
            entries: vec![],
            next: None,
        };
        assert_eq!(serde_json::to_string(&last).unwrap(), r#"{"entries":[]}"#);
    }
}
