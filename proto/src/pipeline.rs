//! Pipelines: a named DAG of steps, each a job template. Steps whose
//! dependencies are met run in parallel; a step's outputs reach later steps
//! by reference (`${steps.dump.result.file}`, `${steps.check.data.out.n}`),
//! checked when the pipeline is defined and resolved when the step is
//! queued.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::JobId;
use crate::job::JobState;
use crate::schedule::{JobTemplate, RunId};

/// Most steps in one pipeline.
pub const MAX_STEPS: usize = 64;

/// When a step runs, given how its dependencies ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum StepCondition {
    /// Every dependency succeeded (the default).
    #[default]
    Success,
    /// At least one dependency failed (or was cancelled).
    Failure,
    /// Every dependency ended, however.
    Always,
}

/// One step of a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Unique within the pipeline (`[A-Za-z0-9_.-]`, at most 64).
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_.\-]{1,64}$"))]
    pub name: String,
    /// Steps that must end before this one starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// When it runs, given how its dependencies ended.
    #[serde(default)]
    pub on: StepCondition,
    /// Run on the agent that ran this step (which must be an ancestor):
    /// the file it produced lives there. If that agent is gone the step
    /// fails; it never moves to a host without the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_agent_as: Option<String>,
    /// Worker group (default: the pipeline's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The job (its retry policy is the step's).
    pub job: JobTemplate,
}

/// A pipeline as an operator defines it (`POST /v1/pipelines`,
/// `PUT /v1/pipelines/{name}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// Unique name.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_.\-]{1,64}$"))]
    pub name: String,
    /// Worker group of the steps that name none.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_.\-]{1,128}$"))]
    pub group: String,
    /// A run that has not ended after this long is failed and its running
    /// steps are cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// The steps (1 to [`MAX_STEPS`]).
    pub steps: Vec<StepSpec>,
}

/// A pipeline as operators see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PipelineView {
    /// The definition.
    pub spec: PipelineSpec,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// The newest run, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunSummary>,
}

/// `GET /v1/pipelines`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PipelineList {
    /// By name.
    pub pipelines: Vec<PipelineView>,
}

/// The state of a pipeline run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Steps are queued or running.
    Running,
    /// Every step that ran succeeded.
    Succeeded,
    /// A step failed (its `on = "failure"` steps may still have run), or
    /// the run timed out.
    Failed,
    /// Cancelled by an operator.
    Cancelled,
}

impl RunState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<RunState> {
        [
            RunState::Running,
            RunState::Succeeded,
            RunState::Failed,
            RunState::Cancelled,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// The state of one step in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Waiting for its dependencies.
    Pending,
    /// Its job is queued.
    Queued,
    /// Its job is running.
    Running,
    /// Its job succeeded.
    Succeeded,
    /// Its job failed, or it could not be queued (the reason says why).
    Failed,
    /// Its job was cancelled, or the run was before it started.
    Cancelled,
    /// Its condition was not met.
    Skipped,
}

impl StepState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Queued => "queued",
            StepState::Running => "running",
            StepState::Succeeded => "succeeded",
            StepState::Failed => "failed",
            StepState::Cancelled => "cancelled",
            StepState::Skipped => "skipped",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<StepState> {
        [
            StepState::Pending,
            StepState::Queued,
            StepState::Running,
            StepState::Succeeded,
            StepState::Failed,
            StepState::Cancelled,
            StepState::Skipped,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }

    /// The step has ended (it will not change unless the run is retried).
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            StepState::Pending | StepState::Queued | StepState::Running
        )
    }

    /// The step state of a job in `state`.
    pub fn of_job(state: JobState) -> StepState {
        match state {
            JobState::Queued => StepState::Queued,
            JobState::Running => StepState::Running,
            JobState::Succeeded => StepState::Succeeded,
            JobState::Failed => StepState::Failed,
            JobState::Cancelled => StepState::Cancelled,
        }
    }
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepRunView {
    /// The step's name.
    pub name: String,
    /// Its state.
    pub state: StepState,
    /// Its job (the newest, after a retry of the run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<JobId>,
    /// The agent that ran (or runs) it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Attempts its job spent.
    #[serde(default)]
    pub attempts: u32,
    /// Why it failed, was skipped or cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When its job was queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<DateTime<Utc>>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

/// A pipeline run with its steps (`GET /v1/runs/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunView {
    /// Run id.
    pub id: RunId,
    /// The pipeline.
    pub pipeline: String,
    /// Its state.
    pub state: RunState,
    /// 1, plus one per retry.
    pub attempt: u32,
    /// The schedule that started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// That schedule's nominal time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nominal_at: Option<DateTime<Utc>>,
    /// Why it failed or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Started.
    pub created_at: DateTime<Utc>,
    /// Ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// When it times out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_at: Option<DateTime<Utc>>,
    /// Steps, in definition order.
    pub steps: Vec<StepRunView>,
}

/// A run without its steps (lists).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunSummary {
    /// Run id.
    pub id: RunId,
    /// The pipeline.
    pub pipeline: String,
    /// Its state.
    pub state: RunState,
    /// 1, plus one per retry.
    pub attempt: u32,
    /// The schedule that started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Why it failed or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Started.
    pub created_at: DateTime<Utc>,
    /// Ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

/// `GET /v1/pipelines/{name}/runs`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunList {
    /// The runs.
    pub runs: Vec<RunSummary>,
    /// Pass as `before` for the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<RunId>,
}

#[cfg(test)]
mod tests;
