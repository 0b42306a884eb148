//! The wallet's types and ids, no I/O. Amounts are integer fen (1/100 yuan)
//! everywhere; ids are 64-bit, time-ordered ([`superapp_kit::ids::IdGen`]).
//! Ledger account keys are parsed and printed here and nowhere else.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
pub use superapp_proto::UserId;

/// An amount of money in fen. Signed so that a system account's balance,
/// which is negative by construction, has the same type as a wallet's.
pub type Fen = i64;

pub use superapp_proto::ids::{GroupId, InvalidId};

/// The number `s` spells in its one canonical way (no sign, no leading zero).
fn canonical(s: &str) -> Option<u64> {
    let n: u64 = s.parse().ok()?;
    (n.to_string() == s).then_some(n)
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                canonical(s).map(Self).ok_or(InvalidId)
            }
        }
    };
}

id_type!(
    /// A transfer in a one-to-one chat.
    TransferId
);
id_type!(
    /// A red packet.
    PacketId
);
id_type!(
    /// A top-up (pay-in) or withdrawal (payout) order with the provider.
    OrderId
);
id_type!(
    /// A journal entry; ids grow with time, so they page history.
    EntryId
);

/// An account of the ledger. Every entry debits one account and credits
/// another by the same amount, so the balances of all accounts sum to zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Account {
    /// A user's wallet: never below zero.
    Wallet(UserId),
    /// Holds a transfer's money until it is accepted, declined or expires.
    TransferEscrow(TransferId),
    /// Holds a red packet's unclaimed shares.
    PacketEscrow(PacketId),
    /// The money that came in through the provider, less what went out:
    /// its balance is minus what users hold through it. Debited by each
    /// credited top-up, credited by each settled payout.
    TopUpClearing,
    /// Withdrawals the provider has not yet paid out or reversed.
    PayoutClearing,
}

impl Account {
    /// Whether the ledger lets this account's balance fall below zero:
    /// only the top-up clearing account, whose balance is negative by
    /// construction.
    pub fn may_go_negative(self) -> bool {
        matches!(self, Account::TopUpClearing)
    }

    /// The wallet's owner, for a wallet.
    pub fn owner(self) -> Option<UserId> {
        match self {
            Account::Wallet(user) => Some(user),
            _ => None,
        }
    }
}

/// The stable key of an account in every store: `w:<user>`, `t:<transfer>`,
/// `p:<packet>`, `s:topup`, `s:payout`.
impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Account::Wallet(user) => write!(f, "w:{}", user.0),
            Account::TransferEscrow(id) => write!(f, "t:{id}"),
            Account::PacketEscrow(id) => write!(f, "p:{id}"),
            Account::TopUpClearing => f.write_str("s:topup"),
            Account::PayoutClearing => f.write_str("s:payout"),
        }
    }
}

impl Serialize for Account {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Account {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let key = String::deserialize(deserializer)?;
        key.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a ledger account key")]
pub struct InvalidAccount;

impl FromStr for Account {
    type Err = InvalidAccount;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let number = |rest: &str| canonical(rest).ok_or(InvalidAccount);
        match s.split_once(':') {
            Some(("w", rest)) => Ok(Account::Wallet(UserId(number(rest)?))),
            Some(("t", rest)) => Ok(Account::TransferEscrow(TransferId(number(rest)?))),
            Some(("p", rest)) => Ok(Account::PacketEscrow(PacketId(number(rest)?))),
            Some(("s", "topup")) => Ok(Account::TopUpClearing),
            Some(("s", "payout")) => Ok(Account::PayoutClearing),
            _ => Err(InvalidAccount),
        }
    }
}

/// Why money moved: every journal entry has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A paid top-up: top-up clearing -> wallet.
    TopUp,
    /// A withdrawal asked for: wallet -> payout clearing.
    Withdrawal,
    /// The provider paid a withdrawal out: payout clearing -> top-up clearing.
    PayoutSettled,
    /// The provider could not pay it out: payout clearing -> wallet.
    PayoutReversed,
    /// wallet -> transfer escrow.
    TransferSent,
    /// transfer escrow -> the recipient's wallet.
    TransferAccepted,
    /// transfer escrow -> the sender's wallet.
    TransferDeclined,
    /// transfer escrow -> the sender's wallet, after the transfer's lifetime.
    TransferExpired,
    /// wallet -> packet escrow.
    PacketSent,
    /// packet escrow -> the grabber's wallet.
    PacketGrabbed,
    /// packet escrow -> the sender's wallet: the unclaimed rest, once expired.
    PacketRefunded,
}

impl Reason {
    pub const ALL: [Reason; 11] = [
        Reason::TopUp,
        Reason::Withdrawal,
        Reason::PayoutSettled,
        Reason::PayoutReversed,
        Reason::TransferSent,
        Reason::TransferAccepted,
        Reason::TransferDeclined,
        Reason::TransferExpired,
        Reason::PacketSent,
        Reason::PacketGrabbed,
        Reason::PacketRefunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::TopUp => "top_up",
            Reason::Withdrawal => "withdrawal",
            Reason::PayoutSettled => "payout_settled",
            Reason::PayoutReversed => "payout_reversed",
            Reason::TransferSent => "transfer_sent",
            Reason::TransferAccepted => "transfer_accepted",
            Reason::TransferDeclined => "transfer_declined",
            Reason::TransferExpired => "transfer_expired",
            Reason::PacketSent => "packet_sent",
            Reason::PacketGrabbed => "packet_grabbed",
            Reason::PacketRefunded => "packet_refunded",
        }
    }
}

impl FromStr for Reason {
    type Err = InvalidAccount;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or(InvalidAccount)
    }
}

/// One movement of money: `amount` from `debit` to `credit`. Written once,
/// never updated or deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: EntryId,
    pub at_ms: i64,
    pub reason: Reason,
    pub debit: Account,
    pub credit: Account,
    /// Always above zero.
    pub amount: Fen,
    /// The transfer, packet or order the entry belongs to (by its reason).
    pub reference: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferStatus {
    Pending,
    Accepted,
    Declined,
    Expired,
}

impl TransferStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferStatus::Pending => "pending",
            TransferStatus::Accepted => "accepted",
            TransferStatus::Declined => "declined",
            TransferStatus::Expired => "expired",
        }
    }
}

/// Money sent in a one-to-one chat, held in its own escrow account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub id: TransferId,
    pub from: UserId,
    pub to: UserId,
    pub amount: Fen,
    pub memo: String,
    pub status: TransferStatus,
    pub created_ms: i64,
    /// When an unaccepted transfer returns to its sender.
    pub expires_ms: i64,
    /// When it left `Pending`.
    pub settled_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PacketMode {
    Lucky,
    Equal,
    Exclusive,
}

impl PacketMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PacketMode::Lucky => "lucky",
            PacketMode::Equal => "equal",
            PacketMode::Exclusive => "exclusive",
        }
    }
}

/// Where a red packet was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Place {
    /// A one-to-one chat: one share, for the peer.
    Direct(UserId),
    /// A group: its members grab.
    Group(GroupId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PacketStatus {
    /// Shares left to grab.
    Open,
    /// Every share was grabbed.
    Finished,
    /// Expired with shares left: their sum went back to the sender.
    Refunded,
}

impl PacketStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PacketStatus::Open => "open",
            PacketStatus::Finished => "finished",
            PacketStatus::Refunded => "refunded",
        }
    }
}

/// A red packet. Its shares are drawn when it is sent
/// ([`crate::policy::split`]), so a grab takes the next one in O(1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packet {
    pub id: PacketId,
    pub sender: UserId,
    pub place: Place,
    pub mode: PacketMode,
    pub amount: Fen,
    /// The shares in the order they are handed out; they sum to `amount`.
    pub shares: Vec<Fen>,
    /// EXCLUSIVE: the one member who may open it.
    pub exclusive_to: Option<UserId>,
    pub greeting: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    /// Shares grabbed so far; the next grab takes `shares[claimed]`.
    pub claimed: u32,
    pub claimed_amount: Fen,
    pub status: PacketStatus,
    /// The grab with the largest share so far (the earliest among equals):
    /// the luckiest once the packet is finished.
    pub best: Option<(UserId, Fen)>,
    /// What went back to the sender at expiry.
    pub refunded: Fen,
}

impl Packet {
    pub fn count(&self) -> u32 {
        u32::try_from(self.shares.len()).unwrap_or(u32::MAX)
    }
}

/// A user's one grab of a packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grab {
    pub packet: PacketId,
    pub user: UserId,
    pub amount: Fen,
    /// Which share: 0 for the first grab.
    pub index: u32,
    pub at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderKind {
    /// A top-up: money in.
    PayIn,
    /// A withdrawal: money out.
    Payout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// A pay-in waiting for the payer; a payout asked of the provider (its
    /// money already in payout clearing).
    Open,
    /// A pay-in paid and credited.
    Paid,
    /// A pay-in the payer did not pay.
    Failed,
    /// A payout the provider paid out.
    Settled,
    /// A payout the provider could not pay: the money went back.
    Reversed,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Open => "open",
            OrderStatus::Paid => "paid",
            OrderStatus::Failed => "failed",
            OrderStatus::Settled => "settled",
            OrderStatus::Reversed => "reversed",
        }
    }
}

/// A top-up or withdrawal with the payment provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: OrderId,
    pub user: UserId,
    pub kind: OrderKind,
    pub amount: Fen,
    pub status: OrderStatus,
    /// The provider's name and its reference for the order (set once the
    /// provider took it).
    pub provider: String,
    pub provider_ref: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// A user's outgoing money on one day (in the configured time zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DailyOut {
    pub user: UserId,
    /// Days since 1970-01-01 in the wallet's time zone.
    pub day: i64,
    pub amount: Fen,
    pub count: u32,
}

/// Outgoing limits that apply to one request (the service picks them by
/// the account's age and verification), and the day they count against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutLimits {
    /// Days since 1970-01-01 in the wallet's time zone.
    pub day: i64,
    /// Largest single transfer, packet or withdrawal.
    pub per_operation: Fen,
    /// Most money out per day.
    pub daily_amount: Fen,
    /// Most outgoing operations per day.
    pub daily_count: u32,
}

/// The most a wallet may hold after a credit, for users without a verified
/// real name; `None` for those with one.
pub type BalanceCap = Option<Fen>;

/// A user's payment PIN: its argon2id hash, and the wrong tries since the
/// last right one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinRecord {
    pub hash: String,
    pub failures: u32,
    /// While in the future, no try is checked.
    pub locked_until_ms: i64,
    pub updated_ms: i64,
}

/// An idempotency key as the store keeps it: per user, with a fingerprint
/// of the request's parameters (the client's, not ids the server made).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdemKey {
    pub user: UserId,
    pub key: String,
    pub fingerprint: String,
}

/// A balance as the ledger knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    pub account: Account,
    pub balance: Fen,
}

/// A change of the ledger. The store applies it atomically, deciding with
/// [`crate::policy::decide`] inside its transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Records a new pay-in order (no money moves yet).
    OpenPayIn {
        order: Order,
    },
    /// The provider says the pay-in was paid `amount`: credited once,
    /// refused when the amount is not the order's.
    CreditPayIn {
        order: OrderId,
        amount: Fen,
    },
    /// The provider says the pay-in failed.
    FailPayIn {
        order: OrderId,
    },
    /// A withdrawal: the order's amount leaves the wallet for payout clearing.
    Withdraw {
        order: Order,
        limits: OutLimits,
    },
    /// The provider paid the withdrawal out (`amount` must be the order's).
    SettlePayout {
        order: OrderId,
        amount: Fen,
    },
    /// The provider could not pay it out: the money goes back to the wallet.
    ReversePayout {
        order: OrderId,
    },
    /// The transfer's amount leaves the sender's wallet for its escrow.
    SendTransfer {
        transfer: Transfer,
        limits: OutLimits,
    },
    AcceptTransfer {
        id: TransferId,
        by: UserId,
        cap: BalanceCap,
    },
    DeclineTransfer {
        id: TransferId,
        by: UserId,
    },
    /// Returns an unaccepted transfer to its sender, never before it expires.
    ExpireTransfer {
        id: TransferId,
    },
    /// The packet's amount leaves the sender's wallet for its escrow.
    SendPacket {
        packet: Packet,
        limits: OutLimits,
    },
    /// `user` takes the next share. Membership of the packet's group is
    /// checked by the service before (another room's fact).
    GrabPacket {
        id: PacketId,
        user: UserId,
        cap: BalanceCap,
    },
    /// Returns an expired packet's unclaimed rest to its sender, once.
    RefundPacket {
        id: PacketId,
    },
}

/// What a command did, as the store committed it: the entry it wrote (none
/// for the commands that move no money), the balances after it of the
/// accounts it touched, and the records it wrote. An idempotent repeat
/// answers the first one's, `replayed` set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Applied {
    pub entry: Option<Entry>,
    pub balances: Vec<Balance>,
    pub transfer: Option<Transfer>,
    pub packet: Option<Packet>,
    /// The grab a [`Command::GrabPacket`] made.
    pub grab: Option<Grab>,
    pub order: Option<Order>,
    pub daily: Option<DailyOut>,
    pub replayed: bool,
}

impl Applied {
    /// The balance after the command of `account`, if it touched it.
    pub fn balance_of(&self, account: Account) -> Option<Fen> {
        self.balances
            .iter()
            .find(|b| b.account == account)
            .map(|b| b.balance)
    }
}
