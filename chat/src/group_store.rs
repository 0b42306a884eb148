//! Groups in the chat store. A group is a conversation `g.<group id>` with a row
//! of its own (name, owner, settings, member count) and one `members` row per
//! member (role, nickname, the seq at which they joined, mute, last send).
//!
//! | table | partition | sort | notes |
//! |---|---|---|---|
//! | groups | conversation | | settings, owner, `member_count` (the cap is checked against it) |
//! | members | conversation | user | shared with one-to-one chats; read mark, role, `joined_seq` |
//! | mentions | conversation | (user, seq) | user 0 is @all; read against the read mark for "you were mentioned" |
//! | join_requests | conversation | user | waiting for an admin when the group asks for approval |
//!
//! Every rule that a concurrent request could break (the member cap, the admin
//! cap, who may do what, mutes and slow mode at send time) is checked inside
//! the same write transaction that acts on it, on the store's single writer,
//! so two requests can never both pass a check that only one may.
//! Messages are stored once per group (read diffusion): a send writes the
//! message, its idempotency record, its mentions and the sender's own row,
//! never a row per member.

use rusqlite::{Connection, OptionalExtension as _, params};
use superapp_kit::BoxFuture;
use superapp_kit::sqlite::StoreError;

use crate::ChatError;
use crate::store::{Appended, Row, SqliteChatStore, append_row, earlier_send};

/// At most this many members in a group.
pub const MAX_MEMBERS: u32 = 6_000;
/// At most this many admins besides the owner.
pub const MAX_ADMINS: u32 = 10;
/// At most this many members mentioned by one message.
pub const MAX_MENTIONS: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Member = 0,
    Admin = 1,
    Owner = 2,
}

impl Role {
    fn from_i64(v: i64) -> Self {
        match v {
            2 => Self::Owner,
            1 => Self::Admin,
            _ => Self::Member,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }
}

pub fn group_conversation(group_id: u64) -> String {
    format!("g.{group_id}")
}

/// The group id of a canonical `g.<id>` conversation id.
pub fn parse_group(conversation_id: &str) -> Option<u64> {
    let id: u64 = conversation_id.strip_prefix("g.")?.parse().ok()?;
    (conversation_id == group_conversation(id)).then_some(id)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub group_id: u64,
    pub name: String,
    pub avatar: String,
    pub announcement: String,
    pub owner: u64,
    pub created_ms: i64,
    pub member_count: u32,
    pub mute_all: bool,
    pub slow_mode_secs: u32,
    pub join_approval: bool,
    pub last_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    pub user_id: u64,
    pub role: Role,
    pub nickname: String,
    pub joined_ms: i64,
    pub muted_until_ms: i64,
    /// Messages with seq above this are visible to the member.
    pub joined_seq: u64,
}

#[derive(Debug, Clone)]
pub struct NewGroup {
    pub group_id: u64,
    pub name: String,
    pub avatar: String,
    pub owner: u64,
    pub members: Vec<u64>,
    pub now_ms: i64,
}

/// Changes to a group's settings; None leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct GroupUpdate {
    pub name: Option<String>,
    pub avatar: Option<String>,
    pub announcement: Option<String>,
    pub mute_all: Option<bool>,
    pub slow_mode_secs: Option<u32>,
    pub join_approval: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct NewGroupMessage {
    pub group_id: u64,
    pub sender: u64,
    pub client_msg_id: String,
    pub message_id: u64,
    pub server_time_ms: i64,
    pub body: Vec<u8>,
    pub mentions: Vec<u64>,
    pub mention_all: bool,
}

/// What an invitation or a join did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Joined {
    /// Now members.
    pub added: Vec<u64>,
    /// Waiting for an admin's approval.
    pub pending: Vec<u64>,
}

/// What a removal did to the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The member left of their own accord.
    Left,
    Removed,
}

type Outcome<T> = BoxFuture<'static, Result<T, ChatError>>;

pub trait GroupStore: Send + Sync + 'static {
    /// Creates the group with its owner and first members.
    fn create_group(&self, group: NewGroup) -> Outcome<GroupInfo>;
    /// The group, or None if it does not exist (or was dissolved).
    fn group(&self, group_id: u64) -> Outcome<Option<GroupInfo>>;
    fn member(&self, group_id: u64, user_id: u64) -> Outcome<Option<MemberInfo>>;
    /// Members by user id after `after_user`, at most `limit`.
    fn members_page(&self, group_id: u64, after_user: u64, limit: u32) -> Outcome<Vec<MemberInfo>>;
    /// The groups a user is a member of.
    fn groups_of(&self, user_id: u64) -> Outcome<Vec<u64>>;
    /// `actor` invites `users`: they join at once, or wait for approval when
    /// the group asks for it and the actor is not an admin.
    fn invite(&self, group_id: u64, actor: u64, users: Vec<u64>, now_ms: i64) -> Outcome<Joined>;
    /// Joins with an invitation link's token (directly, or pending approval).
    fn join_by_token(&self, token: String, user: u64, now_ms: i64) -> Outcome<(u64, Joined)>;
    /// An admin approves or rejects a pending join; answers whether it joined.
    fn decide_request(
        &self,
        group_id: u64,
        actor: u64,
        user: u64,
        approve: bool,
        now_ms: i64,
    ) -> Outcome<bool>;
    /// Pending joins: (user, inviter or 0 for a link, requested at).
    fn requests(&self, group_id: u64, actor: u64) -> Outcome<Vec<(u64, u64, i64)>>;
    /// Removes `user` (by an admin over members, the owner over anyone), or
    /// lets them leave when `actor == user`.
    fn remove_member(&self, group_id: u64, actor: u64, user: u64) -> Outcome<Removal>;
    /// The owner makes a member an admin (at most [`MAX_ADMINS`]) or back.
    fn set_role(&self, group_id: u64, actor: u64, user: u64, admin: bool) -> Outcome<()>;
    fn transfer_owner(&self, group_id: u64, actor: u64, user: u64) -> Outcome<()>;
    /// Mutes `user` until a time (0 unmutes): admins over members, the owner over anyone.
    fn mute_member(&self, group_id: u64, actor: u64, user: u64, until_ms: i64) -> Outcome<()>;
    fn set_nickname(&self, group_id: u64, user: u64, nickname: String) -> Outcome<()>;
    /// Admins and the owner change settings.
    fn update_group(&self, group_id: u64, actor: u64, update: GroupUpdate) -> Outcome<GroupInfo>;
    /// The owner dissolves the group; answers who were its members.
    fn dissolve(&self, group_id: u64, actor: u64) -> Outcome<Vec<u64>>;
    /// Admins set the group's invitation token (replacing any earlier one).
    fn set_invite_token(
        &self,
        group_id: u64,
        actor: u64,
        token: String,
        expires_ms: i64,
    ) -> Outcome<()>;
    /// Appends a group message after checking membership, mutes and slow mode;
    /// a repeated client_msg_id gets its first ack, whatever changed since.
    fn append_group(&self, message: NewGroupMessage) -> Outcome<Appended>;
}

const GROUP_COLUMNS: &str = "g.group_id, g.name, g.avatar, g.announcement, g.owner, g.created_ms,
     g.member_count, g.mute_all, g.slow_mode_secs, g.join_approval, c.last_seq";

fn group_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<GroupInfo> {
    Ok(GroupInfo {
        group_id: r.get::<_, i64>(0)? as u64,
        name: r.get(1)?,
        avatar: r.get(2)?,
        announcement: r.get(3)?,
        owner: r.get::<_, i64>(4)? as u64,
        created_ms: r.get(5)?,
        member_count: r.get::<_, i64>(6)? as u32,
        mute_all: r.get(7)?,
        slow_mode_secs: r.get::<_, i64>(8)? as u32,
        join_approval: r.get(9)?,
        last_seq: r.get::<_, i64>(10)? as u64,
    })
}

const MEMBER_COLUMNS: &str = "user_id, role, nickname, joined_ms, muted_until_ms, joined_seq";

fn member_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MemberInfo> {
    Ok(MemberInfo {
        user_id: r.get::<_, i64>(0)? as u64,
        role: Role::from_i64(r.get(1)?),
        nickname: r.get(2)?,
        joined_ms: r.get(3)?,
        muted_until_ms: r.get(4)?,
        joined_seq: r.get::<_, i64>(5)? as u64,
    })
}

fn load_group(c: &Connection, group_id: u64) -> rusqlite::Result<Option<GroupInfo>> {
    c.prepare_cached(&format!(
        "SELECT {GROUP_COLUMNS} FROM groups g JOIN conversations c ON c.id = g.conversation_id
         WHERE g.conversation_id = ?1 AND g.dissolved = 0"
    ))?
    .query_row([group_conversation(group_id)], group_row)
    .optional()
}

fn load_member(c: &Connection, group_id: u64, user: u64) -> rusqlite::Result<Option<MemberInfo>> {
    c.prepare_cached(&format!(
        "SELECT {MEMBER_COLUMNS} FROM members WHERE conversation_id = ?1 AND user_id = ?2"
    ))?
    .query_row(
        params![group_conversation(group_id), user as i64],
        member_row,
    )
    .optional()
}

/// The group and the actor's membership, or the refusal that ends the request.
fn actor_in(
    c: &Connection,
    group_id: u64,
    actor: u64,
) -> Result<(GroupInfo, MemberInfo), ChatError> {
    let Some(group) = load_group(c, group_id)? else {
        return Err(ChatError::UnknownGroup);
    };
    match load_member(c, group_id, actor)? {
        Some(member) => Ok((group, member)),
        None => Err(ChatError::NotMember),
    }
}

/// Inserts members who are not in yet, within the cap; answers who was added.
fn add_members(
    c: &Connection,
    group: &GroupInfo,
    users: &[u64],
    now_ms: i64,
) -> Result<Vec<u64>, ChatError> {
    let conversation = group_conversation(group.group_id);
    let mut fresh = Vec::new();
    for &user in users {
        if !fresh.contains(&user) && load_member(c, group.group_id, user)?.is_none() {
            fresh.push(user);
        }
    }
    if group.member_count as usize + fresh.len() > MAX_MEMBERS as usize {
        return Err(ChatError::GroupFull { max: MAX_MEMBERS });
    }
    for &user in &fresh {
        // A member sees messages from the time they join: read mark and
        // visibility both start at the group's current seq.
        c.prepare_cached(
            "INSERT INTO members (conversation_id, user_id, peer_id, read_seq, role, joined_seq, joined_ms)
             VALUES (?1, ?2, 0, ?3, 0, ?3, ?4)",
        )?
        .execute(params![conversation, user as i64, group.last_seq as i64, now_ms])?;
        c.prepare_cached("DELETE FROM join_requests WHERE conversation_id = ?1 AND user_id = ?2")?
            .execute(params![conversation, user as i64])?;
    }
    c.prepare_cached(
        "UPDATE groups SET member_count = member_count + ?2 WHERE conversation_id = ?1",
    )?
    .execute(params![conversation, fresh.len() as i64])?;
    Ok(fresh)
}

fn request_join(
    c: &Connection,
    group_id: u64,
    users: &[u64],
    inviter: u64,
    now_ms: i64,
) -> rusqlite::Result<Vec<u64>> {
    let mut pending = Vec::new();
    for &user in users {
        if load_member(c, group_id, user)?.is_some() || pending.contains(&user) {
            continue;
        }
        c.prepare_cached(
            "INSERT INTO join_requests (conversation_id, user_id, inviter, requested_ms)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            group_conversation(group_id),
            user as i64,
            inviter as i64,
            now_ms
        ])?;
        pending.push(user);
    }
    Ok(pending)
}

fn delete_member(c: &Connection, group_id: u64, user: u64) -> rusqlite::Result<()> {
    let conversation = group_conversation(group_id);
    let gone = c
        .prepare_cached("DELETE FROM members WHERE conversation_id = ?1 AND user_id = ?2")?
        .execute(params![conversation, user as i64])?;
    c.prepare_cached(
        "UPDATE groups SET member_count = member_count - ?2 WHERE conversation_id = ?1",
    )?
    .execute(params![conversation, gone as i64])?;
    Ok(())
}

fn admin_count(c: &Connection, group_id: u64) -> rusqlite::Result<i64> {
    c.prepare_cached("SELECT count(*) FROM members WHERE conversation_id = ?1 AND role = 1")?
        .query_row([group_conversation(group_id)], |r| r.get(0))
}

fn set_member_role(c: &Connection, group_id: u64, user: u64, role: Role) -> rusqlite::Result<()> {
    c.prepare_cached("UPDATE members SET role = ?3 WHERE conversation_id = ?1 AND user_id = ?2")?
        .execute(params![
            group_conversation(group_id),
            user as i64,
            role as i64
        ])?;
    Ok(())
}

/// Whether `actor` may act on `target` (remove, mute): the owner over anyone
/// else, an admin over plain members.
fn outranks(actor: &MemberInfo, target: &MemberInfo) -> bool {
    actor.user_id != target.user_id
        && (actor.role == Role::Owner || (actor.role == Role::Admin && target.role == Role::Member))
}

fn append_group_in(c: &Connection, m: &NewGroupMessage) -> Result<Appended, ChatError> {
    let conversation = group_conversation(m.group_id);
    if let Some(earlier) = earlier_send(c, &conversation, m.sender, &m.client_msg_id)? {
        return Ok(earlier);
    }
    let (group, sender) = actor_in(c, m.group_id, m.sender)?;
    let now = m.server_time_ms;
    if sender.muted_until_ms > now {
        return Err(ChatError::Muted {
            until_ms: sender.muted_until_ms,
        });
    }
    let moderated = sender.role == Role::Member;
    if moderated && group.mute_all {
        return Err(ChatError::GroupMuted);
    }
    if m.mention_all && moderated {
        return Err(ChatError::MentionAllNotAllowed);
    }
    if moderated && group.slow_mode_secs > 0 {
        let last_sent: i64 = c
            .prepare_cached(
                "SELECT last_sent_ms FROM members WHERE conversation_id = ?1 AND user_id = ?2",
            )?
            .query_row(params![conversation, m.sender as i64], |r| r.get(0))?;
        let next = last_sent + i64::from(group.slow_mode_secs) * 1000;
        if last_sent > 0 && now < next {
            return Err(ChatError::SlowMode {
                retry_after_ms: (next - now) as u64,
            });
        }
    }
    let mut mentioned: Vec<u64> = Vec::new();
    if m.mention_all {
        mentioned.push(0);
    }
    for &user in &m.mentions {
        if user != m.sender
            && !mentioned.contains(&user)
            && load_member(c, m.group_id, user)?.is_some()
        {
            mentioned.push(user);
        }
    }
    let appended = append_row(
        c,
        &Row {
            conversation_id: &conversation,
            sender: m.sender,
            client_msg_id: &m.client_msg_id,
            message_id: m.message_id,
            server_time_ms: now,
            body: &m.body,
            mentions: &mentioned,
        },
    )?;
    let seq = appended.seq as i64;
    for &user in &mentioned {
        c.prepare_cached(
            "INSERT INTO mentions (conversation_id, user_id, seq) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![conversation, user as i64, seq])?;
    }
    // The sender's own row only: read mark and slow-mode clock.
    c.prepare_cached(
        "UPDATE members SET read_seq = max(read_seq, ?3), last_sent_ms = ?4
         WHERE conversation_id = ?1 AND user_id = ?2",
    )?
    .execute(params![conversation, m.sender as i64, seq, now])?;
    Ok(appended)
}

/// A refusal is an answer (and commits nothing, as every rule is checked
/// before the first write); a SQL failure fails the job, which rolls back its
/// writes.
fn split<T>(outcome: Result<T, ChatError>) -> rusqlite::Result<Result<T, ChatError>> {
    match outcome {
        Err(ChatError::Store(StoreError::Sqlite(e))) => Err(e),
        other => Ok(other),
    }
}

impl SqliteChatStore {
    /// Runs a group operation on the writer.
    fn act<T, F>(&self, mut f: F) -> Outcome<T>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> Result<T, ChatError> + Send + 'static,
    {
        let db = self.db.clone();
        Box::pin(async move { db.write(move |c| split(f(c))).await? })
    }

    /// Runs a group read on a reader connection.
    fn look<T, F>(&self, f: F) -> Outcome<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, ChatError> + Send + 'static,
    {
        let db = self.db.clone();
        Box::pin(async move { db.read(move |c| split(f(c))).await? })
    }
}

impl GroupStore for SqliteChatStore {
    fn create_group(&self, g: NewGroup) -> Outcome<GroupInfo> {
        self.act(move |c| {
            let mut users = vec![g.owner];
            for &user in &g.members {
                if !users.contains(&user) {
                    users.push(user);
                }
            }
            if users.len() > MAX_MEMBERS as usize {
                return Err(ChatError::GroupFull { max: MAX_MEMBERS });
            }
            let conversation = group_conversation(g.group_id);
            c.execute(
                "INSERT INTO conversations (id, last_seq, last_activity_ms) VALUES (?1, 0, ?2)",
                params![conversation, g.now_ms],
            )?;
            c.execute(
                "INSERT INTO groups (conversation_id, group_id, name, avatar, owner, created_ms, member_count)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)",
                params![conversation, g.group_id as i64, g.name, g.avatar, g.owner as i64, g.now_ms],
            )?;
            let group = load_group(c, g.group_id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            add_members(c, &group, &users, g.now_ms)?;
            set_member_role(c, g.group_id, g.owner, Role::Owner)?;
            load_group(c, g.group_id)?.ok_or(ChatError::UnknownGroup)
        })
    }

    fn group(&self, group_id: u64) -> Outcome<Option<GroupInfo>> {
        self.look(move |c| load_group(c, group_id).map_err(Into::into))
    }

    fn member(&self, group_id: u64, user_id: u64) -> Outcome<Option<MemberInfo>> {
        self.look(move |c| load_member(c, group_id, user_id).map_err(Into::into))
    }

    fn members_page(&self, group_id: u64, after_user: u64, limit: u32) -> Outcome<Vec<MemberInfo>> {
        self.look(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {MEMBER_COLUMNS} FROM members
                 WHERE conversation_id = ?1 AND user_id > ?2 ORDER BY user_id LIMIT ?3"
            ))?;
            let rows = stmt.query_map(
                params![
                    group_conversation(group_id),
                    after_user.min(i64::MAX as u64) as i64,
                    i64::from(limit)
                ],
                member_row,
            )?;
            rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
        })
    }

    fn groups_of(&self, user_id: u64) -> Outcome<Vec<u64>> {
        self.look(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT conversation_id FROM members
                 WHERE user_id = ?1 AND conversation_id >= 'g.' AND conversation_id < 'g/'",
            )?;
            let rows = stmt.query_map([user_id as i64], |r| r.get::<_, String>(0))?;
            let mut groups = Vec::new();
            for id in rows {
                groups.extend(parse_group(&id?));
            }
            Ok(groups)
        })
    }

    fn invite(&self, group_id: u64, actor: u64, users: Vec<u64>, now_ms: i64) -> Outcome<Joined> {
        self.act(move |c| {
            let (group, inviter) = actor_in(c, group_id, actor)?;
            if group.join_approval && inviter.role == Role::Member {
                let pending = request_join(c, group_id, &users, actor, now_ms)?;
                return Ok(Joined {
                    added: Vec::new(),
                    pending,
                });
            }
            add_members(c, &group, &users, now_ms).map(|added| Joined {
                added,
                pending: Vec::new(),
            })
        })
    }

    fn join_by_token(&self, token: String, user: u64, now_ms: i64) -> Outcome<(u64, Joined)> {
        self.act(move |c| {
            let found: Option<(i64, i64)> = c
                .prepare_cached(
                    "SELECT group_id, invite_expires_ms FROM groups
                     WHERE invite_token = ?1 AND dissolved = 0",
                )?
                .query_row([&token], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let group_id = match found {
                Some((id, expires)) if expires > now_ms => id as u64,
                _ => return Err(ChatError::InvalidInvite),
            };
            let Some(group) = load_group(c, group_id)? else {
                return Err(ChatError::InvalidInvite);
            };
            if group.join_approval {
                let pending = request_join(c, group_id, &[user], 0, now_ms)?;
                return Ok((
                    group_id,
                    Joined {
                        added: Vec::new(),
                        pending,
                    },
                ));
            }
            add_members(c, &group, &[user], now_ms).map(|added| {
                (
                    group_id,
                    Joined {
                        added,
                        pending: Vec::new(),
                    },
                )
            })
        })
    }

    fn decide_request(
        &self,
        group_id: u64,
        actor: u64,
        user: u64,
        approve: bool,
        now_ms: i64,
    ) -> Outcome<bool> {
        self.act(move |c| {
            let (group, admin) = actor_in(c, group_id, actor)?;
            if admin.role == Role::Member {
                return Err(ChatError::NotAllowed);
            }
            let conversation = group_conversation(group_id);
            let waiting: bool = c
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM join_requests
                                    WHERE conversation_id = ?1 AND user_id = ?2)",
                )?
                .query_row(params![conversation, user as i64], |r| r.get(0))?;
            if !waiting {
                return Err(ChatError::UnknownRequest);
            }
            if !approve {
                c.prepare_cached(
                    "DELETE FROM join_requests WHERE conversation_id = ?1 AND user_id = ?2",
                )?
                .execute(params![conversation, user as i64])?;
                return Ok(false);
            }
            // Adding takes the request away; a full group refuses and keeps it.
            add_members(c, &group, &[user], now_ms).map(|added| !added.is_empty())
        })
    }

    fn requests(&self, group_id: u64, actor: u64) -> Outcome<Vec<(u64, u64, i64)>> {
        self.look(move |c| {
            let (_, admin) = actor_in(c, group_id, actor)?;
            if admin.role == Role::Member {
                return Err(ChatError::NotAllowed);
            }
            let mut stmt = c.prepare_cached(
                "SELECT user_id, inviter, requested_ms FROM join_requests
                 WHERE conversation_id = ?1 ORDER BY requested_ms, user_id LIMIT 1000",
            )?;
            let rows = stmt.query_map([group_conversation(group_id)], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, i64>(1)? as u64,
                    r.get(2)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
        })
    }

    fn remove_member(&self, group_id: u64, actor: u64, user: u64) -> Outcome<Removal> {
        self.act(move |c| {
            let (_, acting) = actor_in(c, group_id, actor)?;
            if actor == user {
                if acting.role == Role::Owner {
                    return Err(ChatError::OwnerMustTransfer);
                }
                delete_member(c, group_id, user)?;
                return Ok(Removal::Left);
            }
            let Some(target) = load_member(c, group_id, user)? else {
                return Err(ChatError::UnknownMember);
            };
            if !outranks(&acting, &target) {
                return Err(ChatError::NotAllowed);
            }
            delete_member(c, group_id, user)?;
            Ok(Removal::Removed)
        })
    }

    fn set_role(&self, group_id: u64, actor: u64, user: u64, admin: bool) -> Outcome<()> {
        self.act(move |c| {
            let (_, acting) = actor_in(c, group_id, actor)?;
            if acting.role != Role::Owner {
                return Err(ChatError::NotAllowed);
            }
            let Some(target) = load_member(c, group_id, user)? else {
                return Err(ChatError::UnknownMember);
            };
            if target.role == Role::Owner {
                return Err(ChatError::NotAllowed);
            }
            if admin
                && target.role == Role::Member
                && admin_count(c, group_id)? >= i64::from(MAX_ADMINS)
            {
                return Err(ChatError::TooManyAdmins { max: MAX_ADMINS });
            }
            let role = if admin { Role::Admin } else { Role::Member };
            set_member_role(c, group_id, user, role)?;
            Ok(())
        })
    }

    fn transfer_owner(&self, group_id: u64, actor: u64, user: u64) -> Outcome<()> {
        self.act(move |c| {
            let (_, acting) = actor_in(c, group_id, actor)?;
            if acting.role != Role::Owner || actor == user {
                return Err(ChatError::NotAllowed);
            }
            let Some(target) = load_member(c, group_id, user)? else {
                return Err(ChatError::UnknownMember);
            };
            // The former owner stays on as an admin, as people expect, if the
            // admins' cap leaves room (a new owner who was an admin makes room).
            let admins = admin_count(c, group_id)? - i64::from(target.role == Role::Admin);
            let former = if admins < i64::from(MAX_ADMINS) {
                Role::Admin
            } else {
                Role::Member
            };
            set_member_role(c, group_id, user, Role::Owner)?;
            set_member_role(c, group_id, actor, former)?;
            c.prepare_cached("UPDATE groups SET owner = ?2 WHERE conversation_id = ?1")?
                .execute(params![group_conversation(group_id), user as i64])?;
            Ok(())
        })
    }

    fn mute_member(&self, group_id: u64, actor: u64, user: u64, until_ms: i64) -> Outcome<()> {
        self.act(move |c| {
            let (_, acting) = actor_in(c, group_id, actor)?;
            let Some(target) = load_member(c, group_id, user)? else {
                return Err(ChatError::UnknownMember);
            };
            if !outranks(&acting, &target) {
                return Err(ChatError::NotAllowed);
            }
            c.prepare_cached(
                "UPDATE members SET muted_until_ms = ?3 WHERE conversation_id = ?1 AND user_id = ?2",
            )?
            .execute(params![group_conversation(group_id), user as i64, until_ms.max(0)])?;
            Ok(())
        })
    }

    fn set_nickname(&self, group_id: u64, user: u64, nickname: String) -> Outcome<()> {
        self.act(move |c| {
            actor_in(c, group_id, user)?;
            c.prepare_cached(
                "UPDATE members SET nickname = ?3 WHERE conversation_id = ?1 AND user_id = ?2",
            )?
            .execute(params![group_conversation(group_id), user as i64, nickname])?;
            Ok(())
        })
    }

    fn update_group(&self, group_id: u64, actor: u64, u: GroupUpdate) -> Outcome<GroupInfo> {
        self.act(move |c| {
            let (_, acting) = actor_in(c, group_id, actor)?;
            if acting.role == Role::Member {
                return Err(ChatError::NotAllowed);
            }
            c.prepare_cached(
                "UPDATE groups SET name = coalesce(?2, name), avatar = coalesce(?3, avatar),
                    announcement = coalesce(?4, announcement), mute_all = coalesce(?5, mute_all),
                    slow_mode_secs = coalesce(?6, slow_mode_secs),
                    join_approval = coalesce(?7, join_approval)
                 WHERE conversation_id = ?1",
            )?
            .execute(params![
                group_conversation(group_id),
                u.name,
                u.avatar,
                u.announcement,
                u.mute_all,
                u.slow_mode_secs,
                u.join_approval
            ])?;
            load_group(c, group_id)?.ok_or(ChatError::UnknownGroup)
        })
    }

    fn dissolve(&self, group_id: u64, actor: u64) -> Outcome<Vec<u64>> {
        self.act(move |c| {
            let (_, acting) = actor_in(c, group_id, actor)?;
            if acting.role != Role::Owner {
                return Err(ChatError::NotAllowed);
            }
            let conversation = group_conversation(group_id);
            let members: Vec<u64> = {
                let mut stmt =
                    c.prepare_cached("SELECT user_id FROM members WHERE conversation_id = ?1")?;
                let rows = stmt.query_map([&conversation], |r| r.get::<_, i64>(0))?;
                rows.map(|r| r.map(|v| v as u64))
                    .collect::<rusqlite::Result<_>>()?
            };
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
        })
    }

    fn set_invite_token(
        &self,
        group_id: u64,
        actor: u64,
        token: String,
        expires_ms: i64,
    ) -> Outcome<()> {
        self.act(move |c| {
            let (_, acting) = actor_in(c, group_id, actor)?;
            if acting.role == Role::Member {
                return Err(ChatError::NotAllowed);
            }
            c.prepare_cached(
                "UPDATE groups SET invite_token = ?2, invite_expires_ms = ?3 WHERE conversation_id = ?1",
            )?
            .execute(params![group_conversation(group_id), token, expires_ms])?;
            Ok(())
        })
    }

    fn append_group(&self, message: NewGroupMessage) -> Outcome<Appended> {
        self.act(move |c| append_group_in(c, &message))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn store() -> (tempfile::TempDir, Arc<SqliteChatStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteChatStore::open(&dir.path().join("chat.db"), None).unwrap();
        (dir, Arc::new(store))
    }

    async fn group_of(store: &SqliteChatStore, members: std::ops::Range<u64>) -> GroupInfo {
        store
            .create_group(NewGroup {
                group_id: 1,
                name: "g".into(),
                avatar: String::new(),
                owner: 1,
                members: members.collect(),
                now_ms: 1,
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn concurrent_joins_at_the_cap_never_overshoot() {
        let (_dir, store) = store();
        // The owner and 5,989 members: room for ten more.
        let group = group_of(&store, 2..5_991).await;
        assert_eq!(group.member_count, 5_990);
        let tasks: Vec<_> = (0..40u64)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.invite(1, 1, vec![100_000 + i], 2).await })
            })
            .collect();
        let mut added = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(joined) => added += joined.added.len(),
                Err(ChatError::GroupFull { max }) => assert_eq!(max, MAX_MEMBERS),
                Err(other) => panic!("{other}"),
            }
        }
        assert_eq!(added, 10);
        let group = store.group(1).await.unwrap().unwrap();
        assert_eq!(group.member_count, MAX_MEMBERS);
        let listed = store.members_page(1, 0, 10_000).await.unwrap();
        assert_eq!(listed.len(), MAX_MEMBERS as usize);
        // The 6001st is refused and changes nothing.
        assert!(matches!(
            store.invite(1, 1, vec![999_999], 3).await,
            Err(ChatError::GroupFull { .. })
        ));
        assert_eq!(
            store.group(1).await.unwrap().unwrap().member_count,
            MAX_MEMBERS
        );
    }

    #[tokio::test]
    async fn a_group_too_big_at_creation_leaves_nothing_behind() {
        let (_dir, store) = store();
        let refused = store
            .create_group(NewGroup {
                group_id: 1,
                name: "g".into(),
                avatar: String::new(),
                owner: 1,
                members: (2..6_002).collect(),
                now_ms: 1,
            })
            .await;
        assert!(matches!(refused, Err(ChatError::GroupFull { .. })));
        assert_eq!(store.group(1).await.unwrap(), None);
        assert!(store.groups_of(1).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_message_writes_no_row_per_member() {
        let (_dir, store) = store();
        group_of(&store, 2..1_000).await;
        let appended = store
            .append_group(NewGroupMessage {
                group_id: 1,
                sender: 5,
                client_msg_id: "m1".into(),
                message_id: 9,
                server_time_ms: 10,
                body: b"x".to_vec(),
                mentions: vec![6, 7, 123_456],
                mention_all: false,
            })
            .await
            .unwrap();
        assert_eq!(appended.seq, 1);
        // Mentions of non-members are dropped; members keep their rows as they were.
        assert_eq!(appended.mentions, vec![6, 7]);
        let changed: i64 = store
            .db
            .read(|c| {
                c.query_row(
                    "SELECT count(*) FROM members WHERE conversation_id = 'g.1' AND read_seq > 0",
                    [],
                    |r| r.get(0),
                )
            })
            .await
            .unwrap();
        assert_eq!(changed, 1, "only the sender's own row moves");
    }
}
