//! TURN credentials from the server allocate a relay on a real coturn
//! (`turnserver`, Debian's coturn), and wrong or expired ones are refused.
//! The allocation is a minimal STUN/TURN client written here (RFC 5389 and
//! RFC 5766): an Allocate answered 401 with a realm and nonce, then again
//! with USERNAME, REALM, NONCE and MESSAGE-INTEGRITY (HMAC-SHA1 under
//! MD5(username:realm:password)), answered with an XOR-RELAYED-ADDRESS.
//! Skipped when `turnserver` is not installed, unless
//! `TESTKIT_REQUIRE_COTURN` is set (CI sets it).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac as _};
use md5::{Digest as _, Md5};
use sha1::Sha1;
use superapp_kit::secret::Secret;

use crate::helpers::spawn_app_with;

const SECRET: &str = "the tier's turn secret, shared";
const REALM: &str = "superapp.test";
const MAGIC: u32 = 0x2112_A442;

const ALLOCATE: u16 = 0x0003;
const ALLOCATE_OK: u16 = 0x0103;
const ALLOCATE_ERROR: u16 = 0x0113;
const USERNAME: u16 = 0x0006;
const MESSAGE_INTEGRITY: u16 = 0x0008;
const ERROR_CODE: u16 = 0x0009;
const REALM_ATTR: u16 = 0x0014;
const NONCE: u16 = 0x0015;
const XOR_RELAYED_ADDRESS: u16 = 0x0016;
const REQUESTED_TRANSPORT: u16 = 0x0019;

/// A `turnserver` child on a free port, killed (by its pid) on drop.
struct Coturn {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Coturn {
    fn start() -> Option<Self> {
        let installed = Command::new("turnserver")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !installed {
            if std::env::var_os("TESTKIT_REQUIRE_COTURN").is_some() {
                panic!("turnserver is required (TESTKIT_REQUIRE_COTURN) but not installed");
            }
            eprintln!("skipped: turnserver is not installed");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let relay = free_port();
        let child = Command::new("turnserver")
            .args([
                "-n",
                "--use-auth-secret",
                "--no-tls",
                "--no-dtls",
                "--no-cli",
            ])
            .arg(format!("--static-auth-secret={SECRET}"))
            .arg(format!("--realm={REALM}"))
            .args(["--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"])
            .arg(format!("--listening-port={port}"))
            .arg(format!("--min-port={relay}"))
            .arg(format!("--max-port={}", relay.saturating_add(20)))
            .arg(format!("--db={}", dir.path().join("turndb").display()))
            .arg(format!(
                "--pidfile={}",
                dir.path().join("turn.pid").display()
            ))
            .arg(format!(
                "--log-file={}",
                dir.path().join("turn.log").display()
            ))
            .args(["--simple-log", "--no-stdout-log", "--no-software-attribute"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn turnserver");
        Some(Self {
            child,
            port,
            _dir: dir,
        })
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A STUN message: type, transaction id and attributes in order.
fn message(kind: u16, transaction: [u8; 12], attributes: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (attribute, value) in attributes {
        body.extend_from_slice(&attribute.to_be_bytes());
        body.extend_from_slice(&(value.len() as u16).to_be_bytes());
        body.extend_from_slice(value);
        body.resize(body.len().div_ceil(4) * 4, 0);
    }
    let mut out = Vec::new();
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(&MAGIC.to_be_bytes());
    out.extend_from_slice(&transaction);
    out.extend_from_slice(&body);
    out
}

/// Appends MESSAGE-INTEGRITY: HMAC-SHA1 under `key` over the message with
/// its length already counting the attribute.
fn sign(mut msg: Vec<u8>, key: &[u8]) -> Vec<u8> {
    let length = (msg.len() - 20 + 24) as u16;
    msg[2..4].copy_from_slice(&length.to_be_bytes());
    let mut mac = Hmac::<Sha1>::new_from_slice(key).unwrap();
    mac.update(&msg);
    msg.extend_from_slice(&MESSAGE_INTEGRITY.to_be_bytes());
    msg.extend_from_slice(&20u16.to_be_bytes());
    msg.extend_from_slice(&mac.finalize().into_bytes());
    msg
}

/// A response's type and attributes.
fn parse(bytes: &[u8]) -> (u16, Vec<(u16, Vec<u8>)>) {
    let kind = u16::from_be_bytes([bytes[0], bytes[1]]);
    let length = u16::from_be_bytes([bytes[2], bytes[3]]) as usize;
    let mut attributes = Vec::new();
    let mut at = 20;
    while at + 4 <= 20 + length {
        let attribute = u16::from_be_bytes([bytes[at], bytes[at + 1]]);
        let len = u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize;
        attributes.push((attribute, bytes[at + 4..at + 4 + len].to_vec()));
        at += 4 + len.div_ceil(4) * 4;
    }
    (kind, attributes)
}

fn attribute(attributes: &[(u16, Vec<u8>)], kind: u16) -> Option<Vec<u8>> {
    attributes
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, v)| v.clone())
}

/// Sends `msg` and waits for the answer, sending again on silence until
/// `within` passes (coturn may still be starting).
fn exchange(socket: &UdpSocket, server: SocketAddr, msg: &[u8], within: Duration) -> Vec<u8> {
    let deadline = Instant::now() + within;
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 1500];
    loop {
        socket.send_to(msg, server).unwrap();
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            return buf[..n].to_vec();
        }
        assert!(Instant::now() < deadline, "coturn did not answer");
    }
}

/// What an authenticated Allocate got: the relayed address, or the error code.
fn allocate(server: SocketAddr, username: &str, password: &str) -> Result<SocketAddr, u16> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let transport = (REQUESTED_TRANSPORT, vec![17, 0, 0, 0]);
    let first = message(ALLOCATE, rand::random(), std::slice::from_ref(&transport));
    let (kind, attributes) = parse(&exchange(&socket, server, &first, Duration::from_secs(10)));
    assert_eq!(
        kind, ALLOCATE_ERROR,
        "an unauthenticated allocate is refused"
    );
    let realm = attribute(&attributes, REALM_ATTR).expect("a realm");
    let nonce = attribute(&attributes, NONCE).expect("a nonce");
    let mut key = Md5::new();
    key.update(format!(
        "{username}:{}:{password}",
        String::from_utf8_lossy(&realm)
    ));
    let key = key.finalize();
    let second = message(
        ALLOCATE,
        rand::random(),
        &[
            transport,
            (USERNAME, username.as_bytes().to_vec()),
            (REALM_ATTR, realm),
            (NONCE, nonce),
        ],
    );
    let signed = sign(second, &key);
    let (kind, attributes) = parse(&exchange(&socket, server, &signed, Duration::from_secs(5)));
    if kind == ALLOCATE_OK {
        let relayed = attribute(&attributes, XOR_RELAYED_ADDRESS).expect("a relayed address");
        let port = u16::from_be_bytes([relayed[2], relayed[3]]) ^ (MAGIC >> 16) as u16;
        let ip = u32::from_be_bytes([relayed[4], relayed[5], relayed[6], relayed[7]]) ^ MAGIC;
        return Ok(SocketAddr::from((Ipv4Addr::from(ip), port)));
    }
    let error = attribute(&attributes, ERROR_CODE).expect("an error code");
    Err(u16::from(error[2]) * 100 + u16::from(error[3]))
}

#[tokio::test]
async fn the_server_s_turn_credentials_allocate_a_relay_on_coturn_and_others_are_refused() {
    let Some(coturn) = Coturn::start() else {
        return;
    };
    let uri = format!("turn:127.0.0.1:{}?transport=udp", coturn.port);
    let app = spawn_app_with(|c| {
        c.calls.turn_secret = Some(Secret::new(SECRET.into()));
        c.calls.turn_uris = vec![uri.clone()];
    })
    .await;
    let alice = app.user("Alice").await;
    let granted = app
        .http
        .turn_credentials(&alice.tokens.access_token)
        .await
        .unwrap();
    assert_eq!(granted.uris, [uri]);
    let server = coturn.addr();
    let (username, credential) = (granted.username.clone(), granted.credential.clone());
    let relayed = tokio::task::spawn_blocking(move || allocate(server, &username, &credential))
        .await
        .unwrap()
        .expect("coturn allocates a relay");
    assert_eq!(relayed.ip(), Ipv4Addr::LOCALHOST);

    // A wrong password, and an expired username with its right password.
    let username = granted.username.clone();
    let wrong = tokio::task::spawn_blocking(move || allocate(server, &username, "not it"))
        .await
        .unwrap();
    assert_eq!(wrong, Err(401));
    let expired = format!("1000:{}", alice.id);
    let password = superapp_chat::calls::turn::password(SECRET.as_bytes(), &expired);
    let refused = tokio::task::spawn_blocking(move || allocate(server, &expired, &password))
        .await
        .unwrap();
    assert_eq!(refused, Err(401));
}
