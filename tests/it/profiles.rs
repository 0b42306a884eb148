//! Profiles and discovery over real HTTP: one's own profile and handle,
//! what a lookup by id, handle or phone shows to whom, contact matching,
//! invisible mode and presence, the limits, and the CLI.

use std::process::Command;

use serde_json::{Value, json};
use superapp_client::contact_hash;

use crate::cli::cli_path;
use crate::helpers::{
    PASSWORD, TestApp, User, api, fresh_phone, manual_clock, refused, spawn_app, spawn_app_with,
    spawn_app_with_clock,
};

const HOUR_MS: i64 = 3600 * 1000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// `who` again, logged in anew: after the clock moved past their tokens.
async fn again(app: &TestApp, who: &User) -> User {
    let tokens = app.http.login(&who.phone, PASSWORD).await.unwrap();
    User {
        id: who.id,
        phone: who.phone.clone(),
        tokens,
    }
}

async fn patch_profile(app: &TestApp, who: &User, body: Value) -> (u16, Value) {
    api(app, who, "PATCH", "/v1/me/profile", body).await
}

async fn set_privacy(app: &TestApp, who: &User, body: Value) {
    let (status, answer) = api(app, who, "PATCH", "/v1/me/privacy", body).await;
    assert_eq!(status, 200, "{answer}");
}

/// What `viewer` is shown of `owner` by id.
async fn seen_by(app: &TestApp, viewer: &User, owner: &User) -> Value {
    let path = format!("/v1/users/{}", owner.id);
    let (status, body) = api(app, viewer, "GET", &path, Value::Null).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn by_phone(app: &TestApp, viewer: &User, phone: &str) -> (u16, Value) {
    api(
        app,
        viewer,
        "POST",
        "/v1/users/by-phone",
        json!({ "phone": phone }),
    )
    .await
}

async fn by_handle(app: &TestApp, viewer: &User, handle: &str) -> (u16, Value) {
    let body = json!({ "handle": handle });
    api(app, viewer, "POST", "/v1/users/by-handle", body).await
}

#[tokio::test]
async fn a_profile_is_set_in_one_write_and_read_back_by_its_owner() {
    let app = spawn_app().await;
    let ann = app.user("Ann").await;
    let (_, fresh) = api(&app, &ann, "GET", "/v1/me/profile", Value::Null).await;
    assert_eq!(
        (&fresh["handle"], &fresh["gender"], &fresh["avatar_url"]),
        (&Value::Null, &json!("unset"), &json!(""))
    );
    let (status, set) = patch_profile(
        &app,
        &ann,
        json!({
            "display_name": "  Ann Lee ",
            "avatar_url": "https://cdn.example.com/ann.png",
            "signature": "山高水长",
            "region": "Guangdong Shenzhen",
            "gender": "female",
            "handle": "Ann_Lee",
        }),
    )
    .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["display_name"], "Ann Lee");
    assert_eq!(set["handle"], "Ann_Lee");
    assert_eq!(set["phone"], ann.phone.as_str());
    assert!(
        set["handle_changeable_at_ms"].as_i64().unwrap() > set["created_at_ms"].as_i64().unwrap()
    );
    let (_, read) = api(&app, &ann, "GET", "/v1/me/profile", Value::Null).await;
    assert_eq!(read, set);
    // The name is the account's: /v1/me shows it too.
    let me = app.http.me(&ann.tokens.access_token).await.unwrap();
    assert_eq!(me.display_name, "Ann Lee");
    // Left out stays; empty removes.
    let (_, cleared) = patch_profile(&app, &ann, json!({"avatar_url": ""})).await;
    assert_eq!(
        (&cleared["avatar_url"], &cleared["signature"]),
        (&json!(""), &json!("山高水长"))
    );
}

#[tokio::test]
async fn bad_profile_changes_get_clear_codes_and_change_nothing() {
    let app = spawn_app().await;
    let (ann, bo) = (app.user("Ann").await, app.user("Bo").await);
    let (status, _) = patch_profile(&app, &bo, json!({"handle": "bo_chen"})).await;
    assert_eq!(status, 200);
    let (_, before) = api(&app, &ann, "GET", "/v1/me/profile", Value::Null).await;
    let long_url = format!("https://example.com/{}", "a".repeat(512));
    let cases = [
        (json!({"display_name": "  "}), "invalid_display_name"),
        (
            json!({"display_name": "x".repeat(65)}),
            "invalid_display_name",
        ),
        (
            json!({"avatar_url": "http://example.com/a.png"}),
            "invalid_avatar",
        ),
        (json!({"avatar_url": long_url}), "invalid_avatar"),
        (
            json!({"avatar_url": "https://me:pw@example.com/a.png"}),
            "invalid_avatar",
        ),
        (json!({"signature": "x".repeat(101)}), "invalid_signature"),
        (json!({"signature": "two\nlines"}), "invalid_signature"),
        (json!({"region": "x".repeat(65)}), "invalid_region"),
        (json!({"gender": "robot"}), "invalid_gender"),
        (json!({"handle": "ann"}), "invalid_handle"),
        (json!({"handle": "1ann_lee"}), "invalid_handle"),
        (json!({"handle": "ann lee"}), "invalid_handle"),
        (json!({"handle": "x".repeat(21)}), "invalid_handle"),
        (json!({"handle": "BO_CHEN"}), "handle_taken"),
        (json!({"nickname": "Annie"}), "invalid_json"),
    ];
    for (mut body, expected) in cases {
        // Each bad part comes with a good one, which must not land either.
        if body.get("signature").is_none() {
            body["signature"] = json!("changed");
        }
        let code = refused(&app, &ann, "PATCH", "/v1/me/profile", body.clone()).await;
        assert_eq!(code, expected, "{body}");
    }
    let (_, after) = api(&app, &ann, "GET", "/v1/me/profile", Value::Null).await;
    assert_eq!(after, before);
}

#[tokio::test]
async fn a_handle_is_set_at_most_once_in_thirty_days_by_the_rooms_clock() {
    let clock = manual_clock();
    let app = spawn_app_with_clock(|_| {}, clock.clone()).await;
    let (ann, bo) = (app.user("Ann").await, app.user("Bo").await);
    let (status, _) = patch_profile(&app, &ann, json!({"handle": "ann_lee"})).await;
    assert_eq!(status, 200);
    // The same handle again is no change, at any time.
    let (status, _) = patch_profile(&app, &ann, json!({"handle": "ann_lee"})).await;
    assert_eq!(status, 200);
    let (status, body) = patch_profile(&app, &ann, json!({"handle": "ann_lee_2"})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("handle_too_soon"))
    );
    let wait = body["retry_after_ms"].as_i64().unwrap();
    assert!((29 * DAY_MS..=30 * DAY_MS).contains(&wait), "{wait}");

    clock.advance_ms(29 * DAY_MS);
    let ann = again(&app, &ann).await;
    let (status, body) = patch_profile(&app, &ann, json!({"handle": "Ann-Lee"})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("handle_too_soon"))
    );
    assert!(body["retry_after_ms"].as_i64().unwrap() <= DAY_MS);

    clock.advance_ms(DAY_MS);
    let (ann, bo) = (again(&app, &ann).await, again(&app, &bo).await);
    let (status, body) = patch_profile(&app, &ann, json!({"handle": "Ann-Lee"})).await;
    assert_eq!((status, &body["handle"]), (200, &json!("Ann-Lee")));
    // The old handle is free at once; the new one is Ann's whatever its case.
    let (status, _) = patch_profile(&app, &bo, json!({"handle": "ANN_LEE"})).await;
    assert_eq!(status, 200);
    let (status, body) = by_handle(&app, &bo, "ann-lee").await;
    assert_eq!(
        (status, body["user_id"].as_str()),
        (200, Some(ann.id.to_string().as_str()))
    );
}

#[tokio::test]
async fn what_a_lookup_by_id_shows_follows_the_relation_and_the_settings() {
    let app = spawn_app().await;
    let names = ["Ann", "Bo", "Cy", "Dee", "Eve"];
    let mut people = Vec::new();
    for name in names {
        people.push(app.user(name).await);
    }
    let [ann, bo, cy, dee, eve] = &people[..] else {
        unreachable!()
    };
    let body = json!({"handle": "ann_lee", "signature": "hello", "region": "Hangzhou"});
    assert_eq!(patch_profile(&app, ann, body).await.0, 200);
    app.befriend(ann, bo).await;
    app.http
        .block(&ann.tokens.access_token, dee.id)
        .await
        .unwrap();
    app.http
        .block(&eve.tokens.access_token, ann.id)
        .await
        .unwrap();

    let shows = |view: &Value| (!view["details"].is_null(), !view["phone"].is_null());
    // (self, friend, stranger, blocked by Ann, blocking Ann) under each setting.
    let cases = [
        (
            json!({"phone_visibility": "everyone", "invisible": "off"}),
            [
                (true, true),
                (true, true),
                (true, true),
                (false, false),
                (true, true),
            ],
        ),
        (
            json!({"phone_visibility": "friends"}),
            [
                (true, true),
                (true, true),
                (true, false),
                (false, false),
                (true, false),
            ],
        ),
        (
            json!({"phone_visibility": "nobody"}),
            [
                (true, true),
                (true, false),
                (true, false),
                (false, false),
                (true, false),
            ],
        ),
        (
            json!({"phone_visibility": "everyone", "invisible": "strangers"}),
            [
                (true, true),
                (true, true),
                (false, false),
                (false, false),
                (false, false),
            ],
        ),
        (
            json!({"invisible": "everyone"}),
            [
                (true, true),
                (false, false),
                (false, false),
                (false, false),
                (false, false),
            ],
        ),
    ];
    for (settings, expected) in cases {
        set_privacy(&app, ann, settings.clone()).await;
        for (viewer, expected) in people.iter().zip(expected) {
            let view = seen_by(&app, viewer, ann).await;
            assert_eq!(
                shows(&view),
                expected,
                "{settings} as seen by {}",
                viewer.id
            );
            assert_eq!(view["display_name"], "Ann", "the minimum is everyone's");
            if expected.0 {
                assert_eq!(view["details"]["handle"], "ann_lee");
                assert_eq!(view["details"]["region"], "Hangzhou");
            }
            if expected.1 {
                assert_eq!(view["phone"], ann.phone.as_str());
            }
        }
    }
    // A block looks exactly like invisible mode: Dee's answer is a stranger's.
    assert_eq!(seen_by(&app, dee, ann).await, seen_by(&app, cy, ann).await);
    let path = "/v1/users/999999999";
    assert_eq!(
        refused(&app, bo, "GET", path, Value::Null).await,
        "unknown_user"
    );
    assert_eq!(
        refused(&app, bo, "GET", "/v1/users/abc", Value::Null).await,
        "unknown_user"
    );
}

#[tokio::test]
async fn a_number_or_handle_one_may_not_find_answers_exactly_as_one_nobody_holds() {
    let app = spawn_app().await;
    let (ann, bo, cy) = (
        app.user("Ann").await,
        app.user("Bo").await,
        app.user("Cy").await,
    );
    app.befriend(&ann, &bo).await;
    assert_eq!(
        patch_profile(&app, &ann, json!({"handle": "ann_lee"}))
            .await
            .0,
        200
    );
    let nobody = by_phone(&app, &cy, &fresh_phone()).await;
    assert_eq!(
        (nobody.0, nobody.1["code"].as_str()),
        (404, Some("unknown_user"))
    );
    let no_handle = by_handle(&app, &cy, "no_one_here").await;
    assert_eq!(no_handle.0, 404);

    // The shipped default: friends find Ann by her number, strangers do not.
    let found = by_phone(&app, &bo, &ann.phone).await;
    assert_eq!(
        (found.0, found.1["phone"].as_str()),
        (200, Some(ann.phone.as_str()))
    );
    assert_eq!(by_phone(&app, &cy, &ann.phone).await, nobody);
    // Typed the way people type it, still Ann's.
    let spaced = format!("{} {}", &ann.phone[..3], &ann.phone[3..]);
    assert_eq!(by_phone(&app, &bo, &spaced).await.0, 200);

    set_privacy(&app, &ann, json!({"phone_visibility": "everyone"})).await;
    assert_eq!(by_phone(&app, &cy, &ann.phone).await.0, 200);
    assert_eq!(by_handle(&app, &cy, "ANN_LEE").await.0, 200);
    // A block: Cy finds Ann neither way, and cannot tell why.
    app.http
        .block(&ann.tokens.access_token, cy.id)
        .await
        .unwrap();
    assert_eq!(by_phone(&app, &cy, &ann.phone).await, nobody);
    assert_eq!(by_handle(&app, &cy, "ann_lee").await, no_handle);
    app.http
        .unblock(&ann.tokens.access_token, cy.id)
        .await
        .unwrap();
    // Invisible to strangers: the same; friends still find her.
    set_privacy(&app, &ann, json!({"invisible": "strangers"})).await;
    assert_eq!(by_phone(&app, &cy, &ann.phone).await, nobody);
    assert_eq!(by_handle(&app, &cy, "ann_lee").await, no_handle);
    assert_eq!(by_handle(&app, &bo, "ann_lee").await.0, 200);
    set_privacy(&app, &ann, json!({"invisible": "everyone"})).await;
    assert_eq!(by_phone(&app, &bo, &ann.phone).await, nobody);
    // One always finds oneself.
    assert_eq!(by_handle(&app, &ann, "ann_lee").await.0, 200);

    let code = refused(
        &app,
        &cy,
        "POST",
        "/v1/users/by-phone",
        json!({"phone": "12345"}),
    )
    .await;
    assert_eq!(code, "invalid_phone");
    let code = refused(
        &app,
        &cy,
        "POST",
        "/v1/users/by-handle",
        json!({"handle": "1x"}),
    )
    .await;
    assert_eq!(code, "invalid_handle");
}

#[tokio::test]
async fn lookups_by_handle_and_phone_are_limited_per_user_per_hour() {
    let clock = manual_clock();
    let app = spawn_app_with_clock(|c| c.social.lookups_per_hour = 3, clock.clone()).await;
    let (ann, bo) = (app.user("Ann").await, app.user("Bo").await);
    assert_eq!(
        patch_profile(&app, &bo, json!({"handle": "bo_chen"}))
            .await
            .0,
        200
    );
    // Found or not, each counts; a malformed one does not.
    assert_eq!(by_handle(&app, &ann, "bo_chen").await.0, 200);
    assert_eq!(by_handle(&app, &ann, "nobody_here").await.0, 404);
    assert_eq!(by_phone(&app, &ann, "+1 2").await.0, 400);
    assert_eq!(by_phone(&app, &ann, &fresh_phone()).await.0, 404);
    let (status, body) = by_handle(&app, &ann, "bo_chen").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("too_many_lookups"))
    );
    let wait = body["retry_after_ms"].as_i64().unwrap();
    assert!(wait > 0 && wait <= HOUR_MS, "{wait}");
    // A handle refused as taken counts too: it says as much as a lookup.
    let (status, body) = patch_profile(&app, &ann, json!({"handle": "bo_chen"})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("too_many_lookups"))
    );
    // By id is not limited; others are not limited by Ann's lookups.
    assert_eq!(seen_by(&app, &ann, &bo).await["display_name"], "Bo");
    assert_eq!(by_handle(&app, &bo, "bo_chen").await.0, 200);

    clock.advance_ms(HOUR_MS);
    let ann = again(&app, &ann).await;
    assert_eq!(by_handle(&app, &ann, "bo_chen").await.0, 200);
}

/// Registers a user and sets their privacy.
async fn with_settings(app: &TestApp, name: &str, settings: Value) -> User {
    let user = app.user(name).await;
    set_privacy(app, &user, settings).await;
    user
}

#[tokio::test]
async fn contact_matching_lists_only_whom_the_asker_may_find_by_phone() {
    let app = spawn_app().await;
    let me = app.user("Me").await;
    let everyone = json!({"phone_visibility": "everyone"});
    let ann = with_settings(&app, "Ann", everyone.clone()).await;
    let bo = with_settings(&app, "Bo", json!({"phone_visibility": "friends"})).await;
    let cy = with_settings(&app, "Cy", json!({"phone_visibility": "friends"})).await;
    let dee = with_settings(&app, "Dee", everyone.clone()).await;
    let eve = with_settings(
        &app,
        "Eve",
        json!({"phone_visibility": "everyone", "invisible": "strangers"}),
    )
    .await;
    let fay = with_settings(&app, "Fay", json!({"phone_visibility": "nobody"})).await;
    app.befriend(&me, &cy).await;
    app.http
        .block(&dee.tokens.access_token, me.id)
        .await
        .unwrap();

    let salt = app
        .http
        .contact_salt(&me.tokens.access_token)
        .await
        .unwrap();
    assert_eq!(salt.salt.len(), 64);
    assert_eq!((salt.hashes_per_request, salt.hashes_per_day), (500, 2_000));
    let unregistered = fresh_phone();
    let book = [
        &ann.phone,
        &bo.phone,
        &cy.phone,
        &dee.phone,
        &eve.phone,
        &fay.phone,
        &unregistered,
        &me.phone,
    ];
    let mut hashes: Vec<String> = book
        .iter()
        .map(|p| contact_hash(&salt.salt, p).unwrap())
        .collect();
    // Upper-case hex is read too, and a hash twice counts once.
    hashes[0] = hashes[0].to_uppercase();
    hashes.push(hashes[2].clone());
    let matched = app
        .http
        .match_contacts(&me.tokens.access_token, &hashes)
        .await
        .unwrap();
    let found: Vec<(u64, String)> = matched
        .matches
        .iter()
        .map(|m| (m.user.user_id, m.hash.clone()))
        .collect();
    assert_eq!(
        found,
        [
            (ann.id, hashes[0].to_lowercase()),
            (cy.id, hashes[2].clone())
        ],
        "only Ann (everyone) and Cy (a friend, friends only)"
    );
    assert_eq!(
        matched.matches[1].user.phone.as_deref(),
        Some(cy.phone.as_str())
    );

    let bad = json!({"hashes": ["ab".repeat(31)]});
    assert_eq!(
        refused(&app, &me, "POST", "/v1/contacts/match", bad).await,
        "invalid_hash"
    );
}

async fn matching(app: &TestApp, who: &User, hashes: &[String]) -> (u16, Value) {
    let body = json!({ "hashes": hashes });
    api(app, who, "POST", "/v1/contacts/match", body).await
}

#[tokio::test]
async fn contact_matching_is_limited_per_request_and_in_new_numbers_per_day() {
    let clock = manual_clock();
    let app = spawn_app_with_clock(
        |c| {
            c.social.contact_match_hashes_per_request = 4;
            c.social.contact_match_hashes_per_day = 6;
        },
        clock.clone(),
    )
    .await;
    let me = app.user("Me").await;
    let salt = app
        .http
        .contact_salt(&me.tokens.access_token)
        .await
        .unwrap()
        .salt;
    let hashes: Vec<String> = (0..10)
        .map(|_| contact_hash(&salt, &fresh_phone()).unwrap())
        .collect();
    let (status, body) = matching(&app, &me, &hashes[..5]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("too_many_hashes"))
    );
    assert_eq!(matching(&app, &me, &hashes[..4]).await.0, 200);
    // The same numbers again are not new: they cost nothing more.
    assert_eq!(matching(&app, &me, &hashes[..4]).await.0, 200);
    assert_eq!(matching(&app, &me, &hashes[2..6]).await.0, 200);
    let (status, body) = matching(&app, &me, &hashes[6..7]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("too_many_contact_matches"))
    );
    let wait = body["retry_after_ms"].as_i64().unwrap();
    assert!(wait > 0 && wait <= DAY_MS, "{wait}");
    // The refused request counted nothing, and a known number still passes.
    assert_eq!(matching(&app, &me, &hashes[..1]).await.0, 200);

    clock.advance_ms(DAY_MS);
    let me = again(&app, &me).await;
    assert_eq!(matching(&app, &me, &hashes[6..10]).await.0, 200);
}

#[tokio::test]
async fn invisible_mode_hides_presence_from_strangers_then_from_friends() {
    let app = spawn_app().await;
    let (ann, bo, cy) = (
        app.user("Ann").await,
        app.user("Bo").await,
        app.user("Cy").await,
    );
    app.befriend(&ann, &bo).await;
    let _ann_phone = app.connect(&ann).await;
    let online = |who: &User| {
        let (http, token, id) = (app.http.clone(), who.tokens.access_token.clone(), ann.id);
        async move {
            let p = http.presence(&token, id).await.unwrap();
            if !p.online {
                assert_eq!((p.devices, p.last_seen_ms), (0, None), "as never seen");
            }
            p.online
        }
    };
    assert!(online(&bo).await && online(&cy).await);
    set_privacy(&app, &ann, json!({"invisible": "strangers"})).await;
    assert_eq!(
        (online(&ann).await, online(&bo).await, online(&cy).await),
        (true, true, false)
    );
    set_privacy(&app, &ann, json!({"invisible": "everyone"})).await;
    assert_eq!(
        (online(&ann).await, online(&bo).await, online(&cy).await),
        (true, false, false)
    );
    set_privacy(&app, &ann, json!({"invisible": "off"})).await;
    assert!(online(&bo).await && online(&cy).await);
}

#[tokio::test]
async fn privacy_settings_take_phone_visibility_and_invisible_and_refuse_unknown_values() {
    let app = spawn_app_with(|c| {
        c.social.phone_visibility = superapp_account::model::PhoneVisibility::Nobody
    })
    .await;
    let ann = app.user("Ann").await;
    let (_, settings) = api(&app, &ann, "GET", "/v1/me/privacy", Value::Null).await;
    assert_eq!(
        (&settings["phone_visibility"], &settings["invisible"]),
        (&json!("nobody"), &json!("off"))
    );
    let body = json!({"phone_visibility": "everyone", "invisible": "strangers"});
    let (status, set) = api(&app, &ann, "PATCH", "/v1/me/privacy", body).await;
    assert_eq!(status, 200);
    assert_eq!(
        (&set["phone_visibility"], &set["invisible"]),
        (&json!("everyone"), &json!("strangers"))
    );
    for body in [
        json!({"phone_visibility": "strangers"}),
        json!({"invisible": "on"}),
        json!({"invisible": "off", "phone_visibility": "all"}),
    ] {
        assert_eq!(
            refused(&app, &ann, "PATCH", "/v1/me/privacy", body).await,
            "invalid_setting"
        );
    }
    let (_, after) = api(&app, &ann, "GET", "/v1/me/privacy", Value::Null).await;
    assert_eq!(after, set);
}

#[tokio::test]
async fn a_deleted_account_is_found_by_nothing_and_its_handle_is_freed_once_erased() {
    let clock = manual_clock();
    let app = spawn_app_with_clock(|c| c.account.deletion_sweep_ms = 100, clock.clone()).await;
    let (ann, bo) = (app.user("Ann").await, app.user("Bo").await);
    let everyone = json!({"phone_visibility": "everyone", "invisible": "off"});
    set_privacy(&app, &ann, everyone).await;
    assert_eq!(
        patch_profile(&app, &ann, json!({"handle": "ann_lee"}))
            .await
            .0,
        200
    );
    let salt = app
        .http
        .contact_salt(&bo.tokens.access_token)
        .await
        .unwrap()
        .salt;
    let ann_hash = vec![contact_hash(&salt, &ann.phone).unwrap()];
    assert_eq!(
        matching(&app, &bo, &ann_hash).await.1["matches"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    app.http
        .delete_account(&ann.tokens.access_token, PASSWORD)
        .await
        .unwrap();
    // Being deleted: by id it says so; by handle, number or match, nobody.
    let path = format!("/v1/users/{}", ann.id);
    let (status, body) = api(&app, &bo, "GET", &path, Value::Null).await;
    assert_eq!((status, body["code"].as_str()), (410, Some("user_deleted")));
    let nobody = by_handle(&app, &bo, "no_one_here").await;
    assert_eq!(by_handle(&app, &bo, "ann_lee").await, nobody);
    assert_eq!(by_phone(&app, &bo, &ann.phone).await.0, 404);
    let (_, matched) = matching(&app, &bo, &ann_hash).await;
    assert_eq!(matched["matches"], json!([]));

    // Erased after the grace period (7 days): the handle is free.
    clock.advance_ms(7 * DAY_MS);
    let bo = again(&app, &bo).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !app
        .http
        .user_names(&bo.tokens.access_token, &[ann.id])
        .await
        .unwrap()
        .users[0]
        .deleted
    {
        assert!(tokio::time::Instant::now() < deadline, "never erased");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, body) = patch_profile(&app, &bo, json!({"handle": "Ann_Lee"})).await;
    assert_eq!((status, &body["handle"]), (200, &json!("Ann_Lee")));
}

/// Runs `superapp-cli` with a profile: whether it succeeded, its stdout's
/// JSON lines, and its stderr.
fn cli_run(base: &str, profile: &std::path::Path, args: &[&str]) -> (bool, Vec<Value>, String) {
    let output = Command::new(cli_path())
        .args(["--server", base, "--profile"])
        .arg(profile)
        .args(args)
        .output()
        .unwrap();
    let lines = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), lines, stderr)
}

#[tokio::test]
async fn the_cli_sets_privacy_and_a_handle_then_looks_people_up_and_matches_numbers() {
    let app = spawn_app().await;
    let (ann, cy) = (app.user("Ann").await, app.user("Cy").await);
    set_privacy(&app, &ann, json!({"phone_visibility": "everyone"})).await;
    let (base, ann_phone, cy_phone) = (app.base_url.clone(), ann.phone.clone(), cy.phone.clone());
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().to_path_buf();
    let ann_id = ann.id.to_string();
    tokio::task::spawn_blocking(move || {
        let run = |args: &[&str]| {
            let (ok, lines, stderr) = cli_run(&base, &profile, args);
            assert!(ok, "superapp-cli {args:?} failed: {stderr}");
            lines
        };
        let bo_phone = fresh_phone();
        run(&[
            "register",
            "--phone",
            &bo_phone,
            "--password",
            PASSWORD,
            "--name",
            "Bo",
        ]);
        run(&["login", "--phone", &bo_phone, "--password", PASSWORD]);
        let set = run(&["privacy", "set", "phone-visibility", "nobody"]);
        assert_eq!(set[0]["phone_visibility"], "nobody");
        let set = run(&["privacy", "set", "invisible", "strangers"]);
        assert_eq!(set[0]["invisible"], "strangers");
        let shown = run(&["privacy", "show"]);
        assert_eq!(
            (&shown[0]["phone_visibility"], &shown[0]["invisible"]),
            (&json!("nobody"), &json!("strangers"))
        );
        let me = run(&["profile", "set", "--handle", "bo_chen", "--signature", "hi"]);
        assert_eq!(
            (&me[0]["handle"], &me[0]["signature"]),
            (&json!("bo_chen"), &json!("hi"))
        );
        assert_eq!(run(&["profile", "show"])[0]["handle"], "bo_chen");
        let found = run(&["lookup", "--handle", "BO_CHEN"]);
        assert_eq!(found[0]["details"]["signature"], "hi");
        let found = run(&["lookup", "--phone", &ann_phone]);
        assert_eq!(found[0]["user_id"], ann_id.as_str());
        // Cy keeps the default (friends only): not found, and told so plainly.
        let (ok, _, stderr) = cli_run(&base, &profile, &["lookup", "--phone", &cy_phone]);
        assert!(!ok && stderr.contains("unknown_user"), "{stderr}");
        let (ok, _, stderr) = cli_run(
            &base,
            &profile,
            &["privacy", "set", "invisible", "sometimes"],
        );
        assert!(!ok && stderr.contains("invalid_setting"), "{stderr}");
        let phones = format!("{ann_phone},{cy_phone},+8613000000000");
        let matched = run(&["match", "--phones", &phones]);
        assert_eq!(matched.len(), 1, "{matched:?}");
        assert_eq!(
            (&matched[0]["phone"], &matched[0]["user"]["user_id"]),
            (&json!(ann_phone), &json!(ann_id))
        );
    })
    .await
    .unwrap();
}
