//! The one place domain outcomes become stable error codes. The internal cause
//! of a server error is logged here once and never sent.

use std::borrow::Cow;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use superapp_account::AccountError;
use superapp_chat::ChatError;
use superapp_kit::store::StoreError;

#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    pub code: Cow<'static, str>,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// A dependency did not answer: retry in a second.
    pub fn unavailable(message: &str) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
        e.retry_after_ms = Some(1_000);
        e
    }

    pub fn unauthorized(code: &'static str, message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    pub fn to_proto(&self) -> superapp_proto::v1::Error {
        superapp_proto::v1::Error {
            code: self.code.to_string(),
            message: self.message.clone(),
            retry_after_ms: self.retry_after_ms.unwrap_or(0).min(u64::from(u32::MAX)) as u32,
        }
    }
}

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
            AccountError::InvalidRefreshToken => (S::UNAUTHORIZED, "invalid_refresh_token"),
            AccountError::InvalidToken => (S::UNAUTHORIZED, "invalid_token"),
            AccountError::TokenExpired => (S::UNAUTHORIZED, "token_expired"),
            AccountError::SessionRevoked => (S::UNAUTHORIZED, "session_revoked"),
            AccountError::InvalidTicket => (S::UNAUTHORIZED, "invalid_ticket"),
            AccountError::Store(_) | AccountError::Internal(_) => return Self::internal(&e),
        };
        Self::new(status, code, e.to_string())
    }
}

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        use StatusCode as S;
        let (status, code) = match &e {
            ChatError::EmptyBody => (S::BAD_REQUEST, "empty_body"),
            ChatError::BodyTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "body_too_large"),
            ChatError::InvalidClientMsgId => (S::BAD_REQUEST, "invalid_client_msg_id"),
            ChatError::UnknownRecipient => (S::NOT_FOUND, "unknown_recipient"),
            ChatError::InvalidRecipient => (S::BAD_REQUEST, "invalid_recipient"),
            ChatError::UnknownConversation => (S::NOT_FOUND, "unknown_conversation"),
            ChatError::InvalidCursor => (S::BAD_REQUEST, "invalid_cursor"),
            ChatError::UnknownGroup => (S::NOT_FOUND, "unknown_group"),
            ChatError::NotMember => (S::FORBIDDEN, "not_a_member"),
            ChatError::NotAllowed => (S::FORBIDDEN, "not_allowed"),
            ChatError::GroupFull { .. } => (S::CONFLICT, "group_full"),
            ChatError::TooManyAdmins { .. } => (S::CONFLICT, "too_many_admins"),
            ChatError::UnknownMember => (S::NOT_FOUND, "unknown_member"),
            ChatError::Muted { .. } => (S::FORBIDDEN, "muted"),
            ChatError::GroupMuted => (S::FORBIDDEN, "group_muted"),
            ChatError::SlowMode { retry_after_ms } => {
                let mut err = Self::new(S::TOO_MANY_REQUESTS, "slow_mode", e.to_string());
                err.retry_after_ms = Some(*retry_after_ms);
                return err;
            }
            ChatError::MentionAllNotAllowed => (S::FORBIDDEN, "mention_all_not_allowed"),
            ChatError::TooManyMentions { .. } => (S::BAD_REQUEST, "too_many_mentions"),
            ChatError::OwnerMustTransfer => (S::CONFLICT, "owner_must_transfer"),
            ChatError::InvalidInvite => (S::NOT_FOUND, "invalid_invite"),
            ChatError::UnknownRequest => (S::NOT_FOUND, "unknown_join_request"),
            ChatError::Invalid { code, .. } => (S::BAD_REQUEST, *code),
            // This core lost the shard's lease without noticing yet: the new
            // owner answers the retry.
            ChatError::Store(fenced @ StoreError::Fenced { .. }) => {
                tracing::warn!(error = %fenced, "write refused: the shard has a newer owner");
                return Self::unavailable("this conversation moved to another server; retry");
            }
            ChatError::Store(_) | ChatError::Dependency(_) => return Self::internal(&e),
        };
        Self::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let retry = self.retry_after_ms;
        let mut response = (status, Json(self)).into_response();
        if let Some(ms) = retry {
            let secs = ms.div_ceil(1000).max(1);
            if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}
