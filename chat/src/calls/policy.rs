//! The call state machine as pure rules: [`Registry`] holds the calls in
//! flight and who is engaged in one, and each step (place, ringing, accept,
//! decline, hang up, the no-answer timeout, the length bound, a signal)
//! either answers an error or changes the registry and says what to publish.
//! No I/O, no clock: the service passes the time in, and the proptest below
//! checks the steps against a reference model written apart
//! (`reference.rs`).
//!
//! Invariants:
//! - a user is engaged in at most one call at a time: the caller from
//!   placing it, an invitee while ringing or joined; a withheld invitee
//!   never is (they are not told of the call);
//! - the first device to accept wins: a member is joined on one device, and
//!   another device of theirs is answered `answered_elsewhere`;
//! - a call ends exactly once (so one record is written): when fewer than
//!   two of its members remain (joined or ringing), at the no-answer
//!   timeout of a one-to-one call, or at the length bound; after it, its
//!   participants' late steps are answered `call_ended` for as long as the
//!   registry remembers it ([`ENDED_REMEMBERED`] calls).

use std::collections::{HashMap, VecDeque};

use superapp_proto::v1::call_event::State;
use superapp_proto::v1::call_record::Outcome;

use super::error::CallError;
use super::model::{
    Call, CallId, Device, Effects, Ended, Member, MemberState, Notice, Placement, Reach, UserId,
};

/// Ended calls remembered to answer late steps `call_ended` rather than
/// `unknown_call`: a few minutes' worth at a busy core, a few hundred KiB.
pub const ENDED_REMEMBERED: usize = 4096;

/// The calls in flight on this core.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    calls: HashMap<CallId, Call>,
    /// User -> the one call they are engaged in.
    engaged: HashMap<UserId, CallId>,
    /// Ended calls -> their participants, oldest first in `ended_order`.
    ended: HashMap<CallId, Vec<UserId>>,
    ended_order: VecDeque<CallId>,
}

impl Registry {
    pub fn call(&self, id: CallId) -> Option<&Call> {
        self.calls.get(&id)
    }

    /// Calls in flight.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// The call `user` is engaged in, if any.
    pub fn engaged(&self, user: UserId) -> Option<CallId> {
        self.engaged.get(&user).copied()
    }

    /// Places a call: the caller joined on `device`, each invitee rung
    /// unless already engaged (busy) or withheld. A one-to-one call to a
    /// busy callee ends at once (BUSY), as does a group call whose
    /// invitees are all busy.
    pub fn place(
        &mut self,
        p: Placement,
        now_ms: i64,
        max_participants: usize,
    ) -> Result<Effects, CallError> {
        check_invitees(&p, max_participants)?;
        if self.engaged.contains_key(&p.caller) {
            return Err(CallError::AlreadyInCall);
        }
        if self.calls.contains_key(&p.id) || self.ended.contains_key(&p.id) {
            return Err(CallError::invalid("a call of this id exists"));
        }
        let mut members = vec![Member {
            user: p.caller,
            state: MemberState::Joined,
            device: Some(p.device),
            withheld: false,
        }];
        for &(user, reach) in &p.invitees {
            let withheld = reach == Reach::Withheld;
            let state = if !withheld && self.engaged.contains_key(&user) {
                MemberState::Busy
            } else {
                MemberState::Invited
            };
            members.push(Member {
                user,
                state,
                device: None,
                withheld,
            });
        }
        let mut call = Call {
            id: p.id,
            caller: p.caller,
            video: p.video,
            group: p.group,
            members,
            placed_ms: now_ms,
            answered_ms: None,
        };
        let busy: Vec<UserId> = (call.members.iter())
            .filter(|m| m.state == MemberState::Busy)
            .map(|m| m.user)
            .collect();
        let audience = call.audience();
        let mut notices: Vec<Notice> = busy
            .iter()
            .map(|&user| Notice {
                state: State::Busy,
                user,
                to: audience.clone(),
            })
            .collect();
        if call.remaining() < 2 {
            // Nobody to ring: over before it began.
            let view = call.view();
            self.remember_ended(&call);
            return Ok(Effects {
                state: State::Busy,
                notices,
                view,
                ended: Some(Ended {
                    outcome: Outcome::Busy,
                    duration_ms: 0,
                }),
            });
        }
        notices.insert(
            0,
            Notice {
                state: State::Invited,
                user: call.caller,
                to: audience,
            },
        );
        for m in call.members.iter_mut().filter(|m| m.state.is_active()) {
            if !m.withheld {
                self.engaged.insert(m.user, call.id);
            }
        }
        let view = call.view();
        self.calls.insert(call.id, call);
        Ok(Effects {
            state: State::Invited,
            notices,
            view,
            ended: None,
        })
    }

    /// A device of an invitee rings: the others are told (once).
    pub fn ringing(
        &mut self,
        id: CallId,
        user: UserId,
        device: Device,
    ) -> Result<Effects, CallError> {
        let call = self.find_mut(id, user)?;
        let is_caller = call.caller == user;
        let member = call.member_mut(user).ok_or(CallError::UnknownCall)?;
        match member.state {
            MemberState::Invited => member.state = MemberState::Ringing,
            MemberState::Ringing => return Ok(quiet(call, State::Ringing)),
            MemberState::Joined if is_caller => {
                return Err(invalid_action("the caller does not ring"));
            }
            MemberState::Joined if member.device == Some(device) => {
                return Ok(quiet(call, State::Accepted));
            }
            MemberState::Joined => return Err(CallError::AnsweredElsewhere),
            _ => return Err(CallError::CallEnded),
        }
        let notice = Notice {
            state: State::Ringing,
            user,
            to: others(call, user),
        };
        Ok(Effects {
            state: State::Ringing,
            notices: vec![notice],
            view: call.view(),
            ended: None,
        })
    }

    /// An invitee answers on `device`: the first device wins; the user's
    /// other devices are told the call was answered elsewhere, and the
    /// other participants that the user joined.
    pub fn accept(
        &mut self,
        id: CallId,
        user: UserId,
        device: Device,
        now_ms: i64,
    ) -> Result<Effects, CallError> {
        let call = self.find_mut(id, user)?;
        let member = call.member_mut(user).ok_or(CallError::UnknownCall)?;
        match member.state {
            MemberState::Invited | MemberState::Ringing => {
                member.state = MemberState::Joined;
                member.device = Some(device);
            }
            // A retry from the device that won.
            MemberState::Joined if member.device == Some(device) => {
                return Ok(quiet(call, State::Accepted));
            }
            MemberState::Joined => return Err(CallError::AnsweredElsewhere),
            _ => return Err(CallError::CallEnded),
        }
        call.answered_ms.get_or_insert(now_ms);
        let notices = vec![
            Notice {
                state: State::Accepted,
                user,
                to: others(call, user),
            },
            Notice {
                state: State::AnsweredElsewhere,
                user,
                to: vec![user],
            },
        ];
        Ok(Effects {
            state: State::Accepted,
            notices,
            view: call.view(),
            ended: None,
        })
    }

    /// An invitee declines (on any of their devices, while ringing).
    pub fn decline(
        &mut self,
        id: CallId,
        user: UserId,
        device: Device,
        now_ms: i64,
    ) -> Result<Effects, CallError> {
        let call = self.find_mut(id, user)?;
        let member = call.member(user).ok_or(CallError::UnknownCall)?;
        match member.state {
            MemberState::Invited | MemberState::Ringing => {}
            MemberState::Joined if member.device == Some(device) => {
                return Err(invalid_action("hang up a call you are in"));
            }
            MemberState::Joined => return Err(CallError::AnsweredElsewhere),
            _ => return Err(CallError::CallEnded),
        }
        Ok(self.drop_member(id, user, MemberState::Declined, State::Declined, now_ms))
    }

    /// A participant hangs up, from any of their devices: before an answer
    /// the caller cancels (and an invitee declines); after it, a one-to-one
    /// call ends and a member of a group call leaves it.
    pub fn hangup(&mut self, id: CallId, user: UserId, now_ms: i64) -> Result<Effects, CallError> {
        let call = self.find_mut(id, user)?;
        let member = call.member(user).ok_or(CallError::UnknownCall)?;
        match member.state {
            MemberState::Invited | MemberState::Ringing => {
                return Ok(self.drop_member(
                    id,
                    user,
                    MemberState::Declined,
                    State::Declined,
                    now_ms,
                ));
            }
            // From any device of theirs: a user may end their own call
            // from another device (the one in it may have vanished).
            MemberState::Joined => {}
            _ => return Err(CallError::CallEnded),
        }
        let nobody_answered = call.joined().count() == 1;
        if user == call.caller && nobody_answered {
            let to = call.audience();
            let notice = Notice {
                state: State::Cancelled,
                user,
                to,
            };
            return Ok(self.end(
                id,
                Outcome::Cancelled,
                State::Cancelled,
                vec![notice],
                now_ms,
            ));
        }
        if call.group.is_none() {
            let notice = Notice {
                state: State::Ended,
                user,
                to: call.audience(),
            };
            return Ok(self.end(id, Outcome::Completed, State::Ended, vec![notice], now_ms));
        }
        Ok(self.drop_member(id, user, MemberState::Left, State::Left, now_ms))
    }

    /// The no-answer timeout: those still ringing missed the call; a
    /// one-to-one call ends, a group call goes on while two remain. None
    /// when nobody was ringing any more (or the call is over).
    pub fn timeout(&mut self, id: CallId, now_ms: i64) -> Option<Effects> {
        let call = self.calls.get_mut(&id)?;
        let audience = call.audience();
        let mut notices = Vec::new();
        for m in call.members.iter_mut().filter(|m| m.state.is_ringing()) {
            m.state = MemberState::Missed;
            // Told to the audience, which never holds a withheld member: the
            // caller hears a withheld call ring out as any other.
            notices.push(Notice {
                state: State::Missed,
                user: m.user,
                to: audience.clone(),
            });
            if self.engaged.get(&m.user) == Some(&id) {
                self.engaged.remove(&m.user);
            }
        }
        if notices.is_empty() {
            return None;
        }
        if call.remaining() >= 2 {
            return Some(Effects {
                state: State::Missed,
                notices,
                view: call.view(),
                ended: None,
            });
        }
        if call.group.is_some() {
            notices.push(Notice {
                state: State::Ended,
                user: call.caller,
                to: call.audience(),
            });
        }
        let outcome = match call.answered_ms {
            Some(_) => Outcome::Completed,
            None => Outcome::Missed,
        };
        Some(self.end(id, outcome, State::Missed, notices, now_ms))
    }

    /// The call reached its length bound: it ends for everyone.
    pub fn expire(&mut self, id: CallId, now_ms: i64) -> Option<Effects> {
        let call = self.calls.get(&id)?;
        let notice = Notice {
            state: State::Ended,
            user: call.caller,
            to: call.audience(),
        };
        let outcome = match call.answered_ms {
            Some(_) => Outcome::Completed,
            None => Outcome::Missed,
        };
        Some(self.end(id, outcome, State::Ended, vec![notice], now_ms))
    }

    /// Where a signal from `from` (on `device`) to `to` goes: the device
    /// `to` joined on.
    pub fn signal(
        &self,
        id: CallId,
        from: UserId,
        device: Device,
        to: UserId,
    ) -> Result<Device, CallError> {
        let call = self.find(id, from)?;
        let sender = call.member(from).ok_or(CallError::UnknownCall)?;
        match sender.state {
            MemberState::Joined if sender.device == Some(device) => {}
            MemberState::Joined => return Err(CallError::AnsweredElsewhere),
            MemberState::Invited | MemberState::Ringing => return Err(CallError::PeerNotJoined),
            _ => return Err(CallError::CallEnded),
        }
        if to == from {
            return Err(invalid_signal("a signal goes to another participant"));
        }
        let peer = call
            .member(to)
            .ok_or_else(|| invalid_signal("that user is not in this call"))?;
        match (peer.state, peer.device) {
            (MemberState::Joined, Some(target)) if !peer.withheld => Ok(target),
            _ => Err(CallError::PeerNotJoined),
        }
    }

    /// The call, if `user` takes part in it; else why not.
    fn find(&self, id: CallId, user: UserId) -> Result<&Call, CallError> {
        match self.calls.get(&id) {
            Some(call) if call.participant(user).is_some() => Ok(call),
            Some(_) => Err(CallError::UnknownCall),
            None if self.ended.get(&id).is_some_and(|who| who.contains(&user)) => {
                Err(CallError::CallEnded)
            }
            None => Err(CallError::UnknownCall),
        }
    }

    fn find_mut(&mut self, id: CallId, user: UserId) -> Result<&mut Call, CallError> {
        self.find(id, user)?;
        self.calls.get_mut(&id).ok_or(CallError::UnknownCall)
    }

    /// A member stops taking part (`state`), told to those still in it and
    /// to the member's other devices; the call ends when fewer than two
    /// remain.
    fn drop_member(
        &mut self,
        id: CallId,
        user: UserId,
        state: MemberState,
        told: State,
        now_ms: i64,
    ) -> Effects {
        let Some(call) = self.calls.get_mut(&id) else {
            unreachable_effects()
        };
        let audience = call.audience();
        if let Some(m) = call.member_mut(user) {
            m.state = state;
        }
        if self.engaged.get(&user) == Some(&id) {
            self.engaged.remove(&user);
        }
        let mut notices = vec![Notice {
            state: told,
            user,
            to: audience,
        }];
        if call.remaining() >= 2 {
            return Effects {
                state: told,
                notices,
                view: call.view(),
                ended: None,
            };
        }
        let outcome = match (call.group, told, call.answered_ms) {
            (_, _, Some(_)) => Outcome::Completed,
            (None, State::Declined, None) => Outcome::Declined,
            _ => Outcome::Missed,
        };
        if call.group.is_some() {
            notices.push(Notice {
                state: State::Ended,
                user,
                to: call.audience(),
            });
        }
        self.end(id, outcome, told, notices, now_ms)
    }

    /// Ends a call: it leaves the registry, its members are free, and it is
    /// remembered as ended.
    fn end(
        &mut self,
        id: CallId,
        outcome: Outcome,
        state: State,
        notices: Vec<Notice>,
        now_ms: i64,
    ) -> Effects {
        let Some(call) = self.calls.remove(&id) else {
            unreachable_effects()
        };
        for m in &call.members {
            if self.engaged.get(&m.user) == Some(&id) {
                self.engaged.remove(&m.user);
            }
        }
        let duration_ms = match (outcome, call.answered_ms) {
            (Outcome::Completed, Some(at)) => {
                u32::try_from(now_ms.saturating_sub(at).max(0)).unwrap_or(u32::MAX)
            }
            _ => 0,
        };
        let view = call.view();
        self.remember_ended(&call);
        Effects {
            state,
            notices,
            view,
            ended: Some(Ended {
                outcome,
                duration_ms,
            }),
        }
    }

    fn remember_ended(&mut self, call: &Call) {
        let who = (call.members.iter())
            .filter(|m| !m.withheld)
            .map(|m| m.user)
            .collect();
        self.ended.insert(call.id, who);
        self.ended_order.push_back(call.id);
        while self.ended_order.len() > ENDED_REMEMBERED {
            if let Some(old) = self.ended_order.pop_front() {
                self.ended.remove(&old);
            }
        }
    }
}

/// `drop_member` and `end` are called only for a call just found in the
/// registry, under the same `&mut self`: it is there.
fn unreachable_effects() -> ! {
    unreachable!("a call found under the same borrow is in the registry")
}

/// Everyone told of the call but `user`.
fn others(call: &Call, user: UserId) -> Vec<UserId> {
    call.audience().into_iter().filter(|&u| u != user).collect()
}

/// The answer to a repeated step: nothing changed, nothing to publish.
fn quiet(call: &Call, state: State) -> Effects {
    Effects {
        state,
        notices: Vec::new(),
        view: call.view(),
        ended: None,
    }
}

fn invalid_action(reason: &'static str) -> CallError {
    CallError::Invalid {
        code: "invalid_call_action",
        reason,
    }
}

fn invalid_signal(reason: &'static str) -> CallError {
    CallError::Invalid {
        code: "invalid_signal",
        reason,
    }
}

/// A one-to-one call invites one other user; a group call 1 to
/// `max_participants - 1`, each once, never the caller.
fn check_invitees(p: &Placement, max_participants: usize) -> Result<(), CallError> {
    if p.invitees.is_empty() {
        return Err(CallError::invalid("a call invites someone"));
    }
    if p.group.is_none() && p.invitees.len() != 1 {
        return Err(CallError::invalid("a one-to-one call invites one user"));
    }
    if p.invitees.len() + 1 > max_participants {
        return Err(CallError::TooManyParticipants {
            max: max_participants,
        });
    }
    let mut seen = std::collections::HashSet::new();
    for &(user, _) in &p.invitees {
        if user == p.caller {
            return Err(CallError::invalid("you cannot call yourself"));
        }
        if !seen.insert(user) {
            return Err(CallError::invalid("an invitee is named twice"));
        }
    }
    Ok(())
}

/// The text a client shows for a call record it cannot render
/// ("[Voice call] 3:21", "[Missed video call]").
pub fn fallback_text(video: bool, outcome: Outcome, duration_ms: u32) -> String {
    let (kind, lower) = if video {
        ("Video call", "video call")
    } else {
        ("Voice call", "voice call")
    };
    match outcome {
        Outcome::Completed => format!("[{kind}] {}", clock_text(duration_ms)),
        Outcome::Missed | Outcome::Unspecified => format!("[Missed {lower}]"),
        Outcome::Declined => format!("[{kind}] Declined"),
        Outcome::Cancelled => format!("[{kind}] Cancelled"),
        Outcome::Busy => format!("[{kind}] Busy"),
    }
}

/// `m:ss`, or `h:mm:ss` from an hour on; seconds rounded down.
fn clock_text(duration_ms: u32) -> String {
    let secs = duration_ms / 1000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
