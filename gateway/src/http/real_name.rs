//! Real-name verification at the edge: the caller's submission and status
//! (`/v1/me/real-name`). The account room's refusals map to codes in
//! [`super::accounts`], with the rest of its outcomes.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use superapp_account::RealNames;
use superapp_account::model::{RealNameStatus, RealNameView, Rejection};
use superapp_api::{ErrorBody, RealName, RealNameRejection, SubmitRealName};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, AuthUser, Rooms};
use crate::error::ApiError;

pub fn routes() -> OpenApiRouter<Rooms> {
    OpenApiRouter::new().routes(routes!(real_name, submit_real_name))
}

fn body(view: RealNameView) -> RealName {
    use superapp_api::RealNameStatus as S;
    RealName {
        status: match view.status {
            RealNameStatus::Unverified => S::Unverified,
            RealNameStatus::Pending => S::Pending,
            RealNameStatus::Verified => S::Verified,
            RealNameStatus::Rejected => S::Rejected,
        },
        legal_name: view.legal_name,
        id_number_masked: view.id_number_masked,
        rejection: view.rejection.map(|r| match r {
            Rejection::Mismatch => RealNameRejection::Mismatch,
            Rejection::Expired => RealNameRejection::Expired,
        }),
        submitted_at_ms: view.submitted_at_ms,
        decided_at_ms: view.decided_at_ms,
    }
}

/// The caller's real-name verification: its status, the legal name and the ID number masked; a pending one is first brought up to date with the provider
#[utoipa::path(get, path = "/v1/me/real-name", tag = "accounts", security(("bearer" = [])), responses(
    (status = 200, description = "The caller's verification", body = RealName),
    (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
))]
async fn real_name(
    State(real_names): State<Arc<RealNames>>,
    AuthUser(claims): AuthUser,
) -> Result<Json<RealName>, ApiError> {
    Ok(Json(body(real_names.status(claims.sub).await?)))
}

/// Submit a legal name and an 18-character resident identity number for verification: decided at once (200) or pending (202)
#[utoipa::path(post, path = "/v1/me/real-name", tag = "accounts", security(("bearer" = [])), request_body = SubmitRealName, responses(
    (status = 200, description = "Decided: verified or rejected", body = RealName),
    (status = 202, description = "Pending: read GET /v1/me/real-name later", body = RealName),
    (status = 400, description = "invalid_id_number, invalid_legal_name", body = ErrorBody),
    (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
    (status = 409, description = "already_verified, verification_pending, id_number_taken", body = ErrorBody),
    (status = 429, description = "too_many_submissions (real_name.submissions_per_day), with retry_after_ms and Retry-After", body = ErrorBody),
    (status = 503, description = "real_name_unavailable (no provider configured); busy", body = ErrorBody),
))]
async fn submit_real_name(
    State(real_names): State<Arc<RealNames>>,
    AuthUser(claims): AuthUser,
    ApiJson(submission): ApiJson<SubmitRealName>,
) -> Result<(StatusCode, Json<RealName>), ApiError> {
    let view = real_names
        .submit(claims.sub, &submission.legal_name, &submission.id_number)
        .await?;
    let status = match view.status {
        RealNameStatus::Pending => StatusCode::ACCEPTED,
        _ => StatusCode::OK,
    };
    Ok((status, Json(body(view))))
}
