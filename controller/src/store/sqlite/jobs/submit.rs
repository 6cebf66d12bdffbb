//! Submissions inside the group-commit writer's transaction (its own
//! connection, [`crate::store::sqlite::writer`]): one job or a batch, the
//! replay of an idempotency key, and the submit's audit row.

use baton_proto::{JobId, JobSubmit, JobView};

use super::super::audit::audit_in;
use super::super::writer::rows::{self, ATTEMPT_COLUMNS, attempt_row, job_row};
use crate::store::audit::AuditRecord;
use crate::store::jobs::{BatchSubmitted, NewBatch, NewJob, Submitted, queued_view};
use crate::store::rows::{AttemptRow, JOB_COLUMNS, JobRow, enc};
use crate::store::{Error, Result};

/// The job an idempotency key made, if any.
fn by_key(c: &rusqlite::Connection, key: &str) -> Result<Option<JobRow>> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE idempotency_key = ?1");
    rows::first(c, &sql, [key], job_row)
}

/// The INSERT of one queued job (15 parameters).
const INSERT: &str = "INSERT INTO jobs (grp, kind, spec, connection, store, priority, retry, timeout_ms, lease_ttl_ms, labels, idempotency_key, request_hash, state, not_before, created_at, updated_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'queued', ?13, ?13, ?13)";

/// One job to insert: the request, its lease TTL, the idempotency key and
/// request hash stored with it.
type Insert<'a> = (&'a JobSubmit, u64, Option<&'a str>, &'a str);

/// Insert queued jobs, in order, each with the one cached INSERT; `audit`,
/// if any, first. Returns the views (one transaction on the single writer:
/// the ids of one call are consecutive).
fn insert(
    c: &rusqlite::Connection,
    jobs: &[Insert<'_>],
    audit: Option<&AuditRecord>,
    now: i64,
) -> Result<Vec<JobView>> {
    if let Some(r) = audit {
        audit_in(c, r, now)?;
    }
    let mut st = c.prepare_cached(INSERT)?;
    let mut out = Vec::with_capacity(jobs.len());
    for (s, ttl, key, hash) in jobs {
        st.execute(rusqlite::params![
            s.group,
            s.spec.kind().as_str(),
            enc(&s.spec)?,
            s.spec.connection(),
            s.spec.store(),
            s.priority,
            enc(&s.retry)?,
            s.timeout_ms.map(|t| t as i64),
            *ttl as i64,
            enc(&s.labels)?,
            key,
            hash,
            now,
        ])?;
        out.push(queued_view(c.last_insert_rowid(), s, *ttl, *key, now));
    }
    Ok(out)
}

/// Views of jobs `first ..= last` with their attempts, in id order.
fn views(c: &rusqlite::Connection, first: JobId, last: JobId) -> Result<Vec<JobView>> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id BETWEEN ?1 AND ?2 ORDER BY id");
    let found = rows::all(c, &sql, [first, last], job_row)?;
    let sql = format!("SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE job_id = ?1 ORDER BY number");
    let mut out = Vec::with_capacity(found.len());
    for row in found {
        let attempts: Vec<AttemptRow> = rows::all(c, &sql, [row.id], attempt_row)?;
        let attempts = attempts
            .iter()
            .map(AttemptRow::view)
            .collect::<Result<Vec<_>>>()?;
        out.push(row.view(attempts)?);
    }
    Ok(out)
}

/// Submit inside a write transaction (see `JobStore::submit`); the job's
/// audit row in the same transaction.
pub(in crate::store::sqlite) fn submit_in(
    c: &rusqlite::Connection,
    new: &NewJob,
    now: i64,
) -> Result<Submitted> {
    if let Some(key) = &new.idempotency_key
        && let Some(row) = by_key(c, key)?
    {
        if row.request_hash.as_deref() != Some(new.request_hash.as_str()) {
            return Err(Error::IdempotencyConflict(key.clone()));
        }
        let job = views(c, row.id, row.id)?
            .pop()
            .ok_or(Error::NotFound(row.id))?;
        return Ok(Submitted {
            job,
            created: false,
            audited: false,
        });
    }
    let one = [(
        &new.submit,
        new.lease_ttl_ms,
        new.idempotency_key.as_deref(),
        new.request_hash.as_str(),
    )];
    let job = insert(c, &one, new.audit.as_ref(), now)?
        .pop()
        .ok_or_else(|| Error::Corrupt("inserted no job".into()))?;
    Ok(Submitted {
        job,
        created: true,
        audited: new.audit.is_some(),
    })
}

/// Batch submit inside a write transaction (see `JobStore::submit_batch`).
pub(super) fn submit_batch_in(
    c: &rusqlite::Connection,
    b: &NewBatch,
    now: i64,
) -> Result<BatchSubmitted> {
    if let Some(key) = &b.idempotency_key
        && let Some(row) = by_key(c, key)?
    {
        if row.request_hash.as_deref() != Some(b.request_hash.as_str()) {
            return Err(Error::IdempotencyConflict(key.clone()));
        }
        let last = row.id + b.jobs.len() as i64 - 1;
        let jobs = views(c, row.id, last)?;
        if jobs.len() != b.jobs.len() {
            return Err(Error::Corrupt(format!(
                "batch of idempotency key `{key}`: {} of {} jobs found",
                jobs.len(),
                b.jobs.len()
            )));
        }
        return Ok(BatchSubmitted {
            jobs,
            created: false,
        });
    }
    let rows: Vec<Insert<'_>> = b
        .jobs
        .iter()
        .enumerate()
        .map(|(i, new)| {
            let (key, hash) = match (&b.idempotency_key, i) {
                (Some(k), 0) => (Some(k.as_str()), b.request_hash.as_str()),
                _ => (None, new.request_hash.as_str()),
            };
            (&new.submit, new.lease_ttl_ms, key, hash)
        })
        .collect();
    let jobs = insert(c, &rows, None, now)?;
    Ok(BatchSubmitted {
        jobs,
        created: true,
    })
}
