//! The JSON API: accounts, sessions and WebSocket tickets.

use crate::error::{ClientError, Result};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use serde_with::{DisplayFromStr, PickFirst, Same, serde_as};
use std::fmt;
use std::time::Duration;

/// Long enough for a slow password hash on a busy server, short enough that a
/// dead server does not hang a script.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `#[serde_as(as = "U64AsString")]` for u64 ids, which the API writes as JSON
/// strings so JavaScript clients keep all 64 bits (their numbers lose
/// precision above 2^53). Reading also accepts a plain number, so a server
/// that sends one is not a hard failure; `Vec<U64AsString>` for lists of ids.
pub type U64AsString = PickFirst<(DisplayFromStr, Same)>;

#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    #[serde_as(as = "U64AsString")]
    pub user_id: u64,
    pub phone: String,
    pub display_name: String,
    pub created_at_ms: i64,
}

/// A session's token pair. Refreshing returns a new pair and kills the old
/// refresh token, so whoever stores this must save every new pair.
#[serde_as]
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    #[serde_as(as = "U64AsString")]
    pub user_id: u64,
    #[serde_as(as = "U64AsString")]
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

/// A single-use WebSocket ticket, for clients (browsers) that cannot set headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub ticket: String,
    pub expires_at_ms: i64,
}

/// Whether a user is online, on how many devices, and when last seen.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    #[serde_as(as = "U64AsString")]
    pub user_id: u64,
    pub online: bool,
    pub devices: u32,
    pub last_seen_ms: Option<i64>,
}

/// A group as its member sees it.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    #[serde_as(as = "U64AsString")]
    pub group_id: u64,
    /// `g.<group_id>`: where its messages go over the WebSocket.
    pub conversation_id: String,
    pub name: String,
    pub avatar: String,
    pub announcement: String,
    #[serde_as(as = "U64AsString")]
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
}

/// Who an invitation added at once, and who waits for an admin's approval.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupJoin {
    #[serde_as(as = "Vec<U64AsString>")]
    pub added: Vec<u64>,
    #[serde_as(as = "Vec<U64AsString>")]
    pub pending: Vec<u64>,
}

/// The body of every non-2xx answer.
#[derive(Deserialize)]
struct ApiErrorBody {
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    retry_after_ms: Option<u64>,
}

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
        // `Client::new` only panics when a TLS backend fails to initialise, and
        // this crate compiles none in.
        HttpClient {
            base_url,
            http: reqwest::Client::new(),
        }
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
        let body = json!({ "phone": phone, "password": password, "display_name": display_name });
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
        let mut body = json!({ "phone": phone, "password": password });
        if let Some(name) = device_name {
            body["device_name"] = json!(name);
        }
        self.call(Method::POST, "/v1/sessions", None, Some(&body))
            .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens> {
        let body = json!({ "refresh_token": refresh_token });
        self.call(Method::POST, "/v1/sessions/refresh", None, Some(&body))
            .await
    }

    pub async fn logout(&self, access_token: &str) -> Result<()> {
        self.send(
            Method::DELETE,
            "/v1/sessions/current",
            Some(access_token),
            None,
        )
        .await
        .map(drop)
    }

    pub async fn me(&self, access_token: &str) -> Result<Account> {
        self.call(Method::GET, "/v1/me", Some(access_token), None)
            .await
    }

    pub async fn presence(&self, access_token: &str, user_id: u64) -> Result<Presence> {
        let path = format!("/v1/users/{user_id}/presence");
        self.call(Method::GET, &path, Some(access_token), None)
            .await
    }

    /// Creates a group owned by the caller, with these first members.
    pub async fn create_group(
        &self,
        access_token: &str,
        name: &str,
        members: &[u64],
    ) -> Result<Group> {
        let members: Vec<String> = members.iter().map(u64::to_string).collect();
        let body = json!({ "name": name, "members": members });
        self.call(Method::POST, "/v1/groups", Some(access_token), Some(&body))
            .await
    }

    pub async fn group(&self, access_token: &str, group_id: u64) -> Result<Group> {
        let path = format!("/v1/groups/{group_id}");
        self.call(Method::GET, &path, Some(access_token), None)
            .await
    }

    /// Invites users into a group: added at once, or pending approval.
    pub async fn add_group_members(
        &self,
        access_token: &str,
        group_id: u64,
        members: &[u64],
    ) -> Result<GroupJoin> {
        let members: Vec<String> = members.iter().map(u64::to_string).collect();
        let path = format!("/v1/groups/{group_id}/members");
        let body = json!({ "members": members });
        self.call(Method::POST, &path, Some(access_token), Some(&body))
            .await
    }

    pub async fn ws_ticket(&self, access_token: &str) -> Result<Ticket> {
        self.call(Method::POST, "/v1/ws-tickets", Some(access_token), None)
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

    fn start(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
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

    /// Sends a request and turns a non-2xx answer into [`ClientError::Api`].
    async fn send(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> Result<bytes::Bytes> {
        let response = self.start(method, path, bearer, body).send().await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        if status.is_success() {
            Ok(bytes)
        } else {
            Err(api_error(status, &bytes))
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> Result<T> {
        let bytes = self.send(method, path, bearer, body).await?;
        serde_json::from_slice(&bytes).map_err(|err| {
            ClientError::Decode(format!("{path} answered an unexpected body: {err}"))
        })
    }
}

/// Reads the server's error body; a proxy or a crash may answer without one,
/// and the status alone must still reach the caller.
pub(crate) fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ApiErrorBody>(body) {
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

    #[serde_as]
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Id {
        #[serde_as(as = "U64AsString")]
        id: u64,
    }

    #[test]
    fn an_id_is_written_as_a_string_with_every_digit() {
        let json = serde_json::to_string(&Id { id: u64::MAX }).unwrap();
        assert_eq!(json, r#"{"id":"18446744073709551615"}"#);
    }

    #[test]
    fn an_id_reads_back_from_a_string() {
        let id: Id = serde_json::from_str(r#"{"id":"123456789012345678"}"#).unwrap();
        assert_eq!(id.id, 123_456_789_012_345_678);
    }

    #[test]
    fn a_plain_number_is_accepted_too() {
        let id: Id = serde_json::from_str(r#"{"id":42}"#).unwrap();
        assert_eq!(id.id, 42);
    }

    #[test]
    fn a_string_that_is_not_a_number_is_rejected() {
        assert!(serde_json::from_str::<Id>(r#"{"id":"12a"}"#).is_err());
        assert!(serde_json::from_str::<Id>(r#"{"id":"-1"}"#).is_err());
        assert!(serde_json::from_str::<Id>(r#"{"id":-1}"#).is_err());
    }

    #[test]
    fn lists_of_ids_are_written_as_strings_and_read_from_numbers_too() {
        let join: GroupJoin = serde_json::from_str(r#"{"added":["1",2],"pending":[]}"#).unwrap();
        assert_eq!(join.added, [1, 2]);
        let back = serde_json::to_string(&join).unwrap();
        assert_eq!(back, r#"{"added":["1","2"],"pending":[]}"#);
    }

    #[test]
    fn tokens_read_their_ids_from_strings_and_write_them_back_as_strings() {
        let json = r#"{"user_id":"123456789012345678","session_id":"9","access_token":"a",
            "access_expires_at_ms":1,"refresh_token":"r","refresh_expires_at_ms":2}"#;
        let tokens: Tokens = serde_json::from_str(json).unwrap();
        assert_eq!(tokens.user_id, 123_456_789_012_345_678);
        assert_eq!(tokens.session_id, 9);
        let back = serde_json::to_value(&tokens).unwrap();
        assert_eq!(back["user_id"], "123456789012345678");
        assert_eq!(back["session_id"], "9");
    }

    #[test]
    fn debug_output_of_tokens_never_shows_the_secrets() {
        let tokens = Tokens {
            user_id: 1,
            session_id: 2,
            access_token: "secret-access".into(),
            access_expires_at_ms: 0,
            refresh_token: "secret-refresh".into(),
            refresh_expires_at_ms: 0,
        };
        let shown = format!("{tokens:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }

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
    fn a_trailing_slash_on_the_base_url_is_ignored() {
        assert_eq!(HttpClient::new("http://h:1/").base_url(), "http://h:1");
    }
}
