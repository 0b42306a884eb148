//! Profiles and discovery: the caller's own profile (`/v1/me/profile`),
//! what the caller sees of others (`/v1/users/{user_id}`,
//! `/v1/users/by-handle`, `/v1/users/by-phone`), and contact matching
//! (`/v1/contacts/salt`, `/v1/contacts/match`).

use serde::{Deserialize, Serialize};
use serde_with::serde_as;

use crate::U64AsString;

/// The caller's own profile, all of it (`GET` and `PATCH /v1/me/profile`).
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MyProfile {
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub user_id: u64,
    pub phone: String,
    pub display_name: String,
    /// An `https` URL, or empty for none.
    pub avatar_url: String,
    pub signature: String,
    pub region: String,
    /// `unset`, `female`, `male` or `other`.
    pub gender: String,
    /// Null until one is set.
    pub handle: Option<String>,
    /// When the handle may change next (30 days after it was last set);
    /// null while none is set.
    pub handle_changeable_at_ms: Option<i64>,
    pub created_at_ms: i64,
}

/// `PATCH /v1/me/profile`: each field given changes, all of them or none;
/// those left out stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProfileUpdate {
    /// 1 to 64 characters (trimmed), no control characters.
    pub display_name: Option<String>,
    /// An `https` URL with a host, at most 512 bytes of printable ASCII,
    /// without credentials; or `media:<media_id>` of a picture you uploaded
    /// (fetched by others with `POST /v1/media/{media_id}/link` naming your
    /// `user_id`); empty removes the avatar.
    pub avatar_url: Option<String>,
    /// At most 100 characters, no control characters; empty removes it.
    pub signature: Option<String>,
    /// At most 64 characters, no control characters; empty removes it.
    pub region: Option<String>,
    /// `unset`, `female`, `male` or `other`.
    pub gender: Option<String>,
    /// 6 to 20 characters: ASCII letters, digits, `_` and `-`, the first a
    /// letter; unique whatever its case; set at most once in 30 days (the
    /// same handle again is no change).
    pub handle: Option<String>,
}

/// The details of a profile, shown or hidden together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProfileDetails {
    /// Null when the user has set none.
    pub handle: Option<String>,
    pub signature: String,
    pub region: String,
    /// `unset`, `female`, `male` or `other`.
    pub gender: String,
}

/// What the caller sees of a user: the minimum (id, name, avatar) always;
/// `details` and `phone` only where the user's settings allow it
/// (docs/privacy.md), null otherwise.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserProfile {
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub user_id: u64,
    pub display_name: String,
    pub avatar_url: String,
    pub details: Option<ProfileDetails>,
    /// E.164.
    pub phone: Option<String>,
}

/// `POST /v1/users/by-handle`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FindByHandle {
    /// Any case.
    pub handle: String,
}

/// `POST /v1/users/by-phone`: in a body, not the URL, so that the number
/// stays out of access logs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FindByPhone {
    /// E.164; spaces, dashes and parentheses are removed.
    pub phone: String,
}

/// `GET /v1/contacts/salt`: how to hash an address book's numbers for
/// `POST /v1/contacts/match`, and how many may be matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ContactSalt {
    /// 32 bytes, as 64 hex digits. A number's hash is SHA-256 over these
    /// 32 bytes followed by the number's E.164 form in ASCII
    /// (`+8613800138000`), as 64 hex digits.
    pub salt: String,
    /// Hashes one request may carry.
    pub hashes_per_request: u32,
    /// Distinct hashes one user may match in any 24 hours.
    pub hashes_per_day: u32,
}

/// `POST /v1/contacts/match`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MatchContacts {
    /// Each SHA-256(salt ‖ E.164 number), 64 hex digits.
    pub hashes: Vec<String>,
}

/// A registered user whom one of the hashes found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ContactMatch {
    /// The hash as the server writes it: lower-case hex.
    pub hash: String,
    pub user: UserProfile,
}

/// The users the caller may find by phone among the hashes, in the order asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ContactMatches {
    pub matches: Vec<ContactMatch>,
}
