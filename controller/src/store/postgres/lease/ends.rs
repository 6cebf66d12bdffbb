//! The ends of a lease its holder reports: complete and release; and why a
//! call keyed by a lease is refused ([`why_not_held`]).

use std::collections::{HashMap, HashSet};

use baton_proto::{FencingToken, JobId, JobState};
use futures_util::future::BoxFuture;
use sqlx::postgres::PgConnection;

use super::held_row;
use crate::store::lease::{Completed, Next, next_after, outcome_of};
use crate::store::{Error, Result};

/// A success to record in a group ([`super::super::group`]): the
/// completion and the time it arrived.
pub(crate) type Succeed = (std::sync::Arc<Completed>, i64);

/// A success's answer when the lease was held: the job's group, and
/// whether a schedule or pipeline made the job.
pub(crate) type Succeeded = Option<(String, bool)>;

/// The common case of successes, many in one statement (a grouped batch,
/// inside its transaction): for each, the job's group and whether a
/// schedule or pipeline made it if the caller held the lease, `None`
/// (nothing written for it) otherwise. The job row's
/// update carries every check of [`held_row`]; the attempt is ended only
/// through it. A job named twice in one batch (a completion redelivered
/// while the first was queued) is written once, by its first entry; the
/// others answer `None` and take the transaction path, which finds it
/// recorded.
pub(crate) fn succeed_batch<'c>(
    c: &'c mut PgConnection,
    items: &'c [Succeed],
) -> BoxFuture<'c, std::result::Result<Vec<Succeeded>, sqlx::Error>> {
    Box::pin(async move {
        let mut seen = HashSet::new();
        let mut cols = SucceedColumns::default();
        let included: Vec<bool> = items
            .iter()
            .map(|(d, now)| {
                let first = matches!(d.completion, baton_proto::Completion::Succeeded)
                    && seen.insert(d.job_id);
                if first {
                    cols.push(d, *now);
                }
                first
            })
            .collect();
        let rows: Vec<(JobId, FencingToken, String, bool)> = sqlx::query_as(
            "WITH i AS (
               SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[],
                   $5::text[], $6::bigint[], $7::bigint[]) AS i(id, token, agent, result, error, now, after)),
             j AS (
               UPDATE jobs SET state = 'succeeded', attempts_spent = jobs.attempts_spent + 1,
                 not_before = i.now, finished_at = i.now, updated_at = i.now,
                 lease_agent = NULL, lease_token = NULL, lease_expires_at = NULL, error = NULL,
                 result = COALESCE(i.result, jobs.result)
               FROM i
               WHERE jobs.id = i.id AND jobs.state = 'running' AND jobs.lease_token = i.token
                 AND jobs.lease_agent = i.agent AND jobs.lease_expires_at > i.now
               RETURNING jobs.id, jobs.grp, i.token, i.result, i.error, i.now, i.after,
                 (jobs.followup OR jobs.schedule_id IS NOT NULL OR jobs.run_id IS NOT NULL) AS made),
             a AS (
               UPDATE attempts SET ended_at = j.now, outcome = 'succeeded', error = j.error,
                 result = COALESCE(j.result, attempts.result),
                 running_at = CASE WHEN j.after IS NULL THEN attempts.running_at
                   ELSE COALESCE(attempts.running_at, LEAST(attempts.started_at + j.after, j.now)) END
               FROM j WHERE attempts.job_id = j.id AND attempts.token = j.token)
             SELECT id, token, grp, made FROM j",
        )
        .bind(&cols.id)
        .bind(&cols.token)
        .bind(&cols.agent)
        .bind(&cols.result)
        .bind(&cols.error)
        .bind(&cols.now)
        .bind(&cols.started_after)
        .fetch_all(&mut *c)
        .await?;
        let mut done: HashMap<JobId, (FencingToken, String, bool)> = rows
            .into_iter()
            .map(|(id, token, grp, made)| (id, (token, grp, made)))
            .collect();
        Ok(items
            .iter()
            .zip(included)
            .map(|((d, _), included)| {
                if !included {
                    return None;
                }
                let (token, grp, made) = done.remove(&d.job_id)?;
                (token == d.token).then_some((grp, made))
            })
            .collect())
    })
}

/// The successes of a batch, one array per column.
#[derive(Default)]
struct SucceedColumns<'a> {
    id: Vec<JobId>,
    token: Vec<FencingToken>,
    agent: Vec<&'a str>,
    result: Vec<Option<&'a str>>,
    error: Vec<Option<&'a str>>,
    now: Vec<i64>,
    started_after: Vec<Option<i64>>,
}

impl<'a> SucceedColumns<'a> {
    fn push(&mut self, d: &'a Completed, now: i64) {
        self.id.push(d.job_id);
        self.token.push(d.token);
        self.agent.push(&d.agent_id);
        self.result.push(d.result_json.as_deref());
        self.error.push(d.error.as_deref());
        self.now.push(now);
        self.started_after.push(d.started_after_ms);
    }
}

/// Completion inside a transaction, the job row locked (see
/// [`LeaseStore::complete`](crate::store::lease::LeaseStore::complete)).
pub(super) async fn complete_in(
    c: &mut PgConnection,
    d: &Completed,
    now: i64,
) -> Result<(JobState, bool, String, bool)> {
    let outcome = outcome_of(d.completion);
    let row = match held_row(c, d.job_id, &d.agent_id, d.token, now).await {
        Ok(r) => r,
        Err(Error::LeaseLost(why)) => {
            return match redelivered(c, d, outcome.as_str()).await? {
                Some(state) => Ok((state, true, String::new(), true)),
                None => Err(Error::LeaseLost(why)),
            };
        }
        Err(e) => return Err(e),
    };
    let spent = row.attempts_spent + 1;
    let next = next_after(d, &row, spent, now)?;
    let end = AttemptEnd {
        token: d.token,
        outcome: outcome.as_str(),
        error: d.error.as_deref(),
        result: d.result_json.as_deref(),
        started_after_ms: d.started_after_ms,
    };
    let job = JobEnd {
        spent,
        error: d.error.as_deref(),
        result: d.result_json.as_deref(),
    };
    set_next(c, d.job_id, &end, next, &job, now).await?;
    let made = row.schedule_id.is_some() || row.run_id.is_some();
    Ok((next.state(), false, row.grp, made))
}

/// Whether a completion whose lease is lost is a redelivery (from the
/// outbox) of one already recorded: same holder, same outcome. If so, the
/// job's current state.
async fn redelivered(
    c: &mut PgConnection,
    d: &Completed,
    outcome: &str,
) -> Result<Option<JobState>> {
    let prior: Option<(String, Option<String>, String)> = sqlx::query_as(
        "SELECT a.agent_id, a.outcome, j.state FROM attempts a JOIN jobs j ON j.id = a.job_id
         WHERE a.job_id = $1 AND a.token = $2",
    )
    .bind(d.job_id)
    .bind(d.token)
    .fetch_optional(&mut *c)
    .await?;
    match prior {
        Some((holder, Some(o), state)) if holder == d.agent_id && o == outcome => {
            let state =
                JobState::parse(&state).ok_or_else(|| Error::Corrupt("jobs.state".into()))?;
            Ok(Some(state))
        }
        _ => Ok(None),
    }
}

/// Release inside a transaction, the job row locked (see
/// [`LeaseStore::release`](crate::store::lease::LeaseStore::release)).
pub(super) async fn release_in(
    c: &mut PgConnection,
    job_id: JobId,
    agent_id: &str,
    token: FencingToken,
    reason: &str,
    now: i64,
) -> Result<(JobState, String)> {
    let row = held_row(c, job_id, agent_id, token, now).await?;
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
    set_next(c, job_id, &end, next, &job, now).await?;
    Ok((next.state(), row.grp))
}

/// Why `agent_id` does not hold job `job_id` with `token` (a read; the
/// call that asked wrote nothing): someone else's lease is 403 whatever
/// the token; the caller's own earlier (stale) or overdue lease is 409
/// lease_lost. A database error is returned as it is.
pub(crate) async fn why_not_held(
    c: &mut PgConnection,
    job_id: JobId,
    agent_id: &str,
    token: FencingToken,
    now: i64,
) -> Error {
    match classify(c, job_id, agent_id, token, now).await {
        Ok(e) | Err(e) => e,
    }
}

async fn classify(
    c: &mut PgConnection,
    job_id: JobId,
    agent_id: &str,
    token: FencingToken,
    now: i64,
) -> Result<Error> {
    type Lease = (String, Option<i64>, Option<String>, Option<i64>);
    let row: Option<Lease> = sqlx::query_as(
        "SELECT state, lease_token, lease_agent, lease_expires_at FROM jobs WHERE id = $1",
    )
    .bind(job_id)
    .fetch_optional(&mut *c)
    .await?;
    let Some((state, lease_token, lease_agent, deadline)) = row else {
        return Ok(Error::NotFound(job_id));
    };
    let current = state == JobState::Running.as_str()
        && lease_token == Some(token)
        && lease_agent.as_deref() == Some(agent_id);
    if current {
        return Ok(Error::LeaseLost(if deadline.is_none_or(|d| d <= now) {
            format!("the lease of job {job_id} has expired")
        } else {
            format!("the lease of job {job_id} changed meanwhile")
        }));
    }
    let held_before: bool = sqlx::query_scalar(
        "SELECT COALESCE(
           (SELECT agent_id = $3 FROM attempts WHERE job_id = $1 AND token = $2),
           EXISTS (SELECT 1 FROM attempts WHERE job_id = $1 AND agent_id = $3))",
    )
    .bind(job_id)
    .bind(token)
    .bind(agent_id)
    .fetch_one(&mut *c)
    .await?;
    Ok(if held_before {
        Error::LeaseLost(format!(
            "token {token} is not the current lease of job {job_id}"
        ))
    } else {
        Error::Forbidden(format!("agent {agent_id} does not hold job {job_id}"))
    })
}

/// How an attempt ended; written with the job's next state.
pub(super) struct AttemptEnd<'a> {
    pub token: FencingToken,
    pub outcome: &'a str,
    pub error: Option<&'a str>,
    pub result: Option<&'a str>,
    /// The agent's start delay, when its completion reported one.
    pub started_after_ms: Option<i64>,
}

/// What the job keeps of the attempt: attempts spent, its error, its result.
pub(super) struct JobEnd<'a> {
    pub spent: i64,
    pub error: Option<&'a str>,
    pub result: Option<&'a str>,
}

/// End the attempt and move the job to `next`, in one statement keyed by
/// the lease token (the caller holds the row's lock; a lease already ended
/// is [`Error::LeaseLost`] and nothing is written).
pub(super) async fn set_next(
    c: &mut PgConnection,
    job_id: JobId,
    end: &AttemptEnd<'_>,
    next: Next,
    job: &JobEnd<'_>,
    now: i64,
) -> Result<()> {
    let (state, not_before, finished) = match next {
        Next::Queued { not_before } => ("queued", not_before, None),
        other => (other.state().as_str(), now, Some(now)),
    };
    let ended: i64 = sqlx::query_scalar(
        "WITH j AS (
           UPDATE jobs SET state = $1, attempts_spent = $2, not_before = $3, finished_at = $4,
             updated_at = $5, lease_agent = NULL, lease_token = NULL, lease_expires_at = NULL,
             error = CASE WHEN $1 = 'succeeded' THEN NULL ELSE COALESCE($6, error) END,
             result = COALESCE($7, result)
           WHERE id = $8 AND state = 'running' AND lease_token = $12
           RETURNING id),
         a AS (
           UPDATE attempts SET ended_at = $5, outcome = $9, error = $10,
             result = COALESCE($11, attempts.result),
             running_at = CASE WHEN $13::bigint IS NULL THEN attempts.running_at
               ELSE COALESCE(attempts.running_at, LEAST(attempts.started_at + $13, $5)) END
           FROM j WHERE attempts.job_id = j.id AND attempts.token = $12)
         SELECT COUNT(*) FROM j",
    )
    .bind(state)
    .bind(job.spent)
    .bind(not_before)
    .bind(finished)
    .bind(now)
    .bind(job.error)
    .bind(job.result)
    .bind(job_id)
    .bind(end.outcome)
    .bind(end.error)
    .bind(end.result)
    .bind(end.token)
    .bind(end.started_after_ms)
    .fetch_one(&mut *c)
    .await?;
    if ended != 1 {
        return Err(Error::LeaseLost(format!(
            "token {} of job {job_id} ended meanwhile",
            end.token
        )));
    }
    Ok(())
}
