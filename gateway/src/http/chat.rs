//! The chat room at the edge: the group routes (`/v1/groups/...`), the
//! invitations into groups (`/v1/group-invitations/...`), and the mapping of
//! the room's outcomes to stable codes. Group messages travel
//! over the WebSocket like any other (conversation `g.<group id>`); this is
//! everything else about a group.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use superapp_api::{
    CreateGroup, Decide, Decided, ErrorBody, Group, GroupInvitation, GroupInvitations, GroupJoin,
    Invite, InviteLink, Join, JoinRequest, JoinRequests, JoinResult, Member, MemberPage,
    MemberUpdate, MembersQuery, Transfer,
};
use superapp_chat::model::{
    ConversationId, GroupId, GroupInfo, GroupUpdate, Joined, ListedMember, Role, UserId,
};
use superapp_chat::{Chat, ChatError};
use superapp_kit::store::StoreError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, ApiPath, ApiQuery, AuthUser, Rooms};
use crate::error::ApiError;

pub fn routes() -> OpenApiRouter<Rooms> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(join))
        .routes(routes!(show, update, dissolve))
        .routes(routes!(members, invite))
        .routes(routes!(update_member, remove_member))
        .routes(routes!(transfer))
        .routes(routes!(invite_link))
        .routes(routes!(join_requests))
        .routes(routes!(decide))
        .routes(routes!(invitations))
        .routes(routes!(accept_invitation))
        .routes(routes!(decline_invitation))
}

/// The room's outcomes as the API's stable codes, over HTTP and WebSocket alike.
impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        use StatusCode as S;
        let (status, code) = match &e {
            ChatError::EmptyBody => (S::BAD_REQUEST, "empty_body"),
            ChatError::BodyTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "body_too_large"),
            ChatError::InvalidClientMsgId => (S::BAD_REQUEST, "invalid_client_msg_id"),
            ChatError::UnknownRecipient => (S::NOT_FOUND, "unknown_recipient"),
            ChatError::UserDeleted => (S::GONE, "user_deleted"),
            ChatError::MessageRefused => (S::FORBIDDEN, "message_refused"),
            ChatError::InvalidRecipient => (S::BAD_REQUEST, "invalid_recipient"),
            ChatError::UnknownConversation => (S::NOT_FOUND, "unknown_conversation"),
            ChatError::InvalidCursor => (S::BAD_REQUEST, "invalid_cursor"),
            ChatError::UnknownGroup => (S::NOT_FOUND, "unknown_group"),
            ChatError::NotMember => (S::FORBIDDEN, "not_a_member"),
            ChatError::NotAllowed => (S::FORBIDDEN, "not_allowed"),
            ChatError::GroupFull { .. } => (S::CONFLICT, "group_full"),
            ChatError::TooManyAdmins { .. } => (S::CONFLICT, "too_many_admins"),
            ChatError::TooManyGroups { .. } => (S::CONFLICT, "too_many_groups"),
            ChatError::TooManyGroupsCreated { retry_after_ms, .. } => {
                let mut err = Self::new(
                    S::TOO_MANY_REQUESTS,
                    "too_many_groups_created",
                    e.to_string(),
                );
                err.retry_after_ms = Some(*retry_after_ms);
                return err;
            }
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
            ChatError::UnknownInvitation => (S::NOT_FOUND, "unknown_group_invitation"),
            ChatError::KindNotAllowed => (S::FORBIDDEN, "kind_not_allowed"),
            ChatError::MediaRefused => (S::FORBIDDEN, "media_refused"),
            ChatError::MediaKindMismatch => (S::BAD_REQUEST, "media_kind_mismatch"),
            ChatError::CardRefused => (S::FORBIDDEN, "card_refused"),
            ChatError::Invalid { code, .. } => (S::BAD_REQUEST, *code),
            // This core lost the shard's lease without noticing yet: the new
            // owner answers the retry.
            ChatError::Store(fenced @ StoreError::Fenced { .. }) => {
                tracing::warn!(error = %fenced, "write refused: the shard has a newer owner");
                return Self::unavailable("this conversation moved to another server; retry");
            }
            ChatError::Store(StoreError::Busy) => return Self::busy(),
            ChatError::Store(_) | ChatError::Dependency(_) => return Self::internal(&e),
        };
        Self::new(status, code, e.to_string())
    }
}

/// The path's group; an id that cannot be one is an unknown group. Any
/// decimal spelling of the number is read, as the API always has.
fn group_in_path(group_id: &str) -> Result<GroupId, ApiError> {
    group_id
        .parse()
        .map(GroupId)
        .map_err(|_| ApiError::from(ChatError::UnknownGroup))
}

fn user_in_path(user_id: &str) -> Result<UserId, ApiError> {
    user_id
        .parse()
        .map(UserId)
        .map_err(|_| ApiError::from(ChatError::UnknownMember))
}

fn users(ids: Vec<u64>) -> Vec<UserId> {
    ids.into_iter().map(UserId).collect()
}

fn ids(users: Vec<UserId>) -> Vec<u64> {
    users.into_iter().map(|u| u.0).collect()
}

fn group_body(g: GroupInfo, my_role: Option<Role>) -> Group {
    Group {
        conversation_id: ConversationId::Group(g.group).to_string(),
        group_id: g.group.0,
        name: g.name,
        avatar: g.avatar,
        announcement: g.announcement,
        owner: g.owner.0,
        created_ms: g.created_ms,
        member_count: g.member_count,
        mute_all: g.mute_all,
        slow_mode_secs: g.slow_mode_secs,
        join_approval: g.join_approval,
        last_seq: g.last_seq,
        my_role: my_role.map(|r| r.name().to_string()),
        added: None,
        invited: None,
    }
}

fn member_body(m: ListedMember) -> Member {
    Member {
        user_id: m.member.user.0,
        display_name: m.display_name,
        nickname: m.member.nickname,
        role: m.member.role.name().to_string(),
        joined_ms: m.member.joined_ms,
        muted_until_ms: m.member.muted_until_ms,
    }
}

fn joined_body(j: Joined) -> GroupJoin {
    GroupJoin {
        added: ids(j.added),
        pending: ids(j.pending),
        invited: ids(j.invited),
    }
}

/// What joining a group came to: 200 a member, 202 waiting for approval.
fn join_result(group: GroupId, joined: &Joined) -> (StatusCode, Json<JoinResult>) {
    let joined = joined.pending.is_empty();
    let status = if joined {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let body = JoinResult {
        group_id: group.0,
        joined,
    };
    (status, Json(body))
}

/// Create a group owned by the caller, with first members (at most 6000 with the owner): those who let the caller add them are added, the others are invited
#[utoipa::path(post, path = "/v1/groups", tag = "groups", security(("bearer" = [])), request_body = CreateGroup, responses(
    (status = 201, description = "Created, with who was added and who was invited", body = Group),
    (status = 400, description = "invalid_group_name, invalid_avatar, invalid_json", body = ErrorBody),
    (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
    (status = 404, description = "unknown_recipient (a member that does not exist)", body = ErrorBody),
    (status = 409, description = "group_full, too_many_groups (someone would be in too many groups)", body = ErrorBody),
    (status = 410, description = "user_deleted (a member whose account is deleted or being deleted)", body = ErrorBody),
    (status = 429, description = "too_many_groups_created (chat.max_groups_created_per_day)", body = ErrorBody),
))]
async fn create(
    State(chat): State<Arc<Chat>>,
    auth: Result<AuthUser, ApiError>,
    ApiJson(body): ApiJson<CreateGroup>,
) -> Result<(StatusCode, Json<Group>), ApiError> {
    // The body is checked before the caller, as the API always has.
    let AuthUser(me) = auth?;
    let (group, joined) = chat
        .create_group(me.sub, &body.name, &body.avatar, users(body.members))
        .await?;
    let created = Group {
        added: Some(ids(joined.added)),
        invited: Some(ids(joined.invited)),
        ..group_body(group, Some(Role::Owner))
    };
    Ok((StatusCode::CREATED, Json(created)))
}

/// The group, with the caller's role
#[utoipa::path(get, path = "/v1/groups/{group_id}", tag = "groups", security(("bearer" = [])),
    params(("group_id" = String, Path)),
    responses(
        (status = 200, description = "The group", body = Group),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 403, description = "not_a_member", body = ErrorBody),
        (status = 404, description = "unknown_group", body = ErrorBody),
))]
async fn show(
    State(chat): State<Arc<Chat>>,
    AuthUser(me): AuthUser,
    ApiPath(group_id): ApiPath<String>,
) -> Result<Json<Group>, ApiError> {
    let (group, member) = chat.group(group_in_path(&group_id)?, me.sub).await?;
    Ok(Json(group_body(group, Some(member.role))))
}

/// Change name, avatar, announcement (an event to all members), mute_all, slow_mode_secs (0 to 3600) or join_approval: admins and the owner
#[utoipa::path(patch, path = "/v1/groups/{group_id}", tag = "groups", security(("bearer" = [])),
    params(("group_id" = String, Path)), request_body = superapp_api::GroupUpdate,
    responses(
        (status = 200, description = "The group", body = Group),
        (status = 400, description = "invalid_group_name, invalid_avatar, invalid_announcement, invalid_slow_mode, invalid_json", body = ErrorBody),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 403, description = "not_a_member, not_allowed", body = ErrorBody),
        (status = 404, description = "unknown_group", body = ErrorBody),
))]
async fn update(
    State(chat): State<Arc<Chat>>,
    auth: Result<AuthUser, ApiError>,
    ApiPath(group_id): ApiPath<String>,
    ApiJson(body): ApiJson<superapp_api::GroupUpdate>,
) -> Result<Json<Group>, ApiError> {
    // The body is checked before the caller, as the API always has.
    let AuthUser(me) = auth?;
    let update = GroupUpdate {
        name: body.name,
        avatar: body.avatar,
        announcement: body.announcement,
        mute_all: body.mute_all,
        slow_mode_secs: body.slow_mode_secs,
        join_approval: body.join_approval,
    };
    let group = chat
        .update_group(group_in_path(&group_id)?, me.sub, update)
        .await?;
    Ok(Json(group_body(group, None)))
}

/// Dissolve the group: the owner only
#[utoipa::path(delete, path = "/v1/groups/{group_id}", tag = "groups", security(("bearer" = [])),
    params(("group_id" = String, Path)),
    responses(
        (status = 204, description = "Dissolved"),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 403, description = "not_a_member, not_allowed", body = ErrorBody),
        (status = 404, description = "unknown_group", body = ErrorBody),
))]
async fn dissolve(
    State(chat): State<Arc<Chat>>,
    AuthUser(me): AuthUser,
    ApiPath(group_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    chat.dissolve(group_in_path(&group_id)?, me.sub).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Members in user-id order, in pages (limit up to 500, cursor = the previous next_cursor); q (at most 64 characters) finds those whose nickname or display name contains it, ignoring case
#[utoipa::path(get, path = "/v1/groups/{group_id}/members", tag = "groups", security(("bearer" = [])),
    params(("group_id" = String, Path), MembersQuery),
    responses(
        (status = 200, description = "A page of members", body = MemberPage),
        (status = 400, description = "invalid_cursor, invalid_query", body = ErrorBody),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 403, description = "not_a_member", body = ErrorBody),
        (status = 404, description = "unknown_group", body = ErrorBody),
))]
async fn members(
    State(chat): State<Arc<Chat>>,
    AuthUser(me): AuthUser,
    ApiPath(group_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<MembersQuery>,
) -> Result<Json<MemberPage>, ApiError> {
    let group = group_in_path(&group_id)?;
    let after = match query.cursor.as_str() {
        "" => None,
        c => Some(UserId(
            c.parse()
                .map_err(|_| ApiError::from(ChatError::InvalidCursor))?,
        )),
    };
    let (page, next) = chat
        .members(group, me.sub, after, query.limit, &query.q)
        .await?;
    Ok(Json(MemberPage {
        members: page.into_iter().map(member_body).collect(),
        next_cursor: next.map(|u| u.to_string()).unwrap_or_default(),
    }))
}

/// Add users: those who let the caller add them are added at once (or pending when the group asks for approval and the caller is not an admin); the others are invited
#[utoipa::path(post, path = "/v1/groups/{group_id}/members", tag = "groups", security(("bearer" = [])),
    params(("group_id" = String, Path)), request_body = Invite,
    responses(
        (status = 200, description = "Who was added, who waits for approval, and who was invited", body = GroupJoin),
        (status = 400, description = "invalid_members", body = ErrorBody),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 403, description = "not_a_member", body = ErrorBody),
        (status = 404, description = "unknown_group, unknown_recipient", body = ErrorBody),
        (status = 409, description = "group_full, too_many_groups", body = ErrorBody),
        (status = 410, description = "user_deleted (someone whose account is deleted or being deleted)", body = ErrorBody),
))]
async fn invite(
    State(chat): State<Arc<Chat>>,
    auth: Result<AuthUser, ApiError>,
    ApiPath(group_id): ApiPath<String>,
    ApiJson(body): ApiJson<Invite>,
) -> Result<Json<GroupJoin>, ApiError> {
    // The body is checked before the caller, as the API always has.
    let AuthUser(me) = auth?;
    let joined = chat
        .invite(group_in_path(&group_id)?, me.sub, users(body.members))
        .await?;
    Ok(Json(joined_body(joined)))
}

/// Set a member's role (the owner: admin or member, at most 10 admins), mute them for mute_secs (0 unmutes; admins over members, the owner over anyone), or set one's own nickname; the parts given are applied together or, if any is refused, none
#[utoipa::path(patch, path = "/v1/groups/{group_id}/members/{user_id}", tag = "groups", security(("bearer" = [])),
    params(("group_id" = String, Path), ("user_id" = String, Path)), request_body = MemberUpdate,
    responses(
        (status = 204, description = "Done"),
        (status = 400, description = "invalid_role, invalid_nickname", body = ErrorBody),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 403, description = "not_a_member, not_allowed", body = ErrorBody),
        (status = 404, description = "unknown_group, unknown_member", body = ErrorBody),
        (status = 409, description = "too_many_admins", body = ErrorBody),
))]
async fn update_member(
    State(chat): State<Arc<Chat>>,
    auth: Result<AuthUser, ApiError>,
    ApiPath((group_id, user_id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<MemberUpdate>,
) -> Result<StatusCode, ApiError> {
    // The body is checked before the caller, as the API always has.
    let AuthUser(me) = auth?;
    let group = group_in_path(&group_id)?;
    let user = user_in_path(&user_id)?;
    let admin = match body.role.as_deref() {
        None => None,
        Some("admin") => Some(true),
        Some("member") => Some(false),
        Some(_) => {
            return Err(ApiError::from(ChatError::Invalid {
                code: "invalid_role",
                reason: "role is admin or member (transfer ownership to make an owner)",
            }));
        }
    };
    chat.update_member(group, me.sub, user, admin, body.mute_secs, body.nickname)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a member (admins over members, the owner over anyone), or leave when it is the caller (not the owner)
#[utoipa::path(delete, path = "/v1/groups/{group_id}/members/{user_id}", tag = "groups", security(("bearer" = [])),
    params(("group_id" = String, Path), ("user_id" = String, Path)),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 403, description = "not_a_member, not_allowed", body = ErrorBody),
        (status = 404, description = "unknown_group, unknown_member", body = ErrorBody),
        (status = 409, description = "owner_must_transfer", body = ErrorBody),
))]
async fn remove_member(
    State(chat): State<Arc<Chat>>,
    AuthUser(me): AuthUser,
    ApiPath((group_id, user_id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (group, user) = (group_in_path(&group_id)?, user_in_path(&user_id)?);
    chat.remove_member(group, me.sub, user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Transfer ownership to a member; the former owner becomes an admin
#[utoipa::path(post, path = "/v1/groups/{group_id}/owner", tag = "groups", security(("bearer" = [])),
    params(("group_id" = String, Path)), request_body = Transfer,
    responses(
        (status = 204, description = "Transferred"),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 403, description = "not_a_member, not_allowed", body = ErrorBody),
        (status = 404, description = "unknown_group, unknown_member", body = ErrorBody),
))]
async fn transfer(
    State(chat): State<Arc<Chat>>,
    auth: Result<AuthUser, ApiError>,
    ApiPath(group_id): ApiPath<String>,
    ApiJson(body): ApiJson<Transfer>,
) -> Result<StatusCode, ApiError> {
    // The body is checked before the caller, as the API always has.
    let AuthUser(me) = auth?;
    chat.transfer_owner(group_in_path(&group_id)?, me.sub, UserId(body.user_id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new invitation token (valid 7 days; replaces the previous one): admins and the owner
#[utoipa::path(post, path = "/v1/groups/{group_id}/invite-links", tag = "groups", security(("bearer" = [])),
    params(("group_id" = String, Path)),
    responses(
        (status = 200, description = "The token", body = InviteLink),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 403, description = "not_a_member, not_allowed", body = ErrorBody),
        (status = 404, description = "unknown_group", body = ErrorBody),
))]
async fn invite_link(
    State(chat): State<Arc<Chat>>,
    AuthUser(me): AuthUser,
    ApiPath(group_id): ApiPath<String>,
) -> Result<Json<InviteLink>, ApiError> {
    let (token, expires_at_ms) = chat
        .create_invite(group_in_path(&group_id)?, me.sub)
        .await?;
    Ok(Json(InviteLink {
        token,
        expires_at_ms,
    }))
}

/// Join with an invitation link's token: 200 joined, 202 waiting for an admin's approval
#[utoipa::path(post, path = "/v1/groups/join", tag = "groups", security(("bearer" = [])), request_body = Join, responses(
    (status = 200, description = "Joined", body = JoinResult),
    (status = 202, description = "Waiting for an admin's approval", body = JoinResult),
    (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
    (status = 404, description = "invalid_invite (unknown or expired)", body = ErrorBody),
    (status = 409, description = "group_full, too_many_groups", body = ErrorBody),
))]
async fn join(
    State(chat): State<Arc<Chat>>,
    auth: Result<AuthUser, ApiError>,
    ApiJson(body): ApiJson<Join>,
) -> Result<(StatusCode, Json<JoinResult>), ApiError> {
    // The body is checked before the caller, as the API always has.
    let AuthUser(me) = auth?;
    let (group, joined) = chat.join(me.sub, &body.token).await?;
    Ok(join_result(group, &joined))
}

/// Joins waiting for approval: admins and the owner
#[utoipa::path(get, path = "/v1/groups/{group_id}/join-requests", tag = "groups", security(("bearer" = [])),
    params(("group_id" = String, Path)),
    responses(
        (status = 200, description = "The requests", body = JoinRequests),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 403, description = "not_a_member, not_allowed", body = ErrorBody),
        (status = 404, description = "unknown_group", body = ErrorBody),
))]
async fn join_requests(
    State(chat): State<Arc<Chat>>,
    AuthUser(me): AuthUser,
    ApiPath(group_id): ApiPath<String>,
) -> Result<Json<JoinRequests>, ApiError> {
    let requests = chat
        .join_requests(group_in_path(&group_id)?, me.sub)
        .await?;
    Ok(Json(JoinRequests {
        requests: requests
            .into_iter()
            .map(|r| JoinRequest {
                user_id: r.user.0,
                inviter: r.inviter.map_or(0, |u| u.0),
                requested_ms: r.requested_ms,
            })
            .collect(),
    }))
}

/// Approve or reject a pending join: admins and the owner
#[utoipa::path(post, path = "/v1/groups/{group_id}/join-requests/{user_id}", tag = "groups", security(("bearer" = [])),
    params(("group_id" = String, Path), ("user_id" = String, Path)), request_body = Decide,
    responses(
        (status = 200, description = "Whether the user joined", body = Decided),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 403, description = "not_a_member, not_allowed", body = ErrorBody),
        (status = 404, description = "unknown_group, unknown_join_request", body = ErrorBody),
        (status = 409, description = "group_full, too_many_groups", body = ErrorBody),
))]
async fn decide(
    State(chat): State<Arc<Chat>>,
    auth: Result<AuthUser, ApiError>,
    ApiPath((group_id, user_id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<Decide>,
) -> Result<Json<Decided>, ApiError> {
    // The body is checked before the caller, as the API always has.
    let AuthUser(me) = auth?;
    let (group, user) = (group_in_path(&group_id)?, user_in_path(&user_id)?);
    let joined = chat
        .decide_request(group, me.sub, user, body.approve)
        .await?;
    Ok(Json(Decided { joined }))
}

/// The path's group of an invitation; an id that cannot be one names no invitation.
fn invitation_in_path(group_id: &str) -> Result<GroupId, ApiError> {
    group_id
        .parse()
        .map(GroupId)
        .map_err(|_| ApiError::from(ChatError::UnknownInvitation))
}

/// Invitations into groups waiting for you, newest first (each lives 7 days)
#[utoipa::path(get, path = "/v1/group-invitations", tag = "groups", security(("bearer" = [])),
    responses(
        (status = 200, description = "Waiting invitations", body = GroupInvitations),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
))]
async fn invitations(
    State(chat): State<Arc<Chat>>,
    AuthUser(me): AuthUser,
) -> Result<Json<GroupInvitations>, ApiError> {
    let invitations = chat.invitations(me.sub).await?;
    Ok(Json(GroupInvitations {
        invitations: invitations
            .into_iter()
            .map(|i| GroupInvitation {
                group_id: i.group.0,
                name: i.group_name,
                member_count: i.member_count,
                inviter: i.inviter.0,
                inviter_name: i.inviter_name,
                invited_ms: i.invited_ms,
                expires_at_ms: i.expires_ms,
            })
            .collect(),
    }))
}

/// Accept an invitation into a group: 200 joined, 202 waiting for an admin's approval (a plain member invited you and the group asks for approval)
#[utoipa::path(post, path = "/v1/group-invitations/{group_id}/accept", tag = "groups", security(("bearer" = [])),
    params(("group_id" = String, Path, description = "the group you are invited into")),
    responses(
        (status = 200, description = "Joined", body = JoinResult),
        (status = 202, description = "Waiting for an admin's approval", body = JoinResult),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 404, description = "unknown_group_invitation (none, answered, expired, or withdrawn: the group was dissolved or the inviter left)", body = ErrorBody),
        (status = 409, description = "group_full, too_many_groups (the invitation stays)", body = ErrorBody),
))]
async fn accept_invitation(
    State(chat): State<Arc<Chat>>,
    AuthUser(me): AuthUser,
    ApiPath(group_id): ApiPath<String>,
) -> Result<(StatusCode, Json<JoinResult>), ApiError> {
    let group = invitation_in_path(&group_id)?;
    let joined = chat.accept_invitation(me.sub, group).await?;
    Ok(join_result(group, &joined))
}

/// Decline an invitation into a group (nobody is told)
#[utoipa::path(delete, path = "/v1/group-invitations/{group_id}", tag = "groups", security(("bearer" = [])),
    params(("group_id" = String, Path, description = "the group you are invited into")),
    responses(
        (status = 204, description = "Declined"),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 404, description = "unknown_group_invitation", body = ErrorBody),
))]
async fn decline_invitation(
    State(chat): State<Arc<Chat>>,
    AuthUser(me): AuthUser,
    ApiPath(group_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let group = invitation_in_path(&group_id)?;
    chat.decline_invitation(me.sub, group).await?;
    Ok(StatusCode::NO_CONTENT)
}
