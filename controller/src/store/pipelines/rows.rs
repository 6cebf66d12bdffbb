//! Runs and steps as stored, and what both backends derive from them
//! without SQL: the steps' states, a run's view, a page of runs, the
//! submission of a step, the reason a run failed.

use baton_proto::JobSubmit;
use baton_proto::pipeline::{
    PipelineSpec, PipelineView, RunList, RunState, RunSummary, RunView, StepRunView, StepState,
};

use crate::pipeline::{self, JobLimits, StepOutput, StepStatus};
use crate::store::rows::{json, json_opt, ts};
use crate::store::{Error, Result};

/// Largest spec of a step once its references are resolved (as JSON): a
/// reference to a large output fails the step rather than queue a job no
/// agent would take.
pub(crate) const MAX_RESOLVED_SPEC_BYTES: usize = 1 << 20;

/// A run with its schedule's name (`RUN_SELECT … WHERE …`).
pub(crate) const RUN_SELECT: &str = "SELECT r.id, r.pipeline, r.spec, r.grp, r.state, r.attempt,
        s.name AS schedule, r.schedule_id, r.nominal_at, r.error, r.stopping, r.deadline_at,
        r.created_at, r.finished_at
     FROM pipeline_runs r LEFT JOIN schedules s ON s.id = r.schedule_id";

/// What advancing a run found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Advanced {
    /// The run ended in this call.
    pub ended_now: bool,
    /// The run is not running (now or before): its schedule, if any, may
    /// start a pending occurrence.
    pub done_schedule: Option<i64>,
}

/// A `pipeline_runs` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RunRow {
    pub id: i64,
    pub pipeline: String,
    pub spec: String,
    pub grp: Option<String>,
    pub state: String,
    pub attempt: i64,
    pub schedule: Option<String>,
    pub schedule_id: Option<i64>,
    pub nominal_at: Option<i64>,
    pub error: Option<String>,
    pub stopping: Option<String>,
    pub deadline_at: Option<i64>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

impl RunRow {
    pub(crate) fn state(&self) -> Result<RunState> {
        RunState::parse(&self.state)
            .ok_or_else(|| Error::Corrupt(format!("pipeline_runs.state {}", self.id)))
    }

    pub(crate) fn spec(&self) -> Result<PipelineSpec> {
        json("pipeline_runs.spec", &self.spec)
    }

    pub(crate) fn summary(&self) -> Result<RunSummary> {
        Ok(RunSummary {
            id: self.id,
            pipeline: self.pipeline.clone(),
            state: self.state()?,
            attempt: self.attempt as u32,
            schedule: self.schedule.clone(),
            error: self.error.clone(),
            created_at: ts(self.created_at),
            finished_at: self.finished_at.map(ts),
        })
    }
}

/// One step's row joined with its job.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct StepRow {
    pub step: String,
    pub state: String,
    pub job_id: Option<i64>,
    pub reason: Option<String>,
    pub job_state: Option<String>,
    pub attempts_spent: Option<i64>,
    pub created_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub job_error: Option<String>,
    pub result: Option<String>,
    pub agent: Option<String>,
}

impl StepRow {
    /// Its job's state when it has one, else the row's.
    pub(crate) fn state(&self) -> Result<StepState> {
        match &self.job_state {
            Some(s) => baton_proto::JobState::parse(s)
                .map(StepState::of_job)
                .ok_or_else(|| Error::Corrupt(format!("jobs.state {s}"))),
            None => StepState::parse(&self.state)
                .ok_or_else(|| Error::Corrupt(format!("run_steps.state {}", self.state))),
        }
    }
}

/// A `pipelines` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PipelineRow {
    pub name: String,
    pub spec: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The steps of `spec` with their rows (pending when none).
pub(crate) fn statuses(spec: &PipelineSpec, rows: &[StepRow]) -> Result<Vec<StepStatus>> {
    spec.steps
        .iter()
        .map(|s| {
            let row = rows.iter().find(|r| r.step == s.name);
            Ok(StepStatus {
                name: s.name.clone(),
                state: row
                    .map(StepRow::state)
                    .transpose()?
                    .unwrap_or(StepState::Pending),
                agent: row.and_then(|r| r.agent.clone()),
            })
        })
        .collect()
}

/// The view of `run` with its step rows.
pub(crate) fn run_view(run: &RunRow, rows: &[StepRow]) -> Result<RunView> {
    let spec = run.spec()?;
    let mut steps = Vec::with_capacity(spec.steps.len());
    for s in &spec.steps {
        let row = rows.iter().find(|r| r.step == s.name);
        steps.push(StepRunView {
            name: s.name.clone(),
            state: row
                .map(StepRow::state)
                .transpose()?
                .unwrap_or(StepState::Pending),
            job_id: row.and_then(|r| r.job_id),
            agent: row.and_then(|r| r.agent.clone()),
            attempts: row.and_then(|r| r.attempts_spent).unwrap_or(0) as u32,
            reason: row.and_then(|r| r.reason.clone().or_else(|| r.job_error.clone())),
            queued_at: row.and_then(|r| r.created_at).map(ts),
            finished_at: row.and_then(|r| r.finished_at).map(ts),
        });
    }
    Ok(RunView {
        id: run.id,
        pipeline: run.pipeline.clone(),
        state: run.state()?,
        attempt: run.attempt as u32,
        schedule: run.schedule.clone(),
        nominal_at: run.nominal_at.map(ts),
        error: run.error.clone(),
        created_at: ts(run.created_at),
        finished_at: run.finished_at.map(ts),
        deadline_at: run.deadline_at.map(ts),
        steps,
    })
}

/// A page of runs read with `limit + 1` rows.
pub(crate) fn run_page(rows: &[RunRow], limit: u32) -> Result<RunList> {
    let more = rows.len() > limit as usize;
    let runs = rows
        .iter()
        .take(limit as usize)
        .map(RunRow::summary)
        .collect::<Result<Vec<_>>>()?;
    let next_before = if more {
        runs.last().map(|r| r.id)
    } else {
        None
    };
    Ok(RunList { runs, next_before })
}

/// The job of step `i` (references resolved from the step rows) and its
/// lease TTL, or why it cannot run.
pub(crate) fn step_submission(
    run: &RunRow,
    spec: &PipelineSpec,
    rows: &[StepRow],
    i: usize,
    ttl: u64,
) -> std::result::Result<(JobSubmit, u64), String> {
    let outputs = |name: &str| -> Option<StepOutput> {
        let row = rows.iter().find(|r| r.step == name)?;
        Some(StepOutput {
            job_id: row.job_id?,
            agent: row.agent.clone(),
            result: json_opt("jobs.result", &row.result).ok().flatten(),
        })
    };
    let limits = JobLimits {
        default_lease_ttl_ms: ttl,
        max_spec_bytes: MAX_RESOLVED_SPEC_BYTES,
    };
    pipeline::submission(spec, i, run.grp.as_deref(), &outputs, &limits).map_err(|e| e.to_string())
}

/// Why the agent a step is pinned to can no longer run it, from its
/// `revoked_at` (`None`: no such agent). An agent that is only offline may
/// come back: the step waits for it.
pub(crate) fn agent_gone(revoked: Option<Option<i64>>) -> Option<String> {
    match revoked {
        None => Some("is not known to this controller".to_owned()),
        Some(Some(_)) => Some("was revoked".to_owned()),
        Some(None) => None,
    }
}

/// The reason of the first failed or cancelled step, for the run's error.
pub(crate) fn first_failure(spec: &PipelineSpec, rows: &[StepRow]) -> Result<Option<String>> {
    for s in &spec.steps {
        let Some(row) = rows.iter().find(|r| r.step == s.name) else {
            continue;
        };
        let state = row.state()?;
        if matches!(state, StepState::Failed | StepState::Cancelled) {
            let why = row
                .reason
                .clone()
                .or_else(|| row.job_error.clone())
                .unwrap_or_else(|| state.as_str().to_owned());
            return Ok(Some(format!("step `{}` {}: {why}", s.name, state.as_str())));
        }
    }
    Ok(None)
}

/// Why a run timed out.
pub(crate) fn timed_out(deadline: i64, created: i64) -> String {
    format!(
        "the run timed out after {}",
        humantime::format_duration(std::time::Duration::from_millis(
            (deadline - created).max(0) as u64
        ))
    )
}

/// The view of a pipeline with its latest run.
pub(crate) fn pipeline_view(row: PipelineRow, last: Option<&RunRow>) -> Result<PipelineView> {
    Ok(PipelineView {
        spec: json("pipelines.spec", &row.spec)?,
        created_at: ts(row.created_at),
        updated_at: ts(row.updated_at),
        last_run: last.map(RunRow::summary).transpose()?,
    })
}
