//! Leases that end without their holder's report: expiry (every replica's
//! reaper, and each grant) and a restarted agent's abandon.

use baton_proto::{AttemptOutcome, FencingToken, LeaseRef};
use sqlx::postgres::PgConnection;

use super::ends::{AttemptEnd, JobEnd, set_next};
use crate::store::Result;
use crate::store::lease::{Abandoned, Expired, Next, after_lost_lease};
use crate::store::rows::{JOB_COLUMNS, JobRow};

/// End every lease past its deadline that no other transaction holds, in
/// one transaction. A row locked elsewhere (a completion, a heartbeat, the
/// reaper of another replica) is skipped: whoever holds it decides, and
/// if the lease is still overdue afterwards the next look ends it.
pub(super) async fn expire_in(c: &mut PgConnection, now: i64) -> Result<Expired> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'running' AND lease_expires_at <= $1
         ORDER BY lease_expires_at FOR UPDATE SKIP LOCKED"
    );
    let rows: Vec<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .fetch_all(&mut *c)
        .await?;
    let mut out = Expired::default();
    for row in rows {
        let token = row.lease_token.unwrap_or_default();
        let agent = row.lease_agent.clone().unwrap_or_default();
        let error = format!("lease of agent {agent} expired (token {token})");
        let next =
            end_lost_lease(c, &row, token, AttemptOutcome::LeaseExpired, &error, now).await?;
        if matches!(next, Next::Queued { .. }) && !out.woken.contains(&row.grp) {
            out.woken.push(row.grp.clone());
        }
        out.leases.push((row.id, token, agent));
    }
    Ok(out)
}

/// Abandon inside a transaction (see
/// [`LeaseStore::abandon`](crate::store::lease::LeaseStore::abandon)). No
/// refusal: a lease that is not the caller's current one is answered `None`.
pub(super) async fn abandon_in(
    c: &mut PgConnection,
    agent_id: &str,
    leases: &[LeaseRef],
    now: i64,
) -> Result<Abandoned> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND state = 'running'
           AND lease_token = $2 AND lease_agent = $3 AND lease_expires_at > $4 FOR UPDATE"
    );
    let mut out = Abandoned::default();
    for lease in leases {
        let row: Option<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(lease.job_id)
            .bind(lease.token)
            .bind(agent_id)
            .bind(now)
            .fetch_optional(&mut *c)
            .await?;
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
        )
        .await?;
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
async fn end_lost_lease(
    c: &mut PgConnection,
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
    set_next(c, row.id, &end, next, &job, now).await?;
    Ok(next)
}
