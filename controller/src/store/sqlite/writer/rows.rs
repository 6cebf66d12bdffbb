//! Rows read on the writer's connection (rusqlite): the same structs the
//! sqlx paths decode with `FromRow`, read here by position.

use rusqlite::{Params, Row};

use crate::store::Result;
use crate::store::rows::{AttemptRow, JobRow};

/// A job row whose columns are [`crate::store::rows::JOB_COLUMNS`], in order.
pub(crate) fn job_row(r: &Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        id: r.get(0)?,
        grp: r.get(1)?,
        kind: r.get(2)?,
        spec: r.get(3)?,
        connection: r.get(4)?,
        priority: r.get(5)?,
        retry: r.get(6)?,
        timeout_ms: r.get(7)?,
        lease_ttl_ms: r.get(8)?,
        labels: r.get(9)?,
        idempotency_key: r.get(10)?,
        request_hash: r.get(11)?,
        state: r.get(12)?,
        attempts_spent: r.get(13)?,
        grants: r.get(14)?,
        last_token: r.get(15)?,
        not_before: r.get(16)?,
        cancel_requested: r.get(17)?,
        lease_agent: r.get(18)?,
        lease_token: r.get(19)?,
        lease_expires_at: r.get(20)?,
        created_at: r.get(21)?,
        updated_at: r.get(22)?,
        finished_at: r.get(23)?,
        result: r.get(24)?,
        error: r.get(25)?,
        schedule_id: r.get(26)?,
        nominal_at: r.get(27)?,
        run_id: r.get(28)?,
        step: r.get(29)?,
    })
}

/// The columns [`attempt_row`] reads, in order.
pub(crate) const ATTEMPT_COLUMNS: &str = "number, agent_id, token, started_at, running_at, ended_at, outcome, error, progress, log_tail, result";

/// An attempt row whose columns are [`ATTEMPT_COLUMNS`], in order.
pub(crate) fn attempt_row(r: &Row<'_>) -> rusqlite::Result<AttemptRow> {
    Ok(AttemptRow {
        number: r.get(0)?,
        agent_id: r.get(1)?,
        token: r.get(2)?,
        started_at: r.get(3)?,
        running_at: r.get(4)?,
        ended_at: r.get(5)?,
        outcome: r.get(6)?,
        error: r.get(7)?,
        progress: r.get(8)?,
        log_tail: r.get(9)?,
        result: r.get(10)?,
    })
}

/// Every row `sql` returns for `params`, read by `f`.
pub(crate) fn all<T, P: Params>(
    c: &rusqlite::Connection,
    sql: &str,
    params: P,
    f: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut st = c.prepare_cached(sql)?;
    let rows = st.query_map(params, f)?;
    Ok(rows.collect::<rusqlite::Result<Vec<T>>>()?)
}

/// The first row `sql` returns for `params`, read by `f`, if any.
pub(crate) fn first<T, P: Params>(
    c: &rusqlite::Connection,
    sql: &str,
    params: P,
    f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Option<T>> {
    let mut st = c.prepare_cached(sql)?;
    let mut rows = st.query(params)?;
    match rows.next()? {
        Some(r) => Ok(Some(f(r)?)),
        None => Ok(None),
    }
}

/// Run `sql` (no rows) for `params`; the rows it changed.
pub(crate) fn run<P: Params>(c: &rusqlite::Connection, sql: &str, params: P) -> Result<usize> {
    Ok(c.prepare_cached(sql)?.execute(params)?)
}
