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
            "description": "Accounts, sessions, presence and groups. Chat runs over the WebSocket at /v1/ws (docs/protocol.md). Errors are {code, message} with stable codes."
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
            "/v1/groups": {"post": operation(
                "Create a group owned by the caller, with first members (at most 6000 with the owner)",
                true, Some("CreateGroup"), ok("201", "Created", Some("Group")),
                &[unauthorized, ("400", "invalid_group_name, invalid_avatar, invalid_json"),
                  ("404", "unknown_recipient (a member that does not exist)"), ("409", "group_full")])},
            "/v1/groups/join": {"post": operation(
                "Join with an invitation link's token: 200 joined, 202 waiting for an admin's approval",
                true, Some("JoinGroup"), ok("200", "Joined or pending", Some("JoinResult")),
                &[unauthorized, ("404", "invalid_invite (unknown or expired)"), ("409", "group_full")])},
            "/v1/groups/{group_id}": {
                "get": operation("The group, with the caller's role", true, None, ok("200", "The group", Some("Group")),
                    &[unauthorized, ("403", "not_a_member"), ("404", "unknown_group")]),
                "patch": operation(
                    "Change name, avatar, announcement (an event to all members), mute_all, slow_mode_secs (0 to 3600) or join_approval: admins and the owner",
                    true, Some("UpdateGroup"), ok("200", "The group", Some("Group")),
                    &[unauthorized, ("400", "invalid_group_name, invalid_avatar, invalid_announcement, invalid_slow_mode, invalid_json"),
                      ("403", "not_a_member, not_allowed"), ("404", "unknown_group")]),
                "delete": operation("Dissolve the group: the owner only", true, None, ok("204", "Dissolved", None),
                    &[unauthorized, ("403", "not_a_member, not_allowed"), ("404", "unknown_group")])},
            "/v1/groups/{group_id}/members": {
                "get": operation(
                    "Members in user-id order, in pages (limit up to 500, cursor = the previous next_cursor); q filters by nickname or display name",
                    true, None, ok("200", "A page of members", Some("MemberPage")),
                    &[unauthorized, ("400", "invalid_cursor"), ("403", "not_a_member"), ("404", "unknown_group")]),
                "post": operation(
                    "Invite users: added at once, or pending when the group asks for approval and the caller is not an admin",
                    true, Some("InviteMembers"), ok("200", "Who was added and who waits", Some("GroupJoin")),
                    &[unauthorized, ("400", "invalid_members"), ("403", "not_a_member"),
                      ("404", "unknown_group, unknown_recipient"), ("409", "group_full")])},
            "/v1/groups/{group_id}/members/{user_id}": {
                "patch": operation(
                    "Set a member's role (the owner: admin or member, at most 10 admins), mute them for mute_secs (0 unmutes; admins over members, the owner over anyone), or set one's own nickname",
                    true, Some("UpdateMember"), ok("204", "Done", None),
                    &[unauthorized, ("400", "invalid_role, invalid_nickname"), ("403", "not_a_member, not_allowed"),
                      ("404", "unknown_group, unknown_member"), ("409", "too_many_admins")]),
                "delete": operation(
                    "Remove a member (admins over members, the owner over anyone), or leave when it is the caller (not the owner)",
                    true, None, ok("204", "Removed", None),
                    &[unauthorized, ("403", "not_a_member, not_allowed"), ("404", "unknown_group, unknown_member"),
                      ("409", "owner_must_transfer")])},
            "/v1/groups/{group_id}/owner": {"post": operation(
                "Transfer ownership to a member; the former owner becomes an admin",
                true, Some("TransferOwner"), ok("204", "Transferred", None),
                &[unauthorized, ("403", "not_a_member, not_allowed"), ("404", "unknown_group, unknown_member")])},
            "/v1/groups/{group_id}/invite-links": {"post": operation(
                "A new invitation token (valid 7 days; replaces the previous one): admins and the owner",
                true, None, ok("200", "The token", Some("InviteLink")),
                &[unauthorized, ("403", "not_a_member, not_allowed"), ("404", "unknown_group")])},
            "/v1/groups/{group_id}/join-requests": {"get": operation(
                "Joins waiting for approval: admins and the owner",
                true, None, ok("200", "The requests", Some("JoinRequests")),
                &[unauthorized, ("403", "not_a_member, not_allowed"), ("404", "unknown_group")])},
            "/v1/groups/{group_id}/join-requests/{user_id}": {"post": operation(
                "Approve or reject a pending join: admins and the owner",
                true, Some("DecideJoin"), ok("200", "Whether the user joined", Some("Decided")),
                &[unauthorized, ("403", "not_a_member, not_allowed"), ("404", "unknown_group, unknown_join_request"),
                  ("409", "group_full")])},
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
                "CreateGroup": {"type": "object", "required": ["name"], "additionalProperties": false, "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 64},
                    "avatar": {"type": "string", "maxLength": 512},
                    "members": {"type": "array", "items": id(), "maxItems": 5999}}},
                "UpdateGroup": {"type": "object", "additionalProperties": false, "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 64},
                    "avatar": {"type": "string", "maxLength": 512},
                    "announcement": {"type": "string", "maxLength": 2000},
                    "mute_all": {"type": "boolean"},
                    "slow_mode_secs": {"type": "integer", "minimum": 0, "maximum": 3600},
                    "join_approval": {"type": "boolean"}}},
                "Group": {"type": "object", "required": ["group_id", "conversation_id", "name", "avatar", "announcement", "owner", "created_ms", "member_count", "mute_all", "slow_mode_secs", "join_approval", "last_seq"], "properties": {
                    "group_id": id(), "conversation_id": {"type": "string", "description": "g.<group_id>: where its messages go over the WebSocket"},
                    "name": {"type": "string"}, "avatar": {"type": "string"}, "announcement": {"type": "string"},
                    "owner": id(), "created_ms": {"type": "integer"}, "member_count": {"type": "integer"},
                    "mute_all": {"type": "boolean"}, "slow_mode_secs": {"type": "integer"}, "join_approval": {"type": "boolean"},
                    "last_seq": {"type": "integer"},
                    "my_role": {"type": "string", "enum": ["owner", "admin", "member"]}}},
                "Member": {"type": "object", "required": ["user_id", "display_name", "nickname", "role", "joined_ms", "muted_until_ms"], "properties": {
                    "user_id": id(), "display_name": {"type": "string"}, "nickname": {"type": "string"},
                    "role": {"type": "string", "enum": ["owner", "admin", "member"]},
                    "joined_ms": {"type": "integer"}, "muted_until_ms": {"type": "integer"}}},
                "MemberPage": {"type": "object", "required": ["members", "next_cursor"], "properties": {
                    "members": {"type": "array", "items": {"$ref": "#/components/schemas/Member"}},
                    "next_cursor": {"type": "string", "description": "empty on the last page"}}},
                "InviteMembers": {"type": "object", "required": ["members"], "additionalProperties": false, "properties": {
                    "members": {"type": "array", "items": id()}}},
                "GroupJoin": {"type": "object", "required": ["added", "pending"], "properties": {
                    "added": {"type": "array", "items": id()}, "pending": {"type": "array", "items": id()}}},
                "UpdateMember": {"type": "object", "additionalProperties": false, "properties": {
                    "role": {"type": "string", "enum": ["admin", "member"]},
                    "mute_secs": {"type": "integer", "minimum": 0},
                    "nickname": {"type": "string", "maxLength": 32}}},
                "TransferOwner": {"type": "object", "required": ["user_id"], "additionalProperties": false, "properties": {
                    "user_id": id()}},
                "InviteLink": {"type": "object", "required": ["token", "expires_at_ms"], "properties": {
                    "token": {"type": "string"}, "expires_at_ms": {"type": "integer"}}},
                "JoinGroup": {"type": "object", "required": ["token"], "additionalProperties": false, "properties": {
                    "token": {"type": "string"}}},
                "JoinResult": {"type": "object", "required": ["group_id", "joined"], "properties": {
                    "group_id": id(), "joined": {"type": "boolean", "description": "false: waiting for approval"}}},
                "JoinRequests": {"type": "object", "required": ["requests"], "properties": {
                    "requests": {"type": "array", "items": {"type": "object", "properties": {
                        "user_id": id(), "inviter": id(), "requested_ms": {"type": "integer"}}}}}},
                "DecideJoin": {"type": "object", "required": ["approve"], "additionalProperties": false, "properties": {
                    "approve": {"type": "boolean"}}},
                "Decided": {"type": "object", "required": ["joined"], "properties": {
                    "joined": {"type": "boolean"}}},
                "Presence": {"type": "object", "required": ["user_id", "online", "devices", "last_seen_ms"], "properties": {
                    "user_id": id(), "online": {"type": "boolean"},
                    "devices": {"type": "integer", "minimum": 0, "description": "devices with a live session"},
                    "last_seen_ms": {"type": ["integer", "null"], "description": "now while online; else the last time a device was seen; null if not seen in 90 days"}}}
            }
        }
    })
}
