//! The tracing subscriber. Log lines carry ids and outcomes, never message
//! bodies, tokens or passwords: the rooms log only such fields, and the
//! libraries that would print raw frames or headers at debug and trace level
//! are held at info whatever the filter asks.

use crate::config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// Crates whose debug/trace output includes payloads or headers.
const PAYLOAD_PRINTERS: &[&str] = &[
    "tungstenite",
    "tokio_tungstenite",
    "hyper",
    "hyper_util",
    "h2",
];

pub fn init(config: &LogConfig) {
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.filter));
    for target in PAYLOAD_PRINTERS {
        if let Ok(directive) = format!("{target}=info").parse() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}
