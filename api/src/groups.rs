//! The group API (`/v1/groups/...`). Group messages travel over the
//! WebSocket like any other (conversation `g.<group id>`); this is everything
//! else about a group.

use serde::{Deserialize, Serialize};
use serde_with::serde_as;

use crate::U64AsString;

/// `POST /v1/groups`.
#[serde_as]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateGroup {
    /// 1 to 64 characters.
    pub name: String,
    #[serde(default)]
    pub avatar: String,
    /// Users to add besides the creator, who becomes the owner.
    #[serde(default)]
    #[serde_as(as = "Vec<U64AsString>")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub members: Vec<u64>,
}

/// A group as a member sees it.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Group {
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub group_id: u64,
    /// `g.<group_id>`, the conversation of its messages.
    pub conversation_id: String,
    pub name: String,
    pub avatar: String,
    pub announcement: String,
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub owner: u64,
    pub created_ms: i64,
    pub member_count: u32,
    pub mute_all: bool,
    pub slow_mode_secs: u32,
    pub join_approval: bool,
    pub last_seq: u64,
    /// The caller's role: owner, admin or member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub my_role: Option<String>,
    /// In the answer to a creation only: the members added besides the owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde_as(as = "Option<Vec<U64AsString>>")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<String>>))]
    pub added: Option<Vec<u64>>,
    /// In the answer to a creation only: those invited instead of added,
    /// who join if they accept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde_as(as = "Option<Vec<U64AsString>>")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<String>>))]
    pub invited: Option<Vec<u64>>,
}

/// `PATCH /v1/groups/{group_id}`: admins change settings; absent fields stay.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupUpdate {
    pub name: Option<String>,
    pub avatar: Option<String>,
    pub announcement: Option<String>,
    pub mute_all: Option<bool>,
    pub slow_mode_secs: Option<u32>,
    pub join_approval: Option<bool>,
}

/// A member as listed.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Member {
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub user_id: u64,
    pub display_name: String,
    pub nickname: String,
    /// owner, admin or member.
    pub role: String,
    pub joined_ms: i64,
    pub muted_until_ms: i64,
}

/// `GET /v1/groups/{group_id}/members`: a page of members in user-id order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct MembersQuery {
    /// The `next_cursor` of the page before; empty for the first page.
    #[serde(default)]
    pub cursor: String,
    /// At most this many (default 100, at most 500).
    #[serde(default)]
    pub limit: u32,
    /// Only members whose group nickname or display name contains this,
    /// ignoring case (at most 64 characters).
    #[serde(default)]
    pub q: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberPage {
    pub members: Vec<Member>,
    /// Empty on the last page.
    pub next_cursor: String,
}

/// `POST /v1/groups/{group_id}/members`.
#[serde_as]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Invite {
    #[serde_as(as = "Vec<U64AsString>")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub members: Vec<u64>,
}

/// Who an addition added at once, who waits for an admin's approval, and
/// who was sent an invitation instead (they join if they accept).
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupJoin {
    #[serde_as(as = "Vec<U64AsString>")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub added: Vec<u64>,
    #[serde_as(as = "Vec<U64AsString>")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub pending: Vec<u64>,
    #[serde(default)]
    #[serde_as(as = "Vec<U64AsString>")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub invited: Vec<u64>,
}

/// An invitation into a group waiting for the caller.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupInvitation {
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub group_id: u64,
    pub name: String,
    pub member_count: u32,
    /// Who asked (the latest, if several members did).
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub inviter: u64,
    pub inviter_name: String,
    pub invited_ms: i64,
    pub expires_at_ms: i64,
}

/// `GET /v1/group-invitations`: those waiting for the caller, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupInvitations {
    pub invitations: Vec<GroupInvitation>,
}

/// `PATCH /v1/groups/{group_id}/members/{user_id}`: all of it is checked
/// before any of it is applied.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberUpdate {
    /// "admin" or "member" (the owner only).
    pub role: Option<String>,
    /// Mute for this many seconds from now; 0 unmutes (admins over members,
    /// the owner over anyone).
    pub mute_secs: Option<u32>,
    /// One's own group nickname.
    pub nickname: Option<String>,
}

/// `POST /v1/groups/{group_id}/owner`.
#[serde_as]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Transfer {
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub user_id: u64,
}

/// `POST /v1/groups/{group_id}/invite-links`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InviteLink {
    pub token: String,
    pub expires_at_ms: i64,
}

/// `POST /v1/groups/join`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Join {
    pub token: String,
}

#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JoinResult {
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub group_id: u64,
    /// False when the join waits for an admin's approval.
    pub joined: bool,
}

/// A join waiting for an admin.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JoinRequest {
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub user_id: u64,
    /// Who invited them; "0" for a join by link.
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub inviter: u64,
    pub requested_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JoinRequests {
    pub requests: Vec<JoinRequest>,
}

/// `POST /v1/groups/{group_id}/join-requests/{user_id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Decide {
    pub approve: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Decided {
    pub joined: bool,
}
