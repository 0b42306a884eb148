//! Messages the server writes into a conversation (a call's record, a
//! transfer's or a red packet's card): a `special` body stored through the
//! same path as a send, so it takes the conversation's next `seq`, is
//! acknowledged only once durable, is idempotent on its key, and is
//! published as any message is.

use prost::Message as _;
use superapp_proto::Topic;
use superapp_proto::v1::{
    Event, MessageBody, SendAck, SendMessage, Special, bus_envelope, event, message_body::Content,
};

use super::{Chat, ack_of};
use crate::ChatError;
use crate::model::{
    ConversationId, GroupId, Mentions, NewGroupMessage, NewMessage, Reach, SendVerdict, UserId,
};

/// Longest idempotency key: as a client's `client_msg_id`.
const MAX_KEY_BYTES: usize = 64;

impl Chat {
    /// Stores `special` as a message of `sender` in the one-to-one
    /// `conversation`, with `fallback` for clients that do not know its
    /// type, and publishes it to both sides. `key` makes it idempotent: a
    /// second append with the same key (say `call:<id>`) stores nothing and
    /// answers the first ack, `duplicate` set.
    ///
    /// The social graph decides who sees it as it decides for a message,
    /// except that nothing is refused: what the recipient would not take
    /// (they block the sender, or take messages from friends only) is
    /// stored withheld from them and shown to the sender alone.
    ///
    /// Only one-to-one conversations: a group's appends pass its mutes and
    /// slow mode, which a server-written notice must not (a member's own
    /// card in a group goes through [`Chat::append_group_special`]).
    pub async fn append_special(
        &self,
        sender: UserId,
        conversation: ConversationId,
        special: Special,
        fallback: String,
        key: &str,
    ) -> Result<SendAck, ChatError> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(ChatError::InvalidClientMsgId);
        }
        let peer = match conversation {
            ConversationId::Direct { .. } => conversation
                .peer_of(sender)
                .ok_or(ChatError::UnknownConversation)?,
            ConversationId::Group(_) => {
                return Err(ChatError::Invalid {
                    code: "invalid_conversation",
                    reason: "server-written messages go to one-to-one conversations",
                });
            }
        };
        let mut verdict = (self.directory)
            .send_verdict(sender, peer)
            .await
            .map_err(ChatError::Dependency)?;
        if verdict.reach == Reach::Refused {
            verdict = SendVerdict {
                reach: Reach::Withheld,
                ..verdict
            };
        }
        let body = MessageBody {
            content: Some(Content::Special(special)),
            fallback,
        };
        let appended = self
            .store
            .append(NewMessage {
                conversation,
                sender,
                members: [sender, peer],
                client_msg_id: key.to_string(),
                message_id: self.ids.next(),
                server_time_ms: self.clock.now_ms(),
                body: body.encode_to_vec(),
                // Written by the server on whichever node owns the call, not
                // under a gateway's shard lease: in the medium tier one core
                // owns every shard (docs/architecture.md §24).
                fence: None,
                withheld: verdict.reach == Reach::Withheld,
            })
            .await?;
        let request = SendMessage {
            client_msg_id: key.to_string(),
            ..SendMessage::default()
        };
        if let Some(message) = self.stored(&appended, sender, request, body) {
            self.publish_direct(message, sender, peer, verdict, 0);
        }
        Ok(ack_of(appended))
    }

    /// Stores `special` in `group` as a message its member `sender` sent
    /// (a red packet's card): as a member's send, it needs membership and
    /// passes the group's mutes and slow mode, and is published on the
    /// group's topic. `key` makes it idempotent, as for
    /// [`Chat::append_special`].
    pub async fn append_group_special(
        &self,
        sender: UserId,
        group: GroupId,
        special: Special,
        fallback: String,
        key: &str,
    ) -> Result<SendAck, ChatError> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(ChatError::InvalidClientMsgId);
        }
        let body = MessageBody {
            content: Some(Content::Special(special)),
            fallback,
        };
        let appended = self
            .store
            .append_group(NewGroupMessage {
                group,
                sender,
                client_msg_id: key.to_string(),
                message_id: self.ids.next(),
                server_time_ms: self.clock.now_ms(),
                body: body.encode_to_vec(),
                mentions: Mentions::default(),
                fence: None,
            })
            .await?;
        let request = SendMessage {
            client_msg_id: key.to_string(),
            ..SendMessage::default()
        };
        if let Some(message) = self.stored(&appended, sender, request, body) {
            self.publish(
                Topic::Group(group),
                bus_envelope::Kind::Event(Event {
                    kind: Some(event::Kind::Message(message)),
                }),
                0,
            );
        }
        Ok(ack_of(appended))
    }
}
