//! The README's two-terminal demo, scripted with `superapp-cli`.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use superapp_account::model::{WhoMayAddMe, WhoMayMessage};

use crate::helpers::{PASSWORD, TestApp, fresh_phone, spawn_app_with};

/// A server with the shipped defaults, as a newcomer runs it: only friends
/// may message each other, or add each other to groups.
async fn shipped() -> TestApp {
    spawn_app_with(|c| {
        c.social.who_may_message = WhoMayMessage::Friends;
        c.social.who_may_add_me = WhoMayAddMe::Friends;
    })
    .await
}

/// `superapp-cli` is built beside `superapp` by `cargo test --workspace` (the
/// tools crate's own integration test needs it).
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

/// Starts `listen --json --count 1` with a profile and returns once it
/// follows live messages, as it says on stderr after catching up.
async fn listening(base: &str, profile: &std::path::Path) -> Child {
    let mut child = Command::new(cli_path())
        .args(["--server", base, "--profile"])
        .arg(profile)
        .args(["listen", "--json", "--count", "1", "--timeout", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stderr).lines();
        let said = lines.by_ref().map_while(Result::ok);
        assert!(
            said.into_iter().any(|line| line.starts_with("Listening")),
            "the listener ended without listening"
        );
        // The rest is read on, so the listener never waits on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
    })
    .await
    .unwrap();
    child
}

#[tokio::test]
async fn two_people_chat_from_the_cli_and_the_receiver_catches_up_after_a_break() {
    let app = shipped().await;
    let base = app.base_url.clone();
    let profiles = tempfile::tempdir().unwrap();
    let (ann, bo) = (profiles.path().join("ann"), profiles.path().join("bo"));
    let (pa, pb) = (fresh_phone(), fresh_phone());
    let base2 = base.clone();
    let (ann2, bo2) = (ann.clone(), bo.clone());
    let bo_id = tokio::task::spawn_blocking(move || {
        let ann = cli(
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
        // Friends first, as the README's demo has it.
        let (ann_id, bo_id) = (
            ann["user_id"].as_str().unwrap(),
            bo["user_id"].as_str().unwrap(),
        );
        let asked = cli(
            &base2,
            &ann2,
            &[
                "friend",
                "request",
                "--to",
                bo_id,
                "--greeting",
                "Ann from the hike",
            ],
        );
        assert_eq!(asked["status"], "requested");
        cli(&base2, &bo2, &["friend", "accept", "--from", ann_id]);
        let listed = cli(&base2, &bo2, &["friends", "--json"]);
        assert_eq!(listed["user_id"].as_str(), Some(ann_id));
        bo_id.to_string()
    })
    .await
    .unwrap();

    // Bo listens; Ann sends; Bo sees it at once.
    let listener = listening(&base, &bo).await;
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

/// Registers and logs in a CLI user in `profile`; returns their id.
fn cli_user(base: &str, profile: &std::path::Path, name: &str) -> String {
    let phone = fresh_phone();
    let account = cli(
        base,
        profile,
        &[
            "register",
            "--phone",
            &phone,
            "--password",
            PASSWORD,
            "--name",
            name,
        ],
    );
    cli(
        base,
        profile,
        &["login", "--phone", &phone, "--password", PASSWORD],
    );
    account["user_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_group_is_made_filled_and_chatted_in_from_the_cli() {
    let app = shipped().await;
    let base = app.base_url.clone();
    let profiles = tempfile::tempdir().unwrap();
    let dir = profiles.path().to_path_buf();
    let (base2, dir2) = (base.clone(), dir.clone());
    let (bo_id, cy_id, group_id) = tokio::task::spawn_blocking(move || {
        cli_user(&base2, &dir2.join("ann"), "Ann");
        let bo = cli_user(&base2, &dir2.join("bo"), "Bo");
        let cy = cli_user(&base2, &dir2.join("cy"), "Cy");
        // Bo lets anyone add them; Cy, a stranger to Ann, is asked.
        let settings = cli(
            &base2,
            &dir2.join("bo"),
            &["privacy", "set", "who-may-add-me", "anyone"],
        );
        assert_eq!(settings["who_may_add_me"], "anyone");
        let group = cli(
            &base2,
            &dir2.join("ann"),
            &["group", "create", "--name", "Trip", "--members", &bo],
        );
        assert_eq!(group["member_count"], 2);
        assert_eq!(group["added"][0].as_str(), Some(bo.as_str()));
        let id = group["group_id"].as_str().unwrap().to_string();
        let added = cli(
            &base2,
            &dir2.join("ann"),
            &["group", "add", "--group", &id, "--members", &cy],
        );
        assert_eq!(added["invited"][0].as_str(), Some(cy.as_str()));
        let waiting = cli(&base2, &dir2.join("cy"), &["group", "invitations"]);
        assert_eq!(
            (waiting["group_id"].as_str(), waiting["name"].as_str()),
            (Some(id.as_str()), Some("Trip"))
        );
        let joined = cli(
            &base2,
            &dir2.join("cy"),
            &["group", "accept", "--group", &id],
        );
        assert_eq!(joined["joined"], true);
        // A second group Cy declines.
        let other = cli(
            &base2,
            &dir2.join("ann"),
            &["group", "create", "--name", "Other", "--members", &cy],
        );
        let other = other["group_id"].as_str().unwrap();
        let declined = cli(
            &base2,
            &dir2.join("cy"),
            &["group", "decline", "--group", other],
        );
        assert_eq!(declined["declined"].as_str(), Some(other));
        let again = Command::new(cli_path())
            .args(["--server", &base2, "--profile"])
            .arg(dir2.join("cy"))
            .args(["group", "accept", "--group", other])
            .output()
            .unwrap();
        assert!(!again.status.success());
        let failure: serde_json::Value = serde_json::from_slice(&again.stderr).unwrap();
        assert_eq!(failure["error"], "unknown_group_invitation");
        (bo, cy, id)
    })
    .await
    .unwrap();

    let listener = listening(&base, &dir.join("bo")).await;
    let (base2, dir2, gid) = (base.clone(), dir.clone(), group_id.clone());
    let sent = tokio::task::spawn_blocking(move || {
        cli(
            &base2,
            &dir2.join("ann"),
            &["send", "--group", &gid, "--text", "we leave at nine"],
        )
    })
    .await
    .unwrap();
    let conversation = format!("g.{group_id}");
    assert_eq!(
        (sent["conversation_id"].as_str(), sent["seq"].as_u64()),
        (Some(conversation.as_str()), Some(1))
    );
    let out = tokio::task::spawn_blocking(move || listener.wait_with_output().unwrap())
        .await
        .unwrap();
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    assert_eq!(
        (line["conversation_id"].as_str(), line["text"].as_str()),
        (Some(conversation.as_str()), Some("we leave at nine"))
    );
    // Cy, who joined after creation, catches up on it too; the list names the group.
    let (base2, dir2) = (base.clone(), dir.clone());
    let (members, conversations) = tokio::task::spawn_blocking(move || {
        let members = Command::new(cli_path())
            .args(["--server", &base2, "--profile"])
            .arg(dir2.join("cy"))
            .args(["group", "members", "--group", &group_id])
            .output()
            .unwrap();
        (
            String::from_utf8(members.stdout).unwrap(),
            cli(&base2, &dir2.join("cy"), &["conversations", "--json"]),
        )
    })
    .await
    .unwrap();
    assert_eq!(members.lines().count(), 3);
    assert!(members.contains(&bo_id) && members.contains(&cy_id));
    assert_eq!(conversations["conversations"][0]["name"], "Trip");
    assert_eq!(conversations["conversations"][0]["unread"], 1);
}

/// What `superapp-cli` printed, one JSON value a line.
fn cli_lines(base: &str, profile: &std::path::Path, args: &[&str]) -> Vec<serde_json::Value> {
    let output = Command::new(cli_path())
        .args(["--server", base, "--profile"])
        .arg(profile)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(output.status.success(), "superapp-cli {args:?} failed");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn a_friend_is_hidden_found_by_exact_search_and_shown_again_from_the_cli() {
    let app = shipped().await;
    let (me, bunny) = (app.user("Me").await, app.user("Bunny").await);
    app.befriend(&bunny, &me).await;
    let base = app.base_url.clone();
    let profiles = tempfile::tempdir().unwrap();
    let profile = profiles.path().join("me");
    let bunny_id = bunny.id.to_string();
    tokio::task::spawn_blocking(move || {
        let login = ["login", "--phone", &me.phone, "--password", PASSWORD];
        cli(&base, &profile, &login);
        let hidden = cli(&base, &profile, &["friend", "hide", "--user", &bunny_id]);
        assert_eq!(hidden["hidden"].as_str(), Some(bunny_id.as_str()));
        assert!(cli_lines(&base, &profile, &["friends", "--json"]).is_empty());
        assert!(cli_lines(&base, &profile, &["friend", "search", "--q", "bun"]).is_empty());
        let found = cli_lines(&base, &profile, &["friend", "search", "--q", "Bunny"]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0]["user_id"].as_str(), Some(bunny_id.as_str()));
        assert_eq!(found[0]["hidden"], true);
        let shown = cli(&base, &profile, &["friend", "unhide", "--user", &bunny_id]);
        assert_eq!(shown["unhidden"].as_str(), Some(bunny_id.as_str()));
        let listed = cli_lines(&base, &profile, &["friends", "--json"]);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["user_id"].as_str(), Some(bunny_id.as_str()));
    })
    .await
    .unwrap();
}

/// The JSON lines a CLI command printed, and whether it succeeded.
fn cli_outcome(
    base: &str,
    profile: &std::path::Path,
    args: &[&str],
) -> (bool, Vec<serde_json::Value>) {
    let output = Command::new(cli_path())
        .args(["--server", base, "--profile"])
        .arg(profile)
        .args(args)
        .output()
        .unwrap();
    let printed = if output.status.success() {
        output.stdout
    } else {
        output.stderr
    };
    let lines = String::from_utf8(printed)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (output.status.success(), lines)
}

#[tokio::test]
async fn people_nearby_share_and_find_each_other_from_the_cli() {
    let app = shipped().await;
    let base = app.base_url.clone();
    let dir = app.dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let (ann, bo) = (dir.join("ann"), dir.join("bo"));
        let ann_id = cli_user(&base, &ann, "Ann");
        let bo_id = cli_user(&base, &bo, "Bo");
        // Negative coordinates read as numbers, not as options.
        let at = ["nearby", "--lat", "-33.8568", "--lon", "151.2153"];
        let (done, printed) = cli_outcome(&base, &ann, &at);
        assert!(done && printed.is_empty(), "{printed:?}");
        let (done, printed) = cli_outcome(
            &base,
            &bo,
            &[
                "nearby", "--lat", "-33.8587", "--lon", "151.2140", "--radius", "1000",
            ],
        );
        assert!(done, "{printed:?}");
        assert_eq!(printed.len(), 1);
        assert_eq!(printed[0]["user_id"].as_str(), Some(ann_id.as_str()));
        assert_eq!(printed[0]["display_name"], "Ann");
        assert!(printed[0]["within_m"].as_u64().unwrap() <= 400);
        assert!(printed[0].get("lat").is_none());

        let (done, printed) = cli_outcome(&base, &ann, &["nearby", "clear"]);
        assert!(done);
        assert_eq!(printed, vec![serde_json::json!({ "cleared": true })]);
        let (_, printed) = cli_outcome(
            &base,
            &bo,
            &["nearby", "--lat", "-33.8587", "--lon", "151.2140"],
        );
        assert!(printed.is_empty(), "{printed:?}");
        // Ann searches again from where Bo is; she sees him.
        let (_, printed) =
            cli_outcome(&base, &ann, &["nearby", "--lat=-33.8587", "--lon=151.2140"]);
        assert_eq!(printed[0]["user_id"].as_str(), Some(bo_id.as_str()));
        assert_eq!(printed[0]["within_m"], 100);
        // Bad input: the server's code, on stderr, exit 1.
        let (done, printed) = cli_outcome(&base, &ann, &["nearby", "--lat", "91", "--lon", "0"]);
        assert!(!done);
        assert_eq!(printed[0]["error"], "invalid_latitude");
    })
    .await
    .unwrap();
}

/// A `superapp-cli` child whose stdout is read line by line as JSON.
struct Following {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Following {
    fn start(base: &str, profile: &std::path::Path, args: &[&str]) -> Self {
        let mut child = Command::new(cli_path())
            .args(["--server", base, "--profile"])
            .arg(profile)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self { child, lines }
    }

    /// The next line printed (blocking, so on a blocking thread).
    async fn next(mut self) -> (Self, serde_json::Value) {
        tokio::task::spawn_blocking(move || {
            let line = self.lines.next().expect("a line").expect("readable");
            let value = serde_json::from_str(&line).unwrap();
            (self, value)
        })
        .await
        .unwrap()
    }

    async fn exits_successfully(mut self) {
        let status = tokio::task::spawn_blocking(move || self.child.wait().unwrap())
            .await
            .unwrap();
        assert!(status.success());
    }
}

// Two workers: the CLI's short commands run on this one, blocking it, while
// the server serves on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_scripted_from_the_cli_with_its_events_as_json_lines() {
    let app = crate::helpers::spawn_app().await;
    let base = app.base_url.clone();
    let (alice_dir, bob_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (alice, bob) = (alice_dir.path(), bob_dir.path());
    let alice_id = cli_user(&base, alice, "Alice");
    let bob_id = cli_user(&base, bob, "Bob");

    let caller = Following::start(
        &base,
        alice,
        &["call", "invite", &bob_id, "--timeout", "30"],
    );
    let (caller, placed) = caller.next().await;
    assert_eq!(placed["state"], "invited");
    let call_id = placed["call_id"].as_str().unwrap().to_string();

    let callee = Following::start(&base, bob, &["call", "accept", &call_id, "--timeout", "30"]);
    let (callee, accepted) = callee.next().await;
    assert_eq!(
        (&accepted["call_id"], &accepted["state"]),
        (&placed["call_id"], &"accepted".into())
    );
    let (caller, event) = caller.next().await;
    assert_eq!(
        (&event["state"], &event["user"]),
        (&"accepted".into(), &bob_id.clone().into())
    );
    assert_eq!(event["joined"], serde_json::json!([alice_id, bob_id]));

    // Bob hangs up from another device; both followers print the end and exit.
    let hung_up = cli(&base, bob, &["call", "hangup", &call_id]);
    assert_eq!(hung_up["state"], "ended");
    for follower in [caller, callee] {
        let (follower, ended) = follower.next().await;
        assert_eq!(
            (&ended["state"], &ended["user"]),
            (&"ended".into(), &bob_id.clone().into())
        );
        follower.exits_successfully().await;
    }
    let late = Command::new(cli_path())
        .args(["--server", &base, "--profile"])
        .arg(alice)
        .args(["call", "hangup", &call_id])
        .output()
        .unwrap();
    assert!(!late.status.success());
    let refusal: serde_json::Value = serde_json::from_slice(&late.stderr).unwrap();
    assert_eq!(refusal["error"], "call_ended");
}

/// What `superapp-cli` printed, as text, once it succeeded.
fn cli_text(base: &str, profile: &std::path::Path, args: &[&str]) -> String {
    let output = Command::new(cli_path())
        .args(["--server", base, "--profile"])
        .arg(profile)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(output.status.success(), "superapp-cli {args:?} failed");
    String::from_utf8(output.stdout).unwrap()
}

/// The README's wallet walk-through, as a script runs it: a top-up at the
/// sandbox, a transfer and its acceptance, a red packet sent and grabbed,
/// and the history as JSON lines.
#[tokio::test]
async fn the_wallet_is_scripted_from_the_cli_top_up_transfer_red_packet_and_history() {
    let app = crate::helpers::spawn_app().await;
    let base = app.base_url.clone();
    let profiles = tempfile::tempdir().unwrap();
    let dir = profiles.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let [ann, bo, cy] = ["ann", "bo", "cy"].map(|name| dir.join(name));
        let mut ids = Vec::new();
        for (profile, name) in [(&ann, "Ann"), (&bo, "Bo"), (&cy, "Cy")] {
            let phone = fresh_phone();
            let account = cli(
                &base,
                profile,
                &[
                    "register",
                    "--phone",
                    &phone,
                    "--password",
                    PASSWORD,
                    "--name",
                    name,
                ],
            );
            cli(
                &base,
                profile,
                &["login", "--phone", &phone, "--password", PASSWORD],
            );
            ids.push(account["user_id"].as_str().unwrap().to_string());
        }
        let (bo_id, cy_id) = (ids[1].as_str(), ids[2].as_str());
        let pin = ["--pin", "135790"];

        let set = cli(
            &base,
            &ann,
            &["wallet", "pin", "set", "--json", pin[0], pin[1]],
        );
        assert_eq!(set["pin_set"], true);
        let topped = cli(
            &base,
            &ann,
            &["wallet", "topup", "--amount", "5000", "--json"],
        );
        assert_eq!(topped["order"]["status"], "paid");
        assert_eq!(topped["balance_fen"], 5000);

        let sent = cli(
            &base,
            &ann,
            &[
                "transfer", "--to", bo_id, "--amount", "1200", "--memo", "lunch", "--json", pin[0],
                pin[1],
            ],
        );
        assert_eq!(
            (sent["status"].as_str(), sent["amount_fen"].as_i64()),
            (Some("pending"), Some(1200))
        );
        let transfer_id = sent["transfer_id"].as_str().unwrap();
        let accepted = cli(
            &base,
            &bo,
            &["transfer", "accept", "--id", transfer_id, "--json"],
        );
        assert_eq!(accepted["status"], "accepted");

        let members = format!("{bo_id},{cy_id}");
        let group = cli(
            &base,
            &ann,
            &["group", "create", "--name", "Hikers", "--members", &members],
        );
        let group_id = group["group_id"].as_str().unwrap();
        let packet = cli(
            &base,
            &ann,
            &[
                "redpacket",
                "send",
                "--group",
                group_id,
                "--amount",
                "600",
                "--count",
                "2",
                "--mode",
                "equal",
                "--greeting",
                "Sunday!",
                "--json",
                pin[0],
                pin[1],
            ],
        );
        let packet_id = packet["packet_id"].as_str().unwrap();
        let grabbed = cli(
            &base,
            &bo,
            &["redpacket", "grab", "--id", packet_id, "--json"],
        );
        assert_eq!(grabbed["grab"]["amount_fen"], 300);
        let said = cli_text(&base, &cy, &["redpacket", "grab", "--id", packet_id]);
        assert_eq!(
            said.trim(),
            format!("Grabbed ¥3.00 from red packet {packet_id} (2 of 2 taken, finished)")
        );
        let shown = cli(
            &base,
            &ann,
            &["redpacket", "show", "--id", packet_id, "--json"],
        );
        assert_eq!(shown["packet"]["status"], "finished");

        let said = cli_text(&base, &ann, &["wallet", "balance"]);
        assert_eq!(said.trim(), "Balance: ¥32.00");
        let history: Vec<serde_json::Value> =
            cli_text(&base, &ann, &["wallet", "history", "--json"])
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
        let moves: Vec<(&str, i64)> = history
            .iter()
            .map(|e| {
                (
                    e["reason"].as_str().unwrap(),
                    e["amount_fen"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            moves,
            [
                ("packet_sent", -600),
                ("transfer_sent", -1200),
                ("top_up", 5000)
            ]
        );
    })
    .await
    .unwrap();
}
