//! Pipelines and their runs (ARCHITECTURE.md "Schedules and pipelines").
//!
//! A run keeps the pipeline's definition as it was when the run started,
//! and one `run_steps` row per decided step (queued with its job, or
//! skipped / failed / cancelled without one; no row: pending). Deciding the
//! next steps is pure (`crate::pipeline::advance`) and happens in the same
//! transaction that records them, keyed by `(run, step)`: a step is queued
//! once however many controllers look.

use async_trait::async_trait;
use baton_proto::pipeline::{PipelineSpec, PipelineView, RunList, RunView};
use baton_proto::schedule::RunId;

use super::Result;

pub(crate) mod rows;

/// A run started, cancelled or retried, and the groups that got work.
#[derive(Debug, Clone, PartialEq)]
pub struct RunChange {
    /// The run.
    pub run: RunView,
    /// Groups that got work.
    pub woken: Vec<String>,
}

/// Pipelines as stored.
#[async_trait]
pub trait PipelineStore {
    /// Create (`create_only`: a name in use is a conflict) or replace a
    /// pipeline (runs already started keep their definition). Returns the
    /// pipeline and whether it was created.
    async fn put_pipeline(
        &self,
        spec: &PipelineSpec,
        create_only: bool,
        now: i64,
    ) -> Result<(PipelineView, bool)>;

    /// A pipeline by name.
    async fn get_pipeline(&self, name: &str) -> Result<PipelineView>;

    /// Every pipeline, by name.
    async fn list_pipelines(&self) -> Result<Vec<PipelineView>>;

    /// Delete a pipeline; a conflict while a schedule names it.
    async fn delete_pipeline(&self, name: &str) -> Result<()>;

    /// Start a run of pipeline `name` (steps without a group go to `group`,
    /// else the pipeline's): its first steps are queued.
    async fn start_run(
        &self,
        name: &str,
        group: Option<&str>,
        default_lease_ttl_ms: u64,
        now: i64,
    ) -> Result<RunChange>;

    /// A run with its steps.
    async fn get_run(&self, id: RunId) -> Result<RunView>;

    /// Runs of a pipeline, newest first.
    async fn list_runs(&self, pipeline: &str, before: Option<RunId>, limit: u32)
    -> Result<RunList>;

    /// Cancel a running run: queued steps end, running ones are asked to
    /// stop, pending ones are cancelled.
    async fn cancel_run(&self, id: RunId, now: i64) -> Result<RunChange>;

    /// Retry a failed or cancelled run: its failed, cancelled, skipped and
    /// pending steps run again; succeeded ones keep their results.
    async fn retry_run(&self, id: RunId, default_lease_ttl_ms: u64, now: i64) -> Result<RunChange>;

    /// Fail the runs past their deadline (their unfinished steps are
    /// cancelled); the runs ended.
    async fn expire_runs(&self, now: i64) -> Result<Vec<RunId>>;

    /// The earliest deadline of a running run.
    async fn next_run_deadline(&self) -> Result<Option<i64>>;
}
