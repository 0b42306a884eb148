//! Calls at the edge: the stable codes of [`CallError`] (the calls
//! themselves travel over the WebSocket, see [`crate::backend`]), and TURN
//! credentials over HTTP.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use superapp_api::{ErrorBody, TurnCredentials};
use superapp_chat::{CallError, Calls};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AuthUser, Rooms};
use crate::error::ApiError;

pub fn routes() -> OpenApiRouter<Rooms> {
    OpenApiRouter::new().routes(routes!(turn))
}

/// The calls' outcomes as the API's stable codes; chat's own (an unknown
/// user or group, a non-member) keep theirs.
impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        use StatusCode as S;
        let (status, code) = match &e {
            CallError::UnknownCall => (S::NOT_FOUND, "unknown_call"),
            CallError::CallEnded => (S::CONFLICT, "call_ended"),
            CallError::AnsweredElsewhere => (S::CONFLICT, "answered_elsewhere"),
            CallError::AlreadyInCall => (S::CONFLICT, "already_in_call"),
            CallError::CallRefused => (S::FORBIDDEN, "call_refused"),
            CallError::PeerNotJoined => (S::CONFLICT, "peer_not_joined"),
            CallError::TooManyParticipants { .. } => (S::BAD_REQUEST, "too_many_participants"),
            CallError::Invalid { code, .. } => (S::BAD_REQUEST, *code),
            CallError::Chat(_) => {
                let CallError::Chat(inner) = e else {
                    unreachable!("matched above")
                };
                return Self::from(inner);
            }
        };
        Self::new(status, code, e.to_string())
    }
}

/// Time-limited credentials for the TURN server (the TURN REST API convention that coturn implements with use-auth-secret): username "<expiry unix secs>:<user id>", credential base64(HMAC-SHA1(secret, username)). Ask before each call; an allocation outlives its credentials' expiry. 404 turn_unavailable when the server offers no TURN relay (no calls.turn_secret): calls then use direct connections only.
#[utoipa::path(get, path = "/v1/calls/turn", tag = "calls", security(("bearer" = [])),
    responses(
        (status = 200, description = "Credentials", body = TurnCredentials),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 404, description = "turn_unavailable: this server offers no TURN relay", body = ErrorBody),
))]
async fn turn(
    State(calls): State<Arc<Calls>>,
    AuthUser(me): AuthUser,
) -> Result<Json<TurnCredentials>, ApiError> {
    let grant = calls.turn(me.sub).ok_or_else(|| {
        ApiError::new(
            // Not a failure of the server (a 5xx): it is configured
            // without a relay, and will answer the same until it is not.
            StatusCode::NOT_FOUND,
            "turn_unavailable",
            "this server has no TURN server configured (calls.turn_secret); calls use direct \
             connections only",
        )
    })?;
    Ok(Json(TurnCredentials {
        username: grant.credentials.username,
        credential: grant.credentials.credential,
        ttl_secs: grant.ttl_secs,
        uris: grant.uris,
    }))
}
