//! Pipeline operations: define (checked by `crate::pipeline::validate`),
//! read, delete, run, cancel and retry runs.

use baton_proto::pipeline::{PipelineList, PipelineSpec, PipelineView, RunList, RunView};
use baton_proto::schedule::RunId;

use super::{Error, Result, Schedules};
use crate::pipeline;

impl Schedules {
    /// Create (`create_only`) or replace a pipeline; whether it was created.
    pub async fn put_pipeline(
        &self,
        spec: PipelineSpec,
        create_only: bool,
        now: i64,
    ) -> Result<(PipelineView, bool)> {
        pipeline::validate(&spec, &self.limits).map_err(|e| Error::Invalid {
            field: e.field,
            message: e.message,
        })?;
        let (view, created) = self.store().put_pipeline(&spec, create_only, now).await?;
        tracing::info!(pipeline = %spec.name, created, "Pipeline saved");
        Ok((view, created))
    }

    /// A pipeline.
    pub async fn pipeline(&self, name: &str) -> Result<PipelineView> {
        Ok(self.store().get_pipeline(name).await?)
    }

    /// Every pipeline.
    pub async fn pipelines(&self) -> Result<PipelineList> {
        Ok(PipelineList {
            pipelines: self.store().list_pipelines().await?,
        })
    }

    /// Delete a pipeline (refused while a schedule names it).
    pub async fn delete_pipeline(&self, name: &str) -> Result<()> {
        self.store().delete_pipeline(name).await?;
        tracing::info!(pipeline = %name, "Pipeline deleted");
        Ok(())
    }

    /// Start a run now.
    pub async fn run(&self, name: &str, now: i64) -> Result<RunView> {
        let run = self
            .jobs
            .start_run(name, None, self.limits.default_lease_ttl_ms, now)
            .await?;
        self.kick.notify_one();
        Ok(run)
    }

    /// A run with its steps.
    pub async fn get_run(&self, id: RunId) -> Result<RunView> {
        Ok(self.store().get_run(id).await?)
    }

    /// Runs of a pipeline, newest first.
    pub async fn runs(&self, name: &str, before: Option<RunId>, limit: u32) -> Result<RunList> {
        self.store().get_pipeline(name).await?;
        Ok(self.store().list_runs(name, before, limit).await?)
    }

    /// Cancel a run.
    pub async fn cancel_run(&self, id: RunId, now: i64) -> Result<RunView> {
        Ok(self.jobs.cancel_run(id, now).await?)
    }

    /// Retry a failed or cancelled run.
    pub async fn retry_run(&self, id: RunId, now: i64) -> Result<RunView> {
        let run = self
            .jobs
            .retry_run(id, self.limits.default_lease_ttl_ms, now)
            .await?;
        self.kick.notify_one();
        Ok(run)
    }
}
