//! What an agent advertises, and how operators see agents.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::job::JobKind;
use crate::{FencingToken, JobId};

/// A named database connection configured on the agent host (no credentials).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectionInfo {
    /// Connection name, as jobs refer to it.
    pub name: String,
    /// Engine: `mysql`, `mssql`.
    pub kind: String,
}

/// What an agent can run.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Capabilities {
    /// Job kinds it runs.
    pub kinds: Vec<JobKind>,
    /// Connections it has.
    pub connections: Vec<ConnectionInfo>,
    /// Object stores it has (`[stores.<name>]`), by name only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stores: Vec<String>,
}

/// Host metrics sampled by the agent.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct HostMetrics {
    /// CPU use of the host, percent.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::percent::opt"
    )]
    pub cpu_percent: Option<f32>,
    /// Memory in use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_used_bytes: Option<u64>,
    /// Memory installed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_total_bytes: Option<u64>,
    /// Free space where dumps go.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dump_dir_free_bytes: Option<u64>,
}

/// A lease an agent holds now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseHeld {
    /// Job id.
    pub job_id: JobId,
    /// Fencing token.
    pub token: FencingToken,
    /// When the lease runs out unless renewed.
    pub expires_at: DateTime<Utc>,
}

/// An agent as operators see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentView {
    /// Agent id.
    pub id: String,
    /// Groups it serves.
    pub groups: Vec<String>,
    /// What it runs.
    pub capabilities: Capabilities,
    /// Agent version.
    pub version: String,
    /// Operating system.
    pub os: String,
    /// Last poll, heartbeat or completion.
    pub last_seen: DateTime<Utc>,
    /// Whether it was seen within the liveness window.
    pub online: bool,
    /// Free slots it reported on its last poll.
    pub free_slots: u32,
    /// Last host metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<HostMetrics>,
    /// Leases it holds.
    #[serde(default)]
    pub leases: Vec<LeaseHeld>,
    /// When it enrolled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrolled_at: Option<DateTime<Utc>>,
    /// When an admin revoked it (its calls are refused from then on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// When an operator drained it (no new work until resumed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drained_at: Option<DateTime<Utc>>,
}

/// `POST /v1/agents/{id}/drain` and `/resume`: the agent's drain state now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentDrain {
    /// Agent id.
    pub agent_id: String,
    /// Whether it is drained.
    pub draining: bool,
    /// Since when, while drained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drained_at: Option<DateTime<Utc>>,
    /// Jobs it still runs (they go on to their end).
    pub running: Vec<i64>,
}

/// `GET /v1/agents`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentList {
    /// Every agent the controller has seen.
    pub agents: Vec<AgentView>,
}

#[cfg(test)]
mod tests;
