//! WebSocket close codes the server sends (docs/protocol.md lists them for clients).

/// The client or server ended the session normally.
pub const NORMAL: u16 = 1000;
/// A text frame: the protocol is binary protobuf only.
pub const UNSUPPORTED_DATA: u16 = 1003;
/// A binary frame that is not a valid `ClientFrame`.
pub const INVALID_FRAME: u16 = 1007;
/// Persistent abuse of the rate limit.
pub const POLICY_VIOLATION: u16 = 1008;
/// A message larger than the frame limit (64 KiB by default).
pub const TOO_BIG: u16 = 1009;
/// The server is shutting down or restarting; reconnect with backoff.
pub const SERVICE_RESTART: u16 = 1012;
/// The core could not be asked about the new session; reconnect with backoff.
pub const TRY_AGAIN_LATER: u16 = 1013;
/// Nothing arrived from the client within the idle timeout.
pub const IDLE_TIMEOUT: u16 = 4000;
/// The session was logged out or revoked; log in again.
pub const SESSION_REVOKED: u16 = 4001;
/// The client did not keep up with its events; reconnect and resync.
pub const SLOW_CONSUMER: u16 = 4008;

pub fn reason(code: u16) -> &'static str {
    match code {
        NORMAL => "bye",
        UNSUPPORTED_DATA => "text frames are not supported",
        INVALID_FRAME => "undecodable frame",
        POLICY_VIOLATION => "rate limit abused",
        TOO_BIG => "frame too big",
        SERVICE_RESTART => "server restarting",
        TRY_AGAIN_LATER => "try again later",
        IDLE_TIMEOUT => "idle timeout",
        SESSION_REVOKED => "session revoked",
        SLOW_CONSUMER => "slow consumer: resync",
        _ => "closed",
    }
}
