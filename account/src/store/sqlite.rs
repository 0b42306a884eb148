//! The embedded backend of [`AccountStore`], [`super::SocialStore`] (in
//! `sqlite/social.rs`) and [`super::RealNameStore`] (in `sqlite/real_name.rs`):
//! one SQLite file, written by its single writer thread with group commit.

mod real_name;
mod social;

use std::path::Path;
use std::sync::Arc;

use rusqlite::{OptionalExtension as _, params};
use superapp_kit::BoxFuture;
use superapp_kit::metrics::Histogram;
use superapp_kit::sqlite::Database;

use super::{AccountStore, StoreError};
use crate::model::{Rotation, SessionRecord, UserId, UserRecord};

const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    phone TEXT NOT NULL,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE users_by_phone (
    phone TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL
);
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL,
    device_name TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
);
CREATE TABLE refresh_tokens (
    hash TEXT PRIMARY KEY,
    session_id INTEGER NOT NULL,
    spent INTEGER NOT NULL DEFAULT 0
);
",
    // The social graph (store/mod.rs has the table of its tables).
    "
CREATE TABLE friend_requests (
    to_user INTEGER NOT NULL,
    from_user INTEGER NOT NULL,
    greeting TEXT NOT NULL,
    sent_ms INTEGER NOT NULL,
    PRIMARY KEY (to_user, from_user)
) WITHOUT ROWID;
CREATE TABLE requests_sent (
    from_user INTEGER NOT NULL,
    sent_ms INTEGER NOT NULL,
    to_user INTEGER NOT NULL,
    PRIMARY KEY (from_user, sent_ms, to_user)
) WITHOUT ROWID;
CREATE TABLE contacts (
    owner INTEGER NOT NULL,
    friend INTEGER NOT NULL,
    remark TEXT NOT NULL,
    tags TEXT NOT NULL,
    since_ms INTEGER NOT NULL,
    removed INTEGER NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (owner, friend)
) WITHOUT ROWID;
CREATE INDEX contacts_by_version ON contacts (owner, version);
CREATE TABLE contact_heads (
    owner INTEGER PRIMARY KEY,
    version INTEGER NOT NULL,
    friends INTEGER NOT NULL
);
CREATE TABLE blocks (
    owner INTEGER NOT NULL,
    blocked INTEGER NOT NULL,
    since_ms INTEGER NOT NULL,
    PRIMARY KEY (owner, blocked)
) WITHOUT ROWID;
CREATE TABLE privacy (
    user_id INTEGER PRIMARY KEY,
    who_may_message INTEGER
);
",
    // Real-name verification (`sqlite/real_name.rs`): the latest submission of
    // each user, the holder of each ID number by its keyed hash, and each user's
    // submissions within the last day. No number or name is stored in the clear.
    "
CREATE TABLE real_names (
    user_id INTEGER PRIMARY KEY,
    attempt_id INTEGER NOT NULL,
    state TEXT NOT NULL,
    rejection TEXT,
    sealed BLOB NOT NULL,
    number_hash TEXT NOT NULL,
    submitted_at_ms INTEGER NOT NULL,
    decided_at_ms INTEGER
);
CREATE TABLE real_names_by_number (
    number_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL
);
CREATE TABLE real_name_submissions (
    user_id INTEGER NOT NULL,
    attempt_id INTEGER NOT NULL,
    submitted_at_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, attempt_id)
);
",
];

pub struct SqliteAccountStore {
    db: Database,
}

impl SqliteAccountStore {
    pub fn open(path: &Path, batch_sizes: Option<Arc<Histogram>>) -> Result<Self, StoreError> {
        Ok(Self {
            db: Database::open(path, MIGRATIONS, batch_sizes)?,
        })
    }
}

fn user_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: UserId(row.get::<_, i64>(0)? as u64),
        phone: row.get(1)?,
        display_name: row.get(2)?,
        password_hash: row.get(3)?,
        created_at_ms: row.get(4)?,
    })
}

const USER_COLUMNS: &str = "id, phone, display_name, password_hash, created_at_ms";

impl AccountStore for SqliteAccountStore {
    fn create_user(&self, user: UserRecord) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(self.db.write(move |c| {
            let inserted = c.execute(
                "INSERT INTO users_by_phone (phone, user_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![user.phone, user.id.0 as i64],
            )?;
            if inserted == 0 {
                return Ok(false);
            }
            c.execute(
                "INSERT INTO users (id, phone, display_name, password_hash, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    user.id.0 as i64,
                    user.phone,
                    user.display_name,
                    user.password_hash,
                    user.created_at_ms
                ],
            )?;
            Ok(true)
        }))
    }

    fn user_by_phone(&self, phone: &str) -> BoxFuture<'_, Result<Option<UserRecord>, StoreError>> {
        let phone = phone.to_string();
        Box::pin(self.db.read(move |c| {
            c.query_row(
                &format!(
                    "SELECT {USER_COLUMNS} FROM users
                     WHERE id = (SELECT user_id FROM users_by_phone WHERE phone = ?1)"
                ),
                [phone],
                user_from_row,
            )
            .optional()
        }))
    }

    fn user(&self, id: UserId) -> BoxFuture<'_, Result<Option<UserRecord>, StoreError>> {
        Box::pin(self.db.read(move |c| {
            c.query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
                [id.0 as i64],
                user_from_row,
            )
            .optional()
        }))
    }

    fn display_names(
        &self,
        ids: Vec<UserId>,
    ) -> BoxFuture<'_, Result<Vec<(UserId, String)>, StoreError>> {
        Box::pin(self.db.read(move |c| {
            let mut stmt = c.prepare_cached("SELECT display_name FROM users WHERE id = ?1")?;
            let mut names = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(name) = stmt
                    .query_row([id.0 as i64], |r| r.get::<_, String>(0))
                    .optional()?
                {
                    names.push((id, name));
                }
            }
            Ok(names)
        }))
    }

    fn create_session(
        &self,
        session: SessionRecord,
        refresh_hash: String,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.db.write(move |c| {
            c.execute(
                "INSERT INTO sessions (id, user_id, device_name, created_at_ms, expires_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    session.id as i64,
                    session.user_id.0 as i64,
                    session.device_name,
                    session.created_at_ms,
                    session.expires_at_ms
                ],
            )?;
            c.execute(
                "INSERT INTO refresh_tokens (hash, session_id) VALUES (?1, ?2)",
                params![refresh_hash, session.id as i64],
            )?;
            Ok(())
        }))
    }

    fn rotate_refresh(
        &self,
        old_hash: String,
        new_hash: String,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<Rotation, StoreError>> {
        Box::pin(self.db.write(move |c| {
            let found = c
                .query_row(
                    "SELECT t.spent, s.id, s.user_id, s.device_name, s.created_at_ms,
                            s.expires_at_ms, s.revoked_at_ms
                     FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
                     WHERE t.hash = ?1",
                    [&old_hash],
                    |r| {
                        Ok((
                            r.get::<_, bool>(0)?,
                            SessionRecord {
                                id: r.get::<_, i64>(1)? as u64,
                                user_id: UserId(r.get::<_, i64>(2)? as u64),
                                device_name: r.get(3)?,
                                created_at_ms: r.get(4)?,
                                expires_at_ms: r.get(5)?,
                            },
                            r.get::<_, Option<i64>>(6)?,
                        ))
                    },
                )
                .optional()?;
            let Some((spent, session, revoked)) = found else {
                return Ok(Rotation::Invalid);
            };
            if revoked.is_some() || session.expires_at_ms <= now_ms {
                return Ok(Rotation::Invalid);
            }
            if spent {
                c.execute(
                    "UPDATE sessions SET revoked_at_ms = ?2 WHERE id = ?1",
                    params![session.id as i64, now_ms],
                )?;
                return Ok(Rotation::Reused {
                    session_id: session.id,
                    user_id: session.user_id,
                });
            }
            c.execute(
                "UPDATE refresh_tokens SET spent = 1 WHERE hash = ?1",
                [&old_hash],
            )?;
            c.execute(
                "INSERT INTO refresh_tokens (hash, session_id) VALUES (?1, ?2)",
                params![new_hash, session.id as i64],
            )?;
            Ok(Rotation::Rotated(session))
        }))
    }

    fn active_session(
        &self,
        session_id: u64,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<Option<UserId>, StoreError>> {
        Box::pin(self.db.read(move |c| {
            c.query_row(
                "SELECT user_id FROM sessions
                 WHERE id = ?1 AND revoked_at_ms IS NULL AND expires_at_ms > ?2",
                params![session_id as i64, now_ms],
                |r| r.get::<_, i64>(0).map(|v| UserId(v as u64)),
            )
            .optional()
        }))
    }

    fn revoke_session(
        &self,
        session_id: u64,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.db.write(move |c| {
            c.execute(
                "UPDATE sessions SET revoked_at_ms = ?2 WHERE id = ?1 AND revoked_at_ms IS NULL",
                params![session_id as i64, now_ms],
            )?;
            Ok(())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;

    fn open(dir: &tempfile::TempDir) -> SqliteAccountStore {
        SqliteAccountStore::open(&dir.path().join("account.db"), None).unwrap()
    }

    #[tokio::test]
    async fn sqlite_meets_the_account_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        conformance::account_store(&open(&dir)).await;
    }

    #[tokio::test]
    async fn sqlite_meets_the_real_name_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        conformance::real_name_store(&open(&dir)).await;
    }

    #[tokio::test]
    async fn concurrent_real_name_submissions_claim_a_number_once() {
        let dir = tempfile::tempdir().unwrap();
        conformance::concurrent_real_name_submissions(&open(&dir)).await;
    }

    #[tokio::test]
    async fn two_concurrent_refreshes_with_one_token_cannot_both_rotate() {
        let dir = tempfile::tempdir().unwrap();
        conformance::concurrent_refreshes(&open(&dir)).await;
    }

    #[tokio::test]
    async fn sqlite_answers_people_nearby_s_relations_in_one_read() {
        let dir = tempfile::tempdir().unwrap();
        conformance::nearby::nearby_relations(&open(&dir)).await;
    }

    #[tokio::test]
    async fn sqlite_keeps_the_social_graph_of_the_reference_model() {
        let dir = tempfile::tempdir().unwrap();
        conformance::social_graph_matches_the_model(&open(&dir), 0x5eed).await;
    }
}
