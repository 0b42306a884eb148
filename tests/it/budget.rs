//! The per-user request budget over HTTP: every authenticated route pays its
//! cost, a refusal is 429 `rate_limited` with `Retry-After`, and one user's
//! spending leaves everyone else served.

use reqwest::Method as M;
use serde_json::json;

use crate::helpers::{TestApp, User, spawn_app_with};

async fn call(app: &TestApp, who: &User, method: reqwest::Method, path: &str) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", app.base_url))
        .bearer_auth(&who.tokens.access_token);
    if path == "/v1/groups" {
        request = request.json(&json!({"name": "hikers"}));
    }
    request.send().await.unwrap()
}

async fn refused_for_rate(response: reqwest::Response) {
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");
    assert!(body["retry_after_ms"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn authenticated_routes_pay_their_cost_and_are_refused_past_the_budget() {
    // One request a second, two at once.
    let app = spawn_app_with(|c| c.gateway.user_rate_per_sec = 1).await;
    let (ann, bob) = (app.user("Ann").await, app.user("Bob").await);
    for _ in 0..2 {
        assert_eq!(call(&app, &ann, M::GET, "/v1/me").await.status(), 200);
    }
    refused_for_rate(call(&app, &ann, M::GET, "/v1/me").await).await;
    // Bob's budget is his own; creating a group costs all of it at once.
    assert_eq!(call(&app, &bob, M::POST, "/v1/groups").await.status(), 201);
    refused_for_rate(call(&app, &bob, M::GET, "/v1/me").await).await;
    refused_for_rate(call(&app, &bob, M::POST, "/v1/groups").await).await;
    // A request with no valid token is not charged to anyone: it is 401.
    let anonymous = reqwest::Client::new()
        .get(format!("{}/v1/me", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}
