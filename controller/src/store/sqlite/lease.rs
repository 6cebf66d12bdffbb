//! The lease contract (ARCHITECTURE.md "The lease lifecycle", points 1–6) in
//! SQLite ([`crate::store::lease`]).
//!
//! Every function here runs in one transaction on the single writer
//! connection (through the group-commit writer, [`super::writer`]: a batch of
//! calls shares one transaction, a call that fails rolls back only itself,
//! and nobody is answered before the commit), so checks and changes are
//! atomic. As the writer requires, every refusal (lease lost, forbidden, not
//! found) is decided before the first write of a call:
//! - a grant moves `queued → running`, issues `last_token + 1` and records attempt N;
//! - heartbeat/complete/release are accepted only with the current token, from
//!   the holder, before the lease deadline — otherwise [`Error::LeaseLost`];
//! - expiry ends overdue attempts as `lease_expired` and requeues or fails the job;
//! - abandon ends a restarted agent's current leases as `agent_restarted`.

use baton_proto::{
    AttemptOutcome, CompleteRequest, Completion, FencingToken, HeartbeatRequest, JobId, JobState,
    LeaseRef,
};

use async_trait::async_trait;
use rusqlite::{Connection, params};

mod bound;
mod grant;
pub(crate) use bound::LeaseBound;
use grant::grant_in;

use super::SqliteStore;
use super::writer::rows::{self, job_row};
use crate::store::jobs::{NewJob, Submitted};
use crate::store::lease::{
    Abandoned, Completed, Expired, GrantRequest, Granted, LeaseStore, Next, OwnedGrant,
    after_lost_lease, ms_i64, next_after, outcome_of,
};
use crate::store::rows::{JOB_COLUMNS, JobRow};
use crate::store::{Error, Result};

#[async_trait]
impl LeaseStore for SqliteStore {
    /// Grant up to `req.max` queued jobs to an agent (point 1). Overdue
    /// leases are expired first, in the same transaction (point 5).
    async fn grant(&self, req: &GrantRequest<'_>, now: i64) -> Result<Granted> {
        let req = OwnedGrant::of(req);
        let bound = self.lease_bound.clone();
        self.grouped(move |c| grant_in(c, &bound, &req, now)).await
    }

    /// Submit and grant in one operation of the group-commit writer (one
    /// transaction, one commit).
    async fn submit_and_grant(
        &self,
        new: NewJob,
        req: &GrantRequest<'_>,
        now: i64,
    ) -> Result<(Submitted, Granted)> {
        let args = (new, OwnedGrant::of(req));
        let bound = self.lease_bound.clone();
        self.grouped(move |c| {
            let (new, req) = &args;
            let submitted = super::jobs::submit::submit_in(c, new, now)?;
            let granted = if submitted.created {
                grant_in(c, &bound, req, now)?
            } else {
                Granted::default()
            };
            Ok((submitted, granted))
        })
        .await
    }

    /// Renew a lease (point 2). Returns `(ttl_ms, cancel_requested)`.
    async fn heartbeat(
        &self,
        job_id: JobId,
        agent_id: &str,
        req: &HeartbeatRequest,
        now: i64,
    ) -> Result<(u64, bool)> {
        let beat = Beat {
            agent_id: agent_id.to_owned(),
            token: req.token,
            progress: req
                .progress
                .as_ref()
                .and_then(|p| serde_json::to_string(p).ok()),
            log_tail: req.log_tail.clone(),
            started_after_ms: req.started_after_ms.map(ms_i64),
        };
        let bound = self.lease_bound.clone();
        self.grouped(move |c| heartbeat_in(c, &bound, job_id, &beat, now))
            .await
    }

    /// Record the end of a grant (point 3). A redelivery of a completion that
    /// was already recorded answers `(state, true, "", true)`.
    async fn complete(
        &self,
        job_id: JobId,
        agent_id: &str,
        req: &CompleteRequest,
        now: i64,
    ) -> Result<(JobState, bool, String, bool)> {
        let done = Completed {
            job_id,
            agent_id: agent_id.to_owned(),
            token: req.token,
            completion: req.completion,
            result_json: serde_json::to_string(&req.result).ok(),
            error: req.error.clone(),
            started_after_ms: req.started_after_ms.map(ms_i64),
            unit: rand::random(),
        };
        // The agent waits, not a person: one commit with the next write.
        self.grouped_deferred(move |c| complete_in(c, &done, now))
            .await
    }

    /// Hand a job back without spending an attempt (point 6).
    async fn release(
        &self,
        job_id: JobId,
        agent_id: &str,
        token: FencingToken,
        reason: &str,
        now: i64,
    ) -> Result<(JobState, String)> {
        let args = (agent_id.to_owned(), reason.to_owned());
        self.grouped(move |c| {
            let (agent_id, reason) = &args;
            release_in(c, job_id, agent_id, token, reason, now)
        })
        .await
    }

    /// End every lease past its deadline (point 5).
    async fn expire_leases(&self, now: i64) -> Result<Expired> {
        let bound = self.lease_bound.clone();
        self.grouped(move |c| expire_in(c, &bound, now)).await
    }

    /// End a restarted agent's leases of its previous run that are still current.
    async fn abandon(&self, agent_id: &str, leases: &[LeaseRef], now: i64) -> Result<Abandoned> {
        let args = (agent_id.to_owned(), leases.to_vec());
        self.grouped(move |c| {
            let (agent_id, leases) = &args;
            abandon_in(c, agent_id, leases, now)
        })
        .await
    }

    /// Attempts ever ended by their agent's restart report.
    async fn agent_restart_ends(&self) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM attempts INDEXED BY attempts_restarted
                 WHERE outcome = 'agent_restarted'",
        )
        .fetch_one(&self.reader)
        .await?)
    }

    /// The earliest lease deadline, if any lease is held.
    async fn next_lease_deadline(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(lease_expires_at) FROM jobs INDEXED BY jobs_lease WHERE state = 'running'",
        )
        .fetch_one(&self.reader)
        .await?)
    }

    async fn ready_in(&self, groups: &[String], now: i64) -> Result<bool> {
        let groups = serde_json::to_string(groups).map_err(|e| Error::Corrupt(e.to_string()))?;
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM jobs INDEXED BY jobs_ready
             WHERE state = 'queued' AND grp IN (SELECT value FROM json_each(?1)) AND not_before <= ?2)",
        )
        .bind(groups)
        .bind(now)
        .fetch_one(&self.reader)
        .await?)
    }

    async fn cancelled_holders(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT lease_agent FROM jobs
             WHERE state = 'running' AND cancel_requested = 1 AND lease_agent IS NOT NULL",
        )
        .fetch_all(&self.reader)
        .await?)
    }

    async fn cancelled_leases(&self, agent_id: &str) -> Result<Vec<LeaseRef>> {
        let rows: Vec<(JobId, Option<i64>)> = sqlx::query_as(
            "SELECT id, lease_token FROM jobs
             WHERE state = 'running' AND lease_agent = ? AND cancel_requested = 1",
        )
        .bind(agent_id)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(job_id, token)| token.map(|token| LeaseRef { job_id, token }))
            .collect())
    }
}

/// What a heartbeat writes.
struct Beat {
    agent_id: String,
    token: FencingToken,
    progress: Option<String>,
    log_tail: String,
    started_after_ms: Option<i64>,
}

/// Heartbeat inside a write transaction (see [`LeaseStore::heartbeat`]).
fn heartbeat_in(
    c: &Connection,
    bound: &LeaseBound,
    job_id: JobId,
    b: &Beat,
    now: i64,
) -> Result<(u64, bool)> {
    let row = held_row(c, job_id, &b.agent_id, b.token, now)?;
    bound.lower(now.saturating_add(row.lease_ttl_ms));
    rows::run(
        c,
        "UPDATE jobs SET lease_expires_at = ?2 WHERE id = ?1",
        params![job_id, now + row.lease_ttl_ms],
    )?;
    rows::run(
        c,
        "UPDATE attempts SET progress = COALESCE(?1, progress),
         log_tail = CASE WHEN ?2 = '' THEN log_tail ELSE ?2 END,
         running_at = COALESCE(running_at, MIN(started_at + ?5, ?6))
         WHERE job_id = ?3 AND token = ?4",
        params![
            b.progress,
            b.log_tail,
            job_id,
            b.token,
            b.started_after_ms,
            now
        ],
    )?;
    Ok((row.lease_ttl_ms as u64, row.cancel_requested))
}

/// Completion inside a write transaction (see [`LeaseStore::complete`]).
fn complete_in(c: &Connection, d: &Completed, now: i64) -> Result<(JobState, bool, String, bool)> {
    let (job_id, agent_id, token, error) =
        (d.job_id, d.agent_id.as_str(), d.token, d.error.as_deref());
    let outcome = outcome_of(d.completion);
    if matches!(d.completion, Completion::Succeeded)
        && let Some((grp, made)) = succeed_held(c, d, now)?
    {
        return Ok((JobState::Succeeded, false, grp, made));
    }
    let row = match held_row(c, job_id, agent_id, token, now) {
        Ok(r) => r,
        Err(Error::LeaseLost(why)) => {
            return match redelivered(c, d, outcome)? {
                Some(state) => Ok((state, true, String::new(), true)),
                None => Err(Error::LeaseLost(why)),
            };
        }
        Err(e) => return Err(e),
    };
    let spent = row.attempts_spent + 1;
    let next = next_after(d, &row, spent, now)?;
    let end = AttemptEnd {
        token,
        outcome: outcome.as_str(),
        error,
        result: d.result_json.as_deref(),
        started_after_ms: d.started_after_ms,
    };
    let job = JobEnd {
        spent,
        error,
        result: d.result_json.as_deref(),
    };
    set_next(c, job_id, end, next, job, now)?;
    let made = row.schedule_id.is_some() || row.run_id.is_some();
    Ok((next.state(), false, row.grp, made))
}

/// The common case of a success; the job's group and whether a schedule
/// or pipeline made it, if the lease was held, `None` (and nothing
/// written) otherwise.
///
/// The job's update carries the checks of `held_row` (current token,
/// holder, deadline not passed) and runs first; the attempt is ended only
/// when it matched. When it matches nothing, the full path of
/// [`complete_in`] says why (or recognises a redelivery).
fn succeed_held(c: &Connection, d: &Completed, now: i64) -> Result<Option<(String, bool)>> {
    let held = rows::first(
        c,
        "UPDATE jobs SET state = 'succeeded', attempts_spent = attempts_spent + 1, not_before = ?1,
           finished_at = ?1, updated_at = ?1, lease_agent = NULL, lease_token = NULL,
           lease_expires_at = NULL, error = NULL, result = COALESCE(?3, result)
         WHERE id = ?4 AND state = 'running' AND lease_token = ?5 AND lease_agent = ?6
           AND lease_expires_at > ?1
         RETURNING grp, (followup = 1 OR schedule_id IS NOT NULL OR run_id IS NOT NULL)",
        params![
            now,
            d.error.as_deref(),
            d.result_json,
            d.job_id,
            d.token,
            d.agent_id
        ],
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?)),
    )?;
    if held.is_some() {
        rows::run(
            c,
            "UPDATE attempts SET ended_at = ?1, outcome = 'succeeded', error = ?2, result = COALESCE(?3, result),
               running_at = COALESCE(running_at, MIN(started_at + ?6, ?1))
             WHERE job_id = ?4 AND token = ?5",
            params![
                now,
                d.error.as_deref(),
                d.result_json,
                d.job_id,
                d.token,
                d.started_after_ms
            ],
        )?;
    }
    Ok(held)
}

/// Whether a completion whose lease is lost is a redelivery (from the
/// outbox) of one already recorded: same holder, same outcome. If so, the
/// job's current state.
fn redelivered(c: &Connection, d: &Completed, outcome: AttemptOutcome) -> Result<Option<JobState>> {
    let prior = rows::first(
        c,
        "SELECT agent_id, outcome FROM attempts WHERE job_id = ?1 AND token = ?2",
        params![d.job_id, d.token],
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)),
    )?;
    let Some((holder, Some(o))) = prior else {
        return Ok(None);
    };
    if holder != d.agent_id || o != outcome.as_str() {
        return Ok(None);
    }
    let state = rows::first(c, "SELECT state FROM jobs WHERE id = ?1", [d.job_id], |r| {
        r.get::<_, String>(0)
    })?
    .ok_or(Error::NotFound(d.job_id))?;
    let state = JobState::parse(&state).ok_or_else(|| Error::Corrupt("jobs.state".into()))?;
    Ok(Some(state))
}

/// Release inside a write transaction (see [`LeaseStore::release`]).
fn release_in(
    c: &Connection,
    job_id: JobId,
    agent_id: &str,
    token: FencingToken,
    reason: &str,
    now: i64,
) -> Result<(JobState, String)> {
    let row = held_row(c, job_id, agent_id, token, now)?;
    let reason = if reason.is_empty() {
        "released by agent"
    } else {
        reason
    };
    let end = AttemptEnd {
        token,
        outcome: "released",
        error: Some(reason),
        result: None,
        started_after_ms: None,
    };
    let next = if row.cancel_requested {
        Next::Cancelled
    } else {
        Next::Queued { not_before: now }
    };
    let job = JobEnd {
        spent: row.attempts_spent,
        error: None,
        result: None,
    };
    set_next(c, job_id, end, next, job, now)?;
    Ok((next.state(), row.grp))
}

/// The job row, if `agent_id` holds it with `token` and the lease has not run out.
fn held_row(
    c: &Connection,
    job_id: JobId,
    agent_id: &str,
    token: FencingToken,
    now: i64,
) -> Result<JobRow> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1");
    let row = rows::first(c, &sql, [job_id], job_row)?.ok_or(Error::NotFound(job_id))?;
    let current = row.state()? == JobState::Running
        && row.lease_token == Some(token)
        && row.lease_agent.as_deref() == Some(agent_id);
    if !current {
        // Someone else's lease is 403 whatever the token; the caller's own
        // earlier (stale) lease is 409 lease_lost.
        let token_holder = rows::first(
            c,
            "SELECT agent_id FROM attempts WHERE job_id = ?1 AND token = ?2",
            params![job_id, token],
            |r| r.get::<_, String>(0),
        )?;
        let held_before = match &token_holder {
            Some(holder) => holder == agent_id,
            None => {
                rows::first(
                    c,
                    "SELECT COUNT(*) FROM attempts WHERE job_id = ?1 AND agent_id = ?2",
                    params![job_id, agent_id],
                    |r| r.get::<_, i64>(0),
                )?
                .unwrap_or(0)
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

/// How an attempt ended; written with the job's next state.
struct AttemptEnd<'a> {
    token: FencingToken,
    outcome: &'a str,
    error: Option<&'a str>,
    result: Option<&'a str>,
    /// The agent's start delay, when its completion reported one.
    started_after_ms: Option<i64>,
}

/// What the job keeps of an ended attempt.
struct JobEnd<'a> {
    /// Attempts spent, this one included when it counts.
    spent: i64,
    error: Option<&'a str>,
    result: Option<&'a str>,
}

/// End the attempt and move the job to `next`.
fn set_next(
    c: &Connection,
    job_id: JobId,
    end: AttemptEnd<'_>,
    next: Next,
    job: JobEnd<'_>,
    now: i64,
) -> Result<()> {
    let (state, not_before, finished) = match next {
        Next::Queued { not_before } => ("queued", not_before, None),
        other => (other.state().as_str(), now, Some(now)),
    };
    rows::run(
        c,
        "UPDATE attempts SET ended_at = ?1, outcome = ?2, error = ?3, result = COALESCE(?4, result),
         running_at = COALESCE(running_at, MIN(started_at + ?7, ?1))
         WHERE job_id = ?5 AND token = ?6",
        params![
            now,
            end.outcome,
            end.error,
            end.result,
            job_id,
            end.token,
            end.started_after_ms
        ],
    )?;
    rows::run(
        c,
        "UPDATE jobs SET state = ?1, attempts_spent = ?2, not_before = ?3, finished_at = ?4, updated_at = ?5,
         lease_agent = NULL, lease_token = NULL, lease_expires_at = NULL,
         error = CASE WHEN ?1 = 'succeeded' THEN NULL ELSE COALESCE(?6, error) END,
         result = COALESCE(?7, result) WHERE id = ?8",
        params![
            state, job.spent, not_before, finished, now, job.error, job.result, job_id
        ],
    )?;
    Ok(())
}

/// End every lease past its deadline. First the earliest deadline (one
/// indexed read), which also sets `bound`; the overdue rows only when one
/// is due.
fn expire_in(c: &Connection, bound: &LeaseBound, now: i64) -> Result<Expired> {
    let earliest = rows::first(
        c,
        "SELECT MIN(lease_expires_at) FROM jobs INDEXED BY jobs_lease WHERE state = 'running'",
        [],
        |r| r.get::<_, Option<i64>>(0),
    )?
    .flatten();
    if earliest.is_none_or(|d| d > now) {
        bound.looked(earliest);
        return Ok(Expired::default());
    }
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs INDEXED BY jobs_lease
         WHERE state = 'running' AND lease_expires_at <= ?1 ORDER BY lease_expires_at"
    );
    let due = rows::all(c, &sql, [now], job_row)?;
    let mut out = Expired::default();
    for row in due {
        let token = row.lease_token.unwrap_or_default();
        let agent = row.lease_agent.clone().unwrap_or_default();
        let error = format!("lease of agent {agent} expired (token {token})");
        let next = end_lost_lease(c, &row, token, AttemptOutcome::LeaseExpired, &error, now)?;
        if matches!(next, Next::Queued { .. }) && !out.woken.contains(&row.grp) {
            out.woken.push(row.grp.clone());
        }
        out.leases.push((row.id, token, agent));
    }
    Ok(out)
}

/// Abandon inside a write transaction (see [`LeaseStore::abandon`]). No
/// refusal: a lease that is not the caller's current one is answered `None`.
fn abandon_in(c: &Connection, agent_id: &str, leases: &[LeaseRef], now: i64) -> Result<Abandoned> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1 AND state = 'running'
           AND lease_token = ?2 AND lease_agent = ?3 AND lease_expires_at > ?4"
    );
    let mut out = Abandoned::default();
    for lease in leases {
        let row = rows::first(
            c,
            &sql,
            params![lease.job_id, lease.token, agent_id, now],
            job_row,
        )?;
        let Some(row) = row else {
            out.results.push((*lease, None));
            continue;
        };
        let error = format!(
            "agent {agent_id} restarted; its previous run held this lease (token {})",
            lease.token
        );
        let next = end_lost_lease(
            c,
            &row,
            lease.token,
            AttemptOutcome::AgentRestarted,
            &error,
            now,
        )?;
        if matches!(next, Next::Queued { .. }) && !out.woken.contains(&row.grp) {
            out.woken.push(row.grp.clone());
        }
        out.results.push((*lease, Some(next.state())));
    }
    Ok(out)
}

/// End a running attempt whose agent will not report it (its lease expired,
/// or its agent restarted): an attempt is spent with the retry class
/// `lease_expired`, and the job goes on as the policy says.
fn end_lost_lease(
    c: &Connection,
    row: &JobRow,
    token: FencingToken,
    outcome: AttemptOutcome,
    error: &str,
    now: i64,
) -> Result<Next> {
    let (next, spent, final_error) = after_lost_lease(row, error, now)?;
    let end = AttemptEnd {
        token,
        outcome: outcome.as_str(),
        error: Some(error),
        result: None,
        started_after_ms: None,
    };
    let job = JobEnd {
        spent,
        error: Some(&final_error),
        result: None,
    };
    set_next(c, row.id, end, next, job, now)?;
    Ok(next)
}

#[cfg(test)]
mod tests;
