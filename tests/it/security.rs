//! Account security over real HTTP and WebSocket clients: a password
//! change closes every other session's sockets, on every gateway; the
//! session list, and ending one session; an account's deletion, restored
//! within its grace period, and erased after it (time moved by the test's
//! clock), its peers keeping its history under a placeholder name.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use superapp::config::Role;
use superapp_client::proto::v1::group_event::Kind as GroupKind;
use superapp_client::{Connection, Tokens};
use superapp_kit::clock::{Clock as _, SystemClock};
use superapp_kit::secret::Secret;
use superapp_kit::testkit::RedisServer;

use crate::cli::cli_path;
use crate::helpers::{
    PASSWORD, TestApp, User, admin, api, code, every_gateway_subscribed, every_shard_leased,
    manual_clock, next_group_event, refused, spawn_app, spawn_app_with, spawn_app_with_clock,
    subscribed, text_of,
};

const NEW_PASSWORD: &str = "a new and longer passphrase";
/// `account.deletion_grace_secs`, the default: 7 days.
const GRACE_MS: i64 = 7 * 24 * 3600 * 1000;
const SOCKET_CLOSES: Duration = Duration::from_secs(5);

/// How a session that was ended closes.
fn revoked() -> Option<(u16, String)> {
    Some((4001, "session revoked".to_string()))
}

/// Another session of `user`, on another device.
async fn another_session(app: &TestApp, user: &User, device: &str) -> Tokens {
    app.http
        .login_device(&user.phone, PASSWORD, Some(device))
        .await
        .unwrap()
}

#[tokio::test]
async fn changing_the_password_closes_every_other_session_and_the_asking_one_keeps_working() {
    let app = spawn_app().await;
    let ann = app.user("Ann").await;
    let tablet = another_session(&app, &ann, "tablet").await;
    let here = app.connect(&ann).await;
    let there = Connection::connect(&app.base_url, &tablet.access_token)
        .await
        .unwrap();
    there.ping().await.unwrap();

    let renewed = app
        .http
        .change_password(&ann.tokens.access_token, PASSWORD, NEW_PASSWORD)
        .await
        .unwrap();
    assert_eq!(renewed.session_id, ann.tokens.session_id);
    assert_eq!(there.wait_closed(SOCKET_CLOSES).await, revoked());
    assert_eq!(
        code(app.http.me(&tablet.access_token).await),
        "session_revoked"
    );
    assert_eq!(
        code(app.http.refresh(&tablet.refresh_token).await),
        "invalid_refresh_token"
    );

    // The asking session goes on: its socket, its access token, and its
    // new refresh token (the old one is dead).
    here.ping().await.unwrap();
    here.list_conversations(10, "").await.unwrap();
    app.http.me(&ann.tokens.access_token).await.unwrap();
    assert_eq!(
        code(app.http.refresh(&ann.tokens.refresh_token).await),
        "invalid_refresh_token"
    );
    app.http.refresh(&renewed.refresh_token).await.unwrap();
    here.ping().await.unwrap();

    assert_eq!(
        code(app.http.login(&ann.phone, PASSWORD).await),
        "invalid_credentials"
    );
    app.http.login(&ann.phone, NEW_PASSWORD).await.unwrap();
}

#[tokio::test]
async fn bad_password_changes_get_their_codes_and_change_nothing() {
    let app = spawn_app().await;
    let ann = app.user("Ann").await;
    let tablet = another_session(&app, &ann, "tablet").await;
    let change =
        |current: &str, new: &str| json!({"current_password": current, "new_password": new});
    for (body, status, expected) in [
        (
            change("not my password", NEW_PASSWORD),
            403,
            "wrong_password",
        ),
        (change(PASSWORD, "short"), 400, "password_too_short"),
        (change(PASSWORD, &"x".repeat(129)), 400, "password_too_long"),
        (change(PASSWORD, "password123"), 400, "password_too_common"),
        (change(PASSWORD, PASSWORD), 400, "password_unchanged"),
        (json!({"current_password": PASSWORD}), 400, "invalid_json"),
    ] {
        let (got, answer) = api(&app, &ann, "POST", "/v1/me/password", body).await;
        assert_eq!((got, answer["code"].as_str()), (status, Some(expected)));
    }
    // Nothing changed: the other session lives, the password is the old.
    app.http.me(&tablet.access_token).await.unwrap();
    app.http.login(&ann.phone, PASSWORD).await.unwrap();
}

#[tokio::test]
async fn wrong_current_passwords_are_throttled_as_failed_log_ins_are() {
    let app = spawn_app().await;
    let ann = app.user("Ann").await;
    let token = ann.tokens.access_token.as_str();
    for _ in 0..5 {
        let wrong = app.http.change_password(token, "guess", NEW_PASSWORD).await;
        assert_eq!(code(wrong), "wrong_password");
    }
    let right = app
        .http
        .change_password(token, PASSWORD, NEW_PASSWORD)
        .await;
    let err = right.unwrap_err();
    assert_eq!(err.code(), Some("too_many_attempts"));
    assert!(err.retry_after_ms().is_some());
    // The guesses count against log-ins too, and deletion asks the same.
    assert_eq!(
        code(app.http.login(&ann.phone, PASSWORD).await),
        "too_many_attempts"
    );
    assert_eq!(
        code(app.http.delete_account(token, PASSWORD).await),
        "too_many_attempts"
    );
    app.http.me(token).await.unwrap();
}

#[tokio::test]
async fn a_user_lists_their_devices_and_ending_one_closes_it() {
    let app = spawn_app().await;
    let ann = app.user("Ann").await;
    let tablet = another_session(&app, &ann, "tablet").await;
    let token = ann.tokens.access_token.as_str();
    let listed = app.http.sessions(token).await.unwrap().sessions;
    assert_eq!(listed.len(), 2);
    let mine: Vec<(u64, &str, bool)> = (listed.iter())
        .map(|s| (s.session_id, s.device_name.as_str(), s.current))
        .collect();
    assert!(
        mine.contains(&(ann.tokens.session_id, "", true)),
        "{mine:?}"
    );
    assert!(
        mine.contains(&(tablet.session_id, "tablet", false)),
        "{mine:?}"
    );
    assert!(
        listed
            .iter()
            .all(|s| s.last_active_at_ms >= s.created_at_ms)
    );
    // Most recently active first: the tablet refreshes.
    let tablet = app.http.refresh(&tablet.refresh_token).await.unwrap();
    let listed = app.http.sessions(token).await.unwrap().sessions;
    assert_eq!(listed[0].session_id, tablet.session_id);

    let socket = Connection::connect(&app.base_url, &tablet.access_token)
        .await
        .unwrap();
    socket.ping().await.unwrap();
    app.http
        .revoke_session(token, tablet.session_id)
        .await
        .unwrap();
    assert_eq!(socket.wait_closed(SOCKET_CLOSES).await, revoked());
    assert_eq!(
        code(app.http.me(&tablet.access_token).await),
        "session_revoked"
    );
    assert_eq!(
        code(app.http.refresh(&tablet.refresh_token).await),
        "invalid_refresh_token"
    );
    let listed = app.http.sessions(token).await.unwrap().sessions;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        code(app.http.revoke_session(token, tablet.session_id).await),
        "unknown_session"
    );
}

#[tokio::test]
async fn another_user_s_session_is_answered_as_unknown_and_left_alone() {
    let app = spawn_app().await;
    let (ann, bo) = (app.user("Ann").await, app.user("Bo").await);
    let socket = app.connect(&bo).await;
    for path in [
        format!("/v1/me/sessions/{}", bo.tokens.session_id),
        "/v1/me/sessions/123".to_string(),
        "/v1/me/sessions/not-an-id".to_string(),
    ] {
        let (status, body) = api(&app, &ann, "DELETE", &path, Value::Null).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("unknown_session"))
        );
    }
    let bo_sessions = app.http.sessions(&bo.tokens.access_token).await.unwrap();
    assert_eq!(bo_sessions.sessions.len(), 1);
    socket.ping().await.unwrap();
    app.http.me(&bo.tokens.access_token).await.unwrap();
}

#[tokio::test]
async fn a_deleted_account_signs_out_everywhere_is_unreachable_and_is_restored_within_its_grace() {
    let app = spawn_app().await;
    let (ann, bo, cy) = (
        app.user("Ann").await,
        app.user("Bo").await,
        app.user("Cy").await,
    );
    let bo_conn = app.connect(&bo).await;
    bo_conn.send_text(ann.id, "m0", "hi Ann").await.unwrap();
    let tablet = another_session(&app, &ann, "tablet").await;
    let sockets = [
        app.connect(&ann).await,
        Connection::connect(&app.base_url, &tablet.access_token)
            .await
            .unwrap(),
    ];
    let token = ann.tokens.access_token.as_str();

    // A wrong password changes nothing.
    assert_eq!(
        code(app.http.delete_account(token, "guess").await),
        "wrong_password"
    );
    sockets[0].ping().await.unwrap();

    let started = SystemClock.now_ms();
    let asked = app.http.delete_account(token, PASSWORD).await.unwrap();
    assert!(asked.requested_at_ms >= started);
    assert_eq!(asked.due_at_ms, asked.requested_at_ms + GRACE_MS);
    for socket in &sockets {
        assert_eq!(socket.wait_closed(SOCKET_CLOSES).await, revoked());
    }
    assert_eq!(code(app.http.me(token).await), "session_revoked");
    // Asking twice: the first ended the session that would ask.
    assert_eq!(
        code(app.http.delete_account(token, PASSWORD).await),
        "session_revoked"
    );

    // Signing in says the account is being deleted, only to its owner.
    let (status, body) = app
        .http
        .request_json(
            "POST",
            "/v1/sessions",
            None,
            Some(&json!({"phone": ann.phone, "password": PASSWORD})),
        )
        .await
        .unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("account_deletion_pending"))
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains(&asked.due_at_ms.to_string())
    );
    assert_eq!(
        code(app.http.login(&ann.phone, "guess").await),
        "invalid_credentials"
    );

    // Nobody reaches it meanwhile.
    assert_eq!(
        code(bo_conn.send_text(ann.id, "m1", "still there?").await),
        "user_deleted"
    );
    assert_eq!(
        refused(
            &app,
            &cy,
            "POST",
            "/v1/friend-requests",
            json!({"to": ann.id.to_string()})
        )
        .await,
        "user_deleted"
    );
    let group = json!({"name": "Trip", "members": [ann.id.to_string()]});
    assert_eq!(
        refused(&app, &cy, "POST", "/v1/groups", group).await,
        "user_deleted"
    );
    let presence = app
        .http
        .presence(&bo.tokens.access_token, ann.id)
        .await
        .unwrap();
    assert_eq!((presence.online, presence.last_seen_ms), (false, None));

    // Restored by signing in again, confirming: as it was.
    assert_eq!(
        code(app.http.restore_account(&ann.phone, "guess", None).await),
        "invalid_credentials"
    );
    let restored = app
        .http
        .restore_account(&ann.phone, PASSWORD, Some("phone"))
        .await
        .unwrap();
    assert_eq!(restored.user_id, ann.id);
    let me = app.http.me(&restored.access_token).await.unwrap();
    assert_eq!(me.display_name, "Ann");
    bo_conn
        .send_text(ann.id, "m2", "welcome back")
        .await
        .unwrap();
    app.http.login(&ann.phone, PASSWORD).await.unwrap();
    assert_eq!(
        code(app.http.restore_account(&ann.phone, PASSWORD, None).await),
        "deletion_not_requested"
    );
}

#[tokio::test]
async fn after_its_grace_an_account_is_erased_its_peers_keep_its_history_and_its_phone_is_free() {
    let clock = manual_clock();
    let app = spawn_app_with_clock(|c| c.account.deletion_sweep_ms = 100, clock.clone()).await;
    let (ann, bo, cy) = (
        app.user("Ann").await,
        app.user("Bo").await,
        app.user("Cy").await,
    );
    app.befriend(&ann, &bo).await;
    let ann_conn = app.connect(&ann).await;
    let bo_conn = app.connect(&bo).await;
    let group = app
        .http
        .create_group(&ann.tokens.access_token, "Trip", &[bo.id, cy.id])
        .await
        .unwrap();
    next_group_event(&bo_conn).await;
    let direct = ann_conn.send_text(bo.id, "d1", "see you").await.unwrap();
    let in_group = ann_conn
        .send_group_text(group.group_id, "g1", "we leave at nine", &[], false)
        .await
        .unwrap();
    let before = app
        .http
        .contacts(&bo.tokens.access_token, 0, 10)
        .await
        .unwrap();
    assert_eq!(before.changes.len(), 1);

    app.http
        .delete_account(&ann.tokens.access_token, PASSWORD)
        .await
        .unwrap();
    // A second short of the grace period: nothing is erased.
    clock.advance_ms(GRACE_MS - 1_000);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        code(app.http.login(&ann.phone, PASSWORD).await),
        "account_deletion_pending"
    );
    clock.advance_ms(1_000);
    // Every token issued before has expired meanwhile (15 minutes).
    let bo_tokens = app.http.refresh(&bo.tokens.refresh_token).await.unwrap();
    let token = bo_tokens.access_token.as_str();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let name = loop {
        let names = app.http.user_names(token, &[ann.id, bo.id]).await.unwrap();
        if names.users[0].deleted {
            break names.users;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never erased: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (
            name[0].user_id,
            name[0].display_name.as_str(),
            name[0].deleted
        ),
        (ann.id, "Deleted account", true)
    );
    assert_eq!(
        (name[1].display_name.as_str(), name[1].deleted),
        ("Bo", false)
    );

    // The group went to a member, and told those online.
    let left = next_group_event(&bo_conn).await;
    let left = if left.kind() == GroupKind::OwnerTransferred {
        next_group_event(&bo_conn).await
    } else {
        left
    };
    assert_eq!((left.kind(), left.actor), (GroupKind::MemberLeft, ann.id));
    let shown = app.http.group(token, group.group_id).await.unwrap();
    assert_eq!(shown.member_count, 2);
    assert!([bo.id, cy.id].contains(&shown.owner));
    // The friendship ended on Bo's side, as a removal.
    let changed = app.http.contacts(token, before.version, 10).await.unwrap();
    assert_eq!(changed.changes.len(), 1);
    assert_eq!(
        (changed.changes[0].user_id, changed.changes[0].removed),
        (ann.id, true)
    );
    assert!(
        app.http
            .contacts(token, 0, 10)
            .await
            .unwrap()
            .changes
            .is_empty()
    );

    // What Ann sent stays in Bo's history, under her id (named the placeholder).
    let reader = Connection::connect(&app.base_url, token).await.unwrap();
    let page = reader.pull(&direct.conversation_id, 0, 10).await.unwrap();
    assert_eq!(page.messages.len(), 1);
    assert_eq!(
        (page.messages[0].sender, text_of(&page.messages[0])),
        (ann.id, "see you")
    );
    let page = reader.pull(&in_group.conversation_id, 0, 10).await.unwrap();
    assert!(
        page.messages
            .iter()
            .any(|m| m.sender == ann.id && text_of(m) == "we leave at nine")
    );

    // Nobody signs in as Ann again, reaches her, or adds her.
    assert_eq!(
        code(app.http.login(&ann.phone, PASSWORD).await),
        "invalid_credentials"
    );
    assert_eq!(
        code(app.http.restore_account(&ann.phone, PASSWORD, None).await),
        "invalid_credentials"
    );
    assert_eq!(
        code(reader.send_text(ann.id, "d2", "are you there?").await),
        "user_deleted"
    );
    assert_eq!(
        code(app.http.friend_request(token, ann.id, "").await),
        "user_deleted"
    );
    assert_eq!(
        code(
            app.http
                .add_group_members(token, group.group_id, &[ann.id])
                .await
        ),
        "user_deleted"
    );
    // The phone registers again, as somebody new.
    let again = app
        .http
        .register(&ann.phone, PASSWORD, "Another Ann")
        .await
        .unwrap();
    assert_ne!(again.user_id, ann.id);
    let tokens = app.http.login(&ann.phone, PASSWORD).await.unwrap();
    assert_eq!(tokens.user_id, again.user_id);
}

#[tokio::test]
async fn bad_deletion_and_name_requests_get_their_codes() {
    let app = spawn_app().await;
    let ann = app.user("Ann").await;
    for (method, path, body, status, expected) in [
        ("POST", "/v1/me/deletion", json!({}), 400, "invalid_json"),
        (
            "POST",
            "/v1/me/deletion",
            json!({"password": "guess"}),
            403,
            "wrong_password",
        ),
        (
            "POST",
            "/v1/users/names",
            json!({"user_ids": vec!["1"; 101]}),
            400,
            "too_many_users",
        ),
        (
            "POST",
            "/v1/users/names",
            json!({"user_ids": ["x"]}),
            400,
            "invalid_json",
        ),
    ] {
        let (got, answer) = api(&app, &ann, method, path, body).await;
        assert_eq!(
            (got, answer["code"].as_str()),
            (status, Some(expected)),
            "{path}"
        );
    }
    let restore = json!({"phone": ann.phone, "password": PASSWORD});
    let (status, body) = app
        .http
        .request_json("POST", "/v1/accounts/restore", None, Some(&restore))
        .await
        .unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("deletion_not_requested"))
    );
    // Unknown ids are left out; nothing changed.
    let names = app
        .http
        .user_names(&ann.tokens.access_token, &[42, ann.id])
        .await
        .unwrap();
    assert_eq!(names.users.len(), 1);
    assert_eq!(
        (names.users[0].display_name.as_str(), names.users[0].deleted),
        ("Ann", false)
    );
    app.http.me(&ann.tokens.access_token).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_on_the_core_closes_the_other_sessions_on_every_gateway() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let core = spawn_app_with(|c| {
        c.server.role = Role::Core;
        c.redis.url = Some(Secret::new(url.clone()));
        c.redis.lease_ttl_ms = 2_000;
    })
    .await;
    let mut gateways = Vec::new();
    for _ in 0..2 {
        gateways.push(
            spawn_app_with(|c| {
                c.server.role = Role::Gateway;
                c.redis.url = Some(Secret::new(url.clone()));
            })
            .await,
        );
    }
    every_shard_leased(&redis).await;
    every_gateway_subscribed(&redis, 2).await;
    let ann = core.user("Ann").await;
    let phone = another_session(&core, &ann, "phone").await;
    let tablet = another_session(&core, &ann, "tablet").await;
    let here = Connection::connect(&gateways[0].base_url, &ann.tokens.access_token)
        .await
        .unwrap();
    let there = [
        Connection::connect(&gateways[0].base_url, &phone.access_token)
            .await
            .unwrap(),
        Connection::connect(&gateways[1].base_url, &tablet.access_token)
            .await
            .unwrap(),
    ];
    for conn in there.iter().chain([&here]) {
        conn.ping().await.unwrap();
    }
    // Both gateways deliver Ann's topic before the change is announced.
    subscribed(&admin(&redis), &format!("u.{}", ann.id), 2).await;

    core.http
        .change_password(&ann.tokens.access_token, PASSWORD, NEW_PASSWORD)
        .await
        .unwrap();
    for conn in &there {
        assert_eq!(conn.wait_closed(SOCKET_CLOSES).await, revoked());
    }
    here.ping().await.unwrap();
    here.list_conversations(10, "").await.unwrap();
}

/// One `superapp-cli` run: its JSON lines on stdout, or its error's code.
fn cli(base: &str, profile: &std::path::Path, args: &[&str]) -> Result<Vec<Value>, String> {
    let output = Command::new(cli_path())
        .args(["--server", base, "--profile"])
        .arg(profile)
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    if !output.status.success() {
        let error: Value = serde_json::from_slice(&output.stderr).unwrap();
        return Err(error["error"].as_str().unwrap().to_string());
    }
    let stdout = String::from_utf8(output.stdout).unwrap();
    Ok(stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect())
}

#[tokio::test]
async fn account_security_from_the_cli() {
    let app = spawn_app().await;
    let base = app.base_url.clone();
    let ann = app.user("Ann").await;
    let profiles = tempfile::tempdir().unwrap();
    let (phone, user_id) = (ann.phone.clone(), ann.id);
    let (laptop, desk) = (profiles.path().join("laptop"), profiles.path().join("desk"));
    tokio::task::spawn_blocking(move || {
        let login = ["login", "--phone", &phone, "--password", PASSWORD];
        cli(&base, &laptop, &login).unwrap();
        cli(&base, &desk, &login).unwrap();
        let devices = cli(&base, &laptop, &["device", "list"]).unwrap();
        assert_eq!(devices.len(), 3, "{devices:?}");
        let current: Vec<&Value> = devices.iter().filter(|d| d["current"] == true).collect();
        assert_eq!(current.len(), 1);
        assert_eq!(current[0]["device_name"], "superapp-cli");
        let desk_session = cli(&base, &desk, &["device", "list"]).unwrap();
        let desk_session = (desk_session.iter())
            .find(|d| d["current"] == true)
            .unwrap()["session_id"]
            .as_str()
            .unwrap()
            .to_string();

        let changed = cli(
            &base,
            &laptop,
            &["password", "--current", PASSWORD, "--new", NEW_PASSWORD],
        )
        .unwrap();
        assert_eq!(changed[0]["password_changed"], true);
        // The desk's session ended; the laptop's goes on with its new tokens.
        assert_eq!(cli(&base, &desk, &["me"]), Err("session_revoked".into()));
        assert_eq!(
            cli(&base, &laptop, &["me"]).unwrap()[0]["user_id"],
            user_id.to_string()
        );
        assert_eq!(
            cli(
                &base,
                &laptop,
                &["device", "revoke", "--session", &desk_session]
            ),
            Err("unknown_session".into())
        );
        let names = cli(&base, &laptop, &["names", "--users", &user_id.to_string()]).unwrap();
        assert_eq!(
            (
                names[0]["display_name"].as_str(),
                names[0]["deleted"].as_bool()
            ),
            (Some("Ann"), Some(false))
        );

        assert_eq!(
            cli(
                &base,
                &laptop,
                &["account", "delete", "--password", PASSWORD]
            ),
            Err("wrong_password".into())
        );
        let deleted = cli(
            &base,
            &laptop,
            &["account", "delete", "--password", NEW_PASSWORD],
        )
        .unwrap();
        assert!(
            deleted[0]["due_at_ms"].as_i64().unwrap()
                > deleted[0]["requested_at_ms"].as_i64().unwrap()
        );
        assert_eq!(cli(&base, &laptop, &["me"]), Err("not_logged_in".into()));
        let relogin = ["login", "--phone", &phone, "--password", NEW_PASSWORD];
        assert_eq!(
            cli(&base, &laptop, &relogin),
            Err("account_deletion_pending".into())
        );
        let restore = [
            "account",
            "restore",
            "--phone",
            &phone,
            "--password",
            NEW_PASSWORD,
        ];
        let restored = cli(&base, &laptop, &restore).unwrap();
        assert_eq!(restored[0]["restored"], true);
        assert_eq!(
            cli(&base, &laptop, &["me"]).unwrap()[0]["display_name"],
            "Ann"
        );
        let own = cli(&base, &laptop, &["device", "list"]).unwrap();
        let own = own[0]["session_id"].as_str().unwrap().to_string();
        let revoked = cli(&base, &laptop, &["device", "revoke", "--session", &own]).unwrap();
        assert_eq!(revoked[0]["revoked"], own);
        assert_eq!(cli(&base, &laptop, &["me"]), Err("not_logged_in".into()));
    })
    .await
    .unwrap();
}
