//! Operator-side job operations: submit (one job or a batch, all or none),
//! get, list, cancel, retry. Submissions go through the group-commit writer
//! ([`super::writer`]) and are inserted with multi-row INSERTs; cancel and
//! retry are cold paths on the writer pool.

use baton_proto::{JobId, JobList, JobState, JobSubmit, JobSummary, JobView};
use std::sync::Arc;

use sqlx::sqlite::SqliteConnection;

use async_trait::async_trait;

use super::SqliteStore;
use crate::store::audit::AuditRecord;
use crate::store::jobs::{BatchSubmitted, JobFilter, JobStore, NewBatch, NewJob, Submitted};
use crate::store::jobs::{QueueFigure, queue_figures_of, queue_figures_sql, queued_view};
use crate::store::rows::{AttemptRow, JOB_COLUMNS, JobRow, SummaryRow};
use crate::store::{Error, Result};

impl SqliteStore {
    pub(crate) async fn job_row(&self, id: JobId) -> Result<JobRow> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?");
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?
            .ok_or(Error::NotFound(id))
    }
}

#[async_trait]
impl JobStore for SqliteStore {
    /// Persist a new job (or return the one an idempotency key already made).
    async fn submit(&self, new: NewJob, now: i64) -> Result<Submitted> {
        let new = Arc::new(new);
        self.grouped(move |c| {
            let new = new.clone();
            Box::pin(async move { submit_in(c, &new, now).await })
        })
        .await
    }

    /// Persist every job of a batch in one transaction, or none (or return
    /// the jobs an earlier batch with the same idempotency key made).
    ///
    /// The batch's key and hash are stored on its first job; the jobs of one
    /// batch get consecutive ids (one transaction on the single writer), so
    /// a replay returns ids `first .. first + n`.
    async fn submit_batch(&self, batch: NewBatch, now: i64) -> Result<BatchSubmitted> {
        let batch = Arc::new(batch);
        self.grouped(move |c| {
            let batch = batch.clone();
            Box::pin(async move { submit_batch_in(c, &batch, now).await })
        })
        .await
    }

    /// A job with every attempt.
    async fn get_job(&self, id: JobId) -> Result<JobView> {
        let row = self.job_row(id).await?;
        let attempts: Vec<AttemptRow> = sqlx::query_as(
            "SELECT number, agent_id, token, started_at, running_at, ended_at, outcome, error, progress, log_tail, result
             FROM attempts WHERE job_id = ? ORDER BY number",
        )
        .bind(id)
        .fetch_all(&self.reader)
        .await?;
        let attempts = attempts
            .iter()
            .map(AttemptRow::view)
            .collect::<Result<Vec<_>>>()?;
        let mut view = row.view(attempts)?;
        if let Some(id) = row.schedule_id {
            view.schedule = sqlx::query_scalar("SELECT name FROM schedules WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.reader)
                .await?;
        }
        Ok(view)
    }

    /// Jobs matching a filter, newest first, as summaries: only the columns
    /// a summary needs are read (never a whole spec or result), and long
    /// texts are cut in the query.
    async fn list_jobs(&self, f: &JobFilter) -> Result<JobList> {
        let limit = f.limit.clamp(1, 1000);
        let rows: Vec<SummaryRow> = sqlx::query_as(
            "SELECT id, grp, kind, connection, state, priority, attempts_spent,
                    json_extract(retry, '$.max_attempts') AS max_attempts, labels,
                    not_before, cancel_requested, lease_agent, created_at, updated_at, finished_at,
                    json_extract(result, '$.exit_code') AS exit_code,
                    substr(error, 1, ?8 + 1) AS error,
                    substr(CASE kind
                        WHEN 'command' THEN json_extract(spec, '$.program')
                        WHEN 'procedure' THEN json_extract(spec, '$.procedure')
                        WHEN 'sql' THEN json_extract(spec, '$.sql')
                        WHEN 'dump' THEN json_extract(spec, '$.database')
                        WHEN 'export' THEN json_extract(spec, '$.query')
                        WHEN 'restore' THEN json_extract(spec, '$.database')
                        WHEN 'upload' THEN json_extract(spec, '$.file')
                    END, 1, ?8 + 1) AS what,
                    (SELECT name FROM schedules s WHERE s.id = jobs.schedule_id) AS schedule,
                    nominal_at, run_id, step
             FROM jobs
             WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR grp = ?2) AND (?3 IS NULL OR kind = ?3)
               AND (?4 IS NULL OR id < ?4)
               AND (?5 IS NULL OR json_extract(labels, '$.' || json_quote(?5)) = ?6)
               AND (?9 IS NULL OR schedule_id = (SELECT id FROM schedules WHERE name = ?9))
             ORDER BY id DESC LIMIT +?7",
        )
        .bind(f.state.map(|s| s.as_str()))
        .bind(&f.group)
        .bind(&f.kind)
        .bind(f.before)
        .bind(f.label.as_ref().map(|l| l.0.as_str()))
        .bind(f.label.as_ref().map(|l| l.1.as_str()))
        .bind(i64::from(limit) + 1)
        .bind(JobSummary::MAX_TEXT as i64)
        .bind(&f.schedule)
        .fetch_all(&self.reader)
        .await?;
        let more = rows.len() > limit as usize;
        let jobs = rows
            .into_iter()
            .take(limit as usize)
            .map(SummaryRow::summary)
            .collect::<Result<Vec<_>>>()?;
        let next_before = if more {
            jobs.last().map(|j| j.id)
        } else {
            None
        };
        Ok(JobList { jobs, next_before })
    }

    /// Cancel: a queued job ends at once; a running one is asked to stop
    /// (its holder learns it from its held poll, or the next heartbeat).
    async fn cancel(&self, id: JobId, now: i64) -> Result<JobView> {
        let mut tx = self.writer.begin().await?;
        let before =
            super::made::cancel_in(&mut tx, id, "cancelled by operator before it ran", now).await?;
        if before.is_terminal() {
            return Err(Error::Conflict(format!("job {id} is already {before}")));
        }
        tx.commit().await?;
        self.get_job(id).await
    }

    /// Retry a failed or cancelled job with a fresh attempt budget.
    async fn retry(&self, id: JobId, now: i64) -> Result<JobView> {
        let mut tx = self.writer.begin().await?;
        match state_of(&mut tx, id).await? {
            JobState::Failed | JobState::Cancelled => {
                sqlx::query(
                    "UPDATE jobs SET state = 'queued', attempts_spent = 0, cancel_requested = 0, not_before = ?1,
                     updated_at = ?1, finished_at = NULL, error = NULL, result = NULL,
                     followup = (run_id IS NOT NULL OR schedule_id IS NOT NULL) WHERE id = ?2",
                )
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            s => {
                return Err(Error::Conflict(format!(
                    "job {id} is {s}; only failed or cancelled jobs can be retried"
                )));
            }
        }
        tx.commit().await?;
        self.get_job(id).await
    }

    async fn queue_figures(&self, now: i64, finished_since: i64) -> Result<Vec<QueueFigure>> {
        let rows = sqlx::query_as(sqlx::AssertSqlSafe(queue_figures_sql("?1", "?2")))
            .bind(now)
            .bind(finished_since)
            .fetch_all(&self.reader)
            .await?;
        queue_figures_of(rows)
    }
}

/// The job an idempotency key made, if any.
async fn by_key(c: &mut SqliteConnection, key: &str) -> Result<Option<JobRow>> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE idempotency_key = ?");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(key)
        .fetch_optional(&mut *c)
        .await?)
}

/// Rows per multi-row INSERT (15 parameters each: under SQLite's oldest
/// limit of 999 bound parameters).
const INSERT_CHUNK: usize = 64;

/// Insert queued jobs, in order, with multi-row INSERTs; `keys[i]`/`hashes[i]`
/// are stored as given. Returns the views (ids in order: one transaction on
/// the single writer, so AUTOINCREMENT ids of one batch are consecutive).
///
/// `audit`, if any, is appended in the same round trip as the first chunk:
/// its INSERT runs first in that string, so the result's last rowid is
/// still the jobs' (sqlx sums the changes and keeps the last statement's
/// rowid).
async fn insert(
    c: &mut SqliteConnection,
    jobs: &[(&JobSubmit, u64, Option<&str>, &str)],
    mut audit: Option<&AuditRecord>,
    now: i64,
) -> Result<Vec<JobView>> {
    let mut out = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(INSERT_CHUNK) {
        let audited = audit.take();
        let mut sql = String::from(if audited.is_some() {
            super::audit::AUDIT_INSERT
        } else {
            ""
        });
        sql.push_str(
            "INSERT INTO jobs (grp, kind, spec, connection, store, priority, retry, timeout_ms, lease_ttl_ms, labels, idempotency_key, request_hash, state, not_before, created_at, updated_at) VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)");
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(r) = audited {
            q = super::audit::bind_audit(q, r, now);
        }
        for (s, ttl, key, hash) in chunk {
            let spec = serde_json::to_string(&s.spec).map_err(|e| Error::Corrupt(e.to_string()))?;
            let retry =
                serde_json::to_string(&s.retry).map_err(|e| Error::Corrupt(e.to_string()))?;
            let labels =
                serde_json::to_string(&s.labels).map_err(|e| Error::Corrupt(e.to_string()))?;
            q = q
                .bind(s.group.clone())
                .bind(s.spec.kind().as_str())
                .bind(spec)
                .bind(s.spec.connection().map(str::to_owned))
                .bind(s.spec.store().map(str::to_owned))
                .bind(s.priority)
                .bind(retry)
                .bind(s.timeout_ms.map(|t| t as i64))
                .bind(*ttl as i64)
                .bind(labels)
                .bind(key.map(str::to_owned))
                .bind(hash.to_string())
                .bind(now)
                .bind(now)
                .bind(now);
        }
        let done = q.execute(&mut *c).await?;
        let n = chunk.len() as i64;
        let rows = done.rows_affected() - u64::from(audited.is_some());
        if rows != n as u64 {
            return Err(Error::Corrupt(format!("inserted {rows} of {n} jobs")));
        }
        let first = done.last_insert_rowid() - n + 1;
        for (i, (s, ttl, key, _)) in chunk.iter().enumerate() {
            out.push(queued_view(first + i as i64, s, *ttl, *key, now));
        }
    }
    Ok(out)
}

/// Views of jobs `first ..= last` with their attempts, in id order.
async fn views(c: &mut SqliteConnection, first: JobId, last: JobId) -> Result<Vec<JobView>> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id BETWEEN ? AND ? ORDER BY id");
    let rows: Vec<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(first)
        .bind(last)
        .fetch_all(&mut *c)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let attempts: Vec<AttemptRow> = sqlx::query_as(
            "SELECT number, agent_id, token, started_at, running_at, ended_at, outcome, error, progress, log_tail, result
             FROM attempts WHERE job_id = ? ORDER BY number",
        )
        .bind(row.id)
        .fetch_all(&mut *c)
        .await?;
        let attempts = attempts
            .iter()
            .map(AttemptRow::view)
            .collect::<Result<Vec<_>>>()?;
        out.push(row.view(attempts)?);
    }
    Ok(out)
}

/// Submit inside a write transaction (see [`JobStore::submit`]).
pub(super) async fn submit_in(
    c: &mut SqliteConnection,
    new: &NewJob,
    now: i64,
) -> Result<Submitted> {
    if let Some(key) = &new.idempotency_key
        && let Some(row) = by_key(c, key).await?
    {
        if row.request_hash.as_deref() != Some(new.request_hash.as_str()) {
            return Err(Error::IdempotencyConflict(key.clone()));
        }
        let job = views(c, row.id, row.id)
            .await?
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
    // The audit row rides in the job's INSERT round trip.
    let job = insert(c, &one, new.audit.as_ref(), now)
        .await?
        .pop()
        .ok_or_else(|| Error::Corrupt("inserted no job".into()))?;
    Ok(Submitted {
        job,
        created: true,
        audited: new.audit.is_some(),
    })
}

/// Batch submit inside a write transaction (see [`JobStore::submit_batch`]).
async fn submit_batch_in(
    c: &mut SqliteConnection,
    b: &NewBatch,
    now: i64,
) -> Result<BatchSubmitted> {
    if let Some(key) = &b.idempotency_key
        && let Some(row) = by_key(c, key).await?
    {
        if row.request_hash.as_deref() != Some(b.request_hash.as_str()) {
            return Err(Error::IdempotencyConflict(key.clone()));
        }
        let last = row.id + b.jobs.len() as i64 - 1;
        let jobs = views(c, row.id, last).await?;
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
    let rows: Vec<_> = b
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
    let jobs = insert(c, &rows, None, now).await?;
    Ok(BatchSubmitted {
        jobs,
        created: true,
    })
}

/// The state of job `id` inside a write transaction.
async fn state_of(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, id: JobId) -> Result<JobState> {
    let state: Option<String> = sqlx::query_scalar("SELECT state FROM jobs WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    let state = state.ok_or(Error::NotFound(id))?;
    JobState::parse(&state).ok_or_else(|| Error::Corrupt(format!("jobs.state {id}")))
}
