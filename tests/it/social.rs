//! The social graph with the shipped defaults (strangers may not message
//! each other): friend requests live, the contact list's change feed,
//! blocks, and who may message whom, over real HTTP and WebSocket clients.

use serde_json::{Value, json};
use superapp_account::model::{WhoMayAddMe, WhoMayMessage};
use superapp_client::proto::v1::contact_event::Kind;

use crate::helpers::{
    TestApp, User, api, code, next_contact_event, next_message, refused, spawn_app_with,
};

/// A server with the shipped social defaults.
async fn shipped() -> TestApp {
    spawn_app_with(|c| {
        c.social.who_may_message = WhoMayMessage::Friends;
        c.social.who_may_add_me = WhoMayAddMe::Friends;
    })
    .await
}

#[tokio::test]
async fn strangers_become_friends_through_a_request_that_arrives_live_and_then_chat() {
    let app = shipped().await;
    let (ann, bo) = (app.user("Ann").await, app.user("Bo").await);
    let (ac, bc) = (app.connect(&ann).await, app.connect(&bo).await);

    // Friends only, by default: a stranger's message is refused and stored
    // nowhere.
    assert_eq!(
        code(ac.send_text(bo.id, "m0", "hi?").await),
        "message_refused"
    );
    assert!(
        bc.list_conversations(10, "")
            .await
            .unwrap()
            .conversations
            .is_empty()
    );

    let sent = app
        .http
        .friend_request(&ann.tokens.access_token, bo.id, "It's Ann from the hike");
    assert_eq!(sent.await.unwrap().status, "requested");
    let asked = next_contact_event(&bc).await;
    assert_eq!(
        (asked.kind(), asked.user_id, asked.greeting.as_str()),
        (Kind::Requested, ann.id, "It's Ann from the hike")
    );
    let waiting = app
        .http
        .friend_requests(&bo.tokens.access_token)
        .await
        .unwrap();
    assert_eq!(waiting.requests.len(), 1);
    assert_eq!(waiting.requests[0].from, ann.id);

    let version = app
        .http
        .accept_friend(&bo.tokens.access_token, ann.id)
        .await
        .unwrap();
    for (conn, other) in [(&ac, bo.id), (&bc, ann.id)] {
        let accepted = next_contact_event(conn).await;
        assert_eq!((accepted.kind(), accepted.user_id), (Kind::Accepted, other));
    }
    let listed = app
        .http
        .contacts(&bo.tokens.access_token, 0, 0)
        .await
        .unwrap();
    assert_eq!(listed.version, version.version);
    assert_eq!(listed.changes.len(), 1);
    assert_eq!(
        (listed.changes[0].user_id, listed.changes[0].removed),
        (ann.id, false)
    );
    assert!(
        app.http
            .friend_requests(&bo.tokens.access_token)
            .await
            .unwrap()
            .requests
            .is_empty()
    );

    let ack = ac.send_text(bo.id, "m1", "now we talk").await.unwrap();
    assert_eq!(next_message(&bc).await.seq, ack.seq);
}

#[tokio::test]
async fn crossed_requests_make_two_people_friends_once() {
    let app = shipped().await;
    let (ann, bo) = (app.user("Ann").await, app.user("Bo").await);
    let first = app.http.friend_request(&ann.tokens.access_token, bo.id, "");
    assert_eq!(first.await.unwrap().status, "requested");
    let second = app.http.friend_request(&bo.tokens.access_token, ann.id, "");
    assert_eq!(second.await.unwrap().status, "friends");
    for (me, other) in [(&ann, bo.id), (&bo, ann.id)] {
        let listed = app
            .http
            .contacts(&me.tokens.access_token, 0, 0)
            .await
            .unwrap();
        let friends: Vec<u64> = listed.changes.iter().map(|c| c.user_id).collect();
        assert_eq!(friends, [other]);
        assert!(
            app.http
                .friend_requests(&me.tokens.access_token)
                .await
                .unwrap()
                .requests
                .is_empty()
        );
    }
    let again = app.http.friend_request(&ann.tokens.access_token, bo.id, "");
    assert_eq!(code(again.await), "already_friends");
}

#[tokio::test]
async fn a_contact_list_is_kept_in_step_by_its_changes_since_a_version() {
    let app = shipped().await;
    let me = app.user("Me").await;
    let mut friends = Vec::new();
    for name in ["Ann", "Bo", "Cy"] {
        let friend = app.user(name).await;
        app.befriend(&friend, &me).await;
        friends.push(friend);
    }
    let token = me.tokens.access_token.as_str();
    // Paged: two, then the last one.
    let first = app.http.contacts(token, 0, 2).await.unwrap();
    assert!(first.more && first.changes.len() == 2);
    let rest = app
        .http
        .contacts(token, first.changes[1].version, 2)
        .await
        .unwrap();
    assert!(!rest.more && rest.changes.len() == 1);
    let held = rest.version;

    // A remark and tags, then a removal: two changes after what the
    // device holds, the second a mark that the friend is gone.
    let path = format!("/v1/contacts/{}", friends[0].id);
    let body = json!({"remark": "Annie", "tags": ["hiking", "school"]});
    let (status, _) = api(&app, &me, "PATCH", &path, body).await;
    assert_eq!(status, 200);
    app.http.remove_friend(token, friends[1].id).await.unwrap();
    let changes = app.http.contacts(token, held, 0).await.unwrap().changes;
    let seen: Vec<(u64, &str, bool)> = changes
        .iter()
        .map(|c| (c.user_id, c.remark.as_str(), c.removed))
        .collect();
    assert_eq!(
        seen,
        [(friends[0].id, "Annie", false), (friends[1].id, "", true)]
    );
    assert_eq!(changes[0].tags, ["hiking", "school"]);
    // The removal ends the friendship on the other side too, and a fresh
    // list has no marks of those gone.
    let theirs = app
        .http
        .contacts(&friends[1].tokens.access_token, 0, 0)
        .await
        .unwrap();
    assert!(theirs.changes.is_empty());
    let fresh = app.http.contacts(token, 0, 0).await.unwrap();
    assert_eq!(fresh.changes.len(), 2);
    assert_eq!(
        code(app.http.remove_friend(token, friends[1].id).await),
        "not_friends"
    );
}

#[tokio::test]
async fn a_block_stops_messages_requests_and_group_adds_and_is_not_revealed() {
    let app = shipped().await;
    let (ann, bo) = (app.user("Ann").await, app.user("Bo").await);
    app.befriend(&ann, &bo).await;
    let ac = app.connect(&ann).await;
    let bc = app.connect(&bo).await;
    ac.send_text(bo.id, "m1", "before").await.unwrap();

    app.http
        .block(&bo.tokens.access_token, ann.id)
        .await
        .unwrap();
    // Sent, as far as Ann can tell; Bo never sees it (tests/it/views.rs).
    let withheld = ac.send_text(bo.id, "m2", "after").await.unwrap();
    let conversation = withheld.conversation_id.as_str();
    let pulled = bc.pull(conversation, 0, 0).await.unwrap();
    assert_eq!(pulled.messages.len(), 1);
    assert_eq!(pulled.through_seq, withheld.seq);
    // Bo is answered as invited, and nothing reaches Bo (tests/it/invites.rs).
    let members = [bo.id];
    let group = app
        .http
        .create_group(&ann.tokens.access_token, "Trip", &members);
    let group = group.await.unwrap();
    assert_eq!(
        (group.added, group.invited, group.member_count),
        (Some(vec![]), Some(vec![bo.id]), 1)
    );
    let waiting = app.http.group_invitations(&bo.tokens.access_token);
    assert!(waiting.await.unwrap().invitations.is_empty());
    // Unfriended, Ann asks again: answered as sent, and Bo sees nothing.
    app.http
        .remove_friend(&bo.tokens.access_token, ann.id)
        .await
        .unwrap();
    let asked = app
        .http
        .friend_request(&ann.tokens.access_token, bo.id, "sorry");
    assert_eq!(asked.await.unwrap().status, "requested");
    assert!(
        app.http
            .friend_requests(&bo.tokens.access_token)
            .await
            .unwrap()
            .requests
            .is_empty()
    );
    // Bo, who blocks, must unblock to ask.
    let back = app.http.friend_request(&bo.tokens.access_token, ann.id, "");
    assert_eq!(code(back.await), "blocked_by_you");
    let (_, listed) = api(&app, &bo, "GET", "/v1/blocks", Value::Null).await;
    assert_eq!(listed["users"], json!([ann.id.to_string()]));

    app.http
        .unblock(&bo.tokens.access_token, ann.id)
        .await
        .unwrap();
    app.befriend(&ann, &bo).await;
    ac.send_text(bo.id, "m3", "again").await.unwrap();
}

#[tokio::test]
async fn a_user_who_takes_messages_from_anyone_hears_from_strangers() {
    let app = shipped().await;
    let (ann, bo) = (app.user("Ann").await, app.user("Bo").await);
    let (_, settings) = api(&app, &bo, "GET", "/v1/me/privacy", Value::Null).await;
    assert_eq!(settings["who_may_message"], "friends");
    let body = json!({"who_may_message": "anyone"});
    let (status, settings) = api(&app, &bo, "PATCH", "/v1/me/privacy", body).await;
    assert_eq!(
        (status, settings["who_may_message"].as_str()),
        (200, Some("anyone"))
    );
    let (ac, bc) = (app.connect(&ann).await, app.connect(&bo).await);
    let ack = ac.send_text(bo.id, "m1", "hello stranger").await.unwrap();
    assert_eq!(next_message(&bc).await.seq, ack.seq);
    // Still not the other way round: Ann takes friends' messages only.
    assert_eq!(
        code(bc.send_text(ann.id, "m2", "hi").await),
        "message_refused"
    );
    // A block outweighs "anyone": Ann's next message is withheld from Bo.
    app.http
        .block(&bo.tokens.access_token, ann.id)
        .await
        .unwrap();
    let withheld = ac.send_text(bo.id, "m3", "hm").await.unwrap();
    let pulled = bc.pull(&withheld.conversation_id, 0, 0).await.unwrap();
    let seqs: Vec<u64> = pulled.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [ack.seq]);
}

#[tokio::test]
async fn bad_social_requests_get_clear_codes_and_change_nothing() {
    let app = spawn_app_with(|c| {
        c.social.who_may_message = WhoMayMessage::Friends;
        c.social.friend_requests_per_day = 3;
        c.social.max_friends = 1;
    })
    .await;
    let people = [
        app.user("Ann").await,
        app.user("Bo").await,
        app.user("Cy").await,
        app.user("Dee").await,
    ];
    let [ann, bo, cy, dee] = &people;
    let to = |user: &User| json!({"to": user.id.to_string()});
    let cases = [
        (json!({"to": ann.id.to_string()}), "cannot_befriend_self"),
        (json!({"to": "999999999"}), "unknown_user"),
        (
            json!({"to": bo.id.to_string(), "greeting": "x".repeat(101)}),
            "invalid_greeting",
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(
            refused(&app, ann, "POST", "/v1/friend-requests", body).await,
            expected
        );
    }
    let path = format!("/v1/friend-requests/{}/accept", cy.id);
    assert_eq!(
        refused(&app, ann, "POST", &path, Value::Null).await,
        "unknown_friend_request"
    );
    let path = format!("/v1/friend-requests/{}", cy.id);
    assert_eq!(
        refused(&app, ann, "DELETE", &path, Value::Null).await,
        "unknown_friend_request"
    );

    // At most one friend here: Ann and Bo are friends, so Cy's request to
    // Ann is stored but cannot be accepted, and Ann can ask nobody else.
    app.befriend(ann, bo).await;
    let (status, _) = api(&app, cy, "POST", "/v1/friend-requests", to(dee)).await;
    assert_eq!(status, 200);
    assert_eq!(
        refused(&app, cy, "POST", "/v1/friend-requests", to(ann)).await,
        "too_many_friends"
    );
    assert_eq!(
        refused(&app, ann, "POST", "/v1/friend-requests", to(dee)).await,
        "too_many_friends"
    );

    // Three requests a day: Cy has sent one (and one refused, not counted).
    for _ in 0..2 {
        let (status, _) = api(&app, cy, "POST", "/v1/friend-requests", to(dee)).await;
        assert_eq!(status, 200);
    }
    let (status, body) = api(&app, cy, "POST", "/v1/friend-requests", to(dee)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("too_many_friend_requests"))
    );
    assert!(body["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0));

    let path = format!("/v1/contacts/{}", bo.id);
    let cases = [
        (json!({"remark": "x".repeat(33)}), "invalid_remark"),
        (json!({"tags": ["a", "a"]}), "invalid_tags"),
        (json!({"tags": [""]}), "invalid_tags"),
        (json!({"tags": ["x".repeat(17)]}), "invalid_tags"),
    ];
    for (body, expected) in cases {
        assert_eq!(refused(&app, ann, "PATCH", &path, body).await, expected);
    }
    let path = format!("/v1/contacts/{}", cy.id);
    assert_eq!(
        refused(&app, ann, "PATCH", &path, json!({"remark": "x"})).await,
        "not_friends"
    );
    let path = format!("/v1/blocks/{}", ann.id);
    assert_eq!(
        refused(&app, ann, "PUT", &path, Value::Null).await,
        "cannot_block_self"
    );
    assert_eq!(
        refused(&app, ann, "PUT", "/v1/blocks/999999999", Value::Null).await,
        "unknown_user"
    );
    let body = json!({"who_may_message": "everyone"});
    assert_eq!(
        refused(&app, ann, "PATCH", "/v1/me/privacy", body).await,
        "invalid_setting"
    );

    // None of it changed Ann's list: Bo alone, unremarked.
    let listed = app
        .http
        .contacts(&ann.tokens.access_token, 0, 0)
        .await
        .unwrap();
    let seen: Vec<(u64, &str)> = listed
        .changes
        .iter()
        .map(|c| (c.user_id, c.remark.as_str()))
        .collect();
    assert_eq!(seen, [(bo.id, "")]);
}

#[tokio::test]
async fn someone_a_user_blocks_sees_them_as_never_seen() {
    let app = shipped().await;
    let (ann, bo, cy) = (
        app.user("Ann").await,
        app.user("Bo").await,
        app.user("Cy").await,
    );
    let _bo_phone = app.connect(&bo).await;
    let presence = |who: &User| {
        let (http, token) = (app.http.clone(), who.tokens.access_token.clone());
        async move { http.presence(&token, bo.id).await }
    };
    assert!(presence(&ann).await.unwrap().online);

    app.http
        .block(&bo.tokens.access_token, ann.id)
        .await
        .unwrap();
    let seen = presence(&ann).await.unwrap();
    assert_eq!(
        (seen.online, seen.devices, seen.last_seen_ms),
        (false, 0, None)
    );
    assert!(presence(&cy).await.unwrap().online, "others still see Bo");
    assert!(presence(&bo).await.unwrap().online, "and so does Bo");

    app.http
        .unblock(&bo.tokens.access_token, ann.id)
        .await
        .unwrap();
    assert!(presence(&ann).await.unwrap().online);
}
