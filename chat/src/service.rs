//! The chat operations the edge calls: each validates its input, applies the
//! room's rules ([`crate::policy`]), calls the store, and only after a
//! durable write publishes events on the bus.
//!
//! A message of a kind other than text is completed before it is stored
//! ([`Chat::complete`]): the media it references must be the sender's to
//! use and of the kind its place wants, a contact card one the sender may
//! share; the server writes the media's facts, the card's name and avatar,
//! and the fallback text. [`Chat::message_media`] answers the media room
//! which objects a message a viewer may see references.

mod groups;
#[cfg(test)]
mod kinds_tests;

mod special;

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
    ReadReceipt, SendAck, SendMessage, bus_envelope, event, message_body,
};

use crate::ChatError;
use crate::model::{
    Appended, ConversationId, GroupId, InboxCursor, InboxEntry, Mentions, NewGroupMessage,
    NewMessage, Origin, Reach, SendVerdict, StoredMessage, UserId, View,
};
use crate::policy;
use crate::ports::{Directory, MediaLibrary};
use crate::store::ChatStorage;

const DEFAULT_PAGE: u32 = 100;
const DEFAULT_CONVERSATIONS: u32 = 50;
const MAX_CONVERSATIONS: u32 = 200;

pub struct Chat {
    store: Arc<dyn ChatStorage>,
    directory: Arc<dyn Directory>,
    /// None until the binary wires the media room: every media kind is then
    /// refused (`media_refused`), as media nobody could have uploaded.
    media: Option<Arc<dyn MediaLibrary>>,
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
            media: None,
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

    /// The room with the media room's library: messages may reference
    /// media (None: no media kind is taken).
    pub fn with_media(self, media: Option<Arc<dyn MediaLibrary>>) -> Self {
        Self { media, ..self }
    }

    /// Validates, appends durably, and only then publishes the message to the
    /// recipient and to the sender's other devices: not to the connection it
    /// came from (`origin`), whose copy is the ack. A message withheld from
    /// its recipient (who blocks the sender) is acknowledged and published
    /// to the sender's devices alone, as if delivered.
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
        let (conversation, peer, verdict) = self.resolve(sender, named, recipient).await?;
        let withheld = verdict.reach == Reach::Withheld;
        let body = self.complete(sender, body).await?;
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
                withheld,
            })
            .await?;
        self.append_seconds.observe(started.elapsed().as_secs_f64());
        self.attach(&appended, &body).await;
        if let Some(message) = self.stored(&appended, sender, request, body) {
            self.publish_direct(message, sender, peer, verdict, origin.connection);
        }
        Ok(ack_of(appended))
    }

    /// Publishes a new one-to-one message to the recipient (unless it is
    /// withheld from them) and to the sender's other devices, each copy
    /// marked `hidden` when its side hides the other. Encoded once when
    /// both copies are alike, as nearly always.
    fn publish_direct(
        &self,
        message: Message,
        sender: UserId,
        peer: UserId,
        verdict: SendVerdict,
        origin: u64,
    ) {
        let withheld = verdict.reach == Reach::Withheld;
        if !withheld && verdict.recipient_hides == verdict.sender_hides {
            let kind = event::Kind::Message(Message {
                hidden: verdict.sender_hides,
                ..message
            });
            self.publish_to_users(&[peer, sender], origin, kind);
            return;
        }
        if !withheld {
            let theirs = Message {
                hidden: verdict.recipient_hides,
                ..message.clone()
            };
            self.publish_to_users(&[peer], origin, event::Kind::Message(theirs));
        }
        let mine = Message {
            hidden: verdict.sender_hides,
            ..message
        };
        self.publish_to_users(&[sender], origin, event::Kind::Message(mine));
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
        let body = self.complete(sender, body).await?;
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
        self.attach(&appended, &body).await;
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

    /// Completes a checked body before it is stored: each media object it
    /// references must be one `sender` may use and of the kind its place
    /// wants, and gives the body its facts ([`policy::kinds::apply_media`]);
    /// a contact card must be one `sender` may share, and gets the name and
    /// avatar they see; every kind but text gets its fallback.
    async fn complete(
        &self,
        sender: UserId,
        mut body: MessageBody,
    ) -> Result<MessageBody, ChatError> {
        let ids: Vec<String> = policy::kinds::media_refs(&body)
            .iter()
            .map(|r| r.id.to_owned())
            .collect();
        if !ids.is_empty() {
            let media = self.media.as_ref().ok_or(ChatError::MediaRefused)?;
            let facts = (media.usable(sender, ids).await).map_err(ChatError::Dependency)?;
            policy::kinds::apply_media(&mut body, &facts)?;
        }
        if let Some(message_body::Content::ContactCard(card)) = &mut body.content {
            let shown = (self.directory)
                .card(sender, UserId(card.user_id))
                .await
                .map_err(ChatError::Dependency)?;
            (card.display_name, card.avatar_url) = shown.ok_or(ChatError::CardRefused)?;
        }
        body.fallback = policy::fallback(&body);
        Ok(body)
    }

    /// Tells the media room that a new message references its objects.
    /// A failure is logged and the send still succeeds: the message is
    /// durable and acknowledged by then, and the media room collects an
    /// object nothing references only after a grace period, far longer than
    /// it takes a client to send a message with what it uploaded, so the
    /// reference missed here costs at worst an object collected early from
    /// a message whose sender may upload it again; failing the send would
    /// instead answer an error for a message that is stored.
    async fn attach(&self, appended: &Appended, body: &MessageBody) {
        let (Some(media), false) = (&self.media, appended.duplicate) else {
            return;
        };
        let ids: Vec<String> = policy::kinds::media_refs(body)
            .iter()
            .map(|r| r.id.to_owned())
            .collect();
        if ids.is_empty() {
            return;
        }
        let referrer = format!("m:{}:{}", appended.conversation, appended.seq);
        if let Err(error) = media.attach(ids, referrer).await {
            tracing::warn!(
                conversation = %appended.conversation,
                seq = appended.seq,
                %error,
                "media references not recorded"
            );
        }
    }

    /// The media the message at `seq` of `conversation_id` references (each
    /// id with its file name, for a file), in the order of
    /// [`policy::kinds::media_refs`], when `viewer` may see that message
    /// exactly as a pull shows it: a member of the group since before it,
    /// not kept from them by a block, a party to the one-to-one
    /// conversation it was not withheld from. None when they may not, or
    /// there is no such message, alike.
    pub async fn message_media(
        &self,
        viewer: UserId,
        conversation_id: &str,
        seq: u64,
    ) -> Result<Option<Vec<(String, Option<String>)>>, ChatError> {
        let (conversation, visible_after) = match self.require_member(viewer, conversation_id).await
        {
            Ok(found) => found,
            Err(
                ChatError::UnknownConversation | ChatError::UnknownGroup | ChatError::NotMember,
            ) => return Ok(None),
            Err(e) => return Err(e),
        };
        if seq <= visible_after {
            return Ok(None);
        }
        let view = match conversation.group() {
            Some(_) => self.view(viewer).await?,
            None => nothing_hidden(),
        };
        let rows = self.store.messages_after(conversation, seq - 1, 1).await?;
        let Some(row) = rows.into_iter().find(|m| m.seq == seq) else {
            return Ok(None);
        };
        if !policy::shows(viewer, &view, &row) {
            return Ok(None);
        }
        // Bodies were encoded by this server: one that does not decode
        // (corruption) references nothing a client could be shown.
        let Ok(body) = MessageBody::decode(row.body.as_slice()) else {
            return Ok(Some(Vec::new()));
        };
        let refs = policy::kinds::media_refs(&body);
        let media = refs
            .iter()
            .map(|r| (r.id.to_owned(), r.name.map(str::to_owned)))
            .collect();
        Ok(Some(media))
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
            hidden_from: None,
        };
        Some(message(stored, Some(body)))
    }

    /// The highest fencing number the store has accepted for a shard of
    /// conversations (0 if none); the next lease of the shard starts above it.
    pub async fn fence_mark(&self, shard: u32) -> Result<u64, ChatError> {
        Ok(self.store.fence_mark(shard).await?)
    }

    /// The caller's conversations, most recent activity first, as the
    /// caller sees them: without the conversations of the friends they
    /// hide, and with the last message and unread count of what they see.
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
        let view = self.view(user).await?;
        let page = self.store.inbox(user, cursor, limit, view).await?;
        let next_cursor = page.next.map_or_else(String::new, |next| {
            format!("{}:{}", next.last_activity_ms, next.conversation)
        });
        Ok(ConversationPage {
            conversations: page.entries.into_iter().map(conversation_of).collect(),
            next_cursor,
        })
    }

    /// What `user`'s view leaves out, from the social graph.
    async fn view(&self, user: UserId) -> Result<Arc<View>, ChatError> {
        self.directory
            .view(user)
            .await
            .map_err(ChatError::Dependency)
    }

    /// Messages after `after_seq` that the caller sees, ascending;
    /// `has_more` says whether to pull again, `through_seq` from where.
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
        // A one-to-one message carries whom it was withheld from; a group's
        // are filtered by the times of the caller's blocks.
        let view = match group {
            Some(_) => self.view(user).await?,
            None => nothing_hidden(),
        };
        let mut read = self
            .read_seen(user, &view, conversation, after_seq, limit)
            .await?;
        if let Some(group) = group {
            // Asked again after reading: whoever was removed meanwhile gets
            // nothing, and whoever left and rejoined only their new span.
            let joined_seq = self.group(group, user).await?.1.joined_seq;
            let before = read.shown.len();
            read.shown.retain(|m| m.seq > joined_seq);
            // What was dropped was counted against the page: more may follow.
            if read.shown.len() < before {
                read.more = true;
                read.through = read.through.max(joined_seq);
            }
        }
        let seen = read.shown.len();
        let mut has_more = read.more || seen > limit as usize;
        read.shown.truncate(limit as usize);
        let mut messages: Vec<Message> = read.shown.into_iter().map(message_of).collect();
        let sizes = messages
            .iter()
            .map(|m| m.body.as_ref().map_or(0, policy::content_bytes));
        if let Some(cut) = policy::page_cut(sizes) {
            messages.truncate(cut);
            has_more = true;
        }
        // A page that returns all it kept accounts for every row read,
        // those passed over included; one cut short, up to its last message.
        let through_seq = match messages.last() {
            Some(last) if messages.len() < seen => last.seq,
            _ => read.through,
        };
        Ok(MessagePage {
            conversation_id: conversation.to_string(),
            messages,
            has_more,
            through_seq: through_seq.max(after_seq),
        })
    }

    /// Reads the conversation after `after_seq` and keeps what `user` sees
    /// ([`policy::shows`]), reading on past what they do not see until it
    /// holds more than `limit`, the conversation ends, or
    /// [`policy::MAX_PULL_SCAN`] rows were read. One read of `limit + 1`
    /// rows, as ever, when nothing is filtered.
    async fn read_seen(
        &self,
        user: UserId,
        view: &View,
        conversation: ConversationId,
        after_seq: u64,
        limit: u32,
    ) -> Result<SeenRead, ChatError> {
        let batch = limit.saturating_add(1);
        let mut read = SeenRead {
            shown: Vec::new(),
            through: after_seq,
            more: false,
        };
        let mut scanned = 0;
        loop {
            let rows = self
                .store
                .messages_after(conversation, read.through, batch)
                .await?;
            let ended = rows.len() < batch as usize;
            scanned += rows.len();
            for row in rows {
                read.through = row.seq;
                if policy::shows(user, view, &row) {
                    read.shown.push(row);
                }
            }
            if read.shown.len() > limit as usize {
                break;
            }
            if ended {
                break;
            }
            if scanned >= policy::MAX_PULL_SCAN {
                read.more = true;
                break;
            }
        }
        Ok(read)
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

    /// The one-to-one conversation a send goes to, the peer, and what the
    /// social graph says becomes of the message: named, or to be made with
    /// `recipient`, who must exist.
    async fn resolve(
        &self,
        sender: UserId,
        named: Option<ConversationId>,
        recipient: Option<UserId>,
    ) -> Result<(ConversationId, UserId, SendVerdict), ChatError> {
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
        let verdict = (self.directory)
            .send_verdict(sender, peer)
            .await
            .map_err(ChatError::Dependency)?;
        if verdict.reach == Reach::Refused {
            return Err(ChatError::MessageRefused);
        }
        Ok((conversation, peer, verdict))
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

/// The view of someone whose view filters nothing, shared.
fn nothing_hidden() -> Arc<View> {
    static EMPTY: std::sync::OnceLock<Arc<View>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Arc::default).clone()
}

/// What [`Chat::read_seen`] read: the messages the caller sees, and the
/// seq up to which it read.
struct SeenRead {
    shown: Vec<StoredMessage>,
    /// The last seq read (the seq read after, when nothing was).
    through: u64,
    /// It stopped at the scan's bound with more left to read.
    more: bool,
}

fn envelope(kind: bus_envelope::Kind, origin: u64) -> Bytes {
    Bytes::from(
        BusEnvelope {
            target: 0,
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
        hidden: false,
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng as _, SeedableRng as _};
    use superapp_kit::bus::{Bus as _, BusMessage, InProcessBus};
    use superapp_kit::clock::ManualClock;
    use superapp_kit::metrics::Registry;
    use superapp_proto::v1::message_body::Content;

    use super::*;
    use crate::SqliteChatStore;
    use crate::model::{NewGroup, Span};
    use crate::store::GroupStore as _;
    use crate::test_graph::Graph;

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

    struct Setup {
        chat: Chat,
        store: Arc<SqliteChatStore>,
        graph: Arc<Graph>,
        bus: Arc<InProcessBus>,
        _dir: tempfile::TempDir,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteChatStore::open(&dir.path().join("chat.db"), None).unwrap());
        let graph = Arc::new(Graph::default());
        let bus = Arc::new(InProcessBus::new());
        let clock = Arc::new(ManualClock::new(1_000));
        let ids = Arc::new(IdGen::new(0, clock.clone()));
        let chat = Chat::new(
            store.clone(),
            graph.clone(),
            bus.clone(),
            clock,
            ids,
            500,
            &Registry::new(),
        );
        Setup {
            chat,
            store,
            graph,
            bus,
            _dir: dir,
        }
    }

    fn text(to: u64, cmid: &str) -> SendMessage {
        SendMessage {
            client_msg_id: cmid.into(),
            to_user: to,
            body: Some(MessageBody {
                content: Some(Content::Text("hi".into())),
                ..MessageBody::default()
            }),
            ..SendMessage::default()
        }
    }

    /// The message events published on a topic so far.
    fn heard(events: &mut tokio::sync::mpsc::Receiver<BusMessage>) -> Vec<Message> {
        let mut out = Vec::new();
        while let Ok(BusMessage::Message { payload, .. }) = events.try_recv() {
            let envelope = BusEnvelope::decode(payload).unwrap();
            if let Some(bus_envelope::Kind::Event(Event {
                kind: Some(event::Kind::Message(m)),
            })) = envelope.kind
            {
                out.push(m);
            }
        }
        out
    }

    #[tokio::test]
    async fn a_withheld_message_is_acknowledged_and_reaches_the_sender_s_devices_alone() {
        let s = setup();
        let (mine, mut my_events) = s.bus.subscriber(16);
        mine.subscribe("u.1");
        let (theirs, mut their_events) = s.bus.subscriber(16);
        theirs.subscribe("u.2");
        *s.graph.verdict.lock().unwrap() = Some(SendVerdict {
            reach: Reach::Withheld,
            ..SendVerdict::DELIVERED
        });
        let origin = Origin::default();
        let ack = s.chat.send(UserId(1), origin, text(2, "a")).await.unwrap();
        assert_eq!(ack.seq, 1);
        assert_eq!(heard(&mut my_events).len(), 1, "the sender's other devices");
        assert!(
            heard(&mut their_events).is_empty(),
            "the recipient hears nothing"
        );
        let theirs_pulled = s.chat.pull(UserId(2), "d.1.2", 0, 0).await.unwrap();
        assert!(theirs_pulled.messages.is_empty());
        assert_eq!(theirs_pulled.through_seq, 1, "nothing to pull again");
        let mine_pulled = s.chat.pull(UserId(1), "d.1.2", 0, 0).await.unwrap();
        assert_eq!(mine_pulled.messages.len(), 1);
        let theirs_listed = s.chat.conversations(UserId(2), 0, "").await.unwrap();
        assert!(theirs_listed.conversations.is_empty());

        // Delivered again once the graph says so; the first stays withheld.
        *s.graph.verdict.lock().unwrap() = None;
        s.chat.send(UserId(1), origin, text(2, "b")).await.unwrap();
        let pulled = s.chat.pull(UserId(2), "d.1.2", 0, 0).await.unwrap();
        let seqs: Vec<u64> = pulled.messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, [2]);
        let listed = s.chat.conversations(UserId(2), 0, "").await.unwrap();
        assert_eq!(
            (
                listed.conversations[0].last_seq,
                listed.conversations[0].unread
            ),
            (2, 1)
        );
        assert_eq!(heard(&mut their_events).len(), 1);
    }

    #[tokio::test]
    async fn each_side_s_copy_says_whether_that_side_hides_the_conversation() {
        let s = setup();
        let (mine, mut my_events) = s.bus.subscriber(16);
        mine.subscribe("u.1");
        let (theirs, mut their_events) = s.bus.subscriber(16);
        theirs.subscribe("u.2");
        for (recipient_hides, sender_hides) in [(true, false), (false, true), (true, true)] {
            *s.graph.verdict.lock().unwrap() = Some(SendVerdict {
                recipient_hides,
                sender_hides,
                ..SendVerdict::DELIVERED
            });
            let cmid = format!("{recipient_hides}{sender_hides}");
            s.chat
                .send(UserId(1), Origin::default(), text(2, &cmid))
                .await
                .unwrap();
            let (mine, theirs) = (heard(&mut my_events), heard(&mut their_events));
            assert_eq!((mine.len(), theirs.len()), (1, 1));
            assert_eq!(
                (theirs[0].hidden, mine[0].hidden),
                (recipient_hides, sender_hides)
            );
        }
        // A hidden peer's conversation is left out of the list, not the store.
        let view = View {
            hidden: [UserId(1)].into(),
            ..View::default()
        };
        s.graph
            .views
            .lock()
            .unwrap()
            .insert(UserId(2), Arc::new(view));
        let listed = s.chat.conversations(UserId(2), 0, "").await.unwrap();
        assert!(listed.conversations.is_empty());
        let pulled = s.chat.pull(UserId(2), "d.1.2", 0, 0).await.unwrap();
        assert_eq!(pulled.messages.len(), 3);
    }

    /// Pulls every message `user` sees in `conversation` from the start,
    /// `limit` at a time, following `through_seq` as a client does.
    async fn pull_all(chat: &Chat, user: UserId, conversation: &str, limit: u32) -> Vec<u64> {
        let (mut known, mut seqs) = (0, Vec::new());
        for _ in 0..10_000 {
            let page = chat.pull(user, conversation, known, limit).await.unwrap();
            assert!(page.through_seq >= known, "through_seq never goes back");
            for m in &page.messages {
                assert!(m.seq > known && m.seq <= page.through_seq);
                seqs.push(m.seq);
            }
            known = page.through_seq;
            if !page.has_more {
                return seqs;
            }
        }
        panic!("pulling never ended");
    }

    #[tokio::test]
    async fn pulls_following_through_seq_get_exactly_what_each_member_sees() {
        let s = setup();
        let people: Vec<UserId> = (1..=4).map(UserId).collect();
        let group = NewGroup {
            group: GroupId(1),
            name: "g".into(),
            avatar: String::new(),
            owner: UserId(1),
            members: people[1..].to_vec(),
            asked: Default::default(),
            now_ms: 1,
        };
        s.store.create_group(group).await.unwrap();
        let mut rng = StdRng::seed_from_u64(7);
        // Senders and times of the group's messages, by seq.
        let mut sent = Vec::new();
        for i in 0..400 {
            let sender = people[rng.random_range(0..people.len())];
            // Runs of one sender, so that filtered runs are long.
            let repeat = if rng.random_bool(0.1) { 30 } else { 1 };
            for j in 0..repeat {
                let t = 10 + sent.len() as i64;
                s.store
                    .append_group(NewGroupMessage {
                        group: GroupId(1),
                        sender,
                        client_msg_id: format!("{i}.{j}"),
                        message_id: t as u64,
                        server_time_ms: t,
                        body: b"x".to_vec(),
                        mentions: Mentions::default(),
                        fence: None,
                    })
                    .await
                    .unwrap();
                sent.push((sender, t));
            }
        }
        let horizon = 10 + sent.len() as i64;
        for &viewer in &people {
            let mut view = View::default();
            for &other in people.iter().filter(|&&p| p != viewer) {
                let from_ms = rng.random_range(0..horizon);
                let until_ms = rng.random_range(from_ms..horizon + 50);
                view.blocked.insert(other, vec![Span { from_ms, until_ms }]);
            }
            let expected: Vec<u64> = (sent.iter().enumerate())
                .filter(|(_, (sender, t))| !policy::blocked_at(&view, *sender, *t))
                .map(|(i, _)| i as u64 + 1)
                .collect();
            s.graph.views.lock().unwrap().insert(viewer, Arc::new(view));
            for limit in [1, 3, 50, 500] {
                let got = pull_all(&s.chat, viewer, "g.1", limit).await;
                assert_eq!(got, expected, "{viewer:?} pulling {limit} at a time");
            }
        }
    }

    #[tokio::test]
    async fn a_long_run_of_hidden_messages_is_passed_over_within_a_bounded_read() {
        let s = setup();
        let group = NewGroup {
            group: GroupId(1),
            name: "g".into(),
            avatar: String::new(),
            owner: UserId(1),
            members: vec![UserId(2)],
            asked: Default::default(),
            now_ms: 1,
        };
        s.store.create_group(group).await.unwrap();
        let count = policy::MAX_PULL_SCAN + 100;
        for i in 0..=count {
            // The last message is the owner's; all before it are 2's.
            let sender = UserId(if i == count { 1 } else { 2 });
            s.store
                .append_group(NewGroupMessage {
                    group: GroupId(1),
                    sender,
                    client_msg_id: i.to_string(),
                    message_id: i as u64 + 1,
                    server_time_ms: 10,
                    body: b"x".to_vec(),
                    mentions: Mentions::default(),
                    fence: None,
                })
                .await
                .unwrap();
        }
        let view = View {
            blocked: [(
                UserId(2),
                vec![Span {
                    from_ms: 0,
                    until_ms: i64::MAX,
                }],
            )]
            .into(),
            ..View::default()
        };
        s.graph
            .views
            .lock()
            .unwrap()
            .insert(UserId(1), Arc::new(view));
        let first = s.chat.pull(UserId(1), "g.1", 0, 10).await.unwrap();
        assert!(first.messages.is_empty() && first.has_more);
        assert!(first.through_seq >= policy::MAX_PULL_SCAN as u64);
        let rest = s
            .chat
            .pull(UserId(1), "g.1", first.through_seq, 10)
            .await
            .unwrap();
        let seqs: Vec<u64> = rest.messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, [count as u64 + 1]);
        assert!(!rest.has_more);
    }
}
