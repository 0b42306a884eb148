//! The calls' types: ids, a call in flight and its members, and what one
//! step of the state machine ([`super::policy`]) asks the service to do.

use superapp_proto::v1::call_event::State;
use superapp_proto::v1::call_record::Outcome;

pub use crate::model::{GroupId, UserId};

/// A call, minted by the server when it is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallId(pub u64);

/// A device: the id of the WebSocket connection that placed or answered the
/// call for its user (`UserRequest.origin`). Signals for the user go to it
/// alone.
pub type Device = u64;

/// Where one member of a call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Told of the call, not yet ringing (their devices have not said so).
    Invited,
    /// A device of theirs rings.
    Ringing,
    /// In the call on `Member::device`: the caller from the start, an
    /// invitee from their accept.
    Joined,
    Declined,
    /// Already in another call when invited: never rung.
    Busy,
    /// Did not answer within the no-answer timeout.
    Missed,
    /// Hung up or left after joining.
    Left,
}

impl MemberState {
    /// Still part of the call: ringing, or in it.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Invited | Self::Ringing | Self::Joined)
    }

    /// Still to answer.
    pub fn is_ringing(self) -> bool {
        matches!(self, Self::Invited | Self::Ringing)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user: UserId,
    pub state: MemberState,
    /// The device in the call (set once `Joined`).
    pub device: Option<Device>,
    /// The social graph withholds the call from this member (they block
    /// the caller): they are never told of it and are no participant of
    /// it, while the caller sees it ring out as an ordinary unanswered call.
    pub withheld: bool,
}

/// A call in flight, held in the core's memory (calls are ephemeral).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub id: CallId,
    pub caller: UserId,
    pub video: bool,
    /// Set for a group call.
    pub group: Option<GroupId>,
    /// Everyone invited, the caller first, in the order invited.
    pub members: Vec<Member>,
    pub placed_ms: i64,
    /// When a callee first accepted.
    pub answered_ms: Option<i64>,
}

impl Call {
    pub fn member(&self, user: UserId) -> Option<&Member> {
        self.members.iter().find(|m| m.user == user)
    }

    pub fn member_mut(&mut self, user: UserId) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.user == user)
    }

    /// A participant: a member the call is not withheld from.
    pub fn participant(&self, user: UserId) -> Option<&Member> {
        self.member(user).filter(|m| !m.withheld)
    }

    /// Who is in the call now.
    pub fn joined(&self) -> impl Iterator<Item = &Member> {
        self.members
            .iter()
            .filter(|m| m.state == MemberState::Joined)
    }

    /// Members joined or still ringing (a withheld callee rings, as far as
    /// the caller can tell, until the timeout).
    pub fn remaining(&self) -> usize {
        self.members.iter().filter(|m| m.state.is_active()).count()
    }

    /// Participants told of what happens in the call now.
    pub fn audience(&self) -> Vec<UserId> {
        self.members
            .iter()
            .filter(|m| !m.withheld && m.state.is_active())
            .map(|m| m.user)
            .collect()
    }

    pub fn view(&self) -> CallView {
        CallView {
            id: self.id,
            caller: self.caller,
            video: self.video,
            group: self.group,
            // A withheld callee is named as invited: to the caller the call
            // rings as any other.
            invited: self.members.iter().map(|m| m.user).collect(),
            joined: self.joined().map(|m| m.user).collect(),
        }
    }
}

/// What a call event says of the call as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallView {
    pub id: CallId,
    pub caller: UserId,
    pub video: bool,
    pub group: Option<GroupId>,
    pub invited: Vec<UserId>,
    pub joined: Vec<UserId>,
}

/// One call event to publish: `state`, about `user`, to every device of
/// each of `to` (less the device whose request caused it, which has its
/// answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub state: State,
    pub user: UserId,
    pub to: Vec<UserId>,
}

/// How a one-to-one call ended: its record in the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub outcome: Outcome,
    /// From the answer to the end, for a completed call.
    pub duration_ms: u32,
}

/// What one step did: the state to answer the request with, the events to
/// publish, the call as it now stands, and, when the call ended, how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effects {
    pub state: State,
    pub notices: Vec<Notice>,
    pub view: CallView,
    /// Set when the call ended with this step.
    pub ended: Option<Ended>,
}

/// How the social graph lets a caller reach one invitee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    Ring,
    /// Never rung, never told; the caller hears it ring out.
    Withheld,
}

/// A call to place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub id: CallId,
    pub caller: UserId,
    pub device: Device,
    pub invitees: Vec<(UserId, Reach)>,
    pub group: Option<GroupId>,
    pub video: bool,
}
