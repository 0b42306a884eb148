//! The social graph's operations: friend requests, friends with remarks,
//! tags and hidden marks, the contact list's change feed and its search,
//! blocks, and the privacy settings that decide who may message whom, who
//! may add whom to a group, who sees one's number and presence, and who
//! finds one ([`crate::Profiles`] answers lookups under them). Each
//! validates its input, lets the store decide with [`crate::policy`] inside
//! its write, and tells the users concerned on their bus topics
//! ([`ContactEvent`]; a [`Blocking`] notice to the gateways for a block).

use std::sync::Arc;

use bytes::Bytes;
use prost::Message as _;
use superapp_kit::bus::SharedBus;
use superapp_kit::clock::SharedClock;
use superapp_proto::Topic;
use superapp_proto::v1::contact_event::Kind;
use superapp_proto::v1::{Blocking, BusEnvelope, ContactEvent, Event, bus_envelope, event};

use crate::SocialError;
use crate::answers::Answers;
use crate::config::SocialConfig;
use crate::model::{
    Befriended, ContactChanges, ContactEdit, FoundContact, FriendRequest, Invisible,
    PhoneVisibility, Privacy, SendVerdict, UserId, ViewFilters, WhoMayAddMe, WhoMayMessage,
};
use crate::policy::{self, GroupAdd};
use crate::store::SocialStore;
use crate::views::Views;

const DEFAULT_CONTACTS_PAGE: u32 = 500;
const MAX_CONTACTS_PAGE: u32 = 1_000;

/// A user's settings with the server's defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub who_may_message: WhoMayMessage,
    pub phone_visibility: PhoneVisibility,
    pub invisible: Invisible,
    pub who_may_add_me: WhoMayAddMe,
}

impl Settings {
    /// The settings `chosen`, the server's `defaults` where there is no choice.
    pub fn of(chosen: Privacy, defaults: &SocialConfig) -> Self {
        Self {
            who_may_message: chosen.who_may_message.unwrap_or(defaults.who_may_message),
            phone_visibility: chosen.phone_visibility.unwrap_or(defaults.phone_visibility),
            invisible: chosen.invisible.unwrap_or(defaults.invisible),
            who_may_add_me: chosen.who_may_add_me.unwrap_or(defaults.who_may_add_me),
        }
    }
}

pub struct Social {
    store: Arc<dyn SocialStore>,
    /// Recent answers of [`send_verdict`](Self::send_verdict), asked on
    /// every one-to-one send.
    answers: Answers,
    /// Recent [`view_filters`](Self::view_filters), asked on every pull of
    /// a group and every conversation list.
    views: Views,
    bus: SharedBus,
    clock: SharedClock,
    config: SocialConfig,
}

impl Social {
    pub fn new(
        store: Arc<dyn SocialStore>,
        bus: SharedBus,
        clock: SharedClock,
        config: SocialConfig,
    ) -> Self {
        Self {
            store,
            answers: Answers::default(),
            views: Views::default(),
            bus,
            clock,
            config,
        }
    }

    /// `from` asks `to` to be friends. Answers `Requested`, or `Friends`
    /// when `to` had asked first; a request to someone who blocks `from`
    /// answers `Requested` too and reaches nobody.
    pub async fn request(
        &self,
        from: UserId,
        to: UserId,
        greeting: &str,
    ) -> Result<Befriended, SocialError> {
        policy::check_greeting(greeting)?;
        let request = FriendRequest {
            from,
            to,
            greeting: greeting.to_string(),
            sent_ms: self.clock.now_ms(),
        };
        self.forget(&[from, to]);
        let outcome = self.store.send_request(request, self.config.limits()).await;
        self.forget(&[from, to]);
        let outcome = outcome?;
        Ok(match outcome {
            Befriended::Dropped => Befriended::Requested,
            Befriended::Requested => {
                self.tell(to, Kind::Requested, from, greeting, 0);
                outcome
            }
            Befriended::Friends {
                requester_version,
                accepter_version,
            } => {
                self.tell(to, Kind::Accepted, from, "", requester_version);
                self.tell(from, Kind::Accepted, to, "", accepter_version);
                outcome
            }
        })
    }

    /// `owner` accepts `from`'s request; answers `owner`'s contact-list version.
    pub async fn accept(&self, owner: UserId, from: UserId) -> Result<u64, SocialError> {
        let now = self.clock.now_ms();
        self.forget(&[owner, from]);
        let accepted = self
            .store
            .accept(owner, from, now, self.config.limits())
            .await;
        self.forget(&[owner, from]);
        match accepted? {
            Befriended::Friends {
                requester_version,
                accepter_version,
            } => {
                self.tell(from, Kind::Accepted, owner, "", requester_version);
                self.tell(owner, Kind::Accepted, from, "", accepter_version);
                Ok(accepter_version)
            }
            // A store answers an acceptance with friends or a refusal.
            Befriended::Requested | Befriended::Dropped => Err(SocialError::UnknownRequest),
        }
    }

    /// `owner` declines `from`'s request; `from` is not told.
    pub async fn decline(&self, owner: UserId, from: UserId) -> Result<(), SocialError> {
        self.store.decline(owner, from, self.clock.now_ms()).await
    }

    /// Requests waiting for `owner`, newest first.
    pub async fn requests(&self, owner: UserId) -> Result<Vec<FriendRequest>, SocialError> {
        self.store.requests(owner, self.clock.now_ms()).await
    }

    /// Ends a friendship on both sides; both lists change.
    pub async fn remove(&self, owner: UserId, friend: UserId) -> Result<u64, SocialError> {
        self.forget(&[owner, friend]);
        let removed = self.store.remove_friend(owner, friend).await;
        self.forget(&[owner, friend]);
        let (mine, theirs) = removed?;
        self.tell(owner, Kind::Changed, friend, "", mine);
        self.tell(friend, Kind::Changed, UserId(0), "", theirs);
        Ok(mine)
    }

    /// Sets `owner`'s remark, tags and hidden mark of a friend (None
    /// leaves a part as it is). Hiding keeps the friend out of the contact
    /// list and the conversation list on every device of the owner.
    pub async fn set_contact(
        &self,
        owner: UserId,
        friend: UserId,
        edit: ContactEdit,
    ) -> Result<u64, SocialError> {
        if let Some(remark) = &edit.remark {
            policy::check_remark(remark)?;
        }
        if let Some(tags) = &edit.tags {
            policy::check_tags(tags)?;
        }
        let hiding = edit.hidden.is_some();
        if hiding {
            self.forget(&[owner, friend]);
        }
        let version = self.store.set_contact(owner, friend, edit).await;
        if hiding {
            self.forget(&[owner, friend]);
        }
        let version = version?;
        self.tell(owner, Kind::Changed, friend, "", version);
        Ok(version)
    }

    /// `owner`'s contacts that `query` finds: visible friends by the start
    /// of their remark or display name, hidden ones only by their exact
    /// remark, display name or user id ([`policy::contact_matches`]).
    pub async fn search(
        &self,
        owner: UserId,
        query: &str,
    ) -> Result<Vec<FoundContact>, SocialError> {
        let query = policy::contact_query(query)?;
        self.store.search_contacts(owner, query).await
    }

    /// The changes to `owner`'s contact list after version `since` (from 0:
    /// the whole list), at most `limit` (0 means 500; at most 1,000).
    pub async fn contacts(
        &self,
        owner: UserId,
        since: u64,
        limit: u32,
    ) -> Result<ContactChanges, SocialError> {
        let limit = match limit {
            0 => DEFAULT_CONTACTS_PAGE,
            n => n.min(MAX_CONTACTS_PAGE),
        };
        self.store.contact_changes(owner, since, limit).await
    }

    /// `owner` blocks `other`, who is not told. The gateways holding
    /// `owner`'s sessions stop delivering `other`'s group messages to them.
    pub async fn block(&self, owner: UserId, other: UserId) -> Result<(), SocialError> {
        self.forget(&[owner, other]);
        let blocked = self.store.block(owner, other, self.clock.now_ms()).await;
        self.forget(&[owner, other]);
        blocked?;
        self.notice_blocking(owner, other, true);
        Ok(())
    }

    /// `owner` no longer blocks `other`; what `other` sent meanwhile stays
    /// out of `owner`'s view.
    pub async fn unblock(&self, owner: UserId, other: UserId) -> Result<(), SocialError> {
        self.forget(&[owner, other]);
        let unblocked = self.store.unblock(owner, other, self.clock.now_ms()).await;
        self.forget(&[owner, other]);
        unblocked?;
        self.notice_blocking(owner, other, false);
        Ok(())
    }

    /// What `owner`'s view of chats leaves out: blocks with their times,
    /// and the friends they hide.
    pub async fn view_filters(&self, owner: UserId) -> Result<Arc<ViewFilters>, SocialError> {
        if let Some(filters) = self.views.get(owner) {
            return Ok(filters);
        }
        let mark = self.views.mark();
        let filters = self.store.view_filters(owner).await?;
        Ok(self.views.remember(mark, owner, filters))
    }

    pub async fn blocked(&self, owner: UserId) -> Result<Vec<UserId>, SocialError> {
        self.store.blocked(owner).await
    }

    /// `user`'s settings, the server's defaults where they have not chosen.
    pub async fn settings(&self, user: UserId) -> Result<Settings, SocialError> {
        let chosen = self.store.privacy(user).await?;
        Ok(self.effective(chosen))
    }

    /// Changes the settings given (None leaves one as it is); answers all of them.
    pub async fn set_settings(
        &self,
        user: UserId,
        who_may_message: Option<WhoMayMessage>,
        phone_visibility: Option<PhoneVisibility>,
        invisible: Option<Invisible>,
        who_may_add_me: Option<WhoMayAddMe>,
    ) -> Result<Settings, SocialError> {
        let mut chosen = self.store.privacy(user).await?;
        if who_may_message.is_some() {
            chosen.who_may_message = who_may_message;
        }
        if phone_visibility.is_some() {
            chosen.phone_visibility = phone_visibility;
        }
        if invisible.is_some() {
            chosen.invisible = invisible;
        }
        if who_may_add_me.is_some() {
            chosen.who_may_add_me = who_may_add_me;
        }
        self.forget(&[user]);
        let set = self.store.set_privacy(user, chosen).await;
        self.forget(&[user]);
        set?;
        Ok(self.effective(chosen))
    }

    /// What becomes of a one-to-one message from `sender` to `recipient`
    /// ([`policy::send_verdict`]).
    pub async fn send_verdict(
        &self,
        sender: UserId,
        recipient: UserId,
    ) -> Result<SendVerdict, SocialError> {
        if let Some(answer) = self.answers.get(sender, recipient) {
            return Ok(answer);
        }
        let mark = self.answers.mark();
        let (relation, chosen) = self.store.message_facts(recipient, sender).await?;
        let settings = self.effective(chosen);
        let answer = policy::send_verdict(relation, settings.who_may_message);
        self.answers.remember(mark, sender, recipient, answer);
        Ok(answer)
    }

    /// Whether `viewer` sees `user`'s presence and last seen
    /// ([`policy::may_see_presence`]): not if `user` blocks `viewer` or is
    /// invisible to them.
    pub async fn may_see_presence(
        &self,
        viewer: UserId,
        user: UserId,
    ) -> Result<bool, SocialError> {
        if viewer == user {
            return Ok(true);
        }
        let (relation, chosen) = self.store.message_facts(user, viewer).await?;
        Ok(policy::may_see_presence(
            relation,
            self.effective(chosen).invisible,
        ))
    }

    /// How `inviter` may bring each of `invitees` into a group
    /// ([`policy::group_addition`]), in their order, from one store read for
    /// all of them. The inviter themself is added directly.
    pub async fn group_additions(
        &self,
        inviter: UserId,
        invitees: &[UserId],
    ) -> Result<Vec<GroupAdd>, SocialError> {
        let facts = (self.store)
            .addition_facts(inviter, invitees.to_vec())
            .await?;
        let decided = invitees
            .iter()
            .zip(facts)
            .map(|(&invitee, (relation, chosen))| {
                if invitee == inviter {
                    return GroupAdd::Direct;
                }
                policy::group_addition(relation, self.effective(chosen).who_may_add_me)
            });
        Ok(decided.collect())
    }

    /// An account was erased ([`crate::service::Erasure`]): each former
    /// friend's list lost it under the version given, and they are told,
    /// as for a removal.
    pub fn erased(&self, friends: &[(UserId, u64)]) {
        let users: Vec<UserId> = friends.iter().map(|(friend, _)| *friend).collect();
        self.forget(&users);
        for &(friend, version) in friends {
            self.tell(friend, Kind::Changed, UserId(0), "", version);
        }
    }

    /// Forgets what is remembered about `users`: a write about them begins
    /// or has ended.
    fn forget(&self, users: &[UserId]) {
        self.answers.forget(users);
        self.views.forget(users);
    }

    /// Tells the gateways holding `owner`'s sessions that `owner` blocks
    /// `other` now (or no longer), so group messages are filtered live.
    /// Published after the write: a message sent after it reaches a gateway
    /// after the notice (one publisher, one subscriber, in order).
    fn notice_blocking(&self, owner: UserId, other: UserId, blocked: bool) {
        let envelope = BusEnvelope {
            target: 0,
            kind: Some(bus_envelope::Kind::Blocking(Blocking {
                user_id: other.0,
                blocked,
            })),
            origin: 0,
        };
        self.bus.publish(
            &Topic::User(owner).to_string(),
            Bytes::from(envelope.encode_to_vec()),
        );
    }

    fn effective(&self, chosen: Privacy) -> Settings {
        Settings::of(chosen, &self.config)
    }

    /// Tells `user`'s devices of a change to their social graph.
    fn tell(&self, user: UserId, kind: Kind, other: UserId, greeting: &str, version: u64) {
        let event = ContactEvent {
            kind: kind as i32,
            user_id: other.0,
            greeting: greeting.to_string(),
            version,
        };
        let envelope = BusEnvelope {
            target: 0,
            kind: Some(bus_envelope::Kind::Event(Event {
                kind: Some(event::Kind::Contact(event)),
            })),
            origin: 0,
        };
        self.bus.publish(
            &Topic::User(user).to_string(),
            Bytes::from(envelope.encode_to_vec()),
        );
    }
}
