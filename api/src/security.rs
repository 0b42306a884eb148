//! Account security: changing the password (`/v1/me/password`), the
//! caller's sessions (`/v1/me/sessions`), deleting the account
//! (`/v1/me/deletion`) and restoring it (`/v1/accounts/restore`); and the
//! names of users, deleted ones included (`/v1/users/names`).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_with::serde_as;

use crate::U64AsString;

/// `POST /v1/me/password`. `Debug` hides both passwords.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangePassword {
    pub current_password: String,
    /// The rules of registration: 8 to 128 characters, not a common one;
    /// not the current one.
    pub new_password: String,
}

impl fmt::Debug for ChangePassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangePassword")
            .field("current_password", &"<redacted>")
            .field("new_password", &"<redacted>")
            .finish()
    }
}

/// One of the caller's live sessions: a device signed in.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Session {
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub session_id: u64,
    /// As the device named itself at log-in (may be empty).
    pub device_name: String,
    pub created_at_ms: i64,
    /// The session's last log-in or refresh: a device in use refreshes at
    /// least every 15 minutes.
    pub last_active_at_ms: i64,
    /// The session ends then at the latest (`auth.refresh_ttl_secs` after
    /// log-in).
    pub expires_at_ms: i64,
    /// The session of the token that asked.
    pub current: bool,
}

/// `GET /v1/me/sessions`: the caller's live sessions, the most recently
/// active first (at most 200).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Sessions {
    pub sessions: Vec<Session>,
}

/// `POST /v1/me/deletion`: the password, asked again. `Debug` hides it.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeleteAccount {
    pub password: String,
}

impl fmt::Debug for DeleteAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeleteAccount")
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A deletion as recorded: the account is deactivated now, restorable
/// until `due_at_ms`, and erased then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountDeletion {
    pub requested_at_ms: i64,
    pub due_at_ms: i64,
}

/// `POST /v1/accounts/restore`: a log-in that also withdraws the account's
/// deletion. `Debug` hides the password.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Restore {
    pub phone: String,
    pub password: String,
    /// As at log-in: shown in the session list; at most 64 characters kept.
    #[serde(default)]
    pub device_name: String,
}

impl fmt::Debug for Restore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Restore")
            .field("phone", &self.phone)
            .field("password", &"<redacted>")
            .field("device_name", &self.device_name)
            .finish()
    }
}

/// `POST /v1/users/names`: whose names to show (at most 100).
#[serde_as]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NamesQuery {
    #[serde_as(as = "Vec<U64AsString>")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub user_ids: Vec<u64>,
}

/// A user's name as anyone signed in sees it, for showing who sent what.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserName {
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub user_id: u64,
    /// For a deleted account, `Deleted account`: show your own words for it
    /// when `deleted` is set.
    pub display_name: String,
    /// The account was deleted (erased after its grace period).
    pub deleted: bool,
}

/// The names of those asked about that exist, in the order asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserNames {
    pub users: Vec<UserName>,
}
