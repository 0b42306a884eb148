//! Groups: lifecycle, roles and their permissions, the member cap, the rules
//! of who sees which messages, mentions, mutes and slow mode, invitations, and
//! bad inputs, over real HTTP and WebSocket clients.

use std::time::Duration;

use serde_json::{Value, json};
use superapp_client::Connection;
use superapp_client::proto::v1::{event, group_event};

use crate::helpers::{
    TestApp, User, api, code, next_group_event, next_message, next_message_is, refused, spawn_app,
    spawn_app_losing, text_of,
};

async fn say(
    conn: &Connection,
    group_id: u64,
    id: &str,
) -> superapp_client::Result<superapp_client::proto::v1::SendAck> {
    conn.send_group_text(group_id, id, "hi", &[], false).await
}

async fn users(app: &TestApp, names: &[&str]) -> Vec<User> {
    let mut list = Vec::new();
    for name in names {
        list.push(app.user(name).await);
    }
    list
}

#[tokio::test]
async fn a_group_is_created_messaged_once_and_listed_beside_direct_chats() {
    let app = spawn_app().await;
    let [owner, ann, bo] = <[User; 3]>::try_from(users(&app, &["Olga", "Ann", "Bo"]).await)
        .ok()
        .unwrap();
    let (oc, ac, bc) = (
        app.connect(&owner).await,
        app.connect(&ann).await,
        app.connect(&bo).await,
    );
    let owner_tablet = app.connect(&owner).await;
    let group = app
        .http
        .create_group(&owner.tokens.access_token, "Hikers", &[ann.id, bo.id])
        .await
        .unwrap();
    assert_eq!(
        (group.member_count, group.my_role.as_deref()),
        (3, Some("owner"))
    );
    // Everyone hears of the new group, live.
    for conn in [&oc, &ac, &bc] {
        let e = next_group_event(conn).await;
        assert_eq!(
            (e.group_id, e.kind()),
            (group.group_id, group_event::Kind::Created)
        );
    }

    let ack = oc
        .send_group_text(group.group_id, "m1", "hello all", &[ann.id], false)
        .await
        .unwrap();
    assert_eq!(
        (ack.seq, ack.conversation_id.as_str()),
        (1, group.conversation_id.as_str())
    );
    // Every member's devices hear it, the sender's other device too; the
    // sending connection has the ack instead.
    for conn in [&ac, &bc, &owner_tablet] {
        let m = next_message(conn).await;
        assert_eq!(
            (
                m.conversation_id.as_str(),
                m.seq,
                text_of(&m),
                m.mentions.clone()
            ),
            (group.conversation_id.as_str(), 1, "hello all", vec![ann.id])
        );
    }
    // Retries are idempotent, as in one-to-one chats.
    let again = oc
        .send_group_text(group.group_id, "m1", "hello all", &[ann.id], false)
        .await
        .unwrap();
    assert!(again.duplicate && again.seq == 1);
    // Neither came back to the connection that sent them.
    let barrier = ac.send_text(owner.id, "b1", "after").await.unwrap();
    next_message_is(&oc, &barrier).await;

    // The list shows the group beside a one-to-one chat, with unread and
    // mention flags per member.
    ac.send_text(bo.id, "d1", "psst").await.unwrap();
    let list = bc.list_conversations(10, "").await.unwrap().conversations;
    assert_eq!(list.len(), 2);
    let g = list
        .iter()
        .find(|c| c.conversation_id == group.conversation_id)
        .unwrap();
    assert_eq!(
        (
            g.group_id,
            g.name.as_str(),
            g.member_count,
            g.unread,
            g.mentioned
        ),
        (group.group_id, "Hikers", 3, 1, false)
    );
    let ann_list = ac.list_conversations(10, "").await.unwrap().conversations;
    let g = ann_list
        .iter()
        .find(|c| c.conversation_id == group.conversation_id)
        .unwrap();
    assert!(g.mentioned && g.unread == 1);
    // Reading clears the flag; group read marks are private.
    ac.mark_read(&group.conversation_id, 1).await.unwrap();
    let ann_list = ac.list_conversations(10, "").await.unwrap().conversations;
    assert!(ann_list.iter().all(|c| !c.mentioned));

    // @all is for the owner and admins.
    assert_eq!(
        code(
            bc.send_group_text(group.group_id, "m2", "hey", &[], true)
                .await
        ),
        "mention_all_not_allowed"
    );
    oc.send_group_text(group.group_id, "m3", "meeting", &[], true)
        .await
        .unwrap();
    let page = bc.pull(&group.conversation_id, 0, 10).await.unwrap();
    assert_eq!(page.messages.len(), 2);
    assert!(page.messages[1].mention_all);
    let bo_list = bc.list_conversations(10, "").await.unwrap().conversations;
    assert!(
        bo_list
            .iter()
            .any(|c| c.conversation_id == group.conversation_id && c.mentioned)
    );
}

#[tokio::test]
async fn every_role_can_do_what_it_may_and_nothing_more() {
    let app = spawn_app().await;
    let people = users(&app, &["Olga", "Adam", "Mia", "Max", "Zed"]).await;
    let (owner, admin, mia, max, zed) =
        (&people[0], &people[1], &people[2], &people[3], &people[4]);
    let group = app
        .http
        .create_group(
            &owner.tokens.access_token,
            "Club",
            &[admin.id, mia.id, max.id],
        )
        .await
        .unwrap();
    let g = format!("/v1/groups/{}", group.group_id);
    let member = |id: u64| format!("{g}/members/{id}");

    // Only the owner names admins.
    assert_eq!(
        refused(
            &app,
            mia,
            "PATCH",
            &member(max.id),
            json!({"role": "admin"})
        )
        .await,
        "not_allowed"
    );
    let (status, _) = api(
        &app,
        owner,
        "PATCH",
        &member(admin.id),
        json!({"role": "admin"}),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        refused(
            &app,
            admin,
            "PATCH",
            &member(mia.id),
            json!({"role": "admin"})
        )
        .await,
        "not_allowed"
    );

    // Settings and announcements: admins and the owner, not members.
    assert_eq!(
        refused(&app, mia, "PATCH", &g, json!({"name": "Mine"})).await,
        "not_allowed"
    );
    let (status, body) = api(
        &app,
        admin,
        "PATCH",
        &g,
        json!({"announcement": "Sunday 10:00"}),
    )
    .await;
    assert_eq!(
        (status, body["announcement"].as_str()),
        (200, Some("Sunday 10:00"))
    );

    // Removal: an admin over members only; the owner over anyone.
    assert_eq!(
        refused(&app, mia, "DELETE", &member(max.id), Value::Null).await,
        "not_allowed"
    );
    assert_eq!(
        refused(&app, admin, "DELETE", &member(owner.id), Value::Null).await,
        "not_allowed"
    );
    let (status, _) = api(&app, admin, "DELETE", &member(max.id), Value::Null).await;
    assert_eq!(status, 204);
    assert_eq!(
        refused(&app, admin, "DELETE", &member(zed.id), Value::Null).await,
        "unknown_member"
    );

    // Muting: an admin over members, never over the owner.
    assert_eq!(
        refused(
            &app,
            mia,
            "PATCH",
            &member(admin.id),
            json!({"mute_secs": 60})
        )
        .await,
        "not_allowed"
    );
    assert_eq!(
        refused(
            &app,
            admin,
            "PATCH",
            &member(owner.id),
            json!({"mute_secs": 60})
        )
        .await,
        "not_allowed"
    );
    // A nickname is one's own.
    assert_eq!(
        refused(
            &app,
            mia,
            "PATCH",
            &member(admin.id),
            json!({"nickname": "boss"})
        )
        .await,
        "not_allowed"
    );
    // A request that also names someone else's nickname changes nothing.
    let both = json!({"mute_secs": 60, "nickname": "x"});
    assert_eq!(
        refused(&app, admin, "PATCH", &member(mia.id), both).await,
        "not_allowed"
    );
    let (_, listed) = api(&app, admin, "GET", &format!("{g}/members"), Value::Null).await;
    let mia_id = mia.id.to_string();
    let mia_row = listed["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user_id"].as_str() == Some(mia_id.as_str()))
        .unwrap()
        .clone();
    assert_eq!(mia_row["muted_until_ms"], 0);
    let (status, _) = api(
        &app,
        mia,
        "PATCH",
        &member(mia.id),
        json!({"nickname": "Mimi"}),
    )
    .await;
    assert_eq!(status, 204);

    // The owner cannot just leave; others can. Ownership moves to a member,
    // and the former owner stays on as an admin.
    assert_eq!(
        refused(&app, owner, "DELETE", &member(owner.id), Value::Null).await,
        "owner_must_transfer"
    );
    assert_eq!(
        refused(
            &app,
            admin,
            "POST",
            &format!("{g}/owner"),
            json!({"user_id": admin.id.to_string()})
        )
        .await,
        "not_allowed"
    );
    let (status, _) = api(
        &app,
        owner,
        "POST",
        &format!("{g}/owner"),
        json!({"user_id": admin.id.to_string()}),
    )
    .await;
    assert_eq!(status, 204);
    let (_, body) = api(&app, owner, "GET", &g, Value::Null).await;
    assert_eq!(
        (body["owner"].as_str(), body["my_role"].as_str()),
        (Some(admin.id.to_string().as_str()), Some("admin"))
    );
    let (status, _) = api(&app, mia, "DELETE", &member(mia.id), Value::Null).await;
    assert_eq!(status, 204);

    // Only the owner dissolves; afterwards the group is gone for everyone.
    assert_eq!(
        refused(&app, owner, "DELETE", &g, Value::Null).await,
        "not_allowed"
    );
    let (status, _) = api(&app, admin, "DELETE", &g, Value::Null).await;
    assert_eq!(status, 204);
    assert_eq!(
        refused(&app, owner, "GET", &g, Value::Null).await,
        "unknown_group"
    );
    let conn = app.connect(owner).await;
    assert_eq!(
        code(
            conn.send_group_text(group.group_id, "x", "hi", &[], false)
                .await
        ),
        "unknown_group"
    );
}

#[tokio::test]
async fn at_most_ten_admins() {
    let app = spawn_app().await;
    let owner = app.user("Olga").await;
    let mut ids = Vec::new();
    for i in 0..11 {
        ids.push(app.user(&format!("A{i}")).await.id);
    }
    let group = app
        .http
        .create_group(&owner.tokens.access_token, "Admins", &ids)
        .await
        .unwrap();
    let path = |id: u64| format!("/v1/groups/{}/members/{id}", group.group_id);
    for &id in &ids[..10] {
        let (status, _) = api(&app, &owner, "PATCH", &path(id), json!({"role": "admin"})).await;
        assert_eq!(status, 204);
    }
    assert_eq!(
        refused(
            &app,
            &owner,
            "PATCH",
            &path(ids[10]),
            json!({"role": "admin"})
        )
        .await,
        "too_many_admins"
    );
    // Handing ownership to a plain member leaves no room for the former
    // owner among the admins: they stay on as a member.
    let g = format!("/v1/groups/{}", group.group_id);
    let to = json!({"user_id": ids[10].to_string()});
    let (status, _) = api(&app, &owner, "POST", &format!("{g}/owner"), to).await;
    assert_eq!(status, 204);
    let (_, body) = api(&app, &owner, "GET", &g, Value::Null).await;
    assert_eq!(body["my_role"].as_str(), Some("member"));
}

#[tokio::test]
async fn members_see_from_joining_and_removed_members_see_nothing_after() {
    let app = spawn_app().await;
    let people = users(&app, &["Olga", "Ann", "Cy", "Dee"]).await;
    let (owner, ann, cy, dee) = (&people[0], &people[1], &people[2], &people[3]);
    let group = app
        .http
        .create_group(&owner.tokens.access_token, "Rules", &[ann.id, cy.id])
        .await
        .unwrap();
    let (oc, cc) = (app.connect(owner).await, app.connect(cy).await);
    for i in 0..3 {
        oc.send_group_text(group.group_id, &format!("a{i}"), "before", &[], false)
            .await
            .unwrap();
    }
    // Dee joins late and sees only what follows.
    app.http
        .add_group_members(&owner.tokens.access_token, group.group_id, &[dee.id])
        .await
        .unwrap();
    let dc = app.connect(dee).await;
    oc.send_group_text(group.group_id, "b0", "after Dee", &[], false)
        .await
        .unwrap();
    assert_eq!(text_of(&next_message(&dc).await), "after Dee");
    let page = dc.pull(&group.conversation_id, 0, 100).await.unwrap();
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![4]
    );

    // Cy is removed: told so, then nothing more, live or by sync.
    let (status, _) = api(
        &app,
        owner,
        "DELETE",
        &format!("/v1/groups/{}/members/{}", group.group_id, cy.id),
        Value::Null,
    )
    .await;
    assert_eq!(status, 204);
    loop {
        let e = next_group_event(&cc).await;
        if e.kind() == group_event::Kind::MemberRemoved {
            assert_eq!(e.users, vec![cy.id]);
            break;
        }
    }
    oc.send_group_text(group.group_id, "c0", "without Cy", &[], false)
        .await
        .unwrap();
    let barrier = oc.send_text(cy.id, "d0", "after c0").await.unwrap();
    next_message_is(&cc, &barrier).await;
    assert_eq!(
        code(cc.pull(&group.conversation_id, 0, 100).await),
        "not_a_member"
    );
    assert_eq!(
        code(
            cc.send_group_text(group.group_id, "x", "let me in", &[], false)
                .await
        ),
        "not_a_member"
    );
    let listed = cc.list_conversations(10, "").await.unwrap().conversations;
    assert!(listed.iter().all(|c| c.group_id != group.group_id));
    // A fresh session of the removed member is not delivered the group either.
    let cc2 = app.connect(cy).await;
    oc.send_group_text(group.group_id, "c1", "still without Cy", &[], false)
        .await
        .unwrap();
    let barrier = oc.send_text(cy.id, "d1", "after c1").await.unwrap();
    next_message_is(&cc2, &barrier).await;
}

#[tokio::test]
async fn a_removed_member_whose_departure_notice_is_lost_hears_nothing_more_of_the_group() {
    use superapp_client::proto::v1::bus_envelope::Kind;
    let (app, bus) = spawn_app_losing(
        |_| {},
        |_, envelope| matches!(&envelope.kind, Some(Kind::Membership(m)) if !m.joined),
    )
    .await;
    let people = users(&app, &["Olga", "Cy"]).await;
    let (owner, cy) = (&people[0], &people[1]);
    let group = app
        .http
        .create_group(&owner.tokens.access_token, "Lossy", &[cy.id])
        .await
        .unwrap();
    let (oc, cc) = (app.connect(owner).await, app.connect(cy).await);
    // Answered once the session has started, its groups delivered.
    cc.ping().await.unwrap();

    let path = format!("/v1/groups/{}/members/{}", group.group_id, cy.id);
    let (status, _) = api(&app, owner, "DELETE", &path, Value::Null).await;
    assert_eq!(status, 204);
    oc.send_group_text(group.group_id, "g1", "without Cy", &[], false)
        .await
        .unwrap();
    // Sent after the group's message, on Cy's own topic: once it is here,
    // the group's message would have been too.
    oc.send_text(cy.id, "d1", "barrier").await.unwrap();
    assert_eq!(bus.lost(), 1, "the departure's notice was lost");

    let mut told_of_removal = false;
    loop {
        let event = cc
            .next_event(Duration::from_secs(5))
            .await
            .expect("the direct message arrives");
        match event.kind {
            Some(event::Kind::Group(e)) if e.kind() == group_event::Kind::MemberRemoved => {
                told_of_removal = true;
            }
            Some(event::Kind::Message(m)) => {
                assert_eq!(
                    text_of(&m),
                    "barrier",
                    "a message after the removal arrived"
                );
                break;
            }
            _ => {}
        }
    }
    assert!(
        told_of_removal,
        "the group's own event told Cy of the removal"
    );
}

#[tokio::test]
async fn mutes_and_slow_mode_hold_back_members_but_not_admins() {
    let app = spawn_app().await;
    let people = users(&app, &["Olga", "Ann", "Bo"]).await;
    let (owner, ann, bo) = (&people[0], &people[1], &people[2]);
    let group = app
        .http
        .create_group(&owner.tokens.access_token, "Quiet", &[ann.id, bo.id])
        .await
        .unwrap();
    let g = format!("/v1/groups/{}", group.group_id);
    let (oc, ac, bc) = (
        app.connect(owner).await,
        app.connect(ann).await,
        app.connect(bo).await,
    );
    let gid = group.group_id;

    // One member muted for a minute; the others speak.
    let (status, _) = api(
        &app,
        owner,
        "PATCH",
        &format!("{g}/members/{}", ann.id),
        json!({"mute_secs": 60}),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(code(say(&ac, gid, "a1").await), "muted");
    say(&bc, gid, "b1").await.unwrap();
    let (status, _) = api(
        &app,
        owner,
        "PATCH",
        &format!("{g}/members/{}", ann.id),
        json!({"mute_secs": 0}),
    )
    .await;
    assert_eq!(status, 204);
    say(&ac, gid, "a2").await.unwrap();

    // Mute all: only the owner and admins speak.
    api(&app, owner, "PATCH", &g, json!({"mute_all": true})).await;
    assert_eq!(code(say(&bc, gid, "b2").await), "group_muted");
    say(&oc, gid, "o1").await.unwrap();
    api(&app, owner, "PATCH", &g, json!({"mute_all": false})).await;

    // Slow mode: one message per 2 seconds per member; admins are exempt.
    // Bo's last message counts, so the first send waits out one period.
    api(&app, owner, "PATCH", &g, json!({"slow_mode_secs": 2})).await;
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    say(&bc, gid, "b3").await.unwrap();
    let err = say(&bc, gid, "b4").await.unwrap_err();
    assert_eq!(err.code(), Some("slow_mode"));
    assert!(err.retry_after_ms().is_some_and(|ms| ms > 0 && ms <= 2_000));
    say(&oc, gid, "o2").await.unwrap();
    say(&oc, gid, "o3").await.unwrap();
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    say(&bc, gid, "b4").await.unwrap();
    // Refused sends stored nothing.
    let page = oc.pull(&group.conversation_id, 0, 100).await.unwrap();
    let ids: Vec<_> = page
        .messages
        .iter()
        .map(|m| m.client_msg_id.as_str())
        .collect();
    assert_eq!(ids, ["b1", "a2", "o1", "b3", "o2", "o3", "b4"]);
}

#[tokio::test]
async fn invitation_links_and_approval() {
    let app = spawn_app().await;
    let people = users(&app, &["Olga", "Mia", "Eve", "Fay", "Gil"]).await;
    let (owner, mia, eve, fay, gil) = (&people[0], &people[1], &people[2], &people[3], &people[4]);
    let group = app
        .http
        .create_group(&owner.tokens.access_token, "Open", &[mia.id])
        .await
        .unwrap();
    let g = format!("/v1/groups/{}", group.group_id);
    assert_eq!(
        refused(&app, mia, "POST", &format!("{g}/invite-links"), Value::Null).await,
        "not_allowed"
    );
    let (_, link) = api(
        &app,
        owner,
        "POST",
        &format!("{g}/invite-links"),
        Value::Null,
    )
    .await;
    let token = link["token"].as_str().unwrap().to_string();
    let (status, body) = api(
        &app,
        eve,
        "POST",
        "/v1/groups/join",
        json!({"token": token}),
    )
    .await;
    assert_eq!((status, body["joined"].as_bool()), (200, Some(true)));
    assert_eq!(
        refused(
            &app,
            fay,
            "POST",
            "/v1/groups/join",
            json!({"token": "nope"})
        )
        .await,
        "invalid_invite"
    );

    // With approval on, links and members' invitations wait for an admin.
    api(&app, owner, "PATCH", &g, json!({"join_approval": true})).await;
    let (status, body) = api(
        &app,
        fay,
        "POST",
        "/v1/groups/join",
        json!({"token": token}),
    )
    .await;
    assert_eq!((status, body["joined"].as_bool()), (202, Some(false)));
    let join = app
        .http
        .add_group_members(&mia.tokens.access_token, group.group_id, &[gil.id])
        .await
        .unwrap();
    assert_eq!((join.added.len(), join.pending.clone()), (0, vec![gil.id]));
    assert_eq!(
        refused(&app, mia, "GET", &format!("{g}/join-requests"), Value::Null).await,
        "not_allowed"
    );
    let (_, requests) = api(
        &app,
        owner,
        "GET",
        &format!("{g}/join-requests"),
        Value::Null,
    )
    .await;
    assert_eq!(requests["requests"].as_array().unwrap().len(), 2);
    let decide = |id: u64| format!("{g}/join-requests/{id}");
    let (_, body) = api(
        &app,
        owner,
        "POST",
        &decide(fay.id),
        json!({"approve": true}),
    )
    .await;
    assert_eq!(body["joined"].as_bool(), Some(true));
    let (_, body) = api(
        &app,
        owner,
        "POST",
        &decide(gil.id),
        json!({"approve": false}),
    )
    .await;
    assert_eq!(body["joined"].as_bool(), Some(false));
    assert_eq!(
        refused(
            &app,
            owner,
            "POST",
            &decide(gil.id),
            json!({"approve": true})
        )
        .await,
        "unknown_join_request"
    );
    let group = app
        .http
        .group(&owner.tokens.access_token, group.group_id)
        .await
        .unwrap();
    assert_eq!(group.member_count, 4); // Olga, Mia, Eve, Fay

    // Member list: pages and search by nickname or display name.
    let (_, page) = api(
        &app,
        mia,
        "GET",
        &format!("{g}/members?limit=3"),
        Value::Null,
    )
    .await;
    assert_eq!(page["members"].as_array().unwrap().len(), 3);
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let (_, rest) = api(
        &app,
        mia,
        "GET",
        &format!("{g}/members?limit=3&cursor={cursor}"),
        Value::Null,
    )
    .await;
    assert_eq!(rest["members"].as_array().unwrap().len(), 1);
    assert_eq!(rest["next_cursor"].as_str(), Some(""));
    let (_, found) = api(&app, mia, "GET", &format!("{g}/members?q=ev"), Value::Null).await;
    let found = found["members"].as_array().unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["display_name"].as_str(), Some("Eve"));
}

#[tokio::test]
async fn bad_group_requests_get_clear_codes_and_change_nothing() {
    let app = spawn_app().await;
    let people = users(&app, &["Olga", "Mia", "Out"]).await;
    let (owner, mia, outsider) = (&people[0], &people[1], &people[2]);
    let group = app
        .http
        .create_group(&owner.tokens.access_token, "Strict", &[mia.id])
        .await
        .unwrap();
    let g = format!("/v1/groups/{}", group.group_id);

    assert_eq!(
        refused(&app, owner, "GET", "/v1/groups/12345", Value::Null).await,
        "unknown_group"
    );
    assert_eq!(
        refused(&app, owner, "GET", "/v1/groups/abc", Value::Null).await,
        "unknown_group"
    );
    assert_eq!(
        refused(&app, outsider, "GET", &g, Value::Null).await,
        "not_a_member"
    );
    let conn = app.connect(outsider).await;
    assert_eq!(
        code(
            conn.send_group_text(group.group_id, "x", "hi", &[], false)
                .await
        ),
        "not_a_member"
    );
    assert_eq!(
        code(conn.send_group_text(424242, "y", "hi", &[], false).await),
        "unknown_group"
    );
    let too_many: Vec<u64> = (1..=21).collect();
    let member_conn = app.connect(mia).await;
    assert_eq!(
        code(
            member_conn
                .send_group_text(group.group_id, "z", "hi", &too_many, false)
                .await
        ),
        "too_many_mentions"
    );
    assert_eq!(
        refused(
            &app,
            owner,
            "POST",
            "/v1/groups",
            json!({"name": "x".repeat(65)})
        )
        .await,
        "invalid_group_name"
    );
    assert_eq!(
        refused(&app, owner, "POST", "/v1/groups", json!({"name": "  "})).await,
        "invalid_group_name"
    );
    assert_eq!(
        refused(&app, owner, "PATCH", &g, json!({"name": "y".repeat(65)})).await,
        "invalid_group_name"
    );
    assert_eq!(
        refused(
            &app,
            owner,
            "POST",
            "/v1/groups",
            json!({"name": "ghosts", "members": ["424242"]})
        )
        .await,
        "unknown_recipient"
    );
    assert_eq!(
        refused(
            &app,
            owner,
            "POST",
            "/v1/groups",
            json!({"name": "x", "members": ["not a number"]})
        )
        .await,
        "invalid_json"
    );
    // 6,000 others and the owner make 6,001: refused before anything is stored.
    let crowd: Vec<String> = (1..=6_000u64).map(|i| i.to_string()).collect();
    assert_eq!(
        refused(
            &app,
            owner,
            "POST",
            "/v1/groups",
            json!({"name": "crowd", "members": crowd})
        )
        .await,
        "group_full"
    );
    assert_eq!(
        refused(&app, owner, "PATCH", &g, json!({"slow_mode_secs": 99_999})).await,
        "invalid_slow_mode"
    );
    assert_eq!(
        refused(
            &app,
            owner,
            "PATCH",
            &format!("{g}/members/{}", mia.id),
            json!({"role": "owner"})
        )
        .await,
        "invalid_role"
    );
    assert_eq!(
        refused(&app, owner, "PATCH", &g, json!({"unknown": 1})).await,
        "invalid_json"
    );
    // Nothing changed: same name, same members, no messages, only the first group.
    let after = app
        .http
        .group(&owner.tokens.access_token, group.group_id)
        .await
        .unwrap();
    assert_eq!(
        (after.name.as_str(), after.member_count, after.last_seq),
        ("Strict", 2, 0)
    );
    let listed = app
        .connect(owner)
        .await
        .list_conversations(50, "")
        .await
        .unwrap();
    assert_eq!(listed.conversations.len(), 1);
}
