//! An ack means durable: `kill -9` during a stream of sends loses no
//! acknowledged message. The server runs as a child process here.

use std::time::Duration;

use superapp_client::{Connection, HttpClient};

use crate::helpers::{PASSWORD, fresh_phone, start_server_logging};

fn start_server(data: &std::path::Path) -> (std::process::Child, String) {
    let (child, base, _) = start_server_logging(data, "info", &[]);
    (child, base)
}

#[tokio::test]
async fn kill_9_during_a_stream_of_sends_loses_no_acked_message() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, base) = start_server(dir.path());
    let http = HttpClient::new(base.clone());
    let (pa, pb) = (fresh_phone(), fresh_phone());
    http.register(&pa, PASSWORD, "Ann").await.unwrap();
    let b = http.register(&pb, PASSWORD, "Bo").await.unwrap();
    let a_tokens = http.login(&pa, PASSWORD).await.unwrap();
    let b_tokens = http.login(&pb, PASSWORD).await.unwrap();

    // Several senders at once, so acks share group commits when the kill lands.
    let mut senders = Vec::new();
    for lane in 0..4 {
        let conn = Connection::connect(&base, &a_tokens.access_token)
            .await
            .unwrap();
        let to = b.user_id;
        senders.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0.. {
                match conn
                    .send_text(to, &format!("lane{lane}-{i}"), "durable?")
                    .await
                {
                    Ok(ack) => acked.push((ack.seq, format!("lane{lane}-{i}"))),
                    Err(_) => break,
                }
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    let mut acked = Vec::new();
    for s in senders {
        acked.extend(s.await.unwrap());
    }
    assert!(
        acked.len() > 20,
        "too few sends before the kill: {}",
        acked.len()
    );

    let (mut server, base) = start_server(dir.path());
    let conn = Connection::connect(&base, &b_tokens.access_token)
        .await
        .unwrap();
    let conversation = format!(
        "d.{}.{}",
        a_tokens.user_id.min(b.user_id),
        a_tokens.user_id.max(b.user_id)
    );
    let mut stored = std::collections::HashMap::new();
    let mut after = 0;
    loop {
        let page = conn.pull(&conversation, after, 500).await.unwrap();
        for m in &page.messages {
            assert_eq!(m.seq, after + 1, "seq has no holes");
            after = m.seq;
            stored.insert(m.seq, m.client_msg_id.clone());
        }
        if !page.has_more {
            break;
        }
    }
    for (seq, cmid) in &acked {
        assert_eq!(
            stored.get(seq),
            Some(cmid),
            "acked message {cmid} at seq {seq} was lost"
        );
    }
    // The conversation continues after the last stored seq.
    let a_conn = Connection::connect(&base, &a_tokens.access_token)
        .await
        .unwrap();
    let next = a_conn
        .send_text(b.user_id, "after-restart", "still here")
        .await
        .unwrap();
    assert_eq!(next.seq, after + 1);
    server.kill().unwrap();
    server.wait().unwrap();
}

#[tokio::test]
async fn logs_never_hold_passwords_tokens_or_message_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, base, logs) = start_server_logging(dir.path(), "trace", &[]);
    let http = HttpClient::new(base.clone());
    let (pa, pb) = (fresh_phone(), fresh_phone());
    let secret_password = "zebra-violet-quantum-42";
    http.register(&pa, secret_password, "Ann").await.unwrap();
    let b = http.register(&pb, PASSWORD, "Bo").await.unwrap();
    let _ = http.login(&pa, "wrong-guess-zebra-violet").await;
    let tokens = http.login(&pa, secret_password).await.unwrap();
    let refreshed = http.refresh(&tokens.refresh_token).await.unwrap();
    let ticket = http.ws_ticket(&refreshed.access_token).await.unwrap();
    let conn = Connection::connect_with_ticket(&base, &ticket.ticket)
        .await
        .unwrap();
    let body = "the-secret-body-of-a-message";
    conn.send_text(b.user_id, "c1", body).await.unwrap();
    http.logout(&refreshed.access_token).await.unwrap();
    // The logout's last act, logged like the rest: the session is closed.
    let closed = conn.wait_closed(Duration::from_secs(5)).await;
    assert_eq!(closed.map(|(code, _)| code), Some(4001));
    server.kill().unwrap();
    server.wait().unwrap();

    let logs = logs.lock().unwrap().clone();
    assert!(logs.contains("logged in"), "the log was captured");
    for secret in [
        secret_password,
        "wrong-guess-zebra-violet",
        body,
        &tokens.access_token,
        &tokens.refresh_token,
        &refreshed.access_token,
        &refreshed.refresh_token,
        &ticket.ticket,
    ] {
        if let Some(at) = logs.find(secret) {
            let line = logs[..at].rsplit('\n').next().unwrap_or("");
            panic!(
                "a secret reached the log, in a line starting: {}",
                &line[..line.len().min(300)]
            );
        }
    }
}
