//! The JSON API: accounts, sessions, WebSocket tickets, account security
//! (password, devices, deletion), real-name verification, presence, groups,
//! the social graph, profiles and discovery ([`contact_hash`] hashes an
//! address book's numbers for contact matching), and people nearby.

use crate::error::{ClientError, Result};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::Duration;

/// Long enough for a slow password hash on a busy server, short enough that a
/// dead server does not hang a script.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A request without a body.
pub(crate) const NO_BODY: Option<&()> = None;

pub use superapp_api::{
    Account, AccountDeletion, ContactMatches, ContactPage, ContactSalt, ContactUpdate,
    ContactsVersion, FoundContacts, FriendRequestSent, FriendRequests, Group, GroupInvitation,
    GroupInvitations, GroupJoin, JoinResult, LocationShared, MyProfile, NearbyPeople, NearbyPerson,
    Presence, PrivacySettings, ProfileUpdate, RealName, RealNameRejection, RealNameStatus, Session,
    Sessions, Ticket, Tokens, U64AsString, UserName, UserNames, UserProfile,
};

/// A client for the HTTP API of one server. Cheap to clone.
#[derive(Debug, Clone)]
pub struct HttpClient {
    base_url: String,
    http: reqwest::Client,
}

impl HttpClient {
    /// `base_url` is like `http://127.0.0.1:8080`; a trailing `/` is ignored.
    pub fn new(base_url: impl Into<String>) -> Self {
        let base_url = base_url.into().trim_end_matches('/').to_owned();
        // The server closes a keep-alive connection idle for
        // `server.header_read_timeout_ms` (10 s by default); letting go of it
        // sooner keeps a request from racing that close.
        let http = reqwest::Client::builder()
            .pool_idle_timeout(std::time::Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        HttpClient { base_url, http }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub async fn register(
        &self,
        phone: &str,
        password: &str,
        display_name: &str,
    ) -> Result<Account> {
        let body = superapp_api::Register {
            phone: phone.into(),
            password: password.into(),
            display_name: display_name.into(),
        };
        self.call(Method::POST, "/v1/accounts", None, Some(&body))
            .await
    }

    pub async fn login(&self, phone: &str, password: &str) -> Result<Tokens> {
        self.login_device(phone, password, None).await
    }

    /// Like [`login`](Self::login), naming the device so it shows in the session list.
    pub async fn login_device(
        &self,
        phone: &str,
        password: &str,
        device_name: Option<&str>,
    ) -> Result<Tokens> {
        let body = superapp_api::Login {
            phone: phone.into(),
            password: password.into(),
            device_name: device_name.unwrap_or_default().into(),
        };
        self.call(Method::POST, "/v1/sessions", None, Some(&body))
            .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens> {
        let body = superapp_api::Refresh {
            refresh_token: refresh_token.into(),
        };
        self.call(Method::POST, "/v1/sessions/refresh", None, Some(&body))
            .await
    }

    pub async fn logout(&self, access_token: &str) -> Result<()> {
        self.send(
            Method::DELETE,
            "/v1/sessions/current",
            Some(access_token),
            NO_BODY,
        )
        .await
        .map(drop)
    }

    pub async fn me(&self, access_token: &str) -> Result<Account> {
        self.call(Method::GET, "/v1/me", Some(access_token), NO_BODY)
            .await
    }

    /// Changes the caller's password. Every other session of the user ends;
    /// the caller's goes on under the new pair answered, which must replace
    /// the old (whose refresh token no longer works).
    pub async fn change_password(
        &self,
        access_token: &str,
        current_password: &str,
        new_password: &str,
    ) -> Result<Tokens> {
        let body = superapp_api::ChangePassword {
            current_password: current_password.into(),
            new_password: new_password.into(),
        };
        self.call(
            Method::POST,
            "/v1/me/password",
            Some(access_token),
            Some(&body),
        )
        .await
    }

    /// The caller's live sessions (devices), the most recently active first.
    pub async fn sessions(&self, access_token: &str) -> Result<Sessions> {
        self.call(Method::GET, "/v1/me/sessions", Some(access_token), NO_BODY)
            .await
    }

    /// Ends one of the caller's sessions; `unknown_session` for any id that
    /// is not a live session of theirs.
    pub async fn revoke_session(&self, access_token: &str, session_id: u64) -> Result<()> {
        let path = format!("/v1/me/sessions/{session_id}");
        self.send(Method::DELETE, &path, Some(access_token), NO_BODY)
            .await
            .map(drop)
    }

    /// Asks for the caller's account to be deleted: every session ends at
    /// once, and the account is erased at `due_at_ms` unless restored
    /// before ([`restore_account`](Self::restore_account)).
    pub async fn delete_account(
        &self,
        access_token: &str,
        password: &str,
    ) -> Result<AccountDeletion> {
        let body = superapp_api::DeleteAccount {
            password: password.into(),
        };
        self.call(
            Method::POST,
            "/v1/me/deletion",
            Some(access_token),
            Some(&body),
        )
        .await
    }

    /// Restores an account being deleted and signs in (a log-in that also
    /// withdraws the deletion). A log-in to such an account answers
    /// `account_deletion_pending`.
    pub async fn restore_account(
        &self,
        phone: &str,
        password: &str,
        device_name: Option<&str>,
    ) -> Result<Tokens> {
        let body = superapp_api::Restore {
            phone: phone.into(),
            password: password.into(),
            device_name: device_name.unwrap_or_default().into(),
        };
        self.call(Method::POST, "/v1/accounts/restore", None, Some(&body))
            .await
    }

    /// The names of up to 100 users, deleted accounts named by a
    /// placeholder with `deleted` set; unknown ids are left out.
    pub async fn user_names(&self, access_token: &str, user_ids: &[u64]) -> Result<UserNames> {
        let body = superapp_api::NamesQuery {
            user_ids: user_ids.to_vec(),
        };
        self.call(
            Method::POST,
            "/v1/users/names",
            Some(access_token),
            Some(&body),
        )
        .await
    }

    /// Submits the caller's legal name and resident identity number for
    /// real-name verification. The answer's `status` is `verified` or
    /// `rejected` when the provider decided at once, `pending` otherwise
    /// (read [`real_name`](Self::real_name) later).
    pub async fn submit_real_name(
        &self,
        access_token: &str,
        legal_name: &str,
        id_number: &str,
    ) -> Result<RealName> {
        let body = superapp_api::SubmitRealName {
            legal_name: legal_name.into(),
            id_number: id_number.into(),
        };
        self.call(
            Method::POST,
            "/v1/me/real-name",
            Some(access_token),
            Some(&body),
        )
        .await
    }

    /// The caller's real-name verification, the ID number masked.
    pub async fn real_name(&self, access_token: &str) -> Result<RealName> {
        self.call(Method::GET, "/v1/me/real-name", Some(access_token), NO_BODY)
            .await
    }

    pub async fn presence(&self, access_token: &str, user_id: u64) -> Result<Presence> {
        let path = format!("/v1/users/{user_id}/presence");
        self.call(Method::GET, &path, Some(access_token), NO_BODY)
            .await
    }

    /// Creates a group owned by the caller, with these first members (those
    /// who must be asked are invited instead: the answer's `invited`).
    pub async fn create_group(
        &self,
        access_token: &str,
        name: &str,
        members: &[u64],
    ) -> Result<Group> {
        let body = superapp_api::CreateGroup {
            name: name.into(),
            avatar: String::new(),
            members: members.to_vec(),
        };
        self.call(Method::POST, "/v1/groups", Some(access_token), Some(&body))
            .await
    }

    pub async fn group(&self, access_token: &str, group_id: u64) -> Result<Group> {
        let path = format!("/v1/groups/{group_id}");
        self.call(Method::GET, &path, Some(access_token), NO_BODY)
            .await
    }

    /// Brings users into a group: added at once, pending approval, or (those
    /// who must be asked) invited.
    pub async fn add_group_members(
        &self,
        access_token: &str,
        group_id: u64,
        members: &[u64],
    ) -> Result<GroupJoin> {
        let path = format!("/v1/groups/{group_id}/members");
        let body = superapp_api::Invite {
            members: members.to_vec(),
        };
        self.call(Method::POST, &path, Some(access_token), Some(&body))
            .await
    }

    /// Invitations into groups waiting for the caller, newest first.
    pub async fn group_invitations(&self, access_token: &str) -> Result<GroupInvitations> {
        let path = "/v1/group-invitations";
        self.call(Method::GET, path, Some(access_token), NO_BODY)
            .await
    }

    /// Accepts the caller's invitation into `group_id`: `joined`, or false
    /// while an admin's approval is awaited.
    pub async fn accept_group_invitation(
        &self,
        access_token: &str,
        group_id: u64,
    ) -> Result<JoinResult> {
        let path = format!("/v1/group-invitations/{group_id}/accept");
        self.call(Method::POST, &path, Some(access_token), NO_BODY)
            .await
    }

    /// Declines the caller's invitation into `group_id`.
    pub async fn decline_group_invitation(&self, access_token: &str, group_id: u64) -> Result<()> {
        let path = format!("/v1/group-invitations/{group_id}");
        self.send(Method::DELETE, &path, Some(access_token), NO_BODY)
            .await
            .map(drop)
    }

    /// Asks `to` to be friends; answers `requested` or `friends`.
    pub async fn friend_request(
        &self,
        access_token: &str,
        to: u64,
        greeting: &str,
    ) -> Result<FriendRequestSent> {
        let body = superapp_api::SendFriendRequest {
            to,
            greeting: greeting.into(),
        };
        let path = "/v1/friend-requests";
        self.call(Method::POST, path, Some(access_token), Some(&body))
            .await
    }

    /// Friend requests waiting for the caller, newest first.
    pub async fn friend_requests(&self, access_token: &str) -> Result<FriendRequests> {
        let path = "/v1/friend-requests";
        self.call(Method::GET, path, Some(access_token), NO_BODY)
            .await
    }

    /// Accepts `from`'s request; answers the caller's contact-list version.
    pub async fn accept_friend(&self, access_token: &str, from: u64) -> Result<ContactsVersion> {
        let path = format!("/v1/friend-requests/{from}/accept");
        self.call(Method::POST, &path, Some(access_token), NO_BODY)
            .await
    }

    pub async fn decline_friend(&self, access_token: &str, from: u64) -> Result<()> {
        let path = format!("/v1/friend-requests/{from}");
        self.send(Method::DELETE, &path, Some(access_token), NO_BODY)
            .await
            .map(drop)
    }

    pub async fn remove_friend(&self, access_token: &str, friend: u64) -> Result<ContactsVersion> {
        let path = format!("/v1/contacts/{friend}");
        self.call(Method::DELETE, &path, Some(access_token), NO_BODY)
            .await
    }

    /// The caller's contact list's changes after version `since` (0: all).
    pub async fn contacts(
        &self,
        access_token: &str,
        since: u64,
        limit: u32,
    ) -> Result<ContactPage> {
        let path = format!("/v1/contacts?since={since}&limit={limit}");
        self.call(Method::GET, &path, Some(access_token), NO_BODY)
            .await
    }

    /// Hides a friend from the caller's contact list and conversation list
    /// on every device (`hidden` true), or shows them again.
    pub async fn hide_friend(
        &self,
        access_token: &str,
        friend: u64,
        hidden: bool,
    ) -> Result<ContactsVersion> {
        let path = format!("/v1/contacts/{friend}");
        let body = ContactUpdate {
            hidden: Some(hidden),
            ..ContactUpdate::default()
        };
        self.call(Method::PATCH, &path, Some(access_token), Some(&body))
            .await
    }

    /// The caller's contacts that `query` finds (hidden friends only by an
    /// exact remark, display name or user id).
    pub async fn search_contacts(&self, access_token: &str, query: &str) -> Result<FoundContacts> {
        let path = format!("/v1/contacts/search?q={}", crate::ws::escape_query(query));
        self.call(Method::GET, &path, Some(access_token), NO_BODY)
            .await
    }

    pub async fn block(&self, access_token: &str, user: u64) -> Result<()> {
        let path = format!("/v1/blocks/{user}");
        self.send(Method::PUT, &path, Some(access_token), NO_BODY)
            .await
            .map(drop)
    }

    pub async fn unblock(&self, access_token: &str, user: u64) -> Result<()> {
        let path = format!("/v1/blocks/{user}");
        self.send(Method::DELETE, &path, Some(access_token), NO_BODY)
            .await
            .map(drop)
    }

    /// Changes the caller's privacy settings (those left None stay).
    pub async fn set_privacy(
        &self,
        access_token: &str,
        settings: &PrivacySettings,
    ) -> Result<PrivacySettings> {
        let path = "/v1/me/privacy";
        self.call(Method::PATCH, path, Some(access_token), Some(settings))
            .await
    }

    /// The caller's privacy settings, the server's defaults where unchosen.
    pub async fn privacy(&self, access_token: &str) -> Result<PrivacySettings> {
        self.call(Method::GET, "/v1/me/privacy", Some(access_token), NO_BODY)
            .await
    }

    /// The caller's own profile.
    pub async fn my_profile(&self, access_token: &str) -> Result<MyProfile> {
        self.call(Method::GET, "/v1/me/profile", Some(access_token), NO_BODY)
            .await
    }

    /// Changes the caller's profile: the fields given, all or none.
    pub async fn update_profile(
        &self,
        access_token: &str,
        update: &ProfileUpdate,
    ) -> Result<MyProfile> {
        let path = "/v1/me/profile";
        self.call(Method::PATCH, path, Some(access_token), Some(update))
            .await
    }

    /// What the caller may see of a user.
    pub async fn user_profile(&self, access_token: &str, user_id: u64) -> Result<UserProfile> {
        let path = format!("/v1/users/{user_id}");
        self.call(Method::GET, &path, Some(access_token), NO_BODY)
            .await
    }

    /// The user holding `handle`, if the caller may find them by it.
    pub async fn find_by_handle(&self, access_token: &str, handle: &str) -> Result<UserProfile> {
        let body = superapp_api::FindByHandle {
            handle: handle.into(),
        };
        let path = "/v1/users/by-handle";
        self.call(Method::POST, path, Some(access_token), Some(&body))
            .await
    }

    /// The user whose number `phone` is, if the caller may find them by it.
    pub async fn find_by_phone(&self, access_token: &str, phone: &str) -> Result<UserProfile> {
        let body = superapp_api::FindByPhone {
            phone: phone.into(),
        };
        let path = "/v1/users/by-phone";
        self.call(Method::POST, path, Some(access_token), Some(&body))
            .await
    }

    /// The salt to hash numbers with for [`match_contacts`](Self::match_contacts).
    pub async fn contact_salt(&self, access_token: &str) -> Result<ContactSalt> {
        self.call(
            Method::GET,
            "/v1/contacts/salt",
            Some(access_token),
            NO_BODY,
        )
        .await
    }

    /// The registered users among `hashes` ([`contact_hash`]) whom the
    /// caller may find by phone.
    pub async fn match_contacts(
        &self,
        access_token: &str,
        hashes: &[String],
    ) -> Result<ContactMatches> {
        let body = superapp_api::MatchContacts {
            hashes: hashes.to_vec(),
        };
        let path = "/v1/contacts/match";
        self.call(Method::POST, path, Some(access_token), Some(&body))
            .await
    }

    /// Shares the caller's position with people nearby (the server keeps
    /// only its cell of about 100 m); answers when it expires.
    pub async fn share_location(
        &self,
        access_token: &str,
        lat: f64,
        lon: f64,
    ) -> Result<LocationShared> {
        let body = superapp_api::ShareLocation { lat, lon };
        self.call(
            Method::PUT,
            "/v1/me/location",
            Some(access_token),
            Some(&body),
        )
        .await
    }

    /// Stops sharing the caller's position.
    pub async fn clear_location(&self, access_token: &str) -> Result<()> {
        self.send(
            Method::DELETE,
            "/v1/me/location",
            Some(access_token),
            NO_BODY,
        )
        .await
        .map(drop)
    }

    /// People sharing their position near the caller's, nearest first; the
    /// server's defaults for a radius or a count left None.
    pub async fn nearby(
        &self,
        access_token: &str,
        radius_m: Option<u32>,
        limit: Option<u32>,
    ) -> Result<NearbyPeople> {
        let mut query = Vec::new();
        if let Some(radius_m) = radius_m {
            query.push(format!("radius_m={radius_m}"));
        }
        if let Some(limit) = limit {
            query.push(format!("limit={limit}"));
        }
        let path = match query.is_empty() {
            true => "/v1/nearby".to_string(),
            false => format!("/v1/nearby?{}", query.join("&")),
        };
        self.call(Method::GET, &path, Some(access_token), NO_BODY)
            .await
    }

    pub async fn ws_ticket(&self, access_token: &str) -> Result<Ticket> {
        self.call(Method::POST, "/v1/ws-tickets", Some(access_token), NO_BODY)
            .await
    }

    /// Sends any request and returns the status and body whatever the status,
    /// for tests of odd inputs. An empty or non-JSON body reads as
    /// `Value::Null` or a JSON string of the raw text.
    pub async fn request_json(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(u16, Value)> {
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| ClientError::Decode(format!("invalid HTTP method {method:?}")))?;
        let response = self.start(method, path, bearer, body).send().await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok((status, value))
    }

    pub(crate) fn start(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&impl Serialize>,
    ) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .timeout(REQUEST_TIMEOUT);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request
    }

    /// A request to a URL the server handed out whole (a provider's
    /// `pay_url`), which may name another origin than `base_url`.
    pub(crate) fn start_url(
        &self,
        method: Method,
        url: &str,
        body: Option<&impl Serialize>,
    ) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, url).timeout(REQUEST_TIMEOUT);
        if let Some(body) = body {
            request = request.json(body);
        }
        request
    }

    /// Sends a request and turns a non-2xx answer into [`ClientError::Api`].
    async fn send(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&impl Serialize>,
    ) -> Result<bytes::Bytes> {
        answer_bytes(self.start(method, path, bearer, body)).await
    }

    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&impl Serialize>,
    ) -> Result<T> {
        let bytes = self.send(method, path, bearer, body).await?;
        serde_json::from_slice(&bytes).map_err(|err| {
            ClientError::Decode(format!("{path} answered an unexpected body: {err}"))
        })
    }
}

/// Sends `request` (built by [`HttpClient::start`]) and decodes its JSON
/// answer; a non-2xx answer is [`ClientError::Api`]. `what` names the
/// request in a decoding error.
pub(crate) async fn answer<T: DeserializeOwned>(
    request: reqwest::RequestBuilder,
    what: &str,
) -> Result<T> {
    let bytes = answer_bytes(request).await?;
    serde_json::from_slice(&bytes)
        .map_err(|err| ClientError::Decode(format!("{what} answered an unexpected body: {err}")))
}

/// Sends `request` and answers its body whatever it is, if its status is 2xx.
pub(crate) async fn answer_bytes(request: reqwest::RequestBuilder) -> Result<bytes::Bytes> {
    let response = request.send().await?;
    let status = response.status();
    let bytes = response.bytes().await?;
    if status.is_success() {
        Ok(bytes)
    } else {
        Err(api_error(status, &bytes))
    }
}

/// A number's contact hash under the server's salt (`salt_hex`, from
/// [`HttpClient::contact_salt`]): SHA-256 over the salt's bytes followed by
/// the number's E.164 form, as 64 lower-case hex digits. None when the salt
/// is not hex. Normalise the number to E.164 first (`+8613800138000`):
/// another form hashes to something else.
pub fn contact_hash(salt_hex: &str, e164: &str) -> Option<String> {
    use sha2::Digest as _;
    if !salt_hex.len().is_multiple_of(2) || !salt_hex.is_ascii() {
        return None;
    }
    let salt = (0..salt_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&salt_hex[i..i + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    let mut digest = sha2::Sha256::new();
    digest.update(&salt);
    digest.update(e164.as_bytes());
    Some(
        digest
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

/// Reads the server's error body; a proxy or a crash may answer without one,
/// and the status alone must still reach the caller.
pub(crate) fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<superapp_api::ErrorBody>(body) {
        Ok(body) => ClientError::Api {
            status: status.as_u16(),
            code: body.code,
            message: body.message,
            retry_after_ms: body.retry_after_ms,
        },
        Err(_) => ClientError::Api {
            status: status.as_u16(),
            code: format!("http_{}", status.as_u16()),
            message: String::from_utf8_lossy(body).into_owned(),
            retry_after_ms: None,
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn an_error_body_becomes_an_api_error_with_its_code() {
        let err = api_error(
            StatusCode::TOO_MANY_REQUESTS,
            br#"{"code":"rate_limited","message":"slow down","retry_after_ms":250}"#,
        );
        assert_eq!(err.code(), Some("rate_limited"));
        assert_eq!(err.retry_after_ms(), Some(250));
        assert!(matches!(err, ClientError::Api { status: 429, .. }));
    }

    #[test]
    fn an_error_without_a_json_body_still_carries_the_status() {
        let err = api_error(StatusCode::BAD_GATEWAY, b"upstream down");
        assert_eq!(err.code(), Some("http_502"));
    }

    #[test]
    fn a_contact_hash_is_sha256_of_the_salt_bytes_then_the_number() {
        let hash = contact_hash(&"00".repeat(32), "+8613800138000").unwrap();
        assert_eq!(hash.len(), 64);
        assert_ne!(
            hash,
            contact_hash(&"01".repeat(32), "+8613800138000").unwrap()
        );
        assert_eq!(contact_hash("0", "+8613800138000"), None);
        assert_eq!(contact_hash("zz", "+8613800138000"), None);
    }

    #[test]
    fn a_trailing_slash_on_the_base_url_is_ignored() {
        assert_eq!(HttpClient::new("http://h:1/").base_url(), "http://h:1");
    }
}
