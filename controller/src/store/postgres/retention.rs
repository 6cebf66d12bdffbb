//! RetentionStore on PostgreSQL (NOT YET PORTED: every method answers
//! `Error::Unported`; a helper replaces this file).

#![allow(unused_variables, unused_imports)]

use super::PgStore;
use crate::store::retention::*;
use crate::store::{Error, Result};
use async_trait::async_trait;
use baton_proto::auth::*;
use baton_proto::drill::*;
use baton_proto::pipeline::*;
use baton_proto::schedule::*;
use baton_proto::*;

#[async_trait]
impl RetentionStore for PgStore {
    async fn prune_jobs(&self, before: i64, max: u32) -> Result<u64> {
        Err(Error::Unported("prune_jobs"))
    }

    async fn prune_occurrences(&self, before: i64, max: u32) -> Result<u64> {
        Err(Error::Unported("prune_occurrences"))
    }

    async fn prune_runs(&self, before: i64, max: u32) -> Result<u64> {
        Err(Error::Unported("prune_runs"))
    }

    async fn prune_audit(&self, before: i64, max: u32) -> Result<u64> {
        Err(Error::Unported("prune_audit"))
    }

    async fn incremental_vacuum(&self, pages: u32) -> Result<i64> {
        Err(Error::Unported("incremental_vacuum"))
    }

    fn pruned(&self) -> PrunedSnapshot {
        self.pruned.snapshot()
    }
}
