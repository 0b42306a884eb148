//! Who may add whom to a group, with the shipped defaults (friends add each
//! other directly; anyone else's addition is an invitation): invitations
//! live and listed, accepted into the group's messages from then on,
//! declined, lapsed; "invite" for everyone; a blocker answered as invited
//! and told nothing; and the refusals, over real HTTP and WebSocket clients.

use std::time::Duration;

use serde_json::{Value, json};
use superapp_account::model::{WhoMayAddMe, WhoMayMessage};
use superapp_chat::GroupStore as _;
use superapp_chat::model::{Asked, GroupId, UserId};
use superapp_client::proto::v1::group_event::Kind;

use crate::helpers::{
    TestApp, User, api, code, next_group_event, next_invitation, next_message, refused,
    spawn_app_with, text_of,
};

/// A server with the shipped social defaults.
async fn shipped() -> TestApp {
    spawn_app_with(|c| {
        c.social.who_may_message = WhoMayMessage::Friends;
        c.social.who_may_add_me = WhoMayAddMe::Friends;
    })
    .await
}

/// The ids of a JSON list of id strings.
fn ids(list: &Value) -> Vec<u64> {
    (list.as_array().unwrap().iter())
        .map(|id| id.as_str().unwrap().parse().unwrap())
        .collect()
}

/// The group ids of `who`'s waiting invitations.
async fn invited_to(app: &TestApp, who: &User) -> Vec<u64> {
    let waiting = app.http.group_invitations(&who.tokens.access_token).await;
    (waiting.unwrap().invitations.iter())
        .map(|i| i.group_id)
        .collect()
}

#[tokio::test]
async fn a_friend_is_added_at_once_and_a_stranger_is_invited_accepts_and_hears_the_group_from_then_on()
 {
    let app = shipped().await;
    let (owner, friend, stranger) = (
        app.user("Olga").await,
        app.user("Fay").await,
        app.user("Sam").await,
    );
    app.befriend(&owner, &friend).await;
    let (oc, sc) = (app.connect(&owner).await, app.connect(&stranger).await);

    let group = app
        .http
        .create_group(
            &owner.tokens.access_token,
            "Hikers",
            &[friend.id, stranger.id],
        )
        .await
        .unwrap();
    assert_eq!(
        (group.added.clone(), group.invited.clone()),
        (Some(vec![friend.id]), Some(vec![stranger.id]))
    );
    assert_eq!(group.member_count, 2);

    // The stranger hears of it live, and finds it in their list.
    let invitation = next_invitation(&sc).await;
    assert_eq!(
        (
            invitation.group_id,
            invitation.group_name.as_str(),
            invitation.inviter,
            invitation.inviter_name.as_str()
        ),
        (group.group_id, "Hikers", owner.id, "Olga")
    );
    assert_eq!(
        invitation.expires_ms - invitation.invited_ms,
        7 * 24 * 3600 * 1000
    );
    let waiting = (app.http.group_invitations(&stranger.tokens.access_token))
        .await
        .unwrap()
        .invitations;
    assert_eq!(waiting.len(), 1);
    assert_eq!(
        (
            waiting[0].group_id,
            waiting[0].name.as_str(),
            waiting[0].member_count,
            waiting[0].inviter,
            waiting[0].inviter_name.as_str(),
            waiting[0].expires_at_ms
        ),
        (
            group.group_id,
            "Hikers",
            2,
            owner.id,
            "Olga",
            invitation.expires_ms
        )
    );
    // Not a member yet: nothing of the group reaches the stranger.
    oc.send_group_text(group.group_id, "m1", "before", &[], false)
        .await
        .unwrap();
    assert_eq!(
        code(sc.pull(&group.conversation_id, 0, 10).await),
        "not_a_member"
    );

    let joined = app
        .http
        .accept_group_invitation(&stranger.tokens.access_token, group.group_id)
        .await
        .unwrap();
    assert_eq!((joined.group_id, joined.joined), (group.group_id, true));
    // A join like any other, told to the group and the newcomer, the
    // inviter its actor.
    for conn in [&sc, &oc] {
        let e = loop {
            let e = next_group_event(conn).await;
            if e.kind() == Kind::MembersAdded {
                break e;
            }
        };
        assert_eq!(
            (e.group_id, e.actor, e.users),
            (group.group_id, owner.id, vec![stranger.id])
        );
    }
    let ack = oc
        .send_group_text(group.group_id, "m2", "welcome", &[], false)
        .await
        .unwrap();
    let m = next_message(&sc).await;
    assert_eq!((m.seq, text_of(&m)), (ack.seq, "welcome"));
    let page = sc.pull(&group.conversation_id, 0, 10).await.unwrap();
    let seen: Vec<&str> = page.messages.iter().map(text_of).collect();
    assert_eq!(seen, ["welcome"], "a newcomer sees from their joining on");
    assert!(invited_to(&app, &stranger).await.is_empty());
    assert_eq!(
        code(
            app.http
                .accept_group_invitation(&stranger.tokens.access_token, group.group_id)
                .await
        ),
        "unknown_group_invitation"
    );

    // Sharing a group does not make them friends.
    assert_eq!(
        code(sc.send_text(owner.id, "d1", "hi").await),
        "message_refused"
    );
    let contacts = app.http.contacts(&stranger.tokens.access_token, 0, 0);
    assert!(contacts.await.unwrap().changes.is_empty());
}

#[tokio::test]
async fn a_declined_invitation_joins_nothing_and_tells_nobody() {
    let app = shipped().await;
    let (owner, stranger) = (app.user("Olga").await, app.user("Sam").await);
    let oc = app.connect(&owner).await;
    let group = (app
        .http
        .create_group(&owner.tokens.access_token, "Quiet", &[]))
    .await
    .unwrap();
    next_group_event(&oc).await;
    let added = app
        .http
        .add_group_members(&owner.tokens.access_token, group.group_id, &[stranger.id])
        .await
        .unwrap();
    assert_eq!(
        (added.added, added.pending, added.invited),
        (vec![], vec![], vec![stranger.id])
    );
    assert_eq!(invited_to(&app, &stranger).await, [group.group_id]);

    (app.http
        .decline_group_invitation(&stranger.tokens.access_token, group.group_id))
    .await
    .unwrap();
    assert!(invited_to(&app, &stranger).await.is_empty());
    let declined_again = app
        .http
        .decline_group_invitation(&stranger.tokens.access_token, group.group_id);
    assert_eq!(code(declined_again.await), "unknown_group_invitation");
    let shown = app.http.group(&owner.tokens.access_token, group.group_id);
    assert_eq!(shown.await.unwrap().member_count, 1);
    // The inviter hears nothing of it: the next group event is a later one.
    let path = format!("/v1/groups/{}", group.group_id);
    let body = json!({"announcement": "after"});
    assert_eq!(api(&app, &owner, "PATCH", &path, body).await.0, 200);
    assert_eq!(next_group_event(&oc).await.kind(), Kind::Announcement);

    // Asked again, the invitation comes back.
    app.http
        .add_group_members(&owner.tokens.access_token, group.group_id, &[stranger.id])
        .await
        .unwrap();
    assert_eq!(invited_to(&app, &stranger).await, [group.group_id]);
}

#[tokio::test]
async fn an_invitation_lapses_after_its_time() {
    let app = spawn_app_with(|c| {
        c.social.who_may_add_me = WhoMayAddMe::Friends;
        c.chat.invitation_ttl_secs = 1;
    })
    .await;
    let (owner, stranger) = (app.user("Olga").await, app.user("Sam").await);
    let group = app
        .http
        .create_group(&owner.tokens.access_token, "Brief", &[stranger.id])
        .await
        .unwrap();
    assert_eq!(invited_to(&app, &stranger).await, [group.group_id]);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!(invited_to(&app, &stranger).await.is_empty());
    let late = app
        .http
        .accept_group_invitation(&stranger.tokens.access_token, group.group_id);
    assert_eq!(code(late.await), "unknown_group_invitation");
    let shown = app.http.group(&owner.tokens.access_token, group.group_id);
    assert_eq!(shown.await.unwrap().member_count, 1);
    // Asking again starts a new one.
    app.http
        .add_group_members(&owner.tokens.access_token, group.group_id, &[stranger.id])
        .await
        .unwrap();
    assert_eq!(invited_to(&app, &stranger).await, [group.group_id]);
}

#[tokio::test]
async fn under_invite_even_friends_are_invited_and_under_anyone_strangers_add_directly() {
    let app = shipped().await;
    let (owner, friend, stranger) = (
        app.user("Olga").await,
        app.user("Fay").await,
        app.user("Sam").await,
    );
    app.befriend(&owner, &friend).await;
    let (_, settings) = api(&app, &friend, "GET", "/v1/me/privacy", Value::Null).await;
    assert_eq!(settings["who_may_add_me"], "friends");
    let body = json!({"who_may_add_me": "invite"});
    let (status, settings) = api(&app, &friend, "PATCH", "/v1/me/privacy", body).await;
    assert_eq!(
        (
            status,
            settings["who_may_add_me"].as_str(),
            settings["who_may_message"].as_str()
        ),
        (200, Some("invite"), Some("friends"))
    );
    let fc = app.connect(&friend).await;
    let group = app
        .http
        .create_group(&owner.tokens.access_token, "Picky", &[friend.id])
        .await
        .unwrap();
    assert_eq!(group.invited, Some(vec![friend.id]));
    assert_eq!(next_invitation(&fc).await.group_id, group.group_id);

    // "anyone": a stranger adds them at once.
    let body = json!({"who_may_add_me": "anyone"});
    assert_eq!(
        api(&app, &friend, "PATCH", "/v1/me/privacy", body).await.0,
        200
    );
    let other = app
        .http
        .create_group(&stranger.tokens.access_token, "Open", &[friend.id])
        .await
        .unwrap();
    assert_eq!(
        (other.added, other.invited, other.member_count),
        (Some(vec![friend.id]), Some(vec![]), 2)
    );
}

#[tokio::test]
async fn a_blocker_is_answered_as_invited_and_nothing_reaches_them() {
    let app = shipped().await;
    let (owner, blocker, other) = (
        app.user("Olga").await,
        app.user("Bea").await,
        app.user("Cy").await,
    );
    app.befriend(&owner, &blocker).await;
    app.http
        .block(&blocker.tokens.access_token, owner.id)
        .await
        .unwrap();
    let bc = app.connect(&blocker).await;

    // A friend who blocks the owner is answered as a stranger is: invited.
    let group = app
        .http
        .create_group(&owner.tokens.access_token, "Trip", &[blocker.id, other.id])
        .await
        .unwrap();
    let mut both = vec![blocker.id, other.id];
    both.sort();
    assert_eq!(
        (group.added, group.invited, group.member_count),
        (Some(vec![]), Some(both), 1)
    );
    let added = app
        .http
        .add_group_members(&owner.tokens.access_token, group.group_id, &[blocker.id])
        .await
        .unwrap();
    assert_eq!(added.invited, [blocker.id]);
    // Nothing stored: nothing listed, nothing to accept.
    assert!(invited_to(&app, &blocker).await.is_empty());
    let accepted = app
        .http
        .accept_group_invitation(&blocker.tokens.access_token, group.group_id);
    assert_eq!(code(accepted.await), "unknown_group_invitation");
    // Nothing sent: the next invitation the blocker hears is someone else's.
    let barrier = app
        .http
        .create_group(&other.tokens.access_token, "Barrier", &[blocker.id])
        .await
        .unwrap();
    assert_eq!(next_invitation(&bc).await.group_id, barrier.group_id);
    assert_eq!(invited_to(&app, &blocker).await, [barrier.group_id]);
}

#[tokio::test]
async fn a_plain_member_s_invitation_accepted_waits_for_an_admin_where_the_group_asks_for_approval()
{
    let app = shipped().await;
    let (owner, member, stranger) = (
        app.user("Olga").await,
        app.user("Max").await,
        app.user("Sam").await,
    );
    app.befriend(&owner, &member).await;
    let group = app
        .http
        .create_group(&owner.tokens.access_token, "Strict", &[member.id])
        .await
        .unwrap();
    let path = format!("/v1/groups/{}", group.group_id);
    let body = json!({"join_approval": true});
    assert_eq!(api(&app, &owner, "PATCH", &path, body).await.0, 200);
    let added = app
        .http
        .add_group_members(&member.tokens.access_token, group.group_id, &[stranger.id])
        .await
        .unwrap();
    assert_eq!(added.invited, [stranger.id]);
    let accept = format!("/v1/group-invitations/{}/accept", group.group_id);
    let (status, body) = api(&app, &stranger, "POST", &accept, Value::Null).await;
    assert_eq!(
        (status, body["joined"].as_bool()),
        (202, Some(false)),
        "{body}"
    );
    let (_, requests) = api(
        &app,
        &owner,
        "GET",
        &format!("{path}/join-requests"),
        Value::Null,
    )
    .await;
    assert_eq!(
        requests["requests"],
        json!([{
            "user_id": stranger.id.to_string(),
            "inviter": member.id.to_string(),
            "requested_ms": requests["requests"][0]["requested_ms"],
        }])
    );
    let decide = format!("{path}/join-requests/{}", stranger.id);
    let (_, decided) = api(&app, &owner, "POST", &decide, json!({"approve": true})).await;
    assert_eq!(decided["joined"], true);
    let shown = app
        .http
        .group(&stranger.tokens.access_token, group.group_id);
    assert_eq!(shown.await.unwrap().member_count, 3);
}

#[tokio::test]
async fn bad_invitation_answers_get_clear_codes_and_change_nothing() {
    let app = shipped().await;
    let (owner, member, stranger, nosy) = (
        app.user("Olga").await,
        app.user("Max").await,
        app.user("Sam").await,
        app.user("Nosy").await,
    );
    app.befriend(&owner, &member).await;
    let group = app
        .http
        .create_group(&owner.tokens.access_token, "Club", &[stranger.id])
        .await
        .unwrap();
    let accept = |g: &str| format!("/v1/group-invitations/{g}/accept");
    let gid = group.group_id.to_string();

    // Nothing to answer: no such group, not an id, someone else's.
    for (who, path) in [
        (&stranger, accept("12345")),
        (&stranger, accept("not-a-group")),
        (&nosy, accept(&gid)),
    ] {
        assert_eq!(
            refused(&app, who, "POST", &path, Value::Null).await,
            "unknown_group_invitation"
        );
    }
    assert_eq!(
        refused(
            &app,
            &nosy,
            "DELETE",
            &format!("/v1/group-invitations/{gid}"),
            Value::Null
        )
        .await,
        "unknown_group_invitation"
    );
    assert_eq!(invited_to(&app, &stranger).await, [group.group_id]);
    let shown = app.http.group(&owner.tokens.access_token, group.group_id);
    assert_eq!(shown.await.unwrap().member_count, 1);

    // A setting that does not exist changes nothing.
    let body = json!({"who_may_add_me": "everyone", "who_may_message": "anyone"});
    assert_eq!(
        refused(&app, &stranger, "PATCH", "/v1/me/privacy", body).await,
        "invalid_setting"
    );
    let (_, settings) = api(&app, &stranger, "GET", "/v1/me/privacy", Value::Null).await;
    assert_eq!(
        (&settings["who_may_add_me"], &settings["who_may_message"]),
        (&json!("friends"), &json!("friends"))
    );

    // A full group refuses the acceptance and keeps the invitation. The
    // group is filled through the server's own store: 6,000 registrations
    // would take minutes of password hashing.
    let store =
        superapp_chat::SqliteChatStore::open(&app.dir.path().join("chat.db"), None).unwrap();
    let crowd: Vec<UserId> = (1..6_000u64).map(|i| UserId(1_000_000_000 + i)).collect();
    let filled = store.invite(
        GroupId(group.group_id),
        UserId(owner.id),
        crowd,
        Asked::default(),
        1,
    );
    assert_eq!(filled.await.unwrap().added.len(), 5_999);
    assert_eq!(
        refused(&app, &stranger, "POST", &accept(&gid), Value::Null).await,
        "group_full"
    );
    assert_eq!(invited_to(&app, &stranger).await, [group.group_id]);
    let shown = app.http.group(&owner.tokens.access_token, group.group_id);
    assert_eq!(shown.await.unwrap().member_count, 6_000);

    // An inviter who leaves withdraws the invitation.
    let other = app
        .http
        .create_group(&owner.tokens.access_token, "Other", &[member.id])
        .await
        .unwrap();
    let added = app
        .http
        .add_group_members(&member.tokens.access_token, other.group_id, &[nosy.id])
        .await
        .unwrap();
    assert_eq!(added.invited, [nosy.id]);
    let leave = format!("/v1/groups/{}/members/{}", other.group_id, member.id);
    assert_eq!(
        api(&app, &member, "DELETE", &leave, Value::Null).await.0,
        204
    );
    assert!(invited_to(&app, &nosy).await.is_empty());
    let path = accept(&other.group_id.to_string());
    assert_eq!(
        refused(&app, &nosy, "POST", &path, Value::Null).await,
        "unknown_group_invitation"
    );
    // Accepting twice: the second finds nothing.
    let (_, created) = api(
        &app,
        &owner,
        "POST",
        "/v1/groups",
        json!({"name": "Twice", "members": [nosy.id.to_string()]}),
    )
    .await;
    assert_eq!(ids(&created["invited"]), [nosy.id]);
    let twice = accept(created["group_id"].as_str().unwrap());
    assert_eq!(api(&app, &nosy, "POST", &twice, Value::Null).await.0, 200);
    assert_eq!(
        refused(&app, &nosy, "POST", &twice, Value::Null).await,
        "unknown_group_invitation"
    );
}
