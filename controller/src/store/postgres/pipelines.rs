//! PipelineStore on PostgreSQL (NOT YET PORTED: every method answers
//! `Error::Unported`; a helper replaces this file).

#![allow(unused_variables, unused_imports)]

use super::PgStore;
use crate::store::pipelines::*;
use crate::store::{Error, Result};
use async_trait::async_trait;
use baton_proto::auth::*;
use baton_proto::drill::*;
use baton_proto::pipeline::*;
use baton_proto::schedule::*;
use baton_proto::*;

#[async_trait]
impl PipelineStore for PgStore {
    async fn put_pipeline(
        &self,
        spec: &PipelineSpec,
        create_only: bool,
        now: i64,
    ) -> Result<(PipelineView, bool)> {
        Err(Error::Unported("put_pipeline"))
    }

    async fn get_pipeline(&self, name: &str) -> Result<PipelineView> {
        Err(Error::Unported("get_pipeline"))
    }

    async fn list_pipelines(&self) -> Result<Vec<PipelineView>> {
        Err(Error::Unported("list_pipelines"))
    }

    async fn delete_pipeline(&self, name: &str) -> Result<()> {
        Err(Error::Unported("delete_pipeline"))
    }

    async fn start_run(
        &self,
        name: &str,
        group: Option<&str>,
        default_lease_ttl_ms: u64,
        now: i64,
    ) -> Result<RunChange> {
        Err(Error::Unported("start_run"))
    }

    async fn get_run(&self, id: RunId) -> Result<RunView> {
        Err(Error::Unported("get_run"))
    }

    async fn list_runs(
        &self,
        pipeline: &str,
        before: Option<RunId>,
        limit: u32,
    ) -> Result<RunList> {
        Err(Error::Unported("list_runs"))
    }

    async fn cancel_run(&self, id: RunId, now: i64) -> Result<RunChange> {
        Err(Error::Unported("cancel_run"))
    }

    async fn retry_run(&self, id: RunId, default_lease_ttl_ms: u64, now: i64) -> Result<RunChange> {
        Err(Error::Unported("retry_run"))
    }

    async fn expire_runs(&self, now: i64) -> Result<Vec<RunId>> {
        Err(Error::Unported("expire_runs"))
    }

    async fn next_run_deadline(&self) -> Result<Option<i64>> {
        Err(Error::Unported("next_run_deadline"))
    }
}
