//! The `[calls]` section of the configuration.

use serde::{Deserialize, Serialize};
use superapp_kit::config::ConfigError;
use superapp_kit::secret::Secret;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallsConfig {
    /// The secret shared with the TURN server (coturn's
    /// `static-auth-secret` with `use-auth-secret`): credentials from
    /// `GET /v1/calls/turn` are HMACs under it. Unset (the default): the
    /// endpoint answers 503 `turn_unavailable`, and calls use only the
    /// STUN/host candidates the clients find themselves. Never printed.
    pub turn_secret: Option<Secret<String>>,
    /// The TURN server's URIs handed to clients with the credentials
    /// (`turn:turn.example.org:3478?transport=udp`, `turns:...:5349`).
    pub turn_uris: Vec<String>,
    /// How long TURN credentials stay valid, in seconds (60 to 86400). An
    /// allocation made with them lives on past it; only new ones need new
    /// credentials. An hour covers most calls, and a client asks again
    /// before each call.
    pub turn_ttl_secs: u64,
    /// How long a call rings before nobody answering makes it missed, in
    /// seconds (5 to 600).
    pub ring_timeout_secs: u64,
    /// Participants of one call, the caller included (2 to 9): group calls
    /// are a mesh, each participant sending its media to each other one,
    /// which a phone's uplink bears up to about nine.
    pub max_participants: u32,
    /// The longest a call may last, in seconds (60 to 86400; 4 hours by
    /// default): the server ends it then. It bounds a call whose devices
    /// all vanished without hanging up.
    pub max_call_secs: u64,
}

impl Default for CallsConfig {
    fn default() -> Self {
        Self {
            turn_secret: None,
            turn_uris: Vec::new(),
            turn_ttl_secs: 3600,
            ring_timeout_secs: 60,
            max_participants: 9,
            max_call_secs: 4 * 3600,
        }
    }
}

impl CallsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(60..=86_400).contains(&self.turn_ttl_secs) {
            return Err(ConfigError::invalid(
                "calls.turn_ttl_secs",
                "must be 60 to 86400",
            ));
        }
        if !(5..=600).contains(&self.ring_timeout_secs) {
            return Err(ConfigError::invalid(
                "calls.ring_timeout_secs",
                "must be 5 to 600",
            ));
        }
        if !(2..=9).contains(&self.max_participants) {
            return Err(ConfigError::invalid(
                "calls.max_participants",
                "must be 2 to 9",
            ));
        }
        if !(60..=86_400).contains(&self.max_call_secs) {
            return Err(ConfigError::invalid(
                "calls.max_call_secs",
                "must be 60 to 86400",
            ));
        }
        if self
            .turn_secret
            .as_ref()
            .is_some_and(|s| s.expose().len() < 16)
        {
            return Err(ConfigError::invalid(
                "calls.turn_secret",
                "must be at least 16 characters",
            ));
        }
        if (self.turn_uris.iter()).any(|u| !(u.starts_with("turn:") || u.starts_with("turns:"))) {
            return Err(ConfigError::invalid(
                "calls.turn_uris",
                "each must start with turn: or turns:",
            ));
        }
        Ok(())
    }
}
