//! Agent presence in SQLite: what each agent advertised on its last poll, and when it was last seen.
//!
//! While the controller runs, `presence` keeps last_seen, free slots and host
//! metrics in memory and writes them here in batches ([`AgentStore::flush_presence`]);
//! a poll writes its row at once only when something durable changed
//! ([`AgentStore::agent_sync`]: groups, capabilities, version, OS).

use baton_proto::{AgentView, Capabilities, JobView};
use sqlx::Row;

use async_trait::async_trait;

use super::SqliteStore;
use crate::store::agents::{
    AGENT_COLUMNS, AgentRow, AgentSeen, AgentStore, DrainState, FLEET_SQL, FLUSH_BATCH,
    GroupAgents, LEASES_SQL, LeaseRow, PINNED_COLUMNS, Pin, PinnedRow, PresenceRow, agent_views,
    blocked_among, fleet_of, pinned_reason,
};
use crate::store::rows::json;
use crate::store::{Error, Result};

#[async_trait]
impl AgentStore for SqliteStore {
    /// Record a poll (every column); returns whether the agent is drained.
    async fn agent_polled(&self, a: &AgentSeen<'_>, now: i64) -> Result<bool> {
        let drained: Option<Option<i64>> = sqlx::query_scalar(
            "UPDATE agents SET groups = ?2, capabilities = ?3, version = ?4, os = ?5,
               free_slots = ?6, metrics = ?7, last_seen = ?8 WHERE id = ?1
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
        .fetch_optional(&self.writer)
        .await?;
        Ok(drained.flatten().is_some())
    }

    /// Make the agent's row match what a poll advertised, writing only when
    /// its groups, capabilities, version or OS differ from the stored ones (or
    /// the row is missing); returns whether the agent is drained. last_seen,
    /// free slots and metrics are left to [`AgentStore::flush_presence`] when
    /// nothing else changed.
    async fn agent_sync(&self, a: &AgentSeen<'_>, now: i64) -> Result<bool> {
        let groups = serde_json::to_string(a.groups).unwrap_or_default();
        let capabilities = serde_json::to_string(a.capabilities).unwrap_or_default();
        let row = sqlx::query(
            "SELECT groups, capabilities, version, os, drained_at FROM agents WHERE id = ?",
        )
        .bind(a.id)
        .fetch_optional(&self.reader)
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

    /// Write the in-memory presence of many agents: last_seen (never moved
    /// back), free slots and metrics, one statement (and one commit) per
    /// [`FLUSH_BATCH`] rows. Unknown ids are skipped.
    async fn flush_presence(&self, rows: &[PresenceRow]) -> Result<()> {
        for chunk in rows.chunks(FLUSH_BATCH) {
            let batch: Vec<(&str, i64, u32, Option<String>)> = chunk
                .iter()
                .map(|r| {
                    (
                        r.id.as_str(),
                        r.last_seen,
                        r.free_slots,
                        r.metrics
                            .as_ref()
                            .and_then(|m| serde_json::to_string(m).ok()),
                    )
                })
                .collect();
            let batch = serde_json::to_string(&batch).unwrap_or_default();
            sqlx::query(
                "UPDATE agents SET last_seen = MAX(agents.last_seen, p.last_seen),
                   free_slots = p.free_slots, metrics = p.metrics
                 FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS last_seen,
                         json_extract(value, '$[2]') AS free_slots, json_extract(value, '$[3]') AS metrics
                       FROM json_each(?1)) AS p
                 WHERE agents.id = p.id",
            )
            .bind(batch)
            .execute(&self.writer)
            .await?;
        }
        Ok(())
    }

    /// Whether the agent is drained now.
    async fn agent_drained(&self, id: &str) -> Result<bool> {
        let drained: Option<Option<i64>> =
            sqlx::query_scalar("SELECT drained_at FROM agents WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.reader)
                .await?;
        Ok(drained.flatten().is_some())
    }

    /// Drain (`drain = true`: no new work from now on) or resume an agent.
    /// Returns when it was drained (`None` once resumed), its groups and the
    /// jobs it still runs; [`Error::Missing`] for an unknown agent.
    async fn set_drain(&self, id: &str, drain: bool, now: i64) -> Result<DrainState> {
        let mut tx = self.writer.begin().await?;
        let row = sqlx::query(
            "UPDATE agents SET drained_at = CASE WHEN ?2 THEN COALESCE(drained_at, ?3) ELSE NULL END
             WHERE id = ?1 RETURNING drained_at, groups",
        )
        .bind(id)
        .bind(drain)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::Missing(format!("agent {id}")))?;
        let running: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE state = 'running' AND lease_agent = ? ORDER BY id",
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

    /// Every agent with the leases it holds. `online_window_ms` decides `online`.
    async fn list_agents(&self, now: i64, online_window_ms: i64) -> Result<Vec<AgentView>> {
        let sql = format!("SELECT {AGENT_COLUMNS} FROM agents ORDER BY id");
        let rows: Vec<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.reader)
            .await?;
        let leases: Vec<LeaseRow> = sqlx::query_as(LEASES_SQL).fetch_all(&self.reader).await?;
        agent_views(rows, &leases, now, online_window_ms)
    }

    /// The groups and the last advertised capabilities of every agent that
    /// is not revoked (one read of the agents table).
    async fn placement(&self) -> Result<Vec<(Vec<String>, Capabilities)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT DISTINCT groups, capabilities FROM agents WHERE revoked_at IS NULL",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|(g, c)| Ok((json("agents.groups", g)?, json("agents.capabilities", c)?)))
            .collect()
    }

    /// Why queued `job` cannot be dispatched now, if no online agent could
    /// take it; a pinned job waits for its agent only.
    async fn blocked_reason(
        &self,
        job: &JobView,
        now: i64,
        online_window_ms: i64,
    ) -> Result<Option<String>> {
        let pin: Option<(Option<String>, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT j.pin_agent, j.step, r.spec FROM jobs j
             LEFT JOIN pipeline_runs r ON r.id = j.run_id WHERE j.id = ?",
        )
        .bind(job.id)
        .fetch_optional(&self.reader)
        .await?;
        if let Some(pin) = pin.and_then(|(a, step, spec)| Pin::of(a, step, spec)) {
            let sql = format!("SELECT {PINNED_COLUMNS} FROM agents WHERE id = ?");
            let row: Option<PinnedRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(&pin.agent)
                .fetch_optional(&self.reader)
                .await?;
            return pinned_reason(job, &pin, row, now, online_window_ms);
        }
        let agents = self.list_agents(now, online_window_ms).await?;
        Ok(blocked_among(&agents, job))
    }

    async fn fleet_figures(&self, now: i64, online_window_ms: i64) -> Result<Vec<GroupAgents>> {
        let rows = sqlx::query_as(FLEET_SQL).fetch_all(&self.reader).await?;
        fleet_of(rows, now, online_window_ms)
    }
}
