//! The whole configuration of the `superapp` binary: the sections the binary
//! owns (`server`, `log`, `redis`) and those of the rooms (`auth`,
//! `account`, `social` and `real_name` from the account room, `gateway` from
//! the edge, `chat` and `calls` from the chat room, `media` from the media
//! room, `wallet` from the wallet), each with its doc comments, defaults and checks beside its code.
//! `deploy/superapp.example.toml` is generated from [`Config::default`] and a
//! test keeps it current.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use superapp_account::config::{
    AccountConfig, AuthConfig, NearbyConfig, RealNameConfig, SocialConfig,
};
use superapp_chat::calls::CallsConfig;
use superapp_chat::config::ChatConfig;
use superapp_gateway::config::GatewayConfig;
use superapp_kit::config::ConfigError;
use superapp_kit::secret::Secret;
use superapp_kit::tier_key::TierKey;
use superapp_media::config::MediaConfig;
use superapp_wallet::config::WalletConfig;

use anyhow::Context as _;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub log: LogConfig,
    pub auth: AuthConfig,
    pub account: AccountConfig,
    pub social: SocialConfig,
    pub real_name: RealNameConfig,
    pub nearby: NearbyConfig,
    pub gateway: GatewayConfig,
    pub chat: ChatConfig,
    pub media: MediaConfig,
    pub wallet: WalletConfig,

    pub calls: CallsConfig,
    pub redis: RedisConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/` of the Redis that carries the bus and, for the
    /// `gateway` and `core` roles, the requests between them. Unset (the
    /// default): the in-process bus, nothing to install. `rediss://` is TLS,
    /// checked against the system's roots (or the PEM file in the
    /// environment's SSL_CERT_FILE); `redis://user:password@host:port/` logs
    /// in as a Redis ACL user. It may hold a password, so it never prints.
    pub url: Option<Secret<String>>,
    /// How long a gateway waits for the core's answer, in milliseconds.
    pub request_timeout_ms: u64,
    /// Lifetime of a core's lease on a shard of conversations, in milliseconds;
    /// renewed every quarter of it, used until a third of it remains.
    pub lease_ttl_ms: u64,
    /// The key every process of the tier shares (base64 of at least 32
    /// bytes): every request and bus message the processes leave in Redis
    /// carries a tag under it, and one whose tag does not check is dropped.
    /// Required with `url`. Never printed.
    pub tier_key: Option<Secret<String>>,
    /// Most requests one list in Redis holds; beyond it the oldest are
    /// dropped (their callers time out and retry), so a shard no core
    /// serves cannot grow its list without bound.
    pub max_waiting_requests: usize,
}

impl RedisConfig {
    /// The tier key, read from `tier_key`.
    pub fn tier_key(&self) -> anyhow::Result<TierKey> {
        use base64::Engine as _;
        let encoded = self.tier_key.as_ref().context(
            "redis.tier_key is required with redis.url: give every process of the tier the \
             same key, e.g. SUPERAPP_REDIS__TIER_KEY=$(head -c 32 /dev/urandom | base64)",
        )?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.expose().trim())
            .context("redis.tier_key is not base64")?;
        TierKey::new(&bytes).map_err(|e| anyhow::anyhow!("redis.tier_key: {e}"))
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            request_timeout_ms: 10_000,
            lease_ttl_ms: 10_000,
            tier_key: None,
            max_waiting_requests: superapp_kit::rpc::DEFAULT_MAX_WAITING,
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
    /// Directory of the SQLite files, the token key and the real-name key;
    /// created if missing.
    pub data_dir: PathBuf,
    /// This process's node number (0 to 1023), part of every id it makes.
    pub node_id: u16,
    /// On shutdown, how long sessions get to drain before they are closed with 1012.
    pub shutdown_drain_ms: u64,
    /// Largest HTTP request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Longest wait for a complete request head, in milliseconds, counted from
    /// when the connection is ready for a request; so it also closes a
    /// keep-alive connection that sends nothing more (1 to 300000).
    pub header_read_timeout_ms: u64,
    /// An HTTP connection on which no byte moves either way for this long is
    /// closed, in milliseconds (1 to 3600000). WebSockets have their own
    /// heartbeats and `gateway.idle_timeout_secs` instead.
    pub idle_timeout_ms: u64,
    /// Longest time a request body may take to arrive in full after its head,
    /// in milliseconds; slower, the request is answered 408 `body_timeout`
    /// (1 to 600000).
    pub body_timeout_ms: u64,
    /// Open connections per process, WebSockets included; one more is closed
    /// as soon as it is accepted (1 to 10000000).
    pub max_connections: usize,
    /// Open connections per client address (an IPv4 address or an IPv6 /64),
    /// WebSockets included; one more is closed as soon as it is accepted
    /// (1 to `max_connections`). Behind a reverse proxy every client shares
    /// the proxy's address: raise it to `max_connections` there.
    pub max_connections_per_address: usize,
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
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            body_timeout_ms: 30_000,
            max_connections: 100_000,
            max_connections_per_address: 1_000,
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

impl Config {
    /// Defaults, then the TOML file if given, then `SUPERAPP_*` variables;
    /// then every section's checks.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let config: Config = superapp_kit::config::load(file)?;
        config.validate()?;
        Ok(config)
    }

    /// The defaults, then `text` as the TOML file, without the environment;
    /// then every section's checks. What [`Config::load`] makes of a file with
    /// these contents when no `SUPERAPP_*` variable is set.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Config = superapp_kit::config::from_toml(text)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.auth.validate()?;
        self.account.validate()?;
        self.real_name.validate()?;
        self.gateway.validate()?;
        self.chat.validate()?;
        self.media.validate()?;
        self.wallet.validate()?;

        self.calls.validate()?;
        self.social.validate()?;
        self.nearby.validate()?;
        if self.server.node_id > 1023 {
            return Err(ConfigError::invalid("server.node_id", "must be 0 to 1023"));
        }
        if !(1..=10_000_000).contains(&self.redis.max_waiting_requests) {
            return Err(ConfigError::invalid(
                "redis.max_waiting_requests",
                "must be 1 to 10,000,000",
            ));
        }
        if self.redis.url.is_some()
            && let Err(e) = self.redis.tier_key()
        {
            return Err(ConfigError::invalid("redis.tier_key", format!("{e:#}")));
        }
        if self.server.role != Role::All && self.redis.url.is_none() {
            return Err(ConfigError::invalid(
                "redis.url",
                "the gateway and core roles meet through Redis: set it",
            ));
        }
        if !(1_000..=600_000).contains(&self.redis.lease_ttl_ms) {
            return Err(ConfigError::invalid(
                "redis.lease_ttl_ms",
                "must be 1000 to 600000",
            ));
        }
        if !(1..=600_000).contains(&self.redis.request_timeout_ms) {
            return Err(ConfigError::invalid(
                "redis.request_timeout_ms",
                "must be 1 to 600000",
            ));
        }
        if self.server.shutdown_drain_ms > 600_000 {
            return Err(ConfigError::invalid(
                "server.shutdown_drain_ms",
                "must be at most 600000",
            ));
        }
        if !(1..=64 << 20).contains(&self.server.max_body_bytes) {
            return Err(ConfigError::invalid(
                "server.max_body_bytes",
                "must be 1 to 67108864",
            ));
        }
        let server = &self.server;
        for (key, value, max) in [
            (
                "server.header_read_timeout_ms",
                server.header_read_timeout_ms,
                300_000,
            ),
            ("server.idle_timeout_ms", server.idle_timeout_ms, 3_600_000),
            ("server.body_timeout_ms", server.body_timeout_ms, 600_000),
        ] {
            if !(1..=max).contains(&value) {
                return Err(ConfigError::invalid(key, format!("must be 1 to {max}")));
            }
        }
        if !(1..=10_000_000).contains(&server.max_connections) {
            return Err(ConfigError::invalid(
                "server.max_connections",
                "must be 1 to 10000000",
            ));
        }
        if !(1..=server.max_connections).contains(&server.max_connections_per_address) {
            return Err(ConfigError::invalid(
                "server.max_connections_per_address",
                "must be 1 to server.max_connections",
            ));
        }
        Ok(())
    }

    /// The commented TOML of the defaults, as shipped in `deploy/`.
    pub fn example_toml() -> String {
        let body = toml::to_string_pretty(&Config::default()).unwrap_or_default();
        format!(
            "# superapp configuration: every key with its default.\n\
             # Each key may also be set as SUPERAPP_<SECTION>__<KEY>, e.g. SUPERAPP_SERVER__LISTEN.\n\
             # Field documentation: src/config.rs (server, log, redis) and each room's\n\
             # config.rs (auth, account, social and real_name: account/, gateway: gateway/,\n\
             # chat: chat/, calls: chat/src/calls/, media: media/, wallet: wallet/).\n\
             # Generated; a test keeps it current.\n\n{body}"
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn a_room_s_check_refuses_the_whole() {
        let mut config = Config::default();
        config.auth.argon2_memory_kib = 1024;
        assert!(config.validate().is_err());
        let mut config = Config::default();
        config.gateway.idle_timeout_secs = config.gateway.heartbeat_secs;
        assert!(config.validate().is_err());
    }

    #[test]
    fn an_unknown_key_in_any_section_is_rejected_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        for (body, key) in [
            ("[server]\nlisten = \"127.0.0.1:9\"\nlisen = 1\n", "lisen"),
            ("[gateway]\nheartbeat = 3\n", "heartbeat"),
            ("[auth]\ntoken_keys = \"x\"\n", "token_keys"),
            ("[chat]\nmax_pull = 3\n", "max_pull"),
            ("[real_name]\nprovder = \"sandbox\"\n", "provder"),
            ("[account]\ndeletion_grace = 3600\n", "deletion_grace"),
            ("[sever]\n", "sever"),
        ] {
            std::fs::write(&file, body).unwrap();
            let err = Config::load(Some(&file)).unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
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
    fn values_too_large_for_their_clocks_are_refused_by_name() {
        type Case = (&'static str, fn(&mut Config));
        let cases: [Case; 20] = [
            ("auth.refresh_ttl_secs", |c| {
                c.auth.refresh_ttl_secs = u64::MAX
            }),
            ("auth.ticket_ttl_secs", |c| {
                c.auth.ticket_ttl_secs = u64::MAX
            }),
            ("auth.login_window_secs", |c| {
                c.auth.login_window_secs = u64::MAX
            }),
            ("auth.registration_window_secs", |c| {
                c.auth.registration_window_secs = u64::MAX
            }),
            ("auth.registrations_per_address", |c| {
                c.auth.registrations_per_address = u32::MAX
            }),
            ("auth.login_queue", |c| c.auth.login_queue = usize::MAX),
            ("auth.registration_queue", |c| {
                c.auth.registration_queue = usize::MAX
            }),
            ("gateway.heartbeat_secs", |c| {
                c.gateway.heartbeat_secs = u64::MAX
            }),
            ("gateway.idle_timeout_secs", |c| {
                c.gateway.idle_timeout_secs = u64::MAX
            }),
            ("gateway.write_timeout_secs", |c| {
                c.gateway.write_timeout_secs = u64::MAX
            }),
            ("gateway.close_reply_ms", |c| {
                c.gateway.close_reply_ms = u64::MAX
            }),
            ("gateway.request_queue", |c| {
                c.gateway.request_queue = usize::MAX
            }),
            ("redis.lease_ttl_ms", |c| c.redis.lease_ttl_ms = u64::MAX),
            ("redis.request_timeout_ms", |c| {
                c.redis.request_timeout_ms = u64::MAX
            }),
            ("server.shutdown_drain_ms", |c| {
                c.server.shutdown_drain_ms = u64::MAX
            }),
            ("server.header_read_timeout_ms", |c| {
                c.server.header_read_timeout_ms = u64::MAX
            }),
            ("server.idle_timeout_ms", |c| {
                c.server.idle_timeout_ms = u64::MAX
            }),
            ("server.body_timeout_ms", |c| {
                c.server.body_timeout_ms = u64::MAX
            }),
            ("server.max_connections", |c| {
                c.server.max_connections = usize::MAX
            }),
            ("server.max_connections_per_address", |c| {
                c.server.max_connections_per_address = c.server.max_connections + 1
            }),
        ];
        for (key, set) in cases {
            let mut config = Config::default();
            set(&mut config);
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn people_nearby_s_bounds_are_refused_by_name() {
        type Case = (&'static str, fn(&mut Config));
        let cases: [Case; 7] = [
            ("nearby.ttl_secs", |c| c.nearby.ttl_secs = 59),
            ("nearby.max_radius_m", |c| c.nearby.max_radius_m = 50_001),
            ("nearby.default_radius_m", |c| {
                c.nearby.default_radius_m = c.nearby.max_radius_m + 1
            }),
            ("nearby.max_results", |c| c.nearby.max_results = 0),
            ("nearby.default_results", |c| {
                c.nearby.default_results = c.nearby.max_results + 1
            }),
            ("nearby.moves_per_hour", |c| c.nearby.moves_per_hour = 0),
            ("nearby.queries_per_minute", |c| {
                c.nearby.queries_per_minute = 1_001
            }),
        ];
        for (key, set) in cases {
            let mut config = Config::default();
            set(&mut config);
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn redis_needs_a_tier_key_of_32_bytes() {
        let mut config = Config::default();
        config.redis.url = Some(Secret::new("redis://127.0.0.1:6379/".into()));
        let refused = |c: &Config| c.validate().unwrap_err().to_string();
        assert!(refused(&config).contains("redis.tier_key"));
        config.redis.tier_key = Some(Secret::new("c2hvcnQ=".into())); // "short"
        assert!(refused(&config).contains("at least 32 bytes"));
        config.redis.tier_key = Some(Secret::new("not base64!".into()));
        assert!(refused(&config).contains("base64"));
        config.redis.tier_key = Some(Secret::new(
            "dGhlIHRpZXIga2V5IG9mIHRoZSB0ZXN0IHByb2Nlc3M=".into(),
        ));
        config.validate().unwrap();
    }

    #[test]
    fn the_bound_of_a_request_list_is_refused_outside_its_range() {
        for bad in [0, 10_000_001] {
            let mut config = Config::default();
            config.redis.max_waiting_requests = bad;
            let refused = config.validate().unwrap_err().to_string();
            assert!(refused.contains("redis.max_waiting_requests"), "{refused}");
        }
    }

    #[test]
    fn the_split_roles_need_redis() {
        let mut config = Config::default();
        config.server.role = Role::Gateway;
        assert!(config.validate().is_err());
    }
}
