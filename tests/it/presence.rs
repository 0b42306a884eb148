//! Presence follows sessions, and a crashed gateway's users go offline within
//! the presence ttl; the per-user rate limit holds across gateways.

use std::time::Duration;

use superapp::config::Role;
use superapp_client::{Connection, HttpClient, Presence};
use superapp_kit::secret::Secret;
use superapp_kit::testkit::RedisServer;

use crate::helpers::{spawn_app, spawn_app_with};

/// Polls until `done` holds of the user's presence, or gives up after `within`.
async fn presence_until(
    http: &HttpClient,
    token: &str,
    user: u64,
    within: Duration,
    done: impl Fn(&Presence) -> bool,
) -> Presence {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let p = http.presence(token, user).await.unwrap();
        if done(&p) || tokio::time::Instant::now() >= deadline {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn presence_counts_devices_and_remembers_when_last_seen() {
    let app = spawn_app().await;
    let ann = app.user("Ann").await;
    let bo = app.user("Bo").await;
    let token = ann.tokens.access_token.as_str();
    let wait = Duration::from_secs(5);

    let never = app.http.presence(token, bo.id).await.unwrap();
    assert_eq!(
        (never.online, never.devices, never.last_seen_ms),
        (false, 0, None)
    );

    let phone = app.connect(&bo).await;
    let laptop = app.connect(&bo).await;
    let p = presence_until(&app.http, token, bo.id, wait, |p| p.devices == 2).await;
    assert!(p.online && p.devices == 2 && p.last_seen_ms.is_some());

    phone.close().await;
    let p = presence_until(&app.http, token, bo.id, wait, |p| p.devices == 1).await;
    assert!(p.online);
    laptop.close().await;
    let p = presence_until(&app.http, token, bo.id, wait, |p| !p.online).await;
    assert_eq!(p.devices, 0);
    assert!(p.last_seen_ms.is_some());

    // Bad asks get stable codes.
    for path in ["/v1/users/999999/presence", "/v1/users/abc/presence"] {
        let (status, body) = app
            .http
            .request_json("GET", path, Some(token), None)
            .await
            .unwrap();
        assert_eq!((status, body["code"].as_str()), (404, Some("unknown_user")));
    }
    let path = format!("/v1/users/{}/presence", bo.id);
    let (status, _) = app
        .http
        .request_json("GET", &path, None, None)
        .await
        .unwrap();
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_gateways_users_go_offline_within_the_presence_ttl() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let core = spawn_app_with(|c| {
        c.server.role = Role::Core;
        c.redis.url = Some(Secret::new(url.clone()));
        c.gateway.presence_ttl_secs = 2;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, "[gateway]\npresence_ttl_secs = 2\n").unwrap();
    let args = [
        "--role",
        "gateway",
        "--redis",
        url.as_str(),
        "--config",
        config.to_str().unwrap(),
    ];
    let (mut gateway, gateway_url, _) =
        crate::helpers::start_server_logging(dir.path(), "info", &args);
    let ann = core.user("Ann").await;
    let bo = core.user("Bo").await;
    let token = ann.tokens.access_token.as_str();
    let _bo_phone = Connection::connect(&gateway_url, &bo.tokens.access_token)
        .await
        .unwrap();
    let online = presence_until(&core.http, token, bo.id, Duration::from_secs(5), |p| {
        p.online
    })
    .await;
    assert_eq!(online.devices, 1);

    // Refreshes keep the session online well past one ttl.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(core.http.presence(token, bo.id).await.unwrap().online);

    gateway.kill().unwrap(); // SIGKILL: nobody marks the session offline
    gateway.wait().unwrap();
    let killed = tokio::time::Instant::now();
    let after = presence_until(&core.http, token, bo.id, Duration::from_secs(6), |p| {
        !p.online
    })
    .await;
    println!("offline {:?} after the kill (ttl 2 s)", killed.elapsed());
    assert!(
        !after.online,
        "still online {:?} after the kill",
        killed.elapsed()
    );
    assert!(after.last_seen_ms.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_rate_limit_is_shared_by_devices_on_different_gateways() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let core = spawn_app_with(|c| {
        c.server.role = Role::Core;
        c.redis.url = Some(Secret::new(url.clone()));
    })
    .await;
    let mut gateways = Vec::new();
    for _ in 0..2 {
        gateways.push(
            spawn_app_with(|c| {
                c.server.role = Role::Gateway;
                c.redis.url = Some(Secret::new(url.clone()));
                // 5 per second and a burst of 10 for the user; sessions unlimited.
                c.gateway.user_rate_per_sec = 5;
                c.gateway.rate_per_sec = 10_000;
                c.gateway.rate_burst = 10_000;
            })
            .await,
        );
    }
    let ann = core.user("Ann").await;
    let token = ann.tokens.access_token.as_str();
    let phone = Connection::connect(&gateways[0].base_url, token)
        .await
        .unwrap();
    let laptop = Connection::connect(&gateways[1].base_url, token)
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let (mut admitted, mut limited) = ([0u32; 2], 0u32);
    for i in 0..40 {
        let device = if i % 2 == 0 { &phone } else { &laptop };
        match device.ping().await {
            Ok(_) => admitted[i % 2] += 1,
            Err(e) => {
                assert_eq!(e.code(), Some("rate_limited"));
                limited += 1;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total = admitted[0] + admitted[1];
    println!("admitted {admitted:?}, refused {limited} in {elapsed:.2} s");
    // One budget of 10 plus 5 per second: each gateway alone would have
    // admitted its 20.
    assert!(
        f64::from(total) <= 10.0 + 5.0 * elapsed + 1.0,
        "admitted {total}"
    );
    assert!(admitted[0] > 0 && admitted[1] > 0 && limited > 0);
}
