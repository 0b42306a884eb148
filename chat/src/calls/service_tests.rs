//! The service on a real SQLite store and an in-process bus, with paused
//! tokio time for the timers and a manual clock for the times recorded.

use superapp_kit::bus::{Bus as _, BusMessage, InProcessBus};
use superapp_kit::clock::ManualClock;
use superapp_kit::metrics::Registry as Metrics;
use superapp_proto::v1::call_record::Outcome;
use superapp_proto::v1::{IceCandidate, Message, call_action::Kind, message_body::Content};
use tokio::sync::mpsc;

use super::*;
use crate::SqliteChatStore;
use crate::model::SendVerdict;
use crate::test_graph::Graph;

const ALICE: UserId = UserId(1);
const BOB: UserId = UserId(2);
const CAROL: UserId = UserId(3);

struct Setup {
    calls: Calls,
    chat: Arc<Chat>,
    graph: Arc<Graph>,
    bus: Arc<InProcessBus>,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteChatStore::open(&dir.path().join("chat.db"), None).unwrap());
    let graph = Arc::new(Graph::default());
    let bus = Arc::new(InProcessBus::new());
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let ids = Arc::new(IdGen::new(0, clock.clone()));
    let chat = Arc::new(Chat::new(
        store,
        graph.clone(),
        bus.clone(),
        clock.clone(),
        ids.clone(),
        500,
        &Metrics::new(),
    ));
    let calls = Calls::new(
        chat.clone(),
        graph.clone(),
        bus.clone(),
        clock.clone(),
        ids,
        CallsConfig::default(),
    );
    Setup {
        calls,
        chat,
        graph,
        bus,
        clock,
        _dir: dir,
    }
}

/// Everything published on a user's topic, as (envelope target, event).
struct Topic {
    events: mpsc::Receiver<BusMessage>,
    _subscriber: Arc<dyn superapp_kit::bus::Subscriber>,
}

impl Setup {
    fn listen(&self, user: UserId) -> Topic {
        let (subscriber, events) = self.bus.subscriber(64);
        subscriber.subscribe(&format!("u.{}", user.0));
        Topic {
            events,
            _subscriber: subscriber,
        }
    }

    fn action(&self, call: u64, kind: Kind) -> CallAction {
        let mut action = CallAction {
            call_id: call,
            ..CallAction::default()
        };
        action.set_kind(kind);
        action
    }

    async fn call(&self, from: UserId, device: Device, to: UserId) -> CallAck {
        let invite = CallInvite {
            to_user: to.0,
            ..CallInvite::default()
        };
        self.calls.invite(from, device, invite).await.unwrap()
    }

    /// The call records in the one-to-one conversation, as `user` sees it.
    async fn records(&self, user: UserId, peer: UserId) -> Vec<(CallRecord, String)> {
        let conversation = ConversationId::direct(user, peer).unwrap().to_string();
        let page = self.chat.pull(user, &conversation, 0, 0).await.unwrap();
        page.messages.iter().filter_map(record_of).collect()
    }
}

fn record_of(m: &Message) -> Option<(CallRecord, String)> {
    let body = m.body.as_ref()?;
    match &body.content {
        Some(Content::Special(s)) if s.r#type == "call" => Some((
            CallRecord::decode(s.value.as_slice()).ok()?,
            body.fallback.clone(),
        )),
        _ => None,
    }
}

impl Topic {
    fn heard(&mut self) -> Vec<(u64, event::Kind)> {
        let mut out = Vec::new();
        while let Ok(BusMessage::Message { payload, .. }) = self.events.try_recv() {
            let envelope = BusEnvelope::decode(payload).unwrap();
            if let Some(bus_envelope::Kind::Event(Event { kind: Some(kind) })) = envelope.kind {
                out.push((envelope.target, kind));
            }
        }
        out
    }

    /// The call states heard, as (state, about whom).
    fn states(&mut self) -> Vec<(State, u64)> {
        self.heard()
            .into_iter()
            .filter_map(|(_, kind)| match kind {
                event::Kind::Call(e) => Some((e.state(), e.user)),
                _ => None,
            })
            .collect()
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_nobody_answers_is_missed_at_the_timeout_and_recorded_once() {
    let s = setup();
    let mut alice = s.listen(ALICE);
    let mut bob = s.listen(BOB);
    let ack = s.call(ALICE, 10, BOB).await;
    assert_eq!(ack.state(), State::Invited);
    assert_eq!(bob.states(), [(State::Invited, ALICE.0)]);
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert!(bob.states().is_empty(), "still ringing");
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The timer's write is on the store's thread: wait for its record.
    let mut records = Vec::new();
    for _ in 0..200 {
        records = s.records(BOB, ALICE).await;
        if !records.is_empty() {
            break;
        }
        tokio::task::yield_now().await;
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].0.outcome(), Outcome::Missed);
    assert_eq!(records[0].1, "[Missed voice call]");
    // The caller's other devices hear of the call too.
    let missed = [(State::Invited, ALICE.0), (State::Missed, BOB.0)];
    assert_eq!(alice.states(), missed);
    assert_eq!(bob.states(), [(State::Missed, BOB.0)]);
    assert_eq!(s.calls.in_flight(), 0);
    let late = s
        .calls
        .act(BOB, 20, s.action(ack.call_id, Kind::Accept))
        .await;
    assert!(matches!(late.unwrap_err(), CallError::CallEnded));
}

#[tokio::test(start_paused = true)]
async fn an_answered_call_relays_to_the_answering_device_and_records_its_length() {
    let s = setup();
    let mut alice = s.listen(ALICE);
    let mut bob = s.listen(BOB);
    let call = s.call(ALICE, 10, BOB).await.call_id;
    s.calls
        .act(BOB, 21, s.action(call, Kind::Ringing))
        .await
        .unwrap();
    let accepted = s
        .calls
        .act(BOB, 20, s.action(call, Kind::Accept))
        .await
        .unwrap();
    assert_eq!(accepted.state(), State::Accepted);
    assert_eq!(
        alice.states(),
        [
            (State::Invited, ALICE.0),
            (State::Ringing, BOB.0),
            (State::Accepted, BOB.0)
        ]
    );
    assert_eq!(
        bob.states(),
        [(State::Invited, ALICE.0), (State::AnsweredElsewhere, BOB.0)]
    );
    let ice = CallSignal {
        call_id: call,
        to_user: BOB.0,
        payload: Some(call_signal::Payload::Ice(IceCandidate {
            candidate: "candidate:1 1 udp 2122260223 192.0.2.1 54400 typ host".into(),
            sdp_mid: "0".into(),
            sdp_m_line_index: 0,
        })),
        ..CallSignal::default()
    };
    s.calls.signal(ALICE, 10, ice.clone()).unwrap();
    let heard = bob.heard();
    assert_eq!(heard.len(), 1);
    let (target, kind) = &heard[0];
    assert_eq!(*target, 20, "only the device that answered");
    let event::Kind::CallSignal(relayed) = kind else {
        panic!("{kind:?}")
    };
    assert_eq!((relayed.from_user, relayed.to_user), (ALICE.0, BOB.0));
    // The device that placed it alone may signal for the caller.
    let other = s.calls.signal(ALICE, 11, ice).unwrap_err();
    assert!(matches!(other, CallError::AnsweredElsewhere));

    // Past the ring timeout nothing changes for a call in progress.
    tokio::time::sleep(Duration::from_secs(61)).await;
    s.clock.advance_ms(201_000);
    assert!(alice.states().is_empty());
    let ended = s
        .calls
        .act(BOB, 20, s.action(call, Kind::Hangup))
        .await
        .unwrap();
    assert_eq!(ended.state(), State::Ended);
    let again = s.calls.act(ALICE, 10, s.action(call, Kind::Hangup)).await;
    assert!(matches!(again.unwrap_err(), CallError::CallEnded));
    let records = s.records(ALICE, BOB).await;
    assert_eq!(records.len(), 1, "one record for one call");
    assert_eq!(records[0].0.outcome(), Outcome::Completed);
    assert_eq!(records[0].0.duration_ms, 201_000);
    assert_eq!(records[0].1, "[Voice call] 3:21");
}

#[tokio::test(start_paused = true)]
async fn a_callee_who_blocks_the_caller_is_never_rung_and_the_caller_hears_no_answer() {
    let s = setup();
    let mut alice = s.listen(ALICE);
    let mut bob = s.listen(BOB);
    *s.graph.verdict.lock().unwrap() = Some(SendVerdict {
        reach: crate::model::Reach::Withheld,
        ..SendVerdict::DELIVERED
    });
    let call = s.call(ALICE, 10, BOB).await;
    assert_eq!(call.state(), State::Invited);
    // Bob may call someone else meanwhile: he is not engaged.
    assert_eq!(s.call(BOB, 20, CAROL).await.state(), State::Invited);
    tokio::time::sleep(Duration::from_secs(61)).await;
    for _ in 0..200 {
        if !s.records(ALICE, BOB).await.is_empty() {
            break;
        }
        tokio::task::yield_now().await;
        std::thread::sleep(Duration::from_millis(5));
    }
    let missed = [(State::Invited, ALICE.0), (State::Missed, BOB.0)];
    assert_eq!(alice.states(), missed);
    let bob_heard: Vec<_> = bob
        .states()
        .into_iter()
        .filter(|(_, u)| *u != CAROL.0)
        .collect();
    assert_eq!(
        bob_heard,
        [(State::Invited, BOB.0)],
        "only his own call to Carol"
    );
    assert_eq!(s.records(ALICE, BOB).await.len(), 1, "the caller's record");
    assert!(
        s.records(BOB, ALICE).await.is_empty(),
        "withheld from the callee"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_call_places_nothing() {
    let s = setup();
    *s.graph.verdict.lock().unwrap() = Some(SendVerdict {
        reach: crate::model::Reach::Refused,
        ..SendVerdict::DELIVERED
    });
    let invite = CallInvite {
        to_user: BOB.0,
        ..CallInvite::default()
    };
    let refused = s.calls.invite(ALICE, 10, invite).await.unwrap_err();
    assert!(matches!(refused, CallError::CallRefused));
    assert_eq!(s.calls.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_call_whose_devices_vanished_ends_at_the_length_bound() {
    let s = setup();
    let call = s.call(ALICE, 10, BOB).await.call_id;
    s.calls
        .act(BOB, 20, s.action(call, Kind::Accept))
        .await
        .unwrap();
    let mut alice = s.listen(ALICE);
    tokio::time::sleep(Duration::from_secs(4 * 3600 - 1)).await;
    assert_eq!(s.calls.in_flight(), 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(s.calls.in_flight(), 0);
    assert_eq!(alice.states(), [(State::Ended, ALICE.0)]);
}

#[test]
fn turn_credentials_come_only_with_a_secret() {
    let s = setup();
    assert!(s.calls.turn(ALICE).is_none());
}
