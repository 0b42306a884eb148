//! The embedded backend of [`ProfileStore`]: profiles, handles, lookups and
//! contact matching in the account room's SQLite file. The handle's rules
//! and the matching budget are decided with [`crate::policy::profile`]
//! inside the write that acts on them.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension as _, params};
use superapp_kit::sqlite::TxError;

use super::SqliteAccountStore;
use super::security::standing;
use super::social::{id, privacy, relation};
use crate::ProfileError;
use crate::model::{Gender, Lookup, LookupFacts, ProfileChange, ProfileRecord, UserId};
use crate::policy::profile::{self as policy, MATCH_WINDOW_MS};
use crate::store::{ProfileOutcome, ProfileStore};

type Tx<T> = Result<T, TxError<ProfileError>>;

/// Others' expired contact hashes deleted by each match, at most: twice
/// what one match may record, so they never pile up while anyone matches.
const EXPIRED_PER_MATCH: i64 = 2 * 10_000;

fn rule<T>(decision: Result<T, ProfileError>) -> Tx<T> {
    decision.map_err(TxError::Abort)
}

fn profile_of(c: &Connection, user: UserId) -> rusqlite::Result<Option<ProfileRecord>> {
    c.prepare_cached(
        "SELECT u.phone, u.display_name, u.created_at_ms, p.avatar_url, p.signature, p.region,
                p.gender, p.handle, p.handle_set_ms
         FROM users u LEFT JOIN profiles p ON p.user_id = u.id WHERE u.id = ?1",
    )?
    .query_row([id(user)], |r| {
        let gender: Option<String> = r.get(6)?;
        Ok(ProfileRecord {
            user_id: user,
            phone: r.get(0)?,
            display_name: r.get(1)?,
            created_at_ms: r.get(2)?,
            avatar_url: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
            signature: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
            region: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
            // Written by this backend from a Gender; anything else reads as unset.
            gender: gender
                .as_deref()
                .and_then(Gender::parse)
                .unwrap_or_default(),
            handle: r.get(7)?,
            handle_set_ms: r.get(8)?,
        })
    })
    .optional()
}

/// The holder of `key`'s id, handle or number.
fn holder(c: &Connection, key: &Lookup) -> rusqlite::Result<Option<UserId>> {
    let found: Option<i64> = match key {
        Lookup::Id(user) => return Ok(Some(*user)),
        Lookup::Handle(handle) => c
            .prepare_cached("SELECT user_id FROM users_by_handle WHERE handle_key = ?1")?
            .query_row([policy::handle_key(handle)], |r| r.get(0))
            .optional()?,
        Lookup::Phone(phone) => c
            .prepare_cached("SELECT user_id FROM users_by_phone WHERE phone = ?1")?
            .query_row([phone], |r| r.get(0))
            .optional()?,
    };
    Ok(found.map(|u| UserId(u as u64)))
}

/// The facts of `viewer`'s sight of `user`, if `user` exists.
fn facts(c: &Connection, user: UserId, viewer: UserId) -> rusqlite::Result<Option<LookupFacts>> {
    let (Some(profile), Some(standing)) = (profile_of(c, user)?, standing(c, user)?) else {
        return Ok(None);
    };
    Ok(Some(LookupFacts {
        profile,
        relation: relation(c, user, viewer, 0)?,
        privacy: privacy(c, user)?,
        standing,
    }))
}

/// Sets the handle of `profile` to `new` at `now_ms`, as the rules allow.
fn set_handle(c: &Connection, profile: &mut ProfileRecord, new: &str, now_ms: i64) -> Tx<()> {
    let held = profile.handle.as_deref();
    if !rule(policy::handle_change(
        held,
        profile.handle_set_ms,
        new,
        now_ms,
    ))? {
        return Ok(());
    }
    let key = policy::handle_key(new);
    let holder: Option<i64> = c
        .prepare_cached("SELECT user_id FROM users_by_handle WHERE handle_key = ?1")?
        .query_row([&key], |r| r.get(0))
        .optional()?;
    if holder.is_some_and(|h| h != id(profile.user_id)) {
        return rule(Err(ProfileError::HandleTaken));
    }
    if let Some(old) = held {
        c.prepare_cached("DELETE FROM users_by_handle WHERE handle_key = ?1")?
            .execute([policy::handle_key(old)])?;
    }
    c.prepare_cached("INSERT INTO users_by_handle (handle_key, user_id) VALUES (?1, ?2)")?
        .execute(params![key, id(profile.user_id)])?;
    profile.handle = Some(new.to_string());
    profile.handle_set_ms = Some(now_ms);
    Ok(())
}

impl ProfileStore for SqliteAccountStore {
    fn profile(&self, user: UserId) -> ProfileOutcome<Option<ProfileRecord>> {
        self.db.look(move |c| Ok(profile_of(c, user)?))
    }

    fn update_profile(
        &self,
        user: UserId,
        change: ProfileChange,
        now_ms: i64,
    ) -> ProfileOutcome<ProfileRecord> {
        self.db.act(move |c| {
            let Some(mut profile) = profile_of(c, user)? else {
                return rule(Err(ProfileError::UnknownUser));
            };
            if let Some(handle) = &change.handle {
                set_handle(c, &mut profile, handle, now_ms)?;
            }
            if let Some(name) = &change.display_name {
                c.prepare_cached("UPDATE users SET display_name = ?2 WHERE id = ?1")?
                    .execute(params![id(user), name])?;
                profile.display_name = name.clone();
            }
            for (part, value) in [
                (&mut profile.avatar_url, &change.avatar_url),
                (&mut profile.signature, &change.signature),
                (&mut profile.region, &change.region),
            ] {
                if let Some(value) = value {
                    part.clone_from(value);
                }
            }
            if let Some(gender) = change.gender {
                profile.gender = gender;
            }
            c.prepare_cached(
                "INSERT INTO profiles
                    (user_id, avatar_url, signature, region, gender, handle, handle_set_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (user_id) DO UPDATE SET avatar_url = excluded.avatar_url,
                    signature = excluded.signature, region = excluded.region,
                    gender = excluded.gender, handle = excluded.handle,
                    handle_set_ms = excluded.handle_set_ms",
            )?
            .execute(params![
                id(user),
                profile.avatar_url,
                profile.signature,
                profile.region,
                profile.gender.as_str(),
                profile.handle,
                profile.handle_set_ms
            ])?;
            Ok(profile)
        })
    }

    fn lookup(&self, viewer: UserId, key: Lookup) -> ProfileOutcome<Option<LookupFacts>> {
        self.db.look(move |c| {
            let Some(user) = holder(c, &key)? else {
                return Ok(None);
            };
            Ok(facts(c, user, viewer)?)
        })
    }

    fn match_phone_hashes(
        &self,
        viewer: UserId,
        hashes: Vec<String>,
        per_day: u32,
        now_ms: i64,
    ) -> ProfileOutcome<Vec<(String, LookupFacts)>> {
        self.db.act(move |c| {
            let expired = now_ms - MATCH_WINDOW_MS;
            c.prepare_cached("DELETE FROM contact_matches WHERE user_id = ?1 AND matched_ms <= ?2")?
                .execute(params![id(viewer), expired])?;
            // Anyone's hashes a day old go too, a bounded number per match,
            // so that those of users who never match again do not stay.
            c.prepare_cached(
                "DELETE FROM contact_matches WHERE (user_id, hash) IN
                    (SELECT user_id, hash FROM contact_matches WHERE matched_ms <= ?1 LIMIT ?2)",
            )?
            .execute(params![expired, EXPIRED_PER_MATCH])?;
            let matched: HashMap<String, i64> = c
                .prepare_cached("SELECT hash, matched_ms FROM contact_matches WHERE user_id = ?1")?
                .query_map([id(viewer)], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let mut times: Vec<i64> = matched.values().copied().collect();
            times.sort_unstable();
            let new: Vec<&String> = hashes.iter().filter(|h| !matched.contains_key(*h)).collect();
            rule(policy::contact_match_budget(&times, new.len(), per_day, now_ms))?;
            let mut record = c.prepare_cached(
                "INSERT OR IGNORE INTO contact_matches (user_id, hash, matched_ms) VALUES (?1, ?2, ?3)",
            )?;
            for hash in new {
                record.execute(params![id(viewer), hash, now_ms])?;
            }
            let mut found = Vec::new();
            for hash in &hashes {
                let holder: Option<i64> = c
                    .prepare_cached("SELECT user_id FROM users_by_phone_hash WHERE hash = ?1")?
                    .query_row([hash], |r| r.get(0))
                    .optional()?;
                if let Some(user) = holder
                    && let Some(facts) = facts(c, UserId(user as u64), viewer)?
                {
                    found.push((hash.clone(), facts));
                }
            }
            Ok(found)
        })
    }

    fn phone_index_salt(&self) -> ProfileOutcome<Option<String>> {
        self.db.look(|c| {
            Ok(
                c.query_row("SELECT salt_fingerprint FROM phone_index", [], |r| r.get(0))
                    .optional()?,
            )
        })
    }

    fn clear_phone_index(&self) -> ProfileOutcome<()> {
        self.db.act(|c| {
            c.execute("DELETE FROM phone_index", [])?;
            c.execute("DELETE FROM users_by_phone_hash", [])?;
            Ok(())
        })
    }

    fn phones_after(&self, after: UserId, limit: u32) -> ProfileOutcome<Vec<(UserId, String)>> {
        self.db.look(move |c| {
            // An erased account keeps its row, without a number.
            let mut stmt = c.prepare_cached(
                "SELECT id, phone FROM users WHERE id > ?1 AND phone != '' ORDER BY id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![id(after), limit], |r| {
                Ok((UserId(r.get::<_, i64>(0)? as u64), r.get(1)?))
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn index_phones(&self, entries: Vec<(String, UserId)>) -> ProfileOutcome<()> {
        self.db.act(move |c| {
            let mut stmt = c.prepare_cached(
                "INSERT OR REPLACE INTO users_by_phone_hash (hash, user_id) VALUES (?1, ?2)",
            )?;
            for (hash, user) in &entries {
                stmt.execute(params![hash, id(*user)])?;
            }
            Ok(())
        })
    }

    fn set_phone_index_salt(&self, fingerprint: String) -> ProfileOutcome<()> {
        self.db.act(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO phone_index (id, salt_fingerprint) VALUES (1, ?1)",
                [&fingerprint],
            )?;
            Ok(())
        })
    }
}
