//! The social graph's API: friend requests (`/v1/friend-requests`), the
//! contact list, its change feed and its search (`/v1/contacts`,
//! `/v1/contacts/search`), hidden friends, blocks (`/v1/blocks`) and
//! privacy settings (`/v1/me/privacy`). Changes someone
//! should see arrive live too, as `ContactEvent`s on the WebSocket.

use serde::{Deserialize, Serialize};
use serde_with::serde_as;

use crate::U64AsString;

/// `POST /v1/friend-requests`.
#[serde_as]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SendFriendRequest {
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub to: u64,
    /// At most 100 characters.
    #[serde(default)]
    pub greeting: String,
}

/// What a friend request came to: `requested` (it waits for the other) or
/// `friends` (the other had asked first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FriendRequestSent {
    pub status: String,
}

/// A request waiting for the caller.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FriendRequest {
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub from: u64,
    pub greeting: String,
    pub sent_ms: i64,
}

/// `GET /v1/friend-requests`: those waiting for the caller, newest first;
/// each lives 7 days unanswered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FriendRequests {
    pub requests: Vec<FriendRequest>,
}

/// The caller's contact-list version after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ContactsVersion {
    pub version: u64,
}

/// `GET /v1/contacts` query: changes after `since` (0: the whole list).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct ContactsQuery {
    /// The version the client holds; 0 for everything.
    #[serde(default)]
    pub since: u64,
    /// At most this many changes (default 500, at most 1,000).
    #[serde(default)]
    pub limit: u32,
}

/// One entry of the change feed: a friend as the caller keeps them, or
/// (`removed`) the mark that one is gone from the list: no longer a friend,
/// or (`hidden` too) a friend the caller hides, sent without remark or tags.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Contact {
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub user_id: u64,
    pub remark: String,
    pub tags: Vec<String>,
    pub since_ms: i64,
    pub removed: bool,
    /// The caller hides this friend ("private mode"): drop it from the list
    /// shown; it is found by exact search only.
    #[serde(default)]
    pub hidden: bool,
    pub version: u64,
}

/// A page of changes, oldest first. While `more`, ask again with
/// `since` = the last change's version; then hold `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ContactPage {
    pub changes: Vec<Contact>,
    pub version: u64,
    pub more: bool,
}

/// `PATCH /v1/contacts/{user_id}`: what is given changes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ContactUpdate {
    /// The caller's alias for the friend, at most 32 characters.
    pub remark: Option<String>,
    /// At most 20 tags, each 1 to 16 characters.
    pub tags: Option<Vec<String>>,
    /// Hide the friend from the contact list and the conversation list on
    /// every device (true), or show them again (false). A former friend
    /// still hidden may be unhidden, nothing else.
    pub hidden: Option<bool>,
}

/// `GET /v1/contacts/search` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct ContactSearchQuery {
    /// 1 to 64 characters: the start of a friend's remark or display name,
    /// or a user id; a hidden friend only by exact remark, display name or
    /// user id (case is ignored).
    #[serde(default)]
    pub q: String,
}

/// A contact a search found.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FoundContact {
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub user_id: u64,
    pub display_name: String,
    pub remark: String,
    pub tags: Vec<String>,
    pub since_ms: i64,
    pub hidden: bool,
    /// False for a former friend the caller still hides (who may be unhidden).
    pub friend: bool,
}

/// `GET /v1/contacts/search`: at most 50, by display name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FoundContacts {
    pub contacts: Vec<FoundContact>,
}

/// `GET /v1/blocks`: whom the caller blocks, most recent first.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Blocks {
    #[serde_as(as = "Vec<U64AsString>")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub users: Vec<u64>,
}

/// The caller's privacy settings (`GET` and `PATCH /v1/me/privacy`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PrivacySettings {
    /// Who may send the caller one-to-one messages: `friends` or `anyone`.
    /// Left out of a `PATCH`, it stays as it is.
    pub who_may_message: Option<String>,
    /// Who may add the caller to a group without asking: `friends`,
    /// `anyone` (not blocked) or nobody (`invite`); anyone else's addition
    /// is an invitation. Left out of a `PATCH`, it stays as it is.
    pub who_may_add_me: Option<String>,
}
