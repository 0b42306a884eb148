//! The WebSocket edge: the handshake, bad frames, limits, and session lifecycles.
//! After every abuse the server keeps serving others and loses nothing stored.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use prost::Message as _;
use superapp_client::proto::v1::{
    ClientFrame, Ping, ServerFrame, client_frame, response, server_frame,
};
use superapp_client::tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use superapp_client::{Connection, connect_raw};

use crate::helpers::{
    TestApp, User, admin, next_message, next_message_is, next_receipt, spawn_app, spawn_app_losing,
    spawn_app_with, subscribed,
};

type Socket = superapp_client::tokio_tungstenite::WebSocketStream<
    superapp_client::tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
>;

async fn raw(app: &TestApp, user: &User) -> Socket {
    connect_raw(&app.base_url, Some(&user.tokens.access_token), None)
        .await
        .unwrap()
}

/// Reads until the server closes; returns its close code.
async fn close_code(socket: &mut Socket) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(WsMessage::Close(frame)))) => return frame.map(|f| f.code.into()),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_))) | Ok(None) => return None,
            Err(_) => panic!("the server did not close the session"),
        }
    }
}

fn status_of(e: tungstenite::Error) -> u16 {
    match e {
        tungstenite::Error::Http(response) => response.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

/// The server still answers another user, and the conversation is intact.
async fn still_serving(app: &TestApp, a: &User, b: &User, expected_last_seq: u64) {
    let conn = app.connect(a).await;
    let ack = conn
        .send_text(b.id, &superapp_client::new_client_msg_id(), "still here")
        .await
        .unwrap();
    assert_eq!(ack.seq, expected_last_seq + 1);
    let page = conn.pull(&ack.conversation_id, 0, 100).await.unwrap();
    assert_eq!(page.messages.len() as u64, expected_last_seq + 1);
}

#[tokio::test]
async fn the_handshake_refuses_missing_wrong_and_revoked_credentials() {
    let app = spawn_app().await;
    let user = app.user("Ann").await;
    assert_eq!(
        status_of(connect_raw(&app.base_url, None, None).await.unwrap_err()),
        401
    );
    assert_eq!(
        status_of(
            connect_raw(&app.base_url, Some("nope"), None)
                .await
                .unwrap_err()
        ),
        401
    );
    // A long-lived token in the URL is never read.
    let query = format!("access_token={}", user.tokens.access_token);
    assert_eq!(
        status_of(
            connect_raw(&app.base_url, None, Some(&query))
                .await
                .unwrap_err()
        ),
        401
    );
    let other = app
        .http
        .login(&user.phone, crate::helpers::PASSWORD)
        .await
        .unwrap();
    app.http.logout(&other.access_token).await.unwrap();
    assert_eq!(
        status_of(
            connect_raw(&app.base_url, Some(&other.access_token), None)
                .await
                .unwrap_err()
        ),
        401
    );
    // Without the subprotocol the upgrade is refused too.
    let mut request = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{}/v1/ws",
        app.base_url.trim_start_matches("http://")
    ))
    .unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", user.tokens.access_token)
            .parse()
            .unwrap(),
    );
    let e = superapp_client::tokio_tungstenite::connect_async(request)
        .await
        .unwrap_err();
    assert_eq!(status_of(e), 400);
    raw(&app, &user).await;
}

#[tokio::test]
async fn a_browser_ticket_opens_one_session_only() {
    let app = spawn_app().await;
    let user = app.user("Ann").await;
    let ticket = app.http.ws_ticket(&user.tokens.access_token).await.unwrap();
    let conn = Connection::connect_with_ticket(&app.base_url, &ticket.ticket)
        .await
        .unwrap();
    conn.ping().await.unwrap();
    let replay = connect_raw(
        &app.base_url,
        None,
        Some(&format!("ticket={}", ticket.ticket)),
    )
    .await;
    assert_eq!(status_of(replay.unwrap_err()), 401);
}

#[tokio::test]
async fn an_expired_ticket_is_refused() {
    let app = spawn_app_with(|c| c.auth.ticket_ttl_secs = 1).await;
    let user = app.user("Ann").await;
    let ticket = app.http.ws_ticket(&user.tokens.access_token).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let late = connect_raw(
        &app.base_url,
        None,
        Some(&format!("ticket={}", ticket.ticket)),
    )
    .await;
    assert_eq!(status_of(late.unwrap_err()), 401);
}

#[tokio::test]
async fn bad_frames_close_with_documented_codes_and_harm_nobody_else() {
    let app = spawn_app().await;
    let a = app.user("Ann").await;
    let b = app.user("Bo").await;
    let conn = app.connect(&a).await;
    conn.send_text(b.id, "first", "before the abuse")
        .await
        .unwrap();

    let valid = ClientFrame {
        id: 7,
        request: Some(client_frame::Request::Ping(Ping {})),
    }
    .encode_to_vec();
    let cases: Vec<(WsMessage, u16)> = vec![
        (WsMessage::Text("hello".into()), 1003),
        (
            WsMessage::Binary(vec![0xff, 0xff, 0xff, 0xff, 0x0f].into()),
            1007,
        ),
        (
            WsMessage::Binary(valid[..valid.len() - 1].to_vec().into()),
            1007,
        ),
        (WsMessage::Binary(vec![0x0a; 64 * 1024 + 1].into()), 1009),
    ];
    for (frame, expected) in cases {
        let mut socket = raw(&app, &a).await;
        socket.send(frame).await.unwrap();
        assert_eq!(close_code(&mut socket).await, Some(expected));
    }
    // Random bytes: whatever they decode to, the server answers or closes, and lives.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..20 {
        let mut socket = raw(&app, &a).await;
        let bytes: Vec<u8> = (0..64)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        socket.send(WsMessage::Binary(bytes.into())).await.unwrap();
        let _ = tokio::time::timeout(Duration::from_millis(200), socket.next()).await;
    }
    still_serving(&app, &a, &b, 1).await;
    conn.ping().await.unwrap();
}

#[tokio::test]
async fn unknown_fields_are_ignored_and_unknown_requests_answered() {
    let app = spawn_app().await;
    let a = app.user("Ann").await;
    let mut socket = raw(&app, &a).await;
    // A ping with an extra field 99 (varint 1) a newer client might send.
    let mut frame = ClientFrame {
        id: 5,
        request: Some(client_frame::Request::Ping(Ping {})),
    }
    .encode_to_vec();
    frame.extend_from_slice(&[0x98, 0x06, 0x01]);
    socket.send(WsMessage::Binary(frame.into())).await.unwrap();
    let reply = next_response(&mut socket).await;
    assert_eq!(reply.id, 5);
    assert!(matches!(reply.result, Some(response::Result::Pong(_))));
    // A request variant this server does not know (field 50 of ClientFrame).
    let mut frame = ClientFrame {
        id: 6,
        request: None,
    }
    .encode_to_vec();
    frame.extend_from_slice(&[0x92, 0x03, 0x00]);
    socket.send(WsMessage::Binary(frame.into())).await.unwrap();
    let reply = next_response(&mut socket).await;
    assert_eq!(reply.id, 6);
    match reply.result {
        Some(response::Result::Error(e)) => assert_eq!(e.code, "unknown_request"),
        other => panic!("{other:?}"),
    }
}

async fn next_response(socket: &mut Socket) -> superapp_client::proto::v1::Response {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a response")
            .expect("open")
            .expect("frame");
        if let WsMessage::Binary(data) = message
            && let Some(server_frame::Kind::Response(r)) = ServerFrame::decode(data).unwrap().kind
        {
            return r;
        }
    }
}

#[tokio::test]
async fn a_flooding_session_is_told_to_wait_then_closed_with_1008() {
    let app = spawn_app_with(|c| {
        c.gateway.rate_per_sec = 5;
        c.gateway.rate_burst = 5;
        c.gateway.rate_abuse_limit = 10;
    })
    .await;
    let a = app.user("Ann").await;
    let b = app.user("Bo").await;
    let mut socket = raw(&app, &a).await;
    let mut limited = 0;
    let mut code = None;
    for id in 0..100u64 {
        let frame = ClientFrame {
            id,
            request: Some(client_frame::Request::Ping(Ping {})),
        };
        if socket
            .send(WsMessage::Binary(frame.encode_to_vec().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .unwrap()
        {
            Some(Ok(WsMessage::Binary(data))) => {
                if let Some(server_frame::Kind::Response(r)) =
                    ServerFrame::decode(data).unwrap().kind
                    && let Some(response::Result::Error(e)) = r.result
                {
                    assert_eq!(e.code, "rate_limited");
                    assert!(e.retry_after_ms > 0);
                    limited += 1;
                }
            }
            Some(Ok(WsMessage::Close(frame))) => {
                code = frame.map(|f| u16::from(f.code));
                break;
            }
            Some(Ok(_)) => {}
            _ => break,
        }
    }
    assert_eq!(limited, 10);
    assert_eq!(code, Some(1008));
    still_serving(&app, &b, &a, 0).await;
}

#[tokio::test]
async fn every_device_of_a_user_receives_every_message() {
    let app = spawn_app().await;
    let a = app.user("Ann").await;
    let b = app.user("Bo").await;
    let b_phone = app.connect(&b).await;
    let b_laptop = app.connect(&b).await;
    let a_phone = app.connect(&a).await;
    let a_tablet = app.connect(&a).await;
    let ack = a_phone.send_text(b.id, "m1", "hello").await.unwrap();
    for device in [&b_phone, &b_laptop, &a_tablet] {
        let m = next_message(device).await;
        assert_eq!(
            (m.seq, m.sender, m.conversation_id.as_str()),
            (ack.seq, a.id, ack.conversation_id.as_str())
        );
    }
    let read = b_phone
        .mark_read(&ack.conversation_id, ack.seq)
        .await
        .unwrap();
    assert_eq!(read.read_seq, ack.seq);
    for device in [&a_phone, &a_tablet, &b_laptop] {
        let receipt = next_receipt(device).await;
        assert_eq!((receipt.reader, receipt.read_seq), (b.id, ack.seq));
    }
    // The connection that sent the message has the ack as its copy, and the
    // phone that read has its answer: the next message the one hears, and
    // the next receipt the other hears, are later ones.
    let barrier = b_laptop.send_text(a.id, "m2", "later").await.unwrap();
    next_message_is(&a_phone, &barrier).await;
    a_phone
        .mark_read(&barrier.conversation_id, barrier.seq)
        .await
        .unwrap();
    let receipt = next_receipt(&b_phone).await;
    assert_eq!((receipt.reader, receipt.read_seq), (a.id, barrier.seq));
}

#[tokio::test]
async fn logging_out_closes_that_sessions_websockets_within_a_second() {
    let app = spawn_app().await;
    let a = app.user("Ann").await;
    let other_session = app
        .http
        .login(&a.phone, crate::helpers::PASSWORD)
        .await
        .unwrap();
    let mut socket = raw(&app, &a).await;
    let survivor = Connection::connect(&app.base_url, &other_session.access_token)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    app.http.logout(&a.tokens.access_token).await.unwrap();
    assert_eq!(close_code(&mut socket).await, Some(4001));
    assert!(started.elapsed() < Duration::from_secs(1));
    survivor.ping().await.unwrap();
}

#[tokio::test]
async fn a_logged_out_session_whose_revocation_the_bus_lost_is_refused_at_its_next_request_and_closed()
 {
    use superapp_client::proto::v1::bus_envelope::Kind;
    let (app, bus) = spawn_app_losing(
        |_| {},
        |_, envelope| matches!(envelope.kind, Some(Kind::SessionRevoked(_))),
    )
    .await;
    let a = app.user("Ann").await;
    let conn = app.connect(&a).await;
    conn.list_conversations(10, "").await.unwrap();

    app.http.logout(&a.tokens.access_token).await.unwrap();
    let refused = conn.list_conversations(10, "").await.unwrap_err();
    assert_eq!(refused.code(), Some("session_revoked"));
    assert_eq!(
        conn.wait_closed(Duration::from_secs(5)).await,
        Some((4001, "session revoked".to_string()))
    );
    assert_eq!(bus.lost(), 1, "the revocation was lost on the bus");
}

#[tokio::test]
async fn a_silent_client_is_closed_after_the_idle_timeout() {
    let app = spawn_app_with(|c| {
        c.gateway.heartbeat_secs = 1;
        c.gateway.idle_timeout_secs = 2;
    })
    .await;
    let a = app.user("Ann").await;
    let mut socket = raw(&app, &a).await;
    // Not reading means not answering pings: the server hears nothing.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(close_code(&mut socket).await, Some(4000));
}

#[tokio::test]
async fn a_client_that_answers_pings_stays_connected() {
    let app = spawn_app_with(|c| {
        c.gateway.heartbeat_secs = 1;
        c.gateway.idle_timeout_secs = 2;
    })
    .await;
    let a = app.user("Ann").await;
    let conn = app.connect(&a).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    conn.ping().await.unwrap();
}

#[tokio::test]
async fn a_slow_consumer_is_cut_off_and_nobody_else_waits_for_it() {
    let app = spawn_app_with(|c| {
        c.gateway.outbound_queue = 8;
        c.gateway.write_timeout_secs = 1;
        c.gateway.rate_per_sec = 10_000;
        c.gateway.rate_burst = 10_000;
        c.gateway.user_rate_per_sec = 10_000;
    })
    .await;
    let a = app.user("Ann").await;
    let b = app.user("Bo").await;
    // B's stalled device never reads; B's other device reads everything.
    let stalled = raw(&app, &b).await;
    let reader = app.connect(&b).await;
    let sender = app.connect(&a).await;
    let text = "x".repeat(16 * 1024);
    let total = 1_000u64;
    let reading = tokio::spawn(async move {
        let mut got = 0u64;
        while got < total {
            let m = next_message(&reader).await;
            got += 1;
            assert_eq!(m.seq, got);
        }
        got
    });
    for i in 0..total {
        sender
            .send_text(b.id, &format!("m{i}"), &text)
            .await
            .unwrap();
    }
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(20), reading)
            .await
            .unwrap()
            .unwrap(),
        total
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.metric("gateway_slow_consumers_total").await < 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled session was never cut off"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(stalled);
}

#[tokio::test]
async fn shutdown_closes_sessions_with_1012() {
    let app = spawn_app().await;
    let a = app.user("Ann").await;
    let mut socket = raw(&app, &a).await;
    app.shutdown.cancel();
    assert_eq!(close_code(&mut socket).await, Some(1012));
    tokio::time::timeout(Duration::from_secs(10), app.stopped)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn with_redis_configured_live_delivery_goes_through_redis() {
    let Some(redis) = superapp_kit::testkit::RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let app = spawn_app_with(|c| c.redis.url = Some(superapp_kit::secret::Secret::new(url))).await;
    let a = app.user("Ann").await;
    let b = app.user("Bo").await;
    let b_phone = app.connect(&b).await;
    let b_laptop = app.connect(&b).await;
    let a_conn = app.connect(&a).await;
    let a_tablet = app.connect(&a).await;
    subscribed(&admin(&redis), &format!("u.{}", a.id), 1).await;
    subscribed(&admin(&redis), &format!("u.{}", b.id), 1).await;
    let ack = a_conn.send_text(b.id, "r1", "through redis").await.unwrap();
    for device in [&b_phone, &b_laptop] {
        assert_eq!(next_message(device).await.seq, ack.seq);
    }
    let reply = b_phone.send_text(a.id, "r2", "back").await.unwrap();
    // Ann's other device gets her message too; the connection that sent it
    // has the ack, and next hears the reply.
    assert_eq!(next_message(&a_tablet).await.seq, ack.seq);
    assert_eq!(next_message(&a_tablet).await.seq, reply.seq);
    assert_eq!(next_message(&a_conn).await.seq, reply.seq);
}

/// After the close frames crossed, the server ends the TCP connection in
/// order (a FIN the client reads as the end of the stream), not with a reset.
async fn ends_in_order(socket: &mut Socket) {
    match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
        Ok(None) => {}
        other => panic!("expected the connection to end in order, got {other:?}"),
    }
}

fn ping_frame(id: u64) -> WsMessage {
    let frame = ClientFrame {
        id,
        request: Some(client_frame::Request::Ping(Ping {})),
    };
    WsMessage::Binary(frame.encode_to_vec().into())
}

#[tokio::test]
async fn a_client_s_close_is_answered_with_its_own_code() {
    let app = spawn_app().await;
    let a = app.user("Ann").await;
    for code in [1000u16, 4100] {
        let mut socket = raw(&app, &a).await;
        socket.send(ping_frame(1)).await.unwrap();
        next_response(&mut socket).await;
        let frame = tungstenite::protocol::CloseFrame {
            code: code.into(),
            reason: "bye".into(),
        };
        socket.send(WsMessage::Close(Some(frame))).await.unwrap();
        assert_eq!(close_code(&mut socket).await, Some(code));
        ends_in_order(&mut socket).await;
    }
}

#[tokio::test]
async fn a_client_that_pipelines_far_past_the_limit_still_reads_its_1008() {
    let app = spawn_app_with(|c| {
        c.gateway.rate_per_sec = 5;
        c.gateway.rate_burst = 5;
        c.gateway.rate_abuse_limit = 10;
    })
    .await;
    let a = app.user("Ann").await;
    let mut socket = raw(&app, &a).await;
    // Hundreds of frames are still unread by the server when it decides to close.
    for id in 0..500u64 {
        socket.feed(ping_frame(id)).await.unwrap();
    }
    socket.flush().await.unwrap();
    let (mut answered, mut limited) = (0, 0);
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("the server closed in time")
        {
            Some(Ok(WsMessage::Binary(data))) => {
                if let Some(server_frame::Kind::Response(r)) =
                    ServerFrame::decode(data).unwrap().kind
                {
                    answered += 1;
                    if let Some(response::Result::Error(e)) = r.result {
                        assert_eq!(e.code, "rate_limited");
                        limited += 1;
                    }
                }
            }
            Some(Ok(WsMessage::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            other => panic!("the connection ended without a close frame: {other:?}"),
        }
    };
    assert_eq!(code, Some(1008));
    assert_eq!((answered, limited), (15, 10));
    ends_in_order(&mut socket).await;
}

#[tokio::test]
async fn a_reader_that_pauses_finds_the_events_that_fit_and_then_4008() {
    let app = spawn_app_with(|c| {
        c.gateway.outbound_queue = 8;
        c.gateway.write_timeout_secs = 5;
        c.gateway.rate_per_sec = 10_000;
        c.gateway.rate_burst = 10_000;
        c.gateway.user_rate_per_sec = 10_000;
    })
    .await;
    let a = app.user("Ann").await;
    let b = app.user("Bo").await;
    let mut paused = raw(&app, &b).await;
    let sender = app.connect(&a).await;
    let text = "x".repeat(16 * 1024);
    // The paused device reads nothing: the socket's buffers fill, then its
    // queue, and the server decides to close it.
    let mut sent = 0u64;
    while app.metric("gateway_slow_consumers_total").await < 1.0 {
        for _ in 0..20 {
            sent += 1;
            sender
                .send_text(b.id, &format!("m{sent}"), &text)
                .await
                .unwrap();
        }
        assert!(sent < 10_000, "the paused session was never found slow");
    }
    // It stays away a while longer, as a phone in a tunnel would: longer
    // than the second the server used to allow, within the write timeout.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut next_seq = 1;
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), paused.next())
            .await
            .expect("the server closed in time")
        {
            Some(Ok(WsMessage::Binary(data))) => {
                if let Some(server_frame::Kind::Event(e)) = ServerFrame::decode(data).unwrap().kind
                    && let Some(superapp_client::proto::v1::event::Kind::Message(m)) = e.kind
                {
                    assert_eq!(m.seq, next_seq);
                    next_seq += 1;
                }
            }
            Some(Ok(WsMessage::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            other => panic!(
                "the connection ended without a close frame after {} events: {other:?}",
                next_seq - 1
            ),
        }
    };
    assert_eq!(code, Some(4008));
    assert!(next_seq > 1, "the events that fit came first");
    ends_in_order(&mut paused).await;
    // One session was closed for being slow, however many events it missed.
    assert_eq!(app.metric("gateway_slow_consumers_total").await, 1.0);
}

#[tokio::test]
async fn one_device_past_the_user_limit_is_closed_and_the_other_stays_open() {
    let app = spawn_app_with(|c| {
        c.gateway.rate_per_sec = 10_000;
        c.gateway.rate_burst = 10_000;
        c.gateway.user_rate_per_sec = 5;
        c.gateway.rate_abuse_limit = 10;
    })
    .await;
    let a = app.user("Ann").await;
    let mut busy = raw(&app, &a).await;
    let mut quiet = raw(&app, &a).await;
    // The quiet device's one request is answered before the flood begins.
    quiet.send(ping_frame(1)).await.unwrap();
    assert!(matches!(
        next_response(&mut quiet).await.result,
        Some(response::Result::Pong(_))
    ));
    // The busy device empties the user's bucket and goes on asking.
    for id in 0..200u64 {
        busy.feed(ping_frame(id)).await.unwrap();
    }
    busy.flush().await.unwrap();
    let mut limited = 0;
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), busy.next())
            .await
            .expect("the server closed in time")
        {
            Some(Ok(WsMessage::Binary(data))) => {
                if let Some(server_frame::Kind::Response(r)) =
                    ServerFrame::decode(data).unwrap().kind
                    && let Some(response::Result::Error(e)) = r.result
                {
                    assert_eq!(e.code, "rate_limited");
                    limited += 1;
                    // The quiet device is refused too while the bucket is
                    // empty, but its refusals are its own.
                    if limited == 5 {
                        quiet.send(ping_frame(2)).await.unwrap();
                    }
                }
            }
            Some(Ok(WsMessage::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            other => panic!("the connection ended without a close frame: {other:?}"),
        }
    };
    assert_eq!(code, Some(1008));
    assert_eq!(limited, 10);
    // The quiet device was refused at most once, and is still served.
    next_response(&mut quiet).await;
    let mut id = 3;
    loop {
        quiet.send(ping_frame(id)).await.unwrap();
        match next_response(&mut quiet).await.result {
            Some(response::Result::Pong(_)) => break,
            Some(response::Result::Error(e)) => {
                assert_eq!(e.code, "rate_limited");
                tokio::time::sleep(Duration::from_millis(e.retry_after_ms.into())).await;
            }
            other => panic!("{other:?}"),
        }
        id += 1;
        assert!(id < 20, "the quiet device was never served again");
    }
}
