//! The one error type of the SDK.

use tokio_tungstenite::tungstenite;

/// Everything a client call can fail with. Callers branch on [`ClientError::code`]
/// for the server's stable snake_case codes, and on the variant for local causes.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The HTTP API answered with a non-2xx status (also used when a WebSocket
    /// upgrade is refused, e.g. 401 for a bad token).
    #[error("{code} (HTTP {status}): {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        retry_after_ms: Option<u64>,
    },
    /// A WebSocket request was answered with an `Error` response.
    #[error("{code}: {message}")]
    Server {
        code: String,
        message: String,
        retry_after_ms: Option<u64>,
    },
    /// The WebSocket ended before the request was answered. `code` is the
    /// server's close code when it sent one (e.g. 4008 slow consumer).
    #[error("connection closed (code {code:?}): {reason}")]
    Closed { code: Option<u16>, reason: String },
    /// No response within the request timeout.
    #[error("no response within {0:?}")]
    Timeout(std::time::Duration),
    #[error("http transport: {0}")]
    Http(#[from] reqwest::Error),
    /// Boxed because tungstenite's error is large and would bloat every `Result`.
    #[error("websocket: {0}")]
    WebSocket(Box<tungstenite::Error>),
    #[error("invalid server url {0:?}: expected http:// or https://")]
    Url(String),
    /// Reading or writing a local file (an upload's source, a download's
    /// destination).
    #[error("local file: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent something this client cannot understand.
    #[error("unexpected reply: {0}")]
    Decode(String),
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

impl ClientError {
    /// The server's stable code, when the server refused the call.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } | ClientError::Server { code, .. } => Some(code),
            _ => None,
        }
    }

    /// How long the server asked us to wait before retrying, if it did.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            ClientError::Api { retry_after_ms, .. }
            | ClientError::Server { retry_after_ms, .. } => *retry_after_ms,
            _ => None,
        }
    }
}

impl From<tungstenite::Error> for ClientError {
    fn from(err: tungstenite::Error) -> Self {
        ClientError::WebSocket(Box::new(err))
    }
}
