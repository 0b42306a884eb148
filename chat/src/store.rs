//! The room's storage, shaped as partition key + sort key:
//!
//! | table | partition | sort | notes |
//! |---|---|---|---|
//! | messages | conversation | seq | in ScyllaDB bucketed by `seq / 10_000` |
//! | sent | conversation | (sender, client_msg_id) | the idempotency record of each send |
//! | conversations | conversation | | `last_seq`, last activity |
//! | members | conversation | user | read mark, peer |
//! | inbox | user | last activity | the conversation list: here a read-time sort of the user's memberships by the conversations' last activity; in ScyllaDB a table of its own |

use std::path::Path;
use std::sync::Arc;

use rusqlite::{OptionalExtension as _, params};
use superapp_kit::BoxFuture;
use superapp_kit::metrics::Histogram;
use superapp_kit::sqlite::{Database, StoreError};

/// A message to append; the store assigns `seq`.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub conversation_id: String,
    pub sender: u64,
    pub members: Vec<u64>,
    pub client_msg_id: String,
    pub message_id: u64,
    pub server_time_ms: i64,
    /// The encoded `MessageBody`.
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub conversation_id: String,
    pub seq: u64,
    pub message_id: u64,
    pub sender: u64,
    pub server_time_ms: i64,
    pub client_msg_id: String,
    pub body: Vec<u8>,
    /// Members the message mentions; 0 stands for everyone.
    pub mentions: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub conversation_id: String,
    pub seq: u64,
    pub message_id: u64,
    pub server_time_ms: i64,
    /// The (sender, client_msg_id) was seen before: this is the first ack again.
    pub duplicate: bool,
    /// Of a new message: the members it mentions (0: everyone), as stored.
    pub mentions: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEntry {
    pub conversation_id: String,
    pub peer: u64,
    pub last_seq: u64,
    pub read_seq: u64,
    pub peer_read_seq: u64,
    /// Messages from others above `read_seq`.
    pub unread: u64,
    pub last_activity_ms: i64,
    /// Set for a group: its id, name and member count.
    pub group: Option<(u64, String, u32)>,
    /// An unread message mentions the user or everyone.
    pub mentioned: bool,
}

/// Where a page of the conversation list ends: (last activity, conversation id).
pub type InboxCursor = (i64, String);

pub trait ChatStore: Send + Sync + 'static {
    /// Appends with `seq = last_seq + 1`, or returns the first ack of a repeated
    /// (sender, client_msg_id) in the conversation. Creates the conversation on
    /// its first message. Idempotency is per conversation so that the single
    /// writer of a conversation (its shard owner) can decide it alone.
    fn append(&self, message: NewMessage) -> BoxFuture<'_, Result<Appended, StoreError>>;
    /// Messages with seq > `after_seq`, ascending, at most `limit`.
    fn messages_after(
        &self,
        conversation_id: &str,
        after_seq: u64,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<StoredMessage>, StoreError>>;
    /// The user's conversations by last activity, newest first, after `cursor`.
    fn inbox(
        &self,
        user_id: u64,
        cursor: Option<InboxCursor>,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<InboxEntry>, StoreError>>;
    /// The members of a conversation; empty if it does not exist.
    fn members(&self, conversation_id: &str) -> BoxFuture<'_, Result<Vec<u64>, StoreError>>;
    /// Moves the user's read mark forward to `seq` (capped at the last seq);
    /// returns the mark after the move, or None if the user is not a member.
    fn mark_read(
        &self,
        user_id: u64,
        conversation_id: &str,
        seq: u64,
    ) -> BoxFuture<'_, Result<Option<u64>, StoreError>>;
}

/// Everything the chat room keeps: its conversations and its groups.
pub trait ChatStorage: ChatStore + crate::group_store::GroupStore {}

impl<T: ChatStore + crate::group_store::GroupStore> ChatStorage for T {}

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
];

pub struct SqliteChatStore {
    pub(crate) db: Database,
}

impl SqliteChatStore {
    pub fn open(path: &Path, batch_sizes: Option<Arc<Histogram>>) -> Result<Self, StoreError> {
        Ok(Self {
            db: Database::open(path, MIGRATIONS, batch_sizes)?,
        })
    }
}

/// The first ack of a repeated (sender, client_msg_id) in a conversation.
pub(crate) fn earlier_send(
    c: &rusqlite::Connection,
    conversation_id: &str,
    sender: u64,
    client_msg_id: &str,
) -> rusqlite::Result<Option<Appended>> {
    c.prepare_cached(
        "SELECT conversation_id, seq, message_id, server_time_ms FROM sent
         WHERE conversation_id = ?1 AND sender = ?2 AND client_msg_id = ?3",
    )?
    .query_row(
        params![conversation_id, sender as i64, client_msg_id],
        |r| {
            Ok(Appended {
                conversation_id: r.get(0)?,
                seq: r.get::<_, i64>(1)? as u64,
                message_id: r.get::<_, i64>(2)? as u64,
                server_time_ms: r.get(3)?,
                duplicate: true,
                mentions: Vec::new(),
            })
        },
    )
    .optional()
}

/// A message to write as it is.
#[derive(Clone, Copy)]
pub(crate) struct Row<'a> {
    pub conversation_id: &'a str,
    pub sender: u64,
    pub client_msg_id: &'a str,
    pub message_id: u64,
    pub server_time_ms: i64,
    pub body: &'a [u8],
    /// Members mentioned; 0 stands for everyone.
    pub mentions: &'a [u64],
}

/// Takes the conversation's next seq and writes the message and its
/// idempotency record; creates the conversation on its first message.
pub(crate) fn append_row(c: &rusqlite::Connection, row: &Row<'_>) -> rusqlite::Result<Appended> {
    let Row {
        conversation_id,
        sender,
        client_msg_id,
        message_id,
        server_time_ms,
        body,
        mentions,
    } = *row;
    let seq: i64 = c
        .prepare_cached(
            "INSERT INTO conversations (id, last_seq, last_activity_ms) VALUES (?1, 1, ?2)
             ON CONFLICT (id) DO UPDATE SET last_seq = last_seq + 1, last_activity_ms = ?2
             RETURNING last_seq",
        )?
        .query_row(params![conversation_id, server_time_ms], |r| r.get(0))?;
    c.prepare_cached(
        "INSERT INTO messages (conversation_id, seq, message_id, sender, client_msg_id, server_time_ms, body, mentions)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        conversation_id,
        seq,
        message_id as i64,
        sender as i64,
        client_msg_id,
        server_time_ms,
        body,
        mentions
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    ])?;
    c.prepare_cached(
        "INSERT INTO sent (conversation_id, sender, client_msg_id, seq, message_id, server_time_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        conversation_id,
        sender as i64,
        client_msg_id,
        seq,
        message_id as i64,
        server_time_ms
    ])?;
    Ok(Appended {
        conversation_id: conversation_id.to_string(),
        seq: seq as u64,
        message_id,
        server_time_ms,
        duplicate: false,
        mentions: mentions.to_vec(),
    })
}

fn append_in(c: &rusqlite::Connection, m: &NewMessage) -> rusqlite::Result<Appended> {
    if let Some(earlier) = earlier_send(c, &m.conversation_id, m.sender, &m.client_msg_id)? {
        return Ok(earlier);
    }
    let appended = append_row(
        c,
        &Row {
            conversation_id: &m.conversation_id,
            sender: m.sender,
            client_msg_id: &m.client_msg_id,
            message_id: m.message_id,
            server_time_ms: m.server_time_ms,
            body: &m.body,
            mentions: &[],
        },
    )?;
    let seq = appended.seq as i64;
    // Member rows change only when created (with the conversation's first
    // message) and when the sender's read mark moves: the list order comes
    // from the conversation's last activity, so a message touches no
    // per-member index.
    let members: &[u64] = if seq == 1 { &m.members } else { &[] };
    for &member in members {
        let peer = m
            .members
            .iter()
            .copied()
            .find(|p| *p != member)
            .unwrap_or(member);
        c.prepare_cached(
            "INSERT INTO members (conversation_id, user_id, peer_id) VALUES (?1, ?2, ?3)
             ON CONFLICT (conversation_id, user_id) DO NOTHING",
        )?
        .execute(params![m.conversation_id, member as i64, peer as i64])?;
    }
    // Sending implies having read everything up to one's own message.
    c.prepare_cached(
        "UPDATE members SET read_seq = ?3
         WHERE conversation_id = ?1 AND user_id = ?2 AND read_seq < ?3",
    )?
    .execute(params![m.conversation_id, m.sender as i64, seq])?;
    Ok(appended)
}

impl ChatStore for SqliteChatStore {
    fn append(&self, message: NewMessage) -> BoxFuture<'_, Result<Appended, StoreError>> {
        Box::pin(self.db.write(move |c| append_in(c, &message)))
    }

    fn messages_after(
        &self,
        conversation_id: &str,
        after_seq: u64,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<StoredMessage>, StoreError>> {
        let conversation_id = conversation_id.to_string();
        Box::pin(self.db.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, message_id, sender, server_time_ms, client_msg_id, body, mentions
                 FROM messages WHERE conversation_id = ?1 AND seq > ?2
                 ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(
                params![conversation_id, after_seq as i64, i64::from(limit)],
                |r| {
                    Ok(StoredMessage {
                        conversation_id: conversation_id.clone(),
                        seq: r.get::<_, i64>(0)? as u64,
                        message_id: r.get::<_, i64>(1)? as u64,
                        sender: r.get::<_, i64>(2)? as u64,
                        server_time_ms: r.get(3)?,
                        client_msg_id: r.get(4)?,
                        body: r.get(5)?,
                        mentions: r
                            .get::<_, String>(6)?
                            .split(',')
                            .filter_map(|id| id.parse().ok())
                            .collect(),
                    })
                },
            )?;
            rows.collect()
        }))
    }

    fn inbox(
        &self,
        user_id: u64,
        cursor: Option<InboxCursor>,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<InboxEntry>, StoreError>> {
        Box::pin(self.db.read(move |c| {
            let (before_ms, before_id) = cursor.unwrap_or((i64::MAX, String::new()));
            let unbounded = before_id.is_empty();
            let mut stmt = c.prepare_cached(
                "SELECT m.conversation_id, m.peer_id, c.last_seq, m.read_seq,
                        coalesce(p.read_seq, 0), c.last_activity_ms,
                        (SELECT count(*) FROM messages x
                         WHERE x.conversation_id = m.conversation_id
                           AND x.seq > m.read_seq AND x.sender != m.user_id),
                        g.group_id, g.name, g.member_count,
                        EXISTS (SELECT 1 FROM mentions x
                                WHERE x.conversation_id = m.conversation_id
                                  AND x.user_id IN (m.user_id, 0) AND x.seq > m.read_seq)
                 FROM members m
                 JOIN conversations c ON c.id = m.conversation_id
                 LEFT JOIN members p ON p.conversation_id = m.conversation_id
                      AND p.user_id = m.peer_id AND m.peer_id != 0
                 LEFT JOIN groups g ON g.conversation_id = m.conversation_id
                 WHERE m.user_id = ?1
                   AND (?4 OR c.last_activity_ms < ?2
                        OR (c.last_activity_ms = ?2 AND m.conversation_id < ?3))
                 ORDER BY c.last_activity_ms DESC, m.conversation_id DESC
                 LIMIT ?5",
            )?;
            let rows = stmt.query_map(
                params![
                    user_id as i64,
                    before_ms,
                    before_id,
                    unbounded,
                    i64::from(limit)
                ],
                |r| {
                    Ok(InboxEntry {
                        conversation_id: r.get(0)?,
                        peer: r.get::<_, i64>(1)? as u64,
                        last_seq: r.get::<_, i64>(2)? as u64,
                        read_seq: r.get::<_, i64>(3)? as u64,
                        peer_read_seq: r.get::<_, i64>(4)? as u64,
                        last_activity_ms: r.get(5)?,
                        unread: r.get::<_, i64>(6)? as u64,
                        group: match r.get::<_, Option<i64>>(7)? {
                            Some(id) => Some((id as u64, r.get(8)?, r.get::<_, i64>(9)? as u32)),
                            None => None,
                        },
                        mentioned: r.get(10)?,
                    })
                },
            )?;
            rows.collect()
        }))
    }

    fn members(&self, conversation_id: &str) -> BoxFuture<'_, Result<Vec<u64>, StoreError>> {
        let conversation_id = conversation_id.to_string();
        Box::pin(self.db.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT user_id FROM members WHERE conversation_id = ?1 ORDER BY user_id",
            )?;
            let rows =
                stmt.query_map([conversation_id], |r| r.get::<_, i64>(0).map(|v| v as u64))?;
            rows.collect()
        }))
    }

    fn mark_read(
        &self,
        user_id: u64,
        conversation_id: &str,
        seq: u64,
    ) -> BoxFuture<'_, Result<Option<u64>, StoreError>> {
        let conversation_id = conversation_id.to_string();
        Box::pin(self.db.write(move |c| {
            c.query_row(
                "UPDATE members SET read_seq = max(read_seq,
                     min(?3, (SELECT last_seq FROM conversations WHERE id = ?1)))
                 WHERE conversation_id = ?1 AND user_id = ?2
                 RETURNING read_seq",
                params![
                    conversation_id,
                    user_id as i64,
                    seq.min(i64::MAX as u64) as i64
                ],
                |r| r.get::<_, i64>(0).map(|v| v as u64),
            )
            .optional()
        }))
    }
}

/// The behaviour every [`ChatStore`] backend must show. Run against SQLite
/// always, and against every other backend that is available.
#[cfg(test)]
pub(crate) mod conformance {
    use super::*;

    fn message(conv: &str, sender: u64, peer: u64, cmid: &str, t: i64) -> NewMessage {
        NewMessage {
            conversation_id: conv.into(),
            sender,
            members: vec![sender, peer],
            client_msg_id: cmid.into(),
            message_id: t as u64,
            server_time_ms: t,
            body: b"x".to_vec(),
        }
    }

    pub async fn run(store: &dyn ChatStore) {
        // Seq counts up per conversation from 1.
        let a = store.append(message("d.1.2", 1, 2, "a", 10)).await.unwrap();
        let b = store.append(message("d.1.2", 2, 1, "b", 11)).await.unwrap();
        let c = store.append(message("d.1.3", 1, 3, "c", 12)).await.unwrap();
        assert_eq!((a.seq, b.seq, c.seq), (1, 2, 1));
        assert!(!a.duplicate);

        // A repeated client_msg_id returns the first ack and stores nothing.
        let again = store.append(message("d.1.2", 1, 2, "a", 99)).await.unwrap();
        assert_eq!(
            (again.seq, again.server_time_ms, again.duplicate),
            (1, 10, true)
        );
        assert_eq!(
            store.messages_after("d.1.2", 0, 100).await.unwrap().len(),
            2
        );

        // Ranges are exclusive of after_seq and bounded by limit.
        let page = store.messages_after("d.1.2", 1, 1).await.unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!((page[0].seq, page[0].sender), (2, 2));

        // The inbox lists by last activity with exact unread counts.
        let inbox = store.inbox(1, None, 10).await.unwrap();
        let ids: Vec<_> = inbox.iter().map(|e| e.conversation_id.as_str()).collect();
        assert_eq!(ids, ["d.1.3", "d.1.2"]);
        assert_eq!(
            (inbox[1].unread, inbox[1].read_seq, inbox[1].peer),
            (1, 1, 2)
        );
        let next = store
            .inbox(
                1,
                Some((inbox[0].last_activity_ms, inbox[0].conversation_id.clone())),
                10,
            )
            .await
            .unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].conversation_id, "d.1.2");

        // Read marks move forward only and stop at the last seq.
        assert_eq!(store.mark_read(1, "d.1.2", 50).await.unwrap(), Some(2));
        assert_eq!(store.mark_read(1, "d.1.2", 1).await.unwrap(), Some(2));
        assert_eq!(store.mark_read(9, "d.1.2", 1).await.unwrap(), None);
        let inbox = store.inbox(2, None, 10).await.unwrap();
        assert_eq!((inbox[0].peer_read_seq, inbox[0].unread), (2, 0));

        assert_eq!(store.members("d.1.2").await.unwrap(), vec![1, 2]);
        assert!(store.members("d.7.8").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn sqlite_meets_the_chat_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteChatStore::open(&dir.path().join("chat.db"), None).unwrap();
        run(&store).await;
    }

    #[tokio::test]
    async fn concurrent_duplicates_store_one_message() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteChatStore::open(&dir.path().join("chat.db"), None).unwrap());
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.append(message("d.1.2", 1, 2, "same", i)).await })
            })
            .collect();
        let mut acks = Vec::new();
        for t in tasks {
            acks.push(t.await.unwrap().unwrap());
        }
        assert!(
            acks.iter()
                .all(|a| a.seq == 1 && a.message_id == acks[0].message_id)
        );
        assert_eq!(acks.iter().filter(|a| !a.duplicate).count(), 1);
        assert_eq!(store.messages_after("d.1.2", 0, 10).await.unwrap().len(), 1);
    }
}
