//! Groups in the SQLite chat store. A group is a conversation `g.<id>` with a
//! row of its own (name, owner, settings, member count) and one `members` row
//! per member; those asked to join have a `group_invitations` row each. Each operation runs on the single writer, loads what the rule
//! needs, asks [`crate::policy`], and only then writes: a refusal has written
//! nothing. Messages are stored once per group (read diffusion): a send writes
//! the message, its idempotency record, its mentions and the sender's own
//! row, never a row per member.

use std::collections::HashSet;

use rusqlite::{Connection, OptionalExtension as _, params};
use superapp_kit::sqlite::TxError;

use super::{
    EVERYONE, Row, SqliteChatStore, append_row, bound, check_fence, conversation, earlier_send, id,
    raise_fence, user,
};
use crate::ChatError;
use crate::model::{
    Appended, Asked, ConversationId, Departure, GroupId, GroupInfo, GroupInvitation, GroupLimits,
    GroupUpdate, JoinRequest, Joined, MemberChange, MemberInfo, NewGroup, NewGroupMessage, Removal,
    Role, UserId,
};
use crate::policy::{self, Admission};
use crate::store::{GroupStore, Outcome};

/// What group work returns inside a transaction: a refusal aborts it.
type Tx<T> = Result<T, TxError<ChatError>>;

/// A rule's refusal, as a transaction's abort.
fn rule<T>(decision: Result<T, ChatError>) -> Tx<T> {
    decision.map_err(TxError::Abort)
}

fn refuse<T>(refusal: ChatError) -> Tx<T> {
    Err(TxError::Abort(refusal))
}

fn name(group: GroupId) -> String {
    ConversationId::Group(group).to_string()
}

fn role_of(value: i64) -> Role {
    match value {
        2 => Role::Owner,
        1 => Role::Admin,
        _ => Role::Member,
    }
}

const GROUP_COLUMNS: &str = "g.group_id, g.name, g.avatar, g.announcement, g.owner, g.created_ms,
     g.member_count, g.mute_all, g.slow_mode_secs, g.join_approval, c.last_seq";

fn group_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<GroupInfo> {
    Ok(GroupInfo {
        group: GroupId(id(r, 0)?),
        name: r.get(1)?,
        avatar: r.get(2)?,
        announcement: r.get(3)?,
        owner: user(r, 4)?,
        created_ms: r.get(5)?,
        member_count: r.get::<_, i64>(6)? as u32,
        mute_all: r.get(7)?,
        slow_mode_secs: r.get::<_, i64>(8)? as u32,
        join_approval: r.get(9)?,
        last_seq: id(r, 10)?,
    })
}

const MEMBER_COLUMNS: &str =
    "m.user_id, m.role, m.nickname, m.joined_ms, m.muted_until_ms, m.joined_seq, m.last_sent_ms";

fn member_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MemberInfo> {
    Ok(MemberInfo {
        user: user(r, 0)?,
        role: role_of(r.get(1)?),
        nickname: r.get(2)?,
        joined_ms: r.get(3)?,
        muted_until_ms: r.get(4)?,
        joined_seq: id(r, 5)?,
        last_sent_ms: r.get(6)?,
    })
}

fn load_group(c: &Connection, group: GroupId) -> rusqlite::Result<Option<GroupInfo>> {
    c.prepare_cached(&format!(
        "SELECT {GROUP_COLUMNS} FROM groups g JOIN conversations c ON c.id = g.conversation_id
         WHERE g.conversation_id = ?1 AND g.dissolved = 0"
    ))?
    .query_row([name(group)], group_row)
    .optional()
}

fn load_member(
    c: &Connection,
    group: GroupId,
    who: UserId,
) -> rusqlite::Result<Option<MemberInfo>> {
    c.prepare_cached(&format!(
        "SELECT {MEMBER_COLUMNS} FROM members m WHERE conversation_id = ?1 AND user_id = ?2"
    ))?
    .query_row(params![name(group), bound(who.0)], member_row)
    .optional()
}

/// The group and the actor's membership, or the refusal that ends the request.
fn actor_in(c: &Connection, group: GroupId, actor: UserId) -> Tx<(GroupInfo, MemberInfo)> {
    let Some(info) = load_group(c, group)? else {
        return refuse(ChatError::UnknownGroup);
    };
    match load_member(c, group, actor)? {
        Some(member) => Ok((info, member)),
        None => refuse(ChatError::NotMember),
    }
}

/// How many groups `who` is in.
fn groups_of_user(c: &Connection, who: UserId) -> rusqlite::Result<u32> {
    Ok(
        c.prepare_cached("SELECT groups FROM group_counts WHERE user_id = ?1")?
            .query_row([bound(who.0)], |r| r.get::<_, i64>(0))
            .optional()?
            .unwrap_or(0)
            .max(0) as u32,
    )
}

/// Refuses, before anything is written, when one of `users` (each joining
/// one more group) would pass the membership cap.
fn room_in_groups(c: &Connection, users: &[UserId], max: u32) -> Tx<()> {
    for &who in users {
        rule(policy::room_in_groups(groups_of_user(c, who)?, 1, max))?;
    }
    Ok(())
}

/// Counts `who` in `delta` more (or fewer) groups.
fn count_groups(c: &Connection, who: UserId, delta: i64) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO group_counts (user_id, groups) VALUES (?1, max(?2, 0))
         ON CONFLICT (user_id) DO UPDATE SET groups = max(groups + ?2, 0)",
    )?
    .execute(params![who.0 as i64, delta])?;
    Ok(())
}

/// Inserts members who are not in yet, within the group's cap and each
/// newcomer's; answers who was added.
fn add_members(
    c: &Connection,
    group: &GroupInfo,
    users: &[UserId],
    now_ms: i64,
    limits: GroupLimits,
) -> Tx<Vec<UserId>> {
    let mut fresh = Vec::new();
    for &who in users {
        if !fresh.contains(&who) && load_member(c, group.group, who)?.is_none() {
            fresh.push(who);
        }
    }
    rule(policy::room_for(group.member_count, fresh.len()))?;
    room_in_groups(c, &fresh, limits.max_groups_per_user)?;
    let conversation = name(group.group);
    for &who in &fresh {
        // A member sees messages from the time they join: read mark and
        // visibility both start at the group's current seq.
        c.prepare_cached(
            "INSERT INTO members (conversation_id, user_id, peer_id, read_seq, role, joined_seq, joined_ms)
             VALUES (?1, ?2, 0, ?3, 0, ?3, ?4)",
        )?
        .execute(params![conversation, who.0 as i64, group.last_seq as i64, now_ms])?;
        c.prepare_cached("DELETE FROM join_requests WHERE conversation_id = ?1 AND user_id = ?2")?
            .execute(params![conversation, who.0 as i64])?;
        c.prepare_cached(
            "DELETE FROM group_invitations WHERE invitee = ?2 AND conversation_id = ?1",
        )?
        .execute(params![conversation, who.0 as i64])?;
        count_groups(c, who, 1)?;
    }
    c.prepare_cached(
        "UPDATE groups SET member_count = member_count + ?2 WHERE conversation_id = ?1",
    )?
    .execute(params![conversation, fresh.len() as i64])?;
    Ok(fresh)
}

fn request_join(
    c: &Connection,
    group: GroupId,
    users: &[UserId],
    inviter: Option<UserId>,
    now_ms: i64,
) -> rusqlite::Result<Vec<UserId>> {
    let mut pending = Vec::new();
    for &who in users {
        if load_member(c, group, who)?.is_some() || pending.contains(&who) {
            continue;
        }
        c.prepare_cached(
            "INSERT INTO join_requests (conversation_id, user_id, inviter, requested_ms)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            name(group),
            who.0 as i64,
            inviter.map_or(0, |u| u.0 as i64),
            now_ms
        ])?;
        pending.push(who);
    }
    Ok(pending)
}

/// Invites those of `asked.users` who are not members, from `inviter`
/// (replacing an invitation into this group from anyone); answers them and
/// those of `asked.hidden` who are not members, in user-id order, so the
/// answer shows no difference between the two.
fn ask(
    c: &Connection,
    group: GroupId,
    inviter: UserId,
    asked: &Asked,
    now_ms: i64,
) -> rusqlite::Result<Vec<UserId>> {
    let conversation = name(group);
    let mut invited = HashSet::new();
    for &who in &asked.users {
        if invited.contains(&who) || load_member(c, group, who)?.is_some() {
            continue;
        }
        // The invitee's lapsed invitations go as a new one comes, so their
        // rows are bounded by the live ones.
        c.prepare_cached("DELETE FROM group_invitations WHERE invitee = ?1 AND expires_ms <= ?2")?
            .execute(params![bound(who.0), now_ms])?;
        c.prepare_cached(
            "INSERT INTO group_invitations (invitee, conversation_id, inviter, invited_ms, expires_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (invitee, conversation_id) DO UPDATE SET inviter = excluded.inviter,
                 invited_ms = excluded.invited_ms, expires_ms = excluded.expires_ms",
        )?
        .execute(params![
            bound(who.0),
            conversation,
            bound(inviter.0),
            now_ms,
            asked.expires_ms
        ])?;
        invited.insert(who);
    }
    for &who in &asked.hidden {
        if !invited.contains(&who) && load_member(c, group, who)?.is_none() {
            invited.insert(who);
        }
    }
    let mut invited: Vec<UserId> = invited.into_iter().collect();
    invited.sort();
    Ok(invited)
}

/// Admits `users` to the group as [`policy::admission`] decides.
fn admit(
    c: &Connection,
    group: &GroupInfo,
    inviter: Option<&MemberInfo>,
    users: &[UserId],
    now_ms: i64,
    limits: GroupLimits,
) -> Tx<Joined> {
    let admission = policy::admission(group, inviter);
    admit_as(
        c,
        group,
        admission,
        inviter.map(|m| m.user),
        users,
        now_ms,
        limits,
    )
}

/// Admits `users` to the group at once, or as waiting for approval.
fn admit_as(
    c: &Connection,
    group: &GroupInfo,
    admission: Admission,
    inviter: Option<UserId>,
    users: &[UserId],
    now_ms: i64,
    limits: GroupLimits,
) -> Tx<Joined> {
    Ok(match admission {
        Admission::Pending => Joined {
            pending: request_join(c, group.group, users, inviter, now_ms)?,
            ..Joined::default()
        },
        Admission::Direct => Joined {
            added: add_members(c, group, users, now_ms, limits)?,
            ..Joined::default()
        },
    })
}

fn delete_member(c: &Connection, group: GroupId, who: UserId) -> rusqlite::Result<()> {
    let conversation = name(group);
    let gone = c
        .prepare_cached("DELETE FROM members WHERE conversation_id = ?1 AND user_id = ?2")?
        .execute(params![conversation, who.0 as i64])?;
    c.prepare_cached(
        "UPDATE groups SET member_count = member_count - ?2 WHERE conversation_id = ?1",
    )?
    .execute(params![conversation, gone as i64])?;
    if gone > 0 {
        count_groups(c, who, -1)?;
    }
    Ok(())
}

/// Dissolves the group: nobody is a member any more; answers who were.
fn dissolve_in(c: &Connection, group: GroupId) -> rusqlite::Result<Vec<UserId>> {
    let conversation = name(group);
    let members: Vec<UserId> = {
        let mut stmt =
            c.prepare_cached("SELECT user_id FROM members WHERE conversation_id = ?1")?;
        let rows = stmt.query_map([&conversation], |r| user(r, 0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    c.execute(
        "UPDATE group_counts SET groups = max(groups - 1, 0)
         WHERE user_id IN (SELECT user_id FROM members WHERE conversation_id = ?1)",
        [&conversation],
    )?;
    c.execute(
        "DELETE FROM members WHERE conversation_id = ?1",
        [&conversation],
    )?;
    c.execute(
        "DELETE FROM join_requests WHERE conversation_id = ?1",
        [&conversation],
    )?;
    c.execute(
        "UPDATE groups SET dissolved = 1, member_count = 0, invite_token = NULL
         WHERE conversation_id = ?1",
        [&conversation],
    )?;
    Ok(members)
}

fn admin_count(c: &Connection, group: GroupId) -> rusqlite::Result<u32> {
    c.prepare_cached("SELECT count(*) FROM members WHERE conversation_id = ?1 AND role = 1")?
        .query_row([name(group)], |r| r.get::<_, i64>(0).map(|n| n as u32))
}

fn set_member_role(
    c: &Connection,
    group: GroupId,
    who: UserId,
    role: Role,
) -> rusqlite::Result<()> {
    c.prepare_cached("UPDATE members SET role = ?3 WHERE conversation_id = ?1 AND user_id = ?2")?
        .execute(params![name(group), who.0 as i64, role as i64])?;
    Ok(())
}

fn append_group_in(c: &Connection, m: &NewGroupMessage) -> Tx<Appended> {
    let rise = check_fence(c, m.fence).map_err(|e| match e {
        TxError::Abort(fenced) => TxError::Abort(ChatError::Store(fenced)),
        TxError::Sqlite(e) => TxError::Sqlite(e),
    })?;
    let conversation = name(m.group);
    let mut row = Row {
        conversation: ConversationId::Group(m.group),
        name: &conversation,
        sender: m.sender,
        client_msg_id: &m.client_msg_id,
        message_id: m.message_id,
        server_time_ms: m.server_time_ms,
        body: &m.body,
        mentions: &m.mentions,
        hidden_from: None,
    };
    if let Some(earlier) = earlier_send(c, &row)? {
        return Ok(earlier);
    }
    let (group, sender) = actor_in(c, m.group, m.sender)?;
    rule(policy::may_send(
        &group,
        &sender,
        m.mentions.all,
        m.server_time_ms,
    ))?;
    let mut lookup = Ok(());
    let mentions = policy::kept_mentions(m.sender, &m.mentions, |who| {
        match load_member(c, m.group, who) {
            Ok(found) => found.is_some(),
            Err(e) => {
                lookup = Err(e);
                false
            }
        }
    });
    lookup?;
    raise_fence(c, rise)?;
    row.mentions = &mentions;
    let appended = append_row(c, &row)?;
    let seq = appended.seq as i64;
    let everyone = mentions.all.then_some(EVERYONE);
    for who in everyone
        .into_iter()
        .chain(mentions.users.iter().map(|u| u.0 as i64))
    {
        c.prepare_cached(
            "INSERT INTO mentions (conversation_id, user_id, seq) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![conversation, who, seq])?;
    }
    // The sender's own row only: read mark and slow-mode clock.
    c.prepare_cached(
        "UPDATE members SET read_seq = max(read_seq, ?3), last_sent_ms = ?4
         WHERE conversation_id = ?1 AND user_id = ?2",
    )?
    .execute(params![
        conversation,
        m.sender.0 as i64,
        seq,
        m.server_time_ms
    ])?;
    Ok(appended)
}

impl GroupStore for SqliteChatStore {
    fn create_group(&self, g: NewGroup) -> Outcome<GroupInfo> {
        let limits = self.limits;
        self.db.act(move |c| {
            let mut users = vec![g.owner];
            for &who in &g.members {
                if !users.contains(&who) {
                    users.push(who);
                }
            }
            rule(policy::room_for(0, users.len()))?;
            let (created, oldest_ms): (i64, Option<i64>) = c
                .prepare_cached(
                    "SELECT count(*), min(created_ms) FROM groups
                     WHERE creator = ?1 AND created_ms > ?2",
                )?
                .query_row(
                    params![
                        g.owner.0 as i64,
                        g.now_ms.saturating_sub(policy::CREATION_WINDOW_MS)
                    ],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
            rule(policy::may_create_group(
                created as u32,
                oldest_ms.unwrap_or(g.now_ms),
                g.now_ms,
                limits.max_groups_created_per_day,
            ))?;
            room_in_groups(c, &users, limits.max_groups_per_user)?;
            let conversation = name(g.group);
            c.execute(
                "INSERT INTO conversations (id, last_seq, last_activity_ms) VALUES (?1, 0, ?2)",
                params![conversation, g.now_ms],
            )?;
            c.execute(
                "INSERT INTO groups (conversation_id, group_id, name, avatar, owner, creator, created_ms, member_count)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, 0)",
                params![conversation, g.group.0 as i64, g.name, g.avatar, g.owner.0 as i64, g.now_ms],
            )?;
            let group = load_group(c, g.group)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            add_members(c, &group, &users, g.now_ms, limits)?;
            set_member_role(c, g.group, g.owner, Role::Owner)?;
            ask(c, g.group, g.owner, &g.asked, g.now_ms)?;
            Ok(load_group(c, g.group)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?)
        })
    }

    fn group(&self, group: GroupId) -> Outcome<Option<GroupInfo>> {
        self.db.look(move |c| Ok(load_group(c, group)?))
    }

    fn member(&self, group: GroupId, who: UserId) -> Outcome<Option<MemberInfo>> {
        self.db.look(move |c| Ok(load_member(c, group, who)?))
    }

    fn members_page(
        &self,
        group: GroupId,
        after: Option<UserId>,
        limit: u32,
        query: String,
    ) -> Outcome<Vec<(MemberInfo, Option<String>)>> {
        self.db.look(move |c| {
            // A plain page reads `limit` rows; a search reads the group's
            // rows (at most 6,000, by the primary key) until it has found
            // `limit`, on this reader thread.
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {MEMBER_COLUMNS}, n.display_name FROM members m
                 LEFT JOIN member_names n ON n.user_id = m.user_id
                 WHERE m.conversation_id = ?1 AND m.user_id > ?2 ORDER BY m.user_id LIMIT ?3"
            ))?;
            let after = after.map_or(-1, |u| bound(u.0));
            let scan = if query.is_empty() {
                limit
            } else {
                policy::MAX_MEMBERS
            };
            let mut rows = stmt.query(params![name(group), after, i64::from(scan)])?;
            let mut page = Vec::new();
            while page.len() < limit as usize {
                let Some(row) = rows.next()? else { break };
                let member = member_row(row)?;
                let kept: Option<String> = row.get(7)?;
                // A member without a kept name is answered too, for the
                // service to copy the names and ask again.
                let found = kept.as_deref().is_none_or(|display_name| {
                    policy::member_matches(&query, &member.nickname, display_name)
                });
                if found {
                    page.push((member, kept));
                }
            }
            Ok(page)
        })
    }

    fn remember_names(&self, names: Vec<(UserId, String)>) -> Outcome<()> {
        self.db.act(move |c| {
            let mut stmt = c.prepare_cached(
                "INSERT INTO member_names (user_id, display_name) VALUES (?1, ?2)
                 ON CONFLICT (user_id) DO UPDATE SET display_name = excluded.display_name",
            )?;
            for (who, display_name) in &names {
                stmt.execute(params![bound(who.0), display_name])?;
            }
            Ok(())
        })
    }

    fn unnamed_members(&self, group: GroupId) -> Outcome<Vec<UserId>> {
        self.db.look(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT m.user_id FROM members m
                 WHERE m.conversation_id = ?1
                   AND NOT EXISTS (SELECT 1 FROM member_names n WHERE n.user_id = m.user_id)",
            )?;
            let rows = stmt.query_map([name(group)], |r| user(r, 0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn groups_of(&self, who: UserId) -> Outcome<Vec<GroupId>> {
        self.db.look(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT conversation_id FROM members
                 WHERE user_id = ?1 AND conversation_id >= 'g.' AND conversation_id < 'g/'",
            )?;
            let rows = stmt.query_map([who.0 as i64], |r| conversation(r, 0))?;
            let mut groups = Vec::new();
            for id in rows {
                groups.extend(id?.group());
            }
            Ok(groups)
        })
    }

    fn invite(
        &self,
        group: GroupId,
        actor: UserId,
        users: Vec<UserId>,
        asked: Asked,
        now_ms: i64,
    ) -> Outcome<Joined> {
        let limits = self.limits;
        self.db.act(move |c| {
            let (info, inviter) = actor_in(c, group, actor)?;
            let mut joined = admit(c, &info, Some(&inviter), &users, now_ms, limits)?;
            joined.invited = ask(c, group, actor, &asked, now_ms)?;
            Ok(joined)
        })
    }

    fn invitations(&self, invitee: UserId, now_ms: i64) -> Outcome<Vec<GroupInvitation>> {
        self.db.look(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT g.group_id, g.name, g.member_count, i.inviter,
                        coalesce(n.display_name, ''), i.invited_ms, i.expires_ms
                 FROM group_invitations i
                 JOIN groups g ON g.conversation_id = i.conversation_id AND g.dissolved = 0
                 LEFT JOIN member_names n ON n.user_id = i.inviter
                 WHERE i.invitee = ?1 AND i.expires_ms > ?2
                   AND EXISTS (SELECT 1 FROM members m
                               WHERE m.conversation_id = i.conversation_id AND m.user_id = i.inviter)
                 ORDER BY i.invited_ms DESC, g.group_id LIMIT 500",
            )?;
            let rows = stmt.query_map(params![bound(invitee.0), now_ms], |r| {
                Ok(GroupInvitation {
                    group: GroupId(id(r, 0)?),
                    group_name: r.get(1)?,
                    member_count: r.get::<_, i64>(2)? as u32,
                    inviter: user(r, 3)?,
                    inviter_name: r.get(4)?,
                    invited_ms: r.get(5)?,
                    expires_ms: r.get(6)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn accept_invitation(
        &self,
        group: GroupId,
        invitee: UserId,
        now_ms: i64,
    ) -> Outcome<(UserId, Joined)> {
        let limits = self.limits;
        self.db.act(move |c| {
            let conversation = name(group);
            let inviter: Option<UserId> = c
                .prepare_cached(
                    "SELECT inviter FROM group_invitations
                     WHERE invitee = ?1 AND conversation_id = ?2 AND expires_ms > ?3",
                )?
                .query_row(params![bound(invitee.0), conversation, now_ms], |r| {
                    user(r, 0)
                })
                .optional()?;
            let Some(inviter) = inviter else {
                return refuse(ChatError::UnknownInvitation);
            };
            let Some(info) = load_group(c, group)? else {
                return refuse(ChatError::UnknownInvitation);
            };
            let inviting = load_member(c, group, inviter)?;
            let admission = rule(policy::invitation_admission(&info, inviting.as_ref()))?;
            // A full group, or an invitee in too many groups, refuses here
            // and keeps the invitation.
            let joined = admit_as(
                c,
                &info,
                admission,
                Some(inviter),
                &[invitee],
                now_ms,
                limits,
            )?;
            c.prepare_cached(
                "DELETE FROM group_invitations WHERE invitee = ?1 AND conversation_id = ?2",
            )?
            .execute(params![bound(invitee.0), conversation])?;
            Ok((inviter, joined))
        })
    }

    fn decline_invitation(&self, group: GroupId, invitee: UserId, now_ms: i64) -> Outcome<()> {
        self.db.act(move |c| {
            let gone = c
                .prepare_cached(
                    "DELETE FROM group_invitations
                     WHERE invitee = ?1 AND conversation_id = ?2 AND expires_ms > ?3",
                )?
                .execute(params![bound(invitee.0), name(group), now_ms])?;
            if gone == 0 {
                return refuse(ChatError::UnknownInvitation);
            }
            Ok(())
        })
    }

    fn join_by_token(&self, token: String, who: UserId, now_ms: i64) -> Outcome<(GroupId, Joined)> {
        let limits = self.limits;
        self.db.act(move |c| {
            let found: Option<(i64, i64)> = c
                .prepare_cached(
                    "SELECT group_id, invite_expires_ms FROM groups
                     WHERE invite_token = ?1 AND dissolved = 0",
                )?
                .query_row([&token], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let group = match found {
                Some((id, expires)) if expires > now_ms => GroupId(id as u64),
                _ => return refuse(ChatError::InvalidInvite),
            };
            let Some(info) = load_group(c, group)? else {
                return refuse(ChatError::InvalidInvite);
            };
            Ok((group, admit(c, &info, None, &[who], now_ms, limits)?))
        })
    }

    fn decide_request(
        &self,
        group: GroupId,
        actor: UserId,
        who: UserId,
        approve: bool,
        now_ms: i64,
    ) -> Outcome<bool> {
        let limits = self.limits;
        self.db.act(move |c| {
            let (info, admin) = actor_in(c, group, actor)?;
            rule(policy::may_administer(&admin))?;
            let conversation = name(group);
            let waiting: bool = c
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM join_requests
                                    WHERE conversation_id = ?1 AND user_id = ?2)",
                )?
                .query_row(params![conversation, bound(who.0)], |r| r.get(0))?;
            if !waiting {
                return refuse(ChatError::UnknownRequest);
            }
            if !approve {
                c.prepare_cached(
                    "DELETE FROM join_requests WHERE conversation_id = ?1 AND user_id = ?2",
                )?
                .execute(params![conversation, who.0 as i64])?;
                return Ok(false);
            }
            // Adding takes the request away; a full group refuses and keeps it.
            Ok(!add_members(c, &info, &[who], now_ms, limits)?.is_empty())
        })
    }

    fn requests(&self, group: GroupId, actor: UserId) -> Outcome<Vec<JoinRequest>> {
        self.db.look(move |c| {
            let (_, admin) = actor_in(c, group, actor)?;
            rule(policy::may_administer(&admin))?;
            let mut stmt = c.prepare_cached(
                "SELECT user_id, inviter, requested_ms FROM join_requests
                 WHERE conversation_id = ?1 ORDER BY requested_ms, user_id LIMIT 1000",
            )?;
            let rows = stmt.query_map([name(group)], |r| {
                Ok(JoinRequest {
                    user: user(r, 0)?,
                    inviter: Some(user(r, 1)?).filter(|u| u.0 != 0),
                    requested_ms: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn remove_member(&self, group: GroupId, actor: UserId, who: UserId) -> Outcome<Removal> {
        self.db.act(move |c| {
            let (_, acting) = actor_in(c, group, actor)?;
            let target = load_member(c, group, who)?;
            let removal = rule(policy::removal(&acting, target.as_ref()))?;
            delete_member(c, group, who)?;
            Ok(removal)
        })
    }

    fn update_member(
        &self,
        group: GroupId,
        actor: UserId,
        who: UserId,
        change: MemberChange,
    ) -> Outcome<MemberInfo> {
        self.db.act(move |c| {
            let (_, acting) = actor_in(c, group, actor)?;
            let target = load_member(c, group, who)?;
            let changed = rule(policy::member_change(
                &acting,
                target.as_ref(),
                &change,
                admin_count(c, group)?,
            ))?;
            c.prepare_cached(
                "UPDATE members SET role = ?3, muted_until_ms = ?4, nickname = ?5
                 WHERE conversation_id = ?1 AND user_id = ?2",
            )?
            .execute(params![
                name(group),
                who.0 as i64,
                changed.role as i64,
                changed.muted_until_ms,
                changed.nickname
            ])?;
            Ok(changed)
        })
    }

    fn transfer_owner(&self, group: GroupId, actor: UserId, who: UserId) -> Outcome<()> {
        self.db.act(move |c| {
            let (_, acting) = actor_in(c, group, actor)?;
            let target = load_member(c, group, who)?;
            let former = rule(policy::transfer(
                &acting,
                target.as_ref(),
                admin_count(c, group)?,
            ))?;
            set_member_role(c, group, who, Role::Owner)?;
            set_member_role(c, group, actor, former)?;
            c.prepare_cached("UPDATE groups SET owner = ?2 WHERE conversation_id = ?1")?
                .execute(params![name(group), who.0 as i64])?;
            Ok(())
        })
    }

    fn update_group(&self, group: GroupId, actor: UserId, u: GroupUpdate) -> Outcome<GroupInfo> {
        self.db.act(move |c| {
            let (_, acting) = actor_in(c, group, actor)?;
            rule(policy::may_administer(&acting))?;
            c.prepare_cached(
                "UPDATE groups SET name = coalesce(?2, name), avatar = coalesce(?3, avatar),
                    announcement = coalesce(?4, announcement), mute_all = coalesce(?5, mute_all),
                    slow_mode_secs = coalesce(?6, slow_mode_secs),
                    join_approval = coalesce(?7, join_approval)
                 WHERE conversation_id = ?1",
            )?
            .execute(params![
                name(group),
                u.name,
                u.avatar,
                u.announcement,
                u.mute_all,
                u.slow_mode_secs,
                u.join_approval
            ])?;
            Ok(load_group(c, group)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?)
        })
    }

    fn dissolve(&self, group: GroupId, actor: UserId) -> Outcome<Vec<UserId>> {
        self.db.act(move |c| {
            let (_, acting) = actor_in(c, group, actor)?;
            rule(policy::may_dissolve(&acting))?;
            Ok(dissolve_in(c, group)?)
        })
    }

    fn depart(&self, who: UserId) -> Outcome<Vec<Departure>> {
        self.db.act(move |c| {
            let groups: Vec<GroupId> = {
                let mut stmt = c.prepare_cached(
                    "SELECT conversation_id FROM members
                     WHERE user_id = ?1 AND conversation_id >= 'g.' AND conversation_id < 'g/'",
                )?;
                let rows = stmt.query_map([bound(who.0)], |r| conversation(r, 0))?;
                let mut groups = Vec::new();
                for id in rows {
                    groups.extend(id?.group());
                }
                groups
            };
            let mut departures = Vec::with_capacity(groups.len());
            for group in groups {
                let Some(me) = load_member(c, group, who)? else {
                    continue;
                };
                let mut departure = Departure {
                    group,
                    new_owner: None,
                    dissolved: false,
                };
                if me.role == Role::Owner {
                    let others: Vec<MemberInfo> = {
                        let mut stmt = c.prepare_cached(&format!(
                            "SELECT {MEMBER_COLUMNS} FROM members m
                             WHERE conversation_id = ?1 AND user_id != ?2"
                        ))?;
                        let rows =
                            stmt.query_map(params![name(group), bound(who.0)], member_row)?;
                        rows.collect::<rusqlite::Result<_>>()?
                    };
                    match policy::successor(&others) {
                        Some(next) => {
                            set_member_role(c, group, next, Role::Owner)?;
                            c.prepare_cached(
                                "UPDATE groups SET owner = ?2 WHERE conversation_id = ?1",
                            )?
                            .execute(params![name(group), next.0 as i64])?;
                            departure.new_owner = Some(next);
                        }
                        None => {
                            dissolve_in(c, group)?;
                            departure.dissolved = true;
                        }
                    }
                }
                if !departure.dissolved {
                    delete_member(c, group, who)?;
                }
                departures.push(departure);
            }
            c.prepare_cached("DELETE FROM join_requests WHERE user_id = ?1")?
                .execute([bound(who.0)])?;
            c.prepare_cached("DELETE FROM group_invitations WHERE invitee = ?1 OR inviter = ?1")?
                .execute([bound(who.0)])?;
            c.prepare_cached("DELETE FROM member_names WHERE user_id = ?1")?
                .execute([bound(who.0)])?;
            Ok(departures)
        })
    }

    fn set_invite_token(
        &self,
        group: GroupId,
        actor: UserId,
        token: String,
        expires_ms: i64,
    ) -> Outcome<()> {
        self.db.act(move |c| {
            let (_, acting) = actor_in(c, group, actor)?;
            rule(policy::may_administer(&acting))?;
            c.prepare_cached(
                "UPDATE groups SET invite_token = ?2, invite_expires_ms = ?3 WHERE conversation_id = ?1",
            )?
            .execute(params![name(group), token, expires_ms])?;
            Ok(())
        })
    }

    fn append_group(&self, message: NewGroupMessage) -> Outcome<Appended> {
        self.db.act(move |c| append_group_in(c, &message))
    }
}
