//! The chat operations the gateway calls.

use std::sync::Arc;

use prost::Message as _;
use superapp_kit::bus::{SharedBus, group_topic, user_topic};
use superapp_kit::clock::SharedClock;
use superapp_kit::ids::IdGen;
use superapp_kit::metrics::{Counter, Histogram, LATENCY_SECONDS, Registry};
use superapp_proto::v1::{
    Conversation, ConversationPage, Event, Message, MessageBody, MessagePage, ReadAck, ReadReceipt,
    SendAck, SendMessage, bus_envelope, event, message_body,
};

use crate::ChatError;
use crate::group_store::{MAX_MENTIONS, NewGroupMessage, parse_group};
use crate::groups::envelope;
use crate::ports::Directory;
use crate::store::{Appended, ChatStorage, InboxEntry, NewMessage, StoredMessage};

/// Largest text body, in bytes of UTF-8.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
const MAX_CLIENT_MSG_ID_BYTES: usize = 64;
const DEFAULT_PAGE: u32 = 100;
const DEFAULT_CONVERSATIONS: u32 = 50;
const MAX_CONVERSATIONS: u32 = 200;
/// Bodies in one pulled page stop growing past this, so a page of long
/// messages still fits one WebSocket frame; `has_more` says to pull again.
pub const MAX_PAGE_BODY_BYTES: usize = 256 * 1024;

/// A one-to-one conversation is named by its two members, smaller id first, so
/// both sides derive the same id without a lookup: `d.<low>.<high>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConversationId {
    pub low: u64,
    pub high: u64,
}

impl ConversationId {
    pub fn direct(a: u64, b: u64) -> Self {
        Self {
            low: a.min(b),
            high: a.max(b),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("d.")?;
        let (low, high) = rest.split_once('.')?;
        let (low, high): (u64, u64) = (low.parse().ok()?, high.parse().ok()?);
        // Only the canonical spelling names a conversation.
        (low < high && s == format!("d.{low}.{high}")).then_some(Self { low, high })
    }

    /// The other member, if `user` is one of the two.
    pub fn peer_of(&self, user: u64) -> Option<u64> {
        match user {
            u if u == self.low => Some(self.high),
            u if u == self.high => Some(self.low),
            _ => None,
        }
    }
}

impl std::fmt::Display for ConversationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "d.{}.{}", self.low, self.high)
    }
}

pub struct Chat {
    pub(crate) store: Arc<dyn ChatStorage>,
    pub(crate) directory: Arc<dyn Directory>,
    pub(crate) bus: SharedBus,
    pub(crate) clock: SharedClock,
    pub(crate) ids: Arc<IdGen>,
    max_pull_page: u32,
    sends: Arc<Counter>,
    duplicates: Arc<Counter>,
    append_seconds: Arc<Histogram>,
}

impl Chat {
    pub fn new(
        store: Arc<dyn ChatStorage>,
        directory: Arc<dyn Directory>,
        bus: SharedBus,
        clock: SharedClock,
        ids: Arc<IdGen>,
        max_pull_page: u32,
        metrics: &Registry,
    ) -> Self {
        Self {
            store,
            directory,
            bus,
            clock,
            ids,
            max_pull_page: max_pull_page.max(1),
            sends: metrics.counter("chat_messages_stored_total", "Messages stored."),
            duplicates: metrics.counter(
                "chat_duplicate_sends_total",
                "Sends answered with an earlier ack (repeated client_msg_id).",
            ),
            append_seconds: metrics.histogram(
                "chat_append_seconds",
                "Time from a valid send to its durable commit.",
                LATENCY_SECONDS,
            ),
        }
    }

    /// Validates, appends durably, and only then publishes the message to the
    /// recipient and to the sender's other devices: not to the connection it
    /// came from (`origin`), whose copy is the ack.
    #[tracing::instrument(skip_all, fields(sender = sender))]
    pub async fn send(
        &self,
        sender: u64,
        origin: u64,
        mut request: SendMessage,
    ) -> Result<SendAck, ChatError> {
        let body = validate_body(request.body.take())?;
        if request.client_msg_id.is_empty() || request.client_msg_id.len() > MAX_CLIENT_MSG_ID_BYTES
        {
            return Err(ChatError::InvalidClientMsgId);
        }
        if let Some(group_id) = parse_group(&request.conversation_id) {
            return self
                .send_to_group(sender, origin, group_id, request, body)
                .await;
        }
        let conversation = self
            .resolve(sender, &request.conversation_id, request.to_user)
            .await?;
        let peer = conversation
            .peer_of(sender)
            .ok_or(ChatError::UnknownConversation)?;
        let started = std::time::Instant::now();
        let appended = self
            .store
            .append(NewMessage {
                conversation_id: conversation.to_string(),
                sender,
                members: vec![sender, peer],
                client_msg_id: request.client_msg_id.clone(),
                message_id: self.ids.next(),
                server_time_ms: self.clock.now_ms(),
                body: body.encode_to_vec(),
            })
            .await?;
        self.append_seconds.observe(started.elapsed().as_secs_f64());
        if let Some(message) = self.stored(&appended, sender, request, body) {
            self.publish(&[peer, sender], origin, event::Kind::Message(message));
        }
        Ok(ack_of(appended))
    }

    /// A group message is stored once and published once, on the group's topic.
    async fn send_to_group(
        &self,
        sender: u64,
        origin: u64,
        group_id: u64,
        request: SendMessage,
        body: MessageBody,
    ) -> Result<SendAck, ChatError> {
        if request.mentions.len() > MAX_MENTIONS {
            return Err(ChatError::TooManyMentions { max: MAX_MENTIONS });
        }
        let started = std::time::Instant::now();
        let appended = self
            .store
            .append_group(NewGroupMessage {
                group_id,
                sender,
                client_msg_id: request.client_msg_id.clone(),
                message_id: self.ids.next(),
                server_time_ms: self.clock.now_ms(),
                body: body.encode_to_vec(),
                mentions: request.mentions.clone(),
                mention_all: request.mention_all,
            })
            .await?;
        self.append_seconds.observe(started.elapsed().as_secs_f64());
        if let Some(message) = self.stored(&appended, sender, request, body) {
            let event = Event {
                kind: Some(event::Kind::Message(message)),
            };
            self.publish_envelope(
                &group_topic(group_id),
                bus_envelope::Kind::Event(event),
                origin,
            );
        }
        Ok(ack_of(appended))
    }

    /// Counts the outcome of an append; the message to publish when it is new.
    fn stored(
        &self,
        appended: &Appended,
        sender: u64,
        request: SendMessage,
        body: MessageBody,
    ) -> Option<Message> {
        if appended.duplicate {
            self.duplicates.inc();
            return None;
        }
        self.sends.inc();
        Some(Message {
            conversation_id: appended.conversation_id.clone(),
            seq: appended.seq,
            message_id: appended.message_id,
            sender,
            server_time_ms: appended.server_time_ms,
            client_msg_id: request.client_msg_id,
            body: Some(body),
            mention_all: appended.mentions.contains(&0),
            mentions: appended
                .mentions
                .iter()
                .copied()
                .filter(|&id| id != 0)
                .collect(),
        })
    }

    /// The caller's conversations, most recent activity first.
    pub async fn conversations(
        &self,
        user: u64,
        limit: u32,
        cursor: &str,
    ) -> Result<ConversationPage, ChatError> {
        let limit = match limit {
            0 => DEFAULT_CONVERSATIONS,
            n => n.min(MAX_CONVERSATIONS),
        };
        let cursor = parse_cursor(cursor)?;
        let entries = self.store.inbox(user, cursor, limit).await?;
        let next_cursor = match entries.last() {
            Some(last) if entries.len() == limit as usize => {
                format!("{}:{}", last.last_activity_ms, last.conversation_id)
            }
            _ => String::new(),
        };
        Ok(ConversationPage {
            conversations: entries.into_iter().map(conversation_of).collect(),
            next_cursor,
        })
    }

    /// Messages after `after_seq`, ascending; `has_more` says whether to pull again.
    pub async fn pull(
        &self,
        user: u64,
        conversation_id: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<MessagePage, ChatError> {
        let group = parse_group(conversation_id);
        let mut rejoined = false;
        let after_seq = match group {
            // A member sees messages from the time they joined.
            Some(group_id) => after_seq.max(self.group(user, group_id).await?.1.joined_seq),
            None => {
                self.require_member(user, conversation_id)?;
                after_seq
            }
        };
        let limit = match limit {
            0 => DEFAULT_PAGE.min(self.max_pull_page),
            n => n.min(self.max_pull_page),
        };
        // One extra row tells whether another page follows, without a count.
        let mut rows = self
            .store
            .messages_after(conversation_id, after_seq, limit.saturating_add(1))
            .await?;
        if let Some(group_id) = group {
            // Asked again after reading: whoever was removed meanwhile gets
            // nothing, and whoever left and rejoined only their new span.
            let joined_seq = self.group(user, group_id).await?.1.joined_seq;
            let read = rows.len();
            rows.retain(|m| m.seq > joined_seq);
            // What was dropped was counted against the page: more may follow.
            rejoined = rows.len() < read;
        }
        let mut has_more = rejoined || rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let mut bytes = 0;
        if let Some(cut) = rows.iter().position(|m| {
            bytes += m.body.len();
            bytes > MAX_PAGE_BODY_BYTES
        }) {
            // Always at least one message, or a client could never get past it.
            rows.truncate(cut.max(1));
            has_more = true;
        }
        Ok(MessagePage {
            conversation_id: conversation_id.to_string(),
            messages: rows.into_iter().map(message_of).collect(),
            has_more,
        })
    }

    /// Moves the read mark forward and tells the reader's other devices and,
    /// in a one-to-one chat, the peer. Group read marks are private, as in the
    /// apps people know: a receipt to thousands of members per read would cost
    /// more than the message.
    pub async fn mark_read(
        &self,
        user: u64,
        origin: u64,
        conversation_id: &str,
        seq: u64,
    ) -> Result<ReadAck, ChatError> {
        let peer = match parse_group(conversation_id) {
            Some(group_id) => {
                self.group(user, group_id).await?;
                None
            }
            None => Some(
                self.require_member(user, conversation_id)?
                    .peer_of(user)
                    .ok_or(ChatError::UnknownConversation)?,
            ),
        };
        let read_seq = self
            .store
            .mark_read(user, conversation_id, seq)
            .await?
            .ok_or(ChatError::UnknownConversation)?;
        let receipt = ReadReceipt {
            conversation_id: conversation_id.to_string(),
            reader: user,
            read_seq,
        };
        let mut readers = vec![user];
        readers.extend(peer);
        self.publish(&readers, origin, event::Kind::ReadReceipt(receipt));
        Ok(ReadAck {
            conversation_id: conversation_id.to_string(),
            read_seq,
        })
    }

    async fn resolve(
        &self,
        sender: u64,
        conversation_id: &str,
        to_user: u64,
    ) -> Result<ConversationId, ChatError> {
        let (conversation, peer) = if conversation_id.is_empty() {
            if to_user == 0 {
                return Err(ChatError::UnknownRecipient);
            }
            if to_user == sender {
                return Err(ChatError::InvalidRecipient);
            }
            (ConversationId::direct(sender, to_user), to_user)
        } else {
            let conversation = self.require_member(sender, conversation_id)?;
            let peer = conversation
                .peer_of(sender)
                .ok_or(ChatError::UnknownConversation)?;
            if to_user != 0 && to_user != peer {
                return Err(ChatError::UnknownConversation);
            }
            (conversation, peer)
        };
        let exists = self
            .directory
            .user_exists(peer)
            .await
            .map_err(ChatError::Dependency)?;
        if !exists {
            return Err(if conversation_id.is_empty() {
                ChatError::UnknownRecipient
            } else {
                ChatError::UnknownConversation
            });
        }
        Ok(conversation)
    }

    /// Membership of a one-to-one conversation follows from its id; a
    /// conversation nobody has written to yet simply has no messages.
    fn require_member(
        &self,
        user: u64,
        conversation_id: &str,
    ) -> Result<ConversationId, ChatError> {
        ConversationId::parse(conversation_id)
            .filter(|c| c.peer_of(user).is_some())
            .ok_or(ChatError::UnknownConversation)
    }

    /// One event to each user's topic, encoded once.
    fn publish(&self, users: &[u64], origin: u64, kind: event::Kind) {
        let envelope = envelope(
            bus_envelope::Kind::Event(Event { kind: Some(kind) }),
            origin,
        );
        for &user in users {
            self.bus.publish(&user_topic(user), envelope.clone());
        }
    }
}

fn ack_of(appended: Appended) -> SendAck {
    SendAck {
        conversation_id: appended.conversation_id,
        seq: appended.seq,
        server_time_ms: appended.server_time_ms,
        message_id: appended.message_id,
        duplicate: appended.duplicate,
    }
}

fn validate_body(body: Option<MessageBody>) -> Result<MessageBody, ChatError> {
    let body = body.ok_or(ChatError::EmptyBody)?;
    match &body.content {
        Some(message_body::Content::Text(text)) if text.is_empty() => Err(ChatError::EmptyBody),
        Some(message_body::Content::Text(text)) if text.len() > MAX_TEXT_BYTES => {
            Err(ChatError::BodyTooLarge {
                max: MAX_TEXT_BYTES,
            })
        }
        Some(message_body::Content::Text(_)) => Ok(body),
        None => Err(ChatError::EmptyBody),
    }
}

fn parse_cursor(cursor: &str) -> Result<Option<(i64, String)>, ChatError> {
    if cursor.is_empty() {
        return Ok(None);
    }
    let (ms, id) = cursor.split_once(':').ok_or(ChatError::InvalidCursor)?;
    let ms = ms.parse().map_err(|_| ChatError::InvalidCursor)?;
    if id.is_empty() {
        return Err(ChatError::InvalidCursor);
    }
    Ok(Some((ms, id.to_string())))
}

fn conversation_of(e: InboxEntry) -> Conversation {
    Conversation {
        conversation_id: e.conversation_id,
        peer: e.peer,
        last_seq: e.last_seq,
        read_seq: e.read_seq,
        unread: e.unread,
        last_activity_ms: e.last_activity_ms,
        peer_read_seq: e.peer_read_seq,
        group_id: e.group.as_ref().map_or(0, |g| g.0),
        name: e.group.as_ref().map(|g| g.1.clone()).unwrap_or_default(),
        member_count: e.group.as_ref().map_or(0, |g| g.2),
        mentioned: e.mentioned,
    }
}

fn message_of(m: StoredMessage) -> Message {
    Message {
        conversation_id: m.conversation_id,
        seq: m.seq,
        message_id: m.message_id,
        sender: m.sender,
        server_time_ms: m.server_time_ms,
        client_msg_id: m.client_msg_id,
        mention_all: m.mentions.contains(&0),
        mentions: m.mentions.into_iter().filter(|&id| id != 0).collect(),
        // Bodies were encoded by this server; a decode failure means corruption,
        // which a client sees as an empty body rather than a dropped message.
        body: MessageBody::decode(m.body.as_slice()).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_direct_conversation_has_one_canonical_name() {
        let c = ConversationId::direct(9, 3);
        assert_eq!(c.to_string(), "d.3.9");
        assert_eq!(ConversationId::parse("d.3.9"), Some(c));
        for bad in [
            "d.9.3", "d.3.3", "d.03.9", "g.1", "d.3", "d.3.9.1", "", "d.-1.2",
        ] {
            assert_eq!(ConversationId::parse(bad), None, "{bad}");
        }
        assert_eq!(c.peer_of(3), Some(9));
        assert_eq!(c.peer_of(4), None);
    }

    #[test]
    fn bodies_must_hold_between_one_and_16384_bytes_of_text() {
        let text = |s: String| {
            Some(MessageBody {
                content: Some(message_body::Content::Text(s)),
            })
        };
        assert!(matches!(validate_body(None), Err(ChatError::EmptyBody)));
        assert!(matches!(
            validate_body(text(String::new())),
            Err(ChatError::EmptyBody)
        ));
        assert!(validate_body(text("x".repeat(MAX_TEXT_BYTES))).is_ok());
        assert!(matches!(
            validate_body(text("x".repeat(MAX_TEXT_BYTES + 1))),
            Err(ChatError::BodyTooLarge { .. })
        ));
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        assert_eq!(parse_cursor("").unwrap(), None);
        assert_eq!(
            parse_cursor("12:d.1.2").unwrap(),
            Some((12, "d.1.2".into()))
        );
        assert!(parse_cursor("x:d.1.2").is_err());
        assert!(parse_cursor("12").is_err());
    }
}
