//! Group operations of [`Chat`]: lifecycle, roles, moderation, invitations.
//!
//! Every rule is checked by the store inside the transaction that acts (see
//! [`crate::group_store`]); this layer validates input, names ids and tokens,
//! and tells people what changed. A change is one publish on the group's topic
//! (every member online, on any gateway), plus a [`Membership`] notice on the
//! topic of each user who joined or left, so their gateways start or stop
//! delivering the group to them. For a join the group event goes first and the
//! notice second; for a departure the notice goes first: either way nobody gets
//! the event twice, and a departed member's gateway has stopped delivering the
//! group before anything later is published to it.

use bytes::Bytes;
use prost::Message as _;
use rand::Rng as _;
use superapp_kit::bus::{group_topic, user_topic};
use superapp_proto::v1::{BusEnvelope, Event, GroupEvent, Membership, bus_envelope, event};

use crate::ChatError;
use crate::group_store::{
    GroupInfo, GroupUpdate, Joined, MAX_MEMBERS, MemberInfo, NewGroup, Removal,
};
use crate::service::Chat;

use superapp_proto::v1::group_event::Kind;

const MAX_NAME_CHARS: usize = 64;
const MAX_ANNOUNCEMENT_CHARS: usize = 2_000;
const MAX_NICKNAME_CHARS: usize = 32;
const MAX_AVATAR_BYTES: usize = 512;
const MAX_SLOW_MODE_SECS: u32 = 3_600;
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

fn check_len(
    value: &str,
    min: usize,
    max: usize,
    code: &'static str,
    reason: &'static str,
) -> Result<(), ChatError> {
    let chars = value.chars().count();
    if chars < min || chars > max || value.chars().any(char::is_control) {
        return Err(ChatError::Invalid { code, reason });
    }
    Ok(())
}

/// A group nickname: at most 32 characters, no control characters.
pub fn check_nickname(nickname: &str) -> Result<(), ChatError> {
    check_len(
        nickname,
        0,
        MAX_NICKNAME_CHARS,
        "invalid_nickname",
        "a group nickname is at most 32 characters",
    )
}

fn check_name(name: &str) -> Result<(), ChatError> {
    check_len(
        name.trim(),
        1,
        MAX_NAME_CHARS,
        "invalid_group_name",
        "a group name is 1 to 64 characters",
    )
}

fn check_avatar(avatar: &str) -> Result<(), ChatError> {
    if avatar.len() > MAX_AVATAR_BYTES {
        return Err(ChatError::Invalid {
            code: "invalid_avatar",
            reason: "an avatar reference is at most 512 bytes",
        });
    }
    Ok(())
}

impl Chat {
    pub async fn create_group(
        &self,
        owner: u64,
        name: &str,
        avatar: &str,
        members: Vec<u64>,
    ) -> Result<GroupInfo, ChatError> {
        check_name(name)?;
        check_avatar(avatar)?;
        if members.len() >= MAX_MEMBERS as usize {
            return Err(ChatError::GroupFull { max: MAX_MEMBERS });
        }
        self.require_users(&members).await?;
        let group = self
            .store
            .create_group(NewGroup {
                group_id: self.ids.next(),
                name: name.trim().to_string(),
                avatar: avatar.to_string(),
                owner,
                members: members.clone(),
                now_ms: self.clock.now_ms(),
            })
            .await?;
        let event = group_event(group.group_id, Kind::Created, owner, members, "", 0);
        for user in self.member_ids(group.group_id).await? {
            self.publish_membership(user, group.group_id, true, event.clone());
        }
        Ok(group)
    }

    /// The group as its member `viewer` sees it, with the viewer's membership.
    pub async fn group(
        &self,
        viewer: u64,
        group_id: u64,
    ) -> Result<(GroupInfo, MemberInfo), ChatError> {
        let group = self
            .store
            .group(group_id)
            .await?
            .ok_or(ChatError::UnknownGroup)?;
        let me = self
            .store
            .member(group_id, viewer)
            .await?
            .ok_or(ChatError::NotMember)?;
        Ok((group, me))
    }

    /// Members in user-id order after `after_user`; with `query`, only those
    /// whose group nickname or display name contains it (case-insensitive).
    /// Answers the page and the cursor of the next (0 when this is the last).
    pub async fn members(
        &self,
        viewer: u64,
        group_id: u64,
        after_user: u64,
        limit: u32,
        query: &str,
    ) -> Result<(Vec<ListedMember>, u64), ChatError> {
        self.group(viewer, group_id).await?;
        let limit = match limit {
            0 => DEFAULT_MEMBERS_PAGE,
            n => n.min(MAX_MEMBERS_PAGE),
        };
        let query = query.trim().to_lowercase();
        // A search reads the whole group (at most 6000 rows) and filters; a
        // plain page reads one page.
        let scan = if query.is_empty() { limit } else { MAX_MEMBERS };
        let page = self.store.members_page(group_id, after_user, scan).await?;
        let names = self
            .directory
            .display_names(page.iter().map(|m| m.user_id).collect())
            .await
            .map_err(ChatError::Dependency)?;
        let mut listed: Vec<ListedMember> = page
            .into_iter()
            .map(|member| {
                let display_name = names
                    .iter()
                    .find(|(id, _)| *id == member.user_id)
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
        let next = match listed.last() {
            Some(last) if more => last.member.user_id,
            _ => 0,
        };
        Ok((listed, next))
    }

    /// The groups a user is in (gateways deliver these groups' topics to them).
    pub async fn groups_of(&self, user: u64) -> Result<Vec<u64>, ChatError> {
        self.store.groups_of(user).await
    }

    /// `actor` invites `users` into the group.
    pub async fn invite(
        &self,
        actor: u64,
        group_id: u64,
        users: Vec<u64>,
    ) -> Result<Joined, ChatError> {
        if users.is_empty() || users.len() >= MAX_MEMBERS as usize {
            return Err(ChatError::Invalid {
                code: "invalid_members",
                reason: "name 1 to 5999 users",
            });
        }
        self.require_users(&users).await?;
        let joined = self
            .store
            .invite(group_id, actor, users, self.clock.now_ms())
            .await?;
        self.announce_joined(group_id, actor, &joined);
        Ok(joined)
    }

    /// An invitation link's token, replacing any earlier one of the group.
    pub async fn create_invite(
        &self,
        actor: u64,
        group_id: u64,
    ) -> Result<(String, i64), ChatError> {
        let bytes: [u8; 18] = rand::rng().random();
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let expires = self.clock.now_ms() + INVITE_TTL_MS;
        self.store
            .set_invite_token(group_id, actor, token.clone(), expires)
            .await?;
        Ok((token, expires))
    }

    /// Joins with an invitation token: a member now, or waiting for approval.
    pub async fn join(&self, user: u64, token: &str) -> Result<(u64, Joined), ChatError> {
        if token.is_empty() || token.len() > 64 {
            return Err(ChatError::InvalidInvite);
        }
        let (group_id, joined) = self
            .store
            .join_by_token(token.to_string(), user, self.clock.now_ms())
            .await?;
        self.announce_joined(group_id, user, &joined);
        Ok((group_id, joined))
    }

    pub async fn join_requests(
        &self,
        actor: u64,
        group_id: u64,
    ) -> Result<Vec<(u64, u64, i64)>, ChatError> {
        self.store.requests(group_id, actor).await
    }

    /// An admin approves or rejects a pending join; answers whether it joined.
    pub async fn decide_request(
        &self,
        actor: u64,
        group_id: u64,
        user: u64,
        approve: bool,
    ) -> Result<bool, ChatError> {
        let joined = self
            .store
            .decide_request(group_id, actor, user, approve, self.clock.now_ms())
            .await?;
        if joined {
            let joined = Joined {
                added: vec![user],
                pending: Vec::new(),
            };
            self.announce_joined(group_id, actor, &joined);
        }
        Ok(joined)
    }

    /// Removes a member, or (with `user == actor`) leaves.
    pub async fn remove_member(
        &self,
        actor: u64,
        group_id: u64,
        user: u64,
    ) -> Result<Removal, ChatError> {
        let removal = self.store.remove_member(group_id, actor, user).await?;
        let kind = match removal {
            Removal::Left => Kind::MemberLeft,
            Removal::Removed => Kind::MemberRemoved,
        };
        let event = group_event(group_id, kind, actor, vec![user], "", 0);
        self.publish_membership(user, group_id, false, event.clone());
        self.publish_group(group_id, event);
        Ok(removal)
    }

    pub async fn set_role(
        &self,
        actor: u64,
        group_id: u64,
        user: u64,
        admin: bool,
    ) -> Result<(), ChatError> {
        self.store.set_role(group_id, actor, user, admin).await?;
        let event = group_event(
            group_id,
            Kind::RoleChanged,
            actor,
            vec![user],
            "",
            i64::from(admin),
        );
        self.publish_group(group_id, event);
        Ok(())
    }

    pub async fn transfer_owner(
        &self,
        actor: u64,
        group_id: u64,
        user: u64,
    ) -> Result<(), ChatError> {
        self.store.transfer_owner(group_id, actor, user).await?;
        let event = group_event(group_id, Kind::OwnerTransferred, actor, vec![user], "", 0);
        self.publish_group(group_id, event);
        Ok(())
    }

    /// Mutes a member for `secs` from now; 0 unmutes.
    pub async fn mute_member(
        &self,
        actor: u64,
        group_id: u64,
        user: u64,
        secs: u32,
    ) -> Result<(), ChatError> {
        let until_ms = match secs {
            0 => 0,
            s => self.clock.now_ms().saturating_add(i64::from(s) * 1000),
        };
        self.store
            .mute_member(group_id, actor, user, until_ms)
            .await?;
        let event = group_event(group_id, Kind::MemberMuted, actor, vec![user], "", until_ms);
        self.publish_group(group_id, event);
        Ok(())
    }

    pub async fn set_nickname(
        &self,
        user: u64,
        group_id: u64,
        nickname: &str,
    ) -> Result<(), ChatError> {
        check_nickname(nickname)?;
        self.store
            .set_nickname(group_id, user, nickname.to_string())
            .await?;
        let event = group_event(group_id, Kind::Updated, user, vec![user], nickname, 0);
        self.publish_group(group_id, event);
        Ok(())
    }

    /// Admins change the name, avatar, announcement, mute-all, slow mode or
    /// whether joins need approval.
    pub async fn update_group(
        &self,
        actor: u64,
        group_id: u64,
        mut update: GroupUpdate,
    ) -> Result<GroupInfo, ChatError> {
        if let Some(name) = &mut update.name {
            check_name(name)?;
            *name = name.trim().to_string();
        }
        if let Some(avatar) = &update.avatar {
            check_avatar(avatar)?;
        }
        if let Some(text) = &update.announcement {
            check_len(
                text,
                0,
                MAX_ANNOUNCEMENT_CHARS,
                "invalid_announcement",
                "an announcement is at most 2000 characters",
            )?;
        }
        if update
            .slow_mode_secs
            .is_some_and(|s| s > MAX_SLOW_MODE_SECS)
        {
            return Err(ChatError::Invalid {
                code: "invalid_slow_mode",
                reason: "slow mode is 0 to 3600 seconds",
            });
        }
        let group = self
            .store
            .update_group(group_id, actor, update.clone())
            .await?;
        // An announcement is its own event, as members see it as one.
        if let Some(text) = &update.announcement {
            let event = group_event(group_id, Kind::Announcement, actor, Vec::new(), text, 0);
            self.publish_group(group_id, event);
        }
        let settings_changed = update.name.is_some()
            || update.avatar.is_some()
            || update.mute_all.is_some()
            || update.slow_mode_secs.is_some()
            || update.join_approval.is_some();
        if settings_changed {
            let text = update.name.as_deref().unwrap_or_default();
            let event = group_event(group_id, Kind::Updated, actor, Vec::new(), text, 0);
            self.publish_group(group_id, event);
        }
        Ok(group)
    }

    /// The owner dissolves the group: nobody is a member any more.
    pub async fn dissolve(&self, actor: u64, group_id: u64) -> Result<(), ChatError> {
        let members = self.store.dissolve(group_id, actor).await?;
        let event = group_event(group_id, Kind::Dissolved, actor, Vec::new(), "", 0);
        for user in members {
            self.publish_membership(user, group_id, false, event.clone());
        }
        Ok(())
    }

    async fn require_users(&self, users: &[u64]) -> Result<(), ChatError> {
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

    async fn member_ids(&self, group_id: u64) -> Result<Vec<u64>, ChatError> {
        let page = self.store.members_page(group_id, 0, MAX_MEMBERS).await?;
        Ok(page.into_iter().map(|m| m.user_id).collect())
    }

    /// Joins are told to the group first, then to each newcomer (who is not
    /// yet delivered the group's topic), so nobody hears it twice.
    fn announce_joined(&self, group_id: u64, actor: u64, joined: &Joined) {
        if !joined.added.is_empty() {
            let event = group_event(
                group_id,
                Kind::MembersAdded,
                actor,
                joined.added.clone(),
                "",
                0,
            );
            self.publish_group(group_id, event.clone());
            for &user in &joined.added {
                self.publish_membership(user, group_id, true, event.clone());
            }
        }
        if !joined.pending.is_empty() {
            let event = group_event(
                group_id,
                Kind::JoinRequested,
                actor,
                joined.pending.clone(),
                "",
                0,
            );
            self.publish_group(group_id, event);
        }
    }

    pub(crate) fn publish_group(&self, group_id: u64, event: Event) {
        self.publish_envelope(&group_topic(group_id), bus_envelope::Kind::Event(event), 0);
    }

    fn publish_membership(&self, user: u64, group_id: u64, joined: bool, event: Event) {
        let membership = Membership {
            group_id,
            joined,
            event: Some(event),
        };
        self.publish_envelope(
            &user_topic(user),
            bus_envelope::Kind::Membership(membership),
            0,
        );
    }

    /// Publishes on `topic`; `origin` (or 0) is the connection whose
    /// request caused it, which is not sent it.
    pub(crate) fn publish_envelope(&self, topic: &str, kind: bus_envelope::Kind, origin: u64) {
        self.bus.publish(topic, envelope(kind, origin));
    }
}

pub(crate) fn envelope(kind: bus_envelope::Kind, origin: u64) -> Bytes {
    Bytes::from(
        BusEnvelope {
            kind: Some(kind),
            origin,
        }
        .encode_to_vec(),
    )
}

fn group_event(
    group_id: u64,
    kind: Kind,
    actor: u64,
    users: Vec<u64>,
    text: &str,
    value: i64,
) -> Event {
    Event {
        kind: Some(event::Kind::Group(GroupEvent {
            group_id,
            kind: kind as i32,
            actor,
            users,
            text: text.to_string(),
            value,
        })),
    }
}
