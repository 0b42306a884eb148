//! The room's storage, in its own terms. Each table is a partition key with at
//! most a sort key, so ScyllaDB and PostgreSQL backends map onto it directly:
//! users by id, user ids by phone (the uniqueness a Scylla LWT would guard),
//! sessions by id, refresh tokens by hash.

use std::path::Path;
use std::sync::Arc;

use rusqlite::{OptionalExtension as _, params};
use superapp_kit::BoxFuture;
use superapp_kit::metrics::Histogram;
use superapp_kit::sqlite::{Database, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: u64,
    pub phone: String,
    pub display_name: String,
    pub password_hash: String,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: u64,
    pub user_id: u64,
    pub device_name: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The old token is now spent; the new one stands in its place.
    Rotated(SessionRecord),
    /// The token was already spent: the family is revoked from now on.
    Reused { session_id: u64, user_id: u64 },
    /// Unknown, expired, or of a revoked session.
    Invalid,
}

pub trait AccountStore: Send + Sync + 'static {
    /// `Ok(false)` when the phone is taken.
    fn create_user(&self, user: UserRecord) -> BoxFuture<'_, Result<bool, StoreError>>;
    fn user_by_phone(&self, phone: &str) -> BoxFuture<'_, Result<Option<UserRecord>, StoreError>>;
    fn user(&self, id: u64) -> BoxFuture<'_, Result<Option<UserRecord>, StoreError>>;
    /// Display names of those of `ids` that exist.
    fn display_names(&self, ids: Vec<u64>)
    -> BoxFuture<'_, Result<Vec<(u64, String)>, StoreError>>;
    /// Stores a new session with its first refresh token (by hash).
    fn create_session(
        &self,
        session: SessionRecord,
        refresh_hash: String,
    ) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Spends `old_hash` and issues `new_hash` in one step; two concurrent uses of
    /// one token cannot both rotate.
    fn rotate_refresh(
        &self,
        old_hash: String,
        new_hash: String,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<Rotation, StoreError>>;
    /// The session's user, when the session exists, is not revoked and not expired.
    fn active_session(
        &self,
        session_id: u64,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<Option<u64>, StoreError>>;
    fn revoke_session(&self, session_id: u64, now_ms: i64)
    -> BoxFuture<'_, Result<(), StoreError>>;
}

const MIGRATIONS: &[&str] = &["
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
"];

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
        id: row.get::<_, i64>(0)? as u64,
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
                params![user.phone, user.id as i64],
            )?;
            if inserted == 0 {
                return Ok(false);
            }
            c.execute(
                "INSERT INTO users (id, phone, display_name, password_hash, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    user.id as i64,
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

    fn user(&self, id: u64) -> BoxFuture<'_, Result<Option<UserRecord>, StoreError>> {
        Box::pin(self.db.read(move |c| {
            c.query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
                [id as i64],
                user_from_row,
            )
            .optional()
        }))
    }

    fn display_names(
        &self,
        ids: Vec<u64>,
    ) -> BoxFuture<'_, Result<Vec<(u64, String)>, StoreError>> {
        Box::pin(self.db.read(move |c| {
            let mut stmt = c.prepare_cached("SELECT display_name FROM users WHERE id = ?1")?;
            let mut names = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(name) = stmt
                    .query_row([id as i64], |r| r.get::<_, String>(0))
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
                    session.user_id as i64,
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
                                user_id: r.get::<_, i64>(2)? as u64,
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
    ) -> BoxFuture<'_, Result<Option<u64>, StoreError>> {
        Box::pin(self.db.read(move |c| {
            c.query_row(
                "SELECT user_id FROM sessions
                 WHERE id = ?1 AND revoked_at_ms IS NULL AND expires_at_ms > ?2",
                params![session_id as i64, now_ms],
                |r| r.get::<_, i64>(0).map(|v| v as u64),
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

/// The behaviour every [`AccountStore`] backend must show. Run against SQLite
/// always, and against every other backend that is available.
#[cfg(test)]
pub(crate) mod conformance {
    use super::*;

    fn user(id: u64, phone: &str) -> UserRecord {
        UserRecord {
            id,
            phone: phone.into(),
            display_name: "A".into(),
            password_hash: "$argon2id$x".into(),
            created_at_ms: 1,
        }
    }

    fn session(id: u64, user_id: u64) -> SessionRecord {
        SessionRecord {
            id,
            user_id,
            device_name: "phone".into(),
            created_at_ms: 0,
            expires_at_ms: 1_000,
        }
    }

    pub async fn run(store: &dyn AccountStore) {
        assert!(store.display_names(vec![1]).await.unwrap().is_empty());
        // A phone belongs to one user.
        assert!(store.create_user(user(1, "+8613800000001")).await.unwrap());
        assert!(!store.create_user(user(2, "+8613800000001")).await.unwrap());
        assert_eq!(store.user(2).await.unwrap(), None);
        let found = store
            .user_by_phone("+8613800000001")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found, user(1, "+8613800000001"));
        assert_eq!(
            store.display_names(vec![99, 1]).await.unwrap(),
            vec![(1, "A".to_string())]
        );

        // Refresh tokens rotate once; a spent one revokes the session.
        store
            .create_session(session(10, 1), "h0".into())
            .await
            .unwrap();
        assert_eq!(store.active_session(10, 5).await.unwrap(), Some(1));
        assert!(matches!(
            store.rotate_refresh("h0".into(), "h1".into(), 5).await.unwrap(),
            Rotation::Rotated(s) if s.id == 10
        ));
        assert_eq!(
            store
                .rotate_refresh("h0".into(), "h2".into(), 6)
                .await
                .unwrap(),
            Rotation::Reused {
                session_id: 10,
                user_id: 1
            }
        );
        assert_eq!(store.active_session(10, 7).await.unwrap(), None);
        assert_eq!(
            store
                .rotate_refresh("h1".into(), "h3".into(), 8)
                .await
                .unwrap(),
            Rotation::Invalid
        );
        assert_eq!(
            store
                .rotate_refresh("unknown".into(), "h4".into(), 8)
                .await
                .unwrap(),
            Rotation::Invalid
        );

        // Sessions expire and can be revoked.
        store
            .create_session(session(11, 1), "k0".into())
            .await
            .unwrap();
        assert_eq!(store.active_session(11, 1_000).await.unwrap(), None);
        assert_eq!(
            store
                .rotate_refresh("k0".into(), "k1".into(), 1_000)
                .await
                .unwrap(),
            Rotation::Invalid
        );
        store
            .create_session(session(12, 1), "j0".into())
            .await
            .unwrap();
        store.revoke_session(12, 9).await.unwrap();
        assert_eq!(store.active_session(12, 10).await.unwrap(), None);
    }

    #[tokio::test]
    async fn sqlite_meets_the_account_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteAccountStore::open(&dir.path().join("account.db"), None).unwrap();
        run(&store).await;
    }

    #[tokio::test]
    async fn two_concurrent_refreshes_with_one_token_cannot_both_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteAccountStore::open(&dir.path().join("account.db"), None).unwrap();
        store.create_user(user(1, "+8613800000001")).await.unwrap();
        store
            .create_session(session(10, 1), "h0".into())
            .await
            .unwrap();
        let (a, b) = tokio::join!(
            store.rotate_refresh("h0".into(), "a1".into(), 5),
            store.rotate_refresh("h0".into(), "b1".into(), 5),
        );
        let rotated = [a.unwrap(), b.unwrap()]
            .iter()
            .filter(|r| matches!(r, Rotation::Rotated(_)))
            .count();
        assert_eq!(rotated, 1);
    }
}
