//! Operator-side job operations on PostgreSQL: submit (one job or a batch,
//! all or none), get, list, cancel, retry.
//!
//! Several replicas submit at once: an idempotency key is the unique
//! `jobs.idempotency_key`, inserted with `ON CONFLICT DO NOTHING`; the
//! submit that loses the race reads the winner's job (its statement waited
//! for the winner's commit) and answers it as a replay, or
//! `IdempotencyConflict` when the bodies differ. The ids of one batch are
//! increasing but, with other replicas inserting at the same time, not
//! always consecutive: the jobs of a keyed batch carry `batch_first` (the
//! id of its first job), which its replay reads.

use std::collections::HashMap;

use async_trait::async_trait;
use baton_proto::{AttemptView, JobId, JobList, JobSubmit, JobSummary, JobView};
use futures_util::future::BoxFuture;
use sqlx::postgres::PgConnection;

use super::PgStore;
use super::group::Answer;
use crate::store::audit::AuditRecord;
use crate::store::jobs::{
    BatchSubmitted, JobFilter, JobStore, NewBatch, NewJob, QueueFigure, Submitted,
    queue_figures_of, queue_figures_sql, queued_view,
};
use crate::store::rows::{AttemptRow, JOB_COLUMNS, JobRow, SummaryRow};
use crate::store::{Error, Result};

#[async_trait]
impl JobStore for PgStore {
    /// Persist a new job (or return the one an idempotency key already
    /// made). No transaction of its own: the INSERT is one statement, and
    /// the reads around it are answers, not decisions. Without a key, the
    /// INSERT is shared with the submits arriving meanwhile
    /// ([`super::group`]); a batch whose commit was lost answers an error,
    /// as a lone INSERT's would (the job may exist: only a key makes a
    /// retry safe).
    async fn submit(&self, new: NewJob, now: i64) -> Result<Submitted> {
        let new = if new.idempotency_key.is_none() {
            let item: Submit = (std::sync::Arc::new(new), now);
            let audited = item.0.audit.is_some();
            match self.groups.submit.run(item.clone()).await {
                Answer::Done(job) => {
                    return Ok(Submitted {
                        job,
                        created: true,
                        audited,
                    });
                }
                Answer::Unknown(why) => return Err(Error::Commit(why)),
                Answer::Alone => item.0,
            }
        } else {
            std::sync::Arc::new(new)
        };
        let mut c = self.pool.acquire().await?;
        self.noted(submit_in(&mut c, &new, now).await)
    }

    /// Persist every job of a batch, or none (or return the jobs an earlier
    /// batch with the same idempotency key made): one statement without a
    /// key, one transaction with one.
    async fn submit_batch(&self, batch: NewBatch, now: i64) -> Result<BatchSubmitted> {
        if batch.idempotency_key.is_none() {
            let mut c = self.pool.acquire().await?;
            return self.noted(submit_batch_in(&mut c, &batch, now).await);
        }
        let batch = std::sync::Arc::new(batch);
        self.tx(move |c| {
            let batch = batch.clone();
            Box::pin(async move { submit_batch_in(c, &batch, now).await })
        })
        .await
    }

    /// A job with every attempt.
    async fn get_job(&self, id: JobId) -> Result<JobView> {
        let mut c = self.pool.acquire().await?;
        let mut view = views(&mut c, &[id])
            .await?
            .pop()
            .ok_or(Error::NotFound(id))?;
        view.schedule = sqlx::query_scalar(
            "SELECT s.name FROM jobs j JOIN schedules s ON s.id = j.schedule_id WHERE j.id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *c)
        .await?;
        Ok(view)
    }

    /// Jobs matching a filter, newest first, as summaries: only the columns
    /// a summary needs are read, and long texts are cut in the query.
    async fn list_jobs(&self, f: &JobFilter) -> Result<JobList> {
        let limit = f.limit.clamp(1, 1000);
        let mut browse = self.browse().await?;
        // The state as a literal, so the planner can read its partial index
        // (`JobFilter::state_index`; `$1` stays typed), and the page's end as
        // a range on the id.
        let state = match f.state_index() {
            Some((_, by_index)) => format!("{by_index} AND $1::text IS NOT NULL"),
            None => "($1::text IS NULL OR state = $1)".to_owned(),
        };
        let sql = format!(
            "SELECT id, grp, kind, connection, state, priority, attempts_spent,
                    (retry::jsonb ->> 'max_attempts')::bigint AS max_attempts, labels,
                    not_before, cancel_requested, lease_agent, created_at, updated_at, finished_at,
                    (result::jsonb ->> 'exit_code')::bigint AS exit_code,
                    substr(error, 1, $8 + 1) AS error,
                    substr(CASE kind
                        WHEN 'command' THEN spec::jsonb ->> 'program'
                        WHEN 'procedure' THEN spec::jsonb ->> 'procedure'
                        WHEN 'sql' THEN spec::jsonb ->> 'sql'
                        WHEN 'dump' THEN spec::jsonb ->> 'database'
                        WHEN 'export' THEN spec::jsonb ->> 'query'
                        WHEN 'restore' THEN spec::jsonb ->> 'database'
                        WHEN 'upload' THEN spec::jsonb ->> 'file'
                    END, 1, $8 + 1) AS what,
                    (SELECT name FROM schedules s WHERE s.id = jobs.schedule_id) AS schedule,
                    nominal_at, run_id, step
             FROM jobs
             WHERE {state} AND ($2::text IS NULL OR grp = $2)
               AND ($3::text IS NULL OR kind = $3) AND id < $4
               AND ($5::text IS NULL OR labels::jsonb ->> $5 = $6::text)
               AND ($9::text IS NULL OR schedule_id = (SELECT id FROM schedules WHERE name = $9))
             ORDER BY id DESC LIMIT $7"
        );
        let rows: Vec<SummaryRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(f.state.map(|s| s.as_str()))
            .bind(&f.group)
            .bind(&f.kind)
            .bind(f.before.unwrap_or(JobId::MAX))
            .bind(f.label.as_ref().map(|l| l.0.as_str()))
            .bind(f.label.as_ref().map(|l| l.1.as_str()))
            .bind(i64::from(limit) + 1)
            .bind(JobSummary::MAX_TEXT as i32)
            .bind(&f.schedule)
            .fetch_all(&mut *browse)
            .await?;
        browse.commit().await?;
        SummaryRow::page(rows, limit)
    }

    /// Cancel: a queued job ends at once; a running one is asked to stop.
    /// The row is locked first, so a grant or an end on another replica
    /// either happens before (then the cancel sees it) or after.
    async fn cancel(&self, id: JobId, now: i64) -> Result<JobView> {
        let before = self
            .tx(move |c| {
                Box::pin(async move {
                    super::made::cancel_in(&mut *c, id, "cancelled by operator before it ran", now)
                        .await
                })
            })
            .await?;
        if before.is_terminal() {
            return Err(Error::Conflict(format!("job {id} is already {before}")));
        }
        self.get_job(id).await
    }

    /// Retry a failed or cancelled job with a fresh attempt budget: one
    /// conditional UPDATE (two replicas retrying at once requeue it once).
    async fn retry(&self, id: JobId, now: i64) -> Result<JobView> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'queued', attempts_spent = 0, cancel_requested = FALSE,
             not_before = $1, updated_at = $1, finished_at = NULL, error = NULL, result = NULL,
             followup = (run_id IS NOT NULL OR schedule_id IS NOT NULL)
             WHERE id = $2 AND state IN ('failed', 'cancelled')",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            let state: Option<String> = sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
            let state = state.ok_or(Error::NotFound(id))?;
            return Err(Error::Conflict(format!(
                "job {id} is {state}; only failed or cancelled jobs can be retried"
            )));
        }
        self.get_job(id).await
    }

    async fn queue_figures(&self, now: i64, finished_since: i64) -> Result<Vec<QueueFigure>> {
        let rows = sqlx::query_as(sqlx::AssertSqlSafe(queue_figures_sql("$1", "$2")))
            .bind(now)
            .bind(finished_since)
            .fetch_all(&self.pool)
            .await?;
        queue_figures_of(rows)
    }
}

/// The job an idempotency key made, if any.
async fn by_key(c: &mut PgConnection, key: &str) -> Result<Option<JobRow>> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE idempotency_key = $1");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(key)
        .fetch_optional(&mut *c)
        .await?)
}

/// One job to insert: the request, its lease TTL, the idempotency key and
/// request hash stored with it, and the time it was submitted.
type Insert<'a> = (&'a JobSubmit, u64, Option<&'a str>, &'a str, i64);

/// A submit without an idempotency key, to insert in a group: the job and
/// the time it was submitted.
pub(super) type Submit = (std::sync::Arc<NewJob>, i64);

/// Insert the submits of a group in one statement (none has a key, so
/// none can conflict): their views, in order.
pub(super) fn submit_grouped<'c>(
    c: &'c mut PgConnection,
    items: &'c [Submit],
) -> BoxFuture<'c, std::result::Result<Vec<JobView>, sqlx::Error>> {
    Box::pin(async move {
        let rows: Vec<Insert<'_>> = items
            .iter()
            .map(|(new, now)| {
                (
                    &new.submit,
                    new.lease_ttl_ms,
                    None,
                    new.request_hash.as_str(),
                    *now,
                )
            })
            .collect();
        // The calls' audit rows go in the same statement: one commit (one
        // WAL flush) answers the submit, as on SQLite.
        let audits: Vec<Audited<'_>> = items
            .iter()
            .filter_map(|(new, now)| new.audit.as_ref().map(|a| (a, *now)))
            .collect();
        // No key, so no conflict: one view per submit (the group checks).
        insert(c, &rows, None, &audits).await
    })
}

/// An audit row written with the jobs, and its time.
type Audited<'a> = (&'a AuditRecord, i64);

/// The columns of jobs to insert, one array each (unnested in order).
#[derive(Default)]
struct Columns<'a> {
    grp: Vec<&'a str>,
    kind: Vec<&'static str>,
    spec: Vec<String>,
    connection: Vec<Option<&'a str>>,
    store: Vec<Option<&'a str>>,
    priority: Vec<i64>,
    retry: Vec<String>,
    timeout_ms: Vec<Option<i64>>,
    lease_ttl_ms: Vec<i64>,
    labels: Vec<String>,
    key: Vec<Option<&'a str>>,
    hash: Vec<&'a str>,
    now: Vec<i64>,
}

impl<'a> Columns<'a> {
    fn of(jobs: &[Insert<'a>]) -> std::result::Result<Columns<'a>, sqlx::Error> {
        let mut c = Columns::default();
        for (s, ttl, key, hash, now) in jobs {
            c.grp.push(&s.group);
            c.kind.push(s.spec.kind().as_str());
            c.spec.push(enc(&s.spec)?);
            c.connection.push(s.spec.connection());
            c.store.push(s.spec.store());
            c.priority.push(i64::from(s.priority));
            c.retry.push(enc(&s.retry)?);
            c.timeout_ms.push(s.timeout_ms.map(|t| t as i64));
            c.lease_ttl_ms.push(*ttl as i64);
            c.labels.push(enc(&s.labels)?);
            c.key.push(*key);
            c.hash.push(hash);
            c.now.push(*now);
        }
        Ok(c)
    }
}

/// Insert queued jobs, in order, in one statement (arrays unnested in
/// order); `batch_first` is stored on each. A row whose idempotency key is
/// taken is not inserted (`ON CONFLICT DO NOTHING`): the answer is then
/// empty. `audits` are inserted by the same statement (only unkeyed
/// submits pass any: a replay must not leave a 201 row). Returns the views
/// in order.
async fn insert(
    c: &mut PgConnection,
    jobs: &[Insert<'_>],
    batch_first: Option<JobId>,
    audits: &[Audited<'_>],
) -> std::result::Result<Vec<JobView>, sqlx::Error> {
    macro_rules! jobs {
        () => {
            "INSERT INTO jobs (grp, kind, spec, connection, priority, retry, timeout_ms,
             lease_ttl_ms, labels, idempotency_key, request_hash, batch_first, state, not_before,
             created_at, updated_at, store)
         SELECT grp, kind, spec, connection, priority, retry, timeout_ms, lease_ttl_ms,
             labels, key, hash, $12, 'queued', now, now, now, store
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],
             $7::bigint[], $8::bigint[], $9::text[], $10::text[], $11::text[], $13::bigint[],
             $14::text[])
             WITH ORDINALITY
             AS t(grp, kind, spec, connection, priority, retry, timeout_ms, lease_ttl_ms,
                  labels, key, hash, now, store, ord)
         ORDER BY ord
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING id"
        };
    }
    // Ids of one statement come from the sequence in row order.
    const WITH_AUDIT: &str = concat!(
        "WITH ins AS (",
        jobs!(),
        "),
         aud AS (INSERT INTO audit (at, actor, role, action, target, status, error)
             SELECT at, actor, role, action, target, status, error
             FROM unnest($15::bigint[], $16::text[], $17::text[], $18::text[], $19::text[],
                 $20::bigint[], $21::text[]) WITH ORDINALITY
                 AS e(at, actor, role, action, target, status, error, ord)
             ORDER BY ord)
         SELECT id FROM ins ORDER BY id"
    );
    let cols = Columns::of(jobs)?;
    let sql = if audits.is_empty() {
        jobs!()
    } else {
        WITH_AUDIT
    };
    let mut q = sqlx::query_scalar(sql)
        .bind(cols.grp)
        .bind(cols.kind)
        .bind(cols.spec)
        .bind(cols.connection)
        .bind(cols.priority)
        .bind(cols.retry)
        .bind(cols.timeout_ms)
        .bind(cols.lease_ttl_ms)
        .bind(cols.labels)
        .bind(cols.key)
        .bind(cols.hash)
        .bind(batch_first)
        .bind(cols.now)
        .bind(cols.store);
    if !audits.is_empty() {
        let col = |f: fn(&AuditRecord) -> &str| -> Vec<&str> {
            audits.iter().map(|(r, _)| f(r)).collect()
        };
        q = q
            .bind(audits.iter().map(|(_, at)| *at).collect::<Vec<i64>>())
            .bind(col(|r| &r.actor))
            .bind(col(|r| &r.role))
            .bind(col(|r| &r.action))
            .bind(col(|r| &r.target))
            .bind(
                audits
                    .iter()
                    .map(|(r, _)| i64::from(r.status))
                    .collect::<Vec<i64>>(),
            )
            .bind(
                audits
                    .iter()
                    .map(|(r, _)| r.error.as_deref())
                    .collect::<Vec<Option<&str>>>(),
            );
    }
    let ids: Vec<JobId> = q.fetch_all(&mut *c).await?;
    if ids.len() != jobs.len() {
        // Only a keyed single row can conflict (a batch inserts its keyed
        // first job alone).
        return Ok(Vec::new());
    }
    Ok(ids
        .into_iter()
        .zip(jobs)
        .map(|(id, (s, ttl, key, _, now))| queued_view(id, s, *ttl, *key, *now))
        .collect())
}

/// A value as the JSON text stored in its column.
fn enc<T: serde::Serialize>(v: &T) -> std::result::Result<String, sqlx::Error> {
    serde_json::to_string(v).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// Views of jobs `ids` with their attempts, in id order (missing ids left out).
async fn views(c: &mut PgConnection, ids: &[JobId]) -> Result<Vec<JobView>> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ANY($1) ORDER BY id");
    let rows: Vec<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(ids)
        .fetch_all(&mut *c)
        .await?;
    let attempts: Vec<JobAttempt> = sqlx::query_as(
        "SELECT job_id, number, agent_id, token, started_at, running_at, ended_at, outcome, error, progress,
                log_tail, result
         FROM attempts WHERE job_id = ANY($1) ORDER BY job_id, number",
    )
    .bind(ids)
    .fetch_all(&mut *c)
    .await?;
    let mut by_job: HashMap<JobId, Vec<AttemptView>> = HashMap::new();
    for a in &attempts {
        by_job.entry(a.job_id).or_default().push(a.row.view()?);
    }
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(row.view(by_job.remove(&row.id).unwrap_or_default())?);
    }
    Ok(out)
}

/// An attempt row with its job.
#[derive(Debug, sqlx::FromRow)]
struct JobAttempt {
    job_id: JobId,
    #[sqlx(flatten)]
    row: AttemptRow,
}

/// The jobs of the batch whose first job is `first`, in order: by
/// `batch_first`, or (a batch copied from SQLite, ids consecutive) by range.
async fn batch_views(c: &mut PgConnection, first: JobId, n: usize) -> Result<Vec<JobView>> {
    let mut ids: Vec<JobId> =
        sqlx::query_scalar("SELECT id FROM jobs WHERE id = $1 OR batch_first = $1 ORDER BY id")
            .bind(first)
            .fetch_all(&mut *c)
            .await?;
    if ids.len() == 1 && n > 1 {
        ids = (first..first + n as i64).collect();
    }
    views(c, &ids).await
}

/// A replay of an idempotency key: the earlier job's view, or a conflict
/// when the request differs.
async fn replay(c: &mut PgConnection, key: &str, hash: &str) -> Result<Option<JobRow>> {
    match by_key(c, key).await? {
        Some(row) if row.request_hash.as_deref() != Some(hash) => {
            Err(Error::IdempotencyConflict(key.to_owned()))
        }
        found => Ok(found),
    }
}

/// Submit on a connection, each statement its own transaction (see
/// [`JobStore::submit`]).
pub(super) async fn submit_in(c: &mut PgConnection, new: &NewJob, now: i64) -> Result<Submitted> {
    let key = new.idempotency_key.as_deref();
    for _ in 0..2 {
        if let Some(key) = key
            && let Some(row) = replay(c, key, &new.request_hash).await?
        {
            let job = views(c, &[row.id])
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
            key,
            new.request_hash.as_str(),
            now,
        )];
        // Without a key nothing can conflict: the call's audit row goes in
        // the same statement (a hand-over's transaction then commits both).
        // A keyed submit leaves it to the caller: a replay must not record
        // a 201.
        let audits: Vec<Audited<'_>> = match (key, &new.audit) {
            (None, Some(a)) => vec![(a, now)],
            _ => Vec::new(),
        };
        if let Some(job) = insert(c, &one, None, &audits).await?.pop() {
            return Ok(Submitted {
                job,
                created: true,
                audited: !audits.is_empty(),
            });
        }
        // Another replica inserted the key meanwhile (the INSERT waited for
        // its commit): read it as a replay.
    }
    Err(Error::Corrupt(
        "idempotency key neither inserted nor found".into(),
    ))
}

/// Batch submit (see [`JobStore::submit_batch`]): inside a transaction
/// when keyed (its first job is inserted alone, then the rest).
async fn submit_batch_in(c: &mut PgConnection, b: &NewBatch, now: i64) -> Result<BatchSubmitted> {
    let rows: Vec<Insert<'_>> = b
        .jobs
        .iter()
        .enumerate()
        .map(|(i, new)| {
            let (key, hash) = match (&b.idempotency_key, i) {
                (Some(k), 0) => (Some(k.as_str()), b.request_hash.as_str()),
                _ => (None, new.request_hash.as_str()),
            };
            (&new.submit, new.lease_ttl_ms, key, hash, now)
        })
        .collect();
    let Some(key) = &b.idempotency_key else {
        let jobs = insert(c, &rows, None, &[]).await?;
        return Ok(BatchSubmitted {
            jobs,
            created: true,
        });
    };
    for _ in 0..2 {
        if let Some(row) = replay(c, key, &b.request_hash).await? {
            let jobs = batch_views(c, row.id, b.jobs.len()).await?;
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
        // The keyed first job alone: if another replica took the key
        // meanwhile, nothing of this batch is inserted.
        let Some(first) = insert(c, &rows[..1], None, &[]).await?.pop() else {
            continue;
        };
        let mut jobs = vec![first];
        if rows.len() > 1 {
            jobs.extend(insert(c, &rows[1..], Some(jobs[0].id), &[]).await?);
        }
        return Ok(BatchSubmitted {
            jobs,
            created: true,
        });
    }
    Err(Error::Corrupt(
        "idempotency key neither inserted nor found".into(),
    ))
}

#[cfg(test)]
mod tests;
