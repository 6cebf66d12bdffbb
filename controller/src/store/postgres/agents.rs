//! Agent presence on PostgreSQL: what each agent advertised on its last
//! poll, and when it was last seen.
//!
//! Several replicas write here: each flushes the presence of the agents it
//! served ([`AgentStore::flush_presence`]); last_seen never moves back, so
//! a replica that served an agent earlier cannot undo a later poll seen by
//! another. A flush that deadlocks with another replica's runs again
//! ([`PgStore::tx`]).

use std::sync::Arc;

use async_trait::async_trait;
use baton_proto::{AgentView, Capabilities, JobView};
use sqlx::Row;

use super::PgStore;
use crate::store::agents::{
    AGENT_COLUMNS, AgentRow, AgentSeen, AgentStore, DrainState, FLEET_SQL, FLUSH_BATCH,
    GroupAgents, LEASES_SQL, LeaseRow, PINNED_COLUMNS, Pin, PinnedRow, PresenceRow, agent_views,
    blocked_among, fleet_of, pinned_reason,
};
use crate::store::rows::json;
use crate::store::{Error, Result};

/// One flush batch as column arrays (ids sorted: replicas flushing
/// overlapping batches lock rows in the same order).
struct Columns {
    ids: Vec<String>,
    last_seen: Vec<i64>,
    free_slots: Vec<i64>,
    metrics: Vec<Option<String>>,
}

impl Columns {
    fn of(chunk: &[PresenceRow]) -> Columns {
        let mut rows: Vec<&PresenceRow> = chunk.iter().collect();
        rows.sort_by(|a, b| a.id.cmp(&b.id));
        Columns {
            ids: rows.iter().map(|r| r.id.clone()).collect(),
            last_seen: rows.iter().map(|r| r.last_seen).collect(),
            free_slots: rows.iter().map(|r| i64::from(r.free_slots)).collect(),
            metrics: rows
                .iter()
                .map(|r| {
                    r.metrics
                        .as_ref()
                        .and_then(|m| serde_json::to_string(m).ok())
                })
                .collect(),
        }
    }
}

#[async_trait]
impl AgentStore for PgStore {
    async fn agent_polled(&self, a: &AgentSeen<'_>, now: i64) -> Result<bool> {
        let drained: Option<Option<i64>> = sqlx::query_scalar(
            "UPDATE agents SET groups = $2, capabilities = $3, version = $4, os = $5,
               free_slots = $6, metrics = $7, last_seen = $8 WHERE id = $1
             RETURNING drained_at",
        )
        .bind(a.id)
        .bind(serde_json::to_string(a.groups).unwrap_or_default())
        .bind(serde_json::to_string(a.capabilities).unwrap_or_default())
        .bind(a.version)
        .bind(a.os)
        .bind(i64::from(a.free_slots))
        .bind(a.metrics.and_then(|m| serde_json::to_string(m).ok()))
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(drained.flatten().is_some())
    }

    async fn agent_sync(&self, a: &AgentSeen<'_>, now: i64) -> Result<bool> {
        let groups = serde_json::to_string(a.groups).unwrap_or_default();
        let capabilities = serde_json::to_string(a.capabilities).unwrap_or_default();
        let row = sqlx::query(
            "SELECT groups, capabilities, version, os, drained_at FROM agents WHERE id = $1",
        )
        .bind(a.id)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(r) = row {
            let same = r.try_get::<String, _>("groups")? == groups
                && r.try_get::<String, _>("capabilities")? == capabilities
                && r.try_get::<String, _>("version")? == a.version
                && r.try_get::<String, _>("os")? == a.os;
            if same {
                return Ok(r.try_get::<Option<i64>, _>("drained_at")?.is_some());
            }
        }
        self.agent_polled(a, now).await
    }

    async fn flush_presence(&self, rows: &[PresenceRow]) -> Result<()> {
        for chunk in rows.chunks(FLUSH_BATCH) {
            let cols = Arc::new(Columns::of(chunk));
            self.tx(move |c| {
                let cols = cols.clone();
                Box::pin(async move {
                    sqlx::query(
                        "UPDATE agents SET last_seen = GREATEST(agents.last_seen, p.last_seen),
                           free_slots = p.free_slots, metrics = p.metrics
                         FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[])
                           AS p(id, last_seen, free_slots, metrics)
                         WHERE agents.id = p.id",
                    )
                    .bind(&cols.ids)
                    .bind(&cols.last_seen)
                    .bind(&cols.free_slots)
                    .bind(&cols.metrics)
                    .execute(&mut *c)
                    .await?;
                    Ok(())
                })
            })
            .await?;
        }
        Ok(())
    }

    async fn agent_drained(&self, id: &str) -> Result<bool> {
        let drained: Option<Option<i64>> =
            sqlx::query_scalar("SELECT drained_at FROM agents WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(drained.flatten().is_some())
    }

    async fn set_drain(&self, id: &str, drain: bool, now: i64) -> Result<DrainState> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE agents SET drained_at = CASE WHEN $2 THEN COALESCE(drained_at, $3) ELSE NULL END
             WHERE id = $1 RETURNING drained_at, groups",
        )
        .bind(id)
        .bind(drain)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::Missing(format!("agent {id}")))?;
        let running: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE state = 'running' AND lease_agent = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(DrainState {
            drained_at: row.try_get("drained_at")?,
            groups: json("agents.groups", &row.try_get::<String, _>("groups")?)?,
            running,
        })
    }

    async fn list_agents(&self, now: i64, online_window_ms: i64) -> Result<Vec<AgentView>> {
        let sql = format!("SELECT {AGENT_COLUMNS} FROM agents ORDER BY id");
        let rows: Vec<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        let leases: Vec<LeaseRow> = sqlx::query_as(LEASES_SQL).fetch_all(&self.pool).await?;
        agent_views(rows, &leases, now, online_window_ms)
    }

    async fn placement(&self) -> Result<Vec<(Vec<String>, Capabilities)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT DISTINCT groups, capabilities FROM agents WHERE revoked_at IS NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|(g, c)| Ok((json("agents.groups", g)?, json("agents.capabilities", c)?)))
            .collect()
    }

    async fn blocked_reason(
        &self,
        job: &JobView,
        now: i64,
        online_window_ms: i64,
    ) -> Result<Option<String>> {
        let pin: Option<(Option<String>, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT j.pin_agent, j.step, r.spec FROM jobs j
             LEFT JOIN pipeline_runs r ON r.id = j.run_id WHERE j.id = $1",
        )
        .bind(job.id)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(pin) = pin.and_then(|(a, step, spec)| Pin::of(a, step, spec)) {
            let sql = format!("SELECT {PINNED_COLUMNS} FROM agents WHERE id = $1");
            let row: Option<PinnedRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(&pin.agent)
                .fetch_optional(&self.pool)
                .await?;
            return pinned_reason(job, &pin, row, now, online_window_ms);
        }
        let agents = self.list_agents(now, online_window_ms).await?;
        Ok(blocked_among(&agents, job))
    }

    async fn fleet_figures(&self, now: i64, online_window_ms: i64) -> Result<Vec<GroupAgents>> {
        let rows = sqlx::query_as(FLEET_SQL).fetch_all(&self.pool).await?;
        fleet_of(rows, now, online_window_ms)
    }
}

#[cfg(test)]
mod tests;
