//! The behaviour every [`AccountStore`] backend must show, through the trait
//! alone. SQLite runs it in this crate's tests; another backend runs it by
//! enabling the `conformance` feature and calling these functions on a fresh,
//! empty store of its own.
//!
//! - [`account_store`], [`concurrent_refreshes`]: users, sessions, tokens.
//! - [`social_graph_matches_the_model`]: the social graph under random
//!   operations, hidden friends among them, against a model with the rules
//!   written again: who may message whom, and who may add whom to a group
//!   directly, by invitation, or not at all.
//! - [`security_store`]: sessions as their owner lists and ends them,
//!   password changes, and an account's deletion, restore and erasure.
//! - [`deletions_match_the_model`]: accounts asked to be deleted, restored,
//!   and erased by sweeps as time passes, at random, against a model of an
//!   account's life.
//! - [`past_blocks_are_kept_to_their_cap`]: the times of past blocks, which
//!   keep what was sent during them out of the blocker's view.
//! - [`profile_store`], [`concurrent_handle_claims`]: profiles, handles,
//!   lookups' facts, contact matching's budget and index.
//! - [`discovery_matches_the_model`]: every lookup, presence and contact
//!   match over random social graphs of hundreds of users, through the
//!   services, against the privacy table written again; and whose contact
//!   card each may share in a message.
//! - [`nearby`]: people nearby's index ([`crate::store::NearbyIndex`]), and
//!   the social store's one read for it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod nearby;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use superapp_kit::bus::InProcessBus;
use superapp_kit::clock::{Clock as _, ManualClock};

use crate::config::SocialConfig;
use crate::contact_salt::ContactSalt;
use crate::model::{
    ContactEdit, Decision, FriendRequest, Gender, Invisible, Lookup, PhoneVisibility, Privacy,
    ProfileChange, Reach, RealNameRecord, RealNameState, Rejection, Rotation, SendVerdict,
    SessionRecord, Standing, UserId, UserRecord, WhoMayAddMe, WhoMayMessage,
};
use crate::policy::profile::{HANDLE_CHANGE_INTERVAL_MS, MATCH_WINDOW_MS};
use crate::policy::real_name::SUBMISSION_WINDOW_MS;
use crate::policy::security::DELETED_DISPLAY_NAME;
use crate::policy::{self, GroupAdd, SocialLimits};
use crate::store::{AccountStore, ProfileStore, RealNameStore, SocialStore};
use crate::{AccountError, ProfileError, Profiles, Social, SocialError};

fn user(id: u64, phone: &str) -> UserRecord {
    UserRecord {
        id: UserId(id),
        phone: phone.into(),
        display_name: "A".into(),
        password_hash: "$argon2id$x".into(),
        created_at_ms: 1,
    }
}

/// The contact hash of a number, under the suite's salt.
fn hash_of(phone: &str) -> String {
    ContactSalt::from_bytes([7; 32]).hash(phone)
}

/// Creates user `id` with number `phone`, found by its hash.
async fn create(store: &dyn AccountStore, id: u64, phone: &str) -> bool {
    store
        .create_user(user(id, phone), hash_of(phone))
        .await
        .unwrap()
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
    assert!(create(store, 1, "+8613800000001").await);
    assert!(!create(store, 2, "+8613800000001").await);
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
    assert!(store.revoke_user_session(UserId(1), 12, 9).await.unwrap());
    assert_eq!(store.active_session(12, 10).await.unwrap(), None);
}

/// Two refreshes racing with one token: exactly one rotates.
pub async fn concurrent_refreshes(store: &dyn AccountStore) {
    create(store, 1, "+8613800000001").await;
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
    AddSetting(UserId, Option<WhoMayAddMe>),
    /// The first hides (true) or unhides the second.
    Hide(UserId, UserId, bool),
}

/// The social graph as the model keeps it, with the rules written again
/// here, plainly, apart from [`crate::policy`].
#[derive(Debug, Default)]
struct SocialModel {
    /// Pairs (low, high).
    friends: BTreeSet<(UserId, UserId)>,
    /// (from, to).
    pending: BTreeSet<(UserId, UserId)>,
    /// (owner, blocked) -> since when.
    blocks: BTreeMap<(UserId, UserId), i64>,
    /// (owner, blocked, from, until): blocks that ended.
    past_blocks: BTreeSet<(UserId, UserId, i64, i64)>,
    /// (owner, hidden): kept through a removal, gone with a new friendship.
    hidden: BTreeSet<(UserId, UserId)>,
    settings: BTreeMap<UserId, WhoMayMessage>,
    add_settings: BTreeMap<UserId, WhoMayAddMe>,
}

fn pair(a: UserId, b: UserId) -> (UserId, UserId) {
    (a.min(b), a.max(b))
}

impl SocialModel {
    fn friends(&self, a: UserId, b: UserId) -> bool {
        self.friends.contains(&pair(a, b))
    }

    fn blocks(&self, owner: UserId, other: UserId) -> bool {
        self.blocks.contains_key(&(owner, other))
    }

    fn befriend(&mut self, a: UserId, b: UserId) {
        self.friends.insert(pair(a, b));
        self.pending.remove(&(a, b));
        self.pending.remove(&(b, a));
        self.hidden.remove(&(a, b));
        self.hidden.remove(&(b, a));
    }

    /// What the op answers at `now`, changing the model as the rules say.
    fn apply(&mut self, op: SocialOp, now: i64) -> Result<(), SocialError> {
        match op {
            SocialOp::Request(a, b) if a == b => Err(SocialError::CannotBefriendSelf),
            SocialOp::Request(a, b) if self.friends(a, b) => Err(SocialError::AlreadyFriends),
            SocialOp::Request(a, b) if self.blocks(a, b) => Err(SocialError::BlockedByYou),
            // Dropped unseen.
            SocialOp::Request(a, b) if self.blocks(b, a) => Ok(()),
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
                self.blocks.entry((a, b)).or_insert(now);
                self.pending.remove(&(a, b));
                self.pending.remove(&(b, a));
                Ok(())
            }
            SocialOp::Unblock(a, b) => {
                if let Some(since) = self.blocks.remove(&(a, b)) {
                    self.past_blocks.insert((a, b, since, now));
                }
                Ok(())
            }
            SocialOp::Setting(user, setting) => {
                match setting {
                    Some(s) => self.settings.insert(user, s),
                    None => self.settings.remove(&user),
                };
                Ok(())
            }
            // Friends may hide and unhide each other; a former friend
            // still hidden may only be unhidden.
            SocialOp::Hide(a, b, hide) if self.friends(a, b) => {
                match hide {
                    true => self.hidden.insert((a, b)),
                    false => self.hidden.remove(&(a, b)),
                };
                Ok(())
            }
            SocialOp::Hide(a, b, false) if self.hidden.remove(&(a, b)) => Ok(()),
            SocialOp::Hide(..) => Err(SocialError::NotFriends),
            SocialOp::AddSetting(user, setting) => {
                match setting {
                    Some(s) => self.add_settings.insert(user, s),
                    None => self.add_settings.remove(&user),
                };
                Ok(())
            }
        }
    }

    /// How `inviter` may bring `invitee` into a group, the server's default
    /// being friends directly: a blocker is neither added nor asked, and
    /// only those the invitee lets in are added without asking.
    fn group_addition(&self, inviter: UserId, invitee: UserId) -> GroupAdd {
        let setting = self.add_settings.get(&invitee);
        let lets_in = match setting {
            Some(WhoMayAddMe::Anyone) => true,
            Some(WhoMayAddMe::Invite) => false,
            Some(WhoMayAddMe::Friends) | None => self.friends(inviter, invitee),
        };
        match (self.blocks(invitee, inviter), lets_in) {
            (true, _) => GroupAdd::Drop,
            (false, true) => GroupAdd::Direct,
            (false, false) => GroupAdd::Invite,
        }
    }

    /// What becomes of `sender`'s message to `recipient`, the server's
    /// default being friends only: a stranger is refused where the
    /// recipient takes friends only; anyone else the recipient blocks has
    /// it withheld.
    fn verdict(&self, sender: UserId, recipient: UserId) -> SendVerdict {
        let anyone = self.settings.get(&recipient) == Some(&WhoMayMessage::Anyone);
        let reach = if !self.friends(sender, recipient) && !anyone {
            Reach::Refused
        } else if self.blocks(recipient, sender) {
            Reach::Withheld
        } else {
            Reach::Delivered
        };
        SendVerdict {
            reach,
            recipient_hides: self.hidden.contains(&(recipient, sender)),
            sender_hides: self.hidden.contains(&(sender, recipient)),
        }
    }

    /// `owner`'s contact list as a device shows it: friends not hidden.
    fn listed(&self, owner: UserId, people: &[UserId]) -> BTreeSet<UserId> {
        (people.iter())
            .filter(|&&other| self.friends(owner, other) && !self.hidden.contains(&(owner, other)))
            .copied()
            .collect()
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
        SocialOp::Unblock(a, b) => store.unblock(a, b, now).await,
        SocialOp::Setting(user, setting) => {
            let mut privacy = store.privacy(user).await?;
            privacy.who_may_message = setting;
            store.set_privacy(user, privacy).await
        }
        SocialOp::AddSetting(user, setting) => {
            let mut privacy = store.privacy(user).await?;
            privacy.who_may_add_me = setting;
            store.set_privacy(user, privacy).await
        }
        SocialOp::Hide(a, b, hidden) => {
            let edit = ContactEdit {
                hidden: Some(hidden),
                ..ContactEdit::default()
            };
            store.set_contact(a, b, edit).await.map(drop)
        }
    }
}

/// A device's copy of one user's contact list, kept by the change feed
/// from the version it holds, as a client keeps it.
#[derive(Debug, Default)]
struct Device {
    version: u64,
    listed: BTreeSet<UserId>,
}

impl Device {
    async fn sync(&mut self, store: &dyn SocialStore, owner: UserId) {
        loop {
            // Small pages, so that paging is walked too.
            let page = store.contact_changes(owner, self.version, 3).await.unwrap();
            for change in &page.changes {
                assert!(
                    !change.hidden || (change.removed && change.remark.is_empty()),
                    "a hidden friend goes as a blank removal: {change:?}"
                );
                if change.removed {
                    self.listed.remove(&change.friend);
                } else {
                    self.listed.insert(change.friend);
                }
            }
            match page.changes.last() {
                Some(last) if page.more => self.version = last.version,
                _ => {
                    self.version = page.version;
                    return;
                }
            }
        }
    }
}

/// Random walks over a small population (friend requests, answers,
/// removals, blocks, settings, hiding and unhiding): every answer has the
/// kind the model's has, and every few steps, for every ordered pair, what
/// becomes of one's message to the other ([`crate::policy::send_verdict`]
/// over the store's facts), how one may bring the other into a group
/// ([`crate::policy::group_addition`] over the facts
/// [`SocialStore::addition_facts`] answers for everyone at once), each
/// contact list read from the start and as a device kept it by the change
/// feed, each waiting request list, block list and view filter (blocks with
/// their times, hidden friends), and searches by exact id, exact name and
/// name prefix agree with the model.
pub async fn social_graph_matches_the_model(store: &(impl AccountStore + SocialStore), seed: u64) {
    let people: Vec<UserId> = (1..=8).map(UserId).collect();
    for &who in &people {
        let phone = format!("+1555000{}", who.0);
        let mut record = user(who.0, &phone);
        record.display_name = format!("Ann{}", who.0);
        assert!(store.create_user(record, hash_of(&phone)).await.unwrap());
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = SocialModel::default();
    let mut devices: BTreeMap<UserId, Device> = BTreeMap::new();
    // Hides done and checked while in force, so the walk is not vacuous.
    let mut hides_seen = 0;
    let now = 10_000_000_000;
    for step in 0..500 {
        let mut someone = || people[rng.random_range(0..people.len())];
        let (a, b) = (someone(), someone());
        let op = match rng.random_range(0..13) {
            0..=2 => SocialOp::Request(a, b),
            3 | 4 => SocialOp::Accept(a, b),
            5 => SocialOp::Decline(a, b),
            6 => SocialOp::Remove(a, b),
            7 => SocialOp::Block(a, b),
            8 => SocialOp::Unblock(a, b),
            9 => {
                let choices = [
                    None,
                    Some(WhoMayAddMe::Anyone),
                    Some(WhoMayAddMe::Friends),
                    Some(WhoMayAddMe::Invite),
                ];
                SocialOp::AddSetting(a, choices[rng.random_range(0..4)])
            }
            10 | 11 => SocialOp::Hide(a, b, rng.random_bool(0.6)),
            _ => {
                let choices = [
                    None,
                    Some(WhoMayMessage::Friends),
                    Some(WhoMayMessage::Anyone),
                ];
                SocialOp::Setting(a, choices[rng.random_range(0..3)])
            }
        };
        let at = now + step;
        let expected = model.apply(op, at);
        let got = run_social(store, op, at).await;
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
            // Everyone else at once, as a group's creation asks.
            let others: Vec<UserId> = people.iter().copied().filter(|&o| o != sender).collect();
            let facts = store.addition_facts(sender, others.clone()).await.unwrap();
            assert_eq!(facts.len(), others.len());
            for (&invitee, (relation, privacy)) in others.iter().zip(facts) {
                let setting = privacy.who_may_add_me.unwrap_or(WhoMayAddMe::Friends);
                assert_eq!(
                    policy::group_addition(relation, setting),
                    model.group_addition(sender, invitee),
                    "step {step}: how may {sender:?} bring {invitee:?} into a group?"
                );
            }
            for &recipient in &people {
                let (relation, privacy) = store.message_facts(recipient, sender).await.unwrap();
                let setting = privacy.who_may_message.unwrap_or(WhoMayMessage::Friends);
                assert_eq!(
                    policy::send_verdict(relation, setting),
                    model.verdict(sender, recipient),
                    "step {step}: what becomes of {sender:?}'s message to {recipient:?}?"
                );
                let invisible = privacy.invisible.unwrap_or(Invisible::Off);
                assert_eq!(
                    policy::may_see_presence(relation, invisible),
                    !model.blocks(recipient, sender),
                    "step {step}: may {sender:?} see {recipient:?} online?"
                );
            }
            let listed = store
                .contact_changes(sender, 0, 1_000)
                .await
                .unwrap()
                .changes;
            let friends: BTreeSet<UserId> = listed.iter().map(|c| c.friend).collect();
            let modelled = model.listed(sender, &people);
            assert_eq!(friends, modelled, "step {step}: friends of {sender:?}");
            let device = devices.entry(sender).or_default();
            device.sync(store, sender).await;
            assert_eq!(
                device.listed, modelled,
                "step {step}: friends of {sender:?} as a device kept them"
            );
            let waiting: BTreeSet<UserId> = (store.requests(sender, at).await.unwrap())
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
            let modelled: BTreeSet<UserId> = (model.blocks.keys())
                .filter(|(owner, _)| *owner == sender)
                .map(|(_, other)| *other)
                .collect();
            assert_eq!(blocked, modelled, "step {step}: blocks of {sender:?}");
            let filters = store.view_filters(sender).await.unwrap();
            let spans: BTreeSet<(UserId, i64, Option<i64>)> = (filters.blocks.iter())
                .map(|s| (s.user, s.from_ms, s.until_ms))
                .collect();
            let current = (model.blocks.iter())
                .filter(|((owner, _), _)| *owner == sender)
                .map(|((_, other), &since)| (*other, since, None));
            let past = (model.past_blocks.iter())
                .filter(|(owner, ..)| *owner == sender)
                .map(|&(_, other, from, until)| (other, from, Some(until)));
            let modelled: BTreeSet<_> = current.chain(past).collect();
            assert_eq!(
                spans, modelled,
                "step {step}: the blocks {sender:?} sees by"
            );
            let hidden: BTreeSet<UserId> = filters.hidden.iter().copied().collect();
            hides_seen += hidden.len();
            let modelled: BTreeSet<UserId> = (model.hidden.iter())
                .filter(|(owner, _)| *owner == sender)
                .map(|(_, other)| *other)
                .collect();
            assert_eq!(hidden, modelled, "step {step}: whom {sender:?} hides");
            let by_prefix: BTreeSet<UserId> = (store.search_contacts(sender, "ann".into()))
                .await
                .unwrap()
                .iter()
                .map(|f| f.contact.friend)
                .collect();
            assert_eq!(
                by_prefix,
                model.listed(sender, &people),
                "step {step}: {sender:?} searching a prefix finds the visible friends"
            );
            for &other in &people {
                let findable = model.listed(sender, &people).contains(&other)
                    || model.hidden.contains(&(sender, other));
                for query in [other.0.to_string(), format!("ann{}", other.0)] {
                    let found = store.search_contacts(sender, query.clone()).await.unwrap();
                    assert_eq!(
                        found.iter().any(|f| f.contact.friend == other),
                        findable,
                        "step {step}: does {sender:?} find {other:?} by {query:?}?"
                    );
                }
            }
        }
    }
    assert!(hides_seen > 0, "no hidden friend was ever checked");
    assert!(!model.past_blocks.is_empty(), "no block ever ended");
    // A request goes unanswered for a week: it is gone.
    let (a, b) = (people[0], people[1]);
    let _ = store.remove_friend(a, b).await;
    let _ = store.unblock(a, b, now).await;
    let _ = store.unblock(b, a, now).await;
    let _ = store.decline(b, a, now).await;
    let _ = store.decline(a, b, now).await;
    run_social(store, SocialOp::Request(a, b), now)
        .await
        .unwrap();
    let later = now + policy::REQUEST_TTL_MS;
    // Others' requests to b, made later in the walk, may still wait.
    let waiting = store.requests(b, later).await.unwrap();
    assert!(waiting.iter().all(|r| r.from != a), "{waiting:?}");
    assert!(matches!(
        store.accept(b, a, later, SocialLimits::default()).await,
        Err(SocialError::UnknownRequest)
    ));
}

/// Past blocks are kept with their times, the newest
/// [`crate::policy::MAX_BLOCK_SPANS`] of them; a block and an unblock in
/// one millisecond hide nothing and are kept all the same.
pub async fn past_blocks_are_kept_to_their_cap(store: &(impl AccountStore + SocialStore)) {
    for id in 1..=2 {
        assert!(create(store, id, &format!("+1555100{id}")).await);
    }
    let (ann, bo) = (UserId(1), UserId(2));
    let cap = policy::MAX_BLOCK_SPANS as i64;
    for i in 0..cap + 5 {
        store.block(ann, bo, 100 * i).await.unwrap();
        store.unblock(ann, bo, 100 * i + 50).await.unwrap();
    }
    store.block(ann, bo, 100 * cap + 500).await.unwrap();
    let filters = store.view_filters(ann).await.unwrap();
    assert_eq!(filters.blocks.len(), policy::MAX_BLOCK_SPANS + 1);
    let oldest = (filters.blocks.iter())
        .filter_map(|s| s.until_ms)
        .min()
        .unwrap();
    assert_eq!(oldest, 550, "the five oldest are forgotten");
    assert_eq!(filters.blocked_now().collect::<Vec<_>>(), [bo]);
    assert!(store.view_filters(bo).await.unwrap().is_empty());
}

fn submission(user: u64, attempt_id: u64, number_hash: &str, at_ms: i64) -> RealNameRecord {
    RealNameRecord {
        user_id: UserId(user),
        attempt_id,
        state: RealNameState::Pending,
        sealed: vec![1, 2, 3, user as u8],
        number_hash: number_hash.into(),
        submitted_at_ms: at_ms,
        decided_at_ms: None,
    }
}

const MISMATCH: Decision = Decision::Rejected(Rejection::Mismatch);

/// Submissions, decisions, one account per number, and the daily limit.
pub async fn real_name_store(store: &dyn RealNameStore) {
    let day = SUBMISSION_WINDOW_MS;
    assert_eq!(store.real_name(UserId(1)).await.unwrap(), None);

    // A submission is stored pending; a second waits for the first.
    let first = submission(1, 10, "h1", 1_000);
    store.submit_real_name(first.clone(), 3).await.unwrap();
    assert_eq!(
        store.real_name(UserId(1)).await.unwrap(),
        Some(first.clone())
    );
    let again = store.submit_real_name(submission(1, 11, "h9", 1_001), 3);
    assert!(matches!(
        again.await,
        Err(AccountError::VerificationPending)
    ));
    assert_eq!(store.real_name(UserId(1)).await.unwrap(), Some(first));

    // Another account cannot claim the number while it is held.
    let taken = store.submit_real_name(submission(2, 20, "h1", 1_002), 3);
    assert!(matches!(taken.await, Err(AccountError::IdNumberTaken)));
    assert_eq!(store.real_name(UserId(2)).await.unwrap(), None);

    // A decision lands only on the pending attempt itself, once.
    assert_eq!(
        store
            .decide_real_name(UserId(1), 11, Decision::Verified, 2_000)
            .await
            .unwrap(),
        None
    );
    let verified = store
        .decide_real_name(UserId(1), 10, Decision::Verified, 2_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(verified.state, RealNameState::Verified);
    assert_eq!(verified.decided_at_ms, Some(2_000));
    assert_eq!(store.real_name(UserId(1)).await.unwrap(), Some(verified));
    assert_eq!(
        store
            .decide_real_name(UserId(1), 10, MISMATCH, 2_001)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .decide_real_name(UserId(9), 1, MISMATCH, 1)
            .await
            .unwrap(),
        None
    );

    // Verified is final.
    let after = store.submit_real_name(submission(1, 12, "h2", 3_000), 3);
    assert!(matches!(after.await, Err(AccountError::AlreadyVerified)));

    // A rejection frees the number, and the rejected may submit again.
    store
        .submit_real_name(submission(3, 30, "h3", 3_000), 3)
        .await
        .unwrap();
    let rejected = store
        .decide_real_name(UserId(3), 30, MISMATCH, 3_500)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rejected.state, RealNameState::Rejected(Rejection::Mismatch));
    store
        .submit_real_name(submission(4, 40, "h3", 4_000), 3)
        .await
        .unwrap();
    let resubmitted = submission(3, 31, "h4", 4_000);
    store
        .submit_real_name(resubmitted.clone(), 3)
        .await
        .unwrap();
    assert_eq!(store.real_name(UserId(3)).await.unwrap(), Some(resubmitted));
    // Expiry is a rejection like any other.
    let expired = Decision::Rejected(Rejection::Expired);
    let record = store
        .decide_real_name(UserId(3), 31, expired, 5_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.state, RealNameState::Rejected(Rejection::Expired));

    // At most `limit` submissions a day, refusals for a held number
    // included; refusals before the count (pending, verified) are free.
    store
        .submit_real_name(submission(6, 60, "h-of-6", 10 * day - 5), 2)
        .await
        .unwrap();
    let taken = store.submit_real_name(submission(5, 50, "h-of-6", 10 * day), 2);
    assert!(matches!(taken.await, Err(AccountError::IdNumberTaken)));
    store
        .submit_real_name(submission(5, 51, "h5", 10 * day + 1_000), 2)
        .await
        .unwrap();
    let pending = store.submit_real_name(submission(5, 52, "h6", 10 * day + 1_500), 2);
    assert!(matches!(
        pending.await,
        Err(AccountError::VerificationPending)
    ));
    store
        .decide_real_name(UserId(5), 51, MISMATCH, 10 * day + 2_000)
        .await
        .unwrap();
    let limited = store
        .submit_real_name(submission(5, 53, "h6", 10 * day + 3_000), 2)
        .await;
    match limited {
        Err(AccountError::TooManySubmissions { retry_after_ms }) => {
            assert_eq!(retry_after_ms, (day - 3_000) as u64);
        }
        other => panic!("expected too many submissions, got {other:?}"),
    }
    assert_eq!(
        store
            .real_name(UserId(5))
            .await
            .unwrap()
            .map(|r| r.attempt_id),
        Some(51)
    );
    // A day after the first, one more fits.
    store
        .submit_real_name(submission(5, 54, "h6", 11 * day), 2)
        .await
        .unwrap();
    assert_eq!(
        store
            .real_name(UserId(5))
            .await
            .unwrap()
            .map(|r| r.attempt_id),
        Some(54)
    );
}

/// Submissions racing for one number claim it once; one user's racing
/// submissions store one.
pub async fn concurrent_real_name_submissions(store: &dyn RealNameStore) {
    let (a, b) = tokio::join!(
        store.submit_real_name(submission(1, 10, "h", 1_000), 3),
        store.submit_real_name(submission(2, 20, "h", 1_000), 3),
    );
    let outcomes = [a, b];
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1);
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, Err(AccountError::IdNumberTaken)))
    );
    let (a, b) = tokio::join!(
        store.submit_real_name(submission(3, 30, "x", 1_000), 3),
        store.submit_real_name(submission(3, 31, "y", 1_000), 3),
    );
    let outcomes = [a, b];
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1);
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, Err(AccountError::VerificationPending)))
    );
}

fn handle(h: &str) -> ProfileChange {
    ProfileChange {
        handle: Some(h.into()),
        ..ProfileChange::default()
    }
}

/// Profiles and handles, the facts of lookups, and contact matching's
/// budget and index.
pub async fn profile_store(store: &(impl AccountStore + SocialStore + ProfileStore)) {
    let day = MATCH_WINDOW_MS;
    let t0 = 100 * day;
    let phones = ["+8613800000001", "+8613800000002", "+8613800000003"];
    for (i, phone) in phones.iter().enumerate() {
        assert!(create(store, i as u64 + 1, phone).await);
    }
    let (ann, bo, cy) = (UserId(1), UserId(2), UserId(3));

    // Nothing set yet: the defaults.
    let fresh = store.profile(ann).await.unwrap().unwrap();
    assert_eq!(
        (fresh.avatar_url.as_str(), fresh.gender, &fresh.handle),
        ("", Gender::Unset, &None)
    );
    assert_eq!(fresh.phone, phones[0]);
    assert_eq!(store.profile(UserId(99)).await.unwrap(), None);
    let nobody = store.update_profile(UserId(99), handle("nobody1"), t0);
    assert!(matches!(nobody.await, Err(ProfileError::UnknownUser)));

    // Every part at once.
    let change = ProfileChange {
        display_name: Some("Ann".into()),
        avatar_url: Some("https://example.com/ann.png".into()),
        signature: Some("hi".into()),
        region: Some("Shenzhen".into()),
        gender: Some(Gender::Female),
        handle: Some("Ann_Lee".into()),
    };
    let set = store.update_profile(ann, change, t0).await.unwrap();
    assert_eq!(set.handle.as_deref(), Some("Ann_Lee"));
    assert_eq!(set.handle_set_ms, Some(t0));
    assert_eq!(store.profile(ann).await.unwrap().unwrap(), set);
    assert_eq!(set.display_name, "Ann");

    // A handle is one whatever its case; a refusal changes nothing at all.
    let mut taken = handle("ann_LEE");
    taken.signature = Some("mine".into());
    let refused = store.update_profile(bo, taken, t0).await;
    assert!(matches!(refused, Err(ProfileError::HandleTaken)));
    let untouched = store.profile(bo).await.unwrap().unwrap();
    assert_eq!((untouched.signature.as_str(), untouched.handle), ("", None));

    // Once in 30 days; the same handle again is no change.
    let soon = store
        .update_profile(ann, handle("ann_lee2"), t0 + 1_000)
        .await;
    match soon {
        Err(ProfileError::HandleTooSoon { retry_after_ms }) => {
            assert_eq!(retry_after_ms, (HANDLE_CHANGE_INTERVAL_MS - 1_000) as u64);
        }
        other => panic!("expected handle_too_soon, got {other:?}"),
    }
    let mut same = handle("Ann_Lee");
    same.signature = Some("still me".into());
    let kept = store.update_profile(ann, same, t0 + 2_000).await.unwrap();
    assert_eq!(
        (kept.handle_set_ms, kept.signature.as_str()),
        (Some(t0), "still me")
    );
    let later = t0 + HANDLE_CHANGE_INTERVAL_MS;
    let moved = store.update_profile(ann, handle("bo_chen"), later).await;
    assert_eq!(moved.unwrap().handle.as_deref(), Some("bo_chen"));
    // The old handle is free at once.
    let freed = store.update_profile(bo, handle("ANN_LEE"), later).await;
    assert_eq!(freed.unwrap().handle.as_deref(), Some("ANN_LEE"));

    // Lookups answer the holder's facts: profile, relation, settings.
    let by = |key: Lookup| store.lookup(cy, key);
    let found = by(Lookup::Handle("ann_lee".into())).await.unwrap().unwrap();
    assert_eq!(found.profile.user_id, bo);
    let found = by(Lookup::Handle("Bo_Chen".into())).await.unwrap().unwrap();
    assert_eq!(found.profile.user_id, ann);
    let found = by(Lookup::Phone(phones[0].into())).await.unwrap().unwrap();
    assert_eq!(found.profile.user_id, ann);
    assert!(
        by(Lookup::Phone("+8613800000009".into()))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        by(Lookup::Handle("no_such_one".into()))
            .await
            .unwrap()
            .is_none()
    );
    assert!(by(Lookup::Id(UserId(99))).await.unwrap().is_none());
    store.block(ann, cy, t0).await.unwrap();
    let hidden = Privacy {
        invisible: Some(Invisible::Strangers),
        phone_visibility: Some(PhoneVisibility::Nobody),
        ..Privacy::default()
    };
    store.set_privacy(ann, hidden).await.unwrap();
    let found = by(Lookup::Id(ann)).await.unwrap().unwrap();
    assert!(found.relation.blocks && !found.relation.blocked_by);
    assert_eq!(found.privacy, hidden);
    let theirs = store.lookup(ann, Lookup::Id(cy)).await.unwrap().unwrap();
    assert!(theirs.relation.blocked_by && !theirs.relation.blocks);

    // Contact matching: hashes found, counted once a day each.
    let unknown = hash_of("+8613800000009");
    let asked = vec![hash_of(phones[0]), unknown.clone()];
    let matched = store.match_phone_hashes(cy, asked.clone(), 3, t0).await;
    let matched: Vec<(String, UserId)> = (matched.unwrap().into_iter())
        .map(|(hash, facts)| (hash, facts.profile.user_id))
        .collect();
    assert_eq!(matched, [(hash_of(phones[0]), ann)]);
    let again = store.match_phone_hashes(cy, asked, 3, t0 + 1_000).await;
    assert_eq!(again.unwrap().len(), 1, "the same hashes count once");
    let two_more = vec![hash_of(phones[1]), hash_of("+8613800000008")];
    let over = store
        .match_phone_hashes(cy, two_more.clone(), 3, t0 + 2_000)
        .await;
    match over {
        Err(ProfileError::TooManyMatches { retry_after_ms }) => {
            assert_eq!(retry_after_ms, (day - 2_000) as u64);
        }
        other => panic!("expected too many matches, got {other:?}"),
    }
    // The refusal recorded nothing: one more still fits.
    let one = store.match_phone_hashes(cy, vec![hash_of(phones[1])], 3, t0 + 3_000);
    assert_eq!(one.await.unwrap().len(), 1);
    let full = store.match_phone_hashes(cy, vec![hash_of("+8613800000007")], 3, t0 + 4_000);
    assert!(matches!(
        full.await,
        Err(ProfileError::TooManyMatches { .. })
    ));
    // A day after the first, they are forgotten.
    let next_day = store.match_phone_hashes(cy, two_more, 3, t0 + day + 1);
    assert_eq!(next_day.await.unwrap().len(), 1);

    // The index of phone hashes: rebuilt under a new salt, page by page.
    assert_eq!(store.phone_index_salt().await.unwrap(), None);
    store.set_phone_index_salt("first".into()).await.unwrap();
    assert_eq!(
        store.phone_index_salt().await.unwrap().as_deref(),
        Some("first")
    );
    store.clear_phone_index().await.unwrap();
    assert_eq!(store.phone_index_salt().await.unwrap(), None);
    let gone = store.match_phone_hashes(bo, vec![hash_of(phones[0])], 100, t0);
    assert!(gone.await.unwrap().is_empty());
    let page = store.phones_after(UserId(0), 2).await.unwrap();
    assert_eq!(page, [(ann, phones[0].into()), (bo, phones[1].into())]);
    let rest = store.phones_after(bo, 2).await.unwrap();
    assert_eq!(rest, [(cy, phones[2].to_string())]);
    store
        .index_phones(vec![("rehashed".into(), ann)])
        .await
        .unwrap();
    let back = store.match_phone_hashes(bo, vec!["rehashed".into()], 100, t0);
    assert_eq!(back.await.unwrap()[0].1.profile.user_id, ann);
    store
        .index_phones(vec![(hash_of(phones[1]), bo)])
        .await
        .unwrap();

    // An account being deleted is still found, its standing said; erased,
    // its profile goes, its handle and contact hash with it.
    let (asked, due) = (t0 + 2 * day, t0 + 3 * day);
    store.request_deletion(bo, asked, due).await.unwrap();
    let found = by(Lookup::Handle("ann_lee".into())).await.unwrap().unwrap();
    assert_eq!(
        found.standing,
        Standing::Deleting {
            requested_at_ms: asked,
            due_at_ms: due
        }
    );
    assert!(store.erase(bo, due).await.unwrap().is_some());
    assert!(
        by(Lookup::Handle("ann_lee".into()))
            .await
            .unwrap()
            .is_none()
    );
    assert!(by(Lookup::Phone(phones[1].into())).await.unwrap().is_none());
    let erased = by(Lookup::Id(bo)).await.unwrap().unwrap();
    assert_eq!(erased.standing, Standing::Deleted { at_ms: due });
    assert_eq!(
        (erased.profile.handle, erased.profile.signature.as_str()),
        (None, "")
    );
    let hashes = vec![hash_of(phones[1])];
    let none = store.match_phone_hashes(cy, hashes, 100, due + 2 * day);
    assert!(none.await.unwrap().is_empty());
    let free = store.update_profile(cy, handle("Ann_Lee"), due);
    assert_eq!(free.await.unwrap().handle.as_deref(), Some("Ann_Lee"));
    // Nor is an erased account's empty number indexed again.
    let page = store.phones_after(UserId(0), 10).await.unwrap();
    assert_eq!(page, [(ann, phones[0].into()), (cy, phones[2].into())]);
}

/// Two users claiming one handle at once (in two cases): one holds it.
pub async fn concurrent_handle_claims(store: &(impl AccountStore + ProfileStore)) {
    create(store, 1, "+8613800000001").await;
    create(store, 2, "+8613800000002").await;
    let (a, b) = tokio::join!(
        store.update_profile(UserId(1), handle("same_one"), 1_000),
        store.update_profile(UserId(2), handle("SAME_ONE"), 1_000),
    );
    let outcomes = [a, b];
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1);
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, Err(ProfileError::HandleTaken)))
    );
}

fn phone(u: UserId) -> String {
    format!("+1555{:07}", u.0)
}

fn handle_of(u: UserId) -> String {
    format!("User{:04}", u.0)
}

/// The social graph and settings of the discovery walk, and the privacy
/// table of docs/privacy.md written again, apart from [`crate::policy`].
#[derive(Debug, Default, Clone)]
struct DiscoveryModel {
    /// Pairs (low, high).
    friends: BTreeSet<(UserId, UserId)>,
    /// (owner, blocked).
    blocks: BTreeSet<(UserId, UserId)>,
    phone: BTreeMap<UserId, PhoneVisibility>,
    invisible: BTreeMap<UserId, Invisible>,
}

/// What a viewer may see and do of an owner, as the table says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    details: bool,
    phone: bool,
    presence: bool,
    by_handle: bool,
    by_phone: bool,
}

impl DiscoveryModel {
    /// The shipped defaults stand where a user has not chosen.
    fn seen(&self, viewer: UserId, owner: UserId) -> Seen {
        if viewer == owner {
            return Seen {
                details: true,
                phone: true,
                presence: true,
                by_handle: true,
                by_phone: true,
            };
        }
        let friend = self.friends.contains(&pair(viewer, owner));
        let blocked = self.blocks.contains(&(owner, viewer));
        let invisible = self.invisible.get(&owner).copied();
        let hidden = blocked
            || invisible == Some(Invisible::Everyone)
            || (invisible == Some(Invisible::Strangers) && !friend);
        let phone = match self.phone.get(&owner) {
            Some(PhoneVisibility::Everyone) => true,
            Some(PhoneVisibility::Nobody) => false,
            Some(PhoneVisibility::Friends) | None => friend,
        };
        Seen {
            details: !hidden,
            phone: !hidden && phone,
            presence: !hidden,
            by_handle: !hidden,
            by_phone: !hidden && phone,
        }
    }

    /// Whether `sender` may share `subject`'s contact card, as
    /// docs/privacy.md's "Contact cards" says: their own, or a friend's who
    /// does not block them.
    fn card(&self, sender: UserId, subject: UserId) -> bool {
        sender == subject
            || (self.friends.contains(&pair(sender, subject))
                && !self.blocks.contains(&(subject, sender)))
    }
}

/// Random social graphs of 200 users (friendships, blocks both ways, phone
/// visibility and invisible levels, chosen or left to the defaults),
/// changed between rounds; in each round, for every viewer and a random
/// sample of others, the answers of [`Profiles`] (by id, handle and phone,
/// and [`Profiles::card`]) and [`Social::may_see_presence`] are the
/// model's, and each viewer's contact match over every number finds exactly
/// whom the model says.
pub async fn discovery_matches_the_model<S>(store: Arc<S>, seed: u64)
where
    S: AccountStore + SocialStore + ProfileStore + Send + Sync + 'static,
{
    const USERS: u64 = 200;
    const SAMPLE: usize = 25;
    let clock = Arc::new(ManualClock::new(100 * MATCH_WINDOW_MS));
    let config = SocialConfig {
        lookups_per_hour: u32::MAX,
        contact_match_hashes_per_request: 10_000,
        contact_match_hashes_per_day: u32::MAX,
        ..SocialConfig::default()
    };
    let salt = ContactSalt::from_bytes([7; 32]);
    let social = Arc::new(Social::new(
        store.clone(),
        Arc::new(InProcessBus::new()),
        clock.clone(),
        config.clone(),
    ));
    let profiles = Arc::new(Profiles::new(
        store.clone(),
        salt.clone(),
        clock.clone(),
        config,
    ));
    let people: Vec<UserId> = (1..=USERS).map(UserId).collect();
    // At once, so that the store's writer commits them in groups.
    let mut joining = tokio::task::JoinSet::new();
    for &who in &people {
        let store = store.clone();
        joining.spawn(async move {
            assert!(create(store.as_ref(), who.0, &phone(who)).await);
            let change = ProfileChange {
                handle: Some(handle_of(who)),
                signature: Some(format!("I am {}", who.0)),
                ..ProfileChange::default()
            };
            store.update_profile(who, change, 1).await.unwrap();
        });
    }
    while let Some(joined) = joining.join_next().await {
        joined.unwrap();
    }
    // Ten numbers nobody holds, matched too.
    let every_hash: Vec<String> = (people.iter().map(|&u| phone(u)))
        .chain((0..10).map(|i| format!("+1666{i:07}")))
        .map(|p| salt.hash(&p))
        .collect();
    let limits = SocialLimits {
        max_friends: 5_000,
        requests_per_day: 100_000,
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = DiscoveryModel::default();
    for round in 0..3 {
        // Change the graph: befriend, unfriend, block, unblock, set.
        for _ in 0..400 {
            let a = people[rng.random_range(0..people.len())];
            let b = people[rng.random_range(0..people.len())];
            if a == b {
                continue;
            }
            let now = clock.now_ms();
            match rng.random_range(0..10) {
                0..=3 if !model.friends.contains(&pair(a, b)) => {
                    let _ = store.unblock(a, b, now).await;
                    let _ = store.unblock(b, a, now).await;
                    model.blocks.remove(&(a, b));
                    model.blocks.remove(&(b, a));
                    let request = FriendRequest {
                        from: a,
                        to: b,
                        greeting: String::new(),
                        sent_ms: now,
                    };
                    store.send_request(request, limits).await.unwrap();
                    store.accept(b, a, now, limits).await.unwrap();
                    model.friends.insert(pair(a, b));
                }
                4 if model.friends.remove(&pair(a, b)) => {
                    store.remove_friend(a, b).await.unwrap();
                }
                5 | 6 => {
                    store.block(a, b, now).await.unwrap();
                    model.blocks.insert((a, b));
                }
                7 => {
                    store.unblock(a, b, now).await.unwrap();
                    model.blocks.remove(&(a, b));
                }
                _ => {
                    let phones = [
                        None,
                        Some(PhoneVisibility::Everyone),
                        Some(PhoneVisibility::Friends),
                        Some(PhoneVisibility::Nobody),
                    ];
                    let levels = [
                        None,
                        Some(Invisible::Off),
                        Some(Invisible::Strangers),
                        Some(Invisible::Everyone),
                    ];
                    let p = phones[rng.random_range(0..4)];
                    let i = levels[rng.random_range(0..4)];
                    let settings = social.set_settings(a, None, p, i, None).await.unwrap();
                    if let Some(p) = p {
                        model.phone.insert(a, p);
                    }
                    if let Some(i) = i {
                        model.invisible.insert(a, i);
                    }
                    let modelled = (
                        model.phone.get(&a).copied(),
                        model.invisible.get(&a).copied(),
                    );
                    assert_eq!(
                        (settings.phone_visibility, settings.invisible),
                        (
                            modelled.0.unwrap_or(PhoneVisibility::Friends),
                            modelled.1.unwrap_or(Invisible::Off)
                        )
                    );
                }
            }
        }
        // Compare, every viewer at once, so that the store's reads run side
        // by side and its writer commits the matches in groups.
        let seen_now = Arc::new(model.clone());
        let mut checking = tokio::task::JoinSet::new();
        for &viewer in &people {
            let owners: Vec<UserId> = (0..SAMPLE)
                .map(|_| people[rng.random_range(0..people.len())])
                .collect();
            let (model, profiles, social) = (seen_now.clone(), profiles.clone(), social.clone());
            let (people, every_hash, salt) = (people.clone(), every_hash.clone(), salt.clone());
            checking.spawn(async move {
                for owner in owners {
                    let seen = model.seen(viewer, owner);
                    let context = format!("round {round}: {viewer:?} looks at {owner:?}: {seen:?}");
                    let view = profiles.by_id(viewer, owner).await.unwrap();
                    assert_eq!(view.user_id, owner, "{context}");
                    assert_eq!(view.details.is_some(), seen.details, "{context}");
                    if let Some(details) = &view.details {
                        assert_eq!(details.handle.as_deref(), Some(handle_of(owner).as_str()));
                        assert_eq!(details.signature, format!("I am {}", owner.0));
                    }
                    assert_eq!(view.phone, seen.phone.then(|| phone(owner)), "{context}");
                    let lower = handle_of(owner).to_lowercase();
                    match (profiles.by_handle(viewer, &lower).await, seen.by_handle) {
                        (Ok(found), true) => assert_eq!(found, view, "{context}"),
                        (Err(ProfileError::UnknownUser), false) => {}
                        (other, _) => panic!("{context}: by handle {other:?}"),
                    }
                    match (
                        profiles.by_phone(viewer, &phone(owner)).await,
                        seen.by_phone,
                    ) {
                        (Ok(found), true) => assert_eq!(found, view, "{context}"),
                        (Err(ProfileError::UnknownUser), false) => {}
                        (other, _) => panic!("{context}: by phone {other:?}"),
                    }
                    let presence = social.may_see_presence(viewer, owner).await.unwrap();
                    assert_eq!(presence, seen.presence, "{context}");
                    let card = profiles.card(viewer, owner).await.unwrap();
                    assert_eq!(card.is_some(), model.card(viewer, owner), "{context}: card");
                    if let Some(card) = card {
                        assert_eq!(card, (view.display_name.clone(), view.avatar_url.clone()));
                    }
                }
                let matched = profiles.match_contacts(viewer, &every_hash).await.unwrap();
                let found: BTreeSet<UserId> = matched.iter().map(|(_, v)| v.user_id).collect();
                let expected: BTreeSet<UserId> = (people.iter().copied())
                    .filter(|&owner| owner != viewer && model.seen(viewer, owner).by_phone)
                    .collect();
                assert_eq!(found, expected, "round {round}: {viewer:?}'s contact match");
                for (hash, view) in &matched {
                    assert_eq!(*hash, salt.hash(&phone(view.user_id)));
                    assert_eq!(view.phone, Some(phone(view.user_id)));
                }
            });
        }
        while let Some(checked) = checking.join_next().await {
            if let Err(failed) = checked {
                std::panic::resume_unwind(failed.into_panic());
            }
        }
        clock.advance_ms(1_000);
    }
}

fn lasting_session(id: u64, user_id: u64, expires_at_ms: i64) -> SessionRecord {
    SessionRecord {
        expires_at_ms,
        ..session(id, user_id)
    }
}

fn listed(sessions: Vec<crate::model::SessionInfo>) -> Vec<(u64, i64)> {
    sessions
        .iter()
        .map(|s| (s.id, s.last_active_at_ms))
        .collect()
}

fn friend_request(from: u64, to: u64, at_ms: i64) -> FriendRequest {
    FriendRequest {
        from: UserId(from),
        to: UserId(to),
        greeting: String::new(),
        sent_ms: at_ms,
    }
}

const ROOMY: SocialLimits = SocialLimits {
    max_friends: 5_000,
    requests_per_day: 100_000,
};

/// Sessions as their owner lists and ends them; a password change that
/// keeps the asking session alone; an account's deletion, restored within
/// its grace period, then asked again and erased after it.
pub async fn security_store(store: &(impl AccountStore + SocialStore + RealNameStore)) {
    let u = UserId;
    for (id, phone) in [
        (1, "+8613800000001"),
        (2, "+8613800000002"),
        (3, "+8613800000003"),
        (4, "+8613800000004"),
        (6, "+8613800000006"),
    ] {
        assert!(create(store, id, phone).await);
    }
    let far = 1_000_000_000;
    for (session, owner, hash) in [
        (10, 1, "h10"),
        (11, 1, "h11"),
        (12, 1, "h12"),
        (20, 2, "h20"),
    ] {
        let record = lasting_session(session, owner, far);
        store.create_session(record, hash.into()).await.unwrap();
    }
    store
        .create_session(lasting_session(13, 1, 100), "h13".into())
        .await
        .unwrap();

    // Listed live, the most recently active (a refresh) first.
    assert!(matches!(
        store
            .rotate_refresh("h11".into(), "h11b".into(), 50)
            .await
            .unwrap(),
        Rotation::Rotated(_)
    ));
    let sessions = store.sessions(u(1), 100).await.unwrap();
    assert_eq!(listed(sessions), [(11, 50), (12, 0), (10, 0)]);
    // Only the owner's own live sessions end; anything else is no change.
    assert!(!store.revoke_user_session(u(2), 10, 100).await.unwrap());
    assert!(!store.revoke_user_session(u(1), 99, 100).await.unwrap());
    assert!(!store.revoke_user_session(u(1), 13, 100).await.unwrap());
    assert!(store.revoke_user_session(u(1), 12, 100).await.unwrap());
    assert!(!store.revoke_user_session(u(1), 12, 101).await.unwrap());
    assert_eq!(store.active_session(12, 101).await.unwrap(), None);
    assert_eq!(store.active_session(10, 101).await.unwrap(), Some(u(1)));
    let sessions = store.sessions(u(1), 101).await.unwrap();
    assert_eq!(listed(sessions), [(11, 50), (10, 0)]);

    // A password change keeps the asking session, under a new refresh
    // token, and ends every other.
    let refused = store.change_password(u(1), "x".into(), 12, "k".into(), 200);
    assert!(matches!(refused.await, Err(AccountError::SessionRevoked)));
    let refused = store.change_password(u(2), "x".into(), 10, "k".into(), 200);
    assert!(matches!(refused.await, Err(AccountError::SessionRevoked)));
    assert_eq!(
        store.user(u(1)).await.unwrap().unwrap().password_hash,
        "$argon2id$x"
    );
    let (kept, mut ended) = store
        .change_password(u(1), "$argon2id$new".into(), 10, "k10".into(), 200)
        .await
        .unwrap();
    ended.sort_unstable();
    assert_eq!((kept.id, kept.user_id, kept.expires_at_ms), (10, u(1), far));
    assert_eq!(ended, [11, 13]);
    assert_eq!(
        store.user(u(1)).await.unwrap().unwrap().password_hash,
        "$argon2id$new"
    );
    assert_eq!(store.active_session(11, 201).await.unwrap(), None);
    assert_eq!(store.active_session(20, 201).await.unwrap(), Some(u(2)));
    // The kept session's earlier token is dead, not reused: the session lives.
    assert_eq!(
        store
            .rotate_refresh("h10".into(), "z".into(), 202)
            .await
            .unwrap(),
        Rotation::Invalid
    );
    assert_eq!(store.active_session(10, 203).await.unwrap(), Some(u(1)));
    assert!(matches!(
        store.rotate_refresh("k10".into(), "k10b".into(), 204).await.unwrap(),
        Rotation::Rotated(s) if s.id == 10
    ));
    assert_eq!(
        listed(store.sessions(u(1), 205).await.unwrap()),
        [(10, 204)]
    );

    // What erasure must take away: a friend, a request each way, blocks
    // each way, settings, a real-name record.
    store
        .send_request(friend_request(1, 2, 300), ROOMY)
        .await
        .unwrap();
    store.accept(u(2), u(1), 301, ROOMY).await.unwrap();
    store
        .send_request(friend_request(3, 1, 302), ROOMY)
        .await
        .unwrap();
    store
        .send_request(friend_request(1, 4, 303), ROOMY)
        .await
        .unwrap();
    store.block(u(1), u(2), 304).await.unwrap();
    store.block(u(6), u(1), 305).await.unwrap();
    let anyone = Privacy {
        who_may_message: Some(WhoMayMessage::Anyone),
        who_may_add_me: Some(WhoMayAddMe::Anyone),
        phone_visibility: Some(PhoneVisibility::Everyone),
        invisible: Some(Invisible::Strangers),
    };
    store.set_privacy(u(1), anyone).await.unwrap();
    store
        .submit_real_name(submission(1, 70, "h-of-1", 306), 3)
        .await
        .unwrap();

    // Deletion asked: every session ends; the account takes no part.
    assert_eq!(store.standing(u(1)).await.unwrap(), Some(Standing::Active));
    assert_eq!(store.standing(u(99)).await.unwrap(), None);
    let ended = store.request_deletion(u(1), 1_000, 5_000).await.unwrap();
    assert_eq!(ended, [10]);
    let asked = Standing::Deleting {
        requested_at_ms: 1_000,
        due_at_ms: 5_000,
    };
    assert_eq!(store.standing(u(1)).await.unwrap(), Some(asked));
    assert_eq!(store.active_session(10, 1_001).await.unwrap(), None);
    assert!(matches!(
        store.request_deletion(u(1), 1_002, 6_000).await,
        Err(AccountError::DeletionPending { due_at_ms: 5_000 })
    ));
    assert_eq!(
        store.display_names(vec![u(1), u(2)]).await.unwrap(),
        vec![(u(2), "A".to_string())]
    );
    let person = store.people(vec![u(1)]).await.unwrap();
    assert_eq!(
        (person[0].display_name.as_str(), person[0].deleted),
        ("A", false)
    );
    let request = store.send_request(friend_request(2, 1, 1_003), ROOMY);
    assert!(matches!(request.await, Err(SocialError::UserDeleted)));
    let accept = store.accept(u(4), u(1), 1_003, ROOMY);
    assert!(matches!(accept.await, Err(SocialError::UserDeleted)));

    // Not due yet: nothing to erase; restored, it is as it was.
    assert!(store.deletions_due(4_999, 10).await.unwrap().is_empty());
    assert_eq!(store.deletions_due(5_000, 10).await.unwrap(), [u(1)]);
    assert_eq!(store.erase(u(1), 4_999).await.unwrap(), None);
    store.cancel_deletion(u(1), 4_999).await.unwrap();
    assert_eq!(store.standing(u(1)).await.unwrap(), Some(Standing::Active));
    assert!(matches!(
        store.cancel_deletion(u(1), 5_000).await,
        Err(AccountError::DeletionNotRequested)
    ));
    assert!(store.relation(u(1), u(2), 5_000).await.unwrap().friends);

    // Asked again and left past its grace period: erased.
    assert!(
        store
            .request_deletion(u(1), 6_000, 9_000)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        store.cancel_deletion(u(1), 9_000).await,
        Err(AccountError::AccountDeleted)
    ));
    let version_before = store.contact_changes(u(2), 0, 10).await.unwrap().version;
    let erased = store.erase(u(1), 9_000).await.unwrap().unwrap();
    assert_eq!(erased.friends.len(), 1);
    let (friend, version) = erased.friends[0];
    assert_eq!(friend, u(2));
    assert!(version > version_before);
    let changes = store
        .contact_changes(u(2), version_before, 10)
        .await
        .unwrap();
    assert_eq!(changes.version, version);
    assert!(
        changes
            .changes
            .iter()
            .any(|c| c.friend == u(1) && c.removed)
    );
    assert!(!store.relation(u(2), u(1), 9_000).await.unwrap().friends);
    assert_eq!(
        store.standing(u(1)).await.unwrap(),
        Some(Standing::Deleted { at_ms: 9_000 })
    );
    assert_eq!(store.user_by_phone("+8613800000001").await.unwrap(), None);
    let erased_row = store.user(u(1)).await.unwrap().unwrap();
    assert_eq!(
        (erased_row.phone.as_str(), erased_row.password_hash.as_str()),
        ("", "")
    );
    let person = store.people(vec![u(1), u(98)]).await.unwrap();
    assert_eq!(person.len(), 1);
    assert_eq!(
        (person[0].display_name.as_str(), person[0].deleted),
        (DELETED_DISPLAY_NAME, true)
    );
    assert!(store.display_names(vec![u(1)]).await.unwrap().is_empty());
    assert!(store.sessions(u(1), 9_001).await.unwrap().is_empty());
    assert!(store.blocked(u(1)).await.unwrap().is_empty());
    assert!(store.blocked(u(6)).await.unwrap().is_empty());
    // What 1 sent while 6 blocked them stays out of 6's view; 1's own
    // view filters are gone.
    let kept = store.view_filters(u(6)).await.unwrap();
    let during = crate::model::BlockSpan {
        user: u(1),
        from_ms: 305,
        until_ms: Some(9_000),
    };
    assert_eq!(kept.blocks, vec![during]);
    assert!(store.view_filters(u(1)).await.unwrap().is_empty());
    assert!(store.requests(u(1), 9_001).await.unwrap().is_empty());
    assert!(store.requests(u(4), 9_001).await.unwrap().is_empty());
    assert_eq!(store.privacy(u(1)).await.unwrap(), Privacy::default());
    assert_eq!(store.real_name(u(1)).await.unwrap(), None);
    assert!(
        store
            .contact_changes(u(1), 0, 10)
            .await
            .unwrap()
            .changes
            .is_empty()
    );
    // The phone registers again, and the ID number verifies someone else.
    assert!(create(store, 5, "+8613800000001").await);
    store
        .submit_real_name(submission(5, 71, "h-of-1", 9_002), 3)
        .await
        .unwrap();
    // Erased is final.
    assert_eq!(store.erase(u(1), 9_003).await.unwrap(), None);
    assert!(store.deletions_due(20_000, 10).await.unwrap().is_empty());
    assert!(matches!(
        store.request_deletion(u(1), 9_004, 12_000).await,
        Err(AccountError::AccountDeleted)
    ));
    assert!(matches!(
        store.cancel_deletion(u(1), 9_004).await,
        Err(AccountError::AccountDeleted)
    ));
    let request = store.send_request(friend_request(3, 1, 9_005), ROOMY);
    assert!(matches!(request.await, Err(SocialError::UserDeleted)));
}

/// An account's life as the model keeps it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Life {
    Active,
    /// Erased from this time on.
    Asked(i64),
    Erased,
}

/// Random walks over six accounts: deletions asked, restores, friend
/// requests to them, time passing and sweeps erasing what is due. Every
/// answer has the kind the model's has, and after each step every
/// account's standing, whether its name is listed for others, whether its
/// phone still signs in, and which deletions are due agree with the model.
pub async fn deletions_match_the_model(store: &(impl AccountStore + SocialStore), seed: u64) {
    const GRACE: i64 = 1_000;
    let people: Vec<UserId> = (1..=6).map(UserId).collect();
    let phone = |who: UserId| format!("+1555100000{}", who.0);
    for &who in &people {
        assert!(create(store, who.0, &phone(who)).await);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model: BTreeMap<UserId, Life> = people.iter().map(|&u| (u, Life::Active)).collect();
    let mut now = 1_000_000;
    for step in 0..300 {
        let who = people[rng.random_range(0..people.len())];
        let life = model[&who];
        match rng.random_range(0..10) {
            0 | 1 => {
                let got = store.request_deletion(who, now, now + GRACE).await;
                match life {
                    Life::Active => {
                        assert!(got.is_ok(), "step {step}: {got:?}");
                        model.insert(who, Life::Asked(now + GRACE));
                    }
                    Life::Asked(due) if now < due => assert!(
                        matches!(got, Err(AccountError::DeletionPending { due_at_ms }) if due_at_ms == due),
                        "step {step}: {got:?}"
                    ),
                    _ => assert!(
                        matches!(got, Err(AccountError::AccountDeleted)),
                        "step {step}: {got:?}"
                    ),
                }
            }
            2 | 3 => {
                let got = store.cancel_deletion(who, now).await;
                match life {
                    Life::Active => assert!(
                        matches!(got, Err(AccountError::DeletionNotRequested)),
                        "step {step}: {got:?}"
                    ),
                    Life::Asked(due) if now < due => {
                        assert!(got.is_ok(), "step {step}: {got:?}");
                        model.insert(who, Life::Active);
                    }
                    _ => assert!(
                        matches!(got, Err(AccountError::AccountDeleted)),
                        "step {step}: {got:?}"
                    ),
                }
            }
            4 | 5 => {
                let from = people[rng.random_range(0..people.len())];
                if from == who {
                    continue;
                }
                let got = store
                    .send_request(friend_request(from.0, who.0, now), ROOMY)
                    .await;
                let deleted = matches!(got, Err(SocialError::UserDeleted));
                assert_eq!(deleted, life != Life::Active, "step {step}: {got:?}");
            }
            6 | 7 => now += rng.random_range(0..600),
            _ => {
                for due in store.deletions_due(now, 100).await.unwrap() {
                    assert!(store.erase(due, now).await.unwrap().is_some());
                }
                for life in model.values_mut() {
                    if matches!(*life, Life::Asked(due) if due <= now) {
                        *life = Life::Erased;
                    }
                }
            }
        }
        let listed: BTreeSet<UserId> = (store.display_names(people.clone()).await.unwrap())
            .into_iter()
            .map(|(who, _)| who)
            .collect();
        let due: BTreeSet<UserId> = store
            .deletions_due(now, 100)
            .await
            .unwrap()
            .into_iter()
            .collect();
        for &who in &people {
            let life = model[&who];
            let standing = store.standing(who).await.unwrap().unwrap();
            let same = match (life, standing) {
                (Life::Active, Standing::Active) => true,
                (Life::Asked(due), Standing::Deleting { due_at_ms, .. }) => due == due_at_ms,
                (Life::Erased, Standing::Deleted { .. }) => true,
                _ => false,
            };
            assert!(
                same,
                "step {step}: {who:?} is {standing:?}, the model says {life:?}"
            );
            assert_eq!(
                listed.contains(&who),
                life == Life::Active,
                "step {step}: {who:?}"
            );
            let by_phone = store.user_by_phone(&phone(who)).await.unwrap();
            assert_eq!(
                by_phone.is_some(),
                life != Life::Erased,
                "step {step}: {who:?}"
            );
            let is_due = matches!(life, Life::Asked(at) if at <= now);
            assert_eq!(due.contains(&who), is_due, "step {step}: {who:?}");
        }
    }
}
