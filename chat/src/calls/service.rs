//! [`Calls`], the operations the edge calls: each checks the request and
//! the social graph, takes one step of the state machine
//! ([`super::policy::Registry`]) under a lock held for no `.await`, then
//! publishes the events, relays signals to the one device they are for, and
//! writes the record of a one-to-one call that ended.
//!
//! Calls live in this process's memory: they are ephemeral, and every
//! call request is routed to the one owner of the calls
//! ([`ROUTE_KEY`]). The no-answer timeout and the length bound are one
//! tokio task per call, aborted when the call ends another way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use superapp_kit::bus::SharedBus;
use superapp_kit::clock::SharedClock;
use superapp_kit::ids::IdGen;
use superapp_proto::Topic;
use superapp_proto::v1::{
    BusEnvelope, CallAck, CallAction, CallEvent, CallInvite, CallRecord, CallSignal, Event,
    Special, bus_envelope, call_action, call_event::State, call_signal, event,
};
use tokio::task::AbortHandle;

use super::config::CallsConfig;
use super::error::CallError;
use super::model::{CallId, CallView, Device, Effects, Ended, Placement, Reach};
use super::policy::{self, Registry};
use super::turn::{self, TurnCredentials};
use crate::model::{ConversationId, GroupId, UserId};
use crate::ports::Directory;
use crate::{Chat, ChatError};

/// Every call request is routed by this key (`kit::rpc::shard_of`), so one
/// core holds all calls in flight and can tell who is busy.
pub const ROUTE_KEY: &str = "calls";

/// A session description is at most this long (a video call's offer with
/// many codecs is a few KiB).
const MAX_SDP_BYTES: usize = 32 * 1024;
/// An ICE candidate line is at most this long.
const MAX_CANDIDATE_BYTES: usize = 1024;

/// Credentials for the TURN server, as `GET /v1/calls/turn` answers them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnGrant {
    pub credentials: TurnCredentials,
    pub ttl_secs: u64,
    pub uris: Vec<String>,
}

pub struct Calls {
    inner: Arc<Inner>,
}

struct Inner {
    chat: Arc<Chat>,
    directory: Arc<dyn Directory>,
    bus: SharedBus,
    clock: SharedClock,
    ids: Arc<IdGen>,
    config: CallsConfig,
    registry: Mutex<Registry>,
    /// The timer task of each call in flight.
    timers: Mutex<HashMap<CallId, AbortHandle>>,
}

impl Calls {
    pub fn new(
        chat: Arc<Chat>,
        directory: Arc<dyn Directory>,
        bus: SharedBus,
        clock: SharedClock,
        ids: Arc<IdGen>,
        config: CallsConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                chat,
                directory,
                bus,
                clock,
                ids,
                config,
                registry: Mutex::default(),
                timers: Mutex::default(),
            }),
        }
    }

    /// Calls in flight here.
    pub fn in_flight(&self) -> usize {
        self.inner.registry().len()
    }

    /// TURN credentials for `user`; None when no TURN secret is configured.
    pub fn turn(&self, user: UserId) -> Option<TurnGrant> {
        let config = &self.inner.config;
        let secret = config.turn_secret.as_ref()?;
        let now = self.inner.clock.now_ms();
        Some(TurnGrant {
            credentials: turn::credentials(
                secret.expose().as_bytes(),
                user,
                now,
                config.turn_ttl_secs,
            ),
            ttl_secs: config.turn_ttl_secs,
            uris: config.turn_uris.clone(),
        })
    }

    /// Places a call from the device `origin`: one-to-one (`to_user`, or a
    /// one-to-one `conversation_id`) or in a group (`conversation_id`
    /// "g.<id>" with `invitees`, members of it).
    #[tracing::instrument(skip_all, fields(caller = caller.0))]
    pub async fn invite(
        &self,
        caller: UserId,
        origin: Device,
        request: CallInvite,
    ) -> Result<CallAck, CallError> {
        let inner = &self.inner;
        let (group, invitees) = match (request.to_user, request.conversation_id.as_str()) {
            (0, "") => return Err(CallError::invalid("name a user or a conversation to call")),
            (to, "") => (None, vec![inner.reach_one(caller, UserId(to)).await?]),
            (0, name) => match name.parse::<ConversationId>() {
                Ok(ConversationId::Group(group)) => {
                    let invitees = request.invitees.iter().copied().map(UserId).collect();
                    (
                        Some(group),
                        inner.reach_members(caller, group, invitees).await?,
                    )
                }
                Ok(direct @ ConversationId::Direct { .. }) => {
                    let peer = direct
                        .peer_of(caller)
                        .ok_or(ChatError::UnknownConversation)?;
                    (None, vec![inner.reach_one(caller, peer).await?])
                }
                Err(_) => return Err(ChatError::UnknownConversation.into()),
            },
            _ => {
                return Err(CallError::invalid(
                    "name a user or a conversation, not both",
                ));
            }
        };
        let placement = Placement {
            id: CallId(inner.ids.next()),
            caller,
            device: origin,
            invitees,
            group,
            video: request.video,
        };
        let now = inner.clock.now_ms();
        let max = inner.config.max_participants as usize;
        let effects = inner.registry().place(placement, now, max)?;
        let id = effects.view.id;
        if effects.ended.is_none() {
            Inner::arm(&self.inner, id);
        }
        Ok(inner.apply(effects, origin, false).await)
    }

    /// A participant's step: ringing, accept, decline, hang up.
    #[tracing::instrument(skip_all, fields(user = user.0, call = request.call_id))]
    pub async fn act(
        &self,
        user: UserId,
        origin: Device,
        request: CallAction,
    ) -> Result<CallAck, CallError> {
        let inner = &self.inner;
        let id = CallId(request.call_id);
        let now = inner.clock.now_ms();
        let effects = {
            let mut registry = inner.registry();
            match request.kind() {
                call_action::Kind::Ringing => registry.ringing(id, user, origin),
                call_action::Kind::Accept => registry.accept(id, user, origin, now),
                call_action::Kind::Decline => registry.decline(id, user, origin, now),
                call_action::Kind::Hangup => registry.hangup(id, user, now),
                call_action::Kind::Unspecified => Err(CallError::Invalid {
                    code: "invalid_call_action",
                    reason: "the action's kind is missing or unknown",
                }),
            }
        }?;
        Ok(inner.apply(effects, origin, false).await)
    }

    /// Relays an SDP or ICE candidate from the device `origin` to the one
    /// device the peer joined the call on.
    pub fn signal(
        &self,
        user: UserId,
        origin: Device,
        request: CallSignal,
    ) -> Result<CallAck, CallError> {
        check_payload(request.payload.as_ref())?;
        let id = CallId(request.call_id);
        let to = UserId(request.to_user);
        let target = self.inner.registry().signal(id, user, origin, to)?;
        let relayed = CallSignal {
            call_id: request.call_id,
            to_user: to.0,
            from_user: user.0,
            payload: request.payload,
        };
        let envelope = BusEnvelope {
            kind: Some(bus_envelope::Kind::Event(Event {
                kind: Some(event::Kind::CallSignal(relayed)),
            })),
            origin: 0,
            target,
        };
        let topic = Topic::User(to).to_string();
        (self.inner.bus).publish(&topic, Bytes::from(envelope.encode_to_vec()));
        Ok(CallAck {
            call_id: request.call_id,
            state: State::Unspecified as i32,
        })
    }
}

impl Inner {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn timers(&self) -> std::sync::MutexGuard<'_, HashMap<CallId, AbortHandle>> {
        self.timers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How the social graph lets `caller` ring `callee` one-to-one: as a
    /// message would go. A refusal is `call_refused`; a withheld message
    /// (the callee blocks the caller) is a call that never rings.
    async fn reach_one(
        &self,
        caller: UserId,
        callee: UserId,
    ) -> Result<(UserId, Reach), CallError> {
        if callee == caller {
            return Err(CallError::invalid("you cannot call yourself"));
        }
        let exists = (self.directory.user_exists(callee).await).map_err(ChatError::Dependency)?;
        if !exists {
            let deleted =
                (self.directory.is_deleted(callee).await).map_err(ChatError::Dependency)?;
            return Err(if deleted {
                ChatError::UserDeleted
            } else {
                ChatError::UnknownRecipient
            }
            .into());
        }
        let verdict =
            (self.directory.send_verdict(caller, callee).await).map_err(ChatError::Dependency)?;
        Ok(match verdict.reach {
            crate::model::Reach::Refused => return Err(CallError::CallRefused),
            crate::model::Reach::Withheld => (callee, Reach::Withheld),
            crate::model::Reach::Delivered => (callee, Reach::Ring),
        })
    }

    /// The caller and every invitee must be members of the group; an
    /// invitee who blocks the caller is not rung (as a group message of
    /// theirs is not delivered to them).
    async fn reach_members(
        &self,
        caller: UserId,
        group: GroupId,
        invitees: Vec<UserId>,
    ) -> Result<Vec<(UserId, Reach)>, CallError> {
        let max = self.config.max_participants as usize;
        if invitees.len() + 1 > max {
            return Err(CallError::TooManyParticipants { max });
        }
        self.chat.group(group, caller).await?;
        let now = self.clock.now_ms();
        let mut reached = Vec::with_capacity(invitees.len());
        for invitee in invitees {
            match self.chat.group(group, invitee).await {
                Ok(_) => {}
                Err(ChatError::NotMember) => return Err(ChatError::UnknownMember.into()),
                Err(e) => return Err(e.into()),
            }
            let view = (self.directory.view(invitee).await).map_err(ChatError::Dependency)?;
            let reach = if crate::policy::blocked_at(&view, caller, now) {
                Reach::Withheld
            } else {
                Reach::Ring
            };
            reached.push((invitee, reach));
        }
        Ok(reached)
    }

    /// Starts the call's timer: at the no-answer timeout those still
    /// ringing miss it; at the length bound the call ends.
    fn arm(this: &Arc<Self>, id: CallId) {
        let weak: Weak<Self> = Arc::downgrade(this);
        let ring = Duration::from_secs(this.config.ring_timeout_secs);
        let longest = Duration::from_secs(this.config.max_call_secs).saturating_sub(ring);
        let task = tokio::spawn(async move {
            tokio::time::sleep(ring).await;
            let Some(inner) = weak.upgrade() else { return };
            let now = inner.clock.now_ms();
            let timed_out = inner.registry().timeout(id, now);
            if let Some(effects) = timed_out {
                inner.apply(effects, 0, true).await;
            }
            if inner.registry().call(id).is_none() {
                return;
            }
            drop(inner);
            tokio::time::sleep(longest).await;
            let Some(inner) = weak.upgrade() else { return };
            let now = inner.clock.now_ms();
            let expired = inner.registry().expire(id, now);
            if let Some(effects) = expired {
                tracing::info!(call = id.0, "call ended at its length bound");
                inner.apply(effects, 0, true).await;
            }
        });
        this.timers().insert(id, task.abort_handle());
    }

    /// Publishes a step's events (not to the device `origin`, whose answer
    /// is its copy) and, when the call ended, stops its timer (unless the
    /// timer is what ended it) and writes its record.
    async fn apply(&self, effects: Effects, origin: Device, from_timer: bool) -> CallAck {
        let at_ms = self.clock.now_ms();
        for notice in &effects.notices {
            let event = call_event(&effects.view, notice.state, notice.user, at_ms);
            let envelope = Bytes::from(
                BusEnvelope {
                    kind: Some(bus_envelope::Kind::Event(Event {
                        kind: Some(event::Kind::Call(event)),
                    })),
                    origin,
                    target: 0,
                }
                .encode_to_vec(),
            );
            for &user in &notice.to {
                (self.bus).publish(&Topic::User(user).to_string(), envelope.clone());
            }
        }
        let id = effects.view.id;
        if let Some(ended) = &effects.ended {
            let timer = self.timers().remove(&id);
            if let Some(timer) = timer.filter(|_| !from_timer) {
                timer.abort();
            }
            self.record(&effects.view, ended).await;
        }
        CallAck {
            call_id: id.0,
            state: effects.state as i32,
        }
    }

    /// Writes a one-to-one call's record into its conversation, sender the
    /// caller; group calls leave none (docs/architecture.md §24). A failure
    /// is logged: the call is over either way.
    async fn record(&self, view: &CallView, ended: &Ended) {
        if view.group.is_some() {
            return;
        }
        let Some(&callee) = view.invited.get(1) else {
            return;
        };
        let Some(conversation) = ConversationId::direct(view.caller, callee) else {
            return;
        };
        let record = CallRecord {
            call_id: view.id.0,
            caller: view.caller.0,
            video: view.video,
            outcome: ended.outcome as i32,
            duration_ms: ended.duration_ms,
        };
        let special = Special {
            r#type: "call".into(),
            value: record.encode_to_vec(),
        };
        let fallback = policy::fallback_text(view.video, ended.outcome, ended.duration_ms);
        let key = format!("call:{}", view.id.0);
        let written = self
            .chat
            .append_special(view.caller, conversation, special, fallback, &key)
            .await;
        if let Err(e) = written {
            tracing::warn!(call = view.id.0, error = %e, "the call's record was not written");
        }
    }
}

fn call_event(view: &CallView, state: State, user: UserId, at_ms: i64) -> CallEvent {
    CallEvent {
        call_id: view.id.0,
        state: state as i32,
        caller: view.caller.0,
        user: user.0,
        video: view.video,
        group_id: view.group.map_or(0, |g| g.0),
        invited: view.invited.iter().map(|u| u.0).collect(),
        joined: view.joined.iter().map(|u| u.0).collect(),
        at_ms,
    }
}

/// A signal carries an SDP offer or answer, or an ICE candidate, each of
/// a bounded size.
fn check_payload(payload: Option<&call_signal::Payload>) -> Result<(), CallError> {
    let invalid = |reason| CallError::Invalid {
        code: "invalid_signal",
        reason,
    };
    match payload {
        None => Err(invalid("a signal carries an SDP or an ICE candidate")),
        Some(call_signal::Payload::Sdp(sdp)) => {
            if !matches!(
                sdp.r#type.as_str(),
                "offer" | "answer" | "pranswer" | "rollback"
            ) {
                return Err(invalid(
                    "an SDP's type is offer, answer, pranswer or rollback",
                ));
            }
            if sdp.sdp.len() > MAX_SDP_BYTES {
                return Err(invalid("an SDP is at most 32 KiB"));
            }
            Ok(())
        }
        Some(call_signal::Payload::Ice(ice)) => {
            if ice.candidate.len() + ice.sdp_mid.len() > MAX_CANDIDATE_BYTES {
                return Err(invalid("an ICE candidate is at most 1 KiB"));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
