//! JobStore on PostgreSQL (NOT YET PORTED: every method answers
//! `Error::Unported`; a helper replaces this file).

#![allow(unused_variables, unused_imports)]

use super::PgStore;
use crate::store::jobs::*;
use crate::store::{Error, Result};
use async_trait::async_trait;
use baton_proto::auth::*;
use baton_proto::drill::*;
use baton_proto::pipeline::*;
use baton_proto::schedule::*;
use baton_proto::*;

#[async_trait]
impl JobStore for PgStore {
    async fn submit(&self, new: NewJob, now: i64) -> Result<Submitted> {
        Err(Error::Unported("submit"))
    }

    async fn submit_batch(&self, batch: NewBatch, now: i64) -> Result<BatchSubmitted> {
        Err(Error::Unported("submit_batch"))
    }

    async fn get_job(&self, id: JobId) -> Result<JobView> {
        Err(Error::Unported("get_job"))
    }

    async fn list_jobs(&self, f: &JobFilter) -> Result<JobList> {
        Err(Error::Unported("list_jobs"))
    }

    async fn cancel(&self, id: JobId, now: i64) -> Result<JobView> {
        Err(Error::Unported("cancel"))
    }

    async fn retry(&self, id: JobId, now: i64) -> Result<JobView> {
        Err(Error::Unported("retry"))
    }
}
