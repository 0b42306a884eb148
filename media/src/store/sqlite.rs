//! The embedded backend of [`MediaStore`]: one SQLite file, written by its
//! single writer thread with group commit. Media and upload ids are stored
//! as their hex spellings, user ids as integers, kinds as their names.

use std::path::Path;
use std::sync::Arc;

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension as _, params};
use superapp_kit::metrics::Histogram;
use superapp_kit::sqlite::{Database, TxError};

use super::{MediaStore, Outcome, StoreError};
use crate::MediaError;
use crate::model::{
    Facts, Holding, MediaId, MediaKind, StoredObject, Upload, UploadId, UploadLimits, Usage, UserId,
};
use crate::policy;

const MIGRATIONS: &[&str] = &["
CREATE TABLE uploads (
    upload_id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    name TEXT,
    keep_exif INTEGER NOT NULL,
    length INTEGER NOT NULL,
    received INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    media_id TEXT
) WITHOUT ROWID;
CREATE INDEX uploads_by_user ON uploads (user_id, expires_ms);
CREATE INDEX uploads_by_expiry ON uploads (expires_ms);
CREATE TABLE objects (
    media_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    mime TEXT NOT NULL,
    size INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    thumbnail INTEGER NOT NULL,
    stored INTEGER NOT NULL,
    last_upload_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX objects_by_last_upload ON objects (last_upload_ms);
CREATE TABLE holdings (
    user_id INTEGER NOT NULL,
    media_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT,
    size INTEGER NOT NULL,
    held_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, media_id)
) WITHOUT ROWID;
CREATE INDEX holdings_by_media ON holdings (media_id, user_id);
CREATE TABLE access (
    user_id INTEGER NOT NULL,
    media_id TEXT NOT NULL,
    granted_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, media_id)
) WITHOUT ROWID;
CREATE INDEX access_by_media ON access (media_id, user_id);
CREATE TABLE refs (
    media_id TEXT NOT NULL,
    referrer TEXT NOT NULL,
    PRIMARY KEY (media_id, referrer)
) WITHOUT ROWID;
CREATE INDEX refs_by_referrer ON refs (referrer, media_id);
CREATE TABLE doomed (
    media_id TEXT PRIMARY KEY,
    doomed_ms INTEGER NOT NULL
) WITHOUT ROWID;
"];

pub struct SqliteMediaStore {
    db: Database,
}

impl SqliteMediaStore {
    pub fn open(path: &Path, batch_sizes: Option<Arc<Histogram>>) -> Result<Self, StoreError> {
        Ok(Self {
            db: Database::open(path, MIGRATIONS, batch_sizes)?,
        })
    }
}

type Tx<T> = Result<T, TxError<MediaError>>;

fn conversion(index: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(index, Type::Text, Box::new(e))
}

fn media_id(r: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<MediaId> {
    let s: String = r.get(index)?;
    s.parse().map_err(|e| conversion(index, e))
}

fn kind(r: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<MediaKind> {
    let s: String = r.get(index)?;
    s.parse().map_err(|e| conversion(index, e))
}

/// A stored count or size: written by this code from u64s below 2^63.
fn count(r: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<u64> {
    r.get::<_, i64>(index).map(|v| v.max(0) as u64)
}

/// A u64 as SQLite's integer: sizes and ids here stay below 2^63.
fn int(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

const UPLOAD_COLUMNS: &str = "upload_id, user_id, kind, name, keep_exif, length, received, \
                              created_ms, expires_ms, media_id";

fn upload_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Upload> {
    let id: String = r.get(0)?;
    let media: Option<String> = r.get(9)?;
    Ok(Upload {
        id: id.parse().map_err(|e| conversion(0, e))?,
        user: UserId(count(r, 1)?),
        kind: kind(r, 2)?,
        name: r.get(3)?,
        keep_exif: r.get(4)?,
        length: count(r, 5)?,
        offset: count(r, 6)?,
        created_ms: r.get(7)?,
        expires_ms: r.get(8)?,
        media: media
            .map(|m| m.parse().map_err(|e| conversion(9, e)))
            .transpose()?,
    })
}

const OBJECT_COLUMNS: &str =
    "media_id, kind, mime, size, width, height, thumbnail, stored, last_upload_ms";

fn object_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredObject> {
    Ok(StoredObject {
        media_id: media_id(r, 0)?,
        facts: Facts {
            kind: kind(r, 1)?,
            mime: r.get(2)?,
            size: count(r, 3)?,
            width: r.get(4)?,
            height: r.get(5)?,
            thumbnail: r.get(6)?,
        },
        stored: r.get(7)?,
        last_upload_ms: r.get(8)?,
    })
}

fn read_object(c: &Connection, id: &str) -> rusqlite::Result<Option<StoredObject>> {
    c.prepare_cached(&format!(
        "SELECT {OBJECT_COLUMNS} FROM objects WHERE media_id = ?1"
    ))?
    .query_row([id], object_row)
    .optional()
}

fn read_usage(c: &Connection, user: UserId, now_ms: i64) -> rusqlite::Result<Usage> {
    let used: i64 = c
        .prepare_cached("SELECT coalesce(sum(size), 0) FROM holdings WHERE user_id = ?1")?
        .query_row([int(user.0)], |r| r.get(0))?;
    let (reserved, open): (i64, i64) = c
        .prepare_cached(
            "SELECT coalesce(sum(length), 0), count(*) FROM uploads
             WHERE user_id = ?1 AND expires_ms > ?2 AND media_id IS NULL",
        )?
        .query_row(params![int(user.0), now_ms], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(Usage {
        used_bytes: used.max(0) as u64,
        reserved_bytes: reserved.max(0) as u64,
        open_uploads: open.clamp(0, i64::from(u32::MAX)) as u32,
    })
}

impl MediaStore for SqliteMediaStore {
    fn open_upload(&self, upload: Upload, limits: UploadLimits, now_ms: i64) -> Outcome<()> {
        self.db.act(move |c| -> Tx<()> {
            let usage = read_usage(c, upload.user, now_ms)?;
            policy::may_open(&usage, upload.length, &limits).map_err(TxError::Abort)?;
            c.prepare_cached(&format!(
                "INSERT INTO uploads ({UPLOAD_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL)"
            ))?
            .execute(params![
                upload.id.as_str(),
                int(upload.user.0),
                upload.kind.as_str(),
                upload.name,
                upload.keep_exif,
                int(upload.length),
                int(upload.offset),
                upload.created_ms,
                upload.expires_ms,
            ])?;
            Ok(())
        })
    }

    fn upload(&self, id: &UploadId) -> Outcome<Option<Upload>> {
        let id = id.as_str().to_string();
        self.db.look(move |c| -> Tx<Option<Upload>> {
            Ok(c.prepare_cached(&format!(
                "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE upload_id = ?1"
            ))?
            .query_row([id], upload_row)
            .optional()?)
        })
    }

    fn advance(&self, id: &UploadId, from: u64, to: u64) -> Outcome<bool> {
        let id = id.as_str().to_string();
        self.db.act(move |c| -> Tx<bool> {
            let changed = c
                .prepare_cached(
                    "UPDATE uploads SET received = ?3
                     WHERE upload_id = ?1 AND received = ?2 AND media_id IS NULL",
                )?
                .execute(params![id, int(from), int(to)])?;
            Ok(changed == 1)
        })
    }

    fn discard_upload(&self, id: &UploadId) -> Outcome<()> {
        let id = id.as_str().to_string();
        self.db.act(move |c| -> Tx<()> {
            c.prepare_cached("DELETE FROM uploads WHERE upload_id = ?1")?
                .execute([&id])?;
            Ok(())
        })
    }

    fn usage(&self, user: UserId, now_ms: i64) -> Outcome<Usage> {
        self.db
            .look(move |c| -> Tx<Usage> { Ok(read_usage(c, user, now_ms)?) })
    }

    fn prepare_object(&self, media_id: MediaId, facts: Facts, now_ms: i64) -> Outcome<bool> {
        self.db.act(move |c| -> Tx<bool> {
            let id = media_id.as_str();
            let doomed = c
                .prepare_cached("SELECT 1 FROM doomed WHERE media_id = ?1")?
                .exists([id])?;
            if doomed {
                return Err(TxError::Abort(MediaError::Collecting));
            }
            if let Some(object) = read_object(c, id)? {
                c.prepare_cached(
                    "UPDATE objects SET last_upload_ms = max(last_upload_ms, ?2) WHERE media_id = ?1",
                )?
                .execute(params![id, now_ms])?;
                return Ok(object.stored);
            }
            c.prepare_cached(&format!(
                "INSERT INTO objects ({OBJECT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8)"
            ))?
            .execute(params![
                id,
                facts.kind.as_str(),
                facts.mime,
                int(facts.size),
                facts.width,
                facts.height,
                facts.thumbnail,
                now_ms,
            ])?;
            Ok(false)
        })
    }

    fn mark_stored(&self, media_id: MediaId) -> Outcome<()> {
        self.db.act(move |c| -> Tx<()> {
            c.prepare_cached("UPDATE objects SET stored = 1 WHERE media_id = ?1")?
                .execute([media_id.as_str()])?;
            Ok(())
        })
    }

    fn complete_upload(&self, id: UploadId, media_id: MediaId, now_ms: i64) -> Outcome<()> {
        self.db.act(move |c| -> Tx<()> {
            let Some(object) = read_object(c, media_id.as_str())? else {
                return Err(TxError::Abort(MediaError::Collecting));
            };
            let upload = c
                .prepare_cached(&format!(
                    "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE upload_id = ?1"
                ))?
                .query_row([id.as_str()], upload_row)
                .optional()?
                .ok_or(TxError::Abort(MediaError::UnknownUpload))?;
            c.prepare_cached(
                "UPDATE uploads SET media_id = ?2, received = length WHERE upload_id = ?1",
            )?
            .execute(params![id.as_str(), media_id.as_str()])?;
            c.prepare_cached(
                "INSERT INTO holdings (user_id, media_id, kind, name, size, held_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (user_id, media_id) DO UPDATE SET
                     kind = excluded.kind, name = excluded.name, held_ms = excluded.held_ms",
            )?
            .execute(params![
                int(upload.user.0),
                media_id.as_str(),
                upload.kind.as_str(),
                upload.name,
                int(object.facts.size),
                now_ms,
            ])?;
            c.prepare_cached(
                "UPDATE objects SET last_upload_ms = max(last_upload_ms, ?2) WHERE media_id = ?1",
            )?
            .execute(params![media_id.as_str(), now_ms])?;
            Ok(())
        })
    }

    fn object(&self, media_id: &MediaId) -> Outcome<Option<StoredObject>> {
        let id = media_id.as_str().to_string();
        self.db
            .look(move |c| -> Tx<Option<StoredObject>> { Ok(read_object(c, &id)?) })
    }

    fn holding(&self, user: UserId, media_id: &MediaId) -> Outcome<Option<Holding>> {
        let id = media_id.clone();
        self.db.look(move |c| -> Tx<Option<Holding>> {
            Ok(c.prepare_cached(
                "SELECT kind, name, size, held_ms FROM holdings WHERE user_id = ?1 AND media_id = ?2",
            )?
            .query_row(params![int(user.0), id.as_str()], |r| {
                Ok(Holding {
                    user,
                    media_id: id.clone(),
                    kind: kind(r, 0)?,
                    name: r.get(1)?,
                    size: count(r, 2)?,
                    held_ms: r.get(3)?,
                })
            })
            .optional()?)
        })
    }

    fn grant_access(&self, user: UserId, media_id: MediaId, now_ms: i64) -> Outcome<()> {
        self.db.act(move |c| -> Tx<()> {
            c.prepare_cached(
                "INSERT INTO access (user_id, media_id, granted_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user_id, media_id) DO NOTHING",
            )?
            .execute(params![int(user.0), media_id.as_str(), now_ms])?;
            Ok(())
        })
    }

    fn usable(&self, user: UserId, ids: Vec<MediaId>) -> Outcome<Vec<Option<Facts>>> {
        self.db.look(move |c| -> Tx<Vec<Option<Facts>>> {
            let mut held =
                c.prepare_cached("SELECT kind FROM holdings WHERE user_id = ?1 AND media_id = ?2")?;
            let mut granted =
                c.prepare_cached("SELECT 1 FROM access WHERE user_id = ?1 AND media_id = ?2")?;
            let mut answers = Vec::with_capacity(ids.len());
            for id in &ids {
                let object = match read_object(c, id.as_str())? {
                    Some(object) if object.stored => object,
                    _ => {
                        answers.push(None);
                        continue;
                    }
                };
                let declared = held
                    .query_row(params![int(user.0), id.as_str()], |r| kind(r, 0))
                    .optional()?;
                let facts = match declared {
                    Some(MediaKind::File) => Some(Facts {
                        kind: MediaKind::File,
                        mime: policy::OCTET_STREAM.to_string(),
                        ..object.facts
                    }),
                    Some(_) => Some(object.facts),
                    None if granted.exists(params![int(user.0), id.as_str()])? => {
                        Some(object.facts)
                    }
                    None => None,
                };
                answers.push(facts);
            }
            Ok(answers)
        })
    }

    fn attach(&self, ids: Vec<MediaId>, referrer: String) -> Outcome<()> {
        self.db.act(move |c| -> Tx<()> {
            let mut insert = c.prepare_cached(
                "INSERT INTO refs (media_id, referrer) VALUES (?1, ?2)
                 ON CONFLICT (media_id, referrer) DO NOTHING",
            )?;
            for id in &ids {
                insert.execute(params![id.as_str(), referrer])?;
            }
            Ok(())
        })
    }

    fn detach(&self, referrer: String) -> Outcome<()> {
        self.db.act(move |c| -> Tx<()> {
            c.prepare_cached("DELETE FROM refs WHERE referrer = ?1")?
                .execute([&referrer])?;
            Ok(())
        })
    }

    fn doom(&self, now_ms: i64, grace_ms: i64, limit: u32) -> Outcome<Vec<(MediaId, bool)>> {
        self.db.act(move |c| -> Tx<Vec<(MediaId, bool)>> {
            let quiet_since = now_ms.saturating_sub(grace_ms);
            let candidates: Vec<(StoredObject, bool)> = c
                .prepare_cached(&format!(
                    "SELECT {OBJECT_COLUMNS},
                        EXISTS (SELECT 1 FROM refs r WHERE r.media_id = objects.media_id)
                     FROM objects WHERE last_upload_ms <= ?1
                        AND NOT EXISTS (SELECT 1 FROM refs r WHERE r.media_id = objects.media_id)
                     ORDER BY last_upload_ms LIMIT ?2"
                ))?
                .query_map(params![quiet_since, i64::from(limit)], |r| {
                    Ok((object_row(r)?, r.get(9)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut doomed = Vec::new();
            for (object, referenced) in candidates {
                if doomed.len() >= limit as usize {
                    break;
                }
                if !policy::collectable(
                    referenced,
                    object.stored,
                    object.last_upload_ms,
                    now_ms,
                    grace_ms,
                ) {
                    continue;
                }
                let id = object.media_id.as_str();
                c.prepare_cached(
                    "INSERT INTO doomed (media_id, doomed_ms) VALUES (?1, ?2)
                     ON CONFLICT (media_id) DO NOTHING",
                )?
                .execute(params![id, now_ms])?;
                for sql in [
                    "DELETE FROM objects WHERE media_id = ?1",
                    "DELETE FROM holdings WHERE media_id = ?1",
                    "DELETE FROM access WHERE media_id = ?1",
                ] {
                    c.prepare_cached(sql)?.execute([id])?;
                }
                doomed.push((object.media_id, object.facts.thumbnail));
            }
            Ok(doomed)
        })
    }

    fn doomed(&self, limit: u32, doomed_before_ms: i64) -> Outcome<Vec<MediaId>> {
        self.db.look(move |c| -> Tx<Vec<MediaId>> {
            Ok(c.prepare_cached(
                "SELECT media_id FROM doomed WHERE doomed_ms < ?2 ORDER BY doomed_ms LIMIT ?1",
            )?
            .query_map(params![i64::from(limit), doomed_before_ms], |r| {
                media_id(r, 0)
            })?
            .collect::<rusqlite::Result<_>>()?)
        })
    }

    fn forget_doomed(&self, media_id: MediaId) -> Outcome<()> {
        self.db.act(move |c| -> Tx<()> {
            c.prepare_cached("DELETE FROM doomed WHERE media_id = ?1")?
                .execute([media_id.as_str()])?;
            Ok(())
        })
    }

    fn expired_uploads(&self, now_ms: i64, limit: u32) -> Outcome<Vec<Upload>> {
        self.db.look(move |c| -> Tx<Vec<Upload>> {
            Ok(c.prepare_cached(&format!(
                "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE expires_ms <= ?1
                 ORDER BY expires_ms LIMIT ?2"
            ))?
            .query_map(params![now_ms, i64::from(limit)], upload_row)?
            .collect::<rusqlite::Result<_>>()?)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::conformance;

    fn open(dir: &tempfile::TempDir) -> SqliteMediaStore {
        SqliteMediaStore::open(&dir.path().join("media.db"), None).unwrap()
    }

    #[tokio::test]
    async fn sqlite_keeps_uploads_as_the_contract_says() {
        let dir = tempfile::tempdir().unwrap();
        conformance::uploads(&open(&dir)).await;
    }

    #[tokio::test]
    async fn sqlite_lets_racing_uploads_share_a_quota_exactly() {
        let dir = tempfile::tempdir().unwrap();
        conformance::racing_uploads_respect_the_quota(Arc::new(open(&dir))).await;
    }

    #[tokio::test]
    async fn sqlite_keeps_objects_and_holdings_as_the_contract_says() {
        let dir = tempfile::tempdir().unwrap();
        conformance::objects(&open(&dir)).await;
    }

    #[tokio::test]
    async fn sqlite_collects_as_the_contract_says() {
        let dir = tempfile::tempdir().unwrap();
        conformance::collection(&open(&dir)).await;
    }
}
