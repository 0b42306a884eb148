//! The configuration file (`src/config.rs` on `kit::config`), read from any
//! text as the server reads its `--config` file.
//!
//! Reading never panics. Text that is accepted passes every section's checks
//! (`Config::validate`), and the configuration it gives, written back as TOML,
//! reads back to the same configuration.

#![no_main]

use libfuzzer_sys::fuzz_target;
use superapp::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::from_toml(text) else {
        return;
    };
    let written = toml::to_string(&config).expect("an accepted configuration writes as TOML");
    let again = Config::from_toml(&written).expect("a written configuration reads back");
    assert_eq!(toml::to_string(&again).ok(), Some(written));
});
