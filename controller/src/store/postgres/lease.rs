//! LeaseStore on PostgreSQL (NOT YET PORTED: every method answers
//! `Error::Unported`; a helper replaces this file).

#![allow(unused_variables, unused_imports)]

use super::PgStore;
use crate::store::lease::*;
use crate::store::{Error, Result};
use async_trait::async_trait;
use baton_proto::auth::*;
use baton_proto::drill::*;
use baton_proto::pipeline::*;
use baton_proto::schedule::*;
use baton_proto::*;

#[async_trait]
impl LeaseStore for PgStore {
    async fn grant(&self, req: &GrantRequest<'_>, now: i64) -> Result<Granted> {
        Err(Error::Unported("grant"))
    }

    async fn heartbeat(
        &self,
        job_id: JobId,
        agent_id: &str,
        token: FencingToken,
        progress: Option<&Progress>,
        log_tail: &str,
        now: i64,
    ) -> Result<(u64, bool)> {
        Err(Error::Unported("heartbeat"))
    }

    async fn complete(
        &self,
        job_id: JobId,
        agent_id: &str,
        req: &CompleteRequest,
        now: i64,
    ) -> Result<(JobState, bool, String)> {
        Err(Error::Unported("complete"))
    }

    async fn release(
        &self,
        job_id: JobId,
        agent_id: &str,
        token: FencingToken,
        reason: &str,
        now: i64,
    ) -> Result<(JobState, String)> {
        Err(Error::Unported("release"))
    }

    async fn expire_leases(&self, now: i64) -> Result<Expired> {
        Err(Error::Unported("expire_leases"))
    }

    async fn abandon(&self, agent_id: &str, leases: &[LeaseRef], now: i64) -> Result<Abandoned> {
        Err(Error::Unported("abandon"))
    }

    async fn agent_restart_ends(&self) -> Result<i64> {
        Err(Error::Unported("agent_restart_ends"))
    }

    async fn next_lease_deadline(&self) -> Result<Option<i64>> {
        Err(Error::Unported("next_lease_deadline"))
    }

    async fn cancelled_leases(&self, agent_id: &str) -> Result<Vec<LeaseRef>> {
        Err(Error::Unported("cancelled_leases"))
    }
}
