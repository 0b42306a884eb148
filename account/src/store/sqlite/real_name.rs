//! [`RealNameStore`] on SQLite: each submission and each decision is one job
//! of the file's single writer, which reads what the rule needs, asks
//! [`crate::policy::real_name`], and only then writes.

use rusqlite::{Connection, OptionalExtension as _, params};
use superapp_kit::BoxFuture;

use super::SqliteAccountStore;
use crate::AccountError;
use crate::model::{Decision, RealNameRecord, RealNameState, Rejection, UserId};
use crate::policy::real_name as policy;
use crate::store::{RealNameStore, StoreError};

const COLUMNS: &str =
    "user_id, attempt_id, state, rejection, sealed, number_hash, submitted_at_ms, decided_at_ms";

fn state_text(state: RealNameState) -> (&'static str, Option<&'static str>) {
    match state {
        RealNameState::Pending => ("pending", None),
        RealNameState::Verified => ("verified", None),
        RealNameState::Rejected(r) => ("rejected", Some(r.as_str())),
    }
}

fn record_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RealNameRecord> {
    let state: String = row.get(2)?;
    let rejection: Option<String> = row.get(3)?;
    let state = match (state.as_str(), rejection.as_deref().map(Rejection::parse)) {
        ("pending", None) => RealNameState::Pending,
        ("verified", None) => RealNameState::Verified,
        ("rejected", Some(Some(r))) => RealNameState::Rejected(r),
        _ => {
            return Err(rusqlite::Error::FromSqlConversionFailure(
                2,
                rusqlite::types::Type::Text,
                format!("unknown real-name state {state:?} / {rejection:?}").into(),
            ));
        }
    };
    Ok(RealNameRecord {
        user_id: UserId(row.get::<_, i64>(0)? as u64),
        attempt_id: row.get::<_, i64>(1)? as u64,
        state,
        sealed: row.get(4)?,
        number_hash: row.get(5)?,
        submitted_at_ms: row.get(6)?,
        decided_at_ms: row.get(7)?,
    })
}

fn read_record(c: &Connection, user: UserId) -> rusqlite::Result<Option<RealNameRecord>> {
    c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM real_names WHERE user_id = ?1"
    ))?
    .query_row([user.0 as i64], record_from_row)
    .optional()
}

/// The submission's rules and writes, in the order [`RealNameStore`] states.
fn submit(
    c: &Connection,
    submission: &RealNameRecord,
    limit: u32,
) -> rusqlite::Result<Result<(), AccountError>> {
    let user = submission.user_id.0 as i64;
    let now = submission.submitted_at_ms;
    let current = read_record(c, submission.user_id)?;
    if let Err(refused) = policy::may_submit(current.map(|r| r.state)) {
        return Ok(Err(refused));
    }
    let since = now - policy::SUBMISSION_WINDOW_MS;
    let earlier = c
        .prepare_cached(
            "SELECT submitted_at_ms FROM real_name_submissions
             WHERE user_id = ?1 AND submitted_at_ms > ?2",
        )?
        .query_map(params![user, since], |r| r.get::<_, i64>(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    if let Err(retry_after_ms) = policy::submission_allowed(&earlier, limit, now) {
        return Ok(Err(AccountError::TooManySubmissions { retry_after_ms }));
    }
    // Those out of the window count no more: the partition stays at most
    // `limit` rows.
    c.execute(
        "DELETE FROM real_name_submissions WHERE user_id = ?1 AND submitted_at_ms <= ?2",
        params![user, since],
    )?;
    c.execute(
        "INSERT INTO real_name_submissions (user_id, attempt_id, submitted_at_ms)
         VALUES (?1, ?2, ?3)",
        params![user, submission.attempt_id as i64, now],
    )?;
    let holder = c
        .query_row(
            "SELECT user_id FROM real_names_by_number WHERE number_hash = ?1",
            [&submission.number_hash],
            |r| r.get::<_, i64>(0).map(|id| UserId(id as u64)),
        )
        .optional()?;
    if let Err(refused) = policy::may_claim(holder, submission.user_id) {
        return Ok(Err(refused));
    }
    c.execute(
        "INSERT INTO real_names_by_number (number_hash, user_id) VALUES (?1, ?2)
         ON CONFLICT (number_hash) DO NOTHING",
        params![submission.number_hash, user],
    )?;
    let (state, rejection) = state_text(submission.state);
    c.execute(
        &format!(
            "INSERT OR REPLACE INTO real_names ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        ),
        params![
            user,
            submission.attempt_id as i64,
            state,
            rejection,
            submission.sealed,
            submission.number_hash,
            now,
            submission.decided_at_ms
        ],
    )?;
    Ok(Ok(()))
}

fn decide(
    c: &Connection,
    user: UserId,
    attempt_id: u64,
    decision: Decision,
    at_ms: i64,
) -> rusqlite::Result<Option<RealNameRecord>> {
    let current = read_record(c, user)?;
    if !policy::may_decide(current.as_ref(), attempt_id) {
        return Ok(None);
    }
    let Some(mut record) = current else {
        return Ok(None);
    };
    record.state = decision.into();
    record.decided_at_ms = Some(at_ms);
    let (state, rejection) = state_text(record.state);
    c.execute(
        "UPDATE real_names SET state = ?2, rejection = ?3, decided_at_ms = ?4 WHERE user_id = ?1",
        params![user.0 as i64, state, rejection, at_ms],
    )?;
    if let Decision::Rejected(_) = decision {
        c.execute(
            "DELETE FROM real_names_by_number WHERE number_hash = ?1 AND user_id = ?2",
            params![record.number_hash, user.0 as i64],
        )?;
    }
    Ok(Some(record))
}

impl RealNameStore for SqliteAccountStore {
    fn real_name(&self, user: UserId) -> BoxFuture<'_, Result<Option<RealNameRecord>, StoreError>> {
        Box::pin(self.db.read(move |c| read_record(c, user)))
    }

    fn submit_real_name(
        &self,
        submission: RealNameRecord,
        limit: u32,
    ) -> BoxFuture<'_, Result<(), AccountError>> {
        Box::pin(async move {
            self.db
                .write(move |c| submit(c, &submission, limit))
                .await?
        })
    }

    fn decide_real_name(
        &self,
        user: UserId,
        attempt_id: u64,
        decision: Decision,
        at_ms: i64,
    ) -> BoxFuture<'_, Result<Option<RealNameRecord>, StoreError>> {
        Box::pin(
            self.db
                .write(move |c| decide(c, user, attempt_id, decision, at_ms)),
        )
    }
}
