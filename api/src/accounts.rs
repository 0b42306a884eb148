//! Accounts, sessions, tokens, tickets, presence and real-name verification
//! (`/v1/accounts`, `/v1/sessions...`, `/v1/me`, `/v1/ws-tickets`,
//! `/v1/users/{id}/presence`, `/v1/me/real-name`).

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

/// `POST /v1/me/real-name`: a legal name and a resident identity number to
/// verify. `Debug` hides both.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubmitRealName {
    /// As on the identity card: 2 to 64 letters, the parts of a
    /// transliterated name joined by a middle dot (`·`).
    pub legal_name: String,
    /// The 18-character resident identity number (GB 11643), the last
    /// character a digit or `X`.
    pub id_number: String,
}

impl fmt::Debug for SubmitRealName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubmitRealName")
            .field("legal_name", &"<redacted>")
            .field("id_number", &"<redacted>")
            .finish()
    }
}

/// Where a user's real-name verification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RealNameStatus {
    /// Never submitted.
    Unverified,
    /// Waiting for the provider's decision: read the status again later.
    Pending,
    /// Final.
    Verified,
    /// The latest submission was refused; submit again.
    Rejected,
}

/// Why a submission was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RealNameRejection {
    /// No person of this name and number in the registry.
    Mismatch,
    /// The provider did not decide within a day.
    Expired,
}

/// The caller's own real-name verification (`GET` and `POST
/// /v1/me/real-name`). The ID number is never answered whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RealName {
    pub status: RealNameStatus,
    /// The legal name of the latest submission, shown to its holder only;
    /// null when unverified (or when the server's real-name key was
    /// replaced and the record no longer opens).
    pub legal_name: Option<String>,
    /// The ID number with all but its first and last characters hidden,
    /// e.g. `1****************X`; null as `legal_name` is.
    pub id_number_masked: Option<String>,
    /// Set when rejected.
    pub rejection: Option<RealNameRejection>,
    pub submitted_at_ms: Option<i64>,
    /// When the decision was made; null while unverified or pending.
    pub decided_at_ms: Option<i64>,
}
