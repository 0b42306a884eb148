//! The outcomes of wallet operations that callers branch on. The edge maps
//! each to a stable snake_case code ([`WalletError::code`]); a refusal has
//! changed nothing.

use superapp_kit::store::StoreError;

use crate::model::{Fen, TransferStatus};

#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// An amount is zero, negative, or not what its order says.
    #[error("invalid amount: {reason}")]
    InvalidAmount { reason: &'static str },
    #[error("the balance is too low")]
    InsufficientFunds,
    #[error("one operation moves at most {max} fen")]
    OverOperationLimit { max: Fen },
    #[error("this would pass the daily limit of {max} fen")]
    OverDailyLimit { max: Fen },
    #[error("at most {max} outgoing payments a day")]
    OverDailyCount { max: u32 },
    /// Too many payments in a short time (velocity limit).
    #[error("too many payments in a short time; retry in {retry_after_ms} ms")]
    TooFast { retry_after_ms: u64 },
    /// The operation needs a verified real name (a withdrawal, or a balance
    /// above the unverified cap).
    #[error("verify your real name first")]
    RealNameRequired,
    #[error("set a payment PIN first")]
    PinNotSet,
    #[error("a payment PIN is 6 digits")]
    InvalidPin,
    #[error("wrong payment PIN; {tries_left} tries left")]
    WrongPin { tries_left: u32 },
    #[error("the payment PIN is locked until {until_ms}")]
    PinLocked { until_ms: i64 },
    /// An idempotency key is empty, too long, or not printable ASCII.
    #[error("an idempotency key is 1 to 64 printable ASCII characters")]
    InvalidIdempotencyKey,
    /// The key was used before for a request with other parameters.
    #[error("this idempotency key was used for a different request")]
    IdempotencyKeyReused,
    #[error("invalid request: {reason}")]
    Invalid {
        code: &'static str,
        reason: &'static str,
    },
    #[error("no such user")]
    UnknownUser,
    /// The recipient takes no messages (so no money) from the sender.
    #[error("the recipient does not take this from you")]
    RecipientRefuses,
    #[error("you cannot send money to yourself this way")]
    ToSelf,
    /// No such transfer, or not one of the caller's (never says which).
    #[error("no such transfer")]
    TransferNotFound,
    #[error("the transfer is already {}", .status.as_str())]
    TransferClosed { status: TransferStatus },
    /// No such packet, or one the caller cannot see (never says which).
    #[error("no such red packet")]
    PacketNotFound,
    #[error("every share of this red packet was taken")]
    PacketFinished,
    #[error("this red packet has expired")]
    PacketExpired,
    #[error("you already opened this red packet")]
    AlreadyGrabbed,
    /// An exclusive packet for someone else, or one's own one-to-one packet.
    #[error("this red packet is not for you")]
    NotForYou,
    #[error("you are not a member of this group")]
    NotAMember,
    /// A refund or expiry asked for before its time, or of what is not
    /// open any more: the job's repeat, answered without change.
    #[error("nothing to do: {reason}")]
    NothingToDo { reason: &'static str },
    /// No such entry, or one of another wallet.
    #[error("no such entry")]
    EntryNotFound,
    /// No such order, or another user's.
    #[error("no such order")]
    OrderNotFound,
    #[error("the order is already {status}")]
    OrderClosed { status: &'static str },
    /// A provider callback failed verification; nothing was applied.
    #[error("callback refused: {code}")]
    CallbackRefused { code: &'static str },
    #[error("the payment provider is unavailable: {0}")]
    ProviderUnavailable(String),
    #[error("storage failed")]
    Store(#[from] StoreError),
    #[error("a dependency failed: {0}")]
    Dependency(String),
}

impl WalletError {
    /// The stable code the edge answers with.
    pub fn code(&self) -> &'static str {
        match self {
            WalletError::InvalidAmount { .. } => "invalid_amount",
            WalletError::InsufficientFunds => "insufficient_funds",
            WalletError::OverOperationLimit { .. } => "over_operation_limit",
            WalletError::OverDailyLimit { .. } => "over_daily_limit",
            WalletError::OverDailyCount { .. } => "over_daily_count",
            WalletError::TooFast { .. } => "too_fast",
            WalletError::RealNameRequired => "real_name_required",
            WalletError::PinNotSet => "pin_not_set",
            WalletError::InvalidPin => "invalid_pin",
            WalletError::WrongPin { .. } => "wrong_pin",
            WalletError::PinLocked { .. } => "pin_locked",
            WalletError::InvalidIdempotencyKey => "invalid_idempotency_key",
            WalletError::IdempotencyKeyReused => "idempotency_key_reused",
            WalletError::Invalid { code, .. } => code,
            WalletError::UnknownUser => "unknown_user",
            WalletError::RecipientRefuses => "recipient_refuses",
            WalletError::ToSelf => "to_self",
            WalletError::TransferNotFound => "transfer_not_found",
            WalletError::TransferClosed { .. } => "transfer_closed",
            WalletError::PacketNotFound => "packet_not_found",
            WalletError::PacketFinished => "packet_finished",
            WalletError::PacketExpired => "packet_expired",
            WalletError::AlreadyGrabbed => "already_grabbed",
            WalletError::NotForYou => "not_for_you",
            WalletError::NotAMember => "not_a_member",
            WalletError::NothingToDo { .. } => "nothing_to_do",
            WalletError::EntryNotFound => "entry_not_found",
            WalletError::OrderNotFound => "order_not_found",
            WalletError::OrderClosed { .. } => "order_closed",
            WalletError::CallbackRefused { code } => code,
            WalletError::ProviderUnavailable(_) => "provider_unavailable",
            WalletError::Store(StoreError::Busy) => "busy",
            WalletError::Store(_) | WalletError::Dependency(_) => "internal",
        }
    }
}
