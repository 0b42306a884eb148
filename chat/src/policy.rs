//! The chat room's rules as pure functions: limits on what a message or a
//! group may hold, and who in a group may do what. No I/O. The service calls
//! the input checks; every store backend calls the group rules inside the
//! transaction that acts on them (or turns them into a compare-and-set
//! condition), so no backend writes a rule of its own.
//!
//! Ranks: the owner over everyone, admins over plain members. The owner and
//! admins run the group and are not held by mute-all, slow mode or approval
//! of invitations; a mute of one member holds anyone.

pub mod kinds;

pub use kinds::{check_body, fallback};

use std::collections::HashSet;

use prost::Message as _;
use superapp_proto::v1::{MessageBody, message_body};

use crate::ChatError;
use crate::model::{
    GroupInfo, MemberChange, MemberInfo, Mentions, Removal, Role, StoredMessage, UserId, View,
};

/// At most this many members in a group.
pub const MAX_MEMBERS: u32 = 6_000;
/// At most this many admins besides the owner.
pub const MAX_ADMINS: u32 = 10;
/// At most this many members mentioned by one message.
pub const MAX_MENTIONS: usize = 20;
/// Largest text body, in bytes of UTF-8.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
pub const MAX_CLIENT_MSG_ID_BYTES: usize = 64;
pub const MAX_NAME_CHARS: usize = 64;
pub const MAX_ANNOUNCEMENT_CHARS: usize = 2_000;
pub const MAX_NICKNAME_CHARS: usize = 32;
/// Longest member search.
pub const MAX_QUERY_CHARS: usize = 64;
pub const MAX_AVATAR_BYTES: usize = 512;
pub const MAX_SLOW_MODE_SECS: u32 = 3_600;
/// Bodies in one pulled page stop growing past this many bytes of content
/// (see [`content_bytes`]), so a page of long messages still fits one
/// WebSocket frame; `has_more` says to pull again. Sixteen of the longest
/// texts fill a page.
pub const MAX_PAGE_BODY_BYTES: usize = 256 * 1024;

/// What a body counts against a page's budget: a text's UTF-8 bytes, as
/// [`MAX_TEXT_BYTES`] counts them, so the budget is one a client can count
/// too; any other kind's encoded size, fallback included (a few hundred
/// bytes at most for what a client sends, so a page of them is bounded by
/// its count before its bytes).
pub fn content_bytes(body: &MessageBody) -> usize {
    match &body.content {
        Some(message_body::Content::Text(text)) => text.len(),
        Some(_) => body.encoded_len(),
        None => 0,
    }
}

/// How many of a page's messages fit its budget, given the content bytes of
/// their bodies in order: those before the one that would pass
/// [`MAX_PAGE_BODY_BYTES`], but at least one, or a client could never get
/// past a long message. None when they all fit.
pub fn page_cut(sizes: impl IntoIterator<Item = usize>) -> Option<usize> {
    let mut bytes = 0;
    sizes
        .into_iter()
        .position(|size| {
            bytes += size;
            bytes > MAX_PAGE_BODY_BYTES
        })
        .map(|cut| cut.max(1))
}

// ---- What a user's view leaves out ---------------------------------------

/// Pulls of a conversation with messages hidden from the caller read on
/// past them, up to this many rows, to fill the page; past it the page says
/// how far it got (`through_seq`).
pub const MAX_PULL_SCAN: usize = 5_000;

/// Whether the viewer blocked `sender` when they sent at `sent_ms`.
pub fn blocked_at(view: &View, sender: UserId, sent_ms: i64) -> bool {
    view.blocked.get(&sender).is_some_and(|spans| {
        spans
            .iter()
            .any(|s| s.from_ms <= sent_ms && sent_ms < s.until_ms)
    })
}

/// Whether the viewer sees a message, by its facts: never one withheld from
/// them (a one-to-one message sent while they blocked its sender, decided
/// when it was sent); never a group message sent while they blocked its
/// sender, decided by the times of their blocks, so that every device and
/// every later pull sees the same whatever was unblocked since. What the
/// sender sent before or after a block is seen.
pub fn shows_facts(
    viewer: UserId,
    view: &View,
    group: bool,
    sender: UserId,
    sent_ms: i64,
    hidden_from: Option<UserId>,
) -> bool {
    hidden_from != Some(viewer) && !(group && blocked_at(view, sender, sent_ms))
}

/// [`shows_facts`] of a stored message.
pub fn shows(viewer: UserId, view: &View, message: &StoredMessage) -> bool {
    shows_facts(
        viewer,
        view,
        message.conversation.group().is_some(),
        message.sender,
        message.server_time_ms,
        message.hidden_from,
    )
}

/// Whether a gateway delivers a group message from `sender` live to a
/// member who blocks `blocked` now: the live face of [`shows`], judged at
/// delivery, which is the moment the message was sent. Costs one test of
/// an empty set for a member who blocks nobody.
pub fn delivered_live(blocked: &HashSet<UserId>, sender: UserId) -> bool {
    blocked.is_empty() || !blocked.contains(&sender)
}

/// What a one-to-one member's row keeps of the messages withheld from them,
/// written only when one is: how many, the seq of the last, and the last
/// message they see before the run of withheld ones that ends there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Withheld {
    pub count: u64,
    pub last: u64,
    pub shown_seq: u64,
    pub shown_ms: i64,
}

/// The seq and time of the last message a member sees in a one-to-one
/// conversation whose last message is `last_seq` at `last_ms`: that one,
/// unless it was withheld from them, then the last before the run of
/// withheld ones; None when they see none at all. A member's read mark
/// stops there, so the sender never sees a withheld message read.
pub fn last_shown(last_seq: u64, last_ms: i64, withheld: &Withheld) -> Option<(u64, i64)> {
    let shown = if withheld.count == 0 || withheld.last < last_seq {
        (last_seq, last_ms)
    } else {
        (withheld.shown_seq, withheld.shown_ms)
    };
    (shown.0 > 0 || withheld.count == 0).then_some(shown)
}

/// Whether a conversation is in the viewer's list: not the one-to-one
/// conversation of someone they hide ("private mode").
pub fn listed(view: &View, peer: Option<UserId>) -> bool {
    peer.is_none_or(|peer| !view.hidden.contains(&peer))
}

// ---- Input limits --------------------------------------------------------

pub fn check_client_msg_id(id: &str) -> Result<(), ChatError> {
    if id.is_empty() || id.len() > MAX_CLIENT_MSG_ID_BYTES {
        return Err(ChatError::InvalidClientMsgId);
    }
    Ok(())
}

pub fn check_mention_count(mentions: &Mentions) -> Result<(), ChatError> {
    if mentions.users.len() > MAX_MENTIONS {
        return Err(ChatError::TooManyMentions { max: MAX_MENTIONS });
    }
    Ok(())
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

/// A member search, as trimmed: at most 64 characters, no control
/// characters. Answers it lower-cased, as [`member_matches`] takes it.
pub fn member_query(raw: &str) -> Result<String, ChatError> {
    let query = raw.trim();
    check_len(
        query,
        0,
        MAX_QUERY_CHARS,
        "invalid_query",
        "a member search is at most 64 characters",
    )?;
    Ok(query.to_lowercase())
}

/// Whether a member is found by a search (`query` as [`member_query`]
/// answers it): their group nickname or display name contains it, ignoring
/// case. An empty query finds everyone.
pub fn member_matches(query: &str, nickname: &str, display_name: &str) -> bool {
    query.is_empty()
        || nickname.to_lowercase().contains(query)
        || display_name.to_lowercase().contains(query)
}

/// A group name, as trimmed: 1 to 64 characters, no control characters.
pub fn check_group_name(name: &str) -> Result<(), ChatError> {
    check_len(
        name.trim(),
        1,
        MAX_NAME_CHARS,
        "invalid_group_name",
        "a group name is 1 to 64 characters",
    )
}

pub fn check_avatar(avatar: &str) -> Result<(), ChatError> {
    if avatar.len() > MAX_AVATAR_BYTES {
        return Err(ChatError::Invalid {
            code: "invalid_avatar",
            reason: "an avatar reference is at most 512 bytes",
        });
    }
    Ok(())
}

pub fn check_announcement(text: &str) -> Result<(), ChatError> {
    check_len(
        text,
        0,
        MAX_ANNOUNCEMENT_CHARS,
        "invalid_announcement",
        "an announcement is at most 2000 characters",
    )
}

pub fn check_slow_mode(secs: u32) -> Result<(), ChatError> {
    if secs > MAX_SLOW_MODE_SECS {
        return Err(ChatError::Invalid {
            code: "invalid_slow_mode",
            reason: "slow mode is 0 to 3600 seconds",
        });
    }
    Ok(())
}

/// An invitation names 1 to 5,999 users (the owner is the 6,000th).
pub fn check_invitees(count: usize) -> Result<(), ChatError> {
    if count == 0 || count >= MAX_MEMBERS as usize {
        return Err(ChatError::Invalid {
            code: "invalid_members",
            reason: "name 1 to 5999 users",
        });
    }
    Ok(())
}

// ---- Group rules ---------------------------------------------------------

/// Whether `actor` may act on `target` (remove, mute): the owner over anyone
/// else, an admin over plain members.
pub fn outranks(actor: &MemberInfo, target: &MemberInfo) -> bool {
    actor.user != target.user
        && (actor.role == Role::Owner || (actor.role == Role::Admin && target.role == Role::Member))
}

/// The group may take `adding` more members.
pub fn room_for(member_count: u32, adding: usize) -> Result<(), ChatError> {
    if member_count as usize + adding > MAX_MEMBERS as usize {
        return Err(ChatError::GroupFull { max: MAX_MEMBERS });
    }
    Ok(())
}

/// The window [`may_create_group`] counts creations in.
pub const CREATION_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// Whether `adding` more groups keep a user who is in `groups` within `max`.
pub fn room_in_groups(groups: u32, adding: u32, max: u32) -> Result<(), ChatError> {
    if u64::from(groups) + u64::from(adding) > u64::from(max) {
        return Err(ChatError::TooManyGroups { max });
    }
    Ok(())
}

/// Whether a user who created `created` groups in the last
/// [`CREATION_WINDOW_MS`], the oldest of them at `oldest_ms`, may create one
/// more at `now_ms`; if not, how long until the oldest leaves the window.
pub fn may_create_group(
    created: u32,
    oldest_ms: i64,
    now_ms: i64,
    max: u32,
) -> Result<(), ChatError> {
    if created < max {
        return Ok(());
    }
    let wait = oldest_ms.saturating_add(CREATION_WINDOW_MS) - now_ms;
    Err(ChatError::TooManyGroupsCreated {
        max,
        retry_after_ms: wait.max(1) as u64,
    })
}

/// How people invited by a member come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// They are members at once.
    Direct,
    /// They wait for an admin's approval.
    Pending,
}

/// A member's invitation waits for approval when the group asks for it,
/// unless the inviter runs the group. A link's joins (no inviter) wait
/// whenever the group asks for approval.
pub fn admission(group: &GroupInfo, inviter: Option<&MemberInfo>) -> Admission {
    let runs_group = inviter.is_some_and(|m| m.role.is_admin());
    if group.join_approval && !runs_group {
        Admission::Pending
    } else {
        Admission::Direct
    }
}

/// A group invitation waits this long for its invitee (7 days, as a friend
/// request and an invitation link do).
pub const INVITATION_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

/// How an invitee who accepts comes in, given the group and the inviter's
/// membership now: as [`admission`] lets the inviter bring people in today
/// (so an invitation from a plain member waits for an admin's approval if
/// the group has asked for approval since). An inviter who is no longer a
/// member has withdrawn the invitation ([`ChatError::UnknownInvitation`]),
/// as a WeChat invitation card lapses when its sender leaves the group.
pub fn invitation_admission(
    group: &GroupInfo,
    inviter: Option<&MemberInfo>,
) -> Result<Admission, ChatError> {
    let inviter = inviter.ok_or(ChatError::UnknownInvitation)?;
    Ok(admission(group, Some(inviter)))
}

/// Settings, the invitation link and pending joins belong to the owner and admins.
pub fn may_administer(actor: &MemberInfo) -> Result<(), ChatError> {
    if actor.role.is_admin() {
        Ok(())
    } else {
        Err(ChatError::NotAllowed)
    }
}

/// Only the owner dissolves the group.
pub fn may_dissolve(actor: &MemberInfo) -> Result<(), ChatError> {
    if actor.role == Role::Owner {
        Ok(())
    } else {
        Err(ChatError::NotAllowed)
    }
}

/// Leaving (target is the actor) or removing someone. The owner cannot
/// leave without handing the group on.
pub fn removal(actor: &MemberInfo, target: Option<&MemberInfo>) -> Result<Removal, ChatError> {
    let target = target.ok_or(ChatError::UnknownMember)?;
    if actor.user == target.user {
        return match actor.role {
            Role::Owner => Err(ChatError::OwnerMustTransfer),
            _ => Ok(Removal::Left),
        };
    }
    if outranks(actor, target) {
        Ok(Removal::Removed)
    } else {
        Err(ChatError::NotAllowed)
    }
}

/// Muting (or unmuting) a member: the same ranks as removal, never oneself.
pub fn may_mute(actor: &MemberInfo, target: Option<&MemberInfo>) -> Result<(), ChatError> {
    let target = target.ok_or(ChatError::UnknownMember)?;
    if outranks(actor, target) {
        Ok(())
    } else {
        Err(ChatError::NotAllowed)
    }
}

/// The owner makes a member an admin (at most [`MAX_ADMINS`], `admins` being
/// how many there are now) or back; answers the target's new role.
pub fn new_role(
    actor: &MemberInfo,
    target: Option<&MemberInfo>,
    admin: bool,
    admins: u32,
) -> Result<Role, ChatError> {
    if actor.role != Role::Owner {
        return Err(ChatError::NotAllowed);
    }
    let target = target.ok_or(ChatError::UnknownMember)?;
    if target.role == Role::Owner {
        return Err(ChatError::NotAllowed);
    }
    if !admin {
        return Ok(Role::Member);
    }
    if target.role == Role::Member && admins >= MAX_ADMINS {
        return Err(ChatError::TooManyAdmins { max: MAX_ADMINS });
    }
    Ok(Role::Admin)
}

/// A change to `target`'s membership by `actor` (`admins` being how many
/// admins there are now), decided as a whole: the role by [`new_role`], the
/// mute by [`may_mute`] against the target as the new role leaves them, the
/// nickname only by the member themselves. Answers the membership as
/// changed; a refusal of any part refuses all of it.
pub fn member_change(
    actor: &MemberInfo,
    target: Option<&MemberInfo>,
    change: &MemberChange,
    admins: u32,
) -> Result<MemberInfo, ChatError> {
    // Each part is judged as if it came alone after the parts before it.
    let mut changed = target.cloned();
    if let Some(admin) = change.admin {
        let role = new_role(actor, changed.as_ref(), admin, admins)?;
        changed.iter_mut().for_each(|m| m.role = role);
    }
    if let Some(until_ms) = change.muted_until_ms {
        may_mute(actor, changed.as_ref())?;
        changed
            .iter_mut()
            .for_each(|m| m.muted_until_ms = until_ms.max(0));
    }
    let mut changed = changed.ok_or(ChatError::UnknownMember)?;
    if let Some(nickname) = &change.nickname {
        if actor.user != changed.user {
            return Err(ChatError::NotAllowed);
        }
        check_nickname(nickname)?;
        changed.nickname = nickname.clone();
    }
    Ok(changed)
}

/// The owner hands the group to another member; answers the former owner's
/// new role. They stay on as an admin, as people expect, if the admins' cap
/// leaves room (a new owner who was an admin makes room).
pub fn transfer(
    actor: &MemberInfo,
    target: Option<&MemberInfo>,
    admins: u32,
) -> Result<Role, ChatError> {
    if actor.role != Role::Owner || target.is_some_and(|t| t.user == actor.user) {
        return Err(ChatError::NotAllowed);
    }
    let target = target.ok_or(ChatError::UnknownMember)?;
    let admins_after = admins - u32::from(target.role == Role::Admin);
    Ok(if admins_after < MAX_ADMINS {
        Role::Admin
    } else {
        Role::Member
    })
}

/// Who owns a group after its owner's account is erased, among its other
/// members: the admin who joined first, else the member who joined first
/// (the lower user id first when two joined at once). None when nobody
/// else is in it: the group is dissolved. WeChat hands a group on the same
/// way when its owner leaves without naming anyone.
pub fn successor(others: &[MemberInfo]) -> Option<UserId> {
    others
        .iter()
        .filter(|m| m.role != Role::Owner)
        .min_by_key(|m| (std::cmp::Reverse(m.role), m.joined_ms, m.user))
        .map(|m| m.user)
}

/// Whether `sender` may send now: not muted, not silenced by mute-all or slow
/// mode (which hold plain members only), and `@all` only from those who run
/// the group.
pub fn may_send(
    group: &GroupInfo,
    sender: &MemberInfo,
    mention_all: bool,
    now_ms: i64,
) -> Result<(), ChatError> {
    if sender.muted_until_ms > now_ms {
        return Err(ChatError::Muted {
            until_ms: sender.muted_until_ms,
        });
    }
    if sender.role.is_admin() {
        return Ok(());
    }
    if group.mute_all {
        return Err(ChatError::GroupMuted);
    }
    if mention_all {
        return Err(ChatError::MentionAllNotAllowed);
    }
    if group.slow_mode_secs > 0 && sender.last_sent_ms > 0 {
        let next = sender
            .last_sent_ms
            .saturating_add(i64::from(group.slow_mode_secs) * 1000);
        if now_ms < next {
            return Err(ChatError::SlowMode {
                retry_after_ms: (next - now_ms) as u64,
            });
        }
    }
    Ok(())
}

/// The mentions a message keeps: `@all` as asked (once [`may_send`] allowed
/// it), and each named member once, never the sender, never a non-member.
pub fn kept_mentions(
    sender: UserId,
    asked: &Mentions,
    mut is_member: impl FnMut(UserId) -> bool,
) -> Mentions {
    let mut users: Vec<UserId> = Vec::new();
    for &user in &asked.users {
        if user != sender && !users.contains(&user) && is_member(user) {
            users.push(user);
        }
    }
    Mentions {
        all: asked.all,
        users,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::model::GroupId;

    #[test]
    fn a_creator_at_the_daily_cap_waits_for_the_oldest_creation_to_age_out() {
        assert!(may_create_group(1, 0, 5, 2).is_ok());
        assert!(matches!(
            may_create_group(2, 1_000, 5_000, 2),
            Err(ChatError::TooManyGroupsCreated { max: 2, retry_after_ms })
                if retry_after_ms == (1_000 + CREATION_WINDOW_MS - 5_000) as u64
        ));
    }

    #[test]
    fn a_member_change_is_refused_whole_when_any_part_is() {
        let (owner, admin, plain) = (
            member(1, Role::Owner),
            member(2, Role::Admin),
            member(3, Role::Member),
        );
        let promote_and_mute = MemberChange {
            admin: Some(true),
            muted_until_ms: Some(5),
            nickname: None,
        };
        let changed = member_change(&owner, Some(&plain), &promote_and_mute, 0).unwrap();
        assert_eq!((changed.role, changed.muted_until_ms), (Role::Admin, 5));
        // Someone else's nickname spoils the whole change.
        let with_nickname = MemberChange {
            nickname: Some("x".into()),
            ..promote_and_mute.clone()
        };
        assert!(matches!(
            member_change(&owner, Some(&plain), &with_nickname, 0),
            Err(ChatError::NotAllowed)
        ));
        // Only the owner changes roles, even where the mute alone would pass.
        assert!(matches!(
            member_change(&admin, Some(&plain), &promote_and_mute, 0),
            Err(ChatError::NotAllowed)
        ));
        // A negative mute time unmutes, whatever the role becomes.
        let demote_and_mute = MemberChange {
            admin: Some(false),
            muted_until_ms: Some(-7),
            nickname: None,
        };
        let changed = member_change(&owner, Some(&admin), &demote_and_mute, 1).unwrap();
        assert_eq!((changed.role, changed.muted_until_ms), (Role::Member, 0));
        let own_nickname = |nickname: String| MemberChange {
            nickname: Some(nickname),
            ..MemberChange::default()
        };
        let changed = member_change(&plain, Some(&plain), &own_nickname("Mimi".into()), 0);
        assert_eq!(changed.unwrap().nickname, "Mimi");
        assert!(matches!(
            member_change(&plain, Some(&plain), &own_nickname("x".repeat(33)), 0),
            Err(ChatError::Invalid {
                code: "invalid_nickname",
                ..
            })
        ));
        assert!(matches!(
            member_change(&owner, None, &MemberChange::default(), 0),
            Err(ChatError::UnknownMember)
        ));
    }

    #[test]
    fn a_member_search_is_trimmed_bounded_and_ignores_case() {
        assert_eq!(member_query("  ÉVE ").unwrap(), "éve");
        assert!(member_query(&"x".repeat(65)).is_err());
        assert!(member_query("a\u{7}").is_err());
        assert!(member_matches("éve", "", "Éveline"));
        assert!(member_matches("", "", ""));
        assert!(member_matches("boss", "The Boss", "Ann"));
        assert!(!member_matches("zed", "The Boss", "Ann"));
    }

    #[test]
    fn a_user_at_the_membership_cap_joins_nothing_more() {
        assert!(room_in_groups(1_999, 1, 2_000).is_ok());
        assert!(matches!(
            room_in_groups(2_000, 1, 2_000),
            Err(ChatError::TooManyGroups { max: 2_000 })
        ));
        assert!(room_in_groups(u32::MAX, u32::MAX, 2_000).is_err());
    }

    fn member(user: u64, role: Role) -> MemberInfo {
        MemberInfo {
            user: UserId(user),
            role,
            nickname: String::new(),
            joined_ms: 0,
            muted_until_ms: 0,
            joined_seq: 0,
            last_sent_ms: 0,
        }
    }

    fn group() -> GroupInfo {
        GroupInfo {
            group: GroupId(1),
            name: "g".into(),
            avatar: String::new(),
            announcement: String::new(),
            owner: UserId(1),
            created_ms: 0,
            member_count: 2,
            mute_all: false,
            slow_mode_secs: 0,
            join_approval: false,
            last_seq: 0,
        }
    }

    fn role() -> impl Strategy<Value = Role> {
        prop_oneof![Just(Role::Member), Just(Role::Admin), Just(Role::Owner)]
    }

    /// The reference model: the rules as a table of ranks, written apart from
    /// the functions above. 2 owner, 1 admin, 0 member.
    mod model {
        pub fn rank(role: super::Role) -> u8 {
            role as u8
        }
        /// Acting on someone else: strictly higher rank, and the actor runs the group.
        pub fn may_act_on(actor: u8, target: u8, same: bool) -> bool {
            !same && actor >= 1 && actor > target
        }
    }

    proptest! {
        #[test]
        fn a_group_goes_to_the_first_admin_then_the_first_member(
            people in proptest::collection::vec((any::<bool>(), 0i64..5), 0..12),
        ) {
            let others: Vec<MemberInfo> = people
                .iter()
                .enumerate()
                .map(|(i, &(admin, joined_ms))| MemberInfo {
                    joined_ms,
                    ..member(10 + i as u64, if admin { Role::Admin } else { Role::Member })
                })
                .collect();
            // The model: admins before members, each in order of joining.
            let first_of = |role: Role| {
                let mut of: Vec<&MemberInfo> = others.iter().filter(|m| m.role == role).collect();
                of.sort_by(|a, b| a.joined_ms.cmp(&b.joined_ms).then(a.user.cmp(&b.user)));
                of.first().map(|m| m.user)
            };
            let want = first_of(Role::Admin).or_else(|| first_of(Role::Member));
            prop_assert_eq!(successor(&others), want);
        }

        #[test]
        fn removal_follows_rank(actor in role(), target in role(), same in any::<bool>()) {
            // A group has one owner.
            prop_assume!(same || actor != Role::Owner || target != Role::Owner);
            let a = member(1, actor);
            let t = member(if same { 1 } else { 2 }, if same { actor } else { target });
            let got = removal(&a, Some(&t));
            let want = if same {
                if actor == Role::Owner { Err("owner_must_transfer") } else { Ok(Removal::Left) }
            } else if model::may_act_on(model::rank(actor), model::rank(target), false) {
                Ok(Removal::Removed)
            } else {
                Err("not_allowed")
            };
            match (got, want) {
                (Ok(g), Ok(w)) => prop_assert_eq!(g, w),
                (Err(ChatError::OwnerMustTransfer), Err("owner_must_transfer")) => {}
                (Err(ChatError::NotAllowed), Err("not_allowed")) => {}
                (g, w) => prop_assert!(false, "got {g:?}, want {w:?}"),
            }
            prop_assert!(matches!(removal(&a, None), Err(ChatError::UnknownMember)));
        }

        #[test]
        fn muting_follows_rank_and_never_oneself(actor in role(), target in role(), same in any::<bool>()) {
            prop_assume!(same || actor != Role::Owner || target != Role::Owner);
            let a = member(1, actor);
            let t = member(if same { 1 } else { 2 }, target);
            let allowed = model::may_act_on(model::rank(actor), model::rank(target), same);
            prop_assert_eq!(may_mute(&a, Some(&t)).is_ok(), allowed);
        }

        #[test]
        fn only_the_owner_changes_roles_within_the_admin_cap(
            actor in role(), target in role(), admin in any::<bool>(), admins in 0u32..=MAX_ADMINS,
        ) {
            let got = new_role(&member(1, actor), Some(&member(2, target)), admin, admins);
            let want = if actor != Role::Owner || target == Role::Owner {
                None
            } else if admin && target == Role::Member && admins == MAX_ADMINS {
                Some(Err(()))
            } else {
                Some(Ok(if admin { Role::Admin } else { Role::Member }))
            };
            match (got, want) {
                (Err(ChatError::NotAllowed), None) => {}
                (Err(ChatError::TooManyAdmins { .. }), Some(Err(()))) => {}
                (Ok(g), Some(Ok(w))) => prop_assert_eq!(g, w),
                (g, w) => prop_assert!(false, "got {g:?}, want {w:?}"),
            }
        }

        #[test]
        fn a_transfer_keeps_the_admin_cap(target in role(), admins in 0u32..=MAX_ADMINS) {
            prop_assume!(target != Role::Owner);
            prop_assume!(target != Role::Admin || admins > 0);
            let former = transfer(&member(1, Role::Owner), Some(&member(2, target)), admins).unwrap();
            let admins_after = admins - u32::from(target == Role::Admin)
                + u32::from(former == Role::Admin);
            prop_assert!(admins_after <= MAX_ADMINS);
            // Room left means the former owner keeps a say.
            prop_assert_eq!(former == Role::Admin, admins - u32::from(target == Role::Admin) < MAX_ADMINS);
        }

        #[test]
        fn only_the_owner_transfers_and_never_to_themselves(actor in role(), target in role()) {
            prop_assume!(actor != Role::Owner);
            prop_assert!(matches!(
                transfer(&member(1, actor), Some(&member(2, target)), 0),
                Err(ChatError::NotAllowed)
            ));
            let owner = member(1, Role::Owner);
            prop_assert!(matches!(transfer(&owner, Some(&owner), 0), Err(ChatError::NotAllowed)));
        }

        #[test]
        fn who_may_send_is_decided_by_mutes_role_and_slow_mode(
            role in role(),
            mute_all in any::<bool>(),
            mention_all in any::<bool>(),
            slow in 0u32..5,
            muted_for in -3i64..3,
            last_sent_ago in prop::option::of(0i64..6_000),
        ) {
            let now = 1_000_000;
            let mut g = group();
            g.mute_all = mute_all;
            g.slow_mode_secs = slow;
            let mut sender = member(1, role);
            sender.muted_until_ms = if muted_for > 0 { now + muted_for } else { 0 };
            sender.last_sent_ms = last_sent_ago.map_or(0, |ago| now - ago);
            let got = may_send(&g, &sender, mention_all, now);
            // The reference, rule by rule, in the order people are told.
            let runs = model::rank(role) >= 1;
            let slowed = last_sent_ago.is_some_and(|ago| ago < i64::from(slow) * 1000);
            let want = if muted_for > 0 {
                "muted"
            } else if runs {
                "ok"
            } else if mute_all {
                "group_muted"
            } else if mention_all {
                "mention_all"
            } else if slowed {
                "slow"
            } else {
                "ok"
            };
            let name = match &got {
                Ok(()) => "ok",
                Err(ChatError::Muted { .. }) => "muted",
                Err(ChatError::GroupMuted) => "group_muted",
                Err(ChatError::MentionAllNotAllowed) => "mention_all",
                Err(ChatError::SlowMode { retry_after_ms }) => {
                    prop_assert!(*retry_after_ms > 0 && *retry_after_ms <= u64::from(slow) * 1000);
                    "slow"
                }
                Err(other) => panic!("{other:?}"),
            };
            prop_assert_eq!(name, want);
        }

        #[test]
        fn the_member_cap_is_never_passed(count in 0u32..=MAX_MEMBERS, adding in 0usize..100) {
            prop_assert_eq!(
                room_for(count, adding).is_ok(),
                count as usize + adding <= MAX_MEMBERS as usize
            );
        }

        #[test]
        fn invitations_wait_only_when_asked_and_the_inviter_does_not_run_the_group(
            approval in any::<bool>(), inviter in prop::option::of(role()),
        ) {
            let mut g = group();
            g.join_approval = approval;
            let inviter = inviter.map(|r| member(1, r));
            let waits = approval && inviter.as_ref().is_none_or(|m| m.role == Role::Member);
            prop_assert_eq!(admission(&g, inviter.as_ref()) == Admission::Pending, waits);
        }

        #[test]
        fn an_accepted_invitation_comes_in_as_its_inviter_may_bring_people_in_now(
            approval in any::<bool>(), inviter in prop::option::of(role()),
        ) {
            let mut g = group();
            g.join_approval = approval;
            let inviter = inviter.map(|r| member(1, r));
            match (invitation_admission(&g, inviter.as_ref()), &inviter) {
                // An inviter who left took the invitation with them.
                (Err(ChatError::UnknownInvitation), None) => {}
                (Ok(admitted), Some(m)) => {
                    let waits = approval && m.role == Role::Member;
                    prop_assert_eq!(admitted == Admission::Pending, waits);
                }
                (other, _) => panic!("{other:?} for {inviter:?}"),
            }
        }

        #[test]
        fn kept_mentions_are_distinct_members_other_than_the_sender(
            asked in prop::collection::vec(0u64..8, 0..12), all in any::<bool>(),
        ) {
            let members = [1u64, 2, 3, 5];
            let asked = Mentions { all, users: asked.into_iter().map(UserId).collect() };
            let kept = kept_mentions(UserId(1), &asked, |u| members.contains(&u.0));
            prop_assert_eq!(kept.all, all);
            for (i, u) in kept.users.iter().enumerate() {
                prop_assert!(u.0 != 1 && members.contains(&u.0));
                prop_assert!(!kept.users[..i].contains(u));
                prop_assert!(asked.users.contains(u));
            }
            for u in &asked.users {
                prop_assert_eq!(kept.users.contains(u), u.0 != 1 && members.contains(&u.0));
            }
        }
    }

    #[test]
    fn a_page_holds_sixteen_of_the_longest_texts_and_always_one_message() {
        let longest = MessageBody {
            content: Some(message_body::Content::Text("x".repeat(MAX_TEXT_BYTES))),
            ..MessageBody::default()
        };
        assert_eq!(content_bytes(&longest), MAX_TEXT_BYTES);
        let pages = |n| std::iter::repeat_n(content_bytes(&longest), n);
        assert_eq!(page_cut(pages(16)), None);
        assert_eq!(page_cut(pages(17)), Some(16));
        assert_eq!(page_cut([MAX_PAGE_BODY_BYTES + 1, 1]), Some(1));
        assert_eq!(page_cut([1, 2, 3]), None);
    }

    #[test]
    fn bodies_must_hold_between_one_and_16384_bytes_of_text() {
        let text = |s: String| {
            Some(MessageBody {
                content: Some(message_body::Content::Text(s)),
                ..MessageBody::default()
            })
        };
        assert!(matches!(check_body(None), Err(ChatError::EmptyBody)));
        assert!(matches!(
            check_body(text(String::new())),
            Err(ChatError::EmptyBody)
        ));
        assert!(check_body(text("x".repeat(MAX_TEXT_BYTES))).is_ok());
        assert!(matches!(
            check_body(text("x".repeat(MAX_TEXT_BYTES + 1))),
            Err(ChatError::BodyTooLarge { .. })
        ));
    }
}
