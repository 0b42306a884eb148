//! The HTTP edge: one module per room with its routes, bodies and error
//! mapping, and the edge's own routes (the WebSocket upgrade, `/metrics`,
//! `/healthz`, the OpenAPI document).
//!
//! - [`accounts`], [`security`], [`real_name`], [`profiles`], [`social`],
//!   [`chat`], [`presence`], [`nearby`], [`media`], [`wallet`]: the rooms' routes and the mapping
//!   of their outcomes to the API's stable codes, each an
//!   [`OpenApiRouter`] over [`Rooms`], whose `#[utoipa::path]` annotations
//!   put every route in the OpenAPI document in the same breath as in the
//!   router.
//! - [`auth`]: [`AuthUser`], the authenticated caller.
//! - [`limit`]: the per-user request budget every authenticated route
//!   pays its cost from, shared with the WebSocket.
//! - [`ws`]: the WebSocket upgrade at `/v1/ws`.
//!
//! Each role's router is assembled from the rooms it runs ([`router`]): the
//! edge everywhere, the rooms' routes where the rooms live (roles `all` and
//! `core`). Adding a room is one module here and one line in [`room_routes`].
//! Ids are u64 but travel as strings, since they exceed 2^53; errors are
//! `{code, message}` with stable codes (docs/protocol.md).

pub mod accounts;
pub mod auth;
pub mod calls;
pub mod chat;
pub mod limit;
pub mod media;
pub mod nearby;
pub mod presence;
pub mod profiles;
pub mod real_name;
pub mod security;
pub mod social;
pub mod wallet;
pub mod ws;

use std::sync::Arc;

use crate::presence::Presence;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{
    DefaultBodyLimit, FromRef, FromRequest, FromRequestParts, MatchedPath, Path, Query, Request,
    State,
};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use superapp_account::{Accounts, Nearby, Profiles, RealNames, Social};
use superapp_chat::{Calls, Chat};
use superapp_kit::metrics::LATENCY_SECONDS;
use superapp_media::Media;
use superapp_wallet::Wallet;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::AuthUser;

use crate::AppState;
use crate::error::ApiError;
use crate::session::SessionMetrics;

/// The rooms this process runs, as their routes see them.
#[derive(Clone)]
pub struct Rooms {
    pub accounts: Arc<Accounts>,
    pub social: Arc<Social>,
    /// Real-name verification, the account room's too.
    pub real_names: Arc<RealNames>,
    /// Profiles, lookups and contact matching, the account room's too.
    pub profiles: Arc<Profiles>,
    pub chat: Arc<Chat>,
    /// Call signaling, and TURN credentials.
    pub calls: Arc<Calls>,
    /// Who is online: in memory in one process, in Redis across gateways.
    pub presence: Arc<dyn Presence>,
    /// People nearby, the account room's too; its index in memory in one
    /// process, in Redis across the tier.
    pub nearby: Arc<Nearby>,
    /// Uploads, download links and downloads.
    pub media: Arc<Media>,
    /// The ledger: balances, top-ups and withdrawals, transfers, red packets.
    pub wallet: Arc<Wallet>,
}

impl FromRef<Rooms> for Arc<Wallet> {
    fn from_ref(rooms: &Rooms) -> Self {
        rooms.wallet.clone()
    }
}

impl FromRef<Rooms> for Arc<Media> {
    fn from_ref(rooms: &Rooms) -> Self {
        rooms.media.clone()
    }
}

impl FromRef<Rooms> for Arc<Accounts> {
    fn from_ref(rooms: &Rooms) -> Self {
        rooms.accounts.clone()
    }
}

impl FromRef<Rooms> for Arc<Social> {
    fn from_ref(rooms: &Rooms) -> Self {
        rooms.social.clone()
    }
}

impl FromRef<Rooms> for Arc<RealNames> {
    fn from_ref(rooms: &Rooms) -> Self {
        rooms.real_names.clone()
    }
}

impl FromRef<Rooms> for Arc<Profiles> {
    fn from_ref(rooms: &Rooms) -> Self {
        rooms.profiles.clone()
    }
}

impl FromRef<Rooms> for Arc<Nearby> {
    fn from_ref(rooms: &Rooms) -> Self {
        rooms.nearby.clone()
    }
}

impl FromRef<Rooms> for Arc<Calls> {
    fn from_ref(rooms: &Rooms) -> Self {
        rooms.calls.clone()
    }
}

impl FromRef<Rooms> for Arc<Chat> {
    fn from_ref(rooms: &Rooms) -> Self {
        rooms.chat.clone()
    }
}

/// Every room's routes.
pub fn room_routes() -> OpenApiRouter<Rooms> {
    OpenApiRouter::new()
        .merge(accounts::routes())
        .merge(security::routes())
        .merge(social::routes())
        .merge(profiles::routes())
        .merge(real_name::routes())
        .merge(presence::routes())
        .merge(nearby::routes())
        .merge(chat::routes())
        .merge(media::routes())
        .merge(calls::routes())
        .merge(wallet::routes())
}

/// The edge's own routes, on every process.
fn edge_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ws::websocket))
        .routes(routes!(openapi_json))
        .routes(routes!(metrics))
        .routes(routes!(healthz))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "superapp HTTP API",
        description = "Accounts, sessions, account security, real-name verification, presence, contacts, groups, media and the wallet. Chat runs over the WebSocket at /v1/ws (docs/protocol.md). Errors are {code, message} with stable codes."
    ),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every route that pays from the per-user budget ([`limit::COSTS`]) may
/// answer 429 `rate_limited`; the document says so once, here.
fn document_rate_limits(doc: &mut OpenApi) {
    use utoipa::openapi::{RefOr, ResponseBuilder};
    for (template, item) in doc.paths.paths.iter_mut() {
        for (method, operation) in [
            (axum::http::Method::GET, &mut item.get),
            (axum::http::Method::POST, &mut item.post),
            (axum::http::Method::PUT, &mut item.put),
            (axum::http::Method::PATCH, &mut item.patch),
            (axum::http::Method::DELETE, &mut item.delete),
            (axum::http::Method::HEAD, &mut item.head),
            (axum::http::Method::OPTIONS, &mut item.options),
        ] {
            let (Some(operation), Some(cost)) = (operation, limit::cost(&method, template)) else {
                continue;
            };
            let responses = &mut operation.responses.responses;
            let description = match responses.get("429") {
                Some(RefOr::T(earlier)) => format!("{}, rate_limited", earlier.description),
                _ => "rate_limited".to_string(),
            };
            let response = ResponseBuilder::new()
                .description(format!(
                    "{description} (this route costs {cost} of the per-user request budget)"
                ))
                .content(
                    "application/json",
                    utoipa::openapi::ContentBuilder::new()
                        .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                            "ErrorBody",
                        ))))
                        .build(),
                )
                .build();
            responses.insert("429".to_string(), RefOr::T(response));
        }
    }
}

/// The OpenAPI document of the whole API, whichever role serves it, derived
/// from the routers themselves.
pub fn document() -> OpenApi {
    use utoipa::OpenApi as _;
    let (_, rooms) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(room_routes())
        .split_for_parts();
    let (_, edge) = edge_routes().split_for_parts();
    let mut doc = rooms;
    doc.merge(edge);
    document_refusals(&mut doc);
    document_rate_limits(&mut doc);
    doc
}

/// Adds to every operation the refusals its extractors make before the
/// handler runs, which the operations' annotations need not repeat: a body
/// that is not JSON, too large or of another content type ([`ApiJson`]), and
/// path and query parameters that do not read ([`ApiPath`], [`ApiQuery`]).
/// So every answer the server gives is one the document describes.
fn document_refusals(doc: &mut OpenApi) {
    use utoipa::openapi::path::{Operation, ParameterIn};
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

    fn refuse(operation: &mut Operation, status: &str, code: &str) {
        let responses = &mut operation.responses.responses;
        match responses.get_mut(status) {
            Some(RefOr::T(response)) => {
                if !response.description.split(", ").any(|c| c == code) {
                    response.description = format!("{}, {code}", response.description);
                }
            }
            Some(RefOr::Ref(_)) => {}
            None => {
                let body = ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build();
                let response = ResponseBuilder::new()
                    .description(code)
                    .content("application/json", body)
                    .build();
                responses.insert(status.to_string(), RefOr::T(response));
            }
        }
    }

    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
        ];
        for operation in operations.into_iter().flatten() {
            if operation.request_body.is_some() {
                refuse(operation, "400", "invalid_json");
                refuse(operation, "413", "body_too_large");
                refuse(operation, "415", "unsupported_media_type");
            }
            let parameters = operation.parameters.iter().flatten();
            let (path, query) = parameters.fold((false, false), |(p, q), parameter| {
                (
                    p || parameter.parameter_in == ParameterIn::Path,
                    q || parameter.parameter_in == ParameterIn::Query,
                )
            });
            if path {
                refuse(operation, "400", "invalid_path");
            }
            if query {
                refuse(operation, "400", "invalid_query");
            }
        }
    }
}

/// The router of a process: the edge everywhere, and the rooms' routes where
/// this process runs the rooms.
pub fn router(state: AppState, rooms: Option<Rooms>) -> Router {
    let session_metrics = Arc::new(SessionMetrics::new(&state.metrics));
    let (edge, _) = edge_routes().split_for_parts();
    let mut app = edge;
    if let Some(rooms) = rooms {
        let (api, _) = room_routes().split_for_parts();
        let budget = limit::HttpLimit {
            accounts: rooms.accounts.clone(),
            limits: state.limits.clone(),
        };
        let api = api.route_layer(middleware::from_fn_with_state(budget, limit::charge));
        app = app.merge(api.with_state(rooms));
    }
    app.fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(axum::Extension(session_metrics))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(middleware::from_fn_with_state(state.clone(), body_deadline))
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .with_state(state)
}

/// Counts requests and their latency by route template, never by raw path.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let started = std::time::Instant::now();
    let in_flight = InFlight::enter(&state);
    let response = next.run(request).await;
    drop(in_flight);
    let status = response.status().as_u16().to_string();
    state
        .metrics
        .counter_with(
            "http_requests_total",
            "HTTP requests by route template and status.",
            &[("route", &route), ("status", &status)],
        )
        .inc();
    state
        .metrics
        .histogram_with(
            "http_request_seconds",
            "HTTP request latency by route template.",
            LATENCY_SECONDS,
            &[("route", &route)],
        )
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Gives each request body `server.body_timeout_ms` from the moment its head
/// is read to arrive in full; a body trickled slower fails to read, and the
/// request is answered `body_timeout` (408).
async fn body_deadline(State(state): State<AppState>, request: Request, next: Next) -> Response {
    use http_body::Body as _;
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let deadline = tokio::time::Instant::now() + state.body_timeout;
    next.run(request.map(|body| {
        axum::body::Body::new(Deadline {
            body,
            timer: Box::pin(tokio::time::sleep_until(deadline)),
        })
    }))
    .await
}

/// The error of a body read past its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within server.body_timeout_ms")]
pub struct BodyTimeout;

/// A body that fails with [`BodyTimeout`] once its timer fires.
struct Deadline {
    body: axum::body::Body,
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for Deadline {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        if let Poll::Ready(frame) = std::pin::Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTimeout)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Whether a rejection came from a body that missed its deadline.
fn timed_out(rejection: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(rejection);
    while let Some(e) = cause {
        if e.is::<BodyTimeout>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// One request counted in `http_requests_in_flight` until it is answered or
/// dropped.
struct InFlight(Arc<superapp_kit::metrics::Gauge>);

impl InFlight {
    fn enter(state: &AppState) -> Self {
        let gauge = state
            .metrics
            .gauge("http_requests_in_flight", "HTTP requests being answered.");
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// `Json` whose rejections are API errors with stable codes.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => {
                let (status, code) = match &rejection {
                    JsonRejection::MissingJsonContentType(_) => {
                        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
                    }
                    JsonRejection::BytesRejection(_) if timed_out(&rejection) => {
                        (StatusCode::REQUEST_TIMEOUT, "body_timeout")
                    }
                    JsonRejection::BytesRejection(_)
                        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE =>
                    {
                        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
                    }
                    _ => (StatusCode::BAD_REQUEST, "invalid_json"),
                };
                Err(ApiError::new(status, code, rejection.body_text()))
            }
        }
    }
}

/// `Path` whose rejection is an API error: `invalid_path` (400), e.g. a
/// segment whose percent-encoding is not UTF-8.
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    Path<T>: FromRequestParts<S, Rejection = PathRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_path",
                rejection.body_text(),
            )),
        }
    }
}

/// `Query` whose rejection is an API error: `invalid_query` (400), e.g. a
/// number that does not read as one.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    Query<T>: FromRequestParts<S, Rejection = QueryRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                rejection.body_text(),
            )),
        }
    }
}

/// This document
#[utoipa::path(get, path = "/v1/openapi.json", tag = "edge", responses(
    (status = 200, description = "OpenAPI 3.1"),
))]
async fn openapi_json() -> Json<OpenApi> {
    Json(document())
}

/// Prometheus metrics
#[utoipa::path(get, path = "/metrics", tag = "edge", responses(
    (status = 200, description = "text/plain; version=0.0.4"),
))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, superapp_kit::metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
}

/// Liveness
#[utoipa::path(get, path = "/healthz", tag = "edge", responses(
    (status = 200, description = "ok"),
))]
async fn healthz() -> &'static str {
    "ok"
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// utoipa_axum's `routes!` puts a route in the router and in the document
    /// in one call; axum's plain route method would serve a route the
    /// document misses. No module of the edge may use it.
    #[test]
    fn every_route_is_registered_through_the_document() {
        let plain = [".", "route("].concat();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/http");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let source = std::fs::read_to_string(&path).unwrap();
            assert!(
                !source.contains(&plain),
                "{} registers a route outside the OpenAPI document",
                path.display()
            );
        }
    }

    /// Every room operation that takes a bearer token pays a cost, and every
    /// cost names such an operation, so no authenticated route escapes the
    /// budget. The WebSocket upgrade is the edge's: its sessions have limits
    /// of their own.
    #[test]
    fn every_authenticated_route_has_a_cost_and_documents_its_429() {
        let doc = serde_json::to_value(document()).unwrap();
        let mut authenticated = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            if path == "/v1/ws" {
                continue;
            }
            for (method, operation) in item.as_object().unwrap() {
                let method = method.to_uppercase();
                let bearer = operation["security"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|s| s.get("bearer").is_some()));
                let has_cost = limit::cost(&method.parse().unwrap(), path).is_some();
                assert_eq!(bearer, has_cost, "{method} {path}");
                if bearer {
                    assert!(
                        operation["responses"]["429"]["description"]
                            .as_str()
                            .unwrap()
                            .contains("rate_limited"),
                        "{method} {path}"
                    );
                    authenticated.push(format!("{method} {path}"));
                }
            }
        }
        assert_eq!(authenticated.len(), limit::COSTS.len());
    }

    #[test]
    fn the_document_lists_every_room_and_edge_operation_with_its_security() {
        let doc = serde_json::to_value(document()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let operations: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
        // 6 account, 6 account-security, 13 social, 7 profile, 2 real-name,
        // 1 presence, 3 nearby, 16 group, 9 media, 1 calls, 16 wallet, 4 edge
        // operations.
        assert_eq!(operations, 84, "{:?}", paths.keys().collect::<Vec<_>>());
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert_eq!(
            doc["components"]["schemas"]["Account"]["properties"]["user_id"]["type"], "string",
            "ids travel as strings"
        );
    }
}
