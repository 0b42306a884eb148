//! The ceiling: a bare relay on the same WebSocket stack as the server (axum
//! over tokio-tungstenite, the same buffer sizes and frame limit), speaking the
//! same frames, with no authentication and no storage. A `Send` to user N is
//! forwarded at once to the sessions that connected as N, and acked.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use prost::Message as _;
use superapp_client::proto::v1::{
    ClientFrame, Event, Message, Response, SendAck, ServerFrame, client_frame, event, response,
    server_frame,
};
use tokio::sync::mpsc;

use crate::setup::{Worker, report};

#[derive(Default)]
struct Relay {
    sessions: Mutex<HashMap<u64, Vec<mpsc::Sender<Bytes>>>>,
    seq: AtomicU64,
}

/// Starts the relay as a child process; returns it and its base URL.
pub async fn start_child() -> anyhow::Result<(Worker, String)> {
    let (tx, mut lines) = mpsc::unbounded_channel();
    let worker = Worker::spawn(
        &["relay".into(), "--listen".into(), "127.0.0.1:0".into()],
        tx,
    )?;
    let line = lines
        .recv()
        .await
        .ok_or_else(|| anyhow::anyhow!("the relay did not start"))?;
    let addr = line["listening"].as_str().unwrap_or_default().to_string();
    Ok((worker, format!("http://{addr}")))
}

pub async fn serve(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    let relay = Arc::new(Relay::default());
    let app = Router::new()
        .route("/v1/ws", get(upgrade))
        .with_state(relay);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    report(&serde_json::json!({ "listening": listener.local_addr()?.to_string() }));
    axum::serve(listener, app).await?;
    Ok(())
}

async fn upgrade(
    State(relay): State<Arc<Relay>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> impl IntoResponse {
    let id = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    ws.protocols([superapp_client::proto::SUBPROTOCOL])
        .read_buffer_size(2 * 1024)
        .write_buffer_size(4 * 1024)
        .max_message_size(64 * 1024)
        .max_frame_size(64 * 1024)
        .on_upgrade(move |socket| session(socket, relay, id))
}

async fn session(mut socket: WebSocket, relay: Arc<Relay>, id: u64) {
    let (tx, mut outbound) = mpsc::channel::<Bytes>(256);
    relay
        .sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(id)
        .or_default()
        .push(tx);
    loop {
        tokio::select! {
            frame = outbound.recv() => match frame {
                Some(frame) => if socket.send(WsMessage::Binary(frame)).await.is_err() { break },
                None => break,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(WsMessage::Binary(data))) => {
                    let Ok(frame) = ClientFrame::decode(data) else { break };
                    let reply = relay.handle(id, frame);
                    if socket.send(WsMessage::Binary(reply)).await.is_err() { break }
                }
                Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    let mut sessions = relay.sessions.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(list) = sessions.get_mut(&id) {
        list.retain(|s| !s.is_closed());
    }
}

impl Relay {
    fn handle(&self, from: u64, frame: ClientFrame) -> Bytes {
        let result = match frame.request {
            Some(client_frame::Request::Send(send)) => {
                let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
                let event = ServerFrame {
                    kind: Some(server_frame::Kind::Event(Event {
                        kind: Some(event::Kind::Message(Message {
                            conversation_id: String::new(),
                            seq,
                            message_id: seq,
                            sender: from,
                            server_time_ms: 0,
                            client_msg_id: send.client_msg_id,
                            body: send.body,
                            ..Message::default()
                        })),
                    })),
                };
                let bytes = Bytes::from(event.encode_to_vec());
                let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
                for target in [send.to_user, from] {
                    for s in sessions.get(&target).into_iter().flatten() {
                        let _ = s.try_send(bytes.clone());
                    }
                }
                response::Result::SendAck(SendAck {
                    seq,
                    message_id: seq,
                    ..Default::default()
                })
            }
            _ => response::Result::Pong(Default::default()),
        };
        Bytes::from(
            ServerFrame {
                kind: Some(server_frame::Kind::Response(Response {
                    id: frame.id,
                    result: Some(result),
                })),
            }
            .encode_to_vec(),
        )
    }
}
