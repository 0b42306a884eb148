//! `superapp-cli` without a server: argument and profile errors are clear.
//! (Its conversations with a real server are tested in the root crate.)

#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn sending_before_logging_in_fails_with_a_json_error() {
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_superapp-cli"))
        .args(["--server", "http://127.0.0.1:9", "--profile"])
        .arg(profile.path())
        .args(["send", "--to", "1", "--text", "hi"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let error: serde_json::Value = serde_json::from_slice(&output.stderr).unwrap();
    assert_eq!(error["error"], "not_logged_in");
}

#[test]
fn nearby_needs_both_coordinates_unless_it_clears() {
    let profile = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_superapp-cli"))
            .args(["--server", "http://127.0.0.1:9", "--profile"])
            .arg(profile.path())
            .args(args)
            .output()
            .unwrap()
    };
    // clap refuses a missing coordinate before anything is sent.
    let output = run(&["nearby", "--lat", "31.2"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--lon"));
    let output = run(&["nearby", "--lat", "1", "--lon", "2", "clear"]);
    assert_eq!(output.status.code(), Some(2));
    // Clearing needs no coordinate: it fails only for want of a session.
    let output = run(&["nearby", "clear"]);
    assert_eq!(output.status.code(), Some(1));
    let error: serde_json::Value = serde_json::from_slice(&output.stderr).unwrap();
    assert_eq!(error["error"], "not_logged_in");
}

#[test]
fn a_transfer_needs_a_recipient_and_an_amount_unless_it_accepts_or_declines() {
    let profile = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_superapp-cli"))
            .args(["--server", "http://127.0.0.1:9", "--profile"])
            .arg(profile.path())
            .args(args)
            .output()
            .unwrap()
    };
    let output = run(&["transfer", "--amount", "100"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--to"));
    // Accepting names the transfer only.
    let output = run(&["transfer", "accept", "--id", "1", "--to", "2"]);
    assert_eq!(output.status.code(), Some(2));
    let output = run(&["transfer", "accept", "--id", "1"]);
    assert_eq!(output.status.code(), Some(1));
    let error: serde_json::Value = serde_json::from_slice(&output.stderr).unwrap();
    assert_eq!(error["error"], "not_logged_in");
}

#[test]
fn a_red_packet_goes_into_a_group_or_to_one_user_in_a_known_mode() {
    let profile = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_superapp-cli"))
            .args(["--server", "http://127.0.0.1:9", "--profile"])
            .arg(profile.path())
            .args(["redpacket", "send", "--amount", "100", "--count", "2"])
            .args(args)
            .output()
            .unwrap()
    };
    for refused in [
        &["--mode", "lucky"][..],
        &["--mode", "lucky", "--group", "1", "--to", "2"],
        &["--mode", "huge", "--group", "1"],
    ] {
        let output = run(refused);
        assert_eq!(output.status.code(), Some(2), "{refused:?}");
    }
    let output = run(&["--mode", "equal", "--group", "1", "--pin", "135790"]);
    assert_eq!(output.status.code(), Some(1));
    let error: serde_json::Value = serde_json::from_slice(&output.stderr).unwrap();
    assert_eq!(error["error"], "not_logged_in");
}
