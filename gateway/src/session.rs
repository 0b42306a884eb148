//! One task per WebSocket session.
//!
//! The task owns the socket. It reads client frames, checks the session's
//! rate, and answers the session's requests one at a time, in the order they
//! arrived, so a session's sends keep their order (a later send never gets a
//! lower `seq`). The request being answered is a future the task polls beside
//! everything else, so while it waits on the core (seconds, on a gateway) the
//! task goes on writing events, pinging on a heartbeat, and reading the
//! client's next frames. Those wait in a small queue (`gateway.request_queue`);
//! one more is answered at once with `request_queue_full`. The task closes
//! with a documented code (see [`crate::close`]) on abuse, idleness, a full
//! outbound queue, revocation or shutdown, and answers a client's close with
//! its own code. Closing is a handshake (see [`close`]): the close frame goes
//! out after what is already buffered, and the client's frames are read until
//! its reply, so the connection ends with a FIN the client can read up to,
//! never with a reset that destroys the close frame.
//!
//! Why not a task per session for its requests: a task and its two channels
//! cost about 7 KiB per session, idle or not (measured: docs/benchmarks.md,
//! "The room pattern"); a future and a queue that is empty until used cost
//! nothing while a session is idle.
//!
//! Nothing holds a lock across an await; the
//! [`Registration`](crate::hub::Registration) unregisters the session when it
//! ends. The loop is generic over the socket (a `Stream` + `Sink` of
//! WebSocket messages), so its rules are tested without a network.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage};
use bytes::Bytes;
use futures_util::{Sink, SinkExt as _, Stream, StreamExt as _};
use prost::Message as _;
use superapp_account::token::Claims;
use superapp_kit::BoxFuture;
use superapp_kit::metrics::{Counter, Histogram, LATENCY_SECONDS};
use superapp_kit::ratelimit::TokenBucket;
use superapp_proto::v1::{ClientFrame, Response, ServerFrame, response, server_frame};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

use crate::backend::SessionStart;
use crate::error::ApiError;
use crate::hub::{Kick, Registration};
use crate::{AppState, close};

/// Per-session instruments, looked up once per process.
pub struct SessionMetrics {
    pub frames_in: Arc<Counter>,
    pub ack_seconds: Arc<Histogram>,
    pub rate_limited: Arc<Counter>,
    pub queue_full: Arc<Counter>,
}

impl SessionMetrics {
    pub fn new(registry: &superapp_kit::metrics::Registry) -> Self {
        Self {
            frames_in: registry
                .counter("gateway_frames_in_total", "Frames received from sessions."),
            ack_seconds: registry.histogram(
                "gateway_send_ack_seconds",
                "Time from receiving a send to writing its durable ack.",
                LATENCY_SECONDS,
            ),
            rate_limited: registry.counter(
                "gateway_rate_limited_total",
                "Requests refused by a session or user rate limit.",
            ),
            queue_full: registry.counter(
                "gateway_request_queue_full_total",
                "Requests refused because the session already had its queue of requests waiting.",
            ),
        }
    }
}

/// What a WebSocket session runs on: axum's socket, or a test's stand-in.
pub trait Socket:
    Stream<Item = Result<WsMessage, axum::Error>> + Sink<WsMessage, Error = axum::Error> + Unpin + Send
{
}

impl<S> Socket for S where
    S: Stream<Item = Result<WsMessage, axum::Error>>
        + Sink<WsMessage, Error = axum::Error>
        + Unpin
        + Send
{
}

/// A request waiting its turn, with when it arrived.
struct Request {
    frame: ClientFrame,
    received: Instant,
}

/// How the request being answered came out: refused by the user's limit, or
/// answered by the backend.
type Answer = Result<response::Result, u64>;

/// The request being answered: its id, when it arrived, and its answer to come.
struct InFlight {
    id: u64,
    received: Instant,
    answer: BoxFuture<'static, Answer>,
}

/// Runs a session until it ends. `claims` were checked at the handshake.
pub async fn run<S: Socket>(
    socket: S,
    state: AppState,
    claims: Claims,
    metrics: Arc<SessionMetrics>,
) {
    let cfg = state.config.clone();
    let (tx, outbound) = mpsc::channel::<Bytes>(cfg.outbound_queue);
    let registration = state.hub.register(claims.sub, claims.sid, tx);
    start(&state, &claims, &registration).await;
    let mut session = Session {
        socket,
        bucket: TokenBucket::new(cfg.rate_per_sec, cfg.rate_burst),
        user_key: Arc::from(format!("u.{}", claims.sub)),
        connection: registration.connection(),
        kick: registration.kick().clone(),
        claims,
        state,
        metrics,
        session_strikes: 0,
        user_strikes: 0,
        waiting: VecDeque::new(),
        in_flight: None,
        last_seen: Instant::now(),
    };
    tracing::debug!(user_id = claims.sub.0, "session opened");
    let code = session.serve(outbound).await;
    // The request in hand finishes (its effects, such as the events of a
    // stored message, are not cut short); nothing waiting is started.
    if let Some(in_flight) = session.in_flight.take() {
        session.state.sessions.spawn(in_flight.answer);
    }
    // Nothing more is queued to a session that is closing.
    drop(registration);
    close(
        &mut session.socket,
        code,
        Duration::from_secs(cfg.write_timeout_secs.max(1)),
        Duration::from_millis(cfg.close_reply_ms),
    )
    .await;
    tracing::debug!(user_id = claims.sub.0, code, "session closed");
}

/// Ends the WebSocket in order. The server's close frame (`code`), or the
/// echo of the client's close that tungstenite queued when it read it, goes
/// out after whatever is already buffered, within `write_within` (a client
/// that stopped reading receives it once it reads again, if it does so in
/// time). Then the client's close reply is awaited for at most `reply_within`.
/// All along, the client's frames are read and dropped: a socket closed with
/// unread bytes is reset by the kernel, and the reset can destroy the close
/// frame before the client reads it. With nothing left unread, dropping the
/// socket ends the connection with a FIN.
async fn close<S: Socket>(
    socket: &mut S,
    code: Option<u16>,
    write_within: Duration,
    reply_within: Duration,
) {
    let frame = code.map(|code| {
        WsMessage::Close(Some(CloseFrame {
            code,
            reason: close::reason(code).into(),
        }))
    });
    let mut closing = Closing {
        socket,
        frame,
        written: false,
        heard: false,
    };
    if timeout(write_within, closing.until(|c| c.written))
        .await
        .is_ok()
    {
        let _ = timeout(reply_within, closing.until(|c| c.heard)).await;
    }
}

/// Both halves of a socket that is closing.
struct Closing<'a, S> {
    socket: &'a mut S,
    /// The server's close frame, until the socket takes it.
    frame: Option<WsMessage>,
    /// Everything is written, the close frame last (or the socket failed).
    written: bool,
    /// The client's close arrived, or its stream ended.
    heard: bool,
}

impl<S: Socket> Closing<'_, S> {
    /// Writes and reads until `done` holds.
    async fn until(&mut self, done: impl Fn(&Self) -> bool) {
        std::future::poll_fn(|cx| {
            self.poll_write(cx);
            self.poll_read(cx);
            if done(self) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }

    fn poll_write(&mut self, cx: &mut Context<'_>) {
        if self.written {
            return;
        }
        if let Some(frame) = self.frame.take() {
            match self.socket.poll_ready_unpin(cx) {
                Poll::Pending => {
                    self.frame = Some(frame);
                    return;
                }
                Poll::Ready(Err(_)) => {
                    self.written = true;
                    return;
                }
                // Refused when the client's close came first: then its echo,
                // already queued, is what the flush below sends.
                Poll::Ready(Ok(())) => {
                    let _ = self.socket.start_send_unpin(frame);
                }
            }
        }
        // Flushes everything queued; tungstenite reports a flushed close
        // handshake as done.
        if self.socket.poll_close_unpin(cx).is_ready() {
            self.written = true;
        }
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) {
        while !self.heard {
            match self.socket.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(WsMessage::Close(_))) | None | Some(Err(_))) => {
                    self.heard = true;
                }
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Pending => return,
            }
        }
    }
}

/// Asks the core about a session that just registered. A logout between the
/// handshake's check and the registration would have found no session to
/// close, so liveness is checked once more now that it would; the user's
/// groups and blocks come with the answer, fetched again if a membership or
/// blocking notice arrived meanwhile.
async fn start(state: &AppState, claims: &Claims, registration: &Registration) {
    for _ in 0..3 {
        let mark = state.hub.membership_mark(claims.sub);
        match state.backend.session_start(claims).await {
            SessionStart::Live(standing) => {
                if state.hub.set_standing(claims.sub, &standing, mark) {
                    return;
                }
            }
            SessionStart::Revoked => {
                registration.kick().kick(close::SESSION_REVOKED);
                return;
            }
            SessionStart::Unknown => break,
        }
    }
    registration.kick().kick(close::TRY_AGAIN_LATER);
}

/// The error code of a request refused because its session is no longer live.
const SESSION_REVOKED_CODE: &str = "session_revoked";

/// What a turn of the socket loop leaves: go on, or end with a close code
/// to send (None when the client is already gone).
enum Step {
    Continue,
    End(Option<u16>),
}

/// The session's state.
struct Session<S> {
    socket: S,
    state: AppState,
    claims: Claims,
    /// Names this connection as the origin of its requests.
    connection: u64,
    /// How the session is asked to close, by the hub or by itself; the first
    /// code decided wins.
    kick: Kick,
    metrics: Arc<SessionMetrics>,
    bucket: TokenBucket,
    /// This user's key in the limit all their sessions share; shared with
    /// each request in flight.
    user_key: Arc<str>,
    /// Requests each limit refused in a row; past the abuse limit by either,
    /// the session closes with 1008.
    session_strikes: u32,
    user_strikes: u32,
    /// Requests admitted by the session's bucket, waiting their turn.
    waiting: VecDeque<Request>,
    in_flight: Option<InFlight>,
    last_seen: Instant,
}

impl<S: Socket> Session<S> {
    /// Serves until the session must end; returns the close code to send, or
    /// None when the client is already gone.
    async fn serve(&mut self, mut outbound: mpsc::Receiver<Bytes>) -> Option<u16> {
        let every = Duration::from_secs(self.state.config.heartbeat_secs.max(1));
        let idle_after = Duration::from_secs(self.state.config.idle_timeout_secs.max(1));
        let mut heartbeat = tokio::time::interval_at(Instant::now() + every, every);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (shutdown, drain) = (self.state.shutdown.clone(), self.state.drain);
        // Stop accepting is the listener's job; a session keeps serving for the
        // drain period so requests in flight complete, then closes with 1012.
        let drained = async {
            shutdown.cancelled().await;
            tokio::time::sleep(drain).await;
        };
        tokio::pin!(drained);
        // Made once: a fresh `cancelled()` future per turn of the loop would
        // register with the token again on every event.
        let kick = self.kick.clone();
        let kicked = kick.kicked();
        tokio::pin!(kicked);
        loop {
            // A kick goes first, so nothing is written after the revocation
            // or refusal that ended the session; the rest take turns, so a
            // stream of events never starves the client's frames or pings.
            let step = tokio::select! {
                biased;
                code = &mut kicked => Step::End(Some(code)),
                step = async {
                    tokio::select! {
                        _ = &mut drained => self.flush(&mut outbound).await,
                        answer = answered(&mut self.in_flight) => self.send_answer(answer).await,
                        frame = outbound.recv() => self.send_event(frame).await,
                        incoming = self.socket.next() => self.read(incoming).await,
                        _ = heartbeat.tick() => self.beat(idle_after).await,
                    }
                } => step,
            };
            if let Step::End(code) = step {
                return code;
            }
            self.start_next();
        }
    }

    /// At the end of the drain: whatever events are queued go out, then 1012.
    async fn flush(&mut self, outbound: &mut mpsc::Receiver<Bytes>) -> Step {
        while let Ok(frame) = outbound.try_recv() {
            if let Step::End(code) = self.write(WsMessage::Binary(frame)).await {
                return Step::End(code);
            }
        }
        Step::End(Some(close::SERVICE_RESTART))
    }

    /// Writes the answer of the request in hand.
    async fn send_answer(&mut self, (id, received, answer): (u64, Instant, Answer)) -> Step {
        let result = match answer {
            Ok(result) => {
                self.user_strikes = 0;
                result
            }
            Err(retry_after_ms) => {
                self.metrics.rate_limited.inc();
                self.user_strikes += 1;
                if self.user_strikes > self.state.config.rate_abuse_limit {
                    return Step::End(Some(close::POLICY_VIOLATION));
                }
                response::Result::Error(ApiError::rate_limited(retry_after_ms).to_proto())
            }
        };
        let is_ack = matches!(result, response::Result::SendAck(_));
        // The core found the session logged out: its revocation never
        // reached this socket (the bus lost it). The refusal is written,
        // then the session closes as the revocation would have closed it.
        let revoked =
            matches!(&result, response::Result::Error(e) if e.code == SESSION_REVOKED_CODE);
        let step = self.write(WsMessage::Binary(reply_frame(id, result))).await;
        if is_ack && matches!(step, Step::Continue) {
            self.metrics
                .ack_seconds
                .observe(received.elapsed().as_secs_f64());
        }
        if revoked && matches!(step, Step::Continue) {
            self.kick.kick(close::SESSION_REVOKED);
            // Another close may have been decided first; it wins.
            return Step::End(Some(self.kick.code()));
        }
        step
    }

    async fn send_event(&mut self, frame: Option<Bytes>) -> Step {
        let Some(frame) = frame else {
            return Step::End(None);
        };
        self.write(WsMessage::Binary(frame)).await
    }

    /// A message from the client: a request frame, or the end of the session.
    async fn read(&mut self, incoming: Option<Result<WsMessage, axum::Error>>) -> Step {
        let message = match incoming {
            None => return Step::End(None),
            Some(Ok(message)) => message,
            Some(Err(e)) => return Step::End(too_big(e).then_some(close::TOO_BIG)),
        };
        self.last_seen = Instant::now();
        match message {
            WsMessage::Binary(data) => self.take(data).await,
            WsMessage::Text(_) => Step::End(Some(close::UNSUPPORTED_DATA)),
            WsMessage::Ping(_) | WsMessage::Pong(_) => Step::Continue,
            // tungstenite has queued the echo of the client's code; `close`
            // sends it.
            WsMessage::Close(_) => Step::End(None),
        }
    }

    /// A heartbeat: close an idle session, ping a live one.
    async fn beat(&mut self, idle_after: Duration) -> Step {
        if self.last_seen.elapsed() >= idle_after {
            return Step::End(Some(close::IDLE_TIMEOUT));
        }
        self.write(WsMessage::Ping(Bytes::new())).await
    }

    /// Writes a frame. One that fails ends the session (the client is gone);
    /// one that takes longer than the write timeout closes it as a slow
    /// consumer.
    async fn write(&mut self, message: WsMessage) -> Step {
        let limit = Duration::from_secs(self.state.config.write_timeout_secs.max(1));
        match timeout(limit, self.socket.send(message)).await {
            Ok(Ok(())) => Step::Continue,
            Ok(Err(_)) => Step::End(None),
            Err(_) => {
                self.state.hub.close_slow(&self.kick);
                // Another close may have been decided first; it wins.
                Step::End(Some(self.kick.code()))
            }
        }
    }

    /// Takes one frame: refused for rate, refused for a full queue, or queued
    /// to be answered in turn.
    async fn take(&mut self, data: Bytes) -> Step {
        let received = Instant::now();
        self.metrics.frames_in.inc();
        let Ok(frame) = ClientFrame::decode(data) else {
            return Step::End(Some(close::INVALID_FRAME));
        };
        if let Err(retry_after_ms) = self.bucket.take() {
            self.metrics.rate_limited.inc();
            self.session_strikes += 1;
            if self.session_strikes > self.state.config.rate_abuse_limit {
                return Step::End(Some(close::POLICY_VIOLATION));
            }
            return self
                .refuse(frame.id, ApiError::rate_limited(retry_after_ms))
                .await;
        }
        self.session_strikes = 0;
        let request = Request { frame, received };
        if self.in_flight.is_none() && self.waiting.is_empty() {
            // Nothing ahead of it: answered at once, and the queue, which
            // allocates only when first used, stays untouched.
            self.start(request);
            return Step::Continue;
        }
        if self.waiting.len() >= self.state.config.request_queue.max(1) {
            self.metrics.queue_full.inc();
            return self.refuse(request.frame.id, queue_full()).await;
        }
        self.waiting.push_back(request);
        Step::Continue
    }

    /// Answers at once a request the session refused itself.
    async fn refuse(&mut self, id: u64, error: ApiError) -> Step {
        let reply = reply_frame(id, response::Result::Error(error.to_proto()));
        self.write(WsMessage::Binary(reply)).await
    }

    /// When nothing is in hand, starts answering the next waiting request.
    fn start_next(&mut self) {
        if self.in_flight.is_none()
            && let Some(request) = self.waiting.pop_front()
        {
            self.start(request);
        }
    }

    /// Starts answering a request: the user's limit, then the backend.
    fn start(&mut self, Request { frame, received }: Request) {
        let (limits, backend) = (self.state.limits.clone(), self.state.backend.clone());
        let (key, user, origin) = (self.user_key.clone(), self.claims.sub, self.connection);
        let session = self.claims.sid;
        self.in_flight = Some(InFlight {
            id: frame.id,
            received,
            answer: Box::pin(async move {
                limits.take(&key).await?;
                Ok(backend.handle(user, session, origin, frame.request).await)
            }),
        });
    }
}

/// The answer of the request in hand, when it comes; never, with none in hand.
async fn answered(in_flight: &mut Option<InFlight>) -> (u64, Instant, Answer) {
    let Some(request) = in_flight else {
        return std::future::pending().await;
    };
    let answer = request.answer.as_mut().await;
    let (id, received) = (request.id, request.received);
    *in_flight = None;
    (id, received, answer)
}

fn queue_full() -> ApiError {
    let mut err = ApiError::new(
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        "request_queue_full",
        "too many requests waiting on this session; wait for answers before sending more",
    );
    err.retry_after_ms = Some(100);
    err
}

fn reply_frame(id: u64, result: response::Result) -> Bytes {
    ServerFrame {
        kind: Some(server_frame::Kind::Response(Response {
            id,
            result: Some(result),
        })),
    }
    .encode_to_vec()
    .into()
}

/// Whether a read error is tungstenite refusing a frame or message over the limit.
fn too_big(e: axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error;
    matches!(
        e.into_inner().downcast_ref::<Error>(),
        Some(Error::Capacity(_))
    )
}

#[cfg(test)]
mod tests {
    //! The session's rules on a socket made of two channels: no network.

    use std::pin::Pin;
    use std::sync::atomic::Ordering;
    use std::task::{Context, Poll};

    use crate::presence::LocalPresence;
    use superapp_kit::BoxFuture;
    use superapp_kit::bus::{InProcessBus, SharedBus};
    use superapp_kit::clock::SystemClock;
    use superapp_kit::metrics::Registry;
    use superapp_kit::ratelimit::LocalLimiter;
    use superapp_proto::ids::UserId;
    use superapp_proto::v1::{
        BusEnvelope, Event, Ping, ReadReceipt, bus_envelope, client_frame, event,
    };
    use tokio::sync::{Notify, mpsc::UnboundedReceiver, mpsc::UnboundedSender};
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    use super::*;
    use crate::GatewayConfig;
    use crate::backend::{Backend, Recheck, Standing};
    use crate::hub::Hub;

    /// The server's end of a WebSocket, as two channels.
    struct TestSocket {
        incoming: UnboundedReceiver<Result<WsMessage, axum::Error>>,
        outgoing: UnboundedSender<WsMessage>,
    }

    impl Stream for TestSocket {
        type Item = Result<WsMessage, axum::Error>;

        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.incoming.poll_recv(cx)
        }
    }

    impl Sink<WsMessage> for TestSocket {
        type Error = axum::Error;

        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
            Poll::Ready(Ok(()))
        }

        fn start_send(self: Pin<&mut Self>, item: WsMessage) -> Result<(), axum::Error> {
            self.outgoing.send(item).map_err(axum::Error::new)
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A core whose answers wait until the test lets them go, and which
    /// records the order requests reached it.
    #[derive(Default)]
    struct GatedBackend {
        entered: Notify,
        release: Notify,
        gated: std::sync::atomic::AtomicBool,
        seen: std::sync::Mutex<Vec<u64>>,
        /// The session was logged out: requests are refused.
        revoked: std::sync::atomic::AtomicBool,
    }

    impl Backend for GatedBackend {
        fn authenticate<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Claims, ApiError>> {
            Box::pin(async { Err(ApiError::unavailable("not in this test")) })
        }

        fn redeem_ticket<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Claims, ApiError>> {
            Box::pin(async { Err(ApiError::unavailable("not in this test")) })
        }

        fn session_start<'a>(&'a self, _: &'a Claims) -> BoxFuture<'a, SessionStart> {
            Box::pin(async { SessionStart::Live(Standing::default()) })
        }

        fn recheck(&self, _: UserId, _: Vec<u64>) -> BoxFuture<'_, Option<Recheck>> {
            Box::pin(async {
                Some(Recheck {
                    standing: Standing::default(),
                    revoked: Vec::new(),
                })
            })
        }

        fn handle(
            &self,
            _: UserId,
            _: u64,
            _: u64,
            request: Option<client_frame::Request>,
        ) -> BoxFuture<'_, response::Result> {
            Box::pin(async move {
                if let Some(client_frame::Request::MarkRead(m)) = &request {
                    self.seen.lock().unwrap().push(m.seq);
                }
                if self.gated.load(Ordering::SeqCst) {
                    self.entered.notify_one();
                    self.release.notified().await;
                }
                if self.revoked.load(Ordering::SeqCst) {
                    let refused = ApiError::unauthorized("session_revoked", "logged out");
                    return response::Result::Error(refused.to_proto());
                }
                response::Result::Pong(superapp_proto::v1::Pong { server_time_ms: 1 })
            })
        }
    }

    struct Harness {
        to_server: UnboundedSender<Result<WsMessage, axum::Error>>,
        from_server: UnboundedReceiver<WsMessage>,
        bus: SharedBus,
        backend: Arc<GatedBackend>,
        user: UserId,
    }

    fn open(configure: impl FnOnce(&mut GatewayConfig), gated: bool) -> Harness {
        let mut config = GatewayConfig::default();
        configure(&mut config);
        let metrics = Registry::new();
        let bus: SharedBus = Arc::new(InProcessBus::new());
        let backend = Arc::new(GatedBackend::default());
        backend.gated.store(gated, Ordering::SeqCst);
        let presence = Arc::new(LocalPresence::new(
            Arc::new(SystemClock),
            Duration::from_secs(30),
        ));
        let hub = Hub::start(
            bus.as_ref(),
            &metrics,
            presence.clone(),
            "test".into(),
            backend.clone(),
        );
        let state = AppState {
            backend: backend.clone(),
            hub,
            limits: Arc::new(LocalLimiter::new(1_000, 1_000)),
            metrics: Arc::new(Registry::new()),
            config: Arc::new(config),
            drain: Duration::from_millis(500),
            max_body_bytes: 64 * 1024,
            body_timeout: Duration::from_secs(30),
            shutdown: CancellationToken::new(),
            sessions: TaskTracker::new(),
        };
        let (to_server, incoming) = tokio::sync::mpsc::unbounded_channel();
        let (outgoing, from_server) = tokio::sync::mpsc::unbounded_channel();
        let user = UserId(7);
        let claims = Claims {
            sub: user,
            sid: 1,
            iat: 0,
            exp: i64::MAX,
        };
        let session_metrics = Arc::new(SessionMetrics::new(&state.metrics));
        tokio::spawn(run(
            TestSocket { incoming, outgoing },
            state,
            claims,
            session_metrics,
        ));
        Harness {
            to_server,
            from_server,
            bus,
            backend,
            user,
        }
    }

    impl Harness {
        fn send(&self, id: u64, request: client_frame::Request) {
            let frame = ClientFrame {
                id,
                request: Some(request),
            };
            self.to_server
                .send(Ok(WsMessage::Binary(frame.encode_to_vec().into())))
                .unwrap();
        }

        fn mark_read(&self, id: u64) {
            self.send(
                id,
                client_frame::Request::MarkRead(superapp_proto::v1::MarkRead {
                    conversation_id: "d.1.7".into(),
                    seq: id,
                }),
            );
        }

        /// The next binary frame the server sends, skipping pings.
        async fn next_frame(&mut self) -> server_frame::Kind {
            loop {
                let message = timeout(Duration::from_secs(5), self.from_server.recv())
                    .await
                    .expect("the session answered in time")
                    .expect("the session is open");
                if let WsMessage::Binary(data) = message {
                    return ServerFrame::decode(data).unwrap().kind.unwrap();
                }
            }
        }

        /// Publishes a read receipt to the user's topic, as the core would.
        fn publish_event(&self, read_seq: u64) {
            let envelope = BusEnvelope {
                kind: Some(bus_envelope::Kind::Event(Event {
                    kind: Some(event::Kind::ReadReceipt(ReadReceipt {
                        conversation_id: "d.1.7".into(),
                        reader: 1,
                        read_seq,
                    })),
                })),
                origin: 0,
                target: 0,
            };
            self.bus.publish(
                &superapp_proto::Topic::User(self.user).to_string(),
                envelope.encode_to_vec().into(),
            );
        }
    }

    fn response_of(kind: server_frame::Kind) -> Option<Response> {
        match kind {
            server_frame::Kind::Response(r) => Some(r),
            server_frame::Kind::Event(_) => None,
        }
    }

    #[tokio::test]
    async fn events_and_heartbeats_flow_while_a_request_waits_on_the_core() {
        let mut h = open(|c| c.heartbeat_secs = 1, true);
        h.send(1, client_frame::Request::Ping(Ping {}));
        h.backend.entered.notified().await;
        h.publish_event(42);
        match h.next_frame().await {
            server_frame::Kind::Event(e) => {
                assert!(matches!(e.kind, Some(event::Kind::ReadReceipt(r)) if r.read_seq == 42));
            }
            other => panic!("expected the event first, got {other:?}"),
        }
        // A heartbeat goes out too, the request still unanswered.
        let ping = timeout(Duration::from_secs(3), async {
            loop {
                if let Some(WsMessage::Ping(_)) = h.from_server.recv().await {
                    return;
                }
            }
        })
        .await;
        assert!(ping.is_ok(), "a ping while the request waited");
        h.backend.release.notify_one();
        let answer = response_of(h.next_frame().await).unwrap();
        assert_eq!(answer.id, 1);
    }

    #[tokio::test]
    async fn requests_past_the_queue_are_refused_at_once() {
        let mut h = open(|c| c.request_queue = 2, true);
        h.send(1, client_frame::Request::Ping(Ping {}));
        h.backend.entered.notified().await;
        // Two wait in the queue; the third finds it full.
        for id in 2..=4 {
            h.send(id, client_frame::Request::Ping(Ping {}));
        }
        let refused = response_of(h.next_frame().await).unwrap();
        assert_eq!(refused.id, 4);
        match refused.result {
            Some(response::Result::Error(e)) => {
                assert_eq!(e.code, "request_queue_full");
                assert!(e.retry_after_ms > 0);
            }
            other => panic!("{other:?}"),
        }
        // The queued ones are answered in order once the core answers.
        for id in 1..=3 {
            h.backend.release.notify_one();
            let answer = response_of(h.next_frame().await).unwrap();
            assert_eq!(answer.id, id);
            if id < 3 {
                h.backend.entered.notified().await;
            }
        }
    }

    #[tokio::test]
    async fn a_request_the_core_refuses_as_of_a_revoked_session_is_answered_and_the_session_closed_with_4001()
     {
        let mut h = open(|_| {}, false);
        h.send(1, client_frame::Request::Ping(Ping {}));
        assert_eq!(response_of(h.next_frame().await).unwrap().id, 1);

        // Logged out, and the revocation never reached this gateway.
        h.backend.revoked.store(true, Ordering::SeqCst);
        h.send(2, client_frame::Request::Ping(Ping {}));
        let refused = response_of(h.next_frame().await).unwrap();
        assert_eq!(refused.id, 2);
        assert!(
            matches!(refused.result, Some(response::Result::Error(e)) if e.code == "session_revoked")
        );
        let closed = timeout(Duration::from_secs(5), async {
            loop {
                match h.from_server.recv().await {
                    Some(WsMessage::Close(frame)) => return frame.map(|f| f.code),
                    Some(_) => continue,
                    None => return None,
                }
            }
        })
        .await
        .expect("the session closed in time");
        assert_eq!(closed, Some(close::SESSION_REVOKED));
    }

    #[tokio::test]
    async fn a_session_s_requests_reach_the_core_and_are_answered_in_order() {
        let mut h = open(|_| {}, false);
        for id in 1..=20 {
            h.mark_read(id);
        }
        let mut answered = Vec::new();
        while answered.len() < 20 {
            if let Some(r) = response_of(h.next_frame().await) {
                answered.push(r.id);
            }
        }
        assert_eq!(answered, (1..=20).collect::<Vec<_>>());
        assert_eq!(
            *h.backend.seen.lock().unwrap(),
            (1..=20).collect::<Vec<_>>()
        );
    }
}
