//! DrillStore on PostgreSQL (NOT YET PORTED: every method answers
//! `Error::Unported`; a helper replaces this file).

#![allow(unused_variables, unused_imports)]

use super::PgStore;
use crate::store::drills::*;
use crate::store::jobs::NewJob;
use crate::store::{Error, Result};
use async_trait::async_trait;
use baton_proto::auth::*;
use baton_proto::drill::*;
use baton_proto::pipeline::*;
use baton_proto::schedule::*;
use baton_proto::*;

#[async_trait]
impl DrillStore for PgStore {
    async fn create_drill(&self, d: &NewDrill, job: NewJob, now: i64) -> Result<DrillView> {
        Err(Error::Unported("create_drill"))
    }

    async fn drill_fault_for(
        &self,
        job_id: JobId,
        agent_id: &str,
        token: FencingToken,
        now: i64,
    ) -> Result<Option<Fault>> {
        Err(Error::Unported("drill_fault_for"))
    }

    async fn drill_fault_ack(
        &self,
        drill_id: DrillId,
        job_id: JobId,
        agent_id: &str,
        token: FencingToken,
        now: i64,
    ) -> Result<bool> {
        Err(Error::Unported("drill_fault_ack"))
    }

    async fn refresh_drill(&self, id: DrillId, now: i64) -> Result<DrillView> {
        Err(Error::Unported("refresh_drill"))
    }

    async fn get_drill(&self, id: DrillId) -> Result<DrillView> {
        Err(Error::Unported("get_drill"))
    }

    async fn list_drills(&self, limit: u32) -> Result<DrillList> {
        Err(Error::Unported("list_drills"))
    }

    async fn running_drills(&self) -> Result<Vec<DrillId>> {
        Err(Error::Unported("running_drills"))
    }

    async fn drill_outcomes(&self) -> Result<Vec<(String, String, i64)>> {
        Err(Error::Unported("drill_outcomes"))
    }

    async fn lease_expirations(&self) -> Result<i64> {
        Err(Error::Unported("lease_expirations"))
    }

    async fn takeover_samples_ms(&self) -> Result<Vec<i64>> {
        Err(Error::Unported("takeover_samples_ms"))
    }
}
