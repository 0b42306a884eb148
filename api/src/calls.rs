//! Calls' HTTP API: credentials for the TURN server
//! (`GET /v1/calls/turn`). The calls themselves are signaled over the
//! WebSocket (docs/protocol.md §2.7).

use serde::{Deserialize, Serialize};

/// `GET /v1/calls/turn`: time-limited credentials for the TURN server, as
/// the TURN REST API convention (coturn's `use-auth-secret`) has them. Hand
/// them to `RTCPeerConnection` as an `iceServers` entry.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TurnCredentials {
    /// `<expiry, unix seconds>:<user id>`.
    pub username: String,
    /// base64(HMAC-SHA1(the TURN secret, username)).
    pub credential: String,
    /// Seconds the credentials stay valid from now.
    pub ttl_secs: u64,
    /// The TURN server's URIs (`turn:host:3478?transport=udp`, ...).
    pub uris: Vec<String>,
}

/// The credential is a password: its `Debug` form does not hold it.
impl std::fmt::Debug for TurnCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnCredentials")
            .field("username", &self.username)
            .field("credential", &"[redacted]")
            .field("ttl_secs", &self.ttl_secs)
            .field("uris", &self.uris)
            .finish()
    }
}
