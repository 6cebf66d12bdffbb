//! The grant (lease lifecycle point 1) in SQLite: which queued jobs an
//! agent gets, and their leases taken, inside the group-commit writer's
//! transaction.
//!
//! An agent of one group (the common case) gets its jobs in ONE call to
//! sqlx's SQLite thread ([`take_from_group`]): the attempt rows are inserted
//! straight from the ready query, and the jobs they name are leased by the
//! rowid range that insert just wrote, returning the rows. Several groups
//! take two calls: the best `max` of each group's ready query, then the
//! lease of the chosen ones ([`ready_rows`], [`take_leases`]). Each call is
//! a channel message and a thread wake-up each way, on the path from a
//! submit to the agent's start (ARCHITECTURE "Performance paths").

use std::sync::LazyLock;

use sqlx::sqlite::SqliteConnection;

use super::{LeaseBound, expire_in};
use crate::store::lease::{Expired, Granted, OwnedGrant, grant_of};
use crate::store::rows::{JOB_COLUMNS, JobRow};
use crate::store::{Error, Result};
use baton_proto::JobId;

/// Grant inside a write transaction (see [`LeaseStore::grant`]). The look
/// for overdue leases is skipped while `bound` says none can be due.
pub(super) async fn grant_in(
    c: &mut SqliteConnection,
    bound: &LeaseBound,
    req: &OwnedGrant,
    now: i64,
) -> Result<Granted> {
    let expired = if bound.may_be_due(now) {
        expire_in(c, bound, now).await?
    } else {
        Expired::default()
    };
    let mut out = Granted {
        expired: expired.leases.len() as u64,
        woken: expired.woken,
        ..Granted::default()
    };
    if req.max == 0 {
        return Ok(out);
    }
    let filter = Filter {
        kinds: serde_json::to_string(&req.kinds).unwrap_or_default(),
        conns: serde_json::to_string(&req.connections).unwrap_or_default(),
        stores: serde_json::to_string(&req.stores).unwrap_or_default(),
    };
    let rows = match one_group(&req.groups) {
        Some(group) => take_from_group(c, req, &filter, group, now).await?,
        None => {
            let rows = ready_rows(c, req, &filter, now).await?;
            if !rows.is_empty() {
                take_leases(c, &req.agent_id, &rows, now).await?;
            }
            rows
        }
    };
    // Lowered after the leases are written but inside the operation: only
    // the writer's operations read the bound, one at a time, and a failure
    // from here on rolls the batch back, which forgets it.
    if let Some(ttl) = rows.iter().map(|r| r.lease_ttl_ms).min() {
        bound.lower(now.saturating_add(ttl));
    }
    for row in rows {
        out.ready_at.push(row.not_before);
        out.grants.push(grant_of(row)?);
    }
    if out.grants.is_empty() {
        out.next_ready_at = next_ready_at(c, req, &filter, now).await?;
    }
    Ok(out)
}

/// The kinds, connections and stores an agent can run, as JSON arrays for
/// `json_each`.
struct Filter {
    kinds: String,
    conns: String,
    stores: String,
}

/// Which queued jobs the agent gets: the best `max` by (priority DESC, id)
/// over its groups; none when the agent is drained (checked in the same
/// statement: no round trip of its own).
async fn ready_rows(
    c: &mut SqliteConnection,
    req: &OwnedGrant,
    filter: &Filter,
    now: i64,
) -> Result<Vec<JobRow>> {
    // One query per group: each walks the `jobs_ready` index in
    // (priority DESC, id) order and stops at `max` — no scan and sort of
    // every queued job. The best `max` of the union win.
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE {READY}");
    let mut rows: Vec<JobRow> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for g in &req.groups {
        if seen.contains(&g.as_str()) {
            continue;
        }
        seen.push(g);
        let mut found = with_ready_params(c, &sql, req, filter, g, now).await?;
        rows.append(&mut found);
    }
    if seen.len() > 1 {
        rows.sort_by_key(|r| (std::cmp::Reverse(r.priority), r.id));
        rows.truncate(req.max as usize);
    }
    Ok(rows)
}

/// Lease every chosen job to the agent in one round trip: token =
/// last_token + 1 (SQLite evaluates every SET expression on the old row),
/// attempt N recorded.
async fn take_leases(
    c: &mut SqliteConnection,
    agent_id: &str,
    rows: &[JobRow],
    now: i64,
) -> Result<()> {
    let ids: Vec<JobId> = rows.iter().map(|r| r.id).collect();
    let ids = serde_json::to_string(&ids).map_err(|e| Error::Corrupt(e.to_string()))?;
    sqlx::query(
        "UPDATE jobs SET state = 'running', last_token = last_token + 1, lease_token = last_token + 1,
         lease_agent = ?1, lease_expires_at = ?2 + lease_ttl_ms, grants = grants + 1, updated_at = ?2
         WHERE id IN (SELECT value FROM json_each(?3)) AND state = 'queued';
         INSERT INTO attempts (job_id, number, agent_id, token, started_at)
         SELECT id, grants, ?1, last_token, ?2 FROM jobs
         WHERE id IN (SELECT value FROM json_each(?3)) AND state = 'running' AND lease_agent = ?1",
    )
    .bind(agent_id)
    .bind(now)
    .bind(ids)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// When the agent's next queued job becomes ready, if one is waiting for
/// its `not_before`.
async fn next_ready_at(
    c: &mut SqliteConnection,
    req: &OwnedGrant,
    filter: &Filter,
    now: i64,
) -> Result<Option<i64>> {
    let groups = serde_json::to_string(&req.groups).unwrap_or_default();
    Ok(sqlx::query_scalar(
        "SELECT MIN(not_before) FROM jobs
         WHERE state = 'queued' AND not_before > ?1
           AND grp IN (SELECT value FROM json_each(?2))
           AND kind IN (SELECT value FROM json_each(?3))
           AND (connection IS NULL OR connection IN (SELECT value FROM json_each(?4)))
           AND (store IS NULL OR store IN (SELECT value FROM json_each(?6)))
           AND (pin_agent IS NULL OR pin_agent = ?5)",
    )
    .bind(now)
    .bind(&groups)
    .bind(&filter.kinds)
    .bind(&filter.conns)
    .bind(&req.agent_id)
    .bind(&filter.stores)
    .fetch_one(&mut *c)
    .await?)
}

/// The jobs one group's ready query picks, best first (`?1` now, `?2` the
/// group, `?3` kinds, `?4` connections, `?5` max, `?6` the agent, `?7`
/// stores): each walks the `jobs_ready` index in (priority DESC, id) order
/// and stops at `max`. None when the agent is drained (checked here: no
/// round trip of its own).
const READY: &str = "state = 'queued' AND grp = ?2 AND not_before <= ?1
    AND kind IN (SELECT value FROM json_each(?3))
    AND (connection IS NULL OR connection IN (SELECT value FROM json_each(?4)))
    AND (store IS NULL OR store IN (SELECT value FROM json_each(?7)))
    AND (pin_agent IS NULL OR pin_agent = ?6)
    AND NOT EXISTS (SELECT 1 FROM agents WHERE id = ?6 AND drained_at IS NOT NULL)
    ORDER BY priority DESC, id LIMIT +?5";

/// The agent's only group, when it names one (repeats allowed).
fn one_group(groups: &[String]) -> Option<&str> {
    let (first, rest) = groups.split_first()?;
    rest.iter().all(|g| g == first).then_some(first.as_str())
}

/// Lease the best `max` ready jobs of one group in one call: attempt N is
/// inserted for each job the ready query picks (number `grants + 1`, token
/// `last_token + 1`), then the jobs named by the attempt rows that insert
/// wrote — the rowids `last_insert_rowid() - changes()` exclusive to
/// `last_insert_rowid()`, consecutive because SQLite gives each new row the
/// largest rowid plus one — are moved to `running` with that token.
/// Returns the rows with `grants` and `last_token` as they were before the
/// grant (what [`grant_of`] reads), best first.
async fn take_from_group(
    c: &mut SqliteConnection,
    req: &OwnedGrant,
    filter: &Filter,
    group: &str,
    now: i64,
) -> Result<Vec<JobRow>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        let before: Vec<&str> = JOB_COLUMNS
            .split(", ")
            .map(|col| match col {
                "grants" => "grants - 1 AS grants",
                "last_token" => "last_token - 1 AS last_token",
                other => other,
            })
            .collect();
        format!(
            "INSERT INTO attempts (job_id, number, agent_id, token, started_at)
             SELECT id, grants + 1, ?6, last_token + 1, ?1 FROM jobs WHERE {READY};
             UPDATE jobs SET state = 'running', last_token = last_token + 1,
               lease_token = last_token + 1, lease_agent = ?6,
               lease_expires_at = ?1 + lease_ttl_ms, grants = grants + 1, updated_at = ?1
             WHERE id IN (SELECT job_id FROM attempts
                          WHERE rowid > last_insert_rowid() - changes()
                            AND rowid <= last_insert_rowid())
               AND state = 'queued'
             RETURNING {}",
            before.join(", ")
        )
    });
    let mut rows = with_ready_params(c, &SQL, req, filter, group, now).await?;
    rows.sort_by_key(|r| (std::cmp::Reverse(r.priority), r.id));
    Ok(rows)
}

/// Run `sql`, whose ready query ([`READY`]) takes the parameters `?1` to
/// `?7`, for one group; the job rows it returns.
async fn with_ready_params(
    c: &mut SqliteConnection,
    sql: &str,
    req: &OwnedGrant,
    filter: &Filter,
    group: &str,
    now: i64,
) -> Result<Vec<JobRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(group)
        .bind(&filter.kinds)
        .bind(&filter.conns)
        .bind(i64::from(req.max))
        .bind(&req.agent_id)
        .bind(&filter.stores)
        .fetch_all(&mut *c)
        .await?)
}
