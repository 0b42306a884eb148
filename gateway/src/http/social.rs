//! The social graph at the edge: friend requests, the contact list, its
//! change feed and its search, hidden friends, blocks and privacy settings,
//! and the mapping of the room's outcomes to stable codes.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use superapp_account::model::{Befriended, ContactEdit, UserId, WhoMayAddMe, WhoMayMessage};
use superapp_account::social::Settings;
use superapp_account::{Social, SocialError};
use superapp_api::{
    Blocks, Contact, ContactPage, ContactSearchQuery, ContactUpdate, ContactsQuery,
    ContactsVersion, ErrorBody, FoundContact, FoundContacts, FriendRequest, FriendRequestSent,
    FriendRequests, PrivacySettings, SendFriendRequest,
};
use superapp_kit::store::StoreError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, ApiPath, ApiQuery, AuthUser, Rooms};
use crate::error::ApiError;

pub fn routes() -> OpenApiRouter<Rooms> {
    OpenApiRouter::new()
        .routes(routes!(send_request, requests))
        .routes(routes!(accept))
        .routes(routes!(decline))
        .routes(routes!(contacts))
        .routes(routes!(search_contacts))
        .routes(routes!(update_contact, remove_friend))
        .routes(routes!(blocks))
        .routes(routes!(block, unblock))
        .routes(routes!(privacy, set_privacy))
}

/// The room's outcomes as the API's stable codes.
impl From<SocialError> for ApiError {
    fn from(e: SocialError) -> Self {
        use StatusCode as S;
        let (status, code) = match &e {
            SocialError::CannotBefriendSelf => (S::BAD_REQUEST, "cannot_befriend_self"),
            SocialError::UnknownUser => (S::NOT_FOUND, "unknown_user"),
            SocialError::UserDeleted => (S::GONE, "user_deleted"),
            SocialError::AlreadyFriends => (S::CONFLICT, "already_friends"),
            SocialError::UnknownRequest => (S::NOT_FOUND, "unknown_friend_request"),
            SocialError::NotFriends => (S::NOT_FOUND, "not_friends"),
            SocialError::BlockedByYou => (S::CONFLICT, "blocked_by_you"),
            SocialError::TooManyFriends { .. } => (S::CONFLICT, "too_many_friends"),
            SocialError::TooManyRequests { retry_after_ms } => {
                let mut err = Self::new(
                    S::TOO_MANY_REQUESTS,
                    "too_many_friend_requests",
                    e.to_string(),
                );
                err.retry_after_ms = Some(*retry_after_ms);
                return err;
            }
            SocialError::Invalid { code, .. } => (S::BAD_REQUEST, *code),
            SocialError::Store(StoreError::Busy) => return Self::busy(),
            SocialError::Store(_) => return Self::internal(&e),
        };
        Self::new(status, code, e.to_string())
    }
}

/// The path's user; an id that cannot be one is an unknown user.
fn user_in_path(user_id: &str) -> Result<UserId, ApiError> {
    user_id
        .parse()
        .map(UserId)
        .map_err(|_| ApiError::from(SocialError::UnknownUser))
}

fn settings_body(settings: Settings) -> PrivacySettings {
    let who = match settings.who_may_message {
        WhoMayMessage::Friends => "friends",
        WhoMayMessage::Anyone => "anyone",
    };
    let add = match settings.who_may_add_me {
        WhoMayAddMe::Anyone => "anyone",
        WhoMayAddMe::Friends => "friends",
        WhoMayAddMe::Invite => "invite",
    };
    PrivacySettings {
        who_may_message: Some(who.to_string()),
        who_may_add_me: Some(add.to_string()),
    }
}

/// Ask someone to be friends; if they had asked first, you are friends at once
#[utoipa::path(post, path = "/v1/friend-requests", tag = "contacts", security(("bearer" = [])),
    request_body = SendFriendRequest,
    responses(
        (status = 200, description = "requested, or friends", body = FriendRequestSent),
        (status = 400, description = "cannot_befriend_self, invalid_greeting", body = ErrorBody),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 404, description = "unknown_user", body = ErrorBody),
        (status = 409, description = "already_friends, blocked_by_you, too_many_friends", body = ErrorBody),
        (status = 410, description = "user_deleted: their account is deleted or being deleted", body = ErrorBody),
        (status = 429, description = "rate_limited, too_many_friend_requests", body = ErrorBody),
))]
async fn send_request(
    State(social): State<Arc<Social>>,
    auth: Result<AuthUser, ApiError>,
    ApiJson(body): ApiJson<SendFriendRequest>,
) -> Result<Json<FriendRequestSent>, ApiError> {
    // The body is checked before the caller, as the API always has.
    let AuthUser(me) = auth?;
    let outcome = social
        .request(me.sub, UserId(body.to), &body.greeting)
        .await?;
    let status = match outcome {
        Befriended::Friends { .. } => "friends",
        Befriended::Requested | Befriended::Dropped => "requested",
    };
    Ok(Json(FriendRequestSent {
        status: status.to_string(),
    }))
}

/// Friend requests waiting for you, newest first
#[utoipa::path(get, path = "/v1/friend-requests", tag = "contacts", security(("bearer" = [])),
    responses(
        (status = 200, description = "Waiting requests", body = FriendRequests),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
))]
async fn requests(
    State(social): State<Arc<Social>>,
    AuthUser(me): AuthUser,
) -> Result<Json<FriendRequests>, ApiError> {
    let requests = social.requests(me.sub).await?;
    Ok(Json(FriendRequests {
        requests: requests
            .into_iter()
            .map(|r| FriendRequest {
                from: r.from.0,
                greeting: r.greeting,
                sent_ms: r.sent_ms,
            })
            .collect(),
    }))
}

/// Accept a friend request: you are friends
#[utoipa::path(post, path = "/v1/friend-requests/{user_id}/accept", tag = "contacts", security(("bearer" = [])),
    params(("user_id" = String, Path, description = "who asked")),
    responses(
        (status = 200, description = "Friends; your contact list's version", body = ContactsVersion),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 404, description = "unknown_friend_request", body = ErrorBody),
        (status = 409, description = "already_friends, blocked_by_you, too_many_friends", body = ErrorBody),
        (status = 410, description = "user_deleted: the one who asked is deleting their account", body = ErrorBody),
))]
async fn accept(
    State(social): State<Arc<Social>>,
    AuthUser(me): AuthUser,
    ApiPath(user_id): ApiPath<String>,
) -> Result<Json<ContactsVersion>, ApiError> {
    let from = user_in_path(&user_id).map_err(|_| SocialError::UnknownRequest)?;
    let version = social.accept(me.sub, from).await?;
    Ok(Json(ContactsVersion { version }))
}

/// Decline a friend request (the one who asked is not told)
#[utoipa::path(delete, path = "/v1/friend-requests/{user_id}", tag = "contacts", security(("bearer" = [])),
    params(("user_id" = String, Path, description = "who asked")),
    responses(
        (status = 204, description = "Declined"),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 404, description = "unknown_friend_request", body = ErrorBody),
))]
async fn decline(
    State(social): State<Arc<Social>>,
    AuthUser(me): AuthUser,
    ApiPath(user_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let from = user_in_path(&user_id).map_err(|_| SocialError::UnknownRequest)?;
    social.decline(me.sub, from).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Your contact list's changes after a version (since=0: the whole list), oldest first
#[utoipa::path(get, path = "/v1/contacts", tag = "contacts", security(("bearer" = [])),
    params(ContactsQuery),
    responses(
        (status = 200, description = "A page of changes", body = ContactPage),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
))]
async fn contacts(
    State(social): State<Arc<Social>>,
    AuthUser(me): AuthUser,
    ApiQuery(query): ApiQuery<ContactsQuery>,
) -> Result<Json<ContactPage>, ApiError> {
    let page = social.contacts(me.sub, query.since, query.limit).await?;
    Ok(Json(ContactPage {
        changes: page
            .changes
            .into_iter()
            .map(|c| Contact {
                user_id: c.friend.0,
                remark: c.remark,
                tags: c.tags,
                since_ms: c.since_ms,
                removed: c.removed,
                hidden: c.hidden,
                version: c.version,
            })
            .collect(),
        version: page.version,
        more: page.more,
    }))
}

/// Find contacts: friends whose remark or display name starts with q, or whose user id it is; friends you hide only by exact remark, display name or user id (case ignored); at most 50
#[utoipa::path(get, path = "/v1/contacts/search", tag = "contacts", security(("bearer" = [])),
    params(ContactSearchQuery),
    responses(
        (status = 200, description = "The contacts found, by display name", body = FoundContacts),
        (status = 400, description = "invalid_query", body = ErrorBody),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
))]
async fn search_contacts(
    State(social): State<Arc<Social>>,
    AuthUser(me): AuthUser,
    ApiQuery(query): ApiQuery<ContactSearchQuery>,
) -> Result<Json<FoundContacts>, ApiError> {
    let found = social.search(me.sub, &query.q).await?;
    Ok(Json(FoundContacts {
        contacts: found
            .into_iter()
            .map(|f| FoundContact {
                user_id: f.contact.friend.0,
                display_name: f.display_name,
                remark: f.contact.remark,
                tags: f.contact.tags,
                since_ms: f.contact.since_ms,
                hidden: f.contact.hidden,
                friend: !f.contact.removed,
            })
            .collect(),
    }))
}

/// Set your remark (alias) and tags for a friend, or hide them from your contact list and conversation list on every device ("private mode") and show them again
#[utoipa::path(patch, path = "/v1/contacts/{user_id}", tag = "contacts", security(("bearer" = [])),
    params(("user_id" = String, Path)), request_body = ContactUpdate,
    responses(
        (status = 200, description = "Your contact list's version", body = ContactsVersion),
        (status = 400, description = "invalid_remark, invalid_tags", body = ErrorBody),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 404, description = "not_friends", body = ErrorBody),
))]
async fn update_contact(
    State(social): State<Arc<Social>>,
    auth: Result<AuthUser, ApiError>,
    ApiPath(user_id): ApiPath<String>,
    ApiJson(body): ApiJson<ContactUpdate>,
) -> Result<Json<ContactsVersion>, ApiError> {
    let AuthUser(me) = auth?;
    let friend = user_in_path(&user_id).map_err(|_| SocialError::NotFriends)?;
    let edit = ContactEdit {
        remark: body.remark,
        tags: body.tags,
        hidden: body.hidden,
    };
    let version = social.set_contact(me.sub, friend, edit).await?;
    Ok(Json(ContactsVersion { version }))
}

/// Remove a friend: the friendship ends on both sides
#[utoipa::path(delete, path = "/v1/contacts/{user_id}", tag = "contacts", security(("bearer" = [])),
    params(("user_id" = String, Path)),
    responses(
        (status = 200, description = "Your contact list's version", body = ContactsVersion),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 404, description = "not_friends", body = ErrorBody),
))]
async fn remove_friend(
    State(social): State<Arc<Social>>,
    AuthUser(me): AuthUser,
    ApiPath(user_id): ApiPath<String>,
) -> Result<Json<ContactsVersion>, ApiError> {
    let friend = user_in_path(&user_id).map_err(|_| SocialError::NotFriends)?;
    let version = social.remove(me.sub, friend).await?;
    Ok(Json(ContactsVersion { version }))
}

/// Whom you block, most recent first
#[utoipa::path(get, path = "/v1/blocks", tag = "contacts", security(("bearer" = [])),
    responses(
        (status = 200, description = "Blocked users", body = Blocks),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
))]
async fn blocks(
    State(social): State<Arc<Social>>,
    AuthUser(me): AuthUser,
) -> Result<Json<Blocks>, ApiError> {
    let users = social.blocked(me.sub).await?;
    Ok(Json(Blocks {
        users: users.into_iter().map(|u| u.0).collect(),
    }))
}

/// Block someone: their messages no longer reach you (they are not told: their one-to-one sends succeed on their side, and their group messages are left out of your view), and they can no longer ask to be friends, or add or invite you to groups
#[utoipa::path(put, path = "/v1/blocks/{user_id}", tag = "contacts", security(("bearer" = [])),
    params(("user_id" = String, Path)),
    responses(
        (status = 204, description = "Blocked (again is no change)"),
        (status = 400, description = "cannot_block_self, too_many_blocks", body = ErrorBody),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 404, description = "unknown_user", body = ErrorBody),
))]
async fn block(
    State(social): State<Arc<Social>>,
    AuthUser(me): AuthUser,
    ApiPath(user_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    social.block(me.sub, user_in_path(&user_id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unblock someone; what they sent while blocked stays out of your view
#[utoipa::path(delete, path = "/v1/blocks/{user_id}", tag = "contacts", security(("bearer" = [])),
    params(("user_id" = String, Path)),
    responses(
        (status = 204, description = "Not blocked (also when they were not)"),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 404, description = "unknown_user", body = ErrorBody),
))]
async fn unblock(
    State(social): State<Arc<Social>>,
    AuthUser(me): AuthUser,
    ApiPath(user_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    social.unblock(me.sub, user_in_path(&user_id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Your privacy settings, the server's defaults where you have not chosen
#[utoipa::path(get, path = "/v1/me/privacy", tag = "contacts", security(("bearer" = [])),
    responses(
        (status = 200, description = "Settings", body = PrivacySettings),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
))]
async fn privacy(
    State(social): State<Arc<Social>>,
    AuthUser(me): AuthUser,
) -> Result<Json<PrivacySettings>, ApiError> {
    Ok(Json(settings_body(social.settings(me.sub).await?)))
}

/// Change privacy settings (those left out stay as they are)
#[utoipa::path(patch, path = "/v1/me/privacy", tag = "contacts", security(("bearer" = [])),
    request_body = PrivacySettings,
    responses(
        (status = 200, description = "Settings", body = PrivacySettings),
        (status = 400, description = "invalid_setting", body = ErrorBody),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
))]
async fn set_privacy(
    State(social): State<Arc<Social>>,
    auth: Result<AuthUser, ApiError>,
    ApiJson(body): ApiJson<PrivacySettings>,
) -> Result<Json<PrivacySettings>, ApiError> {
    let AuthUser(me) = auth?;
    let who = match body.who_may_message.as_deref() {
        None => None,
        Some("friends") => Some(WhoMayMessage::Friends),
        Some("anyone") => Some(WhoMayMessage::Anyone),
        Some(_) => {
            return Err(SocialError::Invalid {
                code: "invalid_setting",
                reason: "who_may_message is friends or anyone",
            }
            .into());
        }
    };
    let add = match body.who_may_add_me.as_deref() {
        None => None,
        Some("anyone") => Some(WhoMayAddMe::Anyone),
        Some("friends") => Some(WhoMayAddMe::Friends),
        Some("invite") => Some(WhoMayAddMe::Invite),
        Some(_) => {
            return Err(SocialError::Invalid {
                code: "invalid_setting",
                reason: "who_may_add_me is friends, anyone or invite",
            }
            .into());
        }
    };
    let settings = social.set_settings(me.sub, who, add).await?;
    Ok(Json(settings_body(settings)))
}
