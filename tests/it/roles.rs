//! The medium tier: gateway processes that hold sessions and one core that runs
//! the services, meeting only through a real Redis.

use std::time::Duration;

use superapp_client::Connection;
use superapp_kit::config::Role;
use superapp_kit::secret::Secret;
use superapp_kit::testkit::RedisServer;

use crate::helpers::{TestApp, next_message, spawn_app_with};

async fn tier(redis: &RedisServer, gateways: usize) -> (TestApp, Vec<TestApp>) {
    let url = redis.url();
    let core = spawn_app_with(|c| {
        c.server.role = Role::Core;
        c.redis.url = Some(Secret::new(url.clone()));
        c.redis.lease_ttl_ms = 2_000;
    })
    .await;
    let mut list = Vec::new();
    for _ in 0..gateways {
        list.push(
            spawn_app_with(|c| {
                c.server.role = Role::Gateway;
                c.redis.url = Some(Secret::new(url.clone()));
            })
            .await,
        );
    }
    // The core takes its shard leases within a moment.
    tokio::time::sleep(Duration::from_millis(700)).await;
    (core, list)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_on_different_gateways_chat_live_both_ways_on_every_device() {
    let Some(redis) = RedisServer::start() else { return };
    let (core, gateways) = tier(&redis, 2).await;
    let a = core.user("Ann").await;
    let b = core.user("Bo").await;
    let (g1, g2) = (&gateways[0].base_url, &gateways[1].base_url);
    let a_phone = Connection::connect(g1, &a.tokens.access_token).await.unwrap();
    let a_tablet = Connection::connect(g2, &a.tokens.access_token).await.unwrap();
    let b_phone = Connection::connect(g2, &b.tokens.access_token).await.unwrap();
    let b_laptop = Connection::connect(g1, &b.tokens.access_token).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // subscriptions reach redis

    let ack = a_phone.send_text(b.id, "x1", "across gateways").await.unwrap();
    assert_eq!(ack.seq, 1);
    for device in [&b_phone, &b_laptop, &a_tablet] {
        assert_eq!(next_message(device).await.seq, 1);
    }
    let reply = b_phone.send_text(a.id, "y1", "and back").await.unwrap();
    assert_eq!(reply.seq, 2);
    for device in [&a_phone, &a_tablet] {
        let mut m = next_message(device).await;
        if m.seq == 1 {
            m = next_message(device).await; // the phone's own first message
        }
        assert_eq!((m.seq, m.sender), (2, b.id));
    }
    // Retries stay idempotent through the core, and sync works through a gateway.
    let again = a_phone.send_text(b.id, "x1", "across gateways").await.unwrap();
    assert!(again.duplicate && again.seq == 1);
    let page = b_laptop.pull(&ack.conversation_id, 0, 10).await.unwrap();
    assert_eq!(page.messages.len(), 2);
    // A gateway serves sessions only.
    let (status, _) = gateways[0].http.request_json("GET", "/v1/me", None, None).await.unwrap();
    assert_eq!(status, 404);
    // Logging out on the core closes the session's sockets on every gateway.
    core.http.logout(&a.tokens.access_token).await.unwrap();
    assert_eq!(a_tablet.wait_closed(Duration::from_secs(5)).await.map(|c| c.0), Some(4001));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_is_refused_at_a_gateway_handshake() {
    let Some(redis) = RedisServer::start() else { return };
    let (_core, gateways) = tier(&redis, 1).await;
    match Connection::connect(&gateways[0].base_url, "not-a-token").await {
        Err(refused) => assert_eq!(refused.code(), Some("invalid_token")),
        Ok(_) => panic!("a bad token opened a session"),
    }
}
