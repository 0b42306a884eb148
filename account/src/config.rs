//! The account room's sections of the configuration, `[auth]`, `[account]`,
//! `[social]` and `[real_name]`: their keys, defaults and checks. The binary assembles
//! the whole configuration from the rooms' sections.

use serde::{Deserialize, Serialize};
use superapp_kit::config::ConfigError;
use superapp_kit::secret::Secret;

use crate::model::{WhoMayAddMe, WhoMayMessage};
use crate::policy::SocialLimits;
use crate::seal::RealNameKey;
use crate::token::{TokenSigner, TokenVerifier};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The core's private key that signs access tokens: base64 of a 32-byte
    /// Ed25519 seed. When unset, a seed is generated on first start and kept in
    /// `<data_dir>/token.key`, owner-only. Never give it to a gateway: a
    /// gateway holding it is refused at start.
    pub token_key: Option<Secret<String>>,
    /// The public key that verifies access tokens: base64 of 32 bytes, as the
    /// core logs it at start and `superapp token-public-key` prints it. On a
    /// gateway, it lets the gateway verify tokens itself at the handshake; on
    /// a core, it must match the core's own key. Unset: gateways ask the core.
    pub token_public_key: Option<String>,
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
    /// Registrations allowed per client address (an IPv4 address or an IPv6
    /// /64) within `registration_window_secs`, counted before hashing, taken or
    /// not (1 to 1000000).
    pub registrations_per_address: u32,
    /// The window of the registration throttle, in seconds (1 to 604800).
    pub registration_window_secs: u64,
    /// Log-ins that may wait for a hashing slot; one more is answered `busy`
    /// at once, before any hashing (1 to 10000).
    pub login_queue: usize,
    /// Registrations that may wait for their share of the hashing slots; one
    /// more is answered `busy` at once, before any hashing (1 to 10000).
    pub registration_queue: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            token_key: None,
            token_public_key: None,
            access_ttl_secs: 900,
            refresh_ttl_secs: 30 * 24 * 3600,
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            login_failures_per_account: 5,
            login_failures_per_address: 50,
            login_window_secs: 900,
            ticket_ttl_secs: 30,
            registrations_per_address: 10,
            registration_window_secs: 3600,
            login_queue: 64,
            registration_queue: 16,
        }
    }
}

impl AuthConfig {
    /// The access-token lifetime, which also bounds the lifetime a verifier
    /// accepts.
    pub fn access_ttl_ms(&self) -> i64 {
        (self.access_ttl_secs.min(900) * 1000) as i64
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(key) = &self.token_key {
            TokenSigner::from_base64(key.expose(), self.access_ttl_ms()).map_err(|e| {
                ConfigError::invalid(
                    "auth.token_key",
                    format!("{e}: base64 of a 32-byte Ed25519 seed"),
                )
            })?;
        }
        if let Some(key) = &self.token_public_key {
            TokenVerifier::from_base64(key, self.access_ttl_ms()).map_err(|e| {
                ConfigError::invalid(
                    "auth.token_public_key",
                    format!("{e}: base64 of a 32-byte Ed25519 public key"),
                )
            })?;
        }
        if self.access_ttl_secs == 0 || self.access_ttl_secs > 900 {
            return Err(ConfigError::invalid(
                "auth.access_ttl_secs",
                "must be 1 to 900",
            ));
        }
        if self.argon2_memory_kib < 19 * 1024 {
            return Err(ConfigError::invalid(
                "auth.argon2_memory_kib",
                "must be at least 19456 (OWASP)",
            ));
        }
        // Upper bounds keep every lifetime's milliseconds far inside an i64.
        if self.refresh_ttl_secs == 0 || self.refresh_ttl_secs > 366 * 24 * 3600 {
            return Err(ConfigError::invalid(
                "auth.refresh_ttl_secs",
                "must be 1 to 31622400 (a year)",
            ));
        }
        if !(1..=300).contains(&self.ticket_ttl_secs) {
            return Err(ConfigError::invalid(
                "auth.ticket_ttl_secs",
                "must be 1 to 300",
            ));
        }
        if !(1..=24 * 3600).contains(&self.login_window_secs) {
            return Err(ConfigError::invalid(
                "auth.login_window_secs",
                "must be 1 to 86400",
            ));
        }
        if !(1..=1_000_000).contains(&self.registrations_per_address) {
            return Err(ConfigError::invalid(
                "auth.registrations_per_address",
                "must be 1 to 1000000",
            ));
        }
        if !(1..=7 * 24 * 3600).contains(&self.registration_window_secs) {
            return Err(ConfigError::invalid(
                "auth.registration_window_secs",
                "must be 1 to 604800 (a week)",
            ));
        }
        if !(1..=10_000).contains(&self.login_queue) {
            return Err(ConfigError::invalid(
                "auth.login_queue",
                "must be 1 to 10000",
            ));
        }
        if !(1..=10_000).contains(&self.registration_queue) {
            return Err(ConfigError::invalid(
                "auth.registration_queue",
                "must be 1 to 10000",
            ));
        }
        if self.argon2_iterations < 2 {
            return Err(ConfigError::invalid(
                "auth.argon2_iterations",
                "must be at least 2 (OWASP)",
            ));
        }
        Ok(())
    }
}

/// Which verification provider checks real-name submissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// The sandbox (`account/src/sandbox.rs`): consults no registry and
    /// verifies every well-formed number but those of a few sequence codes
    /// kept for tests. For development and demonstrations only.
    Sandbox,
    /// No provider: submissions are answered `real_name_unavailable`.
    Disabled,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RealNameConfig {
    /// The key that seals ID numbers and legal names in the store and keys
    /// their lookup hashes: base64 of 32 random bytes. When unset, one is
    /// generated on first start and kept in `<data_dir>/real_name.key`,
    /// owner-only. Losing it loses every stored number and name (statuses
    /// stay); never printed.
    pub key: Option<Secret<String>>,
    /// `sandbox` (the default, for development: see docs/architecture.md)
    /// or `disabled`.
    pub provider: ProviderKind,
    /// Real-name submissions one user may make in any 24 hours, counted
    /// before the provider is asked (1 to 100).
    pub submissions_per_day: u32,
    /// How long a submission waits for the provider's answer before it is
    /// answered as pending, in milliseconds (100 to 60000).
    pub provider_timeout_ms: u64,
}

impl Default for RealNameConfig {
    fn default() -> Self {
        Self {
            key: None,
            provider: ProviderKind::Sandbox,
            submissions_per_day: 3,
            provider_timeout_ms: 10_000,
        }
    }
}

impl RealNameConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(key) = &self.key {
            RealNameKey::from_base64(key.expose()).map_err(|e| {
                ConfigError::invalid("real_name.key", format!("{e}: base64 of 32 random bytes"))
            })?;
        }
        if !(1..=100).contains(&self.submissions_per_day) {
            return Err(ConfigError::invalid(
                "real_name.submissions_per_day",
                "must be 1 to 100",
            ));
        }
        if !(100..=60_000).contains(&self.provider_timeout_ms) {
            return Err(ConfigError::invalid(
                "real_name.provider_timeout_ms",
                "must be 100 to 60000",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn weak_password_hashing_is_refused() {
        assert!(AuthConfig::default().validate().is_ok());
        let config = AuthConfig {
            argon2_memory_kib: 1024,
            ..AuthConfig::default()
        };
        assert!(config.validate().is_err());
    }

    #[test]
    fn keys_that_are_not_32_bytes_of_base64_are_refused_by_name() {
        // 36 bytes, as an HMAC key of the retired format could be.
        let long = "c2hhcmVkIGJ5IHRoZSBjb3JlIGFuZCBpdHMgZ2F0ZXdheXMh".to_string();
        let config = AuthConfig {
            token_key: Some(Secret::new(long.clone())),
            ..AuthConfig::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("auth.token_key") && err.contains("32 bytes"),
            "{err}"
        );
        let config = AuthConfig {
            token_public_key: Some(long),
            ..AuthConfig::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("auth.token_public_key"), "{err}");
        let config = AuthConfig {
            token_key: Some(Secret::new(
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
            )),
            ..AuthConfig::default()
        };
        assert!(config.validate().is_ok());
    }

    #[test]
    fn real_name_keys_and_limits_out_of_bounds_are_refused_by_name() {
        assert!(RealNameConfig::default().validate().is_ok());
        let refused = |config: RealNameConfig| config.validate().unwrap_err().to_string();
        let short = RealNameConfig {
            key: Some(Secret::new("c2hvcnQ=".into())),
            ..RealNameConfig::default()
        };
        let err = refused(short);
        assert!(err.contains("real_name.key") && err.contains("32"), "{err}");
        let none = RealNameConfig {
            submissions_per_day: 0,
            ..RealNameConfig::default()
        };
        assert!(refused(none).contains("real_name.submissions_per_day"));
        let slow = RealNameConfig {
            provider_timeout_ms: 600_000,
            ..RealNameConfig::default()
        };
        assert!(refused(slow).contains("real_name.provider_timeout_ms"));
        let given = RealNameConfig {
            key: Some(Secret::new(
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
            )),
            provider: ProviderKind::Disabled,
            ..RealNameConfig::default()
        };
        assert!(given.validate().is_ok());
    }
}

/// The `[social]` section: the social graph's defaults and limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SocialConfig {
    /// Who may send one-to-one messages to a user who has not chosen:
    /// `friends` (the default, as in WeChat) or `anyone`.
    pub who_may_message: WhoMayMessage,
    /// Who may add a user who has not chosen to a group without asking:
    /// `friends` (the default, as in WeChat), `anyone` not blocked, or
    /// nobody (`invite`). Anyone else's addition is an invitation.
    pub who_may_add_me: WhoMayAddMe,
    /// Friends one user may have (1 to 100000).
    pub max_friends: u32,
    /// Friend requests one user may send in any 24 hours (1 to 10000).
    pub friend_requests_per_day: u32,
}

impl Default for SocialConfig {
    fn default() -> Self {
        let limits = SocialLimits::default();
        Self {
            who_may_message: WhoMayMessage::Friends,
            who_may_add_me: WhoMayAddMe::Friends,
            max_friends: limits.max_friends,
            friend_requests_per_day: limits.requests_per_day,
        }
    }
}

impl SocialConfig {
    pub fn limits(&self) -> SocialLimits {
        SocialLimits {
            max_friends: self.max_friends,
            requests_per_day: self.friend_requests_per_day,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=100_000).contains(&self.max_friends) {
            return Err(ConfigError::invalid(
                "social.max_friends",
                "must be 1 to 100000",
            ));
        }
        if !(1..=10_000).contains(&self.friend_requests_per_day) {
            return Err(ConfigError::invalid(
                "social.friend_requests_per_day",
                "must be 1 to 10000",
            ));
        }
        Ok(())
    }
}

/// The `[account]` section: an account's life after its owner asks to
/// delete it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountConfig {
    /// How long an account whose deletion was asked stays restorable
    /// (deactivated: signed out everywhere, unreachable) before it is
    /// erased, in seconds (3600 to 7776000, an hour to 90 days).
    pub deletion_grace_secs: u64,
    /// How often the sweep looks for accounts whose grace period has ended
    /// and erases them, in milliseconds (100 to 3600000).
    pub deletion_sweep_ms: u64,
}

impl Default for AccountConfig {
    fn default() -> Self {
        Self {
            // A week: long enough to change one's mind after a rash moment,
            // short enough that a deletion means it.
            deletion_grace_secs: 7 * 24 * 3600,
            deletion_sweep_ms: 60_000,
        }
    }
}

impl AccountConfig {
    pub fn deletion_grace_ms(&self) -> i64 {
        (self.deletion_grace_secs.min(90 * 24 * 3600) * 1000) as i64
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(3600..=90 * 24 * 3600).contains(&self.deletion_grace_secs) {
            return Err(ConfigError::invalid(
                "account.deletion_grace_secs",
                "must be 3600 to 7776000 (an hour to 90 days)",
            ));
        }
        if !(100..=3_600_000).contains(&self.deletion_sweep_ms) {
            return Err(ConfigError::invalid(
                "account.deletion_sweep_ms",
                "must be 100 to 3600000",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod account_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_grace_period_or_a_sweep_out_of_bounds_is_refused_by_name() {
        assert!(AccountConfig::default().validate().is_ok());
        assert_eq!(
            AccountConfig::default().deletion_grace_ms(),
            7 * 24 * 3600 * 1000
        );
        for (config, key) in [
            (
                AccountConfig {
                    deletion_grace_secs: 60,
                    ..AccountConfig::default()
                },
                "account.deletion_grace_secs",
            ),
            (
                AccountConfig {
                    deletion_grace_secs: u64::MAX,
                    ..AccountConfig::default()
                },
                "account.deletion_grace_secs",
            ),
            (
                AccountConfig {
                    deletion_sweep_ms: 0,
                    ..AccountConfig::default()
                },
                "account.deletion_sweep_ms",
            ),
        ] {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }
}
