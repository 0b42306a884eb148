//! The `[chat]` section of the configuration: its keys, defaults and
//! checks. The binary assembles the whole configuration from the rooms'
//! sections.

use serde::{Deserialize, Serialize};
use superapp_kit::config::ConfigError;

use crate::model::GroupLimits;
use crate::policy::INVITATION_TTL_MS;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    /// Largest page a client may pull at once.
    pub max_pull_page: u32,
    /// Groups one user may be a member of at once (1 to 100,000). An
    /// addition that would pass it is refused with `too_many_groups` and
    /// adds nobody.
    pub max_groups_per_user: u32,
    /// Groups one user may create in any 24 hours, dissolved ones included
    /// (1 to 100,000); one more is refused with `too_many_groups_created`.
    pub max_groups_created_per_day: u32,
    /// How long an invitation into a group waits for its invitee to accept
    /// or decline, in seconds (1 to 2592000, 30 days; 7 days by default).
    pub invitation_ttl_secs: u64,
}

impl Default for ChatConfig {
    fn default() -> Self {
        let groups = GroupLimits::default();
        Self {
            max_pull_page: 500,
            max_groups_per_user: groups.max_groups_per_user,
            max_groups_created_per_day: groups.max_groups_created_per_day,
            invitation_ttl_secs: (INVITATION_TTL_MS / 1000) as u64,
        }
    }
}

impl ChatConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=1000).contains(&self.max_pull_page) {
            return Err(ConfigError::invalid(
                "chat.max_pull_page",
                "must be 1 to 1000",
            ));
        }
        for (key, value) in [
            ("chat.max_groups_per_user", self.max_groups_per_user),
            (
                "chat.max_groups_created_per_day",
                self.max_groups_created_per_day,
            ),
        ] {
            if !(1..=100_000).contains(&value) {
                return Err(ConfigError::invalid(key, "must be 1 to 100000"));
            }
        }
        if !(1..=30 * 24 * 3600).contains(&self.invitation_ttl_secs) {
            return Err(ConfigError::invalid(
                "chat.invitation_ttl_secs",
                "must be 1 to 2592000 (30 days)",
            ));
        }
        Ok(())
    }

    /// How long a group invitation waits, in milliseconds.
    pub fn invitation_ttl_ms(&self) -> i64 {
        (self.invitation_ttl_secs.min(30 * 24 * 3600) * 1000) as i64
    }

    /// The limits the chat store applies to one user's groups.
    pub fn group_limits(&self) -> GroupLimits {
        GroupLimits {
            max_groups_per_user: self.max_groups_per_user,
            max_groups_created_per_day: self.max_groups_created_per_day,
        }
    }
}
