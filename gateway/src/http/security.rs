//! Account security at the edge: changing the password, the caller's
//! sessions (devices) and ending one, deleting the account and restoring it
//! within its grace period, and users' names for showing a history (deleted
//! accounts included). The account room's refusals map to codes in
//! [`super::accounts`], with the rest of its outcomes.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use superapp_account::Accounts;
use superapp_account::model::UserId;
use superapp_api::{
    AccountDeletion, ChangePassword, DeleteAccount, ErrorBody, NamesQuery, Restore, Session,
    Sessions, Tokens, UserName, UserNames,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::accounts::{client_address, tokens};
use super::{ApiJson, ApiPath, AuthUser, Rooms};
use crate::error::ApiError;

pub fn routes() -> OpenApiRouter<Rooms> {
    OpenApiRouter::new()
        .routes(routes!(change_password))
        .routes(routes!(sessions))
        .routes(routes!(revoke_session))
        .routes(routes!(delete_account))
        .routes(routes!(restore))
        .routes(routes!(names))
}

/// Change your password: the current one, then the new one. Every other session ends at once (their WebSockets close with 4001); yours stays, under the new token pair answered (its earlier refresh token no longer works)
#[utoipa::path(post, path = "/v1/me/password", tag = "accounts", security(("bearer" = [])),
    request_body = ChangePassword,
    responses(
        (status = 200, description = "Changed: your session's new token pair", body = Tokens),
        (status = 400, description = "password_too_short, password_too_long, password_too_common, password_unchanged", body = ErrorBody),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 403, description = "wrong_password: the current password is not yours (counted as a failed log-in)", body = ErrorBody),
        (status = 429, description = "too_many_attempts (the failed-login throttle), with retry_after_ms and Retry-After", body = ErrorBody),
        (status = 503, description = "busy: the hashing queue is full; retry_after_ms and Retry-After", body = ErrorBody),
))]
async fn change_password(
    State(accounts): State<Arc<Accounts>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    AuthUser(claims): AuthUser,
    ApiJson(body): ApiJson<ChangePassword>,
) -> Result<Json<Tokens>, ApiError> {
    let pair = accounts
        .change_password(
            &claims,
            &body.current_password,
            &body.new_password,
            &client_address(peer),
        )
        .await?;
    Ok(Json(tokens(pair)))
}

/// Your live sessions (devices signed in), the most recently active first, the one asking marked current
#[utoipa::path(get, path = "/v1/me/sessions", tag = "accounts", security(("bearer" = [])),
    responses(
        (status = 200, description = "Live sessions", body = Sessions),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
))]
async fn sessions(
    State(accounts): State<Arc<Accounts>>,
    AuthUser(claims): AuthUser,
) -> Result<Json<Sessions>, ApiError> {
    let live = accounts.sessions(claims.sub).await?;
    Ok(Json(Sessions {
        sessions: live
            .into_iter()
            .map(|s| Session {
                session_id: s.id,
                device_name: s.device_name,
                created_at_ms: s.created_at_ms,
                last_active_at_ms: s.last_active_at_ms,
                expires_at_ms: s.expires_at_ms,
                current: s.id == claims.sid,
            })
            .collect(),
    }))
}

/// End one of your sessions: its WebSockets close with 4001 and its tokens stop working (ending your own is a log-out)
#[utoipa::path(delete, path = "/v1/me/sessions/{session_id}", tag = "accounts", security(("bearer" = [])),
    params(("session_id" = String, Path, description = "64-bit id as a decimal string")),
    responses(
        (status = 204, description = "Ended"),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 404, description = "unknown_session: not a live session of yours (whoever's it is)", body = ErrorBody),
))]
async fn revoke_session(
    State(accounts): State<Arc<Accounts>>,
    AuthUser(claims): AuthUser,
    ApiPath(session_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let session_id = session_id
        .parse()
        .map_err(|_| ApiError::from(superapp_account::AccountError::UnknownSession))?;
    accounts.revoke_session(claims.sub, session_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Delete your account, your password asked again. It is deactivated at once (every session ends; nobody can message you, befriend you or add you to a group) and erased when account.deletion_grace_secs (7 days) have passed; until then POST /v1/accounts/restore brings it back
#[utoipa::path(post, path = "/v1/me/deletion", tag = "accounts", security(("bearer" = [])),
    request_body = DeleteAccount,
    responses(
        (status = 202, description = "Deletion asked: restorable until due_at_ms", body = AccountDeletion),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 403, description = "wrong_password (counted as a failed log-in)", body = ErrorBody),
        (status = 409, description = "account_deletion_pending: asked already", body = ErrorBody),
        (status = 429, description = "too_many_attempts (the failed-login throttle), with retry_after_ms and Retry-After", body = ErrorBody),
        (status = 503, description = "busy: the hashing queue is full; retry_after_ms and Retry-After", body = ErrorBody),
))]
async fn delete_account(
    State(accounts): State<Arc<Accounts>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    AuthUser(claims): AuthUser,
    ApiJson(body): ApiJson<DeleteAccount>,
) -> Result<(StatusCode, Json<AccountDeletion>), ApiError> {
    let asked = accounts
        .request_deletion(&claims, &body.password, &client_address(peer))
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(AccountDeletion {
            requested_at_ms: asked.requested_at_ms,
            due_at_ms: asked.due_at_ms,
        }),
    ))
}

/// Restore an account being deleted, within its grace period, and sign in: a log-in that also withdraws the deletion
#[utoipa::path(post, path = "/v1/accounts/restore", tag = "accounts", request_body = Restore, responses(
    (status = 200, description = "Restored and signed in", body = Tokens),
    (status = 401, description = "invalid_credentials (the same for an unknown phone)", body = ErrorBody),
    (status = 409, description = "deletion_not_requested: the account is not being deleted (log in instead)", body = ErrorBody),
    (status = 410, description = "account_deleted: the grace period has ended", body = ErrorBody),
    (status = 429, description = "too_many_attempts, with retry_after_ms and Retry-After", body = ErrorBody),
    (status = 503, description = "busy: the hashing queue is full; retry_after_ms and Retry-After", body = ErrorBody),
))]
async fn restore(
    State(accounts): State<Arc<Accounts>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<Restore>,
) -> Result<Json<Tokens>, ApiError> {
    let pair = accounts
        .restore(
            &body.phone,
            &body.password,
            &body.device_name,
            &client_address(peer),
        )
        .await?;
    Ok(Json(tokens(pair)))
}

/// The names of up to 100 users, for showing who wrote what; a deleted account is named "Deleted account" with deleted set (show your own words for it). Unknown ids are left out
#[utoipa::path(post, path = "/v1/users/names", tag = "accounts", security(("bearer" = [])),
    request_body = NamesQuery,
    responses(
        (status = 200, description = "Names, in the order asked", body = UserNames),
        (status = 400, description = "too_many_users (over 100)", body = ErrorBody),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
))]
async fn names(
    State(accounts): State<Arc<Accounts>>,
    auth: Result<AuthUser, ApiError>,
    ApiJson(body): ApiJson<NamesQuery>,
) -> Result<Json<UserNames>, ApiError> {
    // The body is checked before the caller, as the API always has.
    auth?;
    let people = accounts
        .people(body.user_ids.into_iter().map(UserId).collect())
        .await?;
    Ok(Json(UserNames {
        users: people
            .into_iter()
            .map(|p| UserName {
                user_id: p.id.0,
                display_name: p.display_name,
                deleted: p.deleted,
            })
            .collect(),
    }))
}
