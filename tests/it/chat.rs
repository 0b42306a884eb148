//! One-to-one chat: durable acks, idempotent retries, live delivery, sync,
//! receipts and the conversation list.

use std::time::Duration;

use superapp_client::{SyncState, catch_up};

use crate::helpers::{code, next_message, next_receipt, spawn_app, spawn_app_with, text_of};

#[tokio::test]
async fn a_message_is_acked_with_the_next_seq_and_delivered_live() {
    let app = spawn_app().await;
    let a = app.user("Ann").await;
    let b = app.user("Bo").await;
    let b_conn = app.connect(&b).await;
    let a_conn = app.connect(&a).await;
    for (i, text) in ["one", "two", "three"].into_iter().enumerate() {
        let ack = a_conn
            .send_text(b.id, &format!("c{i}"), text)
            .await
            .unwrap();
        assert_eq!(ack.seq, i as u64 + 1);
        assert!(!ack.duplicate);
        let got = next_message(&b_conn).await;
        assert_eq!(
            (got.seq, got.message_id, text_of(&got)),
            (ack.seq, ack.message_id, text)
        );
    }
    // The reply goes into the same conversation.
    let reply = b_conn.send_text(a.id, "r1", "hi Ann").await.unwrap();
    assert_eq!(reply.seq, 4);
    let conversation = reply.conversation_id.clone();
    let by_id = b_conn
        .send_text_to_conversation(&conversation, "r2", "again")
        .await
        .unwrap();
    assert_eq!((by_id.conversation_id, by_id.seq), (conversation, 5));
}

#[tokio::test]
async fn a_retried_send_returns_the_first_ack_and_stores_nothing_new() {
    let app = spawn_app().await;
    let a = app.user("Ann").await;
    let b = app.user("Bo").await;
    let conn = app.connect(&a).await;
    let first = conn.send_text(b.id, "same-id", "hello").await.unwrap();
    let again = conn.send_text(b.id, "same-id", "hello").await.unwrap();
    assert!(again.duplicate);
    assert_eq!(
        (again.seq, again.message_id, again.server_time_ms),
        (first.seq, first.message_id, first.server_time_ms)
    );
    assert_eq!(
        conn.pull(&first.conversation_id, 0, 10)
            .await
            .unwrap()
            .messages
            .len(),
        1
    );
}

#[tokio::test]
async fn concurrent_copies_of_one_send_store_one_message() {
    let app = spawn_app().await;
    let a = app.user("Ann").await;
    let b = app.user("Bo").await;
    let devices = [
        app.connect(&a).await,
        app.connect(&a).await,
        app.connect(&a).await,
    ];
    let (x, y, z) = tokio::join!(
        devices[0].send_text(b.id, "racing", "once"),
        devices[1].send_text(b.id, "racing", "once"),
        devices[2].send_text(b.id, "racing", "once"),
    );
    let acks = [x.unwrap(), y.unwrap(), z.unwrap()];
    assert!(
        acks.iter()
            .all(|k| k.seq == 1 && k.message_id == acks[0].message_id)
    );
    assert_eq!(acks.iter().filter(|k| !k.duplicate).count(), 1);
    let page = devices[0]
        .pull(&acks[0].conversation_id, 0, 10)
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 1);
}

#[tokio::test]
async fn bad_sends_get_clear_codes_and_store_nothing() {
    let app = spawn_app().await;
    let a = app.user("Ann").await;
    let b = app.user("Bo").await;
    let c = app.user("Cy").await;
    let conn = app.connect(&a).await;
    assert_eq!(
        code(conn.send_text(424242, "x1", "hi").await),
        "unknown_recipient"
    );
    assert_eq!(
        code(conn.send_text(a.id, "x2", "me").await),
        "invalid_recipient"
    );
    assert_eq!(code(conn.send_text(b.id, "x3", "").await), "empty_body");
    assert_eq!(
        code(conn.send_text(b.id, "x4", &"y".repeat(16 * 1024 + 1)).await),
        "body_too_large"
    );
    assert_eq!(
        code(conn.send_text(b.id, "", "hi").await),
        "invalid_client_msg_id"
    );
    assert_eq!(
        code(conn.send_text(b.id, &"z".repeat(65), "hi").await),
        "invalid_client_msg_id"
    );
    // Conversations one is not in, or that cannot exist, are unknown alike.
    let theirs = format!("d.{}.{}", b.id.min(c.id), b.id.max(c.id));
    for conversation in [theirs.as_str(), "d.1.2", "nonsense", "g.05", "g.x"] {
        assert_eq!(
            code(
                conn.send_text_to_conversation(conversation, "x5", "hi")
                    .await
            ),
            "unknown_conversation"
        );
        assert_eq!(
            code(conn.pull(conversation, 0, 10).await),
            "unknown_conversation"
        );
    }
    // A group that does not exist is named as such.
    assert_eq!(
        code(conn.send_text_to_conversation("g.5", "x5", "hi").await),
        "unknown_group"
    );
    assert_eq!(code(conn.pull("g.5", 0, 10).await), "unknown_group");
    assert_eq!(
        code(conn.list_conversations(10, "bogus").await),
        "invalid_cursor"
    );
    // A body of exactly the limit is fine, and it is the only message stored.
    let ack = conn
        .send_text(b.id, "x6", &"y".repeat(16 * 1024))
        .await
        .unwrap();
    assert_eq!(ack.seq, 1);
    assert!(
        conn.list_conversations(10, "")
            .await
            .unwrap()
            .conversations
            .len()
            == 1
    );
}

#[tokio::test]
async fn a_returning_client_syncs_what_it_missed_in_pages_without_repeats() {
    // 250 sends in a row, faster than a session's default burst allows.
    let app = spawn_app_with(|c| c.gateway.rate_burst = 1_000).await;
    let a = app.user("Ann").await;
    let b = app.user("Bo").await;
    let c = app.user("Cy").await;
    let b_conn = app.connect(&b).await;
    let mut state = SyncState::new();
    assert!(catch_up(&b_conn, &mut state).await.unwrap().is_empty());
    b_conn.close().await;

    let a_conn = app.connect(&a).await;
    let c_conn = app.connect(&c).await;
    for i in 0..250 {
        a_conn
            .send_text(b.id, &format!("a{i}"), &format!("from a {i}"))
            .await
            .unwrap();
    }
    for i in 0..3 {
        c_conn
            .send_text(b.id, &format!("c{i}"), &format!("from c {i}"))
            .await
            .unwrap();
    }

    let b_conn = app.connect(&b).await;
    let page = b_conn.list_conversations(10, "").await.unwrap();
    assert_eq!(page.conversations.len(), 2);
    // Most recent activity first, with exact unread counts.
    assert_eq!(
        (page.conversations[0].peer, page.conversations[0].unread),
        (c.id, 3)
    );
    assert_eq!(
        (page.conversations[1].peer, page.conversations[1].unread),
        (a.id, 250)
    );
    let pulled = b_conn
        .pull(&page.conversations[1].conversation_id, 0, 100)
        .await
        .unwrap();
    assert_eq!(pulled.messages.len(), 100);
    assert!(pulled.has_more);

    let missed = catch_up(&b_conn, &mut state).await.unwrap();
    assert_eq!(missed.len(), 253);
    let from_a: Vec<u64> = missed
        .iter()
        .filter(|m| m.sender == a.id)
        .map(|m| m.seq)
        .collect();
    assert_eq!(from_a, (1..=250).collect::<Vec<_>>());
    // Nothing more to fetch the second time.
    assert!(catch_up(&b_conn, &mut state).await.unwrap().is_empty());
}

#[tokio::test]
async fn conversations_page_by_last_activity() {
    let app = spawn_app().await;
    let me = app.user("Me").await;
    let conn = app.connect(&me).await;
    let mut peers = Vec::new();
    for name in ["P1", "P2", "P3", "P4", "P5"] {
        let peer = app.user(name).await;
        conn.send_text(peer.id, &format!("to-{name}"), "hi")
            .await
            .unwrap();
        peers.push(peer.id);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let first = conn.list_conversations(2, "").await.unwrap();
    let second = conn
        .list_conversations(2, &first.next_cursor)
        .await
        .unwrap();
    let third = conn
        .list_conversations(2, &second.next_cursor)
        .await
        .unwrap();
    let order: Vec<u64> = [
        first.conversations,
        second.conversations,
        third.conversations,
    ]
    .concat()
    .iter()
    .map(|c| c.peer)
    .collect();
    peers.reverse();
    assert_eq!(order, peers);
    assert!(third.next_cursor.is_empty());
}

#[tokio::test]
async fn reading_sends_a_receipt_and_own_messages_are_never_unread() {
    let app = spawn_app().await;
    let a = app.user("Ann").await;
    let b = app.user("Bo").await;
    let a_conn = app.connect(&a).await;
    let b_conn = app.connect(&b).await;
    for i in 0..3 {
        a_conn
            .send_text(b.id, &format!("m{i}"), "hi")
            .await
            .unwrap();
    }
    let conversation = next_message(&b_conn).await.conversation_id;
    let mine = a_conn
        .list_conversations(10, "")
        .await
        .unwrap()
        .conversations;
    assert_eq!((mine[0].unread, mine[0].last_seq), (0, 3));
    let theirs = b_conn
        .list_conversations(10, "")
        .await
        .unwrap()
        .conversations;
    assert_eq!(theirs[0].unread, 3);

    let read = b_conn.mark_read(&conversation, 2).await.unwrap();
    assert_eq!(read.read_seq, 2);
    let receipt = next_receipt(&a_conn).await;
    assert_eq!((receipt.reader, receipt.read_seq), (b.id, 2));
    let theirs = b_conn
        .list_conversations(10, "")
        .await
        .unwrap()
        .conversations;
    assert_eq!(theirs[0].unread, 1);
    let mine = a_conn
        .list_conversations(10, "")
        .await
        .unwrap()
        .conversations;
    assert_eq!(mine[0].peer_read_seq, 2);
    // Read marks never move back, and stop at the last message.
    assert_eq!(
        b_conn.mark_read(&conversation, 1).await.unwrap().read_seq,
        2
    );
    assert_eq!(
        b_conn.mark_read(&conversation, 99).await.unwrap().read_seq,
        3
    );
}

#[tokio::test]
async fn metrics_count_sessions_frames_sends_acks_and_commit_batches() {
    let app = spawn_app().await;
    let a = app.user("Ann").await;
    let b = app.user("Bo").await;
    let conn = app.connect(&a).await;
    let _b_conn = app.connect(&b).await;
    conn.send_text(b.id, "m1", "hi").await.unwrap();
    assert_eq!(app.metric("gateway_sessions").await, 2.0);
    assert!(app.metric("gateway_frames_in_total").await >= 1.0);
    assert!(app.metric("gateway_frames_out_total").await >= 1.0);
    assert_eq!(app.metric("chat_messages_stored_total").await, 1.0);
    assert_eq!(app.metric("gateway_send_ack_seconds_count").await, 1.0);
    assert!(app.metric("store_commit_batch_size_count").await >= 1.0);
    assert!(app.metric("http_requests_total").await >= 4.0);
}

#[tokio::test]
async fn long_messages_come_back_in_pages_that_fit_a_frame() {
    let app = spawn_app().await;
    let a = app.user("Ann").await;
    let b = app.user("Bo").await;
    let conn = app.connect(&a).await;
    let long = "z".repeat(16 * 1024);
    let mut conversation = String::new();
    for i in 0..40 {
        conversation = conn
            .send_text(b.id, &format!("l{i}"), &long)
            .await
            .unwrap()
            .conversation_id;
    }
    let reader = app.connect(&b).await;
    let (mut after, mut pages) = (0, 0);
    loop {
        let page = reader.pull(&conversation, after, 500).await.unwrap();
        pages += 1;
        if pages == 1 {
            // 256 KiB of text: sixteen of the longest (protocol.md, 2.3).
            assert_eq!(page.messages.len(), 16);
        }
        for m in &page.messages {
            assert_eq!(m.seq, after + 1);
            after = m.seq;
        }
        if !page.has_more {
            break;
        }
    }
    assert_eq!(after, 40);
    assert!(pages > 1);
    reader.ping().await.unwrap();
}
