//! Presence: whether a user is online, on the process that runs the rooms
//! (kept in memory in one process, in Redis across gateways).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use superapp_account::Accounts;
use superapp_account::model::UserId;
use superapp_api::{ErrorBody, Presence};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiPath, AuthUser, Rooms};
use crate::error::ApiError;

pub fn routes() -> OpenApiRouter<Rooms> {
    OpenApiRouter::new().routes(routes!(presence))
}

/// Whether a user is online, on how many devices, and when last seen (a crashed gateway's sessions count as offline within gateway.presence_ttl_secs). Any signed-in user may ask about any existing user; someone the user blocks, and anyone about a deleted account, is answered as for a user never seen.
#[utoipa::path(get, path = "/v1/users/{user_id}/presence", tag = "presence", security(("bearer" = [])),
    params(("user_id" = String, Path, description = "64-bit id as a decimal string")),
    responses(
        (status = 200, description = "Presence", body = Presence),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 404, description = "unknown_user", body = ErrorBody),
        (status = 503, description = "unavailable, with retry_after_ms", body = ErrorBody),
))]
async fn presence(
    State(rooms): State<Rooms>,
    AuthUser(me): AuthUser,
    ApiPath(user_id): ApiPath<String>,
) -> Result<Json<Presence>, ApiError> {
    let unknown = || ApiError::new(StatusCode::NOT_FOUND, "unknown_user", "no such user");
    let user = UserId(user_id.parse().map_err(|_| unknown())?);
    let accounts: &Arc<Accounts> = &rooms.accounts;
    let Some(standing) = accounts.standing(user).await? else {
        return Err(unknown());
    };
    // Someone the user blocks sees them as never seen; so does everyone a
    // user deleting their account.
    if !superapp_account::policy::security::takes_part(standing)
        || !rooms.social.may_see_presence(me.sub, user).await?
    {
        return Ok(Json(Presence {
            user_id: user.0,
            online: false,
            devices: 0,
            last_seen_ms: None,
        }));
    }
    let seen = rooms.presence.lookup(user).await.map_err(|e| {
        tracing::warn!(error = %e, "presence lookup failed");
        ApiError::unavailable("presence is unavailable; retry")
    })?;
    Ok(Json(Presence {
        user_id: user.0,
        online: seen.devices > 0,
        devices: seen.devices,
        last_seen_ms: seen.last_seen_ms,
    }))
}
