//! Message kinds over a real server and real WebSocket clients: a location
//! and contact cards arrive live and on pull with the server's fallback;
//! cards follow the privacy rules; what only the server writes, and fields
//! out of bounds, are refused with their codes. Media in messages: the
//! server fills what it read of the object, the recipient may fetch it
//! through the message and forward it, nobody else may; media nobody showed
//! the sender, or of the wrong kind, is refused; what a message references
//! outlives the collection of what nothing does. The CLI sends a location,
//! a picture and a file, saves what it received, and prints what it
//! receives of a kind other than text as its fallback.

use superapp_client::Connection;
use superapp_client::ProfileUpdate;
use superapp_client::proto::v1::message_body::Content;
use superapp_client::proto::v1::{
    ContactCard, File, Image, Location, MessageBody, SendAck, SendMessage, Special, Video, Voice,
};

use serde_json::json;

use crate::cli::{cli_path, texts_of};
use crate::helpers::{PASSWORD, code, next_message, spawn_app, spawn_app_with};
use crate::media::{Media, code as media_code, files_under, png, samples};

fn body(content: Content) -> MessageBody {
    MessageBody {
        content: Some(content),
        // The client's word is dropped: the server writes the fallback.
        fallback: "[Anything]".into(),
    }
}

async fn send(
    conn: &Connection,
    to_user: u64,
    cmid: &str,
    content: Content,
) -> superapp_client::Result<SendAck> {
    conn.send(SendMessage {
        client_msg_id: cmid.into(),
        to_user,
        body: Some(body(content)),
        ..SendMessage::default()
    })
    .await
}

fn card(user_id: u64) -> Content {
    Content::ContactCard(ContactCard {
        user_id,
        display_name: "Someone else".into(),
        avatar_url: "https://evil.example/a.png".into(),
    })
}

fn media_id(c: char) -> String {
    c.to_string().repeat(64)
}

#[tokio::test]
async fn a_location_arrives_live_and_on_pull_with_its_fallback() {
    let app = spawn_app().await;
    let (ann, bo) = (app.user("Ann").await, app.user("Bo").await);
    let (ac, bc) = (app.connect(&ann).await, app.connect(&bo).await);
    let place = Location {
        latitude: 31.2304,
        longitude: 121.4737,
        name: "People's Square".into(),
        address: "Huangpu, Shanghai".into(),
    };
    let ack = send(&ac, bo.id, "here", Content::Location(place.clone()))
        .await
        .unwrap();
    let live = next_message(&bc).await;
    assert_eq!(live.seq, ack.seq);
    let want = MessageBody {
        content: Some(Content::Location(place)),
        fallback: "[Location] People's Square".into(),
    };
    assert_eq!(live.body.as_ref(), Some(&want));
    let pulled = bc.pull(&ack.conversation_id, 0, 0).await.unwrap();
    assert_eq!(pulled.messages[0].body.as_ref(), Some(&want));
}

#[tokio::test]
async fn contact_cards_are_one_s_own_or_a_friend_s_who_does_not_block_one() {
    let app = spawn_app().await;
    let ann = app.user("Ann").await;
    let bo = app.user("Bo").await;
    let cy = app.user("Cy").await;
    let di = app.user("Di").await;
    app.befriend(&ann, &bo).await;
    app.befriend(&ann, &cy).await;
    let avatar = "https://cdn.example.com/bo.png";
    let update = ProfileUpdate {
        avatar_url: Some(avatar.into()),
        ..ProfileUpdate::default()
    };
    (app.http
        .update_profile(&bo.tokens.access_token, &update)
        .await)
        .unwrap();
    app.http
        .block(&cy.tokens.access_token, ann.id)
        .await
        .unwrap();
    let (ac, dc) = (app.connect(&ann).await, app.connect(&di).await);

    // Ann shares her own card and her friend Bo's with Di.
    send(&ac, di.id, "own", card(ann.id)).await.unwrap();
    let live = next_message(&dc).await;
    let own = MessageBody {
        content: Some(Content::ContactCard(ContactCard {
            user_id: ann.id,
            display_name: "Ann".into(),
            avatar_url: String::new(),
        })),
        fallback: "[Contact card] Ann".into(),
    };
    assert_eq!(live.body.as_ref(), Some(&own));
    send(&ac, di.id, "bo", card(bo.id)).await.unwrap();
    let friend = MessageBody {
        content: Some(Content::ContactCard(ContactCard {
            user_id: bo.id,
            display_name: "Bo".into(),
            avatar_url: avatar.into(),
        })),
        fallback: "[Contact card] Bo".into(),
    };
    assert_eq!(next_message(&dc).await.body.as_ref(), Some(&friend));

    // A stranger's, a friend's who blocks her, and nobody's: refused alike.
    for (cmid, subject) in [("di", di.id), ("cy", cy.id), ("nobody", 1)] {
        assert_eq!(
            code(send(&ac, bo.id, cmid, card(subject)).await),
            "card_refused",
            "{cmid}"
        );
    }
    let pulled = dc.pull(&live.conversation_id, 0, 0).await.unwrap();
    let bodies: Vec<_> = pulled.messages.into_iter().filter_map(|m| m.body).collect();
    assert_eq!(bodies, [own, friend]);
}

#[tokio::test]
async fn what_only_the_server_writes_and_fields_out_of_bounds_are_refused_with_their_codes() {
    let app = spawn_app().await;
    let (ann, bo) = (app.user("Ann").await, app.user("Bo").await);
    let ac = app.connect(&ann).await;
    let cases = [
        (
            Content::Special(Special {
                r#type: "call".into(),
                value: Vec::new(),
            }),
            "kind_not_allowed",
        ),
        (
            Content::Image(Image {
                media_id: media_id('A'),
                ..Image::default()
            }),
            "invalid_media_id",
        ),
        (
            Content::Voice(Voice {
                media_id: media_id('a'),
                duration_ms: 0,
                size: 0,
            }),
            "invalid_duration",
        ),
        (
            Content::Video(Video {
                media_id: media_id('a'),
                duration_ms: 60 * 60 * 1000 + 1,
                poster_media_id: media_id('b'),
                ..Video::default()
            }),
            "invalid_duration",
        ),
        (
            Content::File(File {
                media_id: media_id('a'),
                name: "../etc/passwd".into(),
                size: 0,
            }),
            "invalid_file_name",
        ),
        (
            Content::Location(Location {
                latitude: 91.0,
                ..Location::default()
            }),
            "invalid_location",
        ),
        (card(0), "invalid_contact_card"),
    ];
    for (i, (content, want)) in cases.into_iter().enumerate() {
        let got = code(send(&ac, bo.id, &format!("m{i}"), content).await);
        assert_eq!(got, want, "case {i}");
    }
    let listed = ac.list_conversations(10, "").await.unwrap();
    assert!(listed.conversations.is_empty(), "nothing was stored");
}

#[tokio::test]
async fn media_nobody_showed_the_sender_is_refused() {
    let app = spawn_app().await;
    let (ann, bo) = (app.user("Ann").await, app.user("Bo").await);
    let ac = app.connect(&ann).await;
    let cases = [
        Content::Image(Image {
            media_id: media_id('a'),
            ..Image::default()
        }),
        Content::Voice(Voice {
            media_id: media_id('a'),
            duration_ms: 12_000,
            size: 0,
        }),
        Content::Video(Video {
            media_id: media_id('a'),
            duration_ms: 65_000,
            poster_media_id: media_id('b'),
            ..Video::default()
        }),
        Content::File(File {
            media_id: media_id('a'),
            name: "report.pdf".into(),
            size: 0,
        }),
    ];
    for (i, content) in cases.into_iter().enumerate() {
        let got = code(send(&ac, bo.id, &format!("m{i}"), content).await);
        assert_eq!(got, "media_refused", "case {i}");
    }
    let listed = ac.list_conversations(10, "").await.unwrap();
    assert!(listed.conversations.is_empty(), "nothing was stored");
}

/// Runs `superapp-cli` with a profile; its standard output.
fn run_cli(base: &str, profile: &std::path::Path, args: &[&str]) -> String {
    let output = std::process::Command::new(cli_path())
        .args(["--server", base, "--profile"])
        .arg(profile)
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(output.status.success(), "superapp-cli {args:?} failed");
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn the_cli_sends_a_location_and_prints_a_received_one_as_its_fallback() {
    let app = spawn_app().await;
    let (ann, bo) = (app.user("Ann").await, app.user("Bo").await);
    let base = app.base_url.clone();
    let dir = app.dir.path().to_path_buf();
    let to = bo.id.to_string();
    let printed = tokio::task::spawn_blocking(move || {
        let (ann_profile, bo_profile) = (dir.join("ann.json"), dir.join("bo.json"));
        for (profile, phone) in [(&ann_profile, &ann.phone), (&bo_profile, &bo.phone)] {
            run_cli(
                &base,
                profile,
                &["login", "--phone", phone, "--password", PASSWORD],
            );
        }
        let sent = run_cli(
            &base,
            &ann_profile,
            &[
                "send-location",
                "--to",
                &to,
                "--lat",
                "-33.8568",
                "--lon",
                "151.2153",
                "--name",
                "Opera House",
            ],
        );
        let ack: serde_json::Value = serde_json::from_str(&sent).unwrap();
        assert_eq!(ack["seq"], 1);
        let listen = ["listen", "--json", "--count", "1", "--timeout", "20"];
        run_cli(&base, &bo_profile, &listen)
    })
    .await
    .unwrap();
    assert_eq!(texts_of(&printed), ["[Location] Opera House"]);
}

fn image(media_id: &str) -> Content {
    Content::Image(Image {
        media_id: media_id.into(),
        // The client's word is dropped: the server fills what it read.
        width: 999,
        height: 999,
        size: 1,
    })
}

/// The message's body as the recipient pulls it.
async fn pulled(conn: &Connection, ack: &SendAck) -> MessageBody {
    let page = conn
        .pull(&ack.conversation_id, ack.seq - 1, 1)
        .await
        .unwrap();
    page.messages[0].body.clone().unwrap()
}

#[tokio::test]
async fn a_picture_reaches_its_recipient_who_may_fetch_and_forward_it_and_nobody_else_may() {
    let app = spawn_app().await;
    let media = Media::new(&app);
    let (ann, bo, cy) = (
        app.user("Ann").await,
        app.user("Bo").await,
        app.user("Cy").await,
    );
    let (_, _, heic) = samples()
        .into_iter()
        .find(|(_, mime, _)| *mime == "image/heic")
        .unwrap();
    let id = media.upload(&ann, "image", None, &heic).await;
    let ac = app.connect(&ann).await;
    let ack = send(&ac, bo.id, "pic", image(&id)).await.unwrap();

    let bc = app.connect(&bo).await;
    let got = pulled(&bc, &ack).await;
    let Some(Content::Image(picture)) = &got.content else {
        panic!("an image arrives: {got:?}")
    };
    assert_eq!(
        (picture.width, picture.height),
        (3, 2),
        "read from its ispe"
    );
    assert_eq!(picture.size, heic.len() as u64, "stripped in place");
    assert_eq!(got.fallback, "[Image]");

    // Bo fetches it through the message.
    let via = json!({ "conversation_id": ack.conversation_id, "seq": ack.seq });
    let link = media.link(&bo, &id, via.clone()).await;
    assert_eq!(link.status(), 200);
    let url: serde_json::Value = link.json().await.unwrap();
    let fetched = media.get(url["url"].as_str().unwrap(), None).await;
    assert_eq!(fetched.bytes().await.unwrap().len(), heic.len());

    // Cy sees no message with it: no link, and no use of it.
    let refused = media.link(&cy, &id, via).await;
    assert_eq!(media_code(refused).await.1, "media_not_found");
    let cc = app.connect(&cy).await;
    let err = send(&cc, ann.id, "steal", image(&id)).await.unwrap_err();
    assert_eq!(err.code(), Some("media_refused"));

    // Bo, who was shown it, forwards it to Cy, who may then fetch it.
    let forwarded = send(&bc, cy.id, "fwd", image(&id)).await.unwrap();
    let via_bo = json!({ "conversation_id": forwarded.conversation_id, "seq": forwarded.seq });
    assert_eq!(media.link(&cy, &id, via_bo).await.status(), 200);
}

#[tokio::test]
async fn media_of_the_wrong_kind_for_its_place_is_refused() {
    let app = spawn_app().await;
    let media = Media::new(&app);
    let (ann, bo) = (app.user("Ann").await, app.user("Bo").await);
    let voice = media
        .upload(&ann, "voice", None, b"#!AMR\n\x3c\x48\xf5\x1f")
        .await;
    let picture = media.upload(&ann, "image", None, &png()).await;
    let ac = app.connect(&ann).await;
    let err = send(&ac, bo.id, "k1", image(&voice)).await.unwrap_err();
    assert_eq!(err.code(), Some("media_kind_mismatch"));
    let poster_is_voice = Content::Video(Video {
        media_id: voice.clone(),
        duration_ms: 5_000,
        poster_media_id: voice.clone(),
        ..Video::default()
    });
    let err = send(&ac, bo.id, "k2", poster_is_voice).await.unwrap_err();
    assert_eq!(err.code(), Some("media_kind_mismatch"));
    // A file may be anything; a voice note is a voice.
    let as_file = Content::File(File {
        media_id: picture,
        name: "dot.png".into(),
        size: 0,
    });
    let ack = send(&ac, bo.id, "k3", as_file).await.unwrap();
    let note = Content::Voice(Voice {
        media_id: voice,
        duration_ms: 12_400,
        size: 0,
    });
    send(&ac, bo.id, "k4", note).await.unwrap();
    let bc = app.connect(&bo).await;
    assert_eq!(pulled(&bc, &ack).await.fallback, "[File] dot.png");
}

#[tokio::test]
async fn what_a_message_references_outlives_the_collection_of_what_nothing_does() {
    let app = spawn_app_with(|c| {
        c.media.grace_secs = 0;
        c.media.sweep_secs = 1;
    })
    .await;
    let media = Media::new(&app);
    let (ann, bo) = (app.user("Ann").await, app.user("Bo").await);
    let ac = app.connect(&ann).await;
    let sent = media.upload(&ann, "file", None, &[1u8; 2_000]).await;
    let file = |id: &str| {
        Content::File(File {
            media_id: id.into(),
            name: "kept.bin".into(),
            size: 0,
        })
    };
    // Sent at once, before a sweep can take it (the grace period is 0).
    send(&ac, bo.id, "keep", file(&sent)).await.unwrap();
    let unsent = media.upload(&ann, "file", None, &[2u8; 2_000]).await;
    let blobs = app.dir.path().join("media/blobs");
    for _ in 0..100 {
        if files_under(&blobs) == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(files_under(&blobs), 1, "only the unsent one is collected");
    let gone = media.link(&ann, &unsent, json!({})).await;
    assert_eq!(media_code(gone).await.1, "media_not_found");
    assert_eq!(media.link(&ann, &sent, json!({})).await.status(), 200);
}

#[tokio::test]
async fn the_cli_sends_a_picture_and_a_file_and_the_recipient_saves_them() {
    let app = spawn_app().await;
    let (ann, bo) = (app.user("Ann").await, app.user("Bo").await);
    let base = app.base_url.clone();
    let dir = app.dir.path().to_path_buf();
    let to = bo.id.to_string();
    let (picture, file) = (dir.join("dot.png"), dir.join("notes.txt"));
    std::fs::write(&picture, png()).unwrap();
    std::fs::write(&file, b"meeting at noon\n").unwrap();
    let (saved_picture, saved_file) = tokio::task::spawn_blocking(move || {
        let (ann_profile, bo_profile) = (dir.join("ann.json"), dir.join("bo.json"));
        for (profile, phone) in [(&ann_profile, &ann.phone), (&bo_profile, &bo.phone)] {
            run_cli(
                &base,
                profile,
                &["login", "--phone", phone, "--password", PASSWORD],
            );
        }
        let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
        let sent: Vec<serde_json::Value> = [
            vec!["send-image", "--to", &to, "--path", &path(&picture)],
            vec!["send-file", "--to", &to, "--path", &path(&file)],
        ]
        .iter()
        .map(|args| serde_json::from_str(&run_cli(&base, &ann_profile, args)).unwrap())
        .collect();
        assert_eq!(sent[0]["media"]["width"], 1);
        assert_eq!(sent[1]["media"]["kind"], "file");
        let listen = ["listen", "--json", "--count", "2", "--timeout", "20"];
        assert_eq!(
            texts_of(&run_cli(&base, &bo_profile, &listen)),
            ["[Image]", "[File] notes.txt"]
        );
        let saved: Vec<_> = sent
            .iter()
            .enumerate()
            .map(|(n, ack)| {
                let out = dir.join(format!("saved-{n}"));
                let seq = ack["seq"].to_string();
                run_cli(
                    &base,
                    &bo_profile,
                    &[
                        "download",
                        "--media",
                        ack["media"]["media_id"].as_str().unwrap(),
                        "--conversation",
                        ack["conversation_id"].as_str().unwrap(),
                        "--seq",
                        &seq,
                        "--out",
                        &path(&out),
                    ],
                );
                std::fs::read(out).unwrap()
            })
            .collect();
        (saved[0].clone(), saved[1].clone())
    })
    .await
    .unwrap();
    assert_eq!(saved_picture, png());
    assert_eq!(saved_file, b"meeting at noon\n");
}
