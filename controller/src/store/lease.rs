//! The lease contract (DESIGN.md "Lease and fencing", points 1–6).
//!
//! Every function here runs in one transaction on the single writer
//! connection, so checks and changes are atomic:
//! - a grant moves `queued → running`, issues `last_token + 1` and records attempt N;
//! - heartbeat/complete/release are accepted only with the current token, from
//!   the holder, before the lease deadline — otherwise [`Error::LeaseLost`];
//! - expiry ends overdue attempts as `lease_expired` and requeues or fails the job.

use baton_proto::{
    AttemptOutcome, CompleteRequest, Completion, FencingToken, Grant, JobId, JobKind, JobSpec,
    JobState, Progress, RetryOn, RetryPolicy,
};
use sqlx::{Sqlite, Transaction};

use super::rows::{JOB_COLUMNS, JobRow, json};
use super::{Error, Result, Store};

/// What a polling agent can take.
#[derive(Debug, Clone)]
pub struct GrantRequest<'a> {
    /// The agent.
    pub agent_id: &'a str,
    /// Its groups.
    pub groups: &'a [String],
    /// Job kinds it runs.
    pub kinds: &'a [JobKind],
    /// Connection names it has.
    pub connections: &'a [String],
    /// Most jobs to grant.
    pub max: u32,
}

/// The result of a grant attempt.
#[derive(Debug, Clone, Default)]
pub struct Granted {
    /// Jobs granted (held_ms still 0: the API layer fills it in).
    pub grants: Vec<Grant>,
    /// Earliest `not_before` of a matching job still waiting for backoff.
    pub next_ready_at: Option<i64>,
    /// Groups with jobs requeued by expiry during this call.
    pub woken: Vec<String>,
}

/// Leases ended by [`Store::expire_leases`].
#[derive(Debug, Clone, Default)]
pub struct Expired {
    /// `(job, token, agent)` of each expired lease.
    pub leases: Vec<(JobId, FencingToken, String)>,
    /// Groups that got a job back.
    pub woken: Vec<String>,
}

/// Where a job goes after an attempt ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    Queued { not_before: i64 },
    Succeeded,
    Failed,
    Cancelled,
}

impl Next {
    fn state(self) -> JobState {
        match self {
            Next::Queued { .. } => JobState::Queued,
            Next::Succeeded => JobState::Succeeded,
            Next::Failed => JobState::Failed,
            Next::Cancelled => JobState::Cancelled,
        }
    }
}

/// Decide the job's next state after an attempt that spent one try.
/// `spent` already counts this attempt; `unit` is a uniform sample for jitter.
pub(crate) fn after_spent_attempt(
    policy: &RetryPolicy,
    class: Option<RetryOn>,
    spent: u32,
    cancel_requested: bool,
    now: i64,
    unit: f64,
) -> Next {
    if cancel_requested {
        return Next::Cancelled;
    }
    match class {
        Some(c) if policy.retry_on.contains(&c) && spent < policy.max_attempts => Next::Queued {
            not_before: now + policy.delay_ms(spent, unit) as i64,
        },
        _ => Next::Failed,
    }
}

impl Store {
    /// Grant up to `req.max` queued jobs to an agent (point 1). Overdue
    /// leases are expired first, in the same transaction (point 5).
    pub async fn grant(&self, req: &GrantRequest<'_>, now: i64) -> Result<Granted> {
        let mut tx = self.writer.begin().await?;
        let expired = expire_in(&mut tx, now).await?;
        let groups = serde_json::to_string(req.groups).unwrap_or_default();
        let kinds = serde_json::to_string(req.kinds).unwrap_or_default();
        let conns = serde_json::to_string(req.connections).unwrap_or_default();
        let mut out = Granted {
            woken: expired.woken,
            ..Granted::default()
        };
        if req.max > 0 {
            let sql = format!(
                "SELECT {JOB_COLUMNS} FROM jobs
                 WHERE state = 'queued' AND not_before <= ?1
                   AND grp IN (SELECT value FROM json_each(?2))
                   AND kind IN (SELECT value FROM json_each(?3))
                   AND (connection IS NULL OR connection IN (SELECT value FROM json_each(?4)))
                   AND NOT EXISTS (SELECT 1 FROM agents WHERE id = ?6 AND drained_at IS NOT NULL)
                 ORDER BY priority DESC, id LIMIT ?5"
            );
            let rows: Vec<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(now)
                .bind(&groups)
                .bind(&kinds)
                .bind(&conns)
                .bind(i64::from(req.max))
                .bind(req.agent_id)
                .fetch_all(&mut *tx)
                .await?;
            for row in rows {
                let token = row.last_token + 1;
                let number = row.grants + 1;
                let expires = now + row.lease_ttl_ms;
                sqlx::query(
                    "UPDATE jobs SET state = 'running', last_token = ?1, lease_token = ?1, lease_agent = ?2,
                     lease_expires_at = ?3, grants = ?4, updated_at = ?5 WHERE id = ?6 AND state = 'queued'",
                )
                .bind(token)
                .bind(req.agent_id)
                .bind(expires)
                .bind(number)
                .bind(now)
                .bind(row.id)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO attempts (job_id, number, agent_id, token, started_at) VALUES (?, ?, ?, ?, ?)",
                )
                .bind(row.id)
                .bind(number)
                .bind(req.agent_id)
                .bind(token)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let spec: JobSpec = json("jobs.spec", &row.spec)?;
                let retry_codes = row.retry()?.retry_codes;
                out.grants.push(Grant {
                    job_id: row.id,
                    attempt: number as u32,
                    token,
                    lease_ttl_ms: row.lease_ttl_ms as u64,
                    held_ms: 0,
                    timeout_ms: row.timeout_ms.map(|t| t as u64),
                    group: row.grp.clone(),
                    spec,
                    retry_codes,
                });
            }
            if out.grants.is_empty() {
                out.next_ready_at = sqlx::query_scalar(
                    "SELECT MIN(not_before) FROM jobs
                     WHERE state = 'queued' AND not_before > ?1
                       AND grp IN (SELECT value FROM json_each(?2))
                       AND kind IN (SELECT value FROM json_each(?3))
                       AND (connection IS NULL OR connection IN (SELECT value FROM json_each(?4)))",
                )
                .bind(now)
                .bind(&groups)
                .bind(&kinds)
                .bind(&conns)
                .fetch_one(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Renew a lease (point 2). Returns `(ttl_ms, cancel_requested)`.
    pub async fn heartbeat(
        &self,
        job_id: JobId,
        agent_id: &str,
        token: FencingToken,
        progress: Option<&Progress>,
        log_tail: &str,
        now: i64,
    ) -> Result<(u64, bool)> {
        let mut tx = self.writer.begin().await?;
        let row = held_row(&mut tx, job_id, agent_id, token, now).await?;
        sqlx::query("UPDATE jobs SET lease_expires_at = ? WHERE id = ?")
            .bind(now + row.lease_ttl_ms)
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        let progress = progress.and_then(|p| serde_json::to_string(p).ok());
        sqlx::query(
            "UPDATE attempts SET progress = COALESCE(?1, progress),
             log_tail = CASE WHEN ?2 = '' THEN log_tail ELSE ?2 END
             WHERE job_id = ?3 AND token = ?4",
        )
        .bind(progress)
        .bind(log_tail)
        .bind(job_id)
        .bind(token)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((row.lease_ttl_ms as u64, row.cancel_requested))
    }

    /// Record the end of a grant (point 3). A redelivery of a completion that
    /// was already recorded answers `(state, true)`.
    pub async fn complete(
        &self,
        job_id: JobId,
        agent_id: &str,
        req: &CompleteRequest,
        now: i64,
    ) -> Result<(JobState, bool, String)> {
        let (token, completion, result, error) =
            (req.token, req.completion, &req.result, req.error.as_deref());
        let outcome = match completion {
            Completion::Succeeded => AttemptOutcome::Succeeded,
            Completion::Failed { .. } => AttemptOutcome::Failed,
            Completion::TimedOut => AttemptOutcome::TimedOut,
            Completion::Cancelled => AttemptOutcome::Cancelled,
        };
        let mut tx = self.writer.begin().await?;
        let row = match held_row(&mut tx, job_id, agent_id, token, now).await {
            Ok(r) => r,
            Err(Error::LeaseLost(why)) => {
                // A redelivery from the outbox after the first delivery was recorded?
                let prior: Option<(String, Option<String>)> = sqlx::query_as(
                    "SELECT agent_id, outcome FROM attempts WHERE job_id = ? AND token = ?",
                )
                .bind(job_id)
                .bind(token)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some((holder, Some(o))) = prior
                    && holder == agent_id
                    && o == outcome.as_str()
                {
                    let state: String = sqlx::query_scalar("SELECT state FROM jobs WHERE id = ?")
                        .bind(job_id)
                        .fetch_one(&mut *tx)
                        .await?;
                    let state = JobState::parse(&state)
                        .ok_or_else(|| Error::Corrupt("jobs.state".into()))?;
                    return Ok((state, true, String::new()));
                }
                return Err(Error::LeaseLost(why));
            }
            Err(e) => return Err(e),
        };
        let policy = row.retry()?;
        let (next, spent) = match completion {
            Completion::Succeeded => (Next::Succeeded, row.attempts_spent + 1),
            Completion::Cancelled => (Next::Cancelled, row.attempts_spent + 1),
            Completion::Failed { retryable } => {
                let spent = row.attempts_spent + 1;
                let class = retryable.then_some(RetryOn::Error);
                let n = after_spent_attempt(
                    &policy,
                    class,
                    spent as u32,
                    row.cancel_requested,
                    now,
                    rand::random(),
                );
                (n, spent)
            }
            Completion::TimedOut => {
                let spent = row.attempts_spent + 1;
                let n = after_spent_attempt(
                    &policy,
                    Some(RetryOn::Timeout),
                    spent as u32,
                    row.cancel_requested,
                    now,
                    rand::random(),
                );
                (n, spent)
            }
        };
        let result_json = serde_json::to_string(result).ok();
        sqlx::query(
            "UPDATE attempts SET ended_at = ?1, outcome = ?2, error = ?3, result = ?4 WHERE job_id = ?5 AND token = ?6",
        )
        .bind(now)
        .bind(outcome.as_str())
        .bind(error)
        .bind(&result_json)
        .bind(job_id)
        .bind(token)
        .execute(&mut *tx)
        .await?;
        set_next(
            &mut tx,
            job_id,
            next,
            spent,
            now,
            error,
            result_json.as_deref(),
        )
        .await?;
        tx.commit().await?;
        Ok((next.state(), false, row.grp))
    }

    /// Hand a job back without spending an attempt (point 6).
    pub async fn release(
        &self,
        job_id: JobId,
        agent_id: &str,
        token: FencingToken,
        reason: &str,
        now: i64,
    ) -> Result<(JobState, String)> {
        let mut tx = self.writer.begin().await?;
        let row = held_row(&mut tx, job_id, agent_id, token, now).await?;
        let reason = if reason.is_empty() {
            "released by agent"
        } else {
            reason
        };
        sqlx::query(
            "UPDATE attempts SET ended_at = ?1, outcome = 'released', error = ?2 WHERE job_id = ?3 AND token = ?4",
        )
        .bind(now)
        .bind(reason)
        .bind(job_id)
        .bind(token)
        .execute(&mut *tx)
        .await?;
        let next = if row.cancel_requested {
            Next::Cancelled
        } else {
            Next::Queued { not_before: now }
        };
        set_next(&mut tx, job_id, next, row.attempts_spent, now, None, None).await?;
        tx.commit().await?;
        Ok((next.state(), row.grp))
    }

    /// End every lease past its deadline (point 5).
    pub async fn expire_leases(&self, now: i64) -> Result<Expired> {
        let mut tx = self.writer.begin().await?;
        let out = expire_in(&mut tx, now).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// The earliest lease deadline, if any lease is held.
    pub async fn next_lease_deadline(&self) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT MIN(lease_expires_at) FROM jobs WHERE state = 'running'")
                .fetch_one(&self.reader)
                .await?,
        )
    }
}

/// The job row, if `agent_id` holds it with `token` and the lease has not run out.
async fn held_row(
    tx: &mut Transaction<'_, Sqlite>,
    job_id: JobId,
    agent_id: &str,
    token: FencingToken,
    now: i64,
) -> Result<JobRow> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?");
    let row: JobRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(job_id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(Error::NotFound(job_id))?;
    let current = row.state()? == JobState::Running
        && row.lease_token == Some(token)
        && row.lease_agent.as_deref() == Some(agent_id);
    if !current {
        // Someone else's lease is 403 whatever the token; the caller's own
        // earlier (stale) lease is 409 lease_lost.
        let token_holder: Option<String> =
            sqlx::query_scalar("SELECT agent_id FROM attempts WHERE job_id = ? AND token = ?")
                .bind(job_id)
                .bind(token)
                .fetch_optional(&mut **tx)
                .await?;
        let held_before = match &token_holder {
            Some(holder) => holder == agent_id,
            None => {
                sqlx::query_scalar::<_, i64>(
                    "SELECT COUNT(*) FROM attempts WHERE job_id = ? AND agent_id = ?",
                )
                .bind(job_id)
                .bind(agent_id)
                .fetch_one(&mut **tx)
                .await?
                    > 0
            }
        };
        if !held_before {
            return Err(Error::Forbidden(format!(
                "agent {agent_id} does not hold job {job_id}"
            )));
        }
        return Err(Error::LeaseLost(format!(
            "token {token} is not the current lease of job {job_id}"
        )));
    }
    if row.lease_expires_at.is_none_or(|d| d <= now) {
        return Err(Error::LeaseLost(format!(
            "the lease of job {job_id} has expired"
        )));
    }
    Ok(row)
}

async fn set_next(
    tx: &mut Transaction<'_, Sqlite>,
    job_id: JobId,
    next: Next,
    spent: i64,
    now: i64,
    error: Option<&str>,
    result: Option<&str>,
) -> Result<()> {
    let (state, not_before, finished) = match next {
        Next::Queued { not_before } => ("queued", not_before, None),
        other => (other.state().as_str(), now, Some(now)),
    };
    sqlx::query(
        "UPDATE jobs SET state = ?1, attempts_spent = ?2, not_before = ?3, finished_at = ?4, updated_at = ?5,
         lease_agent = NULL, lease_token = NULL, lease_expires_at = NULL,
         error = CASE WHEN ?1 = 'succeeded' THEN NULL ELSE COALESCE(?6, error) END,
         result = COALESCE(?7, result) WHERE id = ?8",
    )
    .bind(state)
    .bind(spent)
    .bind(not_before)
    .bind(finished)
    .bind(now)
    .bind(error)
    .bind(result)
    .bind(job_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn expire_in(tx: &mut Transaction<'_, Sqlite>, now: i64) -> Result<Expired> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'running' AND lease_expires_at <= ? ORDER BY lease_expires_at"
    );
    let rows: Vec<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .fetch_all(&mut **tx)
        .await?;
    let mut out = Expired::default();
    for row in rows {
        let token = row.lease_token.unwrap_or_default();
        let agent = row.lease_agent.clone().unwrap_or_default();
        let spent = row.attempts_spent + 1;
        let next = after_spent_attempt(
            &row.retry()?,
            Some(RetryOn::LeaseExpired),
            spent as u32,
            row.cancel_requested,
            now,
            rand::random(),
        );
        let error = format!("lease of agent {agent} expired (token {token})");
        sqlx::query(
            "UPDATE attempts SET ended_at = ?1, outcome = 'lease_expired', error = ?2 WHERE job_id = ?3 AND token = ?4",
        )
        .bind(now)
        .bind(&error)
        .bind(row.id)
        .bind(token)
        .execute(&mut **tx)
        .await?;
        let final_error = match next {
            Next::Failed => Some(format!("{error}; no attempts left")),
            Next::Cancelled => Some("cancelled by operator".to_owned()),
            _ => Some(error),
        };
        set_next(tx, row.id, next, spent, now, final_error.as_deref(), None).await?;
        if matches!(next, Next::Queued { .. }) && !out.woken.contains(&row.grp) {
            out.woken.push(row.grp.clone());
        }
        out.leases.push((row.id, token, agent));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
