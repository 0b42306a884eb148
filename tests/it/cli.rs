//! The README's two-terminal demo, scripted with `superapp-cli`.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::helpers::{PASSWORD, fresh_phone, spawn_app};

/// `superapp-cli` is built beside `superapp` by `cargo test --workspace` (the
/// client crate's own integration test needs it).
pub(crate) fn cli_path() -> PathBuf {
    let server = PathBuf::from(env!("CARGO_BIN_EXE_superapp"));
    let path = server.with_file_name("superapp-cli");
    assert!(
        path.exists(),
        "run the tests with `cargo test --workspace` so superapp-cli is built"
    );
    path
}

/// The `text` of each line `listen --json` printed.
pub(crate) fn texts_of(printed: &str) -> Vec<String> {
    printed
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn cli(base: &str, profile: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let output = Command::new(cli_path())
        .args(["--server", base, "--profile"])
        .arg(profile)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(output.status.success(), "superapp-cli {args:?} failed");
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn two_people_chat_from_the_cli_and_the_receiver_catches_up_after_a_break() {
    let app = spawn_app().await;
    let base = app.base_url.clone();
    let profiles = tempfile::tempdir().unwrap();
    let (ann, bo) = (profiles.path().join("ann"), profiles.path().join("bo"));
    let (pa, pb) = (fresh_phone(), fresh_phone());
    let base2 = base.clone();
    let (ann2, bo2) = (ann.clone(), bo.clone());
    let bo_id = tokio::task::spawn_blocking(move || {
        cli(
            &base2,
            &ann2,
            &[
                "register",
                "--phone",
                &pa,
                "--password",
                PASSWORD,
                "--name",
                "Ann",
            ],
        );
        let bo = cli(
            &base2,
            &bo2,
            &[
                "register",
                "--phone",
                &pb,
                "--password",
                PASSWORD,
                "--name",
                "Bo",
            ],
        );
        cli(
            &base2,
            &ann2,
            &["login", "--phone", &pa, "--password", PASSWORD],
        );
        cli(
            &base2,
            &bo2,
            &["login", "--phone", &pb, "--password", PASSWORD],
        );
        bo["user_id"].as_str().unwrap().to_string()
    })
    .await
    .unwrap();

    // Bo listens; Ann sends; Bo sees it at once.
    let listener = Command::new(cli_path())
        .args(["--server", &base, "--profile"])
        .arg(&bo)
        .args(["listen", "--json", "--count", "1", "--timeout", "20"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (base2, ann2, to) = (base.clone(), ann.clone(), bo_id.clone());
    let sent = tokio::task::spawn_blocking(move || {
        cli(&base2, &ann2, &["send", "--to", &to, "--text", "hello Bo"])
    })
    .await
    .unwrap();
    assert_eq!(sent["seq"], 1);
    let out = tokio::task::spawn_blocking(move || listener.wait_with_output().unwrap())
        .await
        .unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["text"], "hello Bo");

    // Bo is away; Ann sends three; Bo comes back and gets exactly those, in order.
    let (base2, ann2, to) = (base.clone(), ann.clone(), bo_id.clone());
    tokio::task::spawn_blocking(move || {
        for text in ["one", "two", "three"] {
            cli(&base2, &ann2, &["send", "--to", &to, "--text", text]);
        }
    })
    .await
    .unwrap();
    let (base2, bo2) = (base.clone(), bo.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(cli_path())
            .args(["--server", &base2, "--profile"])
            .arg(&bo2)
            .args(["listen", "--json", "--count", "3", "--timeout", "20"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        texts_of(&String::from_utf8(out.stdout).unwrap()),
        ["one", "two", "three"]
    );
    let conversations =
        tokio::task::spawn_blocking(move || cli(&base, &bo, &["conversations", "--json"]))
            .await
            .unwrap();
    assert_eq!(conversations["conversations"][0]["last_seq"], 4);
    assert_eq!(conversations["conversations"][0]["unread"], 4);
}
