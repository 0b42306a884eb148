//! The OpenAPI document: served, checked in, and true to the router.

use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test]
async fn the_served_document_matches_the_checked_in_copy_and_every_operation_exists() {
    let app = spawn_app().await;
    let served: serde_json::Value = reqwest::get(format!("{}/v1/openapi.json", app.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
    let shipped: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_default())
            .unwrap_or_default();
    assert!(
        served == shipped,
        "docs/openapi.json is stale; regenerate it with: curl -s localhost:8080/v1/openapi.json | python3 -m json.tool > docs/openapi.json"
    );
    let client = reqwest::Client::new();
    for (path, item) in served["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let status = client
                .request(method.clone(), format!("{}{path}", app.base_url))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            assert!(
                status != 404 && status != 405,
                "{method} {path} is not routed ({status})"
            );
        }
    }
}

/// A request that goes wrong before its handler: path and query, content type
/// and body, and the code expected.
type Case = (
    String,
    String,
    Option<(&'static str, &'static str)>,
    &'static str,
);

/// Whatever a request gets wrong before its handler runs (a body that is not
/// JSON or not of JSON's content type, a path segment or a query value that
/// does not read, a plain GET of the WebSocket route) is answered with a JSON
/// error whose status the document lists for that operation.
#[tokio::test]
async fn refusals_before_a_handler_are_json_errors_the_document_describes() {
    // One user calls every operation several times: more than a second of
    // the default request budget, which has tests of its own (budget.rs).
    let app = spawn_app_with(|c| c.gateway.user_rate_per_sec = 100_000).await;
    let ann = app.user("Ann").await;
    let bearer = format!("Bearer {}", ann.tokens.access_token);
    let doc: serde_json::Value = reqwest::get(format!("{}/v1/openapi.json", app.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let concrete = |path: &str, value: &str| {
        let mut out = String::new();
        for (i, part) in path.split('{').enumerate() {
            match part.split_once('}') {
                Some((_, rest)) if i > 0 => out.push_str(&format!("{value}{rest}")),
                _ => out.push_str(part),
            }
        }
        out
    };
    let client = reqwest::Client::new();
    let mut checked = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            // A HEAD answer has no body to read the code from.
            if method == "head" {
                continue;
            }
            let mut cases: Vec<Case> = Vec::new();
            // The JSON cases are for JSON bodies (tus PATCHes take bytes).
            let has_body = operation
                .get("requestBody")
                .is_some_and(|b| b["content"].get("application/json").is_some());
            let json = has_body.then_some(("application/json", "{}"));
            if has_body {
                let p = concrete(path, "1");
                let not_json = Some(("text/plain", "{}"));
                cases.push((p.clone(), String::new(), not_json, "unsupported_media_type"));
                let broken = Some(("application/json", "{"));
                cases.push((p, String::new(), broken, "invalid_json"));
            }
            if path.contains('{') {
                cases.push((concrete(path, "%FF"), String::new(), json, "invalid_path"));
            }
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                if parameter["in"] == "query" && parameter["schema"]["type"] == "integer" {
                    let query = format!("?{}=x", parameter["name"].as_str().unwrap());
                    cases.push((concrete(path, "1"), query, json, "invalid_query"));
                }
            }
            if path == "/v1/ws" {
                cases.push((path.clone(), String::new(), None, "not_a_websocket_upgrade"));
            }
            for (target, query, body, code) in cases {
                let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let mut request = client
                    .request(method.clone(), format!("{}{target}{query}", app.base_url))
                    .header("authorization", &bearer);
                if let Some((content_type, body)) = body {
                    request = request.header("content-type", content_type).body(body);
                }
                let response = request.send().await.unwrap();
                let status = response.status().as_u16().to_string();
                let content_type = response.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .to_string();
                let text = response.text().await.unwrap();
                let what =
                    format!("{method} {target}{query} ({code}): {status} {content_type} {text}");
                assert_eq!(content_type, "application/json", "{what}");
                let error: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert_eq!(error["code"], code, "{what}");
                assert!(
                    operation["responses"].get(&status).is_some(),
                    "{what}: the document lists no {status}"
                );
                checked.push(code);
            }
        }
    }
    for code in [
        "unsupported_media_type",
        "invalid_json",
        "invalid_path",
        "invalid_query",
        "not_a_websocket_upgrade",
    ] {
        assert!(checked.contains(&code), "no case of {code}");
    }
}
