//! Loading a typed configuration: defaults that run with nothing installed,
//! then a TOML file, then `SUPERAPP_<SECTION>__<KEY>` environment variables,
//! in that order. Unknown keys are refused with a message that names them
//! (every section is `deny_unknown_fields`). Each room owns the type and the
//! checks of its own section; the binary assembles the whole.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format as _, Serialized, Toml};
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Load(#[from] Box<figment::Error>),
    #[error("invalid setting {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl ConfigError {
    /// A setting out of its bounds, named by its `section.key`.
    pub fn invalid(key: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key,
            reason: reason.into(),
        }
    }
}

/// `T::default()`, then the TOML file if given, then `SUPERAPP_*` variables.
pub fn load<T>(file: Option<&Path>) -> Result<T, ConfigError>
where
    T: Default + Serialize + DeserializeOwned,
{
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(file) = file {
        if !file.exists() {
            return Err(ConfigError::invalid(
                "--config",
                format!("{} does not exist", file.display()),
            ));
        }
        figment = figment.merge(Toml::file_exact(file));
    }
    figment = figment.merge(Env::prefixed("SUPERAPP_").split("__"));
    Ok(figment.extract().map_err(Box::new)?)
}

/// `T::default()`, then `text` read as a TOML file, and no environment: what
/// [`load`] makes of a file with these contents when no `SUPERAPP_*` variable
/// is set. For tests and the fuzz target of the loader.
pub fn from_toml<T>(text: &str) -> Result<T, ConfigError>
where
    T: Default + Serialize + DeserializeOwned,
{
    let figment = Figment::from(Serialized::defaults(T::default())).merge(Toml::string(text));
    Ok(figment.extract().map_err(Box::new)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Whole {
        server: Section,
    }

    #[derive(Debug, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Section {
        listen: String,
        heartbeat_secs: u64,
    }

    impl Default for Section {
        fn default() -> Self {
            Self {
                listen: "127.0.0.1:8080".into(),
                heartbeat_secs: 25,
            }
        }
    }

    #[test]
    fn an_unknown_key_is_rejected_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[server]\nlisten = \"127.0.0.1:9\"\nlisen = 1\n").unwrap();
        let err = load::<Whole>(Some(&file)).unwrap_err().to_string();
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn the_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[server]\nheartbeat_secs = 3\n").unwrap();
        let config: Whole = load(Some(&file)).unwrap();
        assert_eq!(config.server.heartbeat_secs, 3);
        assert_eq!(config.server.listen, "127.0.0.1:8080");
    }

    #[test]
    fn text_reads_as_a_file_would() {
        let config: Whole = from_toml("[server]\nheartbeat_secs = 3\n").unwrap();
        assert_eq!(config.server.heartbeat_secs, 3);
        assert_eq!(config.server.listen, "127.0.0.1:8080");
        let err = from_toml::<Whole>("[server]\nlisen = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = load::<Whole>(Some(Path::new("/nonexistent/c.toml")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
    }
}
