//! The edge: the HTTP JSON API (axum) and the WebSocket sessions at `/v1/ws`.
//! It authenticates, rate-limits, decodes frames, calls the domain rooms, and
//! delivers bus events to the sessions on this process. It knows nothing of SQL.
//!
//! - [`http`]: the router of each role: one module per room (routes, bodies,
//!   errors), the WebSocket upgrade, `/metrics`, and the OpenAPI document
//!   derived from the routes.
//! - [`backend`]: the port sessions call, served in-process or by the core over Redis.
//! - [`session`]: one task per WebSocket session: heartbeats, idle timeout, rate
//!   limits, request dispatch, a bounded outbound queue.
//! - [`hub`]: the sessions on this process by user, the bus subscription, and
//!   the fan-out of events to every device of a user.
//! - [`presence`]: which devices of a user are online, and when they were
//!   last seen: in memory, or in Redis shared by every gateway.
//! - [`error`]: [`ApiError`], the error shape of every answer; each room's module
//!   under [`http`] maps its outcomes to it.
//! - [`serve`]: the accept loop: timeouts and caps on connections.
//! - [`config`]: the `[gateway]` section of the configuration.
//! - [`close`]: the documented WebSocket close codes.

pub mod backend;
pub mod close;
pub mod config;
pub mod error;
pub mod http;
pub mod hub;
pub mod presence;
pub mod serve;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use superapp_kit::metrics::Registry;
use superapp_kit::ratelimit::RateLimiter;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use backend::Backend;
pub use config::GatewayConfig;
pub use error::ApiError;
pub use http::{Rooms, router};
pub use hub::Hub;

/// The handles every request and session needs. Cloned per request (all Arcs).
#[derive(Clone)]
pub struct AppState {
    /// What sessions call: the rooms here, or the core over Redis.
    pub backend: Arc<dyn Backend>,
    pub hub: Arc<Hub>,
    /// The per-user request limit all of a user's sessions share.
    pub limits: Arc<dyn RateLimiter>,
    pub metrics: Arc<Registry>,
    pub config: Arc<GatewayConfig>,
    /// On shutdown, how long sessions get to drain before they are closed
    /// with 1012 (`server.shutdown_drain_ms`).
    pub drain: Duration,
    /// Largest HTTP request body accepted (`server.max_body_bytes`).
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive in full (`server.body_timeout_ms`).
    pub body_timeout: Duration,
    /// Cancelled once, when the process begins to shut down.
    pub shutdown: CancellationToken,
    /// Every session task, so shutdown can wait for them to close.
    pub sessions: TaskTracker,
}
