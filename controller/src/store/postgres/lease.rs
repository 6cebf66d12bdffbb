//! The lease contract (ARCHITECTURE.md "The lease lifecycle", points 1–6)
//! on PostgreSQL, with several replicas running every path at once
//! ([`crate::store::lease`] says what each call must do).
//!
//! - A grant is one statement: the candidates are picked with `FOR UPDATE
//!   SKIP LOCKED` (a job another replica is granting is skipped, never
//!   waited for nor granted twice), leased with `last_token + 1` from the
//!   same row and recorded as attempt N.
//! - Heartbeat and a success are one conditional `UPDATE` keyed by (job,
//!   holder, token, deadline not passed); other ends lock the job row
//!   (`SELECT … FOR UPDATE`) and decide from what they read.
//! - Expiry and abandon lock the rows they end (expiry with `SKIP LOCKED`:
//!   a row a completion holds is left to that completion) and every end
//!   is written keyed by the lease token, so one lease ends once.
//! - When a call matches nothing, a read-only look says why (lease lost,
//!   forbidden, not found, or the redelivery of a recorded completion).
//!
//! [`ends`]: heartbeat, complete, release; [`expiry`]: expiry and abandon.

mod ends;
mod expiry;

pub(super) use ends::{Succeed, Succeeded, succeed_batch};

use async_trait::async_trait;
use baton_proto::{CompleteRequest, FencingToken, HeartbeatRequest, JobId, JobState, LeaseRef};
use sqlx::postgres::PgConnection;
use std::sync::Arc;

use super::PgStore;
use super::group::Answer;
use crate::store::Error;
use crate::store::Result;
use crate::store::jobs::{NewJob, Submitted};
use crate::store::lease::{
    Abandoned, Completed, Expired, GrantRequest, Granted, LeaseStore, OwnedGrant, grant_of, ms_i64,
};
use crate::store::rows::{JOB_COLUMNS, JobRow};

#[async_trait]
impl LeaseStore for PgStore {
    /// Grant up to `req.max` queued jobs to an agent (point 1). Overdue
    /// leases are expired first (point 5).
    async fn grant(&self, req: &GrantRequest<'_>, now: i64) -> Result<Granted> {
        let expired = self.expire_leases(now).await?;
        let mut out = Granted {
            expired: expired.leases.len() as u64,
            woken: expired.woken,
            ..Granted::default()
        };
        if req.max == 0 {
            return Ok(out);
        }
        let filter = Filter::of(req);
        // One statement, its own transaction.
        let started = std::time::Instant::now();
        let rows = self.noted(grant_rows(&self.pool, req, &filter, now).await)?;
        crate::telemetry::store_transaction(started.elapsed());
        for row in rows {
            out.ready_at.push(row.not_before);
            out.grants.push(grant_of(row)?);
        }
        if out.grants.is_empty() {
            out.next_ready_at = next_ready_at(&self.pool, req, &filter, now).await?;
        }
        Ok(out)
    }

    /// Submit and grant in one transaction (one WAL flush at its commit).
    async fn submit_and_grant(
        &self,
        new: NewJob,
        req: &GrantRequest<'_>,
        now: i64,
    ) -> Result<(Submitted, Granted)> {
        let args = Arc::new((new, OwnedGrant::of(req)));
        self.tx(move |c| {
            let args = args.clone();
            Box::pin(async move {
                let (new, owned) = &*args;
                let submitted = super::jobs::submit_in(c, new, now).await?;
                let mut granted = Granted::default();
                if submitted.created && owned.max > 0 {
                    let req = owned.as_req();
                    let filter = Filter::of(&req);
                    for row in grant_rows(&mut *c, &req, &filter, now).await? {
                        granted.ready_at.push(row.not_before);
                        granted.grants.push(grant_of(row)?);
                    }
                }
                Ok((submitted, granted))
            })
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
        let token = req.token;
        let progress = req
            .progress
            .as_ref()
            .and_then(|p| serde_json::to_string(p).ok());
        // One statement, its own transaction.
        let started = std::time::Instant::now();
        let renewed: std::result::Result<Option<(i64, bool)>, sqlx::Error> = sqlx::query_as(
            "WITH j AS (
               UPDATE jobs SET lease_expires_at = $5 + lease_ttl_ms
               WHERE id = $3 AND state = 'running' AND lease_token = $4 AND lease_agent = $6
                 AND lease_expires_at > $5
               RETURNING id, lease_ttl_ms, cancel_requested),
             a AS (
               UPDATE attempts SET progress = COALESCE($1, progress),
                 log_tail = CASE WHEN $2 = '' THEN log_tail ELSE $2 END,
                 running_at = CASE WHEN $7::bigint IS NULL THEN attempts.running_at
                   ELSE COALESCE(attempts.running_at, LEAST(attempts.started_at + $7, $5)) END
               FROM j WHERE attempts.job_id = j.id AND attempts.token = $4)
             SELECT lease_ttl_ms, cancel_requested FROM j",
        )
        .bind(progress)
        .bind(&req.log_tail)
        .bind(job_id)
        .bind(token)
        .bind(now)
        .bind(agent_id)
        .bind(req.started_after_ms.map(ms_i64))
        .fetch_optional(&self.pool)
        .await;
        let renewed = self.noted(renewed.map_err(Error::from))?;
        crate::telemetry::store_transaction(started.elapsed());
        match renewed {
            Some((ttl, cancel)) => Ok((ttl as u64, cancel)),
            None => {
                let mut c = self.pool.acquire().await?;
                Err(ends::why_not_held(&mut c, job_id, agent_id, token, now).await)
            }
        }
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
        let done = std::sync::Arc::new(Completed {
            job_id,
            agent_id: agent_id.to_owned(),
            token: req.token,
            completion: req.completion,
            result_json: serde_json::to_string(&req.result).ok(),
            error: req.error.clone(),
            started_after_ms: req.started_after_ms.map(ms_i64),
            unit: rand::random(),
        });
        // The common case shares a statement and a commit with the other
        // successes arriving now; anything else (not held, a failure, a
        // batch that did not commit) takes the transaction, which also
        // finds a success already recorded.
        if matches!(req.completion, baton_proto::Completion::Succeeded)
            && let Answer::Done(Some((grp, made))) =
                self.groups.succeed.run((done.clone(), now)).await
        {
            return Ok((JobState::Succeeded, false, grp, made));
        }
        self.tx(move |c| {
            let done = done.clone();
            Box::pin(async move { ends::complete_in(c, &done, now).await })
        })
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
        let args = std::sync::Arc::new((agent_id.to_owned(), reason.to_owned()));
        self.tx(move |c| {
            let args = args.clone();
            Box::pin(async move {
                let (agent_id, reason) = &*args;
                ends::release_in(c, job_id, agent_id, token, reason, now).await
            })
        })
        .await
    }

    /// End every lease past its deadline (point 5). Runs on every replica:
    /// a look first (nothing due is the common case, one round trip), then
    /// one transaction that locks the overdue rows no one else holds.
    async fn expire_leases(&self, now: i64) -> Result<Expired> {
        let due: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE state = 'running' AND lease_expires_at <= $1)",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        if !due {
            return Ok(Expired::default());
        }
        self.tx(move |c| Box::pin(async move { expiry::expire_in(c, now).await }))
            .await
    }

    /// End a restarted agent's leases of its previous run that are still current.
    async fn abandon(&self, agent_id: &str, leases: &[LeaseRef], now: i64) -> Result<Abandoned> {
        let args = std::sync::Arc::new((agent_id.to_owned(), leases.to_vec()));
        self.tx(move |c| {
            let args = args.clone();
            Box::pin(async move {
                let (agent_id, leases) = &*args;
                expiry::abandon_in(c, agent_id, leases, now).await
            })
        })
        .await
    }

    /// Attempts ever ended by their agent's restart report.
    async fn agent_restart_ends(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM attempts WHERE outcome = 'agent_restarted'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// The earliest lease deadline, if any lease is held.
    async fn next_lease_deadline(&self) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT MIN(lease_expires_at) FROM jobs WHERE state = 'running'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn ready_in(&self, groups: &[String], now: i64) -> Result<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM jobs
             WHERE state = 'queued' AND grp = ANY($1) AND not_before <= $2)",
        )
        .bind(groups)
        .bind(now)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn cancelled_holders(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT lease_agent FROM jobs
             WHERE state = 'running' AND cancel_requested AND lease_agent IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn cancelled_leases(&self, agent_id: &str) -> Result<Vec<LeaseRef>> {
        let rows: Vec<(JobId, Option<i64>)> = sqlx::query_as(
            "SELECT id, lease_token FROM jobs
             WHERE state = 'running' AND lease_agent = $1 AND cancel_requested",
        )
        .bind(agent_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(job_id, token)| token.map(|token| LeaseRef { job_id, token }))
            .collect())
    }
}

/// What an agent can take, as arrays for `= ANY`.
struct Filter {
    /// Its groups, each once.
    groups: Vec<String>,
    kinds: Vec<&'static str>,
}

impl Filter {
    fn of(req: &GrantRequest<'_>) -> Filter {
        let mut groups: Vec<String> = Vec::with_capacity(req.groups.len());
        for g in req.groups {
            if !groups.contains(g) {
                groups.push(g.clone());
            }
        }
        Filter {
            groups,
            kinds: req.kinds.iter().map(|k| k.as_str()).collect(),
        }
    }
}

/// The grant statement: picks the agent's best ready jobs (`FOR UPDATE SKIP
/// LOCKED`), leases them with `last_token + 1` and records the attempts.
async fn grant_rows<'c, E>(
    c: E,
    req: &GrantRequest<'_>,
    filter: &Filter,
    now: i64,
) -> Result<Vec<JobRow>>
where
    E: sqlx::Executor<'c, Database = sqlx::Postgres>,
{
    let sql = format!(
        "WITH cand AS (
               SELECT c.* FROM unnest($2::text[]) AS g(grp)
               CROSS JOIN LATERAL (
                 SELECT {JOB_COLUMNS} FROM jobs
                 WHERE state = 'queued' AND jobs.grp = g.grp AND not_before <= $1
                   AND kind = ANY($3) AND (connection IS NULL OR connection = ANY($4))
                   AND (store IS NULL OR store = ANY($7))
                   AND (pin_agent IS NULL OR pin_agent = $6)
                   AND NOT EXISTS (SELECT 1 FROM agents WHERE id = $6 AND drained_at IS NOT NULL)
                 ORDER BY priority DESC, id LIMIT $5
                 FOR UPDATE SKIP LOCKED) c
               ORDER BY c.priority DESC, c.id LIMIT $5),
             up AS (
               UPDATE jobs j SET state = 'running', last_token = j.last_token + 1,
                 lease_token = j.last_token + 1, lease_agent = $6,
                 lease_expires_at = $1 + j.lease_ttl_ms, grants = j.grants + 1, updated_at = $1
               FROM cand WHERE j.id = cand.id
               RETURNING j.id, j.grants, j.last_token),
             att AS (
               INSERT INTO attempts (job_id, number, agent_id, token, started_at)
               SELECT id, grants, $6, last_token, $1 FROM up)
             SELECT * FROM cand ORDER BY priority DESC, id"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(&filter.groups)
        .bind(&filter.kinds)
        .bind(req.connections)
        .bind(i64::from(req.max))
        .bind(req.agent_id)
        .bind(req.stores)
        .fetch_all(c)
        .await?)
}

/// When the agent's next queued job becomes ready, if one is waiting for
/// its `not_before`.
async fn next_ready_at<'c, E>(
    c: E,
    req: &GrantRequest<'_>,
    filter: &Filter,
    now: i64,
) -> Result<Option<i64>>
where
    E: sqlx::Executor<'c, Database = sqlx::Postgres>,
{
    Ok(sqlx::query_scalar(
        "SELECT MIN(not_before) FROM jobs
         WHERE state = 'queued' AND not_before > $1 AND grp = ANY($2)
           AND kind = ANY($3) AND (connection IS NULL OR connection = ANY($4))
           AND (store IS NULL OR store = ANY($6))
           AND (pin_agent IS NULL OR pin_agent = $5)",
    )
    .bind(now)
    .bind(&filter.groups)
    .bind(&filter.kinds)
    .bind(req.connections)
    .bind(req.agent_id)
    .bind(req.stores)
    .fetch_one(c)
    .await?)
}

/// The job row, locked, if `agent_id` holds it with `token` and the lease
/// has not run out; otherwise why not.
async fn held_row(
    c: &mut PgConnection,
    job_id: JobId,
    agent_id: &str,
    token: FencingToken,
    now: i64,
) -> Result<JobRow> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 FOR UPDATE");
    let row: Option<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(job_id)
        .fetch_optional(&mut *c)
        .await?;
    match row {
        Some(row)
            if row.state()? == JobState::Running
                && row.lease_token == Some(token)
                && row.lease_agent.as_deref() == Some(agent_id)
                && row.lease_expires_at.is_some_and(|d| d > now) =>
        {
            Ok(row)
        }
        _ => Err(ends::why_not_held(&mut *c, job_id, agent_id, token, now).await),
    }
}

#[cfg(test)]
mod tests;
