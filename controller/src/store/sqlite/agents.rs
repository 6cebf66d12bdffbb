//! Agent presence in SQLite: what each agent advertised on its last poll, and when it was last seen.
//!
//! While the controller runs, `presence` keeps last_seen, free slots and host
//! metrics in memory and writes them here in batches ([`AgentStore::flush_presence`]);
//! a poll writes its row at once only when something durable changed
//! ([`AgentStore::agent_sync`]: groups, capabilities, version, OS).

use baton_proto::pipeline::PipelineSpec;
use baton_proto::{AgentView, Capabilities, JobId, JobView, LeaseHeld};
use chrono::SecondsFormat;
use sqlx::{Row, SqlitePool};

use async_trait::async_trait;

use super::SqliteStore;
use crate::store::agents::{AgentSeen, AgentStore, DrainState, FLUSH_BATCH, PresenceRow};
use crate::store::rows::{json, json_opt, ts};
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
        let rows = sqlx::query(
            "SELECT id, groups, capabilities, version, os, free_slots, metrics, last_seen, enrolled_at, revoked_at, drained_at
             FROM agents ORDER BY id",
        )
        .fetch_all(&self.reader)
        .await?;
        let leases = sqlx::query(
            "SELECT id, lease_agent, lease_token, lease_expires_at FROM jobs WHERE state = 'running' ORDER BY id",
        )
        .fetch_all(&self.reader)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: String = r.try_get("id")?;
            let last_seen: i64 = r.try_get("last_seen")?;
            let mut held = Vec::new();
            for l in &leases {
                if l.try_get::<Option<String>, _>("lease_agent")?.as_deref() == Some(id.as_str()) {
                    held.push(LeaseHeld {
                        job_id: l.try_get("id")?,
                        token: l
                            .try_get::<Option<i64>, _>("lease_token")?
                            .unwrap_or_default(),
                        expires_at: ts(l
                            .try_get::<Option<i64>, _>("lease_expires_at")?
                            .unwrap_or_default()),
                    });
                }
            }
            out.push(AgentView {
                groups: json("agents.groups", &r.try_get::<String, _>("groups")?)?,
                capabilities: json(
                    "agents.capabilities",
                    &r.try_get::<String, _>("capabilities")?,
                )?,
                version: r.try_get("version")?,
                os: r.try_get("os")?,
                free_slots: r.try_get::<i64, _>("free_slots")? as u32,
                metrics: json_opt("agents.metrics", &r.try_get("metrics")?)?,
                online: now - last_seen <= online_window_ms
                    && r.try_get::<Option<i64>, _>("revoked_at")?.is_none(),
                last_seen: ts(last_seen),
                leases: held,
                enrolled_at: r.try_get::<Option<i64>, _>("enrolled_at")?.map(ts),
                revoked_at: r.try_get::<Option<i64>, _>("revoked_at")?.map(ts),
                drained_at: r.try_get::<Option<i64>, _>("drained_at")?.map(ts),
                id,
            });
        }
        Ok(out)
    }

    /// The groups and the last advertised capabilities of every agent that
    /// is not revoked (one read of the agents table).
    async fn placement(&self) -> Result<Vec<(Vec<String>, Capabilities)>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT groups, capabilities FROM agents WHERE revoked_at IS NULL")
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
        if let Some(pin) = pin_of(&self.reader, job.id).await? {
            return pinned_reason(&self.reader, job, &pin, now, online_window_ms).await;
        }
        let (group, kind, connection) = (job.group.as_str(), job.kind, job.connection.as_deref());
        let agents = self.list_agents(now, online_window_ms).await?;
        let in_group: Vec<&AgentView> = agents
            .iter()
            .filter(|a| a.online && a.groups.iter().any(|g| g == group))
            .collect();
        if in_group.is_empty() {
            return Ok(Some(format!("no online agent serves group `{group}`")));
        }
        let with_kind: Vec<&&AgentView> = in_group
            .iter()
            .filter(|a| a.capabilities.kinds.contains(&kind))
            .collect();
        if with_kind.is_empty() {
            return Ok(Some(format!(
                "no online agent of group `{group}` runs `{kind}` jobs"
            )));
        }
        let able: Vec<&&&AgentView> = with_kind
            .iter()
            .filter(|a| {
                connection.is_none_or(|c| a.capabilities.connections.iter().any(|x| x.name == c))
            })
            .collect();
        if let (Some(c), true) = (connection, able.is_empty()) {
            return Ok(Some(format!(
                "no online agent of group `{group}` has connection `{c}`"
            )));
        }
        if able.iter().all(|a| a.drained_at.is_some()) {
            let ids: Vec<&str> = able.iter().map(|a| a.id.as_str()).collect();
            return Ok(Some(format!(
                "every agent of group `{group}` that could run it is drained ({})",
                ids.join(", ")
            )));
        }
        Ok(None)
    }
}

/// The agent a queued job is pinned to, and the step whose files it holds.
struct Pin {
    agent: String,
    after: Option<String>,
}

/// Job `id`'s pin, if it has one (a pipeline step with `same_agent_as`).
async fn pin_of(pool: &SqlitePool, id: JobId) -> Result<Option<Pin>> {
    let row: Option<(Option<String>, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT j.pin_agent, j.step, r.spec FROM jobs j
         LEFT JOIN pipeline_runs r ON r.id = j.run_id WHERE j.id = ?",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some((Some(agent), step, spec)) = row else {
        return Ok(None);
    };
    // The step it follows, from the definition the run started with.
    let after = step.zip(spec).and_then(|(step, spec)| {
        json::<PipelineSpec>("pipeline_runs.spec", &spec)
            .ok()?
            .steps
            .into_iter()
            .find(|s| s.name == step)?
            .same_agent_as
    });
    Ok(Some(Pin { agent, after }))
}

/// Why `job`, pinned to `pin.agent`, waits (`None`: that agent could take
/// it now).
async fn pinned_reason(
    pool: &SqlitePool,
    job: &JobView,
    pin: &Pin,
    now: i64,
    online_window_ms: i64,
) -> Result<Option<String>> {
    let who = match &pin.after {
        Some(step) => format!(
            "waits for agent `{}`, which ran step `{step}` and holds its files",
            pin.agent
        ),
        None => format!(
            "waits for agent `{}`, which holds the files of the step it follows",
            pin.agent
        ),
    };
    let at = |ms: i64| ts(ms).to_rfc3339_opts(SecondsFormat::Secs, true);
    let row = sqlx::query(
        "SELECT groups, capabilities, free_slots, last_seen, revoked_at, drained_at
         FROM agents WHERE id = ?",
    )
    .bind(&pin.agent)
    .fetch_optional(pool)
    .await?;
    let Some(r) = row else {
        return Ok(Some(format!(
            "{who}; it is not known to this controller, so the step fails"
        )));
    };
    let groups: Vec<String> = json("agents.groups", &r.try_get::<String, _>("groups")?)?;
    let caps: Capabilities = json(
        "agents.capabilities",
        &r.try_get::<String, _>("capabilities")?,
    )?;
    let last_seen: i64 = r.try_get("last_seen")?;
    let why = if let Some(revoked) = r.try_get::<Option<i64>, _>("revoked_at")? {
        format!("it was revoked at {}, so the step fails", at(revoked))
    } else if now - last_seen > online_window_ms {
        format!("it is offline since {}", at(last_seen))
    } else if let Some(drained) = r.try_get::<Option<i64>, _>("drained_at")? {
        format!("it is drained since {}", at(drained))
    } else if !groups.contains(&job.group) {
        format!("it does not serve group `{}`", job.group)
    } else if !caps.kinds.contains(&job.kind) {
        format!("it does not run `{}` jobs", job.kind)
    } else if let Some(c) = job
        .connection
        .as_deref()
        .filter(|c| !caps.connections.iter().any(|x| x.name == *c))
    {
        format!("it has no connection `{c}`")
    } else if r.try_get::<i64, _>("free_slots")? <= 0 {
        "it has no free slot".to_owned()
    } else {
        return Ok(None);
    };
    Ok(Some(format!("{who}; {why}")))
}
