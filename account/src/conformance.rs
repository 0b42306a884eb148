//! The behaviour every [`AccountStore`] backend must show, through the trait
//! alone. SQLite runs it in this crate's tests; another backend runs it by
//! enabling the `conformance` feature and calling these functions on a fresh,
//! empty store of its own.
//!
//! - [`account_store`], [`concurrent_refreshes`]: users, sessions, tokens.
//! - [`social_graph_matches_the_model`]: the social graph under random
//!   operations, against a model with the rules written again.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use crate::SocialError;
use crate::model::{
    FriendRequest, Privacy, Rotation, SessionRecord, UserId, UserRecord, WhoMayMessage,
};
use crate::policy::{self, SocialLimits};
use crate::store::{AccountStore, SocialStore};

fn user(id: u64, phone: &str) -> UserRecord {
    UserRecord {
        id: UserId(id),
        phone: phone.into(),
        display_name: "A".into(),
        password_hash: "$argon2id$x".into(),
        created_at_ms: 1,
    }
}

fn session(id: u64, user_id: u64) -> SessionRecord {
    SessionRecord {
        id,
        user_id: UserId(user_id),
        device_name: "phone".into(),
        created_at_ms: 0,
        expires_at_ms: 1_000,
    }
}

pub async fn account_store(store: &dyn AccountStore) {
    assert!(
        store
            .display_names(vec![UserId(1)])
            .await
            .unwrap()
            .is_empty()
    );
    // A phone belongs to one user.
    assert!(store.create_user(user(1, "+8613800000001")).await.unwrap());
    assert!(!store.create_user(user(2, "+8613800000001")).await.unwrap());
    assert_eq!(store.user(UserId(2)).await.unwrap(), None);
    let found = store
        .user_by_phone("+8613800000001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, user(1, "+8613800000001"));
    assert_eq!(
        store
            .display_names(vec![UserId(99), UserId(1)])
            .await
            .unwrap(),
        vec![(UserId(1), "A".to_string())]
    );

    // Refresh tokens rotate once; a spent one revokes the session.
    store
        .create_session(session(10, 1), "h0".into())
        .await
        .unwrap();
    assert_eq!(store.active_session(10, 5).await.unwrap(), Some(UserId(1)));
    assert!(matches!(
        store.rotate_refresh("h0".into(), "h1".into(), 5).await.unwrap(),
        Rotation::Rotated(s) if s.id == 10
    ));
    assert_eq!(
        store
            .rotate_refresh("h0".into(), "h2".into(), 6)
            .await
            .unwrap(),
        Rotation::Reused {
            session_id: 10,
            user_id: UserId(1)
        }
    );
    assert_eq!(store.active_session(10, 7).await.unwrap(), None);
    assert_eq!(
        store
            .rotate_refresh("h1".into(), "h3".into(), 8)
            .await
            .unwrap(),
        Rotation::Invalid
    );
    assert_eq!(
        store
            .rotate_refresh("unknown".into(), "h4".into(), 8)
            .await
            .unwrap(),
        Rotation::Invalid
    );

    // Sessions expire and can be revoked.
    store
        .create_session(session(11, 1), "k0".into())
        .await
        .unwrap();
    assert_eq!(store.active_session(11, 1_000).await.unwrap(), None);
    assert_eq!(
        store
            .rotate_refresh("k0".into(), "k1".into(), 1_000)
            .await
            .unwrap(),
        Rotation::Invalid
    );
    store
        .create_session(session(12, 1), "j0".into())
        .await
        .unwrap();
    store.revoke_session(12, 9).await.unwrap();
    assert_eq!(store.active_session(12, 10).await.unwrap(), None);
}

/// Two refreshes racing with one token: exactly one rotates.
pub async fn concurrent_refreshes(store: &dyn AccountStore) {
    store.create_user(user(1, "+8613800000001")).await.unwrap();
    store
        .create_session(session(10, 1), "h0".into())
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        store.rotate_refresh("h0".into(), "a1".into(), 5),
        store.rotate_refresh("h0".into(), "b1".into(), 5),
    );
    let rotated = [a.unwrap(), b.unwrap()]
        .iter()
        .filter(|r| matches!(r, Rotation::Rotated(_)))
        .count();
    assert_eq!(rotated, 1);
}

/// One step of the social graph's random walk.
#[derive(Debug, Clone, Copy)]
enum SocialOp {
    Request(UserId, UserId),
    Accept(UserId, UserId),
    Decline(UserId, UserId),
    Remove(UserId, UserId),
    Block(UserId, UserId),
    Unblock(UserId, UserId),
    Setting(UserId, Option<WhoMayMessage>),
}

/// The social graph as the model keeps it, with the rules written again
/// here, plainly, apart from [`crate::policy`].
#[derive(Debug, Default)]
struct SocialModel {
    /// Pairs (low, high).
    friends: BTreeSet<(UserId, UserId)>,
    /// (from, to).
    pending: BTreeSet<(UserId, UserId)>,
    /// (owner, blocked).
    blocks: BTreeSet<(UserId, UserId)>,
    settings: BTreeMap<UserId, WhoMayMessage>,
}

fn pair(a: UserId, b: UserId) -> (UserId, UserId) {
    (a.min(b), a.max(b))
}

impl SocialModel {
    fn friends(&self, a: UserId, b: UserId) -> bool {
        self.friends.contains(&pair(a, b))
    }

    fn befriend(&mut self, a: UserId, b: UserId) {
        self.friends.insert(pair(a, b));
        self.pending.remove(&(a, b));
        self.pending.remove(&(b, a));
    }

    /// What the op answers, changing the model as the rules say.
    fn apply(&mut self, op: SocialOp) -> Result<(), SocialError> {
        match op {
            SocialOp::Request(a, b) if a == b => Err(SocialError::CannotBefriendSelf),
            SocialOp::Request(a, b) if self.friends(a, b) => Err(SocialError::AlreadyFriends),
            SocialOp::Request(a, b) if self.blocks.contains(&(a, b)) => {
                Err(SocialError::BlockedByYou)
            }
            // Dropped unseen.
            SocialOp::Request(a, b) if self.blocks.contains(&(b, a)) => Ok(()),
            SocialOp::Request(a, b) if self.pending.contains(&(b, a)) => {
                self.befriend(a, b);
                Ok(())
            }
            SocialOp::Request(a, b) => {
                self.pending.insert((a, b));
                Ok(())
            }
            SocialOp::Accept(me, from) if self.friends(me, from) => {
                Err(SocialError::AlreadyFriends)
            }
            SocialOp::Accept(me, from) if !self.pending.contains(&(from, me)) => {
                Err(SocialError::UnknownRequest)
            }
            SocialOp::Accept(me, from) => {
                self.befriend(me, from);
                Ok(())
            }
            SocialOp::Decline(me, from) => match self.pending.remove(&(from, me)) {
                true => Ok(()),
                false => Err(SocialError::UnknownRequest),
            },
            SocialOp::Remove(a, b) => match self.friends.remove(&pair(a, b)) {
                true => Ok(()),
                false => Err(SocialError::NotFriends),
            },
            SocialOp::Block(a, b) if a == b => Err(SocialError::Invalid {
                code: "cannot_block_self",
                reason: "",
            }),
            SocialOp::Block(a, b) => {
                self.blocks.insert((a, b));
                self.pending.remove(&(a, b));
                self.pending.remove(&(b, a));
                Ok(())
            }
            SocialOp::Unblock(a, b) => {
                self.blocks.remove(&(a, b));
                Ok(())
            }
            SocialOp::Setting(user, setting) => {
                match setting {
                    Some(s) => self.settings.insert(user, s),
                    None => self.settings.remove(&user),
                };
                Ok(())
            }
        }
    }

    /// Whether `recipient` takes `sender`'s messages, the server's default
    /// being friends only.
    fn may_message(&self, sender: UserId, recipient: UserId) -> bool {
        let anyone = self.settings.get(&recipient) == Some(&WhoMayMessage::Anyone);
        !self.blocks.contains(&(recipient, sender)) && (self.friends(sender, recipient) || anyone)
    }
}

async fn run_social(store: &dyn SocialStore, op: SocialOp, now: i64) -> Result<(), SocialError> {
    let limits = SocialLimits {
        max_friends: 5_000,
        requests_per_day: 100_000,
    };
    match op {
        SocialOp::Request(from, to) => {
            let request = FriendRequest {
                from,
                to,
                greeting: String::new(),
                sent_ms: now,
            };
            store.send_request(request, limits).await.map(drop)
        }
        SocialOp::Accept(me, from) => store.accept(me, from, now, limits).await.map(drop),
        SocialOp::Decline(me, from) => store.decline(me, from, now).await,
        SocialOp::Remove(a, b) => store.remove_friend(a, b).await.map(drop),
        SocialOp::Block(a, b) => store.block(a, b, now).await,
        SocialOp::Unblock(a, b) => store.unblock(a, b).await,
        SocialOp::Setting(user, setting) => {
            let privacy = Privacy {
                who_may_message: setting,
            };
            store.set_privacy(user, privacy).await
        }
    }
}

/// Random walks over a small population (friend requests, answers,
/// removals, blocks, settings): every answer has the kind the model's has,
/// and every few steps, for every ordered pair, whether one may message the
/// other ([`crate::policy::may_message`] over the store's facts), each
/// contact list (from its change feed), each waiting request list and each
/// block list agree with the model.
pub async fn social_graph_matches_the_model(store: &(impl AccountStore + SocialStore), seed: u64) {
    let people: Vec<UserId> = (1..=8).map(UserId).collect();
    for &who in &people {
        assert!(
            store
                .create_user(user(who.0, &format!("+1555000{}", who.0)))
                .await
                .unwrap()
        );
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = SocialModel::default();
    let now = 10_000_000_000;
    for step in 0..400 {
        let mut someone = || people[rng.random_range(0..people.len())];
        let (a, b) = (someone(), someone());
        let op = match rng.random_range(0..10) {
            0..=2 => SocialOp::Request(a, b),
            3 | 4 => SocialOp::Accept(a, b),
            5 => SocialOp::Decline(a, b),
            6 => SocialOp::Remove(a, b),
            7 => SocialOp::Block(a, b),
            8 => SocialOp::Unblock(a, b),
            _ => {
                let choices = [
                    None,
                    Some(WhoMayMessage::Friends),
                    Some(WhoMayMessage::Anyone),
                ];
                SocialOp::Setting(a, choices[rng.random_range(0..3)])
            }
        };
        let expected = model.apply(op);
        let got = run_social(store, op, now + step).await;
        let same = match (&got, &expected) {
            (Ok(()), Ok(())) => true,
            (Err(g), Err(e)) => std::mem::discriminant(g) == std::mem::discriminant(e),
            _ => false,
        };
        assert!(
            same,
            "step {step}: {op:?} answered {got:?}, the model says {expected:?}"
        );
        if step % 25 != 24 {
            continue;
        }
        for &sender in &people {
            for &recipient in &people {
                let (relation, privacy) = store.message_facts(recipient, sender).await.unwrap();
                let setting = privacy.who_may_message.unwrap_or(WhoMayMessage::Friends);
                assert_eq!(
                    policy::may_message(relation, setting),
                    model.may_message(sender, recipient),
                    "step {step}: may {sender:?} message {recipient:?}?"
                );
            }
            let listed = store
                .contact_changes(sender, 0, 1_000)
                .await
                .unwrap()
                .changes;
            let friends: BTreeSet<UserId> = listed.iter().map(|c| c.friend).collect();
            let modelled: BTreeSet<UserId> = (people.iter())
                .filter(|&&other| model.friends(sender, other))
                .copied()
                .collect();
            assert_eq!(friends, modelled, "step {step}: friends of {sender:?}");
            let waiting: BTreeSet<UserId> = (store.requests(sender, now + step).await.unwrap())
                .iter()
                .map(|r| r.from)
                .collect();
            let modelled: BTreeSet<UserId> = (model.pending.iter())
                .filter(|(_, to)| *to == sender)
                .map(|(from, _)| *from)
                .collect();
            assert_eq!(waiting, modelled, "step {step}: requests to {sender:?}");
            let blocked: BTreeSet<UserId> =
                store.blocked(sender).await.unwrap().into_iter().collect();
            let modelled: BTreeSet<UserId> = (model.blocks.iter())
                .filter(|(owner, _)| *owner == sender)
                .map(|(_, other)| *other)
                .collect();
            assert_eq!(blocked, modelled, "step {step}: blocks of {sender:?}");
        }
    }
    // A request goes unanswered for a week: it is gone.
    let (a, b) = (people[0], people[1]);
    let _ = store.remove_friend(a, b).await;
    let _ = store.unblock(a, b).await;
    let _ = store.unblock(b, a).await;
    let _ = store.decline(b, a, now).await;
    let _ = store.decline(a, b, now).await;
    run_social(store, SocialOp::Request(a, b), now)
        .await
        .unwrap();
    let later = now + policy::REQUEST_TTL_MS;
    assert!(store.requests(b, later).await.unwrap().is_empty());
    assert!(matches!(
        store.accept(b, a, later, SocialLimits::default()).await,
        Err(SocialError::UnknownRequest)
    ));
}
