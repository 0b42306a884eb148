//! A reference model of one-to-one calls, written from the rules in
//! docs/protocol.md §2.7 and not from [`super::policy`]: a list of live
//! calls, each ringing or talking, and a list of those over. The proptest
//! in `policy_tests.rs` runs random steps on both and compares every answer,
//! who is engaged, and every record.

use superapp_proto::v1::call_event::State;
use superapp_proto::v1::call_record::Outcome;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ringing,
    Talking { since: i64 },
}

#[derive(Debug, Clone)]
struct Live {
    id: u64,
    caller: u64,
    callee: u64,
    caller_device: u64,
    callee_device: Option<u64>,
    /// The callee blocks the caller: never told, never engaged.
    withheld: bool,
    phase: Phase,
}

/// An answer: the state acknowledged (or, for a signal, the device it
/// goes to), or an error code.
pub type Answer = Result<Reply, &'static str>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    State(State),
    Device(u64),
    Nothing,
}

#[derive(Debug, Default)]
pub struct Model {
    live: Vec<Live>,
    /// Calls over, with the users who took part.
    over: Vec<(u64, Vec<u64>)>,
    pub records: Vec<(u64, Outcome, u32)>,
}

impl Model {
    /// Whether `user` is in a live call (placing it, or told it rings).
    pub fn busy(&self, user: u64) -> bool {
        self.live
            .iter()
            .any(|c| c.caller == user || (c.callee == user && !c.withheld))
    }

    fn finish(&mut self, index: usize, outcome: Outcome, now: i64) {
        let c = self.live.remove(index);
        let duration = match (outcome, c.phase) {
            (Outcome::Completed, Phase::Talking { since }) => (now - since) as u32,
            _ => 0,
        };
        let mut who = vec![c.caller];
        if !c.withheld {
            who.push(c.callee);
        }
        self.over.push((c.id, who));
        self.records.push((c.id, outcome, duration));
    }

    /// The live call `user` takes part in, or the error for it.
    fn find(&self, id: u64, user: u64) -> Result<usize, &'static str> {
        let found = self
            .live
            .iter()
            .position(|c| c.id == id && (c.caller == user || (c.callee == user && !c.withheld)));
        if let Some(i) = found {
            return Ok(i);
        }
        if self
            .over
            .iter()
            .any(|(over, who)| *over == id && who.contains(&user))
        {
            return Err("call_ended");
        }
        Err("unknown_call")
    }

    pub fn place(
        &mut self,
        id: u64,
        caller: u64,
        callee: u64,
        device: u64,
        withheld: bool,
    ) -> Answer {
        if self.busy(caller) {
            return Err("already_in_call");
        }
        if !withheld && self.busy(callee) {
            self.over.push((id, vec![caller, callee]));
            self.records.push((id, Outcome::Busy, 0));
            return Ok(Reply::State(State::Busy));
        }
        self.live.push(Live {
            id,
            caller,
            callee,
            caller_device: device,
            callee_device: None,
            withheld,
            phase: Phase::Ringing,
        });
        Ok(Reply::State(State::Invited))
    }

    pub fn ringing(&mut self, id: u64, user: u64, device: u64) -> Answer {
        let c = &self.live[self.find(id, user)?];
        if user == c.caller {
            return Err("invalid_call_action");
        }
        match c.phase {
            Phase::Ringing => Ok(Reply::State(State::Ringing)),
            Phase::Talking { .. } if c.callee_device == Some(device) => {
                Ok(Reply::State(State::Accepted))
            }
            Phase::Talking { .. } => Err("answered_elsewhere"),
        }
    }

    pub fn accept(&mut self, id: u64, user: u64, device: u64, now: i64) -> Answer {
        let i = self.find(id, user)?;
        let c = &mut self.live[i];
        let mine = if user == c.caller {
            Some(c.caller_device)
        } else {
            c.callee_device
        };
        if user == c.callee && c.phase == Phase::Ringing {
            c.phase = Phase::Talking { since: now };
            c.callee_device = Some(device);
            return Ok(Reply::State(State::Accepted));
        }
        if mine == Some(device) {
            Ok(Reply::State(State::Accepted))
        } else {
            Err("answered_elsewhere")
        }
    }

    pub fn decline(&mut self, id: u64, user: u64, device: u64, now: i64) -> Answer {
        let i = self.find(id, user)?;
        let c = &self.live[i];
        if user == c.callee && c.phase == Phase::Ringing {
            self.finish(i, Outcome::Declined, now);
            return Ok(Reply::State(State::Declined));
        }
        let mine = if user == c.caller {
            Some(c.caller_device)
        } else {
            c.callee_device
        };
        if mine == Some(device) {
            Err("invalid_call_action")
        } else {
            Err("answered_elsewhere")
        }
    }

    /// From any device of the user's.
    pub fn hangup(&mut self, id: u64, user: u64, now: i64) -> Answer {
        let i = self.find(id, user)?;
        let c = &self.live[i];
        if user == c.callee && c.phase == Phase::Ringing {
            self.finish(i, Outcome::Declined, now);
            return Ok(Reply::State(State::Declined));
        }
        if c.phase == Phase::Ringing {
            self.finish(i, Outcome::Cancelled, now);
            return Ok(Reply::State(State::Cancelled));
        }
        self.finish(i, Outcome::Completed, now);
        Ok(Reply::State(State::Ended))
    }

    pub fn timeout(&mut self, id: u64, now: i64) -> Answer {
        match self.live.iter().position(|c| c.id == id) {
            Some(i) if self.live[i].phase == Phase::Ringing => {
                self.finish(i, Outcome::Missed, now);
                Ok(Reply::State(State::Missed))
            }
            _ => Ok(Reply::Nothing),
        }
    }

    pub fn signal(&self, id: u64, from: u64, device: u64, to: u64) -> Answer {
        let c = &self.live[self.find(id, from)?];
        if from == c.callee && c.phase == Phase::Ringing {
            return Err("peer_not_joined");
        }
        let mine = if from == c.caller {
            Some(c.caller_device)
        } else {
            c.callee_device
        };
        if mine != Some(device) {
            return Err("answered_elsewhere");
        }
        if to == from || (to != c.caller && to != c.callee) {
            return Err("invalid_signal");
        }
        if to == c.caller {
            return Ok(Reply::Device(c.caller_device));
        }
        match (c.phase, c.callee_device) {
            (Phase::Talking { .. }, Some(d)) if !c.withheld => Ok(Reply::Device(d)),
            _ => Err("peer_not_joined"),
        }
    }
}
