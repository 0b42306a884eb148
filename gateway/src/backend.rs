//! What a session needs from the services, as one port with two sides:
//! [`Local`] calls the rooms in this process (the `all` and `core` roles);
//! [`Remote`] sends the same requests to the core over Redis (the `gateway`
//! role), conversation-ordered ones to the shard of their conversation.
//! [`core_handler`] is the core's end of [`Remote`].

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use bytes::Bytes;
use prost::Message as _;
use superapp_account::token::{Claims, TokenVerifier};
use superapp_account::{AccountError, Accounts, Social};
use superapp_chat::model::{ConversationId, Fence, GroupId, Origin, UserId};
use superapp_chat::{Calls, Chat};
use superapp_kit::BoxFuture;
use superapp_kit::clock::{Clock as _, SystemClock};
use superapp_kit::rpc::{Handler, Route, RpcClient, shard_of};
use superapp_proto::v1::{
    AuthClaims, AuthError, Authenticate, ClientFrame, CoreRequest, CoreResponse, Groups, Pong,
    RedeemTicket, SessionLive, SessionStarted, UserGroups, UserRequest, client_frame, core_request,
    core_response, response,
};

use crate::error::ApiError;

pub trait Backend: Send + Sync + 'static {
    /// Checks an access token at the handshake.
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Claims, ApiError>>;
    /// Spends a browser's single-use ticket.
    fn redeem_ticket<'a>(&'a self, ticket: &'a str) -> BoxFuture<'a, Result<Claims, ApiError>>;
    /// Whether a session that just registered may go on, and its user's
    /// groups and blocks.
    fn session_start<'a>(&'a self, claims: &'a Claims) -> BoxFuture<'a, SessionStart>;
    /// The user's groups and blocks, and which of `sessions` (theirs, open
    /// here) are no longer live: asked after the bus lost messages. None
    /// when the core could not answer.
    fn recheck(&self, user: UserId, sessions: Vec<u64>) -> BoxFuture<'_, Option<Recheck>>;
    /// Answers one request that came from a user's connection (`origin`, see
    /// [`crate::hub::Registration::connection`]) opened with `session`;
    /// every outcome is a response, `session_revoked` when the session is no
    /// longer live.
    fn handle(
        &self,
        user: UserId,
        session: u64,
        origin: u64,
        request: Option<client_frame::Request>,
    ) -> BoxFuture<'_, response::Result>;
}

/// What the core says of a user whose sessions here may have missed
/// messages (membership notices, revocations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recheck {
    pub standing: Standing,
    /// Of the sessions asked about, those logged out, revoked or expired.
    pub revoked: Vec<u64>,
}

/// What decides which group messages a user's sessions are delivered: the
/// groups they are in, and whom they block (whose messages are not).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Standing {
    pub groups: Vec<GroupId>,
    pub blocked: Vec<UserId>,
}

/// What the core says about a session that just registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStart {
    /// Live; the user stands so.
    Live(Standing),
    /// Logged out meanwhile.
    Revoked,
    /// The core did not answer.
    Unknown,
}

pub struct Local {
    pub accounts: Arc<Accounts>,
    pub social: Arc<Social>,
    pub chat: Arc<Chat>,
    pub calls: Arc<Calls>,
}

impl Backend for Local {
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Claims, ApiError>> {
        Box::pin(async move { Ok(self.accounts.authenticate(token).await?) })
    }

    fn redeem_ticket<'a>(&'a self, ticket: &'a str) -> BoxFuture<'a, Result<Claims, ApiError>> {
        Box::pin(async move { Ok(self.accounts.redeem_ticket(ticket).await?) })
    }

    fn session_start<'a>(&'a self, claims: &'a Claims) -> BoxFuture<'a, SessionStart> {
        Box::pin(async move {
            // Two stores, asked at once. A live session is remembered, so
            // its requests' checks read no store; so are a user's blocks.
            let (live, standing) = tokio::join!(
                self.accounts.session_in_use(claims.sub, claims.sid),
                self.standing_of(claims.sub)
            );
            match (live, standing) {
                (Ok(true), Some(standing)) => SessionStart::Live(standing),
                (Ok(false), _) => SessionStart::Revoked,
                _ => SessionStart::Unknown,
            }
        })
    }

    fn recheck(&self, user: UserId, sessions: Vec<u64>) -> BoxFuture<'_, Option<Recheck>> {
        Box::pin(async move {
            let standing = self.standing_of(user).await?;
            let mut revoked = Vec::new();
            for sid in sessions {
                let claims = Claims {
                    sub: user,
                    sid,
                    iat: 0,
                    exp: i64::MAX,
                };
                match self.accounts.session_live(&claims).await {
                    Ok(true) => {}
                    Ok(false) => revoked.push(sid),
                    Err(e) => {
                        tracing::warn!(error = %e, "reading a session's liveness failed");
                        return None;
                    }
                }
            }
            Some(Recheck { standing, revoked })
        })
    }

    fn handle(
        &self,
        user: UserId,
        session: u64,
        origin: u64,
        request: Option<client_frame::Request>,
    ) -> BoxFuture<'_, response::Result> {
        let origin = Origin {
            connection: origin,
            fence: None,
        };
        Box::pin(self.answer(user, session, origin, request))
    }
}

impl Local {
    /// The user's groups and blocks; None when they could not be read.
    async fn standing_of(&self, user: UserId) -> Option<Standing> {
        let (groups, filters) =
            tokio::join!(self.chat.groups_of(user), self.social.view_filters(user));
        let groups = groups
            .inspect_err(|e| tracing::warn!(error = %e, "reading a user's groups failed"))
            .ok()?;
        let filters = filters
            .inspect_err(|e| tracing::warn!(error = %e, "reading a user's blocks failed"))
            .ok()?;
        Some(Standing {
            groups,
            blocked: filters.blocked_now().collect(),
        })
    }

    /// Answers one request of a user's session; on a core serving a shard
    /// under a lease, `origin` carries the lease's fence to the store. A
    /// request of a session no longer live is refused (`session_revoked`):
    /// its revocation, announced on the bus, may never have reached the
    /// socket. A ping is not checked (a gateway answers it without asking
    /// the core), nor is `session` 0 (a gateway older than the field).
    async fn answer(
        &self,
        user: UserId,
        session: u64,
        origin: Origin,
        request: Option<client_frame::Request>,
    ) -> response::Result {
        use client_frame::Request;
        if session != 0 && !matches!(request, Some(Request::Ping(_))) {
            match self.accounts.session_in_use(user, session).await {
                Ok(true) => {}
                Ok(false) => {
                    return response::Result::Error(
                        ApiError::from(AccountError::SessionRevoked).to_proto(),
                    );
                }
                Err(e) => return response::Result::Error(ApiError::from(e).to_proto()),
            }
        }
        let chat = &self.chat;
        let outcome = match request {
            Some(Request::Send(send)) => chat
                .send(user, origin, send)
                .await
                .map(response::Result::SendAck),
            Some(Request::ListConversations(list)) => chat
                .conversations(user, list.limit, &list.cursor)
                .await
                .map(response::Result::Conversations),
            Some(Request::Pull(pull)) => chat
                .pull(user, &pull.conversation_id, pull.after_seq, pull.limit)
                .await
                .map(response::Result::Messages),
            Some(Request::MarkRead(mark)) => chat
                .mark_read(user, origin, &mark.conversation_id, mark.seq)
                .await
                .map(response::Result::ReadAck),
            Some(Request::Ping(_)) => Ok(pong()),
            Some(Request::CallInvite(invite)) => {
                return call_answer(self.calls.invite(user, origin.connection, invite).await);
            }
            Some(Request::CallAction(action)) => {
                return call_answer(self.calls.act(user, origin.connection, action).await);
            }
            Some(Request::CallSignal(signal)) => {
                return call_answer(self.calls.signal(user, origin.connection, signal));
            }
            // A request this server does not know (a newer client, or garbage
            // that happened to decode): answered, not fatal.
            None => return unknown_request(),
        };
        outcome.unwrap_or_else(|e| response::Result::Error(ApiError::from(e).to_proto()))
    }
}

fn call_answer(
    outcome: Result<superapp_proto::v1::CallAck, superapp_chat::CallError>,
) -> response::Result {
    match outcome {
        Ok(ack) => response::Result::Call(ack),
        Err(e) => response::Result::Error(ApiError::from(e).to_proto()),
    }
}

fn pong() -> response::Result {
    response::Result::Pong(Pong {
        server_time_ms: SystemClock.now_ms(),
    })
}

fn unknown_request() -> response::Result {
    response::Result::Error(
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_request",
            "the request is missing or of a kind this server does not know",
        )
        .to_proto(),
    )
}

fn unavailable() -> ApiError {
    ApiError::unavailable("the core did not answer; retry")
}

/// The gateway's side: every request goes to the core over Redis. With the
/// core's public key (`auth.token_public_key`), a gateway checks access
/// tokens' signatures and times itself at the handshake, and only the
/// start-of-session check (liveness and groups) asks the core: one request
/// per handshake, not two. It holds no key that signs.
pub struct Remote {
    rpc: RpcClient,
    timeout: Duration,
    verifier: Option<TokenVerifier>,
}

impl Remote {
    pub fn new(rpc: RpcClient, timeout: Duration, verifier: Option<TokenVerifier>) -> Self {
        Self {
            rpc,
            timeout,
            verifier,
        }
    }

    async fn call(&self, route: Route, kind: core_request::Kind) -> Option<core_response::Kind> {
        let payload = Bytes::from(CoreRequest { kind: Some(kind) }.encode_to_vec());
        match self.rpc.call(route, payload, self.timeout).await {
            Ok(bytes) => CoreResponse::decode(bytes).ok().and_then(|r| r.kind),
            Err(e) => {
                tracing::warn!(error = %e, "core request failed");
                None
            }
        }
    }

    async fn claims(&self, kind: core_request::Kind) -> Result<Claims, ApiError> {
        match self.call(Route::Any, kind).await {
            Some(core_response::Kind::Claims(c)) => Ok(Claims {
                sub: UserId(c.user_id),
                sid: c.session_id,
                iat: c.issued_at_ms,
                exp: c.expires_at_ms,
            }),
            Some(core_response::Kind::Error(e)) => Err(api_error(e)),
            _ => Err(unavailable()),
        }
    }
}

/// Conversation-ordered requests go to their conversation's shard, so its
/// single writer sees them in order; the rest to any core.
fn route_of(user: UserId, request: &Option<client_frame::Request>) -> Route {
    use client_frame::Request;
    let conversation = match request {
        Some(Request::Send(s)) if !s.conversation_id.is_empty() => s.conversation_id.clone(),
        Some(Request::Send(s)) => match ConversationId::direct(user, UserId(s.to_user)) {
            Some(direct) if s.to_user != 0 => direct.to_string(),
            // Refused by the core wherever it lands.
            _ => return Route::Any,
        },
        Some(Request::MarkRead(m)) => m.conversation_id.clone(),
        // One core holds every call in flight, so that it knows who is busy.
        Some(Request::CallInvite(_) | Request::CallAction(_) | Request::CallSignal(_)) => {
            superapp_chat::calls::ROUTE_KEY.to_string()
        }
        _ => return Route::Any,
    };
    Route::Shard(shard_of(&conversation))
}

impl Backend for Remote {
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Claims, ApiError>> {
        if let Some(verifier) = &self.verifier {
            // A logged-out session passes here; the start-of-session check
            // that follows closes it with 4001.
            let verified = verifier
                .verify(token, SystemClock.now_ms())
                .map_err(|e| ApiError::from(AccountError::from(e)));
            return Box::pin(async move { verified });
        }
        Box::pin(self.claims(core_request::Kind::Authenticate(Authenticate {
            access_token: token.to_string(),
        })))
    }

    fn redeem_ticket<'a>(&'a self, ticket: &'a str) -> BoxFuture<'a, Result<Claims, ApiError>> {
        Box::pin(self.claims(core_request::Kind::RedeemTicket(RedeemTicket {
            ticket: ticket.to_string(),
        })))
    }

    fn session_start<'a>(&'a self, claims: &'a Claims) -> BoxFuture<'a, SessionStart> {
        Box::pin(async move {
            let kind = core_request::Kind::SessionLive(SessionLive {
                user_id: claims.sub.0,
                session_id: claims.sid,
            });
            match self.call(Route::Any, kind).await {
                Some(core_response::Kind::Started(s)) if s.live => SessionStart::Live(Standing {
                    groups: s.groups.into_iter().map(GroupId).collect(),
                    blocked: s.blocked.into_iter().map(UserId).collect(),
                }),
                Some(core_response::Kind::Started(_)) => SessionStart::Revoked,
                _ => SessionStart::Unknown,
            }
        })
    }

    fn recheck(&self, user: UserId, sessions: Vec<u64>) -> BoxFuture<'_, Option<Recheck>> {
        Box::pin(async move {
            let kind = core_request::Kind::UserGroups(UserGroups {
                user_id: user.0,
                session_ids: sessions,
            });
            match self.call(Route::Any, kind).await {
                Some(core_response::Kind::Groups(g)) => Some(Recheck {
                    standing: Standing {
                        groups: g.groups.into_iter().map(GroupId).collect(),
                        blocked: g.blocked.into_iter().map(UserId).collect(),
                    },
                    revoked: g.revoked_sessions,
                }),
                _ => None,
            }
        })
    }

    fn handle(
        &self,
        user: UserId,
        session: u64,
        origin: u64,
        request: Option<client_frame::Request>,
    ) -> BoxFuture<'_, response::Result> {
        Box::pin(async move {
            if matches!(request, Some(client_frame::Request::Ping(_))) {
                return pong();
            }
            let route = route_of(user, &request);
            let kind = core_request::Kind::User(UserRequest {
                user_id: user.0,
                frame: Some(ClientFrame { id: 0, request }),
                origin,
                session_id: session,
            });
            match self.call(route, kind).await {
                Some(core_response::Kind::Response(r)) => r.result.unwrap_or_else(unknown_request),
                _ => response::Result::Error(unavailable().to_proto()),
            }
        })
    }
}

fn api_error(e: AuthError) -> ApiError {
    let inner = e.error.unwrap_or_default();
    ApiError::new(
        StatusCode::from_u16(e.status as u16).unwrap_or(StatusCode::UNAUTHORIZED),
        inner.code,
        inner.message,
    )
}

fn auth_error(e: ApiError) -> core_response::Kind {
    core_response::Kind::Error(AuthError {
        status: u32::from(e.status.as_u16()),
        error: Some(e.to_proto()),
    })
}

/// The core's end of [`Remote`]: decodes a gateway's request, runs it on the
/// rooms of this process, encodes the answer.
pub fn core_handler(local: Arc<Local>) -> Handler {
    Arc::new(move |payload: Bytes, fence: Option<Fence>| {
        let local = local.clone();
        Box::pin(async move {
            let kind = match CoreRequest::decode(payload).ok().and_then(|r| r.kind) {
                Some(core_request::Kind::User(u)) => {
                    let request = u.frame.and_then(|f| f.request);
                    let origin = Origin {
                        connection: u.origin,
                        fence,
                    };
                    let user = UserId(u.user_id);
                    core_response::Kind::Response(superapp_proto::v1::Response {
                        id: 0,
                        result: Some(local.answer(user, u.session_id, origin, request).await),
                    })
                }
                Some(core_request::Kind::Authenticate(a)) => {
                    match local.authenticate(&a.access_token).await {
                        Ok(c) => claims_of(c),
                        Err(e) => auth_error(e),
                    }
                }
                Some(core_request::Kind::RedeemTicket(t)) => {
                    match local.redeem_ticket(&t.ticket).await {
                        Ok(c) => claims_of(c),
                        Err(e) => auth_error(e),
                    }
                }
                Some(core_request::Kind::SessionLive(s)) => {
                    let claims = Claims {
                        sub: UserId(s.user_id),
                        sid: s.session_id,
                        iat: 0,
                        exp: i64::MAX,
                    };
                    let started = match local.session_start(&claims).await {
                        SessionStart::Live(standing) => SessionStarted {
                            live: true,
                            groups: standing.groups.into_iter().map(|g| g.0).collect(),
                            blocked: standing.blocked.into_iter().map(|u| u.0).collect(),
                        },
                        SessionStart::Revoked => SessionStarted::default(),
                        // An empty answer reads as none at the gateway.
                        SessionStart::Unknown => return Bytes::new(),
                    };
                    core_response::Kind::Started(started)
                }
                Some(core_request::Kind::UserGroups(u)) => {
                    match local.recheck(UserId(u.user_id), u.session_ids).await {
                        Some(recheck) => core_response::Kind::Groups(Groups {
                            groups: recheck.standing.groups.into_iter().map(|g| g.0).collect(),
                            revoked_sessions: recheck.revoked,
                            blocked: recheck.standing.blocked.into_iter().map(|u| u.0).collect(),
                        }),
                        None => return Bytes::new(),
                    }
                }
                None => auth_error(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "unknown_request",
                    "unknown core request",
                )),
            };
            Bytes::from(CoreResponse { kind: Some(kind) }.encode_to_vec())
        }) as BoxFuture<'static, Bytes>
    })
}

fn claims_of(c: Claims) -> core_response::Kind {
    core_response::Kind::Claims(AuthClaims {
        user_id: c.sub.0,
        session_id: c.sid,
        expires_at_ms: c.exp,
        issued_at_ms: c.iat,
    })
}
