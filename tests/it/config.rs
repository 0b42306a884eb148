//! Generated files stay current.

use superapp::config::Config;

#[test]
fn the_shipped_example_config_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/superapp.example.toml");
    let shipped = std::fs::read_to_string(path).unwrap_or_default();
    let current = Config::example_toml();
    if shipped != current {
        // Regenerate with: cargo run -- config-example > deploy/superapp.example.toml
        panic!(
            "deploy/superapp.example.toml is stale; regenerate it with `superapp config-example`"
        );
    }
    // And it loads as it is.
    Config::load(Some(std::path::Path::new(path))).unwrap();
}
