//! Agent presence: what each agent advertised on its last poll, and when it was last seen.
//!
//! While the controller runs, `presence` keeps last_seen, free slots and host
//! metrics in memory and writes them here in batches ([`AgentStore::flush_presence`]);
//! a poll writes its row at once only when something durable changed
//! ([`AgentStore::agent_sync`]: groups, capabilities, version, OS).

use async_trait::async_trait;
use baton_proto::pipeline::PipelineSpec;
use baton_proto::{AgentView, Capabilities, HostMetrics, JobView, LeaseHeld};
use chrono::SecondsFormat;

use super::Result;
use super::rows::{json, json_opt, ts};

/// An agent's drain state after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainState {
    /// When it was drained; `None` when not drained.
    pub drained_at: Option<i64>,
    /// Its groups (to wake their pollers on resume).
    pub groups: Vec<String>,
    /// Jobs it still runs.
    pub running: Vec<i64>,
}

/// What a poll tells about an agent.
#[derive(Debug, Clone)]
pub struct AgentSeen<'a> {
    /// Agent id.
    pub id: &'a str,
    /// Groups.
    pub groups: &'a [String],
    /// Capabilities.
    pub capabilities: &'a Capabilities,
    /// Version.
    pub version: &'a str,
    /// OS.
    pub os: &'a str,
    /// Free slots.
    pub free_slots: u32,
    /// Host metrics.
    pub metrics: Option<&'a HostMetrics>,
}

/// Most rows [`AgentStore::flush_presence`] writes in one transaction (bounds how
/// long a flush holds the writer).
pub const FLUSH_BATCH: usize = 2000;

/// One agent's presence as [`AgentStore::flush_presence`] writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceRow {
    /// Agent id.
    pub id: String,
    /// When its latest poll arrived (Unix ms).
    pub last_seen: i64,
    /// Free slots it advertised.
    pub free_slots: u32,
    /// Host metrics it sent.
    pub metrics: Option<HostMetrics>,
}

/// Agents as the controller knows them.
#[async_trait]
pub trait AgentStore {
    /// Record a poll (every column); returns whether the agent is drained.
    async fn agent_polled(&self, a: &AgentSeen<'_>, now: i64) -> Result<bool>;

    /// Make the agent's row match what a poll advertised, writing only when
    /// its groups, capabilities, version or OS differ from the stored ones (or
    /// the row is missing); returns whether the agent is drained. last_seen,
    /// free slots and metrics are left to [`AgentStore::flush_presence`] when
    /// nothing else changed.
    async fn agent_sync(&self, a: &AgentSeen<'_>, now: i64) -> Result<bool>;

    /// Write the in-memory presence of many agents: last_seen (never moved
    /// back), free slots and metrics, one statement (and one commit) per
    /// [`FLUSH_BATCH`] rows. Unknown ids are skipped.
    async fn flush_presence(&self, rows: &[PresenceRow]) -> Result<()>;

    /// Whether the agent is drained now.
    async fn agent_drained(&self, id: &str) -> Result<bool>;

    /// Drain (`drain = true`: no new work from now on) or resume an agent.
    /// Returns when it was drained (`None` once resumed), its groups and the
    /// jobs it still runs; [`Error::Missing`](super::Error::Missing) for an unknown agent.
    async fn set_drain(&self, id: &str, drain: bool, now: i64) -> Result<DrainState>;

    /// Every agent with the leases it holds. `online_window_ms` decides `online`.
    async fn list_agents(&self, now: i64, online_window_ms: i64) -> Result<Vec<AgentView>>;

    /// The groups and the last advertised capabilities of every enrolled
    /// agent that is not revoked, online or not (placement at submit); each
    /// distinct pair once (agents configured alike are one row).
    async fn placement(&self) -> Result<Vec<(Vec<String>, Capabilities)>>;

    /// Why queued `job` cannot be dispatched now, if no online agent could
    /// take it. A job pinned to an agent (a pipeline step with
    /// `same_agent_as`) waits for that agent only: the reason names it, the
    /// step whose files it holds, and what keeps it (offline since …,
    /// drained, no free slot, revoked).
    async fn blocked_reason(
        &self,
        job: &JobView,
        now: i64,
        online_window_ms: i64,
    ) -> Result<Option<String>>;

    /// Agents that are not revoked, counted by group and state
    /// (`/metrics`): one read of the agents table. An agent counts in
    /// each of its groups.
    async fn fleet_figures(&self, now: i64, online_window_ms: i64) -> Result<Vec<GroupAgents>>;
}

/// The agents of one group ([`AgentStore::fleet_figures`]); the states are
/// disjoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupAgents {
    /// Worker group.
    pub group: String,
    /// Seen within the online window and not drained.
    pub online: u64,
    /// Drained (no new work), seen lately or not.
    pub draining: u64,
    /// Not drained and not seen within the online window.
    pub offline: u64,
}

/// The read of [`AgentStore::fleet_figures`].
pub(crate) const FLEET_SQL: &str =
    "SELECT groups, last_seen, drained_at FROM agents WHERE revoked_at IS NULL";

/// [`GroupAgents`] (by group name) from the rows of [`FLEET_SQL`].
pub(crate) fn fleet_of(
    rows: Vec<(String, i64, Option<i64>)>,
    now: i64,
    online_window_ms: i64,
) -> Result<Vec<GroupAgents>> {
    let mut by_group = std::collections::BTreeMap::<String, GroupAgents>::new();
    for (groups, last_seen, drained_at) in rows {
        let groups: Vec<String> = json("agents.groups", &groups)?;
        for g in groups {
            let e = by_group.entry(g.clone()).or_insert_with(|| GroupAgents {
                group: g,
                ..GroupAgents::default()
            });
            if drained_at.is_some() {
                e.draining += 1;
            } else if now.saturating_sub(last_seen) <= online_window_ms {
                e.online += 1;
            } else {
                e.offline += 1;
            }
        }
    }
    Ok(by_group.into_values().collect())
}

/// The columns of [`AgentRow`].
pub(crate) const AGENT_COLUMNS: &str = "id, groups, capabilities, version, os, free_slots, metrics, last_seen, enrolled_at, revoked_at, drained_at";

/// An agent as every backend stores it (`FromRow` is generic).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct AgentRow {
    pub id: String,
    pub groups: String,
    pub capabilities: String,
    pub version: String,
    pub os: String,
    pub free_slots: i64,
    pub metrics: Option<String>,
    pub last_seen: i64,
    pub enrolled_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub drained_at: Option<i64>,
}

/// The running jobs' leases, as [`LeaseRow`]s.
pub(crate) const LEASES_SQL: &str = "SELECT id, lease_agent, lease_token, lease_expires_at FROM jobs WHERE state = 'running' ORDER BY id";

/// A running job's lease.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct LeaseRow {
    pub id: i64,
    pub lease_agent: Option<String>,
    pub lease_token: Option<i64>,
    pub lease_expires_at: Option<i64>,
}

/// Agents as the API shows them, each with the leases it holds;
/// `online_window_ms` decides `online`.
pub(crate) fn agent_views(
    rows: Vec<AgentRow>,
    leases: &[LeaseRow],
    now: i64,
    online_window_ms: i64,
) -> Result<Vec<AgentView>> {
    rows.into_iter()
        .map(|r| {
            let leases = leases
                .iter()
                .filter(|l| l.lease_agent.as_deref() == Some(r.id.as_str()))
                .map(|l| LeaseHeld {
                    job_id: l.id,
                    token: l.lease_token.unwrap_or_default(),
                    expires_at: ts(l.lease_expires_at.unwrap_or_default()),
                })
                .collect();
            Ok(AgentView {
                groups: json("agents.groups", &r.groups)?,
                capabilities: json("agents.capabilities", &r.capabilities)?,
                version: r.version,
                os: r.os,
                free_slots: u32::try_from(r.free_slots).unwrap_or(0),
                metrics: json_opt("agents.metrics", &r.metrics)?,
                online: now - r.last_seen <= online_window_ms && r.revoked_at.is_none(),
                last_seen: ts(r.last_seen),
                leases,
                enrolled_at: r.enrolled_at.map(ts),
                revoked_at: r.revoked_at.map(ts),
                drained_at: r.drained_at.map(ts),
                id: r.id,
            })
        })
        .collect()
}

/// Why queued, unpinned `job` cannot be dispatched now, judged from
/// `agents` (as [`agent_views`] made them): no online agent of its group,
/// none with its kind, connection or object store, or all of those drained.
pub(crate) fn blocked_among(agents: &[AgentView], job: &JobView) -> Option<String> {
    let (group, kind, connection) = (job.group.as_str(), job.kind, job.connection.as_deref());
    let in_group: Vec<&AgentView> = agents
        .iter()
        .filter(|a| a.online && a.groups.iter().any(|g| g == group))
        .collect();
    if in_group.is_empty() {
        return Some(format!("no online agent serves group `{group}`"));
    }
    let with_kind: Vec<&&AgentView> = in_group
        .iter()
        .filter(|a| a.capabilities.kinds.contains(&kind))
        .collect();
    if with_kind.is_empty() {
        return Some(format!(
            "no online agent of group `{group}` runs `{kind}` jobs"
        ));
    }
    let able: Vec<&&&AgentView> = with_kind
        .iter()
        .filter(|a| {
            connection.is_none_or(|c| a.capabilities.connections.iter().any(|x| x.name == c))
        })
        .collect();
    if let (Some(c), true) = (connection, able.is_empty()) {
        return Some(format!(
            "no online agent of group `{group}` has connection `{c}`"
        ));
    }
    let store = job.spec.store();
    let able: Vec<&&&AgentView> = able
        .into_iter()
        .filter(|a| store.is_none_or(|s| a.capabilities.stores.iter().any(|x| x == s)))
        .collect();
    if let (Some(s), true) = (store, able.is_empty()) {
        let with_conn = if connection.is_some() {
            " and that connection"
        } else {
            ""
        };
        return Some(format!(
            "no online agent of group `{group}` has store `{s}`{with_conn}"
        ));
    }
    if able.iter().all(|a| a.drained_at.is_some()) {
        let ids: Vec<&str> = able.iter().map(|a| a.id.as_str()).collect();
        return Some(format!(
            "every agent of group `{group}` that could run it is drained ({})",
            ids.join(", ")
        ));
    }
    None
}

/// The agent a queued job is pinned to, and the step whose files it holds.
#[derive(Debug, Clone)]
pub(crate) struct Pin {
    pub agent: String,
    pub after: Option<String>,
}

impl Pin {
    /// The pin from a job's `pin_agent`, `step` and its run's `spec`
    /// (`None`: not pinned).
    pub fn of(agent: Option<String>, step: Option<String>, spec: Option<String>) -> Option<Pin> {
        let agent = agent?;
        // The step it follows, from the definition the run started with.
        let after = step.zip(spec).and_then(|(step, spec)| {
            json::<PipelineSpec>("pipeline_runs.spec", &spec)
                .ok()?
                .steps
                .into_iter()
                .find(|s| s.name == step)?
                .same_agent_as
        });
        Some(Pin { agent, after })
    }
}

/// The columns of [`PinnedRow`].
pub(crate) const PINNED_COLUMNS: &str =
    "groups, capabilities, free_slots, last_seen, revoked_at, drained_at";

/// What decides whether a pinned job's agent could take it now.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct PinnedRow {
    pub groups: String,
    pub capabilities: String,
    pub free_slots: i64,
    pub last_seen: i64,
    pub revoked_at: Option<i64>,
    pub drained_at: Option<i64>,
}

/// Why `job`, pinned to `pin.agent` (whose row is `row`, `None` when
/// unknown), waits (`None`: that agent could take it now).
pub(crate) fn pinned_reason(
    job: &JobView,
    pin: &Pin,
    row: Option<PinnedRow>,
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
    let Some(r) = row else {
        return Ok(Some(format!(
            "{who}; it is not known to this controller, so the step fails"
        )));
    };
    let groups: Vec<String> = json("agents.groups", &r.groups)?;
    let caps: Capabilities = json("agents.capabilities", &r.capabilities)?;
    let why = if let Some(revoked) = r.revoked_at {
        format!("it was revoked at {}, so the step fails", at(revoked))
    } else if now - r.last_seen > online_window_ms {
        format!("it is offline since {}", at(r.last_seen))
    } else if let Some(drained) = r.drained_at {
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
    } else if let Some(st) = job
        .spec
        .store()
        .filter(|st| !caps.stores.iter().any(|x| x == st))
    {
        format!("it has no store `{st}`")
    } else if r.free_slots <= 0 {
        "it has no free slot".to_owned()
    } else {
        return Ok(None);
    };
    Ok(Some(format!("{who}; {why}")))
}
