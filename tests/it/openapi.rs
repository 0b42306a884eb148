//! The OpenAPI document: served, checked in, and true to the router.

use crate::helpers::spawn_app;

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
