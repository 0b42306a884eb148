//! The chat operations the edge calls: each validates its input, applies the
//! room's rules ([`crate::policy`]), calls the store, and only after a
//! durable write publishes events on the bus.

mod groups;

use std::sync::Arc;

use bytes::Bytes;
use prost::Message as _;
use superapp_kit::bus::SharedBus;
use superapp_kit::clock::SharedClock;
use superapp_kit::ids::IdGen;
use superapp_kit::metrics::{Counter, Histogram, LATENCY_SECONDS, Registry};
use superapp_proto::Topic;
use superapp_proto::v1::{
    BusEnvelope, Conversation, ConversationPage, Event, Message, MessageBody, MessagePage, ReadAck,
    ReadReceipt, SendAck, SendMessage, bus_envelope, event,
};

use crate::ChatError;
use crate::model::{
    Appended, ConversationId, GroupId, InboxCursor, InboxEntry, Mentions, NewGroupMessage,
    NewMessage, Origin, StoredMessage, UserId,
};
use crate::policy;
use crate::ports::Directory;
use crate::store::ChatStorage;

const DEFAULT_PAGE: u32 = 100;
const DEFAULT_CONVERSATIONS: u32 = 50;
const MAX_CONVERSATIONS: u32 = 200;

pub struct Chat {
    store: Arc<dyn ChatStorage>,
    directory: Arc<dyn Directory>,
    bus: SharedBus,
    clock: SharedClock,
    ids: Arc<IdGen>,
    max_pull_page: u32,
    /// How long a group invitation waits for its invitee.
    invitation_ttl_ms: i64,
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
            invitation_ttl_ms: policy::INVITATION_TTL_MS,
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

    /// The room with group invitations waiting `ttl_ms` (1 ms or more)
    /// instead of [`policy::INVITATION_TTL_MS`].
    pub fn with_invitation_ttl_ms(self, ttl_ms: i64) -> Self {
        Self {
            invitation_ttl_ms: ttl_ms.max(1),
            ..self
        }
    }

    /// Validates, appends durably, and only then publishes the message to the
    /// recipient and to the sender's other devices: not to the connection it
    /// came from (`origin`), whose copy is the ack.
    #[tracing::instrument(skip_all, fields(sender = sender.0))]
    pub async fn send(
        &self,
        sender: UserId,
        origin: Origin,
        mut request: SendMessage,
    ) -> Result<SendAck, ChatError> {
        let body = policy::check_body(request.body.take())?;
        policy::check_client_msg_id(&request.client_msg_id)?;
        let named: Option<ConversationId> = match request.conversation_id.as_str() {
            "" => None,
            name => Some(name.parse().map_err(|_| ChatError::UnknownConversation)?),
        };
        if let Some(ConversationId::Group(group)) = named {
            return self
                .send_to_group(sender, origin, group, request, body)
                .await;
        }
        let recipient = Some(UserId(request.to_user)).filter(|u| u.0 != 0);
        let (conversation, peer) = self.resolve(sender, named, recipient).await?;
        let started = std::time::Instant::now();
        let appended = self
            .store
            .append(NewMessage {
                conversation,
                sender,
                members: [sender, peer],
                client_msg_id: request.client_msg_id.clone(),
                message_id: self.ids.next(),
                server_time_ms: self.clock.now_ms(),
                body: body.encode_to_vec(),
                fence: origin.fence,
            })
            .await?;
        self.append_seconds.observe(started.elapsed().as_secs_f64());
        if let Some(message) = self.stored(&appended, sender, request, body) {
            let kind = event::Kind::Message(message);
            self.publish_to_users(&[peer, sender], origin.connection, kind);
        }
        Ok(ack_of(appended))
    }

    /// A group message is stored once and published once, on the group's topic.
    async fn send_to_group(
        &self,
        sender: UserId,
        origin: Origin,
        group: GroupId,
        request: SendMessage,
        body: MessageBody,
    ) -> Result<SendAck, ChatError> {
        let mentions = Mentions {
            all: request.mention_all,
            users: request.mentions.iter().copied().map(UserId).collect(),
        };
        policy::check_mention_count(&mentions)?;
        let started = std::time::Instant::now();
        let appended = self
            .store
            .append_group(NewGroupMessage {
                group,
                sender,
                client_msg_id: request.client_msg_id.clone(),
                message_id: self.ids.next(),
                server_time_ms: self.clock.now_ms(),
                body: body.encode_to_vec(),
                mentions,
                fence: origin.fence,
            })
            .await?;
        self.append_seconds.observe(started.elapsed().as_secs_f64());
        if let Some(message) = self.stored(&appended, sender, request, body) {
            self.publish(
                Topic::Group(group),
                bus_envelope::Kind::Event(Event {
                    kind: Some(event::Kind::Message(message)),
                }),
                origin.connection,
            );
        }
        Ok(ack_of(appended))
    }

    /// Counts the outcome of an append; the message to publish when it is new.
    fn stored(
        &self,
        appended: &Appended,
        sender: UserId,
        request: SendMessage,
        body: MessageBody,
    ) -> Option<Message> {
        if appended.duplicate {
            self.duplicates.inc();
            return None;
        }
        self.sends.inc();
        let stored = StoredMessage {
            conversation: appended.conversation,
            seq: appended.seq,
            message_id: appended.message_id,
            sender,
            server_time_ms: appended.server_time_ms,
            client_msg_id: request.client_msg_id,
            body: Vec::new(),
            mentions: appended.mentions.clone(),
        };
        Some(message(stored, Some(body)))
    }

    /// The highest fencing number the store has accepted for a shard of
    /// conversations (0 if none); the next lease of the shard starts above it.
    pub async fn fence_mark(&self, shard: u32) -> Result<u64, ChatError> {
        Ok(self.store.fence_mark(shard).await?)
    }

    /// The caller's conversations, most recent activity first.
    pub async fn conversations(
        &self,
        user: UserId,
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
                format!("{}:{}", last.last_activity_ms, last.conversation)
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
        user: UserId,
        conversation_id: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<MessagePage, ChatError> {
        // A member of a group sees messages from the time they joined.
        let (conversation, visible_after) = self.require_member(user, conversation_id).await?;
        let group = conversation.group();
        let after_seq = after_seq.max(visible_after);
        let limit = match limit {
            0 => DEFAULT_PAGE.min(self.max_pull_page),
            n => n.min(self.max_pull_page),
        };
        // One extra row tells whether another page follows, without a count.
        let mut rows = self
            .store
            .messages_after(conversation, after_seq, limit.saturating_add(1))
            .await?;
        let mut rejoined = false;
        if let Some(group) = group {
            // Asked again after reading: whoever was removed meanwhile gets
            // nothing, and whoever left and rejoined only their new span.
            let joined_seq = self.group(group, user).await?.1.joined_seq;
            let read = rows.len();
            rows.retain(|m| m.seq > joined_seq);
            // What was dropped was counted against the page: more may follow.
            rejoined = rows.len() < read;
        }
        let mut has_more = rejoined || rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let mut messages: Vec<Message> = rows.into_iter().map(message_of).collect();
        let sizes = messages
            .iter()
            .map(|m| m.body.as_ref().map_or(0, policy::content_bytes));
        if let Some(cut) = policy::page_cut(sizes) {
            messages.truncate(cut);
            has_more = true;
        }
        Ok(MessagePage {
            conversation_id: conversation.to_string(),
            messages,
            has_more,
        })
    }

    /// Moves the read mark forward and tells the reader's other devices and,
    /// in a one-to-one chat, the peer. Group read marks are private, as in the
    /// apps people know: a receipt to thousands of members per read would cost
    /// more than the message.
    pub async fn mark_read(
        &self,
        user: UserId,
        origin: Origin,
        conversation_id: &str,
        seq: u64,
    ) -> Result<ReadAck, ChatError> {
        let (conversation, _) = self.require_member(user, conversation_id).await?;
        let read_seq = self
            .store
            .mark_read(user, conversation, seq, origin.fence)
            .await?
            .ok_or(ChatError::UnknownConversation)?;
        let receipt = ReadReceipt {
            conversation_id: conversation.to_string(),
            reader: user.0,
            read_seq,
        };
        let mut readers = vec![user];
        readers.extend(conversation.peer_of(user));
        let kind = event::Kind::ReadReceipt(receipt);
        self.publish_to_users(&readers, origin.connection, kind);
        Ok(ReadAck {
            conversation_id: conversation.to_string(),
            read_seq,
        })
    }

    /// The one-to-one conversation a send goes to, and the peer: named, or
    /// to be made with `recipient`, who must exist.
    async fn resolve(
        &self,
        sender: UserId,
        named: Option<ConversationId>,
        recipient: Option<UserId>,
    ) -> Result<(ConversationId, UserId), ChatError> {
        let (conversation, peer) = match named {
            None => {
                let peer = recipient.ok_or(ChatError::UnknownRecipient)?;
                let conversation =
                    ConversationId::direct(sender, peer).ok_or(ChatError::InvalidRecipient)?;
                (conversation, peer)
            }
            Some(conversation) => {
                let peer = conversation
                    .peer_of(sender)
                    .ok_or(ChatError::UnknownConversation)?;
                if recipient.is_some_and(|r| r != peer) {
                    return Err(ChatError::UnknownConversation);
                }
                (conversation, peer)
            }
        };
        let exists = self
            .directory
            .user_exists(peer)
            .await
            .map_err(ChatError::Dependency)?;
        if !exists {
            let deleted = (self.directory.is_deleted(peer).await).map_err(ChatError::Dependency)?;
            return Err(match named {
                _ if deleted => ChatError::UserDeleted,
                None => ChatError::UnknownRecipient,
                Some(_) => ChatError::UnknownConversation,
            });
        }
        let allowed = (self.directory)
            .may_message(sender, peer)
            .await
            .map_err(ChatError::Dependency)?;
        if !allowed {
            return Err(ChatError::MessageRefused);
        }
        Ok((conversation, peer))
    }

    /// The conversation named on the wire, if `user` is in it. Membership of
    /// a one-to-one conversation follows from its id (one nobody has written
    /// to yet simply has no messages); of a group, from the store.
    /// For a group, also the seq after which the member sees messages.
    async fn require_member(
        &self,
        user: UserId,
        conversation_id: &str,
    ) -> Result<(ConversationId, u64), ChatError> {
        let conversation: ConversationId = conversation_id
            .parse()
            .map_err(|_| ChatError::UnknownConversation)?;
        let visible_after = match conversation {
            ConversationId::Group(group) => self.group(group, user).await?.1.joined_seq,
            ConversationId::Direct { .. } => {
                conversation
                    .peer_of(user)
                    .ok_or(ChatError::UnknownConversation)?;
                0
            }
        };
        Ok((conversation, visible_after))
    }

    /// One event to each user's topic, encoded once.
    fn publish_to_users(&self, users: &[UserId], origin: u64, kind: event::Kind) {
        let envelope = envelope(
            bus_envelope::Kind::Event(Event { kind: Some(kind) }),
            origin,
        );
        for &user in users {
            self.bus
                .publish(&Topic::User(user).to_string(), envelope.clone());
        }
    }

    /// Publishes on `topic`; `origin` (or 0) is the connection whose request
    /// caused it, which is not sent it.
    fn publish(&self, topic: Topic, kind: bus_envelope::Kind, origin: u64) {
        self.bus.publish(&topic.to_string(), envelope(kind, origin));
    }
}

fn envelope(kind: bus_envelope::Kind, origin: u64) -> Bytes {
    Bytes::from(
        BusEnvelope {
            kind: Some(kind),
            origin,
        }
        .encode_to_vec(),
    )
}

fn ack_of(appended: Appended) -> SendAck {
    SendAck {
        conversation_id: appended.conversation.to_string(),
        seq: appended.seq,
        server_time_ms: appended.server_time_ms,
        message_id: appended.message_id,
        duplicate: appended.duplicate,
    }
}

fn parse_cursor(cursor: &str) -> Result<Option<InboxCursor>, ChatError> {
    if cursor.is_empty() {
        return Ok(None);
    }
    let (ms, id) = cursor.split_once(':').ok_or(ChatError::InvalidCursor)?;
    Ok(Some(InboxCursor {
        last_activity_ms: ms.parse().map_err(|_| ChatError::InvalidCursor)?,
        conversation: id.parse().map_err(|_| ChatError::InvalidCursor)?,
    }))
}

fn conversation_of(e: InboxEntry) -> Conversation {
    Conversation {
        conversation_id: e.conversation.to_string(),
        peer: e.peer.map_or(0, |p| p.0),
        last_seq: e.last_seq,
        read_seq: e.read_seq,
        unread: e.unread,
        last_activity_ms: e.last_activity_ms,
        peer_read_seq: e.peer_read_seq,
        group_id: e.group.as_ref().map_or(0, |g| g.group.0),
        name: e.group.as_ref().map(|g| g.name.clone()).unwrap_or_default(),
        member_count: e.group.as_ref().map_or(0, |g| g.member_count),
        mentioned: e.mentioned,
    }
}

fn message_of(m: StoredMessage) -> Message {
    // Bodies were encoded by this server; a decode failure means corruption,
    // which a client sees as an empty body rather than a dropped message.
    let body = MessageBody::decode(m.body.as_slice()).ok();
    message(m, body)
}

/// The wire form of a stored message, with its body already decoded.
fn message(m: StoredMessage, body: Option<MessageBody>) -> Message {
    Message {
        conversation_id: m.conversation.to_string(),
        seq: m.seq,
        message_id: m.message_id,
        sender: m.sender.0,
        server_time_ms: m.server_time_ms,
        client_msg_id: m.client_msg_id,
        mention_all: m.mentions.all,
        mentions: m.mentions.users.iter().map(|u| u.0).collect(),
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        assert_eq!(parse_cursor("").unwrap(), None);
        assert_eq!(
            parse_cursor("12:d.1.2").unwrap(),
            Some(InboxCursor {
                last_activity_ms: 12,
                conversation: "d.1.2".parse().unwrap()
            })
        );
        for bad in ["x:d.1.2", "12", "12:", "12:d.2.1", "12:g."] {
            assert!(parse_cursor(bad).is_err(), "{bad}");
        }
    }
}
