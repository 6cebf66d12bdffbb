//! ScheduleStore on PostgreSQL (NOT YET PORTED: every method answers
//! `Error::Unported`; a helper replaces this file).

#![allow(unused_variables, unused_imports)]

use super::PgStore;
use crate::store::schedules::*;
use crate::store::{Error, Result};
use async_trait::async_trait;
use baton_proto::auth::*;
use baton_proto::drill::*;
use baton_proto::pipeline::*;
use baton_proto::schedule::*;
use baton_proto::*;

#[async_trait]
impl ScheduleStore for PgStore {
    async fn put_schedule(
        &self,
        spec: &ScheduleSpec,
        cursor: Cursor,
        create_only: bool,
        now: i64,
    ) -> Result<(StoredSchedule, bool)> {
        Err(Error::Unported("put_schedule"))
    }

    async fn get_schedule(&self, name: &str) -> Result<StoredSchedule> {
        Err(Error::Unported("get_schedule"))
    }

    async fn list_schedules(&self) -> Result<Vec<StoredSchedule>> {
        Err(Error::Unported("list_schedules"))
    }

    async fn delete_schedule(&self, name: &str) -> Result<()> {
        Err(Error::Unported("delete_schedule"))
    }

    async fn set_paused(
        &self,
        name: &str,
        paused: bool,
        cursor: Cursor,
        now: i64,
    ) -> Result<StoredSchedule> {
        Err(Error::Unported("set_paused"))
    }

    async fn due_schedules(&self, now: i64, limit: u32) -> Result<Vec<DueSchedule>> {
        Err(Error::Unported("due_schedules"))
    }

    async fn schedule_activity(&self, id: i64) -> Result<(Option<Active>, u32)> {
        Err(Error::Unported("schedule_activity"))
    }

    async fn next_schedule_fire(&self) -> Result<Option<i64>> {
        Err(Error::Unported("next_schedule_fire"))
    }

    async fn fire(&self, firing: &Firing, now: i64) -> Result<Fired> {
        Err(Error::Unported("fire"))
    }

    async fn fire_all(&self, firings: &[Firing], now: i64) -> Result<Vec<Result<Fired>>> {
        Err(Error::Unported("fire_all"))
    }

    async fn follow_up(
        &self,
        now: i64,
        limit: u32,
        default_lease_ttl_ms: u64,
    ) -> Result<FollowedUp> {
        Err(Error::Unported("follow_up"))
    }

    async fn fail_stranded(&self, now: i64, seen_before: i64) -> Result<Vec<JobId>> {
        Err(Error::Unported("fail_stranded"))
    }

    async fn schedule_stats(&self, id: i64) -> Result<ScheduleStats> {
        Err(Error::Unported("schedule_stats"))
    }

    async fn history(
        &self,
        id: i64,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<OccurrenceView>> {
        Err(Error::Unported("history"))
    }

    async fn recorded_between(&self, id: i64, from: i64, to: i64) -> Result<Vec<(i64, i64)>> {
        Err(Error::Unported("recorded_between"))
    }

    async fn occurrence_totals(&self) -> Result<OccurrenceCounts> {
        Err(Error::Unported("occurrence_totals"))
    }
}
