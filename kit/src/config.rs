//! The one typed configuration. Defaults run with nothing installed; a TOML file
//! and `SUPERAPP_<SECTION>__<KEY>` environment variables override them, in that
//! order. Unknown keys are rejected with a message that names them.
//! `deploy/superapp.example.toml` is generated from [`Config::default`] and a test
//! keeps it current.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format as _, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub log: LogConfig,
    pub auth: AuthConfig,
    pub gateway: GatewayConfig,
    pub chat: ChatConfig,
    pub redis: RedisConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/` of the Redis that carries the bus and, for the
    /// `gateway` and `core` roles, the requests between them. Unset (the
    /// default): the in-process bus, nothing to install. It may hold a password,
    /// so it never prints.
    pub url: Option<Secret<String>>,
    /// How long a gateway waits for the core's answer, in milliseconds.
    pub request_timeout_ms: u64,
    /// Lifetime of a core's lease on a shard of conversations, in milliseconds;
    /// renewed every quarter of it, used until a third of it remains.
    pub lease_ttl_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            request_timeout_ms: 10_000,
            lease_ttl_ms: 10_000,
        }
    }
}

/// What this process runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything in one process (the small tier).
    #[default]
    All,
    /// WebSocket sessions only; requests go to the core over Redis.
    Gateway,
    /// The services and the HTTP API; answers gateways' requests from Redis.
    Core,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// `all` (one process), `gateway` (sessions) or `core` (services, HTTP API).
    pub role: Role,
    /// Address the HTTP API and WebSocket listen on. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Directory of the SQLite files and the token key; created if missing.
    pub data_dir: PathBuf,
    /// This process's node number (0 to 1023), part of every id it makes.
    pub node_id: u16,
    /// On shutdown, how long sessions get to drain before they are closed with 1012.
    pub shutdown_drain_ms: u64,
    /// Largest HTTP request body accepted, in bytes.
    pub max_body_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            role: Role::All,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            node_id: 0,
            shutdown_drain_ms: 500,
            max_body_bytes: 64 * 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// "pretty" for people, "json" for log collectors.
    pub format: LogFormat,
    /// A tracing filter, e.g. "info" or "superapp_gateway=debug,info". `RUST_LOG` wins.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            filter: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Base64 key (at least 32 bytes) that signs access tokens. When unset, a key is
    /// generated on first start and kept in `<data_dir>/token.key`, owner-only.
    pub token_key: Option<Secret<String>>,
    /// Lifetime of an access token, in seconds (at most 900).
    pub access_ttl_secs: u64,
    /// Lifetime of a session (refresh-token family) from log-in, in seconds. Each
    /// refresh issues a new token but does not extend the session.
    pub refresh_ttl_secs: u64,
    /// argon2id memory cost in KiB (at least 19456, the OWASP minimum).
    pub argon2_memory_kib: u32,
    /// argon2id passes (at least 2).
    pub argon2_iterations: u32,
    /// Failed logins allowed per account within `login_window_secs`.
    pub login_failures_per_account: u32,
    /// Failed logins allowed per client address within `login_window_secs`.
    pub login_failures_per_address: u32,
    /// The window of the failed-login throttle, in seconds.
    pub login_window_secs: u64,
    /// Lifetime of a browser WebSocket ticket, in seconds.
    pub ticket_ttl_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            token_key: None,
            access_ttl_secs: 900,
            refresh_ttl_secs: 30 * 24 * 3600,
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            login_failures_per_account: 5,
            login_failures_per_address: 50,
            login_window_secs: 900,
            ticket_ttl_secs: 30,
        }
    }
}

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
    pub write_timeout_secs: u64,
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
            presence_ttl_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    /// Largest page a client may pull at once.
    pub max_pull_page: u32,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self { max_pull_page: 500 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Load(#[from] Box<figment::Error>),
    #[error("invalid setting {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl Config {
    /// Defaults, then the TOML file if given, then `SUPERAPP_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Invalid {
                    key: "--config",
                    reason: format!("{} does not exist", file.display()),
                });
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        figment = figment.merge(Env::prefixed("SUPERAPP_").split("__"));
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_string(),
            })
        };
        if self.auth.access_ttl_secs == 0 || self.auth.access_ttl_secs > 900 {
            return invalid("auth.access_ttl_secs", "must be 1 to 900");
        }
        if self.auth.argon2_memory_kib < 19 * 1024 {
            return invalid("auth.argon2_memory_kib", "must be at least 19456 (OWASP)");
        }
        if self.auth.argon2_iterations < 2 {
            return invalid("auth.argon2_iterations", "must be at least 2 (OWASP)");
        }
        if self.server.node_id > 1023 {
            return invalid("server.node_id", "must be 0 to 1023");
        }
        if self.gateway.max_frame_bytes == 0 || self.gateway.outbound_queue == 0 {
            return invalid(
                "gateway",
                "max_frame_bytes and outbound_queue must be positive",
            );
        }
        if self.server.role != Role::All && self.redis.url.is_none() {
            return invalid(
                "redis.url",
                "the gateway and core roles meet through Redis: set it",
            );
        }
        if self.redis.lease_ttl_ms < 1_000 {
            return invalid("redis.lease_ttl_ms", "must be at least 1000");
        }
        if !(1..=1000).contains(&self.chat.max_pull_page) {
            return invalid("chat.max_pull_page", "must be 1 to 1000");
        }
        if self.gateway.idle_timeout_secs <= self.gateway.heartbeat_secs {
            return invalid(
                "gateway.idle_timeout_secs",
                "must exceed heartbeat_secs, or clients that only answer pings are closed",
            );
        }
        if self.gateway.rate_per_sec == 0 || self.gateway.user_rate_per_sec == 0 {
            return invalid("gateway", "rates must be positive");
        }
        Ok(())
    }

    /// The commented TOML of the defaults, as shipped in `deploy/`.
    pub fn example_toml() -> String {
        let body = toml::to_string_pretty(&Config::default()).unwrap_or_default();
        format!(
            "# superapp configuration: every key with its default.\n\
             # Each key may also be set as SUPERAPP_<SECTION>__<KEY>, e.g. SUPERAPP_SERVER__LISTEN.\n\
             # Field documentation: kit/src/config.rs. Generated; a test keeps it current.\n\n{body}"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn an_unknown_key_is_rejected_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[server]\nlisten = \"127.0.0.1:9\"\nlisen = 1\n").unwrap();
        let err = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn the_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[gateway]\nheartbeat_secs = 3\n").unwrap();
        let config = Config::load(Some(&file)).unwrap();
        assert_eq!(config.gateway.heartbeat_secs, 3);
        assert_eq!(config.gateway.idle_timeout_secs, 75);
    }

    #[test]
    fn weak_password_hashing_is_refused() {
        let mut config = Config::default();
        config.auth.argon2_memory_kib = 1024;
        assert!(config.validate().is_err());
    }
}
