//! AgentStore on PostgreSQL (NOT YET PORTED: every method answers
//! `Error::Unported`; a helper replaces this file).

#![allow(unused_variables, unused_imports)]

use super::PgStore;
use crate::store::agents::*;
use crate::store::{Error, Result};
use async_trait::async_trait;
use baton_proto::auth::*;
use baton_proto::drill::*;
use baton_proto::pipeline::*;
use baton_proto::schedule::*;
use baton_proto::*;

#[async_trait]
impl AgentStore for PgStore {
    async fn agent_polled(&self, a: &AgentSeen<'_>, now: i64) -> Result<bool> {
        Err(Error::Unported("agent_polled"))
    }

    async fn agent_sync(&self, a: &AgentSeen<'_>, now: i64) -> Result<bool> {
        Err(Error::Unported("agent_sync"))
    }

    async fn flush_presence(&self, rows: &[PresenceRow]) -> Result<()> {
        Err(Error::Unported("flush_presence"))
    }

    async fn agent_drained(&self, id: &str) -> Result<bool> {
        Err(Error::Unported("agent_drained"))
    }

    async fn set_drain(&self, id: &str, drain: bool, now: i64) -> Result<DrainState> {
        Err(Error::Unported("set_drain"))
    }

    async fn list_agents(&self, now: i64, online_window_ms: i64) -> Result<Vec<AgentView>> {
        Err(Error::Unported("list_agents"))
    }

    async fn placement(&self) -> Result<Vec<(Vec<String>, Capabilities)>> {
        Err(Error::Unported("placement"))
    }

    async fn blocked_reason(
        &self,
        job: &JobView,
        now: i64,
        online_window_ms: i64,
    ) -> Result<Option<String>> {
        Err(Error::Unported("blocked_reason"))
    }
}
