//! The embedded backend of [`ChatStore`] and [`GroupStore`](super::GroupStore):
//! one SQLite file, written by its single writer thread with group commit.
//! Conversation ids are stored as their wire names (`d.1.2`, `g.7`), user
//! and group ids as integers.

mod groups;

use std::path::Path;
use std::sync::Arc;

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension as _, params};
use superapp_kit::BoxFuture;
use superapp_kit::metrics::Histogram;
use superapp_kit::sqlite::{Database, TxError};

use super::{ChatStore, StoreError};
use crate::model::{
    Appended, ConversationId, Fence, GroupLimits, GroupSummary, InboxCursor, InboxEntry, InboxPage,
    Mentions, NewMessage, StoredMessage, UserId, View,
};
use crate::policy::{self, Withheld};

const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    last_activity_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE members (
    conversation_id TEXT NOT NULL,
    user_id INTEGER NOT NULL,
    peer_id INTEGER NOT NULL,
    read_seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;
CREATE INDEX members_by_user ON members (user_id, conversation_id);
CREATE TABLE messages (
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    sender INTEGER NOT NULL,
    client_msg_id TEXT NOT NULL,
    server_time_ms INTEGER NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
CREATE TABLE sent (
    conversation_id TEXT NOT NULL,
    sender INTEGER NOT NULL,
    client_msg_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    server_time_ms INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, sender, client_msg_id)
) WITHOUT ROWID;
",
    "
ALTER TABLE messages ADD COLUMN mentions TEXT NOT NULL DEFAULT '';
ALTER TABLE members ADD COLUMN role INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN nickname TEXT NOT NULL DEFAULT '';
ALTER TABLE members ADD COLUMN joined_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN joined_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN muted_until_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN last_sent_ms INTEGER NOT NULL DEFAULT 0;
CREATE TABLE groups (
    conversation_id TEXT PRIMARY KEY,
    group_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    avatar TEXT NOT NULL DEFAULT '',
    announcement TEXT NOT NULL DEFAULT '',
    owner INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    member_count INTEGER NOT NULL,
    mute_all INTEGER NOT NULL DEFAULT 0,
    slow_mode_secs INTEGER NOT NULL DEFAULT 0,
    join_approval INTEGER NOT NULL DEFAULT 0,
    invite_token TEXT,
    invite_expires_ms INTEGER NOT NULL DEFAULT 0,
    dissolved INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE UNIQUE INDEX groups_by_invite ON groups (invite_token) WHERE invite_token IS NOT NULL;
CREATE TABLE join_requests (
    conversation_id TEXT NOT NULL,
    user_id INTEGER NOT NULL,
    inviter INTEGER NOT NULL,
    requested_ms INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;
CREATE TABLE mentions (
    conversation_id TEXT NOT NULL,
    user_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, user_id, seq)
) WITHOUT ROWID;
",
    "
CREATE TABLE fences (
    shard INTEGER PRIMARY KEY,
    high_water INTEGER NOT NULL
);
",
    // Who created each group (the owner may change), for the daily creation
    // cap; how many groups each user is in, for the membership cap.
    "
ALTER TABLE groups ADD COLUMN creator INTEGER NOT NULL DEFAULT 0;
UPDATE groups SET creator = owner;
CREATE INDEX groups_by_creator ON groups (creator, created_ms);
CREATE TABLE group_counts (
    user_id INTEGER PRIMARY KEY,
    groups INTEGER NOT NULL
);
INSERT INTO group_counts (user_id, groups)
    SELECT user_id, count(*) FROM members
    WHERE conversation_id >= 'g.' AND conversation_id < 'g/'
    GROUP BY user_id;
",
    // The display names member lists show and searches match: one row a
    // user, so a search is one query of the group's rows joined to these.
    "
CREATE TABLE member_names (
    user_id INTEGER PRIMARY KEY,
    display_name TEXT NOT NULL
);
",
    // Pending invitations into groups (`sqlite/groups.rs`), by invitee: one
    // per group, refreshed by the next.
    "
CREATE TABLE group_invitations (
    invitee INTEGER NOT NULL,
    conversation_id TEXT NOT NULL,
    inviter INTEGER NOT NULL,
    invited_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (invitee, conversation_id)
) WITHOUT ROWID;
",
    // Views: the member a one-to-one message was withheld from (0: nobody),
    // and on that member's row how many were, the seq of the last, and the
    // last message they see before the run of withheld ones that ends there,
    // so that their conversation list and read mark read no message.
    "
ALTER TABLE messages ADD COLUMN hidden_from INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN hidden INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN hidden_last INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN shown_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN shown_ms INTEGER NOT NULL DEFAULT 0;
",
];

/// `user_id` 0 in `mentions` rows, and `0` in a message's `mentions` column,
/// stand for `@all`: no user has id 0.
const EVERYONE: i64 = 0;

pub struct SqliteChatStore {
    pub(crate) db: Database,
    /// What one user may do with groups, applied in the writes that add.
    pub(crate) limits: GroupLimits,
}

impl SqliteChatStore {
    /// Opens the store with the default [`GroupLimits`].
    pub fn open(path: &Path, batch_sizes: Option<Arc<Histogram>>) -> Result<Self, StoreError> {
        Ok(Self {
            db: Database::open(path, MIGRATIONS, batch_sizes)?,
            limits: GroupLimits::default(),
        })
    }

    /// The store with these limits on one user's groups.
    pub fn with_group_limits(self, limits: GroupLimits) -> Self {
        Self { limits, ..self }
    }
}

/// A column as an id: stored ids are below 2^63, written by this code.
fn id(r: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<u64> {
    r.get::<_, i64>(index).map(|v| v as u64)
}

fn user(r: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<UserId> {
    id(r, index).map(UserId)
}

/// Ids above `i64::MAX` do not exist in the store; binding one as such keeps
/// a range query's meaning ("after it": nothing) instead of wrapping.
fn bound(id: u64) -> i64 {
    id.min(i64::MAX as u64) as i64
}

fn conversation(r: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<ConversationId> {
    let name: String = r.get(index)?;
    name.parse()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(index, Type::Text, Box::new(e)))
}

fn encode_mentions(mentions: &Mentions) -> String {
    let all = mentions.all.then_some(EVERYONE as u64);
    all.into_iter()
        .chain(mentions.users.iter().map(|u| u.0))
        .map(|id| id.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn decode_mentions(text: &str) -> Mentions {
    let mut mentions = Mentions::default();
    for id in text.split(',').filter_map(|id| id.parse::<u64>().ok()) {
        if id == EVERYONE as u64 {
            mentions.all = true;
        } else {
            mentions.users.push(UserId(id));
        }
    }
    mentions
}

/// Checks `fence` against the shard's durable high-water mark inside the
/// writer's transaction: a lower number is refused, before anything is
/// written. Answers the fence when the mark must rise to it, for
/// [`raise_fence`] to write with the write it guards. No fence (the single
/// process of the small tier) passes.
fn check_fence(c: &Connection, fence: Option<Fence>) -> Result<Option<Fence>, TxError<StoreError>> {
    let Some(fence) = fence else {
        return Ok(None);
    };
    match high_water(c, fence.shard)? {
        Some(high) if high > fence.token => Err(TxError::Abort(StoreError::Fenced {
            shard: fence.shard,
            fence: fence.token,
            high_water: high,
        })),
        Some(high) if high == fence.token => Ok(None),
        _ => Ok(Some(fence)),
    }
}

/// Raises the shard's mark to the fence [`check_fence`] answered.
fn raise_fence(c: &Connection, rise: Option<Fence>) -> rusqlite::Result<()> {
    let Some(fence) = rise else {
        return Ok(());
    };
    c.prepare_cached(
        "INSERT INTO fences (shard, high_water) VALUES (?1, ?2)
         ON CONFLICT (shard) DO UPDATE SET high_water = excluded.high_water",
    )?
    .execute(params![fence.shard, bound(fence.token)])?;
    Ok(())
}

fn high_water(c: &Connection, shard: u32) -> rusqlite::Result<Option<u64>> {
    c.prepare_cached("SELECT high_water FROM fences WHERE shard = ?1")?
        .query_row([shard], |r| id(r, 0))
        .optional()
}

/// A write that a stale fence may refuse, answered as the store's outcome.
async fn fenced<T, F>(db: &Database, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnMut(&Connection) -> Result<T, TxError<StoreError>> + Send + 'static,
{
    db.transact(f).await?
}

/// The first ack of a repeated (sender, client_msg_id) in a conversation.
fn earlier_send(c: &Connection, row: &Row<'_>) -> rusqlite::Result<Option<Appended>> {
    let (conversation, sender, client_msg_id) = (row.conversation, row.sender, row.client_msg_id);
    c.prepare_cached(
        "SELECT seq, message_id, server_time_ms FROM sent
         WHERE conversation_id = ?1 AND sender = ?2 AND client_msg_id = ?3",
    )?
    .query_row(params![row.name, sender.0 as i64, client_msg_id], |r| {
        Ok(Appended {
            conversation,
            seq: id(r, 0)?,
            message_id: id(r, 1)?,
            server_time_ms: r.get(2)?,
            duplicate: true,
            mentions: Mentions::default(),
        })
    })
    .optional()
}

/// A message to write as it is.
#[derive(Clone, Copy)]
struct Row<'a> {
    conversation: ConversationId,
    /// The conversation's wire name, as stored.
    name: &'a str,
    sender: UserId,
    client_msg_id: &'a str,
    message_id: u64,
    server_time_ms: i64,
    body: &'a [u8],
    mentions: &'a Mentions,
    /// The one-to-one member it is withheld from.
    hidden_from: Option<UserId>,
}

/// Takes the conversation's next seq and writes the message and its
/// idempotency record; creates the conversation on its first message.
fn append_row(c: &Connection, row: &Row<'_>) -> rusqlite::Result<Appended> {
    let name = row.name;
    let seq: i64 = c
        .prepare_cached(
            "INSERT INTO conversations (id, last_seq, last_activity_ms) VALUES (?1, 1, ?2)
             ON CONFLICT (id) DO UPDATE SET last_seq = last_seq + 1, last_activity_ms = ?2
             RETURNING last_seq",
        )?
        .query_row(params![name, row.server_time_ms], |r| r.get(0))?;
    c.prepare_cached(
        "INSERT INTO messages (conversation_id, seq, message_id, sender, client_msg_id, server_time_ms, body, mentions, hidden_from)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        name,
        seq,
        row.message_id as i64,
        row.sender.0 as i64,
        row.client_msg_id,
        row.server_time_ms,
        row.body,
        encode_mentions(row.mentions),
        row.hidden_from.map_or(0, |u| u.0 as i64),
    ])?;
    c.prepare_cached(
        "INSERT INTO sent (conversation_id, sender, client_msg_id, seq, message_id, server_time_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        name,
        row.sender.0 as i64,
        row.client_msg_id,
        seq,
        row.message_id as i64,
        row.server_time_ms
    ])?;
    Ok(Appended {
        conversation: row.conversation,
        seq: seq as u64,
        message_id: row.message_id,
        server_time_ms: row.server_time_ms,
        duplicate: false,
        mentions: row.mentions.clone(),
    })
}

fn append_in(c: &Connection, m: &NewMessage) -> Result<Appended, TxError<StoreError>> {
    let rise = check_fence(c, m.fence)?;
    let name = m.conversation.to_string();
    let row = Row {
        conversation: m.conversation,
        name: &name,
        sender: m.sender,
        client_msg_id: &m.client_msg_id,
        message_id: m.message_id,
        server_time_ms: m.server_time_ms,
        body: &m.body,
        mentions: &Mentions::default(),
        hidden_from: m
            .withheld
            .then(|| m.conversation.peer_of(m.sender))
            .flatten(),
    };
    if let Some(earlier) = earlier_send(c, &row)? {
        return Ok(earlier);
    }
    raise_fence(c, rise)?;
    // A withheld message ends what its recipient sees at the message before
    // it, as of that message's time: read before the append moves it.
    let before_ms: i64 = match row.hidden_from {
        Some(_) => c
            .prepare_cached("SELECT last_activity_ms FROM conversations WHERE id = ?1")?
            .query_row([&name], |r| r.get(0))
            .optional()?
            .unwrap_or(0),
        None => 0,
    };
    let appended = append_row(c, &row)?;
    let seq = appended.seq as i64;
    // Member rows change only when created (with the conversation's first
    // message) and when the sender's read mark moves: the list order comes
    // from the conversation's last activity, so a message touches no
    // per-member index.
    if seq == 1 {
        let [a, b] = m.members;
        for (member, peer) in [(a, b), (b, a)] {
            c.prepare_cached(
                "INSERT INTO members (conversation_id, user_id, peer_id) VALUES (?1, ?2, ?3)
                 ON CONFLICT (conversation_id, user_id) DO NOTHING",
            )?
            .execute(params![name, member.0 as i64, peer.0 as i64])?;
        }
    }
    // Sending implies having read everything up to one's own message.
    c.prepare_cached(
        "UPDATE members SET read_seq = ?3
         WHERE conversation_id = ?1 AND user_id = ?2 AND read_seq < ?3",
    )?
    .execute(params![name, m.sender.0 as i64, seq])?;
    // Only a withheld message touches its recipient's row: a run of them
    // that starts here remembers the message before it as the last one
    // the recipient sees (SET reads the row as it was).
    if let Some(recipient) = row.hidden_from {
        c.prepare_cached(
            "UPDATE members SET
                 shown_seq = CASE WHEN hidden > 0 AND hidden_last = ?3 - 1
                                  THEN shown_seq ELSE ?3 - 1 END,
                 shown_ms = CASE WHEN hidden > 0 AND hidden_last = ?3 - 1
                                 THEN shown_ms ELSE ?4 END,
                 hidden = hidden + 1,
                 hidden_last = ?3
             WHERE conversation_id = ?1 AND user_id = ?2",
        )?
        .execute(params![name, recipient.0 as i64, seq, before_ms])?;
    }
    Ok(appended)
}

/// A page of a user's conversation list. The page is chosen first, from the
/// user's memberships and their conversations' last activity alone; only its
/// rows then read their peer's mark, their group and their mentions. The
/// unread count is `last_seq - read_seq`: sending moves the sender's own mark
/// to the message sent, so every message above a member's mark is someone
/// else's, and seq has no gaps here. No row counts messages, so a page costs
/// the same whatever its conversations hold.
const INBOX: &str = "
    WITH page AS MATERIALIZED (
        SELECT m.conversation_id, m.user_id, m.peer_id, m.read_seq,
               c.last_seq, c.last_activity_ms,
               m.joined_seq, m.hidden, m.hidden_last, m.shown_seq, m.shown_ms
        FROM members m
        JOIN conversations c ON c.id = m.conversation_id
        WHERE m.user_id = ?1
          AND (?4 OR c.last_activity_ms < ?2
               OR (c.last_activity_ms = ?2 AND m.conversation_id < ?3))
        ORDER BY c.last_activity_ms DESC, m.conversation_id DESC
        LIMIT ?5
    )
    SELECT page.conversation_id, page.peer_id, page.last_seq, page.read_seq,
           coalesce(p.read_seq, 0), page.last_activity_ms,
           max(page.last_seq - page.read_seq, 0),
           g.group_id, g.name, g.member_count,
           EXISTS (SELECT 1 FROM mentions x
                   WHERE x.conversation_id = page.conversation_id
                     AND x.user_id IN (page.user_id, 0) AND x.seq > page.read_seq),
           page.joined_seq, page.hidden, page.hidden_last, page.shown_seq, page.shown_ms
    FROM page
    LEFT JOIN members p ON p.conversation_id = page.conversation_id
         AND p.user_id = page.peer_id AND page.peer_id != 0
    LEFT JOIN groups g ON g.conversation_id = page.conversation_id
    ORDER BY page.last_activity_ms DESC, page.conversation_id DESC";

/// An entry of the conversation list as every member's would read, with
/// what the user's own view may change.
struct ListedRow {
    entry: InboxEntry,
    joined_seq: u64,
    withheld: Withheld,
}

fn inbox_page(
    stmt: &mut rusqlite::Statement<'_>,
    user_id: UserId,
    cursor: Option<&InboxCursor>,
    limit: u32,
) -> rusqlite::Result<Vec<ListedRow>> {
    let (before_ms, before_id) = match cursor {
        Some(cursor) => (cursor.last_activity_ms, cursor.conversation.to_string()),
        None => (i64::MAX, String::new()),
    };
    let rows = stmt.query_map(
        params![
            user_id.0 as i64,
            before_ms,
            before_id,
            cursor.is_none(),
            i64::from(limit)
        ],
        |r| {
            let group = match r.get::<_, Option<i64>>(7)? {
                Some(group) => Some(GroupSummary {
                    group: crate::model::GroupId(group as u64),
                    name: r.get(8)?,
                    member_count: r.get::<_, i64>(9)? as u32,
                }),
                None => None,
            };
            let entry = InboxEntry {
                conversation: conversation(r, 0)?,
                // Group rows have no peer (peer_id 0).
                peer: Some(user(r, 1)?).filter(|_| group.is_none()),
                last_seq: id(r, 2)?,
                read_seq: id(r, 3)?,
                peer_read_seq: id(r, 4)?,
                last_activity_ms: r.get(5)?,
                unread: id(r, 6)?,
                group,
                mentioned: r.get(10)?,
            };
            Ok(ListedRow {
                entry,
                joined_seq: id(r, 11)?,
                withheld: Withheld {
                    count: id(r, 12)?,
                    last: id(r, 13)?,
                    shown_seq: id(r, 14)?,
                    shown_ms: r.get(15)?,
                },
            })
        },
    )?;
    rows.collect()
}

/// The page as `user` sees it ([`policy::listed`], [`policy::shows`]):
/// hidden friends' conversations left out; where messages were withheld
/// from the user, or the user's view filters group messages, the last
/// message and the unread count are those the user sees. Every other entry
/// is as read, so a user who filters nothing costs nothing more.
fn as_seen_by(
    c: &Connection,
    user: UserId,
    view: &View,
    rows: Vec<ListedRow>,
) -> rusqlite::Result<Vec<InboxEntry>> {
    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        if !policy::listed(view, row.entry.peer) {
            continue;
        }
        let seen = match &row.entry.group {
            None if row.withheld.count > 0 => direct_as_seen(c, user, row)?,
            Some(_) if !view.blocked.is_empty() => Some(group_as_seen(c, user, view, row)?),
            _ => Some(row.entry),
        };
        entries.extend(seen);
    }
    Ok(entries)
}

/// A one-to-one entry of a user some of whose messages were withheld: up
/// to the last message they see, its unread count read from their mark to
/// there; None when they see none.
fn direct_as_seen(
    c: &Connection,
    user: UserId,
    row: ListedRow,
) -> rusqlite::Result<Option<InboxEntry>> {
    let mut entry = row.entry;
    let Some((shown_seq, shown_ms)) =
        policy::last_shown(entry.last_seq, entry.last_activity_ms, &row.withheld)
    else {
        return Ok(None);
    };
    let mut unread = 0;
    let mut stmt = c.prepare_cached(
        "SELECT sender, server_time_ms, hidden_from FROM messages
         WHERE conversation_id = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq",
    )?;
    let mut rows = stmt.query(params![
        entry.conversation.to_string(),
        bound(entry.read_seq),
        bound(shown_seq)
    ])?;
    while let Some(r) = rows.next()? {
        let (sender, sent_ms, hidden_from) = (user_of(r, 0)?, r.get(1)?, hidden(r, 2)?);
        let shown =
            policy::shows_facts(user, &View::default(), false, sender, sent_ms, hidden_from);
        if shown && sender != user {
            unread += 1;
        }
    }
    entry.last_seq = shown_seq;
    entry.last_activity_ms = shown_ms;
    entry.read_seq = entry.read_seq.min(shown_seq);
    entry.unread = unread;
    Ok(Some(entry))
}

/// A group entry of a user whose view filters group messages: its unread
/// count and mention from the messages above their mark that they see, its
/// last message the last one they see since joining (the seq they joined
/// at, if none).
fn group_as_seen(
    c: &Connection,
    user: UserId,
    view: &View,
    row: ListedRow,
) -> rusqlite::Result<InboxEntry> {
    let mut entry = row.entry;
    let name = entry.conversation.to_string();
    let (mut unread, mut mentioned, mut last) = (0, false, None);
    {
        let mut stmt = c.prepare_cached(
            "SELECT seq, sender, server_time_ms, mentions FROM messages
             WHERE conversation_id = ?1 AND seq > ?2 ORDER BY seq",
        )?;
        let mut rows = stmt.query(params![name, bound(entry.read_seq)])?;
        while let Some(r) = rows.next()? {
            let (seq, sender, sent_ms) = (id(r, 0)?, user_of(r, 1)?, r.get(2)?);
            if !policy::shows_facts(user, view, true, sender, sent_ms, None) {
                continue;
            }
            if sender != user {
                unread += 1;
                mentioned |= decode_mentions(&r.get::<_, String>(3)?).mentions(user);
            }
            last = Some((seq, sent_ms));
        }
    }
    if last.is_none() {
        // Nothing seen above the mark: the last seen is at or below it.
        let mut stmt = c.prepare_cached(
            "SELECT seq, sender, server_time_ms FROM messages
             WHERE conversation_id = ?1 AND seq <= ?2 AND seq > ?3 ORDER BY seq DESC",
        )?;
        let mut rows = stmt.query(params![name, bound(entry.read_seq), bound(row.joined_seq)])?;
        while let Some(r) = rows.next()? {
            let (seq, sender, sent_ms) = (id(r, 0)?, user_of(r, 1)?, r.get(2)?);
            if policy::shows_facts(user, view, true, sender, sent_ms, None) {
                last = Some((seq, sent_ms));
                break;
            }
        }
    }
    let (shown_seq, shown_ms) = last.unwrap_or((row.joined_seq, entry.last_activity_ms));
    entry.last_seq = shown_seq;
    entry.last_activity_ms = shown_ms;
    entry.read_seq = entry.read_seq.min(shown_seq);
    entry.unread = unread;
    entry.mentioned = mentioned;
    Ok(entry)
}

fn user_of(r: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<UserId> {
    user(r, index)
}

/// A message's `hidden_from` column: 0 is nobody.
fn hidden(r: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Option<UserId>> {
    Ok(Some(user(r, index)?).filter(|u| u.0 != 0))
}

impl ChatStore for SqliteChatStore {
    fn append(&self, message: NewMessage) -> BoxFuture<'_, Result<Appended, StoreError>> {
        Box::pin(fenced(&self.db, move |c| append_in(c, &message)))
    }

    fn messages_after(
        &self,
        conversation: ConversationId,
        after_seq: u64,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<StoredMessage>, StoreError>> {
        Box::pin(self.db.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, message_id, sender, server_time_ms, client_msg_id, body, mentions,
                        hidden_from
                 FROM messages WHERE conversation_id = ?1 AND seq > ?2
                 ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(
                params![conversation.to_string(), bound(after_seq), i64::from(limit)],
                |r| {
                    Ok(StoredMessage {
                        conversation,
                        seq: id(r, 0)?,
                        message_id: id(r, 1)?,
                        sender: user(r, 2)?,
                        server_time_ms: r.get(3)?,
                        client_msg_id: r.get(4)?,
                        body: r.get(5)?,
                        mentions: decode_mentions(&r.get::<_, String>(6)?),
                        hidden_from: hidden(r, 7)?,
                    })
                },
            )?;
            rows.collect()
        }))
    }

    fn inbox(
        &self,
        user_id: UserId,
        cursor: Option<InboxCursor>,
        limit: u32,
        view: Arc<View>,
    ) -> BoxFuture<'_, Result<InboxPage, StoreError>> {
        Box::pin(self.db.read(move |c| {
            let rows = {
                let mut stmt = c.prepare_cached(INBOX)?;
                inbox_page(&mut stmt, user_id, cursor.as_ref(), limit)?
            };
            // The next page starts after the last entry read, shown or not.
            let next = match rows.last() {
                Some(last) if rows.len() == limit as usize => Some(InboxCursor {
                    last_activity_ms: last.entry.last_activity_ms,
                    conversation: last.entry.conversation,
                }),
                _ => None,
            };
            let entries = as_seen_by(c, user_id, &view, rows)?;
            Ok(InboxPage { entries, next })
        }))
    }

    fn members(
        &self,
        conversation: ConversationId,
    ) -> BoxFuture<'_, Result<Vec<UserId>, StoreError>> {
        Box::pin(self.db.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT user_id FROM members WHERE conversation_id = ?1 ORDER BY user_id",
            )?;
            let rows = stmt.query_map([conversation.to_string()], |r| user(r, 0))?;
            rows.collect()
        }))
    }

    fn mark_read(
        &self,
        user_id: UserId,
        conversation: ConversationId,
        seq: u64,
        fence: Option<Fence>,
    ) -> BoxFuture<'_, Result<Option<u64>, StoreError>> {
        Box::pin(fenced(&self.db, move |c| {
            let rise = check_fence(c, fence)?;
            raise_fence(c, rise)?;
            let name = conversation.to_string();
            // A mark stops at the last message the member sees: a sender
            // never sees a withheld message read.
            let facts = c
                .prepare_cached(
                    "SELECT c.last_seq, c.last_activity_ms,
                            m.hidden, m.hidden_last, m.shown_seq, m.shown_ms
                     FROM members m JOIN conversations c ON c.id = m.conversation_id
                     WHERE m.conversation_id = ?1 AND m.user_id = ?2",
                )?
                .query_row(params![name, user_id.0 as i64], |r| {
                    let withheld = Withheld {
                        count: id(r, 2)?,
                        last: id(r, 3)?,
                        shown_seq: id(r, 4)?,
                        shown_ms: r.get(5)?,
                    };
                    Ok(policy::last_shown(id(r, 0)?, r.get(1)?, &withheld).map_or(0, |s| s.0))
                })
                .optional()?;
            let Some(cap) = facts else {
                return Ok(None);
            };
            Ok(c.query_row(
                "UPDATE members SET read_seq = max(read_seq, ?3)
                 WHERE conversation_id = ?1 AND user_id = ?2
                 RETURNING read_seq",
                params![name, user_id.0 as i64, bound(seq.min(cap))],
                |r| id(r, 0),
            )
            .optional()?)
        }))
    }

    fn fence_mark(&self, shard: u32) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(
            self.db
                .read(move |c| high_water(c, shard).map(Option::unwrap_or_default)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;

    fn open(dir: &tempfile::TempDir) -> SqliteChatStore {
        SqliteChatStore::open(&dir.path().join("chat.db"), None).unwrap()
    }

    #[tokio::test]
    async fn sqlite_meets_the_chat_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        conformance::chat_store(&open(&dir)).await;
    }

    #[tokio::test]
    async fn sqlite_meets_the_group_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        conformance::group_store(Arc::new(open(&dir))).await;
    }

    #[tokio::test]
    async fn sqlite_takes_a_departing_user_out_of_every_group_and_hands_on_theirs() {
        let dir = tempfile::tempdir().unwrap();
        conformance::departures(&open(&dir)).await;
    }

    #[tokio::test]
    async fn sqlite_caps_the_groups_a_user_creates_and_is_in() {
        let dir = tempfile::tempdir().unwrap();
        conformance::group_limits(&open(&dir).with_group_limits(conformance::LIMITS)).await;
    }

    #[tokio::test]
    async fn sqlite_keeps_group_invitations_as_the_contract_says() {
        let dir = tempfile::tempdir().unwrap();
        conformance::group_invitations(&open(&dir)).await;
    }

    #[tokio::test]
    async fn sqlite_keeps_the_group_rules_of_the_reference_model() {
        let dir = tempfile::tempdir().unwrap();
        conformance::group_rules_match_the_model(Arc::new(open(&dir)), 0x5eed).await;
    }

    #[tokio::test]
    async fn sqlite_searches_members_as_the_reference_model_does() {
        let dir = tempfile::tempdir().unwrap();
        conformance::member_search_matches_the_model(&open(&dir), 0x5eed).await;
    }

    #[tokio::test]
    async fn sqlite_lists_what_each_user_sees_as_the_reference_model_does() {
        for seed in [0x5eed, 1, 2, 3] {
            let dir = tempfile::tempdir().unwrap();
            conformance::views_match_the_model(&open(&dir), seed).await;
        }
    }

    #[tokio::test]
    async fn sqlite_refuses_a_stale_fence_even_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        conformance::fencing(&open(&dir)).await;
        // The marks are durable: a reopened file still refuses the old owner.
        let reopened = open(&dir);
        let stale = NewMessage {
            conversation: ConversationId::direct(UserId(1), UserId(2)).unwrap(),
            sender: UserId(1),
            members: [UserId(1), UserId(2)],
            client_msg_id: "late".into(),
            message_id: 99,
            server_time_ms: 99,
            body: b"x".to_vec(),
            fence: Some(Fence { shard: 3, token: 6 }),
            withheld: false,
        };
        assert!(matches!(
            reopened.append(stale).await,
            Err(StoreError::Fenced { high_water: 7, .. })
        ));
    }

    #[tokio::test]
    async fn concurrent_duplicates_store_one_message() {
        let dir = tempfile::tempdir().unwrap();
        conformance::concurrent_duplicates(Arc::new(open(&dir))).await;
    }

    #[tokio::test]
    async fn a_group_message_writes_no_row_per_member() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let appended = conformance::group_of_1000_and_a_message(&store).await;
        assert_eq!(appended.seq, 1);
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

    #[tokio::test]
    async fn sqlite_counts_unread_messages_as_the_contract_says() {
        let dir = tempfile::tempdir().unwrap();
        conformance::unread_counts(&open(&dir)).await;
    }

    /// Steps of SQLite's virtual machine to list the first ten conversations
    /// of `user`, who talks with 30 peers, each of whom sent `unread` messages.
    async fn steps_to_list(store: &SqliteChatStore, user: u64, unread: u64) -> i32 {
        let mut messages = Vec::new();
        for peer in user + 1..=user + 30 {
            for i in 0..unread {
                let mut m = conformance::direct_message(peer, user, &format!("{i}"), 10);
                m.message_id = peer * 1_000 + i;
                messages.push(m);
            }
        }
        store
            .db
            .transact(move |c| {
                for m in &messages {
                    append_in(c, m)?;
                }
                Ok::<_, TxError<StoreError>>(())
            })
            .await
            .unwrap()
            .unwrap();
        store
            .db
            .read(move |c| {
                let mut stmt = c.prepare(INBOX)?;
                let page = inbox_page(&mut stmt, UserId(user), None, 10)?;
                assert_eq!(page.len(), 10);
                assert!(page.iter().all(|e| e.entry.unread == unread));
                Ok(stmt.get_status(rusqlite::StatementStatus::VmStep))
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_page_of_conversations_costs_the_same_however_many_messages_are_unread() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let few = steps_to_list(&store, 1_000, 1).await;
        let many = steps_to_list(&store, 2_000, 50).await;
        assert_eq!(
            few, many,
            "steps with 1 unread each: {few}; with 50: {many}"
        );
    }

    #[test]
    fn mentions_survive_their_column() {
        for m in [
            Mentions::default(),
            Mentions {
                all: true,
                users: vec![UserId(5)],
            },
            Mentions {
                all: false,
                users: vec![UserId(7), UserId(3)],
            },
        ] {
            assert_eq!(decode_mentions(&encode_mentions(&m)), m);
        }
    }
}
