//! The listener's limits: slow request heads and bodies, silent connections
//! and connection caps end what they must, and everyone else is served
//! meanwhile.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::{TestApp, spawn_app_with};

/// Longer than any limit these tests configure, by far: a connection not
/// closed within it was not going to be.
const PATIENCE: Duration = Duration::from_secs(10);

fn addr(app: &TestApp) -> SocketAddr {
    app.base_url.trim_start_matches("http://").parse().unwrap()
}

/// A connection from `source`, a loopback address of its own (Linux routes
/// all of 127.0.0.0/8 to the loopback interface).
async fn connect_from(source: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

/// Reads until the server closes the connection; what it sent before.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&seen).into_owned(),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends one request on `stream` and reads its answer's head and body, which
/// `/healthz` keeps short.
async fn healthz_on(stream: &mut TcpStream) -> Option<String> {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .ok()?;
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).await.ok()?;
    (n > 0).then(|| String::from_utf8_lossy(&buf[..n]).into_owned())
}

async fn closed_within(stream: &mut TcpStream) -> String {
    tokio::time::timeout(PATIENCE, read_to_close(stream))
        .await
        .expect("the server kept the connection open")
}

#[tokio::test]
async fn a_request_head_left_unfinished_is_closed_while_others_are_served() {
    let app = spawn_app_with(|c| c.server.header_read_timeout_ms = 300).await;
    let mut slow = TcpStream::connect(addr(&app)).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Another client is served while the head hangs.
    let ok = reqwest::get(format!("{}/healthz", app.base_url))
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    let said = closed_within(&mut slow).await;
    assert!(!said.contains("200 OK"), "{said}");
}

#[tokio::test]
async fn a_connection_that_stalls_in_its_body_is_closed_when_idle() {
    let app = spawn_app_with(|c| c.server.idle_timeout_ms = 300).await;
    let mut stalled = TcpStream::connect(addr(&app)).await.unwrap();
    stalled
        .write_all(
            b"POST /v1/accounts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"phone\"",
        )
        .await
        .unwrap();
    closed_within(&mut stalled).await;
    assert_eq!(app.metric("http_connections_idle_closed_total").await, 1.0);
}

/// Writes `head`, then one byte of body every 50 ms until the server stops
/// taking them.
fn trickle(mut stream: tokio::net::tcp::OwnedWriteHalf, head: &'static [u8]) {
    tokio::spawn(async move {
        if stream.write_all(head).await.is_err() {
            return;
        }
        loop {
            if stream.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

const TRICKLED: &[u8] = b"POST /v1/accounts HTTP/1.1\r\nHost: x\r\n\
    Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n";

#[tokio::test]
async fn a_trickled_body_is_cut_off_by_the_body_timeout() {
    let app = spawn_app_with(|c| c.server.body_timeout_ms = 300).await;
    let stream = TcpStream::connect(addr(&app)).await.unwrap();
    let (mut read, write) = stream.into_split();
    trickle(write, TRICKLED);
    let mut answer = [0u8; 4096];
    let n = tokio::time::timeout(PATIENCE, read.read(&mut answer))
        .await
        .expect("the trickled body was still being read")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"body_timeout""#), "{answer}");
}

#[tokio::test]
async fn a_trickled_body_does_not_hold_shutdown() {
    let app = spawn_app_with(|c| {
        c.server.body_timeout_ms = 600_000;
        c.server.idle_timeout_ms = 3_600_000;
    })
    .await;
    let stream = TcpStream::connect(addr(&app)).await.unwrap();
    let (_read, write) = stream.into_split();
    trickle(write, TRICKLED);
    // The request is in hand once the server counts it beside the metrics'.
    while app.metric("http_requests_in_flight").await < 2.0 {
        tokio::task::yield_now().await;
    }
    app.shutdown.cancel();
    // Drain (100 ms here) and the 3 s grace, with room to spare.
    tokio::time::timeout(PATIENCE, app.stopped)
        .await
        .expect("shutdown waited for the trickled body")
        .unwrap();
}

#[tokio::test]
async fn one_connection_more_than_an_address_may_hold_is_closed_and_others_are_served() {
    let app = spawn_app_with(|c| c.server.max_connections_per_address = 2).await;
    let to = addr(&app);
    let source = [127, 0, 0, 2];
    let mut first = connect_from(source, to).await;
    let mut second = connect_from(source, to).await;
    // Both are held: each has been answered and stays open (keep-alive).
    assert!(healthz_on(&mut first).await.unwrap().contains("200 OK"));
    assert!(healthz_on(&mut second).await.unwrap().contains("200 OK"));
    let mut third = connect_from(source, to).await;
    assert_eq!(healthz_on(&mut third).await, None);
    closed_within(&mut third).await;
    // Another address is served meanwhile.
    let mut other = connect_from([127, 0, 0, 3], to).await;
    assert!(healthz_on(&mut other).await.unwrap().contains("200 OK"));
    assert_eq!(
        app.metric("http_connections_refused_total{cap=\"address\"}")
            .await,
        1.0
    );
    // Once one closes, the address may connect again.
    drop(first);
    served_again_from(source, to).await;
}

/// Waits until a new connection from `source` is served: the server notices
/// a closed connection on its own time.
async fn served_again_from(source: [u8; 4], to: SocketAddr) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let mut retry = connect_from(source, to).await;
            if healthz_on(&mut retry)
                .await
                .is_some_and(|a| a.contains("200 OK"))
            {
                return;
            }
        }
    })
    .await
    .expect("the address stayed refused after its connection closed");
}

#[tokio::test]
async fn a_websocket_counts_against_its_address_until_it_closes() {
    let app = spawn_app_with(|c| c.server.max_connections_per_address = 1).await;
    // The user is made from 127.0.0.1; the cap is tested from 127.0.0.2.
    let user = app.user("Ann").await;
    let to = addr(&app);
    let source = [127, 0, 0, 2];
    let mut socket = connect_from(source, to).await;
    let upgrade = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: superapp.v1\r\nAuthorization: Bearer {}\r\n\r\n",
        user.tokens.access_token
    );
    socket.write_all(upgrade.as_bytes()).await.unwrap();
    let mut head = [0u8; 1024];
    let n = socket.read(&mut head).await.unwrap();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut refused = connect_from(source, to).await;
    assert_eq!(healthz_on(&mut refused).await, None);
    drop(socket);
    served_again_from(source, to).await;
}
