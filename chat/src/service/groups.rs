//! Group operations of [`Chat`]: lifecycle, roles, moderation, invitations.
//!
//! Three ways lead into a group: a member adds someone (directly, or, when
//! the social graph says the person must be asked, by a pending invitation
//! they accept or decline), someone comes by an invitation link, and in a
//! group that asks for approval an admin approves those a plain member
//! brought or the link brought.
//!
//! Who may do what is decided by [`crate::policy`], which the store applies
//! inside the transaction that acts; this layer validates input, names ids
//! and tokens, and tells people what changed. A change is one publish on the
//! group's topic (every member online, on any gateway), plus a [`Membership`]
//! notice on the topic of each user who joined or left, so their gateways
//! start or stop delivering the group to them. For a join the group event
//! goes first and the notice second; for a departure the notice goes first:
//! either way nobody gets the event twice, and a departed member's gateway
//! has stopped delivering the group before anything later is published to it.

use std::collections::HashSet;

use rand::Rng as _;
use superapp_proto::Topic;
use superapp_proto::v1::group_event::Kind;
use superapp_proto::v1::{
    Event, GroupEvent, GroupInvitation as InvitationEvent, Membership, bus_envelope, event,
};

use super::Chat;
use crate::ChatError;
use crate::model::{
    Addition, Asked, GroupId, GroupInfo, GroupInvitation, GroupUpdate, JoinRequest, Joined,
    ListedMember, MemberChange, MemberInfo, NewGroup, Removal, UserId,
};
use crate::policy::{self, MAX_MEMBERS};

/// An invitation link lives this long, as people know from QR codes.
const INVITE_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
const DEFAULT_MEMBERS_PAGE: u32 = 100;
const MAX_MEMBERS_PAGE: u32 = 500;

/// Whom an addition names (the inviter and repeats left out), sorted by how
/// the social graph lets the inviter bring them in.
#[derive(Debug, Default)]
struct Sorted {
    direct: Vec<UserId>,
    asked: Vec<UserId>,
    hidden: Vec<UserId>,
}

impl Sorted {
    fn asked(&self, expires_ms: i64) -> Asked {
        Asked {
            users: self.asked.clone(),
            hidden: self.hidden.clone(),
            expires_ms,
        }
    }
}

impl Chat {
    /// Creates a group owned by `owner`, adding those of `members` the
    /// social graph lets the owner add and inviting the others. Answers the
    /// group and who was added and invited.
    pub async fn create_group(
        &self,
        owner: UserId,
        name: &str,
        avatar: &str,
        members: Vec<UserId>,
    ) -> Result<(GroupInfo, Joined), ChatError> {
        policy::check_group_name(name)?;
        policy::check_avatar(avatar)?;
        policy::room_for(1, members.len())?;
        let mut people = members.clone();
        people.push(owner);
        let names = self.names_of_all(&people).await?;
        let sorted = self.sort_invitees(owner, &members).await?;
        let owner_name = name_in(&names, owner);
        self.store.remember_names(names).await?;
        let now_ms = self.clock.now_ms();
        let expires_ms = now_ms.saturating_add(self.invitation_ttl_ms);
        let group = self
            .store
            .create_group(NewGroup {
                group: GroupId(self.ids.next()),
                name: name.trim().to_string(),
                avatar: avatar.to_string(),
                owner,
                members: sorted.direct.clone(),
                asked: sorted.asked(expires_ms),
                now_ms,
            })
            .await?;
        let event = group_event(group.group, Kind::Created, owner, &sorted.direct, "", 0);
        for user in self.member_ids(group.group).await? {
            self.publish_membership(user, group.group, true, event.clone());
        }
        let invitation = InvitationEvent {
            group_id: group.group.0,
            group_name: group.name.clone(),
            inviter: owner.0,
            inviter_name: owner_name,
            invited_ms: now_ms,
            expires_ms,
        };
        self.tell_invited(&sorted.asked, &invitation);
        let mut invited: Vec<UserId> = sorted.asked.into_iter().chain(sorted.hidden).collect();
        // In user-id order, so the answer shows no difference between those
        // invited and those a block hides.
        invited.sort();
        let joined = Joined {
            added: sorted.direct,
            pending: Vec::new(),
            invited,
        };
        Ok((group, joined))
    }

    /// The group as its member `viewer` sees it, with the viewer's membership.
    pub async fn group(
        &self,
        group: GroupId,
        viewer: UserId,
    ) -> Result<(GroupInfo, MemberInfo), ChatError> {
        let info = self
            .store
            .group(group)
            .await?
            .ok_or(ChatError::UnknownGroup)?;
        let me = self
            .store
            .member(group, viewer)
            .await?
            .ok_or(ChatError::NotMember)?;
        Ok((info, me))
    }

    /// Members in user-id order after `after`; with `query`, only those
    /// whose group nickname or display name contains it (case-insensitive).
    /// Answers the page and the cursor of the next (None when this is the last).
    pub async fn members(
        &self,
        group: GroupId,
        viewer: UserId,
        after: Option<UserId>,
        limit: u32,
        query: &str,
    ) -> Result<(Vec<ListedMember>, Option<UserId>), ChatError> {
        let query = policy::member_query(query)?;
        self.group(group, viewer).await?;
        let limit = match limit {
            0 => DEFAULT_MEMBERS_PAGE,
            n => n.min(MAX_MEMBERS_PAGE),
        };
        // One more than the page says whether another follows.
        let read = || {
            self.store
                .members_page(group, after, limit + 1, query.clone())
        };
        let mut page = read().await?;
        if page.iter().any(|(_, kept)| kept.is_none()) {
            // Members added before chat kept names: their names are copied
            // once, for the whole group, and the page read again.
            let unnamed = self.store.unnamed_members(group).await?;
            let names = self.names_of(&unnamed).await?;
            let known: HashSet<UserId> = names.iter().map(|(user, _)| *user).collect();
            // Someone the directory does not know is kept nameless, or they
            // would be looked up on every read.
            let nameless = unnamed.into_iter().filter(|u| !known.contains(u));
            let names = names
                .into_iter()
                .chain(nameless.map(|u| (u, String::new())));
            self.store.remember_names(names.collect()).await?;
            page = read().await?;
        }
        let more = page.len() > limit as usize;
        page.truncate(limit as usize);
        let next = page.last().filter(|_| more).map(|(member, _)| member.user);
        let listed = page
            .into_iter()
            .map(|(member, kept)| ListedMember {
                member,
                display_name: kept.unwrap_or_default(),
            })
            .collect();
        Ok((listed, next))
    }

    /// The groups a user is in (gateways deliver these groups' topics to them).
    pub async fn groups_of(&self, user: UserId) -> Result<Vec<GroupId>, ChatError> {
        self.store.groups_of(user).await
    }

    /// `actor` brings `users` into the group: those the social graph lets
    /// the actor add join (or wait for an admin's approval, as the group
    /// says); the others are sent invitations.
    pub async fn invite(
        &self,
        group: GroupId,
        actor: UserId,
        users: Vec<UserId>,
    ) -> Result<Joined, ChatError> {
        policy::check_invitees(users.len())?;
        let mut people = users.clone();
        people.push(actor);
        let names = self.names_of_all(&people).await?;
        let sorted = self.sort_invitees(actor, &users).await?;
        let actor_name = name_in(&names, actor);
        self.store.remember_names(names).await?;
        let now_ms = self.clock.now_ms();
        let expires_ms = now_ms.saturating_add(self.invitation_ttl_ms);
        let asked = sorted.asked(expires_ms);
        let joined = (self.store)
            .invite(group, actor, sorted.direct, asked, now_ms)
            .await?;
        self.announce_joined(group, actor, &joined);
        // Those a block hides are answered as invited and told nothing.
        let hidden: HashSet<UserId> = sorted.hidden.into_iter().collect();
        let sent: Vec<UserId> = (joined.invited.iter())
            .filter(|u| !hidden.contains(u))
            .copied()
            .collect();
        if !sent.is_empty()
            && let Some(info) = self.store.group(group).await?
        {
            let invitation = InvitationEvent {
                group_id: group.0,
                group_name: info.name,
                inviter: actor.0,
                inviter_name: actor_name,
                invited_ms: now_ms,
                expires_ms,
            };
            self.tell_invited(&sent, &invitation);
        }
        Ok(joined)
    }

    /// `user`'s pending group invitations, newest first.
    pub async fn invitations(&self, user: UserId) -> Result<Vec<GroupInvitation>, ChatError> {
        self.store.invitations(user, self.clock.now_ms()).await
    }

    /// `user` accepts their invitation into `group`: a member now, or
    /// waiting for an admin's approval. The group hears of the join as of
    /// any other, with the inviter as its actor.
    pub async fn accept_invitation(
        &self,
        user: UserId,
        group: GroupId,
    ) -> Result<Joined, ChatError> {
        let (inviter, joined) = self
            .store
            .accept_invitation(group, user, self.clock.now_ms())
            .await?;
        self.announce_joined(group, inviter, &joined);
        Ok(joined)
    }

    /// `user` declines their invitation into `group`; nobody is told.
    pub async fn decline_invitation(&self, user: UserId, group: GroupId) -> Result<(), ChatError> {
        (self.store)
            .decline_invitation(group, user, self.clock.now_ms())
            .await
    }

    /// An invitation link's token, replacing any earlier one of the group.
    pub async fn create_invite(
        &self,
        group: GroupId,
        actor: UserId,
    ) -> Result<(String, i64), ChatError> {
        let bytes: [u8; 18] = rand::rng().random();
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let expires = self.clock.now_ms() + INVITE_TTL_MS;
        self.store
            .set_invite_token(group, actor, token.clone(), expires)
            .await?;
        Ok((token, expires))
    }

    /// Joins with an invitation token: a member now, or waiting for approval.
    pub async fn join(&self, user: UserId, token: &str) -> Result<(GroupId, Joined), ChatError> {
        if token.is_empty() || token.len() > 64 {
            return Err(ChatError::InvalidInvite);
        }
        let names = self.names_of_all(&[user]).await?;
        self.store.remember_names(names).await?;
        let (group, joined) = self
            .store
            .join_by_token(token.to_string(), user, self.clock.now_ms())
            .await?;
        self.announce_joined(group, user, &joined);
        Ok((group, joined))
    }

    pub async fn join_requests(
        &self,
        group: GroupId,
        actor: UserId,
    ) -> Result<Vec<JoinRequest>, ChatError> {
        self.store.requests(group, actor).await
    }

    /// An admin approves or rejects a pending join; answers whether it joined.
    pub async fn decide_request(
        &self,
        group: GroupId,
        actor: UserId,
        user: UserId,
        approve: bool,
    ) -> Result<bool, ChatError> {
        let joined = self
            .store
            .decide_request(group, actor, user, approve, self.clock.now_ms())
            .await?;
        if joined {
            let joined = Joined {
                added: vec![user],
                ..Joined::default()
            };
            self.announce_joined(group, actor, &joined);
        }
        Ok(joined)
    }

    /// Removes a member, or (with `user == actor`) leaves.
    pub async fn remove_member(
        &self,
        group: GroupId,
        actor: UserId,
        user: UserId,
    ) -> Result<Removal, ChatError> {
        let removal = self.store.remove_member(group, actor, user).await?;
        let kind = match removal {
            Removal::Left => Kind::MemberLeft,
            Removal::Removed => Kind::MemberRemoved,
        };
        let event = group_event(group, kind, actor, &[user], "", 0);
        self.publish_membership(user, group, false, event.clone());
        self.publish_group(group, event);
        Ok(removal)
    }

    /// Changes a member's role (`admin`, by the owner), mutes them for
    /// `mute_secs` (0 unmutes) and sets a nickname (one's own), all in one
    /// write or none of it; each change is then told to the group.
    pub async fn update_member(
        &self,
        group: GroupId,
        actor: UserId,
        user: UserId,
        admin: Option<bool>,
        mute_secs: Option<u32>,
        nickname: Option<String>,
    ) -> Result<(), ChatError> {
        let muted_until_ms = mute_secs.map(|secs| match secs {
            0 => 0,
            s => self.clock.now_ms().saturating_add(i64::from(s) * 1000),
        });
        let change = MemberChange {
            admin,
            muted_until_ms,
            nickname,
        };
        let changed = self
            .store
            .update_member(group, actor, user, change.clone())
            .await?;
        if let Some(admin) = change.admin {
            let kind = Kind::RoleChanged;
            let event = group_event(group, kind, actor, &[user], "", i64::from(admin));
            self.publish_group(group, event);
        }
        if change.muted_until_ms.is_some() {
            let until_ms = changed.muted_until_ms;
            let event = group_event(group, Kind::MemberMuted, actor, &[user], "", until_ms);
            self.publish_group(group, event);
        }
        if change.nickname.is_some() {
            let event = group_event(group, Kind::Updated, user, &[user], &changed.nickname, 0);
            self.publish_group(group, event);
        }
        Ok(())
    }

    pub async fn transfer_owner(
        &self,
        group: GroupId,
        actor: UserId,
        user: UserId,
    ) -> Result<(), ChatError> {
        self.store.transfer_owner(group, actor, user).await?;
        let event = group_event(group, Kind::OwnerTransferred, actor, &[user], "", 0);
        self.publish_group(group, event);
        Ok(())
    }

    /// Admins change the name, avatar, announcement, mute-all, slow mode or
    /// whether joins need approval.
    pub async fn update_group(
        &self,
        group: GroupId,
        actor: UserId,
        mut update: GroupUpdate,
    ) -> Result<GroupInfo, ChatError> {
        if let Some(name) = &mut update.name {
            policy::check_group_name(name)?;
            *name = name.trim().to_string();
        }
        if let Some(avatar) = &update.avatar {
            policy::check_avatar(avatar)?;
        }
        if let Some(text) = &update.announcement {
            policy::check_announcement(text)?;
        }
        if let Some(secs) = update.slow_mode_secs {
            policy::check_slow_mode(secs)?;
        }
        let info = self
            .store
            .update_group(group, actor, update.clone())
            .await?;
        // An announcement is its own event, as members see it as one.
        if let Some(text) = &update.announcement {
            let event = group_event(group, Kind::Announcement, actor, &[], text, 0);
            self.publish_group(group, event);
        }
        let settings_changed = update.name.is_some()
            || update.avatar.is_some()
            || update.mute_all.is_some()
            || update.slow_mode_secs.is_some()
            || update.join_approval.is_some();
        if settings_changed {
            let text = update.name.as_deref().unwrap_or_default();
            let event = group_event(group, Kind::Updated, actor, &[], text, 0);
            self.publish_group(group, event);
        }
        Ok(info)
    }

    /// The owner dissolves the group: nobody is a member any more.
    pub async fn dissolve(&self, group: GroupId, actor: UserId) -> Result<(), ChatError> {
        let members = self.store.dissolve(group, actor).await?;
        let event = group_event(group, Kind::Dissolved, actor, &[], "", 0);
        for user in members {
            self.publish_membership(user, group, false, event.clone());
        }
        Ok(())
    }

    /// Takes a user whose account is erased out of every group they are in
    /// (the account room asks, through its `Departures` port, before it
    /// erases them). A group they own goes to its next owner
    /// ([`policy::successor`]), told as a transfer; one they were alone in
    /// is dissolved. Each group is told the user left. Their messages stay.
    /// Again for a user in no group, it does nothing.
    pub async fn depart(&self, user: UserId) -> Result<(), ChatError> {
        for departure in self.store.depart(user).await? {
            let group = departure.group;
            if departure.dissolved {
                continue;
            }
            if let Some(next) = departure.new_owner {
                let event = group_event(group, Kind::OwnerTransferred, user, &[next], "", 0);
                self.publish_group(group, event);
            }
            let event = group_event(group, Kind::MemberLeft, user, &[user], "", 0);
            self.publish_membership(user, group, false, event.clone());
            self.publish_group(group, event);
        }
        Ok(())
    }

    /// The display names of those of `users` the directory knows.
    async fn names_of(&self, users: &[UserId]) -> Result<Vec<(UserId, String)>, ChatError> {
        self.directory
            .display_names(users.to_vec())
            .await
            .map_err(ChatError::Dependency)
    }

    /// The display names of `users`, to be kept before they are added (or
    /// asked) to a group; refused when one does not exist (`user_deleted`
    /// when one's account is deleted or being deleted).
    async fn names_of_all(&self, users: &[UserId]) -> Result<Vec<(UserId, String)>, ChatError> {
        let names = self.names_of(users).await?;
        let known: HashSet<UserId> = names.iter().map(|(user, _)| *user).collect();
        let missing: Vec<UserId> = (users.iter().copied())
            .filter(|user| !known.contains(user))
            .collect();
        if missing.is_empty() {
            return Ok(names);
        }
        for user in missing {
            let deleted = self.directory.is_deleted(user).await;
            if deleted.map_err(ChatError::Dependency)? {
                return Err(ChatError::UserDeleted);
            }
        }
        Err(ChatError::UnknownRecipient)
    }

    /// Sorts `users` (the inviter and repeats left out) by how the
    /// [`Directory`](crate::Directory) says `inviter` may bring each into a
    /// group, asked for all of them in one call.
    async fn sort_invitees(&self, inviter: UserId, users: &[UserId]) -> Result<Sorted, ChatError> {
        let mut seen = HashSet::new();
        let others: Vec<UserId> = (users.iter().copied())
            .filter(|&u| u != inviter && seen.insert(u))
            .collect();
        let mut sorted = Sorted::default();
        if others.is_empty() {
            return Ok(sorted);
        }
        let additions = self
            .directory
            .group_additions(inviter, &others)
            .await
            .map_err(ChatError::Dependency)?;
        if additions.len() != others.len() {
            return Err(ChatError::Dependency(format!(
                "the directory answered {} additions for {} invitees",
                additions.len(),
                others.len()
            )));
        }
        for (user, addition) in others.into_iter().zip(additions) {
            match addition {
                Addition::Direct => sorted.direct.push(user),
                Addition::Invite => sorted.asked.push(user),
                Addition::Drop => sorted.hidden.push(user),
            }
        }
        Ok(sorted)
    }

    /// Tells each of `users` of their invitation, on their own topic (they
    /// hear nothing of the group's).
    fn tell_invited(&self, users: &[UserId], invitation: &InvitationEvent) {
        for &user in users {
            let event = Event {
                kind: Some(event::Kind::GroupInvitation(invitation.clone())),
            };
            self.publish(Topic::User(user), bus_envelope::Kind::Event(event), 0);
        }
    }

    async fn member_ids(&self, group: GroupId) -> Result<Vec<UserId>, ChatError> {
        let page = (self.store).members_page(group, None, MAX_MEMBERS, String::new());
        Ok(page.await?.into_iter().map(|(m, _)| m.user).collect())
    }

    /// Joins are told to the group first, then to each newcomer (who is not
    /// yet delivered the group's topic), so nobody hears it twice.
    fn announce_joined(&self, group: GroupId, actor: UserId, joined: &Joined) {
        if !joined.added.is_empty() {
            let event = group_event(group, Kind::MembersAdded, actor, &joined.added, "", 0);
            self.publish_group(group, event.clone());
            for &user in &joined.added {
                self.publish_membership(user, group, true, event.clone());
            }
        }
        if !joined.pending.is_empty() {
            let event = group_event(group, Kind::JoinRequested, actor, &joined.pending, "", 0);
            self.publish_group(group, event);
        }
    }

    fn publish_group(&self, group: GroupId, event: Event) {
        self.publish(Topic::Group(group), bus_envelope::Kind::Event(event), 0);
    }

    fn publish_membership(&self, user: UserId, group: GroupId, joined: bool, event: Event) {
        let membership = Membership {
            group_id: group.0,
            joined,
            event: Some(event),
        };
        self.publish(
            Topic::User(user),
            bus_envelope::Kind::Membership(membership),
            0,
        );
    }
}

/// `user`'s display name among `names` (empty if it is not there).
fn name_in(names: &[(UserId, String)], user: UserId) -> String {
    (names.iter())
        .find(|(u, _)| *u == user)
        .map(|(_, name)| name.clone())
        .unwrap_or_default()
}

fn group_event(
    group: GroupId,
    kind: Kind,
    actor: UserId,
    users: &[UserId],
    text: &str,
    value: i64,
) -> Event {
    Event {
        kind: Some(event::Kind::Group(GroupEvent {
            group_id: group.0,
            kind: kind as i32,
            actor: actor.0,
            users: users.iter().map(|u| u.0).collect(),
            text: text.to_string(),
            value,
        })),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use superapp_kit::BoxFuture;
    use superapp_kit::bus::InProcessBus;
    use superapp_kit::clock::ManualClock;
    use superapp_kit::ids::IdGen;
    use superapp_kit::metrics::Registry;

    use super::*;
    use crate::store::GroupStore as _;
    use crate::{Directory, SqliteChatStore};

    /// The account room as chat sees it: these users and their names.
    struct Names(HashMap<UserId, String>);

    impl Directory for Names {
        fn user_exists(&self, user: UserId) -> BoxFuture<'_, Result<bool, String>> {
            Box::pin(async move { Ok(self.0.contains_key(&user)) })
        }

        fn send_verdict(
            &self,
            _: UserId,
            _: UserId,
        ) -> BoxFuture<'_, Result<crate::model::SendVerdict, String>> {
            Box::pin(async { Ok(crate::model::SendVerdict::DELIVERED) })
        }

        fn display_names(
            &self,
            users: Vec<UserId>,
        ) -> BoxFuture<'_, Result<Vec<(UserId, String)>, String>> {
            let known = users
                .into_iter()
                .filter_map(|u| self.0.get(&u).map(|name| (u, name.clone())))
                .collect();
            Box::pin(async move { Ok(known) })
        }
    }

    #[tokio::test]
    async fn members_added_before_names_were_kept_are_named_when_their_group_is_first_listed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteChatStore::open(&dir.path().join("chat.db"), None).unwrap());
        // Written straight to the store, as groups were before chat kept
        // names; user 4 is one the directory does not know.
        let people = vec![UserId(2), UserId(3), UserId(4)];
        let group = GroupId(9);
        let old = NewGroup {
            group,
            name: "old".into(),
            avatar: String::new(),
            owner: UserId(1),
            members: people,
            asked: crate::model::Asked::default(),
            now_ms: 1,
        };
        store.create_group(old).await.unwrap();
        let names =
            [(1, "Ann"), (2, "Bob"), (3, "Éve")].map(|(id, name)| (UserId(id), name.to_string()));
        let clock = Arc::new(ManualClock::new(1));
        let ids = Arc::new(IdGen::new(0, clock.clone()));
        let bus = Arc::new(InProcessBus::new());
        let directory = Arc::new(Names(names.into()));
        let chat = Chat::new(
            store.clone(),
            directory,
            bus,
            clock,
            ids,
            100,
            &Registry::new(),
        );

        let (found, next) = chat
            .members(group, UserId(1), None, 10, " ÉV ")
            .await
            .unwrap();
        let found: Vec<_> = found
            .iter()
            .map(|m| (m.member.user, m.display_name.as_str()))
            .collect();
        assert_eq!((found, next), (vec![(UserId(3), "Éve")], None));
        assert!(store.unnamed_members(group).await.unwrap().is_empty());
        let (all, _) = chat.members(group, UserId(1), None, 10, "").await.unwrap();
        let all: Vec<&str> = all.iter().map(|m| m.display_name.as_str()).collect();
        assert_eq!(all, ["Ann", "Bob", "Éve", ""]);
    }
}
