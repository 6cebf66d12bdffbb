//! Operator-side job operations: submit (one job or a batch, all or none),
//! get, list, cancel, retry. Submissions go through the group-commit writer
//! ([`super::writer`], on its own connection: `submit`); cancel and retry
//! are cold paths on the writer pool.

use baton_proto::{JobId, JobList, JobState, JobSummary, JobView};

use async_trait::async_trait;

use super::SqliteStore;
use crate::store::jobs::{BatchSubmitted, JobFilter, JobStore, NewBatch, NewJob, Submitted};
use crate::store::jobs::{QueueFigure, queue_figures_of, queue_figures_sql};
use crate::store::rows::{AttemptRow, JOB_COLUMNS, JobRow, SummaryRow};

pub(super) mod submit;
use crate::store::{Error, Result};

/// The listing's statement for `f`'s filters: the state through its partial
/// index (`JobFilter::state_index`), and the page's end as a range on the id
/// (an `IS NULL OR` around it made each page walk down from the newest job).
/// Binds: ?1 state, ?2 group, ?3 kind, ?4 before, ?5/?6 label, ?7 limit + 1,
/// ?8 text cut, ?9 schedule.
fn list_sql(f: &JobFilter) -> String {
    let (from, state) = match f.state_index() {
        Some((index, by_index)) => (format!("jobs INDEXED BY {index}"), by_index.to_owned()),
        None => ("jobs".to_owned(), "(?1 IS NULL OR state = ?1)".to_owned()),
    };
    format!(
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
         FROM {from}
         WHERE {state} AND (?2 IS NULL OR grp = ?2) AND (?3 IS NULL OR kind = ?3)
           AND id < ?4
           AND (?5 IS NULL OR json_extract(labels, '$.' || json_quote(?5)) = ?6)
           AND (?9 IS NULL OR schedule_id = (SELECT id FROM schedules WHERE name = ?9))
         ORDER BY id DESC LIMIT +?7"
    )
}

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
        self.grouped(move |c| submit::submit_in(c, &new, now)).await
    }

    /// Persist every job of a batch in one transaction, or none (or return
    /// the jobs an earlier batch with the same idempotency key made).
    ///
    /// The batch's key and hash are stored on its first job; the jobs of one
    /// batch get consecutive ids (one transaction on the single writer), so
    /// a replay returns ids `first .. first + n`.
    async fn submit_batch(&self, batch: NewBatch, now: i64) -> Result<BatchSubmitted> {
        self.grouped(move |c| submit::submit_batch_in(c, &batch, now))
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
        let sql = list_sql(f);
        let rows: Vec<SummaryRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(f.state.map(|s| s.as_str()))
            .bind(&f.group)
            .bind(&f.kind)
            .bind(f.before.unwrap_or(JobId::MAX))
            .bind(f.label.as_ref().map(|l| l.0.as_str()))
            .bind(f.label.as_ref().map(|l| l.1.as_str()))
            .bind(i64::from(limit) + 1)
            .bind(JobSummary::MAX_TEXT as i64)
            .bind(&f.schedule)
            .fetch_all(&self.reader)
            .await?;
        SummaryRow::page(rows, limit)
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

/// The state of job `id` inside a write transaction.
async fn state_of(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, id: JobId) -> Result<JobState> {
    let state: Option<String> = sqlx::query_scalar("SELECT state FROM jobs WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    let state = state.ok_or(Error::NotFound(id))?;
    JobState::parse(&state).ok_or_else(|| Error::Corrupt(format!("jobs.state {id}")))
}

#[cfg(test)]
mod tests;
