//! Operator-side job operations: submit, get, list, cancel, retry.

use baton_proto::{JobId, JobList, JobState, JobSubmit, JobView};
use sqlx::Row;

use super::rows::{AttemptRow, JOB_COLUMNS, JobRow};
use super::{Error, Result, Store};

/// A validated submission.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// The request.
    pub submit: JobSubmit,
    /// Lease TTL after defaults.
    pub lease_ttl_ms: u64,
    /// `Idempotency-Key`, if given.
    pub idempotency_key: Option<String>,
    /// Hash of the canonical request, to detect key reuse with another body.
    pub request_hash: String,
}

/// Filters for [`Store::list_jobs`].
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only this state.
    pub state: Option<JobState>,
    /// Only this group.
    pub group: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only jobs with this label `(key, value)`.
    pub label: Option<(String, String)>,
    /// Only ids below this (paging).
    pub before: Option<JobId>,
    /// Page size.
    pub limit: u32,
}

/// What a submission did.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The job.
    pub job: JobView,
    /// False when an earlier submission with the same idempotency key is returned.
    pub created: bool,
}

impl Store {
    /// Persist a new job (or return the one an idempotency key already made).
    pub async fn submit(&self, new: NewJob, now: i64) -> Result<Submitted> {
        let mut tx = self.writer.begin().await?;
        if let Some(key) = &new.idempotency_key {
            let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE idempotency_key = ?");
            let existing: Option<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = existing {
                if row.request_hash.as_deref() != Some(new.request_hash.as_str()) {
                    return Err(Error::IdempotencyConflict(key.clone()));
                }
                tx.commit().await?;
                let job = self.get_job(row.id).await?;
                return Ok(Submitted {
                    job,
                    created: false,
                });
            }
        }
        let s = &new.submit;
        let spec = serde_json::to_string(&s.spec).map_err(|e| Error::Corrupt(e.to_string()))?;
        let retry = serde_json::to_string(&s.retry).map_err(|e| Error::Corrupt(e.to_string()))?;
        let labels = serde_json::to_string(&s.labels).map_err(|e| Error::Corrupt(e.to_string()))?;
        let id: i64 = sqlx::query(
            "INSERT INTO jobs (grp, kind, spec, connection, priority, retry, timeout_ms, lease_ttl_ms, labels, idempotency_key, request_hash, state, not_before, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?) RETURNING id",
        )
        .bind(&s.group)
        .bind(s.spec.kind().as_str())
        .bind(spec)
        .bind(s.spec.connection())
        .bind(s.priority)
        .bind(retry)
        .bind(s.timeout_ms.map(|t| t as i64))
        .bind(new.lease_ttl_ms as i64)
        .bind(labels)
        .bind(&new.idempotency_key)
        .bind(&new.request_hash)
        .bind(now)
        .bind(now)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        tx.commit().await?;
        Ok(Submitted {
            job: self.get_job(id).await?,
            created: true,
        })
    }

    pub(crate) async fn job_row(&self, id: JobId) -> Result<JobRow> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?");
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?
            .ok_or(Error::NotFound(id))
    }

    /// A job with every attempt.
    pub async fn get_job(&self, id: JobId) -> Result<JobView> {
        let row = self.job_row(id).await?;
        let attempts: Vec<AttemptRow> = sqlx::query_as(
            "SELECT number, agent_id, token, started_at, ended_at, outcome, error, progress, log_tail, result
             FROM attempts WHERE job_id = ? ORDER BY number",
        )
        .bind(id)
        .fetch_all(&self.reader)
        .await?;
        let attempts = attempts
            .iter()
            .map(AttemptRow::view)
            .collect::<Result<Vec<_>>>()?;
        row.view(attempts)
    }

    /// Jobs matching a filter, newest first.
    pub async fn list_jobs(&self, f: &JobFilter) -> Result<JobList> {
        let limit = f.limit.clamp(1, 1000);
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs
             WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR grp = ?2) AND (?3 IS NULL OR kind = ?3)
               AND (?4 IS NULL OR id < ?4)
               AND (?5 IS NULL OR json_extract(labels, '$.' || json_quote(?5)) = ?6)
             ORDER BY id DESC LIMIT ?7"
        );
        let rows: Vec<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(f.state.map(|s| s.as_str()))
            .bind(&f.group)
            .bind(&f.kind)
            .bind(f.before)
            .bind(f.label.as_ref().map(|l| l.0.as_str()))
            .bind(f.label.as_ref().map(|l| l.1.as_str()))
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.reader)
            .await?;
        let more = rows.len() > limit as usize;
        let jobs = rows
            .iter()
            .take(limit as usize)
            .map(|r| r.view(Vec::new()))
            .collect::<Result<Vec<_>>>()?;
        let next_before = if more {
            jobs.last().map(|j| j.id)
        } else {
            None
        };
        Ok(JobList { jobs, next_before })
    }

    /// Cancel: a queued job ends at once; a running one is asked to stop
    /// (its holder learns it on the next heartbeat). Returns the group to wake.
    pub async fn cancel(&self, id: JobId, now: i64) -> Result<JobView> {
        let mut tx = self.writer.begin().await?;
        match state_of(&mut tx, id).await? {
            JobState::Queued => {
                sqlx::query(
                    "UPDATE jobs SET state = 'cancelled', cancel_requested = 1, finished_at = ?1, updated_at = ?1,
                     error = 'cancelled by operator before it ran' WHERE id = ?2",
                )
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            JobState::Running => {
                sqlx::query("UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE id = ?")
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            s => return Err(Error::Conflict(format!("job {id} is already {s}"))),
        }
        tx.commit().await?;
        self.get_job(id).await
    }

    /// Retry a failed or cancelled job with a fresh attempt budget.
    pub async fn retry(&self, id: JobId, now: i64) -> Result<JobView> {
        let mut tx = self.writer.begin().await?;
        match state_of(&mut tx, id).await? {
            JobState::Failed | JobState::Cancelled => {
                sqlx::query(
                    "UPDATE jobs SET state = 'queued', attempts_spent = 0, cancel_requested = 0, not_before = ?1,
                     updated_at = ?1, finished_at = NULL, error = NULL, result = NULL WHERE id = ?2",
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
pub(crate) mod tests {
    use super::*;
    use crate::store::testutil::store;
    use baton_proto::{JobSpec, NoopSpec, RetryPolicy};

    pub(crate) fn new_job(group: &str, key: Option<&str>, hash: &str) -> NewJob {
        NewJob {
            submit: JobSubmit {
                group: group.into(),
                spec: JobSpec::Noop(NoopSpec::default()),
                priority: 0,
                retry: RetryPolicy::default(),
                timeout_ms: None,
                lease_ttl_ms: None,
                labels: [("team".to_string(), "dba".to_string())].into(),
            },
            lease_ttl_ms: 15_000,
            idempotency_key: key.map(str::to_owned),
            request_hash: hash.into(),
        }
    }

    #[tokio::test]
    async fn submit_get_list() {
        let (s, _d) = store().await;
        let a = s
            .submit(new_job("g", None, "h"), 1000)
            .await
            .expect("submit");
        assert!(a.created);
        assert_eq!(a.job.state, JobState::Queued);
        let b = s
            .submit(new_job("h", None, "h"), 1001)
            .await
            .expect("submit");
        let all = s
            .list_jobs(&JobFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(
            all.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
            vec![b.job.id, a.job.id]
        );
        let g = s
            .list_jobs(&JobFilter {
                group: Some("g".into()),
                label: Some(("team".into(), "dba".into())),
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(g.jobs.len(), 1);
        let none = s
            .list_jobs(&JobFilter {
                label: Some(("team".into(), "web".into())),
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("list");
        assert!(none.jobs.is_empty());
        let page = s
            .list_jobs(&JobFilter {
                limit: 1,
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(page.next_before, Some(b.job.id));
    }

    #[tokio::test]
    async fn idempotency_key() {
        let (s, _d) = store().await;
        let a = s
            .submit(new_job("g", Some("k"), "h1"), 1)
            .await
            .expect("submit");
        let b = s
            .submit(new_job("g", Some("k"), "h1"), 2)
            .await
            .expect("again");
        assert!(!b.created);
        assert_eq!(a.job.id, b.job.id);
        let c = s.submit(new_job("g", Some("k"), "h2"), 3).await;
        assert!(matches!(c, Err(Error::IdempotencyConflict(_))));
    }

    #[tokio::test]
    async fn cancel_and_retry_rules() {
        let (s, _d) = store().await;
        let a = s
            .submit(new_job("g", None, "h"), 1)
            .await
            .expect("submit")
            .job;
        let c = s.cancel(a.id, 2).await.expect("cancel");
        assert_eq!(c.state, JobState::Cancelled);
        assert!(matches!(s.cancel(a.id, 3).await, Err(Error::Conflict(_))));
        let r = s.retry(a.id, 4).await.expect("retry");
        assert_eq!(r.state, JobState::Queued);
        assert!(matches!(s.retry(a.id, 5).await, Err(Error::Conflict(_))));
        assert!(matches!(s.get_job(999).await, Err(Error::NotFound(999))));
    }
}
