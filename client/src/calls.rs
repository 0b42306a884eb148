//! Calls on a [`Connection`]: place, ring, answer, decline, hang up, and
//! relay SDP and ICE candidates (docs/protocol.md §2.7); and TURN
//! credentials over HTTP. The answers are [`CallAck`]s; what the other
//! participants do arrives as `CallEvent` and `CallSignal` events.

use reqwest::Method;
use superapp_proto::v1::{
    CallAck, CallAction, CallInvite, CallSignal, IceCandidate, SessionDescription, call_action,
    call_signal, client_frame::Request, response::Result as ResponseResult,
};
use superapp_proto::{ConversationId, GroupId};

use crate::error::{ClientError, Result};
use crate::http::{HttpClient, NO_BODY};
use crate::ws::Connection;

pub use superapp_api::TurnCredentials;
pub use superapp_proto::v1::call_action::Kind as CallActionKind;

impl Connection {
    /// Calls a user, from this device.
    pub async fn call_user(&self, to_user: u64, video: bool) -> Result<CallAck> {
        self.call_request(Request::CallInvite(CallInvite {
            to_user,
            video,
            ..CallInvite::default()
        }))
        .await
    }

    /// Calls up to eight members of a group, from this device.
    pub async fn call_group(
        &self,
        group_id: u64,
        invitees: &[u64],
        video: bool,
    ) -> Result<CallAck> {
        self.call_request(Request::CallInvite(CallInvite {
            conversation_id: ConversationId::Group(GroupId(group_id)).to_string(),
            invitees: invitees.to_vec(),
            video,
            ..CallInvite::default()
        }))
        .await
    }

    /// A step in a call: ringing, accept (on this device), decline, hang up.
    pub async fn call_action(&self, call_id: u64, kind: call_action::Kind) -> Result<CallAck> {
        let mut action = CallAction {
            call_id,
            ..CallAction::default()
        };
        action.set_kind(kind);
        self.call_request(Request::CallAction(action)).await
    }

    /// Sends a session description ("offer" or "answer") to a participant.
    pub async fn call_sdp(
        &self,
        call_id: u64,
        to_user: u64,
        kind: &str,
        sdp: &str,
    ) -> Result<CallAck> {
        self.call_signal(CallSignal {
            call_id,
            to_user,
            from_user: 0,
            payload: Some(call_signal::Payload::Sdp(SessionDescription {
                r#type: kind.to_owned(),
                sdp: sdp.to_owned(),
            })),
        })
        .await
    }

    /// Sends an ICE candidate to a participant.
    pub async fn call_ice(
        &self,
        call_id: u64,
        to_user: u64,
        candidate: IceCandidate,
    ) -> Result<CallAck> {
        self.call_signal(CallSignal {
            call_id,
            to_user,
            from_user: 0,
            payload: Some(call_signal::Payload::Ice(candidate)),
        })
        .await
    }

    pub async fn call_signal(&self, signal: CallSignal) -> Result<CallAck> {
        self.call_request(Request::CallSignal(signal)).await
    }

    async fn call_request(&self, request: Request) -> Result<CallAck> {
        match self.request(request).await? {
            ResponseResult::Call(ack) => Ok(ack),
            other => Err(ClientError::Decode(format!(
                "expected a call ack, got {other:?}"
            ))),
        }
    }
}

impl HttpClient {
    /// Credentials for the server's TURN server (`GET /v1/calls/turn`).
    pub async fn turn_credentials(&self, access_token: &str) -> Result<TurnCredentials> {
        self.call(Method::GET, "/v1/calls/turn", Some(access_token), NO_BODY)
            .await
    }
}
