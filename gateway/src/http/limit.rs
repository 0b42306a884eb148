//! The per-user request budget over HTTP. Every authenticated route pays
//! its cost from the same per-user limit as the user's WebSocket requests
//! (`gateway.user_rate_per_sec`, shared by every gateway through Redis when
//! there is one), so a user has one budget whichever way they call. Costs
//! differ by route: creating a group, which writes a row per member, costs
//! sixty requests; reading one group costs one.
//!
//! [`charge`] runs on every room route once it is matched: it authenticates
//! the caller once, takes the route's cost from the caller's bucket, and
//! hands the caller on to the handler's [`AuthUser`] extractor. A refusal is
//! `rate_limited` (429 with `Retry-After`). A request without valid
//! credentials is not charged here (it has no user); its handler answers
//! it as it always has.

use std::sync::Arc;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use superapp_account::Accounts;
use superapp_kit::ratelimit::RateLimiter;

use super::auth::{AuthFailure, AuthUser, bearer_token};
use crate::error::ApiError;

/// What each authenticated route costs, in requests of the per-user budget
/// (300 a second sustained and 600 at once, by default). A cost above the
/// budget's burst is charged as the whole burst. Routes not listed take no
/// bearer token (registration, log-in, refresh, restore; throttled on their
/// own).
pub const COSTS: &[(&str, &str, u32)] = &[
    ("DELETE", "/v1/sessions/current", 1),
    ("GET", "/v1/me", 1),
    ("POST", "/v1/ws-tickets", 2),
    // Two password hashes; also under the failed-login throttle.
    ("POST", "/v1/me/password", 20),
    ("GET", "/v1/me/sessions", 2),
    ("DELETE", "/v1/me/sessions/{session_id}", 2),
    // A password hash; also under the failed-login throttle.
    ("POST", "/v1/me/deletion", 20),
    ("POST", "/v1/users/names", 5),
    // May ask the provider about a pending submission (at most every 5 s).
    ("GET", "/v1/me/real-name", 2),
    // Seals, writes and asks the provider; also limited to
    // `real_name.submissions_per_day` (429 `too_many_submissions`).
    ("POST", "/v1/me/real-name", 20),
    ("GET", "/v1/users/{user_id}/presence", 1),
    ("POST", "/v1/friend-requests", 10),
    ("GET", "/v1/friend-requests", 2),
    ("POST", "/v1/friend-requests/{user_id}/accept", 5),
    ("DELETE", "/v1/friend-requests/{user_id}", 2),
    ("GET", "/v1/contacts", 5),
    // Reads the caller's contacts (at most their friends) and matches each.
    ("GET", "/v1/contacts/search", 5),
    ("PATCH", "/v1/contacts/{user_id}", 2),
    ("DELETE", "/v1/contacts/{user_id}", 5),
    ("GET", "/v1/blocks", 2),
    ("PUT", "/v1/blocks/{user_id}", 5),
    ("DELETE", "/v1/blocks/{user_id}", 5),
    ("GET", "/v1/me/privacy", 1),
    ("PATCH", "/v1/me/privacy", 2),
    ("GET", "/v1/me/profile", 1),
    ("PATCH", "/v1/me/profile", 5),
    ("GET", "/v1/users/{user_id}", 1),
    // Also limited to `social.lookups_per_hour` (429 `too_many_lookups`).
    ("POST", "/v1/users/by-handle", 5),
    ("POST", "/v1/users/by-phone", 5),
    ("GET", "/v1/contacts/salt", 1),
    // Reads and records up to `social.contact_match_hashes_per_request`
    // hashes; also limited per day (429 `too_many_contact_matches`).
    ("POST", "/v1/contacts/match", 60),
    // People nearby: besides these, moves are capped per hour and searches
    // per minute (`nearby.*`; 429 `too_many_location_changes` and
    // `too_many_nearby_queries`).
    ("PUT", "/v1/me/location", 5),
    ("DELETE", "/v1/me/location", 2),
    ("GET", "/v1/nearby", 10),
    ("POST", "/v1/groups", 60),
    ("POST", "/v1/groups/join", 10),
    ("GET", "/v1/groups/{group_id}", 1),
    ("PATCH", "/v1/groups/{group_id}", 5),
    ("DELETE", "/v1/groups/{group_id}", 20),
    ("GET", "/v1/groups/{group_id}/members", 5),
    ("POST", "/v1/groups/{group_id}/members", 20),
    ("PATCH", "/v1/groups/{group_id}/members/{user_id}", 5),
    ("DELETE", "/v1/groups/{group_id}/members/{user_id}", 5),
    ("POST", "/v1/groups/{group_id}/owner", 5),
    ("POST", "/v1/groups/{group_id}/invite-links", 5),
    ("GET", "/v1/groups/{group_id}/join-requests", 5),
    ("POST", "/v1/groups/{group_id}/join-requests/{user_id}", 5),
    ("GET", "/v1/group-invitations", 2),
    ("POST", "/v1/group-invitations/{group_id}/accept", 10),
    ("DELETE", "/v1/group-invitations/{group_id}", 2),
    // Media: creating an upload reserves quota and a staging file; each
    // PATCH writes and syncs a file (and the last one hashes and stores the
    // object); besides these, open uploads are capped per user
    // (`media.max_open_uploads`, 429 `too_many_uploads`).
    ("POST", "/v1/uploads", 20),
    ("HEAD", "/v1/uploads/{upload_id}", 1),
    ("GET", "/v1/uploads/{upload_id}", 1),
    ("PATCH", "/v1/uploads/{upload_id}", 10),
    ("DELETE", "/v1/uploads/{upload_id}", 5),
    ("POST", "/v1/media/{media_id}/link", 2),
    ("GET", "/v1/media/usage", 1),
    // One HMAC, no store.
    ("GET", "/v1/calls/turn", 2),
    // The wallet. Payments verify the payment PIN (an argon2id hash) and
    // are also under the wallet's own velocity and daily limits (429
    // `too_fast`, `over_daily_limit`, `over_daily_count`); five wrong PINs
    // in a row lock it (423 `pin_locked`).
    ("GET", "/v1/wallet", 1),
    ("PUT", "/v1/wallet/pin", 20),
    // Asks the payment provider.
    ("POST", "/v1/wallet/top-ups", 10),
    ("GET", "/v1/wallet/orders/{order_id}", 1),
    ("POST", "/v1/wallet/withdrawals", 20),
    ("POST", "/v1/wallet/transfers", 20),
    ("GET", "/v1/wallet/transfers/{transfer_id}", 1),
    ("POST", "/v1/wallet/transfers/{transfer_id}/accept", 5),
    ("POST", "/v1/wallet/transfers/{transfer_id}/decline", 5),
    ("POST", "/v1/wallet/packets", 20),
    // Reads the packet's grabs (at most `wallet.packet_max_count`).
    ("GET", "/v1/wallet/packets/{packet_id}", 2),
    ("POST", "/v1/wallet/packets/{packet_id}/grab", 5),
    ("GET", "/v1/wallet/history", 5),
    ("GET", "/v1/wallet/entries/{entry_id}", 2),
];

/// What each route without a bearer token that is nevertheless budgeted
/// costs, charged to the client's address ([`crate::serve::address_key`])
/// in the same limiter as users' budgets: downloads by signed link, which
/// players fetch in many ranges and which a leaked link could be hammered
/// through, and the sandbox provider's checkout. (The provider's callbacks
/// are not: a refused delivery comes again, and an unsigned one costs an
/// HMAC and nothing stored.)
pub const ADDRESS_COSTS: &[(&str, &str, u32)] = &[
    ("GET", "/v1/files/{media_id}", 1),
    // The sandbox provider's checkout: a reference leaked from a pay_url
    // could be tried over and over.
    ("POST", "/v1/wallet/sandbox/pay/{provider_ref}", 5),
];

/// The address cost of a route, by method and route template.
pub fn address_cost(method: &Method, template: &str) -> Option<u32> {
    ADDRESS_COSTS
        .iter()
        .find(|(m, path, _)| *path == template && method.as_str() == *m)
        .map(|(_, _, cost)| *cost)
}

/// The cost of a route, by method and route template; None for a route
/// that takes no bearer token.
pub fn cost(method: &Method, template: &str) -> Option<u32> {
    COSTS
        .iter()
        .find(|(m, path, _)| *path == template && method.as_str() == *m)
        .map(|(_, _, cost)| *cost)
}

/// What [`charge`] needs: who the caller is, and the shared budget.
#[derive(Clone)]
pub struct HttpLimit {
    pub accounts: Arc<Accounts>,
    pub limits: Arc<dyn RateLimiter>,
}

/// Charges an authenticated request its route's cost before the handler runs.
pub async fn charge(State(limit): State<HttpLimit>, mut request: Request, next: Next) -> Response {
    let cost = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|route| cost(request.method(), route.as_str()));
    let Some(cost) = cost else {
        let by_address = request
            .extensions()
            .get::<MatchedPath>()
            .and_then(|route| address_cost(request.method(), route.as_str()));
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| *peer);
        if let (Some(cost), Some(peer)) = (by_address, peer) {
            let key = format!("a.{}", crate::serve::address_key(peer.ip()));
            if let Err(retry_after_ms) = limit.limits.take_n(&key, cost).await {
                return ApiError::rate_limited(retry_after_ms).into_response();
            }
        }
        return next.run(request).await;
    };
    let Ok(token) = bearer_token(request.headers()) else {
        return next.run(request).await;
    };
    match limit.accounts.authenticate(token).await {
        Ok(claims) => {
            let key = format!("u.{}", claims.sub);
            if let Err(retry_after_ms) = limit.limits.take_n(&key, cost).await {
                return ApiError::rate_limited(retry_after_ms).into_response();
            }
            request.extensions_mut().insert(AuthUser(claims));
        }
        Err(refused) => {
            request
                .extensions_mut()
                .insert(AuthFailure(ApiError::from(refused)));
        }
    }
    next.run(request).await
}
