//! Account security in the SQLite account store: sessions as their owner
//! lists and ends them, password changes, and an account's deletion from
//! the request to its erasure. Each write reads what its rule needs, asks
//! [`crate::policy::security`], and only then writes: a refusal has written
//! nothing.

use rusqlite::{Connection, OptionalExtension as _, params};
use superapp_kit::BoxFuture;
use superapp_kit::sqlite::TxError;

use super::SqliteAccountStore;
use super::social::bump;
use crate::AccountError;
use crate::model::{Erased, Person, SessionInfo, SessionRecord, Standing, UserId};
use crate::policy::security::{self as policy, DELETED_DISPLAY_NAME};
use crate::store::StoreError;

/// Sessions listed at most, the most recently active first.
pub const MAX_SESSIONS_LISTED: u32 = 200;

type Tx<T> = Result<T, TxError<AccountError>>;

fn rule<T>(decision: Result<T, AccountError>) -> Tx<T> {
    decision.map_err(TxError::Abort)
}

fn id(user: UserId) -> i64 {
    user.0 as i64
}

/// The standing the three deletion columns of a user's row say.
fn standing_of(requested: Option<i64>, due: Option<i64>, deleted: Option<i64>) -> Standing {
    match (deleted, requested, due) {
        (Some(at_ms), _, _) => Standing::Deleted { at_ms },
        (None, Some(requested_at_ms), Some(due_at_ms)) => Standing::Deleting {
            requested_at_ms,
            due_at_ms,
        },
        _ => Standing::Active,
    }
}

const STANDING_COLUMNS: &str = "deletion_requested_ms, deletion_due_ms, deleted_at_ms";

fn standing_row(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Standing> {
    Ok(standing_of(
        r.get(first)?,
        r.get(first + 1)?,
        r.get(first + 2)?,
    ))
}

/// Where `user`'s account stands; None for no such user.
pub(super) fn standing(c: &Connection, user: UserId) -> rusqlite::Result<Option<Standing>> {
    c.prepare_cached(&format!(
        "SELECT {STANDING_COLUMNS} FROM users WHERE id = ?1"
    ))?
    .query_row([id(user)], |r| standing_row(r, 0))
    .optional()
}

/// Whether `user` exists and takes part ([`policy::takes_part`]).
pub(super) fn takes_part(c: &Connection, user: UserId) -> rusqlite::Result<bool> {
    Ok(standing(c, user)?.is_some_and(policy::takes_part))
}

/// Display names of those of `ids` that exist and take part.
pub(super) fn display_names(
    c: &Connection,
    ids: Vec<UserId>,
) -> rusqlite::Result<Vec<(UserId, String)>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT display_name, {STANDING_COLUMNS} FROM users WHERE id = ?1"
    ))?;
    let mut names = Vec::with_capacity(ids.len());
    for user in ids {
        let found = stmt
            .query_row([id(user)], |r| {
                Ok((r.get::<_, String>(0)?, standing_row(r, 1)?))
            })
            .optional()?;
        if let Some((name, standing)) = found
            && policy::takes_part(standing)
        {
            names.push((user, name));
        }
    }
    Ok(names)
}

fn people(c: &Connection, ids: Vec<UserId>) -> rusqlite::Result<Vec<Person>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT display_name, {STANDING_COLUMNS} FROM users WHERE id = ?1"
    ))?;
    let mut found = Vec::with_capacity(ids.len());
    for user in ids {
        let row = stmt
            .query_row([id(user)], |r| {
                Ok((r.get::<_, String>(0)?, standing_row(r, 1)?))
            })
            .optional()?;
        if let Some((display_name, standing)) = row {
            found.push(Person {
                id: user,
                display_name,
                deleted: policy::shown_deleted(standing),
            });
        }
    }
    Ok(found)
}

fn sessions(c: &Connection, user: UserId, now_ms: i64) -> rusqlite::Result<Vec<SessionInfo>> {
    let mut stmt = c.prepare_cached(
        "SELECT id, device_name, created_at_ms, coalesce(last_active_ms, created_at_ms) AS active,
                expires_at_ms
         FROM sessions
         WHERE user_id = ?1 AND revoked_at_ms IS NULL AND expires_at_ms > ?2
         ORDER BY active DESC, id DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![id(user), now_ms, MAX_SESSIONS_LISTED], |r| {
        Ok(SessionInfo {
            id: r.get::<_, i64>(0)? as u64,
            device_name: r.get(1)?,
            created_at_ms: r.get(2)?,
            last_active_at_ms: r.get(3)?,
            expires_at_ms: r.get(4)?,
        })
    })?;
    rows.collect()
}

/// `session` if it is a live session of `user`.
fn live_session(
    c: &Connection,
    user: UserId,
    session: u64,
    now_ms: i64,
) -> rusqlite::Result<Option<SessionRecord>> {
    c.prepare_cached(
        "SELECT device_name, created_at_ms, expires_at_ms FROM sessions
         WHERE id = ?1 AND user_id = ?2 AND revoked_at_ms IS NULL AND expires_at_ms > ?3",
    )?
    .query_row(params![session as i64, id(user), now_ms], |r| {
        Ok(SessionRecord {
            id: session,
            user_id: user,
            device_name: r.get(0)?,
            created_at_ms: r.get(1)?,
            expires_at_ms: r.get(2)?,
        })
    })
    .optional()
}

/// Revokes every session of `user` not revoked yet, but `keep`; answers
/// those revoked.
fn revoke_all_but(
    c: &Connection,
    user: UserId,
    keep: Option<u64>,
    now_ms: i64,
) -> rusqlite::Result<Vec<u64>> {
    let keep = keep.map_or(-1, |s| s as i64);
    let mut stmt = c.prepare_cached(
        "UPDATE sessions SET revoked_at_ms = ?3
         WHERE user_id = ?1 AND id != ?2 AND revoked_at_ms IS NULL
         RETURNING id",
    )?;
    let rows = stmt.query_map(params![id(user), keep, now_ms], |r| {
        r.get::<_, i64>(0).map(|s| s as u64)
    })?;
    rows.collect()
}

fn change_password(
    c: &Connection,
    user: UserId,
    password_hash: &str,
    keep: u64,
    refresh_hash: &str,
    now_ms: i64,
) -> Tx<(SessionRecord, Vec<u64>)> {
    let Some(kept) = live_session(c, user, keep, now_ms)? else {
        return rule(Err(AccountError::SessionRevoked));
    };
    c.prepare_cached("UPDATE users SET password_hash = ?2 WHERE id = ?1")?
        .execute(params![id(user), password_hash])?;
    let revoked = revoke_all_but(c, user, Some(keep), now_ms)?;
    // The asking session stays, under a new refresh token only: a copy of
    // an earlier one, wherever it went, answers invalid from now on.
    c.prepare_cached("DELETE FROM refresh_tokens WHERE session_id = ?1")?
        .execute([keep as i64])?;
    c.prepare_cached("INSERT INTO refresh_tokens (hash, session_id) VALUES (?1, ?2)")?
        .execute(params![refresh_hash, keep as i64])?;
    c.prepare_cached("UPDATE sessions SET last_active_ms = ?2 WHERE id = ?1")?
        .execute(params![keep as i64, now_ms])?;
    Ok((kept, revoked))
}

fn request_deletion(c: &Connection, user: UserId, now_ms: i64, due_at_ms: i64) -> Tx<Vec<u64>> {
    let Some(current) = standing(c, user)? else {
        return rule(Err(AccountError::AccountDeleted));
    };
    rule(policy::may_request_deletion(current, now_ms))?;
    c.prepare_cached(
        "UPDATE users SET deletion_requested_ms = ?2, deletion_due_ms = ?3 WHERE id = ?1",
    )?
    .execute(params![id(user), now_ms, due_at_ms])?;
    Ok(revoke_all_but(c, user, None, now_ms)?)
}

fn cancel_deletion(c: &Connection, user: UserId, now_ms: i64) -> Tx<()> {
    let Some(current) = standing(c, user)? else {
        return rule(Err(AccountError::AccountDeleted));
    };
    rule(policy::may_restore(current, now_ms))?;
    c.prepare_cached(
        "UPDATE users SET deletion_requested_ms = NULL, deletion_due_ms = NULL WHERE id = ?1",
    )?
    .execute([id(user)])?;
    Ok(())
}

fn deletions_due(c: &Connection, now_ms: i64, limit: u32) -> rusqlite::Result<Vec<UserId>> {
    let mut stmt = c.prepare_cached(
        "SELECT id FROM users
         WHERE deletion_due_ms IS NOT NULL AND deletion_due_ms <= ?1 AND deleted_at_ms IS NULL
         ORDER BY deletion_due_ms, id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![now_ms, limit], |r| {
        r.get::<_, i64>(0).map(|u| UserId(u as u64))
    })?;
    rows.collect()
}

/// Erases `user`'s account if its grace period has ended. What stays is the
/// row of the id, with the placeholder name, so that the id is never used
/// again and the peers' history names it; everything else the account room
/// holds of the user goes.
fn erase(c: &Connection, user: UserId, now_ms: i64) -> rusqlite::Result<Option<Erased>> {
    let Some(current) = standing(c, user)? else {
        return Ok(None);
    };
    if !policy::due_for_erasure(current, now_ms) {
        return Ok(None);
    }
    // Each friendship ends on the friend's side as a removal does: a
    // `removed` mark in their change feed, under their next version.
    let friends: Vec<UserId> = c
        .prepare_cached("SELECT friend FROM contacts WHERE owner = ?1 AND removed = 0")?
        .query_map([id(user)], |r| r.get::<_, i64>(0).map(|f| UserId(f as u64)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut erased = Erased::default();
    for friend in friends {
        let version = bump(c, friend, -1)?;
        c.prepare_cached(
            "UPDATE contacts SET removed = 1, remark = '', tags = '[]', version = ?3
             WHERE owner = ?1 AND friend = ?2",
        )?
        .execute(params![id(friend), id(user), version as i64])?;
        erased.friends.push((friend, version));
    }
    // Someone who blocks the user keeps what was sent during the block out
    // of their view (docs/architecture.md §17): the block becomes a past one.
    c.prepare_cached(
        "INSERT OR IGNORE INTO block_spans (owner, until_ms, blocked, from_ms)
         SELECT owner, max(?2, since_ms), blocked, since_ms FROM blocks WHERE blocked = ?1",
    )?
    .execute(params![id(user), now_ms])?;
    for sql in [
        "DELETE FROM block_spans WHERE owner = ?1",
        "DELETE FROM contacts WHERE owner = ?1",
        "DELETE FROM contact_heads WHERE owner = ?1",
        "DELETE FROM friend_requests WHERE to_user = ?1 OR from_user = ?1",
        "DELETE FROM requests_sent WHERE from_user = ?1",
        "DELETE FROM blocks WHERE owner = ?1 OR blocked = ?1",
        "DELETE FROM privacy WHERE user_id = ?1",
        "DELETE FROM real_names WHERE user_id = ?1",
        "DELETE FROM real_names_by_number WHERE user_id = ?1",
        "DELETE FROM real_name_submissions WHERE user_id = ?1",
        "DELETE FROM refresh_tokens WHERE session_id IN (SELECT id FROM sessions WHERE user_id = ?1)",
        "DELETE FROM sessions WHERE user_id = ?1",
        // The phone is free for a new registration.
        "DELETE FROM users_by_phone WHERE user_id = ?1",
    ] {
        c.prepare_cached(sql)?.execute([id(user)])?;
    }
    c.prepare_cached(
        "UPDATE users SET phone = '', display_name = ?2, password_hash = '',
             deletion_requested_ms = NULL, deletion_due_ms = NULL, deleted_at_ms = ?3
         WHERE id = ?1",
    )?
    .execute(params![id(user), DELETED_DISPLAY_NAME, now_ms])?;
    Ok(Some(erased))
}

/// The security half of [`crate::store::AccountStore`] for SQLite; the
/// trait's impl hands each method here.
impl SqliteAccountStore {
    pub(super) fn standing_of_user(
        &self,
        user: UserId,
    ) -> BoxFuture<'_, Result<Option<Standing>, StoreError>> {
        Box::pin(self.db.read(move |c| standing(c, user)))
    }

    pub(super) fn people_of(
        &self,
        ids: Vec<UserId>,
    ) -> BoxFuture<'_, Result<Vec<Person>, StoreError>> {
        Box::pin(self.db.read(move |c| people(c, ids)))
    }

    pub(super) fn sessions_of(
        &self,
        user: UserId,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<SessionInfo>, StoreError>> {
        Box::pin(self.db.read(move |c| sessions(c, user, now_ms)))
    }

    pub(super) fn revoke_session_of(
        &self,
        user: UserId,
        session: u64,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(self.db.write(move |c| {
            let revoked = c
                .prepare_cached(
                    "UPDATE sessions SET revoked_at_ms = ?3
                     WHERE id = ?1 AND user_id = ?2 AND revoked_at_ms IS NULL
                       AND expires_at_ms > ?3",
                )?
                .execute(params![session as i64, id(user), now_ms])?;
            Ok(revoked > 0)
        }))
    }

    pub(super) fn change_password_of(
        &self,
        user: UserId,
        password_hash: String,
        keep: u64,
        refresh_hash: String,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<(SessionRecord, Vec<u64>), AccountError>> {
        self.db
            .act(move |c| change_password(c, user, &password_hash, keep, &refresh_hash, now_ms))
    }

    pub(super) fn request_deletion_of(
        &self,
        user: UserId,
        now_ms: i64,
        due_at_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<u64>, AccountError>> {
        self.db
            .act(move |c| request_deletion(c, user, now_ms, due_at_ms))
    }

    pub(super) fn cancel_deletion_of(
        &self,
        user: UserId,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<(), AccountError>> {
        self.db.act(move |c| cancel_deletion(c, user, now_ms))
    }

    pub(super) fn deletions_due_by(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<UserId>, StoreError>> {
        Box::pin(self.db.read(move |c| deletions_due(c, now_ms, limit)))
    }

    pub(super) fn erase_user(
        &self,
        user: UserId,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<Option<Erased>, StoreError>> {
        Box::pin(self.db.write(move |c| erase(c, user, now_ms)))
    }
}
