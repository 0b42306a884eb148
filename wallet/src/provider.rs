//! The payment-provider port: what the wallet asks of whoever moves real
//! money in and out (WeChat Pay, Alipay, a bank), and what it accepts back.
//!
//! Money crosses the port twice: the wallet opens an order (a pay-in to
//! collect, a payout to send), and the provider reports the outcome later in
//! a signed HTTP callback. The port owns the provider's side of that
//! conversation: opening orders, the callback's header names, and turning a
//! callback into a [`Callback`] only when it is authentic and fresh. What the
//! callback does to the wallet's orders is the wallet's business.
//!
//! - [`signature`]: signing and checking callbacks (HMAC-SHA256 over
//!   timestamp, nonce and body), pure functions.
//! - [`sandbox`]: [`sandbox::SandboxProvider`], a provider that lives in the
//!   server's own memory and behaves like a real one, for development, tests
//!   and demonstrations.
//!
//! Contract of every provider: opening the same order twice (same
//! `order_id`, user and amount) answers the same reference and moves the
//! money once, as real providers do with a merchant's order number, so the
//! wallet may retry an open whose answer it lost. A callback may arrive more
//! than once and each delivery carries its own timestamp and nonce, so the
//! wallet credits by the order's state, never by a callback's arrival.

pub mod sandbox;
pub mod signature;

use superapp_kit::BoxFuture;
pub use superapp_proto::UserId;

/// A top-up the wallet asks the provider to collect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayIn {
    /// The wallet's order; the provider's idempotency key for this pay-in.
    pub order_id: u64,
    /// Whose wallet the money is for.
    pub user: UserId,
    /// How much to collect, in fen; positive.
    pub amount_fen: i64,
}

/// Where the payer completes a pay-in, and the provider's own reference for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayInStart {
    /// The provider's reference; its callbacks name it.
    pub provider_ref: String,
    /// The page where the payer pays.
    pub pay_url: String,
}

/// A withdrawal the wallet asks the provider to pay out to the user's bank card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payout {
    /// The wallet's order; the provider's idempotency key for this payout.
    pub order_id: u64,
    /// Whose card receives the money.
    pub user: UserId,
    /// How much to pay out, in fen; positive.
    pub amount_fen: i64,
}

/// The headers a callback carries (names are the provider's; the edge reads them
/// by [`PaymentProvider::header_names`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackHeaders {
    /// When the provider signed the callback, as the provider spells it.
    pub timestamp: String,
    /// A value the provider never repeats; the wallet refuses one it has seen.
    pub nonce: String,
    /// The provider's signature over timestamp, nonce and body.
    pub signature: String,
}

/// A verified callback: what happened to which order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    /// The delivery's nonce, for the wallet's replay check.
    pub nonce: String,
    /// When the provider signed it, in Unix milliseconds.
    pub timestamp_ms: i64,
    /// What happened.
    pub event: CallbackEvent,
}

/// What a callback reports. Amounts are the provider's word, which the wallet
/// compares with its order before believing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackEvent {
    /// The payer paid `amount_fen`.
    PayInPaid {
        order_id: u64,
        provider_ref: String,
        amount_fen: i64,
    },
    /// The payer did not pay; nothing was collected.
    PayInFailed { order_id: u64, provider_ref: String },
    /// `amount_fen` reached the user's card.
    PayoutSettled {
        order_id: u64,
        provider_ref: String,
        amount_fen: i64,
    },
    /// The payout did not happen; the wallet returns the money to the user.
    PayoutFailed { order_id: u64, provider_ref: String },
}

impl CallbackEvent {
    /// The wallet's order the event is about.
    pub fn order_id(&self) -> u64 {
        match self {
            Self::PayInPaid { order_id, .. }
            | Self::PayInFailed { order_id, .. }
            | Self::PayoutSettled { order_id, .. }
            | Self::PayoutFailed { order_id, .. } => *order_id,
        }
    }

    /// The provider's reference of the order.
    pub fn provider_ref(&self) -> &str {
        match self {
            Self::PayInPaid { provider_ref, .. }
            | Self::PayInFailed { provider_ref, .. }
            | Self::PayoutSettled { provider_ref, .. }
            | Self::PayoutFailed { provider_ref, .. } => provider_ref,
        }
    }

    /// A stable name of the event for logs and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::PayInPaid { .. } => "pay_in.paid",
            Self::PayInFailed { .. } => "pay_in.failed",
            Self::PayoutSettled { .. } => "payout.settled",
            Self::PayoutFailed { .. } => "payout.failed",
        }
    }
}

/// Why a callback was refused before it touched any order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackRefusal {
    /// The signature is not the provider's over these headers and this body.
    #[error("the callback's signature does not match")]
    BadSignature,
    /// The timestamp is outside the window around now; `age_ms` is now minus
    /// the timestamp, negative for a timestamp in the future.
    #[error("the callback was signed {age_ms} ms ago, outside the accepted window")]
    Stale { age_ms: i64 },
    /// A header or the body does not read; the reason names which.
    #[error("malformed callback: {0}")]
    Malformed(&'static str),
}

impl CallbackRefusal {
    /// The stable code the edge answers with.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadSignature => "bad_signature",
            Self::Stale { .. } => "stale_callback",
            Self::Malformed(_) => "malformed_callback",
        }
    }
}

/// The provider could not take the order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The provider did not answer or failed; the same open may be retried.
    #[error("the payment provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider looked at the order and will not take it; retrying the
    /// same order will not help.
    #[error("the payment provider refused the order: {0}")]
    Refused(String),
}

impl ProviderError {
    /// The stable code the edge answers with.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "provider_unavailable",
            Self::Refused(_) => "provider_refused",
        }
    }
}

/// A payment provider, as the wallet sees it. Implementations are shared
/// behind an `Arc` by the wallet and the edge.
pub trait PaymentProvider: Send + Sync + 'static {
    /// The provider's name, for logs and for the wallet's record of orders.
    fn name(&self) -> &'static str;

    /// The three header names callbacks carry: (timestamp, nonce, signature).
    fn header_names(&self) -> [&'static str; 3];

    /// Opens a pay-in: answers where the payer pays. The outcome arrives later
    /// as a callback. Opening the same order again answers the same start.
    fn open_pay_in(&self, pay_in: PayIn) -> BoxFuture<'_, Result<PayInStart, ProviderError>>;

    /// Opens a payout and answers the provider's reference; the outcome
    /// arrives later as a callback. Opening the same order again answers the
    /// same reference and pays once.
    fn open_payout(&self, payout: Payout) -> BoxFuture<'_, Result<String, ProviderError>>;

    /// Checks the signature (HMAC-SHA256 over timestamp, nonce and body) and the
    /// timestamp (within the configured window of `now_ms`, both directions), and
    /// parses the body. Replayed nonces and amounts are NOT checked here: the wallet
    /// checks a nonce against its store and an amount against its order.
    fn verify(
        &self,
        headers: &CallbackHeaders,
        body: &[u8],
        now_ms: i64,
    ) -> Result<Callback, CallbackRefusal>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_and_provider_errors_have_stable_codes() {
        assert_eq!(CallbackRefusal::BadSignature.code(), "bad_signature");
        assert_eq!(
            CallbackRefusal::Stale { age_ms: 1 }.code(),
            "stale_callback"
        );
        assert_eq!(CallbackRefusal::Malformed("x").code(), "malformed_callback");
        assert_eq!(
            ProviderError::Unavailable("down".into()).code(),
            "provider_unavailable"
        );
        assert_eq!(
            ProviderError::Refused("no".into()).code(),
            "provider_refused"
        );
    }

    #[test]
    fn every_event_names_its_order_and_reference() {
        let events = [
            CallbackEvent::PayInPaid {
                order_id: 1,
                provider_ref: "a".into(),
                amount_fen: 5,
            },
            CallbackEvent::PayInFailed {
                order_id: 2,
                provider_ref: "b".into(),
            },
            CallbackEvent::PayoutSettled {
                order_id: 3,
                provider_ref: "c".into(),
                amount_fen: 5,
            },
            CallbackEvent::PayoutFailed {
                order_id: 4,
                provider_ref: "d".into(),
            },
        ];
        let seen: Vec<_> = events
            .iter()
            .map(|e| (e.order_id(), e.provider_ref(), e.kind()))
            .collect();
        assert_eq!(
            seen,
            [
                (1, "a", "pay_in.paid"),
                (2, "b", "pay_in.failed"),
                (3, "c", "payout.settled"),
                (4, "d", "payout.failed"),
            ]
        );
    }
}
