//! What each user's own view leaves out, over real HTTP and WebSocket
//! clients: a blocked member's group messages (live, by pull, in the
//! conversation list), a blocked sender's one-to-one messages (withheld, the
//! sender none the wiser, for good), and hidden friends (out of the contact
//! list and the conversation list on every device, found by exact search).
//! Ends with random graphs against a reference model.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::json;
use superapp_account::model::WhoMayMessage;
use superapp_client::proto::v1::contact_event::Kind;
use superapp_client::proto::v1::{Conversation, event};
use superapp_client::{Connection, SyncState, pull_after};

use crate::helpers::{
    TestApp, User, api, next_contact_event, next_message, next_message_is, spawn_app_with, text_of,
};

/// A server with the shipped social defaults (friends only).
async fn shipped() -> TestApp {
    spawn_app_with(|c| c.social.who_may_message = WhoMayMessage::Friends).await
}

fn direct(a: &User, b: &User) -> String {
    format!("d.{}.{}", a.id.min(b.id), a.id.max(b.id))
}

/// Every message of `conversation` that `conn`'s user sees, pulled as a
/// client does from nothing (following `through_seq`).
async fn pulled(conn: &Connection, conversation: &str) -> Vec<(u64, String)> {
    let mut state = SyncState::new();
    let messages = pull_after(conn, &mut state, conversation).await.unwrap();
    messages
        .iter()
        .map(|m| (m.seq, text_of(m).to_string()))
        .collect()
}

/// The caller's conversation list, by conversation id.
async fn listed(conn: &Connection) -> BTreeMap<String, Conversation> {
    let all = superapp_client::sync::all_conversations(conn)
        .await
        .unwrap();
    all.into_iter()
        .map(|c| (c.conversation_id.clone(), c))
        .collect()
}

#[tokio::test]
async fn a_blocker_s_devices_never_get_a_blocked_member_s_group_messages_and_others_do() {
    let app = shipped().await;
    let (ann, bo, cy) = (
        app.user("Ann").await,
        app.user("Bo").await,
        app.user("Cy").await,
    );
    let group = app
        .http
        .create_group(&cy.tokens.access_token, "Hikers", &[ann.id, bo.id])
        .await
        .unwrap();
    let g = group.group_id;
    let (ac, cc) = (app.connect(&ann).await, app.connect(&cy).await);
    let (bo_phone, bo_laptop) = (app.connect(&bo).await, app.connect(&bo).await);
    let before = ac.send_group_text(g, "a0", "before", &[], false).await;
    let before = before.unwrap();
    for conn in [&bo_phone, &bo_laptop, &cc] {
        assert_eq!(next_message(conn).await.seq, before.seq);
    }

    app.http
        .block(&bo.tokens.access_token, ann.id)
        .await
        .unwrap();
    // Ann's message, which mentions Bo, then Cy's: Bo's devices hear Cy's
    // first; Cy hears both.
    let hidden = ac.send_group_text(g, "a1", "hidden", &[bo.id], false).await;
    let hidden = hidden.unwrap();
    let seen = cc
        .send_group_text(g, "c1", "seen", &[], false)
        .await
        .unwrap();
    for conn in [&bo_phone, &bo_laptop] {
        next_message_is(conn, &seen).await;
    }
    assert_eq!(next_message(&cc).await.seq, hidden.seq);
    // Ann's last word is hers alone too.
    let trailing = ac.send_group_text(g, "a2", "trailing", &[], false).await;
    let trailing = trailing.unwrap();

    // By pull: Bo sees what was said before the block and Cy's message; the
    // page accounts for Ann's trailing message, so nothing is pulled again.
    let conversation = group.conversation_id.as_str();
    let expected = vec![
        (before.seq, "before".to_string()),
        (seen.seq, "seen".into()),
    ];
    assert_eq!(pulled(&bo_laptop, conversation).await, expected);
    let page = bo_phone.pull(conversation, seen.seq, 0).await.unwrap();
    assert!(page.messages.is_empty() && !page.has_more);
    assert_eq!(page.through_seq, trailing.seq);
    let all = pulled(&cc, conversation).await;
    assert_eq!(all.len(), 4, "Cy sees everything: {all:?}");

    // The list: Bo's last message is Cy's; unread are Ann's message from
    // before the block and Cy's, not those since, nor Ann's mention of him.
    let bos = listed(&bo_phone).await;
    let entry = &bos[conversation];
    assert_eq!(
        (entry.last_seq, entry.unread, entry.mentioned),
        (seen.seq, 2, false)
    );
    let cys = listed(&cc).await;
    assert_eq!(cys[conversation].last_seq, trailing.seq);

    // Unblocked: Ann's new messages reach Bo again; those sent while he
    // blocked her stay out of his view, on every device, for good.
    app.http
        .unblock(&bo.tokens.access_token, ann.id)
        .await
        .unwrap();
    let after = ac.send_group_text(g, "a3", "after", &[], false).await;
    let after = after.unwrap();
    for conn in [&bo_phone, &bo_laptop] {
        next_message_is(conn, &after).await;
    }
    let seqs: Vec<u64> = (pulled(&bo_phone, conversation).await)
        .iter()
        .map(|(seq, _)| *seq)
        .collect();
    assert_eq!(seqs, [before.seq, seen.seq, after.seq]);
}

#[tokio::test]
async fn a_blocked_sender_s_one_to_one_send_succeeds_but_never_reaches_the_blocker() {
    let app = shipped().await;
    let (ann, bo, cy) = (
        app.user("Ann").await,
        app.user("Bo").await,
        app.user("Cy").await,
    );
    app.befriend(&ann, &bo).await;
    app.befriend(&cy, &bo).await;
    let (ann_phone, ann_laptop) = (app.connect(&ann).await, app.connect(&ann).await);
    let (bc, cc) = (app.connect(&bo).await, app.connect(&cy).await);
    let conversation = direct(&ann, &bo);
    let first = ann_phone.send_text(bo.id, "a1", "hello").await.unwrap();
    assert_eq!(next_message(&bc).await.seq, first.seq);
    assert_eq!(next_message(&ann_laptop).await.seq, first.seq);

    app.http
        .block(&bo.tokens.access_token, ann.id)
        .await
        .unwrap();
    // Acknowledged, and on Ann's other device, as any message is.
    let withheld = ann_phone.send_text(bo.id, "a2", "are you there?").await;
    let withheld = withheld.unwrap();
    assert!(!withheld.duplicate);
    let on_laptop = next_message(&ann_laptop).await;
    assert_eq!(
        (on_laptop.seq, text_of(&on_laptop)),
        (withheld.seq, "are you there?")
    );
    assert_eq!(pulled(&ann_laptop, &conversation).await.len(), 2);
    // Bo hears Cy's next message, not Ann's.
    let barrier = cc.send_text(bo.id, "c1", "hi Bo").await.unwrap();
    next_message_is(&bc, &barrier).await;
    assert_eq!(pulled(&bc, &conversation).await, [(1, "hello".to_string())]);
    let bos = listed(&bc).await;
    assert_eq!(
        (bos[&conversation].last_seq, bos[&conversation].unread),
        (first.seq, 1)
    );
    // Bo reading up to where he can does not show Ann her message as read.
    let read = bc.mark_read(&conversation, u64::MAX).await.unwrap();
    assert_eq!(read.read_seq, first.seq);
    let anns = listed(&ann_phone).await;
    assert_eq!(anns[&conversation].peer_read_seq, first.seq);

    // Unblocked: the withheld message never comes; the next one does, and
    // Bo's client, seeing a gap, pulls past it.
    app.http
        .unblock(&bo.tokens.access_token, ann.id)
        .await
        .unwrap();
    let later = ann_phone.send_text(bo.id, "a3", "hello again").await;
    let later = later.unwrap();
    let live = next_message(&bc).await;
    assert_eq!(live.seq, later.seq);
    assert_eq!(
        live.seq,
        withheld.seq + 1,
        "a gap where the withheld one was"
    );
    let texts: Vec<String> = (pulled(&bc, &conversation).await)
        .into_iter()
        .map(|(_, text)| text)
        .collect();
    assert_eq!(texts, ["hello", "hello again"]);
    let bos = listed(&bc).await;
    assert_eq!(
        (bos[&conversation].last_seq, bos[&conversation].unread),
        (later.seq, 1)
    );
    // A retry of the withheld message, now unblocked, is its first ack again
    // and still reaches nobody new.
    let retry = ann_phone.send_text(bo.id, "a2", "are you there?").await;
    let retry = retry.unwrap();
    assert!(retry.duplicate && retry.seq == withheld.seq);
    assert_eq!(pulled(&bc, &conversation).await.len(), 2);
}

#[tokio::test]
async fn a_conversation_begun_by_a_blocked_stranger_never_appears_for_the_blocker() {
    // Bo takes messages from anyone; a stranger he blocks is not refused
    // (a stranger he did not block would be delivered), only withheld.
    let app = shipped().await;
    let (ann, bo) = (app.user("Ann").await, app.user("Bo").await);
    let body = json!({"who_may_message": "anyone"});
    api(&app, &bo, "PATCH", "/v1/me/privacy", body).await;
    app.http
        .block(&bo.tokens.access_token, ann.id)
        .await
        .unwrap();
    let (ac, bc) = (app.connect(&ann).await, app.connect(&bo).await);
    ac.send_text(bo.id, "a1", "hello?").await.unwrap();
    assert!(listed(&bc).await.is_empty());
    assert!(pulled(&bc, &direct(&ann, &bo)).await.is_empty());
    assert_eq!(listed(&ac).await.len(), 1, "Ann sees her conversation");
}

#[tokio::test]
async fn a_hidden_friend_leaves_both_lists_on_every_device_is_found_by_exact_search_and_comes_back()
{
    let app = shipped().await;
    let (me, bunny, bea) = (
        app.user("Me").await,
        app.user("Bunny Brown").await,
        app.user("Bea").await,
    );
    app.befriend(&bunny, &me).await;
    app.befriend(&bea, &me).await;
    let token = me.tokens.access_token.as_str();
    let path = format!("/v1/contacts/{}", bunny.id);
    api(&app, &me, "PATCH", &path, json!({"remark": "BB"})).await;
    let (phone, laptop) = (app.connect(&me).await, app.connect(&me).await);
    let (bunny_conn, bea_conn) = (app.connect(&bunny).await, app.connect(&bea).await);
    bunny_conn.send_text(me.id, "b1", "hi").await.unwrap();
    bea_conn.send_text(me.id, "e1", "hey").await.unwrap();
    for conn in [&phone, &laptop] {
        for _ in 0..2 {
            next_message(conn).await;
        }
    }
    // The laptop holds the contact list at this version.
    let held = app.http.contacts(token, 0, 0).await.unwrap();
    assert_eq!(held.changes.len(), 2);

    // Hidden from the phone: both devices are told the list changed.
    let version = app.http.hide_friend(token, bunny.id, true).await.unwrap();
    for conn in [&phone, &laptop] {
        let changed = next_contact_event(conn).await;
        assert_eq!(
            (changed.kind(), changed.version),
            (Kind::Changed, version.version)
        );
    }
    // Synced from what it held, the laptop drops Bunny; from nothing,
    // Bunny is not there.
    let changes = app.http.contacts(token, held.version, 0).await.unwrap();
    let seen: Vec<(u64, bool, bool, &str)> = (changes.changes.iter())
        .map(|c| (c.user_id, c.removed, c.hidden, c.remark.as_str()))
        .collect();
    assert_eq!(seen, [(bunny.id, true, true, "")]);
    let fresh = app.http.contacts(token, 0, 0).await.unwrap();
    let ids: Vec<u64> = fresh.changes.iter().map(|c| c.user_id).collect();
    assert_eq!(ids, [bea.id]);
    for conn in [&phone, &laptop] {
        let conversations = listed(conn).await;
        assert!(!conversations.contains_key(&direct(&me, &bunny)));
        assert!(conversations.contains_key(&direct(&me, &bea)));
    }

    // Found by exact search only.
    let found = |q: &'static str| {
        let (http, token) = (app.http.clone(), token.to_string());
        async move {
            let found = http.search_contacts(&token, q).await.unwrap();
            found.contacts.iter().map(|c| c.user_id).collect::<Vec<_>>()
        }
    };
    assert_eq!(found("b").await, [bea.id], "a letter finds visible friends");
    assert!(found("bun").await.is_empty());
    assert!(found("bunny").await.is_empty());
    assert_eq!(found("bunny brown").await, [bunny.id]);
    assert_eq!(found("bb").await, [bunny.id], "the exact remark");
    let by_id = app
        .http
        .search_contacts(token, &bunny.id.to_string())
        .await
        .unwrap();
    assert!(by_id.contacts[0].hidden && by_id.contacts[0].friend);

    // Bunny's messages are still stored and delivered, marked hidden.
    let ack = bunny_conn.send_text(me.id, "b2", "psst").await.unwrap();
    for conn in [&phone, &laptop] {
        let live = next_message(conn).await;
        assert_eq!((live.seq, live.hidden), (ack.seq, true));
    }
    assert_eq!(pulled(&phone, &direct(&me, &bunny)).await.len(), 2);
    assert!(!listed(&laptop).await.contains_key(&direct(&me, &bunny)));
    // So are my own, and my other device's copy is marked hidden too.
    phone.send_text(bunny.id, "m1", "shh").await.unwrap();
    assert!(next_message(&laptop).await.hidden);
    assert!(
        !next_message(&bunny_conn).await.hidden,
        "Bunny hides nobody"
    );

    // Unhidden: back in both lists, with the remark, on every device.
    let back = app.http.hide_friend(token, bunny.id, false).await.unwrap();
    let changes = app.http.contacts(token, version.version, 0).await.unwrap();
    assert_eq!(changes.version, back.version);
    let restored = &changes.changes[0];
    assert_eq!(
        (restored.user_id, restored.removed, restored.hidden),
        (bunny.id, false, false)
    );
    assert_eq!(restored.remark, "BB");
    for conn in [&phone, &laptop] {
        assert!(listed(conn).await.contains_key(&direct(&me, &bunny)));
    }
    assert_eq!(found("bun").await, [bunny.id]);
}

#[tokio::test]
async fn bad_hiding_and_searching_get_clear_codes_and_change_nothing() {
    let app = shipped().await;
    let (me, bo, cy) = (
        app.user("Me").await,
        app.user("Bo").await,
        app.user("Cy").await,
    );
    app.befriend(&bo, &me).await;
    let held = app.http.contacts(&me.tokens.access_token, 0, 0).await;
    let held = held.unwrap();
    let cases = [
        (
            "PATCH",
            format!("/v1/contacts/{}", cy.id),
            json!({"hidden": true}),
            "not_friends",
        ),
        (
            "PATCH",
            format!("/v1/contacts/{}", bo.id),
            json!({"hidden": "yes"}),
            "invalid_json",
        ),
        (
            "GET",
            "/v1/contacts/search?q=".to_string(),
            json!(null),
            "invalid_query",
        ),
        (
            "GET",
            "/v1/contacts/search?q=%20%20".to_string(),
            json!(null),
            "invalid_query",
        ),
        (
            "GET",
            format!("/v1/contacts/search?q={}", "x".repeat(65)),
            json!(null),
            "invalid_query",
        ),
        (
            "GET",
            "/v1/contacts/search".to_string(),
            json!(null),
            "invalid_query",
        ),
    ];
    for (method, path, body, expected) in cases {
        let code = crate::helpers::refused(&app, &me, method, &path, body).await;
        assert_eq!(code, expected, "{method} {path}");
    }
    // A former friend still hidden may be unhidden, and nothing else.
    app.http
        .hide_friend(&me.tokens.access_token, bo.id, true)
        .await
        .unwrap();
    app.http
        .remove_friend(&bo.tokens.access_token, me.id)
        .await
        .unwrap();
    let path = format!("/v1/contacts/{}", bo.id);
    let code = crate::helpers::refused(&app, &me, "PATCH", &path, json!({"remark": "x"})).await;
    assert_eq!(code, "not_friends");
    let found = app
        .http
        .search_contacts(&me.tokens.access_token, &bo.id.to_string())
        .await
        .unwrap();
    assert!(found.contacts[0].hidden && !found.contacts[0].friend);
    let (status, _) = api(&app, &me, "PATCH", &path, json!({"hidden": false})).await;
    assert_eq!(status, 200);
    let now = app.http.contacts(&me.tokens.access_token, 0, 0).await;
    assert!(now.unwrap().changes.is_empty(), "no longer friends");
    assert!(held.version > 0);
}

// ---- Random graphs against a reference model ------------------------------

/// The rules written again, plainly: who blocks and hides whom now, and
/// every message with who may see it, decided when it was sent.
#[derive(Default)]
struct Model {
    /// (owner, other).
    blocks: BTreeSet<(usize, usize)>,
    hides: BTreeSet<(usize, usize)>,
    /// Conversation -> (seq, sender, seen by each user, marked hidden for
    /// each recipient of a live copy).
    messages: BTreeMap<String, Vec<(u64, usize, BTreeSet<usize>)>>,
    /// What each user's connection should have been sent live:
    /// (conversation, seq) -> the `hidden` mark.
    live: BTreeMap<usize, BTreeMap<(String, u64), bool>>,
    /// Each user's read mark in each conversation (moved by their sends).
    read: BTreeMap<(usize, String), u64>,
}

#[tokio::test]
async fn random_graphs_show_each_user_the_lists_and_messages_the_model_says() {
    for seed in [7, 8] {
        random_graph(seed).await;
    }
}

async fn random_graph(seed: u64) {
    const PEOPLE: usize = 6;
    let app = shipped().await;
    let mut users = Vec::new();
    for i in 0..PEOPLE {
        users.push(app.user(&format!("P{i}")).await);
    }
    // Everyone is friends with everyone, so any may message and hide any.
    for a in 0..PEOPLE {
        for b in a + 1..PEOPLE {
            app.befriend(&users[a], &users[b]).await;
        }
    }
    let others: Vec<u64> = users[1..].iter().map(|u| u.id).collect();
    let group = app
        .http
        .create_group(&users[0].tokens.access_token, "All", &others)
        .await
        .unwrap();
    let mut conns = Vec::new();
    for user in &users {
        conns.push(app.connect(user).await);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Model::default();
    model
        .messages
        .insert(group.conversation_id.clone(), Vec::new());
    for step in 0..90 {
        let a = rng.random_range(0..PEOPLE);
        let b = (a + rng.random_range(1..PEOPLE)) % PEOPLE;
        let token = users[a].tokens.access_token.as_str();
        match rng.random_range(0..10) {
            0 => {
                app.http.block(token, users[b].id).await.unwrap();
                model.blocks.insert((a, b));
            }
            1 => {
                app.http.unblock(token, users[b].id).await.unwrap();
                model.blocks.remove(&(a, b));
            }
            2 => {
                let hide = rng.random_bool(0.6);
                app.http
                    .hide_friend(token, users[b].id, hide)
                    .await
                    .unwrap();
                match hide {
                    true => model.hides.insert((a, b)),
                    false => model.hides.remove(&(a, b)),
                };
            }
            3..=6 => {
                let cmid = format!("s{step}");
                let ack = conns[a].send_text(users[b].id, &cmid, "x").await.unwrap();
                let withheld = model.blocks.contains(&(b, a));
                let seen_by: BTreeSet<usize> = match withheld {
                    true => [a].into(),
                    false => [a, b].into(),
                };
                let conversation = ack.conversation_id.clone();
                if !withheld {
                    let hidden = model.hides.contains(&(b, a));
                    let live = model.live.entry(b).or_default();
                    live.insert((conversation.clone(), ack.seq), hidden);
                }
                model.read.insert((a, conversation.clone()), ack.seq);
                let messages = model.messages.entry(conversation).or_default();
                messages.push((ack.seq, a, seen_by));
            }
            _ => {
                let cmid = format!("g{step}");
                let ack = conns[a].send_group_text(group.group_id, &cmid, "x", &[], false);
                let ack = ack.await.unwrap();
                let seen_by: BTreeSet<usize> = (0..PEOPLE)
                    .filter(|&v| v == a || !model.blocks.contains(&(v, a)))
                    .collect();
                for &v in seen_by.iter().filter(|&&v| v != a) {
                    let live = model.live.entry(v).or_default();
                    live.insert((group.conversation_id.clone(), ack.seq), false);
                }
                model
                    .read
                    .insert((a, group.conversation_id.clone()), ack.seq);
                let messages = model.messages.entry(group.conversation_id.clone());
                messages.or_default().push((ack.seq, a, seen_by));
            }
        }
    }
    // The walk reached every rule: withheld, filtered, marked hidden.
    let direct_withheld = (model.messages.iter())
        .filter(|(c, _)| c.starts_with("d."))
        .flat_map(|(_, m)| m)
        .any(|(_, _, by)| by.len() == 1);
    let group_filtered = model.messages[&group.conversation_id]
        .iter()
        .any(|(_, _, by)| by.len() < PEOPLE);
    let marked = model.live.values().flat_map(|l| l.values()).any(|&h| h);
    assert!(
        direct_withheld && group_filtered && marked,
        "seed {seed}: a rule never applied"
    );
    // A last group message from someone nobody blocks: every connection has
    // been sent everything before it by the time it hears it.
    let last = app.user("Host").await;
    app.http
        .add_group_members(&users[0].tokens.access_token, group.group_id, &[last.id])
        .await
        .unwrap();
    let host_conn = app.connect(&last).await;
    let barrier = host_conn
        .send_group_text(group.group_id, "end", "end", &[], false)
        .await
        .unwrap();
    for (v, conn) in conns.iter().enumerate() {
        let mut heard = BTreeMap::new();
        loop {
            let event = conn.next_event(Duration::from_secs(5)).await;
            let Some(event::Kind::Message(m)) = event.expect("the barrier arrives").kind else {
                continue;
            };
            if m.seq == barrier.seq && m.conversation_id == barrier.conversation_id {
                break;
            }
            heard.insert((m.conversation_id.clone(), m.seq), m.hidden);
        }
        let expected = model.live.remove(&v).unwrap_or_default();
        assert_eq!(heard, expected, "seed {seed}: what P{v} was sent live");
    }
    for (v, conn) in conns.iter().enumerate() {
        let list = listed(conn).await;
        let mut expected = BTreeMap::new();
        for (conversation, messages) in &model.messages {
            let is_group = conversation.starts_with("g.");
            let peer =
                (0..PEOPLE).find(|&p| p != v && direct(&users[v], &users[p]) == *conversation);
            if !is_group && peer.is_none() {
                continue;
            }
            let seen: Vec<&(u64, usize, BTreeSet<usize>)> = messages
                .iter()
                .filter(|(_, _, by)| by.contains(&v))
                .collect();
            let pulls = pulled(conn, conversation).await;
            let pulled_seqs: Vec<u64> = pulls.iter().map(|(seq, _)| *seq).collect();
            let mut seen_seqs: Vec<u64> = seen.iter().map(|(seq, ..)| *seq).collect();
            if is_group {
                seen_seqs.push(barrier.seq);
            }
            assert_eq!(
                pulled_seqs, seen_seqs,
                "seed {seed}: P{v} pulls {conversation}"
            );
            let peer_hidden = peer.is_some_and(|p| model.hides.contains(&(v, p)));
            if peer_hidden || seen_seqs.is_empty() {
                continue;
            }
            let read = model
                .read
                .get(&(v, conversation.clone()))
                .copied()
                .unwrap_or(0);
            let unread = seen_seqs
                .iter()
                .filter(|&&seq| seq > read)
                .filter(|&&seq| {
                    let own = messages
                        .iter()
                        .any(|(s, sender, _)| *s == seq && *sender == v);
                    !own
                })
                .count() as u64;
            expected.insert(conversation.clone(), (*seen_seqs.last().unwrap(), unread));
        }
        let got: BTreeMap<String, (u64, u64)> = list
            .iter()
            .map(|(id, c)| (id.clone(), (c.last_seq, c.unread)))
            .collect();
        assert_eq!(got, expected, "seed {seed}: P{v}'s conversation list");
    }
}
