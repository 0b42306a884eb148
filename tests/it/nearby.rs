//! People nearby over real HTTP: sharing, searching around one's own shared
//! position, expiry on the room's clock, clearing, blocks both ways, the
//! caps on moving and searching, bad input; and the medium tier, where the
//! positions live in Redis and outlive the core that took them.

use std::sync::Arc;

use serde_json::{Value, json};
use superapp::config::{Config, Role};
use superapp_account::policy::nearby::{distance_m, shown_distance, snap};
use superapp_kit::clock::{Clock as _, ManualClock, SystemClock};
use superapp_kit::secret::Secret;
use superapp_kit::testkit::RedisServer;

use crate::helpers::{
    PASSWORD, TestApp, User, admin, api, every_shard_leased, refused, spawn_app_in,
    spawn_app_on_nearby_clock, spawn_app_with,
};

/// People's Square, Shanghai, and places around it.
const ANN: (f64, f64) = (31.2304, 121.4737);
/// About 300 m north of Ann.
const BO: (f64, f64) = (31.2331, 121.4737);
/// About 1.5 km east of Ann.
const CY: (f64, f64) = (31.2304, 121.4895);
/// Hangzhou, about 165 km away.
const DEE: (f64, f64) = (30.2741, 120.1551);

/// A server whose people nearby runs on a clock the test moves.
async fn on_clock(adjust: impl FnOnce(&mut Config)) -> (TestApp, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let app = spawn_app_on_nearby_clock(adjust, clock.clone()).await;
    (app, clock)
}

async fn share(app: &TestApp, who: &User, at: (f64, f64)) -> (u16, Value) {
    let body = json!({ "lat": at.0, "lon": at.1 });
    api(app, who, "PUT", "/v1/me/location", body).await
}

async fn shared(app: &TestApp, who: &User, at: (f64, f64)) {
    let (status, body) = share(app, who, at).await;
    assert_eq!(status, 200, "{body}");
}

/// (user id, within_m) of each person `who` sees, nearest first.
async fn seen(app: &TestApp, who: &User, query: &str) -> Vec<(u64, u64)> {
    let (status, body) = api(app, who, "GET", &format!("/v1/nearby{query}"), Value::Null).await;
    assert_eq!(status, 200, "{body}");
    body["people"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["user_id"].as_str().unwrap().parse().unwrap(),
                p["within_m"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// What a search shows for the distance between two shared positions.
fn within(a: (f64, f64), b: (f64, f64)) -> u64 {
    u64::from(shown_distance(distance_m(snap(a.0, a.1), snap(b.0, b.1))))
}

#[tokio::test]
async fn people_who_share_find_each_other_nearest_first_with_rounded_distances_and_no_coordinates()
{
    let app = spawn_app_with(|_| {}).await;
    let [ann, bo, cy, dee, eve] = [
        app.user("Ann").await,
        app.user("Bo").await,
        app.user("Cy").await,
        app.user("Dee").await,
        app.user("Eve").await,
    ];
    for (who, at) in [(&ann, ANN), (&bo, BO), (&cy, CY), (&dee, DEE)] {
        shared(&app, who, at).await;
    }
    // Eve never shares: nobody finds her, and she may not search.
    assert_eq!(
        refused(&app, &eve, "GET", "/v1/nearby", Value::Null).await,
        "location_not_shared"
    );

    let (status, body) = api(&app, &ann, "GET", "/v1/nearby", Value::Null).await;
    assert_eq!(status, 200);
    assert_eq!(body["radius_m"], 5_000);
    assert!(body["expires_at_ms"].as_i64().unwrap() > SystemClock.now_ms() + 29 * 60_000);
    assert_eq!(body["people"][0]["display_name"], "Bo");
    // No coordinate anywhere in the answer, only rounded distances.
    let mut keys: Vec<&str> = body["people"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["display_name", "user_id", "within_m"]);
    assert_eq!(
        seen(&app, &ann, "").await,
        vec![(bo.id, within(ANN, BO)), (cy.id, within(ANN, CY))]
    );
    assert!((300..=400).contains(&within(ANN, BO)));
    assert_eq!(within(ANN, CY), 2_000);
    // Bo sees the same distances from his side; Dee, far away, sees nobody.
    assert_eq!(
        seen(&app, &bo, "").await,
        vec![(ann.id, within(ANN, BO)), (cy.id, within(BO, CY))]
    );
    assert!(seen(&app, &dee, "?radius_m=20000").await.is_empty());
    // A smaller radius and a smaller count.
    assert_eq!(
        seen(&app, &ann, "?radius_m=1000").await,
        vec![(bo.id, within(ANN, BO))]
    );
    assert_eq!(
        seen(&app, &ann, "?limit=1").await,
        vec![(bo.id, within(ANN, BO))]
    );
    // A count above the most is answered as the most.
    assert_eq!(seen(&app, &cy, "?limit=500").await.len(), 2);
}

#[tokio::test]
async fn a_shared_position_expires_after_thirty_minutes_on_the_room_s_clock() {
    let (app, clock) = on_clock(|_| {}).await;
    let (ann, bo) = (app.user("Ann").await, app.user("Bo").await);
    shared(&app, &ann, ANN).await;
    let (_, body) = share(&app, &bo, BO).await;
    assert_eq!(body["expires_at_ms"], clock.now_ms() + 30 * 60_000);

    clock.advance_ms(30 * 60_000 - 1);
    assert_eq!(seen(&app, &ann, "").await, vec![(bo.id, within(ANN, BO))]);
    clock.advance_ms(1);
    // Both are gone: Bo from Ann's search, Ann from being able to search.
    assert_eq!(
        refused(&app, &ann, "GET", "/v1/nearby", Value::Null).await,
        "location_not_shared"
    );
    // Sharing again, from the same place, starts another half hour.
    shared(&app, &ann, ANN).await;
    assert!(seen(&app, &ann, "").await.is_empty());
    clock.advance_ms(20 * 60_000);
    shared(&app, &bo, BO).await;
    clock.advance_ms(20 * 60_000);
    // Ann shared 40 minutes ago: gone; Bo 20 minutes ago: found.
    assert_eq!(
        refused(&app, &ann, "GET", "/v1/nearby", Value::Null).await,
        "location_not_shared"
    );
    assert!(seen(&app, &bo, "").await.is_empty());
}

#[tokio::test]
async fn clearing_a_location_hides_it_at_once() {
    let app = spawn_app_with(|_| {}).await;
    let (ann, bo) = (app.user("Ann").await, app.user("Bo").await);
    shared(&app, &ann, ANN).await;
    shared(&app, &bo, BO).await;
    assert_eq!(seen(&app, &ann, "").await, vec![(bo.id, within(ANN, BO))]);
    let (status, _) = api(&app, &bo, "DELETE", "/v1/me/location", Value::Null).await;
    assert_eq!(status, 204);
    assert!(seen(&app, &ann, "").await.is_empty());
    assert_eq!(
        refused(&app, &bo, "GET", "/v1/nearby", Value::Null).await,
        "location_not_shared"
    );
    // Clearing again is no change.
    let (status, _) = api(&app, &bo, "DELETE", "/v1/me/location", Value::Null).await;
    assert_eq!(status, 204);
}

#[tokio::test]
async fn blocks_hide_people_from_each_other_both_ways_and_nobody_else() {
    let app = spawn_app_with(|_| {}).await;
    let (ann, bo, cy) = (
        app.user("Ann").await,
        app.user("Bo").await,
        app.user("Cy").await,
    );
    for (who, at) in [(&ann, ANN), (&bo, BO), (&cy, CY)] {
        shared(&app, who, at).await;
    }
    app.http
        .block(&ann.tokens.access_token, bo.id)
        .await
        .unwrap();
    // Neither finds the other, whichever blocked; Cy still finds both.
    assert_eq!(seen(&app, &ann, "").await, vec![(cy.id, 2_000)]);
    assert_eq!(seen(&app, &bo, "").await, vec![(cy.id, within(BO, CY))]);
    assert_eq!(seen(&app, &cy, "").await.len(), 2);
    app.http
        .unblock(&ann.tokens.access_token, bo.id)
        .await
        .unwrap();
    assert_eq!(seen(&app, &bo, "").await[0], (ann.id, within(ANN, BO)));
}

#[tokio::test]
async fn invisible_people_are_found_nearby_by_friends_only_then_by_nobody() {
    let app = spawn_app_with(|_| {}).await;
    let (ann, bo, cy) = (
        app.user("Ann").await,
        app.user("Bo").await,
        app.user("Cy").await,
    );
    app.befriend(&ann, &bo).await;
    for (who, at) in [(&ann, ANN), (&bo, BO), (&cy, CY)] {
        shared(&app, who, at).await;
    }
    let finds_ann = |people: Vec<(u64, u64)>| people.iter().any(|&(id, _)| id == ann.id);
    for (level, bo_finds, cy_finds) in [
        ("off", true, true),
        ("strangers", true, false),
        ("everyone", false, false),
    ] {
        let body = json!({ "invisible": level });
        let (status, answer) = api(&app, &ann, "PATCH", "/v1/me/privacy", body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(finds_ann(seen(&app, &bo, "").await), bo_finds, "{level}");
        assert_eq!(finds_ann(seen(&app, &cy, "").await), cy_finds, "{level}");
    }
}

#[tokio::test]
async fn an_account_whose_deletion_is_asked_for_is_found_by_nobody_until_restored() {
    let app = spawn_app_with(|_| {}).await;
    let (ann, bo) = (app.user("Ann").await, app.user("Bo").await);
    shared(&app, &ann, ANN).await;
    shared(&app, &bo, BO).await;
    assert_eq!(seen(&app, &ann, "").await, vec![(bo.id, within(ANN, BO))]);
    // Bo asks for his account's deletion: signed out everywhere, and gone
    // from people nearby at once, though his position has not expired.
    app.http
        .delete_account(&bo.tokens.access_token, PASSWORD)
        .await
        .unwrap();
    assert!(seen(&app, &ann, "").await.is_empty());
    // He changes his mind within the grace period: found again.
    app.http
        .restore_account(&bo.phone, PASSWORD, None)
        .await
        .unwrap();
    assert_eq!(seen(&app, &ann, "").await, vec![(bo.id, within(ANN, BO))]);
}

#[tokio::test]
async fn moving_too_often_is_refused_with_when_to_retry_and_staying_put_is_free() {
    let (app, clock) = on_clock(|c| c.nearby.moves_per_hour = 2).await;
    let (ann, bo) = (app.user("Ann").await, app.user("Bo").await);
    shared(&app, &bo, BO).await;
    shared(&app, &ann, ANN).await;
    // Sharing the same place again, however often, only keeps it fresh.
    for _ in 0..5 {
        clock.advance_ms(60_000);
        shared(&app, &ann, ANN).await;
    }
    clock.advance_ms(60_000);
    shared(&app, &ann, CY).await;
    clock.advance_ms(60_000);
    let (status, body) = share(&app, &ann, BO).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "too_many_location_changes");
    // The first move, 7 minutes ago, leaves the hour in 53 minutes.
    assert_eq!(body["retry_after_ms"], 53 * 60_000);
    // The refused move changed nothing: Ann is still where she was.
    assert_eq!(seen(&app, &bo, "").await, vec![(ann.id, within(BO, CY))]);
    clock.advance_ms(53 * 60_000);
    shared(&app, &ann, BO).await;
    shared(&app, &bo, BO).await;
    assert_eq!(seen(&app, &bo, "").await, vec![(ann.id, 100)]);
}

#[tokio::test]
async fn searching_too_often_is_refused_with_when_to_retry() {
    let (app, clock) = on_clock(|_| {}).await;
    let ann = app.user("Ann").await;
    shared(&app, &ann, ANN).await;
    for _ in 0..6 {
        seen(&app, &ann, "").await;
        clock.advance_ms(1_000);
    }
    let (status, body) = api(&app, &ann, "GET", "/v1/nearby", Value::Null).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("too_many_nearby_queries"))
    );
    assert_eq!(body["retry_after_ms"], 54_000);
    clock.advance_ms(54_000);
    seen(&app, &ann, "").await;
}

#[tokio::test]
async fn bad_coordinates_and_radii_are_refused_with_clear_codes_and_change_nothing() {
    let app = spawn_app_with(|_| {}).await;
    let ann = app.user("Ann").await;
    for (body, code) in [
        (json!({ "lat": 90.5, "lon": 0 }), "invalid_latitude"),
        (json!({ "lat": -91, "lon": 0 }), "invalid_latitude"),
        (json!({ "lat": 0, "lon": 180.5 }), "invalid_longitude"),
        (json!({ "lat": 0, "lon": -181 }), "invalid_longitude"),
        (json!({ "lat": 85.5, "lon": 0 }), "location_not_covered"),
        (json!({ "lat": -89.9, "lon": 0 }), "location_not_covered"),
        (json!({ "lat": "31.2", "lon": 121.4 }), "invalid_json"),
        (json!({ "lat": 31.2 }), "invalid_json"),
        (
            json!({ "lat": 31.2, "lon": 121.4, "accuracy": 5 }),
            "invalid_json",
        ),
    ] {
        let got = refused(&app, &ann, "PUT", "/v1/me/location", body.clone()).await;
        assert_eq!(got, code, "{body}");
    }
    shared(&app, &ann, (1.0, 2.0)).await;
    // A number too large for a double is not a number either.
    let raw = reqwest::Client::new()
        .put(format!("{}/v1/me/location", app.base_url))
        .bearer_auth(&ann.tokens.access_token)
        .header("content-type", "application/json")
        .body(r#"{"lat": 1e999, "lon": 0}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let raw: Value = raw.json().await.unwrap();
    assert_eq!(raw["code"], "invalid_json");

    for (query, code) in [
        ("?radius_m=20001", "invalid_radius"),
        ("?radius_m=-5", "invalid_query"),
        ("?radius_m=far", "invalid_query"),
        ("?limit=x", "invalid_query"),
    ] {
        let path = format!("/v1/nearby{query}");
        assert_eq!(
            refused(&app, &ann, "GET", &path, Value::Null).await,
            code,
            "{query}"
        );
    }
    // The refused shares moved nothing: Ann is where her one good share put her.
    let bo = app.user("Bo").await;
    shared(&app, &bo, (1.0, 2.0)).await;
    assert_eq!(seen(&app, &bo, "").await, vec![(ann.id, 100)]);
    // Without a token, nothing at all.
    let (status, body) = app
        .http
        .request_json("GET", "/v1/nearby", None, None)
        .await
        .unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("missing_token"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_nearby_is_kept_in_redis_and_outlives_the_core_that_took_it() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let core_config = |c: &mut Config| {
        c.server.role = Role::Core;
        c.redis.url = Some(Secret::new(url.clone()));
        c.redis.lease_ttl_ms = 2_000;
    };
    let core = spawn_app_with(core_config).await;
    let mut gateways = Vec::new();
    for _ in 0..2 {
        let gateway = spawn_app_with(|c| {
            c.server.role = Role::Gateway;
            c.redis.url = Some(Secret::new(url.clone()));
        })
        .await;
        gateways.push(gateway);
    }
    every_shard_leased(&redis).await;
    let (ann, bo, cy) = (
        core.user("Ann").await,
        core.user("Bo").await,
        core.user("Cy").await,
    );
    // Each holds a session on a gateway, as the tier's clients do.
    let _ann_conn = gateways[0].connect(&ann).await;
    let _bo_conn = gateways[1].connect(&bo).await;
    for (who, at) in [(&ann, ANN), (&bo, BO), (&cy, CY)] {
        shared(&core, who, at).await;
    }
    assert_eq!(
        seen(&core, &ann, "").await,
        vec![(bo.id, within(ANN, BO)), (cy.id, 2_000)]
    );
    // Redis holds each position as its cell's centre, never as shared.
    let mut admin = admin(&redis);
    let kept: Vec<Option<(f64, f64)>> = redis::cmd("GEOPOS")
        .arg("sa:{nb}:geo")
        .arg(ann.id)
        .query(&mut admin)
        .unwrap();
    let (lon, lat) = kept[0].unwrap();
    assert_ne!((lat, lon), ANN);
    assert_eq!(snap(lat, lon), snap(ANN.0, ANN.1));
    // Gateways serve no room's routes; the core does.
    let (status, body) = api(&gateways[0], &ann, "GET", "/v1/nearby", Value::Null).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    // A block made on the core holds at once.
    core.http
        .block(&cy.tokens.access_token, ann.id)
        .await
        .unwrap();
    assert_eq!(seen(&core, &ann, "").await, vec![(bo.id, within(ANN, BO))]);

    // The core stops; another starts on its data and finds every position
    // and every move in Redis, where the first left them.
    let crate::helpers::TestApp {
        dir,
        shutdown,
        stopped,
        ..
    } = core;
    shutdown.cancel();
    stopped.await.unwrap();
    let core = spawn_app_in(dir, core_config).await;
    assert_eq!(
        seen(&core, &bo, "").await,
        vec![(ann.id, within(ANN, BO)), (cy.id, within(BO, CY))]
    );
    api(&core, &ann, "DELETE", "/v1/me/location", Value::Null).await;
    assert_eq!(seen(&core, &bo, "").await, vec![(cy.id, within(BO, CY))]);
}
