//! The grant (lease lifecycle point 1) in SQLite: which queued jobs an
//! agent gets, and their leases taken, inside the group-commit writer's
//! transaction.
//!
//! An agent of one group (the common case) gets its jobs in two statements
//! ([`take_from_group`]): the attempt rows are inserted straight from the
//! ready query, and the jobs they name are leased by the rowid range that
//! insert just wrote, returning the rows. Several groups: the best `max` of
//! each group's ready query, then the lease of the chosen ones
//! ([`ready_rows`], [`take_leases`]). Everything runs on the group-commit
//! writer's own connection ([`super::super::writer`]).

use std::sync::LazyLock;

use rusqlite::{Connection, params};

use super::super::writer::rows::{self, job_row};
use super::{LeaseBound, expire_in};
use crate::store::lease::{Expired, Granted, OwnedGrant, grant_of};
use crate::store::rows::{JOB_COLUMNS, JobRow};
use crate::store::{Error, Result};
use baton_proto::JobId;

/// Grant inside a write transaction (see [`LeaseStore::grant`]). The look
/// for overdue leases is skipped while `bound` says none can be due.
pub(super) fn grant_in(
    c: &Connection,
    bound: &LeaseBound,
    req: &OwnedGrant,
    now: i64,
) -> Result<Granted> {
    let expired = if bound.may_be_due(now) {
        expire_in(c, bound, now)?
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
        Some(group) => take_from_group(c, req, &filter, group, now)?,
        None => {
            let rows = ready_rows(c, req, &filter, now)?;
            if !rows.is_empty() {
                take_leases(c, &req.agent_id, &rows, now)?;
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
        out.next_ready_at = next_ready_at(c, req, &filter, now)?;
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
/// statement).
fn ready_rows(c: &Connection, req: &OwnedGrant, filter: &Filter, now: i64) -> Result<Vec<JobRow>> {
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
        let mut found = with_ready_params(c, &sql, req, filter, g, now)?;
        rows.append(&mut found);
    }
    if seen.len() > 1 {
        rows.sort_by_key(|r| (std::cmp::Reverse(r.priority), r.id));
        rows.truncate(req.max as usize);
    }
    Ok(rows)
}

/// Lease every chosen job to the agent: token = last_token + 1 (SQLite
/// evaluates every SET expression on the old row), attempt N recorded.
fn take_leases(c: &Connection, agent_id: &str, rows: &[JobRow], now: i64) -> Result<()> {
    let ids: Vec<JobId> = rows.iter().map(|r| r.id).collect();
    let ids = serde_json::to_string(&ids).map_err(|e| Error::Corrupt(e.to_string()))?;
    rows::run(
        c,
        "UPDATE jobs SET state = 'running', last_token = last_token + 1, lease_token = last_token + 1,
         lease_agent = ?1, lease_expires_at = ?2 + lease_ttl_ms, grants = grants + 1, updated_at = ?2
         WHERE id IN (SELECT value FROM json_each(?3)) AND state = 'queued'",
        params![agent_id, now, ids],
    )?;
    rows::run(
        c,
        "INSERT INTO attempts (job_id, number, agent_id, token, started_at)
         SELECT id, grants, ?1, last_token, ?2 FROM jobs
         WHERE id IN (SELECT value FROM json_each(?3)) AND state = 'running' AND lease_agent = ?1",
        params![agent_id, now, ids],
    )?;
    Ok(())
}

/// When the agent's next queued job becomes ready, if one is waiting for
/// its `not_before`.
fn next_ready_at(
    c: &Connection,
    req: &OwnedGrant,
    filter: &Filter,
    now: i64,
) -> Result<Option<i64>> {
    let groups = serde_json::to_string(&req.groups).unwrap_or_default();
    Ok(rows::first(
        c,
        "SELECT MIN(not_before) FROM jobs
         WHERE state = 'queued' AND not_before > ?1
           AND grp IN (SELECT value FROM json_each(?2))
           AND kind IN (SELECT value FROM json_each(?3))
           AND (connection IS NULL OR connection IN (SELECT value FROM json_each(?4)))
           AND (store IS NULL OR store IN (SELECT value FROM json_each(?6)))
           AND (pin_agent IS NULL OR pin_agent = ?5)",
        params![
            now,
            groups,
            filter.kinds,
            filter.conns,
            req.agent_id,
            filter.stores
        ],
        |r| r.get::<_, Option<i64>>(0),
    )?
    .flatten())
}

/// The jobs one group's ready query picks, best first (`?1` now, `?2` the
/// group, `?3` kinds, `?4` connections, `?5` max, `?6` the agent, `?7`
/// stores): each walks the `jobs_ready` index in (priority DESC, id) order
/// and stops at `max`. None when the agent is drained (checked here).
const READY: &str = "state = 'queued' AND grp = ?2 AND not_before <= ?1
    AND kind IN (SELECT value FROM json_each(?3))
    AND (connection IS NULL OR connection IN (SELECT value FROM json_each(?4)))
    AND (store IS NULL OR store IN (SELECT value FROM json_each(?7)))
    AND (pin_agent IS NULL OR pin_agent = ?6)
    AND NOT EXISTS (SELECT 1 FROM agents WHERE id = ?6 AND drained_at IS NOT NULL)
    ORDER BY priority DESC, id LIMIT +?5";

/// The parameters `?1` to `?7` of the ready query ([`READY`]) for one group.
macro_rules! ready_params {
    ($req:expr, $filter:expr, $group:expr, $now:expr) => {
        params![
            $now,
            $group,
            $filter.kinds,
            $filter.conns,
            i64::from($req.max),
            $req.agent_id,
            $filter.stores
        ]
    };
}

/// The agent's only group, when it names one (repeats allowed).
fn one_group(groups: &[String]) -> Option<&str> {
    let (first, rest) = groups.split_first()?;
    rest.iter().all(|g| g == first).then_some(first.as_str())
}

/// Lease the best `max` ready jobs of one group: attempt N is inserted for
/// each job the ready query picks (number `grants + 1`, token
/// `last_token + 1`), then the jobs named by the attempt rows that insert
/// wrote — rowids `last - n` exclusive to `last`, consecutive because SQLite
/// gives each new row the largest rowid plus one — are moved to `running`
/// with that token. Returns the rows with `grants` and `last_token` as they
/// were before the grant (what [`grant_of`] reads), best first.
fn take_from_group(
    c: &Connection,
    req: &OwnedGrant,
    filter: &Filter,
    group: &str,
    now: i64,
) -> Result<Vec<JobRow>> {
    static INSERT: LazyLock<String> = LazyLock::new(|| {
        format!(
            "INSERT INTO attempts (job_id, number, agent_id, token, started_at)
             SELECT id, grants + 1, ?6, last_token + 1, ?1 FROM jobs WHERE {READY}"
        )
    });
    static UPDATE: LazyLock<String> = LazyLock::new(|| {
        let before: Vec<&str> = JOB_COLUMNS
            .split(", ")
            .map(|col| match col {
                "grants" => "grants - 1 AS grants",
                "last_token" => "last_token - 1 AS last_token",
                other => other,
            })
            .collect();
        format!(
            "UPDATE jobs SET state = 'running', last_token = last_token + 1,
               lease_token = last_token + 1, lease_agent = ?2,
               lease_expires_at = ?1 + lease_ttl_ms, grants = grants + 1, updated_at = ?1
             WHERE id IN (SELECT job_id FROM attempts WHERE rowid > ?3 AND rowid <= ?4)
               AND state = 'queued'
             RETURNING {}",
            before.join(", ")
        )
    });
    let n = c
        .prepare_cached(&INSERT)?
        .execute(ready_params!(req, filter, group, now))?;
    if n == 0 {
        return Ok(Vec::new());
    }
    let last = c.last_insert_rowid();
    let mut rows = rows::all(
        c,
        &UPDATE,
        params![now, req.agent_id, last - n as i64, last],
        job_row,
    )?;
    rows.sort_by_key(|r| (std::cmp::Reverse(r.priority), r.id));
    Ok(rows)
}

/// Run `sql`, whose ready query ([`READY`]) takes the parameters `?1` to
/// `?7`, for one group; the job rows it returns.
fn with_ready_params(
    c: &Connection,
    sql: &str,
    req: &OwnedGrant,
    filter: &Filter,
    group: &str,
    now: i64,
) -> Result<Vec<JobRow>> {
    rows::all(c, sql, ready_params!(req, filter, group, now), job_row)
}
