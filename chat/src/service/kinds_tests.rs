//! Message kinds through [`Chat`]: media checked through a test double of
//! the media room's port, contact cards through one of the account room's,
//! the fallback on what is stored and published, and what the media room is
//! told of a message against what a pull shows.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use superapp_kit::BoxFuture;
use superapp_kit::bus::{Bus as _, BusMessage, InProcessBus};
use superapp_kit::clock::{Clock as _, ManualClock};
use superapp_kit::metrics::Registry;
use superapp_proto::v1::message_body::Content;
use superapp_proto::v1::{ContactCard, File, Image, Location, Video};

use super::*;
use crate::model::{Asked, MediaFacts, MediaKind, NewGroup, Span};
use crate::store::GroupStore as _;
use crate::test_graph::Graph;
use crate::{MediaLibrary, SqliteChatStore};

/// The media room as chat sees it: objects with their facts and who may
/// use them, and a record of what messages referenced.
#[derive(Default)]
struct Library {
    objects: Mutex<HashMap<String, (MediaFacts, HashSet<UserId>)>>,
    attached: Mutex<Vec<(Vec<String>, String)>>,
    failing: AtomicBool,
}

impl Library {
    fn add(&self, id: &str, kind: MediaKind, users: &[u64]) {
        let facts = MediaFacts {
            kind,
            size: 1_000 + id.len() as u64,
            width: 640,
            height: 480,
        };
        let users = users.iter().copied().map(UserId).collect();
        self.objects
            .lock()
            .unwrap()
            .insert(id.to_owned(), (facts, users));
    }
}

impl MediaLibrary for Library {
    fn usable(
        &self,
        user: UserId,
        ids: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<Option<MediaFacts>>, String>> {
        let objects = self.objects.lock().unwrap();
        let facts = ids
            .iter()
            .map(|id| {
                objects
                    .get(id)
                    .filter(|(_, users)| users.contains(&user))
                    .map(|(facts, _)| *facts)
            })
            .collect();
        Box::pin(async move { Ok(facts) })
    }

    fn attach(&self, ids: Vec<String>, referrer: String) -> BoxFuture<'_, Result<(), String>> {
        if self.failing.load(Ordering::SeqCst) {
            return Box::pin(async { Err("the media store is down".to_owned()) });
        }
        self.attached.lock().unwrap().push((ids, referrer));
        Box::pin(async { Ok(()) })
    }
}

struct Setup {
    chat: Chat,
    store: Arc<SqliteChatStore>,
    graph: Arc<Graph>,
    library: Arc<Library>,
    bus: Arc<InProcessBus>,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

fn setup(wired: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteChatStore::open(&dir.path().join("chat.db"), None).unwrap());
    let graph = Arc::new(Graph::default());
    let library = Arc::new(Library::default());
    let bus = Arc::new(InProcessBus::new());
    let clock = Arc::new(ManualClock::new(1_000));
    let ids = Arc::new(IdGen::new(0, clock.clone()));
    let chat = Chat::new(
        store.clone(),
        graph.clone(),
        bus.clone(),
        clock.clone(),
        ids,
        500,
        &Registry::new(),
    );
    let media: Option<Arc<dyn MediaLibrary>> = wired.then(|| library.clone() as _);
    Setup {
        chat: chat.with_media(media),
        store,
        graph,
        library,
        bus,
        clock,
        _dir: dir,
    }
}

fn media_id(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

fn send(conversation: &str, cmid: &str, content: Content) -> SendMessage {
    let (conversation_id, to_user) = match conversation.parse::<u64>() {
        Ok(user) => (String::new(), user),
        Err(_) => (conversation.to_owned(), 0),
    };
    SendMessage {
        client_msg_id: cmid.into(),
        conversation_id,
        to_user,
        body: Some(MessageBody {
            content: Some(content),
            fallback: String::new(),
        }),
        ..SendMessage::default()
    }
}

fn image(id: String) -> Content {
    Content::Image(Image {
        media_id: id,
        width: 1,
        height: 1,
        size: 1,
    })
}

fn video(id: String, poster: String) -> Content {
    Content::Video(Video {
        media_id: id,
        duration_ms: 65_000,
        poster_media_id: poster,
        ..Video::default()
    })
}

fn file(id: String, name: &str) -> Content {
    Content::File(File {
        media_id: id,
        name: name.into(),
        size: 0,
    })
}

fn card(user_id: u64) -> Content {
    Content::ContactCard(ContactCard {
        user_id,
        display_name: "Bank".into(),
        avatar_url: String::new(),
    })
}

fn place() -> Content {
    Content::Location(Location {
        latitude: 31.2,
        longitude: 121.5,
        name: "Cafe".into(),
        address: String::new(),
    })
}

/// The bodies of the messages published on a subscriber's topics so far.
fn heard(events: &mut tokio::sync::mpsc::Receiver<BusMessage>) -> Vec<MessageBody> {
    let mut out = Vec::new();
    while let Ok(BusMessage::Message { payload, .. }) = events.try_recv() {
        let envelope = BusEnvelope::decode(payload).unwrap();
        if let Some(bus_envelope::Kind::Event(Event {
            kind: Some(event::Kind::Message(m)),
        })) = envelope.kind
        {
            out.extend(m.body);
        }
    }
    out
}

fn refusal(result: Result<SendAck, ChatError>) -> String {
    match result {
        Ok(ack) => format!("stored at {}", ack.seq),
        Err(e) => format!("{e:?}"),
    }
}

#[tokio::test]
async fn without_a_media_library_every_media_kind_is_refused_and_nothing_is_stored() {
    let s = setup(false);
    let o = Origin::default();
    for (i, content) in [
        image(media_id(1)),
        video(media_id(2), media_id(3)),
        file(media_id(4), "a.pdf"),
    ]
    .into_iter()
    .enumerate()
    {
        let sent = s
            .chat
            .send(UserId(1), o, send("2", &i.to_string(), content));
        assert_eq!(refusal(sent.await), "MediaRefused");
    }
    // Kinds without media are taken all the same.
    let ack = s.chat.send(UserId(1), o, send("2", "p", place())).await;
    assert_eq!(ack.unwrap().seq, 1);
}

#[tokio::test]
async fn media_is_stored_with_the_server_s_facts_and_the_fallback_and_attached_to_its_message() {
    let s = setup(true);
    let (listener, mut events) = s.bus.subscriber(16);
    listener.subscribe("u.2");
    s.library.add(&media_id(1), MediaKind::Image, &[1]);
    s.library.add(&media_id(2), MediaKind::Video, &[1]);
    s.library.add(&media_id(3), MediaKind::Voice, &[1]);
    s.library.add(&media_id(4), MediaKind::Image, &[2]);
    let o = Origin::default();
    let ack = (s.chat)
        .send(UserId(1), o, send("2", "a", image(media_id(1))))
        .await
        .unwrap();
    let pulled = s.chat.pull(UserId(2), "d.1.2", 0, 0).await.unwrap();
    let body = pulled.messages[0].body.clone().unwrap();
    assert_eq!(body.fallback, "[Image]");
    assert_eq!(
        body.content,
        Some(Content::Image(Image {
            media_id: media_id(1),
            width: 640,
            height: 480,
            size: 1_064,
        })),
        "the client's claims gave way to the media room's facts"
    );
    assert_eq!(
        heard(&mut events),
        [body],
        "the live event is the pulled body"
    );
    assert_eq!(
        *s.library.attached.lock().unwrap(),
        [(vec![media_id(1)], format!("m:d.1.2:{}", ack.seq))]
    );

    // An id the sender may not use, a video whose poster is not an image,
    // an image that is a video: refused, nothing stored or attached.
    let cases = [
        (image(media_id(4)), "MediaRefused"),
        (image(media_id(9)), "MediaRefused"),
        (video(media_id(2), media_id(3)), "MediaKindMismatch"),
        (image(media_id(2)), "MediaKindMismatch"),
        (video(media_id(2), media_id(4)), "MediaRefused"),
    ];
    for (i, (content, want)) in cases.into_iter().enumerate() {
        let sent = s
            .chat
            .send(UserId(1), o, send("2", &format!("x{i}"), content));
        assert_eq!(refusal(sent.await), want, "case {i}");
    }
    assert_eq!(s.library.attached.lock().unwrap().len(), 1);

    // A video with its poster, and a file that is an image: taken.
    let ack = (s.chat)
        .send(
            UserId(1),
            o,
            send("2", "v", video(media_id(2), media_id(1))),
        )
        .await
        .unwrap();
    assert_eq!(
        s.library.attached.lock().unwrap()[1],
        (
            vec![media_id(2), media_id(1)],
            format!("m:d.1.2:{}", ack.seq)
        )
    );
    (s.chat)
        .send(UserId(1), o, send("2", "f", file(media_id(1), "cat.png")))
        .await
        .unwrap();
    let fallbacks: Vec<String> = heard(&mut events).into_iter().map(|b| b.fallback).collect();
    assert_eq!(fallbacks, ["[Video 1:05]", "[File] cat.png"]);

    // A retry is answered with the first ack and attaches nothing again.
    let again = (s.chat)
        .send(UserId(1), o, send("2", "f", file(media_id(1), "cat.png")))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(s.library.attached.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn a_send_whose_media_references_fail_to_record_is_still_acknowledged() {
    let s = setup(true);
    s.library.add(&media_id(1), MediaKind::Image, &[1]);
    s.library.failing.store(true, Ordering::SeqCst);
    let ack = (s.chat)
        .send(
            UserId(1),
            Origin::default(),
            send("2", "a", image(media_id(1))),
        )
        .await
        .unwrap();
    assert_eq!(ack.seq, 1);
    let pulled = s.chat.pull(UserId(2), "d.1.2", 0, 0).await.unwrap();
    assert_eq!(pulled.messages.len(), 1);
}

#[tokio::test]
async fn a_contact_card_is_one_the_sender_may_share_filled_as_they_see_its_user() {
    let s = setup(false);
    s.graph
        .shareable
        .lock()
        .unwrap()
        .insert((UserId(1), UserId(3)));
    let o = Origin::default();
    (s.chat)
        .send(UserId(1), o, send("2", "own", card(1)))
        .await
        .unwrap();
    (s.chat)
        .send(UserId(1), o, send("2", "friend", card(3)))
        .await
        .unwrap();
    let stranger = s.chat.send(UserId(1), o, send("2", "stranger", card(4)));
    assert_eq!(refusal(stranger.await), "CardRefused");
    let pulled = s.chat.pull(UserId(2), "d.1.2", 0, 0).await.unwrap();
    let shown: Vec<(Option<Content>, String)> = pulled
        .messages
        .into_iter()
        .filter_map(|m| m.body)
        .map(|b| (b.content, b.fallback))
        .collect();
    let filled = |user_id: u64| {
        Some(Content::ContactCard(ContactCard {
            user_id,
            display_name: format!("User {user_id}"),
            avatar_url: format!("https://a.example/{user_id}.png"),
        }))
    };
    assert_eq!(
        shown,
        [
            (filled(1), "[Contact card] User 1".to_owned()),
            (filled(3), "[Contact card] User 3".to_owned())
        ]
    );
}

/// Pulls every seq `user` sees in `conversation`, following `through_seq`;
/// nothing when the pull is refused (not a member).
async fn pulled(chat: &Chat, user: UserId, conversation: &str) -> HashSet<u64> {
    let (mut known, mut seqs) = (0, HashSet::new());
    loop {
        let Ok(page) = chat.pull(user, conversation, known, 7).await else {
            return seqs;
        };
        seqs.extend(page.messages.iter().map(|m| m.seq));
        known = page.through_seq;
        if !page.has_more {
            return seqs;
        }
    }
}

#[tokio::test]
async fn a_viewer_is_told_a_message_s_media_exactly_when_a_pull_shows_them_the_message() {
    for seed in 0..4 {
        let s = setup(true);
        for n in 0..4 {
            s.library
                .add(&media_id(n), MediaKind::Image, &[1, 2, 3, 4, 5]);
        }
        let group = NewGroup {
            group: GroupId(1),
            name: "g".into(),
            avatar: String::new(),
            owner: UserId(1),
            members: vec![UserId(2), UserId(3)],
            asked: Asked::default(),
            now_ms: 1,
        };
        s.store.create_group(group).await.unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut members = vec![1u64, 2, 3];
        let o = Origin::default();
        for i in 0..40 {
            s.clock.advance_ms(10);
            if i == 12 {
                let now = s.clock.now_ms();
                (s.store)
                    .invite(
                        GroupId(1),
                        UserId(1),
                        vec![UserId(4)],
                        Asked::default(),
                        now,
                    )
                    .await
                    .unwrap();
                members.push(4);
            }
            if i == 25 {
                s.store
                    .remove_member(GroupId(1), UserId(3), UserId(3))
                    .await
                    .unwrap();
                members.retain(|&m| m != 3);
            }
            let sender = UserId(members[rng.random_range(0..members.len())]);
            let content = match rng.random_range(0..3) {
                0 => image(media_id(rng.random_range(0..4))),
                1 => file(media_id(rng.random_range(0..4)), "a.txt"),
                _ => place(),
            };
            let cmid = format!("g{i}");
            s.chat
                .send(sender, o, send("g.1", &cmid, content))
                .await
                .unwrap();
            // And a one-to-one message between 1 and 2, now and then
            // withheld from 2 (who blocks 1).
            let withheld = rng.random_bool(0.3);
            *s.graph.verdict.lock().unwrap() = Some(SendVerdict {
                reach: if withheld {
                    Reach::Withheld
                } else {
                    Reach::Delivered
                },
                ..SendVerdict::DELIVERED
            });
            let content = image(media_id(rng.random_range(0..4)));
            s.chat
                .send(UserId(1), o, send("2", &cmid, content))
                .await
                .unwrap();
        }
        // Each viewer blocks someone for a while.
        let horizon = s.clock.now_ms();
        for viewer in 1..=5u64 {
            let from_ms = rng.random_range(1_000..horizon);
            let span = Span {
                from_ms,
                until_ms: rng.random_range(from_ms..horizon + 100),
            };
            let view = View {
                blocked: [(UserId(viewer % 4 + 1), vec![span])].into(),
                ..View::default()
            };
            s.graph
                .views
                .lock()
                .unwrap()
                .insert(UserId(viewer), Arc::new(view));
        }
        for viewer in (1..=5).map(UserId) {
            for conversation in ["g.1", "d.1.2"] {
                let shown = pulled(&s.chat, viewer, conversation).await;
                for seq in 0..=42 {
                    let media = s
                        .chat
                        .message_media(viewer, conversation, seq)
                        .await
                        .unwrap();
                    assert_eq!(
                        media.is_some(),
                        shown.contains(&seq),
                        "seed {seed}: {viewer:?} at {conversation}:{seq}"
                    );
                    // One image or file, or a location's none.
                    assert!(media.is_none_or(|m| m.len() <= 1));
                }
            }
        }
    }
}

#[tokio::test]
async fn the_media_of_a_message_are_its_ids_in_order_with_a_file_s_name() {
    let s = setup(true);
    s.library.add(&media_id(1), MediaKind::Video, &[1]);
    s.library.add(&media_id(2), MediaKind::Image, &[1]);
    let o = Origin::default();
    let sends = [
        video(media_id(1), media_id(2)),
        file(media_id(1), "clip.mp4"),
        Content::Text("hi".into()),
    ];
    for (i, content) in sends.into_iter().enumerate() {
        s.chat
            .send(UserId(1), o, send("2", &i.to_string(), content))
            .await
            .unwrap();
    }
    let media = |seq| s.chat.message_media(UserId(2), "d.1.2", seq);
    assert_eq!(
        media(1).await.unwrap(),
        Some(vec![(media_id(1), None), (media_id(2), None)])
    );
    assert_eq!(
        media(2).await.unwrap(),
        Some(vec![(media_id(1), Some("clip.mp4".to_owned()))])
    );
    assert_eq!(media(3).await.unwrap(), Some(Vec::new()));
    assert_eq!(media(4).await.unwrap(), None, "no such message");
    let malformed = s.chat.message_media(UserId(2), "d.2.1", 1).await.unwrap();
    assert_eq!(malformed, None);
}
