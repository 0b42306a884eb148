//! The group API: `/v1/groups/...`, on the process that runs the chat room.
//! Group messages travel over the WebSocket like any other (conversation
//! `g.<group id>`); this is everything else about a group.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Deserializer, Serialize};
use superapp_chat::model::{
    ConversationId, GroupId, GroupInfo, GroupUpdate, Joined, MemberInfo, Role, UserId,
};
use superapp_chat::{Chat, ChatError, ListedMember, policy};

use crate::AppState;
use crate::error::ApiError;
use crate::http::{ApiJson, as_string, bearer};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/groups", post(create))
        .route("/v1/groups/join", post(join))
        .route(
            "/v1/groups/{group_id}",
            get(show).patch(update).delete(dissolve),
        )
        .route("/v1/groups/{group_id}/members", get(members).post(invite))
        .route(
            "/v1/groups/{group_id}/members/{user_id}",
            axum::routing::patch(update_member).delete(remove_member),
        )
        .route("/v1/groups/{group_id}/owner", post(transfer))
        .route("/v1/groups/{group_id}/invite-links", post(invite_link))
        .route("/v1/groups/{group_id}/join-requests", get(join_requests))
        .route(
            "/v1/groups/{group_id}/join-requests/{user_id}",
            post(decide),
        )
}

/// An id in JSON: a decimal string (ids exceed 2^53), or a number.
#[derive(Debug, Clone, Copy)]
struct Id(u64);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(u64),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Id(n)),
            Raw::Text(s) => s
                .parse()
                .map(Id)
                .map_err(|_| serde::de::Error::custom("an id is a decimal string")),
        }
    }
}

fn ids(list: Vec<Id>) -> Vec<UserId> {
    list.into_iter().map(|id| UserId(id.0)).collect()
}

fn chat(state: &AppState) -> Result<&Chat, ApiError> {
    state.chat.as_deref().ok_or_else(ApiError::sessions_only)
}

/// The caller and the path's group id; an id that cannot be one is an unknown group.
async fn caller(
    state: &AppState,
    headers: &HeaderMap,
    group_id: &str,
) -> Result<(UserId, GroupId), ApiError> {
    let claims = bearer(state, headers).await?;
    let group_id = group_id
        .parse()
        .map_err(|_| ApiError::from(ChatError::UnknownGroup))?;
    Ok((claims.sub, group_id))
}

fn user_in_path(user_id: &str) -> Result<UserId, ApiError> {
    user_id
        .parse()
        .map_err(|_| ApiError::from(ChatError::UnknownMember))
}

#[derive(Serialize)]
struct GroupBody {
    #[serde(serialize_with = "as_string")]
    group_id: u64,
    conversation_id: String,
    name: String,
    avatar: String,
    announcement: String,
    #[serde(serialize_with = "as_string")]
    owner: u64,
    created_ms: i64,
    member_count: u32,
    mute_all: bool,
    slow_mode_secs: u32,
    join_approval: bool,
    last_seq: u64,
    /// The caller's role: owner, admin or member.
    #[serde(skip_serializing_if = "Option::is_none")]
    my_role: Option<&'static str>,
}

fn group_body(g: GroupInfo, my_role: Option<Role>) -> GroupBody {
    GroupBody {
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
        my_role: my_role.map(Role::name),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    #[serde(default)]
    avatar: String,
    #[serde(default)]
    members: Vec<Id>,
}

async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<(StatusCode, Json<GroupBody>), ApiError> {
    let claims = bearer(&state, &headers).await?;
    let group = chat(&state)?
        .create_group(claims.sub, &body.name, &body.avatar, ids(body.members))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(group_body(group, Some(Role::Owner))),
    ))
}

async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(group_id): Path<String>,
) -> Result<Json<GroupBody>, ApiError> {
    let (me, group_id) = caller(&state, &headers, &group_id).await?;
    let (group, member) = chat(&state)?.group(me, group_id).await?;
    Ok(Json(group_body(group, Some(member.role))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    name: Option<String>,
    avatar: Option<String>,
    announcement: Option<String>,
    mute_all: Option<bool>,
    slow_mode_secs: Option<u32>,
    join_approval: Option<bool>,
}

async fn update(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(group_id): Path<String>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Result<Json<GroupBody>, ApiError> {
    let (me, group_id) = caller(&state, &headers, &group_id).await?;
    let update = GroupUpdate {
        name: body.name,
        avatar: body.avatar,
        announcement: body.announcement,
        mute_all: body.mute_all,
        slow_mode_secs: body.slow_mode_secs,
        join_approval: body.join_approval,
    };
    let group = chat(&state)?.update_group(me, group_id, update).await?;
    Ok(Json(group_body(group, None)))
}

async fn dissolve(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(group_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (me, group_id) = caller(&state, &headers, &group_id).await?;
    chat(&state)?.dissolve(me, group_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
struct MemberBody {
    #[serde(serialize_with = "as_string")]
    user_id: u64,
    display_name: String,
    nickname: String,
    role: &'static str,
    joined_ms: i64,
    muted_until_ms: i64,
}

fn member_body(m: ListedMember) -> MemberBody {
    let MemberInfo {
        user,
        role,
        nickname,
        joined_ms,
        muted_until_ms,
        ..
    } = m.member;
    MemberBody {
        user_id: user.0,
        display_name: m.display_name,
        nickname,
        role: role.name(),
        joined_ms,
        muted_until_ms,
    }
}

#[derive(Deserialize)]
struct MembersQuery {
    #[serde(default)]
    cursor: String,
    #[serde(default)]
    limit: u32,
    #[serde(default)]
    q: String,
}

#[derive(Serialize)]
struct MembersPage {
    members: Vec<MemberBody>,
    /// Empty on the last page.
    next_cursor: String,
}

async fn members(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(group_id): Path<String>,
    Query(query): Query<MembersQuery>,
) -> Result<Json<MembersPage>, ApiError> {
    let (me, group_id) = caller(&state, &headers, &group_id).await?;
    let after = match query.cursor.as_str() {
        "" => None,
        c => Some(
            c.parse()
                .map_err(|_| ApiError::from(ChatError::InvalidCursor))?,
        ),
    };
    let (page, next) = chat(&state)?
        .members(me, group_id, after, query.limit, &query.q)
        .await?;
    Ok(Json(MembersPage {
        members: page.into_iter().map(member_body).collect(),
        next_cursor: next.map(|u| u.to_string()).unwrap_or_default(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteBody {
    members: Vec<Id>,
}

#[derive(Serialize)]
struct JoinedBody {
    #[serde(serialize_with = "as_strings")]
    added: Vec<UserId>,
    #[serde(serialize_with = "as_strings")]
    pending: Vec<UserId>,
}

fn as_strings<S: serde::Serializer>(ids: &[UserId], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(ids.iter().map(UserId::to_string))
}

fn joined_body(j: Joined) -> JoinedBody {
    JoinedBody {
        added: j.added,
        pending: j.pending,
    }
}

async fn invite(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(group_id): Path<String>,
    ApiJson(body): ApiJson<InviteBody>,
) -> Result<Json<JoinedBody>, ApiError> {
    let (me, group_id) = caller(&state, &headers, &group_id).await?;
    let joined = chat(&state)?
        .invite(me, group_id, ids(body.members))
        .await?;
    Ok(Json(joined_body(joined)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberUpdate {
    /// "admin" or "member" (the owner only).
    role: Option<String>,
    /// Mute for this many seconds from now; 0 unmutes (admins over members,
    /// the owner over anyone).
    mute_secs: Option<u32>,
    /// One's own group nickname.
    nickname: Option<String>,
}

async fn update_member(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((group_id, user_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<MemberUpdate>,
) -> Result<StatusCode, ApiError> {
    let (me, group_id) = caller(&state, &headers, &group_id).await?;
    let user = user_in_path(&user_id)?;
    let chat = chat(&state)?;
    // Everything is checked before anything changes, so a refused field
    // leaves the others undone too.
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
    if let Some(nickname) = &body.nickname {
        if user != me {
            return Err(ChatError::NotAllowed.into());
        }
        policy::check_nickname(nickname)?;
    }
    if let Some(admin) = admin {
        chat.set_role(me, group_id, user, admin).await?;
    }
    if let Some(secs) = body.mute_secs {
        chat.mute_member(me, group_id, user, secs).await?;
    }
    if let Some(nickname) = body.nickname {
        chat.set_nickname(me, group_id, &nickname).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_member(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((group_id, user_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (me, group_id) = caller(&state, &headers, &group_id).await?;
    let user = user_in_path(&user_id)?;
    chat(&state)?.remove_member(me, group_id, user).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    user_id: Id,
}

async fn transfer(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(group_id): Path<String>,
    ApiJson(body): ApiJson<TransferBody>,
) -> Result<StatusCode, ApiError> {
    let (me, group_id) = caller(&state, &headers, &group_id).await?;
    chat(&state)?
        .transfer_owner(me, group_id, UserId(body.user_id.0))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
struct InviteLinkBody {
    token: String,
    expires_at_ms: i64,
}

async fn invite_link(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(group_id): Path<String>,
) -> Result<Json<InviteLinkBody>, ApiError> {
    let (me, group_id) = caller(&state, &headers, &group_id).await?;
    let (token, expires_at_ms) = chat(&state)?.create_invite(me, group_id).await?;
    Ok(Json(InviteLinkBody {
        token,
        expires_at_ms,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinBody {
    token: String,
}

#[derive(Serialize)]
struct JoinResult {
    #[serde(serialize_with = "as_string")]
    group_id: u64,
    /// False when the join waits for an admin's approval.
    joined: bool,
}

async fn join(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<JoinBody>,
) -> Result<(StatusCode, Json<JoinResult>), ApiError> {
    let claims = bearer(&state, &headers).await?;
    let (group, joined) = chat(&state)?.join(claims.sub, &body.token).await?;
    let joined = joined.pending.is_empty();
    let status = if joined {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((
        status,
        Json(JoinResult {
            group_id: group.0,
            joined,
        }),
    ))
}

#[derive(Serialize)]
struct RequestBody {
    #[serde(serialize_with = "as_string")]
    user_id: u64,
    /// Who invited them; "0" for a join by link.
    #[serde(serialize_with = "as_string")]
    inviter: u64,
    requested_ms: i64,
}

#[derive(Serialize)]
struct RequestsBody {
    requests: Vec<RequestBody>,
}

async fn join_requests(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(group_id): Path<String>,
) -> Result<Json<RequestsBody>, ApiError> {
    let (me, group_id) = caller(&state, &headers, &group_id).await?;
    let requests = chat(&state)?.join_requests(me, group_id).await?;
    Ok(Json(RequestsBody {
        requests: requests
            .into_iter()
            .map(|r| RequestBody {
                user_id: r.user.0,
                inviter: r.inviter.map_or(0, |u| u.0),
                requested_ms: r.requested_ms,
            })
            .collect(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    approve: bool,
}

#[derive(Serialize)]
struct DecidedBody {
    joined: bool,
}

async fn decide(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((group_id, user_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<DecideBody>,
) -> Result<Json<DecidedBody>, ApiError> {
    let (me, group_id) = caller(&state, &headers, &group_id).await?;
    let user = user_in_path(&user_id)?;
    let joined = chat(&state)?
        .decide_request(me, group_id, user, body.approve)
        .await?;
    Ok(Json(DecidedBody { joined }))
}
