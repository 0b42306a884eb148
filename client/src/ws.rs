//! The WebSocket session: protobuf requests and responses, and pushed events.
//!
//! One background task owns the socket. Keeping the reads in a single place is
//! what lets tungstenite answer pings and lets the server's close frame be
//! seen even while nobody is calling into the [`Connection`].

use crate::error::{ClientError, Result};
use futures_util::{SinkExt, StreamExt};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use prost::Message as _;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use superapp_proto::SUBPROTOCOL;
use superapp_proto::v1::{
    ClientFrame, ConversationPage, Event, ListConversations, MarkRead, MessageBody, MessagePage,
    Ping, Pong, PullMessages, ReadAck, ResyncRequired, SendAck, SendMessage, ServerFrame,
    client_frame::Request, event::Kind as EventKind, message_body::Content,
    response::Result as ResponseResult, server_frame::Kind,
};
use superapp_proto::{ConversationId, GroupId};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Events waiting for the application. When it falls this far behind, the
/// driver drops events and queues one `ResyncRequired` instead of blocking,
/// because a blocked driver would also stop delivering responses.
const EVENT_QUEUE: usize = 4096;
/// Requests waiting for the driver to write them.
const COMMAND_QUEUE: usize = 256;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes read from the socket at a time.
const READ_BUFFER_BYTES: usize = 8 * 1024;
/// How long a closing socket may take to finish the close handshake.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

enum Command {
    Request {
        frame: ClientFrame,
        reply: oneshot::Sender<superapp_proto::v1::Response>,
    },
    Close,
}

/// `None` while the socket is open; once it ended, the server's close frame
/// if it sent one.
type Ended = Option<Option<(u16, String)>>;

/// A live WebSocket session. All methods take `&self`, so one connection can
/// serve concurrent requests; responses are matched by frame id.
pub struct Connection {
    commands: mpsc::Sender<Command>,
    /// Behind a mutex only so that `next_event` can take `&self`; there is
    /// one queue, and concurrent callers take turns at it.
    events: Mutex<mpsc::Receiver<Event>>,
    ended: watch::Receiver<Ended>,
    next_id: AtomicU64,
}

impl Connection {
    /// Connects with a bearer access token, as native clients do.
    pub async fn connect(base_url: &str, access_token: &str) -> Result<Connection> {
        Self::open(base_url, Some(access_token), None).await
    }

    /// Connects with a single-use ticket from `POST /v1/ws-tickets`.
    pub async fn connect_with_ticket(base_url: &str, ticket: &str) -> Result<Connection> {
        let query = format!("ticket={}", escape_query(ticket));
        Self::open(base_url, None, Some(&query)).await
    }

    async fn open(base_url: &str, bearer: Option<&str>, query: Option<&str>) -> Result<Connection> {
        if ws_url(base_url, query).is_none() {
            return Err(ClientError::Url(base_url.to_owned()));
        }
        let socket = connect_raw(base_url, bearer, query)
            .await
            .map_err(handshake_error)?;
        let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let (event_tx, events) = mpsc::channel(EVENT_QUEUE);
        let (ended_tx, ended) = watch::channel(None);
        tokio::spawn(drive(socket, command_rx, event_tx, ended_tx));
        Ok(Connection {
            commands,
            events: Mutex::new(events),
            ended,
            next_id: AtomicU64::new(1),
        })
    }

    /// Sends one request and waits for its response. An `Error` response
    /// becomes [`ClientError::Server`].
    pub async fn request(&self, request: Request) -> Result<ResponseResult> {
        let frame = ClientFrame {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            request: Some(request),
        };
        let (reply, response) = oneshot::channel();
        if self
            .commands
            .send(Command::Request { frame, reply })
            .await
            .is_err()
        {
            return Err(self.closed_error());
        }
        let response = match tokio::time::timeout(REQUEST_TIMEOUT, response).await {
            Err(_) => return Err(ClientError::Timeout(REQUEST_TIMEOUT)),
            Ok(Err(_)) => return Err(self.closed_error()),
            Ok(Ok(response)) => response,
        };
        match response.result {
            Some(ResponseResult::Error(err)) => Err(ClientError::Server {
                code: err.code,
                message: err.message,
                retry_after_ms: (err.retry_after_ms > 0).then_some(u64::from(err.retry_after_ms)),
            }),
            Some(result) => Ok(result),
            None => Err(ClientError::Decode("response without a result".into())),
        }
    }

    /// Sends a text to a user, in the one-to-one conversation with them.
    /// Reusing `client_msg_id` makes a retry safe: the server answers with the
    /// first ack and `duplicate: true`.
    pub async fn send_text(
        &self,
        to_user: u64,
        client_msg_id: &str,
        text: &str,
    ) -> Result<SendAck> {
        self.send(SendMessage {
            client_msg_id: client_msg_id.to_owned(),
            conversation_id: String::new(),
            to_user,
            body: Some(text_body(text)),
            ..SendMessage::default()
        })
        .await
    }

    pub async fn send_text_to_conversation(
        &self,
        conversation_id: &str,
        client_msg_id: &str,
        text: &str,
    ) -> Result<SendAck> {
        self.send(SendMessage {
            client_msg_id: client_msg_id.to_owned(),
            conversation_id: conversation_id.to_owned(),
            body: Some(text_body(text)),
            ..SendMessage::default()
        })
        .await
    }

    /// Sends a text to a group, mentioning members (or everyone: owner and
    /// admins only).
    pub async fn send_group_text(
        &self,
        group_id: u64,
        client_msg_id: &str,
        text: &str,
        mentions: &[u64],
        mention_all: bool,
    ) -> Result<SendAck> {
        self.send(SendMessage {
            client_msg_id: client_msg_id.to_owned(),
            conversation_id: ConversationId::Group(GroupId(group_id)).to_string(),
            body: Some(text_body(text)),
            mentions: mentions.to_vec(),
            mention_all,
            ..SendMessage::default()
        })
        .await
    }

    /// Sends any prepared message.
    pub async fn send(&self, message: SendMessage) -> Result<SendAck> {
        match self.request(Request::Send(message)).await? {
            ResponseResult::SendAck(ack) => Ok(ack),
            other => Err(unexpected("send_ack", &other)),
        }
    }

    /// One page of conversations, most recent first; `cursor` is `""` for the
    /// first page and the previous page's `next_cursor` after that.
    pub async fn list_conversations(&self, limit: u32, cursor: &str) -> Result<ConversationPage> {
        let request = Request::ListConversations(ListConversations {
            limit,
            cursor: cursor.to_owned(),
        });
        match self.request(request).await? {
            ResponseResult::Conversations(page) => Ok(page),
            other => Err(unexpected("conversations", &other)),
        }
    }

    /// Messages with seq > `after_seq`, ascending.
    pub async fn pull(
        &self,
        conversation_id: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<MessagePage> {
        let request = Request::Pull(PullMessages {
            conversation_id: conversation_id.to_owned(),
            after_seq,
            limit,
        });
        match self.request(request).await? {
            ResponseResult::Messages(page) => Ok(page),
            other => Err(unexpected("messages", &other)),
        }
    }

    pub async fn mark_read(&self, conversation_id: &str, seq: u64) -> Result<ReadAck> {
        let request = Request::MarkRead(MarkRead {
            conversation_id: conversation_id.to_owned(),
            seq,
        });
        match self.request(request).await? {
            ResponseResult::ReadAck(ack) => Ok(ack),
            other => Err(unexpected("read_ack", &other)),
        }
    }

    /// An application-level ping; it also counts as activity for the
    /// server's idle timeout.
    pub async fn ping(&self) -> Result<Pong> {
        match self.request(Request::Ping(Ping {})).await? {
            ResponseResult::Pong(pong) => Ok(pong),
            other => Err(unexpected("pong", &other)),
        }
    }

    /// The next pushed event, or `None` after `timeout` or once the socket
    /// ended and every queued event was taken (see [`is_closed`](Self::is_closed)).
    pub async fn next_event(&self, timeout: Duration) -> Option<Event> {
        let mut events = self.events.lock().await;
        tokio::time::timeout(timeout, events.recv())
            .await
            .ok()
            .flatten()
    }

    /// Starts the close handshake (code 1000) and waits briefly for it to end.
    pub async fn close(&self) {
        // A send error means the driver is already gone, which is the goal.
        let _ = self.commands.send(Command::Close).await;
        self.wait_closed(CLOSE_GRACE + Duration::from_secs(1)).await;
    }

    pub fn is_closed(&self) -> bool {
        self.ended.borrow().is_some()
    }

    /// The server's close code and reason, once the socket ended with one.
    pub fn close_frame(&self) -> Option<(u16, String)> {
        self.ended.borrow().clone().flatten()
    }

    /// Waits up to `timeout` for the socket to end, then returns the server's
    /// close frame if it sent one.
    pub async fn wait_closed(&self, timeout: Duration) -> Option<(u16, String)> {
        let mut ended = self.ended.clone();
        let waited = tokio::time::timeout(timeout, ended.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(state)) => state.clone().flatten(),
            _ => None,
        }
    }

    fn closed_error(&self) -> ClientError {
        let (code, reason) = match self.close_frame() {
            Some((code, reason)) => (Some(code), reason),
            None => (None, String::new()),
        };
        ClientError::Closed { code, reason }
    }
}

fn text_body(text: &str) -> MessageBody {
    MessageBody {
        fallback: String::new(),
        content: Some(Content::Text(text.to_owned())),
    }
}

fn unexpected(wanted: &str, got: &ResponseResult) -> ClientError {
    ClientError::Decode(format!("expected {wanted}, got {got:?}"))
}

/// Owns the socket until it ends. Responses go to their waiting request by
/// id; events go to the bounded queue.
async fn drive(
    socket: Socket,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    ended: watch::Sender<Ended>,
) {
    let mut driver = Driver {
        socket,
        events,
        pending: HashMap::new(),
        close_frame: None,
        close_deadline: None,
        lagged: false,
    };
    while driver.step(&mut commands).await.is_continue() {}
    ended.send_replace(Some(driver.close_frame));
    // Dropping `pending` here wakes every waiting request with "closed".
}

/// The socket and what its driver keeps between frames.
struct Driver {
    socket: Socket,
    events: mpsc::Sender<Event>,
    pending: HashMap<u64, oneshot::Sender<superapp_proto::v1::Response>>,
    close_frame: Option<(u16, String)>,
    /// Set once closing starts, so a server that never finishes the handshake
    /// cannot keep this task alive.
    close_deadline: Option<Instant>,
    /// Events were dropped because the queue was full; a ResyncRequired is owed.
    lagged: bool,
}

/// What woke the driver and is handled outside the `select!`, once the
/// futures that borrow the driver are gone.
enum Woke {
    Command(Option<Command>),
    Incoming(Option<std::result::Result<WsMessage, tungstenite::Error>>),
}

impl Driver {
    /// Waits for a command, a frame, room in the event queue or the close
    /// deadline, and handles it; `Break` once the socket is done.
    async fn step(&mut self, commands: &mut mpsc::Receiver<Command>) -> ControlFlow<()> {
        let woke = tokio::select! {
            command = commands.recv(), if self.close_deadline.is_none() => Woke::Command(command),
            incoming = self.socket.next() => Woke::Incoming(incoming),
            permit = self.events.reserve(), if self.lagged => {
                if let Ok(permit) = permit {
                    permit.send(Event { kind: Some(EventKind::ResyncRequired(ResyncRequired {})) });
                    self.lagged = false;
                }
                return ControlFlow::Continue(());
            },
            _ = tokio::time::sleep_until(self.close_deadline.unwrap_or_else(Instant::now)), if self.close_deadline.is_some() => return ControlFlow::Break(()),
        };
        match woke {
            Woke::Command(command) => self.command(command).await,
            Woke::Incoming(incoming) => self.incoming(incoming),
        }
    }

    async fn command(&mut self, command: Option<Command>) -> ControlFlow<()> {
        match command {
            Some(Command::Request { frame, reply }) => self.send_request(frame, reply).await,
            // `None`: the Connection was dropped.
            Some(Command::Close) | None => self.start_close().await,
        }
    }

    async fn send_request(
        &mut self,
        frame: ClientFrame,
        reply: oneshot::Sender<superapp_proto::v1::Response>,
    ) -> ControlFlow<()> {
        // Requests that timed out on the caller's side leave senders
        // nobody listens to; sweep them before the map grows.
        if self.pending.len() >= 1024 {
            self.pending.retain(|_, reply| !reply.is_closed());
        }
        self.pending.insert(frame.id, reply);
        let bytes = frame.encode_to_vec();
        if self
            .socket
            .send(WsMessage::Binary(bytes.into()))
            .await
            .is_err()
        {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    async fn start_close(&mut self) -> ControlFlow<()> {
        self.close_deadline = Some(Instant::now() + CLOSE_GRACE);
        let normal = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        if self.socket.close(Some(normal)).await.is_err() {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn incoming(
        &mut self,
        incoming: Option<std::result::Result<WsMessage, tungstenite::Error>>,
    ) -> ControlFlow<()> {
        match incoming {
            Some(Ok(WsMessage::Binary(bytes))) => self.frame(bytes),
            Some(Ok(WsMessage::Close(frame))) => {
                self.close_frame =
                    frame.map(|CloseFrame { code, reason }| (u16::from(code), reason.to_string()));
                self.close_deadline
                    .get_or_insert(Instant::now() + CLOSE_GRACE);
            }
            // Pings are answered by tungstenite as we keep reading; text
            // frames are not part of the protocol.
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return ControlFlow::Break(()),
        }
        ControlFlow::Continue(())
    }

    fn frame(&mut self, bytes: tungstenite::Bytes) {
        // A frame we cannot decode is skipped: it is either a newer
        // protocol's addition or garbage, and neither should end the
        // session.
        let Ok(frame) = ServerFrame::decode(bytes) else {
            return;
        };
        match frame.kind {
            Some(Kind::Response(response)) => {
                if let Some(reply) = self.pending.remove(&response.id) {
                    // The caller may have timed out and gone.
                    let _ = reply.send(response);
                }
            }
            Some(Kind::Event(event)) if !self.lagged => {
                if let Err(mpsc::error::TrySendError::Full(_)) = self.events.try_send(event) {
                    self.lagged = true;
                }
            }
            // While lagged, events are dropped: the owed resync
            // makes the application pull them from the store.
            Some(Kind::Event(_)) | None => {}
        }
    }
}

/// Opens a WebSocket to `/v1/ws` offering the `superapp.v1` subprotocol, with
/// an optional bearer token and raw query string, and returns the bare
/// socket. For tests that need to send raw or malformed frames; a refused
/// upgrade comes back as `tungstenite::Error::Http` with the response status.
pub async fn connect_raw(
    base_url: &str,
    bearer: Option<&str>,
    query: Option<&str>,
) -> Result<Socket, tungstenite::Error> {
    let url = ws_url(base_url, query).ok_or(tungstenite::Error::Url(
        tungstenite::error::UrlError::UnsupportedUrlScheme,
    ))?;
    let mut request = url.into_client_request()?;
    let headers = request.headers_mut();
    headers.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(SUBPROTOCOL),
    );
    if let Some(token) = bearer {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|err| tungstenite::Error::HttpFormat(err.into()))?;
        headers.insert(header::AUTHORIZATION, value);
    }
    // tungstenite zero-fills its whole read buffer before each read, so its
    // 128 KiB default costs a 128 KiB memset per frame; frames here are small
    // (a larger one is read in several chunks). Nagle off: frames are small
    // and latency matters more than packing them.
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES);
    let (socket, _response) =
        tokio_tungstenite::connect_async_with_config(request, Some(config), true).await?;
    Ok(socket)
}

/// A refused upgrade carries the API's JSON error body, so it reads like any
/// other API refusal (e.g. `token_expired` for an expired token).
fn handshake_error(err: tungstenite::Error) -> ClientError {
    match err {
        tungstenite::Error::Http(response) => {
            let status = reqwest::StatusCode::from_u16(response.status().as_u16())
                .unwrap_or(reqwest::StatusCode::INTERNAL_SERVER_ERROR);
            crate::http::api_error(status, response.body().as_deref().unwrap_or_default())
        }
        other => other.into(),
    }
}

/// `http://host:port/prefix` becomes `ws://host:port/prefix/v1/ws?query`.
fn ws_url(base_url: &str, query: Option<&str>) -> Option<String> {
    let base = base_url.trim_end_matches('/');
    let rest = if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if base.starts_with("ws://") || base.starts_with("wss://") {
        base.to_owned()
    } else {
        return None;
    };
    Some(match query {
        Some(query) => format!("{rest}/v1/ws?{query}"),
        None => format!("{rest}/v1/ws"),
    })
}

/// A value for a URL's query string, escaped rather than trusted to be
/// URL-safe (tickets are opaque, search text is anyone's): every byte but
/// RFC 3986's unreserved characters.
pub fn escape_query(value: &str) -> String {
    utf8_percent_encode(value, QUERY_VALUE).to_string()
}

const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A fresh 128-bit id in hex, for `client_msg_id`. Not cryptographic: it only
/// has to be unique per sender. The std hasher is seeded randomly per
/// process, and time, pid and a counter keep ids apart within one.
pub fn new_client_msg_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::time::{SystemTime, UNIX_EPOCH};
    static COUNTER: AtomicU64 = AtomicU64::new(0);

    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let seed = std::collections::hash_map::RandomState::new();
    let half = |salt: u64| {
        let mut hasher = seed.build_hasher();
        hasher.write_u64(salt);
        hasher.write_u128(nanos);
        hasher.write_u32(std::process::id());
        hasher.write_u64(count);
        hasher.finish()
    };
    format!("{:016x}{:016x}", half(1), half(2))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use superapp_proto::v1::Response;
    use tokio::net::TcpListener;
    use tokio_tungstenite::tungstenite::handshake::server::{
        Request as Upgrade, Response as Accept,
    };

    /// A one-connection WebSocket server on port 0 that selects the
    /// subprotocol and hands the socket to `script`. Returns its base URL.
    async fn fake_server<F, Fut>(script: F) -> String
    where
        F: FnOnce(WebSocketStream<TcpStream>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            #[allow(clippy::result_large_err)] // the callback type is tungstenite's
            let select = |_: &Upgrade, mut accept: Accept| {
                let protocol = HeaderValue::from_static(SUBPROTOCOL);
                accept
                    .headers_mut()
                    .insert(header::SEC_WEBSOCKET_PROTOCOL, protocol);
                Ok(accept)
            };
            let socket = tokio_tungstenite::accept_hdr_async(stream, select)
                .await
                .unwrap();
            script(socket).await;
        });
        format!("http://{addr}")
    }

    async fn next_request(socket: &mut WebSocketStream<TcpStream>) -> ClientFrame {
        loop {
            if let WsMessage::Binary(bytes) = socket.next().await.unwrap().unwrap() {
                return ClientFrame::decode(bytes).unwrap();
            }
        }
    }

    async fn push(socket: &mut WebSocketStream<TcpStream>, kind: Kind) {
        let frame = ServerFrame { kind: Some(kind) };
        socket
            .send(WsMessage::Binary(frame.encode_to_vec().into()))
            .await
            .unwrap();
    }

    fn pong(id: u64, server_time_ms: i64) -> Kind {
        Kind::Response(Response {
            id,
            result: Some(ResponseResult::Pong(Pong { server_time_ms })),
        })
    }

    fn message_event(seq: u64) -> Kind {
        Kind::Event(Event {
            kind: Some(EventKind::Message(superapp_proto::v1::Message {
                seq,
                ..Default::default()
            })),
        })
    }

    #[tokio::test]
    async fn responses_find_their_request_by_id_even_out_of_order() {
        let url = fake_server(|mut socket| async move {
            let first = next_request(&mut socket).await;
            let second = next_request(&mut socket).await;
            push(&mut socket, pong(second.id, 2)).await;
            push(&mut socket, pong(first.id, 1)).await;
            while socket.next().await.is_some() {}
        })
        .await;
        let conn = Connection::connect(&url, "token").await.unwrap();
        let (first, second) = tokio::join!(conn.ping(), async {
            // Makes sure the first ping is written before the second.
            tokio::time::sleep(Duration::from_millis(50)).await;
            conn.ping().await
        });
        assert_eq!(first.unwrap().server_time_ms, 1);
        assert_eq!(second.unwrap().server_time_ms, 2);
    }

    #[tokio::test]
    async fn an_error_response_becomes_a_server_error_with_its_code() {
        let url = fake_server(|mut socket| async move {
            let request = next_request(&mut socket).await;
            let error = superapp_proto::v1::Error {
                code: "rate_limited".into(),
                message: "slow down".into(),
                retry_after_ms: 300,
            };
            let result = Some(ResponseResult::Error(error));
            push(
                &mut socket,
                Kind::Response(Response {
                    id: request.id,
                    result,
                }),
            )
            .await;
            while socket.next().await.is_some() {}
        })
        .await;
        let conn = Connection::connect(&url, "token").await.unwrap();
        let err = conn.ping().await.unwrap_err();
        assert_eq!(err.code(), Some("rate_limited"));
        assert_eq!(err.retry_after_ms(), Some(300));
    }

    #[tokio::test]
    async fn an_overflowing_event_queue_is_replaced_by_one_resync() {
        let url = fake_server(|mut socket| async move {
            let request = next_request(&mut socket).await;
            for seq in 1..=EVENT_QUEUE as u64 + 100 {
                push(&mut socket, message_event(seq)).await;
            }
            push(&mut socket, pong(request.id, 0)).await;
            while socket.next().await.is_some() {}
        })
        .await;
        let conn = Connection::connect(&url, "token").await.unwrap();
        // The pong comes after every event, so the driver has seen them all.
        conn.ping().await.unwrap();
        let mut kinds = Vec::new();
        while let Some(event) = conn.next_event(Duration::from_millis(200)).await {
            kinds.push(event.kind.unwrap());
        }
        assert_eq!(kinds.len(), EVENT_QUEUE + 1);
        assert!(
            matches!(kinds[EVENT_QUEUE - 1], EventKind::Message(ref m) if m.seq == EVENT_QUEUE as u64)
        );
        assert!(matches!(kinds[EVENT_QUEUE], EventKind::ResyncRequired(_)));
    }

    #[tokio::test]
    async fn the_server_close_code_is_reported_and_fails_later_requests() {
        let url = fake_server(|mut socket| async move {
            let slow = CloseFrame {
                code: CloseCode::from(4008),
                reason: "slow consumer".into(),
            };
            socket.close(Some(slow)).await.unwrap();
            while socket.next().await.is_some() {}
        })
        .await;
        let conn = Connection::connect(&url, "token").await.unwrap();
        let frame = conn.wait_closed(Duration::from_secs(2)).await;
        assert_eq!(frame, Some((4008, "slow consumer".to_owned())));
        let err = conn.ping().await.unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Closed {
                    code: Some(4008),
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn http_becomes_ws_and_https_becomes_wss() {
        assert_eq!(
            ws_url("http://127.0.0.1:8080", None).unwrap(),
            "ws://127.0.0.1:8080/v1/ws"
        );
        assert_eq!(
            ws_url("https://chat.example/", None).unwrap(),
            "wss://chat.example/v1/ws"
        );
    }

    #[test]
    fn a_query_is_appended_after_the_path() {
        assert_eq!(
            ws_url("http://h:1", Some("ticket=abc")).unwrap(),
            "ws://h:1/v1/ws?ticket=abc"
        );
    }

    #[test]
    fn a_base_url_without_an_http_scheme_is_refused() {
        assert!(ws_url("ftp://h", None).is_none());
        assert!(ws_url("127.0.0.1:8080", None).is_none());
    }

    #[test]
    fn a_ticket_with_reserved_characters_is_escaped() {
        assert_eq!(
            utf8_percent_encode("a+b/c=d_e-f.g~", QUERY_VALUE).to_string(),
            "a%2Bb%2Fc%3Dd_e-f.g~"
        );
    }

    #[test]
    fn client_msg_ids_are_32_hex_digits_and_never_repeat() {
        let ids: std::collections::HashSet<String> =
            (0..1000).map(|_| new_client_msg_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(
            ids.iter()
                .all(|id| id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()))
        );
    }
}
