//! [`ApiError`], the edge's one error shape: `{code, message}` over HTTP, an
//! `Error` frame over the WebSocket. Each room's module under [`crate::http`]
//! maps that room's outcomes to it; the internal cause of a server error is
//! logged once, in [`ApiError::internal`], and never sent.

use std::borrow::Cow;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use superapp_api::ErrorBody;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: Cow<'static, str>,
    pub message: String,
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

    /// The store has more writes waiting than it accepts: back off a second.
    pub fn busy() -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the server has too much work waiting; retry later",
        );
        e.retry_after_ms = Some(1_000);
        e
    }

    /// Too many requests from this user: wait `retry_after_ms`.
    pub fn rate_limited(retry_after_ms: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests; slow down",
        );
        e.retry_after_ms = Some(retry_after_ms);
        e
    }

    pub fn unauthorized(code: &'static str, message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    pub(crate) fn internal(cause: &dyn std::fmt::Display) -> Self {
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let retry = self.retry_after_ms;
        let body = ErrorBody {
            code: self.code.into_owned(),
            message: self.message,
            retry_after_ms: retry,
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(ms) = retry {
            let secs = ms.div_ceil(1000).max(1);
            if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}
