//! The wire codecs as properties: every frame and envelope the server or a
//! client can build decodes from its encoding to itself, and whatever bytes
//! do decode encode to bytes that decode to the same message.

use proptest::prelude::*;
use prost::Message;
use superapp_proto::v1::{
    AuthClaims, AuthError, Authenticate, Blocking, BusEnvelope, ClientFrame, Conversation,
    ConversationPage, CoreRequest, CoreResponse, Error, Event, GroupEvent, Groups,
    ListConversations, MarkRead, Membership, Message as ChatMessage, MessageBody, MessagePage,
    Ping, Pong, PullMessages, ReadAck, ReadReceipt, RedeemTicket, Response, ResyncRequired,
    SendAck, SendMessage, ServerFrame, SessionLive, SessionRevoked, SessionStarted, UserGroups,
    UserRequest, bus_envelope, client_frame, core_request, core_response, event, message_body,
    response, server_frame,
};
use superapp_proto::v1::{ContactCard, File, Image, Location, Special, Video, Voice};

fn text() -> impl Strategy<Value = String> {
    any::<String>()
}

/// Every kind a body holds, the server's `special` among them, with any
/// values (the codec checks nothing; chat's policy does).
fn content() -> impl Strategy<Value = message_body::Content> {
    use message_body::Content;
    prop_oneof![
        text().prop_map(Content::Text),
        (text(), any::<u32>(), any::<u32>(), any::<u64>()).prop_map(
            |(media_id, width, height, size)| Content::Image(Image {
                media_id,
                width,
                height,
                size,
            })
        ),
        (text(), any::<u32>(), any::<u64>()).prop_map(|(media_id, duration_ms, size)| {
            Content::Voice(Voice {
                media_id,
                duration_ms,
                size,
            })
        }),
        (text(), any::<u32>(), text(), any::<(u32, u32, u64)>()).prop_map(
            |(media_id, duration_ms, poster_media_id, (width, height, size))| {
                Content::Video(Video {
                    media_id,
                    duration_ms,
                    poster_media_id,
                    width,
                    height,
                    size,
                })
            }
        ),
        (text(), text(), any::<u64>()).prop_map(|(media_id, name, size)| Content::File(File {
            media_id,
            name,
            size
        })),
        // Not NaN: NaN is not equal to itself, so it cannot round-trip by `==`.
        (
            any::<f64>().prop_filter("not NaN", |f| !f.is_nan()),
            any::<f64>().prop_filter("not NaN", |f| !f.is_nan()),
            text(),
            text()
        )
            .prop_map(|(latitude, longitude, name, address)| {
                Content::Location(Location {
                    latitude,
                    longitude,
                    name,
                    address,
                })
            }),
        (any::<u64>(), text(), text()).prop_map(|(user_id, display_name, avatar_url)| {
            Content::ContactCard(ContactCard {
                user_id,
                display_name,
                avatar_url,
            })
        }),
        (text(), proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(r#type, value)| Content::Special(Special { r#type, value })),
    ]
}

fn body() -> impl Strategy<Value = Option<MessageBody>> {
    proptest::option::of(
        (proptest::option::of(content()), text())
            .prop_map(|(content, fallback)| MessageBody { content, fallback }),
    )
}

fn ids() -> impl Strategy<Value = Vec<u64>> {
    proptest::collection::vec(any::<u64>(), 0..8)
}

fn request() -> impl Strategy<Value = client_frame::Request> {
    use client_frame::Request;
    prop_oneof![
        (text(), text(), any::<u64>(), body(), ids(), any::<bool>()).prop_map(
            |(client_msg_id, conversation_id, to_user, body, mentions, mention_all)| {
                Request::Send(SendMessage {
                    client_msg_id,
                    conversation_id,
                    to_user,
                    body,
                    mentions,
                    mention_all,
                })
            }
        ),
        (any::<u32>(), text()).prop_map(|(limit, cursor)| {
            Request::ListConversations(ListConversations { limit, cursor })
        }),
        (text(), any::<u64>(), any::<u32>()).prop_map(|(conversation_id, after_seq, limit)| {
            Request::Pull(PullMessages {
                conversation_id,
                after_seq,
                limit,
            })
        }),
        (text(), any::<u64>()).prop_map(|(conversation_id, seq)| Request::MarkRead(MarkRead {
            conversation_id,
            seq
        })),
        Just(Request::Ping(Ping {})),
    ]
}

fn client_frame() -> impl Strategy<Value = ClientFrame> {
    (any::<u64>(), proptest::option::of(request()))
        .prop_map(|(id, request)| ClientFrame { id, request })
}

fn error() -> impl Strategy<Value = Error> {
    (text(), text(), any::<u32>()).prop_map(|(code, message, retry_after_ms)| Error {
        code,
        message,
        retry_after_ms,
    })
}

fn chat_message() -> impl Strategy<Value = ChatMessage> {
    (
        (text(), any::<u64>(), any::<u64>(), any::<u64>()),
        (
            any::<i64>(),
            text(),
            body(),
            ids(),
            any::<bool>(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (conversation_id, seq, message_id, sender),
                (server_time_ms, client_msg_id, body, mentions, mention_all, hidden),
            )| ChatMessage {
                conversation_id,
                seq,
                message_id,
                sender,
                server_time_ms,
                client_msg_id,
                body,
                mentions,
                mention_all,
                hidden,
            },
        )
}

fn conversation() -> impl Strategy<Value = Conversation> {
    (
        (
            text(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        ),
        (
            any::<i64>(),
            any::<u64>(),
            any::<u64>(),
            text(),
            any::<u32>(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (conversation_id, peer, last_seq, read_seq, unread),
                (last_activity_ms, peer_read_seq, group_id, name, member_count, mentioned),
            )| Conversation {
                conversation_id,
                peer,
                last_seq,
                read_seq,
                unread,
                last_activity_ms,
                peer_read_seq,
                group_id,
                name,
                member_count,
                mentioned,
            },
        )
}

fn result() -> impl Strategy<Value = response::Result> {
    use response::Result;
    prop_oneof![
        error().prop_map(Result::Error),
        (
            text(),
            any::<u64>(),
            any::<i64>(),
            any::<u64>(),
            any::<bool>()
        )
            .prop_map(
                |(conversation_id, seq, server_time_ms, message_id, duplicate)| {
                    Result::SendAck(SendAck {
                        conversation_id,
                        seq,
                        server_time_ms,
                        message_id,
                        duplicate,
                    })
                }
            ),
        (proptest::collection::vec(conversation(), 0..4), text()).prop_map(
            |(conversations, next_cursor)| Result::Conversations(ConversationPage {
                conversations,
                next_cursor,
            })
        ),
        (
            text(),
            proptest::collection::vec(chat_message(), 0..4),
            any::<bool>(),
            any::<u64>()
        )
            .prop_map(|(conversation_id, messages, has_more, through_seq)| {
                Result::Messages(MessagePage {
                    conversation_id,
                    messages,
                    has_more,
                    through_seq,
                })
            }),
        (text(), any::<u64>()).prop_map(|(conversation_id, read_seq)| {
            Result::ReadAck(ReadAck {
                conversation_id,
                read_seq,
            })
        }),
        any::<i64>().prop_map(|server_time_ms| Result::Pong(Pong { server_time_ms })),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    (any::<u64>(), proptest::option::of(result())).prop_map(|(id, result)| Response { id, result })
}

fn event() -> impl Strategy<Value = Event> {
    use event::Kind;
    let kind = prop_oneof![
        chat_message().prop_map(Kind::Message),
        (text(), any::<u64>(), any::<u64>()).prop_map(|(conversation_id, reader, read_seq)| {
            Kind::ReadReceipt(ReadReceipt {
                conversation_id,
                reader,
                read_seq,
            })
        }),
        Just(Kind::ResyncRequired(ResyncRequired {})),
        // Any kind number, known or not: a client of an older version keeps it.
        (
            any::<u64>(),
            any::<i32>(),
            any::<u64>(),
            ids(),
            text(),
            any::<i64>()
        )
            .prop_map(|(group_id, kind, actor, users, text, value)| Kind::Group(
                GroupEvent {
                    group_id,
                    kind,
                    actor,
                    users,
                    text,
                    value,
                }
            )),
    ];
    proptest::option::of(kind).prop_map(|kind| Event { kind })
}

fn server_frame() -> impl Strategy<Value = ServerFrame> {
    use server_frame::Kind;
    proptest::option::of(prop_oneof![
        response().prop_map(Kind::Response),
        event().prop_map(Kind::Event),
    ])
    .prop_map(|kind| ServerFrame { kind })
}

fn bus_envelope() -> impl Strategy<Value = BusEnvelope> {
    use bus_envelope::Kind;
    let kind = prop_oneof![
        event().prop_map(Kind::Event),
        any::<u64>().prop_map(|session_id| Kind::SessionRevoked(SessionRevoked { session_id })),
        (any::<u64>(), any::<bool>(), proptest::option::of(event())).prop_map(
            |(group_id, joined, event)| Kind::Membership(Membership {
                group_id,
                joined,
                event,
            })
        ),
        (any::<u64>(), any::<bool>())
            .prop_map(|(user_id, blocked)| Kind::Blocking(Blocking { user_id, blocked })),
    ];
    (proptest::option::of(kind), any::<u64>(), any::<u64>()).prop_map(|(kind, origin, target)| {
        BusEnvelope {
            kind,
            origin,
            target,
        }
    })
}

fn core_request() -> impl Strategy<Value = CoreRequest> {
    use core_request::Kind;
    let kind = prop_oneof![
        (
            any::<u64>(),
            proptest::option::of(client_frame()),
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(
                |(user_id, frame, origin, session_id)| Kind::User(UserRequest {
                    user_id,
                    frame,
                    origin,
                    session_id,
                })
            ),
        text().prop_map(|access_token| Kind::Authenticate(Authenticate { access_token })),
        text().prop_map(|ticket| Kind::RedeemTicket(RedeemTicket { ticket })),
        (any::<u64>(), any::<u64>()).prop_map(|(user_id, session_id)| {
            Kind::SessionLive(SessionLive {
                user_id,
                session_id,
            })
        }),
        (any::<u64>(), ids()).prop_map(|(user_id, session_ids)| {
            Kind::UserGroups(UserGroups {
                user_id,
                session_ids,
            })
        }),
    ];
    proptest::option::of(kind).prop_map(|kind| CoreRequest { kind })
}

fn core_response() -> impl Strategy<Value = CoreResponse> {
    use core_response::Kind;
    let kind = prop_oneof![
        response().prop_map(Kind::Response),
        (any::<u64>(), any::<u64>(), any::<i64>(), any::<i64>()).prop_map(
            |(user_id, session_id, issued_at_ms, expires_at_ms)| Kind::Claims(AuthClaims {
                user_id,
                session_id,
                issued_at_ms,
                expires_at_ms,
            })
        ),
        (any::<u32>(), proptest::option::of(error()))
            .prop_map(|(status, error)| Kind::Error(AuthError { status, error })),
        (any::<bool>(), ids(), ids()).prop_map(|(live, groups, blocked)| Kind::Started(
            SessionStarted {
                live,
                groups,
                blocked
            }
        )),
        (ids(), ids(), ids()).prop_map(|(groups, revoked_sessions, blocked)| Kind::Groups(
            Groups {
                groups,
                revoked_sessions,
                blocked
            }
        )),
    ];
    proptest::option::of(kind).prop_map(|kind| CoreResponse { kind })
}

/// Encoded, then decoded: the same message, from exactly `encoded_len` bytes.
fn round_trips<M: Message + Default + PartialEq + std::fmt::Debug>(
    message: &M,
) -> Result<(), TestCaseError> {
    let bytes = message.encode_to_vec();
    prop_assert_eq!(bytes.len(), message.encoded_len());
    prop_assert_eq!(&M::decode(bytes.as_slice())?, message);
    Ok(())
}

/// Whatever decodes from `bytes` survives an encoding and a decoding unchanged.
fn decoded_is_stable<M: Message + Default + PartialEq + std::fmt::Debug>(
    bytes: &[u8],
) -> Result<(), TestCaseError> {
    if let Ok(message) = M::decode(bytes) {
        round_trips(&message)?;
    }
    Ok(())
}

proptest! {
    #[test]
    fn client_frames_round_trip(frame in client_frame()) {
        round_trips(&frame)?;
    }

    #[test]
    fn server_frames_round_trip(frame in server_frame()) {
        round_trips(&frame)?;
    }

    #[test]
    fn bus_envelopes_round_trip(envelope in bus_envelope()) {
        round_trips(&envelope)?;
    }

    #[test]
    fn core_requests_and_responses_round_trip(request in core_request(), response in core_response()) {
        round_trips(&request)?;
        round_trips(&response)?;
    }

    #[test]
    fn any_bytes_that_decode_are_stable(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        decoded_is_stable::<ClientFrame>(&bytes)?;
        decoded_is_stable::<ServerFrame>(&bytes)?;
        decoded_is_stable::<BusEnvelope>(&bytes)?;
        decoded_is_stable::<CoreRequest>(&bytes)?;
        decoded_is_stable::<CoreResponse>(&bytes)?;
    }
}

/// A client that does not know a kind (here, one this build does not know:
/// field 9 of `MessageBody`, as a later build may add) decodes a body whose
/// `content` is empty (the unknown field is skipped) and whose `fallback`
/// is the server's text, which it shows.
#[test]
fn a_kind_newer_than_the_client_decodes_to_its_fallback() {
    let fallback = "[Red packet] Best wishes";
    let mut bytes = vec![9 << 3 | 2, 3, 0x0a, 1, b'x'];
    bytes.push(15 << 3 | 2);
    bytes.push(fallback.len() as u8);
    bytes.extend_from_slice(fallback.as_bytes());
    let body = MessageBody::decode(bytes.as_slice()).unwrap();
    assert_eq!(body.content, None);
    assert_eq!(body.fallback, fallback);
    // Inside a message, as a pull or an event carries it.
    let mut message = ChatMessage {
        seq: 7,
        ..ChatMessage::default()
    }
    .encode_to_vec();
    message.push(7 << 3 | 2);
    message.push(bytes.len() as u8);
    message.extend_from_slice(&bytes);
    let decoded = ChatMessage::decode(message.as_slice()).unwrap();
    assert_eq!(decoded.seq, 7);
    assert_eq!(decoded.body, Some(body));
}
