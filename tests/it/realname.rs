//! Real-name verification over real HTTP: a user submits a legal name and
//! a resident identity number, the sandbox provider decides (at once, or
//! later when the user reads the status again), and the number is shown
//! only masked, stored only sealed, and never logged.

use std::time::Duration;

use superapp::config::Config;
use superapp_account::config::ProviderKind;
use superapp_account::policy::real_name::check_character;
use superapp_client::{HttpClient, RealNameRejection, RealNameStatus};
use superapp_kit::secret::Secret;

use crate::helpers::{
    PASSWORD, TIER_KEY, fresh_phone, spawn_app, spawn_app_with, start, start_server_logging,
};

/// A valid number born on 23 June 1987 whose sequence code is `sequence`,
/// which decides the sandbox's answer (999 rejects, 998 is pending then
/// verified, 997 pending then rejected, 995 a provider that is down, any
/// other verifies at once).
fn number(sequence: &str) -> String {
    let body = format!("44030519870623{sequence}");
    format!("{body}{}", check_character(&body).unwrap())
}

const NAME: &str = "阿依古丽·买买提";

#[tokio::test]
async fn a_user_is_verified_at_once_and_sees_the_number_only_masked() {
    let app = spawn_app().await;
    let ann = app.user("Ann").await;
    let token = &ann.tokens.access_token;
    let before = app.http.real_name(token).await.unwrap();
    assert_eq!(before.status, RealNameStatus::Unverified);
    assert_eq!(before.id_number_masked, None);

    let id = number("002");
    let (status, answer) = app
        .http
        .request_json(
            "POST",
            "/v1/me/real-name",
            Some(token),
            Some(&serde_json::json!({"legal_name": NAME, "id_number": id})),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "verified");
    assert_eq!(answer["legal_name"], NAME);
    let masked = format!("4{}{}", "*".repeat(16), &id[17..]);
    assert_eq!(answer["id_number_masked"], masked.as_str());
    assert!(answer["decided_at_ms"].as_i64().unwrap() > 0);
    assert!(!answer.to_string().contains(&id[1..17]), "{answer}");

    let (status, read) = app
        .http
        .request_json("GET", "/v1/me/real-name", Some(token), None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(read, answer);
    assert!(!read.to_string().contains(&id[1..17]));

    // Verified is final.
    let again = app
        .http
        .submit_real_name(token, NAME, &number("002"))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Some("already_verified"));
    assert_eq!(
        app.http.real_name(token).await.unwrap().status,
        RealNameStatus::Verified
    );
}

#[tokio::test]
async fn a_pending_submission_is_answered_202_and_decided_when_read_again() {
    let app = spawn_app().await;
    let ann = app.user("Ann").await;
    let token = &ann.tokens.access_token;
    let body = serde_json::json!({"legal_name": NAME, "id_number": number("998")});
    let (status, answer) = app
        .http
        .request_json("POST", "/v1/me/real-name", Some(token), Some(&body))
        .await
        .unwrap();
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "pending");
    assert!(answer["decided_at_ms"].is_null());
    // A second submission waits for the first.
    let waiting = app
        .http
        .submit_real_name(token, NAME, &number("003"))
        .await
        .unwrap_err();
    assert_eq!(waiting.code(), Some("verification_pending"));
    let read = app.http.real_name(token).await.unwrap();
    assert_eq!(read.status, RealNameStatus::Verified);
    assert_eq!(read.legal_name.as_deref(), Some(NAME));

    // Pending, then rejected: the user may submit again.
    let bo = app.user("Bo").await;
    let token = &bo.tokens.access_token;
    let pending = app
        .http
        .submit_real_name(token, "李四", &number("997"))
        .await
        .unwrap();
    assert_eq!(pending.status, RealNameStatus::Pending);
    let rejected = app.http.real_name(token).await.unwrap();
    assert_eq!(rejected.status, RealNameStatus::Rejected);
    assert_eq!(rejected.rejection, Some(RealNameRejection::Mismatch));
    let verified = app
        .http
        .submit_real_name(token, "李四", &number("004"))
        .await
        .unwrap();
    assert_eq!(verified.status, RealNameStatus::Verified);
}

#[tokio::test]
async fn bad_inputs_get_clear_codes_and_change_nothing() {
    let app = spawn_app().await;
    let ann = app.user("Ann").await;
    let token = &ann.tokens.access_token;
    let good = number("002");
    let mut wrong_check = good.clone().into_bytes();
    wrong_check[17] = if wrong_check[17] == b'1' { b'2' } else { b'1' };
    let wrong_check = String::from_utf8(wrong_check).unwrap();
    let mut wrong_digit = good.clone().into_bytes();
    wrong_digit[9] = if wrong_digit[9] == b'5' { b'6' } else { b'5' };
    let wrong_digit = String::from_utf8(wrong_digit).unwrap();
    let cases = [
        (
            NAME.to_string(),
            good[..17].to_string(),
            "invalid_id_number",
        ),
        (NAME.to_string(), wrong_check, "invalid_id_number"),
        (NAME.to_string(), wrong_digit, "invalid_id_number"),
        (
            NAME.to_string(),
            "4403051987062300AB".into(),
            "invalid_id_number",
        ),
        (NAME.to_string(), "9".repeat(30_000), "invalid_id_number"),
        ("张".to_string(), good.clone(), "invalid_legal_name"),
        ("张\u{0}三".to_string(), good.clone(), "invalid_legal_name"),
        ("张三3".to_string(), good.clone(), "invalid_legal_name"),
        ("张".repeat(10_000), good.clone(), "invalid_legal_name"),
    ];
    for (name, id, code) in &cases {
        let body = serde_json::json!({"legal_name": name, "id_number": id});
        let (status, answer) = app
            .http
            .request_json("POST", "/v1/me/real-name", Some(token), Some(&body))
            .await
            .unwrap();
        assert_eq!(
            (status, answer["code"].as_str()),
            (400, Some(*code)),
            "{answer}"
        );
    }
    // A body over server.max_body_bytes never reaches the room.
    let huge = serde_json::json!({"legal_name": "张".repeat(40_000), "id_number": good});
    let (status, answer) = app
        .http
        .request_json("POST", "/v1/me/real-name", Some(token), Some(&huge))
        .await
        .unwrap();
    assert_eq!(
        (status, answer["code"].as_str()),
        (413, Some("body_too_large"))
    );
    let missing = serde_json::json!({"legal_name": NAME});
    let (status, answer) = app
        .http
        .request_json("POST", "/v1/me/real-name", Some(token), Some(&missing))
        .await
        .unwrap();
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("invalid_json"))
    );

    assert_eq!(
        app.http.real_name(token).await.unwrap().status,
        RealNameStatus::Unverified
    );
    // Refused input spent none of the day's three submissions.
    for _ in 0..2 {
        let rejected = app
            .http
            .submit_real_name(token, NAME, &number("999"))
            .await
            .unwrap();
        assert_eq!(rejected.status, RealNameStatus::Rejected);
    }
    let verified = app.http.submit_real_name(token, NAME, &good).await.unwrap();
    assert_eq!(verified.status, RealNameStatus::Verified);
}

#[tokio::test]
async fn a_second_account_with_the_same_number_is_refused() {
    let app = spawn_app().await;
    let (ann, bo) = (app.user("Ann").await, app.user("Bo").await);
    let id = number("002");
    app.http
        .submit_real_name(&ann.tokens.access_token, NAME, &id)
        .await
        .unwrap();
    let taken = app
        .http
        .submit_real_name(&bo.tokens.access_token, NAME, &id)
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Some("id_number_taken"));
    let bo_status = app.http.real_name(&bo.tokens.access_token).await.unwrap();
    assert_eq!(bo_status.status, RealNameStatus::Unverified);
    // The holder's number, rejected, is free again; a held one stays held.
    let cy = app.user("Cy").await;
    let rejected = app
        .http
        .submit_real_name(&cy.tokens.access_token, "王五", &number("999"))
        .await
        .unwrap();
    assert_eq!(rejected.status, RealNameStatus::Rejected);
    let free = app
        .http
        .submit_real_name(&bo.tokens.access_token, NAME, &number("999"))
        .await
        .unwrap();
    assert_eq!(free.status, RealNameStatus::Rejected);
}

#[tokio::test]
async fn a_fourth_submission_in_a_day_is_refused_with_when_to_retry() {
    let app = spawn_app().await;
    let ann = app.user("Ann").await;
    let token = &ann.tokens.access_token;
    for _ in 0..3 {
        app.http
            .submit_real_name(token, NAME, &number("999"))
            .await
            .unwrap();
    }
    let body = serde_json::json!({"legal_name": NAME, "id_number": number("002")});
    let response = reqwest::Client::new()
        .post(format!("{}/v1/me/real-name", app.base_url))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after > 23 * 3600, "{retry_after}");
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["code"], "too_many_submissions");
    assert_eq!(
        app.http.real_name(token).await.unwrap().rejection,
        Some(RealNameRejection::Mismatch)
    );
}

#[tokio::test]
async fn with_no_provider_a_submission_is_refused_as_unavailable() {
    let app = spawn_app_with(|c| c.real_name.provider = ProviderKind::Disabled).await;
    let ann = app.user("Ann").await;
    let refused = app
        .http
        .submit_real_name(&ann.tokens.access_token, NAME, &number("002"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("real_name_unavailable"));
    let status = app.http.real_name(&ann.tokens.access_token).await.unwrap();
    assert_eq!(status.status, RealNameStatus::Unverified);
}

/// Every file of the store, the write-ahead log included, and the key file.
fn store_bytes(data: &std::path::Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(data).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("account.db") {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    bytes
}

#[tokio::test]
async fn the_store_holds_neither_the_number_nor_the_name_in_the_clear_and_reads_them_after_a_restart()
 {
    let app = spawn_app().await;
    let ann = app.user("Ann").await;
    let id = number("002");
    app.http
        .submit_real_name(&ann.tokens.access_token, NAME, &id)
        .await
        .unwrap();
    let bytes = store_bytes(app.dir.path());
    assert!(bytes.len() > 4096, "the store was read");
    for needle in [
        id.as_bytes(),
        &id.as_bytes()[..17],
        b"19870623",
        NAME.as_bytes(),
        "买买提".as_bytes(),
    ] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{:?} is in account.db",
            String::from_utf8_lossy(needle)
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let key = app.dir.path().join("real_name.key");
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read(&key).unwrap().len(), 32);
    }

    // Stopped and started again on the same data dir, with its key file.
    app.shutdown.cancel();
    app.stopped.await.unwrap();
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.data_dir = app.dir.path().to_path_buf();
    config.redis.tier_key = Some(Secret::new(TIER_KEY.to_string()));
    let again = start(config, app.dir).await;
    let tokens = again.http.login(&ann.phone, PASSWORD).await.unwrap();
    let read = again.http.real_name(&tokens.access_token).await.unwrap();
    assert_eq!(read.status, RealNameStatus::Verified);
    assert_eq!(read.legal_name.as_deref(), Some(NAME));
    assert_eq!(read.id_number_masked.unwrap().chars().count(), 18);
}

#[tokio::test]
async fn logs_never_hold_the_id_number_or_the_legal_name() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, base, logs) = start_server_logging(dir.path(), "trace", &[]);
    let http = HttpClient::new(base);
    let phone = fresh_phone();
    http.register(&phone, PASSWORD, "Ann").await.unwrap();
    let tokens = http.login(&phone, PASSWORD).await.unwrap();
    let token = &tokens.access_token;
    // Refused, rejected, pending and then decided, verified.
    let _ = http
        .submit_real_name(token, NAME, &number("002")[..17])
        .await;
    let _ = http
        .submit_real_name(token, "张\u{0}三", &number("002"))
        .await;
    http.submit_real_name(token, NAME, &number("999"))
        .await
        .unwrap();
    http.submit_real_name(token, NAME, &number("998"))
        .await
        .unwrap();
    http.real_name(token).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !logs.lock().unwrap().contains("real-name decided") {
        assert!(tokio::time::Instant::now() < deadline, "no decision logged");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill().unwrap();
    server.wait().unwrap();

    let logs = logs.lock().unwrap().clone();
    assert!(logs.contains("real-name submitted"), "the log was captured");
    for secret in [
        number("002"),
        number("999"),
        number("998"),
        number("002")[..17].to_string(),
        "19870623".to_string(),
        NAME.to_string(),
        "买买提".to_string(),
        // 买, as an escaping formatter would write it.
        "\\u4e70".to_string(),
    ] {
        if let Some(at) = logs.find(&secret) {
            let line = logs[..at].rsplit('\n').next().unwrap_or("");
            panic!(
                "{secret:?} reached the log, in a line starting: {}",
                &line[..line.len().min(300)]
            );
        }
    }
}
