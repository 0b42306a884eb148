//! Group operations of [`Chat`]: lifecycle, roles, moderation, invitations.
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

use rand::Rng as _;
use superapp_proto::Topic;
use superapp_proto::v1::group_event::Kind;
use superapp_proto::v1::{Event, GroupEvent, Membership, bus_envelope, event};

use super::Chat;
use crate::ChatError;
use crate::model::{
    GroupId, GroupInfo, GroupUpdate, JoinRequest, Joined, MemberInfo, NewGroup, Removal, UserId,
};
use crate::policy::{self, MAX_MEMBERS};

/// An invitation link lives this long, as people know from QR codes.
const INVITE_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
const DEFAULT_MEMBERS_PAGE: u32 = 100;
const MAX_MEMBERS_PAGE: u32 = 500;

/// A member as listed: their membership and their display name.
#[derive(Debug, Clone)]
pub struct ListedMember {
    pub member: MemberInfo,
    pub display_name: String,
}

impl Chat {
    pub async fn create_group(
        &self,
        owner: UserId,
        name: &str,
        avatar: &str,
        members: Vec<UserId>,
    ) -> Result<GroupInfo, ChatError> {
        policy::check_group_name(name)?;
        policy::check_avatar(avatar)?;
        policy::room_for(1, members.len())?;
        self.require_users(&members).await?;
        self.may_add_directly(owner, &members).await?;
        let group = self
            .store
            .create_group(NewGroup {
                group: GroupId(self.ids.next()),
                name: name.trim().to_string(),
                avatar: avatar.to_string(),
                owner,
                members: members.clone(),
                now_ms: self.clock.now_ms(),
            })
            .await?;
        let event = group_event(group.group, Kind::Created, owner, &members, "", 0);
        for user in self.member_ids(group.group).await? {
            self.publish_membership(user, group.group, true, event.clone());
        }
        Ok(group)
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
        self.group(group, viewer).await?;
        let limit = match limit {
            0 => DEFAULT_MEMBERS_PAGE,
            n => n.min(MAX_MEMBERS_PAGE),
        };
        let query = query.trim().to_lowercase();
        // A search reads the whole group (at most 6000 rows) and filters; a
        // plain page reads one page.
        let scan = if query.is_empty() { limit } else { MAX_MEMBERS };
        let page = self.store.members_page(group, after, scan).await?;
        let names = self
            .directory
            .display_names(page.iter().map(|m| m.user).collect())
            .await
            .map_err(ChatError::Dependency)?;
        let mut listed: Vec<ListedMember> = page
            .into_iter()
            .map(|member| {
                let display_name = names
                    .iter()
                    .find(|(id, _)| *id == member.user)
                    .map(|(_, n)| n.clone())
                    .unwrap_or_default();
                ListedMember {
                    member,
                    display_name,
                }
            })
            .filter(|m| {
                query.is_empty()
                    || m.member.nickname.to_lowercase().contains(&query)
                    || m.display_name.to_lowercase().contains(&query)
            })
            .collect();
        let more =
            listed.len() > limit as usize || (query.is_empty() && listed.len() == limit as usize);
        listed.truncate(limit as usize);
        let next = listed.last().filter(|_| more).map(|last| last.member.user);
        Ok((listed, next))
    }

    /// The groups a user is in (gateways deliver these groups' topics to them).
    pub async fn groups_of(&self, user: UserId) -> Result<Vec<GroupId>, ChatError> {
        self.store.groups_of(user).await
    }

    /// `actor` invites `users` into the group.
    pub async fn invite(
        &self,
        group: GroupId,
        actor: UserId,
        users: Vec<UserId>,
    ) -> Result<Joined, ChatError> {
        policy::check_invitees(users.len())?;
        self.require_users(&users).await?;
        self.may_add_directly(actor, &users).await?;
        let joined = self
            .store
            .invite(group, actor, users, self.clock.now_ms())
            .await?;
        self.announce_joined(group, actor, &joined);
        Ok(joined)
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
                pending: Vec::new(),
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

    pub async fn set_role(
        &self,
        group: GroupId,
        actor: UserId,
        user: UserId,
        admin: bool,
    ) -> Result<(), ChatError> {
        self.store.set_role(group, actor, user, admin).await?;
        let event = group_event(
            group,
            Kind::RoleChanged,
            actor,
            &[user],
            "",
            i64::from(admin),
        );
        self.publish_group(group, event);
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

    /// Mutes a member for `secs` from now; 0 unmutes.
    pub async fn mute_member(
        &self,
        group: GroupId,
        actor: UserId,
        user: UserId,
        secs: u32,
    ) -> Result<(), ChatError> {
        let until_ms = match secs {
            0 => 0,
            s => self.clock.now_ms().saturating_add(i64::from(s) * 1000),
        };
        self.store.mute_member(group, actor, user, until_ms).await?;
        let event = group_event(group, Kind::MemberMuted, actor, &[user], "", until_ms);
        self.publish_group(group, event);
        Ok(())
    }

    pub async fn set_nickname(
        &self,
        group: GroupId,
        user: UserId,
        nickname: &str,
    ) -> Result<(), ChatError> {
        policy::check_nickname(nickname)?;
        self.store
            .set_nickname(group, user, nickname.to_string())
            .await?;
        let event = group_event(group, Kind::Updated, user, &[user], nickname, 0);
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

    async fn require_users(&self, users: &[UserId]) -> Result<(), ChatError> {
        for &user in users {
            let exists = self
                .directory
                .user_exists(user)
                .await
                .map_err(ChatError::Dependency)?;
            if !exists {
                return Err(ChatError::UnknownRecipient);
            }
        }
        Ok(())
    }

    /// Asks the [`Directory`](crate::Directory)'s consent hook whether
    /// `inviter` may add these people without asking them.
    async fn may_add_directly(&self, inviter: UserId, users: &[UserId]) -> Result<(), ChatError> {
        let others: Vec<UserId> = users.iter().copied().filter(|u| *u != inviter).collect();
        if others.is_empty() {
            return Ok(());
        }
        let allowed = self
            .directory
            .may_add_directly(inviter, &others)
            .await
            .map_err(ChatError::Dependency)?;
        if allowed {
            Ok(())
        } else {
            Err(ChatError::NotAllowed)
        }
    }

    async fn member_ids(&self, group: GroupId) -> Result<Vec<UserId>, ChatError> {
        let page = self.store.members_page(group, None, MAX_MEMBERS).await?;
        Ok(page.into_iter().map(|m| m.user).collect())
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
