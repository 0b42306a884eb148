//! Delivering every message exactly once, in seq order per conversation.
//!
//! The store is the truth and push is a hint: a client remembers the highest
//! seq it has per conversation, pulls everything above it on connect, and
//! checks each pushed message against it. The connection that sent a message
//! is not pushed it: its ack is its copy, recorded with [`SyncState::sent`].

use crate::error::Result;
use crate::ws::Connection;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use superapp_proto::v1::{Conversation, Message};

/// Page sizes at the server's maxima: catching up should take few round trips.
const CONVERSATION_PAGE: u32 = 200;
const MESSAGE_PAGE: u32 = 500;

/// The highest seq the client holds in each conversation (absent means none),
/// and the seqs of its own acked messages above it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    #[serde(default)]
    seqs: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    acked: BTreeMap<String, BTreeSet<u64>>,
}

impl SyncState {
    pub fn new() -> Self {
        Self::default()
    }

    /// The last seq held in `conversation_id`, 0 when none.
    pub fn seq(&self, conversation_id: &str) -> u64 {
        self.seqs.get(conversation_id).copied().unwrap_or(0)
    }

    /// Records that everything up to `seq` is held, and past it every own
    /// message that follows without a gap. Never moves backwards, so a late or
    /// repeated message cannot make the client pull again.
    pub fn advance(&mut self, conversation_id: &str, seq: u64) {
        let known = self.seqs.entry(conversation_id.to_owned()).or_insert(0);
        *known = (*known).max(seq);
        if let Some(acked) = self.acked.get_mut(conversation_id) {
            while let Some(&s) = acked.first().filter(|&&s| s <= *known + 1) {
                acked.pop_first();
                *known = (*known).max(s);
            }
            if acked.is_empty() {
                self.acked.remove(conversation_id);
            }
        }
    }

    /// Records the ack of a message this connection sent: the server does not
    /// push it back, so it counts as held once everything before it is.
    pub fn sent(&mut self, conversation_id: &str, seq: u64) {
        if seq > self.seq(conversation_id) {
            self.acked
                .entry(conversation_id.to_owned())
                .or_default()
                .insert(seq);
            self.advance(conversation_id, 0);
        }
    }

    /// Every conversation with its last held seq.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.seqs.iter().map(|(id, seq)| (id.as_str(), *seq))
    }
}

/// What to do with a pushed message, judged against the [`SyncState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    /// The very next message: deliver it (the state has advanced already).
    Accept,
    /// Already held: drop it.
    Duplicate,
    /// Messages between `after_seq` and this one are missing: pull after
    /// `after_seq` (see [`pull_after`]), which brings this one too.
    Missing { after_seq: u64, seq: u64 },
}

/// Judges a pushed message and, when it is the next one, advances the state.
pub fn accept_live(state: &mut SyncState, message: &Message) -> Gap {
    let known = state.seq(&message.conversation_id);
    if message.seq <= known {
        Gap::Duplicate
    } else if message.seq == known + 1 {
        state.advance(&message.conversation_id, message.seq);
        Gap::Accept
    } else {
        Gap::Missing {
            after_seq: known,
            seq: message.seq,
        }
    }
}

/// Pulls every message of one conversation above the state's seq, in
/// order, advancing the state: to each message, then to the page's
/// `through_seq`, past messages the caller does not see (sent by someone
/// they block) and the history from before they joined a group.
pub async fn pull_after(
    conn: &Connection,
    state: &mut SyncState,
    conversation_id: &str,
) -> Result<Vec<Message>> {
    let mut out = Vec::new();
    loop {
        let after = state.seq(conversation_id);
        let page = conn.pull(conversation_id, after, MESSAGE_PAGE).await?;
        for message in page.messages {
            // Guards the once-each promise even if a page overlaps the last.
            if message.seq > state.seq(conversation_id) {
                state.advance(conversation_id, message.seq);
                out.push(message);
            }
        }
        state.advance(conversation_id, page.through_seq);
        // A page that moved nothing and claims more would loop forever
        // (a server older than `through_seq`); stop instead.
        if !page.has_more || state.seq(conversation_id) == after {
            return Ok(out);
        }
    }
}

/// Every conversation of the caller, following `next_cursor` to the end.
pub async fn all_conversations(conn: &Connection) -> Result<Vec<Conversation>> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = conn.list_conversations(CONVERSATION_PAGE, &cursor).await?;
        out.extend(page.conversations);
        if page.next_cursor.is_empty() || page.next_cursor == cursor {
            return Ok(out);
        }
        cursor = page.next_cursor;
    }
}

/// Pulls everything missed since `state`: each conversation whose last seq is
/// above the state's, conversation by conversation, each in seq order.
pub async fn catch_up(conn: &Connection, state: &mut SyncState) -> Result<Vec<Message>> {
    let mut out = Vec::new();
    for conversation in all_conversations(conn).await? {
        if conversation.last_seq > state.seq(&conversation.conversation_id) {
            out.extend(pull_after(conn, state, &conversation.conversation_id).await?);
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn message(conversation_id: &str, seq: u64) -> Message {
        Message {
            conversation_id: conversation_id.into(),
            seq,
            ..Message::default()
        }
    }

    #[test]
    fn a_fresh_state_holds_nothing() {
        assert_eq!(SyncState::new().seq("c"), 0);
    }

    #[test]
    fn the_next_seq_is_accepted_and_advances_the_state() {
        let mut state = SyncState::new();
        assert_eq!(accept_live(&mut state, &message("c", 1)), Gap::Accept);
        assert_eq!(accept_live(&mut state, &message("c", 2)), Gap::Accept);
        assert_eq!(state.seq("c"), 2);
    }

    #[test]
    fn a_seq_already_held_is_a_duplicate() {
        let mut state = SyncState::new();
        state.advance("c", 5);
        assert_eq!(accept_live(&mut state, &message("c", 5)), Gap::Duplicate);
        assert_eq!(accept_live(&mut state, &message("c", 3)), Gap::Duplicate);
        assert_eq!(state.seq("c"), 5);
    }

    #[test]
    fn a_skipped_seq_is_a_gap_and_does_not_advance_the_state() {
        let mut state = SyncState::new();
        state.advance("c", 2);
        assert_eq!(
            accept_live(&mut state, &message("c", 5)),
            Gap::Missing {
                after_seq: 2,
                seq: 5
            }
        );
        assert_eq!(state.seq("c"), 2);
    }

    #[test]
    fn the_first_message_of_a_new_conversation_must_be_seq_one() {
        let mut state = SyncState::new();
        assert_eq!(
            accept_live(&mut state, &message("new", 2)),
            Gap::Missing {
                after_seq: 0,
                seq: 2
            }
        );
    }

    #[test]
    fn conversations_are_tracked_independently() {
        let mut state = SyncState::new();
        state.advance("a", 7);
        assert_eq!(accept_live(&mut state, &message("b", 1)), Gap::Accept);
        assert_eq!(state.seq("a"), 7);
        assert_eq!(state.seq("b"), 1);
    }

    #[test]
    fn an_own_ack_counts_once_everything_before_it_is_held() {
        let mut state = SyncState::new();
        state.advance("c", 2);
        // The peer's 3 is still on its way when the own 4 is acked.
        state.sent("c", 4);
        assert_eq!(state.seq("c"), 2);
        assert_eq!(accept_live(&mut state, &message("c", 3)), Gap::Accept);
        assert_eq!(state.seq("c"), 4);
        // The very next seq moves the state at once; an old one changes nothing.
        state.sent("c", 5);
        state.sent("c", 1);
        assert_eq!(state.seq("c"), 5);
        assert_eq!(accept_live(&mut state, &message("c", 6)), Gap::Accept);
    }

    #[test]
    fn a_pull_past_an_own_ack_forgets_it() {
        let mut state = SyncState::new();
        state.sent("c", 3);
        state.advance("c", 7);
        state.sent("c", 9);
        assert_eq!(state.seq("c"), 7);
        state.advance("c", 8);
        assert_eq!(state.seq("c"), 9);
        assert_eq!(state, {
            let mut s = SyncState::new();
            s.advance("c", 9);
            s
        });
    }

    #[test]
    fn the_state_never_moves_backwards() {
        let mut state = SyncState::new();
        state.advance("c", 9);
        state.advance("c", 4);
        assert_eq!(state.seq("c"), 9);
    }

    #[test]
    fn the_state_survives_a_json_round_trip() {
        let mut state = SyncState::new();
        state.advance("dm:1:2", 3);
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<SyncState>(&json).unwrap(), state);
        assert_eq!(
            serde_json::from_str::<SyncState>("{}").unwrap(),
            SyncState::new()
        );
    }
}
