//! The account room at the edge: registration, sessions and tokens, the
//! profile, WebSocket tickets, and the mapping of the room's outcomes to
//! stable codes.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use superapp_account::{AccountError, Accounts, NewAccount, Profile, TokenPair};
use superapp_api::{Account, ErrorBody, Login, Refresh, Register, Ticket, Tokens};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, AuthUser, Rooms};
use crate::error::ApiError;

pub fn routes() -> OpenApiRouter<Rooms> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(ws_ticket))
}

fn account(p: Profile) -> Account {
    Account {
        user_id: p.user_id.0,
        phone: p.phone,
        display_name: p.display_name,
        created_at_ms: p.created_at_ms,
    }
}

pub(crate) fn tokens(t: TokenPair) -> Tokens {
    Tokens {
        user_id: t.user_id.0,
        session_id: t.session_id,
        access_token: t.access_token,
        access_expires_at_ms: t.access_expires_at_ms,
        refresh_token: t.refresh_token,
        refresh_expires_at_ms: t.refresh_expires_at_ms,
    }
}

/// The room's outcomes as the API's stable codes, over HTTP and WebSocket alike.
impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        use StatusCode as S;
        let (status, code) = match &e {
            AccountError::InvalidPhone => (S::BAD_REQUEST, "invalid_phone"),
            AccountError::InvalidDisplayName => (S::BAD_REQUEST, "invalid_display_name"),
            AccountError::PasswordTooShort => (S::BAD_REQUEST, "password_too_short"),
            AccountError::PasswordTooLong => (S::BAD_REQUEST, "password_too_long"),
            AccountError::PasswordTooCommon => (S::BAD_REQUEST, "password_too_common"),
            AccountError::PhoneTaken => (S::CONFLICT, "phone_taken"),
            AccountError::InvalidCredentials => (S::UNAUTHORIZED, "invalid_credentials"),
            AccountError::TooManyAttempts { retry_after_ms } => {
                let mut err = Self::new(S::TOO_MANY_REQUESTS, "too_many_attempts", e.to_string());
                err.retry_after_ms = Some(*retry_after_ms);
                return err;
            }
            AccountError::TooManyRegistrations { retry_after_ms } => {
                let mut err = Self::new(
                    S::TOO_MANY_REQUESTS,
                    "too_many_registrations",
                    e.to_string(),
                );
                err.retry_after_ms = Some(*retry_after_ms);
                return err;
            }
            AccountError::Busy { retry_after_ms } => {
                let mut err = Self::new(S::SERVICE_UNAVAILABLE, "busy", e.to_string());
                err.retry_after_ms = Some(*retry_after_ms);
                return err;
            }
            AccountError::InvalidRefreshToken => (S::UNAUTHORIZED, "invalid_refresh_token"),
            AccountError::InvalidToken => (S::UNAUTHORIZED, "invalid_token"),
            AccountError::TokenExpired => (S::UNAUTHORIZED, "token_expired"),
            AccountError::SessionRevoked => (S::UNAUTHORIZED, "session_revoked"),
            AccountError::InvalidTicket => (S::UNAUTHORIZED, "invalid_ticket"),
            AccountError::InvalidIdNumber(_) => (S::BAD_REQUEST, "invalid_id_number"),
            AccountError::InvalidLegalName => (S::BAD_REQUEST, "invalid_legal_name"),
            AccountError::AlreadyVerified => (S::CONFLICT, "already_verified"),
            AccountError::VerificationPending => (S::CONFLICT, "verification_pending"),
            AccountError::IdNumberTaken => (S::CONFLICT, "id_number_taken"),
            AccountError::TooManySubmissions { retry_after_ms } => {
                let mut err =
                    Self::new(S::TOO_MANY_REQUESTS, "too_many_submissions", e.to_string());
                err.retry_after_ms = Some(*retry_after_ms);
                return err;
            }
            AccountError::RealNameUnavailable => (S::SERVICE_UNAVAILABLE, "real_name_unavailable"),
            AccountError::WrongPassword => (S::FORBIDDEN, "wrong_password"),
            AccountError::PasswordUnchanged => (S::BAD_REQUEST, "password_unchanged"),
            AccountError::UnknownSession => (S::NOT_FOUND, "unknown_session"),
            AccountError::DeletionPending { .. } => (S::CONFLICT, "account_deletion_pending"),
            AccountError::AccountDeleted => (S::GONE, "account_deleted"),
            AccountError::DeletionNotRequested => (S::CONFLICT, "deletion_not_requested"),
            AccountError::TooManyUsers { .. } => (S::BAD_REQUEST, "too_many_users"),
            AccountError::Store(superapp_kit::store::StoreError::Busy) => return Self::busy(),
            AccountError::Store(_) | AccountError::Internal(_) => return Self::internal(&e),
        };
        Self::new(status, code, e.to_string())
    }
}

/// The key the account throttles count a client under: its TCP peer's
/// address (an IPv6 one by its /64). `X-Forwarded-For` is not read, since
/// any client can write it.
pub(crate) fn client_address(peer: SocketAddr) -> String {
    crate::serve::address_key(peer.ip()).to_string()
}

/// Register with a phone number (E.164), a password (8 to 128 characters, not a common one) and a display name
#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", request_body = Register, responses(
    (status = 201, description = "Registered", body = Account),
    (status = 400, description = "invalid_phone, password_too_short, password_too_long, password_too_common, invalid_display_name, invalid_json", body = ErrorBody),
    (status = 409, description = "phone_taken", body = ErrorBody),
    (status = 413, description = "body_too_large", body = ErrorBody),
    (status = 415, description = "unsupported_media_type", body = ErrorBody),
    (status = 429, description = "too_many_registrations from this address, with retry_after_ms and Retry-After", body = ErrorBody),
    (status = 503, description = "busy: the hashing queue is full; retry_after_ms and Retry-After", body = ErrorBody),
))]
async fn register(
    State(accounts): State<Arc<Accounts>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<Register>,
) -> Result<(StatusCode, Json<Account>), ApiError> {
    let profile = accounts
        .register(
            NewAccount {
                phone: body.phone,
                password: body.password,
                display_name: body.display_name,
            },
            &client_address(peer),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(account(profile))))
}

/// Log in: a short-lived access token and a rotating refresh token
#[utoipa::path(post, path = "/v1/sessions", tag = "accounts", request_body = Login, responses(
    (status = 200, description = "Logged in", body = Tokens),
    (status = 400, description = "invalid_json, or a field-specific code", body = ErrorBody),
    (status = 401, description = "invalid_credentials (the same for an unknown phone)", body = ErrorBody),
    (status = 409, description = "account_deletion_pending: the account is being deleted; restore it with POST /v1/accounts/restore", body = ErrorBody),
    (status = 410, description = "account_deleted: the account's grace period has ended", body = ErrorBody),
    (status = 429, description = "too_many_attempts, with retry_after_ms and Retry-After", body = ErrorBody),
    (status = 503, description = "busy: the hashing queue is full; retry_after_ms and Retry-After", body = ErrorBody),
))]
async fn login(
    State(accounts): State<Arc<Accounts>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<Login>,
) -> Result<Json<Tokens>, ApiError> {
    let pair = accounts
        .login(
            &body.phone,
            &body.password,
            &body.device_name,
            &client_address(peer),
        )
        .await?;
    Ok(Json(tokens(pair)))
}

/// Exchange a refresh token for a new pair; a spent token revokes its session
#[utoipa::path(post, path = "/v1/sessions/refresh", tag = "accounts", request_body = Refresh, responses(
    (status = 200, description = "A new pair", body = Tokens),
    (status = 400, description = "invalid_json, or a field-specific code", body = ErrorBody),
    (status = 401, description = "invalid_refresh_token", body = ErrorBody),
))]
async fn refresh(
    State(accounts): State<Arc<Accounts>>,
    ApiJson(body): ApiJson<Refresh>,
) -> Result<Json<Tokens>, ApiError> {
    Ok(Json(tokens(accounts.refresh(&body.refresh_token).await?)))
}

/// Log out: ends the session and closes its WebSockets with 4001
#[utoipa::path(delete, path = "/v1/sessions/current", tag = "accounts", security(("bearer" = [])), responses(
    (status = 204, description = "Logged out"),
    (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
))]
async fn logout(
    State(accounts): State<Arc<Accounts>>,
    AuthUser(claims): AuthUser,
) -> Result<StatusCode, ApiError> {
    accounts.logout(&claims).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's profile
#[utoipa::path(get, path = "/v1/me", tag = "accounts", security(("bearer" = [])), responses(
    (status = 200, description = "The profile", body = Account),
    (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
))]
async fn me(
    State(accounts): State<Arc<Accounts>>,
    AuthUser(claims): AuthUser,
) -> Result<Json<Account>, ApiError> {
    Ok(Json(account(accounts.profile(claims.sub).await?)))
}

/// A single-use ticket, valid 30 seconds, for a browser's WebSocket handshake (?ticket=)
#[utoipa::path(post, path = "/v1/ws-tickets", tag = "accounts", security(("bearer" = [])), responses(
    (status = 200, description = "A ticket", body = Ticket),
    (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
))]
async fn ws_ticket(
    State(accounts): State<Arc<Accounts>>,
    AuthUser(claims): AuthUser,
) -> Json<Ticket> {
    let (ticket, expires_at_ms) = accounts.issue_ticket(claims);
    Json(Ticket {
        ticket,
        expires_at_ms,
    })
}
