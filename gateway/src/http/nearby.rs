//! People nearby at the edge: sharing a position, clearing it, and searching
//! around it, on the process that runs the rooms; and the mapping of the
//! room's outcomes to stable codes. Positions arrive here and go no
//! further than the room, which keeps only their grid cells: none is
//! logged, and no answer carries one.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use superapp_account::{Nearby, NearbyError};
use superapp_api::{
    ErrorBody, LocationShared, NearbyPeople, NearbyPerson, NearbyQuery, ShareLocation,
};
use superapp_kit::store::StoreError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, ApiQuery, AuthUser, Rooms};
use crate::error::ApiError;

pub fn routes() -> OpenApiRouter<Rooms> {
    OpenApiRouter::new()
        .routes(routes!(share, clear))
        .routes(routes!(search))
}

/// The room's outcomes as the API's stable codes.
impl From<NearbyError> for ApiError {
    fn from(e: NearbyError) -> Self {
        use StatusCode as S;
        let (status, code, retry) = match &e {
            NearbyError::InvalidLatitude => (S::BAD_REQUEST, "invalid_latitude", None),
            NearbyError::InvalidLongitude => (S::BAD_REQUEST, "invalid_longitude", None),
            NearbyError::NotCovered => (S::BAD_REQUEST, "location_not_covered", None),
            NearbyError::InvalidRadius { .. } => (S::BAD_REQUEST, "invalid_radius", None),
            NearbyError::NotShared => (S::CONFLICT, "location_not_shared", None),
            NearbyError::TooManyMoves { retry_after_ms } => (
                S::TOO_MANY_REQUESTS,
                "too_many_location_changes",
                Some(*retry_after_ms),
            ),
            NearbyError::TooManyQueries { retry_after_ms } => (
                S::TOO_MANY_REQUESTS,
                "too_many_nearby_queries",
                Some(*retry_after_ms),
            ),
            NearbyError::Index(cause) => {
                tracing::warn!(error = %cause, "people nearby's index failed");
                return Self::unavailable("people nearby is unavailable; retry");
            }
            NearbyError::Store(StoreError::Busy) => return Self::busy(),
            NearbyError::Store(_) => return Self::internal(&e),
        };
        let mut err = Self::new(status, code, e.to_string());
        err.retry_after_ms = retry;
        err
    }
}

/// Share your location with people nearby: found for 30 minutes, as a cell of about 100 m
#[utoipa::path(put, path = "/v1/me/location", tag = "nearby", security(("bearer" = [])),
    request_body = ShareLocation,
    responses(
        (status = 200, description = "Shared; found until expires_at_ms unless shared again", body = LocationShared),
        (status = 400, description = "invalid_latitude, invalid_longitude, location_not_covered", body = ErrorBody),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 429, description = "too_many_location_changes", body = ErrorBody),
        (status = 503, description = "unavailable, with retry_after_ms", body = ErrorBody),
))]
async fn share(
    State(nearby): State<Arc<Nearby>>,
    auth: Result<AuthUser, ApiError>,
    ApiJson(body): ApiJson<ShareLocation>,
) -> Result<Json<LocationShared>, ApiError> {
    let AuthUser(me) = auth?;
    let shared = nearby.share(me.sub, body.lat, body.lon).await?;
    Ok(Json(LocationShared {
        expires_at_ms: shared.expires_at_ms,
    }))
}

/// Stop sharing your location: nobody finds you nearby any more
#[utoipa::path(delete, path = "/v1/me/location", tag = "nearby", security(("bearer" = [])),
    responses(
        (status = 204, description = "Cleared (also when nothing was shared)"),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 503, description = "unavailable, with retry_after_ms", body = ErrorBody),
))]
async fn clear(
    State(nearby): State<Arc<Nearby>>,
    AuthUser(me): AuthUser,
) -> Result<StatusCode, ApiError> {
    nearby.clear(me.sub).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// People who share their location within a radius of yours, nearest first, with distances rounded; never anyone you block or who blocks you
#[utoipa::path(get, path = "/v1/nearby", tag = "nearby", security(("bearer" = [])),
    params(NearbyQuery),
    responses(
        (status = 200, description = "People nearby", body = NearbyPeople),
        (status = 400, description = "invalid_radius", body = ErrorBody),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 409, description = "location_not_shared", body = ErrorBody),
        (status = 429, description = "too_many_nearby_queries", body = ErrorBody),
        (status = 503, description = "unavailable, with retry_after_ms", body = ErrorBody),
))]
async fn search(
    State(nearby): State<Arc<Nearby>>,
    AuthUser(me): AuthUser,
    ApiQuery(query): ApiQuery<NearbyQuery>,
) -> Result<Json<NearbyPeople>, ApiError> {
    let page = nearby.query(me.sub, query.radius_m, query.limit).await?;
    Ok(Json(NearbyPeople {
        people: page
            .people
            .into_iter()
            .map(|p| NearbyPerson {
                user_id: p.user.0,
                display_name: p.display_name,
                within_m: p.within_m,
            })
            .collect(),
        radius_m: page.radius_m,
        expires_at_ms: page.expires_at_ms,
    }))
}
