//! Agent presence: what each agent advertised on its last poll, and when it was last seen.
//!
//! While the controller runs, `presence` keeps last_seen, free slots and host
//! metrics in memory and writes them here in batches ([`AgentStore::flush_presence`]);
//! a poll writes its row at once only when something durable changed
//! ([`AgentStore::agent_sync`]: groups, capabilities, version, OS).

use async_trait::async_trait;
use baton_proto::{AgentView, Capabilities, HostMetrics, JobView};

use super::Result;

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
    /// agent that is not revoked, online or not (placement at submit).
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
}
