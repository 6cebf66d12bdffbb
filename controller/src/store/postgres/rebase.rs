//! ClockStore on PostgreSQL (NOT YET PORTED: every method answers
//! `Error::Unported`; a helper replaces this file).

#![allow(unused_variables, unused_imports)]

use super::PgStore;
use crate::store::rebase::*;
use crate::store::{Error, Result};
use async_trait::async_trait;
use baton_proto::auth::*;
use baton_proto::drill::*;
use baton_proto::pipeline::*;
use baton_proto::schedule::*;
use baton_proto::*;

#[async_trait]
impl ClockStore for PgStore {
    async fn rebase_clock(&self, now: i64) -> Result<Rebased> {
        Err(Error::Unported("rebase_clock"))
    }
}
