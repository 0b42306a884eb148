//! Registering, logging in, tokens and sessions over the HTTP API.

use std::time::{Duration, Instant};

use serde_json::json;
use superapp_account::token::{Claims, TokenSigner};

use crate::helpers::{PASSWORD, fresh_phone, spawn_app, spawn_app_with};

#[tokio::test]
async fn a_new_user_registers_logs_in_and_reads_their_profile() {
    let app = spawn_app().await;
    let phone = fresh_phone();
    let account = app.http.register(&phone, PASSWORD, "Ann").await.unwrap();
    assert_eq!(account.display_name, "Ann");
    let tokens = app.http.login(&phone, PASSWORD).await.unwrap();
    let me = app.http.me(&tokens.access_token).await.unwrap();
    assert_eq!(
        (me.user_id, me.phone.as_str()),
        (account.user_id, phone.as_str())
    );
    // Access tokens live at most 15 minutes.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(tokens.access_expires_at_ms <= now + 900_000 + 1_000);
}

#[tokio::test]
async fn ids_travel_as_strings_in_json() {
    let app = spawn_app().await;
    let body = json!({"phone": fresh_phone(), "password": PASSWORD, "display_name": "Bo"});
    let (status, value) = app
        .http
        .request_json("POST", "/v1/accounts", None, Some(&body))
        .await
        .unwrap();
    assert_eq!(status, 201);
    assert!(value["user_id"].is_string(), "{value}");
}

#[tokio::test]
async fn bad_registrations_get_their_own_codes_and_store_nothing() {
    let app = spawn_app().await;
    let phone = fresh_phone();
    let cases = [
        (
            json!({"phone": "13800138000", "password": PASSWORD, "display_name": "A"}),
            400,
            "invalid_phone",
        ),
        (
            json!({"phone": "+0123", "password": PASSWORD, "display_name": "A"}),
            400,
            "invalid_phone",
        ),
        (
            json!({"phone": phone, "password": "short", "display_name": "A"}),
            400,
            "password_too_short",
        ),
        (
            json!({"phone": phone, "password": "x".repeat(129), "display_name": "A"}),
            400,
            "password_too_long",
        ),
        (
            json!({"phone": phone, "password": "password123", "display_name": "A"}),
            400,
            "password_too_common",
        ),
        (
            json!({"phone": phone, "password": "qwertyuiop", "display_name": "A"}),
            400,
            "password_too_common",
        ),
        (
            json!({"phone": phone, "password": PASSWORD, "display_name": " "}),
            400,
            "invalid_display_name",
        ),
        (
            json!({"phone": phone, "password": PASSWORD}),
            400,
            "invalid_json",
        ),
    ];
    for (body, status, code) in cases {
        let (got, value) = app
            .http
            .request_json("POST", "/v1/accounts", None, Some(&body))
            .await
            .unwrap();
        assert_eq!(
            (got, value["code"].as_str().unwrap()),
            (status, code),
            "{body}"
        );
    }
    // None of them took the phone.
    app.http.register(&phone, PASSWORD, "A").await.unwrap();
    let again = app.http.register(&phone, PASSWORD, "A").await.unwrap_err();
    assert_eq!(again.code(), Some("phone_taken"));
}

#[tokio::test]
async fn malformed_and_oversize_bodies_are_refused_with_codes() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/accounts", app.base_url);
    let send = |body: Vec<u8>, content_type: &'static str| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let r = client
                .post(url)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let v: serde_json::Value = r.json().await.unwrap();
            (status, v["code"].as_str().unwrap().to_string())
        }
    };
    assert_eq!(
        send(b"{not json".to_vec(), "application/json").await,
        (400, "invalid_json".into())
    );
    assert_eq!(
        send(b"{}".to_vec(), "text/plain").await,
        (415, "unsupported_media_type".into())
    );
    assert_eq!(
        send(vec![b' '; 200 * 1024], "application/json").await,
        (413, "body_too_large".into())
    );
    let r = client
        .get(format!("{}/v1/nowhere", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

#[tokio::test]
async fn an_unknown_phone_and_a_wrong_password_look_the_same() {
    let app = spawn_app().await;
    let phone = fresh_phone();
    app.http.register(&phone, PASSWORD, "Ann").await.unwrap();
    let wrong = app
        .http
        .login(&phone, "not the password at all")
        .await
        .unwrap_err();
    let unknown = app.http.login(&fresh_phone(), PASSWORD).await.unwrap_err();
    assert_eq!(wrong.code(), Some("invalid_credentials"));
    assert_eq!(wrong.to_string(), unknown.to_string());
}

#[tokio::test]
async fn repeated_failed_logins_are_throttled_per_account() {
    let app = spawn_app_with(|c| c.auth.login_failures_per_account = 3).await;
    let phone = fresh_phone();
    app.http.register(&phone, PASSWORD, "Ann").await.unwrap();
    for _ in 0..3 {
        let e = app
            .http
            .login(&phone, "wrong wrong wrong")
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("invalid_credentials"));
    }
    // Even the right password waits now, and the answer says how long.
    let e = app.http.login(&phone, PASSWORD).await.unwrap_err();
    assert_eq!(e.code(), Some("too_many_attempts"));
    assert!(e.retry_after_ms().unwrap() > 0);
    // Other accounts are unaffected.
    let other = fresh_phone();
    app.http.register(&other, PASSWORD, "Bo").await.unwrap();
    app.http.login(&other, PASSWORD).await.unwrap();
}

#[tokio::test]
async fn repeated_failed_logins_are_throttled_per_client_address() {
    let app = spawn_app_with(|c| c.auth.login_failures_per_address = 4).await;
    for _ in 0..4 {
        let e = app.http.login(&fresh_phone(), PASSWORD).await.unwrap_err();
        assert_eq!(e.code(), Some("invalid_credentials"));
    }
    let e = app.http.login(&fresh_phone(), PASSWORD).await.unwrap_err();
    assert_eq!(e.code(), Some("too_many_attempts"));
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_refresh_token_ends_the_session() {
    let app = spawn_app().await;
    let user = app.user("Ann").await;
    let second = app.http.refresh(&user.tokens.refresh_token).await.unwrap();
    assert_ne!(second.refresh_token, user.tokens.refresh_token);
    assert_eq!(second.session_id, user.tokens.session_id);
    app.http.me(&second.access_token).await.unwrap();

    // The first token again: somebody replayed it. The whole family ends.
    let replay = app
        .http
        .refresh(&user.tokens.refresh_token)
        .await
        .unwrap_err();
    assert_eq!(replay.code(), Some("invalid_refresh_token"));
    let e = app.http.refresh(&second.refresh_token).await.unwrap_err();
    assert_eq!(e.code(), Some("invalid_refresh_token"));
    let e = app.http.me(&second.access_token).await.unwrap_err();
    assert_eq!(e.code(), Some("session_revoked"));
    let e = app.http.refresh("made-up").await.unwrap_err();
    assert_eq!(e.code(), Some("invalid_refresh_token"));
}

#[tokio::test]
async fn logging_out_revokes_access_and_refresh() {
    let app = spawn_app().await;
    let user = app.user("Ann").await;
    app.http.logout(&user.tokens.access_token).await.unwrap();
    assert_eq!(
        app.http
            .me(&user.tokens.access_token)
            .await
            .unwrap_err()
            .code(),
        Some("session_revoked")
    );
    assert_eq!(
        app.http
            .refresh(&user.tokens.refresh_token)
            .await
            .unwrap_err()
            .code(),
        Some("invalid_refresh_token")
    );
    // Other sessions of the same user live on.
    let other = app.http.login(&user.phone, PASSWORD).await.unwrap();
    app.http.me(&other.access_token).await.unwrap();
}

#[tokio::test]
async fn wrong_forged_and_expired_tokens_are_refused() {
    let app = spawn_app().await;
    let user = app.user("Ann").await;
    let lifetime = 900_000;
    let signer = TokenSigner::load_or_create(&app.dir.path().join("token.key"), lifetime).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let claims = Claims {
        sub: superapp_proto::UserId(user.id),
        sid: user.tokens.session_id,
        iat: now,
        exp: now + lifetime,
    };
    let expired = signer.sign(&Claims {
        iat: 0,
        exp: 1,
        ..claims
    });
    let foreign = TokenSigner::from_seed(&[1; 32], lifetime).sign(&claims);
    // Signed with the core's own key, but living far past the access lifetime.
    let far_future = signer.sign(&Claims {
        exp: i64::MAX,
        ..claims
    });
    let mut tampered = user.tokens.access_token.clone();
    tampered.insert(5, 'x');
    for (token, code) in [
        ("garbage", "invalid_token"),
        (tampered.as_str(), "invalid_token"),
        (foreign.as_str(), "invalid_token"),
        (far_future.as_str(), "invalid_token"),
        (expired.as_str(), "token_expired"),
        // The retired HMAC format: expired, so the client refreshes.
        ("v1.eyJzdWIiOjF9.AAAA", "token_expired"),
    ] {
        let (status, v) = app
            .http
            .request_json("GET", "/v1/me", Some(token), None)
            .await
            .unwrap();
        assert_eq!(
            (status, v["code"].as_str().unwrap()),
            (401, code),
            "{token}"
        );
    }
    // The same key signs the tokens the server issues.
    app.http.me(&signer.sign(&claims)).await.unwrap();
    let (status, v) = app
        .http
        .request_json("GET", "/v1/me", None, None)
        .await
        .unwrap();
    assert_eq!(
        (status, v["code"].as_str().unwrap()),
        (401, "missing_token")
    );
}

#[tokio::test]
async fn a_client_holding_a_token_of_the_retired_format_refreshes_and_carries_on() {
    let app = spawn_app().await;
    let user = app.user("Ann").await;
    // An access token of the HMAC format, as issued before the upgrade.
    let old = "v1.eyJzdWIiOjEsInNpZCI6MiwiZXhwIjo5OTk5OTk5OTk5OTk5fQ.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let (status, v) = app
        .http
        .request_json("GET", "/v1/me", Some(old), None)
        .await
        .unwrap();
    assert_eq!((status, v["code"].as_str()), (401, Some("token_expired")));
    // Refresh tokens are opaque secrets in the store: the session carries on.
    let fresh = app.http.refresh(&user.tokens.refresh_token).await.unwrap();
    assert!(fresh.access_token.starts_with("v2."));
    app.http.me(&fresh.access_token).await.unwrap();
}

#[tokio::test]
async fn the_token_key_file_is_owner_only() {
    let app = spawn_app().await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(app.dir.path().join("token.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

/// Sends `n` log-ins at once and counts the answers by code.
async fn codes_of_concurrent(
    app: &crate::helpers::TestApp,
    path: &str,
    bodies: Vec<serde_json::Value>,
) -> std::collections::BTreeMap<String, usize> {
    let client = reqwest::Client::new();
    let answers = futures_util::future::join_all(bodies.into_iter().map(|body| {
        let request = client
            .post(format!("{}{path}", app.base_url))
            .json(&body)
            .send();
        async move {
            let r = request.await.unwrap();
            let status = r.status().as_u16();
            let v: serde_json::Value = r.json().await.unwrap();
            match v["code"].as_str() {
                Some(code) => code.to_string(),
                None => status.to_string(),
            }
        }
    }))
    .await;
    let mut codes = std::collections::BTreeMap::new();
    for code in answers {
        *codes.entry(code).or_default() += 1;
    }
    codes
}

#[tokio::test]
async fn concurrent_wrong_passwords_past_the_address_limit_are_refused_before_hashing() {
    let app = spawn_app_with(|c| {
        c.auth.login_failures_per_address = 5;
        c.auth.login_failures_per_account = 1_000;
    })
    .await;
    let phone = fresh_phone();
    app.http.register(&phone, PASSWORD, "Ann").await.unwrap();
    let bodies = (0..20)
        .map(|_| json!({"phone": phone, "password": "not the password at all"}))
        .collect();
    let codes = codes_of_concurrent(&app, "/v1/sessions", bodies).await;
    assert_eq!(codes.get("invalid_credentials"), Some(&5), "{codes:?}");
    assert_eq!(codes.get("too_many_attempts"), Some(&15), "{codes:?}");
}

#[tokio::test]
async fn concurrent_wrong_passwords_past_the_account_limit_are_refused_before_hashing() {
    let app = spawn_app_with(|c| c.auth.login_failures_per_account = 3).await;
    let phone = fresh_phone();
    app.http.register(&phone, PASSWORD, "Ann").await.unwrap();
    let bodies = (0..12)
        .map(|_| json!({"phone": phone, "password": "not the password at all"}))
        .collect();
    let codes = codes_of_concurrent(&app, "/v1/sessions", bodies).await;
    assert_eq!(codes.get("invalid_credentials"), Some(&3), "{codes:?}");
    assert_eq!(codes.get("too_many_attempts"), Some(&9), "{codes:?}");
}

#[tokio::test]
async fn a_right_password_does_not_use_up_its_address_s_failures() {
    let app = spawn_app_with(|c| c.auth.login_failures_per_address = 2).await;
    let user = app.user("Ann").await;
    for _ in 0..3 {
        app.http.login(&user.phone, PASSWORD).await.unwrap();
    }
    let e = app.http.login(&user.phone, "wrong wrong wrong").await;
    assert_eq!(e.unwrap_err().code(), Some("invalid_credentials"));
}

#[tokio::test]
async fn registrations_from_one_address_are_throttled_before_hashing() {
    let app = spawn_app_with(|c| c.auth.registrations_per_address = 3).await;
    let bodies = (0..10)
        .map(|_| json!({"phone": fresh_phone(), "password": PASSWORD, "display_name": "A"}))
        .collect();
    let codes = codes_of_concurrent(&app, "/v1/accounts", bodies).await;
    assert_eq!(codes.get("201"), Some(&3), "{codes:?}");
    assert_eq!(codes.get("too_many_registrations"), Some(&7), "{codes:?}");
    let e = app
        .http
        .register(&fresh_phone(), PASSWORD, "A")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("too_many_registrations"));
    assert!(e.retry_after_ms().unwrap() > 3_500_000, "an hour's window");
}

/// 2,000 registrations at once, from one address whose throttle is lifted
/// here, so that they reach the hashing queue: beyond its bound they are
/// answered `busy` at once, and a log-in sent while the queue is full is
/// hashed before the registrations queued ahead of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_flood_is_answered_busy_and_a_log_in_overtakes_it() {
    let app = spawn_app_with(|c| {
        c.server.max_connections_per_address = 10_000;
        c.auth.registration_queue = 64;
    })
    .await;
    let user = app.user("Ann").await;
    let client = reqwest::Client::new();
    let created = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (busy_tx, mut busy_rx) = tokio::sync::mpsc::unbounded_channel();
    let flood: Vec<_> = (0..2_000)
        .map(|_| {
            let request = client
                .post(format!("{}/v1/accounts", app.base_url))
                .json(&json!({"phone": fresh_phone(), "password": PASSWORD, "display_name": "F"}))
                .send();
            let (created, busy_tx) = (created.clone(), busy_tx.clone());
            tokio::spawn(async move {
                let r = request.await.unwrap();
                match r.status().as_u16() {
                    201 => {
                        created.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        "created".to_string()
                    }
                    503 => {
                        assert_eq!(r.headers()["retry-after"], "1");
                        let v: serde_json::Value = r.json().await.unwrap();
                        let _ = busy_tx.send(());
                        v["code"].as_str().unwrap().to_string()
                    }
                    other => panic!("registration answered {other}"),
                }
            })
        })
        .collect();
    // The queue is full once the first registration is turned away.
    tokio::time::timeout(Duration::from_secs(60), busy_rx.recv())
        .await
        .expect("no registration was answered busy");
    let started = Instant::now();
    let tokens = app.http.login(&user.phone, PASSWORD).await.unwrap();
    let waited = started.elapsed();
    let created_before_log_in = created.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(tokens.user_id, user.id);
    let mut answers = std::collections::BTreeMap::new();
    for task in flood {
        *answers.entry(task.await.unwrap()).or_insert(0usize) += 1;
    }
    let created = answers.get("created").copied().unwrap_or(0);
    assert_eq!(answers.get("busy").copied().unwrap_or(0) + created, 2_000);
    assert!(
        created_before_log_in < created,
        "the log-in waited for the queued registrations ({created_before_log_in} of {created})"
    );
    // The bound in docs/architecture.md is a few hashes' time; this is generous.
    assert!(waited < Duration::from_secs(10), "{waited:?}");
}

#[tokio::test]
async fn a_log_in_with_an_unknown_phone_takes_as_long_as_one_with_a_wrong_password() {
    // An unknown phone is answered after a decoy hash, so neither the code
    // nor the time tells whether a phone has an account.
    let app = spawn_app().await;
    let mut users = Vec::new();
    for i in 0..9 {
        users.push(app.user(&format!("U{i}")).await);
    }
    let (mut wrong, mut unknown) = (Vec::new(), Vec::new());
    for user in &users {
        // In turns, so both paths share whatever else the machine does.
        for (phone, times) in [
            (user.phone.clone(), &mut wrong),
            (fresh_phone(), &mut unknown),
        ] {
            let started = Instant::now();
            let refused = app
                .http
                .login(&phone, "not the passphrase at all")
                .await
                .unwrap_err();
            times.push(started.elapsed());
            assert_eq!(refused.code(), Some("invalid_credentials"));
        }
    }
    wrong.sort();
    unknown.sort();
    let ratio = unknown[4].as_secs_f64() / wrong[4].as_secs_f64();
    // Without the decoy, an unknown phone is answered in a small fraction of
    // a hash; the stated bound is a factor of three either way.
    assert!(
        (1.0 / 3.0..=3.0).contains(&ratio),
        "median unknown {:?} against median wrong {:?}",
        unknown[4],
        wrong[4]
    );
}
