//! Profiles and discovery at the edge: the caller's own profile, lookups by
//! id, handle and phone, contact matching, and the mapping of the room's
//! outcomes to stable codes. What each answer shows is the account room's
//! decision ([`superapp_account::policy::profile::sight`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use superapp_account::model::{Gender, ProfileChange, ProfileRecord, UserId, UserView};
use superapp_account::policy::profile::HANDLE_CHANGE_INTERVAL_MS;
use superapp_account::{ProfileError, Profiles};
use superapp_api::{
    ContactMatch, ContactMatches, ContactSalt, ErrorBody, FindByHandle, FindByPhone, MatchContacts,
    MyProfile, ProfileDetails, ProfileUpdate, UserProfile,
};
use superapp_kit::store::StoreError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, ApiPath, AuthUser, Rooms};
use crate::error::ApiError;

pub fn routes() -> OpenApiRouter<Rooms> {
    OpenApiRouter::new()
        .routes(routes!(my_profile, update_profile))
        .routes(routes!(user))
        .routes(routes!(by_handle))
        .routes(routes!(by_phone))
        .routes(routes!(contact_salt))
        .routes(routes!(match_contacts))
}

/// The room's outcomes as the API's stable codes.
impl From<ProfileError> for ApiError {
    fn from(e: ProfileError) -> Self {
        use StatusCode as S;
        let (status, code, retry_after_ms) = match &e {
            ProfileError::UnknownUser => (S::NOT_FOUND, "unknown_user", None),
            ProfileError::UserDeleted => (S::GONE, "user_deleted", None),
            ProfileError::InvalidPhone => (S::BAD_REQUEST, "invalid_phone", None),
            ProfileError::InvalidHandle => (S::BAD_REQUEST, "invalid_handle", None),
            ProfileError::HandleTaken => (S::CONFLICT, "handle_taken", None),
            ProfileError::HandleTooSoon { retry_after_ms } => {
                (S::CONFLICT, "handle_too_soon", Some(*retry_after_ms))
            }
            ProfileError::TooManyLookups { retry_after_ms } => (
                S::TOO_MANY_REQUESTS,
                "too_many_lookups",
                Some(*retry_after_ms),
            ),
            ProfileError::TooManyMatches { retry_after_ms } => (
                S::TOO_MANY_REQUESTS,
                "too_many_contact_matches",
                Some(*retry_after_ms),
            ),
            ProfileError::AvatarRefused => (S::FORBIDDEN, "avatar_refused", None),
            ProfileError::Invalid { code, .. } => (S::BAD_REQUEST, *code, None),
            ProfileError::Store(StoreError::Busy) => return Self::busy(),
            ProfileError::Store(_) => return Self::internal(&e),
        };
        let mut err = Self::new(status, code, e.to_string());
        err.retry_after_ms = retry_after_ms;
        err
    }
}

fn my_body(p: ProfileRecord) -> MyProfile {
    MyProfile {
        user_id: p.user_id.0,
        phone: p.phone,
        display_name: p.display_name,
        avatar_url: p.avatar_url,
        signature: p.signature,
        region: p.region,
        gender: p.gender.as_str().to_string(),
        handle_changeable_at_ms: p
            .handle
            .as_ref()
            .and(p.handle_set_ms)
            .map(|set| set.saturating_add(HANDLE_CHANGE_INTERVAL_MS)),
        handle: p.handle,
        created_at_ms: p.created_at_ms,
    }
}

fn user_body(v: UserView) -> UserProfile {
    UserProfile {
        user_id: v.user_id.0,
        display_name: v.display_name,
        avatar_url: v.avatar_url,
        details: v.details.map(|d| ProfileDetails {
            handle: d.handle,
            signature: d.signature,
            region: d.region,
            gender: d.gender.as_str().to_string(),
        }),
        phone: v.phone,
    }
}

/// Your own profile, all of it
#[utoipa::path(get, path = "/v1/me/profile", tag = "profiles", security(("bearer" = [])),
    responses(
        (status = 200, description = "Your profile", body = MyProfile),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
))]
async fn my_profile(
    State(profiles): State<Arc<Profiles>>,
    AuthUser(me): AuthUser,
) -> Result<Json<MyProfile>, ApiError> {
    Ok(Json(my_body(profiles.mine(me.sub).await?)))
}

/// Change your profile: the fields given change, all of them or none. A handle is set at most once in 30 days.
#[utoipa::path(patch, path = "/v1/me/profile", tag = "profiles", security(("bearer" = [])),
    request_body = ProfileUpdate,
    responses(
        (status = 200, description = "Your profile as it now is", body = MyProfile),
        (status = 400, description = "invalid_display_name, invalid_avatar, invalid_signature, invalid_region, invalid_gender, invalid_handle", body = ErrorBody),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 409, description = "handle_taken; handle_too_soon, with retry_after_ms and Retry-After", body = ErrorBody),
        (status = 429, description = "too_many_lookups (a handle refused as taken counts as a lookup)", body = ErrorBody),
))]
async fn update_profile(
    State(profiles): State<Arc<Profiles>>,
    auth: Result<AuthUser, ApiError>,
    ApiJson(body): ApiJson<ProfileUpdate>,
) -> Result<Json<MyProfile>, ApiError> {
    let AuthUser(me) = auth?;
    let gender = match body.gender.as_deref() {
        None => None,
        Some(g) => Some(Gender::parse(g).ok_or(ProfileError::Invalid {
            code: "invalid_gender",
            reason: "gender is unset, female, male or other",
        })?),
    };
    let change = ProfileChange {
        display_name: body.display_name,
        avatar_url: body.avatar_url,
        signature: body.signature,
        region: body.region,
        gender,
        handle: body.handle,
    };
    Ok(Json(my_body(profiles.update(me.sub, change).await?)))
}

/// A user by id: name and avatar always; details and number as their settings allow; a deleted account (or one being deleted) answers user_deleted
#[utoipa::path(get, path = "/v1/users/{user_id}", tag = "profiles", security(("bearer" = [])),
    params(("user_id" = String, Path, description = "64-bit id as a decimal string")),
    responses(
        (status = 200, description = "What you may see of the user", body = UserProfile),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 404, description = "unknown_user", body = ErrorBody),
        (status = 410, description = "user_deleted: the account is deleted, or being deleted", body = ErrorBody),
))]
async fn user(
    State(profiles): State<Arc<Profiles>>,
    AuthUser(me): AuthUser,
    ApiPath(user_id): ApiPath<String>,
) -> Result<Json<UserProfile>, ApiError> {
    let user = user_id
        .parse()
        .map(UserId)
        .map_err(|_| ProfileError::UnknownUser)?;
    Ok(Json(user_body(profiles.by_id(me.sub, user).await?)))
}

/// Find a user by handle (any case); one who may not be found this way answers as a handle nobody holds
#[utoipa::path(post, path = "/v1/users/by-handle", tag = "profiles", security(("bearer" = [])),
    request_body = FindByHandle,
    responses(
        (status = 200, description = "What you may see of the user", body = UserProfile),
        (status = 400, description = "invalid_handle", body = ErrorBody),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 404, description = "unknown_user: nobody you may find holds it", body = ErrorBody),
        (status = 429, description = "too_many_lookups (social.lookups_per_hour), with retry_after_ms and Retry-After", body = ErrorBody),
))]
async fn by_handle(
    State(profiles): State<Arc<Profiles>>,
    auth: Result<AuthUser, ApiError>,
    ApiJson(body): ApiJson<FindByHandle>,
) -> Result<Json<UserProfile>, ApiError> {
    let AuthUser(me) = auth?;
    Ok(Json(user_body(
        profiles.by_handle(me.sub, &body.handle).await?,
    )))
}

/// Find a user by phone number; one whose phone visibility, block or invisible mode forbids it answers as an unregistered number
#[utoipa::path(post, path = "/v1/users/by-phone", tag = "profiles", security(("bearer" = [])),
    request_body = FindByPhone,
    responses(
        (status = 200, description = "What you may see of the user", body = UserProfile),
        (status = 400, description = "invalid_phone", body = ErrorBody),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 404, description = "unknown_user: nobody you may find has it", body = ErrorBody),
        (status = 429, description = "too_many_lookups (social.lookups_per_hour), with retry_after_ms and Retry-After", body = ErrorBody),
))]
async fn by_phone(
    State(profiles): State<Arc<Profiles>>,
    auth: Result<AuthUser, ApiError>,
    ApiJson(body): ApiJson<FindByPhone>,
) -> Result<Json<UserProfile>, ApiError> {
    let AuthUser(me) = auth?;
    Ok(Json(user_body(
        profiles.by_phone(me.sub, &body.phone).await?,
    )))
}

/// The salt to hash your address book's numbers with for contact matching, and the limits
#[utoipa::path(get, path = "/v1/contacts/salt", tag = "profiles", security(("bearer" = [])),
    responses(
        (status = 200, description = "The salt and the limits", body = ContactSalt),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
))]
async fn contact_salt(
    State(profiles): State<Arc<Profiles>>,
    AuthUser(_): AuthUser,
) -> Json<ContactSalt> {
    let (hashes_per_request, hashes_per_day) = profiles.match_limits();
    Json(ContactSalt {
        salt: profiles.contact_salt(),
        hashes_per_request,
        hashes_per_day,
    })
}

/// Contact matching: the registered users among your hashed numbers whom you may find by phone
#[utoipa::path(post, path = "/v1/contacts/match", tag = "profiles", security(("bearer" = [])),
    request_body = MatchContacts,
    responses(
        (status = 200, description = "Those you may find, in the order asked", body = ContactMatches),
        (status = 400, description = "invalid_hash, too_many_hashes", body = ErrorBody),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 429, description = "too_many_contact_matches (social.contact_match_hashes_per_day), with retry_after_ms and Retry-After", body = ErrorBody),
))]
async fn match_contacts(
    State(profiles): State<Arc<Profiles>>,
    auth: Result<AuthUser, ApiError>,
    ApiJson(body): ApiJson<MatchContacts>,
) -> Result<Json<ContactMatches>, ApiError> {
    let AuthUser(me) = auth?;
    let found = profiles.match_contacts(me.sub, &body.hashes).await?;
    Ok(Json(ContactMatches {
        matches: found
            .into_iter()
            .map(|(hash, view)| ContactMatch {
                hash,
                user: user_body(view),
            })
            .collect(),
    }))
}
