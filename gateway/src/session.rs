//! One task per WebSocket session.
//!
//! The task owns the socket. It reads client frames and answers each request in
//! order, writes queued events, pings on a heartbeat, and closes with a
//! documented code (see [`crate::close`]) on abuse, idleness, a full outbound
//! queue, revocation or shutdown. It holds no lock across an await; its
//! [`Registration`](crate::hub::Registration) unregisters it when it ends.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use bytes::Bytes;
use prost::Message as _;
use superapp_kit::metrics::{Counter, Histogram, LATENCY_SECONDS};
use superapp_kit::ratelimit::TokenBucket;
use superapp_kit::token::Claims;
use superapp_proto::v1::{ClientFrame, Response, ServerFrame, response, server_frame};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

use crate::backend::SessionStart;
use crate::error::ApiError;
use crate::{AppState, close};

/// Per-session instruments, looked up once per process.
pub struct SessionMetrics {
    pub frames_in: Arc<Counter>,
    pub ack_seconds: Arc<Histogram>,
    pub rate_limited: Arc<Counter>,
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
        }
    }
}

struct Session {
    socket: WebSocket,
    state: AppState,
    claims: Claims,
    metrics: Arc<SessionMetrics>,
    bucket: TokenBucket,
    /// This user's key in the limit all their sessions share.
    user_key: String,
    /// Requests refused for rate in a row; past the abuse limit the session closes.
    strikes: u32,
    /// Names this connection as the origin of its requests.
    connection: u64,
    last_seen: Instant,
}

/// Runs a session until it ends. `claims` were checked at the handshake.
pub async fn run(socket: WebSocket, state: AppState, claims: Claims, metrics: Arc<SessionMetrics>) {
    let cfg = state.config.gateway.clone();
    let (tx, mut outbound) = mpsc::channel::<Bytes>(cfg.outbound_queue);
    let registration = state.hub.register(claims.sub, claims.sid, tx);
    start(&state, &claims, &registration).await;
    let mut session = Session {
        socket,
        bucket: TokenBucket::new(cfg.rate_per_sec, cfg.rate_burst),
        user_key: format!("u.{}", claims.sub),
        state,
        claims,
        metrics,
        strikes: 0,
        connection: registration.connection(),
        last_seen: Instant::now(),
    };
    tracing::debug!(user_id = claims.sub.0, "session opened");
    let code = session.serve(&mut outbound, &registration).await;
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
async fn start(state: &AppState, claims: &Claims, registration: &crate::hub::Registration) {
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

impl Session {
    /// Serves until the session must end; returns the close code to send, or
    /// None when the client is already gone.
    async fn serve(
        &mut self,
        outbound: &mut mpsc::Receiver<Bytes>,
        registration: &crate::hub::Registration,
    ) -> Option<u16> {
        let cfg = self.state.config.clone();
        let heartbeat_every = Duration::from_secs(cfg.gateway.heartbeat_secs.max(1));
        let idle_after = Duration::from_secs(cfg.gateway.idle_timeout_secs.max(1));
        let mut heartbeat =
            tokio::time::interval_at(Instant::now() + heartbeat_every, heartbeat_every);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown = self.state.shutdown.clone();
        let drain = Duration::from_millis(cfg.server.shutdown_drain_ms);
        // Stop accepting is the listener's job; a session keeps serving for the
        // drain period so requests in flight complete, then closes with 1012.
        let drained = async {
            shutdown.cancelled().await;
            tokio::time::sleep(drain).await;
        };
        tokio::pin!(drained);
        // Made once: a fresh `cancelled()` future per turn of the loop would
        // register with the token again on every event.
        let kick = registration.kick().clone();
        let kicked = kick.kicked();
        tokio::pin!(kicked);
        loop {
            tokio::select! {
                code = &mut kicked => return Some(code),
                _ = &mut drained => {
                    while let Ok(frame) = outbound.try_recv() {
                        if !self.write(WsMessage::Binary(frame)).await {
                            return None;
                        }
                    }
                    return Some(close::SERVICE_RESTART);
                }
                frame = outbound.recv() => {
                    let frame = frame?;
                    if !self.write(WsMessage::Binary(frame)).await {
                        self.state.hub.count_slow_consumer();
                        return Some(close::SLOW_CONSUMER);
                    }
                }
                incoming = self.socket.recv() => {
                    let message = match incoming {
                        None => return None,
                        Some(Ok(message)) => message,
                        Some(Err(e)) => return too_big(e).then_some(close::TOO_BIG),
                    };
                    self.last_seen = Instant::now();
                    match message {
                        WsMessage::Binary(data) => {
                            if let Some(code) = self.handle(data).await {
                                return Some(code);
                            }
                        }
                        WsMessage::Text(_) => return Some(close::UNSUPPORTED_DATA),
                        WsMessage::Ping(_) | WsMessage::Pong(_) => {}
                        // tungstenite answers the close handshake itself.
                        WsMessage::Close(_) => return None,
                    }
                }
                _ = heartbeat.tick() => {
                    if self.last_seen.elapsed() >= idle_after {
                        return Some(close::IDLE_TIMEOUT);
                    }
                    if !self.write(WsMessage::Ping(Bytes::new())).await {
                        return None;
                    }
                }
            }
        }
    }

    /// False when the write failed or timed out: the session is done.
    async fn write(&mut self, message: WsMessage) -> bool {
        let limit = Duration::from_secs(self.state.config.gateway.write_timeout_secs.max(1));
        matches!(timeout(limit, self.socket.send(message)).await, Ok(Ok(())))
    }

    /// Answers one frame. Returns a close code when the frame ends the session.
    async fn handle(&mut self, data: Bytes) -> Option<u16> {
        let received = Instant::now();
        self.metrics.frames_in.inc();
        let Ok(frame) = ClientFrame::decode(data) else {
            return Some(close::INVALID_FRAME);
        };
        let result = match self.admit().await {
            Err(retry_after_ms) => {
                self.metrics.rate_limited.inc();
                self.strikes += 1;
                if self.strikes > self.state.config.gateway.rate_abuse_limit {
                    return Some(close::POLICY_VIOLATION);
                }
                let mut err = ApiError::new(
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many requests; slow down",
                );
                err.retry_after_ms = Some(retry_after_ms);
                response::Result::Error(err.to_proto())
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
        let reply = ServerFrame {
            kind: Some(server_frame::Kind::Response(Response {
                id: frame.id,
                result: Some(result),
            })),
        };
        if !self
            .write(WsMessage::Binary(reply.encode_to_vec().into()))
            .await
        {
            return Some(close::SLOW_CONSUMER);
        }
        if is_ack {
            self.metrics
                .ack_seconds
                .observe(received.elapsed().as_secs_f64());
        }
        None
    }

    /// The session's bucket, then the user's (shared by all their devices,
    /// on every gateway).
    async fn admit(&mut self) -> Result<(), u64> {
        self.bucket.take()?;
        self.state.limits.take(&self.user_key).await
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
