//! The `[chat]` section of the configuration: its keys, defaults and
//! checks. The binary assembles the whole configuration from the rooms'
//! sections.

use serde::{Deserialize, Serialize};
use superapp_kit::config::ConfigError;

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

impl ChatConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=1000).contains(&self.max_pull_page) {
            return Err(ConfigError::invalid(
                "chat.max_pull_page",
                "must be 1 to 1000",
            ));
        }
        Ok(())
    }
}
