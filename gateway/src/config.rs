//! The `[gateway]` section of the configuration: its keys, defaults and
//! checks. The binary assembles the whole configuration from the rooms'
//! sections.

use serde::{Deserialize, Serialize};
use superapp_kit::config::ConfigError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// The server pings each session this often, in seconds.
    pub heartbeat_secs: u64,
    /// A session that sends nothing (not even a pong) for this long is closed.
    pub idle_timeout_secs: u64,
    /// Largest WebSocket message accepted; larger ones close the session with 1009.
    pub max_frame_bytes: usize,
    /// Frames waiting to be written to one session; when full the session is a slow
    /// consumer and is closed with 4008.
    pub outbound_queue: usize,
    /// Requests of one session waiting to be answered, at most; one more is
    /// refused at once with `request_queue_full`. A session answers its
    /// requests in order while it goes on delivering events.
    pub request_queue: usize,
    /// Requests per second a session may make, sustained.
    pub rate_per_sec: u32,
    /// Requests a session may make in a burst above the sustained rate.
    pub rate_burst: u32,
    /// Requests refused for rate in a row before the session is closed with 1008.
    pub rate_abuse_limit: u32,
    /// Requests per second one user may make across all sessions, sustained.
    pub user_rate_per_sec: u32,
    /// Per-connection WebSocket read buffer, bytes. tungstenite's default is 128 KiB; it
    /// grows for a larger frame, so a small start keeps an idle session cheap.
    pub read_buffer_bytes: usize,
    /// Per-connection WebSocket write buffer target, bytes.
    pub write_buffer_bytes: usize,
    /// A write to a session that takes longer than this closes it as a slow consumer.
    /// A closing session also has this long to write its close frame.
    pub write_timeout_secs: u64,
    /// Once its close frame is written, a closing session reads (and drops) the
    /// client's frames for at most this long, in milliseconds, waiting for the
    /// client's close reply; then it drops the connection. Reading them first
    /// keeps the kernel from resetting the connection over unread bytes, which
    /// could discard the close frame before the client reads it.
    pub close_reply_ms: u64,
    /// A session counts as online this long after its gateway last refreshed it
    /// (every third of this); bounds how long a crashed gateway's users look online.
    pub presence_ttl_secs: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            heartbeat_secs: 25,
            idle_timeout_secs: 75,
            max_frame_bytes: 64 * 1024,
            outbound_queue: 256,
            request_queue: 32,
            rate_per_sec: 100,
            rate_burst: 200,
            rate_abuse_limit: 100,
            user_rate_per_sec: 300,
            read_buffer_bytes: 2 * 1024,
            write_buffer_bytes: 4 * 1024,
            write_timeout_secs: 10,
            close_reply_ms: 2_000,
            presence_ttl_secs: 30,
        }
    }
}

impl GatewayConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bounded: [(&'static str, u64, u64); 9] = [
            ("gateway.heartbeat_secs", self.heartbeat_secs, 3_600),
            ("gateway.idle_timeout_secs", self.idle_timeout_secs, 86_400),
            ("gateway.write_timeout_secs", self.write_timeout_secs, 300),
            ("gateway.close_reply_ms", self.close_reply_ms, 60_000),
            ("gateway.presence_ttl_secs", self.presence_ttl_secs, 3_600),
            ("gateway.outbound_queue", self.outbound_queue as u64, 65_536),
            ("gateway.request_queue", self.request_queue as u64, 1_024),
            (
                "gateway.max_frame_bytes",
                self.max_frame_bytes as u64,
                16 << 20,
            ),
            (
                "gateway.read_buffer_bytes",
                self.read_buffer_bytes as u64,
                16 << 20,
            ),
        ];
        for (key, value, max) in bounded {
            if value == 0 || value > max {
                return Err(ConfigError::invalid(key, format!("must be 1 to {max}")));
            }
        }
        if self.write_buffer_bytes > 16 << 20 {
            return Err(ConfigError::invalid(
                "gateway.write_buffer_bytes",
                "must be at most 16777216",
            ));
        }
        if self.max_frame_bytes == 0 || self.outbound_queue == 0 || self.request_queue == 0 {
            return Err(ConfigError::invalid(
                "gateway",
                "max_frame_bytes, outbound_queue and request_queue must be positive",
            ));
        }
        if self.idle_timeout_secs <= self.heartbeat_secs {
            return Err(ConfigError::invalid(
                "gateway.idle_timeout_secs",
                "must exceed heartbeat_secs, or clients that only answer pings are closed",
            ));
        }
        if self.rate_per_sec == 0 || self.user_rate_per_sec == 0 {
            return Err(ConfigError::invalid("gateway", "rates must be positive"));
        }
        Ok(())
    }
}
