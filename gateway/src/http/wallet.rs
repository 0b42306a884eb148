//! The wallet at the edge (`/v1/wallet/...`): the balance, the payment PIN,
//! top-ups and withdrawals, transfers, red packets and the ledger's
//! history for users; the payment provider's callbacks and the sandbox
//! provider's checkout, which take no bearer token; and the mapping of the
//! room's outcomes to stable codes.
//!
//! Every request that moves money names itself by an `Idempotency-Key`
//! header (1 to 64 printable ASCII characters, no spaces, as Stripe's): a retry with
//! the same key and the same parameters answers what the first did and
//! moves nothing; the same key with other parameters is refused. The
//! payment PIN travels in the JSON body only, never in a URL, and no body
//! that holds one is logged.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use superapp_api::{
    CallbackReceived, EntryReason, ErrorBody, HistoryQuery, NewRedPacket, NewTopUp, NewTransfer,
    NewWithdrawal, OrderKind, OrderStatus, PacketGrab, PacketGrabbed, RedPacket, RedPacketDetails,
    RedPacketMode, RedPacketStatus, SandboxPay, SetPin, TopUpStarted, TransferStatus, WalletEntry,
    WalletEntryDetails, WalletHistory, WalletLimits, WalletOrder, WalletSummary, WalletTransfer,
};
use superapp_kit::store::StoreError;
use superapp_wallet::model::{
    self as m, Account, Entry, EntryId, Grab, GroupId, Order, OrderId, Packet, PacketId, Place,
    Reason, Transfer, TransferId, UserId,
};
use superapp_wallet::service::{CallbackHeaders, MAX_PAGE, NewPacket};
use superapp_wallet::{Wallet, WalletError};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, ApiPath, ApiQuery, AuthUser, Rooms};
use crate::error::ApiError;

pub fn routes() -> OpenApiRouter<Rooms> {
    OpenApiRouter::new()
        .routes(routes!(summary))
        .routes(routes!(set_pin))
        .routes(routes!(top_up))
        .routes(routes!(order))
        .routes(routes!(withdraw))
        .routes(routes!(send_transfer))
        .routes(routes!(transfer))
        .routes(routes!(accept_transfer))
        .routes(routes!(decline_transfer))
        .routes(routes!(send_packet))
        .routes(routes!(packet))
        .routes(routes!(grab))
        .routes(routes!(history))
        .routes(routes!(entry))
        .routes(routes!(callback))
        .routes(routes!(sandbox_pay))
}

/// The header every request that moves money carries.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// History pages: this many entries unless asked otherwise (never more
/// than the room's [`MAX_PAGE`]).
const DEFAULT_PAGE: u32 = 50;

/// The room's outcomes as the API's stable codes ([`WalletError::code`]).
/// A wrong PIN is 403, not 401: a client answers 401 by refreshing or
/// dropping its session, which a mistyped PIN must never cause.
impl From<WalletError> for ApiError {
    fn from(e: WalletError) -> Self {
        use StatusCode as S;
        let status = match &e {
            WalletError::InvalidAmount { .. }
            | WalletError::InvalidPin
            | WalletError::InvalidIdempotencyKey
            | WalletError::Invalid { .. }
            | WalletError::ToSelf
            // A property of the request, which no retry changes.
            | WalletError::OverOperationLimit { .. } => S::BAD_REQUEST,
            WalletError::InsufficientFunds => S::PAYMENT_REQUIRED,
            WalletError::RealNameRequired
            | WalletError::PinNotSet
            | WalletError::WrongPin { .. }
            | WalletError::RecipientRefuses
            | WalletError::NotForYou
            | WalletError::NotAMember => S::FORBIDDEN,
            WalletError::UnknownUser
            | WalletError::TransferNotFound
            | WalletError::PacketNotFound
            | WalletError::EntryNotFound
            | WalletError::OrderNotFound => S::NOT_FOUND,
            WalletError::IdempotencyKeyReused
            | WalletError::TransferClosed { .. }
            | WalletError::PacketFinished
            | WalletError::PacketExpired
            | WalletError::AlreadyGrabbed
            | WalletError::NothingToDo { .. }
            | WalletError::OrderClosed { .. } => S::CONFLICT,
            WalletError::PinLocked { until_ms } => {
                let mut err = Self::new(S::LOCKED, e.code(), e.to_string());
                err.retry_after_ms = Some(u64::try_from(until_ms - now_ms()).unwrap_or(0).max(1));
                return err;
            }
            WalletError::OverDailyLimit { .. } | WalletError::OverDailyCount { .. } => {
                S::TOO_MANY_REQUESTS
            }
            WalletError::TooFast { retry_after_ms } => {
                let mut err = Self::new(S::TOO_MANY_REQUESTS, e.code(), e.to_string());
                err.retry_after_ms = Some(*retry_after_ms);
                return err;
            }
            WalletError::CallbackRefused { code } => match *code {
                "bad_signature" | "stale_callback" => S::UNAUTHORIZED,
                _ => S::BAD_REQUEST,
            },
            WalletError::ProviderUnavailable(cause) => {
                tracing::warn!(error = %cause, "the payment provider is unavailable");
                let mut err = Self::new(
                    S::SERVICE_UNAVAILABLE,
                    e.code(),
                    "the payment provider is unavailable; retry",
                );
                err.retry_after_ms = Some(1_000);
                return err;
            }
            WalletError::Store(StoreError::Busy) => return Self::busy(),
            WalletError::Dependency(cause) => {
                tracing::warn!(error = %cause, "a room the wallet depends on failed");
                return Self::unavailable("a dependency is unavailable; retry");
            }
            WalletError::Store(_) => return Self::internal(&e),
        };
        Self::new(status, e.code(), e.to_string())
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The request's `Idempotency-Key`: required, 1 to 64 printable ASCII
/// characters.
fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers.get(IDEMPOTENCY_KEY).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing_idempotency_key",
            "an Idempotency-Key header is required: 1 to 64 printable ASCII characters (no spaces) that \
             name this request, the same in every retry of it",
        )
    })?;
    match value.to_str() {
        Ok(key) if superapp_wallet::policy::key_well_formed(key) => Ok(key.to_string()),
        _ => Err(WalletError::InvalidIdempotencyKey.into()),
    }
}

/// An id in the path; one that cannot be an id names nothing, and is
/// answered as `missing` is.
fn id_in_path<T: std::str::FromStr>(raw: &str, missing: WalletError) -> Result<T, ApiError> {
    raw.parse().map_err(|_| ApiError::from(missing))
}

fn order_body(order: Order) -> WalletOrder {
    WalletOrder {
        order_id: order.id.0,
        kind: match order.kind {
            m::OrderKind::PayIn => OrderKind::PayIn,
            m::OrderKind::Payout => OrderKind::Payout,
        },
        amount_fen: order.amount,
        status: match order.status {
            m::OrderStatus::Open => OrderStatus::Open,
            m::OrderStatus::Paid => OrderStatus::Paid,
            m::OrderStatus::Failed => OrderStatus::Failed,
            m::OrderStatus::Settled => OrderStatus::Settled,
            m::OrderStatus::Reversed => OrderStatus::Reversed,
        },
        provider: order.provider,
        provider_ref: order.provider_ref,
        created_ms: order.created_ms,
        updated_ms: order.updated_ms,
    }
}

fn transfer_body(transfer: Transfer) -> WalletTransfer {
    WalletTransfer {
        transfer_id: transfer.id.0,
        from_user: transfer.from.0,
        to_user: transfer.to.0,
        amount_fen: transfer.amount,
        memo: transfer.memo,
        status: match transfer.status {
            m::TransferStatus::Pending => TransferStatus::Pending,
            m::TransferStatus::Accepted => TransferStatus::Accepted,
            m::TransferStatus::Declined => TransferStatus::Declined,
            m::TransferStatus::Expired => TransferStatus::Expired,
        },
        created_ms: transfer.created_ms,
        expires_ms: transfer.expires_ms,
        settled_ms: transfer.settled_ms,
    }
}

fn mode_body(mode: m::PacketMode) -> RedPacketMode {
    match mode {
        m::PacketMode::Lucky => RedPacketMode::Lucky,
        m::PacketMode::Equal => RedPacketMode::Equal,
        m::PacketMode::Exclusive => RedPacketMode::Exclusive,
    }
}

/// A packet as users see it: never the shares not yet grabbed.
fn packet_body(packet: Packet) -> RedPacket {
    let (group_id, to_user) = match packet.place {
        Place::Group(group) => (Some(group.0), None),
        Place::Direct(peer) => (None, Some(peer.0)),
    };
    RedPacket {
        packet_id: packet.id.0,
        sender: packet.sender.0,
        group_id,
        to_user,
        mode: mode_body(packet.mode),
        count: packet.count(),
        amount_fen: packet.amount,
        claimed: packet.claimed,
        claimed_fen: packet.claimed_amount,
        status: match packet.status {
            m::PacketStatus::Open => RedPacketStatus::Open,
            m::PacketStatus::Finished => RedPacketStatus::Finished,
            m::PacketStatus::Refunded => RedPacketStatus::Refunded,
        },
        exclusive_to: packet.exclusive_to.map(|u| u.0),
        greeting: packet.greeting,
        created_ms: packet.created_ms,
        expires_ms: packet.expires_ms,
        refunded_fen: packet.refunded,
    }
}

fn grab_body(grab: Grab) -> PacketGrab {
    PacketGrab {
        user_id: grab.user.0,
        amount_fen: grab.amount,
        index: grab.index,
        at_ms: grab.at_ms,
    }
}

/// An entry as `me`'s wallet saw it: money in above zero, out below.
fn entry_body(me: UserId, entry: Entry) -> WalletEntry {
    let amount_fen = if entry.credit == Account::Wallet(me) {
        entry.amount
    } else {
        -entry.amount
    };
    WalletEntry {
        entry_id: entry.id.0,
        at_ms: entry.at_ms,
        reason: match entry.reason {
            Reason::TopUp => EntryReason::TopUp,
            Reason::Withdrawal => EntryReason::Withdrawal,
            Reason::PayoutSettled => EntryReason::PayoutSettled,
            Reason::PayoutReversed => EntryReason::PayoutReversed,
            Reason::TransferSent => EntryReason::TransferSent,
            Reason::TransferAccepted => EntryReason::TransferAccepted,
            Reason::TransferDeclined => EntryReason::TransferDeclined,
            Reason::TransferExpired => EntryReason::TransferExpired,
            Reason::PacketSent => EntryReason::PacketSent,
            Reason::PacketGrabbed => EntryReason::PacketGrabbed,
            Reason::PacketRefunded => EntryReason::PacketRefunded,
        },
        amount_fen,
        reference_id: entry.reference,
    }
}

/// Your wallet: balance, PIN, limits and what you sent today
#[utoipa::path(get, path = "/v1/wallet", tag = "wallet", security(("bearer" = [])),
    responses(
        (status = 200, description = "The wallet", body = WalletSummary),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
))]
async fn summary(
    State(wallet): State<Arc<Wallet>>,
    AuthUser(me): AuthUser,
) -> Result<Json<WalletSummary>, ApiError> {
    let s = wallet.summary(me.sub).await?;
    Ok(Json(WalletSummary {
        balance_fen: s.balance,
        pin_set: s.pin_set,
        pin_locked_until_ms: s.pin_locked_until_ms,
        real_name_verified: s.real_name_verified,
        limits: WalletLimits {
            per_operation_fen: s.limits.per_operation,
            daily_amount_fen: s.limits.daily_amount,
            daily_count: s.limits.daily_count,
        },
        spent_today_fen: s.spent_today,
        sent_today: s.sent_today,
        unverified_cap_fen: s.unverified_cap,
    }))
}

/// Set your payment PIN (6 digits); changing it needs the current one. Five wrong PINs in a row lock payments for wallet.pin_lock_secs
#[utoipa::path(put, path = "/v1/wallet/pin", tag = "wallet", security(("bearer" = [])),
    request_body = SetPin,
    responses(
        (status = 204, description = "Set"),
        (status = 400, description = "invalid_pin: a PIN is 6 digits; weak_pin: one digit six times or a run like 123456; current_pin_required: a PIN is set, give it to change it", body = ErrorBody),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 403, description = "wrong_pin: current_pin is wrong", body = ErrorBody),
        (status = 423, description = "pin_locked: too many wrong PINs; retry after retry_after_ms", body = ErrorBody),
))]
async fn set_pin(
    State(wallet): State<Arc<Wallet>>,
    AuthUser(me): AuthUser,
    ApiJson(body): ApiJson<SetPin>,
) -> Result<StatusCode, ApiError> {
    wallet
        .set_pin(me.sub, body.current_pin.as_deref(), &body.pin)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Top up from the payment provider: opens an order to pay at pay_url; the wallet is credited when the provider confirms the payment (watch the order, or the wallet's events)
#[utoipa::path(post, path = "/v1/wallet/top-ups", tag = "wallet", security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "1 to 64 printable ASCII characters (no spaces) naming this request")),
    request_body = NewTopUp,
    responses(
        (status = 200, description = "The order and where to pay it", body = TopUpStarted),
        (status = 400, description = "invalid_amount, missing_idempotency_key, invalid_idempotency_key", body = ErrorBody),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 403, description = "real_name_required: the balance would pass the cap of an unverified wallet", body = ErrorBody),
        (status = 409, description = "idempotency_key_reused: the key named another request", body = ErrorBody),
        (status = 503, description = "provider_unavailable, busy", body = ErrorBody),
))]
async fn top_up(
    State(wallet): State<Arc<Wallet>>,
    AuthUser(me): AuthUser,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NewTopUp>,
) -> Result<Json<TopUpStarted>, ApiError> {
    let key = idempotency_key(&headers)?;
    let started = wallet.top_up(me.sub, body.amount_fen, &key).await?;
    Ok(Json(TopUpStarted {
        order: order_body(started.order),
        pay_url: started.pay_url,
    }))
}

/// One of your top-ups or withdrawals
#[utoipa::path(get, path = "/v1/wallet/orders/{order_id}", tag = "wallet", security(("bearer" = [])),
    params(("order_id" = String, Path, description = "the order")),
    responses(
        (status = 200, description = "The order", body = WalletOrder),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 404, description = "order_not_found: no such order of yours", body = ErrorBody),
))]
async fn order(
    State(wallet): State<Arc<Wallet>>,
    AuthUser(me): AuthUser,
    ApiPath(order_id): ApiPath<String>,
) -> Result<Json<WalletOrder>, ApiError> {
    let id: OrderId = id_in_path(&order_id, WalletError::OrderNotFound)?;
    Ok(Json(order_body(wallet.order(me.sub, id).await?)))
}

/// Withdraw to your bank card through the payment provider: the money leaves the wallet at once and the order is settled (or reversed, the money back) when the provider says so. Needs a verified real name and the payment PIN
#[utoipa::path(post, path = "/v1/wallet/withdrawals", tag = "wallet", security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "1 to 64 printable ASCII characters (no spaces) naming this request")),
    request_body = NewWithdrawal,
    responses(
        (status = 200, description = "The order", body = WalletOrder),
        (status = 400, description = "invalid_amount, invalid_pin, over_operation_limit, missing_idempotency_key, invalid_idempotency_key", body = ErrorBody),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 402, description = "insufficient_funds", body = ErrorBody),
        (status = 403, description = "real_name_required, pin_not_set, wrong_pin", body = ErrorBody),
        (status = 409, description = "idempotency_key_reused", body = ErrorBody),
        (status = 423, description = "pin_locked", body = ErrorBody),
        (status = 429, description = "over_daily_limit, over_daily_count, too_fast", body = ErrorBody),
        (status = 503, description = "provider_unavailable, busy", body = ErrorBody),
))]
async fn withdraw(
    State(wallet): State<Arc<Wallet>>,
    AuthUser(me): AuthUser,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NewWithdrawal>,
) -> Result<Json<WalletOrder>, ApiError> {
    let key = idempotency_key(&headers)?;
    let order = wallet
        .withdraw(me.sub, body.amount_fen, &body.pin, &key)
        .await?;
    Ok(Json(order_body(order)))
}

/// Send money to a user in your one-to-one chat: held until they accept or decline it, or it expires and comes back to you. It appears in the chat as a Special of type "transfer"
#[utoipa::path(post, path = "/v1/wallet/transfers", tag = "wallet", security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "1 to 64 printable ASCII characters (no spaces) naming this request")),
    request_body = NewTransfer,
    responses(
        (status = 200, description = "The transfer, pending", body = WalletTransfer),
        (status = 400, description = "invalid_amount, invalid_pin, to_self, over_operation_limit, invalid_memo (over 100 characters, or control characters), missing_idempotency_key, invalid_idempotency_key", body = ErrorBody),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 402, description = "insufficient_funds", body = ErrorBody),
        (status = 403, description = "pin_not_set, wrong_pin, recipient_refuses", body = ErrorBody),
        (status = 404, description = "unknown_user", body = ErrorBody),
        (status = 409, description = "idempotency_key_reused", body = ErrorBody),
        (status = 423, description = "pin_locked", body = ErrorBody),
        (status = 429, description = "over_daily_limit, over_daily_count, too_fast", body = ErrorBody),
))]
async fn send_transfer(
    State(wallet): State<Arc<Wallet>>,
    AuthUser(me): AuthUser,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NewTransfer>,
) -> Result<Json<WalletTransfer>, ApiError> {
    let key = idempotency_key(&headers)?;
    let transfer = wallet
        .send_transfer(
            me.sub,
            UserId(body.to_user),
            body.amount_fen,
            body.memo,
            &body.pin,
            &key,
        )
        .await?;
    Ok(Json(transfer_body(transfer)))
}

/// A transfer you sent or were sent
#[utoipa::path(get, path = "/v1/wallet/transfers/{transfer_id}", tag = "wallet", security(("bearer" = [])),
    params(("transfer_id" = String, Path, description = "the transfer")),
    responses(
        (status = 200, description = "The transfer", body = WalletTransfer),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 404, description = "transfer_not_found: no such transfer of yours", body = ErrorBody),
))]
async fn transfer(
    State(wallet): State<Arc<Wallet>>,
    AuthUser(me): AuthUser,
    ApiPath(transfer_id): ApiPath<String>,
) -> Result<Json<WalletTransfer>, ApiError> {
    let id: TransferId = id_in_path(&transfer_id, WalletError::TransferNotFound)?;
    Ok(Json(transfer_body(wallet.transfer(me.sub, id).await?)))
}

/// Accept a transfer sent to you: the money is yours
#[utoipa::path(post, path = "/v1/wallet/transfers/{transfer_id}/accept", tag = "wallet", security(("bearer" = [])),
    params(
        ("transfer_id" = String, Path, description = "the transfer"),
        ("Idempotency-Key" = String, Header, description = "1 to 64 printable ASCII characters (no spaces) naming this request"),
    ),
    responses(
        (status = 200, description = "The transfer, accepted", body = WalletTransfer),
        (status = 400, description = "missing_idempotency_key, invalid_idempotency_key", body = ErrorBody),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 403, description = "real_name_required: the balance would pass the cap of an unverified wallet", body = ErrorBody),
        (status = 404, description = "transfer_not_found: no such transfer to you", body = ErrorBody),
        (status = 409, description = "transfer_closed, idempotency_key_reused", body = ErrorBody),
))]
async fn accept_transfer(
    State(wallet): State<Arc<Wallet>>,
    AuthUser(me): AuthUser,
    ApiPath(transfer_id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Json<WalletTransfer>, ApiError> {
    let id: TransferId = id_in_path(&transfer_id, WalletError::TransferNotFound)?;
    let key = idempotency_key(&headers)?;
    Ok(Json(transfer_body(
        wallet.accept_transfer(me.sub, id, &key).await?,
    )))
}

/// Decline a transfer sent to you: the money goes back to its sender
#[utoipa::path(post, path = "/v1/wallet/transfers/{transfer_id}/decline", tag = "wallet", security(("bearer" = [])),
    params(
        ("transfer_id" = String, Path, description = "the transfer"),
        ("Idempotency-Key" = String, Header, description = "1 to 64 printable ASCII characters (no spaces) naming this request"),
    ),
    responses(
        (status = 200, description = "The transfer, declined", body = WalletTransfer),
        (status = 400, description = "missing_idempotency_key, invalid_idempotency_key", body = ErrorBody),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 404, description = "transfer_not_found: no such transfer to you", body = ErrorBody),
        (status = 409, description = "transfer_closed, idempotency_key_reused", body = ErrorBody),
))]
async fn decline_transfer(
    State(wallet): State<Arc<Wallet>>,
    AuthUser(me): AuthUser,
    ApiPath(transfer_id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Json<WalletTransfer>, ApiError> {
    let id: TransferId = id_in_path(&transfer_id, WalletError::TransferNotFound)?;
    let key = idempotency_key(&headers)?;
    Ok(Json(transfer_body(
        wallet.decline_transfer(me.sub, id, &key).await?,
    )))
}

/// Send a red packet into a group (group_id) or your one-to-one chat (to_user): its amount is split into count shares that members grab, one each; the rest goes back to you when it expires. It appears in the chat as a Special of type "red_packet"
#[utoipa::path(post, path = "/v1/wallet/packets", tag = "wallet", security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "1 to 64 printable ASCII characters (no spaces) naming this request")),
    request_body = NewRedPacket,
    responses(
        (status = 200, description = "The red packet", body = RedPacket),
        (status = 400, description = "invalid_place, invalid_packet, too_many_shares, over_share_limit, invalid_amount, invalid_greeting, to_self, invalid_pin, over_operation_limit, missing_idempotency_key, invalid_idempotency_key", body = ErrorBody),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 402, description = "insufficient_funds", body = ErrorBody),
        (status = 403, description = "pin_not_set, wrong_pin, not_a_member, recipient_refuses", body = ErrorBody),
        (status = 404, description = "unknown_user", body = ErrorBody),
        (status = 409, description = "idempotency_key_reused", body = ErrorBody),
        (status = 423, description = "pin_locked", body = ErrorBody),
        (status = 429, description = "over_daily_limit, over_daily_count, too_fast", body = ErrorBody),
))]
async fn send_packet(
    State(wallet): State<Arc<Wallet>>,
    AuthUser(me): AuthUser,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NewRedPacket>,
) -> Result<Json<RedPacket>, ApiError> {
    let key = idempotency_key(&headers)?;
    let place = match (body.group_id, body.to_user) {
        (Some(group), None) => Place::Group(GroupId(group)),
        (None, Some(peer)) => Place::Direct(UserId(peer)),
        _ => {
            return Err(WalletError::Invalid {
                code: "invalid_place",
                reason: "name either group_id or to_user",
            }
            .into());
        }
    };
    let mode = match body.mode {
        RedPacketMode::Lucky => m::PacketMode::Lucky,
        RedPacketMode::Equal => m::PacketMode::Equal,
        RedPacketMode::Exclusive => m::PacketMode::Exclusive,
    };
    let packet = NewPacket {
        place,
        amount: body.amount_fen,
        count: body.count,
        mode,
        exclusive_to: body.exclusive_to.map(UserId),
        greeting: body.greeting,
    };
    let sent = wallet.send_packet(me.sub, packet, &body.pin, &key).await?;
    Ok(Json(packet_body(sent)))
}

/// A red packet you sent or may grab: its grabs so far and, once every share is taken, the luckiest grabber
#[utoipa::path(get, path = "/v1/wallet/packets/{packet_id}", tag = "wallet", security(("bearer" = [])),
    params(("packet_id" = String, Path, description = "the red packet")),
    responses(
        (status = 200, description = "The red packet", body = RedPacketDetails),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 404, description = "packet_not_found: no such red packet you may see", body = ErrorBody),
))]
async fn packet(
    State(wallet): State<Arc<Wallet>>,
    AuthUser(me): AuthUser,
    ApiPath(packet_id): ApiPath<String>,
) -> Result<Json<RedPacketDetails>, ApiError> {
    let id: PacketId = id_in_path(&packet_id, WalletError::PacketNotFound)?;
    let view = wallet.packet(me.sub, id).await?;
    Ok(Json(RedPacketDetails {
        packet: packet_body(view.packet),
        grabs: view.grabs.into_iter().map(grab_body).collect(),
        luckiest: view.luckiest.map(|u| u.0),
    }))
}

/// Grab a share of a red packet: at most one each
#[utoipa::path(post, path = "/v1/wallet/packets/{packet_id}/grab", tag = "wallet", security(("bearer" = [])),
    params(
        ("packet_id" = String, Path, description = "the red packet"),
        ("Idempotency-Key" = String, Header, description = "1 to 64 printable ASCII characters (no spaces) naming this request"),
    ),
    responses(
        (status = 200, description = "Your share, and the packet after it", body = PacketGrabbed),
        (status = 400, description = "missing_idempotency_key, invalid_idempotency_key", body = ErrorBody),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 403, description = "not_for_you, not_a_member, real_name_required", body = ErrorBody),
        (status = 404, description = "packet_not_found: no such red packet you may see", body = ErrorBody),
        (status = 409, description = "already_grabbed, packet_finished, packet_expired, idempotency_key_reused", body = ErrorBody),
))]
async fn grab(
    State(wallet): State<Arc<Wallet>>,
    AuthUser(me): AuthUser,
    ApiPath(packet_id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Json<PacketGrabbed>, ApiError> {
    let id: PacketId = id_in_path(&packet_id, WalletError::PacketNotFound)?;
    let key = idempotency_key(&headers)?;
    let grabbed = wallet.grab(me.sub, id, &key).await?;
    Ok(Json(PacketGrabbed {
        grab: grab_body(grabbed.grab),
        packet: packet_body(grabbed.packet),
    }))
}

/// Your wallet's entries, newest first: pass a page's next as before for the page after it
#[utoipa::path(get, path = "/v1/wallet/history", tag = "wallet", security(("bearer" = [])),
    params(HistoryQuery),
    responses(
        (status = 200, description = "A page of entries", body = WalletHistory),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
))]
async fn history(
    State(wallet): State<Arc<Wallet>>,
    AuthUser(me): AuthUser,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Json<WalletHistory>, ApiError> {
    let limit = match query.limit {
        None | Some(0) => DEFAULT_PAGE,
        Some(n) => n.min(MAX_PAGE),
    };
    let entries = wallet
        .history(me.sub, query.before.map(EntryId), limit)
        .await?;
    let full = entries.len() >= limit as usize;
    let next = entries.last().filter(|_| full).map(|e| e.id.0);
    Ok(Json(WalletHistory {
        entries: entries.into_iter().map(|e| entry_body(me.sub, e)).collect(),
        next,
    }))
}

/// One entry of your wallet, with the transfer, red packet or order it belongs to
#[utoipa::path(get, path = "/v1/wallet/entries/{entry_id}", tag = "wallet", security(("bearer" = [])),
    params(("entry_id" = String, Path, description = "the entry")),
    responses(
        (status = 200, description = "The entry", body = WalletEntryDetails),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 404, description = "entry_not_found: no such entry of your wallet", body = ErrorBody),
))]
async fn entry(
    State(wallet): State<Arc<Wallet>>,
    AuthUser(me): AuthUser,
    ApiPath(entry_id): ApiPath<String>,
) -> Result<Json<WalletEntryDetails>, ApiError> {
    let id: EntryId = id_in_path(&entry_id, WalletError::EntryNotFound)?;
    let detail = wallet.entry(me.sub, id).await?;
    Ok(Json(WalletEntryDetails {
        entry: entry_body(me.sub, detail.entry),
        transfer: detail.transfer.map(transfer_body),
        packet: detail.packet.map(packet_body),
        order: detail.order.map(order_body),
    }))
}

/// The payment provider's callback: a signed notice that a top-up was paid or failed, or a withdrawal settled or failed. No bearer token: the signature over the timestamp, the nonce and the raw body authenticates it. A notice already applied is answered 200 again and changes nothing
#[utoipa::path(post, path = "/v1/wallet/callback", tag = "wallet",
    params(
        ("Sandbox-Timestamp" = String, Header, description = "unix milliseconds (the sandbox provider's header names; each provider names its own)"),
        ("Sandbox-Nonce" = String, Header, description = "16 to 64 characters, never repeated"),
        ("Sandbox-Signature" = String, Header, description = "lowercase hex HMAC-SHA256 of the timestamp, a newline, the nonce, a newline and the body"),
    ),
    request_body(content = String, content_type = "application/octet-stream", description = "the provider's JSON notice, as signed"),
    responses(
        (status = 200, description = "Applied, or applied before", body = CallbackReceived),
        (status = 400, description = "malformed_callback, replayed_nonce, amount_mismatch, unknown_order, order_closed", body = ErrorBody),
        (status = 401, description = "bad_signature, stale_callback", body = ErrorBody),
        (status = 503, description = "busy: deliver it again later", body = ErrorBody),
))]
async fn callback(
    State(wallet): State<Arc<Wallet>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CallbackReceived>, ApiError> {
    let body = body.map_err(body_refused)?;
    let [timestamp, nonce, signature] = wallet.callback_header_names().map(|name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    });
    let notice = CallbackHeaders {
        timestamp,
        nonce,
        signature,
    };
    match wallet.callback(&notice, &body).await {
        Ok(()) => Ok(Json(CallbackReceived { received: true })),
        Err(refused) => {
            let mut error = ApiError::from(refused);
            // The provider delivers again on anything but 2xx: a server
            // failure may pass, a refusal never will, so every refusal is
            // 400 (or 401 for the credentials) whatever it means elsewhere.
            if error.status.is_client_error() && error.status != StatusCode::UNAUTHORIZED {
                error.status = StatusCode::BAD_REQUEST;
            }
            Err(error)
        }
    }
}

/// The request body's refusal as an API error.
fn body_refused(rejection: BytesRejection) -> ApiError {
    let (status, code) = if super::timed_out(&rejection) {
        (StatusCode::REQUEST_TIMEOUT, "body_timeout")
    } else if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
    } else {
        (StatusCode::BAD_REQUEST, "invalid_body")
    };
    ApiError::new(status, code, rejection.body_text())
}

/// The sandbox provider's checkout, standing in for the page where a payer pays a top-up: paid true pays it, false fails it, and the provider then sends its callback. No bearer token: the provider's reference, from pay_url, names the order. 404 when the provider is not the sandbox
#[utoipa::path(post, path = "/v1/wallet/sandbox/pay/{provider_ref}", tag = "wallet",
    params(("provider_ref" = String, Path, description = "the provider's reference of the top-up, from its pay_url")),
    request_body = SandboxPay,
    responses(
        (status = 202, description = "Paid (or failed); the callback follows"),
        (status = 404, description = "order_not_found: no top-up waiting for its payer has this reference (unknown, already paid or failed), or the provider is not the sandbox", body = ErrorBody),
        (status = 429, description = "rate_limited: too many checkouts from this address", body = ErrorBody),
))]
async fn sandbox_pay(
    State(wallet): State<Arc<Wallet>>,
    ApiPath(provider_ref): ApiPath<String>,
    ApiJson(body): ApiJson<SandboxPay>,
) -> Result<StatusCode, ApiError> {
    wallet.sandbox_pay(&provider_ref, body.paid).await?;
    Ok(StatusCode::ACCEPTED)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_money_request_without_an_idempotency_key_is_refused_with_its_own_code() {
        let err = idempotency_key(&HeaderMap::new()).unwrap_err();
        assert_eq!(
            (err.status, err.code.as_ref()),
            (StatusCode::BAD_REQUEST, "missing_idempotency_key")
        );
    }

    #[test]
    fn an_idempotency_key_is_one_to_64_printable_ascii_characters() {
        let with = |key: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(IDEMPOTENCY_KEY, key.parse().unwrap());
            idempotency_key(&headers)
        };
        assert_eq!(with("k-1").unwrap(), "k-1");
        assert_eq!(with(&"k".repeat(64)).unwrap().len(), 64);
        for bad in [String::new(), "k".repeat(65), "a b\t".to_string()] {
            let err = with(&bad).unwrap_err();
            assert_eq!(err.code, "invalid_idempotency_key", "{bad:?}");
        }
    }

    #[test]
    fn a_wrong_pin_is_forbidden_not_unauthorized_and_a_locked_one_says_when_to_retry() {
        let wrong = ApiError::from(WalletError::WrongPin { tries_left: 2 });
        assert_eq!(
            (wrong.status, wrong.code.as_ref()),
            (StatusCode::FORBIDDEN, "wrong_pin")
        );
        let locked = ApiError::from(WalletError::PinLocked {
            until_ms: now_ms() + 60_000,
        });
        assert_eq!(locked.status, StatusCode::LOCKED);
        let retry = locked.retry_after_ms.unwrap();
        assert!((1..=60_000).contains(&retry), "{retry}");
    }

    #[test]
    fn every_outcome_keeps_the_rooms_code_and_gets_a_fitting_status() {
        use StatusCode as S;
        let cases = [
            (WalletError::InsufficientFunds, S::PAYMENT_REQUIRED),
            (WalletError::IdempotencyKeyReused, S::CONFLICT),
            (WalletError::TransferNotFound, S::NOT_FOUND),
            (WalletError::AlreadyGrabbed, S::CONFLICT),
            (WalletError::NotForYou, S::FORBIDDEN),
            (WalletError::OverDailyLimit { max: 1 }, S::TOO_MANY_REQUESTS),
            (WalletError::OverOperationLimit { max: 1 }, S::BAD_REQUEST),
            (
                WalletError::TooFast { retry_after_ms: 5 },
                S::TOO_MANY_REQUESTS,
            ),
            (
                WalletError::CallbackRefused {
                    code: "bad_signature",
                },
                S::UNAUTHORIZED,
            ),
            (
                WalletError::CallbackRefused {
                    code: "malformed_callback",
                },
                S::BAD_REQUEST,
            ),
            (
                WalletError::ProviderUnavailable("down".into()),
                S::SERVICE_UNAVAILABLE,
            ),
            (WalletError::Store(StoreError::Busy), S::SERVICE_UNAVAILABLE),
        ];
        for (outcome, status) in cases {
            let code = outcome.code();
            let error = ApiError::from(outcome);
            assert_eq!((error.status, error.code.as_ref()), (status, code));
        }
    }

    #[test]
    fn an_entry_is_positive_for_money_in_and_negative_for_money_out() {
        let me = UserId(7);
        let entry = |debit, credit| Entry {
            id: EntryId(1),
            at_ms: 0,
            reason: Reason::TransferAccepted,
            debit,
            credit,
            amount: 250,
            reference: 9,
        };
        let incoming = entry_body(
            me,
            entry(Account::TransferEscrow(TransferId(9)), Account::Wallet(me)),
        );
        let outgoing = entry_body(
            me,
            entry(Account::Wallet(me), Account::TransferEscrow(TransferId(9))),
        );
        assert_eq!((incoming.amount_fen, outgoing.amount_fen), (250, -250));
        assert_eq!(outgoing.reference_id, 9);
    }
}
