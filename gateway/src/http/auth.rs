//! Who is calling: the authenticated-user extractor of every room's routes.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use superapp_account::Accounts;
use superapp_account::token::Claims;

use crate::error::ApiError;

/// The caller, from `Authorization: Bearer <access token>`: a valid token of
/// a live session. A handler that takes it answers 401 to anyone else. On a
/// room route the request budget ([`super::limit::charge`]) has already
/// authenticated the caller, and left the outcome in the request's
/// extensions for this extractor to take, so no request is authenticated
/// twice.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser(pub Claims);

/// Why the request budget could not authenticate the caller.
#[derive(Debug, Clone)]
pub(crate) struct AuthFailure(pub(crate) ApiError);

impl<S> FromRequestParts<S> for AuthUser
where
    Arc<Accounts>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if let Some(user) = parts.extensions.get::<AuthUser>() {
            return Ok(*user);
        }
        if let Some(AuthFailure(refused)) = parts.extensions.get::<AuthFailure>() {
            return Err(refused.clone());
        }
        let token = bearer_token(&parts.headers)?;
        let accounts = Arc::<Accounts>::from_ref(state);
        Ok(Self(accounts.authenticate(token).await?))
    }
}

/// The token of `Authorization: Bearer`.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Result<&str, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::unauthorized("missing_token", "Authorization: Bearer <token> required")
        })?;
    Ok(token.trim())
}
