//! One session per WebSocket: a socket loop and a request worker.
//!
//! The socket loop owns the socket. It reads client frames, checks the
//! session's rate, and hands each request to the worker through a small
//! bounded queue; it writes the worker's replies and queued events, pings on a
//! heartbeat, and closes with a documented code (see [`crate::close`]) on
//! abuse, idleness, a full outbound queue, revocation or shutdown.
//!
//! The worker answers requests one at a time, in the order they arrived, so a
//! session's sends keep their order (a later send never gets a lower `seq`),
//! while the loop goes on delivering events and heartbeats even when a request
//! waits seconds on the core. A request that finds the queue full is answered
//! at once with `request_queue_full`.
//!
//! Nothing holds a lock across an await; the
//! [`Registration`](crate::hub::Registration) unregisters the session when it
//! ends. The loop is generic over the socket (a `Stream` + `Sink` of
//! WebSocket messages), so its rules are tested without a network.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage};
use bytes::Bytes;
use futures_util::{Sink, SinkExt as _, Stream, StreamExt as _};
use prost::Message as _;
use superapp_account::token::Claims;
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

/// A request on its way to the worker, with when it arrived.
struct Request {
    frame: ClientFrame,
    received: Instant,
}

/// An answer on its way to the socket; for a send's ack, when the send
/// arrived, so the ack's latency is observed once it is written.
struct Reply {
    frame: Bytes,
    ack_of: Option<Instant>,
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
    let queue = cfg.request_queue.max(1);
    let (requests, waiting) = mpsc::channel::<Request>(queue);
    // Room for every queued request's reply and for as many refusals again,
    // so the loop never waits to queue a reply of its own.
    let (replies, mut answered) = mpsc::channel::<Reply>(queue * 2 + 1);
    // Tracked with the sessions, so shutdown waits for a request in hand too.
    state.sessions.spawn(
        Worker {
            state: state.clone(),
            claims,
            connection: registration.connection(),
            user_key: format!("u.{}", claims.sub),
            metrics: metrics.clone(),
            strikes: 0,
            kick: registration.kick().clone(),
            replies: replies.clone(),
        }
        .serve(waiting),
    );
    let mut session = Session {
        socket,
        bucket: TokenBucket::new(cfg.rate_per_sec, cfg.rate_burst),
        state,
        metrics,
        strikes: 0,
        requests,
        replies,
        last_seen: Instant::now(),
    };
    tracing::debug!(user_id = claims.sub.0, "session opened");
    let code = session
        .serve(outbound, &mut answered, registration.kick().clone())
        .await;
    // The worker finishes the request in hand (its effects, such as the
    // events of a stored message, are not cut short) and takes no other:
    // the replies' receiver is gone.
    drop(answered);
    if let Some(code) = code {
        let frame = CloseFrame {
            code,
            reason: close::reason(code).into(),
        };
        let _ = timeout(
            Duration::from_secs(1),
            session.socket.send(WsMessage::Close(Some(frame))),
        )
        .await;
    }
    tracing::debug!(user_id = claims.sub.0, code, "session closed");
    drop(registration);
}

/// Asks the core about a session that just registered. A logout between the
/// handshake's check and the registration would have found no session to
/// close, so liveness is checked once more now that it would; the user's
/// groups come with the answer, fetched again if a membership notice arrived
/// meanwhile.
async fn start(state: &AppState, claims: &Claims, registration: &Registration) {
    for _ in 0..3 {
        let mark = state.hub.membership_mark(claims.sub);
        match state.backend.session_start(claims).await {
            SessionStart::Live(groups) => {
                if state.hub.set_groups(claims.sub, &groups, mark) {
                    return;
                }
            }
            SessionStart::Revoked => return registration.kick().kick(close::SESSION_REVOKED),
            SessionStart::Unknown => break,
        }
    }
    registration.kick().kick(close::TRY_AGAIN_LATER);
}

/// What a turn of the socket loop leaves: go on, or end with a close code
/// to send (None when the client is already gone).
enum Step {
    Continue,
    End(Option<u16>),
}

/// The socket loop's state.
struct Session<S> {
    socket: S,
    state: AppState,
    metrics: Arc<SessionMetrics>,
    bucket: TokenBucket,
    /// Requests the session's bucket refused in a row; past the abuse limit
    /// the session closes with 1008.
    strikes: u32,
    requests: mpsc::Sender<Request>,
    /// Replies the loop makes itself go out the way the worker's do.
    replies: mpsc::Sender<Reply>,
    last_seen: Instant,
}

impl<S: Socket> Session<S> {
    /// Serves until the session must end; returns the close code to send, or
    /// None when the client is already gone.
    async fn serve(
        &mut self,
        mut outbound: mpsc::Receiver<Bytes>,
        answered: &mut mpsc::Receiver<Reply>,
        kick: Kick,
    ) -> Option<u16> {
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
                        _ = &mut drained => self.flush(answered, &mut outbound).await,
                        reply = answered.recv() => self.send_reply(reply).await,
                        frame = outbound.recv() => self.send_event(frame).await,
                        incoming = self.socket.next() => self.read(incoming),
                        _ = heartbeat.tick() => self.beat(idle_after).await,
                    }
                } => step,
            };
            if let Step::End(code) = step {
                if code == Some(close::POLICY_VIOLATION) {
                    // The refusals that led to it are answered before the close.
                    while let Ok(reply) = answered.try_recv() {
                        if !self.write(WsMessage::Binary(reply.frame)).await {
                            return None;
                        }
                    }
                }
                return code;
            }
        }
    }

    /// At the end of the drain: whatever is queued goes out, then 1012.
    async fn flush(
        &mut self,
        answered: &mut mpsc::Receiver<Reply>,
        outbound: &mut mpsc::Receiver<Bytes>,
    ) -> Step {
        let queued = std::iter::from_fn(|| {
            answered
                .try_recv()
                .map(|reply| reply.frame)
                .or_else(|_| outbound.try_recv())
                .ok()
        });
        for frame in queued.collect::<Vec<_>>() {
            if !self.write(WsMessage::Binary(frame)).await {
                return Step::End(None);
            }
        }
        Step::End(Some(close::SERVICE_RESTART))
    }

    async fn send_reply(&mut self, reply: Option<Reply>) -> Step {
        let Some(reply) = reply else {
            return Step::End(None);
        };
        if !self.write(WsMessage::Binary(reply.frame)).await {
            return Step::End(Some(close::SLOW_CONSUMER));
        }
        if let Some(received) = reply.ack_of {
            self.metrics
                .ack_seconds
                .observe(received.elapsed().as_secs_f64());
        }
        Step::Continue
    }

    async fn send_event(&mut self, frame: Option<Bytes>) -> Step {
        let Some(frame) = frame else {
            return Step::End(None);
        };
        if self.write(WsMessage::Binary(frame)).await {
            Step::Continue
        } else {
            self.state.hub.count_slow_consumer();
            Step::End(Some(close::SLOW_CONSUMER))
        }
    }

    /// A message from the client: a request frame, or the end of the session.
    fn read(&mut self, incoming: Option<Result<WsMessage, axum::Error>>) -> Step {
        let message = match incoming {
            None => return Step::End(None),
            Some(Ok(message)) => message,
            Some(Err(e)) => return Step::End(too_big(e).then_some(close::TOO_BIG)),
        };
        self.last_seen = Instant::now();
        match message {
            WsMessage::Binary(data) => match self.take(data) {
                Some(code) => Step::End(Some(code)),
                None => Step::Continue,
            },
            WsMessage::Text(_) => Step::End(Some(close::UNSUPPORTED_DATA)),
            WsMessage::Ping(_) | WsMessage::Pong(_) => Step::Continue,
            // tungstenite answers the close handshake itself.
            WsMessage::Close(_) => Step::End(None),
        }
    }

    /// A heartbeat: close an idle session, ping a live one.
    async fn beat(&mut self, idle_after: Duration) -> Step {
        if self.last_seen.elapsed() >= idle_after {
            return Step::End(Some(close::IDLE_TIMEOUT));
        }
        if self.write(WsMessage::Ping(Bytes::new())).await {
            Step::Continue
        } else {
            Step::End(None)
        }
    }

    /// False when the write failed or timed out: the session is done.
    async fn write(&mut self, message: WsMessage) -> bool {
        let limit = Duration::from_secs(self.state.config.write_timeout_secs.max(1));
        matches!(timeout(limit, self.socket.send(message)).await, Ok(Ok(())))
    }

    /// Takes one frame: refused for rate, refused for a full queue, or queued
    /// for the worker. Returns a close code when the frame ends the session.
    fn take(&mut self, data: Bytes) -> Option<u16> {
        let received = Instant::now();
        self.metrics.frames_in.inc();
        let Ok(frame) = ClientFrame::decode(data) else {
            return Some(close::INVALID_FRAME);
        };
        if let Err(retry_after_ms) = self.bucket.take() {
            self.metrics.rate_limited.inc();
            self.strikes += 1;
            if self.strikes > self.state.config.rate_abuse_limit {
                return Some(close::POLICY_VIOLATION);
            }
            return self.refuse(frame.id, rate_limited(retry_after_ms));
        }
        self.strikes = 0;
        let id = frame.id;
        match self.requests.try_send(Request { frame, received }) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.queue_full.inc();
                self.refuse(id, queue_full())
            }
            // The worker is gone only when the session is ending.
            Err(mpsc::error::TrySendError::Closed(_)) => None,
        }
    }

    /// Answers a request the loop refused itself. A client that leaves even
    /// these unread is a slow consumer.
    fn refuse(&self, id: u64, error: ApiError) -> Option<u16> {
        let reply = Reply {
            frame: reply_frame(id, response::Result::Error(error.to_proto())),
            ack_of: None,
        };
        match self.replies.try_send(reply) {
            Ok(()) => None,
            Err(_) => Some(close::SLOW_CONSUMER),
        }
    }
}

fn rate_limited(retry_after_ms: u64) -> ApiError {
    let mut err = ApiError::new(
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "too many requests; slow down",
    );
    err.retry_after_ms = Some(retry_after_ms);
    err
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

/// Answers a session's requests one at a time, in order.
struct Worker {
    state: AppState,
    claims: Claims,
    /// Names this connection as the origin of its requests.
    connection: u64,
    /// This user's key in the limit all their sessions share.
    user_key: String,
    metrics: Arc<SessionMetrics>,
    /// Requests the user's limit refused in a row; past the abuse limit the
    /// session closes with 1008.
    strikes: u32,
    kick: Kick,
    replies: mpsc::Sender<Reply>,
}

impl Worker {
    async fn serve(mut self, mut waiting: mpsc::Receiver<Request>) {
        while let Some(Request { frame, received }) = waiting.recv().await {
            if self.replies.is_closed() {
                return; // the session has ended
            }
            let result = match self.state.limits.take(&self.user_key).await {
                Err(retry_after_ms) => {
                    self.metrics.rate_limited.inc();
                    self.strikes += 1;
                    if self.strikes > self.state.config.rate_abuse_limit {
                        self.kick.kick(close::POLICY_VIOLATION);
                        return;
                    }
                    response::Result::Error(rate_limited(retry_after_ms).to_proto())
                }
                Ok(()) => {
                    self.strikes = 0;
                    self.state
                        .backend
                        .handle(self.claims.sub, self.connection, frame.request)
                        .await
                }
            };
            let is_ack = matches!(result, response::Result::SendAck(_));
            let reply = Reply {
                frame: reply_frame(frame.id, result),
                ack_of: is_ack.then_some(received),
            };
            if self.replies.send(reply).await.is_err() {
                return;
            }
        }
    }
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
    use superapp_proto::ids::{GroupId, UserId};
    use superapp_proto::v1::{
        BusEnvelope, Event, Ping, ReadReceipt, bus_envelope, client_frame, event,
    };
    use tokio::sync::{Notify, mpsc::UnboundedReceiver, mpsc::UnboundedSender};
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    use super::*;
    use crate::GatewayConfig;
    use crate::backend::Backend;
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
    }

    impl Backend for GatedBackend {
        fn authenticate<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Claims, ApiError>> {
            Box::pin(async { Err(ApiError::unavailable("not in this test")) })
        }

        fn redeem_ticket<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Claims, ApiError>> {
            Box::pin(async { Err(ApiError::unavailable("not in this test")) })
        }

        fn session_start<'a>(&'a self, _: &'a Claims) -> BoxFuture<'a, SessionStart> {
            Box::pin(async { SessionStart::Live(Vec::new()) })
        }

        fn groups_of(&self, _: UserId) -> BoxFuture<'_, Option<Vec<GroupId>>> {
            Box::pin(async { Some(Vec::new()) })
        }

        fn handle(
            &self,
            _: UserId,
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
            shutdown: CancellationToken::new(),
            sessions: TaskTracker::new(),
        };
        let (to_server, incoming) = tokio::sync::mpsc::unbounded_channel();
        let (outgoing, from_server) = tokio::sync::mpsc::unbounded_channel();
        let user = UserId(7);
        let claims = Claims {
            sub: user,
            sid: 1,
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
