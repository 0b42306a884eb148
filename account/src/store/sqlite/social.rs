//! The embedded backend of [`SocialStore`]: the social graph in the account
//! room's SQLite file, each write one job of its single writer, deciding
//! with [`crate::policy`] inside the transaction.

use rusqlite::{Connection, OptionalExtension as _, params};
use superapp_kit::sqlite::TxError;

use super::SqliteAccountStore;
use crate::SocialError;
use crate::model::{
    Befriended, BlockSpan, Contact, ContactChanges, ContactEdit, FoundContact, FriendRequest,
    Privacy, Relation, UserId, ViewFilters, WhoMayAddMe, WhoMayMessage,
};
use crate::policy::{self, REQUEST_TTL_MS, REQUEST_WINDOW_MS, RequestOutcome, SocialLimits};
use crate::store::{Outcome, SocialStore};

type Tx<T> = Result<T, TxError<SocialError>>;

fn rule<T>(decision: Result<T, SocialError>) -> Tx<T> {
    decision.map_err(TxError::Abort)
}

fn id(user: UserId) -> i64 {
    user.0 as i64
}

fn relation(
    c: &Connection,
    owner: UserId,
    other: UserId,
    now_ms: i64,
) -> rusqlite::Result<Relation> {
    c.prepare_cached(
        "SELECT
            EXISTS (SELECT 1 FROM contacts WHERE owner = ?1 AND friend = ?2 AND removed = 0),
            EXISTS (SELECT 1 FROM blocks WHERE owner = ?1 AND blocked = ?2),
            EXISTS (SELECT 1 FROM blocks WHERE owner = ?2 AND blocked = ?1),
            EXISTS (SELECT 1 FROM friend_requests
                    WHERE to_user = ?1 AND from_user = ?2 AND sent_ms > ?3),
            EXISTS (SELECT 1 FROM contacts WHERE owner = ?1 AND friend = ?2 AND hidden = 1),
            EXISTS (SELECT 1 FROM contacts WHERE owner = ?2 AND friend = ?1 AND hidden = 1)",
    )?
    .query_row(
        params![id(owner), id(other), now_ms - REQUEST_TTL_MS],
        |r| {
            Ok(Relation {
                friends: r.get(0)?,
                blocks: r.get(1)?,
                blocked_by: r.get(2)?,
                requested_by: r.get(3)?,
                hides: r.get(4)?,
                hidden_by: r.get(5)?,
            })
        },
    )
}

fn user_exists(c: &Connection, user: UserId) -> rusqlite::Result<bool> {
    c.prepare_cached("SELECT EXISTS (SELECT 1 FROM users WHERE id = ?1)")?
        .query_row([id(user)], |r| r.get(0))
}

fn friend_count(c: &Connection, owner: UserId) -> rusqlite::Result<u32> {
    Ok(
        c.prepare_cached("SELECT friends FROM contact_heads WHERE owner = ?1")?
            .query_row([id(owner)], |r| r.get::<_, i64>(0))
            .optional()?
            .unwrap_or(0)
            .max(0) as u32,
    )
}

/// Moves the owner's list one version on (and its friend count by
/// `friends`); answers the new version.
pub(super) fn bump(c: &Connection, owner: UserId, friends: i64) -> rusqlite::Result<u64> {
    c.prepare_cached(
        "INSERT INTO contact_heads (owner, version, friends) VALUES (?1, 1, max(?2, 0))
         ON CONFLICT (owner) DO UPDATE SET version = version + 1, friends = friends + ?2
         RETURNING version",
    )?
    .query_row(params![id(owner), friends], |r| r.get::<_, i64>(0))
    .map(|v| v as u64)
}

fn delete_requests(c: &Connection, a: UserId, b: UserId) -> rusqlite::Result<()> {
    c.prepare_cached(
        "DELETE FROM friend_requests
         WHERE (to_user = ?1 AND from_user = ?2) OR (to_user = ?2 AND from_user = ?1)",
    )?
    .execute(params![id(a), id(b)])?;
    Ok(())
}

/// Makes `a` and `b` friends on both sides; answers (a's, b's) versions.
/// A new friendship starts unhidden on both sides.
fn befriend(c: &Connection, a: UserId, b: UserId, now_ms: i64) -> rusqlite::Result<(u64, u64)> {
    delete_requests(c, a, b)?;
    let mut versions = [0; 2];
    for (i, (owner, friend)) in [(a, b), (b, a)].into_iter().enumerate() {
        let version = bump(c, owner, 1)?;
        c.prepare_cached(
            "INSERT INTO contacts (owner, friend, remark, tags, since_ms, removed, hidden, version)
             VALUES (?1, ?2, '', '[]', ?3, 0, 0, ?4)
             ON CONFLICT (owner, friend) DO UPDATE SET remark = '', tags = '[]',
                 since_ms = excluded.since_ms, removed = 0, hidden = 0,
                 version = excluded.version",
        )?
        .execute(params![id(owner), id(friend), now_ms, version as i64])?;
        versions[i] = version;
    }
    Ok((versions[0], versions[1]))
}

fn contact_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Contact> {
    let tags: String = r.get(2)?;
    Ok(Contact {
        friend: UserId(r.get::<_, i64>(0)? as u64),
        remark: r.get(1)?,
        // Written by this backend from a Vec<String>; anything else reads as none.
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        since_ms: r.get(3)?,
        removed: r.get(4)?,
        version: r.get::<_, i64>(5)? as u64,
        hidden: r.get(6)?,
    })
}

/// The columns [`contact_row`] reads, in its order.
const CONTACT: &str = "friend, remark, tags, since_ms, removed, version, hidden";

fn who_may_message(value: Option<i64>) -> Option<WhoMayMessage> {
    match value? {
        0 => Some(WhoMayMessage::Friends),
        _ => Some(WhoMayMessage::Anyone),
    }
}

fn who_may_add_me(value: Option<i64>) -> Option<WhoMayAddMe> {
    match value? {
        0 => Some(WhoMayAddMe::Friends),
        1 => Some(WhoMayAddMe::Anyone),
        _ => Some(WhoMayAddMe::Invite),
    }
}

fn privacy(c: &Connection, user: UserId) -> rusqlite::Result<Privacy> {
    let row: Option<(Option<i64>, Option<i64>)> = c
        .prepare_cached("SELECT who_may_message, who_may_add_me FROM privacy WHERE user_id = ?1")?
        .query_row([id(user)], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (message, add) = row.unwrap_or_default();
    Ok(Privacy {
        who_may_message: who_may_message(message),
        who_may_add_me: who_may_add_me(add),
    })
}

impl SocialStore for SqliteAccountStore {
    fn relation(&self, owner: UserId, other: UserId, now_ms: i64) -> Outcome<Relation> {
        self.db
            .look(move |c| Ok(relation(c, owner, other, now_ms)?))
    }

    fn send_request(&self, request: FriendRequest, limits: SocialLimits) -> Outcome<Befriended> {
        self.db.act(move |c| {
            let FriendRequest {
                from,
                to,
                ref greeting,
                sent_ms,
            } = request;
            if !user_exists(c, to)? {
                return rule(Err(SocialError::UnknownUser));
            }
            if !super::security::takes_part(c, to)? {
                return rule(Err(SocialError::UserDeleted));
            }
            c.prepare_cached("DELETE FROM requests_sent WHERE from_user = ?1 AND sent_ms <= ?2")?
                .execute(params![id(from), sent_ms - REQUEST_WINDOW_MS])?;
            let sent_today: Vec<i64> = c
                .prepare_cached(
                    "SELECT sent_ms FROM requests_sent WHERE from_user = ?1 ORDER BY sent_ms",
                )?
                .query_map([id(from)], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let stands = relation(c, from, to, sent_ms)?;
            let counts = (friend_count(c, from)?, friend_count(c, to)?);
            let outcome =
                policy::friend_request(from, to, stands, counts, &sent_today, sent_ms, limits);
            // A refusal writes nothing; every request that passes counts,
            // a dropped one too.
            let outcome = rule(outcome)?;
            c.prepare_cached(
                "INSERT OR IGNORE INTO requests_sent (from_user, sent_ms, to_user) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![id(from), sent_ms, id(to)])?;
            Ok(match outcome {
                RequestOutcome::Drop => Befriended::Dropped,
                RequestOutcome::Befriend => {
                    // `to` asked first: `to` is the requester.
                    let (accepter_version, requester_version) = befriend(c, from, to, sent_ms)?;
                    Befriended::Friends {
                        requester_version,
                        accepter_version,
                    }
                }
                RequestOutcome::Send => {
                    c.prepare_cached(
                        "INSERT INTO friend_requests (to_user, from_user, greeting, sent_ms)
                         VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (to_user, from_user)
                         DO UPDATE SET greeting = excluded.greeting, sent_ms = excluded.sent_ms",
                    )?
                    .execute(params![id(to), id(from), greeting, sent_ms])?;
                    Befriended::Requested
                }
            })
        })
    }

    fn accept(
        &self,
        owner: UserId,
        from: UserId,
        now_ms: i64,
        limits: SocialLimits,
    ) -> Outcome<Befriended> {
        self.db.act(move |c| {
            let stands = relation(c, owner, from, now_ms)?;
            let counts = (friend_count(c, owner)?, friend_count(c, from)?);
            rule(policy::accept(stands, counts, limits))?;
            if !super::security::takes_part(c, from)? {
                return rule(Err(SocialError::UserDeleted));
            }
            let (accepter_version, requester_version) = befriend(c, owner, from, now_ms)?;
            Ok(Befriended::Friends {
                requester_version,
                accepter_version,
            })
        })
    }

    fn decline(&self, owner: UserId, from: UserId, now_ms: i64) -> Outcome<()> {
        self.db.act(move |c| {
            let gone = c
                .prepare_cached(
                    "DELETE FROM friend_requests WHERE to_user = ?1 AND from_user = ?2 AND sent_ms > ?3",
                )?
                .execute(params![id(owner), id(from), now_ms - REQUEST_TTL_MS])?;
            if gone == 0 {
                return rule(Err(SocialError::UnknownRequest));
            }
            Ok(())
        })
    }

    fn requests(&self, owner: UserId, now_ms: i64) -> Outcome<Vec<FriendRequest>> {
        self.db.look(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT from_user, greeting, sent_ms FROM friend_requests
                 WHERE to_user = ?1 AND sent_ms > ?2 ORDER BY sent_ms DESC LIMIT 500",
            )?;
            let rows = stmt.query_map(params![id(owner), now_ms - REQUEST_TTL_MS], |r| {
                Ok(FriendRequest {
                    from: UserId(r.get::<_, i64>(0)? as u64),
                    to: owner,
                    greeting: r.get(1)?,
                    sent_ms: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn remove_friend(&self, owner: UserId, friend: UserId) -> Outcome<(u64, u64)> {
        self.db.act(move |c| {
            if !relation(c, owner, friend, 0)?.friends {
                return rule(Err(SocialError::NotFriends));
            }
            let mut versions = [0; 2];
            for (i, (a, b)) in [(owner, friend), (friend, owner)].into_iter().enumerate() {
                let version = bump(c, a, -1)?;
                c.prepare_cached(
                    "UPDATE contacts SET removed = 1, remark = '', tags = '[]', version = ?3
                     WHERE owner = ?1 AND friend = ?2",
                )?
                .execute(params![id(a), id(b), version as i64])?;
                versions[i] = version;
            }
            Ok((versions[0], versions[1]))
        })
    }

    fn set_contact(&self, owner: UserId, friend: UserId, edit: ContactEdit) -> Outcome<u64> {
        let tags =
            (edit.tags.as_ref()).map(|t| serde_json::to_string(t).unwrap_or_else(|_| "[]".into()));
        self.db.act(move |c| {
            let stands = relation(c, owner, friend, 0)?;
            rule(policy::may_edit_contact(
                stands.friends,
                stands.hides,
                &edit,
            ))?;
            let version = bump(c, owner, 0)?;
            c.prepare_cached(
                "UPDATE contacts SET remark = coalesce(?3, remark), tags = coalesce(?4, tags),
                     hidden = coalesce(?5, hidden), version = ?6
                 WHERE owner = ?1 AND friend = ?2",
            )?
            .execute(params![
                id(owner),
                id(friend),
                edit.remark,
                tags,
                edit.hidden,
                version as i64
            ])?;
            Ok(version)
        })
    }

    fn contact_changes(&self, owner: UserId, since: u64, limit: u32) -> Outcome<ContactChanges> {
        self.db.look(move |c| {
            let version: i64 = c
                .prepare_cached("SELECT version FROM contact_heads WHERE owner = ?1")?
                .query_row([id(owner)], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            // From 0, the listed entries alone: `policy::listed` as a condition.
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {CONTACT} FROM contacts
                 WHERE owner = ?1 AND version > ?2 AND (?2 > 0 OR (removed = 0 AND hidden = 0))
                 ORDER BY version LIMIT ?3"
            ))?;
            let since = i64::try_from(since).unwrap_or(i64::MAX);
            let rows =
                stmt.query_map(params![id(owner), since, i64::from(limit) + 1], contact_row)?;
            let mut changes: Vec<Contact> = rows
                .map(|row| row.map(policy::as_change))
                .collect::<rusqlite::Result<_>>()?;
            let more = changes.len() > limit as usize;
            changes.truncate(limit as usize);
            Ok(ContactChanges {
                changes,
                version: version as u64,
                more,
            })
        })
    }

    fn block(&self, owner: UserId, other: UserId, now_ms: i64) -> Outcome<()> {
        self.db.act(move |c| {
            if !user_exists(c, other)? {
                return rule(Err(SocialError::UnknownUser));
            }
            let blocked: i64 = c
                .prepare_cached("SELECT count(*) FROM blocks WHERE owner = ?1")?
                .query_row([id(owner)], |r| r.get(0))?;
            rule(policy::may_block(owner, other, blocked as u32))?;
            c.prepare_cached(
                "INSERT OR IGNORE INTO blocks (owner, blocked, since_ms) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![id(owner), id(other), now_ms])?;
            delete_requests(c, owner, other)?;
            Ok(())
        })
    }

    fn search_contacts(&self, owner: UserId, query: String) -> Outcome<Vec<FoundContact>> {
        self.db.look(move |c| {
            // At most `max_friends` friends and the former ones still
            // hidden: one partition, matched as it is read.
            let mut stmt = c.prepare_cached(
                "SELECT c.friend, c.remark, c.tags, c.since_ms, c.removed, c.version, c.hidden,
                        coalesce(u.display_name, '')
                 FROM contacts c LEFT JOIN users u ON u.id = c.friend
                 WHERE c.owner = ?1 AND (c.removed = 0 OR c.hidden = 1)",
            )?;
            let rows = stmt.query_map([id(owner)], |r| {
                Ok(FoundContact {
                    contact: contact_row(r)?,
                    display_name: r.get(7)?,
                })
            })?;
            let mut found = Vec::new();
            for row in rows {
                let row = row?;
                if policy::contact_matches(&query, &row.contact, &row.display_name) {
                    found.push(row);
                }
            }
            found.sort_by(|a, b| {
                (a.display_name.to_lowercase(), a.contact.friend)
                    .cmp(&(b.display_name.to_lowercase(), b.contact.friend))
            });
            found.truncate(policy::MAX_FOUND);
            Ok(found)
        })
    }

    fn unblock(&self, owner: UserId, other: UserId, now_ms: i64) -> Outcome<()> {
        self.db.act(move |c| {
            let since: Option<i64> = c
                .prepare_cached(
                    "DELETE FROM blocks WHERE owner = ?1 AND blocked = ?2 RETURNING since_ms",
                )?
                .query_row(params![id(owner), id(other)], |r| r.get(0))
                .optional()?;
            let Some(since) = since else {
                return Ok(());
            };
            c.prepare_cached(
                "INSERT OR IGNORE INTO block_spans (owner, until_ms, blocked, from_ms)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![id(owner), now_ms.max(since), id(other), since])?;
            // The oldest past blocks beyond the cap are forgotten.
            c.prepare_cached(
                "DELETE FROM block_spans WHERE owner = ?1 AND until_ms < (
                     SELECT until_ms FROM block_spans WHERE owner = ?1
                     ORDER BY until_ms DESC LIMIT 1 OFFSET ?2)",
            )?
            .execute(params![id(owner), policy::MAX_BLOCK_SPANS as i64 - 1])?;
            Ok(())
        })
    }

    fn view_filters(&self, owner: UserId) -> Outcome<ViewFilters> {
        self.db.look(move |c| {
            let span = |r: &rusqlite::Row<'_>| {
                Ok(BlockSpan {
                    user: UserId(r.get::<_, i64>(0)? as u64),
                    from_ms: r.get(1)?,
                    until_ms: r.get(2)?,
                })
            };
            let mut blocks: Vec<BlockSpan> = c
                .prepare_cached("SELECT blocked, since_ms, NULL FROM blocks WHERE owner = ?1")?
                .query_map([id(owner)], span)?
                .collect::<rusqlite::Result<_>>()?;
            let past = c
                .prepare_cached(
                    "SELECT blocked, from_ms, until_ms FROM block_spans WHERE owner = ?1",
                )?
                .query_map([id(owner)], span)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            blocks.extend(past);
            let hidden = c
                .prepare_cached("SELECT friend FROM contacts WHERE owner = ?1 AND hidden = 1")?
                .query_map([id(owner)], |r| Ok(UserId(r.get::<_, i64>(0)? as u64)))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(ViewFilters { blocks, hidden })
        })
    }

    fn blocked(&self, owner: UserId) -> Outcome<Vec<UserId>> {
        self.db.look(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT blocked FROM blocks WHERE owner = ?1 ORDER BY since_ms DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![id(owner), policy::MAX_BLOCKS], |r| {
                Ok(UserId(r.get::<_, i64>(0)? as u64))
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn privacy(&self, user: UserId) -> Outcome<Privacy> {
        self.db.look(move |c| Ok(privacy(c, user)?))
    }

    fn set_privacy(&self, user: UserId, settings: Privacy) -> Outcome<()> {
        self.db.act(move |c| {
            let who = settings.who_may_message.map(|w| match w {
                WhoMayMessage::Friends => 0i64,
                WhoMayMessage::Anyone => 1,
            });
            let add = settings.who_may_add_me.map(|w| match w {
                WhoMayAddMe::Friends => 0i64,
                WhoMayAddMe::Anyone => 1,
                WhoMayAddMe::Invite => 2,
            });
            c.prepare_cached(
                "INSERT INTO privacy (user_id, who_may_message, who_may_add_me) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user_id) DO UPDATE SET who_may_message = excluded.who_may_message,
                     who_may_add_me = excluded.who_may_add_me",
            )?
            .execute(params![id(user), who, add])?;
            Ok(())
        })
    }

    fn message_facts(&self, recipient: UserId, sender: UserId) -> Outcome<(Relation, Privacy)> {
        self.db
            .look(move |c| Ok((relation(c, recipient, sender, 0)?, privacy(c, recipient)?)))
    }

    fn addition_facts(
        &self,
        inviter: UserId,
        invitees: Vec<UserId>,
    ) -> Outcome<Vec<(Relation, Privacy)>> {
        // One job on one reader: a point lookup or two per invitee, each
        // by primary key, with statements prepared once.
        self.db.look(move |c| {
            let mut facts = Vec::with_capacity(invitees.len());
            for &invitee in &invitees {
                facts.push((relation(c, invitee, inviter, 0)?, privacy(c, invitee)?));
            }
            Ok(facts)
        })
    }
}
