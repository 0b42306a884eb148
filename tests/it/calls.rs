//! Calls over real WebSockets: every state transition, the races, the
//! relay to the answering device only, a caller the callee blocks, the
//! records in the conversation, a group mesh of three, TURN credentials
//! (and an allocation on a local coturn with them, `turn.rs`).

use std::time::Duration;

use prost::Message as _;
use superapp_account::model::WhoMayMessage;
use superapp_client::Connection;
use superapp_client::calls::CallActionKind as Kind;
use superapp_client::proto::v1::call_event::State;
use superapp_client::proto::v1::call_record::Outcome;
use superapp_client::proto::v1::{
    CallEvent, CallRecord, CallSignal, IceCandidate, Message, call_signal, event,
    message_body::Content,
};

use crate::helpers::{TestApp, User, code, next_message, spawn_app, spawn_app_with};

const WAIT: Duration = Duration::from_secs(10);

/// The next call event, skipping anything else.
pub async fn next_call(conn: &Connection) -> CallEvent {
    loop {
        let event = conn.next_event(WAIT).await.expect("a call event in time");
        if let Some(event::Kind::Call(call)) = event.kind {
            return call;
        }
    }
}

/// The next call event's state and whom it is about.
pub async fn next_state(conn: &Connection) -> (State, u64) {
    let call = next_call(conn).await;
    (call.state(), call.user)
}

/// The next relayed signal, skipping anything else.
pub async fn next_signal(conn: &Connection) -> CallSignal {
    loop {
        let event = conn.next_event(WAIT).await.expect("a signal in time");
        if let Some(event::Kind::CallSignal(signal)) = event.kind {
            return signal;
        }
    }
}

/// The next event of any kind but a message's record: what `conn` is sent
/// before `barrier` (a text) arrives.
async fn events_before_text(conn: &Connection, barrier: &str) -> Vec<event::Kind> {
    let mut seen = Vec::new();
    loop {
        let kind = conn
            .next_event(WAIT)
            .await
            .expect("the barrier in time")
            .kind;
        match kind {
            Some(event::Kind::Message(m)) if crate::helpers::text_of(&m) == barrier => return seen,
            Some(kind) => seen.push(kind),
            None => {}
        }
    }
}

/// The call record a message holds, with its fallback.
pub fn record_of(m: &Message) -> Option<(CallRecord, String)> {
    let body = m.body.as_ref()?;
    match &body.content {
        Some(Content::Special(s)) if s.r#type == "call" => Some((
            CallRecord::decode(s.value.as_slice()).ok()?,
            body.fallback.clone(),
        )),
        _ => None,
    }
}

/// The call records `user` pulls from the conversation with `peer`.
async fn records(conn: &Connection, me: &User, peer: &User) -> Vec<(CallRecord, String)> {
    let (low, high) = (me.id.min(peer.id), me.id.max(peer.id));
    let page = conn.pull(&format!("d.{low}.{high}"), 0, 0).await.unwrap();
    page.messages.iter().filter_map(record_of).collect()
}

fn offer() -> (String, String) {
    (
        "offer".into(),
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n".into(),
    )
}

async fn people(app: &TestApp) -> (User, User, User) {
    (
        app.user("Alice").await,
        app.user("Bob").await,
        app.user("Carol").await,
    )
}

#[tokio::test]
async fn a_call_rings_is_answered_on_one_device_relays_to_it_alone_and_leaves_its_record() {
    let app = spawn_app().await;
    let (alice, bob, _) = people(&app).await;
    let caller = app.connect(&alice).await;
    let phone = app.connect(&bob).await;
    let laptop = app.connect(&bob).await;

    let placed = caller.call_user(bob.id, true).await.unwrap();
    assert_eq!(placed.state(), State::Invited);
    let call = placed.call_id;
    for device in [&phone, &laptop] {
        let invited = next_call(device).await;
        assert_eq!(
            (
                invited.call_id,
                invited.state(),
                invited.caller,
                invited.video
            ),
            (call, State::Invited, alice.id, true)
        );
        assert_eq!(invited.invited, [alice.id, bob.id]);
    }
    phone.call_action(call, Kind::Ringing).await.unwrap();
    laptop.call_action(call, Kind::Ringing).await.unwrap();
    assert_eq!(next_state(&caller).await, (State::Ringing, bob.id));

    let accepted = laptop.call_action(call, Kind::Accept).await.unwrap();
    assert_eq!(accepted.state(), State::Accepted);
    assert_eq!(next_state(&caller).await, (State::Accepted, bob.id));
    // The phone stopped ringing; it saw the laptop's RINGING first.
    let mut heard = next_state(&phone).await;
    if heard.0 == State::Ringing {
        heard = next_state(&phone).await;
    }
    assert_eq!(heard, (State::AnsweredElsewhere, bob.id));
    let late = phone.call_action(call, Kind::Accept).await;
    assert_eq!(code(late), "answered_elsewhere");

    // Signals reach the device that answered, and only it.
    let (kind, sdp) = offer();
    caller.call_sdp(call, bob.id, &kind, &sdp).await.unwrap();
    let relayed = next_signal(&laptop).await;
    assert_eq!(
        (relayed.call_id, relayed.from_user, relayed.to_user),
        (call, alice.id, bob.id)
    );
    let Some(call_signal::Payload::Sdp(got)) = relayed.payload else {
        panic!("an sdp")
    };
    assert_eq!(
        (got.r#type.as_str(), got.sdp.as_str()),
        (kind.as_str(), sdp.as_str())
    );
    let candidate = IceCandidate {
        candidate: "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host".into(),
        sdp_mid: "0".into(),
        sdp_m_line_index: 0,
    };
    laptop
        .call_sdp(call, alice.id, "answer", &sdp)
        .await
        .unwrap();
    laptop.call_ice(call, alice.id, candidate).await.unwrap();
    assert!(matches!(
        next_signal(&caller).await.payload,
        Some(call_signal::Payload::Sdp(_))
    ));
    assert!(matches!(
        next_signal(&caller).await.payload,
        Some(call_signal::Payload::Ice(_))
    ));
    let from_phone = phone.call_sdp(call, alice.id, "answer", &sdp).await;
    assert_eq!(code(from_phone), "answered_elsewhere");
    caller
        .send_text(bob.id, "barrier-1", "barrier")
        .await
        .unwrap();
    let before = events_before_text(&phone, "barrier").await;
    assert!(
        before
            .iter()
            .all(|k| !matches!(k, event::Kind::CallSignal(_))),
        "the phone was sent a signal: {before:?}"
    );

    let ended = caller.call_action(call, Kind::Hangup).await.unwrap();
    assert_eq!(ended.state(), State::Ended);
    assert_eq!(next_state(&laptop).await, (State::Ended, alice.id));
    assert_eq!(
        code(laptop.call_action(call, Kind::Hangup).await),
        "call_ended"
    );

    // The record: one message in the conversation, sender the caller.
    let live = next_message(&laptop).await;
    let (record, fallback) = record_of(&live).expect("a call record");
    assert_eq!(live.sender, alice.id);
    assert_eq!(
        (record.call_id, record.caller, record.video),
        (call, alice.id, true)
    );
    assert_eq!(record.outcome(), Outcome::Completed);
    assert!(fallback.starts_with("[Video call] 0:"), "{fallback}");
    assert_eq!(records(&laptop, &bob, &alice).await.len(), 1);
    assert_eq!(records(&caller, &alice, &bob).await.len(), 1);
}

#[tokio::test]
async fn declined_cancelled_busy_and_unanswered_calls_each_end_with_their_record() {
    let app = spawn_app_with(|c| c.calls.ring_timeout_secs = 5).await;
    let (alice, bob, carol) = people(&app).await;
    let a = app.connect(&alice).await;
    let b = app.connect(&bob).await;
    let c = app.connect(&carol).await;

    // Declined.
    let call = a.call_user(bob.id, false).await.unwrap().call_id;
    assert_eq!(next_state(&b).await, (State::Invited, alice.id));
    let declined = b.call_action(call, Kind::Decline).await.unwrap();
    assert_eq!(declined.state(), State::Declined);
    assert_eq!(next_state(&a).await, (State::Declined, bob.id));

    // Cancelled: the caller hangs up before an answer; accepting after it
    // finds the call over.
    let call = a.call_user(bob.id, false).await.unwrap().call_id;
    assert_eq!(next_state(&b).await, (State::Invited, alice.id));
    let cancelled = a.call_action(call, Kind::Hangup).await.unwrap();
    assert_eq!(cancelled.state(), State::Cancelled);
    assert_eq!(next_state(&b).await, (State::Cancelled, alice.id));
    assert_eq!(code(b.call_action(call, Kind::Accept).await), "call_ended");

    // Busy: Bob is in a call with Carol; Alice's call to him ends at once,
    // and leaves Alice free to call again.
    let with_carol = c.call_user(bob.id, false).await.unwrap().call_id;
    assert_eq!(next_state(&b).await, (State::Invited, carol.id));
    let busy = a.call_user(bob.id, false).await.unwrap();
    assert_eq!(busy.state(), State::Busy);
    // The caller of a ringing call is busy too: Carol may not call Alice.
    assert_eq!(code(c.call_user(alice.id, false).await), "already_in_call");
    c.call_action(with_carol, Kind::Hangup).await.unwrap();

    // Nobody answers: missed at the ring timeout.
    let call = a.call_user(bob.id, false).await.unwrap().call_id;
    assert_eq!(next_state(&b).await, (State::Cancelled, carol.id));
    assert_eq!(next_state(&b).await, (State::Invited, alice.id));
    assert_eq!(next_state(&a).await, (State::Missed, bob.id));
    assert_eq!(next_state(&b).await, (State::Missed, bob.id));
    assert_eq!(code(b.call_action(call, Kind::Accept).await), "call_ended");

    // One record per call, in order.
    let mut outcomes = Vec::new();
    for _ in 0..50 {
        outcomes = records(&b, &bob, &alice).await;
        if outcomes.len() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got: Vec<(Outcome, &str)> = outcomes
        .iter()
        .map(|(r, f)| (r.outcome(), f.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (Outcome::Declined, "[Voice call] Declined"),
            (Outcome::Cancelled, "[Voice call] Cancelled"),
            (Outcome::Busy, "[Voice call] Busy"),
            (Outcome::Missed, "[Missed voice call]"),
        ]
    );
}

#[tokio::test]
async fn races_end_a_call_once_and_let_one_device_win() {
    let app = spawn_app().await;
    let (alice, bob, carol) = people(&app).await;
    let a = app.connect(&alice).await;
    let phone = app.connect(&bob).await;
    let laptop = app.connect(&bob).await;
    let c = app.connect(&carol).await;

    // Accept on two devices at once: one wins.
    let call = a.call_user(bob.id, false).await.unwrap().call_id;
    let (one, two) = tokio::join!(
        phone.call_action(call, Kind::Accept),
        laptop.call_action(call, Kind::Accept)
    );
    let wins = [&one, &two].iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{one:?} {two:?}");
    let lost = if one.is_ok() { two } else { one };
    assert_eq!(code(lost), "answered_elsewhere");

    // Someone not in the call reaches nothing of it.
    assert_eq!(
        code(c.call_action(call, Kind::Hangup).await),
        "unknown_call"
    );
    assert_eq!(
        code(c.call_sdp(call, bob.id, "offer", "v=0").await),
        "unknown_call"
    );
    assert_eq!(code(c.call_action(123, Kind::Accept).await), "unknown_call");
    // Inviting while in a call.
    assert_eq!(code(a.call_user(carol.id, false).await), "already_in_call");
    // Calling someone in a call.
    assert_eq!(
        c.call_user(alice.id, false).await.unwrap().state(),
        State::Busy
    );

    // Both hang up at once: one ends the call, the other finds it over.
    let winner = if one_won(&phone, call).await {
        &phone
    } else {
        &laptop
    };
    let (x, y) = tokio::join!(
        a.call_action(call, Kind::Hangup),
        winner.call_action(call, Kind::Hangup)
    );
    let ended = [&x, &y].iter().filter(|r| r.is_ok()).count();
    assert_eq!(ended, 1, "{x:?} {y:?}");
    let other = if x.is_ok() { y } else { x };
    assert_eq!(code(other), "call_ended");
    let mut found = Vec::new();
    for _ in 0..50 {
        found = records(&a, &alice, &bob).await;
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(found.len(), 1, "one record");
    assert_eq!(found[0].0.outcome(), Outcome::Completed);
}

/// Whether the phone is the device in the call (a ringing retry on the
/// winner answers ACCEPTED; on the other, answered_elsewhere).
async fn one_won(phone: &Connection, call: u64) -> bool {
    phone.call_action(call, Kind::Ringing).await.is_ok()
}

#[tokio::test]
async fn a_caller_the_callee_blocks_hears_no_answer_and_a_stranger_is_refused() {
    let app = spawn_app_with(|c| {
        c.calls.ring_timeout_secs = 5;
        c.social.who_may_message = WhoMayMessage::Friends;
    })
    .await;
    let (alice, bob, carol) = people(&app).await;
    app.befriend(&alice, &bob).await;
    app.befriend(&carol, &bob).await;
    let stranger = app.user("Dave").await;
    let a = app.connect(&alice).await;
    let b = app.connect(&bob).await;
    let c = app.connect(&carol).await;
    let d = app.connect(&stranger).await;

    // Bob takes messages from friends only: a stranger's call is refused.
    assert_eq!(code(d.call_user(bob.id, false).await), "call_refused");

    app.http
        .block(&bob.tokens.access_token, alice.id)
        .await
        .unwrap();
    let placed = a.call_user(bob.id, false).await.unwrap();
    assert_eq!(placed.state(), State::Invited, "as any call");
    // Bob hears nothing of it, and may take another call meanwhile.
    c.send_text(bob.id, "barrier-2", "barrier").await.unwrap();
    let before = events_before_text(&b, "barrier").await;
    assert!(
        before.iter().all(|k| !matches!(k, event::Kind::Call(_))),
        "{before:?}"
    );
    assert_eq!(
        code(b.call_action(placed.call_id, Kind::Accept).await),
        "unknown_call"
    );
    // Alice hears it ring out.
    assert_eq!(next_state(&a).await, (State::Missed, bob.id));
    let mut mine = Vec::new();
    for _ in 0..50 {
        mine = records(&a, &alice, &bob).await;
        if !mine.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].0.outcome(), Outcome::Missed);
    assert!(
        records(&b, &bob, &alice).await.is_empty(),
        "withheld from Bob"
    );
}

#[tokio::test]
async fn a_group_call_is_a_mesh_of_three_that_ends_when_fewer_than_two_remain() {
    let app = spawn_app().await;
    let (alice, bob, carol) = people(&app).await;
    let group = app
        .http
        .create_group(&alice.tokens.access_token, "Climbers", &[bob.id, carol.id])
        .await
        .unwrap();
    let stranger = app.user("Dave").await;
    let a = app.connect(&alice).await;
    let b = app.connect(&bob).await;
    let c = app.connect(&carol).await;

    let outsider = a
        .call_group(group.group_id, &[bob.id, stranger.id], false)
        .await;
    assert_eq!(code(outsider), "unknown_member");
    let placed = a
        .call_group(group.group_id, &[bob.id, carol.id], false)
        .await
        .unwrap();
    let call = placed.call_id;
    for device in [&b, &c] {
        let invited = next_call(device).await;
        assert_eq!(
            (invited.state(), invited.group_id),
            (State::Invited, group.group_id)
        );
        assert_eq!(invited.invited, [alice.id, bob.id, carol.id]);
    }
    b.call_action(call, Kind::Accept).await.unwrap();
    assert_eq!(next_state(&a).await, (State::Accepted, bob.id));
    assert_eq!(next_state(&c).await, (State::Accepted, bob.id));
    let joined = c.call_action(call, Kind::Accept).await.unwrap();
    assert_eq!(joined.state(), State::Accepted);
    let event = next_call(&a).await;
    assert_eq!((event.state(), event.user), (State::Accepted, carol.id));
    assert_eq!(event.joined, [alice.id, bob.id, carol.id]);
    assert_eq!(next_state(&b).await, (State::Accepted, carol.id));

    // The newcomer offers to each one already in; each answers.
    for (to, conn) in [(alice.id, &a), (bob.id, &b)] {
        c.call_sdp(call, to, "offer", "v=0").await.unwrap();
        let got = next_signal(conn).await;
        assert_eq!((got.from_user, got.to_user), (carol.id, to));
        conn.call_sdp(call, carol.id, "answer", "v=0")
            .await
            .unwrap();
        assert_eq!(next_signal(&c).await.from_user, to);
    }
    b.call_sdp(call, alice.id, "offer", "v=0").await.unwrap();
    assert_eq!(next_signal(&a).await.from_user, bob.id);

    // The caller leaves; the two others go on.
    assert_eq!(
        a.call_action(call, Kind::Hangup).await.unwrap().state(),
        State::Left
    );
    assert_eq!(next_state(&b).await, (State::Left, alice.id));
    assert_eq!(next_state(&c).await, (State::Left, alice.id));
    b.call_sdp(call, carol.id, "offer", "v=0").await.unwrap();
    assert_eq!(next_signal(&c).await.from_user, bob.id);
    assert_eq!(
        code(a.call_sdp(call, bob.id, "offer", "v=0").await),
        "call_ended"
    );
    // Bob leaves: fewer than two remain.
    b.call_action(call, Kind::Hangup).await.unwrap();
    assert_eq!(next_state(&c).await, (State::Left, bob.id));
    assert_eq!(next_state(&c).await, (State::Ended, bob.id));
    // A group call leaves no message in the group.
    let page = c.pull(&group.conversation_id, 0, 0).await.unwrap();
    assert!(page.messages.iter().all(|m| record_of(m).is_none()));
}

#[tokio::test]
async fn turn_credentials_are_an_hmac_of_their_expiry_and_user_or_unavailable() {
    let app = spawn_app().await;
    let alice = app.user("Alice").await;
    let refused = app.http.turn_credentials(&alice.tokens.access_token).await;
    assert_eq!(code(refused), "turn_unavailable");

    let secret = "a long shared turn secret";
    let app = spawn_app_with(|c| {
        c.calls.turn_secret = Some(superapp_kit::secret::Secret::new(secret.into()));
        c.calls.turn_uris = vec!["turn:127.0.0.1:3478?transport=udp".into()];
    })
    .await;
    let alice = app.user("Alice").await;
    let got = app
        .http
        .turn_credentials(&alice.tokens.access_token)
        .await
        .unwrap();
    let (expiry, user) = got.username.split_once(':').unwrap();
    assert_eq!(user, alice.id.to_string());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let expiry: i64 = expiry.parse().unwrap();
    assert!(
        (now + 3590..=now + 3610).contains(&expiry),
        "{expiry} vs {now}"
    );
    assert_eq!(got.ttl_secs, 3600);
    assert_eq!(got.uris, ["turn:127.0.0.1:3478?transport=udp"]);
    assert_eq!(
        got.credential,
        superapp_chat::calls::turn::password(secret.as_bytes(), &got.username)
    );
    let anonymous = app.http.turn_credentials("not a token").await;
    assert_eq!(code(anonymous), "invalid_token");
}
