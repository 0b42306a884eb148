//! The OpenAPI 3.1 document of the HTTP JSON API, served at `/v1/openapi.json`.
//! A checked-in copy (`docs/openapi.json`) is compared with it by a test, and
//! the same test calls every operation it lists, so neither can drift from the
//! router.

use serde_json::{Value, json};

fn error_responses(codes: &[(&str, &str)]) -> Value {
    let mut responses = serde_json::Map::new();
    for (status, description) in codes {
        responses.insert(
            status.to_string(),
            json!({
                "description": description,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
            }),
        );
    }
    Value::Object(responses)
}

fn json_body(schema: &str) -> Value {
    json!({
        "required": true,
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
    })
}

fn ok(status: &str, description: &str, schema: Option<&str>) -> (String, Value) {
    let body = match schema {
        Some(s) => json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{s}")}}}
        }),
        None => json!({ "description": description }),
    };
    (status.to_string(), body)
}

fn operation(
    summary: &str,
    bearer: bool,
    body: Option<&str>,
    success: (String, Value),
    errors: &[(&str, &str)],
) -> Value {
    let mut responses = error_responses(errors);
    if let Some(map) = responses.as_object_mut() {
        map.insert(success.0, success.1);
    }
    let mut op = json!({ "summary": summary, "responses": responses });
    if bearer {
        op["security"] = json!([{ "bearer": [] }]);
    }
    if let Some(schema) = body {
        op["requestBody"] = json_body(schema);
    }
    op
}

/// Ids are u64 and exceed 2^53, so they travel as decimal strings.
fn id() -> Value {
    json!({"type": "string", "pattern": "^[0-9]+$", "description": "64-bit id as a decimal string"})
}

pub fn document() -> Value {
    let bad_json = ("400", "invalid_json, or a field-specific code");
    let unauthorized = (
        "401",
        "missing_token, invalid_token, token_expired or session_revoked",
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "superapp HTTP API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Accounts and sessions. Chat runs over the WebSocket at /v1/ws (docs/protocol.md). Errors are {code, message} with stable codes."
        },
        "paths": {
            "/v1/accounts": {"post": operation(
                "Register with a phone number (E.164), a password (8 to 128 characters, not a common one) and a display name",
                false, Some("RegisterRequest"), ok("201", "Registered", Some("Profile")),
                &[("400", "invalid_phone, password_too_short, password_too_long, password_too_common, invalid_display_name, invalid_json"),
                  ("409", "phone_taken"), ("413", "body_too_large"), ("415", "unsupported_media_type")])},
            "/v1/sessions": {"post": operation(
                "Log in: a short-lived access token and a rotating refresh token",
                false, Some("LoginRequest"), ok("200", "Logged in", Some("Tokens")),
                &[bad_json, ("401", "invalid_credentials (the same for an unknown phone)"),
                  ("429", "too_many_attempts, with retry_after_ms and Retry-After")])},
            "/v1/sessions/refresh": {"post": operation(
                "Exchange a refresh token for a new pair; a spent token revokes its session",
                false, Some("RefreshRequest"), ok("200", "A new pair", Some("Tokens")),
                &[bad_json, ("401", "invalid_refresh_token")])},
            "/v1/sessions/current": {"delete": operation(
                "Log out: ends the session and closes its WebSockets with 4001",
                true, None, ok("204", "Logged out", None), &[unauthorized])},
            "/v1/me": {"get": operation(
                "The caller's profile", true, None, ok("200", "The profile", Some("Profile")), &[unauthorized])},
            "/v1/ws-tickets": {"post": operation(
                "A single-use ticket, valid 30 seconds, for a browser's WebSocket handshake (?ticket=)",
                true, None, ok("200", "A ticket", Some("Ticket")), &[unauthorized])},
            "/v1/users/{user_id}/presence": {"get": operation(
                "Whether a user is online, on how many devices, and when last seen (a crashed gateway's sessions count as offline within gateway.presence_ttl_secs)",
                true, None, ok("200", "Presence", Some("Presence")),
                &[unauthorized, ("404", "unknown_user"), ("503", "unavailable, with retry_after_ms")])},
            "/v1/ws": {"get": operation(
                "The WebSocket upgrade (subprotocol superapp.v1, protobuf frames; docs/protocol.md)",
                true, None, ok("101", "Switching protocols", None),
                &[("400", "unsupported_subprotocol"), ("401", "missing_token, invalid_token, token_expired, session_revoked, invalid_ticket"),
                  ("503", "shutting_down")])},
            "/v1/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text/plain; version=0.0.4"}}}},
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "ok"}}}}
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["code", "message"], "properties": {
                    "code": {"type": "string", "description": "stable snake_case code"},
                    "message": {"type": "string"},
                    "retry_after_ms": {"type": "integer", "minimum": 0}}},
                "RegisterRequest": {"type": "object", "required": ["phone", "password", "display_name"], "properties": {
                    "phone": {"type": "string", "example": "+8613800138000"},
                    "password": {"type": "string", "minLength": 8, "maxLength": 128},
                    "display_name": {"type": "string", "minLength": 1, "maxLength": 64}}},
                "LoginRequest": {"type": "object", "required": ["phone", "password"], "properties": {
                    "phone": {"type": "string"}, "password": {"type": "string"},
                    "device_name": {"type": "string", "maxLength": 64}}},
                "RefreshRequest": {"type": "object", "required": ["refresh_token"], "properties": {
                    "refresh_token": {"type": "string"}}},
                "Profile": {"type": "object", "required": ["user_id", "phone", "display_name", "created_at_ms"], "properties": {
                    "user_id": id(), "phone": {"type": "string"}, "display_name": {"type": "string"},
                    "created_at_ms": {"type": "integer"}}},
                "Tokens": {"type": "object", "required": ["user_id", "session_id", "access_token", "access_expires_at_ms", "refresh_token", "refresh_expires_at_ms"], "properties": {
                    "user_id": id(), "session_id": id(),
                    "access_token": {"type": "string"}, "access_expires_at_ms": {"type": "integer"},
                    "refresh_token": {"type": "string"}, "refresh_expires_at_ms": {"type": "integer"}}},
                "Ticket": {"type": "object", "required": ["ticket", "expires_at_ms"], "properties": {
                    "ticket": {"type": "string"}, "expires_at_ms": {"type": "integer"}}},
                "Presence": {"type": "object", "required": ["user_id", "online", "devices", "last_seen_ms"], "properties": {
                    "user_id": id(), "online": {"type": "boolean"},
                    "devices": {"type": "integer", "minimum": 0, "description": "devices with a live session"},
                    "last_seen_ms": {"type": ["integer", "null"], "description": "now while online; else the last time a device was seen; null if not seen in 90 days"}}}
            }
        }
    })
}
