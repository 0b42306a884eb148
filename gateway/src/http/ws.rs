//! The WebSocket upgrade at `/v1/ws`: authentication at the handshake, then
//! one session per socket ([`crate::session`]).

use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use superapp_api::ErrorBody;

use super::ApiQuery;
use super::auth::bearer_token;
use crate::AppState;
use crate::error::ApiError;
use crate::session::{self, SessionMetrics};

#[derive(Deserialize)]
pub(super) struct WsQuery {
    ticket: Option<String>,
}

/// The WebSocket upgrade (subprotocol superapp.v1, protobuf frames; docs/protocol.md).
///
/// Authenticates before upgrading: a bearer token from native clients, or a
/// single-use ticket from browsers. A long-lived token in the URL is never read.
#[utoipa::path(get, path = "/v1/ws", tag = "edge", security(("bearer" = [])),
    params(("ticket" = Option<String>, Query, description = "A single-use ticket from /v1/ws-tickets, for browsers")),
    responses(
        (status = 101, description = "Switching protocols"),
        (status = 400, description = "not_a_websocket_upgrade, unsupported_subprotocol", body = ErrorBody),
        (status = 401, description = "missing_token, invalid_token, token_expired, session_revoked, invalid_ticket", body = ErrorBody),
        (status = 503, description = "shutting_down", body = ErrorBody),
))]
pub(super) async fn websocket(
    State(state): State<AppState>,
    axum::Extension(metrics): axum::Extension<Arc<SessionMetrics>>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<WsQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_a_websocket_upgrade",
            rejection.body_text(),
        )
    })?;
    let offered = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|p| p.trim() == superapp_proto::SUBPROTOCOL)
        });
    if !offered {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_subprotocol",
            format!(
                "offer the WebSocket subprotocol {}",
                superapp_proto::SUBPROTOCOL
            ),
        ));
    }
    if state.shutdown.is_cancelled() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down",
        ));
    }
    let claims = match (headers.contains_key(header::AUTHORIZATION), query.ticket) {
        (true, _) => state.backend.authenticate(bearer_token(&headers)?).await?,
        (false, Some(ticket)) => state.backend.redeem_ticket(&ticket).await?,
        (false, None) => {
            return Err(ApiError::unauthorized(
                "missing_token",
                "Authorization: Bearer <token> or ?ticket= required",
            ));
        }
    };
    let cfg = &state.config;
    let tracker = state.sessions.clone();
    let upgrade = upgrade
        .protocols([superapp_proto::SUBPROTOCOL])
        .read_buffer_size(cfg.read_buffer_bytes)
        .write_buffer_size(cfg.write_buffer_bytes)
        // Room for the largest frame the server writes: a pulled page, whose bodies
        // chat caps at MAX_PAGE_BODY_BYTES, plus framing.
        .max_write_buffer_size(
            cfg.write_buffer_bytes
                + superapp_chat::policy::MAX_PAGE_BODY_BYTES * 2
                + cfg.max_frame_bytes,
        )
        .max_message_size(cfg.max_frame_bytes)
        .max_frame_size(cfg.max_frame_bytes);
    Ok(upgrade.on_upgrade(move |socket| {
        tracker.track_future(session::run(socket, state, claims, metrics))
    }))
}
