//! The sandbox payment provider: a stand-in for WeChat Pay, Alipay or a bank
//! that lives in the server's own memory and moves no real money.
//!
//! It behaves as a real provider does at the port, so the wallet's code path
//! is the one a real provider will drive:
//!
//! - Orders are opened idempotently by the wallet's `order_id`: the same
//!   order again answers the same reference, a different user or amount under
//!   the same `order_id` is refused.
//! - A pay-in answers a pay page (`<callback origin>/v1/wallet/sandbox/pay/<ref>`,
//!   served by the edge), where the payer pays or declines; the edge then
//!   calls [`SandboxProvider::complete`].
//! - A payout settles by itself after `payout_delay_ms`, or fails when its
//!   amount ends in 13 fen ([`payout_fails`]), so reversals can be tried.
//! - Outcomes arrive as signed HTTP callbacks (POST, JSON, three `Sandbox-*`
//!   headers), delivered `deliveries` times at once, each retried with
//!   exponential backoff until the receiver answers 2xx, each attempt with
//!   its own timestamp and nonce as real providers re-sign a redelivery.
//!
//! Its memory is the process's: a restart forgets every open order, and it
//! remembers the most recent [`REMEMBERED_ORDERS`] orders only.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use reqwest::Url;
use serde::{Deserialize, Serialize};
use superapp_kit::BoxFuture;
use superapp_kit::clock::SharedClock;
use superapp_kit::secret::Secret;
use tokio::sync::Notify;

use super::signature::{sign, verify_signature};
use super::{
    Callback, CallbackEvent, CallbackHeaders, CallbackRefusal, PayIn, PayInStart, PaymentProvider,
    Payout, ProviderError, UserId,
};

/// The header carrying the time of signing, in Unix milliseconds.
pub const TIMESTAMP_HEADER: &str = "Sandbox-Timestamp";
/// The header carrying the delivery's nonce.
pub const NONCE_HEADER: &str = "Sandbox-Nonce";
/// The header carrying the signature (lowercase hex HMAC-SHA256).
pub const SIGNATURE_HEADER: &str = "Sandbox-Signature";
/// Where, under the callback URL's origin, the payer completes a pay-in; the
/// provider reference follows.
pub const PAY_PATH: &str = "/v1/wallet/sandbox/pay/";
/// The provider reference's prefix.
pub const REF_PREFIX: &str = "sbx_";

/// How long a payout takes to settle unless configured.
pub const DEFAULT_PAYOUT_DELAY_MS: u64 = 2_000;
/// How far a callback's timestamp may be from now, either way, unless
/// configured: five minutes, as WeChat Pay advises its merchants.
pub const DEFAULT_WINDOW_MS: i64 = 300_000;
/// A payout whose amount ends in these fen fails ([`payout_fails`]).
pub const FAILING_PAYOUT_FEN: i64 = 13;
/// How many orders the sandbox remembers; opening one more forgets the
/// oldest, so its memory stays bounded however long it runs.
pub const REMEMBERED_ORDERS: usize = 100_000;

/// A nonce is this many characters, letters, digits, `-` and `_`: enough to
/// be unique, short enough to store, and never a field separator of the
/// signed message.
const NONCE_CHARS: std::ops::RangeInclusive<usize> = 16..=64;
/// One delivery attempt's deadline, connection included: a receiver that
/// hangs counts as one that failed, and the next attempt follows.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How the sandbox retries and what it remembers. Fixed in a running server;
/// the tests shorten it.
#[derive(Debug, Clone, Copy)]
struct Tuning {
    /// The wait before the second attempt; each later wait doubles.
    first_retry: Duration,
    /// The longest wait between attempts.
    max_retry: Duration,
    /// Attempts per delivery before it is given up and logged. With the
    /// waits above, ten attempts span about 80 s: a receiver restarting
    /// within that time still gets its callback.
    tries: u32,
    /// See [`REMEMBERED_ORDERS`].
    remembered: usize,
}

const TUNING: Tuning = Tuning {
    first_retry: Duration::from_millis(200),
    max_retry: Duration::from_secs(30),
    tries: 10,
    remembered: REMEMBERED_ORDERS,
};

/// Whether the sandbox fails a payout of this amount: when its last two
/// digits are 13 fen (0.13, 1.13, 10.13 yuan ...). A documented,
/// deterministic failure, so tests and users can try a payout's reversal.
pub fn payout_fails(amount_fen: i64) -> bool {
    amount_fen.rem_euclid(100) == FAILING_PAYOUT_FEN
}

/// The sandbox's configuration.
#[derive(Clone)]
pub struct SandboxConfig {
    /// The key callbacks are signed with, shared with the verifying side
    /// (taken from a `kit::secret::Secret` at wiring; never printed).
    pub secret: Vec<u8>,
    /// Where callbacks are POSTed: the server's own callback route, by an
    /// address the server can reach itself at. Its origin also serves the
    /// pay page.
    pub callback_url: String,
    /// How long after it is opened a payout settles (or fails).
    pub payout_delay_ms: u64,
    /// How far a callback's timestamp may be from now, either way.
    pub window_ms: i64,
    /// How many times each callback is delivered (0 is taken as 1). Real
    /// providers sometimes deliver twice; tests set 3 to prove that the
    /// wallet credits exactly once.
    pub deliveries: u32,
}

impl SandboxConfig {
    /// A configuration with the defaults: payouts settle after
    /// [`DEFAULT_PAYOUT_DELAY_MS`], the window is [`DEFAULT_WINDOW_MS`], and
    /// each callback is delivered once.
    pub fn new(secret: Vec<u8>, callback_url: impl Into<String>) -> Self {
        Self {
            secret,
            callback_url: callback_url.into(),
            payout_delay_ms: DEFAULT_PAYOUT_DELAY_MS,
            window_ms: DEFAULT_WINDOW_MS,
            deliveries: 1,
        }
    }
}

impl fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("secret", &"[redacted]")
            .field("callback_url", &self.callback_url)
            .field("payout_delay_ms", &self.payout_delay_ms)
            .field("window_ms", &self.window_ms)
            .field("deliveries", &self.deliveries)
            .finish()
    }
}

/// What the sandbox's own operations (beyond the port) can answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    /// The callback URL is not an absolute `http` or `https` URL with a host.
    #[error("the sandbox's callback URL is not an http(s) URL with a host: {0}")]
    InvalidCallbackUrl(String),
    /// The HTTP client that delivers callbacks could not be built.
    #[error("the sandbox's HTTP client could not be built: {0}")]
    HttpClient(String),
    /// No pay-in the sandbox remembers has this reference.
    #[error("no sandbox pay-in has this reference")]
    UnknownPayment,
    /// The payer already paid or declined this pay-in.
    #[error("this sandbox pay-in was already completed")]
    AlreadyCompleted,
}

impl SandboxError {
    /// The stable code the edge answers with.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidCallbackUrl(_) => "invalid_callback_url",
            Self::HttpClient(_) => "sandbox_unavailable",
            Self::UnknownPayment => "unknown_payment",
            Self::AlreadyCompleted => "payment_already_completed",
        }
    }
}

/// The sandbox provider. Clones share one memory of orders.
#[derive(Clone)]
pub struct SandboxProvider {
    inner: Arc<Inner>,
}

struct Inner {
    secret: Secret<Vec<u8>>,
    callback_url: Url,
    /// The callback URL's origin, which the pay page shares.
    origin: String,
    payout_delay: Duration,
    window_ms: u64,
    deliveries: u32,
    clock: SharedClock,
    http: reqwest::Client,
    tuning: Tuning,
    orders: Mutex<Orders>,
    /// Tasks still sending a callback (or waiting to settle a payout), and a
    /// wake-up for [`SandboxProvider::idle`] when the count reaches zero.
    in_flight: AtomicUsize,
    drained: Notify,
}

impl SandboxProvider {
    /// A sandbox sending its callbacks to `config.callback_url`, signing them
    /// at the time `clock` tells.
    pub fn new(config: SandboxConfig, clock: SharedClock) -> Result<Self, SandboxError> {
        Self::with_tuning(config, clock, TUNING)
    }

    fn with_tuning(
        config: SandboxConfig,
        clock: SharedClock,
        tuning: Tuning,
    ) -> Result<Self, SandboxError> {
        let invalid = || SandboxError::InvalidCallbackUrl(config.callback_url.clone());
        let callback_url = Url::parse(&config.callback_url).map_err(|_| invalid())?;
        if !matches!(callback_url.scheme(), "http" | "https") || callback_url.host().is_none() {
            return Err(invalid());
        }
        let origin = callback_url.origin().ascii_serialization();
        // The callback goes to the server itself: a proxy from the
        // environment would carry it elsewhere.
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(|e| SandboxError::HttpClient(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                secret: Secret::new(config.secret),
                callback_url,
                origin,
                payout_delay: Duration::from_millis(config.payout_delay_ms),
                window_ms: u64::try_from(config.window_ms).unwrap_or(0),
                deliveries: config.deliveries.max(1),
                clock,
                http,
                tuning,
                orders: Mutex::new(Orders::default()),
                in_flight: AtomicUsize::new(0),
                drained: Notify::new(),
            }),
        })
    }

    /// The pay-in behind a reference that is still waiting for its payer, for
    /// the pay page to show what is being paid.
    pub fn pay_in(&self, provider_ref: &str) -> Result<PayIn, SandboxError> {
        let orders = self.inner.orders();
        let order = orders.pay_in(provider_ref)?;
        Ok(PayIn {
            order_id: order.order_id,
            user: order.user,
            amount_fen: order.amount_fen,
        })
    }

    /// The payer paid (`paid`) or declined a pay-in: sends the signed
    /// `pay_in.paid` or `pay_in.failed` callback in the background. A pay-in
    /// is completed once; the callback's deliveries and retries are the
    /// sandbox's business from here on.
    pub async fn complete(&self, provider_ref: &str, paid: bool) -> Result<(), SandboxError> {
        let order = self.inner.orders().complete_pay_in(provider_ref)?;
        let provider_ref = provider_ref.to_owned();
        let event = if paid {
            CallbackEvent::PayInPaid {
                order_id: order.order_id,
                provider_ref,
                amount_fen: order.amount_fen,
            }
        } else {
            CallbackEvent::PayInFailed {
                order_id: order.order_id,
                provider_ref,
            }
        };
        send(&self.inner, event);
        Ok(())
    }

    /// Exactly what the sandbox would send for `event_json` at `timestamp_ms`
    /// with `nonce`: the headers and the body. For tests, which replay,
    /// tamper with, age or change the amount of a callback with it.
    pub fn signed_request(
        &self,
        event_json: &[u8],
        timestamp_ms: i64,
        nonce: &str,
    ) -> (CallbackHeaders, Vec<u8>) {
        self.inner.signed_request(event_json, timestamp_ms, nonce)
    }

    /// Resolves once every payout waiting to settle and every callback sent
    /// so far has been delivered or given up. For tests and for an orderly
    /// stop; callbacks sent meanwhile are waited for too.
    pub async fn idle(&self) {
        loop {
            let mut drained = std::pin::pin!(self.inner.drained.notified());
            // Registered before the count is read, so a task finishing in
            // between still wakes this wait.
            drained.as_mut().enable();
            if self.inner.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            drained.await;
        }
    }
}

/// The sandbox's body of a callback event: JSON with the order id as a
/// string (ids exceed 2^53), e.g. `{"event":"pay_in.paid","order_id":"123",
/// "provider_ref":"sbx_..","amount_fen":1000}`.
pub fn encode_event(event: &CallbackEvent) -> Vec<u8> {
    let wire = match event.clone() {
        CallbackEvent::PayInPaid {
            order_id,
            provider_ref,
            amount_fen,
        } => WireEvent::PayInPaid {
            order_id: order_id.to_string(),
            provider_ref,
            amount_fen,
        },
        CallbackEvent::PayInFailed {
            order_id,
            provider_ref,
        } => WireEvent::PayInFailed {
            order_id: order_id.to_string(),
            provider_ref,
        },
        CallbackEvent::PayoutSettled {
            order_id,
            provider_ref,
            amount_fen,
        } => WireEvent::PayoutSettled {
            order_id: order_id.to_string(),
            provider_ref,
            amount_fen,
        },
        CallbackEvent::PayoutFailed {
            order_id,
            provider_ref,
        } => WireEvent::PayoutFailed {
            order_id: order_id.to_string(),
            provider_ref,
        },
    };
    // Infallible: strings and integers in a struct always serialise to JSON.
    #[allow(clippy::expect_used)]
    serde_json::to_vec(&wire).expect("a callback event serialises")
}

fn decode_event(body: &[u8]) -> Result<CallbackEvent, CallbackRefusal> {
    let wire: WireEvent = serde_json::from_slice(body)
        .map_err(|_| CallbackRefusal::Malformed("body is not a sandbox event"))?;
    let order = |id: &str| {
        canonical_decimal(id).ok_or(CallbackRefusal::Malformed(
            "order_id is not a decimal number",
        ))
    };
    let reference = |r: String| {
        if r.is_empty() {
            Err(CallbackRefusal::Malformed("provider_ref is empty"))
        } else {
            Ok(r)
        }
    };
    let amount = |fen: i64| {
        if fen > 0 {
            Ok(fen)
        } else {
            Err(CallbackRefusal::Malformed("amount_fen is not positive"))
        }
    };
    Ok(match wire {
        WireEvent::PayInPaid {
            order_id,
            provider_ref,
            amount_fen,
        } => CallbackEvent::PayInPaid {
            order_id: order(&order_id)?,
            provider_ref: reference(provider_ref)?,
            amount_fen: amount(amount_fen)?,
        },
        WireEvent::PayInFailed {
            order_id,
            provider_ref,
        } => CallbackEvent::PayInFailed {
            order_id: order(&order_id)?,
            provider_ref: reference(provider_ref)?,
        },
        WireEvent::PayoutSettled {
            order_id,
            provider_ref,
            amount_fen,
        } => CallbackEvent::PayoutSettled {
            order_id: order(&order_id)?,
            provider_ref: reference(provider_ref)?,
            amount_fen: amount(amount_fen)?,
        },
        WireEvent::PayoutFailed {
            order_id,
            provider_ref,
        } => CallbackEvent::PayoutFailed {
            order_id: order(&order_id)?,
            provider_ref: reference(provider_ref)?,
        },
    })
}

/// The JSON of a callback body. Unknown fields are ignored, as a receiver of
/// a real provider's callbacks must expect fields to be added.
#[derive(Serialize, Deserialize)]
#[serde(tag = "event")]
enum WireEvent {
    #[serde(rename = "pay_in.paid")]
    PayInPaid {
        order_id: String,
        provider_ref: String,
        amount_fen: i64,
    },
    #[serde(rename = "pay_in.failed")]
    PayInFailed {
        order_id: String,
        provider_ref: String,
    },
    #[serde(rename = "payout.settled")]
    PayoutSettled {
        order_id: String,
        provider_ref: String,
        amount_fen: i64,
    },
    #[serde(rename = "payout.failed")]
    PayoutFailed {
        order_id: String,
        provider_ref: String,
    },
}

/// A number in its one spelling: digits only, no sign, no leading zero.
fn canonical_decimal(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

fn nonce_is_well_formed(nonce: &str) -> bool {
    NONCE_CHARS.contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// 32 lowercase hex digits from the thread's CSPRNG: a provider reference's
/// tail, or a nonce.
fn random_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl PaymentProvider for SandboxProvider {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    fn header_names(&self) -> [&'static str; 3] {
        [TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER]
    }

    fn open_pay_in(&self, pay_in: PayIn) -> BoxFuture<'_, Result<PayInStart, ProviderError>> {
        Box::pin(async move {
            let provider_ref = self
                .inner
                .orders()
                .open(
                    Direction::PayIn,
                    pay_in.order_id,
                    pay_in.user,
                    pay_in.amount_fen,
                    self.inner.tuning.remembered,
                )?
                .reference();
            Ok(PayInStart {
                pay_url: format!("{}{PAY_PATH}{provider_ref}", self.inner.origin),
                provider_ref,
            })
        })
    }

    fn open_payout(&self, payout: Payout) -> BoxFuture<'_, Result<String, ProviderError>> {
        Box::pin(async move {
            let opened = self.inner.orders().open(
                Direction::Payout,
                payout.order_id,
                payout.user,
                payout.amount_fen,
                self.inner.tuning.remembered,
            )?;
            let provider_ref = match opened {
                Opened::Again(provider_ref) => return Ok(provider_ref),
                Opened::New(provider_ref) => provider_ref,
            };
            let inner = Arc::clone(&self.inner);
            let settling = provider_ref.clone();
            track(&self.inner, async move {
                tokio::time::sleep(inner.payout_delay).await;
                let event = if payout_fails(payout.amount_fen) {
                    CallbackEvent::PayoutFailed {
                        order_id: payout.order_id,
                        provider_ref: settling,
                    }
                } else {
                    CallbackEvent::PayoutSettled {
                        order_id: payout.order_id,
                        provider_ref: settling,
                        amount_fen: payout.amount_fen,
                    }
                };
                send(&inner, event);
            });
            Ok(provider_ref)
        })
    }

    fn verify(
        &self,
        headers: &CallbackHeaders,
        body: &[u8],
        now_ms: i64,
    ) -> Result<Callback, CallbackRefusal> {
        // Only the shape of what is unauthenticated is read before the
        // signature is checked; the body is parsed once it is the sandbox's.
        let timestamp_ms = canonical_decimal(&headers.timestamp)
            .and_then(|ms| i64::try_from(ms).ok())
            .ok_or(CallbackRefusal::Malformed(
                "timestamp is not Unix milliseconds",
            ))?;
        if !nonce_is_well_formed(&headers.nonce) {
            return Err(CallbackRefusal::Malformed(
                "nonce is not 16 to 64 letters, digits, '-' or '_'",
            ));
        }
        if !verify_signature(
            self.inner.secret.expose(),
            &headers.timestamp,
            &headers.nonce,
            body,
            &headers.signature,
        ) {
            return Err(CallbackRefusal::BadSignature);
        }
        // Both directions: a callback from the future is as suspect as an old
        // one, and a nonce need only be remembered for the window's span.
        let age_ms = now_ms.saturating_sub(timestamp_ms);
        if age_ms.unsigned_abs() > self.inner.window_ms {
            return Err(CallbackRefusal::Stale { age_ms });
        }
        Ok(Callback {
            nonce: headers.nonce.clone(),
            timestamp_ms,
            event: decode_event(body)?,
        })
    }
}

impl Inner {
    fn orders(&self) -> MutexGuard<'_, Orders> {
        // Every update of the orders is whole before anything can panic, so
        // a poisoned lock still guards consistent maps.
        self.orders.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn signed_request(
        &self,
        event_json: &[u8],
        timestamp_ms: i64,
        nonce: &str,
    ) -> (CallbackHeaders, Vec<u8>) {
        let timestamp = timestamp_ms.to_string();
        let signature = sign(self.secret.expose(), &timestamp, nonce, event_json);
        (
            CallbackHeaders {
                timestamp,
                nonce: nonce.to_owned(),
                signature,
            },
            event_json.to_vec(),
        )
    }

    /// One delivery: attempts until the receiver answers 2xx, waiting twice
    /// as long after each failure, and gives up after `tuning.tries`. Each
    /// attempt is signed anew, so a late retry is still within the window.
    async fn deliver(&self, event: &CallbackEvent, body: &[u8]) {
        let mut wait = self.tuning.first_retry;
        for attempt in 1..=self.tuning.tries {
            let (headers, body) = self.signed_request(body, self.clock.now_ms(), &random_token());
            let answer = self
                .http
                .post(self.callback_url.clone())
                .header(TIMESTAMP_HEADER, headers.timestamp)
                .header(NONCE_HEADER, headers.nonce)
                .header(SIGNATURE_HEADER, headers.signature)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await;
            match answer {
                Ok(answer) if answer.status().is_success() => return,
                Ok(answer) => tracing::debug!(
                    event = event.kind(),
                    order_id = event.order_id(),
                    attempt,
                    status = answer.status().as_u16(),
                    "sandbox callback refused by its receiver"
                ),
                Err(error) => tracing::debug!(
                    event = event.kind(),
                    order_id = event.order_id(),
                    attempt,
                    %error,
                    "sandbox callback not delivered"
                ),
            }
            if attempt < self.tuning.tries {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(self.tuning.max_retry);
            }
        }
        tracing::warn!(
            event = event.kind(),
            order_id = event.order_id(),
            provider_ref = event.provider_ref(),
            tries = self.tuning.tries,
            "sandbox gave up delivering a callback"
        );
    }
}

/// Sends `event` to the callback URL `deliveries` times at once, as a real
/// provider's redelivery can overlap its first attempt.
fn send(inner: &Arc<Inner>, event: CallbackEvent) {
    let body: Arc<[u8]> = encode_event(&event).into();
    let event = Arc::new(event);
    for _ in 0..inner.deliveries {
        let (sender, event, body) = (Arc::clone(inner), Arc::clone(&event), Arc::clone(&body));
        track(inner, async move { sender.deliver(&event, &body).await });
    }
}

/// Spawns `task`, counted in `in_flight` until it ends or is dropped.
fn track(inner: &Arc<Inner>, task: impl Future<Output = ()> + Send + 'static) {
    /// Uncounts its task when dropped: when it ends, and also when the
    /// runtime shuts down under it.
    struct Counted(Arc<Inner>);
    impl Drop for Counted {
        fn drop(&mut self) {
            if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
                self.0.drained.notify_waiters();
            }
        }
    }
    inner.in_flight.fetch_add(1, Ordering::SeqCst);
    let counted = Counted(Arc::clone(inner));
    tokio::spawn(async move {
        let _counted = counted;
        task.await;
    });
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Direction {
    PayIn,
    Payout,
}

#[derive(Debug, Clone)]
struct Order {
    direction: Direction,
    order_id: u64,
    user: UserId,
    amount_fen: i64,
    completed: bool,
}

enum Opened {
    New(String),
    Again(String),
}

impl Opened {
    fn reference(self) -> String {
        match self {
            Self::New(r) | Self::Again(r) => r,
        }
    }
}

/// The sandbox's memory of orders. `by_order` and `by_ref` always hold the
/// same orders, and `age` lists their references oldest first.
#[derive(Default)]
struct Orders {
    by_ref: HashMap<String, Order>,
    by_order: HashMap<(Direction, u64), String>,
    age: VecDeque<String>,
}

impl Orders {
    fn open(
        &mut self,
        direction: Direction,
        order_id: u64,
        user: UserId,
        amount_fen: i64,
        remembered: usize,
    ) -> Result<Opened, ProviderError> {
        if amount_fen <= 0 {
            return Err(ProviderError::Refused("the amount is not positive".into()));
        }
        if let Some(known) = self
            .by_order
            .get(&(direction, order_id))
            .and_then(|r| self.by_ref.get(r).map(|order| (r, order)))
        {
            let (provider_ref, order) = known;
            return if order.user == user && order.amount_fen == amount_fen {
                Ok(Opened::Again(provider_ref.clone()))
            } else {
                Err(ProviderError::Refused(
                    "this order_id was opened for another user or amount".into(),
                ))
            };
        }
        let provider_ref = format!("{REF_PREFIX}{}", random_token());
        self.by_ref.insert(
            provider_ref.clone(),
            Order {
                direction,
                order_id,
                user,
                amount_fen,
                completed: false,
            },
        );
        self.by_order
            .insert((direction, order_id), provider_ref.clone());
        self.age.push_back(provider_ref.clone());
        while self.age.len() > remembered.max(1) {
            if let Some(oldest) = self.age.pop_front()
                && let Some(order) = self.by_ref.remove(&oldest)
            {
                self.by_order.remove(&(order.direction, order.order_id));
            }
        }
        Ok(Opened::New(provider_ref))
    }

    fn pay_in(&self, provider_ref: &str) -> Result<&Order, SandboxError> {
        let order = self
            .by_ref
            .get(provider_ref)
            .filter(|order| order.direction == Direction::PayIn)
            .ok_or(SandboxError::UnknownPayment)?;
        if order.completed {
            return Err(SandboxError::AlreadyCompleted);
        }
        Ok(order)
    }

    fn complete_pay_in(&mut self, provider_ref: &str) -> Result<Order, SandboxError> {
        self.pay_in(provider_ref)?;
        let order = self
            .by_ref
            .get_mut(provider_ref)
            .ok_or(SandboxError::UnknownPayment)?;
        order.completed = true;
        Ok(order.clone())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::convert::Infallible;
    use std::net::SocketAddr;

    use http_body::Body as _;
    use hyper::body::Incoming;
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;
    use superapp_kit::clock::{Clock, SystemClock};
    use tokio::net::TcpListener;

    use super::*;

    const SECRET: &[u8] = b"a sandbox secret of some length";
    const NONCE: &str = "0123456789abcdef0123";
    const NOW: i64 = 1_700_000_000_000;

    fn fast() -> Tuning {
        Tuning {
            first_retry: Duration::from_millis(5),
            max_retry: Duration::from_millis(20),
            tries: 3,
            remembered: REMEMBERED_ORDERS,
        }
    }

    fn sandbox_to(
        url: &str,
        configure: impl FnOnce(&mut SandboxConfig),
        tuning: Tuning,
    ) -> SandboxProvider {
        let mut config = SandboxConfig::new(SECRET.to_vec(), url);
        configure(&mut config);
        SandboxProvider::with_tuning(config, Arc::new(SystemClock), tuning).unwrap()
    }

    fn sandbox() -> SandboxProvider {
        sandbox_to(
            "http://127.0.0.1:9/v1/wallet/callbacks/sandbox",
            |_| {},
            fast(),
        )
    }

    fn paid(order_id: u64, amount_fen: i64) -> CallbackEvent {
        CallbackEvent::PayInPaid {
            order_id,
            provider_ref: "sbx_0123".into(),
            amount_fen,
        }
    }

    /// One request as the test's receiver saw it, and what it answered.
    #[derive(Debug, Clone)]
    struct Seen {
        headers: CallbackHeaders,
        body: Vec<u8>,
        status: u16,
    }

    /// A real HTTP server on a free port that answers 500 to its first
    /// `failures` requests and 200 after, recording each one.
    struct Receiver {
        addr: SocketAddr,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl Receiver {
        async fn start(failures: usize) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let seen = Arc::new(Mutex::new(Vec::new()));
            let recorded = Arc::clone(&seen);
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let recorded = Arc::clone(&recorded);
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let recorded = Arc::clone(&recorded);
                        async move {
                            let (parts, mut incoming) = request.into_parts();
                            let header = |name: &str| {
                                parts
                                    .headers
                                    .get(name)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or_default()
                                    .to_owned()
                            };
                            let headers = CallbackHeaders {
                                timestamp: header(TIMESTAMP_HEADER),
                                nonce: header(NONCE_HEADER),
                                signature: header(SIGNATURE_HEADER),
                            };
                            let mut body = Vec::new();
                            while let Some(frame) = std::future::poll_fn(|cx| {
                                std::pin::Pin::new(&mut incoming).poll_frame(cx)
                            })
                            .await
                            {
                                if let Ok(data) = frame.unwrap().into_data() {
                                    body.extend_from_slice(&data);
                                }
                            }
                            let mut seen = recorded.lock().unwrap();
                            let status = if seen.len() < failures { 500 } else { 200 };
                            seen.push(Seen {
                                headers,
                                body,
                                status,
                            });
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .body(String::new())
                                    .unwrap(),
                            )
                        }
                    });
                    tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            Self { addr, seen }
        }

        fn url(&self) -> String {
            format!("http://{}/v1/wallet/callbacks/sandbox", self.addr)
        }

        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    #[test]
    fn verify_accepts_what_signed_request_built_for_every_event() {
        let sandbox = sandbox();
        let events = [
            paid(u64::MAX, 1000),
            CallbackEvent::PayInFailed {
                order_id: 1,
                provider_ref: "sbx_1".into(),
            },
            CallbackEvent::PayoutSettled {
                order_id: 2,
                provider_ref: "sbx_2".into(),
                amount_fen: 1,
            },
            CallbackEvent::PayoutFailed {
                order_id: 0,
                provider_ref: "sbx_3".into(),
            },
        ];
        for event in events {
            let (headers, body) = sandbox.signed_request(&encode_event(&event), NOW, NONCE);
            assert_eq!(
                sandbox.verify(&headers, &body, NOW),
                Ok(Callback {
                    nonce: NONCE.into(),
                    timestamp_ms: NOW,
                    event,
                })
            );
        }
    }

    #[test]
    fn the_body_spells_the_order_id_as_a_string() {
        let body: serde_json::Value =
            serde_json::from_slice(&encode_event(&paid(123, 1000))).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "event": "pay_in.paid",
                "order_id": "123",
                "provider_ref": "sbx_0123",
                "amount_fen": 1000,
            })
        );
    }

    #[test]
    fn a_changed_body_signature_timestamp_or_nonce_is_a_bad_signature() {
        let sandbox = sandbox();
        let (headers, body) = sandbox.signed_request(&encode_event(&paid(7, 1000)), NOW, NONCE);

        let more = encode_event(&paid(7, 100_000));
        assert_eq!(
            sandbox.verify(&headers, &more, NOW),
            Err(CallbackRefusal::BadSignature)
        );
        let mut forged = headers.clone();
        forged.signature = sign(b"another secret", &headers.timestamp, NONCE, &body);
        assert_eq!(
            sandbox.verify(&forged, &body, NOW),
            Err(CallbackRefusal::BadSignature)
        );
        let mut later = headers.clone();
        later.timestamp = (NOW + 1).to_string();
        assert_eq!(
            sandbox.verify(&later, &body, NOW),
            Err(CallbackRefusal::BadSignature)
        );
        let mut renonced = headers.clone();
        renonced.nonce = "fedcba9876543210fedc".into();
        assert_eq!(
            sandbox.verify(&renonced, &body, NOW),
            Err(CallbackRefusal::BadSignature)
        );
    }

    #[test]
    fn a_callback_outside_the_window_either_way_is_stale() {
        let sandbox = sandbox();
        let body = encode_event(&paid(7, 1000));
        let window = DEFAULT_WINDOW_MS;
        let at = |timestamp_ms: i64| {
            let (headers, body) = sandbox.signed_request(&body, timestamp_ms, NONCE);
            sandbox.verify(&headers, &body, NOW).map(|c| c.timestamp_ms)
        };
        assert_eq!(at(NOW - window), Ok(NOW - window));
        assert_eq!(at(NOW + window), Ok(NOW + window));
        assert_eq!(
            at(NOW - window - 1),
            Err(CallbackRefusal::Stale { age_ms: window + 1 })
        );
        assert_eq!(
            at(NOW + window + 1),
            Err(CallbackRefusal::Stale {
                age_ms: -window - 1
            })
        );
    }

    #[test]
    fn headers_that_do_not_read_are_malformed_before_the_signature_is_checked() {
        let sandbox = sandbox();
        let body = encode_event(&paid(7, 1000));
        let malformed = |timestamp: &str, nonce: &str| {
            let headers = CallbackHeaders {
                timestamp: timestamp.into(),
                nonce: nonce.into(),
                signature: sign(SECRET, timestamp, nonce, &body),
            };
            sandbox.verify(&headers, &body, NOW).map_err(|r| r.code())
        };
        let now = NOW.to_string();
        assert!(malformed(&now, NONCE).is_ok());
        for (timestamp, nonce) in [
            ("", NONCE),
            ("-1", NONCE),
            ("+1700000000000", NONCE),
            ("01700000000000", NONCE),
            ("1.7e12", NONCE),
            ("99999999999999999999", NONCE),
            (now.as_str(), ""),
            (now.as_str(), "short"),
            (now.as_str(), &"n".repeat(65)),
            (now.as_str(), "0123456789abcdef 0123"),
            (now.as_str(), "0123456789abcdef\n0123"),
        ] {
            assert_eq!(
                malformed(timestamp, nonce),
                Err("malformed_callback"),
                "{timestamp:?} {nonce:?}"
            );
        }
        assert!(malformed(&now, &"n".repeat(16)).is_ok());
        assert!(malformed(&now, &"n".repeat(64)).is_ok());
    }

    #[test]
    fn a_signed_body_that_is_not_a_sandbox_event_is_malformed() {
        let sandbox = sandbox();
        for body in [
            &b"not json"[..],
            br#"{"event":"pay_in.refunded","order_id":"1","provider_ref":"sbx_1"}"#,
            br#"{"event":"pay_in.paid","order_id":"1","provider_ref":"sbx_1"}"#,
            br#"{"event":"pay_in.paid","order_id":1,"provider_ref":"sbx_1","amount_fen":5}"#,
            br#"{"event":"pay_in.paid","order_id":"01","provider_ref":"sbx_1","amount_fen":5}"#,
            br#"{"event":"pay_in.paid","order_id":"1","provider_ref":"","amount_fen":5}"#,
            br#"{"event":"payout.settled","order_id":"1","provider_ref":"sbx_1","amount_fen":0}"#,
            br#"{"event":"payout.settled","order_id":"1","provider_ref":"sbx_1","amount_fen":-5}"#,
        ] {
            let (headers, body) = sandbox.signed_request(body, NOW, NONCE);
            assert!(
                matches!(
                    sandbox.verify(&headers, &body, NOW),
                    Err(CallbackRefusal::Malformed(_))
                ),
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
        let with_more =
            br#"{"event":"pay_in.failed","order_id":"9","provider_ref":"sbx_9","note":"x"}"#;
        let (headers, body) = sandbox.signed_request(with_more, NOW, NONCE);
        assert!(sandbox.verify(&headers, &body, NOW).is_ok());
    }

    #[test]
    fn a_callback_url_that_is_not_http_with_a_host_is_refused() {
        for url in [
            "not a url",
            "ftp://example.com/cb",
            "unix:/run/cb",
            "/v1/cb",
        ] {
            let config = SandboxConfig::new(SECRET.to_vec(), url);
            assert_eq!(
                SandboxProvider::new(config, Arc::new(SystemClock)).err(),
                Some(SandboxError::InvalidCallbackUrl(url.into()))
            );
        }
    }

    #[test]
    fn the_configuration_never_prints_its_secret() {
        let config = SandboxConfig::new(b"hunter2".to_vec(), "http://127.0.0.1/cb");
        assert!(!format!("{config:?}").contains("hunter2"));
        assert!(!format!("{config:?}").contains("104, 117"));
    }

    #[tokio::test]
    async fn a_pay_in_answers_a_pay_page_at_the_callback_origin() {
        let sandbox = sandbox_to(
            "https://pay.example.com:8443/v1/wallet/callbacks/sandbox",
            |_| {},
            fast(),
        );
        let start = sandbox
            .open_pay_in(PayIn {
                order_id: 5,
                user: UserId(42),
                amount_fen: 1000,
            })
            .await
            .unwrap();
        assert!(start.provider_ref.starts_with(REF_PREFIX));
        assert_eq!(
            start.pay_url,
            format!(
                "https://pay.example.com:8443/v1/wallet/sandbox/pay/{}",
                start.provider_ref
            )
        );
        assert_eq!(
            sandbox.pay_in(&start.provider_ref),
            Ok(PayIn {
                order_id: 5,
                user: UserId(42),
                amount_fen: 1000,
            })
        );
    }

    #[tokio::test]
    async fn opening_the_same_order_again_answers_the_same_reference_and_a_changed_one_is_refused()
    {
        let sandbox = sandbox();
        let pay_in = |order_id, user, amount_fen| PayIn {
            order_id,
            user: UserId(user),
            amount_fen,
        };
        let first = sandbox.open_pay_in(pay_in(5, 42, 1000)).await.unwrap();
        assert_eq!(
            sandbox.open_pay_in(pay_in(5, 42, 1000)).await,
            Ok(first.clone())
        );
        for changed in [pay_in(5, 42, 999), pay_in(5, 43, 1000)] {
            assert_eq!(
                sandbox.open_pay_in(changed).await.map_err(|e| e.code()),
                Err("provider_refused")
            );
        }
        let other = sandbox.open_pay_in(pay_in(6, 42, 1000)).await.unwrap();
        assert_ne!(other.provider_ref, first.provider_ref);
        for amount_fen in [0, -1] {
            assert_eq!(
                sandbox
                    .open_pay_in(pay_in(7, 42, amount_fen))
                    .await
                    .map_err(|e| e.code()),
                Err("provider_refused")
            );
        }
    }

    #[tokio::test]
    async fn the_oldest_order_is_forgotten_past_the_memory_bound() {
        let tuning = Tuning {
            remembered: 2,
            ..fast()
        };
        let sandbox = sandbox_to("http://127.0.0.1:9/cb", |_| {}, tuning);
        let mut refs = Vec::new();
        for order_id in 1..=3 {
            let start = sandbox
                .open_pay_in(PayIn {
                    order_id,
                    user: UserId(1),
                    amount_fen: 100,
                })
                .await
                .unwrap();
            refs.push(start.provider_ref);
        }
        assert_eq!(sandbox.pay_in(&refs[0]), Err(SandboxError::UnknownPayment));
        assert!(sandbox.pay_in(&refs[1]).is_ok());
        assert!(sandbox.pay_in(&refs[2]).is_ok());
    }

    #[tokio::test]
    async fn complete_delivers_the_configured_number_of_times_retrying_after_a_500() {
        let receiver = Receiver::start(1).await;
        let sandbox = sandbox_to(&receiver.url(), |c| c.deliveries = 3, fast());
        let start = sandbox
            .open_pay_in(PayIn {
                order_id: 7,
                user: UserId(42),
                amount_fen: 1000,
            })
            .await
            .unwrap();

        sandbox.complete(&start.provider_ref, true).await.unwrap();
        sandbox.idle().await;

        let seen = receiver.seen();
        let statuses = |code| seen.iter().filter(|s| s.status == code).count();
        assert_eq!((statuses(500), statuses(200)), (1, 3));
        let now = SystemClock.now_ms();
        for request in &seen {
            let callback = sandbox
                .verify(&request.headers, &request.body, now)
                .unwrap();
            assert_eq!(
                callback.event,
                CallbackEvent::PayInPaid {
                    order_id: 7,
                    provider_ref: start.provider_ref.clone(),
                    amount_fen: 1000,
                }
            );
        }
        let mut nonces: Vec<_> = seen.iter().map(|s| s.headers.nonce.clone()).collect();
        nonces.sort();
        nonces.dedup();
        assert_eq!(nonces.len(), seen.len(), "each attempt has its own nonce");
    }

    #[tokio::test]
    async fn a_declined_pay_in_sends_pay_in_failed_and_completes_once() {
        let receiver = Receiver::start(0).await;
        let sandbox = sandbox_to(&receiver.url(), |_| {}, fast());
        let start = sandbox
            .open_pay_in(PayIn {
                order_id: 8,
                user: UserId(42),
                amount_fen: 1000,
            })
            .await
            .unwrap();

        sandbox.complete(&start.provider_ref, false).await.unwrap();
        assert_eq!(
            sandbox.complete(&start.provider_ref, true).await,
            Err(SandboxError::AlreadyCompleted)
        );
        assert_eq!(
            sandbox.complete("sbx_unknown", true).await,
            Err(SandboxError::UnknownPayment)
        );
        sandbox.idle().await;

        let seen = receiver.seen();
        assert_eq!(seen.len(), 1);
        let callback = sandbox
            .verify(&seen[0].headers, &seen[0].body, SystemClock.now_ms())
            .unwrap();
        assert_eq!(
            callback.event,
            CallbackEvent::PayInFailed {
                order_id: 8,
                provider_ref: start.provider_ref,
            }
        );
    }

    #[tokio::test]
    async fn a_receiver_that_never_accepts_is_given_up_after_the_bounded_tries() {
        let receiver = Receiver::start(usize::MAX).await;
        let sandbox = sandbox_to(&receiver.url(), |_| {}, fast());
        let start = sandbox
            .open_pay_in(PayIn {
                order_id: 9,
                user: UserId(42),
                amount_fen: 1000,
            })
            .await
            .unwrap();

        sandbox.complete(&start.provider_ref, true).await.unwrap();
        sandbox.idle().await;

        assert_eq!(receiver.seen().len(), 3);
    }

    #[test]
    fn a_payout_fails_exactly_when_its_amount_ends_in_13_fen() {
        for amount_fen in [13, 113, 1013, 100_013] {
            assert!(payout_fails(amount_fen), "{amount_fen}");
        }
        for amount_fen in [1, 12, 14, 130, 1000, 1031, 1313 + 1] {
            assert!(!payout_fails(amount_fen), "{amount_fen}");
        }
    }

    #[tokio::test]
    async fn a_payout_settles_after_its_delay_unless_it_ends_in_13_fen() {
        let receiver = Receiver::start(0).await;
        let sandbox = sandbox_to(&receiver.url(), |c| c.payout_delay_ms = 20, fast());
        let payout = |order_id, amount_fen| Payout {
            order_id,
            user: UserId(42),
            amount_fen,
        };
        let settling = sandbox.open_payout(payout(1, 1000)).await.unwrap();
        let failing = sandbox.open_payout(payout(2, 1013)).await.unwrap();
        assert_eq!(
            sandbox.open_payout(payout(1, 1000)).await,
            Ok(settling.clone())
        );
        assert_eq!(
            sandbox
                .open_payout(payout(1, 2000))
                .await
                .map_err(|e| e.code()),
            Err("provider_refused")
        );
        assert_eq!(
            sandbox.complete(&settling, true).await,
            Err(SandboxError::UnknownPayment),
            "a payout is not a pay-in a payer completes"
        );
        sandbox.idle().await;

        let now = SystemClock.now_ms();
        let mut events: Vec<_> = receiver
            .seen()
            .iter()
            .map(|s| sandbox.verify(&s.headers, &s.body, now).unwrap().event)
            .collect();
        events.sort_by_key(CallbackEvent::order_id);
        assert_eq!(
            events,
            [
                CallbackEvent::PayoutSettled {
                    order_id: 1,
                    provider_ref: settling,
                    amount_fen: 1000,
                },
                CallbackEvent::PayoutFailed {
                    order_id: 2,
                    provider_ref: failing,
                },
            ],
            "one callback per payout, opened twice or not"
        );
    }
}
