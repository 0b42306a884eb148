//! The outcomes of call operations that callers branch on, mapped to stable
//! codes at the edge (gateway/src/http/calls.rs).

use crate::ChatError;

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No call of this id that the caller is in: never placed, long over,
    /// or someone else's (the error does not say which).
    #[error("no such call")]
    UnknownCall,
    /// The call (or the caller's part in it) is over: cancelled, timed
    /// out, declined, left, or ended by the other side first.
    #[error("the call has ended")]
    CallEnded,
    /// Another device of the user answered (or placed) the call.
    #[error("the call was answered on another device")]
    AnsweredElsewhere,
    /// The caller is in another call (or placing, or ringing for, one).
    #[error("you are already in a call")]
    AlreadyInCall,
    /// The callee takes no call from the caller, as they take no message.
    #[error("this user does not take calls from you")]
    CallRefused,
    /// A signal for a participant who has not joined (yet), or from one.
    #[error("that participant has not joined the call")]
    PeerNotJoined,
    /// A call has at most `max` participants, the caller included.
    #[error("a call has at most {max} participants")]
    TooManyParticipants { max: usize },
    /// A request that cannot be served as asked; `code` names why
    /// (`invalid_call`, `invalid_call_action`, `invalid_signal`).
    #[error("{reason}")]
    Invalid {
        code: &'static str,
        reason: &'static str,
    },
    /// Chat's own outcomes: an unknown user or group, a non-member.
    #[error(transparent)]
    Chat(#[from] ChatError),
}

impl CallError {
    pub(crate) fn invalid(reason: &'static str) -> Self {
        Self::Invalid {
            code: "invalid_call",
            reason,
        }
    }
}
