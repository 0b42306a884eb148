//! The HTTP JSON API, the WebSocket upgrade, and `/metrics`.
//!
//! Ids are u64 but travel as strings, since they exceed 2^53. Errors are
//! `{code, message}` with stable codes (see docs/protocol.md).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequest, MatchedPath, Path, Query, Request, State,
};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize, Serializer};
use superapp_account::model::UserId;
use superapp_account::{Accounts, NewAccount, Profile, TokenPair};
use superapp_kit::metrics::LATENCY_SECONDS;
use superapp_kit::token::Claims;

use crate::AppState;
use crate::error::ApiError;
use crate::session::{self, SessionMetrics};

pub fn router(state: AppState) -> Router {
    let session_metrics = Arc::new(SessionMetrics::new(&state.metrics));
    // The JSON API where the account room lives; sessions everywhere.
    let api = Router::new()
        .route("/v1/accounts", post(register))
        .route("/v1/sessions", post(login))
        .route("/v1/sessions/refresh", post(refresh))
        .route("/v1/sessions/current", delete(logout))
        .route("/v1/me", get(me))
        .route("/v1/ws-tickets", post(ws_ticket))
        .route("/v1/users/{user_id}/presence", get(presence))
        .merge(crate::groups::routes());
    let base = if state.accounts.is_some() {
        api
    } else {
        Router::new()
    };
    base.route("/v1/ws", get(websocket))
        .route(
            "/v1/openapi.json",
            get(|| async { Json(crate::openapi::document()) }),
        )
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(axum::Extension(session_metrics))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(state.config.server.max_body_bytes))
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
    let response = next.run(request).await;
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

pub(crate) fn as_string<S: Serializer>(id: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

#[derive(Deserialize)]
struct RegisterBody {
    phone: String,
    password: String,
    display_name: String,
}

#[derive(Serialize)]
struct ProfileBody {
    #[serde(serialize_with = "as_string")]
    user_id: u64,
    phone: String,
    display_name: String,
    created_at_ms: i64,
}

impl From<Profile> for ProfileBody {
    fn from(p: Profile) -> Self {
        Self {
            user_id: p.user_id.0,
            phone: p.phone,
            display_name: p.display_name,
            created_at_ms: p.created_at_ms,
        }
    }
}

async fn register(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<(StatusCode, Json<ProfileBody>), ApiError> {
    let profile = accounts(&state)?
        .register(NewAccount {
            phone: body.phone,
            password: body.password,
            display_name: body.display_name,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(profile.into())))
}

#[derive(Deserialize)]
struct LoginBody {
    phone: String,
    password: String,
    #[serde(default)]
    device_name: String,
}

#[derive(Serialize)]
struct TokensBody {
    #[serde(serialize_with = "as_string")]
    user_id: u64,
    #[serde(serialize_with = "as_string")]
    session_id: u64,
    access_token: String,
    access_expires_at_ms: i64,
    refresh_token: String,
    refresh_expires_at_ms: i64,
}

impl From<TokenPair> for TokensBody {
    fn from(t: TokenPair) -> Self {
        Self {
            user_id: t.user_id.0,
            session_id: t.session_id,
            access_token: t.access_token,
            access_expires_at_ms: t.access_expires_at_ms,
            refresh_token: t.refresh_token,
            refresh_expires_at_ms: t.refresh_expires_at_ms,
        }
    }
}

async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Json<TokensBody>, ApiError> {
    let pair = accounts(&state)?
        .login(
            &body.phone,
            &body.password,
            &body.device_name,
            &peer.ip().to_string(),
        )
        .await?;
    Ok(Json(pair.into()))
}

#[derive(Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

async fn refresh(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<Json<TokensBody>, ApiError> {
    Ok(Json(
        accounts(&state)?.refresh(&body.refresh_token).await?.into(),
    ))
}

/// The token of `Authorization: Bearer`.
fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::unauthorized("missing_token", "Authorization: Bearer <token> required")
        })?;
    Ok(token.trim())
}

fn accounts(state: &AppState) -> Result<&Arc<Accounts>, ApiError> {
    state.accounts.as_ref().ok_or_else(ApiError::sessions_only)
}

/// The claims of a live session, from `Authorization: Bearer`.
pub(crate) async fn bearer(state: &AppState, headers: &HeaderMap) -> Result<Claims, ApiError> {
    Ok(accounts(state)?
        .authenticate(bearer_token(headers)?)
        .await?)
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<StatusCode, ApiError> {
    let claims = bearer(&state, &headers).await?;
    accounts(&state)?.logout(&claims).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<ProfileBody>, ApiError> {
    let claims = bearer(&state, &headers).await?;
    Ok(Json(accounts(&state)?.profile(claims.sub).await?.into()))
}

#[derive(Serialize)]
struct TicketBody {
    ticket: String,
    expires_at_ms: i64,
}

async fn ws_ticket(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<TicketBody>, ApiError> {
    let claims = bearer(&state, &headers).await?;
    let (ticket, expires_at_ms) = accounts(&state)?.issue_ticket(claims);
    Ok(Json(TicketBody {
        ticket,
        expires_at_ms,
    }))
}

#[derive(Serialize)]
struct PresenceBody {
    #[serde(serialize_with = "as_string")]
    user_id: u64,
    online: bool,
    /// Devices with a live session.
    devices: u32,
    /// Now while online; the last time a device was seen otherwise; null if
    /// never seen in the last 90 days.
    last_seen_ms: Option<i64>,
}

/// Whether a user is online, on how many devices, and when last seen. Any
/// signed-in user may ask about any existing user.
async fn presence(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(user_id): Path<String>,
) -> Result<Json<PresenceBody>, ApiError> {
    bearer(&state, &headers).await?;
    let unknown = || ApiError::new(StatusCode::NOT_FOUND, "unknown_user", "no such user");
    let user: UserId = user_id.parse().map_err(|_| unknown())?;
    if !accounts(&state)?.user_exists(user).await? {
        return Err(unknown());
    }
    let seen = state.presence.lookup(user.0).await.map_err(|e| {
        tracing::warn!(error = %e, "presence lookup failed");
        ApiError::unavailable("presence is unavailable; retry")
    })?;
    Ok(Json(PresenceBody {
        user_id: user.0,
        online: seen.devices > 0,
        devices: seen.devices,
        last_seen_ms: seen.last_seen_ms,
    }))
}

#[derive(Deserialize)]
struct WsQuery {
    ticket: Option<String>,
}

/// Authenticates before upgrading: a bearer token from native clients, or a
/// single-use ticket from browsers. A long-lived token in the URL is never read.
async fn websocket(
    State(state): State<AppState>,
    axum::Extension(metrics): axum::Extension<Arc<SessionMetrics>>,
    headers: HeaderMap,
    Query(query): Query<WsQuery>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let offered = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|p| p.trim() == superapp_proto::SUBPROTOCOL)
        });
    if !offered {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_subprotocol",
            format!(
                "offer the WebSocket subprotocol {}",
                superapp_proto::SUBPROTOCOL
            ),
        ));
    }
    if state.shutdown.is_cancelled() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down",
        ));
    }
    let claims = match (headers.contains_key(header::AUTHORIZATION), query.ticket) {
        (true, _) => state.backend.authenticate(bearer_token(&headers)?).await?,
        (false, Some(ticket)) => state.backend.redeem_ticket(&ticket).await?,
        (false, None) => {
            return Err(ApiError::unauthorized(
                "missing_token",
                "Authorization: Bearer <token> or ?ticket= required",
            ));
        }
    };
    let cfg = &state.config.gateway;
    let tracker = state.sessions.clone();
    let upgrade = upgrade
        .protocols([superapp_proto::SUBPROTOCOL])
        .read_buffer_size(cfg.read_buffer_bytes)
        .write_buffer_size(cfg.write_buffer_bytes)
        // Room for the largest frame the server writes: a pulled page, whose bodies
        // chat caps at MAX_PAGE_BODY_BYTES, plus framing.
        .max_write_buffer_size(
            cfg.write_buffer_bytes
                + superapp_chat::policy::MAX_PAGE_BODY_BYTES * 2
                + cfg.max_frame_bytes,
        )
        .max_message_size(cfg.max_frame_bytes)
        .max_frame_size(cfg.max_frame_bytes);
    Ok(upgrade.on_upgrade(move |socket| {
        tracker.track_future(session::run(socket, state, claims, metrics))
    }))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, superapp_kit::metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
}
