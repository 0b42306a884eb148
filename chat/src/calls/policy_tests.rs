use proptest::prelude::*;

use super::*;
use crate::calls::model::{CallView, GroupId};
use crate::calls::reference::{Answer, Model, Reply};

const MAX: usize = 9;

fn code(e: &CallError) -> &'static str {
    match e {
        CallError::UnknownCall => "unknown_call",
        CallError::CallEnded => "call_ended",
        CallError::AnsweredElsewhere => "answered_elsewhere",
        CallError::AlreadyInCall => "already_in_call",
        CallError::CallRefused => "call_refused",
        CallError::PeerNotJoined => "peer_not_joined",
        CallError::TooManyParticipants { .. } => "too_many_participants",
        CallError::Invalid { code, .. } => code,
        CallError::Chat(_) => "chat",
    }
}

fn one_to_one(id: u64, caller: u64, callee: u64, device: u64, reach: Reach) -> Placement {
    Placement {
        id: CallId(id),
        caller: UserId(caller),
        device,
        invitees: vec![(UserId(callee), reach)],
        group: None,
        video: false,
    }
}

fn group_call(id: u64, caller: u64, device: u64, invitees: &[u64]) -> Placement {
    Placement {
        id: CallId(id),
        caller: UserId(caller),
        device,
        invitees: invitees.iter().map(|&u| (UserId(u), Reach::Ring)).collect(),
        group: Some(GroupId(7)),
        video: true,
    }
}

/// The states told about, in order, as (state, user).
fn told(effects: &Effects) -> Vec<(State, u64)> {
    effects
        .notices
        .iter()
        .map(|n| (n.state, n.user.0))
        .collect()
}

#[derive(Debug, Clone)]
enum Op {
    Place {
        caller: u64,
        callee: u64,
        device: u64,
        withheld: bool,
    },
    Ringing {
        call: usize,
        user: u64,
        device: u64,
    },
    Accept {
        call: usize,
        user: u64,
        device: u64,
    },
    Decline {
        call: usize,
        user: u64,
        device: u64,
    },
    Hangup {
        call: usize,
        user: u64,
    },
    Timeout {
        call: usize,
    },
    Signal {
        call: usize,
        from: u64,
        device: u64,
        to: u64,
    },
    Wait {
        ms: i64,
    },
}

/// Three users with two devices each (device = user * 10 + 0 or 1), and
/// calls picked among those placed so far (or one never placed).
fn op() -> impl Strategy<Value = Op> {
    let user = 1..=3u64;
    let device = 0..2u64;
    let call = 0..6usize;
    prop_oneof![
        (
            user.clone(),
            user.clone(),
            device.clone(),
            proptest::bool::weighted(0.2)
        )
            .prop_filter("another user", |(a, b, _, _)| a != b)
            .prop_map(|(caller, callee, d, withheld)| Op::Place {
                caller,
                callee,
                device: caller * 10 + d,
                withheld
            }),
        (call.clone(), user.clone(), device.clone()).prop_map(|(call, user, d)| Op::Ringing {
            call,
            user,
            device: user * 10 + d
        }),
        (call.clone(), user.clone(), device.clone()).prop_map(|(call, user, d)| Op::Accept {
            call,
            user,
            device: user * 10 + d
        }),
        (call.clone(), user.clone(), device.clone()).prop_map(|(call, user, d)| Op::Decline {
            call,
            user,
            device: user * 10 + d
        }),
        (call.clone(), user.clone()).prop_map(|(call, user)| Op::Hangup { call, user }),
        call.clone().prop_map(|call| Op::Timeout { call }),
        (call, user.clone(), device, user).prop_map(|(call, from, d, to)| Op::Signal {
            call,
            from,
            device: from * 10 + d,
            to
        }),
        (1..120_000i64).prop_map(|ms| Op::Wait { ms }),
    ]
}

fn answer(r: Result<Effects, CallError>) -> Answer {
    r.map(|e| Reply::State(e.state)).map_err(|e| code(&e))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn one_to_one_calls_follow_the_reference_model(ops in proptest::collection::vec(op(), 1..60)) {
        let mut registry = Registry::default();
        let mut model = Model::default();
        let mut placed: Vec<u64> = Vec::new();
        let mut records = Vec::new();
        let mut now = 1_000i64;
        // Ids 100, 101, ...; a pick past those placed names a call never placed.
        let pick = |placed: &Vec<u64>, i: usize| placed.get(i).copied().unwrap_or(999);
        for op in ops {
            let (got, want) = match op.clone() {
                Op::Place { caller, callee, device, withheld } => {
                    let id = 100 + placed.len() as u64;
                    placed.push(id);
                    let reach = if withheld { Reach::Withheld } else { Reach::Ring };
                    let got = registry.place(one_to_one(id, caller, callee, device, reach), now, MAX);
                    if let Ok(Effects { ended: Some(e), .. }) = &got {
                        records.push((id, e.outcome, e.duration_ms));
                    }
                    (answer(got), model.place(id, caller, callee, device, withheld))
                }
                Op::Ringing { call, user, device } => {
                    let id = pick(&placed, call);
                    (answer(registry.ringing(CallId(id), UserId(user), device)), model.ringing(id, user, device))
                }
                Op::Accept { call, user, device } => {
                    let id = pick(&placed, call);
                    (answer(registry.accept(CallId(id), UserId(user), device, now)), model.accept(id, user, device, now))
                }
                Op::Decline { call, user, device } => {
                    let id = pick(&placed, call);
                    let got = registry.decline(CallId(id), UserId(user), device, now);
                    if let Ok(Effects { ended: Some(e), .. }) = &got {
                        records.push((id, e.outcome, e.duration_ms));
                    }
                    (answer(got), model.decline(id, user, device, now))
                }
                Op::Hangup { call, user } => {
                    let id = pick(&placed, call);
                    let got = registry.hangup(CallId(id), UserId(user), now);
                    if let Ok(Effects { ended: Some(e), .. }) = &got {
                        records.push((id, e.outcome, e.duration_ms));
                    }
                    (answer(got), model.hangup(id, user, now))
                }
                Op::Timeout { call } => {
                    let id = pick(&placed, call);
                    let got = registry.timeout(CallId(id), now);
                    if let Some(Effects { ended: Some(e), .. }) = &got {
                        records.push((id, e.outcome, e.duration_ms));
                    }
                    let got = Ok(got.map_or(Reply::Nothing, |e| Reply::State(e.state)));
                    (got, model.timeout(id, now))
                }
                Op::Signal { call, from, device, to } => {
                    let id = pick(&placed, call);
                    let got = registry.signal(CallId(id), UserId(from), device, UserId(to));
                    (got.map(Reply::Device).map_err(|e| code(&e)), model.signal(id, from, device, to))
                }
                Op::Wait { ms } => {
                    now += ms;
                    continue;
                }
            };
            prop_assert_eq!(got, want, "after {:?}", op);
            for user in 1..=3 {
                prop_assert_eq!(registry.engaged(UserId(user)).is_some(), model.busy(user), "user {} after {:?}", user, op);
            }
            prop_assert_eq!(&records, &model.records);
        }
    }
}

#[test]
fn the_first_device_to_accept_wins_and_the_other_is_told() {
    let mut r = Registry::default();
    r.place(one_to_one(1, 1, 2, 10, Reach::Ring), 0, MAX)
        .unwrap();
    let won = r.accept(CallId(1), UserId(2), 20, 5).unwrap();
    assert_eq!(
        told(&won),
        [(State::Accepted, 2), (State::AnsweredElsewhere, 2)]
    );
    assert_eq!(won.notices[0].to, [UserId(1)]);
    assert_eq!(won.notices[1].to, [UserId(2)]);
    let lost = r.accept(CallId(1), UserId(2), 21, 6).unwrap_err();
    assert!(matches!(lost, CallError::AnsweredElsewhere));
    assert_eq!(r.signal(CallId(1), UserId(1), 10, UserId(2)).unwrap(), 20);
    assert_eq!(r.signal(CallId(1), UserId(2), 20, UserId(1)).unwrap(), 10);
}

#[test]
fn both_sides_hanging_up_at_once_end_the_call_once() {
    let mut r = Registry::default();
    r.place(one_to_one(1, 1, 2, 10, Reach::Ring), 0, MAX)
        .unwrap();
    r.accept(CallId(1), UserId(2), 20, 1_000).unwrap();
    let first = r.hangup(CallId(1), UserId(2), 201_000).unwrap();
    let ended = first.ended.unwrap();
    assert_eq!(
        (ended.outcome, ended.duration_ms),
        (Outcome::Completed, 200_000)
    );
    let second = r.hangup(CallId(1), UserId(1), 201_001).unwrap_err();
    assert!(matches!(second, CallError::CallEnded));
    assert!(r.is_empty());
    // Someone who was never in it learns nothing of it.
    assert!(matches!(
        r.hangup(CallId(1), UserId(3), 0).unwrap_err(),
        CallError::UnknownCall
    ));
}

#[test]
fn a_second_invite_while_ringing_finds_the_callee_busy() {
    let mut r = Registry::default();
    r.place(one_to_one(1, 1, 2, 10, Reach::Ring), 0, MAX)
        .unwrap();
    let busy = r
        .place(one_to_one(2, 3, 2, 30, Reach::Ring), 1, MAX)
        .unwrap();
    assert_eq!(busy.state, State::Busy);
    assert_eq!(busy.ended.as_ref().unwrap().outcome, Outcome::Busy);
    assert_eq!(told(&busy), [(State::Busy, 2)]);
    assert_eq!(
        busy.notices[0].to,
        [UserId(3)],
        "the busy callee is not told"
    );
    // The caller of the first call may not place another meanwhile.
    let again = r.place(one_to_one(3, 1, 3, 10, Reach::Ring), 2, MAX);
    assert!(matches!(again.unwrap_err(), CallError::AlreadyInCall));
}

#[test]
fn a_withheld_call_rings_out_for_the_caller_and_never_reaches_the_callee() {
    let mut r = Registry::default();
    let placed = r
        .place(one_to_one(1, 1, 2, 10, Reach::Withheld), 0, MAX)
        .unwrap();
    assert_eq!(placed.state, State::Invited);
    assert_eq!(placed.notices[0].to, [UserId(1)]);
    assert_eq!(placed.view.invited, [UserId(1), UserId(2)]);
    assert_eq!(r.engaged(UserId(2)), None, "the callee is free");
    assert!(matches!(
        r.accept(CallId(1), UserId(2), 20, 1).unwrap_err(),
        CallError::UnknownCall
    ));
    let missed = r.timeout(CallId(1), 60_000).unwrap();
    assert_eq!(told(&missed), [(State::Missed, 2)]);
    assert_eq!(missed.notices[0].to, [UserId(1)]);
    assert_eq!(missed.ended.as_ref().unwrap().outcome, Outcome::Missed);
}

#[test]
fn a_group_call_is_a_mesh_of_those_who_joined_and_ends_below_two() {
    let mut r = Registry::default();
    let placed = r.place(group_call(1, 1, 10, &[2, 3, 4]), 0, MAX).unwrap();
    assert_eq!(placed.notices[0].to.len(), 4);
    r.accept(CallId(1), UserId(2), 20, 10).unwrap();
    let joined = r.accept(CallId(1), UserId(3), 30, 20).unwrap();
    assert_eq!(joined.view.joined, [UserId(1), UserId(2), UserId(3)]);
    // Each joined participant reaches each other one.
    for (from, device) in [(1, 10), (2, 20), (3, 30)] {
        for (to, target) in [(1, 10), (2, 20), (3, 30)] {
            if from != to {
                let got = r.signal(CallId(1), UserId(from), device, UserId(to));
                assert_eq!(got.unwrap(), target);
            }
        }
    }
    // One still ringing is not reachable yet.
    assert!(matches!(
        r.signal(CallId(1), UserId(1), 10, UserId(4)).unwrap_err(),
        CallError::PeerNotJoined
    ));
    // The timeout ends the ringing of 4; the three go on.
    let missed = r.timeout(CallId(1), 60_000).unwrap();
    assert_eq!(told(&missed), [(State::Missed, 4)]);
    assert!(missed.ended.is_none());
    // The caller leaves: the two others go on without them.
    let left = r.hangup(CallId(1), UserId(1), 61_000).unwrap();
    assert_eq!(told(&left), [(State::Left, 1)]);
    assert!(left.ended.is_none());
    assert_eq!(r.signal(CallId(1), UserId(2), 20, UserId(3)).unwrap(), 30);
    assert!(matches!(
        r.signal(CallId(1), UserId(1), 10, UserId(2)).unwrap_err(),
        CallError::CallEnded
    ));
    // One more leaves: fewer than two remain, and it ends for the last.
    let ended = r.hangup(CallId(1), UserId(3), 62_000).unwrap();
    assert_eq!(told(&ended), [(State::Left, 3), (State::Ended, 3)]);
    assert_eq!(ended.notices[1].to, [UserId(2)]);
    assert!(ended.ended.is_some());
    assert!(r.is_empty() && r.engaged(UserId(2)).is_none());
}

#[test]
fn a_group_call_names_its_busy_invitees_and_needs_someone_to_ring() {
    let mut r = Registry::default();
    r.place(one_to_one(1, 5, 2, 50, Reach::Ring), 0, MAX)
        .unwrap();
    let placed = r.place(group_call(2, 1, 10, &[2, 3]), 0, MAX).unwrap();
    assert_eq!(told(&placed), [(State::Invited, 1), (State::Busy, 2)]);
    assert_eq!(placed.notices[0].to, [UserId(1), UserId(3)]);
    // Declined by the only one left to ring: over.
    let declined = r.decline(CallId(2), UserId(3), 30, 5).unwrap();
    assert_eq!(declined.ended.as_ref().unwrap().outcome, Outcome::Missed);
    let all_busy = r.place(group_call(3, 1, 10, &[2]), 9, MAX).unwrap();
    assert_eq!(all_busy.state, State::Busy);
    assert!(all_busy.ended.is_some());
}

#[test]
fn a_call_has_at_most_nine_participants_each_named_once() {
    let mut r = Registry::default();
    let nine: Vec<u64> = (2..=10).collect();
    assert!(matches!(
        r.place(group_call(1, 1, 10, &nine), 0, MAX).unwrap_err(),
        CallError::TooManyParticipants { max: 9 }
    ));
    assert!(r.place(group_call(1, 1, 10, &nine[..8]), 0, MAX).is_ok());
    for bad in [
        one_to_one(2, 3, 3, 30, Reach::Ring),
        group_call(3, 3, 30, &[4, 4]),
        group_call(4, 3, 30, &[]),
    ] {
        assert!(matches!(
            r.place(bad, 0, MAX).unwrap_err(),
            CallError::Invalid {
                code: "invalid_call",
                ..
            }
        ));
    }
}

#[test]
fn the_caller_hanging_up_before_an_answer_cancels_for_everyone() {
    let mut r = Registry::default();
    r.place(group_call(1, 1, 10, &[2, 3]), 0, MAX).unwrap();
    r.ringing(CallId(1), UserId(2), 20).unwrap();
    let cancelled = r.hangup(CallId(1), UserId(1), 5).unwrap();
    assert_eq!(told(&cancelled), [(State::Cancelled, 1)]);
    assert_eq!(cancelled.notices[0].to.len(), 3);
    assert_eq!(
        cancelled.ended.as_ref().unwrap().outcome,
        Outcome::Cancelled
    );
    assert!(matches!(
        r.accept(CallId(1), UserId(2), 20, 6).unwrap_err(),
        CallError::CallEnded
    ));
}

#[test]
fn the_length_bound_ends_a_call_in_progress() {
    let mut r = Registry::default();
    r.place(one_to_one(1, 1, 2, 10, Reach::Ring), 0, MAX)
        .unwrap();
    r.accept(CallId(1), UserId(2), 20, 1_000).unwrap();
    assert!(
        r.timeout(CallId(1), 60_000).is_none(),
        "answered: no timeout"
    );
    let ended = r.expire(CallId(1), 3_601_000).unwrap();
    assert_eq!(
        ended.ended.map(|e| (e.outcome, e.duration_ms)),
        Some((Outcome::Completed, 3_600_000))
    );
    assert_eq!(
        ended.view,
        CallView {
            joined: vec![UserId(1), UserId(2)],
            ..ended.view.clone()
        }
    );
}

#[test]
fn a_record_s_fallback_says_what_happened_in_words_and_minutes() {
    assert_eq!(
        fallback_text(false, Outcome::Completed, 201_999),
        "[Voice call] 3:21"
    );
    assert_eq!(
        fallback_text(true, Outcome::Completed, 3_723_000),
        "[Video call] 1:02:03"
    );
    assert_eq!(
        fallback_text(true, Outcome::Missed, 0),
        "[Missed video call]"
    );
    assert_eq!(
        fallback_text(false, Outcome::Declined, 0),
        "[Voice call] Declined"
    );
    assert_eq!(
        fallback_text(false, Outcome::Cancelled, 0),
        "[Voice call] Cancelled"
    );
    assert_eq!(fallback_text(false, Outcome::Busy, 0), "[Voice call] Busy");
}

#[test]
fn the_registry_forgets_ended_calls_past_its_bound() {
    let mut r = Registry::default();
    for id in 0..(ENDED_REMEMBERED as u64 + 1) {
        r.place(one_to_one(id, 1, 2, 10, Reach::Ring), 0, MAX)
            .unwrap();
        r.hangup(CallId(id), UserId(1), 1).unwrap();
    }
    assert!(matches!(
        r.accept(CallId(0), UserId(2), 20, 2).unwrap_err(),
        CallError::UnknownCall
    ));
    assert!(matches!(
        r.accept(CallId(1), UserId(2), 20, 2).unwrap_err(),
        CallError::CallEnded
    ));
}

#[test]
fn a_user_may_end_their_call_from_another_device_but_not_answer_it_there() {
    let mut r = Registry::default();
    r.place(one_to_one(1, 1, 2, 10, Reach::Ring), 0, MAX)
        .unwrap();
    r.accept(CallId(1), UserId(2), 20, 5).unwrap();
    assert!(matches!(
        r.decline(CallId(1), UserId(2), 21, 6).unwrap_err(),
        CallError::AnsweredElsewhere
    ));
    // The device in the call vanished; the laptop ends it.
    let ended = r.hangup(CallId(1), UserId(2), 7).unwrap();
    assert_eq!(ended.state, State::Ended);
}
