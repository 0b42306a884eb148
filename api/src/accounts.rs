//! Accounts, sessions, tokens, tickets and presence (`/v1/accounts`,
//! `/v1/sessions...`, `/v1/me`, `/v1/ws-tickets`, `/v1/users/{id}/presence`).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_with::serde_as;

use crate::U64AsString;

/// `POST /v1/accounts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Register {
    /// E.164, e.g. `+8613800138000`; spaces, dashes and parentheses are removed.
    pub phone: String,
    /// 8 to 128 characters, not among the 1,000 most common passwords.
    pub password: String,
    /// 1 to 64 characters, no control characters.
    pub display_name: String,
}

/// A user's own account, as registration and `GET /v1/me` answer it.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Account {
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub user_id: u64,
    pub phone: String,
    pub display_name: String,
    pub created_at_ms: i64,
}

/// `POST /v1/sessions`: log in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Login {
    pub phone: String,
    pub password: String,
    /// Shown in the account's session list; at most 64 characters are kept.
    #[serde(default)]
    pub device_name: String,
}

/// A session's token pair. Refreshing returns a new pair and kills the old
/// refresh token, so whoever stores this must save every new pair.
#[serde_as]
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tokens {
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub user_id: u64,
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub session_id: u64,
    pub access_token: String,
    pub access_expires_at_ms: i64,
    pub refresh_token: String,
    pub refresh_expires_at_ms: i64,
}

/// Tokens are bearer secrets: debug output shows only who and when.
impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("user_id", &self.user_id)
            .field("session_id", &self.session_id)
            .field("access_token", &"<redacted>")
            .field("access_expires_at_ms", &self.access_expires_at_ms)
            .field("refresh_token", &"<redacted>")
            .field("refresh_expires_at_ms", &self.refresh_expires_at_ms)
            .finish()
    }
}

/// `POST /v1/sessions/refresh`.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Refresh {
    pub refresh_token: String,
}

/// A single-use ticket for a browser's WebSocket handshake (`/v1/ws?ticket=`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Ticket {
    pub ticket: String,
    pub expires_at_ms: i64,
}

/// Whether a user is online, on how many devices, and when last seen.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Presence {
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub user_id: u64,
    pub online: bool,
    /// Devices with a live session.
    pub devices: u32,
    /// Now while online; the last time a device was seen otherwise; null if
    /// never seen in the last 90 days.
    pub last_seen_ms: Option<i64>,
}
